"""Shared fixtures: the drawn test catalog, stores embedded with tiny models, bad image files."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vrec.store.writer import ModelWriter

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "drawn_catalog"  # 60 drawn pictures; sample_catalog/ holds the demo's real photos
FASHION = ROOT.parent / "shared" / "datasets" / "fashion-sample"
TINY = ["tiny-siglip", "tiny-cnn"]


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """ONNX text exports go to a folder of this test session, never to the user's ~/.cache."""
    import os

    old = os.environ.get("VREC_CACHE_DIR")
    os.environ["VREC_CACHE_DIR"] = str(tmp_path_factory.mktemp("vrec-cache"))
    yield
    if old is None:
        os.environ.pop("VREC_CACHE_DIR", None)
    else:
        os.environ["VREC_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def fashion() -> Path:
    if not (FASHION / "images").is_dir():
        pytest.skip("the shared fashion sample (../shared/datasets/fashion-sample) is not here")
    return FASHION


@pytest.fixture(scope="session")
def _tiny_store_master(tmp_path_factory) -> Path:
    from vrec.ingest.embed import embed

    path = tmp_path_factory.mktemp("tiny") / "store"
    embed(SAMPLE, models=TINY, store=path, metadata=SAMPLE / "catalog.csv", batch_size=16)
    return path


@pytest.fixture
def tiny_store(_tiny_store_master, tmp_path) -> Path:
    """A store of the drawn test catalog embedded with the tiny models (a private copy per test)."""
    dst = tmp_path / "store"
    shutil.copytree(_tiny_store_master, dst)
    return dst


@pytest.fixture(scope="session")
def shared_tiny_store(_tiny_store_master) -> Path:
    """The same store, shared read-only between tests that only search."""
    return _tiny_store_master


@pytest.fixture(scope="session")
def fashion_store(fashion, tmp_path_factory) -> Path:
    """The fashion sample embedded with the real effnet-lite0 and tiny-siglip, through the CLI."""
    from clihelp import vrec

    store = tmp_path_factory.mktemp("fashion") / "store"
    vrec("embed", fashion / "images", "--model", "effnet-lite0", "--model", "tiny-siglip",
         "--metadata", fashion / "labels.csv", "--store", store, "--quiet")
    return store


def catalog_copy(tmp_path: Path, n: int | None = None) -> Path:
    """A writable copy of the drawn test catalog (optionally its first n images)."""
    dst = tmp_path / "photos"
    files = sorted(SAMPLE.rglob("*.jpg"))[:n]
    for f in files:
        t = dst / f.relative_to(SAMPLE)
        t.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, t)
    return dst


def jpeg_bytes(colour=(200, 30, 30), size=(96, 64), mode="RGB", **save) -> bytes:
    img = Image.new("RGB", size, colour)
    img.paste((20, 20, 200), (0, 0, size[0] // 2, size[1] // 3))  # a blue block top-left: shows orientation
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **save)
    return buf.getvalue()


def exif_rotated_jpeg() -> bytes:
    """A landscape JPEG whose EXIF says 'rotate 90° clockwise to view' (orientation 6)."""
    img = Image.open(io.BytesIO(jpeg_bytes(size=(96, 64))))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    return buf.getvalue()


def png_with_alpha() -> bytes:
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # fully transparent black ...
    img.paste((10, 120, 10, 255), (16, 16, 48, 48))  # ... around an opaque green square
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def png_16bit() -> bytes:
    a = np.full((32, 32), 65535, np.uint16)
    a[:16] = 0
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("P", (32, 32), i) for i in (1, 2, 3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    return buf.getvalue()


def write_bad_files(folder: Path) -> dict[str, str]:
    """Each kind of awkward file; returns name -> expected outcome ('ok' or 'skipped')."""
    folder.mkdir(parents=True, exist_ok=True)
    good = jpeg_bytes()
    files = {
        "truncated.jpg": (good[: len(good) // 2], "skipped"),
        "zero.jpg": (b"", "skipped"),
        "notes.jpg": (b"this is a text file, not a photo\n" * 4, "skipped"),
        "cutout.png": (png_with_alpha(), "ok"),
        "cmyk.jpg": (jpeg_bytes(mode="CMYK"), "ok"),
        "rotated.jpg": (exif_rotated_jpeg(), "ok"),
        "deep.png": (png_16bit(), "ok"),
        "anim.gif": (animated_gif(), "ok"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: outcome for name, (_, outcome) in files.items()}


def handmade_store(path: Path, vectors: dict, metadata=None, ids=None) -> Path:
    """A store holding given vectors per model name (rows normalised), for tests with known answers."""
    import pandas as pd

    from vrec.store.store import Store

    st = Store(path)
    (path.parent / "photos").mkdir(exist_ok=True)
    st.create(path.parent / "photos")
    for name, v in vectors.items():
        v = np.asarray(v, np.float32)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        item_ids = ids or [f"item{i}" for i in range(len(v))]
        items = pd.DataFrame({"id": item_ids, "path": [f"{i}.jpg" for i in item_ids], "hash": "h", "size": 1,
                              "mtime": 1, "width": 8, "height": 8})
        cfg = {"name": name, "family": "test", "architecture": name, "weights": "w", "dim": v.shape[1], "preprocess": {}}
        with ModelWriter(st.model_for_writing(name), cfg) as w:
            w.add(items, v)
    if metadata is not None:
        st.write_metadata(metadata.set_index("id"))
    return path


# End-to-end tests that take seconds each (real processes, signals, sweeps, load, real photos, Ray):
# `make test-fast` (-m "not slow") leaves them out; `make test` and CI run them. Whole files mark
# themselves (pytestmark); these are the slow tests of otherwise quick files, by name prefix.
SLOW = {
    "test_compare.py": ("test_effnet_vs_tiny_siglip_on_the_fashion_sample",),
    "test_cost.py": ("test_cost_calibrates_on_the_catalogs_own_photos",),
    "test_embed.py": ("test_interrupted_run_keeps_finished_batches_and_resumes", "test_ctrl_c_in_a_terminal"),
    "test_onnx_text.py": ("test_cold_query_imports_no_torch",),
    "test_ray.py": ("test_",),
    "test_serve_api.py": ("test_load_eight_clients", "test_vrec_serve_answers_on_loopback"),
    "test_serve_hardening.py": ("test_sixteen_parallel", "test_a_signal_lets", "test_a_request_still_running",
                                "test_requests_for_another_host_name", "test_every_legal_file_name"),
    "test_userfiles.py": ("test_every_file_read_refuses", "test_every_file_written_refuses", "test_embed_on_a_full_disk",
                          "test_embed_past_a_file_size_limit", "test_cost_on_a_read_only_store",
                          "test_stdout_on_a_full_disk"),
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        prefixes = SLOW.get(item.path.name, ())
        if any(item.name.startswith(p) for p in prefixes):
            item.add_marker(pytest.mark.slow)
