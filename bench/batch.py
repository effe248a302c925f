"""3. Batch: 64 prompts, emulator concurrency 16, fixed generation time; wall time of the whole batch.

falnb ``Client.generate_many`` with its defaults (every prompt goes to fal's queue at once: fal holds
what the account cannot run yet, and queue time is not billed) against
fal-client ``AsyncClient.subscribe`` + ``asyncio.gather`` and LiteLLM ``aimage_generation`` +
``asyncio.gather``, all over real HTTP to one emulator process.  Ideal = jobs / limit x generation
time; the ratio is falnb / ideal.  Each client runs in a fresh process per round (one warm-up
request first), rounds alternate the clients.

Also recorded, from the emulator's own schedule: when each wave of 16 started (a client that
keeps fewer than 16 requests on fal leaves runners idle) and the emulator's makespan; and falnb
with ``max_concurrency=16`` (at most as many requests on fal as the account runs: each wave waits
for falnb to see a slot free, which costs 0.05-0.1x of ideal).
"""

from __future__ import annotations

import math
from typing import Any

from . import Row, have, median, ratio, run_json
from ._emu import Emu, emulator

SIZE = "512x512"


def _schedule(emu: Emu, jobs: int, limit: int) -> dict[str, Any]:
    js = sorted(emu.ask("jobs"), key=lambda j: j["submitted"])[-jobs:]  # drop the warm-up
    if len(js) < jobs or any(j["start"] is None for j in js):
        return {}
    t0 = js[0]["submitted"]
    starts = sorted(j["start"] - t0 for j in js)
    return {"wave_starts_s": [round(starts[i], 3) for i in range(0, jobs, limit)],
            "server_makespan_s": round(max(j["end"] for j in js) - t0, 3),
            "submit_spread_s": round(js[-1]["submitted"] - t0, 3)}


def run(quick: bool = False, jobs: int | None = None, limit: int | None = None, gen: float | None = None,
        rounds: int | None = None, target: float = 1.1, variants: list[tuple[str, int]] | None = None,
        peer_semaphore: int = 0) -> list[Row]:
    """The batch row; ``python -m bench scale`` passes 5,000 jobs, one round and issue 15's 1.05x target, and
    ``peer_semaphore=16``: fal-client's subscribes bounded by an ``asyncio.Semaphore`` (16 at a time)."""
    d_jobs, d_limit, d_gen, d_rounds = (8, 4, 0.1, 1) if quick else (64, 16, 0.5, 3)
    jobs, limit, gen, rounds = jobs or d_jobs, limit or d_limit, gen or d_gen, rounds or d_rounds
    ideal = math.ceil(jobs / limit) * gen
    variants = variants or [("falnb", 0), ("fal-client", limit), ("litellm", limit), ("falnb", limit)]
    walls: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    sched: dict[str, list[dict[str, Any]]] = {}
    with emulator(latency=gen, concurrency=limit) as emu:
        sync = bool(emu.get("sync_url"))
        for r in range(rounds):
            for client, conc in variants:
                if not have(client) or (client == "litellm" and not sync):
                    continue
                key = f"{client} max_concurrency={conc}" if client == "falnb" and conc else client
                args = ["-m", "bench._clients", "batch", client, "--url", emu["url"], "--size", SIZE,
                        "--jobs", str(jobs), "--warmup", "1", "--concurrency", str(conc), "--tag", str(r)]
                if sync:
                    args += ["--sync-url", emu["sync_url"]]
                if client == "fal-client" and peer_semaphore:
                    args += ["--semaphore", str(peer_semaphore)]
                emu.reset()
                out = run_json(args, timeout=max(300.0, 20 * ideal))
                walls.setdefault(key, []).append(out["wall"])
                cpu.setdefault(key, []).append(out.get("cpu_s", 0.0))
                sched.setdefault(key, []).append(_schedule(emu, jobs, limit))
    med = {c: median(v) for c, v in walls.items()}
    r = ratio(med.get("falnb"), ideal)
    row = Row(f"3. batch {jobs} prompts, limit {limit}, gen {gen:g} s", "s", med.get("falnb"), med.get("fal-client"),
              med.get("litellm"), ratio=r, ratio_label=f"of ideal {ideal:g} s", target=f"<={target:g}x ideal",
              met=r is not None and r <= target,
              detail={"ideal_s": ideal, "rounds": rounds, "walls_s": {c: [round(x, 3) for x in v]
                                                                     for c, v in walls.items()},
                      "vs_ideal": {c: round(m / ideal, 3) for c, m in med.items()},
                      "client_cpu_s": {c: round(median(v), 3) for c, v in cpu.items()},
                      "emulator_schedule": sched})
    alt = f"falnb max_concurrency={limit}"
    if alt in med:
        row.notes.append(f"falnb with max_concurrency={limit} (no more on fal than the account runs): "
                         f"{med[alt]:.3g} s = {med[alt] / ideal:.3g}x ideal")
    first = sched.get("falnb", [{}])[0]
    waves = first.get("wave_starts_s") or []
    if 0 < len(waves) <= 8:
        row.notes.append(f"falnb's waves started at {waves} s (ideal every {gen:g} s)")
    elif waves:  # thousands of prompts: hundreds of waves, said in one line
        late = next((i for i, t in enumerate(waves) if t > i * gen + 0.1), None)
        on_time = ("each on time (within 0.1 s)" if late is None else
                   f"on time (within 0.1 s) up to wave {late} of {len(waves)}")
        row.notes.append(f"falnb's {len(waves)} waves: {on_time}; the last started at {waves[-1]:.4g} s (ideal "
                         f"{(len(waves) - 1) * gen:g} s); its last submit reached the emulator at "
                         f"{first.get('submit_spread_s', 0):.4g} s")
    if peer_semaphore and "fal-client" in med:
        row.notes.append(f"fal-client: its async subscribe inside an asyncio.Semaphore({peer_semaphore}) (at most "
                         f"{peer_semaphore} at once, as a user bounds a large batch), gathered: "
                         f"{med['fal-client']:.4g} s = {med['fal-client'] / ideal:.3g}x ideal")
    if not sync:
        row.notes.append("LiteLLM: the emulator has no synchronous endpoint")
    return [row]
