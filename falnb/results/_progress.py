"""Progress of one ``generate`` call, as the magics and widgets show it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["Progress", "ProgressTracker"]


@dataclass(frozen=True)
class Progress:
    """A snapshot: the overall state, queue position, the latest log line, elapsed seconds."""

    state: str  # "checking", "submitting", "queued", "running", "downloading", "done", "cached"
    model: str
    total: int
    done: int = 0
    queue_position: int | None = None
    log: str | None = None
    elapsed: float = 0.0
    request_ids: tuple[str, ...] = ()
    #: each request's own state, in order (the call's ``state`` is the least advanced of them)
    states: tuple[str, ...] = ()

    def mix(self) -> str | None:
        """Requests in different states, most advanced first: ``1 running, 2 queued (next: position 0)``;
        None when every unfinished request is in the same state."""
        pending = [s for s in self.states if s not in ("done", "cached")]
        if len(set(pending)) < 2:
            return None
        parts = []
        for state in reversed(_ORDER):
            count = pending.count(state)
            if count:
                where = (f" (next: position {self.queue_position})"
                         if state == "queued" and self.queue_position is not None else "")
                parts.append(f"{count} {state}{where}")
        return ", ".join(parts)

    def what(self) -> str:
        """The state in words, e.g. ``queued (position 3)``, ``running: Step 2/4 · 1/2 requests`` or
        ``1 running, 2 queued (next: position 0) · 0/3 requests``."""
        mix = self.mix()
        if mix is not None:
            what = mix + (f" · {_one_line(self.log)}" if self.log else "")
        elif self.state == "queued" and self.queue_position is not None:
            what = f"queued (position {self.queue_position})"
        elif self.state == "running" and self.log:
            what = f"running: {_one_line(self.log)}"
        else:
            what = self.state
        return what + (f" · {self.done}/{self.total} requests" if self.total > 1 else "")

    def line(self) -> str:
        """One short human line, e.g. ``flux-schnell: queued (position 3) · 1.2 s``."""
        return f"{self.model}: {self.what()} · {self.elapsed:.1f} s"


def _one_line(log: str) -> str:
    log = " ".join(log.split())
    return log if len(log) <= 120 else log[:119] + "…"


_ORDER = ["checking", "submitting", "queued", "running", "downloading", "cached", "done"]


@dataclass
class ProgressTracker:
    """Merges per-request states into one :class:`Progress` (thread-safe enough: the loop writes)."""

    model: str
    total: int
    started: float = field(default_factory=time.monotonic)
    _states: dict[int, str] = field(default_factory=dict)
    _position: dict[int, int] = field(default_factory=dict)
    _ids: dict[int, str] = field(default_factory=dict)
    _log: str | None = None
    version: int = 0
    #: when the call ended (done, failed or stopped): its elapsed time stops there
    ended: float | None = None

    def end(self) -> None:
        """The call is over: a snapshot taken later still says how long it took, not how long ago it began."""
        if self.ended is None:
            self.ended = time.monotonic()

    def update(self, index: int, state: str, *, position: int | None = None, log: str | None = None,
               request_id: str | None = None) -> None:
        self._states[index] = state
        if position is not None:
            self._position[index] = position
        else:
            self._position.pop(index, None)
        if log:
            self._log = log
        if request_id:
            self._ids[index] = request_id
        elif state == "submitting":
            self._ids.pop(index, None)  # (a new request: the one named before, looked at and let go, is not it)
        self.version += 1

    def requests(self) -> list[tuple[str, str | None]]:
        """``(state, request id or None)`` of each request of the call, in order."""
        return [(self._states.get(i, "checking"), self._ids.get(i)) for i in range(self.total)]

    def snapshot(self) -> Progress:
        states = list(self._states.values()) or ["checking"]
        finished = sum(1 for s in states if s in ("done", "cached"))
        if finished == self.total:
            state = "cached" if all(s == "cached" for s in states) else "done"
        else:
            pending = [s for s in states if s not in ("done", "cached")]
            state = min(pending, key=_ORDER.index) if pending else "checking"
        pos = min(self._position.values()) if self._position else None
        return Progress(state=state, model=self.model, total=self.total, done=finished, queue_position=pos,
                        log=self._log, elapsed=(time.monotonic() if self.ended is None else self.ended) - self.started,
                        request_ids=tuple(self._ids[i] for i in sorted(self._ids)),
                        states=tuple(self._states.get(i, "checking") for i in range(self.total)))
