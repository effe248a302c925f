"""Which index connections this process keeps open: one per index and thread, at most
:data:`MAX_OPEN` indexes at once (the least recently used is closed first, by each thread for its
own connections), and none of an index closed, set aside, moved or deleted since.

The :class:`~falnb.cache._index.Index` calls these; they know only its ``_local`` (the thread's
connection, its pid and epoch) and ``_epoch`` / ``_bump()``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections import OrderedDict
from typing import Any

__all__ = ["MAX_OPEN", "held", "open_connections", "register_open", "sweep_thread", "touch_open"]

#: indexes (cache directories) with open connections per process; the least recently used is closed first
MAX_OPEN = 16
#: indexes with connections open, least recently used first; LAST[0] is the last one used (the hot path)
OPEN: OrderedDict[Any, None] = OrderedDict()
LAST: list[Any] = [None]
LOCK = threading.Lock()
_THREAD = threading.local()


def touch_open(idx: Any) -> None:
    with LOCK:
        if idx in OPEN:
            OPEN.move_to_end(idx)
        LAST[0] = idx


def register_open(idx: Any) -> None:
    """``idx`` just opened a connection: the most recently used; close the least recently used beyond MAX_OPEN."""
    with LOCK:
        OPEN[idx] = None
        OPEN.move_to_end(idx)
        LAST[0] = idx
        victims = []
        while len(OPEN) > MAX_OPEN:
            victim, _ = OPEN.popitem(last=False)
            victim._bump()  # every thread closes its connection to it (its buffered hits stay, flushed later)
            victims.append(victim)
    if victims:
        sweep_thread()


def held() -> set[Any]:
    """The indexes this thread holds a connection to."""
    out: set[Any] | None = getattr(_THREAD, "held", None)
    if out is None:
        out = _THREAD.held = set()
    return out


def sweep_thread() -> None:
    """Close this thread's connections to indexes closed or set aside since.  A thread closes only its
    own connections (never one another thread may be using); a thread's connections close when it ends."""
    mine = held()
    pid = os.getpid()
    for idx in list(mine):
        local = idx._local
        c = getattr(local, "conn", None)
        if c is None or local.pid != pid or getattr(c, "closed", False):  # (closed: by another thread's reset)
            mine.discard(idx)
        elif local.epoch != idx._epoch and not getattr(c, "uses", 0) and not c.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                c.close()
            local.conn = None
            mine.discard(idx)


def open_connections() -> int:
    """This thread's open index connections (for tests)."""
    return sum(1 for idx in held() if getattr(idx._local, "conn", None) is not None)
