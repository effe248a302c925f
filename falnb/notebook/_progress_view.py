"""The live progress of a cell's work, updated in place and replaced by the results."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..results._render import Output, show_outputs
from ..results._text import short

if TYPE_CHECKING:
    from ..results._progress import Progress

__all__ = ["ProgressView", "progress_text"]


def progress_text(items: Sequence[tuple[str, Progress | None]], elapsed: float) -> tuple[str, str]:
    """``(text, key)``: lines describing the work, and the same without times (changes of state).

    Up to eight jobs get a line each; more are summarised by state.
    """
    if len(items) <= 8:
        lines, keys = [], []
        for label, p in items:
            if p is None:
                lines.append(f"{label}: waiting · {elapsed:.1f} s")
                keys.append(f"{label}: waiting")
                continue
            what = p.what()
            lines.append(f"{label}: {what} · {p.elapsed:.1f} s")
            keys.append(f"{label}: {what}")
        return "\n".join(lines), "\n".join(keys)
    counts: dict[str, int] = {}
    last_log = None
    for _, p in items:
        state = p.state if p is not None else "waiting"
        counts[state] = counts.get(state, 0) + 1
        if p is not None and p.log:
            last_log = p.log
    order = ["done", "cached", "downloading", "running", "queued", "submitting", "checking", "waiting"]
    summary = ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s))
    key = f"{len(items)} jobs: {summary}"
    text = f"{key} · {elapsed:.1f} s"
    if last_log:
        text += f"\nlatest log: {short(last_log, 160)}"
    return text, key




class ProgressView:
    """A progress output updated in place (``display_id``), replaced by the results at the end.

    Call only from the main thread.  ``live=False`` (terminal IPython) prints only changes of state,
    so a terminal is not flooded with elapsed-time updates.
    """

    def __init__(self, *, enabled: bool = True, live: bool = True, interval: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self.live = live
        self.interval = interval
        self._clock = clock
        self._handle: Any = None
        self._key: str | None = None
        self._text: str | None = None
        self._last = 0.0
        #: how many times the output was shown or updated (tests)
        self.updates = 0

    @property
    def shown(self) -> bool:
        return self._handle is not None

    def show(self, text: str, key: str) -> None:
        if not self.enabled:
            return
        now = self._clock()
        changed = key != self._key
        if self._handle is not None:
            if text == self._text or not (changed or (self.live and now - self._last >= self.interval)):
                return
        self._key, self._text, self._last = key, text, now
        bundle = {"text/plain": text}
        if self._handle is None:
            from IPython.display import display

            self._handle = display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self._handle.update(bundle, raw=True)
        self.updates += 1

    def finish(self, outputs: Sequence[Output]) -> None:
        """Replace the progress output with the first result output and show the others after it."""
        if self._handle is not None and outputs:
            data, metadata = outputs[0]
            self._handle.update(data, raw=True, metadata=metadata)
            show_outputs(outputs[1:])
        else:
            show_outputs(outputs)
        self._handle = None

    def close(self, text: str) -> None:
        """Leave a final line in place of the progress (after an error or an interrupt)."""
        if self._handle is not None:
            self._handle.update({"text/plain": text}, raw=True)
            self._handle = None
