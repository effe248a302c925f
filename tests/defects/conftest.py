"""Fixtures of the defect tests: the independent fal stand-in, clients on it, a real IPython shell.

``tests/conftest.py`` already clears every fal key and budget from the environment and points
``FALNB_CACHE_DIR`` at a fresh directory for each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from ._private import magics_of
from .falstandin import FalStandIn


@pytest.fixture
def standin() -> Iterator[FalStandIn]:
    s = FalStandIn()
    yield s
    s.finish()  # requests a broken falnb left polling end, so nothing leaks into the next test


@pytest.fixture
def client(standin: FalStandIn, tmp_path: Path) -> Iterator[Any]:
    c = standin.client(tmp_path / "cache")
    yield c
    standin.finish()
    c.close()


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    sh = InteractiveShell.instance()
    sh.colors = "nocolor"
    sh.run_line_magic("load_ext", "falnb")
    return sh


@pytest.fixture
def magics(shell: InteractiveShell, client: Any) -> Iterator[Any]:
    """The shell's FalMagics with its traits at their defaults and cells going to the stand-in."""
    m = magics_of(shell)
    for name in m.trait_names(config=True):
        setattr(m, name, m.trait_defaults(name))
    m.client = client
    yield m
    m.client = None
    for name in m.trait_names(config=True):
        setattr(m, name, m.trait_defaults(name))
