"""The keyword index's columns follow the catalog: indexed with every text column (the default), a
column that is new, or was empty when 'vrec index' ran, is indexed by the next 'vrec embed'; columns
named with --text-columns stay as named."""
from __future__ import annotations

import pandas as pd
from test_hybrid import meta_store

from vrec.store import keywords as kw

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
