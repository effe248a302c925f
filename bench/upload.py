"""10. Uploading an input picture: time and bytes for a 4 MB PNG, falnb beside fal-client's ``upload_file``.

One emulator process serves both over real HTTP (its storage routes speak fal-client's protocol: a token,
then ``POST /files/upload``).  fal-client's storage hosts are constants with no environment override
(``fal_client.client.REST_URL`` and ``CDN_URL``, fal-client 1.0.3): they are set to the emulator's URL, as fal's
own tests do (``monkeypatch.setattr("fal_client.client.CDN_URL", ...)``), and a fresh ``SyncClient`` is made
after patching (its token manager reads ``REST_URL`` when built).  falnb points its uploader at the emulator
with ``storage_url`` (``FALNB_STORAGE_URL``).  Bytes are what the emulator received per upload.

Two rows: a first upload (both send the whole file), and the same picture again (fal-client uploads it
again; falnb's remembered URL is reused: no bytes sent).  Rounds alternate the clients.
"""

from __future__ import annotations

import asyncio
import io
import random
import time
from pathlib import Path
from typing import Any

from . import Row, have, median, ratio, tmpdir
from ._emu import emulator

#: about 4 MB of PNG: noise does not compress
SIDE = (1180, 1180)


def _png(path: Path, side: tuple[int, int]) -> bytes:
    from PIL import Image

    w, h = side
    buf = io.BytesIO()
    Image.frombytes("RGB", (w, h), random.Random(14).randbytes(w * h * 3)).save(buf, "PNG", compress_level=1)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def _falnb(url: str, path: Path, memo: Any) -> tuple[float, int]:
    import httpx

    from falnb.fal._config import Key
    from falnb.fal._upload import Uploader
    from falnb.request._pictures import to_pictures

    async def go() -> tuple[float, int]:
        async with httpx.AsyncClient(timeout=60) as http:
            up = Uploader(http, lambda: Key("bench-key", "bench"), rest_url=url, memo=memo)
            t = time.perf_counter()
            pic = to_pictures(path, field="image_url", model="bench")[0]  # reading and checking count too
            await up.url_for(pic)
            return time.perf_counter() - t, up.bytes_sent

    return asyncio.run(go())


def _fal_client(url: str, path: Path) -> float:
    import fal_client
    import fal_client.client as fc

    fc.REST_URL = url
    fc.CDN_URL = url
    client = fal_client.SyncClient(key="bench-key")  # built after patching: its token manager uses REST_URL
    t = time.perf_counter()
    client.upload_file(path)
    return time.perf_counter() - t


def run(quick: bool = False) -> list[Row]:
    from falnb.fal._upload import MemoryMemo

    rounds = 1 if quick else 5
    side = (300, 300) if quick else SIDE
    path = tmpdir("upload") / "input.png"
    size = len(_png(path, side))
    first: dict[str, list[float]] = {"falnb": [], "fal-client": []}
    again: dict[str, list[float]] = {"falnb": [], "fal-client": []}
    sent: dict[str, list[int]] = {"falnb": [], "fal-client": []}
    resent: dict[str, list[int]] = {"falnb": [], "fal-client": []}  # bytes received for the same picture again
    with emulator(latency=0.0, concurrency=4) as emu:
        url = emu["url"]
        for _ in range(rounds):
            memo = MemoryMemo()  # a first upload: nothing remembered
            before = emu.ask("storage")["bytes_received"]
            t, _ = _falnb(url, path, memo)
            first["falnb"].append(t)
            sent["falnb"].append(emu.ask("storage")["bytes_received"] - before)
            before = emu.ask("storage")["bytes_received"]
            again["falnb"].append(_falnb(url, path, memo)[0])  # the same bytes: the remembered URL
            resent["falnb"].append(emu.ask("storage")["bytes_received"] - before)
            if have("fal-client"):
                before = emu.ask("storage")["bytes_received"]
                first["fal-client"].append(_fal_client(url, path))
                sent["fal-client"].append(emu.ask("storage")["bytes_received"] - before)
                again["fal-client"].append(_fal_client(url, path))
                resent["fal-client"].append(emu.ask("storage")["bytes_received"] - before - sent["fal-client"][-1])

    def ms(xs: list[float]) -> float | None:
        return median(xs) * 1000 if xs else None

    detail = {"png_bytes": size, "rounds": rounds, "bytes_received": sent, "bytes_received_again": resent,
              "samples_ms": {k: [round(x * 1000, 1) for x in v] for k, v in first.items()},
              "again_samples_ms": {k: [round(x * 1000, 1) for x in v] for k, v in again.items()}}
    note = (f"{size / 1e6:.1f} MB PNG; bytes received by the emulator per upload: falnb "
            f"{max(sent['falnb'], default=0):,}, fal-client {max(sent['fal-client'], default=0):,}")
    fa, fc = ms(first["falnb"]), ms(first["fal-client"])
    rows = [Row("10. upload a 4 MB PNG input", "ms", fa, fc, None, ratio=ratio(fa, fc), ratio_label="of fal-client",
                target="<=1x fal-client", met=None if fc is None or fa is None else fa <= fc, notes=[note],
                detail=detail)]
    aa, ac = ms(again["falnb"]), ms(again["fal-client"])
    rows.append(Row("10. upload the same picture again", "ms", aa, ac, None, ratio=ratio(aa, ac),
                    ratio_label="of fal-client", target="no bytes sent again",
                    met=None if aa is None else max(resent["falnb"]) == 0,
                    notes=[f"bytes received by the emulator for the same picture again: falnb "
                           f"{max(resent['falnb'], default=0):,} (the URL it remembered), fal-client "
                           f"{max(resent['fal-client'], default=0):,}"]))
    return rows
