"""What a schema cannot say, per seed model: falnb's aliases and titles, price rules, limits fal states only in
prose, the picture size of ``aspect_ratio`` models, and the output format a model uses when it has no
``output_format`` input.  Everything else about a seed model comes from its schema snapshot
(``schemas/*.json``), through the same code as any endpoint fetched from fal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._spec import Price

__all__ = ["SEED_OVERLAYS", "Overlay"]


@dataclass(frozen=True)
class Overlay:
    """falnb's additions to an endpoint's schema."""

    aliases: tuple[str, ...] = ()
    title: str | None = None
    price: Price | None = None
    #: inclusive pixel bounds per side that fal states only in prose ("between 512 and 2048")
    side_range: tuple[int, int] | None = None
    #: megapixels of the picture an ``aspect_ratio`` model renders
    megapixels: float | None = None
    #: the picture format when the model has no ``output_format`` input
    output_format: str | None = None
    #: per input, fields of its :class:`~falnb.catalog._spec.Param` the schema leaves out (bounds, help)
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


#: fal's schemas leave ``seed`` unbounded; fal's runners take 32-bit seeds
_SEED = {"seed": {"minimum": 0, "maximum": 2**32 - 1, "help": "same seed, same picture"}}
#: the 512-2048 limit of ByteDance's models is in the schema's description only
_BYTEDANCE_SIDES = (512, 2048)

SEED_OVERLAYS: dict[str, Overlay] = {
    "fal-ai/flux-pro/v1.1-ultra": Overlay(("flux-ultra", "ultra"), "FLUX1.1 [pro] ultra", Price(0.06),
                                          megapixels=4.0, params=_SEED),
    "fal-ai/flux-pro/v1.1": Overlay(("flux-pro",), "FLUX1.1 [pro]", Price(0.04), params=_SEED),
    "fal-ai/flux/schnell": Overlay(("flux-schnell", "schnell"), "FLUX.1 [schnell]", Price(0.003, "megapixel"),
                                   params=_SEED),
    "fal-ai/bytedance/seedream/v3/text-to-image": Overlay(("seedream",), "Seedream 3.0", Price(0.03),
                                                          side_range=_BYTEDANCE_SIDES, params=_SEED),
    "fal-ai/bytedance/dreamina/v3.1/text-to-image": Overlay(("dreamina",), "Dreamina 3.1", Price(0.03),
                                                            side_range=_BYTEDANCE_SIDES, params=_SEED),
    "fal-ai/imagen4/preview": Overlay(("imagen4",), "Imagen 4 (preview)",
                                      Price(0.04, by_param={"resolution": {"2K": 0.05}}), params=_SEED),
    "fal-ai/recraft/v3/text-to-image": Overlay(("recraft",), "Recraft V3",
                                               Price(0.04, multipliers={"style": ("vector_illustration", 2.0)}),
                                               output_format="webp"),
    "fal-ai/ideogram/v3": Overlay(("ideogram",), "Ideogram 3.0",
                                  Price(0.06, by_param={"rendering_speed": {"TURBO": 0.03, "BALANCED": 0.06,
                                                                            "QUALITY": 0.09}}),
                                  output_format="png", params=_SEED),
    "fal-ai/stable-diffusion-v35-medium": Overlay(("stable-diffusion", "sd35"), "Stable Diffusion 3.5 Medium",
                                                  Price(0.02, "megapixel"), params=_SEED),
    "bria/text-to-image/3.2": Overlay(("bria",), "Bria 3.2", Price(0.04), output_format="png"),
}
