"""The response cache's controls: list, count, prune and clear entries, and export / import them
for team replay (:class:`CacheAdmin`, which :class:`~falnb.cache._store.ResponseCache` inherits).

Their ``namespace`` argument: None (the default) means the cache's own namespace, ``"*"`` every
namespace.  The hot path (get, has, put, healing) is in :mod:`falnb.cache._store`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import FalnbError
from ._files import dir_bytes, shas
from ._ledger import Spend, session_spend, totals
from ._prune import clear_done, collect, delete_batches, delete_entries, plan_prune
from ._transfer import EXPORT_FORMAT, EXPORT_VERSION, ImportResult, export_rows, import_zip
from ._units import human_bytes as _human
from ._units import parse_age, parse_bytes, parse_since

if TYPE_CHECKING:
    from ._index import Index

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "CacheAdmin",
    "CacheStats",
    "EntryInfo",
    "ImportResult",
    "PruneResult",
]


@dataclass(frozen=True)
class EntryInfo:
    """One entry as listed by :meth:`ResponseCache.entries` (no image bytes are read)."""

    namespace: str
    key: str
    model: str
    prompt: str
    images: int
    bytes: int
    cost: float | None
    request_id: str | None
    created: float
    used: float
    canonical: Mapping[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class CacheStats:
    directory: Path
    #: entries in the namespace(s) asked for
    entries: int
    images: int
    #: bytes of image files on disk (shared by every namespace; a picture stored once counts once)
    bytes: int
    #: requests in the journal that are being generated or can be re-attached
    in_flight: int
    #: everything recorded in this directory (all processes)
    total: Spend
    #: this process
    session: Spend
    #: ``total`` per namespace: the emulator's make-believe prices are never added to fal's spend
    by_namespace: Mapping[str, Spend] = field(default_factory=dict)

    def spending(self) -> list[tuple[str | None, Spend]]:
        """What was spent: per namespace when the ledger holds several (the emulator's make-believe dollars
        are never added to fal's), else ``[(None, total)]``."""
        return list(self.by_namespace.items()) if len(self.by_namespace) > 1 else [(None, self.total)]

    def __str__(self) -> str:
        spent = [f"total ({n}): {v}" if n else f"total:   {v}" for n, v in self.spending()]
        return (f"{self.directory}\n  {self.entries} entries, {self.images} images, {_human(self.bytes)} of images"
                f"\n  in flight: {self.in_flight}\n  " + "\n  ".join(spent) + f"\n  session: {self.session}")


@dataclass(frozen=True)
class PruneResult:
    entries: int
    bytes: int
    dry_run: bool = False

    def __str__(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return f"{verb} {self.entries} entries, {_human(self.bytes)}"


class CacheAdmin:
    """The controls of :class:`~falnb.cache._store.ResponseCache` (a mixin: it uses the cache's index and files)."""

    if TYPE_CHECKING:
        directory: Path
        namespace: str
        _index: Index
        _objects: str

        def _store_object(self, sha: str, data: bytes) -> None: ...

    def journal(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """The journal's rows that are not done: requests in flight, re-attachable or uncertain."""
        where, args = self._ns_where(namespace)
        with self._reading(), self._index.using() as c:
            rows = c.execute(
                "SELECT ns, key, model, state, request_id, pid, host, started, sent, updated FROM journal "
                f"{where} {'AND' if where else 'WHERE'} state != 'done' ORDER BY started", args).fetchall()
        names = ("namespace", "key", "model", "state", "request_id", "pid", "host", "started", "sent", "updated")
        return [dict(zip(names, r, strict=True)) for r in rows]

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """A listing's SQLite failure as falnb's CacheError (a damaged index set aside once, and reported),
        never a raw sqlite3 error (simulation finding S2)."""
        self._index.check_moved()
        try:
            yield
        except sqlite3.Error as exc:
            raise self._index.failed(exc) from None

    def _ns_where(self, namespace: str | None, prefix: str = "WHERE") -> tuple[str, tuple[str, ...]]:
        ns = self.namespace if namespace is None else namespace
        return ("", ()) if ns == "*" else (f"{prefix} ns=?", (ns,))

    def entries(self, namespace: str | None = None, *, model: str | None = None, since: float | str | None = None,
                limit: int | None = None) -> list[EntryInfo]:
        """Stored entries, newest first (``since``: a time stamp, ``"7d"`` or ``"2025-01-31"``)."""
        return list(self.iter_entries(namespace, model=model, since=since, limit=limit))

    def iter_entries(self, namespace: str | None = None, *, model: str | None = None,
                     since: float | str | None = None, limit: int | None = None) -> Iterator[EntryInfo]:
        """:meth:`entries`, one at a time as they are read (the first at once, whatever the cache's size)."""
        self._index.flush()
        clauses, args = _filters(self.namespace if namespace is None else namespace, model, since)
        sql = ("SELECT ns, key, model, canonical, images, bytes, cost, request_id, created, used FROM entries"
               f"{clauses} ORDER BY created DESC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._reading(), self._index.using() as c:  # (around the whole read: a file damaged mid-listing too)
            for ns, key, mdl, canonical, images, size, cost, rid, created, used in c.execute(sql, args):
                try:
                    canon = json.loads(canonical)
                    count = len(json.loads(images))
                except (ValueError, TypeError):
                    canon, count = {}, 0
                canon = canon if isinstance(canon, dict) else {}
                yield EntryInfo(ns, key, mdl, str(canon.get("prompt", "")), count, int(size or 0), cost, rid,
                                created, used, canon)

    def stats(self, namespace: str | None = None) -> CacheStats:
        """Entries, images and bytes, requests in flight, and the ledger's totals (counted by SQLite and
        a walk of the files: nothing is held in memory per entry)."""
        self._index.flush()
        ns = self.namespace if namespace is None else namespace
        where, args = self._ns_where(namespace)
        with self._reading(), self._index.using() as c:
            return self._stats(c, ns, where, args)

    def _stats(self, c: sqlite3.Connection, ns: str, where: str, args: tuple[str, ...]) -> CacheStats:
        try:
            n_entries, n_images = c.execute(
                "SELECT COUNT(*), SUM(CASE WHEN json_valid(images) AND json_type(images)='array' "
                f"THEN json_array_length(images) ELSE 0 END) FROM entries {where}", args).fetchone()
        except sqlite3.OperationalError:  # an SQLite built without its JSON functions: count here
            n_entries = n_images = 0
            for (images,) in c.execute(f"SELECT images FROM entries {where}", args):
                n_entries += 1
                n_images += len(shas(images))
        in_flight = c.execute(
            f"SELECT COUNT(*) FROM journal {where} {'AND' if where else 'WHERE'} state != 'done'", args).fetchone()[0]
        total = totals(self._index, None if ns == "*" else ns)
        session = session_spend(None if ns == "*" else ns)
        by_ns = {n: totals(self._index, n) for n in _spent_in(c)} if ns == "*" else {ns: total}
        return CacheStats(self.directory, int(n_entries or 0), int(n_images or 0), dir_bytes(Path(self._objects)),
                          int(in_flight), total, session, by_ns)

    def prune(self, older_than: float | str | _dt.timedelta | None = None, max_bytes: int | str | None = None,
              namespace: str | None = None, *, dry_run: bool = False) -> PruneResult:
        """Remove entries not used for ``older_than`` (seconds, ``"30d"``...), then the least recently used
        until the image files take at most ``max_bytes`` (bytes or ``"500MB"``).  Image files no entry
        uses any more are deleted.  In short transactions (see :mod:`falnb.cache._prune`)."""
        age = parse_age(older_than) if older_than is not None else None
        limit = parse_bytes(max_bytes) if max_bytes is not None else None
        index, root = self._index, Path(self._objects)
        with index.using() as c:
            doomed, freed = plan_prune(c, root, self.namespace if namespace is None else namespace, age, limit)
        if not dry_run:
            delete_entries(index, doomed)
            clear_done(index, self._ns_where(namespace)[1])
            collect(index, root)
        index.checkpoint()
        return PruneResult(len(doomed), freed, dry_run)

    def clear(self, namespace: str | None = None, *, ledger: bool = False) -> int:
        """Remove every entry (of ``namespace``) and the image files no longer used; the ledger too if asked.

        Requests in flight keep their journal rows (a process may be waiting on them)."""
        index = self._index
        where, args = self._ns_where(namespace)
        n = delete_batches(index, "entries", where, args)
        clear_done(index, args)
        if ledger:
            with index.write() as c:
                c.execute(f"DELETE FROM ledger {where}", args)
                c.execute(f"DELETE FROM totals {where}", args)  # (no rounding left behind by the running sums)
        collect(index, Path(self._objects))
        index.checkpoint()
        return n

    # -- team replay: export / import -----------------------------------------------------------

    def export(self, path: str | Path, namespace: str | None = None, *, model: str | None = None,
               since: float | str | None = None) -> int:
        """Write entries (and their image files) to a zip file another clone can :meth:`import_`."""
        self._index.flush()
        clauses, args = _filters(self.namespace if namespace is None else namespace, model, since)
        with self._index.using() as c:
            rows = c.execute(
                "SELECT ns, key, model, canonical, request_id, response, images, cost, created FROM entries"
                f"{clauses} ORDER BY created", args)
            return export_rows(rows, self._objects, path)

    def import_(self, path: str | Path, *, replace: bool = False) -> ImportResult:
        """Add the entries of an :meth:`export` file (every namespace in it); existing entries are kept
        unless ``replace``.  Every file is checked against its SHA-256 and every key against its request
        before anything is stored (a relabelled entry is refused)."""
        return import_zip(path, self._index, self, replace)

# -- helpers ----------------------------------------------------------------------------------


def _spent_in(c: sqlite3.Connection) -> list[str]:
    """The namespaces the ledger has recorded anything in."""
    try:
        rows = c.execute("SELECT DISTINCT ns FROM totals").fetchall()
    except sqlite3.OperationalError:  # a version-1 index opened read-only: no running sums
        rows = c.execute("SELECT DISTINCT ns FROM ledger").fetchall()
    return sorted(str(r[0]) for r in rows)


def _filters(namespace: str, model: str | None, since: float | str | None) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    args: list[Any] = []
    if namespace != "*":
        clauses.append("ns=?")
        args.append(namespace)
    if model:
        from ..catalog._catalog import default_catalog

        try:
            model = default_catalog().resolve(model).id
        except FalnbError:  # a name the catalog does not know: match the id as given
            pass
        clauses.append("model=?")
        args.append(model)
    if since is not None:
        clauses.append("created>=?")
        args.append(parse_since(since))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)
