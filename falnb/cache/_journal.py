"""The in-flight journal: one submit per request across kernels and processes, and re-attaching.

One journal row per (namespace, key) in the cache index, with a state:

``claimed``    a process owns the request and has not sent it yet;
``sending``    its submit POST is on the wire (the answer, and so the request id, is not known);
``submitted``  fal accepted it: ``request_id`` and fal's URLs are recorded, *before* any polling;
``uncertain``  a submit was sent but its answer was lost (or the process died while sending);
``cancelled``  falnb cancelled its request (fal took the cancel): ``request_id`` is kept;
``done``       the entry is stored.

``async with cache.inflight(key, model, refresh=...) as slot`` claims the row in a
``BEGIN IMMEDIATE`` transaction:

* an entry is stored already (and no ``refresh``): ``slot.entry`` is it, nothing is sent;
* a live owner (this process, or a process alive on this host, heartbeat fresh) holds the row:
  wait, polling the index, and take its entry when it stores one;
* a ``submitted`` row whose owner is gone (killed, restarted, interrupted after fal accepted):
  ``slot.request_id`` is its id: the caller re-attaches (status, then result) instead of paying
  again.  If fal no longer holds it (404), the caller calls ``slot.forget()`` and submits anew:
  that is not paying twice, fal has dropped it.  ``refresh=True`` re-attaches too: a picture paid
  for and never delivered is as new as a new one;
* a ``cancelled`` row: ``slot.cancelled`` is set.  fal's docs leave open how a cancelled request
  reports (a status that never completes, COMPLETED with an error, a 4xx result): the caller looks
  once, takes the pictures if fal completed it anyway, and otherwise forgets it and submits anew;
* a ``sending``/``uncertain`` row whose owner is gone, with no request id: the submit may have
  reached fal, and fal has no way to find it by input.  Within fal's result retention (an hour)
  this raises :class:`SubmitUncertainError` (check fal's dashboard, or ``refresh=True`` to submit
  anew); after that hour, no answer could be re-attached any more, so falnb warns and submits anew.

On leaving the block: a stored entry marks the row ``done``; a known request id that may still
give pictures is kept (owner released) so the next run re-attaches; a request fal answered
definitively (4xx) is removed; a submit that certainly never left (``slot.record_unsent()``) leaves
nothing behind.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._exceptions import (
    CacheError,
    RequestTimeoutError,
    SubmitUncertainError,
)
from ..fal._sending import resubmit_hints
from ._index import CacheWarning, Index, IndexSetAside
from ._owners import HOST, own_start, pid_alive
from ._slot import Slot, leave_action, warn_no_journal

if TYPE_CHECKING:
    from types import TracebackType

    from ._entry import CacheEntry

__all__ = ["HEARTBEAT", "RESULT_RETENTION", "InFlight", "Slot"]

#: fal keeps a result for an hour at most: past that, an unanswered submit can no longer be re-attached
RESULT_RETENTION = 3600.0
#: an owner refreshes its row this often; a row not refreshed for STALE is no longer owned
HEARTBEAT = 10.0
STALE = 90.0

#: (index path, namespace, key) claimed by a task of this process
_CLAIMED: set[tuple[str, str, str]] = set()
_CLAIMED_LOCK = threading.Lock()
#: damaged journal rows reported in this process: (index path, namespace, key)
_REPORTED: set[tuple[str, str, str]] = set()


class InFlight:
    """The async context manager behind :meth:`ResponseCache.inflight`."""

    def __init__(self, index: Index, namespace: str, key: str, model: str, *,
                 lookup: Callable[[str], CacheEntry | None], where: str, refresh: bool = False,
                 timeout: float | None = None, poll: float = 0.25) -> None:
        self.index, self.namespace, self.key, self.model = index, namespace, key, model
        self._lookup, self._where = lookup, where
        self.refresh, self.timeout, self._poll = refresh, timeout, poll
        self._token = (str(index.path), namespace, key)
        self._slot: Slot | None = None
        self._beat: asyncio.Task[None] | None = None
        self._ignore_entry = False

    # -- entering: claim, or wait for the owner ------------------------------------------------

    async def __aenter__(self) -> Slot:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        delay = 0.02
        set_aside = False
        while True:
            try:
                outcome = self._try_claim()
            except IndexSetAside:  # the damaged index was set aside (and reported): claim in the new one,
                if not set_aside:  # where the journal rows that could be read were copied
                    set_aside = True
                    continue
                return Slot(None)
            except CacheError as exc:  # the index is unusable: go on without a journal rather than fail
                warn_no_journal(exc)
                return Slot(None)
            if isinstance(outcome, Slot):
                if outcome._owner is not None:
                    self._slot = outcome
                    self._beat = asyncio.ensure_future(self._heartbeat())
                return outcome
            if outcome == "again":  # a damaged entry was removed: claim now (and never loop on one that was not)
                self._ignore_entry = True
                continue
            if deadline is not None and time.monotonic() > deadline:
                raise RequestTimeoutError(
                    f"another process ({outcome}) is generating this same {self.model} request; waited "
                    f"{self.timeout:g} s for it", model=self.model,
                    hint="Run the call again to keep waiting for it (it will not be paid twice).")
            await asyncio.sleep(delay)
            delay = min(self._poll, delay * 1.5)

    def _try_claim(self) -> Slot | str:
        """One transaction: a Slot (entry or claim), "again" (a damaged entry was removed), or the
        description of a live owner to wait for."""
        ns, key = self.namespace, self.key
        now = time.time()
        uncertain: SubmitUncertainError | None = None
        with self.index.write() as c:
            if not (self.refresh or self._ignore_entry) and c.execute("SELECT 1 FROM entries WHERE ns=? AND key=?",
                                              (ns, key)).fetchone() is not None:
                has_entry = True
            else:
                has_entry = False
                row = c.execute("SELECT state, request_id, status_url, response_url, cancel_url, pid, pstart, host, "
                                "started, sent, updated FROM journal WHERE ns=? AND key=?", (ns, key)).fetchone()
                rid: str | None = None
                urls: tuple[str, str, str] | None = None
                cancelled = False
                if row is not None and row[0] != "done":
                    state, rid, s_url, r_url, c_url, pid, pstart, host, _started, sent, updated = self._checked(
                        c, row, now)
                    if self._alive(pid, pstart, host, updated):
                        return f"pid {pid} on {host}, {state}"
                    if rid is None and state in ("sending", "uncertain"):
                        uncertain = self._stale_send(now - (sent or updated), pid)
                    elif s_url and r_url and c_url:
                        urls = (s_url, r_url, c_url)
                    cancelled = rid is not None and state == "cancelled"
                if uncertain is None:
                    pid_start = own_start()
                    new_state = "cancelled" if cancelled else "submitted" if rid else "claimed"
                    c.execute("INSERT OR REPLACE INTO journal(ns, key, model, state, request_id, status_url, "
                              "response_url, cancel_url, pid, pstart, host, started, sent, updated) "
                              "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                              (ns, key, self.model, new_state, rid,
                               *(urls or (None, None, None)), os.getpid(), pid_start, HOST, now, now))
                    with _CLAIMED_LOCK:
                        _CLAIMED.add(self._token)
                    return Slot(self, request_id=rid, urls=urls, cancelled=cancelled)
        if uncertain is not None:
            raise uncertain  # (after the commit: a damaged row's repair is kept)
        if has_entry:
            entry = self._lookup(key)
            return Slot(None, entry=entry) if entry is not None else "again"
        return "again"  # pragma: no cover

    def _checked(self, c: Any, row: tuple[Any, ...], now: float) -> tuple[Any, ...]:
        """The journal row with typed fields.  A damaged row (garbage where a pid, a time or a request
        id belongs) is reported once and repaired in this transaction, never in a way that pays twice:

        * a pid that is not a number: no owner can hold the row (owners update it ``WHERE pid=`` their
          own pid), so it is released (0);
        * a time that is not a number: now, so a live owner elsewhere still has its full STALE delay,
          and a send of unknown age counts as recent (uncertain: not resubmitted for an hour);
        * a request id that is not text: the submit went out and its id cannot be read, so the row
          becomes ``uncertain``.  A readable request id is kept: the caller re-attaches to it."""
        state, rid, s_url, r_url, c_url, pid, pstart, host, started, sent, updated = row
        bad: list[str] = []
        pid_n = _number(pid, int)
        if pid_n is None:
            bad.append(f"pid {pid!r}")
            pid_n = 0
        upd = _number(updated, float)
        if upd is None:
            bad.append(f"updated {updated!r}")
            upd = now
        snt = None if sent is None else _number(sent, float)
        if sent is not None and snt is None:
            bad.append(f"sent {sent!r}")
        if rid is not None and (not isinstance(rid, str) or not rid):
            bad.append(f"request id {rid!r}")
            rid = None
            if state in ("sending", "submitted"):
                state = "uncertain"
        urls = [u if isinstance(u, str) else None for u in (s_url, r_url, c_url)]
        host = host if isinstance(host, str) else ""
        pstart = pstart if isinstance(pstart, str) else None
        if bad:
            ns, key = self.namespace, self.key
            c.execute("UPDATE journal SET state=?, request_id=?, status_url=?, response_url=?, cancel_url=?, pid=?, "
                      "pstart=?, host=?, sent=?, updated=? WHERE ns=? AND key=?",
                      (state, rid, *urls, pid_n, pstart, host, snt, upd, ns, key))
            token = (str(self.index.path), ns, key)
            with _CLAIMED_LOCK:
                first = token not in _REPORTED
                _REPORTED.add(token)
            if first:
                then = (f"falnb re-attaches to its request {rid}" if rid else
                        "its submit may have reached fal: it is treated as uncertain" if state == "uncertain" else
                        "it was released")
                warnings.warn(f"falnb: the in-flight journal row of this {self.model} request in "
                              f"{self._where} was damaged ({', '.join(bad)}); it was repaired and {then}.",
                              CacheWarning, stacklevel=5)
        return state, rid, *urls, pid_n, pstart, host, started, snt, upd

    def _alive(self, pid: int, pstart: str | None, host: str, updated: float) -> bool:
        if not pid:
            return False  # released by its owner
        if pid == os.getpid() and host == HOST:
            with _CLAIMED_LOCK:
                return self._token in _CLAIMED  # a task of ours (otherwise: a row we left, or a reused pid)
        if time.time() - updated > STALE:
            return False  # no heartbeat: dead, hung, or another machine that stopped
        return host != HOST or pid_alive(pid, pstart)

    def _stale_send(self, age: float, pid: int) -> SubmitUncertainError | None:
        """A submit went out (or was going out) and its answer never arrived: the error to raise (after
        the transaction commits), or None to submit anew."""
        if self.refresh:
            return None
        ago = _ago(age)
        who = "an earlier run" + (f" (pid {pid})" if pid else "")
        if age < RESULT_RETENTION:
            later = f" After {int(RESULT_RETENTION // 60)} min falnb submits anew by itself."
            hint, hints = resubmit_hints("Check https://fal.ai/dashboard/requests;")
            return SubmitUncertainError(
                f"{who} sent this same {self.model} request to fal {ago} and never learned fal's answer: "
                "fal may have queued it, and will bill it if it completed. falnb did not send it again",
                model=self.model, hint=hint + later, hints={k: v + later for k, v in hints.items()})
        warnings.warn(f"falnb: {who} sent this {self.model} request {ago} and never learned fal's answer; "
                      "fal no longer holds a result that old, so falnb submits it anew (the first may have been "
                      "billed too).", CacheWarning, stacklevel=5)
        return None

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                self._update_row("updated=?", (time.time(),))
            except CacheError:  # pragma: no cover - the next beat retries
                pass

    def _update_row(self, assignments: str, args: tuple[Any, ...]) -> None:
        with self.index.write() as c:
            c.execute(f"UPDATE journal SET {assignments} WHERE ns=? AND key=? AND pid=? AND state != 'done'",
                      (*args, self.namespace, self.key, os.getpid()))

    # -- leaving: done, keep for re-attaching, uncertain, or drop ------------------------------

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        slot = self._slot
        if slot is None:
            return
        if self._beat is not None:
            self._beat.cancel()
        with _CLAIMED_LOCK:
            _CLAIMED.discard(self._token)
        try:
            self._leave_row(slot, exc)
        except CacheError as err:
            warn_no_journal(err)

    def _leave_row(self, slot: Slot, exc: BaseException | None) -> None:
        with self.index.write() as c:
            row = c.execute("SELECT state, request_id FROM journal WHERE ns=? AND key=? AND pid=?",
                            (self.namespace, self.key, os.getpid())).fetchone()
            if row is None or row[0] == "done":
                return
            action = leave_action(row[0], row[1], slot, exc)
            args = (self.namespace, self.key, os.getpid())
            if action == "delete":
                c.execute("DELETE FROM journal WHERE ns=? AND key=? AND pid=?", args)
            else:
                state = action if action in ("uncertain", "cancelled") else row[0]
                c.execute("UPDATE journal SET state=?, pid=0, updated=? WHERE ns=? AND key=? AND pid=?",
                          (state, time.time(), *args))


def _ago(age: float) -> str:
    """How long ago, for a message: ``3 s ago``, ``2 min ago``, ``1 h ago``."""
    age = max(0.0, age)
    if age < 90:
        return f"{max(1, round(age))} s ago"
    if age < 5400:
        return f"{round(age / 60)} min ago"
    return f"{round(age / 3600)} h ago"


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    """``value`` as an int or a float, or None when it is not a number (a damaged row)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if kind is int:
        return int(value) if value == int(value) else None
    return float(value)


def _after_fork_in_child() -> None:
    """A forked child owns none of its parent's claims (its rows name the parent's pid, alive or not)."""
    global _CLAIMED_LOCK
    _CLAIMED_LOCK = threading.Lock()  # it may have been held by another thread of the parent at the fork
    _CLAIMED.clear()


if hasattr(os, "register_at_fork"):  # not on Windows (no fork there)
    os.register_at_fork(after_in_child=_after_fork_in_child)
