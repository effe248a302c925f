"""Shared fixtures: an emulator reached in-process and over real HTTP, and a clean environment."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _sigint_raises_keyboardinterrupt() -> Iterator[None]:
    """The interrupt tests send a real SIGINT.  A shell starts background jobs (``pytest & pytest &``:
    two copies at once) with SIGINT ignored, and Python then installs no handler: the interrupt would be
    dropped and the test would hang.  Each test gets Python's own handler."""
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """``interrupt_main`` (tests/defects/_helpers.py) sends SIGINT only while a test's body runs."""
    from .defects._helpers import arm_interrupts, disarm_interrupts

    arm_interrupts()
    try:
        yield
    finally:
        disarm_interrupts()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # tests never use a real key or the user's cache
    for var in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_AI_API_KEY", "FALNB_QUEUE_URL", "FALNB_OFFLINE",
                "FALNB_BUDGET_SESSION", "FALNB_BUDGET_TOTAL", "FALNB_STORAGE_URL", "LITELLM_PROXY_API_BASE",
                "LITELLM_PROXY_API_KEY", "FALNB_PROXY_ROUTE", "FALNB_PLATFORM_URL"):
        if var == "FAL_KEY" and _live_requested():
            continue
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FALNB_CACHE_DIR", str(tmp_path / "falnb-cache"))


def _live_requested() -> bool:
    import os

    return bool(os.environ.get("FAL_KEY")) and os.environ.get("FALNB_LIVE_TESTS") == "1"


@pytest.fixture
def emulator() -> Iterator[object]:
    from falnb.emulator import Emulator

    emu = Emulator(latency=0.02)
    yield emu


@pytest.fixture
def client(emu: Any, tmp_path: Path) -> Iterator[Any]:
    """An offline Client on the module's own ``emu`` fixture (each test file picks its emulator's latency,
    concurrency and seed), with a cache of its own, closed after the test."""
    from falnb import Client

    c = Client(offline=True, emulator=emu, cache=tmp_path / "cache")
    yield c
    c.close()


@pytest.fixture
def serve_emulator() -> Iterator[Callable[..., Any]]:
    """Start falnb's emulator over real HTTP on a free port of 127.0.0.1, closed after the test:
    ``serve_emulator(Emulator(...))``, or ``serve_emulator(latency=..., concurrency=..., faults=...)``
    for a new one.  Returns the :class:`~falnb.emulator.EmulatorServer` (``.url``, ``.emulator``)."""
    from falnb.emulator import Emulator, serve

    servers: list[Any] = []

    def start(emulator: Any = None, **settings: Any) -> Any:
        server = serve(port=0, emulator=emulator if emulator is not None else Emulator(**settings))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def http_emulator(emulator: object, serve_emulator: Callable[..., Any]) -> object:
    return serve_emulator(emulator)


# -- a real LiteLLM proxy (tests/_proxy_session.py): started early, only when a selected test needs it ------


def pytest_collection_finish(session: pytest.Session) -> None:
    if any("litellm_proxy" in getattr(item, "fixturenames", ()) for item in session.items):
        from ._proxy_session import SESSION

        SESSION.start()  # in a background thread: its start-up overlaps the tests before the first proxy test


def pytest_unconfigure(config: pytest.Config) -> None:
    import sys

    module = sys.modules.get("tests._proxy_session")
    if module is not None:
        module.SESSION.stop()


@pytest.fixture(scope="session")
def litellm_proxy_session() -> Any:
    """The session's LiteLLM proxy (see tests/_proxy_session.py); skipped with the reason when it cannot be
    installed or started, unless FALNB_REQUIRE_PROXY=1 (CI), which fails instead."""
    import os

    from ._proxy_session import SESSION, ProxyUnavailable

    try:
        return SESSION.get()
    except ProxyUnavailable as exc:
        if os.environ.get("FALNB_REQUIRE_PROXY") == "1":
            pytest.fail(f"FALNB_REQUIRE_PROXY=1: {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def litellm_proxy(litellm_proxy_session: Any) -> Iterator[Any]:
    """The proxy, its emulator reset and its clock running for this test (frozen again by tests that need it)."""
    litellm_proxy_session.clock.thaw()
    litellm_proxy_session.emulator.reset()
    yield litellm_proxy_session
    litellm_proxy_session.clock.thaw()
