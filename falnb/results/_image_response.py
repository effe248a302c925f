"""LiteLLM's answer to ``image_generation``, given by falnb: :class:`ImageResponse` and its :class:`ImageObject`.

Shaped like LiteLLM's ``litellm.types.utils.ImageResponse`` (OpenAI's ``ImagesResponse`` plus
``_hidden_params``): the same fields, read as attributes (``response.data[0].url``) or as a dict
(``response["data"][0]["url"]``, ``.get``, ``in``, ``model_dump()``), and ``model_dump()`` is accepted by
LiteLLM's own type.  ``response.generation`` is falnb's :class:`~falnb.Generation` (bytes, seeds, the
cache), and a response shown in a notebook shows its pictures inline, as the Generation does.

``url`` is a URL that works when it is returned: fal's file URL while fal keeps the file
(:data:`FAL_URL_LIFETIME` from when fal made the picture), otherwise (a cache hit from after that, the
in-process emulator, a ``sync_mode`` answer) a ``data:`` URI holding the picture.  ``b64_json`` is filled
for ``response_format="b64_json"`` (and ``url`` is then None, as OpenAI does).  The base64 texts are
built when read, so a response costs no memory beyond the Generation's bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from typing import Any

from ._generation import Generation
from ._image import Image, usable_url

__all__ = ["ImageObject", "ImageResponse", "image_response"]

#: a long base64 text is shown cut in a repr (a data: URI of one picture is megabytes)
_REPR_CHARS = 48


class _Record:
    """Attribute and dict access over a fixed list of fields, as LiteLLM's response objects allow."""

    _fields: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> Any:
        if key not in self._fields:
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return key in self._fields

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default) if key in self._fields else default

    def keys(self) -> list[str]:
        return list(self._fields)

    def values(self) -> list[Any]:
        return [getattr(self, k) for k in self._fields]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self._fields]

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        # pydantic's order: ``for name, value in response`` (``dict(response)`` uses keys())
        return iter(self.items())

    def model_dump(self, *, include: Any = None, exclude: Any = None, exclude_none: bool = False,
                   **_: Any) -> dict[str, Any]:
        """A plain dict of the fields (nested objects too), as pydantic's ``model_dump()``: ``include`` /
        ``exclude`` (top-level field names) and ``exclude_none`` (at every level) as pydantic's; its other
        options change nothing here.  (They were all ignored: ``exclude_none=True`` kept LiteLLM's None fields.)"""
        keep, drop = _names(include, "include"), _names(exclude, "exclude") or set()
        return {k: _plain(v, exclude_none) for k, v in self.items()
                if (keep is None or k in keep) and k not in drop and not (exclude_none and v is None)}

    def model_dump_json(self, *, indent: int | None = None, **options: Any) -> str:
        """The fields as JSON text, as pydantic's ``model_dump_json()`` (compact unless ``indent``)."""
        return json.dumps(self.model_dump(**options), indent=indent, ensure_ascii=False,
                          separators=None if indent is not None else (",", ":"))

    dict = to_dict = json = model_dump  # LiteLLM's ``json()`` is its model_dump() too

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Record):
            return self.model_dump() == other.model_dump()
        if isinstance(other, Mapping):
            return self.model_dump() == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class _Usage(_Record):
    """Token usage: fal bills images, not tokens, so every count is 0 (as LiteLLM reports for fal)."""

    _fields = ("input_tokens", "input_tokens_details", "output_tokens", "total_tokens")

    def __init__(self) -> None:
        self.input_tokens = self.output_tokens = self.total_tokens = 0
        self.input_tokens_details = {"image_tokens": 0, "text_tokens": 0}

    def __repr__(self) -> str:
        return "Usage(input_tokens=0, output_tokens=0, total_tokens=0)"


class ImageObject(_Record):
    """One picture of ``response.data``: ``url``, ``b64_json``, ``revised_prompt``, ``provider_specific_fields``
    (width, height, content_type and seed).  ``image`` is falnb's :class:`~falnb.Image` (the bytes)."""

    _fields = ("b64_json", "url", "revised_prompt", "provider_specific_fields")

    def __init__(self, image: Image, *, fal_url: str | None, response_format: str,
                 revised_prompt: str | None = None) -> None:
        self.image = image
        self._fal_url = fal_url
        self._format = response_format
        self._set: dict[str, Any] = {}
        self.revised_prompt = revised_prompt
        self.provider_specific_fields: dict[str, Any] | None = {
            "width": image.width, "height": image.height, "content_type": image.content_type, "seed": image.seed}

    @property
    def url(self) -> str | None:
        if "url" in self._set:
            return self._set["url"]  # type: ignore[no-any-return]
        if self._format == "b64_json":
            return None
        return self._fal_url or self.data_uri()

    @url.setter
    def url(self, value: str | None) -> None:
        self._set["url"] = value

    @property
    def b64_json(self) -> str | None:
        if "b64_json" in self._set:
            return self._set["b64_json"]  # type: ignore[no-any-return]
        return base64.b64encode(self.image.data).decode("ascii") if self._format == "b64_json" else None

    @b64_json.setter
    def b64_json(self, value: str | None) -> None:
        self._set["b64_json"] = value

    def data_uri(self) -> str:
        """The picture as a ``data:`` URI (works anywhere a URL does, for as long as you keep it)."""
        return f"data:{self.image.content_type};base64,{base64.b64encode(self.image.data).decode('ascii')}"

    def __repr__(self) -> str:
        return (f"ImageObject(url={_cut(self.url)}, b64_json={_cut(self.b64_json)}, "
                f"revised_prompt={self.revised_prompt!r}, provider_specific_fields={self.provider_specific_fields!r})")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return self.image._repr_mimebundle_(include, exclude)


class ImageResponse(_Record):
    """What :func:`falnb.image_generation` returns: LiteLLM's ``ImageResponse``, answered by falnb.

    ``created`` (Unix seconds), ``data`` (:class:`ImageObject` items), ``usage`` (zero tokens: fal bills
    images), ``size`` (``"WxH"`` of the first picture), ``output_format`` (``"png"``, ``"jpeg"``...);
    ``background``, ``quality``, ``safety_identifier`` and ``svg_usage`` are None (OpenAI's, fal has none).
    ``_hidden_params`` (also ``hidden_params``): ``response_cost`` (USD, falnb's estimate of what this call
    paid: 0.0 when every picture came from the cache), ``estimated_cost``, ``cached``, ``saved``, ``seed``,
    ``seeds``, ``request_ids`` (fal's), ``model`` (fal's endpoint id), ``litellm_model_name``,
    ``custom_llm_provider`` (``"fal_ai"``), ``api_base``, ``_response_ms`` and fal's own extras
    (``timings``, ``has_nsfw_concepts``...).  ``generation`` is falnb's :class:`~falnb.Generation`.
    """

    _fields = ("created", "background", "data", "output_format", "quality", "safety_identifier", "size",
               "svg_usage", "usage")

    def __init__(self, generation: Generation, data: list[ImageObject], hidden_params: dict[str, Any]) -> None:
        self.generation = generation
        self.created = int(generation.created)
        self.data = data
        first = generation.images[0] if generation.images else None
        self.size = f"{first.width}x{first.height}" if first and first.width and first.height else None
        kind = first.content_type.partition("/")[2] if first else ""
        self.output_format = kind if kind in ("png", "jpeg", "webp", "gif") else None
        self.background: str | None = None
        self.quality: str | None = None
        # OpenAI's fields for its own models: fal has no such thing
        self.safety_identifier: str | None = None
        self.svg_usage: Any = None
        self.usage = _Usage()
        self._hidden_params = hidden_params

    @property
    def hidden_params(self) -> dict[str, Any]:
        return self._hidden_params

    @hidden_params.setter
    def hidden_params(self, value: dict[str, Any]) -> None:
        self._hidden_params = value

    def __repr__(self) -> str:
        return (f"ImageResponse(created={self.created}, data=[{len(self.data)} ImageObject], size={self.size!r}, "
                f"output_format={self.output_format!r}, response_cost={self._hidden_params.get('response_cost')!r})")

    def _ipython_display_(self) -> None:
        # the pictures inline, as falnb shows a Generation (never megabytes of base64 text)
        self.generation._ipython_display_()


def image_response(generation: Generation, *, fal_urls: bool, litellm_model: str, api_base: str) -> ImageResponse:
    """The LiteLLM-shaped response to ``generation``.

    ``fal_urls``: whether fal's file URLs can be handed out (the caller knows whether the pictures came
    from fal and when); each picture without a usable one gets a ``data:`` URI instead.
    """
    fmt = generation.response_format if generation.response_format in ("url", "b64_json") else "url"
    first = generation.responses[0] if generation.responses else {}
    said = first.get("prompt")
    revised = said if isinstance(said, str) and said.strip() and said != generation.prompt else None
    data = [ImageObject(img, fal_url=img.url if fal_urls and usable_url(img.url) else None, response_format=fmt,
                        revised_prompt=revised) for img in generation.images]
    paid = None if generation.cost is None else round(max(0.0, generation.cost - generation.saved), 6)
    hidden: dict[str, Any] = {k: v for k, v in first.items()
                              if k not in ("images", "image", "prompt") and _small(v)}
    hidden.update({
        "response_cost": 0.0 if generation.cached else paid, "estimated_cost": generation.cost,
        "cached": generation.cached, "saved": generation.saved, "seed": generation.seed,
        "seeds": [img.seed for img in generation.images], "request_ids": list(generation.request_ids),
        "model": generation.model, "litellm_model_name": litellm_model, "custom_llm_provider": "fal_ai",
        "api_base": api_base, "_response_ms": round(generation.elapsed * 1000, 3),
    })
    return ImageResponse(generation, data, hidden)


def _small(value: Any) -> bool:
    # fal's extras worth keeping (timings, nsfw flags, a description); never a picture or a data: URI
    return len(repr(value)) <= 2000


def _plain(value: Any, exclude_none: bool = False) -> Any:
    if isinstance(value, _Record):
        return value.model_dump(exclude_none=exclude_none)
    if isinstance(value, list):
        return [_plain(v, exclude_none) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v, exclude_none) for k, v in value.items()}
    return value


def _names(spec: Any, what: str) -> set[str] | None:
    """pydantic's ``include``/``exclude`` of top-level fields: a set of names, or a dict of name -> True."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        if not all(v is True for v in spec.values()):
            raise TypeError(f"{what}= takes top-level field names here (a set, or a dict of name: True)")
        return set(spec)
    return set(spec)


def _cut(text: str | None) -> str:
    if text is None or len(text) <= _REPR_CHARS:
        return repr(text)
    return f"{text[:_REPR_CHARS]!r}… ({len(text):,} chars)"
