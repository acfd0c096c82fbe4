"""Training and evaluation: ``train(config, corpus) -> Run``.

Protocols (SPEC.md, "Evaluation protocols"), both recorded in ``metrics.json``:

* honest (the result): the epoch with the best validation weighted F1 is chosen (ties go to
  the earlier epoch) and the test metrics of that epoch are reported;
* reference (labelled, for comparison with published numbers only): the best test weighted
  F1 over all epochs, as SDT, M3Net and the SAFSD-GLNet code report.

Which validation split chose the epoch (official dev, COSMIC's 12 dialogues, a seeded fraction,
a user's ids: :mod:`safsd_glnet.data.validation`) is printed when training starts and recorded
as ``"validation"`` in ``metrics.json``, both checkpoints and the seeds' ``summary.json``.

A run folder holds ``config.json``, ``metrics.json``, ``checkpoint_best.pt`` (the chosen
epoch), ``checkpoint_last.pt`` (everything needed to resume: model, optimiser, random
states, history) and ``test_predictions.csv``. Every write is atomic. ``resume=True``
continues from ``checkpoint_last.pt``; on CPU the result equals an uninterrupted run.

Just over 600 lines: training, evaluation, loading and resuming share the checkpoint format and
the loop's state.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..data import atomic_files as files
from ..model import compiled, kernels, long_dialogues, precision
from . import run_folder_guard as run_folder
from ..config import Config, TrainConfig, check_device_name
from ..data.batching import Batch, iterate_batches, num_batches
from ..data import validation
from ..data.dialogue_windows import check_trainable
from ..data.corpus import Corpus, DataError, Dialogue, describe_unseen_speakers
from ..model.losses import LossComputer, class_feature_sums
from ..model.metrics import compute_metrics, summarise_seeds
from ..model.network import SPEAKER_TABLES, SAFSDGLNet, count_parameters, drop_speaker_padding_rows
from .progress import EpochProgress
from .epoch_selection import BestEpoch, reference_epoch

CHECKPOINT_FORMAT = "safsd-glnet-checkpoint"
CHECKPOINT_VERSION = 1
HONEST_LABEL = "honest: epoch chosen by validation weighted F1, test reported at that epoch"
REFERENCE_LABEL = ("reference protocol: best test weighted F1 over epochs (how SDT, M3Net and the "
                   "SAFSD-GLNet code report; optimistic, for comparison with published numbers only)")


# --------------------------------------------------------------------------- devices and seeds

def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU. An explicit device that this machine
    does not have (``cuda`` without a GPU, ``cuda:3`` on a one-GPU machine, ``mps`` off a Mac)
    is a one-line ValueError here, before any data is read or any epoch runs."""
    check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r}: this torch ({torch.__version__}) sees no CUDA GPU; "
                             "use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device={name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                             f"numbered from 0")
    elif device.type == "mps" and not _mps_available():
        raise ValueError(f"device={name!r}: Apple's MPS backend is not available here; use --device cpu (or auto)")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(shuffle: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "shuffle": shuffle.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], shuffle: torch.Generator) -> None:
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _autocast(device: torch.device, amp: bool | str, hidden: int | None = None):
    """The autocast of the setting ``train.amp`` on ``device`` for a model of width ``hidden``
    (:func:`precision.train_precision`); autocast off for fp32."""
    return precision.autocast(device, precision.train_precision(amp, device, hidden))


# --------------------------------------------------------------------------- models from files

def build_model(config: Config, corpus: Corpus, *, fast: bool = True) -> SAFSDGLNet:
    """The model for ``corpus``; ``fast`` swaps in the speed kernels (:mod:`safsd_glnet.model.kernels`),
    the same maths as the readable modules."""
    model = SAFSDGLNet(config.model, corpus.feature_sizes, corpus.num_classes, corpus.num_speakers)
    if config.model.standardise:  # statistics of the training split only, kept in the model's buffers
        model.fit_standardisation({m: torch.from_numpy(np.concatenate([d.features[m] for d in corpus.split("train")]))
                                   for m in model.modalities})
    return kernels.install(model) if fast else model


def data_signature(corpus: Corpus) -> dict[str, Any]:
    """What a model needs to know about its data to be rebuilt and fed again."""
    return {"corpus": corpus.name, "class_names": list(corpus.class_names),
            "speaker_names": list(corpus.speaker_names), "feature_sizes": dict(corpus.feature_sizes),
            "feature_info": dict(corpus.feature_info),  # how to encode new sentences (finetune.encode_dialogues)
            "speaker_mode": speaker_mode(corpus.speaker_names)}  # corpus-wide names or per-dialogue slots


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[SAFSDGLNet, dict[str, Any]]:
    """Rebuild a model from a checkpoint file alone; returns the model (eval mode) and the file's info.

    The config's sizes are bounded and every weight's name, shape and dtype is compared with
    a model built on torch's "meta" device before the real one is allocated
    (:func:`~safsd_glnet.data.safe.checkpoint.build_checked_model`): a file cannot make this
    allocate more than the weights it stores."""
    from ..data.safe.checkpoint import build_checked_model

    ckpt = files.load_torch(path, map_location="cpu")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a safsd-glnet checkpoint (missing format tag)")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {str(ckpt.get('version'))[:20]}, this kit reads "
                         f"{CHECKPOINT_VERSION}")
    model = kernels.install(build_checked_model(ckpt, path))
    return model.to(device).eval(), {"config": Config.from_dict(ckpt["config"]), "data": ckpt["data"],
                                     "epoch": ckpt.get("epoch"),
                                     "validation": ckpt.get("validation")}  # None: a checkpoint from before the record


def speaker_mode(speaker_names: list[str]) -> str:
    """How a corpus numbers its speakers: ``"dialogue"`` when its names are the per-dialogue slots
    ``speaker0`` .. ``speakerK`` (order of appearance: MELD's pickles, ``--speakers dialogue``
    tables), else ``"corpus"`` (one index per person across the corpus, IEMOCAP's M / F)."""
    names = list(speaker_names)
    return "dialogue" if names and names == [f"speaker{i}" for i in range(len(names))] else "corpus"


def align_corpus(signature: dict[str, Any], corpus: Corpus, source: str) -> Corpus:
    """``corpus`` made readable by a model trained on ``signature``, or a :class:`DataError`.

    Features, classes and sizes must match (:func:`check_compatible`). Speakers are matched by
    what the model learnt (``signature["speaker_mode"]``): per-dialogue slots need no more slots
    than the model has; corpus-wide names are mapped *by name* to the model's indices, so a
    table whose only speaker is ``M`` gets M's index, not 0, and a name the model never saw is
    an error naming the dialogue, never a silent stand-in."""
    check_compatible(signature, corpus, source)
    known = list(signature["speaker_names"])
    mode = signature.get("speaker_mode") or speaker_mode(known)
    if mode == "dialogue" or list(corpus.speaker_names) == known:
        if corpus.num_speakers > len(known):
            raise DataError(f"{corpus.source}: {corpus.num_speakers} speakers, the model from {source} knows "
                            f"{len(known)}")
        return corpus
    index = {name: i for i, name in enumerate(known)}
    mapping = np.empty(corpus.num_speakers, dtype=np.int64)
    for i, name in enumerate(corpus.speaker_names):
        if name not in index:
            first = next((d.id for d in corpus.dialogues.values() if (np.asarray(d.speakers) == i).any()), "?")
            from ..data.tables import unknown_speaker_hint

            raise DataError(f"{corpus.source}: dialogue {first!r}: speaker {name!r} is unknown to the model from "
                            f"{source}; {unknown_speaker_hint(name, known)}")
        mapping[i] = index[name]
    dialogues = {k: Dialogue(d.id, mapping[np.asarray(d.speakers, dtype=np.int64)], d.labels, d.features, d.texts)
                 for k, d in corpus.dialogues.items()}
    return Corpus(corpus.name, corpus.class_names, known, dict(corpus.feature_sizes), dialogues, corpus.splits,
                  corpus.source, dict(corpus.feature_info), corpus.validation)


def check_compatible(signature: dict[str, Any], corpus: Corpus, source: str) -> None:
    """Raise a :class:`DataError` when ``corpus`` cannot be fed to a model trained on ``signature``
    (features and classes; :func:`align_corpus` also maps the speakers)."""
    for m, size in signature["feature_sizes"].items():
        if m not in corpus.feature_sizes:
            raise DataError(f"{corpus.source}: the model from {source} reads modality {m!r}, the data has "
                            f"{list(corpus.modalities)}")
        if corpus.feature_sizes[m] != size:
            raise DataError(f"{corpus.source}: modality {m!r} has size {corpus.feature_sizes[m]}, the model "
                            f"from {source} expects {size}")
    if list(corpus.class_names) != list(signature["class_names"]):
        raise DataError(f"{corpus.source}: classes {corpus.class_names} differ from the model's "
                        f"{signature['class_names']} ({source})")


# --------------------------------------------------------------------------- evaluation

@dataclass
class Predictions:
    """Per real utterance, dialogue-major: ids, positions, labels, predictions, probabilities."""

    dialogue_ids: list[str]
    positions: np.ndarray  # (N,)
    labels: np.ndarray  # (N,)
    preds: np.ndarray  # (N,)
    probs: np.ndarray  # (N, C) teacher softmax
    teacher_features: np.ndarray | None = None  # (N, F) when asked for
    student_features: dict[str, np.ndarray] | None = None
    student_preds: dict[str, np.ndarray] = field(default_factory=dict)


@torch.no_grad()
def predict(model: SAFSDGLNet, dialogues: list[Dialogue], batch_size: int = 16,
            device: torch.device | str | None = None, features: bool = False, amp: bool | str = "auto") -> Predictions:
    """Run ``model`` in eval mode over ``dialogues``; padding never reaches the outputs."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    ids, positions, labels, preds, probs, tfeat = [], [], [], [], [], []
    sfeat: dict[str, list] = {m: [] for m in model.modalities}
    spred: dict[str, list] = {m: [] for m in model.modalities}
    # One autocast region for all batches: in bf16 the weights are cast once, not once per batch.
    # A long dialogue is predicted alone, in blocks (long_dialogues): memory stays bounded.
    with _autocast(device, amp, model.cfg.hidden):
        for batch in iterate_batches(dialogues, batch_size, modalities=model.modalities,
                                     alone_above=long_dialogues.BLOCKED_ABOVE):
            batch = batch.to(device)
            out = model(batch)
            ids += [d for d, n in zip(batch.dialogue_ids, batch.lengths.tolist()) for _ in range(n)]
            positions.append(torch.cat([torch.arange(n) for n in batch.lengths.tolist()]))
            labels.append(batch.real_labels.cpu())
            logits = out.teacher_logits.float()
            preds.append(logits.argmax(-1).cpu())
            probs.append(torch.softmax(logits, -1).cpu())
            for m in model.modalities:
                spred[m].append(out.student_logits[m].argmax(-1).cpu())
            if features:
                tfeat.append(out.teacher_features.float().cpu())
                for m in model.modalities:
                    sfeat[m].append(out.student_features[m].float().cpu())
    model.train(was_training)
    cat = lambda xs: torch.cat(xs).numpy()  # noqa: E731
    return Predictions(
        ids, cat(positions), cat(labels), cat(preds), cat(probs),
        cat(tfeat) if features else None,
        {m: cat(v) for m, v in sfeat.items()} if features else None,
        {m: cat(v) for m, v in spred.items()},
    )


def evaluate(model: SAFSDGLNet, dialogues: list[Dialogue], class_names: list[str], batch_size: int = 16,
             device: torch.device | str | None = None, amp: bool | str = "auto") -> dict[str, Any]:
    """Metrics (percent) of the teacher's predictions, plus each student's accuracy and weighted F1.

    ``amp`` is the run's ``train.amp``: an epoch must be scored in the precision it trained in."""
    p = predict(model, dialogues, batch_size, device, amp=amp)
    result = compute_metrics(p.labels, p.preds, class_names)
    result["students"] = {}
    for m, sp in p.student_preds.items():
        sm = compute_metrics(p.labels, sp, class_names)
        result["students"][m] = {"accuracy": sm["accuracy"], "weighted_f1": sm["weighted_f1"]}
    return result


def write_predictions(path: str | Path, p: Predictions, class_names: list[str]) -> None:
    """The CSV of ``test_predictions.csv`` and ``predict --data``: text cells that start like a
    spreadsheet formula are neutralised (:func:`safsd_glnet.data.atomic_files.write_csv`)."""
    files.write_csv(path, ["dialogue_id", "position", "label", "prediction"] + [f"p_{c}" for c in class_names],
                    ([p.dialogue_ids[i], int(p.positions[i]), class_names[p.labels[i]], class_names[p.preds[i]]]
                     + [float(x) for x in p.probs[i]] for i in range(len(p.labels))))


# --------------------------------------------------------------------------- training

@dataclass
class Run:
    """The outcome of :func:`train`: the config, the metrics dict (as in ``metrics.json``), the
    model at the chosen epoch and the run folder (None for in-memory runs)."""

    config: Config
    metrics: dict[str, Any]
    model: SAFSDGLNet
    out_dir: Path | None


def _check_splits(corpus: Corpus) -> None:
    for split in ("train", "valid", "test"):
        if not corpus.splits.get(split):
            hint = (" The honest protocol needs a validation split: the SDT IEMOCAP loader carves a seeded 10%"
                    " of training dialogues.") if split == "valid" else ""
            raise DataError(f"{corpus.source}: corpus {corpus.name!r} has no {split!r} dialogues.{hint}")


def _headline(m: dict[str, Any]) -> dict[str, float]:
    return {"accuracy": m["accuracy"], "weighted_f1": m["weighted_f1"], "macro_f1": m["macro_f1"]}


class _Prototypes:
    """Running class sums of teacher features over an epoch, for the 'prototype' similarity:
    S is refreshed at each epoch's end and used in the next (identity in the first)."""

    def __init__(self, losses: LossComputer, num_classes: int):
        self.losses, self.num_classes = losses, num_classes
        self.active = losses.cfg.similarity == "prototype"
        self.sums = self.counts = None

    def add(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        if self.active:
            self.sums, self.counts = class_feature_sums(features.float(), labels, self.num_classes,
                                                        self.sums, self.counts)

    def end_epoch(self) -> None:
        if self.active and self.sums is not None:
            self.losses.set_prototypes(self.sums, self.counts)
            self.sums = self.counts = None


def make_optimizer(tc: TrainConfig, parameters, device: torch.device,
                   fused: bool | None = None) -> torch.optim.Optimizer:
    """Adam or AdamW as ``tc`` says, with the fused kernel on CPU and CUDA.

    ``fused``: None (default) fuses where the device supports it; False keeps torch's default
    step (a per-parameter loop on the CPU, multi-tensor "foreach" on CUDA), for comparisons.

    The fused step computes the same update as torch's default one, in one kernel per parameter
    group instead of several passes per parameter. On a 2-core CPU it runs the paper model's 79 M
    parameters in 20-30 ms instead of 140-175 ms, which took a MELD epoch (144 steps) from 76 s
    to 57.5 s (``benchmarks/speed.py --default-adam``). Other devices (MPS) keep the default."""
    opt_cls = torch.optim.AdamW if tc.optimizer == "adamw" else torch.optim.Adam
    if fused is None:
        fused = device.type in ("cpu", "cuda")
    return opt_cls(parameters, lr=tc.lr, weight_decay=tc.weight_decay, **({"fused": True} if fused else {}))


def training_step(model: SAFSDGLNet, optimizer: torch.optim.Optimizer, losses: LossComputer, batch: Batch,
                  device: torch.device, amp: bool | str, grad_clip: float | None = None):
    """One optimiser step on one batch: the forward pass (under autocast where ``amp`` says),
    the objective, its gradient, optional clipping to ``grad_clip``, the optimiser's update.

    Returns ``(output, labels, terms)``: the :class:`~safsd_glnet.model.network.ModelOutput`, the (N,)
    labels of the real utterances and the loss terms (detached 0-d tensors)."""
    batch = batch.to(device)
    labels = batch.real_labels
    with _autocast(device, amp, model.cfg.hidden):
        output = model(batch)
    loss, terms = losses(output, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return output, labels, terms


def train(config: Config, corpus: Corpus, out_dir: str | Path | None = None, *, resume: bool = False,
          overwrite: bool = False, callback: Callable[[int, dict[str, Any]], None] | None = None) -> Run:
    """Train SAFSD-GLNet on ``corpus`` and return the :class:`Run`.

    Args:
        config: model, loss and training settings.
        corpus: a validated corpus with train / valid / test splits; it is restricted to
            ``config.model.modalities``.
        out_dir: the run folder (created); None keeps everything in memory. A folder that
            already holds a run is refused unless ``resume`` or ``overwrite`` says what to do
            with it (:func:`safsd_glnet.training.run_folder_guard.prepare`); while the run trains the folder
            is locked against a second process (:class:`~safsd_glnet.training.run_folder_guard.RunLock`).
        resume: continue from ``out_dir/checkpoint_last.pt`` when it exists.
        overwrite: replace the run in ``out_dir`` (its files are removed first).
        callback: called as ``callback(epoch, record)`` after every epoch (plots, logging);
            an exception raised there stops the run with the last checkpoint already written.
    """
    corpus = corpus.with_modalities(config.model.modalities)
    _check_splits(corpus)
    check_trainable(corpus, config)  # a dialogue too long to train on: one line, before any work
    device = select_device(config.train.device)
    print(f"validation: {validation.describe(validation.for_run(corpus))}", flush=True)
    unseen = describe_unseen_speakers(corpus.unseen_speakers())
    if unseen:
        print(unseen, flush=True)
    if out_dir is None:
        return _train(config, corpus, None, device, False, callback)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: the run folder is a file, expected a folder")
    run_folder.check_writable(out, "run folder")
    with run_folder.RunLock(out):
        run_folder.prepare(out, resume=resume, overwrite=overwrite)
        return _train(config, corpus, out, device, resume, callback)


# Fields that say how a run is executed, not what it computes: a run may resume with others.
RUNTIME_FIELDS = {"train": ("progress", "device", "save_every_s", "compile")}
_clock = time.monotonic  # of the resume-point interval (a module name, so that tests can set the time)
_RESUME_KEYS = ("config", "model", "optimizer", "similarity", "rng", "history", "best", "since_best", "epoch")


def comparable_config(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` read as a :class:`Config` and written back, without ``"data"`` and :data:`RUNTIME_FIELDS`,
    for "is this the same run?" checks. Reading it first makes a config of a 0.x version compare by
    its meaning (``train.amp=true`` is ``"auto"``, ``model.gcn_impl`` is dropped); a dict that is not
    a config raises what :meth:`Config.from_dict` raises."""
    out = Config.from_dict({k: v for k, v in d.items() if k != "data"}).to_dict()
    for section, names in RUNTIME_FIELDS.items():
        for name in names:
            out.get(section, {}).pop(name, None)
    return out


def _resume_state(out: Path, config: Config, device: torch.device) -> dict[str, Any] | None:
    """``checkpoint_last.pt`` of ``out`` checked for resuming, or None when there is none yet.

    Everything that would make the resumed run fail late is checked first: another
    configuration, a file that is not a full training checkpoint, and a missing
    ``checkpoint_best.pt`` (the chosen epoch's weights, which the end of the run reads)."""
    last_path = out / "checkpoint_last.pt"
    if not last_path.exists():
        return None
    ckpt = files.load_torch(last_path, map_location=device)
    missing = [k for k in _RESUME_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise DataError(f"{last_path}: not a resumable training checkpoint (no {', '.join(missing)})")
    try:
        same = (isinstance(ckpt["config"], dict)
                and comparable_config(ckpt["config"]) == comparable_config(config.to_dict()))
    except (TypeError, ValueError, KeyError, AttributeError):
        same = False
    if not same:
        raise ValueError(f"{last_path}: the run was started with another configuration; "
                         f"resume with the config.json of {out}, or pass --overwrite to start again")
    best_epoch = ckpt["best"].get("epoch", 0) if isinstance(ckpt["best"], dict) else 0
    if best_epoch and not (out / "checkpoint_best.pt").exists():
        raise DataError(f"{out}: checkpoint_best.pt (epoch {best_epoch}, the best so far) is missing, so the "
                        "run cannot resume; pass --overwrite to train it again from the start")
    return ckpt


def _drop_speaker_padding_moments(model: SAFSDGLNet, optimizer: torch.optim.Optimizer) -> None:
    """The optimiser moments of a resume point written by a 0.x version cut to the speaker tables'
    rows, as :func:`~safsd_glnet.model.network.drop_speaker_padding_rows` cuts the tables."""
    params = dict(model.named_parameters())
    for key in SPEAKER_TABLES:
        p = params.get(key)
        state = optimizer.state.get(p) if p is not None else None
        for name, value in (state or {}).items():
            if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape[0] == p.shape[0] + 1:
                state[name] = value[: p.shape[0]]


def _train(config: Config, corpus: Corpus, out: Path | None, device: torch.device, resume: bool,
           callback: Callable[[int, dict[str, Any]], None] | None) -> Run:
    """The training loop of :func:`train`; ``out`` is checked and locked already."""
    tc = config.train
    seed_everything(tc.seed)
    shuffle = torch.Generator().manual_seed(tc.seed)
    model = build_model(config, corpus).to(device)
    train_dialogues, valid_dialogues, test_dialogues = (corpus.split(s) for s in ("train", "valid", "test"))
    steps = num_batches(len(train_dialogues), tc.batch_size)
    use_compiler, compile_why = compiled.decide(tc.compile, device, steps * tc.epochs)
    if use_compiler:
        compiled_before = compiled.compile_counts()  # the process may hold other runs' compiled versions
        compiled.compile_regions(model)
    optimizer = make_optimizer(tc, model.parameters(), device)
    losses = LossComputer.from_counts(config.loss, corpus.class_counts("train"), corpus.class_names).to(device)
    prototypes = _Prototypes(losses, corpus.num_classes)
    signature = data_signature(corpus)
    valid_record = validation.for_run(corpus)  # which validation split chooses the epoch

    history: list[dict[str, Any]] = []
    best = BestEpoch()  # the honest protocol's rule (safsd_glnet.training.epoch_selection)
    start_epoch = 1
    last_path = out / "checkpoint_last.pt" if out else None
    if out is not None:
        ckpt = _resume_state(out, config, device) if resume else None
        if ckpt is not None:
            try:
                model.load_state_dict(drop_speaker_padding_rows(ckpt["model"], corpus.num_speakers))
                optimizer.load_state_dict(ckpt["optimizer"])
                _drop_speaker_padding_moments(model, optimizer)
            except (RuntimeError, ValueError, KeyError) as e:
                raise DataError(f"{last_path}: its weights do not fit the configuration "
                                f"({str(e).splitlines()[0]})") from None
            losses.similarity = ckpt["similarity"].to(device)
            _set_rng_state(ckpt["rng"], shuffle)
            history, best = ckpt["history"], BestEpoch.from_dict(ckpt["best"], ckpt["since_best"])
            start_epoch = ckpt["epoch"] + 1
        files.write_json(out / "config.json", {**config.to_dict(), "data": signature})

    def checkpoint(epoch: int, weights: dict[str, torch.Tensor], full: bool) -> dict[str, Any]:
        ckpt = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": config.to_dict(),
                "data": signature, "validation": valid_record, "epoch": epoch, "model": weights}
        if full:
            ckpt.update(optimizer=optimizer.state_dict(), similarity=losses.similarity.cpu(), rng=_rng_state(shuffle),
                        history=history, best=best.to_dict(), since_best=best.since)
        return ckpt

    best_state = None
    best_unsaved = False  # best_state is newer than checkpoint_best.pt
    last_saved = _clock()
    progress = EpochProgress(tc.epochs, steps, enabled=tc.progress)  # text in a notebook, tqdm in a terminal
    for epoch in range(start_epoch, tc.epochs + 1):
        if best.exhausted(tc.patience):
            break
        t0 = time.time()
        model.train()
        sums: dict[str, float] = {}
        n_utt = 0
        batches = iterate_batches(train_dialogues, tc.batch_size, shuffle=True, generator=shuffle,
                                  modalities=config.model.modalities)
        for batch in progress.epoch(batches, epoch):
            output, labels, terms = training_step(model, optimizer, losses, batch, device, tc.amp, tc.grad_clip)
            prototypes.add(output.teacher_features, labels)
            k = len(labels)
            n_utt += k
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value) * k
        prototypes.end_epoch()
        valid = evaluate(model, valid_dialogues, corpus.class_names, tc.batch_size, device, tc.amp)
        test = evaluate(model, test_dialogues, corpus.class_names, tc.batch_size, device, tc.amp)
        record = {"epoch": epoch, "loss": {k: v / max(n_utt, 1) for k, v in sums.items()},
                  "valid": {**_headline(valid), "students": valid["students"]},
                  "test": {**_headline(test), "students": test["students"]},
                  "seconds": time.time() - t0}
        history.append(record)
        if best.update(epoch, valid["weighted_f1"]):
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_unsaved = True
        # The two checkpoints are written together, so that checkpoint_best.pt always holds the
        # best epoch of the history in checkpoint_last.pt (or, between the two writes, a newer one,
        # which resuming detects); writing them less often than every epoch is what makes short
        # GPU epochs fast (on an H100, ~1.7 s per 0.9 s epoch went outside the epochs, most likely to
        # writing 0.9 GB after each).
        ending = epoch == tc.epochs or best.exhausted(tc.patience)
        if out is not None and (ending or _clock() - last_saved >= tc.save_every_s):
            if best_unsaved:
                files.save_torch(out / "checkpoint_best.pt", checkpoint(best.epoch, best_state, full=False))
                best_unsaved = False
            files.save_torch(last_path, checkpoint(epoch, model.state_dict(), full=True))
            last_saved = _clock()
        if callback is not None:
            callback(epoch, record)
    progress.close()

    if not history:
        raise ValueError(f"{out}: nothing to train: the run already finished {tc.epochs} epochs")
    if best_state is None:  # resumed after the best epoch: read it back from its checkpoint
        best_ckpt = files.load_torch(out / "checkpoint_best.pt", map_location=device)
        if best_ckpt.get("epoch") != best.epoch:  # interrupted between the two writes, then replayed differently
            raise DataError(f"{out / 'checkpoint_best.pt'}: holds epoch {best_ckpt.get('epoch')}, not the chosen "
                            f"epoch {best.epoch}; pass --overwrite to train the run again")
        best_state = best_ckpt["model"]
    model.load_state_dict(best_state)
    model.eval()
    preds = predict(model, test_dialogues, tc.batch_size, device, amp=tc.amp)
    test_final = compute_metrics(preds.labels, preds.preds, corpus.class_names)
    valid_final = evaluate(model, valid_dialogues, corpus.class_names, tc.batch_size, device, tc.amp)
    ref = reference_epoch(history)
    metrics = {
        "corpus": corpus.name,
        "class_names": list(corpus.class_names),
        "modalities": "".join(config.model.modalities),
        "device": str(device),
        "precision": precision.train_precision(tc.amp, device, config.model.hidden),  # of every forward pass
        "num_parameters": count_parameters(model),
        # train.compile: whether the compiler ran, why, and its compiled versions (safsd_glnet.model.compiled)
        "compile": {"setting": tc.compile, "used": use_compiler, "why": compile_why,
                    **(compiled.compile_counts(compiled_before) if use_compiler else {})},
        "protocol": HONEST_LABEL,
        "validation": valid_record,
        # share of valid / test utterances whose speaker never speaks in train (untrained embedding)
        "unseen_speakers": corpus.unseen_speakers(),
        "chosen_epoch": best.epoch,
        "test": test_final,
        "valid": valid_final,
        "reference_protocol": {"label": REFERENCE_LABEL, "epoch": ref["epoch"],
                               "weighted_f1": ref["test"]["weighted_f1"], "accuracy": ref["test"]["accuracy"]},
        "epochs_run": len(history),
        "stopped_early": len(history) < tc.epochs,
        "seconds": sum(r["seconds"] for r in history),
        "history": history,
    }
    if out is not None:
        write_predictions(out / "test_predictions.csv", preds, corpus.class_names)
        files.write_json(out / "metrics.json", metrics)
    return Run(config, metrics, model, out)


def seed_summary(seeds: list[int], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``summary.json`` of runs of one configuration, one per seed (``runs``: their
    ``metrics.json``): honest test metrics and the reference protocol's, mean and sample std,
    and the validation split they used (:func:`safsd_glnet.data.validation.shared`)."""
    return {
        "seeds": list(seeds),
        "test": summarise_seeds([r["test"] for r in runs]),
        "reference_protocol": summarise_seeds([r["reference_protocol"] for r in runs],
                                              keys=("accuracy", "weighted_f1")),
        "protocol": HONEST_LABEL,
        "validation": validation.shared([r.get("validation") for r in runs]),
    }


def seed_line(seed: int, metrics: dict[str, Any], count: str = "") -> str:
    """``seed 3 (2/5): epoch 12 chosen by validation weighted F1 55.31; test weighted F1 57.02``."""
    of = f" ({count})" if count else ""
    return (f"seed {seed}{of}: epoch {metrics['chosen_epoch']} chosen by validation weighted F1 "
            f"{metrics['valid']['weighted_f1']:.2f}; test weighted F1 {metrics['test']['weighted_f1']:.2f}")


def train_seeds(config: Config, corpus: Corpus, seeds: list[int], out_dir: str | Path | None = None,
                resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train once per seed (``out_dir/seed<k>``) and summarise mean and sample std."""
    if out_dir is not None and run_folder.holds_run(out_dir):
        raise DataError(f"{out_dir}: holds a single run; several seeds need a folder of their own "
                        "(each seed trains into <folder>/seed<k>)")
    runs = []
    for k, seed in enumerate(seeds, start=1):
        cfg = config.replace(train={"seed": seed})
        sub = Path(out_dir) / f"seed{seed}" if out_dir is not None else None
        runs.append(train(cfg, corpus, sub, resume=resume, overwrite=overwrite).metrics)
        # one line per finished seed, bars or not: a run of five seeds is otherwise silent for hours
        print(seed_line(seed, runs[-1], f"{k}/{len(seeds)}"), flush=True)
    summary = seed_summary(list(seeds), runs)
    if out_dir is not None:
        files.write_json(Path(out_dir) / "summary.json", summary)
    return summary
