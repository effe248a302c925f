"""A :class:`~falnb.Run` watched from outside: its progress once it has ended, and ``watch``'s last call."""

from __future__ import annotations

import time
import types

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

