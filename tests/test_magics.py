"""The notebook magics driven through a real IPython InteractiveShell against the emulator.

Covers every %%falimage option, the FalMagics config traits, interpolation, the cache on re-run,
output mimebundles and captions, live progress, interrupt and cancel, %falconfig, %falform, and a
corpus of bad inputs that must each give a short error and submit nothing.
"""

from __future__ import annotations

import base64
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from PIL import Image as PIL

import falnb
from falnb import Client
from falnb.emulator import Emulator
from falnb.notebook._magics import FalMagics, magics_of

from ._cells import run
from .defects._helpers import interrupt_main

# -- harness --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    sh = InteractiveShell.instance()
    sh.colors = "nocolor"
    sh.run_line_magic("load_ext", "falnb")
    yield sh


@pytest.fixture
def emu() -> Emulator:
    return Emulator(latency=0.0, concurrency=8)


@pytest.fixture
def magics(shell: InteractiveShell, emu: Emulator, tmp_path: Path) -> Iterator[FalMagics]:
    m = magics_of(shell)
    for name in m.trait_names(config=True):
        setattr(m, name, m.trait_defaults(name))
    m.client = Client(offline=True, emulator=emu, cache=tmp_path / "cache")
    shell.user_ns.update(place="dusk", count=3, prompts=["a red fox", "a snowy owl"], notalist=5,
                         a_string="abc", empty=[], mixed=["a fox", 3], blanks=["a fox", "  "],
                         undecodable=b"a fox \xff".decode("utf-8", "surrogateescape"))
    yield m
    m.client = None
    for name in m.trait_names(config=True):
        setattr(m, name, m.trait_defaults(name))


def sent(emu: Emulator) -> list[dict[str, Any]]:
    return [dict(j.input) for j in emu.requests()]


def decode(bundle: dict[str, Any]) -> tuple[str, PIL.Image]:
    mime = next(k for k in bundle if k.startswith("image/"))
    img = PIL.open(io.BytesIO(base64.b64decode(bundle[mime])))
    return mime, img


# -- loading ----------------------------------------------------------------------------------------


def test_load_ext_is_cheap() -> None:
    code = ("import sys, time\n"
            "from IPython.core.interactiveshell import InteractiveShell\n"
            "sh = InteractiveShell.instance()\n"
            "t = time.perf_counter(); sh.run_line_magic('load_ext', 'falnb'); t = time.perf_counter() - t\n"
            "heavy = [m for m in ('httpx', 'PIL', 'falnb._client', 'falnb.cache._store', 'ipywidgets',"
            " 'falnb.emulator') if m in sys.modules]\n"
            "print(heavy, 'falimage' in sh.magics_manager.magics['cell'], round(t * 1000, 1))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = proc.stdout.strip()
    heavy, registered, ms = out.rsplit(" ", 2)
    assert heavy.startswith("[]") and registered == "True", out
    print(f"%load_ext falnb: {ms} ms")


def test_help_lists_every_option() -> None:
    doc = FalMagics.falimage.__doc__ or ""
    for opt in ("--model", "--size", "-n", "--seed", "--param", "--refresh", "--no-cache", "--out", "--embed",
                "--timeout", "--batch", "--offline"):
        assert opt in doc, opt


def test_help_shows_the_usage_of_each_form(shell: InteractiveShell, magics: FalMagics) -> None:
    """``%%falimage?``: a plain "Usage:" block (no reStructuredText ``::``) naming ``%%falimage`` and the
    one-line ``%falimage``; ``%falform?`` likewise."""
    text = run(shell, "%%falimage?\n").text
    lines = [line.strip() for line in text.splitlines()]
    assert "::" not in lines and "Usage:" in lines, lines[:8]
    usage = lines[lines.index("Usage:") + 1]
    assert usage.startswith("%%falimage [-m MODEL[,MODEL...]]"), usage
    assert "%falimage [options] PROMPT    (the one-line form)" in lines
    form_help = [line.strip() for line in run(shell, "%falform?").text.splitlines()]
    assert "::" not in form_help and form_help[form_help.index("Usage:") + 1].startswith("%falform [-m MODEL]")


def test_errors_follow_the_shells_colors(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-line error is red where the shell uses colours, plain under ``--colors=NoColor`` or NO_COLOR."""
    err = falnb.UnknownModelError("unknown model 'x'")
    assert err._render_traceback_()[0] == "UnknownModelError: unknown model 'x'"  # the fixture's nocolor
    shell.colors = "neutral"
    try:
        assert err._render_traceback_()[0] == "\x1b[31mUnknownModelError\x1b[0m: unknown model 'x'"
        monkeypatch.setenv("NO_COLOR", "1")
        assert err._render_traceback_()[0] == "UnknownModelError: unknown model 'x'"
    finally:
        shell.colors = "nocolor"


def test_unload_and_reload(shell: InteractiveShell) -> None:
    shell.run_line_magic("unload_ext", "falnb")
    assert "falimage" not in shell.magics_manager.magics["cell"]
    assert not any(isinstance(c, FalMagics) for c in shell.configurables)
    shell.config.FalMagics.preview_size = 300  # as ipython_config.py would set it
    try:
        shell.run_line_magic("load_ext", "falnb")
        assert magics_of(shell).preview_size == 300
    finally:
        del shell.config.FalMagics["preview_size"]
    tables = shell.magics_manager.magics
    assert "falimage" in tables["cell"] and "falconfig" in tables["line"] and "falform" in tables["line"]
    assert isinstance(magics_of(shell), FalMagics)


# -- a cell, its outputs and its caption ------------------------------------------------------------


def test_cell_outputs_preview_grid_and_caption(shell: InteractiveShell, magics: FalMagics,
                                               emu: Emulator) -> None:
    cell = run(shell, "%%falimage -m schnell -n 2 --seed 3 --out g\na <b>lighthouse</b> & {place}\n")
    assert cell.ok, cell.text
    g = shell.user_ns["g"]
    assert isinstance(g, falnb.Generation) and len(g.images) == 2 and g.prompt == "a <b>lighthouse</b> & dusk"
    assert sent(emu)[-1]["prompt"] == "a <b>lighthouse</b> & dusk" and sent(emu)[-1]["num_images"] == 2
    images = cell.images()
    assert len(images) == 1  # one compact grid
    mime, sheet = decode(images[0])
    assert mime == "image/jpeg" and sheet.format == "JPEG"
    assert sheet.size[0] > sheet.size[1] and max(sheet.size) <= 2 * 512 + 4  # two tiles side by side
    assert images[0]["text/plain"].startswith("[2 images: preview")
    [caption] = cell.captions()
    plain, markup = caption["text/plain"], caption["text/html"]
    assert "“a <b>lighthouse</b> & dusk”" in plain
    assert "[1-2] schnell · 2 images · 1024x768 · seeds 3-4 · ~$0.006" in plain or "seed 3" in plain
    assert "&lt;b&gt;lighthouse&lt;/b&gt; &amp; dusk" in markup and "<b>" not in markup
    for out in cell.notebook:  # never base64 inside HTML
        html = out.get("text/html", "")
        assert "<img" not in html and "data:" not in html and "base64" not in html


def test_single_image_is_a_plain_capped_preview(shell: InteractiveShell, magics: FalMagics) -> None:
    cell = run(shell, "%falimage -m schnell -s 1536x1024 a tall ship")
    assert cell.ok, cell.text
    [img] = cell.images()
    _, pic = decode(img)
    assert pic.size == (512, 341)
    assert "schnell · 1536x1024" in cell.captions()[0]["text/plain"]


def test_line_magic_keeps_the_prompt_verbatim(shell: InteractiveShell, magics: FalMagics,
                                              emu: Emulator) -> None:
    cell = run(shell, """%falimage -m schnell --seed 1 a cat's "hat" costs $5 -- really, 100% #1""")
    assert cell.ok, cell.text
    assert sent(emu)[-1]["prompt"] == """a cat's "hat" costs $5 -- really, 100% #1"""
    cell = run(shell, "%falimage -m schnell -- -a prompt that starts with a dash")
    assert cell.ok, cell.text
    assert sent(emu)[-1]["prompt"] == "-a prompt that starts with a dash"
    cell = run(shell, "%falimage -mschnell -n2 --seed=5 --size=512x512 compact forms")
    assert cell.ok, cell.text
    assert sent(emu)[-1]["num_images"] == 2 and sent(emu)[-1]["seed"] == 5


def test_interpolation(shell: InteractiveShell, magics: FalMagics, emu: Emulator) -> None:
    shell.user_ns.update(style={"name": "ukiyo-e"}, n_boats=3, obj=type("O", (), {"colour": "teal"})())
    cell = run(shell, "%%falimage -m schnell\n{n_boats:02d} boats, {style[name]} style, {obj.colour} sea, "
                      "{{literal}} braces, $HOME stays\n")
    assert cell.ok, cell.text
    assert sent(emu)[-1]["prompt"] == "03 boats, ukiyo-e style, teal sea, {literal} braces, $HOME stays"


def test_every_option_reaches_the_request(shell: InteractiveShell, magics: FalMagics, emu: Emulator) -> None:
    cell = run(shell, "%falimage -m schnell -s 16:9 -n 3 --seed 7 -p guidance_scale=2.5 -p acceleration=high "
                      "-p enable_safety_checker=false -p 'custom_knob=two words' --allow-unknown --out r a harbour")
    assert cell.ok, cell.text
    body = sent(emu)[-1]
    assert body["image_size"] == "landscape_16_9" and body["num_images"] == 3 and body["seed"] == 7
    assert body["guidance_scale"] == 2.5 and body["acceleration"] == "high"
    assert body["enable_safety_checker"] is False and body["custom_knob"] == "two words"
    assert len(shell.user_ns["r"].images) == 3
    # a JSON value that parses is JSON: a list, a number
    cell = run(shell, """%falimage -m ideogram -p 'style_codes=["AB12CD34"]' -p rendering_speed=TURBO sign""")
    assert cell.ok, cell.text
    assert sent(emu)[-1]["style_codes"] == ["AB12CD34"] and sent(emu)[-1]["rendering_speed"] == "TURBO"


def test_cache_hit_on_rerun_bills_nothing(shell: InteractiveShell, magics: FalMagics, emu: Emulator) -> None:
    src = "%%falimage -m schnell -n 2 --seed 11 --out g\na quiet harbour at {place}\n"
    first = run(shell, src)
    assert first.ok and emu.ledger.requests == 1
    again = run(shell, src)
    assert again.ok, again.text
    assert emu.ledger.requests == 1 and emu.ledger.submits == 1  # no new bill, nothing sent
    g = shell.user_ns["g"]
    assert g.cached and g.saved == pytest.approx(0.006)
    caption = again.captions()[0]["text/plain"]
    assert "cached — saved ~$0.006" in caption
    assert not [o for o in again.notebook if "running" in o.get("text/plain", "")]
    # the same pictures come back
    assert first.images()[0]["image/jpeg"] == again.images()[0]["image/jpeg"]


def test_refresh_pays_again_and_no_cache_skips_it(shell: InteractiveShell, magics: FalMagics,
                                                  emu: Emulator) -> None:
    src = "%falimage -m schnell --seed 2 {flag} a lantern"
    assert run(shell, src.format(flag="")).ok and emu.ledger.requests == 1
    cell = run(shell, src.format(flag="--refresh --out r"))
    assert cell.ok and emu.ledger.requests == 2 and not shell.user_ns["r"].cached
    assert run(shell, src.format(flag="")).ok and emu.ledger.requests == 2  # the refreshed entry serves
    assert run(shell, src.format(flag="--no-cache")).ok and emu.ledger.requests == 3
    assert run(shell, src.format(flag="--no-cache")).ok and emu.ledger.requests == 4


def test_embed_full_puts_the_original_bytes(shell: InteractiveShell, magics: FalMagics) -> None:
    cell = run(shell, "%falimage -m schnell -n 2 -p output_format=png --embed full --out g a kite")
    assert cell.ok, cell.text
    g = shell.user_ns["g"]
    images = cell.images()
    assert len(images) == 2
    assert [base64.b64decode(o["image/png"]) for o in images] == [img.data for img in g.images]
    assert images[0]["text/plain"].startswith("[1] schnell · 1024x768 · seed ")  # the picture's own caption
    assert "“a kite” (image/png, " in images[0]["text/plain"]


def test_embed_none_is_text_only(shell: InteractiveShell, magics: FalMagics) -> None:
    cell = run(shell, "%falimage -m schnell --embed none a kite")
    assert cell.ok and cell.images() == []
    plain = cell.captions()[0]["text/plain"]
    assert "schnell · 1024x768" in plain and "--embed none" in plain


def test_timeout_option(shell: InteractiveShell, magics: FalMagics, emu: Emulator) -> None:
    emu.configure(latency=5.0)
    t0 = time.monotonic()
    cell = run(shell, "%falimage -m schnell --timeout 0.3 a slow one")
    assert not cell.ok and isinstance(cell.error, falnb.RequestTimeoutError)
    assert time.monotonic() - t0 < 3 and len(cell.error_lines) <= 3 and "Traceback" not in cell.text


def test_offline_option_uses_the_emulator(shell: InteractiveShell, magics: FalMagics, tmp_path: Path) -> None:
    from falnb.emulator import shared_emulator

    magics.client = None
    magics.cache_dir = str(tmp_path / "c2")  # an online client (no key) plus --offline for the cell
    before = shared_emulator().ledger.submits
    cell = run(shell, "%falimage --offline -m schnell --out g offline please")
    assert cell.ok, cell.text
    assert shared_emulator().ledger.submits == before + 1
    cell = run(shell, "%falimage -m schnell online without a key")
    assert not cell.ok and isinstance(cell.error, falnb.MissingKeyError)
    assert "%env FAL_KEY=" in cell.text and len(cell.error_lines) == 2


def test_batch(shell: InteractiveShell, magics: FalMagics, emu: Emulator) -> None:
    cell = run(shell, "%falimage --batch prompts -m schnell --seed 1 --out b")
    assert cell.ok, cell.text
    assert [s["prompt"] for s in sent(emu)] == ["a red fox", "a snowy owl"]
    out = shell.user_ns["b"]
    assert isinstance(out, list) and [g.prompt for g in out] == ["a red fox", "a snowy owl"]
    caption = cell.captions()[0]["text/plain"]
    assert "[1] schnell" in caption and "— prompt 1: “a red fox”" in caption and "[2] schnell" in caption
    assert type(out).__name__ == "Batch" and out.pages() == 1 and "2 prompts" in repr(out)
    # a template: {item} is the list element, other names come from the notebook
    cell = run(shell, "%%falimage --batch prompts -m schnell --out b\na woodcut of {item} at {place}\n")
    assert cell.ok, cell.text
    assert [s["prompt"] for s in sent(emu)[-2:]] == ["a woodcut of a red fox at dusk",
                                                     "a woodcut of a snowy owl at dusk"]
    # batch x models: a list of {model: Generation}
    cell = run(shell, "%falimage --batch prompts -m schnell,imagen4 --out b")
    assert cell.ok, cell.text
    assert [sorted(row) for row in shell.user_ns["b"]] == [["imagen4", "schnell"]] * 2



def test_a_batch_template_without_item_is_refused(shell: InteractiveShell, magics: FalMagics, emu: Emulator) -> None:
    """A body that never uses ``{item}`` would ask every prompt of the list for one same picture (the list's
    contents ignored): one line saying so, nothing sent.  ``{item[0]}``, ``{item!r}`` and ``{item.upper}``
    use it; ``{{item}}`` is literal text."""
    for body in ("a woodcut at {place}", "a woodcut {{item}}"):
        cell = run(shell, f"%%falimage --batch prompts -m schnell\n{body}\n")
        assert cell.text.startswith("UsageError: ") and "{item}" in cell.text, cell.text
        assert len(cell.error_lines) == 1 and emu.ledger.submits == 0, cell.text
    cell = run(shell, "%%falimage --batch prompts -m schnell --seed 1\n{item!r}, {item[2]}, {item.upper}\n")
    assert cell.ok, cell.text
    assert [s["prompt"].split(", <")[0] for s in sent(emu)] == ["'a red fox', r", "'a snowy owl', s"]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _waves(emu: Emulator, clock: _Clock, sizes: list[int]) -> tuple[threading.Thread, list[int]]:
    """A thread that lets the frozen emulator clock move once per expected wave: it waits until the emulator
    holds ``size`` unfinished requests (at most 30 s), notes how many it holds, then moves the clock so they
    all finish.  What it noted tells how many requests the client had in flight at once."""
    seen: list[int] = []

    def unfinished() -> int:
        return sum(1 for j in emu.requests() if emu.status_of(j.request_id) != "COMPLETED")

    def run() -> None:
        for size in sizes:
            deadline = time.monotonic() + 30
            while unfinished() < size and time.monotonic() < deadline:
                time.sleep(0.005)
            seen.append(unfinished())
            clock.now += 10

    thread = threading.Thread(target=run)
    thread.start()
    return thread, seen


def test_batch_concurrency(shell: InteractiveShell, magics: FalMagics, tmp_path: Path) -> None:
    """batch_concurrency=6: six prompts in flight at once; batch_concurrency=1: one at a time.  Forced with
    a frozen emulator clock (no timing: the figures are ``python -m bench``'s)."""
    clock = _Clock()
    emu = Emulator(latency=0.3, concurrency=8, clock=clock)
    magics.client = Client(offline=True, emulator=emu, cache=tmp_path / "c")
    shell.user_ns["six"] = [f"lighthouse {i}" for i in range(6)]
    magics.batch_concurrency = 6
    thread, seen = _waves(emu, clock, [6])
    try:
        assert run(shell, "%falimage --batch six -m schnell").ok
    finally:
        thread.join()
    assert seen == [6]
    magics.batch_concurrency = 1
    shell.user_ns["six"] = [f"harbour {i}" for i in range(6)]
    thread, seen = _waves(emu, clock, [1] * 6)
    try:
        assert run(shell, "%falimage --batch six -m schnell").ok
    finally:
        thread.join()
    assert seen == [1] * 6 and emu.ledger.requests == 12


def _tiles_in_caption(cell: Any) -> list[str]:
    return [line for line in cell.captions()[-1]["text/plain"].splitlines() if line.startswith("[")]


def test_a_large_batch_shows_a_page_and_the_rest_on_demand(shell: InteractiveShell, magics: FalMagics,
                                                           emu: Emulator) -> None:
    """60 prompts: the cell shows page 1 (24 pictures, whole prompts) and says how to see the others; the
    --out object shows any page; a cell's output does not grow with the batch (issue 15, issue 11 #3)."""
    shell.user_ns["many"] = [f"a lighthouse, take {i}" for i in range(60)]
    shell.user_ns["few"] = [f"a lighthouse, take {i}" for i in range(24)]
    src = "%falimage --batch {var} -m schnell -s 256x256 --seed 1 --out res"
    cell = run(shell, src.format(var="many"))
    assert cell.ok, cell.text
    res = shell.user_ns["res"]
    assert len(res) == 60 and res.pages() == 3 and emu.ledger.requests == 60
    assert len(cell.images()) == 1 and len(_tiles_in_caption(cell)) == 24
    caption = cell.captions()[-1]["text/plain"]
    assert "page 1 of 3: prompts 1-24 of 60 · the others: res.show(page=2)" in caption, caption
    assert "total ~$0.18" in caption  # the whole batch's, not the page's
    page3 = run(shell, "res.show(page=3)")
    assert page3.ok and len(page3.images()) == 1
    lines = _tiles_in_caption(page3)
    assert len(lines) == 12 and "prompt 49: “a lighthouse, take 48”" in lines[0], lines[:2]
    assert "page 3 of 3: prompts 49-60 of 60 · the others: res.show(page=1)" in page3.captions()[-1]["text/plain"]
    nope = run(shell, "res.show(page=4)")
    assert isinstance(nope.error, falnb.InputError) and "pages are 1 to 3" in nope.text and len(nope.error_lines) == 1
    # the notebook holds one page whatever the batch's size (the first 24 prompts alone: the same page)
    few = run(shell, src.format(var="few"))
    assert few.ok and emu.ledger.requests == 60
    from falnb.results._render import notebook_bytes

    many_bytes = notebook_bytes([(o, {}) for o in cell.notebook])
    few_bytes = notebook_bytes([(o, {}) for o in few.notebook])
    assert many_bytes < few_bytes * 1.1, (many_bytes, few_bytes)


def test_a_batch_without_out_says_how_to_keep_it(shell: InteractiveShell, magics: FalMagics) -> None:
    shell.user_ns["many"] = [f"an owl, take {i}" for i in range(30)]
    magics.page_size = 8
    cell = run(shell, "%falimage --batch many -m schnell -s 256x256 --seed 1")
    assert cell.ok, cell.text
    note = cell.captions()[-1]["text/plain"].splitlines()[-1]
    assert note.startswith("page 1 of 4: prompts 1-8 of 30 · to see the others, keep the results with --out NAME")


def test_drawing_never_loses_the_results(shell: InteractiveShell, magics: FalMagics,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """--out is set before anything is drawn, and a failure to draw is a note, not a failed cell."""
    from falnb.results import _render

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("broken data stream when writing image file")

    monkeypatch.setattr(_render, "render_outputs", broken)
    shell.user_ns.pop("kept", None)
    cell = run(shell, "%falimage --batch prompts -m schnell --seed 1 --out kept")
    assert cell.ok, cell.text
    assert [g.prompt for g in shell.user_ns["kept"]] == ["a red fox", "a snowy owl"]
    assert any("could not draw the pictures (OSError: broken data stream" in o.get("text/plain", "")
               and "the results are kept in kept" in o.get("text/plain", "") for o in cell.notebook), cell.notebook


def test_a_picture_pillow_cannot_read_is_an_empty_tile() -> None:
    from falnb.results._generation import Generation
    from falnb.results._image import Image
    from falnb.results._render import DisplaySettings, Entry, render_outputs

    good = Image(data=_png(64, 64), content_type="image/png", width=64, height=64)
    bad = Image(data=b"\x89PNG not really", content_type="image/png", width=64, height=64)
    gen = Generation(prompt="p", model="m", images=[good, bad], inputs=[], request_ids=["r"], cost=0.0)
    outputs = render_outputs([Entry("m", "p", gen)], DisplaySettings())
    _, sheet = decode(outputs[0][0])
    assert sheet.size[0] > 64  # two tiles, the second one empty and labelled
    alone = render_outputs([Entry("m", "p", Generation(prompt="p", model="m", images=[bad], inputs=[],
                                                       request_ids=["r"]))], DisplaySettings(grid_columns=0))
    assert "cannot be decoded" in alone[0][0]["text/plain"]


def test_a_sheet_never_outgrows_its_bounds() -> None:
    """Many rows of tiles shrink to fit MAX_SHEET_SIDE: no JPEG limit, no memory blow-up, whatever the cell."""
    from falnb.results._generation import Generation
    from falnb.results._image import Image
    from falnb.results._preview import MAX_SHEET_SIDE
    from falnb.results._render import DisplaySettings, Entry, render_outputs

    img = Image(data=_png(512, 512), content_type="image/png", width=512, height=512)
    entries = [Entry(f"model-{m}", "p", Generation(prompt="p", model=f"m{m}", images=[img] * 64, inputs=[],
                                                   request_ids=["r"])) for m in range(3)]
    outputs = render_outputs(entries, DisplaySettings())  # 64 rows of 3 models
    _, sheet = decode(outputs[0][0])
    assert max(sheet.size) <= MAX_SHEET_SIDE, sheet.size


# -- comparing models -------------------------------------------------------------------------------


def test_compare_models_side_by_side(shell: InteractiveShell, magics: FalMagics, emu: Emulator) -> None:
    cell = run(shell, "%falimage -m schnell,flux-ultra,bria,recraft -s 1536x1024 --seed 4 --out cmp a fjord")
    assert cell.ok, cell.text
    bodies = {b.get("aspect_ratio") or str(b.get("image_size")): b for b in sent(emu)}
    # each model gets the size in its own terms
    assert "{'width': 1536, 'height': 1024}" in bodies  # schnell and recraft: exact pixels
    assert "3:2" in bodies  # ultra and bria: the nearest ratio of the same orientation
    cmp = shell.user_ns["cmp"]
    assert list(cmp) == ["schnell", "flux-ultra", "bria", "recraft"]
    assert all(isinstance(g, falnb.Generation) for g in cmp.values())
    [grid] = cell.images()
    _, sheet = decode(grid)
    assert sheet.size[0] > 3 * sheet.size[1]  # four columns, one row
    caption = cell.captions()[0]["text/plain"].splitlines()
    assert [line.split(" · ")[0] for line in caption[1:5]] == ["schnell", "flux-ultra", "bria", "recraft"]
    assert caption[-1].startswith("total ~$")


def test_compare_runs_concurrently(shell: InteractiveShell, magics: FalMagics, tmp_path: Path) -> None:
    """The three models run at once, not one after another: the emulator's clock stands still (no request
    can finish) until it holds all three submits, and only then moves.  Sequential runs would submit one
    and wait for it (the watcher then gives up, bounded, and notes 1).  No wall-clock bound: the time a
    comparison takes is a figure of ``python -m bench``."""
    clock = _Clock()
    emu = Emulator(latency=0.5, concurrency=8, clock=clock)
    magics.client = Client(offline=True, emulator=emu, cache=tmp_path / "c")
    thread, seen = _waves(emu, clock, [3])
    try:
        cell = run(shell, "%falimage -m schnell,imagen4,ideogram a bell")
    finally:
        thread.join()
    assert seen == [3], f"only {seen} of 3 submits were in flight before the first could finish"
    assert cell.ok and len(cell.images()) == 1, cell.text
    assert emu.ledger.requests == 3


def test_compare_with_one_failure_shows_the_rest(shell: InteractiveShell, magics: FalMagics,
                                                 emu: Emulator) -> None:
    # (imagen4 is down at fal, schnell works: no timing involved, the failure is the model's, every time)
    emu.configure(latency=0.0, infra_error_models=["fal-ai/imagen4/preview"])
    cell = run(shell, "%falimage -m schnell,imagen4 --out cmp a mill")
    assert not cell.ok and isinstance(cell.error, falnb.FalnbError)
    assert isinstance(shell.user_ns["cmp"]["schnell"], falnb.Generation)
    assert len(cell.images()) == 1
    assert f"imagen4: {type(cell.error).__name__}" in cell.captions()[0]["text/plain"]
    assert {j.model_id for j in emu.requests()} == {"fal-ai/flux/schnell", "fal-ai/imagen4/preview"}


# -- configuration -----------------------------------------------------------------------------------


def test_config_through_percent_config(shell: InteractiveShell, magics: FalMagics, emu: Emulator) -> None:
    assert run(shell, "%config FalMagics.default_model = 'flux-ultra'").ok
    assert run(shell, "%config FalMagics.default_size = '9:16'").ok
    cell = run(shell, "%falimage a portrait")
    assert cell.ok, cell.text
    assert emu.requests()[-1].model_id == "fal-ai/flux-pro/v1.1-ultra"
    assert sent(emu)[-1]["aspect_ratio"] == "9:16"
    run(shell, "%config FalMagics.preview_quality = 500")  # refused by the trait's validation
    assert magics.preview_quality == 80


def test_config_display_traits(shell: InteractiveShell, magics: FalMagics) -> None:
    magics.preview_size = 200
    magics.preview_format = "webp"
    cell = run(shell, "%falimage -m schnell one")
    mime, pic = decode(cell.images()[0])
    assert mime == "image/webp" and max(pic.size) == 200
    magics.preview_format = "png"
    magics.grid_columns = 0
    cell = run(shell, "%falimage -m schnell -n 3 three")
    assert [decode(o)[0] for o in cell.images()] == ["image/png"] * 3  # each its own output
    magics.preview_format = "jpeg"
    magics.grid_columns = 2
    cell = run(shell, "%falimage -m schnell -n 4 four")
    _, sheet = decode(cell.images()[0])
    assert sheet.size[0] < 2 * 200 + 10 and sheet.size[1] > 2 * 150  # two by two
    sizes = {}
    for q in (20, 90):
        magics.preview_quality = q
        cell = run(shell, "%falimage -m schnell --seed 1 quality")
        sizes[q] = len(cell.images()[0]["image/jpeg"])
    assert sizes[20] < sizes[90]
    magics.embed = "none"
    assert run(shell, "%falimage -m schnell quality").images() == []
    magics.embed = "preview"
    magics.show_progress = False
    magics.timeout = 0.2
    magics.client.emulator.configure(latency=3.0)  # type: ignore[union-attr]
    cell = run(shell, "%falimage -m schnell slow")
    assert isinstance(cell.error, falnb.RequestTimeoutError)
    assert cell.notebook == []  # no progress output at all


def test_config_client_traits(shell: InteractiveShell, magics: FalMagics, tmp_path: Path) -> None:
    from falnb.emulator import shared_emulator

    magics.client = None
    magics.offline = True
    magics.cache_dir = str(tmp_path / "cfg-cache")
    client = magics.client
    assert client.offline and client.cache is not None
    before = shared_emulator().ledger.submits
    assert run(shell, "%falimage -m schnell --seed 9 cache dir trait").ok
    assert shared_emulator().ledger.submits == before + 1
    assert (tmp_path / "cfg-cache").exists()
    assert run(shell, "%falimage -m schnell --seed 9 cache dir trait").ok
    assert shared_emulator().ledger.submits == before + 1  # served from that cache
    magics.offline = False
    assert not magics.client.offline  # rebuilt when a client trait changes


def test_short_errors_switch(shell: InteractiveShell, magics: FalMagics) -> None:
    short = run(shell, "%falimage -p guidance_scale=100 a cat")
    assert len(short.error_lines) == 2 and "Traceback" not in short.text
    magics.short_errors = False
    full = run(shell, "%falimage -p guidance_scale=100 a cat")
    assert isinstance(full.error, falnb.ParameterError)
    assert len(full.error_lines) > 5 and "ParameterError" in full.text


def test_falconfig_shows_settings_key_source_and_mode(shell: InteractiveShell, magics: FalMagics,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cell = run(shell, "%falconfig")
    assert cell.ok
    for name in magics.trait_names(config=True):
        assert name in cell.stdout
    assert "OFFLINE" in cell.stdout and "not needed offline" in cell.stdout
    monkeypatch.setenv("FAL_KEY", "sk-very-secret-123")
    magics.client = Client(queue_url="http://127.0.0.1:9", cache=False)
    cell = run(shell, "%falconfig")
    assert "key: from FAL_KEY" in cell.stdout and "sk-very-secret-123" not in cell.stdout
    assert "mode: online — http://127.0.0.1:9" in cell.stdout and "cache: off" in cell.stdout
    monkeypatch.delenv("FAL_KEY")
    cell = run(shell, "%falconfig")
    assert "key: none found" in cell.stdout and "%env FAL_KEY=" in cell.stdout
    cell = run(shell, "%falconfig default_model=flux-ultra preview_size=256 timeout=None")
    assert cell.ok and magics.default_model == "flux-ultra" and magics.preview_size == 256
    assert magics.timeout is None and "fal-ai/flux-pro/v1.1-ultra" in cell.stdout


def test_falform(shell: InteractiveShell, magics: FalMagics, monkeypatch: pytest.MonkeyPatch) -> None:
    import falnb.notebook._form

    seen: dict[str, Any] = {}

    def fake_form(model: str | None = None, *, client: Any = None, **defaults: Any) -> str:
        seen.update(model=model, client=client, **defaults)
        return "<a form>"

    monkeypatch.setattr(falnb.notebook._form, "form", fake_form)
    cell = run(shell, "%falform -m flux-ultra -s 16:9 -n 2 --seed 5 -p raw=true --out f a lake at {place}")
    assert cell.ok, cell.text
    assert seen == {"model": "flux-ultra", "client": magics.client, "size": "16:9", "n": 2, "seed": 5,
                    "raw": True, "prompt": "a lake at dusk"}
    assert shell.user_ns["f"] == "<a form>" and cell.notebook == [{"text/plain": "'<a form>'"}]
    monkeypatch.undo()
    cell = run(shell, "%falform --out f")  # the real form
    assert cell.ok, cell.text
    assert type(shell.user_ns["f"]).__name__ == "FalForm"


# -- progress, interrupt, cancel ----------------------------------------------------------------------


def test_live_progress_updates_in_place(shell: InteractiveShell, magics: FalMagics, emu: Emulator) -> None:
    emu.configure(latency=0.6, concurrency=1)
    client = magics.client
    busy = threading.Thread(target=client.generate, args=("keeps the queue busy",),
                            kwargs={"model": "schnell"})
    busy.start()
    time.sleep(0.05)
    cell = run(shell, "%falimage -m schnell --seed 1 waits in the queue")
    busy.join()
    assert cell.ok, cell.text
    first = cell.outputs[0]
    display_id = first.transient["display_id"]
    updates = [o for o in cell.outputs if o.update and o.transient.get("display_id") == display_id]
    texts = [first.data["text/plain"]] + [o.data.get("text/plain", "") for o in updates]
    assert any("queued (position 0)" in t for t in texts), texts
    assert any("running: Step" in t for t in texts), texts
    assert len(updates) >= 4
    assert re.search(r"· \d+\.\d s$", texts[0])  # elapsed time
    # the progress output is replaced by the pictures
    assert "image/jpeg" in updates[-1].data
    assert not any("running" in o.get("text/plain", "") for o in cell.notebook)


def test_progress_text_and_terminal_mode() -> None:
    from falnb.notebook._progress_view import ProgressView, progress_text
    from falnb.results._progress import Progress

    items = [(f"[{i}] p{i}", Progress("queued" if i % 2 else "running", "m", 1, queue_position=i,
                                      log="Step 2/8", elapsed=1.0)) for i in range(12)]
    text, key = progress_text(items, 3.25)
    assert text.startswith("12 jobs: 6 running, 6 queued · 3.2 s") and "latest log: Step 2/8" in text
    assert key == "12 jobs: 6 running, 6 queued"  # no times: a change of key is a change of state
    text, key = progress_text(items[:2], 1.0)
    assert text.splitlines() == ["[0] p0: running: Step 2/8 · 1.0 s", "[1] p1: queued (position 1) · 1.0 s"]
    assert key.splitlines() == ["[0] p0: running: Step 2/8", "[1] p1: queued (position 1)"]
    shown: list[str] = []

    class Handle:
        def update(self, bundle: dict[str, str], **kw: Any) -> None:
            shown.append(bundle["text/plain"])

    now = [0.0]
    view = ProgressView(live=False, clock=lambda: now[0])
    view._handle = Handle()  # a terminal: only changes of state are printed, not every elapsed tick
    for t in range(10):
        now[0] = t
        view.show(f"running · {t}.0 s", "running")
    view.show("done · 10.0 s", "done")
    assert shown == ["running · 0.0 s", "done · 10.0 s"]
    live = ProgressView(live=True, interval=0.25, clock=lambda: now[0])
    live._handle = Handle()
    shown.clear()
    for t in range(4):
        now[0] = t * 0.1
        live.show(f"running · {t / 10:.1f} s", "running")
    assert shown == ["running · 0.0 s", "running · 0.3 s"]  # throttled to one update per 0.25 s


def test_interrupt_by_sigint_cancels_and_bills_nothing(shell: InteractiveShell, magics: FalMagics,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from falnb.notebook import _progress_view as _display

    clock = _Clock()  # frozen: the request runs until interrupted
    emu = Emulator(latency=10.0, concurrency=1, clock=clock)
    magics.client = Client(offline=True, emulator=emu, cache=tmp_path / "c")
    shown = threading.Event()
    real_show = _display.ProgressView.show

    def show(self: Any, text: str, key: str) -> None:
        real_show(self, text, key)
        if emu.requests():
            shown.set()  # the cell shows fal working on its request

    monkeypatch.setattr(_display.ProgressView, "show", show)

    def interrupt_once_fal_runs_it() -> None:  # an event, not a timer
        if shown.wait(30):
            interrupt_main()

    threading.Thread(target=interrupt_once_fal_runs_it, daemon=True).start()
    cell = run(shell, "%falimage -m schnell -n 2 never finishes")
    assert isinstance(cell.error, falnb.Interrupted) and isinstance(cell.error, KeyboardInterrupt)
    assert cell.text.startswith("Interrupted: ") and "Interrupted: interrupted" not in cell.text
    assert "cancel" in cell.text and len(cell.error_lines) <= 3
    [job] = emu.requests()
    assert job.stopped == "cancelled" and emu.ledger.submits == 1
    clock.now += 60
    assert emu.ledger.requests == 0  # billed nothing
    assert any("interrupted after" in o.get("text/plain", "") for o in cell.notebook)


def test_interrupt_cancels_every_model(shell: InteractiveShell, magics: FalMagics, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from falnb.notebook import _progress_view as _display

    clock = _Clock()
    emu = Emulator(latency=10.0, concurrency=1, clock=clock)
    magics.client = Client(offline=True, emulator=emu, cache=tmp_path / "c")
    calls = [0]
    real_show = _display.ProgressView.show

    def show(self: Any, text: str, key: str) -> None:
        real_show(self, text, key)
        calls[0] += 1
        if calls[0] >= 3 and emu.ledger.submits == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(_display.ProgressView, "show", show)
    cell = run(shell, "%falimage -m schnell,imagen4,ideogram all three")
    assert isinstance(cell.error, falnb.Interrupted)
    assert [j.stopped for j in emu.requests()] == ["cancelled"] * 3  # running and queued ones alike
    clock.now += 60
    assert emu.ledger.requests == 0
    # the cache holds nothing from it: a re-run submits again
    monkeypatch.undo()
    emu.configure(latency=0.0)
    clock.now += 1
    assert run(shell, "%falimage -m schnell all three").ok and emu.ledger.submits == 4


def test_fal_errors_are_short(shell: InteractiveShell, magics: FalMagics, emu: Emulator) -> None:
    cell = run(shell, "%falimage -m schnell a forbidden-content picture")
    assert isinstance(cell.error, falnb.ContentPolicyError)
    assert 1 <= len(cell.error_lines) <= 2 and "Traceback" not in cell.text


# -- the bad-input corpus: a short error, nothing submitted -----------------------------------------


BAD_INPUTS = [
    "%falimage -m",
    "%falimage --seed",
    "%falimage --model",
    "%falimage -n 0 a cat",
    "%falimage -n abc a cat",
    "%falimage -n 65 a cat",
    "%falimage -n -2 a cat",
    "%falimage --seed x a cat",
    "%falimage --seed -1 a cat",
    "%falimage --seed 99999999999 a cat",
    "%falimage --seed 1.5 a cat",
    "%falimage -s 12 a cat",
    "%falimage -s 0x0 a cat",
    "%falimage -s 20000x100 a cat",
    "%falimage -s 16:0 a cat",
    "%falimage -s huge a cat",
    "%falimage -m seedream -s 4096x4096 a cat",
    "%falimage -m flux-ultr a cat",
    "%falimage -m 'no such model' a cat",
    "%falimage -m schnell,,ultra a cat",
    "%falimage -m , a cat",
    "%falimage -m schnell,schnell a cat",
    "%falimage -m schnell,nope a cat",
    "%falimage -p foo a cat",
    "%falimage -p =3 a cat",
    "%falimage -p guidance_scale=abc a cat",
    "%falimage -p guidance_scale=100 a cat",
    "%falimage -p acceleration=turbo a cat",
    "%falimage -p num_inference_stepz=4 a cat",
    "%falimage -p num_inference_steps=1.5 a cat",
    "%falimage -p enable_safety_checker=maybe a cat",
    "%falimage -p prompt=other a cat",
    "%falimage -p seed=1 -p seed=2 a cat",
    "%falimage -p seed=5 a cat",
    "%falimage --seed 3 -p seed=5 a cat",
    "%falimage -p n=2 a cat",
    "%falimage -p size=512x512 a cat",
    "%falimage -p model=bria a cat",
    "%falimage -p catalog=1 a cat",
    "%falimage -p guidance_scale=NaN a cat",
    "%falimage -p guidance_scale=1e999 a cat",
    "%falform -p seed=5",
    "%falimage -m ultra -p aspect_ratio=7:3 a cat",
    "%falimage -p image_size=huge a cat",
    "%falimage -m bria -p num_inference_steps=5 a cat",
    "%falimage -n 2 -p num_images=3 a cat",
    "%falimage -p 'negative_prompt=unclosed a cat",
    "%falimage --embed huge a cat",
    "%falimage --timeout -1 a cat",
    "%falimage --timeout abc a cat",
    "%falimage --timeout 0 a cat",
    "%falimage --out 1abc a cat",
    "%falimage --out class a cat",
    "%falimage --unknown-flag a cat",
    "%falimage -m schnell",
    "%falimage",
    "%%falimage -m schnell\n",
    "%%falimage -m schnell\n   \n\t\n",
    "%%falimage -m schnell extra words\na cat",
    "%%falimage\na cat in {missing_name}",
    "%%falimage\na { brace",
    "%%falimage\na } brace",
    "%%falimage\nan empty {} field",
    "%%falimage\na positional {0} field",
    "%%falimage\n{count.nope}",
    "%%falimage\n{place!z}",
    "%%falimage\na picture of {undecodable}",  # a lone surrogate: no UnicodeEncodeError
    "%falimage --batch missing_list",
    "%falimage --batch notalist",
    "%falimage --batch a_string",
    "%falimage --batch empty",
    "%falimage --batch mixed",
    "%falimage --batch blanks",
    "%falimage --batch 1bad",
    "%%falimage --batch prompts\na {item} in {missing_name}",
    "%falimage --batch prompts -p guidance_scale=100",
    "%falimage --batch prompts -m schnell,nope",
    "%falform -m nope",
    "%falform -p guidance_scale",
    "%falconfig nosuch=1",
    "%falconfig preview_size=5",
    "%falconfig embed=huge",
    "%falconfig default_model=",
    "%falconfig preview_sise=300",
]


@pytest.mark.parametrize(("param", "option"), [("seed=5", "--seed"), ("n=2", "-n"), ("size=1:1", "--size"),
                                               ("model=bria", "--model"), ("prompt=a dog", "cell body")])
def test_a_param_with_an_option_of_its_own_names_the_option(shell: InteractiveShell, magics: FalMagics,
                                                            emu: Emulator, param: str, option: str) -> None:
    """``-p seed=5`` would give the seed twice (a TypeError once): one line naming ``--seed``, nothing sent."""
    cell = run(shell, f"%falimage -m schnell -p '{param}' a cat")
    assert cell.text.startswith("UsageError: ") and option in cell.text and len(cell.error_lines) == 1, cell.text
    assert emu.ledger.submits == 0


def test_a_param_value_that_is_not_json_is_text(shell: InteractiveShell, magics: FalMagics, emu: Emulator) -> None:
    """NaN and Infinity are not JSON: read as text (fal gets a string), never a raw Python error."""
    cell = run(shell, "%falimage -m fal-ai/brand-new/model -p style=NaN -p mood=Infinity -p steps=4 a cat")
    assert cell.ok, cell.text
    assert {k: sent(emu)[0][k] for k in ("style", "mood", "steps")} == {"style": "NaN", "mood": "Infinity", "steps": 4}


def test_bad_input_corpus_is_large_enough() -> None:
    assert len(BAD_INPUTS) >= 40


@pytest.mark.parametrize("source", BAD_INPUTS)
def test_bad_input_short_error_nothing_sent(shell: InteractiveShell, magics: FalMagics, emu: Emulator,
                                            source: str) -> None:
    before = emu.ledger.submits
    cell = run(shell, source)
    assert not cell.ok, f"{source!r} succeeded"
    assert 1 <= len(cell.error_lines) <= 2, cell.text
    assert "Traceback" not in cell.text and "File " not in cell.text, cell.text
    assert isinstance(cell.error, falnb.FalnbError) or cell.text.startswith("UsageError: "), cell.text
    assert emu.ledger.submits == before and cell.images() == []


def test_missing_key_is_short_and_sends_nothing(shell: InteractiveShell, magics: FalMagics) -> None:
    magics.client = Client(queue_url="http://127.0.0.1:9", cache=False)
    cell = run(shell, "%falimage -m schnell a cat")
    assert isinstance(cell.error, falnb.MissingKeyError)
    assert len(cell.error_lines) == 2 and "%env FAL_KEY=" in cell.text and "Traceback" not in cell.text


def test_budget_refuses_the_whole_cell_before_sending(shell: InteractiveShell, magics: FalMagics,
                                                      emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = magics.client.cache
    assert cache is not None
    spent = cache.ledger.session().paid  # the session is the whole test process
    monkeypatch.setenv("FALNB_BUDGET_SESSION", f"{spent + 0.001:.6f}")
    cell = run(shell, "%falimage -m schnell a cat")
    assert isinstance(cell.error, falnb.BudgetExceededError) and len(cell.error_lines) == 2
    # schnell alone fits, the comparison does not
    monkeypatch.setenv("FALNB_BUDGET_SESSION", f"{spent + 0.05:.6f}")
    cell = run(shell, "%falimage -m schnell,flux-ultra a cat")
    assert isinstance(cell.error, falnb.BudgetExceededError)
    assert "these 2 requests" in cell.text and len(cell.error_lines) == 2
    assert emu.ledger.submits == 0
    assert run(shell, "%falimage -m schnell a cat").ok and emu.ledger.submits == 1


# -- notebook size: default previews against embedding the raw PNG -----------------------------------


def _photo_like(seed: int, size: int = 1024) -> bytes:
    """A stand-in for a generated photograph: smooth structure plus fine texture (grain)."""
    from PIL import ImageFilter

    from falnb.emulator._images import render

    data = render("fal-ai/flux/schnell", "a lighthouse", seed, 0, size, size, "png")
    base = PIL.open(io.BytesIO(data)).convert("RGB")
    base = base.filter(ImageFilter.GaussianBlur(6))
    noise = PIL.effect_noise((size, size), 28).convert("RGB")
    buf = io.BytesIO()
    PIL.blend(base, noise, 0.18).save(buf, "PNG")
    return buf.getvalue()


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    PIL.new("RGB", (w, h), (200, 120, 40)).save(buf, "PNG")
    return buf.getvalue()


def test_notebook_bytes_per_image(shell: InteractiveShell, magics: FalMagics) -> None:
    from falnb.results._generation import Generation
    from falnb.results._image import Image
    from falnb.results._render import DisplaySettings, Entry, notebook_bytes, render_outputs

    # 1. end to end on the emulator: 4 PNG pictures of 1024x1024 in one cell
    src = "%falimage -m schnell -n 4 -s 1024x1024 -p output_format=png --seed 5 {embed} a harbour at dawn"
    default = run(shell, src.format(embed=""))
    raw = run(shell, src.format(embed="--embed full"))
    assert default.ok and raw.ok
    per_default = notebook_bytes([(o, {}) for o in default.notebook]) / 4
    per_raw = notebook_bytes([(o, {}) for o in raw.notebook]) / 4
    emu_ratio = per_default / per_raw

    # 2. the same path with photograph-like pictures (what fal returns; ~1.5 MB per 1024x1024 PNG)
    images = [Image(data=_photo_like(i), content_type="image/png", width=1024, height=1024) for i in range(4)]
    gen = Generation(prompt="a harbour at dawn", model="fal-ai/flux/schnell", images=images, inputs=[],
                     request_ids=["r"], seed=5, cost=0.012)
    entries = [Entry("schnell", gen.prompt, gen)]
    photo_default = notebook_bytes(render_outputs(entries, DisplaySettings())) / 4
    photo_raw = notebook_bytes(render_outputs(entries, DisplaySettings(embed="full"))) / 4
    photo_ratio = photo_default / photo_raw

    print(f"\nnotebook bytes per image, default preview vs raw PNG: "
          f"photo-like {photo_default:,.0f} / {photo_raw:,.0f} = {photo_ratio:.3f}; "
          f"emulator's grainy synthetic pictures {per_default:,.0f} / {per_raw:,.0f} = {emu_ratio:.3f}")
    assert photo_ratio <= 0.15
    assert emu_ratio <= 0.15  # the emulator's pictures carry film grain, so PNG sizes are photo-like


# -- Generation's own rich display uses the same outputs --------------------------------------------------


def test_generation_display_matches_the_magic(shell: InteractiveShell, magics: FalMagics) -> None:
    magics.preview_size = 128  # the magics' display settings apply to a displayed Generation too
    magics_cell = run(shell, "%falimage -m schnell -n 2 --seed 8 --out g two")
    cell = run(shell, "g")
    assert cell.ok
    assert cell.images() == magics_cell.images()
    _, sheet = decode(cell.images()[0])
    assert sheet.size[1] < 128 + 30
    [caption] = cell.captions()
    assert caption["text/plain"].splitlines()[1].startswith("[1-2] fal-ai/flux/schnell · 2 images · 1024x768")


@pytest.fixture(autouse=True)
def _no_stray_sigint() -> Iterator[None]:
    yield
    assert signal.getsignal(signal.SIGINT) is not None
    os.environ.pop("FALNB_TRACEBACKS", None)


def test_a_size_field_mistakes_advice_is_a_cells_own_and_works(shell: InteractiveShell, magics: FalMagics,
                                                                emu: Emulator) -> None:
    cell = run(shell, "%falimage -m schnell -p aspect_ratio=16:9 a cat")
    assert not cell.ok and "--size" in cell.text and "--allow-unknown" in cell.text, cell.text
    assert "size=" not in cell.text and "allow_unknown" not in cell.text, cell.text
    assert run(shell, "%falimage -m schnell --size 16:9 a cat").ok  # the advice, followed
    assert run(shell, "%falimage -m schnell --allow-unknown -p aspect_ratio=16:9 a cat").ok
