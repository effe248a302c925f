"""Several plans running together: :class:`Run`, the one way to start work and watch it.

``generate`` runs one plan, ``generate_many`` one per prompt, a ``%%falimage`` cell one per prompt and
model, the form one per click: all of them go through :meth:`Client.start` (or :meth:`Client.prepare`,
whose Run starts when it is waited for), which returns a :class:`Run`.  The work runs on falnb's private
event loop; the caller's thread watches it (``progress()``, ``wait()``, ``cancel()``), or is called back
on the loop thread (``watch()``, ``add_done_callback()``), so presentation code never touches the loop,
httpx or the client's insides.

A Run's uncached requests pass or fail the budgets as one set, checked before anything is sent: a cell
is never paid in part and refused in part.

A Ctrl-C is never lost and always cancels: the main thread waits in short slices (a signal landing
just before a wait without a timeout would only trip a flag), and the work is handed to the loop in a
way that a cancel can always reach, wherever the interrupt lands (:meth:`Run.wait` starts a prepared
Run inside its own guard).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._exceptions import FalnbError, InputError, Interrupted, RequestCancelledError
from .fal._loop import SLICE, get_loop, in_loop_thread
from .results._progress import Progress, ProgressTracker

if TYPE_CHECKING:
    from ._engine import Engine
    from .request._plan import Plan
    from .results._generation import Generation

__all__ = ["CANCEL_GRACE", "Run", "first_plan_ticker", "interrupt_text"]

#: how long an interrupted wait gives the work to send fal's cancels (and settle submits under way)
CANCEL_GRACE = 10.0


class Run:
    """Plans running on falnb's private loop, watched from any thread.  Made by :meth:`Client.start`.

    ``results`` holds, per plan and in order, its :class:`~falnb.Generation`, the
    :class:`~falnb.FalnbError` it ended with, or None while it runs (or when it was cancelled first).
    """

    def __init__(self, engine: Engine, plans: Sequence[Plan], *, refresh: bool, use_cache: bool,
                 timeout: float | None, concurrency: int | None, stop_on_error: bool = False) -> None:
        self.plans: tuple[Plan, ...] = tuple(plans)
        self.trackers = tuple(ProgressTracker(p.spec.id, len(p.requests)) for p in self.plans)
        self.results: list[Generation | FalnbError | None] = [None] * len(self.plans)
        #: True once cancel() was called (by the user, an interrupt, or the first error of stop_on_error)
        self.cancel_requested = False
        self._engine = engine
        self._refresh, self._use_cache, self._timeout = refresh, use_cache, timeout
        self._limit = max(1, int(concurrency or len(self.plans) or 1))
        self._stop_on_error = stop_on_error
        #: per plan: what a stop did to each of its requests (see ``_fetch``), for the interrupt's words
        self.notes: tuple[dict[int, str], ...] = tuple({} for _ in self.plans)
        self._finished = threading.Event()
        #: resolved once finished, for awaiting from any event loop
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._callbacks: list[Callable[[Run], None]] = []
        self._lock = threading.Lock()
        self._scheduled = False
        self._task: asyncio.Task[None] | None = None
        #: one task per plan (a cancel cancels these: ``_main`` itself waits for all of them to end)
        self._plan_tasks: list[asyncio.Task[None]] = []
        self._failure: BaseException | None = None
        #: the first error of a plan, in the order they happened (stop_on_error raises it)
        self._first_error: FalnbError | None = None

    def __repr__(self) -> str:
        state = ("finished" if self.finished else "cancelling" if self.cancel_requested
                 else "running" if self._scheduled else "prepared (run.wait() starts it)")
        return f"<falnb.Run {len(self.plans)} plan(s), {state}>"

    # -- starting ---------------------------------------------------------------------------------

    def _start(self) -> Run:
        """Hand the work to the loop.  ``_scheduled`` is set first: an interrupt landing anywhere in
        here leaves a Run that :meth:`cancel` can still stop (``_on_loop`` decides on the loop)."""
        if not self._scheduled:
            self._scheduled = True
            get_loop().call_soon_threadsafe(self._on_loop)
        return self

    def _on_loop(self) -> None:
        """On the loop: start the work, or stop it (a cancel may come before the start was handled)."""
        if self._finished.is_set():
            return
        if self.cancel_requested:
            if self._task is None:
                self._finish()
            for t in self._plan_tasks:
                t.cancel()  # each settles what fal holds before it ends (see ``_fetch``)
        elif self._task is None and self._scheduled:
            self._task = asyncio.ensure_future(self._main())

    async def _main(self) -> None:
        limit = asyncio.Semaphore(self._limit)

        async def one(i: int, plan: Plan) -> None:
            async with limit:
                try:
                    self.results[i] = await self._engine.run_plan(
                        plan, refresh=self._refresh, use_cache=self._use_cache, timeout=self._timeout,
                        tracker=self.trackers[i], group=self, group_cost=self.due_cost, notes=self.notes[i])
                except FalnbError as exc:
                    self.results[i] = exc
                    if self._first_error is None:
                        self._first_error = exc
                    if self._stop_on_error:
                        self.cancel()
                finally:
                    self.trackers[i].end()  # (a plan ending before the others stops counting its own time)

        try:
            if self.cancel_requested:  # cancelled before it began
                return
            self._plan_tasks = [asyncio.ensure_future(one(i, p)) for i, p in enumerate(self.plans)]
            # every plan's task ends (a cancelled one after fal's cancels went out) before the run does
            if self._plan_tasks:  # (asyncio.wait refuses an empty set: an empty batch is no error)
                await asyncio.wait(self._plan_tasks)
            for t in self._plan_tasks:
                if not t.cancelled() and (exc := t.exception()) is not None and self._failure is None:
                    self._failure = exc  # a bug, not a fal or user error: re-raised by wait()
        finally:
            self._finish()

    def _finish(self) -> None:
        for t in self.trackers:
            t.end()  # (plans cancelled before they began too)
        self._finished.set()
        if not self._done.done():
            self._done.set_result(None)
        with self._lock:
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            _call(fn, self)

    def due_cost(self) -> float | None:
        """The estimate of every request of this run that is not in the cache (None: a price is unknown)."""
        store = self._engine.cache() if self._use_cache else None
        costs = [r.cost for p in self.plans for r in p.requests
                 if store is None or self._refresh or not store.has(r.key)]
        return None if any(c is None for c in costs) else float(sum(c for c in costs if c is not None))

    # -- watching ---------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once every plan ended (done, failed or cancelled) and fal's cancels went out."""
        return self._finished.is_set()

    @property
    def version(self) -> int:
        """Changes whenever any plan's progress changes (cheap to poll)."""
        return sum(t.version for t in self.trackers)

    def progress(self) -> list[Progress]:
        """A snapshot of each plan's progress, in order."""
        return [t.snapshot() for t in self.trackers]

    def join(self, timeout: float | None = None) -> bool:
        """Block until the run has finished; True when it has.  A run only prepared (``client.prepare``)
        starts in :meth:`wait`: joining it without a timeout would wait for ever, and is refused."""
        if timeout is None and not self._scheduled and not self._finished.is_set():
            raise InputError("this run was only prepared (client.prepare): it starts in run.wait(), so "
                             "join() would wait for ever; call run.wait(), or client.start(...) to start at once")
        return self._finished.wait(timeout)

    def add_done_callback(self, fn: Callable[[Run], None]) -> None:
        """Call ``fn(run)`` once the run has finished: on the loop thread, or at once if it already has.
        On the loop thread a callback may set widget traits, never display."""
        with self._lock:
            if not self._finished.is_set():
                self._callbacks.append(fn)
                return
        _call(fn, self)

    def watch(self, on_progress: Callable[[Run], None], *, every: float = 0.1, refresh: float = 0.5) -> None:
        """Call ``on_progress(run)`` on the loop thread while the run works: within ``every`` seconds of a
        change, and at least every ``refresh`` seconds (for elapsed times); then once as it finishes (the
        last call sees ``run.finished`` True and the final progress, also for a run that had finished)."""
        loop = get_loop()

        async def watcher() -> None:
            ended = asyncio.wrap_future(self._done)  # wakes the watcher as the run ends, not after its sleep
            seen, shown = -1, 0.0
            while not self._finished.is_set():
                if self.version != seen or loop.time() - shown >= refresh:
                    seen, shown = self.version, loop.time()
                    _call(on_progress, self)
                await asyncio.wait({ended}, timeout=every)
            _call(on_progress, self)

        asyncio.run_coroutine_threadsafe(watcher(), loop)

    # -- ending -----------------------------------------------------------------------------------

    def cancel(self) -> bool:
        """Stop the work (fal's cancel goes out for every request still queued or running, and a submit
        under way is settled); returns False when the run had already finished.  Does not wait: see
        :meth:`join`."""
        if self._finished.is_set():
            return False
        self.cancel_requested = True
        if in_loop_thread():
            self._on_loop()
        else:
            get_loop().call_soon_threadsafe(self._on_loop)
        return True

    def wait(self, *, on_tick: Callable[[], None] | None = None, tick: float = 0.1) -> list[Generation | FalnbError]:
        """Start the run if it was only prepared, and block until it finishes, calling ``on_tick`` every
        ``tick`` seconds meanwhile; the results.

        A KeyboardInterrupt (Ctrl-C, a kernel interrupt) cancels the run, waits for fal's cancels to go
        out, and raises :class:`~falnb.Interrupted` saying, request by request, what happened."""
        if in_loop_thread():
            raise RuntimeError("falnb's sync API was called from its own loop; use the async API there")
        try:
            self._start()
            slice_ = min(tick, SLICE) if on_tick is not None else SLICE
            next_tick = time.monotonic() + tick
            while not self._finished.wait(slice_):
                if on_tick is not None and time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + tick
                    on_tick()
        except KeyboardInterrupt:
            self.cancel()
            self._settle()
            raise Interrupted(self.interrupt_message()) from None
        except BaseException:  # on_tick failed (a progress callback's bug): stop the work, then say why
            self.cancel()
            self._settle()
            raise
        return self._outcome()

    def _settle(self) -> None:
        """After a cancel: give the work a moment to send fal's cancels (a second Ctrl-C stops waiting)."""
        end = time.monotonic() + CANCEL_GRACE
        try:
            while not self._finished.wait(SLICE) and time.monotonic() < end:
                pass
        except KeyboardInterrupt:
            pass

    async def wait_async(self, *, on_tick: Callable[[], None] | None = None,
                         tick: float = 0.1) -> list[Generation | FalnbError]:
        """The async twin of :meth:`wait`: await it from any event loop (the private one included)."""
        self._start()
        fut = asyncio.wrap_future(self._done)
        try:
            while True:
                done, _ = await asyncio.wait({fut}, timeout=tick if on_tick is not None else None)
                if on_tick is not None:
                    on_tick()
                if done:
                    break
        except BaseException:  # cancelled, or on_tick failed: stop the work too, and let fal's cancels go out
            self.cancel()
            try:
                await asyncio.wait({fut}, timeout=CANCEL_GRACE)
            except BaseException:  # cancelled again while waiting: stop waiting
                pass
            raise
        return self._outcome()

    def _outcome(self) -> list[Generation | FalnbError]:
        if self._failure is not None:
            raise self._failure
        if self._stop_on_error and self._first_error is not None:
            raise self._first_error
        if any(r is None for r in self.results):  # run.cancel() (not Ctrl-C: that raised Interrupted already)
            raise RequestCancelledError(self.interrupt_message())
        return [r for r in self.results if r is not None]

    def interrupt_message(self) -> str:
        """What an interrupt did to each request, in words (nothing sent, cancelled while queued, ...)."""
        return interrupt_text(self.trackers, self.notes)


def interrupt_text(trackers: Sequence[ProgressTracker], notes: Sequence[dict[int, str]] | None = None) -> str:
    """What stopping did, request by request: what was sent, what fal was asked to cancel, what fal may bill.

    ``notes`` (per tracker, per request index) is what the stop found out (see ``_fetch``): a submit that
    never left, one whose answer never came, fal's answer to the cancel.

    A request done (not from the cache) is named as finished and billed, never as stopped: its pictures
    are kept but not returned by the stopped call.  The stop may be handled only after its download ended
    (the loop goes on while the caller's thread wakes up), so "done" is no proof it ended before the stop,
    and leaving it out said "nothing was running" of a billed request (simulation finding S1)."""
    unsent = 0
    lost = 0
    said: dict[str, list[str]] = {k: [] for k in ("queued", "running", "finished", "unanswered", "gone", "kept")}
    for t, plan_notes in zip(trackers, notes if notes is not None else [{} for _ in trackers], strict=True):
        for i, (state, rid) in enumerate(t.requests()):
            note = plan_notes.get(i)
            if state == "done":
                said["kept"].append(rid or "(through the LiteLLM proxy)")
                continue
            if state == "cached":
                continue
            if rid is None:
                if note == "lost" or (state == "submitting" and note != "unsent"):
                    lost += 1
                else:
                    unsent += 1
            elif note == "completed" or state == "downloading":
                said["finished"].append(rid)
            elif note == "no-answer":
                said["unanswered"].append(rid)
            elif note == "gone":
                said["gone"].append(rid)
            else:
                said["running" if state == "running" else "queued"].append(rid)
    parts = []
    if said["queued"]:
        parts.append(f"cancelled {_ids(said['queued'])} while queued (fal does not bill those)")
    if said["running"]:
        n = len(said["running"])
        parts.append(f"asked fal to cancel {_ids(said['running'])}, which had started (fal may still bill "
                     f"{'it' if n == 1 else 'them'}; a re-run takes the pictures if fal finished anyway)")
    if said["finished"]:
        parts.append(f"{_ids(said['finished'])} had finished on fal (billed): re-run to fetch the pictures "
                     "without paying again")
    if said["kept"]:
        n = len(said["kept"])
        parts.append(f"{_ids(said['kept'])} finished on fal (billed): {'its' if n == 1 else 'their'} pictures are "
                     "kept in client.history (and in the cache when it is on), not returned by this call")
    if said["unanswered"]:
        parts.append(f"fal did not answer the cancel of {_ids(said['unanswered'])} (it may run on and be billed; "
                     "a re-run takes its pictures)")
    if said["gone"]:
        parts.append(f"fal no longer knew {_ids(said['gone'])}")
    if lost:
        parts.append(f"{lost} submit{'s were' if lost != 1 else ' was'} sent to fal with no answer yet (fal may "
                     f"have queued and will bill {'them' if lost != 1 else 'it'}; falnb will not send "
                     f"{'them' if lost != 1 else 'it'} again by itself)")
    if unsent:
        parts.append(f"{unsent} request{'s' if unsent != 1 else ''} not sent (nothing billed)")
    return "; ".join(parts) if parts else "nothing was running"


def first_plan_ticker(run: Run, on_progress: Callable[[Progress], None] | None) -> Callable[[], None] | None:
    """An ``on_tick`` for :meth:`Run.wait` that hands ``on_progress`` each change of the first plan's progress."""
    if on_progress is None:
        return None
    seen = [-1]

    def tick() -> None:
        if run.version != seen[0]:
            seen[0] = run.version
            on_progress(run.progress()[0])

    return tick


def _ids(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:4]) + (f" and {len(ids) - 4} more" if len(ids) > 4 else "")
    return f"request{'s' if len(ids) != 1 else ''} {shown}"


def _call(fn: Callable[[Run], Any], run: Run) -> None:
    try:
        fn(run)
    except Exception:  # a callback's bug must not stop the run's bookkeeping
        import logging

        logging.getLogger("falnb").exception("falnb: a Run callback failed")
