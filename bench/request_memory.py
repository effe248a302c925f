"""9. Memory per request in a batch, beyond the pictures: falnb ``generate_many`` beside fal-client.

Issue 15 item 5.  Each client, in a fresh process per round, on one emulator over real HTTP (512x512
pictures, one seed): a warm-up batch of ``WARM`` prompts (imports, pools, falnb's plan memo full), then two
batches of ``N`` new prompts, each at once, as each client's docs show (falnb
``Client(cache=False).generate_many``; fal-client ``AsyncClient.subscribe`` + ``asyncio.gather``).
``tracemalloc`` counts, per request:

* **kept**: what a second batch of ``N`` adds once it returned (gc'd; the first batch's results kept too, so
  what is filled once, pools, memos, caches, is not counted), minus the picture bytes falnb holds (its API
  returns them; fal-client returns fal's JSON only, its pictures stay on fal);
* **peak**: the most traced during that batch over what was traced before it, minus the same bytes.

Target: falnb's kept at most fal-client's.  ``python -m bench --only request_memory`` (or ``python -m
bench.request_memory [--prompts 500]``).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
import tracemalloc
from typing import Any

from . import Row, have, median, run_json
from ._emu import emulator

MODEL = "fal-ai/flux/schnell"
PROMPTS = 500
WARM = 150
#: a preset size, as most calls ask for (falnb maps 512x512 to it); a custom WxH costs falnb one more dict per
#: request (its copy of the input it sent, 184 B) that fal-client does not keep
SIZE, PRESET = "512x512", "square"
#: fal-client's polling interval: 1 s, not its 0.1 s default, so that hundreds of pollers do not swamp the
#: emulator (what a client keeps per request does not depend on how often it polls)
POLL = 1.0


def _falnb(url: str) -> tuple[Any, Any]:
    import falnb

    client = falnb.Client(queue_url=url, cache=False, key="bench-key")

    def many(prompts: list[str]) -> list[Any]:
        out = client.generate_many(prompts, model=MODEL, size=SIZE, seed=1)
        # its connection pool closed after each batch, as fal-client's AsyncClient (one per batch, as its docs
        # show) is gone after it: a pool holds as many connections as the batch's peak needed, not per request
        client.close()
        bad = [r for r in out if isinstance(r, Exception)]
        if bad:
            raise RuntimeError(f"falnb: {len(bad)} failed: {bad[0]!r}")
        return out

    return many, lambda res: sum(len(i.data) for g in res for i in g.images)


def _fal_client(url: str) -> tuple[Any, Any]:
    import fal_client
    import fal_client.client as fc

    fc.QUEUE_URL_FORMAT = fc.RUN_URL_FORMAT = url.rstrip("/") + "/"

    def many(prompts: list[str]) -> list[Any]:
        async def gather() -> list[Any]:
            client = fal_client.AsyncClient(key="bench-key")
            return list(await asyncio.gather(*(
                client.subscribe(MODEL, arguments={"prompt": p, "image_size": PRESET, "seed": 1}, interval=POLL)
                for p in prompts)))

        return asyncio.run(gather())

    return many, lambda res: 0


def child(client: str, url: str, n: int, warm: int) -> dict[str, Any]:
    many, held = (_falnb if client == "falnb" else _fal_client)(url)
    many([f"warm-up {i}: a lighthouse" for i in range(warm)])
    gc.collect()
    tracemalloc.start()
    kept_before, first = 0, None
    # two batches, both kept: the second's growth is per request, whatever the first filled once
    for half in range(2):
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        t = time.perf_counter()
        results = many([f"prompt {half}-{i}: a lighthouse" for i in range(n)])
        wall = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        gc.collect()
        kept, images = tracemalloc.get_traced_memory()[0], held(results)
        if half == 0:
            first, kept_before = results, kept
    if os.environ.get("BENCH_TOP"):
        for stat in tracemalloc.take_snapshot().statistics("lineno")[:int(os.environ["BENCH_TOP"])]:
            print(stat, file=sys.stderr)
    tracemalloc.stop()
    del first
    return {"client": client, "n": n, "wall_s": wall, "image_bytes": images,
            "kept_b": (kept - kept_before - images) / n, "peak_b": (peak - base - images) / n}


def run(quick: bool = False, prompts: int | None = None, rounds: int | None = None) -> list[Row]:
    n, warm, rounds = (12, 4, 1) if quick else (prompts or PROMPTS, WARM, rounds or 2)
    res: dict[str, list[dict[str, Any]]] = {}
    with emulator(latency=0.0, concurrency=16) as emu:
        for _ in range(rounds):
            for client in ("falnb", "fal-client"):
                if not have(client):
                    continue
                emu.reset()
                out = run_json(["-m", "bench.request_memory", "child", client, emu["url"], str(n), str(warm)],
                               timeout=3600)
                res.setdefault(client, []).append(out)

    def med(client: str, key: str) -> float | None:
        vals = [r[key] for r in res.get(client, [])]
        return median(vals) if vals else None

    kept, kept_fc = med("falnb", "kept_b"), med("fal-client", "kept_b")
    ok = None if kept is None or kept_fc is None else kept <= kept_fc
    return [
        Row(f"9. memory kept per request, batch of {n:,}, beyond the pictures", "B", kept, kept_fc,
            ratio=None if kept is None or not kept_fc else kept / kept_fc, ratio_label="of fal-client's",
            target="<= fal-client's", met=ok, detail=res,
            notes=[f"peak during the batch, per request: falnb {med('falnb', 'peak_b') or 0:,.0f} B, "
                   f"fal-client {med('fal-client', 'peak_b') or 0:,.0f} B (tracemalloc, after a warm-up of "
                   f"{warm} and a first batch of {n})"]),
    ]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        print(json.dumps(child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))
    else:
        n = int(sys.argv[sys.argv.index("--prompts") + 1]) if "--prompts" in sys.argv else PROMPTS
        for row in run(prompts=n, rounds=1):
            print(row.cells(), row.notes)
