"""The emulator imitates fal where falnb's tests used to be comfortable (issue 11 #26): a random seed per
request that sends none (fresh in every process unless the emulator is seeded), pictures that depend on
the model, and a knob for each choice fal's documentation leaves open, whose every value works."""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops, ImageStat

from falnb.catalog._catalog import SEED_MODELS
from falnb.emulator import Emulator
from falnb.emulator._images import render, style_of

KEY = {"Authorization": "Key test-key"}
QUEUE = "https://queue.fal.run"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def result(emu: Emulator, clock: Clock, model: str, body: dict[str, Any]) -> httpx.Response:
    with httpx.Client(transport=emu.sync_transport(), base_url=QUEUE, headers=KEY) as c:
        sub = c.post(f"/{model}", json=body).json()
        clock.t += 100
        assert c.get(sub["status_url"]).status_code == 200
        return c.get(sub["response_url"])


def knobbed(**knobs: Any) -> tuple[Emulator, Clock]:
    """A seeded emulator on a hand-driven clock, with ``knobs`` set."""
    clock = Clock()
    emu = Emulator(latency=0.01, clock=clock, seed=1)
    emu.configure(**knobs)
    return emu, clock


def thumb(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB").resize((16, 16), Image.Resampling.BOX)


def difference(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two pictures' 16x16 thumbnails, 0-255 (what the eye sees at a glance)."""
    return float(sum(ImageStat.Stat(ImageChops.difference(thumb(a), thumb(b))).mean) / 3)


# -- pictures that depend on the model ------------------------------------------------------------------------


def test_each_seed_model_has_its_own_look() -> None:
    looks = [style_of(m.id) for m in SEED_MODELS]
    assert len({(s.hue, s.layout) for s in looks}) == len(SEED_MODELS)
    assert len({s.layout for s in looks}) == 5
    # hues spread around the wheel: no two of the ten closer than 1/20 of a turn
    for a, b in itertools.combinations(looks, 2):
        assert min(abs(a.hue - b.hue), 1 - abs(a.hue - b.hue)) >= 0.05


def test_same_prompt_seed_and_size_look_different_on_every_pair_of_models() -> None:
    pictures = {m.id: render(m.id, "a lighthouse at dusk", 5, 0, 256, 256, "png") for m in SEED_MODELS}
    for (a, pa), (b, pb) in itertools.combinations(pictures.items(), 2):
        assert difference(pa, pb) > 12, (a, b)
    # deterministic from (model, prompt, seed, index); the prompt and the seed still vary it within the look
    one = "fal-ai/flux/schnell"
    assert render(one, "a lighthouse at dusk", 5, 0, 256, 256, "png") == pictures[one]
    assert render(one, "a lighthouse at dusk", 6, 0, 256, 256, "png") != pictures[one]
    assert render(one, "a desert", 5, 0, 256, 256, "png") != pictures[one]
    assert render(one, "a lighthouse at dusk", 5, 1, 256, 256, "png") != pictures[one]


def test_pass_through_ids_get_a_look_of_their_own() -> None:
    a, b = style_of("fal-ai/some-new/model"), style_of("fal-ai/another/model")
    assert a == style_of("fal-ai/some-new/model") and a != b


# -- random seeds like fal's ----------------------------------------------------------------------------------


def test_unseeded_emulators_draw_fresh_request_ids_and_seeds() -> None:
    clock = Clock()
    seeds = [result(Emulator(latency=0.01, clock=clock), clock, "fal-ai/flux/schnell", {"prompt": "x"}).json()["seed"]
             for _ in range(3)]
    assert len(set(seeds)) == 3  # each a brand-new emulator, as a new process is


def test_a_seeded_emulator_is_reproducible_and_reset_starts_again() -> None:
    clock = Clock()

    def seeds(emu: Emulator, k: int = 3) -> list[int]:
        return [result(emu, clock, "fal-ai/flux/schnell", {"prompt": "x"}).json()["seed"] for _ in range(k)]

    a, b = Emulator(latency=0.01, clock=clock, seed=7), Emulator(latency=0.01, clock=clock, seed=7)
    first = seeds(a)
    assert first == seeds(b) and len(set(first)) == 3
    a.reset()
    assert seeds(a) == first
    a.configure(seed=8)
    assert seeds(a) != first
    a.configure(seed=None)
    assert a.settings.seed is None and len(set(seeds(a))) == 3


@pytest.mark.parametrize("bits", [31, 32, 63])
def test_random_seed_bits(bits: int) -> None:
    emu, clock = knobbed(random_seed_bits=bits)
    seeds = [result(emu, clock, "fal-ai/flux/schnell", {"prompt": "x"}).json()["seed"] for _ in range(24)]
    assert all(0 <= s < 2**bits for s in seeds)
    assert max(seeds) >= 2 ** (bits - 2)  # the range is used, not a corner of it
    # Bria's default seed is fixed, whatever the knob
    assert result(emu, clock, "bria/text-to-image/3.2", {"prompt": "x"}).status_code == 200


def test_knobs_refuse_values_outside_their_choices() -> None:
    emu = Emulator()
    for knobs in ({"random_seed_bits": 0}, {"random_seed_bits": 64}, {"echo_seed": "sometimes"},
                  {"extra_inputs": "warn"}, {"validation_detail": "html"}, {"status_stream": "no"},
                  {"submit_answer": "short"},
                  {"seed": "abc"}):
        with pytest.raises(ValueError):
            emu.configure(**knobs)


# -- fal's open choices, as knobs ---------------------------------------------------------------------------


@pytest.mark.parametrize("echo", ["model", "always", "never"])
def test_echo_seed(echo: str) -> None:
    emu, clock = knobbed(echo_seed=echo)
    flux = result(emu, clock, "fal-ai/flux/schnell", {"prompt": "x", "seed": 3}).json()
    imagen = result(emu, clock, "fal-ai/imagen4/preview", {"prompt": "x", "seed": 3}).json()
    assert ("seed" in flux) is (echo != "never") and ("seed" in imagen) is (echo == "always")
    if "seed" in flux:
        assert flux["seed"] == 3


@pytest.mark.parametrize("dims", ["model", "always", "never"])
def test_output_dims(dims: str) -> None:
    emu, clock = knobbed(output_dims=dims)
    flux = result(emu, clock, "fal-ai/flux/schnell", {"prompt": "x"}).json()["images"][0]
    recraft = result(emu, clock, "fal-ai/recraft/v3/text-to-image", {"prompt": "x"}).json()["images"][0]
    assert ("width" in flux) is (dims != "never") and ("width" in recraft) is (dims == "always")


@pytest.mark.parametrize("extra", ["ignore", "forbid"])
def test_extra_inputs(extra: str) -> None:
    emu, clock = knobbed(extra_inputs=extra)
    r = result(emu, clock, "fal-ai/flux/schnell", {"prompt": "x", "guidance": 3})
    if extra == "ignore":
        assert r.status_code == 200
    else:
        assert r.status_code == 422
        assert r.json()["detail"][0]["type"] == "extra_forbidden" and r.json()["detail"][0]["loc"] == ["body",
                                                                                                       "guidance"]
    # a pass-through id's schema is unknown: its inputs are never refused as extra
    assert result(emu, clock, "fal-ai/some-new/model", {"prompt": "x", "guidance": 3}).status_code == 200


@pytest.mark.parametrize("style", ["list", "string"])
def test_validation_detail(style: str) -> None:
    emu, clock = knobbed(validation_detail=style)
    r = result(emu, clock, "fal-ai/flux/schnell", {"prompt": "x", "num_inference_steps": 99})
    assert r.status_code == 422
    got = r.json()["detail"]
    if style == "list":
        assert got[0]["loc"] == ["body", "num_inference_steps"]
    else:
        assert got == "num_inference_steps: Input should be less than or equal to 12"


@pytest.mark.parametrize("offered", [True, False])
def test_status_stream_offered_or_not(offered: bool) -> None:
    emu, clock = knobbed(status_stream=offered)
    with httpx.Client(transport=emu.sync_transport(), base_url=QUEUE, headers=KEY) as c:
        sub = c.post("/fal-ai/flux/schnell", json={"prompt": "x"}).json()
        clock.t += 100
        r = c.get(sub["status_url"] + "/stream")
        assert r.status_code == (200 if offered else 404)


def test_the_shared_emulator_is_seeded_only_by_falnb_emulator_seed(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    code = ("import falnb\n"
            "c = falnb.Client(offline=True, cache=False)\n"
            "print(c.generate('a lighthouse', model='schnell', size='64x64').seed)\n")

    def seed(**env: str) -> str:
        full = {k: v for k, v in os.environ.items() if not k.startswith(("FAL", "FALNB"))}
        proc = subprocess.run([sys.executable, "-c", code], env={**full, **env}, capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)
        return proc.stdout.strip() or proc.stderr

    here = str(Path(__file__).resolve().parents[1])
    a, b = seed(FALNB_EMULATOR_SEED="3", PYTHONPATH=here), seed(FALNB_EMULATOR_SEED="3", PYTHONPATH=here)
    assert a == b and a.isdigit()
    assert "FALNB_EMULATOR_SEED='x' is not a whole number" in seed(FALNB_EMULATOR_SEED="x", PYTHONPATH=here)


@pytest.mark.parametrize("answer", ["full", "minimal"])
def test_submit_answer(answer: str) -> None:
    emu, _ = knobbed(submit_answer=answer)
    with httpx.Client(transport=emu.sync_transport(), base_url=QUEUE, headers=KEY) as c:
        sub = c.post("/fal-ai/flux/schnell", json={"prompt": "x"}).json()
    urls = {"request_id", "status_url", "response_url", "cancel_url"}
    assert set(sub) == (urls | {"status", "queue_position", "logs", "metrics"} if answer == "full" else urls)
