"""Audio features for utterance tables: one audio file per utterance, openSMILE functionals.

The features come from audEERING's ``opensmile`` package (``pip install 'safsd-glnet[audio]'``)
at the Functionals level, one vector per utterance; nothing here computes a feature by hand.
Two standard sets:

=========== =================== ====== ===================================================
name        openSMILE config    size   what it is
=========== =================== ====== ===================================================
``egemaps`` eGeMAPSv02          88     the extended Geneva Minimalistic Acoustic Parameter
                                       Set: pitch, jitter, shimmer, loudness, formants,
                                       spectral slopes, ... and their statistics
``compare`` ComParE_2016        6373   the INTERSPEECH 2016 Computational Paralinguistics
                                       Challenge set: 65 low-level descriptors x many
                                       functionals
=========== =================== ====== ===================================================

Every file is read with ``soundfile`` (WAV, FLAC, OGG/Vorbis, MP3 and the other libsndfile
formats; a video clip must be converted first, e.g. ``ffmpeg -i clip.mp4 -ac 1 clip.wav``),
mixed to mono as the mean of its channels (``audresample.remix``) and resampled to
:data:`SAMPLE_RATE` = 16 kHz (``audresample.resample``, the resampler opensmile itself uses).
16 kHz keeps the 0-8 kHz band both sets analyse and is the rate of most speech corpora, so
files at 16 kHz pass unchanged and a 44.1 / 48 kHz recording gives nearly the same vector as
its 16 kHz version.

Which file belongs to which utterance (:func:`audio_paths`):

* a **column** of the table holding a path per row (``column="wav"``), or
* a **pattern** with placeholders (``pattern="{dialogue}/{position}.wav"``):

  ================= ===============================================================
  ``{dialogue}``    the kit's dialogue id (``Ses01F_impro01``; MELD: ``train_12``)
  ``{dialogue_raw}`` the id without the ``<split>_`` prefix the MELD reader adds
                    (``train_12`` -> ``12``); other ids unchanged
  ``{split}``       ``train``, ``valid`` or ``test``
  ``{position}``    the utterance's 0-based rank in its dialogue (the kit's position)
  ``{order}``       the order value as written in the table (MELD ``Utterance_ID``,
                    which may have gaps; IEMOCAP ``utterance_index``)
  ``{speaker}``     the speaker as written in the table
  ================= ===============================================================

  Python format specs work (``{position:03d}`` -> ``007``). MELD audio extracted from the
  clips as ``dia{Dialogue_ID}_utt{Utterance_ID}.wav`` in one folder per split is
  ``pattern="{split}/dia{dialogue_raw}_utt{order}.wav"``.

Relative paths are read from ``audio_dir`` when given, else from the folder of the table file
the utterance came from (the *audio folder*). A path that leaves the audio folder (an absolute
path, or ``..`` climbing out of it, whether written in the column or made by a pattern's
placeholders) is refused unless ``allow_any_path`` (``--audio-any-path``): a table from
elsewhere could otherwise make the kit read ``../../etc/passwd`` or any other file. The check
is on the path as written (``os.path.normpath``); links inside the folder are the user's own.
Two utterances may not share a file.

Checks, each a one-line :class:`~safsd_glnet.data.corpus.DataError` naming the file, the
dialogue and the utterance position: missing file; not readable as audio; longer than
``max_seconds`` (:data:`MAX_SECONDS` = 300 s: a whole recording where an utterance was meant,
and a bound on memory); shorter than ``min_seconds`` (:data:`MIN_SECONDS` = 0.1 s: below
60 ms, the longest analysis window of eGeMAPS, opensmile returns NaN for every feature);
non-finite samples (NaN or inf, which a float WAV can hold); float samples beyond full scale
by more than :data:`MAX_ABS_SAMPLE` (1.01: a float file means +-1.0 as full scale, and values
near 3e38 are not sound); not a regular file (a pipe or ``/dev/zero`` would never end);
silent, i.e. the RMS of the 16 kHz mono signal below ``min_rms_db`` (:data:`MIN_RMS_DB` =
-60 dB relative to digital full scale 1.0; all-zero files are -inf; conversational speech
sits around -20 to -35 dB); NaN or inf in the features.

Cache: extraction is the slow part, so vectors are kept in one plain ``.npz`` per table and
feature set under ``cache_dir`` (no pickle; written atomically, also when a run stops at a
bad file, so the work done so far is kept). Its key is the feature set, the kit's version of
the extraction settings (:data:`EXTRACTION_VERSION`, sample rate, mixing) and the opensmile
version; inside, each vector is found by the sha256 of its file's bytes. A second run hashes
the files and extracts nothing; an edited or added file is extracted alone; renaming or
moving files costs nothing.

Shape letters: n utterances in a dialogue, d feature size (88 or 6373).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ..config import MODALITIES
from ..data.safe.npz import read_npz
from ..data.corpus import Corpus, DataError, Dialogue
from ..data.tables import Table, column_values
from ..data.safe.foreign_files import regular_file

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # Hz, every file is resampled to this before extraction
MIN_SECONDS = 0.1
MAX_SECONDS = 300.0
MIN_RMS_DB = -60.0  # dB re full scale 1.0
MAX_ABS_SAMPLE = 1.01  # full scale is 1.0; 1% of tolerance for float files rounded near it
EXTRACTION_VERSION = 1  # bump when reading / mixing / resampling changes what reaches opensmile
CACHE_FORMAT = 1  # bump when the cache file layout changes
DEFAULT_CACHE_DIR = ".cache/safsd-glnet"
PLACEHOLDERS = ("dialogue", "dialogue_raw", "split", "position", "order", "speaker")


@dataclass(frozen=True)
class FeatureSet:
    """One openSMILE feature set at the Functionals level."""

    name: str  # the kit's name
    config: str  # the opensmile.FeatureSet member
    size: int  # features per utterance


FEATURE_SETS = {
    "egemaps": FeatureSet("egemaps", "eGeMAPSv02", 88),
    "compare": FeatureSet("compare", "ComParE_2016", 6373),
}

_SMILES: dict[str, object] = {}  # feature set name -> opensmile.Smile, per process


def feature_set(name: str) -> FeatureSet:
    """The :class:`FeatureSet` called ``name`` (``egemaps`` or ``compare``)."""
    fs = FEATURE_SETS.get(str(name).lower())
    if fs is None:
        raise ValueError(f"audio feature set {name!r}: expected one of {sorted(FEATURE_SETS)}")
    return fs


def _opensmile():
    try:
        import opensmile
    except ImportError:
        raise ImportError("audio features need the opensmile package "
                          "(pip install 'safsd-glnet[audio]')") from None
    return opensmile


def _audio_io():
    """(audresample, soundfile), which come with opensmile."""
    try:
        import audresample
        import soundfile
    except ImportError as e:
        raise ImportError(f"audio features need {e.name or 'audresample and soundfile'} "
                          f"(pip install 'safsd-glnet[audio]')") from None
    return audresample, soundfile


def _smile(fs: FeatureSet):
    """The opensmile extractor of ``fs`` (built once per process: it parses a config tree)."""
    if fs.name not in _SMILES:
        opensmile = _opensmile()
        _SMILES[fs.name] = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, fs.config),
                                           feature_level=opensmile.FeatureLevel.Functionals)
    return _SMILES[fs.name]


# --------------------------------------------------------------------------------------------
# Which file belongs to which utterance

def _where(path: Path | str, dialogue: str | None, position: int | None) -> str:
    """``"<file>: dialogue 'd1', utterance 2"``, the start of every per-file message."""
    return f"{path}" if dialogue is None else f"{path}: dialogue {dialogue!r}, utterance {position}"


def _check_pattern(pattern: str) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
    except ValueError as e:
        raise DataError(f"audio pattern {pattern!r}: {e}") from None
    for f in fields:
        if f not in PLACEHOLDERS:  # also refuses {dialogue.attr} / {x[0]} look-ups
            raise DataError(f"audio pattern {pattern!r}: unknown placeholder {{{f}}} "
                            f"(placeholders: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
    if not fields:
        raise DataError(f"audio pattern {pattern!r} has no placeholder, so every utterance would "
                        f"get the same file (use e.g. {{dialogue}}/{{position}}.wav)")


def audio_paths(table: Table, *, column: str | None = None, pattern: str | None = None,
                audio_dir: str | os.PathLike | None = None, fmt: str | None = None, delimiter: str | None = None,
                encoding: str | None = None, allow_any_path: bool = False) -> dict[str, list[Path]]:
    """Dialogue id -> the audio file of each utterance, in position order.

    Exactly one of ``column`` (a table column holding a path per row; ``fmt`` is the table's
    format as given to ``read_table``, by default from the suffix) and ``pattern`` (see the
    module notes for the placeholders). Relative paths are taken from ``audio_dir``, else from
    the folder of the table file the dialogue came from; a path outside that folder is an error
    unless ``allow_any_path``. Files are not opened here.
    """
    if (column is None) == (pattern is None):
        raise ValueError("audio_paths: give exactly one of column= and pattern=")
    values = column_values(table, column, fmt, delimiter=delimiter, encoding=encoding) if column is not None else None
    if pattern is not None:
        _check_pattern(pattern)
    base = Path(audio_dir) if audio_dir is not None else None
    out: dict[str, list[Path]] = {}
    seen: dict[Path, tuple[str, int]] = {}
    for d in table.dialogues:
        folder = base if base is not None else Path(d.source).parent
        paths = []
        for pos in range(len(d)):
            if values is not None:
                name = values.get((d.source, d.rows[pos]), "")
                if not name:
                    raise DataError(f"{_where(d.source, d.id, pos)} (row {d.rows[pos]}): column "
                                    f"{column!r} (audio file) is empty")
            else:
                raw_id = d.id[len(d.split) + 1:] if d.id.startswith(f"{d.split}_") else d.id
                try:
                    name = pattern.format(dialogue=d.id, dialogue_raw=raw_id, split=d.split, position=pos,
                                          order=d.orders[pos], speaker=d.speaker_labels[pos])
                except (ValueError, TypeError) as e:  # e.g. {speaker:03d}
                    raise DataError(f"audio pattern {pattern!r}, dialogue {d.id!r}, utterance {pos}: {e}") from None
            path = Path(name)
            if not path.is_absolute():
                path = folder / path
            if not allow_any_path and not _inside(path, folder):
                raise DataError(f"{_where(d.source, d.id, pos)}: the audio path {name[:200]!r} leads outside the "
                                f"audio folder {folder}; pass --audio-any-path (allow_any_path=True) if the table "
                                f"is yours and means it")
            key = Path(os.path.normpath(path))
            if key in seen:
                other = seen[key]
                raise DataError(f"{path}: the audio file of dialogue {d.id!r}, utterance {pos} is also "
                                f"that of dialogue {other[0]!r}, utterance {other[1]}; each utterance "
                                f"needs its own file")
            seen[key] = (d.id, pos)
            paths.append(path)
        out[d.id] = paths
    return out


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path``, as written, stays in ``folder`` (``..`` resolved lexically, links not)."""
    base = os.path.normpath(os.path.abspath(folder))
    target = os.path.normpath(os.path.abspath(path))
    return os.path.commonpath([base, target]) == base


# --------------------------------------------------------------------------------------------
# One file

def file_sha256(path: Path, dialogue: str, position: int) -> str:
    """sha256 of the file's bytes; a missing file, a folder, a pipe or a device (``/dev/zero``
    would never end) is an error naming the utterance, before anything is opened."""
    regular_file(path, "audio file", where=_where(path, dialogue, position))
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except FileNotFoundError:
        raise DataError(f"{_where(path, dialogue, position)}: audio file not found") from None
    except IsADirectoryError:
        raise DataError(f"{_where(path, dialogue, position)}: is a folder, expected an audio file") from None
    except OSError as e:
        raise DataError(f"{_where(path, dialogue, position)}: cannot read the audio file ({e.strerror})") from None
    return h.hexdigest()


def load_signal(path: str | os.PathLike, dialogue: str | None = None, position: int | None = None, *,
                max_seconds: float = MAX_SECONDS, max_abs: float = MAX_ABS_SAMPLE) -> np.ndarray:
    """(1, samples) float32 mono signal at :data:`SAMPLE_RATE`: channels averaged, resampled.

    Reads at most ``max_seconds`` of audio, so an hour-long file costs no more memory than
    the limit; a longer one is an error. Every block read must be finite and within
    ``max_abs`` of zero (soundfile scales integer formats to [-1, 1); a float file may hold
    anything, and NaN or 3e38 are not sound).
    """
    audresample, sf = _audio_io()
    where = _where(path, dialogue, position)
    regular_file(path, "audio file", where=where)
    try:
        with sf.SoundFile(str(path)) as f:
            rate, channels = int(f.samplerate), int(f.channels)
            if rate <= 0 or channels <= 0:
                raise DataError(f"{where}: not a readable audio file (sample rate {rate}, {channels} channels)")
            limit = int(max_seconds * rate) + 1
            # Read in blocks rather than trusting the header's length, and stop at the duration
            # limit or at the sample budget (max_seconds of 48 kHz stereo), whichever comes first.
            budget = int(max_seconds * 96_000)
            blocks, frames = [], 0
            while frames < limit:
                block = f.read(frames=min(rate * 10, limit - frames), dtype="float32", always_2d=True)
                if not len(block):
                    break
                _check_samples(block, where, max_abs)
                blocks.append(block)
                frames += len(block)
                if frames * channels > budget:
                    raise DataError(f"{where}: more than {budget} samples to decode ({channels} channels at "
                                    f"{rate} Hz); one utterance of at most {max_seconds:g} s is expected")
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        reason = getattr(e, "error_string", "") or str(e)
        reason = " ".join(reason.split()).rstrip(".") or type(e).__name__
        raise DataError(f"{where}: not a readable audio file: {reason} (soundfile reads WAV, FLAC, OGG, "
                        f"MP3 and the other libsndfile formats)") from None
    if frames >= limit:
        raise DataError(f"{where}: longer than {max_seconds:g} s (max_seconds); one file per utterance is expected")
    x = np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)  # (frames, channels)
    mono = audresample.remix(np.ascontiguousarray(x.T), mixdown=True)  # mean of the channels
    if rate != SAMPLE_RATE and mono.shape[1]:
        mono = audresample.resample(mono, rate, SAMPLE_RATE)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _check_samples(block: np.ndarray, where: str, max_abs: float) -> None:
    """Refuse NaN / inf samples and samples beyond full scale (see :func:`load_signal`)."""
    finite = np.isfinite(block)
    if not finite.all():
        raise DataError(f"{where}: holds {int((~finite).sum())} non-finite samples (NaN or inf) in its first "
                        f"block of {block.size}; not usable audio")
    peak = float(np.abs(block).max(initial=0.0))
    if peak > max_abs:
        raise DataError(f"{where}: samples reach {peak:.3g}, beyond full scale (+-1.0, with a tolerance up to "
                        f"{max_abs:g}); a float file holding such values is not sound: normalise it or write it "
                        f"as 16-bit PCM")


def rms_db(signal: np.ndarray) -> float:
    """RMS level in dB relative to full scale 1.0; -inf for an all-zero (or empty) signal."""
    x = np.asarray(signal, dtype=np.float64)
    rms = math.sqrt(float(np.mean(x * x))) if x.size else 0.0
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def extract_file(path: str | os.PathLike, feature_set_name: str = "egemaps", dialogue: str | None = None,
                 position: int | None = None, *, min_seconds: float = MIN_SECONDS, min_rms_db: float = MIN_RMS_DB,
                 max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """(d,) float32 openSMILE functionals of one file, after the checks of the module notes."""
    fs = feature_set(feature_set_name)
    where = _where(path, dialogue, position)
    x = load_signal(path, dialogue, position, max_seconds=max_seconds)
    seconds = x.shape[1] / SAMPLE_RATE
    if seconds < min_seconds:
        raise DataError(f"{where}: {seconds:.3f} s long, shorter than the {min_seconds:g} s minimum "
                        f"(min_seconds; opensmile needs at least 0.06 s)")
    level = rms_db(x)
    if level < min_rms_db:
        what = "all zero" if level == -math.inf else f"RMS {level:.1f} dB"
        raise DataError(f"{where}: silent ({what}, below the {min_rms_db:g} dB threshold, min_rms_db)")
    frame = _smile(fs).process_signal(x, SAMPLE_RATE)
    y = frame.to_numpy(dtype=np.float64).reshape(-1)
    if y.shape != (fs.size,):
        raise RuntimeError(f"opensmile {fs.config} gave {y.shape} features for {path}, expected {fs.size}")
    bad = ~np.isfinite(y) | (np.abs(y) > np.finfo(np.float32).max)
    if bad.any():
        names = list(frame.columns)
        first = int(np.argmax(bad))
        raise DataError(f"{where}: opensmile returned NaN or inf in {int(bad.sum())} feature(s), first "
                        f"{names[first] if first < len(names) else first!r}")
    return y.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Cache

def _settings(fs: FeatureSet) -> dict:
    try:
        from importlib.metadata import version

        smile_version = version("opensmile")
    except Exception:  # not installed: the key is never used for extraction then
        smile_version = "unknown"
    return {"format": CACHE_FORMAT, "extraction": EXTRACTION_VERSION, "feature_set": fs.config,
            "level": "Functionals", "sample_rate": SAMPLE_RATE, "mixdown": "mean", "opensmile": smile_version}


def audio_cache_path(table: Table, feature_set_name: str = "egemaps",
                     cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR) -> Path:
    """Where :func:`build_audio_features` keeps the vectors of ``table`` for this feature set."""
    fs = feature_set(feature_set_name)
    key = hashlib.sha256(json.dumps(_settings(fs), sort_keys=True).encode()).hexdigest()
    table_slug = re.sub(r"[^A-Za-z0-9]+", "-", table.name).strip("-") or "table"
    return Path(cache_dir) / f"audio-{table_slug}-{fs.name}-{key[:16]}.npz"


def _load_cache(path: Path, size: int) -> dict[str, np.ndarray]:
    """File sha256 -> (d,) vector; empty when the file is absent, unreadable or not ours."""
    if not path.is_file():
        return {}
    try:
        z = read_npz(path, "an audio-feature cache", kinds="biufU")  # bounded, as every file the kit reads
        shas = [str(s) for s in z["sha256"]]
        x = np.asarray(z["features"], dtype=np.float32)
    except Exception as e:  # a truncated or foreign file must not stop the run: extract again
        log.warning("ignoring unreadable audio-feature cache %s (%s); extracting again", path, e)
        return {}
    if x.ndim != 2 or x.shape != (len(shas), size) or not np.isfinite(x).all():
        log.warning("audio-feature cache %s has the wrong shape; extracting again", path)
        return {}
    return dict(zip(shas, x))


def _save_cache(path: Path, vectors: Mapping[str, np.ndarray], fs: FeatureSet) -> None:
    """Write atomically (temporary file + rename): a stopped run leaves the old file or the new."""
    from ..data.atomic_files import atomic_path

    shas = sorted(vectors)
    x = np.stack([vectors[s] for s in shas]) if shas else np.zeros((0, fs.size), np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, sha256=np.array(shas, dtype="U64"), features=x.astype(np.float32),
                     settings=np.array(json.dumps(_settings(fs), sort_keys=True)))


# --------------------------------------------------------------------------------------------
# Table -> features -> corpus

def build_audio_features(table: Table, feature_set_name: str = "egemaps", *, column: str | None = None,
                         pattern: str | None = None, audio_dir: str | os.PathLike | None = None,
                         fmt: str | None = None, delimiter: str | None = None, encoding: str | None = None,
                         cache_dir: str | os.PathLike | None = DEFAULT_CACHE_DIR,
                         progress: bool = True, min_seconds: float = MIN_SECONDS,
                         min_rms_db: float = MIN_RMS_DB, max_seconds: float = MAX_SECONDS,
                         allow_any_path: bool = False) -> dict[str, np.ndarray]:
    """Dialogue id -> (n, d) float32 openSMILE functionals, one row per utterance.

    Files are found by ``column`` or ``pattern`` (:func:`audio_paths`; ``allow_any_path`` lets
    them leave the audio folder). Every file is hashed
    first (a missing file fails before any extraction); vectors already in the cache are
    reused; the rest are extracted with :func:`extract_file`. With ``cache_dir=None`` nothing
    is cached. The cache keeps exactly the files of this table (entries of files no longer in
    it are dropped when it is rewritten).
    """
    fs = feature_set(feature_set_name)
    _opensmile(), _audio_io()  # a missing package is reported before any file is read
    paths = audio_paths(table, column=column, pattern=pattern, audio_dir=audio_dir, fmt=fmt, delimiter=delimiter,
                        encoding=encoding, allow_any_path=allow_any_path)
    hashes = {k: [file_sha256(p, k, i) for i, p in enumerate(ps)] for k, ps in paths.items()}
    cache_path = audio_cache_path(table, fs.name, cache_dir) if cache_dir is not None else None
    cached = _load_cache(cache_path, fs.size) if cache_path is not None else {}
    wanted = {h for hs in hashes.values() for h in hs}
    vectors = {h: v for h, v in cached.items() if h in wanted}
    todo = []  # (sha, path, dialogue, position), one per distinct file content
    planned = set(vectors)
    for k, ps in paths.items():
        for i, (p, h) in enumerate(zip(ps, hashes[k])):
            if h not in planned:
                planned.add(h)
                todo.append((h, p, k, i))
    log.info("audio features (%s) of %s: %d files cached, %d to extract", fs.name, table.name,
             len(vectors), len(todo))
    changed = len(vectors) != len(cached)
    try:
        if todo:
            from tqdm.auto import tqdm

            for h, p, k, i in tqdm(todo, desc=f"{fs.name} features", unit="file", disable=not progress):
                vectors[h] = extract_file(p, fs.name, k, i, min_seconds=min_seconds, min_rms_db=min_rms_db,
                                          max_seconds=max_seconds)
                changed = True
    finally:  # also on a bad file or Ctrl-C: keep what was extracted
        if cache_path is not None and changed:
            _save_cache(cache_path, vectors, fs)
    return {k: np.stack([vectors[h] for h in hs]).astype(np.float32) for k, hs in hashes.items()}


def add_audio_modality(corpus: Corpus, features: Mapping[str, np.ndarray], source: str = "audio files") -> Corpus:
    """A copy of ``corpus`` with modality ``"a"`` from :func:`build_audio_features`' output.

    Every dialogue of the corpus must be in ``features`` with one row per utterance (the
    dialogues line up by id, the utterances by position); the rows must be finite and of one
    width. Dialogues of ``features`` that the corpus lacks are ignored. Labels, speakers,
    splits, sentences and the other modalities are kept.
    """
    if "a" in corpus.feature_sizes:
        raise DataError(f"{corpus.source}: corpus {corpus.name!r} already has modality 'a'")
    width = None
    dialogues = {}
    for key, d in corpus.dialogues.items():
        x = features.get(key)
        if x is None:
            raise DataError(f"{source}: no audio features for dialogue {key!r} of {corpus.source} "
                            f"({len(features)} dialogues have them)")
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] != len(d):
            raise DataError(f"{source}: dialogue {key!r} has audio features of shape {x.shape} and "
                            f"{len(d)} utterances in {corpus.source}")
        if width is None:
            width = x.shape[1]
        elif x.shape[1] != width:
            raise DataError(f"{source}: dialogue {key!r} has {x.shape[1]} audio features per utterance, "
                            f"other dialogues {width}")
        if not np.isfinite(x).all():
            row = int(np.argwhere(~np.isfinite(x))[0][0])
            raise DataError(f"{source}: dialogue {key!r}, utterance {row}: audio features hold NaN or inf")
        feats = dict(d.features)
        feats["a"] = x
        dialogues[key] = Dialogue(d.id, d.speakers, d.labels, feats, d.texts)
    if width is None:
        raise DataError(f"{corpus.source}: corpus {corpus.name!r} has no dialogues")
    sizes = dict(corpus.feature_sizes, a=int(width))
    sizes = {m: sizes[m] for m in MODALITIES if m in sizes}
    merged = Corpus(corpus.name, corpus.class_names, corpus.speaker_names, sizes, dialogues,
                    corpus.splits, f"{corpus.source} + {source}", validation=corpus.validation)
    return merged.validate()
