"""Deprecated: the old home of three jobs, now in their own modules.

* running notebooks with papermill: :mod:`safsd_glnet.grids.papermill_runner`;
* the five-notebook sequence of ``safsd-glnet demo``: :mod:`safsd_glnet.grids.demo`;
* finished run folders in notebooks: :mod:`safsd_glnet.notebook.run_folders` (``loss_label`` is now
  ``student_loss_name``).

Importing names from here still works and warns once.
"""
from __future__ import annotations

import warnings

from .grids.papermill_runner import (KERNEL_FOLDER_PREFIX, KERNEL_NAME, NOTEBOOKS, NotebookError,  # noqa: F401
                               _kernel_connection, _kernel_environment, clear_outputs, notebook_dir,
                               notebook_parameters, notebook_path, remove_stale_kernel_folders, repo_root,
                               run_notebook)
from .notebook.run_folders import corpus_fingerprint, load_run, student_loss_name, train_or_reuse  # noqa: F401
from .grids.demo import QUICK, run_all  # noqa: F401

loss_label = student_loss_name

warnings.warn("safsd_glnet.notebooks is deprecated: use safsd_glnet.grids.papermill_runner, safsd_glnet.grids.demo "
              "and safsd_glnet.notebook.run_folders", DeprecationWarning, stacklevel=2)
