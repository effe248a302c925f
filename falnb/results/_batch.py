"""What ``%%falimage --batch VAR --out NAME`` keeps: :class:`Batch`, a list with pages of pictures.

A cell shows the first page of a batch (``page_size`` pictures, whole prompts); the others are one call
away: ``NAME.show(page=3)``.  Each page is drawn from the pictures in memory when asked, so a batch of
1,000 prompts costs one page of drawing, whatever its size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ._layout import Entry
from ._render import DisplaySettings, current_settings, page_count, render_outputs, show_outputs

__all__ = ["Batch"]


class Batch(list[Any]):
    """One row per prompt of a ``--batch`` cell, in order: a :class:`~falnb.Generation`, the
    :class:`~falnb.FalnbError` it ended with, or ``{model: result}`` when several models are compared.

    ``show(page=N)`` displays page ``N`` of the pictures (``pages`` of them), as the cell showed page 1.
    """

    def __init__(self, rows: Iterable[Any], entries: Sequence[Entry], name: str | None = None) -> None:
        super().__init__(rows)
        self._entries = list(entries)
        #: the notebook variable holding it (``--out``), named in the page notes
        self.name = name

    def pages(self, settings: DisplaySettings | None = None) -> int:
        """How many pages of pictures the batch takes (with the magics' current ``page_size``)."""
        return page_count(self._entries, settings or current_settings())

    def show(self, page: int = 1, settings: DisplaySettings | None = None) -> None:
        """Display page ``page`` (from 1) of the pictures and its caption; an InputError for a page that
        does not exist.  ``settings``: the magics' display settings (``%config FalMagics...``) by default."""
        show_outputs(render_outputs(self._entries, settings or current_settings(), page=page, name=self.name))

    def _ipython_display_(self) -> None:
        self.show(1)

    def __repr__(self) -> str:
        errors = sum(1 for e in self._entries if isinstance(e.result, BaseException))
        models = len({e.label for e in self._entries})
        what = f"{len(self)} prompts" + (f" × {models} models" if models > 1 else "")
        tail = f", {errors} error{'s' if errors != 1 else ''}" if errors else ""
        return f"<falnb batch: {what}{tail}; .show(page=N) for its {self.pages()} page(s) of pictures>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))
