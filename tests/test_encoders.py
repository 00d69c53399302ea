"""The model registry: one interface, tiny models through the real code paths, weights files, offline errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from vrec.base.errors import ModelUnavailable, QueryError, UnknownModel
from vrec.models.encoders import create_encoder
from vrec.models.registry import MODELS, list_models, resolve
from vrec.models.weights import expected_config


def pictures():
    return [Image.new("RGB", (80, 60), c) for c in [(200, 20, 20), (20, 20, 200), (240, 240, 240)]]


def test_registry_lists_the_promised_models():
    names = {e.name for e in list_models()}
    assert {"siglip", "cnn", "effnet-lite0", "tiny-siglip", "tiny-cnn"} <= names
    assert [e.name for e in list_models("tiny-*")] == ["tiny-siglip", "tiny-cnn"]
    assert MODELS["siglip"].arch == "ViT-B-16-SigLIP" and MODELS["siglip"].pretrained == "webli"
    assert MODELS["siglip"].dim == 768 and MODELS["siglip"].text
    assert MODELS["cnn"].pretrained == "timm/resnet50.a1_in1k" and not MODELS["cnn"].text


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModel, match="Did you mean 'siglip'"):
        resolve("siglp")


def test_open_clip_names_resolve_to_entries():
    e = resolve("open_clip:ViT-B-16-SigLIP@webli")
    assert e.dim == 768 and e.preprocess == MODELS["siglip"].preprocess
    assert resolve("open_clip:RN50").family == "open_clip"
    with pytest.raises(UnknownModel, match="no pretrained tag"):
        resolve("open_clip:ViT-B-16-SigLIP@nope")
    with pytest.raises(UnknownModel, match="no architecture"):
        resolve("open_clip:ViT-X-99")


@pytest.mark.parametrize("name", ["tiny-siglip", "tiny-cnn"])
def test_tiny_models_are_seeded_and_give_unit_vectors(name):
    a = create_encoder(name, device="cpu")
    b = create_encoder(name, device="cpu")
    va, vb = a.encode_images(pictures()), b.encode_images(pictures())
    assert va.dtype == np.float32 and va.shape == (3, a.dim)
    assert np.allclose(np.linalg.norm(va, axis=1), 1, atol=1e-5)
    assert np.array_equal(va, vb)  # same seed, same weights, same vectors


def test_int8_quantises_linear_layers_and_stays_within_the_fidelity_bar():
    fp32 = create_encoder("tiny-siglip", device="cpu")
    int8 = create_encoder("tiny-siglip", device="cpu", precision="int8")
    assert any("quantized" in type(m).__module__ for m in int8.model.modules())
    pics = pictures()
    assert (fp32.encode_images(pics) * int8.encode_images(pics)).sum(1).min() >= 0.99
    texts = ["a red bag", "a blue shoe"]
    assert (fp32.encode_texts(texts) * int8.encode_texts(texts)).sum(1).min() >= 0.99


def test_half_precision_on_a_cpu_is_refused_with_the_alternatives(tmp_path, sample_dir):
    from clihelp import vrec

    r = vrec("embed", sample_dir, "--model", "tiny-cnn", "--store", tmp_path / "s", "--device", "cpu",
             "--precision", "fp16", ok=False)
    assert r.exit_code == 1 and "needs a GPU" in r.stderr and "int8" in r.stderr


def test_text_tower_and_sigmoid_head():
    enc = create_encoder("tiny-siglip", device="cpu")
    t = enc.encode_texts(["a red bag", "a blue shoe"])
    assert t.shape == (2, 64) and np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    assert enc.logit_bias == pytest.approx(-10.0) and enc.logit_scale > 1


def test_a_model_without_text_tower_says_which_can():
    with pytest.raises(QueryError, match="no text tower.*siglip"):
        create_encoder("tiny-cnn", device="cpu").encode_texts(["x"])


def test_open_clip_weights_file_round_trip(tmp_path):
    """A tiny open_clip model saved to a file and loaded back through --weights gives identical vectors."""
    from safetensors.torch import save_file

    enc = create_encoder("tiny-siglip", device="cpu")
    with torch.no_grad():  # make the saved weights differ from the seeded ones
        for p in enc.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in enc.model.state_dict().items()}, str(path))
    back = create_encoder("tiny-siglip", weights=path, device="cpu")
    assert np.array_equal(enc.encode_images(pictures()), back.encode_images(pictures()))
    assert np.array_equal(enc.encode_texts(["a tote"]), back.encode_texts(["a tote"]))
    assert back.weights_id.startswith("sha256:") and back.config() == expected_config(resolve("tiny-siglip"), path)
    assert not np.array_equal(back.encode_images(pictures()), create_encoder("tiny-siglip").encode_images(pictures()))


def test_timm_weights_file_round_trip_and_refusals(tmp_path):
    enc = create_encoder("tiny-cnn", device="cpu")
    torch.save(enc.model.state_dict(), tmp_path / "cnn.pth")
    back = create_encoder("tiny-cnn", weights=tmp_path / "cnn.pth", device="cpu")
    assert np.array_equal(enc.encode_images(pictures()), back.encode_images(pictures()))
    # a pickled object is never unpickled
    torch.save({"model": object()}, tmp_path / "evil.pth")
    with pytest.raises(ModelUnavailable, match="Cannot read weights"):
        create_encoder("tiny-cnn", weights=tmp_path / "evil.pth")
    with pytest.raises(ModelUnavailable, match="does not exist"):
        create_encoder("tiny-cnn", weights=tmp_path / "missing.pth")
    with pytest.raises(ModelUnavailable, match="do not fit"):
        create_encoder("tiny-cnn", weights=_other_weights(tmp_path))


def _other_weights(tmp_path):
    """A state dict of some other network."""
    torch.save({"conv1.0.weight": torch.zeros(3, 3, 3, 3)}, tmp_path / "other.pth")
    return tmp_path / "other.pth"


def test_missing_weights_offline_give_one_clear_paragraph(tmp_path):
    """Without network or cache, a real model explains how to pre-download and point vrec at the copy."""
    code = ("from vrec.models.encoders import create_encoder\n"
            "from vrec.base.errors import ModelUnavailable\n"
            "try:\n    create_encoder('cnn')\nexcept ModelUnavailable as e:\n    print(e)\n")
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120).stdout
    assert "vrec models download cnn" in out and "HF_HOME" in out and "--weights" in out


def test_effnet_lite0_loads_real_weights_offline():
    enc = create_encoder("effnet-lite0", device="cpu")
    assert enc.dim == 1280 and enc.weights_id == "package"
    # real weights: a red and a blue picture are not the same to it
    v = enc.encode_images(pictures())
    assert float(v[0] @ v[1]) < 0.99


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator settings")
@pytest.mark.parametrize("env,kept", [({}, True), ({"MALLOC_TRIM_THRESHOLD_": "131072"}, False)])
def test_cpu_encoders_keep_freed_memory_unless_the_user_tuned_glibc(env, kept):
    # without it every CPU batch page-faults its activations back in (ResNet-50: 10 -> 15 img/s)
    code = ("from vrec.models.encoders import create_encoder, keep_freed_memory\n"
            "create_encoder('tiny-cnn', device='cpu')\nprint(keep_freed_memory())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, **env}).stdout
    assert out.strip() == str(kept)


@pytest.mark.parametrize("case", ["safetensors cached", "bin cached", "bin only on the hub"])
def test_hf_hub_models_load_the_weights_in_their_repository(tmp_path, monkeypatch, case):
    """``hf-hub:ORG/NAME`` builds the architecture in the repository's open_clip_config.json and
    loads the repository's weights (safetensors, else open_clip's .bin, as open_clip does), not
    random ones. A stand-in hub cache and hub (no network): the tiny SigLIP, weights perturbed."""
    import huggingface_hub
    from safetensors.torch import save_file

    from vrec.models import hub
    from vrec.models.registry import TINY_SIGLIP_CONFIG
    from vrec.models.weights import is_available_offline

    src = create_encoder("tiny-siglip", device="cpu")
    with torch.no_grad():
        for p in src.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    sd = {k: v.contiguous() for k, v in src.model.state_dict().items()}
    repo = "someone/tiny-fashion-siglip"
    files = {"open_clip_config.json": tmp_path / "open_clip_config.json"}
    files["open_clip_config.json"].write_text(json.dumps({"model_cfg": TINY_SIGLIP_CONFIG, "preprocess_cfg": {
        "resize_mode": "squash", "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.5] * 3}}))
    if case == "safetensors cached":
        files["open_clip_model.safetensors"] = tmp_path / "open_clip_model.safetensors"
        save_file(sd, str(files["open_clip_model.safetensors"]))
    else:
        files["open_clip_pytorch_model.bin"] = tmp_path / "open_clip_pytorch_model.bin"
        torch.save(sd, files["open_clip_pytorch_model.bin"])
    on_hub = dict(files)
    if case == "bin only on the hub":
        del files["open_clip_pytorch_model.bin"]
    downloads = []

    def cached(repo_id, filename, *a, **kw):
        return str(files[filename]) if repo_id == repo and filename in files else None

    def download(repo_id, filename, *a, **kw):
        downloads.append(filename)
        if filename not in on_hub:
            raise huggingface_hub.errors.EntryNotFoundError(f"{repo_id} has no {filename}")
        files[filename] = on_hub[filename]
        return str(on_hub[filename])

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", cached)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(hub, "hub_unreachable", lambda: None)

    entry = resolve(f"hf-hub:{repo}")
    assert entry.preprocess == MODELS["tiny-siglip"].preprocess
    assert is_available_offline(entry) == (case != "bin only on the hub")
    enc = create_encoder(f"hf-hub:{repo}", device="cpu")
    assert np.array_equal(enc.encode_images(pictures()), src.encode_images(pictures()))
    assert entry.pretrained == repo and "random" not in entry.description
    assert enc.weights_id == repo == expected_config(entry)["weights"]  # the manifest names them
    assert downloads == (["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
                         if case == "bin only on the hub" else [])


BAD_NAMES = {"hf-hub:": "empty", "hf-hub:a/b/c": "one '/'", "hf-hub:a b/c": "letters, digits",
             "hf-hub:../x": "'..'", "hf-hub:-a/b": "letters, digits", "hf-hub:a/b.git": ".git",
             "hf-hub:a/" + "b" * 97: "96", "open_clip:../x": "open_clip:ARCH[@PRETRAINED]",
             "sig lip": "Did you mean 'siglip'", "x" * 500: "500 characters"}


@pytest.mark.parametrize("name", BAD_NAMES)
def test_malformed_model_names_are_one_clear_error_before_any_hub_call(name, tmp_path, sample_dir, tiny_store,
                                                                       monkeypatch):
    import huggingface_hub
    from clihelp import fails

    def no_hub(*a, **kw):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", no_hub)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    for args in (["models", "download", name], ["embed", sample_dir, "--model", name, "--store", tmp_path / "s"],
                 ["search-text", "red bag", "--model", name, "--store", tiny_store],
                 ["search-image", "bag-tote-red", "--model", name, "--store", tiny_store]):
        line = fails(*args, says=BAD_NAMES[name])
        assert len(line) < 400, line  # a 500-character name is not echoed whole
    with pytest.raises(UnknownModel):
        resolve(name)


def test_well_formed_names_pass_the_check():
    from vrec.models.registry import check_model_name

    for name in ("siglip", "tiny-cnn", "hf-hub:timm/ViT-B-16-SigLIP", "hf-hub:Marqo/marqo-fashionSigLIP",
                 "hf-hub:a_b/c.d-e", "open_clip:ViT-B-16-SigLIP@webli", "open_clip:RN50"):
        assert check_model_name(name) == name


def _tiny_cfg(**pre):
    from vrec.models.registry import TINY_SIGLIP_CONFIG

    return {"model_cfg": json.loads(json.dumps(TINY_SIGLIP_CONFIG)), "preprocess_cfg": pre}


def _with(cfg, path, value):
    keys = path.split(".")
    node = cfg
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return cfg


BAD_CONFIGS = {
    "not json": ("{'model_cfg':", "cannot be read as JSON"),
    "a list": ([1, 2], "no 'model_cfg' object"),
    "text dim": (_with(_tiny_cfg(), "model_cfg.embed_dim", "abc"), "model_cfg.embed_dim 'abc'"),
    "no vision": (_with(_tiny_cfg(), "model_cfg.vision_cfg", None), "model_cfg.vision_cfg None"),
    "huge size": (_with(_tiny_cfg(), "model_cfg.vision_cfg.image_size", 10**9), "model_cfg.vision_cfg.image_size"),
    "mean": (_tiny_cfg(mean=["a", 0, 0]), "preprocess_cfg.mean"),
    "std zero": (_tiny_cfg(std=[0, 0, 0]), "preprocess_cfg.std"),
    "interpolation": (_tiny_cfg(interpolation="random"), "preprocess_cfg.interpolation 'random'"),
    "unbuildable": (_with(_tiny_cfg(), "model_cfg.vision_cfg.layers", "many"), "model_cfg open_clip cannot build"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_a_damaged_or_hostile_hub_config_is_one_clear_error_naming_file_and_field(case, tmp_path, monkeypatch,
                                                                                  sample_dir):
    import huggingface_hub
    from clihelp import fails
    from safetensors.torch import save_file

    content, says = BAD_CONFIGS[case]
    path = tmp_path / "open_clip_config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo, filename, *a, **kw: str(path) if filename == path.name else None)
    save_file({"x": torch.zeros(1)}, str(tmp_path / "w.safetensors"))  # weights here: the model gets built
    line = fails("embed", sample_dir, "--model", "hf-hub:someone/odd-model", "--weights", tmp_path / "w.safetensors",
                 "--store", tmp_path / "store", says=says)
    assert str(path) in line and "open_clip_config.json" in line


def test_an_open_clip_architecture_without_weights_is_refused_not_random(sample_dir, tmp_path):
    from clihelp import fails

    for args in (["embed", sample_dir, "--model", "open_clip:RN50", "--store", tmp_path / "s"],
                 ["models", "download", "open_clip:RN50"]):
        fails(*args, says="names no pretrained weights, so its vectors would be random")
    assert not (tmp_path / "s" / "models").exists()


def test_a_weights_file_that_cannot_be_weights_is_refused_before_it_is_read(sample_dir, tmp_path):
    from clihelp import fails

    huge = tmp_path / "huge.safetensors"
    with open(huge, "wb") as f:
        f.truncate(50 << 30)  # sparse: hashing it whole would take minutes
    fails("embed", sample_dir, "-m", "tiny-cnn", "--weights", huge, "--store", tmp_path / "s", says="larger than any")
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    fails("embed", sample_dir, "-m", "tiny-cnn", "--weights", text, "--store", tmp_path / "s",
          says="neither safetensors nor a PyTorch state dict")
