"""One model input checked against the catalog before anything is sent: its name, type, range and JSON form.

For a catalogued model an input name it does not take is a mistake (``guidance`` for ``guidance_scale``
would be sent, billed and ignored by fal), refused with the model's input names and a did-you-mean,
unless the caller says it is deliberate (``allow_unknown``).  Pass-through ids and variants forward
the names falnb does not know: fal may know inputs falnb does not.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import reprlib
from collections.abc import Collection, Mapping
from typing import Any

from .._exceptions import ParameterError, SizeError
from ..catalog._catalog import PRESETS, ModelSpec, Param
from ..catalog._sizes import nearest_ratio, parse_size

__all__ = ["ALLOW_HINT", "Deliberate", "check_param", "jsonable"]

_SIZE_FIELDS = ("image_size", "aspect_ratio")
#: how alike two names must be for one to be a typo of the other (difflib's ratio)
_NEAR = 0.8
#: the spelling of the explicit option in each front end, for hints
ALLOW_HINT = "allow_unknown=True (in a cell: --allow-unknown)"


class Deliberate:
    """Which input names the catalog does not list the caller means to send as they are (``allow_unknown``).

    True: every name.  A list of names (the form's "other inputs" box): those names as new inputs, except a
    near-miss of one of the model's own inputs (``enhance_promt``), which is still a typo.  False: none.
    """

    def __init__(self, allow_unknown: bool | Collection[str], model: str) -> None:
        if isinstance(allow_unknown, bool):
            self.everything, self.names = allow_unknown, frozenset[str]()
        elif isinstance(allow_unknown, (str, bytes, Mapping)) or not isinstance(allow_unknown, Collection):
            raise ParameterError(f"allow_unknown must be True, False or a list of input names, not "
                                 f"{reprlib.repr(allow_unknown)}", model=model, field="allow_unknown")
        else:
            self.everything, self.names = False, frozenset(str(n) for n in allow_unknown)

    def __call__(self, name: str) -> bool:
        """Whether ``name`` is meant, whatever the catalog says (used for names such as the seed)."""
        return self.everything or name in self.names

    def allows(self, spec: ModelSpec, name: str) -> bool:
        if self.everything:
            return True
        return name in self.names and not _near_miss(spec, name)


def check_param(spec: ModelSpec, name: str, value: Any, deliberate: Deliberate, origin: str = "") -> Any:
    """The value to send for input ``name`` (coerced where the catalog says how), or a ParameterError."""
    if name in _SIZE_FIELDS and spec.known and spec.size_field == name:
        return _check_image_size(spec, value) if name == "image_size" else _check_aspect_ratio(spec, value)
    param = spec.param(name)
    if param is not None:
        return _coerce(spec, param, value)
    if not deliberate.allows(spec, name):
        _refuse_unknown(spec, name, origin)
    return jsonable(spec, name, value)


def jsonable(spec: ModelSpec, name: str, value: Any) -> Any:
    """``value`` if it can travel as JSON (fal's input is a JSON object), else a ParameterError."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError as exc:
        why = "holds a NaN or an infinity" if "out of range" in str(exc).lower() else "refers to itself"
    except (TypeError, RecursionError) as exc:
        why = f"cannot be sent as JSON ({exc})" if isinstance(exc, TypeError) else "is nested too deeply"
    else:
        return value
    shown = reprlib.repr(value)  # bounded, even for a huge or deeply nested value
    raise ParameterError(f"{name}={shown} {why}", model=spec.id, field=name,
                         hint="fal inputs are JSON: numbers, strings, true/false, lists and objects.")


def _refuse_unknown(spec: ModelSpec, name: str, origin: str) -> None:
    where = f" (set by {origin})" if origin else ""
    if spec.strict and name in _SIZE_FIELDS:
        raise ParameterError(
            f"{spec.id} takes no {name}{where}: its size input is {spec.size_field}", model=spec.id, field=name,
            hint=f"Use size= ('16:9', '1024x768' or a preset): falnb maps it to {spec.size_field}. "
                 f"To send {name} anyway: {ALLOW_HINT}.",
            hints={"cell": f"Use --size ('16:9', '1024x768' or a preset): falnb maps it to {spec.size_field}. "
                           f"To send {name} anyway: --allow-unknown."})
    names = spec.input_names()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6 if spec.strict else _NEAR)
    mean = f"; did you mean {close[0]!r}?" if close else ""
    if spec.strict:
        raise ParameterError(
            f"unknown parameter {name!r} for {spec.id}{where}{mean}", model=spec.id, field=name,
            hint=f"Its inputs: {', '.join(n for n in names if n != 'prompt')}. To send {name!r} anyway: "
                 f"{ALLOW_HINT}.")
    if close:  # a variant: names falnb does not know go through, but a near-miss is a typo
        raise ParameterError(f"unknown parameter {name!r} for {spec.id}{where}{mean}", model=spec.id, field=name,
                             hint=f"To send {name!r} anyway: {ALLOW_HINT}.")


def _near_miss(spec: ModelSpec, name: str) -> bool:
    return bool(difflib.get_close_matches(name, spec.input_names(), n=1, cutoff=_NEAR))


def _check_aspect_ratio(spec: ModelSpec, value: Any) -> Any:
    if value not in spec.aspect_ratios:
        raise ParameterError(f"aspect_ratio {value!r} is not allowed for {spec.id}", model=spec.id,
                             field="aspect_ratio", hint=f"Allowed: {', '.join(spec.aspect_ratios)}; "
                             f"nearest: {_nearest_hint(value, spec)}.")
    return value


def _nearest_hint(value: Any, spec: ModelSpec) -> str:
    try:
        return nearest_ratio(parse_size(value).aspect, spec.aspect_ratios)
    except SizeError:
        return spec.aspect_ratios[0]


def _check_image_size(spec: ModelSpec, value: Any) -> Any:
    if isinstance(value, str) and value in spec.size_presets and value not in PRESETS:
        return value  # a named size of this model's own (Seedream 4's "auto_2K"): fal picks the pixels
    if isinstance(value, str) and value in PRESETS:
        dims = PRESETS[value]
    elif isinstance(value, Mapping) and set(value) == {"width", "height"}:
        req = parse_size(dict(value))
        dims = req.width or 0, req.height or 0
        value = {"width": dims[0], "height": dims[1]}
    else:
        raise ParameterError(f"image_size {value!r} is not a preset or {{'width': W, 'height': H}}",
                             model=spec.id, field="image_size", hint="Presets: " + ", ".join(spec.size_presets) + ".")
    lo, hi = spec.sides
    if not all(lo <= d <= hi for d in dims):
        raise ParameterError(f"image_size {value!r} is out of range for {spec.id}: each side must be "
                             f"{lo} to {hi} pixels", model=spec.id, field="image_size")
    return value


def _coerce(spec: ModelSpec, p: Param, value: Any) -> Any:
    def fail(why: str) -> ParameterError:
        return ParameterError(f"{p.name}={value!r} {why} for {spec.id}", model=spec.id, field=p.name,
                              hint=f"{p.name} must be {p.describe_allowed()}.")

    if value is None:
        return None
    if p.type == "bool":
        if not isinstance(value, bool):
            raise fail("is not true or false")
    elif p.type == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("is not a whole number")
    elif p.type == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise fail("is not a number")
        value = float(value)
    elif p.type == "str":
        if isinstance(value, int) and not isinstance(value, bool) and p.choices and str(value) in p.choices:
            value = str(value)  # safety_tolerance is a string on fal; 2 means "2"
        if not isinstance(value, str):
            raise fail("is not a string")
        if p.choices is not None and value not in p.choices and not (p.pattern and re.fullmatch(p.pattern, value)):
            upper = [c for c in p.choices if isinstance(c, str) and c.lower() == value.lower()]
            if upper:
                return upper[0]
            raise fail("is not allowed")
    elif p.type == "list" and not isinstance(value, (list, tuple)):
        raise fail("is not a list")
    elif p.type == "object" and not isinstance(value, Mapping):
        raise fail("is not an object")
    if p.type in ("int", "float"):
        if (p.minimum is not None and value < p.minimum) or (p.maximum is not None and value > p.maximum):
            raise fail("is out of range")
    if p.type in ("list", "object"):
        jsonable(spec, p.name, value)
    return list(value) if isinstance(value, tuple) else value
