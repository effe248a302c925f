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

import pytest

import falnb
from falnb import Client, FalnbError
from falnb.emulator import Emulator

from ._cells import run as run_cell
from .test_simulation_fal import ClientSide, open_defects

MODEL = "schnell"


@dataclass
class Ctx:
    """A client whose every request is counted, on an emulator whose ledger counts submits."""

    emu: Emulator
    wire: ClientSide
    client: Client
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    made: list[Client] = field(default_factory=list)

    def fresh(self, **kw: Any) -> Client:
        """Another client on the same counted wire, built now (after the environment was changed)."""
        kw.setdefault("key", "sk-hostile")
        kw.setdefault("cache", self.tmp / "cache")
        client = Client(queue_url=kw.pop("queue_url", "http://fal.test"), transport=self.wire, **kw)
        self.made.append(client)
        return client

    def sent(self) -> int:
        return sum(self.wire.sent.values()) + self.emu.ledger.submits


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ctx]:
    emu = Emulator(latency=0.0)
    wire = ClientSide(emu.transport())
    c = Ctx(emu, wire, Client(key="sk-hostile", queue_url="http://fal.test", transport=wire,
                               cache=tmp_path / "cache"), tmp_path, monkeypatch)
    yield c
    for client in [c.client, *c.made]:
        client.close()


def known(defect: int) -> pytest.MarkDecorator:
    """An expected failure while issue 11's defect ``defect`` is open (its own test still xfail)."""
    return pytest.mark.xfail(defect in open_defects(), strict=True, reason=f"issue 11 defect {defect:02d}")


def row(name: str, call: Callable[[Ctx], Any], defect: int | None = None) -> Any:
    return pytest.param(call, id=name, marks=[known(defect)] if defect else [])


def gen(**kw: Any) -> Callable[[Ctx], Any]:
    """``client.generate`` with these arguments (a prompt and ``schnell`` unless given)."""
    kw.setdefault("prompt", "a red fox")
    kw.setdefault("model", MODEL)
    return lambda c: c.client.generate(kw.pop("prompt"), **kw)


API = [
    # prompts
    row("prompt-empty", gen(prompt="")), row("prompt-blank", gen(prompt="  \n\t ")),
    row("prompt-none", gen(prompt=None)), row("prompt-int", gen(prompt=42)),
    row("prompt-bytes", gen(prompt=b"a fox")), row("prompt-list", gen(prompt=["a fox"])),
    # models
    row("model-empty", gen(model="")), row("model-unknown", gen(model="flux-ultraa")),
    row("model-none", gen(model=None)), row("model-int", gen(model=7)), row("model-owner-only", gen(model="fal-ai/")),
    row("model-dotdot", gen(model="../../etc/passwd")), row("model-query", gen(model="fal-ai/flux/schnell?x=1")),
    row("model-url", gen(model="https://evil.example/fal-ai/flux")),
    # sizes
    row("size-zero", gen(size="0x0")), row("size-negative", gen(size="-5x5")), row("size-words", gen(size="big")),
    row("size-huge", gen(size="99999x99999")), row("size-ratio-zero", gen(size="1:0")),
    row("size-ratio-extreme", gen(size="1:1000000000"), 13), row("size-half", gen(size="1024x")),
    row("size-nan", gen(size="nanxnan")), row("size-tuple", gen(size=(1, 2, 3))), row("size-dict", gen(size={"w": 1})),
    row("size-aspect-on-image-size-model", gen(aspect_ratio="16:9"), 13),
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
    row("param-unknown-name", gen(guidance=3), 12),
    row("param-not-json", gen(loras={1, 2}), 27), row("param-object", gen(loras=object()), 27),
    row("num-images-and-n", gen(n=2, num_images=3)),
    # headers
    row("header-authorization", gen(extra_headers={"Authorization": "Key someone-elses"})),
    row("header-non-ascii", gen(extra_headers={"X-Fal-Queue-Priority": "lów"}), 4),
    row("header-crlf", gen(extra_headers={"X-Fal-Queue-Priority": "low\r\nX-Evil: 1"}), 4),
    row("header-bad-name", gen(extra_headers={"Bad Header": "x"}), 4),
    row("headers-not-a-mapping", gen(extra_headers=["X: 1"])),
    # timeouts
    row("timeout-negative", gen(timeout=-1), 4), row("timeout-zero", gen(timeout=0), 4),
    row("timeout-text", gen(timeout="soon")), row("timeout-nan", gen(timeout=float("nan"))),
    # the many-prompt calls
    row("many-of-a-string", lambda c: c.client.generate_many("lighthouse", model=MODEL), 8),
    row("many-one-empty", lambda c: c.client.generate_many(["a fox", ""], model=MODEL)),
    row("many-one-none", lambda c: c.client.generate_many(["a fox", None], model=MODEL)),
    row("many-bad-n", lambda c: c.client.generate_many(["a fox", "a hare"], model=MODEL, n=0)),
    row("many-bad-concurrency", lambda c: c.client.generate_many(["a fox"], model=MODEL, concurrency=-2)),
    # cache paths
    row("cache-is-a-file", lambda c: (c.tmp / "f").write_text("x") and c.fresh(cache=c.tmp / "f").generate(
        "a fox", model=MODEL), 27),
    row("cache-under-proc", lambda c: c.fresh(cache="/proc/falnb-cache").generate("a fox", model=MODEL), 27),
    row("cache-namespace", lambda c: falnb.ResponseCache(c.tmp / "cache", namespace="../x")),
    # the key and the environment
    row("key-with-newline", lambda c: c.fresh(key="sk-a\r\nX-Evil: 1").generate("a fox", model=MODEL)),
    row("key-missing", lambda c: c.fresh(key="").generate("a fox", model=MODEL)),
    row("env-queue-url-ftp", lambda c: _env(c, FALNB_QUEUE_URL="ftp://queue.fal.run")),
    row("env-queue-url-words", lambda c: _env(c, FALNB_QUEUE_URL="not a url")),
    row("env-budget-words", lambda c: _env(c, FALNB_BUDGET_TOTAL="lots")),
    row("env-budget-negative", lambda c: _env(c, FALNB_BUDGET_TOTAL="-1")),
    row("env-budget-nan", lambda c: _env(c, FALNB_BUDGET_SESSION="nan"), 11),
    row("env-budget-zero", lambda c: _env(c, FALNB_BUDGET_TOTAL="0")),
    # LiteLLM configs
    row("litellm-config-missing", lambda c: falnb.load_litellm_config(str(c.tmp / "none.yaml"))),
    row("litellm-config-list", lambda c: (c.tmp / "l.yaml").write_text("- 1\n- 2\n") and falnb.load_litellm_config(
        str(c.tmp / "l.yaml")), 27),
]


def _env(c: Ctx, **env: str) -> Any:
    for k, v in env.items():
        c.monkeypatch.setenv(k, v)
    kw = {"queue_url": None} if "FALNB_QUEUE_URL" in env else {}
    if kw:  # the URL comes from the environment: no transport override of the URL
        client = Client(key="sk-hostile", transport=c.wire, cache=c.tmp / "cache")
        c.made.append(client)
        return client.generate("a fox", model=MODEL)
    return c.fresh().generate("a fox", model=MODEL)


def _short(exc: BaseException) -> list[str]:
    assert isinstance(exc, FalnbError), f"a raw {type(exc).__name__}: {exc}"
    lines = "\n".join(exc._render_traceback_()).splitlines()
    assert 1 <= len(lines) <= 3 and exc.message.strip(), lines
    return lines


@pytest.mark.parametrize("call", API)
def test_a_bad_input_is_a_short_falnb_error_and_sends_nothing(call: Callable[[Ctx], Any], ctx: Ctx) -> None:
    with pytest.raises(Exception) as info:  # noqa: B017, PT011 - which one is what _short judges
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
    row("magic-param-unknown", "%%falimage -p guidance=3\na fox", 12),
    row("magic-param-own-name", "%%falimage -p seed=5\na fox", 2),
    row("magic-timeout-negative", "%%falimage --timeout -1\na fox"),
    row("magic-timeout-words", "%%falimage --timeout soon\na fox"),
    row("magic-embed-unknown", "%%falimage --embed poster\na fox"), row("magic-out-bad-name", "%%falimage --out 1x\na fox"),
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
    row("form-other-own-name", {"extra": '{"seed": 5}'}, 2), row("form-other-unknown-type", {"extra": '{"num_inference_steps": "x"}'}),
    row("form-size-zero", {"size": "0x0"}),
]


@pytest.mark.parametrize("fields", FORM)
def test_a_bad_form_field_is_a_short_status_and_sends_nothing(fields: dict[str, str], ctx: Ctx) -> None:
    f = falnb.form(MODEL, client=ctx.client, prompt="a red fox")
    shown: list[str] = []
    f.status_label.observe(lambda ch: shown.append(str(ch["new"])), names="value")
    try:
        for name, value in fields.items():
            if name == "size":
                f.size.set(value)
            else:
                getattr(f, {"seed": "seed_box", "prompt": "prompt_box", "extra": "extra_box"}[name]).value = value
        f.generate_button.click()
        if f.job is not None:
            assert f.job.wait(30)
    finally:
        f.close()
    status = f.status_label.value
    assert status.startswith("error: ") and "\n" not in status and len(status) < 600, (status, shown)
    assert "Error: " not in status.split(" — ")[0], f"a raw Python error on the status line: {status}"
    assert ctx.sent() == 0, f"{ctx.sent()} requests sent for a mistake"
