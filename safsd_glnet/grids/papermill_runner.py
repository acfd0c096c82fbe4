"""Running the kit's notebooks headless with papermill: where they are, their parameters, one
private kernel per run, and notebooks stored without outputs.

``notebooks/`` holds five notebooks, meant to be read in order in JupyterLab and run headless
with papermill:

=====================================  ==================================================
01_data_exploration.ipynb              what a conversation corpus looks like
02_training.ipynb                      train SAFSD-GLNet with live curves
03_confusion_and_embeddings.ipynb      confusions, similar pairs, UMAP maps; SAF vs no SAF
04_ablation.ipynb                      one parameterised run (the ablation runner's unit)
05_ablation_report.ipynb               run folders -> ablation table and bar chart
=====================================  ==================================================

Every notebook has a cell tagged ``parameters`` (``papermill --help-notebook NOTEBOOK``
lists them). Paths in the defaults are relative to ``notebooks/`` (where JupyterLab runs
them); :func:`run_notebook` therefore runs a notebook with its own folder as the working
directory, and callers pass absolute paths.

This module knows nothing of ablation grids (:mod:`safsd_glnet.grids.ablation`) or of the five-notebook
demo (:mod:`safsd_glnet.grids.demo`); both run their notebooks through :func:`run_notebook`.

The kernel is ``python3``. Inside this kit's virtual environment that kernel is the
environment's own Python (pip installs ``share/jupyter/kernels/python3`` into the
environment, which Jupyter searches first, and its command ``python`` resolves to the
interpreter running papermill), so nothing has to be registered.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..provenance import repo_root

NOTEBOOKS = (
    "01_data_exploration.ipynb",
    "02_training.ipynb",
    "03_confusion_and_embeddings.ipynb",
    "04_ablation.ipynb",
    "05_ablation_report.ipynb",
)
KERNEL_NAME = "python3"


class NotebookError(RuntimeError):
    """A notebook cell raised. ``ename`` / ``evalue`` are the exception's type and message in
    the kernel, ``output`` the executed notebook, which holds the full traceback."""

    def __init__(self, notebook: str, output: Path, ename: str, evalue: str, cell: Any = None):
        self.notebook, self.output, self.ename, self.evalue = notebook, output, ename, evalue
        where = f" in cell [{cell}]" if cell is not None else ""
        super().__init__(f"{notebook} failed{where}: {ename}: {evalue} (traceback in {output})")


def notebook_dir() -> Path:
    """``notebooks/`` of the checkout, or ``$SAFSD_GLNET_NOTEBOOKS`` where that is set."""
    env = os.environ.get("SAFSD_GLNET_NOTEBOOKS")
    folder = Path(env) if env else repo_root() / "notebooks"
    if not (folder / NOTEBOOKS[0]).exists():
        raise FileNotFoundError(
            f"{folder}: the kit's notebooks are not there. They ship with the source checkout "
            "(install with `pip install -e .` from it), or set SAFSD_GLNET_NOTEBOOKS to their folder.")
    return folder


def notebook_path(name: str | Path) -> Path:
    """A notebook by file name, stem, or number prefix: ``"04"``, ``"04_ablation"``,
    ``"04_ablation.ipynb"``; an existing path is returned as it is."""
    p = Path(name)
    if p.suffix == ".ipynb" and p.exists():
        return p.resolve()
    folder = notebook_dir()
    matches = [n for n in NOTEBOOKS if n == str(name) or n == f"{name}.ipynb" or n.split("_", 1)[0] == str(name)]
    if len(matches) != 1:
        raise FileNotFoundError(f"no notebook {str(name)!r}: expected one of {list(NOTEBOOKS)} (or their number)")
    return folder / matches[0]


def notebook_parameters(path: str | Path) -> dict[str, dict[str, Any]]:
    """name -> {"inferred_type_name", "default", "help"} of the notebook's ``parameters`` cell."""
    import papermill as pm

    return pm.inspect_notebook(str(path))


@contextmanager
def _kernel_environment(threads: int | None = None) -> Iterator[None]:
    """Environment variables that the kernel inherits, set for the duration of a run:

    * ``PYTHONPATH`` gains the checkout when the kit runs from source without being installed;
    * ``OMP_WAIT_POLICY=PASSIVE`` (unless set): torch's OpenMP threads sleep instead of
      spinning while they wait, which keeps a CPU run from slowing down many times over when
      other processes (parallel ablation runs, a second job) share the cores;
    * ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` = ``threads`` when given (e.g. one per worker
      when several runs share the machine).
    """
    changes = {}
    root = str(repo_root())
    path = os.environ.get("PYTHONPATH")
    if root not in (path.split(os.pathsep) if path else []):
        changes["PYTHONPATH"] = os.pathsep.join([root, path]) if path else root
    if "OMP_WAIT_POLICY" not in os.environ:
        changes["OMP_WAIT_POLICY"] = "PASSIVE"
    if threads:
        changes["OMP_NUM_THREADS"] = changes["MKL_NUM_THREADS"] = str(int(threads))
    old = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# Unix socket paths are limited to 104 (macOS) or 108 (Linux) bytes; past this length the kernel
# falls back to TCP rather than fail to bind.
_MAX_IPC_PATH = 96


@contextmanager
def _kernel_connection() -> Iterator[dict[str, Any]]:
    """papermill keywords that connect a headless kernel over private Unix sockets.

    Over TCP (Jupyter's default) the manager picks five free ports by binding to port 0 and
    releasing them, and the kernel binds them again a moment later. Two kernels starting at
    once in different processes (``ablate --workers 2``) can be handed the same port in
    between: the second kernel dies with ``ZMQError: Address already in use`` and its run
    fails after a 60-second start-up timeout (6 of 1200 starts with 8 at once on the 2-core
    development machine, see ``benchmarks/kernel_starts.py``). The ``ipc`` transport has no
    ports: the sockets are files (``kernel-ipc-1`` ... ``kernel-ipc-5`` beside ``kernel.json``)
    in a folder that only this run knows (``mkdtemp``, mode 0700), removed afterwards.
    Windows has no ``ipc`` transport and keeps TCP.
    """
    if os.name != "posix":
        yield {}
        return
    from traitlets.config import Config

    remove_stale_kernel_folders()
    folder = tempfile.mkdtemp(prefix=f"{KERNEL_FOLDER_PREFIX}{os.getpid()}-")
    connection_file = os.path.join(folder, "kernel.json")
    try:
        if len(connection_file) + 8 > _MAX_IPC_PATH:  # room for "kernel-ipc-N" with a margin
            yield {}
        else:
            yield {"config": Config({"KernelManager": {"transport": "ipc", "connection_file": connection_file}})}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


KERNEL_FOLDER_PREFIX = "safsd-kernel-"


def remove_stale_kernel_folders(root: str | Path | None = None) -> list[str]:
    """Remove ``safsd-kernel-<pid>-*`` socket folders whose process is gone.

    :func:`_kernel_connection` removes its folder when the run ends, but a killed process
    (``kill -9``, a lost SSH session) cannot; the next headless run sweeps up after it. Only
    this user's folders of dead processes are touched."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    for path in root.glob(f"{KERNEL_FOLDER_PREFIX}*"):
        pid_text = path.name[len(KERNEL_FOLDER_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or not path.is_dir():
            continue
        try:
            if path.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid_text), 0)  # raises when no such process exists
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
        except (PermissionError, OSError):
            continue  # alive under another user, or not ours to judge
    return removed


def run_notebook(notebook: str | Path, output: str | Path, parameters: Mapping[str, Any] | None = None, *,
                 cwd: str | Path | None = None, kernel_name: str = KERNEL_NAME, timeout: float | None = None,
                 threads: int | None = None, progress: bool = False, log_output: bool = False) -> Path:
    """Execute ``notebook`` with papermill into ``output`` (created folders included).

    ``notebook`` is a path or a name for :func:`notebook_path`; ``cwd`` defaults to the
    notebook's folder so that its relative default paths mean the same as in JupyterLab.
    A failing cell raises :class:`NotebookError` (with ``ename`` / ``evalue``); the executed
    notebook, traceback included, is still written to ``output``.
    ``threads`` caps the kernel's CPU threads (see :func:`_kernel_environment`); the kernel
    talks to papermill over private Unix sockets where it can (see :func:`_kernel_connection`).
    """
    import papermill as pm

    from ..data.atomic_files import check_write_target

    src = notebook_path(notebook)
    output = check_write_target(output, "executed notebook")  # papermill writes it in place: no links
    output.parent.mkdir(parents=True, exist_ok=True)
    with _kernel_environment(threads), _kernel_connection() as connection:
        try:
            # The kernel logs nothing to the terminal: each headless kernel would otherwise print
            # a warning about its local transport, and on Ctrl-C a ZMQ traceback of a reply it
            # can no longer send. A cell's own error is in the executed notebook either way.
            pm.execute_notebook(str(src), str(output), parameters=dict(parameters or {}), kernel_name=kernel_name,
                                cwd=str(cwd or src.parent), progress_bar=progress, log_output=log_output,
                                execution_timeout=timeout, report_mode=False,
                                extra_arguments=["--IPKernelApp.log_level=CRITICAL"], **connection)
        except pm.PapermillExecutionError as e:
            raise NotebookError(src.name, output, e.ename, e.evalue, e.exec_count) from None
    return output


def clear_outputs(path: str | Path) -> bool:
    """Strip outputs and execution counts from a stored notebook (as kept in git); returns
    whether the file changed."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.get("outputs") or cell.get("execution_count") is not None:
            changed = True
        cell.outputs, cell.execution_count = [], None
        for key in ("execution", "papermill"):
            if cell.metadata.pop(key, None) is not None:
                changed = True
    for key in ("papermill", "widgets"):
        if nb.metadata.pop(key, None) is not None:
            changed = True
    if changed:
        nbformat.write(nb, path)
    return changed
