"""``falnb.form()``: an ipywidgets form for exploring models, for people who would rather click than type.

Pick a model (catalog aliases included), write a prompt, set the size (aspect ratios or presets and
pixels, as the model takes them), ``n``, a seed and the model's own parameters (the "Advanced"
section, generated from the catalog), then **Generate**.  The work runs on falnb's private loop,
so the kernel stays free; **Cancel** sends fal's cancel.  The status line follows the request
(queued with its position, running with fal's latest log line, done, cached, or the error), the
estimated cost shows before and after, and the pictures land in the gallery.

Widget state is not saved in the .ipynb, so: **Show in notebook output** writes the result into
the cell's own output (it persists), and **Copy as %%falimage cell** copies the equivalent cell to
the clipboard (or inserts it below, where JupyterLab or Notebook 7 expose their app to the page:
``expose_app_in_browser``, off by default) and says which; ``form.insert_cell()`` run in a cell
inserts it in any frontend.  The history re-opens any of the session's generations from the cache
without paying again.

Only core widgets are used, so it works wherever ipywidgets 8 does.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from .._client import default_client
from .._exceptions import FalnbError, InputError
from ._form_fields import (
    LABEL_STYLE,
    MAX_FORM_N,
    ParamField,
    SizeControl,
    model_options,
    read_extra,
    read_seed,
)
from ._form_history import History
from ._form_job import FormJob
from ._form_media import preview
from ._form_model import ModelControls
from ._form_outputs import FormOutputs
from ._form_pictures import PictureControls
from ._form_status import cancelled_text, cost_text, done_text, error_text, estimate_text, markup, plain, progress_text
from ._magic_args import prompt_text

if TYPE_CHECKING:
    from .._client import Client
    from ..catalog._catalog import ModelSpec
    from ..request._plan import Plan
    from ..results._generation import Generation
    from ..results._image import Image
    from ..results._progress import Progress

__all__ = ["MAX_FORM_N", "FalForm", "form"]

_OWN = ("prompt", "size", "n", "seed")


def form(model: str | None = None, *, client: Client | None = None, **defaults: Any) -> FalForm:
    """A form for ``model`` (default: the first catalogued model), pre-filled from ``defaults``.

    ``defaults``: ``prompt``, ``size`` (``"WxH"``, ``"W:H"`` or a preset), ``n``, ``seed`` and any model
    parameter (e.g. ``guidance_scale=3``); a name the catalog does not know is forwarded to fal
    unchanged.  ``client``: a :class:`falnb.Client` (default: the one behind ``falnb.generate``).
    """
    return FalForm(model, client=client, **defaults)


class FalForm(ModelControls, PictureControls, FormOutputs, widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no type information
    """The form (an ipywidgets ``VBox``).  See :func:`form`; every control is an attribute."""

    def __init__(self, model: str | None = None, *, client: Client | None = None, **defaults: Any) -> None:
        super().__init__()
        self.client = client if client is not None else default_client()
        self.catalog = self.client.catalog
        self.result: Generation | None = None
        self.job: FormJob | None = None
        #: the session's generations, re-openable without paying (bounded; see ``_form_history``)
        self.history = History()
        self._listed: list[Any] = []  # the history items as the picker lists them
        self.pinned: list[Generation] = []
        self._lock = threading.Lock()
        self._outcome_lock = threading.Lock()
        self._reported = True  # the last job's outcome is on the status line (none ran yet)
        self._input_error = False  # the status line shows a mistake in the settings (it goes once fixed)
        self._quiet = False
        self._handles: tuple[Any, Any] | None = None

        self._options = model_options(self.catalog)
        name = self._pick(model or self._options[0][1])
        wide = widgets.Layout(width="100%", max_width="760px")
        self.model_picker = widgets.Dropdown(options=list(self._options), value=name, description="model",
                                             style=LABEL_STYLE, layout=widgets.Layout(width="560px"))
        self.prompt_box = widgets.Textarea(value=str(defaults.pop("prompt", "") or ""), description="prompt",
                                           placeholder="describe the picture", rows=3, style=LABEL_STYLE,
                                           layout=wide)
        self.n_box = widgets.BoundedIntText(value=1, min=1, max=MAX_FORM_N, description="n",
                                            tooltip=f"pictures to make, 1 to {MAX_FORM_N}", style=LABEL_STYLE,
                                            layout=widgets.Layout(width="230px"))
        self.seed_box = widgets.Text(value="", description="seed", placeholder="random",
                                     style={"description_width": "60px"},
                                     layout=widgets.Layout(width="300px"),
                                     tooltip="same seed, same picture; empty for a random one")
        self.extra_box = widgets.Text(value="", description="other inputs", style=LABEL_STYLE, layout=wide,
                                      placeholder='JSON sent to fal as is, e.g. {"new_param": 1}',
                                      tooltip="inputs falnb's catalog does not list, forwarded unchanged")
        self.size_row = widgets.HBox()
        self.pictures_box = widgets.VBox()  # the model's picture pickers (see _form_pictures)
        self.params_box = widgets.VBox()
        self.advanced = widgets.Accordion(children=[widgets.VBox([self.params_box, self.extra_box])],
                                          titles=("Advanced: model parameters",), selected_index=None,
                                          layout=wide)

        self.generate_button = widgets.Button(description="Generate", button_style="primary", icon="play",
                                              tooltip="start the request; the kernel stays free")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True,
                                            tooltip="cancel the fal request(s)")
        # HTML, not Label: a long error wraps, and markup() keeps MathJax off amounts ("$0.003 ... $0.12")
        self.estimate_label = widgets.HTML("")
        self.status_label = widgets.HTML(markup("ready"), layout=wide)
        self.cost_label = widgets.HTML("")
        self.caption_label = widgets.HTML("")
        self.slots = [widgets.Image(layout=widgets.Layout(max_width="256px", max_height="256px",
                                                          object_fit="contain", margin="2px"))
                      for _ in range(MAX_FORM_N)]
        self.gallery = widgets.HBox([], layout=widgets.Layout(flex_flow="row wrap", max_width="800px"))
        self.show_button = widgets.Button(description="Show in notebook output", icon="thumb-tack",
                                          disabled=True, layout=widgets.Layout(width="auto"),
                                          tooltip="put the result into this cell's output: it is saved "
                                                  "with the notebook")
        self.copy_button = widgets.Button(description="Copy as %%falimage cell", icon="copy",
                                          layout=widgets.Layout(width="auto"),
                                          tooltip="copy a %%falimage cell with these settings (form.insert_cell() in a "
                                                  "cell inserts it below)")
        self.cell_box = widgets.Textarea(value="", rows=3, layout=widgets.Layout(
            width="100%", max_width="760px", display="none"))
        self.history_picker = widgets.Dropdown(options=[("(no generations yet)", -1)], value=-1,
                                               description="history", style=LABEL_STYLE,
                                               layout=widgets.Layout(width="560px"))
        self.reopen_button = widgets.Button(description="Re-open", icon="history", disabled=True,
                                            tooltip="show it again from the cache: nothing is paid")
        self.refresh_button = widgets.Button(icon="refresh", layout=widgets.Layout(width="36px"),
                                             tooltip="list generations made elsewhere in this session")
        self.output_area = widgets.Output()  # fallback when the form has no cell output of its own
        self._script = widgets.Output(layout=widgets.Layout(height="0px", overflow="hidden"))
        # the copy script's report channel: it types "token:how" here (see _form_cell.insert_cell_js)
        self._copy_report = widgets.Text(layout=widgets.Layout(display="none"))
        self._copy_token = ""

        self.spec: ModelSpec = self.catalog.resolve(name)
        self.size_control = SizeControl(self.spec)
        self.fields: dict[str, ParamField] = {}
        self._build_model_widgets()

        self.children = [
            self.model_picker, self.pictures_box, self.prompt_box, self.size_row,
            widgets.HBox([self.n_box, self.seed_box]), self.advanced,
            widgets.HBox([self.generate_button, self.cancel_button, self.estimate_label],
                         layout=widgets.Layout(align_items="center")),
            self.status_label, self.gallery, self.caption_label, self.cost_label,
            widgets.HBox([self.show_button, self.copy_button]), self.cell_box,
            widgets.HBox([self.history_picker, self.reopen_button, self.refresh_button]),
            self.output_area, self._script, self._copy_report,
        ]
        self.add_class("falnb-form")
        for w, cls in ((self.model_picker, "falnb-model"), (self.prompt_box, "falnb-prompt"),
                       (self.n_box, "falnb-n"), (self.seed_box, "falnb-seed"),
                       (self.status_label, "falnb-status"), (self.gallery, "falnb-gallery"),
                       (self.estimate_label, "falnb-estimate"), (self.cost_label, "falnb-cost"),
                       (self.cell_box, "falnb-cell-text"), (self.history_picker, "falnb-history"),
                       (self._copy_report, "falnb-copy-report")):
            w.add_class(cls)

        self._apply(defaults)
        self.model_picker.observe(self._on_model, names="value")
        for w in (self.prompt_box, self.n_box, self.seed_box, self.extra_box):
            w.observe(self._on_change, names="value")
        self.generate_button.on_click(lambda _: self.generate())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.show_button.on_click(lambda _: self.show_result())
        self.copy_button.on_click(lambda _: self.copy_cell())
        self.reopen_button.on_click(lambda _: self._reopen_selected())
        self.refresh_button.on_click(lambda _: self.refresh_history())
        self._copy_report.observe(self._on_copy_report, names="value")
        self.refresh_history()
        self.update_estimate()

    def __repr__(self) -> str:
        return f"<falnb form: {self.model_picker.value}>"

    @property
    def status(self) -> str:
        """The status line as plain text."""
        return plain(str(self.status_label.value))

    @status.setter
    def status(self, text: str) -> None:
        self.status_label.value = markup(text)

    @property
    def estimate(self) -> str:
        """The estimated cost line as plain text."""
        return plain(str(self.estimate_label.value))

    @property
    def cost(self) -> str:
        """The cost line of the result shown, as plain text ("" while nothing is shown)."""
        return plain(str(self.cost_label.value))

    @property
    def caption(self) -> str:
        """The caption of the result shown, as plain text ("" while nothing is shown)."""
        return plain(str(self.caption_label.value))

    # -- display ---------------------------------------------------------------------------

    def _ipython_display_(self) -> None:
        """Show the form, then two (empty) outputs that "Show in notebook output" fills later."""
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)  # type: ignore[no-untyped-call]
        caption = display({"text/plain": ""}, raw=True, display_id=True)  # type: ignore[no-untyped-call]
        picture = display({"text/plain": ""}, raw=True, display_id=True)  # type: ignore[no-untyped-call]
        self._handles = (caption, picture)
        if self.pinned:
            self._render_pinned()

    # -- settings ----------------------------------------------------------------------------

    def _on_change(self, _: Any = None) -> None:
        if self._quiet:
            return
        self.update_estimate()
        if self._input_error and not self.running:  # the mistake the status line shows may be fixed now
            try:
                self.plan()
            except FalnbError as exc:
                self.status = error_text(exc)
            else:
                self._input_error = False
                self.status = "ready"

    def settings(self) -> dict[str, Any]:
        """The current settings: ``model``, ``prompt``, ``size``, ``n``, ``seed``, the changed ``params`` and,
        when the "other inputs" box holds any, ``allow_unknown``: their names, sent as they are.

        Raises an InputError for a seed or a JSON field that cannot be read.
        """
        seed = read_seed(self.seed_box.value) if not self.seed_box.disabled else None
        params = {name: f.value for name, f in self.fields.items() if f.changed()}
        extra = read_extra(self.extra_box.value)  # "sent to fal as is": deliberate names, not mistakes
        params.update(extra)
        return {"model": str(self.model_picker.value), "prompt": prompt_text(self.prompt_box.value),
                "n": int(self.n_box.value), "size": self.size_control.value, "seed": seed, "params": params,
                **({"allow_unknown": sorted(extra)} if extra else {})}

    def plan(self, settings: dict[str, Any] | None = None) -> Plan:
        """What Generate would send (validated against the catalog; nothing is sent)."""
        s = settings or self.settings()
        return self.client.plan(s["prompt"], model=s["model"], n=s["n"], size=s["size"], seed=s["seed"],
                                allow_unknown=s.get("allow_unknown", False), **s["params"], **self.pictures.inputs())

    def update_estimate(self) -> str:
        """Refresh and return the "estimated cost" text for the current settings."""
        try:
            s = self.settings()
            if not s["prompt"].strip() and not self.prompt_box.disabled:
                s["prompt"] = "(prompt)"  # the price does not depend on the words
            text = estimate_text(self.plan(s))
        except InputError as exc:
            text = "⚠ " + str(exc).replace("\n", " ")
        self.estimate_label.value = markup(text)
        return text

    # -- generate and cancel --------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.job is not None and not self.job.finished

    def generate(self) -> FormJob | None:
        """Start a generation with the current settings and return at once (the Generate button)."""
        if self.running:
            return self.job
        try:
            settings = self.settings()
            plan = self.plan(settings)
        except FalnbError as exc:
            self._input_error = True
            self.status = error_text(exc)
            return None
        self._input_error = False
        name = self._name()
        self._clear_result()  # the last pictures, cost and caption are not this request's
        self.status = f"{name}: starting…"
        self._set_running(True)
        with self._outcome_lock:
            self._reported = False
        job = FormJob(self.client, plan, on_progress=lambda p: self._on_progress(p, name),
                      on_done=lambda gen: self._on_done(gen, settings, plan, name),
                      on_error=self._on_error, on_cancelled=lambda text: self._on_cancelled(text, name))
        self.job = job
        return job.start()

    def cancel(self) -> bool:
        """Cancel the running generation (the Cancel button); fal's cancel goes out for its requests."""
        job = self.job
        with self._outcome_lock:  # the outcome, once shown, is never overwritten by "cancelling…"
            if job is None or self._reported:
                return False
            self.status = f"{self._name()}: cancelling…"
        return job.cancel()

    def wait(self, timeout: float | None = None) -> Generation | None:
        """Block until the current generation has finished (for scripts and tests); the result or None."""
        if self.job is not None and not self.job.wait(timeout):
            raise TimeoutError("the form's generation is still running")
        return self.result

    def _name(self) -> str:
        return self.spec.alias

    def _clear_result(self) -> None:
        self.result = None
        self.gallery.children = ()
        self.caption_label.value = self.cost_label.value = ""
        self.show_button.disabled = True

    def _set_running(self, running: bool) -> None:
        self.generate_button.disabled = running
        self.cancel_button.disabled = not running

    # the callbacks below run on falnb's loop thread: they only set widget traits

    def _on_progress(self, progress: Progress, name: str) -> None:
        with self._outcome_lock:
            if not self._reported:
                self.status = progress_text(progress, name)

    def _report(self, status: str) -> None:
        with self._outcome_lock:
            self._reported = True
            self.status = status
        self._set_running(False)

    def _on_done(self, gen: Generation, settings: dict[str, Any], plan: Plan, name: str) -> None:
        self._show(gen.images)
        self.result = gen
        cache = self.client.cache
        self.history.add(gen, settings, plan, cached=cache is not None and all(cache.has(r.key) for r in plan.requests))
        self.refresh_history()
        self.caption_label.value = markup(gen.caption())
        self.cost_label.value = markup(cost_text(gen))
        self.show_button.disabled = False
        self._report(done_text(gen, name))

    def _on_error(self, exc: BaseException) -> None:
        self._report(error_text(exc))

    def _on_cancelled(self, report: str, name: str) -> None:
        self._report(cancelled_text(report, name))

    def _show(self, images: list[Image]) -> None:
        for slot, img in zip(self.slots, images, strict=False):
            data, fmt = preview(img)
            slot.format = fmt
            slot.value = data
        self.gallery.children = self.slots[:len(images)]
