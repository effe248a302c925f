"""The index's WAL companions (``index.sqlite3-wal`` and ``-shm``) deleted while this process has the index
open: the soak's pay-twice (``python -m bench soak --seed 1 --episode 7``).  A user deletes the cache folder
while falnb creates it again (``rm -r`` lists the folder, falnb makes a new index, ``rm`` then deletes its
``-shm``): this process keeps its mapping of the deleted file while another process makes a new one, so
the two no longer share SQLite's locks or view of the WAL, and one's commits overwrite the other's (a
journal row or an entry lost: the request is submitted again).  See ``falnb/cache/_walfiles.py``."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from falnb import Client
from falnb.cache._index import index_for
from falnb.cache._store import ResponseCache
from falnb.emulator import EmulatorServer
from falnb.results._image import Image

from .test_cache_processes import _env, finish, start

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file semantics")

ASK = {"model": "flux-schnell", "n": 2, "seed": 3, "size": "512x512"}


# (-shm: 4 submits for 3 asked before the fix; -wal held before it too, kept as a guard)
@pytest.mark.parametrize("companion", ["-shm", "-wal"])
def test_a_companion_deleted_under_this_process_loses_no_write(
        serve_emulator: Callable[..., EmulatorServer], companion: str) -> None:
    server = serve_emulator(latency=0.0)
    folder = Path(os.environ["FALNB_CACHE_DIR"])
    assert _env(server)["FALNB_CACHE_DIR"] == str(folder)  # the children share this process's cache folder
    client = Client(key="test", queue_url=server.url)
    try:
        client.generate("a lighthouse", **ASK)  # the index open here
        os.unlink(folder / f"index.sqlite3{companion}")  # what rm -r deleted after falnb had re-created the index
        assert not finish(start(server, "an owl"))["cached"]  # another process: its entry committed
        client.generate("a red fox", **ASK)  # this process writes
        assert client.generate("an owl", **ASK).cached  # and sees the other process's entry
    finally:
        client.close()
    paid = server.emulator.ledger.submits
    assert finish(start(server, "an owl"))["cached"], f"the owl was paid again: {paid + 1} submits for 3 asked"
    assert finish(start(server, "a red fox"))["cached"], "the fox was paid again"
    assert server.emulator.ledger.submits == 3


def test_another_threads_idle_connection_is_closed_too(serve_emulator: Callable[..., EmulatorServer]) -> None:
    """SQLite keeps the old -shm mapped while any connection of the process is open: a connection held by
    an idle thread (a widget's, the event loop's) must be closed too, or the new one shares the old mapping."""
    server = serve_emulator(latency=0.0)
    folder = Path(os.environ["FALNB_CACHE_DIR"])
    client = Client(key="test", queue_url=server.url)
    opened, release = threading.Event(), threading.Event()

    def idle_reader() -> None:
        ResponseCache(folder).get("0" * 64)  # this thread's connection, then idle until released
        opened.set()
        release.wait(60)

    reader = threading.Thread(target=idle_reader)
    reader.start()
    try:
        assert opened.wait(60)
        client.generate("a lighthouse", **ASK)
        os.unlink(folder / "index.sqlite3-shm")
        assert not finish(start(server, "an owl"))["cached"]
        client.generate("a red fox", **ASK)
    finally:
        release.set()
        reader.join(60)
        client.close()
    assert finish(start(server, "an owl"))["cached"], "the owl was paid again"
    assert server.emulator.ledger.submits == 3


def test_a_connection_closed_by_another_threads_reset_is_read_again(tmp_path: Path) -> None:
    """A thread that took its connection just before another thread's reset closed it gets a retry on
    the new connection, not a miss (a miss would submit the request again)."""
    cache = ResponseCache(tmp_path)
    index = index_for(tmp_path / "index.sqlite3")
    with index.write() as c:
        c.execute("SELECT 1")
    stale = index.conn()
    index._bump()  # what check_moved does before closing every connection (another thread's reset)
    stale.close()
    err = index.failed(sqlite3.ProgrammingError("Cannot operate on a closed database."))
    assert type(err).__name__ == "IndexSetAside"
    assert index.conn() is not stale
    assert cache.get("0" * 64) is None and cache.has("0" * 64) is False


def test_companions_unchanged_is_not_a_reset(tmp_path: Path) -> None:
    """No false alarm: the companions of a healthy index are seen unchanged write after write, so no
    connection is closed (a reset on every write would cost a reconnect each time)."""
    index = index_for(tmp_path / "index.sqlite3")
    with index.write() as c:
        c.execute("SELECT 1")
    first = index.conn()
    for _ in range(5):
        with index.write() as c:
            c.execute("SELECT 1")
    assert index.conn() is first
    os.unlink(tmp_path / "index.sqlite3-shm")
    with index.write() as c:
        c.execute("SELECT 1")
    assert index.conn() is not first and first.closed


def test_a_reset_waits_for_a_connection_another_thread_is_reading_with(tmp_path: Path) -> None:
    """Closing a connection another thread is reading with crashes the process (the soak's segfault when
    the reset closed every connection at once): the reset closes it only when that thread is done."""
    index = index_for(tmp_path / "index.sqlite3")
    with index.write() as c:
        c.execute("CREATE TABLE IF NOT EXISTS t (a)")
        c.execute("INSERT INTO t VALUES (1)")
    holding, bumped, rows = threading.Event(), threading.Event(), []
    reader_conn: list[sqlite3.Connection] = []

    def reader() -> None:
        with index.using() as c:
            reader_conn.append(c)
            rows.append(c.execute("SELECT a FROM t").fetchall())
            holding.set()
            assert bumped.wait(60)
            rows.append(c.execute("SELECT a FROM t").fetchall())  # the reset is under way: still open

    epoch = index._epoch
    t = threading.Thread(target=reader)
    t.start()
    assert holding.wait(60)
    os.unlink(tmp_path / "index.sqlite3-shm")
    def write() -> None:
        with index.write() as c:
            c.execute("SELECT 1")

    writer = threading.Thread(target=write)
    writer.start()
    while index._epoch == epoch and writer.is_alive():  # the reset has begun (the phase, not a race for it)
        writer.join(0.01)
    bumped.set()
    t.join(60)
    writer.join(60)
    assert rows == [[(1,)], [(1,)]]
    assert reader_conn[0].closed  # closed once the reader was done


def test_two_processes_writing_while_shm_is_deleted_again_and_again_lose_nothing(tmp_path: Path) -> None:
    """Without falnb's own write lock (``WriterLock``), a process that had not noticed the deletion yet
    committed through the old ``-shm`` while the other rebuilt its view from a new one: "file is not a
    database" within seconds, the index set aside, everything in it lost.  With it, but with the mapped
    ``-shm`` taken from its name, commits were lost under load (1 run in 11 with four busy processes beside
    it; the phase is forced in the test below)."""
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "_procs" / "shm_stress.py"),
                           str(tmp_path / "cache"), "main", "40"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, proc.stderr[-3000:]
    out = json.loads(line[7:])
    assert out["deletions"] == 40
    assert out["errors"] == {}, out["errors"]
    assert out["missing"] == {}, f"commits were lost: {out['missing']}"
    assert out["held"] == out["committed"]
    assert sum(out["committed"].values()) > 0


def test_a_thread_whose_connection_a_reset_closed_goes_on_with_other_indexes(tmp_path: Path) -> None:
    """falnb's event-loop thread lives as long as the kernel and keeps its connections to every cache it used:
    one closed by another thread's reset must not make its next index fail ("closed database")."""
    first, second = ResponseCache(tmp_path / "a"), ResponseCache(tmp_path / "b")
    for cache in (first, second):
        cache.put("1" * 64, model="m", canonical={"prompt": "p"}, response={}, request_id="r", cost=0.0,
                  images=[Image(data=b"not really a png", content_type="image/png", width=1, height=1)])
    step, done, seen = threading.Event(), threading.Event(), []

    def loop_thread() -> None:
        seen.append(first.has("1" * 64))  # a connection to a, kept
        step.set()
        assert done.wait(60)
        seen.append(second.has("1" * 64))  # then another cache
        seen.append(first.has("1" * 64))

    t = threading.Thread(target=loop_thread)
    t.start()
    assert step.wait(60)
    index = index_for(tmp_path / "a" / "index.sqlite3")
    os.unlink(tmp_path / "a" / "index.sqlite3-shm")
    with index.write() as c:  # the reset: the loop thread's connection to a is closed here
        c.execute("SELECT 1")
    done.set()
    t.join(60)
    assert seen == [True, True, True]


_OTHER_PROCESS = """
import os, sys
from falnb.cache._index import index_for
index = index_for(__import__("pathlib").Path(sys.argv[1]))
for i in range(3):
    with index.write() as c:
        c.execute("INSERT INTO t VALUES (?)", (f"other-{i}",))
os.unlink(sys.argv[1] + "-shm")  # deleted again: its name is absent, as when this process first looked
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="the mapped -shm is read from /proc")
def test_shm_deleted_before_falnb_looks_at_it_loses_no_write(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The hole the stress found under load (``tests/_procs/shm_stress.py``): ``-shm`` deleted after SQLite
    mapped it and before falnb recorded which one it maps.  falnb recorded "none", another process made a new
    one and wrote, the name was deleted again ("none": unchanged), and this process wrote through the deleted
    file over the other's commits.  The phase is forced: the deletion runs inside falnb's record step."""
    from falnb.cache import _walfiles

    db = tmp_path / "index.sqlite3"
    original = _walfiles.Companions.opened

    def deleted_first(self: _walfiles.Companions, c: _walfiles.Tracked, epoch: int) -> None:
        os.unlink(f"{db}-shm")  # SQLite has mapped it (the connection ran its first statements)
        original(self, c, epoch)

    monkeypatch.setattr(_walfiles.Companions, "opened", deleted_first)
    index = index_for(db)
    with index.write() as c:
        c.execute("CREATE TABLE t (who TEXT)")
    monkeypatch.setattr(_walfiles.Companions, "opened", original)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", _OTHER_PROCESS, str(db)], env=env, check=True, timeout=120)
    with index.write() as c:
        c.execute("INSERT INTO t VALUES ('mine')")
    fresh = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        rows = sorted(r[0] for r in fresh.execute("SELECT who FROM t"))
    finally:
        fresh.close()
    assert rows == ["mine", "other-0", "other-1", "other-2"]


_DELETES_ITS_FOLDER = """
import shutil, sys
from pathlib import Path
from falnb import Client
from falnb.emulator import Emulator, serve
folder = Path(sys.argv[1])
server = serve(port=0, emulator=Emulator(latency=0.0))
client = Client(key="k", queue_url=server.url, cache=folder)
for _ in range(2):  # paid, then a hit: its bookkeeping waits in memory for the next write or the exit
    client.generate("a fox", model="flux-schnell", seed=1)
client.close()
shutil.rmtree(folder)  # the user deletes the folder, then the kernel ends
server.close()
"""


def test_a_cache_folder_deleted_before_the_exit_is_not_made_again_at_the_exit(tmp_path: Path) -> None:
    """The exit hook wrote a hit's bookkeeping (when it was last used) into a folder the user had deleted,
    making the folder again, empty (found by the cache-scale bench: one stray folder per run)."""
    folder = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", _DELETES_ITS_FOLDER, str(folder)], env=env, check=True, timeout=120)
    assert not folder.exists()
