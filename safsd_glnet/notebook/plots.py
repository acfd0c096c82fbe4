"""Figures for notebooks, the command line and papers. Every function returns the matplotlib
``Figure`` and never calls ``plt.show``, so notebooks display it and scripts save it.

**Profiles.** A figure is drawn for one of two media (:data:`PROFILES`):

* ``"notebook"`` (the default): at most :data:`NOTEBOOK_WIDTH` inches wide at 100 dpi, so that
  JupyterLab shows it at full size in the output column of a 1280-pixel screen with the file
  browser open (848 px: :data:`NOTEBOOK_COLUMN_PX`, measured by ``tests/notebook/test_browser.py``),
  and no text smaller than 8.5 pt (11.8 px on that screen). Panels that would not fit side by
  side wrap into rows.
* ``"paper"``: the widths of a two-column paper (3.4 in for one panel, 7.0 in across the page),
  text from 6.5 pt, meant for vector PDFs.

``with plots.profile("paper"): fig = plots.plot_transitions(...)`` draws for a paper;
:class:`FigureWriter` does both at once: it shows the notebook drawing, keeps it as PNG, and
writes the paper drawing as PDF (:func:`save_figure`, which strips the PDF's date so that
re-running gives the same bytes).

Long (about 1,000 lines): every figure of the kit beside the profile machinery they share (sizes,
fonts, wrapping); the next split is by section (heatmaps, curves, exploration, results, architecture).
"""
from __future__ import annotations

import functools
import math
import textwrap
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import matplotlib.pyplot as plt  # headless machines fall back to Agg by themselves
import numpy as np

from ..dataset_facts import MODALITY_NAMES
from ..data.atomic_files import atomic_path

# --------------------------------------------------------------------------- profiles

NOTEBOOK_COLUMN_PX = 848  # JupyterLab 4.6's output column at 1280 px with the file browser open (measured)
NOTEBOOK_WIDTH = 8.2  # inches at 100 dpi: 820 px, inside that column with a margin


@dataclass(frozen=True)
class Profile:
    """Sizes of one medium. Widths and cells in inches, fonts in points."""

    name: str
    width: float  # the widest a figure may be (several panels)
    single: float  # the width of a one-panel figure
    font: float  # titles and axis labels
    small: float  # the smallest text: tick labels, legends, numbers in cells and on bars
    cell: float  # the side of one heatmap cell, at most
    min_cell: float  # ... and at least (the cell's number must fit in it)
    dpi: int  # pixels per inch on screen (JupyterLab's inline figures use matplotlib's 100)
    titles: bool  # draw the figure's overall title (a paper puts it in the caption)
    marker: float  # scatter point area in the embedding maps


PROFILES = {
    "notebook": Profile("notebook", width=NOTEBOOK_WIDTH, single=6.6, font=10.5, small=8.5, cell=0.46,
                        min_cell=0.36, dpi=100, titles=True, marker=7.0),
    "paper": Profile("paper", width=7.0, single=3.4, font=8.0, small=6.5, cell=0.3, min_cell=0.25, dpi=100,
                     titles=False, marker=2.0),
}
_current = ["notebook"]


def current_profile() -> Profile:
    return PROFILES[_current[0]]


def use_profile(name: str) -> None:
    """Draw every following figure for ``name`` (``"notebook"`` or ``"paper"``)."""
    if name not in PROFILES:
        raise ValueError(f"plots: unknown profile {name!r}, expected one of {sorted(PROFILES)}")
    _current[0] = name


@contextmanager
def profile(name: str) -> Iterator[Profile]:
    """``with profile("paper"):`` draws the figures of the block for a paper."""
    old = _current[0]
    use_profile(name)
    try:
        yield PROFILES[name]
    finally:
        _current[0] = old


def _rc(p: Profile) -> dict[str, Any]:
    return {"font.size": p.font, "axes.titlesize": p.font, "axes.labelsize": p.font,
            "figure.titlesize": p.font + 1.0, "xtick.labelsize": p.small, "ytick.labelsize": p.small,
            "legend.fontsize": p.small, "legend.title_fontsize": p.small, "figure.dpi": p.dpi,
            "savefig.dpi": p.dpi, "pdf.fonttype": 42}


def _drawn(fn):
    """Draw ``fn``'s figure with the current profile's fonts, then raise any text below the
    profile's smallest size to it (seaborn and legends choose their own sizes)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        p = current_profile()
        with plt.rc_context(_rc(p)):
            fig = fn(*args, **kwargs)
            for ax in fig.axes:  # tick labels are made when drawn: give the size to the axis itself
                ax.tick_params(labelsize=p.small)
            from matplotlib.text import Text

            for t in fig.findobj(Text):
                if t.get_fontsize() < p.small:
                    t.set_fontsize(p.small)
        return fig
    return wrapper


def _figure(width: float, height: float):
    p = current_profile()
    return plt.figure(figsize=(min(width, p.width), height), dpi=p.dpi, layout="constrained")


def _title(fig, text: str | None, width: float | None = None) -> None:
    """The figure's title; none in the paper profile. A title a little too long for a narrow
    figure widens the figure (up to the profile's width) rather than wrap; a longer one is
    wrapped into lines of even length (:func:`_wrap`), so that no word is left alone on a line
    (a confusion matrix titled "... at the chosen epoch" / "15")."""
    p = current_profile()
    if not (text and p.titles):
        return
    width = width or fig.get_figwidth()
    size = p.font + 1.0
    if len(text) > _chars(width, size):
        needed = _text_width(text, size) / 0.55 * 0.6 + 0.1  # the width at which _chars fits it
        if needed <= p.width:
            fig.set_figwidth(max(fig.get_figwidth(), needed))
            width = max(width, needed)
    fig.suptitle(_wrap(text, _chars(width, size)))


def _chars(width_in: float, size_pt: float) -> int:
    """About how many characters of ``size_pt`` fit in ``width_in`` (mean glyph: 0.6 em, a margin
    over DejaVu Sans' 0.55)."""
    return max(12, int(width_in * 72 / (0.6 * size_pt)))


def _text_width(text: str, size_pt: float) -> float:
    """About the width in inches of one line of ``text`` at ``size_pt``."""
    return len(text) * 0.55 * size_pt / 72


def _wrap(text: str, width: int) -> str:
    """``text`` in lines of at most ``width`` characters, as few lines as that allows, and lines
    of even length: the narrowest width that keeps the number of lines."""
    lines = textwrap.wrap(text, width)
    while width > 1 and len(textwrap.wrap(text, width - 1)) == len(lines):
        width -= 1
    return "\n".join(textwrap.wrap(text, width))


def _axis_title(ax, text: str | None, width_in: float) -> None:
    if text:
        p = current_profile()
        ax.set_title(_wrap(text, _chars(width_in, p.font)), fontsize=p.font)


def shown_width(fig) -> float:
    """The width in pixels of the image a notebook shows for ``fig``: the inline backend saves
    it with ``bbox_inches="tight"``, which adds 0.1 inch on each side."""
    fig.canvas.draw()
    return (fig.get_tightbbox(fig.canvas.get_renderer()).width + 0.2) * fig.dpi


def smallest_text(fig, column_px: float = NOTEBOOK_COLUMN_PX) -> tuple[float, float, str]:
    """``(px, scale, text)``: the smallest visible text of ``fig`` in screen pixels once the
    figure is shown scaled to fit ``column_px`` (as JupyterLab scales a wider image), the
    scale, and that text. Font sizes count as their em height (``pt * dpi / 72``)."""
    from matplotlib.text import Text

    width_px = shown_width(fig)
    scale = min(1.0, column_px / width_px)
    sizes = [(t.get_fontsize() * fig.dpi / 72 * scale, t.get_text()) for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip()]
    px, text = min(sizes)
    return px, scale, text


# --------------------------------------------------------------------------- files

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


class FigureWriter:
    """Draws each figure twice: for the notebook (returned, and kept as ``<prefix><name>.png``)
    and for a paper (kept as ``<prefix><name>.pdf``, vector).

    ``figures = FigureWriter(folder, "01_")``; ``fig = figures("transitions", plot_transitions,
    matrices, names, title=...)``. ``folder`` None draws without writing. ``written`` lists the
    files in the order they were written."""

    def __init__(self, folder: str | Path | None, prefix: str = ""):
        self.folder = Path(folder) if folder else None
        self.prefix = prefix
        self.written: list[Path] = []

    def __call__(self, name: str, draw, *args, **kwargs):
        with profile("notebook"):
            fig = draw(*args, **kwargs)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            stem = self.folder / f"{self.prefix}{name}"
            self.written += save_figure(fig, stem, formats=("png",))
            with profile("paper"):
                paper = draw(*args, **kwargs)
            self.written += save_figure(paper, stem, formats=("pdf",))
            plt.close(paper)
        return fig


def normalise_rows(confusion: np.ndarray) -> np.ndarray:
    """Row-normalised confusion (recall per true class); empty rows stay zero."""
    confusion = np.asarray(confusion, dtype=float)
    totals = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)


# --------------------------------------------------------------------------- heatmaps

def _heatmaps(panels: dict[str, Any], class_names: Sequence[str], *, vmax: float | None, cmap: str,
              cbar_label: str, fmt: str, xlabel: str, ylabel: str, captions: dict[str, str] | None = None,
              title: str | None = None):
    """Square heatmaps of (C, C) matrices with one colour bar, wrapped into rows so that each
    cell is at least ``min_cell`` wide; tick labels of the classes only on the outer panels. A
    panel whose value is a string (the matrix is unavailable) becomes a note under the figure."""
    import seaborn as sns
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    p = current_profile()
    captions = captions or {}
    notes = {k: v for k, v in panels.items() if isinstance(v, str)}
    mats = {k: np.asarray(v, dtype=float) for k, v in panels.items() if not isinstance(v, str)}
    c = len(class_names)
    longest = max(len(str(n)) for n in class_names)
    label_w = _text_width("x" * longest, p.small) + 0.45  # class names + the axis label
    cbar_w = 0.9
    n = max(len(mats), 1)
    cols, cell = 1, p.cell
    for k in range(n, 0, -1):
        fit = (p.width - label_w - cbar_w - 0.15 * (k - 1)) / (k * c)
        if fit >= p.min_cell or k == 1:
            cols, cell = k, min(p.cell, fit)
            break
    rows = math.ceil(n / cols)
    below = _text_width("x" * longest, p.small) * 0.72 + 0.45  # names at 45 degrees + axis label
    row_h = c * cell + below + 0.45
    width = label_w + cols * c * cell + 0.15 * (cols - 1) + cbar_w
    height = rows * row_h + (0.5 if title and p.titles else 0) + (0.35 * len(notes))
    fig = _figure(width, height)
    axes = fig.subplots(rows, cols, squeeze=False)
    values = [m for m in mats.values()]
    top = vmax if vmax is not None else max((float(m.max()) for m in values), default=1.0)
    norm = Normalize(vmin=0, vmax=top)
    for i, ax in enumerate(axes.flat):
        if i >= len(mats):
            ax.axis("off")
            continue
        key = list(mats)[i]
        r, col = divmod(i, cols)
        sns.heatmap(mats[key], annot=True, fmt=fmt, cmap=cmap, square=True, cbar=False, vmin=0, vmax=top,
                    xticklabels=class_names, yticklabels=class_names if col == 0 else False, ax=ax,
                    annot_kws={"fontsize": p.small})
        ax.tick_params(axis="x", rotation=45)
        plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
        ax.tick_params(axis="y", rotation=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel if col == 0 else "")
        _axis_title(ax, captions.get(key, key), c * cell + (label_w if col == 0 else 0))
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes.ravel().tolist(), shrink=0.8 / rows ** 0.5,
                 label=cbar_label, aspect=25)
    if notes:
        fig.supxlabel("\n".join(_wrap(f"{captions.get(k, k)}: not available: {v}", _chars(width, p.small))
                                for k, v in notes.items()), fontsize=p.small, color="#555")
    _title(fig, title, width)
    return fig


@_drawn
def plot_confusion(confusion: Any, class_names: Sequence[str], *, normalise: bool = True,
                   title: str | None = None):
    """Heatmap of a confusion matrix (rows: true class, columns: predicted class)."""
    confusion = np.asarray(confusion)
    values = normalise_rows(confusion) if normalise else confusion
    return _heatmaps({"": values}, class_names, vmax=1 if normalise else None, cmap="Blues",
                     cbar_label="share of the true class" if normalise else "utterances",
                     fmt=".2f" if normalise else "d", xlabel="predicted emotion", ylabel="true emotion",
                     title=title)


@_drawn
def plot_confusions(confusions: dict[str, Any], class_names: Sequence[str], *, title: str | None = None):
    """Normalised confusion matrices side by side (wrapped into rows), one per run label."""
    return _heatmaps({label: normalise_rows(k) for label, k in confusions.items()}, class_names, vmax=1,
                     cmap="Blues", cbar_label="share of the true class", fmt=".2f", xlabel="predicted emotion",
                     ylabel="true emotion", title=title)


@_drawn
def plot_transitions(matrices: dict[str, Any], class_names: Sequence[str], *, title: str | None = None):
    """Emotion transition matrices (rows: earlier emotion, columns: later one).

    ``matrices`` maps a relation (``"same"`` / ``"other"``, see
    :func:`safsd_glnet.notebook.explore.transition_matrix`) or any title to a row-normalised (C, C)."""
    captions = {"same": "same speaker: their previous utterance -> this one",
                "other": "other speaker: the utterance before (someone else's) -> this one"}
    return _heatmaps(dict(matrices), class_names, vmax=1, cmap="Blues", cbar_label="P(later | earlier)",
                     fmt=".2f", xlabel="emotion of the later utterance", ylabel="earlier utterance",
                     captions=captions, title=title or "emotion transitions (each row sums to 1)")


@_drawn
def plot_similarity_matrices(matrices: dict[str, Any], class_names: Sequence[str], *, title: str | None = None):
    """The class-similarity matrices S that SAF can use (row = true class).

    A value that is a string instead of a matrix (the source is unavailable for these
    classes) is named under the figure with that reason."""
    captions = {"prior": "prior (hand-set, reference code)", "vad": "vad (NRC valence/arousal/dominance)",
                "prototype": "prototype (class-mean cosine)", "identity": "identity (plain focal loss)"}
    return _heatmaps(dict(matrices), class_names, vmax=1, cmap="Oranges", cbar_label="S[y, c]", fmt=".2f",
                     xlabel="other class c", ylabel="true class y", captions=captions,
                     title=title or "class similarity S for the SAF loss")


# --------------------------------------------------------------------------- training curves

MODALITY_LABELS = MODALITY_NAMES  # "t" -> "text": the legends' names


def _loss_label(name: str) -> str:
    """``student_t`` -> ``student text``, ``kl_a`` -> ``KL to audio student``."""
    if name == "teacher_ce":
        return "teacher CE"
    kind, _, m = name.partition("_")
    if kind == "student" and m in MODALITY_LABELS:
        return f"student {MODALITY_LABELS[m]}"
    if kind == "kl" and m in MODALITY_LABELS:
        return f"KL to {MODALITY_LABELS[m]} student"
    return name


@_drawn
def plot_history(history: list[dict[str, Any]], chosen_epoch: int | None = None, *, title: str | None = None,
                 students: bool = False, test: bool = True):
    """Training curves: every loss term per epoch, and validation / test weighted F1 per epoch
    with the chosen (honest protocol) epoch marked; with ``students`` a third panel shows each
    modality student's validation weighted F1 beside the teacher's. ``test=False`` leaves the
    test score out (while a run trains, nothing may be chosen by it).

    Notebook profile: two panels per row, the loss terms' legend in a panel of its own. Paper
    profile: one row. The legends of the score panels sit under their panels, where they
    cover no epoch."""
    p = current_profile()
    epochs = [r["epoch"] for r in history]
    student_names = list(history[0]["valid"].get("students", {})) if students else []
    n = 3 if student_names else 2
    marker = "o" if len(epochs) < 4 else None
    if p.name == "paper":
        fig = _figure(p.width, 2.9)
        axes = list(fig.subplots(1, n))
        legend_ax = None
    else:
        fig = _figure(p.width, 6.6 if n == 3 else 3.7 + 0.9)
        grid = fig.subplots(2, 2) if n == 3 else fig.subplots(1, 2)
        axes = [grid[0][0], grid[0][1], grid[1][0]] if n == 3 else list(grid)
        legend_ax = grid[1][1] if n == 3 else None
    ax_loss, ax_f1 = axes[0], axes[1]
    names = list(history[0]["loss"])
    for name in names:
        ax_loss.plot(epochs, [r["loss"][name] for r in history], label=_loss_label(name),
                     lw=2.4 if name == "total" else 1.3, color="black" if name == "total" else None,
                     ls=":" if name.startswith("kl_") else "-", marker=marker)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss per utterance")
    ax_loss.set_title("loss terms (total = weighted sum)")
    handles, labels = ax_loss.get_legend_handles_labels()
    if legend_ax is not None:
        legend_ax.axis("off")
        legend_ax.legend(handles, labels, loc="center", ncol=1 if len(labels) <= 8 else 2, frameon=False,
                         title="loss terms (left)")
    else:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), frameon=False)
    for split, style in (("valid", "-"), ("test", "--"))[:2 if test else 1]:
        ax_f1.plot(epochs, [r[split]["weighted_f1"] for r in history], style, label=f"{split} weighted F1",
                   marker=marker)
    if chosen_epoch:
        ax_f1.axvline(chosen_epoch, color="grey", ls=":", label=f"chosen epoch {chosen_epoch} (best valid)")
    ax_f1.set_xlabel("epoch")
    ax_f1.set_ylabel("weighted F1 (%)")
    ax_f1.set_title("teacher (the model's prediction)" if test else "teacher on validation (test: after training)")
    _legend_below(ax_f1)
    if student_names:
        ax = axes[2]
        ax.plot(epochs, [r["valid"]["weighted_f1"] for r in history], color="black", lw=2, label="teacher")
        for m in student_names:
            ax.plot(epochs, [r["valid"]["students"][m]["weighted_f1"] for r in history],
                    label=f"{MODALITY_LABELS.get(m, m)} student", marker=marker)
        if chosen_epoch:
            ax.axvline(chosen_epoch, color="grey", ls=":")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation weighted F1 (%)")
        ax.set_title("students vs teacher (validation)")
        _legend_below(ax)
    for ax in axes:
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True, nbins=6))
    _title(fig, title)
    return fig


def _legend_below(ax) -> None:
    """The axes' legend under its x label, in as many columns as fit: nothing of the curves
    hides behind it, whatever their course."""
    p = current_profile()
    handles, labels = ax.get_legend_handles_labels()
    width = ax.get_position().width * ax.figure.get_figwidth()
    widest = max((_text_width(lab, p.small) + 0.45 for lab in labels), default=1.0)
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2 if p.name == "notebook" else -0.25),
              ncol=max(1, min(len(labels), int(width // widest))), frameon=False)


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


SPLIT_COLORS = {"train": "#4c72b0", "valid": "#dd8452", "test": "#55a868"}


# --------------------------------------------------------------------------- data exploration

@_drawn
def plot_class_distribution(counts: dict[str, Any], class_names: Sequence[str], *, title: str | None = None):
    """Grouped bars: the share of each class per split, the utterance count written on top."""
    p = current_profile()
    splits = list(counts)
    fig = _figure(p.width if len(class_names) * len(splits) > 8 or p.name == "notebook" else p.single,
                  4.0 if p.name == "notebook" else 2.6)
    ax = fig.subplots()
    width = 0.8 / len(splits)
    x = np.arange(len(class_names))
    for i, split in enumerate(splits):
        c = np.asarray(counts[split], dtype=float)
        share = 100 * c / max(c.sum(), 1)
        bars = ax.bar(x + (i - (len(splits) - 1) / 2) * width, share, width, label=f"{split} ({int(c.sum())} utt.)",
                      color=SPLIT_COLORS.get(split))
        for bar, k in zip(bars, c):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f" {int(k)}", ha="center", va="bottom",
                    fontsize=p.small, rotation=90)
    ax.set_xticks(x, class_names)
    ax.set_ylabel("share of the split (%)")
    ax.set_xlabel("emotion (on the bars: utterance counts)")
    ax.margins(y=0.3)
    # below the axes: inside, the legend hid the counts on the bars of whichever classes sat under it
    fig.legend(loc="outside lower center", ncol=len(splits), frameon=False)
    _axis_title(ax, title or "class distribution per split", fig.get_figwidth())
    return fig


@_drawn
def plot_dialogue_lengths(lengths: dict[str, Any], *, title: str | None = None):
    """Histogram of utterances per dialogue, one colour per split, means marked."""
    p = current_profile()
    fig = _figure(p.single, 3.8 if p.name == "notebook" else 2.4)
    ax = fig.subplots()
    all_lengths = np.concatenate([np.asarray(v) for v in lengths.values()])
    bins = np.histogram_bin_edges(all_lengths, bins=min(30, max(5, len(np.unique(all_lengths)))))
    splits = list(lengths)
    values = [np.asarray(lengths[s]) for s in splits]
    colours = [SPLIT_COLORS.get(s) for s in splits]
    ax.hist(values, bins=bins, stacked=True, color=colours, edgecolor="white", linewidth=0.4,
            label=[f"{s}: {len(v)} dialogues, mean {v.mean():.1f}" for s, v in zip(splits, values)])
    for v, colour in zip(values, colours):
        ax.axvline(v.mean(), color=colour, ls="--", lw=1.2)
    ax.set_xlabel("utterances per dialogue")
    ax.set_ylabel("dialogues (stacked)")
    ax.legend()
    _axis_title(ax, title or "dialogue lengths (dashed: split mean)", fig.get_figwidth())
    return fig


@_drawn
def plot_speaker_stats(stats: dict[str, Any], *, title: str | None = None):
    """Three panels from :func:`safsd_glnet.notebook.explore.speaker_stats`: utterances per speaker,
    speakers per dialogue, and turn lengths (consecutive utterances by one speaker). In the
    notebook profile the first panel takes a row of its own."""
    p = current_profile()
    per = {k: v for k, v in stats["utterances_per_speaker"].items() if v > 0}
    if p.name == "paper" or len(per) <= 4:  # a few speakers: three panels in a row
        fig = _figure(p.width, 2.4 if p.name == "paper" else 3.6)
        axes = list(fig.subplots(1, 3))
    else:
        fig = _figure(p.width, 6.4)
        grid = fig.add_gridspec(2, 2)
        axes = [fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])]
    axes[0].bar(list(per), list(per.values()), color="#4c72b0")
    axes[0].set_xlabel("speaker")
    axes[0].set_ylabel("utterances")
    axes[0].set_title("utterances per speaker")
    long_names = max((len(k) for k in per), default=0) * len(per) > 60
    axes[0].tick_params(axis="x", rotation=45 if long_names else 0)
    if long_names:
        plt.setp(axes[0].get_xticklabels(), ha="right", rotation_mode="anchor")
    for ax, key, xlabel, what in ((axes[1], "speakers_per_dialogue", "speakers in the dialogue", "dialogues"),
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
        step = max(1, math.ceil(len(ticks) / 10))
        ticks = ticks[::step] if cap not in ticks[::step] else ticks[::step]
        ax.set_xticks(ticks, [f"{t}+" if t == cap and data.max() > cap else str(t) for t in ticks])
    axes[1].set_title("speakers per dialogue")
    _axis_title(axes[2], f"turn lengths (the speaker changes at {100 * stats['switch_rate']:.0f}% of steps)",
                axes[2].get_position().width * fig.get_figwidth())
    _title(fig, title)
    return fig


# --------------------------------------------------------------------------- results of runs

def _grouped_bars(ax, groups: Sequence[str], series: dict[str, Sequence[float]], colors=None, fmt="{:.1f}"):
    p = current_profile()
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    # the number on a bar is written across it when it would be wider than the bar
    bar_in = width * ax.figure.get_figwidth() * 0.85 / max(len(groups), 1)
    upright = _text_width(fmt.format(88.8), p.small) > bar_in
    for i, (label, values) in enumerate(series.items()):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label,
                      color=None if colors is None else colors[i % len(colors)])
        for bar, v in zip(bars, values):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), (" " if upright else "") + fmt.format(v),
                    ha="center", va="bottom", fontsize=p.small, rotation=90 if upright else 0)
    ax.set_xticks(x, groups)


RUN_COLORS = ("#4c72b0", "#c44e52", "#55a868", "#8172b2", "#ccb974", "#64b5cd")


@_drawn
def plot_per_class_f1(per_class: dict[str, dict[str, float]], class_names: Sequence[str], *,
                      support: dict[str, int] | None = None, title: str | None = None):
    """Grouped bars of per-class F1 (percent), one series per run label."""
    p = current_profile()
    fig = _figure(p.width, 4.0 if p.name == "notebook" else 2.6)
    ax = fig.subplots()
    series = {label: [f1[c] for c in class_names] for label, f1 in per_class.items()}
    groups = [f"{c}\n(n={support[c]})" if support else c for c in class_names]
    _grouped_bars(ax, groups, series, RUN_COLORS)
    ax.set_ylabel("F1 (%)")
    ax.set_ylim(0, 112)
    fig.legend(loc="outside lower center", ncol=len(series), frameon=False)
    _title(fig, title or "per-class F1")
    return fig


@_drawn
def plot_similar_pairs(rates: dict[str, dict[str, dict[str, Any]]], *, title: str | None = None):
    """Confusion rates of the similar-emotion pairs, one series per run label.

    ``rates`` maps a run label to :func:`safsd_glnet.model.metrics.similar_pair_confusion` output;
    each pair gives two bars groups, "a as b" (share of true a predicted as b) and "b as a"."""
    p = current_profile()
    labels = list(rates)
    pairs = list(rates[labels[0]])
    groups, series = [], {label: [] for label in labels}
    for key in pairs:
        first = rates[labels[0]][key]
        groups += [f"{first['a']}\nas {first['b']}", f"{first['b']}\nas {first['a']}"]
        for label in labels:
            series[label] += [rates[label][key]["a_as_b"], rates[label][key]["b_as_a"]]
    fig = _figure(p.width, 4.2 if p.name == "notebook" else 2.6)
    ax = fig.subplots()
    _grouped_bars(ax, groups, series, RUN_COLORS)
    ax.set_ylabel("share of the true class (%)")
    ax.set_xlabel("true emotion predicted as its similar emotion (lower is better)")
    ax.margins(y=0.2)
    fig.legend(loc="outside lower center", ncol=len(series), frameon=False)
    _title(fig, title or "confusions between similar emotions")
    return fig


@_drawn
def plot_seed_comparison(rows: Sequence[dict[str, Any]], *, title: str | None = None):
    """Per run label, the validation and test weighted F1 of every seed (small dots) with their
    mean (a large mark, its value written beside it) and one sample standard deviation (the
    whisker): what several seeds say about a difference that one seed cannot.

    ``rows`` are :func:`safsd_glnet.notebook.saf_comparison.seed_table` rows (``label``, ``valid_values``,
    ``test_values``)."""
    p = current_profile()
    fig = _figure(p.single, 3.8 if p.name == "notebook" else 2.5)
    ax = fig.subplots()
    for j, (split, colour, mark) in enumerate((("valid", "#dd8452", "D"), ("test", "#55a868", "s"))):
        for i, r in enumerate(rows):
            values = np.asarray(r[f"{split}_values"], dtype=float)
            xi = i + (j - 0.5) * 0.4
            mean = values.mean()
            sd = values.std(ddof=1) if len(values) > 1 else 0.0
            jitter = np.linspace(-0.06, 0.06, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(xi + jitter, values, s=12, color=colour, alpha=0.6, zorder=3,
                       label=f"{split}: one seed" if i == 0 else None)
            ax.errorbar(xi, mean, yerr=sd if len(values) > 1 else None, fmt=mark, color=colour, ms=7, capsize=4,
                        lw=1.4, zorder=4, label=f"{split}: mean ± std" if i == 0 else None)
            ax.annotate(f"{mean:.1f}", (xi, mean), xytext=(8, 0), textcoords="offset points", va="center",
                        fontsize=p.small)
    ax.set_xticks(np.arange(len(rows)), [r["label"] for r in rows])
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.margins(y=0.15)
    ax.set_ylabel("weighted F1 (%)")
    fig.legend(loc="outside lower center", ncol=2, frameon=False)
    n = sorted({len(r["valid_values"]) for r in rows})
    _title(fig, title or f"weighted F1 over {'/'.join(map(str, n))} seeds")
    return fig


def embed_2d(features: Any, method: str = "umap", *, groups: Any = None, seed: int = 0, n_neighbors: int = 15,
             min_dist: float = 0.3, fit_features: Any = None, fit_labels: Any = None,
             fit_groups: Any = None) -> np.ndarray:
    """(N, F) -> (N, 2) for a map.

    * ``"lda"``: the two directions that best separate the classes linearly (linear
      discriminant analysis, shrinkage chosen by Ledoit-Wolf), learned from ``fit_features``
      (M, F) and ``fit_labels`` (M,) (for example the training split) and applied to
      ``features``: the map shows how far apart the classes are for a linear read-out like the
      model's heads, on data the projection did not see.
    * ``"umap"``: umap-learn (cosine metric, seeded) on ``features`` alone, without labels:
      neighbourhoods, whether or not they follow the classes.
    * ``"pca"``: a quick linear stand-in, e.g. for tests.

    Features are standardised first (with the fitting set's statistics for ``"lda"``).
    ``groups`` (N,) (and ``fit_groups`` (M,)) centre the features within each group before that,
    e.g. per speaker: the model adds a speaker embedding to every stream, and uncentred maps
    then split into one island per speaker that hides the emotion structure."""
    x = _centre_groups(np.asarray(features, dtype=np.float32), groups, "groups")
    if method == "lda":
        if fit_features is None or fit_labels is None:
            raise ValueError("embed_2d: method 'lda' needs fit_features and fit_labels (e.g. the training split)")
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        fx = _centre_groups(np.asarray(fit_features, dtype=np.float32), fit_groups, "fit_groups")
        mean, std = fx.mean(0), np.maximum(fx.std(0), 1e-6)
        fit_labels = np.asarray(fit_labels)
        if len(np.unique(fit_labels)) < 3:
            raise ValueError("embed_2d: 'lda' needs at least 3 classes in fit_labels for two directions")
        lda = LinearDiscriminantAnalysis(n_components=2, solver="eigen", shrinkage="auto")
        lda.fit((fx - mean) / std, fit_labels)
        return lda.transform((x - mean) / std)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "umap":
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(x) - 1), min_dist=min_dist,
                            metric="cosine", random_state=seed, n_jobs=1)
        return reducer.fit_transform(x)
    raise ValueError(f"embed_2d: method={method!r}, expected 'lda', 'umap' or 'pca'")


def _centre_groups(x: np.ndarray, groups: Any, what: str) -> np.ndarray:
    if groups is None:
        return x
    groups = np.asarray(groups)
    if groups.shape != (len(x),):
        raise ValueError(f"embed_2d: {what} has shape {groups.shape}, expected ({len(x)},)")
    x = x.copy()
    for g in np.unique(groups):
        x[groups == g] -= x[groups == g].mean(0)
    return x


LABEL_GAP_PX = 4.0  # the least room between two class labels, and between a label and a centroid dot


def _place_labels(ax, points: dict[str, tuple[float, float]], size_pt: float,
                  dot_radius_px: float = 0.0) -> dict[str, tuple[float, float]]:
    """Label positions (data coordinates) near each point that keep clear of each other and of
    every point's dot (a disc of ``dot_radius_px``), by :data:`LABEL_GAP_PX`.

    The labels of the most crowded points are placed first. Each label tries places around its
    own dot, nearest first (above, below, right, left, then the diagonals, then the same one
    step further out, in screen units), and takes the first that lies inside the axes and
    clears every dot and every label placed before it; where none does within reach it goes
    above its dot. Returns name -> (x, y) of the label's centre."""
    if not points:
        return {}
    ax.figure.canvas.draw()  # the axes' final size and limits
    to_px = ax.transData.transform
    from_px = ax.transData.inverted().transform
    names = list(points)
    anchor = np.array([to_px(points[n]) for n in names], dtype=float)
    renderer = ax.figure.canvas.get_renderer()
    # the label's box: its text, the box's padding (0.15 em on each side) and half the gap
    pad = 0.15 * size_pt * ax.figure.dpi / 72 + LABEL_GAP_PX / 2
    half = []
    for n in names:  # measure each label as it will be drawn
        probe = ax.text(0, 0, n, fontsize=size_pt, weight="bold")
        extent = probe.get_window_extent(renderer)
        probe.remove()
        half.append((extent.width / 2 + pad, extent.height / 2 + pad))
    half = np.array(half)
    dot = dot_radius_px + LABEL_GAP_PX / 2
    box = ax.get_window_extent()
    directions = [(0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, 1), (1, -1), (-1, -1)]
    step = float(half[:, 1].mean())

    def clear(centre: np.ndarray, hw: float, hh: float, placed: list[tuple[np.ndarray, float, float]]) -> bool:
        if not (box.x0 + hw <= centre[0] <= box.x1 - hw and box.y0 + hh <= centre[1] <= box.y1 - hh):
            return False
        if np.any((np.abs(anchor[:, 0] - centre[0]) < hw + dot) & (np.abs(anchor[:, 1] - centre[1]) < hh + dot)):
            return False
        return all(abs(c[0] - centre[0]) >= hw + w or abs(c[1] - centre[1]) >= hh + h for c, w, h in placed)

    near = np.array([(np.abs(anchor - a) < 3 * step).all(axis=1).sum() for a in anchor])
    placed: list[tuple[np.ndarray, float, float]] = []
    pos = anchor + np.stack([np.zeros(len(names)), half[:, 1] + dot], axis=1)  # above the dot, the fallback
    for i in sorted(range(len(names)), key=lambda k: (-near[k], k)):
        hw, hh = half[i]
        for ring in range(40):
            found = None
            for dx, dy in directions:
                centre = anchor[i] + np.array([dx * (hw + dot + ring * step), dy * (hh + dot + ring * step)])
                if clear(centre, hw, hh, placed):
                    found = centre
                    break
            if found is not None:
                pos[i] = found
                break
        placed.append((pos[i], hw, hh))
    return {n: tuple(from_px(pos[i])) for i, n in enumerate(names)}


@_drawn
def plot_embeddings(panels: dict[str, dict[str, Any]], labels: Any, class_names: Sequence[str], *,
                    pairs: Sequence[tuple[str, str]] = (), method: str = "UMAP", title: str | None = None):
    """2-D maps of utterance embeddings coloured by true emotion.

    ``panels`` is ``{run label: {head label: (N, 2) coordinates}}`` (for example one entry per
    run, one head per teacher / student). In the notebook profile the runs are the columns
    (side by side, the teacher first in each), in the paper profile the rows. Classes in a
    similar pair are drawn on top and opaque, the others faded; each class centroid (median
    point) is a large black-edged dot labelled with the class name (labels never overlap), and
    a dashed line joins the centroids of each similar pair, so the reader sees whether
    similar emotions separate."""
    p = current_profile()
    labels = np.asarray(labels)
    runs = list(panels)
    heads = list(dict.fromkeys(h for r in runs for h in panels[r]))
    colors = class_colors(class_names)
    emphasised = {c for pair in pairs for c in pair}
    if p.name == "paper":
        nrows, ncols = len(runs), len(heads)
        side = min(1.75, (p.width - 0.3) / ncols)
        fig = _figure(p.width, nrows * side + 0.55)
        where = lambda r, h: (r, h)  # noqa: E731
    else:
        nrows, ncols = len(heads), len(runs)
        side = min(4.0, (p.width - 0.4) / max(ncols, 1))
        fig = _figure(min(p.width, ncols * side + 0.4), nrows * (side * 0.86) + 1.0)
        where = lambda r, h: (h, r)  # noqa: E731
    axes = fig.subplots(nrows, ncols, squeeze=False)
    centroid_area = p.marker * 12  # points^2, as scatter's s
    order = [i for i, c in enumerate(class_names) if c not in emphasised] + \
            [i for i, c in enumerate(class_names) if c in emphasised]
    for r, run in enumerate(runs):
        for h, head in enumerate(heads):
            ax = axes[where(r, h)]
            xy = panels[run].get(head)
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
                ax.scatter(xy[sel, 0], xy[sel, 1], s=p.marker if strong else p.marker * 0.6,
                           alpha=0.65 if strong else 0.2, color=colors[name], linewidths=0, rasterized=True)
                centroids[name] = np.median(xy[sel], axis=0)
            for a, b in pairs:
                if a in centroids and b in centroids:
                    (x0, y0), (x1, y1) = centroids[a], centroids[b]
                    ax.plot([x0, x1], [y0, y1], color="black", ls="--", lw=1.0, alpha=0.8, zorder=4)
            for name, (x0, y0) in centroids.items():
                ax.scatter([x0], [y0], s=centroid_area, color=colors[name], edgecolors="black", linewidths=1.0,
                           zorder=5)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{run}: {head}" if p.name != "paper" else (head if r == 0 else ""), fontsize=p.small + 0.5)
            if p.name == "paper" and h == 0:
                ax.set_ylabel(run, fontsize=p.small)
            ax._safsd_centroids = centroids  # placed once the layout is final (below)
    handles = [plt.Line2D([], [], marker="o", ms=7 if p.name == "notebook" else 4, ls="", color=colors[n], label=n,
                          alpha=1.0 if (not emphasised or n in emphasised) else 0.4) for n in class_names]
    if pairs:
        handles.append(plt.Line2D([], [], color="black", ls="--", lw=1.0, label="similar pair (centroids)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4 if p.name == "notebook" else 8),
               frameon=False, markerscale=1.0)
    _title(fig, title or f"{method} of utterance embeddings, coloured by true emotion")
    # labels last: their positions depend on the final size of each panel
    dot_radius = (np.sqrt(centroid_area) / 2 + 0.5) * fig.dpi / 72  # a centroid dot's, its edge included
    for ax in axes.flat:
        centroids = getattr(ax, "_safsd_centroids", None)
        if not centroids:
            continue
        for name, (lx, ly) in _place_labels(ax, centroids, p.small, dot_radius).items():
            # a thin leader joins a label that had to move away to its dot
            ax.annotate(name, centroids[name], xytext=(lx, ly), fontsize=p.small, ha="center", va="center", zorder=6,
                        weight="bold" if name in emphasised else None,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": colors[name], "lw": 0.8, "alpha": 0.85},
                        arrowprops={"arrowstyle": "-", "color": "0.35", "lw": 0.6, "shrinkA": 0, "shrinkB": 4})
        del ax._safsd_centroids
    fig.set_layout_engine("none")  # keep the panels where the labels were placed
    return fig


@_drawn
def plot_ablation(rows: Sequence[dict[str, Any]], metric: str = "weighted_f1", *, title: str | None = None):
    """Bars of the honest-protocol mean per variant with +-1 std error bars (variants with two
    seeds or more), the single seeds as dots, and the reference-protocol mean as a hollow
    diamond beside each bar.

    ``rows`` are :func:`safsd_glnet.grids.ablation_report.summarise` rows (keys ``label``, ``n``,
    ``<metric>_mean``, ``<metric>_std``, ``<metric>_values`` and, for weighted F1 and accuracy,
    ``reference_<metric>_mean``). Bars start at 0 so that their lengths compare honestly; the
    numbers are written above them."""
    p = current_profile()
    labels = [r["label"] for r in rows]
    means = np.array([r[f"{metric}_mean"] for r in rows])
    stds = np.array([r[f"{metric}_std"] if r["n"] > 1 else 0.0 for r in rows])
    wide = len(rows) > 4 or p.name == "notebook"
    fig = _figure(min(p.width, max(p.single, 0.75 * len(rows) + 2.5)) if wide else p.single,
                  4.6 if p.name == "notebook" else 2.8)
    ax = fig.subplots()
    x = np.arange(len(rows))
    several = [r["n"] > 1 for r in rows]
    ax.bar(x, means, yerr=np.where(several, stds, np.nan), capsize=3, color="#4c72b0", alpha=0.85, width=0.6,
           error_kw={"elinewidth": 1.2}, label="honest protocol: mean ± std over seeds")
    for i, r in enumerate(rows):
        values = list(r.get(f"{metric}_values") or [])
        offsets = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(len(values))
        ax.scatter(i + offsets, values, s=12, color="black", zorder=3, label="single seeds" if i == 0 else None)
        ax.text(i, means[i] + stds[i] + 1.0, f"{means[i]:.1f}", ha="center", va="bottom", fontsize=p.small)
    ref_key = f"reference_{metric}_mean"
    if rows and all(ref_key in r for r in rows):
        ax.scatter(x + 0.38, [r[ref_key] for r in rows], marker="D", s=24, facecolors="none", edgecolors="#c44e52",
                   zorder=4, label="reference protocol (best test epoch)")
    # headroom above the tallest bar for the value labels and the legend
    ax.set_ylim(0, 100 if not len(rows) else min(105.0, max(means + stds) * 1.5 + 2))
    slanted = len(rows) > 3 or max((len(str(lab)) for lab in labels), default=0) > 10
    ax.set_xticks(x, labels, rotation=30 if slanted else 0, ha="right" if slanted else "center",
                  rotation_mode="anchor")
    nice = {"weighted_f1": "weighted F1", "accuracy": "accuracy", "macro_f1": "macro F1"}.get(metric, metric)
    ax.set_ylabel(f"test {nice} (%)")
    ax.legend(loc="upper left", ncol=2 if len(rows) > 4 else 1, framealpha=0.9)
    n = sorted({r["n"] for r in rows})
    corpus = rows[0].get("corpus") if rows else None
    _axis_title(ax, title or f"{corpus + ': ' if corpus else ''}ablations, test {nice} "
                             f"({'/'.join(map(str, n))} seed{'s' if n != [1] else ''} per variant)", fig.get_figwidth())
    return fig



# --------------------------------------------------------------------------- the architecture

# (title, lines) of the two fusion stages of plot_architecture, in the words of model.py's
# docstring, so that the figure and the code name the same stages.
_ARCHITECTURE_STAGES = (
    ("modality-hybrid\nattention", ("per modality: self-attention", "and cross-attention to the", "other modalities, each",
                                   "gated, g = sigmoid(W h) * h,", "concatenated -> F'_m")),
    ("masked GCN", ("M nodes per utterance, edges", "within a dialogue and within", "an utterance; K = 4 gated",
                    "high-frequency layers, a", "feature mask in training only")),
)


def _box(ax, x: float, y: float, w: float, h: float, title: str | None, lines: Sequence[str], colour: str,
         p: Profile) -> None:
    """A rounded box with lower-left corner (x, y) and size (w, h) in inches: ``title`` in the
    profile's title font, then ``lines`` in its smallest one, centred as one block."""
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.06", fc=colour, ec="#333333",
                                lw=0.9))
    title_h = (title.count("\n") + 1) * p.font * 1.3 / 72 if title else 0.0
    lines_h = len(lines) * p.small * 1.25 / 72
    top = y + h / 2 + (title_h + lines_h) / 2  # the block's top, so that the block is centred
    if title:
        ax.text(x + w / 2, top, title, ha="center", va="top", fontsize=p.font, fontweight="bold", linespacing=1.1)
    if lines:
        ax.text(x + w / 2, top - title_h, "\n".join(lines), ha="center", va="top", fontsize=p.small,
                linespacing=1.25)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], dashed: bool = False) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "-|>", "lw": 1.0, "color": "#333333",
                                                        "ls": "--" if dashed else "-", "shrinkA": 0, "shrinkB": 0})


@_drawn
def plot_architecture(*, title: str | None = "SAFSD-GLNet: global attention, local graph, "
                                               "self-distillation into one student per modality"):
    """The model as boxes and arrows, left to right (SPEC.md, "Architecture"; the classes of
    :mod:`safsd_glnet.model.network`): per modality t / a / v an utterance's features (size d_m) enter
    a modality encoder (``Linear(d_m, H)`` + position + speaker, N x H), the modality-hybrid
    attention fuses the M streams globally (F'_m, N x H each), the masked GCN fuses them
    locally over the dialogue graph (M nodes per utterance, 2H each), and the teacher's
    ``Linear(M 2H, C)`` predicts. One student per modality reads F'_m. The line under the
    boxes is SPEC.md's loss, ``L = g1 CE_w(teacher) + g2 sum_m SAF(student_m) + g3 sum_m T^2
    KL(teacher || student_m)``.

    Drawn in inches on one axis as wide as the profile allows; the paper drawing is the
    notebook drawing made narrower (factor 7.0 / 8.2) with the paper's smaller text."""
    p = current_profile()
    s = p.width / NOTEBOOK_WIDTH  # 1 for the notebook, 0.85 for a paper
    titled = bool(title and p.titles)
    width, height = p.width, (3.95 if titled else 3.5) * s
    fig = plt.figure(figsize=(width, height), dpi=p.dpi)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    colours = {"input": "#eeeeee", "encoder": "#dbe9f6", "global": "#c6dbef", "local": "#d9f0d3",
               "teacher": "#fde0c5", "student": "#f2f2f2"}
    rows = {"t": 2.85 * s, "a": 2.30 * s, "v": 1.75 * s}  # centres of the per-modality rows
    row_h = 0.44 * s
    x_in, w_in = 0.05 * s, 0.78 * s
    x_enc, w_enc = 1.03 * s, 1.42 * s
    x_att, w_att = 2.67 * s, 1.92 * s
    x_gcn, w_gcn = 4.82 * s, 1.95 * s
    x_tea, w_tea = 7.0 * s, 1.15 * s
    tall_y = rows["v"] - row_h / 2 - 0.12 * s
    tall_h = rows["t"] - rows["v"] + row_h + 0.24 * s
    headers = ((x_in, w_in, "inputs"), (x_enc, w_enc, "encoders"), (x_att, w_att, "global fusion"),
               (x_gcn, w_gcn, "local fusion"), (x_tea, w_tea, "prediction"))
    for x, w, text in headers:
        ax.text(x + w / 2, tall_y + tall_h + 0.08 * s, text, ha="center", va="bottom", fontsize=p.small,
                style="italic")
    for m, y in rows.items():
        _box(ax, x_in, y - row_h / 2, w_in, row_h, None, (f"{MODALITY_NAMES[m]} x_{m}",), colours["input"], p)
        _box(ax, x_enc, y - row_h / 2, w_enc, row_h, None, ("Linear(d_m, H)", "+ position + speaker"),
             colours["encoder"], p)
        _arrow(ax, (x_in + w_in, y), (x_enc, y))
        _arrow(ax, (x_enc + w_enc, y), (x_att, y))
        _arrow(ax, (x_att + w_att, y), (x_gcn, y))
    for (name, lines), x, w, colour in zip(_ARCHITECTURE_STAGES, (x_att, x_gcn), (w_att, w_gcn),
                                           (colours["global"], colours["local"])):
        _box(ax, x, tall_y, w, tall_h, name, lines, colour, p)
    mid, tea_h = rows["a"], 0.95 * s
    _box(ax, x_tea, mid - tea_h / 2, w_tea, tea_h, "teacher", ("Linear(M 2H, C);", "its argmax is", "the prediction"),
         colours["teacher"], p)
    _arrow(ax, (x_gcn + w_gcn, mid), (x_tea, mid))
    ax.text(x_tea + w_tea / 2, mid + tea_h / 2 + 0.06 * s, "loss: CE_w", ha="center", va="bottom", fontsize=p.small)
    # the students read F'_m under the attention stage; the teacher distils into them (dashed)
    stu_y, stu_h = 0.42 * s, 0.66 * s
    stu_mid = stu_y + stu_h / 2
    _box(ax, x_att, stu_y, w_att, stu_h, "students", ("ReLU, dropout,", "Linear(H, C) on each F'_m"), colours["student"], p)
    _arrow(ax, (x_att + w_att / 2, tall_y), (x_att + w_att / 2, stu_y + stu_h))
    ax.plot([x_tea + w_tea / 2, x_tea + w_tea / 2], [mid - tea_h / 2, stu_mid], color="#333333", lw=1.0, ls="--")
    _arrow(ax, (x_tea + w_tea / 2, stu_mid), (x_att + w_att, stu_mid), dashed=True)
    ax.text((x_att + w_att + x_tea + w_tea / 2) / 2, stu_mid + 0.05 * s, "self-distillation\nT^2 KL(teacher || student)",
            ha="center", va="bottom", fontsize=p.small, linespacing=1.2)
    ax.text(x_att - 0.08 * s, stu_mid, "loss: SAF", ha="right", va="center", fontsize=p.small)
    ax.text(width / 2, 0.18 * s, "L = g1 CE_w(teacher) + g2 sum_m SAF(student_m) + g3 sum_m T^2 KL(teacher || student_m)",
            ha="center", va="center", fontsize=p.small)
    if titled:
        ax.text(width / 2, height - 0.1 * s, title, ha="center", va="top", fontsize=p.font + 1.0)
    return fig
