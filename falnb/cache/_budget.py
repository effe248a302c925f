"""Budget amounts as people write them, and the error that refuses a request over budget.

``FALNB_BUDGET_SESSION`` / ``FALNB_BUDGET_TOTAL`` accept ``5``, ``0.5``, ``$5``, ``5 USD``, ``USD 5``,
``US$5``; empty, ``none`` or ``off`` mean no budget.  Anything else (``nan``, ``inf``, ``1e999``,
a negative amount, ``5 EUR``) is a :class:`~falnb.ConfigError`, never "no budget".
"""

from __future__ import annotations

import math
import os
import re

from .._exceptions import BudgetExceededError, ConfigError
from ..results._text import usd

__all__ = ["amount", "env_budget", "over_budget", "suggest"]

_AMOUNT = re.compile(r"(?:us\$|\$|usd)?\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*(?:usd|\$)?", re.IGNORECASE)
_OFF = ("", "none", "off")


def env_budget(name: str) -> float | None:
    """The budget in the environment variable ``name`` (None: no budget)."""
    raw = os.environ.get(name, "")
    text = raw.strip()
    if text.lower() in _OFF:
        return None
    m = _AMOUNT.fullmatch(text)
    if m is None:
        raise ConfigError(f"{name}={raw!r} is not an amount in USD",
                          hint=f"Write e.g. {name}=5 for five dollars, or unset it (or 'none') for no budget.")
    return _checked(float(m.group(1)), f"{name}={raw!r}", name)


def amount(value: object, name: str) -> float:
    """A budget given in Python (a number, 0 or more, finite)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be an amount in USD (a number, 0 or more), not {value!r}")
    return _checked(float(value), f"{name}={value!r}", name)


def _checked(value: float, said: str, name: str) -> float:
    if math.isnan(value) or math.isinf(value):
        raise ConfigError(f"{said} is not an amount in USD (it must be a finite number)",
                          hint="Unset the budget (None, or 'none' in the environment) for no budget.")
    if value < 0:
        raise ConfigError(f"{said}: a budget must not be negative")
    return value + 0.0  # (-0.0 is 0)


def suggest(need: float) -> str:
    step = 1.0 if need < 20 else 10.0
    return f"{(int(need / step) + 1) * step:g}"


def over_budget(name: str, budget: float, spent: float, said: str, held: float, cost: float, what: str,
                model: str | None) -> BudgetExceededError:
    """The error refusing ``cost`` that would cross the budget ``name`` ("session" or "total")."""
    pending = f" and {usd(held)} held by requests in flight" if held > 1e-12 else ""
    need = suggest(spent + held + cost)
    env = f"FALNB_BUDGET_{name.upper()}"
    return BudgetExceededError(
        f"{what} (~{usd(cost)}) would cross the {name} budget of {usd(budget)}: spent {said}{pending}; "
        "nothing was sent", model=model,
        hint=f"Raise it with %env {env}={need} or client.cache.ledger.budget_{name} = {need} (None removes it).")
