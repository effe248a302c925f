"""nbval runs of the notebooks: never with a real key, never with the user's cache, nothing left behind.

Each notebook's kernel starts with ``FALNB_OFFLINE=1`` (falnb's embedded fal emulator: no network, nothing
billed) and without fal keys, budgets or a queue URL from the developer's environment.  The notebooks
then give themselves a fresh temporary folder and cache (see their first cell), so every run reads the
same.  nbval kills the kernels, so their temporary folders are put under one ``TMPDIR`` that is removed at
the end of the session.  The variables are set only while a kernel starts, and restored right after.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

_UNSET = ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_AI_API_KEY", "FALNB_QUEUE_URL", "FALNB_CACHE_DIR",
          "FALNB_BUDGET_SESSION", "FALNB_BUDGET_TOTAL", "FALNB_TRACEBACKS")
_TMP: list[str] = []


def _kernel_tmp() -> str:
    if not _TMP:
        _TMP.append(tempfile.mkdtemp(prefix="falnb-nbval-"))
    return _TMP[0]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    if item.path.suffix != ".ipynb":  # not a notebook cell (nbval starts the kernel in this setup)
        yield
        return
    forced = {"FALNB_OFFLINE": "1", "TMPDIR": _kernel_tmp()}
    saved = {name: os.environ.get(name) for name in (*_UNSET, *forced)}
    for name in _UNSET:
        os.environ.pop(name, None)
    os.environ.update(forced)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _litellm_proxy_found() -> bool:
    """08-litellm-proxy starts a real LiteLLM proxy from its own venv (tests/_litellm_proxy.py builds it)."""
    venv = os.environ.get("FALNB_LITELLM_PROXY_VENV") or os.path.expanduser("~/.cache/falnb/litellm-proxy-1.108.7")
    return os.path.exists(os.path.join(venv, "bin", "litellm")) or shutil.which("litellm") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _litellm_proxy_found() or os.environ.get("FALNB_REQUIRE_PROXY") == "1":
        return
    skip = pytest.mark.skip(reason="no LiteLLM proxy venv: python3 tests/_litellm_proxy.py --install builds it")
    for item in items:
        if item.path.name == "08-litellm-proxy.ipynb":
            item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session) -> None:
    while _TMP:
        shutil.rmtree(_TMP.pop(), ignore_errors=True)
