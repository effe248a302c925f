"""OpenAI-style ``size`` to each model's own size field, keeping the requested shape.

LiteLLM maps ``1792x1024`` to ``landscape_16_9`` (1024x576) and a portrait ``900x1200`` to
``16:9``; here an ``image_size`` model gets the exact pixels, and an ``aspect_ratio`` model gets
the nearest allowed ratio *of the same orientation*.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .._exceptions import SizeError
from ._catalog import PRESETS, ModelSpec

__all__ = ["SizeRequest", "map_size", "parse_size"]

_WXH = re.compile(r"^\s*(\d+)\s*[xX×*]\s*(\d+)\s*$")
_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class SizeRequest:
    """What the user asked for: exact pixels, or only a shape."""

    width: int | None = None
    height: int | None = None
    ratio: tuple[float, float] | None = None
    preset: str | None = None

    @property
    def aspect(self) -> float:
        if self.ratio is not None:
            return self.ratio[0] / self.ratio[1]
        assert self.width and self.height
        return self.width / self.height


def parse_size(size: Any) -> SizeRequest:
    """Accept ``"1024x768"``, ``"16:9"``, a preset name, ``(w, h)`` or ``{"width": w, "height": h}``."""
    if isinstance(size, SizeRequest):
        return size
    if isinstance(size, dict) and set(size) == {"width", "height"}:
        return _pixels(size["width"], size["height"], size)
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return _pixels(size[0], size[1], size)
    if isinstance(size, str):
        text = size.strip()
        if text in PRESETS:
            w, h = PRESETS[text]
            return SizeRequest(w, h, preset=text)
        if m := _WXH.match(text):
            return _pixels(int(m.group(1)), int(m.group(2)), size)
        if m := _RATIO.match(text):
            a, b = float(m.group(1)), float(m.group(2))
            if a > 0 and b > 0:
                return SizeRequest(ratio=(a, b))
    raise SizeError(
        f"cannot read size {size!r}",
        field="size",
        hint="Use 'WxH' (1024x768), a ratio ('16:9') or a preset (" + ", ".join(PRESETS) + ").",
    )


def _pixels(w: Any, h: Any, original: Any) -> SizeRequest:
    if not (isinstance(w, int) and isinstance(h, int)) or isinstance(w, bool) or isinstance(h, bool):
        raise SizeError(f"size {original!r}: width and height must be whole numbers", field="size")
    if w <= 0 or h <= 0 or w > 16384 or h > 16384:
        raise SizeError(f"size {original!r}: each side must be between 1 and 16384 pixels", field="size")
    return SizeRequest(w, h)


def _orientation(x: float) -> int:
    return 0 if abs(math.log(x)) < 1e-9 else (1 if x > 1 else -1)


def nearest_ratio(aspect: float, allowed: tuple[str, ...]) -> str:
    """The allowed ratio nearest in log space, never flipping portrait and landscape."""

    def value(r: str) -> float:
        a, b = r.split(":")
        return float(a) / float(b)

    same = [r for r in allowed if _orientation(value(r)) == _orientation(aspect)]
    pool = same or [r for r in allowed if _orientation(value(r)) == 0] or list(allowed)
    return min(pool, key=lambda r: abs(math.log(value(r)) - math.log(aspect)))


def map_size(spec: ModelSpec, size: Any) -> tuple[dict[str, Any], tuple[int, int] | None]:
    """The model input fields for ``size``, and the pixels the picture will have (if known)."""
    req = parse_size(size)
    if spec.size_field == "aspect_ratio":
        ratio = nearest_ratio(req.aspect, spec.aspect_ratios)
        return {"aspect_ratio": ratio}, spec.ratio_dims(ratio)
    if spec.size_field is None:
        return {}, None
    # image_size: exact pixels; a preset only when it has exactly those pixels
    if req.width is None or req.height is None:
        w, h = _dims_for_ratio(req.aspect)
    else:
        w, h = req.width, req.height
    if spec.side_range is not None:
        lo, hi = spec.side_range
        if not (lo <= w <= hi and lo <= h <= hi):
            raise SizeError(
                f"size {w}x{h} is out of range for {spec.id}: each side must be {lo} to {hi} pixels",
                model=spec.id, field="image_size")
    for name, dims in PRESETS.items():
        if dims == (w, h):
            return {"image_size": name}, (w, h)
    return {"image_size": {"width": w, "height": h}}, (w, h)


def _dims_for_ratio(aspect: float) -> tuple[int, int]:
    # a ratio asked of an image_size model: a preset with that exact ratio, else ~1 MP
    for dims in PRESETS.values():
        if dims[0] >= 768 or dims[1] >= 768:
            if abs(dims[0] / dims[1] - aspect) < 1e-6:
                return dims
    w = math.sqrt(1_048_576 * aspect)
    return max(16, round(w / 16) * 16), max(16, round(w / aspect / 16) * 16)


def dims_of_input(spec: ModelSpec, inputs: dict[str, Any]) -> tuple[int, int] | None:
    """The pixels a fal input asks for, from whichever size field it carries."""
    if spec.size_field == "aspect_ratio" or "aspect_ratio" in inputs:
        ratio = inputs.get("aspect_ratio") or spec.default_size
        if isinstance(ratio, str) and _RATIO.match(ratio):
            return spec.ratio_dims(ratio)
        return None
    value = inputs.get("image_size", spec.default_size)
    if isinstance(value, str) and value in PRESETS:
        return PRESETS[value]
    if isinstance(value, dict):
        try:
            return int(value["width"]), int(value["height"])
        except (KeyError, TypeError, ValueError):
            return None
    return None
