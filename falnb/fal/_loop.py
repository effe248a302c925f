"""One private event loop per process, in a daemon thread, for the synchronous API.

A notebook cell already runs inside an event loop, so ``asyncio.run`` fails there, and patching
the user's loop (nest-asyncio) is not ours to do.  Sync calls hand their coroutine to this loop
and wait; Ctrl-C or a kernel interrupt lands in the waiting thread, which cancels the coroutine
(its cleanup sends fal's cancel) and waits a moment for that cleanup before re-raising.

The waiting thread never sleeps without a timeout (a signal arriving just before such a sleep only
trips a flag, and the wait would never wake to raise it), and the coroutine is handed over so that a
cancel reaches it wherever the interrupt lands.  A process forked after the loop started gets a new
loop (the parent's thread does not exist in the child).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["CANCEL_GRACE", "SLICE", "get_loop", "in_loop_thread", "run_sync", "within"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid: int | None = None

#: how long an interrupted call waits for its cancellation (fal's cancel) to go out
CANCEL_GRACE = 5.0
#: the longest single sleep of a waiting thread: a Ctrl-C is acted on within this
SLICE = 0.1


def get_loop() -> asyncio.AbstractEventLoop:
    """The process's private loop, started on first use (and again after a fork)."""
    global _loop, _pid
    with _lock:
        if _loop is None or _pid != os.getpid() or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="falnb-loop", daemon=True).start()
            ready.wait()
            _loop, _pid = loop, os.getpid()
        return _loop


def run_sync(coro: Coroutine[Any, Any, T], *, on_tick: Callable[[], None] | None = None,
             tick: float = 0.1) -> T:
    """Run ``coro`` on the private loop and wait, calling ``on_tick`` in this thread meanwhile."""
    loop = get_loop()
    if in_loop_thread():
        coro.close()
        raise RuntimeError("falnb's sync API was called from its own loop; use the async API there")
    result: concurrent.futures.Future[T] = concurrent.futures.Future()
    finished = threading.Event()
    task: list[asyncio.Task[T]] = []
    stop = [False]

    def start() -> None:  # on the loop
        if stop[0]:
            coro.close()
            finished.set()
            return
        t = loop.create_task(coro)
        task.append(t)
        t.add_done_callback(lambda t: _settle(t, result, finished))

    def cancel() -> None:  # on the loop
        stop[0] = True
        if task:
            task[0].cancel()

    try:
        loop.call_soon_threadsafe(start)
        while True:
            try:
                return result.result(timeout=min(tick, SLICE) if on_tick else SLICE)
            except concurrent.futures.TimeoutError:
                if on_tick is not None:
                    on_tick()
    except BaseException:
        # KeyboardInterrupt (kernel interrupt) or an error from on_tick: stop the work and let
        # its cleanup send fal's cancel before we give control back
        loop.call_soon_threadsafe(cancel)
        _wait(finished, CANCEL_GRACE)
        raise


def _settle(t: asyncio.Task[T], result: concurrent.futures.Future[T], finished: threading.Event) -> None:
    if t.cancelled():
        result.set_exception(concurrent.futures.CancelledError())
    elif (exc := t.exception()) is not None:
        result.set_exception(exc)
    else:
        result.set_result(t.result())
    finished.set()


def _wait(event: threading.Event, seconds: float) -> None:
    """Wait up to ``seconds`` in short slices; a second Ctrl-C stops waiting."""
    try:
        for _ in range(max(1, int(seconds / SLICE))):
            if event.wait(SLICE):
                return
    except KeyboardInterrupt:
        pass


async def within(aw: Awaitable[T], timeout: float | None,
                 discard: Callable[[T], Awaitable[object]] | None = None) -> T:
    """``asyncio.wait_for`` without its lost cancel: on Python 3.11, a task cancelled just as the awaited
    work completes gets the result and never sees the cancel (a Ctrl-C that does not stop the call).
    Here the cancel always wins; ``discard`` releases a result that came too late (a response to close).
    Raises ``asyncio.TimeoutError`` after ``timeout`` seconds (None: no bound)."""
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.wait({task})
        if discard is not None and not task.cancelled() and task.exception() is None:
            await discard(task.result())
        raise
    if not done:
        task.cancel()
        await asyncio.wait({task})
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                task.exception()  # retrieved: the timeout is what the caller is told
            raise asyncio.TimeoutError()
    return task.result()


def in_loop_thread() -> bool:
    """True in the private loop's own thread (where blocking on the loop would deadlock)."""
    loop = _loop
    if loop is None:
        return False
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _after_fork_in_child() -> None:
    global _lock, _loop, _pid
    _lock = threading.Lock()  # it may have been held by another thread of the parent at the fork
    _loop, _pid = None, None


if hasattr(os, "register_at_fork"):  # not on Windows (no fork there)
    os.register_at_fork(after_in_child=_after_fork_in_child)
