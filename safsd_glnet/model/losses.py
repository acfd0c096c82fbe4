"""Losses of SAFSD-GLNet: class-weighted CE, Similarity-Aware Focal (SAF) loss, self-distillation.

Shape letters: N real (unpadded) utterances, C classes, F feature width (prototype features),
M student modalities.

The training objective (SPEC.md, "Losses") is

    L = g1 * CE_w(teacher, y) + g2 * sum_m SAF(student_m, y) + g3 * sum_m T^2 * KL(p_teacher^T || p_student_m^T)

Every function here reads the flat tensors of real utterances only (``batch.labels[batch.real]``
and the matching model outputs), so padding never reaches a loss.

SAF (SPEC.md, "Similarity-Aware Focal loss", amended). p = softmax(logits), y_i the true class,
gamma the focal exponent, S a C x C similarity with S[c, c] = 1, Shat its row-normalised
off-diagonal part (Shat_y[c] = S[y, c] / sum_{k != y} S[y, k] for c != y, Shat_y[y] = 0), and
abar_c the class weights of :func:`saf_class_weights` (mean 1 over the training split's labels):

* ``"soft"``:      q_i = (1 - eps) e_{y_i} + eps Shat_{y_i}
                   SAF_i = abar_{y_i} * sum_c q_ic * (1 - p_ic)^gamma * (-log p_ic)
* ``"penalty"``:   SAF_i = abar_{y_i} * (1 - p_{i,y_i})^gamma * (-log p_{i,y_i})
                           * (1 + lambda * sum_{c != y_i} Shat_{y_i}[c] * p_ic)
* ``"reference"``: SAF_i = sum_c S[y_i, c] * alpha_c * (1 - p_ic)^gamma * (-log p_ic), the reference
                   code's formula computed per sample, with its IEMOCAP alpha (the first SPEC's
                   loss, kept for comparison: a rarer similar class can outweigh the true one).

A row of S with no off-diagonal mass (S = identity, or the prototype source before its first
refresh) has nothing to smooth towards: soft mode then keeps its whole target on the true class
(q_i = e_{y_i}), so that soft and penalty with S = I are both the class-weighted focal loss of
:func:`focal_loss`, and with gamma = 0, beta = 0 plain CE (SPEC.md asks both; a literal
(1 - eps) e_y would scale that row's loss by 1 - eps). The reference code broadcast S over the
batch (an N x N x C tensor) and so ignored each sample's own label; here rows are gathered per
sample.

Sources of S (:func:`similarity_matrix`): ``"identity"``, ``"prior"`` (the reference's
hand-set IEMOCAP matrix), ``"vad"`` (a Gaussian kernel on NRC-VAD valence/arousal/dominance)
and ``"prototype"`` (cosine similarity of centred class-mean teacher features, clamped to [0, 1]).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import loss_checks as check
from .class_weights import class_frequency_weights, reference_alpha, saf_class_weights  # noqa: F401  (the losses' API)
from ..config import LossConfig
from ..dataset_facts import IEMOCAP_CLASSES, MELD_CLASSES, NRC_VAD, PRIOR_IEMOCAP, REFERENCE_ALPHA_IEMOCAP  # noqa: F401
from .loss_checks import REDUCTIONS, SAF_MODES  # noqa: F401
from .similarity import (SIMILARITY_SOURCES, class_feature_sums, prototype_similarity,  # noqa: F401
                         similarity_matrix)


# --------------------------------------------------------------------------------------------
# The formulas (on checked arguments)
# --------------------------------------------------------------------------------------------

def _focal(log_p: torch.Tensor, alpha: torch.Tensor, gamma: float) -> torch.Tensor:
    """alpha * (1 - p)^gamma * (-log p), elementwise on log-probabilities."""
    return alpha * _one_minus_p(log_p).pow(gamma) * (-log_p)


def similar_shares(similarity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shat (C, C), the row-normalised off-diagonal part of S, and (C,) whether each row has any.

    Shat[y, c] = S[y, c] / sum_{k != y} S[y, k] for c != y and Shat[y, y] = 0; a row whose
    off-diagonal entries are all 0 gives a zero row and ``False``.
    """
    off = similarity * (1.0 - torch.eye(similarity.shape[0], dtype=similarity.dtype, device=similarity.device))
    mass = off.sum(dim=1, keepdim=True)  # (C, 1)
    has_mass = mass.squeeze(1) > 0
    return off / torch.where(mass > 0, mass, torch.ones_like(mass)), has_mass


def _saf(logits: torch.Tensor, labels: torch.Tensor, sim: torch.Tensor, alpha: torch.Tensor, gamma: float,
         mode: str, lam: float, eps: float) -> torch.Tensor:
    """(N,) per-sample SAF; ``sim`` (C, C) and ``alpha`` (C,) in the dtype of ``logits``.

    ``alpha`` is abar (read at the true class) in "soft" and "penalty", and the reference alpha
    (inside the sum over classes) in "reference"."""
    log_p = F.log_softmax(logits, dim=1)  # (N, C)
    if mode == "reference":
        rows = sim[labels]  # (N, C): S[y_i, :], the per-sample row the reference failed to take
        return (rows * _focal(log_p, alpha.unsqueeze(0), gamma)).sum(dim=1)
    shares, has_mass = similar_shares(sim)
    similar = shares[labels]  # (N, C): Shat_{y_i}, zero at the true class
    weight_y = alpha[labels]  # (N,): abar_{y_i}
    if mode == "soft":
        true_mass = 1.0 - eps * has_mass[labels].to(log_p.dtype)  # (N,): 1 - eps, or 1 for a row with no mass
        target = eps * similar + true_mass.unsqueeze(1) * F.one_hot(labels, log_p.shape[1]).to(log_p.dtype)
        return weight_y * (target * _focal(log_p, 1.0, gamma)).sum(dim=1)
    log_p_y = log_p.gather(1, labels.unsqueeze(1)).squeeze(1)  # (N,)
    similar_mass = (similar * log_p.exp()).sum(dim=1)  # sum_{c != y} Shat_y[c] p_c
    return _focal(log_p_y, weight_y, gamma) * (1.0 + lam * similar_mass)


def _weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if labels.numel() == 0:
        return _zero_like_graph(logits)
    return F.cross_entropy(logits, labels, weight=weights)


def _kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
        detach_teacher: bool) -> torch.Tensor:
    teacher = teacher_logits.detach() if detach_teacher else teacher_logits
    if student_logits.shape[0] == 0:
        return _zero_like_graph(student_logits, teacher)
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher / temperature, dim=1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * temperature ** 2


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



def _one_minus_p(log_p: torch.Tensor) -> torch.Tensor:
    """1 - p from log p, accurate near p = 1 and safe to raise to any gamma >= 0.

    ``-expm1(log p)`` keeps the digits that ``1 - exp(log p)`` loses when p rounds to 1. The
    floor at the smallest normal float keeps ``(1 - p)^gamma`` differentiable for 0 < gamma < 1
    (the derivative of x^gamma is infinite at x = 0); where the floor bites, the true gradient
    is vanishingly small anyway.
    """
    return (-torch.expm1(log_p)).clamp_min(torch.finfo(log_p.dtype).tiny)




# --------------------------------------------------------------------------------------------
# The loss functions
# --------------------------------------------------------------------------------------------

def focal_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: Any = None, gamma: float = 2.0,
               reduction: str = "mean") -> torch.Tensor:
    """Plain focal loss FL_i = alpha_{y_i} * (1 - p_{i,y_i})^gamma * (-log p_{i,y_i}).

    ``alpha`` None means alpha_c = 1. ``"mean"`` averages over the N samples (not weighted by
    alpha); N = 0 gives a zero connected to ``logits``.
    """
    check.logits_and_labels("focal_loss", logits, labels, reduction=reduction, gamma=gamma)
    c = logits.shape[1]
    a = torch.ones(c, dtype=logits.dtype, device=logits.device) if alpha is None else \
        check.class_vector("focal_loss", "alpha", alpha, c, logits)
    # Only the true-class log-probability is needed: gather it before any power.
    log_p_y = F.log_softmax(logits, dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)
    return _reduce(_focal(log_p_y, a[labels], gamma), reduction, logits)


def saf_loss(logits: torch.Tensor, labels: torch.Tensor, similarity: torch.Tensor, alpha: Any = None,
             gamma: float = 2.0, mode: str = "soft", lam: float = 1.0, eps: float = 0.1,
             reduction: str = "mean") -> torch.Tensor:
    """Similarity-Aware Focal loss of (N, C) logits against (N,) labels (formulas in the module
    docstring; p = exp(log_softmax), so -log p never sees log 0).

    ``similarity`` S is (C, C) (row y_i is read for a sample of class y_i; S need not be
    symmetric). ``alpha`` (C,), None meaning all ones: the class weights abar read at the true
    class in modes "soft" and "penalty" (:func:`saf_class_weights`), the reference alpha inside
    the sum in "reference" (:func:`reference_alpha`). ``eps`` in [0, 0.5) is soft mode's
    smoothing towards the similar classes, ``lam`` >= 0 penalty mode's weight. ``reduction``:
    "mean" over N (unweighted), "sum", or "none" for the (N,) per-sample values. N = 0 gives a
    zero that is still on the graph of ``logits``.
    """
    check.logits_and_labels("saf_loss", logits, labels, reduction=reduction, gamma=gamma, lam=lam, mode=mode,
                            eps=eps)
    c = logits.shape[1]
    sim = check.class_matrix("saf_loss", similarity, c, logits)
    a = torch.ones(c, dtype=logits.dtype, device=logits.device) if alpha is None else \
        check.class_vector("saf_loss", "alpha", alpha, c, logits)
    return _reduce(_saf(logits, labels, sim, a, gamma, mode, lam, eps), reduction, logits)


def saf_target(similarity: Any, mode: str = "soft", eps: float = 0.1, alpha: Any = None) -> torch.Tensor:
    """What SAF teaches a student at gamma = 0: row y is the distribution over classes that
    minimises the loss of a sample of class y, a (C, C) float64 tensor whose rows sum to 1.

    * "soft": at gamma 0, SAF_i = abar_y sum_c q_c (-log p_c), a cross-entropy against q, smallest
      at p = q (Gibbs' inequality; abar_y scales the row, it does not move the minimum). So the
      target is q_y = (1 - eps) e_y + eps Shat_y (e_y for a row of S with no off-diagonal mass),
      and the true class keeps 1 - eps > eps, more than any other class, for eps < 0.5.
    * "penalty": both factors are smallest at p = e_y, the one-hot target.
    * "reference": a cross-entropy against the unnormalised weights w_c = S[y, c] alpha_c, smallest
      at p_c = w_c / sum_k w_k. Its argmax is not y whenever a class c similar to y has
      alpha_c > alpha_y / S[y, c]: with inverse-frequency alpha (the first SPEC), a rarer similar
      class wins. ``alpha`` (C,) is needed only here (None: ones).

    A focal factor (gamma > 0) flattens these targets; it does not move their argmax.
    """
    like = torch.as_tensor(similarity, dtype=torch.float64)
    c = like.shape[0] if like.dim() == 2 else -1
    sim = check.class_matrix("saf_target", like, c, like)
    check.saf_scalars("saf_target", mode=mode, eps=eps)
    if mode == "reference":
        a = torch.ones(c, dtype=sim.dtype) if alpha is None else check.class_vector("saf_target", "alpha", alpha, c, sim)
        w = sim * a.unsqueeze(0)  # (C, C): w[y, c] = S[y, c] alpha_c
        return w / w.sum(dim=1, keepdim=True)
    eye = torch.eye(c, dtype=sim.dtype)
    if mode == "penalty":
        return eye
    shares, has_mass = similar_shares(sim)
    return eps * shares + (1.0 - eps * has_mass.to(sim.dtype)).unsqueeze(1) * eye


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weights: Any = None) -> torch.Tensor:
    """Cross-entropy CE_w = sum_i w_{y_i} * (-log p_{i,y_i}) / sum_i w_{y_i} (torch's weighted mean).

    ``weights`` None gives the plain mean CE. N = 0 gives a zero on the graph of ``logits``
    (torch would return NaN for a mean over nothing).
    """
    check.logits_and_labels("weighted_ce", logits, labels)
    w = None if weights is None else check.class_vector("weighted_ce", "weights", weights, logits.shape[1], logits)
    return _weighted_ce(logits, labels, w)


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
    if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"{fn}: temperature={temperature!r} must be a finite number > 0")
    return _kl(student_logits, teacher_logits, temperature, detach_teacher)


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
    ``cfg.saf_mode``, ``cfg.gamma``, ``cfg.saf_lambda``, ``cfg.saf_eps``, ``alpha`` and ``similarity``. With
    ``cfg.use_distillation`` False the KL terms are neither computed nor reported.

    Returns ``(total, terms)``: ``total`` the differentiable scalar; ``terms`` maps
    "teacher_ce", "student_<m>", "kl_<m>" (per modality) and "total" to detached 0-d tensors
    (unweighted terms; ``float(terms[k])`` for logging, taken when the caller wants the sync).
    """
    teacher, students = check.objective_arguments(outputs, labels, cfg, alpha, similarity)
    c = teacher.shape[1]
    w = None if class_weights is None else check.class_vector("total_loss", "weights", class_weights, c, teacher)
    if cfg.use_saf:
        similarity = check.class_matrix("total_loss", similarity, c, teacher)
        alpha = check.class_vector("total_loss", "alpha", alpha, c, teacher)
    return _objective(teacher, students, labels, cfg, w, alpha, similarity)


def _objective(teacher: torch.Tensor, students: Mapping[str, torch.Tensor], labels: torch.Tensor,
               cfg: LossConfig, class_weights: torch.Tensor | None, alpha: torch.Tensor | None,
               similarity: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`total_loss` on checked constants (in the dtype and device of the logits)."""
    terms: dict[str, torch.Tensor] = {}
    teacher_ce = _weighted_ce(teacher, labels, class_weights)
    terms["teacher_ce"] = teacher_ce.detach()
    total = cfg.teacher_weight * teacher_ce
    for m, logits in students.items():
        if cfg.use_saf:
            student = _reduce(_saf(logits, labels, similarity, alpha, cfg.gamma, cfg.saf_mode, cfg.saf_lambda,
                                   cfg.saf_eps),
                              "mean", logits)
        else:
            student = _weighted_ce(logits, labels, class_weights)
        terms[f"student_{m}"] = student.detach()
        total = total + cfg.student_weight * student
        if cfg.use_distillation:
            kl = _kl(logits, teacher, cfg.temperature, cfg.detach_teacher)
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
    alpha: torch.Tensor  # (C,) SAF class weights (abar, or the reference alpha in 'reference' mode)
    similarity: torch.Tensor  # (C, C)

    @classmethod
    def from_counts(cls, cfg: LossConfig, counts: Any, class_names: Sequence[str]) -> "LossComputer":
        names = tuple(class_names)
        if len(np.asarray(counts).reshape(-1)) != len(names):
            raise ValueError(f"LossComputer.from_counts: {len(np.asarray(counts).reshape(-1))} counts "
                             f"for {len(names)} class names")
        weights = class_frequency_weights(counts, cfg.class_weights)
        # SAF's class weights: the reference code's alpha inside the sum, or abar read at the true class.
        alpha = reference_alpha(names) if cfg.saf_mode == "reference" else saf_class_weights(counts, cfg.saf_beta)
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
        """The objective on a batch. The constants were checked when they were built, so the
        formulas run directly (:func:`total_loss` checks everything on every call)."""
        return _objective(outputs.teacher_logits, outputs.student_logits, labels, self.cfg, self.class_weights,
                          self.alpha if self.cfg.use_saf else None, self.similarity if self.cfg.use_saf else None)
