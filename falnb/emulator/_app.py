"""The emulator's HTTP app, framework-free: ``App.handle(method, url, headers, body) -> Response``.

Routes (``{app}`` is ``owner/app``, or ``workflows/owner/app`` / ``comfy/owner/app``):

- ``POST /{model_id}``                         submit (the full id, sub-path included)
- ``GET  /{app}/requests/{id}/status``         202 while queued or running, 200 when done
- ``GET  /{app}/requests/{id}/status/stream``  server-sent events
- ``GET  /{app}/requests/{id}``                the result (or the model's error)
- ``PUT  /{app}/requests/{id}/cancel``
- ``GET  /files/{id}/{index}.{ext}``           the pictures (public, like fal's CDN)
- ``GET  /_emulator/ledger``, ``GET|POST /_emulator/config``, ``POST /_emulator/reset``

Decisions where fal's documentation is unsure (fal-client 1.0.3 works with all of them):

- Cancel: 202 ``{"status": "CANCELLATION_REQUESTED"}`` for a queued or running request (a queued
  one is removed at once; the synthetic runner stops a running one at once, or, with the knob
  ``running_cancel="ignored"``, runs on and bills); 400 ``{"status": "ALREADY_COMPLETED"}``; 404
  ``{"status": "NOT_FOUND"}``.
- A cancelled request reports as the knob ``cancel_report`` says (fal's docs leave it open; never billed):
  ``completed_error`` (default): status 200 ``COMPLETED`` with ``error``/``error_type: "client_cancelled"``,
  result 499 ``{"detail": "Request cancelled", "error_type": "client_cancelled"}``; ``never_completes``:
  status 202 at the phase it was cancelled in, for good, result 400 "Request is still in progress";
  ``result_400`` / ``result_499``: status 200 ``COMPLETED`` without an error, the result that 4xx.
- A request that could not start before its ``X-Fal-Request-Timeout``: status 200 ``COMPLETED`` with
  ``error_type: "request_timeout"``; result 504 with ``X-Fal-Request-Timeout-Type: user``. Never billed.
- A result asked for before the request completed: 400 ``{"detail": "Request is still in progress"}``.
- ``logs`` is always a key of IN_PROGRESS/COMPLETED statuses (fal-client reads it): null unless
  ``?logs=1``/``logs=true`` was asked.
- One queue for the whole account (all models share the concurrency limit); ``queue_position``
  counts the waiting requests ahead.
- Status, result and cancel under another owner/app than the request's: 404 like an unknown request.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .._exceptions import FalnbError
from ..catalog._catalog import Catalog, ModelSpec, default_catalog
from ..catalog._prices import PriceStore
from ..catalog._sizes import dims_of_input
from ._edits import Storage, checked_plan
from ._http import EventStream, Response, json_response, key_refusal, lost_by_a_gateway
from ._images import CONTENT_TYPES, EXTENSIONS
from ._knobs import Faults, Settings, apply_knobs, knobs_dict
from ._ledger import Ledger
from ._outputs import Plan, build_output
from ._platform import PLATFORM_PATHS, Platform
from ._state import Job, Outcome, Queue, Snapshot
from ._validate import detail

__all__ = ["App", "app_of"]

_NAMESPACES = ("workflows", "comfy")
_REQ_RE = re.compile(r"^/(?P<app>(?:(?:workflows|comfy)/)?[^/]+/[^/]+)/requests/(?P<id>[^/]+)"
                     r"(?P<rest>/status|/status/stream|/cancel)?/?$")
_FILE_RE = re.compile(r"^/files/(?P<id>[^/]+)/(?P<index>\d+)\.(?P<ext>[a-z]+)$")
_GATEWAY_TITLES = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable", 504: "504 Gateway Time-out"}
_MAX_FILE_PLANS = 100_000
_TIMEOUT_MSG = "Request timed out before it could start"


def app_of(model_id: str) -> str:
    """The ``owner/app`` part of a model id that its queue URLs carry (the URL rule)."""
    parts = model_id.strip("/").split("/")
    if parts[0] in _NAMESPACES:
        return "/".join(parts[:3])
    return "/".join(parts[:2])


class App:
    """The state and request handling of one emulated fal account."""

    def __init__(self, settings: Settings, faults: Faults, catalog: Catalog | None = None,
                 clock: Any = None) -> None:
        self.settings = settings
        self.faults = faults
        self.platform = Platform()
        # its ledger bills what its own price list says (/v1/models/pricing), as fal does, not only the models
        # falnb prices (ttl 0: a test may change the list)
        self.catalog = catalog or default_catalog().using(self.platform.store(),
                                                          PriceStore(None, self.platform.unit_price, ttl=0.0))
        self.ledger = Ledger(sync=lambda: self.queue.advance())
        self.queue = Queue(settings, self.ledger, clock)
        self._files: OrderedDict[str, Plan] = OrderedDict()
        self.storage = Storage(lambda: self.queue.clock(), self._auth)
        self._reseed()

    def _reseed(self) -> None:
        # unseeded, request ids (and so the seeds picked for requests that send none) come from os.urandom:
        # fresh in every process and in a forked child, like fal's
        self._ids = random.Random(self.settings.seed) if self.settings.seed is not None else None
        self._rng = random.Random(self.faults.seed)
        self._burst_left = self.faults.rate_limit_burst
        self._burst_seen = self.faults.rate_limit_burst

    def reset(self) -> None:
        with self.queue.lock:
            self.queue.clear()
            self.ledger.clear()
            self._files.clear()
            self.storage.reset()
            self._reseed()

    def configure(self, knobs: Mapping[str, Any]) -> None:
        with self.queue.lock:
            self.queue.advance()  # requests so far keep the schedule they had
            apply_knobs(self.settings, self.faults, knobs)
            if "seed" in knobs:
                self._ids = random.Random(self.settings.seed) if self.settings.seed is not None else None
            if "seed" in (knobs.get("faults") or {}):
                self._rng = random.Random(self.faults.seed)
            self._sync_burst()

    def _sync_burst(self) -> None:
        # a changed rate_limit_burst knob arms a new burst
        if self.faults.rate_limit_burst != self._burst_seen:
            self._burst_left = self._burst_seen = self.faults.rate_limit_burst

    def _roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        return rate >= 1 or self._rng.random() < rate

    # -- entry point --------------------------------------------------------------------

    def handle(self, method: str, url: str, headers: Mapping[str, str] | None = None,
               body: bytes = b"") -> Response:
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        parts = urlsplit(url)
        base = f"{parts.scheme or 'http'}://{parts.netloc or 'localhost'}"
        path = parts.path or "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        method = method.upper()
        with self.queue.lock:
            if path.startswith("/_emulator/"):
                return self._control(method, path, body)
            if path in PLATFORM_PATHS:
                return self.platform.handle(method, path, parts.query, hdrs)
            if m := _FILE_RE.match(path):
                return self._file(method, m["id"], int(m["index"]), m["ext"])
            if m := _REQ_RE.match(path):
                return self._request_route(method, m["app"], m["id"], m["rest"] or "", query, hdrs, base)
            if method == "POST":
                return self._submit(path.strip("/"), hdrs, body, base)
            return json_response(404, {"detail": "Not Found"})

    # -- control ------------------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> Response:
        if path == "/_emulator/ledger" and method == "GET":
            return json_response(200, self.ledger.to_json())
        if path in ("/_emulator/config", "/_emulator/reset") and method in ("GET", "POST"):
            knobs: Any = {}
            if method == "POST" and body.strip():
                try:
                    knobs = json.loads(body)
                except ValueError:
                    return json_response(400, {"detail": "body must be JSON"})
                if not isinstance(knobs, dict):
                    return json_response(400, {"detail": "body must be a JSON object"})
            if path == "/_emulator/reset":
                if method != "POST":
                    return json_response(405, {"detail": "Method Not Allowed"})
                self.reset()
            try:
                self.configure(knobs)
            except ValueError as exc:
                return json_response(400, {"detail": str(exc)})
            return json_response(200, knobs_dict(self.settings, self.faults))
        return json_response(404, {"detail": "Not Found"})

    # -- files --------------------------------------------------------------------------

    def _file(self, method: str, request_id: str, index: int, ext: str) -> Response:
        plan = self._files.get(request_id)
        if (method not in ("GET", "HEAD") or plan is None or index >= plan.images
                or ext != EXTENSIONS[plan.fmt]):
            return json_response(404, {"detail": "File not found"})
        data = plan.image_bytes(index)
        headers = [("content-type", CONTENT_TYPES[plan.fmt]), ("cache-control", "public, max-age=604800")]
        return Response(200, headers, data if method == "GET" else b"", delay=self.faults.file_answer_delay)

    # -- faults -------------------------------------------------------------------------

    def _gateway(self) -> Response:
        code = self._rng.choice((502, 503, 504))
        title = _GATEWAY_TITLES[code]
        html = (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
                f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
        return Response(code, [("content-type", "text/html"), ("server", "nginx")], html.encode())

    @staticmethod
    def _infra(status: int, error_type: str, detail: str, request_id: str | None,
               extra: list[tuple[str, str]] | None = None) -> Response:
        headers = [("x-fal-error-type", error_type), *(extra or [])]
        if request_id:
            headers.append(("x-fal-request-id", request_id))
        return json_response(status, {"detail": detail, "error_type": error_type}, headers)

    def _auth(self, hdrs: Mapping[str, str]) -> Response | None:
        return key_refusal(hdrs, self.settings.api_keys)

    # -- submit -------------------------------------------------------------------------

    def _submit(self, model_id: str, hdrs: Mapping[str, str], body: bytes, base: str) -> Response:
        if self._roll(self.faults.gateway_submit_rate):
            return self._gateway()
        if denied := self._auth(hdrs):
            return denied
        spec = self._spec(model_id)
        if spec is None:
            return json_response(404, {"detail": f"Application '{model_id}' not found"})
        self._sync_burst()
        if self._burst_left <= 0 and self._roll(self.faults.rate_limit_burst_rate):
            self._burst_left = max(1, self.faults.rate_limit_burst_size)
        if self._burst_left > 0:
            self._burst_left -= 1
            return json_response(429, {"detail": "Too many requests: rate limit exceeded",
                                       "error_type": "rate_limited"})
        try:
            inputs = json.loads(body or b"{}")
        except ValueError:
            return self._infra(400, "bad_request", "Request body is not valid JSON", None)
        if not isinstance(inputs, dict):
            return self._infra(400, "bad_request", "Request body must be a JSON object", None)
        deadline: float | None = None
        now = self.queue.advance()
        if "x-fal-request-timeout" in hdrs:
            try:
                deadline = now + float(hdrs["x-fal-request-timeout"])
            except ValueError:
                return self._infra(400, "bad_request", "X-Fal-Request-Timeout must be seconds", None)
        request_id = str(uuid.uuid4() if self._ids is None else uuid.UUID(int=self._ids.getrandbits(128), version=4))
        job = self._make_job(spec, inputs, request_id, now, deadline)
        self.queue.add(job)
        if job.plan is not None and job.outcome == "ok":
            self._files[request_id] = job.plan
            while len(self._files) > _MAX_FILE_PLANS:
                self._files.popitem(last=False)
        if self._roll(self.faults.lost_submit_gateway_rate):
            return lost_by_a_gateway()  # (queued, and billed when it completes)
        urls = self._urls(base, job)
        reply: dict[str, Any] = {"request_id": request_id, **urls, **({} if self.settings.submit_answer != "full" else {
            "status": "IN_QUEUE", "queue_position": self.queue.position_of(request_id), "logs": None, "metrics": {}})}
        resp = json_response(200, reply, [("x-fal-request-id", request_id)])
        resp.delay = self.faults.submit_answer_delay
        return resp

    def _spec(self, model_id: str) -> ModelSpec | None:
        parts = model_id.split("/")
        if len(parts) < (3 if parts[0] in _NAMESPACES else 2) or any(not p for p in parts):
            return None
        try:
            spec = self.catalog.resolve(model_id)
        except FalnbError:
            return None
        return spec if spec.id == model_id else None  # aliases are falnb's, not fal's

    def _make_job(self, spec: ModelSpec, inputs: dict[str, Any], request_id: str, now: float,
                  deadline: float | None) -> Job:
        errors, plan = checked_plan(spec, inputs, request_id, self.settings, self.faults, self.storage.fetch)
        down = spec.id in self.faults.infra_error_models or self._roll(self.faults.infra_error_rate)
        outcome: Outcome = "invalid" if errors else "infra_error" if down else "ok"
        cost = None
        if plan is not None:
            cost = spec.estimate(inputs, plan.images, plan.width, plan.height)
        elif not errors:
            dims = dims_of_input(spec, inputs)
            cost = spec.estimate(inputs, 1, *(dims or (None, None)))
        duration = self.settings.model_latency.get(spec.id, self.settings.latency)
        return Job(request_id=request_id, model_id=spec.id, app=app_of(spec.id), inputs=inputs, submitted=now,
                   submitted_wall=time.time(), duration=duration, outcome=outcome, plan=plan, errors=errors,
                   cost=cost, deadline=deadline)

    @staticmethod
    def _urls(base: str, job: Job) -> dict[str, str]:
        root = f"{base}/{job.app}/requests/{job.request_id}"
        return {"response_url": root, "status_url": root + "/status", "cancel_url": root + "/cancel"}

    # -- status, result, cancel ---------------------------------------------------------

    def _request_route(self, method: str, app: str, request_id: str, rest: str, query: Mapping[str, str],
                       hdrs: Mapping[str, str], base: str) -> Response:
        expected = {"": "GET", "/status": "GET", "/status/stream": "GET", "/cancel": "PUT"}[rest]
        if method != expected:
            return json_response(405, {"detail": "Method Not Allowed"})
        kind = "result" if rest == "" else ("status" if rest.startswith("/status") else "cancel")
        if kind == "status" and self._roll(self.faults.gateway_status_rate):
            return self._gateway()
        if kind == "result" and self._roll(self.faults.gateway_result_rate):
            return self._gateway()
        if denied := self._auth(hdrs):
            return denied
        if kind == "status" and rest == "/status" and self._roll(self.faults.drop_status_rate):
            return Response(0, drop=True)
        if kind in ("status", "result") and self._roll(self.faults.server_error_rate):
            return self._infra(500, "runner_server_error", "Internal Server Error", request_id)
        snap = self.queue.get(request_id)
        if snap is None or snap.job.app != app:
            if kind == "cancel":
                return json_response(404, {"status": "NOT_FOUND"})
            return json_response(404, {"detail": f"Request {request_id} not found"})
        rid = [("x-fal-request-id", request_id)]
        if kind == "cancel":
            if self._cancelled_for_good(snap.job):  # it still looks queued or running: cancel again
                return json_response(202, {"status": "CANCELLATION_REQUESTED"}, rid)
            outcome = self.queue.cancel(request_id)
            code = {"CANCELLATION_REQUESTED": 202, "ALREADY_COMPLETED": 400, "NOT_FOUND": 404}[outcome]
            return json_response(code, {"status": outcome}, rid)
        with_logs = query.get("logs", "").lower() in ("1", "true", "yes")
        if rest == "/status/stream" and not self.settings.status_stream:
            return json_response(404, {"detail": "Not Found"})
        if rest == "/status/stream":
            def poll() -> tuple[dict[str, Any] | None, bool]:
                s = self.queue.get(request_id)
                if s is None:
                    return None, True
                body = self._status_body(s, base, with_logs)
                return body, body["status"] == "COMPLETED"
            return Response(200, [("content-type", "text/event-stream"), ("cache-control", "no-cache"), *rid],
                            EventStream(poll, next_change=lambda: self.queue.next_change(request_id)))
        if kind == "status":
            body = self._status_body(snap, base, with_logs)
            return json_response(200 if body["status"] == "COMPLETED" else 202, body, rid)
        return self._result(snap, base, rid)

    def _cancelled_for_good(self, job: Job) -> bool:
        """A cancelled request that keeps reporting the phase it was cancelled in (``never_completes``)."""
        return job.stopped == "cancelled" and self.settings.cancel_report == "never_completes"

    def _status_body(self, snap: Snapshot, base: str, with_logs: bool) -> dict[str, Any]:
        job = snap.job
        phase = job.cancelled_phase if self._cancelled_for_good(job) else snap.phase
        body: dict[str, Any] = {"status": phase, "request_id": job.request_id, **self._urls(base, job)}
        if phase == "IN_QUEUE":
            body["queue_position"] = snap.queue_position
            return body
        if phase == "IN_PROGRESS" and job.finished is not None:  # cancelled for good while running
            body["logs"] = self._logs(job, snap.now) if with_logs else None
            return body
        body["logs"] = self._logs(job, snap.now) if with_logs else None
        if snap.phase == "COMPLETED":
            ran = (job.end - job.start) if job.start is not None and job.end is not None else 0.0
            body["metrics"] = {"inference_time": round(ran, 4)} if job.start is not None else {}
            if job.stopped == "cancelled" and self.settings.cancel_report == "completed_error":
                body["error"], body["error_type"] = "Request cancelled", "client_cancelled"
            elif job.stopped == "timeout":
                body["error"], body["error_type"] = _TIMEOUT_MSG, "request_timeout"
            elif job.outcome == "infra_error":
                body["error"], body["error_type"] = "Internal Server Error", "runner_server_error"
        return body

    def _logs(self, job: Job, now: float) -> list[dict[str, Any]]:
        if job.start is None or job.end is None:
            return []
        end = min(now, job.end)
        steps = job.inputs.get("num_inference_steps")
        steps = steps if isinstance(steps, int) and 0 < steps <= 100 else 8
        logs = [(job.start, f"Generating for prompt: {str(job.inputs.get('prompt', ''))[:80]}")]
        for k in range(1, steps + 1):
            t = job.start + job.duration * k / (steps + 1)
            if t > end:
                break
            logs.append((t, f"Step {k}/{steps}"))
        if job.finished is not None:
            message = "Cancelled" if job.stopped == "cancelled" else (
                "Generation failed" if job.outcome == "infra_error" else "Done")
            logs.append((job.finished, message))
        return [{"message": m, "level": "INFO" if m != "Generation failed" else "ERROR", "source": "user",
                 "timestamp": self.queue.iso(job, t)} for t, m in logs]

    def _result(self, snap: Snapshot, base: str, rid: list[tuple[str, str]]) -> Response:
        job = snap.job
        if snap.phase != "COMPLETED" or (job.stopped == "cancelled" and self.settings.cancel_report in (
                "never_completes", "result_400")):
            return json_response(400, {"detail": "Request is still in progress"}, rid)
        if job.stopped == "cancelled":
            return self._infra(499, "client_cancelled", "Request cancelled", job.request_id)
        if job.stopped == "timeout":
            return self._infra(504, "request_timeout", _TIMEOUT_MSG, job.request_id,
                               [("x-fal-request-timeout-type", "user")])
        if job.outcome == "infra_error":
            return self._infra(500, "runner_server_error", "Internal Server Error", job.request_id)
        if job.outcome == "invalid":
            return json_response(422, {"detail": detail(job.errors, self.settings.validation_detail)},
                                 [*rid, ("x-fal-retryable", "false")])
        assert job.plan is not None
        billed = self.platform.billable_units(self._spec(job.model_id), job.inputs, job.plan)
        return json_response(200, build_output(job.plan, job.request_id, base, job.duration), [*rid, *billed])
