"""Evaluation metrics over real utterances: accuracy, weighted / macro / per-class F1, confusions.

Shape letters: N real (unpadded) utterances, C classes, R runs (seeds).

Everything is computed from the (C, C) confusion matrix K (rows = true class, columns =
predicted class) with numpy, and matches scikit-learn's
``f1_score(y, p, labels=range(C), average=..., zero_division=0)``:

* tp_c = K[c, c], support n_c = sum_j K[c, j], predicted m_c = sum_i K[i, c]
* F1_c = 2 tp_c / (n_c + m_c), and 0 where n_c + m_c = 0 (class neither present nor predicted)
* macro F1 = mean over all C classes (absent classes count, with F1 = 0)
* weighted F1 = sum_c n_c F1_c / N (absent classes weigh 0)
* accuracy = trace(K) / N

Scores are reported in percent (0-100) as Python floats. Inputs must already be the real
utterances only: padding never enters a metric.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..dataset_facts import TRACKED_PAIRS

# The pairs the metrics track per corpus (:data:`safsd_glnet.dataset_facts.TRACKED_PAIRS`).
SIMILAR_PAIRS: dict[str, list[tuple[str, str]]] = {corpus: list(pairs) for corpus, pairs in TRACKED_PAIRS.items()}

DEFAULT_SEED_KEYS = ("accuracy", "weighted_f1", "macro_f1")


def _as_int_array(fn: str, name: str, values: Any) -> np.ndarray:
    """A 1-D int64 numpy array from a list, numpy array or (CPU or GPU) torch tensor."""
    if hasattr(values, "detach"):  # torch tensor, possibly on a GPU
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{fn}: {name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{fn}: {name} must hold integer class indices, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def confusion_matrix(labels: Any, preds: Any, num_classes: int) -> np.ndarray:
    """K (C, C) int64 with K[i, j] = #{utterances of true class i predicted as class j}."""
    fn = "confusion_matrix"
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"{fn}: num_classes={num_classes!r} must be an int >= 1")
    y = _as_int_array(fn, "labels", labels)
    p = _as_int_array(fn, "preds", preds)
    if y.shape != p.shape:
        raise ValueError(f"{fn}: {y.size} labels but {p.size} predictions")
    for name, arr in (("labels", y), ("preds", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{fn}: {name} must lie in [0, {num_classes - 1}], got [{arr.min()}, {arr.max()}]"
                             " (padding must be removed before metrics)")
    # One bincount over the flattened (true, pred) cell index fills the whole matrix at once.
    flat = np.bincount(y * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def f1_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Per-class F1 (C,) as fractions: 2 tp_c / (n_c + m_c), 0 where the denominator is 0."""
    k = np.asarray(confusion, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"f1_from_confusion: confusion must be square (C, C), got shape {k.shape}")
    tp = np.diag(k)
    denom = k.sum(axis=1) + k.sum(axis=0)  # n_c + m_c = 2 tp + fn + fp
    # zero_division=0 as in sklearn: a class never present and never predicted scores 0.
    return np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def compute_metrics(labels: Any, preds: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, weighted / macro / per-class F1 (percent), confusion, support, N.

    Returns a JSON-serialisable dict: ``accuracy``, ``weighted_f1``, ``macro_f1`` (floats in
    0-100), ``per_class_f1`` {class: percent}, ``confusion`` (C lists of C ints, rows = true),
    ``support`` {class: int}, ``num_utterances``. The conventions are sklearn's with
    ``labels=range(C), zero_division=0`` (see the module docstring). Raises ValueError on an
    empty evaluation set, whose scores would be undefined.
    """
    fn = "compute_metrics"
    if isinstance(class_names, str):
        raise ValueError(f"{fn}: class_names must be a sequence of names, got the string {class_names!r}")
    names = [str(n) for n in class_names]
    if not names:
        raise ValueError(f"{fn}: class_names is empty")
    k = confusion_matrix(labels, preds, len(names))
    n = int(k.sum())
    if n == 0:
        raise ValueError(f"{fn}: no utterances to evaluate (empty labels)")
    f1 = f1_from_confusion(k)
    support = k.sum(axis=1)
    return {
        "accuracy": float(100.0 * np.trace(k) / n),
        "weighted_f1": float(100.0 * (f1 * support).sum() / n),
        "macro_f1": float(100.0 * f1.mean()),
        "per_class_f1": {c: float(100.0 * v) for c, v in zip(names, f1)},
        "confusion": k.tolist(),
        "support": {c: int(s) for c, s in zip(names, support)},
        "num_utterances": n,
    }


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation with ddof = 1); the std of a single value is 0."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"mean_std: values must be a non-empty 1-D sequence, got {list(values)!r}")
    if not np.isfinite(arr).all():
        raise ValueError(f"mean_std: values must be finite, got {arr.tolist()}")
    mean = float(arr.mean())
    # ddof=1 because seeds are a sample of the run-to-run distribution; one run has no spread.
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return mean, std


def summarise_seeds(runs: Sequence[Mapping[str, Any]],
                    keys: Sequence[str] = DEFAULT_SEED_KEYS) -> dict[str, dict[str, Any]]:
    """Mean +- std over R runs: {key: {"mean", "std", "n", "values"}} for each of ``keys``.

    ``runs`` is a list of metric dicts (e.g. :func:`compute_metrics` outputs, one per seed).
    """
    fn = "summarise_seeds"
    runs = list(runs)
    if not runs:
        raise ValueError(f"{fn}: no runs to summarise")
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        missing = [i for i, r in enumerate(runs) if key not in r]
        if missing:
            raise ValueError(f"{fn}: key {key!r} missing from run(s) {missing}")
        values = [float(r[key]) for r in runs]
        mean, std = mean_std(values)
        out[key] = {"mean": mean, "std": std, "n": len(values), "values": values}
    return out


def similar_pairs_for(class_names: Sequence[str]) -> list[tuple[str, str]]:
    """The pairs of :data:`SIMILAR_PAIRS` (all corpora, deduplicated) whose both classes are in
    ``class_names`` (compared case-insensitively), in the spelling of ``class_names``."""
    lookup = {str(n).lower(): str(n) for n in class_names}
    pairs: list[tuple[str, str]] = []
    for corpus_pairs in SIMILAR_PAIRS.values():
        for a, b in corpus_pairs:
            if a in lookup and b in lookup and (lookup[a], lookup[b]) not in pairs:
                pairs.append((lookup[a], lookup[b]))
    return pairs


def similar_pair_confusion(confusion: Any, class_names: Sequence[str],
                           pairs: Sequence[tuple[str, str]] | None = None) -> dict[str, dict[str, Any]]:
    """How often similar classes are mistaken for each other, from a confusion matrix.

    For each pair (a, b): ``a_as_b`` = 100 K[a, b] / n_a and ``b_as_a`` = 100 K[b, a] / n_b
    (row-normalised, percent; 0 where the true class has no support), plus ``mean`` of the
    two. Keys are ``"a/b"`` strings so the result stays JSON-serialisable. ``pairs`` None
    takes :func:`similar_pairs_for` ``(class_names)``.
    """
    fn = "similar_pair_confusion"
    k = np.asarray(confusion, dtype=np.float64)
    names = [str(n) for n in class_names]
    if k.ndim != 2 or k.shape != (len(names), len(names)):
        raise ValueError(f"{fn}: confusion must be ({len(names)}, {len(names)}), got shape {k.shape}")
    index = {n.lower(): i for i, n in enumerate(names)}
    if pairs is None:
        pairs = similar_pairs_for(names)
    row_sums = k.sum(axis=1)

    def rate(i: int, j: int) -> float:
        return float(100.0 * k[i, j] / row_sums[i]) if row_sums[i] > 0 else 0.0

    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"{fn}: pair {pair!r} must have two class names")
        a, b = pair
        unknown = [x for x in (a, b) if str(x).lower() not in index]
        if unknown:
            raise ValueError(f"{fn}: class name(s) {unknown} not in {names}")
        i, j = index[str(a).lower()], index[str(b).lower()]
        ab, ba = rate(i, j), rate(j, i)
        out[f"{a}/{b}"] = {"a": a, "b": b, "a_as_b": ab, "b_as_a": ba, "mean": (ab + ba) / 2.0}
    return out
