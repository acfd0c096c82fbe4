"""Loader for the standard SDT / M3Net feature pickles (IEMOCAP and MELD).

Layout (SPEC.md, "Standard feature files"): a tuple whose elements are, in order,

====  ==============  =========================================================
 0    videoIDs        dialogue id -> utterance ids (read only to check it is a dict)
 1    videoSpeakers   IEMOCAP: 'M' / 'F' per utterance; MELD: 9-dim one-hot rows
 2    videoLabels     dialogue id -> class index per utterance
 3    videoText       RoBERTa features, (n, 1024)
 4-6  roberta2..4     further RoBERTa layers, (n, 1024) each (used by ``text="mean"``)
 7    videoAudio      IEMOCAP IS10 (n, 1582); MELD (n, 300)
 8    videoVisual     DenseFace (n, 342)
 9    videoSentence   dialogue id -> sentence per utterance
10    trainVid        ids of the training dialogues (IEMOCAP and MELD: train + dev)
11    testVid         ids of the test dialogues
12    (MELD only)     an extra element that loaders ignore
====  ==============  =========================================================

Per-dialogue values may be lists of 1-D arrays or 2-D arrays; features become float32
``(n, d)``. The file is opened with :func:`~safsd_glnet.data.safe.unpickler.safe_load`, so a
file that names anything other than containers, numbers, strings and numpy arrays is refused
before anything in it runs, and one whose shared references reach more elements than it has
bytes is refused too (:mod:`~safsd_glnet.data.safe.pickle_scan`): every array a conversion below
creates holds at most one element per byte of the file (4 bytes of float32 per byte), however
the file shares lists through the memo. What the conversions themselves must still guard
against: dialogue ids and labels are checked to be numbers or strings before ``str()`` or
``np.asarray`` touches them (a list mixing a long string with short ones would become a
string array padded to the longest, and ``str()`` of a nested id walks all of it), and values
quoted in messages are cut to a few dozen characters.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..dataset_facts import IEMOCAP_CLASSES, IEMOCAP_SPEAKERS, MELD_CLASSES, MELD_DEV_IDS
from . import validation
from .corpus import Corpus, DataError, Dialogue
from .safe.unpickler import safe_load

__all__ = ["load_sdt_pickle", "IEMOCAP_CLASSES", "MELD_CLASSES", "SDT_FIELDS"]


SDT_FIELDS = ("videoIDs", "videoSpeakers", "videoLabels", "videoText", "roberta2", "roberta3",
              "roberta4", "videoAudio", "videoVisual", "videoSentence", "trainVid", "testVid")
_TUPLE_LENGTH = {"iemocap": 12, "meld": 13}

_TEXT_LAYERS = ("videoText", "roberta2", "roberta3", "roberta4")


def load_sdt_pickle(path: str | os.PathLike, kind: str = "auto", valid_fraction: float | None = None,
                    seed: int = 0, text: str = "first",
                    valid_ids: Iterable[Any] | str | None = None, valid_ids_file: str | None = None) -> Corpus:
    """Read an SDT / M3Net feature pickle into a validated :class:`Corpus`.

    Args:
        path: the ``.pkl`` file.
        kind: ``"iemocap"`` (12-tuple), ``"meld"`` (13-tuple) or ``"auto"`` (by tuple length).
        valid_fraction: share of the training dialogues held out as ``"valid"`` by a seeded
            draw. None (default): MELD's official dev dialogues where a MELD file's ``trainVid``
            holds all of them, else 0.1. A number always draws (0 gives an empty ``"valid"``).
        seed: seed of the held-out draw: the training ids are sorted, permuted by
            ``numpy.random.default_rng(seed)`` and the first ``round(valid_fraction * n)``
            (at least 1, at most n - 1) become ``"valid"``; the same file and seed always give
            the same split.
        text: ``"first"`` uses ``videoText`` (SDT and the SAFSD-GLNet code); ``"mean"``
            averages ``videoText`` and ``roberta2``-``roberta4`` (M3Net).
        valid_ids: explicit validation dialogues (ids as in the file, or their ``str``). They
            must belong to ``trainVid``; they replace the seeded draw. ``"meld-dev"`` names
            the official MELD dev dialogues in the standard numbering (:data:`MELD_DEV_IDS`).
        valid_ids_file: the file ``valid_ids`` were read from, for the record (the command
            line's ``--valid-ids FILE``).

    Returns:
        Corpus named ``"iemocap"`` or ``"meld"``, modalities t / a / v, splits ``train`` /
        ``valid`` / ``test`` (lists of dialogue ids, each sorted by the file's ids), ``source``
        the file path, ``validation`` the record of the validation split used
        (:mod:`~safsd_glnet.data.validation`: ``official-dev``, ``seeded-fraction`` with its
        fraction and seed, ``ids`` with the file, or ``none``). Dialogue ids are the file's ids
        turned into ``str`` (MELD uses ints).
        Speakers: IEMOCAP ``["M", "F"]``; MELD ``["speaker0", ..., "speaker8"]`` from the
        argmax of the one-hot rows (the file numbers speakers per dialogue, so ``speaker0``
        is not the same person across dialogues). ``Dialogue.texts`` holds ``videoSentence``
        when the file has it.

    Splits, honestly: IEMOCAP has no official validation split, so one is carved from
    ``trainVid`` (SPEC.md: a fixed, seeded 10%). For MELD, ``trainVid`` of the standard file
    holds the official train *and* dev dialogues together (1038 + 114 = 1152; SDT and M3Net
    train on all 1152 and pick epochs on test). In the numbering these files share with
    DialogueRNN and COSMIC the dev dialogues are the block 1039-1152 after the training ones
    (the kit's pickle merging relies on the same numbering), so by default a MELD file whose
    ``trainVid`` holds all of those ids uses them as ``"valid"``: the official split, whose
    validation numbers compare with papers that used it. The file itself cannot confirm the
    block; a file without all of them (a subset, another numbering) falls back to the seeded
    10%, and the record says which happened. ``valid_fraction`` asks for the seeded draw
    explicitly (command line: ``--valid-fraction``).

    Raises:
        DataError: naming the file, the dialogue and the field, for a wrong tuple length,
            dialogues missing from one of the dicts, a label outside the classes, a speaker
            that is not 'M'/'F' or not one-hot, lengths that disagree between fields, a
            feature size that differs from the other dialogues, NaN or inf, an empty
            dialogue, a split naming an unknown dialogue. ``UnsafePickleError`` (a
            ``DataError``) for a file that names a disallowed global.
    """
    source = os.fspath(path)
    if text not in ("first", "mean"):
        raise ValueError(f"load_sdt_pickle: text={text!r}, expected 'first' or 'mean'")
    if valid_fraction is not None and not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"load_sdt_pickle: valid_fraction={valid_fraction} must lie in [0, 1)")
    if kind not in ("auto", "iemocap", "meld"):
        raise ValueError(f"load_sdt_pickle: kind={kind!r}, expected 'auto', 'iemocap' or 'meld'")
    if valid_ids is not None and valid_fraction is not None:
        raise ValueError("load_sdt_pickle: valid_ids and valid_fraction exclude each other: the ids replace the "
                         "seeded draw")
    if isinstance(valid_ids, str):
        if valid_ids != "meld-dev":
            raise ValueError(f"load_sdt_pickle: valid_ids={valid_ids!r}: expected a collection of dialogue "
                             "ids or 'meld-dev'")
    elif valid_ids is not None:
        valid_ids = list(valid_ids)
    raw = safe_load(source, encoding="latin1")
    kind, fields = _unpack(raw, kind, source)
    choice = _ValidChoice(valid_fraction, int(seed), valid_ids, valid_ids_file)
    return _build_corpus(fields, kind, source, choice, text)


# ----------------------------------------------------------------------------------------------
# tuple layout


def _unpack(raw: Any, kind: str, source: str) -> tuple[str, dict[str, Any]]:
    """Check the tuple length against ``kind`` and name its elements."""
    if not isinstance(raw, (tuple, list)):
        raise DataError(f"{source}: expected a 12-tuple (IEMOCAP) or 13-tuple (MELD) of "
                        f"SDT feature fields, got a {type(raw).__name__}")
    n = len(raw)
    if kind == "auto":
        by_length = {v: k for k, v in _TUPLE_LENGTH.items()}
        if n not in by_length:
            raise DataError(f"{source}: the pickle holds a {n}-tuple; expected 12 elements "
                            f"(IEMOCAP: {', '.join(SDT_FIELDS)}) or 13 (MELD: the same and one "
                            f"ignored element)")
        kind = by_length[n]
    elif n != _TUPLE_LENGTH[kind]:
        raise DataError(f"{source}: kind={kind!r} expects a {_TUPLE_LENGTH[kind]}-tuple, the pickle "
                        f"holds a {n}-tuple")
    return kind, dict(zip(SDT_FIELDS, raw))  # zip drops MELD's 13th element


def _natural_key(key: Any) -> tuple[int, Any]:
    """Sort ints (MELD) numerically and everything else (IEMOCAP names) as text."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return (0, int(key))
    return (1, str(key) if isinstance(key, str) else _show(key))


def _show(value: Any, limit: int = 60) -> str:
    """``repr`` of a value from the file, cut to ``limit`` characters, for messages.

    Containers are named by type and length, not printed: their repr could be as large as
    the file.
    """
    if isinstance(value, (str, bytes, int, float, np.generic)):
        text = repr(value.item() if isinstance(value, np.generic) else value)
        return text if len(text) <= limit else text[: limit - 3] + "..."
    if isinstance(value, (list, tuple, dict, set, frozenset, np.ndarray)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


def _clip(error: Exception, limit: int = 200) -> str:
    """An exception's message on one line, at most ``limit`` characters."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_id(value: Any, where: str) -> None:
    """Dialogue ids are strings (IEMOCAP) or integers (MELD); anything else is refused."""
    if not (isinstance(value, (str, int, np.integer)) and not isinstance(value, bool)):
        raise DataError(f"{where}: dialogue ids must be strings or integers, got {_show(value)}")


def _build_corpus(fields: dict[str, Any], kind: str, source: str, choice: "_ValidChoice", text: str) -> Corpus:
    for name in SDT_FIELDS[:10]:
        if name == "videoSentence" and fields[name] is None:
            continue  # sentences are optional
        if not isinstance(fields[name], Mapping):
            raise DataError(f"{source}: field {name!r} must be a dict keyed by dialogue id, "
                            f"got {type(fields[name]).__name__}")
    labels_field = fields["videoLabels"]
    # The original keys, in a stable order; ids become str because Corpus keys are str.
    for k in labels_field:
        _check_id(k, f"{source}: field 'videoLabels'")
    keys = sorted(labels_field, key=_natural_key)
    ids: dict[Any, str] = {}
    seen: dict[str, Any] = {}
    for k in keys:
        s = str(k)
        if s in seen:
            raise DataError(f"{source}: field 'videoLabels' has two dialogues whose ids both read "
                            f"{_show(s)} ({_show(seen[s])} and {_show(k)})")
        seen[s] = k
        ids[k] = s

    text_fields = _TEXT_LAYERS if text == "mean" else _TEXT_LAYERS[:1]
    used = ["videoSpeakers", *text_fields, "videoAudio", "videoVisual"]
    sentences = fields["videoSentence"]
    has_sentences = isinstance(sentences, Mapping) and len(sentences) > 0
    if has_sentences:
        used.append("videoSentence")
    _check_keys(fields, used, keys, source)

    dialogues: dict[str, Dialogue] = {}
    speaker_widths: dict[str, int] = {}  # MELD: one-hot width per dialogue
    for k in keys:
        did = ids[k]
        where = f"{source}: dialogue {did!r}"
        labels = _labels(labels_field[k], where, len(_classes(kind)))
        n = len(labels)
        if kind == "iemocap":
            speakers = _iemocap_speakers(fields["videoSpeakers"][k], where, n)
        else:
            speakers, speaker_widths[did] = _meld_speakers(fields["videoSpeakers"][k], where, n)
        if text == "first":
            x_t = _features(fields["videoText"][k], where, "videoText", n)
        else:
            layers = [_features(fields[f][k], where, f, n) for f in _TEXT_LAYERS]
            for f, x in zip(_TEXT_LAYERS[1:], layers[1:]):
                if x.shape != layers[0].shape:
                    raise DataError(f"{where}: field {f!r} has size {x.shape[1]}, 'videoText' has "
                                    f"{layers[0].shape[1]} (text='mean' averages them)")
            # Average in float64 so the mean does not depend on summation order in float32.
            x_t = np.mean(np.stack(layers).astype(np.float64), axis=0).astype(np.float32)
        features = {"t": x_t,
                    "a": _features(fields["videoAudio"][k], where, "videoAudio", n),
                    "v": _features(fields["videoVisual"][k], where, "videoVisual", n)}
        texts = _sentences(sentences[k], where, n) if has_sentences else None
        dialogues[did] = Dialogue(did, speakers, labels, features, texts)

    feature_sizes = _common_sizes(dialogues, source, text_fields[0])
    if kind == "iemocap":
        speaker_names = list(IEMOCAP_SPEAKERS)
    else:
        speaker_names = [f"speaker{i}" for i in range(_common_speaker_width(speaker_widths, source))]
    splits, record = _splits(fields, ids, source, kind, choice)
    corpus = Corpus(kind, list(_classes(kind)), speaker_names, feature_sizes, dialogues, splits,
                    source, validation=record)
    return corpus.validate()


def _classes(kind: str) -> list[str]:
    return IEMOCAP_CLASSES if kind == "iemocap" else MELD_CLASSES


def _check_keys(fields: dict[str, Any], used: list[str], keys: list[Any], source: str) -> None:
    """Every per-dialogue dict must hold exactly the dialogues of ``videoLabels``."""
    reference = set(keys)
    for name in used:
        have = set(fields[name])
        missing = sorted(reference - have, key=_natural_key)
        if missing:
            raise DataError(f"{source}: dialogue {_show(str(missing[0]))} is in field 'videoLabels' but "
                            f"missing from field {name!r} ({len(missing)} dialogue(s) missing)")
        extra = sorted(have - reference, key=_natural_key)
        if extra:
            for k in extra:
                _check_id(k, f"{source}: field {name!r}")
            raise DataError(f"{source}: dialogue {_show(str(extra[0]))} is in field {name!r} but missing "
                            f"from field 'videoLabels' ({len(extra)} dialogue(s))")


# ----------------------------------------------------------------------------------------------
# per-dialogue fields


def _labels(value: Any, where: str, num_classes: int) -> np.ndarray:
    """(n,) int64 labels; integer-valued floats are accepted, anything else is an error."""
    if isinstance(value, (list, tuple)):
        # Numbers only, before numpy sees them (strings would make a padded string array).
        for i, v in enumerate(value):
            if not isinstance(v, (int, float, np.integer, np.floating)):
                raise DataError(f"{where}: field 'videoLabels' holds {_show(v)} (utterance {i}), "
                                f"not a class index")
    elif not isinstance(value, np.ndarray):
        raise DataError(f"{where}: field 'videoLabels' must be a list of class indices, got "
                        f"{_show(value)}")
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise DataError(f"{where}: field 'videoLabels' is not a list of integers: {_clip(e)}") from e
    if a.ndim != 1:
        raise DataError(f"{where}: field 'videoLabels' must be a flat list of class indices, "
                        f"got shape {a.shape}")
    if a.size == 0:
        raise DataError(f"{where}: field 'videoLabels' is empty (a dialogue needs at least one "
                        f"utterance)")
    if a.dtype.kind in "iu":
        out = a.astype(np.int64)
    elif a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{where}: field 'videoLabels' holds {a[i].item()!r} (utterance {i}), not a "
                            f"class index")
        out = a.astype(np.int64)
    else:
        raise DataError(f"{where}: field 'videoLabels' must hold integers, got {a.dtype} values "
                        f"such as {_show(a.flat[0])}")
    outside = (out < 0) | (out >= num_classes)
    if outside.any():
        i = int(np.argmax(outside))
        raise DataError(f"{where}: field 'videoLabels' holds {int(out[i])} (utterance {i}), outside "
                        f"the {num_classes} classes 0..{num_classes - 1}")
    return out


def _iemocap_speakers(value: Any, where: str, n: int) -> np.ndarray:
    """'M' -> 0, 'F' -> 1, as (n,) int64."""
    try:
        items = list(value)
    except TypeError as e:
        raise DataError(f"{where}: field 'videoSpeakers' must be a list of 'M'/'F', got "
                        f"{type(value).__name__}") from e
    if len(items) != n:
        raise DataError(f"{where}: field 'videoSpeakers' has {len(items)} entries, 'videoLabels' "
                        f"has {n}")
    out = np.empty(n, dtype=np.int64)
    for i, s in enumerate(items):
        if isinstance(s, (bytes, np.bytes_)):
            s = bytes(s).decode("latin1")
        s = str(s) if isinstance(s, np.str_) else s
        if s not in IEMOCAP_SPEAKERS:
            raise DataError(f"{where}: field 'videoSpeakers' holds {_show(s)} (utterance {i}), "
                            f"expected 'M' or 'F'")
        out[i] = IEMOCAP_SPEAKERS.index(s)
    return out


def _meld_speakers(value: Any, where: str, n: int) -> tuple[np.ndarray, int]:
    """One-hot rows (n, W) -> ((n,) int64 argmax, W); each row needs one largest entry."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise DataError(f"{where}: field 'videoSpeakers' must be one-hot rows (utterances, 9): "
                        f"{_clip(e)}") from e
    if a.ndim != 2:
        raise DataError(f"{where}: field 'videoSpeakers' must be one-hot rows (utterances, 9), got "
                        f"shape {a.shape}")
    if a.shape[0] != n:
        raise DataError(f"{where}: field 'videoSpeakers' has {a.shape[0]} entries, 'videoLabels' "
                        f"has {n}")
    if a.shape[1] == 0:
        raise DataError(f"{where}: field 'videoSpeakers' rows are empty, expected one-hot rows")
    if not np.isfinite(a).all():
        i = int(np.argwhere(~np.isfinite(a))[0][0])
        raise DataError(f"{where}: field 'videoSpeakers' holds NaN or inf (utterance {i})")
    # "One-hot-ish": a row may be soft, but its speaker must be unambiguous.
    ties = (a == a.max(axis=1, keepdims=True)).sum(axis=1)
    if (ties != 1).any():
        i = int(np.argmax(ties != 1))
        row = a[i].tolist() if a.shape[1] <= 16 else f"{a.shape[1]} values"
        raise DataError(f"{where}: field 'videoSpeakers' row {i} ({row}) has no single "
                        f"largest entry, so its speaker is ambiguous")
    return a.argmax(axis=1).astype(np.int64), int(a.shape[1])


def _features(value: Any, where: str, field: str, n: int) -> np.ndarray:
    """A list of (d,) arrays or an (n, d) array -> (n, d) float32 with finite values."""
    try:
        # Values above the float32 range become inf here and are reported just below.
        with np.errstate(over="ignore", invalid="ignore"):
            x = np.asarray(value, dtype=np.float32)
    except (ValueError, TypeError) as e:
        raise DataError(f"{where}: field {field!r} cannot be read as an (utterances, size) float "
                        f"array (rows of different sizes?): {_clip(e)}") from e
    if x.ndim != 2:
        raise DataError(f"{where}: field {field!r} must be (utterances, size), got shape {x.shape}")
    if x.shape[0] != n:
        raise DataError(f"{where}: field {field!r} has {x.shape[0]} utterances, 'videoLabels' has {n}")
    finite = np.isfinite(x)
    if not finite.all():
        i, j = (int(v) for v in np.argwhere(~finite)[0])
        raise DataError(f"{where}: field {field!r} holds {x[i, j]} (utterance {i}, entry {j})")
    return x


def _sentences(value: Any, where: str, n: int) -> list[str]:
    if isinstance(value, (str, bytes)):
        raise DataError(f"{where}: field 'videoSentence' must be a list of sentences, got one string")
    try:
        items = list(value)
    except TypeError as e:
        raise DataError(f"{where}: field 'videoSentence' must be a list of sentences, got "
                        f"{type(value).__name__}") from e
    if len(items) != n:
        raise DataError(f"{where}: field 'videoSentence' has {len(items)} sentences, 'videoLabels' "
                        f"has {n}")
    out = []
    for i, s in enumerate(items):
        if isinstance(s, (bytes, np.bytes_)):
            s = bytes(s).decode("utf-8", errors="replace")
        if not isinstance(s, str):
            raise DataError(f"{where}: field 'videoSentence' holds a {type(s).__name__} "
                            f"(utterance {i}), expected a string")
        out.append(str(s))
    return out


def _common_sizes(dialogues: dict[str, Dialogue], source: str, text_field: str) -> dict[str, int]:
    """The feature size of each modality: the one most dialogues have; others are errors.

    The majority (not the first dialogue) sets the size, so the message names the odd
    dialogue rather than blaming every other one.
    """
    field_of = {"t": text_field, "a": "videoAudio", "v": "videoVisual"}
    sizes = {}
    for m in ("t", "a", "v"):
        counts = Counter(d.features[m].shape[1] for d in dialogues.values())
        size = counts.most_common(1)[0][0]
        for did, d in dialogues.items():
            if d.features[m].shape[1] != size:
                raise DataError(f"{source}: dialogue {did!r}: field {field_of[m]!r} has size "
                                f"{d.features[m].shape[1]}, the other dialogues have {size}")
        sizes[m] = int(size)
    return sizes


def _common_speaker_width(widths: dict[str, int], source: str) -> int:
    """Width of MELD's one-hot speaker rows (9 in the standard file), equal in all dialogues."""
    width = Counter(widths.values()).most_common(1)[0][0]
    for did, w in widths.items():
        if w != width:
            raise DataError(f"{source}: dialogue {did!r}: field 'videoSpeakers' rows have {w} "
                            f"entries, the other dialogues have {width}")
    return int(width)


# ----------------------------------------------------------------------------------------------
# splits


def _split_ids(fields: dict[str, Any], name: str, ids: dict[Any, str], source: str) -> list[str]:
    value = fields[name]
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise DataError(f"{source}: field {name!r} must be a collection of dialogue ids, got "
                        f"{type(value).__name__}")
    by_str = {s: k for k, s in ids.items()}
    out: list[Any] = []
    seen = set()
    for v in value:
        _check_id(v, f"{source}: field {name!r}")
        s = str(v)
        if s not in by_str:
            raise DataError(f"{source}: dialogue {_show(s)}: field {name!r} names a dialogue that is "
                            f"not in field 'videoLabels'")
        if s in seen:
            raise DataError(f"{source}: dialogue {s!r}: field {name!r} names it twice")
        seen.add(s)
        out.append(by_str[s])
    # Sets have no stable order (string hashing is salted per process): sort for repeatability.
    return [ids[k] for k in sorted(out, key=_natural_key)]


@dataclass(frozen=True)
class _ValidChoice:
    """What the caller asked for: a fraction (None: the default), the draw's seed, explicit ids
    (a list or ``"meld-dev"``) and the file they came from."""

    fraction: float | None
    seed: int
    ids: list[Any] | str | None
    ids_file: str | None


def _splits(fields: dict[str, Any], ids: dict[Any, str], source: str, kind: str,
            choice: _ValidChoice) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The train / valid / test splits and the validation record (see :func:`load_sdt_pickle`)."""
    train = _split_ids(fields, "trainVid", ids, source)
    test = _split_ids(fields, "testVid", ids, source)
    both = set(train) & set(test)
    if both:
        first = next(i for i in train if i in both)
        raise DataError(f"{source}: dialogue {first!r} is in both field 'trainVid' and field 'testVid'")
    train_set, dev = set(train), set(MELD_DEV_IDS)
    if choice.ids is not None:
        official = choice.ids == "meld-dev"
        wanted = dev if official else {str(v) for v in choice.ids}
        for v in sorted(wanted):
            if v not in train_set:
                raise DataError(f"{source}: dialogue {v!r}: valid_ids names a dialogue that is not "
                                f"in field 'trainVid'")
        valid = [i for i in train if i in wanted]
        record = validation.record("official-dev") if official else validation.record("ids", file=choice.ids_file)
    elif choice.fraction is None and kind == "meld" and dev < train_set:  # all of dev, and more to train on
        valid = [i for i in train if i in dev]
        record = validation.record("official-dev")
    else:
        fraction = 0.1 if choice.fraction is None else float(choice.fraction)
        valid = _seeded_draw(train, fraction, choice.seed)
        if valid:
            record = validation.record("seeded-fraction", fraction=fraction, seed=choice.seed)
    if not valid:  # valid_fraction=0, a one-dialogue trainVid, or an empty id list
        record = validation.record("none")
    valid_set = set(valid)
    return {"train": [i for i in train if i not in valid_set], "valid": valid, "test": test}, record


def _seeded_draw(train: list[str], fraction: float, seed: int) -> list[str]:
    """``round(fraction * n)`` of the n training ids (at least 1 and at most n - 1 when
    ``fraction`` > 0 and n >= 2), chosen by ``numpy.random.default_rng(seed).permutation``."""
    n = len(train)
    k = int(round(fraction * n))
    if fraction > 0 and n >= 2:
        k = min(max(k, 1), n - 1)  # a non-empty valid split, and training keeps a dialogue
    else:
        k = 0
    chosen = set(np.random.default_rng(seed).permutation(n)[:k].tolist())
    return [i for j, i in enumerate(train) if j in chosen]
