"""Budgets: amounts as people write them, a check that reads running sums (not the ledger), and
reservations every process sees, turned into spend or released atomically, a dead process's dropped.

The cross-process case (six processes started together on one cache folder) is
``tests/defects/test_mistakes_cost_nothing.py::test_defect_11_total_budget_holds_across_processes_started_together``.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from falnb import BudgetExceededError, ConfigError, FalnbError
from falnb.cache._owners import HOST, _proc_stat
from falnb.cache._store import ResponseCache
from falnb.emulator import Emulator

from .test_cache import _new_session, offline  # noqa: F401 - (_new_session: each test a fresh session)

KW: dict[str, Any] = {"model": "flux-ultra", "seed": 7}  # ~$0.06 a picture


def reservations(cache: ResponseCache) -> list[tuple[Any, ...]]:
    """What requests in flight hold (a group's row, drawn down to nothing, goes when its Run ends)."""
    return cache._index.conn().execute("SELECT ns, cost, pid FROM reservations WHERE cost > 1e-12").fetchall()


# -- amounts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "amount"), [("5", 5.0), ("$5", 5.0), ("5 USD", 5.0), ("USD 5", 5.0), ("US$5", 5.0),
                                             ("0.5", 0.5), (" 5$ ", 5.0), ("-0", 0.0), ("1e2", 100.0), ("", None),
                                             ("none", None), ("OFF", None)])
def test_budget_amounts_as_people_write_them(raw: str, amount: float | None,
                                             monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FALNB_BUDGET_SESSION", raw)
    got = ResponseCache(tmp_path).ledger.budget_session
    assert got == amount and (got is None or str(got) != "-0.0")


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "1e999", "-1", "5 EUR", "five", "$", "5,00", "0x10"])
def test_budget_values_that_are_not_amounts_refuse_before_sending(raw: str, emulator: Emulator,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FALNB_BUDGET_SESSION", "FALNB_BUDGET_TOTAL"):
        monkeypatch.setenv(name, raw)
        with pytest.raises(ConfigError) as err:
            offline(emulator).generate("a lighthouse", **KW)
        assert name in str(err.value) and len(str(err.value).splitlines()) <= 3
        monkeypatch.delenv(name)
    assert emulator.ledger.submits == 0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, "5", True])
def test_budget_set_in_python_must_be_an_amount(value: object, tmp_path: Path) -> None:
    ledger = ResponseCache(tmp_path).ledger
    with pytest.raises(ConfigError):
        ledger.budget_total = value  # type: ignore[assignment]
    with pytest.raises(ConfigError):
        ResponseCache(tmp_path, budget_session=value)


# -- O(1): running sums, never the ledger --------------------------------------------------------------


@contextmanager
def counting(c: sqlite3.Connection) -> Iterator[list[int]]:
    """``[n]``: the SQLite virtual-machine steps run on ``c`` inside the block (what another process's
    writer waits for, when it is a write transaction)."""
    n = [0]

    def count() -> int:
        n[0] += 1
        return 0

    c.set_progress_handler(count, 1)
    try:
        yield n
    finally:
        c.set_progress_handler(None, 1)


def _steps(cache: ResponseCache, fn: Callable[[], object]) -> int:
    with counting(cache._index.conn()) as n:
        fn()
    return n[0]


def test_a_budget_check_does_not_read_the_ledger(tmp_path: Path) -> None:
    """With 1,000 and with 100,000 ledger rows, a check and a hold run the same few SQLite steps (summing
    the ledger would take hundreds of thousands), and the totals are right."""
    cache = ResponseCache(tmp_path, "emulator", budget_total=1000.0, budget_session=1000.0)
    figures = []
    for rows in (1_000, 99_000):
        with cache._index.write() as c:
            c.executemany("INSERT INTO ledger(ts, ns, kind, model, cost, pid) VALUES(?, 'emulator', 'paid', 'm', "
                          "0.001, 1)", [(time.time(),)] * rows)

        def check_and_hold() -> None:
            cache.ledger.check_budget(0.01)
            cache.ledger.reserve(0.01, model="m").release()

        figures.append(_steps(cache, check_and_hold))
    assert cache.ledger.total().requests == 100_000 and cache.ledger.total().paid == pytest.approx(100.0)
    assert figures[0] == figures[1] and figures[1] < 1_000, figures


def test_an_index_of_version_1_gets_its_totals_once(tmp_path: Path) -> None:
    """A cache folder written by an earlier falnb (no running sums): the sums are computed on opening."""
    tmp_path.mkdir(exist_ok=True)
    db = sqlite3.connect(str(tmp_path / "index.sqlite3"), isolation_level=None)
    db.execute("CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID")
    db.execute("INSERT INTO meta VALUES('schema', '1')")
    db.execute("CREATE TABLE ledger(id INTEGER PRIMARY KEY, ts REAL NOT NULL, ns TEXT NOT NULL, kind TEXT NOT NULL, "
               "model TEXT, request_id TEXT, cost REAL, count INTEGER NOT NULL DEFAULT 1, "
               "unknown INTEGER NOT NULL DEFAULT 0, pid INTEGER)")
    db.executemany("INSERT INTO ledger(ts, ns, kind, cost, count, unknown) VALUES(0, ?, ?, ?, ?, ?)",
                   [("fal", "paid", 0.25, 1, 0), ("fal", "paid", None, 1, 1), ("fal", "saved", 0.5, 4, 0),
                    ("emulator", "paid", 7.0, 1, 0)])
    db.close()
    total = ResponseCache(tmp_path, "fal").ledger.total()
    assert (total.paid, total.requests, total.unknown, total.saved, total.hits) == (0.25, 2, 1, 0.5, 4)
    assert ResponseCache(tmp_path, "emulator").ledger.total().paid == 7.0


# -- reservations ----------------------------------------------------------------------------------------


@pytest.fixture
def other_process() -> Iterator[Callable[[bool], tuple[int, str | None]]]:
    """(pid, start time) of another process on this host: alive (sleeping) or already gone."""
    procs: list[subprocess.Popen[bytes]] = []

    def make(alive: bool) -> tuple[int, str | None]:
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        procs.append(p)
        stat = None
        while stat is None:  # (/proc/PID/stat exists as soon as Popen returns; this is no timing loop)
            stat = _proc_stat(p.pid)
        if not alive:
            p.kill()
            p.wait()
        return p.pid, stat[1]

    yield make
    for p in procs:
        p.kill()
        p.wait()


def _held_elsewhere(cache: ResponseCache, pid: int, pstart: str | None, cost: float) -> None:
    with cache._index.write() as c:
        c.execute("INSERT INTO reservations(token, ns, cost, pid, pstart, host, created) VALUES(?, ?, ?, ?, ?, ?, ?)",
                  (f"other-{pid}", cache.namespace, cost, pid, pstart, HOST, time.time()))


def test_what_another_live_process_holds_counts_against_the_total(emulator: Emulator, tmp_path: Path,
                                                                  other_process: Any) -> None:
    cache = ResponseCache(tmp_path, "emulator", budget_total=0.10)
    _held_elsewhere(cache, *other_process(True), 0.06)
    with pytest.raises(BudgetExceededError, match=r"\$0\.06 held by requests in flight"):
        offline(emulator, cache=cache).generate("a lighthouse", **KW)
    assert emulator.ledger.submits == 0 and len(reservations(cache)) == 1


def test_what_a_dead_process_held_is_dropped(emulator: Emulator, tmp_path: Path, other_process: Any) -> None:
    cache = ResponseCache(tmp_path, "emulator", budget_total=0.10)
    _held_elsewhere(cache, *other_process(False), 0.06)
    # a pid reused by another process: gone too
    _held_elsewhere(cache, other_process(True)[0], "not its start time", 0.06)
    offline(emulator, cache=cache).generate("a lighthouse", **KW)
    assert emulator.ledger.submits == 1 and reservations(cache) == []


def test_paid_requests_leave_no_reservation_and_count_once(emulator: Emulator, tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path, "emulator", budget_total=1.0)
    client = offline(emulator, cache=cache)
    run = client.start([client.plan("a lighthouse", **KW), client.plan("a fox", **KW)])
    run.wait()
    assert reservations(cache) == []  # each hold became spend, in the transaction that recorded it
    assert cache.ledger.total().paid == pytest.approx(0.12) and cache.ledger.total().requests == 2
    client.generate("a lighthouse", **KW)  # a hit: nothing held, nothing spent
    assert reservations(cache) == [] and cache.ledger.total().requests == 2


def test_a_request_that_fails_releases_its_hold(emulator: Emulator, tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path, "emulator", budget_total=1.0)
    with pytest.raises(FalnbError):  # fal refuses it (content policy): a 422 after the submit
        offline(emulator, cache=cache).generate("a forbidden-content lighthouse", **KW)
    assert reservations(cache) == []


def test_a_run_refused_whole_holds_nothing(emulator: Emulator, tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path, "emulator", budget_total=0.10)
    client = offline(emulator, cache=cache)
    with pytest.raises(BudgetExceededError):
        client.start([client.plan("a lighthouse", **KW), client.plan("a fox", **KW)]).wait()
    assert emulator.ledger.submits == 0 and reservations(cache) == []


def test_the_session_budget_is_this_process_alone(emulator: Emulator, tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path, "emulator", budget_session=0.10)
    with cache._index.write() as c:  # another process spent through this folder: not this session's spend
        c.execute("INSERT INTO ledger(ts, ns, kind, cost, pid) VALUES(?, 'emulator', 'paid', 5.0, ?)",
                  (time.time(), os.getpid() + 1))
    offline(emulator, cache=cache).generate("a lighthouse", **KW)
    assert emulator.ledger.submits == 1 and reservations(cache) == []  # (a session budget holds nothing on disk)
