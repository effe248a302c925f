"""The embedded fal emulator: protocol, models, pictures, faults, ledger; in-process and over HTTP."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from falnb.emulator import Emulator, Faults, serve
from falnb.emulator._app import app_of

KEY = {"Authorization": "Key test-key"}
QUEUE = "https://queue.fal.run"

SEED_APPS = {
    "fal-ai/flux-pro/v1.1-ultra": "fal-ai/flux-pro",
    "fal-ai/flux-pro/v1.1": "fal-ai/flux-pro",
    "fal-ai/flux/schnell": "fal-ai/flux",
    "fal-ai/bytedance/seedream/v3/text-to-image": "fal-ai/bytedance",
    "fal-ai/bytedance/dreamina/v3.1/text-to-image": "fal-ai/bytedance",
    "fal-ai/imagen4/preview": "fal-ai/imagen4",
    "fal-ai/recraft/v3/text-to-image": "fal-ai/recraft",
    "fal-ai/ideogram/v3": "fal-ai/ideogram",
    "fal-ai/stable-diffusion-v35-medium": "fal-ai/stable-diffusion-v35-medium",
    "bria/text-to-image/3.2": "bria/text-to-image",
}


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def tick(self, dt: float) -> None:
        self.t += dt


@pytest.fixture
def clock() -> Clock:
    return Clock()


def client(emu: Emulator, **headers: str) -> httpx.Client:
    return httpx.Client(transport=emu.sync_transport(), base_url=QUEUE, headers={**KEY, **headers})


def submit(c: httpx.Client, model: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    r = c.post(f"/{model}", json=body, **kw)
    assert r.status_code == 200, r.text
    assert r.headers["x-fal-request-id"] == r.json()["request_id"]
    data: dict[str, Any] = r.json()
    return data


def run(emu: Emulator, clock: Clock, model: str, body: dict[str, Any]) -> httpx.Response:
    with client(emu) as c:
        sub = submit(c, model, body)
        clock.tick(100)
        assert c.get(sub["status_url"]).status_code == 200
        return c.get(sub["response_url"])


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# -- lifecycle and queue --------------------------------------------------------------------


def test_lifecycle_submit_202_then_200(clock: Clock) -> None:
    emu = Emulator(latency=1.0, clock=clock)
    with client(emu) as c:
        sub = submit(c, "fal-ai/flux/schnell", {"prompt": "a red fox"})
        assert sub["status"] == "IN_QUEUE" and sub["queue_position"] == 0
        assert set(sub) >= {"request_id", "status_url", "response_url", "cancel_url"}
        r = c.get(sub["status_url"])
        assert r.status_code == 202 and r.json()["status"] == "IN_PROGRESS" and r.json()["logs"] is None
        assert c.get(sub["response_url"]).status_code == 400  # not done yet
        clock.tick(1.0)
        r = c.get(sub["status_url"], params={"logs": "1"})
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "COMPLETED" and body["metrics"]["inference_time"] == 1.0
        assert body["logs"] and {"message", "level", "source", "timestamp"} <= set(body["logs"][0])
        out = c.get(sub["response_url"]).json()
        assert out["prompt"] == "a red fox" and out["images"][0]["width"] == 1024


def test_queue_positions_and_logs_under_concurrency(clock: Clock) -> None:
    emu = Emulator(latency=1.0, concurrency=2, clock=clock)
    with client(emu) as c:
        subs = [submit(c, "fal-ai/flux/schnell", {"prompt": f"p{i}"}) for i in range(5)]
        assert [s["queue_position"] for s in subs] == [0, 0, 0, 1, 2]
        states = [c.get(s["status_url"]).json() for s in subs]
        assert [s["status"] for s in states] == ["IN_PROGRESS"] * 2 + ["IN_QUEUE"] * 3
        assert [s.get("queue_position") for s in states[2:]] == [0, 1, 2]
        clock.tick(0.5)
        logs = c.get(subs[0]["status_url"], params={"logs": "true"}).json()["logs"]
        assert 1 < len(logs) < 10  # started, some steps, not done
        clock.tick(0.5)  # first two done, next two running
        states = [c.get(s["status_url"]).json()["status"] for s in subs]
        assert states == ["COMPLETED"] * 2 + ["IN_PROGRESS"] * 2 + ["IN_QUEUE"]
        clock.tick(2.0)
        assert all(c.get(s["status_url"]).status_code == 200 for s in subs)
    assert emu.ledger.requests == 5 and emu.ledger.submits == 5


def test_cancel_queued_moves_the_queue_up_and_running_stops(clock: Clock) -> None:
    emu = Emulator(latency=1.0, concurrency=1, clock=clock)
    with client(emu) as c:
        a, b, d = (submit(c, "fal-ai/flux/schnell", {"prompt": p}) for p in "abd")
        assert c.get(d["status_url"]).json()["queue_position"] == 1
        r = c.put(b["cancel_url"])
        assert r.status_code == 202 and r.json() == {"status": "CANCELLATION_REQUESTED"}
        assert c.get(d["status_url"]).json()["queue_position"] == 0
        cancelled = c.get(b["status_url"]).json()
        assert cancelled["status"] == "COMPLETED" and cancelled["error_type"] == "client_cancelled"
        assert c.get(b["response_url"]).status_code == 499
        clock.tick(0.3)
        assert c.put(a["cancel_url"]).status_code == 202  # running: stops now
        assert c.get(a["status_url"]).json()["status"] == "COMPLETED"
        assert c.get(d["status_url"]).json()["status"] == "IN_PROGRESS"  # took the freed slot
        clock.tick(1.0)
        assert c.put(d["cancel_url"]).json() == {"status": "ALREADY_COMPLETED"}
        assert c.put(d["cancel_url"]).status_code == 400
        assert c.put("/fal-ai/flux/requests/nope/cancel").status_code == 404
    assert emu.ledger.requests == 1 and emu.ledger.submits == 3


@pytest.mark.parametrize("model", sorted(SEED_APPS))
def test_url_rule_for_seed_models(model: str, clock: Clock) -> None:
    emu = Emulator(latency=0.1, clock=clock)
    app = SEED_APPS[model]
    assert app_of(model) == app
    with client(emu) as c:
        sub = submit(c, model, {"prompt": "x"})
        rid = sub["request_id"]
        assert sub["status_url"] == f"{QUEUE}/{app}/requests/{rid}/status"
        assert sub["response_url"] == f"{QUEUE}/{app}/requests/{rid}"
        assert sub["cancel_url"] == f"{QUEUE}/{app}/requests/{rid}/cancel"
        clock.tick(1)
        assert c.get(sub["status_url"]).status_code == 200
        # the full model id, or another app, is not where fal answers
        if model != app:
            assert c.get(f"/{model}/requests/{rid}/status").status_code == 404
        assert c.get(f"/fal-ai/other/requests/{rid}").status_code == 404


def test_workflows_namespace_keeps_prefix() -> None:
    assert app_of("workflows/me/my-flow/sub") == "workflows/me/my-flow"
    assert app_of("comfy/me/flow") == "comfy/me/flow"


def test_unknown_path_and_alias_are_404(clock: Clock) -> None:
    emu = Emulator(clock=clock)
    with client(emu) as c:
        assert c.get("/nothing/here").status_code == 404
        assert c.post("/flux-ultra", json={"prompt": "x"}).status_code == 404  # falnb alias, not a fal id
        assert c.post("/fal_ai/flux/schnell", json={"prompt": "x"}).status_code == 404


def test_auth_required(clock: Clock) -> None:
    emu = Emulator(clock=clock, api_keys={"good"})
    with httpx.Client(transport=emu.sync_transport(), base_url=QUEUE) as c:
        r = c.post("/fal-ai/flux/schnell", json={"prompt": "x"})
        assert r.status_code == 401 and "detail" in r.json()
        r = c.post("/fal-ai/flux/schnell", json={"prompt": "x"}, headers={"Authorization": "Key bad"})
        assert r.status_code == 401
        r = c.post("/fal-ai/flux/schnell", json={"prompt": "x"}, headers={"Authorization": "Key good"})
        assert r.status_code == 200
        assert c.get(r.json()["status_url"]).status_code == 401
    assert emu.ledger.submits == 1


def test_retention_expiry(clock: Clock) -> None:
    emu = Emulator(latency=0.1, clock=clock, retention=10, large_retention=2)
    with client(emu) as c:
        small = submit(c, "fal-ai/flux/schnell", {"prompt": "x"})
        large = submit(c, "fal-ai/flux/schnell", {"prompt": "y", "sync_mode": True})
        clock.tick(1)
        assert c.get(small["response_url"]).status_code == 200
        clock.tick(2)
        assert c.get(large["response_url"]).status_code == 404  # >= 10 KB: short retention
        assert c.get(large["status_url"]).status_code == 404
        assert c.get(small["response_url"]).status_code == 200
        clock.tick(10)
        assert c.get(small["response_url"]).status_code == 404
        assert c.get(small["status_url"]).status_code == 404
    assert emu.ledger.requests == 2  # billed even though never fetched


def test_request_timeout_header(clock: Clock) -> None:
    emu = Emulator(latency=5.0, concurrency=1, clock=clock)
    with client(emu) as c:
        first = submit(c, "fal-ai/flux/schnell", {"prompt": "a"})
        late = submit(c, "fal-ai/flux/schnell", {"prompt": "b"}, headers={"X-Fal-Request-Timeout": "2"})
        clock.tick(2.5)
        st = c.get(late["status_url"]).json()
        assert st["status"] == "COMPLETED" and st["error_type"] == "request_timeout"
        r = c.get(late["response_url"])
        assert r.status_code == 504 and r.headers["x-fal-request-timeout-type"] == "user"
        clock.tick(5)
        assert c.get(first["response_url"]).status_code == 200
    assert emu.ledger.requests == 1


# -- outputs --------------------------------------------------------------------------------


def test_output_shapes_per_model(clock: Clock) -> None:
    emu = Emulator(latency=0.01, clock=clock)
    bria = run(emu, clock, "bria/text-to-image/3.2", {"prompt": "x"}).json()
    assert "images" not in bria and {"url", "width", "height"} <= set(bria["image"]) and "seed" not in bria
    for model in ("fal-ai/recraft/v3/text-to-image", "fal-ai/ideogram/v3"):
        out = run(emu, clock, model, {"prompt": "x"}).json()
        assert "width" not in out["images"][0] and "height" not in out["images"][0]
    assert "seed" in run(emu, clock, "fal-ai/ideogram/v3", {"prompt": "x"}).json()
    assert "seed" not in run(emu, clock, "fal-ai/recraft/v3/text-to-image", {"prompt": "x"}).json()
    imagen = run(emu, clock, "fal-ai/imagen4/preview", {"prompt": "x"}).json()
    assert "seed" not in imagen and "description" in imagen
    assert imagen["images"][0]["content_type"] == "image/png"
    flux = run(emu, clock, "fal-ai/flux-pro/v1.1", {"prompt": "x", "num_images": 2}).json()
    assert len(flux["images"]) == 2 and flux["has_nsfw_concepts"] == [False, False]
    assert {"seed", "timings", "prompt"} <= set(flux)
    seedream = run(emu, clock, "fal-ai/bytedance/seedream/v3/text-to-image", {"prompt": "x"}).json()
    assert "seed" in seedream and "prompt" not in seedream
    other = run(emu, clock, "someone/new-model", {"prompt": "x", "whatever": [1]}).json()
    assert other["images"][0]["width"] == 1024


@pytest.mark.parametrize(("model", "inputs", "size", "fmt"), [
    ("fal-ai/flux/schnell", {"image_size": "portrait_16_9"}, (576, 1024), "JPEG"),
    ("fal-ai/flux/schnell", {"image_size": {"width": 640, "height": 480}, "output_format": "png"},
     (640, 480), "PNG"),
    ("fal-ai/stable-diffusion-v35-medium", {}, (1024, 768), "JPEG"),
    ("fal-ai/imagen4/preview", {"aspect_ratio": "16:9", "output_format": "webp"}, None, "WEBP"),
    ("bria/text-to-image/3.2", {"aspect_ratio": "4:5"}, None, "PNG"),
    ("fal-ai/recraft/v3/text-to-image", {"image_size": "square"}, (512, 512), "WEBP"),
])
def test_exact_pixel_sizes_and_formats(model: str, inputs: dict[str, Any], size: tuple[int, int] | None,
                                       fmt: str, clock: Clock) -> None:
    from falnb.catalog._catalog import default_catalog

    emu = Emulator(latency=0.01, clock=clock)
    spec = default_catalog().resolve(model)
    expected = size or spec.ratio_dims(inputs["aspect_ratio"])
    out = run(emu, clock, model, {"prompt": "sizes", **inputs}).json()
    image = out.get("image") or out["images"][0]
    with client(emu) as c:
        r = c.get(image["url"])
    assert r.status_code == 200 and r.headers["content-type"] == image["content_type"]
    assert len(r.content) == image["file_size"]
    img = decode(r.content)
    assert img.size == expected and img.format == fmt


def test_determinism_and_sync_mode(clock: Clock) -> None:
    emu = Emulator(latency=0.01, clock=clock)
    body = {"prompt": "a lighthouse", "seed": 7, "image_size": "square", "sync_mode": True}
    one = run(emu, clock, "fal-ai/flux/schnell", body).json()["images"][0]["url"]
    two = run(emu, clock, "fal-ai/flux/schnell", body).json()["images"][0]["url"]
    other = run(emu, clock, "fal-ai/flux/schnell", {**body, "prompt": "a desert"}).json()["images"][0]["url"]
    assert one.startswith("data:image/jpeg;base64,")
    assert one == two and one != other
    img = decode(base64.b64decode(one.split(",", 1)[1]))
    assert img.size == (512, 512)


def test_seed_picked_and_returned(clock: Clock) -> None:
    emu = Emulator(latency=0.01, clock=clock)
    a = run(emu, clock, "fal-ai/flux/schnell", {"prompt": "x"}).json()["seed"]
    b = run(emu, clock, "fal-ai/flux/schnell", {"prompt": "x"}).json()["seed"]
    assert isinstance(a, int) and a != b
    assert run(emu, clock, "fal-ai/flux/schnell", {"prompt": "x", "seed": 42}).json()["seed"] == 42


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "inputs", "loc", "typ"), [
    ("fal-ai/flux/schnell", {}, ["body", "prompt"], "missing"),
    ("fal-ai/flux/schnell", {"prompt": "  "}, ["body", "prompt"], "string_too_short"),
    ("fal-ai/flux/schnell", {"prompt": "x", "seed": "abc"}, ["body", "seed"], "int_type"),
    ("fal-ai/flux/schnell", {"prompt": "x", "num_inference_steps": 99}, ["body", "num_inference_steps"],
     "less_than_equal"),
    ("fal-ai/flux/schnell", {"prompt": "x", "num_images": 5}, ["body", "num_images"], "less_than_equal"),
    ("fal-ai/flux/schnell", {"prompt": "x", "image_size": "huge"}, ["body", "image_size"], "literal_error"),
    ("fal-ai/flux-pro/v1.1", {"prompt": "x", "safety_tolerance": 2}, ["body", "safety_tolerance"],
     "string_type"),
    ("fal-ai/flux-pro/v1.1", {"prompt": "x", "output_format": "gif"}, ["body", "output_format"],
     "literal_error"),
    ("fal-ai/flux-pro/v1.1-ultra", {"prompt": "x", "aspect_ratio": "5:4"}, ["body", "aspect_ratio"],
     "literal_error"),
    ("fal-ai/bytedance/seedream/v3/text-to-image",
     {"prompt": "x", "image_size": {"width": 256, "height": 800}},
     ["body", "image_size", "width"], "greater_than_equal"),
    ("fal-ai/recraft/v3/text-to-image", {"prompt": "x", "num_images": 2}, ["body", "num_images"],
     "extra_forbidden"),
    ("bria/text-to-image/3.2", {"prompt": "x", "num_inference_steps": 10}, ["body", "num_inference_steps"],
     "greater_than_equal"),
    ("fal-ai/ideogram/v3", {"prompt": "x", "rendering_speed": "FAST"}, ["body", "rendering_speed"],
     "literal_error"),
])
def test_validation_422(model: str, inputs: dict[str, Any], loc: list[str], typ: str, clock: Clock) -> None:
    emu = Emulator(latency=0.01, clock=clock)
    r = run(emu, clock, model, inputs)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert any(d["loc"] == loc and d["type"] == typ and "msg" in d for d in detail), detail
    assert emu.ledger.requests == 0 and emu.ledger.submits == 1


def test_valid_sub_style_and_bill_validation_errors(clock: Clock) -> None:
    emu = Emulator(latency=0.01, clock=clock, bill_validation_errors=True)
    style = {"style": "digital_illustration/pixel_art"}
    ok = run(emu, clock, "fal-ai/recraft/v3/text-to-image", {"prompt": "x", **style})
    assert ok.status_code == 200
    assert run(emu, clock, "fal-ai/flux/schnell", {"prompt": ""}).status_code == 422
    assert emu.ledger.requests == 2 and emu.ledger.entries[1].status == 422


def test_content_policy(clock: Clock) -> None:
    emu = Emulator(latency=0.01, clock=clock, faults=Faults(content_policy_words=("badword",)))
    r = run(emu, clock, "fal-ai/flux/schnell", {"prompt": "a BadWord here"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "content_policy_violation"
    assert emu.ledger.requests == 0


# -- faults -------------------------------------------------------------------------------


def test_rate_limit_burst(clock: Clock) -> None:
    emu = Emulator(clock=clock, faults=Faults(rate_limit_burst=2))
    with client(emu) as c:
        codes = [c.post("/fal-ai/flux/schnell", json={"prompt": "x"}).status_code for _ in range(3)]
    assert codes == [429, 429, 200] and emu.ledger.submits == 1
    emu.configure(rate_limit_burst=1)
    with client(emu) as c:
        assert c.post("/fal-ai/flux/schnell", json={"prompt": "x"}).status_code == 429


def test_gateway_errors_per_endpoint(clock: Clock) -> None:
    emu = Emulator(latency=0.01, clock=clock, faults=Faults(gateway_submit_rate=1.0))
    with client(emu) as c:
        r = c.post("/fal-ai/flux/schnell", json={"prompt": "x"})
        assert r.status_code in (502, 503, 504) and "nginx" in r.text and "x-fal-request-id" not in r.headers
        assert emu.ledger.submits == 0
        emu.configure(gateway_submit_rate=0.0, gateway_status_rate=1.0)
        sub = submit(c, "fal-ai/flux/schnell", {"prompt": "x"})
        assert "nginx" in c.get(sub["status_url"]).text
        emu.configure(gateway_status_rate=0.0, gateway_result_rate=1.0)
        clock.tick(1)
        assert c.get(sub["status_url"]).status_code == 200
        assert c.get(sub["response_url"]).status_code in (502, 503, 504)


def test_server_error_rate_is_deterministic(clock: Clock) -> None:
    def codes(seed: int) -> list[int]:
        emu = Emulator(latency=0.01, clock=clock, faults=Faults(seed=seed, server_error_rate=0.5))
        with client(emu) as c:
            sub = submit(c, "fal-ai/flux/schnell", {"prompt": "x"})
            clock.tick(1)
            out = [c.get(sub["status_url"]) for _ in range(20)]
        errors = [r for r in out if r.status_code == 500]
        assert errors and errors[0].json()["error_type"] == "runner_server_error"
        assert errors[0].headers["x-fal-error-type"] == "runner_server_error"
        return [r.status_code for r in out]

    first = codes(3)
    assert first == codes(3) and 200 in first


def test_dropped_status_in_process(clock: Clock) -> None:
    emu = Emulator(clock=clock, faults=Faults(drop_status_rate=1.0))
    with client(emu) as c:
        sub = submit(c, "fal-ai/flux/schnell", {"prompt": "x"})
        with pytest.raises(httpx.RemoteProtocolError):
            c.get(sub["status_url"])


def test_submit_answer_delay_lost_answer_still_bills() -> None:
    emu = Emulator(latency=0.01, faults=Faults(submit_answer_delay=0.5))

    async def go() -> None:
        async with httpx.AsyncClient(transport=emu.transport(), base_url=QUEUE, headers=KEY) as c:
            with pytest.raises(httpx.ReadTimeout):
                await c.post("/fal-ai/flux/schnell", json={"prompt": "x"}, timeout=0.1)

    asyncio.run(go())
    assert emu.ledger.submits == 1
    emu.configure(submit_answer_delay=0.0)
    import time

    time.sleep(0.05)
    assert emu.ledger.requests == 1


def test_infra_error_fraction(clock: Clock) -> None:
    emu = Emulator(latency=0.01, clock=clock, faults=Faults(infra_error_rate=1.0))
    with client(emu) as c:
        sub = submit(c, "fal-ai/flux/schnell", {"prompt": "x"})
        clock.tick(1)
        st = c.get(sub["status_url"]).json()
        assert st["status"] == "COMPLETED" and st["error_type"] == "runner_server_error"
        r = c.get(sub["response_url"])
        assert r.status_code == 500 and r.headers["x-fal-request-id"] == sub["request_id"]
    assert emu.ledger.requests == 0


def test_a_model_down_fails_while_the_others_work(clock: Clock) -> None:
    emu = Emulator(latency=0.01, clock=clock)
    emu.configure(infra_error_models=["fal-ai/imagen4/preview"])
    assert emu.knobs()["faults"]["infra_error_models"] == ["fal-ai/imagen4/preview"]
    with client(emu) as c:
        down = submit(c, "fal-ai/imagen4/preview", {"prompt": "x"})
        up = submit(c, "fal-ai/flux/schnell", {"prompt": "x"})
        clock.tick(1)
        assert c.get(down["response_url"]).status_code == 500
        assert c.get(up["response_url"]).status_code == 200
    assert emu.ledger.requests == 1  # (the failed generation is not billed)
    with pytest.raises(ValueError, match="list of strings"):
        emu.configure(infra_error_models="fal-ai/imagen4/preview")


def test_model_latency_override(clock: Clock) -> None:
    emu = Emulator(latency=1.0, model_latency={"fal-ai/flux/schnell": 0.1}, clock=clock)
    with client(emu) as c:
        fast = submit(c, "fal-ai/flux/schnell", {"prompt": "x"})
        slow = submit(c, "fal-ai/flux-pro/v1.1", {"prompt": "x"})
        clock.tick(0.2)
        assert c.get(fast["status_url"]).status_code == 200
        assert c.get(slow["status_url"]).status_code == 202


# -- ledger and control ------------------------------------------------------------------


def test_ledger_counts_and_cost(clock: Clock) -> None:
    emu = Emulator(latency=0.01, clock=clock)
    run(emu, clock, "fal-ai/flux-pro/v1.1-ultra", {"prompt": "x", "num_images": 2})
    run(emu, clock, "fal-ai/ideogram/v3", {"prompt": "x", "rendering_speed": "QUALITY"})
    led = emu.ledger
    assert (led.submits, led.requests, led.images) == (2, 2, 3)
    assert led.cost == pytest.approx(0.06 * 2 + 0.09)
    assert [e.model for e in led.entries] == ["fal-ai/flux-pro/v1.1-ultra", "fal-ai/ideogram/v3"]
    emu.reset()
    assert emu.ledger.requests == 0 and emu.ledger.submits == 0


def test_control_endpoints(clock: Clock) -> None:
    emu = Emulator(latency=0.01, clock=clock)
    run(emu, clock, "fal-ai/flux/schnell", {"prompt": "x"})
    with httpx.Client(transport=emu.sync_transport(), base_url=QUEUE) as c:
        led = c.get("/_emulator/ledger").json()
        assert led["requests"] == 1 and led["entries"][0]["model"] == "fal-ai/flux/schnell"
        r = c.post("/_emulator/config", json={"latency": 3, "faults": {"rate_limit_burst": 1}})
        assert r.status_code == 200 and r.json()["latency"] == 3.0 and emu.faults.rate_limit_burst == 1
        assert c.post("/_emulator/config", json={"nope": 1}).status_code == 400
        assert c.post("/_emulator/reset").status_code == 200
        assert c.get("/_emulator/ledger").json()["submits"] == 0


# -- status stream -----------------------------------------------------------------------


def test_status_stream_in_process() -> None:
    emu = Emulator(latency=0.1, concurrency=1)

    async def go() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(transport=emu.transport(), base_url=QUEUE, headers=KEY) as c:
            await c.post("/fal-ai/flux/schnell", json={"prompt": "first"})
            sub = (await c.post("/fal-ai/flux/schnell", json={"prompt": "x"})).json()
            events = []
            async with c.stream("GET", sub["status_url"] + "/stream") as r:
                assert r.headers["content-type"] == "text/event-stream"
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
            return events

    events = asyncio.run(go())
    assert [e["status"] for e in events] == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]


# -- over real HTTP ----------------------------------------------------------------------


@pytest.fixture
def server(serve_emulator: Callable[..., Any]) -> Any:
    return serve_emulator(latency=0.05, concurrency=1)


def test_http_lifecycle_files_and_stream(serve_emulator: Callable[..., Any], clock: Clock) -> None:
    # the emulator's clock is the test's: the second request is queued until the test moves time on
    server = serve_emulator(Emulator(latency=0.05, concurrency=1, clock=clock))
    with httpx.Client(base_url=server.url, headers=KEY, timeout=5) as c:
        sub = submit(c, "fal-ai/bytedance/seedream/v3/text-to-image", {"prompt": "x"})
        assert sub["status_url"].startswith(server.url + "/fal-ai/bytedance/requests/")
        second = submit(c, "fal-ai/flux/schnell", {"prompt": "y", "image_size": "square"})
        assert second["queue_position"] == 0 and c.get(second["status_url"]).json()["status"] == "IN_QUEUE"
        clock.tick(1)
        with c.stream("GET", second["status_url"] + "/stream", params={"logs": 1}) as r:
            events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
        assert events[-1]["status"] == "COMPLETED" and events[-1]["logs"]
        assert c.get(sub["status_url"]).status_code == 200
        image = c.get(second["response_url"]).json()["images"][0]
        assert image["url"].startswith(server.url + "/files/")
        assert decode(c.get(image["url"]).content).size == (512, 512)
        assert c.get("/_emulator/ledger").json()["requests"] == 2
        assert c.get("/no/such/path/at/all").status_code == 404
    assert server.emulator.ledger.requests == 2


def test_http_dropped_connection_and_delay(server: Any) -> None:
    server.emulator.configure(drop_status_rate=1.0)
    with httpx.Client(base_url=server.url, headers=KEY, timeout=5) as c:
        sub = submit(c, "fal-ai/flux/schnell", {"prompt": "x"})
        with pytest.raises(httpx.RemoteProtocolError):
            c.get(sub["status_url"])
    server.emulator.configure(drop_status_rate=0.0, submit_answer_delay=1.0)
    with httpx.Client(base_url=server.url, headers=KEY, timeout=0.2) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.post("/fal-ai/flux/schnell", json={"prompt": "x"})
    assert server.emulator.ledger.submits == 2


def test_http_port_is_free_after_close() -> None:
    srv = serve(port=0)
    port = srv.port
    srv.close()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_cli_main_parses_and_fails_cleanly_on_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    from falnb.emulator._server import main

    with serve(port=0) as busy:
        assert main(["--port", str(busy.port), "--latency", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "cannot listen" in err and "in use" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv,says", [(["--port", "99999"], "out of range"), (["--port", "-1"], "out of range"),
                                       (["--port", "http"], "not a whole number"),
                                       (["--latency", "-2"], "--latency"), (["--latency", "nan"], "--latency"),
                                       (["--concurrency", "0"], "at least 1"), (["--bogus"], "unrecognized")])
def test_cli_mistakes_are_one_line_and_exit_2(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    from falnb.emulator._server import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "usage:" not in err


def test_serve_refuses_a_port_out_of_range() -> None:
    for port in (65536, -1):
        with pytest.raises(ValueError, match="0 to 65535"):
            serve(port=port)


def test_knob_properties_and_received_inputs(clock: Clock) -> None:
    emu = Emulator(latency=1.0, clock=clock)
    emu.latency = 0.5
    emu.concurrency = 1
    assert emu.knobs()["latency"] == 0.5 and emu.settings.concurrency == 1
    with client(emu) as c:
        submit(c, "fal-ai/flux/schnell", {"prompt": "x", "seed": 3})
    assert [j.input for j in emu.requests()] == [{"prompt": "x", "seed": 3}]
    with pytest.raises(ValueError):
        emu.configure(concurrency=0)
