"""Run folders that are never lost: what may be trained into a folder, and by whom.

A run folder holds what :func:`safsd_glnet.training.train.train` writes (``config.json``,
``metrics.json``, the checkpoints, ``test_predictions.csv``) and what the command line, the
notebooks and the ablation runner put beside it (figures, ``run.json``, the executed notebook).
Before a run starts, :func:`prepare` decides from the folder's content:

=============================================  ============================================
the folder                                     what happens
=============================================  ============================================
does not exist, or is empty                    created; the run starts
holds a run, ``resume``                        the run continues from ``checkpoint_last.pt``
holds a run, ``overwrite``                     the run's files are removed, then it starts
holds a run, neither                           refused: the finished (or interrupted) run is
                                               never replaced silently
holds files the kit did not write              refused, whatever the flags: the kit deletes
                                               only its own files
is a file                                      refused
=============================================  ============================================

The completion marker ``metrics.json`` is removed first when a run is overwritten, so a kill
during the replacement leaves an unfinished run, never a new ``config.json`` beside an old
``metrics.json``.

While a run trains, :class:`RunLock` holds an exclusive lock on ``<folder>/.lock`` (POSIX
``flock``; the operating system releases it when the process dies, however it dies), so one
folder is never trained by two processes at once. Once the lock is held, temporary files
that an interrupted atomic write left behind (``.<name>.<random>.tmp``, see
:mod:`safsd_glnet.data.atomic_files`) are removed: no other process can be writing them.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from ..data.corpus import DataError
from ..data.atomic_files import open_working_file

# Files a training run writes; a folder holding one of them "holds a run".
RUN_FILES = ("metrics.json", "config.json", "checkpoint_last.pt", "checkpoint_best.pt", "test_predictions.csv")
# Files the command line, the notebooks and the ablation runner write beside a run.
COMPANION_FILES = ("run.json", "parameters.json", "data_fingerprint.txt", "confusion.png", "confusion.pdf",
                   "training_curves.png", "training_curves.pdf", "04_ablation.ipynb", "summary.json")
LOCK_NAME = ".lock"  # held by train()
RUNNER_LOCK_NAME = ".runner.lock"  # held by the ablation runner around a run's notebook
QUEUE_LOCK_NAME = ".queue.lock"  # held by the ablate process that submitted the run, until its result is back
LOCK_BYTES = 32  # a lock file holds the pid of its holder and a newline
_PID_LINE = re.compile(rb"[0-9]{0,20}\n?")
STALE_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")  # files.atomic_path: .<name>.<random>.tmp


def check_writable(folder: str | Path, what: str = "output folder") -> Path:
    """Prove that ``folder`` can be written (created, where it does not exist yet) before any
    work starts; raise a one-line :class:`DataError` naming the folder otherwise.

    A probe file is created and removed in the folder, or in its nearest existing ancestor
    when the folder does not exist yet (nothing is created for a command that then fails on
    something else). Permission bits alone would not do: root ignores them, and read-only
    mounts refuse writes that ``os.access`` allows."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: the {what} is a file, expected a folder")
    probe_in = folder
    while not probe_in.exists() and probe_in != probe_in.parent:
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise DataError(f"{folder}: cannot write to the {what} ({probe_in} is a file)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", suffix=".tmp", dir=probe_in)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise DataError(f"{folder}: cannot write to the {what} ({e.strerror or type(e).__name__})") from None
    return folder


# What each file of a run folder is, for messages and for the one kind of output a command may
# put in its place (predict --out RUN/test_predictions.csv --overwrite).
RUN_FILE_KINDS = {"metrics.json": "metrics and history", "config.json": "configuration",
                  "checkpoint_last.pt": "resume point", "checkpoint_best.pt": "chosen model",
                  "test_predictions.csv": "predictions", "summary.json": "seed summary"}


def run_owning(path: str | Path) -> Path | None:
    """The run folder that the file ``path`` belongs to, or None.

    A file belongs to a run when it carries the name of a file that training, the command line,
    the notebooks or the ablation runner write (:data:`RUN_FILES`, :data:`COMPANION_FILES`,
    the locks), in a folder that holds a run; or it is the ``summary.json`` of a folder of
    seed runs (``OUT/seed<k>/``). Whether the file exists yet does not matter: a
    ``metrics.json`` written into an unfinished run would pass it off as finished."""
    path = Path(path)
    names = set(RUN_FILES) | set(COMPANION_FILES) | {LOCK_NAME, RUNNER_LOCK_NAME, QUEUE_LOCK_NAME}
    if path.name not in names:
        return None
    folder = path.parent if str(path.parent) else Path(".")
    if holds_run(folder):
        return folder
    if path.name == "summary.json" and folder.is_dir() and any(holds_run(p) for p in folder.glob("seed*")):
        return folder
    return None


def check_output_file(path: str | Path, what: str = "output file", *, kind: str | None = None,
                      overwrite: bool = False) -> Path:
    """Check an output file before any work: its folder can be written (:func:`check_writable`),
    it is not a folder, and it is not a file of a run folder (:func:`run_owning`).

    The one place every command that writes an ``--out`` file goes through. A run's own file is
    replaced only when it is of the command's own ``kind`` (a :data:`RUN_FILE_KINDS` value:
    ``predict`` writes "predictions", so it may replace ``test_predictions.csv``) and
    ``overwrite`` is given; ``evaluate --out RUN/metrics.json`` would erase the run's history,
    and ``predict --out RUN/checkpoint_last.pt`` its resume point.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: the {what} is a folder, expected a file name")
    owner = run_owning(path) or run_owning(path.resolve())  # also through a link to a run's file
    if owner is not None:
        own = RUN_FILE_KINDS.get(path.name)
        if not (overwrite and own is not None and own == kind):
            described = f"its {own}" if own else "a file the kit wrote there"
            hint = ("; pass --overwrite to replace it" if own is not None and own == kind
                    else "; choose another --out")
            raise DataError(f"{path}: belongs to the run in {owner} ({described}); the {what} never replaces "
                            f"a run's own files{hint}")
    check_writable(path.parent if str(path.parent) else Path("."), f"folder of the {what}")
    return path


def _foreign_entries(folder: Path) -> list[str]:
    known = set(RUN_FILES) | set(COMPANION_FILES) | {LOCK_NAME, RUNNER_LOCK_NAME, QUEUE_LOCK_NAME}
    return sorted(p.name for p in folder.iterdir()
                  if p.name not in known and not STALE_TEMPORARY.match(p.name))


def holds_run(folder: str | Path) -> bool:
    folder = Path(folder)
    return folder.is_dir() and any((folder / name).exists() for name in RUN_FILES)


def prepare(folder: str | Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Check that a run may be trained into ``folder`` (see the module docstring) and create it.

    With ``overwrite`` the previous run's files are removed (``metrics.json`` first); with
    ``resume`` they are kept for :func:`safsd_glnet.training.train.train` to continue from.
    """
    folder = Path(folder)
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: resume continues the run in the "
                         "folder, overwrite replaces it")
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: the run folder is a file, expected a folder")
    if folder.is_dir():
        foreign = _foreign_entries(folder)
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise DataError(f"{folder}: not empty and not a run folder (it holds {shown}); choose a new or "
                            "empty folder (the kit deletes only the files it wrote)")
        if holds_run(folder) and not resume:
            if not overwrite:
                state = ("a finished run (metrics.json)" if (folder / "metrics.json").exists()
                         else "an unfinished run")
                raise DataError(f"{folder}: already holds {state}; pass --resume to continue it, "
                                "--overwrite to replace it, or choose another --out")
            for name in RUN_FILES + COMPANION_FILES:  # metrics.json first: the completion marker
                path = folder / name
                if path.is_file():
                    path.unlink()
    check_writable(folder, "run folder")
    return folder


class RunLock:
    """An exclusive lock on ``<folder>/.lock`` (or ``name``) for the duration of a ``with`` block.

    A second process (or a second ``RunLock`` in this one) gets a :class:`DataError` at once
    instead of waiting. The file keeps the holder's pid for that message. It is opened by
    :func:`~safsd_glnet.data.atomic_files.open_working_file` (a link or anything but a regular file is
    refused) and rewritten only when it holds a pid or nothing. On systems without
    ``fcntl`` (Windows) the lock is a no-op, which the README says. The training lock
    (:data:`LOCK_NAME`) also sweeps away stale temporaries once it is held.
    """

    def __init__(self, folder: str | Path, name: str = LOCK_NAME):
        self.folder = Path(folder)
        self.path = self.folder / name
        self.sweep = name == LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks through fcntl
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = open_working_file(self.path, "lock file")  # no link followed, nothing truncated
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise DataError(f"{self.folder}: this run folder is being trained by another process "
                            f"(pid {holder[:12]}); wait for it, or train into another folder") from None
        content = os.pread(fd, LOCK_BYTES + 1, 0)
        if not _PID_LINE.fullmatch(content):  # never overwrite a file that holds something else
            os.close(fd)
            raise DataError(f"{self.path}: not a lock file of the kit (it holds something other than a process "
                            f"id); move it away, the kit does not overwrite it")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        if self.sweep:
            remove_stale_temporaries(self.folder)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def remove_stale_temporaries(folder: str | Path) -> list[str]:
    """Delete ``.<name>.<random>.tmp`` files left in ``folder`` by a killed atomic write (a
    16 MB checkpoint each). Call only while holding the folder's :class:`RunLock`."""
    removed = []
    for path in Path(folder).iterdir():
        if path.is_file() and STALE_TEMPORARY.match(path.name):
            path.unlink(missing_ok=True)
            removed.append(path.name)
        elif path.is_dir() and STALE_TEMPORARY.match(path.name):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed
