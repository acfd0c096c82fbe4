"""Helpers the notebooks call: figures (plots.py), data exploration (explore.py), SAF against CE
over seeds (saf_comparison.py), run folders in notebook terms (run_folders.py), JupyterLab
defaults (jupyterlab_settings.py)."""
