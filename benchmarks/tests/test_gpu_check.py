"""benchmarks/gpu_check.sh rehearsed on the CPU (``--dry-run``): every step runs at toy size and
the results land as JSON in the folder given, as they will on a GPU. The rehearsal is judged by
what it does, never by how fast: its caps only catch a hang (ten times the GPU's)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from safsd_glnet.model import precision

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


# The dry run's budget for all steps (gpu_check.sh: 450 s times 10); pytest-timeout waits a little longer.
DRY_BUDGET_S = 4500


def run(*args, cwd=REPO, timeout=600):
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.integration
@pytest.mark.timeout(DRY_BUDGET_S + 300)
def test_dry_run_writes_every_result(tmp_path):
    out = tmp_path / "check"
    proc = run(str(out), "--dry-run", cwd=tmp_path, timeout=DRY_BUDGET_S + 120)  # works from any folder
    assert proc.returncode == 0, proc.stdout + proc.stderr + (out / "gpu_check.log").read_text()
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["dry_run"] is True and summary["all_steps_succeeded"] is True
    assert [s["step"] for s in summary["steps"]] == ["environment", "tests_cuda", "train80", "speed", "finetune"]
    assert all(s["exit_code"] == 0 and not s["timed_out"] and s["seconds"] > 0 for s in summary["steps"])
    # the caps of the rehearsal are ten times the GPU's (60, 120, 120, 170, 120 s), cut to the budget left
    assert summary["budget_s"] == DRY_BUDGET_S and all(s["cap_s"] >= 600 for s in summary["steps"])
    assert summary["total_seconds"] == pytest.approx(sum(s["seconds"] for s in summary["steps"]), abs=0.2)

    env = json.loads((out / "environment.json").read_text())
    assert env["device"] == "cpu" and env["precision_auto_paper"] == precision.train_precision("auto", "cpu", 1024)
    # the GPU tests are collected and skip here (no CUDA): none fails, none is lost
    assert summary["tests_cuda"]["tests"] >= 4 and summary["tests_cuda"]["failures"] == 0
    assert summary["tests_cuda"]["errors"] == 0

    metrics = json.loads((out / "train80_metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and metrics["precision"] == precision.train_precision("auto", "cpu", 16)
    assert summary["train80"]["finished"] and summary["train80"]["target_met"] is None  # not judged on a CPU

    speed = json.loads((out / "speed_cuda.json").read_text())
    assert {(r["config"], r["precision"]) for r in speed["epochs"]} == {
        (c, p) for c in ("full", "full-compiled") for p in ("fp32", "bf16")}
    for r in speed["epochs"]:
        assert r["train_epoch_s"] > 0 and r["predict_utterances_per_s"] > 0 and r["peak_rss_gib"] > 0
        assert set(r["matmul_flops"]) >= {"comparable", "comparable_bf16"}
        # the compiled configuration compiles in its first step; the eager one compiles nothing
        assert (r["compiled_graphs_first_step"] > 0) == (r["config"] == "full-compiled")

    finetune = json.loads((out / "finetune_meld.json").read_text())
    assert finetune["settings"]["epochs"] == 1 and finetune["seconds"]["train"] > 0
    assert summary["finetune"]["seconds"] == finetune["seconds"]
    pair = next(c for c in speed["comparisons"]["bf16_vs_fp32"] if c["config"] == "full")
    fp32, bf16 = (next(r for r in speed["epochs"] if r["precision"] == p and r["config"] == "full")
                  for p in ("fp32", "bf16"))
    assert pair["speedup"] == pytest.approx(fp32["train_epoch_s"] / bf16["train_epoch_s"])
    assert summary["speed"]["comparisons"] == speed["comparisons"]
    assert "=== speed: exit 0" in (out / "gpu_check.log").read_text()


@pytest.mark.parametrize("args", [[], ["--dry-run"], ["out", "--fast"]])
def test_a_wrong_command_line_exits_2_with_usage(tmp_path, args):
    proc = run(*args, cwd=tmp_path)
    assert proc.returncode == 2 and "usage: bash benchmarks/gpu_check.sh OUT_DIR [--dry-run]" in proc.stderr
