"""Ablation grids: run ``notebooks/04_ablation.ipynb`` once per (variant, seed) with papermill,
then collect the run folders into the ablation table.

A grid file (YAML) is a base, named variants and seeds::

    name: paper                      # optional, shown in the summary
    seeds: [0, 1, 2]
    base:                            # parameters of 04_ablation.ipynb shared by every run
      DATA: synthetic:iemocap
      PRESET: small
    variants:                        # name -> parameters that differ from the base
      full: {}
      no_gcn: {label: "w/o GCN", USE_GCN: false}

Parameter names are those of the notebook's ``parameters`` cell (``papermill
--help-notebook notebooks/04_ablation.ipynb`` lists them); a lower-case ``label`` gives the
variant's name in tables and figures. Unknown parameter names are refused before anything
runs, so a typo cannot silently run the full model under another name.

Each run goes to ``<out>/<variant>-seed<k>/``: the executed notebook ``04_ablation.ipynb``
beside the ``config.json`` and ``metrics.json`` that training writes, and ``run.json``, the
runner's record (parameters, status ``done`` or ``failed`` with the error, seconds).

* A run whose ``run.json`` says ``done`` with the same parameters and whose ``metrics.json``
  exists is skipped.
* A failed run is recorded and the others go on; the next invocation retries it (unless
  ``skip_failed``).
* A killed grid resumes where it stopped: unfinished runs start again and training itself
  resumes from the run's last epoch checkpoint (the notebook's ``RESUME`` parameter).
* A folder holding a run made with other parameters is left alone and reported (``force``
  re-runs it from scratch).
* A folder is never run by two processes at once: the submitting process holds
  ``.queue.lock`` from submission to result, the process that runs the notebook
  ``.runner.lock``; a folder another invocation holds is left to it.

Where the runs execute is an :class:`~safsd_glnet.grids.executors.Executor`: this machine (the
default), Dask or SLURM; an optional ``cluster:`` section of the grid file holds its settings
(see :func:`safsd_glnet.grids.executors.make_executor`).

Reading the runs back and the ablation table: :mod:`safsd_glnet.grids.ablation_report`.
"""
from __future__ import annotations

import json
import re
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..data import atomic_files as files
from ..data.corpus import DataError
from .ablation_report import RUN_RECORD, ablation_markdown, collect_runs, summarise
from .executors import Executor, LocalExecutor, gather
from .papermill_runner import notebook_parameters, notebook_path, run_notebook
from ..training.run_folder_guard import QUEUE_LOCK_NAME as QUEUE_LOCK  # held by the submitting process until the result is back
from ..training.run_folder_guard import RUNNER_LOCK_NAME as RUNNER_LOCK  # held while this process runs a folder's notebook

if TYPE_CHECKING:
    from ..config import Config

ABLATION_NOTEBOOK = "04_ablation.ipynb"
VARIANT_NAME = re.compile(r"^[A-Za-z0-9_.+]+$")


# --------------------------------------------------------------------------- notebook parameters

# The ablation notebook's parameters that set one config field each (the rest: PRESET picks
# the preset, SET holds any other "section.field=value", data and folders are not config).
PARAMETER_FIELDS = {
    "MODALITIES": "model.modalities",
    "USE_TRANSFORMER": "model.use_transformer",
    "USE_GCN": "model.use_gcn",
    "USE_MASK": "model.use_mask",
    "MASK_PROB": "model.mask_prob",
    "USE_SAF": "loss.use_saf",
    "SIMILARITY": "loss.similarity",
    "SAF_MODE": "loss.saf_mode",
    "SAF_LAMBDA": "loss.saf_lambda",
    "SAF_EPS": "loss.saf_eps",
    "SAF_BETA": "loss.saf_beta",
    "GAMMA": "loss.gamma",
    "USE_DISTILLATION": "loss.use_distillation",
    "TEACHER_WEIGHT": "loss.teacher_weight",
    "STUDENT_WEIGHT": "loss.student_weight",
    "DISTILL_WEIGHT": "loss.distill_weight",
    "TEMPERATURE": "loss.temperature",
    "EPOCHS": "train.epochs",
    "SEED": "train.seed",
    "DEVICE": "train.device",
}


def config_from_parameters(params: Mapping[str, Any]) -> "Config":
    """The run's :class:`~safsd_glnet.config.Config` from notebook parameters: the ``PRESET``
    (default ``small``), then each parameter of :data:`PARAMETER_FIELDS` that is given (None,
    and ``EPOCHS`` 0, keep the preset's value), then the ``SET`` overrides."""
    from ..config import preset

    cfg = preset(params.get("PRESET", "small"))
    changes: dict[str, dict[str, Any]] = {}
    for name, dotted in PARAMETER_FIELDS.items():
        value = params.get(name)
        if value is None or (name == "EPOCHS" and value == 0):
            continue
        section, key = dotted.split(".")
        changes.setdefault(section, {})[key] = value
    if changes:
        cfg = cfg.replace(**changes)
    extra = params.get("SET") or []
    if isinstance(extra, str):
        extra = [extra]
    return cfg.override(*extra) if extra else cfg


_PAPERMILL_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "dict": (dict,),
                    "list": (list, tuple)}


def _check_type(where: str, name: str, value: Any, declared: Mapping[str, Any]) -> None:
    """A parameter's value against the type its ``parameters`` cell declares (``EPOCHS: int``)."""
    kinds = _PAPERMILL_TYPES.get(str(declared.get("inferred_type_name", "")).strip())
    if kinds is None or value is None:
        return  # undeclared, or None (which the notebooks read as "keep the preset's value")
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise ValueError(f"{where}: {name}={value!r} should be {declared['inferred_type_name']} "
                         f"({ABLATION_NOTEBOOK} declares {name}: {declared['inferred_type_name']})")


# --------------------------------------------------------------------------- grids

@dataclass
class Variant:
    name: str
    label: str
    parameters: dict[str, Any]  # differences from the base


@dataclass
class Grid:
    """A base of notebook parameters, ordered variants and seeds (see the module docstring)."""

    base: dict[str, Any]
    variants: list[Variant]
    seeds: list[int]
    name: str = "grid"
    source: str = "<memory>"
    cluster: dict[str, Any] = field(default_factory=dict)  # executor settings (executors.SETTINGS)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "<memory>") -> "Grid":
        where = f"{source}"
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}: a grid is a mapping with base, variants and seeds")
        unknown = set(d) - {"name", "base", "variants", "seeds", "description", "cluster"}
        if unknown:
            raise ValueError(f"{where}: unknown grid keys {sorted(unknown)} (expected name, base, variants, seeds, "
                             "cluster)")
        from .executors import check_settings

        cluster = check_settings(d.get("cluster") or {}, f"{where}: cluster")
        base = dict(d.get("base") or {})
        seeds = d.get("seeds", [0])
        if isinstance(seeds, int):
            seeds = [seeds]
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise ValueError(f"{where}: seeds must be a non-empty list of integers, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{where}: seed listed twice in {seeds}")
        raw = d.get("variants")
        if not raw or not isinstance(raw, Mapping):
            raise ValueError(f"{where}: variants must be a non-empty mapping name -> parameters")
        variants = []
        for name, params in raw.items():
            name = str(name)
            if not VARIANT_NAME.match(name):
                raise ValueError(f"{where}: variant name {name!r} must use letters, digits, '_', '.', '+' only "
                                 "(it names a folder)")
            params = dict(params or {})
            label = str(params.pop("label", name))
            if "SEED" in params or "SEED" in base:
                raise ValueError(f"{where}: variant {name!r}: SEED comes from the grid's seeds, not the parameters")
            variants.append(Variant(name, label, params))
        for key in ("SEED", "RUN_DIR"):
            if key in base:
                raise ValueError(f"{where}: base sets {key}, which the runner chooses per run")
        return cls(base, variants, [int(s) for s in seeds], str(d.get("name", Path(source).stem)), source, cluster)

    @classmethod
    def load(cls, path: str | Path) -> "Grid":
        import yaml

        from ..data.safe.foreign_files import regular_file

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such grid file")
        regular_file(path, "grid file")  # a pipe or a device would block or never end
        try:
            d = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({e})") from None
        return cls.from_dict(d, str(path))

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"{self.source}: no variant {name!r}")

    def check_parameters(self, known: Mapping[str, Any]) -> None:
        """Refuse parameter names that the notebook does not have, and values it could not use,
        before any kernel starts (``known``: name -> papermill's description of the parameter).

        Checked per (variant, seed): each value's type against the notebook's declaration,
        the run's configuration (:func:`config_from_parameters`, which validates every field,
        ``EPOCHS`` included) and ``DATA`` (:func:`safsd_glnet.data.check_data_spec`: a known
        form, and an existing file). A typo then costs nothing instead of one failed run each."""
        for where, params in [("base", self.base)] + [(f"variant {v.name!r}", v.parameters) for v in self.variants]:
            unknown = sorted(set(params) - set(known))
            if unknown:
                raise ValueError(f"{self.source}: {where} sets {unknown}, which {ABLATION_NOTEBOOK} does not have; "
                                 f"its parameters are {sorted(known)}")
        from ..data import check_data_spec

        checked_data = set()
        for v in self.variants:
            params = {**self.base, **v.parameters, "SEED": self.seeds[0]}
            where = f"{self.source}: variant {v.name!r}"
            for name, value in params.items():
                _check_type(where, name, value, known.get(name, {}))
            try:
                config_from_parameters(params)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            data = params.get("DATA")
            if isinstance(data, str) and data not in checked_data:
                check_data_spec(data, where=f"{where}: DATA")
                checked_data.add(data)

    def runs(self, out_dir: str | Path) -> list["RunSpec"]:
        """Every (variant, seed) run, variant-major, with its folder and full parameters
        (a relative ``DATA`` path is made absolute against the current directory, because the
        notebook runs in its own folder)."""
        out = Path(out_dir).resolve()
        specs = []
        for index, v in enumerate(self.variants):
            for seed in self.seeds:
                name = f"{v.name}-seed{seed}"
                folder = out / name
                params = {**self.base, **v.parameters, "SEED": seed, "RUN_DIR": str(folder)}
                data = params.get("DATA")
                if isinstance(data, str) and not data.startswith("synthetic:") and not Path(data).is_absolute():
                    params["DATA"] = str(Path(data).resolve())
                specs.append(RunSpec(name, v.name, v.label, seed, index, folder, params))
        return specs


@dataclass
class RunSpec:
    name: str  # folder name, <variant>-seed<k>
    variant: str
    label: str
    seed: int
    index: int  # the variant's position in the grid (table order)
    folder: Path
    parameters: dict[str, Any]

    def record(self) -> dict[str, Any] | None:
        path = self.folder / RUN_RECORD
        if not path.exists():
            return None
        try:
            return files.read_json(path)
        except ValueError:
            return None

    def comparable_parameters(self) -> dict[str, Any]:
        """Parameters without RUN_DIR (a grid may be moved) and through JSON (tuples == lists)."""
        return json.loads(json.dumps({k: v for k, v in self.parameters.items() if k not in ("RUN_DIR", "RESUME")}))

    def state(self) -> str:
        """``new``, ``done``, ``failed``, ``unfinished`` (started, never recorded) or ``stale``
        (the folder holds a run made with other parameters)."""
        rec = self.record()
        if rec is None:
            return "unfinished" if self.folder.exists() and any(self.folder.iterdir()) else "new"
        if rec.get("parameters") != self.comparable_parameters():
            return "stale"
        if rec.get("status") == "done" and (self.folder / "metrics.json").exists():
            return "done"
        if rec.get("status") == "failed":
            return "failed"
        return "unfinished"


# --------------------------------------------------------------------------- running

def execute_run(spec: RunSpec, notebook: str | Path, kernel_name: str = "python3",
                timeout: float | None = None, threads: int | None = None) -> dict[str, Any]:
    """Execute the ablation notebook for one run and write its ``run.json``; never raises for
    a failing notebook (the error is recorded and returned)."""
    from ..training.run_folder_guard import RunLock

    spec.folder.mkdir(parents=True, exist_ok=True)
    try:
        with RunLock(spec.folder, RUNNER_LOCK):
            if spec.state() == "done":  # finished by another invocation while this one waited in a queue
                return {**spec.record(), "already_done": True}
            return _execute_locked(spec, notebook, kernel_name, timeout, threads)
    except DataError as e:  # another ablate process runs this folder: leave it (and its run.json) alone
        return {"name": spec.name, "variant": spec.variant, "label": spec.label, "seed": spec.seed,
                "index": spec.index, "status": "busy", "error": str(e)}


def _execute_locked(spec: RunSpec, notebook: str | Path, kernel_name: str, timeout: float | None,
                    threads: int | None) -> dict[str, Any]:
    started = time.time()
    record = {"name": spec.name, "variant": spec.variant, "label": spec.label, "seed": spec.seed,
              "index": spec.index, "parameters": spec.comparable_parameters(), "status": "running",
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "start_time": started}
    files.write_json(spec.folder / RUN_RECORD, record)
    try:
        run_notebook(notebook, spec.folder / Path(notebook).name, {**spec.parameters, "RESUME": True},
                     kernel_name=kernel_name, timeout=timeout, threads=threads)
        if not (spec.folder / "metrics.json").exists():
            raise RuntimeError(f"{Path(notebook).name} finished without writing {spec.folder / 'metrics.json'}")
        record.update(status="done")
    except Exception as e:  # a failing run must not stop the grid: record it and go on
        record.update(status="failed", error=_error_text(e), traceback=traceback.format_exc(limit=3))
    record["end_time"] = time.time()  # wall clock of the machine that ran it (benchmarks/executors.py)
    record["seconds"] = round(record["end_time"] - started, 1)
    files.write_json(spec.folder / RUN_RECORD, record)
    return record


def _error_text(e: BaseException) -> str:
    """One readable line: papermill's execution errors carry the notebook's exception."""
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return f"{type(e).__name__}: {e}"


def _execute_in_worker(spec: RunSpec, notebook: str, kernel_name: str, timeout: float | None,
                       threads: int | None) -> dict[str, Any]:
    return execute_run(spec, notebook, kernel_name, timeout, threads)


# The files of a run folder that come back without a shared filesystem (checkpoints stay).
RETURNED_SUFFIXES = (".json", ".ipynb", ".csv", ".png", ".pdf", ".txt")


def worker_folder(spec: RunSpec, worker_dir: str | None = None) -> Path:
    """Where a run trains on a worker without a shared filesystem:
    ``<worker_dir or the temporary folder>/safsd-glnet-runs/<hash of the grid's folder>/<run>``,
    the same on every call, so that a run that lands on the same worker again resumes there."""
    import hashlib
    import tempfile

    digest = hashlib.sha1(str(spec.folder.parent).encode()).hexdigest()[:12]
    return Path(worker_dir or tempfile.gettempdir()) / "safsd-glnet-runs" / f"{spec.folder.parent.name}-{digest}" \
        / spec.name


def execute_elsewhere(spec: RunSpec, notebook_name: str, notebook_bytes: bytes, kernel_name: str,
                      timeout: float | None, threads: int | None, worker_dir: str | None) -> dict[str, Any]:
    """:func:`execute_run` on a worker that does not share the grid's folder: the notebook
    (sent as bytes) runs into :func:`worker_folder`; returns {"record": run.json, "files":
    {name: bytes}} with the run folder's small files (:data:`RETURNED_SUFFIXES`), for the
    submitting side to write into its own folder."""
    import tempfile

    folder = worker_folder(spec, worker_dir)
    here = RunSpec(spec.name, spec.variant, spec.label, spec.seed, spec.index, folder,
                   {**spec.parameters, "RUN_DIR": str(folder)})
    with tempfile.TemporaryDirectory(prefix="safsd-notebook-") as tmp:
        notebook = Path(tmp) / notebook_name
        notebook.write_bytes(notebook_bytes)
        record = execute_run(here, notebook, kernel_name, timeout, threads)
    returned = {}
    if record["status"] != "busy":
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix in RETURNED_SUFFIXES and not path.name.startswith("."):
                returned[path.name] = path.read_bytes()
    return {"record": record, "files": returned}


def _write_returned(folder: Path, returned: Mapping[str, bytes]) -> None:
    """Write a run's returned files into ``folder``, each atomically, ``run.json`` last (with
    ``metrics.json`` it is what marks the run complete)."""
    for name in sorted(returned, key=lambda n: n == RUN_RECORD):
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"{folder}: a worker returned the file name {name!r}, which is not a plain file name")
        with files.atomic_path(folder / name) as tmp:
            tmp.write_bytes(returned[name])


@dataclass
class GridResult:
    out_dir: Path
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # run name -> run.json
    skipped: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # being run by another ablate process: left alone
    seconds: float = 0.0
    timings: dict[str, dict[str, float]] = field(default_factory=dict)  # run name -> {"submitted", "returned"}

    @property
    def failed(self) -> list[str]:
        return [n for n, r in self.records.items() if r.get("status") == "failed"]

    @property
    def done(self) -> list[str]:
        return [n for n, r in self.records.items() if r.get("status") == "done"]


def run_grid(grid: Grid, out_dir: str | Path, *, workers: int = 1, force: bool = False,
             skip_failed: bool = False, notebook: str | Path | None = None, kernel_name: str = "python3",
             timeout: float | None = None, threads: int | None = None, progress: bool = True,
             log: Callable[[str], None] | None = print, executor: Executor | None = None) -> GridResult:
    """Run every (variant, seed) of ``grid`` that is not complete yet; see the module docstring.

    Args:
        workers: runs executed at once on this machine, each in its own process and kernel
            (with several, each kernel gets an equal share of the CPU cores as its thread
            count unless ``OMP_NUM_THREADS`` is set); ignored when ``executor`` is given.
        force: re-run everything from scratch (run folders are emptied first).
        skip_failed: leave runs that failed before alone instead of retrying them.
        notebook: the ablation notebook (default ``notebooks/04_ablation.ipynb``).
        timeout: seconds per notebook cell (None: no limit).
        threads: CPU threads per kernel (None: the executor's default, see ``workers``).
        executor: where the runs execute (:mod:`safsd_glnet.grids.executors`; default
            ``LocalExecutor(workers)``). It is started here, after every parameter has been
            checked, and stopped before this returns; Ctrl-C cancels its queued and running
            runs and re-raises.
    """
    notebook = Path(notebook) if notebook is not None else notebook_path(ABLATION_NOTEBOOK)
    grid.check_parameters(notebook_parameters(notebook))
    executor = executor if executor is not None else LocalExecutor(max(workers, 1))
    executor.check()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_grid_copy(grid, out)
    result = GridResult(out.resolve())
    started = time.time()
    todo: list[RunSpec] = []
    say = log or (lambda _msg: None)
    for spec in grid.runs(out):
        state = spec.state()
        if force and spec.folder.exists():
            shutil.rmtree(spec.folder)
            state = "new"
        if state == "done":
            result.skipped.append(spec.name)
            result.records[spec.name] = spec.record()
        elif state == "stale":
            result.stale.append(spec.name)
            say(f"ablate: {spec.folder} holds a run made with other parameters; left alone "
                "(delete it, use another --out, or --force)")
        elif state == "failed" and skip_failed:
            result.records[spec.name] = spec.record()
        else:
            todo.append(spec)
    claims, todo = _claim(todo, result, say)
    total = len(grid.runs(out))
    say(f"ablate: grid {grid.name!r}: {_plural(len(grid.variants), 'variant')} x {_plural(len(grid.seeds), 'seed')} "
        f"= {_plural(total, 'run')}; "
        f"{len(result.skipped)} already complete, {len(todo)} to run on {executor.describe()} -> {out}")
    if todo and executor.name != "local":
        say("ablate: run folders on a filesystem the workers share: they write into them directly"
            if executor.shared_fs else
            "ablate: no shared filesystem: each run trains in a folder on its worker "
            f"({worker_folder(todo[0], executor.worker_dir).parent.parent}/...); its notebook and small files come "
            "back here, its checkpoints stay there")

    bar = None

    def finished(record: dict[str, Any]) -> None:
        name = record["name"]
        result.timings.setdefault(name, {})["returned"] = time.time()
        if record["status"] == "busy":
            result.busy.append(name)
            message = f"  {name}: left alone, {record['error']}"
        elif record.get("already_done"):
            result.skipped.append(name)
            result.records[name] = record
            message = f"  {name}: finished by another invocation meanwhile"
        else:
            result.records[name] = record
            status = record["status"] if record["status"] != "failed" else f"FAILED: {record.get('error')}"
            message = f"  {name}: {status} ({record.get('seconds', 0):.0f} s)"
        if bar is not None:
            bar.update(1)
            bar.set_postfix(failed=len(result.failed))
            bar.write(message)
        else:
            say(message)

    def arrived(name: str, value: Any, error: str | None) -> None:
        spec = by_name[name]
        if error is not None:  # the task itself died (worker lost, job killed): record it here
            record = {"name": spec.name, "variant": spec.variant, "label": spec.label, "seed": spec.seed,
                      "index": spec.index, "parameters": spec.comparable_parameters(), "status": "failed",
                      "error": error}
            files.write_json(spec.folder / RUN_RECORD, record)
        elif not executor.shared_fs:
            _write_returned(spec.folder, value["files"])
            record = value["record"]
        else:
            record = value
        finished(record)

    by_name = {spec.name: spec for spec in todo}
    if threads is None:
        threads = executor.default_threads()
    if executor.shared_fs:
        task = _execute_in_worker
        calls = [(spec, str(notebook), kernel_name, timeout, threads) for spec in todo]
    else:
        task, source = execute_elsewhere, notebook.read_bytes()
        calls = [(spec, notebook.name, source, kernel_name, timeout, threads, executor.worker_dir) for spec in todo]
    try:
        if todo:
            with executor:
                executor.prepare(out.resolve(), say)
                if progress:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=len(todo), desc="ablation runs", unit="run", dynamic_ncols=True)
                submitted = time.time()
                for spec in todo:
                    result.timings[spec.name] = {"submitted": submitted}
                gather(executor, task, calls, [spec.name for spec in todo], arrived)
    finally:
        if bar is not None:
            bar.close()
        for lock in claims:
            lock.__exit__(None, None, None)
    result.seconds = time.time() - started
    return result


def _claim(todo: list[RunSpec], result: GridResult, say: Callable[[str], None]) -> tuple[list[Any], list[RunSpec]]:
    """Take each folder's ``.queue.lock`` for this invocation; a folder that another one has
    queued, or whose notebook another process runs now (``.runner.lock``), is left to it
    (``result.busy``). Returns the held locks and the runs to submit."""
    from ..training.run_folder_guard import RunLock

    claims, mine = [], []
    for spec in todo:
        spec.folder.mkdir(parents=True, exist_ok=True)
        lock = RunLock(spec.folder, QUEUE_LOCK)
        try:
            lock.__enter__()
            with RunLock(spec.folder, RUNNER_LOCK):  # a probe: released at once, taken again by the runner
                pass
        except DataError as e:
            lock.__exit__(None, None, None)
            result.busy.append(spec.name)
            say(f"  {spec.name}: left alone, {e}")
            continue
        claims.append(lock)
        mine.append(spec)
    return claims, mine


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _write_grid_copy(grid: Grid, out: Path) -> None:
    """``<out>/grid.json``: the grid as run (variant order and labels for the report)."""
    files.write_json(out / "grid.json", {
        "name": grid.name, "source": grid.source, "base": grid.base, "seeds": grid.seeds,
        "variants": [{"name": v.name, "label": v.label, "parameters": v.parameters} for v in grid.variants],
    })


def format_summary(result: GridResult, grid: Grid | None = None) -> str:
    """The end-of-grid summary: counts, failures with their errors, and the table."""
    lines = [f"ablate: {len(result.done)} runs complete ({len(result.skipped)} of them skipped as already done), "
             f"{len(result.failed)} failed" + (f", {len(result.stale)} stale (left alone)" if result.stale else "")
             + (f", {len(result.busy)} left to another process" if result.busy else "")
             + f", in {result.seconds:.0f} s"]
    for name in result.failed:
        rec = result.records[name]
        lines.append(f"  FAILED {name}: {rec.get('error')} "
                     f"(executed notebook: {result.out_dir / name / ABLATION_NOTEBOOK})")
    records = collect_runs(result.out_dir)
    if records:
        rows = summarise(records)
        lines += ["", ablation_markdown(rows)]
    return "\n".join(lines)
