"""Bad input at the edges of embed, index and the store: one clear error, nothing lost or hung.

Each case runs the CLI as a user would and checks what they would notice: the exit status,
exactly one ``Error:`` line and no traceback, and -- where the command failed -- a store that is
still readable and byte-for-byte unchanged.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clihelp import fails, one_error, vrec
from conftest import ROOT, catalog_copy

from vrec.ingest.embed import embed
from vrec.store.store import Store


def snapshot(folder: Path) -> dict:
    """Every file below ``folder`` with its content hash (lock files aside)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture
def cnn_store(tmp_path) -> tuple[Path, Path]:
    """12 photos embedded with tiny-cnn, with metadata: (photos, store)."""
    photos = catalog_copy(tmp_path, n=12)
    ids = sorted(p.relative_to(photos).with_suffix("").as_posix() for p in photos.rglob("*.jpg"))
    meta = tmp_path / "meta.csv"
    pd.DataFrame({"id": ids, "title": [f"item {i}" for i in range(len(ids))]}).to_csv(meta, index=False)
    embed(photos, models=["tiny-cnn"], store=tmp_path / "store", metadata=meta)
    return photos, tmp_path / "store"


# --- 1. crashes and hangs ---------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-1", "1", "100000"])
def test_hnsw_degree_out_of_range_is_refused_before_native_code(cnn_store, value):
    _, store = cnn_store
    before = snapshot(store)
    fails("index", "--store", store, "--m", value, says="--m must be between 2 and 100")
    assert snapshot(store) == before


@pytest.mark.parametrize("option,value", [("--ef-construction", "0"), ("--ef-construction", "99999999"),
                                          ("--target-recall", "nan"), ("--target-recall", "0"),
                                          ("--target-recall", "1.5")])
def test_other_index_options_out_of_range(cnn_store, option, value):
    fails("index", "--store", cnn_store[1], option, value, says=option)


def test_pipes_devices_and_broken_links_are_skipped_not_hung(tmp_path):
    photos = catalog_copy(tmp_path, n=3)
    os.mkfifo(photos / "pipe.jpg")  # reading this would block forever
    (photos / "broken.jpg").symlink_to(photos / "nowhere.jpg")
    (photos / "loop.jpg").symlink_to(photos / "loop.jpg")
    # a real process with a time limit: a hang fails the test instead of stalling the suite
    r = subprocess.run([str(Path(sys.executable).parent / "vrec"), "embed", str(photos), "-m", "tiny-cnn",
                        "--store", str(tmp_path / "s")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "pipe.jpg: cannot read (not a regular file: a named pipe)" in " ".join(r.stderr.split())
    assert "broken.jpg" in r.stderr and "loop.jpg" in r.stderr
    assert len(Store(tmp_path / "s").model("tiny-cnn")) == 3
    assert set(Store(tmp_path / "s").skipped()["path"]) == {"pipe.jpg", "broken.jpg", "loop.jpg"}


def test_a_list_file_naming_a_missing_photo_skips_it(tmp_path):
    photos = catalog_copy(tmp_path, n=2)
    first = sorted(photos.rglob("*.jpg"))[0]
    lst = tmp_path / "list.csv"
    pd.DataFrame({"path": [str(first), str(photos / "gone.jpg")]}).to_csv(lst, index=False)
    r = vrec("embed", lst, "-m", "tiny-cnn", "--store", tmp_path / "s")
    assert "gone.jpg" in r.stderr and len(Store(tmp_path / "s").model("tiny-cnn")) == 1


# --- 2. the store survives failed and partial runs --------------------------------------------

def test_failed_weights_leave_no_configuration_behind(tmp_path):
    photos = catalog_copy(tmp_path, n=4)
    bad = tmp_path / "wrong.pt"
    bad.write_bytes(b"PK\x03\x04 looks like torch.save, is not a state dict")
    fails("embed", photos, "-m", "tiny-cnn", "--weights", bad, "--store", tmp_path / "s",
          says="Cannot read weights file")
    vrec("embed", photos, "-m", "tiny-cnn", "--store", tmp_path / "s")  # a plain run is not refused
    assert len(Store(tmp_path / "s").model("tiny-cnn")) == 4


def test_metadata_matching_no_item_is_refused_and_keeps_the_old(cnn_store, tmp_path):
    photos, store = cnn_store
    before = Store(store).metadata()
    wrong = tmp_path / "idonly.csv"
    pd.DataFrame({"id": ["sku-1.png", "sku-2.png"], "title": ["a", "b"]}).to_csv(wrong, index=False)
    line = fails("embed", photos, "-m", "tiny-cnn", "--store", store, "--metadata", wrong, says="None of the 2 rows")
    assert "item ids look like" in line
    pd.testing.assert_frame_equal(Store(store).metadata(), before)


def test_metadata_ids_are_read_as_written_and_duplicates_reported(tmp_path):
    photos = tmp_path / "p"
    photos.mkdir()
    src = sorted((ROOT / "tests").rglob("*.jpg"))[0]
    for name in ("NA", "007", "7"):
        (photos / f"{name}.jpg").write_bytes(src.read_bytes())
    meta = tmp_path / "m.csv"
    meta.write_text("id,title\nNA,not missing\n007,double-oh\n7,seven\n7,seven again\n")
    r = vrec("embed", photos, "-m", "tiny-cnn", "--store", tmp_path / "s", "--metadata", meta)
    md = Store(tmp_path / "s").metadata()
    assert md.loc["NA", "title"] == "not missing" and md.loc["007", "title"] == "double-oh"
    assert md.loc["7", "title"] == "seven again"
    text = " ".join(r.stderr.split())
    assert "1 metadata row(s) repeat an id" in text and "'7'" in text
    assert "4 of 4 rows matched" in text


def test_a_deleted_shard_is_reported_then_repaired(cnn_store):
    photos, store = cnn_store
    item = _first_id(store)
    for f in (store / "models" / "tiny-cnn" / "shards").glob("*.npy"):
        f.unlink()
    fails("search-image", item, "-m", "tiny-cnn", "--store", store, says="are damaged")
    r = vrec("embed", photos, "-m", "tiny-cnn", "--store", store)
    assert "Repaired: 12 tiny-cnn vector(s)" in " ".join(r.stderr.split())
    ms = Store(store).model("tiny-cnn")
    assert len(ms) == 12 and np.allclose(np.linalg.norm(ms.vectors(), axis=1), 1, atol=1e-5)
    vrec("search-image", item, "-m", "tiny-cnn", "--store", store)


def _first_id(store: Path) -> str:
    return str(Store(store).model("tiny-cnn").items()["id"].iloc[0])


def test_a_photo_swapped_with_same_size_and_time_is_caught_by_verify(cnn_store):
    photos, store = cnn_store
    files = sorted(photos.rglob("*.jpg"))
    a = files[0]
    st = a.stat()
    other = next(f.read_bytes() for f in files[1:] if f.stat().st_size != st.st_size)
    a.write_bytes(other[: st.st_size].ljust(st.st_size, b"\0"))  # other bytes, same size ...
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and the same modification time
    plain = embed(photos, models=["tiny-cnn"], store=store)
    assert plain.models[0].changed == 0  # the cheap check (README says so) cannot see it
    checked = embed(photos, models=["tiny-cnn"], store=store, verify=True)
    assert checked.models[0].changed + len(checked.skipped) == 1


def test_vectors_of_another_precision_are_not_mixed_in(cnn_store):
    photos, store = cnn_store
    (photos / "new.jpg").write_bytes(sorted(photos.rglob("*.jpg"))[0].read_bytes())
    before = snapshot(store)
    fails("embed", photos, "-m", "tiny-cnn", "--store", store, "--precision", "int8",
          says="made with precision ('fp32', now 'int8')")
    assert snapshot(store) == before
    assert Store(store).model("tiny-cnn").config["precision"] == "fp32"


@pytest.mark.parametrize("args,says", [(["--precision", "fp64"], "Unknown precision 'fp64'"),
                                       (["--device", "tpu"], "Unknown device 'tpu'"),
                                       (["--device", "cuda"], "no CUDA GPU"),
                                       (["--batch-size", "0"], "--batch-size must be between 1"),
                                       (["--workers", "-1"], "--workers must be between 1")])
def test_bad_embed_options_are_refused_even_when_nothing_is_new(cnn_store, args, says):
    photos, store = cnn_store
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA GPU")
    before = snapshot(store)
    fails("embed", photos, "-m", "tiny-cnn", "--store", store, *args, says=says)
    assert snapshot(store) == before


def test_commit_interval_is_what_readme_says():
    from vrec.ingest.pipeline import COMMIT_SECONDS

    readme = " ".join((ROOT / "docs" / "catalog.md").read_text().split())  # vrec embed's page
    m = re.search(r"committed at least every (\d+) seconds", readme)
    assert m, "docs/catalog.md must state the commit interval"
    assert float(m.group(1)) == COMMIT_SECONDS <= 5


# --- 5. one Error line, never a traceback ------------------------------------------------------

@pytest.mark.parametrize("command", [["embed", "PHOTOS", "-m", "tiny-cnn"], ["index"], ["tag", "-m", "tiny-cnn"],
                                     ["search-text", "red", "-m", "tiny-siglip"]])
@pytest.mark.parametrize("where", ["a file", "/dev/null", "unwritable"])
def test_a_store_that_is_not_a_usable_folder(tmp_path, command, where):
    photos = catalog_copy(tmp_path, n=2)
    target = {"a file": tmp_path / "afile", "/dev/null": Path("/dev/null"),
              "unwritable": Path("/proc/self/vrec-store")}[where]  # /proc refuses even root
    if where == "a file":
        target.write_text("x")
    args = [str(photos) if a == "PHOTOS" else a for a in command]
    fails(*args, "--store", target)


def test_metadata_that_is_a_folder(tmp_path):
    photos = catalog_copy(tmp_path, n=2)
    fails("embed", photos, "-m", "tiny-cnn", "--store", tmp_path / "s", "--metadata", tmp_path,
          says="is a folder")


# --- 7. files are written as the umask says ----------------------------------------------------

def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        photos = catalog_copy(tmp_path, n=2)
        embed(photos, models=["tiny-cnn"], store=tmp_path / "s")
        vrec("export", tmp_path / "v.npy", "-m", "tiny-cnn", "--store", tmp_path / "s")
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "s").rglob("*") if p.is_file() and p.name != ".lock"]
    files += list(tmp_path.glob("v*.npy"))
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in files), \
        {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}


# --- 8. usage errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("args,says", [(["search-text", "--k", "abc", "red"], "Invalid value for '--k'"),
                                       (["search-text"], "Missing argument"),
                                       (["no-such-command"], "No such command")])
def test_usage_errors_are_one_line_with_exit_2(args, says):
    r = vrec(*args, ok=False)
    one_error(r, says, code=2)
    assert "--help" in r.stderr and "╭" not in r.stderr


# --- the sweep: every numeric option of every command at the edges -----------------------------

def _numeric_options() -> list[tuple[str, str, type]]:
    """(command, option, int or float) for every numeric option the CLI has, found by looking."""
    import typing

    import typer

    from vrec.cli import app

    found = []
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        if not command.callback:
            continue
        hints = typing.get_type_hints(command.callback)
        for p in command.params:
            t = hints.get(p.name)
            t = next((a for a in typing.get_args(t) if a is not type(None)), t)  # Optional[int] -> int
            if t in (int, float) and p.param_type_name == "option":
                found.append((name, p.opts[0], t))
    return found


BASE_ARGS = {
    "embed": ["embed", "DRAWN", "-m", "tiny-cnn"],
    "index": ["index"],
    "search-text": ["search-text", "red bag", "-m", "tiny-siglip"],
    "search-image": ["search-image", "bags/bag-tote-red", "-m", "tiny-siglip", "--plus", "red"],
    "compare": ["compare", "--left", "tiny-cnn", "--right", "tiny-siglip", "--sample", "2"],
    "eval": ["eval", "--models", "tiny-siglip,tiny-cnn", "--label", "category", "--bootstrap", "20"],
    "neighbours": ["neighbours", "OUT.parquet", "-m", "tiny-cnn"],
    "tag": ["tag", "-m", "tiny-siglip"],
    "map": ["map", "-m", "tiny-siglip", "--clusters", "3"],
    "serve": ["serve", "-m", "tiny-siglip"],
    "cost": ["cost", "--images", "1000", "-m", "tiny-cnn", "--calibrate", "8"],
    "dupes": ["dupes", "-m", "tiny-cnn"],
    "adapt": ["adapt", "-m", "tiny-cnn", "--label", "category", "--steps", "5", "--force"],
}
# options for which any large value means what it says: a seed, "at most N tags", "fewer than N items"
UNBOUNDED = ("--seed", "--top", "--min-items", "--limit")
# values that are fine and would start a long-lived server: not run here (tests/test_serve_api.py)
STARTS_A_SERVER = {("serve", "--port", "0")}
EDGES = {int: ["0", "-1", "100000000000", "nan"], float: ["0", "-1", "1e39", "nan"]}


def test_the_sweep_knows_every_command_with_numbers():
    assert {c for c, _, _ in _numeric_options()} <= set(BASE_ARGS)


@pytest.mark.parametrize("command,option,kind", _numeric_options(), ids=lambda v: getattr(v, "__name__", v))
def test_numeric_options_at_the_edges_never_crash(tiny_store, sample_dir, tmp_path, command, option, kind):
    for value in EDGES[kind]:
        if (command, option, value) in STARTS_A_SERVER:
            continue
        args = [str(sample_dir) if a == "DRAWN" else str(tmp_path / "out.parquet") if a == "OUT.parquet" else a
                for a in BASE_ARGS[command]]
        args = [a for i, a in enumerate(args) if not (args[i - 1:i] == [option] or a == option)]  # ours wins
        r = vrec(*args, option, value, "--store", tiny_store, ok=False)
        said = f"vrec {' '.join(args)} {option} {value}"
        assert "Traceback" not in r.stdout + r.stderr, said
        assert r.exit_code in (0, 1, 2), (said, r.exit_code, r.stderr)
        if r.exit_code:  # refused: one clear line (2 = not a number for an int option)
            errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
            assert len(errors) == 1, (said, r.stderr)
        else:  # accepted: 0 where it is in range; a huge value only as a clamp that says so
            assert value not in ("nan", "-1"), said
            if value != "0" and option not in UNBOUNDED:
                assert "note" in r.stderr.lower(), (said, r.stderr)


def test_a_style_map_never_overwrites_user_columns_named_like_its_own(tiny_store, sample_dir, tmp_path):
    meta = pd.read_csv(sample_dir / "catalog.csv")
    meta["x"] = range(len(meta))  # a user column with the name of the map's own coordinate
    meta.to_csv(tmp_path / "m.csv", index=False)
    vrec("embed", sample_dir, "-m", "tiny-siglip", "--store", tiny_store, "--metadata", tmp_path / "m.csv")
    vrec("map", "-m", "tiny-siglip", "--store", tiny_store, "--clusters", "3", "--label", "meta_x",
         "--csv", tmp_path / "map.csv")
    out = pd.read_csv(tmp_path / "map.csv")
    assert sorted(out["meta_x"]) == list(range(len(meta)))  # the user's values, whole
    assert out["x"].between(-1e6, 1e6).all() and not (out["x"] == out["meta_x"]).all()


def test_a_file_too_large_to_be_a_photo_is_skipped_unread(tmp_path, tiny_store):
    """A 50 GB (sparse) 'photo' is listed as skipped, never read into memory; as a query, one error line."""
    photos = catalog_copy(tmp_path, n=3)
    huge = photos / "huge.jpg"
    with open(huge, "wb") as f:
        f.truncate(50 << 30)
    r = vrec("embed", photos, "--model", "tiny-cnn", "--store", tmp_path / "s")
    assert "huge.jpg" in r.stderr and "larger than any photo vrec reads" in r.stderr
    assert len(Store(tmp_path / "s").model("tiny-cnn").items()) == 3
    fails("search-image", huge, "--model", "tiny-cnn", "--store", tiny_store, says="larger than any photo vrec reads")


@pytest.mark.parametrize("name", ["loop.csv", "loopdir"])
def test_a_catalog_that_is_a_looping_link_is_one_error(tmp_path, name):
    (tmp_path / name).symlink_to(tmp_path / name)
    fails("embed", tmp_path / name, "--model", "tiny-cnn", "--store", tmp_path / "s", says="points to itself")
