"""The model catalog: what each fal endpoint takes, returns and costs.

Owns the :class:`~falnb.ModelSpec` and :class:`~falnb.Param` descriptions of the models, their aliases
(``flux-ultra``, LiteLLM's ``fal_ai/...`` routes, a LiteLLM proxy's ``config.yaml`` names), the price
estimates, how an OpenAI-style ``size`` maps onto each model's own size field (``_sizes``), and the
default model (:data:`DEFAULT_MODEL`).  The picture-input endpoints (edit, inpaint, upscale, remove the
background) and which of their inputs take pictures are in ``_image_models``.

The bottom layer: it imports nothing of falnb but the exception tree.  Every layer above reads it, and it
is the only part of falnb the emulator shares.
"""

__all__ = ["DEFAULT_MODEL"]

#: the model used when a call or a cell names none (``falnb.generate("a fox")``, ``%%falimage``, the form)
DEFAULT_MODEL = "flux-schnell"
