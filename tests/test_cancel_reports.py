"""Issue 11 #5: a request falnb cancelled, and the re-run, against every way fal may report a cancel.

fal's docs leave open how a cancelled request reports afterwards and whether a running app honours the
cancel, so the emulator has a knob for each (``cancel_report``, ``running_cancel``) and these tests run
against every alternative: the re-run takes the pictures when fal completed the request anyway, and
otherwise submits anew (billed once), never re-attaching to a request that will not deliver.

Phases are forced with a hand-driven emulator clock: frozen while the request is queued behind a
blocker or running, then moving at wall speed from a later point (no test races the machine).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import falnb
from falnb import Client, _fetch
from falnb.emulator import Emulator
from falnb.emulator._knobs import CANCEL_REPORTS, RUNNING_CANCELS

MODEL = "fal-ai/flux/schnell"
KW: dict[str, Any] = dict(model=MODEL, size="256x256", seed=3)
QUEUE = "https://queue.fal.run"


class Clock:
    """Frozen until ``thaw(at)``: from then on, ``at`` plus the wall time since."""

    def __init__(self) -> None:
        self.base, self.since = 0.0, None  # type: tuple[float, float | None]

    def __call__(self) -> float:
        return self.base if self.since is None else self.base + time.monotonic() - self.since

    def thaw(self, at: float) -> None:
        self.base, self.since = at, time.monotonic()


def _until(cond: Any, what: str, within: float = 30.0) -> None:
    """Wait for an event (not for time): fails only if it never happens."""
    end = time.monotonic() + within
    while not cond():
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.005)


# -- the emulator's knobs, as raw HTTP ---------------------------------------------------------------------


def _raw(emu: Emulator) -> httpx.Client:
    return httpx.Client(transport=emu.sync_transport(), base_url=QUEUE, headers={"Authorization": "Key k"})


@pytest.mark.parametrize("phase", ["IN_QUEUE", "IN_PROGRESS"])
@pytest.mark.parametrize("report", CANCEL_REPORTS)
def test_emulator_reports_a_cancelled_request_as_the_knob_says(report: str, phase: str) -> None:
    clock = Clock()
    emu = Emulator(latency=5.0, concurrency=1, clock=clock)
    emu.configure(cancel_report=report)
    with _raw(emu) as c:
        if phase == "IN_QUEUE":
            c.post(f"/{MODEL}", json={"prompt": "a blocker"})
        sub = c.post(f"/{MODEL}", json={"prompt": "a fox"}).json()
        assert c.get(sub["status_url"]).json()["status"] == phase
        assert c.put(sub["cancel_url"]).json() == {"status": "CANCELLATION_REQUESTED"}
        status, result = c.get(sub["status_url"]), c.get(sub["response_url"])
        again = c.put(sub["cancel_url"])
    body = status.json()
    if report == "never_completes":
        assert (status.status_code, body["status"]) == (202, phase) and "error" not in body
        assert again.status_code == 202  # it still looks alive: fal takes the cancel again
    else:
        assert (status.status_code, body["status"]) == (200, "COMPLETED")
        assert ("error_type" in body) == (report == "completed_error")
        assert again.json() == {"status": "ALREADY_COMPLETED"}
    expected = {"completed_error": 499, "never_completes": 400, "result_400": 400, "result_499": 499}[report]
    assert result.status_code == expected
    if expected == 400:
        assert result.json() == {"detail": "Request is still in progress"}
    clock.thaw(100.0)
    assert [e.request_id for e in emu.ledger.entries] == ([] if phase == "IN_PROGRESS" else [
        j.request_id for j in emu.requests() if j.inputs["prompt"] == "a blocker"])  # never billed


def test_emulator_result_before_completion_is_400_still_in_progress() -> None:
    emu = Emulator(latency=5.0, clock=Clock())
    with _raw(emu) as c:
        sub = c.post(f"/{MODEL}", json={"prompt": "a fox"}).json()
        early = c.get(sub["response_url"])
    assert (early.status_code, early.json()) == (400, {"detail": "Request is still in progress"})


def test_emulator_app_that_ignores_a_cancel_finishes_and_bills() -> None:
    clock = Clock()
    emu = Emulator(latency=5.0, clock=clock)
    emu.configure(running_cancel="ignored")
    with _raw(emu) as c:
        sub = c.post(f"/{MODEL}", json={"prompt": "a fox"}).json()
        assert c.put(sub["cancel_url"]).status_code == 202
        assert c.get(sub["status_url"]).json()["status"] == "IN_PROGRESS"
        clock.thaw(10.0)
        assert c.get(sub["status_url"]).json()["status"] == "COMPLETED"
        assert c.get(sub["response_url"]).status_code == 200
    assert emu.ledger.requests == 1


@pytest.mark.parametrize(("knob", "value"), [("cancel_report", "sometimes"), ("running_cancel", True)])
def test_emulator_refuses_an_unknown_cancel_behaviour(knob: str, value: Any) -> None:
    with pytest.raises(ValueError, match=knob):
        Emulator().configure(**{knob: value})


# -- falnb: stop, then re-run, whatever fal reports --------------------------------------------------------


@pytest.mark.parametrize("running_cancel", RUNNING_CANCELS)
@pytest.mark.parametrize("report", CANCEL_REPORTS)
@pytest.mark.parametrize("phase", ["queued", "running"])
def test_rerun_after_a_cancel(phase: str, report: str, running_cancel: str, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    # the clock stands still until thawed (a request stays queued or running however long the machine takes);
    # after the thaw it follows the wall clock: 0.05 s runs, not 1 s, for the re-run to wait
    emu = Emulator(latency=0.05, concurrency=1, clock=clock)
    emu.configure(cancel_report=report, running_cancel=running_cancel)
    if report == "never_completes":  # (the re-run waits for a request that never reports an end: not 60 s)
        monkeypatch.setattr(_fetch, "CANCELLED_WAIT", 0.2)
    if phase == "queued":  # a request ahead of ours holds the account's one slot
        emu.handle("POST", f"{QUEUE}/{MODEL}", {"authorization": "Key k"}, json.dumps({"prompt": "ahead"}).encode())
    client = Client(offline=True, emulator=emu, cache=tmp_path / "c")
    run = client.start([client.plan("a fox in the snow", **KW)])
    _until(lambda: run.progress()[0].state == phase, f"falnb sees its request {phase}")
    [first] = run.progress()[0].request_ids
    run.cancel()
    assert run.join(30)
    with pytest.raises(falnb.RequestCancelledError) as stopped:
        run.wait()
    said = str(stopped.value)
    assert (f"cancelled request {first} while queued" in said) if phase == "queued" else \
        (f"asked fal to cancel request {first}, which had started (fal may still bill it" in said), said
    rows = client.cache.journal()  # type: ignore[union-attr]
    assert [(r["state"], r["request_id"], r["pid"]) for r in rows] == [("cancelled", first, 0)]

    clock.thaw(10.0)  # fal's time moves on: what was ahead finished, an app that ignored the cancel too
    gen = client.generate("a fox in the snow", **KW, timeout=30)
    ours = [j for j in emu.requests() if j.inputs["prompt"] == "a fox in the snow"]
    billed = [e.request_id for e in emu.ledger.entries if e.request_id in {j.request_id for j in ours}]
    if phase == "running" and running_cancel == "ignored":
        # fal completed it anyway: the re-run takes its pictures, nothing new is sent
        assert gen.request_ids == [first] and len(ours) == 1 and billed == [first]
    else:
        # fal holds no pictures for it: the re-run submits anew, and only that one is billed
        assert len(ours) == 2 and gen.request_ids != [first] and billed == gen.request_ids
    assert len(gen.images) == 1 and client.cache.journal() == []  # type: ignore[union-attr]
    client.close()


def _stopped_while_running(tmp_path: Path, **knobs: Any) -> tuple[Clock, Emulator, Client, str]:
    """A request of a client on an emulator configured with ``knobs``, stopped (``run.cancel()``) while it ran:
    the emulator's clock (frozen until thawed: fal still runs it), the emulator, the client and the request id.
    (0.05 s generations: a re-run after the thaw waits 0.05 s, not 1 s.)"""
    clock = Clock()
    emu = Emulator(latency=0.05, clock=clock)
    emu.configure(**knobs)
    client = Client(offline=True, emulator=emu, cache=tmp_path / "c")
    run = client.start([client.plan("a fox in the snow", **KW)])
    _until(lambda: run.progress()[0].state == "running", "running")
    [first] = run.progress()[0].request_ids
    run.cancel()
    assert run.join(30)
    return clock, emu, client, first


def test_a_cancelled_row_still_reported_running_is_cancelled_again_before_submitting_anew(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """never_completes: the re-run cancels it again (should it run on after all), waits for it at most
    CANCELLED_WAIT (it never reports an end), then submits anew."""
    monkeypatch.setattr(_fetch, "CANCELLED_WAIT", 0.2)
    clock, emu, client, _ = _stopped_while_running(tmp_path, cancel_report="never_completes")
    clock.thaw(0.0)
    seen: list[str] = []
    real = emu.handle

    def handle(method: str, url: str, *args: Any, **kw: Any) -> Any:
        seen.append(f"{method} {url.split('?')[0].rsplit('/', 1)[-1]}")
        return real(method, url, *args, **kw)

    emu.handle = handle  # type: ignore[method-assign]
    client.generate("a fox in the snow", **KW, timeout=30)
    post = seen.index(f"POST {MODEL.rsplit('/', 1)[-1]}")
    assert seen[:2] == ["GET status", "PUT cancel"] and set(seen[2:post]) <= {"GET status", "GET stream"}, seen
    assert post > 2, seen  # it was waited for before the new submit


@pytest.mark.parametrize("report", CANCEL_REPORTS)
def test_a_rerun_waits_for_a_cancelled_request_that_runs_on_and_takes_its_pictures(report: str,
                                                                                  tmp_path: Path) -> None:
    """fal only signals a running app, and an app that ignores the signal finishes and bills (fal's own
    end-to-end test_app_cancellation).  A re-run while it still runs cancels it again, then waits for it
    and takes its pictures: one request billed, not two.  (Before: the re-run submitted anew at once.)"""
    clock, emu, client, first = _stopped_while_running(tmp_path, cancel_report=report, running_cancel="ignored")
    cancels: list[str] = []
    real = emu.handle

    def handle(method: str, url: str, *args: Any, **kw: Any) -> Any:
        answer = real(method, url, *args, **kw)
        if method == "PUT":
            cancels.append(url)  # (recorded once answered: the re-run decides on the answer)
        return answer

    emu.handle = handle  # type: ignore[method-assign]
    again = client.start([client.plan("a fox in the snow", **KW)], timeout=30)
    _until(lambda: cancels, "the re-run cancels it again")  # the clock stands: fal still runs it
    _until(lambda: again.progress()[0].state == "running", "the re-run waits for it")
    clock.thaw(10.0)  # the app that ignored the cancel finishes
    assert again.join(30)
    [gen] = again.wait()
    assert isinstance(gen, falnb.Generation), gen
    ours = [j for j in emu.requests() if j.inputs["prompt"] == "a fox in the snow"]
    assert gen.request_ids == [first] and len(ours) == 1
    assert [e.request_id for e in emu.ledger.entries] == [first] and len(gen.images) == 1
    assert client.cache.journal() == []  # type: ignore[union-attr]
    client.close()


def test_a_stop_while_the_rerun_waits_for_the_cancelled_request_says_fal_may_bill_it(tmp_path: Path) -> None:
    """The re-run names the request it waits for: stopped then, it says fal may still bill that request
    (before: '1 request not sent (nothing billed)', of a request running at fal)."""
    _, emu, client, first = _stopped_while_running(tmp_path, running_cancel="ignored")
    again = client.start([client.plan("a fox in the snow", **KW)], timeout=30)
    _until(lambda: again.progress()[0].request_ids == (first,) and again.progress()[0].state == "running",
           "the re-run waits for the request it cancelled again")  # (the clock stands: fal still runs it)
    again.cancel()
    assert again.join(30)
    with pytest.raises(falnb.RequestCancelledError) as stopped:
        again.wait()
    assert f"asked fal to cancel request {first}, which had started (fal may still bill it" in str(stopped.value)
    assert len(emu.requests()) == 1
    client.close()


def test_a_new_submit_is_not_named_by_the_request_looked_at_before() -> None:
    from falnb.results._progress import ProgressTracker

    t = ProgressTracker(MODEL, 1)
    t.update(0, "queued", request_id="the-old-one")
    t.update(0, "submitting")  # let go (cancelled, failed, gone): a new request is on its way
    assert t.requests() == [("submitting", None)]
