"""Atomic file writes: a reader (or an interrupted run) sees the old file or the new one, never
half of one. Each write goes to a temporary file in the same folder, is flushed to disk, then
``os.replace``-d over the target (atomic on POSIX and Windows within one file system).

Files the kit keeps open and writes in place (a run folder's lock, a partial download) are
opened by :func:`open_working_file`: never through a symbolic link, never truncated on
opening, and only when they are regular files of one link, so that a link planted where such
a file belongs cannot make the kit overwrite another file.

Reads of files that may come from elsewhere are bounded: :func:`read_json` refuses files
over :data:`MAX_JSON_BYTES` and JSON nested too deeply (see
:func:`~safsd_glnet.data.safe.foreign_files.loads_json`); :func:`load_torch` checks the archive and
pre-scans its ``data.pkl`` (:func:`~safsd_glnet.data.safe.checkpoint.check_archive`) before
``torch.load(weights_only=True)``, and never relays torch's advice to load unsafely."""
from __future__ import annotations

import csv
import errno
import io as stdio  # the standard library's
import itertools
import json
import os
import pickle
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from numbers import Integral, Real
from typing import Any, Iterable, Iterator, Sequence

import torch


def default_mode(path: str | Path) -> int:
    """The permission bits a plain ``open(path, "w")`` would leave: the existing file's mode,
    else 0o666 less the process umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        pass
    umask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    ``mkstemp`` creates its file private (0600); the result gets the mode a plain ``open()``
    would give it (:func:`default_mode`), so run folders, figures and caches shared with a group
    stay readable as the umask says. The temporary file is named ``.<name>.<random>.tmp``; a
    kill can leave one behind, and :func:`safsd_glnet.training.run_folder_guard.remove_stale_temporaries`
    finds those in run folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = default_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
    except (AttributeError, OSError):  # Windows has no fchmod; its files carry no such bits
        pass
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def open_working_file(path: str | Path, what: str) -> int:
    """A read-write descriptor of the kit's own working file at ``path`` (``what``: "lock file",
    "partial download"), created empty (mode 0666 less the umask) when it does not exist.

    ``O_NOFOLLOW``: a symbolic link at ``path`` is refused, not followed; ``O_CREAT`` without
    ``O_TRUNC``: opening never changes the file; ``O_NONBLOCK``: a named pipe does not block the
    open. The open file must be a regular file with one hard link (a second link would share
    its bytes with a file elsewhere). Anything else is a one-line
    :class:`~safsd_glnet.data.corpus.DataError` naming the path, and nothing was written.
    What the caller then writes is its own business: it may check the content first (a lock
    holds a pid) before it truncates.
    """
    from .corpus import DataError
    from .safe.foreign_files import regular_file

    path = Path(path)
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    if not nofollow and path.is_symlink():  # systems without O_NOFOLLOW: the check, then the open
        raise DataError(f"{path}: is a symbolic link; the kit never writes its {what} through a link "
                        f"(remove it)")
    flags = os.O_RDWR | os.O_CREAT | nofollow | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DataError(f"{path}: is a symbolic link; the kit never writes its {what} through a link "
                            f"(remove it)") from None
        if e.errno in (errno.EISDIR, errno.ENXIO, errno.EOPNOTSUPP):  # a folder, a socket, ...
            regular_file(path, what)  # names what it is
        raise DataError(f"{path}: cannot open the {what} ({e.strerror or type(e).__name__})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            regular_file(path, what)  # names what it is (a pipe, a device)
            raise DataError(f"{path}: is not a regular file; expected the kit's {what}")
        if st.st_nlink > 1:
            raise DataError(f"{path}: has {st.st_nlink} hard links, so it shares its bytes with another "
                            f"file; the kit never writes its {what} into such a file (remove it)")
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)  # what the caller reads and writes: ordinary blocking I/O
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_write_target(path: str | Path, what: str) -> Path:
    """Refuse, before a library writes ``path`` in place (papermill's executed notebook), a
    symbolic link, anything but a regular file, or a file with another hard link there: the
    write would land in a file the kit did not create. A missing path is fine. One-line
    :class:`~safsd_glnet.data.corpus.DataError` naming the path."""
    from .corpus import DataError

    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    if stat.S_ISLNK(st.st_mode):
        raise DataError(f"{path}: is a symbolic link; the kit never writes its {what} through a link (remove it)")
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{path}: is not a regular file; expected the kit's {what} (remove it)")
    if st.st_nlink > 1:
        raise DataError(f"{path}: has {st.st_nlink} hard links, so it shares its bytes with another file; the kit "
                        f"never writes its {what} into such a file (remove it)")
    return path


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet (Excel, LibreOffice, Google Sheets) read a text
cell as a formula: ``=HYPERLINK(...)`` leaks data when clicked, ``=cmd|' /C calc'!A0`` asks to
run a program (OWASP, "CSV Injection")."""


def spreadsheet_cell(value: Any, float_format: str = "{:.6f}") -> str:
    """One CSV cell for people: text that starts like a formula gets a leading ``'`` (the OWASP
    rule; a spreadsheet then shows the text, and the quote says it was changed); numbers are
    written as numbers (``-0.5`` stays a number in a score column; floats with ``float_format``);
    None is empty. Only text cells are changed: the sentence ``-2+3`` becomes ``'-2+3``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        return float_format.format(float(value))
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_csv(path: str | Path, header: Sequence[Any], rows: Iterable[Sequence[Any]],
              float_format: str = "{:.6f}") -> None:
    """A CSV file for people to open in a spreadsheet, written atomically; every cell goes
    through :func:`spreadsheet_cell`. The kit's JSON output keeps the text exactly."""
    buf = stdio.StringIO()
    w = csv.writer(buf)
    for row in itertools.chain([header], rows):
        w.writerow([spreadsheet_cell(c, float_format) for c in row])
    write_text(path, buf.getvalue())


MAX_JSON_BYTES = 64 << 20
"""Largest JSON file :func:`read_json` reads (a run's metrics.json has about 100 kB)."""


def read_json(path: str | Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse the UTF-8 JSON file at ``path``; ValueError naming the file when it is not JSON,
    is larger than ``max_bytes`` or nests deeper than the kit ever writes."""
    from .safe.foreign_files import loads_json, regular_file

    path = Path(path)
    regular_file(path, "JSON file")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)  # never more, whatever the file claims to be
    except IsADirectoryError:
        raise ValueError(f"{path}: is a folder, expected a JSON file") from None
    except PermissionError as e:
        raise ValueError(f"{path}: cannot be read ({e.strerror})") from None
    if len(data) > max_bytes:
        raise ValueError(f"{path}: more than the {max_bytes} bytes a JSON file of the kit may have")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid JSON (not UTF-8 text: {e.reason} at byte {e.start})") from None
    return loads_json(text, str(path))


def save_torch(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | Path, map_location: Any = "cpu") -> Any:
    """Load a kit checkpoint with ``weights_only=True``: tensors and plain containers only, so
    a checkpoint from elsewhere cannot run code; the archive and its ``data.pkl`` are checked
    first, so it cannot crash the process or flood memory while loading either."""
    from .safe.checkpoint import check_archive
    from .safe.foreign_files import regular_file, safe_message

    path = Path(path)
    regular_file(path, "checkpoint file")  # missing, a folder, a pipe, a device: one line, nothing opened
    check_archive(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused a global or an opcode
        raise ValueError(f"{path}: refused to load: the checkpoint holds something other than "
                         f"tensors and plain data ({safe_message(str(e))}); nothing was run") from None
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{path}: not a readable safsd-glnet checkpoint ({type(e).__name__}: "
                         f"{safe_message(str(e))})") from None
