"""What a batch keeps per request beyond the pictures (issue 15 item 5): fal's JSON compacted, no spare room.

The figure itself (falnb beside fal-client, thousands of requests) is ``bench/request_memory.py``; these
tests pin the mechanisms: generations share what every fal response repeats, and a Generation built from
fal's answer keeps less than the decoded answer alone (what fal-client keeps).
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Callable
from typing import Any

from falnb import Client
from falnb.results._generation import Generation


def test_a_batch_shares_what_every_response_repeats(serve_emulator: Callable[..., Any]) -> None:
    server = serve_emulator(latency=0.0)
    client = Client(queue_url=server.url, key="test-key", cache=False)
    try:
        gens = client.generate_many([f"a lighthouse, take {i}" for i in range(6)], model="flux-schnell",
                                    size="300x200", seed=1)
    finally:
        client.close()
    assert all(isinstance(g, Generation) for g in gens), gens
    a, b = gens[0], gens[1]
    ra, rb = a.responses[0], b.responses[0]
    assert isinstance(a, Generation) and isinstance(b, Generation)
    # the same answer as fal's JSON, key for key
    assert json.loads(json.dumps(ra)) == ra and ra["images"][0]["url"] == a.images[0].url
    assert ra["images"][0]["url"] != rb["images"][0]["url"]
    # ...with one copy of each key and repeated value, the echoed prompt being the generation's own
    for key_a, key_b in zip(sorted(ra["images"][0]), sorted(rb["images"][0]), strict=True):
        assert key_a is key_b, key_a
    assert ra["images"][0]["content_type"] is rb["images"][0]["content_type"]
    assert ra["images"][0]["width"] is rb["images"][0]["width"] and ra["images"][0]["width"] == 300
    assert ra["prompt"] is a.prompt


def _answer(i: int) -> str:
    """One of fal's answers for flux/schnell, as its queue returns it (shape from fal's docs)."""
    return json.dumps({"images": [{"url": f"https://v3.fal.media/files/lion/{i:08x}-5f2b-4c1e-9d0a-7e3b8c6f1a2d.jpg",
                                   "content_type": "image/jpeg", "file_name": f"{i:08x}.jpg", "file_size": 20000 + i,
                                   "width": 1024, "height": 1024}],
                       "seed": 1000 + i, "timings": {"inference": 0.5 + i / 1000}, "has_nsfw_concepts": [False],
                       "prompt": f"a lighthouse, take {i}"})


def _traced(make: Callable[[], list[Any]]) -> tuple[float, list[Any]]:
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    kept = make()
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - before, kept


def test_a_generation_keeps_less_than_fals_decoded_answer() -> None:
    n = 300
    answers = [_answer(i) for i in range(n)]
    prompts = [f"a lighthouse, take {i}" for i in range(n)]
    Generation(prompts[0], "fal-ai/flux/schnell", [], [], [], responses=[json.loads(answers[0])])  # warm
    tracemalloc.start()
    try:
        json_bytes, decoded = _traced(lambda: [json.loads(a) for a in answers])  # what fal-client keeps
        del decoded
        gen_bytes, gens = _traced(lambda: [Generation(p, "fal-ai/flux/schnell", [], [], [], responses=[json.loads(a)])
                                           for p, a in zip(prompts, answers, strict=True)])
    finally:
        tracemalloc.stop()
    assert gens[7].responses[0] == json.loads(answers[7])
    # measured: 0.76 (the decoded answer 1,940 B, a Generation holding it 1,476 B); 1.24 before
    assert gen_bytes / json_bytes < 0.85, (gen_bytes / n, json_bytes / n)
