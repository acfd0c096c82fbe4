"""The dialogue graph of the masked GCN, built for a whole batch without loops over edges.

Shape letters: b dialogues, n longest dialogue, N real utterances in the batch, M modalities,
E edges.

Node layout ("transfer to node features"): padding is dropped and every real utterance u
(dialogue-major order, the order of ``mask`` flattened) gives M nodes, one per modality; the
node of modality index k is ``k * N + u``. Edges are directed ``source -> target`` and stored
as ``edge_index[0] = source j``, ``edge_index[1] = target i`` (PyTorch Geometric's
``source_to_target`` flow, so in ``message()`` ``x_j`` is the source).

* Intra-modal edges: between the nodes of one modality within a dialogue, every ordered pair
  i != j (the reference), or only j in [i - window_past, i + window_future].
* Inter-modal edges: among the M nodes of one utterance, M (M - 1) directed edges.

The normalisation of the high-frequency layer is ``norm_ij = 1 / sqrt(deg_i deg_j)`` with
``deg`` the in-degree; an isolated node (a one-utterance dialogue with one modality) has no
edges, and its degree is clamped to 1 so no division by zero can appear.

The dense GCN path (``safsd_glnet.model.dense_high_frequency``) reads the same graph in padded
layout instead of as an edge list: :func:`padded_graph` gives the normalised adjacency per
dialogue, dense (b, n, n) or, for a window much shorter than the dialogues, banded in chunks.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def utterance_positions(lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For ``lengths`` (b,): per real utterance its dialogue (N,), position (N,), and the
    start of each dialogue in the flat order (b,)."""
    lengths = lengths.to(torch.long)
    starts = torch.cumsum(lengths, 0) - lengths
    dialogue = torch.repeat_interleave(torch.arange(len(lengths), device=lengths.device), lengths)
    position = torch.arange(int(lengths.sum()), device=lengths.device) - starts[dialogue]
    return dialogue, position, starts


def intra_dialogue_edges(lengths: torch.Tensor, window_past: int | None = None,
                         window_future: int | None = None) -> torch.Tensor:
    """(2, E_intra) edges between utterances of the same dialogue, over flat utterance indices.

    Every utterance j is paired with every utterance of its dialogue (``repeat_interleave``
    builds the sum of n_d^2 pairs at once), then self pairs and pairs outside the window are
    dropped. Target i receives from source j when ``-window_past <= j - i <= window_future``.
    """
    dialogue, position, starts = utterance_positions(lengths)
    counts = lengths.to(torch.long)[dialogue]  # each source pairs with its dialogue's length
    source = torch.repeat_interleave(torch.arange(len(dialogue), device=lengths.device), counts)
    first_pair = torch.cumsum(counts, 0) - counts
    offset = torch.arange(int(counts.sum()), device=lengths.device) - torch.repeat_interleave(first_pair, counts)
    target = starts[dialogue[source]] + offset
    delta = position[source] - position[target]  # j - i
    keep = source != target
    if window_past is not None:
        keep &= delta >= -window_past
    if window_future is not None:
        keep &= delta <= window_future
    return torch.stack([source[keep], target[keep]])


def dialogue_graph(lengths: torch.Tensor, num_modalities: int, window_past: int | None = None,
                   window_future: int | None = None) -> torch.Tensor:
    """(2, E) edge index of the batched disjoint multimodal dialogue graph (M N nodes)."""
    intra = intra_dialogue_edges(lengths, window_past, window_future)
    n_utt = int(lengths.sum())
    parts = [intra + k * n_utt for k in range(num_modalities)]
    utt = torch.arange(n_utt, device=lengths.device)
    for k_target in range(num_modalities):
        for k_source in range(num_modalities):
            if k_source != k_target:
                parts.append(torch.stack([utt + k_source * n_utt, utt + k_target * n_utt]))
    return torch.cat(parts, dim=1)


def symmetric_norm(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """(E,) ``1 / sqrt(deg_i deg_j)`` with deg the in-degree, clamped to 1 for isolated nodes."""
    deg = torch.bincount(edge_index[1], minlength=num_nodes).clamp(min=1).to(torch.float32)
    inv_sqrt = deg.rsqrt()
    return inv_sqrt[edge_index[0]] * inv_sqrt[edge_index[1]]


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
    pass and shared by the K layers of the dense GCN (:func:`padded_graph`).

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
    """:class:`PaddedGraph` of the batch; degrees count intra- plus inter-modal in-edges.

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
