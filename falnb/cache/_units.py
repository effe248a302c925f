"""The units people type and read in the cache's controls: ages (``30d``), sizes (``500MB``), dates."""

from __future__ import annotations

import datetime as _dt
import re
import time

from .._exceptions import InputError

__all__ = ["human_bytes", "parse_age", "parse_bytes", "parse_since"]

_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_SIZES = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}


def parse_age(value: float | str | _dt.timedelta) -> float:
    """Seconds from ``90``, ``"30d"``, ``"12h"``, ``"2w"``, ``"45min"`` or a ``timedelta``."""
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", str(value).lower())
    if not m or m.group(2) not in ({*_UNITS, ""}):
        raise InputError(f"{value!r} is not an age", hint="Write e.g. 30d, 12h, 2w, 45min or a number of seconds.")
    return float(m.group(1)) * _UNITS.get(m.group(2) or "s", 1)


def parse_bytes(value: int | str) -> int:
    """Bytes from ``1000``, ``"500MB"``, ``"1.5GB"``, ``"200KiB"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", str(value).lower())
    if not m or m.group(2) not in _SIZES:
        raise InputError(f"{value!r} is not a size", hint="Write e.g. 500MB, 2GB or a number of bytes.")
    return int(float(m.group(1)) * _SIZES[m.group(2)])


def parse_since(value: float | str) -> float:
    """A time stamp from a number, an age (``"7d"``: that long ago) or an ISO date/time."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return time.time() - parse_age(text)
    except InputError:
        pass
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{value!r} is not a date or an age",
                         hint="Write e.g. 2025-01-31, 2025-01-31T12:00 or 7d.") from None
    return when.timestamp()


def human_bytes(n: int | float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
