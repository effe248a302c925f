"""The benchmarks run (at a tiny size): ``python -m bench --quick``.  No timing is asserted here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_runs() -> None:
    # LiteLLM is left out here: its import alone takes 10-15 s and the quick run imports it in every row's
    # subprocess (about two minutes of the suite); fal-client, the floor and falnb run every row
    env = {**os.environ, "FALNB_BENCH_PEERS": "fal-client"}
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--no-write"], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "measurement" in out and "met?" in out
    for row in ("1. import falnb", "2. one-request overhead", "3. batch", "4. cache hit", "5. notebook bytes",
                "6. peak RSS", "7. --batch cell", "9. memory kept per request", "10. upload a 4 MB PNG input"):
        assert row in out, f"missing row {row!r}:\n{out}"
    assert "(failed)" not in out, out


def test_table_formats_missing_figures() -> None:
    from bench import Row
    from bench.__main__ import table

    rows = [Row("x", "ms", 1.5, None, 2000.0, ratio=0.00075, ratio_label="of LiteLLM", target="t", met=True),
            Row("y", "B", None, notes=["n/a"])]
    text = table(rows)
    assert "n/a" in text and "1.5 ms" in text and "yes" in text
    md = table(rows, markdown=True)
    assert md.splitlines()[1].startswith("|---")


def test_cache_scale_quick_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.cache_scale", "--quick"], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "budget check" in proc.stdout and "during prune" in proc.stdout


def test_bench_scale_quick_runs() -> None:
    """``python -m bench scale`` (issue 15's figures at scale) is wired: its batch row beside fal-client."""
    proc = subprocess.run([sys.executable, "-m", "bench", "scale", "--quick", "--no-write", "--only", "batch,emulator"],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "3. batch 32 prompts, limit 16" in proc.stdout and "<=1.05x ideal" in proc.stdout, proc.stdout
    assert "emulator status GET" in proc.stdout, proc.stdout
    # fal-client bounded as its users bound a large batch (issue 15: 5,000 unbounded subscribes never finished)
    assert "fal-client: its async subscribe inside an asyncio.Semaphore(16)" in proc.stdout, proc.stdout
