"""Issue 11, defects 19-20: settings changed with ``%env`` that do not take effect.

#20 runs in a fresh Python process with a fresh IPython shell: the magics' client (the process's
default client) must start from nothing, as in a new kernel.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import falnb

from ._helpers import child_env, python, run
from .falstandin import FalStandIn

# -- 19. %env FAL_KEY=... after a key was used -----------------------------------------------------------------


def test_defect_19_a_new_fal_key_takes_effect(shell: InteractiveShell, magics: Any, standin: FalStandIn,
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 401's own advice is "Check FAL_KEY": following it with ``%env FAL_KEY=...`` must work
    without restarting the kernel."""
    standin.accepted_keys = {"the-right-key"}
    monkeypatch.setenv("FAL_KEY", "a-revoked-key")
    magics.client = c = falnb.Client(queue_url="https://queue.fal.run", transport=standin.transport(),
                                     cache=tmp_path / "c")  # the key comes from the environment
    try:
        first = run(shell, "%falimage -m schnell --seed 1 a lighthouse")
        assert isinstance(first.error, falnb.AuthenticationError), first.text
        assert "FAL_KEY" in first.text
        assert run(shell, "%env FAL_KEY=the-right-key").ok
        again = run(shell, "%falimage -m schnell --seed 1 a lighthouse")
    finally:
        c.close()
    assert standin.keys_seen[-1] == "the-right-key", standin.keys_seen
    assert again.ok, again.text


# -- 20. %env FALNB_OFFLINE --------------------------------------------------------------------------------------

_SHELL = textwrap.dedent("""
    import json, sys
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    shell.colors = "nocolor"
    shell.run_line_magic("load_ext", "falnb")

    def cell(source):
        with capture_output() as cap:
            res = shell.run_cell(source, store_history=False)
        err = res.error_in_exec or res.error_before_exec
        return {"ok": res.success, "error": type(err).__name__ if err else None,
                "text": (cap.stdout + cap.stderr)[-500:]}

    out = {}
    for name, source in json.loads(sys.argv[1]):
        out[name] = cell(source)
    print("RESULT " + json.dumps(out))
""")


def _notebook(cells: list[tuple[str, str]], **env: str) -> dict[str, Any]:
    proc = python(_SHELL, args=[json.dumps(cells)], env=child_env(**env), timeout=60)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, proc.stderr[-2000:]
    out: dict[str, Any] = json.loads(line[7:])
    return out


def test_defect_20_offline_after_the_no_key_error(tmp_path: Path) -> None:
    """No key: the error says to run offline with FALNB_OFFLINE=1.  Doing so must work."""
    out = _notebook([("first", "%falimage -m schnell --seed 1 a lighthouse"),
                     ("env", "%env FALNB_OFFLINE=1"),
                     ("again", "%falimage -m schnell --seed 1 a lighthouse")],
                    FALNB_CACHE_DIR=str(tmp_path / "c"))
    assert out["first"]["error"] == "MissingKeyError" and "FALNB_OFFLINE=1" in out["first"]["text"], out
    assert out["again"]["ok"], out


def test_defect_20_back_online_goes_to_fal_and_says_so(standin: FalStandIn, tmp_path: Path) -> None:
    """Started offline; then FALNB_OFFLINE=0 plus a key: the next cell goes to fal (here the
    stand-in), and %falconfig no longer says offline."""
    with standin.serve() as url:
        out = _notebook([("offline", "%falimage -m schnell --seed 1 a lighthouse"),
                         ("env0", "%env FALNB_OFFLINE=0"),
                         ("env1", "%env FAL_KEY=test-key"),
                         ("env2", f"%env FALNB_QUEUE_URL={url}"),
                         ("online", "%falimage -m schnell --seed 1 a snowy owl"),
                         ("config", "%falconfig")],
                        FALNB_OFFLINE="1", FALNB_CACHE_DIR=str(tmp_path / "c"))
        assert out["offline"]["ok"] and out["online"]["ok"], out
        assert len(standin.by_prompt("a snowy owl")) == 1, "the cell went to the emulator, silently"
        assert "OFFLINE" not in out["config"]["text"] and "online" in out["config"]["text"], out["config"]
