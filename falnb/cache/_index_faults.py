"""What went wrong with the index file, for :class:`~falnb.cache._index.Index`: proven damage sets the file
aside once (its in-flight journal carried over), a folder that cannot be written makes it read-only, anything
else is transient (a miss for that call).  See :mod:`falnb.cache._faults` for how a failure is classified."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

from .._exceptions import CacheError
from ._faults import (
    CacheWarning,
    IndexReadOnly,
    IndexSetAside,
    IndexUnavailable,
    classify,
    proven_damage,
    read_only,
    unavailable,
)
from ._salvage import journal_note, move_aside
from ._schema import JOURNAL_COLUMNS
from ._sqlite import inode

__all__ = ["Faults"]

#: SQLITE_READONLY_DBMOVED: the file was renamed or deleted under an open connection
_READONLY_DBMOVED = 8 | (4 << 8)


class Faults:
    """The fault handling of an :class:`~falnb.cache._index.Index` (a mixin: the attributes are the index's)."""

    path: Path
    readonly: bool
    _local: threading.local
    _epoch: int
    _aside_lock: threading.Lock
    _ready: bool
    _salvaged: dict[str, list[tuple[object, ...]]]

    def _bump(self) -> None:
        raise NotImplementedError

    def _set_aside_once(self, exc: BaseException, epoch: int, ino: int | None) -> bool:
        """Set the file aside unless it was already: by another thread (the epoch moved on since the
        failing connection was opened) or another process (the file at ``path`` is not the one it
        opened).  One damage event, one warning; never the new index moved aside."""
        with self._aside_lock:
            if epoch != self._epoch or ino != inode(self.path):
                if epoch == self._epoch:
                    self._bump()  # another process did: every thread reconnects to the new file
                return False
            self._set_aside(exc)
            self._ready = False
            return True

    def _set_aside(self, exc: BaseException) -> None:
        """The index file is proven damaged: move it aside and start a new one (pictures stay)."""
        try:
            moved, rows = move_aside(self.path, JOURNAL_COLUMNS)
        except OSError as err:  # cannot move it (a read-only folder): go on without the cache
            raise self._unavailable(exc, f"it is damaged and cannot be moved aside: {err.strerror}") from None
        self._bump()
        if rows is not None:
            self._salvaged = {"journal": rows}
        import warnings

        warnings.warn(f"falnb: the cache index {self.path} was damaged ({exc}); it was moved to {moved.name} "
                      "and a new index was started. Cached pictures it listed will be generated again."
                      f"{journal_note(rows)}", CacheWarning, stacklevel=5)

    # -- what went wrong ----------------------------------------------------------------------

    def failed(self, exc: BaseException) -> CacheError:
        """The :class:`CacheError` for ``exc`` (a :class:`Reported` one: a CacheWarning said it).

        Proven damage sets the file aside (:class:`IndexSetAside`: the caller retries on the new one);
        a folder that cannot be written makes the index read-only; anything else is transient."""
        if isinstance(exc, sqlite3.ProgrammingError) and getattr(self._local, "epoch", self._epoch) != self._epoch:
            self._local.conn = None  # closed by another thread's reset (see check_moved): use the new file
            return IndexSetAside(f"the cache index {self.path} was replaced: {exc}")
        kind = classify(exc)
        if kind == "readonly" and getattr(exc, "sqlite_errorcode", 0) == _READONLY_DBMOVED:
            kind = "moved"
        if kind == "readonly":
            self.readonly = True
            return self._readonly(exc)
        if kind in ("damaged", "suspect", "moved"):
            local = self._local
            epoch, ino = getattr(local, "epoch", self._epoch), getattr(local, "ino", None)
            changed = epoch != self._epoch or ino != inode(self.path)
            if changed or kind == "moved" or proven_damage(self.path, exc):
                c = getattr(local, "conn", None)
                local.conn = None
                if c is not None:
                    with contextlib.suppress(sqlite3.Error):
                        c.close()
                try:
                    if changed or kind == "moved":  # handled by another thread or process: use the new file
                        with self._aside_lock:
                            if epoch == self._epoch:
                                self._bump()
                    else:
                        self._set_aside_once(exc, epoch, ino)
                except CacheError as err:
                    return err
                return IndexSetAside(f"the cache index {self.path} was replaced: {exc}")
        return self._unavailable(exc)

    def _unavailable(self, exc: BaseException | None, why: str | None = None) -> IndexUnavailable:
        return unavailable(self.path, exc, why)

    def _readonly(self, exc: BaseException | None) -> IndexReadOnly:
        return read_only(self.path.parent, exc)

