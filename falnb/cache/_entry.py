"""One stored response: :class:`CacheEntry` (shared by the store and the in-flight journal)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..results._image import Image

__all__ = ["CacheEntry"]


@dataclass(frozen=True, eq=False)
class CacheEntry:
    """A stored response: the images (bytes included), fal's request id and its response JSON."""

    key: str
    images: list[Image]
    request_id: str | None
    response: dict[str, Any] = field(repr=False)
    model: str = ""
    created: float = 0.0
