"""Why does the SAF loss lower the score on the demo's synthetic data? (validation only)

The log of this study is ``docs/saf_investigation.md``; this script makes its numbers. Every
run trains SAFSD-GLNet with one change to the settings the notebooks use, over several seeds,
and records the **validation** split only (weighted F1 at the epoch chosen on validation, the
students' validation weighted F1, the similar-pair confusion on validation, and the loss terms
of the first and the chosen epoch). No test score is read, printed or stored.

Data (``--data``):

* ``synthetic``: the demo's corpus (``safsd_glnet.sequence.QUICK``: synthetic IEMOCAP, feature
  sizes 100/80/60, 80 dialogues, preset ``small``, 16 epochs);
* ``synthetic-confused``: the same corpus after "annotator confusion" between the similar pairs:
  a fixed, seeded 20% of the utterances of each class of a similar pair carry the label of its
  partner instead (all splits, the same way). It asks whether a similarity-aware loss helps when
  similarity shows in the labels, which the synthetic corpus never does by itself. It is an
  analysis only: the kit's synthetic corpus is not changed;
* ``meld``: the real MELD text (MiniLM features built through the cache), text only, with the
  settings the notebooks use on it (``safsd_glnet.sequence.REAL_MELD``).

Variants (``--variants``) are changes to the loss (see :data:`VARIANTS`).

Usage::

    python experiments/saf_investigation.py --data synthetic --seeds 0 1 2 3 4 --out saf.json
    python experiments/saf_investigation.py --data meld --meld ../shared/data/meld --seeds 0 1 2 --out saf.json
    python experiments/saf_investigation.py --report saf.json        # the Markdown tables

``--out`` is rewritten after every run and finished runs are skipped, so an interrupted study
resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

# name -> (what it asks, changes to the configuration; "C" is replaced by the number of classes)
VARIANTS: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "no_saf": ("students learn with class-weighted CE (the ablation 'w/o SAF')", {"loss": {"use_saf": False}}),
    "saf_vad": ("the default: soft SAF, vad similarity, gamma 2, alpha normalised to sum 1", {}),
    "saf_identity": ("soft SAF with S = I: the focal loss alone (no similarity)", {"loss": {"similarity": "identity"}}),
    "saf_vad_xC": ("(a) the default with the student weight g2 = C, which undoes alpha's sum-to-1 scale",
                   {"loss": {"student_weight": "C"}}),
    "saf_vad_gamma0": ("(b) the default with gamma 0 (no focal factor)", {"loss": {"gamma": 0.0}}),
    "saf_identity_gamma0_xC": ("(a)+(b) S = I, gamma 0, g2 = C: alpha-weighted CE at CE's scale",
                               {"loss": {"similarity": "identity", "gamma": 0.0, "student_weight": "C"}}),
    "saf_penalty_vad": ("penalty mode: punish mass on the similar classes instead of rewarding it",
                        {"loss": {"saf_mode": "penalty"}}),
    "saf_prototype": ("(d) soft SAF with the (centred) prototype similarity", {"loss": {"similarity": "prototype"}}),
    "saf_vad_detach": ("the default, with the teacher detached from the KL terms", {"loss": {"detach_teacher": True}}),
    "saf_vad_alpha_uniform": ("the default with alpha_c = 1/C: the weights no longer tilt the soft target",
                              {"loss": {"alpha": "uniform"}}),
}
CONFUSION_RATE = 0.2  # synthetic-confused: share of a similar class' utterances given the partner's label


# ------------------------------------------------------------------------------------- data

def load(name: str, meld_dir: str | None):
    from safsd_glnet import sequence
    from safsd_glnet.explore import open_corpus

    if name in ("synthetic", "synthetic-confused"):
        q = sequence.QUICK
        corpus = open_corpus(q["DATA"], q["SYNTH_SIZES"], q["SYNTH_DIALOGUES"])
        settings = dict(q)
        if name == "synthetic-confused":
            corpus = confuse_similar_pairs(corpus, CONFUSION_RATE, seed=12345)
        return corpus, settings
    if name == "meld":
        if not meld_dir:
            raise SystemExit("--data meld needs --meld DIR (the folder of the three MELD CSVs)")
        settings = sequence.real_meld_settings(meld_dir)
        return open_corpus(settings["DATA"]), settings
    raise SystemExit(f"unknown --data {name!r}")


def confuse_similar_pairs(corpus, rate: float, seed: int):
    """A copy of ``corpus`` in which a seeded ``rate`` of the utterances of each class of a
    similar pair (:data:`safsd_glnet.facts.SIMILAR_EMOTIONS`) carry the partner's label. A
    class in two pairs (IEMOCAP frustrated) gives its flipped share to the partners in turn."""
    from safsd_glnet.data.corpus import Corpus, Dialogue
    from safsd_glnet.facts import SIMILAR_EMOTIONS

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


# ------------------------------------------------------------------------------------- runs

def config_for(settings: dict[str, Any], variant: str, seed: int, num_classes: int, modalities):
    from safsd_glnet.ablate import config_from_parameters

    cfg = config_from_parameters({"PRESET": settings.get("PRESET", "small"), "EPOCHS": settings.get("EPOCHS", 0),
                                  "SEED": seed, "SET": list(settings.get("SET", []))})
    changes = json.loads(json.dumps(VARIANTS[variant][1]))
    for section in changes.values():
        for k, v in section.items():
            if v == "C":
                section[k] = float(num_classes)
    cfg = cfg.replace(**changes) if changes else cfg
    return cfg.replace(model={"modalities": "".join(modalities)}, train={"progress": False, "device": "cpu"})


def one_run(corpus, cfg) -> dict[str, Any]:
    from safsd_glnet.metrics import similar_pair_confusion, similar_pairs_for
    from safsd_glnet.train import train

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.time()
    metrics = train(cfg, corpus).metrics
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    valid = metrics["valid"]
    history = metrics["history"]
    chosen = history[metrics["chosen_epoch"] - 1]
    pairs = similar_pair_confusion(valid["confusion"], corpus.class_names, similar_pairs_for(corpus.class_names))
    students = [s["weighted_f1"] for s in valid.get("students", {}).values()]
    return {
        "valid_weighted_f1": float(valid["weighted_f1"]), "valid_macro_f1": float(valid["macro_f1"]),
        "valid_accuracy": float(valid["accuracy"]), "chosen_epoch": int(metrics["chosen_epoch"]),
        "valid_students_weighted_f1": float(np.mean(students)) if students else None,
        "valid_pair_confusion": float(np.mean([v["mean"] for v in pairs.values()])),
        "loss_first": history[0]["loss"], "loss_chosen": chosen["loss"],
        "wall_seconds": round(time.time() - t0, 1),
        "cpu_seconds": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
    }


def run(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    log = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    for data in args.data:
        corpus, settings = load(data, args.meld)
        log.setdefault("settings", {})[data] = {k: v for k, v in settings.items() if k != "DATA"}
        for seed in args.seeds:  # seed-major: an interrupted study has every variant for its first seeds
            for variant in args.variants:
                key = f"{data}/{variant}/seed{seed}"
                if key in log["runs"]:
                    continue
                cfg = config_for(settings, variant, seed, corpus.num_classes, corpus.modalities)
                record = one_run(corpus, cfg)
                record["student_weight"] = cfg.loss.student_weight
                log["runs"][key] = record
                out.write_text(json.dumps(log, indent=1))
                print(f"{key}: valid w-F1 {record['valid_weighted_f1']:.2f}, students {record['valid_students_weighted_f1']:.2f}, "
                      f"pair confusion {record['valid_pair_confusion']:.1f}% ({record['cpu_seconds']:.0f} s CPU)", flush=True)


# ------------------------------------------------------------------------------------- targets

# The target itself is safsd_glnet.losses.soft_saf_target (tested there); its table for a corpus
# is safsd_glnet.comparison.soft_target_rows, which notebook 03 shows too.


# ------------------------------------------------------------------------------------- report

def report(paths: list[str]) -> str:
    runs: dict[str, dict[str, Any]] = {}
    for p in paths:
        runs.update(json.loads(Path(p).read_text())["runs"])
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    seeds: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for key, rec in runs.items():
        data, variant, seed = key.split("/")
        groups.setdefault((data, variant), []).append(rec)
        seeds.setdefault((data, variant), {})[int(seed[4:])] = rec
    lines = []
    cpu = sum(r["cpu_seconds"] for r in runs.values())
    for data in dict.fromkeys(d for d, _ in groups):
        base = groups.get((data, "no_saf"))
        lines += [f"\n### {data}\n",
                  "| variant | seeds | valid w-F1 | minus no SAF | students' valid w-F1 | similar-pair confusion (valid, %) "
                  "| g2 x student term / teacher CE, epoch 1 |",
                  "|---|---:|---|---|---|---|---|"]
        for variant in VARIANTS:
            recs = groups.get((data, variant))
            if not recs:
                continue
            f1 = np.array([r["valid_weighted_f1"] for r in recs])
            diff = ""
            if base and variant != "no_saf":
                mine, theirs = seeds[(data, variant)], seeds[(data, "no_saf")]
                paired = [mine[k]["valid_weighted_f1"] - theirs[k]["valid_weighted_f1"] for k in sorted(mine) if k in theirs]
                diff = f"{np.mean(paired):+.2f} ± {np.std(paired, ddof=1) / np.sqrt(len(paired)):.2f}" \
                    if len(paired) > 1 else f"{paired[0]:+.2f}"
            stu = np.array([r["valid_students_weighted_f1"] for r in recs])
            pc = np.array([r["valid_pair_confusion"] for r in recs])
            # g2 x the mean student term over g1 x the teacher's CE, in the first epoch
            ratio = np.mean([r.get("student_weight", 1.0) * np.mean([v for k, v in r["loss_first"].items()
                                                                     if k.startswith("student_")])
                             / r["loss_first"]["teacher_ce"] for r in recs])
            sd = lambda x: f" ± {x.std(ddof=1):.2f}" if len(x) > 1 else ""  # noqa: E731
            lines.append(f"| {variant} | {len(recs)} | {f1.mean():.2f}{sd(f1)} | {diff} | {stu.mean():.2f}{sd(stu)} | "
                         f"{pc.mean():.1f}{sd(pc)} | {ratio:.2f} |")
    lines.append(f"\nValidation split only; mean ± sample std over seeds; 'minus no SAF' is the paired difference "
                 f"(same seed) ± its standard error. {len(runs)} runs, {cpu / 60:.1f} CPU minutes in all.")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", nargs="+", default=["synthetic"], choices=("synthetic", "synthetic-confused", "meld"))
    p.add_argument("--meld", help="folder of the MELD CSVs (for --data meld)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="JSON log (resumed when it exists)")
    p.add_argument("--report", nargs="+", metavar="JSON", help="print the tables of these logs")
    p.add_argument("--targets", action="store_true",
                   help="print what soft SAF teaches each class at gamma 0 (vad S, inverse and uniform alpha)")
    args = p.parse_args(argv)
    if args.report:
        print(report(args.report))
        return 0
    if args.targets:
        from safsd_glnet.comparison import format_soft_target_rows, soft_target_rows
        from safsd_glnet.explore import markdown_table

        for data in args.data:
            corpus, _ = load(data, args.meld)
            for alpha in ("inverse", "uniform"):
                print(f"\n{data}, soft SAF with vad S, alpha {alpha}: the student's target at gamma 0\n")
                print(markdown_table(format_soft_target_rows(soft_target_rows(corpus, "vad", alpha))))
        return 0
    if not args.out:
        p.error("--out is required to run")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
