"""Issue 11, defects 15-18: losing pictures that were paid for.

Faults are real, not simulated by patching falnb: "too many open files" is a lowered
``RLIMIT_NOFILE`` in a child process; a read-only folder is a child that drops to uid 65534
(``nobody``) after its imports (tests run as root, which ``chmod`` does not stop; ``chattr +i``
would be the other way); a deleted folder is ``shutil.rmtree``.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._helpers import child_env, falnb_cli, python
from .falstandin import FalStandIn

PROMPT = "a red fox in the snow"


@pytest.fixture
def paid(client: Any, standin: FalStandIn, tmp_path: Path) -> Path:
    """A cache folder holding one paid entry (PROMPT on schnell, seed 1)."""
    client.generate(PROMPT, model="schnell", seed=1)
    assert standin.billed == 1
    return tmp_path / "cache"


# -- 15. a transient SQLite or OS error is not damage --------------------------------------------------------

_NO_MORE_FILES = textwrap.dedent("""
    import glob, json, os, resource, sys, threading, warnings
    import falnb

    warnings.simplefilter("ignore")
    directory, prompt, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    key = falnb.Client(key="k", queue_url="http://127.0.0.1:9", cache=False).plan(
        prompt, model="schnell", seed=1).requests[0].key
    cache = falnb.ResponseCache(directory)
    out = {}
    if mode == "image":  # the index is open already; only the image file will fail to open
        out["before"] = cache.get(key) is not None

    def in_thread(fn):  # a new thread: a new index connection, as another kernel thread would open
        box = []

        def target():
            try:
                box.append(fn())
            except Exception as exc:
                box.append(type(exc).__name__ + ": " + str(exc)[:120])

        t = threading.Thread(target=target)
        t.start(); t.join()
        return box[0]

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(int(f) for f in os.listdir("/proc/self/fd")) + 1, hard))
    while True:  # fill the gaps below the limit: from now on every open() fails with EMFILE
        try:
            held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            break
    try:  # a miss (or a CacheError) for this one call is fine
        out["during"] = repr(in_thread(lambda: cache.get(key) is not None) if mode == "index" else
                             cache.get(key) is not None)
    except Exception as exc:
        out["during"] = type(exc).__name__
    for fd in held:
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    out["after"] = in_thread(lambda: cache.get(key) is not None)
    out["set_aside"] = sorted(os.path.basename(p) for p in glob.glob(os.path.join(directory, "*corrupt*")))
    print("RESULT " + json.dumps(out))
""")


def _no_more_files(directory: Path, mode: str) -> dict[str, Any]:
    proc = python(_NO_MORE_FILES, args=[str(directory), PROMPT, mode], timeout=60)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(line[7:])
    return result


def test_defect_15_too_many_open_files_does_not_set_the_index_aside(paid: Path) -> None:
    """While no file can be opened, a new connection to the index fails ("unable to open database
    file").  That is no proof of damage: the healthy index must stay in place with its entry."""
    out = _no_more_files(paid, "index")
    assert out["set_aside"] == [], out
    assert out["after"] is True, out


def test_defect_15_an_image_file_that_cannot_be_opened_is_not_dropped(paid: Path) -> None:
    """The same fault when opening the image file of a hit: a miss for that call, the data left in place."""
    out = _no_more_files(paid, "image")
    assert out["before"] is True, out
    assert out["after"] is True, out
    assert any(f.is_file() for f in (paid / "objects").rglob("*")), "the image file was deleted"


# -- 16. the cache folder deleted while a kernel runs ------------------------------------------------------


def test_defect_16_a_deleted_cache_folder_is_recreated_for_everyone(client: Any, standin: FalStandIn,
                                                                    paid: Path) -> None:
    """After ``rm -rf`` of the folder, this kernel's next pictures must land in a folder other
    processes see, not in the unlinked SQLite file this kernel still holds open."""
    shutil.rmtree(paid)
    client.generate("a snowy owl at night", model="schnell", seed=1)
    assert standin.billed == 2
    proc = falnb_cli("cache", "list", "--dir", str(paid), "--json")
    listed = json.loads(proc.stdout or "[]") if proc.returncode == 0 else proc.stderr
    assert isinstance(listed, list) and [e["prompt"] for e in listed] == ["a snowy owl at night"], listed


# -- 17. a read-only cache folder ----------------------------------------------------------------------------

_READ_ONLY_CHILD = textwrap.dedent("""
    import json, os, sys, tempfile, warnings
    import falnb

    url, directory = sys.argv[1], sys.argv[2]
    # every lazy import happens now, as root, on a scratch cache: /root is not readable by nobody
    warm = falnb.Client(key="k", queue_url=url, cache=tempfile.mkdtemp())
    warm.generate("warm-up", model="schnell", seed=1)
    warm.close()
    os.setgid(65534)
    os.setuid(65534)  # from here on: an ordinary user who may read the cache folder but not write it
    client = falnb.Client(key="k", queue_url=url, cache=directory)
    out = {}
    for name, prompt in (("hit", "a red fox in the snow"), ("new", "a snowy owl at night")):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            try:
                gen = client.generate(prompt, model="schnell", seed=1)
                out[name] = {"cached": gen.cached, "images": len(gen.images)}
            except Exception as exc:
                out[name] = {"error": type(exc).__name__, "message": str(exc)[:300]}
        out[name]["warnings"] = [str(w.message)[:200] for w in seen if "falnb" in str(w.message)]
    print("RESULT " + json.dumps(out))
""")


@pytest.fixture
def read_only_cache(standin: FalStandIn) -> Iterator[tuple[str, Path]]:
    """(stand-in URL, a cache folder holding one entry, readable by everyone and writable by no one
    but root).  Filled by a process that exits, so SQLite has folded its WAL into the index."""
    base = Path(tempfile.mkdtemp(prefix="falnb-read-only-", dir="/tmp"))
    base.chmod(0o755)
    directory = base / "cache"
    with standin.serve() as url:
        fill = python("import sys, falnb\n"
                      "falnb.Client(key='k', queue_url=sys.argv[1], cache=sys.argv[2]).generate("
                      "'a red fox in the snow', model='schnell', seed=1)",
                      args=[url, str(directory)])
        assert fill.returncode == 0, fill.stderr[-2000:]
        for p in [directory, *directory.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield url, directory
        finally:
            for p in [directory, *directory.rglob("*")]:
                p.chmod(stat.S_IRWXU)
            shutil.rmtree(base, ignore_errors=True)


def test_defect_17_read_only_cache_serves_hits_and_warns_once(read_only_cache: tuple[str, Path],
                                                               standin: FalStandIn) -> None:
    url, directory = read_only_cache
    proc = subprocess.run([sys.executable, "-c", _READ_ONLY_CHILD, url, str(directory)],
                          env=child_env(HOME="/tmp"), cwd="/tmp", capture_output=True, text=True, timeout=60)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, proc.stderr[-2000:]
    out = json.loads(line[7:])
    assert out["hit"].get("cached") is True, out            # the hit is served, nothing paid
    assert len(standin.by_prompt("a red fox in the snow")) == 1, out
    assert out["new"].get("images") == 1, out               # the new picture is generated and returned
    assert len(out["new"]["warnings"]) == 1, out            # with one warning that it cannot be stored


# -- 18. falnb cache import trusts the keys in the zip ---------------------------------------------------------


def test_defect_18_import_refuses_a_relabelled_entry(client: Any, standin: FalStandIn, tmp_path: Path) -> None:
    fox = client.generate("a red fox", model="schnell", seed=1)
    client.generate("a blue whale", model="schnell", seed=1)
    exported = tmp_path / "team.zip"
    assert client.cache.export(exported) == 2
    # relabel: the whale's entry now carries the fox's key (and the fox's own entry is left out)
    with zipfile.ZipFile(exported) as z:
        manifest = json.loads(z.read("falnb-cache.json"))
        blobs = {n: z.read(n) for n in z.namelist() if n != "falnb-cache.json"}
    by_prompt = {e["canonical"]["prompt"]: e for e in manifest["entries"]}
    whale = dict(by_prompt["a blue whale"], key=by_prompt["a red fox"]["key"])
    manifest["entries"] = [whale]
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(forged, "w") as z:
        z.writestr("falnb-cache.json", json.dumps(manifest))
        for name, data in blobs.items():
            z.writestr(name, data)
    other = tmp_path / "teammate"
    proc = falnb_cli("cache", "import", str(forged), "--dir", str(other))
    assert proc.returncode in (0, 1), proc.stderr
    mate = standin.client(other)
    try:
        gen = mate.generate("a red fox", model="schnell", seed=1)
    finally:
        mate.close()
    assert gen.images[0].data == fox.images[0].data, "a fox request was answered with the whale's picture"



