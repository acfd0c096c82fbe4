"""``safsd-glnet features``: build a text-feature corpus from an utterance table.

Registered on the main command line by :func:`add_parser`. Reads the MELD release
(``--meld DIR``) or any CSV / TSV / JSON-lines table (``--table FILE``, or one file per
split with ``--table train=A --table valid=B --table test=C``, with ``--columns``),
encodes every sentence with a sentence-transformers model (cached under ``--cache-dir``),
optionally adds openSMILE audio features from one audio file per utterance (``--audio-*``,
see :mod:`safsd_glnet.features.audio`) and audio / visual features from a standard SDT / M3Net pickle, and saves the
corpus in the kit's ``.npz`` format. Nothing heavy is imported until the command runs, so the
rest of the command line works without the text extras installed.
"""
from __future__ import annotations

import argparse
import sys
import time

from ..data.corpus import DataError

EPILOG = """\
examples:
  # MELD from the official CSVs (train/dev/test_sent_emo.csv), offline MiniLM:
  safsd-glnet features --meld data/meld --out meld_text.npz
  # IEMOCAP utterance table with the default columns
  # (split, dialogue_id, utterance_index, speaker, emotion, text):
  safsd-glnet features --table iemocap_utterances.csv --classes iemocap --out iemocap_text.npz
  # one file per split (no split column; ids that repeat across files get the split as prefix):
  safsd-glnet features --table train=train.csv --table dev=dev.csv --table test=test.csv \\
      --columns dialogue=Dialogue_ID,order=Utterance_ID,speaker=Speaker,label=Emotion,text=Utterance \\
      --out my.npz
  # dialogue id from several columns, a ';'-delimited Windows-1252 export named explicitly:
  safsd-glnet features --table friends.csv --columns "dialogue=Season+Episode+Scene" \\
      --delimiter ';' --encoding cp1252 --out friends.npz
  # any table, other column names, a bigger encoder (downloaded once), plus audio/visual:
  safsd-glnet features --table talks.jsonl \\
      --columns split=fold,dialogue=conv,order=turn,speaker=who,label=emo,text=sentence \\
      --encoder roberta-large --merge-pickle iemocap_multimodal_features.pkl --out talks.npz
  # text plus audio (modality a) from one WAV per utterance, MELD audio in folders per split:
  safsd-glnet features --meld data/meld --audio-dir data/meld_audio \
      --audio-pattern '{split}/dia{dialogue_raw}_utt{order}.wav' --audio-features egemaps --out meld_ta.npz

  # the frozen MiniLM read out at the mean of its last 4 layers instead of its last one:
  safsd-glnet features --table iemocap_utterances.csv --classes iemocap --layer mean4 --out iemocap_mean4.npz

The text vectors are cached under --cache-dir (keyed by the encoder, the exact sentences and
a --layer other than last), so running the command again, or with another --merge-pickle,
costs nothing.
"""


def add_input_arguments(p: argparse.ArgumentParser, title: str = "input (one of)") -> None:
    """The table options of ``features`` (also used by ``finetune``), read by :func:`_read`."""
    src = p.add_argument_group(title)
    one = src.add_mutually_exclusive_group(required=True)
    one.add_argument("--meld", metavar="DIR",
                     help="folder with the official MELD release: train_sent_emo.csv, dev_sent_emo.csv, "
                          "test_sent_emo.csv (dev becomes the valid split; dialogue ids are "
                          "train_<Dialogue_ID>, valid_<..>, test_<..>)")
    one.add_argument("--table", metavar="[SPLIT=]FILE", action="append",
                     help="CSV, TSV or JSON-lines table, one row per utterance, with a split column; or "
                          "repeat as SPLIT=FILE, one file per split (train=, valid= or dev=, test=), "
                          "files without a split column")
    src.add_argument("--columns", metavar="MAP",
                     help="--table: column names as field=column pairs, fields split, dialogue, order, "
                          "speaker, label, text; unnamed fields keep the defaults split, dialogue_id, "
                          "utterance_index, speaker, emotion, text (e.g. label=Emotion,text=Utterance). "
                          "dialogue=A+B+C builds the dialogue id from several columns (values joined "
                          "with '_'); names with ',' '+' or '=' go in a JSON object: "
                          "'{\"dialogue\": [\"Season\", \"Scene+Take\"]}'")
    src.add_argument("--format", choices=("csv", "tsv", "jsonl"),
                     help="--table: file format (default: from the suffix; .jsonl/.json/.ndjson are JSON lines, "
                          ".tsv is TAB-delimited, anything else CSV)")
    src.add_argument("--delimiter", metavar="CHAR",
                     help="--table: the CSV delimiter, e.g. ';' or tab (default: detected among , ; TAB |)")
    src.add_argument("--encoding", metavar="CODEC",
                     help="--table: the text encoding, e.g. utf-8, utf-16, cp1252 (default: detected: a "
                          "byte-order mark, UTF-16 by its NUL bytes, UTF-8, else Windows-1252)")
    src.add_argument("--split-prefix", choices=("auto", "always", "never"),
                     help="--table: prefix dialogue ids with their split ('train_12'): auto (default) = "
                          "when ids repeat across the SPLIT=FILE files, always, or never (a repeated id "
                          "is then an error)")
    src.add_argument("--classes", metavar="NAMES",
                     help="--table: the class order, comma-separated, or 'iemocap' (happy,sad,neutral,angry,"
                          "excited,frustrated) or 'meld'; labels outside it are an error (default: the "
                          "IEMOCAP or MELD order when the labels are exactly that set, else sorted)")
    src.add_argument("--speakers", choices=("dialogue", "corpus"),
                     help="speaker indices: 'dialogue' = order of first appearance within each dialogue, "
                          "'corpus' = one id per name across the corpus (default: dialogue for --meld, "
                          "corpus for --table)")
    src.add_argument("--no-fix-text", action="store_true",
                     help="keep the text as written (default: repair mojibake, ASCII quotes and dashes)")
    src.add_argument("--name", help="corpus name (default: meld, or the table's file stem)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``features`` subcommand on ``subparsers`` (sets ``func=run_features``)."""
    p = subparsers.add_parser(
        "features",
        help="encode an utterance table (MELD CSVs, a CSV/JSON-lines table) into a text-feature corpus",
        description="Build a corpus with text features (modality t) from an utterance table: one "
                    "frozen sentence-encoder vector per utterance, with labels, speakers and splits "
                    "from the table, saved as a kit .npz corpus that train/evaluate read with --data.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_arguments(p)

    enc = p.add_argument_group("encoder")
    enc.add_argument("--encoder", default="minilm",
                     help="sentence-transformers model: 'minilm' (packaged all-MiniLM-L6-v2, 384-d, offline), "
                          "a local model folder, or a model name to download (default: minilm)")
    enc.add_argument("--layer", default="last", metavar="LAYER",
                     help="which hidden states the vectors read: 'last' (the encoder's own pipeline), '-k' "
                          "(the k-th layer from the end) or 'meanK' (the mean of the last K layers), mean-pooled "
                          "over the tokens, then the encoder's normalisation (default: last)")
    enc.add_argument("--batch-size", type=int, default=64, help="sentences per encoder batch (default: 64)")
    enc.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps (default: auto)")
    enc.add_argument("--cache-dir", default=".cache/safsd-glnet",
                     help="where text vectors are cached (default: .cache/safsd-glnet)")
    enc.add_argument("--no-cache", action="store_true", help="always encode, and write no cache")
    enc.add_argument("--no-progress", action="store_true", help="no progress bar")

    add_audio_arguments(p)

    out = p.add_argument_group("output")
    out.add_argument("--merge-pickle", metavar="PKL",
                     help="add audio and visual features from an SDT / M3Net feature pickle, matched by "
                          "dialogue id and utterance position (MELD ids map to the pickle's numbering)")
    out.add_argument("--merge-modalities", default="av", metavar="MODS",
                     help="which modalities --merge-pickle adds: a, v or av (default: av)")
    out.add_argument("--out", required=True, metavar="NPZ", help="output corpus (.npz, kit format)")
    p.set_defaults(func=run_features)
    return p


def _read(args: argparse.Namespace):
    from ..data.tables import read_meld_dir, read_table

    fix = not args.no_fix_text
    if args.meld:
        for flag in ("columns", "format", "delimiter", "encoding", "split_prefix"):
            if getattr(args, flag):
                raise DataError(f"--{flag.replace('_', '-')} applies to --table, not to --meld")
        kw = {"speaker_mode": args.speakers or "dialogue", "fix_text": fix}
        if args.classes:
            kw["class_names"] = args.classes
        if args.name:
            kw["name"] = args.name
        return read_meld_dir(args.meld, **kw)
    return read_table(table_sources(args.table), args.columns, args.format, class_names=args.classes,
                      speaker_mode=args.speakers or "corpus", fix_text=fix, name=args.name,
                      delimiter=args.delimiter, encoding=args.encoding,
                      split_prefix=args.split_prefix or "auto")


def table_sources(values: list[str]):
    """``--table`` values -> one path, or {split: path} when given as SPLIT=FILE.

    A single value is a path unless it starts with a split name and ``=`` (``test=new.csv``);
    several values must all be SPLIT=FILE. A file whose name starts like that is given as
    ``./test=x.csv``.
    """
    from ..data.tables import SPLIT_ALIASES

    def split_of(value: str):
        head, sep, tail = value.partition("=")
        split = SPLIT_ALIASES.get(head.strip().lower()) if sep else None
        return (split, tail) if split and tail else (None, value)

    if len(values) == 1:
        split, path = split_of(values[0])
        return path if split is None else {split: path}
    files: dict[str, str] = {}
    for value in values:
        split, path = split_of(value)
        if split is None:
            raise DataError(f"--table {value!r}: with several --table options each must be SPLIT=FILE "
                            f"(train=..., valid=... or dev=..., test=...)")
        if split in files:
            raise DataError(f"--table {value!r}: split {split!r} is given twice (also {files[split]!r})")
        files[split] = path
    return files


def run_features(args: argparse.Namespace) -> int:
    """Run the ``features`` subcommand; 0 on success, 2 on bad input."""
    try:
        return _run(args)
    except (DataError, FileNotFoundError, ImportError) as e:
        print(f"safsd-glnet features: error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from ..data.kit_format import save_corpus
    from ..data.tables import describe
    from ..features.layers import LAYER_HELP, check_layer
    from ..features.text import build_text_corpus, merge_pickle_modalities, text_cache_path

    from pathlib import Path

    from ..training.run_folder_guard import check_output_file

    if args.batch_size < 1:
        raise DataError(f"--batch-size {args.batch_size}: must be >= 1")
    try:
        check_layer(args.layer)
    except ValueError:
        raise DataError(f"--layer {args.layer!r}: {LAYER_HELP}") from None
    check_output_file(args.out, "--out file")  # before minutes of encoding, not after
    if args.cache_dir is not None and not args.no_cache:
        from ..training.run_folder_guard import check_writable

        check_writable(args.cache_dir, "--cache-dir folder")
    table = _read(args)
    print(describe(table))
    cache_dir = None if args.no_cache else args.cache_dir
    if cache_dir is not None:
        path = text_cache_path(table, args.encoder, cache_dir, args.layer)
        print(f"text features: {'cached in' if path.is_file() else 'encoding, will cache in'} {path}")
    t0 = time.perf_counter()
    try:
        corpus = build_text_corpus(table, args.encoder, cache_dir=cache_dir, batch_size=args.batch_size,
                                   device=args.device, progress=not args.no_progress, layer=args.layer)
    except ValueError as e:  # a layer past the encoder's depth is known only once it is loaded
        if not str(e).startswith("layer="):
            raise
        raise DataError(f"--layer {str(e)[len('layer='):]}") from None
    print(f"text features: {corpus.feature_sizes['t']}-d for {corpus.num_utterances()} utterances "
          f"in {time.perf_counter() - t0:.1f} s")
    corpus = add_audio(args, table, corpus, cache_dir)
    if args.merge_pickle:
        corpus = merge_pickle_modalities(corpus, args.merge_pickle, args.merge_modalities)
        print(f"merged from {args.merge_pickle}: modalities {''.join(corpus.modalities)}, "
              f"sizes {corpus.feature_sizes}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_corpus(corpus, args.out)
    print(f"wrote {args.out}")
    return 0


# --------------------------------------------------------------------------------------------
# Audio (modality a) from one audio file per utterance; kept apart from the table options.

def add_audio_arguments(p: argparse.ArgumentParser) -> None:
    """The ``audio`` argument group of ``safsd-glnet features``."""
    aud = p.add_argument_group(
        "audio (optional)",
        "one audio file per utterance; openSMILE functionals become modality a (16 kHz, channels averaged)")
    where = aud.add_mutually_exclusive_group()
    where.add_argument("--audio-column", metavar="COL",
                       help="table column holding each utterance's audio file (relative paths: from "
                            "--audio-dir, else from the table's folder)")
    where.add_argument("--audio-pattern", metavar="PATTERN",
                       help="file name pattern with the placeholders {dialogue}, {dialogue_raw} (MELD: "
                            "train_12 -> 12), {split}, {position} (0-based rank), {order} (as written), "
                            "{speaker}; e.g. '{dialogue}/{position}.wav', '{dialogue}_{order:03d}.wav'")
    aud.add_argument("--audio-dir", metavar="DIR",
                     help="folder the audio paths are relative to (default: the table's folder); paths that "
                          "leave it (absolute, or climbing out with ..) are refused")
    aud.add_argument("--audio-any-path", action="store_true",
                     help="allow audio paths outside the audio folder (absolute paths, ..): only for a table you "
                          "trust, since it then decides which files are read")
    aud.add_argument("--audio-features", choices=("egemaps", "compare"), default="egemaps",
                     help="eGeMAPSv02 (88-d) or ComParE_2016 (6373-d) functionals (default: egemaps); "
                          "cached under --cache-dir by file content")


def add_audio(args: argparse.Namespace, table, corpus, cache_dir):
    """``corpus`` with modality a from the audio files, when --audio-column / --audio-pattern ask."""
    if not (args.audio_column or args.audio_pattern):
        if args.audio_dir or args.audio_any_path:
            raise DataError("--audio-dir and --audio-any-path need --audio-column or --audio-pattern")
        return corpus
    from ..features.audio import add_audio_modality, audio_cache_path, build_audio_features

    if cache_dir is not None:
        path = audio_cache_path(table, args.audio_features, cache_dir)
        print(f"audio features: cache {path}")
    t0 = time.perf_counter()
    feats = build_audio_features(table, args.audio_features, column=args.audio_column, pattern=args.audio_pattern,
                                 audio_dir=args.audio_dir, fmt=getattr(args, "format", None),
                                 delimiter=getattr(args, "delimiter", None), encoding=getattr(args, "encoding", None),
                                 cache_dir=cache_dir, progress=not args.no_progress,
                                 allow_any_path=args.audio_any_path)
    where = args.audio_dir or "the table's folder"
    corpus = add_audio_modality(corpus, feats, source=f"audio files in {where}")
    print(f"audio features: {corpus.feature_sizes['a']}-d ({args.audio_features}) for "
          f"{corpus.num_utterances()} utterances in {time.perf_counter() - t0:.1f} s")
    return corpus
