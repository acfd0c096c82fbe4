"""The ``safsd-glnet`` command line: train, evaluate, predict, convert, synth, features, finetune, data, demo,
figures, ablate.

Data arguments (``--data``) take a path to an SDT / M3Net feature pickle (``.pkl``), a corpus
in the kit's own format (``.npz``), or ``synthetic:iemocap`` / ``synthetic:meld`` (the built-in
synthetic corpus; append ``:seed=K`` for another draw).

Long (about 690 lines): the parser and the model's commands (train, evaluate, predict, convert,
synth, demo, figures, ablate); data, features and finetune have their own modules, the rest is the next split.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .finetune import add_threads_argument, apply_threads
from ..config import PRESETS, Config, preset
from ..data.corpus import DataError


def _parse_sizes(text: str | None) -> dict[str, int] | None:
    """``"t=64,a=48,v=32"`` -> {"t": 64, "a": 48, "v": 32}."""
    if not text:
        return None
    sizes = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if key not in ("t", "a", "v") or not value.isdigit() or len(value) > 7 or int(value) < 1:
            raise ValueError(f"--sizes {text!r}: expected modality=size pairs with sizes from 1 to 9999999, "
                             f"e.g. t=64,a=48,v=32")
        if key in sizes:
            raise ValueError(f"--sizes {text!r}: modality {key!r} is given twice")
        sizes[key] = int(value)
    return sizes


MAX_ID_FILE_BYTES = 16 * 1024 * 1024  # an id list of a few thousand dialogues is a few kB


def read_id_list(path: str) -> list[str] | str:
    """Dialogue ids from a file (one per line, or separated by commas or spaces; ``#`` starts a
    comment), or the name ``meld-dev`` (the official MELD dev dialogues of the standard pickle)."""
    if path == "meld-dev":
        return path
    from ..data.safe.foreign_files import regular_file

    p = Path(path)
    if not p.exists() and not p.is_symlink():
        raise DataError(f"{p}: --valid-ids file not found (expected one dialogue id per line, or 'meld-dev')")
    size = regular_file(p, "--valid-ids file").st_size
    if size > MAX_ID_FILE_BYTES:
        raise DataError(f"{p}: --valid-ids file is {size} bytes, more than an id list can be")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: --valid-ids file is not UTF-8 text (byte {e.start})") from None
    ids = [tok for line in text.splitlines() for tok in line.split("#", 1)[0].replace(",", " ").split()]
    if not ids:
        raise DataError(f"{p}: --valid-ids file names no dialogue")
    return ids


def _data_kind(data: str) -> str:
    lowered = data.lower()
    if lowered.startswith("synthetic:"):
        return "synthetic"
    if lowered.endswith((".pkl", ".pickle")):
        return "pickle"
    return "npz" if lowered.endswith(".npz") else "other"


# Data flags and the kinds of --data they apply to: a flag that would be ignored is refused.
_DATA_FLAGS = {"sizes": ("--sizes", ("synthetic",)), "valid_fraction": ("--valid-fraction", ("pickle",)),
               "text_layers": ("--text-layers", ("pickle",)), "valid_ids": ("--valid-ids", ("pickle",))}


def load_corpus_arg(args: argparse.Namespace):
    from ..data import load_data

    data, kw = corpus_arguments(args)
    return load_data(data, **kw)


def corpus_arguments(args: argparse.Namespace) -> tuple[str, dict]:
    """``--data`` and the loader's keywords from the data flags (checked, nothing read)."""
    data = str(args.data)
    kind = _data_kind(data)
    for attr, (flag, kinds) in _DATA_FLAGS.items():
        if getattr(args, attr, None) is not None and kind not in kinds:
            applies = {"synthetic": "synthetic data", "pickle": "SDT/M3Net .pkl files"}[kinds[0]]
            raise ValueError(f"{flag} applies only to {applies}, not to --data {data} (it would be ignored)")
    if getattr(args, "valid_fraction", None) is not None and getattr(args, "valid_ids", None) is not None:
        raise ValueError("--valid-fraction and --valid-ids exclude each other: the ids replace the seeded draw")
    kw = {}
    if getattr(args, "split_dialogues", None) is not None:  # any kind of data: applied after loading
        from ..data.dialogue_windows import parse_split

        kw["split_dialogues"] = parse_split(args.split_dialogues)
    if kind == "synthetic" and getattr(args, "sizes", None):
        kw["feature_sizes"] = _parse_sizes(args.sizes)
    if kind == "pickle":
        if getattr(args, "valid_fraction", None) is not None:
            kw["valid_fraction"] = args.valid_fraction
        if getattr(args, "text_layers", None):
            kw["text"] = args.text_layers
        if getattr(args, "valid_ids", None) is not None:
            kw["valid_ids"] = read_id_list(args.valid_ids)
            if args.valid_ids != "meld-dev":
                kw["valid_ids_file"] = args.valid_ids  # for the run's validation record
    return data, kw


def build_config(args: argparse.Namespace) -> Config:
    cfg = preset(args.preset)
    if args.config:
        from ..data.atomic_files import read_json

        d = read_json(args.config)
        d.pop("data", None)
        cfg = Config.from_dict(d)
    overrides = list(args.set or [])
    for flag, key in (("modalities", "model.modalities"), ("epochs", "train.epochs"),
                      ("seed", "train.seed"), ("device", "train.device"), ("lr", "train.lr"),
                      ("batch_size", "train.batch_size")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    if getattr(args, "no_progress", False):
        overrides.append("train.progress=false")
    return cfg.override(*overrides) if overrides else cfg


PREDICT_EPILOG = """\
examples:
  # a corpus split, as the model's data was made (the CSV has the true labels beside the predictions)
  safsd-glnet predict --checkpoint runs/meld/checkpoint_best.pt --data meld_text.npz --split test --out preds.csv
  # new dialogues, nobody has labelled; written as "Speaker: sentence" lines:
  #     Monica: Guys, I have some news.
  #     Joey: What? Did you finally get that job?
  #     (a blank line starts the next dialogue)
  safsd-glnet predict --checkpoint runs/meld/checkpoint_best.pt --dialogues talk.txt --out talk.json

The sentences are encoded with the encoder recorded in the checkpoint (the frozen sentence
encoder or the fine-tuned one, with its context window), and speakers follow the model's
scheme: names it learnt (an unknown name is an error suggesting the closest known names, or
with --unknown-speakers generic one generic speaker), or order of appearance per dialogue.
"""


def _add_data_args(p: argparse.ArgumentParser, default: str | None = "synthetic:iemocap",
                   required: bool | None = None) -> None:
    p.add_argument("--data", default=default, required=default is None if required is None else required,
                   help="feature pickle (.pkl), kit corpus (.npz) or synthetic:iemocap / synthetic:meld "
                        f"(default: {default})")
    p.add_argument("--sizes", help="synthetic feature sizes, e.g. t=64,a=48,v=32 (default: the standard sizes)")
    p.add_argument("--valid-fraction", type=float, default=None,
                   help="pickles: hold out this share of training dialogues, a seeded draw, for validation (default: "
                        "MELD's official dev dialogues 1039-1152 where trainVid holds them all, else 0.1)")
    p.add_argument("--valid-ids", metavar="FILE", default=None,
                   help="pickles: validation dialogues instead of the default: a file with one dialogue id "
                        "per line, or 'meld-dev' for MELD's official dev split (ids 1039-1152 of the standard file)")
    p.add_argument("--text-layers", choices=("first", "mean"), default=None,
                   help="pickles: videoText only (SDT, default) or the mean of the four RoBERTa layers (M3Net)")


def cmd_train(args: argparse.Namespace) -> int:
    from ..config import PAPER_PRESET_FOR
    from ..data.validation import describe_shared
    from ..notebook.plots import plot_confusion, save_figure
    from ..training.run_folder_guard import check_writable
    from ..training.train import select_device, train, train_seeds

    if args.seeds and args.seed is not None:
        raise ValueError("--seed and --seeds exclude each other: --seeds trains once per listed seed")
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    cfg = build_config(args)
    apply_threads(args.threads)
    executor = _train_executor(args)
    if executor is not None:
        return _train_seeds_elsewhere(args, cfg, executor)
    select_device(cfg.train.device)  # a missing GPU is an error before the data is read
    out = Path(args.out)
    check_writable(out, "run folder")  # a read-only --out fails now, not after the first epoch
    corpus = load_corpus_arg(args)
    wanted = PAPER_PRESET_FOR.get(corpus.name)
    if args.preset in PAPER_PRESET_FOR.values() and not args.config and wanted and wanted != args.preset:
        print(f"note: --preset {args.preset} holds the reference settings of another corpus; "
              f"{corpus.name}'s are --preset {wanted}", file=sys.stderr)
    if args.seeds:
        summary = train_seeds(cfg, corpus, args.seeds, out, resume=args.resume, overwrite=args.overwrite)
        t, r = summary["test"], summary["reference_protocol"]
        print(f"{len(args.seeds)} seeds, honest protocol: accuracy {t['accuracy']['mean']:.2f} ± "
              f"{t['accuracy']['std']:.2f}, weighted F1 {t['weighted_f1']['mean']:.2f} ± {t['weighted_f1']['std']:.2f}")
        print(f"reference protocol (best test epoch): weighted F1 {r['weighted_f1']['mean']:.2f} ± "
              f"{r['weighted_f1']['std']:.2f}")
        print(f"validation: {describe_shared(summary['validation'])}")
        print(f"summary: {out / 'summary.json'}")
        return 0
    run = train(cfg, corpus, out, resume=args.resume, overwrite=args.overwrite)
    m = run.metrics
    fig = plot_confusion(m["test"]["confusion"], m["class_names"],
                         title=f"{m['corpus']}: test, epoch {m['chosen_epoch']}")
    save_figure(fig, out / "confusion")
    print(f"chosen epoch {m['chosen_epoch']} (validation weighted F1 {m['valid']['weighted_f1']:.2f})")
    print(f"test accuracy {m['test']['accuracy']:.2f}, weighted F1 {m['test']['weighted_f1']:.2f}, "
          f"macro F1 {m['test']['macro_f1']:.2f}")
    print(f"reference protocol (best test epoch {m['reference_protocol']['epoch']}): weighted F1 "
          f"{m['reference_protocol']['weighted_f1']:.2f}")
    print(f"run folder: {out}")
    return 0


def _train_executor(args: argparse.Namespace):
    """The executor of ``train --seeds --executor dask|slurm``; None for the local path (the
    seeds one after the other in this process, as without --executor)."""
    from . import cluster as cli_cluster
    from ..grids.executors import make_executor

    given = cli_cluster.options(args, args.workers)
    if not given:
        return None
    if not args.seeds:
        raise ValueError("--executor and its options apply to --seeds (one task per seed)")
    executor = make_executor(None, given, source="command line")
    if executor.name == "local":
        if args.workers is not None:
            raise ValueError("--workers: local seeds train one after the other in this process; use --executor dask "
                             "--workers N for several at once")
        return None
    return executor


def _train_seeds_elsewhere(args: argparse.Namespace, cfg: Config, executor) -> int:
    from ..data.validation import describe_shared
    from ..grids.seed_runs import train_seeds_on

    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    data, kw = corpus_arguments(args)
    if not data.startswith("synthetic:"):
        data = str(Path(data).resolve())  # the workers do not run in this folder
    try:
        summary = train_seeds_on(executor, cfg, data, kw, args.seeds, args.out, resume=args.resume,
                                 overwrite=args.overwrite, progress=not args.no_progress, threads=args.threads)
    except KeyboardInterrupt:
        print("safsd-glnet train: interrupted; queued and running seeds were cancelled; run the same command with "
              "--resume to continue them from their last epoch", file=sys.stderr)
        return 130
    except RuntimeError as e:
        print(f"safsd-glnet train: {e}", file=sys.stderr)
        return 1
    t, r = summary["test"], summary["reference_protocol"]
    print(f"{len(summary['seeds'])} seeds, honest protocol: accuracy {t['accuracy']['mean']:.2f} ± "
          f"{t['accuracy']['std']:.2f}, weighted F1 {t['weighted_f1']['mean']:.2f} ± {t['weighted_f1']['std']:.2f}")
    print(f"reference protocol (best test epoch): weighted F1 {r['weighted_f1']['mean']:.2f} ± "
          f"{r['weighted_f1']['std']:.2f}")
    print(f"validation: {describe_shared(summary['validation'])}")
    for seed, error in summary.get("failed", {}).items():
        print(f"FAILED seed {seed}: {error}")
    print(f"summary: {Path(args.out) / 'summary.json'}")
    return 1 if summary.get("failed") else 0


def _load_for_checkpoint(args: argparse.Namespace):
    from ..training.train import align_corpus, load_model, select_device

    device = select_device(args.device or "auto")
    model, info = load_model(args.checkpoint, device)
    corpus = load_corpus_arg(args)
    corpus = align_corpus(info["data"], corpus, str(args.checkpoint))
    corpus = corpus.with_modalities(tuple(info["data"]["feature_sizes"]))
    if not corpus.splits.get(args.split):
        have = ", ".join(s for s, ids in corpus.splits.items() if ids) or "none"
        raise DataError(f"{corpus.source}: corpus {corpus.name!r} has no {args.split!r} split "
                        f"(it has: {have}); choose one with --split")
    return model, info, corpus, device


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..training.train import evaluate

    apply_threads(args.threads)
    if args.out:
        from ..training.run_folder_guard import check_output_file

        check_output_file(args.out, "--out file")
    model, info, corpus, device = _load_for_checkpoint(args)
    result = evaluate(model, corpus.split(args.split), corpus.class_names, device=device,
                      amp=info["config"].train.amp)
    if args.out:
        from ..data.atomic_files import write_json

        write_json(args.out, result)
    print(f"{args.split}: {corpus.num_utterances(args.split)} utterances, accuracy {result['accuracy']:.2f}, "
          f"weighted F1 {result['weighted_f1']:.2f}, macro F1 {result['macro_f1']:.2f}")
    for name, f1 in result["per_class_f1"].items():
        print(f"  {name:>12s}  F1 {f1:6.2f}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ..training.run_folder_guard import check_output_file
    from ..training.train import predict, write_predictions

    apply_threads(args.threads)
    if (args.data is None) == (args.dialogues is None):
        raise ValueError("give --data (a corpus and --split) or --dialogues FILE (new, unlabelled dialogues)")
    if args.dialogues is not None:
        return _predict_dialogues(args)
    for flag in ("columns", "format", "delimiter", "encoding", "encoder_dir"):
        if getattr(args, flag) is not None:
            raise ValueError(f"--{flag.replace('_', '-')} applies to --dialogues, not to --data")
    if args.unknown_speakers != "error":
        raise ValueError("--unknown-speakers applies to --dialogues, not to --data")
    if args.out is None:
        raise ValueError("--out is needed with --data: the CSV file to write")
    check_output_file(args.out, "--out file", kind="predictions", overwrite=args.overwrite)
    args.split = args.split or "test"
    model, info, corpus, device = _load_for_checkpoint(args)
    preds = predict(model, corpus.split(args.split), device=device, amp=info["config"].train.amp)
    write_predictions(args.out, preds, corpus.class_names)
    print(f"wrote {len(preds.labels)} predictions to {args.out}")
    return 0


def _predict_dialogues(args: argparse.Namespace) -> int:
    """``predict --dialogues FILE``: encode new dialogues as the model's corpus was, print the
    predictions as a table, and write them (CSV, or JSON by the suffix) with --out."""
    from ..training.prediction import Predictor, describe_generic, format_predictions, write_predictions
    from ..training.run_folder_guard import check_output_file

    for flag in ("split", "sizes", "valid_fraction", "valid_ids", "text_layers"):
        if getattr(args, flag, None) is not None:
            raise ValueError(f"--{flag.replace('_', '-')} applies to --data, not to --dialogues")
    if args.out is not None:
        check_output_file(args.out, "--out file", kind="predictions", overwrite=args.overwrite)
    predictor = Predictor(args.checkpoint, args.device or "auto", encoder_dir=args.encoder_dir,
                          unknown_speakers=args.unknown_speakers)
    table = predictor.read(args.dialogues, fmt=args.format, columns=args.columns, delimiter=args.delimiter,
                           encoding=args.encoding)
    rows = predictor.predict_table(table)
    print(format_predictions(rows))
    if predictor.generic:
        print(describe_generic(predictor.generic, len(predictor.speaker_names)))
    if args.out is not None:
        write_predictions(args.out, rows, predictor.class_names, str(args.checkpoint))
        print(f"wrote {len(rows)} predictions to {args.out}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from ..data import load_sdt_pickle, save_corpus
    from ..data.validation import describe, for_run
    from ..training.run_folder_guard import check_output_file

    check_output_file(args.out, "--out file")
    if args.valid_ids is not None and args.valid_fraction is not None:
        raise ValueError("--valid-fraction and --valid-ids exclude each other: the ids replace the seeded draw")
    valid_ids = read_id_list(args.valid_ids) if args.valid_ids is not None else None
    corpus = load_sdt_pickle(args.pickle, kind=args.kind, valid_fraction=args.valid_fraction, seed=args.seed,
                             text=args.text_layers, valid_ids=valid_ids,
                             valid_ids_file=args.valid_ids if valid_ids not in (None, "meld-dev") else None)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_corpus(corpus, args.out)
    print(f"{corpus.name}: {len(corpus.dialogues)} dialogues, {corpus.num_utterances()} utterances, "
          f"modalities {corpus.feature_sizes}, validation: {describe(for_run(corpus))} -> {args.out}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from ..data import make_synthetic, save_corpus
    from ..training.run_folder_guard import check_output_file

    check_output_file(args.out, "--out file")
    corpus = make_synthetic(args.profile, seed=args.seed, feature_sizes=_parse_sizes(args.sizes),
                            num_dialogues=args.dialogues)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_corpus(corpus, args.out)
    counts = {s: len(ids) for s, ids in corpus.splits.items()}
    print(f"{corpus.name}: dialogues per split {counts}, {corpus.num_utterances()} utterances, "
          f"sizes {corpus.feature_sizes} -> {args.out}")
    return 0


def _print_sequence_result(result: dict, started: float, what: str) -> None:
    import time

    from ..grids.ablation import ABLATION_NOTEBOOK

    seconds = result["seconds"]
    print(f"\n{what} finished in {time.time() - started:.0f} s: " +
          ", ".join(f"{name.split('_', 1)[0]} {s:.0f} s" for name, s in seconds.items()))
    print(f"executed notebooks: {result['out_dir']}")
    ablation = result.get("ablation")
    if ablation is not None:
        print(f"ablation runs ({ABLATION_NOTEBOOK} per run): {ablation.out_dir}")
    # only what this run wrote: the folder may also hold other figures (the benchmarks' plot)
    figures = sorted(p.name for p in Path(result["figures_dir"]).glob("*.png") if p.stat().st_mtime >= started)
    print(f"figures written ({len(figures)} PNG, each also as PDF) in {result['figures_dir']}: {', '.join(figures)}")


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: run the five notebooks headless (data exploration, training, confusions and
    embeddings of SAF, its scale-matched CE control and CE students over three seeds, a small
    ablation grid, the ablation report) on synthetic IEMOCAP, or with --meld DIR on the real MELD
    text; executed notebooks, runs and figures go to --out."""
    args.out = args.out or ("runs/demo-meld" if args.meld else "runs/demo")
    if args.figures is None:
        args.figures = str(Path(args.out) / "figures")
    return _run_sequence(args, "demo")


def cmd_figures(args: argparse.Namespace) -> int:
    """Re-run the notebooks headless and regenerate the tracked figures: figures/ from the
    synthetic data (and the architecture diagram, figures/architecture.png and .pdf), or with
    --meld DIR figures/real-meld/ from the real MELD text (the executed notebooks and runs go
    to --out)."""
    from ..grids.papermill_runner import NOTEBOOKS
    from ..grids.demo import REAL_MELD_FIGURES

    if not args.meld:
        _write_architecture(Path(args.figures))
    if args.meld:
        args.figures = str(Path(args.figures) / REAL_MELD_FIGURES)
        if args.out is None:
            args.out = "runs/figures-real-meld"
    args.out = args.out or "runs/figures"
    wanted = NOTEBOOKS
    if args.only:
        wanted = tuple(n for n in NOTEBOOKS if any(n.startswith(o) for o in args.only))
        if not wanted:
            raise ValueError(f"--only {args.only}: no such notebook (expected numbers 01-05)")
        if "05_ablation_report.ipynb" in wanted and "04_ablation.ipynb" not in wanted and \
                not (Path(args.out) / "ablation").exists():
            raise ValueError(f"--only 05 needs the ablation runs of 04 in {Path(args.out) / 'ablation'}")
    return _run_sequence(args, "figures", wanted)


def _write_architecture(folder: Path) -> None:
    """The model's diagram (:func:`safsd_glnet.notebook.plots.plot_architecture`) as FOLDER/architecture.png
    (notebook drawing) and .pdf (paper drawing); it depends on no data."""
    import matplotlib.pyplot as plt

    from ..notebook import plots

    writer = plots.FigureWriter(folder)
    plt.close(writer("architecture", plots.plot_architecture))
    print(f"architecture diagram: {', '.join(str(p) for p in writer.written)}")


def _run_sequence(args: argparse.Namespace, what: str, notebooks: tuple[str, ...] | None = None) -> int:
    """Run the notebooks headless (all, or ``notebooks``) and print what they wrote; exit 1
    when a notebook or an ablation run failed."""
    import time

    from ..grids.papermill_runner import NOTEBOOKS, NotebookError
    from ..grids.demo import real_meld_settings, run_all

    settings = real_meld_settings(args.meld) if args.meld else None
    started = time.time()
    try:
        result = run_all(args.out, args.figures, grid=args.grid, workers=args.workers, settings=settings,
                         notebooks=notebooks or NOTEBOOKS, embedding="pca" if args.fast_maps else None)
    except NotebookError as e:
        print(f"safsd-glnet {what}: {e}", file=sys.stderr)
        return 1
    _print_sequence_result(result, started, what)
    ablation = result.get("ablation")
    return 1 if ablation is not None and ablation.failed else 0


def _parse_base(items: list[str] | None) -> dict:
    """``["PRESET=paper", "EPOCHS=40"]`` -> {"PRESET": "paper", "EPOCHS": 40} (YAML values)."""
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--base {item!r}: expected NAME=VALUE, e.g. --base PRESET=paper")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def cmd_ablate(args: argparse.Namespace) -> int:
    from . import cluster as cli_cluster
    from ..grids.ablation import Grid, format_summary, run_grid
    from ..grids.executors import make_executor
    from ..grids.papermill_runner import NotebookError, run_notebook

    grid = Grid.load(args.grid)
    executor = make_executor(grid.cluster, cli_cluster.options(args, args.workers), source=args.grid)
    grid.base.update(_parse_base(args.base))
    if args.seeds:
        grid.seeds = list(args.seeds)
    if args.variants:
        unknown = [v for v in args.variants if v not in {x.name for x in grid.variants}]
        if unknown:
            raise ValueError(f"--variants {unknown}: not in {args.grid} ({[v.name for v in grid.variants]})")
        grid.variants = [v for v in grid.variants if v.name in args.variants]
    out = Path(args.out) if args.out else Path("runs") / grid.name
    try:
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads {args.threads}: expected at least 1")
        result = run_grid(grid, out, executor=executor, force=args.force, skip_failed=args.skip_failed,
                          timeout=args.timeout, threads=args.threads)
    except KeyboardInterrupt:
        print("safsd-glnet ablate: interrupted; queued and running runs were cancelled; run the same command again "
              "to resume (complete runs are skipped, an interrupted run continues from its last epoch)",
              file=sys.stderr)
        return 130
    print(format_summary(result, grid))
    if args.report:
        report = out / "05_ablation_report.ipynb"
        try:
            run_notebook("05_ablation_report.ipynb", report, {"RUNS_DIR": str(out.resolve()),
                                                              "FIGURES_DIR": str(out.resolve() / "figures")})
        except NotebookError as e:
            print(f"safsd-glnet ablate: {e}", file=sys.stderr)
            return 1
        print(f"report: {report}; tables {out / 'ablation_table.md'} and .tex; chart in {out / 'figures'}")
    return 1 if result.failed or result.stale or result.busy else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safsd-glnet", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train SAFSD-GLNet and write a run folder",
                       description="Train SAFSD-GLNet; the run folder gets config.json, metrics.json, "
                                   "checkpoints, test predictions and a confusion-matrix figure.")
    _add_data_args(p)
    p.add_argument("--preset", choices=PRESETS, default="small",
                   help="hyperparameter preset (default small): paper = the reference settings for IEMOCAP, "
                        "paper-meld = MELD's (lr 5e-6, batch 8, 90 epochs, T 8), small = CPU-sized, tiny = tests")
    p.add_argument("--config", help="a config.json (for example from an earlier run) instead of a preset")
    p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE",
                   help="override any config field, e.g. --set model.use_gcn=false --set loss.similarity=prior")
    p.add_argument("--modalities", help="modality subset, e.g. t, ta, tav")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--seeds", type=int, nargs="+", help="train once per seed and report mean ± std")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, mps")
    p.add_argument("--out", default="runs/train", help="run folder (default runs/train)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without it, or --resume, a run folder is never replaced)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (the start lines and, with --seeds, one line per seed stay)")
    add_threads_argument(p)
    p.add_argument("--split-dialogues", metavar="LEN[:OVERLAP]",
                   help="cut training dialogues longer than LEN utterances into windows of LEN overlapping by "
                        "OVERLAP (default LEN/4), for dialogues too long to train on whole (the error says which "
                        "LEN fits); validation and test dialogues are evaluated whole")
    p.add_argument("--workers", type=int, default=None,
                   help="with --seeds --executor dask: worker processes of the LocalCluster the kit starts")
    from . import cluster as cli_cluster
    cli_cluster.add_arguments(p, "seeds")
    p.set_defaults(func=cmd_train)

    for name, func, helptext in (("evaluate", cmd_evaluate, "score a checkpoint on a split"),
                                 ("predict", cmd_predict, "a checkpoint's predictions for a split of a corpus, "
                                                          "or for new dialogues")):
        p = sub.add_parser(name, help=helptext, description=helptext,
                           epilog=PREDICT_EPILOG if name == "predict" else None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--checkpoint", required=True, help="checkpoint_best.pt or checkpoint_last.pt of a run")
        _add_data_args(p, default=None, required=name == "evaluate")
        p.add_argument("--device", help="auto (default), cpu, cuda, mps")
        add_threads_argument(p)
        if name == "evaluate":
            p.add_argument("--split", default="test", choices=("train", "valid", "test"))
            p.add_argument("--out", help="also write the metrics as JSON here")
        else:
            p.add_argument("--split", default=None, choices=("train", "valid", "test"),
                           help="--data: the split to predict (default test)")
            p.add_argument("--out", help="--data: the CSV file to write (needed); --dialogues: a CSV, or JSON "
                                         "with a .json suffix (optional: the table is printed either way)")
            p.add_argument("--overwrite", action="store_true",
                           help="allow --out to replace a run folder's test_predictions.csv (a run's other "
                                "files are never replaced by --out)")
            new = p.add_argument_group("new dialogues (instead of --data)")
            new.add_argument("--dialogues", metavar="FILE",
                             help="'Speaker: sentence' lines with a blank line between dialogues (.txt), or an "
                                  "unlabelled table (.csv, .tsv, .jsonl) without split and label columns")
            new.add_argument("--columns", help="table: field=column pairs, as for `features`")
            new.add_argument("--format", choices=("csv", "tsv", "jsonl"), help="table: the file format")
            new.add_argument("--delimiter", help="table: the CSV delimiter (default: detected)")
            new.add_argument("--encoding", help="the text encoding (default: detected)")
            new.add_argument("--encoder-dir", help="where a fine-tuned encoder folder is now, if it moved")
            new.add_argument("--unknown-speakers", choices=("error", "generic"), default="error",
                             help="a speaker the model never learnt: error (default; the message suggests the "
                                  "closest known names) or generic (one generic speaker, the mean of the trained "
                                  "speaker embeddings; the output names who was mapped)")
        p.set_defaults(func=func)

    p = sub.add_parser("convert", help="turn an SDT / M3Net feature pickle into the kit's .npz format",
                       description="Read a standard feature pickle with the safe unpickler and save it in the "
                                   "kit's own pickle-free format.")
    p.add_argument("--pickle", required=True)
    p.add_argument("--kind", choices=("auto", "iemocap", "meld"), default="auto")
    p.add_argument("--valid-fraction", type=float, default=None,
                   help="hold out this share of training dialogues, a seeded draw, for validation (default: MELD's "
                        "official dev dialogues 1039-1152 where trainVid holds them all, else 0.1)")
    p.add_argument("--valid-ids", metavar="FILE", default=None,
                   help="validation dialogues instead of the default: a file with one id per line, or "
                        "'meld-dev' (MELD's official dev split, ids 1039-1152)")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation hold-out")
    p.add_argument("--text-layers", choices=("first", "mean"), default="first")
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("synth", help="write the built-in synthetic corpus",
                       description="Generate the synthetic corpus (deterministic from the seed) and save it.")
    p.add_argument("--profile", choices=("iemocap", "meld"), default="iemocap")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sizes", help="feature sizes, e.g. t=64,a=48,v=32 (default: 1024/1582/342, MELD audio 300)")
    p.add_argument("--dialogues", type=int, help="number of dialogues (split proportions kept)")
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("demo", help="the main job on built-in data: run the five notebooks headless",
                       description=cmd_demo.__doc__)
    p.add_argument("--out", default=None,
                   help="folder for the executed notebooks and runs (default runs/demo, with --meld runs/demo-meld)")
    p.add_argument("--figures", default=None, help="folder for the figures (default OUT/figures)")
    p.add_argument("--meld", metavar="DIR",
                   help="run on the real MELD text in DIR (safsd-glnet data meld --out DIR) instead of the synthetic "
                        "data: text features built once and cached, the settings of safsd_glnet.grids.demo.real_meld_settings")
    p.add_argument("--grid", help="ablation grid for notebook 4 (default ablations/quick.yaml on the run's data)")
    p.add_argument("--workers", type=int, default=1, help="ablation runs executed at once (default 1)")
    p.add_argument("--fast-maps", action="store_true", help="PCA instead of LDA for the embedding maps")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("figures", help="re-run the notebooks headless and regenerate figures/",
                       description=cmd_figures.__doc__ + " The settings are those of the quick start "
                       "(safsd_glnet.grids.demo.QUICK and ablations/quick.yaml), or with --meld those of "
                       "safsd_glnet.grids.demo.real_meld_settings.")
    p.add_argument("--out", default=None,
                   help="folder for the executed notebooks and runs (default runs/figures, with --meld "
                        "runs/figures-real-meld)")
    p.add_argument("--figures", default="figures", help="folder for the figures (default figures; --meld writes "
                                                         "into its real-meld/ subfolder)")
    p.add_argument("--meld", metavar="DIR",
                   help="the real MELD text in DIR (safsd-glnet data meld --out DIR): writes FIGURES/real-meld/")
    p.add_argument("--grid", help="ablation grid for notebook 4 (default ablations/quick.yaml on the run's data)")
    p.add_argument("--workers", type=int, default=1, help="ablation runs executed at once (default 1)")
    p.add_argument("--only", nargs="+", metavar="NN", help="only these notebooks, by number, e.g. --only 01 03")
    p.add_argument("--fast-maps", action="store_true", help="PCA instead of LDA for the embedding maps")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("ablate", help="run an ablation grid: notebook 4 per (variant, seed) with papermill",
                       description="Execute notebooks/04_ablation.ipynb with papermill once per variant and seed "
                                   "of a grid file into OUT/<variant>-seed<k>/, skipping complete runs, recording "
                                   "failures and resuming interrupted grids. Grid format: see ablations/paper.yaml.")
    p.add_argument("--grid", required=True, help="grid file (YAML), e.g. ablations/paper.yaml")
    p.add_argument("--out", help="output folder (default runs/<grid name>)")
    p.add_argument("--workers", type=int, default=None,
                   help="runs executed at once, each in its own process (default 1); with --executor dask and no "
                        "--scheduler, the worker processes of the LocalCluster the kit starts")
    p.add_argument("--base", action="append", metavar="NAME=VALUE",
                   help="override a base parameter, e.g. --base DATA=data/iemocap_multimodal_features.pkl "
                        "--base PRESET=paper (values read as YAML)")
    p.add_argument("--seeds", type=int, nargs="+", help="use these seeds instead of the grid's")
    p.add_argument("--variants", nargs="+", help="run only these variants of the grid")
    p.add_argument("--force", action="store_true", help="re-run every run from scratch (empties its folder)")
    p.add_argument("--skip-failed", action="store_true", help="do not retry runs that failed before")
    p.add_argument("--timeout", type=float, help="seconds allowed per notebook cell (default: no limit)")
    p.add_argument("--threads", type=int,
                   help="CPU threads per run (default: an equal share of this machine's cores when several runs share "
                        "it; on a Dask cluster the workers' own setting, 1 unless changed; with slurm --cpus)")
    p.add_argument("--report", action="store_true",
                   help="then run notebook 5: OUT/ablation_table.md/.tex/.json and a bar chart in OUT/figures")
    cli_cluster.add_arguments(p, "runs")
    p.set_defaults(func=cmd_ablate)

    try:
        from . import features as cli_features
    except ImportError:  # the text-feature extras are optional
        cli_features = None
    if cli_features is not None:
        cli_features.add_parser(sub)
    from . import data as cli_data  # standard library and tqdm only: always available
    cli_data.add_parser(sub)
    from .finetune import add_parser as add_finetune_parser
    add_finetune_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"safsd-glnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"safsd-glnet {args.command}: interrupted; a training run continues with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
