"""Memory while streaming an interaction log: `vrec eval --interactions` on large synthetic logs.

    python bench/interactions.py                         # 1M, 3M and 10M events over 100,000 items
    python bench/interactions.py --events 200000,1000000 # a quick run (under a minute)
    python bench/interactions.py --write                 # also put the section into BENCHMARKS.md

For each size a synthetic CSV log (session, item, event, timestamp; sessions of ~5 items from a
latent category, rows shuffled so no session is contiguous) is written in chunks, then read by
``vrec.experiments.interactions.co_occurrence`` in a fresh process, which reports its own
high-water mark of resident memory (VmHWM) and the size of the co-occurrence matrix it built. The
log is never loaded whole: memory should grow with the distinct co-occurring pairs (the sparse
matrix), not with the number of events. Not a timed test; seconds are shown for orientation only.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from common import log, run_json
from sections import publish

START, END = "<!-- bench/interactions.py: start -->", "<!-- bench/interactions.py: end -->"
TITLE = "## Streaming an interaction log (`vrec eval --interactions`)"

# argv: log, items. One JSON line: peak resident memory of this process and what was built.
PROBE = """
import json, sys, time
t = time.perf_counter()
from vrec.experiments.interactions import co_occurrence
rel = co_occurrence(sys.argv[1], [f"i{j}" for j in range(int(sys.argv[2]))])
hwm = int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))
print(json.dumps({"vmhwm_kb": hwm, "nnz": int(rel.matrix.nnz), "sessions": rel.stats["sessions"],
                  "seconds": round(time.perf_counter() - t, 1)}))
"""


def write_log(path: Path, events: int, items: int, seed: int = 0, chunk: int = 500_000) -> None:
    """A synthetic log of ``events`` rows, written chunk by chunk (sessions spread over chunks)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    sessions = max(1, events // 5)
    cats = 200
    per_cat = max(1, items // cats)
    with open(path, "w") as f:
        f.write("session,item,event,timestamp\n")
        for start in range(0, events, chunk):
            m = min(chunk, events - start)
            s = rng.integers(0, sessions, m)
            cat = (s * 2654435761) % cats  # each session browses one category
            item = np.minimum(cat * per_cat + rng.integers(0, per_cat, m), items - 1)
            ev = rng.choice(np.array(["view", "cart", "purchase"]), m, p=[0.85, 0.1, 0.05])
            pd.DataFrame({"session": s, "item": [f"i{j}" for j in item], "event": ev,
                          "timestamp": rng.integers(1_700_000_000, 1_702_000_000, m)}).to_csv(f, header=False,
                                                                                              index=False)


def measure(sizes: list[int], items: int, tmp: Path) -> list[dict]:
    rows = []
    for n in sizes:
        path = tmp / f"log-{n}.csv"
        t = time.perf_counter()
        write_log(path, n, items)
        log(f"  wrote {n:,} events ({path.stat().st_size / 2**20:,.0f} MB) in {time.perf_counter() - t:.0f} s")
        r = run_json(PROBE, path, items)
        rows.append({"events": n, "items": items, "csv_mb": round(path.stat().st_size / 2**20, 1),
                     "peak_rss_mb": round(r["vmhwm_kb"] / 1024, 1), "pairs": r["nnz"], "sessions": r["sessions"],
                     "seconds": r["seconds"]})
        log(f"  streamed: peak RSS {rows[-1]['peak_rss_mb']:.0f} MB, {r['nnz']:,} distinct pairs, {r['seconds']} s")
        path.unlink()
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["Peak resident memory of a process streaming a synthetic log through `co_occurrence` (CSV read in "
             "chunks of 250,000 rows, sessions hash-partitioned to disk, pairs added in batches); "
             "`python bench/interactions.py`.", "",
             "| events | log (CSV) | sessions | distinct co-occurring pairs | peak RSS | seconds |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['events']:,} | {r['csv_mb']:,.0f} MB | {r['sessions']:,} | {r['pairs']:,} | "
                     f"{r['peak_rss_mb']:,.0f} MB | {r['seconds']} |")
    lines += ["", f"{rows[0]['items']:,} catalog items; sessions of ~5 events within one of 200 categories. Memory "
              "follows the distinct co-occurring pairs (the sparse matrix: 12 bytes a pair once built, about three "
              "times that while pairs are merged into it), not the number of events: the log itself is never in "
              "memory. Seconds are for orientation only (a shared 2-core machine)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", default="1000000,3000000,10000000", help="log sizes, comma-separated")
    ap.add_argument("--items", type=int, default=100_000, help="catalog items [100,000]")
    ap.add_argument("--write", action="store_true", help="put the section into BENCHMARKS.md")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vrec-interactions-"))
    try:
        rows = measure([int(x) for x in args.events.split(",")], args.items, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    publish(rows, markdown(rows), args.write, START, END, TITLE)


if __name__ == "__main__":
    main()
