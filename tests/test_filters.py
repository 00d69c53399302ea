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
from vrec.store.filters import apply_filters
from vrec.store.catalog_table import catalog_table
from vrec.search.query import INTERNAL_COLUMNS
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
