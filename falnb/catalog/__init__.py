"""The model catalog: what each fal endpoint takes, returns and costs.

Owns the :class:`~falnb.ModelSpec` and :class:`~falnb.Param` descriptions of the models, their aliases
(``flux-ultra``, LiteLLM's ``fal_ai/...`` routes, a LiteLLM proxy's ``config.yaml`` names), the price
estimates, and how an OpenAI-style ``size`` maps onto each model's own size field (``_sizes``).

The bottom layer: it imports nothing of falnb but the exception tree.  Every layer above reads it, and it
is the only part of falnb the emulator shares.
"""

__all__: list[str] = []
