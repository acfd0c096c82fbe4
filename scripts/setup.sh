#!/usr/bin/env bash
# Create .venv (once) and install the kit with its extras into it.
# - torch: if the environment already has torch (for example a CUDA build you installed first),
#   it is kept; otherwise TORCH_SPEC is installed (default torch==2.13.0, the CPU build here).
# - A stamp keyed by pyproject.toml skips the install when nothing changed, so this is cheap
#   to call before every command.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
py="$VENV/bin/python"
stamp="$VENV/.safsd-glnet-installed"
want="$(sha256sum pyproject.toml | cut -c1-16) $TORCH_SPEC"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
"$py" -m pip install --quiet --upgrade pip
if ! "$py" -c "import torch" 2>/dev/null; then
  echo "setup: installing $TORCH_SPEC"
  "$py" -m pip install --quiet "$TORCH_SPEC"
fi
echo "setup: installing safsd-glnet and its dependencies"
"$py" -m pip install --quiet -e ".[text,audio,dev,cluster]"
# JupyterLab saves widget state with the notebook in this environment (safsd_glnet/notebook/jupyterlab_settings.py)
"$py" -m safsd_glnet.notebook.jupyterlab_settings
echo "$want" > "$stamp"
