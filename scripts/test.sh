#!/usr/bin/env bash
# Quick start, command 2: set up (if needed) and run the test suite. Extra arguments go to
# pytest (for example -m slow for the long trainings, or one file: tests/test_losses.py).
#
#   bash scripts/test.sh          everything but the one `slow` test; the 10 slowest tests at the end
#   bash scripts/test.sh --fast   the unit tests only (not `integration`, not `slow`): the inner loop
#
# pyproject.toml gives every test a 600 s limit (pytest-timeout): a hang fails with its stack.
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
args=()
for arg in "$@"; do
  if [ "$arg" = "--fast" ]; then fast=1; else args+=("$arg"); fi
done
bash scripts/setup.sh
if [ "$fast" = 1 ]; then
  # A later -m replaces pyproject's addopts -m 'not slow', so `slow` is left out here again.
  exec .venv/bin/python -m pytest -m "not slow and not integration" ${args[@]+"${args[@]}"}
fi
exec .venv/bin/python -m pytest --durations=10 ${args[@]+"${args[@]}"}
