"""The kit's own corpus file: one ``.npz`` archive, no pickle anywhere.

Shape letters: D dialogues, N utterances in all dialogues together, d_m feature size.

Entries of the archive (``numpy.savez``; read back with ``allow_pickle=False``, so loading a
file never runs code from it):

* ``features_t``, ``features_a``, ``features_v``: (N, d_m) float32, the dialogues' rows
  concatenated in dialogue order (only the modalities the corpus has);
* ``labels``: (N,) int64; ``speakers``: (N,) int64; ``lengths``: (D,) int64 utterances per
  dialogue, so dialogue i owns rows ``sum(lengths[:i]) : sum(lengths[:i + 1])``;
* ``meta``: UTF-8 JSON stored as a (bytes,) uint8 array (at most :data:`MAX_META_BYTES`,
  nested at most 100 deep), an object with ``format``
  (``"safsd-glnet-corpus"``), ``format_version`` (1), ``name``, ``source`` (where the
  corpus came from originally), ``class_names``, ``speaker_names``, ``feature_sizes``,
  ``dialogue_ids`` (in order), ``splits`` and ``texts`` (null, or one entry per dialogue:
  null or its list of sentences); optionally ``feature_info`` (modality -> how its features
  were made, :attr:`Corpus.feature_info`; absent in older files) and ``validation`` (which
  validation split the corpus carries, :attr:`Corpus.validation`, a record of
  :mod:`~safsd_glnet.data.validation`). An older file without ``validation`` loads with
  ``{"kind": "none"}`` when its ``valid`` split is empty, else ``{"kind": "unknown"}``.

:func:`save_corpus` writes to a temporary file in the destination folder and renames it over
the destination (``os.replace`` is atomic on POSIX and Windows), so an interrupted save
leaves either the old file or the new one, never half of one.

:func:`load_corpus` reads through :func:`~safsd_glnet.data.safe.npz.read_npz`, which checks
every member's declared size and ``.npy`` header before allocating anything (zip bombs,
impossible shapes and object arrays are refused with a message naming the member), and names
a file that is not a zip archive for what it is.
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..config import MODALITIES
from .safe.foreign_files import loads_json
from .atomic_files import atomic_path
from . import validation
from .corpus import Corpus, DataError, Dialogue
from .safe.npz import read_npz

__all__ = ["save_corpus", "load_corpus", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "safsd-glnet-corpus"
FORMAT_VERSION = 1
MAX_META_BYTES = 32 << 20
"""Largest ``meta`` accepted: 32 MiB of JSON (MELD's, with every sentence, is about 1.5 MB)."""


def _encode_meta(meta: dict[str, Any]) -> np.ndarray:
    """JSON -> (bytes,) uint8, the only way to store text in an npz without pickle."""
    return np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def save_corpus(corpus: Corpus, path: str | os.PathLike) -> None:
    """Write ``corpus`` to ``path`` (an ``.npz`` file), atomically.

    The corpus is validated first, so a file on disk always holds a valid corpus. Features
    are stored as float32 (the :class:`Corpus` contract), labels and speakers as int64.
    ``path`` is used as given (numpy's habit of appending ``.npz`` is avoided by writing
    through a file object).
    """
    corpus.validate()
    path = os.fspath(path)
    order = list(corpus.dialogues)
    dialogues = [corpus.dialogues[k] for k in order]
    arrays: dict[str, np.ndarray] = {}
    for m in corpus.modalities:
        arrays[f"features_{m}"] = np.concatenate(
            [np.asarray(d.features[m], dtype=np.float32) for d in dialogues], axis=0)
    arrays["labels"] = np.concatenate([np.asarray(d.labels, dtype=np.int64) for d in dialogues])
    arrays["speakers"] = np.concatenate([np.asarray(d.speakers, dtype=np.int64) for d in dialogues])
    arrays["lengths"] = np.array([len(d) for d in dialogues], dtype=np.int64)
    has_texts = any(d.texts is not None for d in dialogues)
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": corpus.name,
        "source": corpus.source,
        "class_names": list(corpus.class_names),
        "speaker_names": list(corpus.speaker_names),
        "feature_sizes": {m: int(corpus.feature_sizes[m]) for m in corpus.modalities},
        "dialogue_ids": order,
        "splits": {s: list(ids) for s, ids in corpus.splits.items()},
        "texts": [None if d.texts is None else list(d.texts) for d in dialogues] if has_texts else None,
    }
    if corpus.feature_info:  # optional key: files without it (older ones) load the same
        meta["feature_info"] = {m: corpus.feature_info[m] for m in corpus.modalities if m in corpus.feature_info}
    meta["validation"] = validation.check(corpus.validation, f"{path}: corpus {corpus.name!r}")
    arrays["meta"] = _encode_meta(meta)

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DataError(f"{path}: the folder {folder} does not exist")
    # A temporary file beside the target, with the mode a plain open() would give, renamed over
    # it once its data is on disk, and removed on any error (a KeyboardInterrupt included).
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
    """Persist the rename itself (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_corpus(path: str | os.PathLike) -> Corpus:
    """Read a file written by :func:`save_corpus` and return the validated :class:`Corpus`.

    Each dialogue's arrays are views into the concatenated arrays (no copy).

    Raises:
        DataError: naming the file (and the dialogue and field where there is one) for a
            missing file, a file that is not an npz archive, a truncated or corrupted
            archive, another format or format version, or inconsistent contents.
    """
    source = os.fspath(path)
    if not os.path.exists(source):
        raise DataError(f"{source}: file not found")
    arrays = read_npz(source, f"a {FORMAT_NAME} .npz file")
    if "meta" not in arrays:
        raise DataError(f"{source}: not a {FORMAT_NAME} file (no 'meta' entry; entries: "
                        f"{sorted(arrays)[:20]})")
    meta = _decode_meta(arrays.pop("meta"), source)
    return _assemble(meta, arrays, source)


def _decode_meta(raw: np.ndarray, source: str) -> dict[str, Any]:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise DataError(f"{source}: field 'meta' must be a 1-D uint8 array, got {raw.dtype} {raw.shape}")
    try:
        text = raw.tobytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{source}: field 'meta' is not UTF-8 JSON: {e}") from None
    try:
        meta = loads_json(text, source, "meta", max_bytes=MAX_META_BYTES)
    except ValueError as e:  # names the file and the field; too deep, too large or invalid
        raise DataError(str(e)) from None
    if not isinstance(meta, dict):
        raise DataError(f"{source}: field 'meta' must be a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT_NAME:
        raise DataError(f"{source}: not a {FORMAT_NAME} file (field 'meta.format' is "
                        f"{meta.get('format')!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise DataError(f"{source}: field 'meta.format_version' is {version!r}; this version of the "
                        f"kit reads format_version {FORMAT_VERSION} (a file from a newer kit? "
                        f"upgrade safsd-glnet)")
    expected = {"name": str, "class_names": list, "speaker_names": list, "feature_sizes": dict,
                "dialogue_ids": list, "splits": dict}
    for key, kind in expected.items():
        if not isinstance(meta.get(key), kind):
            raise DataError(f"{source}: field 'meta.{key}' must be a JSON {kind.__name__}, got "
                            f"{type(meta.get(key)).__name__}")
    if meta.get("texts") is not None and not isinstance(meta["texts"], list):
        raise DataError(f"{source}: field 'meta.texts' must be null or a list")
    return meta


def _assemble(meta: dict[str, Any], arrays: dict[str, np.ndarray], source: str) -> Corpus:
    ids = [str(i) for i in meta["dialogue_ids"]]
    if len(set(ids)) != len(ids):
        raise DataError(f"{source}: field 'meta.dialogue_ids' lists a dialogue twice")
    sizes = {m: meta["feature_sizes"][m] for m in MODALITIES if m in meta["feature_sizes"]}
    unknown = set(meta["feature_sizes"]) - set(sizes)
    if unknown:
        raise DataError(f"{source}: field 'meta.feature_sizes' names unknown modalities {sorted(unknown)}")
    for key in ("labels", "speakers", "lengths", *(f"features_{m}" for m in sizes)):
        if key not in arrays:
            raise DataError(f"{source}: field {key!r} is missing from the archive")
    extra = set(arrays) - {"labels", "speakers", "lengths", *(f"features_{m}" for m in sizes)}
    if extra:
        raise DataError(f"{source}: fields {sorted(extra)} are in the archive but not in "
                        f"'meta.feature_sizes'")
    lengths = arrays["lengths"]
    if lengths.ndim != 1 or lengths.shape[0] != len(ids) or not np.issubdtype(lengths.dtype, np.integer):
        raise DataError(f"{source}: field 'lengths' must be ({len(ids)},) integers, one per "
                        f"dialogue, got {lengths.dtype} {lengths.shape}")
    if (lengths < 0).any():
        raise DataError(f"{source}: field 'lengths' holds a negative length")
    total = int(lengths.sum())
    for key in ("labels", "speakers"):
        a = arrays[key]
        if a.shape != (total,) or not np.issubdtype(a.dtype, np.integer):
            raise DataError(f"{source}: field {key!r} must be ({total},) integers (the sum of "
                            f"'lengths'), got {a.dtype} {a.shape}")
    for m in sizes:
        x = arrays[f"features_{m}"]
        if x.ndim != 2 or x.shape[0] != total or x.dtype != np.float32:
            raise DataError(f"{source}: field 'features_{m}' must be ({total}, {sizes[m]}) float32, "
                            f"got {x.dtype} {x.shape}")
    texts = meta.get("texts")
    if texts is not None and len(texts) != len(ids):
        raise DataError(f"{source}: field 'meta.texts' has {len(texts)} entries, there are "
                        f"{len(ids)} dialogues")

    ends = np.cumsum(lengths)
    starts = ends - lengths
    dialogues: dict[str, Dialogue] = {}
    for i, did in enumerate(ids):
        a, b = int(starts[i]), int(ends[i])
        d_texts = None if texts is None else texts[i]
        if d_texts is not None and not (isinstance(d_texts, list)
                                        and all(isinstance(s, str) for s in d_texts)):
            raise DataError(f"{source}: dialogue {did!r}: field 'meta.texts' must be null or a "
                            f"list of strings")
        dialogues[did] = Dialogue(
            did, arrays["speakers"][a:b].astype(np.int64, copy=False),
            arrays["labels"][a:b].astype(np.int64, copy=False),
            {m: arrays[f"features_{m}"][a:b] for m in sizes}, d_texts)
    splits = {str(s): [str(i) for i in v] for s, v in meta["splits"].items()}
    info = meta.get("feature_info") or {}
    if not isinstance(info, dict):
        raise DataError(f"{source}: field 'meta.feature_info' must be a JSON object, got {type(info).__name__}")
    if "validation" in meta:
        record = validation.check(meta["validation"], f"{source}: field 'meta.validation'")
    else:  # a file from before the record: only an empty valid split says what it was
        record = validation.record("unknown" if splits.get("valid") else "none")
    corpus = Corpus(meta["name"], [str(c) for c in meta["class_names"]],
                    [str(s) for s in meta["speaker_names"]], {m: int(v) for m, v in sizes.items()},
                    dialogues, splits, source, info, record)
    return corpus.validate()
