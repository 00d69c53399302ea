"""Exporting a model's text tower to ONNX (once per weights): the graph, its weights and the
tokenizer as a ``tokenizers`` JSON, published only after its token ids equal open_clip's and its
vectors equal torch's on probe texts (see :mod:`vrec.models.onnx_cache` for where it goes)."""
from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vrec.base.files import atomic_path, now, write_json
from vrec.models.onnx_cache import (
    MIN_COSINE,
    PROBES,
    _hub_revision,
    _remember_verified,
    _stamp,
    _weights_record,
    export_folder,
    failed_before,
    identity,
    sampled_digest,
    sha256_file,
)
from vrec.models.onnx_text import OnnxTextEncoder, _session_options, clean, open_encoder

log = logging.getLogger(__name__)

# --- export -----------------------------------------------------------------------------------

def _tokenizer_spec(tok, context_length: int):
    """(tokenizers.Tokenizer, cleaning mode, id to zero) reproducing an open_clip tokenizer."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, processors

    kind = type(tok).__name__
    if kind == "SimpleTokenizer":  # CLIP's byte-level BPE, bundled with open_clip
        if getattr(tok, "reduction_fn", None) is not None:
            raise ValueError("open_clip's token reduction modes are not supported")
        mode = {"_clean_lower": "lower", "_clean_whitespace": "whitespace",
                "_clean_canonicalize": "canonicalize"}.get(getattr(tok.clean_fn, "__name__", ""))
        if mode is None:
            raise ValueError(f"unknown cleaning function {tok.clean_fn!r}")
        merges = [pair for pair, _ in sorted(tok.bpe_ranks.items(), key=lambda kv: kv[1])]
        t = Tokenizer(models.BPE(vocab=dict(tok.encoder), merges=merges, end_of_word_suffix="</w>"))
        t.pre_tokenizer = pre_tokenizers.Sequence([
            # open_clip's word pattern (case-insensitive); what it does not match is dropped
            pre_tokenizers.Split(Regex("(?i)" + tok.pat.pattern), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        specials = [tok.decoder[i] for i in tok.all_special_ids]
        t.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in specials])
        sot, eot = tok.decoder[tok.sot_token_id], tok.decoder[tok.eot_token_id]
        t.post_processor = processors.TemplateProcessing(
            single=f"{sot} $A {eot}", special_tokens=[(sot, tok.sot_token_id), (eot, tok.eot_token_id)])
        t.enable_truncation(max_length=context_length)  # keeps room for both special tokens
        t.enable_padding(length=context_length, pad_id=0, pad_token="<pad>")
        return t, mode, None
    if kind in ("HFTokenizer", "SigLipTokenizer"):  # a Hugging Face fast tokenizer (SigLIP's sentencepiece)
        if getattr(tok, "tokenizer_mode", "") not in ("", None):
            raise ValueError(f"open_clip's tokenizer mode {tok.tokenizer_mode!r} is not supported")
        hf = tok.tokenizer
        backend = getattr(hf, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(f"{type(hf).__name__} is not a fast (tokenizers-backed) tokenizer")
        if kind == "SigLipTokenizer":
            mode = "canonicalize"
        else:
            mode = {"_clean_lower": "lower", "_clean_whitespace": "whitespace",
                    "_clean_canonicalize": "canonicalize"}.get(getattr(tok.clean_fn, "__name__", ""))
            if mode is None:
                raise ValueError(f"unknown cleaning function {tok.clean_fn!r}")
        t = Tokenizer.from_str(backend.to_str())
        t.no_truncation()
        t.no_padding()
        t.enable_truncation(max_length=context_length, direction=getattr(hf, "truncation_side", "right"))
        t.enable_padding(length=context_length, direction=getattr(hf, "padding_side", "right"),
                         pad_id=hf.pad_token_id, pad_type_id=getattr(hf, "pad_token_type_id", 0) or 0,
                         pad_token=hf.pad_token)
        zero = hf.sep_token_id if getattr(tok, "strip_sep_token", False) else None
        return t, mode, zero
    raise ValueError(f"open_clip tokenizer {kind} is not supported")


def note(text: str) -> None:
    log.info("Note: %s", text)


def export(enc, texts: Sequence[str] = (), quiet: bool = False, why: str = "", force: bool = False) -> OnnxTextEncoder | None:
    """Export a torch open_clip encoder's text tower and tokenizer, check them, publish them.

    Returns the ONNX encoder, or None (with a note on stderr, and remembered so that the same
    installation and weights do not try again) when the export cannot be made or does not match
    torch. Never raises for export problems: the torch encoder keeps answering. ``why`` says why
    an export is needed (shown when it replaces a stale or damaged one); ``force`` tries again
    after an earlier failure.
    """
    entry, weights_id = enc.entry, enc.weights_id
    folder = export_folder(entry, weights_id)
    ident = identity(entry, weights_id)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / ".lock", "a")
    except OSError as e:
        note(f"cannot export {entry.name}'s text tower to {folder} ({e.strerror or e}); text queries stay on torch.")
        return None
    import fcntl

    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None  # another vrec process is exporting it right now
        found, _ = open_encoder(entry, weights_id)
        if found is not None:  # made by another process meanwhile
            return found
        if failed_before(entry, weights_id) and not force:
            return None
        t0 = time.perf_counter()
        if not quiet:
            again = f"rebuilding it: {why}; " if why and why != "no export yet" else ""
            note(f"exporting {entry.name}'s text tower to ONNX once, so that later text queries need no torch "
                 f"({again}a ViT-B takes about half a minute) -> {folder}")
        try:
            meta = _export(enc, folder, ident, list(texts))
        except Exception as e:
            reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
            if not isinstance(e, OSError):  # a full disk may pass; a model that does not export stays so
                _remember_failure(folder, ident, reason)
            note(f"could not export {entry.name}'s text tower to ONNX ({reason}); text queries stay on torch.")
            return None
        mb = sum(f["size"] for f in meta["files"].values()) / 1e6
        if not quiet:
            note(f"exported in {time.perf_counter() - t0:.0f} s ({mb:.0f} MB).")
        found, _ = open_encoder(entry, weights_id)
        return found


class _quiet_fds:
    """Send what C++ and Python print to stdout and stderr to /dev/null for a while (torch dumps
    a whole graph when an export fails). Only in a single-threaded process: in a server, other
    threads' output must not vanish, so there nothing is redirected."""

    def __enter__(self):
        import threading

        self.saved = []
        if threading.active_count() > 1:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = [os.dup(1), os.dup(2)]
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)

    def __exit__(self, *exc):
        if not self.saved:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in zip((1, 2), self.saved):
            os.dup2(saved, fd)
            os.close(saved)


def _tokenizer_hub(tok) -> list | None:
    """[repo, commit] of a Hugging Face tokenizer loaded from the hub cache, else None."""
    name = getattr(getattr(tok, "tokenizer", None), "name_or_path", "") or ""
    if name.startswith("hf-hub:"):
        name = name[len("hf-hub:"):]
    if name.count("/") != 1 or os.path.exists(name):
        return None
    commit = _hub_revision(name)
    return [name, commit] if commit else None


def _remember_failure(folder: Path, ident: dict, reason: str) -> None:
    try:
        write_json(folder / "failed.json", {"identity": ident, "reason": reason, "when": now()})
    except Exception:
        pass


def _export(enc, folder: Path, ident: dict, texts: list[str]) -> dict:
    """Export ``enc``'s text tower into ``folder`` (checked against open_clip's tokens and torch's
    vectors before it is published by export.json); returns export.json's content."""
    import secrets
    import shutil
    import tempfile

    t_start = time.perf_counter()
    model = enc.model
    ctx = int(getattr(getattr(model, "text", None), "context_length", 0) or getattr(model, "context_length", 0) or 77)
    tok = enc.tokenizer()
    tokenizer, mode, zero = _tokenizer_spec(tok, ctx)
    probes = list(PROBES) + [t for t in texts if isinstance(t, str)][:16]
    ours, theirs = _checked_tokens(tokenizer, tok, mode, zero, probes)
    weights = _weights_record(enc.entry, enc.weights_id)
    key = secrets.token_hex(6)
    graph, data, tok_name = f"text-{key}.onnx", f"text-{key}.onnx.data", f"tokenizer-{key}.json"
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder))
    try:
        _write_graph(enc, theirs[:2], tmp, graph, data)
        cos = _check_vectors(enc, tmp / graph, ours, theirs)
        tokenizer.save(str(tmp / tok_name))
        files = {role: {"name": n, "size": os.path.getsize(tmp / n), "sha256": sha256_file(tmp / n)}
                 for role, n in (("graph", graph), ("data", data), ("tokenizer", tok_name))}
        files["data"]["sample"] = sampled_digest(tmp / data)
        for role in ("data", "graph", "tokenizer"):  # export.json, written last, publishes them
            with atomic_path(folder / files[role]["name"]) as dst:
                os.replace(tmp / files[role]["name"], dst)
        scale, bias = enc.logit_scale, enc.logit_bias
        meta = {"identity": ident, "weights": weights, "files": files,
                "tokenizer": {"clean": mode, "context_length": ctx, "zero_token_id": zero, "kind": type(tok).__name__,
                              "hub": _tokenizer_hub(tok)},
                "model": {"dim": enc.dim, "logit_scale": scale, "logit_bias": bias, "input": "tokens", "output": "features"},
                "checked": {"probes": len(probes), "min_cosine": cos},
                "export_seconds": round(time.perf_counter() - t_start, 2), "created": now()}
        write_json(folder / "export.json", meta)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _remove_leftovers(folder, {"export.json", ".lock", *(f["name"] for f in files.values())})
    # hashed whole above, in a folder of this process's own: their stamps now are those of the export
    _remember_verified(folder, {f["name"]: _stamp(os.stat(folder / f["name"])) for f in files.values()})
    return meta


def _checked_tokens(tokenizer, tok, mode: str, zero, probes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The probe texts' token ids by the tokenizers JSON and by open_clip, which must be equal."""
    ours = np.array([e.ids for e in tokenizer.encode_batch([clean(t, mode) for t in probes])], np.int64)
    if zero is not None:
        ours[ours == zero] = 0
    theirs = tok(probes).cpu().numpy()
    if ours.shape != theirs.shape or not np.array_equal(ours, theirs):
        bad = next((p for p, a, b in zip(probes, ours, theirs) if not np.array_equal(a, b)), probes[0])
        raise ValueError(f"the tokenizers JSON does not reproduce open_clip's tokens (e.g. for {bad[:40]!r})")
    return ours, theirs


def _write_graph(enc, example_tokens: np.ndarray, tmp: Path, graph: str, data: str) -> None:
    """torch's ONNX export of the text tower, optimised once by onnxruntime and saved as ``graph`` with
    its weights in one external file ``data`` (which onnxruntime maps instead of parsing)."""
    import warnings

    import onnxruntime as ort
    import torch

    class TextTower(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, tokens):
            return self.m.encode_text(tokens)

    example = torch.from_numpy(example_tokens.copy()).to(enc.device)
    # gradients on: with them off, torch's MultiheadAttention takes a fused fast path that has
    # no ONNX form; the exporter's chatter (and a failed graph's dump) stays off the terminal
    with torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings(), _quiet_fds():
        warnings.simplefilter("ignore")
        torch.onnx.export(TextTower(enc.model).eval(), (example,), str(tmp / "raw.onnx"), input_names=["tokens"],
                          output_names=["features"], dynamic_axes={"tokens": {0: "batch"}, "features": {0: "batch"}},
                          opset_version=17, dynamo=False)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp / graph)
    so.add_session_config_entry("session.optimized_model_external_initializers_file_name", data)
    so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    so.log_severity_level = 3
    ort.InferenceSession(str(tmp / "raw.onnx"), so, providers=["CPUExecutionProvider"])
    os.unlink(tmp / "raw.onnx")


def _check_vectors(enc, graph: Path, ours: np.ndarray, theirs: np.ndarray) -> float:
    """The smallest cosine between the published graph's vectors and torch's on the probes (at least
    MIN_COSINE, or the export is refused)."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(graph), _session_options(ort), providers=["CPUExecutionProvider"])
    got = session.run(["features"], {"tokens": ours})[0].astype(np.float64)
    with torch.no_grad():
        want = enc.model.encode_text(torch.from_numpy(theirs).to(enc.device)).float().cpu().numpy().astype(np.float64)
    got /= np.maximum(np.linalg.norm(got, axis=1, keepdims=True), 1e-12)
    want /= np.maximum(np.linalg.norm(want, axis=1, keepdims=True), 1e-12)
    cos = float((got * want).sum(1).min())
    if not cos >= MIN_COSINE:
        raise ValueError(f"onnxruntime's vectors differ from torch's (cosine {cos:.6f} < {MIN_COSINE})")
    return cos


def _remove_leftovers(folder: Path, keep: set[str]) -> None:
    """Earlier exports and left-overs of interrupted ones (verified.json is written anew after)."""
    import shutil

    for p in folder.iterdir():
        if p.name not in keep:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                try:
                    p.unlink()
                except OSError:
                    pass
