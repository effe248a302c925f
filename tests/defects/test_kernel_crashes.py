"""Issue 11, defects 1-3: what kills the kernel or crashes with a raw traceback.

Each test reproduces one defect against the independent fal stand-in (``falstandin.py``) and is
``xfail(strict=True)`` until the fix lands; the fixer removes the marker.
"""

from __future__ import annotations

import json
import textwrap
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import falnb

from ._helpers import python, run
from .falstandin import FalStandIn

# -- 1. random seeds and seed_text's list(range(lo, hi)) ---------------------------------------------------

_BOUNDED_REPR = textwrap.dedent("""
    import json, resource, tempfile
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from falstandin import FalStandIn

    # fal picks a random seed for each request without one: n=10 on flux-ultra is 3 requests
    standin = FalStandIn(seeds=[12, 2_000_000_000, 1_234_567_890])
    client = standin.client(tempfile.mkdtemp())
    gen = client.generate("a lighthouse", model="flux-ultra", n=10)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "falnb")
    shell.user_ns["gen"] = gen
    # from here on at most 400 MB more address space: a kernel would have died instead
    vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + 400 * 2**20, resource.RLIM_INFINITY))
    out = {}
    for what, fn in (("repr", lambda: repr(gen)), ("caption", gen.caption)):
        try:
            out[what] = fn()
        except MemoryError:
            out[what] = "MemoryError"
    with capture_output() as cap:
        res = shell.run_cell("gen", store_history=False)
    # IPython's display formatter catches an error of _ipython_display_ and prints its traceback
    failed = res.error_in_exec is not None or "Traceback" in cap.stdout or "Error" in cap.stdout
    out["display"] = "failed: " + cap.stdout[-300:] if failed else "ok"
    out["display_mimes"] = sorted({m for o in cap.outputs for m in o.data})
    print("RESULT " + json.dumps(out))
""")


def test_defect_01_random_seeds_repr_and_display_stay_small() -> None:
    """Seeds 12 and 2,000,000,000 in one Generation: repr, caption and display must be short and
    cheap.  Today seed_text builds list(range(12, 2e9)): under a 400 MB address-space limit that is
    a MemoryError (without the limit, tens of GB and a dead kernel)."""
    proc = python(_BOUNDED_REPR, timeout=60)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, proc.stderr[-2000:]
    out = json.loads(line[7:])
    assert out["repr"] != "MemoryError" and out["caption"] != "MemoryError", out
    assert out["display"] == "ok", out
    assert "image/jpeg" in out["display_mimes"] and "text/html" in out["display_mimes"], out
    assert len(out["repr"]) < 400 and len(out["caption"]) < 300, out
    assert "12" in out["caption"] and "2000000000" in out["caption"].replace(",", ""), out


def test_defect_01_seed_text_is_not_linear_in_the_seed_range(tmp_path: Path) -> None:
    """The same with a small spread (400,000), measured: building the caption must not allocate
    memory proportional to the distance between the seeds."""
    standin = FalStandIn(seeds=[5, 400_005, 77])
    client = standin.client(tmp_path / "c")
    gen = client.generate("a lighthouse", model="flux-ultra", n=10)
    client.close()
    assert sorted({img.seed for img in gen.images}) == [5, 77, 400_005]
    tracemalloc.start()
    try:
        text = repr(gen) + gen.caption() + gen._repr_html_()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"building the caption took {peak:,} bytes for 3 seeds"
    assert len(text) < 1500


# -- 2. -p seed=5, and the form's "other inputs" ---------------------------------------------------------


def _short_or_sent_seed(cell: Any, standin: FalStandIn) -> None:
    """Either the cell worked and fal got seed 5, or a short falnb/usage error and nothing was sent."""
    assert not isinstance(cell.error, TypeError), cell.text[-600:]
    assert "Traceback" not in cell.text, cell.text[-600:]
    if cell.ok:
        assert [r.input.get("seed") for r in standin.requests] == [5]
    else:
        assert len(cell.error_lines) <= 3 and standin.submits == 0, cell.text


def test_defect_02_magic_param_seed_is_not_a_typeerror(shell: InteractiveShell, magics: Any,
                                                       standin: FalStandIn) -> None:
    cell = run(shell, "%falimage -m schnell -p seed=5 a cat on a wall")
    _short_or_sent_seed(cell, standin)


@pytest.mark.parametrize("extra", ['{"seed": 5}', '{"n": 2}', '{"size": "512x512"}', '{"prompt": "a dog"}',
                                   '{"model": "bria"}'])
def test_defect_02_form_other_inputs_own_names(client: Any, standin: FalStandIn, extra: str) -> None:
    """Typing a name the form has its own control for into "other inputs", then Generate: a readable
    status line (or the value used), never a TypeError out of the widget callbacks."""
    f = falnb.form("schnell", client=client, prompt="a cat on a wall")
    f.extra_box.value = extra  # today: TypeError from the estimate observer, right here
    assert "TypeError" not in f.estimate_label.value
    f.generate_button.click()
    if f.job is not None:
        f.wait(15)
    assert "TypeError" not in f.status and f.status != "ready", f.status
    if extra == '{"seed": 5}' and standin.submits:
        assert [r.input.get("seed") for r in standin.requests] == [5]


# -- 3. the preview sheet of a large comparison ------------------------------------------------------------


def test_defect_03_large_batch_comparison_is_shown(shell: InteractiveShell, magics: Any,
                                                   standin: FalStandIn) -> None:
    """40 prompts on two models with -n 4 (the issue's second recipe; 120 prompts without -n is the
    same sheet): every request is paid, then the preview sheet (160 rows of 512 px) exceeds the
    65,500-pixel limit of Pillow's encoders and the cell crashes; ``--out`` is never set, and the
    re-run from the cache crashes the same way.  Expected: the pictures are shown, ``--out`` is set."""
    shell.user_ns["P"] = [f"a lighthouse, variation {i}" for i in range(40)]
    src = "%falimage --batch P -m schnell,seedream -s 512x512 -n 4 --out res"
    shell.user_ns.pop("res", None)
    cell = run(shell, src)
    assert standin.billed == 80
    assert cell.ok, (type(cell.error).__name__, str(cell.error)[:300])
    assert len(shell.user_ns["res"]) == 40 and cell.images()
    again = run(shell, src)  # from the cache: nothing paid, and it must show too
    assert again.ok, (type(again.error).__name__, str(again.error)[:300])
    assert standin.billed == 80
