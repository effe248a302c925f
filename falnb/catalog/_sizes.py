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
from ._spec import MEGAPIXEL, PRESETS, ModelSpec

__all__ = ["SizeRequest", "map_size", "parse_size"]

_WXH = re.compile(r"^\s*(\d+)\s*[xX×*]\s*(\d+)\s*$")
_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")
#: the largest side ``parse_size`` reads (a model's own bound is usually tighter)
_MAX_PIXELS = 16384
#: how far beyond an aspect_ratio model's widest or tallest ratio a request may reach and still be mapped
_REACH = 2.0


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
    if w <= 0 or h <= 0 or w > _MAX_PIXELS or h > _MAX_PIXELS:
        raise SizeError(f"size {original!r}: each side must be between 1 and {_MAX_PIXELS} pixels", field="size")
    return SizeRequest(w, h)


def _orientation(x: float) -> int:
    return 0 if abs(math.log(x)) < 1e-9 else (1 if x > 1 else -1)


def nearest_ratio(aspect: float, allowed: tuple[str, ...]) -> str:
    """The allowed ratio nearest in log space, never flipping portrait and landscape."""

    same = [r for r in allowed if _orientation(_ratio_value(r)) == _orientation(aspect)]
    pool = same or [r for r in allowed if _orientation(_ratio_value(r)) == 0] or list(allowed)
    return min(pool, key=lambda r: abs(math.log(_ratio_value(r)) - math.log(aspect)))


def map_size(spec: ModelSpec, size: Any) -> tuple[dict[str, Any], tuple[int, int] | None]:
    """The model input fields for ``size``, and the pixels the picture will have (if known).

    Refused before sending (a SizeError): pixels outside the model's bounds per side, and a ratio the
    model cannot render: for an ``image_size`` model one whose ~1-megapixel picture would leave those
    bounds, for an ``aspect_ratio`` model one more than twice as wide (or tall) as its widest (tallest).
    """
    if isinstance(size, str) and size in spec.size_presets and spec.size_field is not None and (
            spec.size_field == "aspect_ratio" or size not in PRESETS):
        return {spec.size_field: size}, None  # a named size of the model's own ("auto", "auto_2K"): fal picks
    req = parse_size(size)
    if spec.size_field == "aspect_ratio":
        _check_reach(spec, size, req.aspect)
        ratio = nearest_ratio(req.aspect, spec.aspect_ratios)
        return {"aspect_ratio": ratio}, spec.ratio_dims(ratio)
    if spec.size_field is None:
        return {}, None
    # image_size: exact pixels; a preset only when it has exactly those pixels
    if req.width is None or req.height is None:
        w, h = _dims_for_ratio(req.aspect)
    else:
        w, h = req.width, req.height
    lo, hi = spec.sides if spec.known else (1, _MAX_PIXELS)
    if not (lo <= w <= hi and lo <= h <= hi):
        if req.width is None:
            r = _fmt(min(hi * hi / MEGAPIXEL, MEGAPIXEL / max(lo, 16) ** 2))
            raise SizeError(f"size {size!r} is out of range for {spec.id}: about 1 megapixel at that ratio is "
                            f"{w}x{h} pixels, and each side must be {lo} to {hi}", model=spec.id, field="size",
                            hint=f"Ratios from 1:{r} to {r}:1 fit; or give exact pixels ('WxH').")
        raise SizeError(
            f"size {w}x{h} is out of range for {spec.id}: each side must be {lo} to {hi} pixels",
            model=spec.id, field="size")
    for name, dims in PRESETS.items():
        if dims == (w, h):
            return {"image_size": name}, (w, h)
    return {"image_size": {"width": w, "height": h}}, (w, h)


def _check_reach(spec: ModelSpec, size: Any, aspect: float) -> None:
    values = {r: _ratio_value(r) for r in spec.aspect_ratios}
    widest, tallest = max(values, key=lambda r: values[r]), min(values, key=lambda r: values[r])
    if aspect > values[widest] * _REACH or aspect < values[tallest] / _REACH:
        raise SizeError(f"size {size!r} is out of range for {spec.id}: its shapes run from {tallest} to {widest}",
                        model=spec.id, field="size",
                        hint=f"Allowed: {', '.join(spec.aspect_ratios)} (a ratio up to twice as wide or as tall "
                             "is mapped to the nearest one of the same orientation).")


def _ratio_value(ratio: str) -> float:
    a, b = ratio.split(":")
    return float(a) / float(b)


def _fmt(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".") if x < 10 else str(int(x))


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
    # a default in pixels is kept as "WxH" (Seedream v4's {width: 2048, height: 2048}, fal-platform.md): read
    # it as fal takes it, or the plan, the caption, a megapixel estimate and the emulator's picture lose it
    value = inputs.get("image_size", spec.default_size_value())
    if isinstance(value, str) and value in PRESETS:
        return PRESETS[value]
    if isinstance(value, dict):
        try:
            return int(value["width"]), int(value["height"])
        except (KeyError, TypeError, ValueError):
            return None
    return None
