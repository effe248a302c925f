"""The index's buffered writes: what a cache hit would otherwise write at once (the entry's last use,
the spend it saved) and budget reservations released from a finalizer.  They are written with the
next write transaction, by ``flush()`` (at least every :data:`FLUSH_EVERY` seconds of hits), or at exit.

A mixin of :class:`~falnb.cache._index.Index`, which provides ``write()``, ``readonly`` and ``path``.
"""

from __future__ import annotations

import collections
import os
import sqlite3
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from .._exceptions import CacheError
from ._faults import writable

__all__ = ["FLUSH_EVERY", "HitBuffer"]

#: buffered hits are written at most this long after they happen (or sooner, with any write)
FLUSH_EVERY = 30.0


class HitBuffer:
    """Hot-path writes kept in memory until the next write transaction."""

    if TYPE_CHECKING:
        path: Path
        readonly: bool

        def write(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (ns, key) -> last use; (ns, model) -> [hits, saved, unknown]; reservation tokens to delete
        self._touched: dict[tuple[str, str], float] = {}
        self._saved: dict[tuple[str, str | None], list[float]] = {}
        self._drops: collections.deque[str] = collections.deque()  # (appended without a lock: finalizers)
        self._last_flush = time.monotonic()

    def touch(self, ns: str, key: str, now: float) -> None:
        with self._lock:
            self._touched[(ns, key)] = now

    def add_saved(self, ns: str, model: str | None, cost: float | None) -> None:
        with self._lock:
            acc = self._saved.setdefault((ns, model), [0.0, 0.0, 0.0])
            acc[0] += 1
            if cost is None:
                acc[2] += 1
            else:
                acc[1] += cost
        if time.monotonic() - self._last_flush > FLUSH_EVERY:
            self.flush()

    def drop_later(self, token: str) -> None:
        """Release a budget reservation with the next write (its own transaction failed)."""
        self._drops.append(token)

    def pending_saved(self, ns: str | None) -> tuple[int, float]:
        with self._lock:
            items = [v for (n, _), v in self._saved.items() if ns is None or n == ns]
        return int(sum(v[0] for v in items)), sum(v[1] for v in items)

    def flush(self) -> None:
        with self._lock:
            if not self._touched and not self._saved and not self._drops:
                self._last_flush = time.monotonic()
                return
        if self.readonly and not writable(self.path):
            return  # kept for when the folder can be written again (bounded: one item per entry and model)
        try:
            with self.write():
                pass  # write() flushes first
        except (CacheError, OSError):  # best effort: hits are bookkeeping
            pass

    def _flush_into(self, c: sqlite3.Connection) -> None:
        with self._lock:
            touched, self._touched = self._touched, {}
            saved, self._saved = self._saved, {}
            drops = [self._drops.popleft() for _ in range(len(self._drops))]
            self._last_flush = time.monotonic()
        if touched:
            c.executemany("UPDATE entries SET used=? WHERE ns=? AND key=? AND used<?",
                          [(t, ns, key, t) for (ns, key), t in touched.items()])
        if saved:
            now, pid = time.time(), os.getpid()
            c.executemany("INSERT INTO ledger(ts, ns, kind, model, cost, count, unknown, pid) "
                          "VALUES(?, ?, 'saved', ?, ?, ?, ?, ?)",
                          [(now, ns, model, v[1], int(v[0]), int(v[2]), pid) for (ns, model), v in saved.items()])
        if drops:
            c.executemany("DELETE FROM reservations WHERE token=?", [(t,) for t in drops])
