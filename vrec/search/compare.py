"""``vrec compare``: two models' neighbours side by side, and how much they differ over a catalog.

The claim behind vrec is that SigLIP neighbours share *meaning* (style, use) where CNN neighbours
share colour and texture. This module makes that visible per query, and measurable per catalog:
overlap@k between the two models' neighbour lists, and -- with a label column -- each model's
label agreement@k (the share of neighbours carrying the query's label).

Rules, the same per item and in the summary:

- k is at most the number of *other* shared items (n - 1); a larger --k is lowered to it, with a
  note, so overlap@k is always "shared neighbours / neighbours shown".
- label agreement leaves out queries without a label value, or with a value no other item has
  (nothing could agree) -- the rule ``vrec eval`` uses for image->image. A neighbour without a
  label counts as not agreeing. A note says how many queries were left out. Each item shown gets
  the same measure (``left_agreement``, ``right_agreement``: None where it would be left out).
- ``filters`` (the ``--filter`` language) restrict both models' neighbours to the matching items;
  the sample and the summary's queries are matching items too (an item named as a query need not
  match: only its neighbours must), and "no other item has" means no other matching item.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vrec.base.errors import QueryError, check_number
from vrec.search.query import load_encoder, resolve_item, unknown_item
from vrec.store.catalog_table import catalog_table
from vrec.store.filters import apply_filters
from vrec.store.index import search_rows
from vrec.store.store import as_store

SUMMARY_MAX_QUERIES = 20_000  # larger catalogs are summarised on a seeded sample of this many items
TITLE_COLUMNS = ("title", "productDisplayName", "name")
MAX_SAMPLE = 200  # items shown one by one; catalog-wide figures come from the summary


@dataclass
class Side:
    """One model's neighbours of one query: rank, id, path, title, [label], score, common."""

    model: str
    table: object  # pandas.DataFrame


@dataclass
class QueryComparison:
    query: str  # item id, or the photo path
    title: str
    path: str  # absolute path of the query photo
    label: str | None
    left: Side
    right: Side
    overlap: float  # share of the k neighbours that both models return
    left_agreement: float | None = None  # with a label: share of the k neighbours sharing the query's value
    right_agreement: float | None = None  # (None without a label value, or one no other item has)


@dataclass
class Summary:
    items: int  # items summarised (all shared items, or a sample)
    k: int
    mean_overlap: float
    label: str | None = None
    left_agreement: float | None = None  # None when no query has a label value another item shares
    right_agreement: float | None = None
    labelled: int | None = None  # queries in the label agreement (the others are left out; see the module doc)
    per_label: object | None = None  # DataFrame: label value, items, left, right
    sampled: bool = False
    beyond: list[dict] = field(default_factory=list)  # per model: coverage, gini, diversity[, distinct] (search.beyond)
    hubs: list[dict] = field(default_factory=list)  # per model: the most over-recommended items


@dataclass
class Comparison:
    left: str
    right: str
    k: int
    label: str | None
    root: str  # the catalog folder, where neighbour photos lie
    queries: list[QueryComparison] = field(default_factory=list)
    summary: Summary | None = None
    notes: list[str] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)


def _title(row) -> str:
    for c in TITLE_COLUMNS:
        if c in row.index and isinstance(row[c], str) and row[c]:
            return row[c]
    return str(row["id"])


class _Pair:
    """The two model stores restricted to the items both hold, aligned by id; ``matching``: which of
    them the filters keep (the candidates for neighbours, samples and summary queries)."""

    def __init__(self, store, left: str, right: str, filters: Sequence[str] = ()):
        self.st = as_store(store)
        self.ms = {"left": self.st.model(left), "right": self.st.model(right)}
        tables = {s: catalog_table(self.st, m) for s, m in self.ms.items()}
        shared = sorted(set(tables["left"]["id"]) & set(tables["right"]["id"]))
        self.notes = []
        if len(shared) < max(len(tables["left"]), len(tables["right"])):
            self.notes.append(f"{left} holds {len(tables['left'])} items and {right} {len(tables['right'])}; "
                              f"comparing on the {len(shared)} items both hold")
        if not shared:
            raise QueryError(f"{left} and {right} share no items; embed the same folder with both models.")
        self.table = tables["left"].set_index("id").loc[shared].reset_index()
        self.rows = {s: tables[s].set_index("id").loc[shared, "row"].to_numpy() for s in tables}
        self.all_shared = {s: len(shared) == len(tables[s]) for s in tables}
        self.pos_of = {s: dict(zip(self.rows[s].tolist(), range(len(shared)))) for s in tables}
        self.matching = apply_filters(self.table, filters) if filters else np.ones(len(shared), bool)
        self.candidates = np.flatnonzero(self.matching)
        self._labels: dict[str, np.ndarray] = {}

    def labels(self, label: str) -> np.ndarray:
        if label not in self._labels:
            self._labels[label] = label_values(self.table, label)
        return self._labels[label]

    def vectors(self, side: str, positions) -> np.ndarray:
        return self.ms[side].vectors_for_rows(self.rows[side][np.asarray(positions)])

    def neighbours(self, side: str, queries: np.ndarray, k: int, exclude: Sequence[int | None]) -> list[list[tuple[int, float]]]:
        """Top-k (position, score) per query, leaving out each query's own position."""
        allowed = None if self.all_shared[side] and self.matching.all() else self.rows[side][self.matching]
        rows, scores = search_rows(self.ms[side], queries, k + 1, allowed_rows=allowed)
        out = []
        for q, (r, s) in enumerate(zip(rows, scores)):
            pairs = [(self.pos_of[side][int(x)], float(y)) for x, y in zip(r, s) if int(x) in self.pos_of[side]]
            out.append([(p, y) for p, y in pairs if p != exclude[q]][:k])
        return out


def compare(items: Sequence[str] = (), left: str = "cnn", right: str = "siglip", k: int = 5, sample: int = 5,
            seed: int = 0, label: str | None = None, store=None, summary: bool | None = None,
            device: str = "auto", filters: Sequence[str] = ()) -> Comparison:
    """Compare two embedded models' neighbours.

    ``items`` are catalog ids or photo paths; without them ``sample`` items are picked spread over
    the catalog (across label values with ``label``, else across clusters), reproducibly by ``seed``.
    ``summary`` (default: when items are sampled) adds catalog-wide overlap and label agreement.
    ``filters`` restrict both sides' neighbours (and the sample and summary) to the matching items.
    """
    check_number("--k", k, min=1, integer=True, hint="e.g. --k 5")
    check_number("--sample", sample, min=0, max=MAX_SAMPLE, integer=True,
                 hint="0 shows only the catalog summary, which covers every item")
    check_number("--seed", seed, min=0, integer=True)
    k, sample, seed = int(k), int(sample), int(seed)
    if left == right:
        raise QueryError("--left and --right name the same model; compare two different models.")
    filters = [f for f in filters or () if f.strip()]
    pair = _Pair(store, left, right, filters)
    table = pair.table
    if label is not None and label not in table.columns:
        from vrec.base.errors import suggest

        raise QueryError(f"No column {label!r} in the metadata to measure label agreement with.{suggest(label, table.columns)}")
    n = len(pair.candidates)
    if filters and n < 2:
        raise QueryError(f"Only {n} of the {len(table)} items {left} and {right} share match the filters; comparing "
                         f"neighbours needs at least two: loosen the filters.")
    if n < 2:
        raise QueryError(f"{left} and {right} share only {n} item; comparing neighbours needs at least two.")
    result = Comparison(left, right, min(k, n - 1), label, str(pair.st.root), notes=list(pair.notes),
                        filters=filters)
    other = "other items matching the filters" if filters else "other items"
    if filters:
        result.notes.append(f"comparing neighbours among the {n} of {len(table)} shared items that match the filters")
    if k > n - 1:
        result.notes.append(f"--k {k} is more than the {n - 1} {other}; showing and scoring all {n - 1} "
                            f"(overlap@{n - 1}), per item and in the summary alike")
    k = result.k
    if sample > n and not items:
        result.notes.append(f"--sample {sample} is more than the {n} {'matching' if filters else 'shared'} items; "
                            f"showing all {n}")
    queries = _queries(pair, items, sample, seed, label, device)
    for q in queries:
        result.queries.append(_compare_one(pair, q, k, label))
    if summary if summary is not None else not items:
        result.summary = summarise(pair, k, label, seed)
        s = result.summary
        if s.sampled:
            result.notes.append(f"coverage and in-degree Gini are over the {s.items:,} sampled items' lists: the full "
                                "catalog's coverage is at least as high")
        if label and s.labelled == 0:
            result.notes.append(f"no label agreement figure: no item has a {label} value that another item shares "
                                f"(all unique or missing), so no neighbour could agree")
        elif label and s.labelled < s.items:
            result.notes.append(f"label agreement is over the {s.labelled} of {s.items} items whose {label} another "
                                f"item shares; the other {s.items - s.labelled} are left out (as in vrec eval)")
    return result


def label_values(table, label: str) -> np.ndarray:
    """The label column as strings, '' where missing (the same reading as ``vrec eval``)."""
    return table[label].astype("string").fillna("").str.strip().to_numpy(dtype=object)


def _item_query(pair: _Pair, pos: int, label: str | None) -> dict:
    """A catalog item as a query: its stored vectors in both models, and what to show of it."""
    from vrec.ingest.feed_source import local_photo

    row = pair.table.iloc[pos]
    value = label_values(pair.table.iloc[[pos]], label)[0] if label else ""
    return {"query": row["id"], "title": _title(row), "path": str(local_photo(pair.st.info(), str(row["path"])) or ""),
            "label": value or None, "pos": pos,
            "vectors": {s: pair.vectors(s, [pos]) for s in ("left", "right")}}


def _queries(pair: _Pair, items, sample, seed, label, device) -> list[dict]:
    table = pair.table
    out = []
    encoders = {}
    for text in items:
        pos = resolve_item(table, str(text))
        if pos is not None:
            out.append(_item_query(pair, pos, label))
        elif Path(text).is_file():
            from vrec.ingest.catalog import BadImage, load_image

            vectors = {}
            for side in ("left", "right"):
                if side not in encoders:
                    encoders[side] = load_encoder(pair.ms[side], device=device)
                enc = encoders[side]
                try:
                    img = load_image(text, min_size=enc.preprocess_spec.decode_size)
                except BadImage as e:
                    raise QueryError(f"Cannot use {str(text)!r} as a query image: {e}.") from None
                vectors[side] = enc.encode_images([img])
            out.append({"query": str(text), "title": Path(text).name, "path": str(Path(text).resolve()),
                        "label": None, "pos": None, "vectors": vectors})
        else:
            raise unknown_item(table, str(text))
    if not items:
        for pos in sample_items(pair, sample, seed, label):
            out.append(_item_query(pair, pos, label))
    return out


def sample_items(pair: _Pair, n: int, seed: int, label: str | None) -> list[int]:
    """Positions of ``n`` items spread over the catalog, the same for the same seed.

    With a label: one item from each of the ``n`` most common label values (more when n exceeds
    them, round-robin; then items without a label value). Otherwise: the item nearest each centre
    of an n-cluster k-means of the right model's vectors, so the sample covers the catalog's
    visual range.
    """
    cand = pair.candidates
    n = min(max(n, 0), len(cand))
    rng = np.random.default_rng(seed)
    if n == 0:
        return []
    if label:
        values = pair.labels(label)[cand]
        counts = pd_value_counts(values[values != ""])
        groups = [np.flatnonzero(values == v) for v in counts] + [np.flatnonzero(values == "")]
        for g in groups:
            rng.shuffle(g)
        labelled, unlabelled = groups[:-1], groups[-1]
        picks: list[int] = []
        depth = 0
        while len(picks) < n and any(depth < len(g) for g in labelled):
            picks += [int(g[depth]) for g in labelled if depth < len(g)][: n - len(picks)]
            depth += 1
        picks += [int(p) for p in unlabelled[: n - len(picks)]]
        return [int(cand[p]) for p in picks]
    from vrec.search.stylemap import kmeans

    v = pair.vectors("right", cand)
    centres, _ = kmeans(v, n, seed)
    nearest: list[int] = []
    for c in range(n):
        order = np.argsort(-(v @ centres[c]))
        nearest.append(int(next(p for p in order if p not in nearest)))
    return [int(cand[p]) for p in nearest]


def pd_value_counts(values: np.ndarray) -> list:
    """Distinct values, most common first (ties in order of first appearance)."""
    import pandas as pd

    return pd.Series(values, dtype=object).value_counts(sort=True).index.tolist()


def _side_table(pair: _Pair, model: str, neighbours, common: set[int], label: str | None):
    import pandas as pd

    t = pair.table
    labels = pair.labels(label) if label else None
    rows = []
    for rank, (pos, score) in enumerate(neighbours, 1):
        r = t.iloc[pos]
        rows.append({"rank": rank, "id": r["id"], "path": r["path"], "title": _title(r),
                     **({label: labels[pos]} if label else {}), "score": score, "common": pos in common})
    return Side(model, pd.DataFrame(rows))


def _compare_one(pair: _Pair, q: dict, k: int, label: str | None) -> QueryComparison:
    nb = {s: pair.neighbours(s, q["vectors"][s], k, [q["pos"]])[0] for s in ("left", "right")}
    common = {p for p, _ in nb["left"]} & {p for p, _ in nb["right"]}
    agree = {s: _item_agreement(pair, q, [p for p, _ in nb[s]], k, label) for s in nb}
    return QueryComparison(
        query=q["query"], title=q["title"], path=q["path"], label=None if q["label"] is None else str(q["label"]),
        left=_side_table(pair, pair.ms["left"].name, nb["left"], common, label),
        right=_side_table(pair, pair.ms["right"].name, nb["right"], common, label),
        overlap=len(common) / k, left_agreement=agree["left"], right_agreement=agree["right"],
    )


def _item_agreement(pair: _Pair, q: dict, neighbours: list[int], k: int, label: str | None) -> float | None:
    """One query's label agreement@k, as the summary counts it; None without a label value, or with one
    that no other (matching) item has."""
    if not label or not q["label"]:
        return None
    labels = pair.labels(label)
    peers = int((labels[pair.candidates] == q["label"]).sum()) - int(q["pos"] is not None and pair.matching[q["pos"]])
    if peers < 1:
        return None
    padded = np.array([neighbours[:k] + [-1] * (k - len(neighbours[:k]))])
    return float(label_agreement(padded, labels, np.array([q["label"]], dtype=object))[0])


def overlap_at_k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row, the share of ``a``'s k neighbours that also appear among ``b``'s."""
    k = a.shape[1]
    return np.array([len(set(x) & set(y)) / k for x, y in zip(a.tolist(), b.tolist())])


def label_agreement(neighbours: np.ndarray, labels: np.ndarray, query_labels: np.ndarray | None = None) -> np.ndarray:
    """Per query, the share of its neighbours (positions; -1 = none) whose label equals the query's.

    A missing label ('') never agrees; queries without a label are left out by the caller (summarise).
    """
    query_labels = labels if query_labels is None else query_labels
    same = (labels[neighbours] == query_labels[:, None]) & (neighbours >= 0) & (labels[neighbours] != "")
    return same.mean(axis=1)


def summarise(pair: _Pair, k: int, label: str | None, seed: int = 0, batch: int = 1024) -> Summary:
    """Overlap@k and label agreement@k over the catalog (through the indexes when they are large)."""
    import pandas as pd

    cand = pair.candidates
    n = len(cand)
    k = min(k, n - 1)
    if k < 1:
        raise QueryError("The catalog needs at least two shared items to compare neighbours.")
    queries = cand
    sampled = n > SUMMARY_MAX_QUERIES
    if sampled:
        queries = cand[np.sort(np.random.default_rng(seed).choice(n, SUMMARY_MAX_QUERIES, replace=False))]
    nbs = {}
    for side in ("left", "right"):
        parts = []
        for start in range(0, len(queries), batch):
            chunk = queries[start:start + batch]
            lists = pair.neighbours(side, pair.vectors(side, chunk), k, list(chunk))
            parts.append(np.array([[p for p, _ in lst] + [-1] * (k - len(lst)) for lst in lists]))
        nbs[side] = np.concatenate(parts)
    s = Summary(items=len(queries), k=k, mean_overlap=float(overlap_at_k(nbs["left"], nbs["right"]).mean()),
                label=label, sampled=sampled)
    s.beyond, s.hubs = _beyond(pair, nbs, label)
    if label:
        labels = pair.labels(label)
        counts = pd.Series(labels[cand]).value_counts()  # among the matching items
        has_peer = (counts.reindex(labels).fillna(0).to_numpy() > 1) & (labels != "")
        kept = has_peer[queries]
        qlabels = labels[queries][kept]
        agree = {side: label_agreement(nbs[side][kept], labels, qlabels) for side in nbs}
        s.labelled = int(kept.sum())
        if s.labelled:
            s.left_agreement, s.right_agreement = float(agree["left"].mean()), float(agree["right"].mean())
        per = pd.DataFrame({label: qlabels, "left": agree["left"], "right": agree["right"]})
        s.per_label = (per.groupby(label).agg(items=("left", "size"), left=("left", "mean"), right=("right", "mean"))
                       .sort_values("items", ascending=False).reset_index())
    return s


def _beyond(pair: _Pair, nbs: dict, label: str | None) -> tuple[list[dict], list[dict]]:
    """Coverage, in-degree Gini, intra-list distance (in the left model's vectors, for both sides) and
    distinct label values per list of each side's summary lists, over the matching items."""
    from vrec.search.beyond import TOP_HUBS, distinct_labels, gini, in_degree, intra_list_distance

    cand = pair.candidates
    rows, hubs = [], []
    for side, nb in nbs.items():
        deg = in_degree(nb, len(pair.table))[cand]
        div = intra_list_distance(nb, lambda pos: pair.vectors("left", pos))
        row = {"model": pair.ms[side].name, "coverage": float((deg > 0).mean()), "gini": gini(deg),
               "diversity": float(np.nanmean(div)) if (~np.isnan(div)).any() else float("nan")}
        if label:
            row["distinct"] = float(distinct_labels(nb, pair.labels(label)).mean())
        rows.append(row)
        top = np.lexsort((cand, -deg))[:TOP_HUBS]
        hubs += [{"model": row["model"], "rank": r, "id": str(pair.table.iloc[cand[p]]["id"]),
                  "title": _title(pair.table.iloc[cand[p]]), "lists": int(deg[p]), "share": int(deg[p]) / len(nb)}
                 for r, p in enumerate(top, 1) if deg[p] > 0]
    return rows, hubs


def to_dict(c: Comparison) -> dict:
    """JSON-ready form of a comparison."""
    from vrec.base.records import to_records

    out = {"left": c.left, "right": c.right, "k": c.k, "label": c.label, "filters": c.filters, "notes": c.notes,
           "queries": [{"query": q.query, "title": q.title, "label": q.label, "overlap": q.overlap,
                        "left_agreement": q.left_agreement, "right_agreement": q.right_agreement,
                        "left": to_records(q.left.table), "right": to_records(q.right.table)} for q in c.queries]}
    if c.summary:
        s = c.summary
        out["summary"] = {"items": s.items, "k": s.k, "mean_overlap": s.mean_overlap, "label": s.label,
                          "labelled": s.labelled, "left_agreement": s.left_agreement,
                          "right_agreement": s.right_agreement, "sampled": s.sampled, "beyond": s.beyond,
                          "hubs": s.hubs,
                          "per_label": to_records(s.per_label) if s.per_label is not None else None}
    return out
