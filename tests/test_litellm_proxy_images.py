"""falnb through a real LiteLLM proxy's OpenAI images route (``/v1/images/generations``), and ``auto``'s fallback.

Same session proxy as tests/test_litellm_proxy.py; its deployments' ``api_base`` is the emulator's sync port.
LiteLLM's own mapping would turn a portrait 900x1200 into 16:9 on flux-ultra and drop ``n`` for Bria:
falnb sends fal's exact fields instead, so the shapes and counts below are falnb's, not LiteLLM's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from falnb import AuthenticationError, FalError, UnknownModelError

from .test_litellm_proxy import SEED_ALIASES, Counting, client, short


@pytest.mark.parametrize("alias", SEED_ALIASES)
def test_seed_aliases_through_the_images_route(litellm_proxy: Any, tmp_path: Path, alias: str) -> None:
    with client(litellm_proxy, tmp_path, route="images") as c:
        fal_id = c.proxy_models()[alias]
        gen = c.generate("a red fox", model=alias, seed=3)
        proxy_said = c.cache.ledger.proxy_reported() if c.cache else None
    assert gen.model == fal_id and len(gen.images) == 1 and gen.images[0].data
    assert "no cancel, no re-attach" in gen.caption()
    billed = litellm_proxy.emulator.ledger.entries
    assert [e.model for e in billed] == [fal_id]
    # LiteLLM's own estimate, kept beside falnb's
    assert proxy_said is not None and proxy_said > 0


@pytest.mark.parametrize("alias", ["flux-ultra", "stable-diffusion"])
@pytest.mark.parametrize("size", ["900x1200", "1792x1024"])
def test_sizes_keep_their_shape_through_the_images_route(litellm_proxy: Any, tmp_path: Path, alias: str,
                                                         size: str) -> None:
    w, h = map(int, size.split("x"))
    with client(litellm_proxy, tmp_path, route="images") as c:
        img = c.generate("a red fox", model=alias, size=size).images[0]
    assert (img.width > img.height) == (w > h)
    assert abs(img.width / img.height - w / h) < 0.05, (img.width, img.height)


def test_n_above_the_limit_and_bria_through_the_images_route(litellm_proxy: Any, tmp_path: Path) -> None:
    with client(litellm_proxy, tmp_path, route="images") as c:
        assert len(c.generate("a red fox", model="flux-ultra", n=5).images) == 5
        assert sorted(e.images for e in litellm_proxy.emulator.ledger.entries) == [1, 4]
        litellm_proxy.emulator.reset()
        assert len(c.generate("a red fox", model="bria", n=2).images) == 2  # LiteLLM alone drops n for Bria
        assert len(litellm_proxy.emulator.ledger.entries) == 2


def test_rerun_through_the_images_route_never_reaches_the_proxy(litellm_proxy: Any, tmp_path: Path) -> None:
    counted = Counting()
    with client(litellm_proxy, tmp_path, route="images", transport=counted) as c:
        first = c.generate("a red fox", model="stable-diffusion", size="900x1200")
        sent = len(counted.requests)
        again = c.generate("a red fox", model="stable-diffusion", size="900x1200")
    assert len(counted.requests) == sent and again.cached and not first.cached
    assert len(litellm_proxy.emulator.ledger.entries) == 1


def test_an_api_base_at_the_queue_root_fails_loudly(litellm_proxy: Any, tmp_path: Path) -> None:
    # LiteLLM answers 200 {"data": []} while fal (the emulator) runs and bills the job
    with client(litellm_proxy, tmp_path, route="images") as c, pytest.raises(FalError) as err:
        c.generate("a red fox", model="flux-ultra-queue-root")
    short(err.value)
    assert "api_base" in str(err.value) and "queue" in str(err.value)
    assert litellm_proxy.emulator.ledger.submits == 1  # sent once, never again


def test_wrong_key_and_unknown_team_through_the_images_route(litellm_proxy: Any, tmp_path: Path) -> None:
    with client(litellm_proxy, tmp_path, route="images") as c, pytest.raises(UnknownModelError) as unknown:
        c.generate("a red fox", model="flux-ultar")
    assert "'flux-ultra'" in str(unknown.value)
    short(unknown.value)
    with client(litellm_proxy, tmp_path, route="images", key="sk-wrong") as c, \
            pytest.raises(AuthenticationError) as err:
        c.generate("a red fox", model="flux-ultra")
    short(err.value)
    assert "LITELLM_PROXY_API_KEY" in str(err.value)
    assert litellm_proxy.emulator.ledger.submits == 0


def test_auto_falls_back_to_the_images_route_where_the_passthrough_refuses(litellm_proxy: Any,
                                                                           tmp_path: Path) -> None:
    # a variant LiteLLM has no price for: its /fal_ai refuses it ("no pricing entry") before reaching fal
    with client(litellm_proxy, tmp_path, route="auto") as c:
        gen = c.generate("a red fox", model="sd-turbo")
    assert len(gen.images) == 1 and "no cancel, no re-attach" in gen.caption()
    assert litellm_proxy.emulator.ledger.submits == 1
    with client(litellm_proxy, tmp_path / "other", route="passthrough") as c, pytest.raises(FalError) as err:
        c.generate("a red fox", model="sd-turbo")
    short(err.value)
    assert "no price" in str(err.value) and "proxy_route='images'" in str(err.value)
    assert litellm_proxy.emulator.ledger.submits == 1
