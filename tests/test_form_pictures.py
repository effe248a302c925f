"""The form's picture pickers in-process: uploads and previous results into the request under the model's
own fields, and the --image/--mask words of "Copy as %%falimage cell" (or what a cell cannot name)."""

# ruff: noqa: F811  (the fixtures of tests/test_form.py, imported by name: pytest passes them as parameters)
from __future__ import annotations

import datetime
import io
from pathlib import Path

import pytest
from PIL import Image as PIL

from falnb._client import Client
from falnb.emulator import Emulator
from falnb.notebook._form import FalForm, form
from falnb.notebook._form_pictures import PicturePickers
from falnb.results._generation import Generation
from falnb.results._image import Image

from .test_form import emu  # noqa: F401  (the same in-process emulator; the client is conftest's)


def png(color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    buf = io.BytesIO()
    PIL.new("RGB", (8, 8), color).save(buf, "PNG")
    return buf.getvalue()


def upload(name: str, data: bytes) -> dict[str, object]:
    return {"name": name, "type": "image/png", "size": len(data), "content": memoryview(data),
            "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)}


def gen(*colors: tuple[int, int, int], rid: str = "r-1") -> Generation:
    images = [Image(data=png(c), content_type="image/png", width=8, height=8) for c in colors]
    return Generation(prompt="p", model="fal-ai/flux/schnell", images=images, inputs=[{}], request_ids=[rid])


def pickers(fields: list[tuple[str, bool, bool]]) -> tuple[PicturePickers, list[tuple[Generation, int]]]:
    asked: list[tuple[Generation, int]] = []

    def pictures_of(g: Generation, i: int) -> Image | None:
        asked.append((g, i))
        return g.images[i]

    return PicturePickers(fields, pictures_of), asked


def test_an_upload_goes_in_under_the_models_field_named_by_its_file() -> None:
    box, _ = pickers([("image_url", False, True), ("mask_url", False, False)])
    assert box.inputs() == {}
    box.pickers[0].upload.value = (upload("photo.png", png()),)
    inputs = box.inputs()
    assert list(inputs) == ["image_url"]
    assert isinstance(inputs["image_url"], Image) and inputs["image_url"].data == png()
    assert inputs["image_url"].source == "photo.png"
    box.pickers[0].reset()
    assert box.inputs() == {}


def test_a_list_field_takes_several_pictures_and_a_previous_result() -> None:
    box, asked = pickers([("image_urls", True, True)])
    earlier = gen((1, 2, 3), (4, 5, 6))
    box.set_choices([("1. picture 2 · flux-schnell · p", earlier, 1, "picture 2 of cell [4]")])
    picker = box.pickers[0]
    assert picker.upload.multiple
    picker.upload.value = (upload("a.png", png((9, 9, 9))), upload("b.png", png((8, 8, 8))))
    picker.previous.value = 0
    value = box.inputs()["image_urls"]
    assert [i.source for i in value] == ["a.png", "b.png", "picture 2 of cell [4]"]
    assert value[2].data == earlier.images[1].data and asked == [(earlier, 1)]
    # the listing refreshes (a new result) and keeps the pick
    box.set_choices([("2. new", gen((0, 0, 0), rid="r-2"), 0, "picture 1 of cell [5]"),
                     ("1. picture 2 · flux-schnell · p", earlier, 1, "picture 2 of cell [4]")])
    assert picker.previous.value == 1


def test_copy_names_what_a_cell_can_and_says_what_it_cannot(tmp_path: Path) -> None:
    box, _ = pickers([("image_urls", True, True), ("mask_url", False, False)])
    kept, lost = gen((1, 1, 1), (2, 2, 2), rid="kept"), gen((3, 3, 3), rid="lost")
    (tmp_path / "photo.png").write_bytes(png((5, 5, 5)))
    images, mask = box.pickers
    images.upload.value = (upload("photo.png", png((5, 5, 5))), upload("elsewhere.png", png((6, 6, 6))))
    images.set_choices([("kept", kept, 1, "picture 2 of cell [1]")])
    images.previous.value = 0
    mask.set_choices([("lost", lost, 0, "picture 1 of cell [2]")])
    mask.previous.value = 0
    ns = {"g": kept, "_": kept, "other": 3}
    words, problems = box.cell_words(ns, tmp_path)
    assert words == ["--image", "photo.png", "--image", "{g[1]}"]
    assert problems == ["the uploaded elsewhere.png (not a file in the kernel's folder)",
                        "picture 1 of cell [2] (keep it in a variable)"]
    # the same bytes under another name in a variable, and a changed file, are told apart
    (tmp_path / "photo.png").write_bytes(png((7, 7, 7)))
    ns["m"] = lost.images[0]
    words, problems = box.cell_words(ns, tmp_path)
    assert words == ["--image", "{g[1]}", "--mask", "{m}"]
    assert problems == ["the uploaded photo.png (not a file in the kernel's folder)",
                        "the uploaded elsewhere.png (not a file in the kernel's folder)"]


def test_a_second_picture_field_is_reported_not_misplaced() -> None:
    box, _ = pickers([("image_url", False, True), ("reference_image_url", False, False)])
    g = gen((1, 1, 1))
    box.set_choices([("x", g, 0, "picture 1 of cell [1]")])
    box.pickers[1].previous.value = 0
    words, problems = box.cell_words({"g": g})
    assert words == [] and problems == ["reference_image_url (%%falimage --image fills image_url)"]


# -- in the form, through the client to the in-process emulator ----------------------------------------


def made(f: FalForm) -> Generation:
    f.wait(30)
    assert f.result is not None, f.status
    return f.result


def test_an_upload_is_edited_and_the_caption_names_it(client: Client, emu: Emulator) -> None:
    f = form("seedream-edit", client=client, prompt="make it blue")
    assert [p.field for p in f.pictures.pickers] == ["image_urls"] and "image_urls" not in f.fields
    assert "needs a picture" in f.estimate  # nothing picked yet: said before anything is sent
    f.pictures.pickers[0].upload.value = (upload("photo.png", png((200, 0, 0))),)
    assert "needs" not in f.estimate and "~" in f.estimate
    f.generate()
    gen = made(f)
    (url,) = emu.requests()[-1].input["image_urls"]
    assert emu.storage.fetch(url) == png((200, 0, 0))
    assert [p.source for p in gen.input_images] == ["photo.png"] and "edit of photo.png" in f.caption


def test_a_previous_result_is_picked_from_the_history_and_reopening_an_edit_pays_nothing(
        client: Client, emu: Emulator) -> None:
    f = form("flux-schnell", client=client, prompt="a teapot", seed=3)
    f.generate()
    first = made(f)
    f.model_picker.value = "seedream-edit"
    picker = f.pictures.pickers[0]
    labels = [label for label, _ in picker.previous.options]
    assert labels[1].startswith("1. picture 1 · flux-schnell · a teapot")
    picker.previous.value = 0
    f.prompt_box.value = "make it blue"
    f.generate()
    edit = made(f)
    (url,) = emu.requests()[-1].input["image_urls"]
    assert emu.storage.fetch(url) == first.images[0].data
    assert edit.input_images[0].source == "picture 1 of history item 1"
    # re-open the edit, then Generate: the same pictures (by content), a cache hit, nothing sent
    requests, uploads = len(emu.requests()), emu.storage.uploads
    f.model_picker.value = "flux-schnell"
    assert f.pictures_box.children == () or list(f.pictures_box.children) == []
    f.refresh_history()
    f.reopen(len(f.history) - 1)
    assert f.model_picker.value == "seedream-edit"
    assert [i.data for i in f.pictures.inputs()["image_urls"]] == [first.images[0].data]
    f.generate()
    assert made(f).cached and len(emu.requests()) == requests and emu.storage.uploads == uploads


@pytest.mark.parametrize("model", ["nano-banana-edit", "nano-banana-pro-edit", "kontext"])
def test_the_forms_default_size_is_one_the_model_takes(client: Client, model: str) -> None:
    f = form(model, client=client, prompt="make it night")
    f.pictures.pickers[0].upload.value = (upload("photo.png", png()),)
    assert "⚠" not in f.estimate, f.estimate  # the estimate is the plan: it was made with the default size
    s = f.settings()
    plan = client.plan(s["prompt"], model=s["model"], size=s["size"], **s["params"], **f.pictures.inputs())
    sent = plan.requests[0].input.get("aspect_ratio")
    # fal's default, the input picture's shape ("auto" where the model names it, else nothing sent)
    assert sent == ("auto" if "nano-banana" in model else None), sent
    assert (plan.requests[0].width, plan.requests[0].height) == (8, 8)
    for size in f.size_control.choice.options:  # every size offered is one the model takes
        value = size[1] if isinstance(size, tuple) else size
        client.plan("night", model=model, size=value or None, image=png())


def test_an_upscaler_takes_no_prompt(client: Client, emu: Emulator) -> None:
    f = form("flux-schnell", client=client, prompt="a teapot")
    f.model_picker.value = "esrgan"
    assert f.prompt_box.disabled and f.prompt_box.value == "" and "needs a picture" in f.estimate
    f.pictures.pickers[0].upload.value = (upload("small.png", png()),)
    assert "⚠" not in f.estimate
    f.generate()
    gen = made(f)
    assert "prompt" not in emu.requests()[-1].input and gen.images[0].width == 16  # esrgan: 2x by default
    f.model_picker.value = "flux-schnell"
    assert not f.prompt_box.disabled


def test_copy_writes_the_picture_options(client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photo.png").write_bytes(png((1, 2, 3)))
    g = client.generate("a teapot", model="flux-schnell", seed=1)
    shell.user_ns["g"] = g
    f = form("seedream-edit", client=client, prompt="make it blue")
    f.refresh_history()
    picker = f.pictures.pickers[0]
    picker.upload.value = (upload("photo.png", png((1, 2, 3))), upload("desk.png", png((4, 5, 6))))
    picker.previous.value = 0
    text = f.copy_cell()
    assert text == "%%falimage --model seedream-edit --image photo.png --image {g}\nmake it blue"
    assert "not in the cell (a cell cannot name it): the uploaded desk.png" in f.status
    shell.user_ns.pop("g")
