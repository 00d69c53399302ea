"""`vrec tag` and `vrec map` refuse bad input with one `Error:` line, exit 1, and write nothing."""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from clihelp import fails, vrec

SIGLIP = ("--model", "tiny-siglip")


def written(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("args, says", [
    (["--gaps", "--threshold", "5"], "--threshold must be between 0 and 1"),
    (["--gaps", "--threshold", "-0.1"], "--threshold must be between 0 and 1"),
    (["--gaps", "--threshold", "nan"], "--threshold must be a finite number"),
    (["--threshold", "5"], "--threshold must be between 0 and 1"),  # checked even without --gaps
    (["--gaps", "--min-items", "-1"], "--min-items must be at least 1"),
    (["--gaps", "--min-items", "0"], "--min-items must be at least 1"),
    (["--clusters", "0"], "--clusters must be between 2 and 200"),
    (["--clusters", "-1"], "--clusters must be between 2 and 200"),
    (["--clusters", "1"], "--clusters must be between 2 and 200"),
    (["--clusters", "1000000000"], "--clusters must be between 2 and 200"),
    (["--clusters", "nan"], "--clusters must be a finite number"),
    (["--clusters", "inf"], "--clusters must be a finite number"),
    (["--clusters", "2.5"], "--clusters must be a whole number"),
    (["--clusters", "many"], "--clusters takes a number of clusters or 'auto'"),
    (["--clusters", "61"], "only 60 items"),
    (["--seed", "-1"], "--seed must be at least 0"),
])
def test_map_refuses_numbers_out_of_range(shared_tiny_store, tmp_path, args, says):
    line = fails("map", *SIGLIP, "--store", shared_tiny_store, "--html", tmp_path / "m.html", *args)
    assert says in line
    assert not (tmp_path / "m.html").exists()


@pytest.mark.parametrize("args, says", [
    (["--threshold", "5"], "--threshold must be between 0 and 1"),
    (["--threshold", "nan"], "--threshold must be a finite number"),
    (["--top", "0"], "--top must be at least 1"),
    (["--top", "-3"], "--top must be at least 1"),
])
def test_tag_refuses_numbers_out_of_range(tiny_store, tmp_path, args, says):
    line = fails("tag", *SIGLIP, "--store", tiny_store, "--csv", tmp_path / "t.csv", *args)
    assert says in line
    assert not (tmp_path / "t.csv").exists() and not (tiny_store / "tags.parquet").exists()


def test_gaps_with_html_is_refused_and_gaps_go_to_csv(shared_tiny_store, tmp_path):
    line = fails("map", "--gaps", *SIGLIP, "--store", shared_tiny_store, "--html", tmp_path / "g.html")
    assert "--html" in line and "--csv" in line
    assert written(tmp_path) == set()
    vrec("map", "--gaps", *SIGLIP, "--store", shared_tiny_store, "--vocab", "home", "--csv", tmp_path / "g.csv")
    g = pd.read_csv(tmp_path / "g.csv")
    assert list(g.columns) == ["kind", "group", "concept", "items_above", "best_probability", "closest"]
    assert set(g["kind"]) <= {"gap", "over-served"} and len(g) > 0


@pytest.mark.parametrize("command", [["tag"], ["map", "--gaps"], ["map"]])
def test_vocabulary_that_is_a_folder_or_not_utf8(shared_tiny_store, tmp_path, command):
    folder = tmp_path / "vocab"
    folder.mkdir()
    assert "is a folder" in fails(*command, *SIGLIP, "--store", shared_tiny_store, "--vocab", folder)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("style:\nd\xe9contract\xe9\n".encode("latin-1"))
    assert "not UTF-8" in fails(*command, *SIGLIP, "--store", shared_tiny_store, "--vocab", latin1)


def test_a_concept_with_a_comma_is_two_concepts_everywhere(tiny_store, tmp_path):
    vocab = tmp_path / "v.txt"
    vocab.write_text("colour:\nred, blue\n")
    r = vrec("tag", *SIGLIP, "--store", tiny_store, "--vocab", vocab, "--threshold", "0", "--top", "5",
             "--csv", tmp_path / "t.csv")
    assert "red (" in r.stdout and "blue (" in r.stdout  # each tag shows its own probability
    t = pd.read_csv(tmp_path / "t.csv")
    for tags, probs in zip(t["tags"], t["tag_probabilities"]):
        assert sorted(tags.split(", ")) == ["blue", "red"] and len(probs.split(", ")) == 2
    r = vrec("search-text", "blue", *SIGLIP, "--store", tiny_store, "--filter", "tag:blue", "-k", "5",
             "--format", "csv")
    found = pd.read_csv(io.StringIO(r.stdout))
    assert len(found) == 5 and all(sorted(x.split(", ")) == ["blue", "red"] for x in found["tags"])


@pytest.mark.parametrize("command, option", [(["tag"], "--csv"), (["map"], "--csv"), (["map"], "--html"),
                                             (["map", "--gaps"], "--csv")])
def test_outputs_that_cannot_be_written(tiny_store, tmp_path, command, option):
    before = written(tmp_path)
    folder = tmp_path / "out"
    folder.mkdir()
    assert "is a folder" in fails(*command, *SIGLIP, "--store", tiny_store, option, folder)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert "Cannot write" in fails(*command, *SIGLIP, "--store", tiny_store, option, a_file / "sub" / "out.csv")
    assert written(tmp_path) - before == {"out", "a-file"}  # nothing else, nothing partial
    assert written(folder) == set() and not (tiny_store / "tags.parquet").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_an_unwritable_place_leaves_the_store_untouched(tiny_store):
    """/proc refuses new files even to root: the error comes when the file is written, after the work."""
    assert "Cannot write" in fails("tag", *SIGLIP, "--store", tiny_store, "--csv", "/proc/vrec-tags.csv")
    assert not (tiny_store / "tags.parquet").exists()  # the tags are saved only after the CSV
    assert "Cannot write" in fails("map", *SIGLIP, "--store", tiny_store, "--csv", "/proc/vrec-map.csv")
