"""Peak memory of bf16 training on MELD-shaped batches against oneDNN's primitive cache capacity.

Issue 24 found bf16 epochs on MELD-shaped batches (paper preset, batch 8) peaking at 4.3 GiB against
2.7 GiB in fp32. The cause: on a CPU with bf16 matrix units every bf16 product runs as a oneDNN
primitive, compiled for its exact shapes, and oneDNN keeps up to ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``
(default 1024) of them with their scratch buffers. MELD's dialogues have many lengths, so every
batch brings new shapes and the cache fills with primitives that are rarely reused. The kit sets the
capacity to 128 on ``import safsd_glnet`` (``safsd_glnet/__init__.py``); this script measures peak
RSS and the (extrapolated) epoch time for several capacities, each in a fresh ``benchmarks/speed.py``
process, fp32 beside them::

    python benchmarks/bf16_memory.py --capacities 1024 128 32 0 --max-batches 60 --out bf16_memory.json

``--compact-heap`` adds fp32 and bf16 with ``SAFSD_GLNET_MALLOC=compact`` (glibc's mmap threshold fixed
at 1 MiB: the heap's holes, the second cause of the excess; see ``safsd_glnet/__init__.py``).

Memory figures do not depend on the machine's load; the times do (say the load when you quote them).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_speed(precision: str, capacity: int | None, max_batches: int, threads: int, workdir: Path,
              malloc: str = "glibc", lru: int | None = None) -> dict:
    """One speed.py epoch measurement in a fresh process; returns its epoch record, the capacity, the
    heap setting (``SAFSD_GLNET_MALLOC``: ``glibc``, the default, or ``compact``) and ideep's cache
    capacity (``LRU_CACHE_CAPACITY``; None: the kit's default)."""
    out = workdir / f"{precision}_{capacity}_{malloc}_{lru}.json"
    env = dict(os.environ, SAFSD_GLNET_MALLOC=malloc)
    if capacity is not None:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(capacity)
    if lru is not None:
        env["LRU_CACHE_CAPACITY"] = str(lru)
    cmd = [sys.executable, str(HERE / "speed.py"), "--corpus", "meld", "--configs", "full",
           "--precisions", precision, "--max-batches", str(max_batches), "--matmul-seconds", "0.05",
           "--threads", str(threads), "--out", str(out)]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    epoch = json.loads(out.read_text())["epochs"][0]
    return {"precision": precision, "onednn_primitive_cache_capacity": capacity, "malloc": malloc,
            "lru_cache_capacity": lru if lru is not None else "kit default",
            "peak_rss_gib": epoch["peak_rss_gib"], "train_epoch_s": epoch["train_epoch_s"],
            "batches_timed": epoch["batches_timed"], "batches_per_epoch": epoch["batches_per_epoch"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--capacities", type=int, nargs="+", default=[1024, 128, 32, 0])
    p.add_argument("--max-batches", type=int, default=60, help="batches per measurement (default 60)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compact-heap", action="store_true",
                   help="also measure fp32 and bf16 (capacity 128) with SAFSD_GLNET_MALLOC=compact")
    p.add_argument("--lru-capacities", type=int, nargs="*", default=[],
                   help="also bf16 (primitive cache 128) with ideep's LRU_CACHE_CAPACITY at these values (not 0: "
                        "the profile run died with SIGSEGV at 0)")
    p.add_argument("--rounds", type=int, default=1, help="repeat the --lru-capacities rows, interleaved")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    if any(n < 1 for n in args.lru_capacities):
        p.error("--lru-capacities: 0 crashed torch in the profile run; give 1 or more")
    with tempfile.TemporaryDirectory() as tmp:
        if args.lru_capacities:  # only these rows, interleaved over the rounds
            rows = [dict(run_speed("bf16", 128, args.max_batches, args.threads, Path(tmp), lru=n), round=r + 1)
                    for r in range(args.rounds) for n in args.lru_capacities]
            for r in rows:
                print(f"round {r['round']}: LRU_CACHE_CAPACITY {r['lru_cache_capacity']}: peak RSS "
                      f"{r['peak_rss_gib']:.2f} GiB, epoch {r['train_epoch_s']:.1f} s (extrapolated)")
            if args.out:
                Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))
            return 0
        rows = [run_speed("fp32", None, args.max_batches, args.threads, Path(tmp))]
        rows += [run_speed("bf16", c, args.max_batches, args.threads, Path(tmp)) for c in args.capacities]
        if args.compact_heap:
            rows += [run_speed(p, c, args.max_batches, args.threads, Path(tmp), "compact")
                     for p, c in (("fp32", None), ("bf16", 128))]
    print("precision  cache capacity  heap     peak RSS GiB  epoch s (extrapolated)")
    for r in rows:
        cap = "-" if r["onednn_primitive_cache_capacity"] is None else r["onednn_primitive_cache_capacity"]
        print(f"{r['precision']:9}  {cap!s:>14}  {r['malloc']:7}  {r['peak_rss_gib']:12.2f}  {r['train_epoch_s']:10.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
