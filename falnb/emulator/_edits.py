"""Picture-input endpoints, emulated: the model reads its input pictures from their URLs (the emulator's own
storage, or ``data:`` URIs) and answers with a picture that visibly depends on them.

- an edit: the first input picture, flipped left to right and tinted with the model's hue, with the prompt
  band (and the other inputs as thumbnails), at the input's size unless a size was asked for;
- an upscaler: the input resized by its ``upscale_factor`` (``scale`` for ESRGAN);
- a background remover: the input as RGBA, the border's colour keyed to transparent.

A URL the emulator cannot read is fal's 422 ``file_download_error``; bytes that are not a picture its
``image_load_error`` (fal reports both at the result, as it does every model error).  A model whose picture
input is required and missing: pydantic's ``missing``.  Upscalers and background removers take no prompt.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..catalog._catalog import ModelSpec
from ..catalog._image_models import PICTURE_INPUTS, PictureInputs, picture_inputs
from ._images import style_of
from ._knobs import Faults, Settings
from ._outputs import Plan, make_plan
from ._storage import Storage
from ._validate import content_policy_error, validate

__all__ = ["PictureError", "PicturePlan", "Storage", "checked_plan", "read_pictures", "with_pictures"]

PictureError = dict[str, Any]
_DOWNLOAD = "Failed to download the file. Please check if the URL is accessible."
_LOAD = "Failed to load the image. Please ensure the image file is not corrupted and is in a supported format."


def read_pictures(spec: ModelSpec, inputs: Mapping[str, Any], errors: list[PictureError],
                  fetch: Any) -> tuple[list[PictureError], tuple[bytes, ...]]:
    """The 422 items (``errors`` adjusted for a model that takes no prompt) and the input pictures' bytes."""
    how = picture_inputs(spec)
    if not {spec.id, spec.variant_of} & PICTURE_INPUTS.keys() and not any(f.required for f in how.fields):
        # a text-to-image model's optional picture (FLUX1.1 ultra's image prompt) shapes nothing the emulator
        # draws: it is not read (fal would fetch it from anywhere; the emulator has no internet to fetch from).
        # An endpoint whose schema requires a picture (image-to-image) is an edit: its pictures are read.
        return errors, ()
    if how.prompt != "required":  # pydantic has no prompt field to require
        errors = [e for e in errors if e.get("loc") != ["body", "prompt"]]
    out: list[bytes] = []
    for f in how.fields:
        value = inputs.get(f.name)
        if value is None:
            if f.required:
                errors.append({"loc": ["body", f.name], "msg": "Field required", "type": "missing",
                               "input": dict(inputs)})
            continue
        urls = value if isinstance(value, list) else [value]
        for i, url in enumerate(urls):
            loc = ["body", f.name, i] if isinstance(value, list) else ["body", f.name]
            data = fetch(url) if isinstance(url, str) else None
            if data is None:
                errors.append({"loc": loc, "msg": _DOWNLOAD, "type": "file_download_error", "input": url,
                               "url": "https://docs.fal.ai/errors#file_download_error"})
            elif _size(data) is None:
                errors.append({"loc": loc, "msg": _LOAD, "type": "image_load_error", "input": url,
                               "url": "https://docs.fal.ai/errors#image_load_error"})
            elif not f.is_mask or not out:
                out.append(data)  # the mask rides last: it shapes nothing visible here
    return errors, tuple(out)


def _size(data: bytes) -> tuple[int, int] | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return (int(img.size[0]), int(img.size[1]))
    except (UnidentifiedImageError, OSError, ValueError):
        return None


@dataclass(frozen=True)
class PicturePlan(Plan):
    """A plan whose pictures are made from input pictures (see the module docstring)."""

    sources: tuple[bytes, ...] = ()
    kind: str = "edit"

    def image_bytes(self, index: int) -> bytes:
        from PIL import Image, ImageOps

        with Image.open(io.BytesIO(self.sources[0])) as src:
            src.load()
            img = src.convert("RGBA" if self.kind == "remove_background" else "RGB")
        if self.kind == "remove_background":
            out = _key_out_border(img)
        elif self.kind == "upscale":
            out = img.resize((self.width, self.height), Image.Resampling.LANCZOS)
        else:
            out = _edit(ImageOps.mirror(img.resize((self.width, self.height), Image.Resampling.BILINEAR)),
                        self, index)
        buf = io.BytesIO()
        fmt = "PNG" if self.kind == "remove_background" and self.fmt == "jpeg" else self.fmt.upper()
        if fmt == "JPEG":
            out.convert("RGB").save(buf, "JPEG", quality=88)
        else:
            out.save(buf, fmt, **({"compress_level": 1} if fmt == "PNG" else {"quality": 85}))
        return buf.getvalue()


def _edit(img: Any, plan: PicturePlan, index: int) -> Any:
    from PIL import Image

    from ._images import _caption, _colour

    tint = Image.new("RGB", img.size, _colour(style_of(plan.model_id).hue + 0.03 * index, 0.8, 0.5))
    img = Image.blend(img, tint, 0.35)
    for k, extra in enumerate(plan.sources[1:4]):  # the other references, as thumbnails along the top
        with Image.open(io.BytesIO(extra)) as ref:
            side = max(8, img.size[0] // 6)
            thumb = ref.convert("RGB").resize((side, side))
        img.paste(thumb, (4 + k * (side + 4), 4))
    _caption(img, plan.prompt, f"emulator edit  {plan.model_id}  seed {plan.seed}  #{index}")
    return img


def _key_out_border(img: Any) -> Any:
    """Pixels close to the commonest border colour become transparent (a stand-in for a matting model)."""
    from collections import Counter

    from PIL import ImageChops

    w, h = img.size
    px = img.load()
    border = [px[x, y][:3] for x in range(w) for y in (0, h - 1)] + [px[x, y][:3] for y in range(h) for x in (0, w - 1)]
    key = Counter(border).most_common(1)[0][0]
    # per channel, how far each pixel is from the key colour; the farthest channel decides
    bands = zip(img.convert("RGB").split(), key, strict=True)
    r, g, b = (band.point(lambda v, c=c: min(255, abs(v - c) * 4)) for band, c in bands)
    mask = ImageChops.lighter(ImageChops.lighter(r, g), b).point(lambda v: 0 if v < 96 else 255)
    out = img.copy()
    out.putalpha(ImageChops.multiply(mask, img.getchannel("A")))
    return out


def with_pictures(plan: Plan, spec: ModelSpec, inputs: Mapping[str, Any], sources: tuple[bytes, ...],
                  how: PictureInputs | None = None) -> Plan:
    """``plan`` made from ``sources``: sized after the first picture unless a size was asked for."""
    how = how or picture_inputs(spec)
    if not sources:
        return plan
    size = _size(sources[0]) or (plan.width, plan.height)
    width, height = size
    if how.kind == "upscale":
        factor = _factor(spec, inputs)
        width, height = round(width * factor), round(height * factor)
    elif how.kind == "edit" and spec.size_field is not None and spec.size_field in inputs \
            and inputs[spec.size_field] not in (None, "auto"):
        width, height = plan.width, plan.height  # a size was asked for
    fmt = "png" if how.kind == "remove_background" and plan.fmt == "jpeg" else plan.fmt
    base = {f.name: getattr(plan, f.name) for f in fields(Plan)}
    base.update(width=width, height=height, fmt=fmt)
    return PicturePlan(**base, sources=sources, kind=how.kind)


def _factor(spec: ModelSpec, inputs: Mapping[str, Any]) -> float:
    for name in ("upscale_factor", "scale"):
        p = spec.param(name)
        if p is None:
            continue
        value = inputs.get(name, p.default)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 16:
            return float(value)
    return 2.0


def checked_plan(spec: ModelSpec, inputs: dict[str, Any], request_id: str, settings: Settings, faults: Faults,
                 fetch: Any) -> tuple[list[PictureError], Plan | None]:
    """The 422 items of a submitted input (schema, pictures, content policy), or its plan (made from its pictures)."""
    errors, pictures = read_pictures(spec, inputs, validate(spec, inputs, settings.extra_inputs), fetch)
    errors = errors or content_policy_error(inputs.get("prompt"), faults.content_policy_words)
    return errors, None if errors else with_pictures(make_plan(spec, inputs, request_id, settings), spec, inputs,
                                                     pictures)
