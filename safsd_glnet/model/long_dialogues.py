"""Dialogues of any length: exact inference in bounded memory, and a clear limit for training.

Attention and the dialogue graph relate every utterance of a dialogue to every other. The
readable model (:mod:`safsd_glnet.model.network`) and the speed kernels (:mod:`safsd_glnet.model.kernels`)
hold, per dialogue, (heads, n, n) attention scores and (n, n) graph coefficients: one meeting
transcript of 20,000 utterances asks for 6.4 GB of attention scores alone at the small preset
(4 heads, float32). Real transcripts (meetings, episodes, therapy sessions) are this long.

**Inference** (prediction and evaluation: eval mode, no gradient). When the padded length of a
batch is above :data:`BLOCKED_ABOVE` utterances, the kernels hand their two quadratic steps to
this module, which computes them in blocks of query (target) rows. Both are *exact*: a block
needs nothing from the other blocks, so the numbers are those of the full matrices (tests:
``tests/model/test_long_dialogues.py`` against the unblocked kernels on 300-utterance dialogues cut
into blocks of a few rows).

* Attention (:func:`attention_in_blocks`, :func:`sdpa_in_blocks`): a block of r query rows
  against *all* n keys is an (heads, r, n) score matrix; ``softmax(q k^T / sqrt(d) + mask) v``
  is taken per row, so each block's rows are final.
* Graph (:func:`gcn_in_blocks`): the high-frequency layer's intra-modal message to target i,
  ``sum_j tanh(s_i + r_j) / sqrt(deg_i deg_j) x_j`` over the sources j of its dialogue (all
  of them, or those in the window, j != i), is one (r, sources) matrix product per block of r
  targets. The degrees have a closed form, the number of sources in the window plus the
  M - 1 inter-modal edges, so no (n, n) adjacency is ever built. Inter-modal messages are per
  utterance and cost O(n) anyway.

Memory is then O(:data:`BLOCK_ELEMENTS` + n H) whatever n is; time stays O(n^2 H) (the full
graph has n^2 edges: each must be computed once). Dialogues longer than :data:`BLOCKED_ABOVE`
are also put in a batch of their own (:func:`safsd_glnet.data.batching.iterate_batches`,
``alone_above``), so short dialogues are not padded to their length. Shorter batches run the
unblocked kernels, unchanged.

**Training** keeps every attention weight and graph coefficient of a batch for the backward
pass, so it cannot run in blocks. :func:`~safsd_glnet.data.dialogue_windows.check_trainable` (called by
:func:`safsd_glnet.training.train.train`) estimates the memory of the worst training batch, the
longest training dialogue with ``batch_size - 1`` others padded to its length
(:func:`training_bytes`), and refuses a corpus whose estimate exceeds the budget
(:data:`TRAIN_MEMORY_GB` GiB, or ``$SAFSD_GLNET_TRAIN_MEMORY_GB``) with one line naming the
dialogue, its length and the way around: :func:`~safsd_glnet.data.dialogue_windows.split_dialogues`
(``--split-dialogues LEN``)
cuts the *training* dialogues longer than LEN into overlapping windows, while validation and
test dialogues are still evaluated whole, in blocks.

Shape letters as in :mod:`safsd_glnet.model.network`; r rows of a block.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

BLOCKED_ABOVE = 1024
"""Inference batches padded to more utterances than this run attention and the graph in blocks."""
BLOCK_ELEMENTS = 1 << 22
"""Elements of one block's score or coefficient matrix (4 Mi: 16 MiB in float32)."""
TRAIN_MEMORY_GB = 8.0
"""Default budget of :func:`check_trainable`, GiB for the quadratic part of a training batch."""
TRAIN_MEMORY_ENV = "SAFSD_GLNET_TRAIN_MEMORY_GB"


# --------------------------------------------------------------------------- when to block

def use_blocks(length: int, training: bool) -> bool:
    """Whether a forward pass over a batch padded to ``length`` utterances runs in blocks: only
    for inference (no gradient is recorded and the module is in eval mode, so no dropout)."""
    return length > BLOCKED_ABOVE and not training and not torch.is_grad_enabled()


@contextmanager
def blocking(above: int = BLOCKED_ABOVE, elements: int = BLOCK_ELEMENTS) -> Iterator[None]:
    """Run the code inside with other thresholds (tests use blocks of a few rows on short
    dialogues; ``above=10**9`` turns blocking off)."""
    global BLOCKED_ABOVE, BLOCK_ELEMENTS
    saved = BLOCKED_ABOVE, BLOCK_ELEMENTS
    BLOCKED_ABOVE, BLOCK_ELEMENTS = above, elements
    try:
        yield
    finally:
        BLOCKED_ABOVE, BLOCK_ELEMENTS = saved


def block_rows(columns: int, matrices: int) -> int:
    """Rows per block so that ``matrices`` (rows, ``columns``) matrices hold at most
    :data:`BLOCK_ELEMENTS` elements (at least one row)."""
    return max(1, BLOCK_ELEMENTS // max(1, columns * matrices))


# --------------------------------------------------------------------------- attention

class _Workspace:
    """One float32 buffer reused by every block of a call: blocks of tens of MB allocated and
    freed in turn fragment the C heap (glibc serves them from its heap once its mmap threshold
    has grown), and a 20,000-utterance prediction kept 350 MB it no longer used.
    ``take(*shape)`` is a contiguous view of the buffer's first elements."""

    def __init__(self, numel: int, device: torch.device, dtype: torch.dtype = torch.float32):
        self.flat = torch.empty(numel, dtype=dtype, device=device)

    def take(self, *shape: int) -> Tensor:
        return self.flat[:math.prod(shape)].view(shape)


def attention_in_blocks(q: Tensor, k: Tensor, v: Tensor, key_bias: Tensor, scale: float) -> Tensor:
    """``softmax(q k^T scale + key_bias) v`` in blocks of query rows, exact.

    Shapes: q, k, v (B, n, d) (B = heads x dialogues, head-major as in
    :class:`safsd_glnet.model.kernels.FastAttentionLayer`), key_bias (B, 1, n) holding 0 for real
    keys and -inf for padding -> (B, n, d) in v's dtype. Each block is one ``baddbmm`` of
    (B, r, n) into a reused float32 buffer, soft-maxed in place (``exp(x - max) / sum``, as
    ``torch.softmax`` computes it); float32 also under bf16 autocast, where a sum over
    thousands of keys is better not rounded to 8 bits.
    """
    batch, n, _ = q.shape
    keys_n = k.shape[1]
    rows = min(block_rows(keys_n, batch), n)
    out = v.new_empty(batch, n, v.shape[-1])
    with torch.autocast(q.device.type, enabled=False):
        q, keys, values, bias = q.float(), k.float().transpose(1, 2), v.float(), key_bias.float()
        work = _Workspace(batch * rows * keys_n, q.device)
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            block = work.take(batch, stop - start, keys_n)
            torch.baddbmm(bias, q[:, start:stop], keys, alpha=scale, out=block)
            block.sub_(block.amax(dim=-1, keepdim=True)).exp_()
            block.div_(block.sum(dim=-1, keepdim=True))
            out[:, start:stop] = torch.bmm(block, values)
    return out


def sdpa_in_blocks(q: Tensor, k: Tensor, v: Tensor, key_real: Tensor) -> Tensor:
    """:meth:`safsd_glnet.model.network.AttentionLayer.attend` (PyTorch's fused attention, as on a GPU)
    in blocks of query rows, exact; no dropout (inference only).

    Shapes: q, k, v (b, heads, n, d_h), key_real (b, n) -> (b, heads, n, d_h)."""
    b, heads, n, _ = q.shape
    rows = block_rows(k.shape[2], b * heads)
    mask = key_real[:, None, None, :]
    return torch.cat([F.scaled_dot_product_attention(q[:, :, start:start + rows], k, v, attn_mask=mask)
                      for start in range(0, n, rows)], dim=2)


# --------------------------------------------------------------------------- the graph

def window_degrees(lengths: Tensor, num_modalities: int, window_past: int | None,
                   window_future: int | None) -> Tensor:
    """(N,) float32 in-degree of every real utterance's node in the dialogue graph
    (:func:`safsd_glnet.model.graph.dialogue_graph`), in the packed (dialogue-major) order, without
    building it: the sources in ``[i - past, i + future]`` of the dialogue, less i itself,
    plus the M - 1 inter-modal edges; at least 1 (as :func:`~safsd_glnet.model.graph.symmetric_norm`)."""
    from .graph import utterance_positions

    dialogue, position, _ = utterance_positions(lengths)
    last = lengths.to(torch.long)[dialogue] - 1
    first = torch.zeros_like(position) if window_past is None else (position - window_past).clamp(min=0)
    upto = last if window_future is None else torch.minimum(position + window_future, last)
    return ((upto - first) + (num_modalities - 1)).clamp(min=1).to(torch.float32)


def gcn_in_blocks(h0: Tensor, gate_weights: Sequence[Tensor], lengths: Tensor, window_past: int | None,
                  window_future: int | None) -> Tensor:
    """The K residual layers of :class:`safsd_glnet.model.network.MaskedGCN` in eval mode (no feature
    mask), ``h <- h + conv_k(h)``, with each layer's intra-modal messages computed in blocks of
    targets (:func:`_messages`). Shapes: h0 (M, N, H) packed real utterances, one (1, 2H) gate
    weight per layer, lengths (b,) -> h^(K) (M, N, H)."""
    num_mod = h0.shape[0]
    deg = window_degrees(lengths, num_mod, window_past, window_future).to(h0.device)
    inv_sqrt, inv_deg = deg.rsqrt(), deg.reciprocal()  # float32, as the blocks compute
    spans = _dialogue_spans(lengths)
    h = h0
    for weight in gate_weights:
        h = h + _messages(h, weight, spans, inv_sqrt, inv_deg, window_past, window_future)
    return h


def _dialogue_spans(lengths: Tensor) -> list[tuple[int, int]]:
    """(first packed row, length) of every dialogue of the batch."""
    sizes = [int(n) for n in lengths.tolist()]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist() if sizes else []
    return list(zip(starts, sizes))


def _messages(h: Tensor, weight: Tensor, spans: list[tuple[int, int]], inv_sqrt: Tensor, inv_deg: Tensor,
              past: int | None, future: int | None) -> Tensor:
    """conv(h) of one :class:`~safsd_glnet.model.network.HighFrequencyConv`: (M, N, H) -> (M, N, H).

    With the gate split as ``w^T [x_i || x_j] = a^T x_i + c^T x_j`` (``s = X a``, ``r = X c``),
    targets i in [t0, t1) of a dialogue receive
    ``(tanh(s_i + r_j) * A_ij / sqrt(deg_i deg_j)) @ X_j`` over their sources j in [j0, j1)
    (the window around the block, or the whole dialogue), one (M, r, j1 - j0) matrix at a time,
    built in place in reused float32 buffers (see :class:`_Workspace`); ``A_ij`` is 0 for
    j = i and outside the window, else 1.
    """
    num_mod, _, hidden = h.shape
    dtype = h.dtype
    with torch.autocast(h.device.type, enabled=False):
        h, w = h.float(), weight.view(2, hidden).float()
        inv_sqrt, inv_deg = inv_sqrt.float(), inv_deg.float()
        s, r = h @ w[0], h @ w[1]  # (M, N) target and source terms
        out = torch.empty_like(h)
        for first, length in spans:
            if past is None or future is None:  # every block reads the whole dialogue
                rows = min(block_rows(length, num_mod), length)
                width = length
            else:  # a block of r targets reads r + past + future sources: r (r + w) M <= BLOCK_ELEMENTS
                w_ = past + future
                rows = min(max(1, int((math.sqrt(w_ * w_ + 4 * BLOCK_ELEMENTS / num_mod) - w_) / 2)), length)
                width = min(length, rows + w_)
            coef_work = _Workspace(num_mod * rows * width, h.device)
            drop_work, cut_work = (_Workspace(rows * width, h.device, torch.bool) for _ in range(2))
            for t0 in range(0, length, rows):
                t1 = min(t0 + rows, length)
                j0 = 0 if past is None else max(0, t0 - past)
                j1 = length if future is None else min(length, t1 + future)
                targets, sources = slice(first + t0, first + t1), slice(first + j0, first + j1)
                coef = coef_work.take(num_mod, t1 - t0, j1 - j0)
                torch.add(s[:, targets, None], r[:, None, sources], out=coef).tanh_()
                coef.mul_(inv_sqrt[None, targets, None]).mul_(inv_sqrt[None, None, sources])
                i = torch.arange(t0, t1, device=h.device)[:, None]
                j = torch.arange(j0, j1, device=h.device)[None, :]
                drop, cut = drop_work.take(t1 - t0, j1 - j0), cut_work.take(t1 - t0, j1 - j0)
                torch.eq(j, i, out=drop)  # no self edge
                if past is not None:  # j - i < -past: too far back
                    drop.logical_or_(torch.lt(j, i - past, out=cut))
                if future is not None:  # j - i > future: too far ahead
                    drop.logical_or_(torch.gt(j, i + future, out=cut))
                coef.masked_fill_(drop, 0.0)
                out[:, targets] = coef @ h[:, sources]
        if num_mod > 1:  # inter-modal edges join the M nodes of an utterance: norm = 1 / deg_i
            gate = torch.tanh(s[:, None] + r[None, :]) * inv_deg  # [target k, source q, N]
            for k in range(num_mod):
                for q in range(num_mod):
                    if q != k:
                        out[k].addcmul_(gate[k, q, :, None], h[q])
    return out.to(dtype)


# --------------------------------------------------------------------------- training

def pair_bytes(model_cfg) -> int:
    """Bytes a training step keeps per (padded) utterance pair of one dialogue, a bound derived
    from what the CPU kernels store, in float32 (bf16 halves part of it; not counted):

    * per attention layer (M^2 blocks of ``transformer_layers`` layers): the scores, the
      softmax weights and the weights after dropout with its mask, and two gradients of the
      same size in the backward pass: 6 x heads;
    * per graph layer (K of them, M modalities): the gate tanh, the coefficient matrix and
      three backward temporaries: 5 x M;
    * once: the adjacency in bool and float, and the normalisation: 3.
    ``benchmarks/long_dialogues.py --train-memory`` measures the real peaks against it."""
    m = len(model_cfg.modalities)
    attention = 6 * model_cfg.heads * m * m * model_cfg.transformer_layers if model_cfg.use_transformer else 0
    graph = 5 * m * model_cfg.gcn_layers + 3 if model_cfg.use_gcn else 0
    return 4 * (attention + graph)


def training_bytes(length: int, batch_size: int, model_cfg) -> int:
    """Estimated memory of the quadratic part of a training batch of ``batch_size`` dialogues
    padded to ``length`` utterances (every dialogue of a batch is padded to its longest)."""
    return batch_size * length * length * pair_bytes(model_cfg)


def train_budget_bytes() -> int:
    """The training budget: ``$SAFSD_GLNET_TRAIN_MEMORY_GB`` GiB, else :data:`TRAIN_MEMORY_GB`."""
    raw = os.environ.get(TRAIN_MEMORY_ENV)
    if raw is None:
        return int(TRAIN_MEMORY_GB * (1 << 30))
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"${TRAIN_MEMORY_ENV}={raw[:40]!r}: expected a number of GiB above 0")
    return int(value * (1 << 30))


def longest_trainable(batch_size: int, model_cfg, budget: int | None = None) -> int:
    """The longest dialogue whose worst training batch fits ``budget`` bytes."""
    budget = train_budget_bytes() if budget is None else budget
    return max(1, math.isqrt(budget // max(1, batch_size * pair_bytes(model_cfg))))
