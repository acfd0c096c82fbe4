"""Losses of SAFSD-GLNet: class-weighted CE, Similarity-Aware Focal (SAF) loss, self-distillation.

Shape letters: N real (unpadded) utterances, C classes, F feature width (prototype features),
M student modalities.

The training objective (SPEC.md, "Losses") is

    L = g1 * CE_w(teacher, y) + g2 * sum_m SAF(student_m, y) + g3 * sum_m T^2 * KL(p_teacher^T || p_student_m^T)

Every function here reads the flat tensors of real utterances only (``batch.labels[batch.mask]``
and the matching model outputs), so padding never reaches a loss.

SAF (p = softmax(logits), alpha_c class weights, gamma focal exponent, S a C x C similarity with
S[c, c] = 1):

* ``"soft"``:    SAF_i = sum_c S[y_i, c] * alpha_c * (1 - p_ic)^gamma * (-log p_ic)
* ``"penalty"``: SAF_i = alpha_{y_i} * (1 - p_{i,y_i})^gamma * (-log p_{i,y_i})
                         * (1 + lambda * sum_{c != y_i} S[y_i, c] * p_ic)

With S = identity, "soft" is exactly the focal loss of Lin et al. (:func:`focal_loss`). The
reference code broadcast S over the batch (an N x N x C tensor) and so ignored each sample's
own label; here row ``S[y_i]`` is gathered per sample.

Sources of S (:func:`similarity_matrix`): ``"identity"``, ``"prior"`` (the reference's
hand-set IEMOCAP matrix), ``"vad"`` (a Gaussian kernel on NRC-VAD valence/arousal/dominance)
and ``"prototype"`` (cosine similarity of centred class-mean teacher features, clamped to [0, 1]).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import LossConfig
from .facts import IEMOCAP_CLASSES, MELD_CLASSES, NRC_VAD, PRIOR_IEMOCAP, REFERENCE_ALPHA_IEMOCAP  # noqa: F401

SIMILARITY_SOURCES = ("identity", "prior", "vad", "prototype")
SAF_MODES = ("soft", "penalty")
REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------------------------
# Argument checks shared by the functions below
# --------------------------------------------------------------------------------------------

def _normalise_names(fn: str, class_names: Sequence[str]) -> list[str]:
    """Lower-cased, stripped class names; ValueError on an empty or repeated list."""
    if isinstance(class_names, str):
        # A bare string would otherwise be read as a list of one-letter classes.
        raise ValueError(f"{fn}: class_names must be a sequence of names, got the string {class_names!r}")
    names = [str(n).strip().lower() for n in class_names]
    if not names:
        raise ValueError(f"{fn}: class_names is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"{fn}: class_names {list(class_names)!r} contains a repeated name")
    return names


def _iemocap_order(fn: str, class_names: Sequence[str], what: str) -> list[int]:
    """Index into IEMOCAP_CLASSES of every name in ``class_names`` (a permutation of them)."""
    names = _normalise_names(fn, class_names)
    if sorted(names) != sorted(IEMOCAP_CLASSES):
        raise ValueError(
            f"{fn}: {what} exists only for the IEMOCAP class set {IEMOCAP_CLASSES}, "
            f"got class_names={list(class_names)!r}; use 'vad' (similarity) or 'inverse' (alpha) instead"
        )
    return [IEMOCAP_CLASSES.index(n) for n in names]


def _check_logits_labels(fn: str, logits: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{fn}: logits must be a (N, C) tensor, got {shape}")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{fn}: labels must be a (N,) tensor, got {shape}")
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"{fn}: {logits.shape[0]} rows of logits but {labels.shape[0]} labels")
    if logits.shape[1] < 1:
        raise ValueError(f"{fn}: logits have no classes (shape {tuple(logits.shape)})")
    if labels.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool):
        raise ValueError(f"{fn}: labels must be an integer tensor, got dtype {labels.dtype}")
    if labels.numel():
        # One host sync per call; worth it: an out-of-range label (e.g. a padding -1 that
        # slipped through) would otherwise be a silent wrong gather or a CUDA device assert.
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= logits.shape[1]:
            raise ValueError(
                f"{fn}: labels must lie in [0, {logits.shape[1] - 1}], got values in [{lo}, {hi}] "
                "(padding labels must be removed before the loss)"
            )


def _class_vector(fn: str, name: str, value: Any, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a (C,) tensor with the dtype and device of ``like``."""
    vec = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if vec.shape != (num_classes,):
        raise ValueError(f"{fn}: {name} must have shape ({num_classes},), got {tuple(vec.shape)}")
    if not torch.isfinite(vec).all() or (vec < 0).any():
        raise ValueError(f"{fn}: {name} must be finite and >= 0, got {vec.tolist()}")
    return vec


def _zero_like_graph(*tensors: torch.Tensor) -> torch.Tensor:
    """A scalar 0 that still hangs on the autograd graph of ``tensors``.

    Used for empty batches (N = 0): ``backward()`` then runs and gives zero gradients instead
    of failing on a tensor that does not require grad, and a mean over nothing is not NaN.
    """
    return sum(t.sum() for t in tensors) * 0.0


def _reduce(per_sample: torch.Tensor, reduction: str, *graph: torch.Tensor) -> torch.Tensor:
    if reduction == "none":
        return per_sample
    if per_sample.numel() == 0:
        return _zero_like_graph(*graph)
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


def _check_reduction(fn: str, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{fn}: reduction={reduction!r}, expected one of {REDUCTIONS}")


def _one_minus_p(log_p: torch.Tensor) -> torch.Tensor:
    """1 - p from log p, accurate near p = 1 and safe to raise to any gamma >= 0.

    ``-expm1(log p)`` keeps the digits that ``1 - exp(log p)`` loses when p rounds to 1. The
    floor at the smallest normal float keeps ``(1 - p)^gamma`` differentiable for 0 < gamma < 1
    (the derivative of x^gamma is infinite at x = 0); where the floor bites, the true gradient
    is vanishingly small anyway.
    """
    return (-torch.expm1(log_p)).clamp_min(torch.finfo(log_p.dtype).tiny)


# --------------------------------------------------------------------------------------------
# Similarity matrices
# --------------------------------------------------------------------------------------------

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
    names = _normalise_names(fn, class_names)
    c = len(names)
    if source == "identity":
        return torch.eye(c, dtype=torch.float32)
    if source == "prior":
        order = _iemocap_order(fn, class_names, "the 'prior' similarity")
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


# --------------------------------------------------------------------------------------------
# Class weights
# --------------------------------------------------------------------------------------------

def _inverse_frequency(fn: str, counts: Any) -> torch.Tensor:
    """1 / frequency per class (float64); classes with zero count get the largest weight."""
    cnt = torch.as_tensor(np.asarray(counts, dtype=np.float64))
    if cnt.dim() != 1 or cnt.numel() == 0:
        raise ValueError(f"{fn}: counts must be a non-empty 1-D sequence, got shape {tuple(cnt.shape)}")
    if not torch.isfinite(cnt).all() or (cnt < 0).any():
        raise ValueError(f"{fn}: counts must be finite and >= 0, got {cnt.tolist()}")
    total = cnt.sum()
    if total <= 0:
        raise ValueError(f"{fn}: counts are all zero, cannot form class frequencies")
    present = cnt > 0
    inv = torch.zeros_like(cnt)
    inv[present] = total / cnt[present]
    # A class absent from the training split never appears as a target there, so its weight
    # never matters in training; the largest present weight (rather than infinity or 0) keeps
    # the vector finite and treats the class as the rarest one if it shows up elsewhere.
    inv[~present] = inv[present].max()
    return inv


def class_frequency_weights(counts: Any, kind: str = "inverse") -> torch.Tensor:
    """Class weights (C,) float32 for the teacher's weighted CE.

    * ``"inverse"``: w_c = (1 / f_c) / mean_k(1 / f_k), f_c = n_c / sum_k n_k, so mean(w) = 1.
      A class with n_c = 0 gets the largest weight of the present classes (before normalising).
    * ``"none"``: w_c = 1.

    ``torch`` weighted CE divides by sum_i w_{y_i}, so the overall scale does not change the
    loss; normalising to mean 1 only makes the numbers readable.
    """
    fn = "class_frequency_weights"
    if kind == "none":
        cnt = np.asarray(counts)
        if cnt.ndim != 1 or cnt.size == 0:
            raise ValueError(f"{fn}: counts must be a non-empty 1-D sequence, got shape {cnt.shape}")
        return torch.ones(cnt.size, dtype=torch.float32)
    if kind == "inverse":
        inv = _inverse_frequency(fn, counts)
        return (inv / inv.mean()).to(torch.float32)
    raise ValueError(f"{fn}: kind={kind!r}, expected 'inverse' or 'none'")


def saf_alpha(counts: Any, kind: str = "inverse", class_names: Sequence[str] | None = None) -> torch.Tensor:
    """SAF class weights alpha (C,) float32.

    * ``"inverse"``: alpha_c = (1 / f_c) / sum_k (1 / f_k), summing to 1 (zero counts as in
      :func:`class_frequency_weights`).
    * ``"uniform"``: alpha_c = 1 / C.
    * ``"reference"``: :data:`REFERENCE_ALPHA_IEMOCAP`, reordered to ``class_names``, which must
      be a permutation of :data:`IEMOCAP_CLASSES` (the reference has no constants for MELD).
    """
    fn = "saf_alpha"
    if kind == "inverse":
        inv = _inverse_frequency(fn, counts)
        return (inv / inv.sum()).to(torch.float32)
    cnt = np.asarray(counts)
    if cnt.ndim != 1 or cnt.size == 0:
        raise ValueError(f"{fn}: counts must be a non-empty 1-D sequence, got shape {cnt.shape}")
    if kind == "uniform":
        return torch.full((cnt.size,), 1.0 / cnt.size, dtype=torch.float32)
    if kind == "reference":
        if class_names is None:
            raise ValueError(f"{fn}: kind 'reference' needs class_names to order the IEMOCAP constants")
        order = _iemocap_order(fn, class_names, "the 'reference' alpha")
        if cnt.size != len(order):
            raise ValueError(f"{fn}: {cnt.size} counts for {len(order)} class names")
        return torch.tensor([REFERENCE_ALPHA_IEMOCAP[k] for k in order], dtype=torch.float32)
    raise ValueError(f"{fn}: kind={kind!r}, expected 'inverse', 'uniform' or 'reference'")


# --------------------------------------------------------------------------------------------
# Loss functions
# --------------------------------------------------------------------------------------------

def focal_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: Any = None, gamma: float = 2.0,
               reduction: str = "mean") -> torch.Tensor:
    """Plain focal loss FL_i = alpha_{y_i} * (1 - p_{i,y_i})^gamma * (-log p_{i,y_i}).

    ``alpha`` None means alpha_c = 1. ``"mean"`` averages over the N samples (not weighted by
    alpha); N = 0 gives a zero connected to ``logits``.
    """
    fn = "focal_loss"
    _check_logits_labels(fn, logits, labels)
    _check_reduction(fn, reduction)
    if not (math.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"{fn}: gamma={gamma!r} must be finite and >= 0")
    c = logits.shape[1]
    a = torch.ones(c, dtype=logits.dtype, device=logits.device) if alpha is None else \
        _class_vector(fn, "alpha", alpha, c, logits)
    # Only the true-class log-probability is needed: gather it before any power.
    log_p_y = F.log_softmax(logits, dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)
    per_sample = a[labels] * _one_minus_p(log_p_y).pow(gamma) * (-log_p_y)
    return _reduce(per_sample, reduction, logits)


def saf_loss(logits: torch.Tensor, labels: torch.Tensor, similarity: torch.Tensor, alpha: Any = None,
             gamma: float = 2.0, mode: str = "soft", lam: float = 1.0,
             reduction: str = "mean") -> torch.Tensor:
    """Similarity-Aware Focal loss of (N, C) logits against (N,) labels.

    With p = softmax(logits) (computed as exp(log_softmax) so that -log p never sees log 0):

    * ``mode="soft"``:    SAF_i = sum_c S[y_i, c] * alpha_c * (1 - p_ic)^gamma * (-log p_ic)
    * ``mode="penalty"``: SAF_i = alpha_{y_i} * (1 - p_{i,y_i})^gamma * (-log p_{i,y_i})
                                  * (1 + lam * sum_{c != y_i} S[y_i, c] * p_ic)

    ``similarity`` S is (C, C) (row y_i is read for a sample of class y_i; S need not be
    symmetric); ``alpha`` (C,), None meaning all ones. ``reduction``: "mean" over N (unweighted),
    "sum", or "none" for the (N,) per-sample values. N = 0 gives a zero that is still on the
    graph of ``logits``.
    """
    fn = "saf_loss"
    _check_logits_labels(fn, logits, labels)
    _check_reduction(fn, reduction)
    if mode not in SAF_MODES:
        raise ValueError(f"{fn}: mode={mode!r}, expected one of {SAF_MODES}")
    if not (math.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"{fn}: gamma={gamma!r} must be finite and >= 0")
    if not (math.isfinite(lam) and lam >= 0):
        # A negative lambda could make the penalty factor negative, i.e. reward the confusion.
        raise ValueError(f"{fn}: lam={lam!r} must be finite and >= 0")
    c = logits.shape[1]
    sim = torch.as_tensor(similarity, dtype=logits.dtype, device=logits.device)
    if sim.shape != (c, c):
        raise ValueError(f"{fn}: similarity must have shape ({c}, {c}), got {tuple(sim.shape)}")
    if not torch.isfinite(sim).all():
        raise ValueError(f"{fn}: similarity contains non-finite values")
    a = torch.ones(c, dtype=logits.dtype, device=logits.device) if alpha is None else \
        _class_vector(fn, "alpha", alpha, c, logits)

    log_p = F.log_softmax(logits, dim=1)  # (N, C)
    rows = sim[labels]  # (N, C): S[y_i, :], the per-sample row the reference failed to take
    if mode == "soft":
        focal = a.unsqueeze(0) * _one_minus_p(log_p).pow(gamma) * (-log_p)  # (N, C)
        per_sample = (rows * focal).sum(dim=1)
    else:
        log_p_y = log_p.gather(1, labels.unsqueeze(1)).squeeze(1)  # (N,)
        focal_y = a[labels] * _one_minus_p(log_p_y).pow(gamma) * (-log_p_y)
        # Probability mass on classes similar to the true one; the true class itself is
        # excluded by zeroing its entry of the row (S[y, y] = 1 would otherwise count p_y).
        off_true = rows.scatter(1, labels.unsqueeze(1), 0.0)
        similar_mass = (off_true * log_p.exp()).sum(dim=1)
        per_sample = focal_y * (1.0 + lam * similar_mass)
    return _reduce(per_sample, reduction, logits)


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weights: Any = None) -> torch.Tensor:
    """Cross-entropy CE_w = sum_i w_{y_i} * (-log p_{i,y_i}) / sum_i w_{y_i} (torch's weighted mean).

    ``weights`` None gives the plain mean CE. N = 0 gives a zero on the graph of ``logits``
    (torch would return NaN for a mean over nothing).
    """
    fn = "weighted_ce"
    _check_logits_labels(fn, logits, labels)
    w = None if weights is None else _class_vector(fn, "weights", weights, logits.shape[1], logits)
    if labels.numel() == 0:
        return _zero_like_graph(logits)
    return F.cross_entropy(logits, labels, weight=w)


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
                    detach_teacher: bool = False) -> torch.Tensor:
    """T^2 * KL(p_teacher^T || p_student^T), averaged over the N samples ("batchmean").

    p^T = softmax(logits / T). KL(q || p) = sum_c q_c (log q_c - log p_c) is evaluated from
    the two log_softmax outputs (``log_target=True``), so no probability is ever logged. The
    T^2 factor keeps gradient magnitudes comparable across temperatures (Hinton et al.).
    ``detach_teacher`` stops this term's gradient from reaching the teacher; by default
    (as in SDT) the teacher also learns from it. N = 0 gives a zero on the graph.
    """
    fn = "distillation_kl"
    for name, t in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2:
            raise ValueError(f"{fn}: {name} must be a (N, C) tensor, got {getattr(t, 'shape', type(t))}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"{fn}: student {tuple(student_logits.shape)} and teacher "
                         f"{tuple(teacher_logits.shape)} logits differ in shape")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"{fn}: temperature={temperature!r} must be a finite number > 0")
    teacher = teacher_logits.detach() if detach_teacher else teacher_logits
    if student_logits.shape[0] == 0:
        return _zero_like_graph(student_logits, teacher)
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher / temperature, dim=1)
    kl = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return kl * temperature ** 2


# --------------------------------------------------------------------------------------------
# The full objective
# --------------------------------------------------------------------------------------------

def total_loss(outputs: Any, labels: torch.Tensor, cfg: LossConfig, class_weights: Any = None,
               alpha: Any = None, similarity: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L = g1 * CE_w(teacher) + g2 * sum_m SAF(student_m) + g3 * sum_m T^2 KL(teacher || student_m).

    ``outputs`` has ``teacher_logits`` (N, C) and ``student_logits`` {modality: (N, C)}, all on
    real utterances only. g1, g2, g3 are ``cfg.teacher_weight``, ``cfg.student_weight``,
    ``cfg.distill_weight``. ``class_weights`` (C,) weigh the teacher CE (None: unweighted).
    With ``cfg.use_saf`` False each student term is the same weighted CE as the teacher's
    (and ``alpha``/``similarity`` are not needed); otherwise it is :func:`saf_loss` with
    ``cfg.saf_mode``, ``cfg.gamma``, ``cfg.saf_lambda``, ``alpha`` and ``similarity``. With
    ``cfg.use_distillation`` False the KL terms are neither computed nor reported.

    Returns ``(total, terms)``: ``total`` the differentiable scalar; ``terms`` maps
    "teacher_ce", "student_<m>", "kl_<m>" (per modality) and "total" to detached 0-d tensors
    (unweighted terms; ``float(terms[k])`` for logging, taken when the caller wants the sync).
    """
    fn = "total_loss"
    if not isinstance(cfg, LossConfig):
        raise ValueError(f"{fn}: cfg must be a LossConfig, got {type(cfg).__name__}")
    teacher = getattr(outputs, "teacher_logits", None)
    students = getattr(outputs, "student_logits", None)
    if not isinstance(teacher, torch.Tensor):
        raise ValueError(f"{fn}: outputs has no tensor attribute teacher_logits (got {type(outputs).__name__})")
    if not isinstance(students, Mapping):
        raise ValueError(f"{fn}: outputs.student_logits must be a dict modality -> (N, C) logits, "
                         f"got {type(students).__name__}")
    if cfg.use_saf and (alpha is None or similarity is None):
        raise ValueError(f"{fn}: cfg.use_saf is True, so alpha and similarity are required "
                         f"(got alpha={'None' if alpha is None else 'set'}, "
                         f"similarity={'None' if similarity is None else 'set'})")

    terms: dict[str, torch.Tensor] = {}
    teacher_ce = weighted_ce(teacher, labels, class_weights)
    terms["teacher_ce"] = teacher_ce.detach()
    total = cfg.teacher_weight * teacher_ce
    for m, logits in students.items():
        if cfg.use_saf:
            student = saf_loss(logits, labels, similarity, alpha, gamma=cfg.gamma, mode=cfg.saf_mode,
                               lam=cfg.saf_lambda)
        else:
            student = weighted_ce(logits, labels, class_weights)
        terms[f"student_{m}"] = student.detach()
        total = total + cfg.student_weight * student
        if cfg.use_distillation:
            kl = distillation_kl(logits, teacher, cfg.temperature, cfg.detach_teacher)
            terms[f"kl_{m}"] = kl.detach()
            total = total + cfg.distill_weight * kl
    terms["total"] = total.detach()
    return total, terms


@dataclass
class LossComputer:
    """Holds the per-run loss constants so a trainer only calls ``loss(outputs, labels)``.

    Build it with :meth:`from_counts` from the training split's class counts. For the
    ``"prototype"`` similarity S starts as the identity (no teacher features exist yet) and is
    replaced by :meth:`set_prototypes` from sums accumulated with :func:`class_feature_sums`.
    """

    cfg: LossConfig
    class_names: tuple[str, ...]
    class_weights: torch.Tensor  # (C,) teacher CE weights
    alpha: torch.Tensor  # (C,) SAF alpha
    similarity: torch.Tensor  # (C, C)

    @classmethod
    def from_counts(cls, cfg: LossConfig, counts: Any, class_names: Sequence[str]) -> "LossComputer":
        names = tuple(class_names)
        if len(np.asarray(counts).reshape(-1)) != len(names):
            raise ValueError(f"LossComputer.from_counts: {len(np.asarray(counts).reshape(-1))} counts "
                             f"for {len(names)} class names")
        weights = class_frequency_weights(counts, cfg.class_weights)
        alpha = saf_alpha(counts, cfg.alpha, names)
        source = "identity" if cfg.similarity == "prototype" else cfg.similarity
        sim = similarity_matrix(source, names, sigma=cfg.vad_sigma)
        return cls(cfg, names, weights, alpha, sim)

    def to(self, device: torch.device | str) -> "LossComputer":
        self.class_weights = self.class_weights.to(device)
        self.alpha = self.alpha.to(device)
        self.similarity = self.similarity.to(device)
        return self

    def set_prototypes(self, class_sums: torch.Tensor, class_counts: torch.Tensor) -> torch.Tensor:
        """Replace S by :func:`prototype_similarity` of the sums (only with similarity="prototype")."""
        if self.cfg.similarity != "prototype":
            raise ValueError(f"LossComputer.set_prototypes: cfg.similarity={self.cfg.similarity!r}, "
                             "prototypes are used only with 'prototype'")
        sim = prototype_similarity(class_sums, class_counts)
        if sim.shape != self.similarity.shape:
            raise ValueError(f"LossComputer.set_prototypes: got S {tuple(sim.shape)}, "
                             f"expected {tuple(self.similarity.shape)}")
        self.similarity = sim.to(self.similarity.device)
        return self.similarity

    def __call__(self, outputs: Any, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return total_loss(outputs, labels, self.cfg, self.class_weights, self.alpha, self.similarity)
