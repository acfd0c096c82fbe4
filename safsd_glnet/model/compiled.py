"""``train.compile``: hand the model's row-wise regions to ``torch.compile`` (Inductor).

What is compiled. SAFSD-GLNet moves between the padded (b, n) layout and packed real rows
(N, H) with ``nonzero`` and masked scatters, and builds its dialogue graph from the lengths:
shapes that depend on the data. ``torch.compile`` of the whole forward pass breaks its graph
at every one of them (20 graphs, 35 breaks on the readable model) and was slower than the
eager speed kernels on this kit's CPU (docs/speed.md, "torch.compile"). What compiles into
one graph without a break is the part of every attention layer after the attention itself,

.. math::
    z = \\mathrm{LN}(x + \\mathrm{drop}(a W_o)),\\quad y = \\mathrm{LN}(z + \\mathrm{drop}(W_2\\,\\mathrm{GELU}(W_1 z)))

(:meth:`~safsd_glnet.model.network.AttentionLayer.add_and_feed_forward`: (N, H) rows in,
(N, H) out, row-wise), where Inductor fuses the residual adds, the layer norms, GELU and the
dropout masks around the matrix products. :func:`compile_regions` wraps that method of every
attention layer, with N symbolic (``dynamic=True``), so that batches of other sizes reuse the
compiled code instead of compiling again.

Same numbers. ``fallback_random`` makes the compiled dropout draw its masks from torch's
generator exactly as the eager code does, so a seeded run chooses the same epoch with the
compiler on or off (tests/model/test_compiled.py); the fused arithmetic differs from eager in
rounding only.

``auto``. The compiler is used where it was measured to pay (:data:`MEASURED_TO_PAY`, from
``benchmarks/compile_speed.py``) and its toolchain is present (a C++ compiler for the CPU,
Triton for CUDA), and only for runs long enough to earn back the compile time
(:func:`decide`). ``true`` compiles wherever the toolchain is present and says in one line
why not where it is absent; ``false`` never compiles.
"""
from __future__ import annotations

import shutil
from typing import Any

import torch
from torch import nn

from .network import AttentionLayer

SETTINGS = ("auto", True, False)

# Device types on which compiling the regions measurably paid, with the seconds a training step
# saved and the seconds the compilation cost (benchmarks/compile_speed.py; docs/speed.md). Empty:
# on the 2-core Xeon (fp32 and bf16) the compiled regions saved less than the run-to-run spread,
# and no GPU has been measured yet. A device type enters here only with its measurement.
MEASURED_TO_PAY: dict[str, dict[str, float]] = {}

COMPILE_OPTIONS = {"fallback_random": True}  # dropout masks from torch's generator, as eager


def toolchain_missing(device: torch.device) -> str | None:
    """Why Inductor cannot compile for ``device`` here, or None when it can."""
    if device.type == "cpu":
        from torch._inductor import config as inductor_config

        cxx = inductor_config.cpp.cxx  # (a compiler the user chose or None, Inductor's default)
        candidates = [c for c in (*(cxx if isinstance(cxx, tuple) else (cxx,)), "c++", "g++", "clang++") if c]
        return None if any(shutil.which(c) for c in candidates) else "no C++ compiler (c++, g++ or clang++) on PATH"
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed"
        return None
    return f"torch.compile is not set up for {device.type} devices in this kit"


def decide(setting: bool | str, device: torch.device, steps: int) -> tuple[bool, str]:
    """(compile?, why) for ``train.compile=setting`` on ``device`` for a run of ``steps``
    optimiser steps. ``auto`` compiles only where :data:`MEASURED_TO_PAY` says it paid and the
    run is at least its break-even length: compile seconds / seconds saved per step."""
    if setting is False:
        return False, "train.compile=false"
    missing = toolchain_missing(device)
    if setting is True:
        if missing:
            raise ValueError(f"train.compile=true: cannot compile on {device.type}: {missing}")
        return True, "train.compile=true"
    measured = MEASURED_TO_PAY.get(device.type)
    if measured is None:
        return False, f"auto: not measured to pay on {device.type}"
    if missing:
        return False, f"auto: {missing}"
    break_even = measured["compile_s"] / measured["saved_per_step_s"]
    if steps < break_even:
        return False, f"auto: {steps} steps, fewer than the {break_even:.0f} that pay for compiling"
    return True, f"auto: {steps} steps pay for compiling on {device.type}"


def compile_regions(model: nn.Module) -> int:
    """Wrap ``add_and_feed_forward`` of every attention layer of ``model`` in
    ``torch.compile(dynamic=True)``; returns how many layers were wrapped. The parameters,
    the state dict and the checkpoints do not change (the wrapper is an instance attribute)."""
    count = 0
    for module in model.modules():
        if isinstance(module, AttentionLayer) and "add_and_feed_forward" not in vars(module):
            module.add_and_feed_forward = torch.compile(module.add_and_feed_forward, dynamic=True,
                                                        options=COMPILE_OPTIONS)
            count += 1
    return count


def compile_counts(since: dict[str, int] | None = None) -> dict[str, int]:
    """How many compiled versions of the region this process holds (``since``: an earlier
    reading, to count only what was compiled after it): ``variants``, and ``recompiles``, the
    variants beyond the two a run needs (training mode, and evaluation without gradients), each a
    guard that failed on some batch (a shape the symbolic sizes did not cover, a new dtype)."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    variants = len(_debug_get_cache_entry_list(AttentionLayer.add_and_feed_forward.__code__))
    variants -= since["variants"] if since else 0
    return {"variants": variants, "recompiles": max(0, variants - 2)}
