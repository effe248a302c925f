"""The notebooks under ``notebooks/`` are saved executed, small, and honest about their errors.

nbval (``pytest --nbval-lax notebooks/``) runs them; these checks keep what is committed readable on
GitHub and cheap to clone: every code cell has been run, the only errors are the marked demonstrations,
outputs are small previews (no widget state, no full-size pictures), and each notebook says how it runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
MAX_BYTES = 600_000
BANNER = "no FAL_KEY: running on falnb's embedded fal emulator — nothing is billed"


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def test_the_notebooks_exist() -> None:
    names = [p.name for p in PATHS]
    assert names == ["01-quickstart.ipynb", "02-model-tour.ipynb", "03-widgets.ipynb",
                     "04-caching-and-spend.ipynb", "05-batch.ipynb", "06-testing-offline.ipynb",
                     "07-python-and-async.ipynb", "08-litellm-proxy.ipynb",
                     "09-edit-and-chain.ipynb"]


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_saved_executed_small_and_honest(path: Path) -> None:
    nb = _load(path)
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size:,} bytes: embed smaller previews"
    assert "widgets" not in nb.get("metadata", {}), "widget state is saved: execute with store_widget_state=False"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("execution_count") for c in code), "every code cell must be saved executed"
    first = "".join(o.get("text", "") if isinstance(o.get("text"), str) else "".join(o.get("text", []))
                    for o in code[0].get("outputs", []))
    assert BANNER in first, "the first cell must say, visibly, that it runs on the emulator"
    for cell in code:
        src = _source(cell)
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            assert "NBVAL_RAISES_EXCEPTION" in src or "raises-exception" in cell.get("metadata", {}).get("tags", []), \
                f"unexpected error saved in {path.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            html = "".join(data.get("text/html", ""))
            # pictures go in image mimebundles; only the edit panel holds them in HTML (inputs beside the
            # result, a CSS checkerboard behind transparency), as bounded previews
            assert "base64," not in html or ("falnb-edit" in html and len(html) < 500_000), \
                "an image inside HTML: emit image mimebundles"
            for mime in ("image/png", "image/jpeg", "image/webp"):
                assert len(str(data.get(mime, ""))) < 500_000, f"a full-size picture in {path.name}"
        if src.lstrip().startswith("%%falimage"):
            assert "NBVAL" not in src, "a %%falimage body is the prompt: use cell tags, not comment markers"


def test_signatures_quoted_in_the_notebooks_are_the_real_ones() -> None:
    """A markdown cell quoting ``falnb.Client(key=None, ..., max_concurrency=16)`` states the defaults people
    rely on: each one named must be the real default (it said 16 where the Client has 64)."""
    import ast
    import inspect

    import falnb

    quoted = 0
    for path in PATHS:
        for cell in _load(path)["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            for line in _source(cell).splitlines():
                if not line.startswith("falnb.Client("):
                    continue
                fn = ast.parse(f"def f{line[len('falnb.Client'):]}: pass").body[0]
                assert isinstance(fn, ast.FunctionDef)
                args = fn.args
                named = [*zip(args.args[len(args.args) - len(args.defaults):], args.defaults, strict=True),
                         *((a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None)]
                real = inspect.signature(falnb.Client).parameters
                for arg, default in named:
                    quoted += 1
                    assert ast.literal_eval(default) == real[arg.arg].default, f"{path.name}: {arg.arg}"
    assert quoted
