"""GPU: `vrec embed` end to end against the bare model per precision, on enough photos to keep
the GPU busy for seconds, and the fidelity of fp16/bf16 vectors to fp32 ones. Here decoding rather
than the model is expected to set the pace (see the decoding table for the host).

``device="cpu"`` runs the same code on a few photos, fp32 only: a smoke run of this module.
"""
from __future__ import annotations

from pathlib import Path

import embed_throughput
from common import log
from embed_throughput import encode_all, folder_pixels
from inputs import photo_folders
from precision import fidelity


def measure(weights: dict, tmp: Path, quick: bool, device: str) -> dict:
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
            out["embed"] += embed_throughput.measure(name, weights[name], folders, batch, tmp, repeats=2, device=device,
                                                     precision=p)
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
            log(f"  {name} {p} vs fp32: " + ", ".join(f"{k} {v:.4f}" for k, v in out["fidelity"][-1].items()
                                                       if k.startswith(("cos", "top"))))
    return out


def markdown(g: dict) -> list[str]:
    return (["## GPU", "",
             f"`vrec embed --device {g['embed'][0]['device']}` end to end against the bare model as above, per precision "
             "(one decode thread per host core); then the fidelity of the cheaper precisions to fp32 vectors of the same "
             "photos (random weights: indicative; re-check with real ones). vrec's bar for a precision: cosine ≥ 0.99.", ""]
            + embed_throughput.table(g["embed"])
            + ["", "| model | precision | images | cosine to fp32 (min / mean) | top-10 neighbour overlap |",
               "| --- | --- | ---: | ---: | ---: |"]
            + [f"| {f['model']} | {f['precision']} | {f['images']} | {f['cos_min']:.4f} / {f['cos_mean']:.4f} | "
               f"{f['top10_overlap']:.2f} |" for f in g["fidelity"]] + [""])
