"""fal's per-endpoint OpenAPI document, read: the endpoint's input and output as self-contained JSON Schemas.

fal serves one document per endpoint (``GET /v1/models?endpoint_id=...&expand=openapi-3.0``, or
``https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=...``): OpenAPI "3.0.4" in name, JSON Schema
2020-12 in practice (numeric ``exclusiveMinimum``).  The input is the schema the submit's request body
refers to (``paths["/<id>"].post``), the output the one the result's 200 refers to
(``paths["/<id>/requests/{request_id}"].get``); documents that differ are read by the ``*Input`` /
``*Output`` names.  ``$ref`` into ``components.schemas`` become ``$defs`` of each schema, so a
validator needs nothing else.  Pure functions: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EndpointDoc", "SchemaError", "deref", "read_openapi"]

_COMPONENTS = "#/components/schemas/"
_DEFS = "#/$defs/"


class SchemaError(ValueError):
    """A document that is not a usable OpenAPI document for the endpoint (cut short, or of another shape)."""


@dataclass(frozen=True)
class EndpointDoc:
    """One endpoint's document, read."""

    endpoint_id: str
    #: the input's JSON Schema, with ``$defs``
    input: Mapping[str, Any]
    #: the output's JSON Schema, with ``$defs`` (None when the document names none)
    output: Mapping[str, Any] | None
    #: ``info["x-fal-metadata"]`` (endpointId, category, thumbnailUrl, playgroundUrl, documentationUrl)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: the endpoint's ``metadata`` in fal's model list (display_name, category, status...), which falnb keeps
    #: beside the document as ``info["x-falnb-model"]`` when it fetched both at once
    listing: Mapping[str, Any] = field(default_factory=dict)
    #: the document as fal served it
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def category(self) -> str | None:
        value = self.metadata.get("category") or self.listing.get("category")
        return value if isinstance(value, str) and value else None

    @property
    def status(self) -> str | None:
        value = self.listing.get("status")
        return value if isinstance(value, str) and value else None

    @property
    def title(self) -> str | None:
        value = self.listing.get("display_name")
        return value if isinstance(value, str) and value else None


def read_openapi(doc: Any, endpoint_id: str) -> EndpointDoc:
    """The input and output schemas of ``endpoint_id`` in ``doc``; :class:`SchemaError` when it has none."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("components"), Mapping):
        raise SchemaError(f"the OpenAPI document of {endpoint_id} is not one (no components)")
    schemas = doc["components"].get("schemas")
    if not isinstance(schemas, Mapping) or not schemas:
        raise SchemaError(f"the OpenAPI document of {endpoint_id} has no schemas")
    paths = _mapping(doc.get("paths"))
    info = _mapping(doc.get("info"))
    meta = _mapping(info.get("x-fal-metadata"))
    in_name = _ref_name(_dig(paths, f"/{endpoint_id}", "post", "requestBody", "content", "application/json",
                             "schema")) or _by_suffix(schemas, "Input")
    out_name = _ref_name(_dig(paths, f"/{endpoint_id}/requests/{{request_id}}", "get", "responses", "200", "content",
                              "application/json", "schema")) or _by_suffix(schemas, "Output")
    if in_name is None or not isinstance(schemas.get(in_name), Mapping):
        raise SchemaError(f"the OpenAPI document of {endpoint_id} names no input schema")
    out = schemas.get(out_name) if out_name is not None else None
    return EndpointDoc(endpoint_id=endpoint_id, input=_self_contained(schemas[in_name], schemas),
                       output=_self_contained(out, schemas) if isinstance(out, Mapping) else None,
                       metadata=dict(meta), listing=dict(_mapping(info.get("x-falnb-model"))), raw=doc)


def deref(schema: Any, root: Mapping[str, Any]) -> Mapping[str, Any]:
    """``schema`` with a ``$ref`` into ``root["$defs"]`` followed (its own keys win); {} if it is not one."""
    if not isinstance(schema, Mapping):
        return {}
    seen = 0
    while isinstance(schema.get("$ref"), str) and seen < 16:  # (a ref to a ref: bounded, cycles included)
        ref = schema["$ref"]
        target = root.get("$defs", {}).get(ref[len(_DEFS):]) if ref.startswith(_DEFS) else None
        if not isinstance(target, Mapping):
            return {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        seen += 1
    out: Mapping[str, Any] = schema
    return out


def _mapping(node: Any) -> Mapping[str, Any]:
    return node if isinstance(node, Mapping) else {}


def _dig(node: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _ref_name(schema: Any) -> str | None:
    ref = schema.get("$ref") if isinstance(schema, Mapping) else None
    return ref[len(_COMPONENTS):] if isinstance(ref, str) and ref.startswith(_COMPONENTS) else None


def _by_suffix(schemas: Mapping[str, Any], suffix: str) -> str | None:
    names = [n for n in schemas if isinstance(n, str) and n.endswith(suffix) and n != "QueueStatus"]
    return names[0] if len(names) == 1 else None


def _self_contained(schema: Mapping[str, Any], schemas: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` with its refs pointing at ``$defs``, and every schema it reaches (transitively) there."""
    defs: dict[str, Any] = {}
    pending = [*_refs(schema)]
    while pending:
        name = pending.pop()
        if name in defs or not isinstance(schemas.get(name), Mapping):
            continue
        defs[name] = _rewrite(schemas[name])
        pending.extend(_refs(schemas[name]))
    out: dict[str, Any] = _rewrite(schema)
    for name, sub in dict(out.pop("$defs", {}) or {}).items():  # a schema that carries its own (fal-js's form)
        defs.setdefault(name, sub)
    if defs:
        out["$defs"] = defs
    return out


def _refs(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, Mapping):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_COMPONENTS):
            found.append(ref[len(_COMPONENTS):])
        for value in node.values():
            found += _refs(value)
    elif isinstance(node, list):
        for value in node:
            found += _refs(value)
    return found


def _rewrite(node: Any) -> Any:
    if isinstance(node, Mapping):
        out = {k: _rewrite(v) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith(_COMPONENTS):
            out["$ref"] = _DEFS + ref[len(_COMPONENTS):]
        return out
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node
