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
from .graph import dialogue_graph, symmetric_norm, window_adjacency


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
    """x (b, n, d_m) -> dropout(x W + PE + speaker) (b, n, H)."""

    def __init__(self, in_size: int, hidden: int, dropout: float):
        super().__init__()
        self.proj = nn.Linear(in_size, hidden, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, speaker_emb: Tensor) -> Tensor:
        h = self.proj(x)
        h = h + sinusoidal_positions(x.shape[1], h.shape[-1], x.device).to(h.dtype) + speaker_emb
        return self.dropout(h)


class AttentionLayer(nn.Module):
    """One post-LN Transformer encoder layer whose keys and values may come from another stream.

    .. math::
        z = \\mathrm{LN}(x + \\mathrm{MHA}(x W_q, c W_k, c W_v)),\\quad
        y = \\mathrm{LN}(z + \\mathrm{FF}(z)),\\quad \\mathrm{FF} = W_2\\,\\mathrm{GELU}(W_1 z)

    Shapes: x (b, n, H) queries, c (b, n, H) keys/values (c = x for self-attention),
    key_mask (b, n) True on real utterances -> (b, n, H). Uses PyTorch's fused
    ``scaled_dot_product_attention``.
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

    def forward(self, x: Tensor, context: Tensor, key_mask: Tensor) -> Tensor:
        b, n, hidden = x.shape
        h, dh = self.heads, hidden // self.heads
        q = self.query(x).view(b, n, h, dh).transpose(1, 2)
        k, v = self.key_value(context).view(b, n, 2, h, dh).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_mask[:, None, None, :],
            dropout_p=self.attn_dropout if self.training else 0.0)
        attn = attn.transpose(1, 2).reshape(b, n, hidden)
        z = self.norm_attn(x + self.dropout(self.out(attn)))
        return self.norm_ff(z + self.dropout(self.ff(z)))


class AttentionBlock(nn.Module):
    """``layers`` stacked :class:`AttentionLayer`; the context stream stays the source modality."""

    def __init__(self, layers: int, hidden: int, heads: int, ff_width: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(AttentionLayer(hidden, heads, ff_width, dropout) for _ in range(layers))

    def forward(self, x: Tensor, context: Tensor | None, key_mask: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, x if context is None else context, key_mask)
        return x


class HybridAttention(nn.Module):
    """Modality-hybrid attention: for each target m, self-attention on m and cross-attention
    from every other modality, gated and fused.

    .. math::
        F'_m = W_m [\\,g(\\mathrm{SA}(X_m)) \\,\\|\\, g(\\mathrm{CA}(X_m, X_{m'})) \\,\\|\\, \\dots],
        \\quad g(h) = \\sigma(W_g h) \\odot h

    Shapes: streams m -> (b, n, H), key_mask (b, n) -> m -> (b, n, H).
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

    def forward(self, streams: dict[str, Tensor], key_mask: Tensor) -> dict[str, Tensor]:
        fused = {}
        for target in self.modalities:
            parts = []
            # The self block first, then the cross blocks in t/a/v order.
            for source in (target,) + tuple(m for m in self.modalities if m != target):
                name = f"{target}_{source}"
                context = None if source == target else streams[source]
                h = self.blocks[name](streams[target], context, key_mask)
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


def dense_high_frequency(x: Tensor, weight: Tensor, adjacency: Tensor) -> Tensor:
    """The same layer as :class:`HighFrequencyConv` on the dialogue graph, in padded layout.

    The gate splits, ``w^T [x_i || x_j] = a^T x_i + c^T x_j`` with ``w = [a; c]``, so the
    intra-modal messages of a dialogue are one matrix product
    ``(tanh(s 1^T + 1 r^T) ⊙ A ⊙ D^{-1/2} 1 1^T D^{-1/2}) X`` with ``s = X a``, ``r = X c``,
    and the inter-modal messages are elementwise between the M nodes of an utterance. Edges
    and their per-edge tensors are never materialised.

    Shapes: x (M, b, n, H), weight (1, 2H), adjacency (b, n, n) bool -> (M, b, n, H).
    Rows of padded utterances receive nothing from real ones and are dropped afterwards.
    """
    num_mod, hidden = x.shape[0], x.shape[-1]
    a, c = weight[0, :hidden], weight[0, hidden:]
    s = x @ a  # (M, b, n) target term
    r = x @ c  # (M, b, n) source term
    deg = (adjacency.sum(-1) + (num_mod - 1)).clamp(min=1).to(x.dtype)  # (b, n)
    inv_sqrt = deg.rsqrt()
    coef = torch.tanh(s[..., :, None] + r[..., None, :])  # (M, b, n, n)
    coef = coef * (adjacency * (inv_sqrt[:, :, None] * inv_sqrt[:, None, :])).to(x.dtype)
    out = coef @ x
    if num_mod > 1:
        # Inter-modal edges join the nodes of one utterance: norm = 1/deg_i (same degree).
        inv = (1.0 / deg)[None, :, :, None]
        gate = torch.tanh(s[:, None] + r[None, :])  # [target k, source k', b, n]
        off_diag = ~torch.eye(num_mod, dtype=torch.bool, device=x.device)
        gate = gate * off_diag[:, :, None, None].to(x.dtype)
        out = out + inv * torch.einsum("kqbn,qbnh->kbnh", gate, x)
    return out


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
        return F.dropout(h, self.cfg.effective_mask_prob, self.training)

    def forward(self, streams: Tensor, speakers: Tensor, lengths: Tensor, mask: Tensor,
                impl: str | None = None) -> Tensor:
        impl = impl or self.cfg.gcn_impl
        h0 = streams
        if self.speaker is not None:  # speaker identity enters the graph through the text nodes (index 0)
            h0 = torch.cat([streams[:1] + self.speaker(speakers)[None], streams[1:]], dim=0)
        if impl == "dense":
            adj = window_adjacency(lengths, streams.shape[2], self.cfg.window_past, self.cfg.window_future)
            h = h0
            for conv in self.convs:
                h = h + dense_high_frequency(self.feature_mask(h), conv.gate.weight, adj)
            return torch.cat([h0[:, mask], h[:, mask]], dim=-1)
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
            m: nn.Sequential(nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, num_classes))
            for m in self.modalities})

    def forward(self, batch: Batch) -> ModelOutput:
        mask = batch.mask
        speakers = batch.speakers.masked_fill(~mask, self.num_speakers)
        speaker_emb = self.speaker(speakers)
        streams = {m: self.encoders[m](batch.features[m], speaker_emb) for m in self.modalities}
        if self.attention is not None:
            streams = self.attention(streams, mask)
        student_features = {m: streams[m][mask] for m in self.modalities}  # (N, H) each
        if self.gcn is not None:
            stacked = torch.stack([streams[m] for m in self.modalities])  # (M, b, n, H)
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
