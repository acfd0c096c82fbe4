"""Data: the corpus contract, loaders, the kit's own file format, synthetic data, batching.

:func:`load_data` turns one string into a :class:`Corpus`:

* ``"synthetic:iemocap"`` / ``"synthetic:meld"``, optionally with ``:key=value`` options
  such as ``"synthetic:iemocap:seed=3"`` or ``"synthetic:meld:seed=1:scale=0.1"``
  (keys: ``seed``, ``num_dialogues``, ``scale``) -> :func:`make_synthetic`;
* a path ending in ``.pkl`` / ``.pickle`` -> :func:`load_sdt_pickle` (the SDT / M3Net files);
* a path ending in ``.npz`` -> :func:`load_corpus` (the kit's format).
"""
from __future__ import annotations

import os
from typing import Any

from .batching import PAD_LABEL, Batch, collate, iterate_batches, num_batches
from .corpus import SPLITS, Corpus, DataError, Dialogue
from .kit_format import load_corpus, save_corpus
from .safe_pickle import UnsafePickleError, safe_load
from ..facts import IEMOCAP_CLASSES, MELD_CLASSES
from .sdt_pickle import load_sdt_pickle
from .synthetic import PROFILES, make_synthetic

__all__ = [
    "Corpus", "Dialogue", "DataError", "SPLITS", "Batch", "PAD_LABEL", "collate",
    "iterate_batches", "num_batches", "load_sdt_pickle", "save_corpus", "load_corpus",
    "make_synthetic", "load_data", "safe_load", "UnsafePickleError", "IEMOCAP_CLASSES",
    "MELD_CLASSES", "check_data_spec",
]

_SYNTHETIC_OPTIONS = {"seed": int, "num_dialogues": int, "scale": float}


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
    if not text.lower().endswith((".pkl", ".pickle", ".npz")):
        raise DataError(f"{where}: {text!r}: cannot tell the format: expected 'synthetic:iemocap', "
                        f"'synthetic:meld', a .pkl / .pickle SDT feature file or a .npz kit file")
    if not os.path.isfile(text):
        raise DataError(f"{where}: {text}: file not found")


def load_data(spec: str | os.PathLike, **kw: Any) -> Corpus:
    """The corpus named by ``spec`` (see the module docstring); ``kw`` go to the loader.

    Options written in a ``synthetic:`` spec and in ``kw`` must not both set the same key.

    Raises:
        DataError: for a missing file, an unknown suffix, or a malformed ``synthetic:`` spec
            (and whatever the loader raises for a bad file).
    """
    text = os.fspath(spec)
    if text.startswith("synthetic:"):
        return _synthetic(text, kw)
    lowered = text.lower()
    if not lowered.endswith((".pkl", ".pickle", ".npz")):
        raise DataError(f"{text}: cannot tell the format: expected 'synthetic:iemocap', "
                        f"'synthetic:meld', a .pkl / .pickle SDT feature file or a .npz kit file")
    if not os.path.exists(text):
        raise DataError(f"{text}: file not found")
    if os.path.isdir(text):
        raise DataError(f"{text}: is a folder, expected a file")
    if lowered.endswith(".npz"):
        if kw:
            raise TypeError(f"load_data: options {sorted(kw)} do not apply to a .npz kit file")
        return load_corpus(text)
    return load_sdt_pickle(text, **kw)


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
