"""``vrec eval``: offline evidence, on your own labelled catalog, of which model retrieves better.

Image -> image: every item queries the rest (itself excluded); an item is relevant when it shares
the query's label value. Reported per model, overall and per label value: precision@k, recall@k,
mAP@k and nDCG@k. Queries whose label has no other item are left out (nothing could be found).

Text -> image (models with a text tower): queries built from labels with a template, or read from a
file; R@k (share of queries with a relevant item in the top k) and MRR; plus zero-shot
classification accuracy for each label column.

Uncertainty: a bootstrap over queries gives 95% intervals, and a paired bootstrap over the same
queries says which of two models wins, by how much, and whether the interval excludes zero.

Neighbours come from the index search (exact below its threshold), in batches: no n x n matrix.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .errors import QueryError, suggest
from .index import search_rows
from .search import catalog_table, load_encoder
from .store import as_store

IMAGE_METRICS = ("precision", "recall", "map", "ndcg")
TEXT_METRICS = ("recall", "mrr")


# --- metrics on relevance lists -------------------------------------------------------------

def precision_at_k(rel: np.ndarray, k: int) -> np.ndarray:
    """rel: bool [queries, >=k] in rank order. Hits in the top k over k."""
    return rel[:, :k].sum(1) / k


def recall_at_k(rel: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    return rel[:, :k].sum(1) / np.maximum(n_relevant, 1)


def ap_at_k(rel: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Average precision over the top k, normalised by min(relevant, k)."""
    r = rel[:, :k].astype(np.float64)
    prec = np.cumsum(r, 1) / np.arange(1, r.shape[1] + 1)
    return (prec * r).sum(1) / np.maximum(np.minimum(n_relevant, k), 1)


def ndcg_at_k(rel: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    r = rel[:, :k].astype(np.float64)
    disc = 1.0 / np.log2(np.arange(2, r.shape[1] + 2))
    dcg = (r * disc).sum(1)
    ideal_disc = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
    idcg = ideal_disc[np.minimum(n_relevant, k)]
    return np.where(idcg > 0, dcg / np.maximum(idcg, 1e-12), 0.0)


def hit_at_k(rel: np.ndarray, k: int) -> np.ndarray:
    return rel[:, :k].any(1).astype(np.float64)


def reciprocal_rank(first_rank: np.ndarray) -> np.ndarray:
    """first_rank: 1-based rank of the first relevant item, 0 when none."""
    return np.where(first_rank > 0, 1.0 / np.maximum(first_rank, 1), 0.0)


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval of the mean over resampled queries."""
    values = np.asarray(values, np.float64)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean of a - b over the same queries, with a bootstrap interval; who wins and whether it is clear."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    lo, hi = bootstrap_ci(d, n_boot, seed)
    mean = float(d.mean()) if len(d) else float("nan")
    return {"difference": mean, "ci": [lo, hi], "excludes_zero": bool(lo > 0 or hi < 0),
            "winner": "first" if mean > 0 else "second" if mean < 0 else "tie"}


# --- the evaluation -------------------------------------------------------------------------

@dataclass
class Metric:
    """One number with its interval, e.g. image->image precision@5 of one model for one label."""

    task: str  # "image", "text" or "zeroshot"
    label: str
    metric: str
    k: int | None
    model: str
    value: float
    ci: tuple[float, float]
    queries: int
    per_query: np.ndarray = field(repr=False, default=None)


@dataclass
class Evaluation:
    models: list[str]
    labels: list[str]
    ks: list[int]
    items: int
    metrics: list[Metric] = field(default_factory=list)
    per_value: "object | None" = None  # DataFrame: task, label, value, metric, k, model, score, queries
    comparisons: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self):
        """Overall metrics as a DataFrame: task, label, metric, k, then one column per model."""
        import pandas as pd

        rows = [{"task": m.task, "label": m.label, "metric": m.metric, "k": m.k, "model": m.model,
                 "value": m.value, "ci_low": m.ci[0], "ci_high": m.ci[1], "queries": m.queries} for m in self.metrics]
        return pd.DataFrame(rows)


def _labels_of(table, label: str) -> np.ndarray:
    if label not in table.columns:
        raise QueryError(f"No column {label!r} in the metadata for --label.{suggest(label, table.columns)} "
                         f"Add labels with 'vrec embed FOLDER --metadata CSV'.")
    return table[label].astype("string").fillna("").to_numpy(dtype=object)


def _image_relevance(ms, table, labels: dict[str, np.ndarray], kmax: int, batch: int = 2048):
    """Per label: bool [n, kmax] relevance of each item's neighbours (itself excluded), in rank order."""
    n = len(table)
    rows = table["row"].to_numpy()
    pos_of = dict(zip(rows.tolist(), range(n)))
    kk = min(kmax, n - 1)
    neighbours = np.empty((n, kk), np.int64)
    for start in range(0, n, batch):
        idx = np.arange(start, min(n, start + batch))
        found, _ = search_rows(ms, ms.vectors_for_rows(rows[idx]), kk + 1)
        for i, q in enumerate(idx):
            lst = [pos_of[int(r)] for r in found[i] if pos_of.get(int(r), -1) != q][:kk]
            neighbours[q, : len(lst)] = lst
            neighbours[q, len(lst):] = -1
    out = {}
    for label, lab in labels.items():
        rel = np.zeros((n, kmax), bool)
        rel[:, :kk] = (lab[np.maximum(neighbours, 0)] == lab[:, None]) & (neighbours >= 0) & (lab[:, None] != "")
        out[label] = rel
    return out


def evaluate(models: Sequence[str] = ("siglip", "cnn"), labels: Sequence[str] = (), ks: Sequence[int] = (1, 5, 10),
             store=None, queries: str | None = None, text_template: str | None = None, zero_shot: bool = True,
             n_boot: int = 1000, seed: int = 0, device: str = "auto") -> Evaluation:
    """Evaluate embedded models on a labelled catalog. See the module docstring for the definitions."""
    import pandas as pd

    st = as_store(store)
    if not labels and not queries:
        raise QueryError("Name at least one --label COLUMN (e.g. --label category) or give --queries FILE.")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise QueryError("--k takes positive numbers, e.g. --k 1,5,10.")
    stores = {m: st.model(m) for m in models}
    tables = {m: catalog_table(st, ms) for m, ms in stores.items()}
    shared = set.intersection(*(set(t["id"]) for t in tables.values()))
    ev = Evaluation(list(models), list(labels), ks, len(shared))
    if any(len(t) != len(shared) for t in tables.values()):
        ev.notes.append(f"models cover different items; evaluating on the {len(shared)} items all of them hold")
    per_value_rows = []
    per_query: dict[tuple, np.ndarray] = {}
    for m, ms in stores.items():
        table = tables[m]
        table = table[table["id"].isin(shared)].sort_values("id").reset_index(drop=True)
        labs = {lab: _labels_of(table, lab) for lab in labels}
        if labels:
            rel = _image_relevance(ms, table, labs, max(ks))
            for lab, r in rel.items():
                values = labs[lab]
                counts = pd.Series(values).value_counts()
                n_rel = counts.reindex(values).to_numpy() - 1
                keep = (n_rel > 0) & (values != "")
                for k in ks:
                    for metric, fn in (("precision", lambda: precision_at_k(r, min(k, len(table) - 1))),
                                       ("recall", lambda: recall_at_k(r, n_rel, k)),
                                       ("map", lambda: ap_at_k(r, n_rel, k)),
                                       ("ndcg", lambda: ndcg_at_k(r, n_rel, k))):
                        v = fn()[keep]
                        ev.metrics.append(Metric("image", lab, metric, k, m, float(v.mean()) if len(v) else float("nan"),
                                                 bootstrap_ci(v, n_boot, seed), int(keep.sum()), v))
                        per_query[("image", lab, metric, k, m)] = v
                        for val, grp in pd.Series(v).groupby(values[keep]):
                            per_value_rows.append(("image", lab, val, metric, k, m, float(grp.mean()), len(grp)))
                if (~keep).any():
                    ev.notes.append(f"{int((~keep).sum())} items have no other item with the same {lab} "
                                    f"(or none at all) and are left out of image->image {lab}")
        if _has_text(m):
            enc = load_encoder(ms, device=device)
            _text_eval(ev, m, ms, table, labs, enc, ks, queries, text_template, zero_shot, n_boot, seed,
                       per_query, per_value_rows)
    ev.per_value = pd.DataFrame(per_value_rows, columns=["task", "label", "value", "metric", "k", "model", "score", "queries"])
    if len(models) == 2:
        a, b = models
        for key in [k for k in per_query if k[-1] == a]:
            other = key[:-1] + (b,)
            if other in per_query and len(per_query[key]) == len(per_query[other]):
                res = paired_difference(per_query[key], per_query[other], n_boot, seed)
                res.update({"task": key[0], "label": key[1], "metric": key[2], "k": key[3], "first": a, "second": b,
                            "winner": {"first": a, "second": b, "tie": "tie"}[res["winner"]]})
                ev.comparisons.append(res)
    return ev


def _has_text(name: str) -> bool:
    from .encoders import resolve

    try:
        return resolve(name).text
    except Exception:
        return False


_FIELD = re.compile(r"\{(\w+)\}")


def text_queries_from_template(table, template: str) -> list[tuple[str, np.ndarray]]:
    """One query per combination of label values named in the template, with its relevant items."""
    cols = _FIELD.findall(template)
    for c in cols:
        if c not in table.columns:
            raise QueryError(f"The text template names {{{c}}}, which is not a metadata column.{suggest(c, table.columns)}")
    out = []
    for values, grp in table.groupby(cols, dropna=True):
        values = values if isinstance(values, tuple) else (values,)
        text = template
        for c, v in zip(cols, values):
            text = text.replace("{" + c + "}", str(v))
        mask = np.zeros(len(table), bool)
        mask[grp.index.to_numpy()] = True
        out.append((text, mask))
    return out


def text_queries_from_file(table, path: str) -> list[tuple[str, np.ndarray]]:
    """A CSV with a 'query' column and either 'relevant_ids' (separated by ';') or 'filter'."""
    import pandas as pd

    from .filters import apply_filters

    try:
        df = pd.read_csv(path, dtype=str).fillna("")
    except FileNotFoundError:
        raise QueryError(f"Queries file {path!r} does not exist.") from None
    if "query" not in df.columns or not ({"relevant_ids", "filter"} & set(df.columns)):
        raise QueryError(f"Queries file {path!r} needs a 'query' column and a 'relevant_ids' or 'filter' column.")
    ids = table["id"].astype(str)
    out = []
    for row in df.itertuples(index=False):
        rel_ids = getattr(row, "relevant_ids", "")
        if rel_ids:
            mask = ids.isin([s.strip() for s in rel_ids.split(";") if s.strip()]).to_numpy()
        else:
            mask = apply_filters(table, [f.strip() for f in row.filter.split("&&") if f.strip()])
        out.append((row.query, mask))
    return out


def _text_eval(ev, m, ms, table, labs, enc, ks, queries, text_template, zero_shot, n_boot, seed, per_query, pv_rows):
    sets = []
    if queries:
        sets.append(("file", text_queries_from_file(table, queries)))
    if text_template:
        sets.append(("template", text_queries_from_template(table, text_template)))
    elif labs and not queries:
        lab = next(iter(labs))
        sets.append((lab, text_queries_from_template(table, "a photo of a {" + lab + "}.")))
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


def pd_mode(values: np.ndarray):
    import pandas as pd

    return pd.Series(values).mode().iloc[0]


def to_dict(ev: Evaluation) -> dict:
    """JSON-ready evaluation: overall metrics with intervals, per label value, paired comparisons."""
    from .render import to_records

    return {"models": ev.models, "labels": ev.labels, "k": ev.ks, "items": ev.items,
            "metrics": to_records(ev.table()), "per_value": to_records(ev.per_value),
            "comparisons": ev.comparisons, "notes": ev.notes}
