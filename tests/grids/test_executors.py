"""Grids and seeds on Dask and on submitit: the same runs as on this machine, and the grid's
contract (skip, retry, resume, locks, checks before submission) on every executor.

Dask runs on a LocalCluster of two worker processes (started once for the module and closed
by its fixture, also when a test fails); the slurm back-end runs through submitit's local
executor (each job a process here, no SLURM needed). Most tests use a stand-in notebook
(``make_notebook`` of test_ablate); one pair runs the real 04_ablation.ipynb on a tiny
synthetic corpus and compares the metrics with the local executor's, run for run.
"""
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from safsd_glnet.grids import ablation as ablate, executors
from safsd_glnet.grids import ablation_report as report
from safsd_glnet.cli import commands as cli
from safsd_glnet.data.atomic_files import read_json
from safsd_glnet.training.run_folder_guard import RunLock
from test_ablation import fake_metrics, make_notebook

distributed = pytest.importorskip("distributed", reason="the cluster extra is not installed (pip install -e '.[cluster]')")
submitit = pytest.importorskip("submitit", reason="the cluster extra is not installed (pip install -e '.[cluster]')")

ROOT = Path(__file__).resolve().parent.parent.parent

# The stand-in notebook: each attempt is appended to attempts.txt; FAIL raises; USE_GCN=False is
# a "slow" run whose first attempt writes a checkpoint and then trains (sleeps) until killed.
# A run that finds a checkpoint says so in its metrics, as training resumes from its last epoch.
BODY = (
    "import os, time\n"
    "run = pathlib.Path(RUN_DIR)\nrun.mkdir(parents=True, exist_ok=True)\n"
    "with open(run / 'attempts.txt', 'a') as f:\n    f.write(f'{RESUME} {os.getpid()}\\n')\n"
    "if FAIL:\n    raise RuntimeError('asked to fail')\n"
    "checkpoint = run / 'checkpoint_last.pt'\n"
    "resumed_from = checkpoint.read_text() if checkpoint.exists() else None\n"
    "if not USE_GCN and resumed_from is None:\n"
    "    checkpoint.write_text('epoch 3')\n"
    "    (run / 'started').write_text(str(os.getpid()))\n"
    "    time.sleep(600)\n"
    f"m = {json.dumps(fake_metrics(0))}\n"
    "m['test']['weighted_f1'] += SEED\nm['resumed_from'] = resumed_from\n"
    "checkpoint.write_text('final')\n"
    "(run / 'metrics.json').write_text(json.dumps(m))\n")


def grid(variants, seeds=(0, 1)):
    return ablate.Grid.from_dict({"name": "toy", "seeds": list(seeds), "base": {"DATA": "synthetic:iemocap"},
                                  "variants": variants}, "toy.yaml")


def attempts(folder):
    path = Path(folder) / "attempts.txt"
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(scope="module")
def dask_address():
    """A LocalCluster of two worker processes, one thread each, for the whole module."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=logging.ERROR)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture
def stand_in(tmp_path):
    return make_notebook(tmp_path / "04_ablation.ipynb", BODY)


def on(kind, address=None, **kw):
    if kind == "dask":
        return executors.DaskExecutor(scheduler=address, **kw)
    return executors.SlurmExecutor(cluster="local", time_min=10, **kw)


# --------------------------------------------------------------------------- the same runs

TINY = {"DATA": "synthetic:iemocap", "SYNTH_SIZES": {"t": 16, "a": 12, "v": 8}, "SYNTH_DIALOGUES": 24,
        "PRESET": "tiny", "EPOCHS": 3}


def tiny_grid():
    return ablate.Grid.from_dict({"name": "tiny", "seeds": [0], "base": TINY, "variants": {"full": {}}}, "tiny.yaml")


def outcome(out):
    """What training computed in each run folder (timings left out)."""
    runs = {}
    for folder in sorted(p for p in Path(out).iterdir() if (p / "metrics.json").exists()):
        m = read_json(folder / "metrics.json")
        runs[folder.name] = {"chosen_epoch": m["chosen_epoch"], "test": m["test"], "valid": m["valid"],
                             "reference_protocol": m["reference_protocol"],
                             "history": [{k: v for k, v in h.items() if k != "seconds"} for h in m["history"]]}
    return runs


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    result = ablate.run_grid(tiny_grid(), out, threads=1, progress=False, log=None)
    assert result.done == ["full-seed0"]
    return outcome(out)


@pytest.mark.integration  # Dask or submitit workers
@pytest.mark.parametrize("kind", ["dask", "submitit"])
def test_real_runs_give_the_local_executors_metrics(kind, local_runs, dask_address, tmp_path):
    """The real 04_ablation.ipynb, trained on a worker: CPU training is deterministic, so
    every number of the run (each epoch's losses and scores, the chosen epoch, test and
    reference protocols) equals the local executor's."""
    result = ablate.run_grid(tiny_grid(), tmp_path / "out", threads=1, executor=on(kind, dask_address),
                             progress=False, log=None)
    assert result.done == ["full-seed0"] and not result.failed
    assert outcome(tmp_path / "out") == local_runs
    assert len(local_runs["full-seed0"]["history"]) == TINY["EPOCHS"]
    if kind == "submitit":  # submitit's folder sits inside the grid's output, and is not a run
        assert any((tmp_path / "out" / "submitit").glob("*_result.pkl"))
        assert "submitit" not in {s["run"] for s in report.run_states(tmp_path / "out")}


# --------------------------------------------------------------------------- the contract

@pytest.mark.integration  # Dask or submitit workers
@pytest.mark.parametrize("kind, lock", [("dask-no-shared-fs", ablate.QUEUE_LOCK), ("submitit", ablate.RUNNER_LOCK)])
def test_failures_are_isolated_and_retried_complete_runs_skipped_held_folders_left(kind, lock, dask_address,
                                                                                   stand_in, tmp_path):
    """A failing variant fails alone and is retried next time; a complete run is skipped; a
    folder that another invocation holds (.queue.lock: it has queued the run; .runner.lock:
    it runs the notebook now) is neither submitted nor written to. Dask runs here without a
    shared filesystem: the runs train in folders of their own and their notebooks and small
    files come back (not the checkpoints)."""
    out, scratch = tmp_path / "out", tmp_path / "workers"
    g = grid({"full": {}, "held": {}, "bad": {"FAIL": True}}, seeds=[0])

    def executor():
        if kind == "submitit":
            return on("submitit")
        return on("dask", dask_address, shared_fs=False, worker_dir=str(scratch))

    messages = []
    held = out / "held-seed0"
    held.mkdir(parents=True)
    with RunLock(held, lock):  # as another ablate process holds it
        first = ablate.run_grid(g, out, notebook=stand_in, executor=executor(), progress=False, log=messages.append)
    assert first.done == ["full-seed0"] and first.failed == ["bad-seed0"] and first.busy == ["held-seed0"]
    assert attempts(held) == [] and not (held / "run.json").exists()
    assert any("held-seed0: left alone" in m and "another process" in m for m in messages)
    assert read_json(out / "bad-seed0" / "run.json")["error"] == "RuntimeError: asked to fail"
    assert "asked to fail" in (out / "bad-seed0" / "04_ablation.ipynb").read_text()  # the traceback is here

    if kind != "submitit":
        here, there = out / "full-seed0", ablate.worker_folder(g.runs(out)[0], str(scratch))
        assert sorted(p.name for p in here.iterdir() if not p.name.startswith(".")) == \
            ["04_ablation.ipynb", "attempts.txt", "metrics.json", "run.json"]
        assert (there / "checkpoint_last.pt").read_text() == "final"  # checkpoints stay on the worker
        for name in ("metrics.json", "run.json", "04_ablation.ipynb"):
            assert (here / name).read_bytes() == (there / name).read_bytes()
        assert any("no shared filesystem" in m for m in messages)

    second = ablate.run_grid(g, out, notebook=stand_in, executor=executor(), progress=False, log=None)
    assert second.skipped == ["full-seed0"] and second.failed == ["bad-seed0"]
    assert sorted(second.done) == ["full-seed0", "held-seed0"]
    assert [len(attempts(out / f"{v}-seed0")) for v in ("full", "held", "bad")] == [1, 1, 2]
    assert [r["variant"] for r in report.collect_runs(out)] == ["full", "held"]


@pytest.mark.integration  # Dask or submitit workers
def test_a_killed_grid_stops_its_runs_and_resumes(dask_address, stand_in, tmp_path):
    """kill -9 of the submitting process (the kit's own LocalCluster): the runs' processes
    and kernels die with it; the next invocation skips the finished run and resumes the
    interrupted one from its checkpoint."""
    out = tmp_path / "out"
    spec = {"name": "toy", "seeds": [0], "base": {"DATA": "synthetic:iemocap"},
            "variants": {"quick": {}, "slow": {"USE_GCN": False}}}
    driver = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
              "from safsd_glnet.grids import ablation as ablate, executors\n"
              "if __name__ == '__main__':\n"
              f"    g = ablate.Grid.from_dict({spec!r}, 'g.yaml')\n"
              f"    ablate.run_grid(g, {str(out)!r}, notebook={str(stand_in)!r}, progress=False, log=None,\n"
              "                    executor=executors.DaskExecutor(workers=2))\n")
    (tmp_path / "driver.py").write_text(driver)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "driver.py")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 480  # a hang guard only: runs start slowly on a loaded machine
        while not ((out / "slow-seed0" / "started").exists() and (out / "quick-seed0" / "metrics.json").exists()
                   and read_json(out / "quick-seed0" / "run.json").get("status") == "done"):
            assert time.time() < deadline, "the runs never started"
            assert proc.poll() is None, "the grid ended early"
            time.sleep(0.3)
        kernel = int((out / "slow-seed0" / "started").read_text())
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.time() + 120  # a hang guard: the loop ends as soon as it is gone
    while Path(f"/proc/{kernel}").exists() and time.time() < deadline:
        time.sleep(0.3)
    alive = Path(f"/proc/{kernel}").exists() and "zombie" not in Path(f"/proc/{kernel}/status").read_text().lower()
    if alive:
        os.kill(kernel, signal.SIGKILL)
    assert not alive, "the interrupted run's kernel outlived its grid"
    assert read_json(out / "slow-seed0" / "run.json")["status"] == "running"

    result = ablate.run_grid(ablate.Grid.from_dict(spec, "g.yaml"), out, notebook=stand_in, progress=False, log=None,
                             executor=on("dask", dask_address))
    assert result.skipped == ["quick-seed0"] and result.done == ["quick-seed0", "slow-seed0"]
    assert read_json(out / "slow-seed0" / "metrics.json")["resumed_from"] == "epoch 3"
    assert [a.split()[0] for a in attempts(out / "slow-seed0")] == ["True", "True"]  # RESUME on every attempt
    assert len(attempts(out / "quick-seed0")) == 1


def test_stale_task_folders_of_dead_workers_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for pid in (dead.pid, os.getpid()):
        (tmp_path / f"{executors.TASK_FOLDER_PREFIX}{pid}-abc").mkdir()
        (tmp_path / f"{executors.TASK_FOLDER_PREFIX}{pid}-abc" / "call.pkl").write_bytes(b"x")
    (tmp_path / f"{executors.TASK_FOLDER_PREFIX}other").mkdir()  # not named by a pid: not ours to judge
    assert executors.remove_stale_task_folders(tmp_path) == [f"{executors.TASK_FOLDER_PREFIX}{dead.pid}-abc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{executors.TASK_FOLDER_PREFIX}{os.getpid()}-abc",
                                                          f"{executors.TASK_FOLDER_PREFIX}other"]


# --------------------------------------------------------------------------- checks before submission

class Refuses(executors.Executor):
    """An executor that fails the test if anything reaches it."""

    name = "refuses"

    def __enter__(self):
        raise AssertionError("the executor was started")

    def submit(self, *a):
        raise AssertionError("something was submitted")


def test_a_parameter_typo_is_refused_before_anything_is_submitted(stand_in, tmp_path, capsys, monkeypatch):
    with pytest.raises(ValueError, match=r"variant 'typo' sets \['USE_GNC'\]"):
        ablate.run_grid(grid({"typo": {"USE_GNC": False}}), tmp_path / "a", notebook=stand_in, executor=Refuses(),
                        progress=False, log=None)
    assert not (tmp_path / "a").exists()
    monkeypatch.setattr(ablate, "notebook_path", lambda name: stand_in)
    path = tmp_path / "g.yaml"
    path.write_text("seeds: [0]\nbase: {DATA: 'synthetic:iemocap', USE_GCN: yes please}\nvariants: {full: {}}\n"
                    "cluster: {executor: slurm, partition: gpu, gpus: 1}\n")
    # slurm through submitit's local executor; dask at an address where no scheduler listens
    for extra in (["--submitit-cluster", "local"], ["--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"]):
        code = cli.main(["ablate", "--grid", str(path), "--out", str(tmp_path / "b"), *extra])
        assert code == 2 and "USE_GCN='yes please' should be bool" in capsys.readouterr().err
        assert not (tmp_path / "b").exists()  # no submitit folder, no run folder


def test_executor_settings_from_the_grid_file_and_the_command_line(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("seeds: [0]\nbase: {DATA: 'synthetic:iemocap'}\nvariants: {full: {}}\n"
                    "cluster: {executor: slurm, partition: gpu, gpus: 1, cpus: 4, mem_gb: 32, time_min: 240,\n"
                    "          array_parallelism: 8, setup: ['module load cuda'], scheduler: 'tcp://x:1'}\n")
    g = ablate.Grid.load(path)
    ex = executors.make_executor(g.cluster, {"cpus": 8})
    assert isinstance(ex, executors.SlurmExecutor) and ex.default_threads() == 8
    assert ex.options == {"partition": "gpu", "gpus": 1, "cpus": 8, "mem_gb": 32.0, "time_min": 240,
                          "array_parallelism": 8, "setup": ["module load cuda"]}
    dask = executors.make_executor(g.cluster, {"executor": "dask", "resources": "GPU=1"})  # the file's slurm keys wait
    assert isinstance(dask, executors.DaskExecutor) and dask.scheduler == "tcp://x:1" and dask.resources == {"GPU": 1.0}
    assert isinstance(executors.make_executor(g.cluster, {"executor": "local", "workers": 2}), executors.LocalExecutor)
    for settings, options, message in (
            ({"executor": "slurm", "gpu": 1}, {}, r"unknown cluster settings \['gpu'\]"),
            ({"executor": "kubernetes"}, {}, "executor 'kubernetes'"),
            ({"time_min": 0}, {}, "time_min=0 must be at least 1"),
            ({"cpus": 2.5}, {}, "cpus=2.5 must be a whole number"),
            ({}, {"executor": "dask", "partition": "gpu"}, "--partition applies to --executor slurm, not dask"),
            ({}, {"executor": "slurm", "gpus": -1}, "--gpus=-1 must be at least 0"),
            ({}, {"executor": "dask", "resources": "GPU=x"}, "expected NAME=AMOUNT"),
            ({}, {"executor": "dask", "scheduler": "tcp://x:1", "workers": 2}, "has its own workers"),
            ({}, {"executor": "dask", "worker_dir": "/x"}, "needs --no-shared-fs"),
            ({"executor": "dask", "workers": "2"}, {}, "workers='2' must be a whole number"),
            ({"executor": "dask", "scheduler": 8786}, {}, "scheduler must be text")):
        with pytest.raises(ValueError, match=message):
            executors.make_executor(settings, options)
    with pytest.raises(ValueError, match=r"g2.yaml: cluster: unknown cluster settings \['nodes'\]"):
        ablate.Grid.from_dict({"variants": {"a": {}}, "cluster": {"nodes": 2}}, "g2.yaml")


@pytest.mark.skipif(shutil.which("sbatch") is not None, reason="this machine has SLURM")
def test_slurm_without_slurm_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "g.yaml"
    path.write_text("seeds: [0]\nbase: {DATA: 'synthetic:iemocap'}\nvariants: {full: {}}\n")
    assert cli.main(["ablate", "--grid", str(path), "--out", str(tmp_path / "out"), "--executor", "slurm"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("safsd-glnet ablate: error: --executor slurm needs SLURM (sbatch not found); "
                   "use --executor dask or local")
    assert not (tmp_path / "out").exists()


@pytest.mark.integration  # Dask or submitit workers
def test_dask_refuses_resources_no_worker_has(dask_address, stand_in, tmp_path):
    with pytest.raises(ValueError, match=r"--resources GPU=1: no worker of the Dask cluster offers that"):
        ablate.run_grid(grid({"full": {}}), tmp_path / "out", notebook=stand_in, progress=False, log=None,
                        executor=on("dask", dask_address, resources={"GPU": 1}))
    assert not any((tmp_path / "out" / "full-seed0").glob("*.ipynb"))


# --------------------------------------------------------------------------- train --seeds

@pytest.mark.integration  # Dask or submitit workers
def test_train_seeds_on_dask_equal_the_local_seeds(dask_address, tmp_path, capsys):
    common = ["train", "--preset", "tiny", "--epochs", "2", "--sizes", "t=16,a=12,v=8", "--seeds", "0", "1",
              "--no-progress", "--set", "train.device=cpu"]
    with _threads(1):
        assert cli.main(common + ["--out", str(tmp_path / "local")]) == 0
        assert cli.main(common + ["--out", str(tmp_path / "dask"), "--executor", "dask",
                                  "--scheduler", dask_address]) == 0
    local, dask = read_json(tmp_path / "local" / "summary.json"), read_json(tmp_path / "dask" / "summary.json")
    assert dask == local
    assert local["validation"]["kind"] == "synthetic"  # seed_runs summarises the record as train_seeds does
    for s in (0, 1):
        assert read_json(tmp_path / "dask" / f"seed{s}" / "metrics.json")["test"] == \
            read_json(tmp_path / "local" / f"seed{s}" / "metrics.json")["test"]
    assert "summary:" in capsys.readouterr().out
    assert cli.main(common + ["--out", str(tmp_path / "dask"), "--executor", "dask", "--scheduler",
                              dask_address]) == 2  # finished seeds are not overwritten silently
    assert "pass --resume" in capsys.readouterr().err


class _threads:
    """torch's thread count pinned for the in-process (local) seeds, as the workers' is."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        import torch

        self.old = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.old)
