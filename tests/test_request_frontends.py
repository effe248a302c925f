"""Issue 11 #12 where people type: an input name a catalogued model does not take is refused in the magic and
the form before anything is sent, and each front end has its explicit way to send a new input as it is
(``%%falimage --allow-unknown``; the form's "other inputs" box, "sent to fal as is")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from falnb import Client
from falnb.emulator import Emulator
from falnb.notebook._form import form
from falnb.notebook._magics import FalMagics, magics_of

from ._cells import run


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    sh = InteractiveShell.instance()
    sh.colors = "nocolor"
    sh.run_line_magic("load_ext", "falnb")
    yield sh


@pytest.fixture
def emu() -> Emulator:
    return Emulator(latency=0.0, concurrency=4, seed=1)


@pytest.fixture
def magics(shell: InteractiveShell, client: Client) -> Iterator[FalMagics]:
    m = magics_of(shell)
    m.client = client
    yield m
    m.client = None


def sent(emu: Emulator) -> list[dict[str, Any]]:
    return [dict(j.input) for j in emu.requests()]


def test_magic_refuses_an_unknown_name_and_sends_nothing(shell: InteractiveShell, magics: FalMagics,
                                                         emu: Emulator) -> None:
    cell = run(shell, "%falimage -m schnell -p guidance=3 --seed 1 a lighthouse")
    assert not cell.ok and "did you mean 'guidance_scale'?" in cell.text and "--allow-unknown" in cell.text
    assert len(cell.error_lines) <= 3
    cell = run(shell, "%falimage -m schnell -s 16:9 -p aspect_ratio=16:9 a lighthouse")
    assert not cell.ok and "takes no aspect_ratio" in cell.text
    cell = run(shell, "%falimage -m schnell -s 1:1000000000 a lighthouse")
    assert not cell.ok and "out of range" in cell.text and len(cell.error_lines) <= 3
    assert emu.ledger.submits == 0


def test_magic_sends_a_new_input_with_allow_unknown(shell: InteractiveShell, magics: FalMagics,
                                                    emu: Emulator) -> None:
    cell = run(shell, "%falimage -m schnell -p guidance=3 --allow-unknown --seed 1 a lighthouse")
    assert cell.ok, cell.text
    assert sent(emu)[-1]["guidance"] == 3


def test_form_other_inputs_are_sent_as_is_but_catalogued_fields_still_checked(client: Client,
                                                                              emu: Emulator) -> None:
    f = form("schnell", client=client)
    f.prompt_box.value = "a lighthouse"
    f.extra_box.value = '{"brand_new_input": 1}'
    job = f.generate()
    assert job is not None
    f.wait(30)
    assert sent(emu)[-1]["brand_new_input"] == 1, f.status
    # "Copy as %%falimage cell" says the same thing, so the copied cell runs too
    assert "--allow-unknown" in f.cell_text()
    f.extra_box.value = '{"guidance_scal": 3}'  # a near-miss of the model's own input: still a typo
    f.generate()
    assert "did you mean 'guidance_scale'?" in f.status
    f.extra_box.value = ""
    assert "--allow-unknown" not in f.cell_text()
    assert emu.ledger.submits == 1
