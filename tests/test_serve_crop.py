"""Searching a region of a photo (crop=x,y,w,h): the API and the library function behind it.

A shopper's photo often holds more than the product (a bag beside shoes): cropping it to one object
finds that object. The query here is two catalog photos side by side; cropped to either half, the
search ranks that half's item first.
"""
from __future__ import annotations

import io

import pytest
from conftest import SAMPLE
from PIL import Image

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from vrec.base.errors import QueryError  # noqa: E402
from vrec.ingest.crop import crop, parse_crop  # noqa: E402
from vrec.serve.app import create_app  # noqa: E402

LEFT, RIGHT = "bags/bag-tote-red", "shoes/shoe-boot-black"


def composite() -> bytes:
    """The two catalog photos side by side, as one JPEG."""
    a = Image.open(SAMPLE / f"{LEFT}.jpg").convert("RGB")
    b = Image.open(SAMPLE / f"{RIGHT}.jpg").convert("RGB").resize(a.size)
    both = Image.new("RGB", (a.width * 2, a.height), "white")
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    buf = io.BytesIO()
    both.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(shared_tiny_store):
    return TestClient(create_app(shared_tiny_store, model="tiny-cnn"))


def first(answer) -> str:
    assert answer.status_code == 200, answer.text
    return answer.json()["results"][0]["id"]


def test_cropping_a_photo_to_one_object_finds_that_object(client):
    photo = composite()
    files = {"file": ("both.jpg", photo, "image/jpeg")}
    left = client.post("/api/search/image", files=files, data={"k": "5", "crop": "0,0,0.5,1"})
    assert first(left) == LEFT
    right = client.post("/api/search/image", files=files, data={"k": "5", "crop": "0.5,0,0.5,1"})
    assert first(right) == RIGHT
    # the kept photo is the whole one: the same upload is searched again on another region, by its id
    kept = left.json()["photo_id"]
    assert first(client.get(f"/api/search/photo/{kept}", params={"k": 5, "crop": "0.5,0,0.5,1"})) == RIGHT
    assert first(client.get(f"/api/search/photo/{kept}", params={"k": 5, "crop": "0,0,0.5,1"})) == LEFT


@pytest.mark.parametrize("box", ["0,0,0", "a,b,c,d", "0,0,0,1", "0.6,0,0.5,1", "-0.1,0,0.5,1", "nan,0,1,1",
                                 "0,0,0.001,0.001"])
def test_a_crop_outside_the_photo_or_too_small_is_a_400_saying_how_to_write_one(client, box):
    kept = client.post("/api/search/image", files={"file": ("both.jpg", composite(), "image/jpeg")},
                       data={"k": "1"}).json()["photo_id"]
    answer = client.get(f"/api/search/photo/{kept}", params={"crop": box})
    assert answer.status_code == 400, answer.text
    assert "crop" in answer.json()["error"] or "region" in answer.json()["error"]


def test_the_crop_is_declared_in_the_openapi_document(client):
    doc = client.get("/openapi.json").json()
    params = doc["paths"]["/api/search/photo/{photo_id}"]["get"]["parameters"]
    assert any(p["name"] == "crop" for p in params)
    form = doc["paths"]["/api/search/image"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    ref = form["$ref"].split("/")[-1]
    assert "crop" in doc["components"]["schemas"][ref]["properties"]


def test_parse_crop_and_crop():
    assert parse_crop(None) is None and parse_crop(" ") is None
    assert parse_crop("0.25, 0.5, 0.5, 0.5") == (0.25, 0.5, 0.5, 0.5)
    picture = Image.new("RGB", (200, 100))
    assert crop(picture, (0.5, 0, 0.5, 1)).size == (100, 100)
    assert crop(picture, None) is picture
    with pytest.raises(QueryError, match="outside the photo"):
        parse_crop("0.9,0,0.2,1")


def test_health_says_when_the_photo_model_is_loaded(shared_tiny_store):
    """The page shows "Loading the photo model" while /api/health says the image tower is not loaded yet."""
    client = TestClient(create_app(shared_tiny_store, model="tiny-cnn"))  # no warm-up: nothing loaded
    ready = lambda: {m["name"]: m["photo_ready"] for m in client.get("/api/health").json()["models"]}  # noqa: E731
    assert ready()["tiny-cnn"] is False
    assert client.post("/api/search/image", files={"file": ("both.jpg", composite(), "image/jpeg")},
                       data={"k": "1"}).status_code == 200
    assert ready()["tiny-cnn"] is True


def test_facets_of_a_photo_search_count_its_results(client):
    """kind=photo: the facets of the results of a kept uploaded photo (on its crop), as the page shows them."""
    photo = client.post("/api/search/image", files={"file": ("both.jpg", composite(), "image/jpeg")},
                        data={"k": "6", "crop": "0,0,0.5,1"}).json()
    f = client.get("/api/facets", params={"q": photo["photo_id"], "kind": "photo", "k": 6, "crop": "0,0,0.5,1"})
    assert f.status_code == 200, f.text
    body = f.json()
    assert body["kind"] == "photo" and body["query"] == "both.jpg" and body["items"] == 6
    category = next(c for c in body["categorical"] if c["column"] == "category")
    shown = [r["id"].split("/")[0] for r in photo["results"]]
    assert {v["value"]: v["count"] for v in category["values"]} == {c: shown.count(c) for c in set(shown)}
    narrowed = client.get("/api/facets", params={"q": photo["photo_id"], "kind": "photo", "k": 6,
                                                 "filter": "category=shoes"}).json()
    assert [v["value"] for c in narrowed["categorical"] if c["column"] == "category" for v in c["values"]] == ["shoes"]
    assert client.get("/api/facets", params={"q": "no-such-photo", "kind": "photo"}).status_code == 404


def test_facets_of_kind_photo_without_a_photo_are_the_whole_catalogs(client):
    assert client.get("/api/facets", params={"kind": "photo"}).json()["items"] == 60
