"""The Client's wiring of fal's platform API into the catalog (which never imports the fal layer): the
schema store and the unit prices, under the cache directory (``schemas/<namespace>/``), asked through
fal's platform API, or the emulator's when offline.  A transport of the caller's own (a test's stand-in for
fal, a proxy) is where fal is: falnb does not ask fal's platform API around it, and describes other
endpoints as before (passed through)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

__all__ = ["wire"]


def wire(catalog: Catalog, offline: bool, queue_url: str, key: Callable[[], Key], transport: Any, emulator: Any,
         cache: Any, engine_args: dict[str, Any]) -> tuple[PlatformAPI, PriceStore, Catalog]:
    """(fal's platform API, its unit prices, ``catalog`` describing other endpoints from fal's schemas); the
    engines' ``bill`` (a result's ``x-fal-billable-units`` priced) goes into ``engine_args``."""

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
    engine_args["bill"] = lambda model, units: billed_usd(units, prices.get(model))
    return platform, prices, catalog.using(SchemaStore(folder, platform.openapi if asks else None), prices)


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
