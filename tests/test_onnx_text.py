"""The text tower on ONNX Runtime: same tokens and vectors as torch, no torch on the query path,
stale and damaged exports rebuilt and never used."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")

from vrec.base.errors import QueryError  # noqa: E402
from vrec.models import onnx_cache, onnx_export, onnx_text  # noqa: E402
from vrec.models.encoders import create_encoder, query_encoder
from vrec.models.registry import resolve
from vrec.models.weights import expected_config
from vrec.store.writer import ModelWriter

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT.parent / "shared" / "tools"
TEXTS = ["a photo of a red leather bag.", "Minimalist LEATHER tote!!", "café crème — 10% off", "",
         "ΟΔΟΣ straße", "snake_case & <b>html</b>", "x " * 80, "👜 with a strap"]
HEAVY = ("torch", "open_clip", "transformers")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def torch_tiny():
    return create_encoder("tiny-siglip", device="cpu", text_only=True)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VREC_TEXT_ONNX", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def exported(cache, torch_tiny):
    enc = onnx_export.export(torch_tiny, quiet=True)
    assert enc is not None
    return enc


def export_files(cache: Path) -> dict:
    meta = json.loads(next(cache.rglob("export.json")).read_text())
    folder = next(cache.rglob("export.json")).parent
    return {role: folder / f["name"] for role, f in meta["files"].items()}


def random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    ascii_ = "abcXYZ 019_-.,!?'&;:()[]\t\n"
    alphabet = ascii_ + "éÉßİıΣσςΑΩ€—“”‘’…ﬁＡ👜中文\u00a0\u2028\u200b\x1c"
    out = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(n)]
    return out + ["".join(rng.choice(ascii_) for _ in range(30)) for _ in range(n)]


def test_tokenizer_json_gives_open_clips_tokens(torch_tiny):
    tok = torch_tiny.tokenizer()
    spec, mode, zero = onnx_export._tokenizer_spec(tok, 32)
    texts = TEXTS + list(onnx_cache.PROBES) + random_texts(300) + ["<start_of_text> hello <end_of_text>"]
    ours = np.array([e.ids for e in spec.encode_batch([onnx_text.clean(t, mode) for t in texts])])
    assert mode == "lower" and zero is None
    assert np.array_equal(ours, tok(texts).numpy())
    assert ours.shape == (len(texts), 32) and (ours[:, 0] == tok.sot_token_id).all()  # start token, padding to 32


def test_cleaning_skips_ftfy_only_where_ftfy_changes_nothing():
    import ftfy

    rng = random.Random(1)
    plain = ["".join(chr(rng.randint(32, 126)) for _ in range(60)).replace("&", "") for _ in range(2000)]
    assert all(ftfy.fix_text(t) == t for t in plain)
    assert onnx_text.basic_clean("  caf&eacute; &amp;amp; ") == "café &"  # ftfy + html, as open_clip
    assert onnx_text.clean("Snake_Case, WORDS!", "canonicalize") == "snake case words"


def test_onnx_vectors_and_probability_equal_torchs(exported, torch_tiny):
    texts = TEXTS * 9  # more than one onnxruntime batch
    got, want = exported.encode_texts(texts), torch_tiny.encode_texts(texts)
    assert got.shape == want.shape == (len(texts), 64) and got.dtype == np.float32
    assert cosines(got, want).min() >= 0.9999
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert (exported.logit_scale, exported.logit_bias) == (torch_tiny.logit_scale, torch_tiny.logit_bias)
    assert set(exported.last_timings) == {"tokenise", "encode"}


def test_query_encoder_takes_the_export_and_falls_back_to_torch(cache, exported, monkeypatch):
    enc = query_encoder("tiny-siglip", device="cpu", text_only=True)
    assert isinstance(enc, onnx_text.OnnxTextEncoder) and {"onnxruntime import", "session"} <= set(enc.load_timings)
    with pytest.raises(QueryError, match="text only"):
        enc.encode_pixels(np.zeros((1, 64, 64, 3), np.uint8))
    both = query_encoder("tiny-siglip", device="cpu")  # pictures too: torch is built when one comes
    assert both.encode_pixels(np.zeros((1, 64, 64, 3), np.uint8)).shape == (1, 64)
    monkeypatch.setenv("VREC_TEXT_ONNX", "0")
    assert not isinstance(query_encoder("tiny-siglip", device="cpu", text_only=True), onnx_text.OnnxTextEncoder)
    monkeypatch.delenv("VREC_TEXT_ONNX")
    with monkeypatch.context() as m:  # onnxruntime not installed: torch, as before
        m.setitem(sys.modules, "onnxruntime", None)
        plain = query_encoder("tiny-siglip", device="cpu", text_only=True)
        assert not isinstance(plain, onnx_text.OnnxTextEncoder) and plain.encode_texts(["a bag"]).shape == (1, 64)
    assert not isinstance(query_encoder("tiny-siglip", device="cpu", precision="int8", text_only=True),
                          onnx_text.OnnxTextEncoder)


def run_query(store, *extra, env=None) -> subprocess.CompletedProcess:
    """A cold `vrec search-text` process that also says which heavy modules it imported."""
    code = ("import sys\nfrom vrec.cli import main\nsys.argv = ['vrec'] + sys.argv[1:]\ntry:\n    main()\n"
            "except SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
            f"print('HEAVY', *sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\nsys.exit(code)")
    p = subprocess.run([sys.executable, "-c", code, "search-text", "red bag", "--store", str(store), *extra,
                        "--format", "json", "--timings"], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, **(env or {})}, timeout=300)
    assert p.returncode == 0, p.stderr
    return p


def heavy(p) -> list[str]:
    return next(x for x in p.stderr.splitlines() if x.startswith("HEAVY")).split()[1:]


def test_cold_query_imports_no_torch_and_matches_the_torch_path(exported, cache, shared_tiny_store):
    onnx = run_query(shared_tiny_store, "--model", "tiny-siglip", "--k", "8")
    assert heavy(onnx) == [] and "(torch not imported;" in onnx.stderr  # --timings says so
    timings = next(x for x in onnx.stderr.splitlines() if x.startswith("timings:"))
    for phase in ("onnxruntime import", "session", "tokenise", "encode", "search"):
        assert phase in timings
    assert "torch" not in timings
    torch = run_query(shared_tiny_store, "--model", "tiny-siglip", "--k", "8", env={"VREC_TEXT_ONNX": "0"})
    assert "torch" in heavy(torch) and "torch+open_clip import" in torch.stderr and "(torch imported;" in torch.stderr
    a, b = json.loads(onnx.stdout)["results"], json.loads(torch.stdout)["results"]
    assert [r["score"] for r in a] == pytest.approx([r["score"] for r in b], abs=1e-5)
    assert [r["probability"] for r in a] == pytest.approx([r["probability"] for r in b], abs=1e-6)


def test_first_text_query_exports_then_later_ones_use_it(cache, shared_tiny_store):
    from vrec.search.query import search_text

    first = search_text("red bag", k=5, model="tiny-siglip", store=shared_tiny_store, device="cpu")
    assert "torch+open_clip import" in first.timings and (cache / "text-onnx" / "tiny-siglip").is_dir()
    second = search_text("red bag", k=5, model="tiny-siglip", store=shared_tiny_store, device="cpu")
    assert "session" in second.timings and "torch+open_clip import" not in second.timings
    assert second.table["score"].tolist() == pytest.approx(first.table["score"].tolist(), abs=1e-5)


def test_plus_minus_tags_and_eval_texts_go_through_the_export(exported, cache, shared_tiny_store):
    from vrec.search.query import load_encoder, open_model, search_image
    from vrec.search.tags import _text_encoder

    _, ms = open_model(shared_tiny_store, "tiny-siglip")
    assert isinstance(load_encoder(ms, device="cpu"), onnx_text.OnnxTextEncoder)  # eval, --plus/--minus, compare
    assert isinstance(_text_encoder(ms, None, "cpu"), onnx_text.OnnxTextEncoder)  # vrec tag
    r = search_image("bag-tote-red", k=5, model="tiny-siglip", store=shared_tiny_store, plus=["a watch"], device="cpu")
    assert len(r.table) == 5


def test_stale_export_is_rebuilt(exported, cache, shared_tiny_store, capfd):
    from vrec.search.query import search_text

    meta_path = next(cache.rglob("export.json"))
    meta = json.loads(meta_path.read_text())
    meta["identity"]["weights_id"] = "sha256:0123456789abcdef"  # made from other weights
    meta_path.write_text(json.dumps(meta))
    entry = resolve("tiny-siglip")
    found, why = onnx_cache.check_export(entry, expected_config(entry)["weights"])
    assert found is None and "stale" in why and "weights_id" in why
    r = search_text("red bag", k=3, model="tiny-siglip", store=shared_tiny_store, device="cpu")
    assert "torch+open_clip import" in r.timings  # answered by torch, not by the stale export
    assert "rebuilding it: stale export" in capfd.readouterr().err
    again = json.loads(meta_path.read_text())
    assert again["identity"]["weights_id"] == "random-seed0" and again["files"] != meta["files"]
    assert onnx_cache.check_export(entry, "random-seed0")[0] is not None


@pytest.mark.parametrize("role", ["graph", "data", "tokenizer"])
def test_damaged_export_is_never_used_and_rebuilt(exported, cache, shared_tiny_store, role, capfd):
    from vrec.search.query import search_text

    path = export_files(cache)[role]
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    entry = resolve("tiny-siglip")
    found, why = onnx_cache.check_export(entry, "random-seed0")
    assert found is None and path.name in why
    enc = query_encoder("tiny-siglip", device="cpu", text_only=True)
    assert not isinstance(enc, onnx_text.OnnxTextEncoder) and enc.export_pending
    r = search_text("red bag", k=3, model="tiny-siglip", store=shared_tiny_store, device="cpu")
    assert "torch+open_clip import" in r.timings
    assert "rebuilding it" in capfd.readouterr().err
    assert not path.exists() and onnx_cache.check_export(entry, "random-seed0")[0] is not None


def blind_spot(path: Path) -> int:
    """An offset in the data file that the sampled digest does not read, 16 KiB before the next sample."""
    size, block = os.path.getsize(path), onnx_cache.SAMPLE_BLOCK
    starts = [max(0, size - block) * i // (onnx_cache.SAMPLE_BLOCKS - 1) for i in range(onnx_cache.SAMPLE_BLOCKS)]
    gap = next(i for i in range(len(starts) // 2, len(starts) - 1) if starts[i + 1] - starts[i] - block > 1 << 15)
    return starts[gap + 1] - (1 << 14) - 1024


@pytest.mark.parametrize("mtime", ["changed", "restored with os.utime"])
def test_data_file_overwritten_in_the_middle_is_never_used(exported, cache, shared_tiny_store, mtime, capfd):
    """Bytes overwritten where the sampled digest does not look, size kept (the issue's 8 MB): the
    changed stamp (mtime, and the ctime that os.utime cannot set back) makes the next use hash the
    file whole, so the damaged export is not used but rebuilt."""
    from vrec.search.query import search_text

    path = export_files(cache)["data"]
    st, sample = os.stat(path), onnx_cache.sampled_digest(path)
    with open(path, "r+b") as f:
        f.seek(blind_spot(path))
        f.write(np.random.default_rng(0).bytes(1 << 14))
    if mtime != "changed":
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert os.stat(path).st_mtime_ns == st.st_mtime_ns
    assert onnx_cache.sampled_digest(path) == sample and os.path.getsize(path) == st.st_size  # only content changed
    entry = resolve("tiny-siglip")
    found, why = onnx_cache.check_export(entry, "random-seed0")
    assert found is None and path.name in why and "damaged" in why
    r = search_text("red bag", k=3, model="tiny-siglip", store=shared_tiny_store, device="cpu")
    assert "torch+open_clip import" in r.timings and "rebuilding it" in capfd.readouterr().err
    assert onnx_cache.check_export(entry, "random-seed0")[0] is not None and not path.exists()


def test_an_unchanged_export_costs_a_stat_per_file_and_a_touched_one_one_digest(exported, cache, monkeypatch):
    entry = resolve("tiny-siglip")
    hashed = []
    real = onnx_cache.sha256_file
    monkeypatch.setattr(onnx_cache, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    for _ in range(3):
        assert onnx_cache.check_export(entry, "random-seed0")[0] is not None
    assert hashed == []  # verified when exported; unchanged since
    tok = export_files(cache)["tokenizer"]
    st = os.stat(tok)
    os.utime(tok, ns=(st.st_atime_ns, st.st_mtime_ns - 5 * 10**9))  # touched, same bytes
    assert onnx_cache.check_export(entry, "random-seed0")[0] is not None and hashed == [tok.name]
    stamps = json.loads((tok.parent / onnx_cache.VERIFIED).read_text())["files"]
    assert set(stamps) == {f.name for f in export_files(cache).values()}


def edit_json(path: Path, change) -> None:
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


HOSTILE = {
    "model.logit_scale": lambda m: m["model"].update(logit_scale="abc"),
    "model.logit_scale NaN": lambda m: m["model"].update(logit_scale=float("nan")),
    "model.logit_bias": lambda m: m["model"].update(logit_bias=[1]),
    "model.dim": lambda m: m["model"].update(dim=3),
    "tokenizer.context_length": lambda m: m["tokenizer"].update(context_length="32"),
    "tokenizer.clean": lambda m: m["tokenizer"].update(clean="rm -rf"),
    "tokenizer.hub": lambda m: m["tokenizer"].update(hub=["../../etc", "1"]),
    "files.graph.name": lambda m: m["files"]["graph"].update(name="../../../etc/passwd"),
    "files.data.sha256": lambda m: m["files"]["data"].pop("sha256"),
    "weights": lambda m: m.update(weights=["file"]),
    "files": lambda m: m.update(files="all"),
}


@pytest.mark.parametrize("field", HOSTILE)
def test_a_damaged_or_hostile_export_json_is_never_used(exported, cache, field):
    meta_path = next(cache.rglob("export.json"))
    edit_json(meta_path, HOSTILE[field])
    found, why = onnx_cache.check_export(resolve("tiny-siglip"), "random-seed0")
    assert found is None and str(meta_path) in why and field.split()[0] in why, why


def test_a_non_numeric_logit_scale_is_rebuilt_not_a_traceback(exported, cache, shared_tiny_store):
    from clihelp import vrec

    edit_json(next(cache.rglob("export.json")), HOSTILE["model.logit_scale"])
    r = vrec("search-text", "red bag", "--model", "tiny-siglip", "--store", shared_tiny_store, "--format", "json")
    assert "rebuilding it: its export.json" in r.stderr and "model.logit_scale 'abc'" in r.stderr
    assert len(json.loads(r.stdout)["results"]) == 10


@pytest.mark.parametrize("content", ["[1, 2]", "{\"identity\": 1}"])
def test_odd_export_json_failed_json_and_verified_json_are_never_a_traceback(exported, cache, content):
    entry = resolve("tiny-siglip")
    folder = next(cache.rglob("export.json")).parent
    for name in ("verified.json", "failed.json"):
        (folder / name).write_text(content)
    assert onnx_cache.check_export(entry, "random-seed0")[0] is not None  # verified.json garbage: hashed again
    assert onnx_cache.failed_before(entry, "random-seed0") is None
    (folder / "export.json").write_text(content)
    found, why = onnx_cache.check_export(entry, "random-seed0")
    assert found is None and "export.json" in why


def test_changed_weights_file_is_noticed(tmp_path):
    from vrec.models.weights import file_digest

    w = tmp_path / "weights.bin"
    w.write_bytes(b"a" * 1000)
    st = os.stat(w)
    rec = {"kind": "pretrained", "path": str(w), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
           "digest": file_digest(w)}
    assert onnx_cache._weights_problem(rec) is None
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same bytes: still the same weights
    assert onnx_cache._weights_problem(rec) is None
    assert rec["mtime_ns"] == st.st_mtime_ns + 10**9 and rec.pop("refreshed")  # not hashed again next time
    w.write_bytes(b"b" * 1000)
    assert "changed" in onnx_cache._weights_problem(rec)
    w.unlink()
    assert "no longer" in onnx_cache._weights_problem(rec)


def test_new_hub_revision_of_the_tokenizer_is_noticed(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    refs = tmp_path / "models--org--model" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("1" * 40)
    assert onnx_cache._tokenizer_problem({"hub": ["org/model", "1" * 40]}) is None
    (refs / "main").write_text("2" * 40)
    assert "revision" in onnx_cache._tokenizer_problem({"hub": ["org/model", "1" * 40]})


def test_an_unusable_cache_leaves_queries_on_torch(tmp_path, monkeypatch, shared_tiny_store, capfd):
    from vrec.search.query import search_text

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("VREC_CACHE_DIR", str(blocker))  # a file where the cache folder should be
    r = search_text("red bag", k=3, model="tiny-siglip", store=shared_tiny_store, device="cpu")
    assert len(r.table) == 3 and "text queries stay on torch" in capfd.readouterr().err


# --- the real ViT-B-16-SigLIP architecture (random weights) -------------------------------------

@pytest.fixture(scope="session")
def siglip_hub(tmp_path_factory, request):
    """A Hugging Face cache with ViT-B-16-SigLIP at random weights (~813 MB, removed afterwards).

    Making it and exporting the 441 MB text tower take over a minute on 2 cores, so the test runs
    when asked for (``pytest -m slow`` or VREC_TEST_REAL_SIGLIP=1); bench/cold_query.py exercises
    the same architecture (export checked against torch, no torch imported by a query).
    """
    expr = request.config.getoption("markexpr") or ""
    if os.environ.get("VREC_TEST_REAL_SIGLIP") != "1" and not ("slow" in expr and "not slow" not in expr):
        pytest.skip("real ViT-B-16-SigLIP export: run with -m slow or VREC_TEST_REAL_SIGLIP=1 (over a minute)")
    if not (TOOLS / "fake_siglip_hub.py").is_file():
        pytest.skip("../shared/tools/fake_siglip_hub.py is not here")
    home = tmp_path_factory.mktemp("siglip-hub")
    subprocess.run([sys.executable, str(TOOLS / "fake_siglip_hub.py"), str(home / "hf")], check=True,
                   capture_output=True, timeout=600)
    yield home
    shutil.rmtree(home, ignore_errors=True)


REAL_CHECK = """
import json, sys
import numpy as np
from vrec.models import onnx_cache, onnx_export, onnx_text  # noqa: F811
from vrec.models.encoders import create_encoder
texts = json.loads(sys.argv[1])
torch_enc = create_encoder("siglip", device="cpu", text_only=True)
onnx_enc = onnx_export.export(torch_enc, quiet=True)
tok = torch_enc.tokenizer()
a, b = onnx_enc.encode_texts(texts), torch_enc.encode_texts(texts)
print(json.dumps({"cos": float((a * b).sum(1).min()), "tokens": bool((onnx_enc.tokenize(texts) == tok(texts).numpy()).all()),
                  "scale": [onnx_enc.logit_scale, torch_enc.logit_scale], "bias": [onnx_enc.logit_bias, torch_enc.logit_bias],
                  "tokenizer": onnx_enc.meta["tokenizer"], "weights": onnx_enc.meta["weights"]["kind"]}))
"""


@pytest.mark.slow
def test_real_siglip_architecture_exports_equal_vectors_and_queries_without_torch(siglip_hub, tmp_path):
    import pandas as pd

    from vrec.store.store import Store

    env = {**os.environ, "HF_HOME": str(siglip_hub / "hf"), "HF_HUB_OFFLINE": "1", "VREC_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("VREC_TEXT_ONNX", None)
    p = subprocess.run([sys.executable, "-c", REAL_CHECK, json.dumps(TEXTS)], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.splitlines()[-1])
    assert got["cos"] >= 0.9999 and got["tokens"] and got["weights"] == "pretrained"
    assert got["scale"][0] == got["scale"][1] and got["bias"][0] == got["bias"][1]
    assert got["tokenizer"]["clean"] == "canonicalize" and got["tokenizer"]["context_length"] == 64
    assert got["tokenizer"]["hub"][0] == "timm/ViT-B-16-SigLIP"  # a new revision there makes the export stale

    st = Store(tmp_path / "store")  # a small store of 768-d vectors made "by siglip"
    st.create(tmp_path)
    n = 50
    v = np.random.default_rng(0).normal(size=(n, 768)).astype(np.float32)
    items = pd.DataFrame({"id": [f"i{j}" for j in range(n)], "path": [f"i{j}.jpg" for j in range(n)], "hash": "",
                          "size": 0, "mtime": 0, "width": 0, "height": 0})
    with ModelWriter(st.model_for_writing("siglip"), expected_config(resolve("siglip"))) as w:
        w.add(items, v / np.linalg.norm(v, axis=1, keepdims=True))
    q = run_query(st.path, "--k", "5", env=env)
    assert heavy(q) == [] and len(json.loads(q.stdout)["results"]) == 5
    t = run_query(st.path, "--k", "5", env={**env, "VREC_TEXT_ONNX": "0"})
    a, b = json.loads(q.stdout)["results"], json.loads(t.stdout)["results"]
    assert [r["id"] for r in a] == [r["id"] for r in b]
    # SigLIP's logit scale (~118) turns a cosine difference of 1e-8 into 1e-6 of probability
    assert [r["probability"] for r in a] == pytest.approx([r["probability"] for r in b], abs=1e-5)


def test_vrec_index_exports_the_text_tower_so_the_first_query_needs_no_torch(cache, tiny_store):
    from clihelp import vrec

    r = vrec("index", "--store", tiny_store)
    assert "exporting tiny-siglip's text tower" in r.stderr
    entry = resolve("tiny-siglip")
    assert onnx_cache.check_export(entry, expected_config(entry)["weights"])[0] is not None
    assert "exporting" not in vrec("index", "--store", tiny_store).stderr  # once: a valid export is kept
    first = run_query(tiny_store, "--model", "tiny-siglip", "--k", "3")
    assert heavy(first) == [] and "session" in first.stderr


@pytest.mark.parametrize("name", ["export.json", "failed.json", "verified.json", "data"])
def test_a_fifo_in_the_export_folder_is_no_hang(exported, cache, name):
    entry = resolve("tiny-siglip")
    path = export_files(cache)["data"] if name == "data" else next(cache.rglob("export.json")).parent / name
    path.unlink(missing_ok=True)
    os.mkfifo(path)  # nothing ever writes to it: reading it would wait forever
    answers = []
    worker = threading.Thread(target=lambda: answers.append((onnx_cache.check_export(entry, "random-seed0"),
                                                             onnx_cache.failed_before(entry, "random-seed0"))),
                              daemon=True)
    worker.start()
    worker.join(60)  # a guard against the hang only
    assert answers, "checking the export hung on a FIFO"
    (found, why), failed = answers[0]
    assert failed is None
    if name in ("export.json", "data"):
        assert found is None and ("regular file" in why or "not a regular" in why), why
    else:
        assert found is not None
