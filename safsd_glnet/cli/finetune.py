"""``safsd-glnet finetune``: fine-tuned, context-aware text features from an utterance table.

Registered on the main command line by :func:`add_parser`. Reads the same inputs as
``safsd-glnet features`` (``--meld DIR`` or ``--table FILE``), fine-tunes a transformer encoder
as an utterance emotion classifier on the training split (epoch chosen on validation; see
:mod:`safsd_glnet.features.finetune`), encodes every utterance and saves the corpus in the kit's
``.npz`` format. The encoders and ``finetune.json`` go to ``--run-dir`` (default: a folder under
``--cache-dir`` keyed by the encoder, every setting and the data, so the same command again
reads the finished run instead of training). Nothing heavy is imported until the command runs.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from ..data.corpus import DataError
from .features import add_input_arguments

EPILOG = """\
examples:
  # IEMOCAP, packaged MiniLM (offline), the utterance alone:
  safsd-glnet finetune --table iemocap_utterances.csv --classes iemocap --out iemocap_ft.npz
  # 3 previous and 1 next utterance as context, 5-fold cross-fitted training features:
  safsd-glnet finetune --table iemocap_utterances.csv --classes iemocap \\
      --context-past 3 --context-future 1 --folds 5 --out iemocap_ft_ctx_cf5.npz
  # gentler updates: only the last 2 layers, lower learning rate, mean of the last 4 layers:
  safsd-glnet finetune --meld data/meld --freeze-below 2 --lr 1e-5 --layer mean4 --out meld_ft.npz
  # choose lr and epochs on validation (the classifier's validation weighted F1):
  safsd-glnet finetune --meld data/meld --grid lr=1e-5,3e-5 --grid epochs=2,4 --out meld_ft.npz
  # RoBERTa-large as in COSMIC (needs the network once, and a GPU to be quick):
  safsd-glnet finetune --meld data/meld --encoder roberta-large --lr 1e-5 --batch-size 16 --out meld_rl.npz

The test split is never read for a choice; its classifier score is printed after the run,
labelled as a report (--no-test-score: not scored at all).
"""


def add_threads_argument(group) -> None:
    """``--threads N``, shared by ``finetune``, ``train``, ``evaluate`` and ``predict``."""
    group.add_argument("--threads", type=int, metavar="N",
                       help="torch CPU threads (default: torch's choice); 1 is much faster on a small CPU shared "
                            "with other jobs")


def apply_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` when given; below 1 is a one-line error naming the flag."""
    if threads is None:
        return
    if threads < 1:
        raise DataError(f"--threads {threads}: must be >= 1")
    import torch

    torch.set_num_threads(threads)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``finetune`` subcommand on ``subparsers`` (sets ``func=run_finetune``)."""
    from ..features.finetune import FinetuneConfig, HELDOUT, POOLINGS  # light: torch and transformers load lazily
    from ..model.precision import PRECISIONS

    d = FinetuneConfig()
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a text encoder as an utterance emotion classifier and encode a table with it",
        description="Fine-tune a transformer encoder on the training split of an utterance table (the "
                    "utterance with its speaker, optionally a window of past / future utterances), keep the "
                    "epoch with the best validation weighted F1, encode every utterance and save a kit .npz "
                    "corpus (modality t) that train/evaluate read with --data.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_arguments(p, "input (one of; as for `safsd-glnet features`)")

    inp = p.add_argument_group("encoder input")
    inp.add_argument("--encoder", default=d.encoder,
                     help="Hugging Face model name or folder; 'minilm' = packaged all-MiniLM-L6-v2, offline "
                          f"(default: {d.encoder})")
    inp.add_argument("--context-past", type=int, default=d.context_past, metavar="N",
                     help=f"previous utterances (with speakers) as a second segment (default {d.context_past})")
    inp.add_argument("--context-future", type=int, default=d.context_future, metavar="N",
                     help=f"next utterances in the second segment (default {d.context_future})")
    inp.add_argument("--no-speakers", dest="speaker_prefix", action="store_false",
                     help="the text alone, without 'Speaker: '")
    inp.add_argument("--max-length", type=int, default=d.max_length,
                     help=f"tokens per input; context is cut first, the utterance only when it alone is "
                          f"longer (default {d.max_length})")

    tr = p.add_argument_group("training (epoch chosen on validation weighted F1)")
    tr.add_argument("--lr", type=float, default=d.lr, help=f"AdamW peak learning rate (default {d.lr})")
    tr.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    tr.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    tr.add_argument("--warmup", type=float, default=d.warmup, help=f"share of steps warming up (default {d.warmup})")
    tr.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"default {d.weight_decay}")
    tr.add_argument("--grad-clip", type=float, default=d.grad_clip, help=f"0 turns it off (default {d.grad_clip})")
    tr.add_argument("--dropout", type=float, default=d.dropout, help=f"before the head (default {d.dropout})")
    tr.add_argument("--class-weights", action="store_true", help="class-weighted cross-entropy, N / (C n_c)")
    tr.add_argument("--freeze-below", type=int, default=d.freeze_below, metavar="K",
                    help="train only the last K transformer layers (0: the head alone; default: all)")
    tr.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
    tr.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                    help="auto: bf16 autocast on CUDA and on CPUs with AMX / AVX512-BF16, else fp32 (default auto)")

    out = p.add_argument_group("features")
    out.add_argument("--pooling", choices=POOLINGS, default=d.pooling,
                     help="mean over the utterance's own tokens, or the first token (default mean)")
    out.add_argument("--layer", default=d.layer,
                     help="feature layer: last, -k (k-th from the end), meanK (mean of the last K) (default last)")
    out.add_argument("--folds", type=int, default=d.folds, metavar="K",
                     help="K >= 2: cross-fit: each training utterance is encoded by an encoder that never "
                          "trained on its dialogue (default 1: off)")
    out.add_argument("--heldout", choices=HELDOUT, default=d.heldout,
                     help="with --folds: valid / test / new sentences by one encoder on all training "
                          "dialogues (full), or the mean of the fold encoders (fold-mean) (default full)")
    out.add_argument("--grid", action="append", metavar="FIELD=V1,V2",
                     help="fine-tune every combination and keep the best validation weighted F1, e.g. "
                          "--grid lr=1e-5,3e-5 --grid freeze_below=none,2")

    run = p.add_argument_group("run")
    run.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, mps (default auto)")
    run.add_argument("--encode-batch-size", type=int, default=64, help="utterances per encoding batch (default 64)")
    add_threads_argument(run)
    run.add_argument("--run-dir", metavar="DIR",
                     help="folder for the encoders and finetune.json (default: keyed, under --cache-dir)")
    run.add_argument("--cache-dir", default=".cache/safsd-glnet", help="default .cache/safsd-glnet")
    run.add_argument("--overwrite", action="store_true", help="replace another run found in --run-dir")
    run.add_argument("--drop-fold-encoders", action="store_true",
                     help="with --folds and --heldout full: keep only the fold encoders' vectors, not their weights")
    run.add_argument("--no-test-score", action="store_true",
                     help="do not score the classifier on test at all (selection studies read test once, at the end)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--merge-pickle", metavar="PKL", help="add audio / visual from an SDT / M3Net pickle")
    run.add_argument("--merge-modalities", default="av", metavar="MODS", help="a, v or av (default av)")
    run.add_argument("--out", required=True, metavar="NPZ", help="output corpus (.npz, kit format)")
    p.set_defaults(func=run_finetune)
    return p


def run_finetune(args: argparse.Namespace) -> int:
    """Run the ``finetune`` subcommand; 0 on success, 2 on bad input."""
    try:
        return _run(args)
    except (DataError, ValueError, FileNotFoundError, ImportError) as e:
        print(f"safsd-glnet finetune: error: {e}", file=sys.stderr)
        return 2


def _config(args: argparse.Namespace):
    from ..features.finetune import FinetuneConfig

    # --speakers is the table's speaker-index mode (as for `features`); the prefix switch is separate
    values = {f.name: getattr(args, "speaker_prefix" if f.name == "speakers" else f.name)
              for f in dataclasses.fields(FinetuneConfig)}
    if values["grad_clip"] == 0:
        values["grad_clip"] = None
    return FinetuneConfig(**values).check()


def _print_run(result) -> None:
    info = result.info
    print(f"run folder: {result.run_dir}" + (" (finished earlier: read, not trained)" if result.reused else ""))
    for e in info["encoders"]:
        curve = ", ".join(f"{h['valid_weighted_f1']:.2f}" for h in e["history"])
        print(f"  {e['name']}: trained on {len(e['trained_on'])} dialogues, encodes {len(e['encodes'])}; "
              f"validation w-F1 per epoch [{curve}] -> epoch {e['chosen_epoch']} ({e['seconds']:.0f} s)")
    for split, m in info["classifier"].items():
        note = f" ({m['label']})" if "label" in m else ""
        if "weighted_f1" not in m:
            print(f"  classifier {split}:{note}")
            continue
        print(f"  classifier {split}: accuracy {m['accuracy']:.2f}, weighted F1 {m['weighted_f1']:.2f}{note}")
    s = info["seconds"]
    print(f"  precision {info['precision']} on {info['device']}; {s['total']:.0f} s in all "
          f"(training {s['train']:.0f} s, encoding {s['encode']:.0f} s)")


def _run(args: argparse.Namespace) -> int:
    from .features import _read  # the same reading as `features`
    from ..data.kit_format import save_corpus
    from ..data.tables import describe
    from ..features.text import merge_pickle_modalities
    from ..features.finetune import finetune_corpus, grid_configs, parse_setting, select_settings
    from ..training.run_folder_guard import check_output_file

    check_output_file(args.out, "--out file")  # before the minutes of fine-tuning, not after
    if args.encode_batch_size < 1:
        raise DataError(f"--encode-batch-size {args.encode_batch_size}: must be >= 1")
    apply_threads(args.threads)
    base = _config(args)
    table = _read(args)
    print(describe(table))
    kw = dict(cache_dir=args.cache_dir, device=args.device, encode_batch_size=args.encode_batch_size,
              progress=not args.no_progress, keep_fold_encoders=not args.drop_fold_encoders,
              overwrite=args.overwrite, score_test=not args.no_test_score)
    t0 = time.perf_counter()
    if args.grid:
        if args.run_dir:
            raise DataError("--grid gives every setting its own keyed folder under --cache-dir; drop --run-dir")
        grid = {}
        for item in args.grid:
            field, sep, values = item.partition("=")
            if not sep or not values:
                raise DataError(f"--grid {item!r}: expected FIELD=V1,V2 (e.g. lr=1e-5,3e-5)")
            grid[field.strip().replace("-", "_")] = [parse_setting(field.strip().replace("-", "_"), v)
                                                     for v in values.split(",")]
        configs = grid_configs(base, grid)
        print(f"grid: {len(configs)} settings, chosen by the classifier's validation weighted F1")
        result, rows = select_settings(table, configs, **kw)
        for r in rows:
            changed = {k: r["settings"][k] for k in grid}
            mark = " <- chosen" if r["run_dir"] == str(result.run_dir) else ""
            print(f"  {changed}: validation w-F1 {r['valid_weighted_f1']:.2f}{mark}")
    else:
        result = finetune_corpus(table, base, run_dir=args.run_dir, **kw)
    _print_run(result)
    corpus = result.corpus
    print(f"text features: {corpus.feature_sizes['t']}-d for {corpus.num_utterances()} utterances "
          f"in {time.perf_counter() - t0:.1f} s")
    if args.merge_pickle:
        corpus = merge_pickle_modalities(corpus, args.merge_pickle, args.merge_modalities)
        print(f"merged from {args.merge_pickle}: modalities {''.join(corpus.modalities)}")
    save_corpus(corpus, args.out)
    print(f"wrote {args.out}")
    return 0
