"""How an edit and a transparent result look: inputs beside the result, what it was made from, the
checkerboard (CSS, never baked into the bytes), bounded sizes, no typeset amounts.  Generations are
built directly here; tests/test_edit_magic.py shows them through a real %%falimage cell."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

from PIL import Image as PIL

from falnb.results._edit_view import CHECKERBOARD, INPUT_SIDE, edit_panel, has_alpha, made_from, wants_panel
from falnb.results._generation import Generation
from falnb.results._image import Image
from falnb.results._render import DisplaySettings, Entry, render_outputs


def picture(size: tuple[int, int] = (64, 48), *, alpha: bool = False, source: str | None = None,
            fmt: str = "PNG") -> Image:
    img = PIL.new("RGBA" if alpha else "RGB", size, (200, 40, 40, 255) if alpha else (40, 120, 200))
    if alpha:  # the left half fully transparent, as a background remover leaves it
        img.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    buf = io.BytesIO()
    img.save(buf, fmt)
    mime = "image/png" if fmt == "PNG" else "image/jpeg"
    return Image(data=buf.getvalue(), content_type=mime, width=size[0], height=size[1], source=source)


def generation(images: list[Image], inputs: tuple[Image, ...] = (), *, model: str = "fal-ai/nano-banana/edit",
               sent: dict[str, Any] | None = None, cost: float | None = 0.039) -> Generation:
    return Generation(prompt="make it $5 blue", model=model, images=images, inputs=[sent or {}],
                      request_ids=["r1"], cost=cost, input_images=inputs)


def srcs(html: str) -> list[tuple[str, bytes]]:
    return [(m, base64.b64decode(d)) for m, d in re.findall(r'src="data:([^;]+);base64,([^"]+)"', html)]


def test_caption_says_what_it_was_made_from() -> None:
    one = generation([picture()], (picture(source="picture 2 of cell [5]"),))
    assert made_from(one) == "edit of picture 2 of cell [5]"
    two = generation([picture()], (picture(source="photo.png"), picture(source="picture 1 of cell [3]")))
    assert made_from(two) == "edit of photo.png and picture 1 of cell [3]"
    masked = generation([picture()], (picture(source="photo.png"), picture(source="mask.png")),
                        sent={"image_url": "u", "mask_url": "m"})
    assert made_from(masked, "edit") == "edit of photo.png with the mask mask.png"
    assert made_from(generation([picture()], (picture(),)), "upscale") == "upscale of input 1"
    assert made_from(generation([picture()])) is None


def test_panel_shows_the_inputs_small_and_labelled_beside_the_result() -> None:
    gen = generation([picture((600, 400))], (picture((900, 300), source="picture 2 of cell [5]"),))
    assert wants_panel([gen])
    data, _ = edit_panel(gen.input_images, [(gen.images[0], "1")], side=256)
    html = data["text/html"]
    assert html.index("falnb-inputs") < html.index("&rarr;") < html.index("falnb-results")
    assert "picture 2 of cell [5]" in html and "mathjax_ignore" in html
    (in_mime, in_bytes), (out_mime, out_bytes) = srcs(html)
    assert in_mime == out_mime == "image/jpeg"  # opaque pictures: the preview format
    thumb, shown = PIL.open(io.BytesIO(in_bytes)), PIL.open(io.BytesIO(out_bytes))
    assert max(thumb.size) == INPUT_SIDE and max(shown.size) == 256  # both bounded
    assert "1 image from 1 input(s)" in data["text/plain"]


def test_transparent_result_on_a_css_checkerboard_and_its_bytes_stay_rgba() -> None:
    cut = picture((300, 200), alpha=True)
    before = cut.data
    gen = generation([cut], (picture(source="picture 1 of cell [2]"),), model="fal-ai/birefnet/v2")
    assert has_alpha(cut) and not has_alpha(picture()) and not has_alpha(picture(fmt="JPEG"))
    data, _ = edit_panel(gen.input_images, [(cut, "1")], side=512, fmt="jpeg")
    html = data["text/html"]
    result_img = html[html.index("falnb-results"):]
    assert "falnb-transparent" in result_img and CHECKERBOARD in result_img
    mime, shown = srcs(html)[-1]
    assert mime == "image/webp"  # a JPEG preview would flatten the transparency into the bytes
    img = PIL.open(io.BytesIO(shown))
    assert img.mode == "RGBA" and img.getchannel("A").getextrema() == (0, 255)
    assert cut.data == before and PIL.open(io.BytesIO(cut.data)).mode == "RGBA"
    # an opaque picture gets no checkerboard
    opaque, _ = edit_panel((), [(picture(), "1")], side=128)
    assert "falnb-transparent" not in opaque["text/html"]


def test_a_url_input_is_a_link_not_a_fetch() -> None:
    url = Image(data=b"", content_type="", width=None, height=None, url="https://example.com/a.png?x=1&y=2",
                source="https://example.com/a.png?x=1&y=2")
    data, _ = edit_panel((url,), [(picture(), "1")], side=128)
    assert 'href="https://example.com/a.png?x=1&amp;y=2"' in data["text/html"]
    assert len(srcs(data["text/html"])) == 1  # only the result is embedded


def test_render_routes_edits_and_transparency_to_the_panel_with_the_caption() -> None:
    settings = DisplaySettings(preview_size=256)
    edit = generation([picture()], (picture(source="picture 2 of cell [5]"),))
    outputs = render_outputs([Entry("nano-banana-edit", edit.prompt, edit)], settings)
    panel, caption = outputs
    assert "falnb-edit" in panel[0]["text/html"] and not any(k.startswith("image/") for k in panel[0])
    assert "edit of picture 2 of cell [5]" in caption[0]["text/plain"]
    assert "edit of picture 2 of cell [5]" in caption[0]["text/html"]
    assert "$" not in panel[0]["text/html"] and "$" not in caption[0]["text/html"]  # never typeset
    plain = generation([picture()])
    outputs = render_outputs([Entry("flux-schnell", plain.prompt, plain)], settings)
    assert any(k.startswith("image/") for k in outputs[0][0])  # text-to-image keeps its image output
    assert "edit of" not in outputs[-1][0]["text/plain"]
    none = render_outputs([Entry("nano-banana-edit", edit.prompt, edit)], DisplaySettings(embed="none"))
    assert len(none) == 1 and "edit of picture 2 of cell [5]" in none[0][0]["text/plain"]


def test_generation_caption_names_its_inputs() -> None:
    gen = generation([picture()], (picture(source="photo.png"),))
    assert "edit of photo.png" in gen.caption()
