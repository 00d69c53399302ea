"""Keyword search: the SQLite FTS5 index of hybrid search, built, updated and queried at catalog scale.

    python bench/keyword_search.py                      # 100,000 products
    python bench/keyword_search.py --products 20000     # a quick run (seconds)
    python bench/keyword_search.py --write              # also put the section into BENCHMARKS.md

A store holding only metadata (no vectors: the keyword index reads the metadata) of N synthetic
products -- a title of a brand and three words drawn from a 5,000-word vocabulary (Zipf-like), a
product type, a description of twelve words, a SKU and a 13-digit GTIN -- gets its keyword index
from ``build_keywords`` (what ``vrec index`` runs); then 1% of the products change, 0.5% leave and
0.5% arrive, and ``update_keywords`` (what ``vrec embed`` runs) rewrites them. Single queries, each
kind in turn through one open ``KeywordIndex`` (as ``vrec eval`` does; ``vrec search-text`` opens the
file once per query, a fraction of a millisecond more): a brand, two title words, a prefix (``wor*``),
a SKU (exact identifier) and a six-word description-like query. Reports build and update seconds, the
file's size, and each kind's latency p50/p95 for the 100 best. Not part of ``make test``.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import log
from sections import publish

START, END = "<!-- bench/keyword_search.py: start -->", "<!-- bench/keyword_search.py: end -->"
TITLE = "## Keyword search: the keyword leg of hybrid search at 100,000 products"
KINDS = ("brand", "two words", "prefix", "sku", "six words")


def catalog(n: int, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    words = np.array([f"w{i:04d}x" for i in range(5000)])
    p = 1.0 / np.arange(1, len(words) + 1)
    p /= p.sum()
    brands = np.array([f"brand{i:03d}" for i in range(300)])
    draw = rng.choice(len(words), size=(n, 15), p=p)
    brand = brands[rng.integers(0, len(brands), n)]
    return pd.DataFrame({
        "id": [f"p{i:07d}" for i in range(n)],
        "title": [f"{b} {' '.join(words[d[:3]])}" for b, d in zip(brand, draw)],
        "brand": brand,
        "product_type": [f"type{t}" for t in rng.integers(0, 50, n)],
        "description": [" ".join(words[d[3:]]) for d in draw],
        "sku": [f"SKU-{i:07d}" for i in range(n)],
        "gtin": [f"{7300000000000 + i}" for i in range(n)],
    }).set_index("id"), words


def queries(meta, words, kind: str, count: int, rng) -> list[str]:
    rows = meta.iloc[rng.integers(0, len(meta), count)]
    if kind == "brand":
        return rows["brand"].tolist()
    if kind == "two words":
        return [" ".join(t.split()[1:3]) for t in rows["title"]]
    if kind == "prefix":
        return [t.split()[1][:3] + "*" for t in rows["title"]]
    if kind == "sku":
        return rows["sku"].tolist()
    return [" ".join(d.split()[:6]) for d in rows["description"]]


def measure(products: int, count: int, tmp: Path) -> dict:
    import pandas as pd

    from vrec.store import keywords as kw
    from vrec.store.store import Store

    st = Store(tmp / "st")
    (tmp / "photos").mkdir()
    st.create(tmp / "photos")
    meta, words = catalog(products)
    st.write_metadata(meta)
    t = time.perf_counter()
    kw.build_keywords(st)
    build = time.perf_counter() - t
    size = kw.keyword_stats(st)["size_bytes"]
    log(f"built the keyword index of {products:,} products in {build:.1f} s ({size / 1e6:.1f} MB)")
    rng = np.random.default_rng(1)
    changed = meta.copy()
    n1 = max(1, products // 100)
    at = rng.choice(products, size=n1, replace=False)
    changed.iloc[at, changed.columns.get_loc("title")] = [f"renamed {x}" for x in changed["title"].iloc[at]]
    changed = changed.drop(index=changed.index[rng.choice(products, size=n1 // 2, replace=False)])
    new, _ = catalog(n1 // 2, seed=2)
    new.index = [f"new{i:07d}" for i in range(len(new))]
    st.write_metadata(pd.concat([changed, new]).rename_axis("id"))
    t = time.perf_counter()
    counts = kw.update_keywords(st)
    update = time.perf_counter() - t
    log(f"updated {counts} in {update:.2f} s")
    latency = {}
    with kw.KeywordIndex(st) as ix:
        for kind in KINDS:
            times = []
            for q in queries(meta, words, kind, count, rng):
                t = time.perf_counter()
                ix.search(q, 100)
                times.append(time.perf_counter() - t)
            latency[kind] = {"p50_ms": statistics.median(times) * 1000,
                             "p95_ms": float(np.quantile(times, 0.95)) * 1000}
            log(f"{kind}: p50 {latency[kind]['p50_ms']:.2f} ms, p95 {latency[kind]['p95_ms']:.2f} ms")
    return {"products": products, "build_s": build, "size_mb": size / 1e6, "update": counts, "update_s": update,
            "queries_per_kind": count, "latency": latency}


def markdown(r: dict) -> str:
    u = r["update"]
    lines = [f"{r['products']:,} synthetic products (title, brand, type, 12-word description, SKU, GTIN); "
             f"`build_keywords` {r['build_s']:.1f} s, {r['size_mb']:.1f} MB; `update_keywords` after "
             f"{u['changed']:,} changed, {u['removed']:,} removed and {u['added']:,} added products: "
             f"{r['update_s']:.2f} s.", "",
             f"| query ({r['queries_per_kind']} each, 100 best) | p50 ms | p95 ms |", "| --- | ---: | ---: |"]
    for kind, v in r["latency"].items():
        lines.append(f"| {kind} | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=100_000, help="products in the catalog [100,000]")
    ap.add_argument("--queries", type=int, default=200, help="queries of each kind [200]")
    ap.add_argument("--write", action="store_true", help="put the section into BENCHMARKS.md")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vrec-keywords-"))
    try:
        result = measure(args.products, args.queries, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    publish(result, markdown(result), args.write, START, END, TITLE)


if __name__ == "__main__":
    main()
