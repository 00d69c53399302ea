"""``vrec eval``, ``vrec export`` and ``vrec neighbours``."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from clihelp import one_error, vrec
from conftest import handmade_store

from vrec.base.errors import QueryError, VrecError
from vrec.experiments.evaluate import evaluate, to_dict
from vrec.experiments.metrics import (
    ap_at_k,
    bootstrap_ci,
    hit_at_k,
    ndcg_at_k,
    paired_difference,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
)
from vrec.experiments.text_queries import template_fields, text_queries_from_file, text_queries_from_template
from vrec.report.render import eval_table, figure
from vrec.search.compare import _Pair, compare, sample_items
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
    # every figure has its interval, but coverage and Gini: they describe the whole k-NN graph (null in JSON)
    assert all(m["ci_low"] <= m["value"] <= m["ci_high"] for m in data["metrics"] if m["metric"] not in ("coverage", "gini"))
    assert all(m["ci_low"] is None for m in data["metrics"] if m["metric"] in ("coverage", "gini"))
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


# --- ``vrec eval`` and ``vrec compare`` with awkward input: one clear error line, or a stated rule ---

@pytest.fixture
def store6(tmp_path):
    """Six items: three bags and two shoes, and item5 without a category; 'uniq' is unique per item.

    'semantic' puts the bags together and the shoes together; item5 is the shoes' second
    neighbour. 'noisy' is random. At k=2 the known answers on the five labelled items are:
    semantic 0.8 (bags 1, 1, 1; shoes 0.5, 0.5 as item5 has no label), noisy 0.5.
    """
    meta = pd.DataFrame({"id": [f"item{i}" for i in range(6)],
                         "category": ["bag", "bag", "bag", "shoe", "shoe", None],
                         "uniq": [f"u{i}" for i in range(6)],
                         "title": [f"thing {i}" for i in range(6)]})
    semantic = [[1, 0, 0.1 * i] for i in range(3)] + [[0, 1, 0.1 * i] for i in range(2)] + [[0.5, 0.5, 5]]
    noisy = np.random.default_rng(0).normal(size=(6, 3))
    return handmade_store(tmp_path / "s", {"semantic": semantic, "noisy": noisy}, meta)


# --- 1. numeric options and templates ---------------------------------------------------------

EVAL = ("eval", "--models", "semantic,noisy", "--label", "category", "--bootstrap", "20")


@pytest.mark.parametrize("args, fragment", [
    (("--bootstrap", "0"), "--bootstrap must be between 10 and 100000 (not 0)"),
    (("--bootstrap", "10000000"), "--bootstrap must be between"),
    (("--seed", "-1"), "--seed must be at least 0 (not -1)"),
    (("--k", "0"), "--k must be at least 1 (not 0)"),
    (("--k", "5,-1"), "--k must be at least 1 (not -1)"),
    (("--k", "nan"), "--k takes comma-separated whole numbers"),
    (("--k", ","), "--k takes positive whole numbers"),
    (("--text-template", "plain"), "names no metadata column"),
    (("--text-template", "a {"), "is not well formed"),
    (("--text-template", "a {category!r}"), "not a plain {column} name"),
    (("--text-template", "a {categry}"), "Did you mean 'category'"),
])
def test_eval_refuses_bad_options_in_one_line(store6, args, fragment):
    one_error(vrec(*EVAL, *args, "--store", store6, ok=False), fragment)


def test_eval_without_models(store6):
    r = vrec("eval", "--models", " , ", "--label", "category", "--store", store6, ok=False)
    one_error(r, "Name at least one embedded model")


@pytest.mark.parametrize("args, fragment", [
    (("--seed", "-5"), "--seed must be at least 0 (not -5)"),
    (("--k", "0"), "--k must be at least 1 (not 0)"),
    (("--k", "-1"), "--k must be at least 1 (not -1)"),
    (("--sample", "-1"), "--sample must be between 0 and 200 (not -1)"),
    (("--sample", "100000"), "--sample must be between 0 and 200 (not 100000)"),
])
def test_compare_refuses_bad_options_in_one_line(store6, args, fragment):
    r = vrec("compare", "--left", "noisy", "--right", "semantic", *args, "--store", store6, ok=False)
    one_error(r, fragment)


def test_the_library_refuses_the_same_values(store6):
    with pytest.raises(VrecError, match="finite"):
        evaluate(["semantic"], labels=["category"], ks=[float("nan")], store=store6)
    with pytest.raises(VrecError, match="whole number"):
        evaluate(["semantic"], labels=["category"], ks=[2.5], store=store6)
    with pytest.raises(VrecError, match="--seed"):
        compare(left="noisy", right="semantic", seed=-5, store=store6)


def test_template_fields():
    assert template_fields("a {baseColour} {articleType}") == ["baseColour", "articleType"]
    assert template_fields("{{literal}} {a} and {a}") == ["a"]
    for bad in ("plain", "a {", "a }", "{}", "{a:>5}"):
        with pytest.raises(QueryError):
            template_fields(bad)
    table = pd.DataFrame({"id": ["x", "y", "z"], "c": ["red", "blue", "red"]})
    qs = dict(text_queries_from_template(table, "{{{c}}} thing"))
    assert set(qs) == {"{red} thing", "{blue} thing"} and list(qs["{red} thing"]) == [True, False, True]


# --- 2. queries files -------------------------------------------------------------------------

def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, fragment", [
    ("query,relevant_ids\na red bag,\n", "neither relevant_ids nor a filter"),
    ("query,relevant_ids\na red bag,nope;nada\n", "none of its relevant_ids (nope, nada)"),
    ("query,filter\na bag,category=hats\n", "its filter 'category=hats' matches no item"),
    ("query,relevant_ids\n", "has no queries"),
    ("", "is empty"),
    ("query,ids\na,b\n", "needs a 'query' column and a 'relevant_ids' or 'filter' column"),
    ("query,filter\na bag,categry=bag\n", "row 1 ('a bag')"),
])
def test_unusable_queries_files_are_one_error(store6, tmp_path, text, fragment):
    # the check happens on the metadata, before any model: here no model even has a text tower
    r = vrec("eval", "--models", "semantic", "--queries", write(tmp_path, "q.csv", text), "--store", store6, ok=False)
    one_error(r, fragment)


def test_a_queries_file_skips_bad_rows_with_notes(store6, tmp_path):
    path = write(tmp_path, "q.csv", "query,relevant_ids,filter\n"
                                    "a bag,item0;ghost,\n"      # one unknown id: scored on item0
                                    "nothing,,\n"               # no ids, no filter: skipped
                                    ",item1,\n"                 # no text: skipped
                                    "shoes,,category=shoe\n"    # a filter
                                    "hats,,category=hat\n")     # matches nothing: skipped
    table = pd.DataFrame({"id": [f"item{i}" for i in range(6)],
                          "category": ["bag", "bag", "bag", "shoe", "shoe", ""]})
    notes: list[str] = []
    qs = text_queries_from_file(table, path, notes)
    assert [t for t, _ in qs] == ["a bag", "shoes"]
    assert list(qs[0][1]) == [True] + [False] * 5 and list(qs[1][1]) == [False] * 3 + [True, True, False]
    assert any("row 1 ('a bag'): 1 of its 2 relevant_ids" in n and "ghost" in n for n in notes)
    assert sum("row skipped" in n for n in notes) == 3
    assert any("uses 2 of the 5 queries" in n for n in notes)


def test_text_queries_need_a_text_model(store6, tmp_path):
    path = write(tmp_path, "q.csv", "query,relevant_ids\na bag,item0\n")
    one_error(vrec("eval", "--models", "semantic", "--queries", path, "--store", store6, ok=False),
                     "need a model with a text tower")


# --- 3. one k rule for per-item and summary ---------------------------------------------------

def test_compare_k_above_the_catalog_is_lowered_in_both_modes(store6):
    c = compare(["item0"], left="noisy", right="semantic", k=100, store=store6, summary=True)
    assert c.k == 5 and c.summary.k == 5
    q = c.queries[0]
    assert len(q.left.table) == len(q.right.table) == 5
    assert q.overlap == 1.0  # both lists are the 5 other items
    assert c.summary.mean_overlap == 1.0
    assert any("--k 100 is more than the 5 other items" in n for n in c.notes)
    r = vrec("compare", "item0", "--k", "100", "--left", "noisy", "--right", "semantic", "--store", store6)
    assert "overlap@5: 1.00" in r.stdout and "overlap@100" not in r.stdout


def test_eval_k_above_the_catalog_equals_k_of_all_other_items(store6):
    ev = evaluate(["semantic"], labels=["category"], ks=[5, 10 ** 6], store=store6, n_boot=20)
    t = ev.table().set_index(["metric", "k"])
    for metric in ("precision", "recall", "map", "ndcg"):
        assert t.loc[(metric, 10 ** 6), "value"] == pytest.approx(t.loc[(metric, 5), "value"])
    assert t.loc[("precision", 5), "value"] == pytest.approx((2 / 5 * 3 + 1 / 5 * 2) / 5)
    assert any("k=1000000 is more than the 5 other items" in n for n in ev.notes)


# --- 4. one rule for unlabelled items ---------------------------------------------------------

def test_unlabelled_items_are_left_out_of_label_agreement_as_in_eval(store6):
    c = compare(left="noisy", right="semantic", k=2, label="category", store=store6, sample=0, summary=True)
    s = c.summary
    assert s.labelled == 5 and s.items == 6
    assert s.right_agreement == pytest.approx(0.8)  # not 4/6: item5 is left out, not counted as zero
    assert set(s.per_label["category"]) == {"bag", "shoe"}
    assert any("over the 5 of 6 items" in n and "left out" in n for n in c.notes)
    ev = evaluate(["noisy", "semantic"], labels=["category"], ks=[2], store=store6, n_boot=20)
    p2 = ev.table().query("metric == 'precision'").set_index("model")["value"]
    assert p2["semantic"] == pytest.approx(s.right_agreement) and p2["noisy"] == pytest.approx(s.left_agreement)
    r = vrec("compare", "--summary", "--k", "2", "--label", "category", "--left", "noisy", "--right", "semantic",
             "--store", store6)
    assert "left out" in r.stdout and "0.800" in r.stdout


def test_a_sample_larger_than_the_labelled_items_ends(store6):
    """It used to loop forever when the sample exceeded the labelled items."""
    pair = _Pair(store6, "noisy", "semantic")
    picks = sample_items(pair, 6, 0, "category")
    assert sorted(picks) == list(range(6)) and picks[-1] == 5  # labelled first, then the unlabelled item
    c = compare(left="noisy", right="semantic", k=2, sample=6, label="category", store=store6)
    assert [q.label for q in c.queries].count(None) == 1


# --- 5. a label without a figure --------------------------------------------------------------

def test_a_label_of_unique_values_has_no_figure_and_valid_json(store6, tmp_path):
    ev = evaluate(["semantic", "noisy"], labels=["uniq"], ks=[1], store=store6, n_boot=20)
    image = ev.table()[ev.table()["task"] == "image"]
    assert image["value"].isna().all() and (image["queries"] == 0).all()
    assert not [c for c in ev.comparisons if c["task"] == "image"]
    assert any("no image->image figure for uniq" in n for n in ev.notes)
    json.dumps(to_dict(ev), allow_nan=False)  # raises on NaN
    r = vrec("eval", "--models", "semantic,noisy", "--label", "uniq", "--k", "1", "--bootstrap", "20",
             "--store", store6, "--report", tmp_path / "e.json", "--report", tmp_path / "e.md")
    assert "nan" not in r.stdout.lower() and "—" in r.stdout and "no image->image figure" in r.stderr
    data = json.loads((tmp_path / "e.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    assert all(m["value"] is None and m["ci_low"] is None for m in data["metrics"] if m["task"] == "image")
    assert "nan" not in (tmp_path / "e.md").read_text().lower()


def test_compare_agreement_without_a_figure(store6):
    c = compare(left="noisy", right="semantic", k=2, label="uniq", store=store6, sample=0, summary=True)
    assert c.summary.labelled == 0 and c.summary.left_agreement is None
    assert any("no label agreement figure" in n for n in c.notes)
    r = vrec("compare", "--summary", "--label", "uniq", "--left", "noisy", "--right", "semantic", "--store", store6,
             "--format", "json")
    assert json.loads(r.stdout)["summary"]["left_agreement"] is None


# --- 6. values and intervals rounded alike ----------------------------------------------------

def test_figure_rounds_value_and_interval_alike():
    assert figure(0.0166, 0.0151, 0.0204) == ("0.017", "0.015–0.020")
    assert figure(0.0123, -0.004, 0.03, sep=", ", signed=True) == ("+0.012", "-0.004, +0.030")
    assert figure(float("nan"), float("nan"), float("nan")) == ("—", "")


def test_eval_table_intervals_have_the_values_precision(store6):
    from rich.console import Console

    ev = evaluate(["semantic", "noisy"], labels=["category"], ks=[1, 2], store=store6, n_boot=50)
    console = Console(width=200, record=True)
    console.print(eval_table(ev))
    text = console.export_text()
    pairs = re.findall(r"([+-]?\d\.\d+) ([+-]?\d\.\d+)–([+-]?\d\.\d+)", text)
    assert len(pairs) >= 8
    assert all(len(x.split(".")[1]) == 3 for p in pairs for x in p), pairs


def test_bootstrap_in_chunks_draws_the_same_resamples(monkeypatch):
    import sys

    evaluate_module = sys.modules[bootstrap_ci.__module__]  # vrec.evaluate is the function at package level
    v = np.random.default_rng(1).random(37)
    whole = bootstrap_ci(v, 500, seed=4)
    monkeypatch.setattr(evaluate_module, "_BOOT_CELLS", 37 * 7)  # 7 resamples at a time
    assert bootstrap_ci(v, 500, seed=4) == whole
    assert bootstrap_ci(np.full(9, 0.25), 100) == (0.25, 0.25)


# --- 7. report paths checked before the evaluation --------------------------------------------

@pytest.mark.parametrize("bad, fragment", [
    ("folder", "is a folder"),
    ("afile/e.json", "is not a folder"),
    ("e.txt", "Unknown report type '.txt'"),
    ("x.md", "x_charts' is a file"),
])
def test_an_unwritable_report_is_refused_before_anything_is_written(store6, tmp_path, bad, fragment):
    out = tmp_path / "out"
    (out / "folder").mkdir(parents=True)
    (out / "afile").write_text("")
    (out / "x_charts").write_text("")
    before = sorted(p.name for p in out.rglob("*"))
    r = vrec(*EVAL, "--store", store6, "--report", out / "ok.json", "--report", out / bad, ok=False)
    one_error(r, fragment)
    assert r.stdout == ""  # refused before the evaluation ran
    assert sorted(p.name for p in out.rglob("*")) == before  # not even the good report
