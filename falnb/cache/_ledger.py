"""What falnb spent and saved, and the budgets that refuse a request before it is sent.

* **Per request**: one ``paid`` row in the cache index per fal submit (model, request id,
  estimated cost), written right after fal accepted it.
* **Per session**: this process's spend and savings, kept in memory (every client shares them).
* **In total**: the sum of the cache directory's rows, across processes and sessions.

Spend is counted per namespace: the emulator's make-believe prices (``"emulator"``) never mix
with fal's (``"fal"``).

Budgets (USD, estimates from the catalog's prices): ``budget_session`` and ``budget_total``, set
on :class:`Ledger` (``client.cache.ledger.budget_session = 5``), through
``ResponseCache(budget_session=..., budget_total=...)``, or from ``FALNB_BUDGET_SESSION`` /
``FALNB_BUDGET_TOTAL`` (read at each check, so ``%env`` works mid-session).  A request whose
estimate would cross a budget is refused before anything is sent; so is a request of unknown
price while a budget is set, since it could cost anything.

In-flight requests hold a *reservation* from the check until fal accepts them (then it turns into
spend) or they end otherwise (then it is released): requests running at the same time cannot
together cross a budget each would fit alone.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._exceptions import BudgetExceededError, CacheError, ConfigError
from ..results._text import usd

if TYPE_CHECKING:
    from ._index import Index

__all__ = ["Ledger", "Reservation", "Spend", "session_ledger", "session_spend", "totals"]


_UNSET = object()


@dataclass(frozen=True)
class Spend:
    """Money paid and saved, USD estimates."""

    paid: float = 0.0
    #: requests sent to fal (each one billed)
    requests: int = 0
    #: requests whose price falnb does not know (not in ``paid``)
    unknown: int = 0
    saved: float = 0.0
    #: cache hits (requests not sent)
    hits: int = 0

    def __str__(self) -> str:
        s = f"{usd(self.paid)} paid for {self.requests} request(s)"
        if self.unknown:
            s += f" ({self.unknown} of unknown price)"
        return s + f", {usd(self.saved)} saved by {self.hits} cache hit(s)"


class _Session:
    """This process's spend per namespace, and the reservations of requests in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.check = threading.Lock()
        self.paid: dict[str, list[float]] = {}      # ns -> [paid, requests, unknown]
        self.saved: dict[str, list[float]] = {}     # ns -> [saved, hits]
        self.reserved: dict[str, float] = {}        # ns -> USD held by requests not yet accepted


_SESSION = _Session()


def _env_budget(name: str) -> float | None:
    raw = os.environ.get(name, "").strip().lstrip("$")
    if not raw or raw.lower() in ("none", "off"):
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an amount in USD", hint=f"e.g. {name}=5 for five dollars.") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


class Reservation:
    """A request's estimate, held against the budgets from the check until it is paid or dropped."""

    __slots__ = ("_ledger", "cost", "model", "state")

    def __init__(self, ledger: Ledger, cost: float | None, model: str | None) -> None:
        self._ledger, self.cost, self.model, self.state = ledger, cost, model, "held"

    def pay(self, request_id: str | None) -> None:
        """fal accepted the request: the estimate becomes spend."""
        if self.state != "held":
            return
        self.state = "paid"
        self._ledger.record_paid(self.cost, model=self.model, request_id=request_id)
        self._ledger._unreserve(self.cost)  # after: the cost is always counted in one place at least

    def release(self) -> None:
        """The request ended without a submit of ours (a hit, a re-attach, an error): nothing spent."""
        if self.state == "held":
            self.state = "released"
            self._ledger._unreserve(self.cost)


class Ledger:
    """Spend and savings of one cache directory and namespace, and the budgets guarding them."""

    def __init__(self, index: Index | None, namespace: str = "fal", *, budget_session: object = _UNSET,
                 budget_total: object = _UNSET, where: str = "") -> None:
        self._index = index
        self.namespace = namespace
        self._where = where
        self._budget_session: float | object | None = _UNSET
        self._budget_total: float | object | None = _UNSET
        if budget_session is not _UNSET:
            self.budget_session = budget_session  # type: ignore[assignment]
        if budget_total is not _UNSET:
            self.budget_total = budget_total  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<falnb Ledger {self.namespace}: session {self.session()}>"

    # -- budgets ----------------------------------------------------------------------------

    @property
    def budget_session(self) -> float | None:
        """This process's spending limit in USD (default ``FALNB_BUDGET_SESSION``; None: no limit)."""
        b = self._budget_session
        return _env_budget("FALNB_BUDGET_SESSION") if b is _UNSET else b  # type: ignore[return-value]

    @budget_session.setter
    def budget_session(self, value: float | None) -> None:
        self._budget_session = None if value is None else _amount(value, "budget_session")

    @property
    def budget_total(self) -> float | None:
        """The limit on everything spent through this cache directory (default ``FALNB_BUDGET_TOTAL``)."""
        b = self._budget_total
        return _env_budget("FALNB_BUDGET_TOTAL") if b is _UNSET else b  # type: ignore[return-value]

    @budget_total.setter
    def budget_total(self, value: float | None) -> None:
        self._budget_total = None if value is None else _amount(value, "budget_total")

    def check_budget(self, cost: float | None, *, model: str | None = None, what: str | None = None) -> None:
        """Raise :class:`BudgetExceededError` when ``cost`` would cross a budget, counting what this
        process holds for requests in flight.  ``what`` names the spend (default: this request)."""
        session_budget, total_budget = self.budget_session, self.budget_total
        if session_budget is None and total_budget is None:
            return
        what = what or (f"this request to {model}" if model else "this request")
        if cost is None:
            raise BudgetExceededError(
                f"{what} has no known price, and a budget is set: falnb cannot tell whether it fits; nothing "
                "was sent", model=model,
                hint="Unset the budget to send it anyway (FALNB_BUDGET_SESSION / FALNB_BUDGET_TOTAL, or "
                     "client.cache.ledger.budget_session = None).")
        with _SESSION.lock:
            reserved = _SESSION.reserved.get(self.namespace, 0.0)
        checks: list[tuple[str, float, float, str, str]] = []
        if session_budget is not None:
            spent = self.session().paid
            checks.append(("session", session_budget, spent, f"{usd(spent)} so far in this session",
                           "FALNB_BUDGET_SESSION"))
        if total_budget is not None:
            total = self.total().paid
            checks.append(("total", total_budget, total,
                           f"{usd(total)} in total through {self._where or 'this cache'}", "FALNB_BUDGET_TOTAL"))
        for name, budget, spent, said, env in checks:
            if spent + reserved + cost > budget + 1e-9:
                pending = f" and {usd(reserved)} held by requests in flight" if reserved > 1e-12 else ""
                need = _suggest(spent + reserved + cost)
                raise BudgetExceededError(
                    f"{what} (~{usd(cost)}) would cross the {name} budget of {usd(budget)}: "
                    f"spent {said}{pending}; nothing was sent", model=model,
                    hint=f"Raise it with %env {env}={need} or client.cache.ledger.budget_{name} = {need} "
                         "(None removes it).")

    def reserve(self, cost: float | None, *, model: str | None = None, group: object = None,
                group_cost: Callable[[], float | None] | None = None) -> Reservation:
        """Check the budgets and hold ``cost`` until the request is paid or released.

        ``group`` (one ``generate`` call, e.g. its progress tracker) makes the call pass or fail whole:
        its first request checks and holds ``group_cost()`` (the call's uncached estimate), and the others draw on that
        hold, so no request of a call is sent when the call as a whole would cross a budget."""
        with _SESSION.check:  # a check and its hold are one step for this process
            if group is None or group_cost is None:
                self.check_budget(cost, model=model)
                self._hold(cost)
                return Reservation(self, cost, model)
            hold = _HOLDS.get(id(group))
            if hold is None:
                try:
                    amount = group_cost()
                    self.check_budget(amount, model=model)
                except BudgetExceededError as exc:
                    hold = exc
                else:
                    hold = _Hold(amount or 0.0, self.namespace)
                    self._hold(hold.left)
                _HOLDS[id(group)] = hold
                weakref.finalize(group, _drop_hold, id(group))  # leftovers are released with the call
            if isinstance(hold, BudgetExceededError):
                raise BudgetExceededError(hold.message, model=hold.model, hint=hold.hint)
            if cost is None:
                self.check_budget(None, model=model)  # raises only when a budget is set
                return Reservation(self, None, model)
            take = min(cost, hold.left)
            hold.left -= take
            if cost - take > 1e-12:  # a request the call's estimate did not count (a damaged entry)
                self.check_budget(cost - take, model=model)
                self._hold(cost - take)
            return Reservation(self, cost, model)

    def _hold(self, cost: float | None) -> None:
        if cost:
            with _SESSION.lock:
                _SESSION.reserved[self.namespace] = _SESSION.reserved.get(self.namespace, 0.0) + cost

    def _unreserve(self, cost: float | None) -> None:
        _unreserve(self.namespace, cost)

    # -- recording --------------------------------------------------------------------------

    def record_paid(self, cost: float | None, *, model: str | None = None, request_id: str | None = None) -> None:
        """One request sent to fal and accepted: it will be billed (``cost`` None: price unknown)."""
        with _SESSION.lock:
            acc = _SESSION.paid.setdefault(self.namespace, [0.0, 0.0, 0.0])
            acc[1] += 1
            if cost is None:
                acc[2] += 1
            else:
                acc[0] += cost
        if self._index is not None:
            from ._index import IndexSetAside  # (loaded already: the index comes from it)

            try:
                try:
                    self._record_paid(cost, model, request_id)
                except IndexSetAside:  # the damaged index was set aside (and reported): record into the new one
                    self._record_paid(cost, model, request_id)
            except CacheError as exc:  # the request is paid and running: do not fail it over bookkeeping
                import warnings

                from ._index import CacheWarning

                warnings.warn(f"falnb: the spend of request {request_id} was not recorded: {exc.message}",
                              CacheWarning, stacklevel=3)

    def _record_paid(self, cost: float | None, model: str | None, request_id: str | None) -> None:
        assert self._index is not None
        with self._index.write() as c:
            c.execute("INSERT INTO ledger(ts, ns, kind, model, request_id, cost, unknown, pid) "
                      "VALUES(?, ?, 'paid', ?, ?, ?, ?, ?)",
                      (time.time(), self.namespace, model, request_id, cost, int(cost is None), os.getpid()))

    def record_saved(self, cost: float | None, *, model: str | None = None) -> None:
        """A cache hit: ``cost`` not spent.  Buffered: a hit does not write to disk."""
        with _SESSION.lock:
            acc = _SESSION.saved.setdefault(self.namespace, [0.0, 0.0])
            acc[0] += cost or 0.0
            acc[1] += 1
        if self._index is not None:
            self._index.add_saved(self.namespace, model, cost)

    # -- reading ----------------------------------------------------------------------------

    def session(self) -> Spend:
        """This process's spend and savings in this namespace."""
        return session_spend(self.namespace)

    def total(self) -> Spend:
        """Everything recorded in this cache directory for this namespace, all processes."""
        return totals(self._index, self.namespace) if self._index is not None else self.session()


def session_spend(namespace: str | None) -> Spend:
    """This process's spend and savings in one namespace (None: all of them)."""
    with _SESSION.lock:
        paid = [v for k, v in _SESSION.paid.items() if namespace is None or k == namespace]
        saved = [v for k, v in _SESSION.saved.items() if namespace is None or k == namespace]
    return Spend(paid=round(sum(p[0] for p in paid), 6), requests=int(sum(p[1] for p in paid)),
                 unknown=int(sum(p[2] for p in paid)), saved=round(sum(s[0] for s in saved), 6),
                 hits=int(sum(s[1] for s in saved)))


def totals(index: Index, namespace: str | None) -> Spend:
    """The ledger's sums for one namespace (None: all of them)."""
    where, args = ("WHERE ns=?", (namespace,)) if namespace is not None else ("", ())
    rows = index.conn().execute(
        f"SELECT kind, COALESCE(SUM(cost), 0), COALESCE(SUM(count), 0), COALESCE(SUM(unknown), 0) FROM ledger "
        f"{where} GROUP BY kind", args).fetchall()
    sums = {r[0]: r[1:] for r in rows}
    paid = sums.get("paid", (0.0, 0, 0))
    saved = sums.get("saved", (0.0, 0, 0))
    hits, more = index.pending_saved(namespace)
    return Spend(paid=round(float(paid[0]), 6), requests=int(paid[1]), unknown=int(paid[2]),
                 saved=round(float(saved[0]) + more, 6), hits=int(saved[1]) + hits)


class _Hold:
    """What one call's first request held for the whole call; the call's requests draw on it."""

    __slots__ = ("left", "namespace")

    def __init__(self, amount: float, namespace: str) -> None:
        self.left, self.namespace = amount, namespace


_HOLDS: dict[int, _Hold | BudgetExceededError] = {}


def _drop_hold(group_id: int) -> None:
    hold = _HOLDS.pop(group_id, None)
    if isinstance(hold, _Hold):
        _unreserve(hold.namespace, hold.left)


def _unreserve(namespace: str, cost: float | None) -> None:
    if not cost:
        return
    with _SESSION.lock:
        left = _SESSION.reserved.get(namespace, 0.0) - cost
        _SESSION.reserved[namespace] = left if left > 1e-12 else 0.0


_MEMORY: dict[str, Ledger] = {}


def session_ledger(namespace: str) -> Ledger:
    """The ledger of a client without a cache: session spend and session budget only."""
    led = _MEMORY.get(namespace)
    if led is None:
        led = _MEMORY[namespace] = Ledger(None, namespace)
    return led


def _amount(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{name} must be an amount in USD (a number, 0 or more), not {value!r}")
    return float(value)


def _suggest(need: float) -> str:
    step = 1.0 if need < 20 else 10.0
    return f"{(int(need / step) + 1) * step:g}"
