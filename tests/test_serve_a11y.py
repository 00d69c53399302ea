"""The page's accessibility and its phone layout, in a real browser (headless Chromium driven by
Playwright, as in test_serve_browser.py).

axe-core (shipped inside the axe-playwright-python package: nothing is fetched) checks the main views
-- text results with their facets open, an item's panel, similar items, side by side, a photo search,
the crop dialog, the collections view and an error -- and finds no serious or critical violation (WCAG 2.1 AA contrast, names, labels).
At a phone's 390x844 the filters and help fold away, the first result shows without scrolling, and
side by side shows the two models as two narrow columns, rank beside rank.
"""
from __future__ import annotations

import pytest
from test_serve_browser import PHOTO, browser_page, need_browser, served, wait_photos, wait_ready, wait_view

pytestmark = pytest.mark.slow

SERVE = ("--model", "tiny-siglip", "--compare-with", "tiny-cnn")


def need_axe():
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError:
        pytest.skip("axe-playwright-python is not installed (it is in the test extra: pip install -e '.[test]')")
    return Axe()


def serious(axe, page, view: str) -> list[str]:
    """The serious and critical violations axe finds on the page as shown, one line each."""
    found = axe.run(page).response["violations"]
    return [f"{view}: {v['id']} ({v['impact']}): {v['help']} -- "
            + "; ".join(n["target"][0] if isinstance(n["target"][0], str) else str(n["target"]) for n in v["nodes"][:4])
            for v in found if v["impact"] in ("serious", "critical")]


def test_axe_finds_no_serious_violation_on_the_main_views(tiny_store, tmp_path):
    sync_api = need_browser()
    axe = need_axe()
    found = []
    with served(tiny_store, *SERVE, log=tmp_path / "serve.log") as url, browser_page(sync_api) as page:
        page.goto(url)
        wait_ready(page)
        found += serious(axe, page, "home")

        page.fill("#q", "red bag")
        page.press("#q", "Enter")
        wait_view(page, "text", "red bag")
        wait_photos(page)
        assert page.get_attribute("#facets", "open") is not None  # the facets beside the results, open
        found += serious(axe, page, "text results with facets")

        page.click("#view-body .card-wrap >> nth=0 >> .card-tool.details")  # the item's panel (panel.js)
        page.wait_for_function("() => { const d = document.querySelector('#item-panel');"
                               " return d && d.open && d.querySelector('.panel-fields'); }")
        found += serious(axe, page, "item panel")
        page.keyboard.press("Escape")
        page.wait_for_selector("#item-panel:not([open])", state="attached")

        page.locator("#view-body .card").first.click()
        wait_view(page, "similar", "Similar to")
        wait_photos(page)
        found += serious(axe, page, "similar")

        page.click("#compare-toggle")
        page.wait_for_selector(".compare")
        wait_photos(page, ".compare")
        found += serious(axe, page, "side by side")
        page.emulate_media(color_scheme="dark")  # the page follows the system's dark mode: its colours too
        found += serious(axe, page, "side by side, dark")
        page.emulate_media(color_scheme="light")

        page.set_input_files("#photo-input", str(PHOTO))
        wait_view(page, "image", PHOTO.name)
        wait_photos(page)
        found += serious(axe, page, "photo search")
        page.click("#crop-button")
        page.wait_for_selector("#crop-dialog[open]")
        found += serious(axe, page, "crop dialog")
        page.keyboard.press("Escape")

        page.fill("#filters", "nope=1")
        page.press("#filters", "Enter")
        page.wait_for_selector("#error:not([hidden])")
        found += serious(axe, page, "error")
        page.fill("#filters", "")

        made = page.evaluate("""async () => (await fetch('/api/collections', {method: 'POST',
            headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({name: 'red bags', text: 'red bag', k: 8})})).status""")
        assert made == 200
        page.click("#collections-button")
        page.wait_for_selector("#coll-view:not([hidden])")
        page.get_by_text("red bags").first.click()
        page.wait_for_function("document.querySelectorAll('#coll-view .coll-item').length === 8")
        found += serious(axe, page, "collection")
        assert page.js_errors == []
    assert found == [], "\n".join(found)


def top(page, selector: str) -> float:
    return page.evaluate("(s) => document.querySelector(s).getBoundingClientRect().top + window.scrollY", selector)


def test_on_a_phone_the_first_result_shows_at_once_and_side_by_side_keeps_both_models_near(shared_tiny_store, tmp_path):
    sync_api = need_browser()
    with served(shared_tiny_store, *SERVE, log=tmp_path / "serve.log") as url, \
            browser_page(sync_api, 390, 844) as page:
        page.goto(url.split("?")[0] + "?q=red+bag")
        wait_ready(page)
        wait_view(page, "text", "red bag")
        wait_photos(page)
        # filters and their help fold away under one line; a tap opens them
        assert page.is_hidden("#filters") and page.is_hidden("#filter-help")
        page.click("#options-fold > summary")
        assert page.is_visible("#filters") and page.is_visible("#filter-help")
        page.click("#options-fold > summary")
        assert page.is_hidden("#filters")
        # the facets fold too, and the first result starts within the first screen, unscrolled
        assert page.get_attribute("#facets", "open") is None
        assert page.evaluate("window.scrollY") == 0
        first = page.locator("#view-body .card").first.bounding_box()
        assert first["y"] + 120 < 844, first  # its photo is in sight, not just its top edge
        page.screenshot(path=str(tmp_path / "phone-text.png"))

        # a filter typed (or in the address) keeps the fold open, so what narrows the results shows
        page.goto(url.split("?")[0] + "?q=red+bag&filter=category%3Dbags")
        wait_view(page, "text", "red bag")
        assert page.is_visible("#filters") and page.input_value("#filters") == "category=bags"

        # side by side: the two models in two narrow columns, the second beside the first, not screens down
        page.goto(url.split("?")[0] + "?q=red+bag")
        wait_view(page, "text", "red bag")
        page.locator("#view-body .card").first.click()
        wait_view(page, "similar", "Similar to")
        page.click("#compare-toggle")
        page.wait_for_selector(".compare")
        wait_photos(page, ".compare")
        assert abs(top(page, ".compare .column:nth-child(1)") - top(page, ".compare .column:nth-child(2)")) < 1
        left = top(page, ".compare .column:nth-child(1) .card")
        right = top(page, ".compare .column:nth-child(2) .card")
        assert abs(left - right) < 100 and right < 1.5 * 844, (left, right)  # the second model, a swipe away
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # nothing sideways
        page.screenshot(path=str(tmp_path / "phone-compare.png"), full_page=True)
        assert page.js_errors == []


def test_a_cards_accessible_name_says_its_title_once(shared_tiny_store, tmp_path):
    """A screen reader reads a result card as its title, facts and numbers: the photo (alt text) does not
    repeat the title the card already says."""
    sync_api = need_browser()
    with served(shared_tiny_store, *SERVE, log=tmp_path / "serve.log") as url, browser_page(sync_api) as page:
        page.goto(url.split("?")[0] + "?q=red+bag")
        wait_ready(page)
        wait_view(page, "text", "red bag")
        card = page.locator("#view-body .card").first
        title = card.locator(".title").inner_text()
        snapshot = card.aria_snapshot()
        name = snapshot.splitlines()[0]  # - button "its accessible name"
        assert name.startswith("- button") and name.count(title) == 1, snapshot
