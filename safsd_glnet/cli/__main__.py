"""``python -m safsd_glnet.cli``: the command line (its exit status is the command's)."""
import sys

from .commands import main

if __name__ == "__main__":
    sys.exit(main())
