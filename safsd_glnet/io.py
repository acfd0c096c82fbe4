"""Atomic file writes: a reader (or an interrupted run) sees the old file or the new one, never
half of one. Each write goes to a temporary file in the same folder, is flushed to disk, then
``os.replace``-d over the target (atomic on POSIX and Windows within one file system)."""
from __future__ import annotations

import json
import os
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


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def save_torch(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | Path, map_location: Any = "cpu") -> Any:
    """Load a kit checkpoint with ``weights_only=True``: tensors and plain containers only, so
    a checkpoint from elsewhere cannot run code."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{path}: not a readable safsd-glnet checkpoint ({type(e).__name__}: {e})") from None
