"""The pay-once response cache: fal's response and the image **bytes**, on disk, keyed by request.

Layout of a cache directory (``FALNB_CACHE_DIR``, else the user cache directory)::

    index.sqlite3          entries, the in-flight journal and the ledger (SQLite, WAL mode)
    objects/ab/abcdef...   image bytes, named by their SHA-256 (a picture is stored once)

* The key is :attr:`falnb._request.FalRequest.key`: the full model id and the canonical input.
  ``namespace`` keeps the emulator's pictures (``"emulator"``) apart from fal's (``"fal"``).
* Writes are atomic: an image is written to a temporary file, fsynced and renamed into place,
  then its entry is committed in one SQLite transaction.  Nothing reads a half-written entry.
* A hit reads the row and the files, checks each file's size (and its SHA-256 once per file and
  process), and builds the :class:`~falnb.Image` objects: no network, no decoding.
* A damaged entry (a missing, truncated or altered file, unreadable JSON) is reported once with a
  :class:`CacheWarning`, removed from the index, and counts as a miss: it is generated again.
* Files are created 0600 and directories 0700.  No key, header or secret is ever stored.

Controls: :meth:`ResponseCache.entries`, :meth:`~ResponseCache.stats`, :meth:`~ResponseCache.prune`,
:meth:`~ResponseCache.clear`, :meth:`~ResponseCache.export` and :meth:`~ResponseCache.import_`, and
``falnb cache ...`` on the command line.  Their ``namespace`` argument: None (the default) means
this cache's own namespace, ``"*"`` every namespace.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cache_db import CacheWarning, Index, IndexSetAside, index_for, private_dir
from ._exceptions import CacheError, FalnbError, InputError
from ._ledger import _UNSET, Ledger, Spend, session_spend, totals
from ._models import Image

if TYPE_CHECKING:
    from ._journal import InFlight

__all__ = [
    "CacheEntry",
    "CacheStats",
    "CacheWarning",
    "EntryInfo",
    "ImportResult",
    "PruneResult",
    "ResponseCache",
    "default_directory",
    "parse_age",
    "parse_bytes",
]

EXPORT_FORMAT = "falnb-cache-export"
EXPORT_VERSION = 1
_MANIFEST = "falnb-cache.json"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: a hit refreshes an entry's "last used" time (for pruning) at most this often
_TOUCH_EVERY = 3600.0
#: data: URIs longer than this are dropped from the stored response (the bytes are in the files)
_ELIDE_OVER = 512
ELIDED = "data:,falnb-cache-elided"


def default_directory() -> Path:
    """``FALNB_CACHE_DIR`` (relative to the working directory), else the user cache directory."""
    env = os.environ.get("FALNB_CACHE_DIR", "").strip()
    if env:
        return Path(env).expanduser().absolute()
    import platformdirs

    return Path(platformdirs.user_cache_dir("falnb", appauthor=False))


@dataclass(frozen=True, eq=False)
class CacheEntry:
    """A stored response: the images (bytes included), fal's request id and its response JSON."""

    key: str
    images: list[Image]
    request_id: str | None
    response: dict[str, Any] = field(repr=False)
    model: str = ""
    created: float = 0.0


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


@dataclass(frozen=True)
class ImportResult:
    imported: int
    skipped: int
    damaged: int

    def __str__(self) -> str:
        s = f"imported {self.imported} entries, skipped {self.skipped} already present"
        return s + (f", {self.damaged} damaged (not imported)" if self.damaged else "")


class _Bad(Exception):
    """An entry that cannot be served (the message says why); ``sha`` names a damaged file."""

    def __init__(self, why: str, sha: str | None = None) -> None:
        super().__init__(why)
        self.sha = sha


#: path -> hash((inode, size, mtime_ns, ctime_ns)) of files whose SHA-256 was checked in this process.
#: An int, not the tuple, and at most _VERIFIED_MAX paths (the oldest forgotten first): about 2.5 MB.
#: (A changed file whose signature hashes the same as before is a 2**-64 chance: it is re-hashed anyway
#: when its size differs.)
_VERIFIED: dict[str, int] = {}
_VERIFIED_MAX = 10_000
_REPORTED: set[tuple[str, str, str]] = set()
_O_READ = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
_REPORTED_LOCK = threading.Lock()


def _sig(st: os.stat_result) -> int:
    return hash((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))


class ResponseCache:
    """A cache directory, seen through one namespace.

    ``directory``: default :func:`default_directory`.  ``namespace``: ``"fal"`` for fal's pictures,
    ``"emulator"`` for the emulator's.  ``budget_session`` / ``budget_total`` (USD): see
    :class:`~falnb._ledger.Ledger`.
    """

    def __init__(self, directory: str | Path | None = None, namespace: str = "fal", *,
                 budget_session: float | object | None = _UNSET, budget_total: float | object | None = _UNSET,
                 _index: Index | None = None) -> None:
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace) or namespace == "*":
            raise InputError(f"cache namespace {namespace!r} must be letters, digits, '.', '_' or '-'")
        self.directory = Path(directory).expanduser().absolute() if directory is not None else default_directory()
        self.namespace = namespace
        self._index = _index or index_for(self.directory / "index.sqlite3")
        self._objects = str(self.directory / "objects")
        self.ledger = Ledger(self._index, namespace, budget_session=budget_session, budget_total=budget_total,
                             where=str(self.directory))

    def __repr__(self) -> str:
        return f"<falnb ResponseCache {str(self.directory)!r} namespace={self.namespace!r}>"

    def for_namespace(self, namespace: str) -> ResponseCache:
        """The same directory (and budgets) seen through another namespace."""
        if namespace == self.namespace:
            return self
        other = ResponseCache(self.directory, namespace, _index=self._index)
        other.ledger._budget_session = self.ledger._budget_session
        other.ledger._budget_total = self.ledger._budget_total
        return other

    # -- the hot path ------------------------------------------------------------------------

    def get(self, key: str) -> CacheEntry | None:
        """The stored entry for ``key``, or None (a miss; a damaged entry is reported and removed)."""
        ns = self.namespace
        try:
            row = self._index.conn().execute(
                "SELECT request_id, response, images, model, created, used FROM entries WHERE ns=? AND key=?",
                (ns, key)).fetchone()
        except sqlite3.Error as exc:
            err = self._index.failed(exc)
            if not isinstance(err, IndexSetAside):  # (set aside: reported once already, by failed())
                self._report(key, f"the cache index cannot be read ({err.message})")
            return None
        if row is None:
            return None
        request_id, response_json, images_json, model, created, used = row
        try:
            images = self._load_images(images_json)
            response = json.loads(response_json)
            if not isinstance(response, dict):
                raise _Bad("its response is not a JSON object")
        except _Bad as bad:
            self._heal(key, created, str(bad), bad.sha)
            return None
        except (ValueError, TypeError, KeyError) as exc:
            self._heal(key, created, f"its index row is unreadable ({type(exc).__name__}: {exc})", None)
            return None
        now = time.time()
        if not isinstance(used, (int, float)) or now - used > _TOUCH_EVERY:
            self._index.touch(ns, key, now)
        return CacheEntry(key, images, request_id if isinstance(request_id, str) else None, response,
                          model, created)

    def _load_images(self, images_json: str) -> list[Image]:
        metas = json.loads(images_json)
        if not isinstance(metas, list) or not metas:
            raise _Bad("its image list is unreadable")
        out = []
        objects = self._objects
        verified = _VERIFIED
        for m in metas:
            sha, size = m["sha"], m["size"]
            if type(sha) is not str or len(sha) != 64 or not sha.isalnum() or type(size) is not int:
                raise _Bad("its image list is unreadable")
            path = f"{objects}/{sha[:2]}/{sha}"
            try:
                fd = os.open(path, _O_READ)
            except FileNotFoundError:
                raise _Bad(f"the image file {sha[:12]}… is missing") from None
            except OSError as exc:
                raise _Bad(f"the image file {sha[:12]}… cannot be read ({exc.strerror})") from None
            try:
                st = os.fstat(fd)
                data = os.read(fd, size + 1) if st.st_size == size else b""
                while 0 < len(data) < size:  # a short read (a pipe-like filesystem): finish it
                    more = os.read(fd, size + 1 - len(data))
                    if not more:
                        break
                    data += more
            finally:
                os.close(fd)
            if len(data) != size:
                raise _Bad(f"the image file {sha[:12]}… has {st.st_size} bytes instead of {size}", sha)
            sig = hash((st.st_ino, size, st.st_mtime_ns, st.st_ctime_ns))
            if verified.get(path) != sig:
                if hashlib.sha256(data).hexdigest() != sha:
                    raise _Bad(f"the image file {sha[:12]}… does not match its checksum", sha)
                _remember(path, sig)
            out.append(Image(data=data, content_type=m["type"], width=m["w"], height=m["h"], url=m["url"],
                             seed=m["seed"]))
        return out

    def has(self, key: str) -> bool:
        """Whether an entry is indexed for ``key`` (its files are not checked)."""
        try:
            return self._index.conn().execute("SELECT 1 FROM entries WHERE ns=? AND key=?",
                                              (self.namespace, key)).fetchone() is not None
        except sqlite3.Error as exc:
            self._index.failed(exc)
            return False

    def _report(self, key: str, why: str) -> None:
        token = (str(self.directory), key, why)
        with _REPORTED_LOCK:
            if token in _REPORTED:
                return
            _REPORTED.add(token)
        warnings.warn(f"falnb: the cached entry {key[:12]}… in {self.directory} is damaged: {why}. "
                      "It was set aside and will be generated again.", CacheWarning, stacklevel=4)

    def _heal(self, key: str, created: float, why: str, sha: str | None) -> None:
        self._report(key, why)
        try:
            with self._index.write() as c:
                c.execute("DELETE FROM entries WHERE ns=? AND key=? AND created=?", (self.namespace, key, created))
                if sha is not None:
                    self._drop_object_if_bad(sha)
        except (CacheError, OSError):  # pragma: no cover - the miss is served anyway
            pass

    def _drop_object_if_bad(self, sha: str) -> None:
        """Remove the image file of ``sha`` unless it is good (another entry may share a good one).
        Never raises: it runs inside the healing transaction, whose row removal must commit."""
        path = f"{self._objects}/{sha[:2]}/{sha}"
        _VERIFIED.pop(path, None)
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                _remove_any(path)  # a directory, a link...: never an image file
                return
            with open(path, "rb") as f:
                ok = hashlib.sha256(f.read()).hexdigest() == sha
        except OSError:  # gone, or unreadable: a put replaces it
            return
        if not ok:
            with contextlib.suppress(OSError):
                os.unlink(path)

    # -- storing -----------------------------------------------------------------------------

    def put(self, key: str, *, model: str, canonical: Mapping[str, Any], response: Mapping[str, Any],
            images: Sequence[Image], request_id: str | None, cost: float | None) -> None:
        """Store a paid response and its images (replacing any entry for ``key``).

        Raises :class:`CacheError` when the disk refuses (the caller still has its pictures)."""
        blobs: list[tuple[str, bytes]] = []
        metas: list[dict[str, Any]] = []
        for img in images:
            sha = hashlib.sha256(img.data).hexdigest()
            blobs.append((sha, img.data))
            url = img.url if img.url and not img.url.startswith("data:") else None
            metas.append({"sha": sha, "size": len(img.data), "type": img.content_type, "w": img.width,
                          "h": img.height, "url": url, "seed": img.seed})
        if not metas:
            raise CacheError(f"nothing to cache for {model}: the response has no images", model=model)
        try:
            response_json = json.dumps(_elide(response), ensure_ascii=False, separators=(",", ":"), default=str)
            canonical_json = json.dumps(dict(canonical), ensure_ascii=False, sort_keys=True,
                                        separators=(",", ":"), default=str)
        except (TypeError, ValueError) as exc:
            raise CacheError(f"the response of {model} cannot be stored as JSON: {exc}", model=model) from None
        try:
            for attempt in (1, 2):  # the index was damaged and set aside (reported): store into the new one
                now = time.time()
                try:
                    with self._index.write() as c:  # the write lock also keeps prune from collecting new files
                        for sha, data in blobs:
                            self._store_object(sha, data)
                        c.execute("INSERT OR REPLACE INTO entries(ns, key, model, canonical, request_id, response, "
                                  "images, cost, bytes, created, used) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                  (self.namespace, key, model, canonical_json, request_id, response_json,
                                   json.dumps(metas, separators=(",", ":")), cost, sum(len(b) for _, b in blobs),
                                   now, now))
                        c.execute("UPDATE journal SET state='done', updated=? WHERE ns=? AND key=? AND pid=?",
                                  (now, self.namespace, key, os.getpid()))
                    break
                except IndexSetAside:
                    if attempt == 2:
                        raise
        except (OSError, CacheError) as exc:
            raise CacheError(f"could not store the pictures of {model} in the cache {self.directory}: {exc}",
                             model=model, hint="The pictures are in memory; free disk space or set "
                             "FALNB_CACHE_DIR to keep them next time.") from None
        self._index.checkpoint()

    def _store_object(self, sha: str, data: bytes) -> None:
        shard = Path(self._objects) / sha[:2]
        path = str(shard / sha)
        try:
            st: os.stat_result | None = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):  # a directory in its place: os.replace would fail
            _remove_any(path)
            st = None
        if st is not None and st.st_size == len(data):
            if _VERIFIED.get(path) == _sig(st):
                return
            with open(path, "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() == sha:
                    _remember(path, _sig(st))
                    return
        private_dir(Path(self._objects))
        private_dir(shard)
        fd, tmp = tempfile.mkstemp(dir=shard, prefix=".tmp-")  # created 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(shard)
        _remember(path, _sig(os.stat(path)))

    # -- the in-flight journal ---------------------------------------------------------------

    def inflight(self, key: str, model: str, *, refresh: bool = False, timeout: float | None = None) -> InFlight:
        """``async with cache.inflight(key, model) as slot``: claim ``key`` across processes (see ``_journal``)."""
        from ._journal import InFlight

        return InFlight(self, key, model, refresh=refresh, timeout=timeout)

    def journal(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """The journal's rows that are not done: requests in flight, re-attachable or uncertain."""
        where, args = self._ns_where(namespace)
        rows = self._index.conn().execute(
            "SELECT ns, key, model, state, request_id, pid, host, started, sent, updated FROM journal "
            f"{where} {'AND' if where else 'WHERE'} state != 'done' ORDER BY started", args).fetchall()
        names = ("namespace", "key", "model", "state", "request_id", "pid", "host", "started", "sent", "updated")
        return [dict(zip(names, r, strict=True)) for r in rows]

    # -- controls ----------------------------------------------------------------------------

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
        return CacheStats(self.directory, n_entries, n_images, _dir_bytes(Path(self._objects)), int(in_flight), total,
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
            refs = _references(c)
            sizes = _object_sizes(Path(self._objects))
            doomed: list[tuple[str, str]] = []
            freed = 0
            now = time.time()
            total = sum(sizes.values())

            def drop(ns: str, key: str, images: str) -> None:
                nonlocal freed, total
                doomed.append((ns, key))
                for sha in _shas(images):
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

    def _collect(self, c: sqlite3.Connection) -> None:
        """Delete image files no entry refers to (called holding the write lock: no put is half-done)."""
        refs = _references(c)
        root = Path(self._objects)
        if not root.is_dir():
            return
        for shard in root.iterdir():
            if not shard.is_dir():
                continue
            for f in shard.iterdir():
                if f.name.startswith(".tmp-") or f.name not in refs:
                    with contextlib.suppress(OSError):
                        f.unlink()
                    _VERIFIED.pop(str(f), None)
            with contextlib.suppress(OSError):
                shard.rmdir()  # only when empty

    # -- team replay: export / import -----------------------------------------------------------

    def export(self, path: str | Path, namespace: str | None = None, *, model: str | None = None,
               since: float | str | None = None) -> int:
        """Write entries (and their image files) to a zip file another clone can :meth:`import_`."""
        self._index.flush()
        clauses, args = _filters(self.namespace if namespace is None else namespace, model, since)
        rows = self._index.conn().execute(
            "SELECT ns, key, model, canonical, request_id, response, images, cost, created FROM entries"
            f"{clauses} ORDER BY created", args).fetchall()
        dest = Path(path)
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        entries, written = [], set()
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
                for ns, key, mdl, canonical, rid, response, images, cost, created in rows:
                    try:
                        metas = json.loads(images)
                        doc = {"namespace": ns, "key": key, "model": mdl, "canonical": json.loads(canonical),
                               "request_id": rid, "response": json.loads(response), "images": metas, "cost": cost,
                               "created": created}
                        blobs = [(m["sha"], self._read_verified(m["sha"], m["size"])) for m in metas]
                    except (_Bad, ValueError, TypeError, KeyError):
                        continue  # a damaged entry is not exported
                    for sha, data in blobs:
                        if sha not in written:
                            z.writestr(f"objects/{sha}", data)
                            written.add(sha)
                    entries.append(doc)
                manifest = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "created": time.time(),
                            "entries": entries}
                z.writestr(_MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1), zipfile.ZIP_DEFLATED)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return len(entries)

    def _read_verified(self, sha: str, size: int) -> bytes:
        path = f"{self._objects}/{sha[:2]}/{sha}"
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            raise _Bad("missing") from None
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
            raise _Bad("damaged", sha)
        return data

    def import_(self, path: str | Path, *, replace: bool = False) -> ImportResult:
        """Add the entries of an :meth:`export` file (every namespace in it); existing entries are kept
        unless ``replace``.  Every file is checked against its SHA-256 before it is stored."""
        imported = skipped = damaged = 0
        try:
            z = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise CacheError(f"{path} is not a falnb cache export: {exc}") from None
        with z:
            try:
                manifest = json.loads(z.read(_MANIFEST))
            except (KeyError, ValueError) as exc:
                raise CacheError(f"{path} is not a falnb cache export (no readable {_MANIFEST}: {exc})") from None
            if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
                raise CacheError(f"{path} is not a falnb cache export")
            if int(manifest.get("version", 0)) > EXPORT_VERSION:
                raise CacheError(f"{path} was written by a newer falnb (format {manifest.get('version')})",
                                 hint="Upgrade falnb to import it.")
            names = set(z.namelist())
            for doc in manifest.get("entries") or []:
                try:
                    row = _import_row(doc)
                    blobs = []
                    for m in row["metas"]:
                        member = f"objects/{m['sha']}"
                        if member not in names or z.getinfo(member).file_size != m["size"]:
                            raise _Bad("missing file")
                        data = z.read(member)
                        if hashlib.sha256(data).hexdigest() != m["sha"]:
                            raise _Bad("damaged file")
                        blobs.append((m["sha"], data))
                except (_Bad, ValueError, TypeError, KeyError, zipfile.BadZipFile):
                    damaged += 1
                    continue
                with self._index.write() as c:
                    exists = c.execute("SELECT 1 FROM entries WHERE ns=? AND key=?",
                                       (row["ns"], row["key"])).fetchone() is not None
                    if exists and not replace:
                        skipped += 1
                        continue
                    for sha, data in blobs:
                        self._store_object(sha, data)
                    now = time.time()
                    c.execute("INSERT OR REPLACE INTO entries(ns, key, model, canonical, request_id, response, "
                              "images, cost, bytes, created, used) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              (row["ns"], row["key"], row["model"], row["canonical"], row["request_id"],
                               row["response"], json.dumps(row["metas"], separators=(",", ":")), row["cost"],
                               sum(len(d) for _, d in blobs), row["created"], now))
                    imported += 1
        self._index.checkpoint()
        return ImportResult(imported, skipped, damaged)


# -- helpers ----------------------------------------------------------------------------------


def _remember(path: str, sig: int) -> None:
    if path not in _VERIFIED and len(_VERIFIED) >= _VERIFIED_MAX:
        with contextlib.suppress(StopIteration, KeyError, RuntimeError):  # another thread got there first
            del _VERIFIED[next(iter(_VERIFIED))]  # the oldest: a file not checked for a while is hashed again
    _VERIFIED[path] = sig


def _remove_any(path: str) -> None:
    """Remove whatever is at ``path`` (a file, a link, a directory tree), best effort."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":  # pragma: no cover
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse directory fsync
        pass
    finally:
        os.close(fd)


def _elide(value: Any) -> Any:
    """The response without long ``data:`` URIs (sync_mode images): their bytes are in the files."""
    if isinstance(value, str):
        return ELIDED if len(value) > _ELIDE_OVER and value.startswith("data:") else value
    if isinstance(value, Mapping):
        return {str(k): _elide(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_elide(v) for v in value]
    return value


def _shas(images_json: str) -> list[str]:
    try:
        metas = json.loads(images_json)
        return [m["sha"] for m in metas if isinstance(m, dict) and isinstance(m.get("sha"), str)]
    except (ValueError, TypeError):
        return []


def _references(c: sqlite3.Connection) -> dict[str, int]:
    refs: dict[str, int] = {}
    for (images,) in c.execute("SELECT images FROM entries"):
        for sha in _shas(images):
            refs[sha] = refs.get(sha, 0) + 1
    return refs


def _object_sizes(root: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    if root.is_dir():
        for shard in root.iterdir():
            if shard.is_dir():
                for f in shard.iterdir():
                    if not f.name.startswith("."):
                        with contextlib.suppress(OSError):
                            out[f.name] = f.stat().st_size
    return out


def _dir_bytes(root: Path) -> int:
    return sum(_object_sizes(root).values())


def _filters(namespace: str, model: str | None, since: float | str | None) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    args: list[Any] = []
    if namespace != "*":
        clauses.append("ns=?")
        args.append(namespace)
    if model:
        from ._catalog import default_catalog

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


def _import_row(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise _Bad("not an object")
    ns, key, model = doc["namespace"], doc["key"], doc["model"]
    if not (isinstance(ns, str) and _NAMESPACE.fullmatch(ns) and isinstance(key, str) and _HEX64.fullmatch(key)
            and isinstance(model, str) and model):
        raise _Bad("bad names")
    metas = doc["images"]
    if not isinstance(metas, list) or not metas:
        raise _Bad("no images")
    clean = []
    for m in metas:
        if not (isinstance(m, dict) and isinstance(m.get("sha"), str) and _HEX64.fullmatch(m["sha"])
                and isinstance(m.get("size"), int) and m["size"] >= 0 and isinstance(m.get("type"), str)):
            raise _Bad("bad image")
        clean.append({"sha": m["sha"], "size": m["size"], "type": m["type"], "w": _opt_int(m.get("w")),
                      "h": _opt_int(m.get("h")), "url": m.get("url") if isinstance(m.get("url"), str) else None,
                      "seed": _opt_int(m.get("seed"))})
    response, canonical = doc["response"], doc["canonical"]
    if not isinstance(response, dict) or not isinstance(canonical, dict):
        raise _Bad("bad response")
    cost = doc.get("cost")
    created = doc.get("created")
    rid = doc.get("request_id")
    return {"ns": ns, "key": key, "model": model, "metas": clean,
            "canonical": json.dumps(canonical, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
            "response": json.dumps(response, ensure_ascii=False, separators=(",", ":")),
            "cost": float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None,
            "created": float(created) if isinstance(created, (int, float)) else time.time(),
            "request_id": rid if isinstance(rid, str) else None}


def _opt_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_SIZES = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}


def parse_age(value: float | str | _dt.timedelta) -> float:
    """Seconds from ``90``, ``"30d"``, ``"12h"``, ``"2w"``, ``"45min"`` or a ``timedelta``."""
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", str(value).lower())
    if not m or m.group(2) not in ({*_UNITS, ""}):
        raise InputError(f"{value!r} is not an age", hint="Write e.g. 30d, 12h, 2w, 45min or a number of seconds.")
    return float(m.group(1)) * _UNITS.get(m.group(2) or "s", 1)


def parse_bytes(value: int | str) -> int:
    """Bytes from ``1000``, ``"500MB"``, ``"1.5GB"``, ``"200KiB"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", str(value).lower())
    if not m or m.group(2) not in _SIZES:
        raise InputError(f"{value!r} is not a size", hint="Write e.g. 500MB, 2GB or a number of bytes.")
    return int(float(m.group(1)) * _SIZES[m.group(2)])


def parse_since(value: float | str) -> float:
    """A time stamp from a number, an age (``"7d"``: that long ago) or an ISO date/time."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return time.time() - parse_age(text)
    except InputError:
        pass
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{value!r} is not a date or an age",
                         hint="Write e.g. 2025-01-31, 2025-01-31T12:00 or 7d.") from None
    return when.timestamp()


def _human(n: int | float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
