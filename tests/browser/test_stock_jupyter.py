"""The form and the magics in a stock JupyterLab 4 and Notebook 7: the app is not exposed to page scripts.

``window.jupyterapp`` exists only with ``expose_app_in_browser`` (galata's test configuration turns it on;
people do not).  Here the server runs without it and the notebook is driven as a person does, through the
menus.  "Copy as %%falimage cell" must then copy the cell to the clipboard and say so (the page script
reports what it did back to the kernel), ``form.insert_cell()`` run in a cell must insert the cell below
(IPython's ``set_next_input``), and amounts ("~$0.003 · cached — saved ~$0.003") must never be typeset as
LaTeX, in a cell's caption or in the form.  Skipped like ``test_lab_e2e.py`` without Chromium.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from ._jupyter import CHROMIUM, FLAGS, jupyter, need_browser, note, shot

pytestmark = pytest.mark.browser

CELLS = [
    "import os, tempfile\n"
    "os.environ['FALNB_OFFLINE'] = '1'\n"
    "os.environ['FALNB_CACHE_DIR'] = tempfile.mkdtemp(prefix='falnb-stock-cache-')\n"
    "for k in ('FAL_KEY', 'FAL_KEY_ID', 'FAL_KEY_SECRET', 'FAL_AI_API_KEY', 'FALNB_QUEUE_URL'):\n"
    "    os.environ.pop(k, None)",
    "%load_ext falnb",
    "%%falimage -m schnell --seed 1 -s 512x512\na lighthouse",
    "%%falimage -m schnell --seed 1 -s 512x512\na lighthouse",  # from the cache: two amounts in its caption
    "import falnb\nf = falnb.form('schnell', prompt='a lighthouse', seed=1, size='512x512')\nf",
    "f.generate(); f.wait(60); print(f.status)",  # cached too: "cost: $0 (from the cache; saved ~$0.003)"
    "f.insert_cell()",
]
PAGES = {"lab": "/lab/tree/stock-lab.ipynb", "nb7": "/notebooks/stock-nb7.ipynb"}
#: how long to wait for what will happen (JupyterLab loading, the kernel starting and running the cells): two
#: suites at once on two cores took over 60 s to show the form; it bounds a hang, never how fast falnb is
EVENT_MS = 180_000


@pytest.fixture(scope="module")
def stock() -> Iterator[dict[str, Any]]:
    need_browser()
    with jupyter({"stock-lab.ipynb": CELLS, "stock-nb7.ipynb": CELLS}, exposed=False,
                 log_name="jupyter-stock-server.log") as srv:
        yield srv


@pytest.fixture
def page(stock: dict[str, Any], request: pytest.FixtureRequest) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        context = chromium.new_context(viewport={"width": 1300, "height": 1600})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stock["url"])
        pg = context.new_page()
        pg.set_default_timeout(30_000)
        try:
            yield pg
        except BaseException:
            shot(pg, f"{request.node.name}-failure")
            raise
        finally:
            chromium.close()


def _idle(page: Any, timeout: float = EVENT_MS / 1000) -> None:
    """Wait until the kernel indicator says idle for 2 s, answering a "Select Kernel" dialog if one shows."""
    deadline = time.monotonic() + timeout
    since = None
    while time.monotonic() < deadline:
        select = page.locator(".jp-Dialog").get_by_role("button", name="Select")
        if select.count():
            select.click()
        status = page.evaluate("() => { const e = document.querySelector('.jp-Notebook-ExecutionIndicator');"
                               " return e ? e.getAttribute('data-status') : null; }")
        if status != "idle":
            since = None
        elif since is None:
            since = time.monotonic()
        elif time.monotonic() - since > 2.0:
            return
        page.wait_for_timeout(200)
    raise AssertionError("the notebook's kernel did not become idle")


def _sources(page: Any) -> list[str]:
    return list(page.evaluate("() => [...document.querySelectorAll('.jp-Notebook .jp-Cell .cm-content')]"
                              ".map(e => e.innerText)"))


@pytest.mark.parametrize("where", list(PAGES))
def test_stock_jupyter_copies_inserts_and_never_typesets_amounts(stock: dict[str, Any], page: Any,
                                                                 where: str) -> None:
    page.goto(stock["url"] + PAGES[where])
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=EVENT_MS)
    assert page.evaluate("() => typeof window.jupyterapp") == "undefined"  # as people run it
    _idle(page)
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
    note(f"stock {where}: run all")
    form = page.locator(".falnb-form")
    form.wait_for(state="visible", timeout=EVENT_MS)
    page.wait_for_function("() => document.querySelectorAll('.jp-Notebook .jp-Cell').length > 7", timeout=EVENT_MS)
    cost = form.locator(".falnb-cost")
    page.wait_for_function("(el) => el.innerText.includes('saved')", arg=cost.element_handle(), timeout=EVENT_MS)

    # form.insert_cell() in a cell: the %%falimage cell lands right below that cell
    text = form.locator(".falnb-cell-text textarea").input_value() or None
    sources = _sources(page)
    inserted = sources[sources.index("f.insert_cell()") + 1]
    assert inserted.startswith("%%falimage --model flux-schnell ") and inserted.endswith("\na lighthouse"), sources
    assert text is None  # the copy button was not clicked yet

    # "Copy as %%falimage cell": no app to insert with, so the clipboard, and the status says so
    form.get_by_role("button", name="Copy as %%falimage cell").click()
    page.wait_for_function("(el) => el.innerText.includes('clipboard')", arg=form.locator(".falnb-status")
                           .element_handle(), timeout=15_000)
    status = form.locator(".falnb-status").inner_text()
    assert status.startswith("%%falimage cell: copied to the clipboard"), status
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied == inserted == form.locator(".falnb-cell-text textarea").input_value()

    # amounts stay text: no MathJax in the cached cell's caption nor in the form's lines
    captions = page.locator(".falnb-caption")
    assert "~$0.003 · cached — saved ~$0.003" in captions.nth(1).inner_text()
    assert "cost: $0 (from the cache; saved ~$0.003)" in cost.inner_text()
    assert page.locator(".jp-OutputArea mjx-container").count() == 0
    shot(page, f"stock-{where}")
