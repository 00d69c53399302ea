"""``vrec eval`` and ``vrec compare`` with awkward input: one clear error line, or a stated rule.

Each refused input must give exit status 1 and exactly one ``Error: ...`` line on stderr, never a
traceback. Where a rule replaces an error (k above the catalog, unlabelled items, labels without a
figure) the known answer is checked.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from clihelp import one_error, vrec
from conftest import handmade_store
from vrec.search.compare import _Pair, compare, sample_items
from vrec.base.errors import QueryError, VrecError
from vrec.experiments.evaluate import (bootstrap_ci, evaluate, template_fields, text_queries_from_file,
                           text_queries_from_template, to_dict)
from vrec.report.render import eval_table, figure


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
    assert ev.table()["value"].isna().all() and (ev.table()["queries"] == 0).all()
    assert not ev.comparisons
    assert any("no image->image figure for uniq" in n for n in ev.notes)
    json.dumps(to_dict(ev), allow_nan=False)  # raises on NaN
    r = vrec("eval", "--models", "semantic,noisy", "--label", "uniq", "--k", "1", "--bootstrap", "20",
             "--store", store6, "--report", tmp_path / "e.json", "--report", tmp_path / "e.md")
    assert "nan" not in r.stdout.lower() and "—" in r.stdout and "no image->image figure" in r.stderr
    data = json.loads((tmp_path / "e.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    assert all(m["value"] is None and m["ci_low"] is None for m in data["metrics"])
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
