"""``python -m vloss.data.synthetic --out DIR [--seed 0] [--size small|medium]``: write a synthetic world."""

from __future__ import annotations

import sys

from vloss.data.synthetic.cli import main

if __name__ == "__main__":
    sys.exit(main())
