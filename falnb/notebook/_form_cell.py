"""The ``%%falimage`` cell equivalent to a form's settings (pure text, no widgets).

The magic parses ``-p KEY=VALUE`` as JSON when it parses, else as a string; a string that would
parse as something else (``"2"``, ``"true"``) is therefore written as a JSON string.  Braces in
the prompt are doubled because the magic fills ``{name}`` from the user namespace.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["falimage_cell", "insert_cell_js", "param_text"]


def param_text(value: Any) -> str:
    """How ``-p KEY=VALUE`` spells ``value`` so that the magic reads it back unchanged."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def falimage_cell(prompt: str, *, model: str, n: int = 1, size: str | None = None, seed: int | None = None,
                  params: Mapping[str, Any] | None = None, allow_unknown: bool = False,
                  pictures: Sequence[str] = ()) -> str:
    """The text of a ``%%falimage`` cell that asks for the same pictures (and hits the same cache entry).

    ``pictures``: ``--image``/``--mask`` words, already quoted where needed (``{gen[1]}`` is written bare).
    Without a prompt (an upscaler) it is the one-line ``%falimage``: a cell magic needs a body.
    """
    words = ["--model", model]
    if size:
        words += ["--size", size]
    if n != 1:
        words += ["-n", str(n)]
    if seed is not None:
        words += ["--seed", str(seed)]
    for key, value in (params or {}).items():
        words += ["-p", f"{key}={param_text(value)}"]
    if allow_unknown:
        words.append("--allow-unknown")
    options = " ".join([*(shlex.quote(w) for w in words), *pictures])
    if not prompt.strip() and pictures:
        return f"%falimage {options}"
    body = prompt.replace("{", "{{").replace("}", "}}")
    return f"%%falimage {options}\n{body}"


def insert_cell_js(text: str, token: str) -> str:
    """A page script that inserts ``text`` as a code cell below the form's cell, else copies it to the
    clipboard, and reports which into the form's hidden ``.falnb-copy-report`` text box (``token:how``,
    ``how`` being ``inserted``, ``copied`` or ``shown``), so the kernel's status line says what happened.

    A page script reaches the notebook only through ``window.jupyterapp``, which JupyterLab 4 and
    Notebook 7 define only when started with ``expose_app_in_browser``: by default the text goes to the
    clipboard (``navigator.clipboard``, allowed right after the click).  From a cell,
    ``FalForm.insert_cell()`` inserts it in any frontend (IPython's ``set_next_input``).
    """
    return f"""(function (element) {{
  var text = {json.dumps(text)}, token = {json.dumps(token)};
  var seen = window.__falnbCells = window.__falnbCells || {{}};
  if (seen[token]) {{ return; }}
  seen[token] = true;
  var report = function (how) {{
    if (!element) {{ return; }}
    element.setAttribute('data-falnb-cell', how);
    var form = element.closest('.falnb-form');
    var box = form && form.querySelector('.falnb-copy-report input');
    if (box) {{
      box.value = token + ':' + how;
      box.dispatchEvent(new Event('input', {{ bubbles: true }}));
    }}
  }};
  try {{
    var app = window.jupyterapp, panel = app && app.shell && app.shell.currentWidget;
    var nb = panel && panel.content;
    if (nb && nb.widgets && app.commands.hasCommand('notebook:insert-cell-below')) {{
      var index = nb.widgets.findIndex(function (c) {{ return element && c.node.contains(element); }});
      if (index >= 0) {{ nb.activeCellIndex = index; }}
      app.commands.execute('notebook:insert-cell-below').then(function () {{
        nb.activeCell.model.sharedModel.setSource(text);
        report('inserted');
      }});
      return;
    }}
  }} catch (err) {{ /* no reachable app: the clipboard */ }}
  if (navigator.clipboard && navigator.clipboard.writeText) {{
    navigator.clipboard.writeText(text).then(function () {{ report('copied'); }},
                                             function () {{ report('shown'); }});
  }} else {{ report('shown'); }}
}})(typeof element === 'undefined' ? null : element);"""
