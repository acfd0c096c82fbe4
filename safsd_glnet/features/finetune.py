"""Fine-tuned, context-aware text features: train a transformer encoder as an utterance emotion
classifier on the training split, then encode every utterance of every split with it.

Why. The standard IEMOCAP / MELD text features were made this way: COSMIC fine-tuned
RoBERTa-large as an utterance classifier and kept its hidden states; EmoBERTa showed that
adding past and future utterances with speaker names to the classifier's input helps. The
kit's default text features come from a *frozen* sentence encoder
(:func:`safsd_glnet.features.text.build_text_corpus`); this module makes the fine-tuned kind, with
any Hugging Face model (``roberta-large`` with a network and a GPU, the packaged MiniLM
offline).

The classifier (:class:`UtteranceClassifier`): the encoder, a pooled vector ``h`` (H,) of the
utterance, dropout and one Linear layer, ``logits = W dropout(h) + b`` (C,), trained with
cross-entropy (optionally class-weighted, ``w_c = N / (C n_c)``) by AdamW with linear warm-up
and linear decay. Inputs are built by :mod:`safsd_glnet.features.utterance_inputs` (the utterance with
its speaker; optionally a window of past / future utterances as a second segment).

* ``pooling``: ``"mean"`` over the utterance's own tokens (segment A, speaker name included,
  special and context tokens excluded) or ``"cls"`` (the first token's state).
* ``layer``: which hidden states the *features* pool: ``"last"``, ``"-k"`` (the k-th from
  the end; ``"-1"`` is the last), or ``"meanK"`` (the mean of the last K layers' states,
  e.g. ``"mean4"``). The classifier head always reads the last layer (with ``layer="last"``
  the features are exactly the head's input), so every trained layer receives gradient.
* ``freeze_below``: None trains everything; k trains only the last k transformer layers
  (embeddings and lower layers frozen; 0 trains the head alone): fewer, gentler updates.

Selection. After every epoch the classifier is scored on the **validation** split; the epoch
with the best validation weighted F1 is kept (its weights, not the last ones; ties go to the
earlier epoch). The test split is never read for a choice: its labels are only scored, for
a report labelled as such, after everything is chosen. :func:`select_settings` chooses among
several settings the same way.

Cross-fitting (``folds = K >= 2``). An encoder that saw an utterance's label encodes it far
more separably than an unseen test utterance (a trial on IEMOCAP: 73 training w-F1 against
53-58 on validation / test), so the conversation model trained on those features learns from
a distribution it never meets at test time. With K folds the training dialogues are dealt
into K folds (seeded); fold k's training utterances are encoded by an encoder fine-tuned on
the other K-1 folds, never on their own dialogue. Validation and test utterances (and new
sentences later) are encoded, with ``heldout="full"`` (default), by one more encoder
fine-tuned on all training dialogues: each of their vectors then comes from one encoder, as
the training vectors do, and from the best encoder available. ``heldout="fold-mean"``
instead averages the K fold encoders' vectors (one training fewer, K encodings of valid and
test; averaged vectors are smoother than single ones, a small shift of their own). The fold
of every training dialogue and, per encoder, the dialogues it trained on and encoded are
recorded in ``finetune.json``.

Outputs, all under one run folder (default ``<cache_dir>/finetune-<table>-<encoder>-<key>``):

* per encoder a folder (``encoder/``, or ``fold0/`` .. ``fold{K-1}/``) with the weights and the
  tokenizer (``save_pretrained``), the head (``classifier_head.safetensors``),
  ``finetune_encoder.json`` (settings, labels, the dialogues it trained on and encoded, the
  per-epoch scores, the chosen epoch, timing) and ``encoded.npz`` (its vectors);
* ``finetune.json``: the settings, every encoder's record, the fold assignment, the
  classifier's scores per split and the timing. It is written last: a run folder without it
  is unfinished, and a new call with the same settings continues it, keeping every encoder
  that already finished;
* ``<job>.progress.pt`` while a job trains: its state after its last finished epoch, so an
  interrupted job continues from there (:mod:`.finetune_resume`); removed when the job ends.

Cache. The run folder is keyed (:func:`cache_key`) by the encoder's identity, every field of
:class:`FinetuneConfig`, the precision actually used, and the data: the sentences, labels,
speakers and splits. A finished folder with the same key is read instead of training again;
any change gives another key. Device and batch sizes for encoding are not in the key.

Precision. bf16 autocast where :func:`safsd_glnet.model.precision.bf16_supported` (CUDA, CPUs with
AMX / AVX512-BF16); weights and the optimiser stay fp32. The precision used is recorded and
:func:`encode_dialogues` encodes new sentences with it.

Shape letters: N utterances, B batch, L tokens, H encoder width, C classes, K folds.

Long (about 1,000 lines): the classifier's training, cross-fitting, the cache and the encoders'
record are one job; a split (the cross-fitting grid, the cache) waits for the edits made beside the layout change.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import random
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..data.safe.npz import read_npz
from ..data.corpus import Corpus, DataError
from ..data.tables import Table
from .text import (DEFAULT_CACHE_DIR, MINILM_ALIASES, encode_texts, resolve_device, resolve_encoder,
                       table_to_corpus)
from ..data.atomic_files import read_json, write_json, write_text
from ..model.metrics import compute_metrics
from ..model.precision import PRECISIONS, autocast, resolve_precision
from . import finetune_resume as resume
from .layers import LAYER_HELP, check_layer, layer_indices
from .utterance_inputs import Example, SpecialLayout, build_examples, special_layout

log = logging.getLogger(__name__)

FORMAT = "safsd-glnet-finetune"
VERSION = 1  # bump when the run folder's layout or the meaning of its key changes
POOLINGS = ("mean", "cls")
HELDOUT = ("full", "fold-mean")
RUN_INFO = "finetune.json"
ENCODER_INFO = "finetune_encoder.json"
HEAD_FILE = "classifier_head.safetensors"
ENCODED_FILE = "encoded.npz"
UNFINISHED = ".unfinished"  # marks a run folder this module is filling; holds the key
SELECTION = ("epoch chosen by the classifier's validation weighted F1 (ties: earlier epoch); "
             "the test split is never read for a choice")
TEST_LABEL = "report only: scored after every choice was made, never used for one"


# --------------------------------------------------------------------------------------------
# Settings

@dataclass(frozen=True)
class FinetuneConfig:
    """Every setting that changes the fine-tuned features (all of them are in the cache key)."""

    encoder: str = "minilm"  # Hugging Face model name or folder; "minilm" = packaged all-MiniLM-L6-v2
    context_past: int = 0  # previous utterances in the second segment
    context_future: int = 0  # next utterances in the second segment
    speakers: bool = True  # "Speaker: text" (the table's speaker names) instead of the text alone
    max_length: int = 128  # tokens per input, special tokens included (see utterance_inputs)
    lr: float = 2e-5  # AdamW peak learning rate
    epochs: int = 3  # the best of these epochs on validation is kept
    batch_size: int = 32  # utterances per training step
    warmup: float = 0.1  # share of all steps with a linear warm-up from 0 to lr, then linear decay to 0
    weight_decay: float = 0.01  # AdamW decay, not applied to biases and LayerNorm weights
    grad_clip: float | None = 1.0  # gradient norm clip (None: off)
    dropout: float = 0.1  # before the classifier head
    class_weights: bool = False  # cross-entropy weights N / (C n_c) from the training labels
    pooling: str = "mean"  # "mean" over the utterance's tokens, or "cls"
    layer: str = "last"  # feature layer(s): "last", "-k", "meanK"
    freeze_below: int | None = None  # None: train all; k: train only the last k layers (0: head only)
    folds: int = 1  # 1: no cross-fitting; K >= 2: cross-fitted training features
    heldout: str = "full"  # with folds: valid/test/new sentences by an encoder on all train ("full")
    #                        or the mean of the fold encoders' vectors ("fold-mean")
    seed: int = 0  # head initialisation, dropout, batch order and the fold assignment
    precision: str = "auto"  # "auto" (bf16 where the hardware has it), "fp32", "bf16"

    def check(self) -> "FinetuneConfig":
        """Raise ValueError naming the field for an impossible value; return self."""
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"FinetuneConfig.{name}={getattr(self, name)!r}: {why}")
        for name in ("context_past", "context_future"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise bad(name, "must be an integer >= 0")
        for name in ("max_length", "epochs", "batch_size", "folds"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise bad(name, "must be an integer >= 1")
        if not self.lr > 0:
            raise bad("lr", "must be > 0")
        if not 0 <= self.warmup < 1:
            raise bad("warmup", "must lie in [0, 1)")
        if self.weight_decay < 0:
            raise bad("weight_decay", "must be >= 0")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise bad("grad_clip", "must be > 0 or None")
        if not 0 <= self.dropout < 1:
            raise bad("dropout", "must lie in [0, 1)")
        if self.pooling not in POOLINGS:
            raise bad("pooling", f"expected one of {POOLINGS}")
        try:
            check_layer(self.layer)
        except ValueError:
            raise bad("layer", LAYER_HELP) from None
        if self.freeze_below is not None and (not isinstance(self.freeze_below, int) or self.freeze_below < 0):
            raise bad("freeze_below", "must be None or an integer >= 0")
        if self.folds == 1 and self.heldout != "full":
            raise bad("heldout", "applies to cross-fitting (folds >= 2) only; keep 'full'")
        if self.heldout not in HELDOUT:
            raise bad("heldout", f"expected one of {HELDOUT}")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"expected one of {PRECISIONS}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FinetuneConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"FinetuneConfig: unknown setting(s) {unknown} (known: {sorted(names)})")
        return cls(**dict(d)).check()

    def replace(self, **changes: Any) -> "FinetuneConfig":
        return dataclasses.replace(self, **changes).check()


def parse_setting(name: str, text: str) -> Any:
    """A :class:`FinetuneConfig` value from text, typed by the field (``none`` -> None where the
    field allows it): ``parse_setting("lr", "1e-5")`` -> 1e-05."""
    fields = {f.name: f for f in dataclasses.fields(FinetuneConfig)}
    if name not in fields:
        raise ValueError(f"unknown setting {name!r} (known: {', '.join(fields)})")
    kind = str(fields[name].type)  # the annotation as written: "int", "float | None", ...
    text = text.strip()
    if "None" in kind and text.lower() in ("none", "null"):
        return None
    base = kind.split("|")[0].strip()
    try:
        if base == "bool":
            if text.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
                return text.lower() in ("true", "yes", "on", "1")
            raise ValueError(text)
        if base == "int":
            return int(text)
        if base == "float":
            return float(text)
    except ValueError:
        raise ValueError(f"setting {name}={text!r}: expected {kind}") from None
    return text


# --------------------------------------------------------------------------------------------
# Data: dialogues as (speaker, text) lists, the cache key, folds

def table_dialogues(table: Table) -> list[list[tuple[str, str]]]:
    """Every dialogue of ``table`` as its (speaker name as written, sentence) pairs."""
    return [list(zip(d.speaker_labels, d.texts)) for d in table.dialogues]


def data_sha256(table: Table) -> str:
    """sha256 of what the features depend on or are chosen with: per dialogue its id, split,
    speaker names and indices, labels and sentences; and the class names."""
    payload = {"classes": list(table.class_names),
               "dialogues": [[d.id, d.split, list(d.speaker_labels), list(d.speakers), list(d.labels),
                              list(d.texts)] for d in table.dialogues]}
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode("utf-8")).hexdigest()


def cache_key(table: Table, config: FinetuneConfig, precision: str, encoder_identity: str | None = None) -> str:
    """sha256 over the format version, the encoder's identity, every setting, the precision
    used and :func:`data_sha256`. ``encoder_identity`` defaults to ``resolve_encoder``'s."""
    identity = encoder_identity if encoder_identity is not None else resolve_encoder(config.encoder).identity
    return hashlib.sha256(json.dumps({
        "format": VERSION, "encoder": identity, "settings": config.to_dict(), "precision": precision,
        "data": data_sha256(table),
    }, sort_keys=True).encode()).hexdigest()


def fold_assignment(dialogue_ids: Sequence[str], folds: int, seed: int) -> dict[str, int]:
    """Deal the dialogues into ``folds`` folds of near-equal dialogue counts, in a seeded order."""
    if folds > len(dialogue_ids):
        raise DataError(f"folds={folds}: only {len(dialogue_ids)} training dialogues to deal out")
    order = np.random.default_rng(seed).permutation(len(dialogue_ids))
    return {dialogue_ids[j]: int(rank % folds) for rank, j in enumerate(order)}


def content_fingerprint(folder: str | os.PathLike) -> str:
    """sha256 over (relative path, sha256 of the bytes) of every file: survives a copy, not an edit."""
    folder = Path(folder)
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            digest = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            h.update(f"{p.relative_to(folder).as_posix()}\0{digest.hexdigest()}\n".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# The classifier

def _torch():
    import torch
    return torch


def _seed(seed: int) -> None:
    torch = _torch()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _layer_list(encoder: Any):
    """The encoder's list of transformer layers (the ModuleList as long as num_hidden_layers)."""
    torch = _torch()
    n = encoder.config.num_hidden_layers
    for name, module in encoder.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n and name.split(".")[-1] in ("layer", "layers"):
            return module
    raise ValueError(f"{encoder.config.name_or_path}: cannot find its {n} transformer layers to freeze")


def _build_classifier(encoder: Any, num_classes: int, dropout: float, pooling: str, layer: str):
    torch = _torch()

    class UtteranceClassifier(torch.nn.Module):
        """Encoder + pooled utterance vector + dropout + Linear. ``forward`` returns the logits
        (B, C) from the last layer's pooled vector and the features (B, H) from ``layer``."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.dropout = torch.nn.Dropout(dropout)
            self.head = torch.nn.Linear(encoder.config.hidden_size, num_classes)
            self.pooling = pooling
            self.layers = layer_indices(layer, encoder.config.num_hidden_layers)

        def pool(self, h, span):
            """h (B, L, H), span (B, L) 1 on the utterance's tokens -> (B, H) in fp32."""
            h = h.float()
            if self.pooling == "cls":
                return h[:, 0]
            return (h * span.unsqueeze(-1)).sum(1) / span.sum(1, keepdim=True).clamp(min=1.0)

        def forward(self, batch, features: bool = False):
            hidden_states = features and self.layers != [encoder.config.num_hidden_layers]
            out = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               **({"token_type_ids": batch["token_type_ids"]} if "token_type_ids" in batch else {}),
                               output_hidden_states=hidden_states)
            last = self.pool(out.last_hidden_state, batch["span"])
            logits = self.head(self.dropout(last))
            if not features:
                return logits, None
            if not hidden_states:
                return logits, last
            stacked = torch.stack([out.hidden_states[i] for i in self.layers]).float().mean(0)
            return logits, self.pool(stacked, batch["span"])

    return UtteranceClassifier()


def _collate(examples: Sequence[Example], pad_id: int, uses_types: bool, device) -> dict[str, Any]:
    """Pad a batch: input_ids / attention_mask / token_type_ids (B, L), span (B, L) float."""
    torch = _torch()
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    types = torch.zeros((len(examples), width), dtype=torch.long)
    span = torch.zeros((len(examples), width), dtype=torch.float32)
    for r, e in enumerate(examples):
        n = len(e.ids)
        ids[r, :n] = torch.tensor(e.ids)
        mask[r, :n] = 1
        types[r, :n] = torch.tensor(e.types)
        span[r, e.start:e.end] = 1.0
    batch = {"input_ids": ids, "attention_mask": mask, "span": span}
    if uses_types:
        batch["token_type_ids"] = types
    return {k: v.to(device) for k, v in batch.items()}


def _load_tokenizer(target: str, local: bool):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(target, local_files_only=local)


def _load_model(target: str, local: bool):
    """The fp32 encoder (transformers 5 would otherwise keep the checkpoint's own dtype)."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(target, local_files_only=local, dtype=_torch().float32)


def _check_length(max_length: int, tokenizer: Any, encoder: Any, name: str) -> None:
    limit = min(getattr(encoder.config, "max_position_embeddings", 10**9), getattr(tokenizer, "model_max_length", 10**9))
    if max_length > limit:
        raise ValueError(f"max_length={max_length}: encoder {name} reads at most {limit} tokens")


# --------------------------------------------------------------------------------------------
# Running the classifier

@dataclass
class Tools:
    """What a run needs besides the weights: tokenizer, its special-token layout, the device."""

    tokenizer: Any
    layout: SpecialLayout
    device: Any
    precision: str
    progress: bool = True


def _bar(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def run_classifier(model: Any, examples: Sequence[Example], tools: Tools, batch_size: int = 64,
                   features: bool = True, desc: str = "encoding") -> tuple[np.ndarray, np.ndarray | None]:
    """Eval-mode pass: (N, C) softmax probabilities and (N, H) float32 features (or None).

    Batches hold examples of similar length (sorted, longest first) to waste little on padding;
    the outputs come back in the input order."""
    torch = _torch()
    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i].ids))
    probs = np.zeros((len(examples), model.head.out_features), dtype=np.float32)
    feats = np.zeros((len(examples), model.head.in_features), dtype=np.float32) if features else None
    pad = tools.tokenizer.pad_token_id if tools.tokenizer.pad_token_id is not None else 0
    starts = range(0, len(order), batch_size)
    with torch.no_grad():
        for s in _bar(starts, len(starts), desc, tools.progress):
            idx = order[s:s + batch_size]
            batch = _collate([examples[i] for i in idx], pad, tools.layout.uses_types, tools.device)
            with autocast(tools.device, tools.precision):
                logits, x = model(batch, features=features)
            probs[idx] = torch.softmax(logits.float(), -1).cpu().numpy()
            if features:
                feats[idx] = x.float().cpu().numpy()
    model.train(was_training)
    return probs, feats


def _optimizer(model: Any, cfg: FinetuneConfig, device):
    """AdamW with decay on weight matrices only (biases and LayerNorm weights are 1-D)."""
    torch = _torch()
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2]
    rest = [p for p in trainable if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    fused = {"fused": True} if torch.device(device).type in ("cpu", "cuda") else {}
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, **fused)


def _schedule(optimizer, total: int, warmup: float):
    """Linear warm-up over round(warmup * total) steps, then linear decay to 0 at ``total``."""
    torch = _torch()
    warm = int(round(warmup * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(1, total - warm))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _freeze(model: Any, freeze_below: int | None) -> None:
    """Train everything, or only the last ``freeze_below`` layers and the head. The encoder's
    own pooler (a BERT leftover the classifier never reads) is frozen in every case."""
    for name, p in model.encoder.named_parameters():
        p.requires_grad = not name.startswith("pooler.")
    if freeze_below is None:
        return
    layers = _layer_list(model.encoder)
    if freeze_below > len(layers):
        raise ValueError(f"freeze_below={freeze_below}: the encoder has {len(layers)} layers")
    for p in model.encoder.parameters():
        p.requires_grad = False
    for module in list(layers)[len(layers) - freeze_below:]:
        for p in module.parameters():
            p.requires_grad = True


def fit(model: Any, train: Sequence[Example], train_labels: np.ndarray, valid: Sequence[Example],
        valid_labels: np.ndarray, cfg: FinetuneConfig, tools: Tools, class_names: Sequence[str],
        name: str = "encoder", eval_batch_size: int = 64, progress_file: Path | None = None,
        key: str = "") -> dict[str, Any]:
    """Fine-tune ``model`` in place for ``cfg.epochs`` epochs and load the epoch with the best
    validation weighted F1. Only the training and validation labels are passed in.

    With ``progress_file``, the state after every epoch but the last is saved there, and a saved
    state of run ``key`` found there is loaded first: the job continues after its last finished
    epoch with the same batches and random draws (:mod:`.finetune_resume`).

    Returns ``{"history": [per-epoch record], "chosen_epoch": e, "valid_weighted_f1": ...,
    "seconds": ...}``; a record holds the mean training loss and the running training weighted F1
    (training-mode predictions while the weights move), the validation accuracy / weighted F1 /
    macro F1 / loss, the learning rate at the end and the seconds."""
    torch = _torch()
    started = time.perf_counter()
    num_classes = len(class_names)
    y_train = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    weight = None
    if cfg.class_weights:
        counts = np.bincount(np.asarray(train_labels), minlength=num_classes).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
        weight = torch.as_tensor(w, dtype=torch.float32, device=tools.device)
    _freeze(model, cfg.freeze_below)
    optimizer = _optimizer(model, cfg, tools.device)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    scheduler = _schedule(optimizer, steps_per_epoch * cfg.epochs, cfg.warmup)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    pad = tools.tokenizer.pad_token_id if tools.tokenizer.pad_token_id is not None else 0
    history: list[dict[str, Any]] = []
    best = {"epoch": 0, "valid_weighted_f1": -1.0}
    best_state = None
    first, earlier_seconds = 1, 0.0
    saved = resume.load_progress(progress_file, key) if progress_file is not None else None
    if saved is not None:
        resume.restore(saved, model=model, optimizer=optimizer, scheduler=scheduler, shuffle=shuffle,
                       device=tools.device)
        history, best, best_state = list(saved["history"]), dict(saved["best"]), saved["best_state"]
        first, earlier_seconds = saved["epoch"] + 1, saved["seconds"]
        print(f"{name}: continuing after epoch {saved['epoch']} of {cfg.epochs} ({progress_file.name})", flush=True)
    for epoch in range(first, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(train), generator=shuffle).tolist()
        loss_sum, preds = 0.0, np.zeros(len(train), dtype=np.int64)
        starts = range(0, len(perm), cfg.batch_size)
        for s in _bar(starts, len(starts), f"{name} epoch {epoch}/{cfg.epochs}", tools.progress):
            idx = perm[s:s + cfg.batch_size]
            batch = _collate([train[i] for i in idx], pad, tools.layout.uses_types, tools.device)
            labels = y_train[idx].to(tools.device)
            with autocast(tools.device, tools.precision):
                logits, _ = model(batch)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels, weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach()) * len(idx)
            preds[idx] = logits.argmax(-1).cpu().numpy()
        probs, _ = run_classifier(model, valid, tools, eval_batch_size, features=False, desc=f"{name} validation")
        valid_metrics = compute_metrics(valid_labels, probs.argmax(-1), class_names)
        valid_loss = float(-np.log(np.clip(probs[np.arange(len(valid_labels)), valid_labels], 1e-12, None)).mean())
        record = {"epoch": epoch, "train_loss": loss_sum / len(train),
                  "train_weighted_f1_running": compute_metrics(train_labels, preds, class_names)["weighted_f1"],
                  "valid_loss": valid_loss, "valid_accuracy": valid_metrics["accuracy"],
                  "valid_weighted_f1": valid_metrics["weighted_f1"], "valid_macro_f1": valid_metrics["macro_f1"],
                  "lr_end": float(scheduler.get_last_lr()[0]), "seconds": round(time.perf_counter() - t0, 2)}
        history.append(record)
        # printed, not logged: with --no-progress this line is all a user sees for up to an hour
        print(f"{name} epoch {epoch}/{cfg.epochs}: train loss {record['train_loss']:.4f}, valid w-F1 "
              f"{record['valid_weighted_f1']:.2f} ({record['seconds']:.0f} s)", flush=True)
        if record["valid_weighted_f1"] > best["valid_weighted_f1"]:
            best = {"epoch": epoch, "valid_weighted_f1": record["valid_weighted_f1"]}
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if progress_file is not None and epoch < cfg.epochs:
            resume.save_progress(progress_file, key, epoch, model=model, optimizer=optimizer, scheduler=scheduler,
                                 shuffle=shuffle, device=tools.device, history=history, best=best,
                                 best_state=best_state, seconds=earlier_seconds + time.perf_counter() - started)
    model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "chosen_epoch": best["epoch"], "valid_weighted_f1": best["valid_weighted_f1"],
            "seconds": round(earlier_seconds + time.perf_counter() - started, 2),
            **({"continued_after_epoch": first - 1} if first > 1 else {})}


# --------------------------------------------------------------------------------------------
# Saving and loading one encoder

def save_encoder(model: Any, tokenizer: Any, folder: Path, info: dict[str, Any], weights: bool = True,
                 arrays: Mapping[str, np.ndarray] | None = None) -> None:
    """Write the encoder folder: weights + tokenizer (``save_pretrained``), the head, the info
    JSON and ``arrays`` (into ``encoded.npz``). Everything goes to a temporary folder beside
    ``folder`` that is renamed over it, so a folder is either complete or absent."""
    from safetensors.torch import save_file

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        if arrays is not None:
            with open(tmp / ENCODED_FILE, "wb") as f:
                np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
        if weights:
            model.encoder.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()},
                      str(tmp / HEAD_FILE))
        write_json(tmp / ENCODER_INFO, info)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def load_encoder_folder(folder: str | os.PathLike, device: str = "auto"):
    """(tokenizer, classifier in eval mode, its finetune_encoder.json) from an encoder folder."""
    from safetensors.torch import load_file

    folder = Path(folder)
    info_path = folder / ENCODER_INFO
    if not info_path.is_file() or not (folder / HEAD_FILE).is_file():
        raise FileNotFoundError(f"{folder}: not a fine-tuned encoder folder (no {ENCODER_INFO} or {HEAD_FILE})")
    info = read_json(info_path)
    s = info["settings"]
    tokenizer, encoder = _load_tokenizer(str(folder), True), _load_model(str(folder), True)
    model = _build_classifier(encoder, len(info["class_names"]), s["dropout"], s["pooling"], s["layer"])
    model.head.load_state_dict(load_file(str(folder / HEAD_FILE)))
    return tokenizer, model.to(resolve_device(device)).eval(), info


# --------------------------------------------------------------------------------------------
# A whole run

@dataclass
class FinetuneResult:
    """What :func:`finetune_corpus` returns."""

    corpus: Corpus  # modality "t" from the fine-tuned encoder(s), feature_info filled
    info: dict[str, Any]  # the run's finetune.json
    run_dir: Path
    reused: bool  # True when a finished run with the same key was read instead of trained


@dataclass
class _Job:
    """One encoder of a run: where it goes, what it trains on, what it encodes."""

    name: str
    trained_on: list[str]
    encodes: list[str]
    keep_weights: bool = True
    record: dict[str, Any] = field(default_factory=dict)


def default_run_dir(table: Table, config: FinetuneConfig, key: str,
                    cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR) -> Path:
    slug = lambda s: re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-") or "x"  # noqa: E731
    enc = config.encoder
    enc = "minilm" if enc.lower() in MINILM_ALIASES else Path(enc).name
    return Path(cache_dir) / f"finetune-{slug(table.name)}-{slug(enc)}-{key[:16]}"


def _check_table(table: Table) -> None:
    splits = table.splits
    for s in ("train", "valid"):
        if not splits.get(s):
            raise DataError(f"{table.source}: fine-tuning needs {s!r} dialogues (the epoch is chosen on "
                            f"'valid'); the table has {sorted(splits)}")


def _claim(run_dir: Path, key: str, overwrite: bool) -> dict[str, Any] | None:
    """Prepare ``run_dir`` for the run with ``key``; return its finished finetune.json if it holds one.

    A folder holding another run (another key) is refused unless ``overwrite``; a non-empty
    folder this module did not make is always refused (nothing of a user's is deleted)."""
    info_path, marker = run_dir / RUN_INFO, run_dir / UNFINISHED
    if info_path.is_file():
        info = read_json(info_path)
        if info.get("key") == key:
            return info
        if not overwrite:
            raise ValueError(f"{run_dir}: holds a fine-tuning with other settings or data (key "
                             f"{str(info.get('key'))[:16]}, this one {key[:16]}); choose another run folder "
                             f"or overwrite it")
    elif marker.is_file() and marker.read_text().strip() != key and not overwrite:
        raise ValueError(f"{run_dir}: holds an unfinished fine-tuning with other settings or data; "
                         f"choose another run folder or overwrite it")
    elif run_dir.is_dir() and any(run_dir.iterdir()) and not marker.is_file():
        raise ValueError(f"{run_dir}: exists and is not a fine-tuning run folder; choose an empty or new folder")
    if info_path.is_file() or (marker.is_file() and marker.read_text().strip() != key):
        for p in run_dir.iterdir():  # only what this module writes
            if p.name in (RUN_INFO, UNFINISHED) or re.match(r"^(encoder|fold\d+)(\.progress\.pt)?$", p.name):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(marker, key + "\n")  # atomic: a link planted as the marker is replaced, not followed
    return None


def _jobs(table: Table, cfg: FinetuneConfig, keep_fold_encoders: bool) -> tuple[list[_Job], dict[str, int] | None]:
    train_ids = table.splits["train"]
    held = [i for s in ("valid", "test") for i in table.splits.get(s, [])]
    if cfg.folds == 1:
        return [_Job("encoder", list(train_ids), [d.id for d in table.dialogues])], None
    folds = fold_assignment(train_ids, cfg.folds, cfg.seed)
    jobs = []
    for k in range(cfg.folds):
        own = [i for i in train_ids if folds[i] == k]
        jobs.append(_Job(f"fold{k}", [i for i in train_ids if folds[i] != k],
                         own + (held if cfg.heldout == "fold-mean" else []),
                         keep_weights=keep_fold_encoders or cfg.heldout == "fold-mean"))
    if cfg.heldout == "full":
        jobs.append(_Job("encoder", list(train_ids), held))
    return jobs, folds


def _load_job(folder: Path, key: str, job: _Job, n: int) -> dict[str, np.ndarray] | None:
    """The finished job's vectors (``n`` rows), or None when the folder is absent, unfinished or
    another run's."""
    try:
        info = read_json(folder / ENCODER_INFO)
        if info.get("key") != key or info.get("encodes") != job.encodes:
            return None
        z = read_npz(folder / ENCODED_FILE, "a fine-tuning run's encoded features")
        out = {"features": z["features"].astype(np.float32), "probs": z["probs"].astype(np.float32)}
        if out["features"].shape[0] != n or out["probs"].shape[0] != n or not np.isfinite(out["features"]).all():
            raise ValueError(f"{ENCODED_FILE} does not hold {n} finite rows")
        if job.keep_weights and not (folder / HEAD_FILE).is_file():
            return None
    except (OSError, ValueError, KeyError) as e:
        if folder.exists():
            log.warning("%s: unfinished or unreadable (%s); training it again", folder, e)
        return None
    job.record = info
    return out


def finetune_corpus(table: Table, config: FinetuneConfig = FinetuneConfig(), *,
                    run_dir: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = DEFAULT_CACHE_DIR, device: str = "auto",
                    encode_batch_size: int = 64, progress: bool = True, keep_fold_encoders: bool = True,
                    overwrite: bool = False, score_test: bool = True, name: str | None = None) -> FinetuneResult:
    """Fine-tune ``config.encoder`` on ``table``'s training split and encode every utterance.

    Args:
        table: an utterance table with train and valid splits (test optional).
        config: the settings (:class:`FinetuneConfig`).
        run_dir: folder for the encoders and ``finetune.json``; default a keyed folder under
            ``cache_dir`` (which must then be given). A finished run with the same key there is
            read instead of trained; an unfinished one continues (finished encoders are kept).
        device: "auto" (cuda > mps > cpu) or a torch device name.
        encode_batch_size: utterances per batch when encoding and validating (no effect on results
            beyond float rounding).
        keep_fold_encoders: keep the weights of the fold encoders (needed with
            ``heldout="fold-mean"``; otherwise only for inspection).
        overwrite: replace a run with another key in ``run_dir``.
        score_test: score the classifier on the test split for the report (never for a choice);
            False leaves the test labels unread, for selection studies that read test once at the end.
        name: the corpus name (default the table's).

    Returns:
        :class:`FinetuneResult` with the corpus (``feature_info["t"]`` says how to encode new
        sentences the same way, see :func:`encode_dialogues`).
    """
    cfg = config.check()
    _check_table(table)
    if encode_batch_size < 1:
        raise ValueError(f"encode_batch_size={encode_batch_size}: must be >= 1")
    spec = resolve_encoder(cfg.encoder)
    device = resolve_device(device)
    precision = resolve_precision(cfg.precision, device)
    key = cache_key(table, cfg, precision, spec.identity)
    if run_dir is None:
        if cache_dir is None:
            raise ValueError("finetune_corpus: give run_dir or cache_dir (the encoders are saved there)")
        run_dir = default_run_dir(table, cfg, key, cache_dir)
    run_dir = Path(run_dir).resolve()
    finished = _claim(run_dir, key, overwrite)
    jobs, folds = _jobs(table, cfg, keep_fold_encoders)
    started = time.perf_counter()

    index = {d.id: i for i, d in enumerate(table.dialogues)}
    offsets = np.cumsum([0] + [len(d) for d in table.dialogues])
    rows = lambda ids: np.concatenate([np.arange(offsets[index[i]], offsets[index[i] + 1]) for i in ids])  # noqa: E731
    labels = np.array([y for d in table.dialogues for y in d.labels], dtype=np.int64)

    outputs: dict[str, dict[str, np.ndarray]] = {}
    for job in jobs:
        loaded = _load_job(run_dir / job.name, key, job, len(rows(job.encodes)))
        if loaded is not None:
            outputs[job.name] = loaded
    if finished is not None and len(outputs) != len(jobs):
        raise ValueError(f"{run_dir}: {RUN_INFO} says the run finished but encoder folders are missing or "
                         f"changed; delete the folder (or pass overwrite) to run it again")
    todo = [j for j in jobs if j.name not in outputs]
    if todo:
        tokenizer = _load_tokenizer(spec.target, spec.local)
        tools = Tools(tokenizer, special_layout(tokenizer), device, precision, progress)
        examples = build_examples(table_dialogues(table), tokenizer, tools.layout, context_past=cfg.context_past,
                                  context_future=cfg.context_future, speakers=cfg.speakers,
                                  max_length=cfg.max_length)
        valid_rows = rows(table.splits["valid"])
        for job in todo:
            print(f"fine-tuning {job.name} of {run_dir.name} on {len(job.trained_on)} dialogues", flush=True)
            _seed(cfg.seed)
            encoder = _load_model(spec.target, spec.local)
            _check_length(cfg.max_length, tokenizer, encoder, spec.name)
            model = _build_classifier(encoder, len(table.class_names), cfg.dropout, cfg.pooling, cfg.layer)
            model.to(device)
            train_rows = rows(job.trained_on)
            result = fit(model, [examples[i] for i in train_rows], labels[train_rows],
                         [examples[i] for i in valid_rows], labels[valid_rows], cfg, tools, table.class_names,
                         name=job.name, eval_batch_size=encode_batch_size,
                         progress_file=resume.progress_path(run_dir, job.name), key=key)
            t0 = time.perf_counter()
            enc_rows = rows(job.encodes)
            probs, feats = run_classifier(model, [examples[i] for i in enc_rows], tools, encode_batch_size,
                                          desc=f"{job.name} encoding")
            encode_seconds = round(time.perf_counter() - t0, 2)
            job.record = {"format": FORMAT, "version": VERSION, "key": key, "name": job.name,
                          "base": cfg.encoder, "base_identity": spec.identity, "settings": cfg.to_dict(),
                          "precision": precision, "device": str(device), "class_names": list(table.class_names),
                          "feature_size": int(feats.shape[1]), "trained_on": job.trained_on,
                          "encodes": job.encodes, "weights_kept": job.keep_weights, "selection": SELECTION,
                          **result, "encode_seconds": encode_seconds}
            save_encoder(model, tokenizer, run_dir / job.name, job.record, weights=job.keep_weights,
                         arrays={"features": feats.astype(np.float32), "probs": probs.astype(np.float32)})
            outputs[job.name] = {"features": feats, "probs": probs}
            resume.progress_path(run_dir, job.name).unlink(missing_ok=True)  # the saved encoder replaces it
            del model, encoder

    feats, probs = _combine(len(labels), len(table.class_names), [(rows(j.encodes), outputs[j.name]) for j in jobs],
                            run_dir)
    heldout_names = [j.name for j in jobs if j.name == "encoder"] or [j.name for j in jobs]
    if finished is not None:
        info = finished
    else:
        info = _run_info(table, cfg, key, spec, precision, device, jobs, folds, heldout_names, probs, labels, rows,
                         round(time.perf_counter() - started, 2), run_dir, score_test)
        write_json(run_dir / RUN_INFO, info)
        (run_dir / UNFINISHED).unlink(missing_ok=True)
    corpus = table_to_corpus(table, feats, name=name)
    corpus.feature_info = {"t": info["feature_info"]}
    return FinetuneResult(corpus, info, run_dir, reused=finished is not None)


def _combine(n: int, num_classes: int, parts: Sequence[tuple[np.ndarray, Mapping[str, np.ndarray]]],
             run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, H) features and (N, C) probabilities from each encoder's rows; rows that several
    encoders encode (valid / test under fold-mean) get the mean of their vectors."""
    width = parts[0][1]["features"].shape[1]
    feats = np.zeros((n, width), dtype=np.float32)
    probs = np.zeros((n, num_classes), dtype=np.float32)
    counts = np.zeros(n, dtype=np.int64)
    for r, out in parts:
        feats[r] += out["features"]
        probs[r] += out["probs"]
        counts[r] += 1
    if (counts == 0).any():
        raise RuntimeError(f"{run_dir}: {int((counts == 0).sum())} utterances were encoded by no encoder")
    return feats / counts[:, None], probs / counts[:, None]


def _run_info(table: Table, cfg: FinetuneConfig, key: str, spec, precision: str, device: str, jobs: list[_Job],
              folds: dict[str, int] | None, heldout_names: list[str], probs: np.ndarray, labels: np.ndarray,
              rows: Callable, seconds: float, run_dir: Path, score_test: bool = True) -> dict[str, Any]:
    """finetune.json: settings, encoders, folds, the classifier's scores per split, feature_info."""
    report: dict[str, Any] = {}
    for split, ids in table.splits.items():
        if split == "test" and not score_test:
            report[split] = {"label": "not scored (score_test=False): the test labels were not read"}
            continue
        r = rows(ids)
        m = compute_metrics(labels[r], probs[r].argmax(-1), table.class_names)
        m = {k: m[k] for k in ("accuracy", "weighted_f1", "macro_f1", "per_class_f1")}
        if split == "train":
            m["label"] = ("out-of-fold: each training utterance scored by an encoder that never trained on its "
                          "dialogue" if folds else "in-sample: the encoder trained on these labels (optimistic)")
        elif split == "test":
            m["label"] = TEST_LABEL
        report[split] = m
    dirs = [str(run_dir / name) for name in heldout_names]
    fingerprints = [content_fingerprint(d) for d in dirs]
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("encoder", "precision")}
    feature_info = {"kind": "finetuned", "encoder_dir": dirs[0] if len(dirs) == 1 else None, "encoder_dirs": dirs,
                    "base": cfg.encoder, "base_identity": spec.identity, **settings, "precision": precision,
                    "precision_setting": cfg.precision, "fingerprint": fingerprints[0] if len(dirs) == 1 else None,
                    "fingerprints": fingerprints, "run_dir": str(run_dir), "key": key}
    return {
        "format": FORMAT, "version": VERSION, "key": key, "table": table.name, "sources": table.source_sha256,
        "base": cfg.encoder, "base_identity": spec.identity, "settings": cfg.to_dict(), "precision": precision,
        "device": str(device), "selection": SELECTION,
        "encoders": [{k: v for k, v in j.record.items() if k not in ("format", "version", "settings", "class_names")}
                     for j in jobs],
        "folds": None if folds is None else {"k": cfg.folds, "heldout": cfg.heldout, "assignment": folds},
        "classifier": report,
        "seconds": {"total": seconds, "train": round(sum(j.record["seconds"] for j in jobs), 2),
                    "encode": round(sum(j.record["encode_seconds"] for j in jobs), 2)},
        "versions": _versions(),
        "feature_info": feature_info,
    }


def _versions() -> dict[str, str]:
    import transformers

    return {"torch": _torch().__version__, "transformers": transformers.__version__}


def reencode_layer(table: Table, run_dir: str | os.PathLike, layer: str, *, device: str = "auto",
                   encode_batch_size: int = 64, progress: bool = True, name: str | None = None) -> Corpus:
    """The features of a finished run read out at another ``layer``, from its saved encoders.

    Training never depends on ``layer`` (the head always reads the last layer), so this equals
    a new run with ``layer`` changed, at the cost of encoding only. Every utterance is encoded
    by the same encoder as in the run (its fold encoder, the held-out encoder, or the mean of
    the fold encoders). ``table`` must be the run's data (checked against its key); the fold
    encoders' weights must have been kept. The corpus's ``feature_info`` is the run's with
    ``layer`` replaced, so :func:`encode_dialogues` reads new sentences out the same way.
    """
    run_dir = Path(run_dir).resolve()
    info = read_json(run_dir / RUN_INFO) if (run_dir / RUN_INFO).is_file() else None
    if info is None or info.get("format") != FORMAT:
        raise FileNotFoundError(f"{run_dir}: no finished fine-tuning run ({RUN_INFO} is missing)")
    cfg = FinetuneConfig.from_dict(info["settings"])
    if cache_key(table, cfg, info["precision"], info["base_identity"]) != info["key"]:
        raise DataError(f"{table.source}: not the data of the run in {run_dir} (its key differs)")
    FinetuneConfig.from_dict({**info["settings"], "layer": layer})  # check the value
    device = resolve_device(device)
    index = {d.id: i for i, d in enumerate(table.dialogues)}
    offsets = np.cumsum([0] + [len(d) for d in table.dialogues])
    rows = lambda ids: np.concatenate([np.arange(offsets[index[i]], offsets[index[i] + 1]) for i in ids])  # noqa: E731
    source = table_dialogues(table)
    parts = []
    for e in info["encoders"]:
        folder = run_dir / e["name"]
        if not (folder / HEAD_FILE).is_file():
            raise FileNotFoundError(f"{folder}: the encoder's weights were not kept; run again with the layer")
        tokenizer, model, _ = load_encoder_folder(folder, device)
        model.layers = layer_indices(layer, model.encoder.config.num_hidden_layers)
        tools = Tools(tokenizer, special_layout(tokenizer), device, info["precision"], progress)
        examples = build_examples([source[index[i]] for i in e["encodes"]], tokenizer, tools.layout,
                                  context_past=cfg.context_past, context_future=cfg.context_future,
                                  speakers=cfg.speakers, max_length=cfg.max_length)
        probs, feats = run_classifier(model, examples, tools, encode_batch_size, desc=f"{e['name']} layer {layer}")
        parts.append((rows(e["encodes"]), {"features": feats, "probs": probs}))
    feats, _ = _combine(int(offsets[-1]), len(table.class_names), parts, run_dir)
    corpus = table_to_corpus(table, feats, name=name)
    corpus.feature_info = {"t": {**info["feature_info"], "layer": layer}}
    return corpus


# --------------------------------------------------------------------------------------------
# Choosing settings on validation

def grid_configs(base: FinetuneConfig, grid: Mapping[str, Sequence[Any]]) -> list[FinetuneConfig]:
    """Every combination of ``grid``'s values applied to ``base``, in the grid's order."""
    names = list(grid)
    unknown = [n for n in names if n not in {f.name for f in dataclasses.fields(FinetuneConfig)}]
    if unknown:
        raise ValueError(f"grid: unknown setting(s) {unknown}")
    return [base.replace(**dict(zip(names, values))) for values in itertools.product(*(grid[n] for n in names))]


def select_settings(table: Table, configs: Sequence[FinetuneConfig], **kwargs: Any) -> tuple[FinetuneResult, list[dict]]:
    """Fine-tune once per config (each in its own keyed run folder under ``cache_dir``) and return
    the run with the best validation weighted F1 of its classifier (ties: the earlier config),
    with one summary row per config. Test scores are never consulted."""
    if not configs:
        raise ValueError("select_settings: no configs")
    if kwargs.get("run_dir") is not None:
        raise ValueError("select_settings: every config gets its own keyed folder; pass cache_dir, not run_dir")
    rows, best, best_score = [], None, -1.0
    for i, cfg in enumerate(configs):
        result = finetune_corpus(table, cfg, **kwargs)
        score = result.info["classifier"]["valid"]["weighted_f1"]
        rows.append({"index": i, "settings": cfg.to_dict(), "valid_weighted_f1": score,
                     "chosen_epochs": {e["name"]: e["chosen_epoch"] for e in result.info["encoders"]},
                     "run_dir": str(result.run_dir)})
        if score > best_score:
            best, best_score = result, score
    return best, rows


# --------------------------------------------------------------------------------------------
# New sentences, encoded as a corpus's were

_LOADED: dict[tuple[str, str, str], tuple[Any, Any, dict[str, Any]]] = {}  # (folder, device, content) -> loaded
_VERIFIED: dict[tuple[str, tuple], str] = {}  # (folder, file stats) -> content fingerprint


def _verified_fingerprint(folder: Path) -> str:
    stats = tuple((p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in sorted(folder.rglob("*")) if p.is_file())
    key = (str(folder), stats)
    if key not in _VERIFIED:
        _VERIFIED[key] = content_fingerprint(folder)
    return _VERIFIED[key]


def encode_dialogues(feature_info: Mapping[str, Any], dialogues: Sequence[Sequence[tuple[str, str]]], *,
                     device: str = "auto", batch_size: int = 64, progress: bool = False,
                     encoder_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
                     strict: bool = True) -> list[np.ndarray]:
    """Encode new dialogues exactly as a corpus's text features were encoded.

    Args:
        feature_info: ``corpus.feature_info["t"]`` (or a checkpoint's ``data.feature_info["t"]``).
            ``"sentence-encoder"``: the frozen encoder's embedding of each sentence, read out at
            its recorded ``layer`` (absent: ``"last"``, the encoder's own pipeline);
            ``"finetuned"``: the same input construction (speakers, context window, max_length),
            pooling, layer and precision as the corpus, with the encoder that encoded its
            validation and test utterances (for ``heldout="fold-mean"``, the mean over the fold
            encoders).
        dialogues: each a list of (speaker name, sentence) pairs in order. The sentences are used
            as given: clean them as the corpus's were (``safsd_glnet.data.tables.clean_text``).
        encoder_dir: where the fine-tuned encoder folder(s) are now, if they moved.
        strict: refuse an encoder whose identity / content differs from the one recorded.

    Returns:
        one (n, d) float32 array per dialogue.
    """
    dialogues = [list(d) for d in dialogues]
    for k, d in enumerate(dialogues):
        for i, pair in enumerate(d):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise ValueError(f"encode_dialogues: dialogue {k}, utterance {i}: expected a (speaker, text) "
                                 f"pair of strings, got {pair!r}")
    lengths = [len(d) for d in dialogues]
    kind = feature_info.get("kind")
    if kind == "sentence-encoder":
        spec = resolve_encoder(feature_info["encoder"])
        if strict and spec.identity != feature_info["identity"]:
            raise ValueError(f"encoder {feature_info['encoder']!r} is not the one that made the features "
                             f"(identity {spec.identity[:60]!r}, recorded {feature_info['identity'][:60]!r}); "
                             f"pass strict=False to encode anyway")
        x = encode_texts([t for d in dialogues for _, t in d], feature_info["encoder"], batch_size=batch_size,
                         device=device, progress=progress, layer=feature_info.get("layer", "last"))
    elif kind == "finetuned":
        x = _encode_finetuned(feature_info, dialogues, device, batch_size, progress, encoder_dir, strict)
    else:
        raise ValueError(f"encode_dialogues: feature_info kind {kind!r} is not one this kit makes "
                         f"('sentence-encoder', 'finetuned')")
    return [np.ascontiguousarray(p) for p in np.split(x, np.cumsum(lengths)[:-1])] if dialogues else []


def _encode_finetuned(info: Mapping[str, Any], dialogues, device: str, batch_size: int, progress: bool,
                      encoder_dir, strict: bool) -> np.ndarray:
    dirs = list(info["encoder_dirs"])
    if encoder_dir is not None:
        given = [encoder_dir] if isinstance(encoder_dir, (str, os.PathLike)) else list(encoder_dir)
        if len(given) != len(dirs):
            raise ValueError(f"encoder_dir: the features were made with {len(dirs)} encoder folder(s), got {len(given)}")
        dirs = [str(p) for p in given]
    device = resolve_device(device)
    total = None
    for folder, fingerprint in zip(dirs, info["fingerprints"]):
        folder = Path(folder).resolve()
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: the fine-tuned encoder folder is gone (moved? pass encoder_dir)")
        content = _verified_fingerprint(folder)
        if strict and content != fingerprint:
            raise ValueError(f"{folder}: its content differs from the encoder that made the features "
                             f"(retrained or edited); pass strict=False to encode anyway")
        if (str(folder), device, content) not in _LOADED:  # a retrained folder is loaded again
            _LOADED[(str(folder), device, content)] = load_encoder_folder(folder, device)
        tokenizer, model, _ = _LOADED[(str(folder), device, content)]
        model.layers = layer_indices(info["layer"], model.encoder.config.num_hidden_layers)  # as recorded
        tools = Tools(tokenizer, special_layout(tokenizer), device, info["precision"], progress)
        examples = build_examples(dialogues, tokenizer, tools.layout, context_past=info["context_past"],
                                  context_future=info["context_future"], speakers=info["speakers"],
                                  max_length=info["max_length"])
        if not examples:
            return np.zeros((0, model.head.in_features), dtype=np.float32)
        _, x = run_classifier(model, examples, tools, batch_size, desc=f"encoding with {folder.name}")
        total = x if total is None else total + x
    return (total / len(dirs)).astype(np.float32)
