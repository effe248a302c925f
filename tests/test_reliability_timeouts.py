"""A hung connection never hangs a call forever: every wait has a bound the user sets.

A TCP server on 127.0.0.1 accepts connections and never answers.  Each phase of a request is sent
to it in turn (submit, status, result, download; the rest is the in-process emulator) and each
call must end within its bound plus a little slack, under either bound the user controls:
``Client(http_timeout=...)`` (one HTTP exchange) and ``generate(timeout=...)`` (the whole call).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from falnb import Client
from falnb._exceptions import (
    FalServerError,
    RequestTimeoutError,
    SubmitUncertainError,
    TransportError,
)
from falnb.emulator import Emulator
from falnb.fal._queue import RetryPolicy

MODEL = "fal-ai/flux/schnell"
QUEUE = "http://fal.test"


class HungServer:
    """Accepts every connection and never sends a byte (nor closes)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted: list[socket.socket] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        for c in self.accepted:
            c.close()
        self.sock.close()


@pytest.fixture
def hung() -> Iterator[HungServer]:
    server = HungServer()
    try:
        yield server
    finally:
        server.close()


class Router(httpx.AsyncBaseTransport):
    """The emulator in-process, except one phase's calls, which go to the hung server."""

    def __init__(self, emu: Emulator, hung: HungServer, phase: str) -> None:
        self.emu = emu.transport()
        self.real = httpx.AsyncHTTPTransport()
        self.hung, self.phase = hung, phase

    def _hangs(self, request: httpx.Request) -> bool:
        path = request.url.path
        if self.phase == "status":
            return path.endswith(("/status", "/status/stream"))
        if self.phase == "result":
            return request.method == "GET" and "/requests/" in path and not path.endswith(("/status", "/stream"))
        if self.phase == "download":
            return path.startswith("/files/")
        return False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._hangs(request):
            request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.hung.port)
            return await self.real.handle_async_request(request)
        return await self.emu.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, submit_attempts=3)
PHASES = ["submit", "status-stream", "status-poll", "result", "download"]


def _client(phase: str, hung: HungServer, tmp_path: Path, *, http_timeout: float, cache: bool) -> Client:
    emu = Emulator(latency=0.0, concurrency=4)
    stream = phase != "status-poll"
    base = phase.split("-")[0]
    if base == "submit":
        return Client(key="sk-test-hang", queue_url=hung.url, cache=tmp_path / "cache" if cache else False,
                      retry=FAST, http_timeout=http_timeout, use_stream=stream)
    return Client(key="sk-test-hang", queue_url=QUEUE, transport=Router(emu, hung, base),
                  cache=tmp_path / "cache" if cache else False, retry=FAST, http_timeout=http_timeout,
                  use_stream=stream)


def _timed(client: Client, **kw: float | None) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    err: BaseException | None = None
    try:
        client.generate("a lighthouse that waits", model=MODEL, seed=1, **kw)  # type: ignore[arg-type]
    except Exception as exc:  # the kind is checked by the caller
        err = exc
    finally:
        client.close()
    return time.monotonic() - started, err


#: the most HTTP exchanges a phase can wait on before giving up, with FAST retries
#: (submit: once, never resent; status: 3 stream opens + 3 polls; result: 3; download: 4 tries)
EXCHANGES = {"submit": 1, "status-stream": 6, "status-poll": 3, "result": 3, "download": 4}
#: fixed backoff sleeps outside RetryPolicy (the image download: 0.2+0.4+0.8 s between its 4 tries)
SLEEPS = {"download": 1.4}
SLACK = 1.0


@pytest.mark.parametrize("phase", PHASES)
def test_figure_timeouts_http_timeout_bounds_every_phase(phase: str, hung: HungServer, tmp_path: Path) -> None:
    # no overall timeout at all: only the per-exchange bound the user gave
    http_timeout = 0.3
    client = _client(phase, hung, tmp_path, http_timeout=http_timeout, cache=False)
    client.timeout = None
    took, err = _timed(client)
    bound = EXCHANGES[phase] * http_timeout + SLEEPS.get(phase, 0.0) + FAST.max_delay * EXCHANGES[phase]
    print(f"FIGURE timeouts: hung {phase}, Client(http_timeout={http_timeout}, timeout=None): "
          f"{type(err).__name__} after {took:.2f} s (bound {bound:.2f} s + {SLACK} s slack)")
    assert err is not None and took <= bound + SLACK, (took, err)
    expected: type[Exception] = SubmitUncertainError if phase == "submit" else TransportError
    assert isinstance(err, (expected, FalServerError)), repr(err)
    assert hung.accepted, "the hung server was never reached"
    assert "sk-test-hang" not in str(err)


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("cache", [False, True], ids=["nocache", "cache"])
def test_figure_timeouts_generate_timeout_bounds_the_whole_call(phase: str, cache: bool, hung: HungServer,
                                                                tmp_path: Path) -> None:
    # a lax per-exchange timeout: the call's own timeout must cut every phase short
    timeout = 0.6
    client = _client(phase, hung, tmp_path, http_timeout=30.0, cache=cache)
    took, err = _timed(client, timeout=timeout)
    print(f"FIGURE timeouts: hung {phase} ({'cache' if cache else 'no cache'}), generate(timeout={timeout}) "
          f"with http_timeout=30: {type(err).__name__} after {took:.2f} s")
    assert isinstance(err, RequestTimeoutError), repr(err)
    assert took <= timeout + SLACK, took
    text = str(err)
    assert f"{timeout:g} s" in text
    if phase == "submit":
        assert "may have queued it" in text and "will not send it again" in text
    if cache and phase == "submit":
        # the journal remembers the unanswered submit: the next run will not pay for it blindly
        store = client.cache
        assert store is not None and [r["state"] for r in store.journal()] == ["uncertain"]
    elif cache:
        store = client.cache
        assert store is not None and [r["state"] for r in store.journal()] == ["submitted"]
