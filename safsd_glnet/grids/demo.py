"""The kit's main job: the five notebooks run headless, in order (``safsd-glnet demo`` and
``safsd-glnet figures``), on the built-in synthetic data (:data:`QUICK`) or on the real MELD
text (:func:`real_meld_settings`)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

from .ablation import Grid, format_summary, run_grid
from .papermill_runner import NOTEBOOKS, repo_root, run_notebook


# Settings of the headless sequence (`safsd-glnet demo` / `safsd-glnet figures`): the small
# preset on synthetic IEMOCAP with reduced feature sizes and a reduced corpus, so that all five
# notebooks, the quick ablation grid included, finish in minutes on a laptop CPU.
QUICK = {
    "DATA": "synthetic:iemocap",
    "SYNTH_SIZES": {"t": 100, "a": 80, "v": 60},
    "SYNTH_DIALOGUES": 80,
    "PRESET": "small",
    "EPOCHS": 16,
}

# Where `safsd-glnet figures --meld DIR` writes, below the figures folder.
REAL_MELD_FIGURES = "real-meld"

# Changes to the small preset for the MELD text (MiniLM sentence vectors, text only): the
# settings the README's real-text results chose on MELD's validation split (dropout 0.5, no
# class weights; experiments/real_text.py, TEXT_SETTINGS), with at most 30 epochs and early
# stopping after 10 without a better validation score, so that the whole sequence fits in
# minutes on a laptop CPU.
REAL_MELD_SET = ("model.dropout=0.5", "loss.class_weights=none", "train.patience=10")


def real_meld_settings(folder: str | Path, epochs: int = 30) -> dict[str, Any]:
    """Settings of the sequence on the MELD text release in ``folder`` (``safsd-glnet data meld
    --out DIR`` writes it): the full corpus (1038 / 114 / 280 dialogues), text features built
    through the cache, the small preset with :data:`REAL_MELD_SET`, no synthetic corpus in the
    dialogue browser."""
    from ..data import DataError, check_data_spec

    if not Path(folder).is_dir():
        raise DataError(f"{folder}: no such folder; fetch the MELD text with: safsd-glnet data meld --out {folder}")
    folder = str(Path(folder).resolve())
    check_data_spec(folder, where="MELD folder")
    return {"DATA": folder, "PRESET": "small", "EPOCHS": int(epochs), "SET": list(REAL_MELD_SET), "BROWSE": []}


def run_all(out_dir: str | Path = "runs/notebooks", figures_dir: str | Path = "figures", *,
            grid: str | Path | None = None, settings: Mapping[str, Any] | None = None, workers: int = 1,
            notebooks: tuple[str, ...] = NOTEBOOKS, embedding: str | None = None,
            extra: Mapping[str, Mapping[str, Any]] | None = None, threads: int | None = None,
            log: Callable[[str], None] = print, umap: str | None = None) -> dict[str, Any]:
    """Run the five notebooks headless, in order, on ``settings`` (default :data:`QUICK`).

    Executed notebooks go to ``out_dir`` (01-03 and 05 directly, the ablation runs of 04 under
    ``out_dir/ablation/<variant>-seed<k>/``), figures to ``figures_dir``. Notebook 1 explores
    the whole corpus named by ``settings["DATA"]`` (synthetic data at its standard size);
    notebooks 2-4 train on ``settings`` (``DATA``, ``SYNTH_SIZES``, ``SYNTH_DIALOGUES``,
    ``PRESET``, ``EPOCHS``, ``SET``). ``grid`` is the ablation grid; by default
    ``ablations/quick.yaml``, whose base then takes the data and training settings of
    ``settings``; a grid given here keeps its own base and gets ``settings`` only where it
    leaves them out. ``embedding`` is the map method of notebook 3 (None: the notebook's
    default, ``"lda"``; ``"pca"``, ``"umap"``; ``umap`` is its old name); ``extra`` adds
    parameters per notebook, keyed by number (``{"03": {"MAX_POINTS": 500}}``); ``threads``
    caps each kernel's CPU threads. Returns {"seconds": {notebook: s}, "ablation": GridResult,
    "out_dir", "figures_dir"}; a failing notebook raises.
    """
    s = dict(QUICK if settings is None else settings)
    extra = {str(k): dict(v) for k, v in (extra or {}).items()}
    embedding = embedding or umap
    out = Path(out_dir).resolve()
    figures = Path(figures_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    common = {"DATA": s["DATA"], "SYNTH_SIZES": s.get("SYNTH_SIZES", {}),
              "SYNTH_DIALOGUES": s.get("SYNTH_DIALOGUES", 0)}
    training = {**common, "PRESET": s.get("PRESET", "small"), "EPOCHS": s.get("EPOCHS", 0), "SET": list(s.get("SET", []))}
    seconds: dict[str, float] = {}
    result: dict[str, Any] = {"seconds": seconds, "out_dir": out, "figures_dir": figures}

    def run(name: str, params: dict[str, Any]) -> None:
        t0 = time.time()
        log(f"[{name}] running ...")
        run_notebook(name, out / name, {**params, **extra.get(name[:2], {})}, threads=threads)
        seconds[name] = time.time() - t0
        log(f"[{name}] done in {seconds[name]:.0f} s -> {out / name}")

    if "01_data_exploration.ipynb" in notebooks:
        # the whole corpus at its real sizes: exploring it needs no training, so it stays cheap
        first = {"DATA": s["DATA"], "FIGURES_DIR": str(figures), "RUN_DIR": str(out / "01_data_exploration")}
        if "BROWSE" in s:
            first["BROWSE"] = list(s["BROWSE"])
        run("01_data_exploration.ipynb", first)
    if "02_training.ipynb" in notebooks:
        run("02_training.ipynb", {**training, "RUN_DIR": str(out / "02_training"), "FIGURES_DIR": str(figures),
                                  "LIVE_PLOT": False})
    if "03_confusion_and_embeddings.ipynb" in notebooks:
        # notebook 2's run is seed 0's SAF run of notebook 3 (the same settings on the same data): read back
        third = {**training, "WORK_DIR": str(out / "03_runs"), "FIGURES_DIR": str(figures),
                 "REUSE_FROM": [str(out / "02_training")]}
        if embedding:
            third["EMBEDDING"] = embedding
        run("03_confusion_and_embeddings.ipynb", third)
    ablation_dir = out / "ablation"
    if "04_ablation.ipynb" in notebooks:
        grid_obj = Grid.load(grid or repo_root() / "ablations" / "quick.yaml")
        for key, value in {**training, **extra.get("04", {})}.items():
            if grid is None or key not in grid_obj.base:
                grid_obj.base[key] = value
        t0 = time.time()
        log(f"[04_ablation.ipynb] grid {grid_obj.source}")
        res = run_grid(grid_obj, ablation_dir, workers=workers, threads=threads, log=log)
        seconds["04_ablation.ipynb"] = time.time() - t0
        result["ablation"] = res
        log(format_summary(res, grid_obj))
    if "05_ablation_report.ipynb" in notebooks:
        run("05_ablation_report.ipynb", {"RUNS_DIR": str(ablation_dir), "FIGURES_DIR": str(figures)})
    return result
