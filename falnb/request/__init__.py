"""From a call to fal requests: ``generate(prompt, model=..., n=..., size=..., seed=..., **params)`` becomes a
:class:`Plan` of exact fal inputs, validated before anything is sent (a mistake costs nothing), with
``n`` split over requests where a model's limit asks for it, each request's canonical input, cache key
and price estimate.  Input pictures (``_pictures``, ``_picture_plan``) are read, checked and keyed by
their content hash here; the engine uploads them.

Imports: the catalog (and the exception tree).  Nothing here touches the network, the cache or a notebook.
"""

__all__: list[str] = []
