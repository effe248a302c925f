"""A claim of the in-flight journal as its holder sees it (:class:`Slot`), and what the row keeps when
the claim ends (:func:`leave_action`).  :mod:`._journal` makes the claims."""

from __future__ import annotations

import asyncio
import os
import time
import warnings
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from .._exceptions import (
    AuthenticationError,
    BudgetExceededError,
    CacheError,
    ConfigError,
    FalError,
    FalServerError,
    InputError,
    RateLimitError,
    SubmitUncertainError,
    TransportError,
)
from ..fal._queue import QueueClient, Submitted
from ._index import CacheWarning, Index, Reported

if TYPE_CHECKING:
    from ._entry import CacheEntry

__all__ = ["Row", "Slot", "leave_action", "warn_no_journal"]


class Row(Protocol):
    """Where a claimed journal row lives: its index and its (namespace, key)."""

    index: Index
    namespace: str
    key: str


class Slot:
    """What ``inflight`` hands the caller: a stored entry, or a claim (maybe with a request id)."""

    def __init__(self, owner: Row | None, entry: CacheEntry | None = None, request_id: str | None = None,
                 urls: tuple[str, str, str] | None = None, cancelled: bool = False) -> None:
        self._owner = owner
        self.entry = entry
        self.request_id = request_id
        self._urls = urls
        #: the journaled request was cancelled by falnb: take its pictures only if fal completed it anyway
        self.cancelled = cancelled
        #: fal finished the request and its result was read: worth re-attaching to if we stop now
        self.completed = False
        #: fal's answer to our cancel, if we sent one
        self.cancel_answer: str | None = None
        #: fal finished the request with an error: nothing to re-attach to
        self.failed = False

    def __repr__(self) -> str:
        return f"<falnb journal slot request_id={self.request_id!r} entry={self.entry is not None}>"

    def resume(self, queue: QueueClient, model: str) -> Submitted:
        """The journaled request, with the URLs fal gave when they point at the same queue host."""
        assert self.request_id is not None
        built = queue.handle(model, self.request_id)
        if self._urls and all(_same_host(u, built.status_url) for u in self._urls):
            return Submitted(model, self.request_id, *self._urls)
        return built

    def record_sending(self) -> None:
        """Right before a submit POST: if we die now, the next run knows a submit may have gone out."""
        self._update("state='sending', sent=?, updated=?", (time.time(), time.time()))

    def record_unsent(self) -> None:
        """The submit certainly never left this machine: no trace of a send remains."""
        self._update("state='claimed', sent=NULL, updated=?", (time.time(),))

    def record_cancelled(self, answer: str) -> None:
        """fal's answer to our cancel of the journaled request.  Taken (``CANCELLATION_REQUESTED``,
        ``OK``): the row says so, and a re-run submits anew unless fal completed it anyway."""
        self.cancel_answer = answer
        if answer in _CANCEL_TAKEN and self.request_id is not None:
            self.cancelled = True
            self._update("state='cancelled', updated=?", (time.time(),))

    def record(self, sub: Submitted) -> None:
        """Right after fal accepted the submit, before polling: the id a restart re-attaches to."""
        self.request_id = sub.request_id
        self._urls = (sub.status_url, sub.response_url, sub.cancel_url)
        self._update("state='submitted', request_id=?, status_url=?, response_url=?, cancel_url=?, updated=?",
                     (sub.request_id, sub.status_url, sub.response_url, sub.cancel_url, time.time()))

    def forget(self) -> None:
        """fal no longer holds the journaled request (404), or holds no pictures for it (cancelled): drop
        its id, keep the claim, submit anew."""
        self.request_id, self._urls, self.completed, self.cancelled = None, None, False, False
        self._update("state='claimed', request_id=NULL, status_url=NULL, response_url=NULL, cancel_url=NULL, "
                     "sent=NULL, updated=?", (time.time(),))

    def _update(self, assignments: str, args: tuple[Any, ...]) -> None:
        owner = self._owner
        if owner is None:
            return
        try:
            with owner.index.write() as c:
                c.execute(f"UPDATE journal SET {assignments} WHERE ns=? AND key=? AND pid=?",
                          (*args, owner.namespace, owner.key, os.getpid()))
        except CacheError as exc:
            warn_no_journal(exc)


def leave_action(state: str, request_id: str | None, slot: Slot, exc: BaseException | None) -> str:
    """What the journal keeps when a claim ends without a stored entry: release / uncertain / cancelled /
    delete."""
    if request_id is None:
        if state == "sending" and exc is not None and not _answered_or_unsent(exc):
            return "uncertain"  # the POST may have reached fal: never resubmit silently
        return "delete"
    if slot.failed:
        return "delete"
    if exc is None or slot.completed or state == "cancelled":
        return "release"  # a result fal may still hold (a cancelled one: looked at once): the next run re-attaches
    if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
        if slot.cancelled:
            return "cancelled"  # fal took our cancel: the next run looks once, then submits anew
        # our cancel got no answer (""), or fal had finished it: the next run re-attaches; fal does not know it
        return "release" if slot.cancel_answer in (None, "", "ALREADY_COMPLETED") else "delete"
    if isinstance(exc, FalError) and not isinstance(exc, (FalServerError, RateLimitError, AuthenticationError)):
        return "delete"  # fal answered about this request for good (a 4xx: refused, unknown)
    return "release"  # a timeout, a lost connection, a 5xx: re-running re-attaches


#: fal's words for a cancel it took
_CANCEL_TAKEN = ("CANCELLATION_REQUESTED", "OK")


def _answered_or_unsent(exc: BaseException) -> bool:
    """Errors after which a submit certainly did not queue anything unknown to us."""
    if isinstance(exc, SubmitUncertainError):
        return False
    return isinstance(exc, (FalError, TransportError, InputError, ConfigError, BudgetExceededError))


def warn_no_journal(exc: CacheError) -> None:
    if isinstance(exc, Reported):
        return  # a CacheWarning said why already (the index is read-only, or cannot be used right now)
    warnings.warn(f"falnb: {exc.message}; going on without the in-flight journal", CacheWarning, stacklevel=3)


def _same_host(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.netloc) == (pb.scheme, pb.netloc)
