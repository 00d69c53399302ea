"""A query reads only the catalog rows and columns it needs (vrec.store.catalog_rows), and its
results are exactly those of the whole catalog table: same rows, columns, order, types and notes,
with and without filters, for a folder of single photos and for products of several photos."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_products import CONFIG, photos_of, unit

import vrec.store.catalog_table as catalog_table_module
from vrec.search.query import _rank
from vrec.store.catalog_rows import CatalogRows, TableRows, catalog_rows
from vrec.store.catalog_table import catalog_table
from vrec.store.store import ModelStore, Store
from vrec.store.writer import ModelWriter

QUERIES = [((), None), (("category=bags",), None), (("price<5", "category in (bags, shoes)"), None),
           (("tag:red",), None), (("meta_size>=2",), None), ((), "line"), (("price>=3",), "line")]


def single_photos(tmp_path, n: int = 120):
    """A store of single photos in two shards, one photo removed; metadata for most items only (so
    its whole-number column reads as floats), a column named like vrec's own (size), and tags."""
    st = Store(tmp_path / "s")
    st.create(tmp_path)
    rng = np.random.default_rng(1)
    ids = [f"item-{j:03d}" for j in range(n)]
    items = pd.DataFrame({"id": ids, "path": [f"{i}.jpg" for i in ids], "hash": ids, "size": 1, "mtime": 1,
                          "width": 10, "height": 20})
    vectors = unit(rng.normal(size=(n, CONFIG["dim"])))
    with ModelWriter(st.model_for_writing("m"), CONFIG) as w:
        w.add(items.iloc[:70], vectors[:70])
    with ModelWriter(st.model_for_writing("m"), CONFIG) as w:
        w.add(items.iloc[70:], vectors[70:])
    with ModelWriter(st.model_for_writing("m"), CONFIG) as w:
        w.delete_rows([3])
    meta = pd.DataFrame({"id": ids[: n - 10], "category": np.array(["bags", "shoes", "hats"])[np.arange(n - 10) % 3],
                         "price": np.arange(n - 10) % 10, "size": np.arange(n - 10) % 4,
                         "line": [f"g{j // 4}" for j in range(n - 10)]})
    st.write_metadata(meta.set_index("id"))
    from vrec.base.files import write_parquet

    write_parquet(st.path / "tags.parquet", pd.DataFrame({"id": ids[::5] + ids[::7], "tag": ["red"] * len(ids[::5])
                                                          + ["blue"] * len(ids[::7])}))
    return st


def products(tmp_path):
    st = Store(tmp_path / "p")
    st.create(tmp_path)
    items, vectors = photos_of(60)
    with ModelWriter(st.model_for_writing("m"), CONFIG) as w:
        w.add(items.iloc[:100], vectors[:100])
    with ModelWriter(st.model_for_writing("m"), CONFIG) as w:
        w.add(items.iloc[100:], vectors[100:])
    meta = pd.DataFrame({"id": [f"p{p:03d}" for p in range(55)], "line": [f"g{p // 3}" for p in range(55)],
                         "price": np.arange(55) % 10, "category": np.array(["bags", "shoes"])[np.arange(55) % 2],
                         "size": np.arange(55) % 3})
    st.write_metadata(meta.set_index("id"))
    return st


def whole_table_results(st, query, k, filters, collapse):
    """What a query answers from the whole catalog table (as before, and as vrec serve does)."""
    fresh = Store(st.path)
    ms = fresh.model("m")
    notes: list[str] = []
    table = TableRows(catalog_table(fresh, ms, notes), notes)
    out, rank_notes = _rank(fresh, ms, table, query, k, filters, collapse=collapse)
    return out, notes + rank_notes


def piecewise_results(st, query, k, filters, collapse):
    fresh = Store(st.path)
    ms = fresh.model("m")
    notes: list[str] = []
    rows = catalog_rows(fresh, ms, notes)
    assert isinstance(rows, CatalogRows)
    out, rank_notes = _rank(fresh, ms, rows, query, k, filters, collapse=collapse)
    return out, notes + rank_notes


@pytest.mark.parametrize("kind", ["single photos", "products"])
def test_results_are_those_of_the_whole_table_with_and_without_filters(tmp_path, kind):
    st = single_photos(tmp_path) if kind == "single photos" else products(tmp_path)
    rng = np.random.default_rng(5)
    for filters, collapse in QUERIES:
        if kind == "products" and filters == ("tag:red",):
            continue  # no tags in this store
        for k in (1, 7, 200):
            q = unit(rng.normal(size=(1, CONFIG["dim"])))
            want, want_notes = whole_table_results(st, q, k, filters, collapse)
            got, got_notes = piecewise_results(st, q, k, filters, collapse)
            pd.testing.assert_frame_equal(got, want)
            assert got_notes == want_notes
    assert any("'size' is named 'meta_size'" in n for n in want_notes)  # the rename's note, kept


def test_an_unfiltered_query_reads_neither_the_whole_table_nor_every_item(tmp_path, monkeypatch):
    st = single_photos(tmp_path)
    q = unit(np.random.default_rng(2).normal(size=(1, CONFIG["dim"])))
    want, want_notes = whole_table_results(st, q, 5, (), None)
    want_filtered, _ = whole_table_results(st, q, 5, ("category=shoes",), None)
    piecewise_results(st, q, 5, (), None)  # the first query after a change saves the lookup

    def whole(*a, **kw):
        raise AssertionError("read the whole catalog table")

    monkeypatch.setattr(catalog_table_module, "_catalog_table", whole)
    monkeypatch.setattr(ModelStore, "items", whole)
    got, got_notes = piecewise_results(st, q, 5, (), None)
    pd.testing.assert_frame_equal(got, want)
    assert got_notes == want_notes
    pd.testing.assert_frame_equal(piecewise_results(st, q, 5, ("category=shoes",), None)[0], want_filtered)


def test_a_changed_catalog_is_seen_and_a_store_kept_in_memory_uses_its_table(tmp_path):
    st = single_photos(tmp_path)
    q = unit(np.random.default_rng(3).normal(size=(1, CONFIG["dim"])))
    piecewise_results(st, q, 5, (), None)
    meta = st.metadata()
    meta["category"] = "coats"
    st.write_metadata(meta)  # a new metadata file: the lookup is built again
    got, _ = piecewise_results(st, q, 5, ("category=coats",), None)
    pd.testing.assert_frame_equal(got, whole_table_results(st, q, 5, ("category=coats",), None)[0])

    class Kept(Store):
        keeps_tables = True

    kept = Kept(st.path)
    assert isinstance(catalog_rows(kept, kept.model("m")), TableRows)
