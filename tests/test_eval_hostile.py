"""vrec eval's new options given wrong input by a user: each is one clear error saying what to do."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from clihelp import fails, vrec

from vrec.base.errors import QueryError
from vrec.experiments.interactions import co_occurrence
from vrec.experiments.many_models import rank_models


def test_an_unknown_language_column_lists_the_text_columns_there_are(shared_tiny_store):
    line = fails("eval", "--models", "tiny-siglip", "--language-columns", "en=title,sv=titel",
                 "--store", shared_tiny_store, says="No column 'titel'")
    assert "Name a text column it has:" in line and "title" in line and "category" in line
    assert "hash" not in line and "path" not in line  # vrec's own columns are no language's text


@pytest.mark.parametrize("args, says", [
    (["--models", "tiny-siglip,tiny-cnn,tiny-siglip", "--label", "category"], "names 'tiny-siglip' twice"),
    (["--models", "tiny-siglip", "--language-columns", "en=title,sv=title"], "names column 'title' for two languages"),
])
def test_a_model_or_a_language_column_named_twice_is_refused_not_quietly_merged(shared_tiny_store, args, says):
    fails("eval", *args, "--store", shared_tiny_store, says=says)


def _log(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize("name,content,says", [
    ("garbled.csv", 'session,item\n"s1,a\n', "Cannot read the interaction log"),
    ("bad.parquet", b"PAR1 not parquet at all", "as Parquet"),
    ("empty-log.csv", "session,item,event,timestamp\n", "holds no events"),
    ("other-ids.csv", "session,item\ns1,zz-1\ns1,zz-2\n", "names an item of the evaluated catalog"),
    ("bad-times.csv", "session,item,timestamp\ns1,a,soon\ns1,b,later\n", "readable 'timestamp'"),
])
def test_an_unusable_interaction_log_is_one_clear_error(tmp_path, name, content, says):
    with pytest.raises(QueryError, match=says):
        co_occurrence(_log(tmp_path, name, content), ["cat/a", "cat/b", "cat/c"])


def test_a_log_of_the_shops_short_ids_matches_the_catalogs_folder_ids(tmp_path):
    log = _log(tmp_path, "log.csv", "session,item\ns1,bag-red\ns1,bag-blue\ns2,bag-red\ns2,cat/shoe\n")
    rel = co_occurrence(log, ["bags/bag-red", "bags/bag-blue", "cat/shoe"])
    assert rel.stats["kept"] == 4 and rel.stats["unknown_items"] == 0
    assert rel.matrix[0, 1] == 1 and rel.matrix[0, 2] == 1


def test_a_log_of_other_ids_names_one_of_each_on_the_command_line(shared_tiny_store, tmp_path):
    log = _log(tmp_path, "log.csv", "session,item\ns1,SKU-1\ns1,SKU-2\n")
    line = fails("eval", "--models", "tiny-cnn", "--interactions", log, "--store", shared_tiny_store,
                 says="'SKU-1'")
    assert "bags/" in line and "--interaction-columns item=COLUMN" in line


def test_tuning_on_a_language_of_one_query_is_a_note_and_notes_keep_their_brackets(tiny_store, tmp_path):
    vrec("index", "--store", tiny_store)
    pd.DataFrame({"query": ["red bag", "black watch", "röd väska"],
                  "filter": ["category=bags", "category=watches", "category=bags"],
                  "lang": ["en", "en", "sv"]}).to_csv(tmp_path / "q.csv", index=False)
    r = vrec("eval", "--models", "tiny-siglip", "--queries", tmp_path / "q.csv", "--search-modes",
             "--tune-keyword-weight", "--bootstrap", "20", "--store", tiny_store)
    err = " ".join(r.stderr.split())
    assert "file [sv]: one query, so --tune-keyword-weight has no half" in err  # was: an error ending the eval
    assert "file [en]: --tune-keyword-weight chose w =" in err  # '[en]' printed, not eaten as markup


def test_label_queries_note_that_the_keyword_index_holds_their_column(tiny_store):
    vrec("index", "--store", tiny_store)
    r = vrec("eval", "--models", "tiny-siglip", "--label", "category", "--search-modes", "--bootstrap", "20",
             "--store", tiny_store)
    assert "category: the keyword index holds the 'category' column" in " ".join(r.stderr.split())


def test_too_few_resamples_for_holm_say_so_instead_of_calling_a_clear_difference_noise():
    rng = np.random.default_rng(0)
    good, bad = np.ones(50), rng.integers(0, 2, 50) * 0.0  # one model finds everything, the others nothing
    per_query = {("image", "c", "precision", 1, m): v for m, v in (("a", good), ("b", bad), ("c", bad.copy()))}
    coarse = rank_models(list("abc"), per_query, 100, 0)  # smallest p 2/101, x3 pairs (Holm) = 0.059
    assert "undecided" in coarse.verdict and "--bootstrap 1000" in coarse.verdict
    assert "noise" not in coarse.verdict
    fine = rank_models(list("abc"), per_query, 1000, 0)
    assert fine.verdict.startswith("Which model for this catalog: a — really better")


def test_search_modes_on_a_store_that_is_not_there_says_so(tmp_path):
    fails("eval", "--models", "tiny-siglip", "--search-modes", "--text-queries-from", "title",
          "--store", tmp_path / "nowhere", says="No vrec store at")


@pytest.mark.parametrize("models,says", [
    ("sig lip,tiny-cnn", "has characters no model name has"),  # checked as a name, not 'run vrec embed --model sig lip'
    ("hf-hub:a/b/c,tiny-cnn", "does not name a Hugging Face repository"),
    ("TINY-SIGLIP,tiny-cnn", "Did you mean 'tiny-siglip'?"),  # the same name in another case
])
def test_eval_models_with_a_malformed_or_miscased_name(shared_tiny_store, models, says):
    fails("eval", "--models", models, "--label", "category", "--store", shared_tiny_store, says=says)


def test_ab_arms_with_a_name_no_model_can_have_is_not_told_to_embed_it(shared_tiny_store):
    line = fails("ab", "arms", "--arms", "sig lip,tiny-cnn", "--store", shared_tiny_store, says="check the name")
    assert "vrec embed" not in line


@pytest.mark.parametrize("args,says", [
    (["--label", "categry"], "Did you mean 'category'?"),
    (["--label", "category", "--sessions", "0"], "--sessions must be at least 1"),
    (["--label", "category", "--model", "nosuch"], "has no vectors"),
    (["--label", "category", "--out", "/nonexistent-dir/x.csv"], "its folder does not exist"),
])
def test_the_simulation_example_refuses_bad_arguments_in_one_line(shared_tiny_store, tmp_path, capsys, args, says):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from simulate_interactions import main

    with pytest.raises(SystemExit) as e:
        main(["--store", str(shared_tiny_store), "--out", str(tmp_path / "x.csv"), *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and says in err and "Traceback" not in err
