"""The ten seed models, described from fal's published input/output types (see ``../shared/models.md``)."""

from __future__ import annotations

from ._spec import ModelSpec, Param, Price

__all__ = ["SEED_MODELS"]

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
