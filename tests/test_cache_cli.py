"""``falnb cache ...`` from the command line: dir, list, stats, journal, prune, clear, export, import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from falnb import Client
from falnb._cli import main
from falnb.cache._store import default_directory
from falnb.emulator import Emulator
from falnb.fal._queue import RetryPolicy

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, submit_attempts=3)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["cache", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def filled() -> Emulator:
    emu = Emulator(latency=0.01, concurrency=8)
    client = Client(offline=True, emulator=emu, retry=FAST)
    client.generate("a lighthouse at dusk", model="flux-schnell", n=2, seed=1, size="512x512")
    client.generate("a red fox in the snow", model="flux-pro", seed=2)
    return emu


def test_dir_and_an_empty_cache(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run(capsys, "dir") == (0, f"{default_directory()}\n", "")
    assert run(capsys, "dir", "--dir", str(tmp_path / "x"))[1].strip() == str(tmp_path / "x")
    for cmd in ("list", "stats", "journal"):
        code, out, _ = run(capsys, cmd)
        assert code == 0 and "no cache at" in out
    empty = json.loads(run(capsys, "stats", "--json")[1])  # the keys of a filled cache's, zero
    assert (empty["entries"], empty["bytes"], empty["total"]["paid"], empty["spent"]) == (0, 0, 0.0, {})
    assert not default_directory().exists()  # looking creates nothing
    assert run(capsys, "export", str(tmp_path / "e.zip"))[0] == 1
    code, out, _ = run(capsys)
    assert code == 0


def test_list_stats_journal(capsys: pytest.CaptureFixture[str], filled: Emulator) -> None:
    code, out, _ = run(capsys, "list")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 2
    assert "fal-ai/flux-pro/v1.1" in lines[0] and "a red fox" in lines[0] and "emulator" in lines[0]
    assert "fal-ai/flux/schnell" in lines[1] and " 2 img" in lines[1]
    code, out, _ = run(capsys, "list", "--json", "--model", "flux-schnell")
    rows = json.loads(out)
    assert [r["prompt"] for r in rows] == ["a lighthouse at dusk"] and rows[0]["images"] == 2
    assert run(capsys, "list", "--namespace", "fal")[1].strip() == "(no entries)"
    code, out, _ = run(capsys, "stats")
    assert code == 0 and "entries:   2 (3 images)" in out and "2 request(s)" in out
    stats = json.loads(run(capsys, "stats", "--json")[1])
    assert stats["entries"] == 2 and stats["total"]["requests"] == 2 and stats["bytes"] > 0
    assert run(capsys, "journal")[1].strip() == "(nothing in flight)"


def test_stats_never_adds_the_emulators_dollars_to_fals(capsys: pytest.CaptureFixture[str], filled: Emulator) -> None:
    """`falnb cache stats` (every namespace by default) said "spent: $0.546 paid for 3 request(s)": the
    emulator's make-believe $0.046 added to the $0.50 fal billed."""
    from falnb.cache._store import ResponseCache

    ResponseCache(None, "fal").ledger.record_paid(0.5, model="fal-ai/flux-pro/v1.1-ultra", request_id="r1")
    out = run(capsys, "stats")[1]
    assert "$0.546" not in out and "3 request(s)" not in out
    assert "emulator: $0.046 paid for 2 request(s)" in out and "fal: $0.50 paid for 1 request(s)" in out
    spent = json.loads(run(capsys, "stats", "--json")[1])["spent"]
    assert (spent["fal"]["paid"], spent["emulator"]["paid"]) == (0.5, 0.046)
    assert "spent:     $0.50 paid for 1 request(s)" in run(capsys, "stats", "--namespace", "fal")[1]


def test_an_empty_dir_is_refused_not_taken_for_the_default_cache(capsys: pytest.CaptureFixture[str],
                                                                  filled: Emulator) -> None:
    """`falnb cache clear --yes --dir "$CACHE"` with CACHE unset emptied the default cache (FALNB_CACHE_DIR)."""
    for args in (("clear", "--yes", "--dir", ""), ("list", "--dir", " ")):
        with pytest.raises(SystemExit) as exit_:
            run(capsys, *args)
        assert exit_.value.code == 2 and "--dir is empty" in capsys.readouterr().err
    assert len(json.loads(run(capsys, "list", "--json")[1])) == 2


def test_a_reader_that_stops_early_gets_no_error(capsys: pytest.CaptureFixture[str], filled: Emulator,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`falnb cache list | head -1` printed "falnb cache: [Errno 32] Broken pipe" once head had its line."""
    import io

    class Head(io.StringIO):  # a pipe whose reader took one line and left
        def write(self, text: str) -> int:
            if "\n" in self.getvalue():
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    monkeypatch.setattr(sys, "stdout", Head())
    assert main(["cache", "list"]) == 1
    assert capsys.readouterr().err == ""


def test_prune_and_clear(capsys: pytest.CaptureFixture[str], filled: Emulator) -> None:
    assert run(capsys, "prune")[0] == 2
    code, _, err = run(capsys, "prune", "--older-than", "soon")
    assert code == 1 and "not an age" in err
    assert run(capsys, "prune", "--older-than", "30d")[1].strip() == "removed 0 entries, 0 B"
    code, out, _ = run(capsys, "prune", "--max-size", "1", "--dry-run")
    assert out.startswith("would remove 2 entries")
    assert len(json.loads(run(capsys, "list", "--json")[1])) == 2
    code, _, err = run(capsys, "clear")  # stdin is not a terminal here: refuses without --yes
    assert code == 2 and "--yes" in err
    assert run(capsys, "clear", "--yes")[1].strip().startswith("removed")
    assert run(capsys, "list")[1].strip() == "(no entries)"


def test_export_import(capsys: pytest.CaptureFixture[str], filled: Emulator, tmp_path: Path) -> None:
    zip_path = tmp_path / "team.zip"
    code, out, _ = run(capsys, "export", str(zip_path), "--model", "flux-pro", "--since", "1d")
    assert code == 0 and out.strip() == f"exported 1 entries to {zip_path}"
    other = tmp_path / "clone"
    code, out, _ = run(capsys, "import", str(zip_path), "--dir", str(other))
    assert code == 0 and out.strip() == "imported 1 entries, skipped 0 already present"
    assert "a red fox" in run(capsys, "list", "--dir", str(other))[1]
    code, _, err = run(capsys, "import", str(tmp_path / "missing.zip"))
    assert code == 1 and "not a falnb cache export" in err


def test_the_falnb_command_dispatches_to_cache() -> None:
    out = subprocess.run([sys.executable, "-m", "falnb._cli", "cache", "dir"], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == str(default_directory())
    helptext = subprocess.run([sys.executable, "-m", "falnb._cli", "cache", "--help"], capture_output=True,
                              text=True, check=True).stdout
    assert "export" in helptext and "prune" in helptext


def test_ctrl_d_at_the_clear_prompt_is_a_no(capsys: pytest.CaptureFixture[str], filled: Emulator,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """At a terminal, ``clear`` asks; Ctrl-D (end of input) answers no, without a traceback."""
    def eof(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", eof)
    code, _, err = run(capsys, "clear")
    assert code == 1 and "Traceback" not in err
    assert len(json.loads(run(capsys, "list", "--json")[1])) == 2  # nothing removed
