"""Utterance tables (CSV or JSON lines) parsed into dialogues, before any feature exists.

A conversation corpus often starts as a table with one row per utterance: which split, which
dialogue, the utterance's position in it, the speaker, the emotion label and the sentence.
This module turns such tables into a :class:`Table` (dialogues in utterance order, labels as
class indices, speakers as indices) which :func:`safsd_glnet.features.build_text_corpus`
then encodes into a :class:`~safsd_glnet.data.corpus.Corpus`. Nothing here needs torch or
an encoder, so tables can be checked quickly and cheaply.

Two readers:

* :func:`read_meld_csvs` reads the official MELD text release (``train_sent_emo.csv``,
  ``dev_sent_emo.csv``, ``test_sent_emo.csv``). MELD numbers its dialogues from 0 in every
  split, so the kit's dialogue ids are ``f"{split}_{Dialogue_ID}"`` (``train_12``,
  ``valid_0``, ``test_279``); the dev split is called ``valid`` as everywhere in the kit.
* :func:`read_table` reads any CSV, TSV or JSON-lines table through a column mapping; its
  defaults fit ``iemocap_utterances.csv`` (split, dialogue_id, utterance_index, speaker,
  emotion, text).

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
(1-based data row; for CSV also the file line), the dialogue and the column.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .corpus import SPLITS, DataError

MELD_CLASSES = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
IEMOCAP_CLASSES = ("happy", "sad", "neutral", "angry", "excited", "frustrated")
KNOWN_CLASS_ORDERS = {"iemocap": IEMOCAP_CLASSES, "meld": MELD_CLASSES}

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


@dataclass
class TableDialogue:
    """One dialogue of a table, utterances sorted by their order value."""

    id: str
    split: str  # train / valid / test
    labels: list[int]  # index into Table.class_names
    speakers: list[int]  # index into Table.speaker_names
    speaker_labels: list[str]  # the names as written in the table
    texts: list[str]
    orders: list[int]  # the order values as written (may have gaps)
    rows: list[int]  # 1-based data row of each utterance, for messages
    source: str  # the file the rows came from

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Table:
    """Dialogues parsed from one or more utterance tables (no features yet)."""

    name: str
    class_names: list[str]
    speaker_names: list[str]
    speaker_mode: str
    dialogues: list[TableDialogue]  # train, then valid, then test; file order within a split
    sources: list[str]  # the files read
    source_sha256: dict[str, str] = field(default_factory=dict)  # file -> sha256 of its bytes
    notes: list[str] = field(default_factory=list)  # oddities worth telling a user, not errors

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
    label: str
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


def _decode(raw: bytes, path: str, notes: list[str]) -> str:
    """UTF-8 (a BOM is dropped); a file that is not UTF-8 is read as Windows-1252."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        notes.append(f"{path}: not valid UTF-8 (byte {e.start}); read as Windows-1252")
        # Latin-1 never fails; mapping its C1 range through cp1252 then gives exactly the
        # Windows-1252 reading, minus the five byte values cp1252 leaves undefined.
        return _C1.sub(_c1_to_cp1252, raw.decode("latin-1"))


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


def _read_raw(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: table file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a table file") from None


def _iter_rows(path: Path, text: str, fmt: str) -> tuple[list[str], list[tuple[int, str, dict[str, Any]]]]:
    """(column names, [(row number, location text, {column: value})])."""
    if fmt == "jsonl":
        rows = []
        columns: dict[str, None] = {}
        n = 0
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue  # blank lines (a trailing newline, say) carry nothing
            n += 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: row {n} (line {line_no}) is not valid JSON: {e.msg}") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}: row {n} (line {line_no}) is a JSON {type(obj).__name__}, "
                                f"expected an object with one key per column")
            for k in obj:
                columns.setdefault(k, None)
            rows.append((n, f"row {n} (line {line_no})", obj))
        return list(columns), rows
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",")
    try:
        header = next(reader)
    except StopIteration:
        return [], []
    except csv.Error as e:
        raise DataError(f"{path}: line 1 (header) is not valid CSV: {e}") from None
    header = [h.strip() for h in header]
    rows = []
    n = 0
    start_line = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"{path}: row {n + 1} (line {start_line}) is not valid CSV: {e}") from None
        if not values or all(not v.strip() for v in values):
            start_line = reader.line_num + 1
            continue  # blank line
        n += 1
        where = f"row {n} (line {start_line})"
        if len(values) > len(header):
            raise DataError(f"{path}: {where} has {len(values)} fields, the header has {len(header)} "
                            f"(an unquoted comma in the text?)")
        rows.append((n, where, dict(zip(header, values))))
        start_line = reader.line_num + 1
    return header, rows


def _value(raw: Any) -> str:
    if raw is None:
        return ""
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))  # JSON 3.0 -> "3"
    return str(raw).strip()


def _parse_order(raw: Any, where: str, path: Path, dialogue: str, column: str) -> int:
    bad = isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer())
    text = _value(raw)
    if not bad:
        try:
            return int(text)
        except ValueError:
            pass
    raise DataError(f"{path}: {where}, dialogue {dialogue!r}: column {column!r} (utterance order) "
                    f"holds {raw!r}, expected an integer")


def _parse_records(path: Path, header: Sequence[str], rows, columns: Mapping[str, str], *,
                   split: str | None, fix_text: bool, dialogue_prefix: str = "") -> list[_Record]:
    """Check the columns and turn each row into a :class:`_Record`.

    ``split`` fixes the split of every row (MELD files are one split each); otherwise the
    ``split`` column is read and normalised.
    """
    needed = [f for f in FIELDS if not (f == "split" and split is not None)]
    missing = [columns[f] for f in needed if columns[f] not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} (the file has {list(header)}); "
                        f"map other names with columns=, e.g. --columns label=Emotion")
    records = []
    for n, where, values in rows:
        dialogue = _value(values.get(columns["dialogue"]))
        if not dialogue:
            raise DataError(f"{path}: {where}: column {columns['dialogue']!r} (dialogue id) is empty")
        dialogue = dialogue_prefix + dialogue
        if split is None:
            raw_split = _value(values.get(columns["split"]))
            row_split = SPLIT_ALIASES.get(raw_split.lower())
            if row_split is None:
                raise DataError(f"{path}: {where}, dialogue {dialogue!r}: column {columns['split']!r} "
                                f"holds {raw_split!r}, expected train, valid (or dev) or test")
        else:
            row_split = split
        order = _parse_order(values.get(columns["order"]), where, path, dialogue, columns["order"])
        speaker = _value(values.get(columns["speaker"]))
        if not speaker:
            raise DataError(f"{path}: {where}, dialogue {dialogue!r}: column {columns['speaker']!r} "
                            f"(speaker) is empty")
        label = _value(values.get(columns["label"])).lower()
        if not label:
            raise DataError(f"{path}: {where}, dialogue {dialogue!r}: column {columns['label']!r} "
                            f"(label) is empty")
        text = values.get(columns["text"])
        text = "" if text is None else str(text)
        text = clean_text(text) if fix_text else text.strip()
        if not text:
            raise DataError(f"{path}: {where}, dialogue {dialogue!r}: column {columns['text']!r} "
                            f"(text) is empty")
        records.append(_Record(row_split, dialogue, order, speaker, label, text, str(path), n, where))
    return records


# --------------------------------------------------------------------------------------------
# Grouping rows into dialogues

def _class_names(records: Sequence[_Record], class_names: Sequence[str] | str | None,
                 columns: Mapping[str, str]) -> list[str]:
    found = {r.label for r in records}
    if class_names is None:
        for order in KNOWN_CLASS_ORDERS.values():
            if found == set(order):
                return list(order)
        return sorted(found)
    if isinstance(class_names, str):
        known = KNOWN_CLASS_ORDERS.get(class_names.strip().lower())
        class_names = list(known) if known else class_names.split(",")
    names = [str(c).strip().lower() for c in class_names]
    if not names or any(not c for c in names):
        raise DataError(f"class_names {list(class_names)!r}: empty class name")
    if len(set(names)) != len(names):
        raise DataError(f"class_names {names}: a class is listed twice")
    allowed = set(names)
    for r in records:
        if r.label not in allowed:
            raise DataError(f"{r.source}: {r.where}, dialogue {r.dialogue!r}: column {columns['label']!r} "
                            f"(label) holds {r.label!r}, not one of the classes {names}")
    return names


def _assemble(records: Sequence[_Record], *, name: str, sources: Sequence[str], columns: Mapping[str, str],
              class_names, speaker_mode: str, notes: list[str],
              source_sha256: dict[str, str]) -> Table:
    if speaker_mode not in SPEAKER_MODES:
        raise DataError(f"speaker_mode={speaker_mode!r}, expected one of {SPEAKER_MODES}")
    if not records:
        raise DataError(f"{', '.join(sources)}: the table has no utterances")
    classes = _class_names(records, class_names, columns)
    class_index = {c: i for i, c in enumerate(classes)}

    groups: dict[str, list[_Record]] = {}
    for r in records:
        group = groups.setdefault(r.dialogue, [])
        if group and group[0].split != r.split:
            first = group[0]
            raise DataError(f"{r.source}: {r.where}, dialogue {r.dialogue!r}: column {columns['split']!r} is "
                            f"{r.split!r}, but {first.where} of {first.source} puts the dialogue in "
                            f"{first.split!r}; a dialogue must lie in one split")
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
            labels=[class_index[r.label] for r in group],
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
        speaker_names = sorted({s for d in dialogues for s in d.speaker_labels})
        index = {s: i for i, s in enumerate(speaker_names)}
        for d in dialogues:
            d.speakers = [index[s] for s in d.speaker_labels]
    else:
        most = 0
        for d in dialogues:
            local: dict[str, int] = {}
            d.speakers = [local.setdefault(s, len(local)) for s in d.speaker_labels]
            most = max(most, len(local))
        speaker_names = [f"speaker{i}" for i in range(most)]

    rank = {s: i for i, s in enumerate(SPLITS)}
    dialogues.sort(key=lambda d: rank[d.split])  # stable: file order within a split
    return Table(name=name, class_names=classes, speaker_names=speaker_names,
                 speaker_mode=speaker_mode, dialogues=dialogues, sources=list(sources),
                 source_sha256=source_sha256, notes=notes)


# --------------------------------------------------------------------------------------------
# Public readers

def parse_columns(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """Complete a column mapping with :data:`DEFAULT_COLUMNS`.

    Accepts a dict or a string ``"split=Split,dialogue=Dialogue_ID,label=Emotion"``; fields
    not named keep their defaults. Unknown field names are an error.
    """
    if spec is None:
        given: dict[str, str] = {}
    elif isinstance(spec, str):
        given = {}
        for part in (p for p in spec.split(",") if p.strip()):
            if "=" not in part:
                raise DataError(f"columns {spec!r}: {part!r} is not field=column "
                                f"(fields: {', '.join(FIELDS)})")
            k, v = part.split("=", 1)
            given[k.strip()] = v.strip()
    else:
        given = dict(spec)
    aliases = {"dialogue_id": "dialogue", "utterance_index": "order", "utterance": "text",
               "emotion": "label", "position": "order"}
    columns = dict(DEFAULT_COLUMNS)
    for k, v in given.items():
        k = aliases.get(k, k)
        if k not in FIELDS:
            raise DataError(f"columns: unknown field {k!r} (fields: {', '.join(FIELDS)})")
        if not v:
            raise DataError(f"columns: field {k!r} is mapped to an empty column name")
        columns[k] = v
    return columns


def read_table(path: str | Path, columns: str | Mapping[str, str] | None = None, fmt: str | None = None,
               *, class_names: Sequence[str] | str | None = None, speaker_mode: str = "corpus",
               fix_text: bool = True, name: str | None = None) -> Table:
    """Read a CSV / TSV / JSON-lines utterance table.

    ``columns`` maps the fields split, dialogue, order, speaker, label, text to column names
    (see :func:`parse_columns`; defaults fit ``iemocap_utterances.csv``). ``fmt`` is
    ``"csv"``, ``"tsv"`` or ``"jsonl"``; by default it follows the file suffix (``.jsonl`` /
    ``.json`` / ``.ndjson`` -> JSON lines, ``.tsv`` -> TSV, anything else CSV). Split names
    are normalised (``dev`` / ``val`` / ``validation`` -> ``valid``). ``class_names`` fixes
    the label order (a list, a comma-separated string, or ``"iemocap"`` / ``"meld"``).
    ``name`` defaults to the file's stem.
    """
    path = Path(path)
    columns = parse_columns(columns)
    fmt = _detect_format(path, fmt)
    raw = _read_raw(path)
    notes: list[str] = []
    text = _decode(raw, str(path), notes)
    header, rows = _iter_rows(path, text, fmt)
    if not rows:
        raise DataError(f"{path}: the table is empty (no utterance rows)")
    records = _parse_records(path, header, rows, columns, split=None, fix_text=fix_text)
    return _assemble(records, name=name or path.stem, sources=[str(path)], columns=columns,
                     class_names=class_names,
                     speaker_mode=speaker_mode, notes=notes,
                     source_sha256={str(path): hashlib.sha256(raw).hexdigest()})


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
    records: list[_Record] = []
    notes: list[str] = []
    hashes = {}
    sources = []
    for split, p in zip(SPLITS, (train_csv, dev_csv, test_csv)):
        p = Path(p)
        raw = _read_raw(p)
        header, rows = _iter_rows(p, _decode(raw, str(p), notes), "csv")
        if not rows:
            raise DataError(f"{p}: the MELD {split} table is empty (no utterance rows)")
        records += _parse_records(p, header, rows, {**MELD_COLUMNS, "split": ""}, split=split,
                                  fix_text=fix_text, dialogue_prefix=f"{split}_")
        hashes[str(p)] = hashlib.sha256(raw).hexdigest()
        sources.append(str(p))
    return _assemble(records, name=name, sources=sources, columns={**MELD_COLUMNS, "split": "split"},
                     class_names=class_names,
                     speaker_mode=speaker_mode, notes=notes, source_sha256=hashes)


def read_meld_dir(folder: str | Path, **kwargs: Any) -> Table:
    """:func:`read_meld_csvs` on the three files of ``folder`` (see :func:`meld_paths`)."""
    return read_meld_csvs(*meld_paths(folder), **kwargs)


def describe(table: Table) -> str:
    """A few lines on what was read, for logs and the CLI."""
    lines = [f"{table.name}: {len(table.dialogues)} dialogues, {table.num_utterances()} utterances, "
             f"{len(table.class_names)} classes {table.class_names}, "
             f"{len(table.speaker_names)} speakers ({table.speaker_mode} mode)"]
    for s, ids in table.splits.items():
        lines.append(f"  {s}: {len(ids)} dialogues, {table.num_utterances(s)} utterances")
    lines += [f"  note: {n}" for n in table.notes]
    return "\n".join(lines)


def iter_records(table: Table) -> Iterable[tuple[str, int, str, str, str]]:
    """(dialogue id, position, speaker name, label name, text) for every utterance."""
    for d in table.dialogues:
        for i, (s, y, t) in enumerate(zip(d.speaker_labels, d.labels, d.texts)):
            yield d.id, i, s, table.class_names[y], t
