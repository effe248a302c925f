"""What fal's queue says about one request: :class:`Submitted` (its id and URLs) and :class:`Status`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Status", "Submitted", "app_prefix", "status_from"]


def app_prefix(model_id: str) -> str:
    """Owner and app of a model id: status, result and cancel live under it (fal's URL rule)."""
    parts = model_id.strip("/").split("/")
    if parts[0] in ("workflows", "comfy") and len(parts) >= 3:
        return "/".join(parts[:3])
    return "/".join(parts[:2])


@dataclass(frozen=True)
class Submitted:
    """A request fal accepted: its id and the URLs fal returned (or the URL rule built)."""

    model: str
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str
    submitted_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Status:
    status: str  # IN_QUEUE | IN_PROGRESS | COMPLETED
    queue_position: int | None = None
    logs: tuple[str, ...] = ()
    metrics: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.status == "COMPLETED"


def status_from(body: Any) -> Status:
    """A status from fal's JSON; ValueError when it is not a status object."""
    if not isinstance(body, Mapping) or not isinstance(body.get("status"), str):
        raise ValueError("not a status object")
    entries = body.get("logs")
    logs = tuple(str(e.get("message", "")) for e in entries if isinstance(e, Mapping)) \
        if isinstance(entries, list) else ()
    pos, metrics, error = body.get("queue_position"), body.get("metrics"), body.get("error")
    return Status(status=body["status"], queue_position=pos if isinstance(pos, int) else None, logs=logs,
                  metrics=metrics if isinstance(metrics, Mapping) else {},
                  error=None if error is None else str(error))
