"""The page's "Match by" chooser (hybrid / keyword / vector text search) in a real browser, and what
/api/health says of the keyword index, over the grocery feed's packshots with a keyword index.

Headless Chromium driven by Playwright, started as tests/test_serve_browser.py starts it; skips when
either, or the grocery dataset (../shared/datasets), is absent.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from clihelp import vrec
from test_hybrid import GROCERY, packshot_feed
from test_serve_browser import api, browser_page, need_browser, served, shown_ids, wait_photos, wait_ready, wait_view

from vrec.store import keywords as kw

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (GROCERY / "feed.csv").is_file(),
                                 reason="the grocery dataset (../shared/datasets) is absent")]


@pytest.fixture(scope="module")
def grocery_store(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("grocery-modes")
    vrec("embed", packshot_feed(tmp / "feed.csv"), "--model", "tiny-siglip", "--model", "tiny-cnn", "--store", tmp / "st")
    vrec("index", "--store", tmp / "st")
    return tmp / "st"


def test_health_says_which_columns_the_keyword_index_covers_and_facets_follow_the_mode(grocery_store):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vrec.serve.app import create_app

    health = TestClient(create_app(grocery_store, model="tiny-siglip")).get("/api/health").json()
    assert health["text_mode"] == "hybrid" and health["keywords"]["documents"] == 81
    assert {"title", "brand"} <= set(health["keywords"]["columns"]) and "image_link" not in health["keywords"]["columns"]
    # the facets of a text search count the results of the same mode
    c = TestClient(create_app(grocery_store, model="tiny-siglip"))
    words = c.get("/api/facets", params={"q": "Oatly", "mode": "keyword"}).json()
    assert words["items"] == 2 and {v["value"] for f in words["categorical"] if f["column"] == "brand"
                                    for v in f["values"]} == {"Oatly"}
    assert c.get("/api/facets", params={"q": "Oatly", "mode": "hybrid"}).json()["items"] == 12
    for bad in ("2", "nan", "-0.5"):
        r = c.get("/api/search/text", params={"q": "Oatly", "keyword_weight": bad})
        assert r.status_code == 400 and r.json()["error"].startswith("keyword_weight "), r.json()


def test_a_merchandiser_chooses_words_or_meaning_and_the_address_keeps_it(grocery_store, tmp_path):
    sync_api = need_browser()
    with served(grocery_store, "--model", "tiny-siglip", log=tmp_path / "serve.log") as url, \
            browser_page(sync_api) as page:
        page.goto(url)
        wait_ready(page)
        mode = page.locator("#mode")
        assert mode.is_enabled() and mode.input_value() == "hybrid"  # the server's default with a keyword index
        labels = page.eval_on_selector_all("#mode option", "os => os.map((o) => o.textContent)")
        assert labels == ["Words and meaning", "Words only", "Meaning only"]
        assert "title" in page.inner_text("#mode-help") and "brand" in page.inner_text("#mode-help")

        # hybrid: the brand's products first, each with a readable "found by" badge
        page.fill("#q", "Oatly")
        page.press("#q", "Enter")
        wait_view(page, "text", "Oatly")
        wait_photos(page)
        answer = api(page, "/api/search/text?q=Oatly&k=12")["body"]
        assert shown_ids(page) == [r["id"] for r in answer["results"]]
        first_two = page.locator("#view-body .card").nth(0), page.locator("#view-body .card").nth(1)
        for card in first_two:
            assert "Oatly" in card.locator(".title").inner_text()
            badge = card.locator(".badge.leg")
            # seen: "words + meaning"; heard (a screen reader, the card's name): "found by words + meaning"
            assert badge.text_content() == "found by words + meaning" and "words" in badge.get_attribute("title").lower()
            assert badge.locator(".sr-only").text_content() == "found by "
        assert "mode=" not in page.url  # the default is left out of the address

        # meaning only: the address says so, the results are the vector leg's, without badges
        mode.select_option("vector")
        page.wait_for_function("location.search.includes('mode=vector')")
        wait_view(page, "text", "Oatly")
        wait_photos(page)
        vector = api(page, "/api/search/text?q=Oatly&k=12&mode=vector")["body"]
        assert shown_ids(page) == [r["id"] for r in vector["results"]] != [r["id"] for r in answer["results"]]
        assert page.locator("#view-body .badge.leg").count() == 0
        assert page.inner_text("#mode-help").startswith("Meaning only")

        # a reload keeps the choice; words only: Oatly's products and nothing else
        page.reload()
        wait_ready(page)
        wait_view(page, "text", "Oatly")
        assert mode.input_value() == "vector" and page.inner_text("#mode-help").startswith("Meaning only")
        mode.select_option("keyword")
        page.wait_for_function("location.search.includes('mode=keyword')")
        wait_view(page, "text", "Oatly")
        wait_photos(page)
        titles = page.eval_on_selector_all("#view-body .card .title", "ts => ts.map((t) => t.textContent)")
        assert len(titles) == 2 and all("Oatly" in t for t in titles)
        assert page.eval_on_selector_all("#view-body .badge.leg", "bs => bs.map((b) => b.textContent)") \
            == ["found by words"] * 2

        # a model without a text tower: "Meaning only" is off while it is chosen; words and meaning instead
        mode.select_option("vector")
        page.wait_for_function("location.search.includes('mode=vector')")
        wait_view(page, "text", "Oatly")
        page.select_option("#model", "tiny-cnn")
        page.wait_for_function("location.search.includes('model=tiny-cnn')")
        wait_view(page, "text", "Oatly")
        wait_photos(page)
        assert mode.input_value() == "hybrid" and page.is_hidden("#error")
        assert page.locator('#mode option[value="vector"]').is_disabled()
        titles = page.eval_on_selector_all("#view-body .card .title", "ts => ts.map((t) => t.textContent)")
        assert all("Oatly" in t for t in titles[:2])
        page.select_option("#model", "tiny-siglip")
        page.wait_for_function("!location.search.includes('model=tiny-cnn')")
        assert page.locator('#mode option[value="vector"]').is_enabled()

        # without a keyword index the chooser is off and says how to turn it on
        (grocery_store / kw.FILE).rename(grocery_store / "keywords.off")
        try:
            page.goto(url + "?q=Oatly&mode=keyword")
            wait_ready(page)
            wait_view(page, "text", "Oatly")
            assert mode.is_disabled() and "vrec index" in page.inner_text("#mode-help")
            assert page.is_hidden("#error")  # the address's mode is dropped, not sent
        finally:
            (grocery_store / "keywords.off").rename(grocery_store / kw.FILE)
        assert page.js_errors == []


def test_min_match_says_it_is_not_applied_to_results_without_a_match_probability(grocery_store, tmp_path):
    sync_api = need_browser()
    with served(grocery_store, "--model", "tiny-siglip", log=tmp_path / "serve.log") as url, \
            browser_page(sync_api) as page:
        page.goto(url + "?q=apple")  # words and meaning: ranks, no match probability
        wait_ready(page)
        wait_view(page, "text", "apple")
        shown = len(shown_ids(page))
        page.fill("#floor", "50")
        page.press("#floor", "Enter")
        note = page.locator("#view-body .floor-note")
        assert "not applied" in note.inner_text() and "meaning only" in note.inner_text()
        assert page.locator("#view-body .card:visible").count() == shown  # nothing hidden, and it says why

        page.select_option("#mode", "vector")  # meaning only: the floor hides the weak matches, and says so
        page.wait_for_function("location.search.includes('mode=vector')")
        wait_view(page, "text", "apple")
        assert "hidden" in page.locator("#view-body .floor-note").inner_text()
        assert "not applied" not in page.inner_text("#view-body")
        assert page.js_errors == []
