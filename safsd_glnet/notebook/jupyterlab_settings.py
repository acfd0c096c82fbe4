"""JupyterLab defaults for the kit's environment: save widget state with the notebook.

JupyterLab forgets a widget when its kernel goes away: a saved notebook reopened on a new
kernel shows "Error displaying widget: model not found" where the widget was (the dialogue
browser of notebook 01), unless the widget state was saved in the notebook's metadata. That
is JupyterLab's ``saveState`` setting of ``@jupyter-widgets/jupyterlab-manager``, off by
default (see :mod:`safsd_glnet.notebook.explore` for why this is the fix).

JupyterLab reads defaults that packages provide from
``<environment>/share/jupyter/lab/settings/overrides.d/*.json`` (``jupyterlab_server``); a
user's own settings still win over them. ``python -m safsd_glnet.notebook.jupyterlab_settings`` writes the kit's
file there for the running Python's environment (``scripts/setup.sh`` does this); ``--print``
only shows it. The file changes nothing outside that environment.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LAB_SETTINGS = {
    "@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": True},
}
FILE_NAME = "safsd-glnet.json"


def settings_dir(prefix: str | Path | None = None) -> Path:
    """JupyterLab's application settings folder of the environment at ``prefix`` (default:
    the running Python's, ``sys.prefix``)."""
    return Path(sys.prefix if prefix is None else prefix) / "share" / "jupyter" / "lab" / "settings"


def install(folder: str | Path | None = None) -> Path:
    """Write :data:`LAB_SETTINGS` to ``folder/overrides.d/safsd-glnet.json`` (``folder``
    defaults to :func:`settings_dir`) and return the file's path; an unchanged file is left
    alone."""
    from ..data.atomic_files import write_text

    path = Path(settings_dir() if folder is None else folder) / "overrides.d" / FILE_NAME
    text = json.dumps(LAB_SETTINGS, indent=2) + "\n"
    if not (path.exists() and path.read_text(encoding="utf-8") == text):
        write_text(path, text)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m safsd_glnet.notebook.jupyterlab_settings", description=__doc__.split("\n")[0])
    parser.add_argument("--folder", help="JupyterLab settings folder (default: this environment's, "
                                         f"{settings_dir()})")
    parser.add_argument("--print", action="store_true", help="print the settings instead of writing them")
    args = parser.parse_args(argv)
    if args.print:
        print(json.dumps(LAB_SETTINGS, indent=2))
        return 0
    try:
        path = install(args.folder)
    except OSError as e:
        print(f"labsettings: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    print(f"JupyterLab defaults of the kit written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
