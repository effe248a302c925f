"""fal's queue protocol on an ``httpx.AsyncClient``: submit, status, result, cancel, wait.

The retry rules are the point of this module (see the double-charge trap in fal's docs):

* a **submit** is retried only when it certainly did not reach fal: the connection was never
  made (a couple of quick tries: a name that does not resolve will not resolve in the next
  seconds), fal said 429, or fal's gateway answered before the app (nginx's page, as fal-client tells
  it; another gateway's 5xx may have come after fal queued the submit: uncertain).  A submit whose request may
  have been sent but whose answer was lost raises :class:`SubmitUncertainError` and is never sent
  again; one that certainly was not sent raises :class:`TransportError` "nothing was sent"
  (:mod:`._sending` tells the two apart);
* status, result and cancel act on an existing request and are retried with backoff.

The key is read for every request (``key`` may be a callable), so a key changed in the environment
(``%env FAL_KEY=...``) takes effect on the next call.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from .._exceptions import (
    FalServerError,
    RateLimitError,
    RequestTimeoutError,
    SubmitUncertainError,
    TransportError,
)
from ..catalog._prices import BILLABLE_UNITS
from ._config import Key
from ._errors import error_from_response, is_ingress_error, is_own_deadline, is_unknown_gateway_error
from ._loop import within
from ._sending import NOT_SENT, SendTrace, never_sent, resubmit_hints
from ._status import Status, Submitted, app_prefix, status_from
from ._stream import StreamUnavailable, read_stream

__all__ = ["QueueClient", "RetryPolicy", "Status", "Submitted", "app_prefix"]

#: what a submit's POST may raise short of an answer
_SUBMIT_FAILURES: tuple[type[BaseException], ...] = (httpx.TransportError, *NOT_SENT)
#: transport errors on calls that are safe to repeat
_RETRYABLE = (httpx.TransportError,)
#: answers to status, result and cancel that a later try may not get: fal-client's RETRY_CODES (408, 409,
#: 429, in fal-ai/fal projects/fal_client/src/fal_client/client.py) and the 5xx; a 408 or 409 is no answer
#: about the request, and taking it for one would drop a paid result (its journal row is deleted on a 4xx)
_RETRY_CODES = frozenset({408, 409, 429, 500, 502, 503, 504})
#: not-sent errors that a second try cannot cure (the request itself cannot be sent)
_HOPELESS = (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL, UnicodeEncodeError)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 5.0
    #: 429 bursts on submit can last: allow more tries there (nothing was queued)
    submit_attempts: int = 8
    #: tries of a submit whose connection cannot be made (DNS failure, refused): quick, and few
    connect_attempts: int = 3
    connect_delay: float = 0.1

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), 30.0)
            except ValueError:
                pass
        return float(min(self.max_delay, self.base_delay * 2 ** (attempt - 1)) * random.uniform(0.75, 1.25))


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:  # not JSON (a proxy's page), or not UTF-8
        return None


KeySource = Key | Callable[[], Key] | None


class _KeyAuth(httpx.Auth):
    """Puts fal's ``Authorization: Key ...`` on a request as it leaves.

    The secret is then held by no local variable of falnb's frames: verbose tracebacks (IPython's
    ``%xmode Verbose``, pytest's ``--showlocals``, error trackers) print those.  httpx drops the
    header on a redirect to another host.  It also marks a submit's :class:`SendTrace` as handed to
    the transport (nothing is sent before this point)."""

    def __init__(self, key: KeySource) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        key = self._key() if callable(self._key) else self._key
        if key is not None:
            request.headers["Authorization"] = key.header()
        trace = request.extensions.get("trace")
        if isinstance(trace, SendTrace):
            trace.handed = True
        yield request

    def __repr__(self) -> str:
        return "<falnb key auth>"


class QueueClient:
    """One fal queue (``base_url``) reached through one ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, key: KeySource,
                 retry: RetryPolicy | None = None, poll_interval: float = 0.5, use_stream: bool = True,
                 stream_http: httpx.AsyncClient | None = None) -> None:
        self._http = http
        #: status streams hold a connection each while they wait: a pool of their own keeps the
        #: short calls' pool small (httpcore scans every pooled connection on each request)
        self._stream_http = stream_http or http
        self._base = base_url.rstrip("/")
        self._auth = _KeyAuth(key)
        self._retry = retry or RetryPolicy()
        self._poll_max = poll_interval
        self._use_stream = use_stream

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        # no Authorization here: ``_KeyAuth`` adds it as the request leaves (see there)
        h = {"Accept": "application/json", "User-Agent": "falnb"}
        h.update(extra or {})
        return h

    def handle(self, model: str, request_id: str) -> Submitted:
        """URLs for a request known only by id (re-attaching after a restart)."""
        # the id is one path segment, whatever it holds ("../", "?"): it cannot steer us elsewhere
        root = f"{self._base}/{app_prefix(model)}/requests/{quote(request_id, safe='')}"
        return Submitted(model, request_id, f"{root}/status", root, f"{root}/cancel")

    # -- submit: never blindly retried ----------------------------------------------------

    async def submit(self, model: str, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None,
                     on_sending: Callable[[], None] | None = None, trace: SendTrace | None = None) -> Submitted:
        """Submit once (retried only while fal certainly has nothing).  ``trace`` follows the current
        attempt's bytes: whoever stops this call early reads from it whether fal may have the request."""
        url = f"{self._base}/{model}"
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        hdrs = self._headers({"Content-Type": "application/json", **(headers or {})})
        trace = trace if trace is not None else SendTrace()
        unreachable = 0
        for attempt in range(1, self._retry.submit_attempts + 1):
            trace.reset()
            if on_sending is not None:
                on_sending()
            try:
                resp = await self._http.post(url, content=body, headers=hdrs, auth=self._auth,
                                             extensions={"trace": trace})
            except _SUBMIT_FAILURES as exc:
                if not never_sent(exc, trace):
                    raise self._uncertain(model, exc) from None
                unreachable += 1
                if isinstance(exc, _HOPELESS) or unreachable >= self._retry.connect_attempts:
                    raise self._unsent(model, exc) from None
                await asyncio.sleep(self._retry.connect_delay * 3 ** (unreachable - 1))
                continue
            if resp.status_code in (200, 201, 202):
                return self._submitted(model, resp)
            if (resp.status_code == 429 or is_ingress_error(resp)) and attempt < self._retry.submit_attempts:
                # fal queued nothing: a 429, or the gateway failed before the app.  A stopped call never
                # sends the retry (simulation finding S3): the trace is cleared, so a stop during the back-off
                # finds nothing on its way to fal and cancels this call, and a stop that came while this
                # attempt was on its way (and awaits its answer) ends it here
                trace.reset()
                if trace.stopped:
                    raise asyncio.CancelledError
                await asyncio.sleep(self._retry.delay(attempt, resp.headers.get("retry-after")))
                continue
            if is_unknown_gateway_error(resp):
                raise self._uncertain(model, resp)
            raise error_from_response(resp, model=model, during="submit")
        raise RateLimitError(f"fal kept refusing the submit for {model}", model=model)  # pragma: no cover

    def _unsent(self, model: str, exc: BaseException) -> TransportError:
        if isinstance(exc, _HOPELESS):
            return TransportError(f"falnb could not send the submit to {model} ({type(exc).__name__}: "
                                  f"{str(exc)[:120]}); nothing was sent", model=model,
                                  hint="Nothing was sent, nothing is billed.")
        return TransportError(f"cannot reach fal at {self._base} to submit {model} ({type(exc).__name__}); "
                              "nothing was sent", model=model,
                              hint="Nothing was sent, nothing is billed. Check the network connection "
                                   "(and FALNB_QUEUE_URL), then re-run.")

    def _uncertain(self, model: str, exc: BaseException | httpx.Response) -> SubmitUncertainError:
        waited = self._http.timeout.read
        why = (f"no answer within {secs(waited)} s" if isinstance(exc, httpx.TimeoutException) and waited
               else f"a gateway answered {exc.status_code} in fal's place" if isinstance(exc, httpx.Response)
               else type(exc).__name__)
        hint, hints = resubmit_hints("falnb did not send it again. Check https://fal.ai/dashboard/requests, or")
        slow = "" if isinstance(exc, httpx.Response) else " If fal is slow to answer, raise Client(http_timeout=...)."
        return SubmitUncertainError(
            f"the submit to {model} was sent but its answer was lost ({why}); "
            "fal may have queued it and will bill it if it completes", model=model,
            hint=hint + slow, hints={k: v + slow for k, v in hints.items()})

    def _submitted(self, model: str, resp: httpx.Response) -> Submitted:
        try:
            data = resp.json()
            rid = data["request_id"]
        except (ValueError, KeyError, TypeError):
            rid = None
        if not isinstance(rid, str) or not 0 < len(rid) <= 200 or not rid.isprintable():
            raise SubmitUncertainError(
                f"fal answered the submit to {model} ({resp.status_code}) without a usable request id: "
                "fal may have queued it and will bill it if it completes", model=model,
                hint="falnb did not send it again. Check https://fal.ai/dashboard/requests.")
        built = self.handle(model, rid)

        def url(name: str, default: str) -> str:
            # fal's own URL, unless it points away from the queue we talk to: the key goes only there
            given = data.get(name)
            return given if isinstance(given, str) and _same_origin(given, self._base) else default

        return Submitted(model, rid, url("status_url", built.status_url), url("response_url", built.response_url),
                         url("cancel_url", built.cancel_url))

    # -- calls on an existing request: retried -------------------------------------------

    async def _call(self, method: str, url: str, model: str, rid: str, during: str,
                    params: Mapping[str, str] | None = None, ok: tuple[int, ...] = (200, 202),
                    attempts: int | None = None) -> httpx.Response:
        last: Exception | None = None
        tries = attempts or self._retry.attempts
        for attempt in range(1, tries + 1):
            try:
                resp = await self._http.request(method, url, headers=self._headers(), params=params, auth=self._auth)
            except _RETRYABLE as exc:
                last = exc
            else:
                if resp.status_code in ok:
                    return resp
                if not _retryable(resp) or attempt == tries:
                    raise error_from_response(resp, model=model, request_id=rid, during=during)
                last = error_from_response(resp, model=model, request_id=rid, during=during)
                await asyncio.sleep(self._retry.delay(attempt, resp.headers.get("retry-after")))
                continue
            if attempt < tries:
                await asyncio.sleep(self._retry.delay(attempt))
        raise TransportError(f"lost contact with fal during the {during} of request {rid} for {model}: "
                             f"{type(last).__name__}", model=model,
                             hint="The request is still on fal: re-run the same call to re-attach.")

    async def status(self, sub: Submitted, logs: bool = True) -> Status:
        resp = await self._call("GET", sub.status_url, sub.model, sub.request_id, "status",
                                params={"logs": "1"} if logs else None)
        try:
            return status_from(_json(resp))
        except ValueError:
            raise FalServerError(f"fal's status answer for request {sub.request_id} ({sub.model}) is not a status "
                                 f"(HTTP {resp.status_code}, {resp.headers.get('content-type', 'no type')})",
                                 model=sub.model, request_id=sub.request_id, status_code=resp.status_code,
                                 hint="The request is still on fal: re-run the same call to re-attach.") from None

    async def result(self, sub: Submitted, retry: bool = True) -> dict[str, Any]:
        """The model's output.  ``retry=False`` when the status already said it failed: its error
        answer is final, and retrying it would only delay the message."""
        resp = await self._call("GET", sub.response_url, sub.model, sub.request_id, "result", ok=(200,),
                                attempts=None if retry else 1)
        data = _json(resp)
        if not isinstance(data, dict):
            raise FalServerError(f"fal's result for {sub.model} is not a JSON object", model=sub.model,
                                 request_id=sub.request_id, status_code=resp.status_code)
        units = resp.headers.get(BILLABLE_UNITS)
        if units:  # what fal billed, in the endpoint's priced unit: kept with the result (and its cache entry)
            data[BILLABLE_UNITS] = units
        return data

    async def cancel(self, sub: Submitted) -> str:
        """Ask fal to cancel; returns fal's word (``CANCELLATION_REQUESTED``, ``ALREADY_COMPLETED``...)."""
        resp = await self._call("PUT", sub.cancel_url, sub.model, sub.request_id, "cancel",
                                ok=(200, 202, 400, 404))
        data = _json(resp)
        return str(data.get("status", resp.status_code)) if isinstance(data, dict) else str(resp.status_code)

    # -- waiting ---------------------------------------------------------------------------

    async def wait(self, sub: Submitted, on_status: Callable[[Status], None] | None = None,
                   timeout: float | None = None, *, bound: float | None = None) -> Status:
        """Until COMPLETED: the status stream when fal offers it, else polling that starts fast.

        ``timeout`` is what is left of the call's time; ``bound`` the timeout the caller set (the one the
        message names: a user who asked for 1 s reads "1 s", not the 0.95 s that remained)."""
        try:
            return await within(self._wait(sub, on_status), timeout)
        except asyncio.TimeoutError:
            said = timeout if bound is None else bound
            raise RequestTimeoutError(
                f"request {sub.request_id} for {sub.model} did not finish within {secs(said)} s", model=sub.model,
                hint="It may still be running on fal: re-run the same call to re-attach, or raise the timeout."
            ) from None

    async def _wait(self, sub: Submitted, on_status: Callable[[Status], None] | None) -> Status:
        report = on_status or (lambda s: None)
        stream_failures = 0
        delay = 0.01
        while True:
            if self._use_stream and stream_failures < 3:
                try:
                    final = await read_stream(self._stream_http, sub.status_url, self._headers(), self._auth, report)
                except (httpx.TransportError, ValueError, StreamUnavailable):
                    stream_failures += 1
                else:
                    if final is not None:
                        return final
                    stream_failures += 1
            st = await self.status(sub)
            report(st)
            if st.done:
                return st
            await asyncio.sleep(delay)
            delay = min(self._poll_max, delay * 1.6)


def _retryable(resp: httpx.Response) -> bool:
    """Worth asking again: a code of :data:`_RETRY_CODES`, never a 504 for the request's own deadline."""
    return resp.status_code in _RETRY_CODES and not is_own_deadline(resp)


def _same_origin(url: str, base: str) -> bool:
    try:
        a, b = httpx.URL(url), httpx.URL(base)
    except (httpx.InvalidURL, TypeError, ValueError):
        return False
    default = {"http": 80, "https": 443}
    return (a.scheme, a.host, a.port or default.get(a.scheme)) == (b.scheme, b.host, b.port or default.get(b.scheme))


def secs(t: float | None) -> str:
    """Seconds for a message: ``0.5``, ``1``, ``12.5``, ``600`` (a remaining 0.9986 s reads as 1)."""
    t = float(t or 0.0)
    return f"{t:.2g}" if t < 1 else f"{t:.1f}".removesuffix(".0")
