"""What a request will produce (:class:`Plan`) and its output JSON, shaped per model."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from ..catalog._catalog import ModelSpec
from ..catalog._sizes import dims_of_input
from ._images import CONTENT_TYPES, EXTENSIONS, render
from ._knobs import Settings

__all__ = ["Plan", "build_output", "make_plan", "random_seed"]

#: pass-through ids without a size input get this
_GENERIC_DIMS = (1024, 768)


@dataclass(frozen=True)
class Plan:
    """The pictures one valid request makes."""

    model_id: str
    prompt: str
    seed: int
    images: int
    width: int
    height: int
    fmt: str
    sync_mode: bool
    output_key: str
    has_dims: bool
    has_seed: bool
    #: flux and stable-diffusion echo ``prompt`` and carry ``timings``/``has_nsfw_concepts``
    echo_prompt: bool
    description: bool

    @property
    def ext(self) -> str:
        return EXTENSIONS[self.fmt]

    def image_bytes(self, index: int) -> bytes:
        return render(self.model_id, self.prompt, self.seed, index, self.width, self.height, self.fmt)


def _family(spec: ModelSpec) -> str:
    return spec.variant_of or spec.id


def random_seed(request_id: str, bits: int) -> int:
    """The seed picked for a request that sends none: random like fal's, as the request id is (fresh in every
    process unless the emulator is seeded, then reproducible)."""
    return int.from_bytes(hashlib.sha256(b"seed\x00" + request_id.encode()).digest()[:8], "big") >> (64 - bits)


def make_plan(spec: ModelSpec, inputs: dict[str, Any], request_id: str, settings: Settings | None = None) -> Plan:
    """The plan for an input that passed validation."""
    settings = settings or Settings()
    seed = inputs.get("seed")
    if not (isinstance(seed, int) and not isinstance(seed, bool)):
        if isinstance(seed, float) and seed.is_integer():
            seed = int(seed)
        elif spec.fixed_default_seed is not None:
            seed = spec.fixed_default_seed
        else:
            seed = random_seed(request_id, settings.random_seed_bits)
    dims = dims_of_input(spec, inputs) or _GENERIC_DIMS
    if inputs.get("resolution") == "2K" and spec.size_field == "aspect_ratio":
        dims = (dims[0] * 2, dims[1] * 2)
    fmt = inputs.get("output_format", spec.output_format_default)
    if fmt not in CONTENT_TYPES:
        fmt = spec.output_format_default if spec.output_format_default in CONTENT_TYPES else "jpeg"
    n = inputs.get("num_images", 1)
    if spec.max_images is None and spec.known:
        n = 1
    n = int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) and 1 <= n <= 16 else 1
    family = _family(spec)
    echo = not spec.known or family.startswith(("fal-ai/flux", "fal-ai/stable-diffusion"))
    return Plan(model_id=spec.id, prompt=str(inputs.get("prompt", "")), seed=int(seed), images=n,
                width=dims[0], height=dims[1], fmt=str(fmt), sync_mode=inputs.get("sync_mode") is True,
                output_key=spec.output_key, has_dims=_echo(settings.output_dims, spec.output_has_dims),
                has_seed=_echo(settings.echo_seed, spec.output_has_seed),
                echo_prompt=echo, description=family.startswith("fal-ai/imagen"))


def _echo(knob: str, per_model: bool) -> bool:
    return per_model if knob == "model" else knob == "always"


def build_output(plan: Plan, request_id: str, files_base: str, inference_time: float) -> dict[str, Any]:
    """The model's output JSON; image URLs point at ``{files_base}/files/...`` (or are data URIs)."""
    images: list[dict[str, Any]] = []
    for i in range(plan.images):
        data = plan.image_bytes(i)
        ctype = CONTENT_TYPES[plan.fmt]
        if plan.sync_mode:
            url = f"data:{ctype};base64," + base64.b64encode(data).decode("ascii")
        else:
            url = f"{files_base}/files/{request_id}/{i}.{plan.ext}"
        image: dict[str, Any] = {"url": url, "content_type": ctype,
                                 "file_name": f"{request_id[:8]}-{i}.{plan.ext}", "file_size": len(data)}
        if plan.has_dims:
            image["width"], image["height"] = plan.width, plan.height
        images.append(image)
    out: dict[str, Any] = {}
    if plan.output_key == "image":
        out["image"] = images[0]
    else:
        out["images"] = images
    if plan.has_seed:
        out["seed"] = plan.seed
    if plan.echo_prompt:
        out["timings"] = {"inference": round(inference_time, 4)}
        out["has_nsfw_concepts"] = [False] * plan.images
        out["prompt"] = plan.prompt
    if plan.description:
        out["description"] = f"A synthetic picture of: {plan.prompt}"
    return out
