"""The simulation's fal: falnb's emulator on a clock that moves only when someone asks it something, with
traps that act at an exact phase of a request, every call recorded, and faults on the client's side.

* :class:`SimEmulator`: the clock advances one unit each time the emulator reads it (every status answer,
  every submit), so a request with ``latency=2`` is queued, then running, then done after a few polls,
  whatever the machine's load.  It records every submit that queued a job (with the request's identity:
  model and exact input) and every request id a client named afterwards, and answers the submit of the
  next ``lose_answers`` requests by closing the connection after queueing them (the answer is lost: fal
  queued and will bill the request).
* :class:`Trap`: ``action()`` runs in the thread answering the call, when a request of ``identity`` reaches
  ``phase`` (``submitting``: queued, its answer about to go back; ``queued``/``running``: a status says so;
  ``downloading``: its picture is fetched; ``rate-limited``: its submit is answered 429, nothing queued).
  The simulation interrupts there (a real SIGINT in the waiting thread, ``Run.cancel()``, the form's Cancel
  button, a task's cancel).
* :class:`ClientSide`: an httpx transport in front of the emulator (in process or over HTTP) that counts
  what falnb sends and can refuse the next connections (fal unreachable: nothing left the machine).
* :func:`defect_open`: whether one of issue 11's defect tests (tests/defects) is still marked xfail, so the
  simulation and the hostile corpus skip exactly those known cases and check each as soon as its fix removes
  the marker; :func:`open_findings` does the same for what the simulation found (test_simulation_findings).
"""

from __future__ import annotations

import collections
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from falnb.emulator import Emulator
from falnb.emulator._http import EventStream, Response, lost_by_a_gateway

__all__ = ["ClientSide", "SimEmulator", "Submit", "Trap", "defect_open", "identity", "open_defect_tests",
           "open_findings"]

DEFECTS = Path(__file__).resolve().parent / "defects"
_REQ = re.compile(r"^/(?:(?:workflows|comfy)/)?[^/]+/[^/]+/requests/(?P<id>[^/]+)(?P<rest>/status|/cancel)?/?$")
_FILE = re.compile(r"^/files/(?P<id>[^/]+)/")
_PHASES = {"IN_QUEUE": "queued", "IN_PROGRESS": "running", "COMPLETED": "completed"}


@lru_cache(maxsize=1)
def open_defect_tests() -> frozenset[str]:
    """The tests in tests/defects still marked ``xfail(strict=True, reason="issue 11 defect NN")``: their defect
    (that part of it) is not fixed yet.  A fixer removes the marker, and the simulation and the hostile corpus
    start checking that case at once."""
    found: set[str] = set()
    for path in DEFECTS.glob("test_*.py"):
        block: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if m := re.match(r"(?:async )?def (test_\w+)", line):
                if any('reason="issue 11 defect' in b for b in block):
                    found.add(m[1])
                block = []
            elif line.startswith("@") or (block and line[:1] in (" ", ")", "]")):
                block.append(line)
            else:
                block = []
    return frozenset(found)


def defect_open(test: str) -> bool:
    """Whether the issue-11 defect test ``test`` (a function name in tests/defects) still fails."""
    if not any(test in p.read_text(encoding="utf-8") for p in DEFECTS.glob("test_*.py")):
        raise AssertionError(f"no test {test} in tests/defects")  # a renamed test must not switch a check off
    return test in open_defect_tests()


@lru_cache(maxsize=1)
def open_findings() -> frozenset[str]:
    """What the simulation found that is not fixed yet: ``S1``... whose tests in ``test_simulation_findings.py``
    are still ``xfail(strict=True, reason="simulation finding SN: ...")``."""
    text = (Path(__file__).resolve().parent / "test_simulation_findings.py").read_text(encoding="utf-8")
    return frozenset(re.findall(r'reason="simulation finding (S\d+):', text))


def identity(model: str, payload: Mapping[str, Any]) -> str:
    """A request as fal sees it: the endpoint and the exact JSON input."""
    return model + " " + json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Submit:
    """A submit that queued a job on the emulated fal."""

    request_id: str
    identity: str
    #: the answer never reached the client (the connection was closed after queueing)
    answer_lost: bool = False


@dataclass
class Trap:
    """Run ``action`` once, when a request of ``identity`` (one, or a set; None: any) reaches ``phase``."""

    phase: str
    action: Callable[[], None]
    identity: str | frozenset[str] | None = None
    fired: bool = False

    def matches(self, phase: str | None, target: Submit | None) -> bool:
        if self.fired or phase != self.phase:
            return False
        if self.identity is None:
            return True
        wanted = {self.identity} if isinstance(self.identity, str) else self.identity
        return target is not None and target.identity in wanted


@dataclass
class _Record:
    submits: list[Submit] = field(default_factory=list)
    by_id: dict[str, Submit] = field(default_factory=dict)
    #: request ids a client named in a status, result or cancel call (it learned them)
    named: set[str] = field(default_factory=set)
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    calls: collections.Counter[str] = field(default_factory=collections.Counter)


class SimEmulator(Emulator):
    """falnb's emulator on an activity clock, recording calls, with traps and lost submit answers."""

    def __init__(self, **settings: Any) -> None:
        self._now = 0.0
        self._tick_lock = threading.Lock()
        # results outlive the run: a lost picture is then falnb's doing, never the retention's
        settings.setdefault("retention", 1e12)
        settings.setdefault("large_retention", 1e12)
        super().__init__(clock=self._clock, **settings)
        self.record = _Record()
        self.traps: list[Trap] = []
        #: the next this-many submits queue their job and then lose the answer
        self.lose_answers = 0
        #: the next this-many submits queue their job, and a gateway between (not fal's nginx) answers a
        #: plain 502 in its place (the knob ``lost_submit_gateway_rate``, one submit at a time)
        self.gateway_answers = 0
        self._lock = threading.RLock()

    def _clock(self) -> float:
        return self._now

    def tick(self) -> None:
        """One unit of emulated time: every call a client makes (and every status-stream check) is one."""
        with self._tick_lock:
            self._now += 1.0

    def handle(self, method: str, url: str, headers: Mapping[str, str] | None = None,
               body: bytes = b"") -> Response:
        path = urlsplit(url).path
        if path.startswith("/_emulator/"):
            return super().handle(method, url, headers, body)
        kind, rid = _classify(method, path)
        self.tick()
        resp = super().handle(method, url, headers, body)
        if kind == "stream" and isinstance(resp.body, EventStream):
            resp.body = self._ticking(resp.body, rid)
        fault = _fault_of(resp)
        with self._lock:
            rec = self.record
            rec.calls[kind] += 1
            if fault:
                rec.faults[fault] += 1
            if rid is not None and kind in ("status", "result", "cancel"):
                rec.named.add(rid)
            phase, target = None, None
            if kind == "submit" and resp.status == 200:
                phase, target = "submitting", self._submitted(path, body, resp)
                if self.lose_answers > 0:
                    self.lose_answers -= 1
                    target.answer_lost = True
                    rec.faults["lost submit answer"] += 1
                    resp = Response(0, drop=True)
                elif self.gateway_answers > 0:
                    self.gateway_answers -= 1
                    target.answer_lost = True
                    rec.faults["submit answer lost by a gateway"] += 1
                    resp = lost_by_a_gateway()
            elif kind == "submit" and resp.status == 429:
                phase, target = "rate-limited", Submit("", identity(path.strip("/"), _json(body)))
            elif kind == "status" and rid is not None and isinstance(resp.body, bytes) and resp.status in (200, 202):
                phase, target = _PHASES.get(str(_json(resp.body).get("status"))), rec.by_id.get(rid)
            elif kind == "file" and rid is not None and resp.status == 200:
                phase, target = "downloading", rec.by_id.get(rid)
        self._spring(phase, target)
        return resp

    def _ticking(self, events: EventStream, rid: str | None) -> EventStream:
        """The status stream with time moving one unit per check, and the traps armed on its events."""
        poll = events._poll  # the emulator's own check (a test-only reach into its stream)

        def check() -> tuple[dict[str, Any] | None, bool]:
            status, final = poll()
            self.tick()  # after: the stream's first event is the status at the time it was asked for
            if status is not None and rid is not None:
                self._spring(_PHASES.get(str(status.get("status"))), self.record.by_id.get(rid))
            return status, final

        return EventStream(check, interval=0.005)

    def _spring(self, phase: str | None, target: Submit | None) -> None:
        with self._lock:
            due = [t for t in self.traps if t.matches(phase, target)]
            for t in due:
                t.fired = True
        for t in due:  # outside the lock: an action may wait for the main thread
            t.action()

    def _submitted(self, path: str, body: bytes, resp: Response) -> Submit:
        rid = str(resp.json()["request_id"])
        sub = Submit(rid, identity(path.strip("/"), _json(body)))
        self.record.submits.append(sub)
        self.record.by_id[rid] = sub
        return sub

    # -- what the invariants read --------------------------------------------------------------

    def billed(self) -> list[tuple[str, str | None, int]]:
        """(request id, identity, HTTP status of its result) of every billed request."""
        with self._lock:
            by_id = dict(self.record.by_id)
        return [(e.request_id, by_id[e.request_id].identity if e.request_id in by_id else None, e.status)
                for e in self.ledger.entries]

    def orphans(self, ident: str) -> list[Submit]:
        """Jobs queued for ``ident`` whose request id no client ever named: falnb never learned it."""
        with self._lock:
            return [s for s in self.record.submits if s.identity == ident and s.request_id not in self.record.named]

    def unlearned(self) -> list[Submit]:
        """Every queued job whose request id no client ever named."""
        with self._lock:
            return [s for s in self.record.submits if s.request_id not in self.record.named]

    def submits_of(self, ident: str) -> int:
        with self._lock:
            return sum(1 for s in self.record.submits if s.identity == ident)


def _classify(method: str, path: str) -> tuple[str, str | None]:
    if m := _FILE.match(path):
        return "file", m["id"]
    if m := _REQ.match(path):
        rest = m["rest"] or ""
        return {"": "result", "/status": "status", "/cancel": "cancel"}[rest], m["id"]
    if path.endswith("/status/stream"):
        return "stream", path.split("/requests/")[-1].split("/")[0]
    return ("submit", None) if method == "POST" else ("other", None)


def _fault_of(resp: Response) -> str | None:
    if resp.drop:
        return "dropped connection"
    if resp.header("server") == "nginx":
        return f"gateway {resp.status}"
    if resp.status == 429:
        return "429"
    if resp.status == 500 and resp.header("x-fal-error-type") == "runner_server_error":
        return "500"
    return None


def _json(data: bytes | Any) -> Any:
    try:
        value = json.loads(data or b"{}")
    except (ValueError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


class ClientSide(httpx.AsyncBaseTransport):
    """The client machine's side of the wire: counts falnb's requests that were answered (``sent``), and
    ``refuse`` connections (``httpx.ConnectError``: fal unreachable, nothing sent) for the next so many calls."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: collections.Counter[str] = collections.Counter()
        self.refuse = 0
        self.refused = 0
        self._lock = threading.Lock()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            if self.refuse > 0:
                self.refuse -= 1
                self.refused += 1
                raise httpx.ConnectError("[Errno 111] Connection refused (simulated)", request=request)
        response = await self.inner.handle_async_request(request)
        with self._lock:
            self.sent[request.method] += 1  # answered: it reached the other side
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


# -- the simulation's fal, tested -------------------------------------------------------------------


def test_the_activity_clock_moves_a_request_through_every_phase_without_wall_time() -> None:
    emu = SimEmulator(latency=3.0, concurrency=1)
    hdr = {"authorization": "Key k"}
    a = emu.handle("POST", "http://fal.test/fal-ai/flux/schnell", hdr, b'{"prompt":"a"}').json()
    b = emu.handle("POST", "http://fal.test/fal-ai/flux/schnell", hdr, b'{"prompt":"b"}').json()
    seen = []
    for _ in range(40):
        st = emu.handle("GET", b["status_url"], hdr).json()["status"]
        if not seen or seen[-1] != st:
            seen.append(st)
        if st == "COMPLETED":
            break
    assert seen == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]  # b waited for a: one slot
    assert [s.request_id for s in emu.record.submits] == [a["request_id"], b["request_id"]]
    assert emu.orphans(identity("fal-ai/flux/schnell", {"prompt": "a"}))  # nobody asked about a
    assert not emu.orphans(identity("fal-ai/flux/schnell", {"prompt": "b"}))


def test_a_lost_submit_answer_is_queued_and_billed_and_traps_fire_at_their_phase() -> None:
    emu = SimEmulator(latency=2.0)
    fired: list[str] = []
    ident = identity("fal-ai/flux/schnell", {"prompt": "a"})
    emu.traps += [Trap("submitting", lambda: fired.append("submitting"), ident),
                  Trap("running", lambda: fired.append("running"), ident),
                  Trap("queued", lambda: fired.append("other"), identity("fal-ai/flux/schnell", {"prompt": "z"}))]
    emu.lose_answers = 1
    resp = emu.handle("POST", "http://fal.test/fal-ai/flux/schnell", {"authorization": "Key k"}, b'{"prompt":"a"}')
    assert resp.drop and fired == ["submitting"]
    rid = emu.record.submits[0].request_id
    for _ in range(5):
        emu.handle("GET", f"http://fal.test/fal-ai/flux/requests/{rid}/status", {"authorization": "Key k"})
    assert fired == ["submitting", "running"]
    assert [(r, s) for r, _, s in emu.billed()] == [(rid, 200)]
    assert emu.record.faults["lost submit answer"] == 1


def test_open_defect_tests_reads_the_xfail_markers() -> None:
    text = "".join(p.read_text(encoding="utf-8") for p in DEFECTS.glob("test_*.py"))
    for name in open_defect_tests():
        before = text[:text.index(f"def {name}(")].rsplit("\n\n", 1)[-1]
        assert 'reason="issue 11 defect' in before, name
    # a guard test never carries the marker
    assert not {n for n in open_defect_tests() if "_guard_" in n}


def test_an_interrupt_asked_for_after_its_test_body_is_never_sent() -> None:
    """A stand-in or emulator hook still polling when its test's body ended sends no SIGINT (it would land in the
    next test's wait in falnb, or in pytest's report: an INTERNALERROR with two suites at once)."""
    from .defects._helpers import arm_interrupts, disarm_interrupts, interrupt_main

    disarm_interrupts()  # what tests/conftest.py does once a body returns
    try:
        sent: list[bool] = []
        hook = threading.Thread(target=lambda: sent.append(interrupt_main(within=30.0)))
        hook.start()
        hook.join(5.0)
        assert sent == [False], "the hook kept waiting to interrupt whatever runs next"
    finally:
        arm_interrupts()
