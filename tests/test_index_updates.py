"""Incremental HNSW updates (``vrec embed`` into an indexed store): removed items keep their slots
in hnswlib, so an update must make room for them as well as for the new items."""
from __future__ import annotations

import numpy as np
from test_store import CONFIG, rows

import vrec.store.index as ix
from vrec.store.store import Store
from vrec.store.writer import ModelWriter


def _unit(n, dim=16, seed=0):
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_an_update_after_removals_has_room_for_more_new_items_than_were_removed(tmp_path):
    cfg = {**CONFIG, "dim": 16}
    st = Store(tmp_path / "s")
    st.create(tmp_path)
    ms = st.model_for_writing("m")
    with ModelWriter(ms, cfg) as w:
        w.add(rows([f"i{k}" for k in range(1000)]), _unit(1000))
    ix.build_index(st.model("m"))
    ms = st.model("m")
    with ModelWriter(ms, cfg) as w:  # 5% removed: an incremental update, their slots stay taken
        w.delete_rows(range(50))
    assert ix.update_index(st.model("m")).items == 950
    ms = st.model("m")
    with ModelWriter(ms, cfg) as w:  # then more added than were removed
        w.add(rows([f"n{k}" for k in range(80)]), _unit(80, seed=1))
    s = ix.update_index(st.model("m"))  # was: RuntimeError: The number of elements exceeds the specified limit
    assert s.fresh and s.items == 1030
    ms = st.model("m")
    labels, _ = ix.search_rows(ms, _unit(80, seed=1)[:3], 1, exact=False)
    assert set(labels[:, 0]) <= set(ms.items()["row"])
