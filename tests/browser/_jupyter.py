"""A real Jupyter server for the browser tests: a temporary root, config and runtime, on a free port.

``exposed=True`` is galata's test configuration (the app reachable as ``window.jupyterapp``);
``exposed=False`` is a stock server as people run it (``expose_app_in_browser`` off), with only the
token and the news pop-up turned off.  Both start kernels that import this checkout's falnb.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = ["ARTIFACTS", "CHROMIUM", "FLAGS", "jupyter", "need_browser", "note", "shot"]

CHROMIUM = os.environ.get("FALNB_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
REPO = Path(__file__).resolve().parents[2]
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
_T0 = time.monotonic()


def _need(ok: bool, why: str) -> None:
    if ok:
        return
    if os.environ.get("FALNB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"FALNB_REQUIRE_BROWSER=1 but {why}")
    pytest.skip(why)


def need_browser() -> None:
    """Skip (or fail, with ``FALNB_REQUIRE_BROWSER=1``) without Chromium, playwright or JupyterLab."""
    _need(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    for mod in ("playwright.sync_api", "jupyterlab", "nbformat", "ipykernel"):
        try:
            __import__(mod)
        except ImportError:
            _need(False, f"{mod} is not installed (pip install -e '.[test]')")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


def note(what: str) -> None:
    """A timestamped line in artifacts/e2e.log (where the time went, when a run is slow)."""
    with open(ARTIFACTS / "e2e.log", "a") as fh:
        fh.write(f"{time.monotonic() - _T0:7.2f}s {what}\n")


def shot(page: Any, name: str, locator: Any = None) -> None:
    (locator or page).screenshot(path=str(ARTIFACTS / f"{name}.png"))
    note(f"screenshot {name}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def jupyter(notebooks: dict[str, list[str]], *, exposed: bool, log_name: str) -> Iterator[dict[str, Any]]:
    """Serve a root holding ``notebooks`` (name: cell sources); yields ``{"url", "root"}``."""
    import nbformat

    base = Path(tempfile.mkdtemp(prefix="falnb-e2e-"))
    root, runtime, config = base / "root", base / "runtime", base / "config"
    for d in (root, runtime, config):
        d.mkdir()
    for name, cells in notebooks.items():
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, root / name)
    # no news or update pop-ups over the page, and no "Select Kernel" dialog
    settings = config / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    tracker = config / "lab" / "user-settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"autoStartDefaultKernel": True}))
    port = _free_port()
    lines = [f"c.ServerApp.root_dir = {str(root)!r}", "c.ServerApp.ip = '127.0.0.1'", f"c.ServerApp.port = {port}",
             "c.ServerApp.allow_root = True", "c.ServerApp.open_browser = False"]
    if exposed:
        lines = ["from jupyterlab.galata import configure_jupyter_server", "configure_jupyter_server(c)", *lines,
                 "c.JupyterNotebookApp.expose_app_in_browser = True"]  # Notebook 7, when installed
    else:  # stock: only no token (the app stays hidden from page scripts)
        lines += ["c.IdentityProvider.token = ''", "c.ServerApp.password = ''",
                  f"c.LabApp.workspaces_dir = {str(base / 'workspaces')!r}"]
    (config / "jupyter_server_config.py").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime), "JUPYTER_CONFIG_DIR": str(config),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for k in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_AI_API_KEY", "FALNB_QUEUE_URL"):
        env.pop(k, None)
    log = open(ARTIFACTS / log_name, "w")  # closed below
    cmd = [sys.executable, "-m", "jupyterlab", f"--config={config / 'jupyter_server_config.py'}"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited ({proc.returncode}); see {ARTIFACTS / log_name}")
            try:
                with urllib.request.urlopen(f"{url}/lab", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("jupyter lab did not answer /lab within 60 s")
            time.sleep(0.3)
        note(f"jupyter lab answers at {url} (app exposed: {exposed})")
        yield {"url": url, "root": root}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        shutil.rmtree(base, ignore_errors=True)
