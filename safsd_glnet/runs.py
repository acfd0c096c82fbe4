"""Finished run folders in notebooks and reports: reuse a run made with the same settings on
the same data, read one back, and name its student loss."""
from __future__ import annotations

from pathlib import Path

from . import files
from .config import Config
from .run_folder import holds_run
from .train import align_corpus, load_model, train


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


def train_or_reuse(config, corpus, out_dir: str | Path, callback=None):
    """Train into ``out_dir``, or reuse the run already there when it finished with the same
    configuration on the same data; returns ``(metrics, model)`` (the model at the chosen epoch).

    This keeps re-running a notebook cheap: a finished run is read back, anything else
    (no run, another configuration or data, an interrupted run) trains from scratch. The
    data's :func:`corpus_fingerprint` is kept in ``out_dir/data_fingerprint.txt``."""
    out = Path(out_dir)
    fingerprint = corpus_fingerprint(corpus)
    paths = [out / n for n in ("config.json", "metrics.json", "checkpoint_best.pt", "data_fingerprint.txt")]
    if all(f.exists() for f in paths):
        stored = files.read_json(paths[0])
        stored.pop("data", None)
        try:
            same = Config.from_dict(stored) == config
        except ValueError:  # a config.json of another version of the kit: train again
            same = False
        if same and paths[3].read_text().strip() == fingerprint:
            model, _ = load_model(paths[2])
            return files.read_json(paths[1]), model
    # Anything else in the folder is a run this notebook made before with other settings: replace it.
    run = train(config, corpus, out, overwrite=holds_run(out), callback=callback)
    files.write_text(paths[3], fingerprint + "\n")
    return run.metrics, run.model


def student_loss_name(config) -> str:
    """A short name for a run's student loss: ``SAF (soft, vad)`` or ``no SAF (CE students)``."""
    loss = config.loss
    if not loss.use_saf:
        return "no SAF (CE students)"
    return f"SAF ({loss.saf_mode}, {loss.similarity})"


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
