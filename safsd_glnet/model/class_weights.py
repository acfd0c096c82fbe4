"""Per-class weights of the losses: the teacher cross-entropy's weights and SAF's weights abar, both
from the training split's class counts, and the reference code's IEMOCAP alpha for SAF's
``"reference"`` mode."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from ..dataset_facts import REFERENCE_ALPHA_IEMOCAP
from .loss_checks import iemocap_order


def _checked_counts(fn: str, counts: Any) -> torch.Tensor:
    """``counts`` as a float64 (C,) tensor of finite, non-negative values that are not all zero."""
    cnt = torch.as_tensor(np.asarray(counts, dtype=np.float64))
    if cnt.dim() != 1 or cnt.numel() == 0:
        raise ValueError(f"{fn}: counts must be a non-empty 1-D sequence, got shape {tuple(cnt.shape)}")
    if not torch.isfinite(cnt).all() or (cnt < 0).any():
        raise ValueError(f"{fn}: counts must be finite and >= 0, got {cnt.tolist()}")
    if cnt.sum() <= 0:
        raise ValueError(f"{fn}: counts are all zero, cannot form class frequencies")
    return cnt


def _inverse_frequency(fn: str, counts: Any) -> torch.Tensor:
    """1 / frequency per class (float64); classes with zero count get the largest weight."""
    cnt = _checked_counts(fn, counts)
    total = cnt.sum()
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


def saf_class_weights(counts: Any, beta: float = 0.5) -> torch.Tensor:
    r"""SAF's class weights abar (C,) float32, read at the TRUE class of each sample (SPEC.md, amended).

    .. math::

        \bar\alpha_c = \frac{f_c^{-\beta}}{\sum_k f_k \, f_k^{-\beta}}, \qquad f_c = n_c / \sum_k n_k

    so that the training split's mean of abar_{y_i}, sum_c f_c abar_c, is exactly 1: a SAF student
    term then has the scale of a CE term (the first SPEC's weights summed to 1 and made it about C
    times smaller). ``beta`` = 0 gives abar = 1 (uniform), 1 inverse frequency (abar_c = 1 / (C f_c)),
    0.5 (the default) the square root between them. A class absent from the training split is never
    a true class there; it gets the largest present weight, so the vector stays finite.
    """
    fn = "saf_class_weights"
    if not (isinstance(beta, (int, float)) and not isinstance(beta, bool) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"{fn}: beta={beta!r} must be a finite number >= 0")
    cnt = _checked_counts(fn, counts)
    f = cnt / cnt.sum()
    present = f > 0
    raw = torch.zeros_like(f)
    raw[present] = f[present].pow(-float(beta))
    raw[~present] = raw[present].max()
    return (raw / (f * raw).sum()).to(torch.float32)


def reference_alpha(class_names: Sequence[str]) -> torch.Tensor:
    """The reference code's SAF alpha (C,) float32 (:data:`REFERENCE_ALPHA_IEMOCAP`), reordered to
    ``class_names``, which must be a permutation of the IEMOCAP classes: the reference has no
    constants for any other corpus. Used only by SAF's ``"reference"`` mode."""
    order = iemocap_order("reference_alpha", class_names, "loss.saf_mode='reference' (the reference code's alpha)",
                          "use loss.saf_mode='soft' or 'penalty'")
    return torch.tensor([REFERENCE_ALPHA_IEMOCAP[k] for k in order], dtype=torch.float32)
