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

The dense GCN kernel (:class:`safsd_glnet.model.kernels.DenseMaskedGCN`) reads the same graph in
padded layout instead of as an edge list (:func:`safsd_glnet.model.kernels.padded_graph`).
"""
from __future__ import annotations

import torch


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
