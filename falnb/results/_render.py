"""What the magics put in a notebook: image previews, the grid, captions and live progress.

Images are real image mimebundles (``image/jpeg``, ``image/png``, ``image/webp``), never base64
inside HTML: nbval compares HTML byte for byte and data URIs bloat notebooks.  By default one
capped JPEG contact sheet holds every picture of a cell (a compact grid, labelled), followed by a
text caption with both ``text/plain`` and escaped ``text/html``.  Pillow loads on first use.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._generation import seed_text

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from ..fal._progress import Progress
    from ._generation import Generation, Image

__all__ = [
    "EMBED_MODES",
    "PREVIEW_FORMATS",
    "DisplaySettings",
    "Entry",
    "Output",
    "ProgressView",
    "caption_lines",
    "contact_sheet",
    "notebook_bytes",
    "preview",
    "progress_text",
    "render_outputs",
    "show_generation",
    "show_outputs",
]

EMBED_MODES = ("preview", "full", "none")
PREVIEW_FORMATS = ("jpeg", "webp", "png")
_MIME = {"jpeg": "image/jpeg", "webp": "image/webp", "png": "image/png"}
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
    result: Generation | BaseException
    #: the prompt's position in a batch (entries of one group are compared side by side)
    group: int = 0


# -- images -----------------------------------------------------------------------------------


def _flatten(img: PILImage, fmt: str) -> PILImage:
    """JPEG has no alpha: put transparent pictures on white."""
    from PIL import Image as PIL

    if fmt == "jpeg" and img.mode not in ("RGB", "L"):
        rgba = img.convert("RGBA")
        bg = PIL.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    if fmt != "jpeg" and img.mode not in ("RGB", "RGBA", "L", "LA"):
        return img.convert("RGBA")
    return img


def _encode(img: PILImage, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    img = _flatten(img, fmt)
    if fmt == "jpeg":
        img.save(buf, "JPEG", quality=quality, optimize=True, progressive=True)
    elif fmt == "webp":
        img.save(buf, "WEBP", quality=quality, method=4)
    else:
        img.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def preview(image: Image, long_side: int = 512, fmt: str = "jpeg",
            quality: int = 80) -> tuple[bytes, str, int, int]:
    """``(bytes, mime, width, height)`` of a copy whose long side is at most ``long_side``.

    A picture already small enough, in the same format and smaller than the re-encoding, is kept as is.
    """
    from PIL import Image as PIL

    img = image.to_pil()
    if max(img.size) > long_side:
        img.thumbnail((long_side, long_side), PIL.Resampling.LANCZOS)
    data = _encode(img, fmt, quality)
    mime = _MIME[fmt]
    if image.content_type == mime and len(image.data) <= len(data) and max(img.size) == max(
            image.width or 0, image.height or 0):
        return image.data, mime, img.size[0], img.size[1]
    return data, mime, img.size[0], img.size[1]


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


def contact_sheet(tiles: Sequence[tuple[Image | None, str]], columns: int, long_side: int = 512,
                  fmt: str = "jpeg", quality: int = 80) -> tuple[bytes, str, int, int]:
    """One picture holding every tile (each capped at ``long_side``), labelled underneath.

    A ``None`` tile is an empty, labelled cell.  A single tile is just its preview, without a label.
    """
    if len(tiles) == 1 and tiles[0][0] is not None:
        return preview(tiles[0][0], long_side, fmt, quality)
    from PIL import Image as PIL
    from PIL import ImageDraw

    thumbs: list[PILImage | None] = []
    for image, _ in tiles:
        if image is None:
            thumbs.append(None)
            continue
        img = _flatten(image.to_pil(), "jpeg")
        img.thumbnail((long_side, long_side), PIL.Resampling.LANCZOS)
        thumbs.append(img)
    sizes = [t.size for t in thumbs if t is not None] or [(long_side, long_side)]
    cell_w = max(w for w, _ in sizes)
    cell_h = max(h for _, h in sizes)
    font_px = max(11, min(22, long_side // 24))
    band = font_px + font_px // 2 + 4
    gap = 4
    cols = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // cols)
    width = cols * cell_w + (cols - 1) * gap
    height = rows * (cell_h + band) + (rows - 1) * gap
    sheet = PIL.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(font_px)
    for i, (thumb, (_, label)) in enumerate(zip(thumbs, tiles, strict=True)):
        r, c = divmod(i, cols)
        x0, y0 = c * (cell_w + gap), r * (cell_h + band + gap)
        if thumb is None:
            draw.rectangle((x0, y0, x0 + cell_w - 1, y0 + cell_h - 1), fill=(246, 246, 246))
            label += " (none)"
        else:
            sheet.paste(thumb, (x0 + (cell_w - thumb.size[0]) // 2, y0 + (cell_h - thumb.size[1]) // 2))
        draw.rectangle((x0, y0 + cell_h, x0 + cell_w - 1, y0 + cell_h + band - 1), fill=(236, 236, 236))
        text = _fit(draw, label, font, cell_w - 8)
        draw.text((x0 + 4, y0 + cell_h + (band - font_px) // 2 - 1), text, fill=(30, 30, 30), font=font)
    return _encode(sheet, fmt, quality), _MIME[fmt], width, height


def _fit(draw: Any, text: str, font: Any, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- captions -----------------------------------------------------------------------------------


def _money(usd: float) -> str:
    return f"${usd:.3f}" if usd < 1 else f"${usd:.2f}"


def _numbers(first: int, count: int) -> str:
    return f"[{first}]" if count == 1 else f"[{first}-{first + count - 1}]"


def _dims(gen: Generation) -> str:
    dims = sorted({f"{img.width}x{img.height}" for img in gen.images if img.width and img.height})
    return ", ".join(dims) if dims else "size unknown"


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_line(err: BaseException) -> str:
    msg = getattr(err, "message", None) or str(err)
    return f"{type(err).__name__}: {_short(str(msg), 300)}"


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
        lines.append(("prompt", f"“{_short(prompts[0], 300)}”"))
    for i, e in enumerate(entries):
        ref = refs[i] if refs is not None and embedded else ""
        tail = "" if one_prompt else f" — “{_short(e.prompt, 120)}”"
        result = e.result
        if isinstance(result, BaseException):
            lines.append(("error", f"{ref} {e.label}: {_error_line(result)}{tail}".strip()))
            continue
        gen = result
        count = len(gen.images)
        parts = [e.label, f"{count} images" if count > 1 else "", _dims(gen), seed_text(gen) or "",
                 "cost unknown" if gen.cost is None else f"~{_money(gen.cost)}"]
        if gen.cached:
            parts.append(f"cached — saved ~{_money(gen.saved)}")
        text = " · ".join(p for p in parts if p)
        lines.append(("item", f"{ref} {text}{tail}".strip()))
    done = [e.result for e in entries if not isinstance(e.result, BaseException)]
    if len(done) > 1:
        known = [g.cost for g in done if g.cost is not None]
        saved = sum(g.saved for g in done if g.cached)
        note = f"total ~{_money(sum(known))}" + (" (some prices unknown)" if len(known) < len(done) else "")
        if saved:
            note += f" · saved ~{_money(saved)} from the cache"
        lines.append(("note", note))
    if not embedded and done:
        lines.append(("note", "images not embedded (--embed none); keep them with --out NAME"))
    return lines


_STYLE = {"prompt": "font-style:italic", "item": "", "error": "color:#b3261e", "note": "opacity:0.75"}


def _caption_output(entries: Sequence[Entry], refs: Sequence[str], embedded: bool) -> Output:
    lines = caption_lines(entries, refs, embedded=embedded)
    plain = "\n".join(text for _, text in lines)
    rows = "".join(
        f"<div style=\"{_STYLE[kind]}\">{html.escape(text)}</div>" if _STYLE[kind]
        else f"<div>{html.escape(text)}</div>" for kind, text in lines)
    markup = f"<div class=\"falnb-caption\" style=\"font-size:0.85em;line-height:1.45\">{rows}</div>"
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


def show_generation(gen: Generation, settings: DisplaySettings | None = None) -> None:
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


# -- progress -----------------------------------------------------------------------------------


def progress_text(items: Sequence[tuple[str, Progress | None]], elapsed: float) -> tuple[str, str]:
    """``(text, key)``: lines describing the work, and the same without times (changes of state).

    Up to eight jobs get a line each; more are summarised by state.
    """
    if len(items) <= 8:
        lines, keys = [], []
        for label, p in items:
            if p is None:
                lines.append(f"{label}: waiting · {elapsed:.1f} s")
                keys.append(f"{label}: waiting")
                continue
            what = p.what()
            lines.append(f"{label}: {what} · {p.elapsed:.1f} s")
            keys.append(f"{label}: {what}")
        return "\n".join(lines), "\n".join(keys)
    counts: dict[str, int] = {}
    last_log = None
    for _, p in items:
        state = p.state if p is not None else "waiting"
        counts[state] = counts.get(state, 0) + 1
        if p is not None and p.log:
            last_log = p.log
    order = ["done", "cached", "downloading", "running", "queued", "submitting", "checking", "waiting"]
    summary = ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s))
    key = f"{len(items)} jobs: {summary}"
    text = f"{key} · {elapsed:.1f} s"
    if last_log:
        text += f"\nlatest log: {_short(last_log, 160)}"
    return text, key




class ProgressView:
    """A progress output updated in place (``display_id``), replaced by the results at the end.

    Call only from the main thread.  ``live=False`` (terminal IPython) prints only changes of state,
    so a terminal is not flooded with elapsed-time updates.
    """

    def __init__(self, *, enabled: bool = True, live: bool = True, interval: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self.live = live
        self.interval = interval
        self._clock = clock
        self._handle: Any = None
        self._key: str | None = None
        self._text: str | None = None
        self._last = 0.0
        #: how many times the output was shown or updated (tests)
        self.updates = 0

    @property
    def shown(self) -> bool:
        return self._handle is not None

    def show(self, text: str, key: str) -> None:
        if not self.enabled:
            return
        now = self._clock()
        changed = key != self._key
        if self._handle is not None:
            if text == self._text or not (changed or (self.live and now - self._last >= self.interval)):
                return
        self._key, self._text, self._last = key, text, now
        bundle = {"text/plain": text}
        if self._handle is None:
            from IPython.display import display

            self._handle = display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self._handle.update(bundle, raw=True)
        self.updates += 1

    def finish(self, outputs: Sequence[Output]) -> None:
        """Replace the progress output with the first result output and show the others after it."""
        if self._handle is not None and outputs:
            data, metadata = outputs[0]
            self._handle.update(data, raw=True, metadata=metadata)
            show_outputs(outputs[1:])
        else:
            show_outputs(outputs)
        self._handle = None

    def close(self, text: str) -> None:
        """Leave a final line in place of the progress (after an error or an interrupt)."""
        if self._handle is not None:
            self._handle.update({"text/plain": text}, raw=True)
            self._handle = None
