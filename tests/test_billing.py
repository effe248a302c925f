"""Issue 13 item 6: unit prices from fal's ``/v1/models/pricing`` (with a key; cached) and what fal billed
(``x-fal-billable-units``) in the ledger: captions, ``gen.cost``, the spend, ``falnb cache stats``, the
budgets and "saved by the cache" use fal's bill where known and say "estimate" where not."""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from falnb import BudgetExceededError, Client
from falnb.catalog._prices import PriceStore, UnitPrice, billed_usd
from falnb.emulator import Emulator

QUIRKY = "fal-ai/emulator/quirky-square"


@pytest.fixture
def emu() -> Emulator:
    return Emulator(latency=0.0)


def test_a_model_falnb_has_no_code_for_gets_an_estimate_then_its_bill(client: Client, emu: Emulator) -> None:
    plan = client.plan("a kite", model=QUIRKY, n=2)
    assert plan.cost == 0.05  # fal's unit price (0.025 per image) from /v1/models/pricing
    emu.platform.faults = {"billable_units": 1.0}
    gen = client.generate("a kite", model=QUIRKY, n=2)
    assert gen.billed and gen.cost == 0.05 and "$0.05 billed" in gen.caption()
    assert gen.responses[0]["x-fal-billable-units"] == "1"


def test_the_bill_replaces_the_estimate_everywhere(client: Client, emu: Emulator) -> None:
    emu.platform.faults = {"billable_units": 2.0}  # fal billed twice falnb's estimate
    before = client.cache.ledger.session()  # type: ignore[union-attr]  # (the session is the process's)
    gen = client.generate("a kite", model="schnell", size="1024x1024")
    assert gen.billed and gen.cost == 0.006 and gen.caption().endswith("$0.006 billed")
    ledger = client.cache.ledger  # type: ignore[union-attr]
    assert ledger.total().paid == 0.006 and ledger.total().billed == 1
    assert round(ledger.session().paid - before.paid, 6) == 0.006 and ledger.session().billed == before.billed + 1
    hit = client.generate("a kite", model="schnell", size="1024x1024")
    assert hit.cached and hit.saved == 0.006 and "saved $0.006" in hit.caption()  # saved: the billed figure
    assert ledger.total().saved == 0.006


def test_an_estimate_says_so(client: Client, emu: Emulator, tmp_path: Path) -> None:
    gen = client.generate("a kite", model="schnell")  # the emulator's default: no header, like some fal models
    assert not gen.billed and gen.caption().endswith("~$0.003")
    emu.platform.faults = {"billable_units": 1.0}
    client.generate("a kite", model="schnell", seed=1)
    total = client.cache.ledger.total()  # type: ignore[union-attr]
    assert str(total).startswith("$0.006 paid for 2 request(s) (1 estimated)")
    from falnb._cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["cache", "stats", "--dir", str(tmp_path / "cache")]) == 0
    assert "(1 estimated)" in out.getvalue()


def test_budgets_count_what_fal_billed(client: Client, emu: Emulator) -> None:
    emu.platform.faults = {"billable_units": 3.0}
    client.generate("a kite", model="schnell", size="1024x1024")  # estimate 0.003, billed 0.009
    ledger = client.cache.ledger  # type: ignore[union-attr]
    ledger.budget_total = 0.01
    with pytest.raises(BudgetExceededError):  # 0.009 billed + 0.003 estimate > 0.01 (the estimates fit)
        client.generate("another", model="schnell", size="1024x1024")


def test_no_key_no_price_and_no_wrong_one(serve_emulator: Callable[..., Any], tmp_path: Path) -> None:
    server = serve_emulator(Emulator(latency=0.0))
    keyless = Client(queue_url=server.url, cache=tmp_path / "c")  # prices need a key: 401
    plan = keyless.plan("a kite", model=QUIRKY)
    assert plan.cost is None and plan.spec.price is None  # validated, but no price shown
    assert keyless.plan("a kite", model="schnell").cost == 0.003  # a seed model keeps falnb's estimate
    server.emulator.platform.faults = {"pricing": 429}
    limited = Client(key="k", queue_url=server.url, cache=tmp_path / "d")
    assert limited.plan("a kite", model=QUIRKY).cost is None


def test_the_price_store_keeps_prices_and_never_guesses(tmp_path: Path) -> None:
    now = [0.0]
    calls: list[str] = []

    def fetch(eid: str) -> UnitPrice | None:
        calls.append(eid)
        return UnitPrice(eid, 0.04, "image") if eid == "a/b" else None

    store = PriceStore(tmp_path, fetch, ttl=100, clock=lambda: now[0])
    assert store.get("a/b") == UnitPrice("a/b", 0.04, "image") and store.get("x/y") is None
    assert PriceStore(tmp_path, fetch, ttl=100, clock=lambda: now[0]).get("a/b") is not None
    assert calls == ["a/b", "x/y"]  # the second store read the file
    assert billed_usd("1.5", UnitPrice("a/b", 0.04, "image")) == 0.06
    assert billed_usd("nan", UnitPrice("a/b", 0.04, "image")) is None
    assert billed_usd("2", None) is None and billed_usd("", UnitPrice("a/b", 0.04, "image")) is None
    assert UnitPrice("v/x", 0.25, "seconds").as_estimate() is None  # no per-image estimate for seconds


def test_the_emulator_bills_what_its_own_price_list_says(client: Client, emu: Emulator) -> None:
    # the emulator prices quirky-square at 0.025 an image (/v1/models/pricing) and bills it 1 unit a picture
    # (x-fal-billable-units); its ledger recorded no cost for it (the catalog's estimate, None without falnb's
    # overlay), so a test of "what fal charged" saw $0 for every model falnb has no code for
    emu.platform.faults = {"billable_units": 1.0}
    gen = client.generate("a kite", model=QUIRKY, n=2)
    assert gen.billed and gen.cost == 0.05
    assert emu.ledger.cost == 0.05 and [e.cost for e in emu.ledger.entries] == [0.025, 0.025]
