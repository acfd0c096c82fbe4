"""Which code made a number (a benchmark's, a study's): the checkout's commit and what differs from it."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def repo_root() -> Path:
    """The kit's source checkout (the folder holding ``safsd_glnet/`` and ``notebooks/``)."""
    return REPO


def code_version(*paths: str) -> dict[str, Any]:
    """``{"git_commit", "uncommitted_changes"}`` of the checkout: HEAD's hash and the ``git status
    --porcelain`` lines of the package and ``paths`` (e.g. the benchmark script); both None
    outside a git checkout or without git."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20,
                                  check=True).stdout.rstrip()  # keep the first line's status column
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    changed = git("status", "--porcelain", "--", "safsd_glnet", *paths)
    return {"git_commit": commit, "uncommitted_changes": None if changed is None else changed.splitlines()}
