"""A child "kernel" that generates through a LiteLLM proxy and dies (SIGKILL) once its request is journaled.

Usage: ``python proxy_child.py <proxy url> <proxy key> <prompt> <model>`` with ``FALNB_CACHE_DIR`` set.
It dies when falnb starts waiting for the request (the journal holds its id by then), the way a kernel
crash or a restart would end it: no cancel goes out, nothing is cleaned up.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from falnb import Client
from falnb.fal import _queue

url, key, prompt, model = sys.argv[1:5]


async def die_waiting(self: Any, sub: Any, *args: Any, **kwargs: Any) -> Any:
    print(f"SUBMITTED {sub.request_id}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


_queue.QueueClient.wait = die_waiting  # type: ignore[method-assign]
Client(proxy_url=url, proxy_key=key, proxy_route="passthrough").generate(prompt, model=model)
print("NOT KILLED", flush=True)
