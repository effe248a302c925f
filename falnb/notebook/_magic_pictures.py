"""``--image`` and ``--mask`` of ``%%falimage``: which pictures a cell sends, read before anything is sent.

A value is either a notebook variable in braces or a path or URL:

* ``{name}``: the variable ``name`` holding a picture: a falnb ``Image`` or ``Generation`` (all its
  pictures), a Pillow image, a NumPy array, bytes, or a path or URL as a string;
* ``{name[i]}``: picture ``i`` of a Generation (or item ``i`` of a list), Python's indexing: ``{gen[0]}``
  is the first picture, ``{gen[-1]}`` the last.  Nothing else goes inside the braces (``{gen.images[1]}``
  is refused: write ``{gen[1]}``), so an option never runs code;
* anything else: a local path (``photo.png``) or an http(s) URL, passed on as it is.

Every mistake (an unknown variable, a value that is not a picture, an index past the end) is a one-line
``UsageError`` and nothing is sent.  The client checks the pictures themselves (a file that is not an
image, a model that takes none) with the same promise.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from IPython.core.error import UsageError

__all__ = ["PICTURE_HELP", "cell_label", "picture_args", "picture_params", "picture_value"]

#: ``--image``'s help (``%%falimage?``)
PICTURE_HELP = ("a picture to work from (repeatable): a path, an http(s) URL, {name} of a notebook variable "
                "(a falnb Image or Generation, a PIL image, a NumPy array) or {name[i]} for picture i of a "
                "Generation (from 0); the prompt is the instruction (an upscaler takes none: "
                "%%falimage -m esrgan --image ... on one line)")

_REF = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[\s*(-?\d+)\s*\])?\s*\}")
_KINDS = "a falnb Image or Generation, a PIL image, a NumPy array, bytes, or a path or URL"


def _kind(value: Any) -> str | None:
    """What kind of picture ``value`` is (None: not one)."""
    from ..results._generation import Generation
    from ..results._image import Image

    if isinstance(value, Generation):
        return "generation"
    if isinstance(value, Image):
        return "image"
    if isinstance(value, (str, os.PathLike, bytes, bytearray, memoryview)):
        return "file"
    module = type(value).__module__ or ""
    if module.startswith("PIL.") and hasattr(value, "mode") and hasattr(value, "size"):
        return "pil"
    if module == "numpy" and type(value).__name__ == "ndarray":
        return "array"
    return None


def picture_value(text: str, ns: Mapping[str, Any], option: str = "--image") -> Any:
    """The picture one ``--image``/``--mask`` value names (see the module's rules)."""
    text = text.strip()
    if not text:
        raise UsageError(f"{option}: give a path, a URL or {{name}} of a notebook variable")
    if not text.startswith("{"):
        return text  # a path or a URL: the client reads and checks it before anything is sent
    match = _REF.fullmatch(text)
    if match is None:
        raise UsageError(f"{option} {text}: write {{name}} or {{name[i]}} (e.g. {{gen[1]}} for the second "
                         "picture of gen); nothing was sent")
    name, index = match.group(1), match.group(2)
    if name not in ns:
        raise UsageError(f"{option} {text}: {name!r} is not defined in the notebook; nothing was sent")
    value = ns[name]
    if index is not None:
        value = _item(value, int(index), name, text, option)
    kind = _kind(value)
    if kind is None:
        raise UsageError(f"{option} {text}: {name} is a {type(value).__name__}, not a picture ({_KINDS}); "
                         "nothing was sent")
    if kind == "image" and not getattr(value, "source", None):
        return dataclasses.replace(value, source=name)  # the caption says "edit of name"
    if kind in ("pil", "array") or isinstance(value, (bytes, bytearray, memoryview)):
        return _labelled(value, name, option)
    return value


def _labelled(value: Any, name: str, option: str) -> Any:
    """A PIL image, an array or bytes as a falnb Image labelled with its variable's name, encoded as the
    client encodes it (so the cache key is the one ``falnb.edit(prompt, value)`` makes)."""
    from ..request._pictures import to_pictures
    from ..results._image import Image

    (picture,) = to_pictures(value, field=option.lstrip("-"), model="")
    return Image(data=picture.data, content_type=picture.content_type, width=picture.width,
                 height=picture.height, source=name)


def _item(value: Any, index: int, name: str, text: str, option: str) -> Any:
    from ..results._generation import Generation

    items: Sequence[Any]
    if isinstance(value, Generation):
        if -len(value.images) <= index < len(value.images):
            return value.labelled(index % len(value.images))  # "picture 2 of cell [5]"
        items = value.images
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise UsageError(f"{option} {text}: {name} is a {type(value).__name__}, not a Generation or a list; "
                         f"write {{{name}}}")
    if not -len(items) <= index < len(items):
        what = "pictures" if isinstance(value, Generation) else "items"
        raise UsageError(f"{option} {text}: {name} has {len(items)} {what}"
                         + (f" ({{{name}[0]}} to {{{name}[{len(items) - 1}]}})" if items else "")
                         + "; nothing was sent")
    return items[index]


def picture_args(values: Sequence[str] | None, ns: Mapping[str, Any], option: str = "--image") -> Any:
    """What the client's ``image=`` (or ``mask=``) gets: None, one picture, or a list of them."""
    pictures = [picture_value(v, ns, option) for v in values or ()]
    if not pictures:
        return None
    return pictures[0] if len(pictures) == 1 else pictures


def picture_params(images: Sequence[str] | None, masks: Sequence[str] | None, ns: Mapping[str, Any]) -> dict[str, Any]:
    """The client's ``image=`` / ``mask=`` for a cell's ``--image`` / ``--mask`` values (absent when not given)."""
    out = {"image": picture_args(images, ns, "--image"), "mask": picture_args(masks, ns, "--mask")}
    return {k: v for k, v in out.items() if v is not None}


def cell_label(shell: Any) -> str:
    """``cell [5]``: the running cell as its ``In [5]`` prompt numbers it (the origin of what it makes).

    IPython 9 counts the cell before running it (``shell.execution_count`` is then 6); the running cell's
    own number is on the result the display hook fills."""
    result = getattr(getattr(shell, "displayhook", None), "exec_result", None)
    number = getattr(result, "execution_count", None)
    if not isinstance(number, int):
        number = getattr(shell, "execution_count", None)
    return f"cell [{number}]" if isinstance(number, int) else "a cell"
