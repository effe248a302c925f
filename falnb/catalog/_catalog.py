"""The model catalog: what each fal endpoint takes, returns and costs.

The ten seed models are described from fal's published input/output types (see
``../shared/models.md``).  Any other fal endpoint id resolves to a pass-through spec with
generic defaults, so a new fal model works without a falnb release.  The emulator and the
request builder both read this module; nothing here does I/O except
:func:`load_litellm_config`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .._exceptions import ConfigError, UnknownModelError

__all__ = [
    "MEGAPIXEL",
    "PRESETS",
    "Catalog",
    "ModelSpec",
    "Param",
    "Price",
    "default_catalog",
    "load_litellm_config",
]

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

ParamType = Literal["int", "float", "bool", "str", "list", "object"]


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

    def describe_allowed(self) -> str:
        if self.choices is not None:
            shown = ", ".join(repr(c) for c in self.choices[:12])
            more = f" (+{len(self.choices) - 12} more)" if len(self.choices) > 12 else ""
            return f"one of {shown}{more}"
        if self.minimum is not None or self.maximum is not None:
            return f"a {self.type} from {self.minimum} to {self.maximum}"
        return f"a {self.type}"


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
    #: ``"images"`` (a list) or ``"image"`` (Bria's single object)
    output_key: Literal["images", "image"] = "images"
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


# -- the ten seed models ------------------------------------------------------------------

_SEED = Param("seed", "int", None, minimum=0, maximum=2**32 - 1, help="same seed, same picture")
_SYNC = Param("sync_mode", "bool", False, help="return the image inline as a data URI")
_SAFETY = Param("enable_safety_checker", "bool", True)
_FORMAT_JP = Param("output_format", "str", "jpeg", choices=("jpeg", "png"))
_TOLERANCE = Param("safety_tolerance", "str", "2", choices=("1", "2", "3", "4", "5", "6"),
                   help="1 is strictest, 6 most permissive")
_NEGATIVE = Param("negative_prompt", "str", "")

_RECRAFT_STYLE = Param(
    "style", "str", "realistic_image",
    choices=("any", "realistic_image", "digital_illustration", "vector_illustration"),
    pattern=r"(realistic_image|digital_illustration|vector_illustration|icon|logo_raster)/[a-z0-9_]+",
    help="a style or a sub-style such as digital_illustration/pixel_art",
)

_RATIOS_ULTRA = ("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21")
_RATIOS_IMAGEN = ("1:1", "16:9", "9:16", "4:3", "3:4")
_RATIOS_BRIA = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9")

SEED_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        id="fal-ai/flux-pro/v1.1-ultra", title="FLUX1.1 [pro] ultra",
        size_field="aspect_ratio", aspect_ratios=_RATIOS_ULTRA, default_size="16:9",
        max_images=4, megapixels=4.0,
        params=(_SEED, _SYNC, _FORMAT_JP, _TOLERANCE,
                Param("enhance_prompt", "bool", False),
                Param("raw", "bool", False, help="less processed, more natural look"),
                Param("image_url", "str", None, help="image prompt"),
                Param("image_prompt_strength", "float", 0.1, minimum=0.0, maximum=1.0)),
        price=Price(0.06), aliases=("flux-ultra", "ultra"),
    ),
    ModelSpec(
        id="fal-ai/flux-pro/v1.1", title="FLUX1.1 [pro]",
        params=(_SEED, _SYNC, _FORMAT_JP, _TOLERANCE, Param("enhance_prompt", "bool", False)),
        price=Price(0.04), aliases=("flux-pro",),
    ),
    ModelSpec(
        id="fal-ai/flux/schnell", title="FLUX.1 [schnell]",
        params=(_SEED, _SYNC, _SAFETY, _FORMAT_JP,
                Param("num_inference_steps", "int", 4, minimum=1, maximum=12),
                Param("guidance_scale", "float", 3.5, minimum=1.0, maximum=20.0),
                Param("acceleration", "str", "none", choices=("none", "regular", "high"))),
        price=Price(0.003, "megapixel"), aliases=("flux-schnell", "schnell"),
    ),
    ModelSpec(
        id="fal-ai/bytedance/seedream/v3/text-to-image", title="Seedream 3.0",
        default_size="square_hd", side_range=(512, 2048), output_has_seed=True,
        params=(_SEED, _SYNC, _SAFETY,
                Param("guidance_scale", "float", 2.5, minimum=1.0, maximum=10.0)),
        price=Price(0.03), aliases=("seedream",),
    ),
    ModelSpec(
        id="fal-ai/bytedance/dreamina/v3.1/text-to-image", title="Dreamina 3.1",
        default_size="square_hd", side_range=(512, 2048),
        params=(_SEED, _SYNC, _SAFETY, Param("enhance_prompt", "bool", False)),
        price=Price(0.03), aliases=("dreamina",),
    ),
    ModelSpec(
        id="fal-ai/imagen4/preview", title="Imagen 4 (preview)",
        size_field="aspect_ratio", aspect_ratios=_RATIOS_IMAGEN, default_size="1:1",
        output_has_seed=False, output_format_default="png",
        params=(_SEED, _SYNC, _NEGATIVE,
                Param("output_format", "str", "png", choices=("jpeg", "png", "webp")),
                Param("resolution", "str", "1K", choices=("1K", "2K")),
                Param("safety_tolerance", "str", "4", choices=("1", "2", "3", "4", "5", "6"))),
        price=Price(0.04, by_param={"resolution": {"2K": 0.05}}), aliases=("imagen4",),
    ),
    ModelSpec(
        id="fal-ai/recraft/v3/text-to-image", title="Recraft V3",
        default_size="square_hd", max_images=None, output_has_dims=False, output_has_seed=False,
        output_format_default="webp",
        params=(_SYNC, _RECRAFT_STYLE,
                Param("colors", "list", None, help="preferred colours as [{r, g, b}]"),
                Param("style_id", "str", None)),
        price=Price(0.04, multipliers={"style": ("vector_illustration", 2.0)}), aliases=("recraft",),
    ),
    ModelSpec(
        id="fal-ai/ideogram/v3", title="Ideogram 3.0",
        default_size="square_hd", max_images=8, output_has_dims=False, output_format_default="png",
        params=(_SEED, _SYNC, _NEGATIVE,
                Param("rendering_speed", "str", "BALANCED", choices=("TURBO", "BALANCED", "QUALITY")),
                Param("style", "str", "AUTO", choices=("AUTO", "GENERAL", "REALISTIC", "DESIGN")),
                Param("style_preset", "str", None),
                Param("style_codes", "list", None),
                Param("color_palette", "object", None),
                Param("image_urls", "list", None),
                Param("expand_prompt", "bool", True)),
        price=Price(0.06, by_param={"rendering_speed": {"TURBO": 0.03, "BALANCED": 0.06, "QUALITY": 0.09}}),
        aliases=("ideogram",),
    ),
    ModelSpec(
        id="fal-ai/stable-diffusion-v35-medium", title="Stable Diffusion 3.5 Medium",
        params=(_SEED, _SYNC, _SAFETY, _NEGATIVE, _FORMAT_JP,
                Param("num_inference_steps", "int", 40, minimum=1, maximum=50),
                Param("guidance_scale", "float", 4.5, minimum=0.0, maximum=20.0)),
        price=Price(0.02, "megapixel"), aliases=("stable-diffusion", "sd35"),
    ),
    ModelSpec(
        id="bria/text-to-image/3.2", title="Bria 3.2",
        size_field="aspect_ratio", aspect_ratios=_RATIOS_BRIA, default_size="1:1",
        max_images=None, output_key="image", output_has_seed=False, fixed_default_seed=5555,
        output_format_default="png",
        params=(Param("seed", "int", 5555, minimum=0, maximum=2**31 - 1), _SYNC, _NEGATIVE,
                Param("num_inference_steps", "int", 30, minimum=20, maximum=50),
                Param("guidance_scale", "float", 5.0, minimum=1.0, maximum=10.0),
                Param("prompt_enhancer", "bool", False),
                Param("truncate_prompt", "bool", True)),
        price=Price(0.04), aliases=("bria",),
    ),
)

_ID_RE = re.compile(r"^(?:workflows/|comfy/)?[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$")
_LITELLM_PREFIX = "fal_ai/"
#: LiteLLM's short spellings that leave out the owner
_LITELLM_SHORT = {"flux/schnell": "fal-ai/flux/schnell"}


class Catalog:
    """Resolves a name (alias, fal id, ``fal_ai/...`` route, proxy alias) to a :class:`ModelSpec`."""

    def __init__(self, models: tuple[ModelSpec, ...] = SEED_MODELS) -> None:
        self._by_id: dict[str, ModelSpec] = {m.id: m for m in models}
        self._aliases: dict[str, ModelSpec] = {}
        #: bumped whenever an alias is added, so memoised plans never outlive the names they used
        self.version = 0
        for m in models:
            for a in m.aliases:
                self._aliases[a] = m

    @property
    def models(self) -> list[ModelSpec]:
        return list(self._by_id.values())

    def aliases(self) -> dict[str, str]:
        """Every alias and the fal id it stands for."""
        return {a: m.id for a, m in self._aliases.items()}

    def add_alias(self, alias: str, model: str, defaults: Mapping[str, Any] | None = None) -> ModelSpec:
        base = self.resolve(model)
        spec = replace(base, aliases=(alias, *base.aliases), defaults={**base.defaults, **(defaults or {})})
        self._aliases[alias] = spec
        self.version += 1
        return spec

    def resolve(self, name: str) -> ModelSpec:
        if not isinstance(name, str) or not name.strip():
            raise UnknownModelError("model must be a non-empty string such as 'flux-ultra'", model=str(name))
        key = name.strip()
        if key in self._aliases:
            return self._aliases[key]
        if key.lower() in self._aliases:
            return self._aliases[key.lower()]
        if key.startswith(_LITELLM_PREFIX):
            key = key[len(_LITELLM_PREFIX):]
            key = _LITELLM_SHORT.get(key, key)
            if key in self._aliases:
                return self._aliases[key]
        if key in self._by_id:
            return self._by_id[key]
        if _ID_RE.match(key):
            return self._pass_through(key)
        raise UnknownModelError(self._unknown_message(name), model=name)

    def _pass_through(self, model_id: str) -> ModelSpec:
        # A variant such as fal-ai/imagen4/preview/fast takes its base model's inputs, but
        # its price is not the base's: leave it unknown rather than guess.
        for base in sorted(self._by_id.values(), key=lambda m: -len(m.id)):
            if model_id.startswith(base.id + "/"):
                return replace(base, id=model_id, title=f"{base.title} ({model_id[len(base.id) + 1:]})",
                               aliases=(), price=None, variant_of=base.id)
        return ModelSpec(id=model_id, title=model_id, known=False, max_images=None,
                         default_size=None, output_format_default="jpeg")

    def _unknown_message(self, name: str) -> str:
        names = [*self._aliases, *self._by_id]
        close = difflib.get_close_matches(name.lower(), names, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return (f"unknown model {name!r}.{hint} Use an alias ({', '.join(sorted(self._aliases))}) "
                f"or a full fal id such as 'fal-ai/flux/schnell'.")


_DEFAULT: Catalog | None = None


def default_catalog() -> Catalog:
    """The process-wide catalog (seed models plus any aliases loaded since)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Catalog()
    return _DEFAULT


#: keys of a LiteLLM ``litellm_params`` block that configure the call, not the model input
_LITELLM_CALL_KEYS = {"model", "api_key", "api_base", "api_version", "timeout", "stream_timeout",
                      "max_retries", "rpm", "tpm", "organization", "custom_llm_provider", "extra_headers"}


def load_litellm_config(path: str, catalog: Catalog | None = None) -> dict[str, str]:
    """Load the ``fal_ai/...`` aliases of a LiteLLM proxy ``config.yaml``.

    Each ``model_list`` entry routed to ``fal_ai/<id>`` becomes an alias; its other
    ``litellm_params`` become that alias's default model parameters.  Returns ``{alias: fal id}``.
    """
    import yaml  # only needed here

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read LiteLLM config {path!r}: {exc}") from None
    cat = catalog or default_catalog()
    loaded: dict[str, str] = {}
    for entry in data.get("model_list") or []:
        if not isinstance(entry, dict):
            continue
        params = entry.get("litellm_params") or {}
        route = str(params.get("model", ""))
        alias = entry.get("model_name")
        if not alias or not route.startswith(_LITELLM_PREFIX):
            continue
        defaults = {k: v for k, v in params.items() if k not in _LITELLM_CALL_KEYS}
        spec = cat.add_alias(str(alias), route, defaults)
        loaded[str(alias)] = spec.id
    return loaded
