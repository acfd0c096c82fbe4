"""Every hostile file of ``hostile_fixtures`` through every command that reads it, in child
processes (a segmentation fault or a hang shows up as a failure, not as a dead test run).

The safety property asserted for each (file, command): exit code 2, exactly one line on
stderr naming the file, no traceback, no code from the file run, and a peak resident memory
below 1 GiB. The peak-memory figures themselves are printed by ``benchmarks/hostile_files.py``
(the README's table), not asserted here beyond that bound.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hostile_fixtures as hf

pytestmark = pytest.mark.integration  # every check starts fresh command-line processes

REPO = Path(__file__).resolve().parents[3]
GIB_MB = 1024


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _features_available() -> bool:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


def _matrix(tmp_path: Path, options: list[str]) -> list[dict]:
    """Run benchmarks/hostile_files.py (one forked child per file and command); its rows."""
    rows_path = tmp_path / "rows.json"
    argv = [sys.executable, str(REPO / "benchmarks" / "hostile_files.py"), "--keep",
            str(tmp_path / "work"), "--json", str(rows_path), "--timeout", "60"]
    result = subprocess.run(argv + options, cwd=tmp_path,
                            env=_env(), capture_output=True, text=True, timeout=900)
    assert rows_path.exists(), result.stderr[-3000:]
    return json.loads(rows_path.read_text())


def test_every_hostile_file_through_one_command(tmp_path):
    """Each file through the first command of its kind (convert, train, evaluate)."""
    rows = _matrix(tmp_path, ["--first-only"])
    expected = {(h.filename, {"pkl": "convert", "npz": "train", "pt": "evaluate",
                              "json": "train"}[h.kind]) for h in hf.ALL}
    assert {(r["file"], r["command"]) for r in rows} == expected
    _check(rows, tmp_path)


@pytest.mark.slow
def test_every_hostile_file_through_every_command(tmp_path):
    """The whole matrix: every command that reads each kind of file."""
    from benchmarks.hostile_files import COMMANDS

    rows = _matrix(tmp_path, [])
    expected = {(h.filename, c) for h in hf.ALL for c in COMMANDS[h.kind]
                if c != "features" or _features_available()}
    assert {(r["file"], r["command"]) for r in rows} == expected
    _check(rows, tmp_path)


def _check(rows: list[dict], tmp_path: Path) -> None:
    problems = []
    for r in rows:
        lines = [line for line in r["stderr"].splitlines() if line.strip()]
        ok = (r["code"] == 2 and len(lines) == 1 and "Traceback" not in r["stderr"]
              and r["file"] in lines[0] and r["peak_mb"] < GIB_MB)
        if not ok:
            problems.append(f"{r['file']} {r['command']}: code {r['code']} signal {r['signal']}, "
                            f"{r['peak_mb']:.0f} MB, stderr {r['stderr'][-300:]!r}")
    assert not problems, "\n".join(problems)
    assert not list((tmp_path / "work").rglob("*.pwned")), "a file's code ran"


# ``python -m safsd_glnet.cli`` (runpy does what -m does) that writes its peak resident memory
# on exit. The peak is read from /proc/self/status (VmHWM, reset by exec), not from wait4: a
# child's ru_maxrss also counts the pages of the parent it was forked from (pytest's, a GB by
# the end of the suite) before exec.
_CLI = """
import atexit, os, runpy, sys
def _peak():
    with open("/proc/self/status") as f:
        kb = next((line.split()[1] for line in f if line.startswith("VmHWM:")), "0")
    with open(os.environ["SAFSD_PEAK_FILE"], "w") as out:
        out.write(kb)
if os.path.exists("/proc/self/status"):
    atexit.register(_peak)
runpy.run_module("safsd_glnet.cli", run_name="__main__", alter_sys=True)
"""


def _start_cli(argv: list[str], cwd: Path) -> subprocess.Popen:
    """``python -m safsd_glnet.cli argv`` in a fresh interpreter, output to files in ``cwd``."""
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**_env(), "SAFSD_PEAK_FILE": str(cwd / "peak_kb.txt")}
    with open(cwd / "out.txt", "w") as out, open(cwd / "err.txt", "w") as err:
        return subprocess.Popen([sys.executable, "-c", _CLI, *argv], cwd=cwd, env=env,
                                stdout=out, stderr=err)


def _wait(proc: subprocess.Popen, cwd: Path) -> tuple[int, float | None]:
    """(exit code, the child's peak RSS in MB, or None where /proc is not available)."""
    code = proc.wait()
    peak = cwd / "peak_kb.txt"
    return code, int(peak.read_text()) / 1024 if peak.exists() else None


def test_fresh_command_line_processes(tmp_path):
    """A representative file per command through ``python -m safsd_glnet.cli`` itself (four
    fresh interpreters, started together)."""
    import torch

    from safsd_glnet.data import make_synthetic, save_corpus

    names = ["forged_object_array.pkl", "zip_bomb.npz", "big_hidden.pt", "deep_tuple_key.pkl"]
    paths = hf.build_all(tmp_path / "files", [h for h in hf.ALL if h.filename in names])
    good_ckpt, good_data = tmp_path / "good.pt", tmp_path / "good.npz"
    torch.save(hf._checkpoint(), good_ckpt)
    save_corpus(make_synthetic("iemocap", feature_sizes={"t": 8, "a": 6, "v": 4}, num_dialogues=6),
                good_data)
    runs = {
        "convert": (paths["forged_object_array.pkl"],
                    ["convert", "--pickle", str(paths["forged_object_array.pkl"]), "--out", "x.npz"]),
        "train": (paths["zip_bomb.npz"],
                  ["train", "--data", str(paths["zip_bomb.npz"]), "--preset", "tiny", "--no-progress",
                   "--out", "run"]),
        "evaluate": (paths["big_hidden.pt"],
                     ["evaluate", "--checkpoint", str(paths["big_hidden.pt"]), "--data", str(good_data)]),
        "predict": (paths["deep_tuple_key.pkl"],
                    ["predict", "--checkpoint", str(good_ckpt), "--data", str(paths["deep_tuple_key.pkl"]),
                     "--out", "p.csv"]),
    }
    procs = {command: _start_cli(argv, tmp_path / command) for command, (_, argv) in runs.items()}
    for command, proc in procs.items():
        code, peak = _wait(proc, tmp_path / command)
        stderr = (tmp_path / command / "err.txt").read_text()
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert code == 2, (command, stderr[-2000:])
        assert len(lines) == 1, (command, stderr)
        assert lines[0].startswith(f"safsd-glnet {command}: error: {runs[command][0]}"), stderr
        assert peak is None or peak < GIB_MB, (command, peak)
    assert not list(tmp_path.rglob("x.npz")) and not list(tmp_path.rglob("p.csv"))


def test_a_very_long_dialogue_is_evaluated_in_bounded_memory(tmp_path):
    """One 8,000-utterance test dialogue through ``evaluate`` in a fresh process: exit 0, the
    numbers of every utterance, and a peak under 1 GiB (attention and the graph in blocks,
    safsd_glnet/model/long_dialogues.py). Before, its (heads, n, n) scores and (n, n) graph took the
    process past 2 GB; the issue's 5,000-utterance corpus peaked at 2.9 GB."""
    import numpy as np
    import torch

    from safsd_glnet.data import make_synthetic, save_corpus
    from safsd_glnet.data.corpus import Corpus, Dialogue

    ckpt = tmp_path / "good.pt"
    torch.save(hf._checkpoint(), ckpt)
    short = make_synthetic("iemocap", feature_sizes={"t": 8, "a": 6, "v": 4}, num_dialogues=6)
    rows = [d for d in short.dialogues.values()]
    n = 8000
    pick = np.arange(n) % sum(len(d) for d in rows)
    cat = {m: np.concatenate([d.features[m] for d in rows])[pick] for m in ("t", "a", "v")}
    long_d = Dialogue("meeting", np.concatenate([d.speakers for d in rows])[pick],
                      np.concatenate([d.labels for d in rows])[pick], cat)
    dialogues = {**short.dialogues, "meeting": long_d}
    splits = {**short.splits, "test": ["meeting"]}
    data = tmp_path / "long.npz"
    save_corpus(Corpus(short.name, short.class_names, short.speaker_names, dict(short.feature_sizes), dialogues,
                       splits, "long").validate(), data)
    proc = _start_cli(["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--device", "cpu"],
                      tmp_path / "evaluate")
    code, peak = _wait(proc, tmp_path / "evaluate")
    out = (tmp_path / "evaluate" / "out.txt").read_text()
    assert code == 0, (tmp_path / "evaluate" / "err.txt").read_text()[-2000:]
    assert f"test: {n} utterances" in out
    assert peak is None or peak < GIB_MB, peak
