"""Uploads (issue 14): fal's storage protocol against the emulator, once per content (across clients and
kernels), faults retried before the paid submit, never after."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import falnb
from falnb.emulator import Emulator, EmulatorServer
from falnb.fal import _upload
from falnb.fal._config import Key
from falnb.fal._upload import Uploader
from falnb.request._pictures import to_pictures
from tests.test_pictures import png


@pytest.fixture(autouse=True)
def _no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_upload, "RETRY_PAUSES", (0.0,))


@pytest.fixture
def emu() -> Emulator:
    return Emulator(latency=0.0)


def noise(w: int, h: int) -> bytes:
    import io
    import random

    from PIL import Image

    buf = io.BytesIO()
    Image.frombytes("RGB", (w, h), random.Random(7).randbytes(w * h * 3)).save(buf, "PNG")
    return buf.getvalue()


def client(emu: Emulator, cache: Path | bool) -> falnb.Client:
    return falnb.Client(offline=True, emulator=emu, cache=cache)


def test_same_bytes_are_uploaded_once_across_calls_clients_and_kernels(emu: Emulator, tmp_path: Path) -> None:
    data = png()
    first = client(emu, tmp_path / "c")
    first.generate("make it blue", model="nano-banana-edit", image=data)
    first.generate("make it green", model="kontext", image=data)  # another model, the same bytes
    assert emu.storage.uploads == 1
    # a new kernel: a new Client on the same cache folder remembers the URL (its own table, not memory)
    client(emu, tmp_path / "c").generate("make it red", model="nano-banana-edit", image=data)
    assert emu.storage.uploads == 1
    assert (tmp_path / "c" / "uploads.sqlite3").exists()
    # another storage (a new emulator) never gets a URL remembered from the first one
    other = Emulator(latency=0.0)
    client(other, tmp_path / "c").generate("make it gold", model="nano-banana-edit", image=data)
    assert other.storage.uploads == 1
    # the inputs each request sent are the uploaded URLs, which the model read back
    sent = [job.inputs["image_urls"][0] for job in emu.requests() if "image_urls" in job.inputs]
    assert len(set(sent)) == 1 and emu.storage.fetch(sent[0]) == data


def test_a_remembered_file_the_storage_lost_is_uploaded_again(tmp_path: Path) -> None:
    now = [0.0]
    emu = Emulator(latency=0.0, clock=lambda: now[0])
    client(emu, tmp_path / "c").generate("make it blue", model="kontext", image=png())
    now[0] += _upload.UPLOAD_LIFETIME + 1  # the emulator's storage let the file expire as falnb asked
    gen = client(emu, tmp_path / "c").generate("make it green", model="kontext", image=png())  # a new kernel
    assert gen.images and emu.storage.uploads == 2
    url = emu.requests()[-1].inputs["image_url"]
    assert emu.storage.fetch(url) == png()
    client(emu, tmp_path / "c").generate("make it gold", model="kontext", image=png())
    assert emu.storage.uploads == 2  # the new URL is remembered


def test_concurrent_requests_with_the_same_picture_share_one_upload(emu: Emulator) -> None:
    results = client(emu, False).generate_many(["a", "b", "c", "d"], model="kontext", image=png())
    assert all(isinstance(r, falnb.Generation) for r in results)
    assert emu.storage.uploads == 1 and len(emu.requests()) == 4


def _uploader(emu: Emulator, **kw: Any) -> tuple[Uploader, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=emu.transport())
    return Uploader(http, lambda: Key("k", "test"), rest_url="http://emu.test", **kw), http


def test_multipart_above_the_threshold_joins_the_parts_in_order(emu: Emulator) -> None:
    data = noise(300, 300)
    pic = to_pictures(data, field="image_url", model="m")[0]

    async def go() -> str:
        up, http = _uploader(emu, multipart_threshold=1000, chunk_size=700)
        try:
            return await up.url_for(pic)
        finally:
            await http.aclose()

    url = asyncio.run(go())
    assert len(data) > 2 * 700  # three parts or more
    assert emu.storage.fetch(url) == data
    resp = emu.handle("GET", url)
    assert resp.status == 200 and bytes(resp.body) == data


@pytest.mark.parametrize("faults", [["500"], ["503", "502"], ["drop"], ["429", "drop"]])
def test_upload_faults_are_retried_and_the_request_is_sent_once(emu: Emulator, faults: list[str]) -> None:
    emu.storage.fail_next(*faults)
    gen = client(emu, False).generate("make it blue", model="kontext", image=png())
    assert gen.images and len(emu.requests()) == 1
    url = emu.requests()[0].inputs["image_url"]
    assert emu.storage.fetch(url) == png()


def test_an_upload_that_keeps_failing_submits_nothing(emu: Emulator, tmp_path: Path) -> None:
    emu.storage.fail_next(*["500"] * _upload.ATTEMPTS)
    c = client(emu, tmp_path / "c")
    with pytest.raises(falnb.FalServerError, match="nothing was submitted"):
        c.generate("make it blue", model="kontext", image=png())
    assert emu.requests() == [] and emu.ledger.submits == 0
    # the journal holds no claim: the next run uploads and pays once
    gen = c.generate("make it blue", model="kontext", image=png())
    assert not gen.cached and len(emu.requests()) == 1


def test_a_refused_upload_is_not_retried(emu: Emulator) -> None:
    emu.storage.fail_next("400")
    with pytest.raises(falnb.FalError, match="refused the picture upload for fal-ai/flux-pro/kontext"):
        client(emu, False).generate("make it blue", model="kontext", image=png())
    assert emu.requests() == [] and emu.storage.uploads == 0


def test_over_real_http_with_the_storage_url_from_the_environment(
        serve_emulator: Callable[..., EmulatorServer], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    server = serve_emulator(latency=0.0)
    monkeypatch.setenv("FALNB_STORAGE_URL", server.url)
    c = falnb.Client(key="id:secret", queue_url=server.url, cache=tmp_path / "c")
    gen = c.generate("make it blue", model="nano-banana-edit", image=png())
    assert gen.images[0].width == 64 and server.emulator.storage.uploads == 1
    url = server.emulator.requests()[0].inputs["image_urls"][0]
    assert url.startswith(server.url + "/files/stored/")
    assert httpx.get(url).content == png()


def test_fal_js_protocol_initiate_and_put(emu: Emulator) -> None:
    http = httpx.Client(transport=emu.sync_transport(), base_url="http://emu.test")
    data = png()
    r = http.post("/storage/upload/initiate?storage_type=fal-cdn-v3", headers={"Authorization": "Key k"},
                  json={"content_type": "image/png", "file_name": "a.png"})
    assert r.status_code == 200, r.text
    assert http.put(r.json()["upload_url"], content=data, headers={"Content-Type": "image/png"}).status_code == 200
    assert http.get(r.json()["file_url"]).content == data
    # in parts: each part answers {partNumber, etag}; complete joins them
    r = http.post("/storage/upload/initiate-multipart", headers={"Authorization": "Key k"},
                  json={"content_type": "image/png", "file_name": "b.png"})
    up = r.json()["upload_url"]
    parts = [http.put(f"{up}/{n}", content=data[i:i + 100]).json() for n, i in enumerate(range(0, len(data), 100), 1)]
    assert http.post(f"{up}/complete", json={"parts": parts}).status_code == 200
    assert http.get(r.json()["file_url"]).content == data
    assert http.post("/storage/upload/initiate", json={}).status_code == 401  # the key is required


def test_files_expire_as_the_lifecycle_header_asks() -> None:
    now = [1000.0]
    emu = Emulator(latency=0.0, clock=lambda: now[0])
    http = httpx.Client(transport=emu.sync_transport(), base_url="http://emu.test")
    token = http.post("/storage/auth/token?storage_type=fal-cdn-v3", headers={"Authorization": "Key k"}).json()
    assert token["expires_at"].endswith("+00:00")  # fal-client compares it with an aware datetime
    r = http.post("/files/upload", content=png(), headers={
        "Authorization": f"Bearer {token['token']}", "Content-Type": "image/png",
        "X-Fal-Object-Lifecycle": '{"expiration_duration_seconds": 60}'})
    url = r.json()["access_url"]
    assert http.get(url).status_code == 200
    now[0] += 61
    assert http.get(url).status_code == 404 and emu.storage.fetch(url) is None
    assert http.post("/files/upload", content=b"x", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_upload_tokens_expire_on_the_emulators_clock() -> None:
    now = [1000.0]
    emu = Emulator(latency=0.0, clock=lambda: now[0])
    http = httpx.Client(transport=emu.sync_transport(), base_url="http://emu.test")
    token = http.post("/storage/auth/token?storage_type=fal-cdn-v3", headers={"Authorization": "Key k"}).json()
    bearer = {"Authorization": f"Bearer {token['token']}", "Content-Type": "image/png"}
    assert http.post("/files/upload", content=png(), headers=bearer).status_code == 200
    now[0] += 3601
    assert http.post("/files/upload", content=png(), headers=bearer).status_code == 401


def _counting_uploader(emu: Emulator, clock: Callable[[], float]) -> tuple[Uploader, httpx.AsyncClient, list[str]]:
    """An uploader on ``clock``, and the storage paths it calls, in order."""
    calls: list[str] = []

    async def seen(request: httpx.Request) -> None:
        calls.append(request.url.path)

    http = httpx.AsyncClient(transport=emu.transport(), event_hooks={"request": [seen]})
    return Uploader(http, lambda: Key("k", "test"), rest_url="http://emu.test", clock=clock), http, calls


@pytest.mark.parametrize("uploader_clock", ["the emulator's", "stopped"])
def test_an_expired_upload_token_is_replaced_and_the_upload_made(uploader_clock: str) -> None:
    """The uploader keeps its token for its hour (on its own clock) and fetches a new one after; a kept token
    the storage refuses anyway (a clock behind fal's, here one that stopped) is replaced and the upload made
    again, once."""
    now = [1000.0]
    emu = Emulator(latency=0.0, clock=lambda: now[0])
    first, second, third = (to_pictures(noise(8 + i, 8), field="image_url", model="m")[0] for i in range(3))
    stopped = now[0]
    clock = (lambda: now[0]) if uploader_clock == "the emulator's" else (lambda: stopped)

    async def go() -> tuple[list[str], list[str]]:
        up, http, calls = _counting_uploader(emu, clock)
        try:
            urls = [await up.url_for(first), await up.url_for(second)]
            now[0] += 3601  # the token's hour is over
            urls.append(await up.url_for(third))
            return urls, calls
        finally:
            await http.aclose()

    urls, calls = asyncio.run(go())
    assert [emu.storage.fetch(u) for u in urls] == [first.data, second.data, third.data]
    tokens = [c for c in calls if c == "/storage/auth/token"]
    uploads = [c for c in calls if c.endswith("/files/upload")]
    assert len(tokens) == 2  # one for the hour, one after it
    # with its own clock the uploader knew the token had expired; with a stopped one, the storage told it (401)
    assert len(uploads) == (3 if uploader_clock == "the emulator's" else 4)


def test_a_fresh_token_refused_is_not_tried_again(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal with a token fetched for this very upload is the key's or the storage's fault: one error,
    no loop of new tokens."""
    monkeypatch.setattr(type(emu.storage), "_bearer", lambda self, hdrs: _refused())
    pic = to_pictures(png(), field="image_url", model="m")[0]

    async def go() -> list[str]:
        up, http, calls = _counting_uploader(emu, lambda: 0.0)
        try:
            with pytest.raises(falnb.AuthenticationError, match="nothing was submitted"):
                await up.url_for(pic)
            return calls
        finally:
            await http.aclose()

    calls = asyncio.run(go())
    assert calls.count("/storage/auth/token") == 1 and len(calls) == 2


def _refused() -> Any:
    from falnb.emulator._http import json_response

    return json_response(401, {"detail": "Invalid or expired upload token"})


def test_fal_clients_upload_file_works_against_the_emulator(
        serve_emulator: Callable[..., EmulatorServer], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fc = pytest.importorskip("fal_client.client")
    import fal_client

    server = serve_emulator(latency=0.0)
    # fal-client's storage hosts are constants (no environment override): patched as fal's own tests do
    monkeypatch.setattr(fc, "REST_URL", server.url)
    monkeypatch.setattr(fc, "CDN_URL", server.url)
    path = tmp_path / "photo.png"
    path.write_bytes(png())
    url = fal_client.SyncClient(key="id:secret").upload_file(path)
    assert httpx.get(url).content == png()
    assert server.emulator.storage.uploads == 1
