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
    plan = build_plan("x", model="flux-ultra", size="1024x1024", aspect_ratio="21:9", raw=True, brand_new_knob=3,
                      allow_unknown=True)
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
    (dict(model="seedream", size="4096x4096"), "size"),
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


# -- issue 11 #12: an input name the model does not take is a mistake, refused before sending ----------------


def test_unknown_name_on_a_catalogued_model_is_refused_with_did_you_mean_and_the_inputs() -> None:
    with pytest.raises(ParameterError) as err:
        build_plan("x", model="schnell", guidance=3)
    text = str(err.value)
    assert err.value.field == "guidance" and "did you mean 'guidance_scale'?" in text
    assert "num_inference_steps" in text and "allow_unknown=True" in text and "--allow-unknown" in text
    assert len(text.splitlines()) == 2
    with pytest.raises(ParameterError) as err:  # nothing close: still refused, with the inputs
        build_plan("x", model="imagen4", lora_scale=1.0)
    assert "did you mean" not in str(err.value) and "resolution" in str(err.value)


def test_unknown_names_are_sent_when_deliberate() -> None:
    body = build_plan("x", model="schnell", guidance=3, allow_unknown=True).requests[0].input
    assert body["guidance"] == 3
    # a list names exactly the inputs meant (the form's "other inputs" box)
    body = build_plan("x", model="schnell", new_knob=1, allow_unknown=["new_knob"]).requests[0].input
    assert body["new_knob"] == 1
    with pytest.raises(ParameterError):
        build_plan("x", model="schnell", new_knob=1, other=2, allow_unknown=["new_knob"])
    with pytest.raises(ParameterError) as err:  # ... but a near-miss of the model's own input is a typo
        build_plan("x", model="flux-ultra", enhance_promt=True, allow_unknown=["enhance_promt"])
    assert "did you mean 'enhance_prompt'?" in str(err.value)
    assert build_plan("x", model="flux-ultra", enhance_promt=True, allow_unknown=True).requests[0].input[
        "enhance_promt"] is True
    # catalogued names are still checked when allow_unknown is on
    with pytest.raises(ParameterError):
        build_plan("x", model="schnell", num_inference_steps=99, allow_unknown=True)
    with pytest.raises(ParameterError):
        build_plan("x", model="schnell", allow_unknown="guidance")  # a string is not a list of names


def test_pass_through_and_variants_forward_unknown_names() -> None:
    body = build_plan("x", model="fal-ai/some-new/model", guidance=3).requests[0].input
    assert body["guidance"] == 3
    body = build_plan("x", model="fal-ai/imagen4/preview/fast", brand_new=1).requests[0].input
    assert body["brand_new"] == 1
    with pytest.raises(ParameterError) as err:  # a near-miss on a variant is still a typo
        build_plan("x", model="fal-ai/imagen4/preview/fast", resolutoin="2K")
    assert "'resolution'" in str(err.value)


def test_seed_on_a_model_without_a_seed_input_is_not_sent_but_keys_the_cache() -> None:
    a = build_plan("x", model="recraft", seed=5, n=2)
    assert all("seed" not in r.input for r in a.requests) and a.seed is None
    assert [r.canonical["seed"] for r in a.requests] == [5, 6]
    b = build_plan("x", model="recraft", seed=7)
    assert b.requests[0].key != a.requests[0].key
    assert build_plan("x", model="recraft", seed=5).requests[0].key == a.requests[0].key
    with pytest.raises(ParameterError):
        build_plan("x", model="recraft", seed="abc")  # type: ignore[arg-type]


def test_unknown_name_from_a_litellm_alias_says_where_it_came_from(tmp_path: object) -> None:
    from pathlib import Path

    cfg = Path(str(tmp_path)) / "config.yaml"
    cfg.write_text("model_list:\n  - model_name: team-fast\n    litellm_params:\n"
                   "      model: fal_ai/fal-ai/flux/schnell\n      guidance: 3\n      drop_params: true\n"
                   "      input_cost_per_image: 0.003\n")
    cat = Catalog()
    load_litellm_config(str(cfg), cat)
    with pytest.raises(ParameterError) as err:
        build_plan("x", model="team-fast", catalog=cat)
    assert "LiteLLM config of 'team-fast'" in str(err.value) and "guidance_scale" in str(err.value)
    # LiteLLM's own call settings are never model inputs
    assert set(cat.resolve("team-fast").defaults) == {"guidance"}


@pytest.mark.parametrize("value", [{1, 2}, float("nan"), [float("inf")], {"a": object()}, b"bytes"])
def test_a_value_that_is_not_json_is_refused(value: object) -> None:
    with pytest.raises(ParameterError) as err:
        build_plan("x", model="fal-ai/some-new/model", palette=value)
    assert err.value.field == "palette" and len(str(err.value).splitlines()) == 2



@pytest.mark.parametrize("kwargs,field", [({"prompt": "a fox \udcff in snow"}, "prompt"),
                                          ({"negative_prompt": "blur\ud800"}, "negative_prompt"),
                                          ({"model": "fal-ai/some-new/model", "palette": ["red", "\udc80"]},
                                           "palette")])
def test_text_that_cannot_be_sent_as_utf8_is_refused(kwargs: dict[str, object], field: str) -> None:
    """A lone surrogate (bytes decoded with ``surrogateescape``) cannot travel as UTF-8: a short
    ParameterError naming the input, never a raw UnicodeEncodeError from hashing the cache key."""
    kw: dict[str, object] = {"prompt": "a fox", "model": "sd35", **kwargs}
    with pytest.raises(ParameterError) as err:
        build_plan(**kw)  # type: ignore[arg-type]
    assert err.value.field == field and len(str(err.value).splitlines()) <= 2, str(err.value)
    assert "surrogate" in str(err.value)



def test_the_advice_for_more_than_max_n_pictures_gives_new_pictures() -> None:
    """n above 64: the advice, followed, gives more pictures.  Calling again with the next seeds does (its
    requests are new ones); the same prompt repeated in generate_many (the old advice) asks for one same
    request again and again: copies of one picture.  In a cell the advice names --seed and --batch."""
    with pytest.raises(ParameterError) as err:
        build_plan("a fox", model="schnell", n=100)
    hint = err.value.hint or ""
    assert "seed=64" in hint and "generate_many" in hint and "prompts" in hint, hint
    first, more = (build_plan("a fox", model="schnell", n=64, seed=s) for s in (0, 64))
    assert not {r.key for r in first.requests} & {r.key for r in more.requests}
    assert len({build_plan("a fox", model="schnell").requests[0].key for _ in range(2)}) == 1  # copies
    cell = err.value.for_front_end("cell").hint or ""
    assert "--seed" in cell and "--batch" in cell and "=" not in cell, cell


# -- issue 11 #13: sizes each model can render -----------------------------------------------------------------


@pytest.mark.parametrize("model,size", [("schnell", "1:1000000000"), ("schnell", "1000000000:1"),
                                        ("schnell", "1:200"), ("seedream", "5:1"), ("schnell", "16000x1000"),
                                        ("imagen4", "1:1000000000"), ("flux-ultra", "6:1"), ("bria", "1:4")])
def test_a_size_the_model_cannot_render_is_refused_with_the_range(model: str, size: str) -> None:
    with pytest.raises(SizeError) as err:
        build_plan("x", model=model, size=size)
    text = str(err.value)
    assert err.value.field == "size" and "out of range" in text and len(text.splitlines()) <= 2
    if model == "schnell" and ":" in size:
        assert "1:190 to 190:1" in text
    if model == "seedream":
        assert "1:4 to 4:1" in text
    if model == "imagen4":
        assert "9:16 to 16:9" in text


@pytest.mark.parametrize("model,size,dims", [("schnell", "1:190", (80, 14112)), ("seedream", "4:1", (2048, 512)),
                                             ("imagen4", "3:1", None), ("flux-ultra", "1:4", None)])
def test_ratios_within_reach_are_mapped(model: str, size: str, dims: tuple[int, int] | None) -> None:
    req = build_plan("x", model=model, size=size).requests[0]
    if dims is not None:
        assert (req.width, req.height) == dims
    else:
        assert req.input["aspect_ratio"] in build_plan("x", model=model).spec.aspect_ratios


@pytest.mark.parametrize("model,field,value", [("schnell", "aspect_ratio", "16:9"),
                                               ("flux-ultra", "image_size", "landscape_16_9"),
                                               ("bria", "image_size", {"width": 1024, "height": 768})])
def test_the_other_size_field_is_refused_with_a_pointer_to_size(model: str, field: str, value: object) -> None:
    with pytest.raises(ParameterError) as err:
        build_plan("x", model=model, **{field: value})
    text = str(err.value)
    assert err.value.field == field and "its size input is" in text and "size=" in text
    assert build_plan("x", model=model, allow_unknown=True, **{field: value}).requests[0].input[field] == value


# -- issue 11 #27: a LiteLLM config that is not one is a short ConfigError -----------------------------------


@pytest.mark.parametrize("content,says", [
    ("- a\n- b\n", "YAML list, not a mapping"),
    ("just a string\n", "YAML str, not a mapping"),
    ("model_list: 5\n", "model_list is a int"),
    ("model_list:\n  - flux\n", "model_list entry 0 is a str"),
    ("model_list:\n  - {model_name: x, litellm_params: [1]}\n", "litellm_params of 'x' is not a mapping"),
    ("model_list:\n  - {model_name: x, litellm_params: {model: 'fal_ai/??'}}\n", "routes to 'fal_ai/??'"),
    ("model_list: [\n", "cannot read"),
])
def test_litellm_config_that_is_not_one_is_a_config_error(tmp_path: object, content: str, says: str) -> None:
    from pathlib import Path

    from falnb._exceptions import ConfigError

    cfg = Path(str(tmp_path)) / "config.yaml"
    cfg.write_text(content)
    cat = Catalog()
    with pytest.raises(ConfigError) as err:
        load_litellm_config(str(cfg), cat)
    assert says in str(err.value) and len(str(err.value).splitlines()) <= 2
    assert cat.aliases() == Catalog().aliases()  # nothing half-loaded
    (Path(str(tmp_path)) / "empty.yaml").write_text("")
    assert load_litellm_config(str(Path(str(tmp_path)) / "empty.yaml"), cat) == {}
