"""``vrec compare``: side-by-side neighbours, overlap and label agreement, sampling, HTML, errors."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from clihelp import vrec
from conftest import handmade_store

from vrec.base.errors import NotEmbedded, QueryError, UnknownItem
from vrec.search.compare import compare, label_agreement, overlap_at_k


def test_overlap_and_agreement_on_hand_made_lists():
    a = np.array([[1, 2, 3], [4, 5, 6]])
    b = np.array([[3, 2, 9], [7, 8, 9]])
    assert list(overlap_at_k(a, b)) == [pytest.approx(2 / 3), 0.0]
    labels = np.array(["x", "x", "y", "y"])
    nb = np.array([[1, 2], [0, -1], [3, 0], [2, 0]])
    assert list(label_agreement(nb, labels)) == [0.5, 0.5, 0.5, 0.5]


@pytest.fixture
def colour_vs_category(tmp_path):
    """Six items: 'colourful' groups by colour, 'semantic' by category -- the answers are known."""
    meta = pd.DataFrame({"id": [f"item{i}" for i in range(6)],
                         "category": ["bag", "bag", "bag", "shoe", "shoe", "shoe"],
                         "colour": ["red", "blue", "green", "red", "blue", "green"],
                         "title": ["red bag", "blue bag", "green bag", "red shoe", "blue shoe", "green shoe"]})
    colour = {"red": [1, 0, 0], "blue": [0, 1, 0], "green": [0, 0, 1]}
    rng = np.random.default_rng(0)
    colourful = [np.r_[colour[c], 0.1 * (cat == "bag")] + 0.01 * rng.normal(size=4) for c, cat in zip(meta.colour, meta.category)]
    semantic = [np.r_[[1, 0] if cat == "bag" else [0, 1], 0.2 * np.array(colour[c])] for c, cat in zip(meta.colour, meta.category)]
    return handmade_store(tmp_path / "s", {"colourful": colourful, "semantic": semantic}, meta)


def test_label_agreement_shows_which_model_groups_by_meaning(colour_vs_category):
    c = compare(left="colourful", right="semantic", k=2, label="category", store=colour_vs_category, sample=2)
    s = c.summary
    assert s.right_agreement == pytest.approx(1.0)  # the two neighbours of each item share its category
    # colourful: nearest is the same colour in the other category, then something else
    assert s.left_agreement < 0.6
    per = s.per_label.set_index("category")
    assert per.loc["bag", "items"] == 3 and per.loc["shoe", "right"] == pytest.approx(1.0)
    assert 0 <= s.mean_overlap < 1


def test_side_by_side_for_chosen_items(colour_vs_category):
    c = compare(["item0"], left="colourful", right="semantic", k=2, label="category", store=colour_vs_category)
    q = c.queries[0]
    assert q.query == "item0" and q.title == "red bag" and q.label == "bag"
    assert q.left.table["id"].iloc[0] == "item3"  # the red shoe looks most like the red bag
    assert set(q.right.table["id"]) == {"item1", "item2"}  # the other bags
    assert "item0" not in set(q.left.table["id"]) | set(q.right.table["id"])
    common = set(q.left.table["id"][q.left.table["common"]])
    assert common == set(q.right.table["id"][q.right.table["common"]])
    assert q.overlap == len(common) / 2
    assert c.summary is None  # chosen items: no summary unless asked


def test_terminal_output_has_both_columns(shared_tiny_store):
    r = vrec("compare", "bag-tote-red", "--left", "tiny-cnn", "--right", "tiny-siglip", "--k", "3",
             "--label", "category", "--store", shared_tiny_store)
    assert "tiny-cnn" in r.stdout and "tiny-siglip" in r.stdout and "overlap@3" in r.stdout
    assert "Red tote bag" in r.stdout and "category" in r.stdout


def test_sampled_run_is_reproducible_spread_and_summarised(shared_tiny_store):
    kw = dict(left="tiny-cnn", right="tiny-siglip", k=3, store=shared_tiny_store)
    a = compare(sample=5, seed=1, label="category", **kw)
    b = compare(sample=5, seed=1, label="category", **kw)
    assert [q.query for q in a.queries] == [q.query for q in b.queries]
    assert sorted(q.label for q in a.queries) == ["bags", "dresses", "shirts", "shoes", "watches"]
    assert a.summary is not None and a.summary.items == 60
    clusters = compare(sample=4, seed=3, **kw)
    assert len({q.query for q in clusters.queries}) == 4
    assert [q.query for q in compare(sample=4, seed=3, **kw).queries] == [q.query for q in clusters.queries]


def test_json_and_html(shared_tiny_store, tmp_path):
    args = ("compare", "--left", "tiny-cnn", "--right", "tiny-siglip", "--sample", "2", "--k", "3",
            "--label", "category", "--store", shared_tiny_store)
    data = json.loads(vrec(*args, "--format", "json").stdout)
    assert len(data["queries"]) == 2 and len(data["queries"][0]["left"]) == 3
    assert {"rank", "id", "title", "category", "score", "common"} <= set(data["queries"][0]["right"][0])
    assert 0 <= data["summary"]["mean_overlap"] <= 1 and data["summary"]["per_label"]
    page = tmp_path / "c.html"
    vrec(*args, "--html", page)
    html = page.read_text()
    assert html.count("data:image/jpeg;base64,") == 2 * (1 + 3 + 3)
    assert "Mean overlap@3" in html and "tiny-siglip agreement@3" in html and "class=\"card common\"" in html


def test_a_photo_outside_the_catalog_is_embedded_with_both_models(shared_tiny_store, tmp_path):
    from conftest import jpeg_bytes

    (tmp_path / "q.jpg").write_bytes(jpeg_bytes((200, 20, 20), size=(120, 120)))
    c = compare([str(tmp_path / "q.jpg")], left="tiny-cnn", right="tiny-siglip", k=3, store=shared_tiny_store)
    assert c.queries[0].title == "q.jpg" and len(c.queries[0].left.table) == 3


def test_errors(shared_tiny_store, tmp_path):
    with pytest.raises(NotEmbedded, match="vrec embed FOLDER --model cnn"):
        compare(["bag-tote-red"], left="cnn", right="tiny-siglip", store=shared_tiny_store)
    with pytest.raises(UnknownItem, match="Did you mean"):
        compare(["bag-tote-rex"], left="tiny-cnn", right="tiny-siglip", store=shared_tiny_store)
    with pytest.raises(QueryError, match="No column 'catgory'.*Did you mean 'category'"):
        compare(left="tiny-cnn", right="tiny-siglip", label="catgory", store=shared_tiny_store)
    r = vrec("compare", "--left", "tiny-cnn", "--right", "tiny-cnn", "--store", shared_tiny_store, ok=False)
    assert r.exit_code == 1 and "same model" in r.stderr


def test_models_covering_different_items_compare_on_the_shared_ones(tmp_path):
    rng = np.random.default_rng(0)
    store = handmade_store(tmp_path / "s", {"a": rng.normal(size=(6, 4))})
    handmade_store(tmp_path / "s", {"b": rng.normal(size=(4, 4))}, ids=["item0", "item1", "item2", "item9"])
    c = compare(left="a", right="b", k=2, sample=1, store=store)
    assert "comparing on the 3 items both hold" in c.notes[0]
    assert c.summary.items == 3
    ids = set(c.queries[0].left.table["id"]) | set(c.queries[0].right.table["id"])
    assert ids <= {"item0", "item1", "item2"}


def test_effnet_vs_tiny_siglip_on_the_fashion_sample(fashion_store, tmp_path):
    """The real CNN's label agreement is far above the random tiny model's."""
    store = fashion_store
    c = compare(left="effnet-lite0", right="tiny-siglip", k=5, sample=3, label="articleType", store=store)
    s = c.summary
    assert s.items == 800
    assert s.left_agreement >= 0.45 and s.left_agreement > 2 * s.right_agreement, (s.left_agreement, s.right_agreement)
    page = tmp_path / "f.html"
    vrec("compare", "--left", "effnet-lite0", "--right", "tiny-siglip", "--label", "articleType", "--sample", "2",
         "--store", store, "--html", page)
    assert page.read_text().count("data:image/jpeg") == 2 * 11


def test_filters_restrict_both_sides_and_the_label_share_is_the_hand_count(colour_vs_category):
    meta = pd.DataFrame({"id": [f"item{i}" for i in range(6)], "category": ["bag"] * 3 + ["shoe"] * 3,
                         "colour": ["red", "blue", "green"] * 2}).set_index("id")
    kw = dict(left="colourful", right="semantic", k=2, label="category", store=colour_vs_category,
              filters=["colour in (red, blue)"])
    matching = {"item0", "item1", "item3", "item4"}
    for item in ("item0", "item2"):  # the item itself need not match: only its neighbours must
        c = compare([item], **kw)
        q = c.queries[0]
        for side, share in ((q.left, q.left_agreement), (q.right, q.right_agreement)):
            ids = list(side.table["id"])
            assert len(ids) == 2 and set(ids) <= matching - {item}
            assert share == sum(meta.loc[i, "category"] == meta.loc[item, "category"] for i in ids) / 2
        assert any("4 of 6 shared items" in n for n in c.notes)
    q = compare(["item0"], **kw).queries[0]
    assert list(q.left.table["id"])[0] == "item3" and q.right_agreement == 0.5  # red shoe; the blue bag then a shoe
    s = compare(sample=2, **kw).summary
    assert s.items == 4 and s.labelled == 4 and s.right_agreement == pytest.approx(0.5)
    assert {q.query for q in compare(sample=2, **kw).queries} <= matching
    lone = compare(["item0"], **{**kw, "filters": ["colour=red"]})  # its category: no other red item has it
    assert lone.k == 1 and lone.queries[0].left_agreement is None and lone.summary is None
    with pytest.raises(QueryError, match="Only 0 of the 6 items"):
        compare(["item0"], **{**kw, "filters": ["colour=pink"]})


def test_compare_filter_on_the_command_line(shared_tiny_store):
    data = json.loads(vrec("compare", "bag-tote-red", "--left", "tiny-cnn", "--right", "tiny-siglip", "--k", "4",
                           "--label", "colour", "--filter", "category=shoes", "--store", shared_tiny_store,
                           "--format", "json").stdout)
    q = data["queries"][0]
    assert data["filters"] == ["category=shoes"] and len(q["left"]) == len(q["right"]) == 4
    for side in ("left", "right"):
        assert all(r["id"].startswith("shoes/") for r in q[side])
        assert q[f"{side}_agreement"] == sum(r["colour"] == "red" for r in q[side]) / 4
