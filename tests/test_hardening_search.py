"""Search, filters and exports refuse bad input with one clear line and never leave a partial file.

Covers metadata columns named like vrec's own, numeric options (--k, --weight), unwritable
outputs, output formats by extension, filters on the wrong column type, --template and
ambiguous short ids.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from clihelp import one_error, vrec
from conftest import SAMPLE, handmade_store
from vrec.store.store import Store


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
    with ms.writer(ms.config) as w:
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
    from vrec.store.filters import apply_filters
    from vrec.store.catalog_table import catalog_table

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
