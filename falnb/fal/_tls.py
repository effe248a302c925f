"""One TLS context per process for falnb's HTTP clients.

httpx builds a new ``ssl.SSLContext`` for every client it makes, reading the whole CA bundle each time (about
40 ms); falnb makes two clients per Client (the queue's and its status streams'), one per call to fal's platform
API and one per LiteLLM team lookup.  They all share one context instead, built as httpx builds its own
(``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when set, else certifi's bundle) and built again when those change.
"""

from __future__ import annotations

import os
import ssl
import threading

__all__ = ["verify"]

_LOCK = threading.Lock()
_CONTEXTS: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def verify(transport: object = None) -> ssl.SSLContext | bool:
    """httpx's ``verify`` for a client: the shared context, or True when the client has a ``transport`` of its
    own (the emulator's, a test's): httpx then makes no connection of its own, and builds no context."""
    if transport is not None:
        return True
    where = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _LOCK:
        context = _CONTEXTS.get(where)
        if context is None:
            import httpx

            context = _CONTEXTS[where] = httpx.create_ssl_context()
        return context
