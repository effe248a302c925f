"""Against the real fal.ai: runs only with FAL_KEY set and FALNB_LIVE_TESTS=1 (it costs about $0.003)."""

from __future__ import annotations

import os

import pytest

import falnb

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not (os.environ.get("FAL_KEY") and os.environ.get("FALNB_LIVE_TESTS") == "1"),
                       reason="needs FAL_KEY and FALNB_LIVE_TESTS=1 (talks to the real fal.ai, costs money)"),
]


def test_one_small_image_from_fal(tmp_path: object) -> None:
    client = falnb.Client(cache=str(tmp_path))
    gen = client.generate("a small red square on white", model="fal-ai/flux/schnell", size="512x512", seed=1)
    assert len(gen.images) == 1 and gen.images[0].width == 512 and not gen.cached
    again = client.generate("a small red square on white", model="fal-ai/flux/schnell", size="512x512", seed=1)
    assert again.cached and again.images[0].data == gen.images[0].data
