"""Pictures for a notebook: capped previews and labelled contact sheets (Pillow, loaded on first use)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from ._image import Image

__all__ = ["MIME", "contact_sheet", "preview"]

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
        return preview(tiles[0][0], long_side, fmt, quality)
    from PIL import Image as PIL
    from PIL import ImageDraw

    thumbs: list[PILImage | None] = []
    for image, _ in tiles:
        if image is None:
            thumbs.append(None)
            continue
        img = _flatten(image.to_pil(), "jpeg")
        img.thumbnail((long_side, long_side), PIL.Resampling.LANCZOS)
        thumbs.append(img)
    sizes = [t.size for t in thumbs if t is not None] or [(long_side, long_side)]
    cell_w = max(w for w, _ in sizes)
    cell_h = max(h for _, h in sizes)
    font_px = max(11, min(22, long_side // 24))
    band = font_px + font_px // 2 + 4
    gap = 4
    cols = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // cols)
    width = cols * cell_w + (cols - 1) * gap
    height = rows * (cell_h + band) + (rows - 1) * gap
    sheet = PIL.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(font_px)
    for i, (thumb, (_, label)) in enumerate(zip(thumbs, tiles, strict=True)):
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


def _fit(draw: Any, text: str, font: Any, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
