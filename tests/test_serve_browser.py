"""vrec serve in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

A `vrec serve` process over the drawn test catalog; the page is used as a person would: type a
query, see the photos load, click a result for its similar items, switch to the side-by-side
comparison, go back with Escape, open a result with the keyboard, choose and drop a photo, steer
it with text, filter, meet an error, save a gallery, use it through a token URL and on a narrow
window; narrow results by their facets; compare with filters and a label column's agreement; and
the page stays usable around Esc in a text box, a bad filter and a slow search. What the page shows
is checked against the JSON API's own answers. Screenshots go to the test's tmp dir (the ones the docs show are made by
tests/test_screenshots.py).

Skips when Playwright or Chromium is missing (`apt-get install chromium`; .ci/run installs it).
Playwright's own browser download is not used: it drives the system's Chromium.

The README's screenshot comes from the same code over the demo store (`make demo` first):

    .venv/bin/python tests/test_serve_browser.py --store .vrec-demo --out docs/serve.png
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

pytestmark = pytest.mark.slow  # a real browser against a real server: make test-fast leaves it out

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "drawn_catalog"
PHOTO = SAMPLE / "bags" / "bag-tote-red.jpg"
WAIT_MS = int(os.environ.get("VREC_WAIT_MS", 120_000))  # the longest wait for one thing to appear (a cold model on a busy machine); never a time to beat


def chromium() -> str | None:
    """The system's Chromium (VREC_CHROMIUM names another), or None."""
    given = os.environ.get("VREC_CHROMIUM")
    if given:
        return given if Path(given).exists() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def need_browser():
    """Playwright's sync API, or a clean skip."""
    try:
        from playwright import sync_api
    except ImportError:
        pytest.skip("Playwright is not installed (it is in the test extra: pip install -e '.[test]')")
    if chromium() is None:
        pytest.skip("no Chromium on this machine: apt-get install chromium (.ci/run installs it)")
    return sync_api


# --- the server and the browser ---------------------------------------------------------------

@contextlib.contextmanager
def served(store, *args: str, log: Path):
    """`vrec serve` over the store on a free loopback port; yields the URL it printed. Ctrl-C at the end."""
    cmd = [sys.executable, "-c", "from vrec.cli import main; main()", "serve", "--store", str(store), "--port", "0",
           *args]
    with open(log, "w") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            line = p.stdout.readline()
            assert line.startswith("vrec serve: http://127.0.0.1:"), (line, log.read_text())
            yield line.split(" ", 2)[2].strip()
        finally:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    assert p.returncode == 0 and "Traceback" not in log.read_text(), log.read_text()


@contextlib.contextmanager
def browser_page(sync_api, width: int = 1280, height: int = 800):
    """A page in headless Chromium; JavaScript errors on it are collected in page.js_errors."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
            context.set_default_timeout(WAIT_MS)
            page = context.new_page()
            page.js_errors = []
            page.on("pageerror", lambda e: page.js_errors.append(str(e)))
            yield page
        finally:
            browser.close()


def api(page, path: str, **kw):
    """The JSON API's answer, asked from inside the page (so a token cookie applies as to the page)."""
    return page.evaluate("""async ([path, init]) => {
        const r = await fetch(path, init || undefined);
        return {status: r.status, body: await r.json()};
    }""", [path, kw or None])


def wait_ready(page) -> None:
    page.wait_for_selector("html[data-ready]")


def wait_photos(page, scope: str = "#view-body") -> int:
    """Wait until every result photo in view has loaded with pixels; returns how many there are."""
    page.wait_for_function("""(scope) => {
        const imgs = Array.from(document.querySelectorAll(scope + ' .card img'))
            .filter((i) => i.getBoundingClientRect().top < window.innerHeight);
        return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
    }""", arg=scope)
    return page.eval_on_selector_all(f"{scope} .card img", "imgs => imgs.length")


def shown_ids(page, scope: str = "#view-body") -> list[str]:
    return page.eval_on_selector_all(f"{scope} .card", "cards => cards.map((c) => c.dataset.id)")


def ids(answer: dict) -> list[str]:
    assert answer["status"] == 200, answer
    return [r["id"] for r in answer["body"]["results"]]


def wait_view(page, kind: str, title_has: str = "") -> None:
    """Wait for a view of this kind (text, image, similar) whose heading holds the text."""
    page.wait_for_function("""([kind, text]) => {
        const head = document.querySelector('#view-head.' + kind + ' h1');
        return head && head.textContent.includes(text) && document.querySelector('#busy').hidden;
    }""", arg=[kind, title_has])


def drop_photo(page, path: Path, name: str) -> None:
    """Drag a photo file onto the page and drop it, as from a file manager."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    transfer = page.evaluate_handle("""([b64, name]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name, {type: 'image/jpeg'}));
        return dt;
    }""", [data, name])
    page.dispatch_event("#main", "dragenter", {"dataTransfer": transfer})
    assert page.is_visible("#drop-overlay")
    page.dispatch_event("#main", "drop", {"dataTransfer": transfer})


def post_photo(page, path: Path, **fields) -> dict:
    """POST /api/search/image from inside the page, as the API documents it."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return page.evaluate("""async ([b64, name, fields]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const form = new FormData();
        form.append('file', new File([bytes], name, {type: 'image/jpeg'}));
        for (const [k, v] of Object.entries(fields)) for (const x of [].concat(v)) form.append(k, String(x));
        const r = await fetch('/api/search/image', {method: 'POST', body: form});
        return {status: r.status, body: await r.json()};
    }""", [data, path.name, fields])


# --- the tests --------------------------------------------------------------------------------

def test_a_person_searches_browses_compares_and_saves_in_a_real_browser(shared_tiny_store, tmp_path):
    sync_api = need_browser()
    with served(shared_tiny_store, "--model", "tiny-siglip", "--compare-with", "tiny-cnn",
                log=tmp_path / "serve.log") as url, browser_page(sync_api) as page:
        page.goto(url)
        wait_ready(page)
        assert "60 items" in page.inner_text("#store-info")
        assert page.evaluate("document.activeElement.id") == "q"  # type straight away

        # a text query: Enter searches; the photos load; the page shows the API's results, in order
        page.keyboard.type("red bag")
        page.keyboard.press("Enter")
        wait_view(page, "text", "red bag")
        assert wait_photos(page) == 12
        expected = ids(api(page, "/api/search/text?q=red%20bag&k=12"))
        assert shown_ids(page) == expected
        first = page.locator("#view-body .card").first
        assert "score" in first.inner_text() and "match" in first.inner_text()  # tiny-siglip gives a match p
        assert page.url.endswith("/?q=red+bag")
        page.screenshot(path=str(tmp_path / "1-text.png"))

        # click a result: its similar items, the item itself left out
        title = first.locator(".title").inner_text()
        first.click()
        wait_view(page, "similar", f"Similar to {title}")
        wait_photos(page)
        similar = ids(api(page, f"/api/similar/{quote(expected[0])}?k=12"))
        assert shown_ids(page) == similar and expected[0] not in similar
        page.screenshot(path=str(tmp_path / "2-similar.png"))

        # the toggle: both models' neighbours side by side, the ones both found marked
        page.click("#compare-toggle")
        page.wait_for_selector(".compare")
        assert page.get_attribute("#compare-toggle", "aria-pressed") == "true"
        cmp = api(page, f"/api/compare/{quote(expected[0])}?left=tiny-cnn&right=tiny-siglip&k=12")["body"]
        columns = page.locator(".compare .column")
        assert columns.count() == 2
        assert columns.nth(0).locator("h2").inner_text().startswith("tiny-cnn")
        assert columns.nth(1).locator("h2").inner_text().startswith("tiny-siglip")
        assert shown_ids(page, ".compare .column:nth-child(1)") == [r["id"] for r in cmp["left"]["results"]]
        assert shown_ids(page, ".compare .column:nth-child(2)") == [r["id"] for r in cmp["right"]["results"]]
        assert page.locator(".card.shared").count() == 2 * len(cmp["shared"])
        wait_photos(page, ".compare")
        page.screenshot(path=str(tmp_path / "3-compare.png"))

        # Escape goes back, to the results and to the card that was opened
        page.keyboard.press("Escape")
        wait_view(page, "text", "red bag")
        assert page.evaluate("document.activeElement.dataset.id") == expected[0]
        # the keyboard alone: Tab to the next result (past the card's Details and + Collection), Enter opens it
        # (the comparison is still on)
        for _ in range(3):
            page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.classList.contains('card') && document.activeElement.dataset.id") \
            == expected[1]
        page.keyboard.press("Enter")
        page.wait_for_selector(".compare")
        assert page.locator("#view-head h1").inner_text().startswith("Similar to")
        page.keyboard.press("Escape")
        wait_view(page, "text", "red bag")

        # choose a photo: items like it; then steer it with "+ text"
        page.set_input_files("#photo-input", str(PHOTO))
        wait_view(page, "image", PHOTO.name)
        wait_photos(page)
        assert shown_ids(page) == ids(post_photo(page, PHOTO, k=12))
        page.fill("#view-head input[name=plus]", "blue")
        page.press("#view-head input[name=plus]", "Enter")
        wait_view(page, "image", "+ blue")
        assert shown_ids(page) == ids(post_photo(page, PHOTO, k=12, plus="blue", weight=1))
        assert page.evaluate("document.activeElement.name") == "plus"  # still where the person was typing
        page.screenshot(path=str(tmp_path / "4-photo.png"))

        # drop a photo on the page
        drop_photo(page, SAMPLE / "shoes" / "shoe-boot-black.jpg", "dropped-boot.jpg")
        wait_view(page, "image", "dropped-boot.jpg")
        assert page.is_hidden("#drop-overlay")
        assert shown_ids(page) == ids(post_photo(page, SAMPLE / "shoes" / "shoe-boot-black.jpg", k=12))

        # filters narrow the view shown; an API error is shown on the page, in its own words
        page.fill("#filters", "category=bags, price<150")
        page.press("#filters", "Enter")
        page.wait_for_function("document.querySelector('#view-head .meta').textContent.includes('price<150')")
        narrowed = ids(post_photo(page, SAMPLE / "shoes" / "shoe-boot-black.jpg", k=12,
                                  filter=["category=bags", "price<150"]))
        assert narrowed and shown_ids(page) == narrowed and all(i.startswith("bags/") for i in narrowed)
        page.fill("#filters", "nope=1")
        page.press("#filters", "Enter")
        page.wait_for_selector("#error:not([hidden])")
        assert "No column 'nope'" in page.inner_text("#error")
        page.fill("#filters", "")
        page.fill("#q", "")
        page.click("#search-form button[type=submit]")
        assert "Type what you are looking for" in page.inner_text("#error")

        # save as gallery: one self-contained page of the results shown
        page.goto(url.split("?")[0] + "?q=navy&k=5")  # the address of a search brings it back
        wait_view(page, "text", "navy")
        wait_photos(page)
        shown = shown_ids(page)
        assert len(shown) == 5
        with page.expect_download() as download:
            page.click("#view-head .save")
        saved = download.value
        assert saved.suggested_filename.endswith(".html")
        gallery = Path(saved.path()).read_text()
        assert gallery.count("data:image/jpeg;base64,") == 5 and "navy" in gallery
        assert "http://" not in gallery and "https://" not in gallery  # nothing to fetch: it works offline

        # a phone-sized window: the grid reflows, nothing scrolls sideways
        page.set_viewport_size({"width": 390, "height": 800})
        page.wait_for_function("document.documentElement.scrollWidth <= window.innerWidth")
        columns = page.evaluate("getComputedStyle(document.querySelector('#view-body .grid'))"
                                ".gridTemplateColumns.split(' ').length")
        assert 1 <= columns <= 3
        page.screenshot(path=str(tmp_path / "5-narrow.png"), full_page=True)

        assert page.js_errors == []
    for name in ("1-text", "2-similar", "3-compare", "4-photo", "5-narrow"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000


def test_the_token_url_lets_the_page_and_its_photos_in(shared_tiny_store, tmp_path):
    sync_api = need_browser()
    with served(shared_tiny_store, "--model", "tiny-siglip", "--token", "browser-secret",
                log=tmp_path / "serve.log") as url, browser_page(sync_api) as page:
        assert url.endswith("/?token=browser-secret")
        base = url.split("?")[0]
        page.goto(base)  # without the token: the server says what to do
        assert "needs its token" in page.inner_text("body")
        page.goto(url)  # the printed URL: a cookie, then the clean address
        wait_ready(page)
        assert page.url == base and "browser-secret" not in page.url
        page.fill("#q", "striped shirt")
        page.press("#q", "Enter")
        wait_view(page, "text", "striped shirt")
        assert wait_photos(page) == 12  # <img src="/thumb/..."> carries no token: the cookie does
        assert page.js_errors == []
        # /docs renders FastAPI's Swagger UI from the package's own files: anything from elsewhere is refused
        outside = []
        page.route(lambda u: not u.startswith(base), lambda route: (outside.append(route.request.url), route.abort()))
        page.goto(base + "docs")
        page.wait_for_selector(".swagger-ui .opblock-summary-path:has-text('/api/search/text')")
        assert outside == [] and page.js_errors == []


def pct(x) -> str:
    return f"{round(x * 100)}%"


def facet_buttons(page, column: str) -> list[dict]:
    return page.eval_on_selector_all(f"#facets .facet[data-column='{column}'] .facet-value", """bs => bs.map((b) => ({
        value: b.querySelector('.value').textContent, n: b.querySelector('.n').textContent,
        pressed: b.getAttribute('aria-pressed'), filter: b.dataset.filter}))""")


def wait_filters(page, text: str) -> None:
    """Wait until the view shown was run with exactly these typed filters (its meta line names them)."""
    page.wait_for_function("""(text) => document.querySelector('#filters').value === text
        && document.querySelector('#busy').hidden && !document.querySelector('#view-body').inert
        && Array.from(document.querySelectorAll('#view-head .meta')).some((m) => m.textContent.endsWith(text))""",
                           arg=text)


def test_facets_beside_the_results_narrow_them_by_a_click(shared_tiny_store, tmp_path):
    """The values of each column in the results shown, with counts; a click adds the value's filter to
    the typed ones and runs the search again, a second click takes it away; price as ranges."""
    sync_api = need_browser()
    with served(shared_tiny_store, "--model", "tiny-siglip", "--compare-with", "tiny-cnn",
                log=tmp_path / "serve.log") as url, browser_page(sync_api) as page:
        base = url.split("?")[0]
        page.goto(base + "?q=red+bag&filter=price<150")
        wait_ready(page)
        wait_view(page, "text", "red bag")
        facets = api(page, "/api/facets?q=red%20bag&k=12&filter=price%3C150")["body"]
        shown = facet_buttons(page, "category")
        expected = next(c for c in facets["categorical"] if c["column"] == "category")["values"]
        assert [(b["value"], b["n"], b["pressed"]) for b in shown] == \
               [(v["value"], str(v["count"]), "false") for v in expected]
        assert "bags" in [b["value"] for b in shown]

        # a value clicked: its filter joins the typed one, the search runs again
        page.click("#facets .facet[data-column='category'] .facet-value[data-filter='category=bags']")
        wait_filters(page, "price<150, category=bags")
        wait_view(page, "text", "red bag")
        narrowed = ids(api(page, "/api/search/text?q=red%20bag&k=12&filter=price%3C150&filter=category%3Dbags"))
        assert shown_ids(page) == narrowed and all(i.startswith("bags/") for i in narrowed)
        assert "q=red+bag" in page.url and "filter=category%3Dbags" in page.url
        bags = facet_buttons(page, "category")
        assert [(b["value"], b["pressed"]) for b in bags] == [("bags", "true")]
        # the price: the range typed, shown as chosen; buckets of the results to narrow further
        price = facet_buttons(page, "price")
        assert price[0]["pressed"] == "true" and price[0]["value"] == "up to 150"
        wait_photos(page)
        page.evaluate("document.activeElement.blur()")
        page.screenshot(path=str(tmp_path / "serve-facets.png"))

        facets = api(page, "/api/facets?q=red%20bag&k=12&filter=price%3C150&filter=category%3Dbags")["body"]
        bucket = next(b for b in facets["numeric"][0]["buckets"] if b["count"])
        page.click(f"#facets .facet[data-column='price'] .bucket[data-filter='{', '.join(bucket['filters'])}']")
        typed = ", ".join(["category=bags", *bucket["filters"]])  # the bucket's bounds replace the typed ones
        wait_filters(page, typed)
        answer = api(page, "/api/search/text?q=red%20bag&k=12&" +
                     "&".join("filter=" + quote(f) for f in ["category=bags", *bucket["filters"]]))
        assert shown_ids(page) == ids(answer)
        assert all(bucket["min"] <= r["metadata"]["price"] <= bucket["max"] for r in answer["body"]["results"])

        # the selected value clicked again: its filter goes, the others stay
        page.click("#facets .facet[data-column='category'] .facet-value[aria-pressed='true']")
        wait_filters(page, ", ".join(bucket["filters"]))
        assert len(facet_buttons(page, "category")) > 1

        # similar items have their facets too
        page.locator("#view-body .card").first.click()
        wait_view(page, "similar", "Similar to")
        assert page.locator("#facets .facet[data-column='category']").count() == 1
        assert page.js_errors == []


def test_side_by_side_honours_the_filters_and_says_how_often_each_model_agrees(shared_tiny_store, tmp_path):
    """With filters, both models' neighbours are among the matching items; a label column chooser says
    which share of each side's neighbours shares the item's value, and on demand the catalog-wide
    figures; the two models' scores are said not to be comparable."""
    sync_api = need_browser()
    item = "bags/bag-tote-red"
    with served(shared_tiny_store, "--model", "tiny-siglip", "--compare-with", "tiny-cnn",
                log=tmp_path / "serve.log") as url, browser_page(sync_api) as page:
        base = url.split("?")[0]
        page.goto(base + "?similar=" + quote(item) + "&filter=category%3Dbags")
        wait_ready(page)
        wait_view(page, "similar", "Similar to")
        page.click("#compare-toggle")
        page.wait_for_selector(".compare")
        wait_view(page, "similar", "Similar to")
        cmp = api(page, f"/api/compare/{quote(item)}?left=tiny-cnn&right=tiny-siglip&k=12&filter=category%3Dbags"
                        "&label=category")["body"]
        left = shown_ids(page, ".compare .column:nth-child(1)")
        right = shown_ids(page, ".compare .column:nth-child(2)")
        assert left == [r["id"] for r in cmp["left"]["results"]] and right == [r["id"] for r in cmp["right"]["results"]]
        assert len(left) == 11 and all(i.startswith("bags/") for i in left + right)  # the 11 other bags, no more
        assert "category=bags" in page.inner_text("#view-head")
        # the label chooser: category first (every bag is a bag), then colour
        assert page.input_value("#label-column") == "category"
        assert page.inner_text("#agreement") == \
            "100% of tiny-siglip's neighbours share its category (bags), 100% of tiny-cnn's."
        page.select_option("#label-column", "colour")
        page.wait_for_function("document.querySelector('#agreement').textContent.includes('colour')")
        wait_view(page, "similar", "Similar to")
        cmp = api(page, f"/api/compare/{quote(item)}?left=tiny-cnn&right=tiny-siglip&k=12&filter=category%3Dbags"
                        "&label=colour&summary=true")["body"]
        assert page.inner_text("#agreement") == (
            f"{pct(cmp['right']['agreement'])} of tiny-siglip's neighbours share its colour (red), "
            f"{pct(cmp['left']['agreement'])} of tiny-cnn's.")
        assert "label=colour" in page.url
        assert "not comparable" in page.inner_text(".scores-note")
        assert page.inner_text(".compare .column:nth-child(1) .column-head .scale") == "scores on tiny-cnn's own scale"
        assert "not comparable" in page.get_attribute(".compare .column:nth-child(1) .card .score", "title")
        wait_photos(page, ".compare")
        # the catalog-wide figures, on demand
        assert page.locator(".summary").count() == 0
        page.click("#summary-button")
        page.wait_for_selector(".summary")
        s = cmp["summary"]
        text = page.inner_text(".summary")
        assert f"Over {s['items']} items" in text and pct(s["mean_overlap"]) in text
        assert f"{pct(s['right_agreement'])} of tiny-siglip's neighbours share the item's colour" in text
        assert page.locator(".summary tbody tr").count() == len(s["per_label"])
        page.evaluate("document.activeElement.blur()")
        page.screenshot(path=str(tmp_path / "serve-compare.png"), full_page=True)
        assert page.js_errors == []


@contextlib.contextmanager
def red_bag(shared_tiny_store, tmp_path, sync_api):
    """The page over the test store, showing the results of "red bag"."""
    with served(shared_tiny_store, "--model", "tiny-siglip", log=tmp_path / "serve.log") as url, \
            browser_page(sync_api) as page:
        page.goto(url.split("?")[0] + "?q=red+bag")
        wait_ready(page)
        wait_view(page, "text", "red bag")
        yield page
        assert page.js_errors == []


def test_escape_in_a_text_box_does_not_go_back(shared_tiny_store, tmp_path):
    with red_bag(shared_tiny_store, tmp_path, need_browser()) as page:
        page.locator("#view-body .card").first.click()
        wait_view(page, "similar", "Similar to")
        similar_url = page.url
        for box in ("#filters", "#q"):  # Esc in a text box is the box's
            page.focus(box)
            page.keyboard.press("Escape")
            page.wait_for_timeout(400)
            assert page.url == similar_url and page.locator("#view-head.similar").count() == 1
        page.evaluate("document.activeElement.blur()")
        page.keyboard.press("Escape")  # elsewhere it goes back
        wait_view(page, "text", "red bag")


def test_a_bad_filter_marks_the_field_invalid_and_dims_the_old_results(shared_tiny_store, tmp_path):
    with red_bag(shared_tiny_store, tmp_path, need_browser()) as page:
        page.fill("#filters", "nope=1")
        page.press("#filters", "Enter")
        page.wait_for_selector("#filters[aria-invalid='true']")
        assert "filter-error" in page.get_attribute("#filters", "aria-describedby").split()
        assert "No column 'nope'" in page.inner_text("#filter-error")
        assert page.evaluate("document.querySelector('#view-body').inert") is True  # not clickable
        assert "stale" in page.get_attribute("#view-body", "class")
        page.click("#error-close")  # dismissing the error leaves them so: the filter is still wrong
        assert page.evaluate("document.querySelector('#view-body').inert") is True
        page.fill("#filters", "category=bags")
        page.press("#filters", "Enter")
        page.wait_for_function("!document.querySelector('#filters').hasAttribute('aria-invalid')")
        wait_view(page, "text", "red bag")
        assert page.is_hidden("#filter-error") and page.evaluate("document.querySelector('#view-body').inert") is False
        assert page.get_attribute("#filters", "aria-describedby") == "filter-help"
        assert all(i.startswith("bags/") for i in shown_ids(page))


def test_old_results_are_dimmed_and_not_clickable_while_a_search_runs(shared_tiny_store, tmp_path):
    with red_bag(shared_tiny_store, tmp_path, need_browser()) as page:
        held = []
        page.route("**/api/search/text?*", lambda route: held.append(route))
        page.fill("#q", "navy shirt")
        page.press("#q", "Enter")
        page.wait_for_selector("#view-body.stale[inert]")
        assert page.is_visible("#busy") and page.locator("#view-head h1").inner_text() == "“red bag”"
        for _ in range(WAIT_MS // 50):  # the request reaches the handler while Playwright waits
            if held:
                break
            page.wait_for_timeout(50)
        assert page.evaluate("document.querySelector('#view-body').inert") is True  # still: it is held
        held[0].continue_()
        page.unroute("**/api/search/text?*")
        wait_view(page, "text", "navy shirt")
        assert page.evaluate("document.querySelector('#view-body').inert") is False
        assert "stale" not in page.get_attribute("#view-body", "class")


GROCERY = ROOT.parent / "shared" / "datasets" / "grocery-products"


@pytest.mark.skipif(not GROCERY.is_dir(), reason="the grocery dataset (../shared/datasets) is absent")
def test_a_catalog_of_products_shows_each_product_once_with_its_best_photo(tmp_path):
    """The grocery feed (81 products x 8 photos, effnet-lite0): a shopper's photo finds 12 distinct
    products, each card showing the photo that matched best and how many photos the product has;
    clicking one shows products similar to it, itself left out."""
    sync_api = need_browser()
    from vrec.ingest.embed import embed

    store = tmp_path / "grocery"
    embed(GROCERY / "feed.csv", models=["effnet-lite0"], store=store)
    query = GROCERY / "query-photos" / "gs-001-1.jpg"
    with served(store, "--model", "effnet-lite0", log=tmp_path / "serve.log") as url, browser_page(sync_api) as page:
        page.goto(url)
        wait_ready(page)
        assert "81 products (648 photos)" in page.inner_text("#store-info")
        # filter guidance leads with the merchandising columns, not ids and sizes
        assert page.get_attribute("#filters", "placeholder") == "e.g. item_group_id=…, brand=…"
        assert page.inner_text("#filter-help").startswith("Filter on item_group_id, brand, product_type (also id,")
        page.set_input_files("#photo-input", str(query))
        wait_view(page, "image", query.name)
        assert wait_photos(page) == 12
        answer = post_photo(page, query, k=12)
        shown = shown_ids(page)
        assert shown == ids(answer) and len(set(shown)) == 12  # 12 products, none twice
        cards = page.eval_on_selector_all("#view-body .card", """cards => cards.map((c) => ({
            photo: c.dataset.photo, src: c.querySelector('img').getAttribute('src'),
            count: c.querySelector('.count')?.textContent}))""")
        for card, result in zip(cards, answer["body"]["results"]):
            assert card["photo"] == result["photo"] and card["src"] == "/thumb/" + result["photo"]
            assert card["photo"].startswith(result["id"] + "/") and card["count"] == "8 photos"
        assert any(not c["photo"].endswith("/1") for c in cards)  # not always the main photo
        page.screenshot(path=str(tmp_path / "products-photo.png"))

        first = page.locator("#view-body .card").first
        title = first.locator(".title").inner_text()
        first.click()
        wait_view(page, "similar", f"Similar to {title}")
        wait_photos(page)
        similar = shown_ids(page)
        assert similar == ids(api(page, f"/api/similar/{quote(shown[0])}?k=12"))
        assert len(set(similar)) == 12 and shown[0] not in similar
        assert "8 photos" in page.inner_text("#view-head .meta")
        # every photo of the product under its name; one clicked is shown large
        strip = page.eval_on_selector_all("#view-head .strip-photo", "bs => bs.map((b) => b.dataset.photo)")
        assert strip == [f"{shown[0]}/{n}" for n in range(1, 9)]
        page.click("#view-head .strip-photo >> nth=3")
        page.wait_for_function("document.querySelector('#view-head .query-photo img').getAttribute('src')"
                               f".endsWith('/{shown[0]}/4')")
        assert page.get_attribute("#view-head .strip-photo >> nth=3", "aria-pressed") == "true"
        page.screenshot(path=str(tmp_path / "products-similar.png"))
        assert page.js_errors == []
    for name in ("products-photo", "products-similar"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    shots = os.environ.get("VREC_SCREENSHOTS")  # a folder to keep the screenshots in, to look at them
    if shots:
        for name in ("products-photo", "products-similar"):
            shutil.copy(tmp_path / f"{name}.png", Path(shots) / f"{name}.png")


# --- the README's screenshot --------------------------------------------------------------------

def readme_screenshot(store: Path, out: Path, item: str, model: str | None, width: int = 1280, height: int = 860) -> None:
    """The page over a store showing an item's similar items (real photos after `make demo`), as a PNG."""
    from PIL import Image
    from playwright import sync_api

    log = out.with_suffix(".serve.log")
    shot = out.with_suffix(".full.png")
    with served(store, log=log) as url, browser_page(sync_api, width, height) as page:
        page.goto(url.split("?")[0] + "?similar=" + quote(item, safe="") + (f"&model={quote(model)}" if model else ""))
        wait_ready(page)
        wait_view(page, "similar", "Similar to")
        wait_photos(page)
        page.evaluate("document.activeElement.blur()")
        page.screenshot(path=str(shot))
        assert page.js_errors == [], page.js_errors
    # 256 colours: a fraction of the bytes, no visible difference at this size
    Image.open(shot).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    shot.unlink()
    log.unlink()


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="Write the README's screenshot of vrec serve.")
    p.add_argument("--store", default=".vrec-demo", help="the store to serve (default .vrec-demo, from make demo)")
    p.add_argument("--out", default="docs/serve.png", help="the PNG to write (default docs/serve.png)")
    p.add_argument("--item", default="handbags/27737", help="the item whose similar items are shown")
    p.add_argument("--model", default="effnet-lite0", help="the model whose neighbours are shown")
    a = p.parse_args()
    if chromium() is None:
        sys.exit("no Chromium on this machine: apt-get install chromium")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    readme_screenshot(Path(a.store), Path(a.out), a.item, a.model)
    print(json.dumps({"wrote": a.out, "bytes": Path(a.out).stat().st_size}))


def test_a_photo_search_has_an_address_that_reloads_and_can_be_shared(shared_tiny_store, tmp_path):
    sync_api = need_browser()
    with served(shared_tiny_store, "--model", "tiny-siglip", "--compare-with", "tiny-cnn",
                log=tmp_path / "serve.log") as url, browser_page(sync_api) as page:
        page.goto(url)
        wait_ready(page)
        page.set_input_files("#photo-input", str(PHOTO))
        wait_view(page, "image", PHOTO.name)
        wait_photos(page)
        first = shown_ids(page)
        assert "?photo=" in page.url  # not "/": the search can be reloaded and shared
        address = page.url
        page.reload()
        wait_ready(page)
        wait_view(page, "image", PHOTO.name)
        wait_photos(page)
        assert shown_ids(page) == first
        page.wait_for_function("document.querySelector('.query-photo img').naturalWidth > 0")  # the query, shown
        page.fill("#view-head input[name=plus]", "blue")
        page.press("#view-head input[name=plus]", "Enter")
        wait_view(page, "image", "+ blue")
        wait_photos(page)
        assert shown_ids(page) == ids(post_photo(page, PHOTO, k=12, plus="blue", weight=1))
        assert "plus=blue" in page.url
        other = page.context.new_page()  # a colleague opens the shared address
        other.goto(address)
        wait_ready(other)
        wait_view(other, "image", PHOTO.name)
        wait_photos(other)
        assert shown_ids(other) == first
