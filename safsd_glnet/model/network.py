"""SAFSD-GLNet: modality encoders, modality-hybrid attention, masked GCN, teacher and students.

The paper ("A Global-Local Fusion Network with Similarity-Aware Focal Self-Distillation for
Multimodal Emotion Recognition in Conversations") is not public; SPEC.md fixes every decision
this file implements. It reads from the leaves up, in plain PyTorch and PyTorch Geometric:

1. :class:`ModalityEncoder`: ``Linear(d_m, H, bias=False)`` (a 1x1 temporal convolution) +
   sinusoidal position + learned speaker embedding -> (N, H) per modality.
2. :class:`HybridAttention` ("global" fusion): per target modality one self-attention and
   M - 1 cross-attention :class:`AttentionBlock` stacks, each output gated by
   ``g = sigmoid(W h) * h``, concatenated (M H) and mapped back to H -> F'_m.
3. Transfer to node features: padding is dropped, each real utterance gives M nodes.
4. :class:`MaskedGCN` ("local" fusion): K :class:`HighFrequencyConv` layers over the dialogue
   graph (:mod:`safsd_glnet.model.graph`), residual, a Bernoulli feature mask in training only;
   each node returns ``[input || output]`` (2H).
5. Teacher: ``Linear(M 2H, C)`` on the concatenated nodes of an utterance (the prediction).
   Students: one ``ReLU -> Dropout -> Linear(H, C)`` per modality on F'_m.

Shape legend: b dialogues in a batch, n longest dialogue, N real utterances in the batch
(dialogue-major), H hidden size, M modalities, C classes, d_m input size of modality m.

Position-wise layers (encoders, projections, feed-forward, gates, heads) run on the N real
utterances only (:class:`Packing`): a batch of IEMOCAP dialogues is about half padding, and
nothing a row computes depends on the others. Only attention sees the padded (b, n) layout,
with padded keys masked.

Speed: :mod:`safsd_glnet.model.kernels` computes the same maths faster (a CPU dropout, written-out
attention, a dense per-dialogue GCN instead of the edge list, cheaper packing gradients).
The kit's training and loading (:func:`safsd_glnet.training.train.build_model`,
:func:`~safsd_glnet.training.train.load_model`) swap those modules into this readable model with
:func:`safsd_glnet.model.kernels.install`; the parameters and the state dict do not change, and
tests prove each kernel equal to the module it replaces. A model built directly from this
class computes with the readable modules.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from ..config import ModelConfig
from .graph import dialogue_graph, symmetric_norm

if TYPE_CHECKING:  # the model reads a batch's fields; it needs the data layer only for the annotation
    from ..data.batching import Batch


class Packing:
    """Moves per-utterance tensors between the padded batch layout and the real utterances.

    ``real`` (b, n) bool marks real utterances; their order, flattened, is the order of every
    output (dialogue-major). :meth:`pack` (..., b, n, F) -> (..., N, F); :meth:`pad`
    (..., N, F) -> (..., b, n, F) with zero rows at padding.
    """

    def __init__(self, real: Tensor):
        self.real = real
        self.index = real.reshape(-1).nonzero().squeeze(1)  # (N,) flat positions of real utterances
        self.positions = self.index % real.shape[1]  # (N,) position of each utterance in its dialogue

    def pack(self, x: Tensor) -> Tensor:
        return x.flatten(-3, -2).index_select(-2, self.index)

    def pad(self, x: Tensor) -> Tensor:
        out = x.new_zeros(*x.shape[:-2], *self.real.shape, x.shape[-1])
        return out.masked_scatter(self.real[..., None], x)


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
    """x (N, d_m) real utterances -> dropout(z(x) W + PE[position] + speaker) (N, H).

    With ``standardise``, ``z(x) = (x - mu) / sigma`` per input dimension, where mu and sigma
    (buffers, so they travel in the state dict and every checkpoint) are the training split's
    (:meth:`SAFSDGLNet.fit_standardisation`); without it z is the identity. Sentence encoders
    emit vectors of norm 1 (a dimension's std is about 0.05) and openSMILE functionals span
    orders of magnitude, so unscaled inputs either vanish under the position and speaker
    terms or swamp them.
    """

    def __init__(self, in_size: int, hidden: int, dropout: float, standardise: bool = False):
        super().__init__()
        self.proj = nn.Linear(in_size, hidden, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.standardise = standardise
        if standardise:
            self.register_buffer("mean", torch.zeros(in_size))
            self.register_buffer("std", torch.ones(in_size))

    def forward(self, x: Tensor, speaker_emb: Tensor, position_enc: Tensor) -> Tensor:
        if self.standardise:
            x = (x - self.mean) / self.std
        return self.dropout(self.proj(x) + position_enc.to(x.dtype) + speaker_emb)


class AttentionLayer(nn.Module):
    """One post-LN Transformer encoder layer whose keys and values may come from another stream.

    .. math::
        z = \\mathrm{LN}(x + \\mathrm{MHA}(x W_q, c W_k, c W_v)),\\quad
        y = \\mathrm{LN}(z + \\mathrm{FF}(z)),\\quad \\mathrm{FF} = W_2\\,\\mathrm{GELU}(W_1 z)

    Shapes: x (N, H) queries, c (N, H) keys/values (c = x for self-attention), both packed
    real utterances, ``packing`` their layout -> (N, H). The attention itself
    (:meth:`attend`) runs padded, (b, heads, n, n), with padded keys masked out.
    """

    def __init__(self, hidden: int, heads: int, ff_width: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key_value = nn.Linear(hidden, 2 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm_attn = nn.LayerNorm(hidden)
        self.norm_ff = nn.LayerNorm(hidden)
        self.ff = nn.Sequential(nn.Linear(hidden, ff_width), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(ff_width, hidden))
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = dropout

    def attend(self, q: Tensor, k: Tensor, v: Tensor, key_real: Tensor) -> Tensor:
        """``softmax(q k^T / sqrt(d_h) + mask) v`` with dropout on the weights in training.

        Shapes: q, k, v (b, heads, n, d_h), key_real (b, n) -> (b, heads, n, d_h)."""
        p = self.attn_dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_real[:, None, None, :], dropout_p=p)

    def forward(self, x: Tensor, context: Tensor, packing: Packing) -> Tensor:
        b, n = packing.real.shape
        hidden = x.shape[-1]
        h, dh = self.heads, hidden // self.heads
        q = packing.pad(self.query(x)).view(b, n, h, dh).transpose(1, 2)
        k, v = packing.pad(self.key_value(context)).view(b, n, 2, h, dh).permute(2, 0, 3, 1, 4)
        attn = self.attend(q, k, v, packing.real)  # (b, h, n, dh)
        attn = packing.pack(attn.transpose(1, 2).reshape(b, n, hidden))  # (N, H)
        return self.add_and_feed_forward(x, attn)

    def add_and_feed_forward(self, x: Tensor, attn: Tensor) -> Tensor:
        """``z = LN(x + dropout(attn W_o))``, then ``LN(z + dropout(FF(z)))``.

        Shapes: x, attn (N, H) packed rows -> (N, H). Every operation is row-wise, so the
        region has no data-dependent shape: this is what ``train.compile`` hands to the
        compiler (:mod:`safsd_glnet.model.compiled`), with the number of rows N symbolic."""
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
    """Gated high-frequency graph convolution: the layer of M3Net (Chen et al., "Multivariate,
    Multi-frequency and Multimodal: Rethinking Graph Neural Networks for Emotion Recognition in
    Conversation", CVPR 2023), after FAGCN (Bo et al., "Beyond Low-frequency Information in Graph
    Convolutional Networks", AAAI 2021, https://arxiv.org/abs/2101.00797).

    .. math::
        \\mathbf{x}'_i = \\sum_{j \\in \\mathcal{N}(i)} \\frac{1}{\\sqrt{d_i d_j}}
        \\tanh\\left(\\mathbf{w}^\\top [\\mathbf{x}_i \\,\\|\\, \\mathbf{x}_j]\\right) \\mathbf{x}_j

    The tanh gate can be negative, so a node can subtract a neighbour (a high-pass filter) as
    well as add it. In :meth:`message`, ``x_i`` is the target and ``x_j`` the source.

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


class MaskedGCN(nn.Module):
    """K residual high-frequency layers with a training-only Bernoulli feature mask.

    .. math::
        H^{(0)} = F',\\ H^{(0)}_t \\mathrel{+}= E_{spk},\\quad
        H^{(k+1)} = H^{(k)} + \\mathrm{Conv}_k\\big(\\tfrac{B^{(k)} \\odot H^{(k)}}{1 - p}\\big),
        \\quad B^{(k)} \\sim \\mathrm{Bernoulli}(1 - p)\\ \\text{(training only)}

    The graph has M N nodes (node k N + u is modality k of utterance u) and the edges of
    :func:`~safsd_glnet.model.graph.dialogue_graph`. Output per node: ``[H^{(0)} || H^{(K)}]`` (2H).

    Shapes: nodes (M, N, H) real utterances, speakers (N,), lengths (b,), ``packing`` their
    layout -> (M, N, 2H).
    """

    def __init__(self, cfg: ModelConfig, has_text: bool, num_speakers: int):
        super().__init__()
        self.cfg = cfg
        self.has_text = has_text
        # Only text nodes get the speaker (SPEC.md); without text the graph has no speaker term.
        self.speaker = nn.Embedding(num_speakers, cfg.hidden) if has_text else None
        self.convs = nn.ModuleList(HighFrequencyConv(cfg.hidden) for _ in range(cfg.gcn_layers))
        # The feature mask is dropout on node features: kept values are rescaled by 1 / (1 - p).
        self.node_dropout = nn.Dropout(cfg.effective_mask_prob)

    def forward(self, nodes: Tensor, speakers: Tensor, lengths: Tensor, packing: Packing) -> Tensor:
        num_mod, num_utt, hidden = nodes.shape
        h0 = nodes
        if self.speaker is not None:  # speaker identity enters the graph through the text nodes (index 0)
            h0 = torch.cat([nodes[:1] + self.speaker(speakers)[None], nodes[1:]], dim=0)
        edges = dialogue_graph(lengths, num_mod, self.cfg.window_past, self.cfg.window_future)
        norm = symmetric_norm(edges, num_mod * num_utt)
        h = h0.reshape(-1, hidden)  # (M N, H), node k N + u
        for conv in self.convs:
            h = h + conv(self.node_dropout(h), edges, norm)
        return torch.cat([h0, h.view(num_mod, num_utt, hidden)], dim=-1)


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
        num_speakers (int): size of the speaker vocabulary (only real utterances look a speaker up).
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
        self.speaker = nn.Embedding(num_speakers, cfg.hidden)
        self.encoders = nn.ModuleDict({m: ModalityEncoder(feature_sizes[m], cfg.hidden, cfg.dropout, cfg.standardise)
                                       for m in self.modalities})
        self.attention = HybridAttention(self.modalities, cfg) if cfg.use_transformer else None
        self.gcn = MaskedGCN(cfg, "t" in self.modalities, num_speakers) if cfg.use_gcn else None
        node_width = 2 * cfg.hidden if cfg.use_gcn else cfg.hidden
        self.teacher = nn.Linear(len(self.modalities) * node_width, num_classes)
        self.students = nn.ModuleDict({
            m: nn.Sequential(nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, num_classes))
            for m in self.modalities})
        self.packing_class = Packing  # kernels.install swaps in FastPacking

    @torch.no_grad()
    def fit_standardisation(self, features: dict[str, Tensor]) -> None:
        """Set each encoder's mean and std from ``features`` (m -> (N, d_m), the training split's
        utterances), computed in float64; a constant dimension gets std 1 (centred, not blown up)."""
        for m, x in features.items():
            encoder = self.encoders[m]
            if not encoder.standardise:
                continue
            x = x.to(torch.float64)
            std = x.std(dim=0, unbiased=False)
            encoder.mean.copy_(x.mean(dim=0))
            encoder.std.copy_(torch.where(std < 1e-8, torch.ones_like(std), std))

    def forward(self, batch: Batch) -> ModelOutput:
        packing = self.packing_class(batch.real)
        positions = sinusoidal_positions(batch.real.shape[1], self.cfg.hidden, batch.real.device)[packing.positions]
        speakers = batch.speakers[batch.real]  # (N,)
        speaker_emb = self.speaker(speakers)  # (N, H)
        streams = {m: self.encoders[m](packing.pack(batch.features[m]), speaker_emb, positions)
                   for m in self.modalities}  # m -> (N, H)
        if self.attention is not None:
            streams = self.attention(streams, packing)
        student_features = streams
        if self.gcn is not None:
            nodes = self.gcn(torch.stack([streams[m] for m in self.modalities]), speakers, batch.lengths,
                             packing)  # (M, N, 2H)
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


SPEAKER_TABLES = ("speaker.weight", "gcn.speaker.weight")


def drop_speaker_padding_rows(state: dict[str, Tensor], num_speakers: int) -> dict[str, Tensor]:
    """``state`` with the speaker embeddings of 0.x checkpoints cut to the rows the model uses.

    Those versions gave each speaker table (``speaker``, ``gcn.speaker``) one row more, a padding
    index that no lookup reached (the model reads speakers of real utterances only), so the first
    ``num_speakers`` rows are the whole trained table and outputs do not change. Other tensors, and
    tables of any other shape (which the caller's shape check then refuses), are left as they are."""
    out = dict(state)
    for key in SPEAKER_TABLES:
        table = out.get(key)
        if isinstance(table, Tensor) and table.dim() == 2 and table.shape[0] == num_speakers + 1:
            out[key] = table[:num_speakers]
    return out
