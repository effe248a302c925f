"""The form's one-line texts: status, estimated cost before, cost after.  Pure functions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._exceptions import FalnbError
from ..results._text import usd

if TYPE_CHECKING:
    from ..request._plan import Plan
    from ..results._generation import Generation
    from ..results._progress import Progress

__all__ = ["cancelled_text", "cost_text", "done_text", "error_text", "estimate_text", "progress_text"]

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
    """``flux-ultra: queued (position 1) · 0.8 s``; ``running: <fal's latest log line>``."""
    if p.state == "queued":
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
        return f"cost: $0 (from the cache; saved ~{usd(gen.saved)})"
    if gen.cost is None:
        return "cost: unknown (no price on record for this model)"
    paid = round(gen.cost - gen.saved, 6)
    saved = f"; ~{usd(gen.saved)} saved by the cache" if gen.saved else ""
    return f"cost: ~{usd(paid)} (estimate{saved})"


def error_text(exc: BaseException) -> str:
    """``error: <the readable message> — <the hint>`` on one line."""
    if isinstance(exc, FalnbError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return "error: " + " — ".join(line.strip() for line in text.splitlines() if line.strip())


def cancelled_text(p: Progress, name: str) -> str:
    """What a cancel did, by where the request(s) had got to."""
    if not p.request_ids:
        return f"{name}: cancelled before anything was sent · nothing billed"
    ids = ", ".join(p.request_ids)
    if p.state in ("submitting", "queued"):
        return f"{name}: cancelled while queued · fal's cancel sent ({ids}) · nothing billed"
    return f"{name}: cancelled while {p.state} · fal's cancel sent ({ids}) · fal may bill work already done"
