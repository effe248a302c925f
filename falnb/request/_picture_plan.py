"""Which model input each picture goes to, and whether the model's picture and prompt needs are met.

``image=`` (one picture or several) goes to the model's picture field (``image_url`` or ``image_urls``),
``mask=`` to its mask field (``mask_url``); a model's own field names (``image_url=...``) work as well.
Refused before anything is read further, uploaded or sent: a picture for a model that takes none, none for
a model that needs one, several for a field that takes one, a prompt for a model that takes none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._exceptions import InputError, ParameterError
from ..catalog._catalog import ModelSpec
from ..catalog._image_models import PictureField, is_picture_name, picture_inputs
from ._params import ALLOW_HINT, Deliberate
from ._pictures import Picture, to_pictures

__all__ = ["PictureValue", "check_prompt", "has_pictures", "output_dims", "take_pictures", "tokens"]

#: one picture for a single field, a tuple for a list field
PictureValue = Picture | tuple[Picture, ...]


def has_pictures(params: Mapping[str, Any]) -> bool:
    """Whether call keywords carry pictures (``image=``, ``mask=``, a field named like ``image_url``)."""
    return any(k in ("image", "mask") or is_picture_name(k) for k in params)


def check_prompt(spec: ModelSpec, prompt: Any, deliberate: Deliberate) -> str | None:
    """The prompt to send, or None when the model takes none (an upscaler) or it is optional and empty; a
    prompt for a model that takes none is sent only when meant (``allow_unknown``)."""
    how = picture_inputs(spec)
    rule = how.prompt
    if rule == "required" and not spec.takes_prompt:  # described by its schema: no ``prompt`` input
        rule = "none"
    empty = prompt is None or (isinstance(prompt, str) and not prompt.strip())
    if prompt is not None and not isinstance(prompt, str):
        raise ParameterError(f"the prompt must be text, not {type(prompt).__name__}", model=spec.id, field="prompt")
    if rule == "none":
        if not empty and not deliberate("prompt"):
            hint = ("Leave the prompt out (an upscaler or a background remover works from the picture alone)."
                    if how.fields else f"Its inputs: {', '.join(spec.input_names())}.")
            raise ParameterError(f"{spec.id} takes no prompt", model=spec.id, field="prompt",
                                 hint=f"{hint} To send one anyway: {ALLOW_HINT}.")
        return None if empty else prompt
    if empty:
        if rule == "optional":
            return None
        raise ParameterError("the prompt is empty", model=spec.id, field="prompt")
    return prompt


def take_pictures(spec: ModelSpec, params: dict[str, Any]) -> dict[str, PictureValue]:
    """Pop ``image``, ``mask`` and the model's picture fields from ``params``: ``{field: picture(s)}``, each
    picture read and checked, in the model's field order."""
    fields = picture_inputs(spec).fields
    by_name = {f.name: f for f in fields}
    given: dict[str, Any] = {}
    for name in [k for k in params if k in by_name or (is_picture_name(k) and not spec.strict)]:
        given[name] = params.pop(name)
    for short, mask in (("image", False), ("mask", True)):
        if short not in params:
            continue
        value = params.pop(short)
        if value is None:
            continue
        target = _field_for(spec, fields, mask=mask, many=isinstance(value, (list, tuple)))
        if target in given:
            raise ParameterError(f"both {short}= and {target}= give {spec.id}'s {target}; pass one",
                                 model=spec.id, field=target)
        given[target] = value
    out: dict[str, PictureValue] = {}
    for name, value in given.items():
        if value is None:
            continue
        field = by_name.get(name) or PictureField(name, many=name.endswith("s"), required=False)
        pics = to_pictures(value, field=name, model=spec.id)
        if not pics:
            continue
        if not field.many and len(pics) > 1:
            raise ParameterError(f"{spec.id} takes one picture in {name}, not {len(pics)}", model=spec.id,
                                 field=name, hint="Pick one (gen.images[i]), or use a model that takes several, "
                                                  "such as 'nano-banana-edit'.",
                                 hints={"cell": "Pick one with --image {name[i]} (e.g. {gen[0]}), or use a model "
                                                "that takes several, such as -m nano-banana-edit."})
        if field.limit is not None and len(pics) > field.limit:
            raise ParameterError(f"{spec.id} takes at most {field.limit} pictures in {name}, not {len(pics)}",
                                 model=spec.id, field=name)
        out[name] = tuple(pics) if field.many else pics[0]
    for f in fields:
        if f.required and f.name not in out:
            what = "a mask (mask=...)" if f.is_mask else "a picture (image=...)"
            option = "--mask" if f.is_mask else "--image"  # a cell's way to give it
            raise InputError(f"{spec.id} needs {what}: nothing was sent", model=spec.id, field=f.name,
                             hints={"cell": f"In a cell: {option} PICTURE (a path, a URL, {{name}} or {{name[i]}})."})
    order = [f.name for f in fields]
    return dict(sorted(out.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def _field_for(spec: ModelSpec, fields: tuple[PictureField, ...], *, mask: bool, many: bool) -> str:
    matching = [f for f in fields if f.is_mask == mask]
    if matching:
        # a model with a single picture and a list of references (Ideogram edit): a list goes to the list field
        best = next((f for f in matching if f.many == many), matching[0])
        return best.name
    if not spec.known:  # a pass-through id: fal's usual names
        return "mask_url" if mask else ("image_urls" if many else "image_url")
    what = "mask" if mask else "pictures"
    raise ParameterError(f"{spec.id} takes no {what}: nothing was sent", model=spec.id,
                         field="mask" if mask else "image",
                         hint="For edits use an edit model such as 'nano-banana-edit' or 'kontext' "
                              "(falnb.edit), for upscaling falnb.upscale.",
                         hints={"cell": "For edits use an edit model such as -m nano-banana-edit or -m kontext, "
                                        "for upscaling -m esrgan."})


def tokens(pictures: Mapping[str, PictureValue]) -> dict[str, Any]:
    """The input fields as the cache key holds them: content hashes (or the URLs passed through)."""
    return {k: [p.token for p in v] if isinstance(v, tuple) else v.token for k, v in pictures.items()}


def output_dims(spec: ModelSpec, pictures: Mapping[str, PictureValue],
                inputs: Mapping[str, Any]) -> tuple[int, int] | None:
    """The output's pixels when the size follows the input picture (an edit without a size, an upscale)."""
    first = next((v[0] if isinstance(v, tuple) else v for k, v in pictures.items() if "mask" not in k), None)
    if first is None or not first.width or not first.height:
        return None
    factor = 1.0
    if picture_inputs(spec).kind == "upscale":
        for name in ("upscale_factor", "scale"):
            p = spec.param(name)
            value = inputs.get(name, p.default if p is not None else None)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                factor = float(value)
                break
    return round(first.width * factor), round(first.height * factor)
