"""The emulator's queue does O(1) work per request (issue 15 item 4) and schedules as before.

1. A status, a stream wake-up, a queue position, a submit and a cancel never walk the requests held:
   the held-requests table refuses to be iterated during those calls (the old queue walked it on every
   read).  The figures (status GET with 100 and 20,000 held, 20,000 submits) are in ``python -m bench``.
2. The incremental schedule equals a from-scratch one: a reference written here recomputes every
   request's start from the whole history at each step (FIFO under the limit, a request that cannot start
   before its ``X-Fal-Request-Timeout`` skipped and timed out at its deadline, cancels, lowered and
   raised limits, retention), and Hypothesis drives both with the same operations.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import example, given, settings
from hypothesis import strategies as st

from falnb.emulator import Emulator
from falnb.emulator._knobs import Settings
from falnb.emulator._ledger import Ledger
from falnb.emulator._state import Job, Queue


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class NoWalk(dict[str, Any]):
    """A dict that may be indexed but not walked while ``armed``."""

    armed = False

    def _refuse(self) -> None:
        if self.armed:
            raise AssertionError("the queue walked every request it holds")

    def __iter__(self) -> Any:
        self._refuse()
        return super().__iter__()

    def values(self) -> Any:
        self._refuse()
        return super().values()

    def items(self) -> Any:
        self._refuse()
        return super().items()


def test_reads_and_writes_never_walk_the_requests_held() -> None:
    clock = Clock()
    emu = Emulator(latency=1.0, concurrency=2, clock=clock)
    held = NoWalk()
    emu._app.queue._jobs = held  # the one private hook: the table of held requests
    body = {"prompt": "a lighthouse", "seed": 1}
    with httpx.Client(transport=emu.sync_transport(), base_url="http://emulator",
                      headers={"Authorization": "Key k"}) as c:
        done = [c.post("/fal-ai/flux/schnell", json=body).json() for _ in range(40)]
        clock.now = 100.0  # all 40 done and held
        waiting = [c.post("/fal-ai/flux/schnell", json=body).json() for _ in range(6)]
        held.armed = True
        assert c.get(done[0]["status_url"]).json()["status"] == "COMPLETED"
        assert c.get(waiting[-1]["status_url"]).json()["queue_position"] == 3
        assert c.post("/fal-ai/flux/schnell", json=body).json()["queue_position"] == 4
        assert c.put(waiting[2]["cancel_url"]).status_code == 202
        assert c.get(waiting[-1]["status_url"]).json()["queue_position"] == 2
        assert emu._app.queue.next_change(waiting[-1]["request_id"]) == 1.0  # the next slot frees in 1 s
        clock.now = 101.0
        assert c.get(waiting[-1]["status_url"]).json()["queue_position"] == 0
        assert c.get(done[1]["response_url"]).status_code == 200
        held.armed = False
    assert emu.ledger.requests == 42


# -- the same schedule as a from-scratch computation ----------------------------------------------------


@dataclass
class Ref:
    rid: str
    submitted: float
    duration: float
    deadline: float | None
    start: float | None = None
    end: float | None = None
    finished: float | None = None
    stopped: str | None = None
    stopped_at: float | None = None


class Reference:
    """Every request's fate recomputed from all requests at each step: what the emulator did before, except
    that a lowered limit holds (the old computation let a request start while more than the new limit ran)."""

    def __init__(self, limit: int, retention: float) -> None:
        self.limit, self.retention = limit, retention
        self.reqs: dict[str, Ref] = {}
        self.billed: list[str] = []

    def advance(self, now: float) -> None:
        free = [-math.inf] * self.limit  # when each slot frees
        for r in self.reqs.values():
            if r.start is not None:
                assert r.end is not None
                heapq.heappushpop(free, r.end)  # keeps the latest `limit` ends: a lowered limit holds
            elif r.finished is not None:
                continue
            elif r.stopped == "cancelled":
                self.end_of(r, r.stopped_at)
                continue
            else:
                start = max(r.submitted, free[0])
                if r.deadline is not None and start > r.deadline:
                    if now >= r.deadline:
                        r.stopped = "timeout"
                        self.end_of(r, r.deadline)
                    continue
                heapq.heapreplace(free, start + r.duration)
                if start <= now:
                    r.start, r.end = start, start + r.duration
            if r.start is not None and r.finished is None and r.end is not None and r.end <= now:
                self.end_of(r, r.end)
        for rid in [k for k, r in self.reqs.items() if r.finished is not None and r.finished + self.retention <= now]:
            del self.reqs[rid]

    def end_of(self, r: Ref, at: float | None) -> None:
        r.finished = at
        if r.stopped is None:
            self.billed.append(r.rid)

    def cancel(self, rid: str, now: float, ignored: bool) -> str:
        self.advance(now)
        r = self.reqs.get(rid)
        if r is None:
            return "NOT_FOUND"
        if r.finished is not None:
            return "ALREADY_COMPLETED"
        if r.start is not None and ignored:
            return "CANCELLATION_REQUESTED"
        r.stopped, r.stopped_at = "cancelled", now
        if r.start is not None:
            r.end = now
        self.advance(now)
        return "CANCELLATION_REQUESTED"

    def view(self, rid: str) -> tuple[Any, ...] | None:
        r = self.reqs.get(rid)
        if r is None:
            return None
        ahead = 0
        for other in self.reqs.values():
            if other is r:
                break
            ahead += other.start is None and other.finished is None
        phase = "COMPLETED" if r.finished is not None else ("IN_PROGRESS" if r.start is not None else "IN_QUEUE")
        return phase, ahead if phase == "IN_QUEUE" else 0, r.start, r.end, r.finished, r.stopped


_OPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.sampled_from([0.0, 0.5, 1.0, 2.5]), st.sampled_from([None, None, 0.0, 0.5, 2.0])),
    st.tuples(st.just("tick"), st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0, 8.0])),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
    st.tuples(st.just("limit"), st.integers(1, 4)),
    st.tuples(st.just("ignore"), st.booleans()),
), max_size=60)


# derandomize: the same 150 examples in every run (a test that passes or fails by chance is a defect; new
# examples come from raising max_examples by hand, not from CI's luck)
@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(first_limit=st.integers(1, 3), ops=_OPS)
# found by a random run: a cancel under a lowered limit freed the slot of another request with the same end
@example(first_limit=2, ops=[("add", 0.5, None), ("add", 0.5, None), ("limit", 1), ("add", 0.0, None), ("cancel", 0)])
def test_the_schedule_is_the_from_scratch_one(first_limit: int, ops: list[tuple[Any, ...]]) -> None:
    clock = Clock()
    knobs = Settings(concurrency=first_limit, retention=6.0, large_retention=6.0)
    queue, ref = Queue(knobs, Ledger(), clock), Reference(first_limit, 6.0)
    ids: list[str] = []
    for op in ops:
        if op[0] == "add":
            rid = f"r{len(ids)}"
            deadline = None if op[2] is None else clock.now + op[2]
            ref.advance(clock.now)
            queue.add(Job(rid, "fal-ai/flux/schnell", "fal-ai/flux", {}, clock.now, 0.0, op[1], "ok",
                          deadline=deadline))
            ref.reqs[rid] = Ref(rid, clock.now, op[1], deadline)
            ids.append(rid)
        elif op[0] == "tick":
            clock.now += op[1]
        elif op[0] == "cancel" and ids:
            rid = ids[op[1] % len(ids)]
            assert queue.cancel(rid) == ref.cancel(rid, clock.now, knobs.running_cancel == "ignored")
        elif op[0] == "limit":
            queue.advance()  # requests so far keep the schedule they had (as App.configure does)
            ref.advance(clock.now)
            knobs.concurrency = ref.limit = op[1]
        elif op[0] == "ignore":
            knobs.running_cancel = "ignored" if op[1] else "honoured"
        ref.advance(clock.now)
        for rid in ids:
            snap = queue.get(rid)
            got = None if snap is None else (snap.phase, snap.queue_position, snap.job.start, snap.job.end,
                                             snap.job.finished, snap.job.stopped)
            assert got == ref.view(rid), (rid, op)
        assert sorted(e.request_id for e in queue.ledger.entries) == sorted(ref.billed)
