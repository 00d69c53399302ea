"""Memory allocator: the bare model with and without :func:`vrec.models.encoders.keep_freed_memory`
(glibc keeps freed memory instead of returning it to the kernel after every batch), in fresh
processes, since glibc's settings are per process."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from common import log, run_json

# argv: model, weights, images. Prints one JSON line: whether vrec's setting took, images/s, and the
# kernel's share of the process's CPU time while encoding.
PROBE = """
import json, os, sys, time
import numpy as np
from vrec.models.encoders import create_encoder, keep_freed_memory
enc = create_encoder(sys.argv[1], weights=sys.argv[2], device="cpu")
px = np.random.default_rng(0).integers(0, 256, (32 + int(sys.argv[3]), 224, 224, 3), dtype=np.uint8)
enc.encode_pixels(px[:32])  # the first full batch grows the heap either way
t0, c0 = time.perf_counter(), os.times()
for i in range(32, len(px), 32):
    enc.encode_pixels(px[i:i + 32])
t1, c1 = time.perf_counter(), os.times()
print(json.dumps({"kept": keep_freed_memory(), "img_s": (len(px) - 32) / (t1 - t0),
                  "kernel_share": (c1.system - c0.system) / ((c1.user + c1.system) - (c0.user + c0.system))}))
"""


def measure(name: str, weights: Path, images: int, pairs: int) -> dict:
    """Back-to-back pairs of fresh processes: vrec's setting, then glibc's defaults (setting glibc's
    own MALLOC_TRIM_THRESHOLD_ to its default makes vrec leave the allocator alone)."""
    runs = {"kept": [], "glibc": []}
    for _ in range(pairs):
        for tag, env in (("kept", {}), ("glibc", {"MALLOC_TRIM_THRESHOLD_": "131072"})):
            out = run_json(PROBE, name, weights, images, env={**os.environ, **env})
            if out["kept"] != (tag == "kept"):
                raise RuntimeError(f"the allocator setting did not take the expected state: {out}")
            runs[tag].append((out["img_s"], out["kernel_share"]))
    ratios = [k[0] / g[0] for k, g in zip(runs["kept"], runs["glibc"])]
    row = {"model": name, "images": images, "pairs": pairs,
           "kept_img_s": float(np.median([r for r, _ in runs["kept"]])),
           "glibc_img_s": float(np.median([r for r, _ in runs["glibc"]])),
           "kept_kernel_share": float(np.median([k for _, k in runs["kept"]])),
           "glibc_kernel_share": float(np.median([k for _, k in runs["glibc"]])),
           "speedup": float(np.median(ratios))}
    log(f"  allocator {name}: {row['glibc_img_s']:.2f} -> {row['kept_img_s']:.2f} img/s ({row['speedup']:.2f}x); kernel "
        f"share of CPU time {row['glibc_kernel_share']:.0%} -> {row['kept_kernel_share']:.0%}")
    return row


def markdown(rows: list[dict] | None) -> list[str]:
    """The section's lines; ``rows`` is None where the run left it out (--quick)."""
    lines = ["", "### Memory allocator", ""]
    if not rows:
        return lines + ["Measured by the full run only (`make bench`)."]
    lines += ["The bare model in a fresh process with vrec's allocator setting (`keep_freed_memory`: glibc keeps freed "
              "memory instead of returning it to the kernel after every batch) and with glibc's defaults. "
              "Median of back-to-back pairs; the kernel's share is of the process's CPU time.", "",
              "| model | images | pairs | glibc defaults img/s | vrec img/s | speed-up | kernel share, defaults | "
              "kernel share, vrec |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    return lines + [f"| {a['model']} | {a['images']} | {a['pairs']} | {a['glibc_img_s']:.2f} | {a['kept_img_s']:.2f} | "
                    f"**{a['speedup']:.2f}×** | {a['glibc_kernel_share']:.0%} | {a['kept_kernel_share']:.0%} |"
                    for a in rows]
