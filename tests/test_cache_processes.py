"""Pay once across processes: separate Python processes share one cache directory and reach the
emulator over real HTTP (``FALNB_QUEUE_URL``), and the emulator's billing ledger is the judge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from falnb.cache._store import ResponseCache
from falnb.emulator import Emulator, EmulatorServer

from ._clock import SwitchClock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and /proc")

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import json, sys
from falnb import Client
from falnb.fal._queue import RetryPolicy
prompt, refresh = sys.argv[1], sys.argv[2] == "1"
client = Client(retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, submit_attempts=3))
gen = client.generate(prompt, model="flux-schnell", n=2, seed=3, size="512x512", refresh=refresh)
print(json.dumps({"cached": gen.cached, "ids": gen.request_ids, "n": len(gen.images),
                  "sizes": [len(i.data) for i in gen.images]}))
"""


@pytest.fixture
def server(serve_emulator: Callable[..., EmulatorServer]) -> EmulatorServer:
    return serve_emulator(latency=0.05, concurrency=8)


def _env(server: EmulatorServer) -> dict[str, str]:
    env = dict(os.environ)
    env.update(FALNB_QUEUE_URL=server.url, FAL_KEY="test", PYTHONPATH=str(ROOT))
    return env


def start(server: EmulatorServer, prompt: str = "a lighthouse", refresh: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, prompt, "1" if refresh else "0"], env=_env(server),
                            cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def test_separate_processes_bill_once(server: EmulatorServer) -> None:
    first = finish(start(server))
    second = finish(start(server))
    assert not first["cached"] and second["cached"]
    assert second["ids"] == first["ids"] and second["sizes"] == first["sizes"] and second["n"] == 2
    assert server.emulator.ledger.submits == 1 and server.emulator.ledger.requests == 1
    third = finish(start(server, refresh=True))  # refresh pays again, in another process too
    assert not third["cached"] and server.emulator.ledger.submits == 2


def test_a_process_killed_right_after_submit_is_not_paid_twice(serve_emulator: Callable[..., EmulatorServer]) -> None:
    clock = SwitchClock()
    clock.freeze()  # fal's clock stands still (the request stays in flight) until the kill is done
    server = serve_emulator(Emulator(latency=2.0, concurrency=8, clock=clock))
    emu = server.emulator
    child = start(server)
    cache = ResponseCache()
    deadline = time.monotonic() + 20
    journaled: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not journaled:
        time.sleep(0.02)
        if (cache.directory / "index.sqlite3").exists():
            journaled = [r for r in cache.journal("*") if r["request_id"]]
    assert journaled, "the child never journaled its request id"
    assert journaled[0]["state"] == "submitted" and journaled[0]["pid"] == child.pid
    os.kill(child.pid, signal.SIGKILL)  # killed while polling, before any picture arrived
    child.communicate()
    assert emu.ledger.submits == 1 and emu.ledger.requests == 0
    clock.tick(2.0)  # then it moves on from the request's end: done, billed when fetched
    clock.thaw()

    again = finish(start(server))  # same request, new process: re-attaches to the journaled id
    assert again["ids"] == [journaled[0]["request_id"]] and again["n"] == 2 and not again["cached"]
    assert emu.ledger.submits == 1 and emu.ledger.requests == 1
    assert cache.journal("*") == []
    assert finish(start(server))["cached"]
    assert emu.ledger.submits == 1


def test_two_processes_racing_on_one_request_bill_once(server: EmulatorServer) -> None:
    server.emulator.configure(latency=1.0)
    racers = [start(server, "a race"), start(server, "a race"), start(server, "a race")]
    results = [finish(p) for p in racers]
    assert server.emulator.ledger.submits == 1 and server.emulator.ledger.requests == 1
    assert sorted(r["cached"] for r in results) == [False, True, True]
    assert len({json.dumps(r["sizes"]) for r in results}) == 1 and all(r["n"] == 2 for r in results)
