"""``python -m bench``: every measurement, one table, and ``bench/RESULTS.md``.

``python -m bench soak --steps 20000``: the simulation of falnb's promises, for long (``bench/soak.py``).

``--quick``: tiny sizes, one run each (CI: checks that everything runs; figures meaningless), and
RESULTS.md is left alone unless ``--write`` is given.  ``--only imports,batch``: some measurements.
``python -m bench scale``: issue 15's figures at scale (5,000 prompts, 100,000 entries), see ``bench/scale.py``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from . import HERE, Row, machine

#: (module, what it measures), in table order
MEASUREMENTS = [
    ("imports", "import time"),
    ("latency", "one-request overhead"),
    ("batch", "batch of 64"),
    ("cache", "cache hit"),
    ("notebook_bytes", "notebook bytes"),
    ("memory", "memory"),
    ("batch_cell", "a --batch cell of 1,000 prompts"),
    ("emulator_scale", "the emulator with 20,000 requests held"),
    ("request_memory", "memory per request in a batch"),
    ("upload", "input picture upload"),
]
HEADER = ["measurement", "falnb", "fal-client", "LiteLLM", "ratio", "target", "met?"]


def table(rows: list[Row], markdown: bool = False) -> str:
    cells = [HEADER, *(r.cells() for r in rows)]
    if markdown:
        out = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        out.insert(1, "|" + "|".join("---" for _ in HEADER) + "|")
        return "\n".join(out)
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_all(quick: bool, only: list[str] | None) -> tuple[list[Row], dict[str, float]]:
    rows: list[Row] = []
    took: dict[str, float] = {}
    for name, what in MEASUREMENTS:
        if only and name not in only:
            continue
        t = time.perf_counter()
        print(f"[bench] {what} ...", file=sys.stderr, flush=True)
        try:
            mod = importlib.import_module(f"bench.{name}")
            rows.extend(mod.run(quick=quick))
        except Exception as exc:  # one broken measurement must not hide the others
            traceback.print_exc()
            rows.append(Row(f"{what} (failed)", "", None, notes=[f"{type(exc).__name__}: {str(exc)[:300]}"],
                            met=None))
        took[name] = time.perf_counter() - t
    return rows, took


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["soak"]:  # the simulation of falnb's promises, for long (see bench/soak.py)
        from .soak import main as soak

        return soak(args[1:])
    if args[:1] == ["scale"]:  # issue 15's figures at scale: long, so a command of its own
        from .scale import main as scale

        return scale(args[1:])
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one run each (CI)")
    ap.add_argument("--only", help="comma-separated: " + ",".join(n for n, _ in MEASUREMENTS))
    ap.add_argument("--write", action="store_true", help="write RESULTS.md even with --quick")
    ap.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    a = ap.parse_args(args)
    only = [s.strip() for s in a.only.split(",")] if a.only else None
    started = time.perf_counter()
    rows, took = run_all(a.quick, only)
    info = machine()
    print()
    print(table(rows))
    for r in rows:
        for note in r.notes:
            if note:
                print(f"  {r.name}: {note}")
    total = time.perf_counter() - started
    print(f"\n{info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, {info['date']}; "
          f"{'quick run, ' if a.quick else ''}took {total:.0f} s")
    failed = [r for r in rows if r.name.endswith("(failed)")]
    if (a.write or not a.quick) and not a.no_write and not only:
        from ._report import write_results

        write_results(Path(a.out), rows, info, quick=a.quick, took=took, table=table(rows, markdown=True))
        print(f"wrote {a.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
