"""fal's own Python client (fal-client) against the emulator over real HTTP.

fal-client builds ``https://`` URLs from module constants set at import; point them at the emulator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

fal_client = pytest.importorskip("fal_client")
import fal_client.client as fal_module  # noqa: E402

from falnb.emulator import EmulatorServer, Faults  # noqa: E402

MODEL = "fal-ai/flux-pro/v1.1-ultra"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, serve_emulator: Callable[..., EmulatorServer]) -> EmulatorServer:
    srv = serve_emulator(latency=0.2, concurrency=1)
    monkeypatch.setattr(fal_module, "QUEUE_URL_FORMAT", srv.url + "/")
    monkeypatch.setattr(fal_module, "RUN_URL_FORMAT", srv.url + "/")
    return srv


@pytest.fixture
def fal(server: EmulatorServer) -> Any:
    return fal_client.SyncClient(key="emulator-key")


def test_submit_status_get(fal: Any, server: EmulatorServer) -> None:
    handle = fal.submit(MODEL, {"prompt": "a fox", "aspect_ratio": "1:1"})
    assert handle.status_url.startswith(server.url + "/fal-ai/flux-pro/requests/")
    status = handle.status(with_logs=True)
    assert isinstance(status, (fal_client.Queued, fal_client.InProgress))
    result = handle.get()
    assert result["images"][0]["width"] == 2048 and result["prompt"] == "a fox"
    done = handle.status(with_logs=True)
    assert isinstance(done, fal_client.Completed) and done.logs and "inference_time" in done.metrics
    assert fal.result(MODEL, handle.request_id) == result  # re-attach by request id (URL rule)
    assert server.emulator.ledger.requests == 1


def test_queued_position_and_cancel(fal: Any, server: EmulatorServer) -> None:
    first = fal.submit(MODEL, {"prompt": "one"})
    second = fal.submit(MODEL, {"prompt": "two"})
    status = second.status()
    assert isinstance(status, fal_client.Queued) and status.position == 0
    second.cancel()
    cancelled = second.status()
    assert isinstance(cancelled, fal_client.Completed) and cancelled.error_type == "client_cancelled"
    with pytest.raises(fal_client.client.FalClientHTTPError) as err:
        second.get()
    assert err.value.status_code == 499
    first.get()
    with pytest.raises(fal_client.client.FalClientHTTPError) as err:
        fal.cancel(MODEL, first.request_id)
    assert err.value.status_code == 400  # ALREADY_COMPLETED
    assert server.emulator.ledger.requests == 1 and server.emulator.ledger.submits == 2


def test_subscribe_with_updates(fal: Any) -> None:
    updates: list[Any] = []
    result = fal.subscribe("bria/text-to-image/3.2", {"prompt": "a boat"}, with_logs=True,
                           on_queue_update=updates.append)
    assert "image" in result and isinstance(updates[-1], fal_client.Completed)


def test_validation_error_surfaces(fal: Any) -> None:
    with pytest.raises(fal_client.client.FalClientHTTPError) as err:
        fal.subscribe("fal-ai/flux/schnell", {"prompt": "x", "num_images": 9})
    assert err.value.status_code == 422 and err.value.message[0]["loc"] == ["body", "num_images"]


def test_retries_ride_out_gateway_errors_and_429(fal: Any, server: EmulatorServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fal_module, "BASE_DELAY", 0.01)
    server.emulator.configure(faults={"seed": 1, "gateway_status_rate": 0.5, "rate_limit_burst": 2})
    result = fal.subscribe("fal-ai/flux/schnell", {"prompt": "x", "image_size": "square"})
    assert result["images"][0]["height"] == 512
    assert server.emulator.ledger.submits == 1


def test_start_timeout_is_honoured(fal: Any, server: EmulatorServer) -> None:
    server.emulator.configure(latency=3.0)
    fal.submit(MODEL, {"prompt": "blocker"})
    handle = fal.submit(MODEL, {"prompt": "late"}, start_timeout=1.5)
    with pytest.raises(fal_client.client.FalClientHTTPError) as err:
        handle.get()
    assert err.value.status_code == 504 and err.value.response_headers["x-fal-request-timeout-type"] == "user"


def test_key_is_required(server: EmulatorServer) -> None:
    server.emulator.configure(api_keys=["only-this"])
    with pytest.raises(fal_client.client.FalClientHTTPError) as err:
        fal_client.SyncClient(key="wrong").submit(MODEL, {"prompt": "x"})
    assert err.value.status_code == 401


def test_faults_type_is_public() -> None:
    assert Faults().rate_limit_burst == 0
