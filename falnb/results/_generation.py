"""What a generation returns: :class:`Generation` and its :class:`Image` objects."""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = ["Generation", "Image", "images_from_response", "seed_text"]

_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}


@dataclass(frozen=True, eq=False)
class Image:
    """One generated picture.  ``data`` holds the bytes: fal's URLs expire, these do not."""

    data: bytes = field(repr=False)
    content_type: str
    width: int | None
    height: int | None
    url: str | None = None
    seed: int | None = None

    def save(self, path: str | Path) -> Path:
        """Write the bytes to ``path`` (a directory gets a file name; a missing suffix is added)."""
        p = Path(path)
        ext = _EXT.get(self.content_type, ".bin")
        if p.is_dir():
            p = p / f"falnb-{abs(hash(self.data)) % 10**10}{ext}"
        elif not p.suffix:
            p = p.with_suffix(ext)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(self.data)
        return p

    def to_pil(self) -> PILImage:
        import io

        from PIL import Image as PIL

        img = PIL.open(io.BytesIO(self.data))
        img.load()
        return img

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        mime = self.content_type if self.content_type in ("image/png", "image/jpeg") else None
        bundle: dict[str, Any] = {"text/plain": repr(self)}
        if mime:
            bundle[mime] = self.data if mime == "image/png" else base64.b64encode(self.data).decode()
        else:  # webp and others: show a PNG of it
            import io

            buf = io.BytesIO()
            self.to_pil().save(buf, format="PNG")
            bundle["image/png"] = buf.getvalue()
        return bundle

    def __repr__(self) -> str:
        dims = f"{self.width}x{self.height}" if self.width and self.height else "?x?"
        return f"<falnb.Image {dims} {self.content_type} {len(self.data):,} bytes>"


@dataclass(eq=False)
class Generation:
    """The result of one ``generate`` call.

    ``inputs`` is what was sent to fal (one dict per request: ``n`` may be split),
    ``cost`` an estimate in USD (None when the price is unknown), ``cached`` True when every
    image came from the cache (nothing was paid).
    """

    prompt: str
    model: str
    images: list[Image]
    inputs: list[dict[str, Any]]
    request_ids: list[str]
    seed: int | None = None
    cost: float | None = None
    cached: bool = False
    #: spend avoided thanks to the cache (USD estimate)
    saved: float = 0.0
    elapsed: float = 0.0
    response_format: str = "url"
    responses: list[dict[str, Any]] = field(default_factory=list, repr=False)
    created: float = field(default_factory=time.time)

    @property
    def image(self) -> Image:
        return self.images[0]

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Any:
        return iter(self.images)

    def __getitem__(self, i: int) -> Image:
        return self.images[i]

    def to_openai(self, response_format: str | None = None) -> dict[str, Any]:
        """An OpenAI ImagesResponse-shaped dict: ``created``, ``data[i].url`` / ``b64_json``."""
        fmt = response_format or self.response_format
        data = []
        for img in self.images:
            item: dict[str, Any] = {"revised_prompt": self.prompt}
            url = img.url if img.url and not img.url.startswith("data:") else None
            item["url"] = url
            item["b64_json"] = base64.b64encode(img.data).decode() if fmt == "b64_json" or url is None else None
            data.append(item)
        return {"created": int(self.created), "data": data,
                "usage": None, "_hidden_params": {"response_cost": 0.0 if self.cached else self.cost,
                                                  "model": self.model}}

    def save(self, directory: str | Path, prefix: str = "falnb") -> list[Path]:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        return [img.save(d / f"{prefix}-{i}{_EXT.get(img.content_type, '.bin')}") for i, img in enumerate(self.images)]

    def caption(self) -> str:
        first = self.images[0] if self.images else None
        dims = f"{first.width}x{first.height}" if first and first.width and first.height else "size by model"
        parts = [self.model, dims]
        seeds = seed_text(self)
        if seeds:
            parts.append(seeds)
        parts.append("cost unknown" if self.cost is None else f"~${self.cost:.3f}")
        if self.cached:
            parts.append(f"cached, saved ~${self.saved:.3f}")
        return " · ".join(parts)

    def __repr__(self) -> str:
        return (f"<falnb.Generation {len(self.images)} image(s) from {self.model}"
                f"{' (cached)' if self.cached else ''}: {self.caption()}>")

    def _repr_html_(self) -> str:
        # text only: the pictures are emitted as real image outputs by display(), not inlined
        return (f"<div class='falnb-generation'><b>{html.escape(self.model)}</b> — "
                f"{html.escape(self.prompt[:200])}<br><small>{html.escape(self.caption())}</small></div>")

    def _ipython_display_(self) -> None:
        # as %%falimage shows it: a capped preview grid (real image outputs) and an escaped caption
        from ._render import show_generation

        show_generation(self)


def seed_text(gen: Generation) -> str | None:
    """``seed 7``, or ``seeds 7-9`` when ``n`` was split over requests with their own seeds."""
    seeds = sorted({img.seed for img in gen.images if isinstance(img.seed, int)})
    if not seeds and isinstance(gen.seed, int):
        seeds = [gen.seed]
    if not seeds:
        return None
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ", ".join(str(s) for s in seeds[:6]) + (", …" if len(seeds) > 6 else "")


def images_from_response(response: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    """fal's image list, whichever shape the model uses (Bria returns a single ``image``)."""
    if isinstance(response.get("images"), list):
        return [i for i in response["images"] if isinstance(i, Mapping)]
    if isinstance(response.get("image"), Mapping):
        return [response["image"]]
    return []
