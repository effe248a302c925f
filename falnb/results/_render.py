"""How results look in a notebook: the capped preview grid and the caption, as real mimebundles.

Images are real image mimebundles (``image/jpeg``, ``image/png``, ``image/webp``), never base64
inside HTML: nbval compares HTML byte for byte and data URIs bloat notebooks.  By default one
capped JPEG contact sheet holds every picture of a cell (a compact grid, labelled), followed by a
text caption with both ``text/plain`` and escaped ``text/html``.  Pillow loads on first use.

This module renders any result with a Generation's attributes (:class:`Shown`): it does not import
:class:`~falnb.Generation`, whose ``_ipython_display_`` calls :func:`show_generation`.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ._preview import contact_sheet, preview
from ._text import NO_MATH, html_text, seed_text, short, usd

if TYPE_CHECKING:
    from ._image import Image

__all__ = [
    "EMBED_MODES",
    "PREVIEW_FORMATS",
    "DisplaySettings",
    "Entry",
    "Output",
    "Shown",
    "caption_lines",
    "notebook_bytes",
    "render_outputs",
    "show_generation",
    "show_outputs",
]


class Shown(Protocol):
    """What rendering needs of a result (a :class:`~falnb.Generation` has all of it)."""

    model: str
    prompt: str
    images: list[Image]
    seed: int | None
    cost: float | None
    cached: bool
    saved: float


EMBED_MODES = ("preview", "full", "none")
PREVIEW_FORMATS = ("jpeg", "webp", "png")
#: what notebook front ends render as an image output
_SHOWABLE = ("image/png", "image/jpeg", "image/gif", "image/webp")

#: (data, metadata) of one display_data output
Output = tuple[dict[str, Any], dict[str, Any]]


@dataclass(frozen=True)
class DisplaySettings:
    """How results are embedded.  ``grid_columns=0`` shows each image as its own output."""

    embed: str = "preview"
    preview_size: int = 512
    preview_format: str = "jpeg"
    preview_quality: int = 80
    grid_columns: int = 4


@dataclass
class Entry:
    """One result to show: the model as the user named it, the prompt, a Generation or an error."""

    label: str
    prompt: str
    result: Shown | BaseException
    #: the prompt's position in a batch (entries of one group are compared side by side)
    group: int = 0


# -- images -----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- captions -----------------------------------------------------------------------------------


def _numbers(first: int, count: int) -> str:
    return f"[{first}]" if count == 1 else f"[{first}-{first + count - 1}]"


def _dims(gen: Shown) -> str:
    dims = sorted({f"{img.width}x{img.height}" for img in gen.images if img.width and img.height})
    return ", ".join(dims) if dims else "size unknown"


def _error_line(err: BaseException) -> str:
    msg = getattr(err, "message", None) or str(err)
    return f"{type(err).__name__}: {short(str(msg), 300)}"


def caption_lines(entries: Sequence[Entry], refs: Sequence[str] | None = None, *,
                  embedded: bool = True) -> list[tuple[str, str]]:
    """``(kind, text)`` lines: ``prompt``, ``item`` (one per generation), ``error``, ``note``.

    ``refs`` name each entry's tiles in the grid (``[1-4]``); costs are estimates; ``cached — saved``
    marks a generation served from the cache (nothing paid).
    """
    lines: list[tuple[str, str]] = []
    prompts = list(dict.fromkeys(e.prompt for e in entries))
    one_prompt = len(prompts) == 1
    if one_prompt:
        lines.append(("prompt", f"“{short(prompts[0], 300)}”"))
    for i, e in enumerate(entries):
        ref = refs[i] if refs is not None and embedded else ""
        tail = "" if one_prompt else f" — “{short(e.prompt, 120)}”"
        result = e.result
        if isinstance(result, BaseException):
            lines.append(("error", f"{ref} {e.label}: {_error_line(result)}{tail}".strip()))
            continue
        gen = result
        count = len(gen.images)
        seeds = seed_text((img.seed for img in gen.images), gen.seed)
        parts = [e.label, f"{count} images" if count > 1 else "", _dims(gen), seeds or "",
                 "cost unknown" if gen.cost is None else f"~{usd(gen.cost)}"]
        if gen.cached:
            parts.append(f"cached — saved ~{usd(gen.saved)}")
        text = " · ".join(p for p in parts if p)
        lines.append(("item", f"{ref} {text}{tail}".strip()))
    done = [e.result for e in entries if not isinstance(e.result, BaseException)]
    if len(done) > 1:
        known = [g.cost for g in done if g.cost is not None]
        saved = sum(g.saved for g in done if g.cached)
        note = f"total ~{usd(sum(known))}" + (" (some prices unknown)" if len(known) < len(done) else "")
        if saved:
            note += f" · saved ~{usd(saved)} from the cache"
        lines.append(("note", note))
    if not embedded and done:
        lines.append(("note", "images not embedded (--embed none); keep them with --out NAME"))
    return lines


_STYLE = {"prompt": "font-style:italic", "item": "", "error": "color:#b3261e", "note": "opacity:0.75"}


def _caption_output(entries: Sequence[Entry], refs: Sequence[str], embedded: bool) -> Output:
    lines = caption_lines(entries, refs, embedded=embedded)
    plain = "\n".join(text for _, text in lines)
    rows = "".join(
        f"<div style=\"{_STYLE[kind]}\">{html_text(text)}</div>" if _STYLE[kind]
        else f"<div>{html_text(text)}</div>" for kind, text in lines)
    markup = f"<div class=\"falnb-caption {NO_MATH}\" style=\"font-size:0.85em;line-height:1.45\">{rows}</div>"
    return {"text/plain": plain, "text/html": markup}, {}


Tile = tuple["Image | None", str]


def layout(entries: Sequence[Entry], grid_columns: int) -> tuple[list[Tile], list[str], int]:
    """``(tiles, refs, columns)``: the grid's cells in order, each entry's reference, the grid width.

    One model: tiles numbered 1..N in order, ``refs`` like ``[1-4]``.  Several models (a comparison):
    one column per model, one row per image index (and per prompt of a batch), tiles labelled with
    the model; an empty cell where a model failed or returned fewer images.
    """
    labels = list(dict.fromkeys(e.label for e in entries))
    tiles: list[Tile] = []
    refs: list[str] = []
    if len(labels) <= 1:
        for e in entries:
            images = [] if isinstance(e.result, BaseException) else e.result.images
            first = len(tiles) + 1
            tiles.extend((img, str(first + k)) for k, img in enumerate(images))
            refs.append("" if not images else f"[{first}]" if len(images) == 1 else
                        f"[{first}-{first + len(images) - 1}]")
        count = sum(1 for t in tiles if t[0] is not None)
        return tiles, refs, max(1, min(grid_columns or 1, count or 1))
    groups = list(dict.fromkeys(e.group for e in entries))
    batch = len(groups) > 1
    for e in entries:
        refs.append(f"[{groups.index(e.group) + 1}]" if batch else "")
    for g in groups:
        row = [e for e in entries if e.group == g]
        depth = max((len(e.result.images) for e in row if not isinstance(e.result, BaseException)), default=0)
        for k in range(depth):
            for e in row:
                images = [] if isinstance(e.result, BaseException) else e.result.images
                name = e.label + (f" #{k + 1}" if depth > 1 else "")
                if batch:
                    name = f"{groups.index(g) + 1}: {name}"
                tiles.append((images[k] if k < len(images) else None, name))
    return tiles, refs, len(labels)


def render_outputs(entries: Sequence[Entry], settings: DisplaySettings) -> list[Output]:
    """The outputs for a cell's results: the image output(s), then the caption."""
    if settings.embed not in EMBED_MODES:
        raise ValueError(f"embed must be one of {EMBED_MODES}, not {settings.embed!r}")
    tiles, refs, columns = layout(entries, settings.grid_columns)
    real = [(img, label) for img, label in tiles if img is not None]
    outputs: list[Output] = []
    embedded = settings.embed != "none" and bool(real)
    if settings.embed == "full":
        outputs.extend(_full_output(img, label) for img, label in real)
    elif settings.embed == "preview" and real:
        fmt, quality, size = settings.preview_format, settings.preview_quality, settings.preview_size
        if settings.grid_columns <= 0:
            for img, label in real:
                data, mime, w, h = preview(img, size, fmt, quality)
                outputs.append(({mime: _b64(data),
                                 "text/plain": f"[{label}] {img.width}x{img.height} (preview {w}x{h})"}, {}))
        else:
            data, mime, w, h = contact_sheet(tiles, columns, size, fmt, quality)
            what = f"{len(real)} images" if len(real) > 1 else "1 image"
            outputs.append(({mime: _b64(data), "text/plain": f"[{what}: preview {w}x{h}]"}, {}))
    outputs.append(_caption_output(entries, refs, embedded))
    return outputs


def _full_output(img: Image, label: str) -> Output:
    text = f"[{label}] {img.width}x{img.height} {img.content_type} ({len(img.data):,} bytes)"
    if img.content_type in _SHOWABLE:
        return {img.content_type: _b64(img.data), "text/plain": text}, {}
    buf = io.BytesIO()
    img.to_pil().save(buf, "PNG")
    return {"image/png": _b64(buf.getvalue()), "text/plain": text}, {}


def show_outputs(outputs: Sequence[Output]) -> None:
    from IPython.display import display

    for data, metadata in outputs:
        display(data, raw=True, metadata=metadata)  # type: ignore[no-untyped-call]


def show_generation(gen: Shown, settings: DisplaySettings | None = None) -> None:
    """Display a Generation as the magics do (``_ipython_display_`` of :class:`Generation`).

    Without ``settings``: those of the loaded magics (``%config FalMagics...``), else the defaults.
    """
    show_outputs(render_outputs([Entry(gen.model, gen.prompt, gen)], settings or _current_settings()))


def _current_settings() -> DisplaySettings:
    try:
        from IPython import get_ipython

        shell = get_ipython()
        magics = shell.magics_manager.registry.get("FalMagics") if shell is not None else None
        if magics is not None:
            return magics.display_settings()  # type: ignore[no-any-return]
    except (ImportError, AttributeError):
        pass
    return DisplaySettings()


def notebook_bytes(outputs: Sequence[Output]) -> int:
    """The bytes these outputs take in a saved .ipynb (nbformat's display_data JSON, base64 images)."""
    total = 0
    for data, metadata in outputs:
        doc = {"output_type": "display_data", "data": data, "metadata": metadata}
        total += len(json.dumps(doc, indent=1, ensure_ascii=False).encode("utf-8"))
    return total
