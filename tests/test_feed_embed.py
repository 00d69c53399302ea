"""Product feeds end to end, on the real grocery catalog: a feed's products embedded with all their
photos (paths, or URLs served by a real local HTTP server), and every answer a list of products."""
import csv
import functools
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from vrec.ingest.embed import embed
from vrec.search.query import search_image
from vrec.store.store import Store

GROCERY = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "grocery-products"
pytestmark = pytest.mark.skipif(not GROCERY.is_dir(), reason="the grocery dataset (../shared/datasets) is absent")
MODEL = "effnet-lite0"
PRODUCTS = 10  # a slice of the feed keeps the embeds quick: 10 products x 8 photos


def feed_slice(out: Path, base: str, products: int = PRODUCTS, broken: str | None = None) -> Path:
    """The first products of the Google feed, with their photo locations under ``base`` (a folder or a URL)."""
    rows = list(csv.DictReader(open(GROCERY / "feed.csv", encoding="utf-8")))[:products]
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            extra = [f"{base}/{p}" for p in r["additional_image_link"].split(",")]
            if broken and r["id"] == broken:
                extra.append(f"{base}/images/{broken}/missing.jpg")
            w.writerow({**r, "image_link": f"{base}/{r['image_link']}", "additional_image_link": ",".join(extra)})
    return out


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the grocery folder; counts full bodies sent (200) and 'not modified' answers (304)."""

    counts: dict = {}

    def log_request(self, code="-", size="-"):
        self.counts[int(code)] = self.counts.get(int(code), 0) + 1


@pytest.fixture(scope="module")
def photo_server():
    handler = functools.partial(CountingHandler, directory=str(GROCERY))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", CountingHandler.counts
    server.shutdown()


@pytest.fixture(scope="module")
def local_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("feed")
    feed = feed_slice(tmp / "feed.csv", str(GROCERY))
    report = embed(feed, models=[MODEL], store=tmp / "st")
    return tmp / "st", report


def vectors_by_photo(store) -> dict:
    ms = Store(store).photos(MODEL)
    items = ms.items()
    keys = [f"{p}:{n}" for p, n in zip(items["product"], items["position"])]
    return dict(zip(keys, ms.vectors()))


def test_a_feed_embeds_every_photo_of_every_product(local_store):
    store, report = local_store
    assert report.products == PRODUCTS and report.found == PRODUCTS * 8 and not report.skipped
    ms = Store(store).model(MODEL)
    assert len(ms) == PRODUCTS  # one row per product
    assert sorted(ms.items()["photos"]) == [8] * PRODUCTS
    photos = Store(store).photos(MODEL).items()
    assert (photos[photos["position"] == 1]["path"].str.endswith("packshot.jpg")).all()


def test_a_shoppers_photo_finds_products_never_the_same_one_twice(local_store):
    store, _ = local_store
    for scoring in ("mean", "max", "main"):
        r = search_image(str(GROCERY / "query-photos" / "gs-000-1.jpg"), k=PRODUCTS, model=MODEL, store=store,
                         product_score=scoring)
        ids = r.table["id"].tolist()
        assert len(ids) == len(set(ids)) == PRODUCTS, scoring
        assert r.table["photo"].str.startswith(tuple(i + "/" for i in ids)).all()  # each with one of its photos


def test_the_same_feed_over_http_embeds_identically_and_a_rerun_downloads_nothing(tmp_path, local_store,
                                                                                   photo_server):
    base, counts = photo_server
    feed = feed_slice(tmp_path / "feed.csv", base)
    cache, store = tmp_path / "cache", tmp_path / "st"
    from vrec.ingest.feed_source import FeedOptions

    counts.clear()
    first = embed(feed, models=[MODEL], store=store, feed=FeedOptions(cache=str(cache)))
    assert first.products == PRODUCTS and first.models[0].embedded == PRODUCTS * 8
    assert counts.get(200) == PRODUCTS * 8
    here, there = vectors_by_photo(local_store[0]), vectors_by_photo(store)
    assert here.keys() == there.keys()
    assert max(float(np.abs(here[k] - there[k]).max()) for k in here) < 1e-5
    counts.clear()
    second = embed(feed, models=[MODEL], store=store, feed=FeedOptions(cache=str(cache)))
    assert counts.get(200, 0) == 0 and counts.get(304) == PRODUCTS * 8  # conditional requests only
    assert second.models[0].embedded == 0 and second.models[0].unchanged == PRODUCTS * 8


def test_a_photo_that_cannot_be_downloaded_is_listed_and_tried_again(tmp_path, photo_server):
    base, counts = photo_server
    feed = feed_slice(tmp_path / "feed.csv", base, products=2, broken="gs-001")
    from vrec.ingest.feed_source import FeedOptions

    options = FeedOptions(cache=str(tmp_path / "cache"))
    report = embed(feed, models=[MODEL], store=tmp_path / "st", feed=options)
    assert [(p.rsplit("/", 1)[-1], "404" in why) for p, why in report.skipped] == [("missing.jpg", True)]
    assert report.models[0].embedded == 16
    counts.clear()
    again = embed(feed, models=[MODEL], store=tmp_path / "st", feed=options)
    assert len(again.skipped) == 1 and counts.get(404) == 1  # asked again, not remembered as failed


def test_a_photo_repeated_byte_for_byte_within_a_product_is_embedded_once(tmp_path):
    import shutil

    feed = feed_slice(tmp_path / "feed.csv", str(GROCERY), products=2)
    copy = tmp_path / "copy-of-packshot.jpg"
    shutil.copyfile(GROCERY / "images" / "gs-000" / "packshot.jpg", copy)
    rows = list(csv.DictReader(open(feed, encoding="utf-8")))
    rows[0]["additional_image_link"] += f",{copy}"
    with open(feed, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    report = embed(feed, models=[MODEL], store=tmp_path / "st")
    assert report.found == 17 and report.models[0].embedded == 16
    assert any("repeat another photo of the same product" in n and "gs-000/1" in n for n in report.notes)
    assert len(Store(tmp_path / "st").photos(MODEL)) == 16


def test_a_cache_that_is_not_a_folder_is_one_clear_error(tmp_path, photo_server):
    from vrec.base.errors import CatalogError
    from vrec.ingest.feed_source import FeedOptions

    feed = feed_slice(tmp_path / "feed.csv", photo_server[0], products=1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CatalogError, match="--cache .* is a file, not a folder"):
        embed(feed, models=[MODEL], store=tmp_path / "st", feed=FeedOptions(cache=str(tmp_path / "file")))


class SlowHandler(CountingHandler):
    def do_GET(self):
        import time

        time.sleep(0.3)
        super().do_GET()


def test_ctrl_c_while_downloading_keeps_what_was_fetched_and_the_next_run_resumes(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    handler = functools.partial(SlowHandler, directory=str(GROCERY))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        feed = feed_slice(tmp_path / "feed.csv", f"http://127.0.0.1:{server.server_address[1]}", products=PRODUCTS)
        cmd = [str(Path(sys.executable).with_name("vrec"))]
        proc = subprocess.Popen([*cmd, "embed", str(feed), "-m", MODEL, "--store", str(tmp_path / "st"),
                                 "--cache", str(tmp_path / "cache")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list((tmp_path / "cache").rglob("*.img"))) < 8:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "Interrupted" in err and "Traceback" not in err, err
        kept = len(list((tmp_path / "cache").rglob("*.img")))
        assert 8 <= kept < PRODUCTS * 8
        assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and not p.name.endswith((".img", ".json"))]
        CountingHandler.counts.clear()
        from vrec.ingest.feed_source import FeedOptions

        again = embed(feed, models=[MODEL], store=tmp_path / "st", feed=FeedOptions(cache=str(tmp_path / "cache")))
        assert again.models[0].embedded == PRODUCTS * 8 and not again.skipped
        assert CountingHandler.counts.get(200) == PRODUCTS * 8 - kept  # only what was missing
    finally:
        server.shutdown()


def test_a_new_main_photo_in_the_feed_becomes_the_main_photo(tmp_path):
    feed = feed_slice(tmp_path / "feed.csv", str(GROCERY), products=2)
    embed(feed, models=[MODEL], store=tmp_path / "st")
    rows = list(csv.DictReader(open(feed, encoding="utf-8")))
    extra = rows[0]["additional_image_link"].split(",")
    rows[0]["image_link"], extra[0] = extra[0], rows[0]["image_link"]  # the merchandiser swaps two photos
    rows[0]["additional_image_link"] = ",".join(extra)
    with open(feed, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    report = embed(feed, models=[MODEL], store=tmp_path / "st")
    assert report.models[0].changed == 2 and not any("repeat" in n for n in report.notes)
    photos = Store(tmp_path / "st").photos(MODEL).items().set_index("id")
    assert photos.loc["gs-000/1", "path"].endswith("store-1.jpg") and photos.loc["gs-000/2", "path"].endswith("packshot.jpg")
    fresh = embed(feed, models=[MODEL], store=tmp_path / "fresh")
    a, b = vectors_by_photo(tmp_path / "st"), vectors_by_photo(tmp_path / "fresh")
    assert fresh.models[0].embedded == 16 and max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-5


def test_a_product_leaving_the_feed_leaves_the_store_and_verify_rereads_every_photo(tmp_path):
    feed = feed_slice(tmp_path / "feed.csv", str(GROCERY), products=3)
    embed(feed, models=[MODEL], store=tmp_path / "st")
    feed_slice(tmp_path / "feed.csv", str(GROCERY), products=2)  # the third product is no longer sold
    report = embed(feed, models=[MODEL], store=tmp_path / "st")
    assert report.models[0].removed == 8 and report.models[0].total == 16
    assert sorted(Store(tmp_path / "st").model(MODEL).items()["id"]) == ["gs-000", "gs-001"]
    hits = search_image(str(GROCERY / "query-photos" / "gs-002-1.jpg"), k=5, model=MODEL, store=tmp_path / "st")
    assert set(hits.table["id"]) == {"gs-000", "gs-001"}
    verified = embed(feed, models=[MODEL], store=tmp_path / "st", verify=True)
    assert verified.models[0].unchanged == 16 and verified.models[0].embedded == 0
