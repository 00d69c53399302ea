"""Curated collections: made from a query, curated by hand (pin, remove, reorder, annotate, add), saved
with a version that refuses a stale save, refreshed over new items, exported -- through the library,
the JSON API and the command line."""
from __future__ import annotations

import csv
import io
import json
import shutil

import pytest
from clihelp import fails, vrec
from conftest import SAMPLE, TINY, catalog_copy

from vrec.base.errors import CollectionConflict, CollectionError, QueryError, UnknownCollection, UnknownItem
from vrec.search import collections as C

MODEL = "tiny-siglip"


@pytest.fixture
def store(tiny_store):
    return tiny_store


def make(store, name="minimalist jewellery", text="red bag", k=6, **kw):
    return C.create(store, name, C.make_query(text=text, model=MODEL, k=k, **kw), by="ana")


# --- library ------------------------------------------------------------------------------------

def test_create_from_text_saves_the_query_and_its_results(store):
    from vrec.search.query import search_text

    c = make(store)
    assert c.version == 1 and c.by == "ana" and c.created and c.updated and c.removed == []
    assert c.ids == search_text("red bag", k=6, model=MODEL, store=store).table["id"].tolist()
    assert all(not i.pinned and i.note == "" and i.added for i in c.items)
    assert (store / "collections" / "minimalist jewellery.json").is_file()
    again = C.load(store, "minimalist jewellery")
    assert again == c and again.query.kind == "text" and again.query.text == "red bag" and again.query.k == 6
    assert [x.name for x in C.list_collections(store)] == ["minimalist jewellery"]
    with pytest.raises(CollectionConflict, match="exists already"):
        make(store)


def test_create_from_an_item_uses_its_full_id_and_leaves_it_out(store):
    c = C.create(store, "like the tote", C.make_query(item="bag-tote-red", model="tiny-cnn", k=4))
    assert c.query.item == "bags/bag-tote-red" and len(c.ids) == 4 and "bags/bag-tote-red" not in c.ids
    assert c.by  # the OS user by default
    with pytest.raises(UnknownItem, match="Did you mean"):
        C.create(store, "x", C.make_query(item="bag-tote-rde", model="tiny-cnn"))
    with pytest.raises(QueryError, match="one query"):
        C.make_query(text="a", item="b")


def test_pin_remove_reorder_annotate_add(store):
    c = make(store)
    first, second, third = c.ids[:3]
    C.pin(c, third)
    C.annotate(c, first, "hero of the page")
    C.remove(c, second)
    C.move(c, third, 1)
    C.save(store, c)
    c = C.load(store, c.name)
    assert c.version == 2 and c.ids[:2] == [third, first] and second not in c.ids and c.removed == [second]
    assert c.items[0].pinned and c.items[1].note == "hero of the page"
    C.reorder(c, list(reversed(c.ids)))
    assert c.ids[-1] == third
    with pytest.raises(QueryError, match="every item"):
        C.reorder(c, c.ids[1:])
    expected = [i for i in ["bags/bag-tote-red", second] if i not in c.ids]
    C.add(store, c, ["bag-tote-red", second], position=1)  # a short id; a removed one comes back
    assert c.ids[:len(expected)] == expected and second not in c.removed and "bags/bag-tote-red" in c.ids
    with pytest.raises(UnknownItem, match="Did you mean"):
        C.add(store, c, ["bags/bag-tote-rde"])
    with pytest.raises(QueryError, match="not in the collection"):
        C.pin(c, "watches/watch-sport-red-nope")
    with pytest.raises(QueryError, match="2,000"):
        C.annotate(c, c.ids[0], "x" * 2001)


def test_a_stale_version_is_a_conflict_that_says_reload(store):
    make(store)
    tab1, tab2 = C.load(store, "minimalist jewellery"), C.load(store, "minimalist jewellery")
    C.pin(tab1, tab1.ids[0])
    C.save(store, tab1, by="ana")
    C.remove(tab2, tab2.ids[0])
    with pytest.raises(CollectionConflict, match="reload it"):
        C.save(store, tab2, by="ben")
    kept = C.load(store, "minimalist jewellery")
    assert kept.version == 2 and kept.items[0].pinned and kept.removed == [] and kept.by == "ana"
    C.delete(store, "minimalist jewellery")
    with pytest.raises(CollectionConflict, match="deleted"):
        C.save(store, kept)


@pytest.mark.parametrize("name, says", [("", "needs a name"), ("a/b", "'/'"), ("../x", "characters"),
                                        ("x" * 81, "81 characters"), (" spaced", "space"), ("tab\there", "characters"),
                                        ("émigré", "characters")])
def test_bad_names_are_refused_in_one_sentence(store, name, says):
    with pytest.raises(CollectionError, match=says) as e:
        make(store, name=name)
    assert str(e.value).count(". ") <= 1 and str(e.value).endswith(".")
    assert not (store / "collections").exists() or not list((store / "collections").glob("*.json"))


def test_unknown_collection_suggests_the_close_one(store):
    make(store)
    with pytest.raises(UnknownCollection, match="Did you mean 'minimalist jewellery'"):
        C.load(store, "minimalist jewelery")
    with pytest.raises(UnknownCollection):
        C.delete(store, "nope")


def test_refresh_keeps_pins_keeps_removed_out_and_reports_new_items(tmp_path):
    from vrec.ingest.embed import embed

    photos = catalog_copy(tmp_path, n=8)
    store = tmp_path / "store"
    embed(photos, models=TINY, store=store, metadata=SAMPLE / "catalog.csv", batch_size=16)
    c = make(store, k=50)  # the whole small catalog
    assert len(c.ids) == 8
    pinned, gone_by_hand = c.ids[5], c.ids[0]
    C.remove(c, gone_by_hand)
    C.pin(c, pinned)
    C.move(c, pinned, 2)
    C.save(store, c)
    order = C.load(store, c.name).ids

    new = sorted(SAMPLE.rglob("*.jpg"))[-4:]  # four photos the store does not hold yet
    for f in new:
        dst = photos / f.relative_to(SAMPLE)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst)
    embed(photos, models=TINY, store=store, metadata=SAMPLE / "catalog.csv", batch_size=16)
    r = C.refresh_saved(store, c.name)
    new_ids = {str(f.relative_to(SAMPLE).with_suffix("")) for f in new}
    assert set(r.new) == new_ids and r.gone == []
    got = C.load(store, c.name)
    assert got.ids[:len(order)] == order and got.ids[1] == pinned and got.items[1].pinned
    assert gone_by_hand not in got.ids and got.version == 3
    assert C.refresh(store, got).new == []  # nothing more to bring in


def test_exports_html_csv_json(store, tmp_path):
    c = make(store)
    C.pin(c, c.ids[1])
    C.annotate(c, c.ids[0], "=HYPERLINK(\"http://x\")")
    C.save(store, c)
    table = C.export_table(store, c)
    from vrec.report.pages import collection_file

    page = collection_file("html", c, table, C.catalog_root(store))
    assert "red bag" in page and all(i in page for i in c.ids)
    assert page.count("data:image/jpeg;base64,") == len(c.ids)  # self-contained
    assert f'alt="{table["title"].iloc[0]}"' in page
    rows = list(csv.DictReader(io.StringIO(collection_file("csv", c, table, C.catalog_root(store)))))
    assert [r["id"] for r in rows] == c.ids and rows[1]["pinned"] == "True" and rows[0]["rank"] == "1"
    assert rows[0]["note"].startswith("'=")  # a formula is never run by a spreadsheet
    data = json.loads(collection_file("json", c, table, C.catalog_root(store)))
    assert [i["id"] for i in data["items"]] == c.ids and data["items"][0]["title"] and data["version"] == 2
    assert C.file_name("Minimalist jewellery", ".html") == "minimalist-jewellery.html"


# --- JSON API -----------------------------------------------------------------------------------

@pytest.fixture
def api(store):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from test_serve_api import make_app

    return TestClient(make_app(store))


def test_api_create_read_edit_delete(api):
    from test_serve_api import is_error

    r = api.post("/api/collections", json={"name": "minimalist jewellery", "text": "red bag", "k": 5, "by": "ana"})
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["version"] == 1 and c["query"]["kind"] == "text" and c["query"]["model"] == MODEL and len(c["items"]) == 5
    assert all(i["available"] and i["title"] and i["thumb"] == "/thumb/" + i["id"] for i in c["items"])
    assert api.get("/api/collections").json()["collections"][0]["items"] == 5
    assert api.get("/api/collections/minimalist jewellery").json() == c

    items = [{"id": i["id"], "pinned": n == 2, "note": "hero" if n == 0 else ""} for n, i in enumerate(c["items"])]
    items = [items[2]] + items[:2] + items[3:4]  # pinned one first, the last one left out
    removed = [c["items"][4]["id"]]
    r = api.put("/api/collections/minimalist jewellery", json={"version": 1, "items": items, "removed": removed})
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["version"] == 2 and [i["id"] for i in e["items"]] == [i["id"] for i in items]
    assert e["items"][0]["pinned"] and e["items"][1]["note"] == "hero" and e["removed"] == removed

    r = api.post("/api/collections", json={"name": "like the tote", "item": "bag-tote-red", "k": 3})
    assert r.status_code == 200 and r.json()["query"]["item"] == "bags/bag-tote-red"
    is_error(api.post("/api/collections", json={"name": "minimalist jewellery", "text": "x"}), 409, "exists")
    is_error(api.post("/api/collections", json={"name": "a/b", "text": "x"}), 400, "name")
    is_error(api.post("/api/collections", json={"name": "x", "item": "bags/nope"}), 404, "No item")
    is_error(api.post("/api/collections", json={"name": "x"}), 400, "one query")
    is_error(api.put("/api/collections/minimalist jewellery",
                     json={"version": 2, "items": [{"id": "bags/bag-tote-rde"}]}), 404, "Did you mean")
    is_error(api.get("/api/collections/nope"), 404, "No collection")
    assert api.delete("/api/collections/like the tote").json() == {"deleted": "like the tote"}
    is_error(api.delete("/api/collections/like the tote"), 404)
    assert [x["name"] for x in api.get("/api/collections").json()["collections"]] == ["minimalist jewellery"]


def test_api_two_tabs_the_second_save_is_a_409(api):
    from test_serve_api import is_error

    api.post("/api/collections", json={"name": "tabs", "text": "shoe", "k": 4})
    tab1 = api.get("/api/collections/tabs").json()
    tab2 = api.get("/api/collections/tabs").json()
    pin = [{"id": i["id"], "pinned": True} for i in tab1["items"]]
    assert api.put("/api/collections/tabs", json={"version": tab1["version"], "items": pin}).status_code == 200
    message = is_error(api.put("/api/collections/tabs", json={"version": tab2["version"], "items": pin[:1]}),
                       409, "reload it")
    assert "version 2" in message
    assert len(api.get("/api/collections/tabs").json()["items"]) == 4  # the first tab's save is whole


def test_api_refresh_and_export(api):
    api.post("/api/collections", json={"name": "Red Things", "text": "red", "k": 5})
    c = api.get("/api/collections/Red Things").json()
    dropped = c["items"][0]["id"]
    api.put("/api/collections/Red Things", json={"version": 1, "items": c["items"][1:], "removed": [dropped]})
    r = api.post("/api/collections/Red Things/refresh")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["collection"]["version"] == 3 and dropped not in [i["id"] for i in body["collection"]["items"]]
    assert len(body["new"]) == 1 and body["gone"] == []  # the removed one's place went to the next match

    for fmt, media in (("html", "text/html"), ("csv", "text/csv"), ("json", "application/json")):
        r = api.get("/api/collections/Red Things/export", params={"format": fmt})
        assert r.status_code == 200 and r.headers["content-type"].startswith(media)
        assert r.headers["content-disposition"] == f'attachment; filename="red-things.{fmt}"'
    assert "data:image/jpeg;base64," in api.get("/api/collections/Red Things/export").text
    assert api.get("/api/collections/Red Things/export", params={"format": "xml"}).status_code == 400


def test_a_collection_survives_a_server_restart(store):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from test_serve_api import make_app

    first = TestClient(make_app(store))
    made = first.post("/api/collections", json={"name": "kept", "text": "watch", "k": 3}).json()
    again = TestClient(make_app(store))  # a new app over the same store
    assert [c["name"] for c in again.get("/api/collections").json()["collections"]] == ["kept"]
    assert again.get("/api/collections/kept").json() == made


# --- command line -------------------------------------------------------------------------------

def test_cli_list_show_export_delete(store, tmp_path):
    fails("collection", "show", "nope", "--store", store, says="No collection 'nope'")
    assert "No collections yet" in vrec("collection", "list", "--store", store).stderr
    vrec("collection", "create", "minimalist jewellery", "--text", "red bag", "--model", MODEL, "--k", "4",
         "--store", store)
    listed = json.loads(vrec("collection", "list", "--store", store, "--format", "json").stdout)
    assert [c["name"] for c in listed] == ["minimalist jewellery"] and len(listed[0]["items"]) == 4
    assert "minimalist jewellery" in vrec("collection", "list", "--store", store).stdout
    shown = json.loads(vrec("collection", "show", "minimalist jewellery", "--store", store, "--format", "json").stdout)
    assert [i["rank"] for i in shown["items"]] == [1, 2, 3, 4] and shown["items"][0]["title"]
    assert shown["items"][0]["id"] in vrec("collection", "show", "minimalist jewellery", "--store", store).stdout
    for suffix in (".html", ".csv", ".json"):
        out = tmp_path / f"out{suffix}"
        vrec("collection", "export", "minimalist jewellery", out, "--store", store)
        assert out.stat().st_size > 0
    assert (tmp_path / "out.csv").read_text().startswith("rank,id,title,pinned,note")
    fails("collection", "export", "minimalist jewellery", tmp_path / "out.xml", "--store", store, says=".xml")
    fails("collection", "create", "a/b", "--text", "x", "--model", MODEL, "--store", store, says="characters")
    fails("collection", "create", "x", "--item", "bags/bag-tote-rde", "--model", MODEL, "--store", store,
          says="Did you mean")
    fails("collection", "create", "minimalist jewellery", "--text", "x", "--model", MODEL, "--store", store,
          says="exists already")
    vrec("collection", "delete", "minimalist jewellery", "--store", store)
    fails("collection", "delete", "minimalist jewellery", "--store", store, says="No collection")
