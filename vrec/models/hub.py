"""Files from the Hugging Face hub: from the local cache when they are there, else downloaded once.

Weights, tokenizers and hf-hub model configurations live on the hub. Two things matter to a user
here: a file already in the cache never costs a network round trip, and a machine without
network learns in seconds which file is missing and how to bring it over (not after the hub
client's half minute of retries, nor as a traceback).
"""
from __future__ import annotations

import json
import logging
import os
import re

from vrec.base.errors import ModelUnavailable, UnknownModel

log = logging.getLogger(__name__)

# one part of a repository id as the hub allows it: letters, digits, '-', '_', '.', at most 96,
# not starting nor ending with '-' or '.' (huggingface_hub's validate_repo_id)
_REPO_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?")


def cache_dir() -> str:
    """Where the hub client keeps its downloads (HF_HOME / HF_HUB_CACHE, else its default)."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
        return str(HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        return os.path.expanduser("~/.cache/huggingface/hub")


def offline_help(name: str, what: str, reason: str) -> str:
    """One paragraph for weights that are neither here nor downloadable: what to copy, and where."""
    return (
        f"Model {name!r} needs weights that are not on this machine ({what}) and they could not be "
        f"downloaded ({reason}). On a machine with internet, run 'vrec models download {name}', then "
        f"copy its Hugging Face cache ({cache_dir()}) to the same place here, or point HF_HOME at "
        f"the copy, and set HF_HUB_OFFLINE=1. Or pass a local weights file with --weights PATH "
        f"(safetensors or a plain PyTorch state dict)."
    )


def repo_problem(repo: str) -> str | None:
    """Why ``repo`` cannot be a Hugging Face model repository id (``ORG/NAME``), or None."""
    if not isinstance(repo, str) or not repo:
        return "it is empty"
    if repo.count("/") != 1:
        return "a repository id is ORG/NAME, with one '/'"
    if "--" in repo or ".." in repo:
        return "it cannot contain '--' or '..'"
    if not all(_REPO_PART.fullmatch(part) for part in repo.split("/")):
        return ("each part uses only letters, digits, '-', '_' and '.', does not start or end with '-' or '.', "
                "and has at most 96 characters")
    if repo.endswith(".git"):
        return "it cannot end in '.git'"
    return None


def check_repo_id(repo: str, name: str | None = None) -> str:
    """``repo`` when it is a valid hub repository id, else :class:`UnknownModel` (before any
    network or hub call); ``name`` is the model name the user typed, for the message."""
    why = repo_problem(repo)
    if why:
        shown = repr(name if name is not None else repo)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise UnknownModel(f"Model {shown} does not name a Hugging Face repository ({why}); "
                           f"write it as hf-hub:ORG/NAME, e.g. hf-hub:timm/ViT-B-16-SigLIP.")
    return repo


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


def hub_file(name: str, repo: str, filename: str, size_mb: int, missing_ok: bool = False) -> str | None:
    """One file of model ``name`` from the Hugging Face hub, from the cache when it is there.

    ``size_mb`` (when not 0) announces the download on stderr. With ``missing_ok``, a file the
    repository does not hold gives None (the caller has another name to try); every other
    failure is a :class:`ModelUnavailable` that says how to bring the file over by hand.
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    check_repo_id(repo, name)
    cached = try_to_load_from_cache(repo, filename)
    if isinstance(cached, str):
        return cached
    why = hub_unreachable()
    if why:
        raise ModelUnavailable(offline_help(name, f"{repo}/{filename}", why))
    if size_mb:
        log.info(f"Downloading {name} weights ({repo}, about {size_mb} MB) into {cache_dir()}; this happens once.")
    try:
        return hf_hub_download(repo, filename)
    except Exception as e:  # network errors come in many types; all mean the same to the user
        if missing_ok and type(e).__name__ in ("EntryNotFoundError", "RemoteEntryNotFoundError"):
            return None
        raise ModelUnavailable(offline_help(name, f"{repo}/{filename}", type(e).__name__)) from None


def config_error(name: str, path: str, problem: str) -> ModelUnavailable:
    """One sentence for a model configuration file that vrec cannot use: which file, what is wrong."""
    return ModelUnavailable(
        f"The open_clip_config.json of {name} ({path}) {problem}, so it describes no usable open_clip model; "
        f"if the cached copy is damaged, delete it and run 'vrec models download {name}' again.")


def open_clip_config(name: str) -> dict:
    """The ``open_clip_config.json`` of an ``hf-hub:ORG/NAME`` model: ``model_cfg`` (the
    architecture) and, where given, ``preprocess_cfg`` (the recipe its weights were trained with).

    A file that is not a JSON object with those objects is a :class:`ModelUnavailable` naming the
    file; the fields inside are checked where they are read (``registry``), with ``path`` (added
    here: where the file is) for their messages."""
    path = hub_file(name, check_repo_id(name[len("hf-hub:"):], name), "open_clip_config.json", 0)
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:  # ValueError: not JSON, not UTF-8
        raise config_error(name, path, f"cannot be read as JSON ({str(e)[:100]})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_cfg"), dict):
        raise config_error(name, path, "has no 'model_cfg' object")
    if not isinstance(cfg.setdefault("preprocess_cfg", {}), dict):
        raise config_error(name, path, "has a 'preprocess_cfg' that is not an object")
    cfg["path"] = path
    return cfg
