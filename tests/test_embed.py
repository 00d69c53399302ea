"""``vrec embed`` end to end with the tiny models: layout, incremental runs, interruptions, bad files."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clihelp import fails, vrec
from conftest import ROOT, TINY, catalog_copy, jpeg_bytes, write_bad_files

from vrec.ingest.embed import embed
from vrec.store.store import Store


def test_store_layout_manifest_and_vectors(tiny_store):
    st = Store(tiny_store)
    assert json.loads((tiny_store / "store.json").read_text())["schema_version"] == 1
    assert sorted(st.model_names()) == sorted(TINY)
    for name, dim in (("tiny-siglip", 64), ("tiny-cnn", 96)):
        ms = st.model(name)
        m = json.loads(ms.manifest_path.read_text())
        assert m["model"]["name"] == name and m["model"]["dim"] == dim
        assert m["model"]["weights"] == "random-seed0" and m["model"]["preprocess"]["size"] == 64
        assert m["vrec_version"] and m["updated"]
        items, vec = ms.items(), ms.vectors()
        assert vec.shape == (60, dim) and vec.dtype == np.float32
        assert np.allclose(np.linalg.norm(vec, axis=1), 1, atol=1e-5)
        assert list(items.columns[:7]) == ["id", "path", "hash", "size", "mtime", "width", "height"]
        assert (items["width"] == 256).all()  # the photo's own size, not the draft-decoded one
    assert not list(tiny_store.rglob("*.pkl")) and not list(tiny_store.rglob("*.pickle"))
    assert st.metadata().loc["bags/bag-tote-red", "price"] > 0


def test_embedding_is_deterministic(tmp_path, tiny_store, sample_dir):
    embed(sample_dir, models=["tiny-siglip"], store=tmp_path / "again", batch_size=7, workers=1)
    a = Store(tiny_store).model("tiny-siglip").vectors()
    b = Store(tmp_path / "again").model("tiny-siglip").vectors()
    assert np.allclose(a, b, atol=1e-6)  # neither batch size nor decode threads change the vectors


def test_second_run_reports_nothing_new(tiny_store, sample_dir):
    r = vrec("embed", sample_dir, "--model", "tiny-siglip", "--model", "tiny-cnn", "--store", tiny_store)
    lines = [line for line in r.stderr.splitlines() if "tiny-" in line]
    assert len(lines) == 2 and all("│   0 │       0 │       0 │        60 │" in line for line in lines), r.stderr


def test_incremental_add_change_delete(tmp_path):
    photos = catalog_copy(tmp_path, n=12)
    store = tmp_path / "store"
    embed(photos, models=TINY, store=store)
    before = Store(store).model("tiny-siglip").items().set_index("id")
    files = sorted(photos.rglob("*.jpg"))
    files[0].unlink()  # delete
    shutil.copy(files[5], files[1])  # change content
    (photos / "new.jpg").write_bytes(jpeg_bytes((10, 200, 10)))  # add
    os.utime(files[2], (1, 1))  # touch only: same bytes, new mtime
    r = embed(photos, models=TINY, store=store)
    for m in r.models:
        assert (m.new, m.changed, m.removed, m.unchanged, m.total) == (1, 1, 1, 10, 12)
    ms = Store(store).model("tiny-siglip")
    after = ms.items().set_index("id")
    ids = [f.relative_to(photos).with_suffix("").as_posix() for f in files]
    assert ids[0] not in after.index and "new" in after.index
    assert after.loc[ids[1], "hash"] == before.loc[ids[5], "hash"] != before.loc[ids[1], "hash"]
    v = dict(zip(ms.items()["id"], ms.vectors()))
    assert np.allclose(v[ids[1]], v[ids[5]], atol=1e-6)
    assert all(embed(photos, models=TINY, store=store).models[i].unchanged == 12 for i in range(2))


# A model that encodes two batches, then blocks inside the third until the test has signalled it:
# the test waits for the marker file, so what is committed at the signal is exactly two batches,
# however fast or loaded the machine is (no sleeps, no races).
BLOCKING_EMBED = """
import os, sys, time
import vrec.models.encoders as e
orig = e.Encoder.encode_pixels
calls = []
def blocking(self, pixels):
    calls.append(1)
    if len(calls) == 3:
        open(os.environ["VREC_TEST_MARKER"], "w").close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # a signal ends this wait (or the process)
            time.sleep(0.02)
        sys.exit(99)  # never signalled: fail loudly rather than hang
    return orig(self, pixels)
e.Encoder.encode_pixels = blocking
sys.argv = ["vrec"] + sys.argv[1:]
from vrec.cli import main
main()
"""
BATCH = 4


def _blocking_run(photos, store, marker, ignore_sigint=False, tty=None):
    """vrec embed with the blocking model; ``tty``: a pty that becomes its controlling terminal."""
    def child_setup():
        if ignore_sigint:  # as a non-interactive shell starts a background job ('make test &')
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if tty is not None:
            _take_terminal(tty)

    return subprocess.Popen(
        [sys.executable, "-c", BLOCKING_EMBED, "embed", str(photos), "--model", "tiny-cnn", "--store", str(store),
         "--batch-size", str(BATCH), "--workers", "1"] + ([] if tty is not None else ["--quiet"]),
        env={**os.environ, "VREC_COMMIT_SECONDS": "0", "VREC_TEST_MARKER": str(marker)},
        stdin=tty, stdout=tty if tty is not None else subprocess.PIPE, stderr=tty if tty is not None else subprocess.PIPE,
        text=True, cwd=ROOT, preexec_fn=child_setup if (ignore_sigint or tty is not None) else None,
        start_new_session=tty is not None)


def _take_terminal(fd):
    """In the child: make the pty our controlling terminal, as a shell does for a foreground job."""
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSCTTY, 0)


def _committed(store: Path) -> int:
    m = store / "models" / "tiny-cnn" / "manifest.json"
    try:
        return sum(s["rows"] for s in json.loads(m.read_text())["shards"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def _wait_for(marker: Path, proc, limit=180):
    t0 = time.monotonic()
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < limit, "the embed never reached its third batch"
        time.sleep(0.02)


N_PHOTOS = 20


@pytest.fixture(scope="module")
def clean_vectors(tmp_path_factory) -> dict:
    """What an uninterrupted run stores for the same photos: the resumed store must equal it."""
    tmp = tmp_path_factory.mktemp("clean")
    photos = catalog_copy(tmp, n=N_PHOTOS)
    embed(photos, models=["tiny-cnn"], store=tmp / "store")
    ms = Store(tmp / "store").model("tiny-cnn")
    return dict(zip(ms.items()["id"], ms.vectors()))


def _check_resume(photos, store, kept, clean: dict | None = None):
    ms = Store(store).model("tiny-cnn")
    assert len(ms) == kept and np.allclose(np.linalg.norm(ms.vectors(), axis=1), 1, atol=1e-5)
    r = embed(photos, models=["tiny-cnn"], store=store)
    assert r.models[0].new == N_PHOTOS - kept and r.models[0].total == N_PHOTOS
    if clean is not None:
        a = Store(store).model("tiny-cnn")
        va = dict(zip(a.items()["id"], a.vectors()))
        assert va.keys() == clean.keys() and all(np.allclose(va[k], clean[k], atol=1e-6) for k in va)


@pytest.mark.parametrize("sig,ignore_sigint", [
    (signal.SIGINT, False),  # Ctrl-C sent by kill
    (signal.SIGINT, True),  # ... to a run started in the background of a script (SIGINT ignored)
    (signal.SIGTERM, False),  # a plain 'kill'
    (signal.SIGTERM, True),
    (signal.SIGKILL, False),  # nothing can be done at the signal: the commits made before count
], ids=["sigint", "sigint-background", "sigterm", "sigterm-background", "sigkill"])
def test_interrupted_run_keeps_finished_batches_and_resumes(tmp_path, sig, ignore_sigint, clean_vectors):
    photos = catalog_copy(tmp_path, n=N_PHOTOS)
    store, marker = tmp_path / "store", tmp_path / "third-batch"
    proc = _blocking_run(photos, store, marker, ignore_sigint=ignore_sigint)
    _wait_for(marker, proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    kept = _committed(store)
    assert kept == 2 * BATCH  # every finished batch was committed before the signal
    if sig != signal.SIGKILL:
        assert proc.returncode == 130, stderr
        assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    _check_resume(photos, store, kept, clean_vectors)


def test_ctrl_c_in_a_terminal_stops_the_run_cleanly(tmp_path):
    """Ctrl-C typed at a terminal: the tty sends SIGINT to the foreground job (here, vrec on a pty)."""
    import pty
    import threading

    photos = catalog_copy(tmp_path, n=N_PHOTOS)
    store, marker = tmp_path / "store", tmp_path / "third-batch"
    master, slave = pty.openpty()
    screen = bytearray()

    def read_screen():  # a terminal always drains what the program writes (the progress bar too)
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child has gone and the pty is closed
                return
            if not chunk:
                return
            screen.extend(chunk)

    reader = threading.Thread(target=read_screen, daemon=True)
    reader.start()
    try:
        proc = _blocking_run(photos, store, marker, tty=slave)
        _wait_for(marker, proc)
        os.write(master, b"\x03")  # what the Ctrl-C key sends
        proc.wait(timeout=120)
    finally:
        os.close(slave)
        reader.join(timeout=10)
        os.close(master)
    assert proc.returncode == 130, bytes(screen)
    assert b"run the same command again to resume" in screen
    assert _committed(store) == 2 * BATCH
    _check_resume(photos, store, kept=2 * BATCH)


def test_bad_files_are_skipped_listed_and_recorded(tmp_path):
    folder = tmp_path / "odd"
    expected = write_bad_files(folder)
    r = vrec("embed", folder, "--model", "tiny-siglip", "--store", tmp_path / "s")
    ok = {n.rsplit(".", 1)[0] for n, o in expected.items() if o == "ok"}
    bad = {n for n, o in expected.items() if o == "skipped"}
    assert set(Store(tmp_path / "s").model("tiny-siglip").items()["id"]) == ok
    skipped = Store(tmp_path / "s").skipped()
    assert set(skipped["path"]) == bad
    assert "empty file" in skipped.set_index("path").loc["zero.jpg", "reason"]
    assert "Skipped 3 file(s)" in r.stderr and "truncated.jpg" in r.stderr
    items = Store(tmp_path / "s").model("tiny-siglip").items().set_index("id")
    assert tuple(items.loc["rotated", ["width", "height"]]) == (64, 96)


def test_a_folder_of_only_bad_files_fails(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"")
    r = vrec("embed", tmp_path / "bad", "--model", "tiny-cnn", "--store", tmp_path / "s", ok=False)
    assert r.exit_code == 1 and "None of the 1 images could be read" in r.stderr


@pytest.mark.parametrize("option", ["--batch-size", "--workers"])
def test_zero_batch_size_or_workers_is_refused(tmp_path, sample_dir, option):
    r = vrec("embed", sample_dir, "--model", "tiny-cnn", "--store", tmp_path / "s", option, "0", ok=False)
    assert r.exit_code == 1 and f"Error: {option} must be between 1 and" in r.stderr


@pytest.mark.parametrize("setup,message", [
    (lambda p: None, "does not exist"),
    (lambda p: (p.mkdir(), (p / "readme.txt").write_text("x")), "No images found"),
])
def test_missing_or_empty_folder_is_a_clear_error(tmp_path, setup, message):
    setup(tmp_path / "photos")
    r = vrec("embed", tmp_path / "photos", "--model", "tiny-cnn", "--store", tmp_path / "s", ok=False)
    assert r.exit_code == 1 and message in r.stderr and "Traceback" not in r.stderr + r.stdout


def test_different_configuration_is_refused(tmp_path, tiny_store, sample_dir):
    import torch

    from vrec.models.encoders import create_encoder

    enc = create_encoder("tiny-cnn")
    with torch.no_grad():
        next(enc.model.parameters()).add_(1.0)
    torch.save(enc.model.state_dict(), tmp_path / "w.pth")
    r = vrec("embed", sample_dir, "--model", "tiny-cnn", "--weights", tmp_path / "w.pth", "--store", tiny_store, ok=False)
    assert r.exit_code == 1 and "another weights" in r.stderr and "never mixed" in r.stderr


def test_metadata_can_be_reapplied_without_reembedding(tiny_store, sample_dir, tmp_path):
    csv = pd.read_csv(sample_dir / "catalog.csv")
    csv["price"] = 1
    csv.to_csv(tmp_path / "cheap.csv", index=False)
    r = embed(sample_dir, models=TINY, store=tiny_store, metadata=tmp_path / "cheap.csv")
    assert r.embedded == 0 and (Store(tiny_store).metadata()["price"] == 1).all()


def test_a_store_belongs_to_one_catalog(tiny_store, tmp_path):
    other = catalog_copy(tmp_path, n=3)
    r = vrec("embed", other, "--model", "tiny-cnn", "--store", tiny_store, ok=False)
    assert r.exit_code == 1 and "belongs to the catalog" in r.stderr


# --- what a run reads, skips and says (issue 21) -------------------------------------------------

@pytest.fixture
def small_store(tmp_path):
    """4 photos embedded with tiny-cnn, with a title each: (photos, store)."""
    photos = catalog_copy(tmp_path, n=4)
    ids = sorted(p.relative_to(photos).with_suffix("").as_posix() for p in photos.rglob("*.jpg"))
    pd.DataFrame({"id": ids, "title": [f"item {i}" for i in range(4)]}).to_csv(tmp_path / "m.csv", index=False)
    vrec("embed", photos, "-m", "tiny-cnn", "--store", tmp_path / "s", "--metadata", tmp_path / "m.csv", "-q")
    return photos, tmp_path / "s"


def test_a_header_only_metadata_file_keeps_the_stores_titles(small_store, tmp_path):
    photos, store = small_store
    (tmp_path / "h.csv").write_text("id,title\n")
    before = Store(store).metadata()
    fails("embed", photos, "-m", "tiny-cnn", "--store", store, "--metadata", tmp_path / "h.csv",
          says="has a header but no rows")
    pd.testing.assert_frame_equal(Store(store).metadata(), before)
    assert before["title"].notna().all() and len(before) == 4


def test_hidden_photos_are_skipped_with_a_note_that_counts_them(small_store):
    photos, store = small_store
    first = sorted(photos.rglob("*.jpg"))[0]
    for name in (".a.jpg", ".b.png"):
        shutil.copy(first, photos / name)
    (photos / ".thumbs").mkdir()
    shutil.copy(first, photos / ".thumbs" / "x.jpg")
    r = vrec("embed", photos, "-m", "tiny-cnn", "--store", store, "-q")
    text = " ".join(r.stderr.split())
    assert "Skipped 2 hidden image files and the hidden folder .thumbs (names starting with '.')" in text, text
    assert len(Store(store).model("tiny-cnn")) == 4


def test_file_names_with_control_characters_are_listed_not_embedded(small_store):
    photos, store = small_store
    first = sorted(photos.rglob("*.jpg"))[0]
    for name in ("new\nline.jpg", "tab\there.jpg", "cr\rx.jpg"):
        shutil.copy(first, photos / name)
    r = vrec("embed", photos, "-m", "tiny-cnn", "--store", store)
    listed = " ".join(r.stderr.split())
    for shown in ("new\\nline.jpg", "tab\\there.jpg", "cr\\rx.jpg"):
        assert f"{shown}: its name holds a control character" in listed, listed
    items = Store(store).model("tiny-cnn").items()
    assert len(items) == 4 and not items["id"].str.contains(r"[\x00-\x1f]").any()
    assert "new\\nline.jpg" in set(Store(store).skipped()["path"])
