"""Zero-shot tags, style maps and gaps, with a fake encoder whose right answers are known."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clihelp import fails, vrec
from conftest import handmade_store

from vrec.base.errors import CatalogError, VrecError
from vrec.search.query import search_text
from vrec.search.stylemap import auto_k_range, choose_k, kmeans, silhouette, style_map
from vrec.search.tags import gaps, read_vocab, tag
from vrec.store.catalog_table import catalog_table
from vrec.store.store import Store

AXES = ["minimalist", "bohemian", "leather", "denim", "silk"]


class FakeEncoder:
    """Each known concept is one axis; a text names its concept somewhere in the prompt."""

    logit_scale, logit_bias = 10.0, -5.0
    has_text = True

    def encode_texts(self, texts):
        out = np.zeros((len(texts), len(AXES)), np.float32)
        for i, t in enumerate(texts):
            out[i, next(j for j, a in enumerate(AXES) if a in t)] = 1
        return out


@pytest.fixture
def vocab(tmp_path):
    p = tmp_path / "v.txt"
    p.write_text("# test vocabulary\nstyle:\nminimalist\nbohemian\nmaterial: leather\nmaterial: denim\nmaterial: silk\n")
    return p


@pytest.fixture
def catalog(tmp_path):
    """minimalist leather x3, bohemian denim x3, and one minimalist-only item; nothing is silk."""
    e = np.eye(len(AXES))
    v = [e[0] + e[2]] * 3 + [e[1] + e[3]] * 3 + [e[0]]
    rng = np.random.default_rng(0)
    v = np.array(v) + 0.02 * rng.normal(size=(7, len(AXES)))
    meta = pd.DataFrame({"id": [f"item{i}" for i in range(7)], "title": [f"product {i}" for i in range(7)],
                         "category": ["bags"] * 3 + ["dresses"] * 3 + ["bags"], "price": [10, 20, 30, 40, 50, 60, 70]})
    return handmade_store(tmp_path / "s", {"fake": v}, meta)


def test_vocabulary_files_and_builtins(vocab):
    concepts = read_vocab(vocab)
    assert [(c.group, c.name) for c in concepts] == [("style", "minimalist"), ("style", "bohemian"),
                                                      ("material", "leather"), ("material", "denim"), ("material", "silk")]
    fashion = read_vocab("fashion")
    assert {"style", "occasion", "material", "pattern"} <= {c.group for c in fashion}
    assert {"style", "room", "material"} <= {c.group for c in read_vocab("home")}
    with pytest.raises(CatalogError, match="Did you mean 'fashion'"):
        read_vocab("fashon")


def test_a_comma_separates_concepts(tmp_path):
    """Tags are listed comma-separated (table, --csv, --filter tag:), so "red, blue" is two concepts."""
    p = tmp_path / "v.txt"
    p.write_text("colour:\nred, blue\nmaterial: leather , denim,\n")
    assert [(c.group, c.name) for c in read_vocab(p)] == [("colour", "red"), ("colour", "blue"),
                                                          ("material", "leather"), ("material", "denim")]


def test_the_right_tags_win_with_sigmoid_probabilities(catalog, vocab):
    r = tag(model="fake", store=catalog, vocab=[vocab], threshold=0.5, top=2, encoder=FakeEncoder())
    t = r.table.set_index("id")
    assert t.loc["item0", "tags"].split(", ") == ["minimalist", "leather"] or \
        set(t.loc["item0", "tags"].split(", ")) == {"minimalist", "leather"}
    assert set(t.loc["item4", "tags"].split(", ")) == {"bohemian", "denim"}
    assert t.loc["item6", "tags"] == "minimalist"  # no material reaches 0.5
    p = r.long.query("id == 'item0' and tag == 'leather'")["probability"].iloc[0]
    cos = 1 / np.sqrt(2)
    assert p == pytest.approx(1 / (1 + np.exp(-(10 * cos - 5))), abs=0.02)  # sigmoid(scale*cos + bias)


def test_threshold_and_top(catalog, vocab):
    strict = tag(model="fake", store=catalog, vocab=[vocab], threshold=0.99, encoder=FakeEncoder(), save=False)
    assert (strict.table["tags"] == "").sum() >= 6  # only the single-concept item clears 0.99
    one = tag(model="fake", store=catalog, vocab=[vocab], threshold=0.0, top=1, encoder=FakeEncoder(), save=False)
    assert one.long.groupby(["id", "group"]).size().max() == 1  # at most one per group
    assert len(one.long) == 7 * 2
    with pytest.raises(VrecError, match="between 0 and 1"):
        tag(model="fake", store=catalog, vocab=[vocab], threshold=2, encoder=FakeEncoder())
    with pytest.raises(VrecError, match="--top must be a whole number"):
        tag(model="fake", store=catalog, vocab=[vocab], top=1.5, encoder=FakeEncoder())


def test_saved_tags_filter_and_show(catalog, vocab):
    tag(model="fake", store=catalog, vocab=[vocab], threshold=0.5, encoder=FakeEncoder())
    st = Store(catalog)
    t = catalog_table(st, st.model("fake"))
    assert "tags" in t.columns and "leather" in t.set_index("id").loc["item1", "tags"]
    r = search_text("bohemian", model="fake", store=catalog, k=10, filters=["tag:minimalist"], encoder=FakeEncoder())
    assert set(r.table["id"]) == {"item0", "item1", "item2", "item6"} and "tags" in r.table.columns


def test_gaps_find_the_missing_concept(catalog, vocab):
    gap_list, over = gaps(model="fake", store=catalog, vocab=[vocab], threshold=0.5, min_items=2, encoder=FakeEncoder())
    assert [g.concept for g in gap_list] == ["silk"] and gap_list[0].items_above == 0
    assert over[0].concept == "minimalist" and over[0].items_above == 4


def test_kmeans_and_silhouette_on_obvious_groups():
    rng = np.random.default_rng(1)
    v = np.concatenate([np.eye(4)[i] + 0.05 * rng.normal(size=(20, 4)) for i in range(3)])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    centres, labels = kmeans(v, 3, seed=0)
    assert len(set(labels[:20])) == len(set(labels[20:40])) == len(set(labels[40:])) == 1 and len(set(labels)) == 3
    assert silhouette(v, labels) > 0.8
    assert choose_k(v)[0] == 3


def test_auto_k_range_grows_with_the_catalog():
    """K from about half to 1.5 times sqrt(n/2), never under 2 nor over 40 (see vrec.stylemap)."""
    assert auto_k_range(7) == (2, 3)
    assert auto_k_range(60) == (3, 8)
    assert auto_k_range(800) == (10, 30)
    assert auto_k_range(5_000) == (20, 40) == auto_k_range(10**7)
    rng = np.random.default_rng(0)  # two obvious groups of 400: still split to a reviewable size
    v = np.concatenate([np.eye(8)[i] + 0.3 * rng.normal(size=(400, 8)) for i in range(2)])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    k, scores = choose_k(v)
    assert 10 <= k <= 30 and set(scores) == set(range(10, 31))


def test_auto_clusters_on_real_fashion_photos_are_recognisable(fashion_store):
    """800 photos of 40-odd article types: silhouette alone chose K = 3 (watches / shoes / the rest);
    auto must give clusters a merchandiser recognises, each mostly one kind of product."""
    sm = style_map(model="effnet-lite0", store=fashion_store, label="articleType")
    assert 10 <= sm.k <= 30 and "silhouette" in sm.criterion
    assert max(c.size for c in sm.clusters) <= 0.25 * len(sm.items)  # no "everything else" cluster
    st = Store(fashion_store)
    table = catalog_table(st, st.model("effnet-lite0"))
    assert list(table["id"]) == list(sm.items["id"])

    def top_share(column):  # per cluster: the share of its items with its most common value
        df = pd.DataFrame({"cluster": sm.items["cluster"].to_numpy(), "value": table[column].to_numpy()})
        return df.groupby("cluster")["value"].agg(lambda s: s.value_counts(normalize=True).iloc[0])

    sub, art = top_share("subCategory"), top_share("articleType")
    assert (sub >= 0.5).mean() >= 2 / 3  # most clusters are mostly one of topwear, shoes, watches, bags...
    assert (art >= 0.4).mean() >= 0.5  # and half are led by one article type
    assert (art >= 0.9).sum() >= 3  # some are pure: watches, sunglasses, handbags
    names = {c.name for c in sm.clusters}  # no text tower: clusters are named by their label mix
    assert {"Watches", "Sunglasses", "Handbags"} <= names


def test_style_map_names_clusters_by_concepts(catalog, vocab, tmp_path):
    sm = style_map(model="fake", store=catalog, clusters=2, label="category", vocab=[vocab], encoder=FakeEncoder())
    assert sm.k == 2 and sorted(c.size for c in sm.clusters) == [3, 4]
    names = {c.name for c in sm.clusters}
    assert any("minimalist" in n for n in names) and any("bohemian" in n for n in names)
    big = sm.clusters[0]
    assert big.size == 4 and big.label_mix == [("bags", 4)] and big.price == (10.0, 25.0, 70.0)
    assert set(sm.items.columns) >= {"id", "cluster", "cluster_name", "x", "y"}
    auto = style_map(model="fake", store=catalog, clusters="auto", vocab=[vocab], encoder=FakeEncoder())
    assert auto.k == 2 and "silhouette" in auto.criterion


def test_map_html_shows_points_and_clusters(catalog, vocab):
    from vrec.report.pages import map_html

    sm = style_map(model="fake", store=catalog, clusters=2, label="category", vocab=[vocab], encoder=FakeEncoder())
    body = map_html(sm)
    assert body.count("<circle") == 7 and body.count("<h2") == 2 and "minimalist" in body


def test_commands_end_to_end_on_the_sample_catalog(tiny_store, tmp_path):
    r = vrec("tag", "--model", "tiny-siglip", "--store", tiny_store, "--threshold", "0", "--top", "1",
             "--csv", tmp_path / "tags.csv")
    assert "Zero-shot tags" in r.stdout and (tmp_path / "tags.csv").is_file()
    assert len(pd.read_csv(tmp_path / "tags.csv")) == 60
    r = vrec("map", "--model", "tiny-siglip", "--store", tiny_store, "--label", "category",
             "--html", tmp_path / "map.html", "--csv", tmp_path / "map.csv")
    assert "style clusters" in r.stdout
    html = (tmp_path / "map.html").read_text()
    assert html.count("<circle") == 60 and "data:image/jpeg;base64," in html
    assert set(pd.read_csv(tmp_path / "map.csv").columns) >= {"id", "cluster", "cluster_name", "x", "y"}
    r = vrec("map", "--gaps", "--model", "tiny-siglip", "--store", tiny_store, "--vocab", "home")
    assert "Possible gaps" in r.stdout and "Over-served" in r.stdout
    r = vrec("map", "--model", "tiny-cnn", "--store", tiny_store, "--clusters", "3")
    assert "3 style clusters" in r.stdout  # a CNN has no text: clusters are named by their contents
    r = vrec("tag", "--model", "tiny-cnn", "--store", tiny_store, ok=False)
    assert r.exit_code == 1 and "no text tower" in r.stderr


# --- `vrec tag` and `vrec map` refuse bad input with one `Error:` line, exit 1, and write nothing ---

SIGLIP = ("--model", "tiny-siglip")


def written(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("args, says", [
    (["--gaps", "--threshold", "5"], "--threshold must be between 0 and 1"),
    (["--gaps", "--threshold", "-0.1"], "--threshold must be between 0 and 1"),
    (["--gaps", "--threshold", "nan"], "--threshold must be a finite number"),
    (["--threshold", "5"], "--threshold must be between 0 and 1"),  # checked even without --gaps
    (["--gaps", "--min-items", "-1"], "--min-items must be at least 1"),
    (["--gaps", "--min-items", "0"], "--min-items must be at least 1"),
    (["--clusters", "0"], "--clusters must be between 2 and 200"),
    (["--clusters", "-1"], "--clusters must be between 2 and 200"),
    (["--clusters", "1"], "--clusters must be between 2 and 200"),
    (["--clusters", "1000000000"], "--clusters must be between 2 and 200"),
    (["--clusters", "nan"], "--clusters must be a finite number"),
    (["--clusters", "inf"], "--clusters must be a finite number"),
    (["--clusters", "2.5"], "--clusters must be a whole number"),
    (["--clusters", "many"], "--clusters takes a number of clusters or 'auto'"),
    (["--clusters", "61"], "only 60 items"),
    (["--seed", "-1"], "--seed must be at least 0"),
])
def test_map_refuses_numbers_out_of_range(shared_tiny_store, tmp_path, args, says):
    line = fails("map", *SIGLIP, "--store", shared_tiny_store, "--html", tmp_path / "m.html", *args)
    assert says in line
    assert not (tmp_path / "m.html").exists()


@pytest.mark.parametrize("args, says", [
    (["--threshold", "5"], "--threshold must be between 0 and 1"),
    (["--threshold", "nan"], "--threshold must be a finite number"),
    (["--top", "0"], "--top must be at least 1"),
    (["--top", "-3"], "--top must be at least 1"),
])
def test_tag_refuses_numbers_out_of_range(tiny_store, tmp_path, args, says):
    line = fails("tag", *SIGLIP, "--store", tiny_store, "--csv", tmp_path / "t.csv", *args)
    assert says in line
    assert not (tmp_path / "t.csv").exists() and not (tiny_store / "tags.parquet").exists()


def test_gaps_with_html_is_refused_and_gaps_go_to_csv(shared_tiny_store, tmp_path):
    line = fails("map", "--gaps", *SIGLIP, "--store", shared_tiny_store, "--html", tmp_path / "g.html")
    assert "--html" in line and "--csv" in line
    assert written(tmp_path) == set()
    vrec("map", "--gaps", *SIGLIP, "--store", shared_tiny_store, "--vocab", "home", "--csv", tmp_path / "g.csv")
    g = pd.read_csv(tmp_path / "g.csv")
    assert list(g.columns) == ["kind", "group", "concept", "items_above", "best_probability", "closest"]
    assert set(g["kind"]) <= {"gap", "over-served"} and len(g) > 0


@pytest.mark.parametrize("command", [["tag"], ["map", "--gaps"], ["map"]])
def test_vocabulary_that_is_a_folder_or_not_utf8(shared_tiny_store, tmp_path, command):
    folder = tmp_path / "vocab"
    folder.mkdir()
    assert "is a folder" in fails(*command, *SIGLIP, "--store", shared_tiny_store, "--vocab", folder)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("style:\nd\xe9contract\xe9\n".encode("latin-1"))
    assert "not UTF-8" in fails(*command, *SIGLIP, "--store", shared_tiny_store, "--vocab", latin1)


def test_a_concept_with_a_comma_is_two_concepts_everywhere(tiny_store, tmp_path):
    vocab = tmp_path / "v.txt"
    vocab.write_text("colour:\nred, blue\n")
    r = vrec("tag", *SIGLIP, "--store", tiny_store, "--vocab", vocab, "--threshold", "0", "--top", "5",
             "--csv", tmp_path / "t.csv")
    assert "red (" in r.stdout and "blue (" in r.stdout  # each tag shows its own probability
    t = pd.read_csv(tmp_path / "t.csv")
    for tags, probs in zip(t["tags"], t["tag_probabilities"]):
        assert sorted(tags.split(", ")) == ["blue", "red"] and len(probs.split(", ")) == 2
    r = vrec("search-text", "blue", *SIGLIP, "--store", tiny_store, "--filter", "tag:blue", "-k", "5",
             "--format", "csv")
    found = pd.read_csv(io.StringIO(r.stdout))
    assert len(found) == 5 and all(sorted(x.split(", ")) == ["blue", "red"] for x in found["tags"])


@pytest.mark.parametrize("command, option", [(["tag"], "--csv"), (["map"], "--csv"), (["map"], "--html"),
                                             (["map", "--gaps"], "--csv")])
def test_outputs_that_cannot_be_written(tiny_store, tmp_path, command, option):
    before = written(tmp_path)
    folder = tmp_path / "out"
    folder.mkdir()
    assert "is a folder" in fails(*command, *SIGLIP, "--store", tiny_store, option, folder)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert "Cannot write" in fails(*command, *SIGLIP, "--store", tiny_store, option, a_file / "sub" / "out.csv")
    assert written(tmp_path) - before == {"out", "a-file"}  # nothing else, nothing partial
    assert written(folder) == set() and not (tiny_store / "tags.parquet").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_an_unwritable_place_leaves_the_store_untouched(tiny_store):
    """/proc refuses new files even to root: the error comes when the file is written, after the work."""
    assert "Cannot write" in fails("tag", *SIGLIP, "--store", tiny_store, "--csv", "/proc/vrec-tags.csv")
    assert not (tiny_store / "tags.parquet").exists()  # the tags are saved only after the CSV
    assert "Cannot write" in fails("map", *SIGLIP, "--store", tiny_store, "--csv", "/proc/vrec-map.csv")
