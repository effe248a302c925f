"""Running a cell's generations: plan everything first, then run them as one :class:`~falnb.Run`.

Every job is planned (validated, mapped, priced) before any is sent, so a mistake in the third
prompt of a batch or the second model of a comparison costs nothing.  The jobs then run together
through :meth:`Client.start <falnb.Client.start>` (budgets checked for the whole cell first) while the
main thread waits, calling ``on_tick`` (the progress display) every 0.1 s.  A kernel interrupt cancels
every pending fal request and raises :class:`~falnb.Interrupted` saying what happened to each.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._exceptions import FalnbError, Interrupted

if TYPE_CHECKING:
    from .._client import Client
    from ..request._plan import Plan
    from ..results._generation import Generation
    from ..results._layout import Entry
    from ..results._progress import Progress
    from ..results._render import DisplaySettings

__all__ = ["Job", "plan_jobs", "run_cell", "run_jobs", "shaped"]


@dataclass
class Job:
    """One generation of a cell: a prompt on a model (``group``: the prompt's place in a batch)."""

    label: str
    prompt: str
    group: int
    plan: Plan
    result: Generation | FalnbError | None = None
    #: the job's progress while it runs (None before it starts)
    progress: Callable[[], Progress] | None = None


def plan_jobs(client: Client, prompts: Sequence[str], models: Sequence[str], *, n: int, size: Any,
              seed: int | None, params: dict[str, Any], allow_unknown: bool = False) -> list[Job]:
    """Plan every (prompt, model) pair; the first mistake raises (an InputError: nothing sent)."""
    jobs = []
    for group, prompt in enumerate(prompts):
        for model in models:
            plan = client.plan(prompt, model=model, n=n, size=size, seed=seed, allow_unknown=allow_unknown,
                               **dict(params))
            jobs.append(Job(model, prompt, group, plan))
    return jobs


def run_jobs(client: Client, jobs: Sequence[Job], *, refresh: bool, use_cache: bool, timeout: float | None,
             concurrency: int, on_tick: Callable[[], None] | None = None, origin: str | None = None) -> None:
    """Run the jobs (at most ``concurrency`` at once), filling ``job.result`` with a Generation or a
    FalnbError.  An interrupt raises :class:`~falnb.Interrupted` after fal's cancels went out."""
    run = client.start([j.plan for j in jobs], refresh=refresh, cache=use_cache, timeout=timeout,
                       concurrency=concurrency)
    for job, tracker in zip(jobs, run.trackers, strict=True):
        job.progress = tracker.snapshot
    for job, result in zip(jobs, run.wait(on_tick=on_tick), strict=True):
        if origin is not None and not isinstance(result, BaseException):
            result.origin = origin  # its pictures, given to a later cell, are "picture 2 of cell [5]"
        job.result = result


def run_cell(client: Client, jobs: list[Job], *, refresh: bool, use_cache: bool, timeout: float | None,
             settings: DisplaySettings, batch: bool, concurrency: int, show_progress: bool,
             live: bool, keep: Callable[[Any], None] | None = None, name: str | None = None,
             origin: str | None = None) -> list[Any]:
    """Run a cell's jobs with live progress, then replace the progress with the pictures and captions.

    ``keep`` receives what ``--out`` stores (see :func:`shaped`) before any picture is drawn, so drawing
    can never lose it; ``name`` is that variable's name, which a batch's page note mentions."""
    from ..results._render import Entry, render_outputs
    from ._progress_view import ProgressView, progress_text

    view = ProgressView(enabled=show_progress, live=live)
    started = time.monotonic()
    many_models = len({j.label for j in jobs}) > 1

    def label(job: Job) -> str:
        if not batch:
            return job.label
        short = " ".join(job.prompt.split())
        short = short if len(short) <= 40 else short[:39] + "…"
        return f"[{job.group + 1}] {short}" + (f" · {job.label}" if many_models else "")

    def tick() -> None:
        elapsed = time.monotonic() - started
        text, key = progress_text([(label(j), j.progress() if j.progress else None) for j in jobs], elapsed)
        view.show(text, key)

    try:
        run_jobs(client, jobs, refresh=refresh, use_cache=use_cache, timeout=timeout,
                 concurrency=concurrency, on_tick=tick, origin=origin)
    except Interrupted:
        view.close(f"interrupted after {time.monotonic() - started:.1f} s")
        raise
    except BaseException:
        view.close(f"stopped after {time.monotonic() - started:.1f} s")
        raise
    results = [j.result for j in jobs]
    entries = [Entry(j.label, j.prompt, j.result, j.group) for j in jobs if j.result is not None]
    if keep is not None:
        keep(shaped(jobs, entries, many_models, batch, name))
    if len(jobs) == 1 and isinstance(results[0], FalnbError):
        view.close(f"failed after {time.monotonic() - started:.1f} s")
        return results
    try:
        outputs = render_outputs(entries, settings, name=name)
    except Exception as exc:  # drawing must not lose what was paid for: the results are kept (--out)
        kept = f" in {name}" if name else "; keep them with --out NAME"
        outputs = [({"text/plain": f"falnb could not draw the pictures ({type(exc).__name__}: {exc}); "
                                   f"the results are kept{kept}"}, {})]
    view.finish(outputs)
    return results


def shaped(jobs: list[Job], entries: Sequence[Entry], many_models: bool, batch: bool,
           name: str | None = None) -> Any:
    """What ``--out`` stores: a Generation; {model: result} with several models; with --batch a
    :class:`~falnb.results._batch.Batch` (a list of those, with ``.show(page=N)``)."""
    groups: dict[int, dict[str, Any]] = {}
    for j in jobs:
        groups.setdefault(j.group, {})[j.label] = j.result
    rows = [g if many_models else next(iter(g.values())) for g in groups.values()]
    if not batch:
        return rows[0]
    from ..results._batch import Batch

    return Batch(rows, entries, name)
