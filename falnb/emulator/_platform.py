"""fal's platform API, emulated: the model list, per-endpoint OpenAPI documents, unit prices, billed units.

- ``GET /v1/models``: find (``endpoint_id``, repeated or comma-separated, 1 to 50), search (``q`` over name,
  id, description and tags; ``category``; ``status``), list; ``limit`` and ``cursor`` paging (``next_cursor``
  encodes the page's start, ``has_more``); ``expand=openapi-3.0`` puts the document in ``openapi`` and caps a
  page at 10 items (a larger ``limit`` is a 400, as reported of fal).  Auth optional.
- ``GET /api/openapi/queue/openapi.json?endpoint_id=<id>``: the document, or 404 when it has none.
- ``GET /v1/models/pricing?endpoint_id=a,b``: ``{prices: [{endpoint_id, unit_price, unit, currency}],
  next_cursor, has_more}``; 401 without a key.
- Errors in fal's platform shape ``{"error": {"type", "message"}}`` (fal-facts D).
- ``x-fal-billable-units`` on a result: the billed quantity in the endpoint's unit (cost = units x unit price).

Endpoints: the ten seed models (their shipped snapshots; prices from falnb's overlays) and the fixtures in
``fixtures/`` (each says where it comes from; ``fal-ai/emulator/multi-edit`` is nano-banana/edit's schema
under an id no falnb catalogue ships), one unlike any seed model (``fal-ai/emulator/quirky-square``:
one ``image`` out, a ``resolution`` enum, the quirks), a deprecated one, and a video model.

Knobs (``Emulator.platform.faults``): ``{"models": 429, "openapi": 404, "pricing": 500}`` answers that status;
``"truncated"`` cuts the JSON short; ``{"pricing_page": 2}`` pages the prices 2 at a time (fal's page size is
not documented); ``{"billable_units": 1.0}`` sends ``x-fal-billable-units`` on results (a number other than 1
multiplies the units: fal billing other than falnb's estimate).  By default no header is
sent: whether every fal model sends one is unknown (fal-facts D), and falnb must then show its estimates.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from ..catalog._catalog import MEGAPIXEL, ModelSpec
from ..catalog._models import SNAPSHOTS
from ..catalog._overlays import SEED_OVERLAYS
from ..catalog._prices import UnitPrice
from ..catalog._store import SchemaStore
from ._http import Response, json_response

__all__ = ["PLATFORM_PATHS", "Platform", "fixture_documents"]

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PLATFORM_PATHS = ("/v1/models", "/v1/models/pricing", "/api/openapi/queue/openapi.json")
_EXPAND_CAP = 10
_PAGE = 20
_UNITS = {"image": "image", "megapixel": "megapixels"}


def _load(folder: Path, model_id: str) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads((folder / (model_id.replace("/", "--") + ".json")).read_text("utf-8"))
    except OSError:
        return None
    return doc


def _listing() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = json.loads((FIXTURES / "listing.json").read_text("utf-8"))
    for model_id, ov in SEED_OVERLAYS.items():
        price = [ov.price.usd, _UNITS[ov.price.basis]] if ov.price is not None else None
        out.setdefault(model_id, {"display_name": ov.title or model_id, "category": "text-to-image",
                                  "status": "active", "tags": list(ov.aliases),
                                  "description": f"{ov.title} (falnb's seed model)", "price": price})
    return out


def fixture_documents(model_id: str) -> dict[str, Any] | None:
    """The document the emulator serves for ``model_id`` (None when it has none)."""
    return _load(FIXTURES, model_id) or _load(SNAPSHOTS, model_id)


class Platform:
    """The platform endpoints of one emulated fal account."""

    def __init__(self) -> None:
        self.listing = _listing()
        #: the fault knobs (see the module docstring)
        self.faults: dict[str, Any] = {}

    def store(self) -> SchemaStore:
        """Fixture schemas for the emulator's own catalog (so it answers in each endpoint's shape)."""
        return SchemaStore(None, fixture_documents)

    def unit_price(self, model_id: str) -> UnitPrice | None:
        """The unit price ``/v1/models/pricing`` answers for ``model_id`` (None: priced at nothing)."""
        price = (self.listing.get(model_id) or {}).get("price")
        return UnitPrice(model_id, float(price[0]), str(price[1])) if price else None

    def handle(self, method: str, path: str, query: str, hdrs: Mapping[str, str]) -> Response:
        params = {k: v for k, v in parse_qs(query, keep_blank_values=False).items()}
        if method != "GET":
            return _error(405, "validation_error", "Method not allowed")
        kind = {"/v1/models": "models", "/v1/models/pricing": "pricing"}.get(path, "openapi")
        fault = self.faults.get(kind)
        if isinstance(fault, int):
            types = {401: "authorization_error", 404: "not_found", 429: "rate_limited"}
            return _error(fault, types.get(fault, "server_error"), "Injected by the emulator")
        if kind == "pricing":
            resp = self._pricing(params, hdrs)
        elif kind == "models":
            resp = self._models(params)
        else:
            doc = fixture_documents(_one(params, "endpoint_id"))
            resp = json_response(200, doc) if doc is not None else _error(404, "not_found", "Resource not found")
        if fault == "truncated" and resp.status == 200 and isinstance(resp.body, bytes):
            resp.body = resp.body[: len(resp.body) // 2]
        return resp

    def _ids(self, params: Mapping[str, list[str]]) -> list[str]:
        return [i.strip() for v in params.get("endpoint_id", []) for i in v.split(",") if i.strip()]

    def _models(self, params: Mapping[str, list[str]]) -> Response:
        ids = self._ids(params)
        if len(ids) > 50:
            return _error(400, "validation_error", "At most 50 endpoint_id values")
        expand = "openapi-3.0" in params.get("expand", [])
        try:
            limit = int(_one(params, "limit") or (_EXPAND_CAP if expand else _PAGE))
            start = int(base64.b64decode(_one(params, "cursor") or "MA==").decode() or 0)
        except ValueError:
            return _error(400, "validation_error", "Invalid request parameters")
        if limit < 1 or (expand and limit > _EXPAND_CAP):
            return _error(400, "validation_error", f"limit must be 1 to {_EXPAND_CAP} with expand")
        q, cat, status = (_one(params, k).lower() for k in ("q", "category", "status"))
        found = [m for m in (ids or list(self.listing)) if m in self.listing]
        found = [m for m in found if self._matches(m, q, cat, status)]
        page = found[start:start + limit]
        more = start + limit < len(found)
        items = [self._item(m, expand) for m in page]
        return json_response(200, {"models": items, "has_more": more,
                                   "next_cursor": base64.b64encode(str(start + limit).encode()).decode()
                                   if more else None})

    def _matches(self, model_id: str, q: str, category: str, status: str) -> bool:
        meta = self.listing[model_id]
        text = " ".join([model_id, meta.get("display_name", ""), meta.get("description", ""),
                         *meta.get("tags", [])]).lower()
        return ((not q or all(w in text for w in q.split())) and (not category or meta["category"] == category)
                and (not status or meta["status"] == status))

    def _item(self, model_id: str, expand: bool) -> dict[str, Any]:
        meta = {k: v for k, v in self.listing[model_id].items() if k != "price"}
        meta.update(model_url=f"https://fal.run/{model_id}", thumbnail_url="", updated_at="2026-11-01T00:00:00Z",
                    date="2026-01-01T00:00:00Z", is_favorited=None, highlighted=False, pinned=False)
        item: dict[str, Any] = {"endpoint_id": model_id, "metadata": meta}
        if expand:
            doc = fixture_documents(model_id)
            item["openapi"] = doc if doc is not None else {
                "error": {"code": "expansion_failed", "message": "No OpenAPI document for this endpoint"}}
        return item

    def _pricing(self, params: Mapping[str, list[str]], hdrs: Mapping[str, str]) -> Response:
        scheme, _, key = hdrs.get("authorization", "").partition(" ")
        if scheme.lower() != "key" or not key.strip():
            return _error(401, "authorization_error", "Authentication required")
        ids = self._ids(params)
        if not 1 <= len(ids) <= 50:
            return _error(400, "validation_error", "endpoint_id: 1 to 50 values are required")
        prices = [{"endpoint_id": m, "unit_price": p[0], "unit": p[1], "currency": "USD"}
                  for m in ids if (p := (self.listing.get(m) or {}).get("price"))]
        # fal's answer pages (next_cursor, has_more; fal-platform.md) at a size it does not document: one page
        # unless the "pricing_page" knob sets one
        try:
            start = int(base64.b64decode(_one(params, "cursor") or "MA==").decode() or 0)
        except ValueError:
            return _error(400, "validation_error", "Invalid request parameters")
        size = self.faults.get("pricing_page")
        end = start + size if isinstance(size, int) and size > 0 else len(prices)
        more = end < len(prices)
        return json_response(200, {"prices": prices[start:end], "has_more": more,
                                   "next_cursor": base64.b64encode(str(end).encode()).decode() if more else None})

    def billable_units(self, spec: ModelSpec | None, inputs: Mapping[str, Any], plan: Any) -> list[tuple[str, str]]:
        """The ``x-fal-billable-units`` header of a result (none when the knob says so)."""
        factor = self.faults.get("billable_units")
        price = (self.listing.get(spec.id) or {}).get("price") if spec is not None else None
        if factor is None or not price or spec is None:
            return []
        images, width, height = plan.images, plan.width, plan.height
        if spec.price is not None:
            units = (spec.estimate(inputs, images, width, height) or 0.0) / price[0]
        elif price[1] == "megapixels":
            units = images * max(1, math.ceil(width * height / MEGAPIXEL))
        else:
            units = images
        units *= float(factor)
        text = str(int(units)) if float(units).is_integer() else f"{units:.8f}"  # fal's SDK: int, else 8 places
        return [("x-fal-billable-units", text)]


def _one(params: Mapping[str, list[str]], key: str) -> str:
    values = params.get(key) or [""]
    return values[-1]


def _error(status: int, kind: str, message: str) -> Response:
    return json_response(status, {"error": {"type": kind, "message": message}})
