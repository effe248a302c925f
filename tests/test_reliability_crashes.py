"""Figure 3: SIGKILL a child Python process at random points of a request's life, then re-run.

The emulator runs as a real HTTP server in this process; each trial starts a child Python process
(``tests/_procs/gen_child.py``) that calls ``Client.generate`` with a shared ``FALNB_CACHE_DIR``
and kills itself with SIGKILL from a timer thread at a random moment of the chosen phase (before
submit, right after submit, while queued, while running, while downloading).  A second child then
runs the same call.  Where fal (the emulator) still holds the request, the re-run re-attaches:
no new submit, nothing billed twice; every request ends with its pictures, in the cache too.

Each phase is held until the kill has fired, whatever the machine's load: the emulator's clock is
paused while the child's request waits in the queue (behind a blocker) or runs, and the image download
is held for a minute while the child downloads; the clock resumes (the download is released) before
the re-run.  So every trial lands in the phase it aims at.
"""

from __future__ import annotations

import collections
import hashlib
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from falnb import Client
from falnb.emulator import Emulator, EmulatorServer, Faults

from ._clock import SwitchClock
from ._procs.runner import run_child

KEY = "sk-test-crash"
MODEL = "fal-ai/flux/schnell"
PHASES = ["before-submit", "after-submit", "queued", "running", "downloading"]


@pytest.fixture
def clock() -> SwitchClock:
    return SwitchClock()


@pytest.fixture
def server(serve_emulator: Callable[..., EmulatorServer], clock: SwitchClock) -> EmulatorServer:
    # 0.05 s of work per request: each phase is held by the paused clock (or the held download), not by the latency
    return serve_emulator(Emulator(latency=0.05, concurrency=1, faults=Faults(), clock=clock))


#: how long the image download is held in the "downloading" trials (the kill comes within 0.2 s)
HELD = 60.0


def _landed(phases: list[str]) -> str:
    last = phases[-1].split()[0] if phases else "start"
    return {"start": "before-submit", "submitting": "before-submit", "submitted": "after-submit",
            "completed": "downloading"}.get(last, last)


def test_figure_crashes_sigkill_at_random_points_then_rerun(server: EmulatorServer, clock: SwitchClock,
                                                            tmp_path: Path) -> None:
    emu = server.emulator
    cache_dir = tmp_path / "shared-cache"
    rng = random.Random(20240807)
    plan = PHASES * 4
    rng.shuffle(plan)
    landed: collections.Counter[str] = collections.Counter()
    outcome: collections.Counter[str] = collections.Counter()
    rows = []
    started = time.monotonic()
    for i, target in enumerate(plan):
        prompt = f"crash trial {i}: {target}"
        if target in ("queued", "running"):
            clock.freeze()  # fal's work stands still: the request stays queued (or running) until the kill
        if target == "queued":  # a request ahead of ours holds the one slot, so ours waits in fal's queue
            httpx.post(f"{server.url}/{MODEL}", json={"prompt": f"blocker {i}"},
                       headers={"Authorization": f"Key {KEY}"}).raise_for_status()
        if target == "downloading":
            emu.configure(file_answer_delay=HELD)
        # before submit: at the submit's start (the claim is journaled, nothing sent); right after:
        # the moment fal's answer is journaled; the longer phases: a random moment within them
        delay = {"before-submit": 0.0, "after-submit": 0.0}.get(target, rng.uniform(0.0, 0.2))
        base = {"url": server.url, "key": KEY, "prompts": [prompt], "seed": 7}
        try:
            code, phases, _ = run_child({**base, "kill": target, "delay": delay}, cache_dir)
        finally:
            clock.thaw()
            emu.configure(file_answer_delay=0.0)
        where = _landed(phases) if code == -signal.SIGKILL else "finished"
        landed[where] += 1
        killed_id = next((p.split()[1] for p in phases if p.startswith("submitted ")), None)

        code, _, result = run_child(base, cache_dir)
        assert code == 0 and result is not None
        first = result[0]
        if first.get("error") == "SubmitUncertainError":
            # killed between sending the submit and journaling fal's answer: falnb cannot know
            # whether fal queued it; the user decides to pay again
            outcome["uncertain, refreshed by the user"] += 1
            code, _, result = run_child({**base, "refresh": True}, cache_dir)
            first = result[0]
        assert "error" not in first, first
        jobs = [j for j in emu.requests() if j.inputs.get("prompt") == prompt]
        ids = {j.request_id for j in jobs}
        billed = [e for e in emu.ledger.entries if e.request_id in ids]
        (rid,) = first["request_ids"]
        if killed_id is not None:
            assert rid == killed_id, "the re-run did not re-attach to the request fal holds"
            outcome["re-attached, no new submit"] += 1
        elif where != "finished":
            outcome["submitted anew (nothing had been sent)"] += 1
        rows.append((i, target, where, len(jobs), len(billed)))
        assert rid in ids
        assert len(jobs) == 1 and len(billed) == 1, (target, where, len(jobs), len(billed))
        [[sha, w, h]] = first["images"]
        assert (w, h) == (256, 256)
        # the pictures are in the shared cache: served with no key and no network
        reader = Client(queue_url="http://127.0.0.1:9", cache=cache_dir)
        hit = reader.generate(prompt, model=MODEL, size="256x256", seed=7)
        assert hit.cached and hashlib.sha256(hit.image.data).hexdigest() == sha
        reader.close()
    took = time.monotonic() - started
    requests = len(plan)
    total_jobs = sum(r[3] for r in rows)
    total_billed = sum(r[4] for r in rows)
    print(f"FIGURE crashes: {requests} SIGKILL trials; landed in: "
          + ", ".join(f"{p} {landed.get(p, 0)}" for p in [*PHASES, "finished"] if landed.get(p, 0) or p != "finished"))
    print("FIGURE crashes: re-runs: " + ", ".join(f"{k} {v}" for k, v in outcome.items())
          + f"; submits {total_jobs} and billed {total_billed} for {requests} requests; "
          f"{len(rows)}/{requests} ended with their images (cache hit afterwards); {took:.1f} s")
    assert total_jobs == requests and total_billed == requests
    assert dict(landed) == {p: 4 for p in PHASES}, landed  # every trial in the phase it aimed at
    # nothing is left half-done in the journal
    assert Client(queue_url="http://127.0.0.1:9", cache=cache_dir).cache.journal() == []  # type: ignore[union-attr]
