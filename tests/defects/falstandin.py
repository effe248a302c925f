"""A fal queue stand-in for the defect tests of issue 11, written from fal's documented behaviour
(``/work/shared/fal-protocol.md`` and ``/work/shared/models.md``), *not* from falnb's emulator.

In process, as an httpx transport (``httpx.MockTransport`` with an async handler)::

    standin = FalStandIn()
    client = falnb.Client(key="test-key", queue_url="https://queue.fal.run",
                          transport=standin.transport(), cache=tmp_path)

or over real HTTP, for other processes and for the real httpx/h11 stack::

    with standin.serve() as url:   # FALNB_QUEUE_URL=url, FAL_KEY=anything
        ...

What it does, as fal-protocol.md describes fal:

* submit ``POST /{model_id}`` answers 200 with ``request_id``, ``status_url``, ``response_url``,
  ``cancel_url`` (owner/app URL rule: ``fal-ai/flux-pro/v1.1-ultra`` -> ``fal-ai/flux-pro``,
  ``workflows``/``comfy`` keep three parts), ``status: IN_QUEUE`` and ``queue_position``;
* status answers **202** with ``IN_QUEUE`` + ``queue_position`` (0-based) or ``IN_PROGRESS`` (+ logs
  when asked), **200** ``COMPLETED`` (+ ``metrics``);
* the result before completion is **400** ``{"detail": "Request is still in progress"}``;
* every request without a seed gets a **random** seed (``random.randrange(2**32)``, fresh per
  process), echoed by the models that echo it (models.md); Bria's default seed is a fixed 5555;
* pictures are real PNG/JPEG/WebP bytes (Pillow), at the requested pixels (presets, ``{width,height}``,
  ratios at about one megapixel), served at fal-media-like URLs (``https://v3.fal.media/files/...``);
* the ledger bills one entry per request that completed; a request cancelled while queued is never
  billed (billing facts of fal-protocol.md); a size no model renders (a side above 14,142 px) completes
  and its result is the model's 422 ("a 422 may still be billed");
* the experimental status stream (``/status/stream``) is not offered (404): clients poll, as fal-js does.

Time never passes by itself, so no test races a clock.  A request moves one phase each time its
status is polled (queued -> running -> completed), never past ``hold_at`` ("IN_QUEUE" or
"IN_PROGRESS"), with at most ``concurrency`` running; ``step()`` moves every request one phase and
``finish()`` completes everything.  ``gate(name)`` holds a moment until the test opens it:
``"submit"`` (before fal has the request), ``"submit_answer"`` (fal queued it, the answer is late),
``"media"`` (an image download).  ``on[event] = fn`` calls ``fn(req)`` at ``"submitted"``,
``"status"``, ``"cancel"``, ``"held:<gate>"``: tests interrupt falnb at an exact phase with it.

Switches for what fal's docs leave open ("exact HTTP codes uncertain"; the issue's list):

* ``cancel_report``: how a cancelled request reports afterwards.  ``"never_completes"``: its status
  stays 202 and its result 400 "still in progress"; ``"completed_error"``: status 200 ``COMPLETED``
  with ``error``/``error_type: client_cancelled`` and a 4xx result; ``"result_4xx"``: status 200
  ``COMPLETED`` with no error, and the result answers 400 "Request is still in progress".
* ``running_cancel``: ``"ignored"`` (the app finishes anyway and fal bills it) or ``"honoured"``
  (it stops without pictures, reported as ``cancel_report`` says, not billed).
* ``lose_submit_answer``: fal queues the request but the answer never arrives (a read timeout).
* ``dns_fail``: every call fails as a DNS failure does (``httpx.ConnectError`` from ``gaierror``).
* ``refuse(model, input)``: return ``(status, body)`` to answer a submit with an error (422...).
* ``accepted_keys``: only these keys pass ``Authorization: Key <key>`` (else 401).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import math
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

__all__ = ["MODELS", "FalStandIn", "Gate", "Req"]

PRESETS = {"square_hd": (1024, 1024), "square": (512, 512), "portrait_4_3": (768, 1024),
           "portrait_16_9": (576, 1024), "landscape_4_3": (1024, 768), "landscape_16_9": (1024, 576)}


@dataclass(frozen=True)
class Model:
    """One endpoint as models.md describes it."""

    size_field: str = "image_size"
    default_size: str = "landscape_4_3"
    max_images: int | None = 4          # None: no num_images, one picture per request
    output: str = "images"              # "image": Bria's single object
    dims: bool = True                   # Recraft and Ideogram return files without width/height
    seed: bool = True                   # whether the output echoes the seed
    fmt: str = "jpeg"
    fixed_seed: int | None = None       # Bria: 5555 when none is sent


MODELS: dict[str, Model] = {
    "fal-ai/flux-pro/v1.1-ultra": Model("aspect_ratio", "16:9"),
    "fal-ai/flux-pro/v1.1": Model(),
    "fal-ai/flux/schnell": Model(),
    "fal-ai/bytedance/seedream/v3/text-to-image": Model(default_size="square_hd"),
    "fal-ai/bytedance/dreamina/v3.1/text-to-image": Model(default_size="square_hd"),
    "fal-ai/imagen4/preview": Model("aspect_ratio", "1:1", seed=False, fmt="png"),
    "fal-ai/recraft/v3/text-to-image": Model(default_size="square_hd", max_images=None, dims=False, seed=False,
                                             fmt="webp"),
    "fal-ai/ideogram/v3": Model(default_size="square_hd", max_images=8, dims=False, fmt="png"),
    "fal-ai/stable-diffusion-v35-medium": Model(),
    "bria/text-to-image/3.2": Model("aspect_ratio", "1:1", max_images=None, output="image", seed=False, fmt="png",
                                    fixed_seed=5555),
}
#: any other id: a generic image model (fal hosts many)
GENERIC = Model()
#: the largest side the stand-in's models render (a larger one gets the model's 422)
MAX_SIDE = 14142
_CTYPE = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_EXT = {"jpeg": "jpg", "png": "png", "webp": "webp"}


def app_of(model_id: str) -> str:
    """The owner/app part that status, result and cancel URLs carry (fal-protocol.md, URL rule)."""
    parts = model_id.strip("/").split("/")
    return "/".join(parts[:3] if parts[0] in ("workflows", "comfy") else parts[:2])


class Gate:
    """A moment the stand-in holds until the test calls ``open()``."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self.waiting = 0
        self.arrived = 0

    def open(self) -> None:
        self._open.set()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()


@dataclass
class Req:
    """One request as fal holds it."""

    id: str
    model: str
    input: dict[str, Any]
    seed: int
    images: int
    width: int
    height: int
    fmt: str
    key: str
    phase: str = "IN_QUEUE"
    cancelled: str | None = None        # "queued" or "running" when a cancel took effect
    cancel_asked: bool = False
    billed: bool = False
    polls: list[str] = field(default_factory=list)  # the phases answered to status polls

    @property
    def prompt(self) -> str:
        return str(self.input.get("prompt", ""))


class FalStandIn:
    def __init__(self, *, hold_at: str | None = None, concurrency: int | None = None,
                 cancel_report: str = "completed_error", running_cancel: str = "ignored",
                 seeds: Iterable[int] | None = None, accepted_keys: Iterable[str] | None = None) -> None:
        assert cancel_report in ("never_completes", "completed_error", "result_4xx"), cancel_report
        assert running_cancel in ("ignored", "honoured"), running_cancel
        self.hold_at, self.concurrency = hold_at, concurrency
        self.cancel_report, self.running_cancel = cancel_report, running_cancel
        self._seeds = iter(seeds) if seeds is not None else None
        self._rng = random.Random()  # fresh entropy: a new process draws new seeds, as fal does
        self.accepted_keys = set(accepted_keys) if accepted_keys is not None else None
        self.lose_submit_answer = False
        self.dns_fail = False
        self.refuse: Callable[[str, dict[str, Any]], tuple[int, Any] | None] | None = None
        self.media_base = "https://v3.fal.media"
        self.requests: list[Req] = []
        self.ledger: list[Req] = []       # one entry per billed request
        self.calls: list[tuple[str, str]] = []  # (method, path) of every call that reached the stand-in
        self.keys_seen: list[str] = []
        self.on: dict[str, Callable[[Req], None]] = {}
        self.gates: dict[str, Gate] = {}
        self.lock = threading.RLock()
        self._media: dict[str, tuple[Req, int]] = {}

    # -- the test's controls -----------------------------------------------------------------

    @property
    def submits(self) -> int:
        return len(self.requests)

    @property
    def billed(self) -> int:
        return len(self.ledger)

    def by_prompt(self, prompt: str) -> list[Req]:
        return [r for r in self.requests if r.prompt == prompt]

    def gate(self, name: str) -> Gate:
        with self.lock:
            g = self.gates[name] = Gate()
            return g

    def step(self) -> None:
        """Every request one phase further (respecting ``concurrency``, ignoring ``hold_at``)."""
        with self.lock:
            for r in self.requests:
                if r.phase == "IN_PROGRESS" and not r.cancelled:
                    self._complete(r)
            for r in self.requests:
                if r.phase == "IN_QUEUE" and not r.cancelled and self._free_slot():
                    r.phase = "IN_PROGRESS"

    def finish(self) -> None:
        """Open every gate and complete every request that was not cancelled (test teardown)."""
        with self.lock:
            self.hold_at = None
            for g in self.gates.values():
                g.open()
            for r in self.requests:
                if not r.cancelled and r.phase != "COMPLETED":
                    self._complete(r)

    def wait_until(self, cond: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
        """Wait for an event (not for time): fails only if it never happens."""
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise AssertionError(f"the stand-in never saw: {what or cond}")
            time.sleep(0.005)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.ahandle)

    def client(self, cache: Any, **kw: Any) -> Any:
        import falnb

        return falnb.Client(key=kw.pop("key", "test-key"), queue_url="https://queue.fal.run",
                            transport=self.transport(), cache=cache, **kw)

    # -- the state machine -----------------------------------------------------------------------

    def _free_slot(self) -> bool:
        running = sum(1 for r in self.requests if r.phase == "IN_PROGRESS" and not r.cancelled)
        return self.concurrency is None or running < self.concurrency

    def _complete(self, r: Req) -> None:
        r.phase = "COMPLETED"
        if not r.cancelled and not r.billed:
            r.billed = True
            self.ledger.append(r)

    def _advance(self, r: Req) -> None:
        """A poll moves the request one phase, never past ``hold_at``."""
        if r.cancelled:
            return
        if r.phase == "IN_QUEUE" and self.hold_at != "IN_QUEUE" and self._free_slot() and self._first_waiting(r):
            r.phase = "IN_PROGRESS"
        elif r.phase == "IN_PROGRESS" and self.hold_at not in ("IN_QUEUE", "IN_PROGRESS"):
            self._complete(r)

    def _first_waiting(self, r: Req) -> bool:
        waiting = [q for q in self.requests if q.phase == "IN_QUEUE" and not q.cancelled]
        return bool(waiting) and waiting[0] is r  # FIFO

    def _position(self, r: Req) -> int:
        ahead = 0
        for q in self.requests:
            if q is r:
                return ahead
            if q.phase == "IN_QUEUE" and not q.cancelled:
                ahead += 1
        return ahead

    # -- HTTP ---------------------------------------------------------------------------------------

    async def ahandle(self, request: httpx.Request) -> httpx.Response:
        """The MockTransport handler: gates wait without blocking the client's event loop."""
        await request.aread()
        if request.method == "POST" and "submit" in self.gates:  # fal has not got the request yet
            await self._await_gate("submit", None)
        resp, held = self._route(request)
        if held is not None:
            await self._await_gate(*held)
        return resp

    def handle(self, request: httpx.Request) -> httpx.Response:
        """The same, blocking (used by the HTTP server's threads)."""
        request.read()
        if request.method == "POST" and "submit" in self.gates:
            self._block_gate("submit", None)
        resp, held = self._route(request)
        if held is not None:
            self._block_gate(*held)
        return resp

    async def _await_gate(self, name: str, req: Req | None) -> None:
        g = self._enter_gate(name, req)
        try:
            while not g.is_open:
                await asyncio.sleep(0.002)
        finally:
            g.waiting -= 1

    def _block_gate(self, name: str, req: Req | None) -> None:
        g = self._enter_gate(name, req)
        try:
            while not g.is_open:
                g._open.wait(0.05)
        finally:
            g.waiting -= 1

    def _enter_gate(self, name: str, req: Req | None) -> Gate:
        g = self.gates[name]
        with self.lock:
            g.waiting += 1
            g.arrived += 1
        if req is not None:
            self._fire(f"held:{name}", req)
        return g

    def _fire(self, event: str, req: Req) -> None:
        fn = self.on.get(event)
        if fn is not None:
            fn(req)

    def _route(self, request: httpx.Request) -> tuple[httpx.Response, tuple[str, Req] | None]:
        if self.dns_fail:
            try:
                raise socket.gaierror(-2, "Name or service not known")
            except socket.gaierror as exc:
                raise httpx.ConnectError("[Errno -2] Name or service not known", request=request) from exc
        url = request.url
        path = url.path
        with self.lock:
            self.calls.append((request.method, path))
            if path.startswith("/files/"):
                return self._file(path), ("media", self._media[path][0]) if "media" in self.gates \
                    and path in self._media else None
            denied = self._auth(request)
            if denied is not None:
                return denied, None
            parts = path.strip("/").split("/")
            if "requests" in parts:
                i = parts.index("requests")
                app, rid, rest = "/".join(parts[:i]), parts[i + 1] if len(parts) > i + 1 else "", parts[i + 2:]
                return self._on_request(request, app, rid, rest), None
            if request.method == "POST":
                return self._submit(request, "/".join(parts))
            return _json(404, {"detail": "Not Found"}), None

    def _auth(self, request: httpx.Request) -> httpx.Response | None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme != "Key" or not key:
            return _json(401, {"detail": "Authentication is required"})
        self.keys_seen.append(key)
        if self.accepted_keys is not None and key not in self.accepted_keys:
            return _json(401, {"detail": "No user found for Key ID and Secret"})
        return None

    def _submit(self, request: httpx.Request, model: str) -> tuple[httpx.Response, tuple[str, Req] | None]:
        try:
            body = json.loads(request.content or b"{}")
        except ValueError:
            return _json(400, {"detail": "Request body is not valid JSON", "error_type": "bad_request"}), None
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            return _json(422, {"detail": [{"loc": ["body", "prompt"], "msg": "field required",
                                           "type": "missing"}]}), None
        if self.refuse is not None and (answer := self.refuse(model, body)) is not None:
            return _json(*answer), None
        spec = MODELS.get(model, GENERIC)
        seed = body.get("seed")
        if not isinstance(seed, int):
            seed = spec.fixed_seed if spec.fixed_seed is not None else (
                next(self._seeds) if self._seeds is not None else self._rng.randrange(2**32))
        w, h = _dims(spec, body)
        n = body.get("num_images", 1) if spec.max_images else 1
        req = Req(str(uuid.uuid4()), model, body, seed, n if isinstance(n, int) and n > 0 else 1, w, h,
                  str(body.get("output_format") or spec.fmt), request.headers["authorization"][4:])
        self.requests.append(req)
        self._fire("submitted", req)
        if self.lose_submit_answer:
            raise httpx.ReadTimeout("the submit's answer was lost", request=request)
        root = f"{request.url.scheme}://{request.url.netloc.decode()}/{app_of(model)}/requests/{req.id}"
        answer = _json(200, {"request_id": req.id, "status_url": f"{root}/status", "response_url": root,
                             "cancel_url": f"{root}/cancel", "status": "IN_QUEUE",
                             "queue_position": self._position(req)}, {"x-fal-request-id": req.id})
        return answer, ("submit_answer", req) if "submit_answer" in self.gates else None

    def _on_request(self, request: httpx.Request, app: str, rid: str, rest: list[str]) -> httpx.Response:
        req = next((r for r in self.requests if r.id == rid), None)
        if req is None or app_of(req.model) != app:
            if rest == ["cancel"]:
                return _json(404, {"status": "NOT_FOUND"})
            return _json(404, {"detail": f"Request {rid} not found"})
        if rest == ["cancel"] and request.method == "PUT":
            return self._cancel(req)
        if rest == ["status", "stream"]:
            return _json(404, {"detail": "Not Found"})
        if rest == ["status"] and request.method == "GET":
            return self._status(req, parse_qs(urlsplit(str(request.url)).query))
        if rest == [] and request.method == "GET":
            return self._result(req)
        return _json(405, {"detail": "Method Not Allowed"})

    def _cancel(self, req: Req) -> httpx.Response:
        req.cancel_asked = True
        self._fire("cancel", req)
        if req.phase == "COMPLETED":
            return _json(400, {"status": "ALREADY_COMPLETED"})
        if req.phase == "IN_QUEUE" or self.running_cancel == "honoured":
            req.cancelled = "queued" if req.phase == "IN_QUEUE" else "running"
        return _json(202, {"status": "CANCELLATION_REQUESTED"})

    def _reported_phase(self, req: Req) -> str:
        if req.cancelled and self.cancel_report != "never_completes":
            return "COMPLETED"
        return req.phase

    def _status(self, req: Req, query: dict[str, list[str]]) -> httpx.Response:
        phase = self._reported_phase(req)
        req.polls.append(phase)
        body: dict[str, Any] = {"status": phase, "request_id": req.id}
        if phase == "IN_QUEUE":
            body["queue_position"] = self._position(req)
        else:
            wants_logs = query.get("logs", [""])[-1].lower() in ("1", "true")
            body["logs"] = [{"message": f"Step 1/4 for {req.prompt[:40]}", "level": "INFO", "source": "user",
                             "timestamp": "2025-01-01T00:00:00Z"}] if wants_logs else None
        if phase == "COMPLETED":
            body["metrics"] = {"inference_time": 1.2}
            if req.cancelled and self.cancel_report == "completed_error":
                body["error"], body["error_type"] = "Request cancelled", "client_cancelled"
        self._fire("status", req)
        self._advance(req)  # the next poll sees the next phase
        return _json(200 if phase == "COMPLETED" else 202, body)

    def _result(self, req: Req) -> httpx.Response:
        if req.cancelled:
            if self.cancel_report == "completed_error":
                return _json(400, {"detail": "Request cancelled", "error_type": "client_cancelled"})
            return _json(400, {"detail": "Request is still in progress"})
        if req.phase != "COMPLETED":
            return _json(400, {"detail": "Request is still in progress"})
        if not (16 <= req.width <= MAX_SIDE and 16 <= req.height <= MAX_SIDE):
            # the model refuses the size; "a 422 may still be billed" (fal-protocol.md, Errors)
            return _json(422, {"detail": [{"loc": ["body", "image_size"], "type": "value_error",
                                           "msg": f"each side must be 16 to {MAX_SIDE} pixels"}]})
        return _json(200, self._output(req))

    def _output(self, req: Req) -> dict[str, Any]:
        spec = MODELS.get(req.model, GENERIC)
        images = []
        for i in range(req.images):
            path = f"/files/{req.id[:8]}{i}/{hashlib.sha1(f'{req.id}{i}'.encode()).hexdigest()[:12]}.{_EXT[req.fmt]}"
            self._media[path] = (req, i)
            item: dict[str, Any] = {"url": self.media_base + path, "content_type": _CTYPE[req.fmt],
                                    "file_name": path.rsplit("/", 1)[1]}
            if spec.dims:
                item["width"], item["height"] = req.width, req.height
            images.append(item)
        out: dict[str, Any] = {"image": images[0]} if spec.output == "image" else {"images": images}
        if spec.seed:
            out["seed"] = req.seed
        if req.model.startswith(("fal-ai/flux", "fal-ai/stable-diffusion")):
            out.update(timings={"inference": 1.2}, has_nsfw_concepts=[False] * req.images, prompt=req.prompt)
        if req.model.startswith("fal-ai/imagen4"):
            out["description"] = req.prompt
        return out

    def _file(self, path: str) -> httpx.Response:
        hit = self._media.get(path)
        if hit is None:
            return _json(404, {"detail": "Not Found"})
        req, i = hit
        data = picture(req.model, req.prompt, req.seed, i, req.width, req.height, req.fmt)
        return httpx.Response(200, content=data, headers={"content-type": _CTYPE[req.fmt]})

    # -- over real HTTP -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve the stand-in on 127.0.0.1 (HTTP/1.1, keep-alive); yields its base URL."""
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                host = self.headers.get("Host", "127.0.0.1")
                request = httpx.Request(self.command, f"http://{host}{self.path}",
                                        headers=[(k, v) for k, v in self.headers.items()], content=body)
                try:
                    resp = standin.handle(request)
                except httpx.TimeoutException:
                    self.close_connection = True  # the answer is lost: close without a word
                    return
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = do_PUT = _any

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        url = f"http://127.0.0.1:{server.server_address[1]}"
        old, self.media_base = self.media_base, url
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield url
        finally:
            self.finish()
            server.shutdown()
            server.server_close()
            self.media_base = old


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def _dims(spec: Model, body: dict[str, Any]) -> tuple[int, int]:
    """The pixels a request asks for: a preset, ``{width, height}``, or a ratio at about 1 MP."""
    if spec.size_field == "aspect_ratio":
        ratio = body.get("aspect_ratio") or spec.default_size
        try:
            a, b = (float(x) for x in str(ratio).split(":"))
        except ValueError:
            a, b = 1.0, 1.0
        w = math.sqrt(1024 * 1024 * a / b)
        return max(16, round(w / 16) * 16), max(16, round(w * b / a / 16) * 16)
    size = body.get("image_size", spec.default_size)
    if isinstance(size, dict):
        return int(size.get("width", 1024)), int(size.get("height", 768))
    return PRESETS.get(str(size), (1024, 768))


_PICTURES: dict[tuple[Any, ...], bytes] = {}


def picture(model: str, prompt: str, seed: int, index: int, width: int, height: int, fmt: str) -> bytes:
    """A real picture that depends on the model, the prompt, the seed and its index."""
    key = (model, prompt, seed, index, width, height, fmt)
    if key not in _PICTURES:
        from PIL import Image, ImageDraw

        digest = hashlib.sha256(repr(key[:4]).encode()).digest()
        img = Image.new("RGB", (width, height), tuple(digest[:3]))
        ImageDraw.Draw(img).rectangle((width // 4, height // 4, width // 2, height // 2), fill=tuple(digest[3:6]))
        buf = io.BytesIO()
        img.save(buf, {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}[fmt])
        _PICTURES[key] = buf.getvalue()
    return _PICTURES[key]
