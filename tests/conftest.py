"""Shared pytest set-up.

* ``tests/`` is importable, so test files can use ``sdt_fixtures``.
* OpenMP threads sleep instead of spinning while they wait (set before torch loads): with
  spinning threads, a 2-core machine shared with notebook kernels or another job ran CPU
  training epochs up to 20 times slower.
"""
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
