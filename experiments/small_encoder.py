"""The pre-registered small-encoder plan (docs/small_encoder_plan.md), stage by stage: candidate
features scored on the **validation** split only, the decisions, then one test reading per corpus.

Candidates per corpus, each scored by SAFSD-GLNet text-only (seeds 0-4) as
experiments/finetune_selection.py scores a feature set (``glnet_validation``: the
configuration of experiments/real_text.py, only validation numbers kept; the test metrics that
``train()`` computes along the way are dropped unread, never printed or stored):

* the current default: ``F`` on IEMOCAP (frozen MiniLM, the encoder's own pipeline, as
  ``build_text_corpus`` makes it) and ``V1`` on MELD (the fine-tuned features file, ``--features``);
* stage A: ``A1``, the frozen MiniLM read out at ``mean4`` (the mean of the last 4 layers' token
  states, mean-pooled over the attention mask, then the pipeline's normalisation); ``A2``, at ``-2``;
* stage B (IEMOCAP only): ``B1`` fine-tunes all layers (lr 5e-5, 8 epochs), ``B2`` the last two
  (lr 1e-4, 8 epochs), the kit's fine-tuning defaults otherwise, bf16 autocast where the CPU has it,
  ``score_test=False``; ``B1m`` / ``B2m`` re-read their kept encoders at ``mean4``;
* stage C: EmoBERTa's input (50 past / 50 future utterances with their speakers, far context cut
  first): ``C1`` on IEMOCAP at the better of B1 / B2's settings, ``C2`` on MELD at V1's; ``C3`` the
  leading new fine-tuned variant cross-fitted (K = 5, ``fold-mean``), when one leads.

``decide`` applies rule 1 (features) and rule 2 (stage D's settings) and writes the report;
``stage-d`` runs the 8 settings on the adopted features; ``test-reading`` reads the test split
once, for the decided features and settings. The frozen encodings run in fp32 on the CPU (what
``build_text_corpus`` does for F), one torch thread.

Usage (results are rewritten after every run, so a stopped study continues where it stopped)::

    python experiments/small_encoder.py stage-a --dataset iemocap --out experiments/results/small_encoder_iemocap.json
    python experiments/small_encoder.py stage-a --dataset meld --features /path/meld_v1.npz \\
        --out experiments/results/small_encoder_meld.json
    python experiments/small_encoder.py stage-b --dataset iemocap --out experiments/results/small_encoder_iemocap.json
    python experiments/small_encoder.py decide experiments/results/small_encoder_*.json --md docs/small_encoder_results.md
"""
from __future__ import annotations

import argparse
import functools
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from experiments import finetune_selection as fs  # noqa: E402
from experiments import real_text as rt  # noqa: E402
from safsd_glnet.data.atomic_files import read_json, write_json, write_text  # noqa: E402
from safsd_glnet.provenance import code_version  # noqa: E402

PLAN = "docs/small_encoder_plan.md"
SEEDS = fs.SEEDS
DEFAULT = {"iemocap": "F", "meld": "V1"}  # the plan's "current default" per corpus
READOUTS = {"A1": "mean4", "A2": "-2"}  # stage A: the frozen MiniLM at these layers
MARGIN = {"iemocap": 1.0, "meld": 0.5}  # points above the default a candidate must reach (rule 1)
TIE = 0.1  # scores within this of the best go to the cheaper candidate
# Stage B (IEMOCAP only): fine-tuned MiniLM, the kit's fine-tuning defaults otherwise, seed 0;
# B1m / B2m re-read B1 / B2's kept encoder at ``mean4`` (no training). Run order: the cheaper first.
FINETUNES = {"B2": {"lr": 1e-4, "epochs": 8, "freeze_below": 2}, "B1": {"lr": 5e-5, "epochs": 8}}
REREADS = {"B2m": ("B2", "mean4"), "B1m": ("B1", "mean4")}
STAGE_B = ("B2", "B2m", "B1", "B1m")
STAGE_B_DATASETS = ("iemocap",)
# Stage C: EmoBERTa's input (the utterance with its speaker, then past and future utterances with
# theirs, up to the encoder's 128 tokens, the far context cut first). C1 (IEMOCAP) at the better-
# scoring of B1 / B2's settings, C2 (MELD) at V1's (lr 2e-5, 3 epochs).
CONTEXT = {"context_past": 50, "context_future": 50}
STAGE_C = {"iemocap": ("C1",), "meld": ("C2",)}
# C3 (cross-fitting, K = 5) is read here as: it runs for a corpus whose best candidate of stages
# A-C under rule 1 is one of that corpus's new fine-tuned variants (stages B-C); when the best is a
# frozen read-out or the current default, there is no fine-tuned winner and C3 is skipped.
FINE_TUNED = ("B1", "B2", "B1m", "B2m", "C1", "C2")
BUDGET_S = 15 * 60  # the plan's target: fine-tune plus encode within 15 minutes per corpus


def load_table(dataset: str, data: Path):
    """The corpus table; IEMOCAP named ``iemocap`` as experiments/real_text.py names it, so F
    reads the frozen vectors real_text.py cached."""
    from safsd_glnet.data.tables import read_meld_dir, read_table

    if dataset == "iemocap":
        return read_table(data / "iemocap" / "iemocap_utterances.csv", class_names="iemocap", name="iemocap")
    return read_meld_dir(data / "meld")


def candidates(dataset: str) -> tuple[str, ...]:
    """Stage A's candidates (the default first); stage-B ones are :func:`stage_b_candidates`."""
    return (DEFAULT[dataset], *READOUTS)


def stage_b_candidates(dataset: str) -> tuple[str, ...]:
    return STAGE_B if dataset in STAGE_B_DATASETS else ()


def stage_c_candidates(dataset: str) -> tuple[str, ...]:
    return STAGE_C.get(dataset, ())


def finetune_settings(name: str, results: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The fine-tuning settings of candidate ``name`` (changes to the kit's defaults) and, for C1, the
    stage-B candidate whose settings it takes (the better mean validation score of B1 and B2)."""
    if name in FINETUNES:
        return FINETUNES[name], None
    if name == "C2":
        return {**fs.VARIANTS["V1"], **CONTEXT}, "V1"
    if name == "C3":  # the leading fine-tuned variant cross-fitted, epochs fixed to the count it chose
        d = decide(results)
        if not d.get("c3_owed") and "C3" not in results["features"]:
            raise SystemExit(f"small_encoder: {results['dataset']}: C3 is not owed (the best of stages A-C, "
                             f"{d.get('best')}, is not a new fine-tuned variant)")
        source = results["features"].get("C3", {}).get("settings_from") or d["best"]
        src = results["features"][REREADS[source][0] if source in REREADS else source]
        settings = {**src["settings"], "folds": 5, "heldout": "fold-mean", "epochs": int(src["chosen_epoch"])}
        if source in REREADS:  # a re-read variant: cross-fit its source, read out at the same layer
            settings["layer"] = REREADS[source][1]
        return settings, source
    if name == "C1":
        scores = {n: seed_scores(results, n) for n in ("B1", "B2")}
        if any(v is None for v in scores.values()):
            raise SystemExit("small_encoder: C1 takes the better of B1 / B2's settings; score both first (stage-b)")
        better = max(scores, key=lambda n: float(scores[n].mean()))
        return {**FINETUNES[better], **CONTEXT}, better
    raise KeyError(name)


def feature_set(name: str, dataset: str, table, cache: Path, features: Path | None):
    """The corpus of candidate ``name`` and what making it cost (seconds; whether a cache served it)."""
    from safsd_glnet.features.text import build_text_corpus, text_cache_path

    t0 = time.perf_counter()
    if name == "V1":
        if features is None:
            raise SystemExit("small_encoder: MELD's default V1 needs --features (the fine-tuned features file)")
        corpus = rt.load_feature_file(dataset, features)
        return corpus, {"seconds": round(time.perf_counter() - t0, 1), "file": str(features), "cached": True}
    layer = "last" if name == "F" else READOUTS[name]
    cached = text_cache_path(table, "minilm", cache, layer).is_file()
    corpus = build_text_corpus(table, "minilm", cache_dir=cache, device="cpu", progress=False, layer=layer)
    return corpus, {"seconds": round(time.perf_counter() - t0, 1), "layer": layer, "cached": cached,
                    "precision": "fp32"}


def machine() -> dict[str, Any]:
    """real_text.py's record plus the CPU model and whether it has AMX bf16."""
    cpu, flags = platform.processor(), ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), cpu)
        flags = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
    except OSError:
        pass
    return {**rt.machine(), "cpu_model": cpu, "amx_bf16": "amx_bf16" in flags.split(),
            **code_version("experiments/small_encoder.py", "experiments/finetune_selection.py",
                           "experiments/real_text.py")}


def score_seeds(corpus, dataset: str, name: str, results: dict[str, Any], out: Path) -> None:
    """SAFSD-GLNet on ``corpus`` for every seed of :data:`SEEDS` that ``results`` lacks for candidate
    ``name`` (validation numbers only), the results file rewritten after each run."""
    for seed in SEEDS:
        if str(seed) in results["glnet"].get(name, {}):
            continue
        r = fs.glnet_validation(corpus, dataset, seed)  # validation numbers only
        results["glnet"].setdefault(name, {})[str(seed)] = r
        write_json(out, results)
        print(f"{dataset} {name} seed {seed}: valid w-F1 {r['valid_weighted_f1']:.2f} "
              f"(epoch {r['chosen_epoch']} of {r['epochs_run']}, {r['seconds']:.0f} s)", flush=True)


def corpus_results(out: Path, dataset: str, stage: str) -> dict[str, Any]:
    """The corpus's results file, which stage A creates and every later stage adds to; a one-line exit
    when it is missing or holds another corpus."""
    if not out.exists():
        raise SystemExit(f"{out}: stage {stage} adds to stage A's results file; run stage-a first")
    results = read_json(out)
    if results["dataset"] != dataset:
        raise SystemExit(f"{out}: holds dataset {results['dataset']!r}, not {dataset!r}")
    return results


def stage_a(args: argparse.Namespace) -> None:
    out = Path(args.out)
    results = corpus_results(out, args.dataset, "A") if out.exists() else {
        "plan": PLAN, "stage": "A", "dataset": args.dataset, "seeds": list(SEEDS), "default": DEFAULT[args.dataset],
        "features": {}, "glnet": {}, "machine": machine(),
        "note": "validation only: no test number of any run is kept"}
    table = load_table(args.dataset, Path(args.data))
    for name in candidates(args.dataset):
        if all(str(s) in results["glnet"].get(name, {}) for s in SEEDS):
            continue
        corpus, cost = feature_set(name, args.dataset, table, Path(args.cache),
                                   Path(args.features) if args.features else None)
        results["features"].setdefault(name, cost)  # the first (encoding) pass's cost, not a later cache read
        write_json(out, results)
        print(f"{args.dataset} {name}: features in {cost['seconds']:.0f} s"
              f"{' (cache)' if cost.get('cached') else ''}", flush=True)
        score_seeds(corpus, args.dataset, name, results, out)


def finetune_config(settings: dict[str, Any]):
    """The kit's fine-tuning defaults (batch 32, warm-up 0.1, ...) but for ``settings``; bf16 autocast
    where the hardware has it (``precision="auto"``), seed 0."""
    from safsd_glnet.features.finetune import FinetuneConfig

    return FinetuneConfig(encoder="minilm", precision="auto", seed=0, **settings).check()


def encoder_record(encoders: list[dict[str, Any]]) -> dict[str, Any]:
    """The chosen epoch and the classifier's validation w-F1 (per epoch and at the chosen one) of one
    fine-tuned encoder; for K cross-fitted ones (C3) the epochs chosen joined ("2, 2, 1, 2, 2"), the
    scores averaged over the folds per epoch, and each fold's own under ``folds``."""
    per_epoch = [[h["valid_weighted_f1"] for h in e["history"]] for e in encoders]
    longest = max(len(p) for p in per_epoch)
    mean_per_epoch = [float(np.mean([p[i] for p in per_epoch if len(p) > i])) for i in range(longest)]
    record = {"chosen_epoch": ", ".join(str(e["chosen_epoch"]) for e in encoders) if len(encoders) > 1
              else encoders[0]["chosen_epoch"],
              "classifier_valid_wf1_per_epoch": [round(v, 2) for v in mean_per_epoch],
              "classifier_valid_wf1": float(np.mean([e["valid_weighted_f1"] for e in encoders]))}
    if len(encoders) > 1:
        record["folds"] = {e["name"]: {"chosen_epoch": e["chosen_epoch"], "valid_wf1": e["valid_weighted_f1"]}
                           for e in encoders}
    return record


def candidate_features(name: str, table, cache: Path, results: dict[str, Any]):
    """The corpus of stage-B candidate ``name`` and its record: for B1 / B2 the fine-tune and encode
    seconds, the classifier's validation w-F1 per epoch and the epoch chosen by it (the test split
    is never scored: ``score_test=False``); for B1m / B2m the re-encode seconds and the source run.
    ``seconds`` is what the candidate costs from scratch (a re-read adds its source's fine-tune)."""
    from safsd_glnet.features.finetune import finetune_corpus, reencode_layer

    t0 = time.perf_counter()
    if name not in REREADS:
        settings, settings_from = finetune_settings(name, results)
        res = finetune_corpus(table, finetune_config(settings), cache_dir=cache, score_test=False, progress=False)
        encoders = res.info["encoders"]  # one, or one per fold when cross-fitted (C3)
        sec = res.info["seconds"]
        return res.corpus, {
            "run_dir": str(res.run_dir), "reused": res.reused, "settings": settings,
            **({"settings_from": settings_from} if settings_from else {}),
            "precision": res.info["precision"], "finetune_seconds": sec["train"], "encode_seconds": sec["encode"],
            "seconds": round(sec["train"] + sec["encode"], 1), "wall_seconds": round(time.perf_counter() - t0, 1),
            **encoder_record(encoders)}
    source, layer = REREADS[name]
    src = results["features"].get(source)
    if src is None or "run_dir" not in src:
        raise SystemExit(f"small_encoder: {name} re-reads {source}, which has not run yet")
    corpus = reencode_layer(table, src["run_dir"], layer, progress=False)
    encode = round(time.perf_counter() - t0, 1)
    return corpus, {"source": source, "layer": layer, "run_dir": src["run_dir"], "encode_seconds": encode,
                    "finetune_seconds": src["finetune_seconds"], "chosen_epoch": src["chosen_epoch"],
                    "seconds": round(src["finetune_seconds"] + encode, 1)}


def fine_tuned_stage(args: argparse.Namespace, stage: str, names: tuple[str, ...]) -> None:
    """Stage B (B2, B2m, B1, B1m) or C (C1 / C2): each candidate's features made, then scored (seeds
    0-4, validation only) before the next starts, into stage A's results file; a stopped run
    continues where it stopped (finished encoders are kept)."""
    if not names:
        raise SystemExit(f"small_encoder: stage {stage} is not planned for {args.dataset}")
    out = Path(args.out)
    results = corpus_results(out, args.dataset, stage)
    results.setdefault(f"machine_{stage.lower()}", machine())
    table = load_table(args.dataset, Path(args.data))
    for name in names:
        if all(str(s) in results["glnet"].get(name, {}) for s in SEEDS):
            continue
        corpus, cost = candidate_features(name, table, Path(args.cache), results)
        results["features"].setdefault(name, cost)
        write_json(out, results)
        print(f"{args.dataset} {name}: features in {cost['seconds']:.0f} s"
              + (f" (encoder epoch {cost['chosen_epoch']}, classifier valid w-F1 per epoch "
                 f"{cost['classifier_valid_wf1_per_epoch']})" if name not in REREADS else ""), flush=True)
        score_seeds(corpus, args.dataset, name, results, out)


# ------------------------------------------------------------------------------ decision

def seed_scores(results: dict[str, Any], name: str) -> np.ndarray | None:
    """The five seeds' validation w-F1 of ``name`` in seed order, or None while any is missing."""
    runs = results["glnet"].get(name, {})
    if any(str(s) not in runs for s in SEEDS):
        return None
    return np.array([runs[str(s)]["valid_weighted_f1"] for s in SEEDS], dtype=float)


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of the same-seed differences a - b and its standard error, sd(ddof=1) / sqrt(n)."""
    d = a - b
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))


def decide(results: dict[str, Any]) -> dict[str, Any]:
    """Rule 1 of the plan over the stages run so far (A, and B on IEMOCAP): the best-scoring candidate
    is adopted when its score is at least MARGIN above the current default's **and** the mean paired
    difference is >= 2 SE; candidates within TIE of the best go to the cheaper one (features' seconds:
    fine-tune plus encode for stage B). Stage A must be complete; a stage-B candidate without its five
    seeds is left out and listed under ``missing`` (the decision is interim either way)."""
    dataset = results["dataset"]
    default = DEFAULT[dataset]
    names = (*candidates(dataset), *stage_b_candidates(dataset), *stage_c_candidates(dataset),
             *(("C3",) if "C3" in results["glnet"] else ()))
    scores = {n: seed_scores(results, n) for n in names}
    done = {n: s for n, s in scores.items() if s is not None}
    rows = {n: {"mean": float(s.mean()), "std": float(s.std(ddof=1)), "seeds": [float(v) for v in s],
                "epochs": [f"{r.get('chosen_epoch', '?')}/{r.get('epochs_run', '?')}"
                           for r in (results["glnet"][n][str(seed)] for seed in SEEDS)],
                "cost_s": _cost(results, n), "stage": _stage(n)}
            for n, s in done.items()}
    cap = rt.glnet_config(dataset, "glnet", 0).train.epochs
    for n in rows:  # runs that met the epoch cap before patience stopped them: the budget may bind
        rows[n]["at_cap"] = sum(results["glnet"][n][str(seed)].get("epochs_run") == cap for seed in SEEDS)
    missing = [n for n in (*stage_b_candidates(dataset), *stage_c_candidates(dataset)) if n not in done]
    out = {"dataset": dataset, "default": default, "margin": MARGIN[dataset], "rows": rows,
           "features": results["features"], "epoch_cap": cap, "missing": missing,
           "notes": results.get("stage_b_notes", {}), "study_notes": results.get("study_notes", [])}
    for n in rows:
        if n != default and default in done:
            rows[n]["diff"], rows[n]["se"] = paired(done[n], done[default])
        if n != "A1" and "A1" in done:  # information only: against stage A's interim choice
            rows[n]["diff_a1"], rows[n]["se_a1"] = paired(done[n], done["A1"])
    if default not in done or any(n not in done for n in READOUTS):
        return {**out, "decision": "incomplete"}
    others = [n for n in rows if n != default]
    top = max(rows[n]["mean"] for n in others)
    near = [n for n in others if rows[n]["mean"] >= top - TIE - 1e-9]
    best = min(near, key=lambda n: (rows[n]["cost_s"], -rows[n]["mean"]))
    diff, se = rows[best]["diff"], rows[best]["se"]
    adopted = diff >= MARGIN[dataset] and diff >= 2 * se
    if "stage_d" in results:
        out["settings"] = decide_settings(results)
    # C3 (cross-fitting) is owed when the best is a new fine-tuned variant and has not run yet
    c3_owed = best in FINE_TUNED and "C3" not in done
    return {**out, "best": best, "paired_difference": diff, "paired_se": se, "c3_owed": c3_owed,
            "decision": f"adopt {best}" if adopted else f"keep {default}"}


def _stage(name: str) -> str:
    if name in READOUTS:
        return "A"
    if name in STAGE_B:
        return "B"
    return "C" if name.startswith("C") else "-"


def adopted_features(results: dict[str, Any]) -> str:
    """The features rule 1 adopts once stages A-C are complete (stage D and the test reading run on
    them); a one-line exit while a planned candidate, or an owed C3, has not been scored."""
    d = decide(results)
    if d["decision"] == "incomplete" or d["missing"] or d.get("c3_owed"):
        owed = [*d.get("missing", []), *(["C3"] if d.get("c3_owed") else [])] or ["stage A"]
        raise SystemExit(f"small_encoder: {results['dataset']}: the features are decided after stages A-C; "
                         f"not scored yet: {', '.join(owed)}")
    return d["best"] if d["decision"].startswith("adopt") else d["default"]


# ------------------------------------------------------------------------------ stage D: settings

WINDOWS = {"all": (), "w4": ("model.window_past=4", "model.window_future=4")}  # GCN context window
# The plan's 8 settings: dropout x Transformer layers x GCN window, as ``--set`` changes on top of
# TEXT_SETTINGS. Ties (within TIE of the best) go to the shipped setting if it is among them, else to
# the cheaper: fewer Transformer layers, then the 4/4 window (fewer GCN edges). Fixed before stage D.
D_GRID: dict[str, tuple[str, ...]] = {
    f"p{p}-L{n}-{w}": (f"model.dropout={p}", f"model.transformer_layers={n}", *WINDOWS[w])
    for p in (0.3, 0.5) for n in (1, 2) for w in WINDOWS}


# The cell that TEXT_SETTINGS held when the plan was committed (checked by the tests against the grid):
# stage D is judged against it, also after rule 2 replaced TEXT_SETTINGS (MELD's, after this study).
SHIPPED_AT_PLAN = {"iemocap": "p0.5-L2-all", "meld": "p0.5-L1-all"}


def shipped_setting(dataset: str) -> str:
    """The grid cell that TEXT_SETTINGS of ``dataset`` was when the plan was committed."""
    return SHIPPED_AT_PLAN[dataset]


def _setting_cost(name: str) -> tuple[int, int]:
    _, layers, window = name.split("-")
    return int(layers[1:]), 0 if window == "w4" else 1


def decide_settings(results: dict[str, Any]) -> dict[str, Any]:
    """Rule 2: the best of the 8 settings on the adopted features against the shipped one, by rule 1's
    margin and 2 paired SE; ``incomplete`` while any setting lacks a seed."""
    dataset, stage = results["dataset"], results.get("stage_d") or {}
    runs = stage.get("glnet", {})
    shipped = shipped_setting(dataset)
    scores = {n: np.array([runs[n][str(s)]["valid_weighted_f1"] for s in SEEDS], dtype=float)
              for n in D_GRID if all(str(s) in runs.get(n, {}) for s in SEEDS)}
    rows = {n: {"mean": float(v.mean()), "std": float(v.std(ddof=1)), "seeds": [float(x) for x in v],
                "overrides": list(D_GRID[n])} for n, v in scores.items()}
    for n in rows:
        if n != shipped and shipped in scores:
            rows[n]["diff"], rows[n]["se"] = paired(scores[n], scores[shipped])
    out = {"dataset": dataset, "features": stage.get("features"), "shipped": shipped, "rows": rows}
    if len(scores) < len(D_GRID):
        return {**out, "decision": "incomplete"}
    top = max(r["mean"] for r in rows.values())
    near = [n for n in rows if rows[n]["mean"] >= top - TIE - 1e-9]
    best = shipped if shipped in near else min(near, key=_setting_cost)
    if best == shipped:
        return {**out, "best": best, "decision": f"keep {shipped}", "overrides": []}
    diff, se = rows[best]["diff"], rows[best]["se"]
    adopted = diff >= MARGIN[dataset] and diff >= 2 * se
    return {**out, "best": best, "paired_difference": diff, "paired_se": se,
            "decision": f"adopt {best}" if adopted else f"keep {shipped}",
            "overrides": list(D_GRID[best]) if adopted else []}


def adopted_corpus(name: str, dataset: str, table, cache: Path, features: Path | None, results: dict[str, Any]):
    """The corpus of candidate ``name`` again (a cache, a kept fine-tuning run or the features file)."""
    if name in (DEFAULT[dataset], *READOUTS):
        return feature_set(name, dataset, table, cache, features)[0]
    return candidate_features(name, table, cache, results)[0]


def stage_d(args: argparse.Namespace) -> None:
    """The 8 settings x seeds 0-4 on the adopted features (validation only), the shipped cell run too,
    into the corpus's results file; a stopped run continues where it stopped."""
    out = Path(args.out)
    results = corpus_results(out, args.dataset, "D")
    name = adopted_features(results)
    stage = results.setdefault("stage_d", {"features": name, "grid": D_GRID, "glnet": {}, "machine": machine()})
    if stage["features"] != name:
        raise SystemExit(f"{out}: stage D ran on {stage['features']}, but rule 1 now adopts {name}")
    corpus = adopted_corpus(name, args.dataset, load_table(args.dataset, Path(args.data)), Path(args.cache),
                            Path(args.features) if args.features else None, results)
    for setting, overrides in D_GRID.items():
        for seed in SEEDS:
            if str(seed) in stage["glnet"].get(setting, {}):
                continue
            r = fs.glnet_validation(corpus, args.dataset, seed, overrides)  # validation numbers only
            stage["glnet"].setdefault(setting, {})[str(seed)] = r
            write_json(out, results)
            print(f"{args.dataset} D {setting} seed {seed}: valid w-F1 {r['valid_weighted_f1']:.2f} "
                  f"(epoch {r['chosen_epoch']} of {r['epochs_run']}, {r['seconds']:.0f} s)", flush=True)


# ------------------------------------------------------------------------------ rule 3: the test reading

# SAFSD-GLNet and its ablations as experiments/real_text.py runs them; the scale-matched no-SAF control
# is left out: its weight g2 was measured on the frozen features only (CONTROL_WEIGHT).
TEST_MODELS = tuple(m for m in rt.MODELS if m != "glnet_no_saf_scaled")


def ensemble(runs: list[dict[str, Any]], class_names: list[str]) -> dict[str, Any]:
    """The seeds' mean class probabilities, argmax, scored against the labels (which must agree)."""
    from safsd_glnet.model.metrics import compute_metrics

    labels = [r["test_labels"] for r in runs]
    if any(lab != labels[0] for lab in labels):
        raise ValueError("the seeds' test predictions are not in the same utterance order")
    mean = np.mean([np.asarray(r["test_probs"]) for r in runs], axis=0)
    return compute_metrics(np.asarray(labels[0]), mean.argmax(1), class_names)


def test_reading(args: argparse.Namespace) -> None:
    """Rule 3: once features (rule 1) and settings (rule 2) are decided, the test split read once:
    SAFSD-GLNet seeds 0-4 and its ablations, the two logistic regressions, and the 5-seed ensemble."""
    from safsd_glnet.model.metrics import compute_metrics

    out = Path(args.test_out)
    if out.exists():
        raise SystemExit(f"{out} exists: the test split is read once")
    results = corpus_results(Path(args.out), args.dataset, "test-reading")
    name = adopted_features(results)
    settings = decide_settings(results)
    if settings["decision"] == "incomplete" or settings["features"] != name:
        raise SystemExit(f"small_encoder: {args.dataset}: stage D has not finished on {name}; the test waits for it")
    overrides = tuple(settings["overrides"])
    corpus = adopted_corpus(name, args.dataset, load_table(args.dataset, Path(args.data)), Path(args.cache),
                            Path(args.features) if args.features else None, results)
    reading: dict[str, Any] = {"dataset": args.dataset, "features": name, "settings": settings["decision"],
                               "overrides": list(overrides), "seeds": list(SEEDS), "machine": machine(),
                               "protocol": "honest: SAFSD-GLNet's epoch chosen on validation, test at that epoch; "
                                           "LR fit on train+valid", "models": {}}
    for model in TEST_MODELS:
        if model in rt.LR_MODELS:  # deterministic (lbfgs): one fit stands for every seed
            reading["models"][model] = [rt.run_lr(corpus, args.dataset, model, 0, 3)]
        else:
            runs = [rt.run_glnet(corpus, args.dataset, model, seed, None, "cpu", overrides,
                                 test_probs=model == "glnet") for seed in SEEDS]
            if model == "glnet":
                reading["ensemble"] = ensemble(runs, corpus.class_names)
                for r in runs:  # the kept probabilities must give the run's own test metrics
                    own = compute_metrics(np.asarray(r["test_labels"]), np.asarray(r["test_probs"]).argmax(1),
                                          corpus.class_names)["weighted_f1"]
                    r["probs_reproduce_weighted_f1"] = abs(own - r["weighted_f1"]) < 1e-6
                    del r["test_probs"], r["test_labels"]
            reading["models"][model] = runs
        wf1 = [r["weighted_f1"] for r in reading["models"][model]]
        print(f"{args.dataset} test {model}: w-F1 {np.mean(wf1):.2f}"
              + (f" ± {np.std(wf1, ddof=1):.2f}" if len(wf1) > 1 else ""), flush=True)
        write_json(out.with_suffix(".partial.json"), reading)
    write_json(out, reading)
    out.with_suffix(".partial.json").unlink()


def _cost(results: dict[str, Any], name: str) -> float:
    return float(results["features"].get(name, {}).get("seconds") or 0.0)


def _cost_text(cost: dict[str, Any]) -> str:
    """The features column: encoding seconds, or where the vectors came from when nothing was encoded."""
    if "file" in cost:
        return "file (fine-tuned earlier)"
    return f"{cost.get('seconds', 0):.0f}" + (" (cache)" if cost.get("cached") else "")


WHAT = {"F": "frozen MiniLM, its own pipeline (the current IEMOCAP default)",
        "V1": "fine-tuned MiniLM V1, lr 2e-5, 3 epochs (the current MELD default)",
        "A1": "frozen MiniLM read out at `mean4`", "A2": "frozen MiniLM read out at layer `-2`",
        "B1": "fine-tuned, all layers, lr 5e-5, 8 epochs", "B2": "fine-tuned, last 2 layers, lr 1e-4, 8 epochs",
        "B1m": "B1's encoder read out at `mean4`", "B2m": "B2's encoder read out at `mean4`",
        "C1": "fine-tuned on EmoBERTa's context input (50 past / 50 future, far context cut first), the better "
              "of B1 / B2's settings",
        "C2": "fine-tuned on EmoBERTa's context input (50 past / 50 future, far context cut first), V1's settings",
        "C3": "the fine-tuned winner cross-fitted, K = 5"}


def _pm(r: dict[str, Any], key: str) -> str:
    return "" if key not in r else f"{r[key]:+.2f} ± {r['se' + key[4:]]:.2f}"


def _stage_b_lines(d: dict[str, Any]) -> list[str]:
    """The fine-tuned candidates' encoder record: epochs, the classifier's own validation w-F1 per
    epoch, and fine-tune plus encode seconds against the plan's 15-minute budget."""
    names = [n for n in (*stage_b_candidates(d["dataset"]), *stage_c_candidates(d["dataset"]), "C3")
             if n in d["features"]]
    if not names:
        return []
    lines = ["Stage B-C encoders (bf16 autocast, seed 0, one thread; the epoch is chosen by the encoder's own "
             "classifier on validation; a `mean4` re-read costs its source's fine-tune plus its own encoding):", "",
             "| candidate | encoder epoch chosen | its classifier's valid w-F1 per epoch | fine-tune (s) "
             "| encode (s) | total (min) | within 15 min |", "|---|---:|---|---:|---:|---:|---|"]
    for n in names:
        f = d["features"][n]
        per_epoch = f.get("classifier_valid_wf1_per_epoch") or d["features"].get(f.get("source"), {}).get(
            "classifier_valid_wf1_per_epoch", [])
        total = f.get("seconds", 0.0)
        lines.append(f"| {n} | {f.get('chosen_epoch', '?')} | {', '.join(f'{v:.2f}' for v in per_epoch)}"
                     f"{' (of ' + f['source'] + ')' if 'source' in f else ''} | {f.get('finetune_seconds', 0):.0f} | "
                     f"{f.get('encode_seconds', 0):.0f} | {total / 60:.1f} | {'yes' if total <= BUDGET_S else 'no'} |")
    return lines + [""]


TARGET = {"iemocap": 62.8, "meld": 63.5}  # the plan's test weighted-F1 targets (EmoBERTa-base's figures)
LR_GAP = 1.5  # SAFSD-GLNet must beat the utterance-alone logistic regression by this much


def _stage_d_lines(s: dict[str, Any]) -> list[str]:
    """Stage D's table (validation, seeds 0-4) and rule 2's decision."""
    lines = [f"Stage D, on {s['features']} (SAFSD-GLNet settings; p = dropout, L = Transformer layers, window all or "
             f"4 past / 4 future; the shipped setting is {s['shipped']}):", "",
             "| setting | valid w-F1 (mean ± std) | paired diff vs shipped ± SE | per seed 0-4 |", "|---|---:|---:|---|"]
    for n, r in s["rows"].items():
        lines.append(f"| {n}{' (shipped)' if n == s['shipped'] else ''} | {r['mean']:.2f} ± {r['std']:.2f} | "
                     f"{_pm(r, 'diff')} | {', '.join(f'{v:.2f}' for v in r['seeds'])} |")
    if s["decision"] == "incomplete":
        return lines + ["", "Rule 2: **incomplete** (not every setting has its five seeds).", ""]
    why = ("" if s["best"] == s["shipped"] else f", paired difference {s['paired_difference']:+.2f} "
           f"(SE {s['paired_se']:.2f})")
    return lines + ["", f"Best setting: **{s['best']}**{why}. Rule 2: **{s['decision']}**.", ""]


def _test_lines(t: dict[str, Any]) -> list[str]:
    """Rule 3's single test reading: single models (mean ± std over seeds 0-4), the logistic
    regressions, the targets, and the ensemble in its own table."""
    def stats(runs, key="weighted_f1"):
        v = np.array([r[key] for r in runs], dtype=float)
        return v.mean(), (v.std(ddof=1) if len(v) > 1 else 0.0)
    dataset = t["dataset"]
    lines = [f"Test reading ({dataset}: features {t['features']}, settings {t['settings']}; read once, after the "
             f"decisions; SAFSD-GLNet's epoch chosen on validation; LR fit on train + valid):", "",
             "| model | test w-F1 (mean ± std) | accuracy | seeds |", "|---|---:|---:|---:|"]
    for model, runs in t["models"].items():
        (w, ws), (a, _) = stats(runs), stats(runs, "accuracy")
        lines.append(f"| {model} | {w:.2f}" + (f" ± {ws:.2f}" if len(runs) > 1 else "") + f" | {a:.2f} | "
                     f"{len(runs) if len(runs) > 1 else 'deterministic'} |")
    glnet, _ = stats(t["models"]["glnet"])
    lr, _ = stats(t["models"]["lr"])
    lines += ["", f"Targets: test w-F1 >= {TARGET[dataset]}: **{'met' if glnet >= TARGET[dataset] else 'missed'}** "
                  f"({glnet:.2f}); SAFSD-GLNet over the utterance-alone LR by >= {LR_GAP}: "
                  f"**{'met' if glnet - lr >= LR_GAP else 'missed'}** ({glnet - lr:+.2f}).", ""]
    if "ensemble" in t:
        e = t["ensemble"]
        lines += ["Reported apart, never mixed with the single-model rows: the 5-seed ensemble (mean of the seeds' "
                  f"class probabilities) scores test w-F1 {e['weighted_f1']:.2f}, accuracy {e['accuracy']:.2f}.", ""]
    return lines


def report(decisions: list[dict[str, Any]], machines: list[dict[str, Any]], files: list[str]) -> str:
    m = machines[0] if machines else {}
    lines = [
        "# Small-encoder frontier: results", "",
        f"Plan: [{PLAN}](small_encoder_plan.md), committed before any run and unchanged. Where each corpus "
        "stands: " + "; ".join(
            f"**{d['dataset']}** " + ("final: its decisions are made and its test split was read once"
                                      if "test" in d else "interim: stages still to run (listed at the end), "
                                                          "its test reading not done")
            for d in decisions) + ".", "",
        "## Protocol", "",
        "- Candidates: the current default (F on IEMOCAP, V1 on MELD), A1 = the frozen packaged MiniLM "
        "(all-MiniLM-L6-v2) read out at `mean4` (mean of the last 4 layers' token states, mean-pooled over the "
        "attention mask, then the pipeline's unit-length normalisation), A2 = the same at layer `-2` "
        "(`safsd-glnet features --layer`).",
        "- Stage B (IEMOCAP): B1 = MiniLM fine-tuned on all layers, lr 5e-5, 8 epochs; B2 = only the last 2 layers "
        "(`freeze_below=2`), lr 1e-4, 8 epochs; both with the kit's fine-tuning defaults otherwise (batch 32, "
        "warm-up 0.1, weight decay 0.01, dropout 0.1, clip 1.0, max length 128, speakers on, mean pooling), bf16 "
        "autocast on this CPU, seed 0, the classifier never scored on the held-out split (`score_test=False`), the "
        "encoder's epoch chosen by its own classifier's validation weighted F1. B1m / B2m = B1 / B2's kept encoder "
        "read out at `mean4` (`reencode_layer`, no training).",
        "- Stage C: EmoBERTa's input (the utterance with its speaker's name, then up to 50 past and 50 future "
        "utterances with theirs, cut to the encoder's 128 tokens, the far context first): C1 on IEMOCAP at the "
        "better-scoring of B1 / B2's settings, C2 on MELD at V1's (lr 2e-5, 3 epochs); otherwise as stage B.",
        "- Score: SAFSD-GLNet text only as `experiments/real_text.py` runs it (`preset(\"small\")`, the corpus's "
        "TEXT_SETTINGS, standardised features), seeds 0-4; the **validation** weighted F1 at the epoch chosen on "
        "validation, mean over seeds. Test metrics computed along the way were dropped unread: none is printed "
        "or stored.",
        "- Frozen encodings in fp32 on the CPU, as `build_text_corpus` encodes F, one torch thread; IEMOCAP's F "
        "vectors came from the existing cache, MELD's V1 from the fine-tuned features file of the first study.",
        "- Rule 1 over the stages run: the best candidate of stages A-C (ties within 0.1 to the cheaper; cost = "
        "encoding seconds, plus fine-tuning for stage B) is adopted if its score is >= 1.0 (IEMOCAP) / 0.5 "
        "(MELD) above the current default's and the mean paired (same-seed) difference is >= 2 standard errors "
        "(sd of the five differences / sqrt 5). The difference against A1 is shown for information only.",
        f"- Machine: {m.get('cpu_model', '?')}, {m.get('cpu_count', '?')} cores (shared; one used), amx_bf16 "
        f"{'present' if m.get('amx_bf16') else 'absent'}, torch {m.get('torch', '?')}, code "
        f"{', '.join(dict.fromkeys(str(x.get('git_commit') or '?')[:10] for x in machines)) or '?'}. "
        f"Result files: {', '.join(f'`{f}`' for f in files)}.", ""]
    for d in decisions:
        lines += [f"## {d['dataset']}", "",
                  "| candidate | what | valid w-F1 (mean ± std) | paired diff vs default ± SE | paired diff vs A1 ± SE "
                  "| per seed 0-4 | chosen / run epochs | features (s) |", "|---|---|---:|---:|---:|---|---|---:|"]
        for n, r in d["rows"].items():
            lines.append(f"| {n} | {WHAT[n]} | {r['mean']:.2f} ± {r['std']:.2f} | {_pm(r, 'diff')} | "
                         f"{_pm(r, 'diff_a1')} | {', '.join(f'{v:.2f}' for v in r['seeds'])} | "
                         f"{', '.join(r['epochs'])} | {_cost_text(d['features'].get(n, {}))} |")
        lines += ["", f"Seeds whose run reached the epoch cap ({d['epoch_cap']}) before patience stopped it: "
                      + ", ".join(f"{n} {r['at_cap']}/5" for n, r in d["rows"].items())
                      + " (where most did, the fixed budget may hold a candidate back; settings are stage D's).", ""]
        lines += _stage_b_lines(d)
        if d.get("missing"):
            lines += [f"Not scored (no five seeds): {', '.join(d['missing'])}; the decision below leaves them out.", ""]
        if d["decision"] == "incomplete":
            lines += ["Interim decision: **incomplete** (not every stage-A candidate has its five seeds).", ""]
        else:
            stages = "A-C" if stage_b_candidates(d["dataset"]) else "A and C (B is IEMOCAP's only)"
            lines += [f"Best candidate of stages {stages}: **{d['best']}**, paired difference to "
                      f"{d['default']} {d['paired_difference']:+.2f} (SE {d['paired_se']:.2f}; the rule asks "
                      f">= {d['margin']} and >= 2 SE). {'Decision' if 'test' in d else 'Interim decision'}: "
                      f"**{d['decision']}**.", ""]
        if "settings" in d:
            lines += _stage_d_lines(d["settings"])
        if d.get("study_notes"):
            lines += ["Notes:", "", *(f"- {n}" for n in d["study_notes"]), ""]
        if "test" in d:
            lines += _test_lines(d["test"])
    lines += ["## What remains", ""]
    start = len(lines)
    for d in decisions:
        notes = d.get("notes", {})
        if d.get("missing"):
            lines.append(f"- {d['dataset']}: {', '.join(d['missing'])} not scored yet"
                         + "".join(f"; {n}: {notes[n]}" for n in d["missing"] if n in notes)
                         + " (`stage-b` / `stage-c` continue where they stopped; C1 needs B1 to pick the better of "
                           "B1 / B2's settings).")
        if d.get("c3_owed"):
            lines.append(f"- {d['dataset']}: C3, the best candidate {d['best']} cross-fitted with K = 5 (it is a new "
                         "fine-tuned variant, so the plan owes it).")
    for d in decisions:
        if "test" not in d:
            lines.append(f"- {d['dataset']}: " + ("stage D (SAFSD-GLNet settings on the adopted features, `stage-d`), "
                                                  "then " if d.get("settings", {}).get("decision", "incomplete")
                                                  == "incomplete" else "")
                         + "rule 3: the single test reading (`test-reading`).")
    if len(lines) == start:
        return "\n".join(lines + ["Nothing: every corpus's decisions are made and its test split was read once.", ""])
    lines += ["- An interim adoption becomes the user's path (the plan's "
              "last section) only after the final decision.", ""]
    return "\n".join(lines)


def _stage_parser(sub, name: str, help: str, datasets: tuple[str, ...], out_help: str,
                  features: str | None = None) -> argparse.ArgumentParser:
    """A stage command: --dataset, --data, --cache, --out (and --features where the stage may read V1)."""
    p = sub.add_parser(name, help=help)
    p.add_argument("--dataset", choices=datasets, required=True)
    p.add_argument("--data", default=str(fs.DEFAULT_DATA))
    p.add_argument("--cache", default=str(fs.DEFAULT_CACHE))
    if features:
        p.add_argument("--features", help=features)
    p.add_argument("--out", required=True, help=out_help)
    return p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    stage = functools.partial(_stage_parser, sub)
    stage("stage-a", "score the default, A1 and A2 on validation", tuple(DEFAULT), "the corpus's results file "
          "(created)", features="MELD's V1 features file (kit corpus .npz)")
    stage("stage-b", "fine-tune B2, B1 (IEMOCAP), re-read them at mean4, score on validation", STAGE_B_DATASETS,
          "stage A's results file of the corpus")
    stage("stage-c", "fine-tune on EmoBERTa's context input (C1 IEMOCAP, C2 MELD), score on validation",
          tuple(STAGE_C), "stage A's results file of the corpus")
    stage("stage-c3", "cross-fit (K = 5) the leading fine-tuned variant, score on validation", tuple(DEFAULT),
          "the corpus's results file")
    v1 = "MELD's V1 features file (kit corpus .npz), when V1 stands adopted"
    stage("stage-d", "the 8 SAFSD-GLNet settings on the adopted features, on validation", tuple(DEFAULT),
          "the corpus's results file", features=v1)
    p = stage("test-reading", "rule 3: the single test reading of the decided features and settings", tuple(DEFAULT),
              "the corpus's results file (stages A-D)", features=v1)
    p.add_argument("--test-out", required=True, help="where the test reading goes (refused if it exists)")
    p = sub.add_parser("decide", help="rules 1 and 2 on the stages run; the report (with --test, the test readings)")
    p.add_argument("results", nargs="+")
    p.add_argument("--test", nargs="*", default=[], help="test readings (test-reading's files) to report")
    p.add_argument("--md", help="write the report here")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # the machine is shared: one core
    if args.command == "stage-a":
        stage_a(args)
    elif args.command == "stage-b":
        fine_tuned_stage(args, "B", STAGE_B if args.dataset in STAGE_B_DATASETS else ())
    elif args.command == "stage-c":
        fine_tuned_stage(args, "C", stage_c_candidates(args.dataset))
    elif args.command == "stage-c3":
        fine_tuned_stage(args, "C3", ("C3",))
    elif args.command == "stage-d":
        stage_d(args)
    elif args.command == "test-reading":
        test_reading(args)
    else:
        loaded = [read_json(f) for f in args.results]
        machines = [r[k] for r in loaded for k in sorted(r) if k.startswith("machine") and r[k]]
        tests = {t["dataset"]: t for t in (read_json(f) for f in args.test)}
        decisions = [decide(r) for r in loaded]
        for d in decisions:
            if d["dataset"] in tests:
                d["test"] = tests[d["dataset"]]
        text = report(decisions, machines, [*args.results, *args.test])
        print(text)
        if args.md:
            write_text(args.md, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
