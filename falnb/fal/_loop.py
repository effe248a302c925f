"""One private event loop per process, in a daemon thread, for the synchronous API.

A notebook cell already runs inside an event loop, so ``asyncio.run`` fails there, and patching
the user's loop (nest-asyncio) is not ours to do.  Sync calls hand their coroutine to this loop
and wait; Ctrl-C or a kernel interrupt lands in the waiting thread, which cancels the coroutine
(its cleanup sends fal's cancel) and waits a moment for that cleanup before re-raising.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["CANCEL_GRACE", "get_loop", "in_loop_thread", "run_sync"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid: int | None = None

#: how long an interrupted call waits for its cancellation (fal's cancel) to go out
CANCEL_GRACE = 5.0


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
    finished = threading.Event()

    async def guarded() -> T:
        try:
            return await coro
        finally:
            finished.set()

    fut: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(guarded(), loop)
    try:
        while True:
            try:
                return fut.result(timeout=tick if on_tick else None)
            except concurrent.futures.TimeoutError:
                if on_tick is not None:
                    on_tick()
    except BaseException:
        # KeyboardInterrupt (kernel interrupt) or an error from on_tick: stop the work and let
        # its cleanup send fal's cancel before we give control back
        if not fut.done():
            fut.cancel()
            finished.wait(CANCEL_GRACE)
        raise


def in_loop_thread() -> bool:
    """True in the private loop's own thread (where blocking on the loop would deadlock)."""
    loop = _loop
    if loop is None:
        return False
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
