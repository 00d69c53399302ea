"""``vrec eval --models a,b,c,d``: every model ranked on every figure, every pair compared on the same
queries, p-values adjusted with Holm's method, and a first line that names the model to use."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from clihelp import vrec
from conftest import SAMPLE, handmade_store

from vrec.experiments.evaluate import evaluate, to_dict
from vrec.experiments.many_models import bootstrap_p, holm, rank_models


def test_holm_equals_statsmodels_multipletests():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(1)
    for n in (1, 2, 6, 15):
        p = list(rng.random(n) ** 3)
        assert holm(p) == pytest.approx(list(multipletests(p, alpha=0.05, method="holm")[1]))
    # by hand, three p-values: sorted .01, .02, .04 -> x3, x2, x1, kept monotone
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([]) == []


def test_bootstrap_p_is_two_sided_and_never_zero():
    assert bootstrap_p(np.full(999, 0.2)) == pytest.approx(2 / 1000)  # every resample above zero
    assert bootstrap_p(np.zeros(999)) == 1.0  # identical models: no evidence at all
    assert bootstrap_p(np.r_[np.full(500, -1.0), np.full(499, 1.0)]) == 1.0


def test_four_models_with_known_answers(tmp_path):
    """A perfect model, a half-perfect one, a random one and an identical copy of the random one."""
    rng = np.random.default_rng(0)
    cats = np.repeat(["bag", "shoe", "hat", "watch"], 15)
    onehot = (cats[:, None] == np.unique(cats)[None, :]).astype(float)
    noise = rng.normal(size=(60, 4))
    perfect = onehot * 10 + noise * 0.1
    half = np.where(np.arange(60)[:, None] % 2 == 0, onehot * 10, 0) + noise
    meta = pd.DataFrame({"id": [f"item{i}" for i in range(60)], "category": cats})
    store = handmade_store(tmp_path / "s", {"perfect": perfect, "half": half, "random": noise, "copy": noise}, meta)
    ev = evaluate(["random", "half", "perfect", "copy"], labels=["category"], ks=[1, 5], store=store, n_boot=400)
    r = ev.ranking
    assert r.order[0] == "perfect" and r.verdict.startswith("Which model for this catalog: perfect")
    assert len(r.figures) == 8 and len(r.pairs) == 8 * 6  # 4 metrics x 2 cut-offs; 6 pairs each
    p1 = next(f for f in r.figures if f["metric"] == "precision" and f["k"] == 1)
    assert [x["model"] for x in p1["ranking"]][:2] == ["perfect", "half"]
    pairs = {(p["first"], p["second"]): p for p in r.pairs if p["metric"] == "precision" and p["k"] == 1}
    assert pairs[("perfect", "random")]["real"] and pairs[("perfect", "half")]["real"]
    same = pairs.get(("random", "copy")) or pairs[("copy", "random")]
    assert not same["real"] and same["difference"] == 0 and same["p_holm"] == 1.0
    for p in r.pairs:  # each figure's p-values adjusted together, as statsmodels does
        assert p["p_holm"] >= p["p"] and p["difference"] >= 0 and p["ci"][0] <= p["difference"] <= p["ci"][1]
    fig_pairs = [p for p in r.pairs if p["metric"] == "ndcg" and p["k"] == 5]
    assert [p["p_holm"] for p in fig_pairs] == pytest.approx(holm([p["p"] for p in fig_pairs]))
    assert r.record["perfect"]["losses"] == 0 and r.record["copy"]["wins"] == 0
    assert json.loads(json.dumps(to_dict(ev)))["ranking"]["order"][0] == "perfect"


def test_no_real_difference_is_said_plainly():
    rng = np.random.default_rng(2)
    per_query = {("image", "c", "precision", 1, m): rng.integers(0, 2, 30).astype(float) for m in "abc"}
    r = rank_models(list("abc"), per_query, 300, 0)
    assert "no model is really better than another" in r.verdict and not any(p["real"] for p in r.pairs)


def test_figures_only_some_models_have_are_ranked_among_those():
    v = np.linspace(0, 1, 40)
    per_query = {("image", "c", "precision", 1, "a"): v, ("image", "c", "precision", 1, "b"): v * 0.5,
                 ("image", "c", "precision", 1, "c"): v * 0.2, ("text", "t", "mrr", None, "a"): v,
                 ("text", "t", "mrr", None, "b"): v * 0.9}
    r = rank_models(["a", "b", "c"], per_query, 200, 0)
    text = next(f for f in r.figures if f["task"] == "text")
    assert [x["model"] for x in text["ranking"]] == ["a", "b"]
    assert len([p for p in r.pairs if p["task"] == "text"]) == 1


@pytest.fixture(scope="module")
def four_model_store(_tiny_store_master, tmp_path_factory):
    """The drawn catalog embedded with tiny-siglip, tiny-cnn and effnet-lite0 (real weights), plus a
    fourth 'model' whose vectors are the labels themselves (an oracle), all in one store."""
    from vrec.ingest.embed import embed
    from vrec.store.store import Store
    from vrec.store.writer import ModelWriter

    path = tmp_path_factory.mktemp("four") / "store"
    shutil.copytree(_tiny_store_master, path)
    embed(SAMPLE, models=["effnet-lite0"], store=path, metadata=SAMPLE / "catalog.csv", batch_size=16)
    st = Store(path)
    ms = st.model("tiny-cnn")
    items = ms.items()
    codes = pd.Categorical(items["id"].str.split("/").str[0]).codes  # ids are FOLDER/NAME, the folder its category
    v = np.eye(codes.max() + 1, dtype=np.float32)[codes] + 0.01 * np.random.default_rng(0).random((len(codes), codes.max() + 1), np.float32)
    cfg = {"name": "oracle", "family": "test", "architecture": "oracle", "weights": "w", "dim": v.shape[1], "preprocess": {}}
    with ModelWriter(st.model_for_writing("oracle"), cfg) as w:
        w.add(items[["id", "path", "hash", "size", "mtime", "width", "height"]], v / np.linalg.norm(v, axis=1, keepdims=True))
    return path


def test_vrec_eval_with_four_models_prints_one_ranked_table(four_model_store, tmp_path):
    r = vrec("eval", "--models", "tiny-cnn,effnet-lite0,tiny-siglip,oracle", "--label", "category", "--k", "1,5",
             "--store", four_model_store, "--bootstrap", "300", "--report", tmp_path / "r.json",
             "--report", tmp_path / "r.md")
    first = r.stdout.splitlines()[0]
    assert first.startswith("Which model for this catalog: oracle"), r.stdout
    assert "Models ranked" in r.stdout and "Every pair" in r.stdout and "Holm" in r.stdout
    assert "oracle > tiny-cnn" in " ".join(r.stdout.split())
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["ranking"]["order"][0] == "oracle" and len(data["ranking"]["pairs"]) >= 6
    md = (tmp_path / "r.md").read_text()
    assert md.splitlines()[0] == data["ranking"]["verdict"] and "## Every pair" in md
