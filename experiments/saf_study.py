"""The pre-registered study of the amended SAF loss's defaults (plan: ``docs/saf_study_plan.md``).

Every run trains SAFSD-GLNet with one change to a dataset's settings and records its
**validation** split only: the test dialogues are taken out of the corpus before training (the
run's "test" split is the validation split again), so no test score exists to be read.

Data (``--data``): ``iemocap`` and ``meld`` (frozen MiniLM sentence vectors of the shared real
text, built through the real-text benchmark's cache), ``meld-v1`` (the fine-tuned V1 features,
``--meld-v1 FILE.npz`` from ``safsd-glnet finetune --meld DIR --lr 2e-5 --epochs 3``), and
``synthetic-confused`` (the demo's synthetic corpus with 20% of each similar pair's utterances
relabelled as the partner).

Usage::

    python experiments/saf_study.py run --stage 1 --data iemocap meld meld-v1 synthetic-confused \\
        --meld-v1 meld_v1.npz --jobs 2 --out experiments/results/saf_study.json
    python experiments/saf_study.py decide experiments/results/saf_study.json --md docs/saf_study_results.md

``run`` works out the stage's variants from the runs already in ``--out`` (stage 2 needs stage 1,
and so on), skips finished runs, and rewrites ``--out`` after every run, so an interrupted stage
resumes. ``decide`` prints (and with ``--md`` writes) every table and the decision of the plan's
rule.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

DATASETS = ("iemocap", "meld", "meld-v1", "synthetic-confused")
IEMOCAP_CLASS_DATA = ("iemocap", "synthetic-confused")  # the corpora where the prior S and `reference` exist
CONFUSION_RATE, CONFUSION_SEED = 0.2, 12345  # synthetic-confused, as in docs/saf_investigation.md
EXPLORATORY_SEEDS, CONFIRMATION_SEEDS = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
CONTROL = "ce_scaled"
TIE = 0.05  # selection scores this close are a tie, won by the simpler variant

# Stage 1: name -> changes to the loss section ("g2" in ce_scaled is filled in per dataset).
STAGE1: dict[str, dict[str, Any]] = {
    "ce": {"use_saf": False},
    "saf_soft_0.1": {"saf_mode": "soft", "saf_eps": 0.1},
    CONTROL: {"use_saf": False, "student_weight": "g2"},
    "focal": {"saf_mode": "soft", "similarity": "identity"},
    "saf_soft_0.05": {"saf_mode": "soft", "saf_eps": 0.05},
    "saf_soft_0.2": {"saf_mode": "soft", "saf_eps": 0.2},
    "saf_penalty_0.5": {"saf_mode": "penalty", "saf_lambda": 0.5},
    "saf_penalty_1": {"saf_mode": "penalty", "saf_lambda": 1.0},
    "saf_penalty_2": {"saf_mode": "penalty", "saf_lambda": 2.0},
    "reference": {"saf_mode": "reference", "similarity": "prior"},
}
# The interim defaults every variant starts from (SPEC.md until this study has run).
INTERIM = {"use_saf": True, "saf_mode": "soft", "saf_eps": 0.1, "saf_lambda": 1.0, "saf_beta": 0.5,
           "similarity": "vad", "gamma": 2.0, "student_weight": 1.0}


# ------------------------------------------------------------------------------------- data

def confuse_similar_pairs(corpus, rate: float, seed: int):
    """A copy of ``corpus`` in which a seeded ``rate`` of the utterances of each class of a
    similar pair (:data:`safsd_glnet.dataset_facts.SIMILAR_EMOTIONS`) carry the partner's label. A
    class in two pairs (IEMOCAP frustrated) gives its flipped share to the partners in turn."""
    from safsd_glnet.data.corpus import Corpus, Dialogue
    from safsd_glnet.dataset_facts import SIMILAR_EMOTIONS

    index = {n: i for i, n in enumerate(corpus.class_names)}
    partners: dict[int, list[int]] = {}
    # The pairs the synthetic corpus builds to be similar; not the metrics' tracked pairs, which
    # add the neutral confusion (neutral / frustrated), a pair the synthetic features do not share.
    pairs = [(a, b) for corpus_pairs in SIMILAR_EMOTIONS.values() for a, b in corpus_pairs if a in index and b in index]
    for a, b in pairs:
        partners.setdefault(index[a], []).append(index[b])
        partners.setdefault(index[b], []).append(index[a])
    rng = np.random.default_rng(seed)
    dialogues = {}
    for key in sorted(corpus.dialogues):
        d = corpus.dialogues[key]
        labels = np.array(d.labels, copy=True)
        for i, y in enumerate(d.labels):
            if int(y) in partners and rng.random() < rate:
                options = partners[int(y)]
                labels[i] = options[int(rng.integers(len(options)))]
        dialogues[key] = Dialogue(d.id, d.speakers, labels, d.features, d.texts)
    return Corpus(corpus.name + "-confused", corpus.class_names, corpus.speaker_names, corpus.feature_sizes,
                  dialogues, corpus.splits, corpus.source + f":confused{rate}").validate()


def validation_only(corpus):
    """``corpus`` without its test dialogues; its "test" split names the validation dialogues, so
    that training (which evaluates a test split every epoch) never sees a test utterance."""
    import dataclasses

    keep = set(corpus.splits["train"]) | set(corpus.splits["valid"])
    splits = {"train": list(corpus.splits["train"]), "valid": list(corpus.splits["valid"]),
              "test": list(corpus.splits["valid"])}
    return dataclasses.replace(corpus, dialogues={k: d for k, d in corpus.dialogues.items() if k in keep},
                               splits=splits)


def load(name: str, meld_v1: str | None):
    """(corpus restricted to train + valid, base Config) of a dataset of the plan."""
    from experiments import real_text
    from safsd_glnet.grids import demo as sequence
    from safsd_glnet.grids.ablation import config_from_parameters
    from safsd_glnet.notebook.explore import open_corpus

    if name == "synthetic-confused":
        q = sequence.QUICK
        corpus = confuse_similar_pairs(open_corpus(q["DATA"], q["SYNTH_SIZES"], q["SYNTH_DIALOGUES"]),
                                       CONFUSION_RATE, CONFUSION_SEED)
        base = config_from_parameters({"PRESET": q["PRESET"], "EPOCHS": q["EPOCHS"]})
    elif name in ("iemocap", "meld", "meld-v1"):
        dataset = name.split("-")[0]
        if name == "meld-v1":
            if not meld_v1:
                raise SystemExit("--data meld-v1 needs --meld-v1 FILE.npz (safsd-glnet finetune --meld DIR --lr 2e-5 "
                                 "--epochs 3 --out FILE.npz)")
            corpus = real_text.load_feature_file("meld", Path(meld_v1))
        else:
            corpus = real_text.load_dataset(dataset, real_text.DEFAULT_DATA, "minilm", real_text.DEFAULT_CACHE, "cpu")
        corpus = corpus.with_modalities(("t",))
        base = real_text.glnet_config(dataset, "glnet", 0, device="cpu")
    else:
        raise SystemExit(f"unknown dataset {name!r}: expected one of {DATASETS}")
    return validation_only(corpus), base


# ------------------------------------------------------------------------------------- runs

_CORPORA: dict[str, Any] = {}


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def one_run(data: str, meld_v1: str | None, config: dict[str, Any]) -> dict[str, Any]:
    """Train one configuration on one dataset; the validation record of the plan."""
    from safsd_glnet.config import Config
    from safsd_glnet.model.metrics import similar_pair_confusion, similar_pairs_for
    from safsd_glnet.training.train import train

    if data not in _CORPORA:
        _CORPORA[data] = load(data, meld_v1)[0]
    corpus = _CORPORA[data]
    cfg = Config.from_dict(config)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    metrics = train(cfg, corpus).metrics
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    valid = metrics["valid"]
    history = metrics["history"]
    pairs = similar_pair_confusion(valid["confusion"], corpus.class_names, similar_pairs_for(corpus.class_names))
    students = [s["weighted_f1"] for s in valid.get("students", {}).values()]
    return {
        "valid_weighted_f1": float(valid["weighted_f1"]), "valid_macro_f1": float(valid["macro_f1"]),
        "valid_accuracy": float(valid["accuracy"]), "chosen_epoch": int(metrics["chosen_epoch"]),
        "epochs_run": int(metrics["epochs_run"]),
        "valid_students_weighted_f1": float(np.mean(students)) if students else None,
        "valid_pair_confusion": float(np.mean([v["mean"] for v in pairs.values()])),
        "loss_first": history[0]["loss"], "loss_chosen": history[metrics["chosen_epoch"] - 1]["loss"],
        "student_weight": cfg.loss.student_weight, "loss_config": config["loss"],
        "cpu_seconds": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
    }


def variant_config(base, changes: dict[str, Any], seed: int):
    """The base configuration with the variant's loss changes and the seed (CPU, no progress)."""
    return base.replace(loss=dict(changes), train={"seed": seed, "progress": False, "device": "cpu"})


def stage_variants(stage: int, data: str, runs: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], tuple[int, ...]]:
    """The variants (name -> loss changes) and seeds of ``stage`` for ``data``, from the runs so far."""
    if stage == 1:
        out = {k: dict(v) for k, v in STAGE1.items() if k != "reference" or data in IEMOCAP_CLASS_DATA}
        if CONTROL in out:
            ratio = scale_ratio(runs, data)
            if ratio is None:  # the control waits for ce and saf_soft_0.1 (run them first)
                del out[CONTROL]
            else:
                out[CONTROL]["student_weight"] = round(ratio, 4)
        return out, EXPLORATORY_SEEDS
    definitions = all_variants(runs)
    if stage == 2:
        out = {}
        for family in ("soft", "penalty"):
            best = best_of(runs, [n for n in STAGE1 if n.startswith(f"saf_{family}_")])
            for beta in (0.0, 1.0):
                out[f"{best}_beta{beta:g}"] = {**STAGE1[best], "saf_beta": beta}
        return out, EXPLORATORY_SEEDS
    if stage == 3:
        best = best_of(runs, [n for n, v in definitions.items() if v.get("saf_mode") in ("soft", "penalty")
                              and v.get("similarity", "vad") == "vad"])
        out = {f"{best}_prototype": {**definitions[best], "similarity": "prototype"}}
        if data in IEMOCAP_CLASS_DATA:
            out[f"{best}_prior"] = {**definitions[best], "similarity": "prior"}
        return out, EXPLORATORY_SEEDS
    if stage == 4:
        chosen = chosen_variant(runs)
        return {chosen: definitions[chosen], CONTROL: dict(control_definition(runs, data))}, CONFIRMATION_SEEDS
    raise SystemExit(f"unknown stage {stage}: expected 1-4")


def run(args) -> None:
    from safsd_glnet.data.atomic_files import read_json, write_json

    out = Path(args.out)
    log = read_json(out) if out.exists() else {"plan": "docs/saf_study_plan.md", "runs": {}}
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    bases = {data: load(data, args.meld_v1)[1] for data in args.data}
    # spawn, not fork: each worker loads its corpora itself (from the feature cache) with its own threads
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context, initializer=_worker_init,
                             initargs=(args.threads,)) as pool:
        while True:  # stage 1 runs twice: the control needs ce and saf_soft_0.1 first
            todo = {}
            for data in args.data:
                variants, seeds = stage_variants(args.stage, data, log["runs"])
                for seed in seeds:  # seed-major: an interrupted stage has every variant for its first seeds
                    for name, changes in variants.items():
                        key = f"{data}/{name}/seed{seed}"
                        if key not in log["runs"]:
                            todo[key] = (data, variant_config(bases[data], changes, seed).to_dict(), args.stage)
            if not todo:
                break
            futures = {pool.submit(one_run, data, args.meld_v1, cfg): (key, stage) for key, (data, cfg, stage) in todo.items()}
            for fut in as_completed(futures):
                key, stage = futures[fut]
                record = fut.result()
                record["stage"] = stage
                log["runs"][key] = record
                write_json(out, log)
                print(f"{key}: valid w-F1 {record['valid_weighted_f1']:.2f}, students "
                      f"{record['valid_students_weighted_f1']:.2f}, pair confusion {record['valid_pair_confusion']:.1f}% "
                      f"({record['cpu_seconds']:.0f} s CPU)", flush=True)


# ------------------------------------------------------------------------------------- the rule

def _by(runs: dict[str, Any]) -> dict[tuple[str, str], dict[int, dict[str, Any]]]:
    """(data, variant) -> seed -> record."""
    out: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for key, rec in runs.items():
        data, variant, seed = key.split("/")
        out.setdefault((data, variant), {})[int(seed[4:])] = rec
    return out


def _student_term(rec: dict[str, Any]) -> float:
    """The first epoch's mean student loss term (over the student modalities)."""
    return float(np.mean([v for k, v in rec["loss_first"].items() if k.startswith("student_")]))


def scale_ratio(runs: dict[str, Any], data: str) -> float | None:
    """r_d: first-epoch student SAF term of saf_soft_0.1 over the first-epoch student CE term of ce."""
    groups = _by(runs)
    saf, ce = groups.get((data, "saf_soft_0.1"), {}), groups.get((data, "ce"), {})
    if not all(s in saf and s in ce for s in EXPLORATORY_SEEDS):
        return None
    return float(np.mean([_student_term(saf[s]) for s in EXPLORATORY_SEEDS])
                 / np.mean([_student_term(ce[s]) for s in EXPLORATORY_SEEDS]))


def control_definition(runs: dict[str, Any], data: str) -> dict[str, Any]:
    ratio = scale_ratio(runs, data)
    if ratio is None:
        raise SystemExit(f"{data}: the scale control needs stage 1's ce and saf_soft_0.1 on seeds 0-4")
    return {"use_saf": False, "student_weight": round(ratio, 4)}


def all_variants(runs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every variant that has runs, with its loss changes (as recorded)."""
    out = {}
    for key, rec in runs.items():
        name = key.split("/")[1]
        out.setdefault(name, {k: v for k, v in rec["loss_config"].items() if INTERIM.get(k, v) != v or k in
                              ("saf_mode", "similarity", "use_saf")})
    return out


def paired(runs: dict[str, Any], data: str, variant: str, seeds=EXPLORATORY_SEEDS) -> np.ndarray:
    """Validation weighted F1 of ``variant`` minus the control's, seed by seed (seeds both have)."""
    groups = _by(runs)
    mine, theirs = groups.get((data, variant), {}), groups.get((data, CONTROL), {})
    return np.array([mine[s]["valid_weighted_f1"] - theirs[s]["valid_weighted_f1"] for s in seeds
                     if s in mine and s in theirs])


def selection_score(runs: dict[str, Any], variant: str) -> float | None:
    """Mean over the datasets of the mean paired difference to the control on seeds 0-4 (None
    unless every dataset that ran the control has all five pairs)."""
    datasets = sorted({k.split("/")[0] for k in runs if k.split("/")[1] == CONTROL})
    means = []
    for data in datasets:
        d = paired(runs, data, variant)
        if len(d) < len(EXPLORATORY_SEEDS):
            return None
        means.append(d.mean())
    return float(np.mean(means)) if means else None


def _changes(name: str, runs: dict[str, Any]) -> int:
    """How many loss fields the variant changes from the interim default (its simplicity)."""
    v = all_variants(runs)[name]
    return sum(1 for k, x in v.items() if k in INTERIM and INTERIM[k] != x)


def best_of(runs: dict[str, Any], names: list[str]) -> str:
    scored = [(selection_score(runs, n), n) for n in names]
    scored = [(s, n) for s, n in scored if s is not None]
    if not scored:
        raise SystemExit(f"no selection score yet for any of {names}: run the earlier stage first")
    top = max(s for s, _ in scored)
    ties = [n for s, n in scored if s >= top - TIE]
    return min(ties, key=lambda n: (_changes(n, runs), names.index(n)))


def candidates(runs: dict[str, Any]) -> list[str]:
    """Soft, penalty and focal variants that ran on every dataset of the study."""
    datasets = {k.split("/")[0] for k in runs}
    groups = _by(runs)
    names = [n for n, v in all_variants(runs).items() if v.get("use_saf", True) and v.get("saf_mode") in ("soft", "penalty")]
    return [n for n in names if all(len(groups.get((d, n), {})) >= len(EXPLORATORY_SEEDS) for d in datasets)]


def chosen_variant(runs: dict[str, Any]) -> str:
    return best_of(runs, candidates(runs))


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def decision(runs: dict[str, Any]) -> dict[str, Any]:
    """The plan's rule applied to the runs (stage 4 must have run for a final decision)."""
    chosen = chosen_variant(runs)
    datasets = sorted({k.split("/")[0] for k in runs})
    per_data = {d: paired(runs, d, chosen, CONFIRMATION_SEEDS) for d in datasets}
    pooled = np.concatenate(list(per_data.values()))
    out: dict[str, Any] = {"chosen": chosen, "definition": all_variants(runs)[chosen],
                           "confirmation_pairs": int(len(pooled))}
    if len(pooled) < len(datasets) * len(CONFIRMATION_SEEDS):
        out["final"] = False
        return out
    mean, se = float(pooled.mean()), _se(pooled)
    worst = {d: (float(x.mean()), _se(x)) for d, x in per_data.items()}
    helps = mean >= 0.3 and mean >= 2 * se and all(m >= -2 * s for m, s in worst.values())
    out.update(final=True, pooled_mean=mean, pooled_se=se, per_dataset=worst, saf_helps=helps)
    if helps or mean > -2 * se:
        out["default"] = chosen
    else:
        ranked = sorted((n for n in candidates(runs) if n != chosen), key=lambda n: -(selection_score(runs, n) or -1e9))
        for n in ranked:  # the next by selection score that does not lose on the exploratory seeds
            d = np.concatenate([paired(runs, data, n) for data in datasets])
            if d.mean() > -2 * _se(d):
                out["default"] = n
                break
    return out


# ------------------------------------------------------------------------------------- report

def _fmt(x: np.ndarray) -> str:
    return f"{x.mean():.2f} ± {x.std(ddof=1):.2f}" if len(x) > 1 else (f"{x[0]:.2f}" if len(x) else "")


def tables(runs: dict[str, Any]) -> str:
    groups = _by(runs)
    variants = list(dict.fromkeys(k.split("/")[1] for k in runs))
    lines = []
    for data in DATASETS:
        if not any(d == data for d, _ in groups):
            continue
        r = scale_ratio(runs, data)
        lines += [f"\n### {data}\n",
                  f"Scale control: r = {r:.3f} (first-epoch student SAF term of saf_soft_0.1 / student CE term of ce)."
                  if r is not None else "Scale control: not yet computed.", "",
                  "| variant | seeds | valid w-F1 | minus ce_scaled (paired ± SE) | students' valid w-F1 "
                  "| similar-pair confusion (%) | epoch-1 student term | epoch-1 teacher CE |",
                  "|---|---|---|---|---|---|---|---|"]
        for v in variants:
            for seeds, label in ((EXPLORATORY_SEEDS, ""), (CONFIRMATION_SEEDS, " (seeds 5-9)")):
                recs = [groups.get((data, v), {}).get(s) for s in seeds]
                recs = [x for x in recs if x is not None]
                if not recs:
                    continue
                f1 = np.array([x["valid_weighted_f1"] for x in recs])
                d = paired(runs, data, v, seeds)
                diff = f"{d.mean():+.2f} ± {_se(d):.2f}" if v != CONTROL and len(d) > 1 else ""
                stu = np.array([x["valid_students_weighted_f1"] for x in recs])
                pc = np.array([x["valid_pair_confusion"] for x in recs])
                term = np.array([_student_term(x) for x in recs])
                teacher = np.array([x["loss_first"]["teacher_ce"] for x in recs])
                lines.append(f"| {v}{label} | {len(recs)} | {_fmt(f1)} | {diff} | {_fmt(stu)} | {_fmt(pc)} | "
                             f"{term.mean():.3f} | {teacher.mean():.3f} |")
    return "\n".join(lines)


def report(runs: dict[str, Any]) -> str:
    cpu = sum(r["cpu_seconds"] for r in runs.values())
    lines = [tables(runs), "",
             f"Validation split only; mean ± sample std over seeds; {len(runs)} runs, {cpu / 3600:.2f} CPU hours.", ""]
    scores = {n: selection_score(runs, n) for n in all_variants(runs)}
    lines += ["### Selection scores (mean over datasets of the paired difference to ce_scaled, seeds 0-4)", "",
              "| variant | score |", "|---|---|"]
    lines += [f"| {n} | {s:+.2f} |" for n, s in sorted(scores.items(), key=lambda x: -(x[1] or -1e9)) if s is not None]
    try:
        dec = decision(runs)
    except SystemExit as e:
        dec = {"note": str(e)}
    lines += ["", "### Decision", "", "```json", json.dumps(dec, indent=1), "```"]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run one stage of the plan")
    r.add_argument("--stage", type=int, required=True, choices=(1, 2, 3, 4))
    r.add_argument("--data", nargs="+", default=list(DATASETS), choices=DATASETS)
    r.add_argument("--meld-v1", help="the V1 fine-tuned MELD corpus (.npz) for --data meld-v1")
    r.add_argument("--jobs", type=int, default=2, help="runs at a time")
    r.add_argument("--threads", type=int, default=1, help="torch threads per run")
    r.add_argument("--out", required=True, help="JSON log (resumed when it exists)")
    d = sub.add_parser("decide", help="print the tables and the decision")
    d.add_argument("log")
    d.add_argument("--md", help="also write the tables to this Markdown file")
    args = p.parse_args(argv)
    if args.command == "run":
        run(args)
        return 0
    from safsd_glnet.data.atomic_files import read_json, write_text

    text = report(read_json(Path(args.log))["runs"])
    print(text)
    if args.md:
        write_text(Path(args.md), text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
