"""Every private hook the defect tests use, in one place (issue 12 moves falnb's private modules).

After the move, update the names here and nothing else.  None of these reach into falnb's private
modules by import path; each one depends on a name that is not a documented API:

* ``magics_of``: the registered ``FalMagics`` instance, found by its registry name (IPython keys a
  Magics instance by its class name; ``%config FalMagics...`` uses the same name).  The tests set
  ``magics.client`` on it, which FalMagics documents as the way tests give cells a client.
* ``live_widgets``: how many ipywidgets are alive (ipywidgets 8 keeps them in
  ``ipywidgets.widgets.widget._instances``; ``Widget.widgets`` is its deprecated alias).
"""

from __future__ import annotations

from typing import Any


def magics_of(shell: Any) -> Any:
    """The FalMagics instance of ``shell`` (after ``%load_ext falnb``)."""
    return shell.magics_manager.registry["FalMagics"]


def live_widgets() -> int:
    """The number of ipywidgets alive in this process (each one is a frontend comm)."""
    from ipywidgets.widgets import widget

    return len(widget._instances)
