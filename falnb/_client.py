"""The :class:`Client`: plan -> cache -> fal queue -> :class:`Generation`, async and sync.

All network work runs on falnb's private event loop (see ``_loop``), so the sync and async APIs
share one ``httpx.AsyncClient`` and one connection pool, and a notebook's own loop is never
touched.  ``agenerate`` awaits that work from the caller's loop.

What a client was not told explicitly comes from the environment **at each call**: the key
(``%env FAL_KEY=...`` after a 401 takes effect), online or offline (``FALNB_OFFLINE``) and the queue
URL (``FALNB_QUEUE_URL``).  ``Client(offline=True)``, ``key=``, ``queue_url=`` stay fixed.  Each
(offline, queue URL) pair has its own :class:`~falnb._engine.Engine` (connections) and each
namespace its own view of the cache, so the emulator's pictures never mix with fal's.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._args import check_run_args, check_timeout, first_result, freeze, prompt_list, results_or_raise
from ._engine import Engine
from ._exceptions import FalnbError
from ._redact import hide_credentials
from ._run import Run, first_plan_ticker
from ._wiring import Wired, Wirings
from .cache._ledger import Ledger, session_ledger
from .catalog import DEFAULT_MODEL
from .catalog._catalog import Catalog, default_catalog
from .fal._config import OFFLINE_QUEUE_URL, Key, find_key, offline_from_env, queue_url_from_env
from .fal._sending import check_headers
from .fal._teams import TeamBook
from .request._plan import Plan, build_plan, has_pictures
from .results._generation import Generation
from .results._progress import Progress, ProgressTracker

if TYPE_CHECKING:
    import httpx

    from .cache._store import ResponseCache
    from .catalog._prices import PriceStore
    from .emulator import Emulator
    from .fal._platform import PlatformAPI
    from .fal._proxy import Proxy
    from .fal._queue import RetryPolicy

__all__ = ["Client", "default_client"]

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
    ``proxy_url``, ``proxy_key``, ``proxy_route``: a team's LiteLLM proxy (``fal/_proxy.py``; README).
    ``storage_url``: where input pictures are uploaded (``FALNB_STORAGE_URL``, fal's; offline the emulator's).
    """

    def __init__(self, key: str | None = None, queue_url: str | None = None, offline: bool | None = None, *,
                 cache: bool | str | Path | ResponseCache = True, timeout: float | None = 600.0,
                 max_concurrency: int = 64, transport: httpx.AsyncBaseTransport | None = None,
                 emulator: Emulator | None = None, catalog: Catalog | None = None,
                 retry: RetryPolicy | None = None, http_timeout: float = 30.0, use_stream: bool = True,
                 proxy_url: str | None = None, proxy_key: str | None = None, proxy_route: str | None = None,
                 storage_url: str | None = None) -> None:
        check_timeout(timeout, "timeout")
        check_timeout(http_timeout, "http_timeout", optional=False)
        self._offline_arg = None if offline is None else bool(offline)
        self._queue_url_arg = queue_url
        self._explicit_key = key
        self._emulator = emulator
        self._transport = transport
        self._team_book = TeamBook(transport, proxy_url, proxy_key, proxy_route, fal_key=key)
        self._cache_arg = cache
        self._caches: dict[str, ResponseCache] = {}
        self._plans: collections.OrderedDict[Any, Plan] = collections.OrderedDict()
        #: the latest generations of this client (bounded: each holds its image bytes)
        self.history: collections.deque[Generation] = collections.deque(maxlen=HISTORY_SIZE)
        self._timeout = timeout
        self._engine_args: dict[str, Any] = dict(retry=retry, http_timeout=http_timeout, use_stream=use_stream,
                                                 max_concurrency=max_concurrency, storage_url=storage_url, owner=self)
        self._engines: dict[tuple[bool, str], Engine] = {}
        self._wirings = Wirings(catalog or default_catalog(), transport, cache)
        self._lock = threading.Lock()
        _ = self._wiring()  # the emulator now; a bad queue URL: ConfigError now

    def __repr__(self) -> str:
        try:
            where = "offline emulator" if self.offline else hide_credentials(self.queue_url)
        except FalnbError:
            where = "a bad queue URL"
        return f"<falnb.Client {where}>"

    # -- configuration ---------------------------------------------------------------------

    @property
    def offline(self) -> bool:
        """Whether calls go to the embedded emulator: ``Client(offline=...)``, else ``FALNB_OFFLINE`` now."""
        return offline_from_env() if self._offline_arg is None else self._offline_arg

    @property
    def queue_url(self) -> str:
        """The queue calls go to now: ``queue_url=``, else ``FALNB_QUEUE_URL``, else fal's."""
        p = self.proxy
        return OFFLINE_QUEUE_URL if self.offline else p.queue_url if p else queue_url_from_env(self._queue_url_arg)

    @property
    def proxy(self) -> Proxy | None:
        """The team's LiteLLM proxy calls go through now (None: fal directly, or offline)."""
        return None if self.offline else self._team_book.proxy()

    def proxy_models(self, refresh: bool = False) -> dict[str, str | None]:
        """The proxy's team model names and their fal ids (None: not fal), read from it once; {} without one."""
        proxy = self.proxy
        return {} if proxy is None else {t.name: t.fal_id for t in self._team_book.teams(proxy, refresh)}

    @property
    def key(self) -> Key:
        """The key in use (raises MissingKeyError when there is none).  Its repr hides the secret."""
        return self._key(self.offline)

    def _key(self, offline: bool) -> Key:
        if offline:
            return Key(self._explicit_key or "falnb-offline", "offline emulator")
        return proxy.key() if (proxy := self.proxy) is not None else find_key(self._explicit_key)

    def _wiring(self) -> Wired:
        """fal's platform API for the configuration in effect now (as each has its engine): offline, the
        emulator's, else the queue's (for endpoints falnb ships nothing for: fal's schemas and unit prices)."""
        offline = self.offline
        return self._wirings.get(offline, self.queue_url, lambda: self._key(offline),
                                 self._emulator_now() if offline else self._emulator)

    @property
    def platform(self) -> PlatformAPI:
        """fal's platform API (schemas, the model list, prices) for the configuration in effect now."""
        return self._wiring().platform

    @property
    def prices(self) -> PriceStore:
        return self._wiring().prices

    @property
    def catalog(self) -> Catalog:
        """The models, with other endpoints described by the platform API in effect now."""
        return self._wiring().catalog

    @property
    def _engine(self) -> Engine:
        """The engine for the configuration in effect now (made on first use)."""
        offline, proxy = self.offline, self.proxy
        url, bill = self.queue_url, self._wiring().bill
        with self._lock:
            engine = self._engines.get((offline, url))
            if engine is None:
                transport = self._transport
                if offline and transport is None:
                    transport = self._emulator_now().transport()
                ns = _namespace(offline)
                engine = Engine(queue_url=url, key=lambda: self._key(offline), transport=transport,
                                cache=lambda: self._store(ns), namespace=ns, timeout=self._timeout,
                                history=self.history, **self._engine_args, bill=bill,
                                proxy_routes=self._team_book.routes(proxy))
                self._engines[(offline, url)] = engine
            return engine

    @property
    def timeout(self) -> float | None:
        """The longest a call waits for fal, in seconds (None: no bound); ``timeout=`` of a call wins."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        check_timeout(value, "timeout")
        self._timeout = value
        for engine in list(self._engines.values()):
            engine.timeout = value

    @property
    def emulator(self) -> Emulator | None:
        """The emulator offline calls go to (None while this client has not been offline)."""
        if self._emulator is None and self.offline:
            return self._emulator_now()
        return self._emulator

    def _emulator_now(self) -> Emulator:
        if self._emulator is None:
            from .emulator import shared_emulator

            self._emulator = shared_emulator()
        return self._emulator

    @property
    def cache(self) -> ResponseCache | None:
        """The response cache (None for ``Client(cache=False)``), opened on first use, seen through the
        namespace in effect now (the emulator's pictures are never served as fal's, nor fal's as the
        emulator's)."""
        return self._store(self.cache_namespace)

    def _store(self, namespace: str) -> ResponseCache | None:
        arg = self._cache_arg
        if arg is False:
            return None
        store = self._caches.get(namespace)
        if store is None:
            from .cache._store import ResponseCache

            # one directory (and one index, one set of budgets) for every namespace of this client
            first = next(iter(self._caches.values()), None)
            base = first if first is not None else arg if isinstance(arg, ResponseCache) else None
            store = base.for_namespace(namespace) if base is not None else \
                ResponseCache(None if arg is True else Path(str(arg)), namespace=namespace)
            self._caches[namespace] = store
        return store

    @property
    def cache_namespace(self) -> str:
        return _namespace(self.offline)

    # -- the public API ----------------------------------------------------------------------

    def plan(self, prompt: str, *, model: str | None = None, n: int = 1, size: Any = None,
             seed: int | None = None, **params: Any) -> Plan:
        """Validate and map a request without sending anything (what ``generate`` would send).

        ``model`` defaults to :data:`falnb.catalog.DEFAULT_MODEL` (``flux-schnell``), the magics' default too.
        """
        model = DEFAULT_MODEL if model is None else model
        catalog = self.catalog if (proxy := self.proxy) is None else self._team_book.catalog(proxy)  # + team names
        # plans are immutable: a re-run cell reuses its plan (not one with pictures: their bytes are read every time)
        memo = None if has_pictures(params) else freeze((prompt, model, n, size, seed, params, catalog.version,
                                                         proxy and proxy.url, id(catalog)))  # (where described)
        if memo is not None and memo in self._plans:
            self._plans.move_to_end(memo)
            return self._plans[memo]
        plan = build_plan(prompt, model=model, n=n, size=size, seed=seed, catalog=catalog, **params)
        check_headers(plan.headers, plan.spec.id)  # what httpx could not send is refused now, not journaled
        if memo is not None:
            self._plans[memo] = plan
            if len(self._plans) > _PLAN_MEMO:
                self._plans.popitem(last=False)
        return plan

    def generate(self, prompt: str, *, model: str | None = None, n: int = 1, size: Any = None,
                 seed: int | None = None, refresh: bool = False, cache: bool = True,
                 timeout: float | None = None, on_progress: ProgressCallback | None = None,
                 extra_headers: Mapping[str, str] | None = None, **params: Any) -> Generation:
        """Generate ``n`` images of ``prompt`` with ``model`` (default ``flux-schnell``) and wait for them.

        ``size``: ``"WxH"``, ``"W:H"`` or a preset; ``seed``: reproducible pictures; other keywords
        are model inputs, validated against the catalog: a name a catalogued model does not take is refused
        unless ``allow_unknown=True`` (or a list of the names meant) says to send it as it is.
        ``refresh=True`` pays again and replaces the cached entry; ``cache=False`` skips the cache.
        ``on_progress`` is called in this thread with :class:`Progress` snapshots while waiting.
        """
        plan = self.plan(prompt, model=model, n=n, size=size, seed=seed, extra_headers=extra_headers, **params)
        hit = self._hit(plan, refresh=refresh, use_cache=cache, on_progress=on_progress)
        if hit is not None:
            return hit
        run = self.prepare([plan], refresh=refresh, cache=cache, timeout=timeout)
        results = run.wait(on_tick=first_plan_ticker(run, on_progress))
        if on_progress is not None:
            on_progress(run.progress()[0])
        return first_result(results)

    async def agenerate(self, prompt: str, *, model: str | None = None, n: int = 1, size: Any = None,
                        seed: int | None = None, refresh: bool = False, cache: bool = True,
                        timeout: float | None = None, on_progress: ProgressCallback | None = None,
                        extra_headers: Mapping[str, str] | None = None, **params: Any) -> Generation:
        """The async twin of :meth:`generate` (``await`` it in a cell or any event loop)."""
        plan = self.plan(prompt, model=model, n=n, size=size, seed=seed, extra_headers=extra_headers, **params)
        hit = self._hit(plan, refresh=refresh, use_cache=cache, on_progress=on_progress)
        if hit is not None:
            return hit
        run = self.prepare([plan], refresh=refresh, cache=cache, timeout=timeout)
        results = await run.wait_async(on_tick=first_plan_ticker(run, on_progress))
        if on_progress is not None:
            on_progress(run.progress()[0])
        return first_result(results)

    def generate_many(self, prompts: Iterable[str], *, model: str | None = None,
                      concurrency: int | None = None, return_exceptions: bool = True,
                      **kwargs: Any) -> list[Generation | FalnbError]:
        """One generation per prompt, run concurrently; per-item results (errors in place).

        Every prompt is validated before any is sent.  ``return_exceptions=False`` raises the first
        error instead, after cancelling the rest."""
        run = self._start_many(prompts, model=model, concurrency=concurrency,
                               return_exceptions=return_exceptions, **kwargs)
        return results_or_raise(run.wait(), return_exceptions)

    async def agenerate_many(self, prompts: Iterable[str], *, model: str | None = None,
                             concurrency: int | None = None, return_exceptions: bool = True,
                      **kwargs: Any) -> list[Generation | FalnbError]:
        """The async twin of :meth:`generate_many`."""
        run = self._start_many(prompts, model=model, concurrency=concurrency,
                               return_exceptions=return_exceptions, **kwargs)
        return results_or_raise(await run.wait_async(), return_exceptions)

    def start(self, plans: Sequence[Plan], *, refresh: bool = False, cache: bool = True,
              timeout: float | None = None, concurrency: int | None = None, stop_on_error: bool = False) -> Run:
        """Start running ``plans`` (from :meth:`plan`) together and return at once: a :class:`Run`.

        The plans' uncached requests are checked against the budgets as one set before anything is
        sent (:class:`BudgetExceededError` here).  ``concurrency`` bounds the plans running at once
        (default: all; fal's queue holds what your account cannot run yet, and queue time is free).
        ``stop_on_error`` cancels the rest at the first error.  Watch it with ``run.progress()``,
        ``run.wait()`` (Ctrl-C cancels), ``run.watch(...)``, ``run.add_done_callback(...)``; stop it
        with ``run.cancel()``.
        """
        return self.prepare(plans, refresh=refresh, cache=cache, timeout=timeout, concurrency=concurrency,
                            stop_on_error=stop_on_error)._start()

    def prepare(self, plans: Sequence[Plan], *, refresh: bool = False, cache: bool = True,
                timeout: float | None = None, concurrency: int | None = None, stop_on_error: bool = False) -> Run:
        """A :class:`Run` of ``plans`` checked against the budgets, that starts when ``run.wait()`` (or
        ``wait_async``) is called: a Ctrl-C landing anywhere between the two still cancels everything."""
        check_run_args(timeout=timeout, refresh=refresh, cache=cache, stop_on_error=stop_on_error)
        run = Run(self._engine, plans, refresh=refresh, use_cache=cache, timeout=timeout,
                  concurrency=concurrency, stop_on_error=stop_on_error)
        self._ledger().check_budget(run.due_cost(), what=_what(plans))
        return run

    def close(self) -> None:
        with self._lock:
            engines = list(self._engines.values())
        for engine in engines:
            engine.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ------------------------------------------------------------------------------

    def _hit(self, plan: Plan, *, refresh: bool, use_cache: bool,
             on_progress: ProgressCallback | None) -> Generation | None:
        """Every request of ``plan`` from the cache, in the caller's thread (no hop to the loop, no key,
        no network), or None."""
        check_run_args(on_progress=on_progress, refresh=refresh, cache=use_cache)  # (a callback: not once paid)
        tracker = ProgressTracker(plan.spec.id, len(plan.requests))
        hit = self._engine.from_cache(plan, refresh=refresh, use_cache=use_cache, tracker=tracker)
        if hit is not None and on_progress is not None:
            on_progress(tracker.snapshot())
        return hit

    def _start_many(self, prompts: Iterable[str], *, model: str | None, concurrency: int | None,
                    return_exceptions: bool, **kwargs: Any) -> Run:
        refresh, use_cache, timeout = (kwargs.pop("refresh", False), kwargs.pop("cache", True),
                                       kwargs.pop("timeout", None))
        # all validated before any is sent
        plans = [self.plan(p, model=model, **kwargs) for p in prompt_list(prompts)]
        return self.prepare(plans, refresh=refresh, cache=use_cache, timeout=timeout, concurrency=concurrency,
                            stop_on_error=not return_exceptions)

    def _ledger(self) -> Ledger:
        # generate(cache=False) still counts against the budgets, in the cache directory's ledger
        store = self.cache
        return store.ledger if store is not None else session_ledger(self.cache_namespace)


def _namespace(offline: bool) -> str:
    # the emulator's pictures must never be served as fal's, nor fal's as the emulator's
    return "emulator" if offline else "fal"


def _what(plans: Sequence[Plan]) -> str:
    n = sum(len(p.requests) for p in plans)
    return "this request" if n == 1 else f"these {n} requests"


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

