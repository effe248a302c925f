"""The cache's SQLite index: entries, the in-flight journal, the ledger and the budgets' reservations,
in one WAL database (tables: :mod:`falnb.cache._schema`).

Several kernels and processes share one cache directory.  SQLite in WAL mode lets readers run
while one writer writes; writers queue behind ``busy_timeout``.  Every claim or change that must
not race (a journal claim, an entry replacing another, a budget's check and hold, a prune) runs in
``BEGIN IMMEDIATE``.

One :class:`Index` per database file per process (see :func:`index_for`), one connection per
thread (and a new one after a fork; see :mod:`falnb.cache._conns`).  Small writes on the hot path
(the last use of an entry, the spend saved by a hit) are buffered in memory and flushed with the
next write, by ``flush()``, or at exit: a cache hit does not write.

When things go wrong (:mod:`falnb.cache._faults`): a file proven damaged is set aside and a new
index started (its in-flight journal salvaged); a transient failure is a miss for that call, the
data left in place; a folder that cannot be written is opened read-only (hits served, nothing
stored); a folder deleted while a kernel runs is noticed at the next write (or read) and created
again, the requests in flight carried over, so nothing is written into an unlinked file.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .._exceptions import CacheError
from ._conns import LAST, held, open_connections, register_open, sweep_thread, touch_open
from ._faults import (
    CacheWarning,
    IndexSetAside,
    Reported,
    classify,
    damage_on_disk,
    no_folder,
    proven_damage,
    writable,
)
from ._files import private_dir, private_file
from ._hits import HitBuffer
from ._index_faults import Faults
from ._schema import SCHEMA_VERSION, ensure_schema
from ._sqlite import begin_immediate, in_flight, inode
from ._walfiles import Companions, Tracked, WriterLock

__all__ = ["SCHEMA_VERSION", "CacheWarning", "Index", "IndexSetAside", "Reported", "index_for", "open_connections"]

#: how long a writer waits for another process's write lock before giving up (ms)
BUSY_TIMEOUT_MS = 30_000


class Index(Faults, HitBuffer):
    """The SQLite file of one cache directory, shared by every ResponseCache on it in this process."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.where = str(path.parent)
        self._local = threading.local()
        self._ready = False
        #: bumped when the file is set aside, moved or deleted (or the index is closed as least recently used):
        #: every thread's connection of an older epoch is then closed by that thread
        self._epoch = 0
        self._aside_lock = threading.Lock()
        #: rows carried over from a damaged or deleted file, written into the new one when it is created
        self._salvaged: dict[str, list[tuple[object, ...]]] = {}
        #: the folder or the file cannot be written: connections are read-only and writes are refused
        self.readonly = False
        #: the -wal and -shm this process's connections use (deleted under them: see _walfiles)
        self._companions = Companions(path)
        #: falnb's own write lock, across processes: held to open a connection and for every write (see _walfiles)
        self._writer = WriterLock(path)

    # -- connections ------------------------------------------------------------------------

    def _bump(self) -> None:
        with _EPOCH_LOCK:
            self._epoch += 1

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use).  Raises :class:`CacheError` when the index
        cannot be opened (already reported by a CacheWarning), :class:`ConfigError` when the cache
        folder cannot be a folder."""
        local = self._local
        c: sqlite3.Connection | None = getattr(local, "conn", None)
        if c is None or local.epoch != self._epoch or local.pid != os.getpid():
            return self._reconnect(c)
        if LAST[0] is not self:  # the hot path: one comparison while the same index is in use
            touch_open(self)
        return c

    def _reconnect(self, old: sqlite3.Connection | None) -> sqlite3.Connection:
        local = self._local
        if old is not None and local.pid == os.getpid():  # (after a fork it is the parent's: leave it)
            with contextlib.suppress(sqlite3.Error):
                old.close()  # set aside or closed as least recently used: this thread's own, closed here
        local.conn = None
        sweep_thread()
        epoch = self._epoch
        c = self._connect()
        # (set aside by another thread meanwhile, so c reads the old file: failed() sees the file changed;
        # the epoch is the one c was registered with, so a reset that closed it is seen at the next use)
        epoch = c.epoch if isinstance(c, Tracked) and c.pid else epoch
        local.conn, local.pid, local.epoch, local.ino = c, os.getpid(), epoch, inode(self.path)
        held().add(self)
        register_open(self)
        return c

    def _connect(self) -> sqlite3.Connection:
        try:
            private_dir(self.path.parent)
        except OSError as exc:
            raise no_folder(self.path.parent, exc) from None
        if not self.readonly:
            epoch, ino = self._epoch, inode(self.path)
            try:
                private_file(self.path)
                return self._open()
            except (OSError, sqlite3.Error) as exc:
                kind = classify(exc)
                if kind in ("damaged", "suspect") and proven_damage(self.path, exc):
                    self._set_aside_once(exc, epoch, ino)
                    try:
                        private_file(self.path)
                        return self._open()
                    except (OSError, sqlite3.Error) as again:
                        raise self._unavailable(again) from None
                if kind != "readonly" and writable(self.path):
                    raise self._unavailable(exc) from None
            self.readonly = True
        return self._open_readonly()

    def _open(self, uri: str | None = None) -> sqlite3.Connection:
        if uri is not None:
            return self._open_now(uri)
        # (under the write lock: opening is when SQLite may rebuild its view of the WAL from a new -shm)
        if not self._writer.acquire(BUSY_TIMEOUT_MS / 1000):
            raise sqlite3.OperationalError("database is locked (falnb's write lock, held by another process)")
        try:
            return self._open_now(None)
        finally:
            self._writer.release()

    def _open_now(self, uri: str | None) -> sqlite3.Connection:
        c = sqlite3.connect(uri or str(self.path), uri=uri is not None, timeout=BUSY_TIMEOUT_MS / 1000,
                            isolation_level=None, check_same_thread=False, factory=Tracked)
        try:
            c.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            mode = c.execute("PRAGMA journal_mode").fetchone()[0].lower()
            if uri is None:
                if mode != "wal":
                    c.execute("PRAGMA journal_mode=WAL")
                c.execute("PRAGMA synchronous=NORMAL")
                if not self._ready:
                    with self._lock:
                        if not self._ready:
                            ensure_schema(c, self._salvaged)
                            self._salvaged = {}
                            self._ready = True
                self._companions.opened(c, self._epoch)  # (after the schema: a new file has its WAL by then)
        except BaseException:
            c.close()
            raise
        return c

    def _open_readonly(self) -> sqlite3.Connection:
        """The index of a folder that cannot be written: read-only, or immutable when SQLite cannot
        even create its shared-memory file there (a WAL database in a read-only folder)."""
        uri, last = self.path.as_uri(), None
        for query in ("?mode=ro", "?mode=ro&immutable=1"):
            try:
                return self._open(uri + query)
            except sqlite3.Error as exc:
                last = exc
        raise self._unavailable(last) from None

    def check_moved(self) -> None:
        """The index file deleted (its folder removed) or replaced since this thread opened it, or its
        ``-wal`` or ``-shm`` since this process mapped them: every connection of this process is closed and
        every thread reconnects, creating the file again if need be, and the requests in flight recorded in
        the old file are carried into the new one.  Three ``stat`` calls when nothing changed."""
        if self.readonly or not self._moved():
            return
        # (under the write lock: no thread of this process opens a connection meanwhile, which would share
        # the old mapping, and no other process writes while this one reads what the old files held)
        if not self._writer.acquire(BUSY_TIMEOUT_MS / 1000):
            raise self._unavailable(None, "another process has held falnb's write lock for 30 s")
        try:
            self._react()
        finally:
            self._writer.release()

    def _moved(self) -> bool:
        local = self._local
        if getattr(local, "conn", None) is None or local.pid != os.getpid() or local.epoch != self._epoch:
            return self._companions.changed()  # (this thread connects next: to the files on disk, unless
            # another thread's connection keeps deleted companions mapped, which a new one would share)
        try:
            ino: int | None = os.stat(self.path).st_ino
        except FileNotFoundError:
            ino = None
        except OSError:  # cannot tell: the next call looks again
            return False
        return ino != local.ino or self._companions.changed()

    def _react(self) -> None:
        local = self._local
        if not self._moved():
            return  # another thread reacted already
        c: sqlite3.Connection | None = getattr(local, "conn", None)
        if c is None or local.pid != os.getpid() or local.epoch != self._epoch:
            c = self.conn()  # (shares the old mapping: it reads what the old files held)
        guard = self._companions.changed()  # (not for a file deleted: SQLite does not checkpoint one on close)
        with self._aside_lock:
            if self._companions.use(c):  # (marked: no other thread's reset closes it while it is read)
                try:
                    self._salvaged = in_flight(c)
                finally:
                    self._companions.done(c)
            self._ready = False
            self._bump()
            epoch = self._epoch
        if not self._companions.reset(epoch, guard=guard):
            raise self._unavailable(None, "another thread is still reading it through its deleted -shm or -wal")

    # -- transactions -----------------------------------------------------------------------

    def _take(self) -> sqlite3.Connection:
        """This thread's connection, marked in use (another thread's reset waits for it, see _walfiles)."""
        for _ in range(1000):
            c = self.conn()
            if self._companions.use(c):
                return c
            # (closed by another thread's reset since conn() returned it: its epoch moved on, conn() reconnects)
        raise sqlite3.OperationalError(f"the cache index {self.path} keeps being replaced")

    @contextmanager
    def using(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection for a block of reads: every read goes through here (or :meth:`write`),
        so that no other thread closes the connection while the block reads with it, and none reads through
        deleted files (:meth:`check_moved` first)."""
        self.check_moved()
        c = self._take()
        try:
            yield c
        finally:
            self._companions.done(c)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``: the write lock for the whole block.

        SQLite failures come out as :class:`CacheError` (see :meth:`failed`)."""
        if self.readonly:
            self._refuse_write()
        if not self._writer.acquire(BUSY_TIMEOUT_MS / 1000):
            raise self.failed(sqlite3.OperationalError("database is locked (falnb's write lock, held by another "
                                                       "process for 30 s)"))
        try:
            self.check_moved()  # (under the lock: no other process writes while this one looks, see _walfiles)
            try:
                if (damage := damage_on_disk(self.path)) is not None:
                    raise damage  # damaged under this thread's connection, which would not see it (finding S2)
                c = self._take()
            except sqlite3.Error as exc:
                raise self.failed(exc) from None
            try:
                yield from self._transaction(c)
            finally:
                self._companions.done(c)
        finally:
            self._writer.release()

    def _transaction(self, c: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        try:
            begin_immediate(c, BUSY_TIMEOUT_MS)
        except sqlite3.Error as exc:
            raise self.failed(exc) from None
        try:
            self._flush_into(c)
            yield c
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self.failed(exc) from None
            raise
        try:
            c.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
            raise self.failed(exc) from None

    def _refuse_write(self) -> None:
        """Read-only: refuse the write, unless the folder can be written again (then reconnect)."""
        if not writable(self.path):
            raise self._readonly(None)
        with self._aside_lock:
            if self.readonly:
                self.readonly = False
                self._ready = False
                self._bump()

    def checkpoint(self) -> None:
        """Copy the WAL into the database file, so ``index.sqlite3`` alone is complete (a cache folder
        committed to a repository, a copy) even while kernels keep it open.  Best effort."""
        if not self._writer.acquire(1.0):  # (a checkpoint through stale companions would copy a stale WAL)
            return
        try:
            self.check_moved()
            with contextlib.suppress(sqlite3.Error, CacheError), self.using() as c:
                c.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except CacheError:
            pass
        finally:
            self._writer.release()


_INDEXES: dict[str, Index] = {}
_INDEXES_LOCK = threading.Lock()
_EPOCH_LOCK = threading.Lock()


def index_for(path: Path) -> Index:
    """The process's :class:`Index` for the database at ``path``."""
    name = os.path.realpath(path)
    with _INDEXES_LOCK:
        idx = _INDEXES.get(name)
        if idx is None:
            idx = _INDEXES[name] = Index(Path(name))
        return idx


@atexit.register
def _flush_all() -> None:  # pragma: no cover - runs at interpreter exit
    for idx in list(_INDEXES.values()):
        if not idx.path.exists():  # deleted with its folder since (the user's rm -r): its hits' bookkeeping went
            continue  # with it, and writing it would make the folder again, empty, after the user deleted it
        with contextlib.suppress(Exception):  # (a process ending still mapping a deleted -shm: see _walfiles)
            idx.check_moved()
        idx.flush()
