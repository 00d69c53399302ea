"""``vrec embed --engine ray``: the same pipeline and store on a local Ray started by the tests."""
from __future__ import annotations

import pandas as pd
import pytest

from clihelp import vrec
from conftest import SAMPLE, TINY, catalog_copy, write_bad_files
from vrec.compare import compare
from vrec.embed import embed
from vrec.errors import VrecError
from vrec.search import search_image
from vrec.store import Store

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


def vectors_by_id(store, model):
    ms = Store(store).model(model)
    return dict(zip(ms.items()["id"], ms.vectors()))


def test_ray_engine_matches_the_local_engine(local_ray, tmp_path, _tiny_store_master):
    photos = catalog_copy(tmp_path)
    write_bad_files(photos / "odd")
    r = vrec("embed", photos, "--engine", "ray", "--model", "tiny-siglip", "--model", "tiny-cnn",
             "--store", tmp_path / "ray", "--batch-size", "16")
    assert "tiny-siglip" in r.stderr
    local = embed(photos, models=TINY, store=tmp_path / "local", batch_size=16)
    for model in TINY:
        a, b = vectors_by_id(tmp_path / "ray", model), vectors_by_id(tmp_path / "local", model)
        assert a.keys() == b.keys() and len(a) == 60 + 5  # the five readable odd files too
        assert min(float(a[k] @ b[k]) for k in a) >= 0.9999
    assert sorted(Store(tmp_path / "ray").skipped()["path"]) == sorted(p for p, _ in local.skipped)
    again = embed(photos, models=TINY, store=tmp_path / "ray", engine="ray")
    assert again.embedded == 0 and all(m.unchanged == 65 for m in again.models)
    # the store serves the other commands unchanged
    hits = search_image("bag-tote-red", k=3, model="tiny-siglip", store=tmp_path / "ray")
    assert len(hits.table) == 3
    assert compare(["bag-tote-red"], left="tiny-cnn", right="tiny-siglip", k=3, store=tmp_path / "ray").queries


def test_a_csv_list_of_paths_with_ids_and_metadata(local_ray, tmp_path):
    files = sorted(SAMPLE.rglob("*.jpg"))[:12]
    pd.DataFrame({"path": [str(f) for f in files], "id": [f"sku-{i}" for i in range(12)],
                  "title": [f.stem for f in files], "price": range(12)}).to_csv(tmp_path / "list.csv", index=False)
    r = embed(tmp_path / "list.csv", models=["tiny-cnn"], store=tmp_path / "s", engine="ray")
    assert r.models[0].new == 12
    st = Store(tmp_path / "s")
    assert sorted(st.model("tiny-cnn").items()["id"]) == sorted(f"sku-{i}" for i in range(12))
    assert st.metadata().loc["sku-3", "title"] == files[3].stem
    # the local engine reads the same list (and a file:// URI of a folder) into the same store format
    local = embed(tmp_path / "list.csv", models=["tiny-cnn"], store=tmp_path / "l")
    a, b = vectors_by_id(tmp_path / "s", "tiny-cnn"), vectors_by_id(tmp_path / "l", "tiny-cnn")
    assert min(float(a[k] @ b[k]) for k in a) >= 0.9999 and local.models[0].new == 12
    uri = embed(f"file://{SAMPLE}", models=["tiny-cnn"], store=tmp_path / "u")
    assert uri.models[0].total == 60


def test_gpus_that_do_not_exist_are_refused_at_once(local_ray, tmp_path):
    from vrec.ray_engine import plan_workers

    with pytest.raises(VrecError, match="Ray would wait forever"):
        embed(catalog_copy(tmp_path, n=2), models=["tiny-cnn"], store=tmp_path / "s", engine="ray",
              ray_options={"gpus_per_worker": 1})
    assert plan_workers(cpus=2, gpus=0, concurrency=None, gpus_per_worker=0) == (1, 1)  # one CPU left for decoding
    assert plan_workers(cpus=16, gpus=0, concurrency=None, gpus_per_worker=0)[0] * 1 <= 15
    assert plan_workers(cpus=16, gpus=4, concurrency=None, gpus_per_worker=1) == (4, 1)


def test_missing_ray_and_unreachable_cluster_are_clear_errors(monkeypatch):
    import builtins

    import vrec.ray_engine as re

    real_import = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(VrecError, match=r"pip install 'vrec\[ray\]'"):
        re._import_ray()
    monkeypatch.undo()

    class Unreachable:
        @staticmethod
        def is_initialized():
            return False

        @staticmethod
        def init(**kw):
            raise ConnectionError("Could not connect to 10.255.255.1:6379")

    with pytest.raises(VrecError, match="Cannot reach the Ray cluster at '10.255.255.1:6379'"):
        re._connect(Unreachable, "10.255.255.1:6379")
