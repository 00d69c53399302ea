"""Cold `vrec search-text`: the ONNX text tower against torch, side by side in one run.

    python bench/cold_query.py              # 100,000 items, 5 runs of each path (about 3 minutes)
    python bench/cold_query.py --n 10000 --runs 3

The real ViT-B-16-SigLIP architecture comes from ../shared/tools/fake_siglip_hub.py: a Hugging Face
cache holding open_clip's own config at random weights and a small sentencepiece tokenizer, used
with HF_HUB_OFFLINE=1 exactly as a downloaded model (speed does not depend on the weights' values).
A store of N clustered 768-d unit vectors is written for model `siglip`; then

1. `vrec models download siglip` exports the text tower (the one-off cost: wall time and size);
2. cold `vrec search-text ... --timings` processes alternate between the ONNX path and the torch
   path (VREC_TEXT_ONNX=0), and the median wall time and median phases of each are reported;
3. one more ONNX query runs in-process to list which of torch, open_clip and transformers it
   imported (none, if the path works as meant).

Prints a Markdown section and the raw figures as JSON; with --write it also puts the section into
BENCHMARKS.md (between its markers, replacing an earlier one). Not part of `make test`; bench/run.py
is not needed for it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FAKE_HUB = ROOT.parent / "shared" / "tools" / "fake_siglip_hub.py"
QUERY = "red leather bag"


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors in clusters on a 32-d manifold (real embeddings are not isotropic)."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(32, dim)).astype(np.float32) / np.sqrt(32)
    mids = rng.normal(size=(max(10, n // 1000), 32)).astype(np.float32)
    v = (mids[rng.integers(0, len(mids), n)] + 0.5 * rng.normal(size=(n, 32)).astype(np.float32)) @ basis
    v += 0.05 * rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_store(path: Path, n: int) -> None:
    import pandas as pd

    from vrec.models.encoders import expected_config, resolve
    from vrec.store.store import Store

    st = Store(path)
    st.create(path.parent)
    items = pd.DataFrame({"id": [f"item-{j:06d}" for j in range(n)], "path": [f"item-{j:06d}.jpg" for j in range(n)],
                          "hash": "", "size": 0, "mtime": 0, "width": 0, "height": 0})
    with st.model_for_writing("siglip").writer(expected_config(resolve("siglip"))) as w:
        w.add(items, clustered(n, 768, seed=7))


def full_size_vocabulary(hf_home: Path, pieces: int = 32_000) -> None:
    """Pad the stand-in tokenizer's vocabulary (80 pieces) to SigLIP's 32,000 with pieces that
    never win, so that loading it costs what loading the real one does (building a 32k-piece
    Unigram model takes ~0.1 s); tokenisation of ordinary text is unchanged."""
    for path in hf_home.rglob("tokenizer.json"):
        tok = json.loads(path.read_text())
        vocab = tok["model"]["vocab"]
        if tok["model"].get("type") != "Unigram" or len(vocab) >= pieces:
            continue
        vocab += [[f"\u2581zq{i:05d}", -99.0] for i in range(pieces - len(vocab))]
        path.write_text(json.dumps(tok))


def vrec(*args, env: dict, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    p = subprocess.run([str(Path(sys.executable).with_name("vrec")), *map(str, args)], capture_output=True,
                       text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t
    if check and p.returncode != 0:
        raise RuntimeError(f"vrec {' '.join(map(str, args))} failed:\n{p.stderr}")
    return wall, p


def phases_of(stderr: str) -> dict[str, float]:
    line = next(x for x in stderr.splitlines() if x.startswith("timings: "))
    parts = (x.rsplit(" ", 2) for x in line[len("timings: "):].split(", "))
    return {name: float(ms) for name, ms, _ in parts}


IMPORT_CHECK = """
import sys
sys.argv = ["vrec", "search-text", {query!r}, "--store", {store!r}, "--k", "10"]
from vrec.cli import main
try:
    main()
except SystemExit:
    pass
print("HEAVY", sorted(m for m in ("torch", "open_clip", "transformers") if m in sys.modules), file=sys.stderr)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="items in the store")
    ap.add_argument("--runs", type=int, default=5, help="cold queries of each path")
    ap.add_argument("--tmp", help="work folder (default: a new one in the system's temp folder, removed after)")
    ap.add_argument("--write", action="store_true", help="put the section into BENCHMARKS.md")
    args = ap.parse_args()
    if not FAKE_HUB.is_file():
        sys.exit(f"{FAKE_HUB} is not here: it makes the ViT-B-16-SigLIP hub cache this benchmark needs.")
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="vrec-coldquery-"))
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "1", "VREC_CACHE_DIR": str(tmp / "cache")}
    env.pop("VREC_TEXT_ONNX", None)
    try:
        if not (tmp / "hf").is_dir():
            log("making the ViT-B-16-SigLIP hub cache (random weights, ~813 MB) ...")
            subprocess.run([sys.executable, str(FAKE_HUB), str(tmp / "hf")], check=True, capture_output=True, env=env)
        full_size_vocabulary(tmp / "hf")
        store = tmp / "store"
        if not store.is_dir():
            log(f"writing a store of {args.n:,} vectors (768-d) ...")
            make_store(store, args.n)
        shutil.rmtree(tmp / "cache", ignore_errors=True)
        log("exporting the text tower (vrec models download siglip) ...")
        export_wall, _ = vrec("models", "download", "siglip", env=env)
        meta_path = next((tmp / "cache").rglob("export.json"))
        meta = json.loads(meta_path.read_text())
        export_mb = sum(f["size"] for f in meta["files"].values()) / 1e6
        paths = {"onnx": env, "torch": {**env, "VREC_TEXT_ONNX": "0"}}
        runs: dict[str, list] = {k: [] for k in paths}
        for i in range(args.runs):
            for name, e in paths.items():
                wall, p = vrec("search-text", QUERY, "--store", store, "--k", "10", "--timings", env=e)
                runs[name].append({"wall": wall * 1000, **phases_of(p.stderr)})
                log(f"  run {i + 1} {name}: {wall:.2f} s")
        p = subprocess.run([sys.executable, "-c", IMPORT_CHECK.format(query=QUERY, store=str(store))],
                           capture_output=True, text=True, env=env, cwd=ROOT)
        heavy = next((x for x in p.stderr.splitlines() if x.startswith("HEAVY")), "HEAVY ?")[len("HEAVY "):]
        result = {"date": dt.date.today().isoformat(), "items": args.n, "dim": 768, "runs": args.runs,
                  "export_wall_s": export_wall, "export_seconds_inside": meta.get("export_seconds"),
                  "export_mb": export_mb, "export_min_cosine": meta["checked"]["min_cosine"],
                  "onnx_path_imported": heavy, "runs_ms": runs,
                  "median_ms": {k: {ph: statistics.median(r.get(ph, 0.0) for r in v) for ph in v[0]} for k, v in runs.items()}}
        print(markdown(result))
        if args.write:
            write_section(ROOT / "BENCHMARKS.md", markdown(result))
        print("```json\n" + json.dumps({k: v for k, v in result.items() if k != "runs_ms"}, indent=1) + "\n```")
    finally:
        if not args.tmp:
            shutil.rmtree(tmp, ignore_errors=True)


START, END = "<!-- bench/cold_query.py: start -->", "<!-- bench/cold_query.py: end -->"
TITLE = "## Cold text query: ONNX text tower against torch"


def write_section(path: Path, body: str) -> None:
    """Replace this bench's section of BENCHMARKS.md (see bench/sections.py)."""
    from sections import replace_section

    replace_section(path, START, END, f"{START}\n{TITLE}\n\n{body}\n{END}")


MAIN_THREAD = ["start-up", "imports", "store", "waiting for the text tower", "search", "render"]
TOWER_THREAD = ["checks", "onnxruntime import", "session", "tokenise", "encode", "torch+open_clip import", "model load",
                "text encoding"]


def markdown(r: dict) -> str:
    onnx, torch = r["median_ms"]["onnx"], r["median_ms"]["torch"]
    cell = lambda d, p: f"{d[p]:.0f}" if p in d else "—"  # noqa: E731
    row = lambda p, name=None: f"| {name or p} | {cell(onnx, p)} | {cell(torch, p)} |"  # noqa: E731
    lines = [f"Cold `vrec search-text \"{QUERY}\" --timings` on a {r['items']:,}-item store of 768-d vectors with the "
             f"ViT-B-16-SigLIP architecture (open_clip's config and random weights from `fake_siglip_hub.py`; its "
             f"stand-in sentencepiece tokenizer padded to SigLIP's 32,000 pieces), measured {r['date']} on this 2-core "
             f"CPU shared with other work: median of {r['runs']} cold processes of each path, alternating. `wall` is "
             "the whole process as a shell sees it; the other rows are the phases `--timings` prints (exact search: no "
             "HNSW index). The text tower loads and encodes the query on a second thread while the main thread reads "
             "the catalog, so its phases overlap `store`; `waiting for the text tower` is what the main thread still "
             "waited after reading the catalog.",
             "", "| phase (ms) | ONNX text tower | torch |", "| --- | ---: | ---: |", row("wall", "**process wall**"),
             "| *main thread* | | |"]
    lines += [row(p) for p in MAIN_THREAD if p in onnx or p in torch]
    rest = {k: d["wall"] - sum(d.get(p, 0.0) for p in MAIN_THREAD) for k, d in (("onnx", onnx), ("torch", torch))}
    lines += [f"| in no phase (interpreter start, exit) | {rest['onnx']:.0f} | {rest['torch']:.0f} |",
              "| *text tower thread (alongside `store`)* | | |"]
    lines += [row(p) for p in TOWER_THREAD if p in onnx or p in torch]
    text = sum(onnx.get(p, 0.0) for p in TOWER_THREAD)
    lines += ["", f"- Speed-up of the whole process: {torch['wall'] / onnx['wall']:.1f}x "
                  f"({torch['wall'] / 1000:.2f} s -> {onnx['wall'] / 1000:.2f} s). The text tower's phases on the ONNX "
                  f"path (checks, import, session with the tokenizer JSON, tokenise, encode) add up to {text:.0f} ms, "
                  f"of which the main thread waited {onnx.get('waiting for the text tower', 0.0):.0f} ms; the rest of "
                  "the wall time is vrec's own start-up (CLI, numpy, pandas and the catalog table), the search and "
                  "rendering. The `vrec` script ends query commands with `os._exit` after flushing its output, which "
                  "skips ~0.15 s of interpreter teardown.",
              f"- One-off export (`vrec models download siglip`, building the torch text tower, exporting, "
              f"optimising, checking): {r['export_wall_s']:.0f} s wall, {r['export_mb']:.0f} MB on disk; its vectors "
              f"against torch's: cosine {r['export_min_cosine']:.7f} at worst over the probe texts.",
              f"- Modules among torch, open_clip and transformers that an ONNX-path query imported: "
              f"{r['onnx_path_imported']}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
