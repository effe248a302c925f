"""fal's status stream (server-sent events), read until COMPLETED; polling is the fallback.

fal-js calls the stream experimental, so :class:`~falnb.fal._queue.QueueClient` falls back to polling
whenever the stream is missing, slow to open, or breaks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping

import httpx

from ._loop import within
from ._status import Status, status_from

__all__ = ["STREAM_IDLE", "StreamUnavailable", "read_stream"]

#: longest silence between two events of the status stream before falling back to polling
STREAM_IDLE = 60.0


class StreamUnavailable(Exception):
    """fal offers no status stream here (or it did not open in time): poll instead."""


async def read_stream(http: httpx.AsyncClient, status_url: str, headers: Mapping[str, str], auth: httpx.Auth,
                      report: Callable[[Status], None]) -> Status | None:
    """The final status from the stream, reporting each one; None when the stream ended before it."""
    url = status_url.rstrip("/") + "/stream"
    # events may be minutes apart (a long queue): a long read timeout between them, but the
    # stream must open (connect, and the answer's headers) within the client's own http timeout
    bound = http.timeout
    request = http.build_request(
        "GET", url, headers={**headers, "Accept": "text/event-stream"}, params={"logs": "1"},
        timeout=httpx.Timeout(connect=bound.connect, read=STREAM_IDLE, write=bound.write, pool=bound.pool))
    try:
        resp = await within(http.send(request, stream=True, auth=auth), bound.read, discard=_close)
    except asyncio.TimeoutError:
        raise StreamUnavailable() from None
    try:
        if resp.status_code != 200 or "text/event-stream" not in resp.headers.get("content-type", ""):
            raise StreamUnavailable()
        lines = resp.aiter_lines()
        async for line in lines:
            if not line.startswith("data:"):
                continue
            st = status_from(json.loads(line[5:].strip()))
            report(st)
            if st.done:
                await _drain(lines)
                return st
    finally:
        await resp.aclose()
    return None


async def _close(resp: httpx.Response) -> None:
    await resp.aclose()


async def _drain(lines: AsyncIterator[str]) -> None:
    """Read the stream to its end (briefly) so its connection goes back to the pool for reuse."""

    async def rest() -> None:
        async for _ in lines:
            pass

    try:
        await within(rest(), 0.05)
    except (asyncio.TimeoutError, httpx.HTTPError):
        pass
