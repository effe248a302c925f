"""Any picture as a model input: a local path, bytes, a Pillow image, a NumPy array, a falnb ``Image`` or
``Generation`` (duck-typed: the request layer sits below results), or an http(s) URL / ``data:`` URI.

Every local picture is read and checked here, before anything is uploaded or sent: an unreadable path,
0 bytes, bytes that are not a picture, or a picture over :data:`MAX_PICTURE_BYTES` is a short
:class:`InputError`.  A picture is keyed by the SHA-256 of its bytes (its :attr:`Picture.token`), never by
the URL an upload gives it, so the same bytes make the same cache key in any kernel.  An http(s) URL is
passed through as it is (falnb cannot know its bytes: the URL is its key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

from .._exceptions import InputError

__all__ = ["MAX_PICTURE_BYTES", "Picture", "to_pictures"]

#: the largest picture falnb sends.  fal publishes no per-input limit (its docs' "fal cdn" page, checked
#: 2026-11-30); its storage takes files far larger (fal-client uploads in parts above 100 MiB).  falnb's own
#: download cap (``fal._download.MAX_IMAGE_BYTES``) is the same 128 MiB: a picture falnb could not take back.
MAX_PICTURE_BYTES = 128 * 1024 * 1024
#: formats fal's image models read (Pillow's names) and their content types.  Pillow calls a JPEG with a
#: multi-picture index (many phone and camera photos) "MPO": its bytes are a JPEG whose first picture any
#: JPEG reader decodes, so it is sent as one
_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
#: formats whose ``verify()`` reads none of the picture's data: a truncated file is found by decoding it
_DECODED = frozenset({"JPEG", "MPO", "GIF"})
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


@dataclass(frozen=True, eq=False)
class Picture:
    """One input picture: its bytes (empty for a URL passed through), hash, type, size and a label."""

    data: bytes
    sha256: str
    content_type: str
    width: int | None
    height: int | None
    #: an http(s) URL passed through as it is (then ``data`` is empty)
    url: str | None = None
    #: a short human label of where it came from ("photo.png", "picture 2 of cell [5]")
    source: str | None = None

    @property
    def token(self) -> str:
        """What the cache key holds for this picture: its content hash, or the URL passed through."""
        return self.url if self.url is not None else f"sha256:{self.sha256}"

    @property
    def file_name(self) -> str:
        return f"falnb-{self.sha256[:16]}.{_EXT.get(self.content_type, 'bin')}"

    def __repr__(self) -> str:
        what = self.url or f"{self.width}x{self.height} {self.content_type} {len(self.data):,} bytes"
        return f"<Picture {what}{f' from {self.source}' if self.source else ''}>"


def to_pictures(value: Any, *, field: str, model: str, limit: int = MAX_PICTURE_BYTES) -> list[Picture]:
    """The pictures ``value`` stands for (a Generation or a list: several), each read and checked."""
    if _is_generation(value):
        label = getattr(value, "origin", None) or _short(str(getattr(value, "model", "")))
        return [_from_image(img, field, model, limit, f"picture {i + 1} of {label}")
                for i, img in enumerate(value.images)]
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in to_pictures(v, field=field, model=model, limit=limit)]
    return [_one(value, field, model, limit)]


def _one(value: Any, field: str, model: str, limit: int) -> Picture:
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return Picture(b"", hashlib.sha256(value.encode()).hexdigest(), "", None, None, url=value, source=value)
    if isinstance(value, str) and value.startswith("data:"):
        return _checked(_data_uri(value, field, model), field, model, limit, "a data: URI")
    if isinstance(value, (str, os.PathLike)):
        return _from_path(Path(os.fspath(value)).expanduser(), field, model, limit)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _checked(bytes(value), field, model, limit, "bytes")
    if _is_image(value):
        return _from_image(value, field, model, limit, None)
    module = type(value).__module__
    if module.startswith("PIL."):
        return _checked(_encode(value, field, model), field, model, limit, "a PIL image")
    if module == "numpy":
        return _checked(_encode(_from_array(value, field, model), field, model), field, model, limit, "an array")
    raise InputError(f"{field}: {type(value).__name__} is not a picture", model=model, field=field,
                     hint="Give a file path, bytes, a PIL image, a NumPy array, a falnb Image or Generation, "
                          "or an http(s) URL.")


def _is_generation(value: Any) -> bool:
    return type(value).__name__ == "Generation" and isinstance(getattr(value, "images", None), list)


def _is_image(value: Any) -> bool:
    return type(value).__name__ == "Image" and isinstance(getattr(value, "data", None), bytes) \
        and hasattr(value, "content_type")


def _from_image(img: Any, field: str, model: str, limit: int, label: str | None) -> Picture:
    source = getattr(img, "source", None) or label or "a falnb Image"
    url = getattr(img, "url", None)
    if not img.data and isinstance(url, str) and url.startswith(("http://", "https://")):
        return _one(url, field, model, limit)  # an input passed through as a URL (no bytes): passed again
    return _checked(img.data, field, model, limit, source)


def _short(model: str) -> str:
    return model.rsplit("/", 1)[-1] if model else "a generation"


def _from_path(path: Path, field: str, model: str, limit: int) -> Picture:
    shown = path.name or str(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise InputError(f"{field}: {str(path)!r} is not a file", model=model, field=field)
        if size > limit:  # before reading: a huge file is refused without loading it
            raise _too_big(size, field, model, limit, shown)
        data = path.read_bytes()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise InputError(f"{field}: cannot read {str(path)!r} ({why})", model=model, field=field,
                         hint="Give the path of a picture file (PNG, JPEG, WebP or GIF), or its bytes.") from None
    return _checked(data, field, model, limit, shown)


def _too_big(size: int, field: str, model: str, limit: int, shown: str) -> InputError:
    return InputError(f"{field}: {shown} is {size / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB falnb sends",
                      model=model, field=field, hint="Scale it down or save it as JPEG or WebP first.")


def _checked(data: bytes, field: str, model: str, limit: int, source: str) -> Picture:
    if not data:
        raise InputError(f"{field}: {source} is empty (0 bytes)", model=model, field=field)
    if len(data) > limit:
        raise _too_big(len(data), field, model, limit, source)
    ctype, width, height = identify(data, field, model, source)
    return Picture(data, hashlib.sha256(data).hexdigest(), ctype, width, height, source=source)


def identify(data: bytes, field: str = "image", model: str = "", source: str = "bytes") -> tuple[str, int, int]:
    """``(content type, width, height)`` of a picture fal's models read, or an InputError."""
    from PIL import Image as PIL
    from PIL import UnidentifiedImageError

    try:
        with PIL.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format, img.size
            img.verify()  # a truncated or corrupt file fails here, not at fal (where it could be billed)
        if fmt in _DECODED:
            _decode(data)
    except PIL.DecompressionBombError as exc:  # not an OSError: it would escape as Pillow's own traceback
        raise InputError(f"{field}: {source} has too many pixels for falnb to read ({exc})", model=model,
                         field=field, hint="Scale it down first.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        why = "" if isinstance(exc, UnidentifiedImageError) else f" ({exc})"
        raise InputError(f"{field}: {source} is not a picture falnb can read{why}", model=model, field=field,
                         hint="fal's image models take PNG, JPEG, WebP or GIF.") from None
    if fmt not in _FORMATS:
        raise InputError(f"{field}: {source} is a {fmt} picture; fal's image models take PNG, JPEG, WebP or GIF",
                         model=model, field=field, hint="Save it as PNG or JPEG first.")
    return _FORMATS[fmt], width, height


def _decode(data: bytes) -> None:
    """Decode the picture (a JPEG at 1/8 scale: its whole data is still read, quickly): an OSError if it is
    truncated.  Pillow's ``verify()`` checks a PNG's chunks but reads nothing of a JPEG's or a GIF's data."""
    from PIL import Image as PIL

    with PIL.open(io.BytesIO(data)) as img:
        img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
        img.load()


def _data_uri(uri: str, field: str, model: str) -> bytes:
    header, _, payload = uri.partition(",")
    try:
        if header.endswith(";base64"):  # line breaks and spaces are no data (WHATWG's forgiving base64)
            return base64.b64decode("".join(payload.split()), validate=True)
        return unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        raise InputError(f"{field}: the data: URI is not valid base64", model=model, field=field) from None


def _encode(img: Any, field: str, model: str) -> bytes:
    buf = io.BytesIO()
    try:
        img.save(buf, format="PNG")  # lossless: the bytes (and so the cache key) are the same every time
    except (OSError, ValueError) as exc:
        raise InputError(f"{field}: cannot encode the PIL image as PNG ({exc})", model=model, field=field) from None
    return buf.getvalue()


def _from_array(arr: Any, field: str, model: str) -> Any:
    from PIL import Image as PIL

    shape, dtype = tuple(getattr(arr, "shape", ())), str(getattr(arr, "dtype", ""))
    ok = dtype == "uint8" and (len(shape) == 2 or (len(shape) == 3 and shape[2] in (3, 4)))
    if not ok or 0 in shape:
        raise InputError(f"{field}: an array of shape {shape} and dtype {dtype} is not a picture", model=model,
                         field=field, hint="Give an HxW, HxWx3 (RGB) or HxWx4 (RGBA) array of uint8.")
    return PIL.fromarray(arr)


def labels(pictures: Iterable[Picture]) -> list[str]:
    """The pictures' labels, for messages."""
    return [p.source or p.token for p in pictures]
