"""The words falnb uses for results: dollar amounts, seeds, sizes, short texts and safe HTML.

One formatter per thing, so a caption, the form, the ledger and ``falnb cache`` say the same.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

__all__ = ["NO_MATH", "html_text", "seed_text", "short", "usd"]

#: HTML classes MathJax skips (``mathjax_ignore``: MathJax 3.2+, in JupyterLab 4 and Notebook 7;
#: ``tex2jax_ignore``: older MathJax).  JupyterLab typesets ``$...$`` in HTML outputs and widgets even
#: when the ``$`` is written ``&#36;`` (it reads the page's text), so text with amounts goes inside one.
NO_MATH = "mathjax_ignore tex2jax_ignore"


def usd(amount: float) -> str:
    """Dollars as people read them: cents, and tenths of a cent below $1 where they matter
    (a schnell image costs $0.003: "$0.00" would hide it)."""
    if abs(amount) >= 1 or abs(round(amount, 2) - amount) < 5e-7:
        return f"${amount:.2f}"
    return f"${amount:.3f}"


def seed_text(seeds: Iterable[int | None], fallback: int | None = None) -> str | None:
    """``seed 7``, ``seeds 7-9`` (consecutive, as falnb numbers split requests), or a short list.

    fal draws a random seed per request when none is given, so the seeds of one call can be far
    apart (``12`` and ``2000000000``): the text never depends on their range, only on their count.
    """
    distinct = sorted({s for s in seeds if isinstance(s, int) and not isinstance(s, bool)})
    if not distinct and isinstance(fallback, int):
        distinct = [fallback]
    if not distinct:
        return None
    if len(distinct) == 1:
        return f"seed {distinct[0]}"
    if distinct[-1] - distinct[0] == len(distinct) - 1:
        return f"seeds {distinct[0]}-{distinct[-1]}"
    shown = ", ".join(str(s) for s in distinct[:6])
    return f"seeds {shown}" + (f", … ({len(distinct)} in all)" if len(distinct) > 6 else "")


def short(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def html_text(text: str) -> str:
    """``text`` escaped for HTML output, ``$`` included (``&#36;``).  That alone does not stop JupyterLab
    from typesetting ``$...$`` (MathJax reads the rendered text): put it inside an element of class
    :data:`NO_MATH` too."""
    return html.escape(text).replace("$", "&#36;")
