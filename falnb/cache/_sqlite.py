"""Small SQLite steps the index takes: a write transaction begun without losing the lock to a busy writer,
the rows in flight of a file about to be left, a file's identity."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

from ._schema import JOURNAL_COLUMNS, RESERVATION_COLUMNS

__all__ = ["begin_immediate", "in_flight", "inode"]

#: SQLite's "busy"; how often a writer waiting for the write lock tries again (ms)
_BUSY, _POLL_MS = 5, 2


def begin_immediate(c: sqlite3.Connection, timeout_ms: int) -> None:
    """``BEGIN IMMEDIATE``, waiting for another writer by polling every few milliseconds (SQLite's own
    busy handler sleeps up to 100 ms between tries, and loses the lock again and again to a process that
    writes batch after batch, such as a prune: see :mod:`falnb.cache._prune`)."""
    deadline = time.monotonic() + timeout_ms / 1000
    c.execute(f"PRAGMA busy_timeout={_POLL_MS}")
    try:
        while True:
            try:
                c.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) != _BUSY or time.monotonic() > deadline:
                    raise
            time.sleep(_POLL_MS / 1000)
    finally:
        c.execute(f"PRAGMA busy_timeout={timeout_ms}")


def inode(path: str | Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def in_flight(c: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    """The journal rows not done and the budget reservations of the file ``c`` still reads (best effort)."""
    out: dict[str, list[tuple[object, ...]]] = {}
    with contextlib.suppress(sqlite3.Error):
        out["journal"] = [tuple(r) for r in c.execute(f"SELECT {JOURNAL_COLUMNS} FROM journal WHERE state != 'done'")]
        out["reservations"] = [tuple(r) for r in c.execute(f"SELECT {RESERVATION_COLUMNS} FROM reservations")]
    return out
