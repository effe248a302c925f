"""Running a notebook cell in a real IPython shell and reading what a saved notebook would hold."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

__all__ = ["ANSI", "Cell", "run"]

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Cell:
    """What one executed cell left: success, display outputs (with updates), stdout/stderr."""

    ok: bool
    outputs: list[Any]
    stdout: str
    stderr: str
    error: BaseException | None = None
    notebook: list[dict[str, Any]] = field(default_factory=list)

    @property
    def raw_text(self) -> str:
        return self.stdout + self.stderr

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw_text)

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.text.splitlines() if line.strip()]

    def images(self) -> list[dict[str, Any]]:
        """Image outputs as the saved notebook holds them (progress replaced in place)."""
        return [o for o in self.notebook if any(k.startswith("image/") for k in o)]

    def captions(self) -> list[dict[str, Any]]:
        return [o for o in self.notebook if "text/html" in o]


def run(shell: InteractiveShell, source: str) -> Cell:
    """Run a cell; display updates replace the output they update (as in a saved notebook)."""
    with capture_output() as cap:
        result = shell.run_cell(source, store_history=False)  # type: ignore[no-untyped-call]
    notebook: list[dict[str, Any]] = []
    ids: dict[str, int] = {}
    for out in cap.outputs:
        display_id = (out.transient or {}).get("display_id")
        if out.update:
            assert display_id in ids, "update of an unknown display"
            notebook[ids[display_id]] = dict(out.data)
        else:
            if display_id:
                ids[display_id] = len(notebook)
            notebook.append(dict(out.data))
    err = result.error_in_exec or result.error_before_exec
    return Cell(result.success, cap.outputs, cap.stdout, cap.stderr, err, notebook)
