"""Filters name only the columns a user sees: metadata, tags and vrec's visible columns.

The store's bookkeeping columns (row, hash, size, mtime) are in the catalog table to search, but
are never shown nor exported: a filter naming one is refused like an unknown column, and no error
offers them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import handmade_store

from vrec.base.errors import FilterError
from vrec.search.query import INTERNAL_COLUMNS
from vrec.store.catalog_table import catalog_table
from vrec.store.filters import apply_filters
from vrec.store.store import Store


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    meta = pd.DataFrame({"id": [f"item{i}" for i in range(4)], "title": list("abcd"), "price": [10, 20, 30, 40],
                         "Row": [1, 2, 3, 4]})  # a user's column that only differs in case from an internal one
    path = handmade_store(tmp_path_factory.mktemp("filters") / "store",
                          {"m": np.random.default_rng(0).normal(size=(4, 8))}, metadata=meta)
    st = Store(path)
    t = catalog_table(st, st.model("m"))
    assert set(INTERNAL_COLUMNS) <= set(t.columns)  # present in the table, to search
    return t


@pytest.mark.parametrize("expr", ["hash=h", "size=1", "mtime>0", "Size=1", "HASH in (h)"])
def test_filters_on_internal_columns_are_refused_like_unknown_ones(table, expr):
    with pytest.raises(FilterError, match="No column") as e:
        apply_filters(table, [expr])
    listed = str(e.value).split("Columns:")[1]
    assert not {"hash", "size", "mtime", "row"} & {c.strip(" .") for c in listed.split(",")}


def test_unknown_column_lists_what_a_user_can_filter_on(table):
    with pytest.raises(FilterError) as e:
        apply_filters(table, ["colour=red"])
    listed = [c.strip(" .") for c in str(e.value).split("Columns:")[1].split(",")]
    assert listed == ["id", "path", "width", "height", "title", "price", "Row"]


def test_visible_and_metadata_columns_still_filter(table):
    assert apply_filters(table, ["price>15"]).sum() == 3
    assert apply_filters(table, ["width=8"]).sum() == 4
    assert apply_filters(table, ["id in (item0, item1)"]).sum() == 2
    # "row" names the user's own "Row" column (case ignored), never the store's row numbers
    assert apply_filters(table, ["row=1"]).tolist() == [True, False, False, False]


def test_a_metadata_column_named_like_an_internal_one_is_named_meta_name(tmp_path):
    meta = pd.DataFrame({"id": ["item0", "item1"], "size": ["M", "L"]})  # a clothing size
    st = Store(handmade_store(tmp_path / "store", {"m": np.eye(2, 4)}, metadata=meta))
    t = catalog_table(st, st.model("m"))
    assert apply_filters(t, ["meta_size=M"]).tolist() == [True, False]
    with pytest.raises(FilterError, match="'size' is named 'meta_size' here"):
        apply_filters(t, ["size=M"])


@pytest.mark.parametrize("expr,says", [
    ("price=<100", "did you mean price<=100?"), ("price =< 100", "did you mean price<=100?"),
    ("price=>20", "did you mean price>=20?"), ("price<>20", "did you mean price!=20?"),
    ("price===20", "did you mean price=20?"), ("price=!20", "did you mean price!=20?"),
    ("price!20", "did you mean price!=20?"), ("price>>5", "use one of =, !=, <, <=, >, >="),
    ("title<>a", "did you mean title!=a?"), ("title=!a", "did you mean title!=a?"),
])
def test_a_malformed_comparison_is_an_error_with_the_one_meant(table, expr, says):
    with pytest.raises(FilterError) as e:
        apply_filters(table, [expr])
    assert says in str(e.value)


@pytest.mark.parametrize("expr", ["price=abc", "price!=abc", "price in (10, abc)", "width=wide", "price=''"])
def test_a_word_on_a_numeric_column_is_an_error_not_an_empty_result(table, expr):
    with pytest.raises(FilterError, match=r"holds numbers, but .* is not one .* e\.g\. (price=10|width=8)"):
        apply_filters(table, [expr])


def test_equality_still_works_on_numbers_and_on_text_that_looks_like_an_operator(tmp_path):
    meta = pd.DataFrame({"id": ["item0", "item1"], "title": ["<b>bold", "=plain"], "price": [10.0, None]})
    st = Store(handmade_store(tmp_path / "store", {"m": np.eye(2, 4)}, metadata=meta))
    t = catalog_table(st, st.model("m"))
    assert apply_filters(t, ["price=10"]).tolist() == [True, False]
    assert apply_filters(t, ["price==10.0"]).tolist() == [True, False]  # '==' is '='
    assert apply_filters(t, ["price in (10, 1e3)"]).tolist() == [True, False]
    assert apply_filters(t, ["title=<b>bold"]).tolist() == [True, False]  # a text column takes it as text
    assert apply_filters(t, ["title='=plain'"]).tolist() == [False, True]
    with pytest.raises(FilterError, match="quote a value"):
        apply_filters(t, ["title=<c"])  # matches nothing: was it meant as title<=c?


def test_cli_refuses_a_malformed_filter_with_one_error_line(shared_tiny_store):
    from clihelp import fails

    fails("search-image", "bag-tote-red", "--model", "tiny-cnn", "--store", shared_tiny_store, "-f", "price=<100",
          says="did you mean price<=100?")
    fails("search-image", "bag-tote-red", "--model", "tiny-cnn", "--store", shared_tiny_store, "-f", "price=abc",
          says="holds numbers")
