"""SAF against no SAF, over seeds: what ``notebooks/03_confusion_and_embeddings.ipynb`` computes.

Two runs differ only in the students' loss (:func:`~safsd_glnet.runs.student_loss_name`): the
Similarity-Aware Focal loss, or plain class-weighted cross-entropy. One seed says little (on
the demo's data a seed moves weighted F1 by several points), so :func:`compare_saf` trains (or
reuses) the pair for every seed, :func:`seed_table` puts validation and test scores side by
side with their spread and the paired difference, and the figures of one seed
(:func:`predictions_of`, :func:`embedding_maps`) show what the numbers mean.

Shape letters: N utterances of the analysed split, M of the training split, F feature width.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import files
from .metrics import compute_metrics, similar_pair_confusion, similar_pairs_for
from .runs import for_corpus, load_run, student_loss_name, train_or_reuse


@dataclass
class Run:
    config: Any
    metrics: dict[str, Any]
    model: Any
    folder: Path


@dataclass
class Comparison:
    """``runs[label][seed]``: the runs, the SAF label first; ``seeds`` in order."""

    corpus: Any
    seeds: list[int]
    runs: dict[str, dict[int, Run]] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return list(self.runs)

    def run(self, label: str, seed: int | None = None) -> Run:
        return self.runs[label][self.seeds[0] if seed is None else seed]


def _folder(config) -> str:
    return "saf" if config.loss.use_saf else "no_saf"


def compare_saf(config, corpus, work_dir: str | Path, seeds: Sequence[int] = (0,), *, run_dir: str | Path = "",
                compare_dir: str | Path = "", device: Any = "cpu", callback_factory: Callable[[], Any] | None = None,
                log: Callable[[str], None] | None = print) -> Comparison:
    """Train (or reuse, :func:`~safsd_glnet.runs.train_or_reuse`) ``config`` and its SAF
    counterpart (``loss.use_saf`` switched) for every seed into
    ``work_dir/<saf|no_saf>-seed<k>/``.

    ``run_dir`` studies a finished run instead (its own configuration and seed); ``compare_dir``
    gives its counterpart (else it is trained with the same configuration and seed). The
    configuration is first fitted to the corpus' modalities (:func:`~safsd_glnet.runs.for_corpus`).
    ``callback_factory`` makes each training's callback (e.g. a progress printer)."""
    work = Path(work_dir)
    out = Comparison(corpus, [])
    make = callback_factory or (lambda: None)

    def add(run: Run) -> None:
        out.runs.setdefault(student_loss_name(run.config), {})[run.config.train.seed] = run

    def trained(cfg) -> Run:
        folder = work / f"{_folder(cfg)}-seed{cfg.train.seed}"
        if log is not None:
            log(f"seed {cfg.train.seed}: {student_loss_name(cfg)} -> {folder}")
        metrics, model = train_or_reuse(cfg, corpus, folder, callback=make(), log=log)
        if log is not None:
            log(f"  valid weighted F1 {metrics['valid']['weighted_f1']:.2f} at epoch {metrics['chosen_epoch']} "
                f"of {metrics['epochs_run']} ({metrics['seconds']:.0f} s of training)")
        return Run(cfg, metrics, model.to(device), folder)

    if run_dir:
        given, metrics, model = load_run(run_dir, corpus, device)
        add(Run(given, metrics, model, Path(run_dir)))
        out.seeds = [given.train.seed]
        if compare_dir:
            other, other_metrics, other_model = load_run(compare_dir, corpus, device)
            add(Run(other, other_metrics, other_model, Path(compare_dir)))
        else:
            add(trained(given.replace(loss={"use_saf": not given.loss.use_saf})))
    else:
        config = for_corpus(config, corpus, log)
        out.seeds = [int(s) for s in seeds]
        if not out.seeds:
            raise ValueError("compare_saf: no seeds given")
        for seed in out.seeds:
            cfg = config.replace(train={"seed": seed})
            for c in (cfg, cfg.replace(loss={"use_saf": not cfg.loss.use_saf})):
                add(trained(c))
    saf_first = sorted(out.runs, key=lambda label: not label.startswith("SAF"))
    out.runs = {label: out.runs[label] for label in saf_first}
    return out


def seed_table(comparison: Comparison) -> list[dict[str, Any]]:
    """One row per run label: validation and test weighted F1 of every seed, their mean and
    sample std, and (on the rows after the first) the mean paired difference to the first
    label on the same seeds, validation and test, with its standard error."""
    from .metrics import mean_std

    rows = []
    first = comparison.labels[0]
    for label in comparison.labels:
        valid = [comparison.runs[label][s].metrics["valid"]["weighted_f1"] for s in comparison.seeds]
        test = [comparison.runs[label][s].metrics["test"]["weighted_f1"] for s in comparison.seeds]
        row: dict[str, Any] = {"label": label, "seeds": len(comparison.seeds), "valid_values": valid,
                               "test_values": test}
        for split, values in (("valid", valid), ("test", test)):
            row[f"{split}_mean"], row[f"{split}_std"] = mean_std(values)
        if label != first:
            for split in ("valid", "test"):
                diff = [comparison.runs[label][s].metrics[split]["weighted_f1"]
                        - comparison.runs[first][s].metrics[split]["weighted_f1"] for s in comparison.seeds]
                row[f"{split}_diff"] = float(np.mean(diff))
                row[f"{split}_diff_se"] = float(np.std(diff, ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else None
        rows.append(row)
    return rows


def format_seed_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """:func:`seed_table` rows as text cells for a Markdown table (``mean ± std``; one seed
    shows its value alone, a spread of one value being meaningless)."""
    def spread(mean: float, std: float, n: int) -> str:
        return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"

    def diff(row: dict[str, Any], split: str) -> str:
        if f"{split}_diff" not in row:
            return ""
        se = row[f"{split}_diff_se"]
        return f"{row[f'{split}_diff']:+.2f}" + (f" ± {se:.2f}" if se is not None else "")

    out = []
    for r in rows:
        out.append({"run": r["label"], "seeds": str(r["seeds"]),
                    "valid w-F1": spread(r["valid_mean"], r["valid_std"], r["seeds"]),
                    "test w-F1": spread(r["test_mean"], r["test_std"], r["seeds"]),
                    f"valid: minus {rows[0]['label']}": diff(r, "valid"),
                    f"test: minus {rows[0]['label']}": diff(r, "test")})
    return out


def predictions_of(comparison: Comparison, split: str, seed: int | None = None, features: bool = True,
                   batch_size: int = 16) -> dict[str, Any]:
    """label -> :class:`~safsd_glnet.train.Predictions` of that seed's run on ``split``."""
    from .train import predict

    dialogues = comparison.corpus.split(split)
    return {label: predict(comparison.run(label, seed).model, dialogues, batch_size=batch_size, features=features)
            for label in comparison.labels}


def split_results(comparison: Comparison, predictions: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metrics, pair rates)`` per label from :func:`predictions_of`: :func:`compute_metrics`
    and :func:`similar_pair_confusion` of the similar pairs of the corpus' classes."""
    names = comparison.corpus.class_names
    results = {label: compute_metrics(p.labels, p.preds, names) for label, p in predictions.items()}
    pairs = similar_pairs_for(names)
    rates = {label: similar_pair_confusion(r["confusion"], names, pairs) for label, r in results.items()}
    return results, rates


def summary_rows(results: dict[str, Any], rates: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"run": label, "accuracy": r["accuracy"], "weighted F1": r["weighted_f1"], "macro F1": r["macro_f1"],
             "similar-pair confusion (mean %)": float(np.mean([v["mean"] for v in rates[label].values()]))}
            for label, r in results.items()]


def speakers_of(corpus, predictions) -> np.ndarray:
    """(N,) the speaker index of every utterance of a :class:`~safsd_glnet.train.Predictions`."""
    return np.array([corpus.dialogues[d].speakers[i] for d, i in zip(predictions.dialogue_ids, predictions.positions)],
                    dtype=np.int64)


def sample(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a fixed random subset of ``max_points`` out of ``n`` (all for 0 or more)."""
    if 0 < max_points < n:
        return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    return np.arange(n)


def embedding_maps(comparison: Comparison, predictions: dict[str, Any], method: str = "lda", *,
                   max_points: int = 2000, center_speakers: bool = True, seed: int | None = None,
                   fit_split: str = "train", fit_points: int = 6000) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray]:
    """2-D maps of the features each head reads, for :func:`safsd_glnet.plots.plot_embeddings`.

    Returns ``(panels, labels)``: ``panels[run label]["teacher" | "<modality> student"]`` (n, 2)
    for a fixed random subset of ``max_points`` utterances of ``predictions`` (the same subset
    in every panel), and their (n,) true labels. ``"lda"`` learns its projection per head from
    ``fit_split`` (at most ``fit_points`` utterances, :func:`~safsd_glnet.plots.embed_2d`); with
    ``center_speakers`` each speaker's mean is subtracted first (in both sets)."""
    from .facts import MODALITY_NAMES
    from .plots import embed_2d

    corpus = comparison.corpus
    first = next(iter(predictions.values()))
    subset = sample(len(first.labels), max_points)
    groups = speakers_of(corpus, first)[subset] if center_speakers else None
    fit = predictions_of(comparison, fit_split, seed) if method == "lda" else None
    panels: dict[str, dict[str, np.ndarray]] = {}
    for label, p in predictions.items():
        heads = {"teacher": (p.teacher_features, None if fit is None else fit[label].teacher_features)}
        for m, feats in p.student_features.items():
            heads[f"{MODALITY_NAMES[m]} student"] = (feats, None if fit is None else fit[label].student_features[m])
        panels[label] = {}
        for head, (feats, fit_feats) in heads.items():
            kwargs: dict[str, Any] = {}
            if fit is not None:
                f = fit[label]
                rows = sample(len(f.labels), fit_points, seed=1)
                kwargs = {"fit_features": fit_feats[rows], "fit_labels": f.labels[rows],
                          "fit_groups": speakers_of(corpus, f)[rows] if center_speakers else None}
            panels[label][head] = embed_2d(feats[subset], method, groups=groups, **kwargs)
    return panels, first.labels[subset]


def save(comparison: Comparison, path: str | Path, split: str, results: dict[str, Any], rates: dict[str, Any]) -> Path:
    """``comparison.json``: the seeds' validation and test scores per label, and the metrics
    and pair confusion rates of the analysed split for the first seed."""
    names = comparison.corpus.class_names
    files.write_json(path, {
        "corpus": comparison.corpus.name, "split": split, "seeds": comparison.seeds,
        "pairs": [list(p) for p in similar_pairs_for(names)],
        "seed_table": seed_table(comparison),
        "runs": {label: {"metrics": {k: results[label][k] for k in ("accuracy", "weighted_f1", "macro_f1",
                                                                     "per_class_f1")},
                         "similar_pairs": rates[label]} for label in results},
    })
    return Path(path)


def saf_target_rows(corpus, loss) -> list[dict[str, Any]]:
    """For each true class of ``corpus``: the mass that the target SAF teaches at gamma 0
    (:func:`~safsd_glnet.losses.saf_target`) puts on it, and the class the target favours.

    ``loss`` is a :class:`~safsd_glnet.config.LossConfig` (its ``saf_mode``, ``saf_eps`` and
    ``similarity``; the ``"prototype"`` source needs a trained model and is not offered here)."""
    from .class_weights import reference_alpha
    from .losses import saf_target
    from .similarity import similarity_matrix

    names = list(corpus.class_names)
    alpha = reference_alpha(names) if loss.saf_mode == "reference" else None
    target = saf_target(similarity_matrix(loss.similarity, names), loss.saf_mode, loss.saf_eps, alpha).numpy()
    rows = []
    for y, name in enumerate(names):
        top = int(np.argmax(target[y]))
        rows.append({"class": name, "p_true": float(target[y, y]), "favoured": names[top],
                     "p_favoured": float(target[y, top])})
    return rows


def format_saf_target_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """:func:`saf_target_rows` as table cells; a favoured class that is not the true one is marked."""
    return [{"true class": r["class"], "target mass on it": f"{r['p_true']:.2f}",
             "target's most likely class": f"{r['favoured']} ({r['p_favoured']:.2f})"
             + ("" if r["favoured"] == r["class"] else " **not the true class**")} for r in rows]
