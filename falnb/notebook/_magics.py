"""The notebook magics: ``%%falimage`` / ``%falimage``, ``%falconfig`` and ``%falform``.

``%load_ext falnb`` registers :class:`FalMagics`.  Loading is cheap: this module needs only IPython
and traitlets (already loaded in a kernel); the client, httpx and Pillow load on first use.

Configure with ``%config FalMagics.default_model = "flux-ultra"`` (or ``c.FalMagics.embed = "full"``
in ``ipython_config.py``); ``%falconfig`` shows the effective settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from IPython.core import magic_arguments as _ma
from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class, no_var_expand
from IPython.core.magic import line_cell_magic as _line_cell_magic
from IPython.core.magic import line_magic as _line_magic
from traitlets import Bool, Enum, Float, Int, TraitError, Unicode, observe, validate

from .._exceptions import FalnbError
from ..catalog import DEFAULT_MODEL
from ..results._render import EMBED_MODES, PREVIEW_FORMATS
from ._magic_args import (
    check_name,
    interpolate,
    parse_models,
    parse_params,
    prompt_text,
    prompts_of,
    split_options,
    usage_help,
)
from ._magic_config import in_range
from ._magic_pictures import PICTURE_HELP, cell_label, picture_params

if TYPE_CHECKING:
    from .._client import Client
    from ..results._render import DisplaySettings

__all__ = ["FalMagics", "load_ipython_extension", "magics_of", "unload_ipython_extension"]

_NAME = "FalMagics"
_F = TypeVar("_F", bound=Callable[..., Any])


class _Decorator(Protocol):
    def __call__(self, func: _F, /) -> _F: ...


def magic_arguments() -> _Decorator:
    """IPython's ``magic_arguments`` decorator, typed."""
    return cast(_Decorator, _ma.magic_arguments())  # type: ignore[no-untyped-call]


def argument(*names: str, **kwargs: Any) -> _Decorator:
    """IPython's ``argument`` decorator (argparse's ``add_argument``), typed."""
    return cast(_Decorator, _ma.argument(*names, **kwargs))  # type: ignore[no-untyped-call]


def line_cell_magic(func: _F) -> _F:
    return cast(_F, _line_cell_magic(func))


def line_magic(func: _F) -> _F:
    return cast(_F, _line_magic(func))


def _parser(method: Any) -> Any:
    return method.parser


@magics_class
class FalMagics(Magics):
    """Generate images with fal.ai from notebook cells.

    ``%%falimage [options]`` with the prompt as the cell body, or ``%falimage [options] PROMPT``.
    """

    default_model = Unicode(DEFAULT_MODEL, help="Model used when a cell gives no --model "
                            "(an alias such as 'flux-ultra' or a fal id).").tag(config=True)
    default_size = Unicode(None, allow_none=True, help="Size used when a cell gives no --size: 'WxH', "
                           "'W:H' or a preset; None leaves each model's own default.").tag(config=True)
    embed = Enum(list(EMBED_MODES), "preview", help="What goes into the notebook: 'preview' (a capped "
                 "JPEG/WebP grid), 'full' (the original bytes) or 'none' (captions only).").tag(config=True)
    preview_size = Int(512, help="Long side of each preview image, in pixels.").tag(config=True)
    preview_format = Enum(list(PREVIEW_FORMATS), "jpeg", help="Preview encoding: 'jpeg' (renders "
                          "everywhere), 'webp' (smaller) or 'png'.").tag(config=True)
    preview_quality = Int(80, help="JPEG/WebP quality of previews, 1-95.").tag(config=True)
    grid_columns = Int(4, help="Images per row in the preview grid; 0 shows each image as its own "
                       "output.").tag(config=True)
    page_size = Int(24, help="Pictures on a page of a --batch cell (whole prompts); the cell shows the first "
                    "page, NAME.show(page=2) the next (with --out NAME).").tag(config=True)
    batch_concurrency = Int(64, help="Prompts of a --batch submitted at once (fal queues the rest; queue time is "
                            "not billed).").tag(config=True)
    show_progress = Bool(True, help="Show live progress while waiting.").tag(config=True)
    short_errors = Bool(True, help="Errors in one or two lines; False shows full tracebacks."
                        ).tag(config=True)
    cache_dir = Unicode(None, allow_none=True, help="Response cache directory; None: FALNB_CACHE_DIR or "
                        "the user cache dir.").tag(config=True)
    offline = Bool(None, allow_none=True, help="Run on the embedded fal emulator; None: FALNB_OFFLINE."
                   ).tag(config=True)
    timeout = Float(600.0, allow_none=True, help="Longest wait for each fal request, in seconds (None: "
                    "no bound).").tag(config=True)
    proxy_url = Unicode(None, allow_none=True, help="A team's LiteLLM proxy (None: LITELLM_PROXY_API_BASE without "
                        "a fal key); its key: LITELLM_PROXY_API_KEY (%env), never a setting.").tag(config=True)
    proxy_route = Enum(["auto", "passthrough", "images"], None, allow_none=True, help="Through a proxy: its /fal_ai "
                       "(fal's queue), 'images' (no cancel) or 'auto'; None: FALNB_PROXY_ROUTE.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._client: Client | None = None
        self._own_client: Client | None = None
        self._offline_client: Client | None = None

    # -- validation of the traits ----------------------------------------------------------------

    @validate("preview_size")
    def _check_preview_size(self, proposal: Any) -> int:
        return in_range("preview_size", proposal["value"], 32, 4096)

    @validate("preview_quality")
    def _check_quality(self, proposal: Any) -> int:
        return in_range("preview_quality", proposal["value"], 1, 95)

    @validate("grid_columns")
    def _check_columns(self, proposal: Any) -> int:
        return in_range("grid_columns", proposal["value"], 0, 64)

    @validate("page_size")
    def _check_page_size(self, proposal: Any) -> int:
        return in_range("page_size", proposal["value"], 1, 256)

    @validate("batch_concurrency")
    def _check_concurrency(self, proposal: Any) -> int:
        return in_range("batch_concurrency", proposal["value"], 1, 256)

    @validate("timeout")
    def _check_timeout(self, proposal: Any) -> float | None:
        value = proposal["value"]
        if value is not None and not value > 0:
            raise TraitError(f"timeout must be a positive number of seconds (or None), not {value!r}")
        return value  # type: ignore[no-any-return]

    @validate("default_model")
    def _check_model(self, proposal: Any) -> str:
        value = str(proposal["value"]).strip()
        if not value:
            raise TraitError("default_model must name a model, e.g. 'flux-schnell'")
        return value

    @observe("cache_dir", "offline", "proxy_url", "proxy_route")
    def _forget_client(self, change: Any) -> None:
        self._own_client = self._offline_client = None

    # -- the client --------------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The client cells use: one set with ``magics.client = ...`` (tests), else one built from
        the traits (the process's default client when they are left at their defaults)."""
        if self._client is not None:
            return self._client
        if self._own_client is None:
            if self.offline is None and self.cache_dir is None and self.proxy_url is None and self.proxy_route is None:
                from .._client import default_client

                self._own_client = default_client()
            else:
                from .._client import Client

                self._own_client = Client(offline=self.offline, cache=self.cache_dir or True,
                                          proxy_url=self.proxy_url, proxy_route=self.proxy_route)
        return self._own_client

    @client.setter
    def client(self, value: Client | None) -> None:
        self._client = value

    def _client_for(self, offline: bool) -> Client:
        client = self.client
        if not offline or client.offline:
            return client
        if self._offline_client is None:
            from .._client import Client

            self._offline_client = Client(offline=True, cache=self.cache_dir or True)
        return self._offline_client

    @property
    def _user_ns(self) -> dict[str, Any]:
        if self.shell is None:
            raise UsageError("falnb's magics need an IPython shell")
        return cast(dict[str, Any], self.shell.user_ns)

    def display_settings(self, embed: str | None = None) -> DisplaySettings:
        from ..results._render import DisplaySettings

        return DisplaySettings(embed=embed or self.embed, preview_size=self.preview_size,
                               preview_format=self.preview_format, preview_quality=self.preview_quality,
                               grid_columns=self.grid_columns, page_size=self.page_size)

    # -- %%falimage ------------------------------------------------------------------------------------

    @magic_arguments()
    @argument("-m", "--model", metavar="MODEL[,MODEL...]",
              help="model alias or fal id; several, comma-separated, are compared side by side "
                   "(default: FalMagics.default_model)")
    @argument("-s", "--size", help="'WxH' (1024x768), 'W:H' (16:9) or a preset (landscape_4_3); "
                                   "mapped to each model's own size field")
    @argument("-n", type=int, default=1, help="number of images (default 1)")
    @argument("--seed", type=int, help="seed, for reproducible pictures")
    @argument("-p", "--param", action="append", metavar="KEY=VALUE",
              help="a model parameter (repeatable); VALUE is read as JSON when it parses, else a string")
    @argument("--allow-unknown", action="store_true",
              help="send -p names the model's catalog entry does not list, as they are (a deliberate new input)")
    @argument("--refresh", action="store_true", help="pay again and replace the cached result")
    @argument("--no-cache", action="store_true", help="neither read nor write the cache")
    @argument("--out", metavar="NAME", help="store the result in this notebook variable (a Generation; "
                                            "a dict by model with several models; with --batch a list whose "
                                            ".show(page=N) shows the other pages)")
    @argument("--embed", choices=EMBED_MODES, help="preview (a capped grid), full (original bytes) or none")
    @argument("--timeout", type=float, metavar="SECONDS", help="longest wait for each fal request")
    @argument("--batch", metavar="VAR", help="generate every prompt of the list VAR; a non-empty cell body "
                                             "is then a template where {item} is the list element")
    @argument("--offline", action="store_true", help="run this cell on the embedded fal emulator")
    @argument("--image", action="append", metavar="PICTURE", help=PICTURE_HELP)
    @argument("--mask", action="append", metavar="PICTURE", help="the mask of an inpainting model, as --image")
    @argument("prompt", nargs="*", help="the prompt (line form); {name} is filled from the notebook, "
                                        "{{ and }} are literal braces")
    @no_var_expand
    @line_cell_magic
    def falimage(self, line: str, cell: str | None = None) -> None:
        """Generate images with fal.ai; the cell body (or the rest of the line) is the prompt.

        Example:

            %%falimage --model flux-schnell,flux-ultra --size 16:9 -n 2 --seed 7
            a lighthouse at dusk, {style}
        """
        self._guarded(self._falimage, line, cell)

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except FalnbError as exc:
            exc.for_front_end("cell")  # its hint names the cell's options (--refresh), not the API's
            if not self.short_errors and self.shell is not None:
                _full_tracebacks(exc, self.shell)
            raise

    def _falimage(self, line: str, cell: str | None) -> None:
        parser = _parser(self.falimage)
        tokens, rest = split_options(line, parser)
        args = parser.parse_args(tokens)
        ns = self._user_ns

        if cell is not None and rest:
            raise UsageError(f"unexpected text on the %%falimage line: {rest!r}; options go on the line, "
                             "the prompt in the cell body")
        template = prompt_text(cell if cell is not None else rest)
        pictures = picture_params(args.image, args.mask, ns)  # before anything else is read: nothing sent
        prompts = prompts_of(template, args.batch, ns) if template or args.batch or not pictures else [""]
        models = parse_models(args.model, self.default_model)
        params = parse_params(args.param)
        size = args.size if args.size is not None else self.default_size
        timeout = self.timeout if args.timeout is None else args.timeout
        if timeout is not None and not timeout > 0:
            raise UsageError(f"--timeout {args.timeout}: give a positive number of seconds")
        out = check_name(args.out, "--out") if args.out is not None else None
        client = self._client_for(args.offline)

        from ._magic_run import plan_jobs, run_cell

        jobs = plan_jobs(client, prompts, models, n=args.n, size=size, seed=args.seed, params=params | pictures,
                         allow_unknown=args.allow_unknown)
        batch = args.batch is not None

        def keep(value: Any) -> None:
            errors = sum(1 for j in jobs if isinstance(j.result, FalnbError))
            if out is not None and errors < len(jobs):  # a lone failure leaves the variable alone
                self._user_ns[out] = value

        results = run_cell(client, jobs, refresh=args.refresh, use_cache=not args.no_cache, timeout=timeout,
                           settings=self.display_settings(args.embed), batch=batch,
                           concurrency=self.batch_concurrency if batch else len(jobs),
                           show_progress=self.show_progress, live=self._live_display(), keep=keep, name=out,
                           origin=cell_label(self.shell))
        errors = [r for r in results if isinstance(r, FalnbError)]
        if errors:
            raise errors[0]

    def _live_display(self) -> bool:
        """Whether the front end updates outputs in place (a kernel), not a terminal printing each update."""
        from IPython.core.displaypub import DisplayPublisher

        pub = getattr(self.shell, "display_pub", None)
        return pub is not None and type(pub) is not DisplayPublisher

    # -- %falconfig ---------------------------------------------------------------------------------

    @line_magic
    def falconfig(self, line: str = "") -> None:
        """Show falnb's effective settings, the key's source (never the key) and whether it is offline.

        ``%falconfig name=value ...`` sets FalMagics traits first (like ``%config FalMagics.name = value``).
        """
        from ._magic_config import configure

        self._guarded(configure, self, line)

    def describe(self) -> str:
        """The effective settings as text (what ``%falconfig`` prints)."""
        from ._magic_config import describe

        return describe(self)

    # -- %falform -----------------------------------------------------------------------------------

    @magic_arguments()
    @argument("-m", "--model", help="model (default: FalMagics.default_model)")
    @argument("-s", "--size", help="size: 'WxH', 'W:H' or a preset")
    @argument("-n", type=int, help="number of images")
    @argument("--seed", type=int, help="seed")
    @argument("-p", "--param", action="append", metavar="KEY=VALUE", help="a model parameter (repeatable)")
    @argument("--offline", action="store_true", help="use the embedded fal emulator")
    @argument("--out", metavar="NAME", help="store the form object in this variable")
    @argument("prompt", nargs="*", help="a prompt to start with")
    @no_var_expand
    @line_magic
    def falform(self, line: str = "") -> None:
        """A widget form to generate images (prompt box, model, size, a Generate button)."""
        self._guarded(self._falform, line)

    def _falform(self, line: str) -> None:
        parser = _parser(self.falform)
        tokens, rest = split_options(line, parser)
        args = parser.parse_args(tokens)
        prompt = interpolate(rest, self._user_ns) if rest else None
        out = check_name(args.out, "--out") if args.out is not None else None
        params = parse_params(args.param)
        client = self._client_for(args.offline)
        model = parse_models(args.model, self.default_model)
        if len(model) > 1:
            raise UsageError("%falform takes one model")
        client.catalog.resolve(model[0])  # an unknown model fails here, in one line
        from ._form import form

        size = args.size if args.size is not None else self.default_size
        own = {"prompt": prompt, "size": size, "n": args.n, "seed": args.seed}
        defaults = {**params, **{k: v for k, v in own.items() if v is not None}}
        obj = form(model[0], client=client, **defaults)
        if out is not None:
            self._user_ns[out] = obj
        if obj is not None:
            from IPython.display import display

            display(obj)  # type: ignore[no-untyped-call]


def _full_tracebacks(exc: BaseException, shell: Any) -> None:
    """Make this one exception render with IPython's full traceback (``short_errors = False``)."""

    def full() -> list[str]:
        return list(shell.InteractiveTB.structured_traceback(type(exc), exc, exc.__traceback__))

    setattr(exc, "_render_traceback_", full)  # noqa: B010  (this instance only, not the class)


usage_help(FalMagics.falimage, cell=True)
usage_help(FalMagics.falform, cell=False)


def magics_of(shell: Any) -> FalMagics:
    """The FalMagics instance registered in ``shell`` (after ``%load_ext falnb``)."""
    magics = shell.magics_manager.registry.get(_NAME)
    if not isinstance(magics, FalMagics):
        raise LookupError("falnb's magics are not loaded; run %load_ext falnb")
    return magics


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext falnb``: register ``%%falimage``, ``%falimage``, ``%falconfig`` and ``%falform``."""
    ipython.register_magics(FalMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext falnb``: remove the magics and the configurable."""
    manager = ipython.magics_manager
    magics = manager.registry.pop(_NAME, None)
    if magics is None:
        return
    for kind, table in magics.magics.items():
        for name, func in table.items():
            if manager.magics.get(kind, {}).get(name) == func:
                del manager.magics[kind][name]
    if magics in getattr(ipython, "configurables", []):
        ipython.configurables.remove(magics)
