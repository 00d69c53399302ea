"""Facets: counts equal pandas' on the matching items, numeric ranges with round buckets, filters
marked, query results counted, products counted once, and identifiers and texts never facets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import handmade_store

from vrec.base.errors import FilterError, QueryError
from vrec.search.facets import facet_columns, facets, nice_edges, to_dict
from vrec.store.catalog_table import catalog_table
from vrec.store.filters import apply_filters, selections, value_filter
from vrec.store.store import Store

MODEL = "tiny-siglip"


def table_of(store, model=MODEL):
    st = Store(store)
    return catalog_table(st, st.model(model))


def counts_of(facet) -> dict:
    return {v.value: v.count for v in facet.values}


def by_column(f) -> dict:
    return {c.column: c for c in f.categorical + f.numeric}


def check_against_pandas(f, rows):
    """Every categorical facet counts what pandas counts; every numeric one spans the values."""
    facets_ = by_column(f)
    assert f.items == len(rows)
    for column in ("category", "colour", "style"):
        assert counts_of(facets_[column]) == rows[column].value_counts().to_dict(), column
        counts = [v.count for v in facets_[column].values]
        assert counts == sorted(counts, reverse=True)
    price = facets_["price"]
    assert (price.min, price.max) == (rows["price"].min(), rows["price"].max())
    assert sum(b.count for b in price.buckets) == len(rows)
    assert price.buckets[0].min <= price.min and price.buckets[-1].max >= price.max
    for b in price.buckets:  # each bucket's filters select exactly its items
        assert apply_filters(rows, b.filters).sum() == b.count, b


def test_whole_catalog_counts_equal_pandas_value_counts(shared_tiny_store):
    table = table_of(shared_tiny_store)
    f = facets(shared_tiny_store, MODEL)
    assert f.query is None and f.kind is None and f.items == f.catalog == 60
    assert [c.column for c in f.categorical] == ["category", "colour", "style"]  # not file, title, id, path
    assert [c.column for c in f.numeric] == ["price"]  # not width, height
    check_against_pandas(f, table)
    assert not any(v.selected for c in f.categorical for v in c.values)
    assert by_column(f)["category"].values[0].filter == f"category={by_column(f)['category'].values[0].value}"


def test_filtered_facets_count_the_matching_items_and_mark_the_selection(shared_tiny_store):
    table = table_of(shared_tiny_store)
    filters = ["category in (bags, shoes)", "price<150", "colour=red"]
    f = facets(shared_tiny_store, MODEL, filters=filters)
    check_against_pandas(f, table[apply_filters(table, filters)])
    cat = by_column(f)["category"]
    assert {v.value for v in cat.values if v.selected} == {"bags", "shoes"} & set(counts_of(cat))
    assert all(v.selected for v in by_column(f)["colour"].values)
    assert by_column(f)["price"].selected_max == 150 and by_column(f)["price"].selected_min is None
    with pytest.raises(FilterError, match="No column 'nope'"):
        facets(shared_tiny_store, MODEL, filters=["nope=1"])


def test_a_text_querys_facets_count_its_results(shared_tiny_store):
    from vrec.search.query import search_text

    filters = ["price>=100"]
    f = facets(shared_tiny_store, MODEL, q="red bag", k=7, filters=filters)
    res = search_text("red bag", k=7, model=MODEL, store=shared_tiny_store, filters=filters)
    assert f.query == "red bag" and f.kind == "text" and f.items == 7
    check_against_pandas(f, res.table)
    similar = facets(shared_tiny_store, MODEL, q="bags/bag-tote-red", kind="similar", k=5)
    assert similar.items == 5 and sum(v.count for v in by_column(similar)["category"].values) == 5
    with pytest.raises(QueryError, match="kind"):
        facets(shared_tiny_store, MODEL, q="x", kind="photo")


def test_identifiers_texts_and_vrec_columns_are_never_facets_and_tags_are(tmp_path):
    n = 30
    rng = np.random.default_rng(0)
    meta = pd.DataFrame({"id": [f"item{i}" for i in range(n)], "sku": [f"S{i}" for i in range(n)],
                         "code": [f"c{i}" for i in range(n)],  # every item its own value: an identifier
                         "blurb": ["a rather long text about this product, its fabric and its fit"] * n,
                         "brand": rng.choice(["acme", "zeta", "<odd>"], n), "many": [f"v{i % 25}" for i in range(n)],
                         "rating": rng.integers(1, 6, n).astype(float), "on_sale": rng.choice([True, False], n)})
    meta.loc[:4, "rating"] = np.nan
    store = handmade_store(tmp_path / "s", {"m": rng.normal(size=(n, 4))}, meta)
    from vrec.base.files import write_parquet

    write_parquet(Path(store) / "tags.parquet", pd.DataFrame({"id": ["item0", "item0", "item1"],
                                                              "tag": ["red", "leather", "red"]}))
    table = table_of(store, "m")
    assert facet_columns(table) == ["brand", "many", "rating", "on_sale", "tags"]
    f = facets(store, "m", filters=["tag:red"], max_values=2)
    tags = by_column(f)["tags"]
    assert counts_of(tags) == {"red": 2, "leather": 1} and [v.selected for v in tags.values] == [True, False]
    assert tags.values[0].filter == "tag:red"
    whole = by_column(facets(store, "m", max_values=10))
    assert whole["tags"].missing == n - 2
    many = by_column(facets(store, "m", max_values=10))["many"]
    assert len(many.values) == 10 and many.distinct == 25 and many.other == n - sum(v.count for v in many.values)
    assert whole["rating"].missing == 5 and sum(b.count for b in whole["rating"].buckets) == n - 5
    odd = next(v for v in whole["brand"].values if v.value == "<odd>")
    assert odd.filter == "brand='<odd>'" and apply_filters(table, [odd.filter]).sum() == odd.count
    assert to_dict(f)["categorical"][0]["column"] == "brand"  # plain data, JSON-ready


def test_a_catalog_of_products_counts_products(tmp_path):
    from test_products import CONFIG, photos_of

    from vrec.store.writer import ModelWriter

    st = Store(tmp_path / "p")
    st.create(tmp_path)
    items, vectors = photos_of(40)
    with ModelWriter(st.model_for_writing("m"), CONFIG) as w:
        w.add(items, vectors)
    assert len(items) > 40  # several photos per product
    meta = pd.DataFrame({"id": [f"p{p:03d}" for p in range(36)], "category": np.array(["bags", "shoes", "hats"])[
        np.arange(36) % 3], "price": (np.arange(36) * 7.5) % 100})
    st.write_metadata(meta.set_index("id"))
    f = facets(st.path, "m")
    assert f.items == f.catalog == 40
    cat = by_column(f)["category"]
    assert counts_of(cat) == {"bags": 12, "shoes": 12, "hats": 12} and cat.missing == 4
    assert by_column(f)["price"].missing == 4
    g = facets(st.path, "m", filters=["category=hats", "price>=50"])
    assert g.items == int(((meta["category"] == "hats") & (meta["price"] >= 50)).sum())
    assert facets(st.path, "m", q="p000", kind="similar", k=5).items == 5  # five products, never p000 itself


@pytest.mark.parametrize("lo, hi, edges", [
    (5, 480, [0, 100, 200, 300, 400, 500]),
    (0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1]),
    (119, 119, [100, 200]),
    (0.13, 0.91, [0, 0.2, 0.4, 0.6, 0.8, 1]),
    (10, 60, [10, 20, 30, 40, 50, 60]),
])
def test_histogram_edges_are_round_and_cover_the_values(lo, hi, edges):
    assert nice_edges(lo, hi) == pytest.approx(edges)


def test_selections_and_value_filters():
    assert selections(["Category=Bags", "colour in (red, 'black')", "price>10", "price>=20", "price<300",
                       "tag:Red", "colour not in (x)", "junk"]) == {
        "category": {"values": {"bags"}}, "colour": {"values": {"red", "black"}},
        "price": {"min": 20.0, "max": 300.0}, "tags": {"values": {"red"}}}
    assert value_filter("brand", "acme co") == "brand=acme co"
    assert value_filter("brand", "=x") == "brand='=x'" and value_filter("brand", "it's <") == "brand=it's <"
    assert value_filter("brand", "<it's") == 'brand="<it\'s"' and value_filter("my brand", "x") is None

