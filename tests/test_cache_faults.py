"""When the cache's files misbehave: only proven damage is set aside; a transient failure is a miss for
that call with one warning and the data left in place; a deleted folder is created again with the
requests in flight carried over; a folder that cannot be a folder is a short ConfigError; an import
refuses relabelled entries.

Real faults where a test can make them in-process (a real write lock held by another connection, a
real ``rm -rf``, real damage to the file); the faults that need another user or a lowered file limit
(a read-only folder, EMFILE) are in ``tests/defects/test_lose_paid.py``.
"""

from __future__ import annotations

import functools
import json
import shutil
import sqlite3
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest

from falnb import Client, ConfigError
from falnb.cache._cli import main, next_run, printable
from falnb.cache._index import CacheWarning, Index
from falnb.cache._store import ResponseCache
from falnb.emulator import Emulator
from falnb.fal._queue import RetryPolicy

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, submit_attempts=3)
KW: dict[str, Any] = {"model": "flux-schnell", "seed": 7, "size": "512x512"}


@pytest.fixture
def emu() -> Emulator:
    return Emulator(latency=0.0, concurrency=8)


def client(emu: Emulator, directory: Path) -> Client:
    return Client(offline=True, emulator=emu, retry=FAST, cache=directory)


def cache_warnings(seen: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in seen if issubclass(w.category, CacheWarning)]


# -- only proven damage is set aside -----------------------------------------------------------------------


def test_a_malformed_error_on_a_healthy_index_is_not_damage(emu: Emulator, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite said "malformed" once, but the file passes its integrity check: a miss for that call, the
    index left in place with its entries."""
    c = client(emu, tmp_path / "c")
    c.generate("a lighthouse", **KW)

    class Glitch:  # one read that fails as a damaged page would
        def execute(self, *args: Any) -> Any:
            raise sqlite3.DatabaseError("database disk image is malformed")

    real, calls = Index.conn, [0]

    def conn(self: Index) -> Any:
        calls[0] += 1
        return Glitch() if calls[0] == 1 else real(self)

    monkeypatch.setattr(Index, "conn", conn)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        gen = c.generate("a lighthouse", **KW)
    monkeypatch.undo()
    assert gen.cached and emu.ledger.submits == 1  # the journal's claim found the entry still there
    assert not list((tmp_path / "c").glob("*corrupt*"))
    assert len(cache_warnings(seen)) == 1 and "cannot be used right now" in cache_warnings(seen)[0]


def test_a_locked_index_is_a_miss_with_one_warning_and_loses_nothing(emu: Emulator, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from falnb.cache import _index

    monkeypatch.setattr(_index, "BUSY_TIMEOUT_MS", 50)
    c = client(emu, tmp_path / "c")
    c.generate("a lighthouse", **KW)
    other = sqlite3.connect(str(tmp_path / "c" / "index.sqlite3"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock (for longer than busy_timeout)
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            gen = c.generate("a fox", **KW)
            assert c.generate("a lighthouse", **KW).cached  # reading still works
    finally:
        other.execute("ROLLBACK")
        other.close()
    messages = cache_warnings(seen)
    assert len(gen.images) == 1 and len(messages) == 1 and "locked" in messages[0], messages
    assert not list((tmp_path / "c").glob("*corrupt*"))
    c.generate("a fox", **KW)  # not stored while locked: generated again, and stored now
    assert c.generate("a fox", **KW).cached and emu.ledger.submits == 3


# -- a deleted folder ---------------------------------------------------------------------------------------


def test_a_deleted_cache_folder_keeps_the_requests_in_flight(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "c"
    cache = ResponseCache(folder, "emulator")
    now = time.time()
    with cache._index.write() as c:  # fal holds a request of ours; the journal must not lose it
        c.execute("INSERT INTO journal(ns, key, model, state, request_id, pid, host, started, sent, updated) "
                  "VALUES('emulator', ?, 'fal-ai/flux/schnell', 'submitted', 'an-id', 0, 'h', ?, ?, ?)",
                  ("a" * 64, now, now, now))
    shutil.rmtree(folder)
    assert not cache.has("b" * 64)  # noticed at the next use: the folder is created again
    assert (folder / "index.sqlite3").exists()
    assert main(["journal", "--dir", str(folder), "--json"]) == 0  # as another process sees it
    assert [r["request_id"] for r in json.loads(capsys.readouterr().out)] == ["an-id"]


# -- a folder that cannot be a folder ----------------------------------------------------------------------


def test_a_cache_dir_that_is_a_file_is_a_short_config_error(emu: Emulator, tmp_path: Path) -> None:
    target = tmp_path / "not-a-folder"
    target.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder") as err:
        client(emu, target).generate("a lighthouse", **KW)
    assert len(str(err.value).splitlines()) <= 2 and "FALNB_CACHE_DIR" in str(err.value)
    assert emu.ledger.submits == 0 and target.read_text() == "x"


# -- import checks every key against its request --------------------------------------------------------


def test_import_refuses_a_relabelled_entry_and_keeps_honest_replicas(emu: Emulator, tmp_path: Path) -> None:
    c = client(emu, tmp_path / "c")
    c.generate("a fox", model="recraft", n=3)  # no seed, no num_images: three requests, the same input
    c.generate("a whale", **KW)
    exported = tmp_path / "e.zip"
    assert c.cache.export(exported) == 4  # type: ignore[union-attr]
    with zipfile.ZipFile(exported) as z:
        manifest = json.loads(z.read("falnb-cache.json"))
        blobs = {n: z.read(n) for n in z.namelist() if n != "falnb-cache.json"}
    whale = next(e for e in manifest["entries"] if e["canonical"]["prompt"] == "a whale")
    whale["key"] = next(e for e in manifest["entries"] if e["canonical"]["prompt"] == "a fox")["key"]
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as z:
        z.writestr("falnb-cache.json", json.dumps(manifest))
        for name, data in blobs.items():
            z.writestr(name, data)
    result = ResponseCache(tmp_path / "mate").import_(forged)
    assert (result.imported, result.refused, result.damaged) == (3, 1, 0), result  # the 3 foxes (replicas 0-2)
    assert "1 refused (their key does not match their request)" in str(result)


def test_import_of_impossible_dates_and_costs_keeps_the_cache_listable(emu: Emulator, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A foreign zip's ``created`` of Infinity, 1e300, NaN or 10**400 (a cost too) crashed the import
    (OverflowError, or NaN stored as NULL refused by the index mid-import) or every ``falnb cache list``
    after it (time.localtime overflows)."""
    c = client(emu, tmp_path / "c")
    for i in range(4):
        c.generate(f"prompt {i}", **KW)
    exported = tmp_path / "e.zip"
    c.cache.export(exported)  # type: ignore[union-attr]
    with zipfile.ZipFile(exported) as z:
        manifest = json.loads(z.read("falnb-cache.json"))
        blobs = {n: z.read(n) for n in z.namelist() if n != "falnb-cache.json"}
    bad = (float("inf"), 1e300, float("nan"), 10**400)
    for entry, created, cost in zip(manifest["entries"], bad, (-1.0, *bad[::2], 10**400), strict=True):
        entry["created"], entry["cost"] = created, cost
    odd = tmp_path / "odd.zip"
    with zipfile.ZipFile(odd, "w") as z:
        z.writestr("falnb-cache.json", json.dumps(manifest))
        for name, data in blobs.items():
            z.writestr(name, data)
    mate = ResponseCache(tmp_path / "mate")
    assert mate.import_(odd).imported == 4
    assert all(0 < e.created <= time.time() and e.cost is None for e in mate.entries("*"))
    capsys.readouterr()
    assert main(["list", "--dir", str(tmp_path / "mate")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_an_export_streams_what_it_reads(emu: Emulator, tmp_path: Path) -> None:
    """An export is a valid zip whose manifest lists each entry once, with each picture stored once."""
    c = client(emu, tmp_path / "c")
    for i in range(5):
        c.generate(f"prompt {i}", **KW)
    out = tmp_path / "e.zip"
    assert c.cache.export(out) == 5  # type: ignore[union-attr]
    with zipfile.ZipFile(out) as z:
        manifest = json.loads(z.read("falnb-cache.json"))
        objects = [n for n in z.namelist() if n.startswith("objects/")]
    assert len(manifest["entries"]) == 5 and len(objects) == len(set(objects)) == 5
    assert ResponseCache(tmp_path / "mate").import_(out).imported == 5


# -- what the command line prints -------------------------------------------------------------------------


def test_printable_escapes_control_and_reordering_characters() -> None:
    assert printable("a\x1b[2Jfox\x07\r\nin\u202esnow") == "a\\x1b[2Jfox\\x07\\r in\\u202esnow"
    assert printable("un renard 🦊 — café") == "un renard 🦊 — café"


def test_the_journal_says_what_the_next_run_does() -> None:
    row = {"pid": 0, "host": "h", "request_id": None, "state": "uncertain", "started": 0.0, "sent": 0.0,
           "updated": 0.0}
    assert "refuses it until" in next_run(row) and "re-attach" not in next_run(row)
    assert next_run({**row, "state": "submitted", "request_id": "an-id"}) == "no owner: the next run re-attaches to it"
    assert next_run({**row, "state": "claimed"}) == "no owner: the next run submits it"
    assert "takes its pictures if fal finished it, else submits anew" in next_run(
        {**row, "state": "cancelled", "request_id": "an-id"})
    assert next_run({**row, "pid": 42}) == "pid 42 on h"


# -- prune and clear in short transactions ------------------------------------------------------------


def _fill(directory: Path, count: int) -> ResponseCache:
    from bench.cache_fill import fill

    fill(directory, count)
    return ResponseCache(directory)


def _largest_write(monkeypatch: pytest.MonkeyPatch, fn: Any) -> int:
    """The most SQLite steps any one write transaction took while ``fn`` ran (what another writer waits for)."""
    from contextlib import contextmanager

    from .test_cache_budget import counting

    real = Index.write
    steps: list[int] = []

    @contextmanager
    def write(self: Index) -> Any:
        with real(self) as c, counting(c) as n:
            try:
                yield c
            finally:
                steps.append(n[0])

    with monkeypatch.context() as m:
        m.setattr(Index, "write", write)
        fn()
    return max(steps)


def test_prune_and_clear_hold_the_write_lock_for_a_batch_at_a_time(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """However many entries a prune or a clear removes, no single write transaction grows with them."""
    from falnb.cache import _prune

    monkeypatch.setattr(_prune, "BATCH", 50)
    monkeypatch.setattr(_prune, "HOLD", 1e9)  # (batches end by their size alone: no clock in this test)
    monkeypatch.setattr(_prune, "PAUSE", 0.0)
    largest = {}
    for count in (300, 1200):
        cache = _fill(tmp_path / str(count), count)
        largest[("prune", count)] = _largest_write(monkeypatch, functools.partial(cache.prune, max_bytes=0))
        assert cache.stats().entries == 0 and not list((tmp_path / str(count) / "objects").rglob("*"))
        cache = _fill(tmp_path / f"{count}-b", count)
        largest[("clear", count)] = _largest_write(monkeypatch, cache.clear)
        assert cache.stats().entries == 0
    for what in ("prune", "clear"):
        small, big = largest[(what, 300)], largest[(what, 1200)]
        assert big <= small * 1.2, largest  # (summing every row in one transaction would be 4x)


def test_a_picture_stored_while_prune_collects_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A prune looks at which files are used, then deletes the others batch by batch: an entry stored in
    between (here: the same picture bytes again, so its file exists already) keeps its file."""
    from falnb.cache import _prune

    cache = _fill(tmp_path / "c", 3)
    entry = cache.entries()[0]
    image = cache.get(entry.key).images[0]  # type: ignore[union-attr]
    real_dirs, stored = _prune._dirs, []

    def dirs(root: Path) -> Any:
        if not stored:  # listing the files to delete, after the snapshot of what is used: another kernel stores it
            stored.append(True)
            cache.put("f" * 64, model="fal-ai/flux/schnell", canonical={"prompt": "again"}, response={},
                      images=[image], request_id="r", cost=None)
        return real_dirs(root)

    monkeypatch.setattr(_prune, "_dirs", dirs)
    assert cache.prune(max_bytes=0).entries == 3  # every entry of the snapshot goes (the new one was not in it)
    got = cache.get("f" * 64)
    assert stored and got is not None and got.images[0].data == image.data


def test_an_export_does_not_grow_with_the_cache(tmp_path: Path) -> None:
    """Memory Python allocates to export 200 and 1,200 entries: the same (the rows and the zip's directory
    are streamed to disk)."""
    import tracemalloc

    peaks = []
    for count in (200, 1200):
        cache = _fill(tmp_path / str(count), count)
        tracemalloc.start()
        assert cache.export(tmp_path / f"{count}.zip") == count
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] + 64_000, peaks  # (zipfile.ZipFile keeps ~0.4 KB per file: +400 KB here)
