"""What running a grid through Dask or submitit costs, against this machine's own runner.

Three measurements (``python benchmarks/executors.py``; ``--skip-quick`` leaves out the
longest):

1. **Scaling.** ``ablations/quick.yaml`` (3 variants x 2 seeds = 6 real runs) on a Dask
   LocalCluster of 1 and of 2 worker processes; each run's kernel gets the machine's cores
   divided by the workers as threads. Scaling efficiency = T(1) / (2 x T(2)).
2. **Overhead per run.** A notebook that does nothing (it records when its first and last
   cells ran and writes a ``metrics.json``) run ``--runs`` times, one at a time, on each
   executor: local (in this process), dask (a LocalCluster of one worker) and slurm through
   submitit's local executor (one job per grid, as SLURM would start one array task). Per run:
   *task start* (submitted -> the runner entered on the worker, ``run.json``'s
   ``start_time``), *kernel start* (-> the notebook's first cell), *kernel stop* (its last cell
   -> ``end_time``, the kernel shut down and ``run.json`` written) and *result return*
   (-> the result back in the submitting process). The executor's own start (a
   LocalCluster, submitit's folder) is per grid and reported apart.
3. **Projection.** The paper grid's wall time on 1, 8 and 32 GPUs from per-run times:
   ``ceil(runs / G)`` waves of one run each, plus the measured per-run overhead (the idle
   run's time on submitit; SLURM's queue wait comes on top and is the cluster's). The
   per-run times are the ones measured on this 2-core CPU (README, Speed: 27 min IEMOCAP,
   83 min MELD for 80 epochs); no GPU was lent to this work, so a GPU run's time is not
   measured and the CPU time stands in as an upper bound.

Results go to ``results/executors.json``; the machine's load average is printed and stored,
as the scaling depends on the machine being otherwise idle.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from safsd_glnet.grids import ablation as ablate, executors  # noqa: E402
from safsd_glnet.data.atomic_files import read_json, write_json  # noqa: E402
from safsd_glnet.provenance import code_version  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "executors.json"
# Measured per-run CPU times of the paper model, 80 epochs (README, Speed; benchmarks/speed.py).
PAPER_RUN_MINUTES = {"IEMOCAP": 27.0, "MELD": 83.0}
PAPER_VARIANTS, PAPER_SEEDS = 16, 5  # ablations/paper.yaml's variants, the 5 seeds


def idle_notebook(path: Path) -> Path:
    """A stand-in for 04_ablation.ipynb that trains nothing: the runner's own costs remain."""
    import nbformat

    params = nbformat.v4.new_code_cell('DATA: str = "synthetic:iemocap"\nSEED: int = 0\nRUN_DIR: str = "run"\n'
                                       'RESUME: bool = True')
    params.metadata["tags"] = ["parameters"]
    first = nbformat.v4.new_code_cell("import json, pathlib, time\nfirst_cell = time.time()")
    last = nbformat.v4.new_code_cell(
        "run = pathlib.Path(RUN_DIR)\nrun.mkdir(parents=True, exist_ok=True)\n"
        "m = {'corpus': 'none', 'test': {'accuracy': 0, 'weighted_f1': 0, 'macro_f1': 0},\n"
        "     'reference_protocol': {'weighted_f1': 0, 'accuracy': 0, 'epoch': 0}}\n"
        "(run / 'cells.json').write_text(json.dumps({'first': first_cell, 'last': time.time()}))\n"
        "(run / 'metrics.json').write_text(json.dumps(m))")
    nb = nbformat.v4.new_notebook(cells=[params, first, last])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def make(kind: str, workers: int = 1) -> executors.Executor:
    if kind == "local":
        return executors.LocalExecutor(workers)
    if kind == "dask":
        return executors.DaskExecutor(workers=workers)
    return executors.SlurmExecutor(cluster="local", time_min=30)


def overhead(kind: str, runs: int, work: Path) -> dict:
    """``runs`` one-run grids of the idle notebook on ``kind``: per-run phases (mean seconds)."""
    notebook = idle_notebook(work / "04_ablation.ipynb")
    phases = {"executor start": [], "task start": [], "kernel start": [], "kernel stop": [], "result return": [],
              "run total": []}
    for i in range(runs):
        g = ablate.Grid.from_dict({"name": f"{kind}{i}", "seeds": [i], "base": {"DATA": "synthetic:iemocap"},
                                   "variants": {"idle": {}}}, "idle.yaml")
        out = work / f"{kind}-{i}"
        t0 = time.time()
        result = ablate.run_grid(g, out, notebook=notebook, executor=make(kind), progress=False, log=None)
        assert result.done == [f"idle-seed{i}"], (kind, result.records)
        name = result.done[0]
        rec, cells, t = read_json(out / name / "run.json"), read_json(out / name / "cells.json"), result.timings[name]
        phases["executor start"].append(t["submitted"] - t0)
        phases["task start"].append(rec["start_time"] - t["submitted"])
        phases["kernel start"].append(cells["first"] - rec["start_time"])
        phases["kernel stop"].append(rec["end_time"] - cells["last"])
        phases["result return"].append(t["returned"] - rec["end_time"])
        phases["run total"].append(t["returned"] - t["submitted"])
    return {k: round(sum(v) / len(v), 2) for k, v in phases.items()} | {"runs": runs}


def quick_grid(workers: int, work: Path) -> dict:
    """ablations/quick.yaml on a LocalCluster of ``workers``; wall time and per-run seconds."""
    g = ablate.Grid.load(REPO / "ablations" / "quick.yaml")
    out = work / f"quick-dask{workers}"
    t0 = time.time()
    result = ablate.run_grid(g, out, executor=make("dask", workers), progress=False, log=None)
    wall = time.time() - t0
    assert len(result.done) == 6 and not result.failed, result.records
    seconds = [result.records[n]["seconds"] for n in result.done]
    return {"workers": workers, "threads_per_run": max(1, (os.cpu_count() or 1) // workers), "wall_s": round(wall, 1),
            "run_s_mean": round(sum(seconds) / len(seconds), 1), "runs": len(seconds)}


def projection(overhead_s: float) -> list[dict]:
    """Paper-grid wall time on 1, 8 and 32 GPUs, one run per GPU at a time (equal runs)."""
    rows = []
    for corpus, minutes in PAPER_RUN_MINUTES.items():
        runs = PAPER_VARIANTS * PAPER_SEEDS
        if corpus == "MELD":
            runs -= PAPER_SEEDS  # the prior similarity exists only for IEMOCAP: those runs fail at once
        for gpus in (1, 8, 32):
            waves = math.ceil(runs / gpus)
            rows.append({"corpus": corpus, "runs": runs, "gpus": gpus, "waves": waves,
                         "hours": round(waves * (minutes * 60 + overhead_s) / 3600, 1)})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3, help="idle runs per executor for the overhead (default 3)")
    p.add_argument("--skip-quick", action="store_true", help="leave out the quick grid on 1 and 2 Dask workers")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="safsd-executors-"))
    report = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "load_before": os.getloadavg(), **code_version("benchmarks/executors.py")}
    try:
        over = {}
        for kind in ("local", "dask", "slurm"):
            over[kind] = overhead(kind, args.runs, work)
            print(f"overhead {kind:5s}: " + ", ".join(f"{k} {v:.2f} s" for k, v in over[kind].items() if k != "runs"),
                  flush=True)
        report["overhead"] = over
        for kind in ("dask", "slurm"):
            extra = over[kind]["run total"] - over["local"]["run total"]
            print(f"{kind} adds {extra:+.2f} s per run to the local runner (and {over[kind]['executor start'] - over['local']['executor start']:+.2f} s per grid)")
        if not args.skip_quick:
            report["quick"] = [quick_grid(w, work) for w in (1, 2)]
            t1, t2 = report["quick"][0]["wall_s"], report["quick"][1]["wall_s"]
            report["scaling_efficiency"] = round(t1 / (2 * t2), 2)
            for q in report["quick"]:
                print(f"quick grid on {q['workers']} Dask worker(s): {q['wall_s']:.0f} s wall, "
                      f"{q['run_s_mean']:.0f} s per run ({q['threads_per_run']} thread(s) each)")
            print(f"speed-up {t1 / t2:.2f}x, scaling efficiency {report['scaling_efficiency']:.2f}")
        # an idle run's whole time is overhead: the kit's cost per run around the training itself
        report["projection"] = projection(over["slurm"]["run total"])
        print("projection (per-run time = this CPU's, an upper bound for a GPU; SLURM's queue wait not included):")
        for row in report["projection"]:
            print(f"  {row['corpus']:7s} {row['runs']} runs on {row['gpus']:2d} GPUs: {row['waves']} waves, "
                  f"{row['hours']} h")
    finally:
        report["load_after"] = os.getloadavg()
        print(f"load average before {report['load_before'][0]:.2f} / after {report['load_after'][0]:.2f} "
              f"(1 min), {report['cpus']} CPUs")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    history = read_json(RESULTS) if RESULTS.exists() else []
    write_json(RESULTS, history + [report])
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
