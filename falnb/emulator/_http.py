"""The framework-free answer type shared by the app, the in-process transport and the HTTP server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["EventStream", "Handler", "Response", "json_response", "key_refusal", "lost_by_a_gateway"]


class Handler(Protocol):
    """Anything that answers an HTTP request the emulator's way (the :class:`~falnb.emulator.Emulator`)."""

    def handle(self, method: str, url: str, headers: Mapping[str, str] | None = None,
               body: bytes = b"") -> Response: ...


class EventStream:
    """Server-sent events: one ``data: {status JSON}`` per change, ending after COMPLETED.

    ``poll()`` returns the current status (None once the request is gone) and whether it is final.
    Iterate synchronously (the HTTP server) or asynchronously (the in-process transport).
    """

    def __init__(self, poll: Callable[[], tuple[dict[str, Any] | None, bool]], interval: float = 0.25,
                 max_seconds: float = 3600.0, next_change: Callable[[], float] | None = None) -> None:
        self._poll = poll
        #: the longest sleep between checks; ``next_change`` (seconds until the status may change)
        #: wakes the stream right at a change instead of on a polling grid, and idle streams cost nothing
        self._interval = interval
        self._next_change = next_change
        self._max = max_seconds
        self._last: str | None = None

    def _step(self) -> tuple[bytes | None, bool]:
        status, final = self._poll()
        if status is None:
            return None, True
        text = json.dumps(status)
        event = None
        if text != self._last:
            self._last = text
            event = f"data: {text}\n\n".encode()
        return event, final

    def _pause(self) -> float:
        if self._next_change is None:
            return min(self._interval, 0.005)
        # just past the change, bounded: a cancel or a knob change can move the schedule
        return max(0.0005, min(self._interval, self._next_change() + 0.0005))

    def __iter__(self) -> Iterator[bytes]:
        deadline = time.monotonic() + self._max
        while True:
            event, done = self._step()
            if event is not None:
                yield event
            if done or time.monotonic() > deadline:
                return
            time.sleep(self._pause())

    async def __aiter__(self) -> AsyncIterator[bytes]:
        deadline = time.monotonic() + self._max
        while True:
            event, done = self._step()
            if event is not None:
                yield event
            if done or time.monotonic() > deadline:
                return
            await asyncio.sleep(self._pause())


@dataclass
class Response:
    """One answer of the emulator app.

    ``delay``: seconds to wait before answering (the request was already acted on).
    ``drop``: close the connection without answering at all.
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | EventStream = b""
    delay: float = 0.0
    drop: bool = False

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self) -> Any:
        assert isinstance(self.body, bytes)
        return json.loads(self.body)


def json_response(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, [("content-type", "application/json"), *(headers or [])],
                    json.dumps(payload).encode())


def key_refusal(hdrs: Mapping[str, str], api_keys: frozenset[str] | None) -> Response | None:
    """fal's 401 for a call without ``Authorization: Key <key>`` (or with a key not in ``api_keys``), else None."""
    scheme, _, key = hdrs.get("authorization", "").partition(" ")
    if scheme.lower() != "key" or not key.strip():
        return json_response(401, {"detail": "Authentication is required: 'Authorization: Key <key>'."})
    if api_keys is not None and key.strip() not in api_keys:
        return json_response(401, {"detail": "No user found for Key ID and Secret"})
    return None


def lost_by_a_gateway() -> Response:
    """A gateway between the client and fal (a proxy, a load balancer: not fal's nginx) that lost fal's answer:
    a plain-text 502 without ``x-fal-request-id`` (fault ``lost_submit_gateway_rate``)."""
    return Response(502, [("content-type", "text/plain")], b"Bad Gateway")
