"""fal's two hosts on the emulator: the queue root, and the synchronous host (``/_sync`` or ``--sync-port``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from falnb.emulator import Emulator, EmulatorServer, serve
from falnb.emulator._server import main

MODEL = "fal-ai/flux/schnell"


@pytest.fixture
def two_hosts() -> Iterator[EmulatorServer]:
    server = serve(port=0, emulator=Emulator(latency=0.01), sync_port=0)
    yield server
    server.close()


def test_sync_port_is_fal_run_root(two_hosts: EmulatorServer) -> None:
    assert two_hosts.sync_url != two_hosts.url and "/_sync" not in two_hosts.sync_url
    r = httpx.post(f"{two_hosts.sync_url}/{MODEL}", json={"prompt": "a fox", "num_images": 2},
                   headers={"Authorization": "Key k"}, timeout=10)
    assert r.status_code == 200, r.text
    images = r.json()["images"]
    assert len(images) == 2
    # the pictures are served where the answer says, and the control endpoints answer on both roots
    assert httpx.get(images[0]["url"], timeout=10).status_code == 200
    ledger = httpx.get(f"{two_hosts.sync_url}/_emulator/ledger", timeout=10).json()
    assert ledger == httpx.get(f"{two_hosts.url}/_emulator/ledger", timeout=10).json()
    assert len(two_hosts.emulator.ledger.entries) == 1


def test_queue_root_answers_a_sync_style_call_as_fal_does(two_hosts: EmulatorServer) -> None:
    # queue.fal.run answers a POST with a queue answer whoever sends it: the emulator's main port too
    r = httpx.post(f"{two_hosts.url}/{MODEL}", json={"prompt": "a fox"}, headers={"Authorization": "Key k"},
                   timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "IN_QUEUE" and "images" not in r.json()
    # and the /_sync base on the main port is the same synchronous host as the sync port
    r = httpx.post(f"{two_hosts.url}/_sync/{MODEL}", json={"prompt": "a fox"}, headers={"Authorization": "Key k"},
                   timeout=10)
    assert r.status_code == 200 and len(r.json()["images"]) == 1


def test_fal_client_run_on_the_sync_root(two_hosts: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    fal_client = pytest.importorskip("fal_client")
    import fal_client.client as fal_module

    monkeypatch.setattr(fal_module, "QUEUE_URL_FORMAT", two_hosts.url + "/")
    monkeypatch.setattr(fal_module, "RUN_URL_FORMAT", two_hosts.sync_url + "/")
    out: Any = fal_client.SyncClient(key="k").run(MODEL, {"prompt": "a fox"})
    assert len(out["images"]) == 1 and out["images"][0]["width"] > 0


def test_cli_documents_both_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--sync-port" in text and "/_sync" in text and "fal.run" in text and "queue.fal.run" in text


def test_cli_busy_sync_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--port", "0", "--sync-port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(port) in err
