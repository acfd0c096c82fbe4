"""Data exploration: what a conversation corpus looks like, as numbers and tables.

Shape letters: C classes, S splits, D dialogues, n utterances in a dialogue.

Everything here reads a :class:`~safsd_glnet.data.corpus.Corpus` and returns plain numpy
arrays, dicts or strings; :mod:`safsd_glnet.notebook.plots` draws them and
``notebooks/01_data_exploration.ipynb`` explains them.

The dialogue browser (:func:`dialogue_browser`) is an ipywidgets view for JupyterLab: three
dropdowns above a table of fixed height that scrolls under its header. Where widgets cannot
render (papermill's text, a terminal) the same widget displays as :func:`format_dialogue`.

What a saved notebook keeps of it. A widget output is a reference to a model that lives in the
kernel and in the open page. JupyterLab draws such an output with the widget renderer whenever
the widget extension is installed; when the model is gone (the notebook reopened on a new
kernel) that renderer shows "Error displaying widget: model not found" and never falls back to
another type in the same output, so a ``text/html`` copy carried beside the widget is not shown
(checked in JupyterLab 4.6 with ipywidgets 8.1). What does survive is the widget *state* saved
in the notebook's metadata: the models are rebuilt from it and the browser is drawn as it was
saved. Nothing answers its dropdowns then, so the browser hides them and shows the saved dialogue
with a one-line note to run the cell (CSS keyed on ipywidgets' ``jupyter-widgets-disconnected``
class, :data:`SAVED_VIEW_NOTE`); running the cell brings the live browser back. JupyterLab saves that state only when its setting
``saveState`` is on (off by default); the kit turns it on for its own environment
(:mod:`safsd_glnet.notebook.jupyterlab_settings`, run by ``scripts/setup.sh``), and papermill stores the state of
headless runs by itself. The alternative, a static HTML view next to the widget, would show the
dialogue twice while the kernel runs and still leave the dropdowns as an error after a reopen.

Emotion transitions (:func:`transition_matrix`) come in two kinds, both over consecutive
utterances of a dialogue:

* ``"same"``: utterance i against the previous utterance *of the same speaker* (wherever it
  is in the dialogue): does a speaker keep their emotion (inertia)?
* ``"other"``: utterance i against the utterance just before it, when another speaker said
  it: does an emotion pass from one speaker to the next (contagion)?

Rows are the earlier emotion, columns the later one; normalised rows read as
P(later emotion | earlier emotion).
"""
from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

import numpy as np

from ..data.corpus import SPLITS, Corpus, DataError
from ..text_display import markdown_table  # noqa: F401  (the notebooks' tables)

RELATIONS = ("same", "other")


# --------------------------------------------------------------------------- loading

def open_corpus(data: str, feature_sizes: Mapping[str, int] | None = None,
                num_dialogues: int | None = None, *, log=print, **kwargs: Any) -> Corpus:
    """The corpus named by ``data``, as the notebooks' ``DATA`` parameter gives it.

    ``data`` is a feature pickle (``.pkl``), a kit corpus (``.npz``), ``synthetic:iemocap`` /
    ``synthetic:meld`` (optionally ``:seed=K``), the MELD text folder (what ``safsd-glnet data
    meld --out DIR`` writes) or an utterance table (``.csv``, e.g. the IEMOCAP transcripts),
    read by :func:`safsd_glnet.data.load_data`. ``feature_sizes`` and ``num_dialogues`` only
    apply to synthetic data (empty / 0 / None mean the defaults: the standard sizes and the real
    corpus' dialogue count) and are ignored otherwise, so a notebook's synthetic defaults never
    get in the way of a real path; other keyword arguments go to the loader (for sentences:
    ``encoder``, ``cache_dir``, ``device`` and the table reader's options).

    Sentences are encoded into text features the first time (minutes on a laptop CPU), then
    read from the cache; ``log`` (a one-argument callable, None for silence) says which.
    """
    from ..data import is_text_spec, load_data

    data = str(data)
    if data.startswith("synthetic:"):
        if feature_sizes:
            kwargs["feature_sizes"] = dict(feature_sizes)
        if num_dialogues:
            kwargs["num_dialogues"] = int(num_dialogues)
    elif is_text_spec(data):
        return _open_text_corpus(data, log, **kwargs)
    return load_data(data, **kwargs)


def _open_text_corpus(data: str, log, *, encoder: str = "minilm", cache_dir: str | None = None,
                      device: str = "auto", **table_options: Any) -> Corpus:
    from ..data import check_data_spec, default_cache_dir, read_text_table
    from ..features.text import build_text_corpus, text_cache_path

    check_data_spec(data, where="DATA")
    cache_dir = cache_dir or default_cache_dir()
    table = read_text_table(data, **table_options)
    if log is not None:
        cached = text_cache_path(table, encoder, cache_dir)
        n = table.num_utterances()
        log(f"{table.name}: {n} sentences; text features ({encoder}) "
            + (f"read from the cache {cached}" if cached.exists() else
               f"being encoded now (about {max(1, round(n / 4000))} min on a laptop CPU, this once; "
               f"cached in {cache_dir})"))
    from ..text_display import kernel_busy

    with kernel_busy():  # loading the encoder and encoding take minutes; JupyterLab may say "Idle" meanwhile
        # progress: one line of the kit's in a notebook (no third-party widgets), tqdm in a terminal
        return build_text_corpus(table, encoder, cache_dir=cache_dir, device=device, progress=True)


# --------------------------------------------------------------------------- corpus statistics

def splits_of(corpus: Corpus) -> list[str]:
    """The corpus' splits in train / valid / test order (only those it has)."""
    return [s for s in SPLITS if corpus.splits.get(s)]


def split_summary(corpus: Corpus) -> list[dict[str, Any]]:
    """One row per split: dialogues, utterances, mean / min / max dialogue length."""
    rows = []
    for split in splits_of(corpus):
        lengths = np.array([len(d) for d in corpus.split(split)])
        rows.append({"split": split, "dialogues": int(lengths.size), "utterances": int(lengths.sum()),
                     "mean length": float(lengths.mean()), "min length": int(lengths.min()),
                     "max length": int(lengths.max())})
    return rows


def class_counts(corpus: Corpus) -> dict[str, np.ndarray]:
    """split -> (C,) utterances per class."""
    return {split: corpus.class_counts(split) for split in splits_of(corpus)}


def dialogue_lengths(corpus: Corpus) -> dict[str, np.ndarray]:
    """split -> (D,) utterances per dialogue."""
    return {split: np.array([len(d) for d in corpus.split(split)], dtype=np.int64) for split in splits_of(corpus)}


def _dialogues(corpus: Corpus, split: str | None):
    return list(corpus.dialogues.values()) if split is None else corpus.split(split)


def speaker_stats(corpus: Corpus, split: str | None = None) -> dict[str, Any]:
    """How the floor is shared.

    Returns ``utterances_per_speaker`` {speaker name: utterances}, ``speakers_per_dialogue``
    (D,) distinct speakers per dialogue, ``turn_lengths`` (T,) utterances per turn (a turn is a
    run of consecutive utterances by one speaker) and ``switch_rate``, the share of
    consecutive utterance pairs where the speaker changes.
    """
    per_speaker = np.zeros(corpus.num_speakers, dtype=np.int64)
    speakers_per_dialogue, turns = [], []
    switches = pairs = 0
    for d in _dialogues(corpus, split):
        s = np.asarray(d.speakers)
        per_speaker += np.bincount(s, minlength=corpus.num_speakers)
        speakers_per_dialogue.append(len(np.unique(s)))
        change = np.flatnonzero(s[1:] != s[:-1]) + 1  # first utterance of each new turn
        bounds = np.concatenate([[0], change, [len(s)]])
        turns.extend(np.diff(bounds).tolist())
        switches += len(change)
        pairs += max(len(s) - 1, 0)
    return {
        "utterances_per_speaker": {name: int(c) for name, c in zip(corpus.speaker_names, per_speaker)},
        "speakers_per_dialogue": np.array(speakers_per_dialogue, dtype=np.int64),
        "turn_lengths": np.array(turns, dtype=np.int64),
        "switch_rate": switches / pairs if pairs else 0.0,
    }


def transition_counts(corpus: Corpus, relation: str = "same", split: str | None = None) -> np.ndarray:
    """(C, C) counts K[a, b] of "an utterance of emotion b follows one of emotion a".

    ``relation`` ``"same"``: the earlier utterance is the same speaker's previous one;
    ``"other"``: it is the utterance just before, said by another speaker (see the module
    docstring). ``split`` None counts over all dialogues.
    """
    if relation not in RELATIONS:
        raise ValueError(f"transition_counts: relation={relation!r}, expected one of {RELATIONS}")
    c = corpus.num_classes
    counts = np.zeros((c, c), dtype=np.int64)
    for d in _dialogues(corpus, split):
        labels, speakers = np.asarray(d.labels), np.asarray(d.speakers)
        if relation == "other":
            other = np.flatnonzero(speakers[1:] != speakers[:-1]) + 1
            np.add.at(counts, (labels[other - 1], labels[other]), 1)
            continue
        last: dict[int, int] = {}
        for y, s in zip(labels.tolist(), speakers.tolist()):
            if s in last:
                counts[last[s], y] += 1
            last[s] = y
    return counts


def transition_matrix(corpus: Corpus, relation: str = "same", split: str | None = None) -> np.ndarray:
    """Row-normalised :func:`transition_counts`: P(later emotion | earlier emotion); empty rows are 0."""
    counts = transition_counts(corpus, relation, split).astype(float)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def repeat_rates(corpus: Corpus, split: str | None = None) -> dict[str, float]:
    """Share of transitions that keep the emotion, per relation, beside the chance level
    (the probability that two utterances drawn independently from the class shares agree)."""
    out = {}
    for relation in RELATIONS:
        k = transition_counts(corpus, relation, split)
        out[relation] = float(np.trace(k) / k.sum()) if k.sum() else 0.0
    shares = sum(corpus.class_counts(s) for s in splits_of(corpus)) if split is None else corpus.class_counts(split)
    shares = shares / max(shares.sum(), 1)
    out["chance"] = float((shares ** 2).sum())
    return out


# --------------------------------------------------------------------------- class similarity

def input_prototype_similarity(corpus: Corpus, split: str = "train") -> np.ndarray:
    """(C, C) the "prototype" similarity computed on the input features.

    Training computes prototypes from the teacher's features and refreshes them every epoch;
    before any training, the closest stand-in is the same function on the inputs: each
    modality scaled to unit variance over ``split`` (so no modality or dimension dominates),
    the modalities concatenated, then :func:`safsd_glnet.model.losses.prototype_similarity`, which
    centres the class means by the overall mean and takes their cosine, clamped to [0, 1].
    """
    import torch

    from ..model.losses import prototype_similarity

    dialogues = corpus.split(split)
    labels = np.concatenate([d.labels for d in dialogues])
    blocks = []
    for m in corpus.modalities:
        x = np.concatenate([d.features[m] for d in dialogues]).astype(np.float64)
        x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-8)
        blocks.append(x / np.sqrt(x.shape[1]))  # each modality weighs the same whatever its size
    x = np.concatenate(blocks, axis=1)
    sums = np.zeros((corpus.num_classes, x.shape[1]))
    np.add.at(sums, labels, x)
    counts = np.bincount(labels, minlength=corpus.num_classes)
    return prototype_similarity(torch.from_numpy(sums), torch.from_numpy(counts)).numpy()


def similarity_matrices(corpus: Corpus, sources: Sequence[str] = ("prior", "vad", "prototype"),
                        vad_sigma: float = 0.5) -> dict[str, np.ndarray | str]:
    """source -> (C, C) S as SAF reads it (row = true class), or the reason it is unavailable
    for these classes (e.g. there is no reference prior for MELD). "prototype" comes from
    :func:`input_prototype_similarity`."""
    from ..model.losses import similarity_matrix

    out: dict[str, np.ndarray | str] = {}
    for source in sources:
        try:
            if source == "prototype":
                out[source] = input_prototype_similarity(corpus)
            else:
                out[source] = similarity_matrix(source, corpus.class_names, sigma=vad_sigma).numpy()
        except ValueError as e:
            out[source] = ("the reference's hand-set prior exists only for the six IEMOCAP classes; "
                           "use vad or prototype" if source == "prior" else str(e).split(": ", 1)[-1])
    return out


# --------------------------------------------------------------------------- one dialogue

def dialogue_rows(corpus: Corpus, dialogue_id: str) -> list[dict[str, Any]]:
    """The utterances of one dialogue: position, speaker, emotion, sentence (None where the
    corpus has no sentences)."""
    if dialogue_id not in corpus.dialogues:
        raise DataError(f"{corpus.source}: no dialogue {dialogue_id!r} in corpus {corpus.name!r}")
    d = corpus.dialogues[dialogue_id]
    texts = d.texts if d.texts is not None else [None] * len(d)
    return [{"position": i, "speaker": corpus.speaker_names[int(s)], "emotion": corpus.class_names[int(y)],
             "text": t} for i, (s, y, t) in enumerate(zip(d.speakers, d.labels, texts))]


def split_of(corpus: Corpus, dialogue_id: str) -> str | None:
    for split, ids in corpus.splits.items():
        if dialogue_id in ids:
            return split
    return None


def format_dialogue(corpus: Corpus, dialogue_id: str, max_rows: int | None = None) -> str:
    """A plain-text view of one dialogue (the browser's content, for papermill and terminals)."""
    rows = dialogue_rows(corpus, dialogue_id)
    has_text = any(r["text"] is not None for r in rows)
    speaker_w = max(len("speaker"), *(len(r["speaker"]) for r in rows))
    emotion_w = max(len("emotion"), *(len(r["emotion"]) for r in rows))
    head = (f"{corpus.name} / {split_of(corpus, dialogue_id) or '-'} / dialogue {dialogue_id}: "
            f"{len(rows)} utterances, speakers {sorted({r['speaker'] for r in rows})}")
    lines = [head, f"{'#':>3}  {'speaker':<{speaker_w}}  {'emotion':<{emotion_w}}" + ("  sentence" if has_text else "")]
    shown = rows if max_rows is None else rows[:max_rows]
    for r in shown:
        line = f"{r['position']:>3}  {r['speaker']:<{speaker_w}}  {r['emotion']:<{emotion_w}}"
        if has_text:
            line += f"  {r['text'] or ''}"
        lines.append(line)
    if len(shown) < len(rows):
        lines.append(f"... {len(rows) - len(shown)} more utterances")
    if not has_text:
        lines.append("(this corpus has no sentences: only speakers, emotions and feature vectors)")
    return "\n".join(lines)


# The view's styles: padded cells, a header that stays in place while the rows scroll, colours
# from JupyterLab's theme variables (with fallbacks for other front ends).
_CELL = "padding:3px 10px;vertical-align:top;border-bottom:1px solid var(--jp-border-color2, #e0e0e0)"
_HEAD = ("position:sticky;top:0;z-index:1;padding:4px 10px;text-align:left;"
         "background:var(--jp-layout-color2, #eeeeee);border-bottom:1px solid var(--jp-border-color1, #bdbdbd)")


def dialogue_html(corpus: Corpus, dialogue_id: str, colors: Mapping[str, str] | None = None,
                  max_height: int | None = 420) -> str:
    """An HTML table of one dialogue, emotions as coloured chips, speakers as alternating sides.

    ``max_height`` (pixels) makes the table a box of at most that height that scrolls under a
    header that stays in place, so that a long dialogue (85 utterances is 2,800 px of table)
    does not push what is above it off the screen; None draws the whole table.
    """
    if colors is None:
        from .plots import class_colors

        colors = class_colors(corpus.class_names)
    rows = dialogue_rows(corpus, dialogue_id)
    has_text = any(r["text"] is not None for r in rows)
    speakers = list(dict.fromkeys(r["speaker"] for r in rows))
    box = f"max-height:{int(max_height)}px;overflow-y:auto;" if max_height else ""
    heads = ["#", "speaker", "emotion"] + (["sentence"] if has_text else [])
    out = [f"<p style='margin:4px 0 6px'><b>{html.escape(corpus.name)}</b> &middot; split "
           f"{html.escape(split_of(corpus, dialogue_id) or '-')} &middot; dialogue <code>{html.escape(dialogue_id)}</code>"
           f" &middot; {len(rows)} utterances &middot; speakers {html.escape(', '.join(speakers))}</p>",
           f"<div class='safsd-dialogue' style='{box}display:inline-block;{'width:100%;' if has_text else ''}"
           "border:1px solid var(--jp-border-color2, #e0e0e0)'>",
           # full width only for the sentences; three short columns stay together on the left
           f"<table style='border-collapse:separate;border-spacing:0;{'width:100%;' if has_text else ''}"
           "font-size:var(--jp-content-font-size1, 14px)'>",
           "<thead><tr>" + "".join(f"<th style='{_HEAD}{';text-align:right' if h == '#' else ''}'>{h}</th>"
                                   for h in heads) + "</tr></thead>", "<tbody>"]
    for r in rows:
        indent = 10 + 24 * (speakers.index(r["speaker"]) % 2)  # px: the second speaker's turns sit further in
        chip = (f"<span style='background:{colors.get(r['emotion'], '#999')};color:white;border-radius:4px;"
                f"padding:1px 8px;white-space:nowrap'>{html.escape(r['emotion'])}</span>")
        cells = [f"<td style='{_CELL};text-align:right;color:#888'>{r['position']}</td>",
                 f"<td style='{_CELL};padding-left:{indent}px;white-space:nowrap'>{html.escape(r['speaker'])}</td>",
                 f"<td style='{_CELL}'>{chip}</td>"]
        if has_text:
            cells.append(f"<td style='{_CELL}'>{html.escape(r['text'] or '')}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    if not has_text:
        out.append("<p style='color:#888;margin:6px 0'>This corpus has no sentences: only speakers, emotions and "
                   "feature vectors.</p>")
    return "\n".join(out)


def dialogue_browser(corpora: Mapping[str, Corpus], max_dialogues: int | None = None,
                     max_height: int | None = 420, text_rows: int = 25):
    """An ipywidgets browser: pick a corpus, a split and a dialogue; see its speakers,
    emotions and (where the corpus has them) sentences.

    Returns the widget (a ``VBox``); its ``.children`` are the corpus, split and dialogue
    dropdowns and the HTML view (:func:`dialogue_html`, a box of ``max_height`` pixels), so
    code (and tests) can drive it by setting ``.value``. Where widgets cannot render
    (papermill, a terminal), the widget displays as :func:`format_dialogue` of the dialogue
    shown (its first ``text_rows`` utterances) instead of the usual ``VBox(...)``; see the
    module docstring for what a saved notebook keeps.
    """
    import ipywidgets as widgets

    if not corpora:
        raise ValueError("dialogue_browser: no corpora given")
    names = list(corpora)
    pick_corpus = widgets.Dropdown(options=names, value=names[0], description="corpus")
    pick_split = widgets.Dropdown(description="split")
    pick_dialogue = widgets.Dropdown(description="dialogue")
    view = widgets.HTML()

    def dialogue_options(corpus: Corpus, split: str) -> list[tuple[str, str]]:
        ids = corpus.splits[split][:max_dialogues] if max_dialogues else corpus.splits[split]
        return [(f"{i} ({len(corpus.dialogues[i])} utt.)", i) for i in ids]

    def on_corpus(_=None):
        corpus = corpora[pick_corpus.value]
        pick_split.options = splits_of(corpus)
        pick_split.value = pick_split.options[0]
        on_split()

    def on_split(_=None):
        corpus = corpora[pick_corpus.value]
        if pick_split.value is None:
            return
        options = dialogue_options(corpus, pick_split.value)
        pick_dialogue.options = options
        pick_dialogue.value = options[0][1]
        on_dialogue()

    def on_dialogue(_=None):
        if pick_dialogue.value is not None:
            view.value = SAVED_VIEW_NOTE + dialogue_html(corpora[pick_corpus.value], pick_dialogue.value,
                                                         max_height=max_height)

    def as_text() -> str:
        if pick_dialogue.value is None:
            return "dialogue browser (no dialogue selected)"
        return format_dialogue(corpora[pick_corpus.value], pick_dialogue.value, max_rows=text_rows)

    pick_corpus.observe(on_corpus, names="value")
    pick_split.observe(on_split, names="value")
    pick_dialogue.observe(on_dialogue, names="value")
    on_corpus()
    browser = _browser_class()([pick_corpus, pick_split, pick_dialogue, view], text=as_text)
    browser.add_class(BROWSER_CLASS)
    return browser


# A notebook reopened on a new kernel draws the browser from its saved widget state, but nothing
# answers its dropdowns any more: they would change while the table stays. ipywidgets marks the view
# of every model without a live kernel connection with the class ``jupyter-widgets-disconnected``;
# these rules (in the HTML view, which the saved state keeps) hide the dropdowns then and show the
# saved dialogue with a one-line note instead. While the kernel runs the note is hidden.
BROWSER_CLASS = "safsd-browser"
SAVED_VIEW_NOTE = (
    "<style>"
    f".{BROWSER_CLASS} .safsd-saved-note {{display: none}}"
    f".{BROWSER_CLASS}.jupyter-widgets-disconnected .widget-dropdown {{display: none}}"
    f".{BROWSER_CLASS}.jupyter-widgets-disconnected .safsd-saved-note {{display: block; margin: 2px 0 6px;"
    " color: var(--jp-ui-font-color2, #666)}"
    "</style>"
    "<div class='safsd-saved-note'>The saved view: run this cell to browse the dialogues again.</div>"
)


_BROWSER_CLASS = None


def _browser_class():
    """A ``VBox`` whose plain-text form (what papermill and terminals show) is the dialogue
    itself. Made on first use so that importing this module does not import ipywidgets."""
    global _BROWSER_CLASS
    if _BROWSER_CLASS is None:
        import ipywidgets as widgets

        class DialogueBrowser(widgets.VBox):
            def __init__(self, children, text, **kwargs):
                super().__init__(children, **kwargs)
                self._text = text

            def _repr_mimebundle_(self, **kwargs):
                bundle = super()._repr_mimebundle_(**kwargs)
                if bundle:  # None once the widget is closed
                    bundle["text/plain"] = self._text()
                return bundle

        _BROWSER_CLASS = DialogueBrowser
    return _BROWSER_CLASS


# --------------------------------------------------------------------------- tables
