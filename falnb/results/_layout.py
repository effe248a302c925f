"""Where each picture of a cell goes: the tiles of a preview sheet, each entry's reference, and pages.

One model: tiles numbered 1..N in order.  Several models (a comparison): one column per model, one row
per image index (and per prompt of a batch).  A batch is split into pages of whole prompts holding about
``page_size`` tiles, so a cell of 1,000 prompts draws one page (what a person can look at), not 1,000
rows: the display costs the same whatever the batch's size, and never outgrows an image format's limits.

Pure data: no Pillow, no IPython.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ._text import seed_text, short

if TYPE_CHECKING:
    from ._image import Image

__all__ = ["Entry", "Shown", "Tile", "layout", "paginate", "tile_count"]


class Shown(Protocol):
    """What rendering needs of a result (a :class:`~falnb.Generation` has all of it)."""

    model: str
    prompt: str
    images: list[Image]
    seed: int | None
    cost: float | None
    cached: bool
    saved: float


@dataclass
class Entry:
    """One result to show: the model as the user named it, the prompt, a Generation or an error."""

    label: str
    prompt: str
    result: Shown | BaseException
    #: the prompt's position in a batch (entries of one group are compared side by side)
    group: int = 0


@dataclass(frozen=True)
class Tile:
    """One cell of a preview sheet: the picture (None: an empty cell), the label drawn under it, and the
    picture's own one-line caption (the text of its output when each picture is an output of its own)."""

    image: Image | None
    label: str
    text: str


def _images(e: Entry) -> list[Image]:
    return [] if isinstance(e.result, BaseException) else e.result.images


def _text(e: Entry, img: Image, ref: str, batch: bool) -> str:
    """``[1] flux-schnell · 1024x768 · seed 7 — “a lighthouse”`` (the reference names the model already
    in a comparison: ``[2: imagen4 #1] 1360x768 · ...``)."""
    dims = f"{img.width}x{img.height}" if img.width and img.height else "size unknown"
    seed = seed_text([img.seed])
    where = f"prompt {e.group + 1}: " if batch else ""
    model = "" if e.label in ref else f"{e.label} · "
    return f"[{ref}] {model}{dims}{f' · {seed}' if seed else ''} — {where}“{short(e.prompt, 100)}”"


def layout(entries: Sequence[Entry], grid_columns: int) -> tuple[list[Tile], list[str], int]:
    """``(tiles, refs, columns)``: the grid's cells in order, each entry's reference, the grid width.

    One model: tiles numbered 1..N in order, ``refs`` like ``[1-4]``.  Several models (a comparison):
    one column per model, one row per image index (and per prompt of a batch, named by its number in
    the batch), tiles labelled with the model; an empty cell where a model failed or returned fewer images.
    """
    labels = list(dict.fromkeys(e.label for e in entries))
    groups = list(dict.fromkeys(e.group for e in entries))
    batch = len(groups) > 1 or any(g != 0 for g in groups)
    tiles: list[Tile] = []
    refs: list[str] = []
    if len(labels) <= 1:
        for e in entries:
            images = _images(e)
            first = len(tiles) + 1
            tiles.extend(Tile(img, str(first + k), _text(e, img, str(first + k), batch))
                         for k, img in enumerate(images))
            refs.append("" if not images else f"[{first}]" if len(images) == 1 else
                        f"[{first}-{first + len(images) - 1}]")
        count = sum(1 for t in tiles if t.image is not None)
        return tiles, refs, max(1, min(grid_columns or 1, count or 1))
    for e in entries:
        refs.append(f"[{e.group + 1}]" if batch else "")
    for g in groups:
        row = [e for e in entries if e.group == g]
        depth = max((len(_images(e)) for e in row), default=0)
        for k in range(depth):
            for e in row:
                images = _images(e)
                name = e.label + (f" #{k + 1}" if depth > 1 else "")
                if batch:
                    name = f"{g + 1}: {name}"
                img = images[k] if k < len(images) else None
                tiles.append(Tile(img, name, _text(e, img, name, batch) if img is not None else name))
    return tiles, refs, len(labels)


def tile_count(entries: Sequence[Entry]) -> int:
    """How many tiles ``entries`` take in a sheet (at least one per group: an error is a caption line)."""
    groups: dict[int, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.group, []).append(e)
    models = len({e.label for e in entries})
    total = 0
    for row in groups.values():
        if models <= 1:
            total += max(1, sum(len(_images(e)) for e in row))
        else:
            total += max(1, max(len(_images(e)) for e in row)) * models
    return total


def paginate(entries: Sequence[Entry], page_size: int) -> list[list[Entry]]:
    """``entries`` in pages of whole groups (prompts) holding at most ``page_size`` tiles each (a group
    larger than that gets a page of its own).  Without groups (not a batch) there is one page."""
    groups: dict[int, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.group, []).append(e)
    pages: list[list[Entry]] = []
    current: list[Entry] = []
    count = 0
    for row in groups.values():
        n = tile_count(row)
        if current and count + n > page_size:
            pages.append(current)
            current, count = [], 0
        current.extend(row)
        count += n
    if current or not pages:
        pages.append(current)
    return pages
