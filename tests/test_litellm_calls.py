"""``falnb.image_generation`` / ``aimage_generation``: LiteLLM's arguments, URLs that work, falnb's errors.

Where a socket is crossed (fal's URLs, a key fal refuses) the emulator is served over real HTTP; the rest
runs on an explicit offline client.  Time is moved by hand (``_litellm._clock``), never waited for.
"""

from __future__ import annotations

import asyncio
import base64
from collections import OrderedDict
from typing import Any

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell

import falnb
from falnb import _litellm
from falnb.emulator import Emulator
from falnb.results._image import FAL_URL_LIFETIME
from tests._cells import run

ULTRA = "fal_ai/fal-ai/flux-pro/v1.1-ultra"


@pytest.fixture(autouse=True)
def _own_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_litellm, "_CLIENTS", OrderedDict())  # clients made for api_key/api_base: this test's


@pytest.fixture
def emu() -> Emulator:
    return Emulator(latency=0.0, concurrency=4)


def data_bytes(url: str) -> bytes:
    head, _, body = url.partition(",")
    assert head.startswith("data:image/") and head.endswith(";base64")
    return base64.b64decode(body, validate=True)


# -- URLs that work when they are returned ----------------------------------------------------------------

def test_fal_url_while_fal_keeps_the_file_then_a_data_uri(serve_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve_emulator(latency=0.0)
    first = falnb.image_generation("a lighthouse", model=ULTRA, api_key="k", api_base=server.url, seed=3)
    url = first.data[0].url
    assert url.startswith(server.url + "/files/")
    assert httpx.get(url).content == first.generation.images[0].data  # fal's URL opens to the picture
    between = _litellm._clock()

    again = falnb.image_generation("a lighthouse", model=ULTRA, api_key="k", api_base=server.url, seed=3)
    assert again._hidden_params["cached"] is True and again._hidden_params["response_cost"] == 0.0
    made = again.generation.made
    assert made is not None and made <= between  # a hit is as old as its entry, not as the call
    assert again.data[0].url == url  # fal still keeps it

    # a week after fal made it: fal's file may be gone, the cache's bytes are not
    monkeypatch.setattr(_litellm, "_clock", lambda: made + FAL_URL_LIFETIME + 1)
    late = falnb.image_generation("a lighthouse", model=ULTRA, api_key="k", api_base=server.url, seed=3)
    assert data_bytes(late.data[0].url) == first.generation.images[0].data
    monkeypatch.setattr(_litellm, "_clock", lambda: made + FAL_URL_LIFETIME - 60)
    assert falnb.image_generation("a lighthouse", model=ULTRA, api_key="k", api_base=server.url,
                                  seed=3).data[0].url == url
    assert server.emulator.ledger.requests == 1  # paid once for all four


def test_a_hit_is_dated_by_its_cache_entry(client: falnb.Client) -> None:
    falnb.image_generation("a hare", model="schnell", client=client, seed=1)
    hit = falnb.image_generation("a hare", model="schnell", client=client, seed=1)
    key = client.plan("a hare", model="schnell", seed=1).requests[0].key
    entry = client.cache.get(key) if client.cache is not None else None
    assert entry is not None and hit.generation.made == entry.created


def test_sync_mode_answers_are_data_uris(serve_emulator: Any) -> None:
    server = serve_emulator(latency=0.0)
    r = falnb.image_generation("a hare", model="fal_ai/fal-ai/flux/schnell", api_key="k", api_base=server.url,
                               sync_mode=True)
    assert data_bytes(r.data[0].url) == r.generation.images[0].data


def test_offline_urls_are_data_uris(client: falnb.Client) -> None:
    r = falnb.image_generation("an owl", model="flux-ultra", client=client)
    assert data_bytes(r.data[0].url) == r.generation.images[0].data


def test_b64_json(client: falnb.Client) -> None:
    r = falnb.image_generation("an owl", model="schnell", client=client, response_format="b64_json", n=2)
    assert [d.url for d in r.data] == [None, None]
    assert [base64.b64decode(d.b64_json) for d in r.data] == [i.data for i in r.generation.images]
    assert r.model_dump()["data"][1]["b64_json"] == r.data[1]["b64_json"]


def test_model_dump_options_and_model_dump_json_as_pydantic(client: falnb.Client) -> None:
    """LiteLLM's response is pydantic: ``model_dump(exclude_none=True)`` drops the None fields (falnb kept
    them: every option was ignored), ``include``/``exclude`` pick fields, ``model_dump_json()`` exists."""
    import json

    r = falnb.image_generation("an owl", model="schnell", client=client)
    lean = r.model_dump(exclude_none=True)
    assert "background" not in lean and "b64_json" not in lean["data"][0] and lean["data"][0]["url"]
    assert set(r.model_dump(include={"created", "data"})) == {"created", "data"}
    assert "usage" not in r.model_dump(exclude={"usage"}) and "created" in r.model_dump(exclude={"usage"})
    assert json.loads(r.model_dump_json()) == r.model_dump()
    assert json.loads(r.model_dump_json(exclude_none=True, indent=2)) == lean
    assert json.loads(r.data[0].model_dump_json(exclude_none=True)) == lean["data"][0]


# -- LiteLLM's arguments ------------------------------------------------------------------------------------

def test_n_and_size_use_falnb_mapping(client: falnb.Client, emu: Emulator) -> None:
    """LiteLLM drops n for Recraft and sends a portrait 900x1200 to flux ultra as 16:9; falnb does neither."""
    recraft = falnb.image_generation("a fox", model="fal_ai/fal-ai/recraft/v3/text-to-image", client=client, n=2,
                                     size="1024x1024", style="realistic_image")
    assert len(recraft.data) == 2 and emu.ledger.requests == 2
    portrait = falnb.image_generation("a fox", model="flux-ultra", client=client, size="900x1200")
    fields = portrait.data[0].provider_specific_fields
    assert fields["height"] > fields["width"] and portrait.generation.inputs[0]["aspect_ratio"] == "3:4"


def test_model_names_as_litellm_writes_them_bare_ids_and_aliases(client: falnb.Client) -> None:
    for model in ("fal_ai/fal-ai/flux/schnell", "fal-ai/flux/schnell", "schnell"):
        r = falnb.image_generation("a fox", model, client=client, seed=5)
        assert r.generation.model == "fal-ai/flux/schnell" and r._hidden_params["litellm_model_name"] == model
    r = falnb.image_generation("a fox", "fal-ai/flux/schnell", client=client, custom_llm_provider="fal_ai", seed=5)
    assert r._hidden_params["cached"] is True  # the same request, however it is named


def test_bookkeeping_arguments_are_ignored(client: falnb.Client) -> None:
    r = falnb.image_generation("a fox", model="schnell", client=client, user="alice", metadata={"team": "x"},
                               num_retries=3, caching=False, timeout=httpx.Timeout(30.0))
    sent = r.generation.inputs[0]
    assert not {"user", "metadata", "num_retries", "caching", "timeout"} & set(sent)


def test_drop_params_drops_quality_and_a_style_the_model_lacks(client: falnb.Client, emu: Emulator,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """LiteLLM drops an unsupported ``quality``/``style`` with ``drop_params=True`` (per call or module-wide,
    as its own error says to set) and the picture is made; falnb refused them."""
    r = falnb.image_generation("a fox", model="schnell", client=client, quality="hd", style="vivid",
                               drop_params=True, seed=1)
    assert not {"quality", "style"} & set(r.generation.inputs[0]) and emu.ledger.requests == 1
    recraft = falnb.image_generation("a fox", model="fal_ai/fal-ai/recraft/v3/text-to-image", client=client,
                                     style="realistic_image", drop_params=True)
    assert recraft.generation.inputs[0]["style"] == "realistic_image"  # a style the model has is kept
    monkeypatch.setattr(falnb, "drop_params", True, raising=False)  # ``litellm.drop_params = True``
    again = falnb.image_generation("a fox", model="schnell", client=client, quality="hd", seed=1)
    assert again._hidden_params["cached"]
    with pytest.raises(falnb.ParameterError):  # the call's own drop_params=False wins
        falnb.image_generation("a fox", model="schnell", client=client, quality="hd", drop_params=False)


def test_api_base_is_fals_queue() -> None:
    q = _litellm._queue_url
    assert q(None) is None
    assert q("https://fal.run") == q("https://fal.run/") == "https://queue.fal.run"
    assert q("https://queue.fal.run") == "https://queue.fal.run"
    assert q("http://127.0.0.1:8765/_sync") == "http://127.0.0.1:8765"


def test_api_key_and_api_base_reach_fal(serve_emulator: Any) -> None:
    server = serve_emulator(Emulator(latency=0.0, api_keys={"right"}))
    with pytest.raises(falnb.AuthenticationError):
        falnb.image_generation("a fox", model="schnell", api_key="wrong", api_base=server.url)
    r = falnb.image_generation("a fox", model="schnell", api_key="right", api_base=server.url + "/_sync")
    assert r._hidden_params["api_base"] == server.url and len(_litellm._CLIENTS) == 2
    falnb.image_generation("a hare", model="schnell", api_key="right", api_base=server.url)
    assert len(_litellm._CLIENTS) == 2  # one client (one pool, one cache) per key and queue


def test_litellm_cache_controls(client: falnb.Client, emu: Emulator) -> None:
    falnb.image_generation("a fox", model="schnell", client=client, seed=2)
    falnb.image_generation("a fox", model="schnell", client=client, seed=2, cache={"no-cache": True})
    assert emu.ledger.requests == 2  # no-cache: paid again, and stored
    assert falnb.image_generation("a fox", model="schnell", client=client, seed=2)._hidden_params["cached"]
    falnb.image_generation("a cat", model="schnell", client=client, seed=2, cache={"no-store": True})
    assert not falnb.image_generation("a cat", model="schnell", client=client, seed=2)._hidden_params["cached"]


def test_async_calls_run_together(client: falnb.Client, emu: Emulator) -> None:
    async def three() -> list[falnb.ImageResponse]:
        return list(await asyncio.gather(*(falnb.aimage_generation(p, model="schnell", client=client)
                                           for p in ("a fox", "a hare", "an owl"))))

    results = asyncio.run(three())
    assert [r.generation.prompt for r in results] == ["a fox", "a hare", "an owl"]
    assert emu.ledger.requests == 3


# -- mistakes: falnb's classes, short, nothing sent ---------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error"), [
    ({"model": None}, falnb.ParameterError),
    ({"model": "flux-ultraa"}, falnb.UnknownModelError),
    ({"quality": "hd"}, falnb.ParameterError),
    ({"style": "vivid"}, falnb.ParameterError),
    ({"size": "banana"}, falnb.SizeError),
    ({"response_format": "png"}, falnb.ParameterError),
    ({"timeout": -1}, falnb.ParameterError),
    ({"timeout": "soon"}, falnb.ParameterError),
    ({"safety_tolerance": "9"}, falnb.ParameterError),
    ({"mock_response": "an image"}, falnb.ParameterError),
    ({"custom_llm_provider": "openai"}, falnb.ParameterError),
    ({"client": "my http client"}, falnb.ParameterError),
    ({"cache": {"no-cahce": True}}, falnb.ParameterError),
])
def test_mistakes_are_short_falnb_errors_and_cost_nothing(kwargs: dict[str, Any], error: type[Exception],
                                                         client: falnb.Client, emu: Emulator) -> None:
    call: dict[str, Any] = {"model": ULTRA, "client": client, **kwargs}
    with pytest.raises(error) as caught:
        falnb.image_generation("a fox", **call)
    assert isinstance(caught.value, falnb.FalnbError)
    assert len(str(caught.value).splitlines()) <= 2 and len(str(caught.value)) < 300
    assert emu.ledger.submits == 0


# -- in a notebook -------------------------------------------------------------------------------------------

def test_response_shows_its_pictures_inline(client: falnb.Client) -> None:
    shell = InteractiveShell.instance()
    shell.user_ns["r"] = falnb.image_generation("a fox", model="schnell", client=client, n=2)
    cell = run(shell, "r")
    assert cell.ok and cell.images()
    texts = [str(v) for out in cell.notebook for k, v in out.items() if k.startswith("text/")]
    assert not any("base64" in t for t in texts)
    assert sum(len(str(v)) for out in cell.notebook for v in out.values()) < 400_000  # a preview, not the PNGs
    assert len(repr(shell.user_ns["r"])) < 300
