"""The life of one fal request: submit (or re-attach to the journaled one), wait, result, and what a
stop does to it.

A stop (Ctrl-C, ``Run.cancel``, the first error of ``stop_on_error``, a timeout) cancels the task that
runs it.  Whatever fal may hold is then dealt with before the task ends:

* a submit still being made: if its bytes certainly never left (:class:`~falnb.fal._sending.SendTrace`),
  it is abandoned and the journal keeps no trace of it; if they may have left, its answer is awaited
  (at most :data:`SUBMIT_GRACE`) and the request it names is cancelled by id, so nothing runs on
  unseen (and billed) after the call has stopped;
* a request queued or running: fal's cancel goes out, and the journal records fal's answer.

The next run of the same request looks at a request an earlier run cancelled before it submits anew: fal
only *signals* a running app, and an app that ignores the signal finishes and bills (fal's own end-to-end
test ``test_app_cancellation``: "normal app should just ignore the cancellation").  So a cancelled request
still reported running is cancelled again and waited for, at most :data:`CANCELLED_WAIT`: its pictures if
it completes, a new submit if it ends without any (or never reports an end, which fal's docs leave open).
One still reported queued is not waited for: fal removes a queued request it is told to cancel.

``notes`` (per request index) says which of these happened, for the words of
:func:`falnb._run.interrupt_text`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import httpx

from ._exceptions import FalError, FalnbError, RequestNotFoundError, RequestTimeoutError, SubmitUncertainError
from .fal._loop import within
from .fal._queue import QueueClient, Status, Submitted
from .fal._sending import SendTrace
from .request._plan import FalRequest, Plan
from .results._image import Image
from .results._progress import ProgressTracker

__all__ = ["CANCELLED_WAIT", "CANCEL_TIMEOUT", "SUBMIT_GRACE", "Part", "RequestRun", "Stopping", "through_cancels"]

T = TypeVar("T")

#: how long a stopped call waits for the answer of a submit that may have reached fal, to cancel it by id
SUBMIT_GRACE = 4.0
#: how long fal's cancel may take
CANCEL_TIMEOUT = 5.0
#: how long a run waits for a request an earlier run cancelled that fal still reports running, before it
#: submits anew (within the call's own timeout): longer than a generation of the catalogued models
CANCELLED_WAIT = 60.0
#: fal's answers to a cancel, as ``notes`` records them
_NOTE_OF_ANSWER = {"CANCELLATION_REQUESTED": "cancelled", "OK": "cancelled", "ALREADY_COMPLETED": "completed",
                   "NOT_FOUND": "gone", "": "no-answer"}


class Part:
    """What one request gave: its pictures, fal's request id and response, and whether it was cached."""

    __slots__ = ("billed", "cached", "images", "made", "request_id", "response", "saved")

    def __init__(self, images: list[Image], request_id: str | None, response: dict[str, Any],
                 cached: bool = False, saved: float = 0.0, made: float | None = None) -> None:
        self.images, self.request_id, self.response, self.cached, self.saved = (
            images, request_id, dict(response), cached, saved)
        # when fal made these pictures (a hit: when its entry was stored); fal's URLs expire from then
        self.made = time.time() if not made else made
        #: what fal billed for it in USD (a hit: for the request that made it), None when unknown
        self.billed: float | None = None


class Stopping:
    """How patient a stop is with a submit under way: :data:`SUBMIT_GRACE` for a stop (Ctrl-C, a cancel,
    the first error), none for the call's own timeout (the caller asked for the call to end by then; a
    submit unanswered at that moment is reported as such)."""

    __slots__ = ("grace",)

    def __init__(self) -> None:
        self.grace = SUBMIT_GRACE


class RequestRun:
    """Carries one request of a plan through fal's queue (see the module docstring)."""

    def __init__(self, queue: QueueClient, plan: Plan, index: int, req: FalRequest, slot: Any,
                 tracker: ProgressTracker, reservation: Any, notes: dict[int, str],
                 stopping: Stopping | None = None) -> None:
        self.queue, self.plan, self.index, self.req = queue, plan, index, req
        self.slot, self.tracker, self.reservation, self.notes = slot, tracker, reservation, notes
        self.stopping = stopping or Stopping()
        #: uploads the request's input pictures (``falnb.fal._upload.Uploader``), set by the engine
        self.uploader: Any = None

    async def result(self, timeout: float | None) -> tuple[Submitted, dict[str, Any]]:
        """Submit (or re-attach), wait, and read fal's result: ``(the request, its output)``."""
        slot, index, queue = self.slot, self.index, self.queue
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            reattached = slot is not None and slot.request_id is not None
            if reattached:
                sub = slot.resume(queue, self.req.model)  # paid already, by the run that submitted it
                if slot.cancelled:
                    # (named while looked at and waited for: a stop then says fal may still bill it)
                    self.tracker.update(index, "queued", request_id=sub.request_id)
                    looked = await self._after_our_cancel(sub, deadline, timeout)
                    if looked is None:
                        slot.forget()  # fal holds no pictures for it: submitting anew is not paying twice
                        continue
                    return sub, looked
            else:
                sub = await self._submit()
            self.tracker.update(index, "queued", request_id=sub.request_id)
            try:
                remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
                final = await queue.wait(sub, self._on_status, remaining, bound=timeout)
                if final.error and reattached:
                    slot.forget()  # the journaled request ended without pictures (cancelled, failed): ask anew
                    continue
                if final.error and slot is not None:
                    slot.failed = True  # fal says it failed for good: the journal will not re-attach to it
                response = await queue.result(sub, retry=not final.error)
            except RequestNotFoundError:
                if not reattached:
                    raise
                slot.forget()  # fal no longer holds it: submitting anew is not paying twice
                continue
            except asyncio.CancelledError:
                await through_cancels(self._cancel(sub))
                raise
            if slot is not None:
                slot.completed = True  # fal holds the result now: worth re-attaching to if we stop
            return sub, response

    def _on_status(self, st: Status) -> None:
        state = "queued" if st.status == "IN_QUEUE" else "running" if st.status == "IN_PROGRESS" else "done"
        self.tracker.update(self.index, "downloading" if state == "done" else state, position=st.queue_position,
                            log=st.logs[-1] if st.logs else None)

    # -- submitting, and stopping while submitting -------------------------------------------------

    async def _submit(self) -> Submitted:
        slot = self.slot
        self.tracker.update(self.index, "submitting")
        trace = SendTrace()
        body = self.req.input
        if self.req.pictures and self.uploader is not None:
            # pictures go up before the submit, never after: a paid request never lacks its input
            body = {**body, **await self.uploader.resolve(self.req.pictures, self.req.model)}
        task = asyncio.ensure_future(self.queue.submit(
            self.req.model, body, self.plan.headers,
            on_sending=slot.record_sending if slot is not None else None, trace=trace))
        try:
            sub = await asyncio.shield(task)
        except asyncio.CancelledError:
            await through_cancels(self._stopped_while_submitting(task, trace))
            raise
        except SubmitUncertainError:  # sent, answer lost (or no usable id): fal may have queued it
            self.may_be_billed()
            raise
        self._accepted(sub)
        return sub

    def may_be_billed(self) -> None:
        """This request's submit may have reached fal without falnb learning its id (its answer lost, or the
        call stopped while it was on its way): fal may bill it, and nobody can tell falnb later whether it
        did, so its estimate counts as spent, never handed back to the budgets (simulation finding S4)."""
        self.notes[self.index] = "lost"
        if self.reservation is not None:
            self.reservation.pay(None)

    def _accepted(self, sub: Submitted) -> None:
        if self.slot is not None:
            self.slot.record(sub)  # journaled before polling: a restart re-attaches instead of paying again
        if self.reservation is not None:
            self.reservation.pay(sub.request_id)
        self.tracker.update(self.index, "queued", request_id=sub.request_id)

    async def _stopped_while_submitting(self, task: asyncio.Future[Submitted], trace: SendTrace) -> None:
        """The call stopped while its submit was under way: abandon a submit that never left; let one that
        may have reached fal answer, then cancel the request it names."""
        trace.stopped = True  # a submit answered 429 meanwhile ends instead of retrying (finding S3)
        if not task.done() and not trace.may_have_left:
            task.cancel()  # still connecting, or not yet handed over: stop it before it sends
            # and let it end (at its next step), also under a stop with no grace (the call's timeout), which
            # would otherwise report it as lost, and leave it journaled uncertain, while nothing left
            await asyncio.wait({task}, timeout=CANCEL_TIMEOUT)
        if self.stopping.grace > 0 and not task.done():
            await asyncio.wait({task}, timeout=self.stopping.grace)
        if not task.done():
            task.cancel()
            task.add_done_callback(_retrieve)
            self.may_be_billed()  # the journal keeps "sending": uncertain
            return
        if task.cancelled() or task.exception() is not None:
            exc = None if task.cancelled() else task.exception()
            if isinstance(exc, SubmitUncertainError) or (exc is None and trace.may_have_left):
                self.may_be_billed()
            else:  # never left, or fal answered with an error: fal holds nothing
                self.notes[self.index] = "unsent"
                if self.slot is not None:
                    self.slot.record_unsent()
                self.tracker.update(self.index, "checking")
            return
        sub = task.result()
        self._accepted(sub)
        await self._cancel(sub)

    # -- cancelling ----------------------------------------------------------------------------------

    async def _cancel(self, sub: Submitted) -> None:
        """fal's cancel for ``sub`` (the call stopped), and what fal answered, in the journal and ``notes``."""
        answer = await self._cancel_answer(sub)
        self.notes[self.index] = _NOTE_OF_ANSWER.get(answer, "no-answer")
        if self.slot is not None:
            self.slot.record_cancelled(answer)

    async def _cancel_answer(self, sub: Submitted) -> str:
        """fal's word for our cancel of ``sub`` ("" when none came)."""
        try:
            return await within(self.queue.cancel(sub), CANCEL_TIMEOUT)
        except (FalnbError, asyncio.TimeoutError, httpx.HTTPError):
            return ""

    async def _after_our_cancel(self, sub: Submitted, deadline: float | None,
                                timeout: float | None) -> dict[str, Any] | None:
        """The output of a request an earlier run cancelled, if fal completed it (or completes it within
        :data:`CANCELLED_WAIT`); else None.  fal may report a cancelled request as a status that never
        completes, COMPLETED with an error, or a 4xx result: all mean "no pictures"."""
        try:
            st = await self.queue.status(sub)
            final: Status | None = st
            if not st.done and await self._cancel_answer(sub) != "ALREADY_COMPLETED":
                # (cancelled again, should it stop after all.)  Still queued: fal removes a queued request it
                # is told to cancel, so it will never run; running: it may finish and bill, so it is awaited
                final = await self._outlast(sub, deadline, timeout) if st.status == "IN_PROGRESS" else None
            if final is None or final.error:
                return None
            return await self.queue.result(sub)
        except FalError as exc:
            if exc.status_code is not None and 400 <= exc.status_code < 500:
                return None
            raise

    async def _outlast(self, sub: Submitted, deadline: float | None, timeout: float | None) -> Status | None:
        """A cancelled request fal still reports running, waited for: its final status, or None after
        :data:`CANCELLED_WAIT` (the call's own timeout, when it ends first, is raised as such)."""
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= CANCELLED_WAIT:
            return await self.queue.wait(sub, self._on_status, max(0.001, left), bound=timeout)
        try:
            return await self.queue.wait(sub, self._on_status, CANCELLED_WAIT)
        except RequestTimeoutError:
            return None


async def through_cancels(cleanup: Awaitable[T]) -> T:
    """Await ``cleanup`` to its end even if this task is cancelled again meanwhile (a second Ctrl-C, a
    second Cancel click): a stop's cleanup (fal's cancel) must not be abandoned half-way.  Every cleanup
    passed here is bounded in time."""
    fut = asyncio.ensure_future(cleanup)
    while True:
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            if fut.cancelled():
                raise


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()

