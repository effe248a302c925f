"""The form in a real JupyterLab, driven by a real Chromium (Debian's, through Python playwright).

A JupyterLab server starts on a free port with galata's test configuration (no token, the app
exposed as ``window.jupyterapp``), in a temporary root holding a notebook written here.  The
notebook runs offline on falnb's embedded emulator (``FALNB_OFFLINE=1``, a temporary
``FALNB_CACHE_DIR``) with a slow model, so that Cancel can be clicked while a request is running.

The test picks a model, types a prompt, clicks Generate, waits for the pictures and checks that the
browser decoded them, puts the result into the cell output and saves the notebook (the .ipynb on
disk must hold the picture), inserts the equivalent ``%%falimage`` cell, re-opens the history,
picks a picture file for an edit model, and cancels a slow request.  Screenshots go to ``tests/browser/artifacts/``.

A second server runs a stock configuration (no galata, ``expose_app_in_browser`` off, as people run
JupyterLab 4 and Notebook 7): there the notebook is driven through the menus only, "Copy as
%%falimage cell" must copy to the clipboard and say so (the kernel learns what the page did), and
``form.insert_cell()`` run in a cell must insert the cell below; a cached cell's caption, with two
amounts, must not be typeset as LaTeX, nor the form's cost line.

Skipped when ``/usr/bin/chromium`` is missing, unless ``FALNB_REQUIRE_BROWSER=1`` (CI), which
turns every missing piece into a failure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._jupyter import ARTIFACTS, CHROMIUM, FLAGS, jupyter, need_browser, note, shot

pytestmark = pytest.mark.browser

SLOW_MODEL = "fal-ai/flux-pro/v1.1-ultra"
FAST_LABEL = "flux-schnell / schnell — FLUX.1 [schnell]"
SLOW_LABEL = "flux-ultra / ultra — FLUX1.1 [pro] ultra"
PROMPT = "a lighthouse at dusk, watercolour"


CELLS = [
    # the notebook runs offline, with its own cache, whatever the machine's environment says
    "import os, tempfile\n"
    "os.environ['FALNB_OFFLINE'] = '1'\n"
    "os.environ['FALNB_CACHE_DIR'] = tempfile.mkdtemp(prefix='falnb-e2e-cache-')\n"
    "for k in ('FAL_KEY', 'FAL_KEY_ID', 'FAL_KEY_SECRET', 'FAL_AI_API_KEY', 'FALNB_QUEUE_URL'):\n"
    "    os.environ.pop(k, None)",
    # one runner; flux-schnell takes 1 s, flux-ultra a minute (so Cancel can be clicked)
    "from falnb.emulator import shared_emulator\n"
    "emu = shared_emulator()\n"
    f"emu.configure(latency=1.0, concurrency=1, model_latency={{{SLOW_MODEL!r}: 60.0}})",
    "from falnb.notebook._form import form\n"
    "f = form()\n"
    "f",
]


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, Any]]:
    need_browser()
    (ARTIFACTS / "e2e.log").write_text("")
    with jupyter({"form.ipynb": CELLS, "form-nb7.ipynb": CELLS}, exposed=True, log_name="jupyter-server.log") as srv:
        yield srv


@pytest.fixture(scope="module")
def browser(lab: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(lab: dict[str, Any], browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1300})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab["url"])
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        (ARTIFACTS / f"{request.node.name}-page-errors.txt").write_text("\n".join(errors))
        context.close()


def status_of(form: Any) -> str:
    return str(form.locator(".falnb-status").inner_text())


def wait_status(page: Any, form: Any, *words: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = status_of(form)
        if any(w in text for w in words):
            return text
        page.wait_for_timeout(100)
    shot(page, "status-timeout")
    raise AssertionError(f"status never showed {words}; last: {text!r}")


def test_form_in_jupyterlab(lab: dict[str, Any], page: Any) -> None:
    try:
        _drive_lab(lab, page)
    except BaseException:
        shot(page, "lab-failure")
        raise


def test_form_in_notebook7(lab: dict[str, Any], page: Any) -> None:
    try:
        import notebook
    except ImportError:
        pytest.skip("Notebook 7 is not installed (pip install 'notebook>=7')")
    assert int(notebook.__version__.split(".")[0]) >= 7
    try:
        _drive_notebook7(lab, page)
    except BaseException:
        shot(page, "nb7-failure")
        raise


def _open_form(page: Any, url: str, prefix: str) -> Any:
    """Open the notebook at ``url``, run it, and return the form's locator."""
    page.goto(url)
    page.wait_for_function("() => !!window.jupyterapp", timeout=60_000)
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook-cell", timeout=60_000)
    _settle_kernel(page)
    note(f"{prefix}: notebook open, kernel idle")
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    form = page.locator(".falnb-form")
    form.wait_for(state="visible", timeout=60_000)
    assert "ready" in status_of(form)
    return form


def _images(n: int) -> str:
    return f"{n} image" + ("s" if n != 1 else "")


def _pick_and_type(page: Any, form: Any, n: int) -> None:
    """Pick flux-schnell, type the prompt and n; the estimate follows each change."""
    form.locator(".falnb-model select").select_option(label=FAST_LABEL)
    form.locator(".falnb-prompt textarea").fill(PROMPT)
    estimate = form.locator(".falnb-estimate").element_handle()
    page.wait_for_function("(el) => el.innerText.includes('$0.003 for 1 image')", arg=estimate)
    form.locator(".falnb-n input").fill(str(n))
    form.locator(".falnb-n input").press("Tab")
    page.wait_for_function(f"(el) => el.innerText.includes('for {_images(n)}')", arg=estimate)


def _generate_and_check(page: Any, form: Any, n: int) -> None:
    """Click Generate, wait for the pictures, and check the browser decoded every one of them."""
    form.get_by_role("button", name="Generate").click()
    text = wait_status(page, form, f"done · {_images(n)}", "error")
    assert text.startswith(f"flux-schnell: done · {_images(n)}"), text
    imgs = form.locator(".falnb-gallery img")
    assert imgs.count() == n
    page.wait_for_function("() => [...document.querySelectorAll('.falnb-gallery img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    sizes = imgs.evaluate_all("els => els.map(i => [i.naturalWidth, i.naturalHeight])")
    assert all(w == 512 and h == 288 for w, h in sizes), sizes  # 16:9 kept from flux-ultra


def _cancel_slow(page: Any, form: Any, prefix: str) -> None:
    """Generate on the slow model (a minute on this emulator), then Cancel while it runs."""
    form.locator(".falnb-model select").select_option(label=SLOW_LABEL)
    form.get_by_role("button", name="Generate").click()
    wait_status(page, form, "running", "queued")
    page.wait_for_timeout(300)
    shot(page, f"{prefix}-running", form)
    cancel = form.get_by_role("button", name="Cancel")
    assert cancel.is_enabled()
    cancel.click()
    text = wait_status(page, form, "cancelled", "error", timeout=20)
    # a running request may be billed: the status says so (the run's own account of each request)
    assert text.startswith("flux-ultra: cancelled · ") and "bill" in text and "nothing billed" not in text, text
    assert form.get_by_role("button", name="Generate").is_enabled() and not cancel.is_enabled()
    shot(page, f"{prefix}-cancelled", form)


def _drive_notebook7(lab: dict[str, Any], page: Any) -> None:
    started = time.monotonic()
    form = _open_form(page, f"{lab['url']}/notebooks/form-nb7.ipynb", "nb7")
    shot(page, "nb7-01-form-loaded")
    _pick_and_type(page, form, 1)
    _generate_and_check(page, form, 1)
    form.get_by_role("button", name="Show in notebook output").click()
    shown = page.locator(".jp-OutputArea-output[data-mime-type='image/jpeg'] img")
    shown.wait_for(state="visible")
    assert shown.evaluate("i => i.naturalWidth") > 0
    shot(page, "nb7-02-generated")
    _cancel_slow(page, form, "nb7-03")
    shot(page, "nb7-04-page")
    assert time.monotonic() - started < 90


def _drive_lab(lab: dict[str, Any], page: Any) -> None:
    started = time.monotonic()
    form = _open_form(page, f"{lab['url']}/lab/tree/form.ipynb", "lab")
    shot(page, "lab-01-form-loaded")
    _pick_and_type(page, form, 2)
    # the Advanced section holds the model's own parameters, defaults shown
    form.get_by_text("Advanced: model parameters").click()
    steps = form.locator(".falnb-param-num_inference_steps input")
    steps.wait_for(state="visible")
    assert steps.input_value() == "4"
    form.locator(".falnb-param-acceleration select").select_option("high")
    shot(page, "lab-02-advanced", form)
    form.get_by_text("Advanced: model parameters").click()

    # Generate: the status follows the request, then the pictures arrive
    _generate_and_check(page, form, 2)
    assert "cost: ~$0.006" in form.locator(".falnb-cost").inner_text()
    shot(page, "lab-03-generated", form)

    note("generated")
    # Show in notebook output: the picture goes into the cell's own output, and is saved with the file
    form.get_by_role("button", name="Show in notebook output").click()
    shown = page.locator(".jp-OutputArea-output[data-mime-type='image/jpeg'] img")
    shown.wait_for(state="visible")
    assert shown.evaluate("i => i.naturalWidth") > 0
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    saved = _saved_outputs(lab["root"] / "form.ipynb", PROMPT)
    assert any("image/jpeg" in o.get("data", {}) for o in saved), saved
    shot(page, "lab-04-shown-in-output")

    note("saved with the picture")
    # Copy as %%falimage cell: inserted below the form's cell
    form.get_by_role("button", name="Copy as %%falimage cell").click()
    expected = "%%falimage --model flux-schnell --size landscape_16_9 -n 2 -p acceleration=high\n" + PROMPT
    page.wait_for_function(
        "(t) => window.jupyterapp.shell.currentWidget.content.widgets"
        ".some(c => c.model.sharedModel.getSource() === t)", arg=expected)
    sources = page.evaluate("window.jupyterapp.shell.currentWidget.content.widgets"
                            ".map(c => c.model.sharedModel.getSource())")
    assert sources.index(expected) == sources.index(CELLS[2]) + 1, sources
    assert form.locator(".falnb-cell-text textarea").input_value() == expected
    assert wait_status(page, form, "inserted below", "clipboard").startswith("%%falimage cell: inserted below")
    note("cell inserted")
    # without a reachable app (a stock JupyterLab), the same button copies the cell to the clipboard
    page.evaluate("window.__falnbApp = window.jupyterapp; delete window.jupyterapp")
    form.locator(".falnb-prompt textarea").fill(PROMPT + " again")
    form.get_by_role("button", name="Copy as %%falimage cell").click()
    form.locator("[data-falnb-cell='copied']").wait_for(state="attached", timeout=10_000)
    assert page.evaluate("() => navigator.clipboard.readText()") == expected + " again"
    # (only "clipboard": the status still says "inserted below" from the click before until it changes)
    assert "copied to the clipboard" in wait_status(page, form, "clipboard")
    page.evaluate("() => { window.jupyterapp = window.__falnbApp; }")  # (returns nothing: too deep to serialize)
    shot(page, "lab-05-cell-inserted")

    note("clipboard checked")
    # History: re-open the first generation, nothing is sent
    form.locator(".falnb-prompt textarea").fill("something else")
    history = form.locator(".falnb-history select")
    assert "flux-schnell · 2 image(s) · " + PROMPT[:30] in history.inner_text().replace("\xa0", " ")
    form.get_by_role("button", name="Re-open").click()
    text = wait_status(page, form, "re-opened")
    assert text == "re-opened from the cache: 2 image(s), nothing paid", text
    assert form.locator(".falnb-prompt textarea").input_value() == PROMPT

    note("re-opened")
    _pick_pictures(page, form)
    # Cancel a slow request
    _cancel_slow(page, form, "lab-06")
    shot(page, "lab-07-page")
    assert time.monotonic() - started < 120


def _pick_pictures(page: Any, form: Any) -> None:
    """An edit model's picture picker: a file chosen in the browser reaches the kernel (the estimate stops
    asking for a picture), and the history's pictures are offered."""
    from falnb.catalog._catalog import default_catalog

    spec = default_catalog().resolve("seedream-edit")
    form.locator(".falnb-model select").select_option(label=f"{' / '.join(spec.aliases)} — {spec.title}")
    picker = form.locator(".falnb-picture-picker")
    picker.wait_for(state="visible")
    # the estimate follows the model (its widget's update may reach the page after the picker's)
    page.wait_for_function("(el) => el.innerText.includes('needs a picture')",
                           arg=form.locator(".falnb-estimate").element_handle(), timeout=10_000)
    offered = picker.locator("select").inner_text().replace("\xa0", " ")
    assert "picture 1 · flux-schnell" in offered, offered
    with page.expect_file_chooser() as chooser:  # the upload button opens the browser's file dialog
        picker.locator(".widget-upload").click()
    chooser.value.set_files(files=[{"name": "photo.png", "mimeType": "image/png", "buffer": _png()}])
    page.wait_for_function("(el) => !el.innerText.includes('needs a picture')",
                           arg=form.locator(".falnb-estimate").element_handle(), timeout=10_000)
    shot(page, "lab-06-picture-picked", form)
    note("picture picked")


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


_KERNEL = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return k ? k.id + ' ' + k.status + ' ' + k.connectionStatus : '';
}"""


def _settle_kernel(page: Any, timeout: float = 60.0) -> None:
    """Wait until the notebook's kernel is idle, connected and the same for 2 s (JupyterLab may
    replace the first kernel it starts), answering a "Select Kernel" dialog if one shows."""
    deadline = time.monotonic() + timeout
    last, since = "", time.monotonic()
    while time.monotonic() < deadline:
        select = page.locator(".jp-Dialog").get_by_role("button", name="Select")
        if select.count():
            select.click()
        state = page.evaluate(_KERNEL)
        if state != last:
            last, since = state, time.monotonic()
        elif state.endswith(" idle connected") and time.monotonic() - since > 2.0:
            return
        page.wait_for_timeout(200)
    raise AssertionError(f"the notebook's kernel did not settle: {last!r}")


def _saved_outputs(path: Path, prompt: str, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The outputs of the form's cell in the .ipynb on disk, once a picture is among them."""
    deadline = time.monotonic() + timeout
    outputs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            nb = json.loads(path.read_text())
            outputs = nb["cells"][2].get("outputs", [])
        except (OSError, ValueError, IndexError, KeyError):
            outputs = []
        if any("image/jpeg" in o.get("data", {}) for o in outputs):
            break
        time.sleep(0.2)
    return outputs
