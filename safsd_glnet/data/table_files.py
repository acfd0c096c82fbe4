"""The bytes of an utterance table turned into rows, safely: size, encoding, delimiter, cells.

:mod:`safsd_glnet.data.tables` gives rows their meaning (splits, dialogues, labels); this
module only gets rows out of a file that may come from anywhere: Excel on any locale, a
pandas export, a scraper, or a file that is not a table at all. Every fault is a one-line
:class:`~safsd_glnet.data.corpus.DataError` naming the file and the row or line; nothing
here runs code from the file (no ``eval``), recurses on its nesting, or allocates more than
a bounded multiple of the file's size.

Encoding (:func:`decode`), unless ``encoding=`` names one:

1. a byte-order mark: UTF-8, UTF-16 LE / BE (Excel's "Unicode Text" export is UTF-16 LE
   with a BOM and TAB-delimited), UTF-32 LE / BE;
2. no mark but NUL bytes in the first 4 KiB in the pattern of ASCII text stored in 16 or
   32 bits (every second byte zero, say): UTF-16 / UTF-32 without a BOM. Other NUL bytes
   mean the file is not text, and so do the signatures of zip (an ``.xlsx`` workbook),
   OLE2 (an ``.xls``), gzip, bzip2, xz and PDF files;
3. otherwise UTF-8, and where that fails Windows-1252 (what Excel writes for "CSV" on a
   Western-European Windows), with a note.

Delimiter (:func:`sniff_delimiter`): the table reader knows which columns it needs, so each
candidate of :data:`DELIMITERS` (``,`` ``;`` TAB ``|``) splits the header and the one under
which the header holds all of them wins; where two do, the one whose first rows have as
many fields as the header. ``csv.Sniffer`` is not used: it guesses from character
frequencies, and on the Excel-like samples of ``tests/data/test_tables.py`` it gave up on the
``;`` and ``|`` files (quoted cells holding the other delimiters) and chose the letter
``d`` for a file of one row.

Limits, to keep what a file can make the kit allocate proportional to a sane table:
:data:`MAX_TABLE_BYTES` per file, :data:`MAX_TABLE_ROWS` rows in all,
:data:`MAX_TEXT_CHARS` per sentence, :data:`MAX_FIELD_CHARS` per other cell,
:data:`MAX_JSON_DEPTH` nesting in a JSON line, :data:`MAX_NAMES` names in a list cell,
:data:`MAX_LINE_CHARS` per ``Speaker: sentence`` line of a plain-text dialogue file (measured
as the file is split into lines, before any cleaning). A cell may not hold a NUL character,
whether the file holds the byte or a cell spells it as an escape (``\u0000``).
"""
from __future__ import annotations

import codecs
import csv
import json
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

from .safe.foreign_files import regular_file
from .corpus import DataError

MAX_TABLE_BYTES = 512 * 1024 ** 2  # one file; the largest ERC corpora are a few MB of text
MAX_TABLE_ROWS = 2_000_000  # utterances over all files (MELD has 13,708, IEMOCAP 7,433)
MAX_TEXT_CHARS = 100_000  # one sentence; encoders read at most a few hundred tokens of it
MAX_FIELD_CHARS = 1_000  # a split, dialogue id, order, speaker or label cell
MAX_JSON_DEPTH = 32  # a row is depth 1, a list of speakers depth 2
MAX_NAMES = 64  # names in one list-valued speaker cell
MAX_LINE_CHARS = MAX_FIELD_CHARS + 2 + MAX_TEXT_CHARS  # a 'Speaker: sentence' line of a dialogue text file
DELIMITERS = (",", ";", "\t", "|")

_MAGIC = (
    (b"PK\x03\x04", "a zip archive (an .xlsx or .ods workbook?): save the sheet as 'CSV UTF-8' "
                    "or 'Unicode Text' and read that"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Excel .xls workbook: save the sheet as "
                                          "'CSV UTF-8' or 'Unicode Text' and read that"),
    (b"\x1f\x8b", "gzip-compressed: decompress it first"),
    (b"BZh", "bzip2-compressed: decompress it first"),
    (b"\xfd7zXZ\x00", "xz-compressed: decompress it first"),
    (b"%PDF", "a PDF document"),
)
_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32 LE"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32 BE"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16 LE"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16 BE"),
)
# Control characters that never occur in a text table (TAB, LF, CR and FF excepted).
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters, so a hostile cell keeps a message one short line."""
    text = repr(value)
    if len(text) <= limit:
        return text
    if isinstance(value, (list, tuple, dict)):
        return f"{text[:limit]}... ({len(value)} items)"
    return f"{text[:limit]}... ({len(value) if isinstance(value, (str, bytes)) else len(text)} characters)"


def delimiter_name(delimiter: str) -> str:
    return "TAB" if delimiter == "\t" else repr(delimiter)


# --------------------------------------------------------------------------------------------
# Bytes and encodings

def read_bytes(path: Path) -> bytes:
    """The file's bytes, refusing anything but a regular file (a missing file, a folder, a pipe,
    a device: :func:`~safsd_glnet.data.safe.foreign_files.regular_file`) and anything over :data:`MAX_TABLE_BYTES`."""
    size = regular_file(path, "table file").st_size
    if size > MAX_TABLE_BYTES:
        raise DataError(f"{path}: the file has {size:,} bytes, more than the limit of "
                        f"{MAX_TABLE_BYTES:,} for one table (table_files.MAX_TABLE_BYTES); split it "
                        f"into one file per split, or raise the limit if it really is a table")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_TABLE_BYTES + 1)  # a file growing while it is read stays bounded
    except OSError as e:
        raise DataError(f"{path}: cannot read the table file ({e.strerror})") from None
    if len(raw) > MAX_TABLE_BYTES:
        raise DataError(f"{path}: the file has more than {MAX_TABLE_BYTES:,} bytes, the limit "
                        f"for one table (table_files.MAX_TABLE_BYTES)")
    return raw


def _nul_pattern(raw: bytes) -> tuple[str, str] | None:
    """(codec, description) for UTF-16 / UTF-32 text without a BOM, judged from where the
    NUL bytes of the first 4 KiB fall (ASCII characters leave all other bytes zero)."""
    head = raw[:4096]
    for width, names in ((4, ("utf-32-le", "utf-32-be")), (2, ("utf-16-le", "utf-16-be"))):
        head_w = head[:len(head) - len(head) % width]
        n = len(head_w) // width
        if n < 2:
            continue
        zeros = [head_w[i::width].count(0) for i in range(width)]
        # LE: the first byte of a unit carries the ASCII code, the others are zero; BE mirrors.
        if zeros[0] <= 0.05 * n and all(z >= 0.5 * n for z in zeros[1:]):
            return names[0], names[0].upper().replace("-LE", " LE") + " (no byte-order mark)"
        if zeros[-1] <= 0.05 * n and all(z >= 0.5 * n for z in zeros[:-1]):
            return names[1], names[1].upper().replace("-BE", " BE") + " (no byte-order mark)"
    return None


def sniff_encoding(raw: bytes) -> tuple[str | None, str]:
    """(codec, description) of ``raw`` by BOM, NUL pattern or signature; codec None means
    "try UTF-8, then Windows-1252" and the description then says why it is not text, if so."""
    for bom, codec, what in _BOMS:
        if raw.startswith(bom):
            return codec, f"{what} text (byte-order mark)"
    for magic, what in _MAGIC:
        if raw.startswith(magic):
            return None, f"not a text table: it is {what}"
    if b"\x00" in raw[:4096]:
        found = _nul_pattern(raw)
        if found:
            return found[0], f"{found[1]} text"
    return None, ""


def _line_of(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def decode(raw: bytes, path: Path, notes: list[str], encoding: str | None = None) -> tuple[str, str]:
    """(text, the encoding in words) of a table file; the leading BOM, if any, is dropped.

    ``encoding`` (any Python codec name) overrides detection. Text holding NUL characters
    or many control characters is refused as not a table.
    """
    codec, found = sniff_encoding(raw)
    if found.startswith("not a text table"):
        raise DataError(f"{path}: {found}")
    if encoding is not None:
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise DataError(f"{path}: unknown encoding {encoding!r} (e.g. utf-8, utf-16, cp1252, latin-1)") from None
        try:
            text = raw.decode(name)
        except UnicodeDecodeError as e:
            hint = f"; it looks like {found}: pass --encoding {codec} or leave --encoding out" if codec else ""
            raise DataError(f"{path}: not valid {encoding} at byte {e.start} (line {_line_of(raw, e.start)})"
                            f"{hint}") from None
        what = name
    elif codec is not None:
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: looks like {found}, but byte {e.start} is not valid {codec} "
                            f"({e.reason}; a truncated or mixed file?); pass --encoding if it is "
                            f"another encoding") from None
        what = "UTF-8" if codec == "utf-8-sig" else found.replace(" text", "")
    else:
        try:
            text = raw.decode("utf-8")
            what = "UTF-8"
        except UnicodeDecodeError as e:
            notes.append(f"{path}: not valid UTF-8 (byte {e.start}); read as Windows-1252")
            # Latin-1 never fails; mapping its C1 range through cp1252 then gives exactly the
            # Windows-1252 reading, minus the five byte values cp1252 leaves undefined.
            text = re.sub("[\u0080-\u009f]", _c1_to_cp1252, raw.decode("latin-1"))
            what = "Windows-1252"
    if text.startswith("\ufeff"):
        text = text[1:]
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        count = text.count("\x00")
        if codec and encoding:
            hint = f"; it looks like {found}: leave --encoding out or pass --encoding {codec}"
        elif count > 8:
            hint = (f"; {count} in all: not a text table (a binary file, or UTF-16 / UTF-32 text "
                    f"that was not recognised: pass --encoding)")
        else:
            hint = "; a text table never holds one: remove it"
        raise DataError(f"{path}: line {line} holds a NUL character (read as {what}){hint}")
    head = text[:65536]
    controls = len(_CONTROL.findall(head))
    if controls > max(8, len(head) // 100):
        raise DataError(f"{path}: {controls} control characters in the first {len(head)} characters, "
                        f"read as {what}: not a text table (a binary file, or the wrong --encoding?)")
    return text, what


def _c1_to_cp1252(match: re.Match) -> str:
    try:
        return bytes([ord(match.group())]).decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8d, 0x8f, 0x90, 0x9d are undefined in cp1252
        return ""


# --------------------------------------------------------------------------------------------
# Delimited text

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


class _Lines:
    """The lines of ``text`` for ``csv.reader`` (split at CR, LF, CRLF only, as ``open(...,
    newline="")`` does; no copy of the text, where ``io.StringIO`` would hold one at 4 bytes a
    character), counting the characters handed out so far: the reader pulls one line at a
    time, so between records this is where the next one starts."""

    def __init__(self, text: str) -> None:
        self.matches = _LINE.finditer(text)
        self.pos = 0

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        line = next(self.matches).group()
        self.pos += len(line)
        return line


def _unclosed_quote(text: str, delimiter: str) -> bool:
    """Whether ``text`` (the last record onwards) ends inside a quoted field: the lenient
    reader then silently reads every later line into that one cell."""
    try:
        for _ in csv.reader(_Lines(text), delimiter=delimiter, strict=True):
            pass
    except csv.Error as e:
        return "unexpected end of data" in str(e)
    return False


def _csv_records(path: Path, text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(first line of the record, fields) for every record, blank ones included."""
    lines = _Lines(text)
    reader = csv.reader(lines, delimiter=delimiter)
    start = 1
    n = 0
    record_pos = 0
    values: list[str] = []
    while True:
        try:
            last, record_pos = values, lines.pos
            values = next(reader)
        except StopIteration:
            # Only a last record that spans lines can hide an unclosed quote.
            if start > 1 and any("\n" in v or "\r" in v for v in last) and \
                    _unclosed_quote(text[last_pos:], delimiter):
                raise DataError(f"{path}: row {n} (line {last_start}): a quote opened in this row is "
                                f"never closed, so every later line was read into one cell; close the "
                                f"quote, or double it (\"\") where it is part of the text") from None
            return
        except csv.Error as e:
            what = "line 1 (header)" if start == 1 else f"row {n + 1} (line {start})"
            hint = " (a cell that long usually means an unclosed quote)" if "field larger" in str(e) else ""
            raise DataError(f"{path}: {what} is not valid CSV: {e}{hint}") from None
        yield start, values
        if start > 1 and values and any(v.strip() for v in values):
            n += 1
        last_start, last_pos = start, record_pos
        start = reader.line_num + 1


def _header(path: Path, text: str, delimiter: str) -> list[str]:
    for _, values in _csv_records(path, text, delimiter):
        return [h.strip() for h in values]
    return []


def _fits(path: Path, text: str, delimiter: str, width: int, rows: int = 50) -> int:
    """How many of the first ``rows`` data records have exactly ``width`` fields."""
    good = 0
    try:
        records = _csv_records(path, text, delimiter)
        next(records, None)
        for i, (_, values) in enumerate(records):
            if i >= rows:
                break
            good += len(values) == width
    except DataError:
        pass
    return good


def sniff_delimiter(path: Path, text: str, needed: Sequence[str]) -> tuple[str, list[str], str]:
    """(delimiter, header, hint) for a delimited table that must hold the columns ``needed``.

    The header is split with every candidate of :data:`DELIMITERS`; the one that yields all
    of ``needed`` wins (ties: the one under which more of the first 50 rows have as many
    fields as the header; a remaining tie is an error). When none does, the candidate that
    finds the most is returned, with a ``hint`` for the caller's missing-column message.
    """
    headers: dict[str, list[str]] = {}
    errors: dict[str, DataError] = {}
    for d in DELIMITERS:
        try:
            headers[d] = _header(path, text, d)
        except DataError as e:
            errors[d] = e
    if not headers:
        raise errors[","]
    found = {d: count_columns(needed, h) for d, h in headers.items()}
    full = [d for d in headers if found[d] == len(needed)]
    if len(full) > 1:
        fits = {d: _fits(path, text, d, len(headers[d])) for d in full}
        best = max(fits.values())
        full = [d for d in full if fits[d] == best]
        if len(full) > 1:
            names = " and ".join(delimiter_name(d) for d in full)
            raise DataError(f"{path}: the delimiter is ambiguous: the header holds the columns "
                            f"{list(needed)} split at {names} alike; pass --delimiter")
    if full:
        return full[0], headers[full[0]], ""
    best = max(headers, key=lambda d: (found[d], len(headers[d]) > 1, -DELIMITERS.index(d)))
    if found[best] == 0 and all(len(h) <= 1 for h in headers.values()):
        return best, headers[best], (f"; the header splits into one field at {', '.join(delimiter_name(d) for d in DELIMITERS)}"
                                     f": if another character separates the columns, pass --delimiter")
    if found[best] == 0:
        best = max(headers, key=lambda d: (len(headers[d]), -DELIMITERS.index(d)))
    return best, headers[best], ""


def count_columns(needed: Sequence[str], header: Sequence[str]) -> int:
    """How many of ``needed`` the header holds, names compared ignoring letter case (as the
    table reader matches them: :func:`safsd_glnet.data.tables.match_columns`)."""
    have = {h.lower() for h in header}
    return sum(c.lower() in have for c in needed)


def other_delimiter_hint(path: Path, text: str, needed: Sequence[str], used: str) -> str:
    """``"; it looks ';'-delimited ..."`` when another candidate finds more of ``needed``."""
    def found(d: str) -> int:
        try:
            header = _header(path, text, d)
        except DataError:
            return -1
        return count_columns(needed, header)

    mine = found(used)
    best = max((d for d in DELIMITERS if d != used), key=found)
    if found(best) > mine:
        return f"; it looks {delimiter_name(best)}-delimited: pass --delimiter {delimiter_name(best)} (or leave it out)"
    return ""


def csv_rows(path: Path, text: str, delimiter: str, keep: Sequence[str]
             ) -> tuple[list[str], Iterator[tuple[int, str, dict[str, str]]]]:
    """(header, iterator of (row number, "row 5 (line 6)", {column: cell})), keeping only the
    columns ``keep`` of each row so memory follows what the reader uses."""
    records = _csv_records(path, text, delimiter)
    first = next(records, None)
    if first is None:
        return [], iter(())
    header = [h.strip() for h in first[1]]
    wanted = {c.lower() for c in keep}  # any letter case: the reader matches names ignoring it
    first_of: dict[str, int] = {}
    for i, h in enumerate(header):
        if h.lower() in wanted:
            first_of.setdefault(h, i)  # a name written twice: its first column, as before
    index = list(first_of.items())

    def rows() -> Iterator[tuple[int, str, dict[str, str]]]:
        n = 0
        for line, values in records:
            if not values or all(not v.strip() for v in values):
                continue  # blank line
            n += 1
            where = f"row {n} (line {line})"
            if len(values) > len(header):
                raise DataError(f"{path}: {where} has {len(values)} fields, the header has {len(header)} "
                                f"(an unquoted {delimiter_name(delimiter)} in the text?)")
            if n > MAX_TABLE_ROWS:
                raise DataError(f"{path}: more than {MAX_TABLE_ROWS:,} rows (table_files.MAX_TABLE_ROWS)")
            yield n, where, {c: values[i] for c, i in index if i < len(values)}
    return header, rows()


# --------------------------------------------------------------------------------------------
# JSON lines

def json_depth(line: str) -> int:
    """Deepest nesting of arrays and objects in one JSON text, strings skipped, without recursion."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub('""', line))
    depth = deepest = 0
    for ch in brackets:
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest  # enough to refuse; no need to read on
        else:
            depth -= 1
    return deepest


def split_lf(text: str) -> Iterator[str]:
    """The lines of ``text`` split at LF only, one at a time (no list of every line)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        if end < 0:
            end = len(text)
        yield text[start:end]
        start = end + 1


def jsonl_rows(path: Path, text: str, keep: Sequence[str]
               ) -> tuple[list[str], list[tuple[int, str, dict[str, Any]]]]:
    """(every key seen, [(row number, "row 5 (line 5)", {key: value for keys in keep})]).

    Lines are split at ``\\n`` only: ``str.splitlines`` would also split at U+2028 and other
    separators that JSON allows raw inside strings.
    """
    keep_set = {k.lower() for k in keep}  # any letter case: the reader matches names ignoring it
    rows = []
    columns: dict[str, None] = {}
    n = 0
    for line_no, line in enumerate(split_lf(text), start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline, say) carry nothing
        n += 1
        where = f"row {n} (line {line_no})"
        if line.count("[") + line.count("{") > MAX_JSON_DEPTH and json_depth(line) > MAX_JSON_DEPTH:
            raise DataError(f"{path}: {where} nests arrays or objects more than {MAX_JSON_DEPTH} deep "
                            f"(table_files.MAX_JSON_DEPTH); a row is one flat object")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: {where} is not valid JSON: {e.msg}") from None
        except RecursionError:
            raise DataError(f"{path}: {where} nests arrays or objects too deep to read") from None
        except ValueError as e:  # Python refuses integers of over 4300 digits
            reason = "a number with too many digits" if "digits" in str(e) else show(str(e))
            raise DataError(f"{path}: {where} is not usable JSON: {reason}") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}: {where} is a JSON {type(obj).__name__}, "
                            f"expected an object with one key per column")
        for k in obj:
            if k not in columns:
                if len(columns) >= 10_000:
                    raise DataError(f"{path}: {where}: more than 10000 distinct keys; not an utterance table")
                columns[k] = None
        rows.append((n, where, {k: v for k, v in obj.items() if k.lower() in keep_set}))
        if n > MAX_TABLE_ROWS:
            raise DataError(f"{path}: more than {MAX_TABLE_ROWS:,} rows (table_files.MAX_TABLE_ROWS)")
    return list(columns), rows


# --------------------------------------------------------------------------------------------
# List-valued cells

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "/": "/"}


def parse_name_list(cell: str) -> list[str] | None:
    """The names of a list-valued cell, or None when the cell is not a list of quoted strings.

    ``"['Monica Geller']"`` -> ``["Monica Geller"]``; ``'["Ross", "Rachel"]'`` -> ``["Ross",
    "Rachel"]`` (Python's and JSON's spellings: single or double quotes, backslash escapes,
    ``\\uXXXX``). ``"[Narrator]"`` (no quote after the bracket) is not a list: None. A cell
    that opens a quoted list but is malformed raises ValueError. No ``eval``: a hand-written
    scanner over at most :data:`MAX_FIELD_CHARS` characters and :data:`MAX_NAMES` names.
    """
    s = cell.strip()
    if not s.startswith("["):
        return None
    inner = s[1:].lstrip()
    if not inner.startswith(("'", '"', "]")):
        return None
    if len(s) > MAX_FIELD_CHARS:
        raise ValueError(f"a list of {len(s)} characters, over the limit of {MAX_FIELD_CHARS}")
    names: list[str] = []
    i = 1
    n = len(s)

    def skip(i: int) -> int:
        while i < n and s[i].isspace():
            i += 1
        return i

    i = skip(i)
    if i < n and s[i] == "]":
        if skip(i + 1) != n:
            raise ValueError("text after the closing ']'")
        return names
    while True:
        if i >= n or s[i] not in "'\"":
            raise ValueError("expected a quoted name")
        quote = s[i]
        i += 1
        out = []
        while True:
            if i >= n:
                raise ValueError("a quote is not closed")
            ch = s[i]
            if ch == quote:
                i += 1
                break
            if ch == "\\":
                if i + 1 >= n:
                    raise ValueError("a backslash at the end")
                esc = s[i + 1]
                if esc == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", s[i + 2:i + 6]):
                    out.append(chr(int(s[i + 2:i + 6], 16)))
                    i += 6
                    continue
                out.append(_ESCAPES.get(esc, esc))
                i += 2
                continue
            out.append(ch)
            i += 1
        names.append("".join(out))
        if len(names) > MAX_NAMES:
            raise ValueError(f"more than {MAX_NAMES} names")
        i = skip(i)
        if i < n and s[i] == ",":
            i = skip(i + 1)
            if i < n and s[i] == "]":  # a trailing comma, as Python allows
                pass
            else:
                continue
        if i < n and s[i] == "]":
            if skip(i + 1) != n:
                raise ValueError("text after the closing ']'")
            return names
        raise ValueError("expected ',' or ']' after a name")
