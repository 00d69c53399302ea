"""``vrec embed --engine ray``: the same pipeline and store on a local Ray started by the tests."""
from __future__ import annotations

import os
import secrets

import pandas as pd
import pytest
from clihelp import vrec
from conftest import SAMPLE, TINY, catalog_copy, write_bad_files

from vrec.base.errors import VrecError
from vrec.ingest.embed import embed
from vrec.search.compare import compare
from vrec.search.query import search_image
from vrec.store.store import Store

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    # A local Ray turns token auth on and, without a token, writes one to ~/.ray/auth_token, after which
    # every 'ray start --head' on the machine asks for it: a token of its own keeps the tests out of $HOME.
    # Its workers run at the driver's niceness, as vrec's own local Ray does: at Ray's default (15) a busy
    # machine starves them.
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_worker_niceness")}
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ["RAY_worker_niceness"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


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
    from vrec.ingest.ray_engine import plan_workers

    with pytest.raises(VrecError, match="Ray would wait forever"):
        embed(catalog_copy(tmp_path, n=2), models=["tiny-cnn"], store=tmp_path / "s", engine="ray",
              ray_options={"gpus_per_worker": 1})
    assert plan_workers(cpus=2, gpus=0, concurrency=None, gpus_per_worker=0) == (1, 1)  # one CPU left for decoding
    assert plan_workers(cpus=16, gpus=0, concurrency=None, gpus_per_worker=0)[0] * 1 <= 15
    assert plan_workers(cpus=16, gpus=4, concurrency=None, gpus_per_worker=1) == (4, 1)


def test_missing_ray_and_unreachable_cluster_are_clear_errors(monkeypatch):
    import builtins

    import vrec.ingest.ray_engine as re

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


class Refusing:
    """A stand-in for ray whose init fails the way Ray 2.60 does (test_ray_cluster.py runs the real thing)."""

    error: Exception

    @staticmethod
    def is_initialized():
        return False

    @classmethod
    def init(cls, **kw):
        raise cls.error


def refused(message: str) -> ConnectionError:
    """ConnectionError('Failed to connect to Ray cluster ...') from RuntimeError(<the GCS client's traceback text>)."""
    e = ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:6380")
    e.__cause__ = RuntimeError(f"Failed to connect to GCS. Last connection error: Traceback (most recent call last):\n"
                               f"ray.exceptions.AuthenticationError: {message}")
    return e


def test_a_cluster_that_refuses_the_token_says_what_to_set(monkeypatch, tmp_path):
    import vrec.ingest.ray_engine as re

    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    Refusing.error = refused("RPC error: InvalidAuthToken: Authentication token is missing or incorrect. "
                             "Note: RAY_AUTH_MODE is currently 'disabled' (not 'token').")
    with pytest.raises(VrecError, match=r"^The Ray cluster at 'head:6380' requires token authentication; set "
                                        r"RAY_AUTH_MODE=token and put the head's token .*RAY_AUTH_TOKEN_PATH"):
        re._connect(Refusing, "head:6380")

    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    Refusing.error = refused("RPC error: InvalidAuthToken: Authentication token is missing or incorrect.")
    with pytest.raises(VrecError, match=r"refused the token from ~/\.ray/auth_token; put the head's token"):
        re._connect(Refusing, "head:6380")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "t"))
    with pytest.raises(VrecError, match=f"refused the token from RAY_AUTH_TOKEN_PATH={tmp_path / 't'};"):
        re._connect(Refusing, "head:6380")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "0" * 64)  # Ray reads it before the file
    with pytest.raises(VrecError, match="refused the token from RAY_AUTH_TOKEN;"):
        re._connect(Refusing, "head:6380")

    Refusing.error = ray.exceptions.AuthenticationError(
        "Token authentication is enabled but no authentication token was found")
    with pytest.raises(VrecError, match="^RAY_AUTH_MODE=token is set but no Ray token was found here; put"):
        re._connect(Refusing, "head:6380")
    Refusing.error = ValueError("Ray Client requires pip package `ray[client]`. If you installed the minimal Ray ...")
    with pytest.raises(VrecError, match=r"needs Ray Client: pip install 'ray\[client\]'"):
        re._connect(Refusing, "ray://head:10001")
    # anything else is still "cannot reach"
    Refusing.error = RuntimeError("Failed to connect to GCS. Last connection error: deadline exceeded")
    with pytest.raises(VrecError, match="Cannot reach the Ray cluster at 'head:6380'"):
        re._connect(Refusing, "head:6380")


def test_a_feed_of_urls_is_downloaded_by_the_workers(local_ray, tmp_path):
    """Ray reads a product feed too: its workers fetch the photos behind URLs (a real local HTTP server)."""
    import functools
    import http.server
    import json
    import threading

    from vrec.ingest.feed_source import FeedOptions

    files = sorted(SAMPLE.rglob("*.jpg"))[:6]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SAMPLE))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with open(tmp_path / "feed.jsonl", "w") as f:
            for n in range(3):  # three products of two photos each
                pair = [f"{base}/{p.relative_to(SAMPLE).as_posix()}" for p in files[2 * n:2 * n + 2]]
                f.write(json.dumps({"id": f"p{n}", "title": f"product {n}", "image_link": pair[0],
                                    "additional_image_link": pair[1:]}) + "\n")
        r = embed(tmp_path / "feed.jsonl", models=["tiny-cnn"], store=tmp_path / "s", engine="ray",
                  feed=FeedOptions(cache=str(tmp_path / "cache")))
    finally:
        server.shutdown()
    assert r.models[0].new == 6 and not r.skipped
    ms = Store(tmp_path / "s").model("tiny-cnn")
    assert sorted(ms.items()["id"]) == ["p0", "p1", "p2"] and list(ms.items()["photos"]) == [2, 2, 2]
