"""Checks of the Client's call arguments, made before anything is sent: prompt lists, timeouts, and the
hashable twin of a call's arguments that keys the plan memo."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._exceptions import FalnbError, InputError

if TYPE_CHECKING:
    from .results._generation import Generation

__all__ = ["check_callback", "check_run_args", "check_timeout", "first_result", "freeze", "prompt_list",
           "results_or_raise"]


def first_result(results: list[Generation | FalnbError]) -> Generation:
    """A call's one generation, or its error raised."""
    result = results[0]
    if isinstance(result, FalnbError):
        raise result
    return result


def results_or_raise(results: list[Generation | FalnbError], return_exceptions: bool) -> list[Generation | FalnbError]:
    """A batch's results, errors in place (``return_exceptions``) or the first one raised."""
    if not return_exceptions:
        for r in results:
            if isinstance(r, FalnbError):
                raise r
    return results


def prompt_list(prompts: Any) -> list[str]:
    """The prompts of ``generate_many``: a list of non-blank strings, or an InputError naming the item.

    A str (or bytes) is refused: iterating it would send one request per character."""
    if isinstance(prompts, (str, bytes, bytearray, Mapping)) or not isinstance(prompts, Iterable):
        what = type(prompts).__name__
        raise InputError(f"generate_many takes a list of prompts, not a {what}",
                         hint="For one prompt use generate(prompt, ...); for several, a list: "
                              "generate_many([\"a fox\", \"an owl\"], ...).")
    items = list(prompts)
    for i, p in enumerate(items):
        if not isinstance(p, str):
            raise InputError(f"prompts[{i}] is a {type(p).__name__}, not a str; nothing was sent", field="prompt")
        if not p.strip():
            raise InputError(f"prompts[{i}] is empty; nothing was sent", field="prompt")
    return items


def check_timeout(value: Any, name: str, *, optional: bool = True) -> None:
    """A timeout is a positive number of seconds (or None where allowed): checked before anything is sent."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{name} must be a positive number of seconds{' (or None)' if optional else ''}, "
                         f"not {value!r}", field=name)


def check_callback(value: Any, name: str) -> None:
    """A callback is callable (or None): checked before anything is sent, not at its first call (paid by then)."""
    if value is not None and not callable(value):
        raise InputError(f"{name} must be a function (or None), not {type(value).__name__}; nothing was sent",
                         field=name)


def freeze(value: Any) -> Any:
    """A hashable twin of call arguments (dicts and lists become sorted tuples), or None if it has none."""
    if isinstance(value, (str, int, float, bool, type(None))):
        return (type(value).__name__, value)  # 1, 1.0 and True stay distinct requests
    if isinstance(value, (list, tuple)):
        items = [freeze(v) for v in value]
        return None if any(i is None for i in items) else (type(value).__name__, *items)
    if isinstance(value, Mapping):
        pairs = [(str(k), freeze(v)) for k, v in value.items()]
        return None if any(v is None for _, v in pairs) else ("map", *sorted(pairs))
    return None


def check_run_args(*, timeout: Any = None, on_progress: Any = None, **flags: Any) -> None:
    """A call's timeout, progress callback and flags (``refresh``, ``cache``...), checked before anything is
    sent.  A flag is True or False (NumPy's too): ``cache="no"`` or ``refresh=0`` is a mistake, not a yes."""
    check_timeout(timeout, "timeout")
    check_callback(on_progress, "on_progress")
    for name, value in flags.items():
        kind = type(value)
        if not (isinstance(value, bool) or (kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_"))):
            raise InputError(f"{name} must be True or False, not {value!r}; nothing was sent", field=name)
