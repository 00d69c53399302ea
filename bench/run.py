"""vrec benchmarks: measure in one run, side by side, and write BENCHMARKS.md.

    python bench/run.py            # full run (about 15 minutes on 2 cores)
    python bench/run.py --quick    # smaller sizes (under 3 minutes)

Speeds are reported as ratios measured in the same run (timings on shared machines are noisy;
ratios much less so). Random weights are used for the real architectures (ViT-B-16-SigLIP,
ResNet-50): speed does not depend on the weight values. Nothing here is part of `make test`.

The document is rewritten whole, except the sections that bench/cold_query.py and
bench/serve_bench.py keep in it between HTML comment markers: those are carried over, before the
notes (bench/sections.py).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FASHION = ROOT.parent / "shared" / "datasets" / "fashion-sample" / "images"
sys.path.insert(0, str(ROOT))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --- inputs -----------------------------------------------------------------------------------

def photo_folders(tmp: Path, n_small: int, n_large: int, repeat: int = 1) -> dict[str, Path]:
    """Real JPEGs (the shared fashion sample, else the demo photos in sample_catalog/) and studio-size upscales;
    ``repeat`` links each file that many times (for a GPU, which needs thousands)."""
    from PIL import Image

    src = sorted(FASHION.glob("*.jpg")) if FASHION.is_dir() else sorted((ROOT / "sample_catalog").rglob("*.jpg"))
    small, large = tmp / "small", tmp / "large"
    small.mkdir(parents=True)
    large.mkdir()
    for i in range(n_small):
        shutil.copy(src[i % len(src)], small / f"{i:05d}.jpg")
    for i in range(n_large):
        img = Image.open(src[i % len(src)]).convert("RGB")
        scale = 1500 / max(img.size)
        img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC).save(large / f"{i:05d}.jpg", quality=90)
    for folder in (small, large):
        for f in sorted(folder.glob("*.jpg")):
            for r in range(1, repeat):
                os.link(f, f.with_name(f"{f.stem}-{r}.jpg"))
    return {"fashion photos" if FASHION.is_dir() else "sample photos": small, "1500 px photos": large}


def subset(folders: dict[str, Path], n: int) -> dict[str, Path]:
    """The first ``n`` photos of each folder, linked into folders of their own."""
    out = {}
    for label, folder in folders.items():
        sub = folder.with_name(f"{folder.name}-{n}")
        if not sub.exists():
            sub.mkdir()
            for f in sorted(folder.glob("*.jpg"))[:n]:
                os.link(f, sub / f.name)
        out[label] = sub
    return out


def random_weights(name: str, tmp: Path) -> Path:
    """A randomly initialised checkpoint of a real architecture, saved as safetensors."""
    import torch
    from safetensors.torch import save_file

    from vrec.models.encoders import resolve

    entry = resolve(name)
    torch.manual_seed(0)
    if entry.family == "open_clip":
        import open_clip

        model = open_clip.create_model(entry.arch, pretrained=None)
    else:
        import timm

        model = timm.create_model(entry.arch, pretrained=False)
    path = tmp / f"{name}-random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


# --- embedding --------------------------------------------------------------------------------

def folder_pixels(name: str, folder: Path, refs) -> np.ndarray:
    """The photos decoded and preprocessed for a model, as one uint8 array (the bare model's input)."""
    from vrec.ingest.catalog import decode_image
    from vrec.models.encoders import resolve
    from vrec.models.preprocess import to_pixels

    spec = resolve(name).preprocess
    return np.stack([to_pixels(decode_image((folder / r.path).read_bytes()), spec) for r in refs])


def encode_all(enc, pixels: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([enc.encode_pixels(pixels[i:i + batch]) for i in range(0, len(pixels), batch)])


def bench_embed(name: str, weights: Path, folders: dict, batch: int, tmp: Path, repeats: int,
                device: str = "cpu", precision: str = "fp32") -> list[dict]:
    """End-to-end `vrec embed` against the bare model, in ``repeats`` back-to-back pairs.

    On a shared VM the speed of both sides drifts by +-15% over minutes (other tenants), far
    more than the pipeline's own overhead. Each pair runs both sides within seconds of each
    other, so the drift mostly cancels in the pair's ratio; the median over pairs discards the
    pair that a burst of outside load hit on one side only.
    """
    import torch

    from vrec.ingest.catalog import decode_image, find_images
    from vrec.ingest.embed import embed
    from vrec.models.encoders import create_encoder

    enc = create_encoder(name, weights=weights, device=device, precision=precision)
    rows = []
    for label, folder in folders.items():
        refs = find_images(folder)
        # bare model: the same pictures, already decoded and preprocessed, same batch and threads
        pixels = folder_pixels(name, folder, refs)
        enc.encode_pixels(pixels[:batch])  # warm-up: the first full batch also pays for growing the heap

        def bare_rate() -> float:
            t0 = time.perf_counter()
            for i in range(0, len(pixels), batch):
                enc.encode_pixels(pixels[i:i + batch])
            return len(pixels) / (time.perf_counter() - t0)

        def embed_rate(r: int) -> float:
            # vrec embed end to end into a new store, model loading excluded (the report times it apart)
            store = tmp / f"store-{name}-{precision}-{label.replace(' ', '-')}-{r}"
            with ModelClock() as clock:
                report = embed(folder, models=[name], store=store, weights={name: str(weights)}, batch_size=batch,
                               device=device, precision=precision)
            busy.append(clock.seconds / report.embed_seconds)
            shutil.rmtree(store)
            return report.images_per_second

        bare, e2e, busy = [], [], []
        for r in range(repeats):  # alternate which side goes first, so a steady drift cancels out too
            if r % 2:
                e2e.append(embed_rate(r))
                bare.append(bare_rate())
            else:
                bare.append(bare_rate())
                e2e.append(embed_rate(r))
        # naive: one image at a time, decoded in full on the main thread
        n_naive = min(len(refs), 64, max(8, len(refs) // 4))
        t0 = time.perf_counter()
        for r in refs[:n_naive]:
            img = decode_image((folder / r.path).read_bytes())
            enc.encode_images([img])
        naive = n_naive / (time.perf_counter() - t0)
        ratios = [e / b for e, b in zip(e2e, bare)]
        rows.append({"model": name, "photos": label, "images": len(refs), "batch": batch, "device": device,
                     "precision": precision, "torch_threads": torch.get_num_threads(), "pairs": repeats, "bare_runs": bare, "embed_runs": e2e,
                     "bare_img_s": float(np.median(bare)), "embed_img_s": float(np.median(e2e)), "naive_img_s": naive,
                     "ratio_embed_vs_bare": float(np.median(ratios)), "ratio_min": min(ratios), "ratio_max": max(ratios),
                     "ratio_embed_vs_naive": float(np.median(e2e)) / naive, "model_busy": float(np.median(busy))})
        log(f"  {name} {precision} {label}: bare {_runs(bare)} img/s, embed {_runs(e2e)} -> median {np.median(ratios):.2f} "
            f"of bare ({min(ratios):.2f}-{max(ratios):.2f}); model busy {np.median(busy):.0%} of the run; naive {naive:.2f}")
    return rows


class ModelClock:
    """Adds up the time spent inside the model's forward pass while it is installed: the share of
    an embed run's wall time that the model was working, measured within that one run (so no
    drift between runs can touch it)."""

    def __enter__(self):
        from vrec.models.encoders import Encoder

        self.seconds, self.original = 0.0, Encoder.encode_pixels

        def timed(enc, pixels):
            t0 = time.perf_counter()
            try:
                return self.original(enc, pixels)
            finally:
                self.seconds += time.perf_counter() - t0

        Encoder.encode_pixels = timed
        return self

    def __exit__(self, *exc):
        from vrec.models.encoders import Encoder

        Encoder.encode_pixels = self.original


def _runs(rates: list[float]) -> str:
    return "/".join(f"{r:.2f}" for r in rates)


def _decode_job(args) -> None:
    from vrec.ingest.pipeline import process_file

    source, ref, specs, min_size = args
    process_file(source, ref, specs, min_size)


def bench_decode(folders: dict, at_least: int) -> list[dict]:
    """Read + decode + preprocess alone (no model), for vrec's default models: one thread, a thread
    per core (what `vrec embed` uses), and a process per core. Processes only pay where the GIL
    limits threads; this table says whether that happens on the machine at hand."""
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    from vrec.ingest.catalog import open_source
    from vrec.models.encoders import DEFAULT_MODELS, resolve

    specs = {m: resolve(m).preprocess for m in DEFAULT_MODELS}
    min_size = max(s.decode_size for s in specs.values())
    cores = os.cpu_count() or 2
    rows = []
    for label, folder in folders.items():
        source = open_source(folder)
        refs = source.refs()
        jobs = [(source, ref, specs, min_size) for ref in refs] * max(1, at_least // len(refs))  # a second or more each
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


ALLOCATOR_PROBE = """
import sys, time
import numpy as np
from vrec.models.encoders import create_encoder, keep_freed_memory
enc = create_encoder(sys.argv[1], weights=sys.argv[2], device="cpu")
px = np.random.default_rng(0).integers(0, 256, (32 + int(sys.argv[3]), 224, 224, 3), dtype=np.uint8)
enc.encode_pixels(px[:32])  # the first full batch grows the heap either way
t0, c0 = time.perf_counter(), __import__("os").times()
for i in range(32, len(px), 32):
    enc.encode_pixels(px[i:i + 32])
t1, c1 = time.perf_counter(), __import__("os").times()
print(keep_freed_memory(), (len(px) - 32) / (t1 - t0), (c1.system - c0.system) / ((c1.user + c1.system) - (c0.user + c0.system)))
"""


def bench_allocator(name: str, weights: Path, images: int, pairs: int) -> dict:
    """The bare model with and without :func:`vrec.models.encoders.keep_freed_memory`, in fresh processes
    (glibc's settings are per process): setting glibc's own MALLOC_TRIM_THRESHOLD_ to its default
    makes vrec leave the allocator alone."""
    runs = {"kept": [], "glibc": []}
    for _ in range(pairs):
        for tag, env in (("kept", {}), ("glibc", {"MALLOC_TRIM_THRESHOLD_": "131072"})):
            out = subprocess.run([sys.executable, "-c", ALLOCATOR_PROBE, name, str(weights), str(images)],
                                 capture_output=True, text=True, check=True, cwd=ROOT, env={**os.environ, **env})
            applied, rate, kernel = out.stdout.split()[-3:]
            if (applied == "True") != (tag == "kept"):
                raise RuntimeError(f"the allocator setting did not take the expected state: {out.stdout}")
            runs[tag].append((float(rate), float(kernel)))
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


def offline_tokenizer() -> None:
    """The real SigLIP tokenizer is on the Hugging Face hub, out of reach here: CLIP's BPE
    tokenizer (bundled with open_clip) stands in, its ids folded into SigLIP's vocabulary.
    Nothing heavy is imported until a tokenizer is asked for."""
    import vrec.models.encoders as encoders

    def stand_in(arch):
        import open_clip

        bpe = open_clip.SimpleTokenizer(context_length=64)
        return lambda texts: bpe(texts) % 32000

    encoders._hf_tokenizer = stand_in


def bench_precision(name: str, weights: Path, folder: Path, batch: int, half_images: int) -> dict:
    """int8 dynamic quantisation vs fp32 on the CPU: speed and fidelity. Also the fidelity of fp16
    and bf16, computed on the CPU on a few photos (their speed belongs to GPUs: on this CPU they
    are several times slower than fp32, which is why vrec offers them on GPUs only)."""

    from vrec.ingest.catalog import find_images
    from vrec.models.encoders import _apply_precision, create_encoder

    offline_tokenizer()
    fp32 = create_encoder(name, weights=weights, device="cpu")
    int8 = create_encoder(name, weights=weights, device="cpu", precision="int8")
    refs = find_images(folder)
    pixels = folder_pixels(name, folder, refs)
    out = {}
    for tag, enc in (("fp32", fp32), ("int8", int8)):
        enc.encode_pixels(pixels[:2])
        t0 = time.perf_counter()
        vecs = encode_all(enc, pixels, batch)
        out[tag] = (len(pixels) / (time.perf_counter() - t0), vecs)
        texts = ["a red leather handbag", "minimalist white sneakers", "a floral summer dress"]
        enc.encode_texts(texts[:1])
        t0 = time.perf_counter()
        for t in texts:
            enc.encode_texts([t])
        out[tag + "_text_ms"] = (time.perf_counter() - t0) / len(texts) * 1000
    half = []
    for tag in ("bf16", "fp16"):
        enc = create_encoder(name, weights=weights, device="cpu")
        _apply_precision(enc, tag)  # what --precision does on a GPU, here on the CPU
        enc.precision = tag
        vecs = enc.encode_pixels(pixels[:half_images])
        half.append({"precision": tag, "images": half_images, **fidelity(out["fp32"][1][:half_images], vecs)})
        del enc
    return {"model": name, "images": len(refs), "fp32_img_s": out["fp32"][0], "int8_img_s": out["int8"][0],
            "speedup": out["int8"][0] / out["fp32"][0], **fidelity(out["fp32"][1], out["int8"][1]),
            "fp32_text_ms": out["fp32_text_ms"], "int8_text_ms": out["int8_text_ms"], "half": half}


def fidelity(a: np.ndarray, b: np.ndarray) -> dict:
    """How far vectors b (a cheaper precision) are from a (fp32) for the same pictures: cosine per
    picture, and the share of each picture's 10 nearest neighbours that both agree on."""
    cos = (a * b).sum(1)
    k = min(10, len(a) - 1)
    na = np.argsort(-(a @ a.T), 1)[:, 1:k + 1]
    nb = np.argsort(-(b @ b.T), 1)[:, 1:k + 1]
    overlap = np.mean([len(set(x) & set(y)) / k for x, y in zip(na, nb)])
    return {"cos_min": float(cos.min()), "cos_mean": float(cos.mean()), "top10_overlap": float(overlap)}


def bench_gpu(weights: dict, tmp: Path, quick: bool, device: str) -> dict:
    """On a GPU: `vrec embed` end to end vs the bare model per precision, on enough photos to keep
    the GPU busy for seconds, and the fidelity of fp16/bf16 vectors to fp32 ones. Here decoding
    rather than the model is expected to set the pace (see the decoding table for the host)."""
    from vrec.ingest.catalog import find_images
    from vrec.models.encoders import create_encoder, default_batch_size

    if device == "cpu":  # a smoke run of the same code
        folders = photo_folders(tmp / "gpu-photos", n_small=16, n_large=8, repeat=2)
    else:
        folders = photo_folders(tmp / "gpu-photos", n_small=512, n_large=64, repeat=2 if quick else 8)
    batch = default_batch_size(device)
    precisions = ("fp32",) if device == "cpu" else ("fp32", "fp16", "bf16")
    out = {"embed": [], "fidelity": []}
    for name in ("siglip", "cnn"):
        for p in precisions[:2]:
            out["embed"] += bench_embed(name, weights[name], folders, batch, tmp, repeats=2, device=device, precision=p)
        folder = next(iter(folders.values()))
        refs = find_images(folder)[:512]
        pixels = folder_pixels(name, folder, refs)  # once: every precision sees the same input
        vecs = {}
        for p in precisions:
            enc = create_encoder(name, weights=weights[name], device=device, precision=p)
            vecs[p] = encode_all(enc, pixels, batch)
            del enc
        for p in precisions[1:]:
            out["fidelity"].append({"model": name, "precision": p, "images": len(refs), **fidelity(vecs["fp32"], vecs[p])})
            log(f"  {name} {p} vs fp32: " + ", ".join(f"{k} {v:.4f}" for k, v in out["fidelity"][-1].items() if k.startswith(("cos", "top"))))
    return out


def peak_rss_of_embed(folder: Path, store: Path) -> float:
    """Peak resident memory (MB) of a `vrec embed` process: VmHWM, its own high-water mark
    (ru_maxrss would include the parent's size at fork on Linux)."""
    code = ("from vrec.ingest.embed import embed\n"
            f"embed({str(folder)!r}, models=['tiny-cnn'], store={str(store)!r}, batch_size=32)\n"
            "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return int(out.strip().splitlines()[-1]) / 1024


def bench_memory(tmp: Path, base: Path, copies: tuple[int, ...]) -> list[dict]:
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


# --- search -----------------------------------------------------------------------------------

def clustered(n: int, dim: int, seed: int, centres: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors with the structure of real embeddings: clusters on a low-dimensional manifold
    (32 latent dimensions projected into ``dim``), plus a little isotropic noise. Isotropic
    clusters in 768 dimensions make every neighbour a near tie, which no real catalog does."""
    rng = np.random.default_rng(seed)
    latent = 32
    if centres is None:
        basis = np.random.default_rng(12345).normal(size=(latent, dim)).astype(np.float32) / np.sqrt(latent)
        centres = (rng.normal(size=(max(10, n // 1000), latent)).astype(np.float32), basis)
    mids, basis = centres
    z = mids[rng.integers(0, len(mids), n)] + 0.5 * rng.normal(size=(n, latent)).astype(np.float32)
    v = z @ basis + 0.05 * rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True), centres


def bench_search(sizes: list[int], dim: int, tmp: Path, queries: int = 200) -> list[dict]:
    rows = []
    for n in sizes:
        vectors, centres = clustered(n, dim, seed=n)
        held_out, _ = clustered(queries, dim, seed=n + 1, centres=centres)
        rows.append(search_row(vectors, held_out, tmp / f"search-{n}", "synthetic, clustered",
                               ef_construction=200 if n <= 200_000 else 64, append=n == max(sizes)))
    return rows


def bench_search_real(tmp: Path, held_out: int = 100) -> list[dict]:
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
    """`vrec index` over ``vectors`` (in a process of its own, so its peak memory is its own), then
    recall@10 and latency of single held-out queries against exact search."""
    import pandas as pd

    import vrec.store.index as ix
    from vrec.store.store import Store

    n, dim = vectors.shape
    st = Store(path)
    st.create(path.parent)
    cfg = {"name": "bench", "family": "bench", "architecture": source, "weights": "none", "dim": dim, "preprocess": {}}
    with st.model_for_writing("bench").writer(cfg) as w:
        for start in range(0, n, 250_000):
            m = min(n, start + 250_000) - start
            items = pd.DataFrame({"id": [f"i{j}" for j in range(start, start + m)], "path": "", "hash": "",
                                  "size": 0, "mtime": 0, "width": 0, "height": 0})
            w.add(items, vectors[start:start + m])
            w.flush()
    del vectors
    code = (f"from vrec.store.store import Store\nfrom vrec.index import build_index, peak_rss_mb\n"
            f"s = build_index(Store({str(st.path)!r}).model('bench'), ef_construction={ef_construction})\n"
            f"print(s.build_seconds, peak_rss_mb())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    build, index_rss = (float(x) for x in out.split()[-2:])
    ms = st.model("bench")
    s = ix.stats(ms)
    index = ix.load_index(ms)
    lat = {"hnsw": [], "exact": []}
    found = {"hnsw": [], "exact": []}
    vec = ms.vectors()
    for q in held_out:
        t = time.perf_counter()
        labels, _ = index.knn_query(q[None], k=10)
        lat["hnsw"].append(time.perf_counter() - t)
        found["hnsw"].append(labels[0])
        t = time.perf_counter()
        pos, _ = ix.exact_topk(vec, q[None], 10)
        lat["exact"].append(time.perf_counter() - t)
        found["exact"].append(pos[0])
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found["hnsw"], found["exact"])])
    ms_of = lambda side, p: 1000 * float(np.percentile(lat[side], p))  # noqa: E731
    row = {"source": source, "n": n, "dim": dim, "m": s.m, "ef_construction": ef_construction, "ef": s.ef, "build_s": build,
           "index_mb": s.size_bytes / 1e6, "recall_at_10_tuning": s.recall_at_10, "recall_at_10_heldout": float(recall),
           "hnsw_p50_ms": ms_of("hnsw", 50), "hnsw_p99_ms": ms_of("hnsw", 99),
           "exact_p50_ms": ms_of("exact", 50), "exact_p99_ms": ms_of("exact", 99), "index_peak_rss_mb": index_rss}
    if append:
        row.update(bench_append(st, ms, cfg, 10_000, dim))
    log(f"  {source} {n:>9,} x {dim}: build {build:.1f} s, ef {s.ef}, recall@10 {recall:.3f}, "
        f"HNSW p50 {row['hnsw_p50_ms']:.2f} ms vs exact {row['exact_p50_ms']:.2f} ms")
    del vec, index, ms
    shutil.rmtree(path, ignore_errors=True)
    return row


def bench_append(st, ms, cfg: dict, n_new: int, dim: int) -> dict:
    """Adding n_new items to a large store: seconds and bytes written (only the new shard)."""
    import pandas as pd

    files = {f: f.stat().st_size for f in ms.shard_dir.iterdir()}
    vectors, _ = clustered(n_new, dim, seed=99)
    items = pd.DataFrame({"id": [f"new{j}" for j in range(n_new)], "path": "", "hash": "", "size": 0, "mtime": 0,
                          "width": 0, "height": 0})
    t0 = time.perf_counter()
    with ms.writer(cfg) as w:
        w.add(items, vectors)
    seconds = time.perf_counter() - t0
    written = sum(f.stat().st_size for f in ms.shard_dir.iterdir() if f not in files)
    written += ms.manifest_path.stat().st_size
    total = sum(files.values()) + written
    log(f"  append {n_new:,} to {len(ms):,}: {seconds:.2f} s, {written / 1e6:.1f} MB written of {total / 1e6:.0f} MB")
    return {"append_items": n_new, "append_seconds": seconds, "append_mb": written / 1e6, "store_mb": total / 1e6}


def bench_ray(folder: Path, batch: int, tmp: Path) -> list[dict]:
    """Ray engine vs local engine images/s on this machine: the fixed cost of starting Ray Data and
    its actors (EfficientNet-Lite0 is light, so that cost shows rather than hides behind the model)."""
    try:
        import ray
    except ImportError:
        return []
    from vrec.ingest.embed import embed

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        name = "effnet-lite0"
        local = embed(folder, models=[name], store=tmp / f"rl-{name}", batch_size=batch, device="cpu")
        remote = embed(folder, models=[name], store=tmp / f"rr-{name}", batch_size=batch, engine="ray")
        log(f"  {name}: local {local.images_per_second:.2f} img/s, ray {remote.images_per_second:.2f} img/s")
        return [{"model": name, "images": local.models[0].embedded, "local_img_s": local.images_per_second,
                 "ray_img_s": remote.images_per_second, "ratio": remote.images_per_second / local.images_per_second}]
    finally:
        ray.shutdown()


# The phases of the query's main thread; the text tower's own phases run alongside "store".
COLD_MAIN_THREAD = ("CLI import", "store", "waiting for the text tower", "search")


def bench_cold_query(weights: Path, tmp: Path, n: int = 10_000, runs_wanted: int = 3) -> dict:
    """Wall time of a `vrec search-text` process on an n-item store with the text tower on torch,
    split into phases.

    VREC_TEXT_ONNX=0: this measures torch, the path of a model with no ONNX export yet (or with
    onnxruntime absent). On the ONNX path the first query would export the text tower into the
    user's cache (seconds, and hundreds of MB left behind for random weights) and the stand-in
    tokenizer below could not be exported; bench/cold_query.py measures the ONNX path against
    torch, with a real tokenizer, in a section of its own."""
    import pandas as pd

    from vrec.models.encoders import expected_config, resolve
    from vrec.store.store import Store

    st = Store(tmp / "cold")
    st.create(tmp)
    vectors, _ = clustered(n, 768, seed=7)
    items = pd.DataFrame({"id": [f"i{j}" for j in range(n)], "path": [f"i{j}.jpg" for j in range(n)], "hash": "",
                          "size": 0, "mtime": 0, "width": 0, "height": 0})
    with st.model_for_writing("siglip").writer(expected_config(resolve("siglip"), weights)) as w:
        w.add(items, vectors)
    # The process does what `vrec search-text --timings` does. The real SigLIP tokenizer lives on the
    # Hugging Face hub, which this machine cannot reach: CLIP's bundled BPE tokenizer stands in for it.
    script = f"""
import time
t0 = time.perf_counter()
import typer, rich  # what the CLI imports before any command runs
from vrec.cli import app  # noqa: F401
t1 = time.perf_counter()
import sys
sys.path.insert(0, {str(ROOT / "bench")!r})
from run import offline_tokenizer
offline_tokenizer()
from vrec.search.query import search_text
r = search_text("red leather bag", model="siglip", weights={str(weights)!r}, store={str(st.path)!r}, device="cpu")
print("PHASES", {{"CLI import": (t1 - t0) * 1000, **{{k: v * 1000 for k, v in r.timings.items()}}}})
"""
    runs = []
    for _ in range(runs_wanted):
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "HF_HUB_OFFLINE": "1", "VREC_TEXT_ONNX": "0"})
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(p.stderr)
        phases = eval(next(line for line in p.stdout.splitlines() if line.startswith("PHASES"))[len("PHASES "):])
        phases["process wall"] = wall * 1000
        runs.append(phases)
    best = min(runs, key=lambda r: r["process wall"])
    # the text tower's phases overlap the main thread's: only the main thread's add up to the wall time
    best["interpreter start and exit"] = best["process wall"] - sum(best.get(k, 0.0) for k in COLD_MAIN_THREAD)
    log("  cold search-text: " + ", ".join(f"{k} {v:.0f} ms" for k, v in best.items()))
    return best


# --- report -----------------------------------------------------------------------------------

def machine() -> dict:
    import hnswlib  # noqa: F401
    import open_clip
    import timm
    import torch

    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    from importlib.metadata import version

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1), "python": platform.python_version(),
            "torch": torch.__version__, "open_clip": open_clip.__version__, "timm": timm.__version__,
            "hnswlib": version("hnswlib"), "numpy": np.__version__, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}


def write_markdown(results: dict, path: Path) -> None:
    m = results["machine"]
    lines = ["# vrec benchmarks", "",
             f"Written by `{results['command']}` on {results['date']} ({results['seconds']:.0f} s). Regenerate with "
             "`make bench` (full) or `python bench/run.py --quick`.", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, GPU: {m['gpu']}. "
             f"Python {m['python']}, torch {m['torch']}, open_clip {m['open_clip']}, timm {m['timm']}, "
             f"hnswlib {m['hnswlib']}, numpy {m['numpy']}.", ""]
    if "embed" in results:
        lines += _cpu_lines(results)
    if "gpu" in results:
        lines += _gpu_lines(results)
        if "embed" not in results:
            lines += _decode_lines(results)
    lines += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"]]
    # The sections other bench scripts keep between markers in the file (serve_bench.py,
    # cold_query.py) are carried over, before the notes.
    from sections import write_keeping_sections

    write_keeping_sections(path, "\n".join(lines) + "\n")


EMBED_HEAD = ["| model | precision | photos | images | batch | torch threads | pairs | bare img/s | embed img/s | "
              "naive img/s | embed / bare | model busy | embed / naive |",
              "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]


def _embed_rows(rows: list[dict]) -> list[str]:
    return [f"| {r['model']} | {r['precision']} | {r['photos']} | {r['images']} | {r['batch']} | {r['torch_threads']} | "
            f"{r['pairs']} | {r['bare_img_s']:.2f} | {r['embed_img_s']:.2f} | {r['naive_img_s']:.2f} | "
            f"**{r['ratio_embed_vs_bare']:.2f}** ({r['ratio_min']:.2f}–{r['ratio_max']:.2f}) | {r['model_busy']:.0%} | "
            f"{r['ratio_embed_vs_naive']:.2f} |" for r in rows]


def _gpu_lines(results: dict) -> list[str]:
    g = results["gpu"]
    return (["## GPU", "",
             f"`vrec embed --device {g['embed'][0]['device']}` end to end against the bare model as above, per precision "
             "(one decode thread per host core); then the fidelity of the cheaper precisions to fp32 vectors of the same "
             "photos (random weights: indicative; re-check with real ones). vrec's bar for a precision: cosine ≥ 0.99.", ""]
            + EMBED_HEAD + _embed_rows(g["embed"])
            + ["", "| model | precision | images | cosine to fp32 (min / mean) | top-10 neighbour overlap |",
               "| --- | --- | ---: | ---: | ---: |"]
            + [f"| {f['model']} | {f['precision']} | {f['images']} | {f['cos_min']:.4f} / {f['cos_mean']:.4f} | "
               f"{f['top10_overlap']:.2f} |" for f in g["fidelity"]] + [""])


def _decode_lines(results: dict) -> list[str]:
    return (["", "### Decoding: threads or processes", "",
             "Read + decode + preprocess alone (no model) for vrec's default models, in images/s. `vrec embed` decodes "
             "in one thread per core (Pillow releases the GIL while decoding and resizing); processes would only pay "
             "where the GIL held threads back, which shows here as processes beating threads.", "",
             "| photos | images | workers | 1 thread | threads | processes |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
            + [f"| {d['photos']} | {d['images']} | {d['workers']} | {d['one_thread_img_s']:.0f} | {d['threads_img_s']:.0f} | "
               f"{d['processes_img_s']:.0f} |" for d in results["decode"]])


def _cpu_lines(results: dict) -> list[str]:
    lines = ["## Embedding throughput", "",
             "`embed` = `vrec embed` end to end (read, decode, preprocess in a thread pool, encode, write the store; "
             "model loading excluded); `bare` = the model alone on already-decoded tensors, same batch and threads; "
             "`naive` = one image at a time, decoded in full on the main thread. Random weights (speed does not depend "
             "on their values). Both sides run back to back in pairs, and embed / bare is the median of the pairs' "
             "ratios (range in brackets): on a shared VM speed drifts by ±15% over minutes, more than the pipeline's "
             "own overhead, and pairing cancels most of it. `model busy` = the share of an embed run's wall time "
             "spent inside the model's forward pass, measured within each run (immune to drift; it leaves out any "
             "slowing of the model by the decode threads, which embed / bare includes). **Target: embed/bare ≥ 0.9 "
             "on CPU.**", ""]
    lines += EMBED_HEAD + _embed_rows(results["embed"])
    lines += ["", "### Memory allocator", ""]
    if results.get("allocator"):
        lines += ["The bare model in a fresh process with vrec's allocator setting (`keep_freed_memory`: glibc keeps freed "
                  "memory instead of returning it to the kernel after every batch) and with glibc's defaults. "
                  "Median of back-to-back pairs; the kernel's share is of the process's CPU time.", "",
                  "| model | images | pairs | glibc defaults img/s | vrec img/s | speed-up | kernel share, defaults | "
                  "kernel share, vrec |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {a['model']} | {a['images']} | {a['pairs']} | {a['glibc_img_s']:.2f} | {a['kept_img_s']:.2f} | "
                  f"**{a['speedup']:.2f}×** | {a['glibc_kernel_share']:.0%} | {a['kept_kernel_share']:.0%} |"
                  for a in results["allocator"]]
    else:
        lines.append("Measured by the full run only (`make bench`).")
    lines += _decode_lines(results)
    p = results["precision"]
    passes = p["cos_min"] >= 0.99
    lines += ["", "## Precision", "",
              f"`--precision int8` on the CPU (dynamic quantisation of Linear layers, one scale per output channel) "
              f"against fp32: {p['model']} with random weights, {p['images']} photos. Fidelity is measured against the "
              "fp32 vectors of the same photos (random weights: indicative only; re-check with real weights). "
              "**vrec's bar for a precision: cosine ≥ 0.99 to fp32.**", "",
              "| fp32 img/s | int8 img/s | speed-up | cosine to fp32 (min / mean) | top-10 neighbour overlap | text query fp32 | text query int8 |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
              f"| {p['fp32_img_s']:.2f} | {p['int8_img_s']:.2f} | {p['speedup']:.2f}× | {p['cos_min']:.4f} / {p['cos_mean']:.4f} | "
              f"{p['top10_overlap']:.2f} | {p['fp32_text_ms']:.0f} ms | {p['int8_text_ms']:.0f} ms |", "",
              ("int8 passes the bar in this run; it stays opt-in (fp32 is the default) until checked on real weights."
               if passes else "int8 is below the bar in this run: it must stay opt-in and be re-examined."), "",
              "fp16 and bf16 are offered on GPUs only (on this CPU, without AVX-512/BF16, they run several times slower "
              "than fp32). Their fidelity does not depend on the device much, so it is computed here on the CPU, on a "
              "few photos; their speed needs a GPU (`make bench-gpu`).", "",
              "| precision | images | cosine to fp32 (min / mean) | top-10 neighbour overlap |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {h['precision']} | {h['images']} | {h['cos_min']:.5f} / {h['cos_mean']:.5f} | {h['top10_overlap']:.2f} |"
              for h in p.get("half", [])]
    lines += ["",
              "## Memory while embedding", "",
              "Peak resident memory of a `vrec embed` process (tiny-cnn, so the pipeline rather than the model dominates): "
              "it must stay flat as the catalog grows, since only a few batches of pixels are in flight.", "",
              "| images | peak RSS MB |", "| ---: | ---: |"]
    lines += [f"| {r['images']} | {r['peak_rss_mb']:.0f} |" for r in results["memory"]]
    lines += ["", "## Search", "",
              "Clustered synthetic unit vectors on a 32-dimensional manifold projected into 768 dimensions, plus noise "
              "(isotropic random vectors are useless for recall: every neighbour is a near tie); and real vectors "
              "where the shared fashion sample is present (EfficientNet-Lite0 with its real weights; 100 photos held "
              "out as queries; below 20,000 items vrec searches exactly, so this row checks the index alone). Recall@10 of HNSW at "
              "the `ef` that `vrec index` chose (tuned on catalog samples), measured on held-out queries against exact "
              "search. Latency: one query at a time. **Targets: recall@10 ≥ 0.99; HNSW faster than exact from the size "
              "where vrec switches to it** (20,000 items).", "",
              "| vectors | items | dim | M | ef_construction | ef | build s | index MB | `vrec index` peak RSS MB | recall@10 (tuning) | recall@10 (held-out) | HNSW p50 / p99 ms | exact p50 / p99 ms |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results["search"]:
        lines.append(f"| {r['source']} | {r['n']:,} | {r['dim']} | {r['m']} | {r['ef_construction']} | {r['ef']} | {r['build_s']:.1f} | "
                     f"{r['index_mb']:.0f} | {r['index_peak_rss_mb']:.0f} | {r['recall_at_10_tuning']:.3f} | {r['recall_at_10_heldout']:.3f} | "
                     f"{r['hnsw_p50_ms']:.2f} / {r['hnsw_p99_ms']:.2f} | {r['exact_p50_ms']:.2f} / {r['exact_p99_ms']:.2f} |")
    big = next(r for r in results["search"] if "append_items" in r)
    lines += ["", "## Store growth", "",
              f"Adding {big['append_items']:,} items to the {big['n']:,}-item store: {big['append_seconds']:.2f} s, "
              f"{big['append_mb']:.1f} MB written (a new shard and the manifest) of a {big['store_mb']:.0f} MB store; "
              "no existing shard is rewritten."]
    if results.get("ray"):
        lines += ["", "## Ray engine overhead", "",
                  "`vrec embed --engine ray` on a local Ray with all cores versus the local engine, same photos and batch. "
                  "The Ray figure includes starting Ray Data, its actors and the model inside them: a fixed cost of "
                  "seconds that a catalog of thousands of photos amortises and this handful of photos does not "
                  "(the Ray engine is for machines and clusters with more cores and GPUs).", "",
                  "| model | images | local img/s | ray img/s | ray / local |", "| --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['model']} | {r['images']} | {r['local_img_s']:.2f} | {r['ray_img_s']:.2f} | {r['ratio']:.2f} |"
                  for r in results["ray"]]
    lines += _cold_lines(results["cold"])
    return lines + [""]


def _cold_lines(c: dict) -> list[str]:
    main = [k for k in COLD_MAIN_THREAD if k in c] + ["interpreter start and exit"]
    tower = [k for k in c if k not in main and k != "process wall"]
    return (["", "## Cold text query on torch", "",
             "Wall time of one `vrec search-text` process with the text tower on torch (`VREC_TEXT_ONNX=0`: a model "
             "with no ONNX export yet) on a 10,000-item store of ViT-B-16-SigLIP vectors (768-d), best of several runs, "
             "split into phases as `vrec search-text --timings` reports them. Only the text tower's weights are loaded, "
             "on a second thread while the main thread reads the catalog, so its phases overlap `store`. (The SigLIP "
             "tokenizer is on the Hugging Face hub, out of reach here; CLIP's bundled tokenizer stands in, so tokenizer "
             "loading is not included.) The ONNX text tower that vrec queries with once it is exported is measured "
             "against torch by `bench/cold_query.py`, in its own section.", "",
             "| phase | ms |", "| --- | ---: |", f"| **process wall** | {c['process wall']:.0f} |", "| *main thread* | |"]
            + [f"| {k} | {c[k]:.0f} |" for k in main]
            + ["| *text tower thread (alongside `store`)* | |"] + [f"| {k} | {c[k]:.0f} |" for k in tower])


class Sections:
    """Logs each part of the run as it starts and records how long it took (to keep the run short)."""

    def __init__(self, seconds: dict):
        self.seconds, self.name, self.t0 = seconds, None, time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        if self.name:
            self.seconds[self.name] = round(now - self.t0, 1)
        self.name, self.t0 = name, now
        log(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, under 3 minutes")
    ap.add_argument("--gpu-only", action="store_true", help="only the GPU figures (and host decoding): for a lent GPU")
    ap.add_argument("--device", default=None, help="GPU to measure [default: cuda when there is one]; "
                                                   "cpu with --gpu-only is a smoke run of that code")
    ap.add_argument("--out", default=None, help="[default: BENCHMARKS.md, or BENCHMARKS-gpu.md with --gpu-only]")
    ap.add_argument("--sizes", default=None, help="search sizes, comma-separated")
    args = ap.parse_args()
    t_start = time.perf_counter()
    quick = args.quick
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([10_000, 30_000] if quick else [10_000, 100_000, 1_000_000])
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    command = "python bench/run.py" + (" --quick" if quick else "") + (" --gpu-only" if args.gpu_only else "")
    results = {"command": command, "date": time.strftime("%Y-%m-%d"), "machine": machine(), "notes": []}
    tmp = Path(tempfile.mkdtemp(prefix="vrec-bench-"))
    section = Sections(results.setdefault("section_seconds", {}))
    try:
        section("inputs")
        folders = photo_folders(tmp / "photos", n_small=16 if quick else 64, n_large=8 if quick else 32)
        w = {name: random_weights(name, tmp) for name in ("siglip", "cnn")}
        if not args.gpu_only:
            section("embedding")
            results["embed"] = []
            # SigLIP: more, shorter pairs (one batch each) for the same time, so one burst of outside
            # load moves the median less
            for name, pairs, photos in (("siglip", 1 if quick else 5, subset(folders, 32)), ("cnn", 2 if quick else 6, folders)):
                results["embed"] += bench_embed(name, w[name], photos, batch=32, tmp=tmp, repeats=pairs)
        section("decoding")
        results["decode"] = bench_decode(folders, 200 if quick else 400)
        if device != "cpu" or args.gpu_only:
            section("gpu")
            results["gpu"] = bench_gpu(w, tmp, quick, device)
        if not args.gpu_only:
            cpu_sections(results, section, w, folders, sizes, tmp, quick)
        section("")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["seconds"] = time.perf_counter() - t_start
    if not FASHION.is_dir():
        results["notes"].append("The shared fashion sample was absent: the 146 photos bundled in sample_catalog/ were used instead.")
    if "search" in results:
        results["notes"].append("The 1M-item index is built with ef_construction 64 to fit the run; vrec's default is 200.")
    results["notes"].append("Time per part of this run (s): " + ", ".join(f"{k} {v:.0f}" for k, v in results["section_seconds"].items()) + ".")
    out = Path(args.out or ROOT / ("BENCHMARKS-gpu.md" if args.gpu_only else "BENCHMARKS.md"))
    write_markdown(results, out)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2, default=float))
    log(f"wrote {out} in {results['seconds']:.0f} s")


def cpu_sections(results: dict, section, w: dict, folders: dict, sizes: list[int], tmp: Path, quick: bool) -> None:
    if not quick:  # fresh processes that load the models: too slow for the quick run
        section("allocator")
        results["allocator"] = [bench_allocator("cnn", w["cnn"], 64, 2)]
    section("precision")
    results["precision"] = bench_precision("siglip", w["siglip"], next(iter(subset(folders, 32).values())), batch=32,
                                           half_images=8)
    section("memory")
    base = FASHION if FASHION.is_dir() else ROOT / "sample_catalog"
    results["memory"] = bench_memory(tmp, base, (1, 2) if quick else (1, 5))
    section("search")
    results["search"] = bench_search(sizes, 768, tmp) + bench_search_real(tmp)
    section("ray engine")
    ray_folder = tmp / "ray-photos"
    ray_folder.mkdir()
    for f in sorted(next(iter(folders.values())).glob("*.jpg"))[:16]:
        shutil.copy(f, ray_folder / f.name)
    results["ray"] = bench_ray(ray_folder, 32, tmp)
    section("cold query")
    results["cold"] = bench_cold_query(w["siglip"], tmp, runs_wanted=2 if quick else 3)


if __name__ == "__main__":
    main()
