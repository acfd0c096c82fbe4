"""How often a headless kernel fails to start when several start at once, per transport.

The ablation runner (``safsd-glnet ablate --workers N``) starts one Jupyter kernel per run in
N worker processes. Over TCP, Jupyter's default, each kernel manager picks five free ports by
binding to port 0 and releasing them; the kernel binds them again a moment later. Managers in
different processes can be handed the same port in between, and the kernel that binds second
dies (``ZMQError: Address already in use``). The kit connects its headless kernels over
private Unix sockets instead (``safsd_glnet.grids.papermill_runner._kernel_connection``); this script
counts failed starts for both::

    python benchmarks/kernel_starts.py --workers 8 --starts 60           # tcp and the kit's way
    python benchmarks/kernel_starts.py --transports kit --workers 8 --starts 120

Each of ``--workers`` spawned processes starts, waits for (``kernel_info``) and shuts down
``--starts`` kernels in a row, all processes at once. A start that does not answer within
``--timeout`` seconds counts as failed. Results: ``results/kernel_starts.json`` (appended
to, one entry per transport and invocation).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from safsd_glnet.provenance import code_version  # noqa: E402
from safsd_glnet.data.atomic_files import read_json, write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "kernel_starts.json"
TRANSPORTS = ("tcp", "kit")


def start_kernels(transport: str, starts: int, timeout: float) -> list[str]:
    """Start ``starts`` kernels one after another in this process; the errors of those that
    failed. ``transport``: "tcp" (Jupyter's default manager) or "kit" (the keywords that
    ``run_notebook`` hands papermill)."""
    from jupyter_client.manager import KernelManager

    from safsd_glnet.grids.papermill_runner import _kernel_connection

    errors = []
    for _ in range(starts):
        with ExitStack() as stack:
            options = stack.enter_context(_kernel_connection()) if transport == "kit" else {}
            km = KernelManager(kernel_name="python3", **options)
            devnull = stack.enter_context(open(os.devnull, "w"))
            km.start_kernel(extra_arguments=["--IPKernelApp.log_level=CRITICAL"], stderr=devnull)
            kc = km.client()
            kc.start_channels()
            try:
                kc.wait_for_ready(timeout=timeout)
            except RuntimeError as e:  # "Kernel died before replying" / "didn't respond in N seconds"
                errors.append(str(e))
            finally:
                kc.stop_channels()
                km.shutdown_kernel(now=True)
                km.cleanup_resources()
    return errors


def measure(transport: str, workers: int, starts: int, timeout: float) -> dict:
    started = time.time()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        per_worker = list(pool.map(start_kernels, [transport] * workers, [starts] * workers, [timeout] * workers))
    errors = [e for worker in per_worker for e in worker]
    return {"transport": transport, "workers": workers, "starts": workers * starts, "failed": len(errors),
            "errors": sorted(set(errors)), "seconds": round(time.time() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transports", nargs="+", choices=TRANSPORTS, default=list(TRANSPORTS))
    parser.add_argument("--workers", type=int, default=8, help="processes starting kernels at once")
    parser.add_argument("--starts", type=int, default=60, help="kernels started by each process")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds a start may take")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    entries = read_json(args.out) if args.out.exists() else []
    machine = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
               **code_version("benchmarks/kernel_starts.py")}
    for transport in args.transports:
        entry = {**measure(transport, args.workers, args.starts, args.timeout),
                 "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine}
        print(f"{transport:>4}: {entry['failed']} of {entry['starts']} starts failed "
              f"({entry['workers']} at once, {entry['seconds']:.0f} s) {entry['errors'][:2]}", flush=True)
        entries.append(entry)
        write_json(args.out, entries)  # after each transport: an interrupted run keeps what it measured
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
