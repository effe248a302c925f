"""A real LiteLLM proxy for the tests: its own venv, started once per session on falnb's emulator.

Stdlib only: ``.ci/run`` runs this file with the system python to build the venv before the tests
(``python3 tests/_litellm_proxy.py --install``), so CI pays the ~60 s install once, outside the tests' time.

* The venv never goes into falnb's test venv: ``litellm[proxy]==1.108.7`` would downgrade litellm and
  websockets there (/work/notes/litellm-proxy-spike.md section 1).  1.108.7 is the newest ``[proxy]`` the
  registry resolves (newer ones need ``litellm-enterprise``/``litellm-proxy-extras`` releases it lacks).
* ``prisma`` goes on the proxy's PYTHONPATH only (as in LiteLLM's docker image): without it LiteLLM answers
  a missing or malformed key with a bare 500 instead of its 401 (spike section 4.4).  No database: a key that
  is not the master key is refused with 400 "No connected db." (virtual keys need PostgreSQL).
* Where: ``FALNB_LITELLM_PROXY_VENV``, else ``~/.cache/falnb/litellm-proxy-<version>``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

VERSION = "1.108.7"
PRISMA = ("prisma==0.15.0", "nodeenv==1.12.0")
#: the readiness wait: start-up is import-bound, 10-17 s on 2 loaded cores (spike section 2)
START_TIMEOUT = 90.0
#: the team's model list the tests use: the three seed aliases of LiteLLM's fal page, plus two more
TEAM: dict[str, str] = {
    "flux-ultra": "fal-ai/flux-pro/v1.1-ultra",
    "imagen4": "fal-ai/imagen4/preview",
    "stable-diffusion": "fal-ai/stable-diffusion-v35-medium",
    "bria": "bria/text-to-image/3.2",
    "recraft": "fal-ai/recraft/v3/text-to-image",
}


def venv_dir() -> Path:
    given = os.environ.get("FALNB_LITELLM_PROXY_VENV", "").strip()
    return Path(given) if given else Path.home() / ".cache" / "falnb" / f"litellm-proxy-{VERSION}"


def _ready_marker(venv: Path) -> Path:
    return venv / ".falnb-ready"


def ensure_venv(venv: Path | None = None, log: Any = None) -> Path:
    """The proxy's venv, built when missing (under a lock: parallel sessions build it once).

    Raises RuntimeError (with pip's last lines) when it cannot be built, e.g. without the registry."""
    venv = venv or venv_dir()
    if _ready_marker(venv).exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _ready_marker(venv).exists():
            return venv
        steps = [
            [sys.executable if not _in_venv() else _base_python(), "-m", "venv", "--clear", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"litellm[proxy]=={VERSION}"],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--target",
             str(venv / "prisma-extra"), *PRISMA],
        ]
        for cmd in steps:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
                raise RuntimeError(f"cannot build the LiteLLM proxy venv ({' '.join(cmd[:4])} ...): {tail}")
        _ready_marker(venv).write_text(VERSION)
    return venv


def _in_venv() -> bool:
    return sys.prefix != sys.base_prefix


def _base_python() -> str:
    # a venv made from falnb's test venv would do, but the base interpreter keeps the two independent
    for name in ("python3", "python"):
        cand = Path(sys.base_prefix) / "bin" / name
        if cand.exists():
            return str(cand)
    return sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_yaml(sync_base: str, fal_key: str, extra: dict[str, dict[str, Any]] | None = None) -> str:
    """The team's config.yaml (JSON is YAML): one deployment per team name on the emulator's sync host."""
    models = [{"model_name": name, "litellm_params": {"model": f"fal_ai/{fal_id}", "api_key": fal_key,
                                                      "api_base": sync_base},
               "model_info": {"mode": "image_generation"}} for name, fal_id in TEAM.items()]
    for name, params in (extra or {}).items():
        models.append({"model_name": name, "litellm_params": {"api_key": fal_key, **params},
                       "model_info": {"mode": "image_generation"}})
    return json.dumps({"model_list": models, "router_settings": {"num_retries": 0},
                       "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"}}, indent=1)


class Proxy:
    """A LiteLLM proxy process: ``url``, ``key`` (the master key), ``stop()``."""

    def __init__(self, venv: Path, workdir: Path, queue_url: str, sync_url: str,
                 extra: dict[str, dict[str, Any]] | None = None) -> None:
        self.key = "sk-falnb-" + secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "config.yaml"
        self.config.write_text(config_yaml(sync_url, "falnb-dummy-fal-key", extra))
        self.log_path = workdir / "litellm-proxy.log"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LITELLM_", "FAL_", "OPENAI_", "FALNB_")) and k not in ("DATABASE_URL",
                                                                                      "PYTHONPATH")}
        env.update(LITELLM_MASTER_KEY=self.key, LITELLM_LOCAL_MODEL_COST_MAP="True",
                   FAL_AI_API_KEY="falnb-dummy-fal-key", FAL_AI_QUEUE_API_BASE=queue_url,
                   PYTHONPATH=str(venv / "prisma-extra"), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1")
        self._log = open(self.log_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(venv / "bin" / "litellm"), "--config", str(self.config), "--host", "127.0.0.1",
             "--port", str(self.port)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.ready_after: float | None = None

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until ``/health/liveliness`` answers (no key needed); RuntimeError with the log's tail if not."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the LiteLLM proxy exited ({self.proc.returncode}): {self.log_tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(f"{self.url}/health/liveliness", timeout=2) as resp:
                    if resp.status == 200:
                        self.ready_after = time.monotonic() - self.started
                        return
            time.sleep(0.1)
        raise RuntimeError(f"the LiteLLM proxy did not start within {timeout:g} s: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["--install"]:
        t0 = time.monotonic()
        where = ensure_venv()
        print(f"LiteLLM proxy venv {where} ready ({time.monotonic() - t0:.0f} s)")
    else:
        print("usage: python3 tests/_litellm_proxy.py --install", file=sys.stderr)
        sys.exit(2)
