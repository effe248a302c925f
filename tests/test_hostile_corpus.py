"""Hostile inputs: a mistake costs nothing and reads in a few lines.

A table of bad inputs, one row each: prompts, models, sizes, ``n``, seeds, parameters, headers, timeouts,
cache paths, environment values, ``%%falimage`` lines (in a real IPython shell) and the form's fields.  Each
row asserts a short falnb error (a ``UsageError`` or a falnb error in a cell, an ``error:`` status line in the
form), at most 3 lines, and **zero requests sent**: a transport in front of the emulator counts every
request falnb makes, and the emulator's ledger counts the submits it received.

(``test_reliability_hostile.py`` is about hostile *answers*: fal's texts, URLs and JSON; this is about what
a user types.)  A row that meets one of issue 11's open defects is an expected failure while that defect's
own test in ``tests/defects`` is, and checked as soon as its fix lands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

import falnb
from falnb import Client, FalnbError, SubmitUncertainError
from falnb.notebook._form_status import plain

from ._cells import run as run_cell
from .test_simulation_fal import ClientSide, SimEmulator, defect_open

MODEL = "schnell"


@dataclass
class Ctx:
    """A client on the emulator over real HTTP (httpx and h11 validate what goes on the wire, as with fal),
    with every answered request counted on the client's side, and every call counted on the emulator's."""

    emu: SimEmulator
    url: str
    wire: ClientSide
    client: Client
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    made: list[Client] = field(default_factory=list)

    def fresh(self, **kw: Any) -> Client:
        """Another client on the same counted wire, built now (after the environment was changed)."""
        kw.setdefault("key", "sk-hostile")
        kw.setdefault("cache", self.tmp / "cache")
        kw.setdefault("queue_url", self.url)
        client = Client(transport=self.wire, **kw)
        self.made.append(client)
        return client

    def sent(self) -> int:
        """Requests that reached the emulator (any kind), answered requests, and submits it queued."""
        return sum(self.emu.record.calls.values()) + sum(self.wire.sent.values()) + self.emu.ledger.submits


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve_emulator: Callable[..., Any]) -> Iterator[Ctx]:
    emu = SimEmulator(latency=0.0)
    url = serve_emulator(emu).url
    wire = ClientSide(httpx.AsyncHTTPTransport())
    c = Ctx(emu, url, wire, Client(key="sk-hostile", queue_url=url, transport=wire, cache=tmp_path / "cache"),
            tmp_path, monkeypatch)
    yield c
    for client in [c.client, *c.made]:
        client.close()


def known(test: str) -> pytest.MarkDecorator:
    """An expected failure while issue 11's defect test ``test`` (in tests/defects) is still marked xfail."""
    return pytest.mark.xfail(defect_open(test), strict=True, reason=f"issue 11: tests/defects {test}")


def row(name: str, call: Any, defect_test: str | None = None) -> Any:
    return pytest.param(call, id=name, marks=[known(defect_test)] if defect_test else [])


def gen(**kw: Any) -> Callable[[Ctx], Any]:
    """``client.generate`` with these arguments (a prompt and ``schnell`` unless given)."""
    kw.setdefault("prompt", "a red fox")
    kw.setdefault("model", MODEL)
    return lambda c: c.client.generate(kw.pop("prompt"), **kw)


_D04 = "test_defect_04_{}_is_not_journaled_as_sent"
API = [
    # prompts
    row("prompt-empty", gen(prompt="")), row("prompt-blank", gen(prompt="  \n\t ")),
    row("prompt-none", gen(prompt=None)), row("prompt-int", gen(prompt=42)),
    row("prompt-bytes", gen(prompt=b"a fox")), row("prompt-list", gen(prompt=["a fox"])),
    # models
    row("model-empty", gen(model="")), row("model-unknown", gen(model="flux-ultraa")),
    # (model=None is no mistake since issue 11 #28: generate's default model, as the magic's)
    row("model-int", gen(model=7)), row("model-owner-only", gen(model="fal-ai/")),
    row("model-dotdot", gen(model="../../etc/passwd")), row("model-query", gen(model="fal-ai/flux/schnell?x=1")),
    row("model-url", gen(model="https://evil.example/fal-ai/flux")),
    # sizes
    row("size-zero", gen(size="0x0")), row("size-negative", gen(size="-5x5")), row("size-words", gen(size="big")),
    row("size-huge", gen(size="99999x99999")), row("size-ratio-zero", gen(size="1:0")),
    row("size-ratio-extreme", gen(size="1:1000000000"), "test_defect_13_extreme_ratio_is_refused_before_sending"),
    row("size-half", gen(size="1024x")),
    row("size-nan", gen(size="nanxnan")), row("size-tuple", gen(size=(1, 2, 3))), row("size-dict", gen(size={"w": 1})),
    row("size-aspect-on-image-size-model", gen(aspect_ratio="16:9"),
        "test_defect_13_aspect_ratio_on_an_image_size_model_is_refused"),
    # n
    row("n-zero", gen(n=0)), row("n-negative", gen(n=-1)), row("n-too-many", gen(n=1000)), row("n-float", gen(n=1.5)),
    row("n-text", gen(n="2")), row("n-bool", gen(n=True)), row("n-none", gen(n=None)),
    # seeds
    row("seed-negative", gen(seed=-1)), row("seed-huge", gen(seed=2**80)), row("seed-float", gen(seed=1.5)),
    row("seed-text", gen(seed="7")), row("seed-bool", gen(seed=True)), row("seed-nan", gen(seed=float("nan"))),
    # parameters
    row("param-wrong-type", gen(guidance_scale="high")), row("param-negative-steps", gen(num_inference_steps=-3)),
    row("param-huge-steps", gen(num_inference_steps=10**9)), row("param-bad-choice", gen(output_format="gif")),
    row("param-bool-as-text", gen(enable_safety_checker="maybe")),
    row("param-unknown-name", gen(guidance=3), "test_defect_12_unknown_parameter_name_is_refused_with_did_you_mean"),
    row("param-not-json", gen(loras={1, 2}), "test_defect_27_parameter_value_that_is_not_json"),
    row("param-object", gen(loras=object()), "test_defect_27_parameter_value_that_is_not_json"),
    row("num-images-and-n", gen(n=2, num_images=3)),
    # headers
    row("header-authorization", gen(extra_headers={"Authorization": "Key someone-elses"})),
    row("header-non-ascii", gen(extra_headers={"X-Fal-Queue-Priority": "lów"}), _D04.format("non_ascii_header_value")),
    row("header-crlf", gen(extra_headers={"X-Fal-Queue-Priority": "low\r\nX-Evil: 1"}),
        _D04.format("crlf_header_value")),
    row("header-bad-name", gen(extra_headers={"Bad Header": "x"}), _D04.format("invalid_header_name")),
    row("headers-not-a-mapping", gen(extra_headers=["X: 1"])),
    # timeouts
    row("timeout-negative", gen(timeout=-1), _D04.format("negative_timeout")),
    row("timeout-zero", gen(timeout=0), _D04.format("negative_timeout")),
    row("timeout-text", gen(timeout="soon"), _D04.format("negative_timeout")),
    row("timeout-nan", gen(timeout=float("nan")), _D04.format("negative_timeout")),
    # the many-prompt calls
    row("many-one-empty", lambda c: c.client.generate_many(["a fox", ""], model=MODEL)),
    row("many-one-none", lambda c: c.client.generate_many(["a fox", None], model=MODEL)),
    row("many-bad-n", lambda c: c.client.generate_many(["a fox", "a hare"], model=MODEL, n=0)),
    # cache paths
    row("cache-is-a-file", lambda c: (c.tmp / "f").write_text("x") and c.fresh(cache=c.tmp / "f").generate(
        "a fox", model=MODEL)),
    row("cache-under-proc", lambda c: c.fresh(cache="/proc/falnb-cache").generate("a fox", model=MODEL)),
    row("cache-namespace", lambda c: falnb.ResponseCache(c.tmp / "cache", namespace="../x")),
    # the key and the environment
    row("key-with-newline", lambda c: c.fresh(key="sk-a\r\nX-Evil: 1").generate("a fox", model=MODEL),
        _D04.format("crlf_header_value")),
    row("key-missing", lambda c: c.fresh(key="").generate("a fox", model=MODEL)),
    row("env-queue-url-ftp", lambda c: _env(c, FALNB_QUEUE_URL="ftp://queue.fal.run")),
    row("env-queue-url-words", lambda c: _env(c, FALNB_QUEUE_URL="not a url")),
    row("env-budget-words", lambda c: _env(c, FALNB_BUDGET_TOTAL="lots")),
    row("env-budget-negative", lambda c: _env(c, FALNB_BUDGET_TOTAL="-1")),
    row("env-budget-nan", lambda c: _env(c, FALNB_BUDGET_SESSION="nan")),
    row("env-budget-zero", lambda c: _env(c, FALNB_BUDGET_TOTAL="0")),
    # LiteLLM configs
    row("litellm-config-missing", lambda c: falnb.load_litellm_config(str(c.tmp / "none.yaml"))),
    row("litellm-config-list", lambda c: (c.tmp / "l.yaml").write_text("- 1\n- 2\n") and falnb.load_litellm_config(
        str(c.tmp / "l.yaml")), "test_defect_27_litellm_config_that_is_not_a_mapping"),
]


def _env(c: Ctx, **env: str) -> Any:
    for k, v in env.items():
        c.monkeypatch.setenv(k, v)
    if "FALNB_QUEUE_URL" in env:  # the queue URL comes from the environment
        return c.fresh(queue_url=None).generate("a fox", model=MODEL)
    return c.fresh().generate("a fox", model=MODEL)


def _short(exc: BaseException) -> list[str]:
    """A falnb error in 1-3 lines, which does not claim the mistake may have reached fal."""
    assert isinstance(exc, FalnbError), f"a raw {type(exc).__name__}: {exc}"
    lines = "\n".join(exc._render_traceback_()).splitlines()
    assert 1 <= len(lines) <= 3 and exc.message.strip(), lines
    assert not isinstance(exc, SubmitUncertainError) and "may have queued" not in str(exc), \
        f"a mistake that never left this machine is reported as maybe sent: {exc}"
    return lines


@pytest.mark.parametrize("call", API)
def test_a_bad_input_is_a_short_falnb_error_and_sends_nothing(call: Callable[[Ctx], Any], ctx: Ctx) -> None:
    with pytest.raises(Exception) as info:
        call(ctx)
    _short(info.value)
    assert ctx.sent() == 0, f"{ctx.sent()} requests sent for a mistake"


# -- %%falimage lines, in a real IPython shell ----------------------------------------------------------


CELLS = [
    row("magic-n-words", "%%falimage -n lots\na fox"), row("magic-n-zero", "%%falimage -n 0\na fox"),
    row("magic-seed-words", "%%falimage --seed x\na fox"), row("magic-size-zero", "%%falimage -s 0x0\na fox"),
    row("magic-model-unknown", "%%falimage -m flux-ultraa\na fox"), row("magic-model-empty", "%%falimage -m ,\na fox"),
    row("magic-param-no-equals", "%%falimage -p steps\na fox"), row("magic-param-no-name", "%%falimage -p =3\na fox"),
    row("magic-param-bad-value", "%%falimage -p num_inference_steps=-3\na fox"),
    row("magic-param-unknown", "%%falimage -p guidance=3\na fox",
        "test_defect_12_magic_unknown_parameter_name_is_refused"),
    row("magic-timeout-negative", "%%falimage --timeout -1\na fox"),
    row("magic-timeout-words", "%%falimage --timeout soon\na fox"),
    row("magic-embed-unknown", "%%falimage --embed poster\na fox"),
    row("magic-out-bad-name", "%%falimage --out 1x\na fox"),
    row("magic-batch-undefined", "%%falimage --batch no_such_list\n{item}"),
    row("magic-batch-not-a-list", "%%falimage --batch a_string\n{item}"),
    row("magic-unknown-option", "%%falimage --frobnicate\na fox"),
    row("magic-unclosed-quote", '%%falimage -p "prompt_extend=a\na fox'),
    row("magic-empty-body", "%%falimage\n   \n"), row("magic-line-empty", "%falimage"),
    row("magic-template-undefined", "%%falimage\na {nowhere} fox"),
    row("magic-text-after-options", "%%falimage -n 1 a fox\na fox"),
]


@pytest.fixture(scope="module")
def shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    sh = InteractiveShell.instance()
    sh.run_line_magic("load_ext", "falnb")
    return sh


@pytest.mark.parametrize("source", CELLS)
def test_a_bad_cell_is_a_short_error_and_sends_nothing(source: str, ctx: Ctx, shell: Any) -> None:
    from falnb.notebook._magics import magics_of

    magics = magics_of(shell)
    magics.client = ctx.client
    shell.user_ns["a_string"] = "not a list"
    try:
        cell = run_cell(shell, source)
    finally:
        magics.client = None
    assert not cell.ok, cell.text
    assert type(cell.error).__name__ == "UsageError" or isinstance(cell.error, FalnbError), \
        f"a raw {type(cell.error).__name__}: {cell.text[-800:]}"
    assert 1 <= len(cell.error_lines) <= 3 and "Traceback" not in cell.text, cell.error_lines
    assert ctx.sent() == 0, f"{ctx.sent()} requests sent for a mistake"


# -- the form's fields -------------------------------------------------------------------------------------


FORM = [
    row("form-seed-words", {"seed": "abc"}), row("form-seed-negative", {"seed": "-1"}),
    row("form-seed-float", {"seed": "1.5"}), row("form-prompt-blank", {"prompt": "   "}),
    row("form-other-not-json", {"extra": "{not json"}), row("form-other-a-list", {"extra": "[1, 2]"}),
    row("form-other-unknown-type", {"extra": '{"num_inference_steps": "x"}'}),
]


@pytest.mark.parametrize("fields", FORM)
def test_a_bad_form_field_is_a_short_status_and_sends_nothing(fields: dict[str, str], ctx: Ctx) -> None:
    f = falnb.form(MODEL, client=ctx.client, prompt="a red fox")
    shown: list[str] = []
    f.status_label.observe(lambda ch: shown.append(plain(str(ch["new"]))), names="value")
    try:
        for name, value in fields.items():
            getattr(f, {"seed": "seed_box", "prompt": "prompt_box", "extra": "extra_box"}[name]).value = value
        f.generate_button.click()
        if f.job is not None:
            assert f.job.wait(30)
    finally:
        f.close()
    status = f.status  # the line as the user reads it (the widget holds HTML)
    assert status.startswith("error: ") and "\n" not in status and len(status) < 600, (status, shown)
    assert "Error: " not in status.split(" — ")[0], f"a raw Python error on the status line: {status}"
    assert ctx.sent() == 0, f"{ctx.sent()} requests sent for a mistake"
