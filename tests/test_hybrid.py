"""Keyword and hybrid text search: the keyword index (SQLite FTS5) built, updated and queried; fusion
against a hand computation; and, on the real grocery feed, brand queries that vectors miss."""
from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest
from clihelp import one_error, vrec

from vrec.base.errors import QueryError
from vrec.search.hybrid import RRF_K, fuse
from vrec.store import keywords as kw
from vrec.store.store import Store

GROCERY = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "grocery-products"


def meta_store(path: Path, rows: list[dict]) -> Store:
    st = Store(path)
    (path.parent / "photos").mkdir(exist_ok=True)
    st.create(path.parent / "photos")
    st.write_metadata(pd.DataFrame(rows).set_index("id"))
    return st


ROWS = [
    {"id": "p1", "title": "Oatly Oat Drink Barista", "brand": "Oatly", "sku": "OAT-001", "gtin": "7394376616037",
     "image_link": "https://example.com/oatly.jpg", "description": "Oat drink for coffee"},
    {"id": "p2", "title": "Arla Mellanmjölk", "brand": "Arla", "sku": "ARL-17", "gtin": "7310865001818",
     "image_link": "https://example.com/arla.jpg", "description": "Mjölk med 1,5 % fett"},
    {"id": "p3", "title": "Tropicana Orange Juice", "brand": "Tropicana", "sku": "TRO-9", "gtin": "",
     "image_link": "https://example.com/tro.jpg", "description": "Juice from oranges, no pulp"},
]


@pytest.fixture
def kstore(tmp_path) -> Store:
    st = meta_store(tmp_path / "st", ROWS)
    kw.build_keywords(st)
    return st


def ids(st, text, limit=10):
    return kw.search_keywords(st, text, limit)[0]


def test_the_index_holds_the_text_columns_but_not_links(kstore):
    s = kw.keyword_stats(kstore)
    assert s["documents"] == 3 and "image_link" not in s["columns"]
    assert {"title", "brand", "description", "sku", "gtin"} <= set(s["columns"])
    assert ids(kstore, "example") == []  # the photo links are not words of the products


def test_brand_sku_prefix_and_accents(kstore):
    assert ids(kstore, "oatly")[0] == "p1"
    assert ids(kstore, "Tropicana juice")[0] == "p3"
    assert ids(kstore, "tropic*") == ["p3"]  # a prefix query
    assert ids(kstore, "mjölk") == ["p2"] and ids(kstore, "MJOLK") == ["p2"]  # case and accents folded
    found, _, exact = kw.search_keywords(kstore, "ARL-17", 10)
    assert found[0] == "p2" and exact == {"p2"}  # a SKU is an exact identifier
    assert kw.search_keywords(kstore, "7394376616037", 10)[2] == {"p1"}  # a GTIN
    assert kw.search_keywords(kstore, "7394 3766 16037", 10)[2] == {"p1"}  # spaced as printed


@pytest.mark.parametrize("text", ['"foo', "AND(", "oat NEAR(", "title: x", "a OR", "-x", "^*", "(((", "col:\"'"])
def test_fts5_syntax_in_a_query_is_plain_text(kstore, text):
    try:
        kw.search_keywords(kstore, text, 10)  # never an sqlite3 error
    except QueryError as e:
        assert "no keyword" in str(e)


@pytest.mark.parametrize("text", ["", "   ", "the", "the of and", "?!", "..."])
def test_a_query_without_keywords_is_one_clear_error(kstore, text):
    with pytest.raises(QueryError, match="no keyword to look for"):
        kw.search_keywords(kstore, text, 10)


def test_updates_add_change_and_remove_products_in_place(kstore):
    rows = [dict(r) for r in ROWS if r["id"] != "p3"]  # p3 leaves the catalog
    rows[0]["title"] = "Oatly Havredryck iKaffe"  # p1 changes
    rows.append({"id": "p4", "title": "Alpro Soya", "brand": "Alpro", "sku": "ALP-1", "gtin": "",
                 "image_link": "", "description": "Soya drink"})  # p4 is new
    kstore.write_metadata(pd.DataFrame(rows).set_index("id"))
    assert kw.update_keywords(kstore) == {"added": 1, "changed": 1, "removed": 1}
    assert ids(kstore, "tropicana") == [] and ids(kstore, "TRO-9") == []
    assert ids(kstore, "havredryck") == ["p1"] and ids(kstore, "barista") == []
    assert ids(kstore, "alpro") == ["p4"] and kw.search_keywords(kstore, "ALP-1", 5)[2] == {"p4"}
    assert kw.update_keywords(kstore) == {"added": 0, "changed": 0, "removed": 0}  # nothing new: nothing rewritten
    assert kw.keyword_stats(kstore)["documents"] == 3


def test_a_word_every_product_has_does_not_rank(tmp_path):
    st = meta_store(tmp_path / "st", [{"id": f"p{i}", "title": f"Shirt model {i}", "sku": f"SKU-{i}00"} for i in range(6)])
    kw.build_keywords(st)
    assert ids(st, "SKU-300") == ["p3"]  # "SKU" is in every product: only "300" ranks
    assert ids(st, "shirt")[:1] and len(ids(st, "shirt")) == 6  # alone, a common word still finds its products


def test_an_index_of_another_version_is_refused_by_search_and_rebuilt_by_embed(kstore):
    import sqlite3

    from vrec.base.errors import StoreError

    with sqlite3.connect(kw.keywords_path(kstore)) as con:
        con.execute("UPDATE info SET value = '1' WHERE key = 'version'")
    with pytest.raises(StoreError, match="run 'vrec index' to rebuild it"):
        kw.search_keywords(kstore, "oatly", 5)
    kw.update_keywords(kstore)  # what vrec embed runs
    assert ids(kstore, "oatly") == ["p1"]


def test_named_text_columns_and_an_unknown_one(tmp_path):
    st = meta_store(tmp_path / "st", ROWS)
    kw.build_keywords(st, ["title"])
    assert ids(st, "coffee") == [] and ids(st, "barista") == ["p1"]
    with pytest.raises(QueryError, match="No metadata column 'titel'.*title"):
        kw.build_keywords(st, ["titel"])


# --- fusion -------------------------------------------------------------------------------------

def test_rrf_by_hand():
    got = fuse(["a", "b", "c"], [0.9, 0.8, 0.7], ["c", "d"], [5.0, 2.0])
    # a 1/61, b 1/62, c 1/63 + 1/61, d 1/62: c first; b and d tie, vector's first
    assert [(i, f) for i, _, f in got] == [("c", "both"), ("a", "vector"), ("b", "vector"), ("d", "keyword")]
    assert got[0][1] == pytest.approx(1 / 63 + 1 / 61) and got[3][1] == pytest.approx(1 / 62)


def test_an_exact_identifier_ranks_first():
    got = fuse(["a", "b"], [0.9, 0.8], ["b", "x"], [3.0, 2.0], exact={"x"})
    assert got[0][0] == "x" and got[0][2] == "exact"


def test_weighted_blend_by_hand():
    got = dict((i, s) for i, s, _ in fuse(["a", "b", "c"], [0.9, 0.5, 0.1], ["c", "a"], [4.0, 2.0],
                                          keyword_weight=0.25))
    # vector scaled a 1, b .5, c 0; keyword scaled c 1, a 0
    assert got == pytest.approx({"a": 0.75, "b": 0.375, "c": 0.25})


@pytest.mark.parametrize("seed", range(20))
def test_rrf_matches_a_brute_force_reference(seed):
    rng = random.Random(seed)
    pool = [f"i{n}" for n in range(30)]
    vec, key = rng.sample(pool, rng.randint(0, 20)), rng.sample(pool, rng.randint(0, 20))
    got = fuse(vec, sorted((rng.random() for _ in vec), reverse=True), key, [1.0] * len(key))
    ref = {i: sum(1 / (RRF_K + lst.index(i) + 1) for lst in (vec, key) if i in lst) for i in set(vec) | set(key)}
    assert len(got) == len({i for i, _, _ in got}) == len(ref)  # every candidate once
    assert [s for _, s, _ in got] == sorted((s for _, s, _ in got), reverse=True)
    assert {i: s for i, s, _ in got} == pytest.approx(ref)


# --- the real grocery feed ----------------------------------------------------------------------

needs_grocery = pytest.mark.skipif(not (GROCERY / "feed.csv").is_file(),
                                   reason="the grocery dataset (../shared/datasets) is absent")


def packshot_feed(out: Path, drop: str | None = None, retitle: dict | None = None, extra: dict | None = None) -> Path:
    """The whole grocery feed with each product's packshot alone (81 photos: quick to embed)."""
    rows = list(csv.DictReader(open(GROCERY / "feed.csv", encoding="utf-8")))
    rows = [r for r in rows if r["id"] != drop] + ([extra] if extra else [])
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            r = {**r, "title": (retitle or {}).get(r["id"], r["title"])}
            w.writerow({**r, "image_link": str(GROCERY / r["image_link"]), "additional_image_link": ""})
    return out


@pytest.fixture(scope="session")
def _grocery_master(tmp_path_factory):
    if not (GROCERY / "feed.csv").is_file():
        pytest.skip("the grocery dataset (../shared/datasets) is absent")
    from vrec.ingest.embed import embed

    tmp = tmp_path_factory.mktemp("grocery-hybrid")
    embed(packshot_feed(tmp / "feed.csv"), models=["effnet-lite0", "tiny-siglip"], store=tmp / "st")
    vrec("index", "--store", tmp / "st")
    return tmp / "st"


@pytest.fixture
def grocery(_grocery_master, tmp_path) -> Path:
    shutil.copytree(_grocery_master, tmp_path / "st")
    return tmp_path / "st"


def search(store, *args, ok=True):
    r = vrec("search-text", *args, "--store", store, "--format", "json", "-k", "8", ok=ok)
    return json.loads(r.stdout) if ok else r


@needs_grocery
@pytest.mark.parametrize("brand, count", [("Oatly", 2), ("Tropicana", 4)])
def test_a_brand_query_returns_that_brands_products_first(_grocery_master, brand, count):
    hybrid = search(_grocery_master, brand, "-m", "tiny-siglip")  # hybrid: the default once indexed
    assert [r["brand"] for r in hybrid["results"][:count]] == [brand] * count
    assert {r["found_by"] for r in hybrid["results"][:count]} == {"both"}
    keyword = search(_grocery_master, brand, "-m", "effnet-lite0", "--mode", "keyword")
    assert [r["brand"] for r in keyword["results"]] == [brand] * count  # the brand's products, and only those
    plain = search(_grocery_master, brand, "-m", "effnet-lite0")  # a CNN has no text tower: keywords alone
    assert [r["id"] for r in plain["results"]] == [r["id"] for r in keyword["results"]]
    assert any("no text tower" in n for n in plain["notes"])


@needs_grocery
def test_a_swedish_word_finds_the_products_described_in_swedish(_grocery_master):
    for word in ("mjölk", "MJOLK"):  # in description_sv only; accents and case folded
        got = search(_grocery_master, word, "-m", "effnet-lite0", "--mode", "keyword")["results"]
        assert [r["item_group_id"].endswith("-milk") for r in got[:5]] == [True] * 5


@needs_grocery
def test_hybrid_never_returns_a_product_twice_and_ranks_an_id_first(_grocery_master):
    r = vrec("search-text", "gs-044", "-m", "tiny-siglip", "--store", _grocery_master, "--format", "json", "-k", "81")
    res = json.loads(r.stdout)["results"]
    assert len(res) == 81 and len({x["id"] for x in res}) == 81
    assert res[0]["id"] == "gs-044" and res[0]["found_by"] == "exact"


@needs_grocery
def test_stopword_queries_fall_back_to_vectors_or_fail_clearly(_grocery_master):
    r = search(_grocery_master, "the of", "-m", "tiny-siglip")
    assert {x["found_by"] for x in r["results"]} == {"vector"} and any("no keyword" in n for n in r["notes"])
    one_error(search(_grocery_master, "the of", "-m", "tiny-siglip", "--mode", "keyword", ok=False),
              "no keyword to look for")
    one_error(search(_grocery_master, "the of", "-m", "effnet-lite0", ok=False), "no keyword", "no text tower")
    one_error(search(_grocery_master, "oatly", "-m", "tiny-siglip", "--mode", "fuzzy", ok=False), "Unknown --mode")
    one_error(search(_grocery_master, "oatly", "-m", "tiny-siglip", "--keyword-weight", "2", ok=False),
              "--keyword-weight")


@needs_grocery
def test_the_vector_mode_is_unchanged_and_a_store_without_keywords_searches_by_vector(grocery):
    r = search(grocery, "Oatly", "-m", "tiny-siglip", "--mode", "vector")
    assert "found_by" not in r["results"][0] and "probability" in r["results"][0]
    (grocery / kw.FILE).unlink()
    assert "found_by" not in search(grocery, "Oatly", "-m", "tiny-siglip")["results"][0]
    one_error(search(grocery, "Oatly", "-m", "tiny-siglip", "--mode", "keyword", ok=False), "vrec index")


@needs_grocery
def test_filters_apply_to_both_legs(_grocery_master):
    r = search(_grocery_master, "Oatly", "-m", "tiny-siglip", "--filter", "brand=Tropicana")
    assert {x["brand"] for x in r["results"]} == {"Tropicana"}


@needs_grocery
def test_embed_keeps_the_keyword_index_up_to_date(tmp_path):
    feed, store = packshot_feed(tmp_path / "feed.csv"), tmp_path / "st"
    vrec("embed", feed, "--model", "effnet-lite0", "--store", store)
    vrec("index", "--store", store)
    new = {**next(csv.DictReader(open(GROCERY / "feed.csv", encoding="utf-8"))), "id": "gs-new",
           "title": "Zebrafruit Deluxe", "brand": "Zebra"}
    packshot_feed(feed, drop="gs-044", retitle={"gs-034": "Tropicana Sunrise Quokka"}, extra=new)
    vrec("embed", feed, "--model", "effnet-lite0", "--store", store)
    st = Store(store)
    assert ids(st, "zebrafruit") == ["gs-new"] and ids(st, "quokka") == ["gs-034"]
    assert "gs-044" not in ids(st, "oatly")
    got = search(store, "Oatly", "-m", "effnet-lite0", "--mode", "keyword")["results"]
    assert [x["id"] for x in got] == ["gs-045"]


@needs_grocery
def test_the_web_api_takes_a_mode_and_says_which_leg_found_each_result(_grocery_master):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vrec.serve.app import create_app

    c = TestClient(create_app(_grocery_master, model="tiny-siglip"))
    got = c.get("/api/search/text", params={"q": "Tropicana", "k": 6}).json()
    assert [r["metadata"]["brand"] for r in got["results"][:4]] == ["Tropicana"] * 4
    assert got["results"][0]["found_by"] == "both" and got["results"][-1]["found_by"] == "vector"
    kw_only = c.get("/api/search/text", params={"q": "Tropicana", "k": 6, "mode": "keyword"}).json()
    assert {r["found_by"] for r in kw_only["results"]} == {"keyword"} and len(kw_only["results"]) == 4
    vec = c.get("/api/search/text", params={"q": "Tropicana", "mode": "vector"}).json()
    assert {r["found_by"] for r in vec["results"]} == {None}
    bad = c.get("/api/search/text", params={"q": "the", "mode": "keyword"})
    assert bad.status_code == 400 and "no keyword" in bad.json()["error"]


# --- vrec eval --search-modes -------------------------------------------------------------------

@needs_grocery
def test_eval_prints_vector_keyword_and_hybrid_with_paired_intervals(_grocery_master, tmp_path):
    r = vrec("eval", "--models", "tiny-siglip", "--text-queries-from", "title", "--search-modes", "--bootstrap", "50",
             "--store", _grocery_master, "--report", tmp_path / "ev.json", "--report", tmp_path / "ev.md")
    assert "Text search modes on the same queries" in r.stdout
    for column in ("vector", "keyword", "hybrid", "hybrid − vector", "keyword − vector"):
        assert column in r.stdout
    assert "## Text search modes on the same queries" in (tmp_path / "ev.md").read_text()
    report = json.loads((tmp_path / "ev.json").read_text())
    figures = {(f["mode"], f["metric"], f["k"]): f for f in report["search_modes"]}
    assert {m for m, _, _ in figures} == {"vector", "keyword", "hybrid"}
    for f in figures.values():
        assert f["queries"] == 81 and f["ci_low"] <= f["value"] <= f["ci_high"]
    # a title names its product's words: keyword search finds it, a random tiny model does not
    assert figures[("keyword", "R", 10)]["value"] > 0.9 > figures[("vector", "R", 10)]["value"]
    diff = next(c for c in report["mode_comparisons"] if (c["first"], c["second"], c["metric"]) == ("hybrid", "vector", "mrr"))
    assert diff["excludes_zero"] and diff["winner"] == "hybrid"


@needs_grocery
def test_eval_tunes_the_keyword_weight_on_one_half_and_reports_on_the_other(_grocery_master, tmp_path):
    queries = tmp_path / "q.csv"
    queries.write_text("query,relevant_ids\nOatly,gs-044;gs-045\nTropicana juice,gs-034;gs-035;gs-036;gs-037\n"
                       "orange juice,gs-034;gs-035;gs-036;gs-037\nArla milk,gs-038;gs-039;gs-040;gs-041\n"
                       "the,gs-001\n")
    r = vrec("eval", "--models", "tiny-siglip", "--queries", queries, "--text-queries-from", "description",
             "--tune-keyword-weight", "--bootstrap", "50", "--store", _grocery_master)
    assert "--tune-keyword-weight chose w =" in r.stderr and "the figures are on the other 41 queries" in r.stderr
    assert "blend w=" in r.stdout and "file (3)" in r.stdout and "description (41)" in r.stdout
    assert "1 of 5 queries have no keyword" in " ".join(r.stderr.split())


@needs_grocery
def test_eval_search_modes_on_a_model_without_a_text_tower_measures_its_keyword_leg(_grocery_master, tmp_path):
    r = vrec("eval", "--models", "effnet-lite0", "--text-queries-from", "title", "--search-modes", "--bootstrap", "50",
             "--store", _grocery_master, "--report", tmp_path / "ev.json", "--report", tmp_path / "ev.md")
    assert "| task | label |" not in (tmp_path / "ev.md").read_text()  # nor in the report
    assert "## Text search modes" in (tmp_path / "ev.md").read_text()
    assert "effnet-lite0 has no text tower: only its keyword leg is measured" in " ".join(r.stderr.split())
    assert "Text search modes" in r.stdout and "Evaluation on" not in r.stdout  # no empty table above it
    report = json.loads((tmp_path / "ev.json").read_text())
    assert {f["mode"] for f in report["search_modes"]} == {"keyword"} and report["mode_comparisons"] == []
    mrr = next(f for f in report["search_modes"] if f["metric"] == "mrr")
    assert mrr["queries"] == 81 and mrr["value"] > 0.9  # a title names its product's words
    # beside a model with a text tower: that one gets all three legs, the CNN its keyword leg, on the same queries
    both = vrec("eval", "--models", "tiny-siglip,effnet-lite0", "--text-queries-from", "title", "--search-modes",
                "--bootstrap", "50", "--store", _grocery_master, "--report", tmp_path / "two.json")
    figures = json.loads((tmp_path / "two.json").read_text())["search_modes"]
    assert {f["mode"] for f in figures if f["model"] == "tiny-siglip"} == {"vector", "keyword", "hybrid"}
    assert {f["mode"] for f in figures if f["model"] == "effnet-lite0"} == {"keyword"}
    keyword = {(f["model"], f["metric"], f["k"]): f["value"] for f in figures if f["mode"] == "keyword"}
    assert keyword[("effnet-lite0", "mrr", None)] == keyword[("tiny-siglip", "mrr", None)]  # the same index
    assert "Evaluation on" in both.stdout
    tuned = vrec("eval", "--models", "effnet-lite0", "--text-queries-from", "title", "--tune-keyword-weight",
                 "--bootstrap", "50", "--store", _grocery_master)
    assert "no vector leg to blend" in " ".join(tuned.stderr.split())


@needs_grocery
def test_eval_search_modes_needs_the_keyword_index(grocery):
    (grocery / kw.FILE).unlink()
    one_error(vrec("eval", "--models", "tiny-siglip", "--text-queries-from", "title", "--search-modes",
                   "--store", grocery, ok=False), "keyword index", "vrec index")


@needs_grocery
def test_products_of_several_photos_show_the_best_photo_or_the_main_one(tmp_path):
    import vrec as lib

    rows = [r for r in csv.DictReader(open(GROCERY / "feed.csv", encoding="utf-8")) if r["brand"] in ("Oatly", "Alpro")]
    with open(tmp_path / "feed.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:  # the packshot and two shop photos each
            extra = ",".join(str(GROCERY / p) for p in r["additional_image_link"].split(",")[:2])
            w.writerow({**r, "image_link": str(GROCERY / r["image_link"]), "additional_image_link": extra})
    vrec("embed", tmp_path / "feed.csv", "-m", "tiny-siglip", "--store", tmp_path / "st")
    vrec("index", "--store", tmp_path / "st")
    keyword = lib.search_text("oatly", model="tiny-siglip", store=tmp_path / "st", mode="keyword").table
    assert keyword["brand"].tolist() == ["Oatly", "Oatly"] and (keyword["photos"] == 3).all()
    assert keyword["photo"].str.endswith("/1").all()  # found by keyword: the main photo
    hybrid = lib.search_text("oatly", model="tiny-siglip", store=tmp_path / "st", k=20).table
    assert len(hybrid) == len(rows) == hybrid["id"].nunique()
    assert hybrid["brand"].tolist()[:2] == ["Oatly", "Oatly"] and hybrid["photo"].notna().all()
