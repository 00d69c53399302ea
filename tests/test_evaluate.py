"""``vrec eval``, ``vrec export`` and ``vrec neighbours``."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from clihelp import vrec
from conftest import handmade_store
from vrec.base.errors import QueryError
from vrec.experiments.evaluate import (ap_at_k, bootstrap_ci, evaluate, hit_at_k, ndcg_at_k, paired_difference, precision_at_k,
                           recall_at_k, reciprocal_rank)
from vrec.store.store import Store


def test_metrics_on_a_hand_computed_list():
    rel = np.array([[True, False, True]])
    n_rel = np.array([2])
    assert precision_at_k(rel, 3)[0] == pytest.approx(2 / 3)
    assert recall_at_k(rel, n_rel, 1)[0] == pytest.approx(1 / 2)
    assert ap_at_k(rel, n_rel, 3)[0] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert ndcg_at_k(rel, n_rel, 3)[0] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert hit_at_k(np.array([[False, True]]), 1)[0] == 0 and hit_at_k(np.array([[False, True]]), 2)[0] == 1
    assert list(reciprocal_rank(np.array([1, 4, 0]))) == [1.0, 0.25, 0.0]
    # fewer relevant items than k: AP and nDCG are normalised by what could be found
    assert ap_at_k(np.array([[True, False, False]]), np.array([1]), 3)[0] == 1.0
    assert ndcg_at_k(np.array([[True, False, False]]), np.array([1]), 3)[0] == 1.0


def test_bootstrap_is_reproducible_and_contains_the_estimate():
    v = np.random.default_rng(0).random(200)
    lo, hi = bootstrap_ci(v, seed=3)
    assert (lo, hi) == bootstrap_ci(v, seed=3) and lo < v.mean() < hi
    d = paired_difference(v + 0.2, v, seed=1)
    assert d["difference"] == pytest.approx(0.2) and d["excludes_zero"] and d["winner"] == "first"
    same = paired_difference(v, v[::-1], seed=1)
    assert not same["excludes_zero"]


@pytest.fixture
def labelled(tmp_path):
    """Seven items: categories bag x3, shoe x3, hat x1 (no peer); 'semantic' groups them perfectly,
    'tied' makes every item look the same (all scores tie)."""
    meta = pd.DataFrame({"id": [f"item{i}" for i in range(7)],
                         "category": ["bag", "bag", "bag", "shoe", "shoe", "shoe", "hat"]})
    semantic = [[1, 0, 0.1 * i] for i in range(3)] + [[0, 1, 0.1 * i] for i in range(3)] + [[0.5, 0.5, 5]]
    tied = [[1, 1, 1]] * 7
    return handmade_store(tmp_path / "s", {"semantic": semantic, "tied": tied}, meta)


def test_image_to_image_with_known_answers(labelled):
    ev = evaluate(["semantic", "tied"], labels=["category"], ks=[1, 2, 10], store=labelled, n_boot=200)
    t = ev.table().set_index(["model", "metric", "k"])
    assert t.loc[("semantic", "precision", 2), "value"] == 1.0
    assert t.loc[("semantic", "recall", 2), "value"] == 1.0
    assert t.loc[("semantic", "map", 2), "value"] == 1.0 and t.loc[("semantic", "ndcg", 10), "value"] == 1.0
    # k beyond the catalog: 6 other items, 2 of them relevant
    assert t.loc[("semantic", "precision", 10), "value"] == pytest.approx(2 / 6)
    # the hat has no peer: left out, and said so
    assert t.loc[("semantic", "precision", 1), "queries"] == 6
    assert any("no category value, or one no other item shares" in n for n in ev.notes)
    # ties resolve to store order, deterministically: item0's neighbours are item1, item2, ...
    tied_p1 = t.loc[("tied", "precision", 1), "value"]
    assert tied_p1 == evaluate(["tied"], labels=["category"], ks=[1], store=labelled, n_boot=10).table()["value"][0]
    # every item's first neighbour is the earliest other item: 0->1, 1->0, 2->0 (bags: hits), 3,4,5->0 (misses)
    assert tied_p1 == pytest.approx(3 / 6)


def test_per_label_values_and_paired_comparison(labelled):
    ev = evaluate(["semantic", "tied"], labels=["category"], ks=[2], store=labelled, n_boot=200)
    pv = ev.per_value.query("metric == 'precision' and model == 'semantic'")
    assert set(pv["value"]) == {"bag", "shoe"} and (pv["score"] == 1.0).all()
    comp = next(c for c in ev.comparisons if c["metric"] == "precision" and c["k"] == 2)
    assert comp["winner"] == "semantic" and comp["difference"] > 0


def test_eval_errors(labelled):
    with pytest.raises(QueryError, match="--label"):
        evaluate(["semantic"], store=labelled)
    with pytest.raises(QueryError, match="Did you mean 'category'"):
        evaluate(["semantic"], labels=["categry"], store=labelled)


def test_text_to_image_and_reports_with_tiny_siglip(shared_tiny_store, tmp_path):
    r = vrec("eval", "--models", "tiny-siglip,tiny-cnn", "--label", "category", "--k", "1,5",
             "--text-template", "a photo of a {colour} {category}", "--store", shared_tiny_store,
             "--report", tmp_path / "r.md", "--report", tmp_path / "r.html", "--report", tmp_path / "r.json",
             "--bootstrap", "100")
    assert "tiny-siglip" in r.stdout and "MRR" in r.stdout and "zero-shot" in r.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    tasks = {(m["task"], m["metric"]) for m in data["metrics"] if m["model"] == "tiny-siglip"}
    assert {("image", "precision"), ("text", "recall"), ("text", "mrr"), ("zeroshot", "accuracy")} <= tasks
    assert not any(m["task"] == "text" for m in data["metrics"] if m["model"] == "tiny-cnn")
    assert all(m["ci_low"] <= m["value"] <= m["ci_high"] for m in data["metrics"])
    md = (tmp_path / "r.md").read_text()
    charts = list((tmp_path / "r_charts").glob("*.svg"))
    assert "| img→img | category | precision@5 |" in md and len(charts) >= 5
    assert all(f"r_charts/{c.name}" in md for c in charts) and "<rect" in charts[0].read_text()
    html = (tmp_path / "r.html").read_text()
    assert html.count("<svg") == len(charts) and "precision@5" in html
    # both formats carry the same tables: metrics, then the paired comparison with its own header
    assert "## Paired comparison" in md and "<h2>Paired comparison</h2>" in html and html.count("<th>winner</th>") == 1


def test_queries_file(shared_tiny_store, tmp_path):
    pd.DataFrame({"query": ["a red bag", "a watch"], "relevant_ids": ["bags/bag-tote-red;bags/bag-clutch-red", ""],
                  "filter": ["", "category=watches"]}).to_csv(tmp_path / "q.csv", index=False)
    ev = evaluate(["tiny-siglip"], queries=str(tmp_path / "q.csv"), ks=[1, 60], store=shared_tiny_store, n_boot=50)
    t = ev.table().set_index(["task", "metric", "k"])
    assert t.loc[("text", "recall", 60), "value"] == 1.0  # with k = the whole catalog, everything is found
    assert t.loc[("text", "recall", 60), "queries"] == 2


def test_real_cnn_precision_far_above_chance(fashion_store):
    ev = evaluate(["effnet-lite0", "tiny-siglip"], labels=["articleType"], ks=[5], store=fashion_store, n_boot=200)
    t = ev.table().set_index(["task", "model", "metric"])
    p5 = t.loc[("image", "effnet-lite0", "precision"), "value"]
    assert p5 >= 0.5  # measured 0.63; chance (sum of squared label shares) is about 0.07
    text_r1 = t.loc[("text", "tiny-siglip", "recall"), "value"]
    assert 0 <= text_r1 <= 0.2  # random weights: near chance, as it should be
    comp = next(c for c in ev.comparisons if c["task"] == "image" and c["metric"] == "precision")
    assert comp["winner"] == "effnet-lite0" and comp["excludes_zero"]


@pytest.mark.parametrize("fmt", ["parquet", "npy", "csv"])
def test_export_reads_back_the_same_vectors_and_ids(shared_tiny_store, tmp_path, fmt):
    out = tmp_path / f"v.{fmt}"
    vrec("export", out, "--model", "tiny-siglip", "--store", shared_tiny_store)
    ms = Store(shared_tiny_store).model("tiny-siglip")
    ids, vec = list(ms.items()["id"]), np.asarray(ms.vectors())
    if fmt == "parquet":
        df = pd.read_parquet(out)
        got_ids, got = list(df["id"]), np.stack(df["vector"].to_numpy())
        assert "title" in df.columns
    elif fmt == "npy":
        got = np.load(out)
        side = pd.read_parquet(tmp_path / "v.items.parquet")
        got_ids = list(side["id"])
        assert "price" in side.columns
    else:
        df = pd.read_csv(out)
        got_ids, got = list(df["id"]), df[[f"v{i}" for i in range(64)]].to_numpy()
    assert got_ids == ids and np.allclose(got, vec, atol=1e-6 if fmt != "csv" else 1e-6)


def test_neighbours_table(tmp_path):
    from conftest import catalog_copy, jpeg_bytes

    photos = catalog_copy(tmp_path, n=30)
    store = tmp_path / "store"
    vrec("embed", photos, "--model", "tiny-cnn", "--store", store, "--quiet")
    vrec("neighbours", tmp_path / "n.parquet", "--model", "tiny-cnn", "--k", "5", "--store", store)
    df = pd.read_parquet(tmp_path / "n.parquet")
    assert list(df.columns) == ["item", "rank", "neighbour", "score"] and len(df) == 30 * 5
    assert (df["item"] != df["neighbour"]).all()
    assert df.groupby("item")["rank"].apply(list).map(lambda r: r == [1, 2, 3, 4, 5]).all()
    assert df.groupby("item")["score"].apply(lambda s: s.is_monotonic_decreasing).all()
    # a cold-start item: embedded later, it gets neighbours like any other
    (photos / "new-arrival.jpg").write_bytes(jpeg_bytes((10, 10, 200)))
    vrec("embed", photos, "--model", "tiny-cnn", "--store", store, "--quiet")
    vrec("neighbours", tmp_path / "n2.parquet", "--model", "tiny-cnn", "--k", "5", "--store", store)
    df2 = pd.read_parquet(tmp_path / "n2.parquet")
    assert (df2["item"] == "new-arrival").sum() == 5


def test_neighbours_filter_limits_what_is_recommended(shared_tiny_store, tmp_path):
    vrec("neighbours", tmp_path / "n.parquet", "--model", "tiny-cnn", "--k", "3", "--filter", "category=watches",
         "--store", shared_tiny_store)
    df = pd.read_parquet(tmp_path / "n.parquet")
    assert df["item"].nunique() == 60 and df["neighbour"].str.startswith("watches/").all()
