"""Precision: `--precision int8` (dynamic quantisation) against fp32 on the CPU, speed and
fidelity; and the fidelity of fp16 and bf16, computed on the CPU on a few photos (their speed
belongs to GPUs: on this CPU they are several times slower than fp32, which is why vrec offers
them on GPUs only; bench/gpu.py measures it)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from embed_throughput import encode_all, folder_pixels
from inputs import offline_tokenizer

TEXTS = ["a red leather handbag", "minimalist white sneakers", "a floral summer dress"]


def fidelity(a: np.ndarray, b: np.ndarray) -> dict:
    """How far vectors b (a cheaper precision) are from a (fp32) for the same pictures: cosine per
    picture, and the share of each picture's 10 nearest neighbours that both agree on."""
    cos = (a * b).sum(1)
    k = min(10, len(a) - 1)
    na = np.argsort(-(a @ a.T), 1)[:, 1:k + 1]
    nb = np.argsort(-(b @ b.T), 1)[:, 1:k + 1]
    overlap = np.mean([len(set(x) & set(y)) / k for x, y in zip(na, nb)])
    return {"cos_min": float(cos.min()), "cos_mean": float(cos.mean()), "top10_overlap": float(overlap)}


def _speed(enc, pixels: np.ndarray, batch: int) -> tuple[float, np.ndarray, float]:
    """Images/s and the vectors of ``pixels``, and ms per text query (one text at a time)."""
    enc.encode_pixels(pixels[:2])
    t0 = time.perf_counter()
    vecs = encode_all(enc, pixels, batch)
    rate = len(pixels) / (time.perf_counter() - t0)
    enc.encode_texts(TEXTS[:1])
    t0 = time.perf_counter()
    for t in TEXTS:
        enc.encode_texts([t])
    return rate, vecs, (time.perf_counter() - t0) / len(TEXTS) * 1000


def measure(name: str, weights: Path, folder: Path, batch: int, half_images: int) -> dict:
    """int8 against fp32 on every photo of ``folder``; bf16 and fp16 against fp32 on the first
    ``half_images``."""
    from vrec.ingest.catalog import find_images
    from vrec.models.encoders import _apply_precision, create_encoder

    offline_tokenizer()
    fp32 = create_encoder(name, weights=weights, device="cpu")
    int8 = create_encoder(name, weights=weights, device="cpu", precision="int8")
    refs = find_images(folder)
    pixels = folder_pixels(name, folder, refs)
    out = {tag: _speed(enc, pixels, batch) for tag, enc in (("fp32", fp32), ("int8", int8))}
    half = []
    for tag in ("bf16", "fp16"):
        enc = create_encoder(name, weights=weights, device="cpu")
        _apply_precision(enc, tag)  # what --precision does on a GPU, here on the CPU
        enc.precision = tag
        vecs = enc.encode_pixels(pixels[:half_images])
        half.append({"precision": tag, "images": half_images, **fidelity(out["fp32"][1][:half_images], vecs)})
        del enc
    (fp32_rate, fp32_vecs, fp32_ms), (int8_rate, int8_vecs, int8_ms) = out["fp32"], out["int8"]
    return {"model": name, "images": len(refs), "fp32_img_s": fp32_rate, "int8_img_s": int8_rate,
            "speedup": int8_rate / fp32_rate, **fidelity(fp32_vecs, int8_vecs),
            "fp32_text_ms": fp32_ms, "int8_text_ms": int8_ms, "half": half}


def markdown(p: dict) -> list[str]:
    passes = p["cos_min"] >= 0.99
    return (["", "## Precision", "",
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
            + [f"| {h['precision']} | {h['images']} | {h['cos_min']:.5f} / {h['cos_mean']:.5f} | {h['top10_overlap']:.2f} |"
               for h in p.get("half", [])])
