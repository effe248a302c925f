"""The billing ledger: what fal would have charged for, per request."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Ledger", "LedgerEntry"]


@dataclass(frozen=True)
class LedgerEntry:
    """One billed request."""

    request_id: str
    model: str
    images: int
    #: in USD at the emulator's own unit prices (/v1/models/pricing; None for an endpoint it prices at nothing)
    cost: float | None
    #: wall-clock time (``time.time()``) the request completed
    time: float
    #: the HTTP status its result answers with (200, or 422 when validation errors are billed)
    status: int = 200


class Ledger:
    """Billed requests and submit counts.  Reading a property brings the queue up to date first."""

    def __init__(self, sync: Callable[[], object] | None = None) -> None:
        self._sync = sync
        self._lock = threading.Lock()
        self._entries: list[LedgerEntry] = []
        self._submits = 0

    def _now(self) -> None:
        if self._sync is not None:
            self._sync()

    def record_submit(self) -> None:
        with self._lock:
            self._submits += 1

    def bill(self, entry: LedgerEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._submits = 0

    @property
    def entries(self) -> list[LedgerEntry]:
        self._now()
        with self._lock:
            return list(self._entries)

    @property
    def submits(self) -> int:
        """Every submit the queue accepted (billed or not)."""
        with self._lock:
            return self._submits

    @property
    def requests(self) -> int:
        """Billed requests."""
        return len(self.entries)

    @property
    def images(self) -> int:
        return sum(e.images for e in self.entries)

    @property
    def cost(self) -> float:
        return round(sum(e.cost or 0.0 for e in self.entries), 6)

    def to_json(self) -> dict[str, Any]:
        entries = self.entries
        return {"submits": self.submits, "requests": len(entries), "images": sum(e.images for e in entries),
                "cost": round(sum(e.cost or 0.0 for e in entries), 6),
                "entries": [asdict(e) for e in entries]}

    def __repr__(self) -> str:
        return (f"Ledger(submits={self.submits}, requests={self.requests}, images={self.images}, "
                f"cost={self.cost})")
