"""LiteLLM's own calls, answered by falnb: ``import falnb as litellm`` and LiteLLM's fal code keeps working.

:func:`image_generation` and :func:`aimage_generation` take LiteLLM's arguments with LiteLLM's meanings
and run through falnb's client: validation before anything is sent, the size mapping, the pay-once
cache and journal, fal's queue.  They return an :class:`~falnb.ImageResponse` shaped like LiteLLM's.

==========================  ==============================================================================
argument                    meaning here
==========================  ==============================================================================
``prompt``, ``model``       ``model`` as LiteLLM writes it (``"fal_ai/fal-ai/flux-pro/v1.1-ultra"``), a bare
                            fal id or a falnb alias (``"flux-ultra"``)
``n``, ``size``             falnb's mapping: ``n`` always honoured, ``size`` the nearest allowed shape of the
                            same orientation (exact pixels where the model takes them)
``response_format``         ``"url"`` (default) or ``"b64_json"``
``api_key``                 the fal key (default: ``FAL_KEY``, ``FAL_KEY_ID``+``FAL_KEY_SECRET``, ``FAL_AI_API_KEY``)
``api_base``                fal's queue URL; LiteLLM's ``https://fal.run`` means ``https://queue.fal.run``, and a
                            ``falnb emulator``'s ``.../_sync`` its queue
``litellm_proxy/<name>``    LiteLLM's route to a team's proxy (also ``custom_llm_provider="litellm_proxy"``): the
                            team model ``<name>`` through the proxy at ``api_base`` (default
                            ``LITELLM_PROXY_API_BASE``) with ``api_key`` (default ``LITELLM_PROXY_API_KEY``)
``timeout``                 seconds a call waits for fal (default: the client's, 600 s as LiteLLM's)
``style``                   fal's ``style`` (Recraft's); refused by models without one
any other keyword           a fal parameter of the model, checked against falnb's catalog before sending
``quality``                 refused unless None (fal's image models have no quality setting)
``drop_params``             LiteLLM's: ``True`` (or ``litellm.drop_params = True``) drops ``quality`` and a
                            ``style`` the model has none of, instead of refusing them
``user``, ``metadata``...   ignored (LiteLLM's bookkeeping: they change no picture); see :data:`IGNORED`
``client``                  a :class:`falnb.Client` to use (e.g. ``Client(offline=True)``)
``refresh``, ``cache``      falnb's: pay again / skip the cache; LiteLLM's ``cache={"no-cache": True}`` is
                            ``refresh=True`` and ``{"no-store": True}`` is ``cache=False``
==========================  ==============================================================================

Errors are falnb's (every one a :class:`~falnb.FalnbError`, a short message).  Where LiteLLM code
catches LiteLLM's names, :data:`LITELLM_NAMES` says which falnb class to catch instead.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._client import Client, default_client
from ._exceptions import ConfigError, ParameterError
from .fal._config import offline_from_env
from .fal._proxy import PROXY_URL_ENV
from .results._generation import Generation
from .results._image import fal_still_keeps
from .results._image_response import ImageResponse, image_response

__all__ = ["IGNORED", "LITELLM_NAMES", "aimage_edit", "aimage_generation", "image_edit", "image_generation"]

#: LiteLLM keywords that change no picture: accepted and ignored
IGNORED = frozenset({"user", "metadata", "caching", "litellm_call_id", "logger_fn", "num_retries", "max_retries",
                     "drop_params", "api_version", "litellm_logging_obj", "proxy_server_request", "model_info",
                     "litellm_metadata"})
#: LiteLLM keywords falnb cannot honour: refused before anything is sent
_REFUSED = {
    "mock_response": "falnb has no mock responses; run offline on the emulator instead (FALNB_OFFLINE=1 or "
                     "client=falnb.Client(offline=True))",
    "aimg_generation": "call falnb.aimage_generation instead",
}

#: LiteLLM's exception name -> the falnb class raised where LiteLLM raises it
LITELLM_NAMES: dict[str, tuple[str, ...]] = {
    "BadRequestError": ("InputError",),
    "UnsupportedParamsError": ("ParameterError",),
    "UnprocessableEntityError": ("FalValidationError",),
    "ContentPolicyViolationError": ("ContentPolicyError",),
    "AuthenticationError": ("MissingKeyError", "AuthenticationError"),
    "PermissionDeniedError": ("AuthenticationError",),
    "NotFoundError": ("RequestNotFoundError",),
    "RateLimitError": ("RateLimitError",),
    "BudgetExceededError": ("BudgetExceededError",),
    "Timeout": ("RequestTimeoutError",),
    "APIConnectionError": ("TransportError",),
    "InternalServerError": ("FalServerError",),
    "ServiceUnavailableError": ("FalServerError",),
    "BadGatewayError": ("FalServerError",),
    "APIError": ("FalError",),
}

#: LiteLLM's model prefix for a team's LiteLLM proxy (its SDK's ``litellm_proxy`` provider)
_PROXY_PREFIX = "litellm_proxy/"

#: clients made for an api_key / api_base (each holds a connection pool and the cache); the oldest
#: is dropped past this many
_CLIENTS_MAX = 8
_CLIENTS: OrderedDict[tuple[Any, ...], Client] = OrderedDict()
_CLIENTS_LOCK = threading.Lock()
#: the package a LiteLLM user imports as ``litellm`` (where ``litellm.drop_params = True`` lands)
_PACKAGE = __name__.rpartition(".")[0]
#: the wall clock that ages fal's URLs (tests move it)
_clock = time.time


def image_generation(prompt: str, model: str | None = None, *, n: int | None = None, quality: Any = None,
                     response_format: str | None = None, size: Any = None, style: Any = None, user: Any = None,
                     timeout: Any = None, api_key: str | None = None, api_base: str | None = None,
                     custom_llm_provider: str | None = None, **kwargs: Any) -> ImageResponse:
    """LiteLLM's ``image_generation`` for fal, run by falnb (see the module docstring for the arguments).

    >>> import falnb as litellm
    >>> response = litellm.image_generation(model="fal_ai/fal-ai/flux-pro/v1.1-ultra", prompt="a fox")
    >>> response.data[0].url, response._hidden_params["response_cost"], response.generation
    """
    client, call, name = _call(prompt, model, n=n, quality=quality, response_format=response_format, size=size,
                               style=style, timeout=timeout, api_key=api_key, api_base=api_base,
                               custom_llm_provider=custom_llm_provider, kwargs=kwargs)
    return _respond(client, client.generate(prompt, **call), name)


async def aimage_generation(prompt: str, model: str | None = None, *, n: int | None = None, quality: Any = None,
                            response_format: str | None = None, size: Any = None, style: Any = None,
                            user: Any = None, timeout: Any = None, api_key: str | None = None,
                            api_base: str | None = None, custom_llm_provider: str | None = None,
                            **kwargs: Any) -> ImageResponse:
    """The async twin of :func:`image_generation` (LiteLLM's ``aimage_generation``)."""
    client, call, name = _call(prompt, model, n=n, quality=quality, response_format=response_format, size=size,
                               style=style, timeout=timeout, api_key=api_key, api_base=api_base,
                               custom_llm_provider=custom_llm_provider, kwargs=kwargs)
    return _respond(client, await client.agenerate(prompt, **call), name)


def image_edit(image: Any, prompt: str, model: str | None = None, mask: Any = None, *, n: int | None = None,
               quality: Any = None, response_format: str | None = None, size: Any = None, user: Any = None,
               timeout: Any = None, api_key: str | None = None, api_base: str | None = None,
               custom_llm_provider: str | None = None, **kwargs: Any) -> ImageResponse:
    """LiteLLM's ``image_edit`` for fal, run by falnb: ``image`` (one picture or a list: paths, bytes, open files,
    LiteLLM's ``(name, bytes)`` tuples, PIL images, falnb Images, URLs) goes to the model's own picture field
    (``image_url`` or ``image_urls``), uploaded once per content; ``mask`` to its ``mask_url``.  (LiteLLM sends
    every picture as a data URI to ``<model>/edit``, which misses every endpoint whose field or path differs.)

    >>> import falnb as litellm
    >>> response = litellm.image_edit(model="fal_ai/fal-ai/nano-banana/edit", image=open("cat.png", "rb"),
    ...                               prompt="make it a watercolour")
    """
    client, call, name = _call(prompt, model, n=n, quality=quality, response_format=response_format, size=size,
                               style=None, timeout=timeout, api_key=api_key, api_base=api_base,
                               custom_llm_provider=custom_llm_provider, kwargs=kwargs)
    return _respond(client, client.generate(prompt, image=_files(image), mask=_files(mask), **call), name)


async def aimage_edit(image: Any, prompt: str, model: str | None = None, mask: Any = None, *, n: int | None = None,
                      quality: Any = None, response_format: str | None = None, size: Any = None, user: Any = None,
                      timeout: Any = None, api_key: str | None = None, api_base: str | None = None,
                      custom_llm_provider: str | None = None, **kwargs: Any) -> ImageResponse:
    """The async twin of :func:`image_edit` (LiteLLM's ``aimage_edit``)."""
    client, call, name = _call(prompt, model, n=n, quality=quality, response_format=response_format, size=size,
                               style=None, timeout=timeout, api_key=api_key, api_base=api_base,
                               custom_llm_provider=custom_llm_provider, kwargs=kwargs)
    return _respond(client, await client.agenerate(prompt, image=_files(image), mask=_files(mask), **call), name)


def _files(value: Any) -> Any:
    """LiteLLM's file types as pictures: an open file's bytes, a ``(name, content[, type])`` tuple's content."""
    if isinstance(value, list):
        return [_files(v) for v in value]
    if isinstance(value, tuple) and len(value) in (2, 3) and isinstance(value[0], str):
        return _files(value[1])
    if hasattr(value, "read") and not isinstance(value, (str, bytes)):
        return value.read()
    return value


def _call(prompt: str, model: str | None, *, n: int | None, quality: Any, response_format: str | None, size: Any,
          style: Any, timeout: Any, api_key: str | None, api_base: str | None, custom_llm_provider: str | None,
          kwargs: dict[str, Any]) -> tuple[Client, dict[str, Any], str]:
    """The client and the ``Client.generate`` keywords for a LiteLLM call; every mistake raised here."""
    if not isinstance(model, str) or not model.strip():
        raise ParameterError("model is required, e.g. model=\"fal_ai/fal-ai/flux-pro/v1.1-ultra\"", field="model")
    if custom_llm_provider not in (None, "fal_ai", "litellm_proxy"):
        raise ParameterError(f"custom_llm_provider={custom_llm_provider!r}: falnb speaks to fal only ('fal_ai', "
                             "or 'litellm_proxy': fal through a team's LiteLLM proxy)", field="custom_llm_provider")
    # LiteLLM SDK code for a team's proxy names ``litellm_proxy/<team model>``: the name is the proxy's, and
    # api_base / api_key are the proxy's URL and key (not fal's)
    via_proxy = custom_llm_provider == "litellm_proxy" or model.strip().startswith(_PROXY_PREFIX)
    target = model.strip().removeprefix(_PROXY_PREFIX) if via_proxy else model
    # LiteLLM's drop_params (per call, or its module-wide ``litellm.drop_params = True``, here falnb's module
    # attribute: the line LiteLLM's own error tells users to add) drops the OpenAI params a model lacks
    drop = bool(kwargs.get("drop_params", getattr(sys.modules[_PACKAGE], "drop_params", False)))
    if quality is not None and not drop:
        raise ParameterError(f"quality={quality!r} has no meaning on fal: its image models have no quality "
                             "setting", field="quality",
                             hint="Use the model's own parameters (e.g. num_inference_steps, resolution).")
    for name, why in _REFUSED.items():
        if name in kwargs:
            raise ParameterError(f"{name} is not supported: {why}", field=name)
    client = _client_for(kwargs.pop("client", None), api_key, api_base, via_proxy=via_proxy)
    params = {k: v for k, v in kwargs.items() if k not in IGNORED}
    if style is not None:
        spec = client.catalog.resolve(target)
        lacks = spec.known and spec.param("style") is None
        if lacks and not drop:
            raise ParameterError(f"style={style!r}: {spec.id} has no style parameter (OpenAI's vivid/natural "
                                 "has no fal equivalent)", model=spec.id, field="style")
        if not lacks:
            params["style"] = style
    headers = {**(params.pop("headers", None) or {}), **(params.pop("extra_headers", None) or {})}
    if headers:
        params["extra_headers"] = headers
    _cache_controls(params)
    call = {"model": target, "n": 1 if n is None else n, "size": size, "timeout": _seconds(timeout), **params}
    if response_format is not None:
        call["response_format"] = response_format
    return client, call, model


def _respond(client: Client, generation: Generation, model: str) -> ImageResponse:
    # fal's URL while fal keeps the file, counted from when fal made the picture (a cache hit may be older)
    return image_response(generation, fal_urls=fal_still_keeps(generation.made, _clock()), litellm_model=model,
                          api_base=client.queue_url)


def _client_for(client: Any, api_key: str | None, api_base: str | None, *, via_proxy: bool = False) -> Client:
    if client is not None:
        if not isinstance(client, Client):
            raise ParameterError(f"client must be a falnb.Client, not {type(client).__name__}", field="client")
        return client
    if via_proxy:
        return _proxy_client(api_key, api_base)
    if api_key is None and api_base is None:
        return default_client()
    queue = _queue_url(api_base)
    return _memo((api_key, queue, offline_from_env()), lambda: Client(key=api_key, queue_url=queue))


def _memo(memo: tuple[Any, ...], make: Callable[[], Client]) -> Client:
    with _CLIENTS_LOCK:
        found = _CLIENTS.get(memo)
        if found is None:
            found = _CLIENTS[memo] = make()
            if len(_CLIENTS) > _CLIENTS_MAX:
                _CLIENTS.popitem(last=False)
        _CLIENTS.move_to_end(memo)
        return found


def _proxy_client(api_key: str | None, api_base: str | None) -> Client:
    """The client for LiteLLM's ``litellm_proxy/...``: the proxy named even when a fal key is set, as LiteLLM
    does (a fal key otherwise means fal directly); ``proxy_key=None`` reads ``LITELLM_PROXY_API_KEY``."""
    url = (api_base or os.environ.get(PROXY_URL_ENV) or "").strip().rstrip("/")
    if not url:
        raise ConfigError("litellm_proxy/... needs the LiteLLM proxy's URL; nothing was sent",
                          hint=f"Pass api_base=\"http://localhost:4000\" or set {PROXY_URL_ENV}.")
    url = url.removesuffix("/v1")  # LiteLLM's OpenAI-style base (``.../v1``): the proxy is its parent
    return _memo(("litellm_proxy", api_key, url, offline_from_env()),
                 lambda: Client(proxy_url=url, proxy_key=api_key))


def _queue_url(api_base: str | None) -> str | None:
    """fal's queue for a LiteLLM ``api_base``: LiteLLM calls fal's synchronous host (``fal.run``); falnb its
    queue (``queue.fal.run``), for the same models and key.  A ``falnb emulator``'s ``/_sync`` is its queue."""
    if api_base is None:
        return None
    url = str(api_base).strip().rstrip("/")
    if url.endswith("/_sync"):
        url = url[: -len("/_sync")]
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host in ("fal.run", "falrun.com"):
        netloc = parts.netloc.replace(host, "queue." + host, 1)
        url = urlunsplit((parts.scheme, netloc, "", "", ""))
    return url


def _seconds(timeout: Any) -> float | None:
    if timeout is None:
        return None
    value = getattr(timeout, "read", timeout)  # an httpx.Timeout, as LiteLLM also takes: its read bound
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ParameterError(f"timeout must be a number of seconds above 0, not {timeout!r}", field="timeout")
    return float(value)


def _cache_controls(params: dict[str, Any]) -> None:
    """LiteLLM's ``cache={"no-cache": ..., "no-store": ...}`` in falnb's words (``refresh``, ``cache``)."""
    controls = params.get("cache")
    if not isinstance(controls, Mapping):
        return
    unknown = set(controls) - {"no-cache", "no-store", "ttl", "s-maxage", "namespace"}
    if unknown:
        raise ParameterError(f"cache={dict(controls)!r}: unknown control {sorted(unknown)[0]!r}", field="cache")
    params["cache"] = not controls.get("no-store")
    if controls.get("no-cache"):
        params["refresh"] = True
