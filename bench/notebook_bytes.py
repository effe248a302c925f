"""5. Notebook bytes per displayed image, default embed mode, against the raw PNG.

A 1024x1024 picture is generated with falnb (the in-process emulator, ``output_format="png"``) and
displayed the way a ``%%falimage`` cell does by default: through ``%%falimage`` itself in a fresh
``InteractiveShell`` when the magics are there (its display calls captured), else through
``falnb.results._render.render_outputs`` with the default ``DisplaySettings``.  The outputs are put in a
notebook with nbformat and written as nbformat writes it; the bytes they add to the ``.ipynb``
are compared with the picture as a PNG file (Pillow's default PNG encoding of the same pixels).

The emulator's pictures are flat shapes that PNG compresses unusually well, so the same is also done
for a photo-like picture (smooth multi-scale noise with fine grain, as photographs and generated
images have), which is the more honest case for the ratio.
"""

from __future__ import annotations

import json
from typing import Any

from . import Row, run_json

_CHILD = r"""
import io, json, os, sys
os.environ["FALNB_OFFLINE"] = "1"
from falnb.request._jsonschema import import_jsonschema
import_jsonschema()  # without rfc3987_syntax's grammar (seconds at import), as falnb does: nbformat imports it
import nbformat
from PIL import Image as PIL

import falnb
from falnb.results._image import Image as FImage

which = sys.argv[1]
side = int(sys.argv[2])

def png_bytes(img):
    buf = io.BytesIO(); img.save(buf, "PNG"); return buf.getvalue()

def photo_like(w, h, seed=7):
    import random
    rng = random.Random(seed)
    layers = []
    for ch in range(3):
        acc = None
        for cells, weight in ((4, 0.45), (16, 0.25), (64, 0.15), (256, 0.10)):
            n = PIL.effect_noise((cells, cells), 64).resize((w, h), PIL.Resampling.BICUBIC)
            acc = n if acc is None else PIL.blend(acc, n, weight / (weight + 0.5))
        layers.append(acc)
    img = PIL.merge("RGB", layers)
    grain = PIL.merge("RGB", [PIL.effect_noise((w, h), 10) for _ in range(3)])
    return PIL.blend(img, grain, 0.12)

client = falnb.Client(offline=True, cache=False)
gen = client.generate("a lighthouse at dusk, photographed from the beach", model="fal-ai/flux/schnell",
                      size=f"{side}x{side}", seed=1, output_format="png")
if which == "photo":
    pil = photo_like(side, side)
    data = png_bytes(pil)
    img = FImage(data=data, content_type="image/png", width=side, height=side)
    gen.images[0] = img
pil = gen.images[0].to_pil()
raw_png = len(png_bytes(pil))

path = None
outputs = None
settings = None
try:
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "falnb")
    magics = shell.magics_manager.registry.get("FalMagics")
    settings = magics.display_settings() if magics is not None else None
    if which == "emulator":
        captured = []  # (data, metadata, display_id): what the notebook keeps once updates are applied
        pub = shell.display_pub
        orig = pub.publish
        def publish(data, metadata=None, source=None, *, transient=None, update=False, **kw):
            did = (transient or {}).get("display_id")
            if update and did is not None:
                for i, (_, _, d) in enumerate(captured):
                    if d == did:
                        captured[i] = (dict(data), dict(metadata or {}), did)
                return
            captured.append((dict(data), dict(metadata or {}), did))
        pub.publish = publish
        try:
            shell.run_cell_magic("falimage", f"--model fal-ai/flux/schnell --size {side}x{side} --seed 1 "
                                 "--offline --no-cache -p output_format=png",
                                 "a lighthouse at dusk, photographed from the beach")
        finally:
            pub.publish = orig
        outputs = [(d, m) for d, m, _ in captured]
        path = "a %%falimage cell in an InteractiveShell (display calls captured)"
except Exception as exc:  # the magics may not be there yet
    path = f"shell path failed: {type(exc).__name__}: {exc}"
if outputs is None:
    from falnb.results._render import DisplaySettings, Entry, render_outputs
    outputs = render_outputs([Entry(gen.model, gen.prompt, gen)], settings or DisplaySettings())
    path = ("falnb.results._render.render_outputs with the magics' display settings" if settings is not None
            else f"falnb.results._render.render_outputs with DisplaySettings() ({path})")

def as_nb(outs):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("%%falimage --model schnell\na lighthouse at dusk")
    cell.outputs = [nbformat.v4.new_output("display_data", data=d, metadata=m) for d, m in outs]
    nb.cells.append(cell)
    return len(nbformat.writes(nb).encode("utf-8"))

def text_only(outs):
    return [({k: v for k, v in d.items() if not k.startswith("image/")}, m) for d, m in outs]

encoded = []
for d, m in outputs:
    d2 = {}
    for k, v in d.items():
        if k.startswith("image/") and isinstance(v, (bytes, bytearray)):
            import base64
            v = base64.b64encode(v).decode()
        d2[k] = v
    encoded.append((d2, m))
empty = as_nb([])
total = as_nb(encoded) - empty
images_only = total - (as_nb(text_only(encoded)) - empty)
mimes = sorted({k for d, _ in encoded for k in d})
falnb_count = None
try:
    from falnb.results._render import notebook_bytes
    falnb_count = notebook_bytes(encoded)
except Exception:
    pass
print(json.dumps({"raw_png": raw_png, "notebook_bytes": total, "image_output_bytes": images_only,
                  "outputs": len(encoded), "mimes": mimes, "path": path, "falnb_notebook_bytes": falnb_count,
                  "generated_bytes": len(gen.images[0].data), "generated_type": gen.images[0].content_type}))
"""


def _measure(which: str, side: int) -> dict[str, Any]:
    out: dict[str, Any] = run_json(["-c", _CHILD, which, str(side)])
    out["ratio"] = out["notebook_bytes"] / out["raw_png"]
    return out


def run(quick: bool = False) -> list[Row]:
    side = 256 if quick else 1024
    rows = []
    for which, label in (("emulator", "emulator picture"), ("photo", "photo-like picture")):
        m = _measure(which, side)
        rows.append(Row(f"5. notebook bytes / image, {side}px {label}", "B", m["notebook_bytes"], None, None,
                        ratio=m["ratio"], ratio_label=f"of raw PNG ({m['raw_png']:,} B)", target="<=0.15x raw PNG",
                        met=m["ratio"] <= 0.15,
                        notes=[f"via {m['path']}; outputs {m['outputs']} ({', '.join(m['mimes'])})"],
                        detail=m))
    return rows


if __name__ == "__main__":
    print(json.dumps([r.detail for r in run()], indent=1))
