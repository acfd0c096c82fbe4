"""Epoch checkpoints of one fine-tuning job, so that an interrupted job continues where it stopped.

A fine-tuning epoch on a 2-core CPU can take twenty minutes; a job of eight such epochs that
stops in its seventh (a closed laptop, a session's end, Ctrl-C) should not start again from the
packaged weights. After every epoch but the last, :func:`~safsd_glnet.features.finetune.fit`
writes ``<run folder>/<job>.progress.pt`` holding everything the remaining epochs depend on:

* the model's, the optimiser's and the learning-rate schedule's states;
* the shuffling generator's state and torch's global random state (dropout draws from it; on
  CUDA, every device's too), so the remaining epochs see the same batches and the same dropout
  masks as an uninterrupted run would;
* the per-epoch history, the best epoch so far and its weights, and the seconds spent.

A job started again under the same run key loads the file and runs the remaining epochs: its
result equals an uninterrupted run's (tests/features/test_finetune_resume.py compares the
weights and the history exactly). The file is written to a temporary name and renamed, so an
interruption while writing leaves the previous epoch's file; it is read with
``torch.load(weights_only=True)`` (tensors and plain containers only: a planted file cannot run
code), and one that is unreadable or belongs to another key is set aside with a warning and the
job starts from its first epoch. The file is removed once the job's encoder is saved.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SUFFIX = ".progress.pt"
FORMAT = "safsd-glnet-finetune-progress"
VERSION = 1


def progress_path(run_dir: Path, job: str) -> Path:
    return Path(run_dir) / f"{job}{SUFFIX}"


def _rng_states(device) -> dict[str, Any]:
    import torch

    states = {"torch": torch.get_rng_state()}
    if torch.device(device).type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng(states: dict[str, Any], device) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state_all(states["cuda"])


def save_progress(path: Path, key: str, epoch: int, *, model, optimizer, scheduler, shuffle, device,
                  history: list[dict[str, Any]], best: dict[str, Any], best_state: dict[str, Any] | None,
                  seconds: float) -> None:
    """Write the state after ``epoch`` (atomically: a temporary file in the same folder, renamed)."""
    import torch

    state = {"format": FORMAT, "version": VERSION, "key": key, "epoch": epoch,
             "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "shuffle": shuffle.get_state(), "rng": _rng_states(device), "history": history, "best": best,
             "best_state": best_state, "seconds": float(seconds)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_progress(path: Path, key: str) -> dict[str, Any] | None:
    """The saved state of ``path`` when it belongs to run ``key``; None when there is none, or (with a
    warning) when it is unreadable or another run's."""
    import torch

    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("version") != VERSION:
            raise ValueError("not a fine-tuning progress file of this version")
    except Exception as e:  # noqa: BLE001 - any unreadable file: start the job afresh, never crash
        log.warning("%s: unreadable (%s); the job starts from its first epoch", path, str(e).splitlines()[0][:200])
        return None
    if state.get("key") != key:
        log.warning("%s: belongs to another run (key %s); the job starts from its first epoch",
                    path, str(state.get("key"))[:16])
        return None
    return state


def restore(state: dict[str, Any], *, model, optimizer, scheduler, shuffle, device) -> None:
    """Put the saved states back into freshly built objects of the same job."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    shuffle.set_state(state["shuffle"])
    _restore_rng(state["rng"], device)
