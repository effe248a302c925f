"""httpx transports that hand requests to an :class:`~falnb.emulator.Emulator` without a socket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx

from ._http import EventStream, Handler, Response

__all__ = ["AsyncEmulatorTransport", "EmulatorTransport"]

_DROPPED = "Server disconnected without sending a response."


class _AsyncEvents(httpx.AsyncByteStream):
    def __init__(self, events: EventStream) -> None:
        self._events = events

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._events:
            yield chunk


class _SyncEvents(httpx.SyncByteStream):
    def __init__(self, events: EventStream) -> None:
        self._events = events

    def __iter__(self) -> Iterator[bytes]:
        yield from self._events


def _answer(request: httpx.Request, resp: Response, sync: bool) -> httpx.Response:
    if resp.drop:
        raise httpx.RemoteProtocolError(_DROPPED, request=request)
    if isinstance(resp.body, EventStream):
        stream: httpx.AsyncByteStream | httpx.SyncByteStream = (
            _SyncEvents(resp.body) if sync else _AsyncEvents(resp.body))
        return httpx.Response(resp.status, headers=resp.headers, stream=stream, request=request)
    return httpx.Response(resp.status, headers=resp.headers, content=resp.body, request=request)


def _timeout(request: httpx.Request) -> float | None:
    value = request.extensions.get("timeout", {}).get("read")
    return float(value) if isinstance(value, (int, float)) else None


class AsyncEmulatorTransport(httpx.AsyncBaseTransport):
    """Routes requests for any host into the emulator (answer delays via ``asyncio.sleep``)."""

    def __init__(self, emulator: Handler) -> None:
        self.emulator = emulator

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        resp = self.emulator.handle(request.method, str(request.url), dict(request.headers), body)
        if resp.delay > 0:
            read = _timeout(request)
            if read is not None and read < resp.delay:
                await asyncio.sleep(read)
                raise httpx.ReadTimeout("timed out waiting for the emulator's answer", request=request)
            await asyncio.sleep(resp.delay)
        return _answer(request, resp, sync=False)


class EmulatorTransport(httpx.BaseTransport):
    """The synchronous twin of :class:`AsyncEmulatorTransport`."""

    def __init__(self, emulator: Handler) -> None:
        self.emulator = emulator

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        resp = self.emulator.handle(request.method, str(request.url), dict(request.headers), body)
        if resp.delay > 0:
            read = _timeout(request)
            if read is not None and read < resp.delay:
                time.sleep(read)
                raise httpx.ReadTimeout("timed out waiting for the emulator's answer", request=request)
            time.sleep(resp.delay)
        return _answer(request, resp, sync=True)
