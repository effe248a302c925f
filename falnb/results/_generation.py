"""What a generation returns: :class:`Generation` (its :class:`~falnb.Image` objects are in ``_image``)."""

from __future__ import annotations

import base64
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._compact import Packed, compact, pack, unpack
from ._image import EXTENSIONS, Image, fal_still_keeps, usable_url
from ._text import NO_MATH, html_text, seed_text, usd

__all__ = ["Generation", "images_from_response"]

#: how ``Generation.edit`` reaches a client: set by ``falnb._client`` (a layer above) when it loads, as
#: ``(maker, prompt, image, model, params) -> Generation`` where ``maker`` is the Client that made the generation
EDITOR: Callable[[Any, str, Any, str | None, dict[str, Any]], Generation] | None = None


class _Weak:
    __slots__ = ("__weakref__",)  # the form's history keeps weak references (dataclass's weakref_slot is 3.11+)


@dataclass(eq=False, slots=True)
class Generation(_Weak):
    """The result of one ``generate`` call.

    ``inputs`` is what was sent to fal (one dict per request: ``n`` may be split),
    ``cost`` an estimate in USD (None when the price is unknown), ``cached`` True when every
    image came from the cache (nothing was paid).
    """

    prompt: str
    model: str
    images: list[Image]
    inputs: list[dict[str, Any]]
    request_ids: list[str]
    seed: int | None = None
    cost: float | None = None
    cached: bool = False
    #: spend avoided thanks to the cache (what fal billed for the cached pictures where known, else estimated)
    saved: float = 0.0
    elapsed: float = 0.0
    response_format: str = "url"
    responses: list[dict[str, Any]] = field(default_factory=list, repr=False)
    created: float = field(default_factory=time.time)
    #: when fal made the oldest of these pictures (a cache hit: when it was first paid for); fal's
    #: URLs expire counting from then.  None: unknown (a Generation built by hand)
    made: float | None = None
    #: the pictures this generation was made from (an edit's inputs), in field order; empty for text-to-image.
    #: A URL input is an Image with no bytes (``data == b""``) and its ``url``
    input_images: tuple[Image, ...] = ()
    #: where it was made, set by whoever made it (the magic: "cell [5]"); labels its pictures as inputs
    origin: str | None = None
    _maker: Any = field(default=None, repr=False)
    #: how the pictures were had when that is not fal's queue (e.g. a LiteLLM proxy's images route); the
    #: caption says it
    route: str | None = None
    #: True when ``cost`` (and ``saved``) is what fal billed (its ``x-fal-billable-units`` times the unit
    #: price), False when it is falnb's estimate
    billed: bool = False

    def __post_init__(self) -> None:
        # a batch keeps per request only what differs (issue 15 item 5): slots, fal's JSON packed until read
        # (``_Responses``; else with its keys and repeated values shared), lists of their exact length (a
        # slice: list() and comprehensions leave 8-24 B of spare room each)
        packed = pack(self.responses)
        if packed is not None:
            _RESPONSES_SLOT.__set__(self, packed)
        else:
            self.responses = [compact(r, (self.prompt,)) if isinstance(r, dict) else r for r in self.responses][:]
        self.images, self.inputs, self.request_ids = self.images[:], self.inputs[:], self.request_ids[:]
        if self.saved == 0:
            self.saved = 0.0  # one shared float, not one per generation

    @property
    def image(self) -> Image:
        return self.images[0]

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Any:
        return iter(self.images)

    def __getitem__(self, i: int) -> Image:
        return self.images[i]

    def labelled(self, index: int) -> Image:
        """Picture ``index`` labelled with where it came from ("picture 2 of cell [5]"), to use as an input."""
        where = self.origin or self.model.rsplit("/", 1)[-1]
        return dataclasses.replace(self.images[index], source=f"picture {index + 1} of {where}")

    def edit(self, prompt: str, *, model: str | None = None, index: int | None = None,
             **params: Any) -> Generation:
        """Edit these pictures (all of them, or picture ``index``) with ``prompt``: ``falnb.edit`` on the client
        that made this generation (``model`` defaults to falnb's edit model)."""
        if EDITOR is None:
            raise RuntimeError("falnb's client is not loaded")  # only for a Generation built by hand
        image: Any = self if index is None else self.labelled(index)
        return EDITOR(self._maker, prompt, image, model, params)

    def to_openai(self, response_format: str | None = None) -> dict[str, Any]:
        """An OpenAI ImagesResponse-shaped dict: ``created``, ``data[i].url`` / ``b64_json``.

        ``url`` is fal's file URL while fal keeps the file; a picture without one that can be opened (a
        ``sync_mode`` data URI, the in-process emulator's made-up host, a cache hit older than fal keeps its
        files) comes as ``b64_json`` instead, whatever ``response_format`` asks for."""
        from .._exceptions import InputError

        fmt = response_format or self.response_format
        if fmt not in ("url", "b64_json"):
            raise InputError(f"response_format must be 'url' or 'b64_json', not {fmt!r}", field="response_format")
        fresh = fal_still_keeps(self.made, time.time())
        data = []
        for img in self.images:
            item: dict[str, Any] = {"revised_prompt": self.prompt}
            url = img.url if fresh and usable_url(img.url) else None
            item["url"] = url
            item["b64_json"] = base64.b64encode(img.data).decode() if fmt == "b64_json" or url is None else None
            data.append(item)
        return {"created": int(self.created), "data": data,
                "usage": None, "_hidden_params": {"response_cost": 0.0 if self.cached else self.cost,
                                                  "model": self.model}}

    def save(self, directory: str | Path, prefix: str = "falnb") -> list[Path]:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        return [img.save(d / f"{prefix}-{i}{EXTENSIONS.get(img.content_type, '.bin')}")
                for i, img in enumerate(self.images)]

    def caption(self) -> str:
        first = self.images[0] if self.images else None
        dims = f"{first.width}x{first.height}" if first and first.width and first.height else "size by model"
        parts = [self.model, dims]
        seeds = seed_text((img.seed for img in self.images), self.seed)
        if seeds:
            parts.append(seeds)
        parts.append(self.cost_text())
        if self.cached:
            parts.append(f"cached, saved {self.money(self.saved)}")
        if self.route:
            parts.append(self.route)
        from ._edit_view import made_from

        made = made_from(self)  # "edit of picture 2 of cell [5]"
        return " · ".join([*parts, made] if made else parts)

    def money(self, amount: float) -> str:
        """``amount`` as fal's bill (``$0.06``) or as an estimate (``~$0.06``)."""
        return usd(amount) if self.billed else f"~{usd(amount)}"

    def cost_text(self) -> str:
        """``$0.06 billed`` (fal's bill), ``~$0.06`` (falnb's estimate) or ``cost unknown``."""
        if self.cost is None:
            return "cost unknown"
        return f"{usd(self.cost)} billed" if self.billed else f"~{usd(self.cost)}"

    def __repr__(self) -> str:
        return (f"<falnb.Generation {len(self.images)} image(s) from {self.model}"
                f"{' (cached)' if self.cached else ''}: {self.caption()}>")

    def _repr_html_(self) -> str:
        # text only: the pictures are emitted as real image outputs by display(), not inlined
        return (f"<div class='falnb-generation {NO_MATH}'><b>{html_text(self.model)}</b> — "
                f"{html_text(self.prompt[:200])}<br><small>{html_text(self.caption())}</small></div>")

    def _ipython_display_(self) -> None:
        # as %%falimage shows it: a capped preview grid (real image outputs) and an escaped caption
        from ._render import show_generation

        show_generation(self)


class _Responses:
    """``Generation.responses``: kept packed (:func:`~falnb.results._compact.pack`) and decoded on first
    read, then kept decoded, so reading it twice gives the same list and changes to it stay."""

    def __init__(self, slot: Any) -> None:
        self._slot = slot  # the dataclass's own slot descriptor: where the value lives

    def __get__(self, gen: Generation | None, owner: type | None = None) -> Any:
        if gen is None:
            return self
        value = self._slot.__get__(gen, owner)
        if isinstance(value, Packed):
            with _DECODING:  # two threads reading it first get the same list
                value = self._slot.__get__(gen, owner)
                if isinstance(value, Packed):
                    value = unpack(value, (gen.prompt,))
                    self._slot.__set__(gen, value)
        return value

    def __set__(self, gen: Generation, value: Any) -> None:
        self._slot.__set__(gen, value)


_DECODING = threading.Lock()
_RESPONSES_SLOT: Any = Generation.__dict__["responses"]
setattr(Generation, "responses", _Responses(_RESPONSES_SLOT))  # noqa: B010 (the slot's descriptor, replaced)


def images_from_response(response: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    """fal's image list, whichever shape the model uses (Bria returns a single ``image``)."""
    if isinstance(response.get("images"), list):
        return [i for i in response["images"] if isinstance(i, Mapping)]
    if isinstance(response.get("image"), Mapping):
        return [response["image"]]
    return []
