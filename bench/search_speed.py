"""Search: `vrec index` (HNSW) against exact search, on clustered synthetic vectors and, where the
shared fashion sample is present, on real ones: build time, index size and peak memory, recall@10
of held-out queries against exact search, and the latency of single queries. The largest store
also measures growth: adding items writes a new shard, not the whole store."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from common import FASHION, log, run_json
from inputs import clustered, write_vectors

from vrec.store.writer import ModelWriter

# argv: store, ef_construction. `vrec index` in a process of its own, so its peak memory is its own.
BUILD = """
import json, sys
from vrec.store.store import Store
from vrec.store.index import build_index, peak_rss_mb
s = build_index(Store(sys.argv[1]).model('bench'), ef_construction=int(sys.argv[2]))
print(json.dumps({"build_seconds": s.build_seconds, "peak_rss_mb": peak_rss_mb()}))
"""


def measure(sizes: list[int], dim: int, tmp: Path, queries: int = 200) -> list[dict]:
    """A row per size of synthetic vectors; the largest also measures store growth."""
    rows = []
    for n in sizes:
        vectors, centres = clustered(n, dim, seed=n)
        held_out, _ = clustered(queries, dim, seed=n + 1, centres=centres)
        rows.append(search_row(vectors, held_out, tmp / f"search-{n}", "synthetic, clustered",
                               ef_construction=200 if n <= 200_000 else 64, append=n == max(sizes)))
    return rows


def measure_real(tmp: Path, held_out: int = 100) -> list[dict]:
    """Real vectors: EfficientNet-Lite0 (real ImageNet weights) over the shared fashion sample;
    the last ``held_out`` photos are the queries, the rest the catalog."""
    if not FASHION.is_dir():
        return []
    from vrec.ingest.embed import embed
    from vrec.store.store import Store

    embed(FASHION, models=["effnet-lite0"], store=tmp / "real-store")
    vectors = np.asarray(Store(tmp / "real-store").model("effnet-lite0").vectors())
    return [search_row(vectors[:-held_out], vectors[-held_out:], tmp / "search-real", "effnet-lite0, fashion photos")]


def search_row(vectors: np.ndarray, held_out: np.ndarray, path: Path, source: str, ef_construction: int = 200,
               append: bool = False) -> dict:
    """`vrec index` over ``vectors``, then recall@10 and latency of single held-out queries against
    exact search."""
    import vrec.store.index as ix

    n, dim = vectors.shape
    cfg = {"name": "bench", "family": "bench", "architecture": source, "weights": "none", "dim": dim, "preprocess": {}}
    st = write_vectors(path, "bench", cfg, [f"i{j}" for j in range(n)], vectors, path.parent, with_paths=False)
    del vectors
    built = run_json(BUILD, st.path, ef_construction)
    ms = st.model("bench")
    s = ix.stats(ms)
    recall, lat = _queries(ix.load_index(ms), ms.vectors(), held_out)
    ms_of = lambda side, p: 1000 * float(np.percentile(lat[side], p))  # noqa: E731
    row = {"source": source, "n": n, "dim": dim, "m": s.m, "ef_construction": ef_construction, "ef": s.ef,
           "build_s": float(built["build_seconds"]), "index_mb": s.size_bytes / 1e6,
           "recall_at_10_tuning": s.recall_at_10, "recall_at_10_heldout": recall,
           "hnsw_p50_ms": ms_of("hnsw", 50), "hnsw_p99_ms": ms_of("hnsw", 99),
           "exact_p50_ms": ms_of("exact", 50), "exact_p99_ms": ms_of("exact", 99),
           "index_peak_rss_mb": float(built["peak_rss_mb"])}
    if append:
        row.update(measure_append(ms, cfg, 10_000, dim))
    log(f"  {source} {n:>9,} x {dim}: build {row['build_s']:.1f} s, ef {s.ef}, recall@10 {recall:.3f}, "
        f"HNSW p50 {row['hnsw_p50_ms']:.2f} ms vs exact {row['exact_p50_ms']:.2f} ms")
    del ms
    shutil.rmtree(path, ignore_errors=True)
    return row


def _queries(index, vectors, held_out: np.ndarray) -> tuple[float, dict]:
    """Recall@10 of the HNSW index against exact search, and each side's seconds per query."""
    import vrec.store.index as ix

    lat = {"hnsw": [], "exact": []}
    found = {"hnsw": [], "exact": []}
    for q in held_out:
        t = time.perf_counter()
        labels, _ = index.knn_query(q[None], k=10)
        lat["hnsw"].append(time.perf_counter() - t)
        found["hnsw"].append(labels[0])
        t = time.perf_counter()
        pos, _ = ix.exact_topk(vectors, q[None], 10)
        lat["exact"].append(time.perf_counter() - t)
        found["exact"].append(pos[0])
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found["hnsw"], found["exact"])])
    return float(recall), lat


def measure_append(ms, cfg: dict, n_new: int, dim: int) -> dict:
    """Adding n_new items to a large store: seconds and bytes written (only the new shard)."""
    import pandas as pd

    files = {f: f.stat().st_size for f in ms.shard_dir.iterdir()}
    vectors, _ = clustered(n_new, dim, seed=99)
    items = pd.DataFrame({"id": [f"new{j}" for j in range(n_new)], "path": "", "hash": "", "size": 0, "mtime": 0,
                          "width": 0, "height": 0})
    t0 = time.perf_counter()
    with ModelWriter(ms, cfg) as w:
        w.add(items, vectors)
    seconds = time.perf_counter() - t0
    written = sum(f.stat().st_size for f in ms.shard_dir.iterdir() if f not in files)
    written += ms.manifest_path.stat().st_size
    total = sum(files.values()) + written
    log(f"  append {n_new:,} to {len(ms):,}: {seconds:.2f} s, {written / 1e6:.1f} MB written of {total / 1e6:.0f} MB")
    return {"append_items": n_new, "append_seconds": seconds, "append_mb": written / 1e6, "store_mb": total / 1e6}


# --- report -----------------------------------------------------------------------------------

def markdown(rows: list[dict]) -> list[str]:
    """The search table, and store growth (from the row that measured it)."""
    lines = ["", "## Search", "",
             "Clustered synthetic unit vectors on a 32-dimensional manifold projected into 768 dimensions, plus noise "
             "(isotropic random vectors are useless for recall: every neighbour is a near tie); and real vectors "
             "where the shared fashion sample is present (EfficientNet-Lite0 with its real weights; 100 photos held "
             "out as queries; below 20,000 items vrec searches exactly, so this row checks the index alone). Recall@10 of HNSW at "
             "the `ef` that `vrec index` chose (tuned on catalog samples), measured on held-out queries against exact "
             "search. Latency: one query at a time. **Targets: recall@10 ≥ 0.99; HNSW faster than exact from the size "
             "where vrec switches to it** (20,000 items).", "",
             "| vectors | items | dim | M | ef_construction | ef | build s | index MB | `vrec index` peak RSS MB | recall@10 (tuning) | recall@10 (held-out) | HNSW p50 / p99 ms | exact p50 / p99 ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['source']} | {r['n']:,} | {r['dim']} | {r['m']} | {r['ef_construction']} | {r['ef']} | {r['build_s']:.1f} | "
                     f"{r['index_mb']:.0f} | {r['index_peak_rss_mb']:.0f} | {r['recall_at_10_tuning']:.3f} | {r['recall_at_10_heldout']:.3f} | "
                     f"{r['hnsw_p50_ms']:.2f} / {r['hnsw_p99_ms']:.2f} | {r['exact_p50_ms']:.2f} / {r['exact_p99_ms']:.2f} |")
    big = next(r for r in rows if "append_items" in r)
    return lines + ["", "## Store growth", "",
                    f"Adding {big['append_items']:,} items to the {big['n']:,}-item store: {big['append_seconds']:.2f} s, "
                    f"{big['append_mb']:.1f} MB written (a new shard and the manifest) of a {big['store_mb']:.0f} MB store; "
                    "no existing shard is rewritten."]
