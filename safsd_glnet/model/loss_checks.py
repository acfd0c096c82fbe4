"""Argument checks of the loss functions, kept apart so that :mod:`safsd_glnet.model.losses` reads as
its formulas.

The public loss functions check their arguments once per call, with a message that names the
function and the argument; inside training, :class:`~safsd_glnet.model.losses.LossComputer` holds
constants that were checked when it was built and calls the formulas directly.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from ..dataset_facts import IEMOCAP_CLASSES

SAF_MODES = ("soft", "penalty", "reference")
MAX_SAF_EPS = 0.5  # soft SAF keeps 1 - eps > eps on the true class only below this
REDUCTIONS = ("mean", "sum", "none")


def logits_and_labels(fn: str, logits: torch.Tensor, labels: torch.Tensor, *, reduction: str | None = None,
                      gamma: float | None = None, lam: float | None = None, mode: str | None = None,
                      eps: float | None = None) -> None:
    """All the checks of a loss function's arguments: shapes, label range, and the scalars given."""
    _check_logits_labels(fn, logits, labels)
    if reduction is not None and reduction not in REDUCTIONS:
        raise ValueError(f"{fn}: reduction={reduction!r}, expected one of {REDUCTIONS}")
    if gamma is not None and not (math.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"{fn}: gamma={gamma!r} must be finite and >= 0")
    if lam is not None and not (math.isfinite(lam) and lam >= 0):
        # A negative lambda could make the penalty factor negative, i.e. reward the confusion.
        raise ValueError(f"{fn}: lam={lam!r} must be finite and >= 0")
    saf_scalars(fn, mode=mode, eps=eps)


def saf_scalars(fn: str, *, mode: str | None = None, eps: float | None = None) -> None:
    """SAF's mode is one of :data:`SAF_MODES`; soft mode's eps lies in [0, 0.5)."""
    if mode is not None and mode not in SAF_MODES:
        raise ValueError(f"{fn}: mode={mode!r}, expected one of {SAF_MODES}")
    if eps is not None and not (math.isfinite(eps) and 0 <= eps < MAX_SAF_EPS):
        # At eps >= 0.5 a similar class could get as much target mass as the true one.
        raise ValueError(f"{fn}: eps={eps!r} must lie in [0, {MAX_SAF_EPS})")


def class_matrix(fn: str, value: Any, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a finite (C, C) tensor with the dtype and device of ``like``."""
    sim = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if sim.shape != (num_classes, num_classes):
        raise ValueError(f"{fn}: similarity must have shape ({num_classes}, {num_classes}), got {tuple(sim.shape)}")
    if not torch.isfinite(sim).all():
        raise ValueError(f"{fn}: similarity contains non-finite values")
    return sim


def normalise_names(fn: str, class_names: Sequence[str]) -> list[str]:
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


def iemocap_order(fn: str, class_names: Sequence[str], what: str, instead: str) -> list[int]:
    """Index into IEMOCAP_CLASSES of every name in ``class_names`` (a permutation of them)."""
    names = normalise_names(fn, class_names)
    if sorted(names) != sorted(IEMOCAP_CLASSES):
        raise ValueError(
            f"{fn}: {what} exists only for the IEMOCAP class set {IEMOCAP_CLASSES}, "
            f"got class_names={list(class_names)!r}; {instead}"
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


def class_vector(fn: str, name: str, value: Any, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a (C,) tensor with the dtype and device of ``like``."""
    vec = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if vec.shape != (num_classes,):
        raise ValueError(f"{fn}: {name} must have shape ({num_classes},), got {tuple(vec.shape)}")
    if not torch.isfinite(vec).all() or (vec < 0).any():
        raise ValueError(f"{fn}: {name} must be finite and >= 0, got {vec.tolist()}")
    return vec


def objective_arguments(outputs: Any, labels: torch.Tensor, cfg: "LossConfig", alpha: Any, similarity: Any):
    """The checks of :func:`safsd_glnet.model.losses.total_loss`; returns the teacher and student logits."""
    from ..config import LossConfig

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
    logits_and_labels(fn, teacher, labels)
    for m, logits in students.items():
        logits_and_labels(fn, logits, labels)
        if logits.shape != teacher.shape:
            raise ValueError(f"{fn}: student {m!r} logits {tuple(logits.shape)} differ from the teacher's "
                             f"{tuple(teacher.shape)}")
    return teacher, students
