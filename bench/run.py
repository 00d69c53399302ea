"""vrec benchmarks: measure in one run, side by side, and write BENCHMARKS.md.

    python bench/run.py            # full run (about 15 minutes on 2 cores)
    python bench/run.py --quick    # smaller sizes (under 3 minutes)
    python bench/run.py --gpu-only # on a machine with a CUDA GPU: the GPU figures, BENCHMARKS-gpu.md

Speeds are reported as ratios measured in the same run (timings on shared machines are noisy;
ratios much less so). Random weights are used for the real architectures (ViT-B-16-SigLIP,
ResNet-50): speed does not depend on the weight values. Nothing here is part of `make test`.

Each benchmark is a module of bench/ with a ``measure`` and a ``markdown`` function; this script
only runs them in order and writes the document (and the figures, as JSON beside it). The document
is rewritten whole, except the sections that bench/cold_query.py and bench/serve_bench.py keep in
it between HTML comment markers: those are carried over, before the notes (bench/sections.py).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import allocator
import cold_query
import decoding
import embed_memory
import embed_throughput
import gpu
import inputs
import precision
import ray_engine
import search_speed
from common import FASHION, ROOT, Parts, log, machine


def options() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, under 3 minutes")
    ap.add_argument("--gpu-only", action="store_true", help="only the GPU figures (and host decoding): for a lent GPU")
    ap.add_argument("--device", default=None, help="GPU to measure [default: cuda when there is one]; "
                                                   "cpu with --gpu-only is a smoke run of that code")
    ap.add_argument("--out", default=None, help="[default: BENCHMARKS.md, or BENCHMARKS-gpu.md with --gpu-only]")
    ap.add_argument("--sizes", type=sizes_option, default=None, help="search sizes, comma-separated")
    return ap.parse_args()


def sizes_option(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of item counts, e.g. 10000,30000")
    return sizes


def pick_device(args) -> str:
    """--device, else cuda where torch sees a GPU, else cpu; a clean error where the GPU figures
    are asked for and no GPU is here."""
    import torch

    has_cuda = torch.cuda.is_available()
    device = args.device or ("cuda" if has_cuda else "cpu")
    if device.startswith("cuda") and not has_cuda:
        sys.exit(f"Error: --device {device} needs a CUDA GPU and torch sees none on this machine: run it on a "
                 "machine with one, or leave --device out to measure the CPU.")
    if args.gpu_only and device == "cpu" and not args.device:
        sys.exit("Error: --gpu-only measures a CUDA GPU and torch sees none on this machine: run it (make bench-gpu) "
                 "on a machine with one, or add --device cpu for a smoke run of its code.")
    return device


def main() -> None:
    args = options()
    device = pick_device(args)
    t_start = time.perf_counter()
    command = "python bench/run.py" + (" --quick" if args.quick else "") + (" --gpu-only" if args.gpu_only else "")
    results = {"command": command, "date": time.strftime("%Y-%m-%d"), "machine": machine(), "notes": []}
    tmp = Path(tempfile.mkdtemp(prefix="vrec-bench-"))
    try:
        measure(results, Parts(results.setdefault("section_seconds", {})), args, device, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["seconds"] = time.perf_counter() - t_start
    out = Path(args.out or ROOT / ("BENCHMARKS-gpu.md" if args.gpu_only else "BENCHMARKS.md"))
    write_outputs(results, out)
    log(f"wrote {out} in {results['seconds']:.0f} s")


def measure(results: dict, part: Parts, args, device: str, tmp: Path) -> None:
    """Every benchmark of the run, in order, into ``results``."""
    quick = args.quick
    part("inputs")
    folders = inputs.photo_folders(tmp / "photos", n_small=16 if quick else 64, n_large=8 if quick else 32)
    w = {name: inputs.random_weights(name, tmp) for name in ("siglip", "cnn")}
    if not args.gpu_only:
        part("embedding")
        results["embed"] = []
        # SigLIP: more, shorter pairs (one batch each) for the same time, so one burst of outside
        # load moves the median less
        for name, pairs, photos in (("siglip", 1 if quick else 5, inputs.subset(folders, 32)),
                                    ("cnn", 2 if quick else 6, folders)):
            results["embed"] += embed_throughput.measure(name, w[name], photos, batch=32, tmp=tmp, repeats=pairs)
    part("decoding")
    results["decode"] = decoding.measure(folders, 200 if quick else 400)
    if device != "cpu" or args.gpu_only:
        part("gpu")
        results["gpu"] = gpu.measure(w, tmp, quick, device)
    if not args.gpu_only:
        measure_cpu(results, part, w, folders, tmp, quick, args.sizes)
    part("")


def measure_cpu(results: dict, part: Parts, w: dict, folders: dict, tmp: Path, quick: bool,
                sizes: list[int] | None) -> None:
    if not quick:  # fresh processes that load the models: too slow for the quick run
        part("allocator")
        results["allocator"] = [allocator.measure("cnn", w["cnn"], 64, 2)]
    part("precision")
    results["precision"] = precision.measure("siglip", w["siglip"], next(iter(inputs.subset(folders, 32).values())),
                                             batch=32, half_images=8)
    part("memory")
    base = FASHION if FASHION.is_dir() else ROOT / "sample_catalog"
    results["memory"] = embed_memory.measure(tmp, base, (1, 2) if quick else (1, 5))
    part("search")
    sizes = sizes or ([10_000, 30_000] if quick else [10_000, 100_000, 1_000_000])
    results["search"] = search_speed.measure(sizes, 768, tmp) + search_speed.measure_real(tmp)
    part("ray engine")
    results["ray"] = ray_engine.measure(next(iter(folders.values())), 32, tmp)
    part("cold query")
    results["cold"] = cold_query.torch_only(w["siglip"], tmp, runs_wanted=2 if quick else 3)


# --- outputs ----------------------------------------------------------------------------------

def write_outputs(results: dict, out: Path) -> None:
    """The notes, then the document at ``out`` and the figures beside it (same name, .json)."""
    from vrec.base.files import atomic_path
    if not FASHION.is_dir():
        results["notes"].append("The shared fashion sample was absent: the 146 photos bundled in sample_catalog/ were used instead.")
    if "search" in results:
        results["notes"].append("The 1M-item index is built with ef_construction 64 to fit the run; vrec's default is 200.")
    results["notes"].append("Time per part of this run (s): " + ", ".join(f"{k} {v:.0f}" for k, v in results["section_seconds"].items()) + ".")
    write_markdown(results, out)
    with atomic_path(out.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps(results, indent=2, default=float))


def write_markdown(results: dict, path: Path) -> None:
    """The document: header, the CPU sections, the GPU section, the notes. The sections other bench
    scripts keep between markers in the file (serve_bench.py, cold_query.py) are carried over,
    before the notes."""
    from sections import write_keeping_sections

    m = results["machine"]
    lines = ["# vrec benchmarks", "",
             f"Written by `{results['command']}` on {results['date']} ({results['seconds']:.0f} s). Regenerate with "
             "`make bench` (full) or `python bench/run.py --quick`.", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, GPU: {m['gpu']}. "
             f"Python {m['python']}, torch {m['torch']}, open_clip {m['open_clip']}, timm {m['timm']}, "
             f"hnswlib {m['hnswlib']}, numpy {m['numpy']}.", ""]
    if "embed" in results:
        lines += (embed_throughput.markdown(results["embed"]) + allocator.markdown(results.get("allocator"))
                  + decoding.markdown(results["decode"]) + precision.markdown(results["precision"])
                  + embed_memory.markdown(results["memory"]) + search_speed.markdown(results["search"])
                  + ray_engine.markdown(results.get("ray")) + cold_query.torch_markdown(results["cold"]) + [""])
    if "gpu" in results:
        lines += gpu.markdown(results["gpu"])
        if "embed" not in results:
            lines += decoding.markdown(results["decode"])
    lines += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"]]
    write_keeping_sections(path, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
