"""Presentation in Jupyter: the magics (``%%falimage``, ``%falimage``, ``%falconfig``, ``%falform``), the
widget form (``falnb.form()``) and the live progress display.

It wires user input to the :class:`~falnb.Client`'s public API (``plan``, ``start`` and the
:class:`~falnb.Run` it returns) and shows what comes back.  Imports: the client, the results, the
request and catalog layers, the cache (for its public controls) and the exception tree.  It never
imports httpx or the fal transport, and never calls a private method of the client.
"""

__all__: list[str] = []
