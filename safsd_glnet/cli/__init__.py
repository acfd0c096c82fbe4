"""The ``safsd-glnet`` command line: the parser and the model commands (commands.py), and one module per
further command group: data, features, finetune, and the cluster options (cluster.py)."""
from .commands import main  # noqa: F401  (the console entry point: safsd_glnet.cli:main)
