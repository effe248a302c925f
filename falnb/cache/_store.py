"""The pay-once response cache: fal's response and the image **bytes**, on disk, keyed by request.

Layout of a cache directory (``FALNB_CACHE_DIR``, else the user cache directory)::

    index.sqlite3          entries, the in-flight journal and the ledger (SQLite, WAL mode)
    objects/ab/abcdef...   image bytes, named by their SHA-256 (a picture is stored once)

* The key is :attr:`falnb.request._plan.FalRequest.key`: the full model id and the canonical input.
  ``namespace`` keeps the emulator's pictures (``"emulator"``) apart from fal's (``"fal"``).
* Writes are atomic: an image is written to a temporary file, fsynced and renamed into place,
  then its entry is committed in one SQLite transaction.  Nothing reads a half-written entry.
* A hit reads the row and the files, checks each file's size (and its SHA-256 once per file and
  process), and builds the :class:`~falnb.Image` objects: no network, no decoding.
* A damaged entry (a missing, truncated or altered file, unreadable JSON) is reported once with a
  :class:`CacheWarning`, removed from the index, and counts as a miss: it is generated again.
* Files are created 0600 and directories 0700.  No key, header or secret is ever stored.

Controls: :meth:`ResponseCache.entries`, :meth:`~ResponseCache.stats`, :meth:`~ResponseCache.prune`,
:meth:`~ResponseCache.clear`, :meth:`~ResponseCache.export` and :meth:`~ResponseCache.import_` (in
:mod:`falnb.cache._admin`), and ``falnb cache ...`` on the command line.  The image files' helpers are
in :mod:`falnb.cache._files`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import stat
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import CacheError, InputError
from ..results._image import Image
from ._admin import CacheAdmin
from ._entry import CacheEntry
from ._faults import Reported, warn_once
from ._files import NAMESPACE, BadEntry, Unreadable, private_dir, remove_any, write_atomic
from ._index import CacheWarning, Index, IndexSetAside, index_for
from ._ledger import UNSET, Ledger
from ._schema import next_stamp

if TYPE_CHECKING:
    from ._journal import InFlight

__all__ = [
    "CacheEntry",
    "CacheWarning",
    "ResponseCache",
    "default_directory",
]

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


class ResponseCache(CacheAdmin):
    """A cache directory, seen through one namespace.

    ``directory``: default :func:`default_directory`.  ``namespace``: ``"fal"`` for fal's pictures,
    ``"emulator"`` for the emulator's.  ``budget_session`` / ``budget_total`` (USD): see
    :class:`~falnb.cache._ledger.Ledger`.
    """

    def __init__(self, directory: str | Path | None = None, namespace: str = "fal", *,
                 budget_session: float | object | None = UNSET, budget_total: float | object | None = UNSET,
                 _index: Index | None = None) -> None:
        if not isinstance(namespace, str) or not NAMESPACE.fullmatch(namespace) or namespace == "*":
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
        """The stored entry for ``key``, or None: a miss (a damaged entry is reported and removed; an
        index or file that cannot be read right now is a miss for this call, left in place)."""
        ns, index = self.namespace, self._index
        try:
            with index.using() as c:
                row = c.execute(
                    "SELECT request_id, response, images, model, created, used FROM entries WHERE ns=? AND key=?",
                    (ns, key)).fetchone()
        except CacheError:  # (reported by a CacheWarning)
            return None
        except sqlite3.Error as exc:
            index.failed(exc)  # (reported; damage proven by a check is set aside)
            return None
        if row is None:
            return None
        request_id, response_json, images_json, model, created, used = row
        try:
            images = self._load_images(images_json)
            response = json.loads(response_json)
            if not isinstance(response, dict):
                raise BadEntry("its response is not a JSON object")
        except Unreadable as exc:  # not damage: too many open files, a permission, an I/O error
            warn_once(str(self.directory), f"unreadable: {exc}",
                      f"falnb: an image file in the cache {self.directory} cannot be read right now ({exc}); "
                      "falnb goes on without it for now (nothing was removed).", stacklevel=3)
            return None
        except BadEntry as bad:
            self._heal(key, created, str(bad), bad.sha)
            return None
        except (ValueError, TypeError, KeyError) as exc:
            self._heal(key, created, f"its index row is unreadable ({type(exc).__name__}: {exc})", None)
            return None
        now = time.time()
        if not isinstance(used, (int, float)) or now - used > _TOUCH_EVERY:
            index.touch(ns, key, now)
        return CacheEntry(key, images, request_id if isinstance(request_id, str) else None, response,
                          model, created)

    def _load_images(self, images_json: str) -> list[Image]:
        metas = json.loads(images_json)
        if not isinstance(metas, list) or not metas:
            raise BadEntry("its image list is unreadable")
        out = []
        objects = self._objects
        verified = _VERIFIED
        for m in metas:
            sha, size = m["sha"], m["size"]
            if type(sha) is not str or len(sha) != 64 or not sha.isalnum() or type(size) is not int:
                raise BadEntry("its image list is unreadable")
            path = f"{objects}/{sha[:2]}/{sha}"
            try:
                fd = os.open(path, _O_READ)
            except FileNotFoundError:
                raise BadEntry(f"the image file {sha[:12]}… is missing") from None
            except OSError as exc:  # EMFILE, EACCES, EIO...: no proof the file is bad
                raise Unreadable(exc.strerror or type(exc).__name__) from None
            try:
                st = os.fstat(fd)
                data = os.read(fd, size + 1) if st.st_size == size else b""
                while 0 < len(data) < size:  # a short read (a pipe-like filesystem): finish it
                    more = os.read(fd, size + 1 - len(data))
                    if not more:
                        break
                    data += more
            except OSError as exc:
                raise Unreadable(exc.strerror or type(exc).__name__) from None
            finally:
                os.close(fd)
            if len(data) != size:
                raise BadEntry(f"the image file {sha[:12]}… has {st.st_size} bytes instead of {size}", sha)
            sig = hash((st.st_ino, size, st.st_mtime_ns, st.st_ctime_ns))
            if verified.get(path) != sig:
                if hashlib.sha256(data).hexdigest() != sha:
                    raise BadEntry(f"the image file {sha[:12]}… does not match its checksum", sha)
                _remember(path, sig)
            out.append(Image(data=data, content_type=m["type"], width=m["w"], height=m["h"], url=m["url"],
                             seed=m["seed"]))
        return out

    def has(self, key: str) -> bool:
        """Whether an entry is indexed for ``key`` (its files are not checked); False when the index
        cannot be read right now."""
        try:
            with self._index.using() as c:
                row = c.execute("SELECT 1 FROM entries WHERE ns=? AND key=?", (self.namespace, key)).fetchone()
            return row is not None
        except CacheError:
            return False
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
                remove_any(path)  # a directory, a link...: never an image file
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

        Raises :class:`CacheError` when the disk refuses (the caller still has its pictures): a
        :class:`~falnb.cache._faults.Reported` one when a CacheWarning has said why already."""
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
                                  "images, cost, bytes, created, used, stamp) "
                                  "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                  (self.namespace, key, model, canonical_json, request_id, response_json,
                                   json.dumps(metas, separators=(",", ":")), cost, sum(len(b) for _, b in blobs),
                                   now, now, next_stamp(c)))
                        c.execute("UPDATE journal SET state='done', updated=? WHERE ns=? AND key=? AND pid=?",
                                  (now, self.namespace, key, os.getpid()))
                    break
                except IndexSetAside:
                    if attempt == 2:
                        raise
        except Reported:
            raise  # (a CacheWarning said so: the index cannot be written, or not right now)
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
            remove_any(path)
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
        write_atomic(shard, path, data)
        _remember(path, _sig(os.stat(path)))

    # -- the in-flight journal ---------------------------------------------------------------

    def inflight(self, key: str, model: str, *, refresh: bool = False, timeout: float | None = None) -> InFlight:
        """``async with cache.inflight(key, model) as slot``: claim ``key`` across processes (see ``_journal``)."""
        from ._journal import InFlight

        return InFlight(self._index, self.namespace, key, model, lookup=self.get, where=str(self.directory),
                        refresh=refresh, timeout=timeout)


# -- helpers ----------------------------------------------------------------------------------


def _remember(path: str, sig: int) -> None:
    if path not in _VERIFIED and len(_VERIFIED) >= _VERIFIED_MAX:
        with contextlib.suppress(StopIteration, KeyError, RuntimeError):  # another thread got there first
            del _VERIFIED[next(iter(_VERIFIED))]  # the oldest: a file not checked for a while is hashed again
    _VERIFIED[path] = sig


def _elide(value: Any) -> Any:
    """The response without long ``data:`` URIs (sync_mode images): their bytes are in the files."""
    if isinstance(value, str):
        return ELIDED if len(value) > _ELIDE_OVER and value.startswith("data:") else value
    if isinstance(value, Mapping):
        return {str(k): _elide(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_elide(v) for v in value]
    return value
