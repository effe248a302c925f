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
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import FalnbError
from ._files import dir_bytes, object_sizes, references, shas
from ._ledger import Spend, session_spend, totals
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

    def __str__(self) -> str:
        return (f"{self.directory}\n  {self.entries} entries, {self.images} images, {_human(self.bytes)} of images"
                f"\n  in flight: {self.in_flight}\n  total:   {self.total}\n  session: {self.session}")


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

        def _collect(self, c: sqlite3.Connection) -> None: ...

    def journal(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """The journal's rows that are not done: requests in flight, re-attachable or uncertain."""
        where, args = self._ns_where(namespace)
        rows = self._index.conn().execute(
            "SELECT ns, key, model, state, request_id, pid, host, started, sent, updated FROM journal "
            f"{where} {'AND' if where else 'WHERE'} state != 'done' ORDER BY started", args).fetchall()
        names = ("namespace", "key", "model", "state", "request_id", "pid", "host", "started", "sent", "updated")
        return [dict(zip(names, r, strict=True)) for r in rows]

    def _ns_where(self, namespace: str | None, prefix: str = "WHERE") -> tuple[str, tuple[str, ...]]:
        ns = self.namespace if namespace is None else namespace
        return ("", ()) if ns == "*" else (f"{prefix} ns=?", (ns,))

    def entries(self, namespace: str | None = None, *, model: str | None = None, since: float | str | None = None,
                limit: int | None = None) -> list[EntryInfo]:
        """Stored entries, newest first (``since``: a time stamp, ``"7d"`` or ``"2025-01-31"``)."""
        self._index.flush()
        clauses, args = _filters(self.namespace if namespace is None else namespace, model, since)
        sql = ("SELECT ns, key, model, canonical, images, bytes, cost, request_id, created, used FROM entries"
               f"{clauses} ORDER BY created DESC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        out = []
        for ns, key, mdl, canonical, images, size, cost, rid, created, used in self._index.conn().execute(sql, args):
            try:
                canon = json.loads(canonical)
                count = len(json.loads(images))
            except (ValueError, TypeError):
                canon, count = {}, 0
            canon = canon if isinstance(canon, dict) else {}
            out.append(EntryInfo(ns, key, mdl, str(canon.get("prompt", "")), count, int(size or 0), cost, rid,
                                 created, used, canon))
        return out

    def stats(self, namespace: str | None = None) -> CacheStats:
        """Entries, images and bytes, requests in flight, and the ledger's totals."""
        self._index.flush()
        ns = self.namespace if namespace is None else namespace
        where, args = self._ns_where(namespace)
        c = self._index.conn()
        n_entries, n_images = 0, 0
        for (images,) in c.execute(f"SELECT images FROM entries {where}", args):
            n_entries += 1
            with contextlib.suppress(ValueError, TypeError):
                n_images += len(json.loads(images))
        in_flight = c.execute(
            f"SELECT COUNT(*) FROM journal {where} {'AND' if where else 'WHERE'} state != 'done'", args).fetchone()[0]
        total = totals(self._index, None if ns == "*" else ns)
        session = session_spend(None if ns == "*" else ns)
        return CacheStats(self.directory, n_entries, n_images, dir_bytes(Path(self._objects)), int(in_flight), total,
                          session)

    def prune(self, older_than: float | str | _dt.timedelta | None = None, max_bytes: int | str | None = None,
              namespace: str | None = None, *, dry_run: bool = False) -> PruneResult:
        """Remove entries not used for ``older_than`` (seconds, ``"30d"``...), then the least recently used
        until the image files take at most ``max_bytes`` (bytes or ``"500MB"``).  Image files no entry
        uses any more are deleted."""
        age = parse_age(older_than) if older_than is not None else None
        limit = parse_bytes(max_bytes) if max_bytes is not None else None
        with self._index.write() as c:
            where, args = self._ns_where(namespace)
            rows = c.execute(f"SELECT ns, key, images, bytes, used FROM entries {where} ORDER BY used", args).fetchall()
            refs = references(c)
            sizes = object_sizes(Path(self._objects))
            doomed: list[tuple[str, str]] = []
            freed = 0
            now = time.time()
            total = sum(sizes.values())

            def drop(ns: str, key: str, images: str) -> None:
                nonlocal freed, total
                doomed.append((ns, key))
                for sha in shas(images):
                    refs[sha] = refs.get(sha, 1) - 1
                    if refs[sha] <= 0 and sha in sizes:
                        freed += sizes[sha]
                        total -= sizes.pop(sha)

            kept = []
            for ns, key, images, _size, used in rows:
                if age is not None and now - (used or 0) > age:
                    drop(ns, key, images)
                else:
                    kept.append((ns, key, images))
            if limit is not None:
                for ns, key, images in kept:
                    if total <= limit:
                        break
                    drop(ns, key, images)
            if not dry_run:
                c.executemany("DELETE FROM entries WHERE ns=? AND key=?", doomed)
                c.execute(f"DELETE FROM journal WHERE state='done' {'AND ns=?' if args else ''}", args)
                self._collect(c)
        self._index.checkpoint()
        return PruneResult(len(doomed), freed, dry_run)

    def clear(self, namespace: str | None = None, *, ledger: bool = False) -> int:
        """Remove every entry (of ``namespace``) and the image files no longer used; the ledger too if asked.

        Requests in flight keep their journal rows (a process may be waiting on them)."""
        with self._index.write() as c:
            where, args = self._ns_where(namespace)
            n = int(c.execute(f"DELETE FROM entries {where}", args).rowcount)
            c.execute(f"DELETE FROM journal WHERE state='done' {'AND ns=?' if args else ''}", args)
            if ledger:
                c.execute(f"DELETE FROM ledger {where}", args)
            self._collect(c)
        self._index.checkpoint()
        return n

    # -- team replay: export / import -----------------------------------------------------------

    def export(self, path: str | Path, namespace: str | None = None, *, model: str | None = None,
               since: float | str | None = None) -> int:
        """Write entries (and their image files) to a zip file another clone can :meth:`import_`."""
        self._index.flush()
        clauses, args = _filters(self.namespace if namespace is None else namespace, model, since)
        rows = self._index.conn().execute(
            "SELECT ns, key, model, canonical, request_id, response, images, cost, created FROM entries"
            f"{clauses} ORDER BY created", args)
        return export_rows(rows, self._objects, path)

    def import_(self, path: str | Path, *, replace: bool = False) -> ImportResult:
        """Add the entries of an :meth:`export` file (every namespace in it); existing entries are kept
        unless ``replace``.  Every file is checked against its SHA-256 and every key against its request
        before anything is stored (a relabelled entry is refused)."""
        return import_zip(path, self._index, self, replace)

# -- helpers ----------------------------------------------------------------------------------


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
