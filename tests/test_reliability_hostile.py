"""Figure 8: hostile text and hostile responses.

* Prompts and fal's texts (logs, error messages) carrying HTML/script payloads are escaped in every
  HTML falnb produces: ``Generation._repr_html_``, the magics' outputs and captions, the form's
  status line.
* Image URLs from a response are fetched only over http(s) or decoded from data: URIs; anything
  else (``file:``, other schemes, a redirect to ``file:``) is refused with a clear error and
  nothing is read.
* A response cannot make falnb write outside its cache directory, nor send the key to another host.
"""

from __future__ import annotations

import collections
import html
import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from falnb import Client
from falnb._exceptions import ContentPolicyError, FalnbError, FalServerError
from falnb.emulator import Emulator, Faults

MODEL = "fal-ai/flux/schnell"
QUEUE = "http://fal.test"
PAYLOAD = '<script>alert("falnb")</script><img src=x onerror=alert(1)>'
RAW = ("<script", "<img src=x")

Edit = Callable[[httpx.Request, int, Any], "tuple[int, Any] | None"]


class Tamper(httpx.AsyncBaseTransport):
    """The in-process emulator with its JSON answers rewritten by ``edit``; ``cdn`` answers other hosts."""

    def __init__(self, emu: Emulator, edit: Edit | None = None,
                 cdn: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.inner = emu.transport()
        self.edit, self.cdn = edit, cdn
        self.seen: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.host != "fal.test":
            if self.cdn is None:
                return httpx.Response(404, request=request)
            return self.cdn(request)
        resp = await self.inner.handle_async_request(request)
        if self.edit is None or "json" not in resp.headers.get("content-type", ""):
            return resp
        body = json.loads(await resp.aread())
        out = self.edit(request, resp.status_code, body)
        status, body = out if out is not None else (resp.status_code, body)
        headers = [(k, v) for k, v in resp.headers.items() if k.lower() != "content-length"]
        return httpx.Response(status, headers=headers, content=json.dumps(body).encode(), request=request)


def hostile_texts(request: httpx.Request, status: int, body: Any) -> tuple[int, Any] | None:
    """fal's logs and error messages carry the payload."""
    if isinstance(body, dict) and "logs" in body:
        body["logs"] = [*(body.get("logs") or []),
                        {"message": f"step {PAYLOAD}", "level": "INFO", "source": "user", "timestamp": ""}]
    if status == 422 and isinstance(body, dict) and isinstance(body.get("detail"), list):
        body["detail"][0]["msg"] = f"refused {PAYLOAD}"
    return status, body


def _raw_in(text: str) -> list[str]:
    return [r for r in RAW if r in text.lower()]


@pytest.fixture
def emu() -> Emulator:
    # a prompt with "forbidden-content" is refused with a 422, whose message the edit makes hostile
    return Emulator(latency=0.15, concurrency=4, faults=Faults(content_policy_words=("forbidden-content",)))


def _client(emu: Emulator, tmp_path: Path, edit: Edit | None = hostile_texts, **kw: Any) -> tuple[Client, Tamper]:
    transport = Tamper(emu, edit, kw.pop("cdn", None))
    kw.setdefault("cache", tmp_path / "cache")
    client = Client(key="sk-test-hostile", queue_url=QUEUE, transport=transport, use_stream=False, **kw)
    return client, transport


# -- escaped everywhere -------------------------------------------------------------------------------


def test_figure_hostile_text_is_escaped_in_every_html(emu: Emulator, tmp_path: Path) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from falnb.notebook._form import form
    from falnb.notebook._magics import magics_of

    prompt = f"a lighthouse {PAYLOAD}"
    checked: dict[str, int] = {}

    def check(where: str, markup: str) -> None:
        assert not _raw_in(markup), f"{where} shows raw HTML from a prompt or fal: {markup[:400]}"
        checked[where] = checked.get(where, 0) + 1

    # the Python API
    client, _ = _client(emu, tmp_path)
    logs: list[str] = []
    gen = client.generate(prompt, model=MODEL, seed=1, on_progress=lambda p: p.log and logs.append(p.log))
    assert any(PAYLOAD in line for line in logs), "fal's hostile log line never reached the progress"
    page = gen._repr_html_()
    check("Generation._repr_html_", page)
    assert html.escape(PAYLOAD[:40]) in page  # shown, as text

    # the magics: the picture's caption, a failed request's caption, progress
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "falnb")
    magics = magics_of(shell)
    magics.client = client
    shell.user_ns["hostile_prompts"] = [prompt, f"forbidden-content {PAYLOAD}"]
    try:
        for source in (f"%%falimage -m flux-schnell --seed 2\n{prompt}\n",
                       "%falimage -m flux-schnell --seed 3 --batch hostile_prompts\n"):
            with capture_output() as cap:
                shell.run_cell(source, store_history=False)
            shown = 0
            for out in cap.outputs:
                for mime, value in out.data.items():
                    if mime == "text/html":
                        check("%%falimage output", str(value))
                        shown += html.escape(PAYLOAD[:40]) in str(value)
            assert shown, (cap.stdout, cap.stderr, [o.data.get("text/plain") for o in cap.outputs])
    finally:
        magics.client = None

    # the form: its status line is HTML (fal's latest log while running, errors)
    statuses: list[str] = []
    for text in (prompt, f"forbidden-content {PAYLOAD}"):
        f = form("flux-schnell", client=client, prompt=text)
        f.status_label.observe(lambda ch: statuses.append(str(ch["new"])), names="value")
        f.generate()
        f.wait(30)
    for value in statuses:
        check("form status", value)
    assert any(html.escape(PAYLOAD[:40]) in s for s in statuses), statuses
    assert any("refused" in html.unescape(s) for s in statuses), statuses

    # the error a caller catches says what fal said, as text
    with pytest.raises(ContentPolicyError) as info:
        client.generate(f"forbidden-content {PAYLOAD}", model=MODEL, seed=9)
    assert PAYLOAD in str(info.value)  # plain text: escaping is the HTML renderer's job
    client.close()
    print("FIGURE hostile text: payload escaped in every HTML output checked: "
          + ", ".join(f"{k} x{v}" for k, v in checked.items()))


# -- image URLs -------------------------------------------------------------------------------------------


BAD_URLS = ["file:///etc/passwd", "FILE:///etc/passwd", " file:///etc/passwd", "ftp://example.com/a.png",
            "javascript:alert(1)", "/etc/passwd", "../../etc/passwd", "gopher://127.0.0.1:25/x",
            "\\\\server\\share\\a.png", "http+unix://%2Fvar%2Frun%2Fdocker.sock/x"]


def _with_image_url(url: str) -> Edit:
    def edit(request: httpx.Request, status: int, body: Any) -> tuple[int, Any] | None:
        if isinstance(body, dict) and isinstance(body.get("images"), list):
            body["images"][0]["url"] = url
        return status, body
    return edit


@pytest.mark.parametrize("url", BAD_URLS)
def test_image_urls_other_than_http_or_data_are_refused(url: str, emu: Emulator, tmp_path: Path) -> None:
    client, transport = _client(emu, tmp_path, _with_image_url(url))
    with pytest.raises(FalServerError) as info:
        client.generate("a lighthouse", model=MODEL, seed=1)
    client.close()
    text = str(info.value)
    assert "will not fetch" in text and "Only http(s) URLs and data: URIs" in text, text
    assert {r.url.scheme for r in transport.seen} <= {"http"}  # the bad URL was never requested
    assert not any("passwd" in str(r.url) for r in transport.seen)


def test_figure_hostile_image_urls(emu: Emulator, tmp_path: Path) -> None:
    refused = []
    for url in BAD_URLS:
        client, transport = _client(emu, tmp_path, _with_image_url(url))
        try:
            client.generate("a lighthouse", model=MODEL, seed=1, refresh=True)
        except FalServerError as exc:
            refused.append("will not fetch" in str(exc) and all(r.url.scheme == "http" for r in transport.seen))
        client.close()

    # a redirect from an https CDN to file: is refused too, at once (no retries)
    def cdn(request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "https":
            raise AssertionError(f"fetched {request.url}")
        return httpx.Response(302, headers={"location": "file:///etc/passwd"}, request=request)

    client, transport = _client(emu, tmp_path, _with_image_url("https://cdn.test/a.png"), cdn=cdn)
    with pytest.raises(FalServerError) as info:
        client.generate("a lighthouse", model=MODEL, seed=1, refresh=True)
    client.close()
    assert "redirected to an image URL falnb will not fetch" in str(info.value)
    cdn_hits = [r for r in transport.seen if r.url.host == "cdn.test"]
    assert len(cdn_hits) == 1 and "authorization" not in cdn_hits[0].headers  # the key stays with fal

    # data: URIs are decoded
    client, _ = _client(emu, tmp_path, None)
    gen = client.generate("a lighthouse", model=MODEL, seed=1, sync_mode=True, refresh=True)
    client.close()
    assert gen.image.data[:3] in (b"\xff\xd8\xff", b"\x89PN") and gen.image.url is None
    print(f"FIGURE hostile URLs: {sum(refused)}/{len(BAD_URLS)} non-http(s) image URLs refused with a clear error "
          "and never requested; a redirect to file: refused after 1 request; data: URIs decoded")
    assert sum(refused) == len(BAD_URLS)


# -- nothing written outside the cache, the key sent only to fal --------------------------------------


@pytest.fixture
def evil_name() -> Iterator[str]:
    name = f"falnb-evil-{secrets.token_hex(4)}"
    yield name
    for root in ("/tmp", "/"):
        assert not list(Path(root).glob(f"{name}*")), f"a file named by a response was written in {root}"


def test_figure_a_response_cannot_write_outside_the_cache(emu: Emulator, tmp_path: Path, evil_name: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    evil_id = f"../../../../../../tmp/{evil_name}"
    evil_file = f"../../../../{evil_name}.png"

    def edit(request: httpx.Request, status: int, body: Any) -> tuple[int, Any] | None:
        if isinstance(body, dict):
            if "request_id" in body:
                body["request_id"] = evil_id  # fal's URLs (same host) still name the real request
            for img in body.get("images") or []:
                img["file_name"] = evil_file
                img["content_type"] = f"../../{evil_name}"
        return status, body

    before = set(tmp_path.rglob("*"))
    client, transport = _client(emu, tmp_path, edit)
    gen = client.generate("a lighthouse", model=MODEL, seed=1)
    saved = gen.save(tmp_path / "out")
    again = client.generate("a lighthouse", model=MODEL, seed=1)
    client.close()
    assert again.cached and gen.request_ids == [evil_id]
    created = set(tmp_path.rglob("*")) - before
    allowed = (tmp_path / "cache", tmp_path / "out")
    stray = [p for p in created if not any(p == a or a in p.parents for a in allowed)]
    assert not stray, stray
    assert all(p.parent == tmp_path / "out" and evil_name not in p.name for p in saved)
    assert not list(work.iterdir())
    assert all(b"/../" not in r.url.raw_path for r in transport.seen)
    print(f"FIGURE hostile paths: request id {evil_id!r}, file name {evil_file!r}, content type "
          f"'../../{evil_name}': {len(created)} files created, all inside the cache dir (or the save dir asked for)")


def test_figure_fal_urls_to_another_host_never_get_the_key(emu: Emulator, tmp_path: Path) -> None:
    def edit(request: httpx.Request, status: int, body: Any) -> tuple[int, Any] | None:
        if isinstance(body, dict):
            for key in ("status_url", "response_url", "cancel_url"):
                if key in body:
                    body[key] = f"http://evil.test/{key}"
        return status, body

    client, transport = _client(emu, tmp_path, edit)
    gen = client.generate("a lighthouse", model=MODEL, seed=1)
    client.close()
    hosts = {r.url.host for r in transport.seen}
    assert gen.images and hosts == {"fal.test"}, hosts  # built from the URL rule on fal's host instead
    print(f"FIGURE hostile URLs: fal's status/result/cancel URLs pointing at evil.test were not followed; "
          f"{len(transport.seen)} requests, all to {sorted(hosts)}")


def test_a_journaled_hostile_request_id_stays_one_path_segment(emu: Emulator, tmp_path: Path) -> None:
    from falnb.fal._queue import QueueClient

    queue = QueueClient(httpx.AsyncClient(), QUEUE, None)
    sub = queue.handle(MODEL, "../../_emulator/reset?x=1#y")
    for url in (sub.status_url, sub.response_url, sub.cancel_url):
        parsed = httpx.URL(url)
        assert parsed.host == "fal.test" and parsed.raw_path.startswith(b"/fal-ai/flux/requests/..%2F..%2F_emulator")
        assert not parsed.query and not parsed.fragment and b"/../" not in parsed.raw_path
        assert parsed.raw_path.count(b"/") in (4, 5)  # /owner/app/requests/<id>[/status|/cancel]


def test_a_submit_answer_without_a_usable_id_is_uncertain_not_retried(emu: Emulator, tmp_path: Path) -> None:
    from falnb._exceptions import SubmitUncertainError

    for bad in (None, "", {"id": 1}, "x" * 1000, "a\nb"):
        def edit(request: httpx.Request, status: int, body: Any, bad: Any = bad) -> tuple[int, Any] | None:
            if isinstance(body, dict) and "request_id" in body and request.method == "POST":
                body["request_id"] = bad
            return status, body

        client, _ = _client(emu, tmp_path, edit, cache=False)
        submits = emu.ledger.submits
        with pytest.raises(SubmitUncertainError) as info:
            client.generate("a lighthouse", model=MODEL, seed=1)
        client.close()
        assert emu.ledger.submits == submits + 1  # sent once, never again
        assert "dashboard" in str(info.value)


def test_errors_stay_falnb_errors_under_garbage(emu: Emulator, tmp_path: Path) -> None:
    """Garbage where fal's JSON should be gives a falnb error, never a crash inside falnb."""
    shapes: list[Any] = [None, [], "text", 7, {"status": {"x": 1}}, {"images": "nope"}, {"images": [None, 3]},
                         {"images": [{"url": 5}]}, {"logs": "nope", "status": "IN_PROGRESS"},
                         {"status": "COMPLETED", "logs": [None, 5, {"message": None}], "metrics": 3, "error": 0}]
    outcomes = []
    for shape in shapes:
        for target in ("status", "result"):
            def edit(request: httpx.Request, status: int, body: Any, shape: Any = shape,
                     target: str = target) -> tuple[int, Any] | None:
                is_status = request.url.path.endswith("/status")
                is_result = request.method == "GET" and "/requests/" in request.url.path and not is_status
                if (target == "status" and is_status) or (target == "result" and is_result):
                    return status, shape
                return None

            client, _ = _client(emu, tmp_path, edit, cache=False, timeout=3.0)
            try:
                client.generate("a lighthouse", model=MODEL, seed=1)
                outcomes.append("ok")
            except FalnbError as exc:
                outcomes.append(type(exc).__name__)
            finally:
                client.close()
    assert len(outcomes) == 2 * len(shapes)
    print(f"FIGURE hostile shapes: {len(outcomes)} garbage status/result answers -> falnb errors only: "
          f"{dict(collections.Counter(outcomes))}")
