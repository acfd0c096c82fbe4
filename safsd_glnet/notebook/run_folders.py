"""Run folders in notebooks and reports: train into one with messages in the notebook's terms,
reuse a run made with the same settings on the same data, read one back, name its student
loss, fit a configuration to the data's modalities, and the result rows of both protocols."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..data import atomic_files as files
from ..grids.ablation import PARAMETER_FIELDS
from ..config import Config
from ..data.corpus import DataError
from ..training.run_folder_guard import holds_run
from ..text_display import kernel_busy
from ..grids.demo import QUICK
from ..training.train import align_corpus, comparable_config, load_model, train


def corpus_fingerprint(corpus) -> str:
    """A short hash of a corpus' content (splits, labels, speakers, feature sizes and a sample
    of the features): two corpora with the same fingerprint hold the same data."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    h.update(repr((corpus.name, list(corpus.class_names), dict(corpus.feature_sizes),
                   {k: list(v) for k, v in sorted(corpus.splits.items())})).encode())
    for key in sorted(corpus.dialogues):
        d = corpus.dialogues[key]
        h.update(np.asarray(d.labels, dtype=np.int64).tobytes())
        h.update(np.asarray(d.speakers, dtype=np.int64).tobytes())
        for m in sorted(d.features):
            h.update(np.ascontiguousarray(d.features[m][:1], dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def reusable(config, corpus, out_dir: str | Path, fingerprint: str | None = None) -> bool:
    """True when ``out_dir`` holds a finished run of ``config`` on this corpus (what
    :func:`train_or_reuse` would read back instead of training).

    "Of ``config``" ignores the fields that say how a run is executed, not what it computes
    (:data:`~safsd_glnet.training.train.RUNTIME_FIELDS`: the progress display, the device name, how often
    the resume point is written), so that notebook 3 can read back the run that notebook 2
    trained with its live progress. ``fingerprint`` is the corpus' :func:`corpus_fingerprint`,
    when the caller has it already."""
    out = Path(out_dir)
    paths = [out / n for n in ("config.json", "metrics.json", "checkpoint_best.pt", "data_fingerprint.txt")]
    if not all(f.is_file() for f in paths):
        return False
    try:
        same = comparable_config(files.read_json(paths[0])) == comparable_config(config.to_dict())
    except (ValueError, AttributeError, TypeError):  # a config.json of another version of the kit: train again
        return False
    return same and paths[3].read_text().strip() == (fingerprint or corpus_fingerprint(corpus))


def find_reusable(config, corpus, places: Sequence[str | Path], fingerprint: str | None = None) -> Path | None:
    """The first finished run of ``config`` on this corpus (:func:`reusable`) in ``places``:
    each place is a run folder, or a folder of run folders (its subfolders are looked at, in
    name order, e.g. ``runs/ablation``). None when there is none; a place that does not
    exist is skipped."""
    fingerprint = fingerprint or corpus_fingerprint(corpus)
    for place in places:
        place = Path(place)
        if not place.is_dir():
            continue
        candidates = [place] if holds_run(place) else sorted(p for p in place.iterdir() if p.is_dir())
        for folder in candidates:
            if reusable(config, corpus, folder, fingerprint):
                return folder
    return None


def write_fingerprint(corpus, out_dir: str | Path) -> None:
    """Keep the data's :func:`corpus_fingerprint` in ``out_dir/data_fingerprint.txt`` beside a
    finished run, so that a notebook can tell later that the run was made on these data."""
    files.write_text(Path(out_dir) / "data_fingerprint.txt", corpus_fingerprint(corpus) + "\n")


def train_or_reuse(config, corpus, out_dir: str | Path, callback=None, log: Callable[[str], None] | None = None):
    """Train into ``out_dir``, or reuse the run already there when it finished with the same
    configuration on the same data; returns ``(metrics, model)`` (the model at the chosen epoch).

    This keeps re-running a notebook cheap: a finished run is read back, anything else
    (no run, another configuration or data, an interrupted run) trains from scratch. The
    data's :func:`corpus_fingerprint` is kept in ``out_dir/data_fingerprint.txt``. ``log``
    (e.g. ``print``) is told which of the two happened."""
    out = Path(out_dir)
    again = reusable(config, corpus, out)
    if log is not None:
        if again:
            log(f"{out}: a finished run with the same settings on the same data: reused (delete the folder "
                "to train it again)")
        elif holds_run(out):
            log(f"{out}: holds a run made with other settings or data: training again in its place")
    if again:
        model, _ = load_model(out / "checkpoint_best.pt")
        return files.read_json(out / "metrics.json"), model
    # Anything else in the folder is a run this notebook made before with other settings: replace it.
    with kernel_busy():
        run = train(config, corpus, out, overwrite=holds_run(out), callback=callback)
    write_fingerprint(corpus, out)
    return run.metrics, run.model


def student_loss_name(config) -> str:
    """A short name for a run's student loss: ``SAF (soft eps 0.1, vad)`` or ``no SAF (CE
    students)``; a student weight g2 other than 1 is named too (``no SAF (CE students, g2
    0.213)``, the scale-matched control of :mod:`safsd_glnet.notebook.saf_comparison`)."""
    loss = config.loss
    weight = "" if loss.student_weight == 1 else f", g2 {loss.student_weight:.3g}"
    if not loss.use_saf:
        return f"no SAF (CE students{weight})"
    detail = {"soft": f" eps {loss.saf_eps:g}", "penalty": f" lambda {loss.saf_lambda:g}"}.get(loss.saf_mode, "")
    return f"SAF ({loss.saf_mode}{detail}, {loss.similarity}{weight})"


def load_run(run_dir: str | Path, corpus=None, device="cpu"):
    """``(config, metrics, model)`` of a finished run folder; the model is the chosen epoch's,
    in eval mode. With ``corpus`` given, check that the model can read it."""
    run_dir = Path(run_dir)
    for name in ("config.json", "metrics.json", "checkpoint_best.pt"):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir}: not a finished run folder (no {name})")
    stored = files.read_json(run_dir / "config.json")
    stored.pop("data", None)
    model, info = load_model(run_dir / "checkpoint_best.pt", device)
    if corpus is not None:
        align_corpus(info["data"], corpus, str(run_dir))
    return Config.from_dict(stored), files.read_json(run_dir / "metrics.json"), model


# --------------------------------------------------------------------------- notebooks

def for_corpus(config: Config, corpus, log: Callable[[str], None] | None = print) -> Config:
    """``config`` restricted to the modalities the corpus has, when it asks for more (the text
    features built from the MELD or IEMOCAP sentences have text only: the model is then the
    text-only SAFSD-GLNet of the README's results, its students one text head). A modality that
    is asked for and missing altogether is left for :func:`~safsd_glnet.training.train.train` to refuse."""
    wanted = config.model.modalities
    have = tuple(m for m in wanted if m in corpus.feature_sizes)
    if not have or have == wanted:
        return config
    if log is not None:
        from ..dataset_facts import MODALITY_NAMES

        log(f"{corpus.name} has {', '.join(MODALITY_NAMES[m] for m in corpus.feature_sizes)} features only: "
            f"the model reads {', '.join(MODALITY_NAMES[m] for m in have)} (model.modalities={''.join(have)})")
    return config.replace(model={"modalities": "".join(have)})


class RunFolderTaken(DataError):
    """A notebook's run folder holds another run. In a notebook it shows as its one-line message,
    without a traceback (IPython asks an exception for ``_render_traceback_``): the message says
    everything, and Run All still stops there."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


def train_here(config: Config, corpus, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
               callback=None):
    """:func:`~safsd_glnet.training.train.train` into ``run_dir`` from a notebook: a folder that holds
    another run is refused before anything is written, with a one-line message in the
    notebook's terms (its ``RUN_DIR``, ``RESUME`` and ``OVERWRITE`` parameters) instead of the
    command line's flags (:class:`RunFolderTaken`). A run keeps the data's fingerprint beside it
    (:func:`write_fingerprint`): notebook 3 can then reuse it, and a run made on other data is
    refused here as well (resuming it would mix two corpora in one run)."""
    stored = Path(run_dir) / "data_fingerprint.txt"
    if not overwrite and holds_run(run_dir) and stored.is_file() and \
            stored.read_text().strip() != corpus_fingerprint(corpus):
        raise RunFolderTaken(f"{run_dir}: this run folder already holds a run made on other data (another DATA, "
                             "SYNTH_SIZES or SYNTH_DIALOGUES, say). Set OVERWRITE = True in the parameters cell to "
                             "replace it, or set RUN_DIR to another folder; nothing was changed")
    try:
        with kernel_busy():
            run = train(config, corpus, run_dir, resume=resume, overwrite=overwrite, callback=callback)
    except (DataError, ValueError) as e:
        text = str(e)
        if "started with another configuration" in text:
            what = "a run made with other settings (another PRESET, DATA or SET, say)"
        elif "already holds" in text:
            what = "a run" + (" (an unfinished one)" if "unfinished" in text else "")
        else:
            raise
        raise RunFolderTaken(f"{run_dir}: this run folder already holds {what}. Set OVERWRITE = True in the "
                             "parameters cell to replace it, or set RUN_DIR to another folder; nothing was "
                             "changed") from None
    write_fingerprint(corpus, run_dir)
    return run


def device_line(device, requested: str = "auto") -> str:
    """What a notebook says about where it trains: the GPU's name, Apple's GPU, or the CPU with
    its torch threads (and that no GPU was found, when ``requested`` was ``auto``)."""
    import torch

    if device.type == "cuda":
        return f"training on the GPU: {torch.cuda.get_device_name(device)} ({device})"
    if device.type == "mps":
        return "training on the Apple GPU (mps)"
    threads = f"training on the CPU ({torch.get_num_threads()} threads)"
    return f"{threads}: no GPU found" if requested == "auto" else threads


def folder_files(folder: str | Path) -> list[dict[str, Any]]:
    """The files of a run folder that a reader cares about, by name, with their size in KiB:
    hidden files (the training lock ``.lock``, temporaries) are left out."""
    return [{"file": p.name, "KiB": p.stat().st_size / 1024} for p in sorted(Path(folder).iterdir())
            if p.is_file() and not p.name.startswith(".")]


# Parameters of 04_ablation.ipynb that name the variant of a run trained by hand: every parameter that
# sets a model or loss field (ablate.PARAMETER_FIELDS), not those that say how long, with which seed,
# on what device, or on what data.
VARIANT_PARAMETERS = tuple(k for k in PARAMETER_FIELDS if k not in ("EPOCHS", "SEED", "DEVICE"))
# EPOCHS also names the run when it differs from the notebooks' default (that of the headless sequence,
# QUICK): a teacher who trains longer gets a second run beside the first, as for a switch.
NOTEBOOK_EPOCHS = QUICK["EPOCHS"]


def variant_name(parameters: Mapping[str, Any]) -> str:
    """A folder-safe name for the ablation variant that ``parameters`` describe: ``full`` when
    no ablation parameter is set, else the set ones, e.g. ``use_saf=false`` or
    ``similarity=prior+gamma=0.0`` (``SET`` entries are added the same way), and ``epochs=N``
    when ``EPOCHS`` is not the notebooks' default (:data:`NOTEBOOK_EPOCHS`)."""
    parts = [f"{k.lower()}={_slug(v)}" for k, v in parameters.items() if k in VARIANT_PARAMETERS and v is not None]
    parts += [_slug(s) for s in (parameters.get("SET") or [])]
    epochs = parameters.get("EPOCHS", NOTEBOOK_EPOCHS)
    if epochs != NOTEBOOK_EPOCHS:
        parts.append(f"epochs={_slug(epochs)}")
    return "+".join(parts) or "full"


def _slug(value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9_.=]+", "_", text).strip("_")


def manual_run_dir(parameters: Mapping[str, Any], root: str | Path = "../runs/ablation") -> Path:
    """``root/<variant>-seed<SEED>``: where notebook 4 puts a run made by hand when ``RUN_DIR``
    is empty, so that each changed parameter gets its own folder and notebook 5 compares them."""
    return Path(root) / f"{variant_name(parameters)}-seed{parameters.get('SEED', 0)}"


def result_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The test scores of a run under both protocols, as table rows: the honest one (epoch
    chosen by validation weighted F1) and the reference one (the best test epoch; its macro F1
    is the one of that epoch, read from the history)."""
    test, ref = metrics["test"], metrics["reference_protocol"]
    at_ref = next((r["test"] for r in metrics.get("history", []) if r["epoch"] == ref["epoch"]), {})
    return [
        {"protocol": f"honest: epoch {metrics['chosen_epoch']} (best validation)", "accuracy": test["accuracy"],
         "weighted F1": test["weighted_f1"], "macro F1": test["macro_f1"]},
        {"protocol": f"reference: epoch {ref['epoch']} (best test, optimistic)", "accuracy": ref["accuracy"],
         "weighted F1": ref["weighted_f1"], "macro F1": at_ref.get("macro_f1", "n/a")},
    ]
