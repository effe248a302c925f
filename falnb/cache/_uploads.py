"""The URLs of uploaded input pictures, by content hash, kept in the cache directory (``uploads.sqlite3``):
the same bytes are not uploaded twice while fal keeps them, across kernels and notebooks too.

A small table of its own (not the index): it is read and written only when a picture is about to be
uploaded, i.e. never on a cache hit.  Rows past their expiry are dropped as new ones are added.  A table that
cannot be read or written is a miss (the picture is uploaded again: that costs nothing), never an error.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fal._config import OFFLINE_QUEUE_URL, storage_url_from_env
from ..fal._upload import DEFAULT_REST_URL, MemoryMemo, Uploader

if TYPE_CHECKING:
    import httpx

    from ._store import ResponseCache

__all__ = ["UploadTable", "uploader_for"]

_SCHEMA = ("CREATE TABLE IF NOT EXISTS uploads (storage TEXT NOT NULL, sha256 TEXT NOT NULL, url TEXT NOT NULL, "
           "expires REAL NOT NULL, PRIMARY KEY (storage, sha256))")


class UploadTable:
    """An ``UploadMemo`` (see ``falnb.fal._upload``) in ``directory/uploads.sqlite3``."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / "uploads.sqlite3"

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=2.0, isolation_level=None)
        conn.execute(_SCHEMA)
        return conn

    def get(self, storage: str, sha256: str, now: float) -> str | None:
        try:
            conn = self._connect()
            try:
                row = conn.execute("SELECT url FROM uploads WHERE storage = ? AND sha256 = ? AND expires > ?",
                                   (storage, sha256, now)).fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            return None
        return str(row[0]) if row else None

    def put(self, storage: str, sha256: str, url: str, expires: float, now: float | None = None) -> None:
        try:
            conn = self._connect()
            try:
                conn.execute("INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?)", (storage, sha256, url, expires))
                if now is not None:
                    conn.execute("DELETE FROM uploads WHERE expires <= ?", (now,))
            finally:
                conn.close()
        except sqlite3.Error:
            pass  # not remembered: the next run uploads these bytes again, which is free


def uploader_for(http: httpx.AsyncClient, key: Any, store: ResponseCache | None, queue_url: str,
                 storage_url: str | None) -> Uploader:
    """The uploader of a client's input pictures: remembering uploads in ``store``'s directory when there is
    one; offline to the emulator's storage, else ``storage_url``, ``FALNB_STORAGE_URL``, or fal's."""
    memo: Any = UploadTable(store.directory) if store is not None else MemoryMemo()
    url = queue_url if queue_url == OFFLINE_QUEUE_URL else storage_url_from_env(storage_url)
    return Uploader(http, key, memo=memo, rest_url=url or DEFAULT_REST_URL)
