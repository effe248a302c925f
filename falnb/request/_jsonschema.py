"""jsonschema, imported without the grammar Jupyter's ``rfc3987_syntax`` builds at import.

Jupyter installs ``jsonschema[format-nongpl]``, whose ``rfc3987_syntax`` builds a grammar when jsonschema
imports it: seconds (measured 1-7 s) of a first validation, or of ``import nbformat``, for an ``iri``
format check falnb never uses.  Every falnb path that imports jsonschema (validation, the quickstart's
nbformat, the bench's children) goes through :func:`import_jsonschema` first.
"""

from __future__ import annotations

import sys

__all__ = ["import_jsonschema"]


def import_jsonschema() -> None:
    """Import jsonschema with ``rfc3987_syntax`` blocked, only while jsonschema imports and only when nothing
    imported either yet (a process that already has them keeps them)."""
    if "jsonschema" in sys.modules:
        return
    blocked = "rfc3987_syntax" not in sys.modules
    if blocked:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # (an ImportError: jsonschema skips it)
    try:
        import jsonschema  # noqa: F401
    finally:
        if blocked and sys.modules.get("rfc3987_syntax", 0) is None:
            del sys.modules["rfc3987_syntax"]
