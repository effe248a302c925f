"""Pictures for the form: gallery previews and the bundle that goes into the notebook's output.

The gallery shows capped previews (a 4 MP picture is several MB over the widget comm); the
notebook output gets one JPEG contact sheet of the result, so the saved .ipynb stays small while
the full pictures stay in the cache.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from ..results._generation import Generation
    from ..results._image import Image

__all__ = ["PINNED", "PREVIEW_SIDE", "contact_sheet", "output_bundles", "preview"]

#: results "Show in notebook output" keeps in the cell's output (the latest ones)
PINNED = 12

#: the longest side of a gallery preview, in pixels (shown at about half that, sharp on HiDPI)
PREVIEW_SIDE = 512
_WIDGET_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp", "image/gif": "gif"}


def preview(img: Image, side: int = PREVIEW_SIDE) -> tuple[bytes, str]:
    """``(bytes, format)`` for a ``widgets.Image``: the original when small enough, else a JPEG."""
    fmt = _WIDGET_FORMATS.get(img.content_type)
    if fmt is not None and img.width and img.height and max(img.width, img.height) <= side:
        return img.data, fmt
    pil = _rgb(img.to_pil())
    pil.thumbnail((side, side))
    return _jpeg(pil), "jpeg"


def contact_sheet(rows: Sequence[Sequence[Image]], per_row: int = 4) -> bytes:
    """One JPEG of pictures: each group of ``rows`` starts a new line (wrapped at ``per_row``)."""
    from PIL import Image as PIL

    lines: list[list[PILImage]] = []
    for group in rows:
        side = PREVIEW_SIDE if len(group) == 1 and len(rows) == 1 else 384
        tiles = []
        for img in group:
            pil = _rgb(img.to_pil())
            pil.thumbnail((side, side))
            tiles.append(pil)
        lines += [tiles[i:i + per_row] for i in range(0, len(tiles), per_row)]
    lines = [line for line in lines if line] or [[PIL.new("RGB", (1, 1), "white")]]
    gap = 8
    width = max(sum(t.width for t in line) + gap * (len(line) - 1) for line in lines)
    height = sum(max(t.height for t in line) for line in lines) + gap * (len(lines) - 1)
    sheet = PIL.new("RGB", (width, height), "white")
    y = 0
    for line in lines:
        x = 0
        for t in line:
            sheet.paste(t, (x, y))
            x += t.width + gap
        y += max(t.height for t in line) + gap
    return _jpeg(sheet)


def output_bundles(gens: Sequence[Generation]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The caption bundle and the picture bundle that persist in the notebook for ``gens``.

    One caption line pair and one row of the picture sheet per generation, in order.
    """
    caption = "\n".join(f"{i}. {gen.prompt}\n   {gen.caption()}" for i, gen in enumerate(gens, 1))
    sheet = contact_sheet([gen.images for gen in gens])
    count = sum(len(gen.images) for gen in gens)
    picture = {"image/jpeg": base64.b64encode(sheet).decode("ascii"),
               "text/plain": f"<falnb: {count} image(s) from {len(gens)} generation(s)>"}
    return {"text/plain": caption}, picture


def _rgb(pil: PILImage) -> PILImage:
    from PIL import Image as PIL

    if pil.mode in ("RGBA", "LA", "P"):
        pil = pil.convert("RGBA")
        back = PIL.new("RGB", pil.size, "white")
        back.paste(pil, mask=pil.getchannel("A"))
        return back
    return pil if pil.mode == "RGB" else pil.convert("RGB")


def _jpeg(pil: PILImage) -> bytes:
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=85, optimize=True)
    return buf.getvalue()
