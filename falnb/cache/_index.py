"""The cache's SQLite index: entries, the in-flight journal and the ledger, in one WAL database.

Several kernels and processes share one cache directory.  SQLite in WAL mode lets readers run
while one writer writes; writers queue behind ``busy_timeout``.  Every claim or change that must
not race (a journal claim, an entry replacing another, a prune) runs in ``BEGIN IMMEDIATE``.

One :class:`Index` per database file per process (see :func:`index_for`), one connection per
thread (and a new one after a fork).  At most :data:`MAX_OPEN` indexes keep connections open at
once: using one more closes the least recently used one's (each thread closes its own).  Small
writes on the hot path (the last use of an entry, the spend saved by a hit) are buffered in
memory and flushed with the next write, by ``flush()``, or at exit: a cache hit does not write.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sqlite3
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .._exceptions import CacheError
from ._files import private_dir, private_file
from ._salvage import salvage_journal

__all__ = ["SCHEMA_VERSION", "CacheWarning", "Index", "IndexSetAside", "index_for", "is_damaged"]

SCHEMA_VERSION = 1
#: how long a writer waits for another process's write lock before giving up (ms)
BUSY_TIMEOUT_MS = 30_000
#: buffered hits are written at most this long after they happen (or sooner, with any write)
FLUSH_EVERY = 30.0
#: indexes (cache directories) with open connections per process; the least recently used is closed first
MAX_OPEN = 16
#: where to look for requests whose journal was lost
DASHBOARD = "https://fal.ai/dashboard/requests"
_JOURNAL_COLUMNS = ("ns, key, model, state, request_id, status_url, response_url, cancel_url, pid, pstart, host, "
                    "started, sent, updated")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries(
    ns TEXT NOT NULL, key TEXT NOT NULL, model TEXT NOT NULL, canonical TEXT NOT NULL,
    request_id TEXT, response TEXT NOT NULL, images TEXT NOT NULL, cost REAL,
    bytes INTEGER NOT NULL, created REAL NOT NULL, used REAL NOT NULL,
    PRIMARY KEY(ns, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_used ON entries(used);
CREATE TABLE IF NOT EXISTS journal(
    ns TEXT NOT NULL, key TEXT NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL,
    request_id TEXT, status_url TEXT, response_url TEXT, cancel_url TEXT,
    pid INTEGER NOT NULL, pstart TEXT, host TEXT NOT NULL,
    started REAL NOT NULL, sent REAL, updated REAL NOT NULL,
    PRIMARY KEY(ns, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger(
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, ns TEXT NOT NULL, kind TEXT NOT NULL,
    model TEXT, request_id TEXT, cost REAL, count INTEGER NOT NULL DEFAULT 1,
    unknown INTEGER NOT NULL DEFAULT 0, pid INTEGER);
CREATE INDEX IF NOT EXISTS ledger_ns_kind ON ledger(ns, kind);
"""


def is_damaged(exc: BaseException) -> bool:
    """SQLITE_CORRUPT / SQLITE_NOTADB: the file itself is bad (not a lock, not a full disk)."""
    text = str(exc).lower()
    return type(exc) is sqlite3.DatabaseError or "malformed" in text or "not a database" in text


class CacheWarning(UserWarning):
    """Something in the cache was damaged and has been set aside (it is regenerated on demand)."""


class IndexSetAside(CacheError):
    """The index was damaged and has been set aside (a CacheWarning said so already): retry on the new one."""


class Index:
    """The SQLite file of one cache directory, shared by every ResponseCache on it in this process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        # buffered hot-path writes: (ns, key) -> last use; (ns, model) -> [hits, saved, unknown]
        self._touched: dict[tuple[str, str], float] = {}
        self._saved: dict[tuple[str, str | None], list[float]] = {}
        self._last_flush = time.monotonic()
        self._ready = False
        #: bumped when the file is set aside (or the index is closed as least recently used): every thread's
        #: connection of an older epoch is then closed by that thread
        self._epoch = 0
        self._aside_lock = threading.Lock()
        #: journal rows salvaged from a damaged file, written into the new one when it is created
        self._salvaged: list[tuple[object, ...]] = []

    # -- connections ------------------------------------------------------------------------

    def _bump(self) -> None:
        with _EPOCH_LOCK:
            self._epoch += 1

    def conn(self) -> sqlite3.Connection:
        local = self._local
        c: sqlite3.Connection | None = getattr(local, "conn", None)
        if c is None or local.epoch != self._epoch or local.pid != os.getpid():
            return self._reconnect(c)
        if _OPEN_LAST[0] is not self:  # the hot path: one comparison while the same index is in use
            _touch_open(self)
        return c

    def _reconnect(self, old: sqlite3.Connection | None) -> sqlite3.Connection:
        local = self._local
        if old is not None and local.pid == os.getpid():  # (after a fork it is the parent's: leave it)
            with contextlib.suppress(sqlite3.Error):
                old.close()  # set aside or closed as least recently used: this thread's own, closed here
        local.conn = None
        _sweep_thread()
        c = self._connect()
        # (set aside by another thread meanwhile, so c reads the old file: failed() sees the file changed)
        local.conn, local.pid, local.epoch, local.ino = c, os.getpid(), self._epoch, _inode(self.path)
        _held().add(self)
        _register_open(self)
        return c

    def _connect(self) -> sqlite3.Connection:
        private_dir(self.path.parent)
        private_file(self.path)
        epoch, ino = self._epoch, _inode(self.path)
        try:
            c = self._open()
        except sqlite3.DatabaseError as exc:
            self._set_aside_once(exc, epoch, ino)
            private_file(self.path)
            c = self._open()
        return c

    def _open(self) -> sqlite3.Connection:
        c = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                            check_same_thread=False)
        try:
            c.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if c.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            if not self._ready:
                with self._lock:
                    row = None
                    try:
                        row = c.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
                    except sqlite3.OperationalError:  # no meta table yet
                        pass
                    if row is None or row[0] != str(SCHEMA_VERSION):
                        c.execute("BEGIN IMMEDIATE")
                        for stmt in _SCHEMA.split(";"):
                            if stmt.strip():
                                c.execute(stmt)
                        c.execute("INSERT OR REPLACE INTO meta(k, v) VALUES('schema', ?)", (str(SCHEMA_VERSION),))
                        c.execute("COMMIT")
                    if self._salvaged:  # the journal of the damaged file: keep re-attaching, never pay twice
                        c.execute("BEGIN IMMEDIATE")
                        c.executemany(f"INSERT OR IGNORE INTO journal({_JOURNAL_COLUMNS}) "
                                      "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self._salvaged)
                        c.execute("COMMIT")
                        self._salvaged = []
                    self._ready = True
        except BaseException:
            c.close()
            raise
        return c

    def _set_aside_once(self, exc: Exception, epoch: int, ino: int | None) -> bool:
        """Set the file aside unless it was already: by another thread (the epoch moved on since the
        failing connection was opened) or another process (the file at ``path`` is not the one it
        opened).  One damage event, one warning; never the new index moved aside."""
        with self._aside_lock:
            if epoch != self._epoch or ino != _inode(self.path):
                if epoch == self._epoch:
                    self._bump()  # another process did: every thread reconnects to the new file
                return False
            self._set_aside(exc)
            self._ready = False
            return True

    def _set_aside(self, exc: Exception) -> None:
        """The index file is not a database: move it aside and start a new one (pictures stay)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        moved = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        self._bump()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.replace(str(self.path) + suffix, str(moved) + suffix)
            except FileNotFoundError:
                pass
            except OSError as err:  # pragma: no cover - cannot move it: nothing safe to do
                raise CacheError(f"the cache index {self.path} is damaged ({exc}) and cannot be moved: {err}",
                                 hint="Delete it, or set FALNB_CACHE_DIR to another folder.") from None
        rows = salvage_journal(moved, _JOURNAL_COLUMNS)
        if rows is None:
            journal = (" Its in-flight journal could not be read: requests being generated or re-attachable "
                       f"could not be recovered; check {DASHBOARD} before running them again (they may be "
                       "billed twice).")
        else:
            self._salvaged = rows
            journal = f" {len(rows)} request(s) in flight were recovered from it." if rows else ""
        warnings.warn(f"falnb: the cache index {self.path} was damaged ({exc}); it was moved to {moved.name} "
                      f"and a new index was started. Cached pictures it listed will be generated again.{journal}",
                      CacheWarning, stacklevel=4)

    # -- transactions -----------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``: the write lock for the whole block.

        SQLite failures come out as :class:`CacheError`; a damaged index file is set aside first."""
        try:
            c = self.conn()
            c.execute("BEGIN IMMEDIATE")
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

    def checkpoint(self) -> None:
        """Copy the WAL into the database file, so ``index.sqlite3`` alone is complete (a cache folder
        committed to a repository, a copy) even while kernels keep it open.  Best effort."""
        with contextlib.suppress(sqlite3.Error):
            self.conn().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def failed(self, exc: sqlite3.Error) -> CacheError:
        """The CacheError for ``exc``; a damaged file is set aside so the next call starts a new index.

        An :class:`IndexSetAside` when the damage was reported already (here, or by the thread or
        process that set the file aside first): the caller retries, and warns no more."""
        if is_damaged(exc):
            local = self._local
            c = getattr(local, "conn", None)
            local.conn = None
            if c is not None:
                with contextlib.suppress(sqlite3.Error):
                    c.close()
            with contextlib.suppress(CacheError, OSError):
                if self.path.exists():
                    self._set_aside_once(exc, getattr(local, "epoch", self._epoch), getattr(local, "ino", None))
            return IndexSetAside(f"the cache index {self.path} was damaged and has been set aside: {exc}")
        return CacheError(f"the cache index {self.path} failed: {exc}",
                          hint="falnb went on without it; set FALNB_CACHE_DIR to another folder if this repeats.")

    # -- buffered hot-path writes ------------------------------------------------------------

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

    def pending_saved(self, ns: str | None) -> tuple[int, float]:
        with self._lock:
            items = [v for (n, _), v in self._saved.items() if ns is None or n == ns]
        return int(sum(v[0] for v in items)), sum(v[1] for v in items)

    def flush(self) -> None:
        with self._lock:
            if not self._touched and not self._saved:
                self._last_flush = time.monotonic()
                return
        try:
            with self.write():
                pass  # write() flushes first
        except (CacheError, OSError):  # pragma: no cover - best effort: hits are bookkeeping
            pass

    def _flush_into(self, c: sqlite3.Connection) -> None:
        with self._lock:
            touched, self._touched = self._touched, {}
            saved, self._saved = self._saved, {}
            self._last_flush = time.monotonic()
        if touched:
            c.executemany("UPDATE entries SET used=? WHERE ns=? AND key=? AND used<?",
                          [(t, ns, key, t) for (ns, key), t in touched.items()])
        if saved:
            now, pid = time.time(), os.getpid()
            c.executemany("INSERT INTO ledger(ts, ns, kind, model, cost, count, unknown, pid) "
                          "VALUES(?, ?, 'saved', ?, ?, ?, ?, ?)",
                          [(now, ns, model, v[1], int(v[0]), int(v[2]), pid) for (ns, model), v in saved.items()])


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


_INDEXES: dict[str, Index] = {}
_INDEXES_LOCK = threading.Lock()
#: indexes with connections open, least recently used first; [0] is the last one used (the hot path)
_OPEN: OrderedDict[Index, None] = OrderedDict()
_OPEN_LAST: list[Index | None] = [None]
_THREAD = threading.local()
_EPOCH_LOCK = threading.Lock()


def index_for(path: Path) -> Index:
    """The process's :class:`Index` for the database at ``path``."""
    name = os.path.realpath(path)
    with _INDEXES_LOCK:
        idx = _INDEXES.get(name)
        if idx is None:
            idx = _INDEXES[name] = Index(Path(name))
        return idx


def _touch_open(idx: Index) -> None:
    with _INDEXES_LOCK:
        if idx in _OPEN:
            _OPEN.move_to_end(idx)
        _OPEN_LAST[0] = idx


def _register_open(idx: Index) -> None:
    """``idx`` just opened a connection: the most recently used; close the least recently used beyond MAX_OPEN."""
    with _INDEXES_LOCK:
        _OPEN[idx] = None
        _OPEN.move_to_end(idx)
        _OPEN_LAST[0] = idx
        victims = []
        while len(_OPEN) > MAX_OPEN:
            victim, _ = _OPEN.popitem(last=False)
            victim._bump()  # every thread closes its connection to it (its buffered hits stay, flushed later)
            victims.append(victim)
    if victims:
        _sweep_thread()


def _held() -> set[Index]:
    held: set[Index] | None = getattr(_THREAD, "held", None)
    if held is None:
        held = _THREAD.held = set()
    return held


def _sweep_thread() -> None:
    """Close this thread's connections to indexes closed or set aside since.  A thread closes only its
    own connections (never one another thread may be using); a thread's connections close when it ends."""
    held = _held()
    pid = os.getpid()
    for idx in list(held):
        local = idx._local
        c = getattr(local, "conn", None)
        if c is None or local.pid != pid:
            held.discard(idx)
        elif local.epoch != idx._epoch and not c.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                c.close()
            local.conn = None
            held.discard(idx)


def open_connections() -> int:
    """This thread's open index connections (for tests)."""
    return sum(1 for idx in _held() if getattr(idx._local, "conn", None) is not None)


@atexit.register
def _flush_all() -> None:  # pragma: no cover - runs at interpreter exit
    for idx in list(_INDEXES.values()):
        idx.flush()
