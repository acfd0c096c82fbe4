"""Row buckets: bf16 linear layers on the CPU see a few row counts instead of every batch's own.

Why. On a CPU with bf16 matrix units every bf16 product is a oneDNN primitive JIT-compiled for
its exact shape and cached (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``, 128 in the kit). The kit's
position-wise layers run on the N real utterances of a batch (:class:`~safsd_glnet.model.network.
Packing`), and N changes with every batch: 60 MELD-shaped batches of 8 dialogues came with 57
distinct N, each bringing about 24 new primitives (forward, input gradient and weight gradient of
every layer shape). They were compiled, evicted and compiled again, and the cache's memory was
most of bf16's excess over fp32 on MELD (docs/speed.md, issue 24).

What. :class:`BucketedLinear` is ``nn.Linear`` whose product, when it runs in bf16 on the CPU,
sees its rows padded with zeros to :func:`bucket_rows` (N) and returns the first N:

.. math::
    y = \\bigl([x; 0]\\,W^\\top + b\\bigr)_{1..N},\\qquad
    \\frac{\\partial L}{\\partial W} = [g; 0]^\\top [x; 0] = g^\\top x,\\qquad
    \\frac{\\partial L}{\\partial x} = \\bigl([g; 0]\\,W\\bigr)_{1..N}

Row i of a product depends only on row i of its input, so the kept rows are the same maths, and
the padding's rows add only zero terms to the weight's gradient. Shapes: x (N, d_in) -> (N, d_out),
the product itself (bucket_rows(N), d_in) @ (d_in, d_out). Measured on the 2-core Xeon with
AMX-BF16 (tests/model/test_row_buckets.py checks it with tolerances): the forward is bitwise
equal in fp32 and bf16; the gradients agree to the precision's rounding (the weight gradient's
sum over rows may be blocked differently for a different row count; the input gradient was one
bf16 step apart in some entries).

Where. Only 2-D inputs of at most :data:`MAX_BUCKETED_ROWS` rows whose product runs in bf16 on
the CPU (bf16 autocast, or a bf16 input):
fp32 products on the CPU go to a GEMM that compiles almost nothing per shape (oneDNN compiled 46
primitives in 30 MELD steps in fp32 against 893 in bf16), and CUDA has no such cache. Not while ``torch.compile``
traces (a symbolic N has no bucket). Larger products pay for the extra rows every step and
for a compile once: paper-size bf16 epochs (2 threads, fastest of 3 interleaved rounds, the
2-core Xeon with AMX-BF16; docs/speed.md) took 41.2 s bucketed against 52.4 s unbucketed on
MELD-shaped batches (N = 40-122) but 8.5 s against 6.4 s on IEMOCAP-shaped ones (N = 416-844).
Elsewhere the layer is exactly ``nn.Linear``.

The buckets. ``bucket_rows(n)`` rounds n up to a multiple of half its power of two
(``s = 2^(max(4, floor(log2 n)) - 1)``): 40 -> 48, 77 -> 96, 122 -> 128, 417 -> 512. Two buckets
per octave, at most 1.5x the rows (MELD's batches: 4 buckets, 18% more rows on average; a
prototype with quarter-octave buckets, 8 of them and 8% more rows, left the cache churning:
522 compiles in 30 MELD steps against 352).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAX_BUCKETED_ROWS = 256  # above it the products stay exact-size (IEMOCAP's batches: slower bucketed)


def bucket_rows(n: int) -> int:
    """The row count a product of ``n`` rows is padded to: the next multiple of
    ``2^(max(4, floor(log2 n)) - 1)`` (8 below 32 rows; two buckets per octave above)."""
    if n < 1:
        return n
    step = 1 << (max(4, n.bit_length() - 1) - 1)
    return -(-n // step) * step


def runs_in_bf16_on_cpu(x: Tensor) -> bool:
    """Whether a linear layer on ``x`` computes its product in bf16 on the CPU."""
    if x.device.type != "cpu":
        return False
    if x.dtype == torch.bfloat16:
        return True
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


class BucketedLinear(nn.Linear):
    """``nn.Linear`` whose bf16 CPU products see :func:`bucket_rows` rows (module docstring)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or torch.compiler.is_compiling() or not runs_in_bf16_on_cpu(x):
            return super().forward(x)
        n = x.shape[0]
        padded = bucket_rows(n)
        if padded == n or n > MAX_BUCKETED_ROWS:
            return super().forward(x)
        return F.linear(F.pad(x, (0, 0, 0, padded - n)), self.weight, self.bias)[:n]


def remove(model: nn.Module) -> nn.Module:
    """Put plain ``nn.Linear`` back wherever :class:`BucketedLinear` is (in place; the other kernels
    stay): the unbucketed twin the benchmarks measure against."""
    for module in model.modules():
        if type(module) is BucketedLinear:
            module.__class__ = nn.Linear
    return model
