"""The command line as a whole: instant help, versions, the model list."""
from __future__ import annotations

import subprocess
import sys

import pytest
from clihelp import vrec


def test_help_imports_no_heavy_libraries():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom vrec.cli import app\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
            "print(sorted(m for m in ('torch', 'open_clip', 'timm', 'pandas', 'hnswlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_lists_the_commands():
    text = vrec("--help").stdout
    for command in ("embed", "index", "search-text", "search-image", "compare", "models"):
        assert command in text


def test_version_and_models():
    assert vrec("--version").stdout.startswith("vrec ")
    text = vrec("models").stdout
    assert "siglip" in text and "effnet-lite0" in text and "tiny-siglip" in text
    assert "tiny-cnn" in vrec("models", "--pattern", "tiny-*").stdout
    assert "siglip-large" not in vrec("models", "--pattern", "tiny-*").stdout


def test_the_library_offers_what_the_cli_does(shared_tiny_store):
    import vrec
    from vrec.ingest.embed import embed  # importing the module must not hide the function

    assert vrec.embed is embed and callable(vrec.compare)
    hits = vrec.search_text("red bag", model="tiny-siglip", store=shared_tiny_store, k=3)
    assert list(hits.table["rank"]) == [1, 2, 3] and "probability" in hits.table
    assert isinstance(vrec.Store(shared_tiny_store).model("tiny-cnn").vectors(), __import__("numpy").ndarray)


def test_help_shows_the_defaults_written_in_brackets():
    # rich reads "[...]" as markup and silently drops it unless escaped
    text = " ".join(vrec("embed", "--help").stdout.replace("│", " ").split())
    assert "[default: 32 on CPU, 128 on GPU]" in text and "[default: one per CPU core]" in text


def test_help_paragraphs_wrap_to_the_terminal_not_to_the_docstring():
    # typer keeps a docstring's own line breaks; at 80 columns that cut sentences in two
    from typer.testing import CliRunner

    from vrec.cli import app

    text = CliRunner().invoke(app, ["tag", "--help"], terminal_width=200).stdout
    assert "pair, not a softmax across tags" in text


def test_console_script_quick_exit_keeps_every_line_and_the_exit_status(shared_tiny_store):
    """The `vrec` script ends query commands with os._exit to skip the interpreter's teardown:
    everything printed (a pipe is block-buffered) must still arrive, and failures keep their status."""
    import json
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # block-buffered, as for most users

    def script(*args):
        return subprocess.run([sys.executable, "-c", "from vrec.cli import run; run()", *args], capture_output=True,
                              text=True, timeout=300, env=env)

    small = script("search-image", "bag-tote-red", "--model", "tiny-siglip", "--store", str(shared_tiny_store),
                   "--k", "3", "--format", "json")  # smaller than the buffer: nothing written before the exit
    assert small.returncode == 0, small.stderr
    assert [r["rank"] for r in json.loads(small.stdout)["results"]] == [1, 2, 3]
    big = script("search-image", "bag-tote-red", "--model", "tiny-siglip", "--store", str(shared_tiny_store),
                 "--k", "1000", "--format", "csv")  # larger than the buffer: written in part before
    assert big.returncode == 0 and big.stdout.endswith("\n") and len(big.stdout.splitlines()) == 60  # all but the query
    bad = script("search-image", "no-such-item", "--model", "tiny-siglip", "--store", str(shared_tiny_store))
    assert bad.returncode == 1 and bad.stderr.count("Error:") == 1


@pytest.mark.parametrize("k", ["3", "1000"])  # output kept in Python's buffer until the end / written mid-command
def test_a_reader_that_stops_early_gets_no_error_message(shared_tiny_store, k):
    """`vrec ... --format json | head -c 100`: the reader is gone before the output is written (the
    pipe's read end is closed at once here, so that it is so every time): status 1, stderr quiet."""
    import os

    env = {key: v for key, v in os.environ.items() if key != "PYTHONUNBUFFERED"}
    p = subprocess.Popen([sys.executable, "-c", "from vrec.cli import run; run()", "search-image", "bag-tote-red",
                          "--model", "tiny-siglip", "--store", str(shared_tiny_store), "--k", k, "--format", "json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 1
    assert "Error" not in err and "Exception" not in err and "BrokenPipe" not in err, err


# --- CSV a spreadsheet can open safely (issue 21) ------------------------------------------------

FORMULA = '=HYPERLINK("http://evil.example","click")'


@pytest.fixture
def formula_store(tmp_path):
    """Three items whose metadata (and one id) a spreadsheet would run as formulas."""
    import numpy as np
    import pandas as pd
    from conftest import handmade_store

    ids = ["=1+1", "bag", "tote"]
    meta = pd.DataFrame({"id": ids, "title": [FORMULA, "@SUM(A1)", "-0.5"], "price": [-0.5, 10.0, 12.0]})
    return handmade_store(tmp_path / "store", {"m": np.eye(3) + 0.1}, metadata=meta, ids=ids)


def _csv_rows(text: str) -> list[dict]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))


def test_every_csv_escapes_cells_a_spreadsheet_would_run(formula_store, tmp_path):
    rows = _csv_rows(vrec("search-image", "bag", "-m", "m", "--store", formula_store, "--format", "csv").stdout)
    by_id = {r["id"]: r for r in rows}
    assert by_id["'=1+1"]["title"] == "'" + FORMULA and by_id["tote"]["title"] == "-0.5"  # a number: as it is
    assert by_id["'=1+1"]["price"] == "-0.5"  # numeric columns are never touched
    vrec("export", tmp_path / "v.csv", "-m", "m", "--store", formula_store)
    exported = {r["id"]: r for r in _csv_rows((tmp_path / "v.csv").read_text())}
    assert exported["bag"]["title"] == "'@SUM(A1)" and float(exported["'=1+1"]["price"]) == -0.5
    vrec("neighbours", tmp_path / "n.csv", "-m", "m", "--store", formula_store, "-k", "2")
    assert {r["item"] for r in _csv_rows((tmp_path / "n.csv").read_text())} == {"'=1+1", "bag", "tote"}


def test_csv_raw_values_on_request(formula_store, monkeypatch):
    def titles() -> dict:
        rows = _csv_rows(vrec("search-image", "bag", "-m", "m", "--store", formula_store, "--format", "csv").stdout)
        return {r["id"]: r["title"] for r in rows}

    assert titles()["'=1+1"] == "'" + FORMULA
    monkeypatch.setenv("VREC_CSV_RAW", "1")
    assert titles()["=1+1"] == FORMULA


def test_ab_assign_escapes_unit_ids_too(tmp_path):
    (tmp_path / "units.csv").write_text("unit\n=cmd|' /C calc'!A0\nu2\n")
    rows = _csv_rows(vrec("ab", "assign", tmp_path / "units.csv", "-e", "exp").stdout)
    assert rows[0]["unit"] == "'=cmd|' /C calc'!A0" and rows[1]["unit"] == "u2"


# --- '-' is stdout -------------------------------------------------------------------------------

def test_export_and_neighbours_to_dash_write_csv_on_stdout(formula_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = _csv_rows(vrec("export", "-", "-m", "m", "--store", formula_store).stdout)
    assert len(rows) == 3 and "v0" in rows[0]
    assert len(_csv_rows(vrec("neighbours", "-", "-m", "m", "--store", formula_store, "-k", "1").stdout)) == 3
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("args,says", [(["export", "-", "--format", "npy"], "takes CSV only"),
                                       (["export", "-", "--format", "parquet"], "takes CSV only"),
                                       (["tag", "--csv", "-"], "Writing to stdout ('-') is not possible here")])
def test_dash_where_stdout_cannot_take_it_is_one_error(formula_store, tmp_path, monkeypatch, args, says):
    from clihelp import fails

    monkeypatch.chdir(tmp_path)
    fails(*args, "-m", "m", "--store", formula_store, says=says)
    assert not (tmp_path / "-").exists()


def test_the_cli_starts_without_numpy_pandas_or_torch():
    """`vrec --help` and every command's parsing stay instant: heavy libraries load inside commands."""
    code = ("import sys\nfrom vrec.cli import app\n"
            "print(sorted(m for m in ('numpy', 'pandas', 'torch', 'open_clip', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
