"""The form's history: the session's generations, each re-openable without paying again.

An item made by the form keeps its settings and its plan, so re-opening reads each request's
entry straight from the cache (a file read, no network); with a cache it keeps no picture bytes.
An item made elsewhere in the session (``falnb.generate``, ``%%falimage`` through the same client),
or made without a cache, is re-opened from the :class:`~falnb.results._generation.Generation` kept in
memory.  Neither path sends anything to fal, and the history is bounded like the client's own
(:data:`HISTORY_SIZE` items, the oldest dropped).
"""

from __future__ import annotations

import dataclasses
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._client import Client
    from ..catalog._catalog import Catalog
    from ..request._plan import Plan
    from ..results._generation import Generation
    from ..results._image import Image

__all__ = ["HISTORY_SIZE", "History", "HistoryItem", "settings_of"]

#: generations the form lists (the client keeps as many in its own history)
HISTORY_SIZE = 50

#: input fields that are form controls of their own, not advanced parameters
_OWN_FIELDS = {"prompt", "num_images", "seed", "image_size", "aspect_ratio"}


@dataclass
class HistoryItem:
    generation: Generation
    settings: dict[str, Any]
    plan: Plan | None = None
    #: pictures the generation had (its ``images`` are dropped when the cache holds them)
    count: int = -1

    def __post_init__(self) -> None:
        if self.count < 0:
            self.count = len(self.generation.images)

    def label(self, number: int, catalog: Catalog) -> str:
        gen = self.generation
        try:
            name = catalog.resolve(gen.model).alias
        except Exception:  # a model id the catalog no longer knows
            name = gen.model
        when = time.strftime("%H:%M:%S", time.localtime(gen.created))
        prompt = gen.prompt if len(gen.prompt) <= 40 else gen.prompt[:39] + "…"
        flag = " · cached" if gen.cached else ""
        return f"{number}. {when} {name} · {self.count} image(s){flag} · {prompt}"

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


class History:
    """The form's list of :class:`HistoryItem`, oldest first, at most :data:`HISTORY_SIZE` (thread-safe:
    the loop thread adds the form's results, the kernel's thread lists the client's)."""

    def __init__(self) -> None:
        self.items: list[HistoryItem] = []
        self._lock = threading.Lock()
        self._known: weakref.WeakSet[Generation] = weakref.WeakSet()  # generations already listed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> HistoryItem:
        with self._lock:
            return self.items[index]

    def __iter__(self) -> Any:
        with self._lock:
            return iter(list(self.items))

    def add(self, gen: Generation, settings: dict[str, Any], plan: Plan | None, cached: bool) -> None:
        """A result of the form; ``cached``: the cache holds its pictures, so the item keeps none."""
        light = dataclasses.replace(gen, images=[], responses=[]) if cached and plan is not None else gen
        with self._lock:
            self._known.add(gen)
            self._append(HistoryItem(light, settings, plan, len(gen.images)))

    def merge(self, gens: list[Generation], catalog: Catalog) -> list[HistoryItem]:
        """Add the client's generations not listed yet; the items, oldest first."""
        with self._lock:
            for gen in gens:
                if gen not in self._known:
                    self._known.add(gen)
                    self._append(HistoryItem(gen, settings_of(gen, catalog)))
            return list(self.items)

    def _append(self, item: HistoryItem) -> None:
        self.items.append(item)
        self.items.sort(key=lambda i: i.generation.created)
        del self.items[:-HISTORY_SIZE]


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
