"""Fine-tuning speed on the real IEMOCAP table: training steps and encoding, fp32 vs bf16.

Measures, with the kit's own input construction, classifier and precision switch
(:mod:`safsd_glnet.features.finetune`), on the packaged MiniLM (or ``--encoder``):

* ``--steps N`` training steps of batch ``--batch-size`` drawn at random from the training
  split (seeded), each step forward + backward + AdamW + schedule exactly as ``fit`` does it;
  ``--time-limit`` stops earlier (the figure then says how many steps ran). The first
  ``--warmup-steps`` steps (one-off allocations, oneDNN kernel choices) are timed but left out
  of the mean;
* ``--encode``: one eval pass over every utterance of the table (what a run does at its end);
  ``--steps 0 --encode`` times the encoding alone (of the untrained classifier: the same work).

Each call measures one input construction (``--inputs alone``: the utterance with its
speaker; ``--inputs context``: plus ``--past`` previous and ``--future`` next utterances) at one
``--precision``, prints the figures and merges them into ``--out`` (JSON) under a name such as
``context-bf16`` (``train`` and ``encode`` parts), so a series of short calls (each under a few
minutes) builds one file::

    python benchmarks/finetune_speed.py --inputs alone --precision fp32 --threads 1
    python benchmarks/finetune_speed.py --inputs alone --precision bf16 --threads 1 --encode
    python benchmarks/finetune_speed.py --inputs context --precision bf16 --threads 1
    python benchmarks/finetune_speed.py --inputs context --precision bf16 --threads 1 --steps 0 --encode
    python benchmarks/finetune_speed.py --inputs context --precision fp32 --threads 1

``--per-1000`` also prints the figures per 1,000 utterances and the formula for a whole run
(see docs/finetune.md, "Speed"); a brief call that gives it::

    nice -n 15 python benchmarks/finetune_speed.py --precision fp32 --threads 1 --steps 12 \
        --encode --encode-utterances 640 --per-1000 --out /tmp/speed.json

Timings on a shared machine move with its load: every record keeps the 1-minute load average
before and after, the CPU model and whether it has AMX / AVX512-BF16.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from safsd_glnet.provenance import code_version  # noqa: E402
from safsd_glnet.data.atomic_files import read_json, write_json  # noqa: E402

DEFAULT_TABLE = REPO.parent / "shared" / "data" / "iemocap" / "iemocap_utterances.csv"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "finetune_speed.json"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


def per_1000(parts: dict) -> dict:
    """Seconds per 1,000 utterances: one training epoch (1000 / batch steps at the mean step
    time) and one encoding pass; a part that was not measured is left out."""
    out = {}
    if "train" in parts:
        t = parts["train"]
        out["train_epoch_seconds"] = round(1000 / t["batch_size"] * t["seconds_per_step_mean"], 1)
    if "encode" in parts and parts["encode"]["utterances"]:
        e = parts["encode"]
        out["encode_seconds"] = round(1000 * e["seconds"] / e["utterances"], 1)
    return out


def describe_per_1000(p: dict, tokens: float) -> str:
    """The formula of docs/finetune.md with this machine's figures: a run of E epochs on
    N_train training, N_valid validation and N utterances in all (in thousands) takes about
    E * (N_train * a + N_valid * b) + N * b seconds, a = one training epoch, b = one encoding pass."""
    a, b = p.get("train_epoch_seconds"), p.get("encode_seconds")
    text = f"per 1,000 utterances of {tokens:.0f} tokens on average: "
    text += f"training epoch a = {a} s" if a is not None else "training not measured"
    text += f", encoding b = {b} s" if b is not None else ", encoding not measured (--encode)"
    if a is not None and b is not None:
        text += "; a run takes about E*(N_train*a + N_valid*b) + N_all*b seconds (N in thousands)"
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", default=str(DEFAULT_TABLE), help=f"IEMOCAP utterance table (default {DEFAULT_TABLE})")
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--inputs", choices=("alone", "context"), default="alone")
    ap.add_argument("--past", type=int, default=3, help="--inputs context: previous utterances (default 3)")
    ap.add_argument("--future", type=int, default=1, help="--inputs context: next utterances (default 1)")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    ap.add_argument("--freeze-below", type=int, default=None,
                    help="train only the last K layers (the record's name gets '-freezeK')")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100, help="training steps (0: none; default 100)")
    ap.add_argument("--warmup-steps", type=int, default=3, help="timed but left out of the mean (default 3)")
    ap.add_argument("--time-limit", type=float, default=240.0, help="seconds of training at most (default 240)")
    ap.add_argument("--encode", action="store_true", help="also time one encoding pass over every utterance")
    ap.add_argument("--encode-batch-size", type=int, default=64)
    ap.add_argument("--encode-utterances", type=int, default=None,
                    help="--encode: time only the first N utterances (default: all)")
    ap.add_argument("--per-1000", action="store_true",
                    help="print seconds per 1,000 utterances (one training epoch, encoding) and the run formula")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)

    import torch

    from safsd_glnet.features import finetune as ft
    from safsd_glnet.data.tables import read_table
    from safsd_glnet.features.text import resolve_encoder
    from safsd_glnet.model.precision import cpu_bf16_flags
    from safsd_glnet.features.utterance_inputs import build_examples, special_layout

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    past, future = (args.past, args.future) if args.inputs == "context" else (0, 0)
    cfg = ft.FinetuneConfig(encoder=args.encoder, context_past=past, context_future=future,
                            max_length=args.max_length, batch_size=args.batch_size, precision=args.precision,
                            freeze_below=args.freeze_below).check()
    load_before = load()
    table = read_table(args.table, class_names="iemocap")
    spec = resolve_encoder(args.encoder)
    tokenizer = ft._load_tokenizer(spec.target, spec.local)
    tools = ft.Tools(tokenizer, special_layout(tokenizer), "cpu", args.precision, progress=False)
    t0 = time.perf_counter()
    examples = build_examples(ft.table_dialogues(table), tokenizer, tools.layout, context_past=past,
                              context_future=future, max_length=args.max_length)
    build_seconds = time.perf_counter() - t0
    lengths = np.array([len(e.ids) for e in examples])
    labels = np.array([y for d in table.dialogues for y in d.labels])
    train = np.array([i for i, d in enumerate(d for d in table.dialogues for _ in d.labels) if d.split == "train"])

    ft._seed(0)
    model = ft._build_classifier(ft._load_model(spec.target, spec.local), len(table.class_names), cfg.dropout,
                                 cfg.pooling, cfg.layer)
    ft._freeze(model, cfg.freeze_below)
    optimizer = ft._optimizer(model, cfg, "cpu")
    scheduler = ft._schedule(optimizer, args.steps, cfg.warmup)
    rng = np.random.default_rng(0)
    pad = tokenizer.pad_token_id
    step_seconds, tokens = [], []
    model.train()
    started = time.perf_counter()
    for _ in range(args.steps):  # the body of fit's inner loop (batches drawn with replacement across steps)
        idx = rng.choice(train, args.batch_size, replace=False)
        s0 = time.perf_counter()
        batch = ft._collate([examples[i] for i in idx], pad, tools.layout.uses_types, "cpu")
        with ft.autocast("cpu", args.precision):
            logits, _ = model(batch)
        loss = torch.nn.functional.cross_entropy(logits.float(), torch.as_tensor(labels[idx]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        scheduler.step()
        step_seconds.append(time.perf_counter() - s0)
        tokens.append(int(batch["attention_mask"].numel()))
        if time.perf_counter() - started > args.time_limit:
            break
    record = {
        "inputs": args.inputs, "context_past": past, "context_future": future, "max_length": args.max_length,
        "precision": args.precision, "encoder": args.encoder, "freeze_below": args.freeze_below,
        "tokens_mean": round(float(lengths.mean()), 1), "tokens_p95": float(np.percentile(lengths, 95)),
        "share_at_max_length": round(float((lengths == args.max_length).mean()), 4),
        "build_inputs_seconds": round(build_seconds, 2),
    }
    print(f"{args.inputs} ({past} past / {future} future, max {args.max_length}), {args.precision}: inputs "
          f"{lengths.mean():.1f} tokens on average (95% <= {np.percentile(lengths, 95):.0f})")
    parts = {}
    if step_seconds:
        timed = step_seconds[args.warmup_steps:] or step_seconds
        per_step = float(np.mean(timed))
        steps_per_epoch = int(np.ceil(len(train) / args.batch_size))
        parts["train"] = {
            "batch_size": args.batch_size, "steps_asked": args.steps, "steps_run": len(step_seconds),
            "stopped_by_time_limit": len(step_seconds) < args.steps, "warmup_steps_left_out": args.warmup_steps,
            "seconds_total": round(float(np.sum(step_seconds)), 1),
            "seconds_per_step_mean": round(per_step, 3), "seconds_per_step_median": round(float(np.median(timed)), 3),
            "padded_tokens_per_step_mean": round(float(np.mean(tokens)), 0),
            "seconds_for_100_steps": round(100 * per_step, 1),
            "steps_per_iemocap_epoch": steps_per_epoch,
            "projected_epoch_minutes": round(steps_per_epoch * per_step / 60, 1),
        }
        print(f"  training: {len(step_seconds)} steps of {args.batch_size} in {np.sum(step_seconds):.1f} s; "
              f"{per_step:.2f} s per step after {args.warmup_steps} warm-up steps -> 100 steps "
              f"{100 * per_step:.0f} s, one IEMOCAP epoch ({steps_per_epoch} steps) "
              f"{steps_per_epoch * per_step / 60:.1f} min")
    if args.encode:
        t0 = time.perf_counter()
        encoded = examples[:args.encode_utterances] if args.encode_utterances else examples
        _, feats = ft.run_classifier(model, encoded, tools, args.encode_batch_size, desc="encoding")
        seconds = time.perf_counter() - t0
        parts["encode"] = {"utterances": len(encoded), "seconds": round(seconds, 1),
                           "batch_size": args.encode_batch_size}
        print(f"  encoding: {len(encoded)} utterances in {seconds:.1f} s ({feats.shape[1]}-d)")
    if args.per_1000:
        record["per_1000_utterances"] = per_1000(parts)
        print(f"  {describe_per_1000(record['per_1000_utterances'], record['tokens_mean'])}")
    stamp = {"load_before": load_before, "load_after": load(), "torch_threads": torch.get_num_threads(),
             "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    for part in parts.values():
        part.update(stamp)

    out = Path(args.out)
    results = read_json(out) if out.is_file() else {"machine": {}, "runs": {}}
    results["machine"] = {"cpu": cpu_model(), "cores": os.cpu_count(), "bf16_units": list(cpu_bf16_flags()),
                          "torch": torch.__version__, "platform": platform.platform(),
                          **code_version("benchmarks/finetune_speed.py")}
    name = f"{args.inputs}-{args.precision}" + (f"-freeze{args.freeze_below}" if args.freeze_below is not None else "")
    results["runs"][name] = {**results["runs"].get(name, {}), **record, **parts}
    write_json(out, results)
    print(f"  load average {load_before} -> {stamp['load_after']} ({torch.get_num_threads()} torch threads); "
          f"merged into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
