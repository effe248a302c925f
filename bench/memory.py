"""6. Memory: peak RSS for a 64 x 4 image batch (1024x1024), in a fresh process per client.

``ru_maxrss`` is read after import, client set-up and one warm-up request ("ready"), then after
the batch ("peak").  falnb holds every image's bytes (its API returns them); the peers hold fal's
JSON only, so they are also run with ``--fetch`` (their image bytes downloaded and kept) to compare
like with like.  falnb's excess = peak - ready - image bytes held; it is also measured for a 1 x 4
batch, so the excess shown is what does not grow with the batch.
Target: excess at most a fixed ``FIXED_MB``, whatever the batch size.
"""

from __future__ import annotations

from typing import Any

from . import Row, have, median, run_json
from ._emu import Emu, emulator

SIZE = "1024x1024"
FIXED_MB = 32.0


def _one(emu: Emu, client: str, jobs: int, n: int, fetch: bool, size: str) -> dict[str, Any]:
    args = ["-m", "bench._clients", "memory", client, "--url", emu["url"], "--size", size, "--jobs", str(jobs),
            "--n", str(n), "--warmup", "1", "--tag", "m"]
    if emu.get("sync_url"):
        args += ["--sync-url", emu["sync_url"]]
    if fetch:
        args.append("--fetch")
    emu.reset()
    out: dict[str, Any] = run_json(args, timeout=600)
    out["growth_mb"] = out["rss_peak_mb"] - out["rss_ready_mb"]
    out["excess_mb"] = out["growth_mb"] - out["image_bytes"] / 2**20
    return out


def _mb(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f} MB"


def run(quick: bool = False) -> list[Row]:
    jobs, n, size, rounds = (4, 2, "256x256", 1) if quick else (64, 4, SIZE, 3)
    res: dict[str, list[dict[str, Any]]] = {"falnb": [], "falnb-small": [], "fal-client": [], "litellm": [],
                                            "fal-client+fetch": [], "litellm+fetch": []}
    with emulator(latency=0.0, concurrency=16) as emu:
        sync = bool(emu.get("sync_url"))
        for _ in range(rounds):
            res["falnb"].append(_one(emu, "falnb", jobs, n, False, size))
            res["falnb-small"].append(_one(emu, "falnb", 1, n, False, size))
            if have("fal-client"):
                res["fal-client"].append(_one(emu, "fal-client", jobs, n, False, size))
                res["fal-client+fetch"].append(_one(emu, "fal-client", jobs, n, True, size))
            if sync and have("litellm"):
                res["litellm"].append(_one(emu, "litellm", jobs, n, False, size))
                res["litellm+fetch"].append(_one(emu, "litellm", jobs, n, True, size))

    def med(key: str, field: str) -> float | None:
        vals = [r[field] for r in res[key]]
        return median(vals) if vals else None

    excess = med("falnb", "excess_mb")
    img_mb = (med("falnb", "image_bytes") or 0) / 2**20
    rows = [
        Row(f"6. peak RSS, {jobs} x {n} images {size}", "MB", med("falnb", "rss_peak_mb"),
            med("fal-client+fetch", "rss_peak_mb"), med("litellm+fetch", "rss_peak_mb"),
            target=f"ready + image bytes + <= {FIXED_MB:g} MB", met=excess is not None and excess <= FIXED_MB,
            notes=[f"falnb: ready {med('falnb', 'rss_ready_mb'):.1f} MB, holds {img_mb:.1f} MB of images, "
                   f"excess {excess:.1f} MB (1 x {n}: {med('falnb-small', 'excess_mb'):.1f} MB)"],
            detail={k: v for k, v in res.items()}),
        Row("6b. RSS growth over ready (batch)", "MB", med("falnb", "growth_mb"),
            med("fal-client+fetch", "growth_mb"), med("litellm+fetch", "growth_mb"),
            target="(peers fetch the bytes too)", notes=[
                f"peers keeping fal's JSON only: fal-client {_mb(med('fal-client', 'growth_mb'))}, "
                f"LiteLLM {_mb(med('litellm', 'growth_mb'))}"]),
    ]
    if not sync:
        rows[0].notes.append("LiteLLM: the emulator has no synchronous endpoint")
    return rows
