"""The page's accessibility and its phone layout, in a real browser (headless Chromium driven by
Playwright, as in test_serve_browser.py).

axe-core (shipped inside the axe-playwright-python package: nothing is fetched) checks the main views
-- text results with their facets open, similar items, side by side, a photo search, the collections
view and an error -- and finds no serious or critical violation (WCAG 2.1 AA contrast, names, labels).
At a phone's 390x844 the filters and help fold away, the first result shows without scrolling, and
side by side shows one model at a time as tabs, both a tap away.
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
