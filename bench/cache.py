"""4. Cache hit of a 4-image cell, against reading the same files directly and an uncached generation.

The hit and the direct read are the cache engineer's ``bench/cache_hit.py`` (run as it is, in a fresh
process, its printed medians read back): ``Client.generate(..., n=4)`` served from the cache against
reading the four files and building the same ``Image`` objects.  Target: hit <= 2x direct.

Beside it, what the same 4-image cell costs without a cache, on a zero-latency emulator over real
HTTP: falnb with ``cache=False``, and fal-client and LiteLLM (which have no image cache, so every
re-run is a new generation) with the bytes fetched.  Those columns are the uncached figures.
"""

from __future__ import annotations

import re
from typing import Any

from . import HERE, Row, have, median, ratio, run_json
from ._emu import emulator

SIZE = "1024x1024"


def _cache_hit(runs: int, size: str) -> dict[str, float]:
    """Run bench/cache_hit.py; its lines end in ``: <number> us`` (direct read, cache get, hit)."""
    import subprocess

    from . import PY, ROOT, bench_env

    proc = subprocess.run([PY, str(HERE / "cache_hit.py"), "--runs", str(runs), "--size", size], env=bench_env(),
                          cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"bench/cache_hit.py failed:\n{proc.stderr[-2000:]}")
    found: dict[str, float] = {}
    for line in proc.stdout.splitlines():
        m = re.search(r":\s*([\d.]+)\s*us", line)
        if not m:
            continue
        us = float(m.group(1))
        low = line.lower()
        if "read the" in low or "direct" in low:
            found["direct_s"] = us / 1e6
        elif "cache hit" in low or "generate" in low:
            found["hit_s"] = us / 1e6
        elif "get" in low:
            found["get_s"] = us / 1e6
    if "direct_s" not in found or "hit_s" not in found:
        raise RuntimeError(f"could not read bench/cache_hit.py's output:\n{proc.stdout[-2000:]}")
    found["summary"] = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""  # type: ignore[assignment]
    return found


def _uncached(quick: bool, size: str) -> dict[str, float | None]:
    iters, warmup = (1, 1) if quick else (10, 2)
    out: dict[str, float | None] = {}
    with emulator(latency=0.0, concurrency=16) as emu:
        for client in ("falnb", "fal-client", "litellm"):
            if not have(client) or (client == "litellm" and not emu.get("sync_url")):
                out[client] = None
                continue
            args = ["-m", "bench._clients", "latency", client, "--url", emu["url"], "--size", size, "--n", "4",
                    "--iters", str(iters), "--warmup", str(warmup), "--fetch", "--tag", "c"]
            if emu.get("sync_url"):
                args += ["--sync-url", emu["sync_url"]]
            emu.reset()
            out[client] = median(run_json(args)["walls"])
    return out


def run(quick: bool = False) -> list[Row]:
    size = "256x256" if quick else SIZE
    hit = _cache_hit(3 if quick else 30, size)
    unc = _uncached(quick, size)
    r = ratio(hit["hit_s"], hit["direct_s"])
    ms = {k: (None if v is None else v * 1000) for k, v in unc.items()}
    detail: dict[str, Any] = {**hit, "uncached_s": unc}
    row = Row(f"4. cache hit, 4 x {size} (peers: uncached)", "ms", hit["hit_s"] * 1000, ms["fal-client"],
              ms["litellm"], ratio=r, ratio_label=f"of direct read ({hit['direct_s'] * 1000:.2f} ms)",
              target="<=2x reading the files", met=r is not None and r <= 2.0, detail=detail,
              notes=[f"falnb uncached (cache=False, 0-latency emulator): {ms['falnb']:.1f} ms; "
                     f"hit is {ratio(hit['hit_s'] * 1000, ms['falnb']) or 0:.3f}x of that"])
    return [row]
