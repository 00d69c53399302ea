"""The OpenAPI document of ``vrec serve`` is its contract: what it declares, and a third-party fuzzer
(schemathesis) run against a live server finding no answer that breaks it."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from test_serve_api import make_app, start_server, stop  # noqa: E402

ST = Path(sys.executable).with_name("st")  # schemathesis' command, installed with the test extra


@pytest.fixture(scope="module")
def openapi(shared_tiny_store) -> dict:
    return TestClient(make_app(shared_tiny_store)).get("/openapi.json").json()


def test_every_route_declares_its_errors_as_the_error_model(openapi):
    for path, ops in openapi["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert "422" not in codes, (method, path)  # validation errors are 400s with {"error": ...}
            assert {"400", "405"} <= codes or path == "/api/health", (method, path, codes)
            for code in codes - {"200"}:
                schema = op["responses"][code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorAnswer"}, (method, path, code)
    assert openapi["components"]["schemas"]["ErrorAnswer"]["required"] == ["error"]


def test_parameters_carry_their_constraints(openapi):
    params = {p["name"]: p for p in openapi["paths"]["/api/search/text"]["get"]["parameters"]}
    assert params["q"]["required"] and params["q"]["schema"]["minLength"] == 1
    assert (params["k"]["schema"]["minimum"], params["k"]["schema"]["maximum"]) == (1, 1000)
    models = params["model"]["schema"]["anyOf"][0]["enum"]
    assert models == ["tiny-siglip"]  # text search: only the store's models with a text tower
    similar = {p["name"]: p for p in openapi["paths"]["/api/similar/{item_id}"]["get"]["parameters"]}
    assert sorted(similar["model"]["schema"]["anyOf"][0]["enum"]) == ["tiny-cnn", "tiny-siglip"]
    answer = openapi["paths"]["/api/search/text"]["get"]["responses"]["200"]["content"]["application/json"]
    assert answer["schema"] == {"$ref": "#/components/schemas/SearchAnswer"}
    gallery = openapi["paths"]["/api/gallery"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert gallery["$ref"] == "#/components/schemas/GalleryRequest"
    assert "/api/recommend/{item_id}" not in openapi["paths"]  # no experiment: the route is not offered


def test_a_method_not_allowed_says_which_are(shared_tiny_store):
    r = TestClient(make_app(shared_tiny_store)).post("/api/search/text?q=red")
    assert r.status_code == 405 and r.headers["allow"] == "GET", r.headers
    assert list(r.json()) == ["error"]


@pytest.mark.slow
@pytest.mark.skipif(not ST.exists(), reason="schemathesis is not installed (pip install -e '.[test]')")
def test_schemathesis_finds_no_failure_against_a_live_server(shared_tiny_store, tmp_path):
    """Every route fuzzed from the document: no 5xx, every answer (status, content type, body) as
    declared, malformed requests refused. One check is left out: 'positive_data_acceptance' expects
    every schema-valid request to succeed, and a schema cannot say which filters name this catalog's
    columns or which bytes are a photo -- those requests get the declared 400 naming the mistake.
    The store has a keyword index, so text search's keyword and hybrid modes are fuzzed too."""
    from clihelp import vrec

    store = tmp_path / "store"
    shutil.copytree(shared_tiny_store, store)
    vrec("index", "--store", store)
    p, url = start_server(store, tmp_path)
    try:
        import json
        import urllib.request

        with urllib.request.urlopen(f"{url}api/health") as r:
            assert json.load(r)["text_mode"] == "hybrid"  # the fuzzed text searches use both legs by default
        run = subprocess.run([str(ST), "run", f"{url}openapi.json", "--max-examples", "25",
                              "--generation-deterministic", "--exclude-checks", "positive_data_acceptance",
                              "--no-color"], capture_output=True, text=True, timeout=600)
    finally:
        code, log = stop(p)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    assert " passed" in out and "failures" not in out.split("SUMMARY")[-1].lower(), out[-3000:]
    assert code == 0 and "Traceback" not in log, log
