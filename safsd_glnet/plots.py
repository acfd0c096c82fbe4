"""Figures for notebooks, the command line and papers. Every function returns the matplotlib
``Figure`` and never calls ``plt.show``, so notebooks display it and scripts save it with
:func:`save_figure` (PNG for the README, PDF for papers)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt  # headless machines fall back to Agg by themselves
import numpy as np

from .facts import MODALITY_NAMES
from .files import atomic_path


def save_figure(fig, path: str | Path, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``path`` with each suffix in ``formats`` (atomically); returns the files.

    PDFs carry no creation date, so re-running a notebook rewrites the same bytes and git sees
    no change (matplotlib would otherwise stamp the time of writing into every PDF)."""
    path = Path(path)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        extra = {"metadata": {"CreationDate": None}} if fmt == "pdf" else {}
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", **extra)
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


def plot_history(history: list[dict[str, Any]], chosen_epoch: int | None = None, *, title: str | None = None,
                 students: bool = False):
    """Training curves: every loss term per epoch, and validation / test weighted F1 per epoch
    with the chosen (honest protocol) epoch marked; with ``students`` a third panel shows each
    modality student's validation weighted F1 beside the teacher's."""
    epochs = [r["epoch"] for r in history]
    student_names = list(history[0]["valid"].get("students", {})) if students else []
    panels = 3 if student_names else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.2))
    ax_loss, ax_f1 = axes[0], axes[1]
    names = list(history[0]["loss"])
    for name in names:
        ax_loss.plot(epochs, [r["loss"][name] for r in history], label=_loss_label(name),
                     lw=2.4 if name == "total" else 1.3, color="black" if name == "total" else None,
                     ls=":" if name.startswith("kl_") else "-", marker="o" if len(epochs) < 4 else None)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (mean per utterance)")
    ax_loss.set_title("loss terms (unweighted; total = weighted sum)")
    ax_loss.legend(fontsize=7, ncol=2, loc="upper right", framealpha=0.85)
    for split, style in (("valid", "-"), ("test", "--")):
        ax_f1.plot(epochs, [r[split]["weighted_f1"] for r in history], style, label=f"{split} weighted F1",
                   marker="o" if len(epochs) < 4 else None)
    if chosen_epoch:
        ax_f1.axvline(chosen_epoch, color="grey", ls=":", label=f"chosen epoch {chosen_epoch} (best valid)")
    ax_f1.set_xlabel("epoch")
    ax_f1.set_ylabel("weighted F1 (%)")
    ax_f1.set_title("teacher (the model's prediction)")
    ax_f1.legend(fontsize=8)
    if student_names:
        ax = axes[2]
        ax.plot(epochs, [r["valid"]["weighted_f1"] for r in history], color="black", lw=2, label="teacher")
        for m in student_names:
            ax.plot(epochs, [r["valid"]["students"][m]["weighted_f1"] for r in history],
                    label=f"{MODALITY_LABELS.get(m, m)} student", marker="o" if len(epochs) < 4 else None)
        if chosen_epoch:
            ax.axvline(chosen_epoch, color="grey", ls=":")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation weighted F1 (%)")
        ax.set_title("students vs teacher (validation)")
        ax.legend(fontsize=8)
    for ax in axes:
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


MODALITY_LABELS = MODALITY_NAMES  # "t" -> "text": the legends' names


def _loss_label(name: str) -> str:
    """``student_t`` -> ``student (text)``, ``kl_a`` -> ``KL teacher->student (audio)``."""
    if name == "teacher_ce":
        return "teacher CE"
    kind, _, m = name.partition("_")
    if kind == "student" and m in MODALITY_LABELS:
        return f"student {MODALITY_LABELS[m]}"
    if kind == "kl" and m in MODALITY_LABELS:
        return f"KL to {MODALITY_LABELS[m]} student"
    return name


# --------------------------------------------------------------------------- colours

# Fixed emotion colours so that a class looks the same in every figure. Similar pairs
# (happy/excited, angry/frustrated, joy/surprise, anger/disgust, fear/sadness) get clearly
# different hues on purpose: the embedding maps must show them apart.
EMOTION_COLORS = {
    "neutral": "#8c8c8c",
    "happy": "#e6a700", "joy": "#e6a700", "joyful": "#e6a700",
    "excited": "#e0457b", "surprise": "#e0457b",
    "sad": "#3b6fb6", "sadness": "#3b6fb6",
    "angry": "#c62828", "anger": "#c62828", "mad": "#c62828",
    "frustrated": "#7b3fa0", "fear": "#7b3fa0", "scared": "#7b3fa0",
    "disgust": "#2e8b57",
    "peaceful": "#17becf", "powerful": "#8c564b",
}


def class_colors(class_names: Sequence[str]) -> dict[str, str]:
    """name -> colour: the fixed emotion colours, tab10 for names it does not know (no repeats)."""
    out: dict[str, str] = {}
    spare = [c for c in plt.get_cmap("tab10").colors]
    spare = ["#%02x%02x%02x" % tuple(int(255 * v) for v in c) for c in spare]
    for name in class_names:
        colour = EMOTION_COLORS.get(str(name).lower())
        if colour is None or colour in out.values():
            colour = next(c for c in spare if c not in out.values())
        out[name] = colour
    return out


# --------------------------------------------------------------------------- data exploration

def plot_class_distribution(counts: dict[str, Any], class_names: Sequence[str], *, title: str | None = None):
    """Grouped bars: the share of each class per split, the utterance count written on top."""
    splits = list(counts)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(class_names) + 1), 3.8))
    width = 0.8 / len(splits)
    x = np.arange(len(class_names))
    split_colors = {"train": "#4c72b0", "valid": "#dd8452", "test": "#55a868"}
    for i, split in enumerate(splits):
        c = np.asarray(counts[split], dtype=float)
        share = 100 * c / max(c.sum(), 1)
        bars = ax.bar(x + (i - (len(splits) - 1) / 2) * width, share, width, label=f"{split} ({int(c.sum())} utt.)",
                      color=split_colors.get(split))
        for bar, n in zip(bars, c):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{int(n)}", ha="center", va="bottom",
                    fontsize=6.5, rotation=90)
    ax.set_xticks(x, class_names)
    ax.set_ylabel("share of the split's utterances (%)")
    ax.set_xlabel("emotion (bar labels: utterance counts)")
    ax.margins(y=0.18)
    ax.legend(fontsize=8)
    ax.set_title(title or "class distribution per split")
    fig.tight_layout()
    return fig


def plot_dialogue_lengths(lengths: dict[str, Any], *, title: str | None = None):
    """Histogram of utterances per dialogue, one colour per split, means marked."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    all_lengths = np.concatenate([np.asarray(v) for v in lengths.values()])
    bins = np.histogram_bin_edges(all_lengths, bins=min(30, max(5, len(np.unique(all_lengths)))))
    split_colors = {"train": "#4c72b0", "valid": "#dd8452", "test": "#55a868"}
    splits = list(lengths)
    values = [np.asarray(lengths[s]) for s in splits]
    colours = [split_colors.get(s) for s in splits]
    ax.hist(values, bins=bins, stacked=True, color=colours, edgecolor="white", linewidth=0.4,
            label=[f"{s}: {len(v)} dialogues, mean {v.mean():.1f}" for s, v in zip(splits, values)])
    for v, colour in zip(values, colours):
        ax.axvline(v.mean(), color=colour, ls="--", lw=1.2)
    ax.set_xlabel("utterances per dialogue")
    ax.set_ylabel("dialogues (stacked over splits)")
    ax.legend(fontsize=8)
    ax.set_title(title or "dialogue lengths (dashed: split mean)")
    fig.tight_layout()
    return fig


def plot_speaker_stats(stats: dict[str, Any], *, title: str | None = None):
    """Three panels from :func:`safsd_glnet.explore.speaker_stats`: utterances per speaker,
    speakers per dialogue, and turn lengths (consecutive utterances by one speaker)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    per = {k: v for k, v in stats["utterances_per_speaker"].items() if v > 0}
    axes[0].bar(list(per), list(per.values()), color="#4c72b0")
    axes[0].set_xlabel("speaker")
    axes[0].set_ylabel("utterances")
    axes[0].set_title("utterances per speaker")
    axes[0].tick_params(axis="x", rotation=45 if len(per) > 4 else 0)
    for ax, key, xlabel, what in ((axes[1], "speakers_per_dialogue", "distinct speakers in the dialogue", "dialogues"),
                                  (axes[2], "turn_lengths", "utterances in a turn", "turns")):
        data = np.asarray(stats[key])
        # a long, thin tail (a few very long turns) is gathered into one last bar "k+"
        cap = int(max(np.percentile(data, 99.5), 5)) if data.max() > 12 else int(data.max())
        values, counts = np.unique(np.minimum(data, cap), return_counts=True)
        ax.bar(values, counts, color="#55a868", width=0.8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(what)
        lo, hi = min(values.min(), 1), max(values.max(), values.min() + 4)
        ax.set_xlim(lo - 0.6, hi + 0.6)
        ticks = np.arange(lo, hi + 1)
        ax.set_xticks(ticks, [f"{t}+" if t == cap and data.max() > cap else str(t) for t in ticks])
    axes[1].set_title("speakers per dialogue")
    axes[2].set_title(f"turn lengths (speaker changes at {100 * stats['switch_rate']:.0f}% of steps)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _heatmap(ax, values, class_names, *, vmax=None, title=None, xlabel=None, ylabel=None, cmap="Blues",
             cbar_label=None, fmt=".2f"):
    import seaborn as sns

    sns.heatmap(values, annot=True, fmt=fmt, cmap=cmap, square=True, xticklabels=class_names,
                yticklabels=class_names, vmin=0, vmax=vmax, ax=ax, annot_kws={"fontsize": 7},
                cbar_kws={"label": cbar_label, "shrink": 0.8} if cbar_label else {"shrink": 0.8})
    ax.tick_params(axis="x", rotation=45)
    ax.tick_params(axis="y", rotation=0)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)


def plot_transitions(matrices: dict[str, Any], class_names: Sequence[str], *, title: str | None = None):
    """Side-by-side emotion transition matrices (rows: earlier emotion, columns: later one).

    ``matrices`` maps a relation (``"same"`` / ``"other"``, see
    :func:`safsd_glnet.explore.transition_matrix`) or any title to a row-normalised (C, C)."""
    captions = {"same": "same speaker: their previous utterance -> this one",
                "other": "other speaker: previous utterance (someone else's) -> this one"}
    n = len(matrices)
    size = 1.0 + 0.7 * len(class_names)
    fig, axes = plt.subplots(1, n, figsize=(n * (size + 1.0), size), squeeze=False)
    for ax, (key, m) in zip(axes[0], matrices.items()):
        _heatmap(ax, np.asarray(m), class_names, vmax=1, title=captions.get(key, key),
                 xlabel="emotion of the later utterance", ylabel="emotion of the earlier utterance",
                 cbar_label="P(later | earlier)")
    fig.suptitle(title or "emotion transitions (each row sums to 1)")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def plot_similarity_matrices(matrices: dict[str, Any], class_names: Sequence[str], *, title: str | None = None):
    """The class-similarity matrices S that SAF can use, side by side (row = true class).

    A value that is a string instead of a matrix (the source is unavailable for these
    classes) is drawn as an empty panel carrying that reason."""
    captions = {"prior": "prior (hand-set, reference code)", "vad": "vad (NRC valence/arousal/dominance)",
                "prototype": "prototype (class-mean cosine)", "identity": "identity (plain focal loss)"}
    n = len(matrices)
    size = 1.0 + 0.7 * len(class_names)
    fig, axes = plt.subplots(1, n, figsize=(n * (size + 1.0), size), squeeze=False)
    for ax, (key, m) in zip(axes[0], matrices.items()):
        if isinstance(m, str):
            ax.axis("off")
            ax.set_title(captions.get(key, key), fontsize=10)
            ax.text(0.5, 0.5, "not available:\n" + _wrap(m, 40), ha="center", va="center", fontsize=9,
                    transform=ax.transAxes, color="#666")
            continue
        _heatmap(ax, np.asarray(m), class_names, vmax=1, title=captions.get(key, key), cmap="Oranges",
                 xlabel="other class c", ylabel="true class y", cbar_label="S[y, c]")
    fig.suptitle(title or "class similarity S for the SAF loss")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


# --------------------------------------------------------------------------- results of runs

def plot_confusions(confusions: dict[str, Any], class_names: Sequence[str], *, title: str | None = None):
    """Normalised confusion matrices side by side, one per run label."""
    n = len(confusions)
    size = 1.0 + 0.75 * len(class_names)
    fig, axes = plt.subplots(1, n, figsize=(n * (size + 1.2), size), squeeze=False)
    for ax, (label, k) in zip(axes[0], confusions.items()):
        plot_confusion(k, class_names, title=label, ax=ax)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _grouped_bars(ax, groups: Sequence[str], series: dict[str, Sequence[float]], colors=None, fmt="{:.1f}"):
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, (label, values) in enumerate(series.items()):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label,
                      color=None if colors is None else colors[i])
        for bar, v in zip(bars, values):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), fmt.format(v), ha="center",
                    va="bottom", fontsize=7)
    ax.set_xticks(x, groups)


RUN_COLORS = ("#4c72b0", "#c44e52", "#55a868", "#8172b2", "#ccb974", "#64b5cd")


def plot_per_class_f1(per_class: dict[str, dict[str, float]], class_names: Sequence[str], *,
                      support: dict[str, int] | None = None, title: str | None = None):
    """Grouped bars of per-class F1 (percent), one series per run label."""
    fig, ax = plt.subplots(figsize=(max(6.5, 1.4 * len(class_names) + 1), 3.8))
    series = {label: [f1[c] for c in class_names] for label, f1 in per_class.items()}
    groups = [f"{c}\n(n={support[c]})" if support else c for c in class_names]
    _grouped_bars(ax, groups, series, RUN_COLORS)
    ax.set_ylabel("F1 (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title or "per-class F1 on the test set")
    fig.tight_layout()
    return fig


def plot_similar_pairs(rates: dict[str, dict[str, dict[str, Any]]], *, title: str | None = None):
    """Confusion rates of the similar-emotion pairs, one series per run label.

    ``rates`` maps a run label to :func:`safsd_glnet.metrics.similar_pair_confusion` output;
    each pair gives two bars groups, "a -> b" (share of true a predicted as b) and "b -> a"."""
    labels = list(rates)
    pairs = list(rates[labels[0]])
    groups, series = [], {label: [] for label in labels}
    for key in pairs:
        first = rates[labels[0]][key]
        groups += [f"{first['a']}\nas {first['b']}", f"{first['b']}\nas {first['a']}"]
        for label in labels:
            series[label] += [rates[label][key]["a_as_b"], rates[label][key]["b_as_a"]]
    fig, ax = plt.subplots(figsize=(max(6.5, 1.25 * len(groups) + 2.5), 3.9))
    _grouped_bars(ax, groups, series, RUN_COLORS)
    ax.set_ylabel("share of the true class (%)")
    ax.set_xlabel("true emotion predicted as its similar emotion (lower is better)")
    ax.margins(y=0.15)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title or "confusions between similar emotions (test set)")
    fig.tight_layout()
    return fig


def embed_2d(features: Any, method: str = "umap", *, groups: Any = None, seed: int = 0, n_neighbors: int = 15,
             min_dist: float = 0.3) -> np.ndarray:
    """(N, F) -> (N, 2) for a map: ``"umap"`` (umap-learn, cosine metric, seeded) or ``"pca"``
    (a quick linear stand-in, e.g. for tests). Features are standardised first.

    ``groups`` (N,) centres the features within each group before that, e.g. per speaker: the
    model adds a speaker embedding to every stream, and uncentred maps then split into one
    island per speaker that hides the emotion structure."""
    x = np.asarray(features, dtype=np.float32)
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (len(x),):
            raise ValueError(f"embed_2d: groups has shape {groups.shape}, expected ({len(x)},)")
        x = x.copy()
        for g in np.unique(groups):
            x[groups == g] -= x[groups == g].mean(0)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "umap":
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(x) - 1), min_dist=min_dist,
                            metric="cosine", random_state=seed, n_jobs=1)
        return reducer.fit_transform(x)
    raise ValueError(f"embed_2d: method={method!r}, expected 'umap' or 'pca'")


def plot_embeddings(panels: dict[str, dict[str, Any]], labels: Any, class_names: Sequence[str], *,
                    pairs: Sequence[tuple[str, str]] = (), method: str = "UMAP", title: str | None = None):
    """2-D maps of utterance embeddings coloured by true emotion.

    ``panels`` is ``{row label: {column label: (N, 2) coordinates}}`` (for example one row per
    run, one column per teacher / student). Classes in a similar pair are drawn on top and
    opaque, the others faded; each class centroid (median point) is a large black-edged dot with
    the class name, and a dashed line joins the centroids of each similar pair, so the reader
    sees whether similar emotions separate."""
    labels = np.asarray(labels)
    rows = list(panels)
    cols = list(dict.fromkeys(c for r in rows for c in panels[r]))
    colors = class_colors(class_names)
    emphasised = {c for p in pairs for c in p}
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(3.6 * len(cols), 3.5 * len(rows) + 0.6), squeeze=False)
    order = [i for i, c in enumerate(class_names) if c not in emphasised] + \
            [i for i, c in enumerate(class_names) if c in emphasised]
    for r, row in enumerate(rows):
        for c, col in enumerate(cols):
            ax = axes[r][c]
            xy = panels[row].get(col)
            if xy is None:
                ax.axis("off")
                continue
            xy = np.asarray(xy)
            centroids = {}
            for k in order:
                name = class_names[k]
                sel = labels == k
                if not sel.any():
                    continue
                strong = not emphasised or name in emphasised
                ax.scatter(xy[sel, 0], xy[sel, 1], s=5 if strong else 3, alpha=0.7 if strong else 0.18,
                           color=colors[name], linewidths=0, rasterized=True)
                centroids[name] = np.median(xy[sel], axis=0)
            for a, b in pairs:
                if a in centroids and b in centroids:
                    (x0, y0), (x1, y1) = centroids[a], centroids[b]
                    ax.plot([x0, x1], [y0, y1], color="black", ls="--", lw=0.9, alpha=0.8)
            span_x = np.ptp(xy[:, 0]) if len(xy) else 1.0
            span_y = np.ptp(xy[:, 1]) if len(xy) else 1.0
            placed: list[tuple[float, float]] = []
            for name, (x0, y0) in centroids.items():
                ax.scatter([x0], [y0], s=70, color=colors[name], edgecolors="black", linewidths=1.0, zorder=5)
                # a label above its dot, or below it when another class' label already sits there
                crowded = any(abs(x0 - px) < 0.12 * span_x and abs(y0 - py) < 0.07 * span_y for px, py in placed)
                placed.append((x0, y0))
                ax.text(x0, y0 + (-0.035 if crowded else 0.035) * span_y, name, fontsize=7, ha="center",
                        va="top" if crowded else "bottom", zorder=6, weight="bold" if name in emphasised else None,
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.6})
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col, fontsize=10)
            if c == 0:
                ax.set_ylabel(row, fontsize=10)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colors[n], label=n,
                          alpha=1.0 if (not emphasised or n in emphasised) else 0.35) for n in class_names]
    if pairs:
        handles.append(plt.Line2D([], [], color="black", ls="--", lw=0.9, marker="o", markerfacecolor="white",
                                  markeredgecolor="black", label="similar pair: line between class centroids"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False)
    fig.suptitle(title or f"{method} of utterance embeddings, coloured by true emotion")
    fig.tight_layout(rect=(0, 0.06 if len(rows) > 1 else 0.1, 1, 1))
    return fig


def plot_ablation(rows: Sequence[dict[str, Any]], metric: str = "weighted_f1", *, title: str | None = None):
    """Bars of the honest-protocol mean per variant with +-1 std error bars, the single seeds as
    dots, and the reference-protocol mean as a hollow diamond beside each bar.

    ``rows`` are :func:`safsd_glnet.ablate.summarise` rows (keys ``label``, ``n``,
    ``<metric>_mean``, ``<metric>_std``, ``<metric>_values`` and, for weighted F1 and accuracy,
    ``reference_<metric>_mean``). Bars start at 0 so that their lengths compare honestly; the
    numbers are written above them."""
    labels = [r["label"] for r in rows]
    means = np.array([r[f"{metric}_mean"] for r in rows])
    stds = np.array([r[f"{metric}_std"] for r in rows])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(rows) + 2.5), 4.6))
    x = np.arange(len(rows))
    ax.bar(x, means, yerr=stds, capsize=3, color="#4c72b0", alpha=0.85, width=0.6,
           error_kw={"elinewidth": 1.2}, label="honest protocol: mean ± std over seeds")
    for i, r in enumerate(rows):
        values = list(r.get(f"{metric}_values") or [])
        offsets = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(len(values))
        ax.scatter(i + offsets, values, s=10, color="black", zorder=3, label="single seeds" if i == 0 else None)
        ax.text(i, means[i] + stds[i] + 1.0, f"{means[i]:.1f}", ha="center", va="bottom", fontsize=8)
    ref_key = f"reference_{metric}_mean"
    if rows and all(ref_key in r for r in rows):
        ax.scatter(x + 0.38, [r[ref_key] for r in rows], marker="D", s=24, facecolors="none", edgecolors="#c44e52",
                   zorder=4, label="reference protocol (best test epoch), mean")
    # headroom above the tallest bar for the value labels and the legend
    ax.set_ylim(0, 100 if not len(rows) else min(105.0, max(means + stds) * 1.45 + 2))
    slanted = len(rows) > 3 or max((len(str(lab)) for lab in labels), default=0) > 10
    ax.set_xticks(x, labels, rotation=30 if slanted else 0, ha="right" if slanted else "center",
                  rotation_mode="anchor")
    nice = {"weighted_f1": "weighted F1", "accuracy": "accuracy", "macro_f1": "macro F1"}.get(metric, metric)
    ax.set_ylabel(f"test {nice} (%)")
    ax.legend(fontsize=7.5, loc="upper left", ncol=2 if len(rows) > 4 else 1, framealpha=0.9)
    n = sorted({r["n"] for r in rows})
    corpus = rows[0].get("corpus") if rows else None
    ax.set_title(title or f"{corpus + ': ' if corpus else ''}ablations, test {nice} "
                          f"({'/'.join(map(str, n))} seed{'s' if n != [1] else ''} per variant)")
    fig.tight_layout()
    return fig


def __getattr__(name: str):
    """``plots.LiveHistory``, the old home of the training callback, still works and warns."""
    if name == "LiveHistory":
        import importlib
        import warnings

        warnings.warn("safsd_glnet.plots.LiveHistory moved to safsd_glnet.progress.LiveHistory",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module("safsd_glnet.progress").LiveHistory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
