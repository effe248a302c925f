"""Module-level functions on a default :class:`Client` configured from the environment."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._client import default_client
from ._exceptions import FalnbError
from .catalog._catalog import ModelSpec, default_catalog
from .catalog._catalog import load_litellm_config as _load
from .catalog._image_models import DEFAULT_BACKGROUND_REMOVER, DEFAULT_EDIT_MODEL, DEFAULT_UPSCALER
from .results._generation import Generation

__all__ = ["aedit", "agenerate", "agenerate_many", "aremove_background", "aupscale", "edit", "generate",
           "generate_many", "load_litellm_config", "models", "remove_background", "upscale"]


def generate(prompt: str, *, model: str | None = None, n: int = 1, size: Any = None,
             seed: int | None = None, **params: Any) -> Generation:
    """Generate ``n`` images of ``prompt`` with ``model`` (see :meth:`falnb.Client.generate`).

    Without ``model``: ``flux-schnell``, the same default as ``%%falimage``."""
    return default_client().generate(prompt, model=model, n=n, size=size, seed=seed, **params)


async def agenerate(prompt: str, *, model: str | None = None, n: int = 1, size: Any = None,
                    seed: int | None = None, **params: Any) -> Generation:
    """The async twin of :func:`generate`."""
    return await default_client().agenerate(prompt, model=model, n=n, size=size, seed=seed, **params)


def generate_many(prompts: Iterable[str], *, model: str | None = None,
                  concurrency: int | None = None, **kwargs: Any) -> list[Generation | FalnbError]:
    """One generation per prompt, concurrently, with per-item results."""
    return default_client().generate_many(prompts, model=model, concurrency=concurrency, **kwargs)


async def agenerate_many(prompts: Iterable[str], *, model: str | None = None,
                         concurrency: int | None = None, **kwargs: Any) -> list[Generation | FalnbError]:
    """The async twin of :func:`generate_many`."""
    return await default_client().agenerate_many(prompts, model=model, concurrency=concurrency, **kwargs)


def models() -> list[ModelSpec]:
    """The catalogued models (the ten seed models and any aliases loaded)."""
    return default_catalog().models


def load_litellm_config(path: str) -> dict[str, str]:
    """Add the ``fal_ai/...`` aliases of a LiteLLM proxy ``config.yaml``; returns ``{alias: fal id}``."""
    return _load(path)


def edit(prompt: str, image: Any, *, model: str = DEFAULT_EDIT_MODEL, mask: Any = None,
         **params: Any) -> Generation:
    """Edit ``image`` (one picture or several: a path, bytes, a PIL image, an array, a falnb Image or
    Generation, a URL) as ``prompt`` says, with an edit model; ``mask=`` for inpainting models."""
    return default_client().generate(prompt, model=model, image=image, mask=mask, **params)


async def aedit(prompt: str, image: Any, *, model: str = DEFAULT_EDIT_MODEL, mask: Any = None,
                **params: Any) -> Generation:
    """The async twin of :func:`edit`."""
    return await default_client().agenerate(prompt, model=model, image=image, mask=mask, **params)


def upscale(image: Any, *, model: str = DEFAULT_UPSCALER, **params: Any) -> Generation:
    """``image`` made larger by an upscaler (``upscale_factor=`` or ``scale=``, per model): one picture out."""
    return default_client().generate("", model=model, image=image, **params)


async def aupscale(image: Any, *, model: str = DEFAULT_UPSCALER, **params: Any) -> Generation:
    """The async twin of :func:`upscale`."""
    return await default_client().agenerate("", model=model, image=image, **params)


def remove_background(image: Any, *, model: str = DEFAULT_BACKGROUND_REMOVER, **params: Any) -> Generation:
    """``image`` with its background made transparent (one RGBA picture out)."""
    return default_client().generate("", model=model, image=image, **params)


async def aremove_background(image: Any, *, model: str = DEFAULT_BACKGROUND_REMOVER, **params: Any) -> Generation:
    """The async twin of :func:`remove_background`."""
    return await default_client().agenerate("", model=model, image=image, **params)
