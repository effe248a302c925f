"""falnb through a real LiteLLM proxy (litellm[proxy]==1.108.7, its own venv) whose fal is falnb's emulator.

The proxy is started once per session (tests/_proxy_session.py) with a random master key and a team
config (tests/_litellm_proxy.py: flux-ultra, imagen4, stable-diffusion, bria, recraft, plus a deployment
with a default seed and one whose api_base is the queue root).  Every exchange crosses real sockets:
falnb → proxy → emulator.  falnb is never told the emulator's URL, so whatever the emulator sees came
through the proxy.  Phases are forced with the emulator's clock, never raced.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from falnb import AuthenticationError, Client, TransportError, UnknownModelError
from falnb._exceptions import FalnbError

SEED_ALIASES = ["flux-ultra", "imagen4", "stable-diffusion"]


class Counting(httpx.AsyncBaseTransport):
    """Real HTTP, counted: how many requests left falnb (and so reached the proxy)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[str] = []
        self._lock = threading.Lock()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(f"{request.method} {request.url.path}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def client(proxy: Any, tmp_path: Path, *, key: str | None = None, route: str = "passthrough",
           transport: httpx.AsyncBaseTransport | None = None, **kw: Any) -> Client:
    return Client(proxy_url=proxy.url, proxy_key=key or proxy.key, proxy_route=route, cache=tmp_path / "cache",
                  transport=transport, timeout=60, **kw)


def short(err: BaseException) -> None:
    assert isinstance(err, FalnbError) and len(str(err).splitlines()) <= 2, str(err)


@pytest.mark.parametrize("alias", SEED_ALIASES)
def test_seed_aliases_through_the_passthrough(litellm_proxy: Any, tmp_path: Path, alias: str) -> None:
    with client(litellm_proxy, tmp_path) as c:
        fal_id = c.proxy_models()[alias]
        gen = c.generate("a red fox", model=alias)
    assert gen.model == fal_id and len(gen.images) == 1 and gen.images[0].data
    billed = litellm_proxy.emulator.ledger.entries
    assert [e.model for e in billed] == [fal_id] and billed[0].request_id == gen.request_ids[0]


@pytest.mark.parametrize("alias", ["flux-ultra", "stable-diffusion"])
@pytest.mark.parametrize("size", ["900x1200", "1792x1024"])
def test_sizes_keep_their_shape_through_the_passthrough(litellm_proxy: Any, tmp_path: Path, alias: str,
                                                        size: str) -> None:
    w, h = map(int, size.split("x"))
    with client(litellm_proxy, tmp_path) as c:
        gen = c.generate("a red fox", model=alias, size=size)
    img = gen.images[0]
    assert (img.width > img.height) == (w > h)
    assert abs(img.width / img.height - w / h) < 0.05, (img.width, img.height)


def test_n_above_the_model_limit_is_split(litellm_proxy: Any, tmp_path: Path) -> None:
    with client(litellm_proxy, tmp_path) as c:
        gen = c.generate("a red fox", model="flux-ultra", n=5)
    assert len(gen.images) == 5
    assert sorted(e.images for e in litellm_proxy.emulator.ledger.entries) == [1, 4]


def _wait_for(cond: Any, what: str, timeout: float = 30.0) -> None:
    """Until ``cond()`` holds (an event the test forced, not a race); fails with ``what`` otherwise."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"never saw: {what}"
        time.sleep(0.01)


def test_cancel_through_the_passthrough_bills_nothing(litellm_proxy: Any, tmp_path: Path) -> None:
    emu = litellm_proxy.emulator
    litellm_proxy.clock.freeze()  # the request stays where it is until the clock moves
    with client(litellm_proxy, tmp_path) as c:
        run = c.start([c.plan("a red fox", model="flux-ultra")])
        _wait_for(lambda: run.progress()[0].request_ids and run.progress()[0].state in ("queued", "running"),
                  "the request queued on the emulator")
        rid = run.progress()[0].request_ids[0]
        assert run.cancel()
        assert run.join(30)
    assert emu.status_of(rid) is not None and emu.ledger.submits == 1
    litellm_proxy.clock.thaw()
    assert emu.ledger.entries == []


def test_rerun_is_a_cache_hit_that_never_reaches_the_proxy(litellm_proxy: Any, tmp_path: Path) -> None:
    counted = Counting()
    with client(litellm_proxy, tmp_path, transport=counted) as c:
        first = c.generate("a red fox", model="imagen4", size="900x1200")
        sent = len(counted.requests)
        again = c.generate("a red fox", model="imagen4", size="900x1200")
    assert sent >= 3 and len(counted.requests) == sent, counted.requests[sent:]
    assert again.cached and not first.cached and again.images[0].data == first.images[0].data
    assert len(litellm_proxy.emulator.ledger.entries) == 1


def test_wrong_proxy_key_is_short_and_bills_nothing(litellm_proxy: Any, tmp_path: Path) -> None:
    with client(litellm_proxy, tmp_path, key="sk-not-the-key") as c, pytest.raises(AuthenticationError) as err:
        c.generate("a red fox", model="flux-ultra")
    short(err.value)
    assert "LITELLM_PROXY_API_KEY" in str(err.value) and "sk-not-the-key" not in str(err.value)
    assert litellm_proxy.emulator.ledger.submits == 0


def test_unknown_team_name_gets_a_did_you_mean(litellm_proxy: Any, tmp_path: Path) -> None:
    with client(litellm_proxy, tmp_path) as c, pytest.raises(UnknownModelError) as err:
        c.generate("a red fox", model="stable-difusion")
    short(err.value)
    assert "'stable-diffusion'" in str(err.value) and litellm_proxy.url in str(err.value)
    assert litellm_proxy.emulator.ledger.submits == 0


def test_stopped_proxy_is_short_and_bills_nothing(tmp_path: Path) -> None:
    with socket_nobody_listens_on() as url:
        with Client(proxy_url=url, proxy_key="sk-x", cache=tmp_path / "c") as c, \
                pytest.raises(TransportError) as err:
            c.generate("a red fox", model="flux-ultra")
    short(err.value)
    assert url in str(err.value) and "Nothing was sent" in str(err.value)


class socket_nobody_listens_on:
    """The URL of a stopped proxy: a port that was bound (so nothing else took it) and is now closed."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        pass


def test_kernel_crash_after_submit_reattaches_through_the_proxy(litellm_proxy: Any, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import signal
    import subprocess
    import sys

    from ._procs.runner import ROOT, child_env

    emu = litellm_proxy.emulator
    litellm_proxy.clock.freeze()  # the request waits in the emulator while the "kernel" dies
    cache_dir = tmp_path / "shared-cache"
    child = subprocess.run([sys.executable, str(Path(__file__).parent / "_procs" / "proxy_child.py"),
                            litellm_proxy.url, litellm_proxy.key, "a red fox", "flux-ultra"],
                           env=child_env(cache_dir), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    rid = child.stdout.split("SUBMITTED ", 1)[1].split()[0]
    assert emu.ledger.submits == 1 and emu.status_of(rid) in ("IN_QUEUE", "IN_PROGRESS")
    litellm_proxy.clock.thaw()
    monkeypatch.setenv("FALNB_CACHE_DIR", str(cache_dir))
    with Client(proxy_url=litellm_proxy.url, proxy_key=litellm_proxy.key, proxy_route="passthrough",
                timeout=60) as c:
        gen = c.generate("a red fox", model="flux-ultra")
    assert gen.request_ids == [rid] and len(gen.images) == 1
    assert emu.ledger.submits == 1 and [e.request_id for e in emu.ledger.entries] == [rid]


def test_team_names_come_from_the_proxy_with_their_defaults(litellm_proxy: Any, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from falnb._cli import main

    # the names LiteLLM users already have; no fal key: falnb goes through the proxy
    monkeypatch.setenv("LITELLM_PROXY_API_BASE", litellm_proxy.url)
    monkeypatch.setenv("LITELLM_PROXY_API_KEY", litellm_proxy.key)
    assert main(["models"]) == 0
    listed = capsys.readouterr().out.split(f"LiteLLM proxy at {litellm_proxy.url}:", 1)[1].split()
    assert listed[listed.index("flux-ultra-seeded") + 1] == "fal-ai/flux-pro/v1.1-ultra"
    assert listed[listed.index("bria") + 1] == "bria/text-to-image/3.2"
    with Client(cache=tmp_path / "c", proxy_route="passthrough") as c:
        assert c.proxy is not None and c.key.scheme == "Bearer" and c.key.source == "LITELLM_PROXY_API_KEY"
        seeded = c.generate("a red fox", model="flux-ultra-seeded")  # the team's seed: 42
        own = c.generate("a red fox", model="flux-ultra-seeded", seed=7)  # the call's own wins
    assert seeded.inputs[0]["seed"] == 42 and seeded.images[0].seed == 42
    assert own.inputs[0]["seed"] == 7
    # a fal key in the environment means fal directly, as LiteLLM's SDK users expect
    monkeypatch.setenv("FAL_KEY", "a-fal-key")
    assert Client(cache=False).proxy is None


def test_magics_through_the_proxy(litellm_proxy: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from falnb.notebook._magics import magics_of

    from ._cells import run

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "falnb")
    magics = magics_of(shell)
    monkeypatch.setenv("LITELLM_PROXY_API_KEY", litellm_proxy.key)
    try:
        assert run(shell, f"%config FalMagics.proxy_url = '{litellm_proxy.url}'").ok
        assert run(shell, f"%config FalMagics.cache_dir = '{tmp_path / 'cache'}'").ok
        shown = run(shell, "%falconfig proxy_route=passthrough")
        assert shown.ok, shown.text
        assert f"through the LiteLLM proxy {litellm_proxy.url} (from proxy_url=), route passthrough" in shown.text
        assert "key from LITELLM_PROXY_API_KEY (hidden)" in shown.text and litellm_proxy.key not in shown.text
        first = run(shell, "%%falimage -m imagen4 --size 900x1200\na red fox")
        assert first.ok, first.text
        assert len(first.images()) == 1 and len(litellm_proxy.emulator.ledger.entries) == 1
        again = run(shell, "%%falimage -m imagen4 --size 900x1200\na red fox")
        assert again.ok and "cached" in str(again.captions()) and len(litellm_proxy.emulator.ledger.entries) == 1
    finally:
        for name in ("proxy_url", "proxy_route", "cache_dir"):
            setattr(magics, name, None)


def test_litellm_sdk_proxy_route_runs_unchanged(litellm_proxy: Any, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """LiteLLM SDK code for a team's proxy names ``litellm_proxy/<team model>`` (or
    ``custom_llm_provider="litellm_proxy"``), with the proxy's URL and key from LITELLM_PROXY_API_BASE/KEY or
    api_base/api_key; falnb took ``litellm_proxy/flux-ultra`` for a fal id and found no such model."""
    from collections import OrderedDict

    import falnb
    from falnb import _client, _litellm

    monkeypatch.setattr(_client, "_DEFAULT", None)
    monkeypatch.setattr(_litellm, "_CLIENTS", OrderedDict())
    monkeypatch.setenv("FALNB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LITELLM_PROXY_API_BASE", litellm_proxy.url)
    monkeypatch.setenv("LITELLM_PROXY_API_KEY", litellm_proxy.key)
    r = falnb.image_generation(model="litellm_proxy/flux-ultra", prompt="a red fox")
    assert r.generation.model == "fal-ai/flux-pro/v1.1-ultra" and len(r.data) == 1
    assert r._hidden_params["litellm_model_name"] == "litellm_proxy/flux-ultra"
    assert litellm_proxy.emulator.ledger.requests == 1
    # the proxy's URL (LiteLLM's OpenAI-style .../v1) and key as arguments; a fal key set does not divert it
    monkeypatch.delenv("LITELLM_PROXY_API_BASE")
    monkeypatch.delenv("LITELLM_PROXY_API_KEY")
    monkeypatch.setenv("FAL_KEY", "a-fal-key")
    r = falnb.image_generation(model="imagen4", prompt="a red fox", custom_llm_provider="litellm_proxy",
                               api_base=litellm_proxy.url + "/v1", api_key=litellm_proxy.key)
    assert r.generation.model == litellm_proxy.emulator.ledger.entries[-1].model == "fal-ai/imagen4/preview"
    assert litellm_proxy.emulator.ledger.requests == 2
