"""What the form leaves behind: results shown in the cell's output (saved with the notebook), the
equivalent ``%%falimage`` cell, and the history that re-opens earlier results without paying again.

A mixin of :class:`~falnb.notebook._form.FalForm`: the methods below are the form's own (``form.reopen(0)``),
kept here so the form's module holds only its controls and the generate/cancel wiring.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from typing import TYPE_CHECKING, Any

from .._exceptions import FalnbError
from ._form_cell import falimage_cell, insert_cell_js
from ._form_fields import MAX_FORM_N, ParamField, SizeControl
from ._form_history import History, HistoryItem
from ._form_media import PINNED, output_bundles
from ._form_status import error_text, markup

if TYPE_CHECKING:
    import ipywidgets as widgets

    from .._client import Client
    from ..catalog._catalog import Catalog
    from ..results._generation import Generation
    from ..results._image import Image
    from ._form_pictures import Choice, PicturePickers

__all__ = ["FormOutputs"]

#: what the "Copy as %%falimage cell" page script reports, in words
_COPIED = {
    "inserted": "inserted below the form's cell; its text is also shown below",
    "copied": "copied to the clipboard: paste it into a new cell (or run form.insert_cell() in a cell "
              "to have it inserted); its text is also shown below",
    "shown": "the browser did not allow the clipboard: copy its text from the box below (or run "
             "form.insert_cell() in a cell)",
}


class FormOutputs:
    """Show in notebook output, Copy as %%falimage cell, and the history (mixed into the form)."""

    # set by the form
    client: Client
    catalog: Catalog
    result: Generation | None
    history: History
    _listed: list[HistoryItem]
    pinned: list[Generation]
    status: str
    output_area: widgets.Output
    cell_box: widgets.Textarea
    history_picker: widgets.Dropdown
    reopen_button: widgets.Button
    show_button: widgets.Button
    caption_label: widgets.Label
    cost_label: widgets.Label
    model_picker: widgets.Dropdown
    prompt_box: widgets.Textarea
    n_box: widgets.BoundedIntText
    seed_box: widgets.Text
    extra_box: widgets.Text
    size_control: SizeControl
    fields: dict[str, ParamField]
    _script: widgets.Output
    pictures: PicturePickers
    _not_copied: list[str]
    _copy_token: str
    _handles: tuple[Any, Any] | None
    _lock: threading.Lock
    _quiet: bool

    if TYPE_CHECKING:  # the form's own methods, used here
        @property
        def running(self) -> bool: ...

        def settings(self) -> dict[str, Any]: ...

        def update_estimate(self) -> str: ...


        def _show(self, images: list[Image]) -> None: ...

        def _pick(self, model: str) -> str: ...

        def _picture_choices(self) -> list[Choice]: ...

        def picture_words(self) -> tuple[list[str], list[str]]: ...

        def _apply_pictures(self, params: dict[str, Any]) -> None: ...

        def _restore_pictures(self, gen: Generation) -> None: ...

    def _apply(self, settings: dict[str, Any]) -> None:
        """Show ``settings`` (``model``, ``prompt``, ``size``, ``n``, ``seed``, params) in the controls."""
        settings = dict(settings)
        params = dict(settings.pop("params", None) or {})
        settings.pop("allow_unknown", None)  # names outside the catalog land in "other inputs", sent as is
        if "model" in settings:
            self.model_picker.value = self._pick(str(settings.pop("model")))
        if "prompt" in settings:
            self.prompt_box.value = str(settings.pop("prompt") or "")
        if settings.get("size") is not None:
            self.size_control.set(settings["size"])
        settings.pop("size", None)
        if "n" in settings:
            self.n_box.value = max(1, min(MAX_FORM_N, int(settings.pop("n"))))
        if "seed" in settings:
            seed = settings.pop("seed")
            self.seed_box.value = "" if seed is None else str(seed)
        params.update(settings)
        extra: dict[str, Any] = {}
        self._apply_pictures(params)
        for name, f in self.fields.items():
            f.set(params.pop(name, None))
        extra.update(params)
        self.extra_box.value = json.dumps(extra) if extra else ""

    # -- results that persist -----------------------------------------------------------------

    def show_result(self) -> bool:
        """Put the current result into the cell's output, where it is saved with the notebook.

        Each result shown is added (one caption line and one row of the picture sheet each).
        Returns False when there is nothing to show yet.
        """
        if self.result is None:
            self.status = "nothing to show yet: generate first"
            return False
        if self.result not in self.pinned:
            self.pinned.append(self.result)
            del self.pinned[:-PINNED]  # the output shows the latest ones: it stays small, and so does memory
        where = self._render_pinned()
        self.status = f"shown {where} ({len(self.pinned)} result(s)); saved with the notebook"
        return True

    def _render_pinned(self) -> str:
        caption, picture = output_bundles(self.pinned)
        if self._handles is not None:
            self._handles[0].update(caption, raw=True)
            self._handles[1].update(picture, raw=True)
            return "in this cell's output"
        self.output_area.outputs = tuple({"output_type": "display_data", "data": b, "metadata": {}}
                                         for b in (caption, picture))
        return "below the form"

    def cell_text(self) -> str:
        """The ``%%falimage`` cell with the current settings (it hits the same cache entry)."""
        s = self.settings()
        pictures, self._not_copied = self.picture_words()
        return falimage_cell(s["prompt"], model=s["model"], n=s["n"], size=s["size"], seed=s["seed"],
                             params=s["params"], allow_unknown=bool(s.get("allow_unknown")), pictures=pictures)

    def insert_cell(self) -> str:
        """Insert the ``%%falimage`` cell below the running cell (call it from a cell); returns its text."""
        text = self.cell_text()
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            shell.set_next_input(text, replace=False)
        return text

    def copy_cell(self) -> str | None:
        """The "Copy as %%falimage cell" button: insert the cell below (or copy it), and show its text."""
        try:
            text = self.cell_text()
        except FalnbError as exc:
            self.status = error_text(exc)
            return None
        self.cell_box.value = text
        self.cell_box.layout.display = ""
        token = uuid.uuid4().hex
        self._copy_token = token
        script = {"application/javascript": insert_cell_js(text, token), "text/plain": ""}
        self._script.outputs = ({"output_type": "display_data", "metadata": {}, "data": script},)
        # what the page script did comes back through the hidden report box (see _on_copy_report)
        self.status = "%%falimage cell: its text is shown below" + self._not_copied_note()
        return text

    def _on_copy_report(self, change: dict[str, Any]) -> None:
        """The page script's report (``token:how``): the status says what really happened."""
        token, _, how = str(change["new"]).partition(":")
        if token != self._copy_token or how not in _COPIED:
            return
        self.status = "%%falimage cell: " + _COPIED[how] + self._not_copied_note()

    def _not_copied_note(self) -> str:
        missing = getattr(self, "_not_copied", [])
        return f" · not in the cell (a cell cannot name it): {'; '.join(missing)}" if missing else ""

    # -- history ------------------------------------------------------------------------------

    def refresh_history(self) -> None:
        """List the session's generations (this form's, and the client's from elsewhere)."""
        listed = self.history.merge(list(self.client.history), self.catalog)
        if not listed:
            return
        with self._lock:
            self._listed = listed
        self.pictures.set_choices(self._picture_choices())  # the pickers offer these results' pictures
        items = list(enumerate(listed))
        options = [(item.label(i + 1, self.catalog), i) for i, item in reversed(items)]
        self.history_picker.options = options
        self.history_picker.value = options[0][1]
        self.reopen_button.disabled = False

    def _reopen_selected(self) -> None:
        index = self.history_picker.value
        if not isinstance(index, int) or index < 0:
            return
        if self.running:
            self.status = "wait for the running generation (or cancel it) before re-opening"
            return
        try:
            self.reopen(index)
        except LookupError:  # pruned from the cache: reopen() said so on the status line
            pass

    def reopen(self, index: int) -> Generation:
        """Show history item ``index`` (as last listed, oldest first) again and restore its settings;
        nothing is sent to fal."""
        if self.running:
            raise RuntimeError("wait for the running generation (or cancel it) before re-opening")
        with self._lock:
            item = self._listed[index]
        images, source = item.images(self.client)
        if not images and item.count:
            self.status = "no longer in the cache (pruned?): generate it again"
            raise LookupError(self.status)
        quiet, self._quiet = self._quiet, True
        try:
            self._apply(item.settings)
            self._restore_pictures(item.generation)
        except FalnbError:
            pass
        finally:
            self._quiet = quiet
        self.update_estimate()
        gen = item.generation if source == "memory" else dataclasses.replace(item.generation, images=images)
        self._show(images)
        self.result = gen
        self.caption_label.value = markup(gen.caption())
        self.cost_label.value = markup("cost: nothing (re-opened from " + (
            "the cache)" if source == "cache" else "this session's memory)"))
        self.status = f"re-opened from the {'cache' if source == 'cache' else 'session'}: " \
                                  f"{len(images)} image(s), nothing paid"
        self.show_button.disabled = False
        return gen

