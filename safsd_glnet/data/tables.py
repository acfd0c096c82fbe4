"""Utterance tables (CSV or JSON lines) parsed into dialogues, before any feature exists.

A conversation corpus often starts as a table with one row per utterance: which split, which
dialogue, the utterance's position in it, the speaker, the emotion label and the sentence.
This module turns such tables into a :class:`Table` (dialogues in utterance order, labels as
class indices, speakers as indices) which :func:`safsd_glnet.features.text.build_text_corpus`
then encodes into a :class:`~safsd_glnet.data.corpus.Corpus`. Nothing here needs torch or
an encoder, so tables can be checked quickly and cheaply. Getting rows out of the bytes
(size limits, encoding, delimiter, JSON safety) is :mod:`safsd_glnet.data.table_files`.

Two readers:

* :func:`read_meld_csvs` reads the official MELD text release (``train_sent_emo.csv``,
  ``dev_sent_emo.csv``, ``test_sent_emo.csv``). MELD numbers its dialogues from 0 in every
  split, so the kit's dialogue ids are ``f"{split}_{Dialogue_ID}"`` (``train_12``,
  ``valid_0``, ``test_279``); the dev split is called ``valid`` as everywhere in the kit.
* :func:`read_table` reads any CSV (``,`` ``;`` TAB or ``|`` delimited, detected), TSV or
  JSON-lines table through a column mapping; its defaults fit ``iemocap_utterances.csv``
  (split, dialogue_id, utterance_index, speaker, emotion, text). It reads one file with a
  split column, or one file per split given as ``{"train": a, "valid": b, "test": c}``.

Layouts :func:`read_table` understands:

* **One file per split** (``{"train": ..., "valid": ..., "test": ...}``, ``dev`` and the
  other aliases allowed; any subset): the split comes from the key and no split column is
  read. Dialogue ids that occur in more than one file (MELD restarts its numbering in every
  split) are never merged: with ``split_prefix="auto"`` (default) every id of the table is
  then prefixed with its split (``train_0``, ``valid_0``), as :func:`read_meld_csvs` does,
  and a note says so; ``"always"`` prefixes whatever the ids; ``"never"`` keeps them and a
  repeated id is an error. In a single file ``"always"`` prefixes the row's split, and
  ``"auto"`` keeps ids as written.
* **Composite dialogue ids**: ``columns={"dialogue": ["Season", "Episode", "Scene"]}``
  (``--columns dialogue=Season+Episode+Scene``). The kit's id is the cell values joined
  with ``_`` (``3_12_7``); two different value tuples that join to the same id (``1_2`` +
  ``3`` and ``1`` + ``2_3``) are an error.
* **List-valued speaker cells**: ``"['Monica Geller']"`` or ``'["Ross", "Rachel"]'`` (or a
  JSON array in JSON lines). One name is that name; several are sorted, duplicates dropped,
  and joined with ``" & "`` (``"Rachel & Ross"``): a group that speaks together is one more
  speaker, the same whichever order the transcriber wrote. Parsed by a small scanner, never
  ``eval``. ``"[Narrator]"`` (no quotes) is a plain name.
* **Unlabelled tables** (to predict on): ``labelled=False`` ignores the label column;
  ``labelled=None`` reads labels when the label column exists. Unlabelled dialogues have
  ``labels=None`` and :attr:`Table.labelled` is False; without a split column every
  dialogue goes to the ``"test"`` split (:data:`UNLABELLED_SPLIT`).

Utterance order: rows are sorted by the order column inside each dialogue. The values need
not be contiguous (MELD's ``Utterance_ID`` has gaps where the MELD authors dropped clips);
the position of an utterance in the kit is its rank after sorting, which is also how the
standard SDT / M3Net pickles lay utterances out (they hold only the utterances that exist).

Speakers (``speaker_mode``): the model learns one embedding per speaker index, so the index
has to mean the same thing in every dialogue.

* ``"dialogue"``: per-dialogue indices in order of first appearance (the first person to
  speak is 0, the second 1, ...); ``speaker_names`` are ``speaker0`` .. ``speaker{K-1}``
  with K the largest number of speakers in one dialogue. This is the default for MELD: its
  260 train names (and 44 more that only occur in dev or test) would give an embedding
  table of mostly once-seen, test-only rows, whereas "first / second / ... speaker of this
  conversation" is meaningful everywhere. The MELD pickles also give speakers as
  per-dialogue slots (9-dim one-hot vectors).
* ``"corpus"``: corpus-wide ids of the names, sorted alphabetically (stable whatever the
  row order). The default for :func:`read_table`, where names like IEMOCAP's ``M`` / ``F``
  already mean the same thing in every dialogue.

A fixed vocabulary (``speaker_names=[...]``, e.g. a checkpoint's): in corpus mode each name
gets its index in that list and a name outside it is an error (never a silent new index);
in dialogue mode a dialogue may not have more speakers than the list has slots.

Class order (the label index): fixed by ``class_names`` when given (labels outside it are an
error). Otherwise, when the labels found are exactly the IEMOCAP six or the MELD seven, the
standard order of that data set (:data:`IEMOCAP_CLASSES`, :data:`MELD_CLASSES`); otherwise
the sorted label names. Labels are compared after ``strip().lower()``.

Text cleaning (``fix_text=True``, the default): mojibake from UTF-8 text that was once read
as Windows-1252 is repaired, stray C1 control characters (Windows-1252 bytes read as
Latin-1, as in some MELD copies) are mapped to the characters they stand for, typographic
quotes, dashes, the ellipsis and non-breaking spaces become their ASCII forms, and runs of
whitespace collapse. Sentence encoders were trained mostly on ASCII punctuation, and the
same sentence should give the same vector whichever quote a transcriber typed.

Every fault raises :class:`~safsd_glnet.data.corpus.DataError` naming the file, the row
(1-based data row; for CSV also the file line), the dialogue and the column. Limits (constants of
:mod:`~safsd_glnet.data.table_files`, where a user may raise them): ``MAX_TABLE_BYTES``
(512 MiB) per file, ``MAX_TABLE_ROWS`` (2 million) rows, ``MAX_TEXT_CHARS`` (100,000) per
sentence, ``MAX_FIELD_CHARS`` (1,000) per other cell; order values lie within +-10^18.

Long (about 1,000 lines): every table layout (MELD, one file, one file per split, JSON lines) and
their checks; the bytes are already in table_files.py; a split by layout waits for the edits made beside the layout change.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from . import table_files as tf
from . import validation
from ..dataset_facts import CLASS_ORDERS, IEMOCAP_CLASSES, MELD_CLASSES  # noqa: F401  (re-exported)
from .corpus import SPLITS, DataError, describe_unseen_speakers, unseen_speaker_shares
from .table_files import show

KNOWN_CLASS_ORDERS = CLASS_ORDERS

# The six logical fields a table must provide, and the column names of iemocap_utterances.csv.
FIELDS = ("split", "dialogue", "order", "speaker", "label", "text")
DEFAULT_COLUMNS = {
    "split": "split",
    "dialogue": "dialogue_id",
    "order": "utterance_index",
    "speaker": "speaker",
    "label": "emotion",
    "text": "text",
}
# The official MELD release (all columns it has; the reader needs the five mapped below).
MELD_ALL_COLUMNS = ("Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID",
                    "Utterance_ID", "Season", "Episode", "StartTime", "EndTime")
MELD_COLUMNS = {
    "dialogue": "Dialogue_ID",
    "order": "Utterance_ID",
    "speaker": "Speaker",
    "label": "Emotion",
    "text": "Utterance",
}
MELD_FILES = {"train": "train_sent_emo.csv", "valid": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}

SPLIT_ALIASES = {
    "train": "train", "training": "train", "trn": "train",
    "valid": "valid", "validation": "valid", "val": "valid", "dev": "valid", "development": "valid",
    "test": "test", "testing": "test", "tst": "test",
}
SPEAKER_MODES = ("dialogue", "corpus")
FORMATS = ("csv", "tsv", "jsonl")
SPLIT_PREFIX_MODES = ("auto", "always", "never")
UNLABELLED_SPLIT = "test"  # where the dialogues of an unlabelled table without split column go
ID_JOINER = "_"  # between the parts of a composite dialogue id
GROUP_JOINER = " & "  # between the names of a list-valued speaker cell
MAX_ORDER = 10 ** 18  # order values must lie strictly within +-MAX_ORDER


@dataclass
class TableDialogue:
    """One dialogue of a table, utterances sorted by their order value."""

    id: str
    split: str  # train / valid / test
    labels: list[int] | None  # index into Table.class_names; None when the table is unlabelled
    speakers: list[int]  # index into Table.speaker_names
    speaker_labels: list[str]  # the names as written in the table (list cells joined, see module notes)
    texts: list[str]
    orders: list[int]  # the order values as written (may have gaps)
    rows: list[int]  # 1-based data row of each utterance, for messages
    source: str  # the file the rows came from

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Table:
    """Dialogues parsed from one or more utterance tables (no features yet)."""

    name: str
    class_names: list[str]  # for an unlabelled table: the classes given, else empty
    speaker_names: list[str]
    speaker_mode: str
    dialogues: list[TableDialogue]  # train, then valid, then test; file order within a split
    sources: list[str]  # the files read
    source_sha256: dict[str, str] = field(default_factory=dict)  # file -> sha256 of its bytes
    notes: list[str] = field(default_factory=list)  # oddities worth telling a user, not errors
    # what the reader changed silently before: column names matched ignoring case, labels
    # lower-cased, where the corpus name came from; describe() prints it as one line
    normalised: list[str] = field(default_factory=list)
    labelled: bool = True  # False: every TableDialogue.labels is None (a table to predict on)
    # which validation split this is (safsd_glnet.data.validation): official-dev for the MELD
    # release, else read from the splits (cosmic-12, given or none)
    validation: dict[str, Any] = field(default_factory=lambda: {"kind": "unknown"})

    @property
    def splits(self) -> dict[str, list[str]]:
        """Split name -> dialogue ids, only for splits that have dialogues."""
        out: dict[str, list[str]] = {}
        for s in SPLITS:
            ids = [d.id for d in self.dialogues if d.split == s]
            if ids:
                out[s] = ids
        return out

    @property
    def texts(self) -> list[str]:
        """All sentences, dialogue-major in the order of :attr:`dialogues`."""
        return [t for d in self.dialogues for t in d.texts]

    def num_utterances(self, split: str | None = None) -> int:
        return sum(len(d) for d in self.dialogues if split is None or d.split == split)

    @property
    def source(self) -> str:
        return ", ".join(self.sources)


@dataclass
class _Record:
    """One parsed row, before grouping."""

    split: str
    dialogue: str
    order: int
    speaker: str
    label: str | None  # None in an unlabelled table
    text: str
    source: str
    row: int
    where: str  # "row 5 (line 6)" for CSV, "row 5 (line 5)" for JSON lines


# --------------------------------------------------------------------------------------------
# Text decoding and cleaning

# Typographic punctuation -> ASCII.
_PUNCT = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2012": "-", "\u2212": "-",
    "\u00a0": " ", "\u2009": " ", "\u200a": " ", "\u202f": " ", "\u200b": "",
    "\ufeff": "",
})
# Mojibake: UTF-8 bytes that were once decoded as Windows-1252 (or Latin-1), so that "’"
# (e2 80 99) reads "â€™" and "é" (c3 a9) reads "Ã©". Repaired per character run below.
_NON_ASCII_RUN = re.compile("[^\x00-\x7f]{2,}")
_C1 = re.compile("[\u0080-\u009f]")
_SPACES = re.compile(r"\s+")


def _char_byte(ch: str) -> int | None:
    """The single byte ``ch`` came from under Windows-1252 (or Latin-1), if any."""
    try:
        return ch.encode("cp1252")[0]
    except UnicodeEncodeError:
        return ord(ch) if ord(ch) < 256 else None


def _fix_run(match: re.Match) -> str:
    """Decode, inside a run of non-ASCII characters, every complete UTF-8 sequence their bytes
    spell; characters that do not form one (a real "é" or "“") are kept as they are."""
    run = match.group()
    raw = [_char_byte(c) for c in run]
    out = []
    i = 0
    while i < len(run):
        b = raw[i]
        width = 2 if b is not None and 0xC2 <= b <= 0xDF else 3 if b is not None and 0xE0 <= b <= 0xEF \
            else 4 if b is not None and 0xF0 <= b <= 0xF4 else 0
        seq = raw[i:i + width]
        if width and len(seq) == width and all(x is not None and 0x80 <= x <= 0xBF for x in seq[1:]):
            try:
                out.append(bytes(seq).decode("utf-8"))
                i += width
                continue
            except UnicodeDecodeError:
                pass
        out.append(run[i])
        i += 1
    return "".join(out)


def _repair_mojibake(text: str) -> str:
    return _NON_ASCII_RUN.sub(_fix_run, text)


def _c1_to_cp1252(match: re.Match) -> str:
    try:
        return bytes([ord(match.group())]).decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8d, 0x8f, 0x90, 0x9d are undefined in cp1252
        return ""


def clean_text(text: str) -> str:
    """Repair mojibake, ASCII-fy typographic punctuation and collapse whitespace.

    ``"He\u2019s"`` -> ``"He's"``, ``"He\u00e2\u20ac\u2122s"`` -> ``"He's"``,
    ``"He\\x92s"`` -> ``"He's"``, ``"Wait\u2026"`` -> ``"Wait..."``.
    """
    text = _repair_mojibake(text)
    text = _C1.sub(_c1_to_cp1252, text)
    text = text.translate(_PUNCT).replace("\u2026", "...")
    return _SPACES.sub(" ", text).strip()


# --------------------------------------------------------------------------------------------
# Reading rows

def _detect_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        fmt = {"json": "jsonl", "ndjson": "jsonl", "jsonlines": "jsonl"}.get(fmt, fmt)
        if fmt not in FORMATS:
            raise DataError(f"{path}: unknown table format {fmt!r} (expected one of {FORMATS})")
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix == ".tsv":
        return "tsv"
    return "csv"


def parse_delimiter(delimiter: str | None) -> str | None:
    """``"tab"`` / ``"\\t"`` -> TAB; any other single character as it is (not a quote or newline)."""
    if delimiter is None:
        return None
    d = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}.get(delimiter.lower(), delimiter)
    if len(d) != 1 or d in "\"\r\n" or d.isalnum():
        raise DataError(f"delimiter {delimiter!r}: expected one character such as ',', ';', '|' or 'tab'")
    return d


def _parts(columns: Mapping[str, Any], field_name: str) -> tuple[str, ...]:
    """The column name(s) of a field: a tuple, longer than one only for a composite dialogue id."""
    value = columns[field_name]
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _column_text(columns: Mapping[str, Any], field_name: str) -> str:
    """``'Emotion'`` or, for a composite dialogue id, ``'Season'+'Episode'``."""
    return "+".join(repr(c) for c in _parts(columns, field_name))


def _value(raw: Any) -> str:
    if raw is None:
        return ""
    if isinstance(raw, float) and raw.is_integer() and abs(raw) < 1e300:
        return str(int(raw))  # JSON 3.0 -> "3"
    return str(raw).strip()


class _Cells:
    """Typed, size-checked access to the cells of one row; every fault names file, row and column."""

    def __init__(self, path: Path, where: str, values: Mapping[str, Any]) -> None:
        self.path, self.where, self.values = path, where, values
        self.dialogue = ""  # filled once known, for messages

    def at(self) -> str:
        return f"{self.path}: {self.where}" + (f", dialogue {self.dialogue!r}" if self.dialogue else "")

    def scalar(self, column: str, what: str, text_cell: bool = False) -> str:
        """The cell as stripped text; at most MAX_TEXT_CHARS for the sentence, MAX_FIELD_CHARS else."""
        raw = self.values.get(column)
        if isinstance(raw, (list, dict)):
            kind = "array" if isinstance(raw, list) else "object"
            raise DataError(f"{self.at()}: column {column!r} ({what}) holds a JSON {kind}, expected one value")
        text = _value(raw)
        limit = tf.MAX_TEXT_CHARS if text_cell else tf.MAX_FIELD_CHARS
        if len(text) > limit:
            name = "MAX_TEXT_CHARS" if text_cell else "MAX_FIELD_CHARS"
            raise DataError(f"{self.at()}: column {column!r} ({what}) holds {len(text):,} characters, "
                            f"more than the limit of {limit:,} (table_files.{name})")
        self.no_nul(column, what, text)
        return text

    def no_nul(self, column: str, what: str, *texts: str) -> None:
        """Refuse a NUL character, however the cell spelled it (a JSON or list-literal escape)."""
        if any("\x00" in t for t in texts):
            raise DataError(f"{self.at()}: column {column!r} ({what}) holds a NUL character (written as an "
                            f"escape); a text table never holds one: remove it")

    def speaker(self, column: str) -> str:
        """The speaker name; a list of names (JSON array or a list written in the cell) is joined."""
        raw = self.values.get(column)
        if isinstance(raw, list):
            if not all(isinstance(x, str) for x in raw):
                raise DataError(f"{self.at()}: column {column!r} (speaker) holds a JSON array of "
                                f"non-strings {show(raw)}")
            if len(raw) > tf.MAX_NAMES or any(len(x) > tf.MAX_FIELD_CHARS for x in raw):
                raise DataError(f"{self.at()}: column {column!r} (speaker) holds a list over the limits "
                                f"({tf.MAX_NAMES} names of {tf.MAX_FIELD_CHARS} characters)")
            names: list[str] | None = list(raw)
            self.no_nul(column, "speaker", *raw)
        else:
            text = self.scalar(column, "speaker")
            try:
                names = tf.parse_name_list(text)
            except ValueError as e:
                raise DataError(f"{self.at()}: column {column!r} (speaker) holds {show(text)}, a malformed "
                                f"list of names: {e}") from None
            if names is None:
                return text
            self.no_nul(column, "speaker", *names)
        return GROUP_JOINER.join(sorted({n.strip() for n in names if n.strip()}))

    def order(self, column: str) -> int:
        raw = self.values.get(column)
        bad = isinstance(raw, (bool, list, dict)) or (isinstance(raw, float) and not raw.is_integer())
        text = "" if bad else _value(raw)
        if not bad and re.fullmatch(r"[+-]?[0-9]{1,19}", text):
            value = int(text)
            if abs(value) < MAX_ORDER:
                return value
        raise DataError(f"{self.at()}: column {column!r} (utterance order) holds {show(raw)}, expected an "
                        f"integer" + ("" if bad or len(text) < 19 else f" within +-10^18"))


_COLUMN_MATCH = "column name matched ignoring case: "  # entries read_table merges into one


def match_columns(path: Path, columns: Mapping[str, Any], header: Sequence[str],
                  normalised: list[str] | None = None) -> dict[str, Any]:
    """``columns`` with every name matched to ``header``: an exact name wins; otherwise the one
    header name equal to it ignoring letter case (``speaker`` reads ``Speaker``), recorded in
    ``normalised``. Two header names that both equal it ignoring case (``Speaker`` and
    ``SPEAKER``, no ``speaker``) are an error naming both; a name found nowhere stays as it is
    (the caller reports it missing)."""
    def one(name: str) -> str:
        if name in header:
            return name
        same = list(dict.fromkeys(h for h in header if h.lower() == name.lower()))
        if len(same) > 1:
            raise DataError(f"{path}: column {name!r} matches {same[0]!r} and {same[1]!r} ignoring letter case; "
                            f"name the one to read with --columns (e.g. --columns speaker={same[0]})")
        if same and normalised is not None:
            normalised.append(f"{_COLUMN_MATCH}{same[0]!r} as {name!r}")
        return same[0] if same else name

    out: dict[str, Any] = {}
    for f, value in columns.items():
        out[f] = tuple(one(c) for c in value) if isinstance(value, tuple) else one(value)
    return out


def _needed(columns: Mapping[str, Any], *, with_split: bool, with_label: bool) -> list[str]:
    cols = [*_parts(columns, "dialogue"), columns["order"], columns["speaker"], columns["text"]]
    if with_label:
        cols.insert(len(cols) - 1, columns["label"])
    if with_split:
        cols.insert(0, columns["split"])
    return list(dict.fromkeys(cols))


def _read_file(path: Path, columns: Mapping[str, Any], fmt: str | None, *, split: str | None,
               labelled: bool | None, fix_text: bool, delimiter: str | None, encoding: str | None,
               notes: list[str], id_parts: dict[str, tuple[tuple[str, ...], str]], empty: str = "table",
               normalised: list[str] | None = None) -> tuple[list[_Record], str, bool]:
    """(records, sha256 of the bytes, whether the file is labelled) of one table file.

    ``split`` fixes the split of every row (one file per split); otherwise the split column
    is read and normalised (absent in an unlabelled table: :data:`UNLABELLED_SPLIT`).
    ``id_parts`` records composite ids already made (joined id -> (parts, where)), so two
    different parts that join alike are caught across files.
    """
    fmt = _detect_format(path, fmt)
    raw = tf.read_bytes(path)
    sha = hashlib.sha256(raw).hexdigest()
    text, enc = tf.decode(raw, path, notes, encoding)
    del raw
    keep = [c for f in FIELDS for c in _parts(columns, f)]
    core = _needed(columns, with_split=split is None and labelled is True, with_label=labelled is True)
    read_as, hint = "", ""
    if fmt == "jsonl":
        if delimiter is not None:
            raise DataError(f"{path}: a delimiter was given, but the file is read as JSON lines")
        header, rows = tf.jsonl_rows(path, text, keep)
        if not rows:
            raise DataError(f"{path}: the {empty} is empty (no utterance rows)")
    else:
        used = delimiter or ("\t" if fmt == "tsv" else None)
        if used is None:
            used, _, hint = tf.sniff_delimiter(path, text, core)
        header, row_iter = tf.csv_rows(path, text, used, keep)
        read_as = f", read as {tf.delimiter_name(used)}-delimited {enc} text,"
        if used != {"csv": ",", "tsv": "\t"}[fmt] or enc not in ("UTF-8", "Windows-1252"):
            enc_note = "" if enc == "Windows-1252" else f"{enc} text, "  # that one has its own note
            notes.append(f"{path}: {enc_note}{tf.delimiter_name(used)}-delimited")
        if not header:
            raise DataError(f"{path}: the {empty} is empty (no utterance rows)")
        missing = [c for c in core if c.lower() not in {h.lower() for h in header}]
        if missing and not hint:
            hint = tf.other_delimiter_hint(path, text, core, used)
        if missing and enc == "Windows-1252":
            hint += "; the file is not UTF-8 and was read as Windows-1252: if the names look garbled, pass --encoding"
        rows = row_iter
    del text
    columns = match_columns(path, columns, header, normalised)
    file_labelled = columns["label"] in header if labelled is None else labelled
    with_split = split is None and (file_labelled or columns["split"] in header)
    needed = _needed(columns, with_split=with_split, with_label=file_labelled)
    missing = [c for c in needed if c not in header]
    if missing:
        if split is None and missing == [columns["split"]]:
            hint += "; or give the file's split: {'test': FILE} (--table test=FILE)"
        raise DataError(f"{path}: missing column(s) {missing} (the header{read_as} has "
                        f"{show(list(header), 400)}){hint}; map other names with columns=, "
                        f"e.g. --columns label=Emotion")
    relabelled: dict[str, str] = {}
    records = _parse_records(path, rows, columns, split=split,
                             default_split=None if with_split else UNLABELLED_SPLIT,
                             labelled=file_labelled, fix_text=fix_text, id_parts=id_parts, relabelled=relabelled)
    if relabelled and normalised is not None:
        shown = ", ".join(f"{k!r} -> {v!r}" for k, v in list(relabelled.items())[:4])
        more = f" and {len(relabelled) - 4} more" if len(relabelled) > 4 else ""
        normalised.append(f"labels lower-cased ({shown}{more})")
    if not records:
        raise DataError(f"{path}: the {empty} is empty (no utterance rows)")
    return records, sha, file_labelled


def _parse_records(path: Path, rows: Iterable[tuple[int, str, Mapping[str, Any]]], columns: Mapping[str, Any], *,
                   split: str | None, default_split: str | None, labelled: bool, fix_text: bool,
                   id_parts: dict[str, tuple[tuple[str, ...], str]],
                   relabelled: dict[str, str] | None = None) -> list[_Record]:
    """Turn each row into a :class:`_Record` (split, dialogue id, order, speaker, label, text)."""
    dialogue_cols = _parts(columns, "dialogue")
    records = []
    for n, where, values in rows:
        cells = _Cells(path, where, values)
        parts = tuple(cells.scalar(c, "dialogue id") for c in dialogue_cols)
        for c, p in zip(dialogue_cols, parts):
            if not p:
                what = "dialogue id" if len(parts) == 1 else "part of the dialogue id"
                raise DataError(f"{path}: {where}: column {c!r} ({what}) is empty")
        dialogue = ID_JOINER.join(parts)
        if len(parts) > 1:
            seen = id_parts.setdefault(dialogue, (parts, f"{where} of {path}"))
            if seen[0] != parts:
                raise DataError(f"{path}: {where}: columns {_column_text(columns, 'dialogue')} hold {list(parts)}, "
                                f"which joins to the id {dialogue!r} like {list(seen[0])} at {seen[1]}; "
                                f"ids from several columns must stay distinct")
        cells.dialogue = dialogue
        if split is not None:
            row_split = split
        elif default_split is not None:
            row_split = default_split
        else:
            raw_split = cells.scalar(columns["split"], "split")
            row_split = SPLIT_ALIASES.get(raw_split.lower())
            if row_split is None:
                raise DataError(f"{cells.at()}: column {columns['split']!r} "
                                f"holds {show(raw_split)}, expected train, valid (or dev) or test")
        order = cells.order(columns["order"])
        speaker = cells.speaker(columns["speaker"])
        if not speaker:
            raise DataError(f"{cells.at()}: column {columns['speaker']!r} (speaker) is empty")
        label = None
        if labelled:
            written = cells.scalar(columns["label"], "label")
            label = written.lower()
            if label != written and relabelled is not None:
                relabelled.setdefault(written, label)
            if not label:
                raise DataError(f"{cells.at()}: column {columns['label']!r} (label) is empty")
        text = cells.scalar(columns["text"], "text", text_cell=True)
        text = clean_text(text) if fix_text else text.strip()
        if not text:
            raise DataError(f"{cells.at()}: column {columns['text']!r} (text) is empty")
        records.append(_Record(row_split, dialogue, order, speaker, label, text, str(path), n, where))
    return records


# --------------------------------------------------------------------------------------------
# Grouping rows into dialogues

def _normalise_classes(class_names: Sequence[str] | str) -> list[str]:
    if isinstance(class_names, str):
        known = KNOWN_CLASS_ORDERS.get(class_names.strip().lower())
        class_names = list(known) if known else class_names.split(",")
    names = [str(c).strip().lower() for c in class_names]
    if not names or any(not c for c in names):
        raise DataError(f"class_names {list(class_names)!r}: empty class name")
    if len(set(names)) != len(names):
        raise DataError(f"class_names {names}: a class is listed twice")
    return names


def _class_names(records: Sequence[_Record], class_names: Sequence[str] | str | None,
                 columns: Mapping[str, str]) -> list[str]:
    found = {r.label for r in records}
    if class_names is None:
        for order in KNOWN_CLASS_ORDERS.values():
            if found == set(order):
                return list(order)
        return sorted(found)
    names = _normalise_classes(class_names)
    allowed = set(names)
    for r in records:
        if r.label not in allowed:
            raise DataError(f"{r.source}: {r.where}, dialogue {r.dialogue!r}: column {columns['label']!r} "
                            f"(label) holds {show(r.label)}, not one of the classes {names}")
    return names


def _known_names(names: Sequence[str]) -> str:
    names = list(names)
    return repr(names) if len(names) <= 20 else repr(names[:20])[:-1] + f", ... ({len(names)} names)]"


def closest_names(name: str, known: Sequence[str], n: int = 3) -> list[str]:
    """Up to ``n`` names of ``known`` that ``name`` most likely means, best first.

    The first rule that finds any, names compared in lower case: the same name in other letter
    case; names whose first word is ``name`` (``Monica`` -> ``Monica Geller``), then those that
    start with it; the close spellings of :func:`difflib.get_close_matches` (ratio >= 0.6, so
    ``Monika`` -> ``Monica``). An empty list when nothing is close.
    """
    import difflib

    key = name.strip().lower()
    lowered: dict[str, list[str]] = {}
    for k in known:
        lowered.setdefault(k.lower(), []).append(k)
    if key in lowered:
        return lowered[key][:n]
    found = [k for k in known if (k.lower().split() or [""])[0] == key]
    found += [k for k in known if k.lower().startswith(key) and k not in found]
    if not found:
        found = [k for m in difflib.get_close_matches(key, list(lowered), n=n, cutoff=0.6) for k in lowered[m]]
    return found[:n]


def unknown_speaker_hint(name: str, known: Sequence[str]) -> str:
    """The end of an unknown-speaker message: ``did you mean 'Monica Geller'? (the model knows 259
    names)``, or the known names themselves when none is close."""
    close = closest_names(name, known)
    if not close:
        return f"it knows {_known_names(known)}"
    return f"did you mean {' or '.join(repr(c) for c in close)}? (the model knows {len(known)} names)"


def _vocabulary(speaker_names: Sequence[str]) -> list[str]:
    if isinstance(speaker_names, str):
        raise DataError(f"speaker_names {speaker_names!r}: expected a list of names, not one string")
    names = [str(s).strip() for s in speaker_names]
    if not names or any(not s for s in names):
        raise DataError(f"speaker_names {list(speaker_names)!r}: empty speaker name")
    twice = sorted({s for s in names if names.count(s) > 1})
    if twice:
        raise DataError(f"speaker_names: {twice} listed twice; each name needs one index")
    return names


def _assemble(records: Sequence[_Record], *, name: str, sources: Sequence[str], columns: Mapping[str, Any],
              class_names, speaker_mode: str, notes: list[str],
              source_sha256: dict[str, str], labelled: bool = True,
              speaker_names: Sequence[str] | None = None) -> Table:
    if speaker_mode not in SPEAKER_MODES:
        raise DataError(f"speaker_mode={speaker_mode!r}, expected one of {SPEAKER_MODES}")
    if not records:
        raise DataError(f"{', '.join(sources)}: the table has no utterances")
    if labelled:
        classes = _class_names(records, class_names, columns)
    else:
        classes = [] if class_names is None else _normalise_classes(class_names)
    class_index = {c: i for i, c in enumerate(classes)}
    vocabulary = None if speaker_names is None else _vocabulary(speaker_names)
    if vocabulary is not None and speaker_mode == "corpus":
        known = set(vocabulary)
        for r in records:  # file order: the first unknown name is the one reported
            if r.speaker not in known:
                raise DataError(f"{r.source}: {r.where}, dialogue {r.dialogue!r}: column {columns['speaker']!r}: "
                                f"speaker {show(r.speaker)} is unknown to the model; "
                                f"{unknown_speaker_hint(r.speaker, vocabulary)}")

    groups: dict[str, list[_Record]] = {}
    for r in records:
        group = groups.setdefault(r.dialogue, [])
        if group and group[0].split != r.split:
            first = group[0]
            raise DataError(f"{r.source}: {r.where}, dialogue {r.dialogue!r}: column {columns['split']!r} is "
                            f"{r.split!r}, but {first.where} of {first.source} puts the dialogue in "
                            f"{first.split!r}; a dialogue must lie in one split (if the ids restart in "
                            f"every split, pass split_prefix='always', --split-prefix always)")
        group.append(r)

    gaps = 0
    dialogues = []
    for key, group in groups.items():
        group = sorted(group, key=lambda r: (r.order, r.row))
        for a, b in zip(group, group[1:]):
            if a.order == b.order:
                raise DataError(f"{b.source}: {b.where}, dialogue {key!r}: column {columns['order']!r} (order) value {b.order} "
                                f"is used twice (also at {a.where}); each utterance needs its own position")
        orders = [r.order for r in group]
        if orders != list(range(orders[0], orders[0] + len(orders))):
            gaps += 1
        dialogues.append(TableDialogue(
            id=key, split=group[0].split,
            labels=[class_index[r.label] for r in group] if labelled else None,
            speakers=[], speaker_labels=[r.speaker for r in group],
            texts=[r.text for r in group], orders=orders, rows=[r.row for r in group],
            source=group[0].source,
        ))
    lowest = min(d.orders[0] for d in dialogues)
    late = sum(1 for d in dialogues if d.orders[0] != lowest)
    if gaps or late:
        notes.append(f"{gaps} dialogue(s) have gaps in their utterance order values and {late} start "
                     f"above {lowest}; positions are the ranks after sorting")

    if speaker_mode == "corpus":
        speaker_names = vocabulary or sorted({s for d in dialogues for s in d.speaker_labels})
        index = {s: i for i, s in enumerate(speaker_names)}
        for d in dialogues:
            d.speakers = [index[s] for s in d.speaker_labels]
    else:
        most = 0
        for d in dialogues:
            local: dict[str, int] = {}
            d.speakers = [local.setdefault(s, len(local)) for s in d.speaker_labels]
            if vocabulary is not None and len(local) > len(vocabulary):
                row = d.rows[d.speakers.index(len(vocabulary))]
                raise DataError(f"{d.source}: row {row}, dialogue {d.id!r}: column {columns['speaker']!r}: "
                                f"speaker {show(d.speaker_labels[d.speakers.index(len(vocabulary))])} is the "
                                f"dialogue's speaker number {len(vocabulary) + 1}; the model knows "
                                f"{len(vocabulary)} per-dialogue speakers {_known_names(vocabulary)}")
            most = max(most, len(local))
        speaker_names = vocabulary or [f"speaker{i}" for i in range(most)]

    rank = {s: i for i, s in enumerate(SPLITS)}
    dialogues.sort(key=lambda d: rank[d.split])  # stable: file order within a split
    return Table(name=name, class_names=classes, speaker_names=list(speaker_names),
                 speaker_mode=speaker_mode, dialogues=dialogues, sources=list(sources),
                 source_sha256=source_sha256, notes=notes, labelled=labelled,
                 validation=validation.of_table_splits([d.id for d in dialogues if d.split == "valid"]))


# --------------------------------------------------------------------------------------------
# Public readers

_FIELD_ALIASES = {"dialogue_id": "dialogue", "utterance_index": "order", "utterance": "text",
                  "emotion": "label", "position": "order"}


def parse_columns(spec: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Complete a column mapping with :data:`DEFAULT_COLUMNS`.

    Accepts a dict or a string ``"split=Split,dialogue=Dialogue_ID,label=Emotion"``; fields
    not named keep their defaults. Unknown field names are an error. The dialogue id may
    combine several columns: a list in a dict (``{"dialogue": ["Season", "Episode"]}``) or
    ``+`` in the string (``"dialogue=Season+Episode+Scene"``); the value is then a tuple.
    Column names with ``,``, ``+`` or ``=`` in them are given as a JSON object instead
    (``'{"dialogue": ["Season", "Scene+Take"], "text": "Line, as said"}'``).
    """
    if spec is None:
        given: dict[str, Any] = {}
    elif isinstance(spec, str) and spec.lstrip().startswith("{"):
        try:
            given = json.loads(spec)
        except (ValueError, RecursionError) as e:
            raise DataError(f"columns {show(spec)}: not a valid JSON object ({show(str(e))})") from None
        if not isinstance(given, dict):
            raise DataError(f"columns {show(spec)}: expected a JSON object of field: column")
    elif isinstance(spec, str):
        given = {}
        for part in (p for p in spec.split(",") if p.strip()):
            if "=" not in part:
                raise DataError(f"columns {spec!r}: {part!r} is not field=column "
                                f"(fields: {', '.join(FIELDS)})")
            k, v = part.split("=", 1)
            v = v.strip()
            given[k.strip()] = [p.strip() for p in v.split("+")] if "+" in v else v
    else:
        given = dict(spec)
    columns: dict[str, Any] = dict(DEFAULT_COLUMNS)
    for k, v in given.items():
        k = _FIELD_ALIASES.get(k, k)
        if k not in FIELDS:
            raise DataError(f"columns: unknown field {k!r} (fields: {', '.join(FIELDS)})")
        if isinstance(v, (list, tuple)):
            if k != "dialogue":
                raise DataError(f"columns: field {k!r} is mapped to several columns {list(v)}; only the "
                                f"dialogue id may combine columns (a column name holding '+' is given "
                                f"in the JSON form, see parse_columns)")
            if not v or any(not isinstance(c, str) or not c.strip() for c in v):
                raise DataError(f"columns: field 'dialogue' is mapped to {list(v)!r}, with an empty column name")
            if len(set(v)) != len(v):
                raise DataError(f"columns: field 'dialogue' names a column twice in {list(v)}")
            v = tuple(c.strip() for c in v) if len(v) > 1 else v[0].strip()
        elif not isinstance(v, str):
            raise DataError(f"columns: field {k!r} is mapped to {show(v)}, expected a column name")
        if not v:
            raise DataError(f"columns: field {k!r} is mapped to an empty column name")
        columns[k] = v
    return columns


def _split_files(path: Mapping[str, Any]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for key, p in path.items():
        split = SPLIT_ALIASES.get(str(key).strip().lower())
        if split is None:
            raise DataError(f"table files: {key!r} is not a split (train, valid or dev, test)")
        if split in files:
            raise DataError(f"table files: split {split!r} is given twice ({files[split]} and {p})")
        same = [s for s, q in files.items() if Path(q).resolve() == Path(p).resolve()]
        if same:
            raise DataError(f"table files: {p} is given for {same[0]!r} and {split!r}; a dialogue must lie in one split")
        files[split] = Path(p)
    if not files:
        raise DataError("table files: no file given")
    return files


def _default_name(paths: Sequence[Path]) -> str:
    if len(paths) == 1:
        return paths[0].stem
    parents = {p.resolve().parent for p in paths}
    if len(parents) == 1 and next(iter(parents)).name:
        return next(iter(parents)).name
    return "+".join(p.stem for p in paths)


def _name_source(paths: Sequence[Path]) -> str:
    """Where :func:`_default_name` took the name from, in words."""
    if len(paths) == 1:
        return "file name"
    parents = {p.resolve().parent for p in paths}
    return "folder's name" if len(parents) == 1 and next(iter(parents)).name else "file names"


def _read_files(files: Mapping[str | None, Path], columns: Mapping[str, Any], fmt: str | None, *,
                split_prefix: str, labelled: bool | None, fix_text: bool, delimiter: str | None,
                encoding: str | None, notes: list[str], empty: str = "table",
                normalised: list[str] | None = None) -> tuple[list[_Record], dict[str, str], bool]:
    """Records of every file (key None: the split column says; else the key is the split),
    ids prefixed as ``split_prefix`` says; (records, sha256 per file, labelled)."""
    if split_prefix not in SPLIT_PREFIX_MODES:
        raise DataError(f"split_prefix={split_prefix!r}, expected one of {SPLIT_PREFIX_MODES}")
    delimiter = parse_delimiter(delimiter)
    per_file: list[tuple[Path, str | None, list[_Record]]] = []
    hashes: dict[str, str] = {}
    kinds: dict[bool, Path] = {}
    id_parts: dict[str, tuple[tuple[str, ...], str]] = {}
    total = 0
    for split, path in files.items():
        records, sha, file_labelled = _read_file(
            path, columns, fmt, split=split, labelled=labelled, fix_text=fix_text, delimiter=delimiter,
            encoding=encoding, notes=notes, id_parts=id_parts,
            empty=empty.format(split=split) if split else empty.format(split=""), normalised=normalised)
        kinds.setdefault(file_labelled, path)
        if len(kinds) > 1:
            raise DataError(f"{kinds[False]}: has no label column {columns['label']!r} but {kinds[True]} has; "
                            f"read all files labelled or all unlabelled (labelled=True / False)")
        total += len(records)
        if total > tf.MAX_TABLE_ROWS:
            raise DataError(f"{path}: the tables hold more than {tf.MAX_TABLE_ROWS:,} rows (table_files.MAX_TABLE_ROWS)")
        per_file.append((path, split, records))
        hashes[str(path)] = sha
    prefix = split_prefix == "always"
    if split_prefix == "auto" and len(per_file) > 1:
        owner: dict[str, Path] = {}
        for path, _, records in per_file:
            for key in dict.fromkeys(r.dialogue for r in records):
                other = owner.setdefault(key, path)
                if other != path and not prefix:
                    prefix = True
                    notes.append(f"dialogue ids repeat across the split files ({key!r} is in {other.name} "
                                 f"and {path.name}); every id is prefixed with its split "
                                 f"(train_{key}, valid_{key}, ...)")
    records = [r for _, _, rs in per_file for r in rs]
    if prefix:
        for r in records:
            r.dialogue = f"{r.split}_{r.dialogue}"
    return records, hashes, next(iter(kinds))


def read_table(path: str | Path | Mapping[str, str | Path], columns: str | Mapping[str, Any] | None = None,
               fmt: str | None = None, *, class_names: Sequence[str] | str | None = None,
               speaker_mode: str = "corpus", fix_text: bool = True, name: str | None = None,
               labelled: bool | None = True, speaker_names: Sequence[str] | None = None,
               delimiter: str | None = None, encoding: str | None = None,
               split_prefix: str = "auto") -> Table:
    """Read a CSV / TSV / JSON-lines utterance table, or one such file per split.

    ``path`` is one file with a split column, or a mapping split -> file
    (``{"train": "a.csv", "dev": "b.csv", "test": "c.csv"}``, any subset) whose files need no
    split column; ids repeated across those files get their split as prefix (``split_prefix``,
    see the module notes). ``columns`` maps the fields split, dialogue, order, speaker, label,
    text to column names (see :func:`parse_columns`; defaults fit ``iemocap_utterances.csv``;
    the dialogue id may combine several columns). ``fmt`` is ``"csv"``, ``"tsv"`` or
    ``"jsonl"``; by default it follows the file suffix (``.jsonl`` / ``.json`` / ``.ndjson``
    -> JSON lines, ``.tsv`` -> TSV, anything else CSV with the delimiter detected among ``,``
    ``;`` TAB ``|`` unless ``delimiter`` is given). ``encoding`` overrides the detected
    encoding (see :mod:`~safsd_glnet.data.table_files`). Split names are normalised (``dev``
    / ``val`` / ``validation`` -> ``valid``). ``class_names`` fixes the label order (a list,
    a comma-separated string, or ``"iemocap"`` / ``"meld"``). ``labelled=False`` reads no
    labels (``None``: labels if the label column exists); ``speaker_names`` fixes the speaker
    vocabulary. ``name`` defaults to the file's stem (several files: their folder's name).
    """
    columns = parse_columns(columns)
    if isinstance(path, Mapping):
        files: dict[str | None, Path] = dict(_split_files(path))
    else:
        files = {None: Path(path)}
    notes: list[str] = []
    normalised: list[str] = []
    records, hashes, is_labelled = _read_files(
        files, columns, fmt, split_prefix=split_prefix, labelled=labelled, fix_text=fix_text,
        delimiter=delimiter, encoding=encoding, notes=notes, normalised=normalised)
    if name is None:
        name = _default_name(list(files.values()))
        normalised.append(f"corpus name {name!r} from the {_name_source(list(files.values()))} (--name sets another)")
    table = _assemble(records, name=name, sources=list(hashes),
                      columns=columns, class_names=class_names, speaker_mode=speaker_mode, notes=notes,
                      source_sha256=hashes, labelled=is_labelled, speaker_names=speaker_names)
    matched = list(dict.fromkeys(n[len(_COLUMN_MATCH):] for n in normalised if n.startswith(_COLUMN_MATCH)))
    rest = list(dict.fromkeys(n for n in normalised if not n.startswith(_COLUMN_MATCH)))
    # one file per split repeats a column's match: one entry for all of them
    table.normalised = ([f"column names matched ignoring case ({', '.join(matched)})"] if matched else []) + rest
    return table


def column_values(table: Table, column: str, fmt: str | None = None, *, delimiter: str | None = None,
                  encoding: str | None = None) -> dict[tuple[str, int], str]:
    """(source file, data row) -> the text of ``column``, for every row of ``table``'s files.

    A :class:`Table` keeps only its six fields; a caller that needs one more column (the audio
    file of each utterance, say) reads it here, through the same decoding and row parser, so the
    row numbers are those of ``TableDialogue.rows``. Give the ``fmt``, ``delimiter`` and
    ``encoding`` the table was read with. A file that changed since it was read is an error, not
    a silent misalignment."""
    delimiter = parse_delimiter(delimiter)
    out: dict[tuple[str, int], str] = {}
    for source in table.sources:
        path = Path(source)
        raw = tf.read_bytes(path)
        expected = table.source_sha256.get(source)
        if expected is not None and hashlib.sha256(raw).hexdigest() != expected:
            raise DataError(f"{path}: the table file changed since it was read; read it again")
        text, _ = tf.decode(raw, path, [], encoding)
        del raw
        kind = _detect_format(path, fmt)
        if kind == "jsonl":
            header, rows = tf.jsonl_rows(path, text, [column])
        else:
            used = delimiter or ("\t" if kind == "tsv" else tf.sniff_delimiter(path, text, [column])[0])
            header, rows = tf.csv_rows(path, text, used, [column])
        if column not in header:
            raise DataError(f"{path}: no column {column!r} (the file has {show(list(header), 400)})")
        for n, _where, values in rows:
            out[(source, n)] = _value(values.get(column))
    return out


def meld_paths(folder: str | Path) -> tuple[Path, Path, Path]:
    """The train, dev and test CSVs of the MELD release inside ``folder``."""
    folder = Path(folder)
    paths = tuple(folder / MELD_FILES[s] for s in SPLITS)
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{folder}: MELD file(s) {missing} not found (expected "
                        f"{', '.join(MELD_FILES.values())})")
    return paths  # type: ignore[return-value]


def read_meld_csvs(train_csv: str | Path, dev_csv: str | Path, test_csv: str | Path, *,
                   speaker_mode: str = "dialogue", fix_text: bool = True,
                   class_names: Sequence[str] | str | None = MELD_CLASSES, name: str = "meld") -> Table:
    """Read the official MELD text release (one CSV per split; dev becomes ``valid``).

    Dialogue ids are ``f"{split}_{Dialogue_ID}"`` (MELD restarts its numbering in every split).
    Classes are fixed to :data:`MELD_CLASSES`; speakers default to per-dialogue indices (see
    the module notes). Only the columns Utterance, Speaker, Emotion, Dialogue_ID and
    Utterance_ID are read; the others (Sentiment, Season, times, ...) are ignored.
    """
    columns = {**MELD_COLUMNS, "split": "split"}
    files = {s: Path(p) for s, p in zip(SPLITS, (train_csv, dev_csv, test_csv))}
    notes: list[str] = []
    records, hashes, _ = _read_files(files, columns, "csv", split_prefix="always", labelled=True,
                                     fix_text=fix_text, delimiter=None, encoding=None, notes=notes,
                                     empty="MELD {split} table")
    table = _assemble(records, name=name, sources=list(hashes), columns=columns,
                      class_names=class_names,
                      speaker_mode=speaker_mode, notes=notes, source_sha256=hashes)
    table.validation = validation.record("official-dev")  # dev_sent_emo.csv is MELD's official dev split
    return table


def read_meld_dir(folder: str | Path, **kwargs: Any) -> Table:
    """:func:`read_meld_csvs` on the three files of ``folder`` (see :func:`meld_paths`)."""
    return read_meld_csvs(*meld_paths(folder), **kwargs)


# --------------------------------------------------------------------------------------------
# Dialogues written out, for prediction: "Speaker: sentence" text and (speaker, sentence) pairs

TEXT_COLUMNS = {**DEFAULT_COLUMNS, "speaker": "speaker", "text": "sentence"}  # names used in messages


def _pairs_table(dialogues: Sequence[tuple[str, Sequence[tuple[str, str, int, str]]]], *, source: str, name: str,
                 speaker_mode: str, speaker_names: Sequence[str] | None, fix_text: bool,
                 class_names: Sequence[str] | str | None, sha: str | None) -> Table:
    """A labelled=False :class:`Table` from dialogues given as (id, [(speaker, sentence, row,
    "line 3"), ...]); every dialogue lands in :data:`UNLABELLED_SPLIT`."""
    records = []
    for did, utterances in dialogues:
        for position, (speaker, sentence, row, where) in enumerate(utterances):
            speaker = speaker.strip()
            text = clean_text(sentence) if fix_text else sentence.strip()
            if not speaker:
                raise DataError(f"{source}: {where}, dialogue {did!r}: the speaker is empty")
            if not text:
                raise DataError(f"{source}: {where}, dialogue {did!r}: the sentence is empty")
            if "\x00" in speaker or "\x00" in text:
                raise DataError(f"{source}: {where}, dialogue {did!r}: a NUL character in the speaker or the "
                                f"sentence; text never holds one: remove it")
            if len(speaker) > tf.MAX_FIELD_CHARS or len(text) > tf.MAX_TEXT_CHARS:
                raise DataError(f"{source}: {where}, dialogue {did!r}: a speaker name or sentence longer than "
                                f"{tf.MAX_FIELD_CHARS:,} / {tf.MAX_TEXT_CHARS:,} characters (table_files limits)")
            records.append(_Record(UNLABELLED_SPLIT, did, position, speaker, None, text, source, row, where))
    if not records:
        raise DataError(f"{source}: no utterances (expected 'Speaker: sentence' lines)")
    return _assemble(records, name=name, sources=[source], columns=TEXT_COLUMNS, class_names=class_names,
                     speaker_mode=speaker_mode, notes=[], source_sha256={source: sha} if sha else {},
                     labelled=False, speaker_names=speaker_names)


def read_dialogue_text(path: str | Path, *, speaker_mode: str = "corpus", speaker_names: Sequence[str] | None = None,
                       fix_text: bool = True, class_names: Sequence[str] | str | None = None,
                       encoding: str | None = None, name: str | None = None) -> Table:
    """Dialogues written as plain text: one ``Speaker: sentence`` line per utterance, a blank line
    between dialogues, ``#`` lines ignored. The dialogues are ``dialogue1``, ``dialogue2``, ...
    unless a comment line ``# dialogue: NAME`` right before one names it.

    The result is an unlabelled :class:`Table` (every dialogue in :data:`UNLABELLED_SPLIT`);
    ``speaker_mode`` and ``speaker_names`` map the names as :func:`read_table` does (a name the
    model does not know is an error naming the line). The file is read with the table reader's
    limits and encoding detection.
    """
    path = Path(path)
    raw = tf.read_bytes(path)
    sha = hashlib.sha256(raw).hexdigest()
    text, _ = tf.decode(raw, path, [], encoding)
    del raw
    dialogues: list[tuple[str, list[tuple[str, str, int, str]]]] = []
    current: list[tuple[str, str, int, str]] = []
    named: str | None = None
    names: set[str] = set()  # of the dialogues so far: each new name is one look-up, not a scan
    utterances = 0

    def close() -> None:
        nonlocal current, named
        if current:
            did = named or f"dialogue{len(dialogues) + 1}"
            if did in names:
                raise DataError(f"{path}: dialogue name {did!r} is used twice")
            names.add(did)
            dialogues.append((did, current))
        current, named = [], None

    for line_no, line in enumerate(tf.split_lf(text), start=1):  # one line at a time, no list of them
        if len(line) > tf.MAX_LINE_CHARS:  # measured before anything copies or cleans it
            raise DataError(f"{path}: line {line_no}: {len(line):,} characters, more than a 'Speaker: sentence' "
                            f"line may hold ({tf.MAX_LINE_CHARS:,}: a name of table_files.MAX_FIELD_CHARS and "
                            f"a sentence of MAX_TEXT_CHARS)")
        stripped = line.strip()
        if not stripped:
            close()
            continue
        if stripped.startswith("#"):
            label, sep, value = stripped[1:].partition(":")
            if sep and label.strip().lower() == "dialogue":
                close()
                named = value.strip() or None
            continue
        speaker, sep, sentence = stripped.partition(":")
        if not sep or not speaker.strip() or not sentence.strip():
            raise DataError(f"{path}: line {line_no}: expected 'Speaker: sentence', got {show(stripped)}")
        current.append((speaker, sentence, line_no, f"line {line_no}"))
        utterances += 1
        if utterances > tf.MAX_TABLE_ROWS:
            raise DataError(f"{path}: more than {tf.MAX_TABLE_ROWS:,} utterances (table_files.MAX_TABLE_ROWS)")
    close()
    return _pairs_table(dialogues, source=str(path), name=name or path.stem, speaker_mode=speaker_mode,
                        speaker_names=speaker_names, fix_text=fix_text, class_names=class_names, sha=sha)


def table_from_pairs(dialogues: Sequence[Sequence[tuple[str, str]]] | Mapping[str, Sequence[tuple[str, str]]], *,
                     speaker_mode: str = "corpus", speaker_names: Sequence[str] | None = None,
                     fix_text: bool = True, class_names: Sequence[str] | str | None = None,
                     name: str = "dialogues") -> Table:
    """An unlabelled :class:`Table` from dialogues given in Python: a list of dialogues (or a
    dict id -> dialogue), each a list of ``(speaker, sentence)`` pairs in order."""
    items = dialogues.items() if isinstance(dialogues, Mapping) else \
        ((f"dialogue{k + 1}", d) for k, d in enumerate(dialogues))
    prepared = []
    for did, pairs in items:
        rows = []
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise DataError(f"<python>: dialogue {did!r}, utterance {i}: expected a (speaker, sentence) "
                                f"pair of strings, got {show(pair)}")
            rows.append((pair[0], pair[1], i + 1, f"utterance {i}"))
        prepared.append((str(did), rows))
    return _pairs_table(prepared, source="<python>", name=name, speaker_mode=speaker_mode,
                        speaker_names=speaker_names, fix_text=fix_text, class_names=class_names, sha=None)


def describe(table: Table) -> str:
    """A few lines on what was read, for logs and the CLI."""
    classes = (f"{len(table.class_names)} classes {table.class_names}" if table.labelled
               else "unlabelled")
    lines = [f"{table.name}: {len(table.dialogues)} dialogues, {table.num_utterances()} utterances, "
             f"{classes}, {len(table.speaker_names)} speakers ({table.speaker_mode} mode)"]
    for s, ids in table.splits.items():
        lines.append(f"  {s}: {len(ids)} dialogues, {table.num_utterances(s)} utterances")
    if table.normalised:
        lines.append(f"  normalised: {'; '.join(table.normalised)}")
    unseen = describe_unseen_speakers(table_unseen_speakers(table))
    if unseen:
        lines.append(f"  {unseen}")
    lines += [f"  note: {n}" for n in table.notes]
    return "\n".join(lines)


def table_unseen_speakers(table: Table) -> dict[str, float]:
    """{split: share of its utterances whose speaker index never occurs in train}
    (:func:`~safsd_glnet.data.corpus.unseen_speaker_shares`); depends on ``speaker_mode``."""
    by_split: dict[str, list[list[int]]] = {}
    for s in SPLITS:
        found = [d.speakers for d in table.dialogues if d.split == s]
        if found:
            by_split[s] = found
    return unseen_speaker_shares(by_split)


def iter_records(table: Table) -> Iterable[tuple[str, int, str, str | None, str]]:
    """(dialogue id, position, speaker name, label name or None when unlabelled, text) per utterance."""
    for d in table.dialogues:
        labels = d.labels if d.labels is not None else [None] * len(d)
        for i, (s, y, t) in enumerate(zip(d.speaker_labels, labels, d.texts)):
            yield d.id, i, s, (None if y is None else table.class_names[y]), t
