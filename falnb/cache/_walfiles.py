"""The index's WAL companions (``index.sqlite3-wal`` and ``-shm``) and this process's connections to it.

SQLite maps ``-shm`` (the WAL's shared index and its locks) once per process and database file, for all
the process's connections to that file, and keeps the mapping, and the ``-wal`` it opened, while any of
them is open.  If a companion is deleted while this process has the index open (``rm -r`` of the cache
folder racing falnb creating the index again: ``rm`` deletes the new ``-shm``), this process keeps using
the deleted file while another process makes a new one.  The two no longer share SQLite's locks or its
view of the WAL, and one's commits overwrite the other's: a journal row lost, a request paid twice (the
soak's ``--seed 1 --episode 7``).

So the index remembers which companions its connections mapped (:meth:`Companions.changed`), and when
they change it closes every connection of this process to the file, not only the calling thread's: one
left open keeps the old mapping alive, and a new connection would share it.  Closing a connection another
thread is reading with crashes the process (SQLite frees what that thread's statement uses), so every use
of a connection is marked (:meth:`Companions.use`, through ``Index.using()`` and ``Index.write()``) and a
reset closes only the connections no thread is using, waiting briefly for the others.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path

__all__ = ["Companions", "Tracked"]

#: how long a reset waits for another thread's transaction on the old files to end (s): a write holds
#: its transaction for milliseconds, a prune's batch for 10 ms at most
_DRAIN_S = 5.0


class Tracked(sqlite3.Connection):
    """A connection to the index that its :class:`Companions` can find again and close."""

    pid: int = 0
    epoch: int = 0
    closed: bool = False
    #: how many blocks of code use it now (see Companions.use): a reset never closes it under them
    uses: int = 0

    def close(self) -> None:
        self.closed = True
        super().close()


def _ino(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


class Companions:
    """Which ``-wal`` and ``-shm`` this process's open connections to ``path`` use."""

    def __init__(self, path: Path) -> None:
        self._names = (f"{path}-wal", f"{path}-shm")
        self._conns: weakref.WeakSet[Tracked] = weakref.WeakSet()
        self._lock = threading.Lock()
        #: the companions' inodes when the first open connection mapped them; None: not known yet
        self._seen: tuple[int | None, int | None] | None = None

    def _now(self) -> tuple[int | None, int | None]:
        return (_ino(self._names[0]), _ino(self._names[1]))

    def _open(self, pid: int) -> list[Tracked]:
        return [c for c in list(self._conns) if c.pid == pid and not c.closed]

    def use(self, c: sqlite3.Connection) -> bool:
        """Mark ``c`` in use, unless a reset closed it already (False: take a new connection)."""
        with self._lock:
            if getattr(c, "closed", False):
                return False
            if isinstance(c, Tracked):
                c.uses += 1
            return True

    def done(self, c: sqlite3.Connection) -> None:
        """The use marked by :meth:`use` ended."""
        if isinstance(c, Tracked):
            with self._lock:
                c.uses -= 1

    def opened(self, c: Tracked, epoch: int) -> None:
        """``c`` was just opened (its first statement ran, so SQLite has mapped the companions)."""
        pid = os.getpid()
        c.pid, c.epoch = pid, epoch
        with self._lock:
            first = not self._open(pid)
            self._conns.add(c)
            if first or self._seen is None:  # (with others open, c shares the mapping the first of them made)
                self._seen = self._now()

    def changed(self) -> bool:
        """Whether a companion was deleted or replaced since this process's open connections mapped it."""
        seen = self._seen
        return seen is not None and self._now() != seen

    def reset(self, epoch: int) -> None:
        """Close this process's connections of an epoch before ``epoch`` (the caller has bumped it), so
        the next connection maps the companions on disk.  A connection a thread is using is waited for
        (briefly; then left to that thread, which closes it at its next use: best effort).  Never touches
        a connection of a parent process (after a fork)."""
        pid = os.getpid()
        deadline = time.monotonic() + _DRAIN_S
        while True:
            with self._lock:
                left = 0
                for c in self._open(pid):
                    if c.epoch >= epoch:
                        continue
                    if c.uses:
                        left += 1
                        continue
                    with contextlib.suppress(sqlite3.Error):
                        c.close()
                if not left or time.monotonic() > deadline:
                    self._seen = None  # the next connection maps the companions again and records them
                    return
            time.sleep(0.002)
