"""``vrec eval``: offline evidence, on your own labelled catalog, of which model retrieves better.

Image -> image: every item queries the rest (itself excluded); an item is relevant when it shares
the query's label value. Reported per model, overall and per label value: precision@k, recall@k,
mAP@k and nDCG@k. Queries whose label has no other item are left out (nothing could be found).

Text -> image (models with a text tower): queries built from labels with a template, or read from a
file; R@k (share of queries with a relevant item in the top k) and MRR; plus zero-shot
classification accuracy for each label column.

Uncertainty: a bootstrap over queries gives 95% intervals, and a paired bootstrap over the same
queries says which of two models wins, by how much, and whether the interval excludes zero.

Cut-offs larger than the catalog: with n items each image query ranks the n - 1 others, so any k
above n - 1 is computed as k = n - 1 (precision@k divides by n - 1), and a note says so. A metric
with no usable query (e.g. a label whose values are all unique) has no figure: its value and
interval are NaN in Python, "—" in tables and null in JSON, and a note says why.

Neighbours come from the index search (exact below its threshold), in batches: no n x n matrix.

The same neighbour lists give, with labels or an interaction log, the beyond-accuracy figures
(``vrec.experiments.beyond``: coverage, in-degree Gini and hubs, intra-list diversity) and, with a
log, the interaction figures (``vrec.experiments.interactions``: session co-occurrence as relevance).

The published protocol (the Marqo e-commerce leaderboard's, so a catalog's figures can be held
against it): ``text_queries_from`` makes each distinct value of a column (e.g. the product title)
a text query whose relevant items are those with that value, scored as R@1, R@10 (share of
queries with a relevant item in the top k) and MRR; ``label_queries`` makes each label value a
text query ("category -> product"), scored as P@1, P@10 (share of the top k with that label) and
MRR; ``fuse_text`` scores those text queries against documents normalise((1 - w) * image +
w * text(column)), as the benchmark's documents are. Ranks are computed in batches of queries.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vrec.base.errors import QueryError, check_number, suggest
from vrec.base.records import json_safe, to_records
from vrec.experiments.beyond import beyond_eval, name_winners, ruler_note
from vrec.experiments.interactions import COLD_EVENTS, co_occurrence, interaction_eval
from vrec.experiments.interactions import check_options as check_interaction_options
from vrec.experiments.languages import column_sets_by_language, file_sets_by_language, language_gaps, parse_language_columns
from vrec.experiments.many_models import rank_models
from vrec.experiments.metrics import (
    Metric,
    ap_at_k,
    bootstrap_ci,
    hit_at_k,
    ndcg_at_k,
    paired_difference,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
)
from vrec.experiments.photo_queries import photo_query_eval, read_query_photos
from vrec.experiments.text_queries import template_fields, text_queries_from_file, text_queries_from_template
from vrec.search.query import load_encoder
from vrec.store.catalog_table import catalog_table
from vrec.store.index import search_rows
from vrec.store.products import DEFAULT_SCORING, check_scoring
from vrec.store.store import as_store

IMAGE_METRICS = ("precision", "recall", "map", "ndcg")
PROTOCOL_KS = (1, 10)  # the leaderboard's cut-offs: R@1, R@10, P@1, P@10 (metrics "R", "P" with k; "mrr")
TEXT_METRICS = ("recall", "mrr")
MAX_BOOTSTRAP = 100_000  # resamples; the interval is steady long before this
# --- the evaluation -------------------------------------------------------------------------

@dataclass
class Evaluation:
    models: list[str]
    labels: list[str]
    ks: list[int]
    items: int
    metrics: list[Metric] = field(default_factory=list)
    per_value: object | None = None  # DataFrame: task, label, value, metric, k, model, score, queries
    comparisons: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    scoring_comparisons: list[dict] = field(default_factory=list)  # product scorings, pair by pair (photo queries)
    ranking: object | None = None  # three or more models: vrec.experiments.many_models.Ranking
    language_gaps: list[dict] = field(default_factory=list)  # --language-columns: language vs language, paired
    hubs: list[dict] = field(default_factory=list)  # the most over-recommended items per model (experiments.beyond)
    search_modes: list[dict] = field(default_factory=list)  # vector/keyword/hybrid figures (vrec.experiments.hybrid_eval)
    mode_comparisons: list[dict] = field(default_factory=list)  # ... and their paired differences

    def table(self):
        """Overall metrics as a DataFrame: task, label, metric, k, then one column per model."""
        import pandas as pd

        rows = [{"task": m.task, "label": m.label, "metric": m.metric, "k": m.k, "model": m.model,
                 "value": m.value, "ci_low": m.ci[0], "ci_high": m.ci[1], "queries": m.queries} for m in self.metrics]
        return pd.DataFrame(rows, columns=["task", "label", "metric", "k", "model", "value", "ci_low", "ci_high",
                                           "queries"])  # the columns even when empty (--search-modes alone)


def _labels_of(table, label: str) -> np.ndarray:
    if label not in table.columns:
        raise QueryError(f"No column {label!r} in the metadata for --label.{suggest(label, table.columns)} "
                         f"Add labels with 'vrec embed FOLDER --metadata CSV'.")
    return table[label].astype("string").fillna("").str.strip().to_numpy(dtype=object)


def neighbour_positions(ms, table, kk: int, batch: int = 2048) -> np.ndarray:
    """[n, kk]: positions in ``table`` of each item's kk nearest other items, in rank order (-1: none)."""
    n = len(table)
    rows = table["row"].to_numpy()
    pos_of = dict(zip(rows.tolist(), range(n)))
    neighbours = np.empty((n, kk), np.int64)
    for start in range(0, n, batch):
        idx = np.arange(start, min(n, start + batch))
        found, _ = search_rows(ms, ms.vectors_for_rows(rows[idx]), kk + 1)
        for i, q in enumerate(idx):
            lst = [pos_of[int(r)] for r in found[i] if pos_of.get(int(r), -1) != q][:kk]
            neighbours[q, : len(lst)] = lst
            neighbours[q, len(lst):] = -1
    return neighbours


def _image_relevance(neighbours: np.ndarray, labels: dict[str, np.ndarray], kmax: int):
    """Per label: bool [n, kmax] relevance of each item's neighbours (itself excluded), in rank order."""
    n, kk = neighbours.shape
    out = {}
    for label, lab in labels.items():
        rel = np.zeros((n, kmax), bool)
        rel[:, :kk] = (lab[np.maximum(neighbours, 0)] == lab[:, None]) & (neighbours >= 0) & (lab[:, None] != "")
        out[label] = rel
    return out


def evaluate(models: Sequence[str] = ("siglip", "cnn"), labels: Sequence[str] = (), ks: Sequence[int] = (1, 5, 10),
             store=None, queries: str | None = None, text_template: str | None = None, zero_shot: bool = True,
             n_boot: int = 1000, seed: int = 0, device: str = "auto", text_queries_from: str | None = None,
             label_queries: str | None = None, fuse_text: str | None = None, text_weight: float = 0.1,
             query_photos: str | None = None, product_scores: Sequence[str] = (DEFAULT_SCORING,),
             language_columns: str | None = None, interactions: str | None = None,
             interaction_columns: dict | None = None, event_weights: dict | None = None,
             session_gap: float | None = None, cold_events: int = COLD_EVENTS,
             search_modes: bool = False, tune_keyword_weight: bool = False) -> Evaluation:
    """Evaluate embedded models on a labelled catalog. See the module docstring for the definitions;
    ``query_photos``: photos of products not in the catalog (``vrec.experiments.photo_queries``),
    measured with each of ``product_scores``; ``language_columns`` ('en=description,sv=description_sv')
    and a queries file's ``lang`` column: figures per query language (``vrec.experiments.languages``);
    ``interactions``: an event log whose co-occurrences are the relevance
    (``vrec.experiments.interactions``). With labels or interactions every model's lists also get the
    beyond-accuracy figures of ``vrec.experiments.beyond``. ``search_modes``: the text queries through
    vector, keyword and hybrid search too (``vrec.experiments.hybrid_eval``; ``tune_keyword_weight``:
    with the blend weight chosen on half the queries)."""
    import pandas as pd

    from vrec.experiments import hybrid_eval

    protocol = {task: col for task, col in (("text", text_queries_from), ("label", label_queries)) if col is not None}
    if query_photos is not None:
        protocol["photo"] = query_photos
    langs = parse_language_columns(language_columns)
    check_interaction_options(session_gap, cold_events)
    if interactions is not None:
        protocol["interactions"] = interactions
    models, ks, n_boot, seed = _checked_options(models, labels, queries or langs, protocol, fuse_text, text_weight,
                                                ks, n_boot, seed, text_template)
    protocol.pop("interactions", None)
    for s in product_scores:
        check_scoring(s)
    photos = protocol.pop("photo", None)
    st = as_store(store)
    search_modes = search_modes or tune_keyword_weight
    if search_modes:
        hybrid_eval.check_keywords(st)
    stores = {m: st.model(m) for m in models}
    tables = {m: catalog_table(st, ms) for m, ms in stores.items()}
    shared = set.intersection(*(set(t["id"]) for t in tables.values()))
    ev = Evaluation(list(models), list(labels), ks, len(shared))
    n = _check_shared(ev, tables, shared, ks)
    # everything that can be checked on the metadata alone is checked before any model runs
    ref = _shared_table(tables[models[0]], shared)
    labs = {lab: _labels_of(ref, lab) for lab in labels}
    text_models = [m for m in models if _has_text(m)]
    codes = {task: column_codes(ref, col, "--text-queries-from" if task == "text" else "--label-queries")
             for task, col in protocol.items()}
    fuse = (fuse_text, *column_codes(ref, fuse_text, "--fuse-text")) if fuse_text is not None else None
    _check_text_models(ev, models, text_models, protocol, search_modes)
    sets = _text_query_sets(ref, labels, queries, text_template, ev.notes)
    sets += (file_sets_by_language(ref, queries, ev.notes) if queries else []) + \
        (column_sets_by_language(ref, langs, ev.notes) if langs else [])
    if sets and not text_models:
        if not labels and not search_modes:  # --search-modes: the keyword leg needs no text tower
            raise QueryError(f"Text queries need a model with a text tower (e.g. siglip), and none of "
                             f"{', '.join(models)} has one; add such a model, or --label COLUMN for image->image.")
        if (queries or text_template) and not search_modes:
            ev.notes.append(f"text queries skipped: none of {', '.join(models)} has a text tower")
    per_value_rows = []
    per_query: dict[tuple, np.ndarray] = {}
    photo_set = read_query_photos(photos, ev.notes) if photos is not None else None
    rel = None
    if interactions is not None:
        rel = co_occurrence(interactions, ref["id"].astype(str).tolist(), interaction_columns, event_weights,
                            session_gap, cold_events)
        ev.notes += rel.notes
    graph = bool(labels) or rel is not None
    if graph:
        ruler_rows = _shared_table(tables[models[0]], shared)["row"].to_numpy()
        ruler = lambda pos: stores[models[0]].vectors_for_rows(ruler_rows[pos])  # noqa: E731 (read per batch)
        ev.notes.append(ruler_note(models[0], models))
    for m, ms in stores.items():
        if photo_set is not None:
            photo_query_eval(ev, m, ms, load_encoder(ms, device=device), photo_set, list(product_scores), ks,
                             n_boot, seed)
        table = _shared_table(tables[m], shared)
        if graph:
            nb = neighbour_positions(ms, table, min(max(ks), n - 1))
        if labels:
            _image_eval(ev, m, nb, labs, ks, n, n_boot, seed, per_query, per_value_rows)
        if graph:
            beyond_eval(ev, m, nb, table, ruler, labs, ks, n_boot, seed, per_query)
        if rel is not None:
            interaction_eval(ev, m, nb, rel, ks, n_boot, seed, per_query)
        if m in text_models and (sets or (zero_shot and labs) or protocol):  # an interaction log alone needs no text
            enc = load_encoder(ms, device=device)
            _text_eval(ev, m, ms, table, labs, enc, ks, sets, zero_shot, n_boot, seed, per_query, per_value_rows)
            if protocol:
                _protocol_eval(ev, m, ms, table, enc, protocol, codes, fuse, text_weight, n_boot, seed, per_query)
            if search_modes:
                hybrid_eval.add_search_modes(ev, st, m, ms, table, enc, sets, protocol, codes, ks, n_boot, seed,
                                             tune_keyword_weight)
        elif search_modes and m not in text_models:  # no text tower: the keyword leg alone
            hybrid_eval.add_search_modes(ev, st, m, ms, table, None, sets, protocol, codes, ks, n_boot, seed,
                                         tune_keyword_weight)
    ev.per_value = pd.DataFrame(per_value_rows, columns=["task", "label", "value", "metric", "k", "model", "score", "queries"])
    if len(models) == 2:
        _paired_comparisons(ev, models, per_query, n_boot, seed)
        name_winners(ev)
    elif len(models) > 2:
        # beyond-accuracy figures describe the lists (more diverse is not simply better): not ranked
        accuracy = {key: v for key, v in per_query.items() if key[0] != "beyond"}
        ev.ranking = rank_models(list(models), accuracy, n_boot, seed)
    if langs:
        ev.language_gaps = language_gaps(list(models), langs, per_query, n_boot, seed)
    ev.notes = list(dict.fromkeys(ev.notes))  # the same note from every model once
    return ev


def _checked_options(models, labels, queries, protocol: dict, fuse_text, text_weight, ks, n_boot, seed,
                     text_template) -> tuple[list[str], list[int], int, int]:
    """Every option of evaluate checked before any work: (models, ks, n_boot, seed), normalised."""
    named = [str(m).strip() for m in models if str(m).strip()]
    models = list(dict.fromkeys(named))
    if len(models) < len(named):
        twice = next(m for m in models if named.count(m) > 1)
        raise QueryError(f"--models names {twice!r} twice; name each model once, e.g. --models {','.join(models)}.")
    if not models:
        raise QueryError("Name at least one embedded model to evaluate, e.g. --models siglip,cnn.")
    from vrec.models.registry import check_model_name

    for m in models:  # a malformed name is told how to write it, not to embed it
        check_model_name(m)
    if not labels and not queries and not protocol:
        raise QueryError("Name at least one --label COLUMN (e.g. --label category), give --queries FILE, "
                         "--query-photos FILE or --interactions FILE, or use the published protocol "
                         "(--text-queries-from COLUMN, --label-queries COLUMN), or --language-columns "
                         "LANG=COLUMN,LANG=COLUMN.")
    if fuse_text is not None and not set(protocol) - {"photo", "interactions"}:
        raise QueryError("--fuse-text changes the documents of the protocol's text queries; give "
                         "--text-queries-from COLUMN or --label-queries COLUMN with it.")
    check_number("--text-weight", text_weight, min=0, max=1, hint="the benchmark's documents use 0.1")
    for k in ks:
        check_number("--k", k, min=1, integer=True, hint="e.g. --k 1,5,10")
    ks = sorted({int(k) for k in ks})
    if not ks:
        raise QueryError("--k takes positive whole numbers, e.g. --k 1,5,10.")
    check_number("--bootstrap", n_boot, min=10, max=MAX_BOOTSTRAP, integer=True, hint="1000 gives steady intervals")
    check_number("--seed", seed, min=0, integer=True)
    if text_template is not None:
        template_fields(text_template)  # a malformed template fails here, before any work
    return models, ks, int(n_boot), int(seed)


def _check_shared(ev: Evaluation, tables: dict, shared: set, ks: Sequence[int]) -> int:
    """The number of items every model holds (at least two), with notes on what that means."""
    if any(len(t) != len(shared) for t in tables.values()):
        ev.notes.append(f"models cover different items; evaluating on the {len(shared)} items all of them hold")
    n = len(shared)
    if n < 2:
        raise QueryError(f"Evaluation needs at least two items that every model holds (found {n}); "
                         "embed the same folder with each model.")
    if ks[-1] > n - 1:
        big = ", ".join(str(k) for k in ks if k > n - 1)
        ev.notes.append(f"k={big} is more than the {n - 1} other items: image->image ranks all of them "
                        f"(computed as k={n - 1}) and text->image counts a hit anywhere among the {n} items")
    return n


def _check_text_models(ev: Evaluation, models: Sequence[str], text_models: Sequence[str], protocol: dict,
                       search_modes: bool = False) -> None:
    if protocol and not text_models and not (search_modes and "text" in protocol):
        what = "text->image" if "text" in protocol else "label->image"
        raise QueryError(f"The published protocol's text queries ({what}) need a model with a text tower, and "
                         f"{', '.join(models)} {'has' if len(models) == 1 else 'have'} none; evaluate a model with "
                         f"text, e.g. --models siglip.")
    if protocol and len(text_models) < len(models):
        ev.notes.append(f"{', '.join(m for m in models if m not in text_models)}: no text tower, so no figure for the "
                        f"published protocol's text queries")


IMAGE_METRICS = {  # name -> f(relevance, relevant count per query, k)
    "precision": lambda r, n_rel, k: precision_at_k(r, k),
    "recall": recall_at_k,
    "map": ap_at_k,
    "ndcg": ndcg_at_k,
}


def _image_eval(ev: Evaluation, m: str, neighbours: np.ndarray, labs: dict, ks: Sequence[int], n: int, n_boot: int,
                seed: int, per_query: dict, per_value_rows: list) -> None:
    """image->image figures of model ``m`` for every label: each item queries its neighbours."""
    import pandas as pd

    rel = _image_relevance(neighbours, labs, min(max(ks), n - 1))
    for lab, r in rel.items():
        values = labs[lab]
        counts = pd.Series(values).value_counts()
        n_rel = counts.reindex(values).to_numpy() - 1
        keep = (n_rel > 0) & (values != "")
        for k in ks:
            for metric, fn in IMAGE_METRICS.items():
                v = fn(r, n_rel, min(k, n - 1))[keep]
                ev.metrics.append(Metric("image", lab, metric, k, m, float(v.mean()) if len(v) else float("nan"),
                                         bootstrap_ci(v, n_boot, seed), int(keep.sum()), v))
                per_query[("image", lab, metric, k, m)] = v
                for val, grp in pd.Series(v).groupby(values[keep]):
                    per_value_rows.append(("image", lab, val, metric, k, m, float(grp.mean()), len(grp)))
        if not keep.any():
            ev.notes.append(f"no image->image figure for {lab}: no item has a {lab} value that another item "
                            f"shares (all unique or missing), so there is nothing relevant to find")
        elif (~keep).any():
            ev.notes.append(f"{int((~keep).sum())} items have no {lab} value, or one no other item shares, "
                            f"and are left out of image->image {lab} (vrec compare's label agreement "
                            f"leaves them out the same way)")


def _paired_comparisons(ev: Evaluation, models: Sequence[str], per_query: dict, n_boot: int, seed: int) -> None:
    """The paired difference of the two models on every figure both have, query by query."""
    a, b = models
    for key in [k for k in per_query if k[-1] == a]:
        other = key[:-1] + (b,)
        if other in per_query and len(per_query[key]) == len(per_query[other]) and len(per_query[key]):
            res = paired_difference(per_query[key], per_query[other], n_boot, seed)
            res.update({"task": key[0], "label": key[1], "metric": key[2], "k": key[3], "first": a, "second": b,
                        "winner": {"first": a, "second": b, "tie": "tie"}[res["winner"]]})
            ev.comparisons.append(res)


def _shared_table(table, shared: set):
    """A model's catalog table restricted to the shared items, in id order (the same rows for every model)."""
    return table[table["id"].isin(shared)].sort_values("id").reset_index(drop=True)


def _text_query_sets(table, labels, queries, text_template, notes) -> list[tuple[str, list]]:
    """(name, [(text, relevant mask)]) for each text query set, checked against the metadata."""
    sets = []
    if queries:
        sets.append(("file", text_queries_from_file(table, queries, notes)))
    if text_template:
        qs = text_queries_from_template(table, text_template)
        if qs:
            sets.append(("template", qs))
        else:
            notes.append(f"the text template {text_template!r} gives no query: no item has a value in every "
                         f"column it names")
    elif labels and not queries:
        lab = labels[0]
        sets.append((lab, text_queries_from_template(table, "a photo of a {" + lab + "}.")))
    return sets


def _has_text(name: str) -> bool:
    from vrec.models.registry import resolve

    try:
        return resolve(name).text
    except Exception:
        return False


def _text_eval(ev, m, ms, table, labs, enc, ks, sets, zero_shot, n_boot, seed, per_query, pv_rows):
    vectors = ms.vectors_for_rows(table["row"].to_numpy())
    for name, qs in sets:
        qs = [(t, mask) for t, mask in qs if mask.any()]
        if not qs:
            continue
        qv = enc.encode_texts([t for t, _ in qs])
        scores = qv @ vectors.T  # queries x items, in batches of queries would be the same; query sets are small
        order = np.argsort(-scores, axis=1, kind="stable")
        rel = np.stack([mask[o] for (_, mask), o in zip(qs, order)])
        first = np.where(rel.any(1), rel.argmax(1) + 1, 0)
        for k in ks:
            v = hit_at_k(rel, k)
            ev.metrics.append(Metric("text", name, "recall", k, m, float(v.mean()), bootstrap_ci(v, n_boot, seed), len(v), v))
            per_query[("text", name, "recall", k, m)] = v
        v = reciprocal_rank(first)
        ev.metrics.append(Metric("text", name, "mrr", None, m, float(v.mean()), bootstrap_ci(v, n_boot, seed), len(v), v))
        per_query[("text", name, "mrr", None, m)] = v
    if zero_shot:
        for lab, values in labs.items():
            classes = sorted({v for v in values if v})
            if len(classes) < 2:
                continue
            cv = enc.encode_texts([f"a photo of a {c}." for c in classes])
            pred = np.asarray(classes, dtype=object)[np.argmax(vectors @ cv.T, axis=1)]
            known = values != ""
            v = (pred == values)[known].astype(np.float64)
            ev.metrics.append(Metric("zeroshot", lab, "accuracy", None, m, float(v.mean()), bootstrap_ci(v, n_boot, seed),
                                     len(v), v))
            per_query[("zeroshot", lab, "accuracy", None, m)] = v
            ev.notes.append(f"zero-shot {lab}: {len(classes)} classes, chance {1 / len(classes):.3f}, "
                            f"majority class {(values[known] == pd_mode(values[known])).mean():.3f}")


# --- the published protocol ------------------------------------------------------------------

def column_codes(table, column: str, option: str) -> tuple[np.ndarray, list[str]]:
    """Each item's value of ``column`` as a code into the sorted distinct values (-1: no value)."""
    if column not in table.columns:
        raise QueryError(f"No column {column!r} in the metadata for {option}.{suggest(column, table.columns)} "
                         f"Add it with 'vrec embed FOLDER --metadata CSV'.")
    values = table[column].astype("string").fillna("").str.strip().to_numpy(dtype=object)
    distinct = sorted({v for v in values if v})
    if not distinct:
        raise QueryError(f"Column {column!r} ({option}) has no value for any evaluated item, so it gives no query.")
    index = {v: i for i, v in enumerate(distinct)}
    return np.array([index.get(v, -1) for v in values], np.int64), distinct


def encode_texts_batched(enc, texts: Sequence[str], batch: int = 256) -> np.ndarray:
    """Text vectors in batches, so tens of thousands of titles never form one giant batch."""
    return np.concatenate([enc.encode_texts(list(texts[i:i + batch])) for i in range(0, len(texts), batch)])


def fused_documents(image: np.ndarray, text_codes: np.ndarray, text_vectors: np.ndarray, weight: float) -> np.ndarray:
    """normalise((1 - w) * image + w * text) per item; an item without text keeps its image vector."""
    docs = (1 - weight) * np.asarray(image, np.float32)
    has = text_codes >= 0
    docs[has] += weight * text_vectors[text_codes[has]]
    docs[~has] = image[~has]
    return docs / np.maximum(np.linalg.norm(docs, axis=1, keepdims=True), 1e-12)


def rank_queries(docs: np.ndarray, queries: np.ndarray, item_codes: np.ndarray, query_codes: np.ndarray,
                 ks: Sequence[int], cells: int = 4_000_000) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """For each query: the 1-based rank of its first relevant document, and how many relevant ones
    are in its top k, for each k (capped at the number of documents).

    A document is relevant to a query when their codes are equal. Documents are ranked by inner
    product, ties broken by document order (as a stable sort would); queries go in batches of at
    most ``cells`` scores, so no queries x documents matrix is held.
    """
    n = len(docs)
    kmax = min(max(ks), n)
    first = np.zeros(len(queries), np.int64)
    hits = {k: np.zeros(len(queries), np.int64) for k in ks}
    step = max(1, cells // max(n, 1))
    order_idx = np.arange(n)
    for start in range(0, len(queries), step):
        q = slice(start, min(len(queries), start + step))
        scores = queries[q] @ docs.T
        rel = item_codes[None, :] == query_codes[q, None]
        best = np.where(rel, scores, -np.inf).max(1)
        at_best = scores == best[:, None]
        first_pos = np.argmax(rel & at_best, axis=1)
        first[q] = (scores > best[:, None]).sum(1) + (at_best & (order_idx[None, :] < first_pos[:, None])).sum(1) + 1
        top = np.argsort(-scores, axis=1, kind="stable")[:, :kmax]
        top_rel = np.take_along_axis(rel, top, axis=1)
        for k in ks:
            hits[k][q] = top_rel[:, :min(k, n)].sum(1)
    return first, hits


def _protocol_eval(ev, m, ms, table, enc, protocol, codes, fuse, weight, n_boot, seed, per_query):
    """The leaderboard's text metrics for one model: R@1, R@10, MRR (text queries from a column) and
    P@1, P@10, MRR (label queries), against image or fused documents."""
    docs = ms.vectors_for_rows(table["row"].to_numpy())
    if fuse is not None:
        fuse_col, fuse_codes, fuse_values = fuse
        docs = fused_documents(docs, fuse_codes, encode_texts_batched(enc, fuse_values), weight)
        missing = int((fuse_codes < 0).sum())
        ev.notes.append(f"protocol documents: normalise({1 - weight:g} x image + {weight:g} x text of {fuse_col})"
                        + (f"; {missing} items without a {fuse_col} keep their image vector" if missing else ""))
    n = len(docs)
    for task, col in protocol.items():
        item_codes, values = codes[task]
        qv = encode_texts_batched(enc, values)
        first, hits = rank_queries(docs, qv, item_codes, np.arange(len(values)), PROTOCOL_KS)
        rows = []
        for k in PROTOCOL_KS:
            if task == "text":
                rows.append(("R", k, (first <= k).astype(np.float64)))
            else:
                rows.append(("P", k, hits[k] / min(k, n)))
        rows.append(("mrr", None, 1.0 / first))
        for metric, k, v in rows:
            ev.metrics.append(Metric(task, col, metric, k, m, float(v.mean()), bootstrap_ci(v, n_boot, seed), len(v), v))
            per_query[(task, col, metric, k, m)] = v
        ev.notes.append(f"protocol {'text->image' if task == 'text' else 'label->image'} {col}: {len(values)} "
                        f"queries (each distinct {col} value, as typed), relevant = the items with that value")


def pd_mode(values: np.ndarray):
    import pandas as pd

    return pd.Series(values).mode().iloc[0]


def to_dict(ev: Evaluation) -> dict:
    """JSON-ready evaluation: overall metrics with intervals, per label value, paired comparisons."""
    return json_safe({"models": ev.models, "labels": ev.labels, "k": ev.ks, "items": ev.items,
                      "metrics": to_records(ev.table()), "per_value": to_records(ev.per_value),
                      "comparisons": ev.comparisons, "scoring_comparisons": ev.scoring_comparisons, "hubs": ev.hubs,
                      "ranking": ev.ranking.to_dict() if ev.ranking is not None else None,
                      "language_gaps": ev.language_gaps,
                      "search_modes": ev.search_modes, "mode_comparisons": ev.mode_comparisons,
                      "notes": ev.notes})
