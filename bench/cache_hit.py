"""How fast is a cache hit?  A 4-image ``generate`` served from the cache, against reading the same
four files and building the same ``Image`` objects directly.

    /tmp/venv/bin/python bench/cache_hit.py [--runs 30] [--size 1024x1024] [--model flux-schnell]

Runs on the offline emulator in a fresh temporary cache directory.  Prints medians and the ratio
(target: a hit within 2x of reading the files directly).  ``--profile`` prints where a hit spends
its time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--model", default="flux-schnell")
    ap.add_argument("--size", default="1024x1024")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="falnb-bench-")
    os.environ["FALNB_CACHE_DIR"] = tmp
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from falnb import Client
    from falnb.emulator import Emulator
    from falnb.results._image import Image

    client = Client(offline=True, emulator=Emulator(latency=0.01, concurrency=4))
    kw = {"model": args.model, "n": 4, "size": args.size, "seed": 1}
    first = client.generate("a lighthouse at dusk, bench", **kw)
    assert not first.cached
    cache = client.cache
    assert cache is not None

    # the same four files, their metadata as the index holds it
    key = client.plan("a lighthouse at dusk, bench", **kw).requests[0].key
    row = cache._index.conn().execute("SELECT images FROM entries WHERE ns=? AND key=?",
                                      (cache.namespace, key)).fetchone()
    metas = json.loads(row[0])
    paths = [os.path.join(tmp, "objects", m["sha"][:2], m["sha"]) for m in metas]

    def direct() -> list[Image]:
        out = []
        for p, m in zip(paths, metas, strict=True):
            with open(p, "rb") as f:
                data = f.read()
            out.append(Image(data=data, content_type=m["type"], width=m["w"], height=m["h"], url=m["url"],
                             seed=m["seed"]))
        return out

    def hit() -> object:
        gen = client.generate("a lighthouse at dusk, bench", **kw)
        assert gen.cached and len(gen.images) == 4
        return gen

    def lookup() -> object:  # the cache alone: index row, files, Image objects (no plan, no event loop)
        entry = cache.get(key)
        assert entry is not None
        return entry

    from falnb.cache import _store as _cache
    from falnb.results._generation import Generation

    def sync_hit() -> Generation:
        # the same hit built in the caller's thread, without the hand-off to falnb's event loop: what a
        # synchronous hit path in Client.generate would cost (plan, one lookup per request, the Generation)
        plan = client.plan("a lighthouse at dusk, bench", **kw)
        entries = [cache.get(r.key) for r in plan.requests]
        assert all(e is not None for e in entries)
        for r in plan.requests:
            cache.ledger.record_saved(r.cost, model=r.model)
        gen = Generation(prompt=plan.prompt, model=plan.spec.id, images=[i for e in entries if e for i in e.images],
                         inputs=[dict(r.input) for r in plan.requests],
                         request_ids=[e.request_id for e in entries if e and e.request_id], seed=plan.seed,
                         cost=plan.cost, cached=True, saved=plan.cost or 0.0,
                         responses=[dict(e.response) for e in entries if e])
        client.history.append(gen)
        return gen

    def cold() -> object:  # a new process's first hit: each file's SHA-256 is checked once
        _cache._VERIFIED.clear()
        return lookup()

    def measure(fn: Callable[[], object], runs: int, keep: bool) -> float:
        """Median seconds of ``fn``; ``keep``: hold every result until the end (as a notebook's output
        history does), else drop it at once.  Both sides of a ratio are measured the same way."""
        kept, times = [], []
        for _ in range(3):
            fn()
        client.history.clear()
        for _ in range(runs):
            t = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t)
            if keep:
                kept.append(result)
            else:
                client.history.clear()  # generate() keeps every Generation in client.history
            del result
        client.history.clear()
        return statistics.median(times)

    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        for _ in range(200):
            hit()
            client.history.clear()
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)

    total = sum(m["size"] for m in metas)
    print(f"4 images, {args.size} {metas[0]['type']}, {total / 1e6:.2f} MB in all; medians of {args.runs} runs")
    # results dropped after each call (the headline figures; bench/cache.py reads these labels)
    t_direct = measure(direct, args.runs, False)
    t_get = measure(lookup, args.runs, False)
    t_hit = measure(hit, args.runs, False)
    t_sync = measure(sync_hit, args.runs, False)
    t_cold = measure(cold, args.runs, False)
    print(f"  read the 4 files + build Image objects  : {t_direct * 1e6:8.0f} us   (baseline)")
    print(f"  ResponseCache.get (index row + files)   : {t_get * 1e6:8.0f} us   ratio {t_get / t_direct:.2f}x")
    print(f"  Client.generate(..., n=4) cache hit     : {t_hit * 1e6:8.0f} us   ratio {t_hit / t_direct:.2f}x")
    print(f"  same hit in the caller's thread         : {t_sync * 1e6:8.0f} us   ratio {t_sync / t_direct:.2f}x"
          "   (the same steps written out by hand, without the Client)")
    print(f"  first hit of a process (SHA-256 check)  : {t_cold * 1e6:8.0f} us   ratio {t_cold / t_direct:.2f}x"
          "   (each file is hashed once per process)")
    # every result held until the end, as a notebook's Out[] history holds them: fresh memory each call
    k_direct = measure(direct, args.runs, True)
    k_hit = measure(hit, args.runs, True)
    k_sync = measure(sync_hit, args.runs, True)
    print(" with every result kept (as Out[] keeps them):")
    print(f"  files + Image objects, kept             : {k_direct * 1e6:8.0f} us   (baseline)")
    print(f"  Client hit, kept                        : {k_hit * 1e6:8.0f} us   ratio {k_hit / k_direct:.2f}x")
    print(f"  caller's-thread hit, kept               : {k_sync * 1e6:8.0f} us   ratio {k_sync / k_direct:.2f}x")
    client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
