"""Training and test speed of SAFSD-GLNet at paper size on IEMOCAP- and MELD-shaped workloads.

What it measures, per corpus, model configuration and precision (``--precisions``: fp32 and
bf16 autocast, as ``train.amp`` runs them), each in a fresh subprocess (so that the peak memory
of one configuration is not inherited by the next):

* ``train_epoch_s``: one training epoch over the train + valid dialogues (IEMOCAP 120, MELD
  1152), shuffled into batches as ``safsd_glnet.training.train.train`` does, each step exactly as there
  (``safsd_glnet.training.train.training_step``): ``batch.to(device)``, the model under
  ``train._autocast`` of the precision, ``LossComputer``, ``zero_grad``, ``backward``, the
  Adam step, and the per-term loss sums.
  With ``--max-batches N`` only the first N batches of the epoch are timed and the epoch is
  extrapolated by batch count (the output says so: ``extrapolated``);
* ``test_pass_s``: ``safsd_glnet.training.train.predict`` over the test dialogues (IEMOCAP 31, MELD 280)
  in the same precision; ``predict_utterances_per_s`` is its inference throughput;
* ``utterances_per_s`` of both, ``peak_rss_gib`` (``ru_maxrss`` of the worker: model,
  optimiser state, activations, the data set and the Python runtime; on CUDA also
  ``peak_cuda_gib``);
* ``train_flop_per_epoch``: counted by ``torch.utils.flop_counter.FlopCounterMode`` in an
  untimed pass over the same batches after the timings and the memory reading (in the first
  round; later rounds run the same batches and reuse it); matrix products only (mm, addmm,
  bmm, attention kernels), as FLOP counts usually are. One untimed step before the epoch
  allocates the Adam state;
* ``achieved_flops`` = FLOP / time of the timed steps, and ``matmul_flops``: a plain
  ``(T, H) @ (H, H)`` product in fp32 and in bf16 measured in the same worker before and
  after the epoch, T the mean number of real utterances per batch (the rows the model's
  linear layers see); also a 1024^3 product in both. ``efficiency`` = achieved / matmul of
  the run's precision (comparable size): a bf16 epoch is held against the bf16 matmul.

Configurations: ``sdt`` (the Transformer half alone: ``model.use_gcn=false``; the kit's
model without its GCN, not SDT's own code), ``full`` (the paper model, dense GCN over the
fully connected dialogue graph, the kit's default), ``full-window`` (the same with
``--window`` past / future utterances), ``full-readable`` (the readable model of
``safsd_glnet/model/network.py`` without the speed kernels: PyTorch Geometric's edge-list layer),
``full-unbucketed`` (the kernels with plain ``nn.Linear`` for the row-bucketed layers of
``safsd_glnet/model/row_buckets.py``: what bucketing buys).

Rounds (``--rounds``) interleave every (corpus, configuration, precision) once per round, so
that a slow spell of a shared machine hits fp32 and bf16 alike; the fastest round is kept and
every round's epoch time is in ``train_epoch_s_rounds``. The JSON's ``comparisons`` hold the
ratios measured in this run: bf16 against fp32 per configuration, and the full model against
``sdt`` per precision.

Workloads. With the real transcripts at ``--data`` (``../shared/data``: iemocap_utterances.csv
and the MELD csvs) every dialogue keeps its real length, speakers and labels and gets random
features of the standard sizes (text 1024, audio 1582 for IEMOCAP / 300 for MELD, visual
342). Without them the kit's own ``make_synthetic`` corpora are used (lengths drawn like the
real ones). Batch size 16 (IEMOCAP) and 8 (MELD), as the reference scripts.

Other modes:

* ``--scaling``: time against dialogue length (batches of ``--scaling-batch`` dialogues of
  equal length L): a whole training step of ``sdt`` / ``full`` / ``full-window``, and the GCN
  stage alone (forward + backward) for the dense layer and the PyG reference layer, each
  over the full graph and the windowed one; writes ``figures/speed_dialogue_length_scaling``
  (.png and .pdf) and the numbers into the JSON.
* ``--profile``: ``torch.profiler`` over training steps of one configuration
  (``--profile-config``, default ``full``) on one workload (``--profile-corpus``, default
  ``iemocap``) in one precision (``--profile-precision``, default fp32): the operators that
  take the time, and forward time per stage (encoders, hybrid attention, GCN, heads) from
  module hooks; written to ``--profile-out``.

Usage::

    python benchmarks/speed.py                                   # CPU, 2 threads, both corpora
    python benchmarks/speed.py --corpus iemocap --max-batches 3  # quick look
    python benchmarks/speed.py --configs sdt full full-window full-readable
    python benchmarks/speed.py --scaling --no-epochs             # only the plot
    python benchmarks/speed.py --profile --no-epochs
    python benchmarks/speed.py --device cuda                     # fp32 and bf16 on a GPU
    python benchmarks/speed.py --precisions fp32                 # fp32 only

The JSON goes to ``--out`` (default ``benchmarks/results/speed_<device>.json``) and is
rewritten after each measurement, so an interrupted run keeps what it finished. On a shared
machine other processes slow everything down: the JSON records the load average, and the
matmul speed taken in the same worker is the yardstick that moves with it.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from safsd_glnet.provenance import code_version  # noqa: E402
from safsd_glnet.dataset_facts import IEMOCAP_CLASSES  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_FIGURE = REPO / "figures" / "speed_dialogue_length_scaling"
CORPORA = ("iemocap", "meld")
BATCH_SIZE = {"iemocap": 16, "meld": 8}  # the reference scripts' batch sizes
FEATURE_SIZES = {"iemocap": {"t": 1024, "a": 1582, "v": 342}, "meld": {"t": 1024, "a": 300, "v": 342}}
CONFIGS = ("sdt", "full", "full-window", "full-readable", "full-compiled", "full-readable-compiled", "full-unbucketed")
READABLE = ("full-readable", "full-readable-compiled")  # built without the speed kernels
EAGER_TWIN = {"full-compiled": "full", "full-readable-compiled": "full-readable"}  # the same maths, eager
PRECISIONS = ("fp32", "bf16")
GIB = 2.0 ** 30
MARKER = "SPEED-RESULT "  # prefix of the worker's result line on stdout


# --------------------------------------------------------------------------- workloads

def model_overrides(name: str, window: int) -> dict[str, Any]:
    """``model`` section changes of a configuration name (see the module docstring)."""
    table = {
        "sdt": {"use_gcn": False},
        "full": {},
        "full-window": {"window_past": window, "window_future": window},
        "full-readable": {},  # the full model without kernels (build_model(fast=False))
        "full-compiled": {},  # the kernels, with train.compile's regions compiled (safsd_glnet.model.compiled)
        "full-readable-compiled": {},  # the readable model, its whole forward under torch.compile
        "full-unbucketed": {},  # the kernels without row buckets (safsd_glnet.model.row_buckets.remove)
    }
    if name not in table:
        raise ValueError(f"unknown configuration {name!r}, expected one of {CONFIGS}")
    return table[name]


def real_table(corpus: str, data: Path):
    """The real transcript table of ``corpus`` under ``data``, or None where it is absent."""
    from safsd_glnet.data.tables import read_meld_dir, read_table

    if corpus == "iemocap":
        path = data / "iemocap" / "iemocap_utterances.csv"
        return read_table(path, class_names="iemocap") if path.is_file() else None
    folder = data / "meld"
    return read_meld_dir(folder) if (folder / "train_sent_emo.csv").is_file() else None


def workload(corpus: str, data: Path, seed: int = 0):
    """(Corpus with splits ``train`` = train + valid and ``test``, description of its source)."""
    import numpy as np

    from safsd_glnet.data import Corpus, Dialogue, make_synthetic

    sizes = FEATURE_SIZES[corpus]
    table = real_table(corpus, data)
    if table is None:
        base = make_synthetic(corpus, seed=seed, feature_sizes=sizes)
        source = f"make_synthetic({corpus!r}, seed={seed}): synthetic lengths (no transcripts at {data})"
        dialogues = base.dialogues
        class_names, speaker_names, splits = base.class_names, base.speaker_names, base.splits
    else:
        rng = np.random.default_rng(seed)
        dialogues = {
            d.id: Dialogue(d.id, np.asarray(d.speakers, dtype=np.int64), np.asarray(d.labels, dtype=np.int64),
                           {m: rng.standard_normal((len(d), s), dtype=np.float32) for m, s in sizes.items()})
            for d in table.dialogues}
        class_names, speaker_names, splits = table.class_names, table.speaker_names, table.splits
        source = f"real dialogue lengths, speakers and labels from {table.source}; random features"
    merged = {"train": list(splits["train"]) + list(splits.get("valid", [])), "test": list(splits["test"])}
    return Corpus(corpus, list(class_names), list(speaker_names), sizes, dialogues, merged, source), source


def length_stats(lengths: list[int]) -> dict[str, float]:
    return {"dialogues": len(lengths), "utterances": int(sum(lengths)), "mean": sum(lengths) / len(lengths),
            "max": max(lengths)}


# --------------------------------------------------------------------------- timing helpers

def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(rows: int, hidden: int, device, dtype=None, seconds: float = 0.6) -> float:
    """FLOP/s of a plain ``(rows, hidden) @ (hidden, hidden)`` product: median of ~10 timings
    of as many repeats as fill ``seconds / 10``."""
    import torch

    dtype = dtype or torch.float32
    a = torch.randn(rows, hidden, device=device, dtype=dtype)
    b = torch.randn(hidden, hidden, device=device, dtype=dtype)
    flop = 2.0 * rows * hidden * hidden
    torch.mm(a, b)
    synchronize(device)
    t0 = time.perf_counter()
    torch.mm(a, b)
    synchronize(device)
    reps = max(1, int(seconds / 10 / max(time.perf_counter() - t0, 1e-6)))
    rates = []
    for _ in range(10):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        synchronize(device)
        rates.append(flop * reps / (time.perf_counter() - t0))
    return sorted(rates)[len(rates) // 2]


def matmul_probe(rows: int, hidden: int, device, seconds: float = 0.6) -> dict[str, float]:
    """fp32 and bf16 matmul speeds: the comparable ``(rows, hidden) @ (hidden, hidden)`` product
    and a 1024^3 one, each timed for about ``seconds``."""
    import torch

    out = {}
    for tag, dtype in (("", torch.float32), ("_bf16", torch.bfloat16)):
        out["comparable" + tag] = matmul_flops(rows, hidden, device, dtype, seconds)
        out["square_1024" + tag] = matmul_flops(1024, 1024, device, dtype, seconds)
    return out


def paper_training(corpus: str, data: Path, threads: int, seed: int = 0, buckets: bool = True):
    """The full model (hand kernels) at the paper preset on ``corpus``-shaped batches, on the CPU, with
    train.py's optimiser and losses, and the training split's batches in one seeded shuffled order:
    ``(model, optimizer, losses, batches, source)``; ``batches`` is an iterator that collates lazily;
    ``buckets=False``: without the row buckets (``safsd_glnet.model.row_buckets``).
    For the scripts that look inside training steps (bf16_memory_profile.py, onednn_primitives.py)."""
    import torch

    from safsd_glnet.config import preset
    from safsd_glnet.data import iterate_batches
    from safsd_glnet.model import row_buckets
    from safsd_glnet.model.losses import LossComputer
    from safsd_glnet.training.train import build_model, make_optimizer, seed_everything

    torch.set_num_threads(threads)
    dataset, source = workload(corpus, data, seed)
    size = BATCH_SIZE[corpus]
    config = preset("paper").replace(model=model_overrides("full", 0), train={"batch_size": size})
    seed_everything(seed)
    model = build_model(config, dataset, fast=True).train()
    if not buckets:
        row_buckets.remove(model)
    optimizer = make_optimizer(config.train, model.parameters(), torch.device("cpu"))
    losses = LossComputer.from_counts(config.loss, dataset.class_counts("train"), dataset.class_names)
    gen = torch.Generator().manual_seed(seed)
    return model, optimizer, losses, iterate_batches(dataset.split("train"), size, shuffle=True, generator=gen), source


def peak_memory(device) -> dict[str, float]:
    import torch

    # ru_maxrss is in KiB on Linux, bytes on macOS.
    scale = 1.0 if sys.platform == "darwin" else 1024.0
    out = {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / GIB}
    if device.type == "cuda":
        out["peak_cuda_gib"] = torch.cuda.max_memory_allocated(device) / GIB
    return out


# --------------------------------------------------------------------------- one configuration

def train_steps(model, optimizer, losses, batches, device, amp):
    """Run the training steps of ``safsd_glnet.training.train.train`` over ``batches`` (an iterator that
    collates lazily, as there). Returns seconds per step, from taking the batch (collation
    included) to the end of the optimiser step, and (real utterances, padded positions)."""
    from safsd_glnet.training.train import training_step

    times, real, padded = [], 0, 0
    model.train()
    sums: dict[str, float] = {}
    batches = iter(batches)
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            break
        _, labels, terms = training_step(model, optimizer, losses, batch, device, amp)
        for name, value in terms.items():  # train.py reads every term back (a sync on CUDA)
            sums[name] = sums.get(name, 0.0) + float(value) * len(labels)
        synchronize(device)
        times.append(time.perf_counter() - t0)
        real += len(labels)
        padded += batch.real.numel()  # the padded (b, n) positions of the batch
    return times, real, padded


def run_config(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one (corpus, configuration) in this process; see the module docstring."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from safsd_glnet.config import preset
    from safsd_glnet.data import iterate_batches, num_batches
    from safsd_glnet.model import row_buckets
    from safsd_glnet.model.losses import LossComputer
    from safsd_glnet.model.network import count_parameters
    from safsd_glnet.model.precision import bf16_supported, train_precision
    from safsd_glnet.training.train import build_model, make_optimizer, predict, seed_everything, select_device

    if spec.get("flop") is None and spec["config"] in EAGER_TWIN:  # FlopCounterMode does not see compiled code
        raise SystemExit(f"speed.py: {spec['config']} takes its FLOP count from {EAGER_TWIN[spec['config']]}: "
                         "list that configuration before it in --configs")
    torch.set_num_threads(spec["threads"])
    device = select_device(spec["device"])
    corpus, source = workload(spec["corpus"], Path(spec["data"]), spec["seed"])
    batch_size = BATCH_SIZE[spec["corpus"]]
    config = preset(spec["preset"]).replace(model=model_overrides(spec["config"], spec["window"]),
                                            train={"batch_size": batch_size})
    seed_everything(spec["seed"])
    model = build_model(config, corpus, fast=spec["config"] not in READABLE).to(device)
    if spec["config"] == "full-unbucketed":
        row_buckets.remove(model)
    compile_graphs = compile_model(model, spec["config"])
    # as train.py; --default-adam: torch's default step, to show what fusing saves
    optimizer = make_optimizer(config.train, model.parameters(), device,
                               fused=False if spec["default_adam"] else None)
    losses = LossComputer.from_counts(config.loss, corpus.class_counts("train"), corpus.class_names).to(device)
    amp = spec["precision"]  # "fp32" or "bf16", given to train.amp's autocast as it is
    precision = train_precision(amp, device)
    train_dialogues, test_dialogues = corpus.split("train"), corpus.split("test")
    total = num_batches(len(train_dialogues), batch_size)
    timed = total if spec["max_batches"] is None else min(total, spec["max_batches"])

    def epoch_batches():  # the same shuffled order for the counting pass and the timed pass
        gen = torch.Generator().manual_seed(spec["seed"])
        return islice(iterate_batches(train_dialogues, batch_size, shuffle=True, generator=gen), timed)

    hidden = config.model.hidden
    t0 = time.perf_counter()
    train_steps(model, optimizer, losses, islice(epoch_batches(), 1), device, amp)  # warm-up: Adam state (and compile)
    first_step_s = time.perf_counter() - t0
    graphs_after_first_step = compile_graphs()
    rows = max(1, round(sum(len(d) for d in train_dialogues) / total))
    before = matmul_probe(rows, hidden, device, spec.get("matmul_seconds", 0.6))
    load_before = os.getloadavg()
    c0, t0 = time.process_time(), time.perf_counter()
    steps, real, padded = train_steps(model, optimizer, losses, epoch_batches(), device, amp)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    load_after = os.getloadavg()
    graphs_after_epoch = compile_graphs()
    after = matmul_probe(rows, hidden, device, spec.get("matmul_seconds", 0.6))

    predict(model, test_dialogues[:batch_size], batch_size, device, amp=amp)  # warm the eval path
    synchronize(device)
    t0 = time.perf_counter()
    predict(model, test_dialogues, batch_size, device, amp=amp)
    synchronize(device)
    test_s = time.perf_counter() - t0
    memory = peak_memory(device)  # before counting: FlopCounterMode itself raises the peak by ~0.6 GiB

    if spec.get("flop") is None:
        counter = FlopCounterMode(display=False)
        with counter:  # entering it again would reset its counts
            train_steps(model, optimizer, losses, epoch_batches(), device, amp)
        flop = float(counter.get_total_flops())
    else:  # counted in an earlier round: the same batches, the same products
        flop = spec["flop"]

    factor = total / timed
    matmul = {k: (before[k] + after[k]) / 2 for k in before}
    achieved = flop / sum(steps)
    yardstick = matmul["comparable_bf16" if precision == "bf16" else "comparable"]
    train_utts = sum(len(d) for d in train_dialogues)
    test_utts = sum(len(d) for d in test_dialogues)
    return {
        "corpus": spec["corpus"], "config": spec["config"], "preset": spec["preset"],
        "model_overrides": model_overrides(spec["config"], spec["window"]),
        "device": str(device), "threads": torch.get_num_threads(), "precision": precision,
        "bf16_units": bf16_supported(device),
        "optimizer": config.train.optimizer + (" (torch default)" if spec["default_adam"] else
                                                 " (train.make_optimizer: fused on cpu/cuda)"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "workload": source, "batch_size": batch_size,
        "train_lengths": length_stats([len(d) for d in train_dialogues]),
        "test_lengths": length_stats([len(d) for d in test_dialogues]),
        "num_parameters": count_parameters(model),
        "batches_per_epoch": total, "batches_timed": timed, "extrapolated": timed < total,
        "timed_real_utterances": real, "timed_padded_positions": padded,
        "train_epoch_s": wall * factor,
        "train_epoch_cpu_s": cpu * factor,
        "train_step_s": {"mean": float(np.mean(steps)), "median": float(np.median(steps)),
                         "min": float(np.min(steps)), "max": float(np.max(steps))},
        "train_utterances_per_s": real / wall,
        "test_pass_s": test_s,
        "test_utterances_per_s": test_utts / test_s,
        "predict_utterances_per_s": test_utts / test_s,  # inference throughput (predict, eval mode)
        "train_utterances_per_epoch": train_utts,
        "train_flop_per_epoch": flop * factor,
        "timed_flop": flop,
        "achieved_flops": achieved,
        "matmul_rows": rows,
        "matmul_flops": matmul, "matmul_flops_before": before, "matmul_flops_after": after,
        "efficiency": achieved / yardstick,
        # the first step (the optimiser's state, and for the compiled configurations the compilation),
        # and graphs compiled: by the end of that step, and during the timed epoch (recompiles)
        "first_step_s": first_step_s,
        "compiled_graphs_first_step": graphs_after_first_step,
        "compiled_graphs_during_epoch": graphs_after_epoch - graphs_after_first_step,
        "load_average_1min": [load_before[0], load_after[0]],
        **memory,
    }


def compile_model(model, config: str):
    """Compile ``model`` as configuration ``config`` asks; returns a function that reads how many
    graphs torch.compile has made in this process so far (0 for the eager configurations)."""
    import torch
    from torch._dynamo.utils import counters

    from safsd_glnet.model import compiled

    if config == "full-compiled":
        compiled.compile_regions(model)
    elif config == "full-readable-compiled":
        model.forward = torch.compile(model.forward, dynamic=True, options=compiled.COMPILE_OPTIONS)
    return lambda: int(counters["stats"].get("unique_graphs", 0))


def wait_for_load(limit: float | None, longest: float) -> float:
    """Wait (up to ``longest`` seconds) until the 1-minute load average is below ``limit``;
    returns the seconds waited. Other processes on a shared machine distort every timing."""
    if limit is None:
        return 0.0
    t0 = time.time()
    while os.getloadavg()[0] >= limit and time.time() - t0 < longest:
        time.sleep(15)
    return time.time() - t0


def run_in_subprocess(spec: dict[str, Any], omp_wait_policy: str | None = None) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), MKL_NUM_THREADS=str(spec["threads"]))
    if omp_wait_policy:
        env["OMP_WAIT_POLICY"] = omp_wait_policy
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker for {spec['corpus']}/{spec['config']} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len(MARKER):])


# --------------------------------------------------------------------------- scaling with length

def scaling(args) -> dict[str, Any]:
    """Seconds per forward + backward against the dialogue length L, for batches of
    ``--scaling-batch`` dialogues of length L: the GCN stage alone (``MaskedGCN`` in training
    mode, dense and PyG layers, full graph and window) and the whole model with its loss. The
    Adam step is left out: it costs the same at every L (80 M parameters)."""
    import dataclasses

    import numpy as np
    import torch

    from safsd_glnet.config import preset
    from safsd_glnet.data.batching import collate
    from safsd_glnet.data.corpus import Dialogue
    from safsd_glnet.model.losses import LossComputer
    from safsd_glnet.model.kernels import DenseMaskedGCN
    from safsd_glnet.model.network import MaskedGCN, Packing, SAFSDGLNet
    from safsd_glnet.training.train import select_device

    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    sizes = FEATURE_SIZES["iemocap"]
    base = preset(args.preset)
    hidden, layers, w = base.model.hidden, base.model.gcn_layers, args.window
    b = args.scaling_batch
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"batch": b, "window": w, "lengths": args.lengths, "gcn_s": {}, "step_s": {},
                           "edges": {}, "pyg_limit_gib": args.pyg_limit_gib, "threads": args.threads,
                           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset")}

    def best_of(fn) -> float:
        fn()  # warm-up
        synchronize(device)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - t0)
        return min(times)

    def edges(L: int, window: int | None) -> int:  # directed edges of b dialogues, 3 modalities
        intra = L * (L - 1) if window is None else sum(min(i, window) + min(L - 1 - i, window) for i in range(L))
        return b * (3 * intra + 6 * L)

    gcn_variants = {"dense, full graph": ("dense", None), f"dense, window {w}": ("dense", w),
                    "PyG, full graph": ("pyg", None), f"PyG, window {w}": ("pyg", w)}
    for name, (impl, window) in gcn_variants.items():
        cfg = dataclasses.replace(base.model, window_past=window, window_future=window)
        gcn = MaskedGCN(cfg, True, 2).to(device).train()
        if impl == "dense":
            gcn.__class__ = DenseMaskedGCN  # what kernels.install does
        out["edges"][name] = [edges(L, window) for L in args.lengths]
        series = []
        for L in args.lengths:
            # The PyG layer keeps about five (E, H) tensors per layer for the backward pass.
            if impl == "pyg" and 5 * layers * edges(L, window) * hidden * 4 > args.pyg_limit_gib * GIB:
                series.append(None)
                continue
            lengths = torch.full((b,), L, device=device)
            packing = Packing(torch.ones(b, L, dtype=torch.bool, device=device))
            speakers = torch.zeros(b * L, dtype=torch.long, device=device)
            x = torch.randn(3, b * L, hidden, device=device, requires_grad=True)
            series.append(best_of(lambda: gcn(x, speakers, lengths, packing).sum().backward()))
            print(f"  GCN {name:20s} L={L:5d}: {series[-1] * 1e3:9.1f} ms", flush=True)
        out["gcn_s"][name] = series

    names = list(IEMOCAP_CLASSES)
    for config in ("sdt", "full", "full-window"):
        cfg = base.replace(model=model_overrides(config, w))
        torch.manual_seed(0)
        model = SAFSDGLNet(cfg.model, sizes, len(names), 2).to(device).train()
        losses = LossComputer.from_counts(cfg.loss, np.ones(len(names)), names).to(device)
        series = []
        for L in args.lengths:
            if L > args.step_max_length:
                series.append(None)
                continue
            batch = collate([Dialogue(str(i), rng.integers(0, 2, L), rng.integers(0, len(names), L),
                                      {m: rng.standard_normal((L, s), dtype=np.float32) for m, s in sizes.items()})
                             for i in range(b)]).to(device)

            def step():
                model.zero_grad(set_to_none=True)
                losses(model(batch), batch.real_labels)[0].backward()
            series.append(best_of(step))
            print(f"  model {config:12s} L={L:5d}: {series[-1]:8.3f} s", flush=True)
        label = {"sdt": "Transformer only (sdt)", "full": "full model, full graph",
                 "full-window": f"full model, window {w}"}[config]
        out["step_s"][label] = series
        del model
    return out


def plot_scaling(result: dict[str, Any], path: Path, device: str) -> list[Path]:
    """Two log-log panels against L: the GCN stage alone, and the whole model; dotted and
    dash-dotted grey lines of slope 1 and 2 end at the last point of the first curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from safsd_glnet.notebook.plots import save_figure

    lengths = result["lengths"]
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.4))
    panels = ((axes[0], "gcn_s", "GCN stage alone (4 layers, forward + backward)", 1e3, "ms"),
              (axes[1], "step_s", "Whole model (forward, loss, backward; not the Adam step)", 1.0, "seconds"))
    for ax, key, title, unit, ylabel in panels:
        for name, series in result[key].items():
            pts = [(L, t * unit) for L, t in zip(lengths, series) if t is not None]
            if pts:
                style = "--" if name.startswith("PyG") else (":" if "only" in name else "-")
                ax.plot(*zip(*pts), style, marker="o", ms=3.5, label=name)
        first = [(L, t * unit) for L, t in zip(lengths, next(iter(result[key].values()))) if t is not None]
        (x1, y1), x0 = first[-1], first[max(0, len(first) - 4)][0]  # guides over the last 3 doublings
        ax.plot([x0, x1], [y1 * x0 / x1, y1], ":", color="grey", lw=1, label="slope 1 (linear)")
        ax.plot([x0, x1], [y1 * (x0 / x1) ** 2, y1], "-.", color="grey", lw=1, label="slope 2 (quadratic)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(f"dialogue length L ({result['batch']} dialogue{'s' if result['batch'] > 1 else ''} per batch)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7.5)
    fig.suptitle(f"SAFSD-GLNet paper size (H = 1024), training-mode cost against dialogue length ({device}); "
                 f"PyG points stop where its per-edge tensors would pass {result['pyg_limit_gib']:g} GiB",
                 fontsize=9.5)
    fig.tight_layout()
    files = save_figure(fig, path)
    plt.close(fig)
    return files


# --------------------------------------------------------------------------- profile

def profile(args) -> str:
    """torch.profiler table of training steps of ``--profile-config`` on ``--profile-corpus`` batches, plus the
    forward time of each stage from module hooks."""
    import torch
    from torch.profiler import ProfilerActivity, profile as torch_profile, record_function

    from safsd_glnet.config import preset
    from safsd_glnet.data import iterate_batches
    from safsd_glnet.model.losses import LossComputer
    from safsd_glnet.training.train import _autocast, build_model, make_optimizer, select_device

    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    corpus, source = workload(args.profile_corpus, Path(args.data))
    batch_size = BATCH_SIZE[args.profile_corpus]
    config = preset(args.preset).replace(model=model_overrides(args.profile_config, args.window),
                                         train={"batch_size": batch_size})
    torch.manual_seed(0)
    model = build_model(config, corpus, fast=args.profile_config != "full-readable").to(device).train()
    optimizer = make_optimizer(config.train, model.parameters(), device)
    losses = LossComputer.from_counts(config.loss, corpus.class_counts("train"), corpus.class_names).to(device)
    gen = torch.Generator().manual_seed(0)
    batches = [b for _, b in zip(range(args.profile_steps + 1),
                                 iterate_batches(corpus.split("train"), batch_size, shuffle=True, generator=gen))]
    stage_s: dict[str, float] = {}
    stages = [("encoders", m) for m in model.encoders.values()] + [
        ("hybrid attention", model.attention), ("GCN", model.gcn), ("teacher", model.teacher)] + [
        ("students", m) for m in model.students.values()]
    clock: dict[str, float] = {}
    for name, module in stages:
        if module is None:
            continue
        module.register_forward_pre_hook(lambda m, a, name=name: clock.__setitem__(name, time.perf_counter()))
        module.register_forward_hook(lambda m, a, o, name=name: stage_s.__setitem__(
            name, stage_s.get(name, 0.0) + time.perf_counter() - clock[name]))

    def step(batch):
        batch = batch.to(device)
        with record_function("forward"), _autocast(device, args.profile_precision):
            output = model(batch)
        with record_function("loss"):
            loss, _ = losses(output, batch.real_labels)
        optimizer.zero_grad(set_to_none=True)
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer step"):
            optimizer.step()

    step(batches[0])  # warm-up: Adam state
    stage_s.clear()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for batch in batches[1:]:
            step(batch)
        wall = time.perf_counter() - t0
    n = len(batches) - 1
    lines = [f"configuration {args.profile_config}, {args.profile_precision}, preset {args.preset}, "
             f"{args.profile_corpus}-shaped batches of "
             f"{batch_size} ({source}), {n} steps, "
             f"{device}, {torch.get_num_threads()} threads, {wall / n:.2f} s per step",
             "forward time per stage (module hooks), seconds per step: "
             + ", ".join(f"{k} {v / n:.3f}" for k, v in stage_s.items())]
    events = {e.key: e for e in prof.key_averages()}
    phases = {k: events[k].cpu_time_total / 1e6 / n for k in ("forward", "loss", "backward", "optimizer step")
              if k in events}
    lines.append("phases, seconds per step: " + ", ".join(f"{k} {v:.3f}" for k, v in phases.items()))
    lines.append(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_rows))
    return "\n".join(lines)


# --------------------------------------------------------------------------- driver

def _key(r: dict[str, Any]) -> tuple[str, str, str]:
    return r["corpus"], r["config"], r.get("precision", "fp32")  # entries from before precisions were fp32


def comparisons(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios of epoch times measured in this run: bf16 against fp32 (``speedup``: fp32 time /
    bf16 time, with peak memory and efficiency beside), and each configuration against ``sdt``
    (``vs_sdt``: time / sdt's time, per precision). Each entry names the two measurements."""
    by_key = {_key(r): r for r in results}
    out: dict[str, Any] = {"bf16_vs_fp32": [], "vs_sdt": []}
    for (corpus, config, precision), r in by_key.items():
        fp32 = by_key.get((corpus, config, "fp32"))
        if precision == "bf16" and fp32 is not None:
            out["bf16_vs_fp32"].append({
                "corpus": corpus, "config": config, "speedup": fp32["train_epoch_s"] / r["train_epoch_s"],
                "train_epoch_s": {"fp32": fp32["train_epoch_s"], "bf16": r["train_epoch_s"]},
                "predict_utterances_per_s": {"fp32": fp32["predict_utterances_per_s"],
                                             "bf16": r["predict_utterances_per_s"]},
                "peak_rss_gib": {"fp32": fp32["peak_rss_gib"], "bf16": r["peak_rss_gib"]},
                "efficiency": {"fp32": fp32["efficiency"], "bf16": r["efficiency"]}})
        sdt = by_key.get((corpus, "sdt", precision))
        if config != "sdt" and sdt is not None:
            out["vs_sdt"].append({"corpus": corpus, "config": config, "precision": precision,
                                  "sdt_speedup": sdt["train_epoch_s"] / r["train_epoch_s"],
                                  "time_ratio": r["train_epoch_s"] / sdt["train_epoch_s"]})
    return out


def summary_table(results: list[dict[str, Any]]) -> str:
    head = ("corpus   config        prec  epoch s  test s  pred utt/s  peak GiB  TFLOP/ep  achieved GF/s  "
            "matmul GF/s  eff.  vs fp32  vs sdt")
    lines = [head, "-" * len(head)]
    by_key = {_key(r): r for r in results}
    for r in results:
        corpus, config, precision = _key(r)
        fp32, sdt = by_key.get((corpus, config, "fp32")), by_key.get((corpus, "sdt", precision))
        speedup = fp32["train_epoch_s"] / r["train_epoch_s"] if fp32 else float("nan")
        ratio = r["train_epoch_s"] / sdt["train_epoch_s"] if sdt else float("nan")
        matmul = r["matmul_flops"].get("comparable_bf16" if precision == "bf16" else "comparable", float("nan"))
        lines.append(f"{corpus:8s} {config:12s} {precision:5s} {r['train_epoch_s']:7.1f} {r['test_pass_s']:7.2f} "
                     f"{r.get('predict_utterances_per_s', r['test_utterances_per_s']):11.0f} "
                     f"{r.get('peak_cuda_gib', r['peak_rss_gib']):9.2f} "
                     f"{r['train_flop_per_epoch'] / 1e12:9.2f} {r['achieved_flops'] / 1e9:14.1f} "
                     f"{matmul / 1e9:12.1f} {r['efficiency']:5.2f} {speedup:8.2f} {ratio:7.3f}"
                     + ("  (extrapolated)" if r["extrapolated"] else ""))
    return "\n".join(lines)


def machine_info(args) -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    from safsd_glnet.model.precision import cpu_bf16_flags

    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "cpu_bf16_flags": list(cpu_bf16_flags()),
            "threads": args.threads, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(), **code_version("benchmarks/speed.py")}
    if args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available()):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", nargs="+", default=list(CORPORA), choices=CORPORA)
    p.add_argument("--configs", nargs="+", default=["sdt", "full"], choices=CONFIGS)
    p.add_argument("--preset", default="paper", help="config preset (default paper: H = 1024)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, or auto (cuda > mps > cpu)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2, the issue's setting)")
    p.add_argument("--max-batches", type=int, default=None,
                   help="time only the first N batches of the epoch and extrapolate by batch count")
    p.add_argument("--epochs-fraction", type=float, default=None,
                   help="like --max-batches, as a fraction of the epoch's batches")
    p.add_argument("--window", type=int, default=8, help="past and future utterances of full-window (default 8)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder with the real transcripts (lengths only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS,
                   help="fp32 and/or bf16 autocast (default both, interleaved in every round)")
    p.add_argument("--no-amp", action="store_true", help="the same as --precisions fp32")
    p.add_argument("--matmul-seconds", type=float, default=0.6,
                   help="time for each matmul reference product (4 before and 4 after each epoch)")
    p.add_argument("--no-epochs", action="store_true", help="skip the epoch measurements")
    p.add_argument("--wait-load", type=float, default=None,
                   help="before each configuration wait until the 1-minute load average is below this")
    p.add_argument("--wait-max", type=float, default=1800, help="longest wait for --wait-load, seconds")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every configuration this many times, interleaved; the fastest round is kept")
    p.add_argument("--omp-wait-policy", choices=["PASSIVE", "ACTIVE"], default=None,
                   help="OMP_WAIT_POLICY for the workers (default: inherited). PASSIVE protects the timings "
                        "from collapsing when other processes share the cores")
    p.add_argument("--default-adam", action="store_true",
                   help="torch's default Adam step (a per-parameter loop on the CPU) instead of train.py's "
                        "fused one, to show what fusing saves")
    p.add_argument("--scaling", action="store_true", help="measure cost against dialogue length and plot it")
    p.add_argument("--lengths", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256, 512, 1024])
    p.add_argument("--scaling-batch", type=int, default=1, help="dialogues per batch in --scaling (default 1)")
    p.add_argument("--step-max-length", type=int, default=1024, help="longest L for whole-model steps")
    p.add_argument("--pyg-limit-gib", type=float, default=6.0,
                   help="skip PyG points whose per-edge tensors (about 5 (E, H) per layer) would pass this")
    p.add_argument("--repeats", type=int, default=3, help="timings per point in --scaling (the best counts)")
    p.add_argument("--figure", default=str(DEFAULT_FIGURE), help="scaling plot path, without suffix")
    p.add_argument("--profile", action="store_true", help="torch.profiler table of one configuration")
    p.add_argument("--profile-corpus", choices=CORPORA, default="iemocap")
    p.add_argument("--profile-config", choices=CONFIGS, default="full")
    p.add_argument("--profile-precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--profile-steps", type=int, default=2)
    p.add_argument("--profile-rows", type=int, default=25)
    p.add_argument("--profile-out", default=None, help="default benchmarks/results/profile_<device>.txt "
                   "(iemocap, full, fp32), else profile_<device>_<corpus>_<config>[_bf16].txt")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/speed_<device>.json)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:  # one configuration, in its own process
        print(MARKER + json.dumps(run_config(json.loads(args.worker))), flush=True)
        return 0
    device_tag = args.device.split(":")[0]
    out = Path(args.out or REPO / "benchmarks" / "results" / f"speed_{device_tag}.json")
    from safsd_glnet.data.atomic_files import read_json, write_json, write_text

    previous = read_json(out) if out.exists() else {}  # a corrupt file stops here, naming itself
    precisions = ["fp32"] if args.no_amp else list(dict.fromkeys(args.precisions))
    command = "python benchmarks/speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    stamp = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    machine = machine_info(args)
    same_machine = previous.get("machine", {}).get("cpu") == machine["cpu"]
    report: dict[str, Any] = {  # sections not measured now are kept from the previous file (same CPU only)
        **stamp, "machine": machine,
        "epochs": previous.get("epochs", []) if same_machine else [], "scaling": previous.get("scaling"),
    }

    if not args.no_epochs:
        report["epochs"] = [r for r in report["epochs"] if _key(r)[0] not in args.corpus
                            or _key(r)[1] not in args.configs or _key(r)[2] not in precisions]
        best: dict[tuple[str, str, str], dict[str, Any]] = {}
        jobs = [(corpus, config, precision) for corpus in args.corpus for config in args.configs
                for precision in precisions]
        for round_ in range(args.rounds):  # configurations interleaved, so slow spells hit all alike
            for corpus, config, precision in jobs:
                max_batches = args.max_batches
                if args.epochs_fraction is not None:
                    n_train = {"iemocap": 120, "meld": 1152}[corpus]
                    max_batches = max(1, math.ceil(args.epochs_fraction * -(-n_train // BATCH_SIZE[corpus])))
                spec = {"corpus": corpus, "config": config, "preset": args.preset, "device": args.device,
                        "threads": args.threads, "max_batches": max_batches, "window": args.window,
                        "data": args.data, "seed": args.seed, "precision": precision,
                        "default_adam": args.default_adam, "matmul_seconds": args.matmul_seconds,
                        "flop": next((best[k]["timed_flop"] for k in ((corpus, config, precision),
                                                                       (corpus, EAGER_TWIN.get(config), precision))
                                      if k in best), None)}
                waited = wait_for_load(args.wait_load, args.wait_max)
                print(f"round {round_ + 1}/{args.rounds}: {corpus} / {config} / {precision} "
                      f"(load {os.getloadavg()[0]:.2f}) ...", flush=True)
                result = run_in_subprocess(spec, args.omp_wait_policy)
                result["waited_for_load_s"] = waited
                result.update(stamp)
                print(f"  epoch {result['train_epoch_s']:.1f} s, test {result['test_pass_s']:.2f} s, "
                      f"peak {result['peak_rss_gib']:.2f} GiB, efficiency {result['efficiency']:.2f} "
                      f"(load {result['load_average_1min'][0]:.2f} - {result['load_average_1min'][1]:.2f})",
                      flush=True)
                key = (corpus, config, precision)
                rounds = best[key]["train_epoch_s_rounds"] if key in best else []
                if key not in best or result["train_epoch_s"] < best[key]["train_epoch_s"]:
                    best[key] = result
                best[key]["train_epoch_s_rounds"] = rounds + [result["train_epoch_s"]]
                report["epochs"] = [r for r in report["epochs"] if _key(r) != key]
                report["epochs"].append(best[key])
                report["comparisons"] = comparisons(report["epochs"])
                write_json(out, report)
        print(summary_table(report["epochs"]))
    if args.scaling:
        import torch

        report["scaling"] = {**scaling(args), **stamp, "device": str(args.device)}
        files = plot_scaling(report["scaling"], Path(args.figure), f"{args.device}, {args.threads} threads"
                             if args.device == "cpu" else str(torch.cuda.get_device_name(0)))
        print("wrote " + ", ".join(str(f) for f in files))
    if not args.no_epochs or args.scaling:  # a profile alone leaves the JSON as it was
        write_json(out, report)
        print(f"wrote {out}")
    if args.profile:
        text = profile(args)
        print(text)
        default_name = (f"profile_{device_tag}.txt"
                        if (args.profile_corpus, args.profile_config, args.profile_precision) == ("iemocap", "full", "fp32")
                        else f"profile_{device_tag}_{args.profile_corpus}_{args.profile_config}"
                             f"{'_bf16' if args.profile_precision == 'bf16' else ''}.txt")
        path = Path(args.profile_out or REPO / "benchmarks" / "results" / default_name)
        write_text(path, text + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
