"""falnb: generate images with fal.ai from Jupyter, pay once for each picture.

    >>> import falnb
    >>> gen = falnb.generate("a lighthouse at dusk", model="flux-ultra", size="1792x1024")
    >>> gen.images[0].save("lighthouse.jpg")

In a notebook: ``%load_ext falnb`` then a ``%%falimage --model flux-ultra`` cell.  Offline, on the
embedded fal emulator: ``FALNB_OFFLINE=1`` or ``falnb.Client(offline=True)``.  LiteLLM's fal code runs
unchanged with ``import falnb as litellm`` (``image_generation``, ``aimage_generation``).

``import falnb`` is cheap: the client, httpx, IPython and Pillow load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._exceptions import (
    AuthenticationError,
    BudgetExceededError,
    CacheError,
    ConfigError,
    ContentPolicyError,
    FalError,
    FalnbError,
    FalServerError,
    FalValidationError,
    InputError,
    Interrupted,
    MissingKeyError,
    ParameterError,
    RateLimitError,
    RequestCancelledError,
    RequestNotFoundError,
    RequestTimeoutError,
    SizeError,
    SubmitUncertainError,
    TransportError,
    UnknownModelError,
)

if TYPE_CHECKING:
    from ._api import (
        aedit,
        agenerate,
        agenerate_many,
        aremove_background,
        aupscale,
        edit,
        generate,
        generate_many,
        load_litellm_config,
        remove_background,
        upscale,
    )
    from ._client import Client
    from ._litellm import aimage_edit, aimage_generation, image_edit, image_generation
    from ._run import Run
    from .cache._index import CacheWarning
    from .cache._store import ResponseCache
    from .catalog._catalog import ModelSpec, Param
    from .notebook._form import form
    from .results._generation import Generation
    from .results._image import Image
    from .results._image_response import ImageResponse
    from .results._progress import Progress

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "BudgetExceededError",
    "CacheError",
    "CacheWarning",
    "Client",
    "ConfigError",
    "ContentPolicyError",
    "FalError",
    "FalServerError",
    "FalValidationError",
    "FalnbError",
    "Generation",
    "Image",
    "ImageResponse",
    "InputError",
    "Interrupted",
    "MissingKeyError",
    "ModelSpec",
    "Param",
    "ParameterError",
    "Progress",
    "RateLimitError",
    "RequestCancelledError",
    "RequestNotFoundError",
    "RequestTimeoutError",
    "ResponseCache",
    "Run",
    "SizeError",
    "SubmitUncertainError",
    "TransportError",
    "UnknownModelError",
    "__version__",
    "aedit",
    "agenerate",
    "agenerate_many",
    "aimage_edit",
    "aimage_generation",
    "aremove_background",
    "aupscale",
    "edit",
    "form",
    "generate",
    "generate_many",
    "image_edit",
    "image_generation",
    "load_ipython_extension",
    "load_litellm_config",
    "models",
    "remove_background",
    "unload_ipython_extension",
    "upscale",
]

#: public names loaded on first access, so ``import falnb`` stays light
_LAZY = {
    "CacheWarning": ".cache._index",
    "Client": "._client",
    "Generation": ".results._generation",
    "Image": ".results._image",
    "ImageResponse": ".results._image_response",
    "ModelSpec": ".catalog._catalog",
    "Param": ".catalog._catalog",
    "Progress": ".results._progress",
    "ResponseCache": ".cache._store",
    "Run": "._run",
    "aedit": "._api",
    "agenerate": "._api",
    "agenerate_many": "._api",
    "aimage_edit": "._litellm",
    "aimage_generation": "._litellm",
    "aremove_background": "._api",
    "aupscale": "._api",
    "edit": "._api",
    "form": ".notebook._form",
    "generate": "._api",
    "generate_many": "._api",
    "image_edit": "._litellm",
    "image_generation": "._litellm",
    "load_litellm_config": "._api",
    "models": "._api",
    "remove_background": "._api",
    "upscale": "._api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'falnb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext falnb``: registers ``%%falimage`` and friends (heavy imports wait for first use)."""
    from .notebook._magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .notebook._magics import unload_ipython_extension as unload

    unload(ipython)
