"""Pay once: the response store (fal's answers and the image bytes on disk, an SQLite index shared by
kernels and processes), the in-flight journal that re-attaches to a request fal already holds instead
of paying for it again, the ledger of spend and savings with the budgets, and the controls (list,
stats, prune, clear, export/import and the ``falnb cache`` command).

Imports: the fal transport (to re-attach by request id), the results (images), the catalog and the
exception tree.  Never the client or the notebook.
"""

__all__: list[str] = []
