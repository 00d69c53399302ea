"""Files from the Hugging Face hub: from the local cache when they are there, else downloaded once.

Weights, tokenizers and hf-hub model configurations live on the hub. Two things matter to a user
here: a file already in the cache never costs a network round trip, and a machine without
network learns in seconds which file is missing and how to bring it over (not after the hub
client's half minute of retries, nor as a traceback).
"""
from __future__ import annotations

import json
import os
import sys

from vrec.base.errors import ModelUnavailable


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

    cached = try_to_load_from_cache(repo, filename)
    if isinstance(cached, str):
        return cached
    why = hub_unreachable()
    if why:
        raise ModelUnavailable(offline_help(name, f"{repo}/{filename}", why))
    if size_mb:
        print(f"Downloading {name} weights ({repo}, about {size_mb} MB) into {cache_dir()}; this happens once.",
              file=sys.stderr)
    try:
        return hf_hub_download(repo, filename)
    except Exception as e:  # network errors come in many types; all mean the same to the user
        if missing_ok and type(e).__name__ in ("EntryNotFoundError", "RemoteEntryNotFoundError"):
            return None
        raise ModelUnavailable(offline_help(name, f"{repo}/{filename}", type(e).__name__)) from None


def open_clip_config(name: str) -> dict:
    """The ``open_clip_config.json`` of an ``hf-hub:ORG/NAME`` model: ``model_cfg`` (the
    architecture) and, where given, ``preprocess_cfg`` (the recipe its weights were trained with)."""
    with open(hub_file(name, name[len("hf-hub:"):], "open_clip_config.json", 0)) as f:
        return json.load(f)
