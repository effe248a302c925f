"""The emulator's clock for tests that must hold a request queued or running, whatever the machine's load."""

from __future__ import annotations

import threading
import time

__all__ = ["SwitchClock"]


class SwitchClock:
    """The emulator's clock: real time, or frozen and moved by hand (``freeze``/``tick``/``thaw``) so a
    test holds a request queued or running for as long as it needs, whatever the machine's load."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0
        self._frozen_at: float | None = None

    def __call__(self) -> float:
        with self._lock:
            return self._frozen_at if self._frozen_at is not None else time.monotonic() + self._offset

    def freeze(self) -> None:
        with self._lock:
            if self._frozen_at is None:
                self._frozen_at = time.monotonic() + self._offset

    def tick(self, seconds: float) -> None:
        with self._lock:
            assert self._frozen_at is not None, "tick() a frozen clock"
            self._frozen_at += seconds

    def thaw(self) -> None:
        with self._lock:
            if self._frozen_at is not None:  # time never runs backwards for the emulator
                self._offset = self._frozen_at - time.monotonic()
                self._frozen_at = None
