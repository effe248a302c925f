"""A LiteLLM proxy's team model names, read from the running proxy (``/model/info``, else ``/v1/models``).

``GET /model/info`` lists every deployment with its ``litellm_params`` (the fal route
``fal_ai/<fal id>``, ``api_base``, and the team's default model inputs such as ``seed: 42``; the fal key
is hidden) and ``model_info`` (``output_cost_per_image``).  falnb hands these entries to the catalog
(which must not import this layer) as LiteLLM ``model_list`` entries, so a team name resolves to its fal
model with the team's defaults applied.  ``/v1/models`` only names the models: used when ``/model/info``
is refused.  A 400 "No connected db." or a 401 here is a bad proxy key (nothing was sent to fal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from .._exceptions import FalServerError, TransportError, UnknownModelError
from ..catalog._catalog import Catalog, ModelSpec
from ._images_route import ProxyRoutes
from ._proxy import Proxy, find_proxy, proxy_error
from ._tls import verify

__all__ = ["TeamBook", "TeamModel", "discover_teams", "fetch_teams", "teams_into_catalog", "unknown_team"]

_FAL_PREFIX = "fal_ai/"


@dataclass(frozen=True)
class TeamModel:
    """One deployment of the proxy: its team name, fal id (None: not a fal model), and what it carries."""

    name: str
    fal_id: str | None
    params: Mapping[str, Any] = field(default_factory=dict)
    price_per_image: float | None = None
    api_base: str | None = None

    def model_list_entry(self) -> dict[str, Any]:
        """The entry as a LiteLLM ``model_list`` item (what the catalog's config loader reads)."""
        return {"model_name": self.name, "litellm_params": {**self.params, "model": _FAL_PREFIX + (self.fal_id or "")}}


async def discover_teams(http: httpx.AsyncClient, proxy: Proxy) -> list[TeamModel]:
    """The proxy's deployments, in its config's order (a team name may have several: the first wins)."""
    headers = {"Accept": "application/json", "User-Agent": "falnb", "Authorization": proxy.key().header()}
    try:
        resp = await http.get(proxy.url + "/model/info", headers=headers)
        if resp.status_code == 404:  # an older proxy: names only
            resp = await http.get(proxy.url + "/v1/models", headers=headers)
    except httpx.TransportError as exc:
        raise TransportError(f"cannot reach the LiteLLM proxy at {proxy.url} ({type(exc).__name__})",
                             hint="Nothing was sent, nothing is billed. Is the proxy running? "
                                  "(LITELLM_PROXY_API_BASE)") from None
    finally:
        del headers
    if resp.status_code != 200:
        err = proxy_error(resp, model="its model list", during="model list")
        raise err or FalServerError(f"the LiteLLM proxy at {proxy.url} answered {resp.status_code} to its model "
                                    "list", status_code=resp.status_code)
    try:
        data = resp.json().get("data")
    except (ValueError, AttributeError):
        data = None
    if not isinstance(data, list):
        raise FalServerError(f"{proxy.url} answered its model list with something else: is it a LiteLLM proxy?",
                             status_code=resp.status_code)
    return [t for t in (_team(item) for item in data if isinstance(item, Mapping)) if t is not None]


def _team(item: Mapping[str, Any]) -> TeamModel | None:
    if "model_name" not in item:  # /v1/models: {"id": name, "object": "model"}
        name = item.get("id")
        return TeamModel(str(name), None) if isinstance(name, str) and name else None
    name, params, info = item.get("model_name"), item.get("litellm_params"), item.get("model_info")
    if not isinstance(name, str) or not name or not isinstance(params, Mapping):
        return None
    route = str(params.get("model", ""))
    fal_id = route[len(_FAL_PREFIX):] if route.startswith(_FAL_PREFIX) else None
    price = info.get("output_cost_per_image") if isinstance(info, Mapping) else None
    base = params.get("api_base")
    defaults = {str(k): v for k, v in params.items() if k not in ("model", "api_base", "api_key") and v is not None}
    return TeamModel(name, fal_id, defaults, float(price) if isinstance(price, (int, float)) else None,
                     str(base) if isinstance(base, str) else None)


def fetch_teams(proxy: Proxy, transport: httpx.AsyncBaseTransport | None, timeout: float = 30.0) -> list[TeamModel]:
    """:func:`discover_teams` from synchronous code (on falnb's private loop)."""
    from ._loop import run_sync

    async def go() -> list[TeamModel]:
        async with httpx.AsyncClient(transport=transport, timeout=timeout, verify=verify(transport)) as http:
            return await discover_teams(http, proxy)

    return run_sync(go())


def teams_into_catalog(teams: Sequence[TeamModel], catalog: Catalog) -> dict[str, str]:
    """Each fal deployment's team name as a catalog alias of its fal id, with the team's default inputs
    (only those the model takes: ``/model/info`` also lists LiteLLM's own settings).  The first deployment
    of a name wins (LiteLLM balances between the rest).  Returns ``{team name: fal id}``."""
    added: dict[str, str] = {}
    for team in teams:
        if team.fal_id is None or team.name in added:
            continue
        try:
            spec = catalog.resolve(team.fal_id)
        except UnknownModelError:
            continue
        takes = set(spec.param_names()) | {"seed"}
        defaults = {k: v for k, v in team.params.items() if k in takes}
        added[team.name] = catalog.add_alias(team.name, team.fal_id, defaults).id
    return added


def unknown_team(name: str, teams: Sequence[TeamModel], proxy: Proxy) -> UnknownModelError:
    """An unknown model name, with a did-you-mean over the proxy's team names."""
    import difflib

    names = [t.name for t in teams]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    return UnknownModelError(
        f"unknown model {name!r}: the LiteLLM proxy at {proxy.url} has no such model."
        + (f" Did you mean {' or '.join(map(repr, close))}?" if close else ""),
        model=name, hint=f"Its models: {', '.join(names) or '(none)'}; or give a full fal id such as "
                         "'fal-ai/flux/schnell'. Nothing was sent.")


class TeamBook:
    """A client's LiteLLM proxy settings and what it learnt of proxies: each proxy's team models (read once)
    and a catalog that knows them (one per proxy: team names never rename models for other clients)."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None, url: str | None, key: str | None,
                 route: str | None, fal_key: str | None) -> None:
        self._transport, self._args, self._fal_key = transport, (url, key, route), fal_key
        self._teams: dict[str, list[TeamModel]] = {}
        self._catalogs: dict[str, Catalog] = {}

    def proxy(self) -> Proxy | None:
        """The proxy in effect now (``proxy_url=``, else ``LITELLM_PROXY_API_BASE`` without a fal key)."""
        return find_proxy(*self._args, fal_key=self._fal_key)

    def teams(self, proxy: Proxy, refresh: bool = False) -> list[TeamModel]:
        """The proxy's deployments, read from it on first use (``refresh``: read again)."""
        if refresh or proxy.url not in self._teams:
            teams = fetch_teams(proxy, self._transport)
            catalog = self._catalogs[proxy.url] = _TeamCatalog(proxy, teams)
            teams_into_catalog(teams, catalog)
            self._teams[proxy.url] = teams
        return self._teams[proxy.url]

    def known(self, proxy: Proxy) -> list[TeamModel]:
        """The deployments read so far (no request)."""
        return self._teams.get(proxy.url, [])

    def catalog(self, proxy: Proxy) -> Catalog:
        """The catalog through ``proxy``: falnb's models and the proxy's team names (an unknown name gets a
        did-you-mean over the team names)."""
        self.teams(proxy)
        return self._catalogs[proxy.url]

    def routes(self, proxy: Proxy | None) -> ProxyRoutes | None:
        """Which requests take the proxy's images route (None without a proxy)."""
        return None if proxy is None else ProxyRoutes(proxy, lambda: self.known(proxy))


class _TeamCatalog(Catalog):
    def __init__(self, proxy: Proxy, teams: Sequence[TeamModel]) -> None:
        super().__init__()
        self._proxy, self._team_list = proxy, teams

    def resolve(self, name: str) -> ModelSpec:
        try:
            return super().resolve(name)
        except UnknownModelError:
            raise unknown_team(str(name), self._team_list, self._proxy) from None
