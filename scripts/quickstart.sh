#!/usr/bin/env bash
# Quick start, command 1: set everything up, then run the kit's main job on its built-in
# synthetic data (no download, no GPU needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/safsd-glnet demo "$@"
