"""Issue 11 #4 and #29: a submit that never left the machine is not "sent, answer lost".

What could not be sent (a header h11 refuses, a timeout that is no timeout) is refused before anything
is journaled; a connection that cannot be made fails fast with "nothing was sent" (no 16 s of retries);
a submit stopped while its connection is being made leaves no uncertain journal row.  Whether the bytes
left is read from httpcore's trace of the request (real sockets, real h11), never guessed from timing.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import falnb
from falnb import Client
from falnb.emulator import Emulator, EmulatorServer
from falnb.fal._queue import QueueClient, RetryPolicy
from falnb.fal._sending import SendTrace

MODEL = "fal-ai/flux/schnell"
KW: dict[str, Any] = dict(model=MODEL, size="256x256", seed=1)


class Listener:
    """A TCP server that accepts connections and never answers: ``accepted`` is set once a client has
    connected, ``got_bytes`` once it has written something."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted, self.got_bytes = threading.Event(), threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        self.conns.append(conn)
        self.accepted.set()
        try:
            if conn.recv(65536):
                self.got_bytes.set()
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    ear = Listener()
    yield ear
    ear.close()


def _cancel_once(event: threading.Event, coro: Any) -> BaseException:
    """Run ``coro`` and cancel it once ``event`` is set (an event, not a timer); what it ended with."""

    async def main() -> BaseException:
        task = asyncio.ensure_future(coro)
        while not event.is_set():
            await asyncio.sleep(0.002)
            assert not task.done(), task
        task.cancel()
        try:
            await task
        except BaseException as exc:
            return exc
        raise AssertionError("not cancelled")

    return asyncio.run(main())


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_a_submit_stopped_while_connecting_never_left(listener: Listener, scheme: str) -> None:
    """https: the TLS handshake never completes; the request's headers were never being written."""
    trace = SendTrace()

    async def submit() -> Any:
        async with httpx.AsyncClient() as http:
            return await QueueClient(http, f"{scheme}://127.0.0.1:{listener.port}", None).submit(
                MODEL, {"prompt": "a fox"}, trace=trace)

    ready = listener.accepted if scheme == "https" else listener.got_bytes
    exc = _cancel_once(ready, submit())
    assert isinstance(exc, asyncio.CancelledError)
    assert trace.handed and trace.traced
    # plain http: the headers went out, fal may hold it; https: still shaking hands, nothing left
    assert trace.may_have_left == (scheme == "http")


def test_a_header_h11_refuses_is_not_sent(http_emulator: EmulatorServer) -> None:
    """Past the plan's check (a caller of the queue client): h11 refuses the header before writing a byte."""

    async def submit() -> Any:
        async with httpx.AsyncClient() as http:
            return await QueueClient(http, http_emulator.url, None).submit(
                MODEL, {"prompt": "a fox"}, headers={"X-Note": "a\r\nX-Evil: 1"})

    with pytest.raises(falnb.TransportError) as err:
        asyncio.run(submit())
    assert not isinstance(err.value, falnb.SubmitUncertainError) and "nothing was sent" in str(err.value)
    assert http_emulator.emulator.ledger.submits == 0


class _Counting(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return await self.inner.handle_async_request(request)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed: connection refused


def test_no_network_fails_fast_with_nothing_sent(tmp_path: Path) -> None:
    counting = _Counting()
    client = Client(key="k", queue_url=f"http://127.0.0.1:{_closed_port()}", cache=tmp_path / "c",
                    transport=counting, retry=RetryPolicy(connect_attempts=3, connect_delay=0.01))
    with pytest.raises(falnb.TransportError) as err:
        client.generate("a fox", **KW, timeout=60)
    assert not isinstance(err.value, falnb.SubmitUncertainError)
    assert "nothing was sent" in str(err.value) and "may have queued" not in str(err.value)
    assert counting.calls == 3  # two quick retries, not eight with backoff
    assert client.cache.journal("*") == []  # type: ignore[union-attr]
    client.close()


def test_a_submit_that_never_left_leaves_no_journal_row(listener: Listener, tmp_path: Path) -> None:
    """Ctrl-C while the connection to fal is still being made (a run cancelled): the same request is then
    simply sent (no SubmitUncertainError for an hour)."""
    cache = tmp_path / "c"
    stuck = Client(key="k", queue_url=f"https://127.0.0.1:{listener.port}", cache=cache)
    run = stuck.start([stuck.plan("a fox", **KW)])
    assert listener.accepted.wait(30)
    run.cancel()
    assert run.join(30)
    with pytest.raises(falnb.RequestCancelledError) as err:
        run.wait()
    assert "1 request not sent (nothing billed)" in str(err.value), str(err.value)
    assert stuck.cache.journal("*") == []  # type: ignore[union-attr]
    stuck.close()
    emu = Emulator(latency=0.0)
    again = Client(offline=True, emulator=emu, cache=cache)
    assert len(again.generate("a fox", **KW).images) == 1 and emu.ledger.submits == 1


@pytest.mark.parametrize("bad", [{"X-Note": "café"}, {"X-Note": "a\nb"}, {"X Bad": "1"}, {"X-Note": " pad "},
                                 {"X-Note": "\x00"}])
def test_headers_that_cannot_be_sent_are_refused_before_anything(bad: dict[str, str], emulator: Emulator,
                                                                   tmp_path: Path) -> None:
    client = Client(offline=True, emulator=emulator, cache=tmp_path / "c")
    with pytest.raises(falnb.ParameterError, match="extra_headers"):
        client.generate("a fox", **KW, extra_headers=bad)
    assert emulator.ledger.submits == 0 and client.cache.journal("*") == []  # type: ignore[union-attr]


@pytest.mark.parametrize("timeout", [-1, 0, float("nan"), float("inf"), "5", True])
def test_a_timeout_that_is_no_timeout_is_refused_before_anything(timeout: Any, emulator: Emulator,
                                                                 tmp_path: Path) -> None:
    client = Client(offline=True, emulator=emulator, cache=tmp_path / "c")
    with pytest.raises(falnb.InputError, match="timeout must be a positive number"):
        client.generate("a fox", **KW, timeout=timeout)
    with pytest.raises(falnb.InputError):
        Client(offline=True, emulator=emulator, timeout=timeout)
    assert emulator.ledger.submits == 0 and client.cache.journal("*") == []  # type: ignore[union-attr]


def test_a_transport_that_does_not_trace_is_assumed_to_have_delivered() -> None:
    trace = SendTrace()
    assert not trace.may_have_left  # not handed over yet: certainly not sent
    trace.handed = True
    assert trace.may_have_left  # an in-process or mock transport: it has the request
