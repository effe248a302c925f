"""Who holds a journal claim: this host's name, and whether a process is still alive (not a reused pid)."""

from __future__ import annotations

import os
import socket

__all__ = ["HOST", "own_start", "pid_alive"]

#: this machine, as journal rows name it (a row from another host is judged by its heartbeat alone)
HOST = socket.gethostname()
_PSTART: tuple[int, str | None] | None = None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time) of a Linux process from /proc, or None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def own_start() -> str | None:
    global _PSTART
    pid = os.getpid()
    if _PSTART is None or _PSTART[0] != pid:
        st = _proc_stat(pid)
        _PSTART = (pid, st[1] if st else None)
    return _PSTART[1]


def pid_alive(pid: int, pstart: str | None) -> bool:
    if os.name == "nt":  # pragma: no cover - os.kill(pid, 0) is not a probe there: trust the heartbeat
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    st = _proc_stat(pid)
    if st is not None:
        if st[0] in ("Z", "X"):
            return False  # killed, not yet reaped
        if pstart and st[1] != pstart:
            return False  # the pid was reused by another process
    return True
