"""The three clients, each driven the way its own docs show, in a fresh process per run.

``python -m bench._clients MODE CLIENT --url QUEUE [--sync-url BASE] ...`` prints one JSON line.

* ``latency``: warm-up calls, then ``--iters`` single requests (``--n`` images each) one after another;
  wall time of each.
* ``batch``: one warm-up request, then ``--jobs`` prompts at once; wall time of the whole batch.
* ``memory``: ``--jobs`` prompts x ``--n`` images; peak RSS before and after, and the image bytes held.

falnb: ``Client(cache=False).generate`` / ``generate_many`` (image bytes downloaded: that is its API).
fal-client: ``SyncClient.subscribe`` / ``AsyncClient.subscribe`` + ``asyncio.gather``, pointed at the
emulator through ``fal_client.client.QUEUE_URL_FORMAT``/``RUN_URL_FORMAT``.
LiteLLM: ``image_generation`` / ``aimage_generation`` + gather with ``api_base`` (its fal provider calls
fal's synchronous endpoint ``POST {api_base}/{model id}``).
``--fetch`` makes the peers also GET the image bytes (one shared httpx client), as falnb always does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any

MODEL = "fal-ai/flux/schnell"
#: every request sends this seed, and (``--same-prompt``) one prompt: the emulator then draws each
#: picture once and serves it from its picture cache, so its drawing time is charged to no client
SEED = 1
PROMPT = "a lighthouse at dusk"
#: the same fal input from all three clients: falnb and LiteLLM map these sizes to these presets
PRESET = {"512x512": "square", "1024x1024": "square_hd", "256x256": {"width": 256, "height": 256}}


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


class Driver:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.size: str = a.size

    # one request, synchronous; returns the image bytes (or URLs) it holds
    def one(self, prompt: str) -> Any:
        raise NotImplementedError

    # many requests at once; returns whatever the client returns
    def many(self, prompts: list[str], n: int) -> Any:
        raise NotImplementedError

    def held_bytes(self, results: Any) -> int:
        return 0


class Falnb(Driver):
    def __init__(self, a: argparse.Namespace) -> None:
        super().__init__(a)
        import falnb

        # --concurrency 0: falnb's own default (every prompt of a batch goes to fal's queue at once)
        extra = {"max_concurrency": a.concurrency} if a.concurrency > 0 else {}
        self.client = falnb.Client(queue_url=a.url, cache=False, **extra)

    def one(self, prompt: str) -> Any:
        return self.client.generate(prompt, model=MODEL, size=self.size, n=self.a.n, seed=SEED)

    def many(self, prompts: list[str], n: int) -> Any:
        out = self.client.generate_many(prompts, model=MODEL, size=self.size, n=n, seed=SEED)
        bad = [r for r in out if isinstance(r, Exception)]
        if bad:
            raise RuntimeError(f"falnb: {len(bad)} of {len(out)} failed: {bad[0]!r}")
        return out

    def held_bytes(self, results: Any) -> int:
        return sum(len(img.data) for gen in results for img in gen.images)


class _Fetching(Driver):
    """Optionally GET the image bytes of a peer's answer, as falnb does."""

    def __init__(self, a: argparse.Namespace) -> None:
        super().__init__(a)
        self._http: Any = None

    def _urls(self, result: Any) -> list[str]:
        raise NotImplementedError

    def fetch(self, result: Any) -> Any:
        if not self.a.fetch:
            return result
        import httpx

        if self._http is None:
            self._http = httpx.Client(timeout=60)
        return [self._http.get(u).content for u in self._urls(result)]

    async def afetch(self, results: list[Any]) -> list[Any]:
        if not self.a.fetch:
            return results
        import httpx

        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as http:
            async def get(r: Any) -> list[bytes]:
                return [(await http.get(u)).content for u in self._urls(r)]

            return list(await asyncio.gather(*(get(r) for r in results)))

    def held_bytes(self, results: Any) -> int:
        if self.a.fetch:
            return sum(len(b) for r in results for b in r)
        return 0


class FalClient(_Fetching):
    def __init__(self, a: argparse.Namespace) -> None:
        super().__init__(a)
        import fal_client
        import fal_client.client as fc

        base = a.url.rstrip("/") + "/"
        fc.QUEUE_URL_FORMAT = base
        fc.RUN_URL_FORMAT = base
        self.fal = fal_client
        self.sync = fal_client.SyncClient(key="bench-key")

    def _args(self, prompt: str, n: int = 1) -> dict[str, Any]:
        args: dict[str, Any] = {"prompt": prompt, "image_size": PRESET[self.size], "seed": SEED}
        if n != 1:
            args["num_images"] = n
        return args

    def _urls(self, result: Any) -> list[str]:
        return [img["url"] for img in result["images"]]

    def one(self, prompt: str) -> Any:
        return self.fetch(self.sync.subscribe(MODEL, arguments=self._args(prompt, self.a.n)))

    def many(self, prompts: list[str], n: int) -> Any:
        async def run() -> list[Any]:
            client = self.fal.AsyncClient(key="bench-key")
            # --semaphore K: at most K subscribes at once, as a fal-client user bounds a large batch (each
            # subscribe polls every 0.1 s: 5,000 at once keep a core busy in fal-client alone)
            gate = asyncio.Semaphore(self.a.semaphore) if self.a.semaphore > 0 else None

            async def one(p: str) -> Any:
                if gate is None:
                    return await client.subscribe(MODEL, arguments=self._args(p, n))
                async with gate:
                    return await client.subscribe(MODEL, arguments=self._args(p, n))

            results = await asyncio.gather(*(one(p) for p in prompts))
            return await self.afetch(list(results))

        return asyncio.run(run())


class LiteLLM(_Fetching):
    def __init__(self, a: argparse.Namespace) -> None:
        super().__init__(a)
        if not a.sync_url:
            raise SystemExit("LiteLLM needs fal's synchronous endpoint; the emulator has none (--sync-url)")
        import litellm

        self.litellm = litellm
        self.kw = {"model": f"fal_ai/{MODEL}", "api_base": a.sync_url, "api_key": "bench-key", "size": self.size,
                   "seed": SEED}

    def _urls(self, result: Any) -> list[str]:
        return [d.url for d in result.data]

    def one(self, prompt: str) -> Any:
        return self.fetch(self.litellm.image_generation(prompt=prompt, n=self.a.n, **self.kw))

    def many(self, prompts: list[str], n: int) -> Any:
        async def run() -> list[Any]:
            results = await asyncio.gather(*(self.litellm.aimage_generation(prompt=p, n=n, **self.kw)
                                             for p in prompts))
            for r in results:
                if len(r.data) != n:
                    raise RuntimeError(f"LiteLLM returned {len(r.data)} images for n={n}")
            return await self.afetch(list(results))

        return asyncio.run(run())


class Floor(Driver):
    """The least any queue client can do: submit, read the status stream to COMPLETED, GET the
    result, GET the image, on one kept-alive httpx client.  Its overhead is the emulator's own
    (HTTP round trips, drawing the picture), the floor the others are compared with."""

    def __init__(self, a: argparse.Namespace) -> None:
        super().__init__(a)
        import httpx

        self.http = httpx.Client(timeout=60, headers={"Authorization": "Key bench-key"})
        self.base = a.url.rstrip("/")

    def one(self, prompt: str) -> Any:
        body: dict[str, Any] = {"prompt": prompt, "image_size": PRESET[self.size], "seed": SEED}
        if self.a.n != 1:
            body["num_images"] = self.a.n
        sub = self.http.post(f"{self.base}/{MODEL}", json=body).json()
        with self.http.stream("GET", sub["status_url"] + "/stream") as resp:
            for line in resp.iter_lines():
                if line.startswith("data:") and json.loads(line[5:])["status"] == "COMPLETED":
                    break
        result = self.http.get(sub["response_url"]).json()
        return [self.http.get(img["url"]).content for img in result["images"]]


DRIVERS = {"falnb": Falnb, "fal-client": FalClient, "litellm": LiteLLM, "floor": Floor}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["latency", "batch", "memory"])
    ap.add_argument("client", choices=sorted(DRIVERS))
    ap.add_argument("--url", required=True)
    ap.add_argument("--sync-url", default=None)
    ap.add_argument("--size", default="512x512")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=64)
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--semaphore", type=int, default=0,
                    help="fal-client batch: an asyncio.Semaphore of this size around each subscribe (0: none)")
    ap.add_argument("--fetch", action="store_true")
    ap.add_argument("--tag", default="r")
    ap.add_argument("--distinct", action="store_true", help="a new prompt per request (the emulator draws each)")
    a = ap.parse_args(argv)

    rss_start = _maxrss_mb()
    driver = DRIVERS[a.client](a)
    out: dict[str, Any] = {"client": a.client, "mode": a.mode}

    def prompt(kind: str, i: int) -> str:
        return f"{kind} {a.tag} {i}: {PROMPT}" if a.distinct else PROMPT

    for i in range(a.warmup):
        driver.one(prompt("warm-up", i))
    if a.mode == "latency":
        walls = []
        cpu = _cpu_s()
        for i in range(a.iters):
            t = time.perf_counter()
            driver.one(prompt("latency", i))
            walls.append(time.perf_counter() - t)
        out["walls"] = walls
        out["cpu_per_request_s"] = (_cpu_s() - cpu) / max(1, a.iters)
    elif a.mode == "batch":
        prompts = [prompt("batch", i) for i in range(a.jobs)]
        t, cpu = time.perf_counter(), _cpu_s()
        driver.many(prompts, a.n)
        out["wall"] = time.perf_counter() - t
        out["cpu_s"] = _cpu_s() - cpu  # this process's CPU time (all threads) during the batch
    else:
        out["rss_start_mb"] = rss_start
        out["rss_ready_mb"] = _maxrss_mb()  # after import, client set-up and warm-up
        prompts = [prompt("memory", i) for i in range(a.jobs)]
        results = driver.many(prompts, a.n)
        out["rss_peak_mb"] = _maxrss_mb()
        out["image_bytes"] = driver.held_bytes(results)
        out["images"] = a.jobs * a.n
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
