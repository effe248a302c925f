"""``falnb quickstart``'s files and gallery, from executed cells (the full run is in tests/defects)."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

from PIL import Image as PIL

from falnb._quickstart import _gallery, _write_images


def _jpeg(w: int, h: int) -> str:
    buf = io.BytesIO()
    PIL.new("RGB", (w, h), (10, 120, 200)).save(buf, "JPEG")
    return base64.b64encode(buf.getvalue()).decode()


def test_every_picture_is_a_file_with_its_caption(tmp_path: Path) -> None:
    caption = {"text/plain": "“a lighthouse”\n[1-2] schnell · 2 images · 64x64 · seed 3 · ~$0.006",
               "text/html": "<div class='falnb-caption'>…</div>"}
    cells = [
        {"outputs": [{"data": {"image/jpeg": _jpeg(64, 64), "text/plain": "[1] schnell · 64x64 · seed 3 — “a”"}},
                     {"data": {"image/jpeg": _jpeg(64, 64), "text/plain": "[2] schnell · 64x64 · seed 3 — “a”"}},
                     {"data": caption}]},
        # a preview grid (a notebook that asks for one): its caption is the cell's caption that follows
        {"outputs": [{"data": {"image/jpeg": _jpeg(136, 64), "text/plain": "[2 images: preview 136x64]"}},
                     {"data": caption}]},
    ]
    images = _write_images(cells, tmp_path)
    assert [p.name for p, _ in images] == ["cell00-000.jpg", "cell00-001.jpg", "cell01-002.jpg"]
    assert [c for _, c in images][:2] == ["[1] schnell · 64x64 · seed 3 — “a”", "[2] schnell · 64x64 · seed 3 — “a”"]
    assert images[2][1] == caption["text/plain"]
    _gallery(tmp_path / "index.html", images, "mini")
    page = (tmp_path / "index.html").read_text()
    assert "max-width:100%" in page and not re.search(r"max-width:\s*\d+px", page)  # shown at their own size
    assert page.count("<figure>") == 3 and "seed 3 · ~$0.006" in page
