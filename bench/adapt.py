"""How long `vrec adapt` takes on a large catalog: synthetic vectors, a planted label, the CPU.

    python bench/adapt.py --items 20000             # about a minute on a busy 2-core machine
    python bench/adapt.py --items 100000 --write    # also put the section into BENCHMARKS.md

The catalog is ``--items`` clustered unit vectors of ``--dim`` dimensions (768: SigLIP's) written
into a store with the store writer, and a label of 200 values that the vectors carry weakly (a
direction per value, small beside the clusters). `vrec adapt` then runs as the command line runs
it (300 steps, rank 32, 30% held out, precision@10 on at most 5,000 held-out queries) and
publishes the derived model: every item's adapted vector through the store writer, once without
and once with an HNSW index (as when the base model has one; ``--no-index``: only without).
Reported: the seconds of each part, and the held-out gain the planted label gives. Not part of
`make test`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, log
from inputs import clustered
from sections import write_section

START, END = "<!-- adapt: start -->", "<!-- adapt: end -->"
MODEL = "bench"


def make_store(path: Path, n: int, dim: int, seed: int = 0):
    """A store of ``n`` vectors with a weakly planted 200-value label in its metadata."""
    import pandas as pd

    from vrec.store.store import Store
    from vrec.store.writer import ModelWriter

    v, _ = clustered(n, dim, seed)
    rng = np.random.default_rng(seed + 1)
    labels = rng.integers(0, 200, n)
    directions = rng.normal(size=(200, dim)).astype(np.float32) / np.sqrt(dim)
    v = v + 0.3 * directions[labels]
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ids = [f"i{i:07d}" for i in range(n)]
    st = Store(path)
    st.create(path.parent)
    cfg = {"name": MODEL, "family": "bench", "architecture": "synthetic", "weights": "none", "dim": dim, "preprocess": {}}
    with ModelWriter(st.model_for_writing(MODEL), cfg) as w:
        items = pd.DataFrame({"id": ids, "path": "", "hash": "", "size": 0, "mtime": 0, "width": 0, "height": 0})
        w.add(items, v.astype(np.float32))
    st.write_metadata(pd.DataFrame({"id": ids, "label": [f"l{x}" for x in labels]}).set_index("id"))
    return st


def measure(n: int, dim: int, index: bool) -> dict:
    from vrec.experiments.adapt import adapt
    from vrec.store import index as ix

    with tempfile.TemporaryDirectory() as tmp:
        log(f"writing {n} vectors of dim {dim}")
        st = make_store(Path(tmp) / "st", n, dim)
        base_index = None
        if index:
            log("indexing the base model (not timed as part of adapt)")
            t = time.perf_counter()
            ix.build_index(st.model(MODEL))
            base_index = round(time.perf_counter() - t, 1)
        log("vrec adapt --label label")
        t = time.perf_counter()
        rep = adapt(MODEL, ["label"], store=st, progress=log)
        wall = time.perf_counter() - t
    row = rep.rows[0]
    return {"items": n, "dim": dim, "index": index, "wall_s": round(wall, 1),
            "parts_s": {k: round(v, 1) for k, v in rep.seconds.items()}, "base_index_s": base_index,
            "base": round(row["base"], 3), "adapted": round(row["adapted"], 3),
            "gain": round(row["difference"], 3), "ci": [round(x, 3) for x in row["ci"]],
            "queries": row["queries"], "published": rep.published,
            "cores": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 1),
            "date": dt.date.today().isoformat()}


def markdown(results: list[dict]) -> str:
    rows = []
    for r in results:
        p = r["parts_s"]
        rows.append(f"| {r['items']:,} | {r['dim']} | {'yes' if r['index'] else 'no'} | {p.get('read', 0)} s | "
                    f"{p.get('train', 0)} s | {p.get('evaluate', 0)} s | {p.get('publish', 0)} s | "
                    f"**{p.get('total', r['wall_s'])} s** | {r['base']:.3f} → {r['adapted']:.3f} "
                    f"({r['gain']:+.3f}, {r['ci'][0]:+.3f} to {r['ci'][1]:+.3f}) | {r['load_1min']} |")
    r = results[-1]
    indexed = [x for x in results if x["index"]]
    return "\n".join([
        "`python bench/adapt.py`: a synthetic catalog (clustered unit vectors, a 200-value label planted weakly "
        "beside the clusters), `vrec adapt --label label` as the command runs it (rank 32, 300 steps of 512 items, "
        "30% of the items held out, precision@10 on at most 5,000 held-out queries), publishing every item's "
        "adapted vector, and its HNSW index where the base model has one (index: yes).",
        "",
        "| items | dim | index | read | train | evaluate | publish | total | held-out P@10 base → adapted (gain, 95% "
        "interval) | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Measured {r['date']} on {r['cores']} CPU cores shared with other work (load: the 1-minute load average "
        "at the end of the run), so these are upper bounds for an idle 2-core machine. Training costs the same at "
        "any catalog size (a fixed number of steps, on one torch thread); reading, evaluating and publishing grow "
        "linearly with the items, and building the derived model's index is most of publishing"
        + (f" (the base model's own index, built beforehand, took {indexed[0]['base_index_s']} s and is not counted)."
           if indexed else "."),
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--no-index", action="store_true", help="only the run without an index")
    ap.add_argument("--write", action="store_true", help="put the section into BENCHMARKS.md")
    a = ap.parse_args()
    results = [measure(a.items, a.dim, index) for index in ((False,) if a.no_index else (False, True))]
    print(json.dumps(results, indent=2))
    section = markdown(results)
    print(section)
    if a.write:
        write_section(ROOT / "BENCHMARKS.md", START, END, "## vrec adapt: training and publishing an adapter", section)
        log("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
