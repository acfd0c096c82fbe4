"""Where the runs of an ablation grid (and the seeds of ``train --seeds``) execute: one small
interface, three back-ends. The kit schedules nothing itself; it hands calls to an engine.

=========  ==============================================================================
local      this machine: in this process, one run after the other (``workers`` 1, the
           default), or a pool of ``workers`` spawned processes that die with their parent
dask       Dask distributed: an existing cluster (``scheduler`` address: dask-jobqueue on
           SLURM / PBS, SSH, cloud VMs), or a ``LocalCluster`` of ``workers`` processes that
           the kit starts and stops. Each call is one task, executed in a process of its own
           on a worker; per-run ``resources`` (``{"GPU": 1}``) are Dask worker resources
slurm      SLURM through submitit: one job array, one array task per call, with partition,
           GPUs, CPUs, memory, time limit and array parallelism; submitit's folder is
           ``<out>/submitit``
=========  ==============================================================================

The grid's contract (complete runs skipped, failures retried, interrupted runs resumed,
locks, summary, progress bar, Ctrl-C) is written once, in :func:`safsd_glnet.grids.ablation.run_grid`;
an executor only moves calls and their results::

    with executor:                                    # starts the pool, client or cluster
        executor.prepare(out_dir, log)                # checks that need the running back-end
        handles = executor.submit(fn, calls, names)   # one task per argument tuple
        for h in executor.as_completed(handles):
            value = executor.result(h)                 # TaskFailed: the task itself died
        executor.cancel(handles)                       # on Ctrl-C: queued and running ones

``fn`` is a module-level function of the kit (pickled by reference: every worker needs the
kit installed, at any path) and never raises for a failing run (it returns the failure).

Run folders live on a filesystem that every worker shares with the submitting machine
(``shared_fs``: a cluster's home or project file system): workers write into them directly.
Dask can do without one (``shared_fs=False``): each run then trains in a folder on its worker
(``worker_dir``) and the executed notebook and its small files come back as the task's result;
checkpoints stay on the worker. submitit always needs one (it exchanges its pickles there).

Long (about 760 lines): three back-ends behind one interface, each in its own section; one module
per back-end is the next split.
"""
from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

EXECUTORS = ("local", "dask", "slurm")
SUBMITIT_FOLDER = "submitit"  # inside the grid's output folder
CLUSTER_EXTRA = "pip install -e \".[cluster]\""
KIT_ROOT = Path(__file__).resolve().parent.parent  # the folder holding safsd_glnet/


class TaskFailed(RuntimeError):
    """The task itself died (worker lost, job killed, out of memory, cancelled) instead of
    returning; the message says how, in one line."""


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}" if not text.startswith(type(e).__name__) else text


class Executor:
    """The interface; see the module docstring. Subclasses set ``name`` and ``shared_fs``."""

    name = "executor"
    shared_fs = True
    worker_dir: str | None = None  # shared_fs False: the run folders' root on the workers

    def check(self) -> None:
        """Raise a one-line ValueError when the back-end cannot be used here (a missing
        package, no ``sbatch``); called before anything is written or submitted."""

    def describe(self) -> str:
        return self.name

    def default_threads(self) -> int | None:
        """CPU threads per run when the caller sets none (None: the process's default)."""
        return None

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def prepare(self, out_dir: Path, log: Callable[[str], None]) -> None:
        """Checks and set-up that need the running back-end and the output folder."""

    def submit(self, fn: Callable[..., Any], calls: Sequence[tuple], names: Sequence[str]) -> list[Any]:
        raise NotImplementedError

    def as_completed(self, handles: Sequence[Any]) -> Iterator[Any]:
        raise NotImplementedError

    def result(self, handle: Any) -> Any:
        raise NotImplementedError

    def cancel(self, handles: Sequence[Any]) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------- local

class _Call:
    """A call run in this process when :meth:`LocalExecutor.as_completed` reaches it."""

    def __init__(self, fn: Callable[..., Any], args: tuple):
        self.fn, self.args = fn, args
        self.value: Any = None
        self.error: BaseException | None = None
        self.cancelled = False

    def run(self) -> None:
        try:
            self.value = self.fn(*self.args)
        except Exception as e:  # one call's crash is its own failure, not the grid's
            self.error = e


class LocalExecutor(Executor):
    """This machine: ``workers`` 1 runs each call in this process, in order; more start a pool
    of spawned processes (clean: no forked torch or zmq state) that the operating system
    kills with this process (Linux, :func:`die_with_parent`)."""

    name = "local"

    def __init__(self, workers: int = 1):
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers={workers!r}: expected a whole number of at least 1")
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def describe(self) -> str:
        return f"{self.workers} at once on this machine" if self.workers > 1 else "one at a time on this machine"

    def default_threads(self) -> int | None:
        # several runs share the cores: each kernel gets an equal share unless the user set one
        if self.workers > 1 and "OMP_NUM_THREADS" not in os.environ:
            return max(1, (os.cpu_count() or 1) // self.workers)
        return None

    def __enter__(self) -> "LocalExecutor":
        if self.workers > 1:
            import multiprocessing

            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=die_with_parent, initargs=(os.getpid(),))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def submit(self, fn, calls, names):
        if self._pool is None:
            return [_Call(fn, tuple(args)) for args in calls]
        return [self._pool.submit(fn, *args) for args in calls]

    def as_completed(self, handles):
        if self._pool is None:
            for call in handles:
                if not call.cancelled:
                    call.run()
                    yield call
            return
        from concurrent.futures import as_completed

        yield from as_completed(handles)

    def result(self, handle):
        if isinstance(handle, _Call):
            if handle.error is not None:
                raise TaskFailed(_one_line(handle.error)) from handle.error
            return handle.value
        try:
            return handle.result()
        except Exception as e:  # the worker process itself died
            raise TaskFailed(_one_line(e)) from e

    def cancel(self, handles):
        for h in handles:
            if isinstance(h, _Call):
                h.cancelled = True
            elif isinstance(h, Future):
                h.cancel()  # queued ones; running ones stop with their process (Ctrl-C reaches them)


def die_with_parent(parent: int) -> None:
    """Process initializer: on Linux the operating system kills this process when the one
    that started it dies (``prctl(PR_SET_PDEATHSIG)``), even by ``kill -9``; a kernel it runs
    follows by itself (ipykernel exits when its parent process changes). Without this a
    killed grid left its workers training into the run folders that a re-run trained too.
    Elsewhere the lock of each run folder still keeps two processes out of one folder."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


# --------------------------------------------------------------------------- one process per task

@contextmanager
def kit_on_pythonpath() -> Iterator[None]:
    """``PYTHONPATH`` gains the kit's folder while processes are started (a task's process,
    a submitit job), so that they import this copy of the kit when it runs from a checkout
    that is not installed."""
    root = str(KIT_ROOT)
    old = os.environ.get("PYTHONPATH")
    parts = old.split(os.pathsep) if old else []
    if root not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([root] + parts)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def run_in_own_process(fn: Callable[..., Any], args: tuple, env: Mapping[str, str] | None = None,
                       cancelled: Callable[[], bool] = lambda: False, poll: float = 1.0) -> Any:
    """``fn(*args)`` in a fresh Python process (``python -m safsd_glnet.grids.executors``), its
    return value pickled back; stop it when ``cancelled()`` turns true.

    The process runs in a session of its own (a Ctrl-C meant for the submitting terminal does
    not reach it) and dies with the thread that started it (Linux). Cancelling sends SIGINT
    (papermill shuts its kernel down), then SIGKILL after 10 s. An exception in ``fn`` comes
    back as :class:`TaskFailed` with its one-line message."""
    remove_stale_task_folders()
    with tempfile.TemporaryDirectory(prefix=f"{TASK_FOLDER_PREFIX}{os.getpid()}-") as tmp:
        call, answer = Path(tmp) / "call.pkl", Path(tmp) / "result.pkl"
        call.write_bytes(pickle.dumps((fn, tuple(args))))
        with kit_on_pythonpath():
            proc = subprocess.Popen([sys.executable, "-m", "safsd_glnet.grids.executors", str(call), str(answer),
                                     str(os.getpid())], env={**os.environ, **(env or {})}, start_new_session=True)
        try:
            while True:
                try:
                    proc.wait(timeout=poll)
                    break
                except subprocess.TimeoutExpired:
                    if cancelled():
                        stop_process_group(proc)
                        raise TaskFailed("cancelled") from None
        finally:
            if proc.poll() is None:  # this thread is leaving (an error, a cancelled task): no orphan
                stop_process_group(proc)
        if not answer.exists():
            raise TaskFailed(f"the task's process ended with exit code {proc.returncode} and no result")
        kind, value = pickle.loads(answer.read_bytes())
        if kind == "error":
            raise TaskFailed(value)
        return value


TASK_FOLDER_PREFIX = "safsd-task-"


def remove_stale_task_folders(root: str | Path | None = None) -> list[str]:
    """Remove ``safsd-task-<pid>-*`` folders (a task's pickled call and result) whose worker
    process is gone: a worker killed with its cluster cannot remove its own. Only this user's."""
    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(f"{TASK_FOLDER_PREFIX}*"):
        pid = path.name[len(TASK_FOLDER_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or not path.is_dir():
            continue
        try:
            if path.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)  # raises when no such process exists
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
        except OSError:
            continue  # alive under another user, or not ours to judge
    return removed


def stop_process_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGINT to the process's group, SIGKILL after ``grace`` seconds."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _task_main(argv: Sequence[str]) -> int:
    """The task's process: unpickle (fn, args), call, pickle ("ok", value) or ("error", text)."""
    call, answer, parent = argv
    die_with_parent(int(parent))
    fn, args = pickle.loads(Path(call).read_bytes())
    try:
        out = ("ok", fn(*args))
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the submitting side reports it as the run's failure
        out = ("error", _one_line(e))
    tmp = Path(answer).with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(out))
    os.replace(tmp, answer)
    return 0


# --------------------------------------------------------------------------- dask

@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored in this process, and so in the processes it starts, for the block (the
    cluster's start, a few seconds: a Ctrl-C then is lost and must be pressed again)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _dask_task_cancelled() -> bool:
    """Whether the Dask task running in this thread was cancelled or forgotten (its client
    cancelled it, or went away): its worker then no longer holds it as executing."""
    try:
        from distributed import get_worker
        from distributed.worker import thread_state

        ts = get_worker().state.tasks.get(thread_state.key)
    except Exception:  # not in a worker thread, or an internal change: never cancel by mistake
        return False
    return ts is None or ts.state in ("cancelled", "released", "forgotten")


def _dask_task(fn: Callable[..., Any], args: tuple, gpu_slot: bool) -> Any:
    """One Dask task: ``fn(*args)`` in its own process on this worker, stopped when the task
    is cancelled. ``gpu_slot`` (a LocalCluster the kit started, runs asking for GPUs): the
    worker's number picks its GPU, as ``CUDA_VISIBLE_DEVICES``."""
    env = {}
    if gpu_slot and "CUDA_VISIBLE_DEVICES" not in os.environ:
        try:
            from distributed import get_worker

            env["CUDA_VISIBLE_DEVICES"] = str(int(get_worker().name))
        except (ValueError, TypeError):
            pass
    return run_in_own_process(fn, args, env=env, cancelled=_dask_task_cancelled)


def parse_resources(text: str | Mapping[str, Any] | None, where: str = "--resources") -> dict[str, float]:
    """``"GPU=1,MEM=8e9"`` (or a mapping) -> {"GPU": 1.0, "MEM": 8e9}: what one run needs of
    the Dask workers' resources."""
    if text is None or text == "" or text == {}:
        return {}
    items = text.items() if isinstance(text, Mapping) else \
        [part.partition("=")[::2] for part in str(text).replace(" ", ",").split(",") if part]
    out = {}
    for name, value in items:
        name = str(name).strip()
        try:
            amount = float(value)
        except (TypeError, ValueError):
            amount = -1.0
        if not name or not name.replace("_", "").replace("-", "").isalnum() or not amount > 0:
            raise ValueError(f"{where} {text!r}: expected NAME=AMOUNT pairs with positive amounts, e.g. GPU=1")
        out[name] = amount
    return out


class DaskExecutor(Executor):
    """Dask distributed: ``scheduler`` (an address such as ``tcp://10.0.0.5:8786``), or
    ``client`` (a ``distributed.Client``, e.g. on a dask-jobqueue cluster), or neither: a
    ``LocalCluster`` of ``workers`` processes with one thread each, started and stopped here.

    Each call is one task (``pure=False``: never merged with another) asking for
    ``resources`` (e.g. ``{"GPU": 1}``; workers announce theirs with ``dask worker
    --resources GPU=1``). The task runs the call in a process of its own
    (:func:`run_in_own_process`), so a cancelled run stops at once and a run's torch and
    kernel never share the worker's process. A worker that dies has its task re-run elsewhere
    (Dask's ``allowed-failures``); the run then resumes from its last epoch."""

    name = "dask"

    def __init__(self, scheduler: str | None = None, workers: int | None = None,
                 resources: Mapping[str, float] | str | None = None, shared_fs: bool = True,
                 worker_dir: str | None = None, client: Any = None):
        if scheduler is not None and client is not None:
            raise ValueError("give a scheduler address or a client, not both")
        if workers is not None and (scheduler is not None or client is not None):
            raise ValueError("--workers sets the size of the LocalCluster the kit starts; an existing cluster "
                             "(--scheduler) has its own workers")
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise ValueError(f"workers={workers!r}: expected a whole number of at least 1")
        if shared_fs and worker_dir is not None:
            raise ValueError("--worker-dir is where runs train on the workers without a shared filesystem; "
                             "it needs --no-shared-fs")
        self.scheduler, self.workers, self.client = scheduler, workers, client
        self.resources = parse_resources(resources)
        self.shared_fs, self.worker_dir = bool(shared_fs), worker_dir
        self._own_client = self._cluster = None

    def check(self) -> None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ValueError(f"--executor dask needs dask.distributed, the kit's cluster extra: {CLUSTER_EXTRA}") \
                from None

    def describe(self) -> str:
        where = (f"the Dask cluster at {self.scheduler}" if self.scheduler else
                 "the given Dask client" if self.client is not None else
                 f"a Dask LocalCluster of {self.workers or 1} worker process{'es' if (self.workers or 1) > 1 else ''}")
        need = f", each run asking for {', '.join(f'{k}={v:g}' for k, v in self.resources.items())}" \
            if self.resources else ""
        return where + need

    def default_threads(self) -> int | None:
        """The kit's LocalCluster: an equal share of this machine's cores per run (Dask's nanny
        would give each worker's processes OMP_NUM_THREADS=1). An existing cluster: None, i.e.
        whatever its workers' environment says (Dask's default is 1; see ``--threads``)."""
        if self.scheduler is None and self.client is None and "OMP_NUM_THREADS" not in os.environ:
            return max(1, (os.cpu_count() or 1) // (self.workers or 1))
        return None

    def __enter__(self) -> "DaskExecutor":
        import logging

        from distributed import Client, LocalCluster

        if self.client is not None:
            return self
        if self.scheduler is not None:
            try:
                self._own_client = Client(self.scheduler, timeout="20s")
            except (OSError, TimeoutError) as e:
                raise ValueError(f"--scheduler {self.scheduler}: no Dask scheduler answers there ({_one_line(e)})") \
                    from None
        else:
            # One thread per worker: one run at a time each; no dashboard (no port, no bokeh needed).
            # The workers start with SIGINT ignored (inherited; Python keeps an ignored SIGINT), so
            # that a Ctrl-C reaches this process only: it cancels the runs and closes the cluster
            # instead of every worker printing its own KeyboardInterrupt traceback.
            with _sigint_ignored():
                self._cluster = LocalCluster(n_workers=self.workers or 1, threads_per_worker=1, processes=True,
                                             dashboard_address=None, silence_logs=logging.ERROR,
                                             resources=self.resources or None)
            self._own_client = Client(self._cluster)
        return self

    def __exit__(self, *exc: Any) -> None:
        for thing in (self._own_client, self._cluster):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # closing after Ctrl-C may find the workers gone already
                    pass
        self._own_client = self._cluster = None

    @property
    def _client(self):
        return self.client if self.client is not None else self._own_client

    def prepare(self, out_dir: Path, log: Callable[[str], None]) -> None:
        """Refuse what would leave tasks waiting forever or writing where nobody reads: no
        worker offers the resources a run asks for, or (shared filesystem) a worker cannot
        see the output folder. A cluster still without workers (scaling up) is not checked."""
        workers = self._client.scheduler_info().get("workers", {})
        if not workers:
            log("ablate: the Dask cluster has no workers yet; tasks wait for them (checks of resources and of "
                "the shared filesystem skipped)")
            return
        if self.resources:
            fits = [a for a, w in workers.items()
                    if all(w.get("resources", {}).get(k, 0) >= v for k, v in self.resources.items())]
            if not fits:
                have = sorted({f"{k}={v:g}" for w in workers.values() for k, v in w.get("resources", {}).items()})
                raise ValueError(f"--resources {','.join(f'{k}={v:g}' for k, v in self.resources.items())}: no worker "
                                 f"of the Dask cluster offers that (theirs: {', '.join(have) or 'none'}); start workers "
                                 "with `dask worker ... --resources GPU=1`")
        if self.shared_fs:
            probe = out_dir / f".shared-fs-check-{uuid.uuid4().hex[:8]}"
            probe.write_text("")
            try:
                seen = self._client.run(os.path.exists, str(probe))
            finally:
                probe.unlink(missing_ok=True)
            blind = sorted(a for a, ok in seen.items() if not ok)
            if blind:
                raise ValueError(f"{out_dir}: {len(blind)} of {len(seen)} Dask workers cannot see this folder "
                                 f"({blind[0]}...); put --out on a filesystem they share, or pass --no-shared-fs "
                                 "to have each run's files sent back")

    def submit(self, fn, calls, names):
        gpu_slot = self._cluster is not None and "GPU" in self.resources
        tag = uuid.uuid4().hex[:8]
        return [self._client.submit(_dask_task, fn, tuple(args), gpu_slot, key=f"safsd-{name}-{tag}",
                                    pure=False, resources=self.resources or None)
                for args, name in zip(calls, names)]

    def as_completed(self, handles):
        from distributed import as_completed

        yield from as_completed(handles)

    def result(self, handle):
        try:
            return handle.result()
        except TaskFailed:
            raise
        except Exception as e:  # KilledWorker, CancelledError, a lost connection
            raise TaskFailed(_one_line(e)) from e

    def cancel(self, handles):
        if handles and self._client is not None:
            try:
                # running tasks see it within a second and stop their process (_dask_task_cancelled)
                self._client.cancel(list(handles))
            except Exception:
                pass


# --------------------------------------------------------------------------- slurm (submitit)

class _RequeueOnTimeout:
    """A submitit job function that SLURM requeues when its time limit comes (submitit calls
    ``checkpoint`` on the timeout signal and resubmits what it returns): the run continues
    from its last epoch in the next job, up to submitit's ``max_num_timeout`` (3) times."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def checkpoint(self, *args: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args)


SLURM_OPTIONS = {  # our name -> (submitit parameter, type, meaning)
    "partition": ("slurm_partition", str, "SLURM partition"),
    "account": ("slurm_account", str, "account to charge"),
    "qos": ("slurm_qos", str, "quality of service"),
    "constraint": ("slurm_constraint", str, "node features, e.g. a100"),
    "gpus": ("gpus_per_node", int, "GPUs per run"),
    "cpus": ("cpus_per_task", int, "CPU cores per run (also each run's torch threads)"),
    "mem_gb": ("mem_gb", float, "memory per run in GB"),
    "time_min": ("timeout_min", int, "time limit per run in minutes (then requeued, resuming)"),
    "array_parallelism": ("slurm_array_parallelism", int, "array tasks running at once"),
    "setup": ("slurm_setup", list, "shell lines run before each run, e.g. module load cuda"),
}
DEFAULT_TIME_MIN = 24 * 60  # submitit's own default (5 min locally, SLURM's partition default) is too short


class SlurmExecutor(Executor):
    """SLURM through submitit: the calls go out as one job array (``submitit.AutoExecutor``,
    folder ``<out>/submitit`` with each task's log and pickles), with the options of
    :data:`SLURM_OPTIONS`. ``cluster="local"`` uses submitit's local executor instead (each
    task a process on this machine; the tests' way to run this back-end without SLURM)."""

    name = "slurm"

    def __init__(self, cluster: str = "slurm", **options: Any):
        if cluster not in ("slurm", "local"):
            raise ValueError(f"submitit cluster {cluster!r}: expected slurm or local")
        self.cluster = cluster
        self.options = check_slurm_options(options)
        self._executor = None
        self.folder: Path | None = None

    def check(self) -> None:
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise ValueError(f"--executor slurm needs submitit, the kit's cluster extra: {CLUSTER_EXTRA}") from None
        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ValueError("--executor slurm needs SLURM (sbatch not found); use --executor dask or local")

    def describe(self) -> str:
        shown = ", ".join(f"{k} {v}" for k, v in self.options.items() if k != "setup")
        kind = "SLURM job array" if self.cluster == "slurm" else "submitit's local executor"
        return f"a {kind}" + (f" ({shown})" if shown else "")

    def default_threads(self) -> int | None:
        return self.options.get("cpus")  # torch would otherwise count the node's cores, not the job's

    def prepare(self, out_dir: Path, log: Callable[[str], None]) -> None:
        import submitit

        self.folder = out_dir / SUBMITIT_FOLDER
        ex = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        params: dict[str, Any] = {"name": f"safsd-{out_dir.name}"[:60],
                                  "timeout_min": self.options.get("time_min", DEFAULT_TIME_MIN)}
        for key, value in self.options.items():
            if key != "time_min":
                params[SLURM_OPTIONS[key][0]] = value
        ex.update_parameters(**params)
        self._executor = ex

    def submit(self, fn, calls, names):
        job_fn = _RequeueOnTimeout(fn)
        with kit_on_pythonpath(), self._executor.batch():  # one array: one sbatch for all runs
            jobs = [self._executor.submit(job_fn, *args) for args in calls]
        return jobs

    def as_completed(self, handles):
        from submitit.helpers import as_completed

        # the local executor is polled through its processes (cheap); SLURM through sacct
        yield from as_completed(list(handles), poll_frequency=1 if self.cluster == "local" else 15)

    def result(self, handle):
        try:
            return handle.result()
        except Exception as e:  # the job failed outside our function: killed, out of memory, cancelled
            first = str(e).strip().splitlines()
            where = f" (log: {handle.paths.stderr})" if getattr(handle, "paths", None) else ""
            raise TaskFailed(f"{type(e).__name__}: {first[0] if first else ''}{where}") from e

    def cancel(self, handles):
        for job in handles:
            try:
                if not job.done():
                    job.cancel(check=False)
            except Exception:
                pass


def check_slurm_options(options: Mapping[str, Any], where: str = "slurm") -> dict[str, Any]:
    """The SLURM options with their types checked (one-line errors naming ``where``)."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if where == "command line":  # name the flag the user typed
            key_shown = "--" + key.replace("_", "-").replace("setup", "slurm-setup")
        else:
            key_shown = key
        if key not in SLURM_OPTIONS:
            raise ValueError(f"{where}: unknown SLURM option {key!r} (known: {', '.join(SLURM_OPTIONS)})")
        kind = SLURM_OPTIONS[key][1]
        if kind is list:
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{where}: {key_shown} must be a list of shell lines, got {value!r}")
            out[key] = list(value)
            continue
        if kind is str:
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}: {key_shown} must be a name, got {value!r}")
            out[key] = value.strip()
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
            raise ValueError(f"{where}: {key_shown}={value!r} must be a {'whole ' if kind is int else ''}number")
        low = 0 if key == "gpus" else 1 if kind is int else 0.001
        if value < low:
            raise ValueError(f"{where}: {key_shown}={value!r} must be at least {low}")
        out[key] = kind(value)
    return out


# --------------------------------------------------------------------------- settings

# Settings of a grid file's ``cluster:`` section, and the command-line options that override them.
SETTINGS = ("executor", "workers", "scheduler", "resources", "shared_fs", "worker_dir", "submitit_cluster") \
    + tuple(SLURM_OPTIONS)
APPLIES_TO = {"workers": ("local", "dask"), "scheduler": ("dask",), "resources": ("dask",),
              "shared_fs": ("dask",), "worker_dir": ("dask",), "submitit_cluster": ("slurm",),
              **{k: ("slurm",) for k in SLURM_OPTIONS}}


def check_settings(settings: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A ``cluster:`` section (or command-line options) checked: known keys, an executor name,
    SLURM options of the right types. Returns the settings without None values."""
    if not isinstance(settings, Mapping):
        raise ValueError(f"{where}: cluster settings must be a mapping, e.g. {{executor: slurm, partition: gpu}}")
    out = {k: v for k, v in settings.items() if v is not None}
    unknown = sorted(set(out) - set(SETTINGS))
    if unknown:
        raise ValueError(f"{where}: unknown cluster settings {unknown} (known: {', '.join(SETTINGS)})")
    if "executor" in out and out["executor"] not in EXECUTORS:
        raise ValueError(f"{where}: executor {out['executor']!r}: expected one of {', '.join(EXECUTORS)}")
    check_slurm_options({k: v for k, v in out.items() if k in SLURM_OPTIONS}, where)
    if "resources" in out:
        parse_resources(out["resources"], f"{where}: resources")
    if "shared_fs" in out and not isinstance(out["shared_fs"], bool):
        raise ValueError(f"{where}: shared_fs must be true or false, got {out['shared_fs']!r}")
    workers = out.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"{where}: workers={workers!r} must be a whole number of at least 1")
    for key in ("scheduler", "worker_dir"):
        if key in out and (not isinstance(out[key], str) or not out[key].strip()):
            raise ValueError(f"{where}: {key} must be text (an address or a folder), got {out[key]!r}")
    if out.get("submitit_cluster", "slurm") not in ("slurm", "local"):
        raise ValueError(f"{where}: submitit_cluster must be slurm or local, got {out['submitit_cluster']!r}")
    return out


def make_executor(file_settings: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None,
                  source: str = "grid file") -> Executor:
    """The executor for a command: the grid file's ``cluster:`` settings, overridden by the
    command line's ``options`` (None: not given). An option given on the command line that
    the chosen executor would ignore is refused; the file's settings for other executors are
    left alone (a grid may describe its cluster run and still be run locally)."""
    given = check_settings(dict(options or {}), "command line")
    from_file = check_settings(dict(file_settings or {}), f"{source}: cluster")
    name = given.get("executor", from_file.get("executor", "local"))
    for key in given:
        if key != "executor" and name not in APPLIES_TO[key]:
            flag = "--" + key.replace("_", "-") if key != "shared_fs" else "--no-shared-fs"
            raise ValueError(f"{flag} applies to --executor {' or '.join(APPLIES_TO[key])}, not {name} "
                             "(it would be ignored)")
    merged = {k: v for k, v in {**from_file, **given}.items() if k == "executor" or name in APPLIES_TO[k]}
    if name == "local":
        return LocalExecutor(merged.get("workers", 1))
    if name == "dask":
        return DaskExecutor(scheduler=merged.get("scheduler"), workers=merged.get("workers"),
                            resources=merged.get("resources"), shared_fs=merged.get("shared_fs", True),
                            worker_dir=merged.get("worker_dir"))
    return SlurmExecutor(cluster=merged.get("submitit_cluster", "slurm"),
                         **{k: v for k, v in merged.items() if k in SLURM_OPTIONS})


def gather(executor: Executor, fn: Callable[..., Any], calls: Sequence[tuple], names: Sequence[str],
           on_result: Callable[[str, Any, str | None], None]) -> None:
    """Submit ``calls`` and hand each outcome to ``on_result(name, value, error)`` as it comes
    (``error`` the one-line reason when the task itself died); on Ctrl-C cancel what is queued
    or running, then re-raise. The executor must be entered (``with executor:``)."""
    handles = executor.submit(fn, calls, names)
    by_handle = {id(h): n for h, n in zip(handles, names)}
    try:
        for h in executor.as_completed(handles):
            try:
                on_result(by_handle[id(h)], executor.result(h), None)
            except TaskFailed as e:
                on_result(by_handle[id(h)], None, str(e))
    except BaseException:
        executor.cancel(handles)
        raise


if __name__ == "__main__":
    sys.exit(_task_main(sys.argv[1:]))
