"""How results look in a notebook: the capped preview grid and the caption, as real mimebundles.

Images are real image mimebundles (``image/jpeg``, ``image/png``, ``image/webp``), never base64
inside HTML: nbval compares HTML byte for byte and data URIs bloat notebooks.  By default one
capped JPEG contact sheet holds the pictures (a compact grid, labelled, never larger than
:data:`~falnb.results._preview.MAX_SHEET_SIDE` on a side), followed by a text caption with both
``text/plain`` and escaped ``text/html``.  A batch shows one page of ``page_size`` pictures (whole
prompts, tiles of at most :data:`BATCH_TILE` px) and says how to see the others; its cost does not
grow with the batch.  Pillow loads on
first use.

This module renders any result with a Generation's attributes (:class:`Shown`): it does not import
:class:`~falnb.Generation`, whose ``_ipython_display_`` calls :func:`show_generation`.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._exceptions import InputError
from ._edit_view import edit_panel, made_from, panel_inputs, wants_panel
from ._layout import Entry, Shown, Tile, layout, paginate
from ._preview import contact_sheet, preview
from ._text import NO_MATH, html_text, seed_text, short, usd

if TYPE_CHECKING:
    from ._image import Image

__all__ = [
    "BATCH_TILE",
    "EMBED_MODES",
    "PREVIEW_FORMATS",
    "DisplaySettings",
    "Entry",
    "Output",
    "Shown",
    "caption_lines",
    "notebook_bytes",
    "page_count",
    "render_outputs",
    "show_generation",
    "show_outputs",
]

EMBED_MODES = ("preview", "full", "none")
PREVIEW_FORMATS = ("jpeg", "webp", "png")
#: what notebook front ends render as an image output
_SHOWABLE = ("image/png", "image/jpeg", "image/gif", "image/webp")
#: error lines a caption lists from the other pages of a batch
_OTHER_ERRORS = 5
#: the long side of a tile on a batch's page (an overview: ``res[i]`` shows one result at preview_size)
BATCH_TILE = 256

#: (data, metadata) of one display_data output
Output = tuple[dict[str, Any], dict[str, Any]]


@dataclass(frozen=True)
class DisplaySettings:
    """How results are embedded.  ``grid_columns=0`` shows each image as its own output; ``page_size``:
    the pictures a page of a batch holds (whole prompts)."""

    embed: str = "preview"
    preview_size: int = 512
    preview_format: str = "jpeg"
    preview_quality: int = 80
    grid_columns: int = 4
    page_size: int = 24


# -- captions -----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _money(gen: Shown, amount: float) -> str:
    # fal's bill where it is known (a Generation's ``billed``), else falnb's estimate (~)
    return usd(amount) if getattr(gen, "billed", False) else f"~{usd(amount)}"


def _cost_text(gen: Shown) -> str:
    if gen.cost is None:
        return "cost unknown"
    return f"{usd(gen.cost)} billed" if getattr(gen, "billed", False) else f"~{usd(gen.cost)}"


def _dims(gen: Shown) -> str:
    dims = sorted({f"{img.width}x{img.height}" for img in gen.images if img.width and img.height})
    return ", ".join(dims) if dims else "size unknown"


def _error_line(err: BaseException) -> str:
    msg = getattr(err, "message", None) or str(err)
    return f"{type(err).__name__}: {short(str(msg), 300)}"


def _tail(e: Entry, batch: bool, one_prompt: bool) -> str:
    if one_prompt:
        return ""
    return f" — {f'prompt {e.group + 1}: ' if batch else ''}“{short(e.prompt, 120)}”"


def caption_lines(entries: Sequence[Entry], refs: Sequence[str] | None = None, *, embedded: bool = True,
                  everything: Sequence[Entry] | None = None) -> list[tuple[str, str]]:
    """``(kind, text)`` lines: ``prompt``, ``item`` (one per generation), ``error``, ``note``.

    ``refs`` name each entry's tiles in the grid (``[1-4]``); costs are estimates; ``cached — saved``
    marks a generation served from the cache (nothing paid).  ``everything``: the whole batch when
    ``entries`` is one page of it (the totals cover the whole batch, and its errors are named).
    """
    whole = list(everything) if everything is not None else list(entries)
    batch = len({e.group for e in whole}) > 1
    lines: list[tuple[str, str]] = []
    prompts = list(dict.fromkeys(e.prompt for e in entries))
    one_prompt = len(prompts) == 1 and not batch
    if one_prompt and prompts[0].strip():  # an upscaler's or a background remover's has none
        lines.append(("prompt", f"“{short(prompts[0], 300)}”"))
    for i, e in enumerate(entries):
        ref = refs[i] if refs is not None and embedded else ""
        tail = _tail(e, batch, one_prompt)
        result = e.result
        if isinstance(result, BaseException):
            lines.append(("error", f"{ref} {e.label}: {_error_line(result)}{tail}".strip()))
            continue
        gen = result
        count = len(gen.images)
        seeds = seed_text((img.seed for img in gen.images), gen.seed)
        parts = [e.label, f"{count} images" if count > 1 else "", _dims(gen), seeds or "",
                 _cost_text(gen)]
        if gen.cached:
            parts.append(f"cached — saved {_money(gen, gen.saved)}")
        parts.append(made_from(gen) or "")
        lines.append(("item", f"{ref} {' · '.join(p for p in parts if p)}{tail}".strip()))
    shown = {id(e) for e in entries}
    elsewhere = [(e, e.result) for e in whole if id(e) not in shown and isinstance(e.result, BaseException)]
    for e, err in elsewhere[:_OTHER_ERRORS]:
        lines.append(("error", f"{e.label}: {_error_line(err)}{_tail(e, batch, False)}"))
    if len(elsewhere) > _OTHER_ERRORS:
        lines.append(("error", f"… and {len(elsewhere) - _OTHER_ERRORS} more errors on other pages"))
    done = [e.result for e in whole if not isinstance(e.result, BaseException)]
    if len(done) > 1:
        known = [g.cost for g in done if g.cost is not None]
        saved = sum(g.saved for g in done if g.cached)
        billed = all(getattr(g, "billed", False) for g in done)  # every figure fal's bill: no "~"
        total = f"{usd(sum(known))} billed" if billed else f"~{usd(sum(known))}"
        note = f"total {total}" + (" (some prices unknown)" if len(known) < len(done) else "")
        if saved:
            note += f" · saved {usd(saved) if billed else '~' + usd(saved)} from the cache"
        lines.append(("note", note))
    if not embedded and done:
        lines.append(("note", "images not embedded (--embed none); keep them with --out NAME"))
    return lines


_STYLE = {"prompt": "font-style:italic", "item": "", "error": "color:#b3261e", "note": "opacity:0.75"}


def _caption_output(lines: list[tuple[str, str]]) -> Output:
    plain = "\n".join(text for _, text in lines)
    rows = "".join(
        f"<div style=\"{_STYLE[kind]}\">{html_text(text)}</div>" if _STYLE[kind]
        else f"<div>{html_text(text)}</div>" for kind, text in lines)
    markup = f"<div class=\"falnb-caption {NO_MATH}\" style=\"font-size:0.85em;line-height:1.45\">{rows}</div>"
    return {"text/plain": plain, "text/html": markup}, {}


def _page_note(page: int, pages: int, groups: Sequence[int], total: int, name: str | None) -> str:
    first, last = min(groups) + 1, max(groups) + 1
    where = f"page {page} of {pages}: prompts {first}-{last} of {total:,}"
    other = page + 1 if page < pages else 1
    if name:
        return f"{where} · the others: {name}.show(page={other})"
    return f"{where} · to see the others, keep the results with --out NAME (a re-run is free: the cache), " \
           f"then NAME.show(page={other})"


# -- the outputs --------------------------------------------------------------------------------


def page_count(entries: Sequence[Entry], settings: DisplaySettings) -> int:
    """How many pages ``entries`` take (1 unless a batch holds more than ``settings.page_size`` pictures)."""
    return len(paginate(entries, max(1, settings.page_size)))


def render_outputs(entries: Sequence[Entry], settings: DisplaySettings, *, page: int = 1,
                   name: str | None = None) -> list[Output]:
    """The outputs for a cell's results: the image output(s), then the caption.

    A batch larger than a page shows page ``page`` (from 1), and its caption says how to see the others
    (``name``: the variable holding them, from ``--out``).  A picture that cannot be decoded is an
    empty, labelled tile: drawing never fails for one bad picture.
    """
    if settings.embed not in EMBED_MODES:
        raise ValueError(f"embed must be one of {EMBED_MODES}, not {settings.embed!r}")
    pages = paginate(entries, max(1, settings.page_size))
    if not isinstance(page, int) or isinstance(page, bool) or not 1 <= page <= len(pages):
        raise InputError(f"page {page!r} does not exist: the pages are 1 to {len(pages)}")
    shown = pages[page - 1]
    tiles, refs, columns = layout(shown, settings.grid_columns)
    real = [t for t in tiles if t.image is not None]
    outputs: list[Output] = []
    embedded = settings.embed != "none" and bool(real)
    side = min(settings.preview_size, BATCH_TILE) if len({e.group for e in entries}) > 1 else settings.preview_size
    done = [e.result for e in shown if not isinstance(e.result, BaseException)]
    if embedded and wants_panel(done):  # an edit beside its inputs, a transparent result on a checkerboard
        outputs.append(edit_panel(panel_inputs(done), [(t.image, t.label) for t in tiles], side=side,
                                  fmt=settings.preview_format, quality=settings.preview_quality,
                                  full=settings.embed == "full"))
    elif settings.embed == "full":
        outputs.extend(_full_output(t) for t in real)
    elif settings.embed == "preview" and real:
        outputs.extend(_preview_outputs(tiles, real, columns, settings, side))
    lines = caption_lines(shown, refs, embedded=embedded, everything=entries)
    if len(pages) > 1:
        groups = sorted({e.group for e in shown})
        lines.append(("note", _page_note(page, len(pages), groups, len({e.group for e in entries}), name)))
    outputs.append(_caption_output(lines))
    return outputs


def _preview_outputs(tiles: list[Tile], real: list[Tile], columns: int, settings: DisplaySettings,
                     size: int) -> list[Output]:
    fmt, quality = settings.preview_format, settings.preview_quality
    if settings.grid_columns <= 0:
        outputs: list[Output] = []
        for t in real:
            assert t.image is not None
            try:
                data, mime, w, h = preview(t.image, size, fmt, quality)
            except Exception:  # a picture Pillow cannot read: its caption still says what it is
                outputs.append(({"text/plain": f"{t.text} (the picture cannot be decoded)"}, {}))
                continue
            outputs.append(({mime: _b64(data), "text/plain": f"{t.text} (preview {w}x{h})"}, {}))
        return outputs
    data, mime, w, h = contact_sheet([(t.image, t.label) for t in tiles], columns, size, fmt, quality)
    what = f"{len(real)} images" if len(real) > 1 else "1 image"
    return [({mime: _b64(data), "text/plain": f"[{what}: preview {w}x{h}]"}, {})]


def _full_output(tile: Tile) -> Output:
    img: Image | None = tile.image
    assert img is not None
    text = f"{tile.text} ({img.content_type}, {len(img.data):,} bytes)"
    if img.content_type in _SHOWABLE:
        return {img.content_type: _b64(img.data), "text/plain": text}, {}
    try:
        buf = io.BytesIO()
        img.to_pil().save(buf, "PNG")
    except Exception:  # a picture Pillow cannot read
        return {"text/plain": f"{text} (cannot be decoded)"}, {}
    return {"image/png": _b64(buf.getvalue()), "text/plain": text}, {}


def show_outputs(outputs: Sequence[Output]) -> None:
    from IPython.display import display

    for data, metadata in outputs:
        display(data, raw=True, metadata=metadata)  # type: ignore[no-untyped-call]


def show_generation(gen: Shown, settings: DisplaySettings | None = None) -> None:
    """Display a Generation as the magics do (``_ipython_display_`` of :class:`Generation`).

    Without ``settings``: those of the loaded magics (``%config FalMagics...``), else the defaults.
    """
    show_outputs(render_outputs([Entry(gen.model, gen.prompt, gen)], settings or current_settings()))


def current_settings() -> DisplaySettings:
    """The display settings of the loaded magics (``%config FalMagics...``), else the defaults."""
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
