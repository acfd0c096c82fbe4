"""Why notebook 03 took 13 times the CPU by hand that it takes in ``safsd-glnet demo``.

The demo runs the notebooks headless through :func:`safsd_glnet.grids.papermill_runner.run_notebook`,
whose kernels get ``OMP_WAIT_POLICY=PASSIVE``. A kernel that JupyterLab starts gets the
environment of the JupyterLab server, where the variable is usually unset; torch's OpenMP
runtime (GNU libgomp in the CPU wheels) then lets each idle thread spin for a while
(``GOMP_SPINCOUNT`` 300,000) after every parallel region before it sleeps. The small model
runs thousands of short parallel regions per epoch, so the threads spin most of the time; on a
machine whose cores are shared with another job, the spinning threads also take the cores
from the thread that has work. The kit now sets ``OMP_WAIT_POLICY=PASSIVE`` when
``safsd_glnet`` is imported, before torch loads (``safsd_glnet/__init__.py``); a process that
imported torch first keeps the spinning.

This script trains notebook 03's default run (the ``small`` preset, 16 epochs, synthetic
IEMOCAP with 80 dialogues and feature sizes 100/80/60) once per setting, each in a fresh
process, and prints its CPU and wall seconds:

* ``spinning``: torch imported before ``safsd_glnet``, no ``OMP_WAIT_POLICY`` (a JupyterLab
  kernel before the fix);
* ``kit``: ``safsd_glnet`` imported first, no ``OMP_WAIT_POLICY`` in the environment (a
  JupyterLab kernel now);
* ``one-thread``: ``OMP_NUM_THREADS=1``.

``--competitors N`` runs N pure-Python busy loops during every measurement, as another job on
a shared machine would (0: none). Results: ``results/notebook_threads.json`` (appended to)::

    python benchmarks/notebook_threads.py --epochs 16 --competitors 1
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "notebook_threads.json"
SETTINGS = ("spinning", "kit", "one-thread")
MARKER = "NOTEBOOK_THREADS "

WORKER = """
import json, os, resource, sys, tempfile, time
first_torch = sys.argv[2] == "spinning"
if first_torch:
    import torch  # libgomp reads its environment now, before safsd_glnet could set it
import safsd_glnet
import torch
from safsd_glnet.notebook.explore import open_corpus
from safsd_glnet.config import preset
from safsd_glnet.training.train import train
corpus = open_corpus("synthetic:iemocap", {"t": 100, "a": 80, "v": 60}, 80, log=None)
cfg = preset("small").override(f"train.epochs={int(sys.argv[1])}", "train.progress=false", "train.device=cpu")
with tempfile.TemporaryDirectory() as out:
    r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run = train(cfg, corpus, out)
    r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
print("MARKER" + json.dumps({
    "threads": torch.get_num_threads(),
    "wall_s": w1 - w0, "cpu_s": (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime),
    "valid_weighted_f1": run.metrics["valid"]["weighted_f1"]}))
""".replace("MARKER", MARKER)


def _busy(stop) -> None:  # a competing job: one core's worth of pure Python
    while not stop.is_set():
        sum(range(10_000))


def measure(setting: str, epochs: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["OMP_DISPLAY_ENV"] = "VERBOSE"  # libgomp prints its settings when it loads: the spin count it got
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if setting == "one-thread":
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    else:
        env.pop("OMP_NUM_THREADS", None)
        env.pop("MKL_NUM_THREADS", None)
    proc = subprocess.run([sys.executable, "-c", WORKER, str(epochs), setting], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if proc.returncode or not lines:
        raise RuntimeError(f"{setting}: the worker failed: {proc.stderr[-2000:]}")
    spin = [line.split("=")[1].strip().strip("'") for line in proc.stderr.splitlines()
            if line.strip().startswith("GOMP_SPINCOUNT")]
    return {"setting": setting, "gomp_spincount": int(spin[0]) if spin else None, **json.loads(lines[-1][len(MARKER):])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=16, help="epochs per run (notebook 03's default: 16)")
    parser.add_argument("--competitors", type=int, default=0, help="busy loops running beside each measurement")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--out", default=str(RESULTS), help="JSON file the results are appended to")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from safsd_glnet.data.atomic_files import read_json, write_json
    from safsd_glnet.provenance import code_version

    stop = multiprocessing.Event()
    loops = [multiprocessing.Process(target=_busy, args=(stop,), daemon=True) for _ in range(args.competitors)]
    for p in loops:
        p.start()
    rows = []
    try:
        for setting in args.settings:
            load = os.getloadavg()[0]
            row = measure(setting, args.epochs)
            row["load_1min_before"] = load
            rows.append(row)
            print(f"{setting:10s}: {row['cpu_s']:7.1f} s CPU, {row['wall_s']:7.1f} s wall, {row['threads']} thread(s), "
                  f"libgomp spin count {row['gomp_spincount']}, "
                  f"valid w-F1 {row['valid_weighted_f1']:.2f} (1-min load before: {load:.2f})", flush=True)
    finally:
        stop.set()
        for p in loops:
            p.join(5)
    entry = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or platform.machine(),
             "cpus": os.cpu_count(), "python": platform.python_version(), "code": code_version(),
             "epochs": args.epochs, "competitors": args.competitors, "runs": rows}
    out = Path(args.out)
    previous = read_json(out) if out.exists() else []
    write_json(out, previous + [entry])
    print(f"appended to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
