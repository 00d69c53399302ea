"""Decoding: read + decode + preprocess alone (no model), in one thread, a thread per core (what
`vrec embed` uses) and a process per core. Processes only pay where the GIL limits threads; this
table says whether that happens on the machine at hand."""
from __future__ import annotations

import os
import time

from common import log


def _decode_job(args) -> None:
    from vrec.ingest.pipeline import process_file

    source, ref, specs, min_size = args
    process_file(source, ref, specs, min_size)


def measure(folders: dict, at_least: int) -> list[dict]:
    """Images/s per folder for vrec's default models, each way repeating the photos to ``at_least``
    jobs (a second or more each)."""
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    from vrec.ingest.catalog import open_source
    from vrec.models.registry import DEFAULT_MODELS, resolve

    specs = {m: resolve(m).preprocess for m in DEFAULT_MODELS}
    min_size = max(s.decode_size for s in specs.values())
    cores = os.cpu_count() or 2
    rows = []
    for label, folder in folders.items():
        source = open_source(folder)
        refs = source.refs()
        jobs = [(source, ref, specs, min_size) for ref in refs] * max(1, at_least // len(refs))
        row = {"photos": label, "images": len(refs), "workers": cores}
        for kind, pool in (("one_thread", None), ("threads", ThreadPoolExecutor), ("processes", ProcessPoolExecutor)):
            if pool is None:
                t0 = time.perf_counter()
                for j in jobs:
                    _decode_job(j)
            else:
                with pool(cores) as ex:
                    list(ex.map(_decode_job, jobs[:cores]))  # start-up (processes fork and import) left out
                    t0 = time.perf_counter()
                    list(ex.map(_decode_job, jobs, chunksize=8))
            row[kind + "_img_s"] = len(jobs) / (time.perf_counter() - t0)
        rows.append(row)
        log(f"  decode {label}: 1 thread {row['one_thread_img_s']:.0f} img/s, {cores} threads "
            f"{row['threads_img_s']:.0f}, {cores} processes {row['processes_img_s']:.0f}")
    return rows


def markdown(rows: list[dict]) -> list[str]:
    return (["", "### Decoding: threads or processes", "",
             "Read + decode + preprocess alone (no model) for vrec's default models, in images/s. `vrec embed` decodes "
             "in one thread per core (Pillow releases the GIL while decoding and resizing); processes would only pay "
             "where the GIL held threads back, which shows here as processes beating threads.", "",
             "| photos | images | workers | 1 thread | threads | processes |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
            + [f"| {d['photos']} | {d['images']} | {d['workers']} | {d['one_thread_img_s']:.0f} | {d['threads_img_s']:.0f} | "
               f"{d['processes_img_s']:.0f} |" for d in rows])
