"""A child process for the crash and race tests: runs falnb's ``generate`` against an emulator URL.

Usage: ``python gen_child.py '<json config>'`` with keys

* ``url``: the emulator's HTTP URL; ``key``: the fal key; the cache is ``FALNB_CACHE_DIR``;
* ``prompts``: the prompts (one ``generate`` each, or one ``generate_many`` when ``many``);
* ``kill``: the phase in which to SIGKILL ourselves (``before-submit``, ``after-submit``,
  ``queued``, ``running``, ``downloading``), ``delay``: seconds after entering it (a timer thread,
  so the signal lands at an arbitrary point of whatever the process is doing then);
* ``refresh``: pass ``refresh=True``; ``start_at``: a ``time.time()`` to start at (races);
* ``many``: one ``generate_many`` of all prompts (``concurrency``) instead of one call each;
* ``as_nobody``: (started as root) generate ``warm`` once on a scratch cache, so every lazy import is done,
  then become the user ``nobody``, who may read the cache folder but not write it (a read-only folder, which
  root's file modes cannot give).

Prints ``PHASE <name>`` at each step of a request's life (flushed, so the parent knows the last
phase reached before a kill) and ``RESULT <json>`` at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
import time
from typing import Any

cfg: dict[str, Any] = json.loads(sys.argv[1])
_lock = threading.Lock()


def mark(phase: str) -> None:
    with _lock:
        sys.stdout.write(f"PHASE {phase}\n")
        sys.stdout.flush()


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(phase: str) -> None:
    if cfg.get("kill") != phase:
        return
    delay = float(cfg.get("delay") or 0.0)
    if delay <= 0:
        die()
    t = threading.Timer(delay, die)
    t.daemon = True
    t.start()


def install_hooks() -> None:
    from falnb import _engine
    from falnb.cache._journal import Slot
    from falnb.fal import _queue

    submit = _queue.QueueClient.submit
    wait = _queue.QueueClient.wait
    record = Slot.record
    download = _engine.Engine._download

    async def submit_hook(self: Any, *args: Any, **kwargs: Any) -> Any:
        mark("submitting")
        arm("before-submit")
        return await submit(self, *args, **kwargs)

    def record_hook(self: Any, sub: Any) -> None:
        record(self, sub)
        mark(f"submitted {sub.request_id}")
        arm("after-submit")

    async def wait_hook(self: Any, sub: Any, on_status: Any = None, timeout: Any = None, **kw: Any) -> Any:
        seen: set[str] = set()

        def report(st: Any) -> None:
            if st.status not in seen:
                seen.add(st.status)
                name = {"IN_QUEUE": "queued", "IN_PROGRESS": "running", "COMPLETED": "completed"}.get(
                    st.status, st.status)
                mark(name)
                arm(name)
            if on_status is not None:
                on_status(st)

        return await wait(self, sub, report, timeout, **kw)

    async def download_hook(self: Any, *args: Any, **kwargs: Any) -> Any:
        mark("downloading")
        arm("downloading")
        return await download(self, *args, **kwargs)

    _queue.QueueClient.submit = submit_hook  # type: ignore[method-assign]
    _queue.QueueClient.wait = wait_hook  # type: ignore[method-assign]
    Slot.record = record_hook  # type: ignore[method-assign]
    _engine.Engine._download = download_hook  # type: ignore[method-assign]


def main() -> None:
    install_hooks()
    from falnb import Client
    from falnb._exceptions import FalnbError

    kw: dict[str, Any] = dict(model=cfg.get("model", "fal-ai/flux/schnell"), size=cfg.get("size", "256x256"),
                              seed=cfg.get("seed", 1), refresh=bool(cfg.get("refresh")))
    if cfg.get("as_nobody"):
        import tempfile

        warm = Client(key=cfg["key"], queue_url=cfg["url"], cache=tempfile.mkdtemp())
        warm.generate(cfg["warm"], **kw)
        warm.close()
        os.setgid(65534)
        os.setuid(65534)
    client = Client(key=cfg["key"], queue_url=cfg["url"], cache=True, timeout=cfg.get("timeout", 60.0))
    if cfg.get("start_at"):
        time.sleep(max(0.0, float(cfg["start_at"]) - time.time()))
    mark("start")
    out: list[dict[str, Any]] = []
    if cfg.get("many"):
        results: list[Any] = client.generate_many(cfg["prompts"], concurrency=cfg.get("concurrency", 8), **kw)
    else:
        results = []
        for prompt in cfg["prompts"]:
            try:
                results.append(client.generate(prompt, **kw))
            except FalnbError as exc:
                results.append(exc)
    for prompt, r in zip(cfg["prompts"], results, strict=True):
        if isinstance(r, FalnbError):
            out.append({"prompt": prompt, "error": type(r).__name__, "message": str(r)})
        else:
            out.append({"prompt": prompt, "request_ids": r.request_ids, "cached": r.cached,
                        "images": [[hashlib.sha256(i.data).hexdigest(), i.width, i.height] for i in r.images]})
    mark("done")
    print("RESULT " + json.dumps(out), flush=True)
    client.close()


if __name__ == "__main__":
    main()
