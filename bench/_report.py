"""Writes ``bench/RESULTS.md``: the table, the machine, how it was measured, what explains a miss."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import Row

METHOD = """\
## How it was measured

- **One emulator, real HTTP, its own process.** `falnb.emulator` is served by `bench/_emu.py` in a
  separate process, so its CPU work is not charged to the client measured. Every client runs in a
  fresh process per round; rounds alternate the clients, so drifts on this noisy 2-core machine hit
  all of them alike. Figures are medians.
- **Same input from every client:** `fal-ai/flux/schnell` with the input `{prompt, image_size, seed: 1}`
  (falnb and LiteLLM map `size` to the same preset). The prompt is the same for every request, so
  the emulator draws each picture once and then serves it from its picture cache: its drawing time
  is charged to no one. falnb runs with `cache=False` except in the cache row.
- **Pointing the peers at the emulator:** fal-client through `fal_client.client.QUEUE_URL_FORMAT`
  and `RUN_URL_FORMAT`; LiteLLM through `api_base`. LiteLLM's fal provider calls fal's
  *synchronous* endpoint, `POST {api_base}/fal-ai/flux/schnell` with the input as JSON and expects
  the model's output JSON in the answer (checked against a logging server); the emulator serves it under
  `{server}/_sync` (`EmulatorServer.sync_url`).
- **The emulator's HTTP server** answers with `TCP_NODELAY`, listens with a backlog of 512, and its
  status streams wake when a request's status can change (no polling grid): these are its defaults
  now (without them, `http.server`'s artefacts, 40 ms of Nagle delay per answer and SYNs dropped
  beyond a backlog of 5, swamped the clients' own overheads). `bench/_emu.py` still checks them.
- **Import** (row 1): `perf_counter` around the statement in a fresh interpreter, 7 runs each,
  interleaved; `LITELLM_LOCAL_MODEL_COST_MAP=True` is set so `import litellm` reads its bundled price
  list instead of trying to download one (which it does at import otherwise). `%load_ext falnb` runs
  in a fresh `InteractiveShell` (made before the clock starts) and includes importing falnb.
- **Overhead** (row 2) = wall time - the emulator's generation time (0.25 s). fal-client and LiteLLM
  return fal's JSON with an image URL, falnb returns the image bytes; the second line makes the
  peers download the bytes too. "floor" is a minimal raw-httpx client (submit, status stream,
  result, image GET): what any client pays to this emulator.
- **Batch** (row 3): ideal = ceil(64/16) x 0.5 s = 2 s. The emulator's own schedule (when each wave
  of 16 started) shows whether a client kept all 16 runners busy.
- **Cache** (row 4): `bench/cache_hit.py` (the cache engineer's script, run as is): a 4-image
  `generate` served from the cache vs reading the 4 files and building the same `Image` objects.
  The peers have no image cache: their columns are the same cell uncached (0-latency emulator,
  bytes fetched).
- **Notebook bytes** (row 5): a real `%%falimage --offline` cell in an `InteractiveShell`, its display
  calls captured (updates applied as a notebook would), written with `nbformat.writes`; the bytes it
  adds to the `.ipynb` vs the same pixels as a PNG file (Pillow's default PNG). Also a photo-like
  picture (multi-scale noise with grain) through the same display code, because the emulator's
  flat shapes compress unusually well as PNG.
- **Memory** (row 6): `ru_maxrss` in a fresh process after import + client + one warm-up ("ready"),
  and after a 64-prompt x `n=4` batch of 1024x1024 pictures ("peak"). excess = peak - ready - image
  bytes held. The 1 x 4 run shows the excess does not grow with the batch.
"""


def _fmt_detail(d: dict[str, Any]) -> str:
    return json.dumps(d, indent=1, default=str)


def write_results(path: Path, rows: list[Row], info: dict[str, str], *, quick: bool, took: dict[str, float],
                  table: str) -> None:
    from .analysis import ANALYSIS

    lines = ["# falnb benchmarks: side by side with fal-client and LiteLLM", "",
             "Regenerate with `python -m bench` (about 2 minutes on this machine; `python -m bench --quick` "
             "checks that everything runs, in under a minute, and leaves this file alone).", ""]
    if quick:
        lines += ["**Quick run: tiny sizes, one run each; the figures below mean nothing.**", ""]
    lines += ["## Machine", "",
              f"{info['date']}; {info['nproc']} CPUs ({info['cpu']}); Python {info['python']} on "
              f"{info['platform']}; falnb {info['falnb']}, fal-client {info['fal-client']}, litellm "
              f"{info['litellm']}, httpx {info['httpx']}.", "",
              "## Results", "", table, ""]
    notes = [(r.name, n) for r in rows for n in r.notes if n]
    if notes:
        lines += ["Notes:", ""] + [f"- {name}: {note}" for name, note in notes] + [""]
    lines += [ANALYSIS.strip(), "", METHOD.strip(), "", "## Raw figures", ""]
    for r in rows:
        if r.detail:
            lines += [f"<details><summary>{r.name}</summary>", "", "```json", _fmt_detail(r.detail), "```", "",
                      "</details>", ""]
    lines += ["Time per measurement: " + ", ".join(f"{k} {v:.0f} s" for k, v in took.items()), ""]
    path.write_text("\n".join(lines))
