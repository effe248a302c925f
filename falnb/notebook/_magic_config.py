"""``%falconfig``: set the magics' settings and say what is in effect (never the key itself)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from IPython.core.error import UsageError
from traitlets import TraitError

from .._exceptions import FalnbError
from .._redact import hide_credentials

if TYPE_CHECKING:
    from .._client import Client

__all__ = ["configure", "describe", "in_range"]


class Settings(Protocol):
    """What %falconfig needs of the magics: their configurable traits and their client."""

    default_model: str

    @property
    def client(self) -> Client: ...

    def trait_names(self, **metadata: Any) -> list[str]: ...


def configure(magics: Settings, line: str) -> None:
    """``%falconfig name=value ...``: set FalMagics traits, then print the effective settings."""
    import json
    import shlex

    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"%falconfig: {exc}") from None
    traits = magics.trait_names(config=True)
    for word in words:
        name, sep, text = word.partition("=")
        if not sep:
            raise UsageError(f"%falconfig {word!r}: write name=value, e.g. default_model=flux-ultra")
        if name not in traits:
            import difflib

            close = difflib.get_close_matches(name, traits, n=1)
            raise UsageError(f"%falconfig: unknown setting {name!r}"
                             + (f"; did you mean {close[0]!r}?" if close else
                                f"; settings: {', '.join(sorted(traits))}"))
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        if text in ("None", "none", "null"):
            value = None
        try:
            setattr(magics, name, value)
        except TraitError as exc:
            raise UsageError(f"%falconfig {name}: {exc}") from None
    print(describe(magics))


def describe(magics: Settings) -> str:
    """The effective settings as text (what ``%falconfig`` prints)."""
    lines = ["falnb magics (%config FalMagics.<name> = value, or %falconfig name=value):"]
    width = max(len(n) for n in magics.trait_names(config=True))
    for name in sorted(magics.trait_names(config=True)):
        lines.append(f"  {name:<{width}} = {getattr(magics, name)!r}")
    client = magics.client
    try:
        model = client.catalog.resolve(magics.default_model).id
    except FalnbError as exc:
        model = f"(not a model: {exc.message})"
    lines.append(f"default model resolves to {model}")
    if client.offline:
        lines.append("mode: OFFLINE — the embedded fal emulator (synthetic pictures, nothing billed)")
        lines.append("key: not needed offline")
    elif client.proxy is not None:  # a team's LiteLLM proxy: which route, and where URL and key came from
        lines.append(f"mode: online — through the {client.proxy.describe()}")
    else:
        lines.append(f"mode: online — {hide_credentials(client.queue_url)}")
        from .._exceptions import MissingKeyError

        try:
            lines.append(f"key: from {client.key.source} (hidden)")
        except MissingKeyError:
            lines.append("key: none found — set FAL_KEY (in a notebook: %env FAL_KEY=...), or run "
                         "offline with %config FalMagics.offline = True")
    lines.append(f"cache: {_cache_description(client)}")
    return "\n".join(lines)


def _cache_description(client: Client) -> str:
    try:
        cache = client.cache
    except Exception as exc:  # a broken cache must not break %falconfig
        return f"unavailable ({type(exc).__name__}: {exc})"
    if cache is None:
        return "off"
    for attr in ("directory", "root", "path"):
        where = getattr(cache, attr, None)
        if where is not None:
            return f"{where} ({client.cache_namespace} namespace)"
    return repr(cache)


def in_range(name: str, value: int, lo: int, hi: int) -> int:
    """A FalMagics trait's value, checked against its range (a TraitError names the trait)."""
    if not lo <= value <= hi:
        raise TraitError(f"{name} must be from {lo} to {hi}, not {value!r}")
    return value
