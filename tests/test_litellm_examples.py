"""LiteLLM's fal page, run by falnb: each Python example with only ``import litellm`` changed.

The examples are copied from LiteLLM's documentation, ``docs/my-website/docs/providers/fal_ai.md`` of
BerriAI/litellm at commit 07f877217ae45a016b41f742e57085e4e6b2d5e6 (MIT licence), section "Image
Generation / Usage - LiteLLM Python SDK" (tabs Basic Usage, Imagen 4, Recraft v3, Async Usage, Advanced
Parameters) and section "Using Model-Specific Parameters".  They are verbatim except that whitespace-only
lines are empty; the test itself replaces ``import litellm`` by ``import falnb as litellm`` and nothing else.

They run offline (``FALNB_OFFLINE=1``: the embedded emulator, a fresh one per test, and a fresh cache), and
each is checked for its pictures (decoded from the returned URLs: the sizes, the parameters fal received)
and for the response's shape.  The last test runs LiteLLM itself against the same emulator over real HTTP
and compares its ImageResponse with falnb's, field by field.
"""

from __future__ import annotations

import base64
import io
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import pytest

import falnb
from falnb.emulator import Emulator

SOURCE = ("BerriAI/litellm docs/my-website/docs/providers/fal_ai.md @ 07f877217ae45a016b41f742e57085e4e6b2d5e6")

EXAMPLES = {
    "basic": '''\
import litellm
import os

# Set your API key
os.environ["FAL_AI_API_KEY"] = "your-fal-api-key"

# Generate an image
response = litellm.image_generation(
    model="fal_ai/fal-ai/flux-pro/v1.1-ultra",
    prompt="A serene mountain landscape at sunset with vibrant colors"
)

print(response.data[0].url)
''',
    "imagen4": '''\
import litellm
import os

os.environ["FAL_AI_API_KEY"] = "your-fal-api-key"

# Generate with Imagen 4
response = litellm.image_generation(
    model="fal_ai/fal-ai/imagen4/preview",
    prompt="A vintage 1960s kitchen with flour package on countertop",
    aspect_ratio="16:9",
    num_images=1
)

print(response.data[0].url)
''',
    "recraft": '''\
import litellm
import os

os.environ["FAL_AI_API_KEY"] = "your-fal-api-key"

# Generate with specific style
response = litellm.image_generation(
    model="fal_ai/fal-ai/recraft/v3/text-to-image",
    prompt="A red panda eating bamboo",
    style="realistic_image",
    image_size="landscape_4_3"
)

print(response.data[0].url)
''',
    "async": '''\
import litellm
import asyncio
import os

async def generate_image():
    os.environ["FAL_AI_API_KEY"] = "your-fal-api-key"

    response = await litellm.aimage_generation(
        model="fal_ai/fal-ai/stable-diffusion-v35-medium",
        prompt="A cyberpunk cityscape with neon lights",
        guidance_scale=7.5,
        num_inference_steps=50
    )

    print(response.data[0].url)
    return response

asyncio.run(generate_image())
''',
    "advanced": '''\
import litellm
import os

os.environ["FAL_AI_API_KEY"] = "your-fal-api-key"

# Generate with advanced parameters
response = litellm.image_generation(
    model="fal_ai/fal-ai/flux-pro/v1.1-ultra",
    prompt="A majestic dragon soaring over mountains",
    n=2,
    size="1792x1024",  # Maps to aspect_ratio="16:9"
    seed=42,
    safety_tolerance="2",
    enhance_prompt=True
)

for image in response.data:
    print(f"Generated image: {image.url}")
''',
    "model_specific": '''\
import litellm

# Any parameters beyond the standard ones are forwarded to Fal AI
response = litellm.image_generation(
    model="fal_ai/fal-ai/flux-pro/v1.1-ultra",
    prompt="A beautiful sunset",
    # Model-specific Fal AI parameters
    aspect_ratio="16:9",
    safety_tolerance="2",
    enhance_prompt=True,
    seed=42
)
''',
}

#: per example: (fal endpoint, pictures, (width, height) or None for "16:9 landscape", what fal must receive);
#: Stable Diffusion's default is landscape_4_3, Recraft's size is the example's landscape_4_3
EXPECTED: dict[str, tuple[str, int, tuple[int, int] | None, dict[str, Any]]] = {
    "basic": ("fal-ai/flux-pro/v1.1-ultra", 1, None, {}),
    "imagen4": ("fal-ai/imagen4/preview", 1, None, {"aspect_ratio": "16:9", "num_images": 1}),
    "recraft": ("fal-ai/recraft/v3/text-to-image", 1, (1024, 768),
                {"style": "realistic_image", "image_size": "landscape_4_3"}),
    "async": ("fal-ai/stable-diffusion-v35-medium", 1, (1024, 768), {"guidance_scale": 7.5, "num_inference_steps": 50}),
    "advanced": ("fal-ai/flux-pro/v1.1-ultra", 2, None,
                 {"aspect_ratio": "16:9", "num_images": 2, "seed": 42, "safety_tolerance": "2",
                  "enhance_prompt": True}),
    "model_specific": ("fal-ai/flux-pro/v1.1-ultra", 1, None,
                       {"aspect_ratio": "16:9", "seed": 42, "safety_tolerance": "2", "enhance_prompt": True}),
}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """``FALNB_OFFLINE=1`` for a default client made afresh, on a fresh emulator (its ledger is this test's);
    every response falnb hands to an example is kept in ``RECEIVED``."""
    from falnb import _client, _litellm
    from falnb import emulator as emulator_module

    emu = Emulator(latency=0.0, concurrency=4)
    monkeypatch.setattr(emulator_module, "shared_emulator", lambda: emu)
    monkeypatch.setattr(_client, "_DEFAULT", None)
    monkeypatch.setattr(_litellm, "_CLIENTS", OrderedDict())
    monkeypatch.setenv("FALNB_OFFLINE", "1")
    monkeypatch.setenv("FAL_AI_API_KEY", "unset-after-the-test")  # the examples set it: restored afterwards
    RECEIVED.clear()
    sync, coro = falnb.image_generation, falnb.aimage_generation

    def recorded(*args: Any, **kwargs: Any) -> Any:
        RECEIVED.append(sync(*args, **kwargs))
        return RECEIVED[-1]

    async def arecorded(*args: Any, **kwargs: Any) -> Any:
        RECEIVED.append(await coro(*args, **kwargs))
        return RECEIVED[-1]

    monkeypatch.setattr(falnb, "image_generation", recorded)
    monkeypatch.setattr(falnb, "aimage_generation", arecorded)
    yield emu
    if _client._DEFAULT is not None:
        _client._DEFAULT.close()


RECEIVED: list[Any] = []


def switched(name: str) -> str:
    """The example with its one change: ``import litellm`` becomes ``import falnb as litellm``."""
    src = EXAMPLES[name]
    assert src.count("import litellm\n") == 1
    return src.replace("import litellm\n", "import falnb as litellm\n")


def run_example(name: str) -> Any:
    """Run the switched example; the response it received (the async example returns it from a coroutine)."""
    before = len(RECEIVED)
    exec(compile(switched(name), f"<{SOURCE}: {name}>", "exec"), {"__name__": f"litellm_example_{name}"})
    assert len(RECEIVED) == before + 1
    return RECEIVED[-1]


def decoded(url: str) -> bytes:
    head, _, body = url.partition(",")
    assert head.startswith("data:image/") and head.endswith(";base64"), head[:60]
    return base64.b64decode(body, validate=True)


def check_shape(response: Any, model: str, count: int) -> None:
    """LiteLLM's ImageResponse: attributes and dict access alike, the hidden params, the Generation."""
    assert isinstance(response, falnb.ImageResponse)
    assert isinstance(response.created, int) and response["created"] == response.created
    assert response.get("data") is response.data and "data" in response and "nonsense" not in response
    assert len(response.data) == count
    usage = response.usage
    assert (usage.total_tokens, usage["input_tokens"], usage.output_tokens) == (0, 0, 0)
    gen = response.generation
    assert isinstance(gen, falnb.Generation) and gen.model == model
    hidden = response._hidden_params
    assert hidden is response.hidden_params
    assert hidden["model"] == model and hidden["custom_llm_provider"] == "fal_ai"
    assert hidden["litellm_model_name"] == f"fal_ai/{model}"
    assert hidden["request_ids"] == gen.request_ids and hidden["request_ids"]
    assert hidden["seed"] == gen.seed
    for item, img in zip(response.data, gen.images, strict=True):
        assert item.url == item["url"] == item.get("url")
        assert item.b64_json is None and item.revised_prompt is None
        assert decoded(item.url) == img.data  # the emulator's URLs open nowhere else: a data: URI
        fields = item.provider_specific_fields
        assert (fields["width"], fields["height"]) == (img.width, img.height)
        assert fields["content_type"] == img.content_type
    dump = response.model_dump()
    assert dump["data"][0]["url"] == response.data[0].url and dump["created"] == response.created
    assert dict(response)["size"] == response.size == f"{gen.images[0].width}x{gen.images[0].height}"
    assert len(repr(response)) < 300 and len(repr(response.data[0])) < 400  # never megabytes of base64


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_litellm_example_runs_on_falnb(name: str, offline: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image as PIL

    model, count, dims, sent = EXPECTED[name]
    response = run_example(name)
    printed = capsys.readouterr().out.splitlines()
    check_shape(response, model, count)

    # the printed URLs are the response's, and each opens to the picture
    urls = [item.url for item in response.data]
    if name == "advanced":
        assert printed == [f"Generated image: {u}" for u in urls]
    elif name != "model_specific":
        assert printed[0] == urls[0]
    for url in urls:
        pic = PIL.open(io.BytesIO(decoded(url)))
        w, h = pic.size
        if dims is None:
            assert abs(w / h - 16 / 9) < 0.02, (w, h)  # 16:9 landscape, as asked (or the model's default)
        else:
            assert (w, h) == dims

    # what fal received: the example's parameters, checked and mapped by falnb, billed once
    inputs = response.generation.inputs
    for key, value in sent.items():
        assert all(inp.get(key) == value for inp in inputs), (key, inputs)
    assert offline.ledger.requests == len(inputs) == len(response._hidden_params["request_ids"])
    assert response._hidden_params["response_cost"] == pytest.approx(response.generation.cost or 0.0)

    # the same example again: the cache answers, nothing is paid, the URLs still open
    again = run_example(name)
    assert again._hidden_params["cached"] is True and again._hidden_params["response_cost"] == 0.0
    assert offline.ledger.requests == len(inputs)
    assert [decoded(i.url) for i in again.data] == [decoded(u) for u in urls]


def test_litellm_example_sends_nothing_after_a_mistake(offline: Emulator) -> None:
    """The basic example with a size no model draws: falnb's short error, nothing sent, nothing billed."""
    src = switched("basic").replace('prompt="A serene', 'size="banana", prompt="A serene')
    with pytest.raises(falnb.SizeError):
        exec(compile(src, "<basic with a bad size>", "exec"), {})
    assert offline.ledger.submits == 0


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic's words about LiteLLM's own types
def test_error_mapping_names_real_classes_and_the_readme_shows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each LiteLLM name in the mapping is an exception of LiteLLM; each falnb name a falnb error; the
    README's table is the mapping."""
    from pathlib import Path

    from falnb._litellm import LITELLM_NAMES

    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = pytest.importorskip("litellm")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for theirs, ours in LITELLM_NAMES.items():
        assert issubclass(getattr(litellm.exceptions, theirs), Exception), theirs
        assert all(issubclass(getattr(falnb, name), falnb.FalnbError) for name in ours), ours
        row = f"| `{theirs}` | " + ", ".join(f"`{name}`" for name in ours) + " |"
        assert row in readme.splitlines(), row


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic's words about LiteLLM's own types
def test_response_matches_litellm_field_for_field(serve_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """LiteLLM itself (its fal provider, fal's synchronous endpoint) and falnb (the queue) against one emulator
    over real HTTP, with the advanced example's arguments: the same fields, the same values where both know
    them, the same pictures; and LiteLLM's own ImageResponse type accepts falnb's ``model_dump()``."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-list download at import
    litellm = pytest.importorskip("litellm")
    import httpx
    from litellm.types.utils import ImageObject as LiteLLMImageObject
    from litellm.types.utils import ImageResponse as LiteLLMImageResponse

    server = serve_emulator(latency=0.0, concurrency=4)
    args: dict[str, Any] = {"model": "fal_ai/fal-ai/flux-pro/v1.1-ultra", "prompt": "A majestic dragon", "n": 2,
                            "size": "1792x1024", "seed": 42, "safety_tolerance": "2", "enhance_prompt": True,
                            "api_key": "any-key"}
    theirs = litellm.image_generation(api_base=server.url + "/_sync", **args)
    ours = falnb.image_generation(api_base=server.url, **args)

    # the fields of LiteLLM's response (OpenAI's ImagesResponse) are all there, by attribute and by key
    for name in LiteLLMImageResponse.model_fields:
        assert getattr(ours, name) == ours[name], name
    for name in LiteLLMImageObject.model_fields:
        assert name in ours.data[0], name
    assert set(theirs.model_dump()) <= set(ours.model_dump())
    assert set(ours.usage.model_dump()) <= set(theirs.usage.model_dump())
    assert set(theirs.data[0].model_dump()) == set(ours.data[0].model_dump())
    # LiteLLM's own type takes falnb's dump
    retyped = LiteLLMImageResponse(**ours.model_dump())
    assert [d.url for d in retyped.data] == [d.url for d in ours.data]
    assert LiteLLMImageResponse.model_validate(ours.model_dump()).created == ours.created

    # the same values where both know them
    assert len(theirs.data) == len(ours.data) == 2
    for mine, their in zip(ours.data, theirs.data, strict=True):
        for key in ("width", "height", "content_type"):
            assert mine.provider_specific_fields[key] == their.provider_specific_fields[key]
        assert httpx.get(mine.url).content == httpx.get(their.url).content  # fal's URLs, while fal keeps them
        assert mine.url.startswith(server.url + "/files/")
    hidden, their_hidden = ours._hidden_params, theirs._hidden_params
    for key in ("has_nsfw_concepts", "timings", "litellm_model_name"):
        assert hidden[key] == their_hidden[key], key
    assert int(their_hidden["seed"]) == hidden["seed"] == 42
    assert hidden["response_cost"] == pytest.approx(their_hidden["response_cost"])
