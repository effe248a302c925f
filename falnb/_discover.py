"""``falnb models``: the catalogued models, or fal's own model list (``--search``, ``--category``,
``--status``) through its platform API (``GET /v1/models``; on the emulator with ``FALNB_OFFLINE=1`` or
``FALNB_QUEUE_URL`` pointing at ``falnb emulator``).  Each listed model with its category, its status (a
deprecated model is marked: it still runs and bills, and may stop) and fal's unit price when a key is set.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._exceptions import FalnbError

__all__ = ["main"]

_LIMIT = 50


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="falnb models", description="list models: falnb's, or fal's own")
    parser.add_argument("--search", "-s", metavar="WORDS", help="fal's models matching WORDS (name, description)")
    parser.add_argument("--category", "-c", help="e.g. text-to-image, image-to-image")
    parser.add_argument("--status", choices=("active", "deprecated"))
    parser.add_argument("--limit", type=int, default=_LIMIT, help=f"at most this many (default {_LIMIT})")
    parser.add_argument("--prices", action="store_true", help="fal's unit prices (needs a key)")
    args = parser.parse_args(argv)
    if not (args.search or args.category or args.status):
        return _catalogued()
    from ._client import Client

    client = Client(cache=False)
    try:
        models = _fal_models(client, args.search, args.category, args.status, max(1, args.limit))
        prices = client.platform.pricing([m["endpoint_id"] for m in models]) if args.prices and models else {}
    except FalnbError as exc:
        print(f"falnb models: {exc.message}")
        return 1
    if not models:
        print("(no models match)")
    for m in models:
        meta = m.get("metadata") or {}
        status = str(meta.get("status") or "?")
        flag = "  DEPRECATED" if status == "deprecated" else ""
        price = prices.get(m["endpoint_id"])
        cost = f"  ${price.unit_price:g}/{price.unit}" if price is not None else ""
        print(f"{m['endpoint_id']:52} {meta.get('category') or '-'!s:16} {meta.get('display_name') or ''}"
              f"{cost}{flag}")
    return 0


def _fal_models(client: Any, q: str | None, category: str | None, status: str | None,
                limit: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while len(out) < limit:
        page = client.platform.models(q=q, category=category, status=status, cursor=cursor,
                                      limit=min(limit - len(out), _LIMIT))
        out += [m for m in page.get("models") or [] if isinstance(m, dict) and isinstance(m.get("endpoint_id"), str)]
        cursor = page.get("next_cursor")
        if not page.get("has_more") or not cursor:
            break
    return out[:limit]


def _catalogued() -> int:
    from .catalog._catalog import default_catalog

    for m in default_catalog().models:
        price = "?" if m.price is None else f"${m.price.usd:g}/{m.price.basis}"
        print(f"{m.alias:18} {m.id:48} {m.size_field or '-':13} {price}")
    return 0
