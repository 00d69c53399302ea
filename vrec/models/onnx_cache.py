"""Text queries without torch: a model's text tower exported once to ONNX and run with onnxruntime.

A cold ``vrec search-text`` on torch spends seconds importing torch and open_clip and building the
model before it encodes a few words. The first text query of a model (or ``vrec models download``)
therefore exports the text tower once, and every later query of any process answers from the
export: onnxruntime, the ``tokenizers`` library and numpy, no torch, open_clip nor transformers.

Where: in the user's cache, not in the store, because an export belongs to the model's weights
and serves every store embedded with them::

    $VREC_CACHE_DIR (default $XDG_CACHE_HOME/vrec, else ~/.cache/vrec)
      text-onnx/<model>/<weights id>/export.json        what the export stands for, and checks
      text-onnx/<model>/<weights id>/text-<key>.onnx     the graph (pre-optimised by onnxruntime)
      text-onnx/<model>/<weights id>/text-<key>.onnx.data  its weights
      text-onnx/<model>/<weights id>/tokenizer-<key>.json  the tokenizer, as a `tokenizers` JSON
      text-onnx/<model>/<weights id>/verified.json      each file's stamp when its digest last matched

``export.json`` is written last (atomically), so a reader sees a whole export or none; ``key`` is
new for each export, so a reader never mixes two. Its ``identity`` (vrec, open_clip, torch,
onnxruntime, tokenizers and transformers versions, the model and its weights id) and the weights
digest must match the installation and weights of the moment, every field vrec reads from it must
be of its kind (a ``logit_scale`` that is not a positive number, a file name with a path...), and
its files must be the bytes exported, or the export is stale or damaged: it is never used, and the
next text query rebuilds it (torch answers meanwhile). The files' check, on every use: each file's
size and stamp (size, mtime, ctime, inode: ``os.stat``), and 32 sampled blocks of the data file;
whenever a stamp differs from the one recorded in ``verified.json`` after the file's full SHA-256
last matched, the file is hashed whole again. A query runs these checks on the text tower's
thread, while the catalog loads. Set ``VREC_TEXT_ONNX=0`` to keep every text query on torch.

The tokenizer JSON holds open_clip's tokenisation proper (BPE or sentencepiece vocabulary, special
tokens, truncation to the context length with the end token kept, padding); open_clip's text
cleaning (ftfy, HTML entities, lower-casing or canonicalising, whitespace) runs in Python here,
step by step as open_clip does it, because a ``tokenizers`` normaliser cannot lower-case exactly
as Python does (it differs on the Greek final sigma and some 55 newer code points). An export is
published only after its token ids equal open_clip's and its vectors equal torch's (cosine at
least 0.9999) on a set of probe texts.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
import time
from pathlib import Path

from vrec.base.files import folder_name, write_json
from vrec.models.hub import repo_problem
from vrec.models.registry import ModelEntry, finite_number, store_key, whole_number

FORMAT = 2  # 2: every file's full digest recorded, checked whenever its stamp changes (verified.json)
MIN_COSINE = 0.9999
BATCH = 64  # texts per onnxruntime call: bounds memory for long lists (tags, eval)
SAMPLE_BLOCKS, SAMPLE_BLOCK = 32, 1 << 16  # the weights file's quick digest: 32 blocks of 64 KiB
VERIFIED = "verified.json"  # each file's stamp when its full digest last matched
RACY_NS = 2 * 10**9  # a file changed this recently is hashed again next time (timestamps are coarse)
MAX_META = 1 << 20  # an export.json is a few KB
CLEAN_MODES = ("lower", "whitespace", "canonicalize")
PROBES = (
    "a photo of a red leather bag.", "Minimalist LEATHER tote!!", "  spaced   out\ttext\n with\u00a0gaps ",
    "café crème & thé — 10% off", "ΟΔΟΣ-Α straße İstanbul ǅ", "&amp;amp; html &lt;b&gt; entities", "emoji 👜👠 ok",
    "snake_case-words, with: (punctuation)? [yes] {no} 'quoted' \"double\"", "", "Ｆｕｌｌｗｉｄｔｈ ﬁ ligature",
    "don't they're we've i'm you'll he'd it's", "x" * 300, " ".join(["word"] * 120), "1234 5678.90 $5",
)


def enabled() -> bool:
    """Whether the ONNX text path may be used here (not switched off, its packages installed)."""
    if os.environ.get("VREC_TEXT_ONNX", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    from importlib.util import find_spec

    try:
        return all(find_spec(m) is not None for m in ("onnxruntime", "tokenizers"))
    except (ImportError, ValueError):  # a module blocked in sys.modules, a broken install
        return False


def cache_root() -> Path:
    """The user cache vrec keeps its text-tower exports in."""
    if os.environ.get("VREC_CACHE_DIR"):
        return Path(os.environ["VREC_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vrec"


def export_folder(entry: ModelEntry, weights_id: str) -> Path:
    return cache_root() / "text-onnx" / store_key(entry.name) / folder_name(weights_id)


# --- identity and checks ----------------------------------------------------------------------

_PACKAGES = ("open_clip_torch", "torch", "onnxruntime", "tokenizers", "transformers")


def _versions() -> dict:
    """Installed versions of the packages an export depends on, read from the dist-info folder
    names (milliseconds; importing them or asking importlib.metadata costs far more)."""
    found: dict[str, str] = {}
    for d in sys.path:
        try:
            names = os.listdir(d or ".")
        except OSError:
            continue
        for n in names:
            if n.endswith(".dist-info"):
                name, _, version = n[:-len(".dist-info")].partition("-")
                key = name.lower().replace("-", "_").replace(".", "_")
                if key in _PACKAGES and key not in found:
                    found[key] = version
    for p in _PACKAGES:
        if p not in found:
            try:
                from importlib.metadata import version

                found[p] = version(p)
            except Exception:
                found[p] = "none"
    return {p: found[p] for p in _PACKAGES}


def identity(entry: ModelEntry, weights_id: str) -> dict:
    """What an export stands for: it is used only while all of this is unchanged."""
    from vrec.base import __version__

    return {"format": FORMAT, "vrec": __version__, "model": entry.name, "architecture": entry.arch,
            "weights_id": weights_id, **_versions()}


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sampled_digest(path: str | os.PathLike) -> str:
    """A digest of a big file's size and of blocks spread over it, read in milliseconds."""
    size = os.path.getsize(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for i in range(SAMPLE_BLOCKS):
            f.seek(max(0, size - SAMPLE_BLOCK) * i // (SAMPLE_BLOCKS - 1))
            h.update(f.read(SAMPLE_BLOCK))
    return h.hexdigest()


def _hub_revision(repo: str) -> str | None:
    """The commit the hub client's cache holds as a repository's 'main' (no torch, no network)."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:  # pragma: no cover
        return None
    try:
        return (Path(HF_HUB_CACHE) / ("models--" + repo.replace("/", "--")) / "refs" / "main").read_text().strip()
    except OSError:
        return None


def _hub_cached(repo: str, filename: str) -> Path | None:
    """Where the hub client's cache holds a repository's file at its 'main' revision."""
    from huggingface_hub.constants import HF_HUB_CACHE

    commit = _hub_revision(repo)
    path = Path(HF_HUB_CACHE) / ("models--" + repo.replace("/", "--")) / "snapshots" / str(commit) / filename
    return path if commit and path.is_file() else None


def _weights_record(entry: ModelEntry, weights_id: str) -> dict:
    """The weights an export is made from, with what later checks compare (at export time)."""
    if weights_id.startswith("sha256:"):  # a --weights file: weights_id is its content digest
        return {"kind": "file", "digest": weights_id}
    if entry.tiny:  # seeded random weights: the seed, with torch's and open_clip's versions
        return {"kind": "seed", "digest": weights_id}
    from vrec.models.weights import _hub_location, file_digest, weights_file

    path = weights_file(entry)
    if not path:
        raise ValueError(f"{entry.name} has random weights; there is nothing stable to export")
    st = os.stat(path)
    rec = {"kind": "pretrained", "path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
           "ctime_ns": st.st_ctime_ns, "ino": st.st_ino, "digest": file_digest(path)}
    loc = _hub_location(entry)
    if loc:
        rec["hub"] = list(loc)
    return rec


def _weights_problem(rec: dict) -> str | None:
    """Why the recorded weights are not the ones torch would load now (None when they are).

    The weights file is hashed only when its place, size, times or inode changed; when its bytes
    are still the same, ``rec`` is updated so that the next query need not hash it again.
    """
    if rec.get("kind") in ("file", "seed"):
        return None  # the weights id in the identity is the digest (or the seed)
    path = _hub_cached(*rec["hub"]) if rec.get("hub") else Path(rec.get("path", ""))
    if path is None or not path.is_file():
        return "the weights file it was made from is no longer where the model loads it"
    st = os.stat(path)
    now = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
           "ino": st.st_ino}
    if all(rec.get(k) == v for k, v in now.items()):
        return None
    from vrec.models.weights import file_digest

    if file_digest(path) != rec.get("digest"):
        return "the model's weights changed since the export"
    rec.update(now)
    rec["refreshed"] = True
    return None


def _tokenizer_problem(tok: dict) -> str | None:
    """Why the tokenizer open_clip loads now may differ from the exported one (a new revision on
    the hub), or None."""
    if tok.get("hub") and _hub_revision(tok["hub"][0]) != tok["hub"][1]:
        return f"the tokenizer's revision on the hub ({tok['hub'][0]}) changed since the export"
    return None


def _stamp(st: os.stat_result) -> list[int]:
    """What changes whenever a file's bytes do: size, times and inode (the ctime cannot be set
    back, not even by os.utime, so a change that restores the mtime still shows)."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def read_small_json(path: Path):
    """A JSON file of the export's folder, read only when it is a regular file of at most
    MAX_META bytes (a FIFO or a huge file put there is an error, never a hang nor a memory hog)."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError("not a regular file")
    if st.st_size > MAX_META:
        raise ValueError(f"{st.st_size} bytes, far more than vrec writes there")
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _verified(folder: Path) -> dict:
    """File name -> stamp when its full digest last matched (anything unreadable: nothing)."""
    try:
        rec = read_small_json(folder / VERIFIED)
    except (OSError, ValueError):
        return {}
    return rec["files"] if isinstance(rec, dict) and isinstance(rec.get("files"), dict) else {}


def _remember_verified(folder: Path, stamps: dict) -> None:
    from vrec.base.files import write_json

    try:
        write_json(folder / VERIFIED, {"files": stamps})
    except Exception:  # a read-only cache: the files are hashed again next time
        pass


def _files_problem(folder: Path, files: dict) -> str | None:
    """Why the export's files are not the bytes exported (None when they are).

    On every use: each file's size, and the data file's sampled digest (milliseconds). A file is
    hashed whole whenever its stamp differs from the one recorded when its digest last matched,
    so an unchanged export costs a stat per file and a changed one is never used unchecked.
    """
    known, fresh = _verified(folder), {}
    for role, f in files.items():
        p = folder / f["name"]
        try:
            st = os.stat(p)
        except OSError:
            return f"its {role} file {f['name']} is missing"
        if not stat.S_ISREG(st.st_mode):  # a FIFO would hang the digest
            return f"its {role} file {f['name']} is not a regular file"
        if st.st_size != f["size"]:
            return f"its {role} file {f['name']} has {st.st_size} bytes, not {f['size']}"
        stamp = _stamp(st)
        if ("sample" in f and sampled_digest(p) != f["sample"]) or \
                (known.get(f["name"]) != stamp and sha256_file(p) != f["sha256"]):
            return f"its {role} file {f['name']} is damaged (its content differs from the export's)"
        if known.get(f["name"]) != stamp and time.time_ns() - st.st_ctime_ns > RACY_NS:
            fresh[f["name"]] = stamp
    if fresh:
        _remember_verified(folder, {f["name"]: fresh.get(f["name"], known.get(f["name"])) for f in files.values()})
    return None


def _short(value) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _plain_file(name) -> bool:
    """A file name of its own folder (no path, not hidden)."""
    return isinstance(name, str) and bool(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}", name)) and ".." not in name


def _hub_pair(v, second) -> bool:
    """[repository id, file name or commit] as export.json records a hub location."""
    return isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and repo_problem(v[0]) is None and second(v[1])


def _weights_field(w) -> tuple | None:
    if not isinstance(w, dict) or w.get("kind") not in ("file", "seed", "pretrained"):
        return "weights", w, "an object of kind file, seed or pretrained"
    if w["kind"] != "pretrained":
        return None
    for key in ("size", "mtime_ns"):
        if not whole_number(w.get(key), 0, 2**63):
            return f"weights.{key}", w.get(key), "a whole number"
    if not isinstance(w.get("path"), str) or not isinstance(w.get("digest"), str):
        return "weights.path", w.get("path"), "a path with its digest"
    if w.get("hub") is not None and not _hub_pair(w["hub"], _plain_file):
        return "weights.hub", w.get("hub"), "[repository, file name]"
    return None


def _tokenizer_field(tok) -> tuple | None:
    if not isinstance(tok, dict) or tok.get("clean") not in CLEAN_MODES:
        return "tokenizer.clean", tok.get("clean") if isinstance(tok, dict) else tok, "one of " + ", ".join(CLEAN_MODES)
    if not whole_number(tok.get("context_length"), 1, 4096):
        return "tokenizer.context_length", tok.get("context_length"), "a whole number from 1 to 4096"
    if tok.get("zero_token_id") is not None and not whole_number(tok["zero_token_id"], 0, 2**31):
        return "tokenizer.zero_token_id", tok["zero_token_id"], "a token id"
    if tok.get("hub") is not None and not _hub_pair(tok["hub"], lambda c: isinstance(c, str) and c.isalnum()):
        return "tokenizer.hub", tok["hub"], "[repository, commit]"
    return None


def _files_field(files) -> tuple | None:
    if not isinstance(files, dict) or set(files) != {"graph", "data", "tokenizer"}:
        return "files", files, "the graph, data and tokenizer files"
    for role, f in files.items():
        f = f if isinstance(f, dict) else {}
        if not _plain_file(f.get("name")):
            return f"files.{role}.name", f.get("name"), "a file name in the export's folder"
        if not whole_number(f.get("size"), 0, 2**63):
            return f"files.{role}.size", f.get("size"), "a whole number of bytes"
        for key in ("sha256", "sample") if role == "data" else ("sha256",):
            if not (isinstance(f.get(key), str) and re.fullmatch(r"[0-9a-f]{64}", f[key])):
                return f"files.{role}.{key}", f.get(key), "a SHA-256 digest"
    return None


def _model_field(model, dim: int) -> tuple | None:
    if not isinstance(model, dict) or model.get("dim") != dim:
        return "model.dim", model.get("dim") if isinstance(model, dict) else model, f"{dim}, the model's"
    if not (finite_number(model.get("logit_scale")) and model["logit_scale"] > 0):
        return "model.logit_scale", model.get("logit_scale"), "a positive number"
    if model.get("logit_bias") is not None and not finite_number(model["logit_bias"]):
        return "model.logit_bias", model["logit_bias"], "a number"
    if not (isinstance(model.get("input"), str) and isinstance(model.get("output"), str)):
        return "model.input", model.get("input"), "the graph's input and output names"
    return None


def _meta_problem(meta: dict, entry: ModelEntry) -> str | None:
    """Which field of export.json cannot be used as it is (None when all can): a damaged or
    hostile file is never used, so a query never fails on it (e.g. a logit_scale 'abc')."""
    bad = (_weights_field(meta.get("weights")) or _tokenizer_field(meta.get("tokenizer"))
           or _files_field(meta.get("files")) or _model_field(meta.get("model"), entry.dim))
    return None if bad is None else f"has {bad[0]} {_short(bad[1])}, not {bad[2]}"


def _read_meta(folder: Path) -> tuple[dict | None, str]:
    path = folder / "export.json"
    try:
        meta = read_small_json(path)
    except FileNotFoundError:
        return None, "no export yet"
    except (OSError, ValueError) as e:
        return None, f"its export.json ({path}) cannot be read ({str(e)[:100]})"
    if not isinstance(meta, dict):
        return None, f"its export.json ({path}) is not a JSON object"
    return meta, ""


def check_export(entry: ModelEntry, weights_id: str) -> tuple[dict | None, str]:
    """(the export's metadata, "") when a valid export is there, else (None, why not)."""
    folder = export_folder(entry, weights_id)
    meta, why = _read_meta(folder)
    if meta is None:
        return None, why
    new, old = identity(entry, weights_id), meta.get("identity")
    if not isinstance(old, dict):
        return None, f"its export.json ({folder / 'export.json'}) has no identity"
    if old != new:
        changed = [k for k in new if old.get(k) != new[k]]
        return None, "stale export (" + ", ".join(f"{k} {_short(old.get(k))} -> {new[k]}" for k in changed) + ")"
    why = _meta_problem(meta, entry)
    if why:
        return None, f"its export.json ({folder / 'export.json'}) {why}"
    try:
        why = _weights_problem(meta["weights"]) or _tokenizer_problem(meta["tokenizer"]) \
            or _files_problem(folder, meta["files"])
    except OSError as e:
        return None, f"its files cannot be read ({e.strerror or e})"
    if why:
        return None, why
    if meta["weights"].pop("refreshed", False):  # same weights, moved or touched: remember where
        try:
            write_json(folder / "export.json", meta)
        except Exception:
            pass
    return meta, ""


def failed_before(entry: ModelEntry, weights_id: str) -> str | None:
    """The reason an export of exactly this identity failed before (then it is not retried)."""
    try:
        rec = read_small_json(export_folder(entry, weights_id) / "failed.json")
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("identity") != identity(entry, weights_id):
        return None
    return str(rec.get("reason") or "it failed before")


