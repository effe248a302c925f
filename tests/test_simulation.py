"""A simulation test of falnb's promises (issue 11): a Hypothesis state machine drives the public API, a
``%%falimage`` cell in a real IPython shell and the form's buttons against the emulator (in process, or
over real HTTP), with faults drawn at random and interrupts at exact phases, restarts, crashed and
concurrent processes, cache damage and budgets; after every step it checks the invariants of
``test_simulation_world`` (a) to (e).

The short run here is deterministic (``derandomize=True``, a bounded number of examples and steps; the
emulator's clock moves with the calls, never with the wall clock).  The long run is
``python -m bench soak --steps 20000`` (its own seed; each violation is printed with the seed that
replays it).
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from . import test_simulation_crashes as crashes
from . import test_simulation_steps as steps
from .test_simulation_world import Options, World

__all__ = ["OPTIONS", "STEPS", "WEIGHTS", "Draw", "Promises", "shell", "step"]

T = TypeVar("T")
#: picks one of a list (Hypothesis' ``data.draw(sampled_from(...))``, or the soak's seeded RNG)
Draw = Callable[[Sequence[T]], T]

OPTIONS: dict[str, list[Any]] = {"http": [False, True], "concurrency": [1, 2, 4], "latency": [0.0, 2.0, 4.0],
                                 "budget_total": [None, None, 0.3], "running_cancel": ["honoured", "ignored"]}
_RARE = [False, False, False, False, True]


def _options(draw: Draw[Any]) -> Options:
    return Options(**{name: draw(values) for name, values in OPTIONS.items()})


_SHELL: Any = None


def shell(world: World) -> Any:
    """The real IPython shell with ``%load_ext falnb``, its cells on the world's current client."""
    global _SHELL
    if _SHELL is None:
        from IPython.core.interactiveshell import InteractiveShell

        _SHELL = InteractiveShell.instance()
        _SHELL.run_line_magic("load_ext", "falnb")
    from falnb.notebook._magics import magics_of

    magics_of(_SHELL).client = world.client
    return _SHELL


def unshell() -> None:
    """The shell's cells back on their own client (the shell outlives the world: other tests use it too)."""
    if _SHELL is not None:
        from falnb.notebook._magics import magics_of

        magics_of(_SHELL).client = None


def _asks(draw: Draw[Any]) -> list[Any]:
    return [draw(steps.ASKS) for _ in range(draw([1, 2, 3]))]


#: what a step does, given the world and a way to draw its choices
STEPS: dict[str, Callable[[World, Draw[Any]], None]] = {
    "generate": lambda w, d: steps.generate(w, d(steps.ASKS), d(steps.FAULTS), d(steps.PHASES), refresh=d(_RARE),
                                            cache=not d(_RARE)),
    "agenerate": lambda w, d: steps.agenerate(w, d(steps.ASKS), d(steps.FAULTS), d(steps.PHASES)),
    "generate_many": lambda w, d: steps.generate_many(w, _asks(d), d(steps.FAULTS), d(steps.PHASES),
                                                      return_exceptions=not d(_RARE)),
    "Client.start": lambda w, d: steps.start_run(w, _asks(d), d(steps.FAULTS), d(steps.PHASES)),
    "%%falimage": lambda w, d: steps.cell(w, shell(w), _asks(d), d(steps.FAULTS), d(steps.PHASES),
                                          refresh=d(_RARE), cache=not d(_RARE)),
    "form": lambda w, d: steps.click_form(w, d(steps.ASKS), d(steps.FAULTS), d(steps.PHASES)),
    "restart": lambda w, d: w.restart(),
    "second client": lambda w, d: crashes.second_client(w, d(steps.ASKS)),
    "damage": lambda w, d: crashes.damage(w, d(crashes.DAMAGE), d),
    "crash a process": lambda w, d: crashes.crash_child(w, d(steps.ASKS), d(crashes.KILLS)),
    "second process": lambda w, d: crashes.second_process(w, d(steps.ASKS)),
}
#: how often each step is drawn (processes are slow: rare)
WEIGHTS = {"generate": 6, "agenerate": 3, "generate_many": 3, "Client.start": 3, "%%falimage": 4, "form": 3,
           "restart": 2, "second client": 1, "damage": 1, "crash a process": 1, "second process": 1}
NAMES = [name for name, weight in WEIGHTS.items() for _ in range(weight)]
assert set(STEPS) == set(WEIGHTS)


def step(world: World, name: str, draw: Draw[Any]) -> None:
    world.stats[f"step {name}"] += 1
    STEPS[name](world, draw)


class Promises(RuleBasedStateMachine):
    """The state machine: one world per example, one drawn step per rule, the invariants after each."""

    def __init__(self) -> None:
        super().__init__()
        self.world: World | None = None

    @initialize(data=st.data())
    def make_world(self, data: st.DataObject) -> None:
        self.world = World(_options(lambda xs: data.draw(st.sampled_from(list(xs)))))

    @rule(name=st.sampled_from(NAMES), data=st.data())
    def act(self, name: str, data: st.DataObject) -> None:
        assert self.world is not None
        step(self.world, name, lambda xs: data.draw(st.sampled_from(list(xs))))

    @invariant()
    def promises_hold(self) -> None:
        if self.world is not None:
            self.world.check()

    def teardown(self) -> None:
        if self.world is not None:
            RAN.update(self.world.stats)
            unshell()
            self.world.close()


#: what the short run did, summed over its worlds
RAN: collections.Counter[str] = collections.Counter()


def test_simulation_of_the_promises() -> None:
    """The short run: a fixed, derandomized sample of worlds and steps (the soak runs many more)."""
    RAN.clear()
    run_state_machine_as_test(Promises, settings=settings(
        max_examples=12, stateful_step_count=20, derandomize=True, deadline=None, database=None,
        suppress_health_check=list(HealthCheck), print_blob=True))
    steps_run = sum(n for k, n in RAN.items() if k.startswith("step "))
    print(f"simulation: {steps_run} steps, {RAN['invariant checks']} invariant checks, "
          f"{sum(n for k, n in RAN.items() if k.startswith(('fault ', 'interrupt at ')))} faults and interrupts, "
          f"{RAN['requests asked']} requests asked")
    # the run did what it is for (a machine that only ever restarts would check nothing)
    assert steps_run >= 60 and RAN["invariant checks"] >= 3 * steps_run, dict(RAN)
    assert sum(n for k, n in RAN.items() if k.startswith("interrupt at ")) >= 3, dict(RAN)


def soak_episode(seed: str, steps_: int, on_step: Callable[[World, int, str], None] | None = None) -> World:
    """One world of ``steps_`` steps drawn by ``random.Random(seed)``; returns the closed world (its stats and
    violations).  A violation ends the episode."""
    rng = random.Random(seed)

    def draw(xs: Sequence[Any]) -> Any:
        return rng.choice(list(xs))

    world = World(_options(draw))
    try:
        world.check()
        for i in range(steps_):
            name = draw(NAMES)
            step(world, name, draw)
            world.check()
            if on_step is not None:
                on_step(world, i, name)
    except AssertionError as exc:
        if not world.violations:
            world.violations.append(f"(?) {exc}")
    finally:
        unshell()
        world.close()
    return world
