"""The form's model picker and the controls that follow the model: the size control, one field per
catalog parameter (the "Advanced" section) and the seed box's state.

A mixin of :class:`~falnb.notebook._form.FalForm`.  Switching models rebuilds these controls, carries
over the values that fit the new model, and closes the old widgets (with their children, layouts and
styles: each is a comm the frontend keeps until closed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from .._exceptions import FalnbError, InputError
from ._form_fields import ParamField, SizeControl, close_tree

if TYPE_CHECKING:
    from ..catalog._catalog import Catalog, ModelSpec
    from ._form_pictures import PicturePickers

__all__ = ["ModelControls"]


class ModelControls:
    """The controls that depend on the model (mixed into the form)."""

    # set by the form
    catalog: Catalog
    spec: ModelSpec
    _options: list[tuple[str, str]]
    model_picker: widgets.Dropdown
    size_row: widgets.HBox
    size_control: SizeControl
    fields: dict[str, ParamField]
    params_box: widgets.VBox
    seed_box: widgets.Text
    _quiet: bool

    if TYPE_CHECKING:  # the form's own methods, used here
        def _on_change(self, _: Any = None) -> None: ...

        def _build_pictures(self) -> None: ...

        pictures: PicturePickers

    def _pick(self, model: str) -> str:
        """The picker's name for ``model`` (an alias, id or route), adding an option when it has none."""
        names = [v for _, v in self._options]
        if model in names:
            return model
        spec = self.catalog.resolve(model)  # UnknownModelError, with a "did you mean", for a typo
        if spec.alias in names and not spec.defaults:
            return spec.alias
        self._options.append((f"{spec.title} ({spec.id})" if spec.title != spec.id else spec.id, model))
        if hasattr(self, "model_picker"):
            self.model_picker.options = list(self._options)
        return model

    def _build_model_widgets(self, carry: dict[str, Any] | None = None) -> None:
        spec = self.spec
        old_size = self.size_control.value if carry is not None else None
        self.size_control = SizeControl(spec)
        if old_size is not None:
            try:
                self.size_control.set(old_size)  # keep the shape when switching models
            except FalnbError:
                pass
        self.size_control.observe(self._on_change)
        self.size_row.children = [self.size_control.widget]
        self.fields = {}
        self._build_pictures()  # the model's picture fields get pickers, not text boxes
        for p in spec.params:
            if p.name == "seed" or p.name in self.pictures.fields:
                continue
            f = ParamField(p, spec.defaults.get(p.name, p.default))
            if carry and p.name in carry:
                try:
                    f.set(carry[p.name])
                except (FalnbError, ValueError, TypeError):
                    pass
            f.observe(self._on_change)
            self.fields[p.name] = f
        shown = list(self.fields.values())
        self.params_box.children = [f.widget for f in shown] or [
            widgets.Label("falnb's catalog lists no parameters for this model: use 'other inputs'")]
        seed = spec.param("seed")
        self.seed_box.disabled = spec.known and seed is None
        self.seed_box.placeholder = ("not taken by this model" if self.seed_box.disabled
                                     else f"{seed.default} (the model's fixed default)"
                                     if seed is not None and seed.default is not None else "random")
        if self.seed_box.disabled:
            self.seed_box.value = ""

    def _on_model(self, change: dict[str, Any]) -> None:
        carry: dict[str, Any] = {}
        for name, f in self.fields.items():
            try:
                if f.changed():
                    carry[name] = f.value
            except InputError:
                pass
        old = [self.size_control.widget, *self.params_box.children]
        self.spec = self.catalog.resolve(str(change["new"]))
        quiet, self._quiet = self._quiet, True
        try:
            self._build_model_widgets(carry)
        finally:
            self._quiet = quiet
        for w in old:  # with their children, layouts and styles: each is a frontend comm
            close_tree(w)
        self._on_change()

