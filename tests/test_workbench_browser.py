"""The merchandiser's workbench in a real browser (headless Chromium driven by Playwright, as in
test_serve_browser.py): an item's panel (every field, all photos of a product, similar items by both
models, add to a collection; a keyboard dialog that Esc closes), "+ Collection" on each card, "More
results" up to 1,000, and a relevance floor with its notices. What the page shows is checked against
the JSON API's own answers.
"""
from __future__ import annotations

from urllib.parse import quote

import pytest
from test_serve_browser import (
    GROCERY,
    PHOTO,
    api,
    browser_page,
    ids,
    need_browser,
    post_photo,
    served,
    shown_ids,
    wait_ready,
    wait_view,
)

pytestmark = pytest.mark.slow  # a real browser against a real server: make test-fast leaves it out

ARGS = ("--model", "tiny-siglip", "--compare-with", "tiny-cnn")


def focused(page, js: str):
    """What JS says of the focused element (document.activeElement is `a`)."""
    return page.evaluate(f"(() => {{ const a = document.activeElement; return {js}; }})()")


def panel_title(page) -> str:
    return page.inner_text("#item-panel #panel-title")


def wait_panel(page, title: str) -> None:
    """Wait for the panel of this item, loaded (its fields and similar items shown)."""
    page.wait_for_function("""(title) => {
        const d = document.querySelector('#item-panel');
        return d && d.open && d.querySelector('#panel-title').textContent === title
            && d.querySelector('.panel-fields') && d.querySelector('.panel-add select');
    }""", arg=title)


def panel_similar(page, model: str) -> list[str]:
    return page.eval_on_selector_all(f"#item-panel .panel-similar-col[data-model='{model}'] .panel-sim",
                                     "bs => bs.map((b) => b.dataset.id)")


def create_collection(page, name: str, text: str, k: int = 2) -> dict:
    answer = page.evaluate("""async ([name, text, k]) => {
        const r = await fetch('/api/collections', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                   body: JSON.stringify({name, text, k})});
        return {status: r.status, body: await r.json()};
    }""", [name, text, k])
    assert answer["status"] in (200, 201), answer
    return answer["body"]


def collection_ids(page, name: str) -> list[str]:
    answer = api(page, "/api/collections/" + quote(name))
    assert answer["status"] == 200, answer
    return [i["id"] for i in answer["body"]["items"]]


def test_an_items_panel_shows_every_field_both_models_similar_items_and_adds_to_a_collection(tiny_store, tmp_path):
    sync_api = need_browser()
    with served(tiny_store, *ARGS, log=tmp_path / "serve.log") as url, browser_page(sync_api) as page:
        page.goto(url.split("?")[0] + "?q=red+bag")
        wait_ready(page)
        wait_view(page, "text", "red bag")
        first = shown_ids(page)[0]
        item = api(page, "/api/items/" + quote(first))["body"]
        page.click("#view-body .card-wrap >> nth=0 >> .card-tool.details")
        wait_panel(page, item["title"])

        # a dialog named by its heading; the focus is inside it
        dialog = page.get_by_role("dialog", name=item["title"])
        assert dialog.is_visible()
        assert focused(page, "!!a.closest('#item-panel')")
        # every field of the item: its id, size and each metadata column, with its value
        fields = dict(page.eval_on_selector_all("#item-panel .panel-fields tr",
                                                "rows => rows.map((r) => [r.dataset.field, r.querySelector('td').textContent])"))
        assert fields["id"] == first and fields["size"] == f"{item['width']} × {item['height']} px"
        for column, value in item["metadata"].items():
            shown = fields[column]
            assert shown == (f"{value:,}" if isinstance(value, int) else str(value)), (column, shown, value)
        assert page.get_attribute("#item-panel #panel-photo", "src") == "/thumb/" + first
        # similar items by both models, side by side, with the scores said to be not comparable
        for model in ("tiny-siglip", "tiny-cnn"):
            assert panel_similar(page, model) == ids(api(page, f"/api/similar/{quote(first)}?k=8&model={model}"))
        assert "not comparable" in page.inner_text("#item-panel .panel-note")
        page.screenshot(path=str(tmp_path / "panel.png"))

        # add to a new collection from the panel: it holds the item
        page.select_option("#item-panel .panel-add select", value="")
        page.fill("#item-panel .panel-add input[name='new']", "panel picks")
        page.click("#item-panel .panel-add button[type='submit']")
        page.wait_for_function("document.querySelector('#item-panel .panel-msg').textContent.startsWith('Added')")
        assert page.inner_text("#item-panel .panel-msg") == f"Added {item['title']} to “panel picks”."
        assert collection_ids(page, "panel picks") == [first]

        # a similar item clicked: its panel
        other = panel_similar(page, "tiny-cnn")[0]
        other_title = api(page, "/api/items/" + quote(other))["body"]["title"]
        page.click(f"#item-panel .panel-similar-col[data-model='tiny-cnn'] .panel-sim[data-id='{other}']")
        wait_panel(page, other_title)
        # added to the collection chosen before (it is preselected)
        assert page.eval_on_selector("#item-panel .panel-add select", "s => s.value") == "panel picks"
        page.click("#item-panel .panel-add button[type='submit']")
        page.wait_for_function("document.querySelector('#item-panel .panel-msg').textContent.startsWith('Added')")
        assert collection_ids(page, "panel picks") == [first, other]

        # Esc closes it, gives the focus back to the card's Details button, and does not go back a view
        page.keyboard.press("Escape")
        page.wait_for_function("!document.querySelector('#item-panel').open")
        assert focused(page, "a.classList.contains('details') && a.closest('.card-wrap').dataset.id") == first
        assert "q=red+bag" in page.url
        wait_view(page, "text", "red bag")

        # by keyboard: Enter on Details opens it, Tab stays inside, "All similar items" goes to the view
        page.keyboard.press("Enter")
        wait_panel(page, item["title"])
        for _ in range(6):
            page.keyboard.press("Tab")
            assert focused(page, "!!a.closest('#item-panel')")
        page.click("#item-panel .panel-all")
        wait_view(page, "similar", f"Similar to {item['title']}")
        assert not page.eval_on_selector("#item-panel", "d => d.open")

        # under a filter, the panel's similar items are among the filtered items, and it says so
        page.goto(url.split("?")[0] + "?q=red+bag&filter=colour%3Dred")
        wait_view(page, "text", "red bag")
        red = shown_ids(page)[0]
        page.click("#view-body .card-wrap >> nth=0 >> .card-tool.details")
        wait_panel(page, api(page, "/api/items/" + quote(red))["body"]["title"])
        for model in ("tiny-siglip", "tiny-cnn"):
            among = ids(api(page, f"/api/similar/{quote(red)}?k=8&model={model}&filter=colour%3Dred"))
            assert panel_similar(page, model) == among and among
        assert "colour=red" in page.inner_text("#item-panel .panel-among")
        assert page.js_errors == []


def test_a_products_panel_shows_all_its_photos_to_switch_between(tmp_path):
    """A catalog of products (4 grocery products of 8 photos): the panel shows every photo; one chosen
    in the strip is shown large. One model: its similar items alone."""
    sync_api = need_browser()
    if not (GROCERY / "feed.csv").exists():
        pytest.skip("the shared grocery sample (../shared/datasets/grocery-products) is not here")
    from vrec.ingest.embed import embed

    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "images").symlink_to(GROCERY / "images")
    lines = (GROCERY / "feed.csv").read_text(encoding="utf-8").splitlines()
    (feed / "feed.csv").write_text("\n".join(lines[:5]) + "\n", encoding="utf-8")
    store = tmp_path / "store"
    embed(feed / "feed.csv", models=["effnet-lite0"], store=store)
    with served(store, "--model", "effnet-lite0", log=tmp_path / "serve.log") as url, browser_page(sync_api) as page:
        page.goto(url.split("?")[0] + "?similar=gs-001")
        wait_ready(page)
        wait_view(page, "similar", "Similar to")
        first = shown_ids(page)[0]
        item = api(page, "/api/items/" + quote(first))["body"]
        page.click("#view-body .card-wrap >> nth=0 >> .card-tool.details")
        wait_panel(page, item["title"])
        strip = page.eval_on_selector_all("#item-panel .panel-thumb", "bs => bs.map((b) => b.dataset.photo)")
        assert strip == item["photo_ids"] and len(strip) == 8
        page.click("#item-panel .panel-thumb >> nth=4")
        assert page.get_attribute("#item-panel #panel-photo", "src") == "/thumb/" + quote(strip[4])
        assert page.get_attribute("#item-panel .panel-thumb >> nth=4", "aria-pressed") == "true"
        assert page.locator("#item-panel .panel-similar-col").count() == 1
        assert "not comparable" not in page.inner_text("#item-panel")
        assert page.js_errors == []


def test_plus_collection_on_cards_asks_once_which_collection_then_adds_with_a_confirmation(tiny_store, tmp_path):
    sync_api = need_browser()
    with served(tiny_store, *ARGS, log=tmp_path / "serve.log") as url, browser_page(sync_api) as page:
        page.goto(url.split("?")[0] + "?q=shirt")
        wait_ready(page)
        wait_view(page, "text", "shirt")
        create_collection(page, "shirts to feature", "green shirt", k=1)
        create_collection(page, "other", "bag", k=1)
        before = collection_ids(page, "shirts to feature")
        shown = [i for i in shown_ids(page) if i not in before]
        titles = page.eval_on_selector_all("#view-body .card .title", "ts => ts.map((t) => t.textContent)")
        title_of = dict(zip(shown_ids(page), titles))

        # the first time: a dialog asks which collection
        card = f"#view-body .card-wrap[data-id='{shown[0]}'] .card-tool.collect"
        page.click(card)
        chooser = page.get_by_role("dialog", name=f"Add {title_of[shown[0]]} to a collection")
        chooser.wait_for()
        page.select_option("#panel-chooser select", value="shirts to feature")
        page.click("#panel-chooser button[type='submit']")
        page.wait_for_selector("#panel-toast:not([hidden])")
        assert page.inner_text("#panel-toast").startswith(f"Added {title_of[shown[0]]} to “shirts to feature”.")
        assert page.inner_text(card) == "✓ In collection"
        assert focused(page, "a.closest('.card-wrap')?.dataset.id") == shown[0]  # back on the card's button

        # then straight in, with a confirmation each time
        page.click(f"#view-body .card-wrap[data-id='{shown[1]}'] .card-tool.collect")
        page.wait_for_function("(t) => document.querySelector('#panel-toast').textContent.startsWith(t)",
                               arg=f"Added {title_of[shown[1]]} to “shirts to feature”.")
        assert not page.eval_on_selector("#panel-chooser", "d => d.open")
        assert collection_ids(page, "shirts to feature") == [*before, shown[0], shown[1]]
        # one already in it is said so, not added twice
        page.click(f"#view-body .card-wrap[data-id='{shown[1]}'] .card-tool.collect")
        page.wait_for_function("(t) => document.querySelector('#panel-toast').textContent.startsWith(t)",
                               arg=f"{title_of[shown[1]]} is in “shirts to feature” already.")
        assert collection_ids(page, "shirts to feature") == [*before, shown[0], shown[1]]
        # "Change collection" asks again
        page.click("#panel-toast button")
        page.wait_for_selector("#panel-chooser[open]")
        page.keyboard.press("Escape")
        page.wait_for_function("!document.querySelector('#panel-chooser').open")
        assert "q=shirt" in page.url
        assert page.js_errors == []


def test_more_results_brings_twice_as_many_and_the_keyboard_goes_on_at_the_first_new_one(shared_tiny_store, tmp_path):
    sync_api = need_browser()
    with served(shared_tiny_store, *ARGS, log=tmp_path / "serve.log") as url, browser_page(sync_api) as page:
        base = url.split("?")[0]
        page.goto(base + "?q=bag")
        wait_ready(page)
        wait_view(page, "text", "bag")
        assert len(shown_ids(page)) == 12
        assert page.inner_text("#more-results") == "More results (24 in all)"
        page.click("#more-results")
        page.wait_for_function("document.querySelectorAll('#view-body .card').length === 24")
        assert shown_ids(page) == ids(api(page, "/api/search/text?q=bag&k=24"))
        assert "k=24" in page.url and page.eval_on_selector("#k", "s => s.value") == "24"
        page.wait_for_function("document.activeElement.classList.contains('card')")
        assert focused(page, "a.dataset.id") == shown_ids(page)[12]
        # the catalog's 60 items at 96: every match shown, no more to ask for
        page.click("#more-results")
        page.wait_for_function("document.querySelectorAll('#view-body .card').length === 48")
        page.click("#more-results")
        page.wait_for_function("document.querySelectorAll('#view-body .card').length === 60")
        assert page.locator("#more-results").count() == 0

        # similar items too, and the most a request takes: 1,000
        page.goto(base + "?similar=bags/bag-tote-red")
        wait_view(page, "similar", "Similar to")
        page.click("#more-results")
        page.wait_for_function("document.querySelectorAll('#view-body .card').length === 24")
        assert shown_ids(page) == ids(api(page, "/api/similar/bags/bag-tote-red?k=24"))
        # and a photo search (at the 24 results asked for last; More results: 48)
        page.set_input_files("#photo-input", str(PHOTO))
        wait_view(page, "image", PHOTO.name)
        page.wait_for_function("document.querySelectorAll('#view-body .card').length === 24")
        page.click("#more-results")
        page.wait_for_function("document.querySelectorAll('#view-body .card').length === 48")
        assert shown_ids(page) == ids(post_photo(page, PHOTO, k=48))
        page.goto(base + "?q=bag&k=1000")
        wait_view(page, "text", "bag")
        assert len(shown_ids(page)) == 60
        assert page.js_errors == []


def test_a_relevance_floor_hides_weaker_matches_and_weak_results_carry_a_notice(shared_tiny_store, tmp_path):
    sync_api = need_browser()
    with served(shared_tiny_store, *ARGS, log=tmp_path / "serve.log") as url, browser_page(sync_api) as page:
        page.goto(url.split("?")[0] + "?q=red+bag")
        wait_ready(page)
        wait_view(page, "text", "red bag")
        results = api(page, "/api/search/text?q=red%20bag&k=12")["body"]["results"]
        probs = [r["probability"] for r in results]
        assert all(isinstance(p, float) for p in probs)
        # off by default: everything shown
        assert page.eval_on_selector("#floor", "f => f.value") == ""
        assert page.locator("#view-body .floor-note").count() == 0
        # every match weak (the best under 1%): a notice above the results, else none
        weak = page.locator("#view-body .weak-note")
        if max(probs) < 0.01:
            assert weak.count() == 1 and weak.inner_text().startswith("Low confidence: every match is weak")
        else:
            assert weak.count() == 0

        # a floor between the 6th and 7th best: the weaker ones hidden, and how many said
        floor = (probs[5] + probs[6]) / 2
        page.fill("#floor", repr(floor * 100))
        kept = [r["id"] for r in results if r["probability"] >= floor]
        hidden = len(results) - len(kept)
        assert hidden > 0
        visible = page.eval_on_selector_all("#view-body .card", "cs => cs.filter((c) => c.offsetParent).map((c) => c.dataset.id)")
        assert visible == kept
        note = page.inner_text("#view-body .floor-note")
        assert note.startswith(f"{hidden} weaker match{'' if hidden == 1 else 'es'} hidden"), note
        page.screenshot(path=str(tmp_path / "floor.png"))
        # "Show them" turns it off
        page.click("#view-body .floor-note button")
        assert page.eval_on_selector_all("#view-body .card", "cs => cs.filter((c) => c.offsetParent).length") == 12
        assert page.eval_on_selector("#floor", "f => f.value") == ""

        # it stays set for the next search; similar items (no match probability) are never hidden
        page.fill("#floor", repr(floor * 100))
        page.locator("#view-body .card").first.click()
        wait_view(page, "similar", "Similar to")
        assert page.eval_on_selector_all("#view-body .card", "cs => cs.filter((c) => c.offsetParent).length") == 12
        assert page.locator("#view-body .floor-note, #view-body .weak-note").count() == 0
        assert page.js_errors == []


def test_side_by_side_scores_are_labelled_not_comparable(shared_tiny_store, tmp_path):
    sync_api = need_browser()
    with served(shared_tiny_store, *ARGS, log=tmp_path / "serve.log") as url, browser_page(sync_api) as page:
        page.goto(url.split("?")[0] + "?similar=bags/bag-tote-red&compare=1")
        wait_ready(page)
        wait_view(page, "similar", "Similar to")
        assert "Scores are not comparable between the two models" in page.inner_text("#view-head .scores-note")
        assert page.eval_on_selector_all("#view-body .column .scale", "s => s.map((x) => x.textContent)") == [
            "scores on tiny-cnn's own scale", "scores on tiny-siglip's own scale"]

