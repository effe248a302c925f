"""Reading what can still be read of a damaged index: the journal rows of requests that may be on fal.

When an index is set aside as damaged, its in-flight journal must not be lost with it: a request id
in it is a picture fal may already have been paid for.  Read-only and best effort.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

__all__ = ["DASHBOARD", "journal_note", "move_aside", "salvage_journal"]

#: where to look for requests whose journal was lost
DASHBOARD = "https://fal.ai/dashboard/requests"


def move_aside(path: Path, columns: str) -> tuple[Path, list[tuple[object, ...]] | None]:
    """Move a damaged index file, with its ``-wal`` and ``-shm``, aside (OSError when it cannot be moved):
    where it went, and the journal rows still readable in it (None: none could be read)."""
    moved = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.replace(str(path) + suffix, str(moved) + suffix)
    return moved, salvage_journal(moved, columns)


def journal_note(rows: list[tuple[object, ...]] | None) -> str:
    """What the warning says of the requests in flight of an index set aside."""
    if rows is None:
        return (" Its in-flight journal could not be read: requests being generated or re-attachable could not "
                f"be recovered; check {DASHBOARD} before running them again (they may be billed twice).")
    return f" {len(rows)} request(s) in flight were recovered from it." if rows else ""


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
