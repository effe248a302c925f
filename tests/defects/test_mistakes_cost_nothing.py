"""Issue 11, defects 11-14: budgets that do not hold, and mistakes that are sent and paid.

"A mistake costs nothing": a mistake falnb can see is refused before anything is sent, so the
stand-in's submit count is the judge.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import falnb

from ._helpers import ROOT, child_env, run
from .falstandin import FalStandIn

# -- 11. budgets ---------------------------------------------------------------------------------------------

_SPENDER = textwrap.dedent("""
    import sys
    import falnb
    try:
        falnb.generate(sys.argv[1], model="flux-ultra", seed=1)  # ~$0.06
        print("RESULT ok")
    except falnb.BudgetExceededError:
        print("RESULT budget")
    except BaseException as exc:
        print("RESULT " + type(exc).__name__ + ": " + str(exc)[:200])
""")


def test_defect_11_total_budget_holds_across_processes_started_together(standin: FalStandIn,
                                                                        tmp_path: Path) -> None:
    """Six processes on one cache folder with FALNB_BUDGET_TOTAL=0.12 (two $0.06 pictures).  fal's
    answers to the submits are held until every process has either sent its submit or given up, so
    all six checks happen before any spend is recorded: the budget must still hold."""
    gate = standin.gate("submit_answer")
    with standin.serve() as url:
        env = child_env(FAL_KEY="test-key", FALNB_QUEUE_URL=url, FALNB_CACHE_DIR=str(tmp_path / "shared"),
                        FALNB_BUDGET_TOTAL="0.12")
        procs = [subprocess.Popen([sys.executable, "-c", _SPENDER, f"a lighthouse, process {i}"], env=env,
                                  cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(6)]
        try:
            standin.wait_until(lambda: gate.waiting + sum(p.poll() is not None for p in procs) == 6, timeout=60,
                               what="every process submitting or refused")
            gate.open()
            outs = [p.communicate(timeout=60)[0] for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
    results = [next((x[7:] for x in o.splitlines() if x.startswith("RESULT ")), "no result") for o in outs]
    assert standin.billed <= 2, (standin.billed, results)
    assert results.count("budget") >= 4, results
    spent = falnb.ResponseCache(tmp_path / "shared").stats().total.paid
    assert spent <= 0.12 + 1e-9, spent


def test_defect_11_no_cache_cell_is_refused_whole(shell: InteractiveShell, magics: Any, standin: FalStandIn,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """flux-ultra ($0.06) fits a $0.08 budget alone, flux-pro ($0.04) too, both together do not:
    with --no-cache the cell must be refused whole, before anything is sent, as it is with the cache."""
    monkeypatch.setenv("FALNB_BUDGET_TOTAL", "0.08")
    cell = run(shell, "%falimage -m flux-ultra,flux-pro --no-cache --seed 1 a lighthouse")
    assert isinstance(cell.error, falnb.BudgetExceededError), cell.text
    assert standin.submits == 0, [r.model for r in standin.requests]


def test_defect_11_nan_budget_is_not_no_budget(client: Any, standin: FalStandIn,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FALNB_BUDGET_SESSION", "nan")
    with pytest.raises(falnb.FalnbError):
        client.generate("a lighthouse", model="flux-ultra", seed=1)
    assert standin.submits == 0


# -- 12. unknown parameter names on catalogued models -------------------------------------------------------


def test_defect_12_unknown_parameter_name_is_refused_with_did_you_mean(client: Any, standin: FalStandIn) -> None:
    with pytest.raises(falnb.ParameterError) as err:
        client.generate("a lighthouse", model="schnell", seed=1, guidance=3)
    assert "guidance_scale" in str(err.value), str(err.value)  # the did-you-mean (and the allowed names)
    assert standin.submits == 0


def test_defect_12_magic_unknown_parameter_name_is_refused(shell: InteractiveShell, magics: Any,
                                                           standin: FalStandIn) -> None:
    cell = run(shell, "%falimage -m schnell -p guidance=3 --seed 1 a lighthouse")
    assert not cell.ok and "guidance_scale" in cell.text, cell.text
    assert len(cell.error_lines) <= 3 and standin.submits == 0


def test_defect_12_guard_pass_through_models_keep_forwarding(client: Any, standin: FalStandIn) -> None:
    """Guard (passes today, must keep passing): a model falnb has no record of forwards any name."""
    client.generate("a lighthouse", model="fal-ai/some-new-model", seed=1, guidance=3)
    assert standin.requests[0].input.get("guidance") == 3


# -- 13. sizes --------------------------------------------------------------------------------------------


def test_defect_13_extreme_ratio_is_refused_before_sending(client: Any, standin: FalStandIn) -> None:
    with pytest.raises(falnb.InputError):
        client.generate("a lighthouse", model="schnell", seed=1, size="1:1000000000")
    assert standin.submits == 0, standin.requests[0].input


def test_defect_13_aspect_ratio_on_an_image_size_model_is_refused(client: Any, standin: FalStandIn) -> None:
    with pytest.raises(falnb.InputError):
        client.generate("a lighthouse", model="schnell", seed=1, aspect_ratio="16:9")
    assert standin.submits == 0, standin.requests[0].input


# -- 14. a failing on_progress callback under agenerate ----------------------------------------------------


def _failing_callback(p: falnb.Progress) -> None:
    if p.state == "queued":
        raise RuntimeError("a bug in the user's progress callback")


def test_defect_14_guard_generate_cancels_when_the_callback_fails(client: Any, standin: FalStandIn) -> None:
    """Guard (passes today): under generate, the failing callback stops the request and fal's cancel
    goes out before the error is raised."""
    standin.hold_at = "IN_QUEUE"
    with pytest.raises(RuntimeError):
        client.generate("a lighthouse", model="schnell", seed=1, on_progress=_failing_callback)
    assert [r.cancel_asked for r in standin.requests] == [True]


def test_defect_14_agenerate_cancels_when_the_callback_fails(client: Any, standin: FalStandIn) -> None:
    standin.hold_at = "IN_QUEUE"

    async def main() -> None:
        await client.agenerate("a lighthouse", model="schnell", seed=1, on_progress=_failing_callback)

    with pytest.raises(RuntimeError):
        asyncio.run(main())
    # as under generate: when the error is raised, fal's cancel has gone out
    assert [r.cancel_asked for r in standin.requests] == [True]
    standin.finish()  # fal lets everything through now: a request not cancelled would be billed
    assert standin.billed == 0
