"""Figure 7: the fal key never leaks, on success and on every error path.

A distinctive key (``FAL_KEY=sk-test-<random>``) is used against the emulator's real HTTP server
with the cache on, through the Python API and the notebook magics, on success and on 401, 422,
500, a lost submit answer, timeouts and an interrupt.  The key must appear in none of: the cache
directory's bytes, reprs, log records at DEBUG (falnb's, httpx's, httpcore's), exception text,
tracebacks (also with local variables, as IPython's ``%xmode Verbose`` shows them) and notebook
outputs.  Cache files are 0600 and directories 0700.
"""

from __future__ import annotations

import logging
import secrets
import signal
import socket
import stat
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from falnb import Client
from falnb._exceptions import (
    AuthenticationError,
    ContentPolicyError,
    FalnbError,
    FalServerError,
    Interrupted,
    RequestTimeoutError,
    SubmitUncertainError,
)
from falnb.emulator import Emulator, EmulatorServer, Faults, serve
from falnb.fal._queue import RetryPolicy

MODEL = "fal-ai/flux/schnell"
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, submit_attempts=3)


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()} {record.args!r} {record.__dict__!r}")


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = f"sk-test-{secrets.token_hex(16)}"
    monkeypatch.setenv("FAL_KEY", value)
    return value


@pytest.fixture
def logs() -> Iterator[Capture]:
    handler = Capture()
    names = ["", "httpx", "httpcore", "falnb", "asyncio", "IPython"]
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


@pytest.fixture
def server(key: str, serve_emulator: Callable[..., EmulatorServer]) -> EmulatorServer:
    return serve_emulator(latency=0.05, concurrency=4, api_keys={key},
                          faults=Faults(content_policy_words=("forbidden",)))


def _texts_of(err: BaseException) -> list[str]:
    """Everything an error shows: str, repr, tracebacks with and without locals, its chain."""
    out = [str(err), repr(err), "".join(traceback.format_exception(err))]
    out += _falnb_locals(traceback.TracebackException.from_exception(err, capture_locals=True))
    seen = set()
    link: BaseException | None = err
    while link is not None and id(link) not in seen:  # the suppressed context too (debuggers show it)
        seen.add(id(link))
        out += [str(link), repr(link)]
        link = link.__cause__ or link.__context__
    render = getattr(err, "_render_traceback_", None)
    if render is not None:
        out += render()
    return out


def _falnb_locals(te: traceback.TracebackException) -> list[str]:
    """The local variables of falnb's frames, as a verbose traceback shows them, along the whole chain
    (the test's own frames hold the key on purpose: they are not falnb's)."""
    out: list[str] = []
    seen: set[int] = set()
    todo: list[traceback.TracebackException | None] = [te]
    while todo:
        t = todo.pop()
        if t is None or id(t) in seen:
            continue
        seen.add(id(t))
        for frame in t.stack:
            if f"{Path('falnb')}/" in frame.filename.replace("\\", "/") and "/tests/" not in frame.filename:
                out += [f"{frame.filename}:{frame.lineno} {name}={value}"
                        for name, value in (frame.locals or {}).items()]
        todo += [t.__cause__, t.__context__]
    return out


def _hung_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock, sock.getsockname()[1]


def test_figure_secrets_the_key_never_leaks(key: str, server: EmulatorServer, logs: Capture, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    emu = server.emulator
    cache_dir = tmp_path / "cache"
    texts: dict[str, list[str]] = {}
    errors: dict[str, str] = {}

    def client(**kw: Any) -> Client:
        kw.setdefault("queue_url", server.url)
        kw.setdefault("cache", cache_dir)
        kw.setdefault("retry", FAST)
        return Client(**kw)

    def expect(name: str, kind: type[BaseException], fn: Any) -> None:
        try:
            fn()
        except kind as exc:
            texts[name] = _texts_of(exc)
            errors[name] = type(exc).__name__
        else:
            raise AssertionError(f"{name}: no {kind.__name__}")

    # success, and a cache hit
    c = client()
    gen = c.generate("a lighthouse", model=MODEL, seed=1)
    hit = c.generate("a lighthouse", model=MODEL, seed=1)
    assert hit.cached
    texts["reprs"] = [repr(c), str(c), repr(c.key), str(c.key), repr(gen), gen._repr_html_(), repr(gen.images),
                      repr(c.cache), repr(c._engine.queue()), repr(c._engine._http), repr(vars(c)),
                      repr(vars(c._engine)), repr(c.history)]

    # 422 and 500
    expect("422", ContentPolicyError, lambda: c.generate("forbidden thing", model=MODEL, seed=1))
    emu.configure(infra_error_rate=1.0)
    expect("500", FalServerError, lambda: c.generate("a failing lighthouse", model=MODEL, seed=1))
    emu.configure(infra_error_rate=0.0)

    # a lost submit answer, then its re-run (refused by the journal)
    emu.configure(submit_answer_delay=1.0)
    lost = client(http_timeout=0.3)
    expect("lost submit", SubmitUncertainError, lambda: lost.generate("a lost lighthouse", model=MODEL, seed=1))
    expect("lost submit re-run", SubmitUncertainError,
           lambda: client(http_timeout=0.3).generate("a lost lighthouse", model=MODEL, seed=1))
    emu.configure(submit_answer_delay=0.0)

    # timeouts on a connection that never answers
    sock, port = _hung_port()
    try:
        hung = client(queue_url=f"http://127.0.0.1:{port}", http_timeout=0.3)
        expect("hung submit", SubmitUncertainError, lambda: hung.generate("a hung lighthouse", model=MODEL, seed=1))
        slow = client(queue_url=f"http://127.0.0.1:{port}", http_timeout=30)
        expect("timeout", RequestTimeoutError,
               lambda: slow.generate("a slow lighthouse", model=MODEL, seed=2, timeout=0.5))
    finally:
        sock.close()

    # interrupted (Ctrl-C / kernel interrupt) while running
    emu.configure(latency=5.0)
    main = threading.get_ident()
    timer = threading.Timer(0.4, signal.pthread_kill, args=(main, signal.SIGINT))
    timer.start()
    expect("interrupted", Interrupted, lambda: c.generate("an interrupted lighthouse", model=MODEL, seed=1))
    timer.join()
    emu.configure(latency=0.05)

    # 401: fal refuses this very key
    with serve(port=0, emulator=Emulator(latency=0.0, api_keys={"someone-else"})) as other:
        expect("401", AuthenticationError, lambda: client(queue_url=other.url).generate("x", model=MODEL, seed=1))

        # the magics, with short errors, then full verbose tracebacks (local variables shown)
        texts["notebook"] = _notebook(server.url, other.url, cache_dir)
    c.close()

    leaks = {name: [t for t in found if key in t] for name, found in texts.items()}
    leaks = {k: v for k, v in leaks.items() if v}
    cache_bytes = b"".join(p.read_bytes() for p in cache_dir.rglob("*") if p.is_file())
    log_leaks = [line for line in logs.lines if key in line]
    modes = {str(p.relative_to(cache_dir)): oct(stat.S_IMODE(p.stat().st_mode)) for p in [cache_dir,
                                                                                           *cache_dir.rglob("*")]}
    bad_modes = {p: m for p, m in modes.items()
                 if m != ("0o700" if (cache_dir / p).is_dir() else "0o600")}
    print(f"FIGURE secrets: key sk-test-<32 hex> searched in {sum(len(v) for v in texts.values())} texts "
          f"(reprs, str/repr/tracebacks with locals of {len(errors)} errors: {sorted(errors)}, notebook outputs), "
          f"{len(logs.lines)} DEBUG log records (httpx, httpcore), {len(cache_bytes):,} bytes of "
          f"{len(modes) - 1} cache files: {sum(map(len, leaks.values())) + len(log_leaks)} leaks; "
          f"{len(bad_modes)} cache paths not 0600/0700")
    assert any(line.startswith("httpx") for line in logs.lines), "httpx's logger was not captured"
    assert not leaks, {k: [t[:300] for t in v] for k, v in leaks.items()}
    assert not log_leaks, log_leaks[:3]
    assert key.encode() not in cache_bytes
    assert not bad_modes, bad_modes
    assert set(errors) == {"422", "500", "lost submit", "lost submit re-run", "hung submit", "timeout",
                           "interrupted", "401"}


def _notebook(url: str, refusing_url: str, cache_dir: Path) -> list[str]:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from falnb.notebook._magics import magics_of

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "falnb")
    magics = magics_of(shell)
    good = Client(queue_url=url, cache=cache_dir, retry=FAST)
    refusing = Client(queue_url=refusing_url, cache=cache_dir, retry=FAST)
    out: list[str] = []
    cells = ["%falimage -m flux-schnell --seed 4 a lighthouse at dusk",
             "%falimage -m flux-schnell --seed 4 forbidden lighthouse",
             "refuse", "%falimage -m flux-schnell --seed 4 refused lighthouse", "good",
             "%xmode Verbose",
             "%config FalMagics.short_errors = False",
             "%falimage -m flux-schnell --seed 5 forbidden lighthouse",
             "refuse", "%falimage -m flux-schnell --seed 5 refused lighthouse", "good",
             "%falconfig",
             "import os; os.environ['FAL_KEY'] == 'x'"]
    magics.client = good
    try:
        for source in cells:
            if source in ("refuse", "good"):
                magics.client = refusing if source == "refuse" else good
                continue
            with capture_output() as cap:
                result = shell.run_cell(source, store_history=False)
            out += [cap.stdout, cap.stderr]
            out += [str(v) for o in cap.outputs for v in o.data.values()]
            err = result.error_in_exec or result.error_before_exec
            if err is not None:
                out += _texts_of(err)
                if isinstance(err, FalnbError):
                    out += getattr(err, "_render_traceback_", lambda: [])()
        assert any("content policy" in t for t in out) and any("refused the key" in t for t in out)
    finally:
        with capture_output():
            shell.run_line_magic("xmode", "Context")
        magics.short_errors = True
        magics.client = None
    return out


def test_a_password_in_a_url_is_hidden_like_the_key(tmp_path: Path) -> None:
    """A queue or proxy URL may carry ``user:password@`` (httpx sends it as basic auth): not in an error's
    text, a Client's repr, %falconfig, the proxy's description or a LiteLLM call's error."""
    import falnb
    from falnb.fal._proxy import Proxy

    secret = f"pw-{secrets.token_hex(6)}"
    with socket.socket() as s:  # a port nothing listens on: the submit cannot connect (nothing is sent)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://user:{secret}@127.0.0.1:{port}"
    client = Client(key="k", queue_url=url, cache=tmp_path / "c")
    seen = [repr(client)]
    with pytest.raises(FalnbError) as err:
        client.generate("a fox", model="schnell")
    seen += [str(err.value), repr(err.value), *err.value.hints.values()]
    with pytest.raises(FalnbError) as err:
        falnb.image_generation(prompt="a fox", model="fal_ai/fal-ai/flux/schnell", api_key="k", api_base=url)
    seen.append(str(err.value))
    proxy = Proxy(url, "test", "auto", "k", "test")
    seen += [proxy.describe(), repr(proxy)]
    client.close()
    assert all(secret not in text for text in seen), [t for t in seen if secret in t]
    assert "http://***@127.0.0.1" in seen[1]  # (where it went is still said)
