"""The smoke test of the scripts: every benchmark and experiment script starts, `--help` runs and
exits 0. A check that a script merely runs belongs here, as one more parameter, not in a test
file of its own; the other files in this folder check what a benchmark computes and writes.

The scripts are run by hand, months apart; a module they import may have moved since (two
benchmarks imported `benchmarks.provenance` after it had moved into the package). Starting each
one catches that; each start is a fresh Python that imports torch, so the test is `integration`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for folder in ("benchmarks", "experiments") for p in (REPO / folder).glob("*.py")
                 if p.name != "__init__.py")


def test_there_are_scripts_to_start():
    names = {p.name for p in SCRIPTS}
    assert {"speed.py", "feature_speed.py", "predict_cold_start.py", "finetune_selection.py"} <= names


@pytest.mark.integration
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_script_starts(script, tmp_path):
    done = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, f"{script.name} --help failed:\n{done.stderr[-2000:]}"
    assert "usage" in done.stdout.lower()
