"""The emulator's knobs: service settings (:class:`Settings`) and injected failures (:class:`Faults`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CANCEL_REPORTS", "RUNNING_CANCELS", "Faults", "Settings", "apply_knobs", "knobs_dict"]

#: how a cancelled request reports afterwards (fal's docs leave it open: tests run against each)
#: ``completed_error``: status 200 COMPLETED with ``error``/``error_type: client_cancelled``, result 499;
#: ``never_completes``: status stays 202 at the phase it was cancelled in, result 400 "still in progress";
#: ``result_400`` / ``result_499``: status 200 COMPLETED without an error, the result that 4xx
CANCEL_REPORTS = ("completed_error", "never_completes", "result_400", "result_499")
#: what a running request does with a cancel: stop (``honoured``), or finish and bill (``ignored``;
#: fal forwards the cancel to the app, and an app that does not handle it runs on)
RUNNING_CANCELS = ("honoured", "ignored")


@dataclass
class Settings:
    """How the emulated fal account behaves when nothing goes wrong."""

    #: seconds one generation takes (in-process default: fast)
    latency: float = 0.05
    #: per-model generation time, keyed by the full model id
    model_latency: dict[str, float] = field(default_factory=dict)
    #: running requests at once; extra ones wait in the queue (a new fal account has 2)
    concurrency: int = 2
    #: seconds a result stays fetchable (fal: 1 hour) ...
    retention: float = 3600.0
    #: ... or this long when the result JSON is ``large_result_bytes`` or more (fal: 6 minutes at 10 KB)
    large_retention: float = 360.0
    large_result_bytes: int = 10_240
    #: whether a 422 (validation or content policy) is billed; fal says it "may" be
    bill_validation_errors: bool = False
    #: accepted keys; None accepts any ``Authorization: Key <k>``
    api_keys: frozenset[str] | None = None
    #: seed for request ids and for the seed picked when a request sends none; None: fresh in every process
    #: (from os.urandom), like fal, which draws a random seed per request
    seed: int | None = None

    # -- where fal's documentation leaves a choice open: one knob per choice, and tests run against each --
    #: bits of the random seed picked for a request that sends none (fal's apps draw 31, 32, up to 63 bits)
    random_seed_bits: int = 32
    #: whether an output echoes the seed: "model" (as each model does: see the catalog), "always", "never"
    echo_seed: str = "model"
    #: whether output images carry width and height: "model" (as each model does), "always", "never"
    output_dims: str = "model"
    #: an input name a catalogued model does not declare: "ignore" (pydantic's default) or "forbid" (a 422)
    extra_inputs: str = "ignore"
    #: a 422's ``detail``: "list" (pydantic's error items) or "string" (some apps answer one plain message)
    validation_detail: str = "list"
    #: whether ``GET {status_url}/stream`` is offered (fal calls it experimental); 404 when it is not
    status_stream: bool = True
    #: how a cancelled request reports afterwards (one of :data:`CANCEL_REPORTS`)
    cancel_report: str = "completed_error"
    #: whether a running request stops when cancelled (one of :data:`RUNNING_CANCELS`)
    running_cancel: str = "honoured"
    #: a submit's answer: "full" (newer: ``status``, ``queue_position``, ``logs``, ``metrics`` too) or
    #: "minimal" (older: ``request_id`` and the three URLs)
    submit_answer: str = "full"


@dataclass
class Faults:
    """Injected failures, drawn from a deterministic RNG seeded with ``seed``.

    Rates are probabilities per call (0 = never, 1 = always).
    """

    seed: int = 0
    #: the next K submits are answered 429 and not queued
    rate_limit_burst: int = 0
    #: chance per submit that a new burst of ``rate_limit_burst_size`` 429s starts (this submit included)
    rate_limit_burst_rate: float = 0.0
    rate_limit_burst_size: int = 3
    #: nginx-looking 502/503/504 HTML without ``x-fal-request-id`` (the app never saw the call)
    gateway_submit_rate: float = 0.0
    gateway_status_rate: float = 0.0
    gateway_result_rate: float = 0.0
    #: transient 500 ``runner_server_error`` on a status or result call
    server_error_rate: float = 0.0
    #: status calls whose connection is closed without an answer
    drop_status_rate: float = 0.0
    #: a submit is queued (and will bill) but its answer only comes after this many seconds
    submit_answer_delay: float = 0.0
    #: a submit is queued (and will bill) but a gateway between the client and fal (a proxy, a load balancer:
    #: not fal's nginx) loses fal's answer and says 502 in plain text, without ``x-fal-request-id``
    lost_submit_gateway_rate: float = 0.0
    #: image files (the CDN) are answered only after this many seconds (a slow download)
    file_answer_delay: float = 0.0
    #: a prompt containing one of these (case-insensitive) gets a 422 content_policy_violation
    content_policy_words: tuple[str, ...] = ("forbidden-content",)
    #: fraction of requests whose generation fails for good: COMPLETED with an error, result 500
    infra_error_rate: float = 0.0
    #: models (full ids) whose every generation fails so (a model down at fal while the others work)
    infra_error_models: tuple[str, ...] = ()


def knobs_dict(settings: Settings, faults: Faults) -> dict[str, Any]:
    """Every knob as JSON-friendly values (faults under ``"faults"``)."""
    out: dict[str, Any] = dataclasses.asdict(settings)
    out["api_keys"] = sorted(settings.api_keys) if settings.api_keys is not None else None
    out["faults"] = dataclasses.asdict(faults)
    out["faults"]["content_policy_words"] = list(faults.content_policy_words)
    out["faults"]["infra_error_models"] = list(faults.infra_error_models)
    return out


def apply_knobs(settings: Settings, faults: Faults, knobs: Mapping[str, Any]) -> None:
    """Change knobs by name; fault knobs may be flat or nested under ``"faults"``.

    Raises ``ValueError`` for an unknown knob or a value of the wrong kind (nothing is changed then).
    """
    flat: dict[str, Any] = {k: v for k, v in knobs.items() if k != "faults"}
    nested = knobs.get("faults") or {}
    if not isinstance(nested, Mapping):
        raise ValueError("'faults' must be an object")
    s_names = {f.name: f for f in dataclasses.fields(settings)}
    f_names = {f.name: f for f in dataclasses.fields(faults)}
    changes: list[tuple[object, str, Any]] = []
    for name, value in [*flat.items(), *((k, v) for k, v in nested.items())]:
        target: object
        if name in s_names and name not in nested:
            target = settings
        elif name in f_names:
            target = faults
        else:
            raise ValueError(f"unknown emulator knob {name!r}")
        changes.append((target, name, _coerce(name, getattr(target, name), value)))
    for target, name, value in changes:
        setattr(target, name, value)


#: the allowed values of the string knobs
CHOICES: dict[str, tuple[str, ...]] = {
    "echo_seed": ("model", "always", "never"),
    "output_dims": ("model", "always", "never"),
    "extra_inputs": ("ignore", "forbid"),
    "validation_detail": ("list", "string"),
    "cancel_report": CANCEL_REPORTS,
    "running_cancel": RUNNING_CANCELS,
    "submit_answer": ("full", "minimal"),
}


def _coerce_open(name: str, value: Any) -> Any:
    """The knobs for fal's open choices (and the seed, which may be None)."""
    if name == "seed":
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise ValueError("seed must be an integer or null")
    if name == "random_seed_bits":
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 63:
            return value
        raise ValueError("random_seed_bits must be an integer from 1 to 63")
    if value not in CHOICES[name]:
        raise ValueError(f"{name} must be one of {', '.join(CHOICES[name])}")
    return value


def _coerce(name: str, current: Any, value: Any) -> Any:
    if name == "seed" or name == "random_seed_bits" or name in CHOICES:
        return _coerce_open(name, value)
    if name == "api_keys":
        if value is None:
            return None
        if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str) for v in value):
            return frozenset(value)
        raise ValueError("api_keys must be a list of strings or null")
    if name in ("content_policy_words", "infra_error_models"):
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ValueError(f"{name} must be a list of strings")
    if name == "model_latency":
        if isinstance(value, Mapping) and all(isinstance(v, (int, float)) for v in value.values()):
            return {str(k): float(v) for k, v in value.items()}
        raise ValueError("model_latency must map model ids to seconds")
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be true or false")
    if isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            if name == "concurrency" and value < 1:
                raise ValueError("concurrency must be at least 1")
            return value
        raise ValueError(f"{name} must be an integer")
    if isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value)
        raise ValueError(f"{name} must be a non-negative number")
    raise ValueError(f"cannot set {name}")
