"""An endpoint's :class:`ModelSpec` from its schema (and falnb's overlay, for a seed model): one code path for the
ten models falnb ships and for any endpoint fetched from fal.

From the input schema: which field carries the picture's shape (``image_size``: a ``{width, height}``
object or a preset; ``aspect_ratio``: an enum of ratios), its presets, default and pixel bounds; the
per-request image limit (``num_images``' maximum); every other input as a :class:`Param` in
``x-fal-order-properties`` order (enums, bounds, defaults, picture inputs).  From the output schema:
``images[]`` or a single ``image``, whether the pictures carry width and height, whether the seed is
echoed.  Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._openapi import EndpointDoc, deref
from ._overlays import Overlay
from ._spec import MAX_SIDE, ModelSpec, Param, ParamType, Price

__all__ = ["is_file_input", "spec_from_doc"]

_RATIO = re.compile(r"^\d+(?:\.\d+)?:\d+(?:\.\d+)?$")
_TYPES: dict[str, ParamType] = {"integer": "int", "number": "float", "boolean": "bool", "string": "str",
                                "array": "list", "object": "object"}
#: picture inputs by name, for documents without fal's ``x-fal-file-input`` mark
_FILE_NAME = re.compile(r"^(?:.+_)?(?:image|mask)_urls?$")
#: the per-request image limit of a ``num_images`` without a maximum
_DEFAULT_MAX_IMAGES = 4


def spec_from_doc(doc: EndpointDoc, overlay: Overlay | None = None, *, title: str | None = None,
                  status: str | None = None, price: Price | None = None, source: str = "fal") -> ModelSpec:
    """The :class:`ModelSpec` of ``doc``'s endpoint; ``overlay`` adds what the schema cannot say."""
    ov = overlay or Overlay()
    root = doc.input
    props, required, order = _object(root, root)
    size_field = "image_size" if "image_size" in props else "aspect_ratio" if "aspect_ratio" in props else None
    kw: dict[str, Any] = {}
    if size_field == "image_size":
        kw.update(_image_size(props["image_size"], root, ov))
    elif size_field == "aspect_ratio":
        kw.update(_aspect_ratio(props["aspect_ratio"], root))
    else:
        kw.update(default_size=None, size_presets=())
    skip = {"prompt", "num_images", *([size_field] if size_field else [])}
    params = tuple(_param(name, props[name], root, ov.params.get(name, {})) for name in order if name not in skip)
    num = deref(props.get("num_images"), root)
    max_images = (int(num["maximum"]) if isinstance(num.get("maximum"), (int, float)) else _DEFAULT_MAX_IMAGES) \
        if "num_images" in props else None
    seed = next((p for p in params if p.name == "seed"), None)
    fmt = next((p.default for p in params if p.name == "output_format" and isinstance(p.default, str)), None)
    output_key, has_dims, has_seed = _output(doc.output)
    sides = kw.pop("sides", None)
    return ModelSpec(
        id=doc.endpoint_id, title=ov.title or title or doc.title or doc.endpoint_id, size_field=size_field,  # type: ignore[arg-type]
        side_range=ov.side_range or sides, max_images=max_images, output_key=output_key,
        output_has_dims=has_dims, output_has_seed=has_seed,
        fixed_default_seed=seed.default if seed is not None and isinstance(seed.default, int) else None,
        megapixels=ov.megapixels or 1.0, output_format_default=ov.output_format or fmt or "jpeg", params=params,
        price=ov.price or price, aliases=ov.aliases, schema=root, required=tuple(required),
        takes_prompt="prompt" in props, category=doc.category, status=status or doc.status, source=source, **kw)


def is_file_input(name: str, schema: Mapping[str, Any]) -> bool:
    """Whether input ``name`` takes pictures: fal's ``x-fal-file-input`` mark (on it, a branch, or its items),
    else its name (``image_url``, ``image_urls``, ``mask_url``, ``*_image_url``)."""
    def marked(s: Any) -> bool:
        if not isinstance(s, Mapping):
            return False
        if s.get("x-fal-file-input") is True:
            return True
        return any(marked(b) for b in [s.get("items"), *(s.get("anyOf") or []), *(s.get("oneOf") or [])])

    return marked(schema) or bool(_FILE_NAME.match(name))


def _object(schema: Mapping[str, Any], root: Mapping[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """(properties, required, display order) of an object schema, ``allOf`` parts merged."""
    props: dict[str, Any] = {}
    required: list[str] = []
    order: list[str] = []
    for part in [schema, *(schema.get("allOf") or [])]:
        part = deref(part, root)
        if isinstance(part.get("properties"), Mapping):
            props.update(part["properties"])
        required += [r for r in part.get("required") or [] if isinstance(r, str) and r not in required]
        order += [o for o in part.get("x-fal-order-properties") or [] if isinstance(o, str) and o not in order]
        if part is not schema and part.get("allOf"):
            more = _object(part, root)
            props.update(more[0])
            required += [r for r in more[1] if r not in required]
            order += [o for o in more[2] if o not in order]
    order = [o for o in order if o in props] + [p for p in props if p not in order]
    return props, required, order


def _branches(schema: Any, root: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], bool]:
    """The alternatives of a property (``anyOf``/``oneOf``, refs followed), and whether null is one."""
    s = deref(schema, root)
    alts = s.get("anyOf") or s.get("oneOf")
    if not isinstance(alts, list):
        return [s], False
    out: list[Mapping[str, Any]] = []
    nullable = False
    for alt in alts:
        a = deref(alt, root)
        if a.get("type") == "null":
            nullable = True
        else:
            out.append(a)
    return out, nullable


def _image_size(schema: Any, root: Mapping[str, Any], ov: Overlay) -> dict[str, Any]:
    branches, _ = _branches(schema, root)
    presets: list[str] = []
    sides: tuple[int, int] | None = None
    for b in branches:
        presets += [v for v in b.get("enum") or [] if isinstance(v, str) and v not in presets]
        if b.get("type") == "object" or "properties" in b:
            w = deref((b.get("properties") or {}).get("width"), root)
            lo = w.get("minimum", (w.get("exclusiveMinimum", 0) or 0) + 1)
            hi = w.get("maximum", MAX_SIDE)
            if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and (lo, hi) != (1, MAX_SIDE):
                sides = (max(1, int(lo)), int(hi))
    default = deref(schema, root).get("default")
    if isinstance(default, Mapping) and all(isinstance(default.get(k), int) for k in ("width", "height")):
        default = f"{default['width']}x{default['height']}"
    return {"default_size": default if isinstance(default, str) else None, "size_presets": tuple(presets),
            "sides": sides}


def _aspect_ratio(schema: Any, root: Mapping[str, Any]) -> dict[str, Any]:
    branches, _ = _branches(schema, root)
    values = [v for b in branches for v in b.get("enum") or [] if isinstance(v, str)]
    default = deref(schema, root).get("default")
    return {"aspect_ratios": tuple(v for v in values if _RATIO.match(v)),
            "size_presets": tuple(v for v in values if not _RATIO.match(v)),
            "default_size": default if isinstance(default, str) else None}


def _param(name: str, schema: Any, root: Mapping[str, Any], extra: Mapping[str, Any]) -> Param:
    outer = deref(schema, root)
    branches, _ = _branches(schema, root)
    choices: tuple[Any, ...] | None = None
    pattern: str | None = None
    if len(branches) == 1:
        one = branches[0]
        kind = _kind(one)
        if isinstance(one.get("enum"), list):
            choices = tuple(one["enum"])
    elif all(_kind(b) == "str" for b in branches) and any("enum" in b for b in branches):
        kind = "str"  # a fixed set plus what a pattern allows (Recraft's sub-styles)
        choices = tuple(v for b in branches for v in b.get("enum") or [])
        pattern = next((str(b["pattern"]).strip("^$") for b in branches if "pattern" in b), None)
    else:
        kind = "any"
    one = branches[0] if len(branches) == 1 else {}
    default = outer.get("default")
    if kind == "float" and isinstance(default, int) and not isinstance(default, bool):
        default = float(default)  # fal writes 5 for 5.0; the cache key must not depend on it
    if choices and isinstance(default, (int, float)) and not isinstance(default, bool) and str(default) in choices:
        default = str(default)  # an enum of strings with a number for default (fal's quirk): the value fal means
    fields: dict[str, Any] = {
        "default": default, "choices": choices, "pattern": pattern,
        "minimum": _bound(one.get("minimum", one.get("exclusiveMinimum")), kind),
        "maximum": _bound(one.get("maximum", one.get("exclusiveMaximum")), kind),
        "help": _first_sentence(str(outer.get("description") or one.get("description") or "")),
        "file_input": is_file_input(name, schema if isinstance(schema, Mapping) else {}),
    }
    fields.update(extra)
    return Param(name, kind, **fields)


def _bound(value: Any, kind: ParamType) -> float | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return float(value) if kind == "float" else value


def _kind(schema: Mapping[str, Any]) -> ParamType:
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    if isinstance(t, str) and t in _TYPES:
        return _TYPES[t]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        kinds = {type(v) for v in enum}
        return "str" if kinds == {str} else "int" if kinds == {int} else "float" if kinds <= {int, float} else "any"
    if "properties" in schema:
        return "object"
    return "any"


def _output(schema: Mapping[str, Any] | None) -> tuple[str, bool, bool]:
    """(the key the pictures come under, whether they carry width/height, whether the seed is echoed)."""
    if schema is None:
        return "images", True, True
    props, _, _ = _object(schema, schema)
    has_seed = "seed" in props
    if "images" in props:
        item = deref(deref(props["images"], schema).get("items"), schema)
        return "images", _has_dims(item, schema), has_seed
    if "image" in props:
        return "image", _has_dims(deref(props["image"], schema), schema), has_seed
    media = next((k for k in ("video", "audio", "audio_file", "mesh", "model_mesh") if k in props), None)
    return media or (next(iter(props), "images")), False, has_seed


def _has_dims(item: Mapping[str, Any], root: Mapping[str, Any]) -> bool:
    props, _, _ = _object(item, root)
    return "width" in props and "height" in props


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    cut = text.find(". ")
    text = text if cut < 0 else text[:cut + 1]
    return text if len(text) <= 160 else text[:159] + "…"
