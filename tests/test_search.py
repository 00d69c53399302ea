"""Index and search: self-retrieval, HNSW vs exact, filters, steering, formats, HTML, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

import vrec.store.index as ix
from clihelp import vrec
from vrec.base.errors import FilterError, StaleIndex
from vrec.store.filters import apply_filters
from vrec.search.query import search_image, search_text
from vrec.store.store import Store


def test_every_item_finds_itself_first_with_score_one(shared_tiny_store, sample_dir):
    ms = Store(shared_tiny_store).model("tiny-cnn")
    for path in list(ms.items()["path"])[::7]:
        r = search_image(str(sample_dir / path), k=3, model="tiny-cnn", store=shared_tiny_store)
        assert r.table["path"].iloc[0] == path
        assert r.table["score"].iloc[0] == pytest.approx(1.0, abs=1e-5)


def test_find_similar_by_id_leaves_the_item_out(shared_tiny_store):
    r = search_image("bag-tote-red", k=5, model="tiny-siglip", store=shared_tiny_store)
    assert len(r.table) == 5 and "bags/bag-tote-red" not in set(r.table["id"])
    assert list(r.table["rank"]) == [1, 2, 3, 4, 5] and r.table["score"].is_monotonic_decreasing


def _clustered(n, dim=32, clusters=20, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    v = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def big_model_store(tmp_path):
    from test_store import CONFIG, rows

    st = Store(tmp_path / "s")
    st.create(tmp_path)
    ms = st.model_for_writing("m")
    with ms.writer({**CONFIG, "dim": 32}) as w:
        w.add(rows([f"i{k}" for k in range(3000)]), _clustered(3300)[:3000])
    return st.model("m"), {**CONFIG, "dim": 32}


def test_hnsw_reaches_the_target_recall_at_its_stored_ef(big_model_store):
    ms, _ = big_model_store
    s = ix.build_index(ms, target_recall=0.99)
    assert s.recall_at_10 >= 0.99 and s.fresh and ms.manifest()["index"]["ef"] == s.ef
    index = ix.load_index(ms)
    assert index.ef == s.ef  # hnswlib forgets ef on load; vrec sets it again
    queries = _clustered(3300)[3000:]  # same clusters, points not in the index
    hnsw, _ = ix.search_rows(ms, queries, 10, exact=False)
    exact, _ = ix.search_rows(ms, queries, 10, exact=True)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hnsw, exact)])
    assert recall >= 0.97  # fresh queries, not the tuning sample


def test_index_follows_additions_and_removals_and_detects_staleness(big_model_store):
    from test_store import rows

    ms, cfg = big_model_store
    ix.build_index(ms)
    with ms.writer(cfg) as w:
        w.add(rows(["new"]), _clustered(1, seed=5))
        w.delete_rows([0])
    ms.refresh()
    with pytest.raises(StaleIndex, match="vrec index --model m"):
        ix.load_index(ms)
    s = ix.update_index(ms)
    assert s.fresh and s.items == 3000
    labels, _ = ix.search_rows(ms, _clustered(1, seed=5), 1, exact=False)
    assert labels[0][0] == 3000  # the new row, found through the index
    ids = ix.load_index(ms).get_ids_list()
    assert 3000 in ids
    found, _ = ix.load_index(ms).knn_query(ms.vectors_for_rows([0]), k=5)
    assert 0 not in found[0]  # removed items are never returned


def test_exact_topk_handles_k_beyond_the_catalog():
    v = _clustered(5)
    pos, scores = ix.exact_topk(v, v[:2], 10)
    assert pos.shape == (2, 5) and pos[0, 0] == 0 and np.all(np.diff(scores, axis=1) <= 0)


def test_filters_parse_and_combine(shared_tiny_store):
    from vrec.store.catalog_table import catalog_table

    st = Store(shared_tiny_store)
    t = catalog_table(st, st.model("tiny-cnn"))
    assert apply_filters(t, ["category=BAGS"]).sum() == 12
    assert apply_filters(t, ["category=bags", "price<120"]).sum() == ((t.category == "bags") & (t.price < 120)).sum()
    assert apply_filters(t, ["colour in (red, black)"]).sum() == t.colour.isin(["red", "black"]).sum()
    assert apply_filters(t, ["colour not in (red)"]).sum() == (t.colour != "red").sum()
    assert apply_filters(t, ["price>=1000"]).sum() == 0
    with pytest.raises(FilterError, match="Did you mean 'colour'"):
        apply_filters(t, ["color=red"])
    with pytest.raises(FilterError, match="needs a number"):
        apply_filters(t, ["price<cheap"])
    with pytest.raises(FilterError, match="Cannot read filter"):
        apply_filters(t, ["just words"])


def test_filtered_search_returns_k_matching_items_when_they_exist(shared_tiny_store):
    r = search_text("red bag", k=10, model="tiny-siglip", store=shared_tiny_store, filters=["category=shoes"])
    assert len(r.table) == 10 and set(r.table["category"]) == {"shoes"}
    r = search_text("red bag", k=10, model="tiny-siglip", store=shared_tiny_store,
                    filters=["category=shoes", "colour=red"])
    assert len(r.table) == (r.table["colour"] == "red").sum() and r.notes == [f"only {len(r.table)} items match the filters"]


def test_text_search_reports_sigmoid_match_probability(shared_tiny_store):
    from vrec.models.encoders import create_encoder

    enc = create_encoder("tiny-siglip")
    r = search_text("red bag", k=5, model="tiny-siglip", store=shared_tiny_store, encoder=enc)
    expected = 1 / (1 + np.exp(-(enc.logit_scale * r.table["score"].astype(float) + enc.logit_bias)))
    assert np.allclose(r.table["probability"], expected, atol=1e-6)


def test_plus_and_minus_steer_an_image_query(shared_tiny_store):
    from vrec.models.encoders import create_encoder

    enc = create_encoder("tiny-siglip")
    base = search_image("bag-tote-red", k=60, model="tiny-siglip", store=shared_tiny_store, encoder=enc).table
    plus = search_image("bag-tote-red", k=60, model="tiny-siglip", store=shared_tiny_store, encoder=enc,
                        plus=["a watch"], weight=2.0).table
    assert list(base["id"]) != list(plus["id"])
    # the steered query equals the normalised sum of the unit vectors, checked on the top score
    ms = Store(shared_tiny_store).model("tiny-siglip")
    items = ms.items().set_index("id")
    q = ms.vectors_for_rows([items.loc["bags/bag-tote-red", "row"]])[0] + 2.0 * enc.encode_texts(["a watch"])[0]
    q /= np.linalg.norm(q)
    top = ms.vectors_for_rows([items.loc[plus["id"].iloc[0], "row"]])[0]
    assert float(q @ top) == pytest.approx(plus["score"].iloc[0], abs=1e-5)


def test_output_formats(shared_tiny_store):
    args = ("search-text", "red bag", "--model", "tiny-siglip", "--store", shared_tiny_store, "--k", "4")
    data = json.loads(vrec(*args, "--format", "json").stdout)
    assert data["query"] == "red bag" and data["model"] == "tiny-siglip" and len(data["results"]) == 4
    first = data["results"][0]
    assert {"rank", "score", "probability", "id", "path", "title", "category", "price"} <= set(first)
    assert isinstance(first["score"], float) and isinstance(first["rank"], int)
    csv = vrec(*args, "--format", "csv").stdout
    assert csv.splitlines()[0].startswith("rank,score,probability,id,path") and len(csv.splitlines()) == 5
    table = vrec(*args).stdout
    assert "match p" in table and "title" in table
    assert vrec(*args, "--format", "xml", ok=False).exit_code == 1


def test_html_page_shows_query_and_result_thumbnails(shared_tiny_store, tmp_path):
    page = tmp_path / "out.html"
    vrec("search-image", "bag-tote-red", "--model", "tiny-siglip", "--store", shared_tiny_store, "--k", "6",
         "--html", page)
    html = page.read_text()
    assert html.count("data:image/jpeg;base64,") == 7  # the query and six results
    assert "Query" in html and "#6" in html and "Red tote bag" in html


@pytest.mark.parametrize("args,message", [
    (("search-text", "red", "--model", "tiny-cnn"), "no text tower"),
    (("search-text", "  ", "--model", "tiny-siglip"), "query is empty"),
    (("search-image", "bag-tote-rd", "--model", "tiny-cnn"), "Did you mean 'bags/bag-tote-red'"),
    (("search-image", "bag-tote-red", "--model", "siglip"), "vrec embed FOLDER --model siglip"),
    (("search-text", "red", "--model", "tiny-siglip", "--k", "0"), "--k must be at least 1"),
])
def test_errors_are_one_clear_line(shared_tiny_store, args, message):
    r = vrec(*args, "--store", shared_tiny_store, ok=False)
    assert r.exit_code == 1 and message in r.stderr and "Traceback" not in r.stderr


def test_no_store_and_unreadable_query_image(tmp_path, shared_tiny_store):
    r = vrec("search-text", "red", "--store", tmp_path / "none", ok=False)
    assert r.exit_code == 1 and "vrec embed FOLDER" in r.stderr
    (tmp_path / "broken.jpg").write_bytes(b"nope")
    r = vrec("search-image", tmp_path / "broken.jpg", "--model", "tiny-cnn", "--store", shared_tiny_store, ok=False)
    assert r.exit_code == 1 and "Cannot use" in r.stderr


def test_stale_index_is_refused_not_silently_used(tiny_store, sample_dir, monkeypatch):
    vrec("index", "--store", tiny_store)
    ms = Store(tiny_store).model("tiny-cnn")

    with ms.writer(ms.config) as w:  # vectors change behind the index's back
        w.delete_rows([0])
    monkeypatch.setattr(ix, "EXACT_BELOW", 10)
    r = vrec("search-image", "bag-tote-red", "--model", "tiny-cnn", "--store", tiny_store, ok=False)
    assert r.exit_code == 1 and "vrec index --model tiny-cnn" in r.stderr
    vrec("index", "--store", tiny_store, "--stats")
    assert vrec("search-image", "bag-tote-red", "--model", "tiny-cnn", "--store", tiny_store).exit_code == 0


def test_embed_keeps_an_existing_index_up_to_date(tmp_path):
    from conftest import catalog_copy

    photos = catalog_copy(tmp_path, n=20)
    store = tmp_path / "store"
    vrec("embed", photos, "--model", "tiny-cnn", "--store", store)
    vrec("index", "--store", store)
    (photos / "bags" / "bag-tote-red.jpg").unlink()
    vrec("embed", photos, "--model", "tiny-cnn", "--store", store)
    s = ix.stats(Store(store).model("tiny-cnn"))
    assert s.fresh and s.items == 19
