"""What falnb spent and saved, and the budgets that refuse a request before it is sent.

* **Per request**: one ``paid`` row in the cache index per fal submit (model, request id,
  estimated cost), written right after fal accepted it.
* **Per session**: this process's spend and savings, kept in memory (every client shares them;
  :mod:`falnb.cache._session`).
* **In total**: everything recorded in the cache directory, across processes and sessions, read
  from the index's running sums (``totals``, kept by triggers in the same transaction as each ledger
  row): a budget check reads a few rows, whatever the size of the ledger.

Spend is counted per namespace: the emulator's make-believe prices (``"emulator"``) never mix
with fal's (``"fal"``).

Budgets (USD, estimates from the catalog's prices): ``budget_session`` and ``budget_total``, set
on :class:`Ledger` (``client.cache.ledger.budget_session = 5``), through
``ResponseCache(budget_session=..., budget_total=...)``, or from ``FALNB_BUDGET_SESSION`` /
``FALNB_BUDGET_TOTAL`` (read at each check, so ``%env`` works mid-session; what they accept:
:mod:`falnb.cache._budget`).  A request whose estimate would cross a budget is refused before
anything is sent; so is a request of unknown price while a budget is set, since it could cost anything.

In-flight requests hold a *reservation* from the check until fal accepts them (then it turns into
spend) or they end otherwise (then it is released).  Under a total budget the check and the hold are
one transaction on the shared index and the hold is a row every process sees
(:mod:`falnb.cache._holds`): processes started together cannot together cross the total budget each
would fit alone.  A *group* (one :class:`~falnb.Run`: a cell, a batch) holds its whole estimate at its
first request and passes or fails whole; what it has left is released when it ends.
"""

from __future__ import annotations

import itertools
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._exceptions import BudgetExceededError, CacheError
from ..results._text import usd
from ._billed import record_billed
from ._budget import amount, env_budget, over_budget
from ._faults import IndexReadOnly, Reported
from ._holds import Over, cannot_check, drop_row, drop_stale, end_row, hold_total, pay_row, total_in_index
from ._session import (
    Spend,
    check_lock,
    hold_here,
    reserved,
    session_paid,
    session_saved,
    session_spend,
    unreserve,
)

if TYPE_CHECKING:
    from ._index import Index

__all__ = ["UNSET", "Ledger", "Reservation", "Spend", "session_ledger", "session_spend", "totals"]

UNSET = object()


class Reservation:
    """A request's estimate, held against the budgets from the check until it is paid or dropped:
    in its own reservation row (``row``), its group's (``hold``), or in this process's memory only."""

    __slots__ = ("_hold", "_ledger", "_row", "cost", "model", "state")

    def __init__(self, ledger: Ledger, cost: float | None, model: str | None, *, row: str | None = None,
                 hold: _Hold | None = None) -> None:
        self._ledger, self.cost, self.model, self.state = ledger, cost, model, "held"
        self._row, self._hold = row, hold

    def pay(self, request_id: str | None) -> None:
        """fal accepted the request: the estimate becomes spend (and the hold ends, in one transaction)."""
        if self.state != "held":
            return
        self.state = "paid"
        led = self._ledger
        session_paid(led.namespace, self.cost)
        if led._index is not None:
            try:
                pay_row(led._index, led.namespace, self.model, request_id, self.cost, self._row, self._group())
            except CacheError as exc:  # the request is paid and running: do not fail it over bookkeeping
                _warn_unrecorded(request_id, exc)
                if self._row is not None:
                    led._index.drop_later(self._row)
        unreserve(led.namespace, self.cost)  # after: the cost is always counted in one place at least

    def release(self) -> None:
        """The request ended without a submit of ours (a hit, a re-attach, an error): nothing spent."""
        if self.state == "held":
            self.state = "released"
            led = self._ledger
            if led._index is not None:
                end_row(led._index, self._row, self._group(), self.cost)
            unreserve(led.namespace, self.cost)

    def _group(self) -> str | None:
        return self._hold.token if self._hold is not None else None


class Ledger:
    """Spend and savings of one cache directory and namespace, and the budgets guarding them."""

    def __init__(self, index: Index | None, namespace: str = "fal", *, budget_session: object = UNSET,
                 budget_total: object = UNSET, where: str = "") -> None:
        self._index = index
        self.namespace = namespace
        self._where = where
        self._budget_session: float | object | None = UNSET
        self._budget_total: float | object | None = UNSET
        if budget_session is not UNSET:
            self.budget_session = budget_session  # type: ignore[assignment]
        if budget_total is not UNSET:
            self.budget_total = budget_total  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<falnb Ledger {self.namespace}: session {self.session()}>"

    # -- budgets ----------------------------------------------------------------------------

    @property
    def budget_session(self) -> float | None:
        """This process's spending limit in USD (default ``FALNB_BUDGET_SESSION``; None: no limit)."""
        b = self._budget_session
        return env_budget("FALNB_BUDGET_SESSION") if b is UNSET else b  # type: ignore[return-value]

    @budget_session.setter
    def budget_session(self, value: float | None) -> None:
        self._budget_session = None if value is None else amount(value, "budget_session")

    @property
    def budget_total(self) -> float | None:
        """The limit on everything spent through this cache directory (default ``FALNB_BUDGET_TOTAL``)."""
        b = self._budget_total
        return env_budget("FALNB_BUDGET_TOTAL") if b is UNSET else b  # type: ignore[return-value]

    @budget_total.setter
    def budget_total(self, value: float | None) -> None:
        self._budget_total = None if value is None else amount(value, "budget_total")

    def check_budget(self, cost: float | None, *, model: str | None = None, what: str | None = None) -> None:
        """Raise :class:`BudgetExceededError` when ``cost`` would cross a budget, counting what requests
        in flight hold (this process's for the session budget, every process's for the total).
        ``what`` names the spend (default: this request).  Holds nothing: see :meth:`reserve`."""
        _drain()
        session_budget, total_budget = self.budget_session, self.budget_total
        if session_budget is None and total_budget is None:
            return
        what = what or _what(model)
        cost = self._priced(cost, model, what)
        self._check_session(session_budget, cost, model, what)
        if total_budget is not None and cost > 0:
            spent, held = self._total_now()
            if spent + held + cost > total_budget + 1e-9 and held > 0 and self._index is not None:
                held = drop_stale(self._index, self.namespace)  # (what dead processes held does not count)
            if spent + held + cost > total_budget + 1e-9:
                raise self._over_total(total_budget, spent, held, cost, what, model)

    def reserve(self, cost: float | None, *, model: str | None = None, group: object = None,
                group_cost: Callable[[], float | None] | None = None) -> Reservation:
        """Check the budgets and hold ``cost`` until the request is paid or released.

        ``group`` (several calls run together, e.g. a :class:`~falnb.Run`) makes them pass or fail whole:
        its first request checks and holds ``group_cost()`` (their uncached estimate), and the others
        draw on that hold, so no request of the group is sent when the group would cross a budget."""
        with check_lock():  # a check and its hold are one step for the threads of this process
            _drain()
            if group is None or group_cost is None:
                return Reservation(self, cost, model, row=self._hold(cost, model))
            hold = self._group_hold(group, group_cost, model)
            if cost is None:
                self.check_budget(None, model=model)  # raises only when a budget is set
                return Reservation(self, None, model)
            if cost > hold.left + 1e-12:  # a request the group's estimate did not count (a damaged entry)
                extra = cost - hold.left
                token = self._hold(extra, model, into=hold.token)
                hold.token = hold.token or token
                hold.left += extra
            hold.left -= cost
            return Reservation(self, cost, model, hold=hold)

    def _group_hold(self, group: object, group_cost: Callable[[], float | None], model: str | None) -> _Hold:
        gid = id(group)
        entry = _HOLDS.get(gid)
        if entry is None:
            serial = next(_SERIAL)
            hold: _Hold | BudgetExceededError
            try:
                total = group_cost()
                hold = _Hold(total or 0.0, self.namespace, self._index, self._hold(total, model))
            except BudgetExceededError as exc:
                hold = exc
            entry = _HOLDS[gid] = (serial, hold)
            weakref.finalize(group, _PENDING.append, (gid, serial))  # released at the latest when collected
            done = getattr(group, "add_done_callback", None)
            if callable(done):  # a Run: what is left is released as soon as it ends (on the loop thread)
                done(lambda _group, token=(gid, serial): _end_group(*token))
        if isinstance(entry[1], BudgetExceededError):
            refused = entry[1]
            raise BudgetExceededError(refused.message, model=refused.model, hint=refused.hint)
        return entry[1]

    def _hold(self, cost: float | None, model: str | None, into: str | None = None) -> str | None:
        """Check ``cost`` against the budgets and hold it; the reservation row's token (total budget)."""
        session_budget, total_budget = self.budget_session, self.budget_total
        row = None
        if session_budget is not None or total_budget is not None:
            what = _what(model)
            cost = self._priced(cost, model, what)
            self._check_session(session_budget, cost, model, what)
            if total_budget is not None and cost > 0:
                row = self._hold_total(cost, total_budget, model, what, into)
        hold_here(self.namespace, cost)
        return row

    def _hold_total(self, cost: float, budget: float, model: str | None, what: str, into: str | None) -> str | None:
        if self._index is None:  # a client without a cache: its session is its total
            spent, held = self._total_now()
            if spent + held + cost > budget + 1e-9:
                raise self._over_total(budget, spent, held, cost, what, model)
            return None
        try:
            return hold_total(self._index, self.namespace, cost, budget, into)
        except Over as over:
            raise self._over_total(budget, over.spent, over.held, cost, what, model) from None
        except IndexReadOnly:  # nobody can write here: check what can be read, hold in memory
            spent, held = self._total_now()
            if spent + held + reserved(self.namespace) + cost > budget + 1e-9:
                raise self._over_total(budget, spent, held + reserved(self.namespace), cost, what, model) from None
            return None
        except CacheError as exc:
            raise cannot_check(exc) from None

    def _total_now(self) -> tuple[float, float]:
        if self._index is None:
            return self.session().paid, reserved(self.namespace)
        return total_in_index(self._index, self.namespace)

    def _priced(self, cost: float | None, model: str | None, what: str) -> float:
        if cost is None:
            raise BudgetExceededError(
                f"{what} has no known price, and a budget is set: falnb cannot tell whether it fits; nothing "
                "was sent", model=model,
                hint="Unset the budget to send it anyway (FALNB_BUDGET_SESSION / FALNB_BUDGET_TOTAL, or "
                     "client.cache.ledger.budget_session = None).")
        return cost

    def _check_session(self, budget: float | None, cost: float, model: str | None, what: str) -> None:
        if budget is None or cost <= 0:  # (nothing to spend: fits, even a budget lowered below the spend)
            return
        spent, held = self.session().paid, reserved(self.namespace)
        if spent + held + cost > budget + 1e-9:
            raise over_budget("session", budget, spent, f"{usd(spent)} so far in this session", held, cost, what,
                              model)

    def _over_total(self, budget: float, spent: float, held: float, cost: float, what: str,
                    model: str | None) -> BudgetExceededError:
        return over_budget("total", budget, spent, f"{usd(spent)} in total through {self._where or 'this cache'}",
                           held, cost, what, model)

    # -- recording --------------------------------------------------------------------------

    def record_paid(self, cost: float | None, *, model: str | None = None, request_id: str | None = None) -> None:
        """One request sent to fal and accepted, that held no reservation: it will be billed."""
        Reservation(self, cost, model).pay(request_id)

    def record_billed(self, estimate: float | None, billed: float, *, model: str | None = None,
                      request_id: str | None = None) -> None:
        """fal's bill of a paid request replaces its estimate in the spend, totals and budgets (_billed)."""
        record_billed(self._index, self.namespace, estimate, billed, model, request_id)

    def record_saved(self, cost: float | None, *, model: str | None = None) -> None:
        """A cache hit: ``cost`` not spent.  Buffered: a hit does not write to disk."""
        session_saved(self.namespace, cost)
        if self._index is not None:
            self._index.add_saved(self.namespace, model, cost)

    def record_proxy_cost(self, cost: float | None, *, model: str | None = None,
                          request_id: str | None = None) -> None:
        """What a LiteLLM proxy said a request cost (``x-litellm-response-cost``), beside falnb's own estimate
        (a ``proxy`` row: neither spend nor budgets count it, falnb's estimate is already in them)."""
        if self._index is None or cost is None:
            return
        import os
        import time

        try:
            with self._index.write() as c:
                c.execute("INSERT INTO ledger(ts, ns, kind, model, request_id, cost, pid) "
                          "VALUES(?, ?, 'proxy', ?, ?, ?, ?)", (time.time(), self.namespace, model, request_id,
                                                                 cost, os.getpid()))
        except CacheError as exc:
            _warn_unrecorded(request_id, exc)

    # -- reading ----------------------------------------------------------------------------

    def proxy_reported(self) -> float:
        """The sum of what LiteLLM proxies said this cache directory's requests cost (see
        :meth:`record_proxy_cost`); 0.0 when none said."""
        spent = totals(self._index, self.namespace, kind="proxy") if self._index is not None else None
        return spent.paid if spent is not None else 0.0

    def session(self) -> Spend:
        """This process's spend and savings in this namespace."""
        return session_spend(self.namespace)

    def total(self) -> Spend:
        """Everything recorded in this cache directory for this namespace, all processes."""
        return totals(self._index, self.namespace) if self._index is not None else self.session()


def _what(model: str | None) -> str:
    return f"this request to {model}" if model else "this request"


def _warn_unrecorded(request_id: str | None, exc: CacheError) -> None:
    if not isinstance(exc, Reported):  # (else a CacheWarning said why already)
        import warnings

        from ._faults import CacheWarning

        warnings.warn(f"falnb: the spend of request {request_id} was not recorded: {exc.message}",
                      CacheWarning, stacklevel=4)


def totals(index: Index, namespace: str | None, kind: str = "paid") -> Spend:
    """The ledger's running sums for one namespace (None: all of them), plus the hits not yet written.
    Raises :class:`CacheError` when the index cannot be read."""
    import sqlite3
    where, args = ("WHERE ns=?", (namespace,)) if namespace is not None else ("", ())
    sql = "SELECT kind, SUM(cost), SUM(count), SUM(unknown) FROM {} " + where + " GROUP BY kind"
    try:
        with index.using() as c:
            try:
                rows = c.execute(sql.format("totals"), args).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                rows = c.execute(sql.format("ledger"), args).fetchall()  # a version-1 index, read-only
    except sqlite3.Error as exc:
        raise index.failed(exc) from None
    sums = {r[0]: r[1:] for r in rows}
    paid = sums.get(kind) or (0.0, 0, 0)
    billed = (sums.get("billed") if kind == "paid" else None) or (0.0, 0, 0)  # fal's bills minus estimates
    saved = sums.get("saved") or (0.0, 0, 0)
    hits, more = index.pending_saved(namespace)
    return Spend(paid=round(float(paid[0] or 0) + float(billed[0] or 0), 6), requests=int(paid[1] or 0),
                 unknown=int(paid[2] or 0) + int(billed[2] or 0), saved=round(float(saved[0] or 0) + more, 6),
                 hits=int(saved[1] or 0) + hits, billed=int(billed[1] or 0))


class _Hold:
    """What one group's first request held for the whole group; its requests draw on it."""

    __slots__ = ("index", "left", "namespace", "token")

    def __init__(self, left: float, namespace: str, index: Index | None, token: str | None) -> None:
        self.left, self.namespace, self.index, self.token = left, namespace, index, token


#: id(group) -> (a serial number, its hold or the refusal every request of the group gets)
_HOLDS: dict[int, tuple[int, _Hold | BudgetExceededError]] = {}
_SERIAL = itertools.count(1)
#: groups collected, (id, serial): released at the next check, never inside a finalizer (which may run
#: anywhere, inside a lock or a transaction of this thread included)
_PENDING: deque[tuple[int, int]] = deque()


def _end_group(gid: int, serial: int) -> None:
    """The group ended: release what it still holds."""
    entry = _HOLDS.get(gid)
    if entry is None or entry[0] != serial:
        return  # ended already (and its id maybe reused by a new group)
    del _HOLDS[gid]
    hold = entry[1]
    if isinstance(hold, _Hold):
        unreserve(hold.namespace, hold.left)
        if hold.token and hold.index is not None:
            drop_row(hold.index, hold.token)


def _drain() -> None:
    while _PENDING:
        try:
            token = _PENDING.popleft()
        except IndexError:  # (another thread took it)
            return
        _end_group(*token)


_MEMORY: dict[str, Ledger] = {}


def session_ledger(namespace: str) -> Ledger:
    """The ledger of a client without a cache: session spend and session budget only."""
    led = _MEMORY.get(namespace)
    if led is None:
        led = _MEMORY[namespace] = Ledger(None, namespace)
    return led
