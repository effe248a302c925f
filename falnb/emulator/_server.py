"""The emulator as a real HTTP server (a background thread), and the ``falnb emulator`` command."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn

from ._emulator import Emulator
from ._http import EventStream, Response
from ._knobs import Faults
from ._sync import SYNC_PREFIX, sync_path

__all__ = ["EmulatorServer", "main", "serve"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "falnb-emulator"
    #: http.server writes headers and body separately; with Nagle on, the body waits for the
    #: client's delayed ACK (~40 ms an answer), which fal's servers do not add
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _serve(self) -> None:
        if self.server.sync_root:
            self.path = sync_path(self.command, self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.path.startswith(SYNC_PREFIX + "/") and self.command == "POST":
            resp = self._run_sync(f"http://{host}", self.path[len(SYNC_PREFIX):], headers, body)
        else:
            resp = self.server.emulator.handle(self.command, f"http://{host}{self.path}", headers, body)
        if resp.delay > 0:
            time.sleep(resp.delay)
        if resp.drop:
            self.close_connection = True  # close the socket without a word
            return
        try:
            self.send_response(resp.status)
            for name, value in resp.headers:
                self.send_header(name, value)
            if isinstance(resp.body, EventStream):
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in resp.body:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(len(resp.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _run_sync(self, base: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        """fal's synchronous endpoint: queue the job, wait for it here, answer with its result.

        Like fal.run, it bills the request even if the caller has gone by the time it finishes."""
        emu = self.server.emulator
        sub = emu.handle("POST", f"{base}{path}", headers, body)
        if sub.status != 200 or sub.delay > 0 or sub.drop:
            return sub
        urls = json.loads(bytes(sub.body) if not isinstance(sub.body, EventStream) else b"{}")
        while True:
            st = emu.handle("GET", urls["status_url"], headers, b"")
            if st.status != 202:
                break
            time.sleep(0.005)
        return emu.handle("GET", urls["response_url"], headers, b"")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    #: socketserver's default backlog (5) overflows under a few dozen concurrent clients: the kernel
    #: then resets connections whose request was already written, which a client must treat as a
    #: submit that may have reached fal (fal's nginx has a deep backlog)
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], emulator: Emulator, verbose: bool, sync_root: bool = False) -> None:
        self.emulator = emulator
        self.verbose = verbose
        #: fal.run's root (``--sync-port``, see ``_sync``) rather than the queue host's
        self.sync_root = sync_root
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that vanished (killed, timed out, closed early) is not the server's error
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)


class EmulatorServer:
    """A running emulator server: ``.url``, ``.port``, ``.emulator``, ``.close()`` (or ``with``)."""

    def __init__(self, host: str, port: int, emulator: Emulator, verbose: bool = False,
                 sync_port: int | None = None) -> None:
        for p in (port, 0 if sync_port is None else sync_port):
            if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 65535:
                raise ValueError(f"port must be 0 to 65535 (0 picks a free one), not {p!r}")
        self.emulator = emulator
        self._httpd = _Server((host, port), emulator, verbose)
        self.host = host
        self.port: int = self._httpd.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        #: the emulated synchronous host (fal.run): LiteLLM's ``api_base``; its own root with ``sync_port``
        self.sync_url = self.url + SYNC_PREFIX
        self._sync: _Server | None = None
        if sync_port is not None:
            try:
                self._sync = _Server((host, sync_port), emulator, verbose, sync_root=True)
            except BaseException:
                self._httpd.server_close()
                raise
            self.sync_url = f"http://{shown}:{self._sync.server_address[1]}"
        self._threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1},
                                          name=f"falnb-emulator:{s.server_address[1]}", daemon=True)
                         for s in (self._httpd, self._sync) if s is not None]
        self._thread = self._threads[0]
        for t in self._threads:
            t.start()

    def close(self) -> None:
        """Stop serving and free the port(s)."""
        for httpd in (self._httpd, self._sync):
            if httpd is not None:
                httpd.shutdown()
                httpd.server_close()
        for t in self._threads:
            t.join(timeout=5)

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C raises KeyboardInterrupt here)."""
        while self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def __enter__(self) -> EmulatorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmulatorServer({self.url!r})"


def serve(host: str = "127.0.0.1", port: int = 0, emulator: Emulator | None = None,
          verbose: bool = False, sync_port: int | None = None) -> EmulatorServer:
    """Serve ``emulator`` (a new one when None) over HTTP in a background thread; port 0 picks a free port.
    ``sync_port``: also serve fal's synchronous host (fal.run) as the root of that port (``.sync_url``)."""
    return EmulatorServer(host, port, emulator or Emulator(latency=2.0), verbose, sync_port)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    # SIGINT may be ignored when started in the background; SIGTERM should stop cleanly too
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)


class _Parser(argparse.ArgumentParser):
    """A mistake on the command line is one line and exit code 2, not argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--port {text!r} is not a whole number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"--port {port} is out of range: a port is 0 to 65535 (0 picks a free one)")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"--latency {text!r}: give a number of seconds, 0 or more")
    return value


def main(argv: list[str] | None = None) -> int:
    """``falnb emulator``: serve a fal emulator until Ctrl-C.  A mistake or a port that cannot be used: one
    line on stderr and exit code 2."""
    parser = _Parser(prog="falnb emulator", description="Run a local fal queue emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, default=8765, help="0 picks a free port (default 8765)")
    parser.add_argument("--latency", type=_seconds, default=2.0, help="seconds per generation (default 2)")
    parser.add_argument("--concurrency", type=int, default=2, help="requests running at once (default 2)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for request ids, the seeds picked for requests that send none, and fault "
                             "draws (default: fresh in every run, like fal)")
    parser.add_argument("--key", action="append", help="accept only this key (repeatable); default any key")
    parser.add_argument("--sync-port", type=_port, default=None,
                        help="also serve fal's synchronous host (https://fal.run) as the root of this port, "
                             "for fal_client.run() and a LiteLLM proxy's api_base; without it that host is "
                             "http://HOST:PORT/_sync. The main port is the queue host (https://queue.fal.run): "
                             "a synchronous call aimed at it gets a queue answer, as from fal")
    parser.add_argument("--verbose", action="store_true", help="log every HTTP request")
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    emu = Emulator(latency=args.latency, concurrency=args.concurrency, seed=args.seed,
                   faults=Faults(seed=args.seed or 0), api_keys=set(args.key) if args.key else None)
    try:
        server = serve(args.host, args.port, emu, verbose=args.verbose, sync_port=args.sync_port)
    except (OSError, OverflowError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        ports = f"{args.port}" if args.sync_port is None else f"{args.port} or {args.sync_port}"
        print(f"falnb emulator: cannot listen on {args.host}:{ports}: {why}", file=sys.stderr)
        return 2
    print(f"fal emulator listening on {server.url}  "
          f"(latency {args.latency}s, concurrency {args.concurrency})")
    print(f"  falnb:      FALNB_QUEUE_URL={server.url}  (any FAL_KEY works)")
    print("  fal-client: import fal_client.client as c; "
          f"c.QUEUE_URL_FORMAT = '{server.url}/'; c.RUN_URL_FORMAT = '{server.sync_url}/'")
    print(f"  LiteLLM:    api_base: {server.sync_url}   (proxy pass-through: FAL_AI_QUEUE_API_BASE={server.url})")
    print(f"  control:    GET {server.url}/_emulator/ledger   POST {server.url}/_emulator/config")
    print("Ctrl-C to stop.", flush=True)
    _stop_on_signals()
    try:
        server.wait()
    except KeyboardInterrupt:
        print("\nstopping", file=sys.stderr)
    finally:
        server.close()
    return 0
