"""A team's LiteLLM proxy: configuration rules, and the proxy's answers as falnb errors (no proxy needed).

The answer bodies are LiteLLM 1.108.7's, verbatim from /work/notes/litellm-proxy-spike.md (sections 4.4,
4.5, 6) and its source (the budget refusal: ``proxy/auth/auth_exception_handler.py``, status 422 by
default in that version); the real proxy answers the reachable ones in tests/test_litellm_proxy*.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from falnb import AuthenticationError, BudgetExceededError, Client, ConfigError, FalValidationError
from falnb.fal._errors import error_from_response
from falnb.fal._images_route import _error
from falnb.fal._proxy import NO_FAL_KEY, NO_PRICE, find_proxy, refused_before_fal

PROXY = "http://proxy.example:4000"


def answer(status: int, body: Any, path: str = "/fal_ai/fal-ai/flux-pro/v1.1-ultra",
           headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", PROXY + path)
    if isinstance(body, str):
        return httpx.Response(status, text=body, request=request, headers=headers)
    return httpx.Response(status, json=body, request=request, headers=headers)


def test_the_proxy_is_used_when_no_fal_key_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_proxy() is None
    monkeypatch.setenv("LITELLM_PROXY_API_BASE", PROXY + "/")
    monkeypatch.setenv("LITELLM_PROXY_API_KEY", "sk-team-secret")
    proxy = find_proxy()
    assert proxy is not None and proxy.url == PROXY and proxy.queue_url == PROXY + "/fal_ai"
    assert proxy.route == "auto" and proxy.url_source == "LITELLM_PROXY_API_BASE"
    key = proxy.key()
    assert key.header() == "Bearer sk-team-secret" and key.source == "LITELLM_PROXY_API_KEY"
    for shown in (repr(key), str(key), repr(proxy), proxy.describe()):
        assert "sk-team-secret" not in shown
    assert find_proxy(fal_key="fal-key") is None  # a fal key: fal directly
    explicit = find_proxy(PROXY + "/fal_ai", "sk-x", "images", fal_key="fal-key")  # proxy_url= always wins
    assert explicit is not None and explicit.url == PROXY and explicit.route == "images"
    assert explicit.key().source == "proxy_key="
    client = Client(cache=False)
    assert client.proxy is not None and client.queue_url == PROXY + "/fal_ai" and "proxy" in repr(client)
    monkeypatch.setenv("FAL_KEY", "fal-key")
    assert Client(cache=False).proxy is None


def test_proxy_configuration_mistakes(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="must be http"):
        find_proxy("localhost:4000")
    with pytest.raises(ConfigError, match="route"):
        find_proxy(PROXY, route="sideways")
    proxy = find_proxy(PROXY)
    assert proxy is not None
    with pytest.raises(ConfigError) as err:
        proxy.key()
    assert "LITELLM_PROXY_API_KEY" in str(err.value)


def test_a_wrong_key_names_the_proxy_and_its_variable() -> None:
    no_db = answer(400, {"error": {"message": "No connected db.", "type": "no_db_connection", "param": None,
                                   "code": "400"}})
    malformed = answer(401, {"error": {"message": "Authentication Error, Malformed API Key passed in. Ensure Key "
                                                  "has `Bearer ` prefix.", "type": "auth_error", "param": "None",
                                       "code": "401"}})
    for resp in (no_db, malformed):
        err = error_from_response(resp, model="fal-ai/flux-pro/v1.1-ultra", during="submit")
        assert isinstance(err, AuthenticationError), err
        assert PROXY in str(err) and "LITELLM_PROXY_API_KEY" in str(err) and "fal.ai/dashboard" not in str(err)
        assert len(str(err).splitlines()) == 2


def test_the_proxy_gates_are_not_fal_and_say_what_to_do() -> None:
    priced = answer(400, {"detail": "fal_ai/fal-ai/x/y has no pricing entry for this request; only priced Fal "
                                    "requests can be submitted through /fal_ai"})
    err = error_from_response(priced, model="fal-ai/x/y", during="submit")
    assert isinstance(err, FalValidationError) and err.error_type == NO_PRICE and refused_before_fal(err)
    assert "proxy_route='images'" in str(err) and "Nothing was sent to fal" in str(err)
    no_key = answer(401, {"detail": "FAL_AI_API_KEY is not set and no fal_ai pass-through deployment credentials "
                                    "are configured"})
    err = error_from_response(no_key, model="fal-ai/x/y", during="submit")
    assert isinstance(err, AuthenticationError) and err.error_type == NO_FAL_KEY and refused_before_fal(err)


def test_a_proxy_budget_refusal_is_a_budget_error() -> None:
    spent = answer(422, {"error": {"message": "Budget has been exceeded! Current cost: 1.25, Max budget: 1.0",
                                   "type": "budget_exceeded", "param": None, "code": "422"}})
    err = error_from_response(spent, model="fal-ai/flux-pro/v1.1-ultra", during="submit")
    assert isinstance(err, BudgetExceededError) and "Max budget: 1.0" in str(err) and PROXY in str(err)
    assert not refused_before_fal(err)


def test_fal_answers_relayed_by_the_proxy_stay_fal_answers() -> None:
    relayed = answer(422, {"detail": [{"loc": ["body", "aspect_ratio"], "msg": "Input should be '21:9'",
                                       "type": "literal_error"}]},
                     headers={"x-litellm-model-api-base": "https://queue.fal.run/fal-ai/flux-pro/v1.1-ultra"})
    err = error_from_response(relayed, model="fal-ai/flux-pro/v1.1-ultra", during="result")
    assert isinstance(err, FalValidationError) and err.field == "aspect_ratio" and "proxy" not in str(err)
    refused = answer(401, {"detail": "Invalid key"}, headers={"x-litellm-model-api-base": "https://queue.fal.run"})
    err = error_from_response(refused, model="fal-ai/flux-pro/v1.1-ultra")
    assert isinstance(err, AuthenticationError) and "proxy's fal key" in str(err) and "admin" in str(err)


def test_the_images_route_unwraps_fal_422_from_litellm_s_message() -> None:
    msg = ('litellm.BadRequestError: Fal_aiException - {"detail": [{"loc": ["body", "aspect_ratio"], "msg": '
           '"Input should be \'21:9\'", "type": "literal_error"}]}\n\nLiteLLM: model group \'flux-ultra\' failed '
           'with the error above. No fallback was attempted.')
    resp = answer(422, {"error": {"message": msg, "type": "invalid_request_error", "param": None, "code": "422"}},
                  path="/v1/images/generations")
    err = _error(resp, model="fal-ai/flux-pro/v1.1-ultra", team="flux-ultra", team_names=["flux-ultra"])
    assert isinstance(err, FalValidationError) and err.field == "aspect_ratio" and "21:9" in str(err)


def test_litellm_proxy_route_without_a_proxy_url_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """LiteLLM's ``litellm_proxy/<team model>`` needs the proxy's URL: a short ConfigError, before any client."""
    from collections import OrderedDict

    import falnb
    from falnb import _litellm

    monkeypatch.setattr(_litellm, "_CLIENTS", OrderedDict())
    with pytest.raises(ConfigError, match="LITELLM_PROXY_API_BASE"):
        falnb.image_generation(model="litellm_proxy/flux-ultra", prompt="a red fox")
    assert not _litellm._CLIENTS
