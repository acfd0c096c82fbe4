"""Command-line options that choose where runs execute (``ablate`` and ``train --seeds``):
``--executor local|dask|slurm`` and each back-end's settings, which override a grid file's
``cluster:`` section (see :mod:`safsd_glnet.grids.executors`)."""
from __future__ import annotations

import argparse
from typing import Any

from ..grids.executors import EXECUTORS


def add_arguments(p: argparse.ArgumentParser, what: str = "runs") -> None:
    """The executor options, in their own help group (``--workers`` is the command's own)."""
    g = p.add_argument_group("where the runs execute (dask and slurm need the cluster extra: "
                             "pip install -e \".[cluster]\")")
    g.add_argument("--executor", choices=EXECUTORS, default=None,
                   help=f"local: this machine (default); dask: a Dask cluster, one task per {what[:-1]}; "
                        f"slurm: a SLURM job array through submitit, one array task per {what[:-1]}")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="dask: an existing cluster's scheduler, e.g. tcp://10.0.0.5:8786 (without it the kit starts a "
                        "LocalCluster of --workers processes)")
    g.add_argument("--resources", metavar="NAME=AMOUNT",
                   help=f"dask: what each {what[:-1]} needs of the workers' resources, e.g. GPU=1 (workers announce "
                        "theirs with `dask worker --resources GPU=1`)")
    g.add_argument("--no-shared-fs", dest="shared_fs", action="store_const", const=False, default=None,
                   help="dask: the workers do not share --out with this machine: each run trains in a folder on its "
                        "worker and its notebook and small files come back; checkpoints stay on the worker")
    g.add_argument("--worker-dir", metavar="DIR",
                   help="dask with --no-shared-fs: where runs train on the workers (default: their temporary folder)")
    g.add_argument("--partition", help="slurm: partition")
    g.add_argument("--account", help="slurm: account to charge")
    g.add_argument("--qos", help="slurm: quality of service")
    g.add_argument("--constraint", help="slurm: node features, e.g. a100")
    g.add_argument("--gpus", type=int, help=f"slurm: GPUs per {what[:-1]}")
    g.add_argument("--cpus", type=int, help=f"slurm: CPU cores per {what[:-1]} (also its torch threads)")
    g.add_argument("--mem-gb", type=float, help=f"slurm: memory per {what[:-1]} in GB")
    g.add_argument("--time-min", type=int,
                   help=f"slurm: time limit per {what[:-1]} in minutes (default 1440); at the limit the job is "
                        "requeued and the run resumes from its last epoch")
    g.add_argument("--array-parallelism", type=int, help="slurm: array tasks running at once")
    g.add_argument("--slurm-setup", dest="setup", action="append", metavar="LINE",
                   help="slurm: a shell line run before each job, e.g. 'module load cuda' (repeatable)")
    # the tests run the slurm back-end through submitit's local executor (no SLURM needed)
    g.add_argument("--submitit-cluster", choices=("slurm", "local"), default=None, help=argparse.SUPPRESS)


def options(args: argparse.Namespace, workers: int | None = None) -> dict[str, Any]:
    """The executor settings given on the command line (None: not given)."""
    out = {key: getattr(args, key, None) for key in ("executor", "scheduler", "resources", "shared_fs", "worker_dir",
                                                     "partition", "account", "qos", "constraint", "gpus", "cpus",
                                                     "mem_gb", "time_min", "array_parallelism", "setup",
                                                     "submitit_cluster")}
    out["workers"] = workers
    return {k: v for k, v in out.items() if v is not None}
