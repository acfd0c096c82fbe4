"""Where bf16's extra memory on MELD-shaped batches lives: torch's memory profiler against the RSS.

Issue 24 left bf16 training on MELD-shaped batches (paper preset, batch 8) peaking 0.42-0.62 GiB
above fp32 after two causes were fixed or measured (oneDNN's primitive cache, the heap's holes;
``benchmarks/bf16_memory.py``). This script splits one precision's peak into

* what torch's tensors hold: the parameters and Adam's state (summed exactly), plus the steps' own
  working memory from torch's memory profiler (``torch.profiler`` with ``profile_memory=True``;
  its timeline sorts every live tensor into parameter, optimizer state, gradient, activation,
  temporary, input, autograd detail, or unknown): the most the steps add at any moment, and
  which categories added it; and
* the process's peak RSS, which also counts what lives outside torch's allocator: oneDNN's
  compiled primitives and their scratch buffers, and the heap's free-but-unreturned holes.

Each precision runs in a fresh process (its RSS is its own): a warm-up step, ``--steps`` training
steps on the same shuffled batches (their peak RSS is the figure, as in ``bf16_memory.py``), then
the first ``--profiled`` of them again under the profiler (its event records would swell the
RSS). Optional ``--onednn-cache N`` and ``--compact-heap`` set ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``
and ``SAFSD_GLNET_MALLOC=compact`` for every process, so the rest of the excess can be read
against them::

    python benchmarks/bf16_memory_profile.py --steps 60 --out benchmarks/results/bf16_memory_profile.json

Memory figures do not depend on the machine's load.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings
from itertools import islice
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout

GIB = 1024 ** 3
# the profiler timeline's column order: index 0 is a tensor it could not place, then its categories
CATEGORIES = ("unknown", "input", "temporary", "activation", "gradient", "autograd_detail", "parameter",
              "optimizer_state")


def timeline_peak(times_sizes: list) -> dict:
    """The highest the summed categories of a ``[times, sizes]`` timeline (``export_memory_timeline``'s
    JSON) rise above their first row, and by how much each category had risen at that moment, in GiB.

    The first row holds what existed before the profiled steps *and was touched in them*; the
    profiler does not list a tensor it never saw, so the absolute level is not the process's: the
    rise is the steps' own working memory (gradients, activations, temporaries, autocast's copies)."""
    _, sizes = times_sizes
    base = sizes[0]
    rises = [sum(row) - sum(base) for row in sizes]
    k = max(range(len(rises)), key=rises.__getitem__)
    return {"rise_gib": rises[k] / GIB,
            "rise_by_category_gib": {name: (sizes[k][i] - base[i]) / GIB for i, name in enumerate(CATEGORIES)
                                     if sizes[k][i] != base[i]}}


def persistent_gib(model, optimizer) -> float:
    """Bytes that live through every step: the parameters and the optimiser's state tensors."""
    import torch

    tensors = list(model.parameters()) + [v for state in optimizer.state.values() for v in state.values()
                                          if isinstance(v, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors) / GIB


def measure(precision: str, steps: int, profiled: int, threads: int, data: Path, buckets: bool = True) -> dict:
    """One precision in this process: a warm-up step, ``steps`` training steps (the RSS peak), then the
    first ``profiled`` of them again under torch's memory profiler (the split of torch's tensors);
    ``buckets=False``: the model without its row buckets (``safsd_glnet.model.row_buckets``)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.speed import paper_training, peak_memory
    from safsd_glnet.training.train import training_step

    device = torch.device("cpu")
    model, optimizer, losses, batches, source = paper_training("meld", data, threads, buckets=buckets)
    batches = list(islice(batches, steps + 1))
    training_step(model, optimizer, losses, batches[0], device, precision)  # warm-up: Adam's state
    rss_after_warmup = peak_memory(device)["peak_rss_gib"]
    for batch in batches[1:]:  # the process's own peak, before the profiler adds its records
        training_step(model, optimizer, losses, batch, device, precision)
    rss_peak = peak_memory(device)["peak_rss_gib"]
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:  # torch's side: the same kind of steps, profiled
        for batch in batches[1:1 + profiled]:
            training_step(model, optimizer, losses, batch, device, precision)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated for CUDA snapshots; the CPU has no other
        path = Path(tmp) / "timeline.json"
        prof.export_memory_timeline(str(path), device="cpu")
        torch_side = timeline_peak(json.loads(path.read_text()))
    params = sum(p.numel() for p in model.parameters())
    return {"precision": precision, "steps": steps, "threads": threads, "source": source,
            "parameters": params, "parameters_bf16_copy_gib": params * 2 / GIB,
            "persistent_gib": persistent_gib(model, optimizer), "step_rise_gib": torch_side["rise_gib"],
            "step_rise_by_category_gib": torch_side["rise_by_category_gib"],
            "rss_peak_after_warmup_gib": rss_after_warmup, "rss_peak_gib": rss_peak, "profiled_steps": profiled,
            "onednn_primitive_cache_capacity": os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "kit default"),
            "malloc": os.environ.get("SAFSD_GLNET_MALLOC", "glibc"), "row_buckets": buckets}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    p.add_argument("--steps", type=int, default=60, help="training steps after one warm-up (default 60)")
    p.add_argument("--profiled", type=int, default=3, help="of them, profiled again afterwards (default 3)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"),
                   help="the shared tables (for MELD's real dialogue lengths; synthetic lengths without them)")
    p.add_argument("--onednn-cache", type=int, default=None, help="ONEDNN_PRIMITIVE_CACHE_CAPACITY for every run")
    p.add_argument("--compact-heap", action="store_true", help="SAFSD_GLNET_MALLOC=compact for every run")
    p.add_argument("--no-row-buckets", action="store_true", help="plain nn.Linear (safsd_glnet.model.row_buckets)")
    p.add_argument("--out", default=None, help="write the rows as JSON here (appended to an existing file)")
    p.add_argument("--one", choices=("fp32", "bf16"), help=argparse.SUPPRESS)  # the child process
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.steps, args.profiled, args.threads, Path(args.data),
                                 buckets=not args.no_row_buckets)))
        return 0
    env = dict(os.environ)
    if args.onednn_cache is not None:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(args.onednn_cache)
    if args.compact_heap:
        env["SAFSD_GLNET_MALLOC"] = "compact"
    rows = []
    for precision in args.precisions:
        cmd = [sys.executable, __file__, "--one", precision, "--steps", str(args.steps), "--profiled", str(args.profiled),
               "--threads", str(args.threads), "--data", args.data] + ["--no-row-buckets"] * args.no_row_buckets
        done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print("precision  buckets  oneDNN cache  heap     params+Adam GiB  step's rise GiB  torch total  RSS peak GiB  "
          "outside torch  the rise by category (GiB)")
    for r in rows:
        split = ", ".join(f"{k} {v:+.2f}" for k, v in r["step_rise_by_category_gib"].items())
        total = r["persistent_gib"] + r["step_rise_gib"]
        print(f"{r['precision']:9}  {'on' if r['row_buckets'] else 'off':7}  {r['onednn_primitive_cache_capacity']!s:>12}  {r['malloc']:7}  "
              f"{r['persistent_gib']:15.2f}  {r['step_rise_gib']:15.2f}  {total:11.2f}  {r['rss_peak_gib']:12.2f}  "
              f"{r['rss_peak_gib'] - total:13.2f}  {split}")
    if args.out:
        out = Path(args.out)
        old = json.loads(out.read_text())["runs"] if out.exists() else []
        out.write_text(json.dumps({"runs": old + [{"command": "python benchmarks/bf16_memory_profile.py "
                                                   + " ".join(sys.argv[1:] if argv is None else argv),
                                                   "rows": rows}]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
