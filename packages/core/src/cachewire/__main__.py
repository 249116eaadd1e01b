"""``python -m cachewire``: the same command line as ``cachewire``."""

from __future__ import annotations

import sys

from cachewire._cli import main

if __name__ == "__main__":
    sys.exit(main())
