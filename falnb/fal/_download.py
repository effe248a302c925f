"""Fetching image bytes from a fal response, and reading their type and size without Pillow.

Only ``https``/``http`` URLs and ``data:`` URIs are fetched: a response cannot make falnb read
local files (``file:``) or other schemes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import struct
from urllib.parse import unquote_to_bytes, urlsplit

import httpx

from .._exceptions import FalServerError, TransportError

__all__ = ["MAX_IMAGE_BYTES", "fetch_image", "sniff"]

MAX_IMAGE_BYTES = 128 * 1024 * 1024


def sniff(data: bytes) -> tuple[str, int | None, int | None]:
    """(content type, width, height) read from the first bytes of a PNG, JPEG, WebP or GIF."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return "image/png", w, h
    if data[:3] == b"\xff\xd8\xff":
        return ("image/jpeg", *_jpeg_size(data))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ("image/webp", *_webp_size(data))
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return "image/gif", w, h
    return "application/octet-stream", None, None


def _jpeg_size(data: bytes) -> tuple[int | None, int | None]:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    return None, None


def _webp_size(data: bytes) -> tuple[int | None, int | None]:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        b = data[21:25]
        w = 1 + (((b[1] & 0x3F) << 8) | b[0])
        h = 1 + (((b[3] & 0x0F) << 10) | (b[2] << 2) | ((b[1] & 0xC0) >> 6))
        return w, h
    if chunk == b"VP8X" and len(data) >= 30:
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
        return w, h
    return None, None


def _decode_data_uri(url: str, model: str) -> bytes:
    header, _, payload = url.partition(",")
    try:
        if header.endswith(";base64"):
            return base64.b64decode(payload, validate=False)
        return unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        raise FalServerError(f"{model} returned an unreadable data URI", model=model) from None


#: redirects followed for one image (each hop is checked: http(s) only)
MAX_REDIRECTS = 5


def _refuse(url: str, model: str, how: str = "returned") -> FalServerError:
    return FalServerError(f"{model} {how} an image URL falnb will not fetch: {url[:60]!r}", model=model,
                          hint="Only http(s) URLs and data: URIs are fetched; nothing was read from it.")


async def fetch_image(http: httpx.AsyncClient, url: str, *, model: str, attempts: int = 4) -> bytes:
    """The bytes behind an image URL from fal (retried: a GET of a stored file is safe).

    Redirects are followed here, not by httpx, so that every hop is held to the same rule."""
    if url.startswith("data:"):
        return _decode_data_uri(url, model)
    if urlsplit(url).scheme not in ("http", "https"):
        raise _refuse(url, model)
    last = ""
    for attempt in range(attempts):
        try:
            target = httpx.URL(url)
            for _hop in range(MAX_REDIRECTS + 1):
                async with http.stream("GET", target, headers={"Accept": "image/*"}, follow_redirects=False) as resp:
                    if resp.is_redirect:
                        target = resp.url.join(resp.headers["location"])
                        if target.scheme not in ("http", "https"):
                            raise _refuse(str(target), model, "redirected to")
                        continue
                    if resp.status_code == 200:
                        return await _read_capped(resp, model)
                    last = f"HTTP {resp.status_code}"
                    break
            else:
                raise FalServerError(f"an image URL from {model} redirects more than {MAX_REDIRECTS} times",
                                     model=model)
            if not last.startswith("HTTP 5") and last != "HTTP 429":
                break  # a 4xx: asking again will not help
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            last = type(exc).__name__
        if attempt + 1 < attempts:
            await asyncio.sleep(0.2 * 2**attempt)
    raise TransportError(f"could not download an image from {model}: {last}", model=model,
                         hint="fal's image URLs last at least 7 days; re-run the same call to retry.")


async def _read_capped(resp: httpx.Response, model: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > MAX_IMAGE_BYTES:
            raise FalServerError(f"an image from {model} is larger than {MAX_IMAGE_BYTES >> 20} MB", model=model)
        chunks.append(chunk)
    return b"".join(chunks)
