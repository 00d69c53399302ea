"""The one interface every model implements: pictures (and maybe texts) in, unit vectors out.

Implementations: open_clip and timm models on torch (:mod:`vrec.models.encoders`) and the text
tower on onnxruntime (:mod:`vrec.models.onnx_text`)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vrec.base.errors import QueryError
from vrec.models.preprocess import normalize, to_pixels
from vrec.models.registry import _ENTRIES, ModelEntry
from vrec.models.weights import model_config


def no_text_tower(name: str) -> QueryError:
    return QueryError(
        f"Model {name!r} has no text tower, so it cannot search by text; use a vision-language "
        f"model such as {', '.join(e.name for e in _ENTRIES if e.text)}."
    )


class Encoder:
    """One model behind vrec's interface: pictures (and maybe texts) in, unit vectors out."""

    def __init__(self, entry: ModelEntry, model, device: str, weights_id: str, precision: str = "fp32"):
        self.entry = entry
        self.model = model
        self.device = device
        self.weights_id = weights_id
        self.precision = precision

    name = property(lambda self: self.entry.name)
    dim = property(lambda self: self.entry.dim)
    preprocess_spec = property(lambda self: self.entry.preprocess)
    has_text = property(lambda self: self.entry.text)

    def preprocess(self, img) -> np.ndarray:
        return to_pixels(img, self.entry.preprocess)

    def config(self) -> dict:
        return model_config(self.entry, self.weights_id)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 [n, h, w, 3] preprocessed pictures -> float32 [n, dim], L2-normalised.

        The uint8 batch travels to the device as is (4x less than floats; pinned and asynchronous
        on CUDA) and is normalised there.
        """
        import torch

        x = normalize(pixels, self.entry.preprocess, device=self.device)
        if self.precision in ("fp16", "bf16"):
            x = x.to(torch.float16 if self.precision == "fp16" else torch.bfloat16)
        with torch.inference_mode():
            return self._unit(self._forward_images(x))

    def encode_images(self, images: Sequence) -> np.ndarray:
        """PIL RGB pictures -> float32 [n, dim], L2-normalised."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.encode_pixels(np.stack([self.preprocess(im) for im in images]))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise no_text_tower(self.name)

    @property
    def logit_scale(self) -> float | None:
        return None

    @property
    def logit_bias(self) -> float | None:
        return None

    @staticmethod
    def _unit(t) -> np.ndarray:
        import torch

        t = torch.nn.functional.normalize(t.float(), dim=-1)
        return t.cpu().numpy().astype(np.float32, copy=False)

    def _forward_images(self, x):
        raise NotImplementedError
