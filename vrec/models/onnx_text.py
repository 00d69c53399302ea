"""The text tower on onnxruntime: ``OnnxTextEncoder`` answers text queries from an export (see
:mod:`vrec.models.onnx_cache` for where exports live and how they are checked, and
:mod:`vrec.models.onnx_export` for how one is made), with open_clip's text cleaning done in Python
step by step as open_clip does it."""
from __future__ import annotations

import html
import string
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vrec.base.errors import QueryError
from vrec.models.encoder_base import Encoder
from vrec.models.onnx_cache import BATCH, check_export, export_folder
from vrec.models.registry import ModelEntry

# --- text cleaning, exactly as open_clip's tokenizers do it -----------------------------------

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def basic_clean(text: str) -> str:
    """ftfy's repairs, HTML entities unescaped twice, outer whitespace stripped (open_clip's order).

    Printable ASCII without '&' is left as is by ftfy and html, so ftfy (0.1 s to import) is
    only imported for other text."""
    if not (text.isascii() and text.isprintable() and "&" not in text):
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return text.strip()


def clean(text: str, mode: str) -> str:
    """open_clip's cleaning ``mode`` ('lower', 'whitespace' or 'canonicalize') of one text."""
    text = basic_clean(text)
    if mode == "canonicalize":
        text = text.replace("_", " ").translate(_PUNCTUATION).lower()
    text = " ".join(text.split())
    return text.lower() if mode == "lower" else text


# --- the encoder ------------------------------------------------------------------------------

def _session_options(ort):
    so = ort.SessionOptions()
    # the graph was optimised at export; loading it as is, without pre-packing the weights, takes
    # ~0.04 s instead of ~1 s for a ViT-B text tower (bench/cold_query.py)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.add_session_config_entry("session.disable_prepacking", "1")
    # threads that spin while waiting for work take CPU from everything else on a busy 2-core
    # machine: one query measured 0.48 s without spinning against 0.57 s with it
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


class OnnxTextEncoder(Encoder):
    """An open_clip model's text tower on onnxruntime, behind vrec's Encoder interface.

    Pictures go to the torch encoder that ``image_loader`` builds on first use; without one (a
    text-only load) they are refused, as a text-only torch encoder refuses them.
    """

    backend = "onnxruntime"

    def __init__(self, entry: ModelEntry, weights_id: str, folder: Path, meta: dict, session, tokenizer,
                 load_timings: dict, image_loader=None):
        self.entry = entry
        self.weights_id = weights_id
        self.device = "cpu"
        self.precision = "fp32"
        self.folder = folder
        self.meta = meta
        self._session = session
        self._tokenizer = tokenizer
        self._image_loader = image_loader
        self._images = None
        self.load_timings = load_timings
        self.last_timings: dict = {}

    @property
    def model(self):
        return self._image_encoder().model if self._image_loader else None

    def _image_encoder(self):
        if self._images is None:
            if self._image_loader is None:
                raise QueryError(f"This {self.name} encoder was loaded for text only.")
            self._images = self._image_loader()
        return self._images

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self._image_encoder().encode_pixels(pixels)

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        """int64 [n, context length] token ids, equal to open_clip's tokenizer's."""
        tok = self.meta["tokenizer"]
        encoded = self._tokenizer.encode_batch([clean(t, tok["clean"]) for t in texts])
        ids = np.array([e.ids for e in encoded], dtype=np.int64).reshape(len(texts), tok["context_length"])
        if tok.get("zero_token_id") is not None:  # open_clip's strip_sep_token
            ids[ids == tok["zero_token_id"]] = 0
        return ids

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        t0 = time.perf_counter()
        ids = self.tokenize(list(texts))
        t1 = time.perf_counter()
        io = self.meta["model"]
        parts = [self._session.run([io["output"]], {io["input"]: ids[i:i + BATCH]})[0] for i in range(0, len(ids), BATCH)]
        v = np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, self.dim), np.float32)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        self.last_timings = {"tokenise": t1 - t0, "encode": time.perf_counter() - t1}
        return v

    @property
    def logit_scale(self) -> float | None:
        return self.meta["model"]["logit_scale"]

    @property
    def logit_bias(self) -> float | None:
        return self.meta["model"]["logit_bias"]


def open_encoder(entry: ModelEntry, weights_id: str, image_loader=None) -> tuple[OnnxTextEncoder | None, str]:
    """(the ONNX text encoder, "") when a valid export is there, else (None, why not).

    Imports nothing heavy: onnxruntime, tokenizers and numpy.
    """
    t0 = time.perf_counter()
    meta, why = check_export(entry, weights_id)
    if meta is None:
        return None, why
    t1 = time.perf_counter()
    import onnxruntime as ort
    from tokenizers import Tokenizer

    t2 = time.perf_counter()
    folder = export_folder(entry, weights_id)
    files = meta["files"]
    try:
        session = ort.InferenceSession(str(folder / files["graph"]["name"]), _session_options(ort),
                                       providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(folder / files["tokenizer"]["name"]))
    except Exception as e:  # whatever onnxruntime or tokenizers make of a damaged file
        return None, f"the export cannot be opened ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    timings = {"checks": t1 - t0, "onnxruntime import": t2 - t1, "session": time.perf_counter() - t2}
    return OnnxTextEncoder(entry, weights_id, folder, meta, session, tokenizer, timings, image_loader), ""


