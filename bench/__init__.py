"""falnb's benchmarks, side by side with fal-client and LiteLLM.

``python -m bench`` runs every measurement and prints one table; ``python -m bench --quick`` runs
them all at tiny sizes (CI checks only that they run).  Each measurement is a module here with a
``run(quick: bool) -> list[Row]`` function; the figures and the machine go to ``bench/RESULTS.md``.

The machine is small and noisy, so every figure is a median over several runs, every client runs
in its own fresh subprocess against the same emulator (``falnb.emulator``, served over real HTTP
from yet another process), and the clients take turns round by round so drifts hit all of them.
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["HERE", "ROOT", "Row", "bench_env", "have", "machine", "median", "run_json"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable

#: the model every client asks for (cheap, ``image_size`` model, known to LiteLLM's fal provider)
MODEL = "fal-ai/flux/schnell"

_TMP = Path(tempfile.mkdtemp(prefix="falnb-bench-"))
atexit.register(shutil.rmtree, _TMP, True)


@dataclass
class Row:
    """One line of the table: a measurement and its figure for each client."""

    name: str
    unit: str
    falnb: float | None
    fal_client: float | None = None
    litellm: float | None = None
    #: the ratio the target is about, e.g. falnb / LiteLLM (None: not a ratio target)
    ratio: float | None = None
    ratio_label: str = ""
    target: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)
    #: raw samples and extra figures, for RESULTS.md
    detail: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> list[str]:
        ratio = "" if self.ratio is None else f"{self.ratio:.3g}x {self.ratio_label}".strip()
        met = {True: "yes", False: "NO", None: "-"}[self.met]
        return [self.name, fmt(self.falnb, self.unit), fmt(self.fal_client, self.unit), fmt(self.litellm, self.unit),
                ratio, self.target, met]


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "B":
        return f"{v:,.0f} B"
    if unit == "MB":
        return f"{v:.1f} MB"
    if unit in ("s", "ms"):
        return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{v:.3g} {unit}".strip()


_MODULES = {"falnb": "falnb", "fal-client": "fal_client", "litellm": "litellm", "floor": "httpx"}


def have(client: str) -> bool:
    """Whether a client is installed (the peers are an optional extra: ``pip install -e '.[bench]'``) and not
    left out by ``FALNB_BENCH_PEERS`` (a comma-separated list of the peers to run; unset: all)."""
    import importlib.util
    import os

    peers = os.environ.get("FALNB_BENCH_PEERS")
    if peers is not None and client not in ("falnb", "floor") and client not in peers.split(","):
        return False
    return importlib.util.find_spec(_MODULES.get(client, client)) is not None


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def bench_env(**extra: str) -> dict[str, str]:
    """Environment for every subprocess: fake keys, a private cache, LiteLLM kept off the network."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("FAL_KEY_ID", "FAL_KEY_SECRET", "FALNB_OFFLINE", "FAL_AI_API_BASE", "FALNB_QUEUE_URL")}
    env.update({
        "FAL_KEY": "bench-key",
        "FAL_AI_API_KEY": "bench-key",
        "FALNB_CACHE_DIR": str(_TMP / "cache"),
        # LiteLLM would otherwise try to download its price list at import
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
        "PYTHONDONTWRITEBYTECODE": "0",
    })
    env.update(extra)
    return env


def tmpdir(name: str) -> Path:
    p = _TMP / name
    p.mkdir(parents=True, exist_ok=True)
    return p


def run_json(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 300.0) -> Any:
    """Run ``python ARGS`` in a fresh process; its last stdout line is JSON."""
    proc = subprocess.run([PY, *args], env=env or bench_env(), cwd=str(ROOT), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"`python {' '.join(args)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if not lines:
        raise RuntimeError(f"`python {' '.join(args)}` printed nothing:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return "not installed"


def machine() -> dict[str, str]:
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "falnb": _version("falnb"),
        "fal-client": _version("fal-client"),
        "litellm": _version("litellm"),
        "httpx": _version("httpx"),
    }
