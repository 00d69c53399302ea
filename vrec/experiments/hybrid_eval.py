"""``vrec eval --search-modes``: vector, keyword and hybrid text search side by side, query by query.

The same text queries -- a queries file (``--queries``), or the published protocol's title ->
product (``--text-queries-from title``) and description -> product (``--text-queries-from
description``) -- go through each leg of ``vrec search-text``: the model's text tower (vector), the
store's keyword index (keyword, BM25 over SQLite FTS5; built by ``vrec index``) and their fusion by
reciprocal rank (hybrid, ``vrec.search.hybrid.fuse``). Each leg keeps its ``depth`` best (as
search-text does); a relevant item beyond that counts as not found, so MRR here can sit a little
below eval's own vector MRR. Reported per leg: R@k (a relevant item in the top k) and MRR, with
95% bootstrap intervals, and the paired differences hybrid - vector, hybrid - keyword and keyword -
vector over the same queries.

``tune``: the weighted blend (1 - w) x vector + w x keyword is tried at w = 0, 0.1, ..., 1 on one
half of the queries (a seeded random half), the w with the best MRR is kept, and the other half
reports it beside vector, keyword and reciprocal rank fusion -- so the chosen weight is judged on
queries it was not chosen on.

A model without a text tower (a CNN) has no vector leg: its hybrid search is keyword search alone
(as ``vrec search-text`` does it), so only the keyword leg is measured, with a note.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vrec.base.errors import QueryError
from vrec.experiments.metrics import bootstrap_ci, paired_difference
from vrec.search.hybrid import MIN_DEPTH, fuse
from vrec.store.keywords import KeywordIndex, has_keywords

WEIGHTS = tuple(round(w / 10, 1) for w in range(11))  # the blend weights tried by --tune-keyword-weight
PAIRS = (("hybrid", "vector"), ("hybrid", "keyword"), ("keyword", "vector"))


@dataclass
class QuerySet:
    """Text queries and, for each, the table positions of its relevant items."""

    task: str  # "text" (eval's text queries) or "protocol"
    label: str  # the query set: 'file', or the protocol's column
    texts: list[str]
    relevant: list[np.ndarray]
    ks: tuple[int, ...]


def check_keywords(st) -> None:
    st.info()  # no store at all: that error first, not 'run vrec index'
    if not has_keywords(st):
        raise QueryError(f"--search-modes measures keyword and hybrid search on the store's keyword index, and "
                         f"{str(st.path)!r} has none; run 'vrec index' first.")


def sets_from_masks(label: str, queries: Sequence[tuple[str, np.ndarray]], ks: Sequence[int]) -> QuerySet:
    """A query set from (text, relevant mask) pairs, as eval's text queries are."""
    qs = [(t, m) for t, m in queries if m.any()]
    return QuerySet("text", label, [t for t, _ in qs], [np.flatnonzero(m) for _, m in qs], tuple(ks))


def sets_from_codes(column: str, item_codes: np.ndarray, values: list[str], ks: Sequence[int]) -> QuerySet:
    """The protocol's queries: each distinct value of a column, relevant = the items with that value."""
    order = np.argsort(item_codes, kind="stable")
    bounds = np.searchsorted(item_codes[order], np.arange(len(values) + 1))
    rel = [order[bounds[i]:bounds[i + 1]] for i in range(len(values))]
    return QuerySet("protocol", column, list(values), rel, tuple(ks))


def search_mode_eval(st, model: str, ms, table, enc, sets: Sequence[QuerySet], n_boot: int, seed: int,
                     tune: bool = False) -> tuple[list[dict], list[dict], list[str]]:
    """(figures, paired comparisons, notes) of each leg on each query set for one model; ``enc`` None
    (a model without a text tower): the keyword leg alone."""
    docs = ms.vectors_for_rows(table["row"].to_numpy()) if enc is not None else None
    ids = table["id"].astype(str).to_numpy()
    position = {i: p for p, i in enumerate(ids.tolist())}
    rows: list[dict] = []
    comps: list[dict] = []
    notes: list[str] = []
    if enc is None:
        notes.append(f"{model} has no text tower: only its keyword leg is measured (its hybrid search is keyword "
                     "search alone)" + (", and --tune-keyword-weight has no vector leg to blend" if tune else ""))
        tune = False
    with KeywordIndex(st) as ix:
        indexed = set(ix.columns)
        for qs in sets:
            if not qs.texts:
                continue
            depth = min(len(ids), max(MIN_DEPTH, *qs.ks))
            kw, empty = _keyword_lists(ix, qs.texts, depth, position)
            if empty and enc is None:
                notes.append(f"{qs.label}: {empty} of {len(qs.texts)} queries have no keyword (only stop words or "
                             "punctuation); their keyword leg finds nothing")
            elif empty:
                notes.append(f"{qs.label}: {empty} of {len(qs.texts)} queries have no keyword (only stop words or "
                             "punctuation); their keyword leg finds nothing and hybrid is their vector leg")
            lists = {"keyword": [k[0] for k in kw]}
            if enc is not None:
                vec = _vector_lists(docs, _encode(enc, qs.texts), depth)
                lists = {"vector": [ids[v].tolist() for v, _ in vec], **lists}
                lists["hybrid"] = [[i for i, _, _ in fuse(lists["vector"][q], vec[q][1], kw[q][0], kw[q][1], kw[q][2])]
                                   for q in range(len(qs.texts))]
            relevant = [set(ids[r].tolist()) for r in qs.relevant]
            firsts = {leg: _first_relevant(lst, relevant) for leg, lst in lists.items()}
            half, blend_name = np.arange(len(qs.texts)), None
            if tune and len(qs.texts) < 2:
                notes.append(f"{qs.label}: one query, so --tune-keyword-weight has no half to choose w on and "
                             "another to report it on; its three legs are on that query")
            elif tune:
                half, blend_name, firsts = _tuned(qs, lists, vec, kw, relevant, firsts, seed, notes)
            if qs.label.split(" [")[0] in indexed:
                notes.append(f"{qs.label}: the keyword index holds the {qs.label.split(' [')[0]!r} column these "
                             "queries come from, so the keyword leg finds their text as written (an easy test for "
                             "it); decide on queries shoppers type, e.g. a --queries file")
            rows += _figures(model, qs, firsts, half, n_boot, seed)
            comps += _comparisons(model, qs, firsts, half, n_boot, seed, blend_name)
    return rows, comps, notes


def add_search_modes(ev, st, model: str, ms, table, enc, text_sets, protocol: dict, codes: dict, ks, n_boot: int,
                     seed: int, tune: bool) -> None:
    """Measure the three legs on eval's text query sets and the protocol's text queries (``evaluate``'s
    step for ``--search-modes``), adding to ``ev.search_modes``, ``ev.mode_comparisons`` and notes."""
    sets = [sets_from_masks(name, qs, ks) for name, qs in text_sets]
    if "text" in protocol:
        sets.append(sets_from_codes(protocol["text"], *codes["text"], (1, 10)))
    if not sets:
        ev.notes.append("--search-modes compares text queries, and this evaluation has none; give --queries FILE "
                        "or --text-queries-from COLUMN")
        return
    rows, comps, notes = search_mode_eval(st, model, ms, table, enc, sets, n_boot, seed, tune)
    ev.search_modes.extend(rows)
    ev.mode_comparisons.extend(comps)
    ev.notes.extend(notes)


def _encode(enc, texts: list[str], batch: int = 256) -> np.ndarray:
    return np.concatenate([enc.encode_texts(texts[i:i + batch]) for i in range(0, len(texts), batch)])


def _vector_lists(docs: np.ndarray, queries: np.ndarray, depth: int, cells: int = 4_000_000):
    """Per query: (the ``depth`` best table positions, their cosine scores), best first."""
    out = []
    step = max(1, cells // max(len(docs), 1))
    for start in range(0, len(queries), step):
        scores = queries[start:start + step] @ docs.T
        top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth] if depth < len(docs) else \
            np.tile(np.arange(len(docs)), (len(scores), 1))
        for s, t in zip(scores, top):
            order = t[np.argsort(-s[t], kind="stable")]
            out.append((order, s[order].tolist()))
    return out


def _keyword_lists(ix, texts: list[str], depth: int, position: dict) -> tuple[list, int]:
    """Per query: (ids, BM25 scores, exact ids) among the evaluated items; and how many had no keyword."""
    out, empty = [], 0
    for text in texts:
        try:
            found, scores, exact = ix.search(text, depth * 2)
        except QueryError:
            empty += 1
            out.append(([], [], set()))
            continue
        keep = [(i, s) for i, s in zip(found, scores) if i in position][:depth]
        out.append(([i for i, _ in keep], [s for _, s in keep], {e for e in exact if e in position}))
    return out, empty


def _first_relevant(lists: list[list[str]], relevant: list[set]) -> np.ndarray:
    """1-based rank of each query's first relevant item in its list; 0 when the list holds none."""
    return np.array([next((r for r, i in enumerate(lst, start=1) if i in rel), 0)
                     for lst, rel in zip(lists, relevant)], np.int64)


def _tuned(qs, lists, vec, kw, relevant, firsts, seed: int, notes: list):
    """Choose the blend weight on one half of the queries; (the other half, the blend's name, the
    first-relevant ranks with the blend's added)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(qs.texts))
    tune_half, report_half = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2:])

    def blend(w: float, at) -> np.ndarray:
        fused = [[i for i, _, _ in fuse(lists["vector"][q], vec[q][1], kw[q][0], kw[q][1], kw[q][2], w)] for q in at]
        return _first_relevant(fused, [relevant[q] for q in at])

    mrr = {w: float(_rr(blend(w, tune_half)).mean()) for w in WEIGHTS}
    best = max(WEIGHTS, key=lambda w: (mrr[w], -abs(w - 0.5)))  # ties: the weight nearer the middle
    name = f"blend w={best:g}"
    notes.append(f"{qs.label}: --tune-keyword-weight chose w = {best:g} (MRR {mrr[best]:.3f} on {len(tune_half)} "
                 f"tuning queries; w = 0 is vector alone, 1 keyword alone); the figures are on the other "
                 f"{len(report_half)} queries")
    full = np.zeros(len(qs.texts), np.int64)
    full[report_half] = blend(best, report_half)
    return report_half, name, {**firsts, name: full}


def _rr(first: np.ndarray) -> np.ndarray:
    return np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)


def _per_query(qs: QuerySet, first: np.ndarray) -> list[tuple[str, int | None, np.ndarray]]:
    metric = "R" if qs.task == "protocol" else "recall"
    out = [(metric, k, ((first > 0) & (first <= k)).astype(np.float64)) for k in qs.ks]
    return out + [("mrr", None, _rr(first))]


def _figures(model: str, qs: QuerySet, firsts: dict, at: np.ndarray, n_boot: int, seed: int) -> list[dict]:
    rows = []
    for leg, first in firsts.items():
        for metric, k, v in _per_query(qs, first[at]):
            lo, hi = bootstrap_ci(v, n_boot, seed)
            rows.append({"model": model, "task": qs.task, "label": qs.label, "metric": metric, "k": k, "mode": leg,
                         "value": float(v.mean()), "ci_low": lo, "ci_high": hi, "queries": len(v)})
    return rows


def _comparisons(model: str, qs: QuerySet, firsts: dict, at: np.ndarray, n_boot: int, seed: int,
                 blend: str | None) -> list[dict]:
    pairs = [(a, b) for a, b in PAIRS if a in firsts and b in firsts] + \
        ([(blend, "vector"), (blend, "hybrid")] if blend else [])
    out = []
    for a, b in pairs:
        for (metric, k, va), (_, _, vb) in zip(_per_query(qs, firsts[a][at]), _per_query(qs, firsts[b][at])):
            res = paired_difference(va, vb, n_boot, seed)
            out.append({**res, "model": model, "task": qs.task, "label": qs.label, "metric": metric, "k": k,
                        "first": a, "second": b, "winner": {"first": a, "second": b, "tie": "tie"}[res["winner"]]})
    return out
