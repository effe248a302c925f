"""The model catalog: resolves a name (alias, fal id, LiteLLM route, proxy alias) to a :class:`ModelSpec`.

The ten seed models (``_models``) come from OpenAPI snapshots in fal's own format (``schemas/*.json``) plus
a small overlay each (``_overlays``).  Any other fal endpoint id is described by fal's schema of it when the
catalog has a :class:`~falnb.catalog._store.SchemaStore` (``Catalog.using(store)``: the Client wires fal's
platform API in as the store's ``fetch``), through the same code (``_derive.spec_from_doc``) as the seed
models.  Without a schema it resolves to a pass-through spec with generic defaults (``no_schema`` says why).

Adding an endpoint to what falnb ships (the image-input work, say): put fal's document for it in
``schemas/<owner>--<app>--<path>.json`` (``info["x-falnb-source"]`` says where its facts come from: fal's
``openapi.json``, fal-js's types...), add an :class:`~falnb.catalog._overlays.Overlay` (aliases, title,
price rule, limits the schema states only in prose) to ``SEED_OVERLAYS``; nothing else changes.
The emulator and the request builder both read this module; nothing here does I/O except the store's
files and :func:`load_litellm_config`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .._exceptions import ConfigError, UnknownModelError
from ._derive import spec_from_doc
from ._image_models import IMAGE_MODELS
from ._models import SEED_MODELS
from ._prices import PriceStore
from ._spec import MAX_SIDE, MEGAPIXEL, PRESETS, ModelSpec, Param, Price
from ._store import Lookup, SchemaStore

__all__ = [
    "IMAGE_MODELS",
    "MAX_SIDE",
    "MEGAPIXEL",
    "PRESETS",
    "SEED_MODELS",
    "Catalog",
    "ModelSpec",
    "Param",
    "Price",
    "default_catalog",
    "load_litellm_config",
]

# a "." or ".." segment would move the request to another URL (httpx resolves dot segments): never an id
_ID_RE = re.compile(r"^(?!(?:.*/)?\.{1,2}(?:/|$))"
                    r"(?:workflows/|comfy/)?[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$")
_LITELLM_PREFIX = "fal_ai/"
#: LiteLLM's short spellings that leave out the owner
_LITELLM_SHORT = {"flux/schnell": "fal-ai/flux/schnell"}


class Catalog:
    """Resolves a name (alias, fal id, ``fal_ai/...`` route, proxy alias) to a :class:`ModelSpec`."""

    def __init__(self, models: tuple[ModelSpec, ...] = SEED_MODELS,
                 image_models: tuple[ModelSpec, ...] = IMAGE_MODELS, schemas: SchemaStore | None = None,
                 prices: PriceStore | None = None) -> None:
        self._text_ids = [m.id for m in models]
        self._by_id: dict[str, ModelSpec] = {m.id: m for m in (*models, *image_models)}
        self._aliases: dict[str, ModelSpec] = {}
        self._versions = [0]
        #: where endpoints falnb ships nothing for are described (None: they are passed through)
        self.schemas = schemas
        #: fal's unit prices: the estimate of an endpoint described by its fetched schema
        self.prices = prices
        self._derived: dict[str, tuple[Lookup, ModelSpec]] = {}
        for m in (*models, *image_models):
            for a in m.aliases:
                self._aliases[a] = m

    @property
    def version(self) -> int:
        """Bumped whenever an alias is added, so memoised plans never outlive the names they used."""
        return self._versions[0]

    def using(self, schemas: SchemaStore | None, prices: PriceStore | None = None) -> Catalog:
        """This catalog (the same models and aliases, shared) describing other endpoints from ``schemas``,
        their estimates from fal's unit ``prices``."""
        view = Catalog((), (), schemas, prices)
        view._by_id, view._aliases, view._versions = self._by_id, self._aliases, self._versions
        view._text_ids = self._text_ids
        return view

    @property
    def models(self) -> list[ModelSpec]:
        """The text-to-image models (the pictures-in endpoints are :attr:`image_models`)."""
        return [self._by_id[i] for i in self._text_ids]

    @property
    def image_models(self) -> list[ModelSpec]:
        """The endpoints that take pictures: editing, inpainting, upscaling, background removal."""
        return [m for i, m in self._by_id.items() if i not in self._text_ids]

    def aliases(self) -> dict[str, str]:
        """Every alias and the fal id it stands for."""
        return {a: m.id for a, m in self._aliases.items()}

    def add_alias(self, alias: str, model: str, defaults: Mapping[str, Any] | None = None) -> ModelSpec:
        base = self.resolve(model)
        spec = replace(base, aliases=(alias, *base.aliases), defaults={**base.defaults, **(defaults or {})})
        self._aliases[alias] = spec
        self._versions[0] += 1
        return spec

    def resolve(self, name: str) -> ModelSpec:
        if not isinstance(name, str) or not name.strip():
            raise UnknownModelError("model must be a non-empty string such as 'flux-ultra'", model=str(name))
        key = name.strip()
        if key in self._aliases:
            return self._aliases[key]
        if key.lower() in self._aliases:
            return self._aliases[key.lower()]
        if key.startswith(_LITELLM_PREFIX):
            key = key[len(_LITELLM_PREFIX):]
            key = _LITELLM_SHORT.get(key, key)
            if key in self._aliases:
                return self._aliases[key]
        if key in self._by_id:
            return self._by_id[key]
        if _ID_RE.match(key):
            return self._pass_through(key)
        raise UnknownModelError(self._unknown_message(name), model=name)

    def _pass_through(self, model_id: str) -> ModelSpec:
        found = self.schemas.lookup(model_id) if self.schemas is not None else Lookup(None)
        if found.doc is not None:
            memo = self._derived.get(model_id)
            if memo is None or memo[0] is not found or (memo[1].price is None and self.prices is not None):
                unit = self.prices.get(model_id) if self.prices is not None else None
                memo = (found, spec_from_doc(found.doc, source=found.source,
                                             price=unit.as_estimate() if unit is not None else None))
                self._derived[model_id] = memo
            return memo[1]
        # A variant such as fal-ai/imagen4/preview/fast takes its base model's inputs, but
        # its price is not the base's: leave it unknown rather than guess.
        for base in sorted(self._by_id.values(), key=lambda m: -len(m.id)):
            if model_id.startswith(base.id + "/"):
                return replace(base, id=model_id, title=f"{base.title} ({model_id[len(base.id) + 1:]})",
                               aliases=(), price=None, variant_of=base.id)
        return ModelSpec(id=model_id, title=model_id, known=False, max_images=None, default_size=None,
                         output_format_default="jpeg", source="", no_schema=found.reason,
                         unchecked=found.unchecked)

    def _unknown_message(self, name: str) -> str:
        # the text-to-image names first (the usual typo), then the picture-input ones (``kontex``)
        text = {a for a, m in self._aliases.items() if m.id in self._text_ids} | set(self._text_ids)
        names = [n for n in (*self._aliases, *self._by_id) if n in text]
        close = difflib.get_close_matches(name.lower(), names, n=3, cutoff=0.5) or difflib.get_close_matches(
            name.lower(), [*self._aliases, *self._by_id], n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return (f"unknown model {name!r}.{hint} Use an alias ({', '.join(sorted(text - set(self._text_ids)))}) "
                f"or a full fal id such as 'fal-ai/flux/schnell'.")


_DEFAULT: Catalog | None = None


def default_catalog() -> Catalog:
    """The process-wide catalog (seed models plus any aliases loaded since)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Catalog()
    return _DEFAULT


#: keys of a LiteLLM ``litellm_params`` block that configure the call, not the model input (LiteLLM's
#: ``GenericLiteLLMParams``); with ``_LITELLM_CALL_PREFIXES`` they are never sent to fal
_LITELLM_CALL_KEYS = frozenset({
    "model", "api_key", "api_base", "api_version", "timeout", "stream_timeout", "max_retries", "num_retries",
    "rpm", "tpm", "rpd", "tpd", "itpm", "otpm", "organization", "custom_llm_provider", "extra_headers",
    "drop_params", "tags", "model_info", "mock_response", "region_name", "tenant_id", "client_id",
    "client_secret", "budget_duration", "max_budget", "litellm_credential_name", "litellm_trace_id",
    "configurable_clientside_auth_params", "merge_reasoning_content_in_choices", "keepalive_seconds",
    "allow_client_keepalive_override", "allow_legacy_cloud_file_ids", "max_file_size_mb", "bucket_name",
    "tiered_pricing", "daily_reset_time", "provider_affinity_header", "tag_regex", "vector_store_id",
    "output_vector_size", "responses_api_version", "chatgpt_auth_file", "fedramp_uplift_multiplier",
    "thought_signature_in_tool_call_id", "timeout_by_service_tier", "stream_timeout_by_service_tier",
    "default_api_key_rpm_limit", "default_api_key_tpm_limit",
})
_LITELLM_CALL_PREFIXES = ("input_cost_", "output_cost_", "cache_creation_", "cache_read_", "aws_", "azure_",
                          "vertex_", "s3_", "gcs_", "bedrock_", "anthropic_", "openai_", "watsonx_", "milvus_",
                          "valkey_", "token_exchange_", "use_", "auto_router_", "adaptive_router_",
                          "complexity_router_", "quality_router_", "switchyard_", "regional_", "fireworks_",
                          "annotation_cost_", "ocr_cost_", "search_", "citation_cost_", "google_maps_",
                          "explicit_cache_", "cost_per_")


def _litellm_call_key(name: str) -> bool:
    return name in _LITELLM_CALL_KEYS or name.startswith(_LITELLM_CALL_PREFIXES)


def load_litellm_config(path: str, catalog: Catalog | None = None) -> dict[str, str]:
    """Load the ``fal_ai/...`` aliases of a LiteLLM proxy ``config.yaml``.

    Each ``model_list`` entry routed to ``fal_ai/<id>`` becomes an alias; its other
    ``litellm_params`` (LiteLLM's own call settings left out) become that alias's default model
    parameters, checked like the call's own when the alias is used.  Returns ``{alias: fal id}``.
    A file that is not a LiteLLM config (not a mapping, a ``model_list`` that is not a list of
    mappings) is a :class:`ConfigError` and loads nothing.
    """
    import yaml  # only needed here

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read LiteLLM config {path!r}: {_one_line(exc)}") from None
    entries = _model_list(path, {} if data is None else data)
    cat = catalog or default_catalog()
    found: list[tuple[str, str, dict[str, Any]]] = []
    for entry in entries:
        params = entry.get("litellm_params") or {}
        alias = entry.get("model_name")
        if not isinstance(params, Mapping):
            raise ConfigError(f"LiteLLM config {path!r}: litellm_params of {alias!r} is not a mapping")
        route = str(params.get("model", ""))
        if not alias or not route.startswith(_LITELLM_PREFIX):
            continue
        found.append((str(alias), route, {str(k): v for k, v in params.items() if not _litellm_call_key(str(k))}))
    for alias, route, _ in found:  # an unreadable route fails here, before any alias is added
        try:
            cat.resolve(route)
        except UnknownModelError as exc:
            raise ConfigError(f"LiteLLM config {path!r}: {alias!r} routes to {route!r}: {exc.message}") from None
    return {alias: cat.add_alias(alias, route, defaults).id for alias, route, defaults in found}


def _one_line(exc: BaseException) -> str:
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is not None and problem:  # YAML's own message spans several lines
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())


def _model_list(path: str, data: Any) -> list[Mapping[str, Any]]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"LiteLLM config {path!r} is a YAML {type(data).__name__}, not a mapping",
                          hint="Expected 'model_list:' with entries such as "
                               "{model_name: flux, litellm_params: {model: fal_ai/fal-ai/flux/schnell}}.")
    entries = data.get("model_list")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigError(f"LiteLLM config {path!r}: model_list is a {type(entries).__name__}, not a list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"LiteLLM config {path!r}: model_list entry {i} is a {type(entry).__name__}, "
                              "not a mapping (model_name and litellm_params)")
    return entries
