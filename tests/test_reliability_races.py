"""Figure 4: two processes on one cache directory, at the same moment.

* the same 50 requests in both: 50 submits, 50 billed; both processes end with all 50 pictures;
* 2 x 60 different requests written at once: every entry intact afterwards (files checked against
  their SHA-256, SQLite's integrity check, no temporary file left, no warning).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from falnb.cache._index import CacheWarning
from falnb.cache._store import ResponseCache
from falnb.emulator import EmulatorServer

from ._procs.runner import finish_child, start_child

KEY = "sk-test-race"


@pytest.fixture
def server(serve_emulator: Callable[..., EmulatorServer]) -> EmulatorServer:
    return serve_emulator(latency=0.1, concurrency=16)


def _both(server: EmulatorServer, cache_dir: Path, prompts_a: list[str], prompts_b: list[str]) -> tuple[list, list]:
    start_at = time.time() + 1.0  # both have imported falnb by then: they start together
    base = {"url": server.url, "key": KEY, "many": True, "concurrency": 8, "start_at": start_at}
    a = start_child({**base, "prompts": prompts_a}, cache_dir)
    b = start_child({**base, "prompts": prompts_b}, cache_dir)
    (code_a, _, res_a), (code_b, _, res_b) = finish_child(a), finish_child(b)
    assert code_a == 0 and code_b == 0
    return res_a, res_b


def test_figure_races_two_processes_same_50_requests_bill_50(server: EmulatorServer, tmp_path: Path) -> None:
    emu = server.emulator
    prompts = [f"race {i}" for i in range(50)]
    res_a, res_b = _both(server, tmp_path / "cache", prompts, prompts)
    errors = [r for r in res_a + res_b if "error" in r]
    assert not errors, errors[:3]
    ids_a = [r["request_ids"][0] for r in res_a]
    ids_b = [r["request_ids"][0] for r in res_b]
    from_cache = sum(r["cached"] for r in res_a + res_b)
    print(f"FIGURE races: 2 processes x 50 identical requests: {emu.ledger.submits} submits, billed "
          f"{emu.ledger.requests}; {len(res_a)}+{len(res_b)} results with pictures, {from_cache} of them "
          "taken from the other process's cache entry")
    assert emu.ledger.submits == 50 and emu.ledger.requests == 50
    assert ids_a == ids_b  # the same fal request behind each prompt in both processes
    assert [r["images"] for r in res_a] == [r["images"] for r in res_b]
    assert all(len(r["images"]) == 1 for r in res_a)


def test_figure_races_two_processes_writing_the_cache_at_once(server: EmulatorServer, tmp_path: Path) -> None:
    emu = server.emulator
    cache_dir = tmp_path / "cache"
    res_a, res_b = _both(server, cache_dir, [f"writer A {i}" for i in range(60)], [f"writer B {i}" for i in range(60)])
    assert not [r for r in res_a + res_b if "error" in r]
    cache = ResponseCache(cache_dir, namespace="fal")
    entries = cache.entries()
    shas = {r["prompt"]: r["images"][0][0] for r in res_a + res_b}
    intact = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        for info in entries:
            entry = cache.get(info.key)
            assert entry is not None and len(entry.images) == 1
            assert hashlib.sha256(entry.images[0].data).hexdigest() == shas[info.prompt]
            intact += 1
    with sqlite3.connect(cache_dir / "index.sqlite3") as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        journal = db.execute("SELECT state, COUNT(*) FROM journal GROUP BY state").fetchall()
    leftovers = [p for p in cache_dir.rglob("*") if p.name.startswith(".tmp")]
    objects = [p for p in (cache_dir / "objects").rglob("*") if p.is_file()]
    print(f"FIGURE races: 2 processes writing 60 entries each at once: {intact}/{len(entries)} entries intact "
          f"(SHA-256 checked), {len(objects)} image files, integrity_check {integrity!r}, journal {journal}, "
          f"{len(leftovers)} temporary files left; billed {emu.ledger.requests}")
    assert len(entries) == 120 and intact == 120 and len(objects) == 120
    assert integrity == "ok" and not leftovers
    assert emu.ledger.requests == 120 and emu.ledger.submits == 120
