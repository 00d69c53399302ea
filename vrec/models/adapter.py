"""A residual low-rank adapter on frozen vectors, as ``vrec adapt`` learns it: ``y = unit(x + U Vᵀ x)``.

A derived model is named ``BASE+TAG`` (e.g. ``effnet-lite0+adapt``): its vectors are the base
model's passed through the adapter, and its queries are the base encoder's passed through it too.
Photos go through the adapter whole; texts are blended with the base text vector,
``unit(alpha * adapted + (1 - alpha) * base)``, so that a text tower the adapter never saw in
training still finds what it found before (alpha 0: the base text vector as is).

The weights are two ``.npy`` files in the derived model's store folder (``adapter-N/U.npy`` and
``adapter-N/V.npy``, float32 [dim, rank]; a new training writes a new folder, so a manifest always
names complete weights); base, folder, alpha, rank and the training report are in its manifest under
``model.adapter``. This module reads and writes those files; it never imports the store.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEP = "+"  # BASE+TAG


def split_derived(name: str) -> tuple[str, str] | None:
    """(base, tag) of a derived model name ``BASE+TAG``, or None for any other name."""
    base, sep, tag = str(name).rpartition(SEP)
    return (base, tag) if sep and base and tag else None


def base_name(name: str) -> str:
    """The model whose encoder makes a derived model's queries (the name itself for any other model)."""
    parts = split_derived(name)
    return parts[0] if parts else name


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass
class Adapter:
    """``y = unit(x + (x V) Uᵀ)``; U and V are float32 [dim, rank]. U = 0 is the identity."""

    u: np.ndarray
    v: np.ndarray
    alpha: float = 0.5  # weight of the adapted text vector against the base one

    @property
    def dim(self) -> int:
        return int(self.u.shape[0])

    @property
    def rank(self) -> int:
        return int(self.u.shape[1])

    def apply(self, x: np.ndarray, batch: int = 65536) -> np.ndarray:
        """Adapted unit vectors of base vectors ``x`` [n, dim] (in batches: memory stays bounded)."""
        x = np.asarray(x, np.float32)
        out = np.empty_like(x)
        for s in range(0, len(x), batch):
            xb = x[s:s + batch]
            out[s:s + batch] = unit(xb + (xb @ self.v) @ self.u.T)
        return out

    def apply_text(self, t: np.ndarray) -> np.ndarray:
        """A text query's vector: the adapted one blended with the base one by ``alpha``."""
        t = unit(t)
        return unit(self.alpha * self.apply(t) + (1.0 - self.alpha) * t)

    def save(self, folder: str | os.PathLike) -> None:
        from vrec.base.files import write_npy

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_npy(folder / "U.npy", np.ascontiguousarray(self.u, np.float32))
        write_npy(folder / "V.npy", np.ascontiguousarray(self.v, np.float32))


def load_adapter(model_folder: str | os.PathLike, config: dict) -> Adapter | None:
    """The adapter of a model store folder whose manifest ``config`` names one, else None."""
    from vrec.base.errors import StoreError

    info = config.get("adapter")
    if not info:
        return None
    folder = Path(model_folder) / str(info.get("folder", "adapter"))
    try:
        u = np.load(folder / "U.npy", allow_pickle=False)
        v = np.load(folder / "V.npy", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise StoreError(f"The adapter of {config.get('name')!r} in {str(model_folder)!r} cannot be read ({e}); "
                         f"run 'vrec adapt --model {info.get('base')}' again to rebuild it.") from None
    if u.shape != v.shape or u.ndim != 2 or u.shape[0] != int(config.get("dim", -1)):
        raise StoreError(f"The adapter of {config.get('name')!r} in {str(model_folder)!r} has the wrong shape "
                         f"({u.shape}, {v.shape}); run 'vrec adapt --model {info.get('base')}' again.")
    return Adapter(u.astype(np.float32), v.astype(np.float32), float(info.get("alpha", 0.5)))


class AdaptedEncoder:
    """The base model's encoder with the adapter on its outputs: photos adapted, texts blended.

    SigLIP's match probability belongs to the base space, so an adapted encoder reports none.
    Everything else (preprocessing, device, timings) is the base encoder's."""

    logit_scale = None
    logit_bias = None

    def __init__(self, encoder, adapter: Adapter, name: str):
        self._enc, self.adapter, self.name = encoder, adapter, name

    def __getattr__(self, attr: str):
        return getattr(self._enc, attr)

    def encode_images(self, images: Sequence) -> np.ndarray:
        return self.adapter.apply(self._enc.encode_images(images))

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self.adapter.apply(self._enc.encode_pixels(pixels))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.adapter.apply_text(self._enc.encode_texts(texts))
