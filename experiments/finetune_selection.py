"""The pre-registered study of fine-tuned text features (docs/finetune_selection_plan.md).

Runs the plan as written: on each dataset the frozen MiniLM features (F) and the fine-tuned
variants V1-V4 (then V5 / V6, the best of them read out at other layers) are each scored by
SAFSD-GLNet text-only, seeds 0-4, on the **validation** split only; every fine-tuning run has
``score_test=False`` and this runner keeps no test number of any SAFSD-GLNet run (``train()``
computes them along the way; they are dropped here unread). The decision rule of the plan then
picks a variant or keeps F. The single test reading (``test`` command) is a separate step, run
once, only for an adopted variant.

Usage (one dataset per process; results are written after every run, so a stopped study
continues where it stopped)::

    python experiments/finetune_selection.py run --dataset iemocap --out experiments/results/finetune_selection_iemocap.json
    python experiments/finetune_selection.py run --dataset meld --out experiments/results/finetune_selection_meld.json
    python experiments/finetune_selection.py decide experiments/results/finetune_selection_*.json \\
        --md docs/finetune_selection_results.md
    # only for a dataset whose decision adopted a variant, once:
    python experiments/finetune_selection.py test --dataset iemocap --variant V3 \\
        --out experiments/results/finetune_selection_iemocap_test.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from experiments import real_text as rt  # noqa: E402
from safsd_glnet.data.atomic_files import read_json, write_json, write_text  # noqa: E402
from safsd_glnet.provenance import code_version  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_CACHE = REPO / ".cache" / "safsd-glnet"
SEEDS = (0, 1, 2, 3, 4)
PLAN = "docs/finetune_selection_plan.md"

# The variants of the plan (its table "Variants compared"); V5 / V6 re-read the best of V1-V4.
VARIANTS: dict[str, dict[str, Any]] = {
    "V1": {"lr": 2e-5, "epochs": 3},
    "V2": {"lr": 2e-5, "epochs": 2, "folds": 3, "heldout": "fold-mean"},
    "V3": {"lr": 2e-5, "epochs": 3, "folds": 3, "heldout": "fold-mean", "freeze_below": 2},
    "V4": {"lr": 2e-5, "epochs": 2, "folds": 2, "heldout": "fold-mean", "freeze_below": 2,
           "context_past": 3, "context_future": 1},
}
READOUTS = {"V5": "mean4", "V6": "-2"}
MARGIN = {"iemocap": 1.0, "meld": 0.5}  # points above F a variant must reach (the plan's rule 2)


def load_table(dataset: str, data: Path):
    from safsd_glnet.data.tables import read_meld_dir, read_table

    if dataset == "iemocap":
        return read_table(data / "iemocap" / "iemocap_utterances.csv", class_names="iemocap")
    return read_meld_dir(data / "meld")


def finetune_config(name: str):
    from safsd_glnet.features.finetune import FinetuneConfig

    return FinetuneConfig(encoder="minilm", precision="auto", **VARIANTS[name]).check()


def feature_set(name: str, table, cache: Path, results: dict[str, Any]):
    """The corpus of feature set ``name`` (F, V1-V6), and what it cost."""
    from safsd_glnet.features.text import build_text_corpus
    from safsd_glnet.features.finetune import finetune_corpus, reencode_layer

    t0 = time.perf_counter()
    if name == "F":
        corpus = build_text_corpus(table, "minilm", cache_dir=cache, progress=False)
        return corpus, {"seconds": round(time.perf_counter() - t0, 1)}
    if name in VARIANTS:
        res = finetune_corpus(table, finetune_config(name), cache_dir=cache, score_test=False, progress=False)
        info = res.info
        return res.corpus, {"seconds": round(time.perf_counter() - t0, 1), "run_dir": str(res.run_dir),
                            "reused": res.reused, "finetune_seconds": info.get("seconds"),
                            "classifier_valid": _valid_scores(info)}
    source = results["best_v1_v4"]
    corpus = reencode_layer(table, results["features"][source]["run_dir"], READOUTS[name], progress=False)
    return corpus, {"seconds": round(time.perf_counter() - t0, 1), "source": source, "layer": READOUTS[name]}


def _valid_scores(info: dict[str, Any]) -> Any:
    """The fine-tuned classifier's own validation scores (finetune.json's "classifier"; the test
    split is not scored in these runs)."""
    valid = (info.get("classifier") or {}).get("valid") or {}
    return {k: valid.get(k) for k in ("accuracy", "weighted_f1", "macro_f1")}


def glnet_validation(corpus, dataset: str, seed: int, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """SAFSD-GLNet text-only as the real-text study runs it (``overrides``: ``section.field=value``
    changes on top); only validation numbers are kept."""
    from safsd_glnet.training.train import train

    cfg = rt.glnet_config(dataset, "glnet", seed, overrides=overrides)
    t0 = time.perf_counter()
    metrics = train(cfg, corpus.with_modalities(("t",)), out_dir=None).metrics
    return {"valid_weighted_f1": metrics["valid"]["weighted_f1"], "chosen_epoch": metrics["chosen_epoch"],
            "epochs_run": metrics["epochs_run"], "seconds": round(time.perf_counter() - t0, 1)}


def score(results: dict[str, Any], name: str) -> float | None:
    runs = results["glnet"].get(name, {})
    if len(runs) < len(SEEDS):
        return None
    return float(np.mean([runs[str(s)]["valid_weighted_f1"] for s in SEEDS]))


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    results = read_json(out) if out.exists() else {
        "plan": PLAN, "dataset": args.dataset, "seeds": list(SEEDS), "features": {}, "glnet": {},
        "machine": {**rt.machine(), **code_version("experiments/finetune_selection.py", "experiments/real_text.py")},
        "note": "validation only: no test number of any run is kept"}
    table = load_table(args.dataset, Path(args.data))
    for name in ("F", *VARIANTS, *READOUTS):
        if name in READOUTS and "best_v1_v4" not in results:
            scored = {v: score(results, v) for v in VARIANTS}
            results["best_v1_v4"] = max(scored, key=lambda v: (scored[v] if scored[v] is not None else -1, -int(v[1])))
        corpus, cost = feature_set(name, table, Path(args.cache), results)
        results["features"].setdefault(name, cost)
        write_json(out, results)
        for seed in SEEDS:
            if str(seed) in results["glnet"].get(name, {}):
                continue
            r = glnet_validation(corpus, args.dataset, seed)
            results["glnet"].setdefault(name, {})[str(seed)] = r
            write_json(out, results)
            print(f"{args.dataset} {name} seed {seed}: valid w-F1 {r['valid_weighted_f1']:.2f} "
                  f"(epoch {r['chosen_epoch']}, {r['seconds']:.0f} s)", flush=True)


def decide(results: dict[str, Any]) -> dict[str, Any]:
    """The plan's decision rule on one dataset's results."""
    dataset = results["dataset"]
    names = [n for n in ("F", *VARIANTS, *READOUTS) if score(results, n) is not None]
    scores = {n: score(results, n) for n in names}
    fine = [n for n in names if n != "F"]
    if "F" not in scores or not fine:
        return {"dataset": dataset, "scores": scores, "decision": "incomplete"}
    best = max(fine, key=lambda n: (round(scores[n], 1), -_cost(results, n)))  # ties within 0.1: cheaper
    diffs = np.array([results["glnet"][best][str(s)]["valid_weighted_f1"] - results["glnet"]["F"][str(s)]["valid_weighted_f1"]
                      for s in SEEDS])
    se = float(diffs.std(ddof=1) / math.sqrt(len(diffs)))
    adopted = bool(diffs.mean() >= MARGIN[dataset] and diffs.mean() >= 2 * se)
    return {"dataset": dataset, "scores": scores,
            "std": {n: float(np.std([results["glnet"][n][str(s)]["valid_weighted_f1"] for s in SEEDS], ddof=1))
                    for n in names},
            "best": best, "paired_difference": float(diffs.mean()), "paired_se": se, "margin": MARGIN[dataset],
            "decision": f"adopt {best}" if adopted else "keep F (frozen MiniLM)",
            "costs_s": {n: _cost(results, n) for n in names}}


def _cost(results: dict[str, Any], name: str) -> float:
    return float(results["features"].get(name, {}).get("seconds") or 0.0)


def report(decisions: list[dict[str, Any]], files: list[str]) -> str:
    lines = ["# Fine-tuned text features: results of the pre-registered plan", "",
             f"Plan: `{PLAN}` (fixed before any run). Scores are SAFSD-GLNet text-only **validation** weighted F1, "
             "mean over seeds 0-4 (sample std), as experiments/real_text.py runs it; no test number was kept. "
             f"Result files: {', '.join(f'`{f}`' for f in files)}.", ""]
    for d in decisions:
        lines += [f"## {d['dataset']}", "", "| features | valid w-F1 | std | feature cost (s) |", "|---|---:|---:|---:|"]
        for n, s in d["scores"].items():
            lines.append(f"| {n} | {s:.2f} | {d.get('std', {}).get(n, float('nan')):.2f} | {d.get('costs_s', {}).get(n, 0):.0f} |")
        if d["decision"] != "incomplete":
            lines += ["", f"Best fine-tuned: **{d['best']}**; paired difference to F {d['paired_difference']:+.2f} "
                          f"(standard error {d['paired_se']:.2f}; the rule asks >= {d['margin']} and >= twice the SE). "
                          f"Decision: **{d['decision']}**.", ""]
    return "\n".join(lines) + "\n"


def test_reading(args: argparse.Namespace) -> None:
    """The single test reading of an adopted variant (the plan's last section)."""
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists: the test split is read once")
    table = load_table(args.dataset, Path(args.data))
    results = read_json(args.results)
    corpus, _ = feature_set(args.variant, table, Path(args.cache), results)
    runs = []
    for seed in SEEDS:
        from safsd_glnet.training.train import train

        m = train(rt.glnet_config(args.dataset, "glnet", seed), corpus.with_modalities(("t",)), out_dir=None).metrics
        runs.append({"weighted_f1": m["test"]["weighted_f1"], "accuracy": m["test"]["accuracy"],
                     "reference_weighted_f1": m["reference_protocol"]["weighted_f1"]})
    lr = rt.run_lr(corpus, args.dataset, "lr_context", 0, 3)
    write_json(out, {"dataset": args.dataset, "variant": args.variant, "glnet": runs, "lr_context": lr,
                     "machine": {**rt.machine(), **code_version("experiments/finetune_selection.py")}})
    wf1 = [r["weighted_f1"] for r in runs]
    print(f"{args.dataset} {args.variant}: SAFSD-GLNet test w-F1 {np.mean(wf1):.2f} ± {np.std(wf1, ddof=1):.2f}; "
          f"LR + context {lr['weighted_f1']:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--dataset", choices=("iemocap", "meld"), required=True)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--out", required=True)
    p = sub.add_parser("decide")
    p.add_argument("results", nargs="+")
    p.add_argument("--md", help="write the report here")
    p = sub.add_parser("test")
    p.add_argument("--dataset", choices=("iemocap", "meld"), required=True)
    p.add_argument("--variant", required=True)
    p.add_argument("--results", required=True, help="the dataset's run file (for V5 / V6's source)")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--cache", default=str(DEFAULT_CACHE))
    p.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.command == "run":
        run(args)
    elif args.command == "decide":
        decisions = [decide(read_json(f)) for f in args.results]
        text = report(decisions, args.results)
        print(text)
        if args.md:
            write_text(args.md, text)
    else:
        test_reading(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
