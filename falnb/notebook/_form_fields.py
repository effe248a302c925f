"""The form's input widgets: the model picker, the size control and one field per catalog parameter.

Each catalog :class:`~falnb.catalog._catalog.Param` gets the widget that fits it: a Dropdown for a fixed
set of values, a Combobox when a pattern also allows sub-values (Recraft's styles), a Checkbox for
a bool, bounded number boxes, and a text box (JSON for lists and objects).  A field shows the
model's default and reports only values that differ from it, so the request and the
``%%falimage`` cell carry only what the person changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from .._exceptions import ParameterError
from ..catalog._catalog import PRESETS, Catalog, ModelSpec, Param
from ..catalog._sizes import map_size
from ._magic_args import own_option

__all__ = ["LABEL_STYLE", "MAX_FORM_N", "NOT_SENT", "ParamField", "SizeControl", "close_tree", "model_options",
           "read_extra", "read_seed"]

#: the most pictures one click asks for (more: ``falnb.generate(n=...)``)
MAX_FORM_N = 8
LABEL_STYLE = {"description_width": "150px"}
_FIELD_WIDTH = "440px"


class _NotSent:
    def __repr__(self) -> str:
        return "NOT_SENT"


#: the value of a field left empty: the parameter is not sent and fal uses its own default
NOT_SENT: Any = _NotSent()


def close_tree(widget: Any) -> None:
    """Close ``widget``, its children and their layouts and styles: each one is a comm the frontend keeps
    until it is closed (a model switch would otherwise leave ~20 behind)."""
    for child in getattr(widget, "children", ()) or ():
        close_tree(child)
    for part in ("layout", "style"):
        sub = getattr(widget, part, None)
        if isinstance(sub, widgets.Widget):
            sub.close()
    widget.close()


def model_options(catalog: Catalog) -> list[tuple[str, str]]:
    """``(label, name)`` for every catalogued model (by its first alias) and every extra alias."""
    options: list[tuple[str, str]] = []
    own: set[str] = set()
    for spec in [*catalog.models, *catalog.image_models]:  # editing, upscaling, background removal too
        names = " / ".join(spec.aliases) if spec.aliases else spec.id
        options.append((f"{names} — {spec.title}", spec.alias))
        own.update(spec.aliases)
    own.update(a for spec in catalog.image_models for a in spec.aliases)  # pictures in: not in this picker yet
    for alias, model_id in sorted(catalog.aliases().items()):
        if alias not in own:  # e.g. loaded from a LiteLLM proxy config, with its own defaults
            options.append((f"{alias} → {model_id}", alias))
    return options


class ParamField:
    """One model parameter as a widget, with the model's default shown."""

    def __init__(self, param: Param, default: Any = None) -> None:
        self.param = param
        self.default = default
        self.kind, self.widget = self._build()
        self.widget.add_class(f"falnb-param-{param.name}")

    def _tooltip(self) -> str:
        p = self.param
        default = "not sent (fal decides)" if self.default is None else repr(self.default)
        text = f"{p.name}: {p.describe_allowed()}; default {default}"
        return f"{text}. {p.help}" if p.help else text

    def _build(self) -> tuple[str, Any]:
        p, d = self.param, self.default
        common: dict[str, Any] = {"description": p.name, "tooltip": self._tooltip(), "style": LABEL_STYLE,
                                  "layout": widgets.Layout(width=_FIELD_WIDTH)}
        if p.choices is not None and p.pattern:
            return "combo", widgets.Combobox(options=[str(c) for c in p.choices], ensure_option=False,
                                             value="" if d is None else str(d),
                                             placeholder="a value or a sub-style", **common)
        if p.choices is not None:
            options: list[tuple[str, Any]] = [(str(c), c) for c in p.choices]
            if d not in p.choices:
                options.insert(0, ("(fal's default)", NOT_SENT))
            value = d if d in p.choices else NOT_SENT
            return "choice", widgets.Dropdown(options=options, value=value, **common)
        if p.type == "bool":
            return "bool", widgets.Checkbox(value=bool(d), **common)
        if p.type in ("int", "float") and d is not None:
            return p.type, _number(p, d, common)
        hint = {"list": "JSON list, e.g. [1, 2]", "object": 'JSON object, e.g. {"a": 1}'}.get(p.type, "")
        if p.file_input:  # a picture input (x-fal-file-input, or by name): its URL(s) today
            hint = '["https://…/a.png"] (picture URLs)' if p.type == "list" else "a picture's URL"
        placeholder = hint or ("not sent" if d is None else "")
        return "text", widgets.Text(value="" if d is None or p.type in ("list", "object") else str(d),
                                    placeholder=placeholder, **common)

    @property
    def value(self) -> Any:
        """The value to send, or :data:`NOT_SENT`; raises ParameterError for unreadable text."""
        p, raw = self.param, self.widget.value
        if self.kind == "combo":
            raw = raw.strip()
            return NOT_SENT if raw == "" and self.default is None else raw
        if self.kind in ("choice", "bool", "int", "float"):
            return raw
        text = str(raw).strip()
        if p.type in ("list", "object", "int", "float"):
            if not text:
                return NOT_SENT
            try:
                parsed = json.loads(text)
            except ValueError:
                raise ParameterError(f"{p.name}: {text!r} is not valid JSON", field=p.name,
                                     hint=f"{p.name} must be {p.describe_allowed()}.") from None
            return parsed
        if text == "" and self.default is None:
            return NOT_SENT
        return str(raw)

    def changed(self) -> bool:
        """Whether the field holds something other than the model's default (so it must be sent)."""
        value = self.value
        return value is not NOT_SENT and value != self.default

    def set(self, value: Any) -> None:
        """Show ``value`` (a Python value as ``generate`` takes it; None resets to the default)."""
        if value is None:
            value = self.default
        w = self.widget
        if self.kind == "choice":
            match = [c for c in self.param.choices or () if c == value or str(c) == str(value)]
            if value is None:
                w.value = NOT_SENT
            elif not match:
                raise ParameterError(f"{self.param.name}={value!r} is not allowed", field=self.param.name,
                                     hint=f"{self.param.name} must be {self.param.describe_allowed()}.")
            else:
                w.value = match[0]
        elif self.kind == "bool":
            w.value = bool(value)
        elif self.kind in ("int", "float"):
            w.value = value
        elif self.param.type in ("list", "object", "int", "float"):
            w.value = "" if value is None else json.dumps(value)
        else:
            w.value = "" if value is None else str(value)

    def observe(self, callback: Callable[[Any], None]) -> None:
        self.widget.observe(callback, names="value")


def _number(p: Param, d: Any, common: dict[str, Any]) -> Any:
    bounded = p.minimum is not None and p.maximum is not None
    if p.type == "int":
        if bounded:
            return widgets.BoundedIntText(value=int(d), min=int(p.minimum or 0), max=int(p.maximum or 0),
                                          **common)
        return widgets.IntText(value=int(d), **common)
    step = 0.05 if bounded and (p.maximum or 0) - (p.minimum or 0) <= 1 else 0.5
    if bounded:
        return widgets.BoundedFloatText(value=float(d), min=p.minimum, max=p.maximum, step=step, **common)
    return widgets.FloatText(value=float(d), step=step, **common)


class SizeControl:
    """The picture's shape, in the model's own terms: aspect ratios, or presets and custom pixels."""

    def __init__(self, spec: ModelSpec, size: Any = None) -> None:
        self.spec = spec
        style, label = LABEL_STYLE, widgets.Layout(width=_FIELD_WIDTH)
        self.width: Any = None
        self.height: Any = None
        if spec.size_field == "aspect_ratio":
            self.kind = "ratio"
            ratios: list[Any] = [*spec.aspect_ratios, *spec.size_presets]  # ("auto": a named size of its own)
            if spec.default_size not in ratios:  # not sent: fal picks (an edit: the input picture's shape)
                ratios = [("(model's default)", ""), *((r, r) for r in ratios)]  # (all pairs: ipywidgets)
            self.choice: Any = widgets.Dropdown(options=ratios, description="aspect ratio", style=style,
                                                value=spec.default_size if spec.default_size in ratios
                                                else _first(ratios), layout=label)
            self.widget = widgets.HBox([self.choice])
        elif spec.size_field == "image_size":
            self.kind = "image_size"
            lo, hi = spec.side_range or (64, 8192)
            options = [(f"{name} ({w}×{h})", name) for name, (w, h) in PRESETS.items()
                       if lo <= w <= hi and lo <= h <= hi]
            options += [(name, name) for name in spec.size_presets if name not in PRESETS]  # "auto_2K"...
            if spec.default_size not in spec.size_presets:
                options.insert(0, ("(model's default)", ""))
            options.append(("custom width × height", "custom"))
            self.choice = widgets.Dropdown(options=options, description="size", style=style, layout=label,
                                           value=spec.default_size if spec.default_size in spec.size_presets
                                           else "")
            box = widgets.Layout(width="110px")
            self.width = widgets.BoundedIntText(value=max(lo, min(hi, 1024)), min=lo, max=hi, step=8,
                                                layout=box, tooltip=f"width, {lo} to {hi} pixels")
            self.height = widgets.BoundedIntText(value=max(lo, min(hi, 768)), min=lo, max=hi, step=8,
                                                 layout=box, tooltip=f"height, {lo} to {hi} pixels")
            self.widget = widgets.HBox([self.choice, self.width, widgets.Label("×"), self.height])
            self.choice.observe(lambda _: self._show_custom(), names="value")
            self._show_custom()
        else:
            self.kind = "none"
            self.choice = None
            self.widget = widgets.HBox([widgets.Label("size: set by the model")])
        if size is not None:
            self.set(size)

    def _show_custom(self) -> None:
        display = "" if self.choice.value == "custom" else "none"
        for w in self.widget.children[1:]:
            w.layout.display = display

    @property
    def value(self) -> str | None:
        """``"16:9"``, a preset name, ``"WxH"``, or None (the model's default)."""
        if self.kind == "none":
            return None
        if self.kind == "image_size" and self.choice.value == "custom":
            return f"{self.width.value}x{self.height.value}"
        return str(self.choice.value) or None

    def set(self, size: Any) -> None:
        """Show ``size`` as ``generate`` takes it (``"WxH"``, ``"W:H"``, a preset, ``(w, h)``)."""
        if self.kind == "none" or size is None:
            return
        if self.kind == "ratio" and isinstance(size, str) and size in self.spec.aspect_ratios:
            self.choice.value = size
            return
        fields, _ = map_size(self.spec, size)  # raises SizeError for a size the model cannot take
        if self.kind == "ratio":
            self.choice.value = fields["aspect_ratio"]
            return
        value = fields["image_size"]
        if isinstance(value, str) and value in [v for _, v in self.choice.options]:
            self.choice.value = value
        else:
            dims = PRESETS[value] if isinstance(value, str) else (value["width"], value["height"])
            self.width.value, self.height.value = dims
            self.choice.value = "custom"

    def observe(self, callback: Callable[[Any], None]) -> None:
        for w in (self.choice, self.width, self.height):
            if w is not None:
                w.observe(callback, names="value")


def _first(options: list[Any]) -> Any:
    first = options[0]
    return first[1] if isinstance(first, tuple) else first


def read_seed(text: str) -> int | None:
    """The seed box's value: None when empty (a random seed), else a whole number."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ParameterError(f"seed {text!r} is not a whole number", field="seed",
                             hint="Leave it empty for a random seed.") from None


def read_extra(text: str) -> dict[str, Any]:
    """The "other inputs" box: a JSON object of inputs sent to fal as they are ({} when empty)."""
    text = text.strip()
    if not text:
        return {}
    try:
        more = json.loads(text)
    except ValueError:
        more = None
    if not isinstance(more, dict):
        raise ParameterError(f"other inputs {text!r} is not a JSON object", field="other inputs",
                             hint='Write e.g. {"new_param": 1}.')
    for name in more:
        instead = own_option(name, form=True)
        if instead is not None:
            raise ParameterError(f"other inputs: {name!r} has a control of its own: {instead}",
                                 field="other inputs")
    return more
