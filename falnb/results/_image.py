"""One generated picture: :class:`Image`, holding its bytes (fal's URLs expire, the bytes do not)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = ["EXTENSIONS", "FAL_URL_LIFETIME", "Image", "fal_still_keeps", "usable_url"]

#: file suffix of each image type
EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}

#: fal keeps output files at least 7 days (/work/shared/fal-protocol.md, "Retention"); after that a
#: URL is replaced by a data: URI
FAL_URL_LIFETIME = 7 * 24 * 3600.0


def fal_still_keeps(made: float | None, now: float) -> bool:
    """Whether fal still serves the files of pictures it made at ``made`` (None: unknown, taken as yes)."""
    return made is None or now - made < FAL_URL_LIFETIME


def usable_url(url: str | None) -> bool:
    """A URL someone else can open: http(s), and not the in-process emulator's made-up host."""
    if not url:
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and \
        not str(parts.hostname).endswith(".invalid")


@dataclass(frozen=True, eq=False, slots=True)
class Image:
    """One generated picture.  ``data`` holds the bytes: fal's URLs expire, these do not."""

    data: bytes = field(repr=False)
    content_type: str
    width: int | None
    height: int | None
    url: str | None = None
    seed: int | None = None
    #: a short label of where this picture came from, when it is an input ("picture 2 of cell [5]",
    #: "photo.png", a URL); None for a generated picture
    source: str | None = None

    def save(self, path: str | Path) -> Path:
        """Write the bytes to ``path`` (a directory gets a file name from the content, the same in every
        process: saving a picture twice writes one file; a missing suffix is added)."""
        p = Path(path)
        ext = EXTENSIONS.get(self.content_type, ".bin")
        if p.is_dir():  # (not hash(): bytes hash differently in each process)
            p = p / f"falnb-{hashlib.sha256(self.data).hexdigest()[:16]}{ext}"
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
