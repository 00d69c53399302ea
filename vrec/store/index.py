"""Nearest-neighbour search over a model's vectors: exact for small catalogs, HNSW for large ones.

Recall is measured, not assumed: a build samples catalog vectors as queries, compares HNSW with
exact search, and keeps the smallest ``ef`` that reaches the target recall@10. The manifest keeps
``ef``, the measured recall and the generation of the vectors the index reflects, so a stale
index is noticed instead of silently answering for other vectors.

hnswlib traps handled here: ``load_index`` forgets ``ef`` (it comes back as 10), so it is set
from the manifest after every load; ``max_elements`` is fixed, so the index is resized before
adding; ``mark_deleted`` items are still traversed, so many deletions trigger a rebuild; a k
larger than what can be reached raises, so such queries fall back to exact search.

Every function takes ``ms``, one model's store (``vrec.store.store.ModelStore``; ``search_rows``
also a ``vrec.store.products.ProductStore``). This module imports neither: the store module opens
product stores, which search through this one.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vrec.base.errors import StaleIndex, VrecError, check_number
from vrec.base.files import atomic_path, now, write_json, write_npy

# Below this many items exact search (one matrix-vector product) answers as fast as HNSW and is
# always right; see bench/ for the measurement behind the number.
EXACT_BELOW = int(os.environ.get("VREC_EXACT_BELOW", "20000"))
EF_LADDER = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
REBUILD_DELETED_SHARE = 0.1


@dataclass
class IndexStats:
    model: str
    items: int
    m: int
    ef_construction: int
    ef: int
    recall_at_10: float
    target_recall: float
    build_seconds: float
    size_bytes: int
    generation: int
    fresh: bool
    peak_rss_mb: float | None = None  # of the process that built it


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k positions and scores by inner product, in chunks so memory stays bounded."""
    queries = np.atleast_2d(queries).astype(np.float32, copy=False)
    n = len(vectors)
    k = min(k, n)
    if k == 0:
        return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), np.iinfo(np.int64).max, np.int64)
    step = max(1, 2_000_000 // max(1, len(queries)))
    for start in range(0, n, step):
        block = np.asarray(vectors[start:start + step], dtype=np.float32)
        cand_s = np.concatenate([best_s, queries @ block.T], axis=1)
        cand_i = np.concatenate([best_i, np.broadcast_to(np.arange(start, start + len(block)), (len(queries), len(block)))], axis=1)
        for q in range(len(queries)):
            best_i[q], best_s[q] = _top(cand_s[q], cand_i[q], k)
    return best_i, best_s


def _top(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best by score; ties go to the earlier item, so results never depend on chunking."""
    if len(scores) > k:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        keep = np.flatnonzero(scores >= kth)
        scores, ids = scores[keep], ids[keep]
    order = np.lexsort((ids, -scores))[:k]
    return ids[order], scores[order]


def exact_topk_store(ms, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k global rows over every shard, one memory-mapped shard at a time (no full copy)."""
    queries = np.atleast_2d(queries).astype(np.float32, copy=False)
    best_r = np.zeros((len(queries), 0), np.int64)
    best_s = np.zeros((len(queries), 0), np.float32)
    for rows, vec in ms.iter_live():
        if not len(rows):
            continue
        pos, sc = exact_topk(vec, queries, k)
        cand_r, cand_s = np.concatenate([best_r, rows[pos]], 1), np.concatenate([best_s, sc], 1)
        picked = [_top(cs, cr, k) for cs, cr in zip(cand_s, cand_r)]
        best_r = np.stack([p[0] for p in picked])
        best_s = np.stack([p[1] for p in picked])
    return best_r, best_s


def peak_rss_mb() -> float | None:
    """This process's peak resident memory so far (Linux VmHWM), for reports."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        return None


def _index_dir(ms):
    return ms.path / "index"


def _recall(index, queries: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Share of the exact top-k (global rows, which are the index labels) that HNSW returns."""
    labels, _ = index.knn_query(queries, k=k)
    hits = sum(len(set(a) & set(b)) for a, b in zip(labels.tolist(), truth.tolist()))
    return hits / truth.size


def tuning_queries(rows: np.ndarray, fetch, sample: int, seed: int) -> np.ndarray:
    """Queries to measure recall with: half catalog items ("find similar"), half points between two
    random items (new photos and text queries rarely coincide with a catalog vector, and those
    are the harder case for a graph index). ``fetch(rows)`` reads vectors by row."""
    rng = np.random.default_rng(seed)
    n = len(rows)
    m = min(sample, n)
    own = fetch(rows[np.sort(rng.choice(n, size=(m + 1) // 2, replace=False))])
    a = fetch(rows[rng.integers(0, n, m // 2)])
    b = fetch(rows[rng.integers(0, n, m // 2)])
    mid = a + b
    mid /= np.maximum(np.linalg.norm(mid, axis=1, keepdims=True), 1e-12)
    return np.concatenate([own, mid])


def _tune_ef(index, ms, target: float, sample: int, seed: int) -> tuple[int, float]:
    rows = ms.items()["row"].to_numpy()
    queries = tuning_queries(rows, ms.vectors_for_rows, sample, seed)
    k = min(10, len(rows))
    truth, _ = exact_topk_store(ms, queries, k)
    recall = 0.0
    for ef in EF_LADDER:
        index.set_ef(max(ef, k))
        recall = _recall(index, queries, truth, k)
        if recall >= target:
            return max(ef, k), recall
    return max(EF_LADDER[-1], k), recall


M_RANGE = (2, 100)  # hnswlib's documented useful range; M=0 crashes the native code
EF_CONSTRUCTION_RANGE = (10, 5000)


def check_index_options(m: int, ef_construction: int, target_recall: float) -> None:
    """Refuse HNSW settings outside what hnswlib handles, before they reach native code."""
    check_number("--m", m, min=M_RANGE[0], max=M_RANGE[1], integer=True, hint="16 suits most catalogs")
    check_number("--ef-construction", ef_construction, min=EF_CONSTRUCTION_RANGE[0], max=EF_CONSTRUCTION_RANGE[1],
                 integer=True, hint="200 suits most catalogs")
    check_number("--target-recall", target_recall, min=0, max=1, hint="e.g. 0.99")
    if target_recall == 0:
        raise VrecError("--target-recall must be above 0 (not 0); e.g. 0.99.")


def build_index(ms, m: int = 16, ef_construction: int = 200, target_recall: float = 0.99,
                sample: int = 200, seed: int = 0, threads: int = -1) -> IndexStats:
    """Build an HNSW index over the live vectors, tune ``ef`` for the target recall, save it."""
    import hnswlib

    check_index_options(m, ef_construction, target_recall)
    t0 = time.perf_counter()
    n = len(ms)
    index = hnswlib.Index(space="ip", dim=ms.dim)
    index.init_index(max_elements=max(n, 1), ef_construction=ef_construction, M=m, random_seed=seed)
    for rows, vec in ms.iter_live():
        if len(rows):
            index.add_items(np.asarray(vec, np.float32), rows, num_threads=threads)
    ef, recall = _tune_ef(index, ms, target_recall, sample, seed) if n else (10, 1.0)
    return _save(ms, index, ms.items()["row"].to_numpy(), m, ef_construction, ef, recall, target_recall,
                 time.perf_counter() - t0)


def _save(ms, index, live_rows, m, ef_construction, ef, recall, target, seconds) -> IndexStats:
    manifest = ms.manifest()
    gen = manifest["generation"]
    d = _index_dir(ms)
    d.mkdir(parents=True, exist_ok=True)
    name = f"hnsw-{gen:08d}-{int(time.time() * 1000)}"
    with atomic_path(d / f"{name}.bin") as tmp:
        index.save_index(tmp)
    write_npy(d / f"{name}.rows.npy", np.asarray(live_rows, np.int64))
    entry = {"file": f"{name}.bin", "rows_file": f"{name}.rows.npy", "m": m, "ef_construction": ef_construction,
             "ef": int(ef), "recall_at_10": round(float(recall), 4), "target_recall": target,
             "build_seconds": round(seconds, 3), "generation": gen, "layout": manifest.get("layout", 0),
             "items": int(len(live_rows)), "size_bytes": os.path.getsize(d / f"{name}.bin"), "built": now(),
             "peak_rss_mb": peak_rss_mb()}
    write_json(ms.manifest_path, {**manifest, "index": entry})
    ms.refresh()
    for f in d.iterdir():  # older index files
        if f.name not in (entry["file"], entry["rows_file"]):
            f.unlink(missing_ok=True)
    return stats(ms)


def stats(ms) -> IndexStats | None:
    e = ms.manifest().get("index")
    if not e:
        return None
    return IndexStats(ms.name, e["items"], e["m"], e["ef_construction"], e["ef"], e["recall_at_10"],
                      e["target_recall"], e["build_seconds"], e["size_bytes"], e["generation"],
                      e["generation"] == ms.generation, e.get("peak_rss_mb"))


def load_index(ms):
    """The saved HNSW index with its tuned ``ef``; raises StaleIndex if the vectors changed since."""
    import hnswlib

    e = ms.manifest().get("index")
    if not e:
        return None
    if e["generation"] != ms.generation:
        raise StaleIndex(
            f"The index of {ms.name!r} was built before its vectors last changed; run "
            f"'vrec index --model {ms.name}' to bring it up to date."
        )
    index = hnswlib.Index(space="ip", dim=ms.dim)
    index.load_index(str(_index_dir(ms) / e["file"]), max_elements=max(e["items"], 1))
    index.set_ef(e["ef"])  # load_index resets ef to 10
    return index


def loaded_index(ms):
    """``load_index``, kept with the model store's cached manifest: a process that searches one
    store many times (the web app, an evaluation) reads the index once; a new commit drops it."""
    cache = ms._cache
    if "hnsw" not in cache:
        ms.manifest()
        cache = ms._cache  # manifest() may start a fresh cache
        cache["hnsw"] = load_index(ms)
    return cache["hnsw"]


def update_index(ms, threads: int = -1) -> IndexStats:
    """Bring an existing index in step with the vectors: add new rows, mark removed ones deleted.

    Rebuilds instead when rows were renumbered (compaction) or many were removed, since hnswlib
    still walks through deleted elements.
    """
    import hnswlib

    ms.refresh()
    e = ms.manifest().get("index")
    if e is None or e["generation"] == ms.generation:
        return stats(ms)
    rebuild = lambda: build_index(ms, e["m"], e["ef_construction"], e["target_recall"], threads=threads)  # noqa: E731
    if e.get("layout", 0) != ms.manifest().get("layout", 0):
        return rebuild()
    old_rows = np.load(_index_dir(ms) / e["rows_file"])
    live = ms.items()["row"].to_numpy()
    removed = np.setdiff1d(old_rows, live)
    added = np.setdiff1d(live, old_rows)
    if len(removed) > REBUILD_DELETED_SHARE * max(len(old_rows), 1) or not len(old_rows):
        return rebuild()
    t0 = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=ms.dim)
    index.load_index(str(_index_dir(ms) / e["file"]))
    # items marked deleted by earlier updates still hold their slots (and are still walked through)
    dead = index.get_current_count() - len(old_rows) + len(removed)
    if dead > REBUILD_DELETED_SHARE * max(len(old_rows), 1):
        return rebuild()
    index.resize_index(index.get_current_count() + len(added) + 1)
    index.set_ef(e["ef"])
    for r in removed:
        index.mark_deleted(int(r))
    if len(added):
        index.add_items(ms.vectors_for_rows(added), added, num_threads=threads)
    ef, recall = _tune_ef(index, ms, e["target_recall"], 200, 0) if len(live) else (e["ef"], 1.0)
    return _save(ms, index, live, e["m"], e["ef_construction"], ef, recall, e["target_recall"],
                 time.perf_counter() - t0)


def search_rows(ms, queries: np.ndarray, k: int, allowed_rows: np.ndarray | None = None,
                exact: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k global rows and scores for each query vector.

    Small catalogs and filtered searches (``allowed_rows``) are answered exactly, so a filter
    never returns fewer than k results when k matching items exist. A product store
    (``vrec.store.products``) answers with products: rows are its product rows.
    """
    if getattr(ms, "grain", "photo") == "product":
        return ms.search(queries, k, allowed_rows)
    n = ms.live_count()
    if exact is None:
        exact = n < EXACT_BELOW or allowed_rows is not None or ms.manifest().get("index") is None
    if not exact:
        index = loaded_index(ms)
        kk = min(k, n)
        try:
            index.set_ef(max(ms.manifest()["index"]["ef"], kk))
            labels, dist = index.knn_query(np.atleast_2d(queries).astype(np.float32), k=kk)
            return labels.astype(np.int64), (1.0 - dist).astype(np.float32)
        except RuntimeError:  # fewer than k reachable: answer exactly instead
            pass
    if allowed_rows is None:  # every live row, from the tombstones (not the items: a query need not read them)
        rows = np.concatenate([r for r, _ in ms.iter_live()] or [np.zeros(0, np.int64)])
    else:
        rows = np.asarray(allowed_rows, np.int64)
    vectors = ms.vectors() if allowed_rows is None else ms.vectors_for_rows(rows)
    pos, scores = exact_topk(vectors, queries, k)
    return rows[pos], scores


def positions(ms, rows: Sequence[int]) -> np.ndarray:
    """Positions in ``items()`` of global rows."""
    items = ms.items()
    lookup = dict(zip(items["row"].tolist(), range(len(items))))
    return np.array([lookup[int(r)] for r in rows], dtype=np.int64)
