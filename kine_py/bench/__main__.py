"""``python -m kine_py.bench``."""

import sys

from kine_py.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
