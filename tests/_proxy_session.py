"""One real LiteLLM proxy per test session, on falnb's emulator served over real HTTP.

Started in a background thread as soon as collection shows a test that needs it (``conftest``), so its
10-17 s of start-up overlap the other tests instead of adding to them; a session that selects no proxy
test never starts it.  The emulator runs in this process (its ledger and clock are the tests' to read
and drive): its queue root is the proxy's ``FAL_AI_QUEUE_API_BASE`` (the pass-through) and its sync
port every deployment's ``api_base`` (the images route).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _litellm_proxy as lp
from ._clock import SwitchClock


@dataclass
class ProxyUnderTest:
    """What a test gets: the proxy (``url``, ``key``), the emulator server behind it, and its clock."""

    proxy: lp.Proxy
    server: Any  # falnb.emulator.EmulatorServer
    clock: SwitchClock

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def key(self) -> str:
        return self.proxy.key

    @property
    def emulator(self) -> Any:
        return self.server.emulator


class _Session:
    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.ready: ProxyUnderTest | None = None
        self.error: str | None = None
        self.started_at: float | None = None
        self.ready_after: float | None = None
        self._workdir: Path | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self.started_at = time.monotonic()
                self._thread = threading.Thread(target=self._run, name="litellm-proxy-start", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        from falnb.emulator import Emulator, serve

        try:
            venv = lp.ensure_venv()
        except (RuntimeError, OSError) as exc:
            self.error = f"the LiteLLM proxy cannot be installed: {exc}"
            return
        clock = SwitchClock()
        server = serve(port=0, emulator=Emulator(latency=0.05, concurrency=2, clock=clock), sync_port=0)
        self._workdir = Path(tempfile.mkdtemp(prefix="falnb-litellm-proxy-"))
        proxy = lp.Proxy(venv, self._workdir, queue_url=server.url, sync_url=server.sync_url,
                         extra={"flux-ultra-queue-root": {"model": "fal_ai/" + lp.TEAM["flux-ultra"],
                                                          "api_base": server.url},
                                "flux-ultra-seeded": {"model": "fal_ai/" + lp.TEAM["flux-ultra"],
                                                      "api_base": server.sync_url, "seed": 42},
                                # a variant without a LiteLLM price: its /fal_ai route refuses it
                                "sd-turbo": {"model": "fal_ai/fal-ai/stable-diffusion-v35-medium/turbo",
                                             "api_base": server.sync_url}})
        try:
            proxy.wait_ready()
        except RuntimeError as exc:
            proxy.stop()
            server.close()
            self.error = f"the LiteLLM proxy did not start: {exc}"
            return
        self.ready_after = time.monotonic() - (self.started_at or 0.0)
        self.ready = ProxyUnderTest(proxy, server, clock)

    def get(self, timeout: float = lp.START_TIMEOUT + 600) -> ProxyUnderTest:
        """The running proxy; ``ProxyUnavailable`` with the reason when it cannot be had."""
        self.start()
        assert self._thread is not None
        self._thread.join(timeout)
        if self.ready is None:
            raise ProxyUnavailable(self.error or "the LiteLLM proxy is still starting")
        return self.ready

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join(lp.START_TIMEOUT + 30)
        if self.ready is not None:
            self.ready.proxy.stop()
            self.ready.server.close()
            self.ready = None
        if self._workdir is not None and os.environ.get("FALNB_KEEP_PROXY_LOG") != "1":
            shutil.rmtree(self._workdir, ignore_errors=True)


class ProxyUnavailable(Exception):
    pass


SESSION = _Session()
