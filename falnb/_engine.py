"""How a plan is carried out: the cache, the budget, the journal's claim, fal's queue, the store, the bytes.

The :class:`Engine` owns the httpx clients and the queue client (made on first use, on falnb's private
loop) and runs one plan's requests concurrently (one request's life with fal: :mod:`._fetch`).  It is the
Client's machinery: the Client decides what to run (and keeps the history), :class:`~falnb._run.Run` runs
several plans and watches them.

A process forked after falnb was used gets none of its parent's connections or asyncio objects: every
engine drops them in the child (``os.register_at_fork``) and makes new ones on first use there.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from ._exceptions import (
    CacheError,
    FalError,
    FalnbError,
    FalServerError,
    RequestTimeoutError,
    SubmitUncertainError,
)
from ._fetch import Part, RequestRun, Stopping, through_cancels
from .cache._index import CacheWarning, Reported
from .cache._ledger import session_ledger
from .cache._uploads import uploader_for
from .catalog._prices import BILLABLE_UNITS
from .fal._config import Key
from .fal._download import fetch_image, sniff
from .fal._images_route import ProxyRoutes
from .fal._loop import run_sync
from .fal._queue import QueueClient, RetryPolicy
from .fal._tls import verify
from .fal._upload import Uploader
from .request._plan import FalRequest, Plan
from .results._generation import Generation, images_from_response
from .results._image import Image
from .results._progress import Progress, ProgressTracker

if TYPE_CHECKING:
    from .cache._store import ResponseCache

__all__ = ["Engine"]


class Engine:
    """Runs plans against one fal queue (or the emulator) with one cache; see the module docstring."""

    def __init__(self, *, queue_url: str, key: Callable[[], Key], transport: httpx.AsyncBaseTransport | None,
                 cache: Callable[[], ResponseCache | None], namespace: str, timeout: float | None,
                 retry: RetryPolicy | None, http_timeout: float, use_stream: bool, max_concurrency: int,
                 history: collections.deque[Generation], proxy_routes: ProxyRoutes | None = None,
                 bill: Callable[[str, Any], float | None] | None = None,
                 storage_url: str | None = None, owner: Any = None) -> None:
        self._queue_url, self._key, self._transport = queue_url, key, transport
        self._cache, self._namespace, self.timeout = cache, namespace, timeout
        self._retry, self._http_timeout, self._use_stream = retry, http_timeout, use_stream
        self._max_concurrency = max(1, int(max_concurrency))
        self._history = history
        #: through a LiteLLM proxy: which requests take its images route instead of fal's queue
        self._routes = proxy_routes
        #: (model, x-fal-billable-units) -> what fal billed in USD, or None when the unit price is unknown
        self._bill = bill
        self._http: httpx.AsyncClient | None = None
        self._streams: httpx.AsyncClient | None = None
        self._queue: QueueClient | None = None
        self._sem: asyncio.Semaphore | None = None
        _ENGINES.add(self)
        self._storage_url = storage_url
        self._uploader: Uploader | None = None
        #: who made this engine's Generations (the Client): ``Generation.edit`` goes back to it
        self.owner: Any = owner

    def uploader(self) -> Uploader:
        """The uploader of input pictures (on the queue's HTTP client), remembering uploads in the cache
        directory when there is one."""
        if self._uploader is None:
            self.queue()
            assert self._http is not None
            self._uploader = uploader_for(self._http, self._key, self._cache(), self._queue_url, self._storage_url)
        return self._uploader

    def cache(self) -> ResponseCache | None:
        """The response cache in use (None without one)."""
        return self._cache()

    def queue(self) -> QueueClient:
        """The queue client, made on first use (on the private loop: its pools belong to that loop)."""
        if self._queue is None:
            tls = verify(self._transport)  # one TLS context for the process, not one per client
            self._http = httpx.AsyncClient(transport=self._transport, timeout=self._http_timeout, verify=tls,
                                           limits=httpx.Limits(max_connections=48, max_keepalive_connections=48),
                                           follow_redirects=True)
            # each waiting request holds a status stream: uncapped, so streams never starve submits
            self._streams = httpx.AsyncClient(transport=self._transport, timeout=self._http_timeout, verify=tls,
                                              limits=httpx.Limits(max_connections=None, max_keepalive_connections=16))
            # the key is read for every request: a key changed with %env takes effect on the next call
            self._queue = QueueClient(self._http, self._queue_url, self._key, self._retry,
                                      use_stream=self._use_stream, stream_http=self._streams)
            self._sem = asyncio.Semaphore(self._max_concurrency)
        return self._queue

    def close(self) -> None:
        clients = [c for c in (self._http, self._streams) if c is not None]
        self._http = self._streams = self._queue = self._uploader = None
        for c in clients:
            run_sync(c.aclose())

    def _forget_after_fork(self) -> None:
        """In a forked child: the parent's pools, sockets and asyncio objects are not ours to use (nor to
        close: they belong to the parent's loop).  New ones are made on first use."""
        self._http = self._streams = self._queue = None
        self._sem = None

    async def run_plan(self, plan: Plan, *, refresh: bool, use_cache: bool, timeout: float | None,
                       tracker: ProgressTracker, group: object = None,
                       group_cost: Callable[[], float | None] | None = None,
                       notes: dict[int, str] | None = None) -> Generation:
        """Every request of ``plan`` (concurrently), bounded by ``timeout`` as a whole; the Generation.

        ``group`` holds the budget for a set of calls run together (a cell, a batch) and ``group_cost``
        is the set's uncached estimate: the set passes or fails its budget check whole.  By default the
        group is this call.  ``notes`` receives, per request index, what a stop did to it (see ``_fetch``)."""
        started = time.monotonic()
        bound = self.timeout if timeout is None else timeout
        notes = {} if notes is None else notes
        stopping = Stopping()
        tasks = [asyncio.ensure_future(self._run_request(plan, i, req, refresh=refresh, use_cache=use_cache,
                                                         timeout=bound, tracker=tracker,
                                                         group=tracker if group is None else group,
                                                         group_cost=group_cost, notes=notes, stopping=stopping))
                 for i, req in enumerate(plan.requests)]
        gathered = asyncio.gather(*tasks)
        gathered.add_done_callback(_retrieve)  # its error is re-raised from the tasks, or moot once cancelled
        try:
            # ``timeout`` bounds the whole call (submit, wait, result, download), not only the wait:
            # the wait's own bound answers first, this one catches a hung submit, result or download
            done, _ = await asyncio.wait({gathered}, timeout=None if bound is None else bound + _DEADLINE_GRACE)
            if not done:
                # what fal may hold is settled first (the cancels): the message then says what happened
                snap = tracker.snapshot()
                stopping.grace = 0.0  # the caller's bound: a submit without an answer now is reported, not awaited
                await _stop(tasks)
                raise _timed_out(plan, bound, snap, notes)
            parts = gathered.result()
        except BaseException:
            await _stop(tasks)
            raise
        return self.generation(plan, parts, started)

    def from_cache(self, plan: Plan, *, refresh: bool, use_cache: bool, tracker: ProgressTracker) -> Generation | None:
        """Every request of ``plan`` from the cache, in the caller's thread (no hop to the loop,
        no key, no network), or None when any of them is missing."""
        if refresh or not use_cache:
            return None
        store = self._cache()
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
            parts.append(self._hit_part(hit.images, hit.request_id, hit.response, hit.created, req, store))
        return self.generation(plan, parts, started)

    def generation(self, plan: Plan, parts: list[Part], started: float) -> Generation:
        images = [img for part in parts for img in part.images]
        cached = all(p.cached for p in parts)
        gen = Generation(
            prompt=plan.prompt, model=plan.spec.id, images=images, inputs=[dict(r.input) for r in plan.requests],
            request_ids=[p.request_id for p in parts if p.request_id], seed=plan.seed,
            cost=_cost(plan, parts), billed=all(p.billed is not None for p in parts), cached=cached,
            saved=round(sum(p.saved for p in parts), 6),
            elapsed=time.monotonic() - started, response_format=plan.response_format,
            responses=[p.response for p in parts], made=min((p.made for p in parts), default=time.time()),
            route=ProxyRoutes.CAPTION if any("litellm_proxy" in p.response and not p.cached for p in parts) else None,
            input_images=tuple(Image(data=p.data, content_type=p.content_type, width=p.width, height=p.height,
                                     url=p.url, source=p.source) for p in plan.pictures),
            _maker=self.owner)
        if gen.seed is None:
            seeds = [p.response.get("seed") for p in parts]
            gen.seed = seeds[0] if seeds and isinstance(seeds[0], int) else None
        self._history.append(gen)
        return gen

    async def _run_request(self, plan: Plan, index: int, req: FalRequest, *, refresh: bool, use_cache: bool,
                           timeout: float | None, tracker: ProgressTracker, group: object,
                           group_cost: Callable[[], float | None] | None, notes: dict[int, str],
                           stopping: Stopping) -> Part:
        """One request: a cache hit, or the budget, the journal's claim, fal, and the store.

        ``cache=False`` (``use_cache``) reads and writes no entry and no journal row; the budget and
        the ledger still apply (a budget that ``cache=False`` could slip past would be no budget).
        """
        store = self._cache()
        cache = store if use_cache else None
        if cache is not None and not refresh:
            hit = cache.get(req.key)  # no key, no network: a hit works without a fal key
            if hit is not None:
                tracker.update(index, "cached", request_id=hit.request_id)
                return self._hit_part(hit.images, hit.request_id, hit.response, hit.created, req, cache)

        ledger = store.ledger if store is not None else session_ledger(self._namespace)

        def call_cost() -> float | None:
            # this call's requests that are not cached: a call crossing a budget is refused whole,
            # before any of its requests is sent
            costs = [r.cost for r in plan.requests if cache is None or refresh or not cache.has(r.key)]
            return None if any(c is None for c in costs) else float(sum(c for c in costs if c is not None))

        # the group is the call (or the set of calls run together), not the plan: plans are memoised
        # and shared by re-runs
        reservation = ledger.reserve(req.cost, model=req.model, group=group, group_cost=group_cost or call_cost)
        try:
            queue = self.queue()
            self._key()  # no key: MissingKeyError now, before anything is journaled or sent
            assert self._sem is not None
            def life(slot: Any) -> RequestRun:
                run = RequestRun(queue, plan, index, req, slot, tracker, reservation, notes, stopping)
                run.uploader = self.uploader() if req.pictures else None
                return run

            async with self._sem:
                if cache is None:
                    return await self._billed(await self._fetch(life(None), timeout), req, ledger)
                async with cache.inflight(req.key, req.model, refresh=refresh, timeout=timeout) as slot:
                    if slot.entry is not None:  # stored by another process while we waited: nothing to pay
                        tracker.update(index, "cached", request_id=slot.entry.request_id)
                        e = slot.entry
                        return self._hit_part(e.images, e.request_id, e.response, e.created, req, cache)
                    part = await self._fetch(life(slot), timeout)
                    await self._billed(part, req, ledger)
                    try:
                        cache.put(req.key, model=req.model, canonical=req.canonical, response=part.response,
                                  images=part.images, request_id=part.request_id, cost=req.cost)
                    except CacheError as exc:  # the pictures are paid and in hand: warn, do not lose them
                        if not isinstance(exc, Reported):  # (else a CacheWarning said why already)
                            warnings.warn(f"falnb: {exc}", CacheWarning, stacklevel=2)
                    return part
        finally:
            reservation.release()  # a no-op once paid

    def _bill_of(self, model: str, response: Mapping[str, Any]) -> float | None:
        units = response.get(BILLABLE_UNITS)
        return self._bill(model, units) if self._bill is not None and units is not None else None

    def _hit_part(self, images: list[Image], request_id: str | None, response: dict[str, Any], made: float,
                  req: FalRequest, store: ResponseCache) -> Part:
        """A request served by the cache: saved what fal billed for it (else the estimate)."""
        billed = self._bill_of(req.model, response)
        saved = billed if billed is not None else req.cost
        store.ledger.record_saved(saved, model=req.model)
        part = Part(images, request_id, response, cached=True, saved=saved or 0.0, made=made)
        part.billed = billed
        return part

    async def _billed(self, part: Part, req: FalRequest, ledger: Any) -> Part:
        """fal's bill of a paid request (its ``x-fal-billable-units`` priced) into the part and the ledger."""
        if self._bill is not None and BILLABLE_UNITS in part.response:
            part.billed = await asyncio.to_thread(self._bill_of, req.model, part.response)  # (may ask fal)
            if part.billed is not None:
                ledger.record_billed(req.cost, part.billed, model=req.model, request_id=part.request_id)
        return part

    async def _fetch(self, life: RequestRun, timeout: float | None) -> Part:
        """Submit (or re-attach to the journaled request), wait, fetch the result and the image bytes; or a
        LiteLLM proxy's images route for the requests that take it."""
        routes, slot = self._routes, life.slot
        if routes is not None and routes.takes_images(life.req.model) and not (slot is not None and slot.request_id):
            return await self._via_images(routes, life, timeout)
        try:
            sub, response = await life.result(timeout)
        except FalError as exc:
            # the proxy refused its pass-through before reaching fal (nothing sent, nothing billed)
            if routes is None or not routes.fall_back(life.req.model, exc):
                raise
            return await self._via_images(routes, life, timeout)
        images = await self._download(response, life.req, life.plan)
        life.tracker.update(life.index, "done", request_id=sub.request_id)
        return Part(images, sub.request_id, response)

    async def _via_images(self, routes: ProxyRoutes, life: RequestRun, timeout: float | None) -> Part:
        """One POST to the proxy's images route: synchronous, never sent twice, nothing to re-attach to."""
        assert self._http is not None
        req, slot = life.req, life.slot
        life.tracker.update(life.index, "submitting")
        try:
            answer = await routes.generate(self._http, req.model, life.plan.spec.alias, req.input, timeout=timeout,
                                           on_sending=slot.record_sending if slot is not None else None)
        except (asyncio.CancelledError, SubmitUncertainError):
            life.may_be_billed()  # sent, and synchronous: the proxy and fal go on, and bill it
            raise
        if life.reservation is not None:
            life.reservation.pay(answer.call_id)
        store = self._cache()
        (store.ledger if store is not None else session_ledger(self._namespace)).record_proxy_cost(
            answer.proxy_cost, model=req.model, request_id=answer.call_id)
        life.tracker.update(life.index, "downloading")
        images = await self._download(answer.response, req, life.plan)
        life.tracker.update(life.index, "done")
        return Part(images, None, answer.response)

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



def _cost(plan: Plan, parts: list[Part]) -> float | None:
    """fal's bill where known, else the estimate; None when any part has neither."""
    costs = [p.billed if p.billed is not None else r.cost for p, r in zip(parts, plan.requests, strict=True)]
    return None if any(c is None for c in costs) else round(sum(c for c in costs if c is not None), 6)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


async def _stop(tasks: list[asyncio.Task[Part]]) -> None:
    """Cancel the requests' tasks and wait until each has dealt with what fal holds (its cancel sent),
    however often this task is cancelled meanwhile."""
    for t in tasks:
        t.cancel()
    await through_cancels(asyncio.gather(*tasks, return_exceptions=True))


#: the whole-call bound fires this long after ``timeout``, so the wait's own (clearer) timeout wins
_DEADLINE_GRACE = 0.25


def _timed_out(plan: Plan, bound: float | None, snap: Progress, notes: dict[int, str]) -> FalnbError:
    """The whole call passed its bound (a hung submit, result or download); ``snap`` is its progress then,
    ``notes`` what stopping did to each request."""
    ids = ", ".join(snap.request_ids)
    said = set(notes.values())
    if snap.state == "checking" or said == {"unsent"}:
        hint = "Nothing reached fal (nothing is billed): re-run it, or raise the timeout."
    elif "lost" in said:
        hint = ("A submit got no answer in time: fal may have queued it (and will bill it if it completes); "
                "falnb will not send it again by itself. Check https://fal.ai/dashboard/requests, or raise the "
                "timeout.")
    elif said & {"cancelled", "completed"}:
        hint = ("falnb asked fal to cancel what it held (a re-run takes the pictures if fal finished anyway), "
                "or raise the timeout.")
    else:
        hint = "fal holds the request: re-run the same call to re-attach (with the cache on), or raise the timeout."
    return RequestTimeoutError(f"{plan.spec.id} did not answer within the timeout of {bound:g} s "
                               f"(while {snap.state}{'; request ' + ids if ids else ''})", model=plan.spec.id,
                               hint=hint)


_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for engine in list(_ENGINES):
        engine._forget_after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows (no fork there)
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


