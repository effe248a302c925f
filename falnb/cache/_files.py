"""The response cache's image files: ``objects/ab/abcdef...``, named by their SHA-256.

Stateless helpers shared by the hot path (:mod:`falnb.cache._store`) and the controls
(:mod:`falnb.cache._admin`): reading a file against its checksum, atomic writes, removal, which
files the index refers to and how large they are.  (Which files this process has already checked
is hot-path state: it stays in :mod:`falnb.cache._store`.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

__all__ = [
    "NAMESPACE",
    "BadEntry",
    "Unreadable",
    "dir_bytes",
    "fsync_dir",
    "object_sizes",
    "private_dir",
    "private_file",
    "read_object",
    "remove_any",
    "shas",
    "write_atomic",
]

#: a namespace name (as stored in the index)
NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class BadEntry(Exception):
    """An entry that cannot be served (the message says why); ``sha`` names a damaged file."""

    def __init__(self, why: str, sha: str | None = None) -> None:
        super().__init__(why)
        self.sha = sha


class Unreadable(Exception):
    """An image file that cannot be read right now (too many open files, a permission, an I/O error):
    no proof it is bad, so nothing is removed."""


def read_object(objects: str, sha: str, size: int) -> bytes:
    """The bytes of the image file ``sha``, checked against its size and SHA-256 (else :class:`BadEntry`)."""
    path = f"{objects}/{sha[:2]}/{sha}"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        raise BadEntry("missing") from None
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
        raise BadEntry("damaged", sha)
    return data


def write_atomic(shard: Path, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` in ``shard``: a 0600 temporary file, fsynced, renamed into place."""
    fd, tmp = tempfile.mkstemp(dir=shard, prefix=".tmp-")  # created 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(shard)


def remove_any(path: str) -> None:
    """Remove whatever is at ``path`` (a file, a link, a directory tree), best effort."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


def fsync_dir(path: Path) -> None:
    if os.name == "nt":  # pragma: no cover
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse directory fsync
        pass
    finally:
        os.close(fd)


def shas(images_json: str) -> list[str]:
    """The SHA-256 of each image file of an entry (its ``images`` column); [] when unreadable."""
    try:
        metas = json.loads(images_json)
        return [m["sha"] for m in metas if isinstance(m, dict) and isinstance(m.get("sha"), str)]
    except (ValueError, TypeError):
        return []


def object_sizes(root: Path) -> dict[str, int]:
    """The size of each image file under ``root`` (the ``objects`` directory), by name."""
    out: dict[str, int] = {}
    if root.is_dir():
        for shard in root.iterdir():
            if shard.is_dir():
                for f in shard.iterdir():
                    if not f.name.startswith("."):
                        with contextlib.suppress(OSError):
                            out[f.name] = f.stat().st_size
    return out


def dir_bytes(root: Path) -> int:
    """The bytes of the image files under ``root``, walked (nothing kept per file)."""
    total = 0
    with contextlib.suppress(OSError), os.scandir(root) as shards:
        for shard in shards:
            if shard.is_dir(follow_symlinks=False):
                with contextlib.suppress(OSError), os.scandir(shard.path) as files:
                    for f in files:
                        if not f.name.startswith("."):
                            with contextlib.suppress(OSError):
                                total += f.stat(follow_symlinks=False).st_size
    return total


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) readable by the user only (0700)."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            os.chmod(path, 0o700)
        except OSError:  # pragma: no cover - a filesystem without modes
            pass
    return path


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 when it does not exist."""
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_RDWR | getattr(os, "O_BINARY", 0), 0o600)
        os.close(fd)
