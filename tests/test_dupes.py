"""vrec dupes (vrec/search/dupes.py): near-duplicate photos and products, on real grocery photos
embedded with the real effnet-lite0: planted copies are found, distinct products of one kind are not."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from clihelp import fails, vrec

GROCERY = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "grocery-products"
# two apples (item_group_id fruit-apple) and two Alpro yoghurts (alpro-soyghurt) whose packshots score
# 0.94, the closest distinct products of the feed; and two more
PRODUCTS = ["gs-000", "gs-001", "gs-049", "gs-050", "gs-006", "gs-010"]
PHOTOS = ["packshot.jpg", "store-1.jpg", "store-2.jpg"]
MODEL = "effnet-lite0"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A list of 6 products x 3 photos, plus: a byte copy of gs-000's store-1 within gs-000, a re-encoded
    (JPEG quality 60) and shrunk (0.7x) copy of gs-001's store-2 within gs-001, and gs-049's packshot
    listed again under gs-006; embedded once with effnet-lite0."""
    if not (GROCERY / "feed.csv").is_file():
        pytest.skip(f"{GROCERY} is absent (the shared datasets are not in a user's checkout)")
    from PIL import Image

    from vrec.ingest.embed import embed

    tmp = tmp_path_factory.mktemp("dupes")
    titles = {r["id"]: r["title"] for r in csv.DictReader(open(GROCERY / "feed.csv", encoding="utf-8"))}
    rows = [(str(GROCERY / "images" / p / f), p, titles[p]) for p in PRODUCTS for f in PHOTOS]
    byte_copy = tmp / "gs-000-copy.jpg"
    shutil.copy(GROCERY / "images" / "gs-000" / "store-1.jpg", byte_copy)
    reencoded = tmp / "gs-001-reencoded.jpg"
    im = Image.open(GROCERY / "images" / "gs-001" / "store-2.jpg").convert("RGB")
    im.resize((int(im.width * 0.7), int(im.height * 0.7))).save(reencoded, quality=60)
    cross = tmp / "gs-049-under-gs-006.jpg"
    shutil.copy(GROCERY / "images" / "gs-049" / "packshot.jpg", cross)
    rows += [(str(byte_copy), "gs-000", titles["gs-000"]), (str(reencoded), "gs-001", titles["gs-001"]),
             (str(cross), "gs-006", titles["gs-006"])]
    listing = tmp / "list.csv"
    with open(listing, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("path", "product", "title"), *rows])
    report = embed(listing, models=[MODEL], store=tmp / "st")
    assert report.found == 21 and report.models[0].embedded == 20  # the byte copy repeats gs-000's store-1
    return tmp


def pair_set(table, a="a", b="b"):
    return {frozenset((x, y)) for x, y in zip(table[a], table[b])}


def test_photos_repeated_within_a_product_are_found(planted):
    from vrec.search.dupes import find_dupes

    r = find_dupes(planted / "st", MODEL)
    assert r.threshold == 0.95 and r.scope == "photos"
    t = r.table.set_index("photo_b")
    # the byte copy was never embedded: vrec embed keeps one of a product's byte-identical photos
    assert str(planted / "gs-000-copy.jpg") not in t.index and str(planted / "gs-000-copy.jpg") not in set(r.table["photo_a"])
    reenc = t.loc[str(planted / "gs-001-reencoded.jpg")]
    assert not bool(reenc["identical"]) and reenc["photo_a"].endswith("gs-001/store-2.jpg")
    assert 0.95 <= reenc["score"] < 0.999 and reenc["title"] == "Granny Smith"
    assert (r.table["product"] == r.table["a"].str.split("/").str[0]).all()  # within one product only
    assert len(r.table) == 1, r.table  # nothing else: distinct photos are not repeats


def test_products_sharing_a_photo_are_found_and_similar_products_are_not(planted):
    from vrec.search.dupes import find_dupes

    r = find_dupes(planted / "st", MODEL, scope="products")
    assert pair_set(r.table) == {frozenset(("gs-006", "gs-049"))}, r.table
    row = r.table.iloc[0]
    assert bool(row["identical"]) and row["score"] > 0.999 and row["photo_a"].endswith("gs-049-under-gs-006.jpg")
    assert row["photo_b"].endswith("gs-049/packshot.jpg")
    assert (row["a"], row["b"], row["title_a"]) == ("gs-006", "gs-049", "Banana")
    # two apples, two Alpro yoghurts: same kind, not the same product
    scores = find_dupes(planted / "st", MODEL, scope="products", threshold=0.5).table
    close = scores.set_index(["a", "b"])["score"]
    assert close.get(("gs-049", "gs-050"), 0) < 0.95 and close.get(("gs-000", "gs-001"), 0) < 0.95


def test_labelled_pairs_calibrate_the_threshold(planted, tmp_path):
    from vrec.search.dupes import find_dupes

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b,duplicate\ngs-006,gs-049,1\ngs-049,gs-050,0\ngs-000,gs-001,false\ngs-000,gs-010,no\n")
    r = find_dupes(planted / "st", MODEL, scope="products", pairs=pairs, threshold=0.3)
    cal = r.calibration
    assert r.threshold == 0.3 and cal["pairs"] == 4 and cal["duplicates"] == 1
    assert cal["recall"] == 1.0 and cal["precision"] < 1.0  # 0.3 calls the similar products duplicates too
    assert cal["best"]["f1"] == 1.0 and cal["best"]["threshold"] > 0.9
    used = find_dupes(planted / "st", MODEL, scope="products", pairs=pairs)  # no --threshold: the best F1's
    assert used.threshold == cal["best"]["threshold"] and "best F1" in used.threshold_source
    assert used.calibration["precision"] == used.calibration["recall"] == 1.0


def test_cli_json_csv_and_table(planted, tmp_path):
    st = planted / "st"
    out = json.loads(vrec("dupes", "--store", st, "--model", MODEL, "--format", "json").stdout)
    assert out["threshold"] == 0.95 and out["total"] == 1 and {p["product"] for p in out["pairs"]} == {"gs-001"}
    lines = vrec("dupes", "--store", st, "--model", MODEL, "--scope", "products", "--format", "csv").stdout.splitlines()
    assert lines[0].startswith("a,b,title_a,title_b,") and len(lines) == 2 and "gs-006" in lines[1]
    res = vrec("dupes", "--store", st, "--model", MODEL, "--scope", "products", "--threshold", "0.9", "--limit", "1")
    assert "gs-006" in res.stdout and "more pair" in res.stdout
    none = vrec("dupes", "--store", st, "--model", MODEL, "--threshold", "1", "--scope", "products",
                "--format", "json")
    assert json.loads(none.stdout)["total"] == 1  # the same bytes still count
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b,duplicate\ngs-001/3,gs-001/4,1\ngs-000/1,gs-001/1,0\n")
    res = vrec("dupes", "--store", st, "--model", MODEL, "--pairs", pairs)
    assert "Calibration" in res.stdout and "best F1" in res.stdout


def test_no_duplicates_says_so(shared_tiny_store):
    res = vrec("dupes", "--store", shared_tiny_store, "--model", "tiny-cnn")  # one photo per product
    assert res.stdout == "" and "no duplicates at threshold 0.95" in res.stderr
    assert "every product here has one photo" in res.stderr
    assert "not for tiny-cnn" in res.stderr  # an unmeasured model: the fallback, with a note


def test_clear_errors(planted, tmp_path):
    st = planted / "st"
    fails("dupes", "--store", st, "--model", MODEL, "--scope", "product", says="Unknown --scope 'product'")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\ngs-000,gs-001\n")
    fails("dupes", "--store", st, "--model", MODEL, "--scope", "products", "--pairs", bad,
          says="lacks the column 'duplicate'")
    bad.write_text("a,b,duplicate\ngs-000,gs-0001,1\n")
    fails("dupes", "--store", st, "--model", MODEL, "--scope", "products", "--pairs", bad,
          says="b 'gs-0001' is no product id")
    bad.write_text("a,b,duplicate\ngs-000,gs-001,maybe\n")
    fails("dupes", "--store", st, "--model", MODEL, "--scope", "products", "--pairs", bad, says="write 1 or 0")
    fails("dupes", "--store", st, "--model", MODEL, "--threshold", "2", says="--threshold must be between 0 and 1")


def test_large_stores_use_a_photo_index_never_the_product_index(planted, tmp_path, monkeypatch):
    """Above EXACT_BELOW photos the HNSW index answers -- if it is over photos: 'vrec index' on a store
    of products indexes product rows, which a photo search must not read as photo rows."""
    import vrec.search.dupes as dupes
    import vrec.store.index as index
    from vrec.store.store import Store

    st = tmp_path / "st"
    shutil.copytree(planted / "st", st)
    want = {s: pair_set(dupes.find_dupes(st, MODEL, scope=s).table) for s in dupes.SCOPES}
    monkeypatch.setattr(index, "EXACT_BELOW", 5)
    monkeypatch.setattr(dupes, "EXACT_BELOW", 5)
    index.build_index(Store(st).model(MODEL))  # what 'vrec index' builds here: products
    r = dupes.find_dupes(st, MODEL, batch=4)
    assert pair_set(r.table) == want["photos"] and "index is over products, not photos" in " ".join(r.notes)
    index.build_index(Store(st).photos(MODEL))
    for scope in dupes.SCOPES:
        r = dupes.find_dupes(st, MODEL, scope=scope, batch=4)
        assert pair_set(r.table) == want[scope] and not r.notes
