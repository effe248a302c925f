"""How a picture made from pictures looks: its inputs beside it, what it was made from, transparency.

An edit (or an upscale, a background removal) shows its input picture(s) small and labelled beside the
result, and its caption says what it was made from ("edit of picture 2 of cell [5]", from each input's
``source``).  A result with transparent pixels shows on a checkerboard drawn by CSS behind the picture:
the checkerboard is never baked into the bytes (the preview stays RGBA, and ``Image.data`` is untouched).

Both need HTML (an image output cannot carry a background, nor sit beside another), so such results are
one ``text/html`` output whose pictures are bounded previews as data URIs (inputs at most
:data:`INPUT_SIDE` px, results at the preview size), inside a :data:`~falnb.results._text.NO_MATH`
element.  Pictures without inputs and without transparency keep the plain image outputs of ``_render``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._preview import preview
from ._text import html_text, short

if TYPE_CHECKING:
    from ._image import Image

__all__ = ["CHECKERBOARD", "INPUT_SIDE", "MAX_INPUTS", "edit_panel", "has_alpha", "input_pictures",
           "made_from", "panel_inputs", "wants_panel"]

#: the long side of an input's thumbnail, in pixels
INPUT_SIDE = 128
#: input thumbnails shown at most (the others are counted)
MAX_INPUTS = 8
#: a grey-and-white checkerboard as CSS, behind transparent pictures
CHECKERBOARD = ("background-color:#fff;background-image:"
                "linear-gradient(45deg,#ccc 25%,transparent 25%,transparent 75%,#ccc 75%),"
                "linear-gradient(45deg,#ccc 25%,transparent 25%,transparent 75%,#ccc 75%);"
                "background-size:16px 16px;background-position:0 0,8px 8px")
_NO_MATH = "mathjax_ignore tex2jax_ignore"
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")

Output = tuple[dict[str, Any], dict[str, Any]]
Tile = tuple["Image | None", str]


def input_pictures(result: Any) -> list[Image]:
    """The pictures ``result`` was made from (a Generation's ``input_images``: none for text-to-image)."""
    from ._image import Image

    pictures = getattr(result, "input_images", None) or ()
    return [p for p in pictures if isinstance(p, Image)]


def _label(picture: Image, number: int) -> str:
    source = getattr(picture, "source", None)
    return short(source, 80) if isinstance(source, str) and source.strip() else f"input {number}"


def _joined(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def panel_inputs(results: Iterable[Any]) -> list[Image]:
    """The input pictures of several results (a comparison of edit models on one picture), each once."""
    seen: dict[tuple[str | None, bytes, str | None], Image] = {}
    for result in results:
        for p in input_pictures(result):
            seen.setdefault((p.source, p.data, p.url), p)
    return list(seen.values())


#: what each kind of picture tool does, as a caption says it
_VERBS = {"edit": "edit", "upscale": "upscale", "remove_background": "background removal"}


def _verb(model: str) -> str:
    from ..catalog._catalog import default_catalog
    from ..catalog._image_models import picture_inputs

    try:
        return _VERBS.get(picture_inputs(default_catalog().resolve(model)).kind, "edit")
    except Exception:  # a model the catalog does not know: an edit is the likeliest
        return "edit"


def made_from(result: Any, verb: str | None = None) -> str | None:
    """``edit of picture 2 of cell [5]``; ``edit of photo.png and picture 1 of cell [3]``; None when
    ``result`` was made from no picture.  ``verb`` names what was done (default: from the model's kind:
    ``edit``, ``upscale``, ``background removal``)."""
    pictures = input_pictures(result)
    if not pictures:
        return None
    verb = verb or _verb(str(getattr(result, "model", "")))
    mask = _label(pictures.pop(), len(pictures) + 1) if pictures and _has_mask(result) else None
    labels = list(dict.fromkeys(_label(p, k + 1) for k, p in enumerate(pictures)))
    if len(labels) > MAX_INPUTS:
        labels = [*labels[:MAX_INPUTS - 1], f"{len(labels) - MAX_INPUTS + 1} more pictures"]
    if not labels:
        return None if mask is None else f"{verb} with the mask {mask}"
    return f"{verb} of {_joined(labels)}" + (f" with the mask {mask}" if mask else "")


def _has_mask(result: Any) -> bool:
    """Whether a mask was sent (it is then the last of the input pictures: the contract's field order)."""
    sent = getattr(result, "inputs", None) or ()
    first = sent[0] if sent and isinstance(sent[0], Mapping) else {}
    return any("mask" in str(key) for key in first)


def has_alpha(picture: Image) -> bool:
    """Whether ``picture`` has pixels that are not fully opaque (JPEG never has)."""
    if picture.content_type not in ("image/png", "image/webp", "image/gif"):
        return False
    try:
        img = picture.to_pil()
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        if img.mode not in _ALPHA_MODES:
            return False
        low = img.getchannel("A").getextrema()[0]
        return isinstance(low, (int, float)) and low < 255
    except Exception:  # a picture Pillow cannot read has no transparency to show
        return False


def wants_panel(results: Iterable[Any]) -> bool:
    """Whether these results show as a panel: one of them was made from pictures, or is transparent."""
    for result in results:
        if input_pictures(result) or any(has_alpha(img) for img in getattr(result, "images", ())):
            return True
    return False


def _uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _figure(picture: Image | None, label: str, side: int, fmt: str, quality: int, full: bool) -> str:
    """One labelled picture, at most ``side`` px on screen; a transparent one on the checkerboard."""
    src, alpha = None, False
    if picture is not None and not picture.data and (picture.url or "").startswith(("http://", "https://")):
        # a URL input: falnb never fetched it, so a link
        link = html_text(picture.url or "")
        return (f"<figure style=\"margin:0\"><a href=\"{link}\" target=\"_blank\" rel=\"noopener\" "
                f"style=\"font-size:0.75em;overflow-wrap:anywhere;display:block;max-width:{side}px\">"
                f"{html_text(short(label, 60))}</a></figure>")
    if picture is not None:
        alpha = has_alpha(picture)
        try:
            if full and picture.content_type in ("image/png", "image/jpeg", "image/webp", "image/gif"):
                src = _uri(picture.data, picture.content_type)
            else:
                # JPEG has no alpha: a transparent picture's preview is a WebP (alpha kept, a fifth of a
                # PNG's bytes) unless PNG was asked for; never flattened onto a colour
                data, mime, _, _ = preview(picture, side, "webp" if alpha and fmt == "jpeg" else fmt, quality)
                src = _uri(data, mime)
        except Exception:  # a picture Pillow cannot read: its label still says what it is
            label += " (cannot be decoded)"
    caption = (f"<figcaption style=\"font-size:0.75em;max-width:{side}px;overflow-wrap:anywhere\">"
               f"{html_text(label)}</figcaption>") if label else ""
    if src is None:
        return (f"<figure style=\"margin:0\"><div style=\"width:{side // 2}px;height:{side // 2}px;"
                f"background:#f6f6f6\"></div>{caption}</figure>")
    style = f"display:block;max-width:{side}px;max-height:{side}px;object-fit:contain"
    cls = "falnb-picture falnb-transparent" if alpha else "falnb-picture"
    if alpha:
        style += ";" + CHECKERBOARD
    return (f"<figure style=\"margin:0\"><img class=\"{cls}\" src=\"{src}\" alt=\"{html_text(label)}\" "
            f"style=\"{style}\">{caption}</figure>")


def edit_panel(inputs: Sequence[Image], tiles: Sequence[Tile], *, side: int, fmt: str = "jpeg",
               quality: int = 80, full: bool = False) -> Output:
    """One HTML output: the input thumbnails (labelled with their source), an arrow, the result tiles.

    ``tiles``: the results as the preview grid lays them out (picture, label); ``side``: their long side
    (``full``: the original bytes, shown at most ``side`` px).  Inputs past :data:`MAX_INPUTS` are counted.
    """
    shown = list(inputs)[:MAX_INPUTS]
    parts = []
    if shown:
        figures = "".join(_figure(p, _label(p, k + 1), min(INPUT_SIDE, side), fmt, quality, False)
                          for k, p in enumerate(shown))
        more = len(inputs) - len(shown)
        if more:
            figures += f"<div style=\"font-size:0.75em\">and {more} more</div>"
        parts.append(f"<div class=\"falnb-inputs\" style=\"display:flex;flex-direction:column;gap:4px\">"
                     f"<div style=\"font-size:0.75em;opacity:0.75\">from</div>{figures}</div>")
        parts.append("<div style=\"align-self:center;font-size:1.6em;opacity:0.6\">&rarr;</div>")
    # a single result needs no tile label (as a one-picture sheet has none)
    results = "".join(_figure(img, label if len(tiles) > 1 else "", side, fmt, quality, full) for img, label in tiles)
    parts.append(f"<div class=\"falnb-results\" style=\"display:flex;flex-wrap:wrap;gap:6px;"
                 f"align-items:flex-start\">{results}</div>")
    markup = (f"<div class=\"falnb-edit {_NO_MATH}\" style=\"display:flex;flex-wrap:wrap;gap:10px;"
              f"align-items:flex-start\">{''.join(parts)}</div>")
    real = sum(1 for img, _ in tiles if img is not None)
    what = f"{real} images" if real != 1 else "1 image"
    plain = f"[{what}" + (f" from {len(inputs)} input(s)" if inputs else "") + "]"
    return {"text/html": markup, "text/plain": plain}, {}
