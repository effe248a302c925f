"""fal's JSON as a :class:`~falnb.Generation` keeps it: packed until read, one copy of what repeats.

A decoded response holds its own copy of every key (``"url"``, ``"content_type"``, ``"width"``...) and
of the values every picture shares (``"image/jpeg"``, 1024, the prompt fal echoes), and a dict or list
object for each level: about half of what a 5,000-prompt batch keeps per request beyond the pictures
(issue 15 item 5), while few programs ever read fal's raw answers.  :func:`pack` keeps them as their
compact JSON (a third of the decoded size) when they round-trip exactly; :func:`unpack` decodes them on
first read into an equal copy whose keys and repeated values are shared (:func:`compact`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["Packed", "compact", "pack", "unpack"]

#: shared keys and values, bounded: past it, values are kept as they come (still equal, only not shared)
_MAX_SHARED = 4096
_STR: dict[str, str] = {}
_INT: dict[int, int] = {}
#: values shared only under these keys (elsewhere a short string is usually unique: a file name, an id)
_SHARED_VALUES = frozenset({"content_type", "status", "type", "format"})
#: ints up to this are shared (widths, heights, seeds of a fixed-seed batch); larger ones are file sizes
_MAX_INT = 16384


def _str(s: str) -> str:
    got = _STR.get(s)
    if got is not None:
        return got
    if len(_STR) < _MAX_SHARED:
        _STR[s] = s
    return s


def _int(i: int) -> int:
    got = _INT.get(i)
    if got is not None:
        return got
    if len(_INT) < _MAX_SHARED and -5 <= i <= _MAX_INT:
        _INT[i] = i
    return i


def compact(value: Any, same: Sequence[str] = (), *, key: str = "") -> Any:
    """An equal copy of ``value`` (JSON: dicts, lists, scalars) with shared keys and repeated values;
    a string equal to one of ``same`` (e.g. the prompt) becomes that very object."""
    if isinstance(value, dict):
        return {(_str(k) if isinstance(k, str) else k): compact(v, same, key=k if isinstance(k, str) else "")
                for k, v in value.items()}
    if isinstance(value, list):
        return [compact(v, same, key=key) for v in value][:]  # exact length: no spare room
    if type(value) is str:
        for s in same:
            if value == s:
                return s
        return _str(value) if key in _SHARED_VALUES else value
    if type(value) is int:
        return _int(value)
    return value


class Packed(str):
    """A list of fal's answers as compact JSON text (see :func:`pack`); text, not bytes: ASCII-escaped, one
    byte a character, and never mistaken for a picture's bytes by what counts those."""

    __slots__ = ()


def _native(value: Any) -> bool:
    """JSON's own types only, so that decoding gives back an equal value (no tuples, no int keys, no
    subclasses, no NaN)."""
    t = type(value)
    if t is dict:
        return all(type(k) is str and _native(v) for k, v in value.items())
    if t is list:
        return all(_native(v) for v in value)
    if t is float:
        return math.isfinite(value)
    return t is str or t is int or t is bool or value is None


def pack(values: list[Any]) -> Packed | None:
    """``values`` as :class:`Packed` JSON, or None when they would not decode to an equal list."""
    if not _native(values):
        return None
    return Packed(json.dumps(values, separators=(",", ":")))


def unpack(packed: Packed, same: Sequence[str] = ()) -> list[Any]:
    """The list :func:`pack` packed, compacted (shared keys and repeated values, ``same`` shared)."""
    return [compact(v, same) for v in json.loads(packed)][:]
