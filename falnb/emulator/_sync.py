"""fal's second host, ``https://fal.run``, as a root of its own: the emulator's synchronous endpoint.

fal has two hosts: ``queue.fal.run`` (submit, then status/result: what falnb and ``fal_client.submit``
use) and ``fal.run`` (one POST that answers with the model's output: ``fal_client.run``, LiteLLM's
images route).  The emulator's main port is the queue host.  A client aimed at that root for a
synchronous call gets a queue answer (``{"status": "IN_QUEUE", ...}``) exactly as it would from
``queue.fal.run``: LiteLLM then says ``200 {"data": []}`` and ``fal_client.run()`` returns the submit
answer, while the job runs and is billed.  Two ways to reach the synchronous host instead:

* the ``/_sync`` base on the main port: ``http://127.0.0.1:8765/_sync`` (LiteLLM ``api_base``);
* a port of its own, ``falnb emulator --sync-port 8766``: ``http://127.0.0.1:8766`` is ``fal.run``'s root
  (``fal_client.client.RUN_URL_FORMAT = "http://127.0.0.1:8766/"``), with every other path (files,
  ``/_emulator/...``) served as on the main port.

Both bill like fal.run: a request is billed when it completes, even if the caller has gone.
"""

from __future__ import annotations

__all__ = ["SYNC_PREFIX", "sync_path"]

#: path prefix of the synchronous host on the main port (fal's ``https://fal.run``), LiteLLM's ``api_base``
SYNC_PREFIX = "/_sync"


def sync_path(method: str, path: str) -> str:
    """On a synchronous root (``--sync-port``) every POST is a run: ``/{model id}`` is ``/_sync/{model id}``.
    Files and the control endpoints are served as on the main port."""
    if method == "POST" and not path.startswith((SYNC_PREFIX + "/", "/_emulator/")):
        return SYNC_PREFIX + path
    return path
