"""fal's storage protocol: input pictures uploaded once per content, before the paid request is submitted.

The protocol is fal-client's (1.0.3, ``fal_client/client.py``; checked with the search tool, see
``/work/notes/fal-facts.md`` F1): ``POST {rest}/storage/auth/token?storage_type=fal-cdn-v3`` with the key
gives ``{token, token_type, base_url, expires_at}``; a file up to :data:`MULTIPART_THRESHOLD` (100 MiB, as
fal-client) is one ``POST {cdn}/files/upload`` of the raw bytes (bearer token, ``Content-Type``,
``X-Fal-File-Name``) answering ``{access_url}``; a larger one is ``POST {base_url}/files/upload/multipart``
→ ``{access_url, uploadId}``, 10 MiB parts ``PUT {access_url}/multipart/{uploadId}/{n}`` (the part's ``ETag``
header), then ``POST .../complete`` with ``{"parts": [{"partNumber", "etag"}]}``.  (fal-js instead uses
``/storage/upload/initiate`` + ``PUT``: the emulator serves both.)

Once per content: the URL of each upload is remembered by content hash with its expiry (falnb asks fal to
keep the file :data:`UPLOAD_LIFETIME` through ``X-Fal-Object-Lifecycle``), per storage (the token's
``base_url``), in a :class:`UploadMemo` (the cache directory's table: across kernels too).  A remembered URL
is checked with a ``HEAD`` once per process before it is sent (a file gone early is uploaded again).  Concurrent
requests for the same bytes share one upload.

Faults: an upload is never billed, so a lost answer, a 5xx, a 408 or a 429 is retried (a lost answer may
leave an orphan copy at fal, which costs nothing).  An upload that fails for good raises before anything is
submitted: a paid request never goes out without its input.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

import httpx

from .._exceptions import AuthenticationError, FalnbError, TransportError
from ..request._picture_plan import PictureValue
from ..request._pictures import Picture
from ._config import Key
from ._errors import error_from_response

__all__ = ["DEFAULT_CDN_URL", "DEFAULT_REST_URL", "MULTIPART_THRESHOLD", "UPLOAD_LIFETIME", "MemoryMemo",
           "UploadMemo", "Uploader"]

DEFAULT_REST_URL = "https://rest.fal.ai"
DEFAULT_CDN_URL = "https://v3.fal.media"
#: fal-client's: a file larger than this goes up in parts
MULTIPART_THRESHOLD = 100 * 1024 * 1024
CHUNK_SIZE = 10 * 1024 * 1024
#: how long falnb asks fal to keep an uploaded picture; its URL is reused for a day less than that
UPLOAD_LIFETIME = 7 * 24 * 3600
_REUSE_MARGIN = 24 * 3600
#: attempts per storage call (an upload is free to retry), and the pause before each retry
ATTEMPTS = 5
#: the pause before each retry, in seconds (tests set them to zero)
RETRY_PAUSES = (0.25, 0.5, 1.0, 2.0)
_RETRY_CODES = frozenset({408, 409, 429, 500, 502, 503, 504})


class UploadMemo(Protocol):
    """Remembers the URL of uploaded bytes: ``(storage, sha256) -> url`` until its expiry (epoch seconds)."""

    def get(self, storage: str, sha256: str, now: float) -> str | None: ...

    def put(self, storage: str, sha256: str, url: str, expires: float, now: float | None = None) -> None: ...


class MemoryMemo:
    """An :class:`UploadMemo` for this process only (no cache directory)."""

    def __init__(self) -> None:
        self._urls: dict[tuple[str, str], tuple[str, float]] = {}

    def get(self, storage: str, sha256: str, now: float) -> str | None:
        hit = self._urls.get((storage, sha256))
        return hit[0] if hit is not None and hit[1] > now else None

    def put(self, storage: str, sha256: str, url: str, expires: float, now: float | None = None) -> None:
        if now is not None:
            self._urls = {k: v for k, v in self._urls.items() if v[1] > now}
        self._urls[(storage, sha256)] = (url, expires)


class _Token:
    def __init__(self, body: Mapping[str, Any], cdn_url: str, now: float) -> None:
        self.header = f"{body.get('token_type') or 'Bearer'} {body['token']}"
        self.base_url = str(body.get("base_url") or cdn_url).rstrip("/")
        # on the uploader's clock: what is left of the token's life now, from fal's wall-clock ``expires_at``
        try:
            left = datetime.fromisoformat(str(body["expires_at"]).replace("Z", "+00:00")).timestamp() - time.time()
        except (KeyError, ValueError, OverflowError):
            left = 600.0
        self.expires = now + left


class Uploader:
    """Uploads pictures to fal's storage (or the emulator's), once per content."""

    def __init__(self, http: httpx.AsyncClient, key: Callable[[], Key], *, memo: UploadMemo | None = None,
                 rest_url: str = DEFAULT_REST_URL, cdn_url: str | None = None,
                 multipart_threshold: int = MULTIPART_THRESHOLD, chunk_size: int = CHUNK_SIZE,
                 clock: Callable[[], float] = time.time) -> None:
        self._http, self._key = http, key
        self.memo: UploadMemo = memo if memo is not None else MemoryMemo()
        self.rest_url = rest_url.rstrip("/")
        self.cdn_url = (cdn_url or (rest_url if rest_url != DEFAULT_REST_URL else DEFAULT_CDN_URL)).rstrip("/")
        self.multipart_threshold, self.chunk_size = multipart_threshold, chunk_size
        self._clock = clock
        self._token: _Token | None = None
        self._pending: dict[str, asyncio.Future[str]] = {}
        self._checked: set[str] = set()
        #: uploads made (not reused) by this uploader, and their bytes: for tests and bench
        self.uploads = 0
        self.bytes_sent = 0

    async def resolve(self, pictures: Mapping[str, PictureValue], model: str) -> dict[str, Any]:
        """The input fields with each picture's URL (uploading the ones fal does not hold yet)."""
        out: dict[str, Any] = {}
        for name, value in pictures.items():
            if isinstance(value, tuple):
                out[name] = list(await asyncio.gather(*(self.url_for(p, model) for p in value)))
            else:
                out[name] = await self.url_for(value, model)
        return out

    async def url_for(self, pic: Picture, model: str = "storage") -> str:
        if pic.url is not None:
            return pic.url
        token, fresh = await self._auth(model)
        found = self.memo.get(token.base_url, pic.sha256, self._clock())
        if found is not None and await self._still_there(found):
            return found
        if pic.sha256 in self._pending:  # the same bytes on their way up for another request
            return await asyncio.shield(self._pending[pic.sha256])
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[pic.sha256] = fut
        try:
            try:
                url = await self._upload(pic, token, model)
            except AuthenticationError:
                if fresh:
                    raise
                # a token this process kept expired or was revoked early (a clock behind fal's, a storage
                # restarted): uploads are free, so the upload is made again once with a new token
                self._token = None
                token, _ = await self._auth(model)
                url = await self._upload(pic, token, model)
            self.uploads += 1
            self.bytes_sent += len(pic.data)
            now = self._clock()
            self.memo.put(token.base_url, pic.sha256, url, now + UPLOAD_LIFETIME - _REUSE_MARGIN, now)
            fut.set_result(url)
            return url
        except BaseException as exc:
            fut.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            fut.exception()  # retrieved: a waiter re-raises it, nobody else needs to
            raise
        finally:
            del self._pending[pic.sha256]

    async def _still_there(self, url: str) -> bool:
        """Whether fal still serves a remembered upload (checked once per process: a file deleted early, or a
        storage that forgot it, would fail the paid request; uploading again is free)."""
        if url in self._checked:
            return True
        try:
            resp = await self._http.head(url)
        except httpx.HTTPError:
            return False
        if resp.status_code == 200:
            self._checked.add(url)
        return resp.status_code == 200

    # -- the protocol -------------------------------------------------------------------------

    async def _auth(self, model: str) -> tuple[_Token, bool]:
        """The upload token, and whether it was fetched now: the one kept while it has a minute left."""
        if self._token is not None and self._token.expires - 60 >= self._clock():
            return self._token, False
        resp = await self._send("POST", f"{self.rest_url}/storage/auth/token?storage_type=fal-cdn-v3", model,
                                headers={"Authorization": self._key().header(), "Accept": "application/json"},
                                json_body={})
        try:
            self._token = _Token(resp.json(), self.cdn_url, self._clock())
        except (ValueError, KeyError, TypeError):
            raise TransportError(f"fal's storage sent no upload token for {model}") from None
        return self._token, True

    def _headers(self, token: _Token, pic: Picture) -> dict[str, str]:
        return {"Authorization": token.header, "Content-Type": pic.content_type, "X-Fal-File-Name": pic.file_name,
                "X-Fal-Object-Lifecycle": json.dumps({"expiration_duration_seconds": UPLOAD_LIFETIME})}

    async def _upload(self, pic: Picture, token: _Token, model: str) -> str:
        if len(pic.data) > self.multipart_threshold:
            return await self._multipart(pic, token, model)
        resp = await self._send("POST", f"{self.cdn_url}/files/upload", model, headers=self._headers(token, pic),
                                content=pic.data)
        return _field(resp, "access_url", model)

    async def _multipart(self, pic: Picture, token: _Token, model: str) -> str:
        resp = await self._send("POST", f"{token.base_url}/files/upload/multipart", model,
                                headers={**self._headers(token, pic), "Accept": "application/json"})
        access, upload_id = _field(resp, "access_url", model), _field(resp, "uploadId", model)
        parts = []
        for n, start in enumerate(range(0, len(pic.data), self.chunk_size), start=1):
            chunk = pic.data[start:start + self.chunk_size]
            part = await self._send("PUT", f"{access}/multipart/{upload_id}/{n}", model, content=chunk,
                                    headers={"Authorization": token.header, "Accept-Encoding": "identity"})
            etag = part.headers.get("etag")
            if not etag:
                raise TransportError(f"fal's storage sent no ETag for part {n} of a picture for {model}")
            parts.append({"partNumber": n, "etag": etag})
        await self._send("POST", f"{access}/multipart/{upload_id}/complete", model,
                         headers={"Authorization": token.header}, json_body={"parts": parts})
        return access

    async def _send(self, method: str, url: str, model: str, *, headers: Mapping[str, str],
                    content: bytes | None = None, json_body: Any = None) -> httpx.Response:
        """One storage call, retried on a lost answer or a transient error (storage calls are never billed)."""
        for attempt in range(ATTEMPTS):
            last = attempt == ATTEMPTS - 1
            try:
                resp = await self._http.request(method, url, headers=dict(headers), content=content,
                                                json=json_body)
            except httpx.TransportError as exc:
                if last:
                    raise TransportError(f"uploading a picture for {model} failed: {type(exc).__name__} "
                                         f"({ATTEMPTS} attempts); nothing was submitted", model=model) from None
            else:
                if resp.status_code < 400:
                    return resp
                if resp.status_code not in _RETRY_CODES or last:
                    raise _upload_error(resp, model)
            await asyncio.sleep(RETRY_PAUSES[min(attempt, len(RETRY_PAUSES) - 1)])
        raise AssertionError("unreachable")


def _upload_error(resp: httpx.Response, model: str) -> FalnbError:
    """fal's answer to a storage call as falnb's error (its class by status), saying what failed."""
    err = error_from_response(resp, model=model, during="upload")
    code = resp.status_code
    verb = "refused the picture upload" if code < 500 else "failed the picture upload"
    detail = err.message.rsplit(": ", 1)[-1]
    err.message = f"fal's storage {verb} for {model} ({code}): {detail}; nothing was submitted"
    err.args = (err.message,)
    return err


def _field(resp: httpx.Response, name: str, model: str) -> str:
    try:
        value = resp.json()[name]
    except (ValueError, KeyError, TypeError):
        value = None
    if not isinstance(value, str) or not value:
        raise TransportError(f"fal's storage answered without {name} for a picture for {model}", model=model)
    return value
