"""The simulation's rarer steps: a process killed at a phase of its request, a second process or a second
client asking for the same request, and damage to the cache folder (a file, the index, the whole folder,
read-only).  Each one leaves the world at rest, like the steps of ``test_simulation_steps``."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path
from typing import Any

from ._procs.runner import finish_child, run_child, start_child
from .test_simulation_fal import Trap, open_findings
from .test_simulation_steps import ASKS, generate
from .test_simulation_world import KEY, Ask, World, quiet

__all__ = ["DAMAGE", "KILLS", "crash_child", "damage", "second_client", "second_process"]

#: where a child process is SIGKILLed (tests/_procs/gen_child.py's phases)
KILLS = ["before-submit", "after-submit", "queued", "running", "downloading", "no kill"]
DAMAGE = ["an image file", "the index", "the whole folder", "read-only"]
_MODEL = "fal-ai/flux/schnell"


def _child_cfg(world: World, ask: Ask, **extra: Any) -> dict[str, Any]:
    return {"url": world.url(), "key": KEY, "prompts": [ask.prompt], "model": _MODEL, "size": ask.size,
            "seed": ask.seed, "timeout": 60.0, **extra}


def _child_ask(ask: Ask) -> Ask:
    return Ask(ask.prompt, _MODEL, 1, ask.seed, ask.size)  # what gen_child.py asks for


def _child_result(world: World, result: Any, idents: list[str]) -> None:
    for item in result or []:
        if "request_ids" in item:
            world.delivered.update(item["request_ids"])
        elif item.get("error") == "SubmitUncertainError":
            world.uncertain(idents, "a child process", item.get("message", ""))


def crash_child(world: World, ask: Ask, kill: str) -> None:
    """Another process (a kernel) is SIGKILLed at a phase of its request: nothing it paid may be lost, and
    this process, asking next, re-attaches instead of paying again."""
    ask = _child_ask(ask)
    idents = world.asked([ask])[0]
    code, _, result = run_child(_child_cfg(world, ask, kill=None if kill == "no kill" else kill, delay=0),
                                     world.cache_dir, timeout=120)
    world.stats["child processes"] += 1
    world.stats["child processes killed"] += code != 0
    _child_result(world, result, idents)
    generate(world, ask, "none", None)  # the same request, asked again here


def second_process(world: World, ask: Ask) -> None:
    """Another process asks for the same request while this one's is on fal: one submit between them."""
    ask = _child_ask(ask)
    idents = world.asked([ask])[0]
    procs: list[Any] = []

    def spawn() -> None:
        proc = start_child(_child_cfg(world, ask), world.cache_dir)
        procs.append(proc)
        assert proc.stdout is not None
        # wait until the child calls generate, so it meets this process's claim (not yet its entry)
        while (line := proc.stdout.readline()) and not line.startswith("PHASE start"):
            pass

    trap = Trap("submitting", spawn, idents[0])
    world.emu.traps.append(trap)
    try:
        generate(world, ask, "none", None)
    finally:
        world.emu.traps.remove(trap)
    if procs:
        _, _, result = finish_child(procs[0], timeout=120)
        _child_result(world, result, idents)
        world.stats["second processes"] += 1


def second_client(world: World, ask: Ask) -> None:
    """A second client of this process (another notebook's kernel thread) asks for the same request at once."""
    idents = world.asked([ask])[0]
    other = world.new_client(keep=False)
    results: list[Any] = []

    def ask_too() -> None:
        with quiet():
            try:
                results.append(other.generate(ask.prompt, **ask.kwargs()))
            except BaseException as exc:
                results.append(exc)

    thread = threading.Thread(target=ask_too, daemon=True)
    trap = Trap("submitting", thread.start, idents[0])
    world.emu.traps.append(trap)
    try:
        generate(world, ask, "none", None)
    finally:
        world.emu.traps.remove(trap)
    if trap.fired:
        thread.join(120)
    other.close()
    if trap.fired:
        for r in results:
            if isinstance(r, BaseException):
                world.error(r, idents, "a second client")
            else:
                world.got(r)
        world.stats["second clients"] += 1


def damage(world: World, what: str, draw: Any = None) -> None:
    """The user (or the disk) damages the cache folder; what falnb then pays again is the user's doing.
    ``draw`` picks what a kernel asks for in a read-only folder (as root: see :func:`read_only_child`)."""
    folder = world.cache_dir
    if what == "an image file":
        files = sorted(p for p in (folder / "objects").rglob("*") if p.is_file()) if folder.exists() else []
        if not files:
            return
        victim = files[len(world.delivered) % len(files)]
        victim.write_bytes(victim.read_bytes()[: max(1, victim.stat().st_size // 2)])
        world.damaged(everything=True)
    elif what == "the index":
        index = folder / "index.sqlite3"
        if not index.exists() or "S2" in open_findings():
            return  # simulation finding S2: an index damaged while open loses what was paid after the damage
        with open(index, "r+b") as f:
            f.write(b"\0garbage, not SQLite\0" * 8)
        world.damaged(everything=True, ledger_lost=True)
    elif what == "the whole folder":
        shutil.rmtree(folder, ignore_errors=True)
        world.damaged(everything=True, ledger_lost=True)
    elif what == "read-only":
        if os.geteuid() == 0:  # root ignores file modes: another kernel, run as nobody, meets the folder read-only
            if draw is not None:
                read_only_child(world, [draw(ASKS), draw(ASKS)])
            return
        for p in [folder, *folder.rglob("*")] if folder.exists() else []:
            p.chmod(0o555 if p.is_dir() else 0o444)
        world.stats["read-only folders"] += 1
        return
    world.stats[f"damage: {what}"] += 1


def read_only_child(world: World, asks: list[Ask]) -> None:
    """A kernel run as ``nobody`` asks for two requests in the folder, made read-only: what is cached is
    served (not paid), what is new is paid once and returned (it cannot be stored: asked again here, it may
    be paid again: the user's doing)."""
    folder = world.cache_dir
    if not folder.is_dir():
        return
    first = _child_ask(asks[0])
    asks = [Ask(a.prompt, _MODEL, 1, first.seed, first.size) for a in asks]  # (one child: one seed and size)
    idents = world.asked(asks)
    n = world.stats["read-only kernels"]  # (each warm-up is a new request: its cache is a scratch one)
    warm = Ask(f"warming up read-only kernel {n}", _MODEL, 1, asks[0].seed, asks[0].size)
    world.asked([warm])  # (on a scratch cache: paid, delivered, and never asked again)
    root = folder.parent  # (the world's own folder: mkdtemp's 0700, which nobody may not enter)
    if any(not p.stat().st_mode & 0o001 for p in root.parents):
        return  # a folder above it that nobody may enter either (a private TMPDIR): not changed for a test
    modes = {p: p.stat().st_mode for p in [root, folder, *folder.rglob("*")]}
    try:
        root.chmod(modes[root] | 0o055)
        for p in [folder, *folder.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
        cfg = _child_cfg(world, asks[0], prompts=[a.prompt for a in asks], as_nobody=True, warm=warm.prompt)
        code, _, result = run_child(cfg, folder, timeout=120)
    finally:
        for p, mode in modes.items():
            with contextlib.suppress(OSError):
                p.chmod(mode)
    world.stats["read-only kernels"] += 1
    assert code == 0 and result is not None, "the read-only kernel did not finish"
    for item in result:  # (an uncertain submit is checked by _child_result; the others are fal's own answers)
        if "Cache" in item.get("error", "") or "Index" in item.get("error", ""):
            world.violate("b", f"a kernel in a read-only folder got {item['error']}: {item.get('message', '')[:300]}")
    _child_result(world, result, [i for ids in idents for i in ids])
    world.damaged(idents=[i for ids in idents for i in ids])  # not stored: may be paid again


def restore_modes(folder: Path) -> None:
    """Undo ``read-only`` (so the folder can be cleaned up)."""
    for p in [folder, *folder.rglob("*")] if folder.exists() else []:
        p.chmod(0o700 if p.is_dir() else 0o600)
