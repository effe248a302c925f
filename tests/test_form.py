"""The widget form without a kernel: build it, click, wait, and check status, images and the bill.

Every click goes through the real client on falnb's private loop to the in-process emulator, whose
ledger says what fal would have billed and whose request records show what fal received.
"""

from __future__ import annotations

import itertools
import json
import shlex
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from falnb._client import Client
from falnb.catalog._catalog import PRESETS, SEED_MODELS, Catalog, ModelSpec, Param
from falnb.emulator import Emulator
from falnb.notebook._form import MAX_FORM_N, FalForm, form
from falnb.notebook._form_cell import falimage_cell, param_text
from falnb.notebook._form_fields import NOT_SENT
from falnb.notebook._form_status import plain
from falnb.results._text import usd

# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def emu() -> Emulator:
    return Emulator(latency=0.02)


def settle(f: FalForm, timeout: float = 30.0) -> str:
    """Wait for the form's generation to finish; the final status line."""
    f.wait(timeout)
    return str(f.status)


def until(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def gallery_bytes(f: FalForm) -> list[bytes]:
    values = [w.value for w in f.gallery.children]
    assert all(isinstance(v, memoryview) for v in values)
    return [bytes(v) for v in values]


def record(f: FalForm) -> list[str]:
    """Every status line the form shows from now on."""
    seen: list[str] = []
    f.status_label.observe(lambda ch: seen.append(plain(ch["new"])), names="value")
    return seen


def other_value(p: Param, default: Any) -> Any:
    """An allowed value for ``p`` that is not its default."""
    if p.choices is not None:
        if p.pattern:  # a sub-style only the pattern allows
            return "digital_illustration/pixel_art"
        return next(c for c in reversed(p.choices) if c != default)
    if p.type == "bool":
        return not default
    if p.type == "int":
        assert p.minimum is not None and p.maximum is not None
        return int(p.minimum) if default != p.minimum else int(p.minimum) + 1
    if p.type == "float":
        assert p.minimum is not None and p.maximum is not None
        mid = round((p.minimum + p.maximum) / 2, 2)
        return mid if mid != default else p.minimum
    samples = {"image_url": "https://example.com/cat.png", "style_id": "7f1b9d9e-1111-4c3a-9d3e-000000000001",
               "colors": [{"r": 200, "g": 30, "b": 30}], "style_codes": ["AAAA1111"],
               "color_palette": {"name": "EMBER"}, "image_urls": ["https://example.com/ref.png"]}
    if p.name in samples:
        return samples[p.name]
    assert p.type == "str", p
    return f"not {p.name}"


def set_widget(f: FalForm, name: str, value: Any) -> None:
    """Type ``value`` into the field the way a person would (JSON text for lists and objects)."""
    field = f.fields[name]
    field.widget.value = json.dumps(value) if field.param.type in ("list", "object") else value


# -- building ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SEED_MODELS, ids=lambda s: s.alias)
def test_form_builds_the_models_own_controls(spec: ModelSpec, client: Client) -> None:
    f = form(spec.alias, client=client)
    assert f.model_picker.value == spec.alias
    assert f.size_control.kind == {"aspect_ratio": "ratio", "image_size": "image_size"}[str(spec.size_field)]
    if spec.size_field == "aspect_ratio":
        assert list(f.size_control.choice.options) == list(spec.aspect_ratios)
        assert f.size_control.value == spec.default_size
    else:
        assert f.size_control.value == spec.default_size
        lo, hi = spec.side_range or (64, 8192)
        assert (f.size_control.width.min, f.size_control.width.max) == (lo, hi)
    # the advanced section: one field per catalog parameter (the seed has its own box, pictures their
    # pickers: flux-ultra's image_url), defaults shown
    assert list(f.fields) == [p.name for p in spec.params if p.name != "seed" and p.name not in f.pictures.fields]
    for name, field in f.fields.items():
        p = spec.param(name)
        assert p is not None
        assert not field.changed(), name
        kinds = {"bool": "bool", "int": "int", "float": "float"}
        expected = "combo" if p.pattern else "choice" if p.choices else kinds.get(p.type, "text")
        assert field.kind == expected, name
        if p.default is not None and p.type not in ("list", "object"):
            assert field.widget.value == p.default, name
        assert field.widget.description == name
        assert "default" in field.widget.tooltip
    assert f.seed_box.disabled == (spec.param("seed") is None)
    assert f.settings()["params"] == {}
    assert repr(f) == f"<falnb form: {spec.alias}>"


def test_picker_lists_every_model_with_its_aliases(client: Client) -> None:
    f = form(client=client)
    labels = dict((v, label) for label, v in f.model_picker.options)
    assert list(labels) == [m.alias for m in (*SEED_MODELS, *client.catalog.image_models)]  # edits too
    assert "flux-ultra / ultra" in labels["flux-ultra"]
    assert "stable-diffusion / sd35" in labels["stable-diffusion"]
    assert f.model_picker.value == SEED_MODELS[0].alias
    # any name the catalog resolves picks the matching option
    assert form("fal-ai/imagen4/preview", client=client).model_picker.value == "imagen4"
    assert form("fal_ai/flux/schnell", client=client).model_picker.value == "flux-schnell"


def test_an_alias_with_its_own_defaults_gets_an_option(emu: Emulator, tmp_path: Path) -> None:
    catalog = Catalog()
    catalog.add_alias("team-fast", "fal-ai/flux/schnell", {"num_inference_steps": 2})
    c = Client(offline=True, emulator=emu, cache=tmp_path / "c", catalog=catalog)
    f = form("team-fast", client=c, prompt="an otter")
    assert ("team-fast → fal-ai/flux/schnell", "team-fast") in f.model_picker.options
    assert f.fields["num_inference_steps"].widget.value == 2  # the alias's default is shown
    assert f.settings()["params"] == {}
    f.generate()
    assert settle(f).startswith("team-fast: done")
    assert emu.requests()[-1].inputs["num_inference_steps"] == 2


def test_unknown_model_is_a_readable_error(client: Client) -> None:
    from falnb import UnknownModelError

    with pytest.raises(UnknownModelError, match="Did you mean"):
        form("flux-ultar", client=client)


def test_a_pass_through_model_forwards_other_inputs(client: Client, emu: Emulator) -> None:
    f = form("fal-ai/brand-new/model", client=client, prompt="a kite", new_knob=3)
    assert f.model_picker.value == "fal-ai/brand-new/model"
    assert f.fields == {}
    assert json.loads(f.extra_box.value) == {"new_knob": 3}
    assert "unknown" in f.estimate
    f.generate()
    assert "done" in settle(f), f.status
    assert emu.requests()[-1].inputs["new_knob"] == 3


def test_switching_models_rebuilds_and_keeps_what_fits(client: Client) -> None:
    f = form("flux-schnell", client=client, prompt="a bridge", size="1200x800", guidance_scale=7.0)
    assert f.size_control.value == "1200x800"
    f.model_picker.value = "stable-diffusion"
    assert list(f.fields) == [p.name for p in f.spec.params if p.name != "seed"]
    assert f.fields["guidance_scale"].widget.value == 7.0  # carried over
    assert f.size_control.value == "1200x800"
    f.model_picker.value = "flux-ultra"
    assert f.size_control.value == "3:2"  # the nearest ratio of the same shape
    assert "guidance_scale" not in f.fields
    f.model_picker.value = "recraft"
    assert f.seed_box.disabled


def test_size_control_adapts(client: Client, emu: Emulator) -> None:
    f = form("seedream", client=client, prompt="dunes")
    sc = f.size_control
    assert [v for _, v in sc.choice.options][-1] == "custom"
    assert not any(w.layout.display == "" for w in sc.widget.children[1:])
    sc.choice.value = "custom"
    assert all(w.layout.display == "" for w in sc.widget.children[1:])
    sc.width.value, sc.height.value = 1536, 640
    sc.width.value = 4000  # clamped to the model's range
    assert sc.width.value == 2048
    assert f.settings()["size"] == "2048x640"
    f.generate()
    assert "done" in settle(f)
    assert emu.requests()[-1].inputs["image_size"] == {"width": 2048, "height": 640}
    img = f.result.images[0] if f.result else None
    assert img is not None and (img.width, img.height) == (2048, 640)
    sc.choice.value = "portrait_4_3"
    assert f.settings()["size"] == "portrait_4_3"
    assert set(PRESETS) >= {v for _, v in sc.choice.options if v != "custom"}


# -- every seed model's parameters reach fal -----------------------------------------------------


@pytest.mark.parametrize("spec", SEED_MODELS, ids=lambda s: s.alias)
def test_every_parameter_reaches_fal(spec: ModelSpec, client: Client, emu: Emulator) -> None:
    f = form(spec.alias, client=client)
    f.prompt_box.value = f"a lighthouse for {spec.alias}"
    wanted: dict[str, Any] = {}
    for name, field in f.fields.items():
        value = other_value(field.param, field.default)
        set_widget(f, name, value)
        assert field.changed(), name
        wanted[name] = value
    if not f.seed_box.disabled:
        f.seed_box.value = "1234"
        wanted["seed"] = 1234
    f.n_box.value = 2
    ratio = spec.aspect_ratios[-1] if spec.aspect_ratios else None
    if ratio:
        f.size_control.choice.value = ratio
    else:
        f.size_control.choice.value = "portrait_4_3"
    before = f.estimate
    assert before.startswith("estimated cost: ~$"), before

    job = f.generate()
    assert job is not None
    assert f.generate_button.disabled and not f.cancel_button.disabled
    status = settle(f)
    assert status.startswith(f"{spec.alias}: done · 2 images"), status
    assert not f.generate_button.disabled and f.cancel_button.disabled

    images = gallery_bytes(f)
    assert len(images) == 2 and all(len(b) > 100 for b in images)
    assert f.result is not None and len(f.result.images) == 2
    # what fal received: every changed parameter, unchanged
    received = [j.inputs for j in emu.requests()]
    assert len(received) == (2 if spec.max_images is None else 1)
    for inputs in received:
        for name, value in wanted.items():
            if name == "seed":
                assert inputs["seed"] in (1234, 1235)
            else:
                assert inputs[name] == value, name
        assert inputs["prompt"] == f"a lighthouse for {spec.alias}"
        if ratio:
            assert inputs["aspect_ratio"] == ratio
        else:
            assert inputs["image_size"] == "portrait_4_3"
    assert f.result.inputs == [dict(i) for i in received]
    # the bill: what the estimate said, paid once
    assert emu.ledger.requests == len(received)
    assert emu.ledger.images == 2
    assert emu.ledger.cost == pytest.approx(f.result.cost)
    assert f.cost == f"cost: ~{usd(f.result.cost)} (estimate)"
    assert before == f"estimated cost: ~{usd(f.result.cost)} for 2 images" + (
        " in 2 requests" if spec.max_images is None else "")


# -- status, errors, cancel ---------------------------------------------------------------------


def test_generate_returns_at_once_and_shows_queue_and_running(tmp_path: Path) -> None:
    emu = Emulator(latency=0.8, concurrency=1)
    c = Client(offline=True, emulator=emu, cache=tmp_path / "c")
    first = form("flux-schnell", client=c, prompt="first")
    f = form("flux-schnell", client=c, prompt="second")
    seen = record(f)
    first.generate()
    until(lambda: emu.ledger.submits == 1)
    t0 = time.monotonic()
    f.generate_button.click()
    assert time.monotonic() - t0 < 0.5  # the click starts the work and returns
    assert "done" in settle(f)
    assert "done" in settle(first)
    text = "\n".join(seen)
    assert "flux-schnell: queued (position 0)" in text, text
    assert "flux-schnell: running" in text, text
    assert seen[-1].startswith("flux-schnell: done · 1 image")
    c.close()


def test_cancel_a_queued_request_bills_nothing(tmp_path: Path) -> None:
    clock = FrozenClock()  # the busy one runs until the cancel is done, however slow the machine
    emu = Emulator(latency=3.0, concurrency=1, clock=clock)
    c = Client(offline=True, emulator=emu, cache=tmp_path / "c")
    busy = form("flux-ultra", client=c, prompt="keeps the only runner busy")
    f = form("flux-ultra", client=c, prompt="waits in the queue")
    busy.generate()
    until(lambda: emu.ledger.submits == 1)
    f.generate()
    until(lambda: "queued" in f.status)
    assert not f.cancel_button.disabled
    f.cancel_button.click()
    status = settle(f, 10)
    assert status.startswith("flux-ultra: cancelled · cancelled request "), status
    assert status.endswith(" while queued (fal does not bill those)"), status
    assert f.cancel_button.disabled and not f.generate_button.disabled
    assert f.result is None and f.gallery.children == ()
    cancelled = [j for j in emu.requests() if j.inputs["prompt"] == "waits in the queue"]
    assert cancelled and cancelled[0].stopped == "cancelled"
    clock.now = 3.0  # fal's time moves on: the busy one finishes
    assert "done" in settle(busy, 10)
    assert emu.ledger.requests == 1  # only the busy one
    assert busy.result is not None
    assert [e.request_id for e in emu.ledger.entries] == busy.result.request_ids
    c.close()


class FrozenClock:
    """The emulator's clock, stopped: a running request runs until the test moves it."""

    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_several_requests_status_shows_the_mix_and_cancel_says_what_may_be_billed(tmp_path: Path) -> None:
    """bria takes one picture per request: n=3 is three requests; with one runner, one runs and two wait.
    The status says so ("1 running, 2 queued (next: position 0)"), not "queued" throughout, and Cancel
    does not promise "nothing billed": the running one may be billed."""
    clock = FrozenClock()
    emu = Emulator(latency=10.0, concurrency=1, clock=clock)
    c = Client(offline=True, emulator=emu, cache=tmp_path / "c")
    f = form("bria", client=c, prompt="a lighthouse", n=3)
    seen = record(f)
    f.generate()
    until(lambda: any("1 running, 2 queued (next: position 0)" in line for line in seen))
    assert [emu.status_of(j.request_id) for j in emu.requests()] == ["IN_PROGRESS", "IN_QUEUE", "IN_QUEUE"]
    f.cancel_button.click()
    status = settle(f, 10)
    assert status.startswith("bria: cancelled · "), status
    assert "nothing billed" not in status and "may still bill it" in status, status
    assert "while queued (fal does not bill those)" in status, status
    c.close()


def test_generate_again_after_a_cancel(tmp_path: Path) -> None:
    emu = Emulator(latency=0.5, concurrency=1)
    c = Client(offline=True, emulator=emu, cache=tmp_path / "c")
    busy = form("flux-schnell", client=c, prompt="busy")
    f = form("flux-schnell", client=c, prompt="cancelled, then wanted after all")
    busy.generate()
    until(lambda: emu.ledger.submits == 1)
    f.generate()
    until(lambda: "queued" in f.status)
    f.cancel()
    assert "while queued (fal does not bill those)" in settle(f, 10)
    # the cancelled request delivered nothing: Generate again sends a new request and pays for it once
    f.generate()
    status = settle(f, 15)
    assert "done" in status, status
    assert emu.ledger.requests == 2 and len(gallery_bytes(f)) == 1
    c.close()


def test_cancel_when_nothing_runs_changes_nothing(client: Client) -> None:
    f = form("flux-ultra", client=client, prompt="x")
    assert f.cancel() is False  # nothing running
    assert f.cancel_button.disabled and f.status == "ready"
    f.generate()
    done = settle(f)
    assert f.cancel() is False  # finished: the outcome stays on the status line
    assert f.status == done


def test_a_cancel_racing_the_end_never_leaves_cancelling(tmp_path: Path) -> None:
    emu = Emulator(latency=0.01)
    c = Client(offline=True, emulator=emu, cache=tmp_path / "c")
    f = form("flux-schnell", client=c, prompt="race")
    for i in range(15):
        f.prompt_box.value = f"race {i}"
        f.generate()
        time.sleep(0.01 * (i % 5))
        f.cancel()
        status = settle(f)
        assert "cancelling" not in status and ("cancelled" in status or "done" in status), status
    c.close()


def test_errors_are_shown_and_nothing_is_sent(client: Client, emu: Emulator) -> None:
    f = form("flux-ultra", client=client)
    f.generate_button.click()
    assert f.status == "error: the prompt is empty"
    f.prompt_box.value = "a cat"
    f.seed_box.value = "abc"
    f.generate()
    assert f.status == "error: seed 'abc' is not a whole number — Leave it empty for a random seed."
    assert f.estimate.startswith("⚠ seed 'abc'")
    f.seed_box.value = ""
    f.extra_box.value = "{not json"
    f.generate()
    assert f.status.startswith("error: other inputs '{not json' is not a JSON object")
    f.extra_box.value = '{"enhance_promt": true}'  # a typo the catalog spots
    f.generate()
    assert "did you mean" in f.status
    f.extra_box.value = ""
    assert emu.ledger.submits == 0
    # an error fal answers with (a content-policy 422) is shown readably
    f.prompt_box.value = "forbidden-content please"
    f.generate()
    status = settle(f)
    assert status.startswith("error: "), status
    assert "content" in status.lower() and "\n" not in status
    assert not f.generate_button.disabled and f.cancel_button.disabled
    assert f.gallery.children == ()


@pytest.mark.parametrize(("extra", "control"), [
    ('{"seed": 5}', "seed box"), ('{"n": 2}', "n box"), ('{"size": "1:1"}', "size control"),
    ('{"prompt": "a dog"}', "prompt box"), ('{"model": "bria"}', "model list")])
def test_other_inputs_with_a_control_of_their_own(client: Client, emu: Emulator, extra: str, control: str) -> None:
    """``{"seed": 5}`` in "other inputs" would give the seed twice: the estimate and the status name the
    control to use, and nothing is sent."""
    f = form("schnell", client=client, prompt="a cat")
    f.extra_box.value = extra
    assert f.estimate.startswith("⚠ other inputs: ") and control in f.estimate
    f.generate_button.click()
    assert f.job is None and control in f.status and f.status.startswith("error: "), f.status
    f.extra_box.value = '{"new_param": 1}'
    assert f.estimate.startswith("estimated cost")
    assert emu.ledger.submits == 0


def test_the_prompt_is_read_as_the_magic_reads_it(client: Client, emu: Emulator) -> None:
    """Surrounding spaces and the newline a text box keeps after Enter are not part of the prompt
    (as for a cell body), so the form, its %%falimage cell and the magic ask for the same request."""
    from falnb.notebook._magic_args import prompt_text, prompts_of

    f = form("schnell", client=client, prompt="  a red fox in the snow\n", seed=7)
    assert f.settings()["prompt"] == "a red fox in the snow" == prompt_text(f.prompt_box.value)
    body = f.cell_text().partition("\n")[2]
    assert prompts_of(prompt_text(body), None, {}) == ["a red fox in the snow"]
    assert f.plan().requests[0].key == client.plan("a red fox in the snow", model="schnell", seed=7).requests[0].key


# -- cost, cache, history -------------------------------------------------------------------------


def test_cost_before_and_after_and_a_cache_hit_pays_nothing(client: Client, emu: Emulator) -> None:
    f = form("flux-ultra", client=client, prompt="a harbour", n=2, seed=5)
    assert f.estimate == "estimated cost: ~$0.12 for 2 images"
    f.n_box.value = 3
    assert f.estimate == "estimated cost: ~$0.18 for 3 images"
    f.n_box.value = 2
    f.generate()
    assert settle(f).startswith("flux-ultra: done · 2 images")
    assert f.cost == "cost: ~$0.12 (estimate)"
    first = gallery_bytes(f)
    assert emu.ledger.requests == 1
    f.generate()
    status = settle(f)
    assert status.startswith("flux-ultra: cached · 2 images from the cache, nothing paid"), status
    assert f.cost == "cost: $0 (from the cache; saved ~$0.12)"
    assert gallery_bytes(f) == first
    assert emu.ledger.requests == 1 and emu.ledger.submits == 1


def test_history_reopens_without_paying(client: Client, emu: Emulator) -> None:
    f = form("ideogram", client=client, prompt="first poster", rendering_speed="TURBO")
    f.generate()
    settle(f)
    first = gallery_bytes(f)
    f.prompt_box.value = "second poster"
    f.model_picker.value = "flux-schnell"
    f.n_box.value = 3
    f.generate()
    settle(f)
    assert len(f.history) == 2
    assert [v for _, v in f.history_picker.options] == [1, 0]  # newest first
    assert f.history_picker.options[1][0].startswith("1. ")
    assert "ideogram · 1 image(s) · first poster" in f.history_picker.options[1][0]
    bill = (emu.ledger.submits, emu.ledger.requests)

    f.history_picker.value = 0
    f.reopen_button.click()
    assert f.status == "re-opened from the cache: 1 image(s), nothing paid"
    assert gallery_bytes(f) == first
    assert f.model_picker.value == "ideogram" and f.prompt_box.value == "first poster"
    assert f.fields["rendering_speed"].widget.value == "TURBO" and f.n_box.value == 1
    assert f.cost == "cost: nothing (re-opened from the cache)"
    assert (emu.ledger.submits, emu.ledger.requests) == bill
    # generating the restored settings is a cache hit
    f.generate()
    assert "cached" in settle(f)
    assert (emu.ledger.submits, emu.ledger.requests) == bill


def test_history_is_bounded_and_reopens_from_the_cache(client: Client, emu: Emulator,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The form's history keeps what re-opens a result (its plan), not the pictures the cache holds, and
    at most HISTORY_SIZE items; an item whose entry was pruned says so instead of showing nothing."""
    from falnb.notebook import _form_history

    monkeypatch.setattr(_form_history, "HISTORY_SIZE", 2)
    f = form("schnell", client=client, seed=1)
    pictures = []
    for i in range(3):
        f.prompt_box.value = f"take {i}"
        f.generate()
        assert "done" in settle(f)
        pictures.append(gallery_bytes(f))
    assert [item.generation.prompt for item in f.history] == ["take 1", "take 2"]
    assert all(item.generation.images == [] and item.count == 1 for item in f.history)
    f.reopen(0)
    assert f.status == "re-opened from the cache: 1 image(s), nothing paid"
    assert gallery_bytes(f) == pictures[1] and f.result is not None and f.result.images
    assert emu.ledger.requests == 3
    assert client.cache is not None
    client.cache.clear()
    with pytest.raises(LookupError):
        f.reopen(1)
    assert "no longer in the cache" in f.status


def test_history_lists_the_sessions_other_generations(client: Client, emu: Emulator) -> None:
    f = form("flux-ultra", client=client)
    gen = client.generate("made in another cell", model="imagen4", size="16:9", resolution="2K")
    f.refresh_button.click()
    assert len(f.history) == 1 and "imagen4" in f.history_picker.options[0][0]
    bill = emu.ledger.requests
    f.reopen(0)
    assert f.status == "re-opened from the session: 1 image(s), nothing paid"
    assert gallery_bytes(f)[0]
    assert f.model_picker.value == "imagen4" and f.prompt_box.value == "made in another cell"
    assert f.size_control.value == "16:9" and f.fields["resolution"].widget.value == "2K"
    assert f.result is gen and emu.ledger.requests == bill
    f.generate()
    assert "cached" in settle(f)  # the restored settings ask for the same cache entry
    assert emu.ledger.requests == bill


# -- results that persist -------------------------------------------------------------------------


class FakeHandle:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    def update(self, obj: dict[str, Any], raw: bool = False) -> None:
        assert raw
        self.updates.append(obj)


def test_show_in_notebook_output(client: Client) -> None:
    f = form("flux-schnell", client=client, prompt="a red kite", n=2)
    assert f.show_button.disabled
    assert f.show_result() is False
    f.generate()
    settle(f)
    assert not f.show_button.disabled
    # not displayed through IPython: the form's own output area receives it
    f.show_button.click()
    caption, picture = (o["data"] for o in f.output_area.outputs)
    assert caption["text/plain"].startswith("1. a red kite\n   fal-ai/flux/schnell")
    assert picture["image/jpeg"] and "2 image(s) from 1 generation(s)" in picture["text/plain"]
    # displayed in a cell: the two outputs it left are updated (they persist in the .ipynb)
    handles = FakeHandle(), FakeHandle()
    f._handles = handles
    f.prompt_box.value = "a blue kite"
    f.generate()
    settle(f)
    f.show_result()
    assert "shown in this cell's output (2 result(s))" in f.status
    caption = handles[0].updates[-1]["text/plain"]
    assert "1. a red kite" in caption and "2. a blue kite" in caption
    assert "image/jpeg" in handles[1].updates[-1]


def test_show_in_notebook_output_keeps_the_latest(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cell's output holds the latest PINNED results: it never grows with a session's clicks."""
    from falnb.notebook import _form_outputs

    monkeypatch.setattr(_form_outputs, "PINNED", 2)
    f = form("flux-schnell", client=client, size="256x256", seed=1)
    for prompt in ("one", "two", "three"):
        f.prompt_box.value = prompt
        f.generate()
        settle(f)
        f.show_result()
    assert [g.prompt for g in f.pinned] == ["two", "three"]
    caption, picture = (o["data"] for o in f.output_area.outputs)
    assert caption["text/plain"].startswith("1. two\n") and "2 image(s) from 2 generation(s)" in picture["text/plain"]


def test_ipython_display_leaves_outputs_to_fill(client: Client) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    published: list[tuple[dict[str, Any], dict[str, Any]]] = []
    original = shell.display_pub.publish

    def publish(data: dict[str, Any], metadata: Any = None, **kw: Any) -> None:
        published.append((data, kw))

    shell.display_pub.publish = publish
    try:
        f = form("flux-schnell", client=client, prompt="kites")
        shell.display_formatter.ipython_display_formatter(f)
        assert "application/vnd.jupyter.widget-view+json" in published[0][0]
        assert published[0][0]["text/plain"] == "<falnb form: flux-schnell>"
        ids = [kw["transient"]["display_id"] for _, kw in published[1:]]
        assert len(ids) == 2 and all(ids)
        f.generate()
        settle(f)
        f.show_result()
        updates = [(d, kw) for d, kw in published[3:]]
        assert [kw["transient"]["display_id"] for _, kw in updates] == ids
        assert all(kw.get("update") for _, kw in updates)
        assert "image/jpeg" in updates[1][0]
    finally:
        shell.display_pub.publish = original


# -- the %%falimage cell ---------------------------------------------------------------------------


def _parse_cell(text: str) -> dict[str, Any]:
    """Read a %%falimage cell the way the magic does (shell words, -p KEY=JSON-or-string)."""
    head, _, body = text.partition("\n")
    words = shlex.split(head)
    assert words[0] == "%%falimage"
    out: dict[str, Any] = {"prompt": body.replace("{{", "{").replace("}}", "}"), "params": {}, "n": 1,
                           "size": None, "seed": None}
    it = iter(words[1:])
    for w in it:
        value = next(it)
        if w == "--model":
            out["model"] = value
        elif w == "--size":
            out["size"] = value
        elif w == "-n":
            out["n"] = int(value)
        elif w == "--seed":
            out["seed"] = int(value)
        else:
            assert w == "-p"
            key, _, raw = value.partition("=")
            try:
                out["params"][key] = json.loads(raw)
            except ValueError:
                out["params"][key] = raw
    return out


def test_cell_text_from_settings(client: Client) -> None:
    f = form("flux-ultra", client=client, prompt="a {big} lighthouse\nat dusk", size="1:1", n=2, seed=42,
             safety_tolerance="5", raw=True, image_url="https://example.com/a b.png")
    text = f.cell_text()
    assert text == ("%%falimage --model flux-ultra --size 1:1 -n 2 --seed 42 -p 'safety_tolerance=\"5\"' "
                    "-p raw=true -p 'image_url=https://example.com/a b.png'\n"
                    "a {{big}} lighthouse\nat dusk")
    # read back, it asks for exactly the same requests (so running it hits the same cache entry)
    parsed = _parse_cell(text)
    plan = client.plan(parsed["prompt"], model=parsed["model"], n=parsed["n"], size=parsed["size"],
                       seed=parsed["seed"], **parsed["params"])
    assert [r.key for r in plan.requests] == [r.key for r in f.plan().requests]
    try:
        from falnb.notebook._magic_args import parse_params
    except ImportError:
        return
    words = shlex.split(text.partition("\n")[0])
    assert parse_params([v for k, v in itertools.pairwise(words) if k == "-p"]) == parsed["params"]


@pytest.mark.parametrize("spec", SEED_MODELS, ids=lambda s: s.alias)
def test_cell_text_round_trips_for_every_model(spec: ModelSpec, client: Client) -> None:
    f = form(spec.alias, client=client, prompt="every {field} set")
    for name, field in f.fields.items():
        set_widget(f, name, other_value(field.param, field.default))
    parsed = _parse_cell(f.cell_text())
    assert parsed["params"] == f.settings()["params"]
    plan = client.plan(parsed["prompt"], model=parsed["model"], n=parsed["n"], size=parsed["size"],
                       seed=parsed["seed"], **parsed["params"])
    assert [r.key for r in plan.requests] == [r.key for r in f.plan().requests]


def test_progress_lines() -> None:
    from falnb.notebook._form_status import progress_text
    from falnb.results._progress import Progress

    line = progress_text(Progress("queued", "m", 1, queue_position=2, elapsed=0.5), "flux-ultra")
    assert line == "flux-ultra: queued (position 2) · 0.5 s"
    line = progress_text(Progress("running", "m", 2, done=1, log="step 3/4", elapsed=1.25), "x")
    assert line == "x: running: step 3/4 · 1/2 requests done · 1.2 s"
    # the requests' "done" is not the form's: the final line comes with the pictures
    assert "done" not in progress_text(Progress("done", "m", 1), "x")
    assert "cached" not in progress_text(Progress("cached", "m", 1), "x")
    # several requests in different states: the mix, most advanced first
    mixed = Progress("queued", "m", 3, queue_position=0, elapsed=2, states=("running", "queued", "queued"))
    assert progress_text(mixed, "bria") == "bria: 1 running, 2 queued (next: position 0) · 0/3 requests done · 2.0 s"
    assert mixed.what() == "1 running, 2 queued (next: position 0) · 0/3 requests"
    done = Progress("running", "m", 3, done=1, states=("done", "running", "running"))
    assert done.mix() is None and done.what() == "running · 1/3 requests"


def test_param_text() -> None:
    assert param_text("png") == "png"
    assert param_text("2") == '"2"'
    assert param_text("true") == '"true"'
    assert param_text(True) == "true"
    assert param_text(2.5) == "2.5"
    assert param_text([{"r": 1}]) == '[{"r":1}]'
    assert falimage_cell("p", model="m") == "%%falimage --model m\np"


def test_copy_button_inserts_or_copies_the_cell(client: Client) -> None:
    f = form("recraft", client=client, prompt="an icon", style="vector_illustration")
    assert f.cell_box.layout.display == "none"
    f.copy_button.click()
    assert f.cell_box.value == f.cell_text()
    assert f.cell_box.layout.display == ""
    (out,) = f._script.outputs
    js = out["data"]["application/javascript"]
    assert json.dumps(f.cell_text()) in js and "notebook:insert-cell-below" in js
    assert "clipboard.writeText" in js and ".falnb-copy-report input" in js
    # the kernel cannot see what the page did: until the script reports, the status claims nothing
    assert f.status == "%%falimage cell: its text is shown below"
    token = f._copy_token
    f._copy_report.value = "an-old-token:inserted"  # a report of an earlier click changes nothing
    assert f.status == "%%falimage cell: its text is shown below"
    f._copy_report.value = f"{token}:copied"  # what the script types into the hidden box
    assert f.status.startswith("%%falimage cell: copied to the clipboard")
    f._copy_report.value = f"{token}:inserted"
    assert f.status.startswith("%%falimage cell: inserted below")
    f._copy_report.value = f"{token}:shown"
    assert "did not allow the clipboard" in f.status


def test_insert_cell_from_code_sets_the_next_input(client: Client) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    f = form("flux-pro", client=client, prompt="a fox")
    text = f.insert_cell()
    assert text.startswith("%%falimage --model flux-pro")
    assert shell.rl_next_input == text


# -- odds and ends ------------------------------------------------------------------------------


def test_defaults_fill_the_form(client: Client) -> None:
    f = form("imagen4", client=client, prompt="p", size="9:16", n=MAX_FORM_N, seed=3, resolution="2K",
             negative_prompt="fog")
    s = f.settings()
    assert s == {"model": "imagen4", "prompt": "p", "n": MAX_FORM_N, "size": "9:16", "seed": 3,
                 "params": {"resolution": "2K", "negative_prompt": "fog"}}
    assert f.fields["output_format"].value == "png"
    assert f.fields["negative_prompt"].changed()
    f.fields["negative_prompt"].widget.value = ""
    assert "negative_prompt" not in f.settings()["params"]
    assert NOT_SENT is not None


def test_two_forms_run_at_once(client: Client, emu: Emulator) -> None:
    forms = [form("flux-schnell", client=client, prompt=f"picture {i}") for i in range(3)]
    threads = [threading.Thread(target=x.generate) for x in forms]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all("done" in settle(x) for x in forms)
    assert emu.ledger.requests == 3
