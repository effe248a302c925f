"""``python -m bench soak``: the simulation of falnb's promises (``tests/test_simulation.py``), for long.

Worlds of ``--episode-steps`` steps each (a fresh emulator, cache folder and clients), drawn from
``random.Random(f"{seed}:{episode}")``, until ``--steps`` steps have run; the invariants (a)-(e) are checked
after every step.  Prints the steps run, the faults injected by kind, the invariant checks made, the
requests asked for and billed, and every violation with the command that replays its episode.  Needs the
test extra (``pip install -e '.[test]'``: Hypothesis, pytest, IPython).  Exit status 1 on a violation.

    python -m bench soak --steps 20000 --seed 1
    python -m bench soak --seed 1 --episode 37 --episode-steps 40      # replay one episode
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from typing import Any

__all__ = ["main"]


def _faults(stats: collections.Counter[str], emu_faults: collections.Counter[str]) -> collections.Counter[str]:
    out: collections.Counter[str] = collections.Counter()
    for name, n in stats.items():
        if name.startswith(("interrupt at ", "damage: ")):
            out[name] += n
    out["connection refused (not sent)"] += stats["connections refused"]
    for name in ("child processes killed", "restarts", "second clients", "second processes"):
        out[name] += stats[name]
    out.update(emu_faults)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20_000, help="steps in all (default 20000)")
    ap.add_argument("--seed", default="1", help="the soak's seed (default 1)")
    ap.add_argument("--episode-steps", type=int, default=40, help="steps per world (default 40)")
    ap.add_argument("--episode", type=int, default=None, help="replay this one episode")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    ap.add_argument("--examples", action="store_true", help="print one message of each kind of error users saw")
    a = ap.parse_args(argv)

    from tests.test_simulation import soak_episode
    from tests.test_simulation_world import resources

    started = time.monotonic()
    stats: collections.Counter[str] = collections.Counter()
    faults: collections.Counter[str] = collections.Counter()
    violations: list[str] = []
    examples: dict[str, str] = {}
    first: tuple[int, int, float] | None = None
    growth = [0, 0, 0.0]
    episodes = [a.episode] if a.episode is not None else range(10**9)
    ran = 0
    for episode in episodes:
        if a.episode is None and ran >= a.steps:
            break
        world = soak_episode(f"{a.seed}:{episode}", a.episode_steps)
        steps = sum(n for k, n in world.stats.items() if k.startswith("step "))
        ran += steps
        stats.update(world.stats)
        for kind, text in world.examples.items():
            examples.setdefault(kind, text)
        faults.update(_faults(world.stats, world.emu.record.faults))
        stats["requests billed"] += len(world.emu.billed())
        stats["distinct requests asked"] += sum(world.replicas.values())
        stats["episodes"] += 1
        for v in world.violations:
            violations.append(f"{v}\n    replay: python -m bench soak --seed {a.seed} --episode {episode} "
                              f"--episode-steps {a.episode_steps}")
        now = resources()
        first = first or now
        growth = [max(growth[0], now[0] - first[0]), max(growth[1], now[1] - first[1]),
                  max(growth[2], now[2] - first[2])]
        if not a.quiet:
            print(f"[soak] episode {episode}: {steps} steps ({ran} in all), {len(world.violations)} violation(s), "
                  f"{time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    _report(a, ran, stats, faults, violations, growth, time.monotonic() - started)
    if a.examples:
        print("an example of each error users saw:")
        for kind, text in sorted(examples.items()):
            print(f"  {kind}: {text}")
    return 1 if violations else 0


def _report(a: Any, ran: int, stats: collections.Counter[str], faults: collections.Counter[str],
            violations: list[str], growth: list[Any], took: float) -> None:
    print(f"soak: seed {a.seed}, {stats['episodes']} worlds of up to {a.episode_steps} steps, {took:.0f} s")
    print(f"steps run: {ran}")
    print("  by kind: " + ", ".join(f"{k[5:]} {n}" for k, n in sorted(stats.items()) if k.startswith("step ")))
    print(f"faults injected: {sum(faults.values())}")
    for name, n in faults.most_common():
        print(f"  {name}: {n}")
    print(f"invariant checks made: {stats['invariant checks']} (a, b, e after every step; c and d on "
          f"{sum(n for k, n in stats.items() if k.startswith('error '))} errors seen)")
    asked = stats["requests asked"]
    print(f"requests asked: {asked} ({stats['distinct requests asked']} distinct within their worlds), "
          f"billed by fal: {stats['requests billed']}")
    print("errors users saw: " + ", ".join(f"{k[6:]} {n}" for k, n in sorted(stats.items())
                                            if k.startswith("error ")))
    print(f"requests given up by the user (interrupted with cache=False, so no journal): "
          f"{stats['given up by the user (cache=False, interrupted)']}")
    print(f"resources over the soak: open files +{growth[0]}, threads +{growth[1]}, RSS +{growth[2]:.0f} MB")
    print(f"violations: {len(violations)}")
    for v in violations:
        print("  " + v)
