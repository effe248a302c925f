"""The :class:`Emulator`: one emulated fal account, reachable in-process or over HTTP."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._exceptions import ConfigError
from ..catalog._catalog import Catalog
from ._app import App
from ._http import Response
from ._knobs import Faults, Settings, knobs_dict
from ._ledger import Ledger
from ._platform import Platform
from ._state import Job
from ._storage import Storage

if TYPE_CHECKING:
    import httpx

__all__ = ["Emulator", "shared_emulator"]


class Emulator:
    """An emulated fal queue: FIFO under a concurrency limit, synthetic pictures, a billing ledger.

    ``latency``: seconds per generation (``model_latency`` overrides it per model id);
    ``concurrency``: running requests at once (fal's new accounts: 2); ``faults``: injected failures;
    ``api_keys``: accepted keys (None accepts any ``Authorization: Key <k>``); ``seed``: makes request ids
    and the seeds picked for requests that send none reproducible (None, the default: fresh in every process,
    as fal draws a random seed per request); ``retention``/``large_retention``: seconds a result
    stays fetchable (fal: 3600, and 360 at ``large_result_bytes`` = 10 KB or more);
    ``bill_validation_errors``: whether 422s are billed; ``clock``: a monotonic clock (tests).
    """

    def __init__(self, *, latency: float = 0.05, concurrency: int = 2,
                 model_latency: Mapping[str, float] | None = None, faults: Faults | None = None,
                 api_keys: set[str] | frozenset[str] | list[str] | None = None, seed: int | None = None,
                 retention: float = 3600.0, large_retention: float = 360.0, large_result_bytes: int = 10_240,
                 bill_validation_errors: bool = False, clock: Callable[[], float] | None = None,
                 catalog: Catalog | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        keys = frozenset(api_keys) if api_keys is not None else None
        settings = Settings(latency=latency, model_latency=dict(model_latency or {}), concurrency=concurrency,
                            retention=retention, large_retention=large_retention,
                            large_result_bytes=large_result_bytes,
                            bill_validation_errors=bill_validation_errors, api_keys=keys, seed=seed)
        self._app = App(settings, faults or Faults(), catalog, clock)

    # -- knobs --------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The service knobs (change them with :meth:`configure`)."""
        return self._app.settings

    @property
    def faults(self) -> Faults:
        """The fault knobs (change them with :meth:`configure`)."""
        return self._app.faults

    def configure(self, **knobs: Any) -> None:
        """Change knobs by name, e.g. ``configure(latency=1, concurrency=1, drop_status_rate=0.5)``.

        Fault knobs may be given flat or as ``faults={...}``; an unknown name raises ``ValueError``.
        Requests already started keep their schedule.
        """
        self._app.configure(knobs)

    @property
    def latency(self) -> float:
        """Seconds per generation (assigning it is ``configure(latency=...)``)."""
        return self.settings.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.configure(latency=float(seconds))

    @property
    def concurrency(self) -> int:
        """Requests running at once (assigning it is ``configure(concurrency=...)``)."""
        return self.settings.concurrency

    @concurrency.setter
    def concurrency(self, limit: int) -> None:
        self.configure(concurrency=int(limit))

    def knobs(self) -> dict[str, Any]:
        """Every knob's current value (what ``GET /_emulator/config`` answers)."""
        return knobs_dict(self.settings, self.faults)

    def reset(self) -> None:
        """Forget every request, file and ledger entry; re-seed the RNGs (a seeded emulator starts its
        sequences again); keep the knobs."""
        self._app.reset()

    # -- state --------------------------------------------------------------------------

    @property
    def storage(self) -> Storage:
        """The emulated storage: uploaded files, upload counts, :meth:`Storage.fail_next` for faults."""
        return self._app.storage

    @property
    def platform(self) -> Platform:
        """fal's platform API as emulated (model list, schemas, prices); ``.faults`` are its knobs."""
        return self._app.platform

    @property
    def ledger(self) -> Ledger:
        """What fal would have billed, and how many submits it accepted."""
        return self._app.ledger

    def requests(self) -> list[Job]:
        """The requests the emulator still holds (oldest first), brought up to the clock."""
        return self._app.queue.jobs()

    def status_of(self, request_id: str) -> str | None:
        """``IN_QUEUE``, ``IN_PROGRESS``, ``COMPLETED``, or None once unknown or expired."""
        snap = self._app.queue.get(request_id)
        return snap.phase if snap is not None else None

    # -- access -------------------------------------------------------------------------

    def handle(self, method: str, url: str, headers: Mapping[str, str] | None = None,
               body: bytes = b"") -> Response:
        """Answer one HTTP request; never blocks (``Response.delay`` says how long to hold the answer)."""
        stored = self._app.storage.route(method, url, headers, body)  # fal's storage, beside its queue
        return stored if stored is not None else self._app.handle(method, url, headers, body)

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx async transport that routes every host's requests into this emulator, no socket."""
        from ._transport import AsyncEmulatorTransport

        return AsyncEmulatorTransport(self)

    def sync_transport(self) -> httpx.BaseTransport:
        """The synchronous twin of :meth:`transport`."""
        from ._transport import EmulatorTransport

        return EmulatorTransport(self)

    def __repr__(self) -> str:
        s = self.settings
        return f"Emulator(latency={s.latency}, concurrency={s.concurrency}, {self.ledger!r})"


_SHARED: Emulator | None = None
_SHARED_LOCK = threading.Lock()


def shared_emulator() -> Emulator:
    """The process-wide emulator used by offline falnb clients (latency 0.05 s, concurrency 2).

    Its random seeds are fresh in every process, like fal's, unless ``FALNB_EMULATOR_SEED`` is set (a whole
    number): then they are the same in every run, for saved notebooks and CI runs whose pictures should not
    change from one run to the next."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Emulator(seed=_seed_from_env())
        return _SHARED


def _seed_from_env() -> int | None:
    text = os.environ.get("FALNB_EMULATOR_SEED", "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"FALNB_EMULATOR_SEED={text!r} is not a whole number",
                          hint="Unset it for fresh seeds in every run, or set e.g. FALNB_EMULATOR_SEED=0.") from None
