"""The page's Collections view in a real browser (headless Chromium driven by Playwright, as in
test_serve_browser.py): a merchandiser searches, saves 20 results as a collection, pins two, removes
one, reorders (by mouse and by keyboard), annotates, saves, meets a stale save (409) and reloads,
restarts the server, reopens the collection and finds the edits, exports it as HTML and CSV, and
deletes it. What the page shows is checked against the JSON API.

The screenshot of the collection view goes to the test's tmp dir (docs/img/collection.png, the one
docs/collections.md shows, is made by tests/test_screenshots.py).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from urllib.parse import quote

import pytest
from test_serve_browser import api, browser_page, need_browser, served, wait_ready, wait_view

pytestmark = pytest.mark.slow

NAME = "red bags for the mail"


def coll_ids(page) -> list[str]:
    return page.eval_on_selector_all("#coll-view .coll-item", "li => li.map((x) => x.dataset.id)")


def act(page, item_id: str, what: str) -> str:
    return f'#coll-view .coll-act[data-act="{what}"][data-id="{item_id}"]'


def note(page, item_id: str) -> str:
    return f'#coll-view textarea.coll-note[data-id="{item_id}"]'


def wait_collection(page, name: str, items: int) -> None:
    page.wait_for_function("""([name, n]) => {
        const h = document.querySelector('#coll-view:not([hidden]) h1');
        return h && h.textContent === name && document.querySelectorAll('#coll-view .coll-item').length === n;
    }""", arg=[name, items])


def wait_coll_photos(page) -> None:
    page.wait_for_function("""() => {
        const imgs = Array.from(document.querySelectorAll('#coll-view .coll-item img'))
            .filter((i) => i.getBoundingClientRect().top < window.innerHeight);
        imgs.forEach((i) => { i.loading = 'eager'; });
        return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
    }""")


def collection(page, name: str) -> dict:
    answer = api(page, "/api/collections/" + quote(name))
    assert answer["status"] == 200, answer
    return answer["body"]


def put(page, name: str, body: dict) -> dict:
    return page.evaluate("""async ([url, body]) => {
        const r = await fetch(url, {method: 'PUT', headers: {'Content-Type': 'application/json'},
                                    body: JSON.stringify(body)});
        return {status: r.status, body: await r.json()};
    }""", ["/api/collections/" + quote(name), body])


def screenshot(page, out: Path) -> None:
    """The view as a PNG of 256 colours (a fraction of the bytes, no visible difference)."""
    from PIL import Image

    full = out.with_suffix(".full.png")
    page.screenshot(path=str(full))
    Image.open(full).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    full.unlink()


def test_a_merchandiser_curates_saves_reopens_and_exports_a_collection(tiny_store, tmp_path):
    sync_api = need_browser()
    args = ("--model", "tiny-siglip", "--compare-with", "tiny-cnn")
    with browser_page(sync_api, 1280, 900) as page:
        with served(tiny_store, *args, log=tmp_path / "serve-1.log") as url:
            page.goto(url)
            wait_ready(page)
            page.fill("#q", "red bag")
            page.press("#q", "Enter")
            wait_view(page, "text", "red bag")

            # save the search as a collection of 20 items, from the results' head
            page.click("#coll-save-results")
            page.wait_for_selector("#coll-dialog[open]")
            assert page.evaluate("document.activeElement.name") == "name"  # the dialog takes the keyboard
            page.fill("#coll-dialog input[name=name]", NAME)
            page.fill("#coll-dialog input[name=k]", "20")
            page.click("#coll-dialog button[type=submit]")
            wait_collection(page, NAME, 20)
            assert page.is_hidden("#view-body") and not page.is_visible("#coll-dialog")
            made = collection(page, NAME)
            ids = [i["id"] for i in made["items"]]
            expected_search = api(page, "/api/search/text?q=red%20bag&k=20")["body"]["results"]
            assert ids == [r["id"] for r in expected_search] and coll_ids(page) == ids
            assert made["version"] == 1 and made["query"]["text"] == "red bag" and made["query"]["k"] == 20

            # curate: pin two, remove one, reorder (a click, then the keyboard alone), annotate two
            pins = [ids[0], ids[4]]
            for i in pins:
                page.click(act(page, i, "pin"))
                assert page.get_attribute(act(page, i, "pin"), "aria-pressed") == "true"
            page.click(act(page, ids[2], "remove"))
            page.click(act(page, ids[0], "down"))  # ids[0] goes second
            page.focus(act(page, ids[19], "up"))
            for _ in range(3):  # the last item up three places with Enter; the focus follows it
                page.keyboard.press("Enter")
                assert page.evaluate("document.activeElement.dataset.id") == ids[19]
            order = [i for i in ids if i != ids[2]]
            order[0], order[1] = order[1], order[0]
            order.insert(15, order.pop())  # the last of 19 (index 18) three places up
            assert coll_ids(page) == order
            page.fill(note(page, ids[0]), "hero of the mail")
            page.fill(note(page, ids[4]), "price drops on Friday")
            assert page.is_visible("#coll-view .coll-dirty")
            assert "Put back" in page.inner_text("#coll-view .coll-removed")
            assert "null" not in page.inner_text("#coll-view")
            page.click("#coll-save")
            page.wait_for_function("document.querySelector('#coll-msg').textContent.includes('version 2')")
            saved = collection(page, NAME)
            assert [i["id"] for i in saved["items"]] == order and saved["removed"] == [ids[2]]
            assert [i["id"] for i in saved["items"] if i["pinned"]] == [ids[0], ids[4]]
            assert {i["id"]: i["note"] for i in saved["items"] if i["note"]} == {
                ids[0]: "hero of the mail", ids[4]: "price drops on Friday"}
            assert page.is_hidden("#coll-view .coll-dirty")

            # someone else saves meanwhile: this page's next save is refused, in the server's words
            items = [{"id": i["id"], "pinned": i["pinned"], "note": i["note"]} for i in saved["items"]]
            assert put(page, NAME, {"version": 2, "items": items, "by": "bob"})["status"] == 200
            stale = put(page, NAME, {"version": 2, "items": items})
            assert stale["status"] == 409
            page.click(act(page, order[5], "pin"))
            page.click("#coll-save")
            page.wait_for_selector("#coll-conflict:not([hidden])")
            assert page.inner_text("#coll-conflict-text").strip() == stale["body"]["error"]
            assert page.evaluate("document.activeElement.id") == "coll-reload"
            page.once("dialog", lambda d: d.accept())  # "drop your unsaved changes?"
            page.click("#coll-reload")
            page.wait_for_function("document.querySelector('#coll-view .head-main').textContent.includes('version 3')")
            assert "bob" in page.inner_text("#coll-view .head-main")
            assert page.get_attribute(act(page, order[5], "pin"), "aria-pressed") == "false"

        # a new server process over the same store: the collection is listed and holds the edits
        with served(tiny_store, *args, log=tmp_path / "serve-2.log") as url:
            page.goto(url)
            wait_ready(page)
            page.click("#collections-button")
            page.wait_for_selector("#coll-view .coll-list")
            assert "version 3" in page.inner_text("#coll-view .coll-list")
            page.get_by_role("button", name=f"Open the collection {NAME}").click()
            wait_collection(page, NAME, 19)
            assert coll_ids(page) == order
            assert page.eval_on_selector_all("#coll-view .coll-item.pinned", "li => li.map((x) => x.dataset.id)") == pins
            assert page.input_value(note(page, ids[0])) == "hero of the mail"
            assert page.input_value(note(page, ids[4])) == "price drops on Friday"
            assert page.input_value(note(page, order[2])) == ""
            wait_coll_photos(page)
            page.evaluate("window.scrollTo(0, 0); document.activeElement.blur()")
            shot = tmp_path / "collection.png"
            screenshot(page, shot)

            # export: an HTML page and a CSV, in the collection's order, with pins and notes
            with page.expect_download() as download:
                page.get_by_role("link", name="Export as HTML").click()
            assert download.value.suggested_filename == "red-bags-for-the-mail.html"
            html = Path(download.value.path()).read_text()
            assert NAME in html and "hero of the mail" in html and "price drops on Friday" in html
            assert html.count("data:image/jpeg;base64,") == 19 and ids[2] not in html
            at = [html.index(i) for i in order]
            assert at == sorted(at)
            with page.expect_download() as download:
                page.get_by_role("link", name="Export as CSV").click()
            assert download.value.suggested_filename == "red-bags-for-the-mail.csv"
            rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
            assert [r["id"] for r in rows] == order and [r["rank"] for r in rows] == [str(n) for n in range(1, 20)]
            assert [r["id"] for r in rows if r["pinned"].lower() in ("true", "1", "yes")] == pins
            assert {r["id"]: r["note"] for r in rows if r["note"]} == {
                ids[0]: "hero of the mail", ids[4]: "price drops on Friday"}

            # delete, after confirming; Esc leaves the Collections view for the search page
            page.once("dialog", lambda d: d.accept())
            page.click("#coll-delete")
            page.wait_for_function("document.querySelector('#coll-view h1').textContent === 'Collections'")
            assert api(page, "/api/collections")["body"]["collections"] == []
            page.keyboard.press("Escape")
            page.wait_for_selector("#coll-view", state="hidden")
            assert page.is_visible("#view-head h1")
            assert page.js_errors == []
    assert shot.stat().st_size > 10_000


CONTRAST = """() => {
    // every visible text of the Collections view (and the header's button) against its background:
    // WCAG AA, 4.5:1 (3:1 for large text); disabled controls are exempt
    const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
        const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
        for (let e = el; e; e = e.parentElement) {
            const c = rgb(getComputedStyle(e).backgroundColor);
            if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
        }
        return [255, 255, 255];
    };
    const bad = [];
    const els = [document.querySelector('#collections-button'),
                 ...document.querySelectorAll('#coll-view *, #coll-dialog *')];
    for (const el of els) {
        if (!el || el.closest('[disabled], [aria-disabled="true"]')) continue;
        const own = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim())
            || (el.matches('textarea, input') && (el.value || el.placeholder));
        const box = el.getBoundingClientRect();
        if (!own || !box.width || !box.height) continue;
        const s = getComputedStyle(el);
        const fg = rgb(el.matches('textarea, input') && !el.value ? getComputedStyle(el, '::placeholder').color : s.color);
        const [a, b] = [lum(fg.slice(0, 3)), lum(background(el))];
        const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
        const size = parseFloat(s.fontSize), weight = Number(s.fontWeight) || 400;
        const need = size >= 24 || (size >= 18.66 && weight >= 700) ? 3 : 4.5;
        if (ratio < need) bad.push(`${el.tagName}.${el.className} "${(el.textContent || el.placeholder || '').trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
    }
    return bad;
}"""


def test_collections_from_an_item_add_to_refresh_keyboard_and_contrast(tiny_store, tmp_path):
    sync_api = need_browser()
    with browser_page(sync_api) as page, served(tiny_store, "--model", "tiny-siglip",
                                                  log=tmp_path / "serve.log") as url:
        page.goto(url.split("?")[0] + "?similar=bags/bag-tote-red")
        wait_ready(page)
        wait_view(page, "similar", "Similar to")
        # an item's page: a collection of its similar items
        page.click("#coll-save-results")
        page.fill("#coll-dialog input[name=name]", "like the red tote")
        page.fill("#coll-dialog input[name=k]", "6")
        page.keyboard.press("Enter")
        wait_collection(page, "like the red tote", 6)
        made = collection(page, "like the red tote")
        assert made["query"]["kind"] == "item" and made["query"]["item"] == "bags/bag-tote-red"
        assert "bags/bag-tote-red" not in coll_ids(page)

        # the list makes one from a text; Esc in a dialog closes only the dialog
        page.click("#collections-button")
        page.wait_for_selector("#coll-view .coll-new")
        page.fill("#coll-view .coll-new input[name=name]", "navy")
        page.fill("#coll-view .coll-new input[name=text]", "navy shirt")
        page.fill("#coll-view .coll-new input[name=k]", "4")
        page.click("#coll-view .coll-new button[type=submit]")
        wait_collection(page, "navy", 4)
        page.click("#coll-view .back")  # all collections
        page.wait_for_selector("#coll-view .coll-list")
        assert page.locator("#coll-view .coll-row").count() == 2
        page.fill("#coll-view .coll-new input[name=name]", "navy")  # a name taken: the server's words
        page.fill("#coll-view .coll-new input[name=text]", "navy dress")
        page.click("#coll-view .coll-new button[type=submit]")
        page.wait_for_function("document.querySelector('#coll-view .coll-form-error').textContent.length > 0")
        assert "navy" in page.inner_text("#coll-view .coll-form-error")

        # an item's "Add to collection": appended at the end of the one chosen
        page.keyboard.press("Escape")
        page.wait_for_selector("#coll-view", state="hidden")
        page.click("#coll-add-item")
        page.wait_for_selector("#coll-dialog[open]")
        page.select_option("#coll-dialog select", "navy")
        page.keyboard.press("Escape")
        assert not page.is_visible("#coll-dialog") and page.is_visible("#view-head.similar")
        page.click("#coll-add-item")
        page.select_option("#coll-dialog select", "navy")
        page.click("#coll-dialog button[type=submit]")
        page.wait_for_selector("#coll-dialog", state="hidden")
        navy = collection(page, "navy")
        assert navy["version"] == 2 and navy["items"][-1]["id"] == "bags/bag-tote-red"

        # remove one, save, refresh: the next match takes its place, marked New
        page.click("#collections-button")
        page.get_by_role("button", name="Open the collection like the red tote").click()
        wait_collection(page, "like the red tote", 6)
        gone = coll_ids(page)[1]
        page.click(act(page, gone, "remove"))
        page.click("#coll-refresh")  # unsaved edits: refresh waits for a save
        assert "Save your changes" in page.inner_text("#coll-msg")
        page.click("#coll-save")
        page.wait_for_function("document.querySelector('#coll-msg').textContent.includes('version 2')")
        page.click("#coll-refresh")
        page.wait_for_function("document.querySelector('#coll-msg').textContent.includes('Refresh')")
        fresh = page.eval_on_selector_all("#coll-view .coll-item.fresh", "li => li.map((x) => x.dataset.id)")
        assert len(fresh) == 1 and gone not in coll_ids(page) and len(coll_ids(page)) == 6
        assert "1 new item" in page.inner_text("#coll-msg")
        assert page.locator("#coll-view .coll-badge.new").count() == 1

        # the keyboard: Tab reaches every control, and the focus is visible
        page.focus("#coll-view h1")
        seen = []
        for _ in range(12):
            page.keyboard.press("Tab")
            seen.append(page.evaluate("""() => {
                const e = document.activeElement, s = getComputedStyle(e);
                return [e.id || e.dataset.act || e.tagName, s.boxShadow !== 'none' || s.outlineStyle !== 'none'];
            }"""))
        assert [name for name, _ in seen[:5]] == ["coll-save", "coll-refresh", "A", "A", "A"]
        assert "coll-delete" in [name for name, _ in seen] and "pin" in [name for name, _ in seen]
        assert all(visible for _, visible in seen), seen

        # contrast: WCAG AA in the light and the dark scheme
        wait_coll_photos(page)
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            assert page.evaluate(CONTRAST) == [], scheme
            page.screenshot(path=str(tmp_path / f"collection-{scheme}.png"))

        # a phone-sized window: the cards reflow, nothing scrolls sideways
        page.set_viewport_size({"width": 390, "height": 800})
        page.wait_for_function("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(tmp_path / "collection-narrow.png"), full_page=True)
        assert "null" not in page.inner_text("#coll-view") and "undefined" not in page.inner_text("#coll-view")
        assert page.js_errors == []
