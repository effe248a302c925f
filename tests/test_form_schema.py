"""Issue 13 item 4: ``falnb.form(model=any id)`` builds its fields from fal's schema, in
``x-fal-order-properties`` order, for models falnb has no code for (the emulator's fixtures)."""

from __future__ import annotations

import ipywidgets as widgets
import pytest

from falnb._client import Client
from falnb.emulator import Emulator
from falnb.notebook._form import form

QUIRKY = "fal-ai/emulator/quirky-square"
EDIT = "fal-ai/emulator/multi-edit"  # nano-banana/edit's schema under an id no catalogue ships
SEEDREAM4 = "fal-ai/bytedance/seedream/v4/text-to-image"


@pytest.fixture
def emu() -> Emulator:
    return Emulator(latency=0.0)


def test_fields_follow_the_schema(client: Client) -> None:
    f = form(QUIRKY, client=client, prompt="a kite")
    assert list(f.fields) == ["resolution", "guidance_scale", "safety_tolerance", "steps", "style_strength",
                              "negative_prompt"]  # x-fal-order-properties (the seed has its own box)
    kinds = {name: type(field.widget) for name, field in f.fields.items()}
    assert kinds["resolution"] is widgets.Dropdown and kinds["safety_tolerance"] is widgets.Dropdown
    assert kinds["steps"] is widgets.BoundedIntText and kinds["guidance_scale"] is widgets.BoundedFloatText
    assert kinds["negative_prompt"] is widgets.Text
    assert f.fields["resolution"].widget.value == "1K"
    # the enum of strings with an integer default shows the default, and an untouched form sends nothing
    assert f.fields["safety_tolerance"].widget.value == "4" and f.settings()["params"] == {}
    assert f.size_control.kind == "none" and "0.025" in f.estimate


def test_picture_inputs_and_named_sizes(client: Client) -> None:
    f = form(EDIT, client=client, prompt="make it night")
    assert isinstance(f.fields["sync_mode"].widget, widgets.Checkbox)
    # its picture input (x-fal-file-input, named like fal's) is a picture picker, not a box for URLs
    assert "image_urls" not in f.fields and f.pictures.fields == ["image_urls"]
    assert f.size_control.value == "auto"  # the model's own default, not the first ratio
    assert "needs a picture" in f.estimate  # its schema requires image_urls: said before anything is sent
    assert "auto" in f.size_control.choice.options and "16:9" in f.size_control.choice.options
    s = form(SEEDREAM4, client=client, prompt="a kite")
    values = [v for _, v in s.size_control.choice.options]
    assert "auto_2K" in values and s.size_control.value is None  # its default is 2048x2048: not sent
    s.size_control.choice.value = "auto_2K"
    assert s.settings()["size"] == "auto_2K"
    assert client.plan(**{k: v for k, v in s.settings().items() if k != "params"}).requests[0].input[
        "image_size"] == "auto_2K"


def test_the_form_generates_with_a_model_falnb_has_no_code_for(client: Client, emu: Emulator) -> None:
    f = form(QUIRKY, client=client, prompt="a kite", resolution="2K", steps=12)
    f.generate()
    f.wait(30)
    assert "done" in str(f.status), f.status
    assert emu.requests()[-1].inputs == {"prompt": "a kite", "resolution": "2K", "steps": 12}
    f.fields["guidance_scale"].widget.value = 0.0  # exclusiveMinimum 0: refused before sending
    assert "must be more than 0" in f.estimate
