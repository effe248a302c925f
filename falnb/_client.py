"""The :class:`Client`: plan -> cache -> fal queue -> :class:`Generation`, async and sync.

All network work runs on falnb's private event loop (see ``_loop``), so the sync and async APIs
share one ``httpx.AsyncClient`` and one connection pool, and a notebook's own loop is never
touched.  ``agenerate`` awaits that work from the caller's loop.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from ._exceptions import FalnbError, FalServerError, Interrupted
from .catalog._catalog import Catalog, default_catalog
from .fal._config import OFFLINE_QUEUE_URL, Key, find_key, offline_from_env, queue_url_from_env
from .fal._download import fetch_image, sniff
from .fal._loop import get_loop, run_sync
from .fal._progress import Progress, ProgressTracker
from .fal._queue import QueueClient, RetryPolicy, Submitted
from .request._plan import FalRequest, Plan, build_plan
from .results._generation import Generation, Image, images_from_response

if TYPE_CHECKING:
    from .cache._store import ResponseCache
    from .emulator import Emulator

__all__ = ["Client", "default_client"]

T = TypeVar("T")
#: generations a client remembers in ``history``
HISTORY_SIZE = 50
#: plans a client remembers (see ``Client.plan``)
_PLAN_MEMO = 128
ProgressCallback = Callable[[Progress], None]


class Client:
    """A connection to fal's queue (or the embedded emulator) with a response cache.

    ``key``: the fal key (default: ``FAL_KEY``, ``FAL_KEY_ID``+``FAL_KEY_SECRET``, ``FAL_AI_API_KEY``).
    ``queue_url``: default ``FALNB_QUEUE_URL`` or ``https://queue.fal.run``.
    ``offline``: use the in-process emulator (default: ``FALNB_OFFLINE=1``).
    ``cache``: True (the default cache dir, ``FALNB_CACHE_DIR``), a path, a ``ResponseCache``, or False.
    ``timeout``: the longest a call waits for fal, in seconds (None: no bound).
    ``max_concurrency``: fal requests this client keeps in flight at once.  fal's own queue holds the
    ones your account cannot run yet (queue time is not billed), so a batch is best submitted at once.
    ``transport``: an ``httpx.AsyncBaseTransport`` (tests, proxies).
    """

    def __init__(self, key: str | None = None, queue_url: str | None = None, offline: bool | None = None, *,
                 cache: bool | str | Path | ResponseCache = True, timeout: float | None = 600.0,
                 max_concurrency: int = 64, transport: httpx.AsyncBaseTransport | None = None,
                 emulator: Emulator | None = None, catalog: Catalog | None = None,
                 retry: RetryPolicy | None = None, http_timeout: float = 30.0, use_stream: bool = True) -> None:
        self.offline = offline_from_env() if offline is None else bool(offline)
        self._explicit_key = key
        self._emulator = emulator
        if self.offline:
            if self._emulator is None:
                from .emulator import shared_emulator

                self._emulator = shared_emulator()
            transport = transport or self._emulator.transport()
            self.queue_url = OFFLINE_QUEUE_URL
        else:
            self.queue_url = queue_url_from_env(queue_url)
        self._transport = transport
        self.catalog = catalog or default_catalog()
        self.timeout = timeout
        self._retry = retry
        self._http_timeout = http_timeout
        self._use_stream = use_stream
        self._max_concurrency = max(1, int(max_concurrency))
        self._cache_arg = cache
        self._cache: ResponseCache | bool | None = None if cache is False else True
        self._http: httpx.AsyncClient | None = None
        self._streams: httpx.AsyncClient | None = None
        self._queue: QueueClient | None = None
        self._sem: asyncio.Semaphore | None = None
        self._plans: collections.OrderedDict[Any, Plan] = collections.OrderedDict()
        #: the latest generations of this client (bounded: each holds its image bytes)
        self.history: collections.deque[Generation] = collections.deque(maxlen=HISTORY_SIZE)

    def __repr__(self) -> str:
        where = "offline emulator" if self.offline else self.queue_url
        return f"<falnb.Client {where}>"

    # -- configuration ---------------------------------------------------------------------

    @property
    def key(self) -> Key:
        """The key in use (raises MissingKeyError when there is none).  Its repr hides the secret."""
        if self.offline:
            return Key(self._explicit_key or "falnb-offline", "offline emulator")
        return find_key(self._explicit_key)

    @property
    def emulator(self) -> Emulator | None:
        return self._emulator

    @property
    def cache(self) -> ResponseCache | None:
        """The response cache (None for ``Client(cache=False)``), opened on first use."""
        if self._cache is True:
            from .cache._store import ResponseCache

            arg = self._cache_arg
            # a ResponseCache given by the caller is used through this client's namespace, so the
            # emulator's pictures are never served as fal's (nor fal's as the emulator's)
            self._cache = arg.for_namespace(self.cache_namespace) if isinstance(arg, ResponseCache) else \
                ResponseCache(None if arg is True else Path(str(arg)), namespace=self.cache_namespace)
        return self._cache or None

    @property
    def cache_namespace(self) -> str:
        # the emulator's pictures must never be served as fal's, nor fal's as the emulator's
        return "emulator" if self.offline else "fal"

    def _queue_client(self) -> QueueClient:
        if self._queue is None:
            self._http = httpx.AsyncClient(transport=self._transport, timeout=self._http_timeout,
                                           limits=httpx.Limits(max_connections=48, max_keepalive_connections=48),
                                           follow_redirects=True)
            # each waiting request holds a status stream: uncapped, so streams never starve submits
            self._streams = httpx.AsyncClient(transport=self._transport, timeout=self._http_timeout,
                                              limits=httpx.Limits(max_connections=None, max_keepalive_connections=16))
            self._queue = QueueClient(self._http, self.queue_url, self.key, self._retry,
                                      use_stream=self._use_stream, stream_http=self._streams)
            self._sem = asyncio.Semaphore(self._max_concurrency)
        return self._queue

    # -- the public API ----------------------------------------------------------------------

    def plan(self, prompt: str, *, model: str, n: int = 1, size: Any = None, seed: int | None = None,
             **params: Any) -> Plan:
        """Validate and map a request without sending anything (what ``generate`` would send)."""
        # plans are immutable: a re-run cell (the cache-hit path) reuses its plan instead of rebuilding it
        memo = _freeze((prompt, model, n, size, seed, params, self.catalog.version))
        if memo is not None and memo in self._plans:
            self._plans.move_to_end(memo)
            return self._plans[memo]
        plan = build_plan(prompt, model=model, n=n, size=size, seed=seed, catalog=self.catalog, **params)
        if memo is not None:
            self._plans[memo] = plan
            if len(self._plans) > _PLAN_MEMO:
                self._plans.popitem(last=False)
        return plan

    def generate(self, prompt: str, *, model: str, n: int = 1, size: Any = None, seed: int | None = None,
                 refresh: bool = False, cache: bool = True, timeout: float | None = None,
                 on_progress: ProgressCallback | None = None, extra_headers: Mapping[str, str] | None = None,
                 **params: Any) -> Generation:
        """Generate ``n`` images of ``prompt`` with ``model`` and wait for them.

        ``size``: ``"WxH"``, ``"W:H"`` or a preset; ``seed``: reproducible pictures; other keywords
        are model parameters (validated against the catalog) or forwarded to fal unchanged.
        ``refresh=True`` pays again and replaces the cached entry; ``cache=False`` skips the cache.
        ``on_progress`` is called in this thread with :class:`Progress` snapshots while waiting.
        """
        plan = self.plan(prompt, model=model, n=n, size=size, seed=seed, extra_headers=extra_headers, **params)
        tracker = ProgressTracker(plan.spec.id, len(plan.requests))
        hit = self._from_cache(plan, refresh=refresh, use_cache=cache, tracker=tracker, on_progress=on_progress)
        if hit is not None:
            return hit
        return self._sync(self._run_plan(plan, refresh=refresh, use_cache=cache, timeout=timeout,
                                         tracker=tracker), tracker, on_progress)

    async def agenerate(self, prompt: str, *, model: str, n: int = 1, size: Any = None, seed: int | None = None,
                        refresh: bool = False, cache: bool = True, timeout: float | None = None,
                        on_progress: ProgressCallback | None = None,
                        extra_headers: Mapping[str, str] | None = None, **params: Any) -> Generation:
        """The async twin of :meth:`generate` (``await`` it in a cell or any event loop)."""
        plan = self.plan(prompt, model=model, n=n, size=size, seed=seed, extra_headers=extra_headers, **params)
        tracker = ProgressTracker(plan.spec.id, len(plan.requests))
        hit = self._from_cache(plan, refresh=refresh, use_cache=cache, tracker=tracker, on_progress=on_progress)
        if hit is not None:
            return hit
        coro = self._run_plan(plan, refresh=refresh, use_cache=cache, timeout=timeout, tracker=tracker)
        return await self._async(coro, tracker, on_progress)

    def generate_many(self, prompts: Iterable[str], *, model: str, concurrency: int | None = None,
                      return_exceptions: bool = True, **kwargs: Any) -> list[Generation | FalnbError]:
        """One generation per prompt, run concurrently; per-item results (errors in place)."""
        return self._sync(self.agenerate_many_raw(list(prompts), model=model, concurrency=concurrency,
                                                  return_exceptions=return_exceptions, **kwargs))

    async def agenerate_many(self, prompts: Iterable[str], *, model: str, concurrency: int | None = None,
                             return_exceptions: bool = True, **kwargs: Any) -> list[Generation | FalnbError]:
        """The async twin of :meth:`generate_many`."""
        return await self._async(self.agenerate_many_raw(list(prompts), model=model, concurrency=concurrency,
                                                         return_exceptions=return_exceptions, **kwargs))

    async def agenerate_many_raw(self, prompts: list[str], *, model: str, concurrency: int | None,
                                 return_exceptions: bool, **kwargs: Any) -> list[Generation | FalnbError]:
        # runs on the private loop; validates every prompt before sending any
        refresh, use_cache, timeout = kwargs.pop("refresh", False), kwargs.pop("cache", True), kwargs.pop(
            "timeout", None)
        plans = [self.plan(p, model=model, **kwargs) for p in prompts]
        limit = asyncio.Semaphore(concurrency or self._max_concurrency)

        async def one(plan: Plan) -> Generation:
            async with limit:
                return await self._run_plan(plan, refresh=refresh, use_cache=use_cache, timeout=timeout,
                                            tracker=ProgressTracker(plan.spec.id, len(plan.requests)))

        results = await asyncio.gather(*(one(p) for p in plans), return_exceptions=return_exceptions)
        out: list[Generation | FalnbError] = []
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, FalnbError):
                raise r
            out.append(r)
        return out

    def close(self) -> None:
        clients = [c for c in (self._http, self._streams) if c is not None]
        self._http = self._streams = self._queue = None
        for c in clients:
            run_sync(c.aclose())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running on the private loop --------------------------------------------------------

    def _sync(self, coro: Coroutine[Any, Any, T], tracker: ProgressTracker | None = None,
              on_progress: ProgressCallback | None = None) -> T:
        seen = [-1]

        def tick() -> None:
            if on_progress is not None and tracker is not None and tracker.version != seen[0]:
                seen[0] = tracker.version
                on_progress(tracker.snapshot())

        try:
            result = run_sync(coro, on_tick=tick if on_progress else None)
        except KeyboardInterrupt:
            ids = ", ".join(tracker.snapshot().request_ids) if tracker else ""
            raise Interrupted(f"interrupted: cancelled the fal request(s) {ids or '(none sent yet)'}",
                               hint="fal does not bill a request cancelled while queued.") from None
        if on_progress is not None and tracker is not None:
            on_progress(tracker.snapshot())
        return result

    async def _async(self, coro: Coroutine[Any, Any, T], tracker: ProgressTracker | None = None,
                     on_progress: ProgressCallback | None = None) -> T:
        loop = get_loop()
        try:
            if asyncio.get_running_loop() is loop:
                return await coro
        except RuntimeError:
            pass
        fut = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))
        if on_progress is None or tracker is None:
            return await fut
        seen = -1
        while True:
            done, _ = await asyncio.wait({fut}, timeout=0.1)
            if tracker.version != seen:
                seen = tracker.version
                on_progress(tracker.snapshot())
            if done:
                return fut.result()

    async def _run_plan(self, plan: Plan, *, refresh: bool, use_cache: bool, timeout: float | None,
                        tracker: ProgressTracker) -> Generation:
        started = time.monotonic()
        bound = self.timeout if timeout is None else timeout
        tasks = [asyncio.ensure_future(self._run_request(plan, i, req, refresh=refresh, use_cache=use_cache,
                                                         timeout=bound, tracker=tracker))
                 for i, req in enumerate(plan.requests)]
        gathered = asyncio.gather(*tasks)
        gathered.add_done_callback(_retrieve)  # its error is re-raised from the tasks, or moot once cancelled
        try:
            # ``timeout`` bounds the whole call (submit, wait, result, download), not only the wait:
            # the wait's own bound answers first, this one catches a hung submit, result or download
            done, _ = await asyncio.wait({gathered}, timeout=None if bound is None else bound + _DEADLINE_GRACE)
            if not done:
                raise _timed_out(plan, bound, tracker)
            parts = gathered.result()
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return self._generation(plan, parts, started)

    def _from_cache(self, plan: Plan, *, refresh: bool, use_cache: bool, tracker: ProgressTracker,
                    on_progress: ProgressCallback | None = None) -> Generation | None:
        """Every request of ``plan`` from the cache, in the caller's thread (no hop to the loop,
        no key, no network), or None when any of them is missing."""
        if refresh or not use_cache:
            return None
        store = self.cache
        if store is None:
            return None
        started = time.monotonic()
        hits = []
        for req in plan.requests:
            hit = store.get(req.key)
            if hit is None:
                return None
            hits.append(hit)
        parts = []
        for i, (req, hit) in enumerate(zip(plan.requests, hits, strict=True)):
            tracker.update(i, "cached", request_id=hit.request_id)
            store.ledger.record_saved(req.cost, model=req.model)
            parts.append(_Part(hit.images, hit.request_id, hit.response, cached=True, saved=req.cost or 0.0))
        if on_progress is not None:
            on_progress(tracker.snapshot())
        return self._generation(plan, parts, started)

    def _generation(self, plan: Plan, parts: list[_Part], started: float) -> Generation:
        images = [img for part in parts for img in part.images]
        cached = all(p.cached for p in parts)
        gen = Generation(
            prompt=plan.prompt, model=plan.spec.id, images=images, inputs=[dict(r.input) for r in plan.requests],
            request_ids=[p.request_id for p in parts if p.request_id], seed=plan.seed,
            cost=plan.cost, cached=cached, saved=round(sum(p.saved for p in parts), 6),
            elapsed=time.monotonic() - started, response_format=plan.response_format,
            responses=[p.response for p in parts])
        if gen.seed is None:
            seeds = [p.response.get("seed") for p in parts]
            gen.seed = seeds[0] if seeds and isinstance(seeds[0], int) else None
        self.history.append(gen)
        return gen

    async def _run_request(self, plan: Plan, index: int, req: FalRequest, *, refresh: bool, use_cache: bool,
                           timeout: float | None, tracker: ProgressTracker) -> _Part:
        """One request: a cache hit, or the budget, the journal's claim, fal, and the store.

        ``cache=False`` (``use_cache``) reads and writes no entry and no journal row; the budget and
        the ledger still apply (a budget that ``cache=False`` could slip past would be no budget).
        """
        store = self.cache
        cache = store if use_cache else None
        if cache is not None and not refresh:
            hit = cache.get(req.key)  # no key, no network: a hit works without a fal key
            if hit is not None:
                tracker.update(index, "cached", request_id=hit.request_id)
                cache.ledger.record_saved(req.cost, model=req.model)
                return _Part(hit.images, hit.request_id, hit.response, cached=True, saved=req.cost or 0.0)
        from ._exceptions import CacheError
        from .cache._ledger import session_ledger

        ledger = store.ledger if store is not None else session_ledger(self.cache_namespace)

        def call_cost() -> float | None:
            # this call's requests that are not cached: a call crossing a budget is refused whole,
            # before any of its requests is sent
            costs = [r.cost for r in plan.requests if cache is None or refresh or not cache.has(r.key)]
            return None if any(c is None for c in costs) else float(sum(c for c in costs if c is not None))

        # the group is this call (its tracker), not the plan: plans are memoised and shared by re-runs
        reservation = ledger.reserve(req.cost, model=req.model, group=tracker, group_cost=call_cost)
        try:
            queue = self._queue_client()
            assert self._sem is not None
            async with self._sem:
                if cache is None:
                    return await self._fetch(queue, plan, index, req, None, timeout, tracker, reservation)
                async with cache.inflight(req.key, req.model, refresh=refresh, timeout=timeout) as slot:
                    if slot.entry is not None:  # stored by another process while we waited: nothing to pay
                        tracker.update(index, "cached", request_id=slot.entry.request_id)
                        cache.ledger.record_saved(req.cost, model=req.model)
                        return _Part(slot.entry.images, slot.entry.request_id, slot.entry.response, cached=True,
                                     saved=req.cost or 0.0)
                    part = await self._fetch(queue, plan, index, req, slot, timeout, tracker, reservation)
                    try:
                        cache.put(req.key, model=req.model, canonical=req.canonical, response=part.response,
                                  images=part.images, request_id=part.request_id, cost=req.cost)
                    except CacheError as exc:  # the pictures are paid and in hand: warn, do not lose them
                        import warnings

                        from .cache._index import CacheWarning

                        warnings.warn(f"falnb: {exc}", CacheWarning, stacklevel=2)
                    return part
        finally:
            reservation.release()  # a no-op once paid

    async def _fetch(self, queue: QueueClient, plan: Plan, index: int, req: FalRequest, slot: Any,
                     timeout: float | None, tracker: ProgressTracker, reservation: Any = None) -> _Part:
        """Submit (or re-attach to the journaled request), wait, fetch the result and the image bytes."""
        from ._exceptions import RequestNotFoundError

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            reattached = slot is not None and slot.request_id is not None
            if reattached:
                sub = slot.resume(queue, req.model)  # paid already, by the run that submitted it
            else:
                tracker.update(index, "submitting")
                sub = await queue.submit(req.model, req.input, plan.headers,
                                         on_sending=slot.record_sending if slot is not None else None)
                if slot is not None:
                    slot.record(sub)  # journaled before polling: a restart re-attaches instead of paying again
                if reservation is not None:
                    reservation.pay(sub.request_id)
            tracker.update(index, "queued", request_id=sub.request_id)
            try:
                def on_status(st: Any) -> None:
                    state = "queued" if st.status == "IN_QUEUE" else "running" if st.status == "IN_PROGRESS" \
                        else "done"
                    tracker.update(index, "downloading" if state == "done" else state, position=st.queue_position,
                                   log=st.logs[-1] if st.logs else None)

                remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
                final = await queue.wait(sub, on_status, remaining)
                if final.error and reattached:
                    slot.forget()  # the journaled request ended without pictures (cancelled, failed): ask anew
                    continue
                if final.error and slot is not None:
                    slot.failed = True  # fal says it failed for good: the journal will not re-attach to it
                response = await queue.result(sub, retry=not final.error)
            except RequestNotFoundError:
                if not reattached:
                    raise
                slot.forget()  # fal no longer holds it: submitting anew is not paying twice
                continue
            except asyncio.CancelledError:
                async def cancel(sent: Submitted = sub) -> str:
                    try:
                        return await asyncio.wait_for(queue.cancel(sent), 5.0)
                    except (FalnbError, asyncio.TimeoutError, httpx.HTTPError):
                        return ""

                answer = await asyncio.shield(cancel())
                if slot is not None:
                    slot.cancel_answer = answer  # the journal keeps a request that may still deliver
                raise
            break
        if slot is not None:
            slot.completed = True  # fal holds the result now: worth re-attaching to if we stop
        images = await self._download(response, req, plan)
        tracker.update(index, "done", request_id=sub.request_id)
        return _Part(images, sub.request_id, response)

    async def _download(self, response: Mapping[str, Any], req: FalRequest, plan: Plan) -> list[Image]:
        assert self._http is not None
        items = images_from_response(response)
        if not items:
            raise FalServerError(f"{req.model} returned no images", model=req.model)

        async def one(item: Mapping[str, Any]) -> Image:
            url = str(item.get("url", ""))
            data = await fetch_image(self._http, url, model=req.model)  # type: ignore[arg-type]
            ctype, w, h = sniff(data)
            return Image(data=data, content_type=ctype if ctype != "application/octet-stream"
                         else str(item.get("content_type") or ctype),
                         width=w or _int(item.get("width")), height=h or _int(item.get("height")),
                         url=None if url.startswith("data:") else url,
                         # fal's echo, else what was sent (Bria and Imagen echo no seed)
                         seed=_int(response.get("seed")) or _int(req.input.get("seed")))

        return list(await asyncio.gather(*(one(i) for i in items)))


class _Part:
    __slots__ = ("cached", "images", "request_id", "response", "saved")

    def __init__(self, images: list[Image], request_id: str | None, response: dict[str, Any],
                 cached: bool = False, saved: float = 0.0) -> None:
        self.images, self.request_id, self.response, self.cached, self.saved = (
            images, request_id, dict(response), cached, saved)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


#: the whole-call bound fires this long after ``timeout``, so the wait's own (clearer) timeout wins
_DEADLINE_GRACE = 0.25


def _timed_out(plan: Plan, bound: float | None, tracker: ProgressTracker) -> FalnbError:
    from ._exceptions import RequestTimeoutError

    snap = tracker.snapshot()
    ids = ", ".join(snap.request_ids)
    if snap.state == "checking":
        hint = "Nothing was sent by this call: re-run it, or raise the timeout."
    elif snap.state == "submitting":
        hint = ("A submit got no answer in time: fal may have queued it (and will bill it if it completes); "
                "falnb will not send it again by itself. Check https://fal.ai/dashboard/requests, or raise the "
                "timeout.")
    else:
        hint = "fal holds the request: re-run the same call to re-attach (with the cache on), or raise the timeout."
    return RequestTimeoutError(f"{plan.spec.id} did not answer within the timeout of {bound:g} s "
                               f"(while {snap.state}{'; request ' + ids if ids else ''})", model=plan.spec.id,
                               hint=hint)


def _freeze(value: Any) -> Any:
    """A hashable twin of call arguments (dicts and lists become sorted tuples), or None if it has none."""
    if isinstance(value, (str, int, float, bool, type(None))):
        return (type(value).__name__, value)  # 1, 1.0 and True stay distinct requests
    if isinstance(value, (list, tuple)):
        items = [_freeze(v) for v in value]
        return None if any(i is None for i in items) else (type(value).__name__, *items)
    if isinstance(value, Mapping):
        pairs = [(str(k), _freeze(v)) for k, v in value.items()]
        return None if any(v is None for _, v in pairs) else ("map", *sorted(pairs))
    return None


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


_DEFAULT: Client | None = None
_DEFAULT_LOCK = threading.Lock()


def default_client() -> Client:
    """The client behind ``falnb.generate``: configured from the environment on first use
    (one per process, even when several threads ask at once)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Client()
        return _DEFAULT

