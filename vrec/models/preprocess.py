"""Image preprocessing as plain data: each pretrained checkpoint's own recipe.

A checkpoint only sees what it was trained to see: SigLIP squashes the whole photo to a square
and scales pixels to [-1, 1]; ImageNet CNNs resize the short side, crop the centre and use
ImageNet mean/std. Mixing them up silently costs accuracy, so the recipe travels with the model
entry, is written into the store manifest, and is pinned by tests against open_clip and timm.

Resizing and cropping run here with Pillow on decoded pictures (worker-friendly, no torch);
normalisation happens on the batch just before the model.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

_FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST, "lanczos": Image.LANCZOS}

INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessSpec:
    """How a checkpoint wants its pixels.

    ``resize_mode`` is ``squash`` (whole photo resized to a square, aspect ignored) or
    ``shortest`` (short side to ``floor(size / crop_pct)``, then a centred ``size`` crop).
    """

    size: int
    resize_mode: str = "shortest"
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessSpec:
        return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})

    @property
    def decode_size(self) -> int:
        """The smallest short side a decoded photo needs for this recipe (for JPEG draft mode)."""
        if self.resize_mode == "squash":
            return self.size
        return math.floor(self.size / self.crop_pct)


def squash_spec(size: int) -> PreprocessSpec:
    """SigLIP's recipe: squash to a square, pixels to [-1, 1]."""
    return PreprocessSpec(size=size, resize_mode="squash", interpolation="bicubic",
                          mean=INCEPTION_MEAN, std=INCEPTION_STD)


def to_pixels(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """Resize and crop an RGB picture as ``spec`` says: uint8 array [size, size, 3]."""
    resample = _FILTERS[spec.interpolation]
    if spec.resize_mode == "squash":
        out = img.resize((spec.size, spec.size), resample)
    elif spec.resize_mode == "shortest":
        scale = math.floor(spec.size / spec.crop_pct)
        w, h = img.size
        # the same arithmetic as torchvision's Resize(int): short side exact, long side truncated
        if w <= h:
            nw, nh = scale, int(scale * h / w)
        else:
            nw, nh = int(scale * w / h), scale
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), resample)
        top = int(round((nh - spec.size) / 2.0))
        left = int(round((nw - spec.size) / 2.0))
        out = img.crop((left, top, left + spec.size, top + spec.size))
    else:
        raise ValueError(f"unknown resize_mode {spec.resize_mode!r}")
    return np.asarray(out.convert("RGB"), dtype=np.uint8)


def normalize(pixels: np.ndarray, spec: PreprocessSpec, device: str = "cpu"):
    """uint8 [n, h, w, 3] -> normalised float32 torch tensor [n, 3, h, w] on ``device``.

    The uint8 batch is moved first (pinned, asynchronous on CUDA) and converted there: 4x fewer
    bytes cross the bus than floats would.
    """
    import torch

    x = torch.from_numpy(np.require(pixels, np.uint8, ["C", "W"]))
    if str(device).startswith("cuda"):
        x = x.pin_memory().to(device, non_blocking=True)
    elif device != "cpu":
        x = x.to(device)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)
