"""The form's one-line texts: status, estimated cost before, cost after.  Pure functions.

The texts go into ``widgets.HTML`` values as :func:`markup`: escaped, and inside a span MathJax skips.
JupyterLab and Notebook 7 typeset ``$...$`` in Label and HTML widgets (a caption with two amounts
would turn into math); a span with ``mathjax_ignore`` renders as the plain text everywhere, with or
without MathJax, where a ``\\$`` escape would show its backslash in front ends without MathJax.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING

from .._exceptions import FalnbError
from ..results._text import NO_MATH, html_text, usd

if TYPE_CHECKING:
    from ..request._plan import Plan
    from ..results._generation import Generation
    from ..results._progress import Progress

__all__ = ["cancelled_text", "cost_text", "done_text", "error_text", "estimate_text", "markup", "plain",
           "progress_text"]

_TAG = re.compile(r"<[^>]*>")


def markup(text: str) -> str:
    """``text`` as a ``widgets.HTML`` value: escaped (``$`` included), never typeset as LaTeX."""
    return f'<span class="{NO_MATH}">{html_text(text)}</span>' if text else ""


def plain(value: str) -> str:
    """The text of a :func:`markup` value (what a person reads)."""
    return html.unescape(_TAG.sub("", value))

#: what each progress state reads as; "done" and "cached" are the requests', not yet the form's
#: (the final "done"/"cached" line is :func:`done_text`, once the pictures are in the gallery)
_STATES = {"checking": "checking the cache", "submitting": "submitting to fal",
           "downloading": "downloading the pictures", "done": "finishing", "cached": "reading the cache"}


def estimate_text(plan: Plan) -> str:
    """``estimated cost: ~$0.120 for 2 images`` (before anything is sent)."""
    images = sum(r.images for r in plan.requests)
    what = f"{images} image{'s' if images != 1 else ''}"
    if len(plan.requests) > 1:
        what += f" in {len(plan.requests)} requests"
    if plan.cost is None:
        return f"estimated cost: unknown for {plan.spec.id} ({what})"
    return f"estimated cost: ~{usd(plan.cost)} for {what}"


def progress_text(p: Progress, name: str) -> str:
    """``flux-ultra: queued (position 1) · 0.8 s``; ``running: <fal's latest log line>``; several requests
    in different states: ``bria: 1 running, 2 queued (next: position 0) · 0/3 requests done · 1.2 s``."""
    mix = p.mix()
    if mix is not None:
        what = mix + (f" · {p.log[:120]}" if p.log else "")
    elif p.state == "queued":
        what = "queued" + (f" (position {p.queue_position})" if p.queue_position is not None else "")
    elif p.state == "running":
        what = "running" + (f": {p.log[:120]}" if p.log else "")
    else:
        what = _STATES.get(p.state, p.state)
    count = f" · {p.done}/{p.total} requests done" if p.total > 1 else ""
    return f"{name}: {what}{count} · {p.elapsed:.1f} s"


def done_text(gen: Generation, name: str) -> str:
    count = f"{len(gen.images)} image{'s' if len(gen.images) != 1 else ''}"
    if gen.cached:
        return f"{name}: cached · {count} from the cache, nothing paid · {gen.elapsed:.1f} s"
    return f"{name}: done · {count} · {gen.elapsed:.1f} s"


def cost_text(gen: Generation) -> str:
    """The cost after: the estimate paid, or what the cache saved."""
    if gen.cached:
        return f"cost: $0 (from the cache; saved {gen.money(gen.saved)})"
    if gen.cost is None:
        return "cost: unknown (no price on record for this model)"
    paid = round(gen.cost - gen.saved, 6)
    saved = f"; {gen.money(gen.saved)} saved by the cache" if gen.saved else ""
    return f"cost: {gen.money(paid)} ({'billed by fal' if gen.billed else 'estimate'}{saved})"


def error_text(exc: BaseException) -> str:
    """``error: <the readable message> — <the hint>`` on one line."""
    if isinstance(exc, FalnbError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return "error: " + " — ".join(line.strip() for line in text.splitlines() if line.strip())


def cancelled_text(report: str, name: str) -> str:
    """What a cancel did, request by request: ``report`` is the run's own account (``Run.interrupt_message``:
    what was cancelled while queued, what had started and may be billed, what was never sent)."""
    what = report.split(": ", 1)[1] if report.startswith("interrupted: ") else report
    return f"{name}: cancelled · {what}"
