"""falnb's queue client against what fal's official clients do with fal's answers (not against falnb's own
assumptions): which answers make a call be sent again, and which never do.

Sources: fal-client's ``_is_ingress_error``, ``_should_retry_response`` and ``RETRY_CODES`` (fal-ai/fal,
projects/fal_client/src/fal_client/client.py, and its tests/unit/test_retry.py); fal-js's
``ApiError.isUserTimeout`` (fal-ai/fal-js, libs/client/src/response.ts).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from falnb import Client
from falnb._exceptions import FalServerError, SubmitUncertainError
from falnb.emulator import Emulator, Faults
from falnb.fal._queue import QueueClient, RetryPolicy

MODEL = "fal-ai/flux/schnell"
QUEUE = "https://queue.fal.run"
FAST = RetryPolicy(attempts=6, base_delay=0.001, max_delay=0.002, submit_attempts=8)
NGINX_504 = ("<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway "
             "Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")

Answer = Callable[[httpx.Request, int], "httpx.Response | None"]


class Tamper(httpx.AsyncBaseTransport):
    """The in-process emulator, with some answers replaced: ``answer(request, nth call of this method+path)``."""

    def __init__(self, emu: Emulator, answer: Answer) -> None:
        self.inner, self.answer = emu.transport(), answer
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = (request.method, request.url.path)
        self.calls[key] += 1
        out = self.answer(request, self.calls[key])
        return out if out is not None else await self.inner.handle_async_request(request)


def _queue(transport: httpx.AsyncBaseTransport) -> QueueClient:
    from falnb.fal._config import Key

    return QueueClient(httpx.AsyncClient(transport=transport), QUEUE, Key("k", "test"), retry=FAST, use_stream=False)


# -- a submit is sent again only when fal's own ingress answered --------------------------------------------------


def test_a_plain_gateway_page_after_a_queued_submit_is_uncertain_and_never_sent_again(tmp_path: Path) -> None:
    """A proxy or load balancer between falnb and fal (not fal's nginx) answers 502 after passing the submit on:
    fal queued it and will bill it.  fal-client sends it again only for nginx's page; falnb sent it again for
    any non-JSON 5xx without a request id (8 submits, 8 bills)."""
    emu = Emulator(latency=0.0, faults=Faults(lost_submit_gateway_rate=1.0))
    client = Client(offline=True, emulator=emu, cache=tmp_path / "c", retry=FAST)
    with pytest.raises(SubmitUncertainError) as info:
        client.generate("a lighthouse", model=MODEL, seed=1)
    client.close()
    assert emu.ledger.submits == 1
    assert "a gateway answered 502 in fal's place" in str(info.value) and "dashboard" in str(info.value)


@pytest.mark.parametrize("page", ["nginx", "nginx-user-timeout"])
def test_fal_ingress_pages(page: str) -> None:
    """nginx's page without a request id is fal's ingress (nothing reached the app): sent again.  A 504 for the
    request's own deadline (``X-Fal-Request-Timeout-Type``) is final, whoever wrote its page."""
    headers = {"content-type": "text/html", "server": "nginx"}
    if page == "nginx-user-timeout":
        headers["x-fal-request-timeout-type"] = "user"

    def answer(request: httpx.Request, n: int) -> httpx.Response | None:
        return httpx.Response(504, headers=headers, text=NGINX_504) if request.method == "POST" and n == 1 else None

    emu = Emulator(latency=0.0)
    transport = Tamper(emu, answer)
    queue = _queue(transport)

    async def go() -> Any:
        try:
            return await queue.submit(MODEL, {"prompt": "x"})
        finally:
            await queue._http.aclose()

    if page == "nginx":
        assert asyncio.run(go()).request_id
        assert transport.calls[("POST", f"/{MODEL}")] == 2
    else:
        with pytest.raises(FalServerError):
            asyncio.run(go())
        assert transport.calls[("POST", f"/{MODEL}")] == 1
    assert emu.ledger.submits == (1 if page == "nginx" else 0)


# -- status, result and cancel: asked again on what fal-client asks again on, never on a final answer ----------


@pytest.mark.parametrize("code", [408, 409])
def test_a_408_or_409_on_status_or_result_is_asked_again_not_a_lost_result(code: int, tmp_path: Path) -> None:
    """fal-client retries 408 and 409 on every call.  falnb took them for fal's final word on the request: the
    result of a completed, billed request was reported as an error and its journal row deleted, so the re-run
    paid for it again."""

    def answer(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.method == "GET" and "/requests/" in request.url.path and n == 1:  # first status, first result
            return httpx.Response(code, json={"detail": "try again"})
        return None

    emu = Emulator(latency=0.0)
    transport = Tamper(emu, answer)
    client = Client(key="sk-test", queue_url=QUEUE, transport=transport, cache=tmp_path / "c", retry=FAST,
                    use_stream=False)
    gen = client.generate("a lighthouse", model=MODEL, seed=1)
    client.close()
    assert len(gen.images) == 1 and emu.ledger.submits == 1 and emu.ledger.requests == 1
    assert any(path.endswith("/status") and n == 2 for (_, path), n in transport.calls.items())


def test_a_504_for_the_requests_own_deadline_is_not_asked_again() -> None:
    """fal-client and fal-js never retry a 504 with ``X-Fal-Request-Timeout-Type``: fal's final answer."""

    def answer(request: httpx.Request, n: int) -> httpx.Response | None:
        if request.method == "GET" and not request.url.path.endswith("/status"):
            return httpx.Response(504, headers={"x-fal-request-timeout-type": "user", "x-fal-request-id": "r",
                                                "x-fal-error-type": "request_timeout"},
                                  json={"detail": "Request timed out", "error_type": "request_timeout"})
        return None

    emu = Emulator(latency=0.0)
    transport = Tamper(emu, answer)
    queue = _queue(transport)

    async def go() -> None:
        try:
            sub = await queue.submit(MODEL, {"prompt": "x"})
            await queue.wait(sub)
            await queue.result(sub)
        finally:
            await queue._http.aclose()

    with pytest.raises(FalServerError, match="request_timeout"):
        asyncio.run(go())
    assert sum(n for (m, p), n in transport.calls.items() if m == "GET" and not p.endswith("/status")) == 1
