"""fal's JSON as a :class:`~falnb.Generation` keeps it: one copy of what every response repeats.

A decoded response holds its own copy of every key (``"url"``, ``"content_type"``, ``"width"``...) and
of the values every picture shares (``"image/jpeg"``, 1024, the prompt fal echoes): about half of what
a 5,000-prompt batch keeps per request beyond the pictures (issue 15 item 5).  :func:`compact` returns
an equal copy whose keys and such values are shared, so a batch keeps per request only what differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["compact"]

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
