"""falnb's exceptions.

Every error falnb raises derives from :class:`FalnbError`, and renders as one or two readable
lines in IPython (``_render_traceback_``) while staying an ordinary exception for ``except``
and ``pytest.raises``.  Set ``FALNB_TRACEBACKS=1`` (or ``%config FalMagics.short_errors = False``)
to see full tracebacks.

Hierarchy::

    FalnbError
    ├── ConfigError                  falnb is not set up to send (bad URL, unreadable config)
    │   └── MissingKeyError          no fal key found; nothing was sent
    ├── InputError (ValueError)      a mistake seen before sending; nothing was sent
    │   ├── UnknownModelError
    │   ├── SizeError
    │   └── ParameterError
    ├── BudgetExceededError          the estimate would cross a budget; nothing was sent
    ├── FalError                     fal answered with an error
    │   ├── FalValidationError       422: the model refused the input (may be billed)
    │   │   └── ContentPolicyError   the input or output broke the content policy
    │   ├── AuthenticationError      401/403: the key was refused
    │   ├── RateLimitError           429
    │   ├── RequestNotFoundError     404: unknown endpoint, or a request fal no longer holds
    │   └── FalServerError           5xx, gateway errors (never billed)
    ├── TransportError               the network failed
    │   └── SubmitUncertainError     a submit may have reached fal; it was not retried
    ├── RequestTimeoutError          a wait passed its bound (the request may still run)
    ├── RequestCancelledError        the request was cancelled (by you or by an interrupt)
    │   └── Interrupted (also a KeyboardInterrupt)  Ctrl-C / kernel interrupt while waiting
    └── CacheError                   the cache could not be read or written
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ._redact import hide_credentials

__all__ = [
    "AuthenticationError",
    "BudgetExceededError",
    "CacheError",
    "ConfigError",
    "ContentPolicyError",
    "FalError",
    "FalServerError",
    "FalValidationError",
    "FalnbError",
    "InputError",
    "Interrupted",
    "MissingKeyError",
    "ParameterError",
    "RateLimitError",
    "RequestCancelledError",
    "RequestNotFoundError",
    "RequestTimeoutError",
    "SizeError",
    "SubmitUncertainError",
    "TransportError",
    "UnknownModelError",
]


class FalnbError(Exception):
    """Base of every falnb error.  ``str(err)`` is the readable message."""

    #: shown before the message when rendered in IPython
    label = "falnb error"

    def __init__(self, message: str, *, model: str | None = None, hint: str | None = None,
                 hints: dict[str, str] | None = None) -> None:
        message = hide_credentials(message)  # (a URL with user:password@ in it, see falnb._redact)
        super().__init__(message)
        self.message = message
        self.model = model
        self.hint = None if hint is None else hide_credentials(hint)
        #: the hint as another front end words it: ``{"cell": ...}`` names a ``%%falimage`` option
        #: (``--refresh``) where the API's hint names a keyword (``refresh=True``)
        self.hints = {k: hide_credentials(v) for k, v in (hints or {}).items()}

    def for_front_end(self, name: str) -> FalnbError:
        """This error worded for a front end (``"cell"``: the magics); returns itself."""
        if name in self.hints:
            self.hint = self.hints[name]
        return self

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"

    def _render_traceback_(self) -> list[str]:
        if os.environ.get("FALNB_TRACEBACKS", "") not in ("", "0"):
            import traceback

            return traceback.format_exception(type(self), self, self.__traceback__)
        name = type(self).__name__
        if not _no_color():
            name = "\x1b[31m" + name + "\x1b[0m"
        lines = [f"{name}: {self.message}"]
        if self.hint:
            lines.append(self.hint)
        return lines


def _no_color() -> bool:
    """No colour codes under ``ipython --colors=NoColor`` (``%colors nocolor``) or with ``NO_COLOR`` set."""
    if os.environ.get("NO_COLOR"):
        return True
    ipython = sys.modules.get("IPython")  # IPython calls _render_traceback_: it is loaded already
    shell = ipython.get_ipython() if ipython is not None else None
    return str(getattr(shell, "colors", "")).lower() == "nocolor"


class ConfigError(FalnbError):
    """falnb is not configured to send this request."""


class MissingKeyError(ConfigError):
    """No fal key was found; found before any request was made."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message or "no fal key found.",
            hint="Set FAL_KEY (in a notebook: %env FAL_KEY=...), or FAL_KEY_ID and FAL_KEY_SECRET, "
            "or FAL_AI_API_KEY; or run offline on the emulator with FALNB_OFFLINE=1.",
        )


class InputError(FalnbError, ValueError):
    """A mistake falnb can see before sending.  Nothing was sent, nothing is billed."""

    def __init__(self, message: str, *, model: str | None = None, field: str | None = None,
                 hint: str | None = None, hints: dict[str, str] | None = None) -> None:
        super().__init__(message, model=model, hint=hint, hints=hints)
        self.field = field


class UnknownModelError(InputError):
    """The model name is neither an alias nor a fal endpoint id."""


class SizeError(InputError):
    """The size cannot be understood or is out of range for the model."""


class ParameterError(InputError):
    """A model parameter has the wrong type or a value the model does not allow."""


class BudgetExceededError(FalnbError):
    """The request's estimate would cross a spending budget; nothing was sent."""


class FalError(FalnbError):
    """fal answered with an error.  Carries the HTTP status, fal's message and the field."""

    def __init__(self, message: str, *, model: str | None = None, status_code: int | None = None,
                 field: str | None = None, error_type: str | None = None, request_id: str | None = None,
                 detail: Any = None, hint: str | None = None) -> None:
        super().__init__(message, model=model, hint=hint)
        self.status_code = status_code
        self.field = field
        self.error_type = error_type
        self.request_id = request_id
        self.detail = detail


class FalValidationError(FalError):
    """The model refused the input (422).  fal may bill such a request."""


class ContentPolicyError(FalValidationError):
    """The prompt or the picture broke the model's content policy."""


class AuthenticationError(FalError):
    """fal refused the key (401/403)."""


class RateLimitError(FalError):
    """fal asked to slow down (429)."""


class RequestNotFoundError(FalError):
    """Unknown endpoint, or a request whose result fal no longer holds."""


class FalServerError(FalError):
    """A 5xx from fal or its gateway.  fal does not bill these."""


class TransportError(FalnbError):
    """The network failed before fal could answer."""


class SubmitUncertainError(TransportError):
    """A submit was sent but its answer was lost: fal may have queued (and will bill) it.

    falnb never resubmits such a request by itself.
    """


class RequestTimeoutError(FalnbError):
    """A wait passed its bound.  The fal request may still be running."""


class RequestCancelledError(FalnbError):
    """The request was cancelled."""


class Interrupted(RequestCancelledError, KeyboardInterrupt):
    """Ctrl-C or a kernel interrupt while waiting: fal's cancel was sent for requests still pending.

    It is a ``KeyboardInterrupt`` (loops stop as usual) and a falnb error (it reads in one line).
    """


class CacheError(FalnbError):
    """The cache could not be read or written."""
