"""The Client's wiring of fal's platform API into the catalog (which never imports the fal layer): the
schema store and the unit prices, under the cache directory (``schemas/<namespace>/``), asked through
fal's platform API, or the emulator's when offline.  A transport of the caller's own (a test's stand-in for
fal, a proxy) is where fal is: falnb does not ask fal's platform API around it, and describes other
endpoints as before (passed through)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ._exceptions import ConfigError, MissingKeyError
from .catalog._catalog import Catalog
from .catalog._image_models import DEFAULT_EDIT_MODEL
from .catalog._prices import PriceStore, billed_usd
from .catalog._store import SchemaStore
from .fal._config import Key
from .fal._platform import PlatformAPI, platform_url
from .results import _generation
from .results._generation import Generation

if TYPE_CHECKING:
    import httpx

__all__ = ["Wired", "Wirings", "wire"]


class Wired(NamedTuple):
    """What one configuration (online or offline, a queue URL) of a Client asks fal's platform API through."""

    platform: PlatformAPI
    prices: PriceStore
    #: the Client's catalog describing other endpoints from fal's schemas
    catalog: Catalog
    #: the engines' ``bill``: a result's ``x-fal-billable-units`` priced
    bill: Callable[[str, Any], float | None]


class Wirings:
    """A Client's wiring of each configuration it is used with, made on first use (as its engines are)."""

    def __init__(self, catalog: Catalog, transport: Any, cache: Any) -> None:
        self._catalog, self._transport, self._cache = catalog, transport, cache
        self._made: dict[tuple[bool, str], Wired] = {}
        self._lock = threading.Lock()

    def get(self, offline: bool, queue_url: str, key: Callable[[], Key], emulator: Any) -> Wired:
        with self._lock:
            if (offline, queue_url) not in self._made:
                self._made[(offline, queue_url)] = wire(self._catalog, offline, queue_url, key, self._transport,
                                                        emulator, self._cache)
            return self._made[(offline, queue_url)]


def wire(catalog: Catalog, offline: bool, queue_url: str, key: Callable[[], Key], transport: Any, emulator: Any,
         cache: Any) -> Wired:
    """fal's platform API (the emulator's when ``offline``), its unit prices and schemas, for one configuration:
    a Client wires each one it is used with (``FALNB_OFFLINE`` and ``FALNB_QUEUE_URL`` are read at each call)."""

    def key_or_none() -> Key | None:
        try:
            return key()
        except MissingKeyError:
            return None  # fal's model list and schemas need no key

    sync = _sync_twin(transport, emulator if offline else None)
    platform = PlatformAPI(platform_url(queue_url), key=key_or_none, transport=sync)
    asks = transport is None or sync is not None
    folder = _schema_dir(cache, "emulator" if offline else "fal")
    prices = PriceStore(folder, platform.unit_price if asks else None)
    return Wired(platform, prices, catalog.using(SchemaStore(folder, platform.openapi if asks else None), prices),
                 lambda model, units: billed_usd(units, prices.get(model)))


def _schema_dir(arg: Any, namespace: str) -> Path | None:
    if arg is False:
        return None  # no cache directory: schemas are kept in memory
    from .cache._store import ResponseCache, default_directory

    root = arg.directory if isinstance(arg, ResponseCache) else default_directory() if arg is True else Path(str(arg))
    return Path(root) / "schemas" / namespace


def _sync_twin(transport: Any, emulator: Any) -> httpx.BaseTransport | None:
    """A synchronous transport to where the queue transport goes (the emulator's), for the platform API."""
    target = emulator if emulator is not None else getattr(transport, "emulator", None)
    if target is None:
        return None
    from .emulator._transport import EmulatorTransport

    return EmulatorTransport(target)


def _edit(maker: Any, prompt: str, image: Any, model: str | None, params: dict[str, Any]) -> Generation:
    if maker is None:  # a Generation built by hand: no client made it
        raise ConfigError("this Generation was not made by a falnb.Client: use falnb.edit(prompt, gen)")
    return maker.generate(prompt, model=model or DEFAULT_EDIT_MODEL, image=image, **params)  # type: ignore[no-any-return]


_generation.EDITOR = _edit  # Generation.edit goes back to the Client that made the generation
