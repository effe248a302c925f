"""``falnb cache ...``: look at, prune, share and clear the response cache from a shell.

    falnb cache dir                         the cache directory in use
    falnb cache list [--model M] [--since 7d] [--limit N] [--json]
    falnb cache stats [--json]              entries, bytes, spend and savings
    falnb cache journal                     requests in flight, re-attachable or uncertain
    falnb cache prune [--older-than 30d] [--max-size 500MB] [--dry-run]
    falnb cache clear [--yes] [--ledger]
    falnb cache export FILE [--model M] [--since DATE|AGE]
    falnb cache import FILE [--replace]

Every command takes ``--dir DIR`` (default ``FALNB_CACHE_DIR``, else the user cache directory) and
``--namespace NS`` (``fal``, ``emulator``; default: all of them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import sys
import time
import unicodedata
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import FalnbError
from ..results._text import usd

if TYPE_CHECKING:
    from ._admin import CacheStats

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", help="the cache directory (default: FALNB_CACHE_DIR or the user cache dir)")
    common.add_argument("--namespace", default="*", help="fal, emulator, or * for all (default)")
    p = argparse.ArgumentParser(prog="falnb cache", description="Inspect, prune, export and import falnb's "
                                "response cache.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("dir", parents=[common], help="print the cache directory")
    ls = sub.add_parser("list", parents=[common], help="list entries, newest first")
    ls.add_argument("--model")
    ls.add_argument("--since", help="an age (7d, 12h) or a date (2025-01-31)")
    ls.add_argument("--limit", type=int)
    ls.add_argument("--json", action="store_true")
    st = sub.add_parser("stats", parents=[common], help="entries, bytes, spend and savings")
    st.add_argument("--json", action="store_true")
    jr = sub.add_parser("journal", parents=[common], help="requests in flight, re-attachable or uncertain")
    jr.add_argument("--json", action="store_true")
    pr = sub.add_parser("prune", parents=[common], help="remove old entries, or the least used beyond a size")
    pr.add_argument("--older-than", help="not used for this long (30d, 12h, 2w)")
    pr.add_argument("--max-size", help="keep image files under this size (500MB, 2GB)")
    pr.add_argument("--dry-run", action="store_true")
    cl = sub.add_parser("clear", parents=[common], help="remove every entry")
    cl.add_argument("--yes", action="store_true", help="do not ask")
    cl.add_argument("--ledger", action="store_true", help="also forget the recorded spend")
    ex = sub.add_parser("export", parents=[common], help="write entries to a zip file for a teammate or CI")
    ex.add_argument("file")
    ex.add_argument("--model")
    ex.add_argument("--since", help="an age (7d) or a date (2025-01-31)")
    im = sub.add_parser("import", parents=[common], help="add the entries of an exported zip file")
    im.add_argument("file")
    im.add_argument("--replace", action="store_true", help="replace entries already present")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.command:
        parser.print_help()
        return 0
    if args.dir is not None and not args.dir.strip():
        # (--dir "$UNSET" must not fall back to the default cache: `clear --yes` would empty the paid one)
        parser.error("--dir is empty; give the cache directory, or leave --dir out for the default one")
    from ._store import ResponseCache

    cache = ResponseCache(Path(args.dir) if args.dir is not None else None)
    ns: str = args.namespace
    try:
        return _run(cache, ns, args)
    except FalnbError as exc:
        print(f"falnb cache: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `falnb cache list | head`: the reader stopped reading; nothing to report
        with contextlib.suppress(OSError, ValueError):  # (and the interpreter's last flush must not fail again)
            sys.stdout = open(os.devnull, "w")  # (left open: the interpreter flushes it at exit)
        return 1  # (as Python's docs advise for EPIPE)
    except (OSError, sqlite3.Error) as exc:
        print(f"falnb cache: {exc}", file=sys.stderr)
        return 1


def printable(text: object) -> str:
    """``text`` on one line with its control characters escaped (a prompt may hold ESC, BEL, CR...)."""
    text = str(text)
    if text.isprintable():  # (the usual case, checked in C)
        return text
    out = []
    for ch in text:
        if ch in "\n\t":
            out.append(" ")
        elif unicodedata.category(ch) == "Cc" or ch in _BIDI:
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


#: characters that reorder what follows them on a terminal (a prompt could hide text with them)
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")


def next_run(row: dict[str, Any]) -> str:
    """What happens to a journal row: its owner, or what the next run of the same request does."""
    from ._journal import RESULT_RETENTION

    if row["pid"]:
        return f"pid {row['pid']} on {printable(row['host'])}" if row.get("host") else f"pid {row['pid']}"
    if row["request_id"] and row["state"] == "cancelled":
        return "no owner, cancelled by falnb: the next run takes its pictures if fal finished it, else submits anew"
    if row["request_id"]:
        return "no owner: the next run re-attaches to it"
    if row["state"] in ("sending", "uncertain"):
        sent = row.get("sent") or row.get("updated") or row["started"]
        until = time.strftime("%H:%M", time.localtime(float(sent) + RESULT_RETENTION))
        return (f"no owner: fal may hold it (see fal.ai/dashboard/requests); the next run refuses it until "
                f"{until}, then submits anew (or at once with refresh)")
    return "no owner: the next run submits it"


def _run(cache: Any, ns: str, args: argparse.Namespace) -> int:
    from ._units import human_bytes as _human

    cmd = args.command
    if cmd == "dir":
        print(cache.directory)
        return 0
    if not (cache.directory / "index.sqlite3").exists() and cmd != "import":
        # nothing cached here yet: answer without creating anything
        if getattr(args, "json", False):
            from ._admin import CacheStats
            from ._session import Spend

            # (stats: the keys a filled cache's stats have, so a script reads ["total"]["paid"] either way)
            print("[]" if cmd in ("list", "journal") else json.dumps(
                _stats_doc(CacheStats(cache.directory, 0, 0, 0, 0, Spend(), Spend())), indent=1))
            return 0
        print(f"(no cache at {cache.directory})", file=sys.stderr if cmd == "export" else sys.stdout)
        return 1 if cmd == "export" else 0
    if cmd == "list":
        rows = cache.iter_entries(ns, model=args.model, since=args.since, limit=args.limit)
        if args.json:  # one entry at a time: the first line at once, memory independent of the cache's size
            first = True
            for r in rows:
                print(("[\n" if first else ",\n") + json.dumps(asdict(r), indent=1, default=str), end="", flush=first)
                first = False
            print("[]" if first else "\n]")
            return 0
        empty = True
        for r in rows:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created))
            cost = "?" if r.cost is None else usd(r.cost)
            prompt = printable(r.prompt)
            prompt = prompt if len(prompt) <= 50 else prompt[:49] + "…"
            print(f"{when}  {printable(r.namespace):8}  {r.key[:12]}  {printable(r.model):34}  {r.images:2} img  "
                  f"{_human(r.bytes):>8}  {cost:>7}  {prompt}", flush=empty)
            empty = False
        if empty:
            print("(no entries)")
        return 0
    if cmd == "stats":
        s = cache.stats(ns)
        if args.json:
            print(json.dumps(_stats_doc(s), indent=1))
            return 0
        print(f"{s.directory}")
        print(f"  entries:   {s.entries} ({s.images} images)")
        print(f"  on disk:   {_human(s.bytes)} of images")
        print(f"  in flight: {s.in_flight}")
        spent = [f"{printable(n)}: {v}" if n else str(v) for n, v in s.spending()]  # (a line per namespace)
        print("  spent:     " + "\n             ".join(spent))
        return 0
    if cmd == "journal":
        rows = cache.journal(ns)
        if args.json:
            print(json.dumps(rows, indent=1))
            return 0
        if not rows:
            print("(nothing in flight)")
        for j in rows:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(j["started"]))
            print(f"{when}  {printable(j['namespace']):8}  {j['key'][:12]}  {printable(j['model']):34}  "
                  f"{printable(j['state']):9}  {printable(j['request_id'] or '-'):36}  {next_run(j)}")
        return 0
    if cmd == "prune":
        if args.older_than is None and args.max_size is None:
            print("falnb cache prune: give --older-than (e.g. 30d) and/or --max-size (e.g. 500MB)", file=sys.stderr)
            return 2
        print(cache.prune(args.older_than, args.max_size, ns, dry_run=args.dry_run))
        return 0
    if cmd == "clear":
        if not args.yes:
            if not sys.stdin.isatty():
                print("falnb cache clear: add --yes to remove every entry (the pictures were paid for)",
                      file=sys.stderr)
                return 2
            try:
                answer = input(f"Remove every entry in {cache.directory}{'' if ns == '*' else f' ({ns})'}? [y/N] ")
            except EOFError:  # Ctrl-D at the prompt: a no, not a traceback
                print(file=sys.stderr)
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                return 1
        print(f"removed {cache.clear(ns, ledger=args.ledger)} entries")
        return 0
    if cmd == "export":
        n = cache.export(args.file, ns, model=args.model, since=args.since)
        print(f"exported {n} entries to {args.file}")
        return 0
    if cmd == "import":
        print(cache.import_(args.file, replace=args.replace))
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


def _stats_doc(s: CacheStats) -> dict[str, Any]:
    """``stats --json``: "total" sums the namespaces asked for, "spent" keeps each apart."""
    return {"directory": str(s.directory), "entries": s.entries, "images": s.images, "bytes": s.bytes,
            "in_flight": s.in_flight, "total": asdict(s.total),
            "spent": {n: asdict(v) for n, v in s.by_namespace.items()}}
