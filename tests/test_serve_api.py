"""vrec serve: the JSON API (FastAPI's TestClient, and a real `vrec serve` process on a loopback port).

What a user of the page or the API would notice: answers in the documented shape and equal to the
library's, every error as {"error": one sentence} with the right status, no file outside the
catalog ever served, uploads that are too large or not photos refused while the server keeps
serving, the token enforced, new `vrec embed` commits visible at the next request, concurrent
requests answered as if alone, and memory that stays flat under load.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from clihelp import fails
from conftest import SAMPLE, TINY, catalog_copy, jpeg_bytes
from PIL import Image

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from vrec.serve.app import create_app  # noqa: E402
from vrec.store.writer import ModelWriter

ITEM = "bags/bag-tote-red"
PHOTO = SAMPLE / "bags" / "bag-tote-red.jpg"


def make_app(store, **kw):
    kw.setdefault("model", "tiny-siglip")
    kw.setdefault("compare_with", "tiny-cnn")
    return create_app(store, **kw)


@pytest.fixture(scope="module")
def client(shared_tiny_store):
    return TestClient(make_app(shared_tiny_store))


def small_store(tmp_path: Path, n: int, metadata: bool = True) -> Path:
    """A private catalog (the first n drawn photos) embedded with the tiny models."""
    from vrec.ingest.embed import embed

    photos = catalog_copy(tmp_path, n=n)
    store = tmp_path / "store"
    embed(photos, models=TINY, store=store, metadata=SAMPLE / "catalog.csv" if metadata else None, batch_size=16)
    return store


def is_error(r, status: int, *fragments: str) -> str:
    """The response is a JSON error of this status: exactly {"error": "<sentence>"}, holding each fragment."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"].strip(), body
    for f in fragments:
        assert f.lower() in body["error"].lower(), (f, body["error"])
    return body["error"]


def check_results(body: dict, kind: str, k: int):
    assert body["kind"] == kind and body["k"] == k and isinstance(body["took_ms"], float)
    assert isinstance(body["notes"], list) and isinstance(body["query"], str)
    res = body["results"]
    assert [r["rank"] for r in res] == list(range(1, len(res) + 1))
    scores = [r["score"] for r in res]
    assert scores == sorted(scores, reverse=True)
    for r in res:
        assert set(r) == {"rank", "id", "score", "probability", "thumb", "title", "metadata", "photo", "photos",
                          "found_by"}, r
        assert r["thumb"] == "/thumb/" + (r["photo"] or r["id"])
        assert "path" not in r["metadata"] and "row" not in r["metadata"] and "hash" not in r["metadata"]
    return res


# --- every route ------------------------------------------------------------------------------

def test_health_names_models_items_index_and_filters(client):
    h = client.get("/api/health").json()
    assert h["default_model"] == "tiny-siglip" and h["compare_with"] == "tiny-cnn" and h["items"] == 60
    assert {m["name"]: (m["items"], m["text"], m["index"]) for m in h["models"]} == {
        "tiny-siglip": (60, True, "exact"), "tiny-cnn": (60, False, "exact")}
    assert {"category", "price", "colour", "id", "path", "width", "height"} <= set(h["filters"])
    assert not {"row", "hash", "size", "mtime", "tags"} & set(h["filters"])
    assert h["token_required"] is False and h["version"]


def test_text_search_matches_the_library_and_filters_like_the_cli(client, shared_tiny_store):
    from vrec.search.query import search_text

    r = client.get("/api/search/text", params={"q": "red bag", "k": 5})
    res = check_results(r.json(), "text", 5)
    lib = search_text("red bag", k=5, model="tiny-siglip", store=shared_tiny_store)
    assert [x["id"] for x in res] == lib.table["id"].tolist()
    assert all(0 < x["probability"] < 1 for x in res)  # SigLIP's match probability
    assert res[0]["title"] and res[0]["metadata"]["category"]

    r = client.get("/api/search/text", params=[("q", "bag"), ("k", "12"), ("filter", "category=bags"),
                                               ("filter", "price<150")])
    res = check_results(r.json(), "text", 12)
    assert res and all(x["metadata"]["category"] == "bags" and x["metadata"]["price"] < 150 for x in res)

    many = client.get("/api/search/text", params={"q": "bag", "k": 500}).json()
    assert len(many["results"]) == 60 and any("60" in n for n in many["notes"])


def test_a_text_asked_again_is_not_encoded_again(client):
    """Refining filters or k re-asks the same text: its vector is kept, so only the search runs."""
    first = client.get("/api/search/text", params={"q": "woven straw hat", "k": 3}).json()["results"]
    enc = client.app.state.vrec.encoders._loaded["tiny-siglip"][0]
    calls = []
    encode = enc.encode_texts
    enc.encode_texts = lambda texts: (calls.append(list(texts)), encode(texts))[1]
    try:
        again = client.get("/api/search/text", params={"q": "woven straw hat", "k": 6}).json()["results"]
        assert calls == [] and [r["id"] for r in again[:3]] == [r["id"] for r in first]
        assert [r["score"] for r in again[:3]] == [r["score"] for r in first]
        client.get("/api/search/text", params={"q": "a striped scarf", "k": 3})
        assert calls == [["a photo of a striped scarf."]]
    finally:
        del enc.encode_texts


def test_similar_leaves_the_item_out_and_accepts_a_short_id(client, shared_tiny_store):
    from vrec.search.query import search_image

    body = client.get(f"/api/similar/{ITEM}", params={"k": 6}).json()
    res = check_results(body, "similar", 6)
    assert ITEM not in [x["id"] for x in res] and body["query"] == ITEM
    lib = search_image(ITEM, k=6, model="tiny-siglip", store=shared_tiny_store)
    assert [x["id"] for x in res] == lib.table["id"].tolist()
    assert all(x["probability"] is None for x in res)

    short = client.get("/api/similar/bag-tote-red", params={"k": 6, "model": "tiny-cnn"}).json()
    assert short["model"] == "tiny-cnn" and short["query"] == ITEM
    filtered = client.get(f"/api/similar/{ITEM}", params={"k": 20, "filter": "category=shoes"}).json()
    assert filtered["results"] and {x["metadata"]["category"] for x in filtered["results"]} == {"shoes"}


def test_image_upload_finds_the_photo_itself_first_and_can_be_steered(client):
    data = PHOTO.read_bytes()
    r = client.post("/api/search/image", files={"file": ("mine.jpg", data, "image/jpeg")}, data={"k": "4"})
    res = check_results(r.json(), "image", 4)
    assert res[0]["id"] == ITEM and res[0]["score"] > 0.99 and r.json()["query"] == "mine.jpg"

    steered = client.post("/api/search/image", files={"file": ("mine.jpg", data, "image/jpeg")},
                          data={"k": "4", "plus": ["green", "shoes"], "minus": "red", "weight": "3",
                                "filter": "category=shoes"}).json()
    assert "+'green'" in steered["query"] and "-'red'" in steered["query"]
    assert {x["metadata"]["category"] for x in steered["results"]} == {"shoes"}


def test_compare_shows_both_models_and_their_overlap(client):
    body = client.get(f"/api/compare/{ITEM}", params={"k": 5}).json()
    assert body["id"] == ITEM and body["item"]["id"] == ITEM and body["item"]["title"] == "Red tote bag"
    assert body["left"]["model"] == "tiny-cnn" and body["right"]["model"] == "tiny-siglip"
    left = [x["id"] for x in body["left"]["results"]]
    right = [x["id"] for x in body["right"]["results"]]
    assert len(left) == len(right) == 5 and ITEM not in left + right
    assert set(body["shared"]) == set(left) & set(right)
    assert body["overlap"] == pytest.approx(len(body["shared"]) / 5)
    assert body["left"]["results"][0]["metadata"]["category"]

    swapped = client.get(f"/api/compare/{ITEM}", params={"left": "tiny-siglip", "right": "tiny-cnn", "k": 5}).json()
    assert [x["id"] for x in swapped["left"]["results"]] == right
    is_error(client.get(f"/api/compare/{ITEM}", params={"left": "tiny-siglip", "right": "tiny-siglip"}), 400, "same")


def test_items_and_thumbnails(client):
    item = client.get(f"/api/items/{ITEM}").json()
    assert item == {"id": ITEM, "thumb": f"/thumb/{ITEM}", "width": 256, "height": 256, "title": "Red tote bag",
                    "metadata": {"file": "bags/bag-tote-red.jpg", "title": "Red tote bag", "category": "bags",
                                 "colour": "red", "style": "tote", "price": 119}, "photos": None, "photo_ids": []}
    r = client.get(item["thumb"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "JPEG" and max(img.size) == 256  # never enlarged; at most 384
    assert client.get(item["thumb"]).content == r.content  # cached


def test_a_large_photo_gets_a_384_pixel_thumbnail(tmp_path):
    store = small_store(tmp_path, 2, metadata=False)
    first = sorted((tmp_path / "photos").rglob("*.jpg"))[0]
    Image.new("RGB", (1200, 800), (10, 200, 30)).save(first)  # the photo changed on disk since it was embedded
    c = TestClient(make_app(store))
    item_id = str(first.relative_to(tmp_path / "photos").with_suffix(""))
    img = Image.open(io.BytesIO(c.get(f"/thumb/{item_id}").content))
    assert img.size == (384, 256)


def test_gallery_is_one_self_contained_page_from_the_cli_renderer(client):
    r = client.post("/api/gallery", json={"title": "Red things", "results": [
        {"id": ITEM, "score": 0.91, "rank": 1}, {"id": "shoes/shoe-heel-red", "score": 0.5}]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'filename="Red-things.html"' in r.headers["content-disposition"]
    html = r.text
    assert "<title>Red things</title>" in html and "Red tote bag" in html and "0.910" in html
    assert html.count("data:image/jpeg;base64,") == 2 and "http://" not in html and "https://" not in html
    is_error(client.post("/api/gallery", json={"title": "x", "results": [{"id": "nope", "score": 1}]}), 404, "nope")  # an id not in the store: not found
    is_error(client.post("/api/gallery", json={"title": "x", "results": []}), 400, "no results")
    is_error(client.post("/api/gallery", json={"title": "x", "results": [{"id": ITEM, "score": "high"}]}), 400, "score")
    is_error(client.post("/api/gallery", content=b"{not json", headers={"content-type": "application/json"}), 400)


def test_the_page_and_docs_are_served(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html") and "<html" in r.text.lower()
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn." not in docs.text  # offline: Swagger UI's files come from the package
    assets = re.findall(r'(?:src|href)="(/[^"]+)"', docs.text)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for a in assets:
        assert client.get(a).status_code == 200, a
    spec = client.get("/openapi.json").json()
    assert {"/api/health", "/api/search/text", "/api/search/image", "/api/similar/{item_id}", "/api/compare/{item_id}",
            "/api/items/{item_id}", "/thumb/{item_id}", "/api/gallery", "/api/facets"} <= set(spec["paths"])


# --- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("params, status, says", [
    ({"k": "3"}, 400, "'q' is missing"),
    ({"q": "bag", "k": "abc"}, 400, "'k'"),
    ({"q": "bag", "k": "0"}, 400, "k must be between 1 and 1000"),
    ({"q": "bag", "k": "100000"}, 400, "k must be between 1 and 1000"),
    ({"q": "   "}, 400, "query is empty"),
    ({"q": "bag", "filter": "colour<3"}, 400, "holds text"),
    ({"q": "bag", "filter": "nope=1"}, 400, "no column 'nope'"),
    ({"q": "bag", "model": "tiny-cnn"}, 400, "no text tower"),
    ({"q": "bag", "model": "siglip-large"}, 400, "has no vectors"),  # a model vrec knows, not in this store
    ({"q": "bag", "model": "nope"}, 400, "unknown model 'nope'"),  # not "embed it": there is no such model
])
def test_bad_text_queries_are_one_clear_json_error(client, params, status, says):
    is_error(client.get("/api/search/text", params=params), status, says)


def test_unknown_items_routes_and_methods_are_json_errors(client):
    is_error(client.get("/api/similar/bag-tote-rd"), 404, "did you mean 'bags/bag-tote-red'")
    is_error(client.get("/api/items/nothing-here"), 404, "nothing-here")
    is_error(client.get("/api/compare/nothing-here"), 404)
    for route in ("similar", "items", "compare"):  # the API takes item ids, never files: its errors say so
        msg = is_error(client.get(f"/api/{route}/nope"), 404, "No item 'nope' in the catalog")
        assert "file" not in msg and "image" not in msg, msg
    is_error(client.get("/api/items/bags/bag-tote-rd"), 404, "No item 'bags/bag-tote-rd'",
             "Did you mean 'bags/bag-tote-red'")
    assert client.get("/thumb/bag-tote-red").status_code == 200  # the unique ending of an id, as on every route
    is_error(client.get("/api/nothing"), 404, "/api/nothing")
    is_error(client.delete("/api/health"), 405)
    is_error(client.get(f"/api/similar/{ITEM}", params={"k": "nan"}), 400)
    r = client.post("/api/search/image", data={"k": "3"})
    is_error(r, 400, "'file' is missing")



def test_an_id_ending_several_items_share_lists_them():
    import pandas as pd

    from vrec.search.query import unknown_item

    table = pd.DataFrame({"id": ["bags/tote", "shoes/tote", "bags/clutch"],
                          "path": ["bags/tote.jpg", "shoes/tote.jpg", "bags/clutch.jpg"]})
    msg = str(unknown_item(table, "tote", photos=False))
    assert "ambiguous" in msg and "'bags/tote'" in msg and "'shoes/tote'" in msg and "file" not in msg, msg
    assert str(unknown_item(table, "bags/clutc", photos=False)).startswith("No item 'bags/clutc' in the catalog;")


# --- files: only catalog photos, by id ----------------------------------------------------------

def raw_get(app, path: str) -> tuple[int, bytes]:
    """GET a raw path through the ASGI app, as a client that does not normalise '..' would send it."""
    import asyncio

    sent = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 1234), "server": ("testserver", 80)}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


def test_thumbnails_never_leave_the_catalog(tmp_path):
    store = small_store(tmp_path, 3, metadata=False)
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg_bytes((1, 2, 3)))
    photos = sorted((tmp_path / "photos").rglob("*.jpg"))
    victim = photos[0]
    victim.unlink()
    victim.symlink_to(secret)  # a link inside the catalog to a photo outside it
    victim_id = str(victim.relative_to(tmp_path / "photos").with_suffix(""))
    app = make_app(store)
    c = TestClient(app)
    is_error(c.get(f"/thumb/{victim_id}"), 404, "outside the catalog")
    page = c.post("/api/gallery", json={"title": "g", "results": [{"id": victim_id, "score": 1}]}).text
    assert "data:image/jpeg" not in page  # nor inlined into a gallery
    good_id = str(photos[1].relative_to(tmp_path / "photos").with_suffix(""))
    assert c.get(f"/thumb/{good_id}").status_code == 200
    for path in ["/thumb/%2e%2e/secret.jpg", "/thumb/%2e%2e%2fsecret.jpg", "/thumb/..%2Fsecret.jpg",
                 f"/thumb/{secret}", f"/thumb/%2F{str(secret).lstrip('/')}", "/thumb/%2e%2e/%2e%2e/etc/passwd",
                 f"/thumb/{good_id}/../../secret.jpg".replace("..", "%2e%2e")]:
        is_error(c.get(path), 404)
    for path in ["/thumb/../secret.jpg", "/thumb/../../../../etc/passwd", f"/thumb/{good_id}/../../secret",
                 "/thumb//etc/passwd", "/thumb/" + str(secret)]:
        status, body = raw_get(app, path)
        assert status == 404 and b"root:" not in body and body.startswith(b'{"error"'), (path, status, body[:80])


# --- uploads ----------------------------------------------------------------------------------

def png_bomb(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of side x side pixels (400 megapixels) in about 50 KB: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (side + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def upload(c, data: bytes, name: str = "q.jpg", **form):
    return c.post("/api/search/image", files={"file": (name, data, "application/octet-stream")}, data=form)


def test_bad_photos_are_refused_and_the_server_keeps_serving(client):
    good = PHOTO.read_bytes()
    bomb = png_bomb()
    assert len(bomb) < 200_000
    is_error(upload(client, bomb, "bomb.png"), 413, "decompression bomb", "limit of 40 megapixels")
    is_error(upload(client, b"just some text\n" * 20, "notes.jpg"), 400, "not an image")
    is_error(upload(client, good[: len(good) // 2], "half.jpg"), 400, "truncated")
    is_error(upload(client, b"", "empty.jpg"), 400, "empty")
    is_error(upload(client, good, k="-1"), 400, "between 1 and")
    is_error(upload(client, good, weight="11"), 400, "weight")
    r = upload(client, good)
    assert r.status_code == 200 and r.json()["results"][0]["id"] == ITEM


def test_upload_size_limit(shared_tiny_store):
    c = TestClient(make_app(shared_tiny_store, max_upload_mb=0.01))  # about 10 KB

    def noise(side: int) -> bytes:
        buf = io.BytesIO()
        Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buf, format="JPEG", quality=95)
        return buf.getvalue()

    big, bigger = noise(120), noise(300)
    assert 12_000 < len(big) < 60_000 and len(bigger) > 100_000
    msg = is_error(upload(c, bigger), 413, "limit of 0.01 MB")  # refused from its Content-Length
    assert "--max-upload-mb" in msg
    is_error(upload(c, big), 413, "limit of 0.01 MB")  # refused once read

    def chunks():  # no Content-Length: the limit applies while the body streams in
        for _ in range(0, 200_000, 4096):
            yield b"x" * 4096

    is_error(c.post("/api/search/image", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}),
             413)
    small = PHOTO.read_bytes()
    assert len(small) < 10_000
    r = upload(c, small)
    assert r.status_code == 200 and r.json()["results"][0]["id"] == ITEM


# --- token ------------------------------------------------------------------------------------

def test_a_token_guards_every_route_but_health(shared_tiny_store):
    c = TestClient(make_app(shared_tiny_store, token="s3cret-tok"), follow_redirects=False)
    h = c.get("/api/health")
    assert h.status_code == 200 and h.json()["token_required"] is True
    for path in ["/", "/docs", "/openapi.json", "/api/search/text?q=bag", f"/api/similar/{ITEM}",
                 f"/api/items/{ITEM}", f"/thumb/{ITEM}", f"/api/compare/{ITEM}"]:
        is_error(c.get(path), 401, "token")
        is_error(c.get(path, headers={"Authorization": "Bearer wrong"}), 401, "wrong")
    is_error(upload(c, PHOTO.read_bytes()), 401)
    is_error(c.post("/api/gallery", json={"title": "x", "results": [{"id": ITEM, "score": 1}]}), 401)
    bearer = {"Authorization": "Bearer s3cret-tok"}
    assert c.get("/api/search/text", params={"q": "bag"}, headers=bearer).status_code == 200
    assert c.get("/api/search/text", params={"q": "bag", "token": "s3cret-tok"}).status_code == 200
    is_error(c.get("/?token=wrong"), 401, "wrong")

    r = c.get("/?token=s3cret-tok")  # the URL vrec serve prints: sets the cookie, then the clean URL
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "vrec_token=s3cret-tok" in cookie and "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert c.get(f"/thumb/{ITEM}").status_code == 200  # the cookie now rides along, as for <img src=...>
    assert c.get("/").status_code == 200
    c.cookies.clear()
    is_error(c.get(f"/thumb/{ITEM}"), 401)


# --- fresh data, read-only store --------------------------------------------------------------

def store_files(store: Path) -> dict:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in store.rglob("*") if p.is_file()}


def test_new_embeds_show_up_at_the_next_request_and_the_store_is_only_read(tmp_path):
    from vrec.ingest.embed import embed

    store = small_store(tmp_path, 6)
    first = str(sorted(SAMPLE.rglob("*.jpg"))[0].relative_to(SAMPLE).with_suffix(""))
    c = TestClient(make_app(store))
    before = store_files(store)
    assert c.get("/api/health").json()["items"] == 6
    assert c.get("/api/search/text", params={"q": "bag", "k": 50}).status_code == 200
    assert len(c.get(f"/api/similar/{first}", params={"k": 50}).json()["results"]) == 5
    assert c.get(f"/thumb/{first}").status_code == 200
    assert upload(c, PHOTO.read_bytes()).status_code == 200
    assert c.get(f"/api/compare/{first}").status_code == 200
    assert store_files(store) == before  # nothing written, not even a lock file

    new = sorted(SAMPLE.rglob("*.jpg"))[-4:]  # four photos the store does not hold yet
    for f in new:
        dst = tmp_path / "photos" / f.relative_to(SAMPLE)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst)
    embed(tmp_path / "photos", models=TINY, store=store, metadata=SAMPLE / "catalog.csv", batch_size=16)
    new_id = str(new[0].relative_to(SAMPLE).with_suffix(""))

    h = c.get("/api/health").json()
    assert h["items"] == 10 and {m["items"] for m in h["models"]} == {10}
    item = c.get(f"/api/items/{new_id}").json()
    assert item["id"] == new_id and item["title"]
    assert len(c.get(f"/api/similar/{first}", params={"k": 50}).json()["results"]) == 9
    assert c.get(f"/thumb/{new_id}").status_code == 200
    assert app_reloads(c) == 1


def app_reloads(c) -> int:
    return c.app.state.vrec.live.reloads


def test_a_stale_index_is_searched_exactly_with_a_note(tmp_path, monkeypatch):
    import vrec.store.index as ix
    from vrec.store.store import Store

    monkeypatch.setattr(ix, "EXACT_BELOW", 2)  # the index answers from 2 items on
    store = small_store(tmp_path, 5)
    for name in TINY:
        ix.build_index(Store(store).model(name))
    c = TestClient(make_app(store))
    assert {m["index"] for m in c.get("/api/health").json()["models"]} == {"hnsw"}
    first = str(sorted(SAMPLE.rglob("*.jpg"))[0].relative_to(SAMPLE).with_suffix(""))
    assert not c.get(f"/api/similar/{first}", params={"k": 3}).json()["notes"]
    for name in TINY:  # vectors committed, index not updated yet (as while an embed runs, or after it was killed)
        ms = Store(store).model(name)
        items = ms.items().iloc[[0]].drop(columns="row").assign(id="late", path="late.jpg", product="late")
        with ModelWriter(ms, ms.config) as w:
            w.add(items, ms.vectors_for_rows([0]))
    assert {m["index"] for m in c.get("/api/health").json()["models"]} == {"stale"}
    body = c.get(f"/api/similar/{first}", params={"k": 3}).json()
    assert len(c.get(f"/api/similar/{first}", params={"k": 10}).json()["results"]) == 5  # the new item too
    assert any("vrec index" in n for n in body["notes"])


def test_concurrent_requests_get_the_answers_they_would_get_alone(client):
    photo = PHOTO.read_bytes()
    jobs = [("text", q) for q in ("red bag", "black shoes", "green dress", "watch")] + \
           [("similar", i) for i in (ITEM, "shoes/shoe-heel-red", "shirts/shirt-tee-navy", "bag-clutch-pink")] + \
           [("image", None)] * 2

    def ask(job):
        kind, arg = job
        if kind == "text":
            r = client.get("/api/search/text", params={"q": arg, "k": 8})
        elif kind == "similar":
            r = client.get(f"/api/similar/{arg}", params={"k": 8})
        else:
            r = upload(client, photo, k="8")
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()["results"]]

    alone = [ask(j) for j in jobs]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, jobs * 4))
    assert together == alone * 4


# --- the real server --------------------------------------------------------------------------

def start_server(store, logs: Path, *args) -> tuple[subprocess.Popen, str]:
    """`vrec serve` in a process of its own on a free loopback port, started as the `vrec` script starts it
    (vrec.cli.run: after Ctrl-C it exits without the interpreter's teardown); returns it and the URL it
    printed. Its stderr goes to a file (a pipe nobody reads could fill up and stall the server)."""
    cmd = [sys.executable, "-c", "from vrec.cli import run; run()", "serve", "--store", str(store),
           "--model", "tiny-siglip", "--compare-with", "tiny-cnn", "--port", "0", *args]
    err = open(logs / "serve.err", "w")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    err.close()
    line = p.stdout.readline()
    assert line.startswith("vrec serve: http://127.0.0.1:"), (line, (logs / "serve.err").read_text())
    p.logs = logs / "serve.err"
    return p, line.split(" ", 2)[2].strip()


def stop(p: subprocess.Popen) -> tuple[int, str]:
    p.send_signal(signal.SIGINT)  # Ctrl-C
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        raise
    return p.returncode, p.logs.read_text()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


def test_vrec_serve_answers_on_loopback_and_stops_cleanly_on_ctrl_c(shared_tiny_store, tmp_path):
    import httpx

    p, url = start_server(shared_tiny_store, tmp_path, "--token", "tok-123")
    try:
        assert url.endswith("/?token=tok-123")
        base = url.split("?")[0]
        with httpx.Client(base_url=base, timeout=60) as h:
            assert h.get("/api/health").json()["token_required"] is True
            assert h.get("/api/search/text", params={"q": "bag"}).status_code == 401
            r = h.get("/api/search/text", params={"q": "bag", "k": 3}, headers={"Authorization": "Bearer tok-123"})
            assert r.status_code == 200 and len(r.json()["results"]) == 3
        host, port = base[len("http://"):].rstrip("/").split(":")
        for raw in ("/thumb/../../../../etc/passwd", "/thumb/%2e%2e/%2e%2e/%2e%2e/etc/passwd"):
            with socket.create_connection((host, int(port)), timeout=30) as s:  # sent as is, never normalised
                s.sendall(f"GET {raw}?token=tok-123 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                reply = b""
                while chunk := s.recv(65536):
                    reply += chunk
            assert reply.startswith(b"HTTP/1.1 404") and b"root:" not in reply, reply[:200]
    finally:
        code, err = stop(p)
    assert code == 0 and "Traceback" not in err and "stopped" in err, err


def test_serve_refuses_to_expose_itself_without_a_token_and_bad_ports(shared_tiny_store, tmp_path):
    line = fails("serve", "--store", shared_tiny_store, "--host", "0.0.0.0", says="--token")
    assert "reachable from other machines" in line
    fails("serve", "--store", shared_tiny_store, "--port", "70000", says="--port must be between 0 and 65535")
    fails("serve", "--store", shared_tiny_store, "--model", "nope", says="has no vectors")
    fails("serve", "--store", shared_tiny_store, "--model", "tiny-siglip", "--compare-with", "tiny-siglip",
          says="--compare-with")
    fails("serve", "--store", tmp_path / "nothing", says="No vrec store")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        fails("serve", "--store", shared_tiny_store, "--port", str(s.getsockname()[1]), says="in use")


def test_load_eight_clients_for_thirty_seconds_no_error_and_flat_memory(shared_tiny_store, tmp_path):
    """Loopback only, bounded in time: mixed text / similar / image queries from 8 clients for 30 s.

    Warm-up ends on events, not after a fixed time (on a busy machine a clock-based warm-up can end
    before the image tower has even loaded): one request of each kind first, then until every client
    has had 6 answers. Memory must then stay flat for 20 s more."""
    import httpx

    p, url = start_server(shared_tiny_store, tmp_path)
    base = url.split("?")[0]
    ids = [str(f.relative_to(SAMPLE).with_suffix("")) for f in sorted(SAMPLE.rglob("*.jpg"))]
    photos = [f.read_bytes() for f in sorted(SAMPLE.rglob("*.jpg"))[:10]]
    words = ["red bag", "black shoes", "summer dress", "leather watch", "striped shirt", "navy", "tote"]
    errors, counts, samples = [], [0] * 8, []
    start, warm_at = time.monotonic(), []
    measured, limit = 20.0, 180.0  # seconds after warm-up; the most the whole test may take

    def ask(h, i: int):
        kind = i % 3
        if kind == 0:
            return h.get("/api/search/text", params={"q": words[i % len(words)], "k": 12})
        if kind == 1:
            return h.get(f"/api/similar/{ids[i % len(ids)]}", params={"k": 12})
        return h.post("/api/search/image", files={"file": ("q.jpg", photos[i % len(photos)])}, data={"k": "12"})

    def running() -> bool:
        now = time.monotonic()
        return now - start < limit and not (warm_at and now - warm_at[0] >= measured)

    def client(n: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as h:
            i = n
            while running():
                i += 1
                try:
                    r = ask(h, i)
                    if r.status_code != 200 or len(r.json()["results"]) != 12:
                        errors.append((r.status_code, r.text[:200]))
                except Exception as e:  # noqa: BLE001  (a dropped connection is an error too)
                    errors.append(repr(e))
                counts[n] += 1
                if not warm_at and min(counts) >= 6:
                    warm_at.append(time.monotonic())

    def sample() -> None:
        while running():
            samples.append((time.monotonic(), rss_kb(p.pid)))
            time.sleep(0.5)

    try:
        with httpx.Client(base_url=base, timeout=120) as h:  # both towers loaded before the clients start
            for i in range(3):
                assert ask(h, i).status_code == 200
        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)] + [threading.Thread(target=sample)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=limit + 120)
    finally:
        code, err = stop(p)
    assert not errors, errors[:5]
    assert warm_at, f"the clients had {counts} answers in {limit:.0f} s"
    after_warm_up = [kb for t, kb in samples if t >= warm_at[0]]
    assert len(after_warm_up) >= 10, samples
    growth_mb = (max(after_warm_up) - after_warm_up[0]) / 1024
    assert growth_mb <= 5, (growth_mb, [(round(t - start, 1), kb) for t, kb in samples], sum(counts))
    assert code == 0 and "Traceback" not in err, err


def test_the_cli_does_not_import_the_web_stack_until_serve_runs():
    code = ("import sys\nfrom vrec.cli import app\n"
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'vrec.serve.app') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_thumbnail_by_the_unique_ending_of_an_id(client):
    full, short = ITEM, ITEM.rsplit("/", 1)[-1]
    assert client.get(f"/thumb/{short}").content == client.get(f"/thumb/{full}").content


def test_steering_texts_are_bounded(client):
    r = upload(client, PHOTO.read_bytes(), plus=["x" * 1001])
    is_error(r, 400, "1,001 characters")
    r = upload(client, PHOTO.read_bytes(), plus=["red"] * 21)
    is_error(r, 400, "At most 20")


# --- facets and compare in merchandising terms --------------------------------------------------

def test_facets_of_the_catalog_and_of_a_search_match_the_library(client, shared_tiny_store):
    from vrec.search.facets import facets, to_dict

    whole = client.get("/api/facets").json()
    lib = to_dict(facets(shared_tiny_store, "tiny-siglip"))
    assert whole["items"] == whole["catalog"] == 60 and whole["query"] is None and whole["kind"] is None
    assert whole["categorical"] == lib["categorical"] and whole["numeric"] == lib["numeric"]
    cats = {c["column"]: c for c in whole["categorical"]}
    assert {v["value"]: v["count"] for v in cats["category"]["values"]} == {
        "bags": 12, "dresses": 12, "shirts": 12, "shoes": 12, "watches": 12}

    r = client.get("/api/facets", params=[("filter", "category=bags"), ("filter", "price<150"), ("max_values", "3")])
    body = r.json()
    cats = {c["column"]: c for c in body["categorical"]}
    assert body["filters"] == ["category=bags", "price<150"] and body["items"] == 9
    assert cats["category"]["values"] == [{"value": "bags", "count": 9, "selected": True, "filter": "category=bags"}]
    assert len(cats["colour"]["values"]) == 3 and sum(v["count"] for v in cats["colour"]["values"]) + \
        cats["colour"]["other"] == 9
    price = body["numeric"][0]
    assert price["column"] == "price" and price["max"] < 150 and price["selected_max"] == 150
    assert sum(b["count"] for b in price["buckets"]) == 9

    found = client.get("/api/search/text", params={"q": "red bag", "k": 6}).json()["results"]
    counted = client.get("/api/facets", params={"q": "red bag", "k": 6}).json()
    assert counted["kind"] == "text" and counted["items"] == 6
    colours = {v["value"]: v["count"] for v in {c["column"]: c for c in counted["categorical"]}["colour"]["values"]}
    assert colours == {c: [x["metadata"]["colour"] for x in found].count(c) for c in colours}
    similar = client.get("/api/facets", params={"q": "bag-tote-red", "kind": "similar", "k": 4}).json()
    assert similar["query"] == ITEM and similar["items"] == 4


@pytest.mark.parametrize("params, status, says", [
    ({"filter": "nope=1"}, 400, "no column 'nope'"),
    ({"filter": "colour<3"}, 400, "holds text"),
    ({"model": "nope"}, 400, "unknown model 'nope'"),
    ({"q": "bag", "model": "tiny-cnn"}, 400, "no text tower"),
    ({"q": "nothing-here", "kind": "similar"}, 404, "No item 'nothing-here'"),
    ({"kind": "colour"}, 400, "kind"),
    ({"max_values": "0"}, 400, "max_values must be between 1 and 1000"),
    ({"q": "bag", "k": "0"}, 400, "k must be between 1 and 1000"),
])
def test_bad_facets_requests_are_one_clear_json_error(client, params, status, says):
    is_error(client.get("/api/facets", params=params), status, says)


def test_compare_with_a_filter_and_a_label(client, shared_tiny_store):
    body = client.get(f"/api/compare/{ITEM}", params=[("k", "5"), ("filter", "category=shoes"),
                                                        ("label", "colour")]).json()
    assert body["filters"] == ["category=shoes"] and body["label"] == "colour" and body["label_value"] == "red"
    for side in ("left", "right"):
        res = body[side]["results"]
        assert len(res) == 5 and all(x["metadata"]["category"] == "shoes" for x in res)
        assert body[side]["agreement"] == sum(x["metadata"]["colour"] == "red" for x in res) / 5
    assert body["summary"] is None

    full = client.get(f"/api/compare/{ITEM}", params={"k": 3, "label": "category", "summary": "true"}).json()
    from vrec.search.compare import compare

    lib = compare([ITEM], left="tiny-cnn", right="tiny-siglip", k=3, label="category", store=shared_tiny_store,
                  summary=True).summary
    s = full["summary"]
    assert (s["items"], s["k"], s["labelled"], s["sampled"]) == (60, 3, 60, False)
    assert s["left_agreement"] == pytest.approx(lib.left_agreement) and s["right_agreement"] == pytest.approx(
        lib.right_agreement) and s["mean_overlap"] == pytest.approx(lib.mean_overlap)
    assert {p["value"] for p in s["per_label"]} == {"bags", "dresses", "shirts", "shoes", "watches"}
    is_error(client.get(f"/api/compare/{ITEM}", params={"label": "colr"}), 400, "No column 'colr'", "colour")
    is_error(client.get(f"/api/compare/{ITEM}", params={"filter": "category=hats"}), 400, "loosen the filters")


def test_warming_up_loads_the_image_tower_too_so_the_first_photo_search_loads_nothing(shared_tiny_store,
                                                                                      monkeypatch):
    import vrec.models.encoders as encoders

    app = make_app(shared_tiny_store)
    app.state.vrec.warm()  # what vrec serve runs on a thread after start

    def refuse(*a, **k):
        raise AssertionError("a model was loaded during the request")

    monkeypatch.setattr(encoders, "create_encoder", refuse)
    monkeypatch.setattr(encoders, "query_encoder", refuse)
    photo = sorted(SAMPLE.rglob("*.jpg"))[0].read_bytes()
    r = TestClient(app).post("/api/search/image", files={"file": ("q.jpg", photo, "image/jpeg")})
    assert r.status_code == 200 and r.json()["results"]


def test_a_photo_search_has_an_address_that_runs_it_again(client):
    photo = sorted(SAMPLE.rglob("*.jpg"))[3].read_bytes()
    first = client.post("/api/search/image", files={"file": ("shoe.jpg", photo, "image/jpeg")}, data={"k": "5"})
    assert first.status_code == 200 and first.json()["photo_id"]
    again = client.get(f"/api/search/photo/{first.json()['photo_id']}", params={"k": 5})
    assert again.status_code == 200
    assert [r["id"] for r in again.json()["results"]] == [r["id"] for r in first.json()["results"]]
    assert again.json()["query"] == "shoe.jpg" and again.json()["photo_id"] == first.json()["photo_id"]
    narrower = client.get(f"/api/search/photo/{first.json()['photo_id']}", params={"k": 2})
    assert len(narrower.json()["results"]) == 2
    shown = client.get(f"/api/search/photo/{first.json()['photo_id']}/image")  # the query photo, for the page
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(shown.content)).size[0] > 0
    gone = client.get("/api/search/photo/not-a-kept-photo")
    assert gone.status_code == 404 and "upload it again" in gone.json()["error"]


def test_kept_uploads_are_bounded_in_number_and_time():
    from vrec.serve.uploads import Uploads

    picture = Image.new("RGB", (400, 300), "navy")
    kept = Uploads(photos=2, seconds=3600)
    ids = [kept.keep(f"p{i}", picture) for i in range(3)]
    assert kept.get(ids[0]) is None and kept.get(ids[2])[0] == "p2"  # the oldest left first
    assert kept.get(ids[2])[1].size == (400, 300)
    assert sum(len(v[2]) for v in kept._kept.values()) < 20_000  # kept small: JPEG bytes, not the pixels
    expired = Uploads(photos=2, seconds=0)
    assert expired.get(expired.keep("p", picture)) is None
