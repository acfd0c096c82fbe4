"""Data: the corpus contract, loaders, the kit's own file format, synthetic data, batching.

:func:`load_data` turns one string into a :class:`Corpus`:

* ``"synthetic:iemocap"`` / ``"synthetic:meld"``, optionally with ``:key=value`` options
  such as ``"synthetic:iemocap:seed=3"`` or ``"synthetic:meld:seed=1:scale=0.1"``
  (keys: ``seed``, ``num_dialogues``, ``scale``) -> :func:`make_synthetic`;
* a path ending in ``.pkl`` / ``.pickle`` -> :func:`load_sdt_pickle` (the SDT / M3Net files);
* a path ending in ``.npz`` -> :func:`load_corpus` (the kit's format);
* a folder holding the MELD text release (``train_sent_emo.csv``, ``dev_sent_emo.csv``,
  ``test_sent_emo.csv``, as ``safsd-glnet data meld`` writes it) or an utterance table
  (``.csv`` / ``.tsv`` / ``.jsonl``, the columns of :func:`~safsd_glnet.data.tables.read_table`,
  e.g. the IEMOCAP transcripts) -> :func:`load_text_corpus`: sentence-encoder text features
  (modality ``t`` only), encoded once and then read from the cache
  (:func:`default_cache_dir`).
"""
from __future__ import annotations

import os
from typing import Any

from .batching import PAD_LABEL, Batch, collate, iterate_batches, num_batches
from .corpus import SPLITS, Corpus, DataError, Dialogue
from .kit_format import load_corpus, save_corpus
from .safe.unpickler import UnsafePickleError, safe_load
from ..dataset_facts import IEMOCAP_CLASSES, MELD_CLASSES
from .sdt_pickle import load_sdt_pickle
from .synthetic import PROFILES, make_synthetic

__all__ = [
    "Corpus", "Dialogue", "DataError", "SPLITS", "Batch", "PAD_LABEL", "collate",
    "iterate_batches", "num_batches", "load_sdt_pickle", "save_corpus", "load_corpus",
    "make_synthetic", "load_data", "safe_load", "UnsafePickleError", "IEMOCAP_CLASSES",
    "MELD_CLASSES", "check_data_spec", "load_text_corpus", "read_text_table", "default_cache_dir",
    "is_meld_folder", "is_text_spec",
]

_SYNTHETIC_OPTIONS = {"seed": int, "num_dialogues": int, "scale": float}
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".ndjson")
_FILE_FORMS = ("'synthetic:iemocap', 'synthetic:meld', a .pkl / .pickle SDT feature file, a .npz kit file, "
               "the MELD folder (train/dev/test_sent_emo.csv) or an utterance table (.csv, .tsv, .jsonl)")


def is_meld_folder(path: str | os.PathLike) -> bool:
    """True for a folder holding the three CSVs of the MELD text release."""
    from .tables import MELD_FILES

    return os.path.isdir(path) and all(os.path.isfile(os.path.join(path, n)) for n in MELD_FILES.values())


def is_text_spec(spec: str | os.PathLike) -> bool:
    """True when ``spec`` names sentences to encode (a MELD folder or an utterance table)."""
    text = os.fspath(spec)
    return not text.startswith("synthetic:") and (text.lower().endswith(TABLE_SUFFIXES) or os.path.isdir(text))


def default_cache_dir() -> str:
    """Where text features are cached: ``$SAFSD_GLNET_CACHE``, else ``.cache/safsd-glnet`` in the
    kit's checkout (the same folder for the command line and the notebooks, whatever the working
    directory), else ``~/.cache/safsd-glnet`` for an installed kit."""
    env = os.environ.get("SAFSD_GLNET_CACHE")
    if env:
        return env
    from ..provenance import repo_root

    root = repo_root()
    if (root / "pyproject.toml").is_file():
        return str(root / ".cache" / "safsd-glnet")
    return os.path.join(os.path.expanduser("~"), ".cache", "safsd-glnet")


def check_data_spec(spec: str | os.PathLike, where: str = "data") -> None:
    """Check that ``spec`` names data :func:`load_data` can try, without reading it: a valid
    ``synthetic:`` spec, or an existing file with a known suffix. Raises :class:`DataError`."""
    text = os.fspath(spec)
    if text.startswith("synthetic:"):
        parts = text.split(":")
        if len(parts) < 2 or parts[1] not in PROFILES:
            raise DataError(f"{where}: {text!r}: unknown synthetic profile, expected one of {sorted(PROFILES)}")
        _synthetic_options(text, parts[2:])
        return
    if os.path.isdir(text):
        if not is_meld_folder(text):
            raise DataError(f"{where}: {text}: a folder, but not the MELD text release (it needs train_sent_emo.csv, "
                            "dev_sent_emo.csv and test_sent_emo.csv: safsd-glnet data meld --out DIR)")
        return
    if not text.lower().endswith((".pkl", ".pickle", ".npz") + TABLE_SUFFIXES):
        raise DataError(f"{where}: {text!r}: cannot tell the format: expected {_FILE_FORMS}")
    if not os.path.isfile(text):
        raise DataError(f"{where}: {text}: file not found")


def load_data(spec: str | os.PathLike, *, split_dialogues: tuple[int, int | None] | None = None, **kw: Any) -> Corpus:
    """The corpus named by ``spec`` (see the module docstring); ``kw`` go to the loader.

    Options written in a ``synthetic:`` spec and in ``kw`` must not both set the same key.
    ``split_dialogues=(length, overlap)`` cuts the training dialogues longer than ``length``
    into overlapping windows (:func:`safsd_glnet.data.dialogue_windows.split_dialogues`; overlap None:
    a quarter of the length), for any kind of data.

    Raises:
        DataError: for a missing file, an unknown suffix, or a malformed ``synthetic:`` spec
            (and whatever the loader raises for a bad file).
    """
    corpus = _load(spec, kw)
    if split_dialogues is not None:
        from .dialogue_windows import split_dialogues as split

        corpus = split(corpus, *split_dialogues)
    return corpus


def _load(spec: str | os.PathLike, kw: dict[str, Any]) -> Corpus:
    """The corpus of ``spec`` from its loader (:func:`load_data` without the windows)."""
    text = os.fspath(spec)
    if text.startswith("synthetic:"):
        return _synthetic(text, kw)
    lowered = text.lower()
    if os.path.isdir(text) or lowered.endswith(TABLE_SUFFIXES):
        check_data_spec(text, where="data")
        return load_text_corpus(text, **kw)
    if not lowered.endswith((".pkl", ".pickle", ".npz")):
        raise DataError(f"{text}: cannot tell the format: expected {_FILE_FORMS}")
    if not os.path.exists(text):
        raise DataError(f"{text}: file not found")
    if lowered.endswith(".npz"):
        if kw:
            raise TypeError(f"load_data: options {sorted(kw)} do not apply to a .npz kit file")
        return load_corpus(text)
    return load_sdt_pickle(text, **kw)


def read_text_table(spec: str | os.PathLike, **table_options: Any):
    """The :class:`~safsd_glnet.data.tables.Table` of a MELD folder or an utterance table file."""
    from .tables import read_meld_dir, read_table

    text = os.fspath(spec)
    if os.path.isdir(text):
        return read_meld_dir(text, **table_options)
    return read_table(text, **table_options)


def load_text_corpus(spec: str | os.PathLike, *, encoder: str = "minilm", cache_dir: str | None = None,
                     device: str = "auto", progress: bool = False, **table_options: Any) -> Corpus:
    """A text-only corpus (modality ``t``) from a MELD folder or an utterance table: every
    sentence encoded by ``encoder`` (default the packaged all-MiniLM-L6-v2, offline), through
    the cache in ``cache_dir`` (default :func:`default_cache_dir`), so only the first call
    encodes (minutes on a laptop CPU; the vectors are then read in a second). Other keyword
    arguments go to the table reader (e.g. ``class_names="iemocap"``, ``columns=...``).
    Needs the text extras (``pip install 'safsd-glnet[text]'``)."""
    from ..features.text import build_text_corpus

    table = read_text_table(spec, **table_options)
    return build_text_corpus(table, encoder, cache_dir=cache_dir or default_cache_dir(), device=device,
                             progress=progress)


def _synthetic_options(spec: str, parts: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for part in parts:
        key, sep, raw = part.partition("=")
        if not sep or key not in _SYNTHETIC_OPTIONS:
            raise DataError(f"{spec}: option {part!r} is not key=value with key one of "
                            f"{sorted(_SYNTHETIC_OPTIONS)}")
        try:
            options[key] = _SYNTHETIC_OPTIONS[key](raw)
        except ValueError as e:
            raise DataError(f"{spec}: option {key}={raw!r} is not a valid "
                            f"{_SYNTHETIC_OPTIONS[key].__name__}") from e
    return options


def _synthetic(spec: str, kw: dict[str, Any]) -> Corpus:
    parts = spec.split(":")
    profile = parts[1] if len(parts) > 1 else ""
    if profile not in PROFILES:
        raise DataError(f"{spec}: unknown synthetic profile {profile!r}, expected one of "
                        f"{sorted(PROFILES)} (e.g. 'synthetic:iemocap:seed=3')")
    options = _synthetic_options(spec, parts[2:])
    clash = set(options) & set(kw)
    if clash:
        raise DataError(f"{spec}: {sorted(clash)} given both in the spec and as keyword arguments")
    return make_synthetic(profile, **options, **kw)
