"""Embedding throughput: `vrec embed` end to end against the bare model and a naive loop.

`embed` = `vrec embed` end to end (model loading excluded); `bare` = the model alone on already
decoded tensors, same batch and threads; `naive` = one image at a time, decoded in full on the main
thread. Used on the CPU (section "Embedding throughput") and per precision on a GPU (bench/gpu.py).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from common import log


def folder_pixels(name: str, folder: Path, refs) -> np.ndarray:
    """The photos decoded and preprocessed for a model, as one uint8 array (the bare model's input)."""
    from vrec.ingest.catalog import decode_image
    from vrec.models.preprocess import to_pixels
    from vrec.models.registry import resolve

    spec = resolve(name).preprocess
    return np.stack([to_pixels(decode_image((folder / r.path).read_bytes()), spec) for r in refs])


def encode_all(enc, pixels: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([enc.encode_pixels(pixels[i:i + batch]) for i in range(0, len(pixels), batch)])


class ModelClock:
    """Adds up the time spent inside the model's forward pass while it is installed: the share of
    an embed run's wall time that the model was working, measured within that one run (so no
    drift between runs can touch it)."""

    def __enter__(self):
        from vrec.models.encoder_base import Encoder

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
        from vrec.models.encoder_base import Encoder

        Encoder.encode_pixels = self.original


def measure(name: str, weights: Path, folders: dict, batch: int, tmp: Path, repeats: int,
            device: str = "cpu", precision: str = "fp32") -> list[dict]:
    """End-to-end `vrec embed` against the bare model, in ``repeats`` back-to-back pairs, per folder.

    On a shared VM the speed of both sides drifts by +-15% over minutes (other tenants), far
    more than the pipeline's own overhead. Each pair runs both sides within seconds of each
    other, so the drift mostly cancels in the pair's ratio; the median over pairs discards the
    pair that a burst of outside load hit on one side only.
    """
    from vrec.models.encoders import create_encoder

    enc = create_encoder(name, weights=weights, device=device, precision=precision)
    return [_folder_row(enc, name, weights, label, folder, batch, tmp, repeats, device, precision)
            for label, folder in folders.items()]


def _folder_row(enc, name: str, weights: Path, label: str, folder: Path, batch: int, tmp: Path, repeats: int,
                device: str, precision: str) -> dict:
    import torch

    from vrec.ingest.catalog import find_images
    from vrec.ingest.embed import embed

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
    naive = _naive_rate(enc, folder, refs)
    ratios = [e / b for e, b in zip(e2e, bare)]
    log(f"  {name} {precision} {label}: bare {_runs(bare)} img/s, embed {_runs(e2e)} -> median {np.median(ratios):.2f} "
        f"of bare ({min(ratios):.2f}-{max(ratios):.2f}); model busy {np.median(busy):.0%} of the run; naive {naive:.2f}")
    return {"model": name, "photos": label, "images": len(refs), "batch": batch, "device": device,
            "precision": precision, "torch_threads": torch.get_num_threads(), "pairs": repeats, "bare_runs": bare,
            "embed_runs": e2e, "bare_img_s": float(np.median(bare)), "embed_img_s": float(np.median(e2e)),
            "naive_img_s": naive, "ratio_embed_vs_bare": float(np.median(ratios)), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "ratio_embed_vs_naive": float(np.median(e2e)) / naive,
            "model_busy": float(np.median(busy))}


def _naive_rate(enc, folder: Path, refs) -> float:
    """Images/s one image at a time, decoded in full on the main thread."""
    from vrec.ingest.catalog import decode_image

    n_naive = min(len(refs), 64, max(8, len(refs) // 4))
    t0 = time.perf_counter()
    for r in refs[:n_naive]:
        img = decode_image((folder / r.path).read_bytes())
        enc.encode_images([img])
    return n_naive / (time.perf_counter() - t0)


def _runs(rates: list[float]) -> str:
    return "/".join(f"{r:.2f}" for r in rates)


# --- report -----------------------------------------------------------------------------------

TABLE_HEAD = ["| model | precision | photos | images | batch | torch threads | pairs | bare img/s | embed img/s | "
              "naive img/s | embed / bare | model busy | embed / naive |",
              "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]


def table(rows: list[dict]) -> list[str]:
    """The embed / bare / naive table (also the GPU section's)."""
    return TABLE_HEAD + [
        f"| {r['model']} | {r['precision']} | {r['photos']} | {r['images']} | {r['batch']} | {r['torch_threads']} | "
        f"{r['pairs']} | {r['bare_img_s']:.2f} | {r['embed_img_s']:.2f} | {r['naive_img_s']:.2f} | "
        f"**{r['ratio_embed_vs_bare']:.2f}** ({r['ratio_min']:.2f}–{r['ratio_max']:.2f}) | {r['model_busy']:.0%} | "
        f"{r['ratio_embed_vs_naive']:.2f} |" for r in rows]


def markdown(rows: list[dict]) -> list[str]:
    return ["## Embedding throughput", "",
            "`embed` = `vrec embed` end to end (read, decode, preprocess in a thread pool, encode, write the store; "
            "model loading excluded); `bare` = the model alone on already-decoded tensors, same batch and threads; "
            "`naive` = one image at a time, decoded in full on the main thread. Random weights (speed does not depend "
            "on their values). Both sides run back to back in pairs, and embed / bare is the median of the pairs' "
            "ratios (range in brackets): on a shared VM speed drifts by ±15% over minutes, more than the pipeline's "
            "own overhead, and pairing cancels most of it. `model busy` = the share of an embed run's wall time "
            "spent inside the model's forward pass, measured within each run (immune to drift; it leaves out any "
            "slowing of the model by the decode threads, which embed / bare includes). **Target: embed/bare ≥ 0.9 "
            "on CPU.**", ""] + table(rows)
