"""Reading a ``%%falimage`` / ``%falimage`` line: options, the prompt, ``{name}`` interpolation.

Everything here runs before anything is sent, and every mistake becomes a one-line
``UsageError``.  No heavy imports: this module loads with ``%load_ext falnb``.
"""

from __future__ import annotations

import argparse
import io
import json
import keyword
import re
import shlex
import string
from collections.abc import Iterable, Mapping
from typing import Any

from IPython.core.error import UsageError

__all__ = ["OWN_OPTIONS", "check_name", "interpolate", "own_option", "parse_models", "parse_params", "prompt_text",
           "split_options", "usage_help"]

#: inputs a cell gives with an option of its own, and the form with a control of its own:
#: ``name: (the cell's way, the form's way)``.  ``-p seed=5`` or ``{"seed": 5}`` in the form's
#: "other inputs" would give them twice.
OWN_OPTIONS = {
    "prompt": ("the prompt is the cell body (or the rest of the line)", "write it in the prompt box"),
    "model": ("use --model", "pick it in the model list"),
    "n": ("use -n", "use the n box"),
    "size": ("use --size", "use the size control"),
    "seed": ("use --seed", "use the seed box"),
    "allow_unknown": ("use --allow-unknown", "names in other inputs are sent as they are already"),
    "catalog": ("it is not a model parameter", "it is not a model parameter"),
}


def own_option(name: str, form: bool = False) -> str | None:
    """How to give ``name`` instead (``"use --seed"``), or None when it is an ordinary model parameter."""
    ways = OWN_OPTIONS.get(name)
    return None if ways is None else ways[1 if form else 0]


def prompt_text(text: str) -> str:
    """A prompt as falnb sends it: without the surrounding whitespace (a cell body's trailing newline,
    a text box's spaces).  The magic and the form both use it, so the form's "Copy as %%falimage
    cell" asks for exactly what the form asked for (and hits the same cache entry)."""
    return text.strip()


def split_options(line: str, parser: argparse.ArgumentParser) -> tuple[list[str], str]:
    """Split ``line`` into option tokens (shell-quoted) and the rest, kept verbatim as the prompt.

    Options come first; the first word that is not an option (or a ``--``) starts the prompt, so a
    prompt may hold quotes, apostrophes, ``$`` and dashes without being mangled.
    """
    takes_value: dict[str, bool] = {}
    for action in parser._actions:
        for opt in action.option_strings:
            takes_value[opt] = action.nargs != 0
    tokens: list[str] = []
    rest = line.strip()
    expect_value = False
    while rest:
        if not expect_value and not rest.startswith("-"):
            break
        stream = io.StringIO(rest)
        lex = shlex.shlex(stream, posix=True)
        lex.whitespace_split = True
        lex.commenters = ""
        try:
            token = lex.get_token()
        except ValueError as exc:  # an unclosed quote in an option
            raise UsageError(f"cannot read the options: {exc} in {rest!r}") from None
        remaining = stream.read()
        if token is None:
            break
        if not expect_value and token == "--":
            rest = remaining.strip()
            break
        tokens.append(token)
        rest = remaining.strip()
        if expect_value:
            expect_value = False
            continue
        name = token.split("=", 1)[0]
        if name in takes_value:
            expect_value = takes_value[name] and "=" not in token
        elif not name.startswith("--") and len(name) > 2 and name[:2] in takes_value:
            expect_value = False  # -mflux, -n4: the value is attached
        elif name.startswith("--"):
            # a unique prefix of a long option, as argparse allows; unknown ones fail in argparse
            matches = [o for o in takes_value if o.startswith(name)]
            expect_value = len(matches) == 1 and takes_value[matches[0]] and "=" not in token
    return tokens, rest


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``-p KEY=VALUE`` items: VALUE as JSON when it parses (``4``, ``true``, ``[1,2]``), else a string.

    A name with an option of its own (``seed``: ``--seed``) is a UsageError saying which option to use."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--param {item!r}: write KEY=VALUE, e.g. -p guidance_scale=3.5")
        if not key.replace("_", "a").replace("-", "a").replace(".", "a").isalnum():
            raise UsageError(f"--param {item!r}: {key!r} is not a parameter name")
        hint = own_option(key)
        if hint is not None:
            raise UsageError(f"--param {key}=...: {hint}")
        if key in out:
            raise UsageError(f"--param {key} is given twice")
        out[key] = _json_or_text(text)
    return out


def _not_json(constant: str) -> Any:
    raise ValueError(constant)


def _json_or_text(text: str) -> Any:
    """JSON when it parses (NaN and Infinity are not JSON: they stay text), else the text itself."""
    try:
        return json.loads(text, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return text


def parse_models(text: str | None, default: str) -> list[str]:
    """``-m a,b,c``: the model names in order (at least one, no blanks, no repeats)."""
    raw = default if text is None else text
    names = [m.strip() for m in raw.split(",")]
    if not raw.strip() or any(not m for m in names):
        raise UsageError(f"--model {raw!r}: give a model name, or several separated by commas "
                         "(e.g. -m flux-schnell,flux-ultra)")
    seen: set[str] = set()
    for m in names:
        if m in seen:
            raise UsageError(f"--model: {m!r} is listed twice")
        seen.add(m)
    return names


def check_name(name: str, option: str) -> str:
    """A Python identifier to store a result under (``--out``) or read a list from (``--batch``)."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise UsageError(f"{option} {name!r}: not a valid Python variable name")
    return name


class _Formatter(string.Formatter):
    """``str.format`` over the user namespace, with readable errors and no positional fields."""

    def __init__(self, namespace: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        self.namespace = namespace
        self.extra = extra

    def get_value(self, key: int | str, args: Any, kwargs: Any) -> Any:
        if isinstance(key, int) or key == "":
            raise UsageError("the prompt has an empty or numbered {} field; "
                             "write {{ and }} for literal braces")
        if key in self.extra:
            return self.extra[key]
        if key in self.namespace:
            return self.namespace[key]
        raise UsageError(f"{{{key}}} in the prompt: {key!r} is not defined in the notebook "
                         "(define it, or write {{ and }} for literal braces); nothing was sent")


def interpolate(template: str, namespace: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> str:
    """Fill ``{name}`` (also ``{name.attr}``, ``{name[0]}``, ``{name:fmt}``) from ``namespace``.

    ``{{`` and ``}}`` stand for literal braces.  A missing name or a stray brace is a UsageError.
    """
    if "{" not in template and "}" not in template:
        return template
    fmt = _Formatter(namespace, extra or {})
    try:
        return fmt.vformat(template, (), {})
    except UsageError:
        raise
    except (ValueError, IndexError) as exc:
        raise UsageError(f"cannot fill the prompt: {exc} (write {{{{ and }}}} for literal braces)") from None
    except (AttributeError, KeyError, TypeError) as exc:
        raise UsageError(f"cannot fill the prompt: {type(exc).__name__}: {exc}") from None


def prompts_of(template: str, batch: str | None, ns: Mapping[str, Any]) -> list[str]:
    """The cell's prompts: the interpolated template, or one per item of the ``--batch`` list."""
    if batch is None:
        if not template:
            raise UsageError("no prompt: write it in the cell body (%%falimage) or after the options "
                             "(%falimage -m flux-schnell a lighthouse at dusk)")
        return [_nonblank(interpolate(template, ns), "the prompt")]
    name = check_name(batch, "--batch")
    if name not in ns:
        raise UsageError(f"--batch {name}: {name!r} is not defined in the notebook")
    items = ns[name]
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise UsageError(f"--batch {name}: expected a list of prompts, got {type(items).__name__}")
    items = list(items)
    if not items:
        raise UsageError(f"--batch {name}: the list is empty")
    if template and not _uses_item(template):
        raise UsageError(f"--batch {name}: the cell body never uses {{item}}, so every prompt would be the same; "
                         "write {item} where each element goes (or leave the body empty)")
    prompts = []
    for i, item in enumerate(items):
        if template:
            text = interpolate(template, ns, {"item": item})
        elif isinstance(item, str):
            text = item  # used as given: braces in a list item are not interpolated
        else:
            raise UsageError(f"--batch {name}: item {i} is not a string but {type(item).__name__} "
                             "(or give a template in the cell body using {item})")
        prompts.append(_nonblank(text, f"--batch {name}: item {i}"))
    return prompts


def _uses_item(template: str) -> bool:
    """Whether ``template`` has an ``{item}`` field (``{item[0]}``, ``{item.attr}``, ``{item!r}``, or inside
    a format spec); a template it cannot parse is left to :func:`interpolate`, which says what is wrong."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return True
    for _, name, spec, _ in fields:
        if name is not None and re.split(r"[.\[]", name, maxsplit=1)[0] == "item":
            return True
        if spec and "{" in spec and _uses_item(spec):
            return True
    return False


def _nonblank(text: str, what: str) -> str:
    text = prompt_text(text)
    if not text:
        raise UsageError(f"{what} is empty")
    return text


def usage_help(func: Any, cell: bool) -> None:
    """Give a magic's help (``%%falimage?``) a plain usage line: IPython's reads ``::`` then
    ``%falimage ...`` (reStructuredText, and the line form only); a cell magic's says ``%%falimage``."""
    import textwrap

    doc = func.__doc__ or ""
    if not doc.startswith("::\n\n"):  # not IPython's layout: leave it
        return
    usage, _, tail = doc[4:].partition("\n\n")
    words = " ".join(usage.split())
    if cell:
        words = "%" + words
    glued = re.sub(r"\[[^\]]*\]", lambda m: m.group().replace(" ", "\0"), words)  # never split an option
    lines = [line.replace("\0", " ") for line in textwrap.wrap(
        glued, 88, initial_indent="  ", subsequent_indent="      ", break_on_hyphens=False, break_long_words=False)]
    if cell:
        lines.append(f"  {words.split()[0][1:]} [options] PROMPT    (the one-line form)")
    func.__doc__ = "Usage:\n" + "\n".join(lines) + "\n\n" + tail
