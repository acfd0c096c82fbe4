"""Shared pytest set-up for every test path (tests/, benchmarks/tests/, experiments/tests/): OpenMP
threads sleep instead of spinning while they wait (set before torch loads). With spinning threads, a
2-core machine shared with notebook kernels or another job ran CPU training epochs up to 20 times slower.

Imports: pyproject.toml's ``pythonpath`` puts the repository root, ``tests/`` and its folders on the
path, so tests import ``sdt_fixtures``, each other's helpers and the studies in ``experiments/``
without editing ``sys.path``.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
