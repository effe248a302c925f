"""``falnb quickstart``: run the quickstart notebook headless and write its pictures to files.

Without a key it runs on the embedded emulator and says so; with ``FAL_KEY`` the same cells call
fal.ai (and the cache means a second run pays nothing).  The kernel runs with
``--FalMagics.embed=full``, so every picture is an output of its own with its original bytes and its
own caption: each becomes a file, and ``index.html`` shows them at their size (at most the window's
width), each captioned.
"""

from __future__ import annotations

import argparse
import base64
import html
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
#: the text/plain of a preview grid: not a caption (the cell's caption output follows it)
_GRID = re.compile(r"\[\d+ images?: preview \d+x\d+\]")


def _find_notebook(name: str) -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        p = base / name
        if p.exists():
            return p
    raise SystemExit(f"falnb quickstart: cannot find {name} (run it from the falnb checkout)")


def _has_key() -> bool:
    env = os.environ
    return bool(env.get("FAL_KEY") or (env.get("FAL_KEY_ID") and env.get("FAL_KEY_SECRET"))
                or env.get("FAL_AI_API_KEY"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="falnb quickstart", description=__doc__)
    parser.add_argument("--notebook", default="notebooks/01-quickstart.ipynb")
    parser.add_argument("--out", default="out/quickstart", help="where the executed notebook and images go")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)

    from .request._jsonschema import import_jsonschema

    import_jsonschema()  # nbformat imports jsonschema: without rfc3987_syntax's grammar (seconds at import)
    import nbformat
    from nbclient import NotebookClient

    src = _find_notebook(args.notebook)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if os.environ.get("FALNB_OFFLINE") == "1" or not _has_key():
        os.environ["FALNB_OFFLINE"] = "1"
        os.environ.setdefault("FALNB_CACHE_DIR", str(out / "cache"))
        print("No fal key found: running on falnb's embedded fal emulator (offline; nothing is billed).")
    else:
        print("FAL_KEY found: the notebook calls fal.ai (cached requests are not paid again).")

    nb = nbformat.read(src, as_version=4)  # type: ignore[no-untyped-call]
    started = time.monotonic()
    # every picture its own output, original bytes: each becomes a file with its own caption
    NotebookClient(nb, timeout=args.timeout, kernel_name="python3", extra_arguments=["--FalMagics.embed=full"],
                   resources={"metadata": {"path": str(src.parent)}}).execute()
    executed = out / src.name
    nbformat.write(nb, executed)  # type: ignore[no-untyped-call]

    images = _write_images(nb.cells, out)
    _gallery(out / "index.html", images, src.name)
    print(f"Ran {src} in {time.monotonic() - started:.1f} s: {len(images)} image(s).")
    print(f"  executed notebook: {executed}")
    print(f"  images:            {out}/cell*.*")
    print(f"  gallery:           {out / 'index.html'}")
    return 0 if images else 1


def _text(data: dict[str, Any]) -> str:
    text = data.get("text/plain", "")
    return "".join(text) if isinstance(text, list) else str(text)


def _write_images(cells: list[Any], out: Path) -> list[tuple[Path, str]]:
    """Every image output of ``cells`` as a file, with its caption: the picture's own text, or (for a
    preview grid) the caption output that follows it."""
    images: list[tuple[Path, str]] = []
    for ci, cell in enumerate(cells):
        outputs = [o.get("data", {}) for o in cell.get("outputs", [])]
        for oi, data in enumerate(outputs):
            mime = next((m for m in _EXT if m in data), None)
            if mime is None:
                continue
            caption = _text(data)
            if _GRID.fullmatch(caption.strip()) or not caption.strip():
                after = [_text(d) for d in outputs[oi + 1:] if "text/html" in d and not any(m in d for m in _EXT)]
                caption = after[0] if after else caption
            path = out / f"cell{ci:02d}-{len(images):03d}.{_EXT[mime]}"
            path.write_bytes(base64.b64decode(data[mime]))
            images.append((path, caption))
    return images


def _gallery(path: Path, images: list[tuple[Path, str]], title: str) -> None:
    cards = "\n".join(
        f"<figure><img src='{html.escape(p.name)}' loading='lazy'>"
        f"<figcaption>{html.escape(cap)}</figcaption></figure>" for p, cap in images)
    # pictures at their own size, never wider than the window
    path.write_text(
        "<!doctype html><meta charset='utf-8'><title>falnb quickstart</title>"
        "<style>body{font-family:sans-serif;margin:16px}figure{margin:0 0 24px}"
        "img{max-width:100%;height:auto;display:block}"
        "figcaption{font-size:13px;color:#444;white-space:pre-wrap;margin-top:4px}</style>"
        f"<h1>{html.escape(title)}</h1>{cards}", encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
