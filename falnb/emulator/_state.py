"""The emulated queue: FIFO under a concurrency limit, computed lazily from a clock (no threads).

Each request gets its start time when a slot frees.  Every read first calls :meth:`Queue.advance`,
which starts every request whose start has come (in order, each at the moment its slot freed),
finishes (and bills) the ones whose end has passed, and forgets results past their retention.
Each of these touches only the requests concerned (the waiting line, a heap of the running ones by
end, heaps of deadlines and expiries): a read costs the same with 20,000 requests held as with 100.
Cancelling a queued request removes it, so the requests behind it move up; cancelling a running one
ends it now, unless the ``running_cancel`` knob says the app ignores cancels (it then finishes, and is
billed, as fal's own end-to-end test shows for such apps).
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from ._knobs import Settings
from ._ledger import Ledger, LedgerEntry
from ._line import WaitingLine
from ._outputs import Plan

__all__ = ["Job", "Outcome", "Queue", "Snapshot"]

#: how a request ends, decided at submit (fal runs the model; the emulator knows in advance)
Outcome = Literal["ok", "invalid", "infra_error"]
Phase = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]


@dataclass
class Job:
    request_id: str
    model_id: str
    #: ``owner/app`` (or ``workflows/owner/app``): the part of the model id its URLs carry
    app: str
    inputs: dict[str, Any]
    submitted: float
    submitted_wall: float
    duration: float
    outcome: Outcome
    plan: Plan | None = None
    #: 422 ``detail`` items when ``outcome == "invalid"``
    errors: list[dict[str, Any]] = field(default_factory=list)
    cost: float | None = None
    #: latest start time allowed by ``X-Fal-Request-Timeout``
    deadline: float | None = None
    start: float | None = None
    end: float | None = None
    #: "cancelled" (queued or running) or "timeout"; None when it ran to its end
    stopped: str | None = None
    #: the phase a cancelled request was in when the cancel took it (IN_QUEUE or IN_PROGRESS)
    cancelled_phase: str | None = None
    #: a cancel came while it ran and the app ignored it (``running_cancel="ignored"``): it finishes, billed
    cancel_ignored: bool = False
    stopped_at: float | None = None
    finished: float | None = None
    expires: float | None = None

    @property
    def input(self) -> dict[str, Any]:
        """The JSON body the request was submitted with."""
        return self.inputs


@dataclass(frozen=True)
class Snapshot:
    """A request's public state at one moment."""

    phase: Phase
    queue_position: int
    job: Job
    now: float


_INF = float("inf")


class Queue:
    def __init__(self, settings: Settings, ledger: Ledger, clock: Callable[[], float] | None = None) -> None:
        self.settings = settings
        self.ledger = ledger
        self.clock = clock or time.monotonic
        self.lock = threading.RLock()
        #: every request held, by id (until its result's retention ends)
        self._jobs: dict[str, Job] = {}
        #: ties in the heaps below go to the earlier push
        self._order = itertools.count()
        self._empty()

    def _empty(self) -> None:
        #: requests waiting for a slot, first come first
        self._waiting: WaitingLine[Job] = WaitingLine()
        #: (end, order, job) of the requests holding a slot
        self._running: list[tuple[float, int, Job]] = []
        #: (deadline, order, job) of requests sent with ``X-Fal-Request-Timeout`` (started ones are skipped)
        self._deadlines: list[tuple[float, int, Job]] = []
        #: (expires, order, request id) of finished requests
        self._expiry: list[tuple[float, int, str]] = []
        self._limit = max(1, self.settings.concurrency)
        #: when each of the account's slots frees (a min-heap): the latest ``limit`` ends of the requests
        #: started, so a request that waited takes the slot that freed first, at the moment it freed
        self._slots = [-_INF] * self._limit

    # -- time ---------------------------------------------------------------------------

    def wall(self, job: Job, t: float) -> float:
        return job.submitted_wall + (t - job.submitted)

    def iso(self, job: Job, t: float) -> str:
        return datetime.fromtimestamp(self.wall(job, t), tz=timezone.utc).isoformat()

    # -- changes ------------------------------------------------------------------------

    def add(self, job: Job) -> None:
        with self.lock:
            self.advance()
            self._jobs[job.request_id] = job
            self._waiting.append(job.request_id, job)
            if job.deadline is not None:
                if len(self._deadlines) > 2 * len(self._waiting) + 64:  # drop the entries of started requests
                    self._deadlines = [e for e in self._deadlines if e[2].request_id in self._waiting]
                    heapq.heapify(self._deadlines)
                heapq.heappush(self._deadlines, (job.deadline, next(self._order), job))
            self.ledger.record_submit()
            self.advance()

    def clear(self) -> None:
        with self.lock:
            self._jobs.clear()
            self._empty()

    def cancel(self, request_id: str) -> Literal["CANCELLATION_REQUESTED", "ALREADY_COMPLETED", "NOT_FOUND"]:
        with self.lock:
            now = self.advance()
            job = self._jobs.get(request_id)
            if job is None:
                return "NOT_FOUND"
            if job.finished is not None:
                return "ALREADY_COMPLETED"
            if job.start is not None and self.settings.running_cancel == "ignored":
                job.cancel_ignored = True  # fal forwards the signal; this app runs on
                return "CANCELLATION_REQUESTED"
            job.stopped, job.stopped_at = "cancelled", now
            job.cancelled_phase = "IN_QUEUE" if job.start is None else "IN_PROGRESS"
            if job.start is None:
                self._waiting.remove(request_id)  # the requests behind it move up
                self._finish(job, now)
            else:
                job.end = now  # the synthetic app honours the cancel signal at once: its slot frees now
                self._running = [(now if j is job else end, n, j) for end, n, j in self._running]
                heapq.heapify(self._running)
                # the slots are the latest `limit` ends of the others still running (all later than now, or a
                # request would be waiting no more).  Not "the slot holding its end": under a lowered limit
                # that slot may be another running request's (two equal ends), which a waiting one then took
                others = [end for end, _, j in self._running if j is not job]
                self._slots = heapq.nlargest(self._limit, others) + [now] * max(0, self._limit - len(others))
                heapq.heapify(self._slots)
            self.advance()
            return "CANCELLATION_REQUESTED"

    # -- reads --------------------------------------------------------------------------

    def get(self, request_id: str) -> Snapshot | None:
        with self.lock:
            now = self.advance()
            job = self._jobs.get(request_id)
            if job is None:
                return None
            if job.finished is not None:
                return Snapshot("COMPLETED", 0, job, now)
            if job.start is not None:
                return Snapshot("IN_PROGRESS", 0, job, now)
            return Snapshot("IN_QUEUE", self._waiting.ahead_of(request_id), job, now)

    def next_change(self, request_id: str) -> float:
        """Seconds until this request's status may next change: for a waiting one, the next slot to free
        (a request ahead then starts and its position moves) or deadline to pass; for a running one, its
        end or its next log line.  Other requests are not looked at."""
        with self.lock:
            now = self.advance()
            job = self._jobs.get(request_id)
            if job is None or job.finished is not None:
                return _INF
            if job.start is not None:
                assert job.end is not None
                return min(job.end, now + job.duration / 9) - now  # the log ticks (steps) while it runs
            soonest = self._running[0][0] if self._running else _INF
            if self._deadlines:
                soonest = min(soonest, self._deadlines[0][0])
            return soonest - now

    def position_of(self, request_id: str) -> int:
        with self.lock:
            return self._waiting.ahead_of(request_id)

    def jobs(self) -> list[Job]:
        with self.lock:
            self.advance()
            return list(self._jobs.values())

    # -- the schedule -------------------------------------------------------------------

    def advance(self) -> float:
        """Bring the queue up to the clock (in time order: each start when its slot frees, each end, each
        deadline); returns the clock's reading.  Costs the changes made, not the requests held."""
        with self.lock:
            now = self.clock()
            if max(1, self.settings.concurrency) != self._limit:
                self._resize(max(1, self.settings.concurrency))
            while (nxt := self._next_start()) is not None and nxt[1] <= now:
                job, start = nxt
                job.start, job.end = start, start + job.duration
                heapq.heapreplace(self._slots, job.end)  # it takes the slot that freed first
                self._waiting.remove(job.request_id)
                heapq.heappush(self._running, (job.end, next(self._order), job))
            while self._running and self._running[0][0] <= now:
                end, _, done = heapq.heappop(self._running)
                self._finish(done, end)
            while self._deadlines and self._deadlines[0][0] <= now:
                deadline, _, job = heapq.heappop(self._deadlines)
                if job.request_id in self._waiting and self._jobs.get(job.request_id) is job:
                    self._waiting.remove(job.request_id)  # its slot could not free before its deadline
                    job.stopped, job.stopped_at = "timeout", deadline
                    self._finish(job, deadline)
            while self._expiry and self._expiry[0][0] <= now:
                _, _, rid = heapq.heappop(self._expiry)
                gone = self._jobs.get(rid)
                if gone is not None and gone.expires is not None and gone.expires <= now:
                    del self._jobs[rid]
            return now

    def _next_start(self) -> tuple[Job, float] | None:
        """The first waiting request that can start before its deadline, and when (its slot's freeing).
        One that cannot keeps its place in the line (a cancel may yet free a slot in time)."""
        free = self._slots[0]
        for job in self._waiting:
            start = max(job.submitted, free)
            if job.deadline is None or start <= job.deadline:
                return job, start
        return None

    def _resize(self, limit: int) -> None:
        """The concurrency knob changed: the slots are the latest ``limit`` ends again (a rare knob change
        looks at every request held; no read does)."""
        self._limit, self._slots = limit, [-_INF] * limit
        for job in self._jobs.values():
            if job.start is not None and job.end is not None:
                heapq.heappushpop(self._slots, job.end)

    def _finish(self, job: Job, at: float) -> None:
        job.finished = at
        billed = job.stopped is None and (
            job.outcome == "ok" or (job.outcome == "invalid" and self.settings.bill_validation_errors))
        if billed:
            images = job.plan.images if job.plan is not None and job.outcome == "ok" else 0
            self.ledger.bill(LedgerEntry(job.request_id, job.model_id, images,
                                         job.cost,
                                         self.wall(job, at), 200 if job.outcome == "ok" else 422))
        large = self._result_size(job) >= self.settings.large_result_bytes
        job.expires = at + (self.settings.large_retention if large else self.settings.retention)
        heapq.heappush(self._expiry, (job.expires, next(self._order), job.request_id))

    def _result_size(self, job: Job) -> int:
        if job.outcome == "invalid":
            return len(json.dumps(job.errors))
        if job.plan is None:
            return 0
        if job.plan.sync_mode:
            # a data URI of a real picture: far above 10 KB except for tiny pictures
            return max(10_240, job.plan.width * job.plan.height // 8) * job.plan.images
        return 400 * job.plan.images + len(job.plan.prompt)
