"""Per-class weights of the losses: the teacher cross-entropy's weights and SAF's alpha, both from
the training split's class counts (or the reference code's IEMOCAP constants)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .facts import REFERENCE_ALPHA_IEMOCAP
from .loss_checks import iemocap_order


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
        order = iemocap_order(fn, class_names, "the 'reference' alpha")
        if cnt.size != len(order):
            raise ValueError(f"{fn}: {cnt.size} counts for {len(order)} class names")
        return torch.tensor([REFERENCE_ALPHA_IEMOCAP[k] for k in order], dtype=torch.float32)
    raise ValueError(f"{fn}: kind={kind!r}, expected 'inverse', 'uniform' or 'reference'")
