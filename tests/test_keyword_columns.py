"""The keyword index's columns follow the catalog: indexed with every text column (the default), a
column that is new, or was empty when 'vrec index' ran, is indexed by the next 'vrec embed'; columns
named with --text-columns stay as named, also through a later plain 'vrec index' ('auto': the default again)."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from clihelp import one_error, vrec
from test_hybrid import meta_store

from vrec.base.errors import StoreError
from vrec.store import keywords as kw
from vrec.store.store import Store

FRUIT = [{"id": "p1", "title": "Golden Delicious", "brand": float("nan")}, {"id": "p2", "title": "Lime", "brand": float("nan")}]
PACKED = [{"id": "p3", "title": "Oat Drink", "brand": "Oatly", "description_sv": "Havredryck"}]


def test_a_column_filled_in_later_is_indexed_by_the_next_update(tmp_path):
    st = meta_store(tmp_path / "st", FRUIT)  # brand: all empty, so not a text column yet
    kw.build_keywords(st)
    assert "brand" not in kw.keyword_stats(st)["columns"]
    st.write_metadata(pd.DataFrame(FRUIT + PACKED).set_index("id"))
    kw.update_keywords(st)  # what vrec embed runs
    assert {"brand", "description_sv"} <= set(kw.keyword_stats(st)["columns"])
    assert kw.search_keywords(st, "oatly", 5)[0] == ["p3"]
    assert kw.search_keywords(st, "havredryck", 5)[0] == ["p3"]


def test_named_columns_stay_as_named(tmp_path):
    st = meta_store(tmp_path / "st", FRUIT)
    kw.build_keywords(st, ["title"])
    st.write_metadata(pd.DataFrame(FRUIT + PACKED).set_index("id"))
    kw.update_keywords(st)
    assert kw.keyword_stats(st)["columns"] == ["title"]
    assert kw.search_keywords(st, "oatly", 5)[0] == [] and kw.search_keywords(st, "drink", 5)[0] == ["p3"]
    kw.build_keywords(st)  # a later plain 'vrec index' keeps them
    assert kw.keyword_stats(st)["columns"] == ["title"]
    kw.build_keywords(st, ["auto"])  # 'auto': every text column again
    assert "brand" in kw.keyword_stats(st)["columns"] and kw.search_keywords(st, "oatly", 5)[0] == ["p3"]


@pytest.mark.parametrize("damage", ["not a database", "truncated", "empty"])
def test_a_damaged_keyword_index_is_one_clear_error_and_index_stats_rebuilds_it(tiny_store, damage):
    vrec("index", "--store", tiny_store)
    st = Store(tiny_store)
    path = kw.keywords_path(st)
    data = path.read_bytes()
    path.write_bytes({"not a database": b"garbage " * 100, "truncated": data[:len(data) // 3], "empty": b""}[damage])
    with pytest.raises(StoreError, match="is damaged .*run 'vrec index' to rebuild it"):
        kw.search_keywords(st, "bag", 5)
    one_error(vrec("search-text", "bag", "-m", "tiny-siglip", "--store", tiny_store, ok=False),
              "keyword index", "is damaged", "run 'vrec index' to rebuild it")
    vrec("index", "--stats", "--store", tiny_store)  # --stats builds what is missing or stale
    got = vrec("search-text", "bag", "-m", "tiny-siglip", "--mode", "keyword", "--store", tiny_store,
               "--format", "json")
    assert json.loads(got.stdout)["results"]


def test_a_keyword_search_that_finds_nothing_says_so_plainly(tiny_store):
    vrec("index", "--store", tiny_store)
    r = vrec("search-text", "zebrafruit", "--mode", "keyword", "-m", "tiny-siglip", "--store", tiny_store,
             "--format", "json")
    assert json.loads(r.stdout)["results"] == []
    assert "no item holds any of the query's keywords" in " ".join(r.stderr.split())  # not "only 0 item(s)"


def test_a_cnn_text_search_without_a_keyword_index_says_vrec_index_would_answer_it(shared_tiny_store):
    line = one_error(vrec("search-text", "red bag", "-m", "tiny-cnn", "--store", shared_tiny_store, ok=False),
                     "no text tower", "no keyword index")
    assert "run 'vrec index'" in line and "siglip" in line


def test_index_says_what_the_keyword_index_holds(tiny_store):
    assert "documents, ids only (" in vrec("index", "--store", tiny_store, "--text-columns", "").stderr
    assert "documents, columns id, title (" in vrec("index", "--store", tiny_store, "--text-columns", "title").stderr


def test_the_html_page_of_a_hybrid_search_says_which_leg_found_each_result(tiny_store, tmp_path):
    vrec("index", "--store", tiny_store)
    vrec("search-text", "red bag", "-m", "tiny-siglip", "--store", tiny_store, "--k", "3", "--html", tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count("found_by: ") == 3 and ("found_by: both" in page or "found_by: keyword" in page)


def test_a_selective_filter_still_gets_the_keyword_matches_it_keeps(tmp_path):
    """The keyword leg fetches 8 x depth matches before filtering; when the filter keeps fewer than
    depth of them, it fetches deeper instead of reporting the ones beyond as not matching."""
    import numpy as np

    from vrec.search.hybrid import _keyword_leg

    rows = [{"id": f"p{i:03d}", "title": "shirt " + ("cotton " * (i // 10))} for i in range(200)]
    st = meta_store(tmp_path / "st", rows)  # longer titles rank lower: p190..p199 rank last for "shirt"
    kw.build_keywords(st)
    ids = np.array([r["id"] for r in rows])
    allowed = np.array([i >= 190 for i in range(200)])
    found, _, _ = _keyword_leg(st, "shirt", 5, ids, allowed, "keyword", [])
    assert len(found) == 5 and all(i >= "p190" for i in found)  # was: none (only the first 40 matches looked at)
