"""Deprecated name of :mod:`safsd_glnet.data.atomic_files` (it shadowed the standard library's ``io``).

``from safsd_glnet import io`` keeps working and warns."""
import warnings

from .data.atomic_files import *  # noqa: F401,F403
from .data.atomic_files import atomic_path, default_mode, load_torch, read_json, save_torch, write_json, write_text  # noqa: F401

warnings.warn("safsd_glnet.io is now safsd_glnet.data.atomic_files", DeprecationWarning, stacklevel=2)
