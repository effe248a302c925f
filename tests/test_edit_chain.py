"""Pictures out (issue 14): the emulator's edits, upscalers and background removers answer from their input
pictures; the chain generate → edit → remove background → upscale is paid once, across a kernel restart; the
public API (falnb.edit & co, Generation.edit, LiteLLM's image_edit) on top of it."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

import falnb
from falnb import _api
from falnb.emulator import Emulator
from tests.test_pictures import png


@pytest.fixture
def emu() -> Emulator:
    return Emulator(latency=0.0)


def offline(emu: Emulator, cache: Path) -> falnb.Client:
    return falnb.Client(offline=True, emulator=emu, cache=cache)


def pil(data: bytes) -> Any:
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_an_edit_shows_its_input_flipped_and_tinted(emu: Emulator, tmp_path: Path) -> None:
    c = offline(emu, tmp_path / "c")
    src = pil(png(size=(96, 64)))
    src.paste((0, 0, 255), (0, 0, 48, 64))  # left half blue, right half red
    buf = io.BytesIO()
    src.save(buf, "PNG")
    out = pil(c.generate("make it night", model="kontext", image=buf.getvalue()).images[0].data)
    assert out.size == (96, 64)  # the input's size: no size was asked for
    left, right = out.convert("RGB").getpixel((10, 5)), out.convert("RGB").getpixel((85, 5))
    assert left[0] > left[2] and right[2] > right[0]  # flipped: red now on the left, blue on the right
    other = c.generate("make it night", model="kontext", image=png((0, 255, 0), (96, 64))).images[0].data
    assert pil(other).convert("RGB").getpixel((10, 5)) != left  # another input, another picture


def test_upscalers_resize_by_their_factor_and_background_removal_is_rgba(emu: Emulator, tmp_path: Path) -> None:
    c = offline(emu, tmp_path / "c")
    data = png((250, 250, 250), (60, 40))
    img = pil(data)
    img.paste((200, 0, 0), (20, 10, 40, 30))  # a red subject on a white background
    buf = io.BytesIO()
    img.save(buf, "PNG")
    assert c.generate("", model="esrgan", image=data, scale=3).images[0].width == 180
    up = c.generate("", model="clarity-upscaler", image=data, upscale_factor=2)
    assert (up.images[0].width, up.images[0].height) == (120, 80)
    assert up.images == [up.image] and "images" not in up.responses[0] and "image" in up.responses[0]
    cut = pil(c.generate("", model="birefnet", image=buf.getvalue()).images[0].data)
    assert cut.mode == "RGBA" and cut.getpixel((1, 1))[3] == 0 and cut.getpixel((30, 20))[3] == 255


def test_the_emulator_reads_only_its_own_storage_or_data_uris(emu: Emulator, tmp_path: Path) -> None:
    c = offline(emu, tmp_path / "c")
    with pytest.raises(falnb.FalValidationError, match="image_url") as err:
        c.generate("x", model="kontext", image="https://elsewhere.example/cat.png")
    assert err.value.error_type == "file_download_error"
    queue = c._engine.queue()
    from falnb.fal._loop import run_sync

    async def sent(inputs: dict[str, Any]) -> Any:
        sub = await queue.submit("fal-ai/flux-pro/kontext", inputs)
        await queue.wait(sub, lambda st: None, 5.0, bound=5.0)
        return await queue.result(sub, retry=False)

    import base64

    uri = "data:image/png;base64," + base64.b64encode(png()).decode()
    assert run_sync(sent({"prompt": "x", "image_url": uri}))["images"]
    with pytest.raises(falnb.FalValidationError, match="load the image"):
        run_sync(sent({"prompt": "x", "image_url": "data:image/png;base64," + base64.b64encode(b"junk").decode()}))
    with pytest.raises(falnb.FalValidationError, match="required"):
        run_sync(sent({"prompt": "x"}))


def test_the_chain_is_paid_once_across_a_kernel_restart(emu: Emulator, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def chain(client: falnb.Client) -> list[falnb.Generation]:
        monkeypatch.setattr(_api, "default_client", lambda: client)
        gen = client.generate("a fox in the snow", model="flux-schnell", size="256x192", seed=1)
        edited = gen.edit("make it night", model="kontext")  # on the client that made gen
        cut = falnb.remove_background(edited)
        big = falnb.upscale(cut, scale=2)
        return [gen, edited, cut, big]

    first = chain(offline(emu, tmp_path / "c"))
    assert [g.cached for g in first] == [False] * 4
    assert emu.ledger.submits == 4 and emu.storage.uploads == 3
    assert (first[3].images[0].width, first[3].images[0].height) == (512, 384)
    assert first[1].input_images[0].source == "picture 1 of schnell"
    again = chain(offline(emu, tmp_path / "c"))  # a new kernel: a new Client on the same cache folder
    assert [g.cached for g in again] == [True] * 4
    assert emu.ledger.submits == 4 and emu.storage.uploads == 3
    assert [g.images[0].data for g in again] == [g.images[0].data for g in first]


def test_a_journaled_edit_is_reattached_not_uploaded_or_paid_again(emu: Emulator, tmp_path: Path) -> None:
    c = offline(emu, tmp_path / "c")
    plan = c.plan("make it night", model="kontext", image=png())
    req = c.plan("make it night", model="kontext", image=png()).requests[0]
    assert req.key == plan.requests[0].key  # a fresh plan, the same key
    from falnb.fal._loop import run_sync

    async def submit() -> str:  # a kernel uploaded and submitted it, then died
        body = {**req.input, **await c._engine.uploader().resolve(req.pictures, req.model)}
        return (await c._engine.queue().submit(req.model, body)).request_id

    c.cache._index.conn()  # type: ignore[union-attr]  # create the index
    rid = run_sync(submit())
    t = time.time()
    with sqlite3.connect(tmp_path / "c" / "index.sqlite3") as db:
        db.execute("INSERT INTO journal(ns, key, model, state, request_id, pid, host, started, sent, updated) "
                   "VALUES('emulator', ?, ?, 'submitted', ?, 0, 'elsewhere', ?, ?, ?)",
                   (req.key, req.model, rid, t, t, t))
    gen = offline(emu, tmp_path / "c").generate("make it night", model="kontext", image=png())
    assert gen.request_ids == [rid] and emu.ledger.submits == 1 and emu.storage.uploads == 1


def test_module_functions_and_async_twins(emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = offline(emu, tmp_path / "c")
    monkeypatch.setattr(_api, "default_client", lambda: c)
    edited = falnb.edit("add a hat", png(), model="kontext")
    assert edited.model == "fal-ai/flux-pro/kontext" and edited.input_images[0].data == png()
    assert falnb.edit("add a hat", [png(), png((1, 1, 1))]).model == "fal-ai/nano-banana/edit"  # the default
    filled = falnb.edit("a window", png(), model="flux-fill", mask=png((255, 255, 255)))
    assert [i.source for i in filled.input_images] == ["bytes", "bytes"]

    async def twins() -> list[falnb.Generation]:
        return [await falnb.aedit("add a hat", png(), model="kontext"), await falnb.aupscale(png()),
                await falnb.aremove_background(png())]

    e, u, r = asyncio.run(twins())
    assert e.cached and u.model == "fal-ai/esrgan" and r.model == "fal-ai/birefnet/v2"


def test_litellm_image_edit_sends_pictures_to_the_right_field(emu: Emulator, tmp_path: Path) -> None:
    c = offline(emu, tmp_path / "c")
    path = tmp_path / "cat.png"
    path.write_bytes(png())
    with open(path, "rb") as fh:
        resp = falnb.image_edit(image=fh, prompt="make it a watercolour", model="fal_ai/fal-ai/flux-pro/kontext",
                                client=c)
    assert resp.data[0].url and emu.requests()[-1].inputs["image_url"].startswith(c.queue_url + "/files/stored/")
    resp = asyncio.run(falnb.aimage_edit(image=[("a.png", png()), path], prompt="combine them",
                                         model="fal_ai/fal-ai/nano-banana/edit", client=c, mask=None))
    assert len(emu.requests()[-1].inputs["image_urls"]) == 2 and resp.data
    with pytest.raises(falnb.ParameterError, match="quality"):
        falnb.image_edit(image=png(), prompt="x", model="kontext", quality="high", client=c)
