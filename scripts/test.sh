#!/usr/bin/env bash
# Quick start, command 2: set up (if needed) and run the test suite. Extra arguments go to
# pytest (for example -m slow for the long trainings).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
