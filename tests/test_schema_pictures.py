"""Issue 14 on issue 13's schemas: picture fields are found by the endpoint's schema.

An endpoint falnb ships nothing for, described by fal's platform API (here the emulator's: ``fal-ai/emulator/
multi-edit`` is nano-banana/edit's schema under an id no catalogue has), takes pictures through the same path
as a catalogued one: read and checked at planning, keyed by content hash, uploaded once, required pictures
refused before anything is sent.  The catalogued picture endpoints with a snapshot are described by it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import falnb
from falnb.catalog._catalog import Catalog
from falnb.catalog._image_models import picture_inputs
from falnb.catalog._models import snapshot
from falnb.emulator import Emulator
from falnb.emulator._platform import fixture_documents

MULTI = "fal-ai/emulator/multi-edit"


def png(colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (32, 24)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def emu() -> Emulator:
    return Emulator(latency=0.0)


def test_a_schema_endpoint_takes_pictures_like_a_catalogued_one(client: falnb.Client, emu: Emulator,
                                                                 tmp_path: Path) -> None:
    assert MULTI not in {m.id for m in Catalog().image_models}
    spec = client.catalog.resolve(MULTI)
    assert spec.source == "fal" and [(f.name, f.many, f.required) for f in picture_inputs(spec).fields] == [
        ("image_urls", True, True)]  # required: from the schema's ``required``
    gen = client.generate("make it night", model=MULTI, image=png())
    (url,) = emu.requests()[-1].inputs["image_urls"]
    assert emu.storage.fetch(url) == png() and emu.storage.uploads == 1
    # fal reads the picture: the edit is the input's shape (fal's default aspect ratio is "auto")
    assert (gen.images[0].width, gen.images[0].height) == (32, 24)
    assert [p.source for p in gen.input_images] == ["bytes"]
    # the same bytes from a file: the same cache entry (content hash), nothing uploaded or sent again
    path = tmp_path / "photo.png"
    path.write_bytes(png())
    again = client.generate("make it night", model=MULTI, image=path)
    assert again.cached and len(emu.requests()) == 1 and emu.storage.uploads == 1


def test_a_schema_endpoints_required_picture_is_asked_for_before_anything_is_sent(
        client: falnb.Client, emu: Emulator) -> None:
    with pytest.raises(falnb.InputError, match=r"needs a picture \(image=\.\.\.\): nothing was sent"):
        client.generate("make it night", model=MULTI)
    with pytest.raises(falnb.InputError, match="not a picture"):
        client.generate("make it night", model=MULTI, image=b"not a picture")
    assert emu.requests() == [] and emu.storage.uploads == 0


def test_the_emulator_reads_a_schema_endpoints_pictures(client: falnb.Client, emu: Emulator) -> None:
    # an unreadable picture URL is fal's 422 at the result, as for a catalogued edit
    with pytest.raises(falnb.FalValidationError, match="image_urls") as err:
        client.generate("make it night", model=MULTI, image="https://example.invalid/gone.png")
    assert err.value.error_type == "file_download_error"
    red = client.generate("make it night", model=MULTI, image=png((200, 30, 30)), seed=1)
    blue = client.generate("make it night", model=MULTI, image=png((30, 30, 200)), seed=1)
    assert red.images[0].data != blue.images[0].data  # the output depends on the input picture


@pytest.mark.parametrize(("model", "alias"), [("fal-ai/nano-banana/edit", "nano-banana-edit"),
                                              ("fal-ai/bria/background/remove", "bria-rmbg")])
def test_catalogued_picture_endpoints_are_described_by_their_snapshot(model: str, alias: str) -> None:
    spec = Catalog().resolve(alias)
    assert spec.id == model and spec.source == "snapshot" and spec.schema is not None
    assert fixture_documents(model) == snapshot(model)  # one document: the emulator serves the shipped one
    assert spec.price is not None and alias in spec.aliases  # the overlay: alias, title, price
    fields = picture_inputs(spec).fields
    assert all(f.required for f in fields) and {f.name for f in fields} <= set(spec.required)


def test_a_snapshots_rules_are_checked_before_sending(client: falnb.Client, emu: Emulator) -> None:
    with pytest.raises(falnb.ParameterError, match="prompt"):  # fal's minLength 3
        client.generate("hi", model="nano-banana-edit", image=png())
    with pytest.raises(falnb.ParameterError, match="takes no prompt"):
        client.generate("sharper", model="bria-rmbg", image=png())
    assert emu.requests() == [] and emu.storage.uploads == 0
    gen = client.generate("", model="bria-rmbg", image=png())
    assert gen.images[0].content_type == "image/png" and len(gen.images) == 1  # fal's single ``image``
