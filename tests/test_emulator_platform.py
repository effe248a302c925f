"""The emulator's platform API over real HTTP (issue 13 item 7), and falnb's client of it (``PlatformAPI``):
the model list (find, search, paging, the 10-item cap with expand), per-endpoint ``openapi.json``, prices
(401 without a key), ``x-fal-billable-units`` on results, and the failure modes with short messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from falnb import AuthenticationError, FalError, RateLimitError
from falnb.catalog._store import SchemaUnavailable
from falnb.emulator import Emulator
from falnb.fal._config import Key
from falnb.fal._platform import PlatformAPI


@pytest.fixture
def server(serve_emulator: Callable[..., Any]) -> Any:
    return serve_emulator(Emulator(latency=0.0))


def api(server: Any, key: str | None = "k") -> PlatformAPI:
    return PlatformAPI(server.url, key=lambda: Key(key, "test") if key else None)


def test_find_search_and_paging(server: Any) -> None:
    found = httpx.get(f"{server.url}/v1/models", params=[("endpoint_id", "fal-ai/flux/schnell"),
                                                          ("endpoint_id", "fal-ai/nano-banana/edit")]).json()
    assert [m["endpoint_id"] for m in found["models"]] == ["fal-ai/flux/schnell", "fal-ai/nano-banana/edit"]
    assert found["has_more"] is False and "openapi" not in found["models"][0]
    edits = api(server).models(category="image-to-image")
    assert {m["endpoint_id"] for m in edits["models"]} >= {"fal-ai/nano-banana/edit", "fal-ai/bria/background/remove"}
    assert api(server).models(q="background")["models"][0]["endpoint_id"] == "fal-ai/bria/background/remove"
    assert [m["endpoint_id"] for m in api(server).models(status="deprecated")["models"]] == [
        "fal-ai/emulator/legacy-diffusion"]
    seen: list[str] = []
    cursor = None
    while True:
        page = api(server).models(limit=4, cursor=cursor)
        seen += [m["endpoint_id"] for m in page["models"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen)) == 17  # the seed ten and seven fixtures


def test_expand_caps_a_page_at_ten(server: Any) -> None:
    page = httpx.get(f"{server.url}/v1/models", params={"expand": "openapi-3.0"}).json()
    assert len(page["models"]) == 10 and page["has_more"] and page["models"][0]["openapi"]["openapi"] == "3.0.4"
    too_many = httpx.get(f"{server.url}/v1/models", params={"expand": "openapi-3.0", "limit": 11})
    assert too_many.status_code == 400 and too_many.json()["error"]["type"] == "validation_error"


def test_openapi_json_per_endpoint(server: Any) -> None:
    url = f"{server.url}/api/openapi/queue/openapi.json"
    doc = httpx.get(url, params={"endpoint_id": "fal-ai/nano-banana/edit"}).json()
    assert doc["info"]["x-fal-metadata"]["endpointId"] == "fal-ai/nano-banana/edit"
    assert httpx.get(url, params={"endpoint_id": "fal-ai/none/such"}).status_code == 404
    got = api(server).openapi("fal-ai/emulator/quirky-square")
    assert got is not None and got["info"]["x-falnb-model"]["status"] == "active"
    assert api(server).openapi("fal-ai/none/such") is None


def test_prices_need_a_key(server: Any) -> None:
    bare = httpx.get(f"{server.url}/v1/models/pricing", params={"endpoint_id": "fal-ai/flux/schnell"})
    assert bare.status_code == 401 and bare.json()["error"]["type"] == "authorization_error"
    with pytest.raises(AuthenticationError, match="need a key"):
        api(server, key=None).pricing(["fal-ai/flux/schnell"])
    prices = api(server).pricing(["fal-ai/flux/schnell", "fal-ai/nano-banana/edit", "fal-ai/none/such"])
    assert prices["fal-ai/flux/schnell"].unit == "megapixels" and prices["fal-ai/flux/schnell"].unit_price == 0.003
    assert prices["fal-ai/nano-banana/edit"].unit_price == 0.039 and "fal-ai/none/such" not in prices


def test_prices_over_several_pages_are_all_read(server: Any) -> None:
    # fal-platform.md: the pricing answer pages ({prices, next_cursor, has_more}); falnb read the first page
    # only, so `falnb models --prices` showed no price for the rest
    server.emulator.platform.faults = {"pricing_page": 2}
    ids = ["fal-ai/flux/schnell", "fal-ai/nano-banana/edit", "fal-ai/emulator/quirky-square"]
    first = httpx.get(f"{server.url}/v1/models/pricing", params={"endpoint_id": ",".join(ids)},
                      headers={"Authorization": "Key k"}).json()
    assert len(first["prices"]) == 2 and first["has_more"] is True and first["next_cursor"]
    assert sorted(api(server).pricing(ids)) == sorted(ids)


def test_failure_modes_are_short(server: Any) -> None:
    emu = server.emulator
    emu.platform.faults = {"pricing": 429}
    with pytest.raises(RateLimitError, match="rate limited") as info:
        api(server).pricing(["fal-ai/flux/schnell"])
    assert "\n" not in info.value.message
    emu.platform.faults = {"pricing": "truncated"}
    with pytest.raises(FalError, match="cut short"):
        api(server).pricing(["fal-ai/flux/schnell"])
    emu.platform.faults = {"models": "truncated"}
    with pytest.raises(SchemaUnavailable, match="cut short"):
        api(server).openapi("fal-ai/emulator/quirky-square")
    emu.platform.faults = {"models": 429}
    with pytest.raises(SchemaUnavailable, match="429"):
        api(server).openapi("fal-ai/emulator/quirky-square")
    with pytest.raises(SchemaUnavailable, match="could not be reached"):
        PlatformAPI("http://127.0.0.1:9").openapi("fal-ai/emulator/quirky-square")


def test_results_carry_billable_units(serve_emulator: Callable[..., Any]) -> None:
    now = [1000.0]
    server = serve_emulator(Emulator(latency=1.0, clock=lambda: now[0]))
    server.emulator.platform.faults = {"billable_units": 1.0}
    headers = {"Authorization": "Key k"}

    def billed(model: str, body: dict[str, Any]) -> str | None:
        sub = httpx.post(f"{server.url}/{model}", json=body, headers=headers).json()
        now[0] += 100  # done, by the emulator's clock
        res = httpx.get(sub["response_url"], headers=headers)
        assert res.status_code == 200, res.text
        return res.headers.get("x-fal-billable-units")

    assert billed("fal-ai/flux/schnell", {"prompt": "x", "image_size": "square_hd", "num_images": 2}) == "2"
    assert billed("fal-ai/ideogram/v3", {"prompt": "x", "rendering_speed": "QUALITY"}) == "1.50000000"
    server.emulator.platform.faults = {"billable_units": None}
    assert billed("fal-ai/flux/schnell", {"prompt": "x"}) is None


def test_falnb_models_searches_fals_list(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                         serve_emulator: Callable[..., Any]) -> None:
    from falnb._cli import main

    server = serve_emulator(Emulator(latency=0.0))
    monkeypatch.setenv("FALNB_QUEUE_URL", server.url)
    monkeypatch.setenv("FAL_KEY", "k")
    assert main(["models", "--search", "edit", "--category", "image-to-image", "--prices"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["fal-ai/nano-banana/edit", "fal-ai/bria/background/remove",
                                                  "fal-ai/emulator/multi-edit"]
    assert all(line.split()[1] == "image-to-image" for line in out) and "$0.039/image" in out[0]
    assert main(["models", "--status", "deprecated"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("DEPRECATED")
    assert main(["models"]) == 0  # no filter: falnb's own catalogue, no network
    assert "fal-ai/flux/schnell" in capsys.readouterr().out
    server.emulator.platform.faults = {"models": 429}
    assert main(["models", "--search", "edit"]) == 1
    said = capsys.readouterr().out.strip()
    assert said == "falnb models: fal's model list: rate limited by fal (429); try again shortly"
