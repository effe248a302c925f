"""The emulated queue: FIFO under a concurrency limit, computed lazily from a clock (no threads).

Each request gets its start time when a slot frees.  Every read first calls :meth:`Queue.advance`,
which freezes the start of every request whose start has come, finishes (and bills) the ones
whose end has passed, and forgets results past their retention.  Cancelling a queued request
removes it, so the requests behind it move up; cancelling a running one ends it now, unless the
``running_cancel`` knob says the app ignores cancels (it then finishes, and is billed, as fal's own
end-to-end test shows for such apps).
"""

from __future__ import annotations

import heapq
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from ._knobs import Settings
from ._ledger import Ledger, LedgerEntry
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
    #: the tentative start of a waiting request (recomputed at every advance)
    eta: float | None = None

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


class Queue:
    def __init__(self, settings: Settings, ledger: Ledger, clock: Callable[[], float] | None = None) -> None:
        self.settings = settings
        self.ledger = ledger
        self.clock = clock or time.monotonic
        self.lock = threading.RLock()
        self._jobs: dict[str, Job] = {}

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
            self.ledger.record_submit()
            self.advance()

    def clear(self) -> None:
        with self.lock:
            self._jobs.clear()

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
            if job.start is not None:
                job.end = now  # the synthetic app honours the cancel signal at once
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
            return Snapshot("IN_QUEUE", self._position(job), job, now)

    def next_change(self, request_id: str) -> float:
        """Seconds until this request's status may next change: a start or an end anywhere in the
        queue (positions move up then), or its next log line while it runs."""
        with self.lock:
            now = self.advance()
            soonest = float("inf")
            for job in self._jobs.values():
                if job.finished is not None:
                    continue
                for t in (job.eta if job.start is None else None, job.end):
                    if t is not None and now < t < soonest:
                        soonest = t
            own = self._jobs.get(request_id)
            if own is not None and own.start is not None and own.finished is None:
                soonest = min(soonest, now + own.duration / 9)  # the log ticks (steps) while it runs
            return soonest - now

    def position_of(self, request_id: str) -> int:
        with self.lock:
            job = self._jobs.get(request_id)
            return self._position(job) if job is not None and job.start is None else 0

    def _position(self, job: Job) -> int:
        ahead = 0
        for other in self._jobs.values():
            if other is job:
                break
            if other.start is None and other.finished is None:
                ahead += 1
        return ahead

    def jobs(self) -> list[Job]:
        with self.lock:
            self.advance()
            return list(self._jobs.values())

    # -- the schedule -------------------------------------------------------------------

    def advance(self) -> float:
        """Bring every request up to the clock; returns the clock's reading."""
        with self.lock:
            now = self.clock()
            slots = [float("-inf")] * max(1, self.settings.concurrency)
            for job in self._jobs.values():
                if job.finished is not None and job.start is None:
                    continue  # cancelled or timed out while waiting: never held a slot
                if job.start is not None:
                    assert job.end is not None
                    heapq.heapreplace(slots, job.end)
                elif job.stopped == "cancelled":
                    self._finish(job, job.stopped_at or now)
                else:
                    start = max(job.submitted, slots[0])
                    if job.deadline is not None and start > job.deadline:
                        job.eta = None
                        if now >= job.deadline:
                            job.stopped, job.stopped_at = "timeout", job.deadline
                            self._finish(job, job.deadline)
                        continue
                    heapq.heapreplace(slots, start + job.duration)
                    job.eta = start
                    if start <= now:
                        job.start, job.end = start, start + job.duration
                if job.start is not None and job.finished is None and job.end is not None and job.end <= now:
                    self._finish(job, job.end)
            for rid in [r for r, j in self._jobs.items() if j.expires is not None and j.expires <= now]:
                del self._jobs[rid]
            return now

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

    def _result_size(self, job: Job) -> int:
        if job.outcome == "invalid":
            return len(json.dumps(job.errors))
        if job.plan is None:
            return 0
        if job.plan.sync_mode:
            # a data URI of a real picture: far above 10 KB except for tiny pictures
            return max(10_240, job.plan.width * job.plan.height // 8) * job.plan.images
        return 400 * job.plan.images + len(job.plan.prompt)
