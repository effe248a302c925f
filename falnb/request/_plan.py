"""Turn ``generate(prompt, model=..., n=..., size=..., seed=..., **params)`` into fal requests.

Everything is checked against the catalog here, before anything is sent: a mistake costs
nothing.  ``n`` is always honoured (LiteLLM drops it for Recraft and Bria): ``num_images``
where the model has it, several requests where it has none or ``n`` is above its limit.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .._exceptions import ParameterError, SizeError
from ..catalog._catalog import Catalog, ModelSpec, Param, default_catalog
from ..catalog._sizes import dims_of_input, map_size, nearest_ratio, parse_size

__all__ = ["MAX_N", "FalRequest", "Plan", "build_plan", "request_key"]

#: a guard against an accidental n=1000: batches go through generate_many
MAX_N = 64
#: OpenAI-style keywords falnb consumes instead of forwarding to fal
_OPENAI_ONLY = {"response_format", "user", "quality"}


@dataclass(frozen=True)
class FalRequest:
    """One fal queue request: the endpoint, the exact JSON input, what it should produce."""

    model: str
    input: Mapping[str, Any]
    images: int
    width: int | None
    height: int | None
    cost: float | None
    #: the input with the model's output-changing defaults filled in: what the cache hashes
    canonical: Mapping[str, Any] = field(default_factory=dict)
    #: 0 for the first request with this canonical input in a plan, 1 for the next...
    replica: int = 0

    @property
    def key(self) -> str:
        return request_key(self.model, self.canonical, self.replica)


@dataclass(frozen=True)
class Plan:
    """All requests for one ``generate`` call."""

    spec: ModelSpec
    prompt: str
    n: int
    seed: int | None
    requests: tuple[FalRequest, ...]
    headers: Mapping[str, str]
    response_format: str = "url"

    @property
    def cost(self) -> float | None:
        costs = [r.cost for r in self.requests]
        return None if any(c is None for c in costs) else round(sum(c for c in costs if c is not None), 6)


def request_key(model: str, canonical: Mapping[str, Any], replica: int = 0) -> str:
    """A stable hash of the full model id and the canonical input (keys sorted)."""
    doc: dict[str, Any] = {"model": model, "input": canonical}
    if replica:
        doc["replica"] = replica
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_plan(prompt: str, *, model: str, n: int = 1, size: Any = None, seed: int | None = None,
               catalog: Catalog | None = None, extra_headers: Mapping[str, str] | None = None,
               **params: Any) -> Plan:
    spec = (catalog or default_catalog()).resolve(model)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ParameterError("the prompt is empty", model=spec.id, field="prompt")
    if "num_images" in params:
        n = _merge_num_images(n, params.pop("num_images"), spec)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise ParameterError(f"n must be a whole number from 1 to {MAX_N}, not {n!r}", model=spec.id, field="n",
                             hint="For larger batches use falnb.generate_many.")
    response_format = str(params.pop("response_format", None) or "url")
    if response_format not in ("url", "b64_json"):
        raise ParameterError(f"response_format must be 'url' or 'b64_json', not {response_format!r}",
                             model=spec.id, field="response_format")
    for k in _OPENAI_ONLY:
        params.pop(k, None)
    headers = _check_headers(extra_headers, spec)

    user = {**spec.defaults, **params}  # the request's own params win over the alias's
    if seed is not None:
        user["seed"] = seed
    fields = {k: _check_param(spec, k, v) for k, v in user.items()}
    seed_value = fields.get("seed")

    dims: tuple[int, int] | None = None
    size_fields: dict[str, Any] = {}
    if size is not None:
        size_fields, dims = map_size(spec, size)
    # other keywords win over the size mapping (aspect_ratio="21:9" beats size)
    base = {"prompt": prompt, **{k: v for k, v in size_fields.items() if k not in fields}, **fields}
    if dims is None or any(k in fields for k in size_fields):
        dims = dims_of_input(spec, base)

    requests: list[FalRequest] = []
    for part in _split(spec, n, base, seed_value):
        req = _request(spec, base, part, dims)
        # identical inputs (a model with no seed and no num_images) are distinct pictures:
        # number the replicas so each has its own cache entry
        replica = sum(1 for r in requests if r.canonical == req.canonical)
        requests.append(replace(req, replica=replica))
    return Plan(spec=spec, prompt=prompt, n=n, seed=seed_value if isinstance(seed_value, int) else None,
                requests=tuple(requests), headers=headers, response_format=response_format)


def _split(spec: ModelSpec, n: int, base: dict[str, Any], seed: Any) -> list[tuple[int, int | None]]:
    """``(images, seed)`` per request; distinct seeds when a seed (or a fixed default) applies."""
    per = spec.max_images or 1
    counts = [per] * (n // per) + ([n % per] if n % per else [])
    start = seed if isinstance(seed, int) else spec.fixed_default_seed
    out: list[tuple[int, int | None]] = []
    done = 0
    for c in counts:
        out.append((c, None if start is None or (len(counts) == 1 and seed is None) else start + done))
        done += c
    return out


def _request(spec: ModelSpec, base: dict[str, Any], part: tuple[int, int | None],
             dims: tuple[int, int] | None) -> FalRequest:
    count, seed = part
    body = dict(base)
    if spec.max_images is not None:
        body["num_images"] = count
    if seed is not None:
        body["seed"] = seed
    canonical = {**{p.name: p.default for p in spec.params if p.default is not None}, **body}
    if spec.size_field and spec.size_field not in canonical and spec.default_size is not None:
        canonical[spec.size_field] = spec.default_size
    if spec.max_images is not None:
        canonical.setdefault("num_images", 1)
    w, h = dims if dims else (None, None)
    return FalRequest(model=spec.id, input=body, images=count, width=w, height=h,
                      cost=spec.estimate(canonical, count, w, h), canonical=canonical)


def _merge_num_images(n: int, num_images: Any, spec: ModelSpec) -> Any:
    if n not in (1, num_images):
        raise ParameterError(f"n={n} and num_images={num_images!r} disagree; pass only n", model=spec.id,
                             field="num_images")
    return num_images


def _check_headers(headers: Mapping[str, str] | None, spec: ModelSpec) -> dict[str, str]:
    # extra_headers are headers, never body fields (LiteLLM put them, key included, in the JSON)
    out: dict[str, str] = {}
    for k, v in (headers or {}).items():
        if k.lower() == "authorization":
            raise ParameterError("extra_headers must not carry Authorization; pass the key as key=...",
                                 model=spec.id, field="extra_headers")
        out[str(k)] = str(v)
    return out


def _check_param(spec: ModelSpec, name: str, value: Any) -> Any:
    if name == "image_size" and spec.size_field == "image_size" and spec.known:
        return _check_image_size(spec, value)
    if name == "aspect_ratio" and spec.size_field == "aspect_ratio" and spec.known:
        if value not in spec.aspect_ratios:
            raise ParameterError(f"aspect_ratio {value!r} is not allowed for {spec.id}", model=spec.id,
                                 field="aspect_ratio", hint=f"Allowed: {', '.join(spec.aspect_ratios)}; "
                                 f"nearest: {_nearest_hint(value, spec)}.")
        return value
    param = spec.param(name)
    if param is None:
        close = difflib.get_close_matches(name, [*spec.param_names(), "image_size", "aspect_ratio"], n=1,
                                          cutoff=0.8) if spec.known else []
        if close and close[0] != name:
            raise ParameterError(f"unknown parameter {name!r} for {spec.id}; did you mean {close[0]!r}?",
                                 model=spec.id, field=name)
        return value  # forwarded unchanged: fal may know parameters falnb does not
    return _coerce(spec, param, value)


def _nearest_hint(value: Any, spec: ModelSpec) -> str:
    try:
        return nearest_ratio(parse_size(value).aspect, spec.aspect_ratios)
    except SizeError:
        return spec.aspect_ratios[0]


def _check_image_size(spec: ModelSpec, value: Any) -> Any:
    from ..catalog._catalog import PRESETS

    if isinstance(value, str) and value in PRESETS:
        dims = PRESETS[value]
    elif isinstance(value, Mapping) and set(value) == {"width", "height"}:
        dims = parse_size(dict(value)).width or 0, parse_size(dict(value)).height or 0
        value = {"width": dims[0], "height": dims[1]}
    else:
        raise ParameterError(f"image_size {value!r} is not a preset or {{'width': W, 'height': H}}",
                             model=spec.id, field="image_size", hint="Presets: " + ", ".join(PRESETS) + ".")
    if spec.side_range and not all(spec.side_range[0] <= d <= spec.side_range[1] for d in dims):
        raise ParameterError(f"image_size {value!r} is out of range for {spec.id}: each side must be "
                             f"{spec.side_range[0]} to {spec.side_range[1]} pixels", model=spec.id,
                             field="image_size")
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
        if p.choices is not None and value not in p.choices:
            import re

            if not (p.pattern and re.fullmatch(p.pattern, value)):
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
    return list(value) if isinstance(value, tuple) else value
