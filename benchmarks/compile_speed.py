"""Each hand kernel against torch.compile of the readable module it replaces.

For every speed kernel of ``safsd_glnet/model/kernels.py`` this times one training step's
forward and backward of the module alone, on the inputs that module really receives in the
paper-size model on one IEMOCAP-shaped batch (16 dialogues with real lengths from
``../shared/data``, random features; ``make_synthetic`` lengths without it):

* ``readable``: the readable module of ``safsd_glnet/model/network.py``, eager;
* ``readable compiled``: the same module under ``torch.compile(dynamic=True)`` (Inductor, with
  ``fallback_random`` as ``train.compile`` uses it);
* ``readable compiled, inductor rng``: the same without ``fallback_random`` (Inductor draws the
  dropout masks itself, fused, but not the masks an eager run draws: a run would not repeat
  its eager twin), to show what exact reproducibility costs;
* ``kernel``: the hand kernel, eager.

Modules: the dropout after each stream (``nn.Dropout`` / ``kernels.Dropout``, on (N, H)
rows), packing rows in and out of the padded layout (``Packing`` / ``FastPacking``), a modality
encoder, one attention layer, and the masked GCN (PyG's edge-list layer / the dense layer).
Each is fed the arguments captured from its own model's forward pass (so under bf16 autocast
the kernels get the bf16 activations they keep, the readable modules float32 ones, as in
training). The loss of the timed backward is ``sum(out * w)`` with a fixed random ``w``.

Method: every (module, precision, variant) is timed in each of ``--rounds`` rounds,
interleaved, ``--reps`` steps per round after one untimed step; the fastest round's mean step
is kept. The first call of a compiled module is its compile time (reported). The verdict per
kernel follows issue 24's rule: a kernel is deletable where the compiled readable module (as
``train.compile`` compiles it) is within 10% of it (``compiled <= 1.10 x kernel``) in every
precision measured. Slow steps (PyG's layer takes seconds) are timed fewer times per round.

Usage::

    python benchmarks/compile_speed.py                      # fp32 and bf16, 2 threads, 3 rounds
    python benchmarks/compile_speed.py --precisions fp32 --rounds 1 --reps 2   # a quick look

Writes ``benchmarks/results/compile_kernels_<device>.json`` and prints the table.
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

DEFAULT_DATA = REPO.parent / "shared" / "data"
KERNELS = ("dropout", "packing", "modality_encoder", "attention_layer", "gcn")
VARIANTS = ("readable", "readable compiled", "readable compiled, inductor rng", "kernel")
DELETE_WITHIN = 1.10  # issue 24: a kernel goes where compile matches it within 10%


def capture_inputs(model, batch, device, precision: str) -> dict[str, tuple[Any, tuple]]:
    """(module, args) that the first module of each kind receives in one training forward pass."""
    import torch

    from safsd_glnet.model.network import AttentionLayer, MaskedGCN, ModalityEncoder, Packing
    from safsd_glnet.training.train import _autocast

    kinds = {"modality_encoder": ModalityEncoder, "attention_layer": AttentionLayer, "gcn": MaskedGCN}
    found: dict[str, tuple[Any, tuple]] = {}

    def keeper(name: str):
        def hook(module, args) -> None:  # returns None: the call's arguments stay as they are
            if name not in found:
                found[name] = (module, tuple(detached(a) for a in args))
        return hook

    hooks = []
    for name, kind in kinds.items():
        module = next(m for m in model.modules() if isinstance(m, kind))
        hooks.append(module.register_forward_pre_hook(keeper(name)))
    encoder = next(m for m in model.modules() if isinstance(m, ModalityEncoder))
    hooks.append(encoder.dropout.register_forward_pre_hook(keeper("dropout")))
    model.train()
    with _autocast(device, precision):
        model(batch.to(device))
    for h in hooks:
        h.remove()
    packing = found["attention_layer"][1][2]  # AttentionLayer(x, context, packing)
    assert isinstance(packing, Packing), type(packing)
    rows = found["attention_layer"][1][0]  # (N, H) packed rows, in the model's stream dtype
    padded = torch.randn(*packing.real.shape, rows.shape[-1], dtype=rows.dtype, device=device)
    found["packing"] = (PackRoundTrip(packing), (padded,))
    return found


class PackRoundTrip:
    """``pad(pack(x))`` through a packing: (b, n, H) -> (N, H) -> (b, n, H)."""

    def __init__(self, packing):
        self.packing = packing

    def __call__(self, x):
        return self.packing.pad(self.packing.pack(x))


def detached(a):
    import torch

    if isinstance(a, torch.Tensor) and a.is_floating_point():
        return a.detach().clone()
    return a


def step_function(module, args, precision: str, device) -> Callable[[], None]:
    """One forward and backward of ``module`` on fresh leaf copies of ``args``."""
    import torch

    from safsd_glnet.training.train import _autocast

    out_weight: dict[tuple, Any] = {}

    def step() -> None:
        leaves = [a.clone().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                  for a in args]
        with _autocast(device, precision):
            out = module(*leaves)
        if out.shape not in out_weight:
            out_weight[out.shape] = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(device)
        (out.float() * out_weight[out.shape]).sum().backward()

    return step


def timed(step: Callable[[], None], reps: int, enough_s: float = 1.0) -> float:
    """Mean seconds of a step: one untimed step (allocations; nothing compiles here, the compile
    call was timed when the variant was built), then up to ``reps`` timed ones, fewer where a
    step is slow (about ``enough_s`` of timed work; a step over that is its own timing)."""
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    if first > enough_s:
        return first
    reps = max(1, min(reps, int(enough_s / max(first, 1e-6))))
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    return (time.perf_counter() - t0) / reps


def build(precision: str, data: Path, seed: int):
    """{kernel name: {variant: (step function, compile seconds or None)}} for one precision."""
    import torch

    import speed
    from safsd_glnet.config import preset
    from safsd_glnet.data import iterate_batches
    from safsd_glnet.model import compiled, kernels
    from safsd_glnet.training.train import build_model, seed_everything

    device = torch.device("cpu")
    corpus, source = speed.workload("iemocap", data, seed)
    config = preset("paper").replace(train={"batch_size": speed.BATCH_SIZE["iemocap"]})
    seed_everything(seed)
    readable = build_model(config, corpus, fast=False)
    fast = kernels.install(copy.deepcopy(readable))
    gen = torch.Generator().manual_seed(seed)
    batch = next(iter(iterate_batches(corpus.split("train"), speed.BATCH_SIZE["iemocap"], shuffle=True,
                                      generator=gen)))
    plain_inputs = capture_inputs(readable, batch, device, precision)
    fast_inputs = capture_inputs(fast, batch, device, precision)
    steps: dict[str, dict[str, tuple[Callable[[], None], float | None]]] = {}
    for name in KERNELS:
        module, args = plain_inputs[name]
        kernel, kernel_args = fast_inputs[name]
        if name == "packing":  # the round trip through the kernel's packing on the same rows
            kernel = PackRoundTrip(kernels.FastPacking(module.packing.real))
            kernel_args = args
        steps[name] = {"readable": (step_function(module, args, precision, device), None),
                       "kernel": (step_function(kernel, kernel_args, precision, device), None)}
        for variant, options in (("readable compiled", compiled.COMPILE_OPTIONS),
                                 ("readable compiled, inductor rng", {"fallback_random": False})):
            compile_step = step_function(torch.compile(module, dynamic=True, options=options), args, precision,
                                         device)
            t0 = time.perf_counter()
            compile_step()  # the first call compiles
            steps[name][variant] = (compile_step, time.perf_counter() - t0)
    return steps, source


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    import torch

    from safsd_glnet.data.atomic_files import write_json
    from safsd_glnet.model.precision import bf16_supported

    torch.set_num_threads(args.threads)
    built = {}
    for precision in args.precisions:
        print(f"building and compiling ({precision}) ...", flush=True)
        built[precision] = build(precision, Path(args.data), args.seed)
    times: dict[tuple[str, str, str], list[float]] = {}
    for round_ in range(args.rounds):
        for name in KERNELS:
            for precision in args.precisions:
                for variant in VARIANTS:
                    step, _ = built[precision][0][name][variant]
                    times.setdefault((name, precision, variant), []).append(timed(step, args.reps))
        print(f"round {round_ + 1}/{args.rounds} done (load {os.getloadavg()[0]:.2f})", flush=True)

    rows, verdicts = [], {}
    for name in KERNELS:
        ratios = {}
        for precision in args.precisions:
            best = {v: min(times[(name, precision, v)]) for v in VARIANTS}
            ratios[precision] = best["readable compiled"] / best["kernel"]
            rows.append({"kernel": name, "precision": precision,
                         **{f"{v} ms": round(1e3 * best[v], 3) for v in VARIANTS},
                         "compile s": round(built[precision][0][name]["readable compiled"][1], 1),
                         "compile s, inductor rng": round(built[precision][0][name][
                             "readable compiled, inductor rng"][1], 1),
                         "inductor rng / kernel": round(best["readable compiled, inductor rng"] / best["kernel"], 3),
                         "compiled / kernel": round(ratios[precision], 3),
                         "rounds ms": {v: [round(1e3 * t, 3) for t in times[(name, precision, v)]] for v in VARIANTS}})
        verdicts[name] = ("deletable: compile within 10%" if all(r <= DELETE_WITHIN for r in ratios.values())
                          else "keep: compile " + ", ".join(f"{r:.2f}x slower ({p})" for p, r in ratios.items()))
    header = f"{'kernel':18s} {'prec':5s} {'readable ms':>12s} {'compiled ms':>12s} {'ind. rng ms':>12s} " \
             f"{'kernel ms':>10s} {'compile s':>9s} {'cmp/kern':>8s} {'rng/kern':>8s}"
    print(header + "\n" + "-" * len(header))
    for r in rows:
        print(f"{r['kernel']:18s} {r['precision']:5s} {r['readable ms']:12.2f} {r['readable compiled ms']:12.2f} "
              f"{r['readable compiled, inductor rng ms']:12.2f} {r['kernel ms']:10.2f} {r['compile s']:9.1f} "
              f"{r['compiled / kernel']:8.2f} {r['inductor rng / kernel']:8.2f}")
    for name, verdict in verdicts.items():
        print(f"{name}: {verdict}")
    out = Path(args.out or REPO / "benchmarks" / "results" / "compile_kernels_cpu.json")
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    write_json(out, {"command": "python benchmarks/compile_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
                     "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                     "machine": {"cpu": cpu, "threads": args.threads, "bf16_units": bf16_supported(torch.device("cpu")),
                                 "torch": torch.__version__, "cores": os.cpu_count()},
                     "workload": built[args.precisions[0]][1], "rounds": args.rounds, "reps": args.reps,
                     "results": rows, "verdicts": verdicts})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
