"""Issue 13: every fal model described by fal itself: the seed ten from shipped schema snapshots (one code
path), the schema store (time-to-live, offline), validation from the schema (jsonschema, draft 2020-12),
unknown models passed through only when allowed, and models falnb has no code for (emulator fixtures)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from falnb import Client, InputError, ParameterError
from falnb.catalog._catalog import SEED_MODELS, Catalog
from falnb.catalog._derive import spec_from_doc
from falnb.catalog._models import snapshot
from falnb.catalog._openapi import read_openapi
from falnb.catalog._overlays import SEED_OVERLAYS
from falnb.catalog._prices import PriceStore, UnitPrice
from falnb.catalog._spec import DeprecatedModelWarning
from falnb.catalog._store import SchemaStore, SchemaUnavailable
from falnb.emulator import Emulator
from falnb.emulator._platform import fixture_documents
from falnb.request._plan import build_plan

QUIRKY = "fal-ai/emulator/quirky-square"
LEGACY = "fal-ai/emulator/legacy-diffusion"
VIDEO = "fal-ai/kling-video/v2.1/standard/text-to-video"
EDIT = "fal-ai/emulator/multi-edit"  # nano-banana/edit's schema under an id no catalogue ships
SEEDREAM4 = "fal-ai/bytedance/seedream/v4/text-to-image"


@pytest.fixture
def emu() -> Emulator:
    return Emulator(latency=0.0)


# -- one code path for the seed ten -----------------------------------------------------------------


def test_every_seed_model_comes_from_its_snapshot_and_overlay() -> None:
    for spec in SEED_MODELS:
        doc = snapshot(spec.id)
        assert doc["info"]["x-falnb-source"]  # each snapshot says where its facts come from
        assert spec.source == "snapshot" and spec.schema is not None
        assert spec == spec_from_doc(read_openapi(doc, spec.id), SEED_OVERLAYS[spec.id], source="snapshot")


def test_a_snapshot_edit_changes_the_seed_model() -> None:
    doc = copy.deepcopy(snapshot("fal-ai/flux/schnell"))
    doc["components"]["schemas"]["FluxSchnellInput"]["properties"]["num_inference_steps"]["maximum"] = 8
    spec = spec_from_doc(read_openapi(doc, "fal-ai/flux/schnell"), SEED_OVERLAYS["fal-ai/flux/schnell"])
    steps = spec.param("num_inference_steps")
    assert steps is not None and steps.maximum == 8


def test_form_order_and_picture_inputs_come_from_the_schema(client: Client) -> None:
    spec = client.catalog.resolve(QUIRKY)
    assert [p.name for p in spec.params] == ["resolution", "guidance_scale", "safety_tolerance", "steps", "seed",
                                             "style_strength", "negative_prompt"]  # x-fal-order-properties
    edit = client.catalog.resolve(EDIT)
    assert edit.file_inputs() == ["image_urls"] and edit.category == "image-to-image"


# -- validation from the schema -------------------------------------------------------------------------


def test_a_model_falnb_has_no_code_for_is_validated_before_sending(client: Client, emu: Emulator) -> None:
    with pytest.raises(ParameterError) as info:
        client.generate("a kite", model=QUIRKY, resolution="4k-ish")
    assert info.value.field == "resolution" and "'1K'" in str(info.value)
    with pytest.raises(ParameterError) as info:
        client.generate("a kite", model=QUIRKY, steps=51)
    assert info.value.field == "steps"
    with pytest.raises(ParameterError, match="did you mean 'steps'"):
        client.generate("a kite", model=QUIRKY, stepz=5)
    with pytest.raises(InputError, match=r"needs a picture \(image=\.\.\.\)") as missing:  # its required picture
        client.generate("a kite", model=EDIT)
    assert missing.value.field == "image_urls"
    assert emu.ledger.submits == 0  # nothing was sent, nothing was paid


def test_enum_values_get_a_did_you_mean_from_jsonschema(client: Client) -> None:
    with pytest.raises(ParameterError) as info:
        client.plan("a kite", model=EDIT, image_urls=["https://x/a.png"], aspect_ratio="16:10")
    assert info.value.field == "aspect_ratio"
    with pytest.raises(ParameterError) as info:
        client.plan("ab", model=EDIT, image_urls=["https://x/a.png"])  # minLength 3: only the schema says it
    assert info.value.field == "prompt" and "minimum length of 3" in str(info.value)
    with pytest.raises(InputError) as info:
        client.plan("a kite", model=EDIT, image_urls=[3])
    assert info.value.field == "image_urls"


def test_the_quirks_survive(client: Client) -> None:
    # numeric exclusiveMinimum (JSON Schema 2020-12): 0 is refused, anything above is fine
    with pytest.raises(ParameterError, match="must be more than 0"):
        client.plan("a kite", model=QUIRKY, guidance_scale=0)
    assert client.plan("a kite", model=QUIRKY, guidance_scale=0.1).requests[0].input["guidance_scale"] == 0.1
    # an enum of strings with an integer default: the default is read as the string fal means, and 4 is sent
    # as "4"
    tolerance = client.catalog.resolve(QUIRKY).param("safety_tolerance")
    assert tolerance is not None and tolerance.default == "4"
    assert client.plan("a kite", model=QUIRKY, safety_tolerance=4).requests[0].input["safety_tolerance"] == "4"
    # a limit stated only in prose (Seedream 4: "between 1024 and 4096") is not refused by falnb
    spec = client.catalog.resolve(SEEDREAM4)
    assert spec.side_range is None and "auto_2K" in spec.size_presets
    assert client.plan("a kite", model=SEEDREAM4, image_size="auto_2K").requests[0].input["image_size"] == "auto_2K"


def test_deliberate_unknown_names_pass_the_schema(client: Client) -> None:
    body = client.plan("a kite", model=QUIRKY, allow_unknown=["new_knob"], new_knob=1).requests[0].input
    assert body["new_knob"] == 1


def test_jsonschema_loads_on_first_validation_not_at_import() -> None:
    code = ("import sys, falnb; from IPython.testing.globalipapp import start_ipython; ip = start_ipython(); "
            "ip.run_line_magic('load_ext', 'falnb'); assert 'jsonschema' not in sys.modules, 'loaded'; "
            "falnb.Client(offline=True, cache=False).plan('x', model='fal-ai/flux/schnell'); "
            "assert 'jsonschema' in sys.modules; "
            # Jupyter's rfc3987_syntax builds a grammar for seconds at import: not imported for falnb
            "assert 'rfc3987_syntax' not in sys.modules")  # (not left blocked either: no None entry)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- size, n and outputs from the schema -------------------------------------------------------------------


def test_size_and_n_on_models_falnb_has_never_seen(client: Client, emu: Emulator) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecatedModelWarning)
        plan = client.plan("a kite", model=LEGACY, n=3, size="640x480")  # num_images at most 2
    assert [(r.images, r.input["image_size"]) for r in plan.requests] == [
        (2, {"width": 640, "height": 480}), (1, {"width": 640, "height": 480})]
    edit = client.plan("a kite", model=EDIT, image_urls=["https://x/a.png"], size="16:9", n=2)
    assert edit.requests[0].input["aspect_ratio"] == "16:9" and edit.requests[0].input["num_images"] == 2
    gen = client.generate("a kite", model=QUIRKY, n=2)  # no num_images, a single `image` out: two requests
    assert len(gen.images) == 2 and emu.ledger.submits == 2


def test_a_default_size_in_pixels_is_the_size_planned_rendered_and_priced(client: Client) -> None:
    # fal-platform.md: Seedream v4's image_size defaults to {width: 2048, height: 2048}; it was read as no size
    # (the caption said 1024x768, the emulator drew 1024x768, a megapixel price counted one megapixel)
    plan = client.plan("a kite", model=SEEDREAM4)
    assert (plan.requests[0].width, plan.requests[0].height) == (2048, 2048)
    gen = client.generate("a kite", model=SEEDREAM4)
    assert (gen.images[0].width, gen.images[0].height) == (2048, 2048) and " 2048x2048 " in gen.caption()
    per_mp = Catalog().using(SchemaStore(None, fixture_documents),
                             PriceStore(None, lambda m: UnitPrice(m, 0.01, "megapixels")))
    assert build_plan("a kite", model=SEEDREAM4, catalog=per_mp).cost == 0.04  # four megapixels, not one


def test_a_model_that_makes_no_pictures_is_refused_before_it_is_paid(client: Client, emu: Emulator) -> None:
    with pytest.raises(ParameterError, match="does not make pictures \\(text-to-video\\)"):
        client.generate("a kite", model=VIDEO)
    assert emu.ledger.submits == 0


def test_a_deprecated_model_warns_before_it_is_paid(client: Client, emu: Emulator) -> None:
    with pytest.warns(DeprecatedModelWarning, match="deprecated"):
        client.plan("a kite", model=LEGACY)
    assert emu.ledger.submits == 0


# -- the store: time-to-live, offline, unknown models --------------------------------------------------------


class Fal:
    """A stand-in ``fetch``: serves documents, or fails like fal's platform API can."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail: str | None = None

    def __call__(self, endpoint_id: str) -> dict[str, Any] | None:
        self.calls += 1
        if self.fail == "offline":
            raise SchemaUnavailable("no network")
        if self.fail == "truncated":
            return {"openapi": "3.0.4", "info": {}}
        return fixture_documents(endpoint_id)


def test_the_store_keeps_schemas_on_disk_with_a_time_to_live(tmp_path: Path) -> None:
    now = [1000.0]
    fal = Fal()
    store = SchemaStore(tmp_path / "s", fal, ttl=60, clock=lambda: now[0])
    assert store.lookup(QUIRKY).source == "fal" and fal.calls == 1
    assert json.loads((tmp_path / "s" / "fal-ai--emulator--quirky-square.json").read_text())["fetched_at"] == 1000
    again = SchemaStore(tmp_path / "s", fal, ttl=60, clock=lambda: now[0])  # a new process: from disk
    assert again.lookup(QUIRKY).source == "stored" and fal.calls == 1
    now[0] += 61
    assert again.lookup(QUIRKY).source == "fal" and fal.calls == 2  # stale: asked again
    now[0] += 61
    fal.fail = "offline"
    assert again.lookup(QUIRKY).source == "stored"  # offline: works from what it has
    fal.fail = "truncated"
    now[0] += 61
    fresh = SchemaStore(tmp_path / "t", fal, ttl=60, clock=lambda: now[0])
    cut = fresh.lookup(QUIRKY)
    assert cut.doc is None and cut.unchecked and not (tmp_path / "t").exists()  # never stored
    fal.fail = None
    missing = fresh.lookup("fal-ai/none/such")
    assert missing.doc is None and not missing.unchecked and "publishes no schema" in missing.reason


def test_offline_with_an_empty_store_seeds_work_and_unknown_models_need_allowing(tmp_path: Path) -> None:
    fal = Fal()
    fal.fail = "offline"
    catalog = Catalog().using(SchemaStore(tmp_path / "empty", fal))
    from falnb.request._plan import build_plan

    for spec in SEED_MODELS:
        assert build_plan("a kite", model=spec.id, catalog=catalog).requests
    assert fal.calls == 0  # the seed ten never ask fal
    with pytest.raises(ParameterError, match="cannot be validated: fal could not be asked") as info:
        build_plan("a kite", model="fal-ai/some-new/model", catalog=catalog)
    assert "allow_unknown=True" in str(info.value)
    body = build_plan("a kite", model="fal-ai/some-new/model", catalog=catalog, allow_unknown=True, x=1)
    assert body.requests[0].input == {"prompt": "a kite", "x": 1}


def test_platform_failures_are_short_and_never_guess(emu: Emulator, tmp_path: Path) -> None:
    client = Client(offline=True, emulator=emu, cache=tmp_path / "c")
    for fault, words in ((429, "rate limited"), (500, "fal failed"), ("truncated", "not a JSON object")):
        emu.platform.faults = {"models": fault}
        client.catalog.schemas.forget(QUIRKY)  # type: ignore[union-attr]
        with pytest.raises(ParameterError, match=words) as info:
            client.plan("a kite", model=QUIRKY)
        assert len(str(info.value).splitlines()) <= 2
    emu.platform.faults = {"models": 404}
    client.catalog.schemas.forget(QUIRKY)  # type: ignore[union-attr]
    spec = client.catalog.resolve(QUIRKY)  # fal has no schema: passed through as before, nothing checked
    assert not spec.known and spec.no_schema == "fal publishes no schema for it"
    emu.platform.faults = {}


def test_a_required_input_missing_is_named_with_the_way_to_give_it() -> None:
    """The schema's own ``required``: the Python API names the keyword, a cell its ``-p`` option."""
    from falnb.request._validate import validate_input

    doc = copy.deepcopy(snapshot("fal-ai/flux/schnell"))
    doc["components"]["schemas"]["FluxSchnellInput"]["required"] = ["prompt", "style"]
    doc["components"]["schemas"]["FluxSchnellInput"]["properties"]["style"] = {"type": "string"}
    spec = spec_from_doc(read_openapi(doc, "fal-ai/flux/schnell"), SEED_OVERLAYS["fal-ai/flux/schnell"])
    with pytest.raises(ParameterError) as info:
        validate_input(spec, {"prompt": "a kite"})
    assert info.value.field == "style" and "Pass style=..." in str(info.value)
    assert "Add -p style=... (%falform -m fal-ai/flux/schnell" in str(info.value.for_front_end("cell"))
