"""Figures for notebooks, the command line and papers. Every function returns the matplotlib
``Figure`` and never calls ``plt.show``, so notebooks display it and scripts save it with
:func:`save_figure` (PNG for the README, PDF for papers)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt  # headless machines fall back to Agg by themselves
import numpy as np

from .io import atomic_path


def save_figure(fig, path: str | Path, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``path`` with each suffix in ``formats`` (atomically); returns the files."""
    path = Path(path)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
        written.append(target)
    return written


def normalise_rows(confusion: np.ndarray) -> np.ndarray:
    """Row-normalised confusion (recall per true class); empty rows stay zero."""
    confusion = np.asarray(confusion, dtype=float)
    totals = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)


def plot_confusion(confusion: Any, class_names: Sequence[str], *, normalise: bool = True,
                   title: str | None = None, ax=None):
    """Heatmap of a confusion matrix (rows: true class, columns: predicted class)."""
    import seaborn as sns

    confusion = np.asarray(confusion)
    values = normalise_rows(confusion) if normalise else confusion
    if ax is None:
        size = 1.0 + 0.75 * len(class_names)
        fig, ax = plt.subplots(figsize=(size + 1.2, size))
    else:
        fig = ax.figure
    sns.heatmap(values, annot=True, fmt=".2f" if normalise else "d", cmap="Blues", square=True,
                xticklabels=class_names, yticklabels=class_names, vmin=0, vmax=1 if normalise else None,
                cbar_kws={"label": "share of the true class" if normalise else "utterances"}, ax=ax)
    ax.set_xlabel("predicted emotion")
    ax.set_ylabel("true emotion")
    ax.tick_params(axis="x", rotation=45)
    ax.tick_params(axis="y", rotation=0)
    if title:
        ax.set_title(title)
    return fig


def plot_history(history: list[dict[str, Any]], chosen_epoch: int | None = None, *, title: str | None = None):
    """Two panels: every loss term per epoch, and validation / test weighted F1 per epoch with
    the chosen (honest protocol) epoch marked."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(12, 4.2))
    for name in history[0]["loss"]:
        ax_loss.plot(epochs, [r["loss"][name] for r in history], label=name,
                     lw=2.2 if name == "total" else 1.3)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (per utterance)")
    ax_loss.set_title("loss terms")
    ax_loss.legend(fontsize=8, ncol=2)
    for split, style in (("valid", "-"), ("test", "--")):
        ax_f1.plot(epochs, [r[split]["weighted_f1"] for r in history], style, label=f"{split} weighted F1")
    if chosen_epoch:
        ax_f1.axvline(chosen_epoch, color="grey", ls=":", label=f"chosen epoch {chosen_epoch}")
    ax_f1.set_xlabel("epoch")
    ax_f1.set_ylabel("weighted F1 (%)")
    ax_f1.set_title("teacher weighted F1")
    ax_f1.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
