"""Driving a real IPython shell the way a notebook does, and small helpers shared by the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .._cells import ANSI, Cell, run

__all__ = ["ANSI", "ROOT", "Cell", "arm_interrupts", "child_env", "disarm_interrupts", "falnb_cli", "interrupt_main",
           "python", "run"]

ROOT = Path(__file__).resolve().parents[2]  # the checkout whose falnb is under test
DEFECTS = Path(__file__).resolve().parent


def _main_waits_in_falnb(thread: threading.Thread) -> bool:
    """Whether the main thread is blocked, in the kernel, in a wait (threading / concurrent.futures)
    that falnb called.

    Both halves matter.  The Python frame says the wait is falnb's (an interrupt landing earlier,
    e.g. inside ``run_coroutine_threadsafe``, is another case than the one under test).  The
    kernel state says the thread is already asleep on its futex: a SIGINT arriving in the instant
    between CPython's non-blocking lock attempt and the futex sleep only trips a flag, and a wait
    without a timeout then never wakes up to raise KeyboardInterrupt (a lost interrupt)."""
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None or not frame.f_code.co_filename.endswith(_WAITS):
        return False
    in_falnb = False
    while frame is not None:
        if f"{os.sep}falnb{os.sep}" in frame.f_code.co_filename:
            in_falnb = True
            break
        frame = frame.f_back
    if not in_falnb:
        return False
    try:
        with open(f"/proc/self/task/{thread.native_id}/wchan") as f:
            return "futex" in f.read()
    except OSError:  # no /proc: the frame is all there is to go by
        return True


_WAITS = ("threading.py", os.path.join("concurrent", "futures", "_base.py"))


def interrupt_main(within: float = 5.0) -> bool:
    """A kernel interrupt: SIGINT delivered to the main thread, once it is asleep inside falnb's wait.

    Called from the stand-in's hooks (falnb's loop thread) at an exact phase; see
    ``_main_waits_in_falnb`` for why it first waits for the main thread to be asleep.  When the main
    thread is not waiting in falnb within ``within`` seconds (the call already returned), no signal is
    sent (it would land in whatever runs next, another test included) and False is returned."""
    main = threading.main_thread()
    assert main.ident is not None
    end = time.monotonic() + within
    while True:
        with _GATE:
            if not _ARMED[0]:
                return False  # the test that asked for it is over: never into the next one (or its report)
            if _main_waits_in_falnb(main):
                signal.pthread_kill(main.ident, signal.SIGINT)
                return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.0005)


#: interrupts may be sent only while a test's body runs (tests/conftest.py arms and disarms around each):
#: a hook thread still polling when its test ended would otherwise interrupt the next test's wait in falnb,
#: or pytest while it formats a report (seen: an INTERNALERROR, two suites at once on a loaded machine)
_GATE = threading.Lock()
_ARMED = [False]


def arm_interrupts() -> None:
    with _GATE:
        _ARMED[0] = True


def disarm_interrupts() -> None:
    """After a test's body: no interrupt is sent from now on (one sent just before was delivered in the body)."""
    while True:
        try:
            with _GATE:
                _ARMED[0] = False
            return
        except KeyboardInterrupt:  # sent while the body was leaving its wait in falnb: it is over, drop it
            continue


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_AI_API_KEY", "FALNB_QUEUE_URL",
                        "FALNB_OFFLINE", "FALNB_BUDGET_SESSION", "FALNB_BUDGET_TOTAL")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(DEFECTS)])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def python(code: str, *, env: dict[str, str] | None = None, timeout: float = 60.0,
           args: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python process (this checkout's falnb, the stand-in importable)."""
    return subprocess.run([sys.executable, "-c", code, *(args or [])], env=env or child_env(), cwd=str(ROOT),
                          capture_output=True, text=True, timeout=timeout)


def falnb_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0
              ) -> subprocess.CompletedProcess[str]:
    """The ``falnb`` command (as ``python -m falnb``, this checkout's code)."""
    return subprocess.run([sys.executable, "-m", "falnb", *args], env=env or child_env(), cwd=str(ROOT),
                          capture_output=True, text=True, timeout=timeout)
