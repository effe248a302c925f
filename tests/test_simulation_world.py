"""The simulation's world: one emulated fal account, one cache folder, the clients a user would have, and
the promises checked after every step.

The invariants (also listed in the README's reliability section):

(a) fal billed at most one request per distinct request asked for (per replica), plus the explicit
    refreshes (``refresh=True``, ``--refresh``, ``cache=False``) and the damage a user did to the cache; and
    never more than ``FALNB_BUDGET_TOTAL`` in all;
(b) every paid picture is delivered (a Generation held it, or the cache holds it) or re-attachable (the
    journal holds its request id); the only exception is a submit whose answer never reached falnb, and
    then the journal marks that request uncertain or the user was told so (SubmitUncertainError);
(c) nothing is refused as uncertain (SubmitUncertainError) unless a submit of that request really
    reached fal and falnb never learned its id;
(d) every error a user sees is a FalnbError (in a cell: a FalnbError or a UsageError) whose rendering is at
    most 3 lines; a form never shows a raw Python error;
(e) open files and threads stay bounded (no growth with the number of steps), and so does memory.
"""

from __future__ import annotations

import collections
import contextlib
import os
import resource
import shutil
import sqlite3
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import falnb
from falnb import CacheError, Client, FalnbError, RequestCancelledError, ResponseCache, SubmitUncertainError
from falnb.emulator import Faults, serve
from falnb.fal._queue import RetryPolicy

from .test_simulation_fal import ClientSide, SimEmulator, defect_open, identity

__all__ = ["KEY", "Ask", "Options", "Violation", "World"]

KEY = "sk-sim"
#: retries without waiting long: the faults are many, the machine's time is short
FAST = RetryPolicy(attempts=8, base_delay=0.001, max_delay=0.01, submit_attempts=8)
#: a threshold that a healthy run never comes near, and a leak of one per step crosses within a soak
SLACK_FDS, SLACK_THREADS, SLACK_RSS_MB = 48, 24, 400


class Violation(AssertionError):
    """A broken promise, with the invariant's letter."""


@dataclass(frozen=True)
class Options:
    """What the world is made of (drawn once per example)."""

    http: bool = False
    concurrency: int = 2
    latency: float = 2.0
    budget_total: float | None = None
    #: what a running app does with fal's cancel: stop, or finish and bill (fal's own default app)
    running_cancel: str = "honoured"


@dataclass(frozen=True)
class Ask:
    """One generation a user asks for (small pictures: the simulation is about promises, not pixels)."""

    prompt: str
    model: str = "schnell"
    n: int = 1
    seed: int | None = None
    size: str = "256x256"

    def kwargs(self) -> dict[str, Any]:
        return {"model": self.model, "n": self.n, "seed": self.seed, "size": self.size}


class World:
    """See the module docstring.  ``close()`` ends it (clients, server, folder, environment)."""

    def __init__(self, options: Options, root: Path | None = None) -> None:
        self.options = options
        self._tmp = None if root is not None else tempfile.mkdtemp(prefix="falnb-sim-")
        self.root = root or Path(self._tmp or ".")
        self.cache_dir = self.root / "cache"
        self.emu = SimEmulator(latency=options.latency, concurrency=options.concurrency, faults=Faults(seed=7))
        self.emu.configure(running_cancel=options.running_cancel)
        self.server = serve(port=0, emulator=self.emu) if options.http else None
        self._env = {k: os.environ.get(k) for k in ("FALNB_BUDGET_TOTAL", "FALNB_BUDGET_SESSION", "FALNB_CACHE_DIR")}
        os.environ.pop("FALNB_BUDGET_SESSION", None)
        os.environ["FALNB_CACHE_DIR"] = str(self.cache_dir)
        if options.budget_total is None:
            os.environ.pop("FALNB_BUDGET_TOTAL", None)
        else:
            os.environ["FALNB_BUDGET_TOTAL"] = str(options.budget_total)
        self.wire: ClientSide | None = None
        #: the form a user keeps on screen (one per client), and the widgets alive before it was made
        self.form: Any = None
        self.form_widgets: set[Any] = set()
        self.clients: list[Client] = []
        self.client = self.new_client()
        # the bookkeeping the invariants read
        self.replicas: dict[str, int] = {}
        self.keys: dict[str, set[str]] = collections.defaultdict(set)
        self.allow: collections.Counter[str] = collections.Counter()
        self.delivered: set[str] = set()
        self.told_uncertain: set[str] = set()
        #: requests of calls an interrupt or a cancel stopped
        self.interrupted: set[str] = set()
        #: the requests of the step under way
        self.call_idents: list[str] = []
        self.call_cached = True
        #: billed requests the user's own damage to the cache took away (not falnb's doing)
        self.forgiven: set[str] = set()
        self.stats: collections.Counter[str] = collections.Counter()
        self.violations: list[str] = []
        #: what fal billed before the cache folder (and its ledger) last went: the budget counts from there
        self.spent_before_budget = 0.0
        #: the first message of each kind of error users saw
        self.examples: dict[str, str] = {}
        self.resources0: tuple[int, int, float] | None = None

    # -- clients -------------------------------------------------------------------------------------

    def url(self) -> str:
        if self.server is None:
            self.server = serve(port=0, emulator=self.emu)  # for other processes, beside the in-process one
        return str(self.server.url)

    def new_client(self, *, keep: bool = True) -> Client:
        """A client on this world's fal and cache folder (a restarted kernel gets a new one); ``keep``: the
        world's current client, whose wire the steps watch."""
        if self.options.http:
            inner: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport()
            queue_url = self.url()
        else:
            inner, queue_url = self.emu.transport(), "http://fal.test"
        wire = ClientSide(inner)
        client = Client(key=KEY, queue_url=queue_url, cache=self.cache_dir, transport=wire, retry=FAST,
                        use_stream=False, timeout=60.0, http_timeout=10.0)
        if keep:
            self.wire = wire
            self.clients.append(client)
        return client

    def drop_form(self) -> None:
        """Close the form and every widget it made (a notebook's cell cleared)."""
        from ipywidgets.widgets import widget

        if self.form is not None:
            self.got(self.form.result)
            for key in set(widget._instances) - self.form_widgets:
                with contextlib.suppress(KeyError):
                    widget._instances[key].close()
        self.form = None

    def restart(self) -> None:
        """A new Client on the same folder (the old one closed), as after a kernel restart."""
        self.drop_form()
        old = self.clients.pop()
        self.got(list(old.history))
        old.close()
        self.client = self.new_client()
        self.stats["restarts"] += 1

    def close(self) -> None:
        self.drop_form()
        for c in self.clients:
            with contextlib.suppress(Exception):
                c.close()
        self.clients.clear()
        if self.server is not None:
            self.server.close()
        for k, v in self._env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    # -- what was asked --------------------------------------------------------------------------------

    def asked(self, asks: Sequence[Ask], *, paid_again: bool = False, cached: bool = True) -> list[list[str]]:
        """Record the requests behind ``asks`` (``paid_again``: refresh or no cache; ``cached``: the call
        uses the cache); their identities."""
        self.call_cached = cached
        out = []
        for ask in asks:
            try:
                plan = self.client.plan(ask.prompt, **ask.kwargs())
            except FalnbError:
                out.append([])
                continue
            idents = []
            self.stats["requests asked"] += len(plan.requests)
            for req in plan.requests:
                ident = identity(req.model, req.input)
                self.replicas[ident] = max(self.replicas.get(ident, 0), req.replica + 1)
                self.keys[ident].add(req.key)
                if paid_again:
                    self.allow[ident] += 1
                idents.append(ident)
            out.append(idents)
        self.call_idents = [i for group in out for i in group]
        return out

    def damaged(self, everything: bool = False, idents: Sequence[str] = (), *, ledger_lost: bool = False) -> None:
        """The user damaged the cache: what it held may be paid again, and what was only journaled is theirs to lose."""
        for ident in (self.replicas if everything else idents):
            self.allow[ident] += 1
        if ledger_lost:  # the ledger (and so what the total budget counted) went with the index
            self.spent_before_budget = self.emu.ledger.cost
        self.forgiven.update(rid for rid, _, _ in self.emu.billed())

    def excuse(self, idents: Sequence[str]) -> None:
        """These requests' pictures are the user's to lose (an interrupt with ``cache=False``, which keeps no
        journal): paid, and not counted against promise (b)."""
        idents = set(idents)
        self.forgiven.update(s.request_id for s in self.emu.record.submits if s.identity in idents)
        self.stats["given up by the user (cache=False, interrupted)"] += 1

    # -- what the user saw -------------------------------------------------------------------------------

    def got(self, result: Any) -> None:
        """A Generation (or a list/dict of them) the user holds."""
        if isinstance(result, falnb.Generation):
            self.delivered.update(result.request_ids)
        elif isinstance(result, dict):
            for v in result.values():
                self.got(v)
        elif isinstance(result, (list, tuple)):
            for v in result:
                self.got(v)

    def error(self, exc: BaseException, idents: Sequence[str], where: str, *, cancelled: bool = False) -> None:
        """An error a user saw from ``where``: (d) its kind and size, (c) if it says "uncertain"."""
        self.stats[f"error {type(exc).__name__}"] += 1
        self.examples.setdefault(type(exc).__name__, f"{where}: {str(exc)[:240]!r}")
        if cancelled and type(exc).__name__ == "CancelledError":
            return  # the caller cancelled its own task: asyncio's answer, not an error to show
        if not isinstance(exc, FalnbError):
            self.violate("d", f"{where} raised a raw {type(exc).__name__}: {exc!s:.300}")
            return
        lines = "\n".join(exc._render_traceback_()).splitlines()
        if len(lines) > 3:
            self.violate("d", f"{where}: {type(exc).__name__} renders in {len(lines)} lines: {lines}")
        if isinstance(exc, SubmitUncertainError):
            self.uncertain(idents, where, str(exc))
        elif isinstance(exc, RequestCancelledError) and "may have queued" in str(exc):
            self.told_uncertain.update(idents)  # "a submit was on the way to fal with no answer yet"

    def uncertain(self, idents: Sequence[str], where: str, text: str) -> None:
        """(c): a request refused as uncertain must have reached fal without falnb learning its id."""
        self.told_uncertain.update(idents)
        if not idents:
            return
        if not any(self.emu.orphans(i) for i in idents):
            self.violate("c", f"{where} refused as uncertain, but no submit of it reached fal unanswered "
                              f"({[self.emu.submits_of(i) for i in idents]} submits, all answered): {text:.300}")

    def violate(self, letter: str, text: str) -> None:
        self.violations.append(f"({letter}) {text}")
        raise Violation(f"({letter}) {text}")

    # -- the invariants ----------------------------------------------------------------------------------

    def check(self) -> None:
        """Invariants (a), (b) and (e) over the whole world (c and d are checked where errors are seen)."""
        self.stats["invariant checks"] += 3
        for client in self.clients:  # what a call built and dropped (an interrupt after the download) is there
            self.got(list(client.history))
        billed = self.emu.billed()
        per = collections.Counter(ident for _, ident, status in billed if ident is not None)
        for ident, n in per.items():
            allowed = self.replicas.get(ident, 0) * (1 + self.allow[ident])
            if n > allowed:
                self.violate("a", f"fal billed {n} requests for {ident[:160]} (asked {self.replicas.get(ident, 0)}, "
                                  f"refreshes/damage {self.allow[ident]})")
        budget = self.options.budget_total
        spent = self.emu.ledger.cost - self.spent_before_budget
        if budget is not None and spent > budget + 1e-9:
            self.violate("a", f"fal billed ${spent:.3f} through a cache folder whose FALNB_BUDGET_TOTAL is ${budget}")
        view = self._cache_view()
        if view is None:
            return  # the index cannot be read now (a falnb CacheError): the next step checks again
        cached, journaled, uncertain = view
        # stored once is delivered (a refresh replaces it by the user's choice; a later loss shows as paying again)
        self.delivered |= cached
        for sub in self.emu.unlearned():
            if self.keys.get(sub.identity, set()) & uncertain or sub.identity in self.told_uncertain:
                # its submit answer was lost, and the user is told: the journal marks it uncertain, or an error
                # said so (a later refresh may clear the mark: the user chose to pay again)
                self.forgiven.add(sub.request_id)
        for rid, ident, status in billed:
            if status != 200 or rid in self.delivered or rid in cached or rid in journaled or rid in self.forgiven:
                continue
            never_learned = rid in {s.request_id for s in self.emu.orphans(ident or "")}
            self.violate("b", f"paid request {rid} ({(ident or '?')[:120]}) is neither delivered, cached nor "
                              f"journaled{' (falnb never learned its id)' if never_learned else ''}")
        self._resources()

    def _cache_view(self) -> tuple[set[str], set[str], set[str]] | None:
        """Request ids the cache holds, request ids the journal holds, keys the journal marks uncertain (through
        the public ``ResponseCache``, as a user would list them)."""
        if not (self.cache_dir / "index.sqlite3").exists():
            return set(), set(), set()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            view = ResponseCache(self.cache_dir)
            try:
                cached = {e.request_id for e in view.entries(namespace="*") if e.request_id}
                rows = view.journal(namespace="*")
            except CacheError as exc:  # a falnb error (what a user would see): the view is unknown this time
                self.stats[f"cache unreadable: {exc.message.split(':')[-1].strip()[:40]}"] += 1
                return None
            except sqlite3.DatabaseError as exc:
                self.violate("d", f"ResponseCache.entries()/journal() raised a raw {type(exc).__name__}: {exc}")
        journaled = {r["request_id"] for r in rows if r["request_id"]}
        uncertain = {r["key"] for r in rows if not r["request_id"] and r["state"] in ("sending", "uncertain")}
        return cached, journaled, uncertain

    def _resources(self) -> None:
        now = resources()
        if self.resources0 is None:
            self.resources0 = now
            return
        fds, threads, rss = now
        fds0, threads0, rss0 = self.resources0
        self.stats["max fds over start"] = max(self.stats["max fds over start"], fds - fds0)
        self.stats["max threads over start"] = max(self.stats["max threads over start"], threads - threads0)
        if fds > fds0 + SLACK_FDS or threads > threads0 + SLACK_THREADS or rss > rss0 + SLACK_RSS_MB:
            self.violate("e", f"resources grew: fds {fds0}->{fds}, threads {threads0}->{threads}, "
                              f"RSS {rss0:.0f}->{rss:.0f} MB")


def resources() -> tuple[int, int, float]:
    """Open file descriptors, this process's threads other than the emulator's HTTP server's, and RSS in MB."""
    fds = len(os.listdir("/proc/self/fd"))
    threads = sum(1 for t in threading.enumerate() if "process_request" not in t.name)
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return fds, threads, rss


@contextlib.contextmanager
def quiet() -> Iterator[list[warnings.WarningMessage]]:
    """falnb's warnings of a step, kept (not printed: they are not errors)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield seen


# -- the invariants can fail ------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(Options(), tmp_path)
    yield w
    w.close()


def test_a_catches_a_request_paid_twice(world: World) -> None:
    ask = Ask("a fox")
    world.asked([ask])
    world.got(world.client.generate(ask.prompt, **ask.kwargs()))
    world.check()
    world.got(world.client.generate(ask.prompt, refresh=True, **ask.kwargs()))  # not declared as a refresh
    with pytest.raises(Violation, match=r"\(a\) fal billed 2 requests"):
        world.check()


def test_b_catches_a_paid_picture_that_was_lost(world: World) -> None:
    ask = Ask("a hare")
    world.asked([ask], paid_again=True)
    world.client.generate(ask.prompt, cache=False, **ask.kwargs())  # delivered, and then not kept by the test
    world.client.history.clear()  # nor by the client
    with pytest.raises(Violation, match=r"\(b\) paid request"):
        world.check()


def test_c_catches_an_uncertain_refusal_of_a_request_that_never_left(world: World) -> None:
    idents = world.asked([Ask("an owl")])[0]
    with pytest.raises(Violation, match=r"\(c\) test refused as uncertain"):
        world.error(SubmitUncertainError("the submit was sent but its answer was lost"), idents, "test")


def test_c_accepts_an_uncertain_refusal_after_a_lost_answer(world: World) -> None:
    ask = Ask("a heron")
    idents = world.asked([ask])[0]
    world.emu.lose_answers = 1
    with pytest.raises(SubmitUncertainError) as info:
        world.client.generate(ask.prompt, **ask.kwargs())
    world.error(info.value, idents, "generate")
    world.check()  # billed later, never delivered: the journal marks it uncertain and the user was told
    assert not world.violations


def test_d_catches_a_raw_error_and_a_long_one(world: World) -> None:
    with pytest.raises(Violation, match=r"\(d\) x raised a raw KeyError"):
        world.error(KeyError("seed"), [], "x")
    with pytest.raises(Violation, match=r"\(d\) y: FalnbError renders in 4 lines"):
        world.error(FalnbError("one\ntwo\nthree", hint="four"), [], "y")


def test_e_catches_growing_open_files(world: World) -> None:
    world.check()
    leaked = [open(os.devnull) for _ in range(SLACK_FDS + 1)]
    try:
        with pytest.raises(Violation, match=r"\(e\) resources grew"):
            world.check()
    finally:
        for f in leaked:
            f.close()


def test_a_defect_test_that_does_not_exist_is_an_error() -> None:
    with pytest.raises(AssertionError, match="no test test_defect_99_none"):
        defect_open("test_defect_99_none")
