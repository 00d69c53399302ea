"""Each checkpoint gets its own preprocessing, identical to what open_clip and timm do."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vrec.models.preprocess import normalize, to_pixels
from vrec.models.registry import MODELS


def photo(size=(300, 180)) -> Image.Image:
    """A non-square picture with detail everywhere, so crops and squashes differ visibly."""
    x = np.linspace(0, 255, size[0])[None, :, None]
    y = np.linspace(0, 255, size[1])[:, None, None]
    a = np.concatenate([x + 0 * y, y + 0 * x, (x * y / 255) % 255], axis=2).astype(np.uint8)
    return Image.fromarray(a)


def ours(img, spec) -> torch.Tensor:
    return normalize(to_pixels(img, spec)[None], spec)[0]


def test_siglip_uses_its_own_recipe_not_clips():
    spec = MODELS["siglip"].preprocess
    assert spec.resize_mode == "squash" and spec.size == 224 and spec.interpolation == "bicubic"
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.5, 0.5, 0.5)
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg("ViT-B-16-SigLIP", "webli")
    assert tuple(cfg["mean"]) == spec.mean and tuple(cfg["std"]) == spec.std
    assert cfg["resize_mode"] == spec.resize_mode and cfg["interpolation"] == spec.interpolation


@pytest.mark.parametrize("name", ["siglip", "tiny-siglip"])
def test_open_clip_pixels_match_open_clips_transform(name, sample_dir):
    from open_clip.transform import PreprocessCfg, image_transform_v2

    spec = MODELS[name].preprocess
    tf = image_transform_v2(PreprocessCfg(size=spec.size, mean=spec.mean, std=spec.std, interpolation=spec.interpolation,
                                          resize_mode=spec.resize_mode), is_train=False)
    for img in (photo(), Image.open(sample_dir / "bags" / "bag-tote-red.jpg").convert("RGB")):
        assert torch.allclose(ours(img, spec), tf(img), atol=1e-5)


def test_cnn_recipe_is_the_checkpoints_own():
    import timm
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=timm.create_model("resnet50.a1_in1k", pretrained=False))
    spec = MODELS["cnn"].preprocess
    assert cfg["crop_pct"] == spec.crop_pct and cfg["interpolation"] == spec.interpolation
    assert tuple(cfg["mean"]) == spec.mean and cfg["input_size"][1] == spec.size


@pytest.mark.parametrize("name", ["cnn", "effnet-lite0", "tiny-cnn"])
def test_timm_pixels_match_timms_eval_transform(name):
    from timm.data import create_transform

    spec = MODELS[name].preprocess
    tf = create_transform(input_size=(3, spec.size, spec.size), interpolation=spec.interpolation, mean=spec.mean,
                          std=spec.std, crop_pct=spec.crop_pct, is_training=False)
    for img in (photo(), photo((181, 301))):
        assert torch.allclose(ours(img, spec), tf(img), atol=1e-5)
