"""What a failure of the cache's files means, and the one warning each kind of failure gets.

Only **proven damage** may set the index (or an image file) aside: SQLite's "not a database"
(SQLITE_NOTADB), or "malformed" (SQLITE_CORRUPT) confirmed by ``PRAGMA quick_check`` on a fresh
connection, or an image file whose size or SHA-256 is wrong.  Everything else (too many open files,
"unable to open database file", a lock, a full disk, a permission) is a **miss for that call**: the
data stays in place and falnb goes on without the cache, with one warning.

A folder that cannot be written (permissions, a read-only mount) is **read-only**: hits are served,
new pictures are returned without being stored, with one warning.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import warnings
from pathlib import Path

from .._exceptions import CacheError, ConfigError

__all__ = [
    "CacheWarning",
    "IndexReadOnly",
    "IndexSetAside",
    "IndexUnavailable",
    "Reported",
    "classify",
    "damage_on_disk",
    "forget_warnings",
    "no_folder",
    "proven_damage",
    "read_only",
    "unavailable",
    "warn_once",
    "writable",
]

_CORRUPT, _NOTADB, _READONLY, _CANTOPEN, _PERM, _AUTH = 11, 26, 8, 14, 3, 23
_HINT = "Set FALNB_CACHE_DIR to a folder you can write (or use cache=False)."
#: OSError numbers that say "this folder cannot be written", not "try again later"
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


class CacheWarning(UserWarning):
    """Something in the cache was damaged and set aside, or the cache cannot be used (or written) for now."""


class Reported(CacheError):
    """A cache failure a :class:`CacheWarning` has reported already: callers go on without warning again."""


class IndexSetAside(Reported):
    """The index was damaged and has been set aside (a CacheWarning said so already): retry on the new one."""


class IndexUnavailable(Reported):
    """The index cannot be used right now (a transient error: files, locks, disk): a miss for this call."""


class IndexReadOnly(Reported):
    """The cache folder cannot be written: hits are served, nothing new is stored."""


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def classify(exc: BaseException) -> str:
    """``"damaged"`` (not a database), ``"suspect"`` (SQLite met a bad page: to be confirmed),
    ``"readonly"`` (the folder or file cannot be written) or ``"transient"`` (anything else)."""
    if isinstance(exc, OSError):
        return "readonly" if exc.errno in _NOT_WRITABLE else "transient"
    code, text = _code(exc), str(exc).lower()
    if code == _NOTADB or (code is None and "not a database" in text):
        return "damaged"
    if code == _CORRUPT or (code is None and "malformed" in text):
        return "suspect"
    if code in (_READONLY, _PERM, _AUTH) or (code is None and "readonly" in text):
        return "readonly"
    return "transient"  # busy, locked, cannot open, I/O, full, out of memory...


def proven_damage(path: Path, exc: BaseException) -> bool:
    """Whether ``exc`` proves the index file at ``path`` damaged.  "malformed" is checked with a quick
    integrity check on a fresh connection: a transient read error is never taken for damage."""
    kind = classify(exc)
    if kind == "damaged":
        return True
    if kind != "suspect":
        return False
    try:
        db = sqlite3.connect(str(path), timeout=1.0)
        try:
            rows = db.execute("PRAGMA quick_check(1)").fetchall()
        finally:
            db.close()
    except sqlite3.Error as again:
        return classify(again) in ("damaged", "suspect")
    return rows != [("ok",)]


def damage_on_disk(path: Path) -> sqlite3.Error | None:
    """The error proving the index file at ``path`` damaged as a fresh connection reads it, else None
    (readable, absent, or a transient error: a miss, never damage).  A connection opened before the damage
    keeps the file's first page cached and would commit into the damaged file, lost when it is set aside
    (simulation finding S2); a fresh SQLite connection reads it again.  Never open()/close() the file from
    Python instead: closing any descriptor of it drops SQLite's POSIX locks for the whole process."""
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=1.0)
        try:
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return exc if proven_damage(path, exc) else None
    return None


_WARNED: set[tuple[str, str]] = set()
_WARNED_LOCK = threading.Lock()


def warn_once(where: str, kind: str, message: str, *, stacklevel: int = 4) -> None:
    """One CacheWarning per cache folder and kind of failure in this process."""
    with _WARNED_LOCK:
        if (where, kind) in _WARNED:
            return
        _WARNED.add((where, kind))
    warnings.warn(message, CacheWarning, stacklevel=stacklevel)


def forget_warnings(where: str) -> None:
    """The folder works again: a new failure is worth a new warning."""
    with _WARNED_LOCK:
        for token in [t for t in _WARNED if t[0] == where]:
            _WARNED.discard(token)


def unavailable(path: Path, exc: BaseException | None, why: str | None = None) -> IndexUnavailable:
    """The index at ``path`` cannot be used for now (warned once per reason): a miss for this call."""
    why = why or reason(exc)
    warn_once(str(path.parent), f"unavailable: {why}",
              f"falnb: the cache index {path} cannot be used right now ({why}); falnb goes on without the cache "
              "for now (cached pictures stay in place; pictures generated meanwhile may not be stored).",
              stacklevel=7)
    return IndexUnavailable(f"the cache index {path} cannot be used right now: {why}", hint=_HINT)


def read_only(folder: Path, exc: BaseException | None) -> IndexReadOnly:
    """``folder`` cannot be written (warned once): hits are served, nothing new is stored."""
    why = reason(exc) if exc is not None else "read-only"
    warn_once(str(folder), "readonly",
              f"falnb: the cache folder {folder} cannot be written ({why}): cached pictures are served, but new "
              "pictures are returned without being stored.", stacklevel=7)
    return IndexReadOnly(f"the cache folder {folder} cannot be written ({why})", hint=_HINT)


def no_folder(folder: Path, exc: OSError) -> CacheError | ConfigError:
    """The error for a cache folder that could not be created."""
    if exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.ENOENT):  # a file in the way, or /proc, /sys...
        what = "is a file, not a folder" if folder.exists() else f"cannot be created ({exc.strerror})"
        return ConfigError(f"the cache folder {folder} {what}", hint=_HINT)
    return unavailable(folder / "index.sqlite3", exc, f"the folder cannot be created: {exc.strerror}")


def reason(exc: BaseException | None) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def writable(path: Path) -> bool:
    """Whether this process may write the index file ``path`` and its folder (False on a read-only mount)."""
    return os.access(path.parent, os.W_OK | os.X_OK) and (not path.exists() or os.access(path, os.W_OK))
