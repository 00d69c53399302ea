"""The domain and multilingual models (fashion-siglip, ecommerce-b, ecommerce-l, siglip2, siglip-i18n):
listed with their sources and published figures, resolved to their real architectures, and -- on a
fake hub cache holding each real architecture at random weights -- giving the vectors open_clip's
own pipeline gives, image and text, on torch and through the ONNX text tower."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from clihelp import vrec
from conftest import SAMPLE
from fakehub import MARQO_ARCH, fake_model, remove

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = ["fashion-siglip", "ecommerce-b", "ecommerce-l", "siglip2", "siglip-i18n"]


def test_vrec_models_lists_each_domain_model_with_source_and_published_figures():
    out = " ".join(vrec("models").stdout.split())
    for name in DOMAIN:
        assert name in out
    for text in ("hf-hub:Marqo/marqo-fashionSigLIP", "hf-hub:Marqo/marqo-ecommerce-embeddings-B",
                 "hf-hub:Marqo/marqo-ecommerce-embeddings-L", "ViT-B-16-SigLIP2@webli", "ViT-B-16-SigLIP-i18n-256@webli",
                 ".121/.340/.239", ".111/.314/.214", "P@1 .571", ".714", "R@10 .832", ".878", ".660",
                 "75.2 -> 86.4", "30.9 -> 67.7"):
        assert text in out, text


@pytest.mark.parametrize("name", ["siglip2", "siglip-i18n"])
def test_open_clip_models_match_open_clips_config_and_recipe(name):
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    from vrec.models.registry import resolve

    e = resolve(name)
    cfg, pre = open_clip.get_model_config(e.arch), get_pretrained_cfg(e.arch, e.pretrained)
    assert e.dim == cfg["embed_dim"] and e.preprocess.size == cfg["vision_cfg"]["image_size"] and e.text
    assert (e.preprocess.resize_mode, e.preprocess.interpolation) == (pre["resize_mode"], pre["interpolation"])
    assert e.preprocess.mean == tuple(pre["mean"]) and e.preprocess.std == tuple(pre["std"])
    assert pre["hf_hub"].strip("/") == cfg["text_cfg"]["hf_tokenizer_name"]  # weights and tokenizer: one repository


@pytest.fixture
def hub_config_only(tmp_path, monkeypatch):
    """A cache with the Marqo repositories' configurations and tokenizers, no weights."""
    import huggingface_hub.constants

    for name in MARQO_ARCH:
        fake_model(tmp_path, name, weights=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


@pytest.mark.parametrize("name", list(MARQO_ARCH))
def test_marqo_entries_agree_with_their_hub_configuration(hub_config_only, name):
    """The fixed entry (known without the hub) equals what the repository's open_clip_config.json
    makes of the same name, so the store manifest says the same before and after a download."""
    from vrec.models.registry import resolve
    from vrec.models.weights import _hub_location

    fixed, from_hub = resolve(name), resolve(resolve(name).arch)
    assert (fixed.dim, fixed.preprocess, fixed.family) == (from_hub.dim, from_hub.preprocess, from_hub.family)
    assert _hub_location(fixed) == (fixed.pretrained, "open_clip_model.safetensors")


def test_a_repository_whose_configuration_changed_is_refused_in_one_sentence(hub_config_only):
    from vrec.base.errors import ModelUnavailable
    from vrec.models.encoders import create_encoder

    cfg_path = next(hub_config_only.rglob("models--Marqo--marqo-fashionSigLIP/snapshots/*/open_clip_config.json"))
    cfg = json.loads(cfg_path.read_text())
    cfg["preprocess_cfg"]["mean"] = [0.48, 0.45, 0.40]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelUnavailable, match="now gives preprocessing .* use the name hf-hub:Marqo/marqo-fashionSigLIP"):
        create_encoder("fashion-siglip", device="cpu")


CHECK = """
import json, sys
import numpy as np, torch, open_clip
from PIL import Image
from vrec.models import onnx_export
from vrec.models.encoders import create_encoder
from vrec.models.registry import resolve

name, images, texts = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
e = resolve(name)
enc = create_encoder(name, device="cpu")
ours_img, ours_txt = enc.encode_images([Image.open(p) for p in images]), enc.encode_texts(texts)
oc_name, oc_tag = (e.arch, None) if e.arch.startswith("hf-hub:") else (e.arch, e.pretrained)
model, _, pre = open_clip.create_model_and_transforms(oc_name, pretrained=oc_tag)
tok = open_clip.get_tokenizer(oc_name)
with torch.no_grad():
    x = torch.stack([pre(Image.open(p).convert("RGB")) for p in images])
    theirs_img = torch.nn.functional.normalize(model.encode_image(x), dim=-1).numpy()
    theirs_txt = torch.nn.functional.normalize(model.encode_text(tok(texts)), dim=-1).numpy()
result = {"img": float((ours_img * theirs_img).sum(1).min()), "txt": float((ours_txt * theirs_txt).sum(1).min()),
          "dim": int(ours_img.shape[1]), "tokens": bool((enc.tokenizer()(texts) == tok(texts)).all())}
if sys.argv[4] == "onnx":
    onnx_enc = onnx_export.export(create_encoder(name, device="cpu", text_only=True), quiet=True)
    result["onnx"] = float((onnx_enc.encode_texts(texts) * theirs_txt).sum(1).min())
    result["onnx_tokens"] = bool((onnx_enc.tokenize(texts) == tok(texts).numpy()).all())
print(json.dumps(result))
"""
TEXTS = ["a red leather bag", "Oatly havredryck 1 l", "röd väska med axelrem", "mjölk", "", "Tropicana Mandarin Morning"]


def _wants_real_architectures(request) -> None:
    expr = request.config.getoption("markexpr") or ""
    if os.environ.get("VREC_TEST_REAL_SIGLIP") != "1" and not ("slow" in expr and "not slow" not in expr):
        pytest.skip("real domain architectures at random weights: run with -m slow or VREC_TEST_REAL_SIGLIP=1 "
                    "(minutes, and gigabytes of fake weights)")


@pytest.fixture(scope="session")
def domain_hub(tmp_path_factory, request):
    """One cache holding every domain model's real architecture at random weights (about 7 GB; the two
    ViT-B-16-SigLIP repositories share one weights file), removed afterwards."""
    _wants_real_architectures(request)
    home = tmp_path_factory.mktemp("domain-hub")
    shared: dict = {}
    for name in DOMAIN:
        fake_model(home, name, shared=shared)
    yield home
    remove(home)


@pytest.mark.slow
@pytest.mark.parametrize("name", DOMAIN)
def test_domain_model_vectors_equal_open_clips_own_pipeline(domain_hub, tmp_path, name):
    env = {**os.environ, "HF_HOME": str(domain_hub), "HF_HUB_OFFLINE": "1", "VREC_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("VREC_TEXT_ONNX", None)
    images = [str(p) for p in sorted(SAMPLE.rglob("*.jpg"))[:3]]
    p = subprocess.run([sys.executable, "-c", CHECK, name, json.dumps(images), json.dumps(TEXTS), "onnx"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=1200)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.splitlines()[-1])
    from vrec.models.registry import resolve

    assert got["dim"] == resolve(name).dim
    assert got["img"] >= 0.9999 and got["txt"] >= 0.9999 and got["tokens"], got
    assert got["onnx"] >= 0.9999 and got["onnx_tokens"], got
