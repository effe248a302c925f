"""fal's transport: where the key and the queue URL come from (``_config``), fal's queue protocol with its
retry rules (``_queue``: a submit that may have reached fal is never sent again), fal's HTTP errors as
falnb exceptions (``_errors``), image downloads (``_download``), input-picture uploads with fal's storage
protocol (``_upload``), and the private event loop that runs the
network work of the sync API in every front end (``_loop``).

The only layer that speaks HTTP (httpx).  Imports: the exception tree (and the results' types).
The notebook layer never imports it: presentation goes through the Client.
"""

__all__: list[str] = []
