"""Memory while embedding: the peak resident memory of a `vrec embed` process as the catalog
grows (tiny-cnn, so the pipeline rather than the model dominates). It must stay flat, since only
a few batches of pixels are in flight."""
from __future__ import annotations

import shutil
from pathlib import Path

from common import log, run_json

# argv: folder, store. Prints one JSON line: the process's own high-water mark of resident memory
# (VmHWM; ru_maxrss would include the parent's size at fork on Linux).
PROBE = """
import json, sys
from vrec.ingest.embed import embed
embed(sys.argv[1], models=['tiny-cnn'], store=sys.argv[2], batch_size=32)
print(json.dumps({"vmhwm_kb": int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))}))
"""


def peak_rss_of_embed(folder: Path, store: Path) -> float:
    """Peak resident memory (MB) of a `vrec embed` process."""
    return run_json(PROBE, folder, store)["vmhwm_kb"] / 1024


def measure(tmp: Path, base: Path, copies: tuple[int, ...]) -> list[dict]:
    """Embed ``c`` copies of the photos under ``base``, for each c in ``copies``."""
    rows = []
    for c in copies:
        folder = tmp / f"mem-{c}"
        for i in range(c):
            shutil.copytree(base, folder / f"copy{i}")
        n = sum(1 for _ in folder.rglob("*.jpg"))
        rss = peak_rss_of_embed(folder, tmp / f"mem-store-{c}")
        rows.append({"images": n, "peak_rss_mb": rss})
        log(f"  embed {n} images (tiny-cnn): peak RSS {rss:.0f} MB")
    return rows


def markdown(rows: list[dict]) -> list[str]:
    return (["", "## Memory while embedding", "",
             "Peak resident memory of a `vrec embed` process (tiny-cnn, so the pipeline rather than the model dominates): "
             "it must stay flat as the catalog grows, since only a few batches of pixels are in flight.", "",
             "| images | peak RSS MB |", "| ---: | ---: |"]
            + [f"| {r['images']} | {r['peak_rss_mb']:.0f} |" for r in rows])
