"""The class-similarity matrix S of the SAF loss, from four sources (SPEC.md, "Sources of S").

* ``"identity"``: S = I, which turns SAF "soft" into the plain focal loss (the ablation baseline);
* ``"prior"``: the reference code's hand-set IEMOCAP matrix (:data:`~safsd_glnet.dataset_facts.PRIOR_IEMOCAP`);
* ``"vad"``: a Gaussian kernel on each emotion's NRC VAD valence / arousal / dominance;
* ``"prototype"``: the cosine of centred class-mean teacher features, learned during training
  (:func:`class_feature_sums` accumulates an epoch, :func:`prototype_similarity` turns the
  sums into S).

Shape letters: N samples, C classes, F feature width.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from ..dataset_facts import NRC_VAD, PRIOR_IEMOCAP
from .loss_checks import iemocap_order, normalise_names

SIMILARITY_SOURCES = ("identity", "prior", "vad", "prototype")


def class_feature_sums(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                       sums: torch.Tensor | None = None,
                       counts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class feature sums (C, F) and counts (C,), optionally added onto running ones.

    sums[c] += sum_{i: y_i = c} features[i],  counts[c] += #{i: y_i = c}.

    A trainer calls this once per batch on detached teacher features and passes the running
    ``sums``/``counts`` back in, so class means over an epoch need O(C F) memory, not O(N F).
    Sums are kept in float64 so that an epoch of additions does not drift.
    """
    fn = "class_feature_sums"
    if not isinstance(features, torch.Tensor) or features.dim() != 2:
        raise ValueError(f"{fn}: features must be a (N, F) tensor, got {getattr(features, 'shape', type(features))}")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(f"{fn}: labels must be a (N,) tensor matching features, got {getattr(labels, 'shape', type(labels))}")
    if num_classes < 1:
        raise ValueError(f"{fn}: num_classes={num_classes} must be >= 1")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"{fn}: labels must lie in [0, {num_classes - 1}], got [{int(labels.min())}, {int(labels.max())}]")
    feats = features.detach().to(torch.float64)
    if sums is None:
        sums = torch.zeros(num_classes, feats.shape[1], dtype=torch.float64, device=feats.device)
    if counts is None:
        counts = torch.zeros(num_classes, dtype=torch.float64, device=feats.device)
    if sums.shape != (num_classes, feats.shape[1]) or counts.shape != (num_classes,):
        raise ValueError(f"{fn}: running sums {tuple(sums.shape)} / counts {tuple(counts.shape)} "
                         f"do not match ({num_classes}, {feats.shape[1]}) / ({num_classes},)")
    idx = labels.to(feats.device)
    sums = sums.index_add(0, idx, feats.to(sums.dtype))
    counts = counts.index_add(0, idx, torch.ones_like(idx, dtype=counts.dtype))
    return sums, counts


def prototype_similarity(class_sums: torch.Tensor, class_counts: torch.Tensor) -> torch.Tensor:
    r"""S from accumulated class feature sums: cosine of centred class means, clamped to [0, 1].

    .. math::
        \mu_c = \frac{\text{sums}_c}{n_c},\quad
        \bar\mu = \frac{\sum_c \text{sums}_c}{\sum_c n_c},\quad
        S[a, b] = \max\Big(0, \frac{\langle \mu_a - \bar\mu, \mu_b - \bar\mu\rangle}
                                 {\lVert \mu_a - \bar\mu\rVert \lVert \mu_b - \bar\mu\rVert}\Big),\quad S[c, c] = 1

    Centring by the count-weighted mean of all features matters: features after ReLUs, layer
    norms and shared embeddings have a large common component, so *uncentred* class means all
    point almost the same way (every off-diagonal at 0.73-1.00 in a trained model), and soft
    SAF then pushes each student towards a near-uniform target. After centring, S measures
    how two classes differ from the average in the same direction. Negative cosines are
    clamped to 0 because S weighs loss terms and a negative weight would reward confidence in
    the true class's opposite. A class with no samples (or a mean equal to the global mean,
    whose direction is undefined) gets an identity row and column: it is then treated as
    similar to nothing. Returns float32 (C, C) on the device of ``class_sums``.
    """
    fn = "prototype_similarity"
    sums = torch.as_tensor(class_sums)
    counts = torch.as_tensor(class_counts, device=sums.device)
    if sums.dim() != 2 or counts.shape != (sums.shape[0],):
        raise ValueError(f"{fn}: expected sums (C, F) and counts (C,), got {tuple(sums.shape)} and {tuple(counts.shape)}")
    if (counts < 0).any():
        raise ValueError(f"{fn}: class_counts must be >= 0, got {counts.tolist()}")
    sums = sums.to(torch.float64)
    counts = counts.to(torch.float64)
    present = counts > 0
    global_mean = sums.sum(0) / counts.sum().clamp_min(1.0)  # (F,) count-weighted mean of all features
    means = sums / counts.clamp_min(1.0).unsqueeze(1) - global_mean  # (C, F) centred class means
    norms = means.norm(dim=1)
    usable = present & (norms > 1e-12 * global_mean.norm().clamp_min(1.0))
    unit = means / norms.clamp_min(torch.finfo(torch.float64).tiny).unsqueeze(1)
    sim = (unit @ unit.T).clamp(0.0, 1.0)
    keep = usable.unsqueeze(0) & usable.unsqueeze(1)
    sim = torch.where(keep, sim, torch.zeros_like(sim))
    sim.fill_diagonal_(1.0)
    return sim.to(torch.float32)


def similarity_matrix(source: str, class_names: Sequence[str], *, sigma: float = 0.5,
                      features: torch.Tensor | None = None,
                      labels: torch.Tensor | None = None) -> torch.Tensor:
    """The class similarity S (C, C), float32, with S[c, c] = 1, for SAF.

    * ``"identity"``: S = I (SAF "soft" becomes the focal loss).
    * ``"prior"``: the reference's hand-set IEMOCAP matrix :data:`PRIOR_IEMOCAP`; class_names
      must be a permutation of :data:`IEMOCAP_CLASSES` and rows/columns follow its order
      (S[i, j] = PRIOR[k(i), k(j)] with k the index of name i in IEMOCAP_CLASSES).
    * ``"vad"``: S[i, j] = exp(-||vad_i - vad_j||^2 / sigma^2), vad from :data:`NRC_VAD`
      (names looked up case-insensitively). Symmetric, in (0, 1].
    * ``"prototype"``: :func:`prototype_similarity` of the class means of ``features`` (N, F)
      grouped by ``labels`` (N,), centred by their overall mean; on the device of ``features``.
    """
    fn = "similarity_matrix"
    names = normalise_names(fn, class_names)
    c = len(names)
    if source == "identity":
        return torch.eye(c, dtype=torch.float32)
    if source == "prior":
        order = iemocap_order(fn, class_names, "the 'prior' similarity", "use 'vad' instead")
        prior = torch.tensor(PRIOR_IEMOCAP, dtype=torch.float32)
        return prior[order][:, order].contiguous()
    if source == "vad":
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"{fn}: sigma={sigma!r} must be a finite number > 0")
        unknown = [n for n in names if n not in NRC_VAD]
        if unknown:
            raise ValueError(f"{fn}: no NRC VAD entry for class name(s) {unknown}; known: {sorted(NRC_VAD)}")
        vad = torch.tensor([NRC_VAD[n] for n in names], dtype=torch.float64)
        sq_dist = ((vad.unsqueeze(0) - vad.unsqueeze(1)) ** 2).sum(-1)
        return torch.exp(-sq_dist / sigma ** 2).to(torch.float32)
    if source == "prototype":
        if features is None or labels is None:
            raise ValueError(f"{fn}: source 'prototype' needs features (N, F) and labels (N,)")
        sums, counts = class_feature_sums(features, labels, c)
        return prototype_similarity(sums, counts)
    raise ValueError(f"{fn}: source={source!r}, expected one of {SIMILARITY_SOURCES}")
