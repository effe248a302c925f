"""This process's spend and savings (a *session*), and what its requests in flight hold, per namespace.

Kept in memory and shared by every client of the process; the cache directory's totals are in the
index (:mod:`falnb.cache._holds`, :mod:`falnb.cache._ledger`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..results._text import usd

__all__ = ["Spend", "check_lock", "hold_here", "reserved", "session_billed", "session_paid", "session_saved",
           "session_spend", "unreserve"]


@dataclass(frozen=True)
class Spend:
    """Money paid and saved, USD estimates."""

    paid: float = 0.0
    #: requests sent to fal (each one billed)
    requests: int = 0
    #: requests whose price falnb does not know (not in ``paid``)
    unknown: int = 0
    saved: float = 0.0
    #: cache hits (requests not sent)
    hits: int = 0
    #: requests whose cost in ``paid`` is what fal billed (``x-fal-billable-units``); the rest are estimates
    billed: int = 0

    def __str__(self) -> str:
        s = f"{usd(self.paid)} paid for {self.requests} request(s)"
        estimated = self.requests - self.unknown - self.billed
        if self.unknown:
            s += f" ({self.unknown} of unknown price)"
        if estimated > 0:  # say so where fal's bill is not known: the figure is falnb's estimate
            s += " (estimate)" if not self.billed else f" ({estimated} estimated)"
        return s + f", {usd(self.saved)} saved by {self.hits} cache hit(s)"


class _Session:
    """This process's spend per namespace, and the reservations of requests in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.check = threading.Lock()
        self.paid: dict[str, list[float]] = {}      # ns -> [paid, requests, unknown, billed]
        self.saved: dict[str, list[float]] = {}     # ns -> [saved, hits]
        self.reserved: dict[str, float] = {}        # ns -> USD held by requests not yet accepted


_SESSION = _Session()


def session_spend(namespace: str | None) -> Spend:
    """This process's spend and savings in one namespace (None: all of them)."""
    with _SESSION.lock:
        paid = [v for k, v in _SESSION.paid.items() if namespace is None or k == namespace]
        saved = [v for k, v in _SESSION.saved.items() if namespace is None or k == namespace]
    return Spend(paid=round(sum(p[0] for p in paid), 6), requests=int(sum(p[1] for p in paid)),
                 unknown=int(sum(p[2] for p in paid)), saved=round(sum(s[0] for s in saved), 6),
                 hits=int(sum(s[1] for s in saved)), billed=int(sum(p[3] for p in paid)))


def session_paid(namespace: str, cost: float | None) -> None:
    """Count one request paid in this session."""
    with _SESSION.lock:
        acc = _SESSION.paid.setdefault(namespace, [0.0, 0.0, 0.0, 0.0])
        acc[1] += 1
        if cost is None:
            acc[2] += 1
        else:
            acc[0] += cost


def session_billed(namespace: str, estimate: float | None, billed: float) -> None:
    """fal's bill of one request paid in this session replaces its estimate."""
    with _SESSION.lock:
        acc = _SESSION.paid.setdefault(namespace, [0.0, 0.0, 0.0, 0.0])
        acc[0] += billed - (estimate or 0.0)
        acc[2] -= estimate is None
        acc[3] += 1


def session_saved(namespace: str, cost: float | None) -> None:
    """Count one cache hit in this session."""
    with _SESSION.lock:
        acc = _SESSION.saved.setdefault(namespace, [0.0, 0.0])
        acc[0] += cost or 0.0
        acc[1] += 1


def reserved(namespace: str) -> float:
    """What this process's requests in flight hold in ``namespace``."""
    with _SESSION.lock:
        return _SESSION.reserved.get(namespace, 0.0)


def hold_here(namespace: str, cost: float | None) -> None:
    if cost:
        with _SESSION.lock:
            _SESSION.reserved[namespace] = _SESSION.reserved.get(namespace, 0.0) + cost


def unreserve(namespace: str, cost: float | None) -> None:
    if not cost:
        return
    with _SESSION.lock:
        left = _SESSION.reserved.get(namespace, 0.0) - cost
        _SESSION.reserved[namespace] = left if left > 1e-12 else 0.0


def check_lock() -> threading.Lock:
    """Held while a check and its hold run, so the threads of this process take turns."""
    return _SESSION.check
