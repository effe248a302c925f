"""The form's picture pickers: one per picture field of the model (``image_url``, ``image_urls``, ``mask_url``).

Each picker takes pictures from a file upload (ipywidgets' ``FileUpload``: the bytes go to the kernel,
then falnb uploads them to fal once per content) or from a previous result of the form's history (read
from the cache or memory: never paid again).  The picked pictures go into the request under the model's
own field (one picture, or a list for a list field), as falnb ``Image`` objects whose ``source`` names
where they came from, so an edit's caption says "edit of photo.png".

"Copy as %%falimage cell" writes ``--image`` / ``--mask`` where a cell can name the same picture: an upload
that is a file of the same bytes in the kernel's folder (``--image photo.png``), a result held by a
notebook variable (``--image {gen[1]}``).  What a cell cannot name is reported, never silently dropped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..results._text import html_text, short

if TYPE_CHECKING:
    from .._client import Client
    from ..catalog._catalog import Catalog, ModelSpec
    from ..results._generation import Generation
    from ..results._image import Image
    from ._form_history import History, HistoryItem

__all__ = ["Choice", "PictureControls", "PicturePicker", "PicturePickers", "cell_reference"]

#: (label, generation, picture index, the picture's source label) of a previous result
Choice = tuple[str, "Generation", int, str]
#: where a picked picture came from: ("upload", file name) or ("result", (generation, index))
_Origin = tuple[str, Any]
_NONE = "(none)"


def _option(field: str) -> str:
    """The ``%%falimage`` option that fills a field of this name (the model's first of each kind)."""
    return "--mask" if "mask" in field else "--image"


class PicturePicker:
    """The picker for one field: an upload button, a dropdown of previous results, a clear button."""

    def __init__(self, field: str, is_list: bool, required: bool,
                 pictures_of: Callable[[Generation, int], Image | None]) -> None:
        self.field, self.is_list, self.required = field, is_list, required
        self._pictures_of = pictures_of
        self._choices: list[Choice] = []
        what = "pictures" if is_list else "a picture"
        self.upload = widgets.FileUpload(accept="image/*", multiple=is_list, description="upload",
                                         tooltip=f"send {what} from this computer")
        self.previous = widgets.Dropdown(options=[(_NONE, -1)], value=-1, description="or a result",
                                         style={"description_width": "80px"},
                                         layout=widgets.Layout(width="420px"),
                                         tooltip="a picture of a previous generation (from the cache: free)")
        self.clear = widgets.Button(icon="times", tooltip="no picture", layout=widgets.Layout(width="36px"))
        self.clear.on_click(lambda _: self.reset())
        need = " (required)" if required else ""
        self.label = widgets.HTML(f"<b>{field}</b>{need}", layout=widgets.Layout(width="140px"))
        #: pictures set in code (``form(image_url=...)``) or restored by re-opening an edit
        self.given: list[Any] = []
        self.given_label = widgets.HTML("")
        self.widget = widgets.HBox([self.label, self.upload, self.previous, self.given_label, self.clear],
                                   layout=widgets.Layout(align_items="center"))
        self.widget.add_class("falnb-picture-picker")

    def reset(self) -> None:
        self.upload.value = ()
        self.previous.value = -1
        self.set_given(None)

    def set_given(self, value: Any) -> None:
        """Pictures given in code: one (a URL, a path, a falnb Image, ...), a list, or None for none."""
        self.given = [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]
        names = [str(getattr(v, "source", None) or (v if isinstance(v, str) else type(v).__name__))
                 for v in self.given]
        self.given_label.value = html_text(short(", ".join(names), 60)) if names else ""

    def set_choices(self, choices: Sequence[Choice]) -> None:
        """The previous results the dropdown lists (newest first); keeps the pick when still listed."""
        old = self._picked_choice()
        self._choices = list(choices)
        options = [(_NONE, -1)] + [(c[0], i) for i, c in enumerate(self._choices)]
        keep = next((i for i, c in enumerate(self._choices)
                     if old is not None and c[1] is old[1] and c[2] == old[2]), -1)
        self.previous.options = options
        self.previous.value = keep

    def _picked_choice(self) -> Choice | None:
        index = self.previous.value
        return self._choices[index] if isinstance(index, int) and 0 <= index < len(self._choices) else None

    def picked(self) -> list[tuple[Any, _Origin]]:
        """The pictures picked (given ones, uploads, a previous result), each with where it came from."""
        from ..results._image import Image

        out: list[tuple[Any, _Origin]] = [(v, ("given", v)) for v in self.given]
        for f in self.upload.value:
            name = str(f.get("name") or "upload")
            mime = str(f.get("type") or "application/octet-stream")
            data = bytes(f["content"])
            out.append((Image(data=data, content_type=mime, width=None, height=None, source=name),
                        ("upload", name)))
        choice = self._picked_choice()
        if choice is not None:
            _, gen, index, source = choice
            img = self._pictures_of(gen, index)
            if img is not None:
                out.append((dataclasses.replace(img, source=source), ("result", (gen, index))))
        return out

    def value(self) -> Any:
        """What the request gets for this field: None, one picture, or a list (a list field)."""
        pictures = [img for img, _ in self.picked()]
        if not pictures:
            return None
        return pictures if self.is_list else pictures[0] if len(pictures) == 1 else pictures

    def set(self, value: Any) -> None:
        """Show ``value`` as this field's pictures (the uploads and the pick are cleared)."""
        self.reset()
        self.set_given(value)

    def observe(self, callback: Callable[[Any], None]) -> None:
        self.upload.observe(callback, names="value")
        self.previous.observe(callback, names="value")


class PicturePickers:
    """The pickers of one model's picture fields, as a box for the form."""

    def __init__(self, fields: Sequence[tuple[str, bool, bool]],
                 pictures_of: Callable[[Generation, int], Image | None]) -> None:
        self.pickers = [PicturePicker(name, is_list, required, pictures_of) for name, is_list, required in fields]
        self.widget = widgets.VBox([p.widget for p in self.pickers])

    def __bool__(self) -> bool:
        return bool(self.pickers)

    @property
    def fields(self) -> list[str]:
        return [p.field for p in self.pickers]

    def inputs(self) -> dict[str, Any]:
        """The request's picture inputs, by the model's own field names (fields left empty are absent)."""
        return {p.field: v for p in self.pickers if (v := p.value()) is not None}

    def set_choices(self, choices: Sequence[Choice]) -> None:
        for p in self.pickers:
            p.set_choices(choices)

    def observe(self, callback: Callable[[Any], None]) -> None:
        for p in self.pickers:
            p.observe(callback)

    def cell_words(self, ns: Mapping[str, Any], folder: Path | None = None) -> tuple[list[str], list[str]]:
        """``(words, problems)``: the ``--image``/``--mask`` words of the equivalent cell, and what a cell
        cannot name (each a short phrase)."""
        words: list[str] = []
        problems: list[str] = []
        first: dict[str, str] = {}  # the field each option fills: the model's first of its kind
        for p in self.pickers:
            first.setdefault(_option(p.field), p.field)
        for p in self.pickers:
            option = _option(p.field)
            picked = p.picked()
            urls = [v for v, _ in picked if isinstance(v, str) and v.startswith(("http://", "https://"))]
            if urls and len(urls) == len(picked):  # URLs alone: the field by its own name, exactly as sent
                value = urls if p.is_list else urls[0]
                words += ["-p", shlex.quote(f"{p.field}={value if isinstance(value, str) else json.dumps(value)}")]
                continue
            for img, origin in picked:
                if first[option] != p.field:
                    problems.append(f"{p.field} (%%falimage {option} fills {first[option]})")
                    break
                ref = cell_reference(img, origin, ns, folder or Path.cwd())
                if ref is None:
                    problems.append(f"the uploaded {origin[1]} (not a file in the kernel's folder)"
                                    if origin[0] == "upload" else
                                    f"{getattr(img, 'source', None) or 'a picture'} (keep it in a variable)")
                else:
                    words += [option, ref]
        return words, problems


def cell_reference(img: Any, origin: _Origin, ns: Mapping[str, Any], folder: Path) -> str | None:
    """How a ``%%falimage`` cell names this picture (a quoted path or URL, or ``{var}``), None when it cannot."""
    from ..results._generation import Generation
    from ..results._image import Image

    kind, what = origin
    if isinstance(img, (str, os.PathLike)):  # given in code as a path or URL: written as it is
        return shlex.quote(os.fspath(img))
    if kind == "given":
        if not isinstance(img, Image):
            return _variable(ns, lambda v: v is img)
        named = _variable(ns, lambda v: isinstance(v, Image) and bool(v.data) and v.data == img.data)
        if named is not None:
            return named
        for name, value in _names(ns):
            if isinstance(value, Generation):
                for k, other in enumerate(value.images):
                    if other.data == img.data:
                        return f"{{{name}}}" if len(value.images) == 1 else f"{{{name}[{k}]}}"
        return None
    if kind == "upload":
        path = folder / str(what)
        try:
            same = path.is_file() and path.stat().st_size == len(img.data) and path.read_bytes() == img.data
        except OSError:
            same = False
        return shlex.quote(str(what)) if same and Path(str(what)).name == str(what) else None
    gen, index = what
    for name, value in _names(ns):
        if isinstance(value, Generation) and _same(value, gen):
            return f"{{{name}}}" if len(value.images) == 1 else f"{{{name}[{index}]}}"
        if isinstance(value, Image) and value.data and value.data == img.data:
            return f"{{{name}}}"
    return None


def _names(ns: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The notebook's own variables (not IPython's ``_``, ``_1``, ``In``, ``Out``)."""
    return [(k, v) for k, v in ns.items() if not k.startswith("_") and k.isidentifier() and k not in ("In", "Out")]


def _variable(ns: Mapping[str, Any], match: Callable[[Any], bool]) -> str | None:
    return next((f"{{{name}}}" for name, value in _names(ns) if match(value)), None)


def _same(a: Generation, b: Generation) -> bool:
    """The same generation (a history item may be a light copy of the one a variable holds)."""
    return a is b or (bool(a.request_ids) and a.request_ids == b.request_ids and a.model == b.model)


class PictureControls:
    """The form's picture pickers (a mixin of :class:`~falnb.notebook._form.FalForm`): built for each model
    from its picture fields, listing the history's pictures, read by ``plan()`` and the copied cell."""

    # set by the form
    client: Client
    catalog: Catalog
    spec: ModelSpec
    history: History
    _listed: list[HistoryItem]
    prompt_box: widgets.Textarea
    pictures_box: widgets.VBox

    if TYPE_CHECKING:  # the form's own method, used here
        def _on_change(self, _: Any = None) -> None: ...

    def _build_pictures(self) -> None:
        """Pickers for the current model's picture fields (none for text-to-image); the old ones are closed."""
        from ..catalog._image_models import picture_inputs
        from ._form_fields import close_tree

        old = getattr(self, "pictures", None)
        how = picture_inputs(self.spec)
        self.pictures = PicturePickers([(f.name, f.many, f.required) for f in how.fields], self._picture_of)
        self.pictures.set_choices(self._picture_choices())
        self.pictures.observe(self._on_change)
        self.pictures_box.children = [self.pictures.widget] if self.pictures else []
        no_prompt = how.prompt == "none"  # an upscaler or a background remover works from the picture alone
        if no_prompt:
            self.prompt_box.value = ""
        self.prompt_box.disabled = no_prompt
        self.prompt_box.placeholder = "this model takes no prompt" if no_prompt else "describe the picture"
        if old is not None:
            close_tree(old.widget)

    def _picture_choices(self) -> list[Choice]:
        """Every picture of the listed history, newest first, labelled as a caption names it."""
        choices: list[Choice] = []
        for number, item in reversed(list(enumerate(self._listed, 1))):
            gen = item.generation
            try:
                name = self.catalog.resolve(gen.model).alias
            except Exception:  # a model id the catalog no longer knows
                name = gen.model
            where = gen.origin or f"history item {number}"
            prompt = short(gen.prompt, 30) if gen.prompt else "(no prompt)"
            for k in range(item.count):
                choices.append((f"{number}. picture {k + 1} · {name} · {prompt}", gen, k,
                                f"picture {k + 1} of {where}"))
        return choices

    def _picture_of(self, gen: Generation, index: int) -> Image | None:
        """Picture ``index`` of a listed generation: from the cache (or memory), never paid again."""
        for item in self.history:
            if item.generation is gen:
                images, _ = item.images(self.client)
                return images[index] if index < len(images) else None
        return gen.images[index] if index < len(gen.images) else None

    def _apply_pictures(self, params: dict[str, Any]) -> None:
        """Take the picture inputs out of ``params`` (the model's fields, or ``image=``/``mask=``) into the
        pickers: they are pictures, not "other inputs"."""
        pickers = self.pictures.pickers
        for picker in pickers:
            if picker.field in params:
                picker.set(params.pop(picker.field))
        for short_name, mask in (("image", False), ("mask", True)):
            target = next((p for p in pickers if ("mask" in p.field) == mask), None)
            if short_name in params and target is not None:
                target.set(params.pop(short_name))

    def _restore_pictures(self, gen: Generation) -> None:
        """Re-opening an edit: its pickers get the pictures it was made from (keyed by their content, as
        when it was made, so Generate hits the same cache entry; never the URLs fal's storage gave them)."""
        pictures = list(gen.input_images)
        if not pictures:
            return
        sent = gen.inputs[0] if gen.inputs else {}
        for picker in self.pictures.pickers:
            value = sent.get(picker.field)
            count = len(value) if isinstance(value, list) else 1 if value is not None else 0
            taken, pictures = pictures[:count], pictures[count:]
            picker.set((taken if picker.is_list else taken[0]) if taken else None)

    def picture_words(self) -> tuple[list[str], list[str]]:
        """The copied cell's ``--image``/``--mask`` words, and what it cannot name (see ``cell_words``)."""
        from IPython import get_ipython

        shell = get_ipython()
        return self.pictures.cell_words(shell.user_ns if shell is not None else {})
