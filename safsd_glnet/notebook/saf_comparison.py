"""SAF against CE students, over seeds: what ``notebooks/03_confusion_and_embeddings.ipynb`` computes.

Runs differ only in the students' loss (:func:`~safsd_glnet.notebook.run_folders.student_loss_name`). Three roles
per seed, as in the pre-registered study (``docs/saf_study_plan.md``):

* ``saf``: the Similarity-Aware Focal loss (the configuration's SAF settings);
* ``ce``: plain class-weighted cross-entropy students at SAF's student weight g2;
* ``ce_scaled``: the **scale-matched control**, CE students whose weight is g2 times
  r = (mean over the seeds of the SAF runs' first-epoch student term) / (mean over the seeds
  of the CE runs' first-epoch student term), a run's student term being the epoch-1 mean of
  ``student_<m>`` in its history, averaged over its student modalities
  (:func:`first_epoch_student_term`). A student SAF term is smaller than a CE term (SAF's
  focal factor and class weights), so "CE instead of SAF" changes the loss's scale as well as
  its shape; the control changes only the shape, and is the comparison that counts.

One seed says little (on the demo's data a seed moves weighted F1 by several points), so
:func:`compare_saf` trains (or reuses) the three runs for every seed, :func:`seed_table` puts
validation and test scores side by side with their spread and the paired difference to SAF,
:func:`pair_rate_table` gives the similar-pair confusion rates over the seeds, and the figures
of one seed (:func:`predictions_of`, :func:`embedding_maps`) show what the numbers mean.

Shape letters: N utterances of the analysed split, M of the training split, F feature width.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..data import atomic_files as files
from ..model.metrics import compute_metrics, mean_std, similar_pair_confusion, similar_pairs_for
from .run_folders import corpus_fingerprint, find_reusable, for_corpus, load_run, student_loss_name, train_or_reuse

ROLES = ("saf", "ce_scaled", "ce")  # the order of the tables: SAF, its primary comparison, plain CE
FOLDERS = {"saf": "saf", "ce": "no_saf", "ce_scaled": "ce_scaled"}  # work_dir/<folder>-seed<k>
ROLE_NAMES = {"saf": "SAF", "ce_scaled": "scale-matched control (the comparison that counts)",
              "ce": "CE students at SAF's weight"}


@dataclass
class Run:
    config: Any
    metrics: dict[str, Any]
    model: Any
    folder: Path


@dataclass
class Comparison:
    """``runs[label][seed]``: the runs, in :data:`ROLES` order; ``roles[role]`` the label of each
    role; ``scale`` the scale control's figures (:func:`scale_ratio`), None without the control."""

    corpus: Any
    seeds: list[int]
    runs: dict[str, dict[int, Run]] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    scale: dict[str, float] | None = None

    @property
    def labels(self) -> list[str]:
        return list(self.runs)

    def run(self, label: str, seed: int | None = None) -> Run:
        return self.runs[label][self.seeds[0] if seed is None else seed]

    def role_of(self, label: str) -> str:
        return next(role for role, lab in self.roles.items() if lab == label)


def first_epoch_student_term(metrics: dict[str, Any]) -> float:
    """The student loss term of a run's first epoch: the mean over its student modalities of
    ``history[0]["loss"]["student_<m>"]`` (each an unweighted mean per utterance)."""
    first = metrics["history"][0]
    if first["epoch"] != 1:
        raise ValueError(f"the run's history starts at epoch {first['epoch']}, not 1")
    terms = [v for k, v in first["loss"].items() if k.startswith("student_")]
    if not terms:
        raise ValueError("the run's history has no student_<m> loss terms")
    return float(np.mean(terms))


def scale_ratio(saf_metrics: Sequence[dict[str, Any]], ce_metrics: Sequence[dict[str, Any]]) -> dict[str, float]:
    """``{"saf_term", "ce_term", "r"}``: the mean first-epoch student term of the SAF runs and of the
    CE runs (over seeds, :func:`first_epoch_student_term`) and their ratio r = saf_term / ce_term,
    the weight factor of the scale-matched control."""
    saf = float(np.mean([first_epoch_student_term(m) for m in saf_metrics]))
    ce = float(np.mean([first_epoch_student_term(m) for m in ce_metrics]))
    if not ce > 0:
        raise ValueError(f"the CE runs' first-epoch student term is {ce}; no scale ratio")
    return {"saf_term": saf, "ce_term": ce, "r": saf / ce}


def compare_saf(config, corpus, work_dir: str | Path, seeds: Sequence[int] = (0,), *, run_dir: str | Path = "",
                compare_dir: str | Path = "", reuse_from: Sequence[str | Path] = (), device: Any = "cpu",
                callback_factory: Callable[[str, int], Any] | None = None,
                log: Callable[[str], None] | None = print) -> Comparison:
    """Train (or reuse) the three runs of every seed (module docstring) into
    ``work_dir/<saf|no_saf|ce_scaled>-seed<k>/``: first SAF and plain CE for every seed, then the
    scale-matched control, whose weight needs all of them.

    The SAF settings are those of ``config`` (fitted first to the corpus' modalities,
    :func:`~safsd_glnet.notebook.run_folders.for_corpus`); ``loss.use_saf`` is set per role. A run is read back
    instead of trained when a finished run with the same settings on the same data is in its
    folder or in one of ``reuse_from`` (run folders, or folders of run folders, e.g. notebook
    2's ``runs/02_training`` or notebook 4's ``runs/ablation``; :func:`~safsd_glnet.notebook.run_folders.find_reusable`).

    ``run_dir`` studies a finished run instead (its own configuration and seed, in the role its
    ``loss.use_saf`` gives it); ``compare_dir`` gives its counterpart (else it is trained), and
    the control is trained. ``callback_factory(title, epochs)`` makes each training's callback (e.g.
    :class:`safsd_glnet.training.progress.RunLine`); ``log`` gets one line per run and the scale figures."""
    work = Path(work_dir)
    out = Comparison(corpus, [])
    say = log or (lambda _msg: None)
    fingerprint = corpus_fingerprint(corpus)
    found: dict[str, dict[int, Run]] = {role: {} for role in ROLES}

    def obtain(role: str, cfg) -> Run:
        seed = cfg.train.seed
        folder = work / f"{FOLDERS[role]}-seed{seed}"
        title = f"seed {seed}, {student_loss_name(cfg)}"
        ready = find_reusable(cfg, corpus, [folder, *reuse_from], fingerprint)
        if ready is not None:
            _, metrics, model = load_run(ready, corpus, device)
            say(f"{title}: reused {ready} (a finished run with the same settings on the same data): "
                f"valid weighted F1 {metrics['valid']['weighted_f1']:.2f} at epoch {metrics['chosen_epoch']}")
            return Run(cfg, metrics, model, ready)
        callback = callback_factory(title, cfg.train.epochs) if callback_factory is not None else None
        metrics, model = train_or_reuse(cfg, corpus, folder, callback=callback, log=log)
        say(f"{title}: valid weighted F1 {metrics['valid']['weighted_f1']:.2f} at epoch {metrics['chosen_epoch']} "
            f"of {metrics['epochs_run']} ({metrics['seconds']:.0f} s of training) -> {folder}")
        return Run(cfg, metrics, model.to(device), folder)

    if run_dir:
        given, metrics, model = load_run(run_dir, corpus, device)
        role = "saf" if given.loss.use_saf else "ce"
        found[role][given.train.seed] = Run(given, metrics, model, Path(run_dir))
        out.seeds = [given.train.seed]
        other = "ce" if role == "saf" else "saf"
        if compare_dir:
            cfg, m, mod = load_run(compare_dir, corpus, device)
            found[other][cfg.train.seed] = Run(cfg, m, mod, Path(compare_dir))
        else:
            found[other][given.train.seed] = obtain(other, given.replace(loss={"use_saf": other == "saf"}))
        saf_config = found["saf"][out.seeds[0]].config
    else:
        saf_config = for_corpus(config, corpus, log).replace(loss={"use_saf": True})
        out.seeds = [int(s) for s in seeds]
        if not out.seeds:
            raise ValueError("compare_saf: no seeds given")
        for seed in out.seeds:
            cfg = saf_config.replace(train={"seed": seed})
            found["saf"][seed] = obtain("saf", cfg)
            found["ce"][seed] = obtain("ce", cfg.replace(loss={"use_saf": False}))
    out.scale = scale_ratio([found["saf"][s].metrics for s in out.seeds], [found["ce"][s].metrics for s in out.seeds])
    weight = saf_config.loss.student_weight * out.scale["r"]
    say(f"scale-matched control: the first-epoch student term is {out.scale['saf_term']:.4f} with SAF and "
        f"{out.scale['ce_term']:.4f} with CE (means over {len(out.seeds)} seed(s)); r = {out.scale['r']:.4f}, "
        f"so the control trains CE students with g2 = {weight:.4f}")
    for seed in out.seeds:
        base = found["ce"][seed].config
        found["ce_scaled"][seed] = obtain("ce_scaled", base.replace(loss={"student_weight": weight}))
    for role in ROLES:
        label = student_loss_name(found[role][out.seeds[0]].config)
        out.roles[role] = label
        out.runs[label] = found[role]
    return out


def seed_table(comparison: Comparison) -> list[dict[str, Any]]:
    """One row per run label, SAF first: validation and test weighted F1 of every seed, their
    mean and sample std, and (on the other rows) the mean paired difference "SAF minus this run"
    on the same seeds, validation and test, with its standard error (sd of the differences /
    sqrt(seeds)); positive: SAF scored higher."""
    rows = []
    first = comparison.labels[0]
    for label in comparison.labels:
        runs = comparison.runs[label]
        row: dict[str, Any] = {"label": label, "seeds": len(comparison.seeds)}
        if comparison.roles:
            row["role"] = comparison.role_of(label)
        for split in ("valid", "test"):
            values = [runs[s].metrics[split]["weighted_f1"] for s in comparison.seeds]
            row[f"{split}_values"] = values
            row[f"{split}_mean"], row[f"{split}_std"] = mean_std(values)
            if label != first:
                diff = [comparison.runs[first][s].metrics[split]["weighted_f1"] - v
                        for s, v in zip(comparison.seeds, values)]
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
        cells = {"run": r["label"]}
        if "role" in r:
            cells["role"] = ROLE_NAMES[r["role"]]
        cells.update({"seeds": str(r["seeds"]),
                      "valid w-F1": spread(r["valid_mean"], r["valid_std"], r["seeds"]),
                      "test w-F1": spread(r["test_mean"], r["test_std"], r["seeds"]),
                      "valid: SAF minus this": diff(r, "valid"), "test: SAF minus this": diff(r, "test")})
        out.append(cells)
    return out


def pair_rate_table(comparison: Comparison, split: str = "valid") -> list[dict[str, Any]]:
    """Similar-pair confusion rates over the seeds: one row per run label with, for each pair
    ``a/b`` of the corpus' classes, the mean over the seeds of that pair's rate (the mean of
    "a predicted as b" and "b predicted as a", percent of the true class; lower is better),
    and ``all pairs``, their mean; from each run's ``metrics[split]["confusion"]`` (the chosen
    epoch)."""
    names = comparison.corpus.class_names
    pairs = similar_pairs_for(names)
    rows = []
    for label in comparison.labels:
        per_seed = [similar_pair_confusion(comparison.runs[label][s].metrics[split]["confusion"], names, pairs)
                    for s in comparison.seeds]
        row: dict[str, Any] = {"run": label}
        for key in per_seed[0]:
            row[key] = float(np.mean([r[key]["mean"] for r in per_seed]))
        row["all pairs"] = float(np.mean([row[key] for key in per_seed[0]])) if per_seed[0] else float("nan")
        rows.append(row)
    return rows


def scale_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """The scale control's figures as table rows (for the notebook)."""
    s = comparison.scale
    return [{"first-epoch student term (mean over seeds)": "SAF runs", "value": s["saf_term"]},
            {"first-epoch student term (mean over seeds)": "CE runs (g2 as SAF's)", "value": s["ce_term"]},
            {"first-epoch student term (mean over seeds)": "r = SAF / CE: the control's weight factor", "value": s["r"]}]


def predictions_of(comparison: Comparison, split: str, seed: int | None = None, features: bool = True,
                   batch_size: int = 16, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """label -> :class:`~safsd_glnet.training.train.Predictions` of that seed's run on ``split``, for
    ``labels`` (default: every run label)."""
    from ..training.train import predict

    dialogues = comparison.corpus.split(split)
    return {label: predict(comparison.run(label, seed).model, dialogues, batch_size=batch_size, features=features)
            for label in (comparison.labels if labels is None else labels)}


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
    """(N,) the speaker index of every utterance of a :class:`~safsd_glnet.training.train.Predictions`."""
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
    """2-D maps of the features each head reads, for :func:`safsd_glnet.notebook.plots.plot_embeddings`,
    for the runs of ``predictions`` (e.g. SAF and its scale-matched control only).

    Returns ``(panels, labels)``: ``panels[run label]["teacher" | "<modality> student"]`` (n, 2)
    for a fixed random subset of ``max_points`` utterances of ``predictions`` (the same subset
    in every panel), and their (n,) true labels. ``"lda"`` learns its projection per head from
    ``fit_split`` (at most ``fit_points`` utterances, :func:`~safsd_glnet.notebook.plots.embed_2d`); with
    ``center_speakers`` each speaker's mean is subtracted first (in both sets)."""
    from ..dataset_facts import MODALITY_NAMES
    from .plots import embed_2d

    corpus = comparison.corpus
    first = next(iter(predictions.values()))
    subset = sample(len(first.labels), max_points)
    groups = speakers_of(corpus, first)[subset] if center_speakers else None
    fit = predictions_of(comparison, fit_split, seed, labels=list(predictions)) if method == "lda" else None
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
    """``comparison.json``: the roles and the scale control's figures, the seeds' validation and
    test scores per label with the similar-pair rates over the seeds, and the metrics and pair
    confusion rates of the analysed split for the first seed."""
    names = comparison.corpus.class_names
    files.write_json(path, {
        "corpus": comparison.corpus.name, "split": split, "seeds": comparison.seeds,
        "pairs": [list(p) for p in similar_pairs_for(names)],
        "roles": comparison.roles, "scale": comparison.scale,
        "folders": {label: {str(s): str(run.folder) for s, run in runs.items()} for label, runs in comparison.runs.items()},
        "seed_table": seed_table(comparison),
        "pair_rates": {sp: pair_rate_table(comparison, sp) for sp in ("valid", "test")},
        "runs": {label: {"metrics": {k: results[label][k] for k in ("accuracy", "weighted_f1", "macro_f1",
                                                                     "per_class_f1")},
                         "similar_pairs": rates[label]} for label in results},
    })
    return Path(path)


def saf_target_rows(corpus, loss) -> list[dict[str, Any]]:
    """For each true class of ``corpus``: the mass that the target SAF teaches at gamma 0
    (:func:`~safsd_glnet.model.losses.saf_target`) puts on it, and the class the target favours.

    ``loss`` is a :class:`~safsd_glnet.config.LossConfig` (its ``saf_mode``, ``saf_eps`` and
    ``similarity``; the ``"prototype"`` source needs a trained model and is not offered here)."""
    from ..model.class_weights import reference_alpha
    from ..model.losses import saf_target
    from ..model.similarity import similarity_matrix

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
