"""``train --seeds ... --executor dask|slurm``: one task per seed, each running
:func:`safsd_glnet.training.train.train` into ``<out>/seed<k>`` on a worker, then the same
``summary.json`` as :func:`safsd_glnet.training.train.train_seeds` (which stays the local path:
the seeds one after the other in this process).

Each task loads the corpus itself from its data spec (a file on the filesystem the workers
share, or ``synthetic:...``), so no corpus travels through the scheduler. A failing seed is
reported and the others go on; the summary is over the seeds that finished. Without a shared
filesystem each seed trains in a folder on its worker and its small files (``config.json``,
``metrics.json``, ``test_predictions.csv``) come back into ``<out>/seed<k>``.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..data import atomic_files as files
from ..training import run_folder_guard as run_folder
from ..data.corpus import DataError
from .executors import Executor, gather

RETURNED = ("config.json", "metrics.json", "test_predictions.csv")


def seed_folder(out_dir: Path, seed: int, shared_fs: bool = True, worker_dir: str | None = None) -> Path:
    """``<out>/seed<k>``, or its place on a worker without a shared filesystem."""
    if shared_fs:
        return out_dir / f"seed{seed}"
    digest = hashlib.sha1(str(out_dir).encode()).hexdigest()[:12]
    return Path(worker_dir or tempfile.gettempdir()) / "safsd-glnet-runs" / f"{out_dir.name}-{digest}" / f"seed{seed}"


def train_one(config: Any, data: str, data_options: Mapping[str, Any], folder: str, resume: bool, overwrite: bool,
              threads: int | None, send_files: bool) -> dict[str, Any]:
    """One seed on a worker: load the corpus, train into ``folder``; returns {"metrics", "files"}."""
    import torch

    from ..data import load_data
    from ..training.train import train

    if threads:
        torch.set_num_threads(int(threads))
    corpus = load_data(data, **dict(data_options))
    run = train(config, corpus, folder, resume=resume, overwrite=overwrite)
    returned = {name: (Path(folder) / name).read_bytes() for name in RETURNED
                if send_files and (Path(folder) / name).is_file()}
    return {"metrics": run.metrics, "files": returned}


def train_seeds_on(executor: Executor, config: Any, data: str, data_options: Mapping[str, Any],
                   seeds: Sequence[int], out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
                   threads: int | None = None, progress: bool = True,
                   log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train ``config`` once per seed on ``executor``; returns the summary (also written to
    ``<out>/summary.json``) with ``failed`` {seed: error} added when a seed failed.

    Checked before anything is submitted: the data spec (without reading it), and that no
    seed folder holds a run that neither ``resume`` nor ``overwrite`` says what to do with."""
    from ..data import check_data_spec
    from ..training.train import seed_line, seed_summary

    out = Path(out_dir).resolve()
    say = log or (lambda _msg: None)
    if run_folder.holds_run(out):
        raise DataError(f"{out}: holds a single run; several seeds need a folder of their own "
                        "(each seed trains into <folder>/seed<k>)")
    check_data_spec(data, "--data")
    executor.check()
    for seed in seeds:
        sub = out / f"seed{seed}"
        if run_folder.holds_run(sub) and not (resume or overwrite):
            raise DataError(f"{sub}: already holds a run; pass --resume to continue it, --overwrite to replace it, "
                            "or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    quiet = config.replace(train={"progress": False})  # a worker's progress bars would go to its log
    calls = [(quiet.replace(train={"seed": s}), data, dict(data_options),
              str(seed_folder(out, s, executor.shared_fs, executor.worker_dir)), resume, overwrite,
              threads or executor.default_threads(), not executor.shared_fs) for s in seeds]
    names = [f"seed{s}" for s in seeds]
    metrics: dict[int, dict[str, Any]] = {}
    failed: dict[int, str] = {}
    say(f"train: {len(seeds)} seeds on {executor.describe()} -> {out}")
    bar = None

    def arrived(name: str, value: Any, error: str | None) -> None:
        seed = int(name[len("seed"):])
        if error is not None:
            failed[seed] = error
            message = f"  seed {seed}: FAILED: {error}"
        else:
            folder = out / name
            folder.mkdir(exist_ok=True)
            for file, data_bytes in sorted(value["files"].items(), key=lambda kv: kv[0] == "metrics.json"):
                with files.atomic_path(folder / file) as tmp:  # metrics.json, the completion marker, last
                    tmp.write_bytes(data_bytes)
            metrics[seed] = value["metrics"]
            message = f"  {seed_line(seed, value['metrics'])}"
        if bar is not None:
            bar.update(1)
            bar.write(message)
        else:
            say(message)

    try:
        with executor:
            executor.prepare(out, say)
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(seeds), desc="seeds", unit="seed", dynamic_ncols=True)
            gather(executor, train_one, calls, names, arrived)
    finally:
        if bar is not None:
            bar.close()
    if not metrics:
        raise RuntimeError(f"train: every seed failed; first: seed {min(failed)}: {failed[min(failed)]}")
    summary = seed_summary([s for s in seeds if s in metrics], [metrics[s] for s in seeds if s in metrics])
    if failed:
        summary["failed"] = {str(s): e for s, e in sorted(failed.items())}
    files.write_json(out / "summary.json", summary)
    return summary
