"""The cache index's tables, and bringing an older index up to date.

* ``entries``: one stored response per (namespace, key); ``stamp`` numbers the writes (a counter in
  ``meta``, bumped by each ``put`` and import), so a prune can see what was stored since it looked.
* ``journal``: requests in flight (see :mod:`falnb.cache._journal`).
* ``ledger``: one row per request paid (``paid``) or per batch of hits (``saved``).
* ``totals``: the ledger's running sums per (namespace, kind), kept by triggers in the same
  transaction as each ledger row, so a budget check reads one row instead of summing the ledger.
* ``reservations``: what requests in flight hold against the total budget, with the process holding
  it (pid, its start time, host), visible to every process; a dead process's rows are dropped.

Version 1 had no ``totals`` and no ``reservations`` (version 2 no ``stamp`` and no index on
``created``): opening an older index adds them (the totals summed once).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping, Sequence

__all__ = ["JOURNAL_COLUMNS", "RESERVATION_COLUMNS", "SCHEMA_VERSION", "ensure_schema", "next_stamp", "stamp_now"]

SCHEMA_VERSION = 3
JOURNAL_COLUMNS = ("ns, key, model, state, request_id, status_url, response_url, cancel_url, pid, pstart, host, "
                   "started, sent, updated")
RESERVATION_COLUMNS = "token, ns, cost, pid, pstart, host, created"

# (statements, not a script split on ";": the triggers' bodies hold semicolons)
_STATEMENTS = (
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS entries(
        ns TEXT NOT NULL, key TEXT NOT NULL, model TEXT NOT NULL, canonical TEXT NOT NULL,
        request_id TEXT, response TEXT NOT NULL, images TEXT NOT NULL, cost REAL,
        bytes INTEGER NOT NULL, created REAL NOT NULL, used REAL NOT NULL, stamp INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY(ns, key)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS entries_used ON entries(used)",
    "CREATE INDEX IF NOT EXISTS entries_created ON entries(created)",  # (listing newest first streams)
    """CREATE TABLE IF NOT EXISTS journal(
        ns TEXT NOT NULL, key TEXT NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL,
        request_id TEXT, status_url TEXT, response_url TEXT, cancel_url TEXT,
        pid INTEGER NOT NULL, pstart TEXT, host TEXT NOT NULL,
        started REAL NOT NULL, sent REAL, updated REAL NOT NULL,
        PRIMARY KEY(ns, key)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS ledger(
        id INTEGER PRIMARY KEY, ts REAL NOT NULL, ns TEXT NOT NULL, kind TEXT NOT NULL,
        model TEXT, request_id TEXT, cost REAL, count INTEGER NOT NULL DEFAULT 1,
        unknown INTEGER NOT NULL DEFAULT 0, pid INTEGER)""",
    "CREATE INDEX IF NOT EXISTS ledger_ns_kind ON ledger(ns, kind)",
    """CREATE TABLE IF NOT EXISTS totals(
        ns TEXT NOT NULL, kind TEXT NOT NULL, cost REAL NOT NULL DEFAULT 0, count INTEGER NOT NULL DEFAULT 0,
        unknown INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(ns, kind)) WITHOUT ROWID""",
    """CREATE TRIGGER IF NOT EXISTS ledger_added AFTER INSERT ON ledger BEGIN
        INSERT INTO totals(ns, kind, cost, count, unknown)
        VALUES(NEW.ns, NEW.kind, COALESCE(NEW.cost, 0), NEW.count, NEW.unknown)
        ON CONFLICT(ns, kind) DO UPDATE SET cost=cost+excluded.cost, count=count+excluded.count,
                                            unknown=unknown+excluded.unknown;
    END""",
    """CREATE TRIGGER IF NOT EXISTS ledger_removed AFTER DELETE ON ledger BEGIN
        UPDATE totals SET cost=cost-COALESCE(OLD.cost, 0), count=count-OLD.count, unknown=unknown-OLD.unknown
        WHERE ns=OLD.ns AND kind=OLD.kind;
    END""",
    """CREATE TABLE IF NOT EXISTS reservations(
        token TEXT PRIMARY KEY, ns TEXT NOT NULL, cost REAL NOT NULL, pid INTEGER NOT NULL, pstart TEXT,
        host TEXT NOT NULL, created REAL NOT NULL) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS reservations_ns ON reservations(ns)",
)


def ensure_schema(c: sqlite3.Connection, salvaged: Mapping[str, Sequence[tuple[object, ...]]]) -> None:
    """Create or update the tables (in one transaction), then add rows ``salvaged`` from a damaged or
    deleted index file (``{"journal": rows, "reservations": rows}``)."""
    row = None
    try:
        row = c.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
    except sqlite3.OperationalError:  # no meta table yet
        pass
    if row is None or row[0] != str(SCHEMA_VERSION):
        c.execute("BEGIN IMMEDIATE")
        try:
            try:  # (another process may have done it meanwhile)
                row = c.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
            except sqlite3.OperationalError:
                row = None
            if row is None or row[0] != str(SCHEMA_VERSION):
                for stmt in _STATEMENTS:
                    c.execute(stmt)
                if "stamp" not in {r[1] for r in c.execute("PRAGMA table_info(entries)")}:
                    c.execute("ALTER TABLE entries ADD COLUMN stamp INTEGER NOT NULL DEFAULT 0")
                c.execute("CREATE INDEX IF NOT EXISTS entries_stamp ON entries(stamp)")
                c.execute("INSERT OR IGNORE INTO meta(k, v) VALUES('stamp', '0')")
                # the running sums, once, from the ledger as it stands (idempotent: redone from scratch)
                c.execute("DELETE FROM totals")
                c.execute("INSERT INTO totals(ns, kind, cost, count, unknown) SELECT ns, kind, "
                          "COALESCE(SUM(cost), 0), COALESCE(SUM(count), 0), COALESCE(SUM(unknown), 0) "
                          "FROM ledger GROUP BY ns, kind")
                c.execute("INSERT OR REPLACE INTO meta(k, v) VALUES('schema', ?)", (str(SCHEMA_VERSION),))
            c.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
            raise
    journal, held = salvaged.get("journal") or (), salvaged.get("reservations") or ()
    if journal or held:  # the in-flight journal of the old file: keep re-attaching, never pay twice
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany(f"INSERT OR IGNORE INTO journal({JOURNAL_COLUMNS}) "
                          "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", journal)
            c.executemany(f"INSERT OR IGNORE INTO reservations({RESERVATION_COLUMNS}) VALUES(?, ?, ?, ?, ?, ?, ?)",
                          held)
            c.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
            raise


def next_stamp(c: sqlite3.Connection) -> int:
    """The stamp of an entry written in the current write transaction (one more than the last one)."""
    c.execute("UPDATE meta SET v=CAST(v AS INTEGER)+1 WHERE k='stamp'")
    return stamp_now(c)


def stamp_now(c: sqlite3.Connection) -> int:
    """The last stamp given (0: none yet)."""
    row = c.execute("SELECT v FROM meta WHERE k='stamp'").fetchone()
    return int(row[0]) if row else 0
