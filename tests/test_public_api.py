"""The public surface: one sorted ``__all__``, every module with its own, and a light import."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import falnb


def test_all_is_sorted_and_resolves() -> None:
    names = [n for n in falnb.__all__ if n != "__version__"]
    assert names == sorted(names, key=str)
    for name in falnb.__all__:
        assert getattr(falnb, name) is not None, name


#: the public names: changing this list is changing falnb's API (say so in the README and the changelog)
PUBLIC = [
    "AuthenticationError", "BudgetExceededError", "CacheError", "CacheWarning", "Client", "ConfigError",
    "ContentPolicyError", "FalError", "FalServerError", "FalValidationError", "FalnbError", "Generation", "Image",
    "ImageResponse", "InputError", "Interrupted", "MissingKeyError", "ModelSpec", "Param", "ParameterError", "Progress",
    "RateLimitError", "RequestCancelledError", "RequestNotFoundError", "RequestTimeoutError", "ResponseCache",
    "Run", "SizeError", "SubmitUncertainError", "TransportError", "UnknownModelError", "__version__", "aedit",
    "agenerate", "agenerate_many", "aimage_edit", "aimage_generation", "aremove_background", "aupscale", "edit",
    "form", "generate", "generate_many", "image_edit", "image_generation", "load_ipython_extension",
    "load_litellm_config", "models", "remove_background", "unload_ipython_extension", "upscale",
]


def test_public_names_are_exactly_these() -> None:
    assert falnb.__all__ == PUBLIC


def test_every_private_module_declares_all() -> None:
    for info in pkgutil.walk_packages(falnb.__path__, "falnb."):
        mod = importlib.import_module(info.name)
        assert isinstance(getattr(mod, "__all__", None), list), f"{info.name} has no __all__"


def test_exception_tree_is_documented() -> None:
    from falnb import _exceptions

    for name in _exceptions.__all__:
        cls = getattr(_exceptions, name)
        assert issubclass(cls, falnb.FalnbError)
        assert name in (_exceptions.__doc__ or ""), f"{name} missing from the hierarchy drawing"


def test_import_is_light() -> None:
    code = ("import sys, falnb; heavy = [m for m in ('httpx', 'IPython', 'PIL', 'ipywidgets', 'yaml') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import falnb pulled in {out}"


def test_load_ext_is_light() -> None:
    code = ("import sys; from IPython.core.interactiveshell import InteractiveShell; "
            "before = set(sys.modules); sh = InteractiveShell.instance(); sh.run_line_magic('load_ext', 'falnb'); "
            "heavy = [m for m in ('httpx', 'PIL', 'ipywidgets') if m in sys.modules and m not in before]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out.splitlines()[-1:] in ([], [""]), f"%load_ext falnb pulled in {out}"
