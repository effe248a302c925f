"""Team replay: export cache entries (and their image files) to a zip file, and import one.

An export streams: its rows are read one at a time, each image file is copied into the zip as it
comes, and the manifest is written to a temporary file first and then copied in (the zip's own
directory is spooled to disk too: :mod:`falnb.cache._zipout`), so the memory an export needs does not
grow with the cache.

An import trusts nothing in the zip: the manifest must be well formed (else :class:`CacheError`),
every image file is checked against its SHA-256 and size, and every entry's key is computed again
from its model and canonical request: an entry whose key does not match (relabelled, by mistake or
on purpose, to answer another request with its picture) is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import CacheError
from ._files import NAMESPACE, BadEntry, read_object
from ._schema import next_stamp
from ._zipout import ZipOut

if TYPE_CHECKING:
    from ._index import Index

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "ImportResult", "export_rows", "import_zip"]

EXPORT_FORMAT = "falnb-cache-export"
EXPORT_VERSION = 1
MANIFEST = "falnb-cache.json"
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: the latest creation time an import keeps (3000-01-01): a later one, or one not finite, could not be listed
#: (``time.localtime`` overflows) and NaN is stored by SQLite as NULL, which the index refuses
_LATEST = 32503680000.0


@dataclass(frozen=True)
class ImportResult:
    imported: int
    skipped: int
    damaged: int
    #: entries whose key does not match their request (relabelled): never imported
    refused: int = 0

    def __str__(self) -> str:
        s = f"imported {self.imported} entries, skipped {self.skipped} already present"
        s += f", {self.damaged} damaged (not imported)" if self.damaged else ""
        return s + (f", {self.refused} refused (their key does not match their request)" if self.refused else "")


def export_rows(rows: Iterable[tuple[Any, ...]], objects: str, path: str | Path) -> int:
    """Write the entries ``rows`` (ns, key, model, canonical, request_id, response, images, cost,
    created) and their image files to the zip file ``path``; how many were written (damaged ones are
    left out).  Written beside ``path`` and renamed into place; read and written one entry at a time."""
    dest = Path(path)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    count = 0
    try:
        with tempfile.TemporaryFile() as manifest, ZipOut(tmp) as z:
            head = json.dumps({"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "created": time.time()})
            manifest.write(head[:-1].encode() + b', "entries": [\n')
            for ns, key, mdl, canonical, rid, response, images, cost, created in rows:
                try:
                    metas = json.loads(images)
                    doc = {"namespace": ns, "key": key, "model": mdl, "canonical": json.loads(canonical),
                           "request_id": rid, "response": json.loads(response), "images": metas, "cost": cost,
                           "created": created}
                    blobs = [(m["sha"], read_object(objects, m["sha"], m["size"])) for m in metas
                             if not z.has(f"objects/{m['sha']}")]
                except (BadEntry, ValueError, TypeError, KeyError):
                    continue  # a damaged entry is not exported
                for sha, data in blobs:
                    z.add(f"objects/{sha}", data)  # (a picture shared by several entries is stored once)
                manifest.write((b"" if count == 0 else b",\n") + json.dumps(doc, ensure_ascii=False).encode())
                count += 1
            manifest.write(b"\n]}\n")
            manifest.seek(0)
            z.add_file(MANIFEST, manifest)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return count


def import_zip(path: str | Path, index: Index, store: Any, replace: bool) -> ImportResult:
    """Add the entries of the export ``path`` to the index (see the module docstring)."""
    imported = skipped = damaged = refused = 0
    try:
        z = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise CacheError(f"{path} is not a falnb cache export: {exc}") from None
    with z:
        entries = _manifest_entries(z, path)
        names = set(z.namelist())
        for doc in entries:
            try:
                row = _import_row(doc)
                if not _key_matches(row["key"], row["model"], doc["canonical"]):
                    refused += 1
                    continue
                blobs = []
                for m in row["metas"]:
                    member = f"objects/{m['sha']}"
                    if member not in names or z.getinfo(member).file_size != m["size"]:
                        raise BadEntry("missing file")
                    data = z.read(member)
                    if hashlib.sha256(data).hexdigest() != m["sha"]:
                        raise BadEntry("damaged file")
                    blobs.append((m["sha"], data))
            except (BadEntry, ValueError, TypeError, KeyError, zipfile.BadZipFile):
                damaged += 1
                continue
            with index.write() as c:
                exists = c.execute("SELECT 1 FROM entries WHERE ns=? AND key=?",
                                   (row["ns"], row["key"])).fetchone() is not None
                if exists and not replace:
                    skipped += 1
                    continue
                for sha, data in blobs:
                    store._store_object(sha, data)
                c.execute("INSERT OR REPLACE INTO entries(ns, key, model, canonical, request_id, response, "
                          "images, cost, bytes, created, used, stamp) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          (row["ns"], row["key"], row["model"], row["canonical"], row["request_id"],
                           row["response"], json.dumps(row["metas"], separators=(",", ":")), row["cost"],
                           sum(len(d) for _, d in blobs), row["created"], time.time(), next_stamp(c)))
                imported += 1
    index.checkpoint()
    return ImportResult(imported, skipped, damaged, refused)


def _manifest_entries(z: zipfile.ZipFile, path: str | Path) -> list[Any]:
    try:
        manifest = json.loads(z.read(MANIFEST))
    except (KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise CacheError(f"{path} is not a falnb cache export (no readable {MANIFEST}: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise CacheError(f"{path} is not a falnb cache export")
    version = manifest.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CacheError(f"{path} is not a falnb cache export (its version is {version!r}, not a number)")
    if version > EXPORT_VERSION:
        raise CacheError(f"{path} was written by a newer falnb (format {version})", hint="Upgrade falnb to import it.")
    entries = manifest.get("entries", [])
    if not isinstance(entries, list):
        raise CacheError(f"{path} is not a falnb cache export (its entries are not a list)")
    return entries


def _key_matches(key: str, model: str, canonical: Any) -> bool:
    """Whether ``key`` is the cache key of ``model`` and ``canonical`` (one of its replicas: the same
    request asked several times in one call)."""
    from ..request._plan import MAX_N, request_key

    return any(request_key(model, canonical, replica) == key for replica in range(MAX_N))


def _import_row(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise BadEntry("not an object")
    ns, key, model = doc["namespace"], doc["key"], doc["model"]
    if not (isinstance(ns, str) and NAMESPACE.fullmatch(ns) and isinstance(key, str) and _HEX64.fullmatch(key)
            and isinstance(model, str) and model):
        raise BadEntry("bad names")
    metas = doc["images"]
    if not isinstance(metas, list) or not metas:
        raise BadEntry("no images")
    clean = []
    for m in metas:
        if not (isinstance(m, dict) and isinstance(m.get("sha"), str) and _HEX64.fullmatch(m["sha"])
                and isinstance(m.get("size"), int) and m["size"] >= 0 and isinstance(m.get("type"), str)):
            raise BadEntry("bad image")
        clean.append({"sha": m["sha"], "size": m["size"], "type": m["type"], "w": _opt_int(m.get("w")),
                      "h": _opt_int(m.get("h")), "url": m.get("url") if isinstance(m.get("url"), str) else None,
                      "seed": _opt_int(m.get("seed"))})
    response, canonical = doc["response"], doc["canonical"]
    if not isinstance(response, dict) or not isinstance(canonical, dict):
        raise BadEntry("bad response")
    created = _opt_float(doc.get("created"), _LATEST)
    rid = doc.get("request_id")
    return {"ns": ns, "key": key, "model": model, "metas": clean,
            "canonical": json.dumps(canonical, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
            "response": json.dumps(response, ensure_ascii=False, separators=(",", ":")),
            "cost": _opt_float(doc.get("cost"), math.inf),
            "created": time.time() if created is None else created,
            "request_id": rid if isinstance(rid, str) else None}


def _opt_float(v: Any, top: float) -> float | None:
    """``v`` as a finite number from 0 to ``top``, else None (a foreign zip may hold NaN, 1e300 or 10**400)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) and 0 <= f <= top else None


def _opt_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None
