"""The cache at 1,000, 10,000 and 100,000 entries: does anything grow with it?  (issue 15)

    python -m bench.cache_scale [--sizes 1000,10000,100000] [--repeats 3] [--quick] [--no-write]

Method.  First every size's folder is filled by ``bench/cache_fill.py`` (one small picture and one ledger
row per entry; setup).  Then ``--repeats`` rounds (3) measure every size in turn, interleaved (1k, 10k, 100k,
1k, ...): a burst of load on this shared machine hits one round of one size, not all of a size's samples.
A round works on a fresh copy of the filled folder (the prune removes half of it; the copy and a ``sync``, so
that its writeback does not land inside the timings, are setup) and measures:

* **hit**: ``client.generate(...)`` served from the cache, in process (median of 200);
* **budget check**: ``ledger.check_budget`` with a total budget set (median of 2,000);
* **cache list**: ``falnb cache list`` in a fresh process: its first line, all of it, its peak RSS;
* **export**: ``falnb cache export`` in a fresh process: its time and peak RSS;
* **writer, no prune**: another process stores a picture every few milliseconds (``put``, fsync
  included) for 2 s: its 95th-percentile and longest ``put``;
* **writer during prune**: the same writer going on while ``falnb cache prune --max-size`` removes half the
  folder: its 95th-percentile ``put``, its longest ``put`` in the prune's first 2 s (the no-prune figure's
  window), and its longest ``put`` over the whole prune.  Only the first two are a writer's *wait*: the
  longest over the whole prune is the maximum of a sample that grows with the prune's length (55 s at
  100,000 entries against 1 s at 1,000), so it catches the machine's worst moment and grows by statistics.

Each figure in the table is the median over the rounds; under it, for the figures meant to stay flat, the
spread (lowest-highest over the rounds), which shows the machine's noise.  ``--quick`` (sizes 200 and 1,000,
2 rounds, a 0.5 s writer window) only checks that it runs.  At 100,000 entries the fill takes about a minute
and each round over a minute (export 15 s, list 7 s, prune 25-40 s, plus copying and removing the folder).

Target (issue 15): each flat, within ±30 % from the smallest to the largest size, judged on the medians.
The figures go to ``bench/CACHE_SCALE.md``.  Timings live here, never in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

#: ``--quick`` (and ``python -m bench scale --quick``) only checks that it runs: short, for tests/test_bench.py
QUICK_SIZES = [200, 1000]
QUICK_REPEATS = 2
QUICK_WINDOW_S = 0.5
#: a writer's ``put`` calls: (seconds from a window's start, its time)
Puts = list[tuple[float, float]]

_WRITER = textwrap.dedent("""
    import json, os, sys, time
    from falnb.cache._store import ResponseCache
    from falnb.results._image import Image
    cache = ResponseCache(sys.argv[1], "writer")
    i = 0
    while not os.path.exists(sys.argv[2]):
        data = f"writer {os.getpid()} {i}".encode().ljust(512, b".")
        t = time.time()
        cache.put(f"{i:064x}", model="m", canonical={"i": i}, response={}, images=[Image(data, "image/png", 1, 1)],
                  request_id=None, cost=None)
        print(json.dumps([t, time.time() - t]), flush=True)
        i += 1
        time.sleep(0.005)
""")


#: runs ``falnb ...`` and writes its peak resident memory (VmHWM: this program's own, not the forked
#: parent's that ``ru_maxrss`` would count) to stderr at exit
_CLI = ("import atexit, sys\n"
        "def hwm():\n"
        "    with open('/proc/self/status') as f:\n"
        "        kb = next(int(x.split()[1]) for x in f if x.startswith('VmHWM:'))\n"
        "    print(f'HWM {kb}', file=sys.stderr)\n"
        "atexit.register(hwm)\n"
        "from falnb._cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")


def _child(args: list[str], env: dict[str, str]) -> dict[str, float]:
    """``falnb *args`` in a fresh process: the time to its first line of output, to its end, its peak RSS (MB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=str(ROOT))
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    t_first = time.perf_counter() - t0
    for _ in iter(lambda: proc.stdout.read(1 << 16), b""):  # type: ignore[union-attr]
        pass
    err = proc.stderr.read().decode()
    proc.wait()
    t_end = time.perf_counter() - t0
    hwm = [int(x.split()[1]) for x in err.splitlines() if x.startswith("HWM ")]
    if proc.returncode != 0 or not first or not hwm:
        raise RuntimeError(f"falnb {' '.join(args)} failed: {err[-1500:]}")
    return {"first_s": t_first, "total_s": t_end, "rss_mb": hwm[0] / 1024}


def _writer_waits(folder: Path, env: dict[str, str], window: float) -> tuple[Puts, Puts, float]:
    """The ``put`` calls of one writer process for ``window`` s, then while ``falnb cache prune`` removes half of
    the folder's pictures, each as (seconds from that window's start, time); and the time the prune took."""
    stop = folder / f".stop-{random.random()}"
    w = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder), str(stop)], stdout=subprocess.PIPE,
                         env=env, cwd=str(ROOT), text=True)
    assert w.stdout is not None
    w.stdout.readline()  # it is writing
    calm = time.time()
    time.sleep(window)
    end = time.time()
    half = sum(f.stat().st_size for f in (folder / "objects").rglob("*") if f.is_file()) // 2
    prune = [sys.executable, "-m", "falnb", "cache", "prune", "--max-size", str(half), "--dir", str(folder)]
    start = time.time()
    subprocess.run(prune, env=env, cwd=str(ROOT), check=True, capture_output=True)
    stop.touch()
    done = time.time()
    lines = w.stdout.read().splitlines()
    w.wait()
    stop.unlink()
    puts = [json.loads(x) for x in lines if x.startswith("[")]
    # every put that overlapped a window (one that started before it and ended inside counts too)
    return ([(t - calm, d) for t, d in puts if t + d >= calm and t <= end],
            [(t - start, d) for t, d in puts if t + d >= start and t <= done], done - start)


def _p95(puts: Puts) -> float:
    waits = sorted(d for _, d in puts)
    return waits[min(len(waits) - 1, int(0.95 * len(waits)))] if waits else 0.0


def child_env() -> dict[str, str]:
    """The environment of the measured processes: this tree's falnb, no budget from the caller's shell."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("FALNB_BUDGET_TOTAL", None)
    env.pop("FALNB_BUDGET_SESSION", None)
    return env


def _one_round(filled: Path, size: int, env: dict[str, str], window: float) -> dict[str, float]:
    """One round of every figure on a fresh copy of the folder ``filled`` (the prune removes half of it)."""
    from bench.cache_fill import MODEL, prompt
    from falnb import Client

    folder = Path(tempfile.mkdtemp(prefix=f"{filled.name}-round-", dir=filled.parent))
    shutil.copytree(filled, folder, dirs_exist_ok=True)
    os.sync()  # the copy's writeback is setup: it must not land inside the timings
    try:
        out: dict[str, float] = {}
        client = Client(key="unused", queue_url="http://127.0.0.1:9", cache=folder)
        picks = [random.randrange(size) for _ in range(200)]
        client.generate(prompt(picks[0]), model=MODEL, seed=picks[0])  # warm
        hits = []
        for i in picks:
            t = time.perf_counter()
            gen = client.generate(prompt(i), model=MODEL, seed=i)
            hits.append(time.perf_counter() - t)
            assert gen.cached
        out["hit_ms"] = statistics.median(hits) * 1000
        ledger = client.cache.ledger  # type: ignore[union-attr]
        ledger.budget_total = 10.0 ** 9
        checks = []
        for _ in range(2000):
            t = time.perf_counter()
            ledger.check_budget(0.01)
            checks.append(time.perf_counter() - t)
        out["check_us"] = statistics.median(checks) * 1e6
        client.close()
        listed = _child(["cache", "list", "--dir", str(folder)], env)
        out.update(list_first_s=listed["first_s"], list_total_s=listed["total_s"], list_rss_mb=listed["rss_mb"])
        exported = _child(["cache", "export", str(folder / "e.zip"), "--dir", str(folder)], env)
        (folder / "e.zip").unlink()
        out.update(export_s=exported["total_s"], export_rss_mb=exported["rss_mb"])
        calm, pruning, out["prune_s"] = _writer_waits(folder, env, window)
        out["put_max_ms"] = max((d for _, d in calm), default=0.0) * 1000
        out["put_p95_ms"] = _p95(calm) * 1000
        out["put_p95_prune_ms"] = _p95(pruning) * 1000
        out["put_max_prune_2s_ms"] = max((d for t, d in pruning if t <= window), default=0.0) * 1000
        out["put_max_prune_ms"] = max((d for _, d in pruning), default=0.0) * 1000
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(sizes: list[int], env: dict[str, str] | None = None, *, repeats: int = 3, window: float = 2.0,
        tag: str = "cache_scale") -> list[dict[str, Any]]:
    """Fill a folder per size, then ``repeats`` rounds over all the sizes in turn; per size, each figure's median
    over the rounds, ``fill_s`` (the fill, once), ``rounds`` (each round's figures) and ``window_s``."""
    from bench.cache_fill import fill

    env = env if env is not None else child_env()
    filled: dict[int, tuple[Path, float]] = {}
    rounds: dict[int, list[dict[str, float]]] = {size: [] for size in sizes}
    try:
        for size in sizes:
            print(f"[{tag}] filling {size:,} entries ...", file=sys.stderr, flush=True)
            folder = Path(tempfile.mkdtemp(prefix=f"falnb-scale-{size}-"))
            filled[size] = (folder, 0.0)  # removed in the end even if the fill fails
            t = time.perf_counter()
            fill(folder, size)
            filled[size] = (folder, time.perf_counter() - t)
        for r in range(repeats):
            for size in sizes:
                print(f"[{tag}] round {r + 1}/{repeats}, {size:,} entries ...", file=sys.stderr, flush=True)
                rounds[size].append(_one_round(filled[size][0], size, env, window))
    finally:
        for folder, _ in filled.values():
            shutil.rmtree(folder, ignore_errors=True)
    return [{"size": size, "fill_s": filled[size][1], "window_s": window, "rounds": rounds[size],
             **{k: statistics.median(x[k] for x in rounds[size]) for k in rounds[size][0]}} for size in sizes]


ROWS = [("hit (ms, median)", "hit_ms"), ("budget check (µs, median)", "check_us"),
        ("`cache list`: first line (s)", "list_first_s"), ("`cache list`: all (s)", "list_total_s"),
        ("`cache list`: peak RSS (MB)", "list_rss_mb"), ("`cache export`: time (s)", "export_s"),
        ("`cache export`: peak RSS (MB)", "export_rss_mb"), ("a writer's put, no prune: p95 (ms)", "put_p95_ms"),
        ("a writer's put during prune: p95 (ms)", "put_p95_prune_ms"),
        ("a writer's longest put, no prune, 2 s (ms)", "put_max_ms"),
        ("a writer's longest put, prune's first 2 s (ms)", "put_max_prune_2s_ms"),
        ("a writer's longest put over the whole prune (ms)", "put_max_prune_ms"), ("prune of half (s)", "prune_s"),
        ("filling the folder (s, setup)", "fill_s")]
#: figures the target asks to stay flat (the others grow with the work by nature: all of list, export, prune)
FLAT = {"hit_ms", "check_us", "list_first_s", "list_rss_mb", "export_rss_mb", "put_p95_prune_ms",
        "put_max_prune_2s_ms"}


BEFORE = """Before (issue 15, measured at 81c5a51 with 1k / 10k / 50k entries): a budget check 0.56 / 4.1 / 23.7 ms
(it summed the whole ledger); `cache list` 0.21 / 0.72 / 2.44 s, its first line 0.18 / 0.48 / 1.69 s, 25 / 46 /
132 MB; `cache export` 39 / 184 / 825 MB; another process's `put` waited 3.85 s behind a prune of 50k entries
(normally 4 ms).

What is flat and what is not: a hit, a budget check, the first line of `cache list` and the memory of `list`
and `export` stay flat to 100,000 entries.  The whole of `list`, `export` and `prune` grows with the entries they
walk, by nature.  A writer's longest `put` during a prune stays a fraction of a second: the prune holds the write
lock 50 ms at most at a time and then pauses (a writer polls for the lock every 2 ms), so the longest wait is
one batch plus the writer's own fsync.  The flat figures for a writer are its 95th-percentile `put` and its
longest `put` in a window of the same length (the prune's first 2 s); its longest `put` over the whole prune
is the maximum of a sample that grows with the prune (about 10 times more puts at 100,000 entries than at
10,000), so it catches the machine's worst moments and grows by statistics, not by the prune's lock.
The prune itself takes longer than before (it yields to the
writer, which here holds the lock most of the time), and never holds the lock for long.
"""


def _num(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:,.0f}"


def table(results: list[dict[str, Any]]) -> str:
    """The medians, judged flat or not, then how many rounds and the flat figures' spread over them."""
    head = "| figure | " + " | ".join(f"{r['size']:,} entries" for r in results) + " | flat (±30 %)? |"
    lines = [head, "|" + "---|" * (len(results) + 2)]
    for label, k in ROWS:
        lo, hi = results[0][k], results[-1][k]
        flat = ("yes" if hi <= lo * 1.3 + 1e-9 else f"no ({hi / lo:.2f}x)") if k in FLAT and lo else ""
        lines.append(f"| {label} | " + " | ".join(_num(r[k]) for r in results) + f" | {flat} |")
    n, w = len(results[0]["rounds"]), results[0]["window_s"]
    window = "" if w == 2.0 else f"; the writer's windows are {w:g} s, not 2 s"
    sizes = " / ".join(f"{r['size']:,}" for r in results)
    lines += ["", f"Median of {n} rounds, sizes interleaved; the fill is once per size{window}.  Spread over the "
              f"rounds (lowest–highest; {sizes} entries) of the figures meant to stay flat:", ""]
    for label, k in ROWS:
        if k in FLAT:
            spread = [f"{_num(min(x[k] for x in r['rounds']))}–{_num(max(x[k] for x in r['rounds']))}" for r in results]
            lines.append(f"* {label}: " + " / ".join(spread))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cache_scale", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--repeats", type=int, help="rounds over all the sizes; each figure is their median (3)")
    ap.add_argument("--quick", action="store_true",
                    help=f"sizes {QUICK_SIZES[0]} and {QUICK_SIZES[1]}, {QUICK_REPEATS} rounds (checks that it runs)")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        results = run(QUICK_SIZES, repeats=a.repeats or QUICK_REPEATS, window=QUICK_WINDOW_S)
    else:
        results = run([int(s) for s in a.sizes.split(",")], repeats=a.repeats or 3)
    text = table(results)
    print(text)
    if not a.no_write and not a.quick:
        (HERE / "CACHE_SCALE.md").write_text(
            "# The cache at scale (issue 15)\n\n`python -m bench.cache_scale` on "
            f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}; see the module docstring for the method.\n\n"
            + text + "\n\n" + BEFORE, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
