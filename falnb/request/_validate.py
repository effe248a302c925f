"""A request body checked against fal's JSON Schema of the endpoint, before anything is sent.

fal's documents say OpenAPI 3.0 but are JSON Schema 2020-12 in practice (numeric ``exclusiveMinimum``):
an OAS-3.0 / draft-4 validator rejects them, so this uses ``jsonschema``'s Draft 2020-12 validator.  It is
imported on the first validation, never at ``import falnb``.  The per-input checks of ``_params`` run
first (they coerce ``2`` to ``"2"`` where the schema wants a string, and speak about sizes); this catches
the rest (required inputs, lengths, nested shapes, bounds of inputs falnb has no code for) with the same
short message: the field, what is allowed, a did-you-mean.  Schemas allow extra keys (fal's do): names
are checked by ``_params``, so an input sent deliberately (``allow_unknown``) is never refused here.
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Mapping
from typing import Any

from .._exceptions import ParameterError
from ..catalog._catalog import ModelSpec
from ._jsonschema import import_jsonschema

__all__ = ["validate_input"]

#: compiled validators by schema (the schema object is kept alive with it, so its id is never reused)
_VALIDATORS: dict[int, tuple[Mapping[str, Any], Any]] = {}
_SHORT = reprlib.Repr()
_SHORT.maxstring = 60
_SHORT.maxother = 60


def validate_input(spec: ModelSpec, body: Mapping[str, Any], deliberate: frozenset[str] = frozenset()) -> None:
    """A :class:`ParameterError` for the first thing fal's schema of ``spec`` refuses in ``body``."""
    if spec.schema is None:
        return
    import_jsonschema()
    from jsonschema.exceptions import best_match

    errors = [e for e in _validator(spec.schema).iter_errors(dict(body))
              if not (e.path and str(e.path[0]) in deliberate)]
    error = best_match(errors)
    if error is not None:
        raise _message(spec, body, error)


def _validator(schema: Mapping[str, Any]) -> Any:
    entry = _VALIDATORS.get(id(schema))
    if entry is None or entry[0] is not schema:
        from jsonschema import Draft202012Validator

        if len(_VALIDATORS) > 256:  # bounded: schemas of endpoints used long ago are dropped
            _VALIDATORS.clear()
        entry = (schema, Draft202012Validator(dict(schema)))
        _VALIDATORS[id(schema)] = entry
    return entry[1]


def _message(spec: ModelSpec, body: Mapping[str, Any], error: Any) -> ParameterError:
    kind, expected, value = error.validator, error.validator_value, error.instance
    path = [str(p) for p in error.absolute_path]
    if kind == "required":
        missing = next((r for r in expected if isinstance(value, Mapping) and r not in value), "?")
        field = ".".join([*path, missing])
        return ParameterError(f"{spec.id} needs {field!r}", model=spec.id, field=field,
                              hint=f"Pass {field}=... (see falnb.form(model={spec.id!r}) for its inputs).",
                              hints={"cell": f"Add -p {field}=... (%falform -m {spec.id} shows its inputs)."})
    field = ".".join(path) or "input"
    top = path[0] if path else field
    why = _why(kind, expected, value) or _one_line(error.message)
    shown = _SHORT.repr(body.get(top)) if top in body else _SHORT.repr(value)
    hint = _hint(spec, top, kind, expected, value)
    return ParameterError(f"{field}={shown} is refused by fal's schema of {spec.id}: {why}", model=spec.id,
                          field=top, hint=hint)


def _why(kind: str, expected: Any, value: Any) -> str | None:
    words = {"minimum": "below the minimum of", "maximum": "above the maximum of",
             "exclusiveMinimum": "must be more than", "exclusiveMaximum": "must be less than",
             "minLength": "shorter than the minimum length of", "maxLength": "longer than the maximum length of",
             "minItems": "fewer items than the minimum of", "maxItems": "more items than the maximum of"}
    if kind in words:
        return f"{words[kind]} {expected}"
    if kind == "enum":
        return "not one of the allowed values"
    if kind == "type":
        return f"not of type {expected if isinstance(expected, str) else ' or '.join(map(str, expected))}"
    if kind == "pattern":
        return f"does not match {expected!r}"
    if kind == "const":
        return f"must be {expected!r}"
    return None


def _hint(spec: ModelSpec, name: str, kind: str, expected: Any, value: Any) -> str:
    if kind == "enum" and isinstance(expected, list):
        shown = ", ".join(repr(c) for c in expected[:12]) + (f" (+{len(expected) - 12} more)" if len(expected) > 12
                                                             else "")
        close = difflib.get_close_matches(str(value), [str(c) for c in expected], n=1, cutoff=0.6)
        return f"Allowed: {shown}." + (f" Did you mean {close[0]!r}?" if close else "")
    param = spec.param(name)
    if param is not None:
        return f"{name} must be {param.describe_allowed()}."
    return f"See falnb.form(model={spec.id!r}) for what {spec.id} takes."


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= 160 else text[:159] + "…"
