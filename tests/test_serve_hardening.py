"""vrec serve under hostile input: huge photos, foreign model names, foreign Host headers, signals,
a store deleted under it, awkward file names, HEAD requests and malformed gallery bodies.

What a user (or an attacker) would notice, on a real server process where it matters: answers are
JSON errors with a 4xx status (503 where the server is stopping or its store is gone), never a
500, a traceback or a folder of the server; memory comes back after large uploads; Ctrl-C and
SIGTERM let running requests finish and end with status 0.
"""
from __future__ import annotations

import io
import shutil
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from conftest import SAMPLE, TINY
from PIL import Image, ImageDraw

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from test_serve_api import ITEM, PHOTO, is_error, make_app, rss_kb, start_server, upload  # noqa: E402

STORE_MODELS = ("tiny-siglip", "tiny-cnn")


def png(size: tuple[int, int], mode: str = "L") -> bytes:
    """A flat PNG with one dark block: tiny as a file, huge in pixels."""
    img = Image.new(mode, size, 200 if mode == "L" else (200, 200, 200))
    ImageDraw.Draw(img).rectangle((size[0] // 5, size[1] // 4, size[0] // 2, size[1] // 2), fill=30 if mode == "L"
                                  else (30, 30, 30))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def upscaled_png(photo: Path, side: int, mode: str = "RGBA") -> bytes:
    """A catalog photo blown up to side x side pixels (as a PNG of the given mode)."""
    img = Image.open(photo).convert(mode).resize((side, side), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# --- 2. photos with too many pixels -------------------------------------------------------------

def test_an_upload_over_the_pixel_limit_is_a_413_before_it_is_decoded(shared_tiny_store):
    c = TestClient(make_app(shared_tiny_store))
    huge = png((10_000, 8_000))  # 80 megapixels in about 100 KB
    assert len(huge) < 200_000
    msg = is_error(upload(c, huge, "huge.png"), 413, "80 megapixels", "limit of 40 megapixels")
    assert "--max-upload-pixels" in msg
    # under the limit, a large photo is decoded at a reduced size and still finds its item
    big = upscaled_png(PHOTO, 4_000)  # 16 megapixels with transparency
    r = upload(c, big, "big.png", k="3")
    assert r.status_code == 200 and r.json()["results"][0]["id"] == ITEM, r.text

    small_limit = TestClient(make_app(shared_tiny_store, max_upload_pixels=100_000))
    is_error(upload(small_limit, big, "big.png"), 413, "16 megapixels", "limit of 0.1 megapixels")
    assert upload(small_limit, PHOTO.read_bytes()).json()["results"][0]["id"] == ITEM  # 256 x 256


def test_large_photos_of_every_kind_decode_reduced_to_what_the_model_needs():
    from vrec.ingest.catalog import decode_image, decode_reduced

    base = Image.open(PHOTO).convert("RGB").resize((2_000, 1_200))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    variants = {"RGB": base, "RGBA": base.convert("RGBA"), "L": base.convert("L"), "1": base.convert("1"),
                "P": base.convert("P"), "I;16": base.convert("L").point(lambda v: v * 256, "I").convert("I;16"),
                "CMYK": base.convert("CMYK")}
    for mode, img in variants.items():
        buf = io.BytesIO()
        img.save(buf, format="TIFF" if mode == "CMYK" else "PNG")
        out = decode_reduced(buf.getvalue(), min_size=224)
        assert out.mode == "RGB" and out.size == (500, 300) and out.info["full_size"] == (2_000, 1_200), mode
        full = decode_image(buf.getvalue()).resize(out.size, Image.BOX)
        diff = np.abs(np.asarray(out, float) - np.asarray(full, float)).mean()
        assert diff < 4, (mode, diff)  # the same picture, smaller
    buf = io.BytesIO()
    base.save(buf, format="JPEG", exif=exif.tobytes())
    out = decode_reduced(buf.getvalue(), min_size=224)
    assert out.info["full_size"] == (1_200, 2_000) and out.size[0] < out.size[1]  # upright, as decode_image
    assert out.size == decode_image(buf.getvalue(), min_size=224).size


def test_sixteen_parallel_80_megapixel_uploads_leave_memory_near_idle(shared_tiny_store, tmp_path):
    """The hostile case of the issue: PNGs of 80 megapixels (about 100 KB each) sent 16 at a time to a
    server that accepts them (--max-upload-pixels above 80 million). Each is decoded in a slot at a
    reduced size; afterwards the server's memory is back within 300 MB of what it was before."""
    import httpx

    p, url = start_server(shared_tiny_store, tmp_path, "--max-upload-pixels", "89000000")
    huge = png((10_000, 8_000))
    try:
        with httpx.Client(base_url=url, timeout=120) as h:  # the image tower loaded before measuring
            assert upload(h, PHOTO.read_bytes()).status_code == 200
            idle = rss_kb(p.pid)

            def send(_):
                with httpx.Client(base_url=url, timeout=300) as one:
                    r = upload(one, huge, "huge.png", k="3")
                    return r.status_code, r.text[:200]

            with ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(send, range(16)))
            after = rss_kb(p.pid)
            assert upload(h, PHOTO.read_bytes()).json()["results"][0]["id"] == ITEM  # still serving
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)
    assert {a[0] for a in answers} == {200}, answers[:3]
    assert (after - idle) / 1024 < 300, (idle // 1024, after // 1024)


# --- 5. models: only the store's, never the hub -------------------------------------------------

FOREIGN_MODELS = ["hf-hub:../x", "hf-hub:evil/model2", "hf-hub:", "open_clip:ViT-B-32@openai", "siglip-large",
                  "nope", "x" * 500]


def model_requests(c, model: str):
    """Every way a request can name a model."""
    yield "text", c.get("/api/search/text", params={"q": "bag", "model": model})
    yield "image", upload(c, PHOTO.read_bytes(), model=model)
    yield "similar", c.get(f"/api/similar/{ITEM}", params={"model": model})
    yield "compare left", c.get(f"/api/compare/{ITEM}", params={"left": model})
    yield "compare right", c.get(f"/api/compare/{ITEM}", params={"right": model})
    yield "gallery", c.post("/api/gallery", json={"title": "g", "model": model, "results": [{"id": ITEM, "score": 1}]})


def test_the_api_uses_only_the_models_the_store_holds_and_never_contacts_the_hub(shared_tiny_store, monkeypatch):
    hub = socket.socket()
    hub.bind(("127.0.0.1", 0))
    hub.listen(8)
    hub.setblocking(False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{hub.getsockname()[1]}")  # the 'hub': our socket
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    c = TestClient(make_app(shared_tiny_store), raise_server_exceptions=False)
    try:
        for model in FOREIGN_MODELS:
            for route, r in model_requests(c, model):
                msg = is_error(r, 400, *STORE_MODELS)
                assert ("has no vectors" if model == "siglip-large" else "unknown model") in msg.lower(), (route, msg)
                assert len(msg) < 400, (route, msg)
        with pytest.raises(BlockingIOError):
            hub.accept()  # nobody knocked
    finally:
        hub.close()


def test_no_answer_shows_a_folder_of_the_server(tmp_path, shared_tiny_store, monkeypatch):
    import vrec.search.query
    from vrec.base.errors import ModelUnavailable
    from vrec.models.hub import offline_help

    store = tmp_path / "store"
    shutil.copytree(shared_tiny_store, store)
    c = TestClient(make_app(store), raise_server_exceptions=False)
    answers = []
    for model in FOREIGN_MODELS:
        answers += [r for _, r in model_requests(c, model)]
    answers += [c.get("/api/search/text", params={"q": "bag", "filter": "nope=1"}), c.get("/api/similar/nope"),
                c.get("/api/items/../../etc/passwd"), c.get("/thumb/nope"), c.get("/api/recommend/x?unit=u"),
                upload(c, b"not a photo"), c.get("/api/compare/nope", params={"left": "tiny-siglip"})]

    def no_weights(*a, **kw):  # a store-held model whose weights are not on this machine
        raise ModelUnavailable(offline_help("tiny-siglip", "some/repo/weights.bin", "no network"))

    monkeypatch.setattr(vrec.search.query, "load_encoder", no_weights)
    monkeypatch.setattr(c.app.state.vrec.encoders, "_loaded", {})
    unloadable = c.get("/api/search/text", params={"q": "a never asked text"})
    is_error(unloadable, 503, "cannot be loaded")
    answers.append(unloadable)
    shutil.rmtree(store)
    answers += [c.get("/api/health"), c.get(f"/api/similar/{ITEM}")]
    folders = {str(store), str(tmp_path), str(Path.home()), str(SAMPLE)}
    for r in answers:
        assert r.status_code < 500 or r.status_code == 503, (r.status_code, r.text)
        assert list(r.json()) == ["error"], r.text
        for f in folders:
            assert f not in r.text, (f, r.text)
        assert "/tmp/" not in r.text and ".cache" not in r.text, r.text


# --- 6. Host header ---------------------------------------------------------------------------

def test_requests_for_another_host_name_are_refused(shared_tiny_store, tmp_path):
    """DNS rebinding: a page on evil.example.com whose name now points at 127.0.0.1 must not read the API."""
    import httpx

    p, url = start_server(shared_tiny_store, tmp_path, "--allowed-host", "shop.example.com",
                          "--allowed-host", "*.corp.example")
    port = url.rstrip("/").rsplit(":", 1)[1]
    try:
        with httpx.Client(base_url=url, timeout=60) as h:
            for host in ("evil.example.com", f"evil.example.com:{port}", "127.0.0.1.evil.example", "corp.example",
                         "localhost.evil", ""):
                r = h.get("/api/search/text", params={"q": "red"}, headers={"Host": host})
                msg = is_error(r, 400, "host")
                assert "results" not in r.text
                if host:
                    assert "--allowed-host" in msg, msg
            assert h.head("/api/health", headers={"Host": "evil.example.com"}).status_code == 400
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "shop.example.com",
                         "a.corp.example", "shop.example.com."):
                r = h.get("/api/search/text", params={"q": "red", "k": 2}, headers={"Host": host})
                assert r.status_code == 200 and len(r.json()["results"]) == 2, (host, r.text)
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)


def test_allowed_host_names_and_the_wildcard_address():
    from vrec.serve.middleware import HostCheck, allowed_host_names, host_name

    assert host_name("[::1]:8765") == "::1" and host_name("LocalHost.:80") == "localhost" and host_name("::1") == "::1"
    names = allowed_host_names("0.0.0.0", ["Shop.Example.com:8765"])
    assert names == ["localhost", "127.0.0.1", "::1", "0.0.0.0", "shop.example.com"]
    check = HostCheck(None, names)
    assert check.allows("shop.example.com") and not check.allows("example.com")
    assert HostCheck(None, ["*"]).allows("anything.example")


# --- 7. stopping ------------------------------------------------------------------------------

def post_and_wait_for_continue(url: str) -> tuple[socket.socket, bytes]:
    """A photo upload started on a raw socket with 'Expect: 100-continue': once '100 Continue' arrives,
    the server is running the request and waits for its body. Returns the socket and the body to send."""
    host, port = url[len("http://"):].rstrip("/").split(":")
    body = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="q.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n" + PHOTO.read_bytes() + b"\r\n--b--\r\n")
    s = socket.create_connection((host, int(port)), timeout=60)
    s.sendall(f"POST /api/search/image HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
              f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode())
    assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
    return s, body


def until_refused(url: str) -> None:
    """Wait until the server no longer accepts connections (it has begun to stop)."""
    host, port = url[len("http://"):].rstrip("/").split(":")
    for _ in range(600):
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError:
            return
        threading.Event().wait(0.05)
    raise AssertionError("the server kept accepting connections after the signal")


def reply_of(s: socket.socket) -> bytes:
    reply = b""
    while chunk := s.recv(65536):
        reply += chunk
    s.close()
    return reply


def warm(url: str) -> None:
    import httpx

    with httpx.Client(base_url=url, timeout=120) as h:  # the image tower loaded: a photo query takes ms
        assert upload(h, PHOTO.read_bytes()).status_code == 200


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_lets_the_running_request_finish_then_exits_0(shared_tiny_store, tmp_path, sig):
    p, url = start_server(shared_tiny_store, tmp_path)
    try:
        warm(url)
        s, body = post_and_wait_for_continue(url)
        p.send_signal(sig)
        until_refused(url)  # stopping: no new connections ...
        s.sendall(body)  # ... but the running request still gets its answer
        reply = reply_of(s)
        assert reply.startswith(b"HTTP/1.1 200 OK") and b'"bags/bag-tote-red"' in reply, reply[:300]
        assert p.wait(timeout=60) == 0
    finally:
        if p.poll() is None:
            p.kill()
    err = p.logs.read_text()
    assert "vrec serve: stopped." in err and "Traceback" not in err, err


def test_a_request_still_running_after_the_grace_period_gets_a_json_503(shared_tiny_store, tmp_path):
    p, url = start_server(shared_tiny_store, tmp_path, "--shutdown-grace", "0.5")
    try:
        warm(url)
        s, _ = post_and_wait_for_continue(url)  # and never send the body
        p.send_signal(signal.SIGINT)
        reply = reply_of(s)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503") and b"application/json" in head, reply
        assert body == b'{"error":"The server is stopping; try again once it is back."}'
        assert p.wait(timeout=60) == 0
    finally:
        if p.poll() is None:
            p.kill()
    err = p.logs.read_text()
    assert "vrec serve: stopped." in err and "Traceback" not in err and "CancelledError" not in err, err


def test_a_store_deleted_under_the_server_is_a_503_on_every_route_until_it_is_back(tmp_path, shared_tiny_store):
    store = tmp_path / "store"
    shutil.copytree(shared_tiny_store, store)
    c = TestClient(make_app(store), raise_server_exceptions=False)
    assert c.get("/api/health").status_code == 200
    aside = tmp_path / "aside"
    for gone in ("store", "models"):
        shutil.move(store if gone == "store" else store / "models", aside)
        for r in [c.get("/api/health"), c.get("/api/search/text", params={"q": "bag"}), c.get(f"/api/similar/{ITEM}"),
                  c.get(f"/api/items/{ITEM}"), c.get(f"/thumb/{ITEM}"), c.get(f"/api/compare/{ITEM}"),
                  upload(c, PHOTO.read_bytes()), c.head("/api/health"),
                  c.post("/api/gallery", json={"title": "g", "results": [{"id": ITEM, "score": 1}]})]:
            if r.request.method == "HEAD":
                assert r.status_code == 503
                continue
            msg = is_error(r, 503, "store is missing", "restart vrec serve")
            assert str(tmp_path) not in msg
        shutil.move(aside, store if gone == "store" else store / "models")  # rebuilt: served again
        assert c.get("/api/health").json()["items"] == 60
        assert c.get(f"/api/items/{ITEM}").json()["id"] == ITEM
    assert c.get("/").status_code == 200  # the page itself still loads, and shows the API's error


# --- 9. awkward file names ----------------------------------------------------------------------

ODD_NAMES = ["a b", "x#1", "what?", "100%", "%41", "a%2Fb", "pct%20sp", "a+b", "+", "café", "日本語", "it's",
             'say "hi"', "semi;colon", "amp&er=", "back\\slash", "[br]", "{c}", "~tilde", " lead", "end ",
             "dots..x", "sub dir/ü #?"]


def test_every_legal_file_name_is_reachable_by_id_on_every_route(tmp_path):
    """Ids are URL-encoded one path segment at a time (as the page's encodeURIComponent does); on a real
    server (the test client decodes '%' twice), every route finds the item, HEAD as well."""
    import httpx

    from vrec.ingest.embed import embed

    photos = tmp_path / "photos"
    sources = sorted(SAMPLE.rglob("*.jpg"))
    for i, name in enumerate(ODD_NAMES):
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sources[i], photos / f"{name}.jpg")
    store = tmp_path / "store"
    embed(photos, models=TINY, store=store, batch_size=16)
    p, url = start_server(store, tmp_path, "--experiment", "names", "--arms", "tiny-cnn,tiny-siglip")
    try:
        with httpx.Client(base_url=url, timeout=60) as h:
            found = h.get("/api/search/text", params={"q": "x", "k": 100}).json()["results"]
            assert sorted(r["id"] for r in found) == sorted(ODD_NAMES)
            for r in found:
                item_id, path = r["id"], quote(r["id"], safe="/")
                assert r["thumb"] == "/thumb/" + path
                assert h.get(f"/api/items/{path}").json()["id"] == item_id
                assert h.get(f"/api/similar/{path}", params={"k": 3}).json()["query"] == item_id
                assert h.get(f"/api/compare/{path}", params={"k": 3}).json()["id"] == item_id
                rec = h.get(f"/api/recommend/{path}", params={"unit": "u1", "k": 3})
                assert rec.status_code == 200 and rec.json()["item"] == item_id, (item_id, rec.text)
                thumb = h.get(r["thumb"])
                assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg", item_id
                head = h.head(r["thumb"])
                assert head.status_code == 200 and head.headers["content-length"] == str(len(thumb.content))
                page = h.post("/api/gallery", json={"title": "g", "results": [{"id": item_id, "score": 1}]})
                assert page.text.count("data:image/jpeg;base64,") == 1, item_id
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)
    js = (Path(__file__).resolve().parents[1] / "vrec" / "serve" / "web" / "static" / "app.js").read_text()
    assert 'split("/").map(encodeURIComponent).join("/")' in js  # the page encodes ids the same way


# --- 10. HEAD and gallery bodies --------------------------------------------------------------

def test_head_works_wherever_get_does(client_app):
    c = client_app
    for path in ["/api/health", "/", "/static/app.js", "/static/style.css", f"/thumb/{ITEM}", f"/api/items/{ITEM}",
                 "/api/search/text?q=bag&k=2", f"/api/similar/{ITEM}?k=2", f"/api/compare/{ITEM}?k=2", "/docs",
                 "/openapi.json", "/thumb/nope", "/api/nothing"]:
        get, head = c.get(path), c.head(path)
        assert head.status_code == get.status_code and head.content == b"", (path, head.status_code, head.text)
        assert head.headers["content-type"] == get.headers["content-type"], path
        if get.status_code == 200 and "took_ms" not in get.text:  # the same answer: the same length
            assert head.headers["content-length"] == get.headers["content-length"], path
    assert c.head("/api/gallery").status_code == 405


@pytest.fixture(scope="module")
def client_app(shared_tiny_store):
    return TestClient(make_app(shared_tiny_store))


@pytest.mark.parametrize("kwargs, says", [
    ({"json": [1, 2]}, "JSON object"),
    ({"json": "a gallery"}, "JSON object"),
    ({}, "JSON object"),
    ({"content": b"title=x", "headers": {"content-type": "application/x-www-form-urlencoded"}}, "JSON object"),
    ({"json": {"title": 3, "results": [{"id": ITEM, "score": 1}]}}, "title"),
    ({"json": {"results": "all"}}, "results"),
    ({"json": {"results": [{"score": 1}]}}, '"id"'),
    ({"json": {"results": [{"id": ITEM}]}}, "score"),
    ({"content": b"{oops", "headers": {"content-type": "application/json"}}, "not valid JSON"),
])
def test_gallery_body_errors_name_what_is_expected(client_app, kwargs, says):
    msg = is_error(client_app.post("/api/gallery", **kwargs), 400, says)
    assert "'?'" not in msg and "form field" not in msg, msg


def test_cli_checks_the_new_options(shared_tiny_store):
    from clihelp import fails

    fails("serve", "--store", shared_tiny_store, "--max-upload-pixels", "0", says="--max-upload-pixels")
    fails("serve", "--store", shared_tiny_store, "--max-upload-pixels", "1000000000", says="--max-upload-pixels")
    fails("serve", "--store", shared_tiny_store, "--shutdown-grace", "-1", says="--shutdown-grace")


def test_the_stopping_middleware_leaves_a_cancelled_request_alone_while_the_server_runs():
    """Cancellation outside a stop (a client gone) is not turned into an answer."""
    import asyncio

    from vrec.serve.middleware import Stopping

    async def app(scope, receive, send):
        raise asyncio.CancelledError()

    state = type("S", (), {"server": type("U", (), {"should_exit": False})()})()
    sent = []

    async def send(m):
        sent.append(m)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(Stopping(app, state)({"type": "http"}, None, send))
    assert sent == []
    state.server.should_exit = True
    asyncio.run(Stopping(app, state)({"type": "http", "method": "GET"}, None, send))
    assert sent[0]["status"] == 503


def test_malformed_host_headers_are_refused():
    from vrec.serve.middleware import HostCheck, allowed_host_names, host_name

    check = HostCheck(None, allowed_host_names("127.0.0.1"))
    for bad in ("localhost:1@evil.com", "[::1]evil.com", "127.0.0.1:80:80", "local host", "localhost:99999999"):
        assert not check.allows(host_name(bad)), bad
    for good in ("[::1]:8765", "::1", "LOCALHOST.:80", "127.0.0.1"):
        assert check.allows(host_name(good)), good
