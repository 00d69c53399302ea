"""Queries in several languages: per-language R@k from a queries file's ``lang`` column, and the
cross-language protocol on the grocery feed's English and Swedish descriptions."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clihelp import fails, vrec

from vrec.base.errors import QueryError
from vrec.experiments.evaluate import evaluate
from vrec.experiments.languages import parse_language_columns

GROCERY = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "grocery-products"


def test_language_columns_are_parsed_and_bad_ones_refused():
    assert parse_language_columns("en=description, SV=description_sv") == {"en": "description", "sv": "description_sv"}
    assert parse_language_columns(None) == {}
    for bad, says in (("en=description", "at least two"), ("en=a,en=b", "twice"), ("description", "LANG=COLUMN"),
                      ("english language=a,sv=b", "LANG=COLUMN"), ("en=,sv=b", "LANG=COLUMN")):
        with pytest.raises(QueryError, match=says):
            parse_language_columns(bad)


def test_a_queries_file_with_a_lang_column_gives_figures_per_language(shared_tiny_store, tmp_path):
    pd.DataFrame({"query": ["a red bag", "en röd väska", "a watch", "en klocka", "a shoe"],
                  "filter": ["category=bags", "category=bags", "category=watches", "category=watches", "category=shoes"],
                  "lang": ["en", "sv", "en", "SV ", ""]}).to_csv(tmp_path / "q.csv", index=False)
    ev = evaluate(["tiny-siglip"], queries=str(tmp_path / "q.csv"), ks=[1, 60], store=shared_tiny_store, n_boot=50)
    t = ev.table().set_index(["label", "metric", "k"])
    assert t.loc[("file", "recall", 60), "queries"] == 5
    assert t.loc[("file [en]", "recall", 60), "queries"] == 2 and t.loc[("file [sv]", "recall", 60), "queries"] == 2
    assert t.loc[("file [sv]", "recall", 60), "value"] == 1.0  # the whole catalog: every query finds its items
    assert any("1 rows have no lang" in n for n in ev.notes) and any("per query language (en, sv)" in n for n in ev.notes)


@pytest.fixture(scope="module")
def grocery_store(tmp_path_factory):
    """The grocery feed's packaged products (English and Swedish descriptions), packshots only,
    embedded with tiny-siglip."""
    if not (GROCERY / "feed.csv").is_file():
        pytest.skip(f"{GROCERY} is absent (the shared datasets are not in a user's checkout)")
    from vrec.ingest.embed import embed

    tmp = tmp_path_factory.mktemp("grocery-lang")
    feed = pd.read_csv(GROCERY / "feed.csv", dtype=str, keep_default_na=False)
    feed = feed[feed["description_sv"] != ""].copy()
    feed["image_link"] = [str(GROCERY / p) for p in feed["image_link"]]
    feed["additional_image_link"] = ""
    feed.to_csv(tmp / "feed.csv", index=False)
    embed(tmp / "feed.csv", models=["tiny-siglip"], store=tmp / "st")
    return tmp / "st"


def test_cross_language_protocol_on_the_grocery_feed(grocery_store, tmp_path):
    r = vrec("eval", "--models", "tiny-siglip", "--language-columns", "en=description,sv=description_sv",
             "--store", grocery_store, "--bootstrap", "200", "--report", tmp_path / "r.json")
    out = " ".join(r.stdout.split())
    assert "description [en]" in out and "description_sv [sv]" in out and "Languages compared" in out
    data = json.loads((tmp_path / "r.json").read_text())
    per_lang = {(m["label"], m["metric"], m["k"]): m for m in data["metrics"]}
    en, sv = per_lang[("description [en]", "mrr", None)], per_lang[("description_sv [sv]", "mrr", None)]
    assert en["queries"] == sv["queries"] == 27  # the same 27 packaged products, asked in both languages
    gap = next(g for g in data["language_gaps"] if g["metric"] == "mrr")
    assert (gap["first"], gap["second"]) == ("en", "sv")
    assert gap["difference"] == pytest.approx(en["value"] - sv["value"])
    assert gap["ci"][0] <= gap["difference"] <= gap["ci"][1]


def test_cross_language_errors_name_the_column(grocery_store):
    fails("eval", "--models", "tiny-siglip", "--language-columns", "en=description,sv=beskrivning",
          "--store", grocery_store, says="No column 'beskrivning'")
    fails("eval", "--models", "tiny-siglip", "--language-columns", "en=description", "--store", grocery_store,
          says="at least two")


def test_swedish_queries_reach_the_text_tower_intact(shared_tiny_store):
    """Non-ASCII Swedish queries are encoded as themselves: different words, different vectors."""
    from vrec.search.query import load_encoder
    from vrec.store.store import Store

    enc = load_encoder(Store(shared_tiny_store).model("tiny-siglip"), device="cpu")
    v = enc.encode_texts(["mjölk", "mjolk", "röd väska", "rod vaska"])
    assert not np.allclose(v[0], v[1]) and not np.allclose(v[2], v[3])
