"""Pictures in (issue 14): every kind of picture becomes a checked input, goes to the model's own field, and is
keyed by its content; every bad input is refused before anything is uploaded or sent."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest

import falnb
from falnb.catalog._catalog import Catalog
from falnb.catalog._image_models import IMAGE_MODELS, PICTURE_INPUTS, picture_inputs
from falnb.emulator import Emulator
from falnb.request._pictures import MAX_PICTURE_BYTES


def png(colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def emu() -> Emulator:
    return Emulator(latency=0.0)


@pytest.fixture
def client(emu: Emulator, tmp_path: Path) -> falnb.Client:
    return falnb.Client(offline=True, emulator=emu, cache=tmp_path / "cache")


def test_catalog_has_every_shared_endpoint_with_an_alias_and_its_picture_fields() -> None:
    listed = Path("/work/shared/image-input-endpoints.txt")
    ids = {line[3:].split(" ->")[0] for line in listed.read_text().splitlines() if line.startswith("## ")} \
        if listed.exists() else set(PICTURE_INPUTS)
    cat = Catalog()
    assert ids <= {m.id for m in cat.image_models}
    for spec in cat.image_models:
        assert spec.aliases and cat.resolve(spec.alias) is spec
        how = picture_inputs(spec)
        assert how.fields, spec.id
        for f in how.fields:  # every picture field is one of the model's own inputs, of the right type
            p = spec.param(f.name)
            assert p is not None and p.type == ("list" if f.many else "str"), (spec.id, f.name)
        if how.kind != "edit":
            assert spec.output_key == "image" and spec.max_images is None
    assert {m.id for m in cat.models}.isdisjoint(m.id for m in IMAGE_MODELS)  # text-to-image list unchanged


@pytest.mark.parametrize(("model", "field", "many"), [
    ("nano-banana-edit", "image_urls", True), ("kontext", "image_url", False), ("esrgan", "image_url", False),
    ("birefnet", "image_url", False), ("flux-ultra", "image_url", False), ("ideogram", "image_urls", True)])
def test_image_goes_to_the_models_own_field(client: falnb.Client, model: str, field: str, many: bool) -> None:
    plan = client.plan("a fox" if model not in ("esrgan", "birefnet") else "", model=model, image=png())
    body = plan.requests[0].input
    assert set(body) & {"image_url", "image_urls", "mask_url"} == {field}
    token = body[field][0] if many else body[field]
    assert token.startswith("sha256:") and len(token) == 71
    assert plan.requests[0].pictures[field] and len(plan.pictures) == 1


def test_mask_goes_to_mask_url_and_several_pictures_to_the_list(client: falnb.Client) -> None:
    plan = client.plan("fill it", model="flux-fill", image=png(), mask=png((255, 255, 255)))
    assert set(plan.requests[0].input) >= {"image_url", "mask_url"}
    assert [p.source for p in plan.pictures] == ["bytes", "bytes"]
    plan = client.plan("combine", model="nano-banana-edit", image=[png(), png((0, 0, 255)), png((0, 255, 0))])
    assert len(plan.requests[0].input["image_urls"]) == 3


def test_every_kind_of_picture_is_accepted(client: falnb.Client, tmp_path: Path) -> None:
    import base64

    from PIL import Image

    data = png()
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    gen = client.generate("a red square", model="flux-schnell", n=2, size="256x256")
    kinds: list[Any] = [str(path), path, data, Image.open(io.BytesIO(data)), gen.images[0],
                        "data:image/png;base64," + base64.b64encode(data).decode(),
                        "https://example.com/x.png"]
    sources = []
    for value in kinds:
        plan = client.plan("edit it", model="nano-banana-edit", image=value)
        sources.append(plan.pictures[0].source)
    assert sources[:3] == ["photo.png", "photo.png", "bytes"]
    assert sources[3:6] == ["a PIL image", "a falnb Image", "a data: URI"]
    assert sources[6] == "https://example.com/x.png"
    plan = client.plan("edit them", model="nano-banana-edit", image=gen)  # a Generation: all its pictures
    assert [p.source for p in plan.pictures] == ["picture 1 of schnell", "picture 2 of schnell"]
    gen.origin = "cell [5]"
    assert client.plan("edit", model="kontext", image=gen.labelled(1)).pictures[0].source == "picture 2 of cell [5]"


def test_numpy_arrays_are_pictures(client: falnb.Client) -> None:
    np = pytest.importorskip("numpy")  # not a falnb dependency
    for shape in ((8, 8), (8, 8, 3), (8, 8, 4)):
        plan = client.plan("edit it", model="nano-banana-edit", image=np.zeros(shape, np.uint8))
        assert plan.pictures[0].source == "an array" and plan.pictures[0].width == 8
    with pytest.raises(falnb.InputError, match="not a picture"):
        client.plan("edit it", model="nano-banana-edit", image=np.zeros((8, 8, 3), np.float32))


def test_cache_key_is_the_content_hash_whatever_the_form(client: falnb.Client, tmp_path: Path) -> None:
    from PIL import Image

    data = png()
    (tmp_path / "a.png").write_bytes(data)
    (tmp_path / "b.png").write_bytes(data)
    keys = {client.plan("x", model="kontext", image=v).requests[0].key
            for v in (tmp_path / "a.png", str(tmp_path / "b.png"), data, Image.open(io.BytesIO(data)))}
    assert len(keys) == 1
    other = client.plan("x", model="kontext", image=png((0, 0, 0))).requests[0].key
    assert other not in keys


def test_a_changed_file_is_read_again(client: falnb.Client, tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    path.write_bytes(png())
    first = client.plan("x", model="kontext", image=path).requests[0].key
    path.write_bytes(png((1, 2, 3)))
    assert client.plan("x", model="kontext", image=path).requests[0].key != first


def _refused(client: falnb.Client, emu: Emulator, match: str, **kwargs: Any) -> None:
    with pytest.raises(falnb.InputError, match=match):
        client.generate(**kwargs)
    assert emu.storage.uploads == 0 and emu.requests() == []


def test_bad_pictures_are_refused_before_any_upload(client: falnb.Client, emu: Emulator, tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    big = tmp_path / "big.png"
    with open(big, "wb") as fh:  # sparse: refused from its size, never read
        fh.truncate(MAX_PICTURE_BYTES + 1)
    truncated = png(size=(200, 200))[:-40]
    edit = {"prompt": "x", "model": "nano-banana-edit"}
    _refused(client, emu, "cannot read", image=str(tmp_path / "missing.png"), **edit)
    _refused(client, emu, "empty", image=empty, **edit)
    _refused(client, emu, "empty", image=b"", **edit)
    _refused(client, emu, "not a picture", image=text, **edit)
    _refused(client, emu, "not a picture", image=truncated, **edit)
    _refused(client, emu, "MiB", image=big, **edit)
    _refused(client, emu, "is not a picture", image=3.5, **edit)
    _refused(client, emu, "a picture falnb can read|not a picture", image=[png(), b"GIF89a nonsense"], **edit)


def test_picture_needs_are_checked_before_any_upload(client: falnb.Client, emu: Emulator) -> None:
    _refused(client, emu, "takes no pictures", prompt="x", model="flux-schnell", image=png())
    _refused(client, emu, "needs a picture", prompt="x", model="nano-banana-edit")
    _refused(client, emu, "needs a picture", prompt="", model="esrgan")
    _refused(client, emu, "needs a mask", prompt="x", model="flux-fill", image=png())
    _refused(client, emu, "takes no mask", prompt="x", model="kontext", image=png(), mask=png())
    _refused(client, emu, "one picture", prompt="x", model="kontext", image=[png(), png((1, 1, 1))])
    _refused(client, emu, "takes no prompt", prompt="sharper", model="esrgan", image=png())
    _refused(client, emu, "prompt is empty", prompt=" ", model="kontext", image=png())


def test_a_pass_through_id_takes_pictures_by_fals_names(client: falnb.Client) -> None:
    plan = client.plan("x", model="someone/new-editor", image=[png(), png((9, 9, 9))], mask=png())
    assert set(plan.requests[0].input) >= {"image_urls", "mask_url"}
    assert "image_url" in client.plan("x", model="someone/new-editor", image=png()).requests[0].input


def test_picture_limit_constant_is_above_multipart_threshold() -> None:
    from falnb.fal._upload import MULTIPART_THRESHOLD

    assert MAX_PICTURE_BYTES > MULTIPART_THRESHOLD  # pictures large enough to go up in parts are accepted
    assert os.environ.get("FALNB_STORAGE_URL") is None


@pytest.mark.parametrize("spec", [m for m in IMAGE_MODELS if m.size_field == "aspect_ratio"], ids=lambda m: m.alias)
def test_every_size_an_edit_model_offers_is_planned(client: falnb.Client, spec: Any) -> None:
    # "auto" (fal's default: the input's shape) is a named size of the model's own, the others are ratios
    assert all(":" in r for r in spec.aspect_ratios), spec.aspect_ratios
    for size in (*spec.aspect_ratios, *spec.size_presets):
        plan = client.plan("night", model=spec.alias, image=png(), size=size)
        assert plan.requests[0].input["aspect_ratio"] == size
    # a size given in pixels maps to the nearest ratio, never to "auto"
    assert client.plan("night", model=spec.alias, image=png(), size="1920x1080").requests[0].input[
        "aspect_ratio"] == "16:9"


def test_auto_is_the_same_request_as_no_size(client: falnb.Client) -> None:
    auto = client.plan("night", model="nano-banana-edit", image=png(), size="auto").requests[0]
    none = client.plan("night", model="nano-banana-edit", image=png()).requests[0]
    assert auto.input["aspect_ratio"] == "auto" and (auto.width, auto.height) == (64, 48)  # the input's shape
    assert auto.key == none.key  # fal's default: one cache entry, whichever way it was asked


def test_a_phone_jpeg_with_a_multi_picture_index_is_a_jpeg(client: falnb.Client) -> None:
    # many phone and camera JPEGs carry an MPF index (Pillow opens them as "MPO"): a JPEG, not a refusal
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(buf, "MPO", save_all=True, append_images=[Image.new("RGB", (64, 48))])
    pic = client.plan("edit it", model="kontext", image=buf.getvalue()).pictures[0]
    assert (pic.content_type, pic.width, pic.height) == ("image/jpeg", 64, 48)
    assert pic.file_name.endswith(".jpg")


def test_a_picture_of_too_many_pixels_is_an_input_error(client: falnb.Client, emu: Emulator) -> None:
    # a 48 KB PNG of 20000x20000: Pillow's DecompressionBombError is no OSError, and escaped as a raw traceback
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, "PNG")
    _refused(client, emu, "too many pixels", prompt="x", model="kontext", image=buf.getvalue())


@pytest.mark.parametrize("fmt", ["JPEG", "GIF"])
def test_a_truncated_jpeg_or_gif_is_refused_before_any_upload(client: falnb.Client, emu: Emulator,
                                                             fmt: str) -> None:
    # Pillow's verify() reads none of a JPEG's or a GIF's data: half a photo (an interrupted copy) was sent
    from PIL import Image

    buf = io.BytesIO()
    Image.effect_noise((256, 256), 60).convert("RGB").save(buf, fmt)
    data = buf.getvalue()
    assert client.plan("x", model="kontext", image=data).pictures[0].width == 256
    _refused(client, emu, "not a picture", prompt="x", model="kontext", image=data[:len(data) // 2])


def test_an_input_picture_given_by_url_can_be_given_again(client: falnb.Client) -> None:
    # gen.input_images holds a URL passed through as an Image without bytes (falnb never had them): giving it
    # again (an edit of an edit's input) was refused as "empty (0 bytes)"
    from falnb.results._image import Image

    url = "https://example.com/x.png"
    first = client.plan("x", model="kontext", image=url)
    pic = first.pictures[0]
    again = Image(data=pic.data, content_type=pic.content_type, width=pic.width, height=pic.height, url=pic.url,
                  source=pic.source)  # as the engine builds input_images
    req = client.plan("x", model="kontext", image=again).requests[0]
    assert req.input["image_url"] == url and req.key == first.requests[0].key


def test_a_data_uri_with_line_breaks_is_read(client: falnb.Client) -> None:
    # base64.encodebytes (and MIME, and data URIs copied from HTML) breaks lines every 76 characters; browsers
    # drop ASCII whitespace (WHATWG's forgiving base64): it was refused as "not valid base64"
    import base64

    data = png(size=(200, 120))
    uri = "data:image/png;base64," + base64.encodebytes(data).decode()
    assert "\n" in uri
    assert client.plan("x", model="kontext", image=uri).pictures[0].data == data
