"""2. Latency overhead of one request: wall time minus the emulator's generation time.

One emulator process (generation time ``GEN`` s, concurrency 16) serves all clients over real HTTP.
Each round starts every client in a fresh process (warm-up requests first, then single requests
one after another); rounds alternate the clients so noise hits all of them.  Overhead = wall - GEN.

Two rows: the clients as called (fal-client and LiteLLM stop at fal's JSON with an image URL; falnb
also downloads the image bytes, which its API returns), and the peers made to fetch the image
bytes too (one reused httpx client), which is the same work falnb does.
"""

from __future__ import annotations

from . import Row, have, median, ratio, run_json
from ._emu import Emu, emulator

GEN = 0.25
#: CPU seconds per request in each client's process, per run
CPU: dict[str, list[float]] = {}
SIZE = "512x512"


def _samples(emu: Emu, client: str, *, iters: int, warmup: int, fetch: bool, tag: str, size: str) -> list[float]:
    if not have(client) or (client == "litellm" and not emu.get("sync_url")):
        return []
    args = ["-m", "bench._clients", "latency", client, "--url", emu["url"], "--size", size,
            "--iters", str(iters), "--warmup", str(warmup), "--tag", tag]
    if emu.get("sync_url"):
        args += ["--sync-url", emu["sync_url"]]
    if fetch:
        args.append("--fetch")
    emu.reset()
    out = run_json(args)
    CPU.setdefault(f"{client}{' +fetch' if fetch else ''}", []).append(out.get("cpu_per_request_s", 0.0))
    return [w - emu["latency"] for w in out["walls"]]


def run(quick: bool = False) -> list[Row]:
    rounds, iters, warmup = (1, 2, 1) if quick else (3, 8, 2)
    # quick (CI: everything runs, figures meaningless): no time spent waiting on generations of full size
    gen, size = (0.02, "256x256") if quick else (GEN, SIZE)
    CPU.clear()
    variants = [("falnb", False), ("fal-client", False), ("litellm", False), ("fal-client", True),
                ("litellm", True), ("floor", False)]
    samples: dict[tuple[str, bool], list[float]] = {v: [] for v in variants}
    with emulator(latency=gen, concurrency=16) as emu:
        for r in range(rounds):
            for client, fetch in variants:
                samples[(client, fetch)] += _samples(emu, client, iters=iters, warmup=warmup, fetch=fetch,
                                                     tag=f"{r}{int(fetch)}", size=size)
        sync = bool(emu.get("sync_url"))

    def med_ms(key: tuple[str, bool]) -> float | None:
        return median(samples[key]) * 1000 if samples[key] else None

    fal = med_ms(("falnb", False))
    rows = []
    for label, fetch in (("as called", False), ("peers also fetch the bytes", True)):
        fc, ll = med_ms(("fal-client", fetch)), med_ms(("litellm", fetch))
        r = ratio(fal, fc)
        met = fal is not None and r is not None and r <= 0.5 and fal < 20
        row = Row(f"2. one-request overhead ({label})", "ms", fal, fc, ll, ratio=r, ratio_label="of fal-client",
                  target="<=0.5x fal-client, <20 ms", met=met,
                  detail={"generation_s": gen, "size": size, "rounds": rounds, "iters": iters,
                          "samples_ms": {f"{c}{' +fetch' if f else ''}": [round(x * 1000, 2) for x in v]
                                         for (c, f), v in samples.items()},
                          "litellm_to_falnb": ratio(fal, ll), "floor_ms": med_ms(("floor", False)),
                          "client_cpu_ms_per_request": {k: round(median(v) * 1000, 2) for k, v in CPU.items()}})
        floor = med_ms(("floor", False))
        if floor is not None and fetch:
            row.notes.append(f"floor (raw httpx: submit, status stream, result, image GET): {floor:.1f} ms; "
                             f"falnb adds {fal - floor:.1f} ms over it" if fal is not None else "")
        if not sync:
            row.notes.append("LiteLLM: the emulator has no synchronous endpoint (POST {base}/{model id})")
        rows.append(row)
    return rows
