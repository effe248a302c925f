"""The picture-input endpoints: editing (one picture, several, or a picture and a mask), upscaling and
background removal, described from fal-js's generated endpoint types (``../shared/image-input-endpoints.txt``,
fal-js commit 381105e) and fal's model pages.

Each :class:`ModelSpec` lists its picture fields as ordinary parameters (``image_url`` a string, ``image_urls``
a list, ``mask_url`` a string: fal takes URLs); :data:`PICTURE_INPUTS` says which fields take pictures,
which are required, whether a prompt is, and what kind of tool the endpoint is.  Upscalers and background
removers answer with a single ``image``.

Prices are estimates from fal's model pages (``https://fal.ai/models/<id>``, ``.../llms.txt``) as of 2026;
endpoints billed by compute time have none (the estimate is unknown, never zero).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ._derive import spec_from_doc
from ._models import snapshot
from ._openapi import read_openapi
from ._overlays import Overlay
from ._spec import PRESETS, ModelSpec, Param, Price

__all__ = ["DEFAULT_BACKGROUND_REMOVER", "DEFAULT_EDIT_MODEL", "DEFAULT_UPSCALER", "IMAGE_MODELS", "PICTURE_INPUTS",
           "PictureField", "PictureInputs", "is_picture_name", "picture_inputs"]

Kind = Literal["edit", "upscale", "remove_background"]

#: the models ``falnb.edit``, ``falnb.upscale`` and ``falnb.remove_background`` use unless told otherwise
DEFAULT_EDIT_MODEL = "nano-banana-edit"
DEFAULT_UPSCALER = "esrgan"
DEFAULT_BACKGROUND_REMOVER = "birefnet"


@dataclass(frozen=True)
class PictureField:
    """One input that takes pictures: ``image_url`` (one), ``image_urls`` (a list), ``mask_url``."""

    name: str
    many: bool = False
    required: bool = True
    #: the most pictures a list field takes (None: no limit known)
    limit: int | None = None

    @property
    def is_mask(self) -> bool:
        return "mask" in self.name


@dataclass(frozen=True)
class PictureInputs:
    """How an endpoint takes pictures: its picture fields, its prompt, its kind of tool."""

    fields: tuple[PictureField, ...]
    prompt: Literal["required", "optional", "none"] = "required"
    kind: Kind = "edit"


_SEED_BOUNDS = {"seed": {"minimum": 0, "maximum": 2**32 - 1, "help": "same seed, same picture"}}
_SEED = Param("seed", "int", None, minimum=0, maximum=2**32 - 1, help="same seed, same picture")
_SYNC = Param("sync_mode", "bool", False, help="return the image inline as a data URI")
_SAFETY = Param("enable_safety_checker", "bool", True)
_TOLERANCE = Param("safety_tolerance", "str", "2", choices=("1", "2", "3", "4", "5", "6"),
                   help="1 is strictest, 6 most permissive")
_TOLERANCE4 = Param("safety_tolerance", "str", "4", choices=("1", "2", "3", "4", "5", "6"))
_JP = Param("output_format", "str", "jpeg", choices=("jpeg", "png"))
_JPW = Param("output_format", "str", "png", choices=("jpeg", "png", "webp"))
_NEG = Param("negative_prompt", "str", "")
_GUIDE = Param("guidance_scale", "float", None, minimum=0.0, maximum=20.0)
_STEPS = Param("num_inference_steps", "int", None, minimum=1, maximum=100)
_ACCEL = Param("acceleration", "str", None, choices=("none", "regular", "high"))
_ENHANCE = Param("enhance_prompt", "bool", False)
_LIMIT_GEN = Param("limit_generations", "bool", False)
_UPSCALE = Param("upscale_factor", "float", 2.0, minimum=1.0, maximum=8.0, help="how many times larger")
_ONE = Param("image_url", "str", None, help="the picture to work on")
_MANY = Param("image_urls", "list", None, help="the pictures to work from")
_MASK = Param("mask_url", "str", None, help="white where the picture may change")

_RATIOS = ("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21")
_RATIOS_NB = ("auto", "21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16")


def _edit(id: str, title: str, aliases: tuple[str, ...], params: tuple[Param, ...], price: Price | None, *,
          size: Literal["image_size", "aspect_ratio"] | None = None, ratios: tuple[str, ...] = (),
          fmt: str = "jpeg", max_images: int | None = 4) -> ModelSpec:
    # an edit's output follows its input picture unless a size is asked for: fal's default is "auto" where the
    # model names it (a named size of its own, as a schema's enum gives it), else no size is sent
    named = tuple(r for r in ratios if ":" not in r)
    return ModelSpec(id=id, title=title, size_field=size, aspect_ratios=tuple(r for r in ratios if ":" in r),
                     default_size="auto" if "auto" in named else None,
                     size_presets=named if size == "aspect_ratio" else tuple(PRESETS),
                     max_images=max_images, output_format_default=fmt, params=params, price=price,
                     aliases=aliases)


def _single(id: str, title: str, aliases: tuple[str, ...], params: tuple[Param, ...], price: Price | None,
            fmt: str = "png") -> ModelSpec:
    # upscalers and background removers: one picture in, one ``image`` out, no prompt, no size, no seed echo
    return ModelSpec(id=id, title=title, size_field=None, default_size=None, max_images=None, output_key="image",
                     output_has_seed=False, output_format_default=fmt, params=params, price=price, aliases=aliases)


def _snap(model_id: str, overlay: Overlay) -> ModelSpec:
    # described by its shipped schema snapshot (``schemas/``: the same code as a schema fetched from fal)
    return spec_from_doc(read_openapi(snapshot(model_id), model_id), overlay, source="snapshot")


IMAGE_MODELS: tuple[ModelSpec, ...] = (
    # -- edit, several pictures (image_urls)
    _snap("fal-ai/nano-banana/edit", Overlay(("nano-banana-edit",), "Nano Banana edit", Price(0.039),
                                            params=_SEED_BOUNDS)),
    _edit("fal-ai/nano-banana-2/edit", "Nano Banana 2 edit", ("nano-banana-2-edit",),
          (_MANY, _SEED, _SYNC, _JPW, _TOLERANCE4, _LIMIT_GEN,
           Param("resolution", "str", "1K", choices=("0.5K", "1K", "2K", "4K")),
           Param("enable_web_search", "bool", False), Param("system_prompt", "str", None),
           Param("thinking_level", "str", None, choices=("minimal", "high"))),
          Price(0.08, by_param={"resolution": {"0.5K": 0.06, "2K": 0.12, "4K": 0.16}}),
          size="aspect_ratio", ratios=_RATIOS_NB, fmt="png"),
    _edit("fal-ai/nano-banana-pro/edit", "Nano Banana Pro edit", ("nano-banana-pro-edit",),
          (_MANY, _SEED, _SYNC, _JPW, _TOLERANCE4, _LIMIT_GEN,
           Param("resolution", "str", "1K", choices=("1K", "2K", "4K")),
           Param("enable_web_search", "bool", False), Param("system_prompt", "str", None)),
          Price(0.15, by_param={"resolution": {"4K": 0.30}}), size="aspect_ratio", ratios=_RATIOS_NB, fmt="png"),
    _edit("fal-ai/gemini-25-flash-image/edit", "Gemini 2.5 Flash Image edit", ("gemini-flash-edit",),
          (_MANY, _SEED, _SYNC, _JPW, _TOLERANCE4, _LIMIT_GEN), Price(0.039),
          size="aspect_ratio", ratios=_RATIOS_NB, fmt="png"),
    _edit("fal-ai/bytedance/seedream/v4/edit", "Seedream 4.0 edit", ("seedream-edit",),
          (_MANY, _SEED, _SYNC, _SAFETY, Param("max_images", "int", 1, minimum=1, maximum=6),
           Param("enhance_prompt_mode", "str", None, choices=("standard", "fast"))),
          Price(0.03), size="image_size", fmt="png", max_images=6),
    _edit("fal-ai/bytedance/seedream/v4.5/edit", "Seedream 4.5 edit", ("seedream-4.5-edit",),
          (_MANY, _SEED, _SYNC, _SAFETY, Param("max_images", "int", 1, minimum=1, maximum=6)),
          Price(0.04), size="image_size", fmt="png", max_images=6),
    _edit("fal-ai/qwen-image-edit-plus", "Qwen Image Edit Plus", ("qwen-edit-plus",),
          (_MANY, _SEED, _SYNC, _SAFETY, _NEG, _GUIDE, _STEPS,
           Param("acceleration", "str", None, choices=("none", "regular")), _JP),
          Price(0.03), size="image_size"),
    _edit("fal-ai/qwen-image-edit-2511", "Qwen Image Edit 2511", ("qwen-edit-2511",),
          (_MANY, _SEED, _SYNC, _SAFETY, _NEG, _GUIDE, _STEPS, _ACCEL,
           Param("output_format", "str", "png", choices=("jpeg", "png", "webp"))),
          Price(0.03), size="image_size", fmt="png"),
    _edit("fal-ai/flux-pro/kontext/max/multi", "FLUX.1 Kontext [max] multi", ("kontext-multi",),
          (_MANY, _SEED, _SYNC, _JP, _TOLERANCE, _ENHANCE, _GUIDE), Price(0.08),
          size="aspect_ratio", ratios=_RATIOS),
    _edit("fal-ai/flux-2/edit", "FLUX.2 [dev] edit", ("flux-2-edit",),
          (_MANY, _SEED, _SYNC, _SAFETY, _GUIDE, _STEPS, _ACCEL, _JPW,
           Param("enable_prompt_expansion", "bool", False)),
          Price(0.024, "megapixel"), size="image_size", fmt="png"),
    _edit("fal-ai/flux-2-pro/edit", "FLUX.2 [pro] edit", ("flux-2-pro-edit",),
          (_MANY, _SEED, _SYNC, _SAFETY, _JP, Param("safety_tolerance", "str", "2", choices=("1", "2", "3", "4", "5"))),
          Price(0.03, "megapixel"), size="image_size", max_images=None),
    _edit("openai/gpt-image-2/edit", "GPT Image 2 edit", ("gpt-image-edit",),
          (_MANY, Param("mask_url", "str", None, help="transparent where the picture may change"), _SYNC, _JPW,
           Param("quality", "str", "auto", choices=("auto", "low", "medium", "high"))),
          None, size="image_size", fmt="png"),
    # -- edit, one picture (image_url)
    _edit("fal-ai/flux-pro/kontext", "FLUX.1 Kontext [pro]", ("kontext", "flux-kontext"),
          (_ONE, _SEED, _SYNC, _JP, _TOLERANCE, _ENHANCE, _GUIDE), Price(0.04),
          size="aspect_ratio", ratios=_RATIOS),
    _edit("fal-ai/flux-kontext/dev", "FLUX.1 Kontext [dev]", ("kontext-dev",),
          (_ONE, _SEED, _SYNC, _SAFETY, _JP, _GUIDE, _STEPS, _ACCEL,
           Param("resolution_mode", "str", "match_input",
                 choices=("auto", "match_input", "1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3",
                          "9:16", "9:21"))),
          Price(0.025)),
    _edit("fal-ai/qwen-image-edit", "Qwen Image Edit", ("qwen-edit",),
          (_ONE, _SEED, _SYNC, _SAFETY, _NEG, _GUIDE, _STEPS, _ACCEL, _JP), Price(0.03), size="image_size"),
    _edit("fal-ai/flux/dev/redux", "FLUX.1 [dev] Redux", ("flux-redux",),
          (_ONE, _SEED, _SYNC, _SAFETY, _GUIDE, _STEPS, _ACCEL, _JP), Price(0.025, "megapixel"),
          size="image_size"),
    _edit("fal-ai/flux-pro/v1.1-ultra/redux", "FLUX1.1 [pro] ultra Redux", ("flux-ultra-redux",),
          (_ONE, _SEED, _SYNC, _JP, _TOLERANCE, _ENHANCE, Param("raw", "bool", False),
           Param("image_prompt_strength", "float", 0.1, minimum=0.0, maximum=1.0)),
          Price(0.06), size="aspect_ratio", ratios=_RATIOS),
    # -- inpainting: a picture and a mask
    _edit("fal-ai/flux-pro/v1/fill", "FLUX.1 [pro] Fill", ("flux-fill",),
          (_ONE, _MASK, _SEED, _SYNC, _JP, _TOLERANCE, _ENHANCE), Price(0.05)),
    _edit("fal-ai/ideogram/v3/edit", "Ideogram 3.0 edit", ("ideogram-edit",),
          (_ONE, _MASK, Param("image_urls", "list", None, help="style reference pictures"), _SEED, _SYNC,
           Param("rendering_speed", "str", "BALANCED", choices=("TURBO", "BALANCED", "QUALITY")),
           Param("style_codes", "list", None), Param("style_preset", "str", None),
           Param("color_palette", "object", None), Param("expand_prompt", "bool", True)),
          Price(0.06, by_param={"rendering_speed": {"TURBO": 0.03, "BALANCED": 0.06, "QUALITY": 0.09}}),
          max_images=8, fmt="png"),
    # -- upscalers: one picture in, one ``image`` out
    _single("fal-ai/esrgan", "ESRGAN upscaler", ("esrgan",),
            (_ONE, Param("scale", "float", 2.0, minimum=1.0, maximum=8.0, help="how many times larger"),
             Param("model", "str", "RealESRGAN_x4plus",
                   choices=("RealESRGAN_x4plus", "RealESRGAN_x2plus", "RealESRGAN_x4plus_anime_6B",
                            "RealESRGAN_x4_v3", "RealESRGAN_x4_wdn_v3", "RealESRGAN_x4_anime_v3")),
             Param("face", "bool", False), Param("tile", "int", 0, minimum=0),
             Param("output_format", "str", "png", choices=("png", "jpeg"))), None),
    _single("fal-ai/aura-sr", "AuraSR upscaler", ("aura-sr",),
            (_ONE, Param("upscale_factor", "float", 4.0, minimum=4.0, maximum=4.0),
             Param("checkpoint", "str", "v1", choices=("v1", "v2")), Param("overlapping_tiles", "bool", False)),
            None),
    _single("fal-ai/clarity-upscaler", "Clarity upscaler", ("clarity-upscaler", "clarity"),
            (_ONE, _UPSCALE, _NEG, _SEED, _SAFETY, _GUIDE, _STEPS,
             Param("creativity", "float", 0.35, minimum=0.0, maximum=1.0),
             Param("resemblance", "float", 0.6, minimum=0.0, maximum=1.0)),
            Price(0.03, "megapixel")),
    _single("fal-ai/seedvr/upscale/image", "SeedVR2 upscaler", ("seedvr",),
            (_ONE, _UPSCALE, _SEED, _SYNC, Param("noise_scale", "float", 0.1, minimum=0.0, maximum=1.0),
             Param("upscale_mode", "str", "factor", choices=("target", "factor")),
             Param("target_resolution", "str", "1080p", choices=("720p", "1080p", "1440p", "2160p")),
             Param("output_format", "str", "jpg", choices=("png", "jpg", "webp"))),
            Price(0.001, "megapixel"), fmt="jpeg"),
    _single("fal-ai/topaz/upscale/image", "Topaz upscaler", ("topaz",),
            (_ONE, _UPSCALE, _JP,
             Param("model", "str", "Standard V2", choices=("Standard V2", "High Fidelity V2", "Low Resolution V2",
                                                           "CGI", "Text Refine")),
             Param("face_enhancement", "bool", False), Param("crop_to_fill", "bool", False)),
            Price(0.08), fmt="jpeg"),
    _single("fal-ai/recraft/upscale/crisp", "Recraft Crisp upscale", ("recraft-crisp",),
            (_ONE, _SYNC, _SAFETY), Price(0.004)),
    # -- background removal: one picture in, one RGBA ``image`` out
    _single("fal-ai/birefnet/v2", "BiRefNet v2 background removal", ("birefnet", "remove-bg"),
            (_ONE, _SYNC, Param("model", "str", "General Use (Light)",
                                choices=("General Use (Light)", "General Use (Light 2K)", "General Use (Heavy)",
                                         "Matting", "Portrait")),
             Param("operating_resolution", "str", "1024x1024", choices=("1024x1024", "2048x2048", "2304x2304")),
             Param("output_format", "str", "png", choices=("webp", "png", "gif")),
             Param("output_mask", "bool", False), Param("refine_foreground", "bool", True)), None),
    _snap("fal-ai/bria/background/remove", Overlay(("bria-rmbg",), "Bria background removal", Price(0.018),
                                                  output_format="png")),
    _single("fal-ai/imageutils/rembg", "rembg background removal", ("rembg",),
            (_ONE, _SYNC, Param("crop_to_bbox", "bool", False)), None),
)

_ONE_F = (PictureField("image_url"),)
_MANY_F = (PictureField("image_urls", many=True),)

#: which inputs of each endpoint take pictures (field order: pictures first, the mask last)
PICTURE_INPUTS: dict[str, PictureInputs] = {
    "fal-ai/nano-banana/edit": PictureInputs(_MANY_F),
    "fal-ai/nano-banana-2/edit": PictureInputs((PictureField("image_urls", many=True, required=False, limit=14),)),
    "fal-ai/nano-banana-pro/edit": PictureInputs(_MANY_F),
    "fal-ai/gemini-25-flash-image/edit": PictureInputs(_MANY_F),
    "fal-ai/bytedance/seedream/v4/edit": PictureInputs((PictureField("image_urls", many=True, limit=10),)),
    "fal-ai/bytedance/seedream/v4.5/edit": PictureInputs((PictureField("image_urls", many=True, limit=10),)),
    "fal-ai/qwen-image-edit-plus": PictureInputs(_MANY_F),
    "fal-ai/qwen-image-edit-2511": PictureInputs(_MANY_F),
    "fal-ai/flux-pro/kontext/max/multi": PictureInputs(_MANY_F),
    "fal-ai/flux-2/edit": PictureInputs(_MANY_F),
    "fal-ai/flux-2-pro/edit": PictureInputs(_MANY_F),
    "openai/gpt-image-2/edit": PictureInputs((*_MANY_F, PictureField("mask_url", required=False))),
    "fal-ai/flux-pro/kontext": PictureInputs(_ONE_F),
    "fal-ai/flux-kontext/dev": PictureInputs(_ONE_F),
    "fal-ai/qwen-image-edit": PictureInputs(_ONE_F),
    "fal-ai/flux/dev/redux": PictureInputs(_ONE_F, prompt="none"),
    "fal-ai/flux-pro/v1.1-ultra/redux": PictureInputs(_ONE_F, prompt="optional"),
    "fal-ai/flux-pro/v1/fill": PictureInputs((*_ONE_F, PictureField("mask_url"))),
    "fal-ai/ideogram/v3/edit": PictureInputs((*_ONE_F, PictureField("mask_url"),
                                              PictureField("image_urls", many=True, required=False))),
    **{m: PictureInputs(_ONE_F, prompt="none", kind="upscale")
       for m in ("fal-ai/esrgan", "fal-ai/aura-sr", "fal-ai/seedvr/upscale/image", "fal-ai/recraft/upscale/crisp")},
    # these two take an optional prompt that steers the added detail
    **{m: PictureInputs(_ONE_F, prompt="optional", kind="upscale")
       for m in ("fal-ai/clarity-upscaler", "fal-ai/topaz/upscale/image")},
    **{m: PictureInputs(_ONE_F, prompt="none", kind="remove_background")
       for m in ("fal-ai/birefnet/v2", "fal-ai/bria/background/remove", "fal-ai/imageutils/rembg")},
}

#: picture inputs by name, for endpoints falnb has no table for (fal's convention: ``image_url``, ``image_urls``,
#: ``mask_url``, ``*_image_url``)
_PICTURE_NAME = re.compile(r"^(?:.+_)?(?:image|mask)_urls?$")
_TEXT = PictureInputs(())
_PICTURE_WORD = re.compile(r"image|mask")
_REMOVER = re.compile(r"background|rembg|birefnet")


def is_picture_name(name: str) -> bool:
    """Whether an input named ``name`` takes pictures by fal's naming convention."""
    return bool(_PICTURE_NAME.match(name))


def picture_inputs(spec: ModelSpec) -> PictureInputs:
    """How ``spec`` takes pictures: from :data:`PICTURE_INPUTS`, else from its inputs (fal's schema): those named
    like pictures or marked ``x-fal-file-input`` with "image" or "mask" in their name, required when the schema
    requires them (FLUX1.1 ultra's optional ``image_url``; an image-to-image endpoint's ``image_urls``), else none."""
    known = PICTURE_INPUTS.get(spec.id) or PICTURE_INPUTS.get(spec.variant_of or "")
    if known is not None:
        return known
    fields = tuple(PictureField(p.name, many=p.type == "list", required=p.name in spec.required)
                   for p in spec.params if is_picture_name(p.name) or (p.file_input and _PICTURE_WORD.search(p.name)))
    if not fields:
        return _TEXT
    # a prompt as the schema says; the kind from fal's usual ids (for captions and the output's size)
    prompt: Literal["required", "optional", "none"] = (
        "none" if not spec.takes_prompt else "required" if "prompt" in spec.required else "optional")
    kind: Kind = "upscale" if "upscal" in spec.id else "remove_background" if _REMOVER.search(spec.id) else "edit"
    return PictureInputs(tuple(sorted(fields, key=lambda f: f.is_mask)), prompt=prompt, kind=kind)
