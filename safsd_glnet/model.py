"""SAFSD-GLNet: modality encoders, modality-hybrid attention, masked GCN, teacher and students.

Shape letters: b dialogues in a batch, n longest dialogue, H hidden size, M modalities,
N real utterances in the batch, C classes, d_m input feature size of modality m.

Data flow (SPEC.md, "Architecture"), read from the leaves up:

1. :class:`ModalityEncoder`: ``Linear(d_m, H, bias=False)`` (a 1x1 temporal convolution) +
   sinusoidal position + learned speaker embedding -> (b, n, H) per modality.
2. :class:`HybridAttention`: per target modality one self-attention and M - 1
   cross-attention :class:`AttentionBlock` stacks, each output gated by
   ``g = sigmoid(W h) * h``, concatenated (M H) and mapped back to H -> F'_m (b, n, H).
3. Transfer to node features: padding is dropped, each real utterance gives M nodes.
4. :class:`MaskedGCN`: K :class:`HighFrequencyConv` layers over the dialogue graph
   (:mod:`safsd_glnet.graph`), residual, Bernoulli feature mask in training only; each node
   returns ``[input || output]`` (2H).
5. Teacher: ``Linear(M 2H, C)`` on the concatenated nodes of an utterance. Students: one
   ``ReLU -> Dropout -> Linear(H, C)`` per modality on F'_m.

Speed (the same maths, benchmarks/speed.py measures it): every position-wise layer (encoders,
projections, feed-forward, gates, heads) runs on the N real utterances only, packed
(:class:`Packing`); only attention and the dense GCN see the padded (b, n) layout, where
padding is masked. A batch of IEMOCAP dialogues is about half padding. On the CPU, dropout
and the GCN's feature mask draw their keep-masks with :func:`torch.rand` (:func:`dropout`),
several times faster than ``bernoulli_``, and attention with dropout is computed explicitly
so that its mask is drawn the same way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from .config import ModelConfig
from .data.batching import Batch
from .graph import PaddedGraph, band_targets, band_windows, dialogue_graph, padded_graph, symmetric_norm


def _pack(x: Tensor, mask: Tensor, index: Tensor) -> Tensor:
    """(..., b, n, F) -> (..., N, F): the rows of real utterances."""
    return x.flatten(-3, -2).index_select(-2, index)


def _pad(x: Tensor, mask: Tensor, index: Tensor) -> Tensor:
    """(..., N, F) -> (..., b, n, F) with zero rows at padding."""
    out = x.new_zeros(*x.shape[:-2], *mask.shape, x.shape[-1])
    return out.masked_scatter_(mask[..., None], x)


class _PackFn(torch.autograd.Function):
    """:func:`_pack` whose backward is :func:`_pad`: autograd's own ``index_select`` backward
    (``index_add_``) is ~10x slower on the CPU, and the indices never repeat."""

    @staticmethod
    def forward(ctx, x: Tensor, mask: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(mask, index)
        return _pack(x, mask, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _pad(grad, *ctx.saved_tensors), None, None


class _PadFn(torch.autograd.Function):
    """:func:`_pad` whose backward is :func:`_pack`."""

    @staticmethod
    def forward(ctx, x: Tensor, mask: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(mask, index)
        return _pad(x, mask, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _pack(grad, *ctx.saved_tensors), None, None


class Packing:
    """Moves per-utterance tensors between the padded batch layout and the packed real
    utterances (dialogue-major, the order of ``mask`` flattened: the order of every output).

    Shapes: mask (b, n) bool; :meth:`pack` (..., b, n, F) -> (..., N, F); :meth:`pad`
    (..., N, F) -> (..., b, n, F) with zeros at padded positions.
    """

    def __init__(self, mask: Tensor):
        self.mask = mask
        self.index = mask.reshape(-1).nonzero().squeeze(1)  # (N,) flat positions of real utterances
        self.positions = self.index % mask.shape[1]  # (N,) position of each utterance in its dialogue

    def pack(self, x: Tensor) -> Tensor:
        return _PackFn.apply(x, self.mask, self.index)

    def pad(self, x: Tensor) -> Tensor:
        return _PadFn.apply(x, self.mask, self.index)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout`` (inverted: kept values scaled by 1 / (1 - p)) with the same distribution.

    On the CPU the mask is ``(torch.rand(...) >= p) / (1 - p)`` (kept with probability
    1 - p, up to the 2^-24 steps of a float32 uniform), applied by one multiplication
    forward and one backward. ``F.dropout`` draws it with the serial ``bernoulli_`` and
    applies it in three passes, 3-4x slower; dropout was 15% of a paper-size training step.
    Elsewhere (CUDA's fused kernels are fast) it is ``F.dropout``.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    exact = x.dtype in (torch.float32, torch.float64)  # draw half-precision masks in float32
    uniform = torch.rand(x.shape, device=x.device, dtype=x.dtype if exact else torch.float32)
    return x * uniform.ge_(p).mul_(1.0 / (1.0 - p)).to(x.dtype)


class Dropout(nn.Dropout):
    """``nn.Dropout`` through :func:`dropout` (the same module for state dicts and ``train()``)."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


def sinusoidal_positions(length: int, hidden: int, device=None) -> Tensor:
    """(length, hidden) ``PE[p, 2k] = sin(p / 10000^(2k/H))``, ``PE[p, 2k+1] = cos(...)``."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, hidden, 2, device=device, dtype=torch.float32)
                     * (-math.log(10000.0) / hidden))
    pe = torch.zeros(length, hidden, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : hidden // 2]
    return pe


class ModalityEncoder(nn.Module):
    """x (N, d_m) real utterances -> dropout(x W + PE[position] + speaker) (N, H)."""

    def __init__(self, in_size: int, hidden: int, dropout: float):
        super().__init__()
        self.proj = nn.Linear(in_size, hidden, bias=False)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, speaker_emb: Tensor, position_enc: Tensor) -> Tensor:
        return self.dropout(self.proj(x) + position_enc.to(x.dtype) + speaker_emb)


class AttentionLayer(nn.Module):
    """One post-LN Transformer encoder layer whose keys and values may come from another stream.

    .. math::
        z = \\mathrm{LN}(x + \\mathrm{MHA}(x W_q, c W_k, c W_v)),\\quad
        y = \\mathrm{LN}(z + \\mathrm{FF}(z)),\\quad \\mathrm{FF} = W_2\\,\\mathrm{GELU}(W_1 z)

    Shapes: x (N, H) queries, c (N, H) keys/values (c = x for self-attention), both packed
    real utterances, ``packing`` their layout -> (N, H). Projections and the feed-forward
    run on the N real rows; only the attention itself is padded to (b, heads, n, n), with
    padded keys masked (their zero rows receive no weight). Attention is PyTorch's fused
    ``scaled_dot_product_attention``, except for training on the CPU, where it is written out
    so that its dropout uses :func:`dropout`.
    """

    def __init__(self, hidden: int, heads: int, ff_width: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key_value = nn.Linear(hidden, 2 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm_attn = nn.LayerNorm(hidden)
        self.norm_ff = nn.LayerNorm(hidden)
        self.ff = nn.Sequential(nn.Linear(hidden, ff_width), nn.GELU(), Dropout(dropout),
                                nn.Linear(ff_width, hidden))
        self.dropout = Dropout(dropout)
        self.attn_dropout = dropout

    def attention(self, q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor) -> Tensor:
        """(b, heads, n, dh) each, key_mask (b, n) -> (b, heads, n, dh)."""
        p = self.attn_dropout if self.training else 0.0
        if p == 0.0 or q.device.type != "cpu":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :], dropout_p=p)
        scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-1, -2)
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        return dropout(torch.softmax(scores, dim=-1), p, True) @ v

    def forward(self, x: Tensor, context: Tensor, packing: Packing) -> Tensor:
        b, n = packing.mask.shape
        hidden = x.shape[-1]
        h, dh = self.heads, hidden // self.heads
        q = packing.pad(self.query(x)).view(b, n, h, dh).transpose(1, 2)
        k, v = packing.pad(self.key_value(context)).view(b, n, 2, h, dh).permute(2, 0, 3, 1, 4)
        attn = self.attention(q, k, v, packing.mask)  # (b, h, n, dh)
        attn = packing.pack(attn.transpose(1, 2).reshape(b, n, hidden))  # (N, H)
        z = self.norm_attn(x + self.dropout(self.out(attn)))
        return self.norm_ff(z + self.dropout(self.ff(z)))


class AttentionBlock(nn.Module):
    """``layers`` stacked :class:`AttentionLayer`; the context stream stays the source modality."""

    def __init__(self, layers: int, hidden: int, heads: int, ff_width: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(AttentionLayer(hidden, heads, ff_width, dropout) for _ in range(layers))

    def forward(self, x: Tensor, context: Tensor | None, packing: Packing) -> Tensor:
        for layer in self.layers:
            x = layer(x, x if context is None else context, packing)
        return x


class HybridAttention(nn.Module):
    """Modality-hybrid attention: for each target m, self-attention on m and cross-attention
    from every other modality, gated and fused.

    .. math::
        F'_m = W_m [\\,g(\\mathrm{SA}(X_m)) \\,\\|\\, g(\\mathrm{CA}(X_m, X_{m'})) \\,\\|\\, \\dots],
        \\quad g(h) = \\sigma(W_g h) \\odot h

    Shapes: streams m -> (N, H) packed real utterances, ``packing`` their layout -> m -> (N, H).
    """

    def __init__(self, modalities: tuple[str, ...], cfg: ModelConfig):
        super().__init__()
        self.modalities = modalities
        ff = cfg.ff_width or cfg.hidden
        self.blocks = nn.ModuleDict()
        self.gates = nn.ModuleDict()
        self.fuse = nn.ModuleDict()
        for target in modalities:
            for source in modalities:
                name = f"{target}_{source}"
                self.blocks[name] = AttentionBlock(cfg.transformer_layers, cfg.hidden, cfg.heads, ff, cfg.dropout)
                self.gates[name] = nn.Linear(cfg.hidden, cfg.hidden)
            self.fuse[target] = nn.Linear(len(modalities) * cfg.hidden, cfg.hidden)

    def forward(self, streams: dict[str, Tensor], packing: Packing) -> dict[str, Tensor]:
        fused = {}
        for target in self.modalities:
            parts = []
            # The self block first, then the cross blocks in t/a/v order.
            for source in (target,) + tuple(m for m in self.modalities if m != target):
                name = f"{target}_{source}"
                context = None if source == target else streams[source]
                h = self.blocks[name](streams[target], context, packing)
                parts.append(torch.sigmoid(self.gates[name](h)) * h)
            fused[target] = self.fuse[target](torch.cat(parts, dim=-1))
        return fused


class HighFrequencyConv(MessagePassing):
    """Gated high-frequency graph convolution (the layer of M3Net, after FAGCN).

    .. math::
        \\mathbf{x}'_i = \\sum_{j \\in \\mathcal{N}(i)} \\frac{1}{\\sqrt{d_i d_j}}
        \\tanh\\left(\\mathbf{w}^\\top [\\mathbf{x}_i \\,\\|\\, \\mathbf{x}_j]\\right) \\mathbf{x}_j

    The tanh gate can be negative, so a node can subtract a neighbour (a high-pass filter)
    as well as add it. This is the general reference for any edge list; :class:`MaskedGCN`
    also computes the same sum densely per dialogue (see :func:`dense_high_frequency`).

    Args:
        hidden (int): node feature size H.

    Shapes:
        x (|V|, H), edge_index (2, |E|) source -> target, norm (|E|,) -> (|V|, H).
    """

    def __init__(self, hidden: int):
        super().__init__(aggr="add")
        self.gate = nn.Linear(2 * hidden, 1, bias=False)

    def forward(self, x: Tensor, edge_index: Tensor, norm: Tensor) -> Tensor:
        return self.propagate(edge_index, x=x, norm=norm)

    def message(self, x_i: Tensor, x_j: Tensor, norm: Tensor) -> Tensor:
        gate = torch.tanh(self.gate(torch.cat([x_i, x_j], dim=-1)))
        return norm.view(-1, 1).to(x_j.dtype) * gate * x_j


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
    """The same layer as :class:`HighFrequencyConv` on the dialogue graph, in padded layout.

    The gate splits, ``w^T [x_i || x_j] = a^T x_i + c^T x_j`` with ``w = [a; c]``, so the
    intra-modal messages of a dialogue are one matrix product
    ``(tanh(s 1^T + 1 r^T) ⊙ A ⊙ D^{-1/2} 1 1^T D^{-1/2}) X`` with ``s = X a``, ``r = X c``,
    and the inter-modal messages are elementwise between the M nodes of an utterance. Edges
    and their per-edge tensors are never materialised. With a banded ``graph`` (a short
    window) the product runs per chunk of targets over its window of sources only, so the
    cost grows linearly with the dialogue length.

    Shapes: x (M, b, n, H), weight (1, 2H), graph from :func:`~safsd_glnet.graph.padded_graph`
    -> (M, b, n, H). Rows of padded utterances receive nothing from real ones and are
    dropped afterwards.

    Speed notes: ``s`` and ``r`` come from :class:`_GateTerms`; the inter-modal sum is
    M (M - 1) fused multiply-adds over ``unbind`` slices (an einsum over (b n) batches of
    3 x 3 matrices fell into a per-batch loop, and indexing ``x[q]`` would make autograd
    build a full zero gradient per slice).
    """
    num_mod, _, n, hidden = x.shape
    sr = _GateTerms.apply(x.reshape(-1, hidden), weight.view(2, hidden)).view(*x.shape[:-1], 2)
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


class MaskedGCN(nn.Module):
    """K residual high-frequency layers with a training-only Bernoulli feature mask.

    .. math::
        H^{(0)} = F',\\ H^{(0)}_t \\mathrel{+}= E_{spk},\\quad
        H^{(k+1)} = H^{(k)} + \\mathrm{Conv}_k\\big(\\tfrac{B^{(k)} \\odot H^{(k)}}{1 - p}\\big),
        \\quad B^{(k)} \\sim \\mathrm{Bernoulli}(1 - p)\\ \\text{(training only)}

    Output per node: ``[H^{(0)} || H^{(K)}]`` (2H). ``impl="pyg"`` runs
    :class:`HighFrequencyConv` over the batched edge list; ``impl="dense"`` computes the same
    sums with per-dialogue matrix products (:func:`dense_high_frequency`).

    Shapes: streams (M, b, n, H), speaker_emb (b, n, H), lengths (b,), mask (b, n)
    -> (M, N, 2H) real utterances only.
    """

    def __init__(self, cfg: ModelConfig, has_text: bool, num_speakers: int):
        super().__init__()
        self.cfg = cfg
        self.has_text = has_text
        # Only text nodes get the speaker (SPEC.md); without text the graph has no speaker term.
        self.speaker = nn.Embedding(num_speakers + 1, cfg.hidden, padding_idx=num_speakers) if has_text else None
        self.convs = nn.ModuleList(HighFrequencyConv(cfg.hidden) for _ in range(cfg.gcn_layers))

    def feature_mask(self, h: Tensor) -> Tensor:
        return dropout(h, self.cfg.effective_mask_prob, self.training)

    def forward(self, streams: Tensor, speakers: Tensor, lengths: Tensor, mask: Tensor,
                impl: str | None = None) -> Tensor:
        impl = impl or self.cfg.gcn_impl
        h0 = streams
        if self.speaker is not None:  # speaker identity enters the graph through the text nodes (index 0)
            h0 = torch.cat([streams[:1] + self.speaker(speakers)[None], streams[1:]], dim=0)
        if impl == "dense":
            graph = padded_graph(lengths, streams.shape[2], streams.shape[0], self.cfg.window_past,
                                 self.cfg.window_future)  # once for the K layers
            h = h0
            for conv in self.convs:
                h = h + dense_high_frequency(self.feature_mask(h), conv.gate.weight, graph)
            packing = Packing(mask)
            return torch.cat([packing.pack(h0), packing.pack(h)], dim=-1)
        num_mod = streams.shape[0]
        nodes0 = h0[:, mask].reshape(-1, h0.shape[-1])  # (M N, H), node k N + u
        edges = dialogue_graph(lengths, num_mod, self.cfg.window_past, self.cfg.window_future)
        norm = symmetric_norm(edges, nodes0.shape[0])
        h = nodes0
        for conv in self.convs:
            h = h + conv(self.feature_mask(h), edges, norm)
        out = torch.cat([nodes0, h], dim=-1)
        return out.view(num_mod, -1, out.shape[-1])


@dataclass
class ModelOutput:
    """Everything the losses, metrics and plots read; N real utterances, dialogue-major."""

    teacher_logits: Tensor  # (N, C)
    student_logits: dict[str, Tensor]  # m -> (N, C)
    teacher_features: Tensor  # (N, M 2H) or (N, M H) without GCN: the teacher's input
    student_features: dict[str, Tensor]  # m -> (N, H): F'_m, the students' input


class SAFSDGLNet(nn.Module):
    """The full model. ``forward(batch) -> ModelOutput`` over the batch's real utterances.

    Args:
        cfg (ModelConfig): architecture and ablation switches.
        feature_sizes (dict): modality -> input size d_m (the corpus's).
        num_classes (int): C.
        num_speakers (int): size of the speaker vocabulary (index ``num_speakers`` pads).
    """

    def __init__(self, cfg: ModelConfig, feature_sizes: dict[str, int], num_classes: int, num_speakers: int):
        super().__init__()
        missing = [m for m in cfg.modalities if m not in feature_sizes]
        if missing:
            raise ValueError(f"SAFSDGLNet: modalities {missing} requested but the data has only "
                             f"{sorted(feature_sizes)}")
        self.cfg = cfg
        self.modalities = cfg.modalities
        self.num_speakers = num_speakers
        self.speaker = nn.Embedding(num_speakers + 1, cfg.hidden, padding_idx=num_speakers)
        self.encoders = nn.ModuleDict({m: ModalityEncoder(feature_sizes[m], cfg.hidden, cfg.dropout)
                                       for m in self.modalities})
        self.attention = HybridAttention(self.modalities, cfg) if cfg.use_transformer else None
        self.gcn = MaskedGCN(cfg, "t" in self.modalities, num_speakers) if cfg.use_gcn else None
        node_width = 2 * cfg.hidden if cfg.use_gcn else cfg.hidden
        self.teacher = nn.Linear(len(self.modalities) * node_width, num_classes)
        self.students = nn.ModuleDict({
            m: nn.Sequential(nn.ReLU(), Dropout(cfg.dropout), nn.Linear(cfg.hidden, num_classes))
            for m in self.modalities})

    def forward(self, batch: Batch) -> ModelOutput:
        mask = batch.mask
        packing = Packing(mask)
        positions = sinusoidal_positions(mask.shape[1], self.cfg.hidden, mask.device)[packing.positions]  # (N, H)
        speaker_emb = self.speaker(batch.speakers[mask])  # (N, H)
        streams = {m: self.encoders[m](packing.pack(batch.features[m]), speaker_emb, positions)
                   for m in self.modalities}  # m -> (N, H)
        if self.attention is not None:
            streams = self.attention(streams, packing)
        student_features = streams
        if self.gcn is not None:
            stacked = packing.pad(torch.stack([streams[m] for m in self.modalities]))  # (M, b, n, H)
            speakers = batch.speakers.masked_fill(~mask, self.num_speakers)
            nodes = self.gcn(stacked, speakers, batch.lengths, mask)  # (M, N, 2H)
            teacher_features = torch.cat(list(nodes), dim=-1)
        else:
            teacher_features = torch.cat([student_features[m] for m in self.modalities], dim=-1)
        return ModelOutput(
            # Logits leave autocast as float32 so that the losses' log-softmax is exact.
            teacher_logits=self.teacher(teacher_features).float(),
            student_logits={m: self.students[m](student_features[m]).float() for m in self.modalities},
            teacher_features=teacher_features,
            student_features=student_features,
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
