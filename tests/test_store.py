"""The sharded store: append-only commits, crash safety, tombstones, compaction, versions."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import vrec.store.store as store_mod
import vrec.store.writer as writer_mod
from vrec.base.errors import ConfigMismatch, NotEmbedded, StoreError
from vrec.store.store import Store
from vrec.store.writer import ModelWriter

CONFIG = {"name": "m", "family": "test", "architecture": "a", "weights": "w", "dim": 8, "preprocess": {}}


def rows(ids):
    return pd.DataFrame({"id": ids, "path": [f"{i}.jpg" for i in ids], "hash": ["h"] * len(ids), "size": 1,
                         "mtime": 1, "width": 10, "height": 10})


def unit(n, seed=0, dim=8):
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make(tmp_path, n=10):
    st = Store(tmp_path / "s")
    st.create(tmp_path)
    ms = st.model_for_writing("m")
    with ModelWriter(ms, CONFIG) as w:
        w.add(rows([f"i{k}" for k in range(n)]), unit(n))
    return st, st.model("m")


def test_append_writes_only_a_new_shard(tmp_path):
    st, ms = make(tmp_path)
    first = ms.shard_dir / "00000001.npy"
    before = first.stat().st_mtime_ns
    with ModelWriter(ms, CONFIG) as w:
        w.add(rows(["new"]), unit(1, 1))
    ms.refresh()
    assert len(ms) == 11 and len(ms.shards()) == 2
    assert first.stat().st_mtime_ns == before  # the old shard is untouched
    assert list(ms.items()["id"])[-1] == "new"
    assert isinstance(ms.shard_vectors(ms.shards()[0]), np.memmap)


def test_crash_between_shard_write_and_manifest_commit_keeps_the_old_store(tmp_path, monkeypatch):
    st, ms = make(tmp_path)
    old = ms.vectors().copy()

    def crash(*a, **k):
        raise OSError("power cut")

    with pytest.raises(OSError):
        with ModelWriter(ms, CONFIG) as w:
            w.add(rows(["x"]), unit(1, 2))
            monkeypatch.setattr(writer_mod, "write_json", crash)
            w.flush()
    monkeypatch.undo()
    ms = Store(tmp_path / "s").model("m")
    assert len(ms) == 10 and np.array_equal(ms.vectors(), old)
    # the orphaned shard is cleaned up by the next writer
    assert any(f.name.startswith("00000002") for f in ms.shard_dir.iterdir())
    with ModelWriter(ms, CONFIG):
        pass
    assert not any(f.name.startswith("00000002") for f in ms.shard_dir.iterdir())


def test_tombstones_hide_rows_and_compaction_drops_them(tmp_path):
    st, ms = make(tmp_path, n=8)
    vec = ms.vectors().copy()
    with ModelWriter(ms, CONFIG) as w:
        w.delete_rows([1])
    ms.refresh()
    assert "i1" not in set(ms.items()["id"]) and len(ms) == 7
    assert np.array_equal(ms.vectors(), np.delete(vec, 1, axis=0))
    with ModelWriter(ms, CONFIG) as w:
        w.delete_rows([2, 3])  # now 3 of 8 are gone: past the compaction threshold
    ms.refresh()
    assert sum(s.deleted_count for s in ms.shards()) == 0 and ms.total_rows == 5
    assert list(ms.items()["id"]) == ["i0", "i4", "i5", "i6", "i7"]
    assert np.array_equal(ms.vectors(), vec[[0, 4, 5, 6, 7]])
    assert ms.manifest()["layout"] == 1


def test_config_mismatch_is_refused(tmp_path):
    st, ms = make(tmp_path)
    with pytest.raises(ConfigMismatch, match="another dim"):
        ModelWriter(ms, {**CONFIG, "dim": 16}).__enter__()


def test_newer_schema_is_refused_and_old_unversioned_is_migrated(tmp_path):
    st, ms = make(tmp_path)
    info = json.loads(st.info_path.read_text())
    st.info_path.write_text(json.dumps({**info, "schema_version": 99}))
    with pytest.raises(StoreError, match="newer vrec"):
        Store(tmp_path / "s").model("m")
    del info["schema_version"]
    st.info_path.write_text(json.dumps(info))
    assert Store(tmp_path / "s").info()["schema_version"] == store_mod.SCHEMA_VERSION
    st.create(tmp_path)  # a writer upgrades the file on disk
    assert json.loads(st.info_path.read_text())["schema_version"] == store_mod.SCHEMA_VERSION


def test_two_writers_never_write_one_model_at_once(tmp_path):
    st, ms = make(tmp_path)
    with ModelWriter(ms, CONFIG):
        with pytest.raises(StoreError, match="Another vrec process"):
            ModelWriter(Store(tmp_path / "s").model("m"), CONFIG).__enter__()


def test_missing_store_and_model_are_clear_errors(tmp_path):
    with pytest.raises(StoreError, match="run 'vrec embed FOLDER' first"):
        Store(tmp_path / "none").model("m")
    st, ms = make(tmp_path)
    with pytest.raises(NotEmbedded, match="vrec embed FOLDER --model other"):
        st.model("other")


def test_a_large_store_appends_in_proportion_to_what_is_new(tmp_path):
    """200k x 768 in the store; adding 2k rows writes about 1% of the bytes."""
    st = Store(tmp_path / "big")
    st.create(tmp_path)
    cfg = {**CONFIG, "dim": 768}
    ms = st.model_for_writing("m")
    n = 200_000
    with ModelWriter(ms, cfg) as w:
        w.add(rows([f"i{k}" for k in range(n)]), np.zeros((n, 768), np.float32))
    size_before = sum(f.stat().st_size for f in ms.shard_dir.iterdir())
    mtimes = {f.name: f.stat().st_mtime_ns for f in ms.shard_dir.iterdir()}
    with ModelWriter(ms, cfg) as w:
        w.add(rows([f"n{k}" for k in range(2000)]), np.ones((2000, 768), np.float32))
    new_files = [f for f in ms.shard_dir.iterdir() if f.name not in mtimes]
    assert all(f.stat().st_mtime_ns == mtimes[f.name] for f in ms.shard_dir.iterdir() if f.name in mtimes)
    written = sum(f.stat().st_size for f in new_files)
    assert written < 0.02 * size_before
    ms.refresh()
    assert len(ms) == n + 2000 and ms.vectors_for_rows([n + 1])[0, 0] == 1.0
