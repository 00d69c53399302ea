"""Fake Hugging Face caches for the domain models: each model's REAL open_clip architecture and
configuration at random (seeded) weights, laid out as the hub client caches a download, as
../shared/tools/fake_siglip_hub.py does for timm/ViT-B-16-SigLIP. Tokenizers are a small T5-style
sentencepiece model (the machinery is real, the vocabulary is not), so never judge quality here.

What each repository holds on the real hub (checked as docs/models.md says):
- Marqo/marqo-fashionSigLIP, Marqo/marqo-ecommerce-embeddings-B: open_clip ViT-B-16-SigLIP
  (768-d, 224 px), Marqo/marqo-ecommerce-embeddings-L: ViT-L-16-SigLIP-256 (1024-d, 256 px); an
  open_clip_config.json (model_cfg + preprocess_cfg: SigLIP's squash, bicubic, mean/std 0.5), the
  weights as open_clip_model.safetensors, and the tokenizer files in the same repository;
- timm/ViT-B-16-SigLIP2 and timm/ViT-B-16-SigLIP-i18n-256: open_clip's own configurations of the
  same names; weights and tokenizer in the repository open_clip's pretrained.py names.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

SHA = "0" * 40
MARQO_ARCH = {"fashion-siglip": "ViT-B-16-SigLIP", "ecommerce-b": "ViT-B-16-SigLIP",
              "ecommerce-l": "ViT-L-16-SigLIP-256"}
SIGLIP_PREPROCESS = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic",
                     "resize_mode": "squash"}
WORDS = ("a photo of the product red blue black white green navy leather cotton dress shirt bag shoes watch "
         "milk oat juice orange coffee bread cheese röd blå svart vit mjölk havre apelsin kaffe bröd ost väska "
         "skor klocka").split()


def snapshot(home: Path, repo: str) -> Path:
    """The snapshot folder of ``repo`` in the cache ``home`` (HF_HOME), made as the hub client makes it."""
    base = home / "hub" / ("models--" + repo.replace("/", "--"))
    snap = base / "snapshots" / SHA
    snap.mkdir(parents=True, exist_ok=True)
    (base / "refs").mkdir(exist_ok=True)
    (base / "refs" / "main").write_text(SHA)
    no = base / ".no_exist" / SHA  # files the repository does not have, as an online look-up records them
    no.mkdir(parents=True, exist_ok=True)
    (no / "config.json").touch()
    return snap


def tokenizer_files(folder: Path) -> None:
    """A tiny unigram sentencepiece tokenizer saved as T5TokenizerFast (tokenizer.json, spiece.model, ...)."""
    import sentencepiece as spm
    from transformers import T5TokenizerFast

    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(" ".join(WORDS[i:i + 7]) for i in range(0, len(WORDS), 3)) * 50)
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "spiece"), vocab_size=64,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", minloglevel=2)
    corpus.unlink()
    (folder / "spiece.vocab").unlink()
    T5TokenizerFast(vocab_file=str(folder / "spiece.model"), extra_ids=0).save_pretrained(str(folder))


def random_weights(model_cfg: dict, path: Path, seed: int = 0) -> None:
    """open_clip's model of ``model_cfg`` at seeded random weights, saved as safetensors."""
    import torch
    from open_clip.model import CLIP, CustomTextCLIP
    from safetensors.torch import save_file

    cfg = dict(model_cfg)
    custom = cfg.pop("custom_text", False)
    torch.manual_seed(seed)
    model = (CustomTextCLIP if custom else CLIP)(**cfg)
    with torch.no_grad():  # a released SigLIP's calibration, roughly
        model.logit_scale.fill_(4.77)
        model.logit_bias.fill_(-12.9)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def fake_model(home: Path, name: str, weights: bool = True, shared: dict | None = None) -> Path:
    """Put registry model ``name`` into the cache ``home``; returns the repository's snapshot folder.

    ``weights=False`` writes only the configuration and tokenizer (for checks that build nothing);
    ``shared`` maps an architecture to a weights file already made, which is hard-linked (two
    models of one architecture need not be built twice)."""
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    from vrec.models.registry import resolve

    entry = resolve(name)
    if entry.arch.startswith("hf-hub:"):
        repo, arch = entry.pretrained, MARQO_ARCH[name]
        cfg = open_clip.get_model_config(arch)
        cfg["text_cfg"]["hf_tokenizer_name"] = repo
        snap = snapshot(home, repo)
        (snap / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": SIGLIP_PREPROCESS}))
    else:
        arch = entry.arch
        cfg = open_clip.get_model_config(arch)
        repo = get_pretrained_cfg(arch, entry.pretrained)["hf_hub"].strip("/")
        assert cfg["text_cfg"]["hf_tokenizer_name"] == repo
        snap = snapshot(home, repo)
    tokenizer_files(snap)
    if weights:
        target = snap / "open_clip_model.safetensors"
        if shared is not None and arch in shared:
            os.link(shared[arch], target)
        else:
            random_weights(cfg, target)
            if shared is not None:
                shared[arch] = target
    return snap


def remove(home: Path) -> None:
    shutil.rmtree(home, ignore_errors=True)
