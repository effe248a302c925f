"""The ten seed models: fal's schema of each, as shipped with falnb (``schemas/*.json``), with falnb's overlay.

Each snapshot is a queue OpenAPI document in fal's own format (``info["x-falnb-source"]`` says where its facts
come from); it goes through the same code (:func:`~falnb.catalog._derive.spec_from_doc`) as a document fetched
from fal for any other endpoint.  What a schema cannot say (aliases, price rules, limits stated only in prose)
is in :mod:`falnb.catalog._overlays`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._derive import spec_from_doc
from ._openapi import read_openapi
from ._overlays import SEED_OVERLAYS
from ._spec import ModelSpec

__all__ = ["SEED_MODELS", "SNAPSHOTS", "snapshot"]

#: the folder of the shipped schema snapshots
SNAPSHOTS = Path(__file__).resolve().parent / "schemas"


def snapshot(model_id: str) -> dict[str, Any]:
    """The shipped OpenAPI document of a seed model (a fresh copy)."""
    doc: dict[str, Any] = json.loads((SNAPSHOTS / (model_id.replace("/", "--") + ".json")).read_text("utf-8"))
    return doc


def _seed(model_id: str) -> ModelSpec:
    return spec_from_doc(read_openapi(snapshot(model_id), model_id), SEED_OVERLAYS[model_id], source="snapshot")


SEED_MODELS: tuple[ModelSpec, ...] = tuple(_seed(model_id) for model_id in SEED_OVERLAYS)
