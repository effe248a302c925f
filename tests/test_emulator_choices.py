"""falnb against every value of the emulator's knobs for what fal's documentation leaves open (issue 11,
"how they slipped through" 1): whichever way fal turns out to behave, falnb keeps its promises.

Each test runs the real client against the emulator, in process or over real HTTP where a socket matters
(the status stream), once per alternative.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import falnb
from falnb import Client
from falnb.emulator import Emulator


@pytest.fixture
def emu() -> Emulator:
    return Emulator(latency=0.0, concurrency=8, seed=11)


@pytest.mark.parametrize("bits", [31, 32, 63])
def test_random_seeds_of_any_width_are_kept_exactly_and_shown_briefly(bits: int, client: Client,
                                                                       emu: Emulator) -> None:
    emu.configure(random_seed_bits=bits)
    gen = client.generate("a lighthouse", model="flux-ultra", n=6)  # two requests, each with its own random seed
    echoed = [j.inputs.get("seed") for j in emu.requests()]
    assert echoed == [None, None]  # falnb sent no seed: fal picked them
    seeds = [img.seed for img in gen.images]
    assert all(isinstance(s, int) and 0 <= s < 2**bits for s in seeds) and len(set(seeds)) == 2
    assert len(repr(gen)) < 2000 and len(gen._repr_html_()) < 20_000  # a spread of seeds is not a range
    again = client.generate("a lighthouse", model="flux-ultra", n=6)
    assert again.cached and [img.seed for img in again.images] == seeds
    assert emu.ledger.submits == 2


@pytest.mark.parametrize("echo", ["model", "always", "never"])
def test_seeds_are_never_invented_whether_fal_echoes_them_or_not(echo: str, client: Client,
                                                                 emu: Emulator) -> None:
    emu.configure(echo_seed=echo)
    given = client.generate("a lighthouse", model="schnell", seed=5, size="256x256")
    assert given.seed == 5 and all(img.seed == 5 for img in given.images)
    picked = client.generate("a harbour", model="schnell", size="256x256")
    if echo == "never":  # fal did not say which seed it used: falnb does not make one up
        assert picked.seed is None and all(img.seed is None for img in picked.images)
    else:
        assert picked.seed is not None and picked.seed == picked.responses[0]["seed"]


@pytest.mark.parametrize("dims", ["model", "always", "never"])
def test_image_sizes_are_read_from_the_pictures_whether_fal_states_them_or_not(dims: str, client: Client,
                                                                               emu: Emulator) -> None:
    emu.configure(output_dims=dims)
    for model, size in (("schnell", "320x192"), ("recraft", "512x256"), ("imagen4", "16:9")):
        gen = client.generate("a lighthouse", model=model, size=size, seed=1)
        img = gen.images[0]
        expected = tuple(int(x) for x in size.split("x")) if "x" in size else \
            client.catalog.resolve(model).ratio_dims(size)
        assert (img.width, img.height) == expected, (model, gen.inputs[0])


@pytest.mark.parametrize("extra", ["ignore", "forbid"])
def test_what_falnb_sends_is_accepted_whether_fal_ignores_or_forbids_extra_inputs(extra: str, client: Client,
                                                                                 emu: Emulator) -> None:
    emu.configure(extra_inputs=extra)
    # every option falnb maps (size, n, seed, its own parameters) is a declared input, on every model
    for model in ("flux-ultra", "schnell", "seedream", "imagen4", "recraft", "ideogram", "bria"):
        gen = client.generate("a lighthouse", model=model, size="1024x768", n=2, seed=3)
        assert len(gen.images) == 2
    # a deliberate new input: sent as asked; a model that forbids extras refuses it with a short error
    if extra == "ignore":
        assert client.generate("a cat", model="schnell", guidance=3, allow_unknown=True).images
    else:
        with pytest.raises(falnb.FalValidationError) as err:
            client.generate("a cat", model="schnell", guidance=3, allow_unknown=True)
        assert "guidance" in str(err.value) and len(str(err.value).splitlines()) <= 3


@pytest.mark.parametrize("style", ["list", "string"])
def test_a_validation_error_reads_well_in_either_shape(style: str, client: Client, emu: Emulator) -> None:
    emu.configure(validation_detail=style, extra_inputs="forbid")
    with pytest.raises(falnb.FalValidationError) as err:
        client.generate("a cat", model="schnell", guidance=3, allow_unknown=True)
    text = str(err.value)
    assert "guidance" in text and "not permitted" in text and len(text.splitlines()) <= 3


@pytest.mark.parametrize("offered", [True, False])
def test_status_stream_or_polling(offered: bool, serve_emulator: Callable[..., Any], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    emu = Emulator(latency=0.05, concurrency=2, seed=3)
    emu.configure(status_stream=offered)
    server = serve_emulator(emu)
    monkeypatch.setenv("FAL_KEY", "test-key")
    c = Client(queue_url=server.url, cache=tmp_path / "c", use_stream=True)
    try:
        gen = c.generate("a lighthouse", model="schnell", size="256x256", seed=2)
    finally:
        c.close()
    assert len(gen.images) == 1 and emu.ledger.submits == 1


@pytest.mark.parametrize("answer", ["full", "minimal"])
def test_a_submit_answer_with_or_without_the_newer_fields(answer: str, client: Client, emu: Emulator) -> None:
    emu.configure(submit_answer=answer)
    gen = client.generate("a lighthouse", model="schnell", size="256x256", seed=4)
    assert len(gen.images) == 1 and gen.request_ids == [emu.requests()[0].request_id]
    assert emu.ledger.submits == 1
