"""fal's storage, emulated: upload tokens, uploads (fal-client's and fal-js's protocols, single and in parts),
and the uploaded bytes served back at the URL the upload answered with.

Routes (``{base}`` is the emulator's own URL; fal's hosts are ``rest.fal.ai`` and ``v3.fal.media``):

- ``POST /storage/auth/token?storage_type=fal-cdn-v3``  key auth → ``{token, token_type, base_url, expires_at}``
  (``base_url`` is ``{base}/v3/{instance}``: each emulator is its own storage, so a URL remembered from
  another one is never reused); a token expires an hour later on the emulator's clock (then 401)
- ``POST /files/upload`` (also under ``base_url``)     bearer token, raw bytes → ``{access_url}``
- ``POST {base_url}/files/upload/multipart``            → ``{access_url, uploadId}``; ``PUT
  {access_url}/multipart/{uploadId}/{n}`` → ``ETag``; ``POST {access_url}/multipart/{uploadId}/complete``
- ``POST /storage/upload/initiate`` (fal-js, and fal-client's fallback) → ``{upload_url, file_url}``, then
  ``PUT upload_url``; ``/storage/upload/initiate-multipart``: part ``PUT {upload_url}/{n}`` answering JSON
  ``{partNumber, etag}``, then ``POST {upload_url}/complete``
- ``GET /files/stored/{id}/{name}``                     the bytes (public, like fal's CDN)

Files honour ``X-Fal-Object-Lifecycle`` (``expiration_duration_seconds``, on the emulator's clock) and are
bounded (:data:`MAX_BYTES` in all; the oldest go first).  :meth:`Storage.fail_next` injects faults into the
next upload calls: a status code (``500``...) or ``"drop"`` (the bytes are stored, the answer is lost).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote_to_bytes, urlsplit

from ._http import Response, json_response

__all__ = ["MAX_BYTES", "Storage"]

#: the bytes the emulated storage keeps at most (the oldest files are dropped first)
MAX_BYTES = 512 * 1024 * 1024
_TOKEN_LIFETIME = 3600.0
_STORED = re.compile(r"^/files/stored/(?P<id>[0-9a-f]+)/(?P<name>[^/]+)(?P<rest>/multipart/(?P<uid>[0-9a-f]+)"
                     r"/(?P<part>\d+|complete))?$")
_PUT = re.compile(r"^/storage/put/(?P<id>[0-9a-f]+)(?:/(?P<part>\d+|complete))?$")
_V3 = re.compile(r"^/v3/(?P<inst>[0-9a-f]+)(?P<rest>/files/upload(?:/multipart)?)$")


@dataclass
class _File:
    data: bytes
    content_type: str
    expires: float | None


@dataclass
class _Pending:
    """An upload announced (initiate, multipart) whose bytes have not all arrived."""

    file_id: str
    name: str
    content_type: str
    expires: float | None
    parts: dict[int, bytes] = field(default_factory=dict)


class Storage:
    """One emulated account's storage.  Thread-safety: called under the emulator's lock."""

    def __init__(self, clock: Callable[[], float], auth: Callable[[Mapping[str, str]], Response | None],
                 max_bytes: int = MAX_BYTES) -> None:
        self._clock, self._auth, self.max_bytes = clock, auth, max_bytes
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        self.instance = secrets.token_hex(6)
        self._files: OrderedDict[str, _File] = OrderedDict()
        self._pending: dict[str, _Pending] = {}
        #: upload tokens and when each expires (the emulator's clock): fal's expire, and a client must cope
        self._tokens: dict[str, float] = {}
        self._faults: list[str] = []
        self._drop_next = False
        self._bytes = 0
        #: completed uploads and the bytes they carried (tests count them)
        self.uploads = 0
        self.bytes_received = 0

    def fail_next(self, *faults: str | int) -> None:
        """The next upload calls fail, one fault each: a status code, or "drop" (stored, answer lost)."""
        self._faults.extend(str(f) for f in faults)

    # -- routing ------------------------------------------------------------------------

    def route(self, method: str, url: str, headers: Mapping[str, str] | None, body: bytes) -> Response | None:
        """The answer for a storage URL (the emulator asks here before its queue), or None."""
        parts = urlsplit(url)
        with self._lock:
            return self.handle(method.upper(), parts.path or "/", {k.lower(): v for k, v in (headers or {}).items()},
                               body, f"{parts.scheme or 'http'}://{parts.netloc or 'localhost'}")

    def handle(self, method: str, path: str, hdrs: Mapping[str, str], body: bytes, base: str) -> Response | None:
        """The answer for a storage route, or None when ``path`` is not one."""
        if path == "/storage/auth/token" and method == "POST":
            return self._auth(hdrs) or self._token(base)
        if m := _STORED.match(path):
            if m["rest"] is None:
                return self._get(method, m["id"])
            return self._fault() or self._s3_part(method, m["id"], m["uid"], m["part"], hdrs, body, base)
        if m := _V3.match(path):
            if m["inst"] != self.instance:
                return json_response(404, {"detail": "Not Found"})
            return self._fault() or self._bearer(hdrs) or self._upload(m["rest"], hdrs, body, base)
        if path == "/files/upload" and method == "POST":
            return self._fault() or self._bearer(hdrs) or self._upload(path, hdrs, body, base)
        if path in ("/storage/upload/initiate", "/storage/upload/initiate-multipart") and method == "POST":
            return self._auth(hdrs) or self._fault() or self._initiate(path.endswith("multipart"), hdrs, body, base)
        if m := _PUT.match(path):
            return self._fault() or self._put(method, m["id"], m["part"], body, base)
        return None

    # -- tokens -------------------------------------------------------------------------

    def _token(self, base: str) -> Response:
        token = secrets.token_urlsafe(18)
        now = self._clock()
        self._tokens = {t: end for t, end in self._tokens.items() if end > now}  # (bounded: the live ones)
        self._tokens[token] = now + _TOKEN_LIFETIME
        expires = datetime.now(timezone.utc) + timedelta(seconds=_TOKEN_LIFETIME)
        return json_response(200, {"token": token, "token_type": "Bearer", "base_url": f"{base}/v3/{self.instance}",
                                   "expires_at": expires.isoformat()})

    def _bearer(self, hdrs: Mapping[str, str]) -> Response | None:
        scheme, _, token = hdrs.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or self._tokens.get(token.strip(), float("-inf")) <= self._clock():
            return json_response(401, {"detail": "Invalid or expired upload token"})
        return None

    def _fault(self) -> Response | None:
        if not self._faults:
            return None
        fault = self._faults.pop(0)
        if fault == "drop":
            self._drop_next = True
            return None
        code = int(fault)
        return json_response(code, {"detail": "Internal Server Error" if code >= 500 else "Upload refused"})

    def _answer(self, resp: Response) -> Response:
        if self._drop_next:  # the work is done, the answer never arrives
            self._drop_next = False
            return Response(0, drop=True)
        return resp

    # -- files --------------------------------------------------------------------------

    def _expiry(self, hdrs: Mapping[str, str]) -> float | None:
        raw = hdrs.get("x-fal-object-lifecycle") or hdrs.get("x-fal-object-lifecycle-preference")
        try:
            seconds = json.loads(raw)["expiration_duration_seconds"] if raw else None
        except (ValueError, KeyError, TypeError):
            seconds = None
        return self._clock() + float(seconds) if isinstance(seconds, (int, float)) else None

    def _store(self, file_id: str, data: bytes, content_type: str, expires: float | None) -> None:
        old = self._files.pop(file_id, None)
        self._bytes -= len(old.data) if old else 0
        self._files[file_id] = _File(data, content_type, expires)
        self._bytes += len(data)
        self.uploads += 1
        self.bytes_received += len(data)
        while self._bytes > self.max_bytes and len(self._files) > 1:
            _, gone = self._files.popitem(last=False)
            self._bytes -= len(gone.data)

    def _new_id(self) -> str:
        return secrets.token_hex(8)

    @staticmethod
    def _name(hdrs: Mapping[str, str], fallback: str) -> str:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", hdrs.get("x-fal-file-name") or fallback)[-80:]
        return name or fallback

    def _upload(self, route: str, hdrs: Mapping[str, str], body: bytes, base: str) -> Response:
        file_id, name = self._new_id(), self._name(hdrs, "upload.bin")
        ctype = hdrs.get("content-type") or "application/octet-stream"
        url = f"{base}/files/stored/{file_id}/{name}"
        if route.endswith("/multipart"):
            self._pending[file_id] = _Pending(file_id, name, ctype, self._expiry(hdrs))
            return self._answer(json_response(200, {"access_url": url, "uploadId": file_id}))
        self._store(file_id, bytes(body), ctype, self._expiry(hdrs))
        return self._answer(json_response(200, {"access_url": url}))

    def _s3_part(self, method: str, file_id: str, uid: str, part: str, hdrs: Mapping[str, str], body: bytes,
                 base: str) -> Response:
        pending = self._pending.get(uid)
        if pending is None or pending.file_id != file_id:
            return json_response(404, {"detail": "Unknown upload"})
        if part == "complete":
            return self._complete(method, pending, body, base, json_parts=False)
        if method != "PUT":
            return json_response(405, {"detail": "Method Not Allowed"})
        pending.parts[int(part)] = bytes(body)
        return self._answer(Response(200, [("etag", _etag(body))], b""))

    def _initiate(self, multipart: bool, hdrs: Mapping[str, str], body: bytes, base: str) -> Response:
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            return json_response(422, {"detail": [{"loc": ["body"], "msg": "Input should be a valid dictionary",
                                                   "type": "dict_type"}]})
        file_id = self._new_id()
        name = self._name({"x-fal-file-name": str(doc.get("file_name") or "")}, "upload.bin")
        self._pending[file_id] = _Pending(file_id, name, str(doc.get("content_type") or "application/octet-stream"),
                                          self._expiry(hdrs))
        return self._answer(json_response(200, {"upload_url": f"{base}/storage/put/{file_id}",
                                                "file_url": f"{base}/files/stored/{file_id}/{name}"}))

    def _put(self, method: str, file_id: str, part: str | None, body: bytes, base: str) -> Response:
        pending = self._pending.get(file_id)
        if pending is None:
            return json_response(404, {"detail": "Unknown upload"})
        if part == "complete":
            return self._complete(method, pending, body, base, json_parts=True)
        if method != "PUT":
            return json_response(405, {"detail": "Method Not Allowed"})
        if part is None:
            del self._pending[file_id]
            self._store(file_id, bytes(body), pending.content_type, pending.expires)
            return self._answer(Response(200, [], b""))
        pending.parts[int(part)] = bytes(body)
        return self._answer(json_response(200, {"partNumber": int(part), "etag": _etag(body)}))

    def _complete(self, method: str, pending: _Pending, body: bytes, base: str, *, json_parts: bool) -> Response:
        if method != "POST":
            return json_response(405, {"detail": "Method Not Allowed"})
        try:
            listed = [(int(p["partNumber"]), str(p["etag"])) for p in json.loads(body)["parts"]]
        except (ValueError, KeyError, TypeError):
            return json_response(400, {"detail": "parts must be [{partNumber, etag}]"})
        if not listed or any(n not in pending.parts or _etag(pending.parts[n]) != e for n, e in listed):
            return json_response(400, {"detail": "a part is missing or its etag does not match"})
        del self._pending[pending.file_id]
        self._store(pending.file_id, b"".join(pending.parts[n] for n, _ in sorted(listed)), pending.content_type,
                    pending.expires)
        url = f"{base}/files/stored/{pending.file_id}/{pending.name}"
        return self._answer(json_response(200, {"access_url": url, "file_url": url}))

    def _get(self, method: str, file_id: str) -> Response:
        found = self._live(file_id)
        if method not in ("GET", "HEAD") or found is None:
            return json_response(404, {"detail": "File not found"})
        return Response(200, [("content-type", found.content_type), ("cache-control", "public, max-age=604800")],
                        found.data if method == "GET" else b"")

    def _live(self, file_id: str) -> _File | None:
        found = self._files.get(file_id)
        if found is not None and found.expires is not None and found.expires <= self._clock():
            self._bytes -= len(found.data)
            del self._files[file_id]
            return None
        return found

    # -- what models read -------------------------------------------------------------------

    def fetch(self, url: str) -> bytes | None:
        """The bytes a model reads at ``url``: a file of this storage, or a ``data:`` URI; None otherwise."""
        with self._lock:
            return self._fetch(url)

    def _fetch(self, url: str) -> bytes | None:
        if url.startswith("data:"):
            header, _, payload = url.partition(",")
            try:
                return base64.b64decode(payload, validate=True) if header.endswith(";base64") \
                    else unquote_to_bytes(payload)
            except ValueError:
                return None
        m = re.match(r"^https?://[^/]+(/files/stored/[^?#]+)$", url)
        inner = _STORED.match(m.group(1)) if m else None
        if inner is None or inner["rest"] is not None:
            return None
        found = self._live(inner["id"])
        return found.data if found is not None else None


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'

