"""A misspelt filter value (baseColour=Blak) is an error that names the value meant, in the library, the
CLI, the JSON API and the page -- not an empty result that leaves the user guessing."""
from __future__ import annotations

import pandas as pd
import pytest

from vrec.base.errors import FilterError
from vrec.store.filters import apply_filters, suggest_value

TABLE = pd.DataFrame({"baseColour": ["Black", "Brown", "Navy Blue", None], "price": [10, 20, 30, 40],
                      "season": ["Summer", "Winter", "Fall", "Summer"]})


@pytest.mark.parametrize("expr, meant", [("baseColour=Blak", "'Black'"), ("basecolour = blak", "'Black'"),
                                         ("baseColour in (Black, Brwn)", "'Brown'"),
                                         ("season not in (Sumer)", "'Summer'"), ("baseColour=Navy Bleu", "'Navy Blue'")])
def test_a_misspelt_value_says_which_one_was_meant(expr, meant):
    with pytest.raises(FilterError, match="Did you mean " + meant):
        apply_filters(TABLE, [expr])


@pytest.mark.parametrize("expr, n", [("baseColour=black", 1), ("baseColour=Purple", 0), ("baseColour!=Blak", 4),
                                     ("baseColour in (Black, Brown)", 2), ("season=summer", 2)])
def test_right_values_and_plain_misses_are_not_errors(expr, n):
    assert apply_filters(TABLE, [expr]).sum() == n


def test_suggest_value_ignores_case_and_gives_the_closest_first():
    assert suggest_value("BLAK", ["Black", "Blue", "Brown"]) == ["Black"]
    assert suggest_value("xyz", ["Black"]) == []


def test_the_cli_and_the_api_name_the_value_meant(shared_tiny_store):
    from clihelp import fails
    from fastapi.testclient import TestClient

    from vrec.serve.app import create_app

    fails("search-image", "bag-tote-red", "--model", "tiny-cnn", "--store", shared_tiny_store, "-f", "colour=redd",
          says="Did you mean 'red'?")
    client = TestClient(create_app(shared_tiny_store, model="tiny-cnn"))
    for path in ("/api/similar/bags/bag-tote-red", "/api/facets"):
        answer = client.get(path, params={"filter": "colour=blakc"})
        assert answer.status_code == 400 and "Did you mean 'black'?" in answer.json()["error"], answer.text


@pytest.mark.slow
def test_the_page_marks_the_filter_and_names_the_value_meant(shared_tiny_store, tmp_path):
    from test_serve_browser import browser_page, need_browser, served, wait_ready, wait_view

    sync_api = need_browser()
    with served(shared_tiny_store, "--model", "tiny-siglip", log=tmp_path / "serve.log") as url, \
            browser_page(sync_api) as page:
        page.goto(url.split("?")[0] + "?q=red+bag")
        wait_ready(page)
        wait_view(page, "text", "red bag")
        page.fill("#filters", "colour=blakc")
        page.press("#filters", "Enter")
        page.wait_for_selector("#filters[aria-invalid='true']")
        assert "Did you mean 'black'?" in page.inner_text("#filter-error")
        assert "Did you mean 'black'?" in page.inner_text("#error")
        assert page.js_errors == []
