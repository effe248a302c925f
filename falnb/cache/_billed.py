"""What fal billed, in the ledger: a ``billed`` row per request whose ``x-fal-billable-units`` came back.

The ``paid`` row written when fal accepted the request holds falnb's estimate (the budgets need a figure
before the result exists); fal's bill arrives with the result.  Its row holds the difference (bill minus
estimate; ``unknown`` -1 when there was no estimate), so the running sums, the spend and the budgets read
what fal billed where known and the estimate elsewhere, with no row rewritten.  ``count`` is 1: the
number of requests whose bill is known.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from .._exceptions import CacheError
from ._session import session_billed

if TYPE_CHECKING:
    from ._index import Index

__all__ = ["record_billed"]


def record_billed(index: Index | None, ns: str, estimate: float | None, billed: float, model: str | None,
                  request_id: str | None) -> None:
    """Record fal's bill of one paid request, in this session and in the cache's ledger."""
    session_billed(ns, estimate, billed)
    if index is None:
        return
    try:
        with index.write() as c:
            c.execute("INSERT INTO ledger(ts, ns, kind, model, request_id, cost, count, unknown, pid) "
                      "VALUES(?, ?, 'billed', ?, ?, ?, 1, ?, ?)",
                      (time.time(), ns, model, request_id, round(billed - (estimate or 0.0), 9),
                       -int(estimate is None), os.getpid()))
    except CacheError as exc:  # the pictures are paid and in hand: the estimate stays, with a warning
        import warnings

        from ._faults import CacheWarning, Reported

        if not isinstance(exc, Reported):
            warnings.warn(f"falnb: fal's bill of request {request_id} was not recorded: {exc.message}",
                          CacheWarning, stacklevel=3)
