"""A cache folder of many entries, fast: rows written straight into the index in large transactions
and one small picture file per entry (no fal, no emulator, no fsync), in the shape ``put`` gives them,
with one ``paid`` ledger row per entry.  The prompts are ``f"{PREFIX} {i}"`` on flux-schnell with seed
``i``, so ``client.generate(f"{PREFIX} {i}", model=MODEL, seed=i)`` is a hit.

Used by ``bench/cache_scale.py`` (up to 100,000 entries) and the cache tests (a few thousand).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

__all__ = ["MODEL", "PREFIX", "fill", "prompt"]

MODEL = "flux-schnell"
PREFIX = "a picture for the bench"
#: rows per transaction while filling
_CHUNK = 5_000


def prompt(i: int) -> str:
    return f"{PREFIX} {i}"


def fill(directory: Path, count: int, *, start: int = 0, namespace: str = "fal", size: int = 512) -> None:
    """Add entries ``start`` .. ``start + count - 1`` to the cache folder ``directory``."""
    from falnb import Client
    from falnb.cache._schema import next_stamp
    from falnb.cache._store import ResponseCache

    planner = Client(key="unused", queue_url="http://127.0.0.1:9", cache=False)
    cache = ResponseCache(directory, namespace)
    objects = directory / "objects"
    now = time.time()
    rows: list[tuple[object, ...]] = []
    for i in range(start, start + count):
        req = planner.plan(prompt(i), model=MODEL, seed=i).requests[0]
        data = f"picture {i} ".encode().ljust(size, b".")
        sha = hashlib.sha256(data).hexdigest()
        shard = objects / sha[:2]
        if not shard.is_dir():
            shard.mkdir(parents=True, exist_ok=True)
        with open(shard / sha, "wb") as f:
            f.write(data)
        images = [{"sha": sha, "size": len(data), "type": "image/png", "w": 64, "h": 64, "url": None, "seed": i}]
        when = now - (start + count - i)  # oldest first, one second apart
        rows.append((namespace, req.key, req.model, json.dumps(dict(req.canonical), sort_keys=True),
                     f"bench-{i}", json.dumps({"images": [{"url": "https://v3.fal.media/files/x"}], "seed": i}),
                     json.dumps(images), req.cost, len(data), when, when))
        if len(rows) >= _CHUNK or i == start + count - 1:
            with cache._index.write() as c:
                stamp = next_stamp(c)
                c.executemany("INSERT OR REPLACE INTO entries(ns, key, model, canonical, request_id, response, "
                              "images, cost, bytes, created, used, stamp) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                              [(*r, stamp) for r in rows])
                c.executemany("INSERT INTO ledger(ts, ns, kind, model, request_id, cost, pid) "
                              "VALUES(?, ?, 'paid', ?, ?, ?, ?)",
                              [(r[9], namespace, r[2], r[4], r[7], os.getpid()) for r in rows])
            rows = []
    planner.close()
    cache._index.checkpoint()
