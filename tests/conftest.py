"""Shared pytest set-up.

* ``tests/`` is importable, so test files can use ``sdt_fixtures``; so is the repository root,
  so they can import the benchmark scripts' helpers (``from benchmarks import real_text``).
* OpenMP threads sleep instead of spinning while they wait (set before torch loads): with
  spinning threads, a 2-core machine shared with notebook kernels or another job ran CPU
  training epochs up to 20 times slower.
"""
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_TESTS = os.path.dirname(os.path.abspath(__file__))
for _path in (_TESTS, os.path.dirname(_TESTS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)
