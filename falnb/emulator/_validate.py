"""Checks a model input the way fal's pydantic models do, giving fal-shaped 422 ``detail`` items."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..catalog._catalog import PRESETS, ModelSpec, Param

__all__ = ["content_policy_error", "validate"]

#: bounds per side for ``{width, height}`` when the model sets none
_ANY_SIDE = (1, 14142)

_TYPE_ERRORS = {
    "int": ("int_type", "Input should be a valid integer"),
    "float": ("float_type", "Input should be a valid number"),
    "bool": ("bool_type", "Input should be a valid boolean"),
    "str": ("string_type", "Input should be a valid string"),
    "list": ("list_type", "Input should be a valid list"),
    "object": ("dict_type", "Input should be a valid dictionary"),
}


def _err(loc: list[str | int], typ: str, msg: str, value: Any,
         ctx: dict[str, Any] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"loc": ["body", *loc], "msg": msg, "type": typ, "input": value}
    if ctx:
        item["ctx"] = ctx
    return item


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "int":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "list":
        return isinstance(value, list)
    return isinstance(value, dict)


def _literal(loc: list[str | int], value: Any, choices: tuple[Any, ...]) -> dict[str, Any]:
    shown = [repr(c) for c in choices]
    expected = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]
    return _err(loc, "literal_error", f"Input should be {expected}", value, {"expected": expected})


def _range(loc: list[str | int], value: float, lo: float | None, hi: float | None) -> list[dict[str, Any]]:
    if lo is not None and value < lo:
        return [_err(loc, "greater_than_equal", f"Input should be greater than or equal to {_num(lo)}",
                     value, {"ge": _num(lo)})]
    if hi is not None and value > hi:
        return [_err(loc, "less_than_equal", f"Input should be less than or equal to {_num(hi)}",
                     value, {"le": _num(hi)})]
    return []


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def _check_param(p: Param, value: Any) -> list[dict[str, Any]]:
    loc: list[str | int] = [p.name]
    if value is None and p.default is None:
        return []  # optional field sent as null
    if not _type_ok(p.type, value):
        typ, msg = _TYPE_ERRORS[p.type]
        return [_err(loc, typ, msg, value)]
    if p.choices is not None and value not in p.choices:
        if not (p.pattern and isinstance(value, str) and re.fullmatch(p.pattern, value)):
            return [_literal(loc, value, p.choices)]
    if p.type in ("int", "float"):
        return _range(loc, float(value), p.minimum, p.maximum)
    return []


def _check_image_size(spec: ModelSpec, value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        if value in PRESETS:
            if spec.side_range is not None:
                w, h = PRESETS[value]
                lo, hi = spec.side_range
                if not (lo <= w <= hi and lo <= h <= hi):
                    return [_err(["image_size"], "value_error",
                                 f"Value error, {value} ({w}x{h}) is outside {lo}-{hi} pixels per side",
                                 value, {"error": {}})]
            return []
        return [_literal(["image_size"], value, tuple(PRESETS))]
    if not isinstance(value, dict):
        return [_err(["image_size"], "model_attributes_type",
                     "Input should be a valid dictionary or object to extract fields from", value)]
    errors: list[dict[str, Any]] = []
    lo, hi = spec.side_range or _ANY_SIDE
    for side in ("width", "height"):
        loc: list[str | int] = ["image_size", side]
        if side not in value:
            errors.append(_err(loc, "missing", "Field required", value))
        elif not _type_ok("int", value[side]):
            errors.append(_err(loc, "int_type", "Input should be a valid integer", value[side]))
        else:
            errors.extend(_range(loc, float(value[side]), lo, hi))
    return errors


def validate(spec: ModelSpec, inputs: Mapping[str, Any], extra_inputs: str = "ignore") -> list[dict[str, Any]]:
    """The 422 ``detail`` items for ``inputs`` (empty when the input is acceptable).

    ``extra_inputs``: what a catalogued model does with an input name it does not declare: "ignore" it
    (pydantic's default, what fal's schemas suggest) or "forbid" it (an ``extra_forbidden`` item)."""
    errors: list[dict[str, Any]] = []
    prompt = inputs.get("prompt")
    if "prompt" not in inputs:
        errors.append(_err(["prompt"], "missing", "Field required", dict(inputs)))
    elif not isinstance(prompt, str):
        errors.append(_err(["prompt"], "string_type", "Input should be a valid string", prompt))
    elif not prompt.strip():
        errors.append(_err(["prompt"], "string_too_short", "String should have at least 1 character",
                           prompt, {"min_length": 1}))
    if not spec.known:
        return errors  # a pass-through id: fal's own validation is unknown here
    for p in spec.params:
        if p.name in inputs:
            errors.extend(_check_param(p, inputs[p.name]))
    if "num_images" in inputs:
        n = inputs["num_images"]
        if spec.max_images is None:
            errors.append(_err(["num_images"], "extra_forbidden",
                               f"Extra inputs are not permitted: {spec.id} makes one image per request", n))
        elif not _type_ok("int", n):
            errors.append(_err(["num_images"], "int_type", "Input should be a valid integer", n))
        else:
            errors.extend(_range(["num_images"], float(n), 1, spec.max_images))
    if spec.size_field == "aspect_ratio" and "aspect_ratio" in inputs:
        ratio = inputs["aspect_ratio"]
        if ratio not in spec.aspect_ratios:
            errors.append(_literal(["aspect_ratio"], ratio, spec.aspect_ratios))
    if spec.size_field == "image_size" and "image_size" in inputs and inputs["image_size"] is not None:
        errors.extend(_check_image_size(spec, inputs["image_size"]))
    if extra_inputs == "forbid" and spec.strict:
        declared = set(spec.input_names())
        errors.extend(_err([name], "extra_forbidden", "Extra inputs are not permitted", value)
                      for name, value in inputs.items() if name not in declared and name != "num_images")
    return errors


def detail(errors: list[dict[str, Any]], style: str) -> Any:
    """A 422's ``detail``: the error items, or (``style="string"``, as some apps answer) one plain message."""
    if style != "string" or not errors:
        return errors
    first = errors[0]
    where = ".".join(str(x) for x in first.get("loc", [])[1:])
    return f"{where}: {first.get('msg', 'invalid input')}" if where else str(first.get("msg", "invalid input"))


def content_policy_error(prompt: Any, words: tuple[str, ...]) -> list[dict[str, Any]]:
    """A content-policy 422 ``detail`` when the prompt contains a trigger word."""
    if not isinstance(prompt, str):
        return []
    low = prompt.lower()
    for word in words:
        if word and word.lower() in low:
            return [{
                "loc": ["body", "prompt"],
                "msg": "The content could not be processed because it contained material flagged by a "
                       "content checker.",
                "type": "content_policy_violation",
                "url": "https://docs.fal.ai/errors#content_policy_violation",
                "ctx": {"extra_info": "prompt flagged"},
                "input": prompt,
            }]
    return []
