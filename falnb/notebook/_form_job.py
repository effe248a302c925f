"""One generation started from the form, run on falnb's private loop without blocking the kernel.

A button handler runs in the kernel's comm handler: it must start the work and return.  The
:class:`FormJob` hands the plan to the client on the private loop and reports back through
callbacks that run **on the loop thread** (they may only set widget traits, never display).
``cancel()`` cancels the task; the client's cleanup sends fal's cancel for every request still
queued or running, and ``on_cancelled`` runs once that cancel has gone out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ..fal._loop import get_loop
from ..fal._progress import Progress, ProgressTracker

if TYPE_CHECKING:
    from .._client import Client
    from ..request._plan import Plan
    from ..results._generation import Generation

__all__ = ["FormJob"]

_T = TypeVar("_T")

#: how often the job looks at the progress (seconds)
TICK = 0.1
#: the status line's elapsed time is refreshed at least this often (seconds)
REFRESH = 0.5


class FormJob:
    """Runs ``plan`` with ``client``; callbacks: progress, done, error, cancelled (all on the loop thread)."""

    def __init__(self, client: Client, plan: Plan, *, on_progress: Callable[[Progress], None],
                 on_done: Callable[[Generation], None], on_error: Callable[[BaseException], None],
                 on_cancelled: Callable[[Progress], None], refresh: bool = False) -> None:
        self.client, self.plan, self.refresh = client, plan, refresh
        self.tracker = ProgressTracker(plan.spec.id, len(plan.requests))
        self._on_progress, self._on_done = on_progress, on_done
        self._on_error, self._on_cancelled = on_error, on_cancelled
        self._future: concurrent.futures.Future[None] | None = None
        self._finished = threading.Event()
        self.cancel_requested = False

    def start(self) -> FormJob:
        self._future = asyncio.run_coroutine_threadsafe(self._run(), get_loop())
        return self

    def cancel(self) -> bool:
        """Ask the work to stop; returns False when it has already finished."""
        if self._future is None or self._finished.is_set():
            return False
        self.cancel_requested = True
        return self._future.cancel() or not self._future.done()

    @property
    def finished(self) -> bool:
        """True once the outcome (done, error or cancelled) has been reported."""
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the outcome has been reported (tests, scripts); True when it was."""
        return self._finished.wait(timeout)

    async def _run(self) -> None:
        tracker = self.tracker
        task = asyncio.ensure_future(self.client._run_plan(self.plan, refresh=self.refresh, use_cache=True,
                                                           timeout=None, tracker=tracker))
        loop = asyncio.get_running_loop()
        seen, shown = -1, 0.0
        try:
            try:
                while not task.done():
                    await asyncio.wait({task}, timeout=TICK)
                    if not task.done() and (tracker.version != seen or loop.time() - shown >= REFRESH):
                        seen, shown = tracker.version, loop.time()
                        self._on_progress(tracker.snapshot())
                gen = task.result()
            except asyncio.CancelledError:
                if not task.done():
                    task.cancel()
                await asyncio.gather(task, return_exceptions=True)  # fal's cancel goes out here
                self._report(self._on_cancelled, tracker.snapshot())
                raise
            except Exception as exc:  # every failure is shown in the status line
                self._report(self._on_error, exc)
                return
            self._report(self._on_done, gen)
        finally:
            self._finished.set()

    def _report(self, callback: Callable[[_T], None], value: _T) -> None:
        try:
            callback(value)
        except Exception as exc:  # a bug in a callback must not leave the form stuck "running"
            if callback is not self._on_error:
                self._on_error(exc)

