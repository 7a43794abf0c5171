"""``python -m mimic3d ...``: the same as the ``mimic3d`` console script."""

import sys

from mimic3d.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
