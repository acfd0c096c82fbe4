"""How often bf16 training makes oneDNN compile a new primitive, per corpus shape and cache capacity.

On a CPU with bf16 matrix units every bf16 product runs as a oneDNN primitive, JIT-compiled for
its exact shapes and kept in a cache of ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` entries (the kit sets
128 on import; oneDNN's default is 1024). Each batch's row count (its real utterances), padded
dialogue length and graph size make new shapes, so a corpus whose batches rarely repeat their
shapes keeps compiling. This script runs ``--steps`` training steps of the paper preset in a child
process with ``ONEDNN_VERBOSE=profile_create,profile_exec`` and counts, from oneDNN's own log:

* primitive creations that missed the cache (a JIT compile) and those that hit it;
* the milliseconds oneDNN reports for the misses and for executing every primitive;
* the distinct primitive shapes the steps used.

The counts do not depend on the machine's load; the milliseconds do (quote the load with them)::

    python benchmarks/onednn_primitives.py --corpora meld iemocap --capacities 128 1024 --steps 30 \\
        --out benchmarks/results/onednn_primitives.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from itertools import islice
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout


def run_steps(corpus_name: str, steps: int, data: Path, precision: str, buckets: bool = True) -> list[int]:
    """The child: ``steps`` training steps (after none: the first step's compiles count too); returns
    each batch's real utterance count. ``buckets=False``: without the row buckets
    (``safsd_glnet.model.row_buckets``)."""
    import torch

    from benchmarks.speed import paper_training
    from safsd_glnet.training.train import training_step

    device = torch.device("cpu")
    model, optimizer, losses, batches, _ = paper_training(corpus_name, data, threads=1, buckets=buckets)
    rows = []
    for batch in islice(batches, steps):
        rows.append(int(batch.real.sum()))
        training_step(model, optimizer, losses, batch, device, precision)
    return rows


def parse_log(text: str) -> dict:
    """Counts and milliseconds from oneDNN's verbose lines (``onednn_verbose,...,primitive,<what>,...``;
    the last field is the time in ms; ``create:cache_miss`` / ``create:cache_hit`` / ``exec``)."""
    miss = hit = execs = 0
    miss_ms = exec_ms = 0.0
    shapes = set()
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) < 6 or fields[0] != "onednn_verbose" or "primitive" not in fields[:4]:
            continue
        what = fields[fields.index("primitive") + 1]
        try:
            ms = float(fields[-1])
        except ValueError:
            continue
        if what == "create:cache_miss":
            miss, miss_ms = miss + 1, miss_ms + ms
        elif what == "create:cache_hit":
            hit += 1
        elif what == "exec":
            execs, exec_ms = execs + 1, exec_ms + ms
            shapes.add(",".join(fields[4:-1]))  # engine, kind, implementation, ..., problem shape
    return {"creates_missed": miss, "creates_hit": hit, "create_missed_ms": round(miss_ms, 1), "executions": execs,
            "exec_ms": round(exec_ms, 1), "distinct_primitives": len(shapes)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpora", nargs="+", choices=("meld", "iemocap"), default=["meld", "iemocap"])
    p.add_argument("--capacities", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--no-row-buckets", action="store_true", help="plain nn.Linear (safsd_glnet.model.row_buckets)")
    p.add_argument("--out", default=None)
    p.add_argument("--child", choices=("meld", "iemocap"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        rows = run_steps(args.child, args.steps, Path(args.data), args.precision, buckets=not args.no_row_buckets)
        print("ROWS " + json.dumps(rows), file=sys.stderr)
        return 0
    results = []
    for corpus in args.corpora:
        for capacity in args.capacities:
            env = dict(os.environ, ONEDNN_VERBOSE="profile_create,profile_exec",
                       ONEDNN_PRIMITIVE_CACHE_CAPACITY=str(capacity))
            cmd = [sys.executable, __file__, "--child", corpus, "--steps", str(args.steps), "--precision",
                   args.precision, "--data", args.data] + ["--no-row-buckets"] * args.no_row_buckets
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            rows = json.loads(done.stderr.split("ROWS ", 1)[1].splitlines()[0])
            r = {"corpus": corpus, "capacity": capacity, "steps": args.steps, "precision": args.precision,
                 "row_buckets": not args.no_row_buckets,
                 "distinct_row_counts": len(set(rows)), **parse_log(done.stdout)}
            results.append(r)
            print(f"{corpus:8} capacity {capacity:5}: {r['creates_missed']:5} compiles ({r['create_missed_ms']:8.0f} ms), "
                  f"{r['creates_hit']:5} cache hits, {r['executions']:5} executions ({r['exec_ms']:8.0f} ms), "
                  f"{r['distinct_primitives']} distinct primitives, {r['distinct_row_counts']} distinct row counts",
                  flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"command": "python benchmarks/onednn_primitives.py "
                                              + " ".join(sys.argv[1:] if argv is None else argv),
                                              "load": os.getloadavg(), "rows": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
