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

That notices the change, but not soon enough on its own: a process that has not looked yet may be
committing through the old files while another process, having made the new ``-shm``, rebuilds SQLite's view
of the WAL from it and then writes over the first one's frames (a stress test of three threads in each of
two processes, with ``-shm`` deleted every 0.05-0.3 s, turned the index into "not a database" in seconds).
So falnb's writers also take a lock of their own that does not live in ``-shm``: :class:`WriterLock`, an
``flock`` of the cache folder, held while a connection is opened (when SQLite may rebuild that view) and
for every write transaction, and the check for changed companions is made under it.

One more trap: SQLite's last connection to a database, system-wide, checkpoints the WAL as it sees it and
deletes ``-wal`` and ``-shm`` by name when it closes.  Closing the connections that map the deleted ``-shm``
when no other process has the database open would copy a stale view of the WAL and delete the files the
other processes wrote through (their commits lost).  So while those connections are closed a small process
(:func:`_guard`) holds a shared lock on the database, as an open connection would: SQLite's close then
neither checkpoints nor deletes.  The same guard covers the last such connection wherever it is closed (a
thread that ends); a process that ends still mapping a deleted ``-shm`` checks first (``Index``'s exit hook).

Which ``-shm`` the connections map is read from ``/proc/self/maps`` when the first connection opens, not
from the name on disk: the name may already point elsewhere (found by that stress under load: ``-shm``
deleted between SQLite mapping it and falnb looking, so falnb recorded "no ``-shm``" while mapping the deleted
one; another process then made a new one and deleted it in turn, the name was absent again, "unchanged", and
the two processes wrote through different ``-shm`` files).  The inode of a mapped file cannot be reused
while it is mapped, so comparing it with the name's inode is exact.  Without ``/proc`` (macOS), falnb falls back
to the name's inode, and that race stays open there.

Tested by ``tests/test_cache_shm.py``, including the stress ``tests/_procs/shm_stress.py`` (two processes of
three writing threads each, ``-shm`` deleted again and again: every commit kept).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import sqlite3
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

from ._sqlite import inode

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock (and no deleting a file another process has open)
    fcntl = None  # type: ignore[assignment]

__all__ = ["Companions", "Tracked", "WriterLock", "mapped_inode"]

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

    #: the companions it was registered with (None: a read-only connection, never registered)
    companions: Companions | None = None

    def close(self) -> None:
        """Close; the last connection of this process to deleted companions is closed under a guard
        (see :func:`_guard`), wherever it is closed from: a thread that ends, the interpreter's exit."""
        comp = self.companions
        if not self.closed and comp is not None and self.pid == os.getpid() and comp.stale_and_last(self):
            with _guard(comp.db):
                self.close_now()
        else:
            self.close_now()

    def close_now(self) -> None:
        self.closed = True
        super().close()

    def __del__(self) -> None:  # (a thread's connection is dropped when the thread ends)
        try:  # (no module globals here: at the interpreter's exit they may be gone already)
            if not self.closed:
                self.close()
        except Exception:  # (then SQLite closes it as it is freed)
            pass


class Companions:
    """Which ``-wal`` and ``-shm`` this process's open connections to ``path`` use."""

    def __init__(self, path: Path) -> None:
        self.db = str(path)
        self._names = (f"{path}-wal", f"{path}-shm")
        self._conns: weakref.WeakSet[Tracked] = weakref.WeakSet()
        # (re-entrant: a connection dropped by the garbage collector inside a block holding it closes through it)
        self._lock = threading.RLock()
        #: the companions' inodes when the first open connection mapped them; None: not known yet
        self._seen: tuple[int | None, int | None] | None = None

    def _now(self) -> tuple[int | None, int | None]:
        return (inode(self._names[0]), inode(self._names[1]))

    def _mapped_now(self) -> tuple[int | None, int | None]:
        """The companions this process's connections use now: the ``-shm`` it has mapped (not the one its
        name points to now, which may be another already), the ``-wal`` its name points to."""
        wal, shm = self._now()
        mapped = mapped_inode(self._names[1])
        return (wal, shm if mapped is None else mapped)

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
        c.pid, c.epoch, c.companions = pid, epoch, self
        with self._lock:
            first = not self._open(pid)
            self._conns.add(c)
            if first or self._seen is None:  # (with others open, c shares the mapping the first of them made)
                self._seen = self._mapped_now()

    def stale_and_last(self, c: Tracked) -> bool:
        """Whether ``c`` is this process's last open connection and maps deleted companions."""
        with self._lock:
            return not [o for o in self._open(os.getpid()) if o is not c] and self.changed()

    def changed(self) -> bool:
        """Whether a companion was deleted or replaced since this process's open connections mapped it."""
        seen = self._seen
        return seen is not None and self._now() != seen

    def reset(self, epoch: int, *, guard: bool) -> bool:
        """Close this process's connections of an epoch before ``epoch`` (the caller has bumped it, and holds
        the write lock, so that none is opened meanwhile), so the next connection maps the companions on disk.
        A connection a thread is using is waited for, briefly: False if one is still in use then.  Never
        touches a connection of a parent process (after a fork)."""
        pid = os.getpid()
        deadline = time.monotonic() + _DRAIN_S
        with _guard(self.db if guard and self._open(pid) else None):
            return self._close_old(pid, epoch, deadline)

    def _close_old(self, pid: int, epoch: int, deadline: float) -> bool:
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
                        c.close_now()  # (the caller's guard holds)
                if not left:
                    self._seen = None  # the next connection maps the companions again and records them
                    return True
                if time.monotonic() > deadline:
                    return False  # (the old mapping lives on: the next check tries again)
            time.sleep(0.002)


def mapped_inode(name: str) -> int | None:
    """The inode of the file ``name`` as this process has it mapped (deleted since or not), from
    ``/proc/self/maps``; None when that cannot tell (no ``/proc``, not mapped, or two such files mapped)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            maps = f.read()
    except OSError:
        return None
    path = re.escape(os.fsencode(os.path.realpath(name)))
    found = {int(m[1]) for m in re.finditer(rb"^\S+ \S+ \S+ \S+ (\d+) +" + path + rb"(?: \(deleted\))?$", maps, re.M)}
    return found.pop() if len(found) == 1 else None


#: the guard process: a shared lock on the bytes SQLite's readers lock (SHARED_FIRST, SHARED_SIZE), as an
#: open connection of another process holds, until its standard input closes
_GUARD = """import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
for _ in range(2500):
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 510, 0x40000002, 0)
        break
    except OSError:
        time.sleep(0.002)
else:
    sys.exit(1)
sys.stdout.write("locked\\n")
sys.stdout.flush()
sys.stdin.read()
"""


@contextlib.contextmanager
def _guard(db: str | None) -> Iterator[None]:
    """Another process holding a reader's lock on ``db`` for the block (nothing when ``db`` is None, or when
    it cannot be started: then SQLite may checkpoint on close, as it would without falnb)."""
    proc = None
    if db is not None and fcntl is not None:
        with contextlib.suppress(OSError, ValueError):
            proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _GUARD, db], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)
            assert proc.stdout is not None
            if select.select([proc.stdout], [], [], _DRAIN_S)[0]:
                proc.stdout.readline()
    try:
        yield
    finally:
        if proc is not None:
            with contextlib.suppress(OSError, ValueError, subprocess.TimeoutExpired):
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait(_DRAIN_S)
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class WriterLock:
    """falnb's write lock on one index, across threads (a re-entrant lock) and processes (``flock`` of the
    cache folder).  Every wait is bounded.

    The folder, not the database file: closing any descriptor of the database file would drop the ``fcntl``
    locks SQLite holds on it in this process.  The folder is the same for every process as long as the
    database file is (``rm -r`` removes the folder last), and its descriptor is held only while the lock is."""

    def __init__(self, path: Path) -> None:
        self._folder = str(path.parent)
        self._lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def acquire(self, timeout: float) -> bool:
        """Take the lock within ``timeout`` seconds (False: not taken).  Without a folder to lock (being
        created) only the threads of this process are held."""
        deadline = time.monotonic() + timeout
        if not self._lock.acquire(timeout=max(0.0, timeout)):
            return False
        if self._depth == 0:
            try:
                if not self._flock(deadline):
                    self._lock.release()
                    return False
            except BaseException:
                self._lock.release()
                raise
        self._depth += 1
        return True

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # (releases the flock)
            self._fd = None
        self._lock.release()

    def _flock(self, deadline: float) -> bool:
        if fcntl is None:
            return True
        try:
            fd = os.open(self._folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return True  # no folder yet (the connection creates it) or none to open: SQLite's own locks only
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    return False
            except OSError:  # a file system without flock: SQLite's own locks only
                os.close(fd)
                return True
            time.sleep(0.002)
