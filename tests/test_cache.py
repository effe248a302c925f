"""The pay-once cache, the in-flight journal and the ledger, in one process, against the emulator's billing.

The emulator's ledger (``emu.ledger.submits``: submits fal accepted, ``.requests``: billed) is the
judge: a cache that works is one that makes fal bill less.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import stat
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from falnb import BudgetExceededError, Client, SubmitUncertainError
from falnb.cache._slot import Slot, leave_action
from falnb.cache._store import CacheWarning, ResponseCache, default_directory
from falnb.cache._units import parse_age, parse_bytes
from falnb.emulator import Emulator, serve
from falnb.fal._queue import RetryPolicy

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, submit_attempts=3)
PROMPT = "a lighthouse at dusk"
KW: dict[str, Any] = {"model": "flux-schnell", "n": 2, "seed": 7, "size": "512x512"}


@pytest.fixture(autouse=True)
def _new_session(monkeypatch: pytest.MonkeyPatch) -> None:
    from falnb.cache import _session

    monkeypatch.setattr(_session, "_SESSION", _session._Session())  # each test is a fresh session


@pytest.fixture
def emu() -> Emulator:
    return Emulator(latency=0.01, concurrency=8)


def offline(emu: Emulator, **kw: Any) -> Client:
    return Client(offline=True, emulator=emu, retry=FAST, **kw)


def cache_dir() -> Path:
    return default_directory()


def db(path: Path | None = None) -> sqlite3.Connection:
    return sqlite3.connect(str((path or cache_dir()) / "index.sqlite3"), isolation_level=None)


def object_files(root: Path | None = None) -> list[Path]:
    return sorted(p for p in ((root or cache_dir()) / "objects").rglob("*") if p.is_file())


# -- pay once -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["inproc", "http"])
def test_same_request_twice_bills_once(emu: Emulator, kind: str) -> None:
    server = serve(port=0, emulator=emu) if kind == "http" else None
    client = offline(emu) if server is None else Client(key="test", queue_url=server.url, retry=FAST)
    try:
        first = client.generate(PROMPT, **KW)
        second = client.generate(PROMPT, **KW)
    finally:
        client.close()
        if server is not None:
            server.close()
    assert emu.ledger.submits == 1 and emu.ledger.requests == 1
    assert not first.cached and second.cached
    assert second.saved == pytest.approx(first.cost)
    assert [i.data for i in second.images] == [i.data for i in first.images]
    assert [(i.width, i.height, i.content_type) for i in second.images] == \
        [(i.width, i.height, i.content_type) for i in first.images]
    assert second.request_ids == first.request_ids
    assert second.seed == first.seed == 7


def test_a_new_client_and_any_cell_hit_the_same_entry(emu: Emulator) -> None:
    offline(emu).generate(PROMPT, **KW)
    again = offline(emu).generate(PROMPT, **KW)  # a "restarted kernel": new client, same directory
    assert again.cached and emu.ledger.submits == 1
    other = offline(emu).generate(PROMPT, **{**KW, "seed": 8})
    assert not other.cached and emu.ledger.submits == 2


def test_refresh_pays_again_and_replaces_the_entry(emu: Emulator) -> None:
    client = offline(emu)
    client.generate(PROMPT, **KW)
    key = client.plan(PROMPT, **KW).requests[0].key
    rid_before = client.cache.get(key).request_id  # type: ignore[union-attr]
    fresh = client.generate(PROMPT, **KW, refresh=True)
    assert not fresh.cached and emu.ledger.submits == 2 and emu.ledger.requests == 2
    assert client.cache.get(key).request_id == fresh.request_ids[0] != rid_before  # type: ignore[union-attr]
    assert client.generate(PROMPT, **KW).cached and emu.ledger.submits == 2


def test_cache_false_bills_every_time_and_stores_nothing(emu: Emulator) -> None:
    client = offline(emu)
    for _ in range(3):
        assert not client.generate(PROMPT, **KW, cache=False).cached
    assert emu.ledger.submits == 3
    assert client.cache.entries() == [] and client.cache.journal("*") == []  # type: ignore[union-attr]
    assert object_files() == []
    # the spend is still booked (budgets hold with cache=False)
    assert client.cache.ledger.total().requests == 3  # type: ignore[union-attr]


def test_client_without_cache_touches_no_directory(emu: Emulator) -> None:
    client = offline(emu, cache=False)
    assert client.cache is None
    client.generate(PROMPT, **KW)
    client.generate(PROMPT, **KW)
    assert emu.ledger.submits == 2
    assert not cache_dir().exists()


def test_emulator_pictures_are_never_served_as_fal_pictures(emu: Emulator) -> None:
    offline(emu).generate(PROMPT, **KW)
    with serve(port=0, emulator=emu) as server:
        real = Client(key="test", queue_url=server.url, retry=FAST)
        assert not real.generate(PROMPT, **KW).cached
        assert real.generate(PROMPT, **KW).cached
        real.close()
    assert emu.ledger.submits == 2
    # a ResponseCache handed to an offline client is used through the emulator's namespace
    shared = ResponseCache(namespace="fal")
    assert offline(emu, cache=shared).cache.namespace == "emulator"  # type: ignore[union-attr]


def test_a_hit_needs_no_key_and_no_network(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(port=0, emulator=emu) as server:
        with Client(key="test", queue_url=server.url, retry=FAST) as paying:
            paying.generate(PROMPT, **KW)
    # the server is gone and there is no key anywhere: a hit still works
    client = Client(queue_url=server.url, retry=FAST)
    gen = client.generate(PROMPT, **KW)
    assert gen.cached and len(gen.images) == 2
    assert client._engine._queue is None  # no HTTP client was even made


def test_same_request_twice_at_once_in_one_process_submits_once(emu: Emulator) -> None:
    emu.configure(latency=0.3)
    client = offline(emu)
    out = client.generate_many([PROMPT, PROMPT, PROMPT], **KW)
    assert emu.ledger.submits == 1
    assert sorted(g.cached for g in out) == [False, True, True]  # type: ignore[union-attr]
    assert len({tuple(i.data for i in g.images) for g in out}) == 1  # type: ignore[union-attr]


# -- damaged entries are detected, reported once, and regenerated ------------------------------------


def _damage_first_image(how: str) -> None:
    path = object_files()[0]
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped":
        path.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif how == "missing":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")


def _damage_row(how: str) -> None:
    with db() as c:
        if how == "garbage-json":
            c.execute("UPDATE entries SET response='{not json'")
        elif how == "garbage-images":
            c.execute("UPDATE entries SET images='garbage'")
        elif how == "hostile-path":
            c.execute("UPDATE entries SET images=?", (json.dumps([{"sha": "../../../../etc/passwd" + "0" * 42,
                                                                   "size": 10, "type": "image/png", "w": 1, "h": 1,
                                                                   "url": None, "seed": None}]),))
        elif how == "wrong-type":
            c.execute("UPDATE entries SET response='[1, 2]', used='yesterday', request_id=7")


@pytest.mark.parametrize("how", ["truncated", "flipped", "missing", "empty", "garbage-json", "garbage-images",
                                 "hostile-path", "wrong-type"])
def test_damaged_entry_is_reported_and_regenerated(emu: Emulator, how: str) -> None:
    client = offline(emu)
    first = client.generate(PROMPT, **KW)
    time.sleep(0.01)  # a rewritten file gets a new mtime
    if how in ("truncated", "flipped", "missing", "empty"):
        _damage_first_image(how)
    else:
        _damage_row(how)
    with pytest.warns(CacheWarning, match="damaged"):
        again = client.generate(PROMPT, **KW)
    assert not again.cached and emu.ledger.submits == 2
    assert [i.data for i in again.images] == [i.data for i in first.images]  # the emulator is deterministic
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        healed = client.generate(PROMPT, **KW)  # the index was healed: a clean hit, no warning
    assert healed.cached and emu.ledger.submits == 2


def test_a_garbage_index_file_is_set_aside(emu: Emulator) -> None:
    from falnb.cache import _index as _cache_db

    offline(emu).generate(PROMPT, **KW)
    _cache_db._INDEXES.clear()  # as a new process would see it
    for suffix in ("-wal", "-shm"):
        Path(str(cache_dir() / "index.sqlite3") + suffix).unlink(missing_ok=True)
    (cache_dir() / "index.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.warns(CacheWarning, match="damaged"):
        gen = offline(emu).generate(PROMPT, **KW)
    assert not gen.cached and emu.ledger.submits == 2
    assert list(cache_dir().glob("index.sqlite3.corrupt-*"))
    assert offline(emu).generate(PROMPT, **KW).cached


def test_a_failed_store_warns_and_keeps_the_pictures(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*a: Any, **k: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ResponseCache, "_store_object", full)
    with pytest.warns(CacheWarning, match="No space left"):
        gen = offline(emu).generate(PROMPT, **KW)
    assert len(gen.images) == 2 and not gen.cached


# -- budgets: refused before anything is sent ----------------------------------------------------------


def test_session_budget_refuses_before_sending(emu: Emulator) -> None:
    client = offline(emu, cache=ResponseCache(budget_session=0.001))
    with pytest.raises(BudgetExceededError) as err:
        client.generate(PROMPT, model="flux-ultra", n=4)
    assert emu.ledger.submits == 0
    text = str(err.value)
    assert "session budget of $0.00" in text and "nothing was sent" in text and "FALNB_BUDGET_SESSION" in text


def test_budget_from_env_counts_what_this_session_spent(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    client = offline(emu)
    client.generate(PROMPT, model="flux-ultra", n=2)  # $0.12
    spent = client.cache.ledger.session().paid  # type: ignore[union-attr]
    monkeypatch.setenv("FALNB_BUDGET_SESSION", f"{spent + 0.1:.4f}")
    assert client.generate(PROMPT, model="flux-ultra", n=2).cached  # a hit costs nothing: allowed
    with pytest.raises(BudgetExceededError, match=r"spent \$\d+\.\d{2,3} so far in this session"):
        client.generate("another", model="flux-ultra", n=2)
    assert emu.ledger.submits == 1


def test_total_budget_counts_every_process(emu: Emulator) -> None:
    client = offline(emu, cache=ResponseCache(budget_total=0.10))
    client.cache._index.conn()  # type: ignore[union-attr]
    with db() as c:  # another process spent $0.08 through this directory
        c.execute("INSERT INTO ledger(ts, ns, kind, model, cost, pid) VALUES(?, 'emulator', 'paid', 'x', 0.08, 1)",
                  (time.time(),))
    with pytest.raises(BudgetExceededError, match=r"total budget of \$0\.10.*\$0\.08 in total"):
        client.generate(PROMPT, model="flux-ultra", n=1)
    assert emu.ledger.submits == 0
    client.cache.ledger.budget_total = 1.0  # type: ignore[union-attr]
    client.generate(PROMPT, model="flux-ultra", n=1)
    assert emu.ledger.submits == 1


def test_a_call_that_would_cross_the_budget_is_refused_whole(emu: Emulator) -> None:
    # recraft has no num_images: n=3 is three requests of $0.04; the budget fits two of them
    client = offline(emu, cache=ResponseCache(budget_session=0.09))
    with pytest.raises(BudgetExceededError):
        client.generate(PROMPT, model="recraft", n=3)
    assert emu.ledger.submits == 0
    client.cache.ledger.budget_session = 0.13  # type: ignore[union-attr]
    client.generate(PROMPT, model="recraft", n=3)
    assert emu.ledger.submits == 3


def test_a_request_of_unknown_price_is_refused_while_a_budget_is_set(emu: Emulator) -> None:
    client = offline(emu, cache=ResponseCache(budget_session=100))
    with pytest.raises(BudgetExceededError, match="no known price"):
        client.generate(PROMPT, model="fal-ai/some-new/model")
    assert emu.ledger.submits == 0


def test_ledger_books_spend_and_savings(emu: Emulator) -> None:
    client = offline(emu)
    a = client.generate(PROMPT, **KW)
    client.generate(PROMPT, **KW)
    client.generate(PROMPT, **KW)
    ledger = client.cache.ledger  # type: ignore[union-attr]
    total = ledger.total()
    assert total.requests == 1 and total.paid == pytest.approx(a.cost)
    assert total.hits == 2 and total.saved == pytest.approx(2 * (a.cost or 0))
    with db() as c:
        rows = c.execute("SELECT kind, request_id, cost FROM ledger WHERE kind='paid'").fetchall()
    assert rows == [("paid", a.request_ids[0], pytest.approx(a.cost))]


# -- the journal ---------------------------------------------------------------------------------------


def _journal_row(key: str, state: str, request_id: str | None = None, age: float = 0.0, pid: int = 0,
                 model: str = "fal-ai/flux/schnell", ns: str = "emulator") -> None:
    t = time.time() - age
    with db() as c:
        c.execute("INSERT OR REPLACE INTO journal(ns, key, model, state, request_id, pid, host, started, sent, "
                  "updated) VALUES(?, ?, ?, ?, ?, ?, 'elsewhere', ?, ?, ?)",
                  (ns, key, model, state, request_id, pid, t, t, t))


def test_a_journaled_request_is_reattached_instead_of_paid_again(emu: Emulator) -> None:
    client = offline(emu)
    req = client.plan(PROMPT, **KW).requests[0]
    client.cache._index.conn()  # type: ignore[union-attr]  # create the index
    queue = client._engine.queue()

    async def submit() -> str:
        return (await queue.submit(req.model, req.input)).request_id

    from falnb.fal._loop import run_sync

    rid = run_sync(submit())  # a process submitted it, then died (pid 0: no owner)
    _journal_row(req.key, "submitted", rid)
    gen = client.generate(PROMPT, **KW)
    assert gen.request_ids == [rid] and not gen.cached
    assert emu.ledger.submits == 1 and emu.ledger.requests == 1
    assert client.cache.journal("*") == []  # type: ignore[union-attr]
    assert client.generate(PROMPT, **KW).cached


def test_a_journaled_request_fal_dropped_is_submitted_anew(emu: Emulator) -> None:
    client = offline(emu)
    req = client.plan(PROMPT, **KW).requests[0]
    client.cache._index.conn()  # type: ignore[union-attr]
    _journal_row(req.key, "submitted", "00000000-dead-beef-0000-000000000000")
    gen = client.generate(PROMPT, **KW)
    assert not gen.cached and emu.ledger.submits == 1
    assert gen.request_ids[0] != "00000000-dead-beef-0000-000000000000"


def test_a_stale_sending_claim_is_never_resubmitted_silently(emu: Emulator) -> None:
    client = offline(emu)
    req = client.plan(PROMPT, **KW).requests[0]
    client.cache._index.conn()  # type: ignore[union-attr]
    _journal_row(req.key, "sending", age=120)  # died while its submit was on the wire, 2 min ago
    with pytest.raises(SubmitUncertainError, match="never learned fal's answer") as err:
        client.generate(PROMPT, **KW)
    assert "refresh=True" in str(err.value)
    assert emu.ledger.submits == 0
    with pytest.raises(SubmitUncertainError):  # still refused: the row is kept until the user decides
        client.generate(PROMPT, **KW)
    gen = client.generate(PROMPT, **KW, refresh=True)
    assert not gen.cached and emu.ledger.submits == 1


def test_a_sending_claim_older_than_fal_retention_is_resubmitted_with_a_warning(emu: Emulator) -> None:
    client = offline(emu)
    req = client.plan(PROMPT, **KW).requests[0]
    client.cache._index.conn()  # type: ignore[union-attr]
    _journal_row(req.key, "uncertain", age=2 * 3600)
    with pytest.warns(CacheWarning, match="no longer holds a result that old"):
        gen = client.generate(PROMPT, **KW)
    assert not gen.cached and emu.ledger.submits == 1


def test_a_live_owner_is_waited_for_and_a_dead_one_is_not(emu: Emulator) -> None:
    client = offline(emu)
    req = client.plan(PROMPT, **KW).requests[0]
    client.cache._index.conn()  # type: ignore[union-attr]
    # a live process (ours, pid 1: alive, heartbeat fresh) on another host holds the claim
    _journal_row(req.key, "claimed", pid=1)
    from falnb import RequestTimeoutError

    with pytest.raises(RequestTimeoutError, match="another process"):
        client.generate(PROMPT, **KW, timeout=0.3)
    assert emu.ledger.submits == 0
    _journal_row(req.key, "claimed", pid=1, age=600)  # its heartbeat stopped 10 min ago: gone
    assert not client.generate(PROMPT, **KW).cached and emu.ledger.submits == 1


def test_submit_uncertain_leaves_an_uncertain_row(emu: Emulator) -> None:
    emu.configure(submit_answer_delay=2.0)
    client = offline(emu, http_timeout=0.3)
    with pytest.raises(SubmitUncertainError):
        client.generate(PROMPT, **KW)
    rows = client.cache.journal("*")  # type: ignore[union-attr]
    assert [(r["state"], r["request_id"], r["pid"]) for r in rows] == [("uncertain", None, 0)]
    with pytest.raises(SubmitUncertainError, match="never learned"):
        client.generate(PROMPT, **KW)
    assert emu.ledger.submits == 1  # the first submit reached fal; nothing was sent after it


@pytest.mark.parametrize(("state", "rid", "exc", "flags", "expected"), [
    ("claimed", None, None, {}, "delete"),
    ("sending", None, SubmitUncertainError("x"), {}, "uncertain"),
    ("sending", None, asyncio.CancelledError(), {}, "uncertain"),
    ("sending", None, BudgetExceededError("x"), {}, "delete"),
    ("submitted", "r", None, {}, "release"),
    ("submitted", "r", TimeoutError(), {}, "release"),
    ("submitted", "r", asyncio.CancelledError(), {"cancel_answer": "NOT_FOUND"}, "delete"),
    ("submitted", "r", asyncio.CancelledError(), {"cancel_answer": "CANCELLATION_REQUESTED", "cancelled": True},
     "cancelled"),
    ("submitted", "r", asyncio.CancelledError(), {"cancel_answer": "ALREADY_COMPLETED"}, "release"),
    ("submitted", "r", asyncio.CancelledError(), {"cancel_answer": ""}, "release"),  # no answer: may still run
    ("submitted", "r", asyncio.CancelledError(), {"cancel_answer": "OK", "completed": True}, "release"),
    ("cancelled", "r", asyncio.CancelledError(), {}, "release"),  # a re-run of it, stopped while looking
    ("cancelled", "r", None, {}, "release"),
    ("submitted", "r", RuntimeError(), {"failed": True}, "delete"),
])
def test_what_the_journal_keeps_when_a_claim_ends(state: str, rid: str | None, exc: BaseException | None,
                                                  flags: dict[str, Any], expected: str) -> None:
    slot = Slot(None)
    for k, v in flags.items():
        setattr(slot, k, v)
    assert leave_action(state, rid, slot, exc) == expected


def test_inflight_hands_over_a_stored_entry(emu: Emulator) -> None:
    client = offline(emu)
    client.generate(PROMPT, **KW)
    req = client.plan(PROMPT, **KW).requests[0]

    async def enter() -> Slot:
        async with client.cache.inflight(req.key, req.model) as slot:  # type: ignore[union-attr]
            return slot

    slot = asyncio.run(enter())
    assert slot.entry is not None and len(slot.entry.images) == 2


# -- files: private, atomic, no secrets ---------------------------------------------------------------


def test_files_are_private_to_the_user(emu: Emulator) -> None:
    offline(emu).generate(PROMPT, **KW)
    root = cache_dir()
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), f"{p} is {oct(mode)}"


def test_the_key_is_never_written_to_the_cache(emu: Emulator) -> None:
    secret = "sk-falnb-SECRET-0123456789abcdef"
    with serve(port=0, emulator=emu) as server:
        client = Client(key=secret, queue_url=server.url, retry=FAST)
        client.generate(PROMPT, **KW, extra_headers={"X-Fal-Store-IO": "0"})
        client.generate(PROMPT, **KW)
        client.cache.export(cache_dir() / "export.zip")  # type: ignore[union-attr]
        client.close()
    files = [p for p in cache_dir().rglob("*") if p.is_file()]
    assert len(files) >= 4
    for p in files:
        assert secret.encode() not in p.read_bytes(), p


def test_no_temporary_files_are_left(emu: Emulator) -> None:
    offline(emu).generate(PROMPT, **KW)
    assert not [p for p in cache_dir().rglob(".tmp-*")]


# -- controls from Python ----------------------------------------------------------------------------


def test_entries_stats_prune_clear(emu: Emulator) -> None:
    client = offline(emu)
    for seed in (1, 2, 3):
        client.generate(PROMPT, **{**KW, "seed": seed})
    cache = client.cache
    assert cache is not None
    listed = cache.entries()
    assert len(listed) == 3 and {e.prompt for e in listed} == {PROMPT} and all(e.images == 2 for e in listed)
    assert [e.canonical["seed"] for e in listed] == [3, 2, 1]  # newest first
    s = cache.stats()
    assert (s.entries, s.images, s.in_flight) == (3, 6, 0) and s.bytes == sum(e.bytes for e in listed)
    assert s.total.requests == 3 and "3 entries" in str(s)

    with db() as c:  # seed 1 was last used 40 days ago
        c.execute("UPDATE entries SET used=? WHERE key=?", (time.time() - 40 * 86400, listed[2].key))
    assert cache.prune(older_than="30d", dry_run=True).entries == 1 and len(cache.entries()) == 3
    result = cache.prune(older_than="30d")
    assert result.entries == 1 and result.bytes == listed[2].bytes
    assert len(object_files()) == 4
    one = listed[0].bytes
    assert cache.prune(max_bytes=one).entries == 1  # the least recently used goes first
    assert [e.key for e in cache.entries()] == [listed[0].key]
    assert cache.clear() == 1 and cache.entries() == [] and object_files() == []
    assert client.generate(PROMPT, **{**KW, "seed": 3}).cached is False


def test_clear_keeps_the_other_namespace(emu: Emulator) -> None:
    offline(emu).generate(PROMPT, **KW)
    with serve(port=0, emulator=emu) as server:
        with Client(key="t", queue_url=server.url, retry=FAST) as paying:
            paying.generate(PROMPT, **KW)
    fal = ResponseCache()
    assert fal.clear() == 1
    assert len(fal.entries("*")) == 1 and fal.entries("*")[0].namespace == "emulator"
    assert len(object_files()) == 2  # the emulator's pictures are still there


def test_export_import_replays_without_a_key(emu: Emulator, tmp_path: Path) -> None:
    with serve(port=0, emulator=emu) as server:
        client = Client(key="test", queue_url=server.url, retry=FAST)
        first = client.generate(PROMPT, **KW)
        client.generate("something else", **KW)
        client.close()
    zip_path = tmp_path / "team.zip"
    assert ResponseCache().export(zip_path, model="flux-schnell") == 2
    assert ResponseCache().export(tmp_path / "none.zip", since="2999-01-01") == 0

    clone = tmp_path / "clone" / ".falnb"  # a fresh clone of the project: an empty cache folder
    result = ResponseCache(clone).import_(zip_path)
    assert (result.imported, result.skipped, result.damaged) == (2, 0, 0)
    assert ResponseCache(clone).import_(zip_path).skipped == 2
    replay = Client(queue_url=server.url, cache=clone, retry=FAST)  # no key, server gone
    gen = replay.generate(PROMPT, **KW)
    assert gen.cached and [i.data for i in gen.images] == [i.data for i in first.images]
    assert emu.ledger.submits == 2


def test_import_rejects_damaged_files(emu: Emulator, tmp_path: Path) -> None:
    import zipfile

    offline(emu).generate(PROMPT, **KW)
    src = tmp_path / "a.zip"
    ResponseCache(namespace="emulator").export(src)
    bad = tmp_path / "b.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.startswith("objects/"):
                data = bytes([data[0] ^ 1]) + data[1:]
            zout.writestr(info, data)
    result = ResponseCache(tmp_path / "other").import_(bad)
    assert (result.imported, result.damaged) == (0, 1)
    from falnb import CacheError

    (tmp_path / "junk.zip").write_bytes(b"junk")
    with pytest.raises(CacheError, match="not a falnb cache export"):
        ResponseCache(tmp_path / "other").import_(tmp_path / "junk.zip")


def test_parsers() -> None:
    assert parse_age("30d") == 30 * 86400 and parse_age("12h") == 43200 and parse_age(5) == 5.0
    assert parse_bytes("500MB") == 500_000_000 and parse_bytes("2GiB") == 2 * 1024**3 and parse_bytes(10) == 10
    from falnb import InputError

    with pytest.raises(InputError):
        parse_age("soon")
    with pytest.raises(InputError):
        parse_bytes("big")


def test_default_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FALNB_CACHE_DIR", ".falnb")
    assert default_directory() == tmp_path / ".falnb"
    monkeypatch.delenv("FALNB_CACHE_DIR")
    assert "falnb" in str(default_directory())


def test_a_hit_writes_nothing_until_flushed(emu: Emulator) -> None:
    client = offline(emu)
    client.generate(PROMPT, **KW)
    wal = Path(str(cache_dir() / "index.sqlite3") + "-wal")
    before = wal.stat().st_mtime_ns if wal.exists() else 0
    for _ in range(5):
        assert client.generate(PROMPT, **KW).cached
    assert (wal.stat().st_mtime_ns if wal.exists() else 0) == before
    assert client.cache.ledger.total().hits == 5  # type: ignore[union-attr]  # flushed on read


def test_many_entries_round_trip(emu: Emulator) -> None:
    client = offline(emu)
    gens = client.generate_many([f"prompt {i}" for i in range(6)], **KW)
    assert all(not g.cached for g in gens)  # type: ignore[union-attr]
    again = client.generate_many([f"prompt {i}" for i in range(6)], **KW)
    assert all(g.cached for g in again)  # type: ignore[union-attr]
    assert emu.ledger.submits == 6
    assert os.path.isdir(cache_dir() / "objects")


def test_an_index_damaged_under_a_running_process_does_not_lose_pictures(emu: Emulator,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from falnb.cache._index import Index

    client = offline(emu)
    client.generate(PROMPT, **KW)

    class Damaged:  # what SQLite answers once it meets a damaged page
        def execute(self, *args: Any) -> Any:
            raise sqlite3.DatabaseError("database disk image is malformed")

    real, calls = Index.conn, [0]
    damage_index(cache_dir() / "index.sqlite3")  # (a "malformed" error alone proves nothing: the file is checked)

    def conn(self: Index) -> Any:
        calls[0] += 1
        return Damaged() if calls[0] == 1 else real(self)

    monkeypatch.setattr(Index, "conn", conn)
    with pytest.warns(CacheWarning, match="damaged"):
        gen = client.generate(PROMPT, **KW)
    assert len(gen.images) == 2 and not gen.cached and emu.ledger.submits == 2
    assert list(cache_dir().glob("index.sqlite3.corrupt-*"))  # set aside; a new index took its place
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert client.generate(PROMPT, **KW).cached


def test_a_locked_index_degrades_to_no_journal_not_to_a_failure(emu: Emulator,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from falnb import CacheError
    from falnb.cache._index import Index

    def write(self: Index) -> Any:
        raise CacheError(f"the cache index {self.path} failed: database is locked")

    client = offline(emu)
    monkeypatch.setattr(Index, "write", write)  # every write fails: no claim, no journal, no store
    with pytest.warns(CacheWarning):
        gen = client.generate(PROMPT, **KW)
    assert len(gen.images) == 2 and emu.ledger.submits == 1


def test_a_cache_folder_copied_without_its_wal_replays(emu: Emulator, tmp_path: Path) -> None:
    import shutil

    project = tmp_path / "project" / ".falnb"  # FALNB_CACHE_DIR=.falnb, committed to the repository
    with serve(port=0, emulator=emu) as server, Client(key="test", queue_url=server.url, retry=FAST,
                                                       cache=project) as client:
        client.generate(PROMPT, **KW)
        client.generate("a second picture", **KW)
        # a teammate's clone gets the committed files while this kernel is still running
        clone = tmp_path / "clone" / ".falnb"
        clone.mkdir(parents=True)
        shutil.copy(project / "index.sqlite3", clone / "index.sqlite3")
        shutil.copytree(project / "objects", clone / "objects")
    replay = Client(queue_url=server.url, cache=clone, retry=FAST)  # no key, no server
    assert replay.generate(PROMPT, **KW).cached and replay.generate("a second picture", **KW).cached


def test_an_interrupted_request_is_cancelled_and_the_rerun_does_not_stall() -> None:
    thaw: list[float] = []  # fal's clock: frozen (the request runs until cancelled), then real time from +60 s
    emu = Emulator(latency=1.0, concurrency=8,
                   clock=lambda: 60 + time.monotonic() - thaw[0] if thaw else 0.0)
    client = offline(emu)
    cache = client.cache
    assert cache is not None

    async def interrupt() -> None:
        task = asyncio.ensure_future(client.agenerate(PROMPT, **KW))
        while not any(r["request_id"] for r in cache.journal()):  # journaled: fal holds it, running
            await asyncio.sleep(0.01)
        task.cancel()  # Ctrl-C while fal is generating
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(interrupt(), 30))
    deadline = time.monotonic() + 30
    while not all(r["pid"] == 0 for r in cache.journal()):  # falnb's loop sends fal's cancel, then releases
        assert time.monotonic() < deadline, cache.journal()
        time.sleep(0.01)
    assert emu.ledger.submits == 1
    thaw.append(time.monotonic())  # fal's clock moves on: whatever was not cancelled would have finished now
    gen = client.generate(PROMPT, **KW)  # re-attaches, finds it cancelled, asks anew
    assert len(gen.images) == 2 and not gen.cached
    assert emu.ledger.submits == 2 and emu.ledger.requests == 1  # the cancelled one was not billed
    assert cache.journal() == []


# -- a damaged index: the journal is salvaged, one warning per damage event -----------------------------


def damage_index(path: Path) -> None:
    """Really damage the index file: garbage over the entries table's root page (the journal stays readable)."""
    c = sqlite3.connect(str(path), isolation_level=None)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = c.execute("SELECT rootpage FROM sqlite_master WHERE name='entries'").fetchone()[0]
    size = c.execute("PRAGMA page_size").fetchone()[0]
    c.close()
    with open(path, "r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xde\xad" * (size // 2))


def _damage_event(idx: Any) -> None:
    """What SQLite answers when it meets the damaged page."""
    idx.failed(sqlite3.DatabaseError("database disk image is malformed"))


def test_setting_a_damaged_index_aside_keeps_its_journal(emu: Emulator) -> None:
    client = offline(emu)
    req = client.plan(PROMPT, **KW).requests[0]
    client.cache._index.conn()  # type: ignore[union-attr]
    _journal_row(req.key, "sending", age=120)  # a submit whose answer was lost: uncertain, never resubmitted
    _journal_row("f" * 64, "submitted", "an-id-fal-may-still-hold")  # re-attachable
    damage_index(cache_dir() / "index.sqlite3")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _damage_event(client.cache._index)  # type: ignore[union-attr]
    messages = [str(w.message) for w in seen if issubclass(w.category, CacheWarning)]
    assert len(messages) == 1 and "2 request(s) in flight were recovered" in messages[0], messages
    assert list(cache_dir().glob("index.sqlite3.corrupt-*"))
    rows = {r["key"]: (r["state"], r["request_id"]) for r in client.cache.journal("*")}  # type: ignore[union-attr]
    assert rows == {req.key: ("sending", None), "f" * 64: ("submitted", "an-id-fal-may-still-hold")}
    with pytest.raises(SubmitUncertainError):  # still not paid twice
        client.generate(PROMPT, **KW)
    assert emu.ledger.submits == 0


def test_an_unreadable_index_warns_once_that_in_flight_requests_are_lost(emu: Emulator) -> None:
    from falnb.cache import _index as _cache_db

    offline(emu).generate(PROMPT, **KW)
    _cache_db._INDEXES.clear()
    for suffix in ("-wal", "-shm"):
        Path(str(cache_dir() / "index.sqlite3") + suffix).unlink(missing_ok=True)
    (cache_dir() / "index.sqlite3").write_bytes(b"this is not a database" * 100)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        gen = offline(emu).generate(PROMPT, **KW)
    messages = [str(w.message) for w in seen if issubclass(w.category, CacheWarning)]
    assert len(gen.images) == 2 and len(messages) == 1, messages
    assert "could not be recovered" in messages[0] and "fal.ai/dashboard/requests" in messages[0]


def test_a_stale_connection_never_sets_the_new_index_aside(emu: Emulator) -> None:
    import threading

    client = offline(emu)
    client.generate(PROMPT, **KW)
    idx = client.cache._index  # type: ignore[union-attr]
    damage_index(cache_dir() / "index.sqlite3")
    opened = threading.Event()
    damaged = threading.Event()

    def other_thread() -> None:  # its connection still reads the old file when it meets the damage
        idx.conn()
        opened.set()
        damaged.wait(10)
        _damage_event(idx)

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        t = threading.Thread(target=other_thread)
        t.start()
        opened.wait(10)
        _damage_event(idx)
        idx.conn()  # the new index
        damaged.set()
        t.join(10)
    assert len([w for w in seen if issubclass(w.category, CacheWarning)]) == 1
    assert len(list(cache_dir().glob("index.sqlite3.corrupt-*[0-9]"))) == 1  # (and its -wal, -shm)
    assert (cache_dir() / "index.sqlite3").exists()


# -- bounded memory and open files ----------------------------------------------------------------------


def test_verified_files_are_remembered_compactly_and_boundedly(emu: Emulator,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from falnb.cache import _store as _cache

    assert _cache._VERIFIED_MAX <= 10_000
    monkeypatch.setattr(_cache, "_VERIFIED", {})
    monkeypatch.setattr(_cache, "_VERIFIED_MAX", 3)
    client = offline(emu)
    for i in range(4):
        client.generate(f"{PROMPT} {i}", **KW)  # 8 files
    assert len(_cache._VERIFIED) == 3 and all(type(v) is int for v in _cache._VERIFIED.values())
    assert all(client.generate(f"{PROMPT} {i}", **KW).cached for i in range(4))  # forgotten: hashed again
    assert len(_cache._VERIFIED) == 3 and emu.ledger.submits == 4


def _open_index_dirs(root: Path) -> set[str]:
    """The directories under ``root`` whose index file this process holds open."""
    import gc

    gc.collect()  # a connection of an ended thread is closed when collected
    out = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith(str(root)) and target.endswith("index.sqlite3"):
                out.add(os.path.dirname(target))
    return out


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files in /proc")
def test_open_indexes_are_bounded_per_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import threading

    from falnb.cache import _conns
    from falnb.cache import _index as _cache_db

    monkeypatch.setattr(_conns, "MAX_OPEN", 3)
    caches = [ResponseCache(tmp_path / f"d{i}", "emulator") for i in range(12)]

    def use_all() -> None:  # in this thread and in another (falnb's event loop thread uses them too)
        for cache in caches:
            assert not cache.has("0" * 64)
            assert _cache_db.open_connections() <= 3 + 1

    use_all()
    assert len(_open_index_dirs(tmp_path)) <= 3 + 1
    t = threading.Thread(target=use_all)
    t.start()
    t.join()
    assert len(_open_index_dirs(tmp_path)) <= 3 + 1
    use_all()  # a closed index reopens on use
    assert caches[0].stats().entries == 0
    assert len(_open_index_dirs(tmp_path)) <= 3 + 1
