"""The LiteLLM proxy's OpenAI images route: ``POST {proxy}/v1/images/generations`` with a team model name.

For deployments the pass-through refuses (a model without a LiteLLM price) or proxies without it.  What
LiteLLM 1.108.7 does there (/work/notes/litellm-proxy-spike.md section 3) and what falnb does about it:

* it calls fal's *synchronous* endpoint: no request id, no status, no cancel, no re-attach.  A request
  that left this machine is never sent again (fal runs and bills it even if the answer is lost);
* it maps ``size`` and ``n`` lossily (portrait 900x1200 becomes 16:9 on flux-ultra; ``n`` is dropped for
  Recraft and Bria).  falnb sends neither: the body carries falnb's exact fal fields (``image_size``,
  ``aspect_ratio``, ``num_images``...), which LiteLLM merges into the fal input unchanged, and falnb splits
  ``n`` into requests itself;
* it refuses fal's ``style`` (and OpenAI's ``quality``, ``user``) with a 400 before calling fal, and
  copies ``extra_headers`` (with the fal key) into fal's body: falnb sends none of them;
* its answer keeps only ``data[].url`` (and dimensions for some models): the seed sent is the one kept;
* ``x-litellm-response-cost`` is LiteLLM's estimate of what fal charged: kept beside falnb's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from .._exceptions import (
    FalError,
    FalnbError,
    FalServerError,
    FalValidationError,
    ParameterError,
    SubmitUncertainError,
    TransportError,
    UnknownModelError,
)
from ._proxy import Proxy, proxy_error, refused_before_fal

__all__ = ["IMAGES_PATH", "ImagesAnswer", "ProxyRoutes", "generate_via_images_route"]

IMAGES_PATH = "/v1/images/generations"
#: fal inputs LiteLLM's images route refuses before calling fal (UnsupportedParamsError, a 400)
_REFUSED = ("style", "quality", "user")
#: errors raised before a byte of the request left this machine
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


@dataclass(frozen=True)
class ImagesAnswer:
    """fal's answer rebuilt from the proxy's: ``response`` in fal's shape, LiteLLM's call id and cost."""

    response: dict[str, Any]
    call_id: str | None
    proxy_cost: float | None


async def generate_via_images_route(http: httpx.AsyncClient, proxy: Proxy, team: str, fal_input: Mapping[str, Any],
                                    *, model: str, timeout: float | None, team_names: Sequence[str] = (),
                                    on_sending: Callable[[], None] | None = None) -> ImagesAnswer:
    """One POST, never repeated: the pictures of ``fal_input`` made by ``team`` (a model name of the proxy)."""
    refused = [k for k in _REFUSED if k in fal_input]
    if refused:
        raise ParameterError(f"the LiteLLM proxy's images route refuses {', '.join(map(repr, refused))} for "
                             f"{model}; nothing was sent", model=model, field=refused[0],
                             hint="Leave it out, or use the proxy's /fal_ai route: Client(proxy_route='passthrough').")
    body = json.dumps({"model": team, **fal_input}, ensure_ascii=False, separators=(",", ":")).encode()
    url = proxy.url + IMAGES_PATH
    headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "falnb",
               "Authorization": proxy.key().header()}
    if on_sending is not None:
        on_sending()
    try:
        # synchronous: the answer comes when fal has finished, so the read waits as long as the call may
        resp = await http.post(url, content=body, headers=headers,
                               timeout=httpx.Timeout(http.timeout.connect, read=timeout, write=http.timeout.write,
                                                     pool=http.timeout.pool))
    except _NOT_SENT as exc:
        raise TransportError(f"cannot reach the LiteLLM proxy at {proxy.url} ({type(exc).__name__}) for {model}",
                             model=model, hint="Nothing was sent, nothing is billed. Is the proxy running?") from None
    except httpx.TransportError as exc:
        raise SubmitUncertainError(
            f"the request for {model} was sent to the LiteLLM proxy at {proxy.url} but its answer was lost "
            f"({type(exc).__name__}); fal may run it and bill it", model=model,
            hint="The proxy's images route has no request id, so falnb cannot re-attach, and it does not send "
                 "the request again. Re-run with refresh=True to pay for it anew.") from None
    finally:
        del headers  # the key leaves no local behind for verbose tracebacks
    if resp.status_code != 200:
        raise _error(resp, model=model, team=team, team_names=team_names)
    try:
        data = resp.json()
    except ValueError:
        data = None
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise FalServerError(f"the LiteLLM proxy's answer for {model} is not an images response", model=model,
                             status_code=resp.status_code)
    if not items:
        raise FalError(
            f"the LiteLLM proxy answered {team!r} ({model}) with no pictures: fal ran the request (and billed "
            "it) but the proxy kept nothing of it", model=model, status_code=200, error_type="proxy_empty_answer",
            hint="The deployment's api_base is probably fal's queue host (https://queue.fal.run, or the root of "
                 "`falnb emulator`) instead of the synchronous one (https://fal.run; the emulator's "
                 "--sync-port or /_sync): ask the proxy's admin, or use Client(proxy_route='passthrough').")
    images = [_image(item) for item in items if isinstance(item, Mapping)]
    call_id, cost = resp.headers.get("x-litellm-call-id"), _float(resp.headers.get("x-litellm-response-cost"))
    # what the proxy kept of fal's answer, and what it said of the call (kept with the cache entry)
    response: dict[str, Any] = {"images": images, "litellm_proxy": {
        "route": "images", "team_model": team, "call_id": call_id, "response_cost": cost,
        "seconds": _elapsed(resp)}}
    if "seed" in fal_input:  # the proxy drops fal's seed: the one sent is the one used
        response["seed"] = fal_input["seed"]
    return ImagesAnswer(response, call_id, cost)


def _image(item: Mapping[str, Any]) -> dict[str, Any]:
    extra = item.get("provider_specific_fields")
    out: dict[str, Any] = {"url": item.get("url") or (
        f"data:image/png;base64,{item['b64_json']}" if item.get("b64_json") else "")}
    if isinstance(extra, Mapping):
        out.update({k: extra[k] for k in ("width", "height", "content_type") if extra.get(k) is not None})
    return out


def _elapsed(resp: httpx.Response) -> float | None:
    try:
        return round(resp.elapsed.total_seconds(), 3)
    except RuntimeError:
        return None


def _float(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and value >= 0 and value == value and value != float("inf") else None


def _error(resp: httpx.Response, *, model: str, team: str, team_names: Sequence[str]) -> FalnbError:
    body: Any
    try:
        body = resp.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    if "Invalid model name passed in model=" in message:
        import difflib

        close = difflib.get_close_matches(team, list(team_names), n=3, cutoff=0.5)
        return UnknownModelError(
            f"the LiteLLM proxy has no model {team!r}." + (f" Did you mean {' or '.join(map(repr, close))}?"
                                                            if close else ""),
            model=team, hint=f"Its models: {', '.join(sorted(team_names)) or '(none listed)'}. Nothing was sent.")
    fal = _fal_detail(message)
    if fal is not None and resp.status_code == 422:
        first = fal[0] if isinstance(fal, list) and fal and isinstance(fal[0], dict) else {}
        loc = ".".join(str(x) for x in first.get("loc", []) if x not in ("body", "query")) or None
        return FalValidationError(f"{model} refused the input{f' ({loc})' if loc else ''} (through the LiteLLM "
                                  f"proxy): {first.get('msg', fal)}", model=model, status_code=422, field=loc,
                                  detail=fal, error_type=first.get("type"))
    own = proxy_error(resp, model=model, during="images request")
    if own is not None:
        return own
    return FalServerError(f"the LiteLLM proxy answered {resp.status_code} for {model}: {resp.text[:200]}",
                          model=model, status_code=resp.status_code)


def _fal_detail(message: str) -> Any:
    """fal's JSON ``detail`` inside LiteLLM's message (``Fal_aiException - {...}\\n\\nLiteLLM: ...``)."""
    start = message.find("Fal_aiException - ")
    if start < 0:
        return None
    text = message[start + len("Fal_aiException - "):].split("\n\nLiteLLM:", 1)[0].strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed.get("detail") if isinstance(parsed, dict) else None



class ProxyRoutes:
    """Which route each request takes through a LiteLLM proxy, and the images route's calls.

    ``teams`` gives the proxy's deployments (read by the client): the images route needs a team model
    name for the fal id.  ``auto`` sends a model by the images route from the first time the proxy refused
    it the pass-through before reaching fal (no price, no fal key) on."""

    def __init__(self, proxy: Proxy, teams: Callable[[], Sequence[Any]]) -> None:
        self.proxy = proxy
        self._teams = teams
        self._by_images: set[str] = set()

    def takes_images(self, model: str) -> bool:
        return self.proxy.route == "images" or model in self._by_images

    def fall_back(self, model: str, exc: BaseException) -> bool:
        """After ``exc`` from the pass-through: True when this model now goes by the images route."""
        if self.proxy.route == "auto" and refused_before_fal(exc):
            self._by_images.add(model)
            return True
        return False

    def team_for(self, model: str, typed: str) -> str:
        """The team name to ask for ``model``: the one the user typed if it is the proxy's, else the first
        deployment of that fal id."""
        teams = list(self._teams())
        if any(t.name == typed and t.fal_id == model for t in teams):
            return typed
        for t in teams:
            if t.fal_id == model:
                return str(t.name)
        raise UnknownModelError(
            f"the LiteLLM proxy at {self.proxy.url} has no team model for {model}: its images route needs one",
            model=model, hint=f"Its models: {', '.join(t.name for t in teams) or '(none)'}. Nothing was sent.")

    async def generate(self, http: httpx.AsyncClient, model: str, typed: str, fal_input: Mapping[str, Any], *,
                       timeout: float | None, on_sending: Callable[[], None] | None) -> ImagesAnswer:
        return await generate_via_images_route(
            http, self.proxy, self.team_for(model, typed), fal_input, model=model, timeout=timeout,
            team_names=[t.name for t in self._teams()], on_sending=on_sending)

    #: what a caption says of a Generation made by the images route
    CAPTION = "via the LiteLLM proxy's images route: no cancel, no re-attach"
