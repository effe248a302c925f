"""Figure 6: 1,000 requests in one process, cache on and cache off: nothing grows without bound.

The in-process emulator (zero latency) answers.  After a warm-up (connections, the SQLite index,
``Client.history`` and the plan memo full at their caps), 1,000 more requests must not grow the threads, the open file
descriptors, the tasks on falnb's loop, or the live objects falnb makes per request (generations,
images, httpx responses...: a census with ``gc``); the process's RSS must stay within a bound (the
emulator's own caches, the other side of the wire, are emptied before each reading).
"""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import threading
import time
from pathlib import Path

import pytest

from falnb import Client
from falnb.emulator import Emulator
from falnb.fal._loop import get_loop

#: object types whose live count would grow with a per-request leak
WATCHED = {"Generation", "Image", "_Part", "Submitted", "Status", "ProgressTracker", "FalRequest", "Plan",
           "Response", "Request", "Task", "Future", "Slot", "InFlight", "CacheEntry", "Reservation"}


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


def _census() -> collections.Counter[str]:
    gc.collect()
    return collections.Counter(name for o in gc.get_objects() if (name := type(o).__name__) in WATCHED)


def _reading(emu: Emulator) -> dict[str, object]:
    from falnb.emulator import _images

    emu.reset()  # the emulator's jobs and file plans: the other side of the wire
    with _images._lock:
        _images._CACHE.clear()
        _images._cache_bytes = 0
    loop = get_loop()
    tasks = asyncio.run_coroutine_threadsafe(_count_tasks(), loop).result(5)
    return {"rss": _status("VmRSS"), "threads": _status("Threads"), "py_threads": threading.active_count(),
            "fds": len(os.listdir("/proc/self/fd")), "tasks": tasks, "census": _census()}


async def _count_tasks() -> int:
    return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])


@pytest.mark.parametrize("cache", [True, False], ids=["cache-on", "cache-off"])
def test_figure_longrun_1000_requests_no_growth(cache: bool, tmp_path: Path) -> None:
    emu = Emulator(latency=0.0, concurrency=64, retention=2.0)
    client = Client(offline=True, emulator=emu, cache=tmp_path / "cache" if cache else False)
    billed = 0

    def batch(start: int, n: int = 100) -> None:
        nonlocal billed
        already = emu.ledger.requests
        results = client.generate_many([f"long run {i}" for i in range(start, start + n)], model="flux-schnell",
                                       size="64x64", seed=1, concurrency=16)
        assert all(len(r) == 1 for r in results), [r for r in results if not hasattr(r, "images")][:2]
        billed += emu.ledger.requests - already

    try:
        batch(0, 200)  # warm-up: pools, the index, history at its cap
        before = _reading(emu)
        started = time.monotonic()
        for k in range(10):
            batch(200 + 100 * k)
        took = time.monotonic() - started
        after = _reading(emu)
    finally:
        client.close()
    grew = {k: after["census"][k] - before["census"][k]  # type: ignore[index]
            for k in WATCHED if after["census"][k] != before["census"][k]}  # type: ignore[index]
    rss_growth = (after["rss"] - before["rss"]) / 1024  # type: ignore[operator]
    label = "cache on" if cache else "cache off"
    print(f"FIGURE longrun ({label}): 1000 requests in {took:.1f} s; RSS {before['rss'] / 1024:.1f} -> "  # type: ignore[operator]
          f"{after['rss'] / 1024:.1f} MB ({rss_growth:+.1f}); threads {before['threads']} -> {after['threads']}; "
          f"open fds {before['fds']} -> {after['fds']}; pending tasks {before['tasks']} -> {after['tasks']}; "
          f"live per-request objects {dict(after['census'])} (change {grew or 'none'}); billed {billed}")
    assert billed == 1200
    assert after["threads"] <= before["threads"] and after["py_threads"] <= before["py_threads"], "threads grew"  # type: ignore[operator]
    assert after["fds"] <= before["fds"], "file descriptors leaked"  # type: ignore[operator]
    assert after["tasks"] == 0
    assert all(v <= 5 for v in grew.values()), grew
    assert rss_growth < 16, f"RSS grew by {rss_growth:.1f} MB"
