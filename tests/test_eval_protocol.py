"""The published protocol in ``vrec eval``: --text-queries-from, --label-queries, --fuse-text, with the
leaderboard's metric names (R@1, R@10, MRR, P@1, P@10). Known answers on hand-made cases; the
fashion sample end to end."""
from __future__ import annotations

import hashlib
import importlib
import json

import numpy as np
import pandas as pd
import pytest
from clihelp import fails, vrec
from conftest import handmade_store

from vrec.experiments.evaluate import evaluate, fused_documents, rank_queries

evaluate_module = importlib.import_module("vrec.experiments.evaluate")  # (vrec.evaluate is the function)


def unit(v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


TEXT = {"red bag": [0, 1, 0], "blue shoe": [0, 1, 0], "green shoe": [1, 0, 0],
        "bag": [0.6, 0.8, 0], "shoe": [0, 0, 1]}


class FakeTextEncoder:
    """A text tower whose vectors are chosen by hand, so every rank below is known."""

    def encode_texts(self, texts):
        out = []
        for t in texts:
            if t in TEXT:
                out.append(unit(TEXT[t]))
            else:  # any other text: a fixed direction of its own
                seed = int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)
                out.append(unit(np.random.default_rng(seed).normal(size=3)))
        return np.stack(out)


@pytest.fixture
def store4(tmp_path, monkeypatch):
    """Four items: two bags titled "red bag", a "blue shoe" and a "green shoe".

    With the hand-made text vectors the rankings are (ties broken by item order):
    "red bag" [0,1,0] -> i2, i1, i0, i3: first relevant (i1) at rank 2;
    "blue shoe" [0,1,0] -> i2 first: rank 1;  "green shoe" [1,0,0] -> i0, i1, i2, i3: rank 4.
    "bag" [.6,.8,0] -> i1 (.96), i2 (.8), i0 (.6), i3: P@1 1, 2 bags in the top 4, rank 1;
    "shoe" [0,0,1] -> i3, i0, i1, i2: P@1 1, 2 shoes in the top 4, rank 1.
    """
    meta = pd.DataFrame({"id": [f"item{i}" for i in range(4)],
                         "title": ["red bag", "red bag", "blue shoe", "green shoe"],
                         "category": ["bag", "bag", "shoe", "shoe"],
                         "blank": ["", "", "", ""]})
    vectors = [[1, 0, 0], [0.8, 0.6, 0], [0, 1, 0], [0, 0, 1]]
    store = handmade_store(tmp_path / "s", {"textual": vectors, "pixels": vectors}, meta)
    monkeypatch.setattr(evaluate_module, "_has_text", lambda name: name == "textual")
    monkeypatch.setattr(evaluate_module, "load_encoder", lambda ms, **kw: FakeTextEncoder())
    return store


def figures(ev, task: str) -> dict:
    t = ev.table()
    t = t[t.task == task]
    return {(r.metric if r.k != r.k or r.k is None else f"{r.metric}@{int(r.k)}"): r.value for r in t.itertuples()}


def test_text_queries_from_a_column_known_answers(store4):
    ev = evaluate(["textual"], store=store4, text_queries_from="title", n_boot=20)
    got = figures(ev, "text")
    assert got["R@1"] == pytest.approx(1 / 3)  # only "blue shoe" finds its item first
    assert got["R@10"] == pytest.approx(1.0)  # all four items are within the top 10
    assert got["mrr"] == pytest.approx((1 + 1 / 4 + 1 / 2) / 3)
    assert ev.table()["queries"].iloc[0] == 3  # one query per distinct title


def test_label_queries_known_answers(store4):
    ev = evaluate(["textual"], store=store4, label_queries="category", n_boot=20)
    got = figures(ev, "label")
    assert got["P@1"] == pytest.approx(1.0)
    assert got["P@10"] == pytest.approx(0.5)  # k capped at the 4 documents: 2 of 4 share the label
    assert got["mrr"] == pytest.approx(1.0)


def test_fused_documents(store4):
    img = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    txt = np.array([[0, 0, 1]], np.float32)
    docs = fused_documents(img, np.array([0, -1]), txt, 0.5)
    assert docs[0] == pytest.approx(unit([0.5, 0, 0.5]))
    assert docs[1] == pytest.approx([0, 1, 0])  # no text: the image vector
    # weight 0: the image documents; weight 1: documents are the titles' own text vectors, so each
    # title query scores its own items 1 -- "blue shoe" shares its hand-made vector with "red bag",
    # whose two items come first in the tie: rank 3
    plain = figures(evaluate(["textual"], store=store4, text_queries_from="title", n_boot=20), "text")
    w0 = figures(evaluate(["textual"], store=store4, text_queries_from="title", fuse_text="title", text_weight=0,
                          n_boot=20), "text")
    w1 = figures(evaluate(["textual"], store=store4, text_queries_from="title", fuse_text="title", text_weight=1,
                          n_boot=20), "text")
    assert w0 == pytest.approx(plain)
    assert w1["R@1"] == pytest.approx(2 / 3) and w1["mrr"] == pytest.approx((1 + 1 + 1 / 3) / 3)


def test_rank_queries_ties_follow_item_order_and_batches_agree():
    docs = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], np.float32)
    queries = np.array([[1, 0], [0, 1], [1, 0]], np.float32)
    first, hits = rank_queries(docs, queries, np.array([0, 1, 1, 2]), np.array([2, 1, 1]), [1, 2, 10])
    # query 0 wants doc 3, tied with docs 0 and 1, which come first: rank 3
    assert first.tolist() == [3, 1, 2]
    assert hits[1].tolist() == [0, 1, 0] and hits[2].tolist() == [0, 1, 1] and hits[10].tolist() == [1, 2, 2]
    rng = np.random.default_rng(0)
    d, q = rng.normal(size=(50, 4)).astype(np.float32), rng.normal(size=(20, 4)).astype(np.float32)
    codes, qcodes = rng.integers(0, 5, 50), rng.integers(0, 5, 20)
    a = rank_queries(d, q, codes, qcodes, [1, 10])
    b = rank_queries(d, q, codes, qcodes, [1, 10], cells=60)  # one query per batch
    assert (a[0] == b[0]).all() and all((a[1][k] == b[1][k]).all() for k in (1, 10))
    order = np.argsort(-(q @ d.T), axis=1, kind="stable")
    expected = [int(np.flatnonzero(codes[o] == c)[0]) + 1 for o, c in zip(order, qcodes)]
    assert a[0].tolist() == expected


def test_protocol_errors_are_one_clear_line(store4):
    fails("eval", "--models", "pixels", "--text-queries-from", "title", "--store", store4,
          says="need a model with a text tower")
    fails("eval", "--models", "textual", "--text-queries-from", "titel", "--store", store4, says="Did you mean 'title'")
    fails("eval", "--models", "textual", "--label-queries", "blank", "--store", store4, says="has no value")
    fails("eval", "--models", "textual", "--fuse-text", "title", "--label", "category", "--store", store4,
          says="--fuse-text")
    fails("eval", "--models", "textual", "--text-queries-from", "title", "--text-weight", "2", "--store", store4,
          says="--text-weight")


def test_cli_names_the_metrics_as_the_leaderboard_does(store4, tmp_path):
    r = vrec("eval", "--models", "textual,pixels", "--text-queries-from", "title", "--label-queries", "category",
             "--store", store4, "--bootstrap", "20", "--report", tmp_path / "p.json", "--report", tmp_path / "p.html")
    for name in ("R@1", "R@10", "MRR", "P@1", "P@10", "label→img"):
        assert name in r.stdout
    assert "pixels: no text tower" in r.stderr
    data = json.loads((tmp_path / "p.json").read_text())
    assert {(m["metric"], m["k"]) for m in data["metrics"] if m["task"] == "text"} == {("R", 1), ("R", 10), ("mrr", None)}
    assert "R@10" in (tmp_path / "p.html").read_text()


def test_title_protocol_on_the_fashion_sample(fashion_store, tmp_path):
    one = fails("eval", "--models", "effnet-lite0", "--text-queries-from", "productDisplayName",
                "--store", fashion_store, says="text tower")
    assert "effnet-lite0" in one
    r = vrec("eval", "--models", "tiny-siglip", "--text-queries-from", "productDisplayName", "--label-queries",
             "articleType", "--fuse-text", "productDisplayName", "--store", fashion_store, "--bootstrap", "50",
             "--report", tmp_path / "bench.json")
    data = json.loads((tmp_path / "bench.json").read_text())
    rows = {(m["task"], m["metric"], m["k"]): m for m in data["metrics"]}
    titles = rows[("text", "R", 1)]["queries"]
    assert 700 < titles <= 800  # one query per distinct product title among the 800 items
    for key in [("text", "R", 1), ("text", "R", 10), ("text", "mrr", None), ("label", "P", 1), ("label", "P", 10)]:
        assert 0.0 <= rows[key]["value"] <= 1.0
    assert rows[("text", "R", 1)]["value"] <= rows[("text", "R", 10)]["value"]
    assert "R@1" in r.stdout and "P@10" in r.stdout and "normalise(0.9 x image + 0.1 x text" in r.stderr
