"""Pruning and clearing in short transactions: other kernels' writes never wait long behind them.

A prune used to hold the index's write lock while it read every entry, walked every image file and
deleted; with 50,000 entries another process's ``put`` waited almost 4 s.  Now:

1. what to remove is planned from a read (no lock);
2. entries are deleted in batches of :data:`BATCH`, one short transaction each (an entry replaced
   meanwhile, with another ``created`` time, is kept);
3. the files entries refer to are read in one snapshot, with the last *stamp* given (each ``put`` and
   import numbers its entry, in its write transaction); image files no entry refers to are then
   deleted in batches, each under the write lock, after reading the entries stamped since: a file an
   entry stored meanwhile uses (written, or found already there) is never collected.  No clock is
   involved.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ._files import object_sizes, remove_any, shas
from ._schema import stamp_now

if TYPE_CHECKING:
    import sqlite3

    from ._index import Index

__all__ = ["BATCH", "clear_done", "collect", "delete_batches", "delete_entries", "plan_prune"]

#: rows or files per write transaction at most.  200, not 500: deleting an entry writes about two pages to the
#: WAL (keys are hashes, so the rows of a batch lie on different pages of a large table).  At 100,000 entries a
#: batch of 500 wrote ~900 pages, near SQLite's auto-checkpoint of 1,000, and its COMMIT took 13-19 ms beyond
#: the 6 ms of deletes (a checkpoint's length; alone, commits without one take 1-3 ms): another writer's
#: 95th-percentile put during the prune went from 10 ms (1,000 entries) to 16-29 ms.  With 200 (~400 pages)
#: the prune's commits took 1-2 ms at every size with that writer beside it and its put stayed at 10 ms
#: (bench/SCALE.md, "The prune's batches")
BATCH = 200
#: a batch's transaction also ends after this long (deleting files is slow on a busy disk): the longest
#: another writer waits behind a prune.  10 ms, not 50: with 50 ms every batch of a large prune ran to the
#: limit and a writer's 95th-percentile put went from 17 ms (1,000 entries) to 52 ms (100,000); with 10 ms a
#: prune adds little to a writer's put at any size (bench/cache_scale.py), and takes longer itself
HOLD = 0.01
#: the pause after each batch: longer than a waiting writer's poll (``Index.write``), so it gets its turn
PAUSE = 0.01
_T = TypeVar("_T")


def plan_prune(c: sqlite3.Connection, root: Path, ns: str, age: float | None,
               limit: int | None) -> tuple[list[tuple[str, str, float]], int]:
    """The entries to remove ((ns, key, created), least recently used first) and the bytes that frees:
    those not used for ``age`` seconds, then the least recently used until the files fit ``limit``."""
    refs: dict[str, int] = {}
    rows: list[tuple[str, str, float, float, list[str]]] = []
    for row_ns, key, images, created, used in c.execute("SELECT ns, key, images, created, used FROM entries "
                                                        "ORDER BY used"):
        files = shas(images)
        for sha in files:
            refs[sha] = refs.get(sha, 0) + 1
        if ns == "*" or row_ns == ns:
            rows.append((row_ns, key, created, used, files))
    sizes = object_sizes(root)
    total = sum(sizes.values())
    doomed: list[tuple[str, str, float]] = []
    freed = 0
    now = time.time()

    def drop(row: tuple[str, str, float, float, list[str]]) -> None:
        nonlocal freed, total
        doomed.append(row[:3])
        for sha in row[4]:
            refs[sha] = refs.get(sha, 1) - 1
            if refs[sha] <= 0 and sha in sizes:
                freed += sizes[sha]
                total -= sizes.pop(sha)

    kept = []
    for row in rows:
        if age is not None and now - (row[3] or 0) > age:
            drop(row)
        else:
            kept.append(row)
    if limit is not None:
        for row in kept:
            if total <= limit:
                break
            drop(row)
    return doomed, freed


def delete_entries(index: Index, doomed: Sequence[tuple[str, str, float]]) -> None:
    i = 0
    while i < len(doomed):
        with index.write() as c:
            end = time.monotonic() + HOLD
            for row in _chunks(doomed, i):
                c.execute("DELETE FROM entries WHERE ns=? AND key=? AND created=?", row)
                i += 1
                if time.monotonic() > end:
                    break
        time.sleep(PAUSE)


def delete_batches(index: Index, table: str, where: str, args: tuple[Any, ...]) -> int:
    """Delete the rows of ``table`` (entries or journal: keyed by ns, key) matching ``where``, a batch per
    transaction; how many."""
    n = 0
    while True:
        with index.write() as c:
            done = c.execute(f"DELETE FROM {table} WHERE (ns, key) IN (SELECT ns, key FROM {table} {where} "
                             f"LIMIT {BATCH})", args).rowcount
        n += done
        if done < BATCH:
            return n
        time.sleep(PAUSE)


def clear_done(index: Index, ns_args: tuple[str, ...]) -> None:
    """Forget the journal rows of requests whose entries were stored."""
    delete_batches(index, "journal", "WHERE state='done'" + (" AND ns=?" if ns_args else ""), ns_args)


def collect(index: Index, root: Path) -> None:
    """Delete the image files no entry refers to (and orphaned temporary files): see the module docstring."""
    if not root.is_dir():
        return
    with index.using() as c:
        c.execute("BEGIN")  # one snapshot: the references and the last stamp agree
        try:
            stamp = stamp_now(c)
            refs = _refs(c.execute("SELECT images FROM entries"))
        finally:
            c.execute("COMMIT")
    victims = [f.path for shard in _dirs(root) for f in os.scandir(shard)
               if f.name.startswith(".tmp-") or f.name not in refs]
    i = 0
    while i < len(victims):
        with index.write() as c:  # (a put checks or writes its files inside its own write transaction)
            refs |= _refs(c.execute("SELECT images FROM entries WHERE stamp > ?", (stamp,)))
            stamp = stamp_now(c)
            end = time.monotonic() + HOLD
            for path in _chunks(victims, i):
                i += 1
                if os.path.basename(path) not in refs:  # (else an entry stored since uses it)
                    _remove(path)
                if time.monotonic() > end:
                    break
        time.sleep(PAUSE)
    with index.write():  # empty shards (under the lock: a put creates its shard, then writes into it)
        for shard in _dirs(root):
            with contextlib.suppress(OSError):
                os.rmdir(shard)


def _refs(rows: Iterable[tuple[str]]) -> set[str]:
    out: set[str] = set()
    for (images,) in rows:
        out.update(shas(images))
    return out


def _dirs(root: Path) -> Iterator[str]:
    with contextlib.suppress(OSError), os.scandir(root) as it:
        yield from [e.path for e in it if e.is_dir(follow_symlinks=False)]


def _chunks(items: Sequence[_T], start: int) -> Sequence[_T]:
    """The next batch of ``items``, from ``start``."""
    return items[start:start + BATCH]


def _remove(path: str) -> None:
    try:
        is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return
    if is_dir:
        remove_any(path)  # (a directory in place of an image file)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)
