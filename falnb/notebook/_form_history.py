"""The form's history: the session's generations, each re-openable without paying again.

An item made by the form keeps its settings and its plan, so re-opening reads each request's
entry straight from the cache (a file read, no network); an item made elsewhere in the session
(``falnb.generate``, ``%%falimage`` through the same client) is re-opened from the
:class:`~falnb.results._generation.Generation` the client kept.  Neither path sends anything to fal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._client import Client
    from ..catalog._catalog import Catalog
    from ..request._plan import Plan
    from ..results._generation import Generation
    from ..results._image import Image

__all__ = ["HistoryItem", "settings_of"]

#: input fields that are form controls of their own, not advanced parameters
_OWN_FIELDS = {"prompt", "num_images", "seed", "image_size", "aspect_ratio"}


@dataclass
class HistoryItem:
    generation: Generation
    settings: dict[str, Any]
    plan: Plan | None = None

    def label(self, number: int, catalog: Catalog) -> str:
        gen = self.generation
        try:
            name = catalog.resolve(gen.model).alias
        except Exception:  # a model id the catalog no longer knows
            name = gen.model
        when = time.strftime("%H:%M:%S", time.localtime(gen.created))
        prompt = gen.prompt if len(gen.prompt) <= 40 else gen.prompt[:39] + "…"
        flag = " · cached" if gen.cached else ""
        return f"{number}. {when} {name} · {len(gen.images)} image(s){flag} · {prompt}"

    def images(self, client: Client) -> tuple[list[Image], str]:
        """The pictures and where they came from (``"cache"`` or ``"memory"``); never sends a request."""
        cache = client.cache if self.plan is not None else None
        if cache is not None and self.plan is not None:
            images: list[Image] = []
            for req in self.plan.requests:
                entry = cache.get(req.key)
                if entry is None:
                    break
                images.extend(entry.images)
            else:
                if images:
                    return images, "cache"
        return list(self.generation.images), "memory"


def settings_of(gen: Generation, catalog: Catalog) -> dict[str, Any]:
    """Form settings that ask again for ``gen`` (best effort for a generation made outside the form)."""
    first: dict[str, Any] = dict(gen.inputs[0]) if gen.inputs else {}
    size: Any = first.get("aspect_ratio") or first.get("image_size")
    if isinstance(size, dict):
        size = f"{size.get('width')}x{size.get('height')}"
    try:
        spec = catalog.resolve(gen.model)
        model = spec.alias
        seeded = spec.param("seed") is not None
    except Exception:
        model, seeded = gen.model, True
    params = {k: v for k, v in first.items() if k not in _OWN_FIELDS}
    return {"model": model, "prompt": gen.prompt, "n": max(1, len(gen.images)), "size": size,
            "seed": gen.seed if seeded and "seed" in first else None, "params": params}
