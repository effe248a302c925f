"""fal's platform API (``https://api.fal.ai/v1``): model schemas, the model list, unit prices.

- ``GET /v1/models?endpoint_id=<id>&expand=openapi-3.0``: one endpoint's OpenAPI document, with its listing
  (display name, category, status), which falnb keeps beside the document as ``info["x-falnb-model"]``.
  Auth optional (a key raises rate limits).  fal answers an unknown id with an empty ``models`` list (or a
  404), and a document it cannot build with ``openapi: {"error": {...}}``: both mean "no schema".
- ``GET /v1/models?q=&category=&status=&limit=&cursor=``: search and paging (``next_cursor``, ``has_more``).
- ``GET /v1/models/pricing?endpoint_id=a,b``: unit prices; the key is required (401 without).
Errors follow fal's platform shape ``{"error": {"type", "message"}}`` (fal-facts D); a non-JSON answer
(a Cloudflare challenge page was seen on pricing) is an error too.  Sync httpx: schemas are looked up
while a plan is built, in the caller's thread, never on falnb's event loop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from .._exceptions import AuthenticationError, FalError, FalServerError, RateLimitError, TransportError
from ..catalog._prices import UnitPrice
from ..catalog._store import SchemaUnavailable
from ._config import DEFAULT_QUEUE_URL, Key
from ._tls import verify

__all__ = ["DEFAULT_PLATFORM_URL", "PlatformAPI", "platform_url"]

DEFAULT_PLATFORM_URL = "https://api.fal.ai"
#: fal's cap on ids per find or pricing call
_MAX_IDS = 50
#: pages of one pricing answer read at most (a page holds at least one of the <= 50 ids asked for)
_MAX_PAGES = _MAX_IDS


def platform_url(queue_url: str) -> str:
    """``FALNB_PLATFORM_URL``, else fal's for fal's queue, else the queue's host (``falnb emulator`` serves both)."""
    explicit = os.environ.get("FALNB_PLATFORM_URL", "").strip().rstrip("/")
    if explicit:
        return explicit
    return DEFAULT_PLATFORM_URL if queue_url.rstrip("/") == DEFAULT_QUEUE_URL else queue_url.rstrip("/")


class PlatformAPI:
    """A small client of fal's platform API.  ``key()`` gives the key, or None to ask without one."""

    def __init__(self, base_url: str = DEFAULT_PLATFORM_URL, key: Callable[[], Key | None] = lambda: None, *,
                 transport: httpx.BaseTransport | None = None, timeout: float = 20.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key
        self._transport = transport
        self._timeout = timeout

    # -- schemas -------------------------------------------------------------------------------

    def openapi(self, endpoint_id: str) -> dict[str, Any] | None:
        """The endpoint's OpenAPI document; None when fal has none; :class:`SchemaUnavailable` when fal cannot
        be asked (network, 429, 5xx, an answer cut short)."""
        try:
            page = self._get("/v1/models", [("endpoint_id", endpoint_id), ("expand", "openapi-3.0")],
                             need_key=False)
        except RequestNotFound:
            return None
        except (FalError, TransportError) as exc:
            raise SchemaUnavailable(exc.message) from None
        item = next((m for m in page.get("models") or [] if isinstance(m, Mapping)
                     and m.get("endpoint_id") == endpoint_id), None)
        doc = item.get("openapi") if item is not None else None
        if not isinstance(doc, Mapping) or "error" in doc:
            return None
        out = dict(doc)
        info = dict(out.get("info") or {}) if isinstance(out.get("info"), Mapping) else {}
        if isinstance(item, Mapping) and isinstance(item.get("metadata"), Mapping):
            info["x-falnb-model"] = dict(item["metadata"])
        out["info"] = info
        return out

    # -- discovery -----------------------------------------------------------------------------

    def models(self, *, q: str | None = None, category: str | None = None, status: str | None = None,
               endpoint_ids: Sequence[str] = (), limit: int | None = None,
               cursor: str | None = None) -> dict[str, Any]:
        """One page of fal's model list: ``{models: [...], next_cursor, has_more}``."""
        params: list[tuple[str, str]] = [("endpoint_id", i) for i in endpoint_ids[:_MAX_IDS]]
        params += [(k, str(v)) for k, v in (("q", q), ("category", category), ("status", status),
                                             ("limit", limit), ("cursor", cursor)) if v]
        try:
            return self._get("/v1/models", params, need_key=False)
        except RequestNotFound as exc:
            raise FalError(exc.message, status_code=404) from None

    # -- prices --------------------------------------------------------------------------------

    def pricing(self, endpoint_ids: Sequence[str]) -> dict[str, UnitPrice]:
        """Unit prices by endpoint id (ids fal prices nothing for are absent).  Needs the key."""
        out: dict[str, UnitPrice] = {}
        ids = list(dict.fromkeys(endpoint_ids))
        for start in range(0, len(ids), _MAX_IDS):
            query = [("endpoint_id", ",".join(ids[start:start + _MAX_IDS]))]
            cursor: Any = None
            for _ in range(_MAX_PAGES):  # fal's answer pages (next_cursor, has_more; fal-platform.md): read them all
                try:
                    page = self._get("/v1/models/pricing", query + ([("cursor", cursor)] if cursor else []),
                                     need_key=True)
                except RequestNotFound:
                    break
                for p in page.get("prices") or []:
                    price = _unit_price(p)
                    if price is not None:
                        out[price.endpoint_id] = price
                cursor = page.get("next_cursor")
                if page.get("has_more") is not True or not isinstance(cursor, str) or not cursor:
                    break
        return out

    def unit_price(self, endpoint_id: str) -> UnitPrice | None:
        """One endpoint's unit price (None when fal prices nothing for it); raises when fal cannot say."""
        return self.pricing([endpoint_id]).get(endpoint_id)

    # -- HTTP ----------------------------------------------------------------------------------

    def _get(self, path: str, params: Sequence[tuple[str, str]], *, need_key: bool) -> dict[str, Any]:
        key = self._key()
        if need_key and key is None:
            raise AuthenticationError("fal's prices need a key", status_code=401,
                                      hint="Set FAL_KEY; prices are shown as estimates until then.")
        headers = {"Accept": "application/json", **({"Authorization": key.header()} if key is not None else {})}
        try:
            with httpx.Client(transport=self._transport, timeout=self._timeout, verify=verify(self._transport)) as http:
                query = httpx.QueryParams([(k, v) for k, v in params])
                resp = http.get(self.base_url + path, params=query, headers=headers)
                body = resp.content
        except httpx.HTTPError as exc:
            raise TransportError(f"fal's platform API could not be reached ({type(exc).__name__})") from None
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if resp.status_code == 200 and isinstance(data, dict):
            return data
        raise _error(resp.status_code, data, path)


class RequestNotFound(FalError):
    """fal's platform API answered 404 (no such endpoint, or no schema for it)."""


def _error(status: int, data: Any, path: str) -> FalError:
    err = data.get("error") if isinstance(data, Mapping) else None
    message = str(err.get("message")) if isinstance(err, Mapping) and err.get("message") else ""
    what = "fal's prices" if "pricing" in path else "fal's model list"
    if status == 200:
        return FalServerError(f"{what}: the answer was not a JSON object (cut short?)", status_code=status)
    if status == 404:
        return RequestNotFound(f"{what}: not found", status_code=404)
    if status in (401, 403):
        return AuthenticationError(f"{what}: the key was refused ({status}{': ' + message if message else ''})",
                                   status_code=status, hint="Check FAL_KEY.")
    if status == 429:
        return RateLimitError(f"{what}: rate limited by fal (429); try again shortly", status_code=429)
    if status >= 500:
        return FalServerError(f"{what}: fal failed ({status})", status_code=status)
    return FalError(f"{what}: fal refused the request ({status}{': ' + message if message else ''})",
                    status_code=status)


def _unit_price(p: Any) -> UnitPrice | None:
    if not isinstance(p, Mapping):
        return None
    value, eid, unit = p.get("unit_price"), p.get("endpoint_id"), p.get("unit")
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or not isinstance(eid, str)
            or not isinstance(unit, str)):
        return None  # a price that is not one is never shown
    return UnitPrice(eid, float(value), unit, str(p.get("currency") or "USD"))
