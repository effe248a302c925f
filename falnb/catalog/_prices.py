"""fal's unit prices (``GET /v1/models/pricing``), kept on disk with a time-to-live, and what fal billed.

fal prices each endpoint per unit (``image``, ``megapixels``, ``second``...) and answers every result with
``x-fal-billable-units``, the billed quantity in that unit: billed = units x unit price (fal-platform.md;
account discounts may apply).  The store asks a ``fetch`` callable (the Client wires fal's platform API in,
with the key) and keeps ``{id: {fetched_at, unit_price, unit, currency}}`` (or ``{fetched_at, none: true}``
when fal prices nothing for it) in one JSON file.  When fal cannot be asked (no key: 401, offline, 429,
a bad answer), the answer is "unknown" and no price is shown: never a guess.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._exceptions import FalnbError
from ._spec import Price

__all__ = ["BILLABLE_UNITS", "PriceStore", "UnitPrice", "billed_usd"]

#: fal's result header with the billed quantity; falnb keeps its value under this key of the result JSON
BILLABLE_UNITS = "x-fal-billable-units"


@dataclass(frozen=True)
class UnitPrice:
    """fal's price of one unit of an endpoint (``unit``: ``image``, ``megapixels``, ``second``...)."""

    endpoint_id: str
    unit_price: float
    unit: str
    currency: str = "USD"

    def as_estimate(self) -> Price | None:
        """A per-image estimate when the unit is a picture or a megapixel (else None: falnb cannot tell
        the quantity before it is billed)."""
        unit = self.unit.lower()
        if self.currency.upper() != "USD":
            return None
        if unit.startswith("image"):
            return Price(self.unit_price, "image")
        if unit.startswith("megapixel"):
            return Price(self.unit_price, "megapixel")
        return None


def billed_usd(units: Any, price: UnitPrice | None) -> float | None:
    """What fal billed for a result: its ``x-fal-billable-units`` times the unit price (None if unknown)."""
    if price is None or price.currency.upper() != "USD" or units is None or units == "":
        return None
    try:
        quantity = float(units)
    except (TypeError, ValueError):
        return None  # (fal-js refuses such a header too)
    if not math.isfinite(quantity) or quantity < 0:
        return None
    return round(quantity * price.unit_price, 6)


#: how long a failed look-up is not retried (so a missing key or a rate limit is not asked about per image)
_RETRY_AFTER = 60.0
Fetch = Callable[[str], "UnitPrice | None"]


class PriceStore:
    """Unit prices by endpoint id, on disk (``directory/prices.json``; None: in memory only)."""

    def __init__(self, directory: str | Path | None, fetch: Fetch | None, *, ttl: float = 24 * 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(directory) / "prices.json" if directory is not None else None
        self.fetch = fetch
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._memo: dict[str, tuple[float, UnitPrice | None]] = {}
        self._failed: dict[str, float] = {}

    def get(self, endpoint_id: str) -> UnitPrice | None:
        """fal's unit price of ``endpoint_id``: fresh from memory or disk, else asked, else None."""
        now = self._clock()
        with self._lock:
            memo = self._memo.get(endpoint_id)
            if memo is not None and now - memo[0] < self.ttl:
                return memo[1]
            if now - self._failed.get(endpoint_id, -math.inf) < _RETRY_AFTER:
                return memo[1] if memo is not None else None
        stored = self._read().get(endpoint_id)
        if stored is not None and now - stored[0] < self.ttl:
            return self._remember(endpoint_id, *stored)
        if self.fetch is None:
            return stored[1] if stored is not None else None
        try:
            price = self.fetch(endpoint_id)
        except FalnbError:  # no key, offline, rate limited, a bad answer: unknown, never a guess
            with self._lock:
                self._failed[endpoint_id] = now
            return stored[1] if stored is not None else None
        self._write(endpoint_id, now, price)
        return self._remember(endpoint_id, now, price)

    def _remember(self, endpoint_id: str, when: float, price: UnitPrice | None) -> UnitPrice | None:
        with self._lock:
            self._memo[endpoint_id] = (when, price)
        return price

    def _read(self) -> dict[str, tuple[float, UnitPrice | None]]:
        if self.path is None:
            return {}
        try:
            raw = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        out: dict[str, tuple[float, UnitPrice | None]] = {}
        for eid, e in raw.items() if isinstance(raw, dict) else ():
            try:
                price = None if e.get("none") else UnitPrice(eid, float(e["unit_price"]), str(e["unit"]),
                                                             str(e.get("currency") or "USD"))
                out[eid] = (float(e["fetched_at"]), price)
            except (AttributeError, KeyError, TypeError, ValueError):
                continue  # a damaged entry: as if never asked
        return out

    def _write(self, endpoint_id: str, now: float, price: UnitPrice | None) -> None:
        if self.path is None:
            return
        with self._lock:  # (threads of this process; another process's write may be lost: it is a cache)
            raw: dict[str, Any] = {eid: ({"fetched_at": t, "none": True} if p is None else
                                         {"fetched_at": t, "unit_price": p.unit_price, "unit": p.unit,
                                          "currency": p.currency}) for eid, (t, p) in self._read().items()}
            raw[endpoint_id] = {"fetched_at": now, "none": True} if price is None else {
                "fetched_at": now, "unit_price": price.unit_price, "unit": price.unit, "currency": price.currency}
            tmp = self.path.with_name(f".prices.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text(json.dumps(raw), "utf-8")
                os.replace(tmp, self.path)
            except OSError:
                tmp.unlink(missing_ok=True)
