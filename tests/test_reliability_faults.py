"""Reliability under injected faults, over the emulator's real HTTP server.

Figures:
1. 200 requests through 10% gateway errors, 10% 500s, 5% dropped status connections and bursts of
   429 on submit: all complete, exactly 200 submits and 200 billed, every picture in hand.
2. A submit whose answer arrives after the client's timeout: never sent twice (with or without the
   cache, also on a re-run), and the error says what happened and what to check.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from falnb import Client
from falnb._exceptions import FalnbError, SubmitUncertainError
from falnb.emulator import Emulator, EmulatorServer, Faults
from falnb.emulator._http import Response
from falnb.fal._download import sniff
from falnb.fal._queue import RetryPolicy

MODEL = "fal-ai/flux/schnell"
FAST = RetryPolicy(attempts=10, base_delay=0.005, max_delay=0.05, submit_attempts=12)


class CountingEmulator(Emulator):
    """An emulator that counts the faults it answers with (what the figure reports)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.counts: collections.Counter[str] = collections.Counter()
        self._count_lock = threading.Lock()

    def handle(self, method: str, url: str, headers: Mapping[str, str] | None = None,
               body: bytes = b"") -> Response:
        resp = super().handle(method, url, headers, body)
        kind = ("dropped" if resp.drop else "gateway" if resp.header("server") == "nginx"
                else "429" if resp.status == 429 else "500" if resp.status == 500 else None)
        if kind:
            with self._count_lock:
                self.counts[kind] += 1
        return resp


@pytest.fixture
def faulty(serve_emulator: Callable[..., EmulatorServer]) -> EmulatorServer:
    return serve_emulator(CountingEmulator(latency=0.0, concurrency=16, faults=Faults(
        seed=8, gateway_submit_rate=0.10, gateway_status_rate=0.10, gateway_result_rate=0.10,
        server_error_rate=0.10, drop_status_rate=0.05, rate_limit_burst_rate=0.05, rate_limit_burst_size=4)))


@pytest.mark.parametrize("stream", [False, True], ids=["poll", "stream"])
def test_figure_faults_200_requests_all_complete_billed_once(faulty: EmulatorServer, tmp_path: Path,
                                                           stream: bool) -> None:
    emu = faulty.emulator
    assert isinstance(emu, CountingEmulator)
    prompts = [f"fault run {i}" for i in range(200)]
    client = Client(key="sk-test-faults", queue_url=faulty.url, cache=tmp_path / "cache", retry=FAST,
                    use_stream=stream, http_timeout=10.0)
    started = time.monotonic()
    try:
        results = client.generate_many(prompts, model=MODEL, size="256x256", seed=3, concurrency=16)
    finally:
        client.close()
    took = time.monotonic() - started
    errors = [r for r in results if isinstance(r, FalnbError)]
    completed = [r for r in results if not isinstance(r, FalnbError)]
    ledger = emu.ledger
    ids = {rid for g in completed for rid in g.request_ids}
    good_pictures = sum(1 for g in completed for img in g.images
                        if sniff(img.data)[1:] == (256, 256) and len(img.data) > 100)
    injected = dict(emu.counts)
    print(f"FIGURE faults ({'stream' if stream else 'poll'}): {len(completed)}/200 completed, "
          f"{ledger.submits} submits, billed {ledger.requests}, {good_pictures} pictures in hand, "
          f"{len(errors)} errors; faults injected {injected}; {took:.1f} s")
    assert not errors, errors[:3]
    assert len(completed) == 200 and good_pictures == 200
    assert ledger.submits == 200 and ledger.requests == 200 and len(ids) == 200
    # the billed requests are exactly the ones we hold pictures of: nothing paid and lost
    assert {e.request_id for e in ledger.entries} == ids
    # the faults really happened, each kind many times
    for kind in ("gateway", "500", "429") + (("dropped",) if not stream else ()):
        assert injected.get(kind, 0) >= 5, injected
    # and the prompts came back in order, each with its own picture
    assert [g.prompt for g in completed] == prompts


# -- 2. the lost submit answer --------------------------------------------------------------------


@pytest.fixture
def slow_submit(serve_emulator: Callable[..., EmulatorServer]) -> EmulatorServer:
    return serve_emulator(latency=0.05, concurrency=4, faults=Faults(submit_answer_delay=1.5))


def _wait_billed(emu: Emulator, n: int, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while emu.ledger.requests < n and time.monotonic() < deadline:
        time.sleep(0.05)


def test_figure_lost_submit_answer_is_never_sent_twice(slow_submit: EmulatorServer, tmp_path: Path) -> None:
    emu = slow_submit.emulator
    lines = []

    # without the cache: one call, one submit; the error says what happened and what to check
    plain = Client(key="sk-test-lost", queue_url=slow_submit.url, cache=False, retry=FAST, http_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(SubmitUncertainError) as info:
        plain.generate("a lighthouse, lost answer", model=MODEL, seed=1)
    took = time.monotonic() - started
    message = str(info.value)
    _wait_billed(emu, 1)
    lines.append(f"cache off: {emu.ledger.submits} submit, billed {emu.ledger.requests}, error after {took:.1f} s")
    assert emu.ledger.submits == 1 and emu.ledger.requests == 1
    assert took < 1.5
    for needed in ("was sent but its answer was lost (no answer within 0.5 s)", "may have queued it", "bill",
                   "http_timeout",
                   "did not send it again", "https://fal.ai/dashboard/requests", "refresh=True"):
        assert needed in message, (needed, message)
    assert "sk-test-lost" not in message
    plain.close()

    # with the cache: the journal remembers the unanswered submit; re-runs (a new client, a new
    # "kernel") refuse to send it again, until the user says refresh=True
    cache = tmp_path / "cache"
    first = Client(key="sk-test-lost", queue_url=slow_submit.url, cache=cache, retry=FAST, http_timeout=0.5)
    with pytest.raises(SubmitUncertainError):
        first.generate("a lighthouse, cached lost answer", model=MODEL, seed=1)
    first.close()
    rows = first.cache.journal() if first.cache else []
    assert [r["state"] for r in rows] == ["uncertain"], rows
    for _ in range(2):
        again = Client(key="sk-test-lost", queue_url=slow_submit.url, cache=cache, retry=FAST, http_timeout=0.5)
        with pytest.raises(SubmitUncertainError) as rerun:
            again.generate("a lighthouse, cached lost answer", model=MODEL, seed=1)
        again.close()
        assert "never learned fal's answer" in str(rerun.value) and "did not send it again" in str(rerun.value)
        assert "refresh=True" in str(rerun.value)
    _wait_billed(emu, 2)
    lines.append(f"cache on: 1 lost submit + 2 re-runs -> {emu.ledger.submits - 1} submit, "
                 f"billed {emu.ledger.requests - 1}; re-runs raised SubmitUncertainError without sending")
    assert emu.ledger.submits == 2 and emu.ledger.requests == 2

    # refresh=True is the user's explicit choice to pay again: it submits anew and stores the result
    emu.configure(submit_answer_delay=0.0)
    final = Client(key="sk-test-lost", queue_url=slow_submit.url, cache=cache, retry=FAST, http_timeout=0.5)
    gen = final.generate("a lighthouse, cached lost answer", model=MODEL, seed=1, refresh=True)
    final.close()
    assert gen.images and not gen.cached
    _wait_billed(emu, 3)
    lines.append(f"refresh=True afterwards: submits {emu.ledger.submits}, billed {emu.ledger.requests} "
                 "(the user chose to pay again)")
    print("FIGURE lost submit: " + "; ".join(lines))
    print("FIGURE lost submit message: " + message.replace("\n", " | "))
    assert emu.ledger.submits == 3
