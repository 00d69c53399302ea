"""The screenshots the README and docs show, made by this code from the real page (headless Chromium
driven by Playwright, as in test_serve_browser.py) over the test store:

- docs/img/serve-facets.png: "red bag" narrowed by a typed price<150 and a clicked category=bags;
- docs/img/serve-compare.png: side by side with category=bags, agreement on colour, the catalog-wide figures;
- docs/img/collection.png: a collection made from "red bag", two items pinned, one annotated;
- docs/img/serve-crop.png: searching a region of a photo (a bag and a boot side by side);
- docs/img/serve-phone.png: the results on a phone (390x844), filters folded.

The slow test makes them into its tmp dir and checks them; with VREC_DOCS_SCREENSHOTS=1 it writes them to
docs/img too. The same from the command line:

    .venv/bin/python tests/test_screenshots.py --store STORE --out docs/img

The fast test checks that docs/img holds them and that README.md and docs/*.md show them.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_serve_browser import (  # noqa: E402
    ROOT,
    browser_page,
    chromium,
    need_browser,
    served,
    wait_photos,
    wait_ready,
    wait_view,
)

SHOTS = {"serve-facets.png": "docs/serve.md", "serve-compare.png": "docs/serve.md", "collection.png": "docs/collections.md",
         "serve-crop.png": "docs/serve.md", "serve-phone.png": "docs/serve.md"}
IN_README = ("serve-facets.png", "serve-compare.png", "collection.png")
SERVE = ("--model", "tiny-siglip", "--compare-with", "tiny-cnn")


def keep(page, out: Path, full_page: bool = False) -> None:
    """The page as shown, as a PNG of 256 colours (a fraction of the bytes, no visible difference)."""
    from PIL import Image

    page.evaluate("document.activeElement && document.activeElement.blur()")
    full = out.with_suffix(".full.png")
    page.screenshot(path=str(full), full_page=full_page)
    Image.open(full).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    full.unlink()


def settled(page) -> None:
    page.wait_for_function("document.querySelector('#busy').hidden && !document.querySelector('#view-body').inert")


def facets(page, base: str, out: Path) -> None:
    page.goto(base + "?q=red+bag&filter=price%3C150")
    wait_ready(page)
    wait_view(page, "text", "red bag")
    page.click("#facets .facet[data-column='category'] .facet-value[data-filter='category=bags']")
    page.wait_for_function("document.querySelector('#filters').value === 'price<150, category=bags'")
    settled(page)
    wait_photos(page)
    keep(page, out / "serve-facets.png")


def compare(page, base: str, out: Path) -> None:
    page.goto(base + "?similar=" + quote("bags/bag-tote-red") + "&filter=category%3Dbags&compare=1&label=colour")
    wait_ready(page)
    page.wait_for_selector(".compare")
    page.click("#summary-button")
    page.wait_for_selector(".summary")
    settled(page)
    all_photos(page, ".compare")
    keep(page, out / "serve-compare.png", full_page=True)


def all_photos(page, scope: str) -> None:
    """Wait until every photo in scope has loaded, those below the window too (for a full-page shot)."""
    page.wait_for_function("""(scope) => Array.from(document.querySelectorAll(scope + ' img'))
        .every((i) => { i.loading = 'eager'; return i.complete && i.naturalWidth > 0; })""", arg=scope)


def collection(page, base: str, out: Path) -> None:
    page.goto(base)
    wait_ready(page)
    made = page.evaluate("""async () => (await fetch('/api/collections', {method: 'POST',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({name: 'red bags for the mail', text: 'red bag', k: 12, filters: ['category=bags']})})).json()""")
    ids = [i["id"] for i in made["items"]]
    page.click("#collections-button")
    page.get_by_text("red bags for the mail").first.click()
    page.wait_for_function("document.querySelectorAll('#coll-view .coll-item').length > 0")
    for i in ids[:2]:
        page.click(f'#coll-view .coll-act[data-act="pin"][data-id="{i}"]')
    page.fill(f'#coll-view textarea.coll-note[data-id="{ids[0]}"]', "hero of the mail")
    page.click("#coll-save")
    page.wait_for_function("document.querySelector('#coll-msg').textContent.includes('version 2')")
    all_photos(page, "#coll-view .coll-item")
    keep(page, out / "collection.png")


def crop(page, base: str, out: Path, photo: Path) -> None:
    page.goto(base + "?model=tiny-cnn")
    wait_ready(page)
    page.set_input_files("#photo-input", str(photo))
    wait_view(page, "image", photo.name)
    page.click("#crop-button")
    page.wait_for_function("document.querySelector('#crop-dialog img').naturalWidth > 0")
    r = page.locator("#crop-dialog .crop-stage img").bounding_box()
    page.mouse.move(r["x"] + 4, r["y"] + 4)
    page.mouse.down()
    page.mouse.move(r["x"] + r["width"] * 0.49, r["y"] + r["height"] - 4, steps=5)
    page.mouse.up()
    keep(page, out / "serve-crop.png")
    page.keyboard.press("Escape")


def phone(sync_api, base: str, out: Path) -> None:
    with browser_page(sync_api, 390, 844) as page:
        page.goto(base + "?q=red+bag")
        wait_ready(page)
        wait_view(page, "text", "red bag")
        wait_photos(page)
        keep(page, out / "serve-phone.png")
        assert page.js_errors == []


def shoot(store: Path, out: Path, log: Path) -> None:
    """Every screenshot of SHOTS, from the page over ``store`` (the test store), into ``out``."""
    from playwright import sync_api
    from test_serve_crop import composite

    out.mkdir(parents=True, exist_ok=True)
    photo = log.parent / "bag-and-boot.jpg"
    photo.write_bytes(composite())
    with served(store, *SERVE, log=log) as url:
        base = url.split("?")[0]
        with browser_page(sync_api, 1280, 800) as page:
            facets(page, base, out)
            compare(page, base, out)
            collection(page, base, out)
            crop(page, base, out, photo)
            assert page.js_errors == []
        phone(sync_api, base, out)


@pytest.mark.slow
def test_the_docs_screenshots_are_made_from_the_real_page(tiny_store, tmp_path):
    need_browser()
    shoot(tiny_store, tmp_path / "img", tmp_path / "serve.log")
    from PIL import Image

    for name in SHOTS:
        shot = tmp_path / "img" / name
        assert shot.stat().st_size > 10_000, name
        assert Image.open(shot).size[0] in (1280, 390), name
    if os.environ.get("VREC_DOCS_SCREENSHOTS"):
        for name in SHOTS:
            shutil.copy(tmp_path / "img" / name, ROOT / "docs" / "img" / name)


def test_the_readme_and_docs_show_the_screenshots():
    readme = (ROOT / "README.md").read_text()
    for name, doc in SHOTS.items():
        assert (ROOT / "docs" / "img" / name).stat().st_size > 10_000, name
        assert f"(img/{name})" in (ROOT / doc).read_text(), (name, doc)
    for name in IN_README:
        assert f"(docs/img/{name})" in readme, name


if __name__ == "__main__":
    import argparse
    import tempfile

    p = argparse.ArgumentParser(description="Write the docs' screenshots of vrec serve (see the module doc).")
    p.add_argument("--store", required=True, help="a store of the test catalog with tiny-siglip and tiny-cnn")
    p.add_argument("--out", default="docs/img", help="the folder to write them to (default docs/img)")
    a = p.parse_args()
    if chromium() is None:
        sys.exit("no Chromium on this machine: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        shoot(Path(a.store), Path(a.out), Path(tmp) / "serve.log")
    print("wrote", ", ".join(str(Path(a.out) / n) for n in SHOTS))
