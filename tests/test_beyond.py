"""Beyond-accuracy figures (coverage, in-degree Gini, diversity) and interaction logs as ground truth."""
from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from clihelp import one_error, vrec
from conftest import ROOT, handmade_store

from vrec.experiments.evaluate import evaluate, to_dict
from vrec.experiments.interactions import co_occurrence, score_lists
from vrec.search.beyond import coverage, distinct_labels, gini, in_degree, intra_list_distance, top_hubs

sys.path.insert(0, str(ROOT / "examples"))
from simulate_interactions import simulate  # noqa: E402

# --- the measures on hand-computed cases --------------------------------------------------------

# 4 items; lists of 2 (-1 = no neighbour): item 0 is in three lists, item 3 in none
LISTS = np.array([[1, 2], [0, 2], [0, 1], [0, -1]])


def test_coverage_and_in_degree_by_hand():
    assert in_degree(LISTS, 4).tolist() == [3, 2, 2, 0]
    assert coverage(LISTS, 4) == 0.75
    assert coverage(LISTS[:, :1], 4) == 0.5  # top-1: items 1 and 0


def test_gini_by_hand():
    assert gini([1, 1, 1, 1]) == 0.0
    assert gini([0, 0, 0, 4]) == pytest.approx(0.75)  # (n - 1) / n: all slots on one item
    # [3, 2, 2, 0]: sorted 0,2,2,3; sum (2i-n-1) x = -3*0 -1*2 +1*2 +3*3 = 9; / (4 * 7)
    assert gini(in_degree(LISTS, 4)) == pytest.approx(9 / 28)
    assert np.isnan(gini([0, 0]))


def test_top_hubs_most_listed_first():
    assert top_hubs(LISTS, 4, top=2) == [(0, 3), (1, 2)]  # ties by position
    assert top_hubs(LISTS, 4) == [(0, 3), (1, 2), (2, 2)]  # never an item no list shows


def test_intra_list_distance_by_hand():
    v = np.array([[1, 0], [0, 1], [1, 1], [-1, 0]], float)  # 0 ⟂ 1, 2 at 45°, 3 opposite 0
    d = intra_list_distance(np.array([[0, 1], [0, 2], [0, 3], [0, -1]]), v)
    assert d[0] == pytest.approx(1.0)
    assert d[1] == pytest.approx(1 - np.sqrt(0.5))
    assert d[2] == pytest.approx(2.0)
    assert np.isnan(d[3])  # one item: no pair
    three = intra_list_distance(np.array([[0, 1, 2]]), v)[0]
    assert three == pytest.approx(((1 - 0) + 2 * (1 - np.sqrt(0.5))) / 3)


def test_distinct_labels_per_list():
    labels = np.array(["a", "b", "a", ""], dtype=object)
    assert distinct_labels(np.array([[0, 2], [0, 1], [3, -1], [1, 3]]), labels).tolist() == [1, 2, 0, 1]


# --- in vrec eval -------------------------------------------------------------------------------

def _clusters(tmp_path, hub: bool = False):
    """12 items in 3 categories of 4; 'aligned' places each category on its own axis, 'random' anywhere."""
    rng = np.random.default_rng(0)
    cat = np.repeat([0, 1, 2], 4)
    aligned = np.eye(3)[cat] + 0.05 * rng.normal(size=(12, 3))
    rand = rng.normal(size=(12, 3))
    ids = [f"p{i:02d}" for i in range(12)]
    meta = pd.DataFrame({"id": ids, "category": np.array(["bags", "shoes", "watches"])[cat],
                         "title": [f"Product {i}" for i in range(12)]})
    return handmade_store(tmp_path / "store", {"aligned": aligned, "random": rand}, metadata=meta, ids=ids), ids, meta


def test_eval_reports_coverage_gini_and_diversity_per_model(tmp_path):
    store, ids, meta = _clusters(tmp_path)
    ev = evaluate(["aligned", "random"], labels=["category"], ks=[3], store=store, n_boot=50)
    got = {(m.metric, m.label, m.model): m for m in ev.metrics if m.task == "beyond"}
    for model in ("aligned", "random"):
        assert 0 < got[("coverage", "catalog", model)].value <= 1
        assert 0 <= got[("gini", "catalog", model)].value < 1
    # aligned: each list is the 3 other items of its category -> 1 distinct category, every item listed 3 times
    assert got[("distinct", "category", "aligned")].value == 1.0
    assert got[("coverage", "catalog", "aligned")].value == 1.0
    assert got[("gini", "catalog", "aligned")].value == pytest.approx(0.0)
    assert got[("distinct", "category", "random")].value > 1.0
    div = got[("diversity", "cosine", "random")]
    assert div.value > got[("diversity", "cosine", "aligned")].value  # same ruler: aligned's vectors
    assert div.ci[0] <= div.value <= div.ci[1]
    assert any("aligned's vectors" in n for n in ev.notes)
    assert {h["model"] for h in ev.hubs} == {"aligned", "random"}
    assert ev.hubs[0]["title"].startswith("Product")
    comp = [c for c in ev.comparisons if c["task"] == "beyond" and c["metric"] == "diversity"]
    assert comp and comp[0]["winner"] in ("more diverse: random", "tie", "more diverse: aligned")
    json.dumps(to_dict(ev), allow_nan=False)


# --- interaction logs ---------------------------------------------------------------------------

def _brute_force(log: pd.DataFrame, ids, weights, ks, neighbours):
    """Relevance and metrics from their definitions, with Python loops."""
    pos = {i: p for p, i in enumerate(ids)}
    rel = {}
    for _, s in log[log["item"].isin(pos)].groupby("session"):
        w = {}
        for it, ev in zip(s["item"], s["event"]):
            w[pos[it]] = max(w.get(pos[it], 0), weights.get(ev, 1.0))
        for a in w:
            for b in w:
                if a != b:
                    rel[(a, b)] = rel.get((a, b), 0) + w[b]
    out = {}
    queries = sorted({a for a, _ in rel})
    for q in queries:
        gains = [rel.get((q, j), 0) for j in neighbours[q]]
        ideal = sorted((v for (a, _), v in rel.items() if a == q), reverse=True)
        for k in ks:
            dcg = sum(g / np.log2(r + 2) for r, g in enumerate(gains[:k]))
            idcg = sum(g / np.log2(r + 2) for r, g in enumerate(ideal[:k]))
            out.setdefault(("ndcg", k), []).append(dcg / idcg)
            out.setdefault(("hit", k), []).append(float(any(g > 0 for g in gains[:k])))
        first = next((r for r, g in enumerate(gains) if g > 0), None)
        out.setdefault(("mrr", None), []).append(0.0 if first is None else 1 / (first + 1))
    return queries, {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("pair_batch", [7, 2_000_000])
def test_interaction_metrics_match_a_brute_force_reference(tmp_path, monkeypatch, pair_batch):
    from vrec.experiments import interactions

    monkeypatch.setattr(interactions, "PAIR_BATCH", pair_batch)  # tiny: many pair batches, merges, row blocks
    rng = np.random.default_rng(3)
    ids = [f"i{j}" for j in range(15)]
    n_ev = 400
    log = pd.DataFrame({"session": rng.integers(0, 60, n_ev).astype(str), "item": rng.choice(ids + ["ghost"], n_ev),
                        "event": rng.choice(["view", "view", "cart", "purchase", "wishlist"], n_ev),
                        "timestamp": rng.integers(0, 10_000, n_ev)})
    path = tmp_path / "log.csv"
    log.to_csv(path, index=False)
    neighbours = np.array([rng.permutation([j for j in range(15) if j != q])[:5] for q in range(15)])
    weights = {"view": 1.0, "cart": 3.0, "purchase": 5.0}
    # small chunks and several partitions: sessions are split over chunks and must still meet
    rel = co_occurrence(path, ids, weights=weights, chunk_rows=37, partitions=4)
    got = score_lists(rel, neighbours, [1, 3, 5])
    queries, want = _brute_force(log, ids, weights, [1, 3, 5], neighbours)
    assert got[("queries", None)].tolist() == queries
    for key, v in want.items():
        np.testing.assert_allclose(got[key], v, err_msg=str(key))
    assert rel.stats["unknown_items"] == int((log["item"] == "ghost").sum())
    assert any("wishlist" in n for n in rel.notes)


def test_session_gap_splits_a_users_log_into_visits(tmp_path):
    log = pd.DataFrame({"user": ["u"] * 4, "item": ["a", "b", "c", "d"], "event": "view",
                        "timestamp": ["2026-01-01T10:00:00Z", "2026-01-01T10:05:00Z", "2026-01-02T10:00:00Z",
                                      "2026-01-02T10:01:00Z"]})
    path = tmp_path / "log.csv"
    log.to_csv(path, index=False)
    whole = co_occurrence(path, list("abcd"))  # no session column: the user is the session
    assert whole.matrix.nnz == 12
    visits = co_occurrence(path, list("abcd"), session_gap=30)
    assert sorted(zip(*visits.matrix.nonzero())) == [(0, 1), (1, 0), (2, 3), (3, 2)]


def test_cold_start_slice_holds_rare_and_late_items(tmp_path):
    rows = [("s1", "a", 0), ("s1", "b", 1), ("s2", "a", 2), ("s2", "b", 3)] * 3 + [("s9", "c", 100), ("s9", "a", 100)]
    path = tmp_path / "log.csv"
    pd.DataFrame(rows, columns=["session", "item", "timestamp"]).to_csv(path, index=False)
    rel = co_occurrence(path, ["a", "b", "c", "d"], cold_events=3)
    assert rel.cold.tolist() == [False, False, True, False]  # c: one event, first seen at the end
    assert any("no event column" in n for n in rel.notes)


def _planted_store(tmp_path):
    """60 items in 6 categories; three models whose neighbours share the category more or less."""
    rng = np.random.default_rng(1)
    cat = np.repeat(np.arange(6), 10)
    onehot = np.eye(6)[cat]
    models = {"good": onehot + 0.1 * rng.normal(size=(60, 6)),
              "fair": onehot + 0.6 * rng.normal(size=(60, 6)),
              "poor": rng.normal(size=(60, 6))}
    ids = [f"item{i:02d}" for i in range(60)]
    meta = pd.DataFrame({"id": ids, "category": [f"c{c}" for c in cat]})
    return handmade_store(tmp_path / "store", models, metadata=meta, ids=ids), ids, meta


def test_the_simulated_log_recovers_its_planted_ranking(tmp_path):
    store, ids, meta = _planted_store(tmp_path)
    log = simulate(ids, meta["category"], sessions=800, seed=7)
    assert not log.groupby("session").size().empty
    assert (log["session"] != log["session"].sort_values().to_numpy()).any()  # rows shuffled
    path = tmp_path / "events.csv"
    log.to_csv(path, index=False)
    ev = evaluate(["good", "fair", "poor"], ks=[5], store=store, interactions=str(path), n_boot=200)
    ndcg = {m.model: m for m in ev.metrics if m.task == "interactions" and m.metric == "ndcg" and m.label == "all"}
    assert ndcg["good"].value > ndcg["fair"].value > ndcg["poor"].value
    assert ndcg["good"].ci[0] > ndcg["poor"].ci[1]
    pair = evaluate(["good", "poor"], ks=[5], store=store, interactions=str(path), n_boot=200)
    c = next(c for c in pair.comparisons if c["task"] == "interactions" and c["metric"] == "ndcg" and c["label"] == "all")
    assert c["winner"] == "good" and c["excludes_zero"]
    assert any(m.label == "cold-start" and m.queries > 0 for m in ev.metrics if m.task == "interactions")


def test_cli_eval_interactions_prints_the_metrics_and_refuses_bad_options(tmp_path):
    store, ids, meta = _planted_store(tmp_path)
    path = tmp_path / "events.csv"
    simulate(ids, meta["category"], sessions=300, seed=2).to_csv(path, index=False)
    r = vrec("eval", "--models", "good,poor", "--interactions", path, "--k", "5", "--bootstrap", "50",
             "--store", store, "--report", tmp_path / "r.md", "--report", tmp_path / "r.json")
    assert "interactions" in r.stdout and "nDCG@5" in r.stdout and "cold-start" in r.stdout
    assert "coverage@5" in r.stdout and "Gini" in r.stdout and "over-recommended" in r.stdout
    md = (tmp_path / "r.md").read_text()
    assert "interactions" in md and "Most over-recommended items" in md
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["hubs"] and any(m["task"] == "interactions" for m in data["metrics"])
    one_error(vrec("eval", "--models", "good", "--interactions", path, "--interaction-columns", "item=sku",
                   "--store", store, ok=False), "no 'sku' column")
    one_error(vrec("eval", "--models", "good", "--interactions", path, "--event-weights", "view",
                   "--store", store, ok=False), "--event-weights takes NAME=VALUE")
    one_error(vrec("eval", "--models", "good", "--interactions", tmp_path, "--store", store, ok=False), "is a folder")
    no_time = tmp_path / "no-time.csv"
    pd.read_csv(path).drop(columns="timestamp").to_csv(no_time, index=False)
    one_error(vrec("eval", "--models", "good", "--interactions", no_time, "--session-gap", "30", "--store", store,
                   ok=False), "--session-gap splits sessions by time")


@pytest.mark.slow
def test_eval_on_the_fashion_sample_prints_coverage_gini_and_diversity(fashion_store):
    r = vrec("eval", "--models", "effnet-lite0,tiny-siglip", "--label", "articleType", "--k", "10",
             "--bootstrap", "100", "--store", fashion_store)
    for model in ("effnet-lite0", "tiny-siglip"):
        assert model in r.stdout
    for what in ("coverage@10", "in-degree Gini@10", "intra-list distance@10", "distinct values per list@10",
                 "Most over-recommended items"):
        assert what in r.stdout, what



@pytest.mark.slow
def test_the_simulated_log_ranks_the_models_like_their_labels_on_the_fashion_sample(fashion_store, tmp_path):
    """The simulator's planted answer on real photos: sessions browse articleType, so effnet-lite0
    (real weights, neighbours mostly of the query's type) beats the random-weight tiny-siglip."""
    from vrec.store.catalog_table import catalog_table
    from vrec.store.store import Store

    st = Store(fashion_store)
    table = catalog_table(st, st.model("effnet-lite0"))
    log = tmp_path / "sim.csv"
    simulate(table["id"], table["articleType"].astype("string").fillna(""), sessions=1500, seed=7).to_csv(log, index=False)
    ev = evaluate(["effnet-lite0", "tiny-siglip"], ks=[5], store=fashion_store, interactions=str(log), n_boot=200)
    c = next(c for c in ev.comparisons if c["task"] == "interactions" and c["metric"] == "ndcg" and c["label"] == "all")
    assert c["winner"] == "effnet-lite0" and c["excludes_zero"]


# --- vrec compare --summary and vrec ab arms ---------------------------------------------------

def test_compare_summary_and_ab_arms_show_the_same_figures_as_eval(tmp_path):
    store, ids, meta = _clusters(tmp_path)
    ev = evaluate(["aligned", "random"], labels=["category"], ks=[3], store=store, n_boot=50)
    want = {(m.model, m.metric): m.value for m in ev.metrics if m.task == "beyond"}
    r = vrec("compare", "--left", "aligned", "--right", "random", "--summary", "--k", "3", "--label", "category",
             "--format", "json", "--store", store)
    got = json.loads(r.stdout)["summary"]
    for row in got["beyond"]:
        assert row["coverage"] == pytest.approx(want[(row["model"], "coverage")])
        assert row["gini"] == pytest.approx(want[(row["model"], "gini")])
        assert row["diversity"] == pytest.approx(want[(row["model"], "diversity")])
        assert row["distinct"] == pytest.approx(want[(row["model"], "distinct")])
    assert got["hubs"][0]["title"].startswith("Product")
    table = vrec("compare", "--left", "aligned", "--right", "random", "--summary", "--k", "3", "--store", store).stdout
    assert "Beyond accuracy@3" in table and "Most over-recommended items" in table
    page = tmp_path / "c.html"
    vrec("compare", "--left", "aligned", "--right", "random", "--summary", "--k", "3", "--store", store, "--html", page)
    assert "Beyond accuracy@3" in page.read_text()
    arms = json.loads(vrec("ab", "arms", "--arms", "aligned,random", "--k", "3", "--label", "category", "--format",
                           "json", "--store", store).stdout)
    for row in arms["beyond"]:
        assert row["coverage"] == pytest.approx(want[(row["arm"], "coverage")])
        assert row["gini"] == pytest.approx(want[(row["arm"], "gini")])
        assert row["diversity"] == pytest.approx(want[(row["arm"], "diversity")])
        assert row["diversity_ci"][0] <= row["diversity"] <= row["diversity_ci"][1]
        assert row["distinct"] == pytest.approx(want[(row["arm"], "distinct")])
    text = vrec("ab", "arms", "--arms", "aligned,random", "--k", "3", "--store", store).stdout
    assert "in-degree Gini" in text and "Most over-recommended items" in text


def test_a_parquet_log_gives_the_same_relevance_as_its_csv(tmp_path):
    rng = np.random.default_rng(5)
    log = pd.DataFrame({"visit": rng.integers(0, 30, 200).astype(str), "sku": rng.choice(list("abcdefgh"), 200),
                        "type": rng.choice(["view", "purchase"], 200)})
    log.to_csv(tmp_path / "log.csv", index=False)
    log.to_parquet(tmp_path / "log.parquet", index=False)
    cols = {"session": "visit", "item": "sku", "event": "type"}
    a = co_occurrence(tmp_path / "log.csv", list("abcdefgh"), cols)
    b = co_occurrence(tmp_path / "log.parquet", list("abcdefgh"), cols, chunk_rows=17)
    assert a.matrix.nnz > 0 and (a.matrix != b.matrix).nnz == 0


def test_a_log_alone_evaluates_text_models_on_their_lists_only(shared_tiny_store, tmp_path):
    meta = pd.read_csv(ROOT / "tests" / "data" / "drawn_catalog" / "catalog.csv")
    log = tmp_path / "events.csv"
    simulate(meta["id"], meta["category"], sessions=200, seed=1).to_csv(log, index=False)
    ev = evaluate(["tiny-siglip", "tiny-cnn"], ks=[5], store=shared_tiny_store, interactions=str(log), n_boot=50)
    assert {m.task for m in ev.metrics} == {"beyond", "interactions"}  # no text query, no zero-shot
    assert {m.model for m in ev.metrics} == {"tiny-siglip", "tiny-cnn"}
