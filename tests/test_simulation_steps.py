"""The simulation's steps: what a user does (the public API, a ``%%falimage`` cell in a real IPython shell,
the form's buttons), with a fault armed for the step and an interrupt at an exact phase of a request.

Each step returns once everything it started has ended, so the world's invariants are read at rest.
The choices (:data:`FAULTS`, :data:`PHASES`, :data:`ASKS`...) are plain lists: the Hypothesis machine
draws from them, and so does the soak (``python -m bench soak``) with its own seeded RNG.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from falnb import BudgetExceededError, FalnbError, InputError, form
from falnb.notebook._form_status import plain

from ._cells import run as run_cell
from .defects._helpers import interrupt_main
from .test_simulation_fal import Trap
from .test_simulation_world import Ask, World, quiet

__all__ = ["ASKS", "FAULTS", "PHASES", "agenerate", "arm_fault", "cell", "click_form", "generate",
           "generate_many", "start_run"]

#: a small pool, so that requests repeat: hits, re-attaching and double-paying all need repeats
ASKS = [Ask("a red fox"), Ask("a red fox", seed=7), Ask("a lighthouse", n=2, seed=3), Ask("a lighthouse", "flux-pro"),
        Ask("an owl", "flux-pro", seed=5), Ask("forbidden-content, a cat")]
#: the fault armed for one step ("none" most often)
FAULTS = ["none", "none", "none", "429 burst", "gateway errors", "500s", "dropped status connections",
          "lost submit answer", "slow submit answer", "unreachable, then reachable", "unreachable", "failed generation",
          "submit answer lost by a gateway"]
#: where an interrupt lands (None: no interrupt)
PHASES: list[str | None] = [None, None, "submitting", "queued", "running", "downloading"]


@contextlib.contextmanager
def arm_fault(world: World, fault: str) -> Iterator[None]:
    """The fault holds for one step; then fal and the network behave again."""
    emu, wire = world.emu, world.wire
    assert wire is not None
    knobs: dict[str, Any] = {
        "429 burst": {"rate_limit_burst": 2}, "gateway errors": {"gateway_submit_rate": 0.3, "gateway_status_rate": 0.3,
                                                                 "gateway_result_rate": 0.3},
        "500s": {"server_error_rate": 0.3}, "dropped status connections": {"drop_status_rate": 0.3},
        "slow submit answer": {"submit_answer_delay": 0.01}, "failed generation": {"infra_error_rate": 1.0},
    }.get(fault, {})
    if knobs:
        emu.configure(**knobs)
    if fault == "lost submit answer":
        emu.lose_answers = 1
    if fault == "submit answer lost by a gateway":
        emu.gateway_answers = 1
    refuse = {"unreachable, then reachable": 2, "unreachable": 10_000}.get(fault, 0)
    wire.refuse = refuse
    world.stats[f"fault {fault}"] += fault != "none"
    try:
        yield
    finally:
        emu.configure(rate_limit_burst=0, gateway_submit_rate=0.0, gateway_status_rate=0.0, gateway_result_rate=0.0,
                      server_error_rate=0.0, drop_status_rate=0.0, submit_answer_delay=0.0, infra_error_rate=0.0)
        emu.lose_answers = emu.gateway_answers = 0
        world.stats["connections refused"] += wire.refused
        wire.refuse, wire.refused = 0, 0


@contextlib.contextmanager
def trapped(world: World, phase: str | None, ident: str | frozenset[str] | None,
            action: Callable[[], None]) -> Iterator[Trap | None]:
    """An interrupt armed at ``phase`` of the request ``ident`` for the step; disarmed after it."""
    if phase is None or ident is None:
        yield None
        return
    blockers = _block(world) if phase == "queued" else []

    def act() -> None:
        try:
            action()
        finally:
            _release(world, blockers)

    trap = Trap(phase, act, ident)
    world.emu.traps.append(trap)
    try:
        yield trap
    finally:
        _release(world, blockers)
        world.emu.traps.remove(trap)
        world.stats[f"interrupt at {phase}"] += trap.fired
        if trap.fired:
            world.interrupted.update(world.call_idents)
            if not world.call_cached:
                # cache=False keeps no journal: a request fal finished as the interrupt landed is paid and
                # not re-attachable, by the user's choice (the promise (b) is the cache's)
                world.excuse(world.call_idents)


_AUTH = {"authorization": "Key sk-sim-blocker"}


def _block(world: World) -> list[str]:
    """Requests of another notebook that hold every running slot of the account until the trap fires (then they
    are cancelled, unbilled): the step's requests wait in fal's queue, as a phase, not as a race."""
    emu = world.emu
    latency = emu.settings.latency
    emu.configure(latency=1e9)
    try:
        return [emu.handle("POST", "http://fal.test/fal-ai/flux/schnell", _AUTH,
                           b'{"prompt": "another notebook\'s request"}').json()["cancel_url"]
                for _ in range(emu.settings.concurrency)]
    finally:
        emu.configure(latency=latency)


def _release(world: World, blockers: list[str]) -> None:
    emu = world.emu
    behaviour = emu.settings.running_cancel
    emu.configure(running_cancel="honoured")  # (the harness's own blockers stop, whatever the world's apps do)
    try:
        while blockers:
            emu.handle("PUT", blockers.pop(), _AUTH)
    finally:
        emu.configure(running_cancel=behaviour)


def sigint() -> None:
    """A kernel interrupt: a real SIGINT, once the main thread waits inside falnb."""
    interrupt_main(within=10.0)


@contextlib.contextmanager
def nothing_sent_if_refused(world: World, where: str) -> Iterator[None]:
    """A call refused before sending (a mistake, a budget) must not have sent anything."""
    wire = world.wire
    assert wire is not None
    before, submits = wire.sent["POST"], len(world.emu.record.submits)
    try:
        yield
    except (InputError, BudgetExceededError) as exc:
        if wire.sent["POST"] != before or len(world.emu.record.submits) != submits:
            world.violate("a", f"{where} was refused ({type(exc).__name__}) after sending a submit")
        raise


def _first(idents: list[list[str]], phase: str | None = None) -> str | frozenset[str] | None:
    """The request the interrupt waits for: the first; for "queued", any of the call's (the first to wait
    in fal's queue releases the other notebook's requests that hold the slots)."""
    flat = _flat(idents)
    return (frozenset(flat) if phase == "queued" else flat[0]) if flat else None


def _flat(idents: list[list[str]]) -> list[str]:
    return [i for group in idents for i in group]


def generate(world: World, ask: Ask, fault: str, phase: str | None, *, refresh: bool = False,
             cache: bool = True) -> None:
    """``Client.generate``; the interrupt is a real SIGINT in the waiting thread."""
    idents = world.asked([ask], paid_again=refresh or not cache, cached=cache)
    with quiet(), trapped(world, phase, _first(idents, phase), sigint), arm_fault(world, fault):
        try:
            with nothing_sent_if_refused(world, "generate"):
                world.got(world.client.generate(ask.prompt, refresh=refresh, cache=cache, **ask.kwargs()))
        except BaseException as exc:
            world.error(exc, idents[0], "generate")


def agenerate(world: World, ask: Ask, fault: str, phase: str | None) -> None:
    """``Client.agenerate`` in an event loop; the interrupt cancels the awaiting task."""
    idents = world.asked([ask])
    target: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = []

    def cancel() -> None:
        loop, task = target[0]
        loop.call_soon_threadsafe(task.cancel)

    async def main() -> Any:
        task = asyncio.current_task()
        assert task is not None
        target.append((asyncio.get_running_loop(), task))
        return await world.client.agenerate(ask.prompt, **ask.kwargs())

    with quiet(), trapped(world, phase, _first(idents, phase), cancel), arm_fault(world, fault):
        try:
            world.got(asyncio.run(main()))
        except BaseException as exc:
            world.error(exc, idents[0], "agenerate", cancelled=True)


def generate_many(world: World, asks: Sequence[Ask], fault: str, phase: str | None, *,
                  return_exceptions: bool = True) -> None:
    """``Client.generate_many`` of the asks' prompts (the first ask's model, n and seed)."""
    first = asks[0]
    same = [Ask(a.prompt, first.model, first.n, first.seed, first.size) for a in asks]
    idents = world.asked(same)
    with quiet(), trapped(world, phase, _first(idents, phase), sigint), arm_fault(world, fault):
        try:
            results = world.client.generate_many([a.prompt for a in same], return_exceptions=return_exceptions,
                                                 **first.kwargs())
        except BaseException as exc:
            world.error(exc, _flat(idents), "generate_many")
            return
    for result, group in zip(results, idents, strict=True):
        if isinstance(result, BaseException):
            world.error(result, group, "generate_many item")
        else:
            world.got(result)


def start_run(world: World, asks: Sequence[Ask], fault: str, phase: str | None) -> None:
    """``Client.start`` of several plans, watched, and stopped by ``Run.cancel()`` at the phase."""
    idents = world.asked(asks)
    holder: list[Any] = []
    ready = threading.Event()

    def cancel() -> None:
        ready.wait(10.0)  # the trap may fire before start() has returned the Run to this thread
        holder[0].cancel()

    with quiet(), trapped(world, phase, _first(idents, phase), cancel), arm_fault(world, fault):
        try:
            plans = [world.client.plan(a.prompt, **a.kwargs()) for a in asks]
            with nothing_sent_if_refused(world, "Client.start"):
                run = world.client.start(plans)
            holder.append(run)
            ready.set()
            results = run.wait()
        except BaseException as exc:
            ready.set()
            if holder:
                for r in holder[0].results:
                    if r is not None and not isinstance(r, BaseException):
                        world.got(r)  # what finished before the cancel is in the user's hands
            world.error(exc, _flat(idents), "Run.wait")
            return
    for result, group in zip(results, idents, strict=True):
        if isinstance(result, BaseException):
            world.error(result, group, "Run result")
        else:
            world.got(result)


def cell(world: World, shell: Any, asks: Sequence[Ask], fault: str, phase: str | None, *, refresh: bool = False,
         cache: bool = True) -> None:
    """A ``%%falimage`` cell in a real IPython shell: the asks' models side by side on the first ask's prompt."""
    first = asks[0]
    models = list(dict.fromkeys(a.model for a in asks))
    same = [Ask(first.prompt, m, first.n, first.seed, first.size) for m in models]
    idents = world.asked(same, paid_again=refresh or not cache, cached=cache)
    line = f"%%falimage -m {','.join(models)} -s {first.size} -n {first.n} --out _sim_out"
    line += (f" --seed {first.seed}" if first.seed is not None else "") + (" --refresh" if refresh else "")
    line += "" if cache else " --no-cache"
    shell.user_ns.pop("_sim_out", None)
    with quiet(), trapped(world, phase, _first(idents, phase), sigint), arm_fault(world, fault):
        done = run_cell(shell, f"{line}\n{first.prompt}\n")
    world.got(shell.user_ns.pop("_sim_out", None))
    world.stats["cells"] += 1
    if done.ok:
        return
    err = done.error
    name = type(err).__name__
    if not isinstance(err, FalnbError) and name != "UsageError":
        world.violate("d", f"cell {line!r} failed with a raw {name}: {done.text[-600:]}")
    if len(done.error_lines) > 3:
        world.violate("d", f"cell {line!r}: the error takes {len(done.error_lines)} lines: {done.error_lines}")
    if isinstance(err, FalnbError):
        world.error(err, _flat(idents), "cell")


def click_form(world: World, ask: Ask, fault: str, phase: str | None) -> None:
    """``falnb.form()``: one form per client, as a user keeps one; its fields set, Generate clicked, Cancel
    clicked at the phase; the status line is what the user reads."""
    idents = world.asked([ask])
    f = _form_for(world, ask)
    f.prompt_box.value = ask.prompt
    f.n_box.value = ask.n
    f.seed_box.value = "" if ask.seed is None else str(ask.seed)
    f.size_control.set(ask.size)
    shown: list[str] = []
    # as the user reads it: the widget holds HTML (amounts are kept from being typeset)
    f.status_label.observe(lambda ch: shown.append(plain(str(ch["new"]))), names="value")
    try:
        with quiet(), trapped(world, phase, _first(idents, phase), f.cancel_button.click), arm_fault(world, fault):
            f.generate_button.click()
            if f.job is not None and not f.job.wait(120):
                world.violate("d", f"the form's generation of {ask} never ended; status {f.status!r}")
    finally:
        f.status_label.unobserve_all("value")
    world.got(f.result)
    world.stats["form clicks"] += 1
    job = f.job
    result = job.run.results[0] if job is not None and job.run is not None else None
    if isinstance(result, BaseException):
        world.error(result, idents[0], "form")
    for text in shown:
        if text.startswith("error: ") and text[7:].split(":")[0] in _PYTHON_ERRORS:
            world.violate("d", f"the form shows a raw Python error: {text[:300]}")


def _form_for(world: World, ask: Ask) -> Any:
    """The world's form on its current client, showing ``ask``'s model."""
    from ipywidgets.widgets import widget

    f = world.form
    alias = world.client.catalog.resolve(ask.model).alias
    if f is not None and f.client is not world.client:
        world.drop_form()
        f = None
    if f is None:
        world.form_widgets = set(widget._instances)
        f = world.form = form(alias, client=world.client)
    elif f.model_picker.value != alias:
        f.model_picker.value = alias
    return f


_PYTHON_ERRORS = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}
