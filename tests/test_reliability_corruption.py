"""Figure 5: a damaged cache is detected, reported once, and healed; nothing crashes a generation.

Complements ``test_cache.py`` (one damaged file or row, a garbage header): here the SQLite index is
damaged in the middle of its pages or cut short, its WAL is garbage, every image file is gone at
once, and journal rows hold garbage.  Each time: the calls still return their pictures, one
CacheWarning is shown per damage event however many entries are read, and the next run is clean.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import time
import warnings
from pathlib import Path

import pytest

from falnb import Client
from falnb.cache import _index as _cache_db
from falnb.cache._index import CacheWarning
from falnb.emulator import Emulator

MODEL = "flux-schnell"
PROMPTS = [f"entry {i} " + "padding " * 40 for i in range(150)]
READ = PROMPTS[:40]


@pytest.fixture
def emu() -> Emulator:
    return Emulator(latency=0.0, concurrency=64)


def _fill(emu: Emulator, cache: Path) -> None:
    c = Client(offline=True, emulator=emu, cache=cache)
    c.generate_many(PROMPTS, model=MODEL, size="64x64", seed=1)
    store = c.cache
    assert store is not None
    store._index.flush()
    c.close()
    with sqlite3.connect(cache / "index.sqlite3") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _cache_db._INDEXES.clear()  # as a new kernel sees the directory


def _run(emu: Emulator, cache: Path, prompts: list[str]) -> tuple[int, int, int, list[str]]:
    """(results with pictures, from the cache, new submits, warnings) of one new client's batch."""
    submits = emu.ledger.submits
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        c = Client(offline=True, emulator=emu, cache=cache)
        results = c.generate_many(prompts, model=MODEL, size="64x64", seed=1)
        c.close()
    ok = [r for r in results if hasattr(r, "images") and r.images]
    messages = [str(w.message) for w in seen if issubclass(w.category, CacheWarning)]
    return len(ok), sum(r.cached for r in ok), emu.ledger.submits - submits, messages


def _damage(cache: Path, how: str) -> None:
    index = cache / "index.sqlite3"
    data = bytearray(index.read_bytes())
    if how == "garbage pages":
        garbage = random.Random(5)
        for off in range(4096 * 3, len(data) - 4096, 4096 * 2):  # header and schema pages intact
            data[off + 100:off + 600] = garbage.randbytes(500)
        index.write_bytes(bytes(data))
    elif how == "truncated index":
        index.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "garbage WAL":
        Path(str(index) + "-wal").write_bytes(random.Random(6).randbytes(64 * 1024))
        Path(str(index) + "-shm").unlink(missing_ok=True)
    elif how == "all image files gone":
        shutil.rmtree(cache / "objects")
    else:  # pragma: no cover
        raise AssertionError(how)


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder of the 150 entries, filled once for the module; each test damages a copy of its own."""
    cache = tmp_path_factory.mktemp("filled") / "cache"
    _fill(Emulator(latency=0.0, concurrency=64), cache)
    return cache


@pytest.mark.parametrize("how", ["garbage pages", "truncated index", "garbage WAL", "all image files gone"])
def test_figure_corruption_detected_reported_once_healed(how: str, emu: Emulator, filled: Path,
                                                         tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(filled, cache)  # closed and checkpointed: the copy is the folder as a new kernel finds it
    _damage(cache, how)
    ok, cached, submits, messages = _run(emu, cache, READ)
    ok2, cached2, submits2, messages2 = _run(emu, cache, READ)
    print(f"FIGURE corruption ({how}): {ok}/{len(READ)} calls returned their pictures, {cached} from the cache, "
          f"{submits} regenerated, {len(messages)} warning(s); next run: {cached2}/{len(READ)} from the cache, "
          f"{submits2} submits, {len(messages2)} warnings")
    assert ok == len(READ) and ok2 == len(READ)
    assert not messages2 and submits2 == 0 and cached2 == len(READ)  # healed
    if how == "garbage WAL":  # SQLite checks a WAL's checksums: garbage frames are ignored
        assert cached == len(READ) and not messages
    elif how == "all image files gone":  # one warning per damaged entry read, none twice
        assert submits == len(READ) and len(messages) == len(READ) and len(set(messages)) == len(READ)
    else:  # the index is set aside as a whole: one damage event, one warning (not one per read or claim)
        assert len(messages) == 1, messages
        assert "damaged" in messages[0]
        assert list(cache.glob("index.sqlite3.corrupt-*"))


@pytest.mark.parametrize("row", [
    pytest.param({"state": "submitted", "request_id": "abc", "pid": "garbage", "updated": "yesterday"},
                 id="garbage-pid-and-time"),
    pytest.param({"state": "weird", "request_id": None, "pid": 0, "updated": None}, id="unknown-state"),
    pytest.param({"state": "submitted", "request_id": "../../../_emulator/reset", "pid": 0, "updated": None},
                 id="hostile-request-id"),
])
def test_garbage_journal_rows_do_not_break_a_generation(row: dict[str, object], emu: Emulator,
                                                        tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    c = Client(offline=True, emulator=emu, cache=cache)
    first = c.generate("journal row", model=MODEL, size="64x64", seed=1)
    c.close()
    with sqlite3.connect(cache / "index.sqlite3", isolation_level=None) as db:
        (key,) = db.execute("SELECT key FROM entries").fetchone()
        db.execute("DELETE FROM entries")
        db.execute("INSERT OR REPLACE INTO journal(ns, key, model, state, request_id, pid, host, started, updated) "
                   "VALUES('emulator', ?, 'fal-ai/flux/schnell', ?, ?, ?, 'h', ?, ?)",
                   (key, row["state"], row["request_id"], row["pid"], time.time(),
                    row["updated"] if row["updated"] is not None else time.time()))
    jobs = len(emu.requests())
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        c = Client(offline=True, emulator=emu, cache=cache)
        again = c.generate("journal row", model=MODEL, size="64x64", seed=1)
        c.close()
    assert again.images and [i.data for i in again.images] == [i.data for i in first.images]
    assert len(emu.requests()) == jobs + 1  # generated anew, once (the garbage row's id "abc": fal answers 404)
    messages = [str(w.message) for w in seen if issubclass(w.category, CacheWarning)]
    if row["pid"] == "garbage":  # reported once, repaired, and its request id re-attached to (not dropped)
        assert len(messages) == 1 and "journal row" in messages[0] and "re-attaches to its request abc" \
            in messages[0], messages
        _, cached, submits, messages = _run(emu, cache, ["journal row"])
        assert cached == 1 and submits == 0 and not messages  # healed
    # a hostile id stayed one path segment: the emulator's control route was never reached
    assert emu.ledger.submits >= 2


def test_a_directory_in_place_of_an_image_file_is_healed(emu: Emulator, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    c = Client(offline=True, emulator=emu, cache=cache)
    c.generate("a directory", model=MODEL, size="64x64", seed=1)
    c.close()
    obj = next(p for p in (cache / "objects").rglob("*") if p.is_file())
    obj.unlink()
    obj.mkdir()
    for _ in range(2):
        _run(emu, cache, ["a directory"])
    _, cached, _, messages = _run(emu, cache, ["a directory"])
    assert cached == 1 and not messages
