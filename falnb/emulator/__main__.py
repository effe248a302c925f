"""``python -m falnb.emulator``: the same as ``falnb emulator``."""

from __future__ import annotations

import sys

from ._server import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
