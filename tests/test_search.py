"""Index and search: self-retrieval, HNSW vs exact, filters, steering, formats, HTML, errors."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from clihelp import one_error, vrec
from conftest import SAMPLE, handmade_store

import vrec.store.index as ix
from vrec.base.errors import FilterError, StaleIndex
from vrec.search.query import search_image, search_text
from vrec.store.filters import apply_filters
from vrec.store.store import Store
from vrec.store.writer import ModelWriter


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
    with ModelWriter(ms, {**CONFIG, "dim": 32}) as w:
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
    with ModelWriter(ms, cfg) as w:
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

    with ModelWriter(ms, ms.config) as w:  # vectors change behind the index's back
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


# --- Search, filters and exports refuse bad input with one clear line and never leave a partial file ---

def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- 1. metadata columns named like vrec's own -----------------------------------------------------

@pytest.fixture(scope="module")
def clash_store(tmp_path_factory):
    """Items whose metadata has columns named score, rank, width, height, vector, v0, tags and path."""
    root = tmp_path_factory.mktemp("clash")
    meta = pd.DataFrame({"id": [f"item{i}" for i in range(6)], "title": [f"T{i}" for i in range(6)],
                         "score": [5, 4, 3, 2, 1, 0], "rank": list("abcdef"), "width": [120, 80, 150, 60, 200, 90],
                         "height": 1.5, "vector": "x", "v0": 7, "tags": "mine",
                         "path": [f"{i}.jpg" for i in [f"item{j}" for j in range(6)]]})  # repeats vrec's path
    rng = np.random.default_rng(0)
    return handmade_store(root / "store", {"m": rng.normal(size=(6, 8))}, metadata=meta)


def test_clashing_metadata_columns_are_kept_as_meta_name_in_search_results(clash_store):
    r = vrec("search-image", "item0", "--model", "m", "--store", clash_store, "--k", "3", "--format", "json")
    data = json.loads(r.stdout)
    first = data["results"][0]
    assert first["rank"] == 1 and isinstance(first["score"], float) and first["width"] == 8  # vrec's own
    want = {"meta_score", "meta_rank", "meta_width", "meta_height", "meta_vector", "meta_v0", "meta_tags"}
    assert want <= set(first) and "meta_path" not in first  # a column repeating vrec's path is left out
    by_id = {x["id"]: x for x in data["results"]}
    assert all(by_id[i]["meta_score"] == 5 - int(i[-1]) for i in by_id)  # the user's values, unchanged
    assert "meta_score" in r.stderr and "Note:" in r.stderr
    csv = vrec("search-image", "item0", "--model", "m", "--store", clash_store, "--format", "csv").stdout
    header = csv.splitlines()[0].split(",")
    assert len(header) == len(set(header)) and header[:2] == ["rank", "score"]
    assert "item0" in vrec("search-image", "item1", "--model", "m", "--store", clash_store, "--k", "5").stdout


def test_filters_use_the_renamed_metadata_column(clash_store):
    r = vrec("search-image", "item0", "--model", "m", "--store", clash_store, "--format", "json",
             "--filter", "meta_width>100")
    assert {x["id"] for x in json.loads(r.stdout)["results"]} == {"item2", "item4"}
    one_error(vrec("search-image", "item0", "--model", "m", "--store", clash_store, "--filter", "score>2", ok=False),
              "'meta_score'")


def test_exports_keep_clashing_columns_readable(clash_store, tmp_path):
    vrec("export", tmp_path / "v.csv", "--model", "m", "--store", clash_store)
    df = pd.read_csv(tmp_path / "v.csv")
    assert len(df.columns) == len(set(df.columns)) and {"meta_v0", "meta_vector", "v0", "v7"} <= set(df.columns)
    assert (df["meta_v0"] == 7).all() and np.allclose(np.linalg.norm(df[[f"v{i}" for i in range(8)]], axis=1), 1)
    vrec("export", tmp_path / "v.parquet", "--model", "m", "--store", clash_store)
    t = pq.read_table(tmp_path / "v.parquet")
    assert t.schema.field("vector").type.list_size == 8 and t.column("meta_vector").to_pylist()[0] == "x"


# --- 2. numeric options --------------------------------------------------------------------------

@pytest.mark.parametrize("weight", ["nan", "inf", "1e39", "1e30", "-1"])
def test_weight_must_be_a_sane_number(shared_tiny_store, weight):
    r = vrec("search-image", "bag-tote-red", "--model", "tiny-siglip", "--store", shared_tiny_store,
             "--plus", "red", "--weight", weight, ok=False)
    one_error(r, "--weight")


@pytest.mark.parametrize("cmd", ["search-text", "search-image", "neighbours"])
@pytest.mark.parametrize("k", ["0", "-1"])
def test_k_below_one_is_refused(shared_tiny_store, tmp_path, cmd, k):
    args = {"search-text": ("search-text", "red bag", "--model", "tiny-siglip"),
            "search-image": ("search-image", "bag-tote-red", "--model", "tiny-cnn"),
            "neighbours": ("neighbours", tmp_path / "n.parquet", "--model", "tiny-cnn")}[cmd]
    one_error(vrec(*args, "--k", k, "--store", shared_tiny_store, ok=False), "--k must be at least 1")
    assert leftovers(tmp_path) == []


def test_k_beyond_the_catalog_returns_every_item_with_a_note(shared_tiny_store, tmp_path):
    n = len(Store(shared_tiny_store).model("tiny-cnn").items())
    r = vrec("search-image", "bag-tote-red", "--model", "tiny-cnn", "--store", shared_tiny_store,
             "--k", str(10**15), "--format", "json")
    assert len(json.loads(r.stdout)["results"]) == n - 1 and f"only {n - 1} items" in r.stderr
    r = vrec("search-text", "red", "--model", "tiny-siglip", "--store", shared_tiny_store, "--k", "1000",
             "--format", "csv")
    assert len(r.stdout.splitlines()) == n + 1
    r = vrec("neighbours", tmp_path / "n.parquet", "--model", "tiny-cnn", "--store", shared_tiny_store, "--k", "1000")
    t = pd.read_parquet(tmp_path / "n.parquet")
    assert len(t) == n * (n - 1) and t["rank"].max() == n - 1 and "Note:" in r.stderr


# --- 3. outputs that cannot be written -----------------------------------------------------------

@pytest.mark.parametrize("target", ["folder", "missing-parent-is-a-file"])
@pytest.mark.parametrize("cmd", ["html", "export", "neighbours"])
def test_unwritable_outputs_are_one_error_and_leave_nothing(shared_tiny_store, tmp_path, target, cmd):
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "folder" if target == "folder" else tmp_path / "afile" / "out"
    before = leftovers(tmp_path)
    if cmd == "html":
        r = vrec("search-text", "red", "--model", "tiny-siglip", "--store", shared_tiny_store, "--html", out, ok=False)
        assert r.stdout == ""  # no results printed before the error
    else:
        r = vrec(cmd, out, "--model", "tiny-cnn", "--store", shared_tiny_store, ok=False)
    one_error(r, str(tmp_path))
    assert leftovers(tmp_path) == before and leftovers(tmp_path / "folder") == []


# --- 4. formats follow the extension -------------------------------------------------------------

def test_neighbours_writes_csv_for_a_csv_name(shared_tiny_store, tmp_path):
    vrec("neighbours", tmp_path / "n.csv", "--model", "tiny-cnn", "--k", "3", "--store", shared_tiny_store)
    assert not (tmp_path / "n.csv").read_bytes().startswith(b"PAR1")
    t = pd.read_csv(tmp_path / "n.csv")
    assert list(t.columns) == ["item", "rank", "neighbour", "score"] and set(t["rank"]) == {1, 2, 3}
    vrec("neighbours", tmp_path / "n.parquet", "--model", "tiny-cnn", "--k", "3", "--store", shared_tiny_store)
    p = pd.read_parquet(tmp_path / "n.parquet")
    assert list(p["neighbour"]) == list(t["neighbour"])


@pytest.mark.parametrize("args,needle", [
    (("neighbours", "n.json"), ".parquet or .csv"),
    (("neighbours", "n.npy"), ".parquet or .csv"),
    (("export", "v.json"), ".parquet, .npy or .csv"),
    (("export", "v.csv", "--format", "parquet"), "ends in .csv but --format is parquet"),
    (("export", "v", "--format", "xml"), "Unknown format 'xml'"),
])
def test_unknown_or_contradicting_formats_are_refused(shared_tiny_store, tmp_path, args, needle):
    cmd, name, *rest = args
    r = vrec(cmd, tmp_path / name, *rest, "--model", "tiny-cnn", "--store", shared_tiny_store, ok=False)
    one_error(r, needle)
    assert leftovers(tmp_path) == []


def test_export_without_extension_is_parquet(shared_tiny_store, tmp_path):
    vrec("export", tmp_path / "vectors", "--model", "tiny-cnn", "--store", shared_tiny_store)
    assert pq.read_table(tmp_path / "vectors").num_rows == len(Store(shared_tiny_store).model("tiny-cnn").items())


@pytest.mark.parametrize("name", ["v.npy", "v.csv", "v.parquet", "n.csv"])
def test_a_model_without_items_is_an_error_in_every_format(tmp_path, name):
    store = handmade_store(tmp_path / "store", {"m": np.eye(3)})
    ms = Store(store).model("m")
    with ModelWriter(ms, ms.config) as w:
        w.delete_rows(list(ms.items()["row"]))
    out = tmp_path / "out"
    out.mkdir()
    cmd = "neighbours" if name.startswith("n") else "export"
    one_error(vrec(cmd, out / name, "--model", "m", "--store", store, ok=False), "holds no items")
    assert leftovers(out) == []


# --- 5. filters ----------------------------------------------------------------------------------

def test_numeric_comparison_on_a_text_column_names_its_type(shared_tiny_store):
    r = vrec("search-text", "red", "--model", "tiny-siglip", "--store", shared_tiny_store, "-f", "title>5", ok=False)
    one_error(r, "'title' holds text")


def test_unknown_filter_column_suggests_close_names_but_not_internal_ones(shared_tiny_store):
    line = one_error(vrec("search-text", "red", "--model", "tiny-siglip", "--store", shared_tiny_store,
                          "-f", "titel=5", ok=False), "Did you mean 'title'?")
    assert "mtime" not in line and "hash" not in line


def test_equality_on_a_numeric_column_compares_numbers(shared_tiny_store):
    from vrec.store.catalog_table import catalog_table
    from vrec.store.filters import apply_filters

    st = Store(shared_tiny_store)
    t = catalog_table(st, st.model("tiny-cnn"))
    t["price"] = t["price"].astype(float)  # e.g. a column with gaps is read as floats
    price = int(t["price"].iloc[0])
    assert apply_filters(t, [f"price={price}"]).sum() == (t["price"] == price).sum() >= 1
    assert apply_filters(t, [f"price in ({price}, 1)"]).sum() == (t["price"] == price).sum()


# --- 6. --template -------------------------------------------------------------------------------

def test_template_without_placeholder_is_refused(shared_tiny_store):
    one_error(vrec("search-text", "red", "--model", "tiny-siglip", "--store", shared_tiny_store,
                   "--template", "a photo", ok=False), "--template", "{}")
    r = vrec("search-text", "red", "--model", "tiny-siglip", "--store", shared_tiny_store, "--template", "{}",
             "--format", "json")
    assert json.loads(r.stdout)["query"] == "red"


# --- 7. ambiguous short ids ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def twin_store(tmp_path_factory):
    """Two items whose ids end the same: bags/x and shoes/x."""
    from vrec.ingest.embed import embed

    root = tmp_path_factory.mktemp("twins")
    for sub, src in (("bags", "bags/bag-tote-red.jpg"), ("shoes", "shoes/shoe-heel-pink.jpg")):
        (root / "photos" / sub).mkdir(parents=True)
        shutil.copy(SAMPLE / src, root / "photos" / sub / "x.jpg")
    embed(root / "photos", models=["tiny-cnn", "tiny-siglip"], store=root / "store")
    return root / "store"


@pytest.mark.parametrize("cmd", ["search-image", "compare"])
def test_an_ambiguous_short_id_lists_the_candidates(twin_store, cmd):
    args = ("search-image", "x", "--model", "tiny-cnn") if cmd == "search-image" else \
        ("compare", "x", "--left", "tiny-cnn", "--right", "tiny-siglip")
    one_error(vrec(*args, "--store", twin_store, ok=False), "ambiguous", "'bags/x'", "'shoes/x'")


def test_a_mistyped_short_id_suggests_the_full_id(shared_tiny_store):
    one_error(vrec("search-image", "bag-tot-red", "--model", "tiny-cnn", "--store", shared_tiny_store, ok=False),
              "Did you mean 'bags/bag-tote-red'?")
