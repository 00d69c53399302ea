"""Paging on the page ("More results") asks the API for up to 1,000 results: every search takes k up
to 1,000, says so in its OpenAPI document, and answers a larger k with a 400 naming the limit. The
page's workbench files (panel.js, results.js, panel.css) are served with it."""
from __future__ import annotations

import re

import pytest
from conftest import jpeg_bytes
from test_serve_api import TestClient, make_app  # skips the module when the serve extra is missing

ITEM = "bags/bag-tote-red"


@pytest.fixture(scope="module")
def client(shared_tiny_store):
    return TestClient(make_app(shared_tiny_store))


def k_limits(schema: dict) -> tuple:
    return schema.get("minimum"), schema.get("maximum")


def test_every_search_declares_k_up_to_1000(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/search/text", "/api/similar/{item_id}", "/api/search/photo/{photo_id}", "/api/facets"):
        params = {p["name"]: p for p in paths[path]["get"]["parameters"]}
        assert k_limits(params["k"]["schema"]) == (1, 1000), path
    form = paths["/api/search/image"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    ref = form["$ref"].rsplit("/", 1)[-1]
    body = client.get("/openapi.json").json()["components"]["schemas"][ref]
    assert k_limits(body["properties"]["k"]) == (1, 1000)


def test_k_of_1000_brings_the_whole_small_catalog_and_1001_is_refused(client):
    text = client.get("/api/search/text", params={"q": "bag", "k": 1000})
    assert text.status_code == 200 and len(text.json()["results"]) == 60 and text.json()["k"] == 1000
    similar = client.get(f"/api/similar/{ITEM}", params={"k": 1000})
    assert similar.status_code == 200 and len(similar.json()["results"]) == 59  # the item itself left out
    photo = client.post("/api/search/image", files={"file": ("red.jpg", jpeg_bytes(), "image/jpeg")}, data={"k": "1000"})
    assert photo.status_code == 200 and len(photo.json()["results"]) == 60
    again = client.get(f"/api/search/photo/{photo.json()['photo_id']}", params={"k": 1000})
    assert [r["id"] for r in again.json()["results"]] == [r["id"] for r in photo.json()["results"]]
    # the first 24 of 1,000 are the 24 of a k=24 search: "More results" only adds at the end
    first = client.get("/api/search/text", params={"q": "bag", "k": 24}).json()["results"]
    assert [r["id"] for r in first] == [r["id"] for r in text.json()["results"][:24]]
    for r in (client.get("/api/search/text", params={"q": "bag", "k": 1001}),
              client.get(f"/api/similar/{ITEM}", params={"k": 1001}),
              client.post("/api/search/image", files={"file": ("red.jpg", jpeg_bytes(), "image/jpeg")}, data={"k": "1001"})):
        assert r.status_code == 400 and "k must be between 1 and 1000" in r.json()["error"], r.text


def test_the_page_links_its_workbench_files_and_they_are_served(client):
    page = client.get("/").text
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    assert {"/static/panel.js", "/static/results.js", "/static/panel.css"} <= set(assets)
    for a in assets:
        r = client.get(a)
        assert r.status_code == 200 and r.content, a
