"""Speed kernels: the same maths as :mod:`safsd_glnet.model.network`, computed faster.

The kit's training and loading (:func:`safsd_glnet.training.train.build_model`, ``load_model``) call
:func:`install`, which swaps these subclasses in for the readable modules they accelerate
(``module.__class__``: parameters, buffers and the state dict do not change, so checkpoints do
not care which ran):

=====================================  ==============================================  ==========
readable module (model.py)             kernel                                          where
=====================================  ==============================================  ==========
``nn.Dropout``                         :class:`Dropout`: masks from random bit lanes    CPU
                                       (:func:`keep_mask`), in the input's dtype
``Packing``                            :class:`FastPacking`: index gradients as copies  everywhere
``ModalityEncoder``                    :class:`FastModalityEncoder`: output in the      everywhere
                                       projection's dtype (bf16 under autocast)
``AttentionLayer``                     :class:`FastAttentionLayer`: head-major blocks,  CPU
                                       one ``baddbmm``, :func:`dropout`
``MaskedGCN`` (edge list, PyG)         :class:`DenseMaskedGCN`: per-dialogue matrix     everywhere
                                       products (:class:`_DenseLayer`, backward
                                       written out), banded for short windows
``nn.Linear``                          :class:`~safsd_glnet.model.row_buckets.          CPU, bf16
                                       BucketedLinear`: rows padded to a few buckets
=====================================  ==============================================  ==========

Why each kernel stays: ``torch.compile`` (Inductor, ``dynamic=True``, the masks from torch's
generator as ``train.compile`` uses it) of the readable module it replaces is slower in every
case, so none meets issue 24's rule for deletion (compiled within 10% of the kernel).
One training step's forward and backward of the module alone, on the inputs it receives in
the paper-size model on one IEMOCAP-shaped batch, fastest of 3 interleaved rounds, 2 threads,
the 2-core Xeon with AMX-BF16 (``benchmarks/compile_speed.py``,
``benchmarks/results/compile_kernels_cpu.json``); compiled readable / kernel, fp32 and bf16:
:class:`Dropout` 11.8x and 9.9x (Inductor's own random numbers: 9.0x both);
:class:`FastPacking` 6.3x and 2.7x; :class:`FastModalityEncoder` 1.56x and 2.73x;
:class:`FastAttentionLayer` 1.89x and 2.27x; :class:`DenseMaskedGCN` 58x and 110x (PyG's
edge lists compile to per-edge code as they run). :class:`~safsd_glnet.model.row_buckets.BucketedLinear`
stands apart: it computes no faster per product but lets bf16 products on the CPU reuse a few
compiled shapes (MELD-shaped bf16 epochs 1.27x faster, 0.11 GiB smaller; its module says how).

Long dialogues: at inference (eval mode, no gradient), a batch padded to more than
:data:`safsd_glnet.model.long_dialogues.BLOCKED_ABOVE` utterances runs the attention and the graph of
:class:`FastAttentionLayer` and :class:`DenseMaskedGCN` in blocks of query rows
(:mod:`safsd_glnet.model.long_dialogues`: the same numbers in bounded memory, tested equal).

Each is tested equal to the module it replaces (tests/model/test_kernels.py: forward and gradients
on random inputs, in fp32 and under bf16 autocast; dropout in distribution), and
benchmarks/speed.py measures what it buys: dropout was 15% of a paper-size CPU training step,
autograd's gradient of ``index_select`` is ~10x slower than a copy, and the PyG layer is 2x
slower than the dense one at 8 utterances per dialogue, 12x at 32 and 190x at 128 (per-edge
tensors).

bf16. Under bf16 autocast the kernels keep every activation between the matrix products in
bf16 (:class:`FastModalityEncoder` starts the streams in bf16; masks, packing, the attention
and the GCN follow their input's dtype), so that nothing converts between layers; the
parameters, their gradients and the optimiser stay float32, and the logits leave the model
as float32 for the losses. The readable model under the same autocast runs its residual
streams in float32 (it adds float32 position and speaker terms); the two agree to bf16's
error.

Shape legend as in :mod:`safsd_glnet.model.network`; c chunks, w window width.

Over 600 lines on purpose: one fast class per readable one, kept together so that each pair and
its proof of equality (tests/model/test_kernels.py) read side by side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import long_dialogues
from .network import AttentionLayer, MaskedGCN, ModalityEncoder, Packing, SAFSDGLNet
from .row_buckets import BucketedLinear

# --------------------------------------------------------------------------- dropout


def _random_words(count: int, device) -> Tensor:
    """``count`` int64 words of 64 uniform random bits from torch's generator."""
    return torch.empty(count, dtype=torch.int64, device=device).random_(-2**63, 2**63 - 1)


_HALF_TABLES: dict[tuple[torch.dtype, str], Tensor] = {}


def _half_mask(numel: int, dtype: torch.dtype, device) -> Tensor:
    """The mask of p = 1/2: 0 or 2.0, each with probability 1/2, one random bit per element.

    Each random byte selects a row of a (256, 8) table whose row b holds 2.0 where bit j of b
    is set and 0 elsewhere, so one ``index_select`` turns numel / 8 random bytes into the
    finished mask in ``dtype``: 1/8 of the random numbers of 8-bit lanes, and no comparison,
    conversion or scaling pass. Shape (numel,).
    """
    key = (dtype, str(device))
    if key not in _HALF_TABLES:
        bits = (torch.arange(256)[:, None] >> torch.arange(8)[None, :]) & 1
        _HALF_TABLES[key] = (2 * bits).to(dtype=dtype, device=device)
    random_bytes = _random_words(-(-numel // 64), device).view(torch.uint8).to(torch.int32)
    return torch.index_select(_HALF_TABLES[key], 0, random_bytes).view(-1)[:numel]


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype,
              device: torch.device | str = "cpu") -> Tensor:
    """The mask of inverted dropout: ``1 / (1 - q)`` where an element is kept, 0 where it is
    dropped, in ``dtype``; q is p rounded to a multiple of 2^-16 (below 1).

    p = 1/2 (the paper's dropout and feature mask) takes one random bit per element
    (:func:`_half_mask`). Otherwise each element reads one lane of ``random_`` int64 words and
    is dropped when its lane falls in the lowest ``q 2^bits`` of its 2^bits values, so it is
    kept with probability exactly 1 - q, and scaling by 1 / (1 - q) keeps ``E[mask] = 1``;
    lanes are 8 bits (8 per word) where q is a multiple of 2^-8, else 16 bits (4 per word).
    torch's float draws (``rand``, ``bernoulli_``) take one 32-bit number per element from a
    serial generator; fewer draws make the mask several times faster, which matters most in
    bf16, where the rest of the step got 2-5x faster. Shape ``shape`` -> ``shape``.
    """
    drop = min(round(p * 65536), 65535)
    numel = math.prod(shape)
    if drop == 32768:
        return _half_mask(numel, dtype, device).view(shape)
    bits, lane = (8, torch.int8) if drop % 256 == 0 else (16, torch.int16)
    drop >>= 16 - bits  # dropped lanes: the lowest `drop` of 2^bits values
    per_word = 64 // bits
    lanes = _random_words(-(-numel // per_word), device).view(lane)[:numel].view(shape)
    return (lanes >= drop - (1 << (bits - 1))).to(dtype).mul_((1 << bits) / ((1 << bits) - drop))


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout`` (inverted: kept values scaled by 1 / (1 - p)) with the same distribution.

    On the CPU the mask is :func:`keep_mask` (p rounded to 2^-16) in ``x``'s dtype, applied by
    one multiplication forward and one backward; in bf16 it stays bf16 (half the bytes of a
    float32 mask and no conversion). ``F.dropout`` draws with the serial ``bernoulli_`` and
    applies it in three passes, 5-10x slower. Elsewhere (CUDA's fused kernels are fast) it
    is ``F.dropout``.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    return x * keep_mask(x.shape, p, x.dtype, x.device)


class Dropout(nn.Dropout):
    """``nn.Dropout`` through :func:`dropout`."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


# --------------------------------------------------------------------------- encoders


class FastModalityEncoder(ModalityEncoder):
    """:class:`~safsd_glnet.model.network.ModalityEncoder` whose output keeps the dtype of its
    projection: bf16 under bf16 autocast, where the readable encoder adds the float32 position
    code and speaker embedding and so returns float32.

    That float32 stream would make every later layer convert: each linear layer casts its
    input to bf16, and each residual sum and concatenation mixes bf16 with float32 and comes
    out float32 again. With a bf16 stream, everything between the matrix products (residuals,
    layer norms, gates, dropout, packing, the GCN) moves half the bytes and converts nothing;
    the parameters, their gradients, the optimiser and the losses stay float32 (the logits
    leave the model as float32). Outside autocast it computes exactly what the readable
    encoder does.
    """

    def forward(self, x: Tensor, speaker_emb: Tensor, position_enc: Tensor) -> Tensor:
        if self.standardise:
            x = (x - self.mean) / self.std
        h = self.proj(x)
        return self.dropout(h + position_enc.to(h.dtype) + speaker_emb.to(h.dtype))


# --------------------------------------------------------------------------- packing


def _pack(x: Tensor, index: Tensor) -> Tensor:
    """(..., b, n, F) -> (..., N, F): the rows of real utterances."""
    return x.flatten(-3, -2).index_select(-2, index)


def _pad(x: Tensor, real: Tensor, index: Tensor) -> Tensor:
    """(..., N, F) -> (..., b, n, F) with zero rows at padding (``index_copy_``: 2-4x faster
    than ``masked_scatter_``, which scans the mask for every call)."""
    out = x.new_zeros(*x.shape[:-2], real.numel(), x.shape[-1]).index_copy_(-2, index, x)
    return out.unflatten(-2, real.shape)


class _PackFn(torch.autograd.Function):
    """:func:`_pack` whose backward is :func:`_pad`: autograd's own ``index_select`` backward
    (``index_add_``) is ~10x slower on the CPU, and the indices never repeat."""

    @staticmethod
    def forward(ctx, x: Tensor, real: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(real, index)
        return _pack(x, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        real, index = ctx.saved_tensors
        return _pad(grad, real, index), None, None


class _PadFn(torch.autograd.Function):
    """:func:`_pad` whose backward is :func:`_pack`."""

    @staticmethod
    def forward(ctx, x: Tensor, real: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(real, index)
        return _pad(x, real, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        _, index = ctx.saved_tensors
        return _pack(grad, index), None, None


class FastPacking(Packing):
    """:class:`~safsd_glnet.model.network.Packing` whose gradients are plain copies."""

    def pack(self, x: Tensor) -> Tensor:
        return _PackFn.apply(x, self.real, self.index)

    def pad(self, x: Tensor) -> Tensor:
        return _PadFn.apply(x, self.real, self.index)


# --------------------------------------------------------------------------- attention


class _PadHeads(torch.autograd.Function):
    """(N, c h d) packed rows -> (c, h, b n, d): c groups (query; key and value) of h heads,
    head-major and zero at padding, in one copy; backward one ``index_select``.

    Head-major, the attention's batched products run on contiguous (h b, n, d) blocks; the
    padded (b, h, n, d) views of the readable layer make ``matmul`` copy every operand first.
    """

    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, total: int, groups: int, heads: int) -> Tensor:
        rows, width = x.shape
        ctx.save_for_backward(index)
        ctx.width = width
        source = x.view(rows, groups, heads, width // (groups * heads)).permute(1, 2, 0, 3)
        out = x.new_zeros(groups, heads, total, width // (groups * heads))
        out[:, :, index] = source
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        (index,) = ctx.saved_tensors
        rows = grad.permute(2, 0, 1, 3).index_select(0, index)  # (N, c, h, d), contiguous
        return rows.view(len(index), ctx.width), None, None, None, None


class _PackHeads(torch.autograd.Function):
    """(h, b n, d) -> (N, h d): the real rows with their heads side by side, in one copy."""

    @staticmethod
    def forward(ctx, y: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        ctx.shape = y.shape
        return y.permute(1, 0, 2).index_select(0, index).view(len(index), -1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (index,) = ctx.saved_tensors
        heads, total, width = ctx.shape
        out = grad.new_zeros(heads, total, width)
        out[:, index] = grad.view(len(index), heads, width).permute(1, 0, 2)
        return out, None


class FastAttentionLayer(AttentionLayer):
    """:class:`~safsd_glnet.model.network.AttentionLayer` whose attention, on the CPU, runs head-major
    (:meth:`attend_rows`); elsewhere the readable layer (PyTorch's fused
    ``scaled_dot_product_attention``).

    On the CPU the queries, keys and values are padded straight into (h b, n, d) blocks
    (:class:`_PadHeads`), the scores are one ``baddbmm`` that also scales them and adds the
    key mask (0 or -inf), the dropout on the attention weights is :func:`dropout`, and the
    heads go back to packed rows in one copy (:class:`_PackHeads`). It is the readable
    ``softmax(q k^T / sqrt(d) + mask) v`` without the copies that ``matmul`` makes of the
    strided (b, h, n, d) views: the attention without its linear layers takes half the time.
    """

    def attend_rows(self, queries: Tensor, keys_values: Tensor, packing: Packing) -> Tensor:
        """Attention of packed rows: queries (N, H), keys_values (N, 2H) (``query(x)`` and
        ``key_value(context)``), ``packing`` their layout -> (N, H), heads side by side.
        Long dialogues at inference: the same in blocks of query rows
        (:func:`safsd_glnet.model.long_dialogues.attention_in_blocks`)."""
        b, n = packing.real.shape
        hidden = queries.shape[-1]
        heads, width = self.heads, hidden // self.heads
        q = _PadHeads.apply(queries, packing.index, b * n, 1, heads).view(heads * b, n, width)
        k, v = _PadHeads.apply(keys_values, packing.index, b * n, 2, heads).view(2, heads * b, n, width).unbind(0)
        mask = torch.zeros(packing.real.shape, dtype=q.dtype, device=q.device).masked_fill_(~packing.real,
                                                                                            float("-inf"))
        mask = mask[None, :, None, :].expand(heads, b, 1, n).reshape(heads * b, 1, n)
        if long_dialogues.use_blocks(n, self.training):
            y = long_dialogues.attention_in_blocks(q, k, v, mask, 1.0 / math.sqrt(width))
        else:
            scores = torch.baddbmm(mask, q, k.transpose(1, 2), alpha=1.0 / math.sqrt(width))  # (h b, n, n)
            weights = dropout(torch.softmax(scores, dim=-1), self.attn_dropout, self.training)
            y = torch.bmm(weights, v)
        return _PackHeads.apply(y.view(heads, b * n, width), packing.index)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, key_real: Tensor) -> Tensor:
        """The readable attention (off the CPU: PyTorch's fused kernel), in blocks of query rows
        for long dialogues at inference (:func:`safsd_glnet.model.long_dialogues.sdpa_in_blocks`)."""
        if long_dialogues.use_blocks(q.shape[2], self.training):
            return long_dialogues.sdpa_in_blocks(q, k, v, key_real)
        return super().attend(q, k, v, key_real)

    def forward(self, x: Tensor, context: Tensor, packing: Packing) -> Tensor:
        if x.device.type != "cpu":
            return super().forward(x, context, packing)
        return self.add_and_feed_forward(x, self.attend_rows(self.query(x), self.key_value(context), packing))


# --------------------------------------------------------------------------- the dialogue graph, padded

def window_adjacency(lengths: torch.Tensor, max_len: int, window_past: int | None = None,
                     window_future: int | None = None) -> torch.Tensor:
    """(b, n, n) bool adjacency A[d, i, j] of the intra-modal edges j -> i in padded layout."""
    pos = torch.arange(max_len, device=lengths.device)
    real = pos[None, :] < lengths[:, None]  # (b, n)
    adj = real[:, :, None] & real[:, None, :]
    delta = pos[None, :] - pos[:, None]  # [i, j] = j - i
    allowed = delta != 0
    if window_past is not None:
        allowed &= delta >= -window_past
    if window_future is not None:
        allowed &= delta <= window_future
    return adj & allowed[None]


@dataclass
class PaddedGraph:
    """The normalised intra-modal adjacency of a batch in padded layout, built once per forward
    pass and shared by the K layers of :class:`DenseMaskedGCN` (:func:`padded_graph`).

    * dense (``chunk`` is None): ``norm`` (b, n, n), ``norm[d, i, j] = A_ij / sqrt(deg_i deg_j)``;
    * banded (a window much shorter than the dialogues): the n targets are cut into c chunks of
      ``chunk`` positions; chunk k receives from the ``width = chunk + past + future`` sources
      starting at ``k * chunk - past``, and ``norm`` is (b, c, chunk, width). The cost of a
      layer then grows linearly with n instead of quadratically.

    ``inv_deg`` (b, n) is ``1 / deg_i``, the norm of the inter-modal edges (the M nodes of an
    utterance have the same degree). Padded positions have zero rows and columns.
    """

    norm: torch.Tensor
    inv_deg: torch.Tensor
    chunk: int | None = None
    past: int = 0
    future: int = 0

    @property
    def width(self) -> int:
        return (self.chunk or 0) + self.past + self.future


def padded_graph(lengths: torch.Tensor, max_len: int, num_modalities: int, window_past: int | None = None,
                 window_future: int | None = None, chunk: int | None = None) -> PaddedGraph:
    """:class:`PaddedGraph` of the batch (the graph of :func:`safsd_glnet.model.graph.dialogue_graph`
    in padded layout); degrees count intra- plus inter-modal in-edges.

    ``chunk`` None picks: banded with chunks of ``max(32, past + future)`` when both windows
    are set and a window of sources (chunk + past + future) is under half the longest
    dialogue, else dense. An explicit ``chunk`` forces the banded layout (tests use small ones).
    """
    lengths = lengths.to(torch.long)
    bounded = window_past is not None and window_future is not None
    if chunk is None and bounded:
        auto = max(32, window_past + window_future)  # rows per chunk: enough for an efficient matmul
        if 2 * (auto + window_past + window_future) < max_len:
            chunk = auto
    if chunk is None or not bounded:
        adj = window_adjacency(lengths, max_len, window_past, window_future).float()
        deg = (adj.sum(-1) + (num_modalities - 1)).clamp(min=1)  # (b, n)
        inv_sqrt = deg.rsqrt()
        return PaddedGraph(adj * (inv_sqrt[:, :, None] * inv_sqrt[:, None, :]), deg.reciprocal())
    past, future = window_past, window_future
    width = chunk + past + future
    pos = torch.arange(max_len, device=lengths.device)
    real = (pos[None, :] < lengths[:, None]).float()  # (b, n)
    # Sources of chunk k: positions k * chunk - past + w, w < width (zero outside [0, n)).
    real_src = band_windows(real, chunk, past, future)  # (b, c, width)
    target = torch.arange(chunk, device=lengths.device)[:, None]
    delta = torch.arange(width, device=lengths.device)[None, :] - past - target  # j - i, (chunk, width)
    band = ((delta >= -past) & (delta <= future) & (delta != 0)).float()
    real_tgt = band_targets(real, chunk)  # (b, c, chunk)
    adj = real_tgt[..., :, None] * real_src[..., None, :] * band  # (b, c, chunk, width)
    deg = (adj.sum(-1).flatten(1)[:, :max_len] + (num_modalities - 1)).clamp(min=1)  # (b, n)
    inv_sqrt = deg.rsqrt()
    norm = adj * band_targets(inv_sqrt, chunk)[..., :, None] * band_windows(inv_sqrt, chunk, past, future)[..., None, :]
    return PaddedGraph(norm, deg.reciprocal(), chunk, past, future)


def band_targets(x: torch.Tensor, chunk: int) -> torch.Tensor:
    """(..., n) -> (..., c, chunk): positions cut into chunks, zero-padded at the end."""
    n = x.shape[-1]
    n_chunks = -(-n // chunk)
    return F.pad(x, (0, n_chunks * chunk - n)).unflatten(-1, (n_chunks, chunk))


def band_windows(x: torch.Tensor, chunk: int, past: int, future: int) -> torch.Tensor:
    """(..., n) -> (..., c, chunk + past + future): the source window of each chunk of targets,
    zero outside the dialogue. A view of one padded copy (``unfold``), not c copies."""
    n = x.shape[-1]
    n_chunks = -(-n // chunk)
    padded = F.pad(x, (past, n_chunks * chunk + future - n))
    return padded.unfold(-1, chunk + past + future, chunk)


# --------------------------------------------------------------------------- the masked GCN, dense


class _GateTerms(torch.autograd.Function):
    """(P, H) rows, (2, H) vectors -> (P, 2) dot products with each vector.

    Two matrix-vector products forward; backward one (P, 2) @ (2, H) product. MKL runs the
    plain ``x @ w.t()`` (a (P, H) @ (H, 2) product) about 10x slower than two ``mv``, and
    autograd's ``mv`` backward writes two full outer products and adds them."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(x, w)
        return torch.stack([x.mv(w[0]), x.mv(w[1])], dim=1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, w = ctx.saved_tensors
        grad = grad.to(x.dtype).contiguous()  # under autocast the forward ran in lower precision
        return (grad @ w.to(x.dtype) if ctx.needs_input_grad[0] else None,
                (grad.t() @ x).to(w.dtype) if ctx.needs_input_grad[1] else None)


def dense_high_frequency(x: Tensor, weight: Tensor, graph: PaddedGraph) -> Tensor:
    """:class:`~safsd_glnet.model.network.HighFrequencyConv` on the dialogue graph, in padded layout.

    The gate splits, ``w^T [x_i || x_j] = a^T x_i + c^T x_j`` with ``w = [a; c]``, so the
    intra-modal messages of a dialogue are one matrix product
    ``(tanh(s 1^T + 1 r^T) ⊙ A ⊙ D^{-1/2} 1 1^T D^{-1/2}) X`` with ``s = X a``, ``r = X c``,
    and the inter-modal messages are elementwise between the M nodes of an utterance. Edges
    and their per-edge tensors are never materialised. With a banded ``graph`` (a short
    window) the product runs per chunk of targets over its window of sources only, so the
    cost grows linearly with the dialogue length.

    Shapes: x (M, b, n, H), weight (1, 2H), graph from :func:`padded_graph` -> (M, b, n, H).
    Rows of padded utterances receive nothing from real ones and are dropped afterwards.

    Speed notes: ``s`` and ``r`` come from :class:`_GateTerms`; the inter-modal sum is
    M (M - 1) fused multiply-adds over ``unbind`` slices (an einsum over (b n) batches of
    3 x 3 matrices fell into a per-batch loop, and indexing ``x[q]`` would make autograd
    build a full zero gradient per slice).
    """
    num_mod, _, n, hidden = x.shape
    # In x's dtype: MKL's fp32 mv or oneDNN's bf16 one; autograd casts the gradient back.
    sr = _GateTerms.apply(x.reshape(-1, hidden), weight.view(2, hidden).to(x.dtype)).view(*x.shape[:-1], 2)
    s, r = sr.unbind(-1)  # (M, b, n) target term, source term
    norm = graph.norm.to(x.dtype)
    if graph.chunk is None:
        out = (torch.tanh(s[..., :, None] + r[..., None, :]) * norm) @ x  # (M, b, n, H)
    else:
        c, past, future = graph.chunk, graph.past, graph.future
        coef = torch.tanh(band_targets(s, c)[..., :, None] + band_windows(r, c, past, future)[..., None, :])
        chunks = coef.shape[2]
        padded = F.pad(x, (0, 0, past, chunks * c + future - n))
        sources = padded.unfold(2, graph.width, c).transpose(-1, -2)  # (M, b, chunks, width, H)
        out = ((coef * norm) @ sources).flatten(2, 3)[:, :, :n]
    if num_mod == 1:
        return out
    # Inter-modal edges join the nodes of one utterance: norm = 1/deg_i (same degree).
    gate = torch.tanh(s[:, None] + r[None, :]) * graph.inv_deg.to(x.dtype)  # [target k, source q, b, n]
    sources = x.unbind(0)
    targets = []
    for k, out_k in enumerate(out.unbind(0)):
        for q, x_q in enumerate(sources):
            if q != k:
                out_k = torch.addcmul(out_k, gate[k, q, :, :, None], x_q)
        targets.append(out_k)
    return torch.stack(targets)


class _DenseLayer(torch.autograd.Function):
    """One residual layer of :class:`DenseMaskedGCN` over the dense (unwindowed) graph, on
    packed nodes: ``y = h + conv(z)`` with ``z = h ⊙ mask`` (the feature mask; ``mask`` None:
    z = h), and its backward written out.

    The maths is :func:`dense_high_frequency`'s: ``s = Z a``, ``r = Z c``,
    ``T = tanh(s 1^T + 1 r^T)``, intra-modal ``(T ⊙ Nrm) Z`` per dialogue and modality,
    inter-modal ``Σ_{q≠k} tanh(s_k + r_q) / deg ⊙ z_q``. Backward, with ``g = dL/dy``:
    ``dZ = (T ⊙ Nrm)^T g + Σ_k G_kq g_k + ds a^T + dr c^T``, where ``ds, dr`` are the row and
    column sums of ``(g Z^T) ⊙ Nrm ⊙ (1 - T^2)`` plus the inter-modal terms
    ``<g_k, z_q> / deg ⊙ (1 - U^2)``; ``dw = [ds dr]^T Z``; ``dh = g + dZ ⊙ mask``.

    Only the intra-modal product needs the padded (M, b, n, H) layout; everything else (the
    mask, the gate terms, the inter-modal terms, the residual) runs on the N real rows, which
    are about half the padded positions of an IEMOCAP or MELD batch. Autograd's version of the
    same layer spends most of its time on passes over such tensors: temporaries of every
    elementwise step, the gradient sums of tensors read twice, the stacks behind ``unbind``.
    Here the inter-modal terms and the residual accumulate in place (forward and backward),
    the dot products ``<g_k, z_q>`` are ``vecdot`` s and the gate terms' gradient is one
    ``addmm_``.

    Shapes: h (M, N, H), mask like h or None, weight (1, 2H), norm (b, n, n), inv_deg (N,),
    index (N,) the rows' flat positions in the (b n) padded layout -> (M, N, H), in h's dtype
    (or the product's, bf16, where autocast runs on float32 h).
    """

    @staticmethod
    def forward(ctx, h: Tensor, mask: Tensor | None, weight: Tensor, norm: Tensor, inv_deg: Tensor,
                index: Tensor) -> Tensor:
        num_mod, rows, hidden = h.shape
        b, n, _ = norm.shape
        z = h * mask if mask is not None else h.contiguous()
        w = weight.view(2, hidden).to(z.dtype)
        flat = z.view(-1, hidden)
        s, r = flat.mv(w[0]).view(num_mod, rows), flat.mv(w[1]).view(num_mod, rows)
        sp = s.new_zeros(num_mod, b * n).index_copy_(1, index, s).view(num_mod, b, n)
        rp = r.new_zeros(num_mod, b * n).index_copy_(1, index, r).view(num_mod, b, n)
        nrm = norm.to(z.dtype)
        tanh_intra = torch.tanh(sp[..., :, None] + rp[..., None, :])  # (M, b, n, n)
        zp = z.new_zeros(num_mod, b * n, hidden).index_copy_(1, index, z).view(num_mod, b, n, hidden)
        out = torch.matmul(tanh_intra * nrm, zp).view(num_mod, b * n, hidden).index_select(1, index)
        out = out.to(torch.promote_types(out.dtype, h.dtype))  # float32 h under autocast: y in float32
        tanh_inter = None
        inv = inv_deg.to(z.dtype)
        if num_mod > 1:
            tanh_inter = torch.tanh(s[:, None] + r[None, :])  # [target k, source q, N]
            gate = tanh_inter * inv
            for k in range(num_mod):
                for q in range(num_mod):
                    if q != k:
                        out[k].addcmul_(gate[k, q, :, None], z[q])
        out.add_(h)
        ctx.save_for_backward(z, zp, mask, w, tanh_intra, nrm, tanh_inter, inv, index)
        ctx.weight_dtype = weight.dtype
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, zp, mask, w, tanh_intra, nrm, tanh_inter, inv, index = ctx.saved_tensors
        num_mod, rows, hidden = z.shape
        _, b, n, _ = zp.shape
        g = grad.to(z.dtype).contiguous()
        gp = g.new_zeros(num_mod, b * n, hidden).index_copy_(1, index, g).view(num_mod, b, n, hidden)
        coef = tanh_intra * nrm
        grad_z = torch.matmul(coef.transpose(-1, -2), gp).view(num_mod, b * n, hidden).index_select(1, index)
        pre = torch.matmul(gp, zp.transpose(-1, -2)).mul_(nrm).mul_(1 - tanh_intra * tanh_intra)  # (M, b, n, n)
        grad_s = pre.sum(-1).view(num_mod, b * n).index_select(1, index)  # (M, N)
        grad_r = pre.sum(-2).view(num_mod, b * n).index_select(1, index)
        if tanh_inter is not None:
            gate = tanh_inter * inv
            dots = torch.zeros_like(tanh_inter)  # <g_k, z_q>
            for k in range(num_mod):
                for q in range(num_mod):
                    if q != k:
                        dots[k, q] = torch.linalg.vecdot(g[k], z[q])
                        grad_z[q].addcmul_(gate[k, q, :, None], g[k])
            pre_inter = dots.mul_(inv).mul_(1 - tanh_inter * tanh_inter)  # diagonal stays 0
            grad_s = grad_s + pre_inter.sum(1)
            grad_r = grad_r + pre_inter.sum(0)
        grad_sr = torch.stack([grad_s, grad_r], dim=-1).view(-1, 2)  # (M N, 2)
        grad_z.view(-1, hidden).addmm_(grad_sr, w)  # + ds a^T + dr c^T
        grad_w = (grad_sr.t() @ z.view(-1, hidden)).view(1, -1).to(ctx.weight_dtype)
        grad_h = torch.addcmul(g, grad_z, mask) if mask is not None else grad_z.add_(g)
        return grad_h.to(grad.dtype), None, grad_w, None, None, None


def feature_mask(shape: torch.Size, p: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The GCN's feature mask as a tensor: :func:`keep_mask` on the CPU, ``bernoulli_`` elsewhere."""
    if torch.device(device).type == "cpu":
        return keep_mask(shape, p, dtype, device)
    return torch.empty(shape, dtype=dtype, device=device).bernoulli_(1.0 - p).div_(1.0 - p)


class DenseMaskedGCN(MaskedGCN):
    """:class:`~safsd_glnet.model.network.MaskedGCN` computed per dialogue with dense products instead
    of over the batched edge list: :class:`_DenseLayer` on packed rows over the dense graph
    (full, or a window as long as the dialogues), :func:`dense_high_frequency` in padded
    layout with autograd over a banded one; at inference on long dialogues
    :func:`safsd_glnet.model.long_dialogues.gcn_in_blocks`."""

    def forward(self, nodes: Tensor, speakers: Tensor, lengths: Tensor, packing: Packing) -> Tensor:
        h0 = nodes
        if self.speaker is not None:  # bf16 streams stay bf16
            h0 = torch.cat([nodes[:1] + self.speaker(speakers)[None].to(nodes.dtype), nodes[1:]], dim=0)
        b, n = packing.real.shape
        if long_dialogues.use_blocks(n, self.training):  # no (b, n, n) graph: blocks of targets
            h = long_dialogues.gcn_in_blocks(h0, [conv.gate.weight for conv in self.convs], lengths,
                                             self.cfg.window_past, self.cfg.window_future)
            return torch.cat([h0, h], dim=-1)
        graph = padded_graph(lengths, n, nodes.shape[0], self.cfg.window_past,
                             self.cfg.window_future)  # once for the K layers
        p = self.node_dropout.p if self.training else 0.0
        if graph.chunk is None:  # the dense graph: the written-out layer on packed rows
            inv_deg = graph.inv_deg.reshape(-1).index_select(0, packing.index)  # (N,)
            h = h0
            for conv in self.convs:
                mask = feature_mask(h.shape, p, h.dtype, h.device) if p > 0 else None
                h = _DenseLayer.apply(h, mask, conv.gate.weight, graph.norm, inv_deg, packing.index)
            return torch.cat([h0, h], dim=-1)
        # banded (a short window on long dialogues): autograd through the chunked product, padded
        h = packing.pad(h0)
        for conv in self.convs:
            h = h + dense_high_frequency(self.node_dropout(h), conv.gate.weight, graph)
        return torch.cat([h0, packing.pack(h)], dim=-1)


# --------------------------------------------------------------------------- installing


_SWAPS = ((nn.Dropout, Dropout), (ModalityEncoder, FastModalityEncoder), (AttentionLayer, FastAttentionLayer),
          (MaskedGCN, DenseMaskedGCN), (nn.Linear, BucketedLinear))


def install(model: SAFSDGLNet) -> SAFSDGLNet:
    """Swap the kernels into ``model`` (in place); see the module docstring."""
    for module in model.modules():
        for readable, fast in _SWAPS:
            if type(module) is readable:
                module.__class__ = fast
    model.packing_class = FastPacking
    return model


def uninstall(model: SAFSDGLNet) -> SAFSDGLNet:
    """Put the readable modules of :mod:`safsd_glnet.model.network` back (in place)."""
    for module in model.modules():
        for readable, fast in _SWAPS:
            if type(module) is fast:
                module.__class__ = readable
    model.packing_class = Packing
    return model
