"""Whether a submit could have left this machine, told apart from "sent, answer lost".

A submit that certainly did not reach fal may be sent again (or simply forgotten); one that may have
reached fal must never be sent again by itself (fal has no idempotency key).  What httpx raises does
not always say which: a Ctrl-C (a cancelled task) carries no detail at all.  :class:`SendTrace` follows
one submit through httpcore's trace events: a request whose headers were never being written (still
connecting, or refused by h11 before a byte went out) was not sent.  A transport that does not trace
(the in-process emulator, a test's mock) is assumed to have delivered what it was handed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx

from .._exceptions import ParameterError

__all__ = ["NOT_SENT", "SendTrace", "check_headers", "never_sent", "resubmit_hints"]

#: httpx errors raised before a single byte of the request left this machine
NOT_SENT: tuple[type[BaseException], ...] = (
    httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol,
    httpx.LocalProtocolError, httpx.InvalidURL, UnicodeEncodeError)


class SendTrace:
    """The ``trace`` extension of one submit, plus the mark :class:`_KeyAuth` sets as the request
    is handed to the transport: what happened to the request's bytes."""

    __slots__ = ("handed", "refused", "stopped", "traced", "writing")

    def __init__(self) -> None:
        #: the call that made this submit stopped (set by the stopper, kept across attempts): the submit
        #: must not send another attempt (a retry after a 429) once fal has answered the current one
        self.stopped = False
        self.reset()

    def reset(self) -> None:
        """A fresh record, for the next attempt of the same submit."""
        #: the request was handed to the transport (after this, only a trace can prove it stayed here)
        self.handed = False
        #: httpcore reported at least one event: the transport traces
        self.traced = False
        #: httpcore started writing the request's headers
        self.writing = False
        #: h11 refused the headers before writing them (an invalid name or value)
        self.refused = False

    async def __call__(self, name: str, info: Mapping[str, Any]) -> None:
        self.traced = True
        if name.endswith(".send_request_headers.started"):
            self.writing = True
        elif name.endswith(".send_request_headers.failed") and type(info.get("exception")).__name__ == \
                "LocalProtocolError":
            self.refused = True

    @property
    def may_have_left(self) -> bool:
        """False only when no byte of the request can have reached fal."""
        if not self.handed:
            return False
        if not self.traced:
            return True  # a transport that does not trace: assume it delivered what it was handed
        return self.writing and not self.refused


def never_sent(exc: BaseException, trace: SendTrace) -> bool:
    """Whether ``exc``, raised while submitting, proves that fal never got the request."""
    return isinstance(exc, NOT_SENT) or not trace.may_have_left


def resubmit_hints(check: str) -> tuple[str, dict[str, str]]:
    """The hint for a submit that may have reached fal, as the API words it and as a cell does
    (``{"cell": ...}``, see :meth:`FalnbError.for_front_end`)."""
    api = f"{check} re-run with refresh=True to submit anew (it may be billed twice)."
    cell = f"{check} re-run the cell with --refresh to submit anew (it may be billed twice)."
    return api, {"cell": cell}


#: an HTTP header name (RFC 9110 token) and a value httpx can send (visible ASCII, spaces and tabs inside)
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?|")


def check_headers(headers: Mapping[str, str] | None, model: str | None = None) -> None:
    """Refuse headers that cannot be sent as they are (a name that is not a token; a value with a line
    break, a control or a non-ASCII character) before anything is sent: a short error, nothing billed."""
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ParameterError(f"extra_headers: {name!r} is not a valid HTTP header name", model=model,
                                 field="extra_headers", hint="Header names are letters, digits and !#$%&'*+-.^_`|~.")
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            raise ParameterError(f"extra_headers: the value of {name} cannot be sent in an HTTP header "
                                 f"({_why(value)})", model=model, field="extra_headers",
                                 hint="Header values are plain ASCII on one line; nothing was sent.")


def _why(value: object) -> str:
    if not isinstance(value, str):
        return f"a {type(value).__name__}, not text"
    if any(c in value for c in "\r\n"):
        return "a line break"
    if any(ord(c) > 126 for c in value):
        return "a non-ASCII character"
    return "a control character, or spaces at its ends"
