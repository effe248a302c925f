"""The emulator's own cost per request (issue 15 item 4): a status GET with 100 and with 20,000 requests
held (median; target flat within +-30%), a queued request's status behind 20,000 waiting, and the total
time of 20,000 submits.

    python -m bench.emulator_scale [--quick]

Measured on the emulator's app directly (``Emulator.handle``, no sockets: the HTTP server's cost is the
same per request whatever is held, and would hide the figure), with a manual clock: the requests are
submitted at one instant, then the clock moves past their end (completed, held for fal's hour of
retention), or stays (all waiting).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from typing import Any

from . import Row

_BODY = b'{"prompt": "a lighthouse at dusk", "seed": 7}'
_HEADERS = {"Authorization": "Key bench", "Content-Type": "application/json"}


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _held(n: int) -> tuple[Any, _Clock, list[str], float]:
    """An emulator holding ``n`` requests submitted at one instant; their status URLs; the submits' time."""
    from falnb.emulator import Emulator

    clock = _Clock()
    emu = Emulator(latency=1.0, concurrency=16, clock=clock, seed=1)
    urls = []
    t = time.perf_counter()
    for _ in range(n):
        answer = emu.handle("POST", "http://emulator/fal-ai/flux/schnell", _HEADERS, _BODY).json()
        urls.append(answer["status_url"])
    return emu, clock, urls, time.perf_counter() - t


def _gets(emu: Any, urls: list[str], gets: int) -> list[float]:
    """Seconds of each of ``gets`` status GETs, round-robin over ``urls``."""
    samples = []
    for i in range(gets):
        url = urls[i % len(urls)]
        t = time.perf_counter()
        emu.handle("GET", url, _HEADERS)
        samples.append(time.perf_counter() - t)
    return samples


def measure(small: int, large: int, gets: int, rounds: int = 5) -> dict[str, float]:
    """Both emulators built first, then measured in alternating rounds (a loaded machine slows both alike);
    each figure is the median over every GET of every round.  The GETs go to the same number of requests
    (the last ``small`` submitted) in both, so what differs is only how many are held."""
    out: dict[str, float] = {}
    held = {}
    for n in (small, large):
        emu, clock, urls, took = _held(n)
        out[f"submits_{n}"] = took
        held[n] = (emu, clock, urls)
    for phase in ("queued", "done"):
        samples: dict[int, list[float]] = {small: [], large: []}
        for n, (emu, clock, urls) in held.items():
            if phase == "done":
                clock.now = n / 16 + 5.0  # every request done (n / 16 s of work), within the hour of retention
                assert emu.handle("GET", urls[0], _HEADERS).status == 200, "a held request was not found"
        gc.collect()  # what building them left is collected now, not inside one of the figures
        for _ in range(rounds):
            for n, (emu, _clock, urls) in held.items():
                # queued: the last in line (position n - 17); done: the last `small` submitted
                samples[n] += _gets(emu, urls[-1:] if phase == "queued" else urls[-small:], gets)
        for n in (small, large):
            out[f"{phase}_{n}"] = statistics.median(samples[n])
    return out


def run(quick: bool = False) -> list[Row]:
    small, large, gets = (100, 2_000, 50) if quick else (100, 20_000, 1_000)
    m = measure(small, large, gets)
    ratio = m[f"done_{large}"] / m[f"done_{small}"]
    queued = m[f"queued_{large}"] / m[f"queued_{small}"]
    status = Row(f"8. emulator status GET, {large:,} held vs {small}", "ms", m[f"done_{large}"] * 1e3,
                 ratio=ratio, ratio_label=f"of {small} held ({m[f'done_{small}'] * 1e3:.3g} ms)",
                 target="0.7-1.3x", met=0.7 <= ratio <= 1.3,
                 notes=[f"median of 5 x {gets} GETs on Emulator.handle, of the last {small} submitted; "
                        f"a queued request's status behind {large - 17:,} waiting: "
                        f"{m[f'queued_{large}'] * 1e3:.3g} ms ({queued:.2f}x of behind {small - 17})"],
                 detail=m)
    submits = Row(f"8. emulator, {large:,} submits in a row (total)", "s", m[f"submits_{large}"],
                  notes=[f"{m[f'submits_{large}'] / large * 1e3:.3g} ms each; {small} submits: "
                         f"{m[f'submits_{small}'] / small * 1e3:.3g} ms each"], detail=m)
    return [status, submits]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    for row in run(quick=a.quick):
        print(" | ".join(row.cells()), *row.notes, sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
