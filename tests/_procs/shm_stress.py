"""Two processes, three threads each, write through falnb's index while the parent deletes ``-shm`` again
and again (``rm -r`` racing falnb re-creating the folder, many times over).  Usage:
``python shm_stress.py FOLDER main DELETIONS`` prints ``RESULT <json>``: what each thread committed, what the
index holds at the end, which commits are missing, the errors seen.  (``child`` is the second process, started
by ``main``.)"""

from __future__ import annotations

import collections
import json
import os
import random
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

from falnb._exceptions import CacheError
from falnb.cache._index import index_for

warnings.simplefilter("ignore")  # (CacheWarnings are counted as errors below)
folder, role, deletions_wanted = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
folder.mkdir(parents=True, exist_ok=True)
index = index_for(folder / "index.sqlite3")
with index.write() as c:
    c.execute("CREATE TABLE IF NOT EXISTS stress (who TEXT, n INTEGER)")
stop_file = folder / "stop"
done: collections.Counter[str] = collections.Counter()
errors: collections.Counter[str] = collections.Counter()


def worker(name: str) -> None:
    n = 0
    while not stop_file.exists():
        try:
            with index.write() as c:
                c.execute("INSERT INTO stress VALUES (?, ?)", (name, n))
            done[name] += 1
            n += 1
            with index.using() as c:
                c.execute("SELECT count(*) FROM stress").fetchone()
        except CacheError as exc:
            errors[str(exc)[:120]] += 1
            time.sleep(0.01)


threads = [threading.Thread(target=worker, args=(f"{role}-{i}",)) for i in range(3)]
for t in threads:
    t.start()
out: dict[str, object] = {}
if role == "main":
    child = subprocess.Popen([sys.executable, __file__, str(folder), "child", "0"], stdout=subprocess.PIPE, text=True)
    deletions, rng = 0, random.Random(1)
    while deletions < deletions_wanted:
        time.sleep(rng.uniform(0.02, 0.1))
        try:
            os.unlink(folder / "index.sqlite3-shm")
            deletions += 1
        except FileNotFoundError:
            pass
    # every worker writes once more after the last deletion (the phase, forced), so that no process ends
    # still mapping a deleted -shm: that case is left to the exit hook (see the note in falnb/cache/_walfiles.py)
    def last_writes() -> dict[str, int]:
        with index.using() as c:
            return dict(c.execute("SELECT who, max(n) FROM stress GROUP BY who").fetchall())

    before, deadline = last_writes(), time.monotonic() + 60
    while time.monotonic() < deadline:
        now = last_writes()
        if len(now) == 6 and all(now[w] > before.get(w, -1) for w in now):
            break
        time.sleep(0.02)
    stop_file.touch()
    child_out = json.loads(child.communicate(timeout=120)[0].strip().splitlines()[-1][7:])
    for t in threads:
        t.join()
    with index.using() as c:
        rows = c.execute("SELECT who, n FROM stress").fetchall()
    committed = {**done, **child_out["committed"]}
    held: dict[str, set[int]] = collections.defaultdict(set)
    for who, n in rows:
        held[who].add(n)
    missing = {w: sorted(set(range(k)) - held[w]) for w, k in committed.items()}
    out = {"committed": committed, "held": {w: len(ns) for w, ns in held.items()}, "deletions": deletions,
           "missing": {w: ns for w, ns in missing.items() if ns}, "errors": {**errors, **child_out["errors"]}}
else:
    for t in threads:
        t.join()
    out = {"committed": dict(done), "errors": dict(errors)}
print("RESULT " + json.dumps(out), flush=True)
