"""A zip file written in one pass with memory that does not grow with the number of files.

``zipfile.ZipFile`` keeps a ``ZipInfo`` per member (a few hundred bytes each) until it writes the
central directory at the end: 100,000 pictures, tens of megabytes.  This writer spools each central
directory record to a temporary file instead, and a temporary SQLite table remembers which names
were written (a picture shared by several entries is stored once).  Members are stored, not
compressed (pictures are compressed already).  Zip64 records are always written (the offsets in the
zip64 extra field, and the zip64 end records), so exports past 4 GB or 65,535 files read the same way
as small ones; Python's ``zipfile`` and common unzip tools read them.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import tempfile
import time
import zlib
from pathlib import Path
from typing import IO

__all__ = ["ZipOut"]

_VERSION = 45  # zip64
_DOS_EPOCH = (1980, 1, 1, 0, 0, 0)
_MAX32 = 0xFFFFFFFF
#: bytes copied at a time (the memory a copy needs)
_CHUNK = 1 << 16


class ZipOut:
    """``with ZipOut(path) as z: z.add(name, data); z.add_file(name, f)``: a stored (uncompressed) zip."""

    def __init__(self, path: str | Path) -> None:
        self._f: IO[bytes] = open(path, "wb")  # (closed by close())
        self._central: IO[bytes] = tempfile.TemporaryFile()
        self._seen_dir = tempfile.mkdtemp(prefix="falnb-zip-")
        self._seen = sqlite3.connect(os.path.join(self._seen_dir, "names"), isolation_level=None)
        self._seen.execute("PRAGMA journal_mode=OFF")
        self._seen.execute("PRAGMA synchronous=OFF")
        self._seen.execute("CREATE TABLE names(name TEXT PRIMARY KEY) WITHOUT ROWID")
        self._seen.execute("BEGIN")
        self._count = 0
        t = time.localtime()[:6]
        self._time, self._date = _dos(t if t[0] >= 1980 else _DOS_EPOCH)

    def __enter__(self) -> ZipOut:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.close(finish=exc_type is None)

    def has(self, name: str) -> bool:
        return self._seen.execute("SELECT 1 FROM names WHERE name=?", (name,)).fetchone() is not None

    def add(self, name: str, data: bytes) -> None:
        """Store ``data`` as ``name`` (once: a name already written is skipped)."""
        if self.has(name):
            return
        self._member(name, zlib.crc32(data), len(data))
        self._f.write(data)

    def add_file(self, name: str, f: IO[bytes]) -> None:
        """Store the rest of the binary file ``f`` as ``name`` (read twice: its checksum, then its bytes)."""
        start = f.tell()
        crc, size = 0, 0
        while chunk := f.read(_CHUNK):
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
        f.seek(start)
        self._member(name, crc, size)
        shutil.copyfileobj(f, self._f, _CHUNK)

    def _member(self, name: str, crc: int, size: int) -> None:
        if size > _MAX32:
            raise ValueError(f"{name}: a member over 4 GB")
        raw = name.encode("utf-8")
        flags = 0x800  # names are UTF-8
        offset = self._f.tell()
        self._f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, _VERSION, flags, 0, self._time, self._date, crc, size,
                                  size, len(raw), 0) + raw)
        extra = struct.pack("<HHQ", 0x0001, 8, offset)  # the offset in the zip64 extra field, always
        self._central.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | _VERSION, _VERSION, flags, 0,
                                        self._time, self._date, crc, size, size, len(raw), len(extra), 0, 0, 0,
                                        (0o100600 << 16), _MAX32) + raw + extra)
        self._seen.execute("INSERT INTO names(name) VALUES(?)", (name,))
        self._count += 1

    def close(self, finish: bool = True) -> None:
        try:
            if finish:
                start = self._f.tell()
                self._central.seek(0)
                shutil.copyfileobj(self._central, self._f, _CHUNK)
                size = self._f.tell() - start
                end64 = self._f.tell()
                self._f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, (3 << 8) | _VERSION, _VERSION, 0, 0,
                                          self._count, self._count, size, start))
                self._f.write(struct.pack("<IIQI", 0x07064B50, 0, end64, 1))
                self._f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(self._count, 0xFFFF),
                                          min(self._count, 0xFFFF), min(size, _MAX32), min(start, _MAX32), 0))
        finally:
            self._f.close()
            self._central.close()
            self._seen.close()
            shutil.rmtree(self._seen_dir, ignore_errors=True)


def _dos(t: tuple[int, ...]) -> tuple[int, int]:
    year, month, day, hour, minute, second = t
    return (hour << 11) | (minute << 5) | (second // 2), ((year - 1980) << 9) | (month << 5) | day
