"""``python -m bench scale``: issue 15's "done when", side by side in one run.

    python -m bench scale [--prompts 5000] [--cell-prompts 1000] [--max 100000] [--memory-prompts 500]
                          [--cache-repeats 3] [--only batch,memory,cell,emulator,cache] [--quick] [--no-write]

* **batch**: 5,000 prompts, account limit 16, 0.5 s jobs: falnb ``generate_many`` (its defaults) beside
  fal-client's async ``subscribe`` inside an ``asyncio.Semaphore(16)``, gathered, as a user of fal-client
  bounds a large batch (``bench/batch.py``, one round), target <= 1.05x the ideal time;
* **memory**: what a batch keeps per request beyond the pictures, falnb beside fal-client
  (``bench/request_memory.py``);
* **cell**: a ``%%falimage --batch`` cell of 1,000 prompts: first run, re-run against its cache hits alone
  in time and memory, notebook bytes per prompt (``bench/batch_cell.py``, one round);
* **emulator**: the emulator's status GET with 100 and 20,000 requests held, when ``bench/emulator_scale.py``
  exists (the emulator's engineer adds it);
* **cache**: hit, budget check, ``cache list`` first line and RSS, ``export`` RSS, a writer's wait during
  ``prune``, from 1,000 to ``--max`` entries, medians of ``--cache-repeats`` rounds with the sizes interleaved
  (``bench/cache_scale.py``; ``--max 10000`` for a quick run).

It takes long: 27 minutes on 2 shared CPUs (the 5,000-prompt batch alone is 2 x 157 s of ideal time, the
100,000-entry cache minutes to fill; ``--only`` picks parts, ``--quick`` only checks that it runs): that is why
it is not part of ``python -m bench``.  The figures go to ``bench/SCALE.md``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from . import HERE, Row, machine

PARTS = ["batch", "memory", "cell", "emulator", "cache"]


def _rows(part: str, a: argparse.Namespace) -> list[Row]:
    if part == "batch":
        from . import batch

        return batch.run(jobs=a.prompts, limit=16, gen=0.5, rounds=1, target=1.05,
                         variants=[("falnb", 0), ("fal-client", 16)], peer_semaphore=16)
    if part == "memory":
        from . import request_memory

        return request_memory.run(quick=a.quick, prompts=a.memory_prompts, rounds=1)
    if part == "cell":
        from . import batch_cell

        return batch_cell.run(quick=a.quick, prompts=a.cell_prompts, rounds=1)
    if part == "emulator":
        try:
            mod = importlib.import_module("bench.emulator_scale")
        except ImportError:
            return [Row("emulator status GET, 100 and 20,000 held", "ms", None, met=None,
                        notes=["bench/emulator_scale.py is not there yet (the emulator's engineer adds it)"])]
        rows: list[Row] = mod.run(quick=a.quick)
        return rows
    raise ValueError(part)


def _cache(a: argparse.Namespace) -> str:
    from . import cache_scale

    if a.quick:
        results = cache_scale.run(cache_scale.QUICK_SIZES, repeats=cache_scale.QUICK_REPEATS,
                                  window=cache_scale.QUICK_WINDOW_S, tag="bench scale")
    else:
        results = cache_scale.run(sorted({1000, min(10000, a.max), a.max}), repeats=a.cache_repeats, tag="bench scale")
    return cache_scale.table(results)


def main(argv: list[str] | None = None) -> int:
    from .__main__ import table

    ap = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=5000, help="the batch's prompts (5,000)")
    ap.add_argument("--memory-prompts", type=int, default=500, help="the memory row's two batches (500 each)")
    ap.add_argument("--cell-prompts", type=int, default=1000, help="the --batch cell's prompts (1,000)")
    ap.add_argument("--max", type=int, default=100_000, help="the largest cache (100,000; 10,000 for a quick look)")
    ap.add_argument("--cache-repeats", type=int, default=3,
                    help="rounds over the cache sizes, interleaved; each figure is their median (3)")
    ap.add_argument("--only", help="comma-separated: " + ",".join(PARTS))
    ap.add_argument("--quick", action="store_true", help="tiny sizes (checks that it runs; figures meaningless)")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/SCALE.md")
    a = ap.parse_args(argv)
    if a.quick:
        a.prompts, a.memory_prompts, a.cell_prompts, a.max = 32, 40, 40, 1000
    parts = [p.strip() for p in a.only.split(",")] if a.only else PARTS
    started = time.perf_counter()
    rows: list[Row] = []
    cache_text = ""
    for part in parts:
        print(f"[bench scale] {part} ...", file=sys.stderr, flush=True)
        try:
            if part == "cache":
                cache_text = _cache(a)
            else:
                rows.extend(_rows(part, a))
        except Exception as exc:  # one broken measurement must not hide the others
            traceback.print_exc()
            rows.append(Row(f"{part} (failed)", "", None, notes=[f"{type(exc).__name__}: {str(exc)[:300]}"]))
    info = machine()
    took = time.perf_counter() - started
    lines = [table(rows)]
    lines += [f"  {r.name}: {note}" for r in rows for note in r.notes if note]
    if cache_text:
        lines += ["", "The cache (each flat within ±30 % is the target):", "", cache_text]
    lines.append(f"\n{info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, {info['date']}; "
                 f"`python -m bench scale {' '.join(argv if argv is not None else sys.argv[2:])}` took {took:.0f} s")
    text = "\n".join(lines)
    print()
    print(text)
    if not a.no_write and not a.quick:
        (HERE / "SCALE.md").write_text("# falnb at scale (issue 15)\n\n```\n" + text + "\n```\n", encoding="utf-8")
    return 1 if any(r.name.endswith("(failed)") for r in rows) else 0
