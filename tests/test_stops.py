"""Issue 11 #6 and #7, and the interrupts that must never be lost: what a stop does, and says.

A stop (Ctrl-C, ``Run.cancel``, the first error of ``return_exceptions=False``) leaves nothing running
unseen on fal: a submit under way is let to answer (bounded) and then cancelled by id; a queued or
running request gets fal's cancel; and the words say what really happened to each request.  Phases are
forced with a gate on fal's answers and a frozen emulator clock (events, not timers).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import falnb
from falnb import Client
from falnb._run import interrupt_text
from falnb.emulator import Emulator
from falnb.fal import _loop
from falnb.results._progress import ProgressTracker

MODEL = "fal-ai/flux/schnell"
KW: dict[str, Any] = dict(model=MODEL, size="256x256", seed=2)


class Frozen:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Gated(httpx.AsyncBaseTransport):
    """The emulator in process, with fal's answer to a submit (it is queued already) or to a cancel held
    or replaced as the test says."""

    def __init__(self, emu: Emulator) -> None:
        self.inner = emu.transport()
        self.hold_submit_answer = threading.Event()  # set: answers wait for ``release``
        self.release = threading.Event()
        self.holding = threading.Event()  # a submit's answer is being held now
        self.cancel_answer: tuple[int, dict[str, str]] | None = None
        #: a prompt fal refuses at submit (422), once another submit's answer is being held
        self.refuse: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and self.cancel_answer is not None:
            return httpx.Response(self.cancel_answer[0], json=self.cancel_answer[1], request=request)
        if request.method == "POST" and self.refuse and self.refuse.encode() in await request.aread():
            while not self.holding.is_set():
                await asyncio.sleep(0.002)
            return httpx.Response(422, json={"detail": [{"loc": ["body", "prompt"], "msg": "refused",
                                                         "type": "value_error"}]}, request=request)
        resp = await self.inner.handle_async_request(request)
        if request.method == "POST" and self.hold_submit_answer.is_set():
            self.holding.set()
            while not self.release.is_set():
                await asyncio.sleep(0.002)
        return resp


def _until(cond: Any, what: str, within: float = 30.0) -> None:
    end = time.monotonic() + within
    while not cond():
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.002)


def _setup(tmp_path: Path) -> tuple[Emulator, Gated, Client]:
    emu = Emulator(latency=1.0, concurrency=1, clock=Frozen())
    gated = Gated(emu)
    return emu, gated, Client(offline=True, emulator=emu, transport=gated, cache=tmp_path / "c")


# -- #7: a submit under way when the run stops --------------------------------------------------------------


def test_a_stop_lets_the_submit_answer_then_cancels_it(tmp_path: Path) -> None:
    emu, gated, client = _setup(tmp_path)
    gated.hold_submit_answer.set()
    run = client.start([client.plan("a fox", **KW)])
    assert gated.holding.wait(30)  # fal queued it; its answer is on the way
    run.cancel()
    assert not run.join(0.2)  # the run waits for that answer (it would run on, billed, unseen)
    gated.release.set()
    assert run.join(30)
    [job] = emu.requests()
    assert job.stopped == "cancelled"  # cancelled by id once its id was known
    with pytest.raises(falnb.RequestCancelledError) as err:
        run.wait()
    assert f"cancelled request {job.request_id} while queued" in str(err.value), str(err.value)
    rows = client.cache.journal()  # type: ignore[union-attr]
    assert [(r["state"], r["request_id"]) for r in rows] == [("cancelled", job.request_id)]


def test_a_submit_whose_answer_never_comes_is_reported_uncertain(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from falnb import _fetch

    monkeypatch.setattr(_fetch, "SUBMIT_GRACE", 0.05)
    _, gated, client = _setup(tmp_path)
    gated.hold_submit_answer.set()
    run = client.start([client.plan("a fox", **KW)])
    assert gated.holding.wait(30)
    run.cancel()
    assert run.join(30)
    gated.release.set()
    with pytest.raises(falnb.RequestCancelledError) as err:
        run.wait()
    said = str(err.value)
    assert "1 submit was sent to fal with no answer yet (fal may have queued and will bill it" in said, said
    assert [r["state"] for r in client.cache.journal()] == ["uncertain"]  # type: ignore[union-attr]


def test_a_run_stopped_by_its_first_error_cancels_the_submit_under_way(tmp_path: Path) -> None:
    """stop_on_error (generate_many's return_exceptions=False): fal refuses one submit while the other's
    answer is on its way; that other request is cancelled once it answers, and nothing else is sent."""
    emu, gated, client = _setup(tmp_path)
    gated.hold_submit_answer.set()
    gated.refuse = "a refused owl"
    plans = [client.plan(p, **KW) for p in ("a refused owl", "a fox", "a hare", "a wolf")]
    run = client.start(plans, concurrency=2, stop_on_error=True)
    _until(lambda: run.cancel_requested, "the first error stopped the run")
    assert not run.join(0.2)  # still waiting for the fox's answer
    gated.release.set()
    assert run.join(30)
    with pytest.raises(falnb.FalValidationError):
        run.wait()
    [job] = emu.requests()
    assert job.inputs["prompt"] == "a fox" and job.stopped == "cancelled"


# -- #6: the words -----------------------------------------------------------------------------------------


def _tracker(*states: tuple[str, str | None]) -> ProgressTracker:
    t = ProgressTracker(MODEL, len(states))
    for i, (state, rid) in enumerate(states):
        t.update(i, state, request_id=rid)
    return t


@pytest.mark.parametrize(("state", "rid", "note", "said"), [
    ("queued", "r1", "cancelled", "cancelled request r1 while queued (fal does not bill those)"),
    ("running", "r1", "cancelled", "asked fal to cancel request r1, which had started (fal may still bill it"),
    ("queued", "r1", "completed", "request r1 had finished on fal (billed): re-run to fetch the pictures"),
    ("running", "r1", "completed", "request r1 had finished on fal (billed)"),
    ("downloading", "r1", None, "request r1 had finished on fal (billed)"),
    ("queued", "r1", "no-answer", "fal did not answer the cancel of request r1 (it may run on and be billed"),
    ("submitting", None, "lost", "1 submit was sent to fal with no answer yet (fal may have queued and will "
                                 "bill it; falnb will not send it again by itself)"),
    ("submitting", None, None, "1 submit was sent to fal with no answer yet"),
    ("checking", None, "unsent", "1 request not sent (nothing billed)"),
    ("checking", None, None, "1 request not sent (nothing billed)"),
    # finished (its download ended as the stop was handled): billed and kept, never "nothing was running" (S1)
    ("done", "r1", None, "request r1 finished on fal (billed): its pictures are kept in client.history"),
    ("cached", "r1", None, "nothing was running"),
])
def test_interrupt_words_say_what_happened(state: str, rid: str | None, note: str | None, said: str) -> None:
    text = interrupt_text([_tracker((state, rid))], [{0: note} if note else {}])
    assert said in text, text
    assert not text.lower().startswith("interrupted")  # the error's name says that already
    if note == "completed" or state == "downloading":
        assert "cancelled request" not in text


def test_a_cancel_answered_already_completed_says_it_finished(tmp_path: Path) -> None:
    emu, gated, client = _setup(tmp_path)
    run = client.start([client.plan("a fox", **KW)])
    _until(lambda: run.progress()[0].state == "running", "running")
    gated.cancel_answer = (400, {"status": "ALREADY_COMPLETED"})  # fal finished it as the cancel went out
    run.cancel()
    assert run.join(30)
    [rid] = run.progress()[0].request_ids
    with pytest.raises(falnb.RequestCancelledError) as err:
        run.wait()
    assert f"request {rid} had finished on fal (billed)" in str(err.value), str(err.value)
    assert "cancel request" not in str(err.value)
    # the journal keeps it to re-attach to: the re-run takes its pictures, nothing new is sent
    gated.cancel_answer = None
    emu._app.queue.clock.now = 10.0  # type: ignore[attr-defined]
    assert client.generate("a fox", **KW).request_ids == [rid] and emu.ledger.submits == 1


# -- Ctrl-C is never lost ----------------------------------------------------------------------------------


class _Recording(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        return super().wait(timeout)


def test_waiting_threads_sleep_in_short_slices(tmp_path: Path) -> None:
    """A signal landing just before a wait without a timeout only trips a flag: the wait would never
    wake to raise KeyboardInterrupt.  Every wait of a Run is a short slice."""
    emu = Emulator(latency=0.3)
    client = Client(offline=True, emulator=emu, cache=tmp_path / "c")
    run = client.prepare([client.plan("a fox", **KW)])
    run._finished = recording = _Recording()  # type: ignore[assignment]
    run.wait()
    assert recording.timeouts and all(t is not None and t <= _loop.SLICE for t in recording.timeouts)


def test_an_interrupt_while_the_work_is_handed_over_still_stops_it(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C lands right after the work was handed to falnb's loop, before the call could note it:
    the work is stopped all the same (nothing is left running on fal)."""
    emu = Emulator(latency=1.0, clock=Frozen())
    client = Client(offline=True, emulator=emu, cache=tmp_path / "c")
    loop = _loop.get_loop()
    real = loop.call_soon_threadsafe
    fired: list[bool] = []

    def handover(callback: Any, *args: Any, **kw: Any) -> Any:
        handle = real(callback, *args, **kw)
        if not fired and threading.current_thread() is threading.main_thread():
            fired.append(True)
            raise KeyboardInterrupt  # the signal handler runs here
        return handle

    monkeypatch.setattr(loop, "call_soon_threadsafe", handover)
    with pytest.raises(falnb.Interrupted):
        client.generate("a fox", **KW)
    monkeypatch.undo()
    # never started, or started and stopped: nothing runs on at fal, nothing is left uncertain
    assert fired and all(j.stopped == "cancelled" for j in emu.requests())
    assert all(r["state"] == "cancelled" for r in client.cache.journal())  # type: ignore[union-attr]


def test_run_sync_interrupted_while_handing_over_cancels_the_coroutine(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = _loop.get_loop()
    real = loop.call_soon_threadsafe
    finished: list[str] = []

    async def work() -> None:
        try:
            await asyncio.sleep(30)
            finished.append("ran to its end")
        except asyncio.CancelledError:
            finished.append("cancelled")
            raise

    def handover(callback: Any, *args: Any, **kw: Any) -> Any:
        handle = real(callback, *args, **kw)
        if threading.current_thread() is threading.main_thread() and not finished:
            finished.append("handed over")
            raise KeyboardInterrupt
        return handle

    monkeypatch.setattr(loop, "call_soon_threadsafe", handover)
    coro = work()
    with pytest.raises(KeyboardInterrupt):
        _loop.run_sync(coro)
    monkeypatch.undo()
    _until(lambda: coro.cr_frame is None, "the coroutine ended")
    assert finished in (["handed over"], ["handed over", "cancelled"])  # never started, or cancelled
