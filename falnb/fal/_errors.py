"""fal's HTTP error answers turned into falnb exceptions that name the model, the field and fal's message."""

from __future__ import annotations

import json
from typing import Any

import httpx

from .._exceptions import (
    AuthenticationError,
    BudgetExceededError,
    ContentPolicyError,
    FalError,
    FalServerError,
    FalValidationError,
    RateLimitError,
    RequestNotFoundError,
)
from ._proxy import is_proxied, proxy_error

__all__ = ["error_from_response", "is_ingress_error", "is_own_deadline", "is_unknown_gateway_error"]

_MAX_MESSAGE = 300
#: on a 504 whose cause is the request's own ``X-Fal-Request-Timeout`` (fal-client: never retried)
_TIMEOUT_TYPE = "x-fal-request-timeout-type"


def is_own_deadline(resp: httpx.Response) -> bool:
    """A 504 for the request's own ``X-Fal-Request-Timeout``: final, never asked again (fal-client's
    ``_should_retry_response``, fal-js's ``ApiError.isUserTimeout``)."""
    return resp.status_code == 504 and _TIMEOUT_TYPE in resp.headers


def is_ingress_error(resp: httpx.Response) -> bool:
    """A gateway error from fal's ingress (nginx) that never reached the app: safe to retry a submit.

    fal-client's own test, word for word (``_is_ingress_error`` and ``_should_retry_response`` in
    fal-ai/fal projects/fal_client/src/fal_client/client.py): a 502/503/504 without ``x-fal-request-id``
    whose body names nginx, and never a 504 that carries ``X-Fal-Request-Timeout-Type`` (the request's
    own deadline passed: final).  Any other page (a proxy's or load balancer's "Bad Gateway" in plain
    text) may have come after the submit was passed on to fal: it is not a reason to send it again."""
    if resp.status_code not in (502, 503, 504) or "x-fal-request-id" in resp.headers or is_own_deadline(resp):
        return False
    return "nginx" in resp.text[:2000].lower()


def is_unknown_gateway_error(resp: httpx.Response) -> bool:
    """A 502/503/504 that neither fal (no ``x-fal-request-id``, ``X-Fal-Error-Type`` or timeout type) nor fal's
    ingress gave: a gateway between falnb and fal, which may have passed the submit on before it failed."""
    h = resp.headers
    return resp.status_code in (502, 503, 504) and not is_ingress_error(resp) and not any(
        name in h for name in ("x-fal-request-id", "x-fal-error-type", _TIMEOUT_TYPE))


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _parse_detail(resp: httpx.Response) -> tuple[str, str | None, str | None, Any]:
    """(message, field, error type, raw detail) from fal's two error shapes."""
    try:
        body = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _short(resp.text or resp.reason_phrase), None, None, None
    if not isinstance(body, dict):
        return _short(str(body)), None, None, body
    detail = body.get("detail", body.get("error", body))
    error_type = body.get("error_type") or resp.headers.get("x-fal-error-type")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        loc = [str(x) for x in first.get("loc", []) if x not in ("body", "query")]
        field = ".".join(loc) or None
        more = f" (+{len(detail) - 1} more)" if len(detail) > 1 else ""
        return _short(str(first.get("msg", first))) + more, field, first.get("type") or error_type, detail
    return _short(str(detail)), None, error_type, detail


def error_from_response(resp: httpx.Response, *, model: str, request_id: str | None = None,
                        during: str = "request") -> FalError | BudgetExceededError:
    if is_proxied(resp):  # a LiteLLM proxy's own refusal names the proxy; fal's, relayed, stays fal's
        own = proxy_error(resp, model=model, request_id=request_id, during=during)
        if own is not None:
            return own
    msg, field, etype, detail = _parse_detail(resp)
    code = resp.status_code
    where = f" ({field})" if field else ""
    kwargs: dict[str, Any] = dict(model=model, status_code=code, field=field, error_type=etype,
                                  request_id=request_id or resp.headers.get("x-fal-request-id"), detail=detail)
    if code in (401, 403):
        return AuthenticationError(f"fal refused the key ({code}) for {model}: {msg}",
                                   hint="Check FAL_KEY; keys are at https://fal.ai/dashboard/keys.", **kwargs)
    if code == 404:
        return RequestNotFoundError(f"fal has no {during} for {model} ({code}): {msg}", **kwargs)
    if code == 422 and (etype == "content_policy_violation" or "content_policy" in str(detail)):
        return ContentPolicyError(f"{model} refused the request on content policy{where}: {msg}", **kwargs)
    if code in (400, 422):
        return FalValidationError(f"{model} refused the input{where}: {msg}", **kwargs)
    if code == 429:
        return RateLimitError(f"fal is rate limiting {during}s for {model} (429): {msg}", **kwargs)
    if code >= 500:
        kind = "fal's gateway" if is_ingress_error(resp) else "fal"
        return FalServerError(f"{kind} failed the {during} for {model} ({code}"
                              f"{', ' + etype if etype else ''}): {msg}",
                              hint="fal does not bill server errors.", **kwargs)
    return FalError(f"fal answered {code} to the {during} for {model}: {msg}", **kwargs)
