"""``vrec cost``: what it takes to (re-)embed a catalog, store its vectors and index, and keep up.

Every figure carries its source:

- **throughput** (images/s): on the CPU, a short calibration -- ``vrec embed`` itself (decode,
  preprocess, encode, write) run on a few dozen of the catalog's own photos on this machine, after
  a warm-up run on 8 others (the first batch of any run is slower, which 2M photos amortise); kept
  in the store (``calibration.json``) and re-used until ``recalibrate``. On a GPU, the figures of
  ``BENCHMARKS-gpu.json`` (``make bench-gpu``) or the GPU section of ``BENCHMARKS.json``; without
  them, a calibration when this machine has that GPU. Without a store, the CPU rows of
  ``BENCHMARKS.json`` stand in, and say so.
- **vector storage**: images x dim x 4 bytes (float32, what the store holds) and x 2 (float16).
- **index size and RAM**: hnswlib's memory layout -- per item 4*dim bytes of vector, 8*M of
  level-0 links, 20 of header and label, and 1/(M-1) upper levels of 4*M+4 bytes -- which
  matches BENCHMARKS.json's measured sizes within 1%; hnswlib holds the whole index in memory to
  serve. RAM to build: the benchmark's measured peak at the nearest size, scaled to the index.
- **index build time**: the benchmark's nearest measured build, scaled by n*log(n) and dim.
- **weekly upkeep**: ``new_per_week`` x images embedded (new items only: embed is incremental)
  plus the same share of an index build (new items are added to the index, not rebuilt).
Money is hours x ``price_per_hour``, when given.
"""
from __future__ import annotations

import json
import math
import os
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vrec.base.errors import StoreError, VrecError, check_number
from vrec.base.records import json_safe
from vrec.base.userfiles import check_file, read_text
from vrec.store.store import as_store, now, read_json, write_json

CALIBRATION_FILE = "calibration.json"
DEFAULT_CALIBRATION_PHOTOS = 32  # measured, after WARM_UP_PHOTOS that are not
WARM_UP_PHOTOS = 8
HNSW_M = 16  # vrec index's defaults
DEFAULT_EF_CONSTRUCTION = 200
MAX_IMAGES = 10_000_000_000  # ten billion photos: beyond any catalog
MAX_PRICE_PER_HOUR = 1_000_000  # beyond any machine's hourly price, in any currency
DEVICES = ("cpu", "cuda")
ROOT = Path(__file__).resolve().parents[2]  # the repository (a checkout), where BENCHMARKS.json lies


@dataclass
class Rate:
    model: str
    device: str
    precision: str
    images_per_second: float
    source: str
    reused: bool = False


@dataclass
class Figure:
    """One number, its unit and where it came from."""

    what: str
    value: float | None
    unit: str
    source: str


@dataclass
class ModelCost:
    model: str
    dim: int
    rate: Rate
    figures: list[Figure] = field(default_factory=list)

    def get(self, what: str) -> Figure:
        return next(f for f in self.figures if f.what == what)


@dataclass
class CostEstimate:
    images: int
    device: str
    precision: str
    price_per_hour: float | None
    new_per_week: float | None
    models: list[ModelCost]
    notes: list[str] = field(default_factory=list)


def machine_key() -> dict:
    return {"node": platform.node(), "cpus": os.cpu_count(), "machine": platform.machine()}


# --- throughput ---------------------------------------------------------------------------------

def _calibration_path(st) -> Path:
    return st.path / CALIBRATION_FILE


def saved_calibrations(store=None) -> list[dict]:
    st = as_store(store)
    p = _calibration_path(st)
    return read_json(p).get("entries", []) if p.is_file() else []


def _catalog_photos(st, n: int) -> tuple[list[str], str]:
    """Up to ``n`` photo locations spread evenly over the catalog, and the catalog root."""
    names = st.model_names()
    if not names:
        raise VrecError(f"The store {str(st.path)!r} holds no photos yet, and calibration runs on your own photos; "
                        "run 'vrec embed FOLDER' first (any model).")
    items = st.model(names[0]).items()
    if not len(items):
        raise VrecError(f"The store {str(st.path)!r} holds no items to calibrate on; run 'vrec embed FOLDER' first.")
    root = st.info()["root"]
    paths = items["path"].astype(str).tolist()
    import numpy as np

    take = [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, min(n, len(paths))).round().astype(int))]
    if "://" in root:
        return [root.rstrip("/") + "/" + p for p in take], root
    return [str(Path(root) / p) for p in take], root


def calibrate(model: str, store=None, device: str = "cpu", precision: str = "fp32",
              photos: int = DEFAULT_CALIBRATION_PHOTOS, recalibrate: bool = False) -> Rate:
    """Images per second of ``vrec embed`` for ``model`` on this machine, measured on the catalog's photos.

    Runs the real pipeline (:func:`vrec.ingest.embed.embed`) on ``photos`` of the store's photos into a
    temporary store, so the rate is what ``vrec embed`` achieves here, decoding included. The
    result is kept in the store and re-used (same model, device, precision and machine) unless
    ``recalibrate``.
    """
    import pandas as pd

    from vrec.ingest.embed import embed
    from vrec.models.registry import resolve

    check_number("--calibrate", photos, min=2, max=10_000, integer=True, hint="32 takes seconds for a CNN")
    name = resolve(model).name
    st = as_store(store)
    st.info()
    key = {"model": name, "device": device, "precision": precision, "machine": machine_key()}
    entries = saved_calibrations(st)
    if not recalibrate:
        for e in entries:
            if all(e.get(k) == v for k, v in key.items()):
                return Rate(name, device, precision, float(e["images_per_second"]),
                            f"calibrated on {e['photos']} of this catalog's photos on this machine "
                            f"({e['measured']}; re-used: --recalibrate measures again)", reused=True)
    locations, root = _catalog_photos(st, int(photos) + WARM_UP_PHOTOS)
    warm = locations[::max(1, len(locations) // WARM_UP_PHOTOS)][:WARM_UP_PHOTOS] if len(locations) > 4 else []
    with tempfile.TemporaryDirectory(prefix="vrec-calibrate-") as tmp:
        listing = Path(tmp) / "photos.csv"
        frame = pd.DataFrame({"id": [f"p{i}" for i in range(len(locations))], "path": locations})
        if warm:  # a first run warms the kernels and the allocator, as the first batches of a long run do
            frame[frame["path"].isin(warm)].to_csv(listing, index=False)
            embed(listing, models=[name], store=Path(tmp) / "store", device=device, precision=precision)
        frame.to_csv(listing, index=False)  # the measured run embeds the others (embed is incremental)
        report = embed(listing, models=[name], store=Path(tmp) / "store", device=device, precision=precision)
    done = max((m.embedded for m in report.models), default=0)
    if done < 2 or report.images_per_second <= 0:
        raise VrecError(f"Calibration could not read the catalog's photos under {root!r} ({len(report.skipped)} "
                        "skipped); check that the catalog folder is still there, or run 'vrec embed' on it again.")
    entry = {**key, "images_per_second": report.images_per_second, "photos": done,
             "seconds": report.embed_seconds, "measured": now()}
    entries = [e for e in entries if not all(e.get(k) == v for k, v in key.items())] + [entry]
    kept = "kept in the store"
    try:
        write_json(_calibration_path(st), {"entries": entries})
    except (StoreError, OSError):  # a read-only store still gets its estimate
        kept = "not kept: the store cannot be written, so the next run measures again"
    return Rate(name, device, precision, report.images_per_second,
                f"calibrated now: 'vrec embed' on {done} of this catalog's photos on this machine "
                f"({report.embed_seconds:.1f} s; {kept})")


def benchmark_files(benchmarks: str | os.PathLike | None = None) -> list[Path]:
    """Benchmark JSON files to read, best first: the one given, else BENCHMARKS-gpu.json and
    BENCHMARKS.json in the current folder and in vrec's source checkout."""
    if benchmarks is not None:
        p = Path(benchmarks)
        if p.suffix.lower() == ".md":  # the Markdown's machine-readable twin
            p = p.with_suffix(".json")
        check_file(p, "--benchmarks", "give a BENCHMARKS-gpu.json written by 'make bench-gpu' (or bench/run.py)")
        return [p]
    out = []
    for folder in dict.fromkeys([Path.cwd(), ROOT]):
        for name in ("BENCHMARKS-gpu.json", "BENCHMARKS.json"):
            if (folder / name).is_file():
                out.append(folder / name)
    return out


def _load_benchmark(path: Path) -> dict:
    text = read_text(path, "The benchmark file", "benchmarks", "regenerate it with 'make bench'")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise VrecError(f"Cannot read the benchmark file {str(path)!r} ({e}); regenerate it with 'make bench'.") from None


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def benchmark_rate(model: str, device: str, precision: str = "fp32", benchmarks=None) -> Rate | None:
    """``vrec embed`` images/s for a model from the benchmark files, or None when none has it."""
    for path in benchmark_files(benchmarks):
        data = _load_benchmark(path)
        rows = (data.get("gpu") or {}).get("embed", []) if device != "cpu" else data.get("embed", [])
        rows = [r for r in rows if r.get("model") == model and r.get("precision", "fp32") == precision
                and (device == "cpu") == (r.get("device", "cpu") == "cpu")]
        if not rows:
            continue
        product = [r for r in rows if "fashion" in str(r.get("photos", ""))] or rows
        rate = _median([float(r["embed_img_s"]) for r in product])
        m = data.get("machine", {})
        where = m.get("gpu") if device != "cpu" else f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"
        return Rate(model, device, precision, rate,
                    f"{path.name} ({data.get('date', '?')}): 'vrec embed' on {where}, {product[0].get('photos', 'photos')}, "
                    f"{precision}")
    return None


def throughput(model: str, device: str = "cpu", precision: str = "fp32", store=None, photos: int = 32,
               recalibrate: bool = False, benchmarks=None, notes: list | None = None) -> Rate:
    from vrec.models.registry import resolve

    name = resolve(model).name
    if device == "cpu":
        st = as_store(store)
        if st.exists() and st.model_names():
            return calibrate(name, st, "cpu", precision, photos, recalibrate)
        rate = benchmark_rate(name, "cpu", precision, benchmarks)
        if rate is None:
            raise VrecError(f"No store to calibrate {name!r} on and no benchmark figure for it; run 'vrec embed FOLDER' "
                            "first (calibration runs on your own photos), or pass --store.")
        if notes is not None:
            notes.append(f"no store here: {name}'s rate is the benchmark machine's, not yours; run 'vrec embed' on your "
                         "catalog and 'vrec cost' again to calibrate on your own photos")
        return rate
    rate = benchmark_rate(name, device, precision, benchmarks)
    if rate is not None:
        return rate
    if _cuda_here():
        return calibrate(name, store, device, precision, photos, recalibrate)
    files = ", ".join(p.name for p in benchmark_files(benchmarks)) or "none found"
    raise VrecError(f"No GPU figure for {name!r} at {precision} (benchmark files: {files}), and this machine has no "
                    f"GPU to calibrate on; run 'make bench-gpu' on a CUDA machine and pass its BENCHMARKS-gpu.json with "
                    f"--benchmarks, or run 'vrec cost' there.")


def _cuda_here() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


# --- index --------------------------------------------------------------------------------------

def hnsw_bytes(items: int, dim: int, m: int = HNSW_M) -> float:
    """hnswlib's memory for ``items`` vectors: data, level-0 links, header and label, upper levels."""
    per_item = 4 * dim + 8 * m + 4 + 8 + 8  # vector, 2M links + count, label, upper-level pointer
    upper = (4 * m + 4) / (m - 1)  # levels above 0: a share 1/M, 1/M^2, ... of the items, M links each
    return items * (per_item + upper)


def _search_rows(benchmarks=None) -> tuple[list[dict], str]:
    for path in benchmark_files(benchmarks):
        data = _load_benchmark(path)
        rows = [r for r in data.get("search", []) if "synthetic" in str(r.get("source", "")) and r.get("build_s")]
        if rows:
            return rows, f"{path.name} ({data.get('date', '?')}, {data.get('machine', {}).get('cores', '?')} cores)"
    return [], ""


def _nearest(rows: list[dict], n: int) -> dict:
    return min(rows, key=lambda r: abs(math.log(max(r["n"], 2)) - math.log(max(n, 2))))


# --- the estimate -------------------------------------------------------------------------------

def estimate(images: int, models: Sequence[str] = ("siglip", "cnn"), device: str = "cpu", precision: str = "fp32",
             price_per_hour: float | None = None, new_per_week: float | None = None, store=None,
             calibrate_photos: int = DEFAULT_CALIBRATION_PHOTOS, recalibrate: bool = False,
             benchmarks=None, m: int = HNSW_M) -> CostEstimate:
    """Time, money, storage and upkeep for ``images`` photos with each model (see the module doc)."""
    from vrec.models.registry import resolve
    from vrec.store.index import EXACT_BELOW

    check_number("--images", images, min=1, max=MAX_IMAGES, integer=True, hint="photos to embed, e.g. 2000000")
    images = int(images)
    if device not in DEVICES:
        raise VrecError(f"Unknown --device {device!r}; use cpu or cuda.")
    if price_per_hour is not None:
        check_number("--price-per-hour", price_per_hour, min=0, max=MAX_PRICE_PER_HOUR,
                     hint="what an hour of the machine costs, e.g. 0.5")
    if new_per_week is not None:
        check_number("--new-per-week", new_per_week, min=0, max=1, hint="a share of the catalog, e.g. 0.02 for 2%")
    check_number("--m", m, min=2, max=100, integer=True)
    names = list(dict.fromkeys(resolve(x).name for x in models)) or ["siglip", "cnn"]
    est = CostEstimate(images, device, precision, price_per_hour, new_per_week, [])
    money = (lambda hours: hours * price_per_hour) if price_per_hour is not None else (lambda hours: None)
    price_src = f"hours x {price_per_hour:g} per hour (--price-per-hour)" if price_per_hour is not None else \
        "give --price-per-hour"
    rows, bench_src = _search_rows(benchmarks)
    for name in names:
        entry = resolve(name)
        rate = throughput(name, device, precision, store, calibrate_photos, recalibrate, benchmarks, est.notes)
        mc = ModelCost(name, entry.dim, rate)
        secs = images / rate.images_per_second
        rate_src = rate.source
        mc.figures += [
            Figure("throughput", rate.images_per_second, "images/s", rate_src),
            Figure("embed time", secs / 3600, "hours", f"{images:,} images / {rate_text(rate.images_per_second)}"),
            Figure("embed cost", money(secs / 3600), "money", price_src),
            Figure("vectors float32", images * entry.dim * 4, "bytes", f"{images:,} x {entry.dim} dims x 4 bytes "
                   "(the store keeps float32)"),
            Figure("vectors float16", images * entry.dim * 2, "bytes", f"{images:,} x {entry.dim} dims x 2 bytes"),
        ]
        idx = hnsw_bytes(images, entry.dim, m)
        mc.figures.append(Figure("index size", idx, "bytes", f"hnswlib's layout at M={m}: per item 4*dim + 8*M + 20 "
                                 "bytes plus upper levels (BENCHMARKS.json's measured sizes agree within 1%)"))
        mc.figures.append(Figure("index RAM to serve", idx, "bytes", "hnswlib keeps the whole index in memory"))
        if rows:
            r = _nearest(rows, images)  # memory does not depend on ef_construction
            ram = r["index_peak_rss_mb"] * 1e6 * idx / max(1.0, r["index_mb"] * 1e6)
            mc.figures.append(Figure("index RAM to build", ram, "bytes",
                                     f"{bench_src}: {r['n']:,} x {r['dim']}-d peaked at {r['index_peak_rss_mb']:,.0f} MB "
                                     f"for a {r['index_mb']:,.0f} MB index; scaled to this index"))
            # build time does: scale from a build at vrec index's default ef_construction when there is one
            b = _nearest([x for x in rows if x.get("ef_construction") == DEFAULT_EF_CONSTRUCTION] or rows, images)
            build = b["build_s"] * (images * math.log(max(images, 2))) / (b["n"] * math.log(b["n"])) * entry.dim / b["dim"]
            mc.figures.append(Figure("index build time", build / 3600, "hours",
                                     f"{bench_src}: {b['n']:,} x {b['dim']}-d built in {b['build_s']:.1f} s "
                                     f"(ef_construction {b['ef_construction']}); scaled by n log n and dim"))
        else:
            mc.figures.append(Figure("index RAM to build", idx + images * entry.dim * 4, "bytes",
                                     "no benchmark file: index plus every vector read once (an upper bound)"))
            mc.figures.append(Figure("index build time", None, "hours", "no BENCHMARKS.json to scale from; run "
                                     "'vrec index --stats' on a sample"))
        if new_per_week:
            weekly = math.ceil(images * new_per_week)
            wsecs = weekly / rate.images_per_second
            build = mc.get("index build time").value
            mc.figures += [
                Figure("new images per week", weekly, "images", f"{images:,} x {new_per_week:g} (--new-per-week)"),
                Figure("weekly embed time", wsecs / 3600, "hours", f"{weekly:,} new images / "
                       f"{rate_text(rate.images_per_second)} (embed is incremental: only new photos)"),
                Figure("weekly index update", None if build is None else build * new_per_week, "hours",
                       "the same share of an index build (new items are added, not rebuilt)"),
                Figure("weekly cost", money(wsecs / 3600), "money", price_src + " (embedding)"),
            ]
        est.models.append(mc)
    if images < EXACT_BELOW:
        est.notes.append(f"below {EXACT_BELOW:,} items vrec searches exactly (no index needed); the index figures "
                         "apply once the catalog grows past that")
    if device == "cpu" and any(x.rate.source.startswith("calibrated") for x in est.models):
        est.notes.append("CPU rates are this machine's; a machine with more cores (or --device cuda with GPU "
                         "benchmarks) changes the time, not the storage")
    return est


def to_dict(est: CostEstimate) -> dict:
    return json_safe({"images": est.images, "device": est.device, "precision": est.precision,
                      "price_per_hour": est.price_per_hour, "new_per_week": est.new_per_week,
                      "models": [{"model": mc.model, "dim": mc.dim, "images_per_second": mc.rate.images_per_second,
                                  "rate_reused": mc.rate.reused,
                                  "figures": [{"what": f.what, "value": f.value, "unit": f.unit, "source": f.source}
                                              for f in mc.figures]} for mc in est.models],
                      "notes": est.notes})


def rate_text(v: float) -> str:
    return f"{v:,.0f} images/s" if v >= 100 else f"{v:.1f} images/s" if v >= 10 else f"{v:.2f} images/s"


def human(f: Figure) -> str:
    """A figure as a person reads it: 3.2 images/s, 1.4 h (84 min), 2.30 GB, 12.40."""
    v = f.value
    if v is None or v != v:
        return "—"
    if f.unit == "bytes":
        for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if v >= scale:
                return f"{v / scale:,.2f} {unit}"
        return f"{v:,.0f} B"
    if f.unit == "hours":
        if v >= 48:
            return f"{v:,.1f} h ({v / 24:,.1f} days)"
        if v >= 1:
            return f"{v:,.2f} h"
        return f"{v * 60:,.1f} min" if v * 60 >= 1 else f"{v * 3600:,.1f} s"
    if f.unit == "money":
        return f"{v:,.2f}"
    if f.unit == "images/s":
        return rate_text(v)
    if f.unit == "images":
        return f"{v:,.0f}"
    return f"{v:g} {f.unit}"
