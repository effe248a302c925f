"""Running a cell's generations: plan everything first, then run on falnb's private loop.

Every job is planned (validated, mapped, priced) before any is sent, so a mistake in the third
prompt of a batch or the second model of a comparison costs nothing.  The jobs then run
concurrently on the private loop while the main thread waits, calling ``on_tick`` (the progress
display) every 0.1 s.  A kernel interrupt cancels every pending fal request before it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._exceptions import BudgetExceededError, FalnbError, Interrupted

if TYPE_CHECKING:
    from .._client import Client
    from ..fal._progress import ProgressTracker
    from ..request._plan import Plan
    from ..results._generation import Generation

__all__ = ["Job", "check_cell_budget", "plan_jobs", "run_jobs"]


@dataclass
class Job:
    """One generation of a cell: a prompt on a model (``group``: the prompt's place in a batch)."""

    label: str
    prompt: str
    group: int
    plan: Plan
    tracker: ProgressTracker = field(init=False)
    result: Generation | FalnbError | None = None

    def __post_init__(self) -> None:
        from ..fal._progress import ProgressTracker

        self.tracker = ProgressTracker(self.plan.spec.id, len(self.plan.requests))


def plan_jobs(client: Client, prompts: Sequence[str], models: Sequence[str], *, n: int, size: Any,
              seed: int | None, params: dict[str, Any]) -> list[Job]:
    """Plan every (prompt, model) pair; the first mistake raises (an InputError: nothing sent)."""
    jobs = []
    for group, prompt in enumerate(prompts):
        for model in models:
            plan = client.plan(prompt, model=model, n=n, size=size, seed=seed, **dict(params))
            jobs.append(Job(model, prompt, group, plan))
    return jobs


def run_jobs(client: Client, jobs: Sequence[Job], *, refresh: bool, use_cache: bool, timeout: float | None,
             concurrency: int, on_tick: Callable[[], None] | None = None) -> None:
    """Run the jobs (at most ``concurrency`` at once), filling ``job.result`` with a Generation or a
    FalnbError.  An interrupt raises :class:`Interrupted` after fal's cancel went out."""
    from ..fal._loop import run_sync

    if len(jobs) > 1 and use_cache:
        check_cell_budget(client, jobs, refresh=refresh)

    async def run_all() -> list[Any]:
        limit = asyncio.Semaphore(max(1, concurrency))

        async def one(job: Job) -> Generation:
            async with limit:
                # the client's own runner: cache lookup, budget check, submit, wait, download
                return await client._run_plan(job.plan, refresh=refresh, use_cache=use_cache, timeout=timeout,
                                              tracker=job.tracker)

        return list(await asyncio.gather(*(one(j) for j in jobs), return_exceptions=True))

    try:
        results = run_sync(run_all(), on_tick=on_tick)
    except KeyboardInterrupt:
        pending = [j for j in jobs if j.tracker.snapshot().state not in ("done", "cached")]
        ids = [i for j in pending for i in j.tracker.snapshot().request_ids]
        what = (f"cancelled the fal request{'s' if len(ids) != 1 else ''} {', '.join(ids)}" if ids
                else "nothing had been sent")
        hint = "fal does not bill a request cancelled while queued." if ids else None
        raise Interrupted(f"interrupted: {what}", hint=hint) from None
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, FalnbError):
            job.result = result
        elif isinstance(result, BaseException):
            raise result
        else:
            job.result = result


def check_cell_budget(client: Client, jobs: Sequence[Job], *, refresh: bool) -> None:
    """Refuse the whole cell before sending anything when its uncached requests would cross a budget
    (the client checks each request alone, which would let the first ones of a batch through)."""
    cache = client.cache
    if cache is None:
        return
    due = [r for j in jobs for r in j.plan.requests if refresh or not cache.has(r.key)]
    if not due:
        return
    costs = [r.cost for r in due]
    total = None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
    try:
        cache.ledger.check_budget(total)
    except BudgetExceededError as exc:
        what = f"this cell's {len(due)} request{'s' if len(due) != 1 else ''}"
        raise BudgetExceededError(exc.message.replace("this request", what, 1), hint=exc.hint) from None
