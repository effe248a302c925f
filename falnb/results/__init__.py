"""What comes back, and how it looks: :class:`~falnb.Image` (the bytes, since fal's URLs expire),
:class:`~falnb.Generation`, LiteLLM's shape of it (:class:`~falnb.ImageResponse`), :class:`~falnb.Progress`
snapshots, the one formatter for each thing people read (dollars, seeds, short texts, HTML-safe text) and
the notebook rendering of results (capped preview grids and captions as real mimebundles; Pillow and
IPython load on first use).

The vocabulary the layers above hand around: it imports no other falnb layer (only the exception tree),
so the fal transport, the cache, the client and the notebook can all use it.
"""

__all__: list[str] = []
