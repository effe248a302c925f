"""An embedded fal.ai queue emulator: offline notebooks, fast tests, and failures on demand.

It follows fal's queue protocol (submit, status with ``202``/``200``, result, cancel, the status
stream, the URL rule that status URLs carry only ``owner/app``), validates each model's input
from falnb's catalog and answers with real, exactly sized synthetic pictures.  A ledger records
what fal would have billed.

In-process (no socket)::

    emu = Emulator(latency=0.05, concurrency=2)
    async with httpx.AsyncClient(transport=emu.transport()) as http: ...

Over HTTP: ``server = serve(port=0)`` (``server.url``), or ``falnb emulator --port 8765`` /
``python -m falnb.emulator``; then ``FALNB_QUEUE_URL=http://127.0.0.1:8765``.

fal has two hosts: the queue (``queue.fal.run``: the main port's root) and the synchronous
``fal.run`` (``server.sync_url``: ``/_sync`` on the main port, or a root of its own with
``serve(sync_port=0)`` / ``falnb emulator --sync-port N``; see ``_sync``).  A synchronous call aimed
at the queue root gets a queue answer, as from fal.  fal's own Python client builds its URLs from
module constants read at import, always ``https://``; point it at the emulator with::

    import fal_client.client
    fal_client.client.QUEUE_URL_FORMAT = server.url + "/"
    fal_client.client.RUN_URL_FORMAT = server.sync_url + "/"
    fal_client.SyncClient(key="anything").subscribe("fal-ai/flux/schnell", {"prompt": "..."})

(in pytest: ``monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", server.url + "/")``).

fal's storage too (``_storage``: upload tokens, uploads single and in parts, the bytes served back), and the
picture-input endpoints (``_edits``: edits, upscalers and background removers answer from their input).
Set ``FALNB_STORAGE_URL=http://127.0.0.1:8765`` for falnb, or ``fal_client.client.REST_URL``/``CDN_URL``.

Control endpoints (no key needed): ``GET /_emulator/ledger``; ``GET|POST /_emulator/config`` (a JSON
object of knobs, see :class:`Faults` and ``Emulator.knobs()``); ``POST /_emulator/reset``.

The emulator sits beside falnb's layers and imports only the catalog (the models it emulates) and the
exception tree: it must behave like fal, not like falnb's client hopes, so it shares none of the client's
code.
"""

from __future__ import annotations

from ._emulator import Emulator, shared_emulator
from ._knobs import Faults, Settings
from ._ledger import Ledger, LedgerEntry
from ._server import EmulatorServer, serve

__all__ = [
    "Emulator",
    "EmulatorServer",
    "Faults",
    "Ledger",
    "LedgerEntry",
    "Settings",
    "serve",
    "shared_emulator",
]
