"""%%falimage with pictures: --image / --mask read before anything is sent ({var}, {var[i]}, a path or URL),
one-line mistakes, and (through a real IPython shell on the emulator) the request, origin and display."""

# ruff: noqa: F811  (the fixtures of tests/test_magics.py, imported by name: pytest passes them as parameters)
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from PIL import Image as PIL

from falnb.emulator import Emulator
from falnb.notebook._magic_pictures import picture_args, picture_value
from falnb.notebook._magics import FalMagics
from falnb.results._edit_view import CHECKERBOARD
from falnb.results._generation import Generation
from falnb.results._image import Image

from ._cells import Cell, run
from .test_magics import emu, magics, sent, shell  # noqa: F401  (the same shell, emulator and client)


def png(color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    buf = io.BytesIO()
    PIL.new("RGB", (8, 8), color).save(buf, "PNG")
    return buf.getvalue()


def made(n: int = 2) -> Generation:
    images = [Image(data=png((i, i, i)), content_type="image/png", width=8, height=8) for i in range(n)]
    return Generation(prompt="p", model="fal-ai/flux/schnell", images=images, inputs=[{}], request_ids=["r"])


def test_the_one_rule_for_variables() -> None:
    gen, img, pil = made(), made(1).images[0], PIL.new("RGB", (4, 4), (1, 2, 3))
    gen.origin = "cell [4]"
    ns: dict[str, Any] = {"gen": gen, "img": img, "pil": pil, "path": "photo.png", "pics": [img], "raw": png()}
    assert picture_value("{gen}", ns) is gen
    for ref in ("{gen[1]}", "{ gen[-1] }"):  # one picture of a Generation: labelled for the caption
        second = picture_value(ref, ns)
        assert second.data == gen.images[1].data and second.source == "picture 2 of cell [4]"
    as_image = picture_value("{pil}", ns)  # encoded as the client encodes it, named after its variable
    assert as_image.source == "pil" and PIL.open(io.BytesIO(as_image.data)).getpixel((0, 0)) == (1, 2, 3)
    assert picture_value("{raw}", ns).data == png() and picture_value("{raw}", ns).source == "raw"
    assert picture_value("{path}", ns) == "photo.png"
    assert picture_value("{pics[0]}", ns).data == img.data
    named = picture_value("{img}", ns)  # an Image without a source is labelled with its variable's name
    assert named.data == img.data and named.source == "img"
    assert picture_value("photo.png", ns) == "photo.png"
    assert picture_value("https://x.test/a.png", ns) == "https://x.test/a.png"
    assert picture_args(None, ns) is None
    assert picture_args(["{gen}"], ns) is gen
    assert picture_args(["{gen}", "a.png"], ns) == [gen, "a.png"]


def test_a_numpy_array_is_a_picture() -> None:
    np = pytest.importorskip("numpy")  # falnb's image extra; absent from a minimal install
    arr = np.zeros((4, 4, 3), np.uint8)
    shown = picture_value("{arr}", {"arr": arr})
    assert shown.source == "arr" and shown.width == 4


@pytest.mark.parametrize(("value", "says"), [
    ("{nope}", "--image {nope}: 'nope' is not defined in the notebook; nothing was sent"),
    ("{gen.images[1]}", "--image {gen.images[1]}: write {name} or {name[i]} (e.g. {gen[1]}"),
    ("{gen[2]}", "--image {gen[2]}: gen has 2 pictures ({gen[0]} to {gen[1]}); nothing was sent"),
    ("{cfg}", "--image {cfg}: cfg is a dict, not a picture (a falnb Image or Generation"),
    ("{cfg[0]}", "--image {cfg[0]}: cfg is a dict, not a Generation or a list; write {cfg}"),
    ("{__import__('os')}", "write {name} or {name[i]}"),
    ("", "--image: give a path, a URL or {name}"),
])
def test_mistakes_are_one_line(value: str, says: str) -> None:
    with pytest.raises(UsageError) as err:
        picture_value(value, {"gen": made(), "cfg": {}})
    assert says in str(err.value) and "\n" not in str(err.value)


# -- through a real IPython shell, on the emulator ---------------------------------------------------


def panel_of(cell: Cell) -> str:
    (html,) = [o["text/html"] for o in cell.notebook if "falnb-edit" in o.get("text/html", "")]
    return str(html)


def test_edit_cell_sends_the_picture_and_shows_it_beside_the_result(shell: InteractiveShell, magics: FalMagics,
                                                                   emu: Emulator) -> None:
    first = run(shell, "%%falimage -n 2 --seed 3 --out gen\na teapot")
    assert first.ok, first.text
    gen = shell.user_ns["gen"]
    assert gen.origin == f"cell [{shell.execution_count}]"  # store_history=False: the count stays
    edit = run(shell, "%%falimage -m nano-banana-edit --image {gen[1]} --out ed\nmake it blue porcelain")
    assert edit.ok, edit.text
    body = sent(emu)[-1]
    (url,) = body["image_urls"]
    assert emu.storage.fetch(url) == gen.images[1].data and body["prompt"] == "make it blue porcelain"
    ed = shell.user_ns["ed"]
    where = f"picture 2 of cell [{shell.execution_count}]"
    assert [p.source for p in ed.input_images] == [where]
    assert where in panel_of(edit) and "falnb-inputs" in panel_of(edit)
    caption = edit.captions()[-1]
    assert f"edit of {where}" in caption["text/plain"] and "$" not in caption["text/html"]
    # the whole Generation: all its pictures, to a list field
    both = run(shell, "%%falimage -m nano-banana-edit --image {gen} --out ed2\nmake it blue porcelain")
    assert both.ok and len(sent(emu)[-1]["image_urls"]) == 2
    # the same cell again: a cache hit, nothing sent, nothing uploaded
    requests, uploads = len(emu.requests()), emu.storage.uploads
    again = run(shell, "%%falimage -m nano-banana-edit --image {gen[1]} --out ed\nmake it blue porcelain")
    assert again.ok and shell.user_ns["ed"].cached
    assert len(emu.requests()) == requests and emu.storage.uploads == uploads


def test_origin_is_the_cells_own_number(shell: InteractiveShell, magics: FalMagics) -> None:
    # as a kernel runs cells (store_history): IPython 9 counts the cell before running it
    result = shell.run_cell("%%falimage --seed 2 --out numbered\na teapot", store_history=True)
    assert result.success and shell.user_ns["numbered"].origin == f"cell [{result.execution_count}]"


def test_a_path_a_mask_and_an_upscaler_without_a_prompt(shell: InteractiveShell, magics: FalMagics, emu: Emulator,
                                                        tmp_path: Path) -> None:
    (tmp_path / "photo.png").write_bytes(png((200, 10, 10)))
    (tmp_path / "mask.png").write_bytes(png((255, 255, 255)))
    shell.user_ns["folder"] = str(tmp_path)
    cell = run(shell, f"%%falimage -m flux-fill --image {tmp_path / 'photo.png'} --mask {tmp_path / 'mask.png'} "
                      "--out filled\na red door")
    assert cell.ok, cell.text
    body = sent(emu)[-1]
    assert emu.storage.fetch(body["image_url"]) == png((200, 10, 10))
    assert emu.storage.fetch(body["mask_url"]) == png((255, 255, 255))
    assert "edit of photo.png with the mask mask.png" in cell.captions()[-1]["text/plain"]
    big = run(shell, "%falimage -m esrgan --image {filled} --out big")
    assert big.ok, big.text
    assert "prompt" not in sent(emu)[-1] and "upscale of picture 1 of cell" in big.captions()[-1]["text/plain"]


def test_a_transparent_result_shows_on_a_checkerboard(shell: InteractiveShell, magics: FalMagics,
                                                      emu: Emulator) -> None:
    assert run(shell, "%%falimage --seed 1 --out g\na teapot").ok
    cut = run(shell, "%falimage -m birefnet --image {g} --out cut")
    assert cut.ok, cut.text
    assert PIL.open(io.BytesIO(shell.user_ns["cut"].images[0].data)).mode == "RGBA"  # the bytes stay RGBA
    html = panel_of(cut)
    assert "falnb-transparent" in html and CHECKERBOARD in html
    assert "background removal of picture 1 of cell" in cut.captions()[-1]["text/plain"]


@pytest.mark.parametrize(("cell", "says"), [
    ("%%falimage -m nano-banana-edit --image {nope}\nx", "'nope' is not defined in the notebook"),
    ("%%falimage -m nano-banana-edit --image {g.images[0]}\nx", "write {name} or {name[i]}"),
    ("%%falimage -m nano-banana-edit --image {g[5]}\nx", "g has 1 pictures ({g[0]} to {g[0]})"),
    ("%%falimage -m nano-banana-edit --image {settings}\nx", "settings is a dict, not a picture"),
    ("%%falimage -m nano-banana-edit --image missing.png\nx", "cannot read 'missing.png'"),
    ("%%falimage -m nano-banana-edit --image {notes}\nx", "notes.txt is not a picture"),
    ("%%falimage -m flux-schnell --image {g}\nx", "flux"),
    ("%%falimage -m nano-banana-edit\nx", "image"),
])
def test_mistakes_are_one_line_and_send_nothing(shell: InteractiveShell, magics: FalMagics, emu: Emulator,
                                                tmp_path: Path, cell: str, says: str) -> None:
    assert run(shell, "%%falimage --seed 1 --out g\na teapot").ok
    (tmp_path / "notes.txt").write_text("not a picture")
    shell.user_ns.update(settings={}, notes=str(tmp_path / "notes.txt"))
    requests, uploads = len(emu.requests()), emu.storage.uploads
    out = run(shell, cell)
    assert not out.ok and says in out.text, out.text
    assert len(out.error_lines) <= 2 and "Traceback" not in out.text
    assert len(emu.requests()) == requests and emu.storage.uploads == uploads


def test_help_documents_the_picture_options() -> None:
    from falnb.notebook._magics import FalMagics as M

    text = M.falimage.__doc__ or ""
    assert "--image" in text and "--mask" in text and "{name[i]}" in text and "%falimage -m esrgan --image" in text


@pytest.mark.parametrize(("cell", "hint", "follow"), [
    ("%falimage -m birefnet --image {g}", "--image {name[i]}", "%falimage -m birefnet --image {g[1]}"),
    ("%%falimage -m flux-fill --image {g[0]}\na hat", "--mask",
     "%%falimage -m flux-fill --image {g[0]} --mask {g[1]}\na hat"),
    ("%%falimage -m nano-banana-edit\nmake it night", "--image",
     "%%falimage -m nano-banana-edit --image {g[0]}\nmake it night"),
    ("%%falimage -m flux-schnell --image {g[0]}\nmake it night", "-m nano-banana-edit",
     "%%falimage -m nano-banana-edit --image {g[0]}\nmake it night"),
])
def test_a_picture_mistakes_advice_is_a_cells_own_and_works(shell: InteractiveShell, magics: FalMagics,
                                                             emu: Emulator, cell: str, hint: str, follow: str) -> None:
    """In a cell the advice names the cell's options (``--image {name[i]}``, ``--mask``), not the API's keywords
    (``gen.images[i]``, ``mask=...``), which ``--image`` refuses; followed, it works."""
    assert run(shell, "%%falimage --seed 1 -n 2 --out g\na teapot").ok
    out = run(shell, cell)
    assert not out.ok and len(out.error_lines) == 2 and hint in out.error_lines[1], out.text
    assert not any(api in out.error_lines[1] for api in ("images[", "=...", "falnb.")), out.text
    assert run(shell, follow).ok
