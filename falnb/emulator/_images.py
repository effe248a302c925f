"""Synthetic pictures: real, decodable, exactly sized, deterministic from (model, prompt, seed, index).

Each model has a look of its own (a hue family and a layout), so an offline comparison of several
models shows different columns, as fal's would; the prompt and seed vary the picture within that look.
Pillow is imported on first render only.  Rendered bytes are kept in a small LRU cache.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import random
import textwrap
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..catalog._models import SEED_MODELS

__all__ = ["CONTENT_TYPES", "EXTENSIONS", "Style", "render", "style_of"]

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
#: file extension per output format (fal names JPEGs ``.jpg``)
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}

_Key = tuple[str, str, int, int, int, int, str]
_CACHE: OrderedDict[_Key, bytes] = OrderedDict()
_CACHE_MAX_BYTES = 96 * 1024 * 1024
_cache_bytes = 0
_lock = threading.Lock()

LAYOUTS = ("blobs", "bands", "tiles", "rings", "shards")


@dataclass(frozen=True)
class Style:
    """A model's look: the centre of its hue family (0-1) and how its shapes are laid out."""

    hue: float
    layout: str


def style_of(model_id: str) -> Style:
    """The seed models take the layouts in turn and hues a tenth of a turn apart, two models with the same
    layout half a turn apart, so no two look alike; any other id (a variant, a pass-through) gets a look
    from a hash of its id."""
    family = [m.id for m in SEED_MODELS]
    if model_id in family:
        i, k = family.index(model_id), len(LAYOUTS)
        return Style(hue=(i % k / k + i // k * 0.5) % 1.0, layout=LAYOUTS[i % k])
    h = hashlib.sha256(model_id.encode()).digest()
    return Style(hue=h[0] / 256, layout=LAYOUTS[h[1] % len(LAYOUTS)])


def render(model_id: str, prompt: str, seed: int, index: int, width: int, height: int, fmt: str) -> bytes:
    """The encoded picture (``fmt`` is jpeg, png or webp)."""
    global _cache_bytes
    key: _Key = (model_id, prompt, seed, index, width, height, fmt)
    with _lock:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    data = _draw(model_id, prompt, seed, index, width, height, fmt)
    with _lock:
        if key not in _CACHE:
            _CACHE[key] = data
            _cache_bytes += len(data)
        while _cache_bytes > _CACHE_MAX_BYTES and len(_CACHE) > 1:
            _, old = _CACHE.popitem(last=False)
            _cache_bytes -= len(old)
    return data


def _colour(hue: float, sat: float, light: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hls_to_rgb(hue % 1.0, light, sat)
    return round(r * 255), round(g * 255), round(b * 255)


def _draw(model_id: str, prompt: str, seed: int, index: int, width: int, height: int, fmt: str) -> bytes:
    from PIL import Image, ImageDraw

    style = style_of(model_id)
    digest = hashlib.sha256(f"{model_id}\x00{prompt}\x00{seed}\x00{index}".encode()).digest()
    rng = random.Random(digest)
    # the model's hue family, +-0.07 around its centre; the prompt and seed pick the shades
    palette = [_colour(style.hue + rng.uniform(-0.07, 0.07), rng.uniform(0.45, 0.9), rng.uniform(0.3, 0.75))
               for _ in range(6)]
    background = _colour(style.hue, 0.35, 0.16 if rng.random() < 0.5 else 0.86)
    # shapes on a small canvas, scaled up: cheap even for 4-megapixel pictures
    sw, sh = max(1, width // 8), max(1, height // 8)
    small = Image.new("RGB", (sw, sh), background)
    _LAYOUT[style.layout](ImageDraw.Draw(small), sw, sh, palette, rng)
    img = small.resize((width, height), Image.Resampling.BILINEAR) if (sw, sh) != (width, height) else small
    img = _grain(img, rng)
    _caption(img, prompt, f"emulator  {model_id}  seed {seed}  #{index}")
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, "PNG", compress_level=1)
    elif fmt == "webp":
        img.save(buf, "WEBP", quality=80, method=0)
    else:
        img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


Palette = list[tuple[int, int, int]]


def _blobs(draw: Any, w: int, h: int, palette: Palette, rng: random.Random) -> None:
    for i in range(14):
        x0, y0 = rng.uniform(-0.2, 1.0) * w, rng.uniform(-0.2, 1.0) * h
        r = rng.uniform(0.08, 0.3) * max(w, h)
        draw.ellipse((x0, y0, x0 + r, y0 + r * rng.uniform(0.6, 1.4)), fill=palette[i % 6])


def _bands(draw: Any, w: int, h: int, palette: Palette, rng: random.Random) -> None:
    y = 0.0
    while y < h:
        step = rng.uniform(0.04, 0.16) * h
        tilt = rng.uniform(-0.15, 0.15) * h
        draw.polygon([(0, y), (w, y + tilt), (w, y + tilt + step), (0, y + step)], fill=rng.choice(palette))
        y += step


def _tiles(draw: Any, w: int, h: int, palette: Palette, rng: random.Random) -> None:
    cols = rng.randint(3, 7)
    cell = max(1.0, w / cols)
    for gy in range(int(h / cell) + 1):
        for gx in range(cols):
            if rng.random() < 0.8:
                pad = cell * rng.uniform(0.04, 0.2)
                draw.rectangle((gx * cell + pad, gy * cell + pad, (gx + 1) * cell - pad, (gy + 1) * cell - pad),
                               fill=rng.choice(palette))


def _rings(draw: Any, w: int, h: int, palette: Palette, rng: random.Random) -> None:
    cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
    r = max(w, h) * 1.1
    i = 0
    while r > 1:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=palette[i % 6])
        r -= rng.uniform(0.05, 0.14) * max(w, h)
        i += 1


def _shards(draw: Any, w: int, h: int, palette: Palette, rng: random.Random) -> None:
    for i in range(16):
        pts = [(rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h) for _ in range(3)]
        draw.polygon(pts, fill=palette[i % 6])


_LAYOUT = {"blobs": _blobs, "bands": _bands, "tiles": _tiles, "rings": _rings, "shards": _shards}


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


def _caption(img: Any, prompt: str, footer: str) -> None:
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
    lines.append(footer)
    draw = ImageDraw.Draw(img)
    line_h = int(size * 1.25)
    top = height - line_h * len(lines) - size // 2
    draw.rectangle((0, top - size // 4, width, height), fill=(0, 0, 0))
    for n, line in enumerate(lines):
        draw.text((size // 2, top + n * line_h), line, fill=(255, 255, 255), font=font)
