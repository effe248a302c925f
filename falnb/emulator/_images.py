"""Synthetic pictures: real, decodable, exactly sized, deterministic from (prompt, seed, index).

Pillow is imported on first render only.  Rendered bytes are kept in a small LRU cache.
"""

from __future__ import annotations

import hashlib
import io
import random
import textwrap
import threading
from collections import OrderedDict
from typing import Any

__all__ = ["CONTENT_TYPES", "EXTENSIONS", "render"]

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
#: file extension per output format (fal names JPEGs ``.jpg``)
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}

_Key = tuple[str, int, int, int, int, str]
_CACHE: OrderedDict[_Key, bytes] = OrderedDict()
_CACHE_MAX_BYTES = 96 * 1024 * 1024
_cache_bytes = 0
_lock = threading.Lock()


def render(prompt: str, seed: int, index: int, width: int, height: int, fmt: str) -> bytes:
    """The encoded picture (``fmt`` is jpeg, png or webp)."""
    global _cache_bytes
    key: _Key = (prompt, seed, index, width, height, fmt)
    with _lock:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    data = _draw(prompt, seed, index, width, height, fmt)
    with _lock:
        if key not in _CACHE:
            _CACHE[key] = data
            _cache_bytes += len(data)
        while _cache_bytes > _CACHE_MAX_BYTES and len(_CACHE) > 1:
            _, old = _CACHE.popitem(last=False)
            _cache_bytes -= len(old)
    return data


def _draw(prompt: str, seed: int, index: int, width: int, height: int, fmt: str) -> bytes:
    from PIL import Image, ImageDraw

    digest = hashlib.sha256(f"{prompt}\x00{seed}\x00{index}".encode()).digest()
    rng = random.Random(digest)
    palette = [(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(6)]
    # shapes on a small canvas, scaled up: cheap even for 4-megapixel pictures
    sw, sh = max(1, width // 8), max(1, height // 8)
    small = Image.new("RGB", (sw, sh), palette[0])
    draw = ImageDraw.Draw(small)
    for i in range(14):
        x0, y0 = rng.uniform(-0.2, 1.0) * sw, rng.uniform(-0.2, 1.0) * sh
        x1, y1 = x0 + rng.uniform(0.1, 0.6) * sw, y0 + rng.uniform(0.1, 0.6) * sh
        colour = palette[1 + i % 5]
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    img = small.resize((width, height), Image.Resampling.BILINEAR) if (sw, sh) != (width, height) else small
    img = _grain(img, rng)
    _caption(img, prompt, seed, index)
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, "PNG", compress_level=1)
    elif fmt == "webp":
        img.save(buf, "WEBP", quality=80, method=0)
    else:
        img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _grain(img: Any, rng: random.Random) -> Any:
    """Deterministic film grain: without it the flat shapes compress ~20x better than a real photo, and
    every size, memory and notebook-bytes figure measured on the emulator would flatter falnb."""
    from PIL import Image, ImageChops

    tile = Image.frombytes("L", (256, 256), rng.randbytes(256 * 256)).point(lambda v: v // 6)
    noise = Image.new("L", img.size)
    for y in range(0, img.size[1], 256):
        for x in range(0, img.size[0], 256):
            noise.paste(tile, (x, y))
    return ImageChops.add(img, Image.merge("RGB", (noise, noise, noise)), scale=1.0, offset=-21)


def _caption(img: Any, prompt: str, seed: int, index: int) -> None:
    from PIL import ImageDraw, ImageFont

    width, height = img.size
    if width < 48 or height < 24:
        return
    size = max(10, min(width, height) // 24)
    font: Any
    try:
        font = ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType
        font = ImageFont.load_default()
    chars = max(8, int(width / (size * 0.6)) - 2)
    lines = textwrap.wrap(prompt, chars)[:4] or [""]
    lines.append(f"emulator  seed {seed}  #{index}")
    draw = ImageDraw.Draw(img)
    line_h = int(size * 1.25)
    top = height - line_h * len(lines) - size // 2
    draw.rectangle((0, top - size // 4, width, height), fill=(0, 0, 0))
    for n, line in enumerate(lines):
        draw.text((size // 2, top + n * line_h), line, fill=(255, 255, 255), font=font)
