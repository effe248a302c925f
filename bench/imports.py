"""1. Import time: ``import falnb`` and ``%load_ext falnb`` against ``import fal_client`` and ``import litellm``.

Each figure is the median of several fresh interpreters (perf_counter around the statement only;
the interpreter's own start-up is the same for all and left out).  The four are interleaved run by
run.  ``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set, so LiteLLM reads its bundled price list instead
of trying to download one at import (which would add network time, or a timeout offline).
``%load_ext falnb`` runs in a fresh ``InteractiveShell`` (created before the clock starts) and
includes importing falnb.
"""

from __future__ import annotations

import subprocess

from . import PY, ROOT, Row, bench_env, have, median, ratio, run_json

#: the snippets that import a peer, and the peer's name for ``have``
PEERS = {"fal_client": "fal-client", "litellm": "litellm"}

SNIPPETS = {
    "falnb": "import falnb",
    "load_ext": None,
    "fal_client": "import fal_client",
    "litellm": "import litellm",
}

_PLAIN = """
import json, time
t = time.perf_counter()
{stmt}
print(json.dumps(time.perf_counter() - t))
"""

_LOAD_EXT = """
import json, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
t = time.perf_counter()
shell.run_line_magic("load_ext", "falnb")
dt = time.perf_counter() - t
assert "falimage" in shell.magics_manager.magics["cell"], "falnb registered no %%falimage"
print(json.dumps(dt))
"""

_NEW_MODULES = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
before = set(sys.modules)
shell.run_line_magic("load_ext", "falnb")
new = sorted({m.split(".")[0] for m in set(sys.modules) - before})
print(json.dumps(new))
"""


def _script(name: str) -> str:
    stmt = SNIPPETS[name]
    return _LOAD_EXT if stmt is None else _PLAIN.format(stmt=stmt)


def time_once(name: str) -> float:
    return float(run_json(["-c", _script(name)]))


def top_imports(stmt: str, n: int = 8) -> list[tuple[str, int]]:
    """The modules with the largest cumulative import time (``-X importtime``), in microseconds."""
    proc = subprocess.run([PY, "-X", "importtime", "-c", stmt], env=bench_env(), cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        parts = line.split("|")
        try:
            rows.append((parts[2].rstrip(), int(parts[1])))
        except (IndexError, ValueError):
            continue
    # only top-level entries are meaningful cumulatively; keep the largest few
    return sorted(rows, key=lambda r: -r[1])[:n]


def _available(name: str) -> str | None:
    """None when the statement runs; else why not (e.g. the magics are not there yet)."""
    try:
        time_once(name)  # also compiles .pyc files and warms the disk cache: not timed
    except RuntimeError as exc:
        return str(exc).strip().splitlines()[-1][:200]
    return None


def run(quick: bool = False) -> list[Row]:
    runs = 1 if quick else 7
    missing = {n: why for n in SNIPPETS
               if (why := "left out" if n in PEERS and not have(PEERS[n]) else _available(n)) is not None}
    names = [n for n in SNIPPETS if n not in missing]
    samples: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(runs):
        for name in names:
            samples[name].append(time_once(name))
    med: dict[str, float | None] = {n: median(samples[n]) * 1000 if n in samples else None for n in SNIPPETS}
    rows = []
    for label, key in (("import falnb", "falnb"), ("%load_ext falnb", "load_ext")):
        r_lite = ratio(med[key], med["litellm"])
        r_fal = ratio(med[key], med["fal_client"])
        met = None if r_lite is None or r_fal is None else (r_lite <= 0.1 and r_fal <= 1.0)
        row = Row(f"1. {label}", "ms", med[key], med["fal_client"], med["litellm"], ratio=r_lite,
                  ratio_label=f"of LiteLLM, {r_fal:.2g}x of fal-client" if r_fal is not None else "of LiteLLM",
                  target="<=0.1x LiteLLM, <=1x fal-client", met=met,
                  detail={"runs": runs, "samples_ms": {n: [round(x * 1000, 2) for x in v] for n, v in samples.items()}})
        if key in missing:
            row.notes.append(f"could not run: {missing[key]}")
        rows.append(row)
    if not quick:
        rows[0].detail["importtime_falnb_us"] = top_imports("import falnb")
        if "load_ext" not in missing:
            rows[1].detail["modules_loaded_by_load_ext"] = run_json(["-c", _NEW_MODULES])
    return rows
