"""Reading what can still be read of a damaged index: the journal rows of requests that may be on fal.

When an index is set aside as damaged, its in-flight journal must not be lost with it: a request id
in it is a picture fal may already have been paid for.  Read-only and best effort.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["salvage_journal"]


def salvage_journal(path: Path, columns: str) -> list[tuple[object, ...]] | None:
    """The journal rows (not done) still readable in a damaged index file, or None if none could be
    read.  Read-only, best effort: forward, then backward past a damaged page."""
    rows: dict[tuple[object, object], tuple[object, ...]] = {}
    readable = False
    for mode, order in (("ro", "ASC"), ("ro", "DESC"), ("ro&immutable=1", "ASC")):
        try:
            db = sqlite3.connect(f"{path.as_uri()}?mode={mode}", uri=True, timeout=1.0)
        except sqlite3.Error:
            continue
        try:
            cur = db.execute(f"SELECT {columns} FROM journal WHERE state != 'done' "
                             f"ORDER BY ns {order}, key {order}")
            readable = True
            while (row := cur.fetchone()) is not None:
                rows.setdefault((row[0], row[1]), tuple(row))
            if order == "ASC":
                break  # read to the end
        except sqlite3.Error:
            continue
        finally:
            db.close()
    return list(rows.values()) if readable or rows else None
