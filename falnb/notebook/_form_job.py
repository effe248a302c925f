"""One generation started from the form, run without blocking the kernel.

A button handler runs in the kernel's comm handler: it must start the work and return.  The
:class:`FormJob` starts the plan with :meth:`Client.start <falnb.Client.start>` and reports back through
callbacks that run **on falnb's loop thread** (they may only set widget traits, never display).
``cancel()`` cancels the run; fal's cancel goes out for every request still queued or running, and
``on_cancelled`` runs once that cancel has gone out, with the run's account of what happened to each
request (:meth:`Run.interrupt_message <falnb.Run.interrupt_message>`: what fal may bill).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .._exceptions import FalnbError

if TYPE_CHECKING:
    from .._client import Client
    from .._run import Run
    from ..request._plan import Plan
    from ..results._generation import Generation
    from ..results._progress import Progress

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
                 on_cancelled: Callable[[str], None], refresh: bool = False) -> None:
        self.client, self.plan, self.refresh = client, plan, refresh
        self._on_progress, self._on_done = on_progress, on_done
        self._on_error, self._on_cancelled = on_error, on_cancelled
        self.run: Run | None = None
        self._finished = threading.Event()

    @property
    def cancel_requested(self) -> bool:
        return self.run is not None and self.run.cancel_requested

    def start(self) -> FormJob:
        try:
            run = self.client.start([self.plan], refresh=self.refresh)
        except FalnbError as exc:  # refused before anything was sent (a budget)
            self._report(self._on_error, exc)
            self._finished.set()
            return self
        self.run = run
        run.watch(lambda r: self._on_progress(r.progress()[0]), every=TICK, refresh=REFRESH)
        run.add_done_callback(self._finish)
        return self

    def cancel(self) -> bool:
        """Ask the work to stop; returns False when it has already finished."""
        if self.run is None or self._finished.is_set():
            return False
        return self.run.cancel()

    @property
    def finished(self) -> bool:
        """True once the outcome (done, error or cancelled) has been reported."""
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the outcome has been reported (tests, scripts); True when it was."""
        return self._finished.wait(timeout)

    def _finish(self, run: Run) -> None:
        try:
            result = run.results[0]
            if result is None:
                self._report(self._on_cancelled, run.interrupt_message())
            elif isinstance(result, FalnbError):
                self._report(self._on_error, result)
            else:
                self._report(self._on_done, result)
        finally:
            self._finished.set()

    def _report(self, callback: Callable[[_T], None], value: _T) -> None:
        try:
            callback(value)
        except Exception as exc:  # a bug in a callback must not leave the form stuck "running"
            if callback is not self._on_error:
                self._on_error(exc)
