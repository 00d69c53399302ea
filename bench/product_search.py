"""Product search: products of several photos against the photo-level search, side by side in one run.

    python bench/product_search.py                        # 100,000 products x 5 photos (500,000 photos)
    python bench/product_search.py --products 20000       # a quick run (about a minute)
    python bench/product_search.py --products 100000 --write   # also put the section into BENCHMARKS.md

A store of N products x P photos (clustered synthetic unit vectors, 256-d: each product a point of
``inputs.clustered``, its photos spread around it along the same 32-dimensional manifold, plus a
little noise) is written with ModelWriter in shards of 100,000 photos; then ``build_index`` on the
photo store (``Store(...).photos(name)``) and ``save_products(ps, index=True)`` (the product vectors
and their HNSW index). Single queries (half catalog photos perturbed, half midpoints between two
random photos), one at a time, each method in turn on the same query:

(a) photo-level search: ``search_rows(photo_store, q, 10)``;
(b) ``max`` scoring, k=10 products: ``ps.with_scoring("max").search_products(q, 10, with_photos=True)``;
(c) ``mean`` scoring, k=10 products, with each product's best photo (as the real queries ask), and
    without (``with_photos=False``).

Reports latency p50/p95 of each, the ratios b/a and c/a per round (the median over rounds), and the
recall@10 of each product search against an exact brute-force product scoring (max: each product's
best photo score from exact matrix products; mean: exact over the normalised mean vectors).
Targets (the issue's): max <= 1.3x and mean <= 1.1x the photo-level search; recall@10 >= 0.99.

Prints a Markdown section and the raw figures as JSON; with --write it also puts the section into
BENCHMARKS.md (between its markers, replacing an earlier one). Not part of `make test`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import log
from inputs import clustered
from sections import publish

MODEL = "bench"
K = 10
METHODS = ("photo", "max", "mean", "mean_no_photos")
LABELS = {"photo": "(a) photo-level `search_rows(photos, q, 10)`",
          "max": "(b) `max`, k=10 products, with photos",
          "mean": "(c) `mean`, k=10 products, with photos",
          "mean_no_photos": "(c') `mean`, k=10 products, without photos"}


# --- the catalog ------------------------------------------------------------------------------

def product_photos(products: int, per_product: int, dim: int, seed: int = 0) -> np.ndarray:
    """[products * per_product, dim] unit vectors, a product's photos together: each product a point
    of ``clustered`` (its cluster of similar products), each photo that point moved along the manifold
    (a packshot, the back, a shop photo) plus a little isotropic noise."""
    centres, (_, basis) = clustered(products, dim, seed=seed)
    rng = np.random.default_rng(seed + 1)
    out = np.empty((products * per_product, dim), np.float32)
    step = 20_000
    for start in range(0, products, step):
        c = centres[start:start + step]
        n = len(c) * per_product
        along = rng.normal(size=(n, basis.shape[0])).astype(np.float32) @ basis
        along /= np.linalg.norm(along, axis=1, keepdims=True)
        iso = rng.normal(size=(n, dim)).astype(np.float32) / np.sqrt(dim)
        v = np.repeat(c, per_product, axis=0) + 0.45 * along + 0.1 * iso
        out[start * per_product:start * per_product + n] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def write_store(path: Path, photos: np.ndarray, per_product: int, shard_rows: int = 100_000):
    """The store, written with ModelWriter one shard at a time (a product's photos never split)."""
    import pandas as pd

    from vrec.store.store import Store
    from vrec.store.writer import ModelWriter

    n, dim = photos.shape
    cfg = {"name": MODEL, "family": "bench", "architecture": "synthetic", "weights": "none", "dim": dim,
           "preprocess": {}}
    st = Store(path)
    st.create(path.parent)
    shard_rows -= shard_rows % per_product
    with ModelWriter(st.model_for_writing(MODEL), cfg) as w:
        for start in range(0, n, shard_rows):
            j = np.arange(start, min(n, start + shard_rows))
            prod = [f"p{p:07d}" for p in j // per_product]
            pos = j % per_product + 1
            items = pd.DataFrame({"id": [f"{p}/{q}" for p, q in zip(prod, pos)], "path": "", "hash": "", "size": 0,
                                  "mtime": 0, "width": 0, "height": 0, "product": prod, "position": pos})
            w.add(items, photos[start:start + len(j)])
            w.flush()
    return st


def queries_for(photos: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Half catalog photos perturbed (a new photo of a known product), half midpoints between two
    random photos (what text queries and unknown products look like)."""
    rng = np.random.default_rng(seed)
    dim = photos.shape[1]
    own = photos[rng.integers(0, len(photos), (n + 1) // 2)] + 0.1 * rng.normal(size=((n + 1) // 2, dim)) / np.sqrt(dim)
    mid = photos[rng.integers(0, len(photos), n // 2)] + photos[rng.integers(0, len(photos), n // 2)]
    q = np.concatenate([own, mid]).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


# --- exact references -------------------------------------------------------------------------

def exact_truth(photos: np.ndarray, per_product: int, queries: np.ndarray) -> dict[str, np.ndarray]:
    """Exact top-10 for every query: photos (photo numbers), products by their best photo and by
    their mean vector (product numbers), by brute-force matrix products in blocks of products."""
    n_prod = len(photos) // per_product
    best = {name: (np.full((len(queries), K), -np.inf, np.float32), np.zeros((len(queries), K), np.int64))
            for name in ("photo", "max", "mean")}

    def keep(name, scores, offset):
        s0, i0 = best[name]
        s = np.concatenate([s0, scores], 1)
        i = np.concatenate([i0, np.broadcast_to(np.arange(offset, offset + scores.shape[1]), scores.shape)], 1)
        top = np.argpartition(-s, K - 1, axis=1)[:, :K]
        best[name] = (np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1))

    step = 20_000
    for p0 in range(0, n_prod, step):
        block = photos[p0 * per_product:(p0 + step) * per_product]
        s = queries @ block.T  # [queries, photos of this block]
        keep("photo", s, p0 * per_product)
        keep("max", s.reshape(len(queries), -1, per_product).max(-1), p0)
        mean = block.reshape(-1, per_product, block.shape[1]).astype(np.float64).mean(1)
        mean /= np.linalg.norm(mean, axis=1, keepdims=True)
        keep("mean", queries @ mean.T.astype(np.float32), p0)
    return {name: i for name, (_, i) in best.items()}


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth)]))


# --- the measurement --------------------------------------------------------------------------

def measure(products: int, per_product: int, dim: int, n_queries: int, rounds: int, tmp: Path,
            ef_construction: int) -> dict:
    from vrec.store.index import build_index, search_rows
    from vrec.store.products import save_products
    from vrec.store.store import Store

    t = time.perf_counter()
    photos = product_photos(products, per_product, dim)
    st = write_store(tmp / "store", photos, per_product)
    write_s = time.perf_counter() - t
    log(f"store: {len(photos):,} photos of {products:,} products written in {write_s:.1f} s")
    t = time.perf_counter()
    stats = build_index(st.photos(MODEL), ef_construction=ef_construction)
    index_s = time.perf_counter() - t
    log(f"photo index: {index_s:.1f} s, ef {stats.ef}, recall@10 (tuning) {stats.recall_at_10}")
    ps = Store(st.path).model(MODEL)
    t = time.perf_counter()
    saved = save_products(ps, index=True, ef_construction=ef_construction)
    products_s = time.perf_counter() - t
    log(f"product vectors + index: {products_s:.1f} s, ef {saved['ef']}, recall@10 (tuning) {saved['recall_at_10']}")

    ps = Store(st.path).model(MODEL)  # as a query process opens it
    photo_store = ps.photos
    ps_max, ps_mean = ps.with_scoring("max"), ps.with_scoring("mean")
    # product row -> product number (p0000012 -> 12), photo row -> photo number (rows are written in order)
    product_no = np.array([int(x[1:]) for x in ps.items()["id"]])
    photo_no = np.empty(photo_store.total_rows, np.int64)
    items = photo_store.items()
    photo_no[items["row"].to_numpy()] = [int(p[1:]) * per_product + q - 1
                                         for p, q in zip(items["product"], items["position"])]

    queries = queries_for(photos, n_queries, seed=1)
    t = time.perf_counter()
    truth = exact_truth(photos, per_product, queries)
    log(f"exact references: {time.perf_counter() - t:.1f} s")
    del photos

    calls = {"photo": lambda q: search_rows(photo_store, q, K),
             "max": lambda q: ps_max.search_products(q, K, with_photos=True),
             "mean": lambda q: ps_mean.search_products(q, K, with_photos=True),
             "mean_no_photos": lambda q: ps_mean.search_products(q, K, with_photos=False)}
    for q in queries[:20]:  # warm-up: indexes loaded, caches filled
        for f in calls.values():
            f(q[None])
    lat = {m: [[] for _ in range(rounds)] for m in METHODS}
    found = {m: [] for m in METHODS}
    best_photo_ok = []
    for r in range(rounds):
        for qi, q in enumerate(queries):
            q = q[None]
            order = METHODS if (qi + r) % 2 == 0 else METHODS[::-1]  # neither side always runs first
            for m in order:
                t = time.perf_counter()
                out = calls[m](q)
                lat[m][r].append(time.perf_counter() - t)
                if r == 0:
                    found[m].append(out[0][0])
                    if m != "photo" and out[2] is not None:  # each product shown with one of its own photos
                        best_photo_ok.append(bool((photo_no[out[2][0]] // per_product == product_no[out[0][0]]).all()))
        log(f"round {r + 1}: " + ", ".join(f"{m} p50 {1000 * np.median(lat[m][r]):.3f} ms" for m in METHODS))

    ms_of = lambda m, p: 1000 * float(np.percentile(np.concatenate(lat[m]), p))  # noqa: E731
    round_p50 = {m: [float(np.median(x)) for x in lat[m]] for m in METHODS}
    ratio = {m: statistics.median(a / b for a, b in zip(round_p50[m], round_p50["photo"])) for m in METHODS}
    rec = {"photo": recall([photo_no[f] for f in found["photo"]], truth["photo"]),
           "max": recall([product_no[f] for f in found["max"]], truth["max"]),
           "mean": recall([product_no[f] for f in found["mean"]], truth["mean"]),
           "mean_no_photos": recall([product_no[f] for f in found["mean_no_photos"]], truth["mean"])}
    return {"date": dt.date.today().isoformat(), "products": products, "photos_per_product": per_product,
            "photos": products * per_product, "dim": dim, "queries": n_queries, "rounds": rounds,
            "shards": len(photo_store.shards()), "ef_construction": ef_construction,
            "write_s": write_s, "photo_index_s": index_s, "photo_ef": stats.ef,
            "photo_recall_tuning": stats.recall_at_10, "product_index_s": products_s, "product_ef": saved["ef"],
            "product_recall_tuning": saved["recall_at_10"],
            "p50_ms": {m: ms_of(m, 50) for m in METHODS}, "p95_ms": {m: ms_of(m, 95) for m in METHODS},
            "ratio_p50": ratio, "round_p50_ms": {m: [1000 * x for x in v] for m, v in round_p50.items()},
            "recall_at_10": rec, "best_photo_of_product": all(best_photo_ok)}


# --- report -----------------------------------------------------------------------------------

START, END = "<!-- bench/product_search.py: start -->", "<!-- bench/product_search.py: end -->"
TITLE = "## Products of several photos: search against the photo-level search"
TARGET_RATIO = {"max": 1.3, "mean": 1.1}


def verdicts(r: dict) -> list[str]:
    out = []
    for m in ("max", "mean"):
        ok = r["ratio_p50"][m] <= TARGET_RATIO[m]
        out.append(f"`{m}` latency {r['ratio_p50'][m]:.2f}x the photo-level search: target <= {TARGET_RATIO[m]}x "
                   + ("**met**" if ok else "**missed**"))
    for m in ("max", "mean"):
        ok = r["recall_at_10"][m] >= 0.99
        out.append(f"`{m}` recall@10 {r['recall_at_10'][m]:.3f}: target >= 0.99 " + ("**met**" if ok else "**missed**"))
    return out


def markdown(r: dict) -> str:
    lines = [f"{r['products']:,} products x {r['photos_per_product']} photos ({r['photos']:,} photos, {r['dim']}-d "
             f"clustered synthetic unit vectors, each product's photos spread around it on the same manifold), written "
             f"with ModelWriter in {r['shards']} shards; `build_index` on the photo store and `save_products(ps, "
             f"index=True)` (ef_construction {r['ef_construction']}), measured {r['date']} on this 2-core CPU shared "
             f"with other work. {r['queries']} single queries (half catalog photos perturbed, half midpoints between "
             f"two random photos), each method in turn on the same query (alternating which runs first), "
             f"{r['rounds']} rounds. Ratio: the median over rounds of (method p50 / photo-level p50) measured in the "
             "same round. Recall@10 against an exact brute-force scoring of every product (max: each product's best "
             "photo score by exact matrix products; mean: exact over the normalised mean vectors; photo-level: exact "
             "photo top-10).", "",
             "| search | p50 ms | p95 ms | p50 / photo-level | recall@10 |", "| --- | ---: | ---: | ---: | ---: |"]
    for m in METHODS:
        lines.append(f"| {LABELS[m]} | {r['p50_ms'][m]:.3f} | {r['p95_ms'][m]:.3f} | {r['ratio_p50'][m]:.2f}x | "
                     f"{r['recall_at_10'][m]:.3f} |")
    lines += ["", f"- Build: store written in {r['write_s']:.0f} s; photo index {r['photo_index_s']:.0f} s (ef "
                  f"{r['photo_ef']}, tuning recall@10 {r['photo_recall_tuning']:.4f}); product vectors and index "
                  f"{r['product_index_s']:.0f} s (ef {r['product_ef']}, tuning recall@10 "
                  f"{r['product_recall_tuning']:.4f}).",
              "- Targets: " + "; ".join(verdicts(r)) + ".",
              "- Every product returned with photos came with one of its own photos: "
              + ("yes." if r["best_photo_of_product"] else "**no**.")]
    if r["recall_at_10"]["max"] < 0.99:
        lines.append(f"- `max` is the photo-level HNSW search grouped by product, so its recall follows the photo "
                     f"index's: {r['recall_at_10']['max']:.3f} here against {r['recall_at_10']['photo']:.3f} for the "
                     "photo-level search itself on the same queries. Fetching more photos per query would not help "
                     "while the index's `ef` exceeds the fetch (hnswlib returns the first photos of the same "
                     "ef-wide candidate list); what would is a photo index that reaches its target"
                     + (f": at ef_construction {r['ef_construction']} `build_index` ran to the top of its ef ladder "
                        f"(ef {r['photo_ef']}) and still measured {r['photo_recall_tuning']:.4f} < 0.99 on its own "
                        "tuning queries." if r["photo_recall_tuning"] < 0.99 else
                        f" with a margin (its tuning queries measured {r['photo_recall_tuning']:.4f}, the held-out "
                        "ones less)."))
    lines += [f"- {n}" for n in r.get("notes", [])]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=100_000, help="products in the store [100,000]")
    ap.add_argument("--photos", type=int, default=5, help="photos per product [5]")
    ap.add_argument("--dim", type=int, default=256, help="vector dimension [256]")
    ap.add_argument("--queries", type=int, default=300, help="single queries per round [300]")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over the queries [3]")
    ap.add_argument("--ef-construction", type=int, default=200, help="of both HNSW indexes [200, vrec's default]")
    ap.add_argument("--note", action="append", default=[], help="a line added to the section's notes")
    ap.add_argument("--write", action="store_true", help="put the section into BENCHMARKS.md")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vrec-products-"))
    try:
        result = measure(args.products, args.photos, args.dim, args.queries, args.rounds, tmp, args.ef_construction)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["notes"] = args.note
    publish(result, markdown(result), args.write, START, END, TITLE)


if __name__ == "__main__":
    main()
