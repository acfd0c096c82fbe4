"""Checks shared by the loaders of files that come from elsewhere: JSON with bounded depth and
size, what a file plainly is when it is not what its name says, and messages that never
advise loading a file unsafely.

JSON (:func:`loads_json`): Python's parser recurses once per nesting level and raises
``RecursionError`` past about a thousand; a 200 kB file of brackets gets there. Before
parsing, one vectorised pass over the text (strings blanked out) finds the deepest nesting and
counts the values; a text nested deeper than :data:`MAX_JSON_DEPTH` (the kit's files nest 3
deep), holding more than :data:`MAX_JSON_VALUES` values (each costs up to ~100 bytes once
parsed; a MELD corpus's ``meta`` holds about 30 thousand) or longer than the caller's limit is
refused with a one-line error naming the file and the field.

Paths (:func:`regular_file`): every path the kit is given is ``os.stat``-ed before it is
opened, and anything but a regular file is refused. Opening a named pipe blocks until someone
writes to it, and ``/dev/zero`` or ``/dev/urandom`` never end: a loader that opens first and
checks after hangs or reads until its byte limit.

Messages (:func:`safe_message`): torch and numpy explain some refusals by suggesting
``weights_only=False`` or ``allow_pickle=True``, i.e. loading the file in a way that runs
code from it. Errors relayed from them go through :func:`safe_message`, which replaces such
advice.
"""
from __future__ import annotations

import json
import os
import re
import stat
from typing import Any

import numpy as np

__all__ = ["MAX_JSON_DEPTH", "MAX_JSON_VALUES", "loads_json", "json_shape", "describe_foreign",
           "looks_like_text", "safe_message", "clip", "regular_file"]

MAX_JSON_DEPTH = 100
MAX_JSON_VALUES = 1 << 21  # 2 Mi values

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_STEP = np.zeros(256, dtype=np.int64)
for _c, _d in ((b"[", 1), (b"{", 1), (b"]", -1), (b"}", -1)):
    _STEP[_c[0]] = _d
_VALUE_MARK = np.zeros(256, dtype=bool)
for _c in b"[{,:":
    _VALUE_MARK[_c] = True


def json_shape(text: str | bytes) -> tuple[int, int]:
    """(deepest nesting, values) of a JSON text, without parsing it.

    Strings are blanked out first (brackets and commas inside them do not count); a value is
    counted at each ``[``, ``{``, ``,`` and ``:``, an upper bound of what the parser creates
    (give or take one).
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    data = _STRING.sub(b'""', data)
    codes = np.frombuffer(data, dtype=np.uint8)
    steps = _STEP[codes]
    depth = int(np.cumsum(steps).max(initial=0))
    return depth, int(_VALUE_MARK[codes].sum()) + 1


def loads_json(text: str | bytes, source: str, field: str | None = None, *,
               max_bytes: int | None = None) -> Any:
    """``json.loads(text)`` after the checks above; ValueError naming ``source`` and ``field``.

    ``max_bytes`` bounds the text's length (None: no bound). Raises ValueError (the CLI's
    one-line exit 2) for invalid JSON too.
    """
    where = f"{source}: field {field!r}" if field else source
    if max_bytes is not None and len(text) > max_bytes:
        raise ValueError(f"{where}: {len(text)} bytes of JSON, more than the {max_bytes} this "
                         f"file may hold")
    depth, values = json_shape(text)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{where}: JSON nested {depth} deep, more than the {MAX_JSON_DEPTH} "
                         f"allowed (the kit's files nest 3 deep)")
    if values > MAX_JSON_VALUES:
        raise ValueError(f"{where}: JSON with about {values} values, more than the "
                         f"{MAX_JSON_VALUES} allowed")
    try:
        return json.loads(text)
    except RecursionError:  # cannot happen below MAX_JSON_DEPTH, but never let it escape
        raise ValueError(f"{where}: JSON nested too deeply to read") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{where}: not valid JSON ({clip(str(e))})") from None


def looks_like_text(head: bytes) -> bool:
    """True when the first bytes of a file read as UTF-8 text without NUL bytes."""
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start > len(head) - 4  # only a character cut at the end of the sample
    return True


_ZIP = (b"PK\x03\x04", b"PK\x05\x06")


def describe_foreign(head: bytes) -> str | None:
    """What a file plainly is from its first bytes: "a zip archive", "a pickle", "a numpy
    .npy array", "a text file", "an empty file", or None when nothing is recognised."""
    if not head:
        return "an empty file"
    if head.startswith(_ZIP):
        return "a zip archive"
    if head.startswith(b"\x93NUMPY"):
        return "a single numpy .npy array"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle"
    if looks_like_text(head):
        return "a text file"
    return None


_UNSAFE_ADVICE = re.compile(r"weights[_ ]only|allow_pickle|arbitrary code|trusted source", re.I)


def safe_message(text: str, limit: int = 300) -> str:
    """An error message from torch or numpy, on one line, without advice to load unsafely.

    torch's weights-only refusals end with the reason after ``WeightsUnpickler error:``; that
    reason is kept. Any other sentence that mentions ``weights_only`` or ``allow_pickle`` is
    dropped.
    """
    one_line = " ".join(text.split())
    if "WeightsUnpickler error:" in one_line:
        one_line = one_line.split("WeightsUnpickler error:", 1)[1].strip()
    sentences = re.split(r"(?<=[.!?])\s+", one_line)
    kept = [s for s in sentences if not _UNSAFE_ADVICE.search(s)]
    if not kept:
        kept = ["the file holds something other than plain tensors and arrays"]
    return clip(" ".join(kept), limit)


def clip(text: str, limit: int = 200) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_SPECIAL_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def regular_file(path: str | os.PathLike, what: str = "file", *, where: str | None = None) -> os.stat_result:
    """``os.stat(path)`` of a file about to be read; a one-line
    :class:`~safsd_glnet.data.corpus.DataError` unless it is a regular file.

    Symbolic links are followed (what they name is checked). The messages start with ``where``
    (default: the path): ``"<where>: <what> not found"``, ``"<where>: is a folder, expected a
    <what>"``, ``"<where>: is a named pipe (FIFO), not a regular file; expected a <what>"``
    (also character and block devices such as ``/dev/zero``, and sockets), ``"<where>: cannot
    be read (Permission denied)"``. Nothing is opened, so a pipe cannot block the caller.
    """
    from ..corpus import DataError  # data imports this module: import on use

    where = os.fspath(path) if where is None else where
    if what.startswith(("a ", "an ")):  # "a .npz archive": the caller chose the article
        expected, what = what, what.split(" ", 1)[1]
    else:
        expected = f"{'an' if what[:1].lower() in 'aeiou' else 'a'} {what}"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{where}: {what} not found") from None
    except NotADirectoryError:  # a file where the path needs a folder: a/b.csv with a a file
        raise DataError(f"{where}: {what} not found (a part of the path is a file, not a folder)") from None
    except OSError as e:
        raise DataError(f"{where}: cannot be read ({e.strerror or type(e).__name__})") from None
    if stat.S_ISREG(st.st_mode):
        return st
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{where}: is a folder, expected {expected}")
    kind = next((name for test, name in _SPECIAL_KINDS if test(st.st_mode)), "a special file")
    raise DataError(f"{where}: is {kind}, not a regular file; expected {expected}")
