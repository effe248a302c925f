"""Where falnb finds its key, its queue URL and whether it runs offline.

The key is held in a :class:`Key` whose ``repr`` and ``str`` never show it, so it cannot leak
through a repr, a log line or an exception message by accident.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from .._exceptions import ConfigError, MissingKeyError

__all__ = ["DEFAULT_QUEUE_URL", "OFFLINE_QUEUE_URL", "Key", "find_key", "offline_from_env", "queue_url_from_env",
           "storage_url_from_env"]

DEFAULT_QUEUE_URL = "https://queue.fal.run"
#: the host the in-process emulator answers as; never resolved, no socket is opened
OFFLINE_QUEUE_URL = "http://emulator.falnb.invalid"


@dataclass(frozen=True)
class Key:
    """A fal key (or a LiteLLM proxy's key) and where it came from.  The secret is never shown.

    ``scheme``: fal wants ``Authorization: Key ...``; a LiteLLM proxy refuses that and wants ``Bearer``."""

    _secret: str
    source: str
    scheme: str = "Key"

    def header(self) -> str:
        return f"{self.scheme} {self._secret}"

    @property
    def secret(self) -> str:
        return self._secret

    def __repr__(self) -> str:
        scheme = "" if self.scheme == "Key" else f", scheme={self.scheme!r}"
        return f"Key(source={self.source!r}{scheme}, secret=***)"

    __str__ = __repr__


def find_key(explicit: str | None = None) -> Key:
    """The key, in fal's own order: ``FAL_KEY``; ``FAL_KEY_ID`` + ``FAL_KEY_SECRET``; then LiteLLM's
    ``FAL_AI_API_KEY``.  Raises :class:`MissingKeyError` before any request is made."""
    if explicit:
        return Key(explicit.strip(), "key= argument")
    env = os.environ
    if env.get("FAL_KEY", "").strip():
        return Key(env["FAL_KEY"].strip(), "FAL_KEY")
    if env.get("FAL_KEY_ID", "").strip() and env.get("FAL_KEY_SECRET", "").strip():
        return Key(f"{env['FAL_KEY_ID'].strip()}:{env['FAL_KEY_SECRET'].strip()}", "FAL_KEY_ID + FAL_KEY_SECRET")
    if env.get("FAL_AI_API_KEY", "").strip():
        return Key(env["FAL_AI_API_KEY"].strip(), "FAL_AI_API_KEY")
    raise MissingKeyError()


def offline_from_env() -> bool:
    return os.environ.get("FALNB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def queue_url_from_env(explicit: str | None = None) -> str:
    url = (explicit or os.environ.get("FALNB_QUEUE_URL") or DEFAULT_QUEUE_URL).strip().rstrip("/")
    return _http_url(url, "queue", "FALNB_QUEUE_URL")


def storage_url_from_env(explicit: str | None = None) -> str | None:
    """The base URL of fal's storage for uploads (``FALNB_STORAGE_URL``; None: fal's own hosts,
    ``rest.fal.ai`` for the token and ``v3.fal.media`` for the bytes)."""
    url = (explicit or os.environ.get("FALNB_STORAGE_URL") or "").strip().rstrip("/")
    return _http_url(url, "storage", "FALNB_STORAGE_URL") if url else None


def _http_url(url: str, what: str, variable: str) -> str:
    """``url`` when it is http(s)://host[:port]..., else a ConfigError naming the variable that sets it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{what} URL {url!r} must be http(s)://host[:port]",
                          hint=f"Set {variable}, e.g. http://127.0.0.1:8765 for `falnb emulator`.")
    return url
