"""``python -m falnb``: the same as the ``falnb`` command (useful where its script is not on PATH)."""

from __future__ import annotations

from ._cli import main

__all__: list[str] = []

if __name__ == "__main__":
    raise SystemExit(main())
