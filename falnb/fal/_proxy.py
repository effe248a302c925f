"""A team's LiteLLM proxy as falnb's way to fal: where it is, its key, its routes, its errors.

A team puts its fal key in the proxy's ``config.yaml``; members get the proxy's URL and a proxy key, in
the names LiteLLM's SDK reads (``LITELLM_PROXY_API_BASE``, ``LITELLM_PROXY_API_KEY``).  Two routes reach
fal through it (observed with litellm[proxy] 1.108.7, /work/notes/litellm-proxy-spike.md sections 3-4):

* ``passthrough``: ``{proxy}/fal_ai/{fal id}`` forwards fal's queue API verbatim (submit, status and its
  stream, result, cancel) with the proxy's fal key swapped in.  falnb's queue client runs on it unchanged:
  its base URL is ``{proxy}/fal_ai``, the key goes as ``Authorization: Bearer`` (LiteLLM refuses fal's
  ``Key`` scheme), and fal's absolute URLs in answers (which point at fal's host, not the proxy) are
  ignored in favour of fal's URL rule under the base (the queue client keeps the key on its own origin).
  Only models with a price in LiteLLM's map are let through ("no pricing entry").
* ``images``: ``POST {proxy}/v1/images/generations`` with a team model name (:mod:`._images_route`):
  synchronous, no request id, no cancel, no re-attach.

``auto`` (the default) takes the pass-through and falls back to the images route when the proxy refuses
the pass-through before sending anything to fal (no price for the model, or no fal key for the route).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from .._exceptions import (
    AuthenticationError,
    BudgetExceededError,
    ConfigError,
    FalError,
    FalServerError,
    FalValidationError,
    MissingKeyError,
    RateLimitError,
)
from .._redact import hide_credentials
from ._config import Key, find_key

__all__ = ["PROXY_KEY_ENV", "PROXY_URL_ENV", "Proxy", "ProxyRoute", "find_proxy", "is_proxied", "proxy_error",
           "refused_before_fal"]

PROXY_URL_ENV = "LITELLM_PROXY_API_BASE"
PROXY_KEY_ENV = "LITELLM_PROXY_API_KEY"
ProxyRoute = Literal["auto", "passthrough", "images"]
_ROUTES = ("auto", "passthrough", "images")
#: the pass-through's path under the proxy (LiteLLM's ``/fal_ai/{endpoint:path}``)
PASSTHROUGH = "/fal_ai"
#: error types falnb gives the proxy's own refusals of the pass-through (nothing reached fal)
NO_PRICE, NO_FAL_KEY = "proxy_no_pricing_entry", "proxy_no_fal_key"

_KEY_HINT = (f"Set {PROXY_KEY_ENV} (in a notebook: %env {PROXY_KEY_ENV}=sk-...) or Client(proxy_key=...) to "
             "the key your team gave you for the proxy (not a fal key).")


@dataclass(frozen=True)
class Proxy:
    """A LiteLLM proxy: its base URL, where its URL and key came from, and the route falnb takes."""

    url: str
    url_source: str
    route: ProxyRoute = "auto"
    _key: str | None = None
    key_source: str | None = None

    @property
    def queue_url(self) -> str:
        """The base falnb's queue client uses: fal's queue API lives under it."""
        return self.url + PASSTHROUGH

    def key(self) -> Key:
        """The proxy key as LiteLLM wants it (``Bearer``); ConfigError naming the variable when none."""
        if not self._key:
            raise ConfigError(f"no key for the LiteLLM proxy at {self.url}.", hint=_KEY_HINT)
        return Key(self._key, self.key_source or PROXY_KEY_ENV, scheme="Bearer")

    def describe(self) -> str:
        """What ``%falconfig`` says: the proxy, the route, where URL and key came from (never the key)."""
        key = f"key from {self.key_source} (hidden)" if self._key else f"no key ({PROXY_KEY_ENV} is not set)"
        return (f"LiteLLM proxy {hide_credentials(self.url)} (from {self.url_source}), route {self.route} "
                f"({_ROUTE_TEXT[self.route]}); {key}")

    def __repr__(self) -> str:
        return f"Proxy({hide_credentials(self.url)!r}, route={self.route!r}, key_source={self.key_source!r})"


_ROUTE_TEXT = {
    "auto": "fal's queue through /fal_ai, the OpenAI images route where the proxy refuses it",
    "passthrough": "fal's queue through /fal_ai",
    "images": "the OpenAI images route: no cancel, no re-attach",
}


def find_proxy(url: str | None = None, key: str | None = None, route: str | None = None, *,
               fal_key: str | None = None) -> Proxy | None:
    """The proxy to go through, or None for fal directly (read now: ``%env`` takes effect at the next call).

    ``url=`` (``Client(proxy_url=...)``) always wins; ``LITELLM_PROXY_API_BASE`` is used only when no fal
    key is given (``fal_key``, the client's ``key=``, or fal's variables): a fal key means fal directly."""
    env = os.environ
    if url is not None and str(url).strip():
        given, source = str(url), "proxy_url="
    elif env.get(PROXY_URL_ENV, "").strip() and not _has_fal_key(fal_key):
        given, source = env[PROXY_URL_ENV], PROXY_URL_ENV
    else:
        return None
    base = given.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"LiteLLM proxy URL {base!r} (from {source}) must be http(s)://host[:port]",
                          hint=f"e.g. {PROXY_URL_ENV}=http://localhost:4000")
    if base.endswith(PASSTHROUGH):  # a URL copied from LiteLLM's fal page: the proxy is its parent
        base = base[: -len(PASSTHROUGH)]
    chosen = (route or env.get("FALNB_PROXY_ROUTE") or "auto").strip().lower()
    if chosen not in _ROUTES:
        raise ConfigError(f"proxy route {chosen!r} is not one of {', '.join(_ROUTES)}")
    if key is not None and str(key).strip():
        secret, key_source = str(key).strip(), "proxy_key="
    elif env.get(PROXY_KEY_ENV, "").strip():
        secret, key_source = env[PROXY_KEY_ENV].strip(), PROXY_KEY_ENV
    else:
        secret, key_source = None, None
    return Proxy(base, source, chosen, secret, key_source)  # type: ignore[arg-type]


def _has_fal_key(explicit: str | None) -> bool:
    try:
        find_key(explicit)
    except MissingKeyError:
        return False
    return True


# -- the proxy's answers ------------------------------------------------------------------------


def is_proxied(resp: httpx.Response) -> bool:
    """An answer to a request sent through a proxy's ``/fal_ai`` pass-through (fal's paths never hold it)."""
    try:
        path = resp.request.url.path
    except RuntimeError:  # a response built without a request
        return False
    return f"{PASSTHROUGH}/" in path


def proxy_base(resp: httpx.Response) -> str:
    url = resp.request.url
    path = url.path
    cuts = [i for i in (path.find(f"{PASSTHROUGH}/"), path.find("/v1/"), path.find("/model/")) if i >= 0]
    root = path[:min(cuts)] if cuts else path
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{root}".rstrip("/")


def _body(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _short(value: Any, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def refused_before_fal(err: BaseException) -> bool:
    """The proxy refused the pass-through before sending anything to fal (no price, no fal key):
    the images route may be tried instead, and nothing was billed."""
    return isinstance(err, FalError) and err.error_type in (NO_PRICE, NO_FAL_KEY)


def proxy_error(resp: httpx.Response, *, model: str, request_id: str | None = None,
                during: str = "request") -> FalError | BudgetExceededError | None:
    """The proxy's own refusal as a falnb error naming the proxy, or None when the answer is fal's,
    relayed verbatim (then fal's own error mapping applies)."""
    code, body, where = resp.status_code, _body(resp), proxy_base(resp)
    kwargs: dict[str, Any] = dict(model=model, status_code=code, request_id=request_id)
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str) and "no pricing entry" in detail:
        return FalValidationError(
            f"the LiteLLM proxy at {where} does not pass {model} through to fal: LiteLLM has no price for it "
            "(only priced fal models go through its /fal_ai route). Nothing was sent to fal.",
            hint="Use the proxy's OpenAI images route for it: Client(proxy_route='images') or "
                 "%config FalMagics.proxy_route = 'images' (with a team model for it in the proxy's config; "
                 "that route has no cancel and no re-attach); proxy_route='auto' does this by itself.",
            error_type=NO_PRICE, detail=detail, **kwargs)
    if isinstance(detail, str) and "FAL_AI_API_KEY is not set" in detail:
        return AuthenticationError(
            f"the LiteLLM proxy at {where} has no fal key for its /fal_ai pass-through ({code}). "
            "Nothing was sent to fal.",
            hint="Ask the proxy's admin to set FAL_AI_API_KEY (or use_in_pass_through on a fal deployment), or "
                 "use its OpenAI images route: Client(proxy_route='images').",
            error_type=NO_FAL_KEY, detail=detail, **kwargs)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        if code == 500 and not isinstance(body, (dict, list)) and "x-litellm-model-api-base" not in resp.headers:
            # LiteLLM's auth handler crashes on a malformed key without prisma (a bare text 500)
            return FalServerError(f"the LiteLLM proxy at {where} failed the {during} for {model} ({code}): "
                                  f"{_short(resp.text or resp.reason_phrase)}",
                                  hint=f"Check {PROXY_KEY_ENV}; the proxy's log says more.", **kwargs)
        if code in (401, 403):
            return AuthenticationError(f"fal refused the fal key of the LiteLLM proxy at {where} ({code}) for "
                                       f"{model}: {_short(detail or resp.text)}",
                                       hint="The proxy's fal key is wrong or has no credit: ask its admin.",
                                       **kwargs)
        return None  # fal's own answer, relayed
    msg = _short(error.get("message") or error)
    etype = str(error.get("type") or "")
    kwargs["error_type"] = etype or None
    kwargs["detail"] = error
    if code in (401, 403) or etype in ("auth_error", "no_db_connection") or "Authentication Error" in msg:
        why = ("it is not the proxy's master key, and the proxy has no database to check other keys"
               if etype == "no_db_connection" else msg)
        return AuthenticationError(f"the LiteLLM proxy at {where} refused the key ({code}): {why}. Nothing was "
                                   "sent to fal.", hint=_KEY_HINT, **kwargs)
    if "budget" in etype.lower() or "budget" in msg.lower():
        return BudgetExceededError(f"the LiteLLM proxy at {where} refused {model}: {msg}. Nothing was sent "
                                   "to fal.", model=model,
                                   hint="The proxy's budget for your key or team is spent: ask its admin.")
    if code == 429:
        return RateLimitError(f"the LiteLLM proxy at {where} is rate limiting {during}s for {model} (429): {msg}",
                              **kwargs)
    if code >= 500:
        return FalServerError(f"the LiteLLM proxy at {where} failed the {during} for {model} ({code}): {msg}",
                              **kwargs)
    return FalValidationError(f"the LiteLLM proxy at {where} refused the {during} for {model} ({code}): {msg}",
                              **kwargs)
