"""The emulator every client talks to, served over real HTTP from its own process.

Its own process, so its CPU work (scheduling, drawing the pictures) is not charged to the client
being measured, and the client is a real network client of it.  ``python -m bench._emu --latency S
--concurrency K`` prints one JSON line ``{"url": ...}``, then answers commands on stdin (one per
line, one JSON line back): ``jobs`` (the schedule of every request it holds), ``cpu`` (its CPU
seconds so far), ``reset``; it stops when stdin closes.

Two settings of the emulator's HTTP server are changed here, in the emulator's process only, so
that its artefacts do not swamp the clients' own overheads (both reported to its engineer):

* ``TCP_NODELAY``: ``http.server`` sends an answer's headers and body in two writes; with Nagle's
  algorithm on, the body waits for the client's delayed ACK: about 40 ms added to every answer.
* the status stream's check interval: 20 ms by default, a polling grid that adds 10 ms on average
  to a client that waits on the stream (fal pushes the change).  5 ms here.
* the listen backlog: ``socketserver`` listens with a backlog of 5; a client opening more
  connections at once (fal-client's gather of 64 submits) has SYNs dropped and retried after 1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from . import PY, ROOT, bench_env, tmpdir

#: seconds between the emulator's status-stream checks
STREAM_INTERVAL = 0.005


#: the listen backlog of the emulator's socket (``socketserver``'s default is 5)
BACKLOG = 256


def _server_settings() -> None:
    try:
        from falnb.emulator import _server
    except ImportError:
        return
    handler = getattr(_server, "_Handler", None)
    if handler is not None and not getattr(handler, "disable_nagle_algorithm", False):
        handler.disable_nagle_algorithm = True
    server = getattr(_server, "_Server", None)
    if server is not None and getattr(server, "request_queue_size", BACKLOG) < BACKLOG:
        server.request_queue_size = BACKLOG


def _stream_interval(seconds: float) -> None:
    try:
        from falnb.emulator import _http

        defaults = _http.EventStream.__init__.__defaults__
        if defaults and len(defaults) == 2:
            _http.EventStream.__init__.__defaults__ = (seconds, defaults[1])
    except ImportError:
        pass


def _serve(latency: float, concurrency: int, stream_interval: float) -> None:
    from falnb.emulator import Emulator, serve

    _server_settings()
    _stream_interval(stream_interval)
    emulator = Emulator(latency=latency, concurrency=concurrency)
    handle = serve(host="127.0.0.1", port=0, emulator=emulator)
    info: dict[str, Any] = {"url": handle.url}
    sync = getattr(handle, "sync_url", None) or getattr(handle, "run_url", None)
    if sync:
        info["sync_url"] = sync
    print(json.dumps(info), flush=True)
    try:
        for line in sys.stdin:
            cmd = line.strip()
            out: Any = None
            if cmd == "jobs":
                out = [{"submitted": j.submitted, "start": j.start, "end": j.end, "finished": j.finished}
                       for j in emulator.requests()]
            elif cmd == "cpu":
                ru = resource.getrusage(resource.RUSAGE_SELF)
                out = ru.ru_utime + ru.ru_stime
            elif cmd == "storage":
                storage = emulator.storage
                out = {"uploads": storage.uploads, "bytes_received": storage.bytes_received}
            elif cmd == "reset":
                emulator.reset()
                out = "ok"
            print(json.dumps(out), flush=True)
    finally:
        handle.close()


class Emu:
    """A running emulator process: ``emu["url"]``, ``emu.get("sync_url")``, ``emu.ask("cpu")``."""

    def __init__(self, proc: subprocess.Popen[str], info: dict[str, Any]) -> None:
        self.proc, self.info = proc, info

    def __getitem__(self, key: str) -> Any:
        return self.info[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.info.get(key, default)

    def ask(self, cmd: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def reset(self) -> None:
        """Forget every request: the emulator's schedule walks every request it holds on each read."""
        self.ask("reset")


@contextlib.contextmanager
def emulator(latency: float, concurrency: int, stream_interval: float = STREAM_INTERVAL) -> Iterator[Emu]:
    """Start an emulator process; ``emu["url"]`` is its queue base, ``emu.get("sync_url")`` LiteLLM's base."""
    log = open(tmpdir("logs") / f"emulator-{latency}-{concurrency}.log", "a")
    proc = subprocess.Popen([PY, "-m", "bench._emu", "--latency", str(latency), "--concurrency", str(concurrency),
                             "--stream-interval", str(stream_interval)],
                            cwd=str(ROOT), env=bench_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=log, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator process did not start; see {log.name}")
        info = json.loads(line)
        info.setdefault("sync_url", None)
        info["latency"], info["concurrency"] = latency, concurrency
        yield Emu(proc, info)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--stream-interval", type=float, default=STREAM_INTERVAL)
    a = ap.parse_args()
    _serve(a.latency, a.concurrency, a.stream_interval)


if __name__ == "__main__":
    main()
