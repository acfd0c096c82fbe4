"""``python -m safsd_glnet``: the command line (its exit status is the command's)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
