"""Start ``gen_child.py`` with a shared cache directory and read what it printed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).parent / "gen_child.py"


def child_env(cache_dir: Path) -> dict[str, str]:
    env = {**os.environ, "FALNB_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT)}
    for var in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_AI_API_KEY", "FALNB_QUEUE_URL", "FALNB_OFFLINE"):
        env.pop(var, None)
    return env


def start_child(cfg: dict[str, Any], cache_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(CHILD), json.dumps(cfg)], env=child_env(cache_dir), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_child(proc: subprocess.Popen[str], timeout: float = 60.0) -> tuple[int, list[str], Any]:
    """(return code, the PHASE lines, the RESULT list or None); fails on an unexpected crash."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"child hung:\n{out}\n{err}") from None
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"child failed ({proc.returncode}):\n{out}\n{err}")
    phases = [line[6:] for line in out.splitlines() if line.startswith("PHASE ")]
    results = [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]
    return proc.returncode, phases, results[0] if results else None


def run_child(cfg: dict[str, Any], cache_dir: Path, timeout: float = 60.0) -> tuple[int, list[str], Any]:
    return finish_child(start_child(cfg, cache_dir), timeout)
