"""Request building: catalog resolution, size mapping, n splitting, validation — nothing is sent."""

from __future__ import annotations

import math

import pytest

from falnb._exceptions import ParameterError, SizeError, UnknownModelError
from falnb.catalog._catalog import PRESETS, Catalog, default_catalog, load_litellm_config
from falnb.catalog._sizes import nearest_ratio, parse_size
from falnb.request._plan import build_plan

SEED_IDS = [
    "fal-ai/flux-pro/v1.1-ultra",
    "fal-ai/flux-pro/v1.1",
    "fal-ai/flux/schnell",
    "fal-ai/bytedance/seedream/v3/text-to-image",
    "fal-ai/bytedance/dreamina/v3.1/text-to-image",
    "fal-ai/imagen4/preview",
    "fal-ai/recraft/v3/text-to-image",
    "fal-ai/ideogram/v3",
    "fal-ai/stable-diffusion-v35-medium",
    "bria/text-to-image/3.2",
]
SIZES = ["1024x1024", "1792x1024", "1024x1792", "900x1200", "1536x1024"]


def _orientation(w: float, h: float) -> int:
    return 0 if w == h else (1 if w > h else -1)


def test_catalog_has_the_ten_seed_models_with_aliases() -> None:
    cat = default_catalog()
    assert sorted(m.id for m in cat.models) == sorted(SEED_IDS)
    assert cat.resolve("flux-ultra").id == "fal-ai/flux-pro/v1.1-ultra"
    assert cat.resolve("imagen4").id == "fal-ai/imagen4/preview"
    assert cat.resolve("stable-diffusion").id == "fal-ai/stable-diffusion-v35-medium"
    # every seed model has a short alias of its own
    assert all(m.aliases for m in cat.models)
    # LiteLLM's spellings
    assert cat.resolve("fal_ai/fal-ai/flux-pro/v1.1-ultra").id == "fal-ai/flux-pro/v1.1-ultra"
    assert cat.resolve("fal_ai/flux/schnell").id == "fal-ai/flux/schnell"
    assert cat.resolve("fal_ai/bria/text-to-image/3.2").id == "bria/text-to-image/3.2"


def test_unknown_alias_suggests() -> None:
    with pytest.raises(UnknownModelError) as err:
        default_catalog().resolve("flux-ultar")
    assert "flux-ultra" in str(err.value)


def test_pass_through_and_variants() -> None:
    spec = default_catalog().resolve("fal-ai/some-new/model")
    assert not spec.known and spec.price is None and spec.id == "fal-ai/some-new/model"
    fast = default_catalog().resolve("fal-ai/imagen4/preview/fast")
    # LiteLLM bug 2: a variant goes to its own endpoint; its price is not guessed
    assert fast.id == "fal-ai/imagen4/preview/fast" and fast.variant_of == "fal-ai/imagen4/preview"
    assert fast.size_field == "aspect_ratio" and fast.price is None


@pytest.mark.parametrize("model", SEED_IDS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("n", [1, 2, 5])
def test_every_seed_model_keeps_the_shape_and_honours_n(model: str, size: str, n: int) -> None:
    plan = build_plan("a red fox", model=model, size=size, n=n)
    spec = plan.spec
    w, h = (int(x) for x in size.split("x"))
    assert sum(r.images for r in plan.requests) == n  # LiteLLM bug 4: n is never dropped
    for req in plan.requests:
        body = req.input
        assert body["prompt"] == "a red fox"
        if spec.size_field == "image_size":
            sent = body["image_size"]
            # LiteLLM bug 3: the exact pixels, or the preset with those exact pixels
            dims = PRESETS[sent] if isinstance(sent, str) else (sent["width"], sent["height"])
            assert dims == (w, h)
        else:
            ratio = body["aspect_ratio"]
            assert ratio in spec.aspect_ratios
            a, b = (int(x) for x in ratio.split(":"))
            assert _orientation(a, b) == _orientation(w, h)  # never flips portrait/landscape
        if spec.max_images is None:
            assert "num_images" not in body and req.images == 1
        else:
            assert 1 <= body["num_images"] <= spec.max_images
    # split requests are distinct cache entries
    assert len({r.key for r in plan.requests}) == len(plan.requests)


def test_litellm_size_mistakes_are_fixed() -> None:
    assert build_plan("x", model="fal-ai/flux-pro/v1.1", size="1792x1024").requests[0].input["image_size"] == {
        "width": 1792, "height": 1024}
    assert build_plan("x", model="flux-ultra", size="900x1200").requests[0].input["aspect_ratio"] == "3:4"
    assert build_plan("x", model="ideogram", size="1536x1024").requests[0].input["image_size"] == {
        "width": 1536, "height": 1024}
    assert build_plan("x", model="schnell", size="1024x1024").requests[0].input["image_size"] == "square_hd"
    assert build_plan("x", model="imagen4", size="1536x1024").requests[0].input["aspect_ratio"] == "4:3"


@pytest.mark.parametrize("size,expected", [("16:9", "16:9"), ("3:2", "3:2"), ("landscape_4_3", "4:3"),
                                           ("portrait_16_9", "9:16"), ("5:4", "4:3"), ("1:1", "1:1")])
def test_ratio_and_preset_sizes_on_aspect_ratio_models(size: str, expected: str) -> None:
    assert build_plan("x", model="flux-ultra", size=size).requests[0].input["aspect_ratio"] == expected


def test_ratio_on_image_size_model_gives_exact_shape() -> None:
    got = build_plan("x", model="fal-ai/flux-pro/v1.1", size="3:2").requests[0].input["image_size"]
    assert isinstance(got, dict) and math.isclose(got["width"] / got["height"], 1.5, rel_tol=0.02)
    assert build_plan("x", model="fal-ai/flux-pro/v1.1", size="16:9").requests[0].input["image_size"] == (
        "landscape_16_9")


def test_nearest_ratio_never_flips() -> None:
    # 1.05 is landscape: the nearest landscape ratio, even though 1:1 is closer
    assert nearest_ratio(1.05, ("1:1", "4:3", "3:4")) == "4:3"
    assert nearest_ratio(0.9, ("1:1", "16:9", "9:16")) == "9:16"


def test_forwarded_keywords_win_over_size_mapping() -> None:
    plan = build_plan("x", model="flux-ultra", size="1024x1024", aspect_ratio="21:9", raw=True, brand_new_knob=3)
    body = plan.requests[0].input
    assert body["aspect_ratio"] == "21:9" and body["raw"] is True and body["brand_new_knob"] == 3
    plan = build_plan("x", model="schnell", size="1024x1024", image_size="portrait_4_3")
    assert plan.requests[0].input["image_size"] == "portrait_4_3"
    assert (plan.requests[0].width, plan.requests[0].height) == (768, 1024)


def test_recraft_style_forwarded_and_priced() -> None:
    # LiteLLM bug 5: Recraft's style is refused there
    plan = build_plan("logo", model="recraft", style="vector_illustration", n=2)
    assert all(r.input["style"] == "vector_illustration" for r in plan.requests)
    assert plan.cost == pytest.approx(0.16)
    assert build_plan("x", model="recraft", style="digital_illustration/pixel_art").requests[0].input[
        "style"] == "digital_illustration/pixel_art"


def test_distinct_seeds_when_split() -> None:
    plan = build_plan("x", model="bria", n=3, seed=10)
    assert [r.input["seed"] for r in plan.requests] == [10, 11, 12]
    # Bria's seed defaults to a fixed 5555: without distinct seeds n pictures would be one picture
    plan = build_plan("x", model="bria", n=3)
    assert [r.input["seed"] for r in plan.requests] == [5555, 5556, 5557]
    plan = build_plan("x", model="flux-ultra", n=6, seed=100)
    assert [(r.input["num_images"], r.input["seed"]) for r in plan.requests] == [(4, 100), (2, 104)]


def test_replicas_of_seedless_model_have_distinct_keys() -> None:
    plan = build_plan("x", model="recraft", n=3)
    assert len({r.key for r in plan.requests}) == 3
    assert build_plan("x", model="recraft", n=1).requests[0].key == plan.requests[0].key


def test_cache_key_depends_on_size_and_defaults() -> None:
    # LiteLLM bug 7: its cache key ignored size
    a = build_plan("x", model="schnell", size="1792x1024").requests[0].key
    b = build_plan("x", model="schnell", size="1024x1024").requests[0].key
    assert a != b
    # an explicit default is the same request as leaving it out
    assert build_plan("x", model="schnell", num_inference_steps=4).requests[0].key == build_plan(
        "x", model="schnell").requests[0].key
    assert build_plan("x", model="schnell", seed=1).requests[0].key != build_plan("x", model="schnell").requests[0].key


def test_extra_headers_stay_headers() -> None:
    # LiteLLM bug 6: extra_headers leaked into the JSON body, Authorization included
    plan = build_plan("x", model="schnell", extra_headers={"X-Fal-Queue-Priority": "low"})
    assert plan.headers == {"X-Fal-Queue-Priority": "low"}
    assert "X-Fal-Queue-Priority" not in plan.requests[0].input
    with pytest.raises(ParameterError):
        build_plan("x", model="schnell", extra_headers={"Authorization": "Key secret"})


def test_openai_keywords_are_consumed() -> None:
    plan = build_plan("x", model="schnell", response_format="b64_json", user="me", quality="hd")
    assert plan.response_format == "b64_json"
    assert set(plan.requests[0].input) == {"prompt", "num_images"}


@pytest.mark.parametrize("kwargs,field", [
    (dict(model="schnell", num_inference_steps="four"), "num_inference_steps"),
    (dict(model="schnell", num_inference_steps=99), "num_inference_steps"),
    (dict(model="flux-ultra", safety_tolerance="9"), "safety_tolerance"),
    (dict(model="flux-ultra", aspect_ratio="5:1"), "aspect_ratio"),
    (dict(model="imagen4", resolution="4K"), "resolution"),
    (dict(model="ideogram", rendering_speed="FAST"), "rendering_speed"),
    (dict(model="recraft", style="oil_painting"), "style"),
    (dict(model="seedream", size="4096x4096"), "image_size"),
    (dict(model="seedream", image_size={"width": 100, "height": 100}), "image_size"),
    (dict(model="schnell", image_size="huge"), "image_size"),
    (dict(model="schnell", enable_safety_checker="yes"), "enable_safety_checker"),
    (dict(model="schnell", guidence_scale=3.0), "guidence_scale"),
    (dict(model="schnell", n=0), "n"),
    (dict(model="schnell", n=65), "n"),
    (dict(model="schnell", n=2, num_images=3), "num_images"),
    (dict(model="schnell", seed=-1), "seed"),
    (dict(model="schnell", seed="abc"), "seed"),
    (dict(model="bria", num_inference_steps=10), "num_inference_steps"),
    (dict(model="schnell", response_format="png"), "response_format"),
])
def test_bad_parameters_are_refused_before_sending(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises((ParameterError, SizeError)) as err:
        build_plan("a cat", **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field
    assert len(str(err.value).splitlines()) <= 2


@pytest.mark.parametrize("size", ["big", "0x100", "100x", "1024x1024x3", "-5:3", 7, (1, 2, 3), "99999x10"])
def test_bad_sizes(size: object) -> None:
    with pytest.raises(SizeError):
        build_plan("x", model="schnell", size=size)


def test_coercions() -> None:
    body = build_plan("x", model="flux-ultra", safety_tolerance=5, output_format="PNG").requests[0].input
    assert body["safety_tolerance"] == "5" and body["output_format"] == "png"
    assert parse_size((640, 480)).width == 640
    assert parse_size({"width": 640, "height": 480}).height == 480


def test_empty_prompt() -> None:
    with pytest.raises(ParameterError):
        build_plan("   ", model="schnell")


def test_price_estimates() -> None:
    assert build_plan("x", model="flux-ultra", n=2).cost == pytest.approx(0.12)
    assert build_plan("x", model="schnell", size="1024x1024").cost == pytest.approx(0.003)
    assert build_plan("x", model="schnell", size="2048x1024").cost == pytest.approx(0.006)
    assert build_plan("x", model="ideogram", rendering_speed="QUALITY").cost == pytest.approx(0.09)
    assert build_plan("x", model="imagen4", resolution="2K").cost == pytest.approx(0.05)
    assert build_plan("x", model="fal-ai/unknown/thing").cost is None


def test_litellm_proxy_config_aliases(tmp_path: object) -> None:
    from pathlib import Path

    cfg = Path(str(tmp_path)) / "config.yaml"
    cfg.write_text("""
model_list:
  - model_name: team-ultra
    litellm_params:
      model: fal_ai/fal-ai/flux-pro/v1.1-ultra
      api_key: os.environ/FAL_AI_API_KEY
      raw: true
      safety_tolerance: "5"
    model_info: {mode: image_generation}
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o}
  - model_name: fast
    litellm_params: {model: fal_ai/flux/schnell, num_inference_steps: 2}
""")
    cat = Catalog()
    loaded = load_litellm_config(str(cfg), cat)
    assert loaded == {"team-ultra": "fal-ai/flux-pro/v1.1-ultra", "fast": "fal-ai/flux/schnell"}
    body = build_plan("x", model="team-ultra", catalog=cat).requests[0].input
    assert body["raw"] is True and body["safety_tolerance"] == "5" and "api_key" not in body
    # the request's own params win over the config's
    body = build_plan("x", model="team-ultra", catalog=cat, raw=False).requests[0].input
    assert body["raw"] is False
    assert build_plan("x", model="fast", catalog=cat).requests[0].input["num_inference_steps"] == 2
