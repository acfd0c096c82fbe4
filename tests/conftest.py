"""Shared pytest set-up: make ``tests/`` importable so test files can use ``sdt_fixtures``."""
import os
import sys

_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
