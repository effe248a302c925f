"""What falnb knows about one fal endpoint: :class:`ModelSpec`, its :class:`Param` inputs and :class:`Price`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["IMAGE_CATEGORIES", "MAX_SIDE", "MEGAPIXEL", "PRESETS", "DeprecatedModelWarning", "ModelSpec", "Param",
           "ParamType", "Price"]


#: fal's ``image_size`` presets and their exact pixels.
PRESETS: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}

#: fal counts a megapixel as 1024 x 1024 pixels (a square_hd image bills as one)
MEGAPIXEL = 1024 * 1024
#: the largest side fal's ``ImageSize`` accepts when a model sets no tighter bound (fal-js schemas: 0 < side <= 14142)
MAX_SIDE = 14142

ParamType = Literal["int", "float", "bool", "str", "list", "object", "any"]
#: fal's categories whose endpoints answer with pictures (an endpoint of no category is judged by its output)
IMAGE_CATEGORIES = ("text-to-image", "image-to-image")


class DeprecatedModelWarning(UserWarning):
    """fal lists the model as deprecated: it still runs (and bills) today, and may stop."""


@dataclass(frozen=True)
class Param:
    """One model-specific input: its type, allowed values and fal's default."""

    name: str
    type: ParamType
    default: Any = None
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    #: a regular expression a string must match when ``choices`` does not list it
    pattern: str | None = None
    help: str = ""
    #: a picture goes here (fal's ``x-fal-file-input`` mark, or a name such as ``image_url``): a URL today
    file_input: bool = False

    def describe_allowed(self) -> str:
        if self.choices is not None:
            shown = ", ".join(repr(c) for c in self.choices[:12])
            more = f" (+{len(self.choices) - 12} more)" if len(self.choices) > 12 else ""
            return f"one of {shown}{more}"
        if self.minimum is not None or self.maximum is not None:
            return f"a {self.type} from {self.minimum} to {self.maximum}"
        if self.file_input:
            return "a picture's URL" + ("s (a list)" if self.type == "list" else "")
        return "any JSON value" if self.type == "any" else f"a {self.type}"


@dataclass(frozen=True)
class Price:
    """An estimate in USD, for display and budgets; never what fal bills."""

    usd: float
    basis: Literal["image", "megapixel"] = "image"
    #: per-parameter-value overrides, e.g. ``{"rendering_speed": {"QUALITY": 0.09}}``
    by_param: Mapping[str, Mapping[Any, float]] = field(default_factory=dict)
    #: multiply when a string parameter starts with a prefix, e.g. recraft vector styles
    multipliers: Mapping[str, tuple[str, float]] = field(default_factory=dict)

    def per_image(self, inputs: Mapping[str, Any], width: int | None, height: int | None) -> float:
        usd = self.usd
        for name, table in self.by_param.items():
            if inputs.get(name) in table:
                usd = table[inputs[name]]
        for name, (prefix, factor) in self.multipliers.items():
            value = inputs.get(name)
            if isinstance(value, str) and value.startswith(prefix):
                usd *= factor
        if self.basis == "megapixel":
            # fal rounds each image up to a whole megapixel
            pixels = (width or 1024) * (height or 1024)
            usd *= max(1, math.ceil(pixels / MEGAPIXEL))
        return usd


@dataclass(frozen=True)
class ModelSpec:
    """Everything falnb knows about one fal endpoint."""

    id: str
    title: str
    #: the input field that carries the picture's shape, or None when it has none
    size_field: Literal["image_size", "aspect_ratio"] | None = "image_size"
    #: allowed ``aspect_ratio`` values (aspect_ratio models)
    aspect_ratios: tuple[str, ...] = ()
    #: fal's default for the size field: a preset name or a ratio
    default_size: str | None = "landscape_4_3"
    #: inclusive pixel bounds per side for ``{width, height}``, when fal enforces them
    side_range: tuple[int, int] | None = None
    #: the most images one request may ask for; None when the model has no ``num_images``
    max_images: int | None = 4
    #: ``"images"`` (a list), ``"image"`` (Bria's single object), or what a non-image model answers with
    output_key: str = "images"
    #: whether output images carry width/height (Recraft and Ideogram return bare files)
    output_has_dims: bool = True
    #: whether the output echoes the seed used
    output_has_seed: bool = True
    #: a fixed seed fal uses when none is sent (Bria: 5555); None means random
    fixed_default_seed: int | None = None
    #: megapixels of the generated picture for aspect_ratio models (used for output dims)
    megapixels: float = 1.0
    output_format_default: str = "jpeg"
    params: tuple[Param, ...] = ()
    price: Price | None = None
    aliases: tuple[str, ...] = ()
    #: False for pass-through ids falnb has no record of
    known: bool = True
    #: for a variant such as ``fal-ai/imagen4/preview/fast``: the catalogued model it extends
    variant_of: str | None = None
    #: default parameters from a LiteLLM proxy config alias (the request's own params win)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: named values of the size field beyond pixels and ratios (``image_size`` presets, ``"auto"``...)
    size_presets: tuple[str, ...] = tuple(PRESETS)
    #: the model's input as fal's JSON Schema (self-contained, ``$defs`` inlined); None when falnb has none
    schema: Mapping[str, Any] | None = field(default=None, repr=False)
    #: the inputs fal requires
    required: tuple[str, ...] = ("prompt",)
    #: whether the model takes a ``prompt`` (an upscaler or a background remover takes none)
    takes_prompt: bool = True
    #: fal's category (``text-to-image``, ``image-to-image``, ``text-to-video``...), when known
    category: str | None = None
    #: fal's status (``active`` or ``deprecated``), when fal's model list said
    status: str | None = None
    #: where the description comes from: ``"snapshot"`` (shipped with falnb), ``"fal"`` (fetched),
    #: ``"stored"`` (fetched earlier, from disk), or ``""`` (none: a pass-through id)
    source: str = "snapshot"
    #: why an id has no schema: ``""``, or a short reason (fal publishes none, or fal could not be asked)
    no_schema: str = ""
    #: True when the reason is that fal could not be asked (so the id cannot be checked now)
    unchecked: bool = False

    @property
    def alias(self) -> str:
        return self.aliases[0] if self.aliases else self.id

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name:
                return p
        return None

    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def makes_pictures(self) -> bool:
        """Whether the endpoint answers with pictures (a video or audio model does not)."""
        if self.category is not None and self.category not in IMAGE_CATEGORIES:
            return False
        return self.output_key in ("images", "image")

    def default_size_value(self) -> Any:
        """fal's default of the size field as fal takes it (``"WxH"`` defaults are ``{width, height}``)."""
        value = self.default_size
        if isinstance(value, str) and self.size_field == "image_size" and "x" in value and value not in PRESETS:
            w, _, h = value.partition("x")
            if w.isdigit() and h.isdigit():
                return {"width": int(w), "height": int(h)}
        return value

    def file_inputs(self) -> list[str]:
        """The inputs that take pictures (for the image-input work: their URLs today)."""
        return [p.name for p in self.params if p.file_input]

    @property
    def sides(self) -> tuple[int, int]:
        """Inclusive pixel bounds per side of ``{width, height}``: ``side_range``, else fal's generic bound."""
        return self.side_range or (1, MAX_SIDE)

    @property
    def strict(self) -> bool:
        """Whether falnb knows this exact endpoint's inputs, so an input name it does not list is a mistake.

        False for pass-through ids and for variants (``fal-ai/imagen4/preview/fast``), whose own extra
        inputs falnb cannot know."""
        return self.known and self.variant_of is None

    def input_names(self) -> list[str]:
        """Every input name this model takes: ``prompt``, its size field, ``num_images`` and its parameters."""
        names = [*(["prompt"] if self.takes_prompt else []), *([self.size_field] if self.size_field else [])]
        names += ["num_images"] if self.max_images is not None else []
        return names + [p.name for p in self.params]

    def ratio_dims(self, ratio: str) -> tuple[int, int]:
        """The pixel size this model renders for an aspect ratio (about ``megapixels`` MP)."""
        w, h = (int(x) for x in ratio.split(":"))
        area = self.megapixels * MEGAPIXEL
        width = math.sqrt(area * w / h)
        height = width * h / w
        return _round16(width), _round16(height)

    def estimate(self, inputs: Mapping[str, Any], images: int, width: int | None, height: int | None) -> float | None:
        if self.price is None:
            return None
        return round(self.price.per_image(inputs, width, height) * images, 6)


def _round16(x: float) -> int:
    return max(16, round(x / 16.0) * 16)
