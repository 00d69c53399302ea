"""Search the catalog by text or by image, returning plain tables.

Scores: ``score`` is the cosine similarity of unit vectors (1 = same direction). For text queries
on SigLIP-type models, ``probability`` is the model's own match probability,
sigmoid(logit_scale * cosine + logit_bias): SigLIP was trained to output exactly this per
image-text pair, so unlike a softmax over results it means the same thing in every query.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import QueryError, UnknownItem, suggest
from .filters import apply_filters
from .index import search_rows
from .store import ModelStore, Store, as_store

DEFAULT_TEMPLATE = "a photo of {}."


@dataclass
class SearchResult:
    """A query and its ranked results (``table``: rank, score, [probability], id, path, metadata...)."""

    query: str
    kind: str  # "text" or "image"
    model: str
    table: "object"  # pandas.DataFrame
    query_path: str | None = None  # the query photo, for pictures of the query
    query_item: dict | None = None  # the catalog item queried by id, with its metadata
    timings: dict = field(default_factory=dict)  # seconds per phase
    notes: list[str] = field(default_factory=list)


def catalog_table(st: Store, ms: ModelStore):
    """A model's live items joined with the product metadata and saved tags, in store order."""
    items = ms.items()
    meta = st.metadata()
    if len(meta.columns):
        cols = [c for c in meta.columns if c not in items.columns]
        items = items.join(meta[cols], on="id")
    tags = st.tags()
    if tags is not None and "tags" not in items.columns:
        items = items.join(tags.rename("tags"), on="id")
        items["tags"] = items["tags"].fillna("")
    return items.reset_index(drop=True)


def open_model(store: str | os.PathLike | Store | None, model: str) -> tuple[Store, ModelStore]:
    st = as_store(store)
    return st, st.model(model)


def load_encoder(ms: ModelStore, weights: str | None = None, device: str = "auto", text_only: bool = False,
                 precision: str = "fp32"):
    """The encoder that made a store's vectors, refusing one whose configuration differs."""
    from .encoders import create_encoder, expected_config, resolve

    ms.check_config(expected_config(resolve(ms.name), weights))  # before the (slow) build
    return create_encoder(ms.name, weights=weights, device=device, text_only=text_only, precision=precision)


def resolve_item(table, text: str) -> int | None:
    """Position of the item called ``text`` (its id, or a unique id/path ending), or None."""
    ids = table["id"].astype(str)
    exact = np.flatnonzero((ids == text).to_numpy())
    if len(exact):
        return int(exact[0])
    for col in ("id", "path"):
        tail = np.flatnonzero(table[col].astype(str).str.endswith("/" + text).to_numpy())
        if len(tail) == 1:
            return int(tail[0])
    return None


def unknown_item(table, text: str) -> UnknownItem:
    ids = table["id"].astype(str).tolist()
    stems = {i.rsplit("/", 1)[-1]: i for i in ids}
    hint = suggest(text, ids) or suggest(text, stems)
    return UnknownItem(f"{text!r} is neither an item id in the store nor an image file.{hint}")


def _rank(st, ms, table, queries: np.ndarray, k: int, filters: Sequence[str], exclude: set[int] = frozenset()):
    if k < 1:
        raise QueryError("--k must be at least 1.")
    mask = apply_filters(table, filters)
    notes = []
    if not mask.all():
        if exclude:
            mask[list(exclude)] = False
        allowed = table["row"].to_numpy()[mask]
        if len(allowed) < k:
            notes.append(f"only {len(allowed)} items match the filters")
        rows, scores = search_rows(ms, queries, k, allowed_rows=allowed)
    else:
        rows, scores = search_rows(ms, queries, k + len(exclude))
    pos_of = dict(zip(table["row"].tolist(), range(len(table))))
    pos = [pos_of[int(r)] for r in rows[0]]
    keep = [(p, s) for p, s in zip(pos, scores[0]) if p not in exclude][:k]
    out = table.iloc[[p for p, _ in keep]].copy()
    out.insert(0, "score", np.array([s for _, s in keep], dtype=np.float32))
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out.drop(columns=["row", "size", "mtime", "hash"], errors="ignore").reset_index(drop=True), notes


def search_text(query: str, k: int = 10, model: str = "siglip", store=None, template: str = DEFAULT_TEMPLATE,
                filters: Sequence[str] = (), weights: str | None = None, device: str = "auto", encoder=None,
                precision: str = "fp32") -> SearchResult:
    """Rank catalog items by how well they match a text, e.g. "minimalist leather tote".

    Only the text tower is loaded. ``result.timings`` holds the seconds spent loading the model,
    encoding the text and searching.
    """
    if not query or not query.strip():
        raise QueryError("The query is empty; give a few words, e.g. vrec search-text \"red leather bag\".")
    clock = [time.perf_counter()]
    timings = {}

    def lap(name: str) -> None:
        clock.append(time.perf_counter())
        timings[name] = clock[-1] - clock[-2]

    from .encoders import no_text_tower, resolve

    if encoder is None and not resolve(model).text:  # say so before loading anything
        raise no_text_tower(model)
    st, ms = open_model(store, model)
    table = catalog_table(st, ms)
    lap("store")
    if encoder is None:
        import open_clip  # noqa: F401  (timed on its own: it is most of a cold start)
        lap("torch+open_clip import")
    enc = encoder or load_encoder(ms, weights, device, text_only=True, precision=precision)
    lap("model load")
    text = template.replace("{}", query.strip()) if template and "{}" in template else query.strip()
    q = enc.encode_texts([text])
    lap("text encoding")
    out, notes = _rank(st, ms, table, q, k, filters)
    if enc.logit_bias is not None:
        z = enc.logit_scale * out["score"].to_numpy(np.float64) + enc.logit_bias
        out.insert(2, "probability", (1.0 / (1.0 + np.exp(-z))).astype(np.float32))
    lap("search")
    return SearchResult(query, "text", model, out, notes=notes, timings=timings)


def search_image(query: str, k: int = 10, model: str = "siglip", store=None, filters: Sequence[str] = (),
                 plus: Sequence[str] = (), minus: Sequence[str] = (), weight: float = 1.0,
                 weights: str | None = None, device: str = "auto", encoder=None) -> SearchResult:
    """Items that look like a photo or a catalog item ("find similar"), optionally steered by text.

    With ``plus``/``minus`` the query becomes the unit image vector plus ``weight`` times each
    "plus" text vector, minus each "minus" one (e.g. a coat photo plus "handbag" to complete a look).
    """
    from .catalog import BadImage, load_image

    if not query or not str(query).strip():
        raise QueryError("The query is empty; give a photo path or a catalog item id.")
    st, ms = open_model(store, model)
    table = catalog_table(st, ms)
    pos = resolve_item(table, str(query))
    enc = encoder
    exclude: set[int] = set()
    query_path = query_item = None
    if pos is not None:
        q = ms.vectors_for_rows([int(table["row"].iloc[pos])])
        exclude = {pos}
        query_path = str(st.root / table["path"].iloc[pos])
        query_item = table.iloc[pos].drop(labels=["row", "size", "mtime"], errors="ignore").to_dict()
    elif Path(query).is_file():
        enc = enc or load_encoder(ms, weights, device)
        try:  # decoded exactly as catalog photos are, so a catalog file finds itself with score 1
            img = load_image(query, min_size=enc.preprocess_spec.decode_size)
        except BadImage as e:
            raise QueryError(f"Cannot use {str(query)!r} as a query image: {e}.") from None
        q = enc.encode_images([img])
        query_path = str(query)
    else:
        raise unknown_item(table, str(query))
    if plus or minus:
        enc = enc or load_encoder(ms, weights, device)
        steer = np.zeros_like(q[0])
        if plus:
            steer += enc.encode_texts(list(plus)).sum(0)
        if minus:
            steer -= enc.encode_texts(list(minus)).sum(0)
        q = q + weight * steer
        q = q / max(float(np.linalg.norm(q)), 1e-12)
    out, notes = _rank(st, ms, table, q.astype(np.float32), k, filters, exclude)
    label = str(query) + "".join(f" +{p!r}" for p in plus) + "".join(f" -{m!r}" for m in minus)
    return SearchResult(label, "image", model, out, query_path=query_path, query_item=query_item, notes=notes)
