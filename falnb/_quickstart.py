"""``falnb quickstart``: run the quickstart notebook headless and write its pictures to files.

Without a key it runs on the embedded emulator and says so; with ``FAL_KEY`` the same cells call
fal.ai (and the cache means a second run pays nothing).
"""

from __future__ import annotations

import argparse
import base64
import html
import os
import sys
import time
from pathlib import Path

__all__ = ["main"]

_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


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
    NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(src.parent)}}).execute()
    executed = out / src.name
    nbformat.write(nb, executed)  # type: ignore[no-untyped-call]

    images: list[tuple[Path, str]] = []
    for ci, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            for mime, ext in _EXT.items():
                if mime in data:
                    path = out / f"cell{ci:02d}-{len(images):03d}.{ext}"
                    path.write_bytes(base64.b64decode(data[mime]))
                    images.append((path, str(data.get("text/plain", ""))))
                    break
    _gallery(out / "index.html", images, src.name)
    print(f"Ran {src} in {time.monotonic() - started:.1f} s: {len(images)} image(s).")
    print(f"  executed notebook: {executed}")
    print(f"  images:            {out}/cell*.*")
    print(f"  gallery:           {out / 'index.html'}")
    return 0 if images else 1


def _gallery(path: Path, images: list[tuple[Path, str]], title: str) -> None:
    cards = "\n".join(
        f"<figure><img src='{html.escape(p.name)}' loading='lazy'><figcaption>{html.escape(cap)}</figcaption></figure>"
        for p, cap in images)
    path.write_text(
        "<!doctype html><meta charset='utf-8'><title>falnb quickstart</title>"
        "<style>body{font-family:sans-serif}figure{display:inline-block;margin:6px;max-width:320px}"
        "img{max-width:320px;max-height:320px}figcaption{font-size:12px;color:#555}</style>"
        f"<h1>{html.escape(title)}</h1>{cards}", encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
