"""Issue 11 #19 and #20: settings changed in the environment take effect on the next call.

``%env FAL_KEY=...`` after a 401 (the 401's own advice), ``%env FALNB_OFFLINE=1`` after the no-key error
(its own advice), and back online with ``FALNB_OFFLINE=0``: a client that was not told explicitly reads
them at each call.  What was given explicitly (``Client(offline=...)``, ``key=``, ``queue_url=``) stays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import falnb
from falnb import Client
from falnb.emulator import Emulator, EmulatorServer

MODEL = "fal-ai/flux/schnell"
KW: dict[str, Any] = dict(model=MODEL, size="256x256", seed=5)


@pytest.fixture
def fal(serve_emulator: Any) -> EmulatorServer:
    """An emulator over real HTTP standing in for fal.ai, which knows one key."""
    server: EmulatorServer = serve_emulator(Emulator(latency=0.0, api_keys={"the-right-key"}))
    return server


def test_a_new_key_in_the_environment_is_used_by_the_next_call(fal: EmulatorServer, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", "a-revoked-key")
    client = Client(queue_url=fal.url, cache=tmp_path / "c")
    with pytest.raises(falnb.AuthenticationError, match="FAL_KEY"):
        client.generate("a lighthouse", **KW)
    monkeypatch.setenv("FAL_KEY", "the-right-key")  # what the 401 says to do
    assert len(client.generate("a lighthouse", **KW).images) == 1
    assert client.key.source == "FAL_KEY"
    client.close()


def test_an_explicit_key_stays(fal: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client(key="the-right-key", queue_url=fal.url, cache=tmp_path / "c")
    monkeypatch.setenv("FAL_KEY", "a-revoked-key")
    assert len(client.generate("a lighthouse", **KW).images) == 1
    client.close()


def test_offline_and_back_online_follow_the_environment(fal: EmulatorServer, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client(cache=tmp_path / "c")
    assert not client.offline
    with pytest.raises(falnb.MissingKeyError, match="FALNB_OFFLINE=1"):
        client.generate("a lighthouse", **KW)
    monkeypatch.setenv("FALNB_OFFLINE", "1")  # what the missing-key error says to do
    assert client.offline and client.cache_namespace == "emulator" and repr(client) == "<falnb.Client offline emulator>"
    offline = client.generate("a lighthouse", **KW)
    assert client.emulator is not None and offline.request_ids[0] in {j.request_id for j in client.emulator.requests()}

    monkeypatch.setenv("FALNB_OFFLINE", "0")
    monkeypatch.setenv("FAL_KEY", "the-right-key")
    monkeypatch.setenv("FALNB_QUEUE_URL", fal.url)
    assert not client.offline and client.queue_url == fal.url and client.cache_namespace == "fal"
    online = client.generate("a lighthouse", **KW)  # the same request: fal's, not the emulator's picture
    assert not online.cached and fal.emulator.ledger.submits == 1
    assert client.generate("a lighthouse", **KW).cached  # and each namespace keeps its own
    monkeypatch.setenv("FALNB_OFFLINE", "1")
    assert client.generate("a lighthouse", **KW).request_ids == offline.request_ids
    client.close()


def test_explicit_offline_or_online_stays(fal: EmulatorServer, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FALNB_OFFLINE", "0")
    offline = Client(offline=True, emulator=Emulator(latency=0.0), cache=tmp_path / "c")
    assert offline.offline and len(offline.generate("a lighthouse", **KW).images) == 1
    monkeypatch.setenv("FALNB_OFFLINE", "1")
    online = Client(offline=False, key="the-right-key", queue_url=fal.url, cache=tmp_path / "c")
    assert not online.offline and len(online.generate("a lighthouse", **KW).images) == 1
    assert fal.emulator.ledger.submits == 1
    offline.close()
    online.close()


def test_a_bad_queue_url_in_the_environment_is_a_config_error_at_the_call(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FALNB_OFFLINE", "1")
    client = Client(cache=tmp_path / "c")
    monkeypatch.setenv("FALNB_OFFLINE", "0")
    monkeypatch.setenv("FALNB_QUEUE_URL", "ftp://nowhere")
    assert repr(client) == "<falnb.Client a bad queue URL>"
    with pytest.raises(falnb.ConfigError, match="FALNB_QUEUE_URL"):
        client.generate("a lighthouse", **KW)


def test_models_falnb_ships_nothing_for_are_described_where_calls_go_now(fal: EmulatorServer, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """fal's platform API (schemas, prices) follows FALNB_OFFLINE and FALNB_QUEUE_URL like the calls do: a
    client made online, switched offline as the no-key error says, asked fal (here: nothing listens) about
    an endpoint it does not ship, and refused it as one that "cannot be validated"."""
    quirky = "fal-ai/emulator/quirky-square"  # an emulator fixture: described by the emulator's platform API
    monkeypatch.setenv("FALNB_QUEUE_URL", "http://127.0.0.1:9")  # online: a fal that cannot be reached
    client = Client(cache=tmp_path / "c")
    monkeypatch.setenv("FALNB_OFFLINE", "1")
    gen = client.generate("a lighthouse", model=quirky, seed=5)
    assert gen.model == quirky and client.catalog.resolve(quirky).source == "fal"
    with pytest.raises(falnb.ParameterError, match="steps"):  # validated against the emulator's schema
        client.plan("a lighthouse", model=quirky, steps="many")
    monkeypatch.setenv("FALNB_OFFLINE", "0")
    monkeypatch.setenv("FAL_KEY", "the-right-key")
    monkeypatch.setenv("FALNB_QUEUE_URL", fal.url)  # back online: fal's platform API is asked, not the emulator
    assert client.platform.base_url == fal.url.rstrip("/")
    assert client.generate("a lighthouse", model=quirky, seed=5).request_ids[0] in \
        {j.request_id for j in fal.emulator.requests()}
    client.close()
