"""Pictures for a notebook: capped previews and labelled contact sheets (Pillow, loaded on first use)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from ._image import Image

__all__ = ["MAX_SHEET_SIDE", "MIME", "contact_sheet", "preview"]

#: the longest side of a contact sheet, in pixels (tiles shrink to fit; JPEG's own limit is 65,535)
MAX_SHEET_SIDE = 4096
#: the smallest tile a sheet draws (a sheet of very many tiles may then exceed MAX_SHEET_SIDE)
MIN_TILE = 24

#: the mime type of each preview format
MIME = {"jpeg": "image/jpeg", "webp": "image/webp", "png": "image/png"}


def _flatten(img: PILImage, fmt: str) -> PILImage:
    """JPEG has no alpha: put transparent pictures on white."""
    from PIL import Image as PIL

    if fmt == "jpeg" and img.mode not in ("RGB", "L"):
        rgba = img.convert("RGBA")
        bg = PIL.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    if fmt != "jpeg" and img.mode not in ("RGB", "RGBA", "L", "LA"):
        return img.convert("RGBA")
    return img


def _encode(img: PILImage, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    img = _flatten(img, fmt)
    if fmt == "jpeg":
        img.save(buf, "JPEG", quality=quality, optimize=True, progressive=True)
    elif fmt == "webp":
        img.save(buf, "WEBP", quality=quality, method=4)
    else:
        img.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def preview(image: Image, long_side: int = 512, fmt: str = "jpeg",
            quality: int = 80) -> tuple[bytes, str, int, int]:
    """``(bytes, mime, width, height)`` of a copy whose long side is at most ``long_side``.

    A picture already small enough, in the same format and smaller than the re-encoding, is kept as is.
    """
    from PIL import Image as PIL

    img = image.to_pil()
    if max(img.size) > long_side:
        img.thumbnail((long_side, long_side), PIL.Resampling.LANCZOS)
    data = _encode(img, fmt, quality)
    mime = MIME[fmt]
    if image.content_type == mime and len(image.data) <= len(data) and max(img.size) == max(
            image.width or 0, image.height or 0):
        return image.data, mime, img.size[0], img.size[1]
    return data, mime, img.size[0], img.size[1]


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


def contact_sheet(tiles: Sequence[tuple[Image | None, str]], columns: int, long_side: int = 512,
                  fmt: str = "jpeg", quality: int = 80) -> tuple[bytes, str, int, int]:
    """One picture holding every tile (each capped at ``long_side``), labelled underneath.

    A ``None`` tile is an empty, labelled cell.  A single tile is just its preview, without a label.
    """
    if len(tiles) == 1 and tiles[0][0] is not None:
        try:
            return preview(tiles[0][0], min(long_side, MAX_SHEET_SIDE), fmt, quality)
        except Exception:  # a picture Pillow cannot read: an empty, labelled tile below
            pass
    from PIL import Image as PIL
    from PIL import ImageDraw

    gap = 4
    cols = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // cols)
    # every tile shrinks alike so that the sheet stays within MAX_SHEET_SIDE both ways (JPEG stops at
    # 65,535 px, and memory grows with the area): many rows make smaller tiles, never a failed sheet
    side = max(MIN_TILE, min(long_side, (MAX_SHEET_SIDE - (cols - 1) * gap) // cols))
    while side > MIN_TILE and rows * (side + _band(side) + gap) - gap > MAX_SHEET_SIDE:
        side = max(MIN_TILE, side * 9 // 10)
    font_px, band = _font_px(side), _band(side)
    thumbs: list[PILImage | None] = []
    labels: list[str] = []
    for image, label in tiles:
        thumb = _thumb(image, side)
        thumbs.append(thumb)
        labels.append(label if thumb is not None or image is None else f"{label} (unreadable)")
    sizes = [t.size for t in thumbs if t is not None] or [(side, side)]
    cell_w = max(w for w, _ in sizes)
    cell_h = max(h for _, h in sizes)
    width = cols * cell_w + (cols - 1) * gap
    height = rows * (cell_h + band) + (rows - 1) * gap
    sheet = PIL.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(font_px)
    for i, (thumb, label) in enumerate(zip(thumbs, labels, strict=True)):
        r, c = divmod(i, cols)
        x0, y0 = c * (cell_w + gap), r * (cell_h + band + gap)
        if thumb is None:
            draw.rectangle((x0, y0, x0 + cell_w - 1, y0 + cell_h - 1), fill=(246, 246, 246))
            label += " (none)"
        else:
            sheet.paste(thumb, (x0 + (cell_w - thumb.size[0]) // 2, y0 + (cell_h - thumb.size[1]) // 2))
        draw.rectangle((x0, y0 + cell_h, x0 + cell_w - 1, y0 + cell_h + band - 1), fill=(236, 236, 236))
        text = _fit(draw, label, font, cell_w - 8)
        draw.text((x0 + 4, y0 + cell_h + (band - font_px) // 2 - 1), text, fill=(30, 30, 30), font=font)
    return _encode(sheet, fmt, quality), MIME[fmt], width, height


def _font_px(side: int) -> int:
    return max(9, min(22, side // 12))


def _band(side: int) -> int:
    """The height of the label band under a tile of ``side`` pixels."""
    font_px = _font_px(side)
    return font_px + font_px // 2 + 4


def _thumb(image: Image | None, side: int) -> PILImage | None:
    """A copy of ``image`` at most ``side`` pixels on its long side, or None (no picture, or one Pillow
    cannot decode)."""
    if image is None:
        return None
    from PIL import Image as PIL

    try:
        img = image.to_pil()
        img.thumbnail((side, side), PIL.Resampling.LANCZOS)  # draft-decodes a JPEG at the size it needs
        return _flatten(img, "jpeg")
    except Exception:  # a damaged or unknown file: the tile says so, the sheet is still drawn
        return None


def _fit(draw: Any, text: str, font: Any, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
