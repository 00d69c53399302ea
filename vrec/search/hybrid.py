"""Keyword and hybrid text search: the catalog's words (``vrec.store.keywords``) beside its vectors.

A text search runs in one of three modes:

- ``vector``: the model's text tower against the photos (``vrec.search.query.search_text``);
- ``keyword``: BM25 over the indexed text columns (title, brand, description, ids...), SQLite FTS5;
- ``hybrid`` (the default when the store has a keyword index): both legs, each fetching its
  ``depth`` best, fused by reciprocal rank -- score = sum over legs of 1 / (60 + rank), the
  constant of Cormack et al. (2009) that Elasticsearch, OpenSearch, Weaviate and LanceDB use --
  or, with ``keyword_weight`` w, by a weighted blend of each leg's scores scaled to 0..1 over its
  candidates: (1 - w) x vector + w x keyword.

Whatever the mode, an item whose identifier (id, SKU, GTIN, MPN...) equals the whole query ranks
first. Each result's ``found_by`` says which leg found it: ``vector``, ``keyword``, ``both`` or
``exact``; a product is returned once. A model without a text tower (a CNN) searches by keyword
alone, with a note; a query with no keyword (only stop words or punctuation) searches by vector
alone in hybrid mode, with a note, and is refused in keyword mode.
"""
from __future__ import annotations

import re
import time
from collections.abc import Sequence

import numpy as np

from vrec.base.errors import QueryError, check_number
from vrec.store.catalog_rows import catalog_rows
from vrec.store.filters import INTERNAL as INTERNAL_COLUMNS
from vrec.store.keywords import KeywordIndex, has_keywords

MODES = ("vector", "keyword", "hybrid")
RRF_K = 60
MIN_DEPTH = 100  # candidates fetched per leg, at least (and 4 x k)
SHORTFALL = re.compile(r"all are shown|match the filters|holds no items")  # the vector leg's notes on its depth


def check_mode(mode: str | None) -> str | None:
    if mode is not None and mode not in MODES:
        raise QueryError(f"Unknown --mode {mode!r}; use vector (the model's text tower), keyword (the catalog's "
                         "words) or hybrid (both, fused).")
    return mode


def check_keyword_weight(weight: float | None) -> float | None:
    if weight is not None:
        check_number("--keyword-weight", weight, min=0, max=1,
                     hint="0 ranks by the vector leg alone, 1 by the keyword leg alone")
    return weight


def fuse(vector_ids: Sequence[str], vector_scores: Sequence[float], keyword_ids: Sequence[str],
         keyword_scores: Sequence[float], exact: set[str] = frozenset(), keyword_weight: float | None = None,
         rrf_k: int = RRF_K) -> list[tuple[str, float, str]]:
    """Two ranked lists fused into one: (id, fused score, found_by), best first, each id once.

    Reciprocal rank fusion by default (each list's 1-based ranks); with ``keyword_weight`` w, the
    blend (1 - w) x v + w x kw of min-max scaled scores (an id absent from a list scores 0 there;
    a list of one candidate scales it to 1). Ties keep the order of first appearance, vector first.
    Ids in ``exact`` come first (in keyword order), found_by ``exact``.
    """
    legs = {"vector": _dedup(vector_ids, vector_scores), "keyword": _dedup(keyword_ids, keyword_scores)}
    order = list(dict.fromkeys([*legs["vector"], *legs["keyword"]]))
    if keyword_weight is None:
        parts = {name: {i: 1.0 / (rrf_k + r) for r, i in enumerate(leg, start=1)} for name, leg in legs.items()}
        weights = {"vector": 1.0, "keyword": 1.0}
    else:
        parts = {name: _scaled(leg) for name, leg in legs.items()}
        weights = {"vector": 1.0 - keyword_weight, "keyword": keyword_weight}
    fused = {i: sum(weights[n] * parts[n].get(i, 0.0) for n in legs) for i in order}
    ranked = sorted(order, key=lambda i: (i not in exact, -fused[i]))  # sorted is stable: ties keep order
    return [(i, fused[i], "exact" if i in exact else _found_by(i, legs)) for i in ranked]


def _dedup(ids: Sequence[str], scores: Sequence[float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for i, s in zip(ids, scores):
        out.setdefault(str(i), float(s))
    return out


def _scaled(leg: dict[str, float]) -> dict[str, float]:
    if not leg:
        return {}
    lo, hi = min(leg.values()), max(leg.values())
    return {i: (s - lo) / (hi - lo) if hi > lo else 1.0 for i, s in leg.items()}


def _found_by(i: str, legs: dict) -> str:
    inside = [n for n, leg in legs.items() if i in leg]
    return "both" if len(inside) == 2 else inside[0]


def search_text(query: str, k: int = 10, model: str = "siglip", store=None, mode: str | None = None,
                keyword_weight: float | None = None, filters: Sequence[str] = (), **vector_options):
    """A text search in ``mode`` (vector, keyword or hybrid; None: hybrid when the store has a keyword
    index, else vector). ``vector_options`` go to ``vrec.search.query.search_text`` (template,
    weights, device, encoder, precision, product_score, collapse). Returns a SearchResult whose table
    has ``found_by`` in keyword and hybrid modes; ``score`` is then the fused score (hybrid) or BM25
    (keyword)."""
    from vrec.models.registry import resolve
    from vrec.search import query as vq

    check_mode(mode)
    check_keyword_weight(keyword_weight)
    if not query or not query.strip():
        raise QueryError("The query is empty; give a few words, e.g. vrec search-text \"red leather bag\".")
    check_number("--k", k, min=1, integer=True)
    st, ms = vq.open_model(store, model, vector_options.get("product_score"))
    if mode is None:
        mode = "hybrid" if has_keywords(st) else "vector"
        if mode == "vector" and not resolve(model).text:
            raise QueryError(f"Model {model!r} has no text tower, and the store {str(st.path)!r} has no keyword index "
                             "yet; run 'vrec index' to search its titles, brands and ids with any model, or search "
                             "with a vision-language model such as siglip.")
    if mode == "vector":
        result = vq.search_text(query, k=k, model=model, store=st, filters=filters, **vector_options)
        if keyword_weight is not None:
            result.notes.append("the keyword weight blends the legs of a hybrid search; a vector search has one leg, so it is not used")
        return result
    if not has_keywords(st):
        raise QueryError(f"--mode {mode} needs the store's keyword index, and {str(st.path)!r} has none; run "
                         "'vrec index' to build it (or use --mode vector).")
    notes: list[str] = []
    if vector_options.get("collapse"):
        notes.append("--collapse applies to the vector leg only; keyword results are not grouped")
    depth = max(MIN_DEPTH, 4 * int(k))
    catalog = catalog_rows(st, ms, notes)
    ids = catalog.frame(["id"])["id"].astype(str).to_numpy()
    allowed = vq._matching(catalog, filters)[0]
    started = time.perf_counter()
    kw_ids, kw_scores, exact = _keyword_leg(st, query, depth, ids, allowed, mode, notes)
    keyword_seconds = time.perf_counter() - started
    vector = None
    if kw_ids is None and not resolve(model).text:
        raise QueryError(f"The query {query!r} has no keyword to look for (only stop words or punctuation), and "
                         f"{model} has no text tower to search by meaning; give a word from the products' titles, "
                         "brands or descriptions.")
    if mode == "hybrid" and kw_ids is not None and not resolve(model).text:
        notes.append(f"{model} has no text tower, so this hybrid search used keywords alone; embed with a text "
                     "model (e.g. siglip) for the vector leg")
    elif mode == "hybrid":
        vector = vq.search_text(query, k=min(depth, len(ids)), model=model, store=st, filters=filters,
                                **vector_options)
        notes.extend(n for n in vector.notes if not SHORTFALL.search(n))  # about its depth, not about k
    if kw_ids is None:  # no keyword in the query: the vector leg alone
        kw_ids, kw_scores, exact = [], [], set()
    vec_table = vector.table if vector is not None else None
    if vec_table is None:  # keyword alone: BM25's own scores
        fused = sorted(((i, s, "exact" if i in exact else "keyword") for i, s in zip(kw_ids, kw_scores)),
                       key=lambda r: r[2] != "exact")[:int(k)]
    else:
        fused = fuse(vec_table["id"].astype(str).tolist(), vec_table["score"].tolist(), kw_ids, kw_scores, exact,
                     keyword_weight)[:int(k)]
    if len(fused) < int(k):
        notes.append(_shortfall(len(fused), mode if vector is not None else "keyword", bool(filters)))
    table = _result_rows(ms, catalog, ids, vec_table, fused)
    from vrec.search.query import SearchResult

    timings = {**(vector.timings if vector is not None else {}), "keyword search": keyword_seconds}
    return SearchResult(query, "text", model, table, notes=list(dict.fromkeys(notes)), timings=timings)


def _shortfall(found: int, mode: str, filtered: bool) -> str:
    where = " that the filters keep" if filtered else ""
    if mode == "keyword":
        if not found:
            return f"no item{where} holds any of the query's keywords"
        return f"only {found} item(s){where} hold any of the query's keywords"
    return f"only {found} item(s){where} in the catalog; all are shown"


def _keyword_leg(st, query: str, depth: int, ids: np.ndarray, allowed: np.ndarray, mode: str, notes: list):
    """The keyword leg's ids and scores among the model's items that the filters keep (None, None, None:
    the query has no keyword, in hybrid mode)."""
    keep = set(ids[allowed].tolist()) if not allowed.all() else set(ids.tolist())
    limit = depth if allowed.all() else depth * 8
    with KeywordIndex(st) as ix:
        try:
            found, scores, exact = ix.search(query, limit)
            # a selective filter: fetch deeper while the kept ones fall short and more matches remain
            while len(found) >= limit and sum(i in keep for i in found) < depth:
                limit *= 8
                found, scores, exact = ix.search(query, limit)
        except QueryError:
            if mode == "keyword":
                raise
            notes.append(f"the query {query!r} has no keyword (only stop words or punctuation): vector results only")
            return None, None, None
    pairs = [(i, s) for i, s in zip(found, scores) if i in keep][:depth]
    return [i for i, _ in pairs], [s for _, s in pairs], {e for e in exact if e in keep}


def _result_rows(ms, catalog, ids: np.ndarray, vec_table, fused: list):
    """The result table in fused order: the vector leg's rows as it showed them (best photo), the
    keyword leg's others read from the catalog (their main photo)."""
    import pandas as pd

    from vrec.search.query import best_photo

    vec_rows = {} if vec_table is None else {str(i): n for n, i in enumerate(vec_table["id"].astype(str))}
    others = [i for i, _, _ in fused if i not in vec_rows]
    position = {i: p for p, i in enumerate(ids.tolist())}
    extra = catalog.take([position[i] for i in others]) if others else None
    if extra is not None and getattr(ms, "grain", "photo") == "product":
        best_photo(ms, extra, np.array([ms.photo_rows([p])[0][0] for p in extra["row"]], np.int64))
    frames = []
    if vec_table is not None:
        frames.append(vec_table.drop(columns=["rank", "score", "probability"], errors="ignore"))
    if extra is not None:
        frames.append(extra.drop(columns=list(INTERNAL_COLUMNS), errors="ignore"))
    if not frames:
        table = catalog.take([]).drop(columns=list(INTERNAL_COLUMNS), errors="ignore")
    else:
        table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    table = table.set_index(table["id"].astype(str)).loc[[i for i, _, _ in fused]].reset_index(drop=True)
    table.insert(0, "found_by", [f for _, _, f in fused])
    table.insert(0, "score", np.array([s for _, s, _ in fused], np.float32))
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table
