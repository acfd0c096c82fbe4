"""Atomic file writes: a reader (or an interrupted run) sees the old file or the new one, never
half of one. Each write goes to a temporary file in the same folder, is flushed to disk, then
``os.replace``-d over the target (atomic on POSIX and Windows within one file system).

Reads of files that may come from elsewhere are bounded: :func:`read_json` refuses files
over :data:`MAX_JSON_BYTES` and JSON nested too deeply (see
:func:`~safsd_glnet.file_checks.loads_json`); :func:`load_torch` checks the archive and
pre-scans its ``data.pkl`` (:func:`~safsd_glnet.checkpoint_checks.check_archive`) before
``torch.load(weights_only=True)``, and never relays torch's advice to load unsafely."""
from __future__ import annotations

import json
import os
import pickle
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

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
    kill can leave one behind, and :func:`safsd_glnet.run_folder.remove_stale_temporaries`
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


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


MAX_JSON_BYTES = 64 << 20
"""Largest JSON file :func:`read_json` reads (a run's metrics.json has about 100 kB)."""


def read_json(path: str | Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse the UTF-8 JSON file at ``path``; ValueError naming the file when it is not JSON,
    is larger than ``max_bytes`` or nests deeper than the kit ever writes."""
    from .file_checks import loads_json, regular_file

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
    from .checkpoint_checks import check_archive
    from .file_checks import regular_file, safe_message

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
