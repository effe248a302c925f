"""fal's schemas of endpoints falnb ships nothing for, kept on disk with a time-to-live.

The store asks a ``fetch`` callable (given by the Client, which wires fal's platform API in: the catalog
never does I/O towards fal itself) for an endpoint's OpenAPI document and keeps the answer as
``<directory>/<owner>--<app>--<path>.json``: ``{"fetched_at": t, "document": {...}}``, or
``{"fetched_at": t, "missing": true}`` when fal publishes none (a 404: some older endpoints, private apps).
A fresh entry is used as is; a stale one is refreshed, and kept when fal cannot be asked (offline, 429, a
5xx, a document cut short): the store works offline from what it has.  ``fetch`` answers the document,
None for "fal has none", or raises :class:`SchemaUnavailable` ("fal could not be asked").
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._openapi import EndpointDoc, SchemaError, read_openapi

__all__ = ["DEFAULT_TTL", "Lookup", "SchemaStore", "SchemaUnavailable"]

#: how long a fetched schema is trusted before it is asked for again (fal updates models, rarely their inputs)
DEFAULT_TTL = 24 * 3600.0

Fetch = Callable[[str], "Mapping[str, Any] | None"]


class SchemaUnavailable(Exception):
    """fal could not be asked for a schema (no network, rate limited, fal failing, a document cut short)."""


@dataclass(frozen=True)
class Lookup:
    """What the store knows of one endpoint: its read document, or why there is none."""

    doc: EndpointDoc | None
    #: ``"fal"`` (fetched now), ``"stored"`` (from disk), or ``""`` (no document)
    source: str = ""
    #: a short reason when there is no document
    reason: str = ""
    #: True when the reason is that fal could not be asked (the endpoint cannot be checked now)
    unchecked: bool = False


class SchemaStore:
    """Endpoint documents on disk under ``directory`` (None: in memory only), refreshed after ``ttl`` seconds
    through ``fetch``."""

    def __init__(self, directory: str | Path | None, fetch: Fetch | None, *, ttl: float = DEFAULT_TTL,
                 clock: Callable[[], float] = time.time) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.fetch = fetch
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._memo: dict[str, tuple[float, Lookup]] = {}

    def path(self, endpoint_id: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / (endpoint_id.replace("/", "--") + ".json")

    def lookup(self, endpoint_id: str) -> Lookup:
        """The endpoint's document: fresh from memory or disk, else fetched, else stale, else why not."""
        now = self._clock()
        with self._lock:
            memo = self._memo.get(endpoint_id)
            if memo is not None and now - memo[0] < self.ttl:
                return memo[1]
        stored, fetched_at = self._read(endpoint_id)
        if stored is not None and now - fetched_at < self.ttl:
            return self._remember(endpoint_id, fetched_at, stored)
        if self.fetch is None:
            if stored is not None:
                return stored
            return Lookup(None, reason="falnb has no schema for it and no way to ask fal")  # (passed through)
        try:
            doc = self.fetch(endpoint_id)
            found = self._read_doc(doc, endpoint_id) if doc is not None else None
        except SchemaUnavailable as exc:
            if stored is not None:  # offline: what we have beats nothing
                return stored
            return Lookup(None, reason=f"fal could not be asked for its schema ({exc})", unchecked=True)
        self._write(endpoint_id, now, doc)
        if found is None:
            return self._remember(endpoint_id, now, Lookup(None, reason="fal publishes no schema for it"))
        return self._remember(endpoint_id, now, Lookup(found, source="fal"))

    def forget(self, endpoint_id: str) -> None:
        with self._lock:
            self._memo.pop(endpoint_id, None)

    def _remember(self, endpoint_id: str, when: float, lookup: Lookup) -> Lookup:
        with self._lock:
            self._memo[endpoint_id] = (when, lookup)
        return lookup

    @staticmethod
    def _read_doc(doc: Any, endpoint_id: str) -> EndpointDoc:
        try:
            return read_openapi(doc, endpoint_id)
        except SchemaError as exc:  # cut short or of another shape: not a schema to trust, nor to store
            raise SchemaUnavailable(str(exc)) from None

    def _read(self, endpoint_id: str) -> tuple[Lookup | None, float]:
        path = self.path(endpoint_id)
        if path is None:
            return None, 0.0
        try:
            entry = json.loads(path.read_text("utf-8"))
            fetched_at = float(entry["fetched_at"])
            if entry.get("missing") is True:
                return Lookup(None, reason="fal publishes no schema for it"), fetched_at
            return Lookup(read_openapi(entry["document"], endpoint_id), source="stored"), fetched_at
        except (OSError, ValueError, KeyError, TypeError, SchemaError):
            return None, 0.0  # absent or damaged: as if never fetched

    def _write(self, endpoint_id: str, now: float, doc: Mapping[str, Any] | None) -> None:
        entry: dict[str, Any] = {"fetched_at": now, **({"document": doc} if doc is not None else {"missing": True})}
        target = self.path(endpoint_id)
        if target is None or self.directory is None:
            return
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(entry), "utf-8")
            os.replace(tmp, target)  # whole or absent: a reader never sees half a document
        except OSError:
            tmp.unlink(missing_ok=True)  # a read-only cache: the schema is still used from memory
