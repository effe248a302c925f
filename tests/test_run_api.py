"""A :class:`~falnb.Run` watched from outside: its progress once it has ended, and ``watch``'s last call."""

from __future__ import annotations

import gc
import logging
import threading
import time
import types
from typing import Any

import pytest

import falnb
from falnb import Client
from falnb.emulator import Emulator
from falnb.results import _progress


@pytest.fixture
def emu() -> Emulator:
    return Emulator(latency=0.0)


def _later(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """The progress module's clock, ``seconds`` ahead: what a snapshot taken that much later reads."""
    monkeypatch.setattr(_progress, "time", types.SimpleNamespace(monotonic=lambda: time.monotonic() + seconds))


def test_the_progress_of_an_ended_run_stops_counting_time(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    done = client.start([client.plan("a fox", model="schnell", seed=1)])
    done.wait()
    failed = client.start([client.plan("an owl", model="schnell", seed=1)])
    failed.cancel()
    with pytest.raises(falnb.RequestCancelledError):
        failed.wait()
    took = [done.progress()[0].elapsed, failed.progress()[0].elapsed]
    _later(monkeypatch, 3600)  # an hour later, the run still took what it took
    assert [done.progress()[0].elapsed, failed.progress()[0].elapsed] == took
    assert done.progress()[0].line().endswith(f"{took[0]:.1f} s")


def test_watch_ends_with_a_call_that_sees_the_run_finished(client: Client) -> None:
    """``watch`` shows each change within ``every`` seconds: the last one (done, failed, cancelled) too, which
    comes as the run ends, not after the watcher's next sleep (a progress bar left at "running")."""
    run = client.prepare([client.plan("a hare", model="schnell", seed=2)])
    calls: list[tuple[bool, str]] = []
    last = threading.Event()

    def on_progress(r: Any) -> None:
        calls.append((r.finished, r.progress()[0].state))
        if r.finished:
            last.set()

    run.watch(on_progress, every=3600, refresh=3600)  # nothing but the run's end may wake the watcher early
    run.wait()
    assert last.wait(30), calls
    assert calls[-1] == (True, "done") and [c for c in calls if c[0]] == [calls[-1]]
    ended = client.start([client.plan("a hare", model="schnell", seed=2)])  # a run already over: one call
    ended.wait()
    seen = threading.Event()
    ended.watch(lambda r: seen.set() if r.finished else None)
    assert seen.wait(30)


def test_an_empty_batch_is_an_empty_list_and_no_error(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    """``generate_many([])`` (a list filtered down to nothing) and ``client.start([])``: asyncio.wait of no
    tasks raised in the run, logged later as "Task exception was never retrieved" with a ValueError."""
    with caplog.at_level(logging.ERROR):
        assert client.generate_many([], model="schnell") == []
        run = client.start([])
        assert run.wait() == [] and run.finished
        del run
        gc.collect()  # a task's unretrieved error is logged when the task is collected
    assert not [r.getMessage() for r in caplog.records]


def test_joining_a_run_only_prepared_is_refused_not_a_wait_for_ever(client: Client, emu: Emulator) -> None:
    """A prepared run starts in ``wait()``: ``join()`` without a timeout would block the kernel for ever."""
    run = client.prepare([client.plan("a stoat", model="schnell", seed=3)])
    assert "prepared" in repr(run)
    with pytest.raises(falnb.InputError, match=r"starts in run\.wait"):
        run.join()
    assert run.join(0.01) is False  # (a bounded join is a question, and answered)
    assert emu.ledger.submits == 0  # nothing was started by asking
    [gen] = run.wait()
    assert isinstance(gen, falnb.Generation) and run.join() is True and "finished" in repr(run)
