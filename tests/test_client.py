"""The client against the emulator, in-process and over real HTTP: bodies, outputs, errors, cancel, concurrency."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
import threading
import time
from typing import Any

import httpx
import pytest

import falnb
from falnb import Client
from falnb.emulator import Emulator, serve
from falnb.fal._queue import RetryPolicy
from falnb.request._plan import build_plan

from ._clock import SwitchClock
from .test_request import SEED_IDS, SIZES

FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, submit_attempts=3)


def make_client(kind: str, emu: Emulator, **kw: Any) -> tuple[Client, Any]:
    """A client reaching ``emu`` in-process (no socket) or through a real HTTP server."""
    kw.setdefault("cache", False)
    kw.setdefault("retry", FAST_RETRY)
    if kind == "inproc":
        return Client(offline=True, emulator=emu, **kw), None
    server = serve(port=0, emulator=emu)
    return Client(key="test-key", queue_url=server.url, **kw), server


@pytest.fixture(params=["inproc", "http"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def emu() -> Emulator:
    return Emulator(latency=0.01, concurrency=8)


@pytest.fixture
def client(kind: str, emu: Emulator) -> Any:
    c, server = make_client(kind, emu)
    yield c
    c.close()
    if server is not None:
        server.close()


def received(emu: Emulator) -> list[dict[str, Any]]:
    """The JSON bodies the emulator was sent, in order."""
    return [dict(r.inputs) for r in emu.requests()]


# -- every seed model's request body, as the emulator received it -------------------------------------


@pytest.mark.parametrize("model", SEED_IDS)
def test_every_seed_model_request_body(client: Client, emu: Emulator, model: str) -> None:
    queue = client._engine.queue()

    async def run_all() -> list[dict[str, Any]]:
        sent, subs = [], []
        for size in SIZES:
            for n in (1, 2, 5):
                plan = build_plan("a lighthouse", model=model, size=size, n=n, seed=7)
                for req in plan.requests:
                    subs.append(await queue.submit(req.model, req.input))  # one at a time: in order
                    sent.append(dict(req.input))
        await asyncio.gather(*(queue.wait(sub, timeout=10) for sub in subs))  # all done (and billed)
        return sent

    sent = falnb.fal._loop.run_sync(run_all())
    assert received(emu)[-len(sent):] == sent
    # the emulator validates each body at submit (fal answers a refused one with a 422 at result time); its
    # verdict is read here instead of fetching every result, which would render every picture at full size
    # (seconds per model, for pictures this test never looks at: test_every_seed_model_end_to_end fetches them)
    refused = [(j.inputs, j.errors) for j in emu.requests() if j.outcome != "ok" or j.errors]
    assert not refused, refused
    assert emu.ledger.requests == len(sent)  # billed: each one ran to its end


@pytest.mark.parametrize("model", SEED_IDS)
def test_every_seed_model_end_to_end(client: Client, emu: Emulator, model: str) -> None:
    gen = client.generate("a lighthouse at dusk", model=model, size="1536x1024", n=2, seed=3)
    assert len(gen.images) == 2 and gen.model == model
    spec = falnb.catalog._catalog.default_catalog().resolve(model)
    for img in gen.images:
        assert img.data and img.content_type.startswith("image/")
        assert img.width and img.height and img.width > img.height  # landscape kept
        if spec.size_field == "image_size":
            assert (img.width, img.height) == (1536, 1024)
        pil = img.to_pil()
        assert pil.size == (img.width, img.height)
    assert gen.cost == build_plan("x", model=model, size="1536x1024", n=2).cost
    assert gen.request_ids and all(gen.request_ids)
    openai = gen.to_openai("b64_json")
    assert base64.b64decode(openai["data"][0]["b64_json"]) == gen.images[0].data


def test_pass_through_model(client: Client, emu: Emulator) -> None:
    gen = client.generate("x", model="fal-ai/brand-new/model", size="640x480", n=2, custom_knob="on")
    assert len(gen.images) == 2 and gen.cost is None
    assert all(b["custom_knob"] == "on" and b["image_size"] == {"width": 640, "height": 480} for b in received(emu))


def test_forwarded_params_reach_fal(client: Client, emu: Emulator) -> None:
    client.generate("x", model="flux-ultra", raw=True, safety_tolerance=5, aspect_ratio="21:9", enhance_prompt=True)
    body = received(emu)[-1]
    assert body["raw"] is True and body["safety_tolerance"] == "5" and body["aspect_ratio"] == "21:9"


def test_sync_mode_data_uris(client: Client) -> None:
    gen = client.generate("x", model="schnell", size="512x512", sync_mode=True)
    assert gen.images[0].url is None and gen.images[0].width == 512
    assert gen.to_openai()["data"][0]["b64_json"]



def test_to_openai_never_hands_out_a_url_that_cannot_be_opened(tmp_path: Any) -> None:
    """``gen.to_openai("url")``: the in-process emulator's made-up host, or a fal URL older than fal keeps its
    files (a cache hit from long ago), is no URL: the picture comes as ``b64_json`` (as a ``sync_mode`` answer
    does), so the dict always holds a picture one can get.  A response_format other than url / b64_json is refused."""
    gen = Client(offline=True, emulator=Emulator(latency=0.0), cache=tmp_path).generate("x", model="schnell")
    item = gen.to_openai("url")["data"][0]
    assert item["url"] is None and base64.b64decode(item["b64_json"]) == gen.images[0].data, item["url"]
    fal = dataclasses.replace(gen, images=[dataclasses.replace(gen.images[0], url="https://v3.fal.media/files/a.jpg")],
                              made=time.time())
    assert fal.to_openai("url")["data"][0] == {"revised_prompt": "x", "url": "https://v3.fal.media/files/a.jpg",
                                                 "b64_json": None}
    old = dataclasses.replace(fal, made=time.time() - 8 * 24 * 3600)
    assert old.to_openai("url")["data"][0]["url"] is None and old.to_openai("url")["data"][0]["b64_json"]
    with pytest.raises(falnb.InputError):
        gen.to_openai("png")


def test_bria_single_image_and_n(client: Client, emu: Emulator) -> None:
    gen = client.generate("x", model="bria", n=3)
    assert len(gen.images) == 3 and len(gen.request_ids) == 3
    assert len({img.data for img in gen.images}) == 3  # distinct seeds: three different pictures


def test_recraft_dims_from_bytes(client: Client) -> None:
    gen = client.generate("x", model="recraft", size="900x1200", n=2)
    assert [(i.width, i.height) for i in gen.images] == [(900, 1200), (900, 1200)]


# -- errors -------------------------------------------------------------------------------------------


def test_missing_key_found_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(500))  # type: ignore[func-returns-value]
    c = Client(transport=transport, cache=False)
    with pytest.raises(falnb.MissingKeyError) as err:
        c.generate("x", model="schnell")
    assert calls == [] and "FAL_KEY" in str(err.value)


def test_key_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    from falnb.fal._config import find_key

    monkeypatch.setenv("FAL_AI_API_KEY", "litellm-style")
    assert find_key().source == "FAL_AI_API_KEY"
    monkeypatch.setenv("FAL_KEY_ID", "id")
    monkeypatch.setenv("FAL_KEY_SECRET", "secret")
    assert find_key().secret == "id:secret"
    monkeypatch.setenv("FAL_KEY", "fal-own")
    key = find_key()
    assert key.source == "FAL_KEY" and "fal-own" not in repr(key) and "fal-own" not in str(key)


def test_authentication_error() -> None:
    emu = Emulator(latency=0.0, api_keys={"good"})
    server = serve(port=0, emulator=emu)
    try:
        c = Client(key="bad-secret-123", queue_url=server.url, cache=False, retry=FAST_RETRY)
        with pytest.raises(falnb.AuthenticationError) as err:
            c.generate("x", model="schnell")
        assert "bad-secret-123" not in str(err.value) and "schnell" in str(err.value)
        assert emu.ledger.requests == 0
    finally:
        server.close()


def test_validation_error_names_model_and_field(client: Client, emu: Emulator) -> None:
    queue = client._engine.queue()

    async def run() -> None:
        sub = await queue.submit("fal-ai/flux-pro/v1.1-ultra", {"prompt": "x", "aspect_ratio": "5:1"})
        await queue.wait(sub, timeout=10)
        await queue.result(sub)

    with pytest.raises(falnb.FalValidationError) as err:
        falnb.fal._loop.run_sync(run())
    e = err.value
    assert e.status_code == 422 and e.field == "aspect_ratio" and "flux-pro/v1.1-ultra" in str(e)
    assert len(e._render_traceback_()) <= 2


def test_content_policy_error(kind: str) -> None:
    emu = Emulator(latency=0.0, faults=falnb.emulator.Faults(content_policy_words=("forbidden",)))
    c, server = make_client(kind, emu)
    try:
        with pytest.raises(falnb.ContentPolicyError) as err:
            c.generate("something forbidden", model="schnell")
        assert isinstance(err.value, falnb.FalValidationError) and "schnell" in str(err.value)
    finally:
        c.close()
        if server:
            server.close()


def test_input_errors_send_nothing(client: Client, emu: Emulator) -> None:
    bad: list[dict[str, Any]] = [dict(model="nope"), dict(model="schnell", size="huge"),
                                 dict(model="schnell", num_inference_steps=0), dict(model="imagen4", n=0)]
    for kw in bad:
        with pytest.raises(falnb.InputError):
            client.generate("x", **kw)
    assert emu.ledger.submits == 0


def test_an_on_progress_that_cannot_be_called_sends_nothing(client: Client, emu: Emulator) -> None:
    """It was first called once the request was submitted: a TypeError then, with fal's request cancelled while
    it ran (fal may bill it), or after a paid result."""
    with pytest.raises(falnb.InputError, match="on_progress must be a function"):
        client.generate("x", model="schnell", on_progress="print")

    async def later() -> None:
        await client.agenerate("x", model="schnell", on_progress=42)

    with pytest.raises(falnb.InputError, match="on_progress must be a function"):
        asyncio.run(later())
    assert emu.ledger.submits == 0


@pytest.mark.parametrize("prompts", ["lighthouse", b"lighthouse", 42, {"a fox": 1}, None],
                         ids=["str", "bytes", "int", "dict", "None"])
def test_generate_many_refuses_what_is_not_a_list_of_prompts(client: Client, emu: Emulator, prompts: Any) -> None:
    """A str would be one request per character; a dict or a number is a mistake: InputError, nothing sent."""
    with pytest.raises(falnb.InputError, match="generate_many takes a list of prompts"):
        client.generate_many(prompts, model="schnell")
    assert emu.ledger.submits == 0


@pytest.mark.parametrize(("prompts", "words"), [(["a fox", "  \n", "an owl"], "prompts[1] is empty"),
                                                (["a fox", "an owl", 7], "prompts[2] is a int")])
def test_generate_many_names_the_bad_prompt(client: Client, emu: Emulator, prompts: list[Any], words: str) -> None:
    with pytest.raises(falnb.InputError, match=re.escape(words)):
        client.generate_many(prompts, model="schnell")
    assert emu.ledger.submits == 0


def test_generate_many_takes_any_iterable_of_str(client: Client) -> None:
    results = client.generate_many((f"a fox, take {i}" for i in range(2)), model="schnell", seed=1)
    assert [r.prompt for r in results if isinstance(r, falnb.Generation)] == ["a fox, take 0", "a fox, take 1"]


def test_generate_without_a_model_uses_the_magics_default(client: Client, emu: Emulator) -> None:
    from falnb.catalog import DEFAULT_MODEL
    from falnb.notebook._magics import FalMagics

    assert FalMagics().default_model == DEFAULT_MODEL == "flux-schnell"
    gen = client.generate("a fox", seed=1)
    assert gen.model == client.catalog.resolve(DEFAULT_MODEL).id == emu.requests()[0].model_id


@pytest.mark.parametrize("value", [{1, 2}, float("nan"), float("inf"), object()], ids=["set", "nan", "inf", "object"])
def test_a_value_that_is_not_json_is_refused(client: Client, emu: Emulator, value: Any) -> None:
    with pytest.raises(falnb.ParameterError, match=r"palette=.*(JSON|NaN or an infinity)"):
        client.generate("a fox", model="fal-ai/some-new-model", palette=value)
    assert emu.ledger.submits == 0


def test_rate_limit_retried_then_refused(kind: str) -> None:
    emu = Emulator(latency=0.0, faults=falnb.emulator.Faults(rate_limit_burst=2))
    c, server = make_client(kind, emu)
    try:
        gen = c.generate("x", model="schnell")  # two 429s, then accepted: retried safely
        assert gen.images and emu.ledger.requests == 1
        emu.configure(rate_limit_burst=10)
        with pytest.raises(falnb.RateLimitError):
            c.generate("y", model="schnell")
        assert emu.ledger.requests == 1
    finally:
        c.close()
        if server:
            server.close()


def test_server_error_on_result(kind: str) -> None:
    emu = Emulator(latency=0.0, faults=falnb.emulator.Faults(infra_error_rate=1.0))
    c, server = make_client(kind, emu)
    try:
        with pytest.raises(falnb.FalServerError) as err:
            c.generate("x", model="schnell")
        assert "does not bill" in str(err.value)
    finally:
        c.close()
        if server:
            server.close()


def test_request_not_found_after_retention(client: Client, emu: Emulator) -> None:
    emu.configure(retention=0.05, large_retention=0.05)
    queue = client._engine.queue()

    async def run() -> None:
        sub = await queue.submit("fal-ai/flux/schnell", {"prompt": "x"})
        await queue.wait(sub, timeout=10)
        await asyncio.sleep(0.2)
        await queue.result(sub)

    with pytest.raises(falnb.RequestNotFoundError):
        falnb.fal._loop.run_sync(run())


def test_unreachable_queue_is_a_transport_error() -> None:
    c = Client(key="k", queue_url="http://127.0.0.1:9", cache=False, retry=FAST_RETRY)
    with pytest.raises(falnb.TransportError) as err:
        c.generate("x", model="schnell")
    assert not isinstance(err.value, falnb.SubmitUncertainError)
    assert "Nothing was sent" in str(err.value)


def test_lost_submit_answer_is_never_resent() -> None:
    emu = Emulator(latency=0.0, faults=falnb.emulator.Faults(submit_answer_delay=1.5))
    server = serve(port=0, emulator=emu)
    try:
        c = Client(key="k", queue_url=server.url, cache=False, retry=FAST_RETRY, http_timeout=0.3)
        with pytest.raises(falnb.SubmitUncertainError) as err:
            c.generate("x", model="schnell")
        assert "did not send it again" in str(err.value)
        time.sleep(1.6)
        assert emu.ledger.submits == 1
    finally:
        server.close()


def test_wait_timeout(kind: str) -> None:
    emu = Emulator(latency=5.0)
    c, server = make_client(kind, emu)
    try:
        t0 = time.monotonic()
        with pytest.raises(falnb.RequestTimeoutError):
            c.generate("x", model="schnell", timeout=0.3)
        assert time.monotonic() - t0 < 3
    finally:
        c.close()
        if server:
            server.close()


# -- cancel, interrupt, concurrency ------------------------------------------------------------------


def test_explicit_cancel_of_queued_request(client: Client, emu: Emulator) -> None:
    emu.concurrency = 1
    emu.latency = 2.0
    queue = client._engine.queue()

    async def run() -> tuple[str, str]:
        first = await queue.submit("fal-ai/flux/schnell", {"prompt": "a"})
        second = await queue.submit("fal-ai/flux/schnell", {"prompt": "b"})
        st = await queue.status(second)
        assert st.status == "IN_QUEUE" and st.queue_position == 0
        word = await queue.cancel(second)
        word1 = await queue.cancel(first)
        return word, word1

    words = falnb.fal._loop.run_sync(run())
    assert all(words)
    time.sleep(0.1)
    assert emu.ledger.requests == 0


def test_interrupt_cancels_and_bills_nothing(kind: str) -> None:
    clock = SwitchClock()  # the wall clock, moved on by hand instead of sleeping
    emu = Emulator(latency=3.0, concurrency=1, clock=clock)
    c, server = make_client(kind, emu)
    seen: list[str] = []

    def on_progress(p: falnb.Progress) -> None:
        seen.append(p.state)
        if p.state in ("queued", "running"):
            raise KeyboardInterrupt

    try:
        with pytest.raises(falnb.Interrupted) as err:
            c.generate("x", model="schnell", on_progress=on_progress)
        assert isinstance(err.value, KeyboardInterrupt) and "cancel" in str(err.value)
        assert [j.stopped for j in emu.requests()] == ["cancelled"]  # the cancel reached fal before the raise
        clock.freeze()  # past the 3 s the request would have run: fal never finishes it, never bills it
        clock.tick(3.5)
        clock.thaw()
        assert emu.ledger.submits == 1 and emu.ledger.requests == 0
    finally:
        c.close()
        if server:
            server.close()


def test_concurrency_and_queue_positions(kind: str) -> None:
    emu = Emulator(latency=0.3, concurrency=2)
    c, server = make_client(kind, emu)
    positions: list[int] = []
    try:
        t0 = time.monotonic()
        results = c.generate_many([f"prompt {i}" for i in range(8)], model="schnell")
        took = time.monotonic() - t0
        assert all(isinstance(r, falnb.Generation) for r in results)
        # 8 jobs, 2 at a time, 0.3 s each: about 1.2 s; one at a time would be 2.4 s
        assert took < 2.2, took
        assert emu.ledger.requests == 8

        def watch(p: falnb.Progress) -> None:
            if p.queue_position is not None:
                positions.append(p.queue_position)

        threads = [threading.Thread(target=c.generate, args=(f"busy {i}",), kwargs=dict(model="schnell"))
                   for i in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.05)
        c.generate("watched", model="schnell", on_progress=watch)
        for t in threads:
            t.join()
        assert positions and max(positions) >= 1
    finally:
        c.close()
        if server:
            server.close()


def test_sync_api_from_several_threads(client: Client, emu: Emulator) -> None:
    out: list[Any] = []
    threads = [threading.Thread(target=lambda i=i: out.append(client.generate(f"t{i}", model="schnell")))
               for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 6 and emu.ledger.requests == 6


def test_async_api(client: Client) -> None:
    async def main() -> list[falnb.Generation]:
        return list(await asyncio.gather(*(client.agenerate(f"a{i}", model="schnell") for i in range(3))))

    gens = asyncio.run(main())
    assert len(gens) == 3 and all(g.images for g in gens)


def test_progress_states(kind: str) -> None:
    emu = Emulator(latency=0.4, concurrency=1)
    c, server = make_client(kind, emu)
    states: list[str] = []
    try:
        c.generate("x", model="schnell", on_progress=lambda p: states.append(p.state))
        assert states[-1] == "done" and "running" in states
    finally:
        c.close()
        if server:
            server.close()


def test_reprs_hide_the_key() -> None:
    c = Client(key="super-secret-key", queue_url="http://127.0.0.1:9", cache=False)
    assert "super-secret-key" not in repr(c) and "super-secret-key" not in repr(c.key)


def test_clients_share_one_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx reads the whole CA bundle for each client it makes (~40 ms); falnb's clients share one context,
    built as httpx builds it (SSL_CERT_FILE honoured) and again when that changes."""
    import ssl

    from falnb.fal import _tls

    built: list[ssl.SSLContext] = []
    real = httpx.create_ssl_context
    monkeypatch.setattr(httpx, "create_ssl_context", lambda: built.append(real()) or built[-1])
    monkeypatch.setattr(_tls, "_CONTEXTS", {})
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    clients = [Client(key="k", queue_url="http://127.0.0.1:9", cache=False) for _ in range(3)]
    for c in clients:
        c._engine.queue()  # its two httpx clients (queue and status streams)
        c.close()
    assert len(built) == 1 and _tls.verify() is built[0]
    import certifi

    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    assert _tls.verify() is not built[0] and len(built) == 2
    assert _tls.verify(object()) is True  # a transport of the client's own: httpx builds no context
    offline = Client(offline=True, emulator=Emulator(), cache=False)
    offline._engine.queue()
    offline.close()
    assert len(built) == 2


def test_a_picture_saved_into_a_folder_gets_the_same_name_in_every_process(tmp_path: Any) -> None:
    """The name comes from the bytes (not ``hash()``, which differs between processes): saving the same
    picture again, from another kernel, writes over the same file instead of adding a copy."""
    import os
    import subprocess
    import sys

    code = ("import sys; from falnb.results._image import Image; "
            "print(Image(b'the same picture', 'image/png', 1, 1).save(sys.argv[1]).name)")
    names = set()
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        names.add(out.stdout.strip())
    assert len(names) == 1 and [p.name for p in tmp_path.iterdir()] == list(names)


@pytest.mark.parametrize("flag,value", [("cache", "no"), ("refresh", 1), ("refresh", "false"), ("cache", None)])
def test_a_flag_that_is_not_true_or_false_is_refused_before_sending(emu: Emulator, flag: str, value: Any) -> None:
    """``cache="no"`` was taken as True (truthy): a yes/no flag is True or False, refused otherwise."""
    c = Client(offline=True, emulator=emu, cache=False)
    with pytest.raises(falnb.InputError, match=f"{flag} must be True or False"):
        c.generate("a fox", model="schnell", **{flag: value})
    with pytest.raises(falnb.InputError, match=f"{flag} must be True or False"):
        c.generate_many(["a fox", "an owl"], model="schnell", **{flag: value})
    assert emu.ledger.submits == 0
    import numpy

    assert c.generate("a fox", model="schnell", refresh=numpy.bool_(False)).images  # NumPy's bool is a bool
