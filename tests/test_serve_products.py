"""vrec serve over a catalog of products with several photos (the grocery feed, a real offline model):
every list holds distinct products, each shown with the photo that matched best; /thumb/ serves a
product (its main photo) and any photo by its own id, photos behind URLs from the photo cache only."""
from __future__ import annotations

import csv
import io
from collections import Counter

import pytest

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402
from test_feed_embed import GROCERY, MODEL, feed_slice, photo_server  # noqa: E402,F401
from test_serve_api import is_error  # noqa: E402

from vrec.serve.app import create_app  # noqa: E402

pytestmark = pytest.mark.skipif(not GROCERY.is_dir(), reason="the grocery dataset (../shared/datasets) is absent")
PRODUCTS = 20  # 20 products x 8 photos: quick to embed, enough for k and filters
SCORINGS = ("mean", "max", "main")


@pytest.fixture(scope="module")
def grocery(tmp_path_factory):
    """A store of the feed's first products (their photos at absolute paths, as the feed names them)."""
    from vrec.ingest.embed import embed

    tmp = tmp_path_factory.mktemp("grocery")
    feed = feed_slice(tmp / "feed.csv", str(GROCERY), products=PRODUCTS)
    embed(feed, models=[MODEL], store=tmp / "st")
    rows = list(csv.DictReader(open(feed, encoding="utf-8")))
    return tmp / "st", rows


@pytest.fixture(scope="module")
def client(grocery):
    return TestClient(create_app(grocery[0], model=MODEL))


def distinct_products(body: dict, k: int | None = None) -> list[dict]:
    res = body["results"]
    ids = [r["id"] for r in res]
    assert len(ids) == len(set(ids)), ids  # no product twice
    for r in res:
        assert r["photos"] == 8, r
        product, position = r["photo"].rsplit("/", 1)
        assert product == r["id"] and 1 <= int(position) <= 8, r  # the best photo is one of the product's own
        assert r["thumb"] == f"/thumb/{r['photo']}"
    if k is not None:
        assert len(res) == k, (len(res), body["notes"])
    return res


def test_health_counts_products_and_photos(client):
    h = client.get("/api/health").json()
    assert h["items"] == PRODUCTS and h["photos"] == 8 * PRODUCTS and h["product_score"] == "mean"


@pytest.mark.parametrize("scoring", SCORINGS)
def test_every_list_holds_k_distinct_products(client, grocery, scoring):
    first = grocery[1][0]["id"]
    body = client.get(f"/api/similar/{first}", params={"k": 10, "product_score": scoring}).json()
    res = distinct_products(body, 10)
    assert first not in [r["id"] for r in res]  # the product itself and so its own photos are left out
    every = distinct_products(client.get(f"/api/similar/{first}", params={"k": 50, "product_score": scoring}).json(),
                              PRODUCTS - 1)
    assert first not in [r["id"] for r in every]
    photo = (GROCERY / grocery[1][1]["image_link"].split(str(GROCERY) + "/")[1]).read_bytes()
    body = client.post("/api/search/image", files={"file": ("apple.jpg", photo, "image/jpeg")},
                       data={"k": "7", "product_score": scoring}).json()
    assert distinct_products(body, 7)[0]["id"] == grocery[1][1]["id"]  # its own packshot finds it first


@pytest.mark.parametrize("scoring", SCORINGS)
def test_k_products_with_a_filter(client, grocery, scoring):
    groups = Counter(r["item_group_id"] for r in grocery[1])
    group, n = groups.most_common(1)[0]
    assert n >= 3
    members = [r["id"] for r in grocery[1] if r["item_group_id"] == group]
    outsider = next(r["id"] for r in grocery[1] if r["item_group_id"] != group)
    body = client.get(f"/api/similar/{outsider}", params={"k": n, "filter": f"item_group_id={group}",
                                                          "product_score": scoring}).json()
    assert sorted(r["id"] for r in distinct_products(body, n)) == sorted(members)
    body = client.get(f"/api/similar/{members[0]}", params={"k": n - 1, "filter": f"item_group_id={group}",
                                                            "product_score": scoring}).json()
    assert sorted(r["id"] for r in distinct_products(body, n - 1)) == sorted(members[1:])


def test_the_best_photo_is_served_by_its_id(client, grocery):
    first = grocery[1][0]["id"]
    res = distinct_products(client.get(f"/api/similar/{first}", params={"k": 10}).json(), 10)
    shown = next(r for r in res if not r["photo"].endswith("/1"))  # a product shown with a photo not its main one
    thumb = client.get(shown["thumb"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    position = int(shown["photo"].rsplit("/", 1)[1])
    row = next(r for r in grocery[1] if r["id"] == shown["id"])
    stored = row["additional_image_link"].split(",")[position - 2]  # the feed's photo at that position
    want = Image.open(stored)
    got = Image.open(io.BytesIO(thumb.content))
    assert got.size == want.size or max(got.size) == 384  # that photo, resized
    main = client.get(f"/thumb/{shown['id']}")  # a product's own id: its main photo
    assert main.status_code == 200 and main.content != thumb.content
    assert client.get(f"/thumb/{shown['id']}/1").content == main.content
    is_error(client.get(f"/thumb/{shown['id']}/9"), 404, "no item")


def test_items_and_similar_by_a_photo_id_are_the_product(client, grocery):
    first = grocery[1][0]["id"]
    item = client.get(f"/api/items/{first}/3").json()
    assert item["id"] == first and item["photos"] == 8 and item["thumb"] == f"/thumb/{first}"
    assert item["title"] == grocery[1][0]["title"]
    assert item["photo_ids"] == [f"{first}/{n}" for n in range(1, 9)]  # for an item panel: every photo, main first
    assert not {"product", "position", "photo", "photos"} & set(item["metadata"])
    by_photo = client.get(f"/api/similar/{first}/3", params={"k": 5}).json()["results"]
    assert [r["id"] for r in by_photo] == [r["id"] for r in client.get(f"/api/similar/{first}",
                                                                       params={"k": 5}).json()["results"]]


def test_text_search_and_compare_give_distinct_products(grocery, tmp_path):
    """A second model on the same feed: the side-by-side comparison shows products on both sides."""
    import shutil

    from vrec.ingest.embed import embed

    store = tmp_path / "st"
    shutil.copytree(grocery[0], store)
    embed(grocery[0].parent / "feed.csv", models=["tiny-siglip"], store=store)  # the same catalog
    c = TestClient(create_app(store, model="tiny-siglip", compare_with=MODEL))
    for scoring in SCORINGS:
        body = c.get("/api/search/text", params={"q": "a green apple", "k": 8, "product_score": scoring}).json()
        distinct_products(body, 8)
    first = grocery[1][0]["id"]
    cmp = c.get(f"/api/compare/{first}", params={"k": 6}).json()
    for side in ("left", "right"):
        res = cmp[side]["results"]
        assert len(res) == 6 and len({r["id"] for r in res}) == 6 and first not in {r["id"] for r in res}
        assert all(r["photo"].startswith(r["id"] + "/") and r["photos"] == 8 for r in res)
        assert all(c.get(r["thumb"]).status_code == 200 for r in res[:2])
    page = c.post("/api/gallery", json={"title": "g", "results": [
        {"id": r["id"], "score": r["score"], "photo": r["photo"]} for r in cmp["left"]["results"]]})
    assert page.status_code == 200 and page.text.count("data:image/jpeg") == 6


def test_product_score_is_checked_and_documented(client):
    is_error(client.get("/api/search/text", params={"q": "apple", "product_score": "best"}), 400, "product_score")
    doc = client.get("/openapi.json").json()
    for path, method in (("/api/search/text", "get"), ("/api/similar/{item_id}", "get")):
        params = {p["name"]: p for p in doc["paths"][path][method]["parameters"]}
        assert params["product_score"]["schema"]["anyOf"][0]["enum"] == list(SCORINGS)
    result = doc["components"]["schemas"]["Result"]["properties"]
    assert {"photo", "photos"} <= set(result)


def test_serve_option_defaults_to_the_library_scoring():
    from clihelp import vrec

    from vrec.store.products import DEFAULT_SCORING

    out = vrec("serve", "--help").output
    assert "--product-score" in out and f"default: {DEFAULT_SCORING}" in " ".join(out.split())


def test_photos_behind_urls_come_from_the_cache_only(tmp_path, photo_server):  # noqa: F811
    from vrec.ingest.embed import embed
    from vrec.ingest.feed_source import FeedOptions

    base, counts = photo_server
    feed = feed_slice(tmp_path / "feed.csv", base, products=2)
    cache = tmp_path / "cache"
    embed(feed, models=[MODEL], store=tmp_path / "st", feed=FeedOptions(cache=str(cache)))
    c = TestClient(create_app(tmp_path / "st", model=MODEL))
    sent = counts.get(200, 0)
    assert c.get("/thumb/gs-000/2").status_code == 200 and c.get("/thumb/gs-001").status_code == 200
    for body in cache.rglob("*.img"):
        body.unlink()  # the cache emptied: nothing is downloaded in a request
    error = is_error(c.get("/thumb/gs-000/3"), 404, "photo cache")
    assert base not in error and str(cache) not in error
    assert counts.get(200, 0) == sent
