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
BENCHMARKS.md (between its markers, replacing an earlier one). Not part of `make test`.

bench/run.py measures a cold query too, with the text tower on torch only (:func:`torch_only`, its
section "Cold text query on torch"): the same store, the same cold-process timing, without the
fake hub. Both measurements live here, in one implementation.
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

from common import BENCH, FAKE_HUB, ROOT, log, run_json
from inputs import fake_siglip_hub, siglip_store
from sections import write_section

QUERY = "red leather bag"
VREC = Path(sys.executable).with_name("vrec")

# The query's main-thread phases in vrec.search.query.search_text; the text tower loads and encodes
# on a second thread alongside "store", so only the main thread's phases add up to the wall time.
SEARCH_MAIN_THREAD = ("store", "waiting for the text tower", "search")
CLI_MAIN_THREAD = ("start-up", "imports", *SEARCH_MAIN_THREAD, "render")  # `vrec search-text --timings`
SCRIPT_MAIN_THREAD = ("CLI import", *SEARCH_MAIN_THREAD)  # TORCH_SCRIPT below
TOWER_THREAD = ("checks", "onnxruntime import", "session", "tokenise", "encode", "torch+open_clip import", "model load",
                "text encoding")


def timed_run(argv: list, env: dict) -> tuple[float, subprocess.CompletedProcess]:
    """Run a process from the repository's root; its wall time in seconds, as a shell sees it."""
    t = time.perf_counter()
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:3]))} ... failed:\n{p.stderr}")
    return wall, p


def cold_process(argv: list, env: dict, phases) -> dict:
    """One cold query process: its wall time and ``phases(process)``, in ms."""
    wall, p = timed_run(argv, env)
    return {"wall": wall * 1000, **phases(p)}


def cli_phases(p: subprocess.CompletedProcess) -> dict[str, float]:
    """The phases `vrec search-text --timings` prints on stderr (``timings: NAME N ms, ...``), in ms."""
    line = next(x for x in p.stderr.splitlines() if x.startswith("timings: "))
    parts = (x.rsplit(" ", 2) for x in line[len("timings: "):].split(", "))
    return {name: float(ms) for name, ms, _ in parts}


def json_phases(p: subprocess.CompletedProcess) -> dict[str, float]:
    """The phases a script printed as JSON on the last line of its stdout, in ms."""
    return json.loads(p.stdout.strip().splitlines()[-1])


# --- the ONNX text tower against torch (this script) ---------------------------------------------

# argv: query, store. Runs a query in-process, then prints (JSON) which heavy modules it imported.
IMPORT_CHECK = """
import json, sys
query, store = sys.argv[1:3]
sys.argv = ["vrec", "search-text", query, "--store", store, "--k", "10"]
from vrec.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in ("torch", "open_clip", "transformers") if m in sys.modules)))
"""


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


def export_text_tower(tmp: Path, env: dict) -> dict:
    """`vrec models download siglip` into a fresh cache: wall time, size, fidelity of the export."""
    shutil.rmtree(tmp / "cache", ignore_errors=True)
    log("exporting the text tower (vrec models download siglip) ...")
    wall, _ = timed_run([VREC, "models", "download", "siglip"], env)
    meta = json.loads(next((tmp / "cache").rglob("export.json")).read_text())
    return {"export_wall_s": wall, "export_seconds_inside": meta.get("export_seconds"),
            "export_mb": sum(f["size"] for f in meta["files"].values()) / 1e6,
            "export_min_cosine": meta["checked"]["min_cosine"]}


def onnx_vs_torch(tmp: Path, n: int, runs: int) -> dict:
    """The whole measurement in work folder ``tmp`` (reused where it already holds the hub and store)."""
    env = {**os.environ, "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "1", "VREC_CACHE_DIR": str(tmp / "cache")}
    env.pop("VREC_TEXT_ONNX", None)
    if not (tmp / "hf").is_dir():
        log("making the ViT-B-16-SigLIP hub cache (random weights, ~813 MB) ...")
    fake_siglip_hub(tmp / "hf")
    full_size_vocabulary(tmp / "hf")
    store = tmp / "store"
    if not store.is_dir():
        log(f"writing a store of {n:,} vectors (768-d) ...")
        siglip_store(store, [f"item-{j:06d}" for j in range(n)], seed=7)
    export = export_text_tower(tmp, env)
    paths = {"onnx": env, "torch": {**env, "VREC_TEXT_ONNX": "0"}}
    times: dict[str, list] = {k: [] for k in paths}
    for i in range(runs):
        for name, e in paths.items():
            times[name].append(cold_process([VREC, "search-text", QUERY, "--store", store, "--k", "10", "--timings"],
                                            e, cli_phases))
            log(f"  run {i + 1} {name}: {times[name][-1]['wall'] / 1000:.2f} s")
    heavy = run_json(IMPORT_CHECK, QUERY, store, env=env)
    return {"date": dt.date.today().isoformat(), "items": n, "dim": 768, "runs": runs, **export,
            "onnx_path_imported": heavy, "runs_ms": times,
            "median_ms": {k: {ph: statistics.median(r.get(ph, 0.0) for r in v) for ph in v[0]} for k, v in times.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="items in the store (products, with --photos)")
    ap.add_argument("--runs", type=int, default=5, help="cold queries of each path")
    ap.add_argument("--tmp", help="work folder (default: a new one in the system's temp folder, removed after)")
    ap.add_argument("--write", action="store_true", help="put the section into BENCHMARKS.md")
    ap.add_argument("--baseline", help="catalog mode: another checkout's vrec script (e.g. ../main/.venv/bin/vrec) "
                    "whose cold ONNX queries alternate with this checkout's on a store with metadata and an HNSW index")
    ap.add_argument("--photos", type=int, default=1, help="catalog mode: photos per product (1: single photos)")
    ap.add_argument("--ef-construction", type=int, default=200, help="catalog mode: of the HNSW index")
    args = ap.parse_args()
    if not FAKE_HUB.is_file():
        sys.exit(f"{FAKE_HUB} is not here: it makes the ViT-B-16-SigLIP hub cache this benchmark needs.")
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="vrec-coldquery-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        if args.baseline:
            result = before_after(tmp, args.n, args.photos, args.ef_construction, args.runs, Path(args.baseline))
        else:
            result = onnx_vs_torch(tmp, args.n, args.runs)
    finally:
        if not args.tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    text = catalog_markdown(result) if args.baseline else markdown(result)
    print(text)
    if args.write and args.baseline:
        write_catalog_section(ROOT / "BENCHMARKS.md", result, text)
    elif args.write:
        write_section(ROOT / "BENCHMARKS.md", START, END, TITLE, text)
    print("```json\n" + json.dumps({k: v for k, v in result.items() if k != "runs_ms"}, indent=1) + "\n```")


# --- catalog mode: a large catalog with metadata and an HNSW index, this checkout against another --

FILTER = "category=bags"


def catalog_store(store: Path, n: int, photos: int, ef_construction: int) -> None:
    """A store of ``n`` products of ``photos`` photos each (768-d), with four metadata columns per
    product and an HNSW index (over the photos; over the product vectors too for products), unless
    ``store`` already holds one. The slow part at 1M is the index (tens of minutes on 2 cores)."""
    import numpy as np
    import pandas as pd

    from vrec.store.index import build_index
    from vrec.store.products import ProductStore, save_products
    from vrec.store.store import Store

    if (store / "done").is_file():
        return
    shutil.rmtree(store, ignore_errors=True)
    log(f"writing a store of {n:,} products x {photos} photos (768-d) ...")
    ids = [f"item-{j:07d}" for j in range(n * photos)]
    st = siglip_store(store, ids, seed=7, photos=photos)
    products = ids if photos == 1 else [f"product-{p:07d}" for p in range(n)]
    rng = np.random.default_rng(3)
    kinds = np.array(["bags", "shoes", "coats", "dresses", "hats", "belts", "scarves", "shirts", "skirts", "socks"])
    st.write_metadata(pd.DataFrame({"id": products, "category": kinds[rng.integers(0, 10, n)],
                                    "price": np.round(rng.uniform(5, 500, n), 2),
                                    "title": [f"product number {p}" for p in range(n)],
                                    "brand": [f"brand {b}" for b in rng.integers(0, 500, n)]}).set_index("id"))
    log(f"building the HNSW index (ef_construction {ef_construction}) ...")
    t = time.perf_counter()
    ms = st.model("siglip")
    photo_store = getattr(ms, "photos", ms)
    build_index(photo_store, ef_construction=ef_construction)
    if photos > 1:
        save_products(ProductStore(Store(store).photos("siglip")), index=True, ef_construction=ef_construction)
    log(f"  index built in {time.perf_counter() - t:.0f} s")
    (store / "done").write_text("complete\n")


def before_after(tmp: Path, n: int, photos: int, ef_construction: int, runs: int, baseline: Path) -> dict:
    """Cold ONNX-path queries, unfiltered and filtered, alternating between ``baseline`` (another
    checkout's vrec) and this checkout's, on one store; a first query of each, not counted, leaves
    each version's one-off files (the ONNX export, saved lookups) in place."""
    env = {**os.environ, "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "1", "VREC_CACHE_DIR": str(tmp / "cache")}
    env.pop("VREC_TEXT_ONNX", None)
    fake_siglip_hub(tmp / "hf")
    full_size_vocabulary(tmp / "hf")
    store = tmp / f"store-{n}x{photos}"
    catalog_store(store, n, photos, ef_construction)
    if not (tmp / "cache").is_dir():
        export_text_tower(tmp, env)
    versions = {"before": baseline, "after": VREC}
    queries = {"unfiltered": [], "filtered": ["--filter", FILTER]}
    argv = lambda exe, extra: [exe, "search-text", QUERY, "--store", store, "--k", "10", "--timings", *extra]  # noqa: E731
    first = {}
    for name, exe in versions.items():
        t = time.perf_counter()
        timed_run(argv(exe, []), env)
        first[name] = (time.perf_counter() - t) * 1000
        log(f"  first query {name}: {first[name] / 1000:.2f} s (not counted)")
    times: dict[str, list] = {f"{v} {q}": [] for q in queries for v in versions}
    for i in range(runs):
        for q, extra in queries.items():
            for v, exe in versions.items():
                times[f"{v} {q}"].append(cold_process(argv(exe, extra), env, cli_phases))
                log(f"  run {i + 1} {v} {q}: {times[f'{v} {q}'][-1]['wall'] / 1000:.2f} s")
    return {"date": dt.date.today().isoformat(), "products": n, "photos": photos, "dim": 768, "runs": runs,
            "ef_construction": ef_construction, "first_query_ms": first, "runs_ms": times,
            "median_ms": {k: {ph: statistics.median(r.get(ph, 0.0) for r in v) for ph in v[0]}
                          for k, v in times.items()}}


CATALOG_START, CATALOG_END = "<!-- bench/cold_query.py catalog: start -->", "<!-- bench/cold_query.py catalog: end -->"
CATALOG_TITLE = "## Cold text query on a large catalog: reading only the rows a query needs"


def catalog_row(r: dict) -> str:
    """One table row per store: the medians of each version and query."""
    m = r["median_ms"]
    cells = [f"{m[f'{v} {q}'][p]:.0f}" for q in ("unfiltered", "filtered") for v in ("before", "after")
             for p in ("wall", "store")]
    what = f"{r['products']:,} items" if r["photos"] == 1 else f"{r['products']:,} products x {r['photos']} photos"
    return f"| {what} | " + " | ".join(cells) + " |"


def catalog_markdown(r: dict) -> str:
    return "\n".join([
        "| store | unfiltered wall, before | store phase | **after** | store phase | filtered wall, before | store "
        "phase | **after** | store phase |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        catalog_row(r)])


def write_catalog_section(path: Path, r: dict, text: str) -> None:
    """Add this store's row to the catalog section (one row per store size, the latest kept)."""
    from sections import replace_section

    old = path.read_text()
    rows = {}
    if CATALOG_START in old:
        body = old.split(CATALOG_START, 1)[1].split(CATALOG_END, 1)[0]
        rows = {line.split(" | ")[0]: line for line in body.splitlines()
                if line.startswith("| ") and (" items |" in line or " photos |" in line)}
    new = catalog_row(r)
    rows[new.split(" | ")[0]] = new
    intro = (f"Cold `vrec search-text \"{QUERY}\" --timings` (ONNX text tower, HNSW index, k = 10), unfiltered and with "
             f"`--filter {FILTER}`, on stores of 768-d vectors with four metadata columns per product, by "
             "`python bench/cold_query.py --n N [--photos P] --baseline OTHER/.venv/bin/vrec --tmp DIR`: the version "
             "before (`before`, the catalog table built whole per query) and this checkout's (`after`), alternating, "
             f"median of the runs (ms), measured {r['date']} on this 2-core CPU shared with other work. `store` is the "
             "main thread's phase that reads the catalog (the text tower loads alongside it); `after` also loads the HNSW "
             "index in it, to overlap the text tower (`before` loads it in `search`). hnswlib reads the whole index "
             "file into memory (322 MB at 100k, 3.2 GB at 1M items), and at 1M that load, not the catalog, is most "
             "of the wall time.")
    table = catalog_markdown(r).splitlines()[:2] + sorted(rows.values(), key=_store_size)
    replace_section(path, CATALOG_START, CATALOG_END,
                    f"{CATALOG_START}\n{CATALOG_TITLE}\n\n{intro}\n\n" + "\n".join(table) + f"\n{CATALOG_END}")


def _store_size(row: str) -> int:
    return int(row.split(" | ")[0].strip("| ").split()[0].replace(",", ""))


START, END = "<!-- bench/cold_query.py: start -->", "<!-- bench/cold_query.py: end -->"
TITLE = "## Cold text query: ONNX text tower against torch"


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
    lines += [row(p) for p in CLI_MAIN_THREAD if p in onnx or p in torch]
    rest = {k: d["wall"] - sum(d.get(p, 0.0) for p in CLI_MAIN_THREAD) for k, d in (("onnx", onnx), ("torch", torch))}
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


# --- the text tower on torch only (bench/run.py's section) -------------------------------------

# argv: bench folder, weights, store. What `vrec search-text --timings` does, in a script: the real
# SigLIP tokenizer lives on the Hugging Face hub, which this machine cannot reach, so CLIP's bundled
# BPE tokenizer stands in for it (inputs.offline_tokenizer). Prints its phases (ms) as JSON.
TORCH_SCRIPT = """
import time
t0 = time.perf_counter()
import typer, rich  # what the CLI imports before any command runs
from vrec.cli import app  # noqa: F401
t1 = time.perf_counter()
import json, sys
bench, weights, store = sys.argv[1:4]
sys.path.insert(0, bench)
from inputs import offline_tokenizer
offline_tokenizer()
from vrec.search.query import search_text
r = search_text("red leather bag", model="siglip", weights=weights, store=store, device="cpu")
print(json.dumps({"CLI import": (t1 - t0) * 1000, **{k: v * 1000 for k, v in r.timings.items()}}))
"""


def torch_only(weights: Path, tmp: Path, n: int = 10_000, runs_wanted: int = 3) -> dict:
    """Wall time of a cold `vrec search-text` process on an n-item store with the text tower on
    torch, split into phases: the best of ``runs_wanted`` processes.

    VREC_TEXT_ONNX=0: this measures torch, the path of a model with no ONNX export yet (or with
    onnxruntime absent). On the ONNX path the first query would export the text tower into the
    user's cache (seconds, and hundreds of MB left behind for random weights) and the stand-in
    tokenizer could not be exported; :func:`onnx_vs_torch` measures the ONNX path against torch,
    with a real tokenizer, in a section of its own."""
    st = siglip_store(tmp / "cold", [f"i{j}" for j in range(n)], seed=7, weights=weights, root=tmp)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VREC_TEXT_ONNX": "0"}
    argv = [sys.executable, "-c", TORCH_SCRIPT, BENCH, weights, st.path]
    runs = [cold_process(argv, env, json_phases) for _ in range(runs_wanted)]
    fastest = min(runs, key=lambda r: r["wall"])
    best = {**{k: v for k, v in fastest.items() if k != "wall"}, "process wall": fastest["wall"]}
    best["interpreter start and exit"] = best["process wall"] - sum(best.get(k, 0.0) for k in SCRIPT_MAIN_THREAD)
    log("  cold search-text: " + ", ".join(f"{k} {v:.0f} ms" for k, v in best.items()))
    return best


def torch_markdown(c: dict) -> list[str]:
    main = [k for k in SCRIPT_MAIN_THREAD if k in c] + ["interpreter start and exit"]
    tower = [k for k in c if k not in main and k != "process wall"]
    return (["", "## Cold text query on torch", "",
             "Wall time of one `vrec search-text` process with the text tower on torch (`VREC_TEXT_ONNX=0`: a model "
             "with no ONNX export yet) on a 10,000-item store of ViT-B-16-SigLIP vectors (768-d), best of several runs, "
             "split into phases as `vrec search-text --timings` reports them. Only the text tower's weights are loaded, "
             "on a second thread while the main thread reads the catalog, so its phases overlap `store`. (The SigLIP "
             "tokenizer is on the Hugging Face hub, out of reach here; CLIP's bundled tokenizer stands in, so tokenizer "
             "loading is not included.) The ONNX text tower that vrec queries with once it is exported is measured "
             "against torch by `bench/cold_query.py`, in its own section.", "",
             "| phase | ms |", "| --- | ---: |", f"| **process wall** | {c['process wall']:.0f} |", "| *main thread* | |"]
            + [f"| {k} | {c[k]:.0f} |" for k in main]
            + ["| *text tower thread (alongside `store`)* | |"] + [f"| {k} | {c[k]:.0f} |" for k in tower])


if __name__ == "__main__":
    main()
