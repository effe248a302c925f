"""Budget holds in the shared index: the total budget's check and hold as one step across processes.

A request's check and hold run in one ``BEGIN IMMEDIATE`` transaction: the spend so far (the
``totals`` running sum: one row) plus every process's reservations plus this request must fit, and
then its reservation row is written, with its pid, before the write lock is released.  Paying writes
the ledger row and ends the reservation in one transaction; a request that ends otherwise deletes its
reservation (or draws its share from its group's).  Rows of processes that are gone (this host: the
pid is dead or reused; another host: older than :data:`FOREIGN_STALE`) are dropped when they would
refuse a request.  Nothing here reads the ledger itself: a check costs the same with 10 or 100,000
rows in it.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from typing import TYPE_CHECKING

from .._exceptions import CacheError
from ._faults import IndexSetAside
from ._owners import HOST, own_start, pid_alive

if TYPE_CHECKING:
    from ._index import Index

__all__ = ["FOREIGN_STALE", "Over", "cannot_check", "drop_row", "drop_stale", "end_row", "hold_total", "pay_row",
           "total_in_index"]

#: a reservation of another host (whose process cannot be probed) is dropped when this old
FOREIGN_STALE = 3600.0


class Over(Exception):
    """The amount does not fit the total budget: what was spent and what requests in flight hold."""

    def __init__(self, spent: float, held: float) -> None:
        super().__init__(spent, held)
        self.spent, self.held = spent, held


def hold_total(index: Index, ns: str, amount: float, budget: float, into: str | None = None) -> str:
    """Check ``amount`` against the total ``budget`` and hold it, in one transaction; the token of the
    reservation row (``into``: add to that row instead, a group's).  Raises :class:`Over`, or a
    :class:`CacheError` (an :class:`~falnb.cache._faults.IndexReadOnly` when nothing can be held here)."""
    token = into or uuid.uuid4().hex
    for attempt in (1, 2):
        try:
            with index.write() as c:
                spent, held = _spent(c, ns), _held(c, ns)
                if spent + held + amount > budget + 1e-9 and _drop_stale(c):
                    held = _held(c, ns)
                if spent + held + amount > budget + 1e-9:
                    over = Over(spent, held)
                elif into is not None:
                    c.execute("UPDATE reservations SET cost=cost+? WHERE token=?", (amount, token))
                    return token
                else:
                    c.execute("INSERT INTO reservations(token, ns, cost, pid, pstart, host, created) "
                              "VALUES(?, ?, ?, ?, ?, ?, ?)",
                              (token, ns, amount, os.getpid(), own_start(), HOST, time.time()))
                    return token
            raise over  # (after the commit: the dead processes' rows stay dropped)
        except IndexSetAside:  # (damage set aside and reported): hold in the new index
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def total_in_index(index: Index, ns: str) -> tuple[float, float]:
    """(spent, held by every process's requests in flight) in ``ns``: two rows read."""
    try:
        with index.using() as c:
            return _spent(c, ns), _held(c, ns)
    except sqlite3.Error as exc:
        raise cannot_check(index.failed(exc)) from None
    except CacheError as exc:
        raise cannot_check(exc) from None


def drop_stale(index: Index, ns: str) -> float:
    """Drop the reservations of processes that are gone (a short write transaction); what is still held."""
    try:
        with index.write() as c:
            _drop_stale(c)
            return _held(c, ns)
    except CacheError as exc:
        raise cannot_check(exc) from None


def cannot_check(exc: CacheError) -> CacheError:
    return CacheError(f"the total budget cannot be checked ({exc.message}); nothing was sent",
                      hint="Retry, unset FALNB_BUDGET_TOTAL, or set FALNB_CACHE_DIR to a folder that works.")


def pay_row(index: Index, ns: str, model: str | None, request_id: str | None, cost: float | None,
            row: str | None, group: str | None) -> None:
    """The ledger row of a request fal accepted and the end of its hold (its ``row``, or its share
    of its ``group``'s row), in one transaction.  Raises :class:`CacheError`."""
    for attempt in (1, 2):
        try:
            with index.write() as c:
                c.execute("INSERT INTO ledger(ts, ns, kind, model, request_id, cost, unknown, pid) "
                          "VALUES(?, ?, 'paid', ?, ?, ?, ?, ?)",
                          (time.time(), ns, model, request_id, cost, int(cost is None), os.getpid()))
                _end(c, row, group, cost)
            return
        except IndexSetAside:  # the damaged index was set aside (and reported): record into the new one
            if attempt == 2:
                raise


def end_row(index: Index, row: str | None, group: str | None, cost: float | None) -> None:
    """A request ended without paying: delete its row, or give its share of its group's back."""
    if row is None and group is None:
        return
    try:
        with index.write() as c:
            _end(c, row, group, cost)
    except CacheError:
        if row is not None:
            index.drop_later(row)


def drop_row(index: Index, token: str) -> None:
    """Delete a reservation row (a group that ended)."""
    try:
        with index.write() as c:
            c.execute("DELETE FROM reservations WHERE token=?", (token,))
    except CacheError:
        index.drop_later(token)


def _end(c: sqlite3.Connection, row: str | None, group: str | None, cost: float | None) -> None:
    if row is not None:
        c.execute("DELETE FROM reservations WHERE token=?", (row,))
    elif group is not None and cost:
        c.execute("UPDATE reservations SET cost=MAX(cost-?, 0) WHERE token=?", (cost, group))


def _spent(c: sqlite3.Connection, ns: str) -> float:
    try:
        # (fal's bills replace estimates through 'billed' rows of the difference)
        row = c.execute("SELECT SUM(cost) FROM totals WHERE ns=? AND kind IN ('paid', 'billed')", (ns,)).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        # a version-1 index opened read-only (it could not be brought up to date): sum the ledger
        row = c.execute("SELECT SUM(cost) FROM ledger WHERE ns=? AND kind IN ('paid', 'billed')",
                        (ns,)).fetchone()
    return float(row[0] or 0.0) if row else 0.0


def _held(c: sqlite3.Connection, ns: str) -> float:
    try:
        return float(c.execute("SELECT SUM(cost) FROM reservations WHERE ns=?", (ns,)).fetchone()[0] or 0.0)
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return 0.0


def _drop_stale(c: sqlite3.Connection) -> bool:
    """Delete the reservations of processes that are gone; whether there were any."""
    now, me = time.time(), (os.getpid(), own_start(), HOST)
    dead = []
    for pid, pstart, host, oldest in c.execute(
            "SELECT pid, pstart, host, MIN(created) FROM reservations GROUP BY pid, pstart, host").fetchall():
        if (pid, pstart, host) == me:
            continue
        gone = not pid_alive(pid, pstart) if host == HOST else now - (oldest or 0) > FOREIGN_STALE
        if gone:
            dead.append((pid, pstart, host))
    c.executemany("DELETE FROM reservations WHERE pid=? AND pstart IS ? AND host=?", dead)
    return bool(dead)

