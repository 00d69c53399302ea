"""vrec adapt: an adapter learnt from labels helps on held-out items, is refused when it cannot,
round-trips through the store, leaves the base model's vectors alone, and adapts queries."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from clihelp import fails, vrec
from conftest import handmade_store

from vrec.models.adapter import AdaptedEncoder, Adapter, unit
from vrec.store.store import Store


def planted(n: int = 600, seed: int = 0, shuffle_labels: bool = False):
    """Vectors whose label is linearly recoverable but not what dominates them: a strong 'style'
    the label does not follow, plus a weak label signal in a few directions of its own."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 8, n)
    styles = rng.integers(0, 6, n)
    style_means = rng.standard_normal((6, 64)) * 3.0
    label_means = np.zeros((8, 64))
    label_means[:, 48:] = rng.standard_normal((8, 16)) * 1.0
    x = style_means[styles] + label_means[labels] + rng.standard_normal((n, 64)) * 0.6
    if shuffle_labels:
        labels = rng.permutation(labels)
    ids = [f"item{i}" for i in range(n)]
    meta = pd.DataFrame({"id": ids, "kind": [f"k{v}" for v in labels]})
    return x, meta, ids


def make_store(tmp_path, shuffle_labels=False):
    x, meta, ids = planted(shuffle_labels=shuffle_labels)
    return handmade_store(tmp_path / "store", {"m": x}, metadata=meta, ids=ids)


def test_adapt_improves_held_out_precision_on_planted_structure_and_round_trips(tmp_path):
    store = make_store(tmp_path)
    base_before = np.array(Store(store).model("m").vectors())
    res = vrec("adapt", "--model", "m", "--label", "kind", "--store", store, "--steps", "150", "--format", "json")
    rep = json.loads(res.stdout)
    row = rep["rows"][0]
    assert rep["published"] and row["verdict"] == "better"
    assert row["ci"][0] > 0 and row["adapted"] > row["base"] + 0.1, row
    # the base model is untouched; the derived one is a model of the store like any other
    st = Store(store)
    assert np.array_equal(np.array(st.model("m").vectors()), base_before)
    assert set(st.model_names()) == {"m", "m+adapt"}
    derived = st.model("m+adapt")
    assert len(derived) == 600 and derived.config["adapter"]["base"] == "m"
    assert not np.allclose(np.array(derived.vectors()), base_before, atol=1e-3)
    # a catalog item's neighbours under the adapted model share its label more often than under the base
    meta = st.metadata()
    hits = {}
    for model in ("m", "m+adapt"):
        out = json.loads(vrec("search-image", "item0", "--model", model, "--store", store, "-k", "10",
                              "--format", "json").stdout)
        hits[model] = sum(meta.loc[r["id"], "kind"] == meta.loc["item0", "kind"] for r in out["results"])
    assert hits["m+adapt"] >= hits["m"]
    shown = vrec("models", "--store", store).stdout
    assert "m+adapt" in shown and "kind" in shown and "fresh" in shown
    # new vectors in the base model: the adapted model says it is stale
    from vrec.store.writer import ModelWriter

    base = st.model_for_writing("m")
    with ModelWriter(base, base.config) as w:
        w.add(base.items().iloc[:1].assign(id="new"), np.array(base.vectors()[:1]))
    assert "stale" in vrec("models", "--store", store).stdout


def test_adapt_is_refused_when_labels_carry_nothing(tmp_path):
    store = make_store(tmp_path, shuffle_labels=True)
    res = vrec("adapt", "--model", "m", "--label", "kind", "--store", store, "--steps", "150", ok=False)
    assert res.exit_code == 1 and "Not published" in res.stderr
    assert "held-out precision@10" in res.stdout  # the report is shown all the same
    assert Store(store).model_names() == ["m"]
    # --force publishes it anyway, and says so
    res = vrec("adapt", "--model", "m", "--label", "kind", "--store", store, "--steps", "20", "--force")
    assert "anyway (--force)" in " ".join(res.stdout.split())


def test_adapt_again_replaces_the_derived_model(tmp_path):
    store = make_store(tmp_path)
    vrec("adapt", "--model", "m", "--label", "kind", "--store", store, "--steps", "100", "--name", "house")
    vrec("adapt", "--model", "m", "--label", "kind", "--store", store, "--steps", "100", "--name", "m+house",
         "--seed", "1")
    ms = Store(store).model("m+house")
    assert len(ms) == 600 and ms.config["adapter"]["seed"] == 1
    assert [p.name for p in ms.path.iterdir() if p.name.startswith("adapter-")] == [ms.config["adapter"]["folder"]]


@pytest.mark.parametrize(("args", "says"), [
    (["--model", "m"], "Nothing to learn from"),
    (["--model", "m", "--label", "nope"], "No column 'nope'"),
    (["--model", "m", "--label", "kind", "--alpha", "2"], "--alpha"),
    (["--model", "m", "--label", "kind", "--name", "other+x"], "not on 'm'"),
    (["--model", "m+adapt", "--label", "kind"], "is itself an adapter"),
])
def test_adapt_refuses_bad_options(tmp_path, args, says):
    store = make_store(tmp_path)
    fails("adapt", *args, "--store", store, says=says)


def test_pairs_file_groups_items(tmp_path):
    store = make_store(tmp_path)
    _, meta, ids = planted()
    # pairs joining items of one label: the groups are the labels again
    pairs = [(a, b) for _, g in meta.groupby("kind") for a, b in zip(g["id"], g["id"].iloc[1:])]
    f = tmp_path / "pairs.csv"
    pd.DataFrame(pairs, columns=["a", "b"]).to_csv(f, index=False)
    rep = json.loads(vrec("adapt", "--model", "m", "--pairs", f, "--store", store, "--steps", "150",
                          "--format", "json").stdout)
    assert rep["rows"][0]["label"] == "pairs" and rep["rows"][0]["verdict"] == "better"


def test_text_queries_blend_adapted_and_base_by_alpha():
    rng = np.random.default_rng(0)
    ad = Adapter(rng.standard_normal((16, 4)).astype(np.float32), rng.standard_normal((16, 4)).astype(np.float32))
    t = unit(rng.standard_normal((1, 16)))
    ad.alpha = 0.0
    assert np.allclose(ad.apply_text(t), t, atol=1e-6)  # alpha 0: text search as the base model had it
    ad.alpha = 1.0
    assert np.allclose(ad.apply_text(t), ad.apply(t), atol=1e-6)
    ad.alpha = 0.5
    mid = ad.apply_text(t)
    assert np.isclose(np.linalg.norm(mid), 1, atol=1e-5)
    assert np.allclose(mid, unit(ad.apply(t) + t), atol=1e-6)

    class Base:
        logit_bias = 1.0

        def encode_texts(self, texts):
            return np.repeat(t, len(texts), 0)

        def encode_images(self, images):
            return np.repeat(t, len(images), 0)

    enc = AdaptedEncoder(Base(), ad, "x+adapt")
    assert np.allclose(enc.encode_texts(["a"]), mid) and np.allclose(enc.encode_images([0]), ad.apply(t))
    assert enc.logit_bias is None  # SigLIP's probability belongs to the base space


def test_text_and_photo_search_with_an_adapted_vision_language_model(tiny_store, sample_dir):
    vrec("adapt", "--model", "tiny-siglip", "--label", "category", "--store", tiny_store, "--steps", "20",
         "--force", "--alpha", "0.3")
    st = Store(tiny_store)
    assert st.model("tiny-siglip+adapt").config["adapter"]["alpha"] == 0.3
    out = json.loads(vrec("search-text", "red bag", "--model", "tiny-siglip+adapt", "--store", tiny_store,
                          "--format", "json").stdout)
    assert len(out["results"]) == 10
    photo = sample_dir / "bags" / "bag-tote-red.jpg"
    out = json.loads(vrec("search-image", photo, "--model", "tiny-siglip+adapt", "--store", tiny_store,
                          "--format", "json").stdout)
    assert out["results"][0]["id"].endswith("bag-tote-red") and out["results"][0]["score"] > 0.999
    # a text query is the base text tower's vector, then the adapter, blended by the stored alpha
    from vrec.models.adapter import load_adapter
    from vrec.search.query import load_encoder

    derived, base = st.model("tiny-siglip+adapt"), st.model("tiny-siglip")
    adapter = load_adapter(derived.path, derived.config)
    assert adapter.alpha == 0.3
    want = adapter.apply_text(load_encoder(base, device="cpu").encode_texts(["a photo of red bag."]))
    got = load_encoder(derived, device="cpu").encode_texts(["a photo of red bag."])
    assert np.allclose(got, want, atol=1e-5)


def test_an_adapter_cannot_embed_photos(tmp_path, sample_dir):
    fails("embed", sample_dir, "--model", "tiny-cnn+adapt", "--store", tmp_path / "s", says="embed with --model tiny-cnn")


def test_downloading_an_adapted_model_says_it_fetches_its_base_models_weights():
    r = vrec("models", "download", "tiny-siglip+adapt")
    assert "adapted from tiny-siglip" in r.stderr and "downloading tiny-siglip's weights" in r.stderr


@pytest.mark.slow
def test_adapt_effnet_on_the_fashion_sample(fashion_store):
    """The real evidence docs/adapt.md quotes: articleType on the fashion sample's effnet-lite0 vectors."""
    rep = json.loads(vrec("adapt", "--model", "effnet-lite0", "--label", "articleType", "--store", fashion_store,
                          "--format", "json").stdout)
    row = rep["rows"][0]
    assert rep["published"] and row["ci"][0] > 0, row


def test_the_web_app_serves_an_adapted_model(tiny_store, sample_dir):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vrec.serve.app import create_app

    vrec("adapt", "--model", "tiny-siglip", "--label", "category", "--store", tiny_store, "--steps", "20", "--force")
    client = TestClient(create_app(tiny_store, model="tiny-siglip+adapt", compare_with="tiny-siglip"))
    r = client.get("/api/search/text", params={"q": "red bag", "k": 5})
    assert r.status_code == 200 and len(r.json()["results"]) == 5
    data = (sample_dir / "bags" / "bag-tote-red.jpg").read_bytes()
    r = client.post("/api/search/image", files={"file": ("mine.jpg", data, "image/jpeg")}, data={"k": "3"})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["id"].endswith("bag-tote-red")


def test_a_catalog_of_products_is_split_and_adapted_by_product(tmp_path):
    from vrec.store.writer import ModelWriter

    x, meta, _ = planted(300)
    x = np.repeat(x, 2, 0) + np.random.default_rng(1).standard_normal((600, 64)) * 0.3  # two photos a product
    ids = [f"item{i // 2}/{i % 2 + 1}" for i in range(600)]
    items = pd.DataFrame({"id": ids, "path": "", "hash": "", "size": 0, "mtime": 0, "width": 0, "height": 0,
                          "product": [f"item{i // 2}" for i in range(600)], "position": [i % 2 + 1 for i in range(600)]})
    st = Store(tmp_path / "store")
    st.create(tmp_path)
    cfg = {"name": "m", "family": "test", "architecture": "m", "weights": "w", "dim": 64, "preprocess": {}}
    with ModelWriter(st.model_for_writing("m"), cfg) as w:
        w.add(items, unit(x))
    st.write_metadata(meta.set_index("id"))
    rep = json.loads(vrec("adapt", "--model", "m", "--label", "kind", "--store", st.path, "--steps", "150",
                          "--format", "json").stdout)
    assert rep["items"] == 300 and rep["train_items"] + rep["test_items"] == 300  # products, not photos
    assert rep["published"]
    assert len(Store(st.path).model("m+adapt")) == 300 and len(Store(st.path).photos("m+adapt")) == 600
