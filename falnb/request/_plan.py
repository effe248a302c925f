"""Turn ``generate(prompt, model=..., n=..., size=..., seed=..., **params)`` into fal requests.

Everything is checked against the catalog here, before anything is sent: a mistake costs
nothing.  ``n`` is always honoured (LiteLLM drops it for Recraft and Bria): ``num_images``
where the model has it, several requests where it has none or ``n`` is above its limit.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .._exceptions import ParameterError
from ..catalog._catalog import Catalog, ModelSpec, default_catalog
from ..catalog._sizes import dims_of_input, map_size
from ..catalog._spec import DeprecatedModelWarning
from ._params import ALLOW_HINT, Deliberate, check_param
from ._picture_plan import PictureValue, check_prompt, has_pictures, output_dims, take_pictures, tokens
from ._pictures import Picture
from ._validate import validate_input

__all__ = ["MAX_N", "FalRequest", "Plan", "build_plan", "has_pictures", "request_key"]

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
    #: the input pictures by field: ``input`` (and the cache key) holds their tokens (content hashes); the
    #: engine uploads them and sends their URLs
    pictures: Mapping[str, PictureValue] = field(default_factory=dict)

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
    #: the pictures the requests are made from, in field order (empty for text-to-image)
    pictures: tuple[Picture, ...] = ()

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
               allow_unknown: bool | Collection[str] = False, **params: Any) -> Plan:
    """The requests for one call, every input checked against the catalog (nothing is sent).

    ``allow_unknown``: send input names the catalog does not list for this model as they are (True,
    or the names meant); otherwise such a name is a ParameterError for a catalogued model.
    """
    spec = (catalog or default_catalog()).resolve(model)
    deliberate = Deliberate(allow_unknown, spec.id)
    _check_model(spec, deliberate)
    sent_prompt = check_prompt(spec, prompt, deliberate)
    pictures = take_pictures(spec, params)  # read and checked here: a bad picture costs nothing
    if "num_images" in params:
        n = _merge_num_images(n, params.pop("num_images"), spec)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        # the same prompt repeated in generate_many is one same request: copies of one picture, not more
        raise ParameterError(f"n must be a whole number from 1 to {MAX_N}, not {n!r}", model=spec.id, field="n",
                             hint=f"For more pictures, call again with the next seeds (seed=0, then seed={MAX_N}); "
                                  "for many prompts, falnb.generate_many.",
                             hints={"cell": f"For more pictures, run it again with the next seeds (--seed 0, then "
                                            f"--seed {MAX_N}); for many prompts, --batch VAR."})
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
    # a model without a seed input (Recraft) is not sent one; the seed still tells pictures apart in the cache
    variation = None
    if spec.strict and spec.param("seed") is None and "seed" in user and not deliberate("seed"):
        variation = _variation_seed(spec, user.pop("seed"))
    own = {**params, **({"seed": seed} if seed is not None else {})}
    fields = {k: check_param(spec, k, v, deliberate, _origin(spec, k, own)) for k, v in user.items()}
    seed_value = fields.get("seed", variation)

    dims: tuple[int, int] | None = None
    size_fields: dict[str, Any] = {}
    if size is not None:
        size_fields, dims = map_size(spec, size)
    # other keywords win over the size mapping (aspect_ratio="21:9" beats size)
    base = {**({"prompt": sent_prompt} if sent_prompt is not None else {}), **tokens(pictures),
            **{k: v for k, v in size_fields.items() if k not in fields}, **fields}
    if dims is None or any(k in fields for k in size_fields):
        dims = dims_of_input(spec, base) or output_dims(spec, pictures, base)
    _check_utf8(spec, base)

    requests: list[FalRequest] = []
    for part in _split(spec, n, base, seed_value):
        req = replace(_request(spec, base, part, dims, send_seed=variation is None), pictures=pictures)
        # identical inputs (a model with no seed and no num_images) are distinct pictures:
        # number the replicas so each has its own cache entry
        replica = sum(1 for r in requests if r.canonical == req.canonical)
        requests.append(replace(req, replica=replica))
    meant = frozenset(k for k in base if k not in spec.input_names())
    for req in requests[:1] + [r for r in requests[1:] if r.images != requests[0].images]:
        validate_input(spec, req.input, meant)  # requests differ only by their seed and count
    if spec.status == "deprecated":
        warnings.warn(DeprecatedModelWarning(f"fal lists {spec.id} as deprecated: it still runs and bills today, "
                                             "and may stop"), stacklevel=3)
    return Plan(spec=spec, prompt=sent_prompt or "", n=n,
                seed=seed_value if isinstance(seed_value, int) and variation is None else None,
                requests=tuple(requests), headers=headers, response_format=response_format,
                pictures=tuple(p for v in pictures.values() for p in (v if isinstance(v, tuple) else (v,))))


def _check_model(spec: ModelSpec, deliberate: Deliberate) -> None:
    """Refuse before anything is paid: a model falnb cannot check, or one that makes no pictures."""
    if spec.unchecked and spec.variant_of is None and not deliberate.everything:
        raise ParameterError(f"{spec.id} cannot be validated: {spec.no_schema}", model=spec.id, field="model",
                             hint=f"To send it unchecked as it is: {ALLOW_HINT}.")
    if not spec.makes_pictures:
        what = spec.category or f"its output is {spec.output_key!r}"
        raise ParameterError(f"{spec.id} does not make pictures ({what}); falnb generates images", model=spec.id,
                             field="model", hint="Use fal's own client (fal-client) for video, audio or 3D.")


def _check_utf8(spec: ModelSpec, body: Mapping[str, Any]) -> None:
    """Refuse text that cannot travel as UTF-8: a lone surrogate (bytes read with ``surrogateescape``)
    would otherwise surface later as a raw UnicodeEncodeError, from the cache key or from the JSON body."""
    for name, value in body.items():
        try:
            json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start:exc.end]
            raise ParameterError(f"{name} holds {bad!r}, a lone surrogate: not text that can be sent",
                                 model=spec.id, field=name,
                                 hint="Usually from bytes decoded with errors='surrogateescape'; decode them "
                                      "with their real encoding, or remove it.") from None


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
             dims: tuple[int, int] | None, *, send_seed: bool = True) -> FalRequest:
    count, seed = part
    body = dict(base)
    if spec.max_images is not None:
        body["num_images"] = count
    if seed is not None and send_seed:
        body["seed"] = seed
    canonical = {**{p.name: p.default for p in spec.params if p.default is not None}, **body}
    if seed is not None and not send_seed:
        canonical["seed"] = seed
    if spec.size_field and spec.size_field not in canonical and spec.default_size is not None:
        canonical[spec.size_field] = spec.default_size
    if spec.max_images is not None:
        canonical.setdefault("num_images", 1)
    w, h = dims if dims else (None, None)
    return FalRequest(model=spec.id, input=body, images=count, width=w, height=h,
                      cost=spec.estimate(canonical, count, w, h), canonical=canonical)


def _variation_seed(spec: ModelSpec, seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParameterError(f"seed={seed!r} is not a whole number of 0 or more", model=spec.id, field="seed")
    return seed


def _origin(spec: ModelSpec, name: str, params: Mapping[str, Any]) -> str:
    """Where an input came from, when not from the call itself (a LiteLLM proxy alias's defaults)."""
    return f"the LiteLLM config of {spec.alias!r}" if name in spec.defaults and name not in params else ""


def _merge_num_images(n: int, num_images: Any, spec: ModelSpec) -> Any:
    if n not in (1, num_images):
        raise ParameterError(f"n={n} and num_images={num_images!r} disagree; pass only n", model=spec.id,
                             field="num_images")
    return num_images


def _check_headers(headers: Mapping[str, str] | None, spec: ModelSpec) -> dict[str, str]:
    # extra_headers are headers, never body fields (LiteLLM put them, key included, in the JSON)
    if headers is not None and not isinstance(headers, Mapping):
        raise ParameterError(f"extra_headers must be a mapping of header names to values, not a "
                             f"{type(headers).__name__}", model=spec.id, field="extra_headers")
    out: dict[str, str] = {}
    for k, v in (headers or {}).items():
        if k.lower() == "authorization":
            raise ParameterError("extra_headers must not carry Authorization; pass the key as key=...",
                                 model=spec.id, field="extra_headers")
        out[str(k)] = str(v)
    return out
