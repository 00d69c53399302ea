"""Photo searches in a real browser (headless Chromium driven by Playwright, as in test_serve_browser.py):
search a region of the photo (drag a rectangle, or move it with the keyboard), see that the photo model
is loading on the first photo search, and narrow a photo search's results by their facets.
"""
from __future__ import annotations

import pytest
from test_serve_browser import browser_page, need_browser, served, shown_ids, wait_photos, wait_ready, wait_view
from test_serve_crop import LEFT, RIGHT, composite

pytestmark = pytest.mark.slow


def wait_crop(page, crop: str | None) -> None:
    """Wait for the photo search on this region (None: the whole photo) to be shown."""
    page.wait_for_function("""(crop) => {
        const u = new URL(location.href);
        return document.querySelector('#view-head.image h1') && document.querySelector('#busy').hidden
            && u.searchParams.get('crop') === crop;
    }""", arg=crop)


def test_a_region_of_the_photo_dragged_or_moved_by_keyboard_is_what_is_searched(shared_tiny_store, tmp_path):
    sync_api = need_browser()
    both = tmp_path / "bag-and-boot.jpg"
    both.write_bytes(composite())
    with served(shared_tiny_store, "--model", "tiny-cnn", log=tmp_path / "serve.log") as url, \
            browser_page(sync_api) as page:
        page.goto(url)
        wait_ready(page)
        page.set_input_files("#photo-input", str(both))
        wait_view(page, "image", both.name)
        wait_photos(page)
        whole = shown_ids(page)

        # drag over the left half: the bag
        page.click("#crop-button")
        page.wait_for_selector("#crop-dialog[open]")
        page.wait_for_function("document.querySelector('#crop-dialog img').naturalWidth > 0")
        r = page.locator("#crop-dialog .crop-stage img").bounding_box()
        page.mouse.move(r["x"] + 2, r["y"] + 2)
        page.mouse.down()
        page.mouse.move(r["x"] + r["width"] * 0.3, r["y"] + r["height"] * 0.5, steps=4)
        page.mouse.move(r["x"] + r["width"] * 0.49, r["y"] + r["height"] - 2, steps=4)
        page.mouse.up()
        assert "wide" in page.inner_text("#crop-dialog .crop-said")
        page.click("#crop-search")
        page.wait_for_function("new URL(location.href).searchParams.has('crop')")
        wait_view(page, "image")
        wait_photos(page)
        assert shown_ids(page)[0] == LEFT
        assert page.locator("#view-head canvas.crop-region").count() == 1  # the region searched, shown
        left_url = page.url

        # Esc closes the dialog, and only the dialog: the view stays
        page.click("#crop-button")
        page.wait_for_selector("#crop-dialog[open]")
        page.keyboard.press("Escape")
        page.wait_for_selector("#crop-dialog:not([open])", state="attached")
        page.wait_for_timeout(300)
        assert page.url == left_url and page.locator("#view-head canvas.crop-region").count() == 1

        # the keyboard alone: the region moved right by half the photo is the boot
        page.click("#crop-button")
        page.wait_for_selector("#crop-dialog[open]")
        assert page.evaluate("document.activeElement.classList.contains('crop-frame')")
        for _ in range(30):
            page.keyboard.press("ArrowRight")  # stops at the right edge
        page.keyboard.press("Enter")  # the dialog's form: search this region
        page.wait_for_function("(u) => location.href !== u && new URL(location.href).searchParams.has('crop')",
                               arg=left_url)
        wait_view(page, "image")
        wait_photos(page)
        assert shown_ids(page)[0] == RIGHT

        # back: the left region again; the whole photo again with "Whole photo"
        page.keyboard.press("Escape")
        page.wait_for_function("(u) => location.href === u", arg=left_url)
        wait_view(page, "image")
        assert shown_ids(page)[0] == LEFT
        page.reload()  # the region is in the address
        wait_ready(page)
        wait_view(page, "image")
        wait_photos(page)
        assert shown_ids(page)[0] == LEFT
        page.click("#crop-button")
        page.click("#crop-whole")
        page.click("#crop-search")
        wait_crop(page, None)
        wait_photos(page)
        assert shown_ids(page) == whole
        assert page.js_errors == []




def test_the_first_photo_search_says_the_photo_model_is_loading_and_shows_the_photo_at_once(shared_tiny_store,
                                                                                             tmp_path):
    """While the image tower loads (here: /api/health answers so, and the search is held), the page shows the
    photo and "Loading the photo model", the old results dimmed and not clickable; all gone once shown."""
    sync_api = need_browser()
    from test_serve_browser import PHOTO, WAIT_MS

    with served(shared_tiny_store, "--model", "tiny-cnn", log=tmp_path / "serve.log") as url, \
            browser_page(sync_api) as page:
        page.goto(url.split("?")[0] + "?q=red+bag&model=tiny-siglip")
        wait_ready(page)
        wait_view(page, "text", "red bag")

        def cold(route):  # the server as it is before its warm-up has loaded the image tower
            answer = route.fetch()
            body = answer.json()
            for m in body["models"]:
                m["photo_ready"] = False
            route.fulfill(response=answer, json=body)

        held = []
        page.route("**/api/health", cold)
        page.route("**/api/search/image", lambda route: held.append(route))
        page.set_input_files("#photo-input", str(PHOTO))
        page.wait_for_function("document.querySelector('#progress').textContent.includes('Loading the photo model')")
        assert page.is_visible("#progress")
        page.wait_for_function("document.querySelector('#progress img').naturalWidth > 0")  # the photo, at once
        assert page.evaluate("document.querySelector('#view-body').inert") is True  # the old results: not clickable
        assert "stale" in page.get_attribute("#view-body", "class")
        for _ in range(WAIT_MS // 50):
            if held:
                break
            page.wait_for_timeout(50)
        held[0].continue_()
        page.unroute("**/api/search/image")
        wait_view(page, "image", PHOTO.name)
        wait_photos(page)
        assert page.is_hidden("#progress") and page.evaluate("document.querySelector('#view-body').inert") is False

        # warm: a photo search says only that it searches, and the box goes when it ends
        page.unroute("**/api/health")
        page.route("**/api/search/image", lambda route: held.append(route))
        page.set_input_files("#photo-input", str(PHOTO))
        page.wait_for_selector("#progress:not([hidden])")
        page.wait_for_timeout(500)  # the health answer is in
        assert "Searching by photo" in page.inner_text("#progress")
        assert "Loading" not in page.inner_text("#progress")
        for _ in range(WAIT_MS // 50):
            if len(held) == 2:
                break
            page.wait_for_timeout(50)
        held[1].continue_()
        page.wait_for_selector("#progress", state="hidden")
        assert page.js_errors == []


def test_a_photo_search_is_narrowed_by_its_facets(shared_tiny_store, tmp_path):
    sync_api = need_browser()
    from test_serve_browser import PHOTO, api, facet_buttons, ids, post_photo

    with served(shared_tiny_store, "--model", "tiny-siglip", log=tmp_path / "serve.log") as url, \
            browser_page(sync_api) as page:
        page.goto(url)
        wait_ready(page)
        page.set_input_files("#photo-input", str(PHOTO))
        wait_view(page, "image", PHOTO.name)
        wait_photos(page)
        shown = shown_ids(page)
        # the facets count what the photo found
        categories = facet_buttons(page, "category")
        found = [i.split("/")[0] for i in shown]
        assert {c["value"]: int(c["n"]) for c in categories} == {c: found.count(c) for c in set(found)}
        photo_id = page.evaluate("new URL(location.href).searchParams.get('photo')")
        counted = api(page, f"/api/facets?kind=photo&q={photo_id}&k=12")["body"]
        assert counted["items"] == 12 and counted["kind"] == "photo"
        # a click narrows the photo's results to that value
        shoes = next(c for c in categories if c["value"] == "shoes")
        page.click("#facets .facet[data-column='category'] .facet-value[data-filter='category=shoes']")
        page.wait_for_function("document.querySelector('#filters').value === 'category=shoes'"
                               " && document.querySelector('#busy').hidden && !document.querySelector('#view-body').inert")
        wait_photos(page)
        narrowed = shown_ids(page)
        assert narrowed == ids(post_photo(page, PHOTO, k=12, filter="category=shoes"))
        assert narrowed and all(i.startswith("shoes/") for i in narrowed) and shoes["filter"] == "category=shoes"
        assert facet_buttons(page, "category")[0]["pressed"] == "true"
        assert page.js_errors == []
