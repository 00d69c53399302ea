"""What the benchmarks measure on: real photos, random-weight checkpoints of the real
architectures, a stand-in tokenizer, clustered synthetic vectors and stores made of them.

Speed does not depend on the weights' values, so random weights measure what real ones would;
isotropic random vectors would not (see :func:`clustered`).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from common import FAKE_HUB, FASHION, ROOT

from vrec.store.writer import ModelWriter


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

    from vrec.models.registry import resolve

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


def fake_siglip_hub(hf_home: Path) -> None:
    """Fill ``hf_home`` as a Hugging Face cache holding the real ViT-B-16-SigLIP architecture at
    random weights (../shared/tools/fake_siglip_hub.py, ~813 MB), unless it already holds one."""
    if (hf_home / "hub").is_dir() and any((hf_home / "hub").rglob("open_clip_model.safetensors")):
        return
    if not FAKE_HUB.is_file():
        sys.exit(f"{FAKE_HUB} is not here: it makes the offline ViT-B-16-SigLIP this benchmark loads.")
    subprocess.run([sys.executable, str(FAKE_HUB), str(hf_home)], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"})


def clustered(n: int, dim: int, seed: int, centres=None) -> tuple[np.ndarray, tuple]:
    """Unit vectors with the structure of real embeddings: clusters on a low-dimensional manifold
    (32 latent dimensions projected into ``dim``), plus a little isotropic noise. Isotropic
    clusters in 768 dimensions make every neighbour a near tie, which no real catalog does.
    Returns the vectors and their ``centres``: pass those back to draw more from the same clusters."""
    rng = np.random.default_rng(seed)
    latent = 32
    if centres is None:
        basis = np.random.default_rng(12345).normal(size=(latent, dim)).astype(np.float32) / np.sqrt(latent)
        centres = (rng.normal(size=(max(10, n // 1000), latent)).astype(np.float32), basis)
    mids, basis = centres
    z = mids[rng.integers(0, len(mids), n)] + 0.5 * rng.normal(size=(n, latent)).astype(np.float32)
    v = z @ basis + 0.05 * rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True), centres


def write_vectors(store: Path, model: str, config: dict, ids: list[str], vectors: np.ndarray, root: Path,
                  with_paths: bool = True, photos: int = 1):
    """A new store at ``store`` (for catalog folder ``root``) holding ``vectors`` under ``model``,
    one row per id (its path the id + .jpg, or empty), in shards of up to 250,000 rows; with
    ``photos`` > 1, every ``photos`` consecutive rows are the photos of one product (named after
    its first photo's id). Returns the Store."""
    import pandas as pd

    from vrec.store.store import Store

    st = Store(store)
    st.create(root)
    with ModelWriter(st.model_for_writing(model), config) as w:
        for start in range(0, len(ids), 250_000):
            chunk = ids[start:start + 250_000]
            items = pd.DataFrame({"id": chunk, "path": [i + ".jpg" for i in chunk] if with_paths else "", "hash": "", "size": 0, "mtime": 0,
                                  "width": 0, "height": 0})
            if photos > 1:
                j = np.arange(start, start + len(chunk))
                items["product"] = [f"product-{p:07d}" for p in (j // photos).tolist()]
                items["position"] = j % photos + 1
            w.add(items, vectors[start:start + len(chunk)])
            w.flush()
    return st


def siglip_store(store: Path, ids: list[str], seed: int, weights: Path | None = None, root: Path | None = None,
                 photos: int = 1):
    """A store of clustered 768-d vectors under model ``siglip`` (its real configuration, for
    ``weights`` if given), as a catalog of SigLIP embeddings would be; ``photos``: per product
    (see ``write_vectors``). Returns the Store."""
    from vrec.models.registry import resolve
    from vrec.models.weights import expected_config

    vectors, _ = clustered(len(ids), 768, seed=seed)
    return write_vectors(store, "siglip", expected_config(resolve("siglip"), weights), ids, vectors,
                         root or store.parent, photos=photos)
