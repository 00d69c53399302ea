"""``vrec compare``: two models' neighbours side by side, and how much they differ over a catalog.

The claim behind vrec is that SigLIP neighbours share *meaning* (style, use) where CNN neighbours
share colour and texture. This module makes that visible per query, and measurable per catalog:
overlap@k between the two models' neighbour lists, and -- with a label column -- each model's
label agreement@k (the share of neighbours carrying the query's label).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import QueryError
from .index import search_rows
from .search import catalog_table, load_encoder, resolve_item, unknown_item
from .store import as_store

SUMMARY_MAX_QUERIES = 20_000  # larger catalogs are summarised on a seeded sample of this many items
TITLE_COLUMNS = ("title", "productDisplayName", "name")


@dataclass
class Side:
    """One model's neighbours of one query: rank, id, path, title, [label], score, common."""

    model: str
    table: "object"  # pandas.DataFrame


@dataclass
class QueryComparison:
    query: str  # item id, or the photo path
    title: str
    path: str  # absolute path of the query photo
    label: str | None
    left: Side
    right: Side
    overlap: float  # share of the k neighbours that both models return


@dataclass
class Summary:
    items: int  # items summarised (all shared items, or a sample)
    k: int
    mean_overlap: float
    label: str | None = None
    left_agreement: float | None = None
    right_agreement: float | None = None
    per_label: "object | None" = None  # DataFrame: label value, items, left, right
    sampled: bool = False


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


def _title(row) -> str:
    for c in TITLE_COLUMNS:
        if c in row.index and isinstance(row[c], str) and row[c]:
            return row[c]
    return str(row["id"])


class _Pair:
    """The two model stores restricted to the items both hold, aligned by id."""

    def __init__(self, store, left: str, right: str):
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

    def vectors(self, side: str, positions) -> np.ndarray:
        return self.ms[side].vectors_for_rows(self.rows[side][np.asarray(positions)])

    def neighbours(self, side: str, queries: np.ndarray, k: int, exclude: Sequence[int | None]) -> list[list[tuple[int, float]]]:
        """Top-k (position, score) per query, leaving out each query's own position."""
        allowed = None if self.all_shared[side] else self.rows[side]
        rows, scores = search_rows(self.ms[side], queries, k + 1, allowed_rows=allowed)
        out = []
        for q, (r, s) in enumerate(zip(rows, scores)):
            pairs = [(self.pos_of[side][int(x)], float(y)) for x, y in zip(r, s) if int(x) in self.pos_of[side]]
            out.append([(p, y) for p, y in pairs if p != exclude[q]][:k])
        return out


def compare(items: Sequence[str] = (), left: str = "cnn", right: str = "siglip", k: int = 5, sample: int = 5,
            seed: int = 0, label: str | None = None, store=None, summary: bool | None = None,
            device: str = "auto") -> Comparison:
    """Compare two embedded models' neighbours.

    ``items`` are catalog ids or photo paths; without them ``sample`` items are picked spread over
    the catalog (across label values with ``label``, else across clusters), reproducibly by ``seed``.
    ``summary`` (default: when items are sampled) adds catalog-wide overlap and label agreement.
    """
    if k < 1:
        raise QueryError("--k must be at least 1.")
    if left == right:
        raise QueryError("--left and --right name the same model; compare two different models.")
    pair = _Pair(store, left, right)
    table = pair.table
    if label is not None and label not in table.columns:
        from .errors import suggest

        raise QueryError(f"No column {label!r} in the metadata for --label.{suggest(label, table.columns)}")
    result = Comparison(left, right, k, label, str(pair.st.root), notes=list(pair.notes))
    queries = _queries(pair, items, sample, seed, label, device)
    for q in queries:
        result.queries.append(_compare_one(pair, q, k, label))
    if summary if summary is not None else not items:
        result.summary = summarise(pair, k, label, seed)
    return result


def _item_query(pair: _Pair, pos: int, label: str | None) -> dict:
    """A catalog item as a query: its stored vectors in both models, and what to show of it."""
    row = pair.table.iloc[pos]
    return {"query": row["id"], "title": _title(row), "path": str(pair.st.root / row["path"]),
            "label": row.get(label) if label else None, "pos": pos,
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
            from .catalog import BadImage, load_image

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
    them, round-robin). Otherwise: the item nearest each centre of an n-cluster k-means of the
    right model's vectors, so the sample covers the catalog's visual range.
    """
    table = pair.table
    n = min(max(n, 0), len(table))
    rng = np.random.default_rng(seed)
    if n == 0:
        return []
    if label:
        groups = [np.flatnonzero((table[label] == v).to_numpy()) for v in table[label].value_counts().index]
        for g in groups:
            rng.shuffle(g)
        picks: list[int] = []
        depth = 0
        while len(picks) < n:
            picks += [int(g[depth]) for g in groups if depth < len(g)][: n - len(picks)]
            depth += 1
        return picks
    from .stylemap import kmeans

    v = pair.vectors("right", np.arange(len(table)))
    centres, _ = kmeans(v, n, seed)
    nearest: list[int] = []
    for c in range(n):
        order = np.argsort(-(v @ centres[c]))
        nearest.append(int(next(p for p in order if p not in nearest)))
    return nearest


def _side_table(pair: _Pair, model: str, neighbours, common: set[int], label: str | None):
    import pandas as pd

    t = pair.table
    rows = []
    for rank, (pos, score) in enumerate(neighbours, 1):
        r = t.iloc[pos]
        rows.append({"rank": rank, "id": r["id"], "path": r["path"], "title": _title(r),
                     **({label: r[label]} if label else {}), "score": score, "common": pos in common})
    return Side(model, pd.DataFrame(rows))


def _compare_one(pair: _Pair, q: dict, k: int, label: str | None) -> QueryComparison:
    nb = {s: pair.neighbours(s, q["vectors"][s], k, [q["pos"]])[0] for s in ("left", "right")}
    common = {p for p, _ in nb["left"]} & {p for p, _ in nb["right"]}
    return QueryComparison(
        query=q["query"], title=q["title"], path=q["path"], label=None if q["label"] is None else str(q["label"]),
        left=_side_table(pair, pair.ms["left"].name, nb["left"], common, label),
        right=_side_table(pair, pair.ms["right"].name, nb["right"], common, label),
        overlap=len(common) / k,
    )


def overlap_at_k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row, the share of ``a``'s k neighbours that also appear among ``b``'s."""
    k = a.shape[1]
    return np.array([len(set(x) & set(y)) / k for x, y in zip(a.tolist(), b.tolist())])


def label_agreement(neighbours: np.ndarray, labels: np.ndarray, query_labels: np.ndarray | None = None) -> np.ndarray:
    """Per query, the share of its neighbours (positions; -1 = none) whose label equals the query's."""
    query_labels = labels if query_labels is None else query_labels
    same = (labels[neighbours] == query_labels[:, None]) & (neighbours >= 0)
    return same.mean(axis=1)


def summarise(pair: _Pair, k: int, label: str | None, seed: int = 0, batch: int = 1024) -> Summary:
    """Overlap@k and label agreement@k over the catalog (through the indexes when they are large)."""
    import pandas as pd

    n = len(pair.table)
    k = min(k, n - 1)
    if k < 1:
        raise QueryError("The catalog needs at least two shared items to compare neighbours.")
    queries = np.arange(n)
    sampled = n > SUMMARY_MAX_QUERIES
    if sampled:
        queries = np.sort(np.random.default_rng(seed).choice(n, SUMMARY_MAX_QUERIES, replace=False))
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
    if label:
        labels = pair.table[label].astype(str).to_numpy()
        qlabels = labels[queries]
        agree = {side: label_agreement(nbs[side], labels, qlabels) for side in nbs}
        s.left_agreement, s.right_agreement = float(agree["left"].mean()), float(agree["right"].mean())
        per = pd.DataFrame({label: qlabels, "left": agree["left"], "right": agree["right"]})
        s.per_label = (per.groupby(label).agg(items=("left", "size"), left=("left", "mean"), right=("right", "mean"))
                       .sort_values("items", ascending=False).reset_index())
    return s


def to_dict(c: Comparison) -> dict:
    """JSON-ready form of a comparison."""
    from .render import to_records

    out = {"left": c.left, "right": c.right, "k": c.k, "label": c.label, "notes": c.notes,
           "queries": [{"query": q.query, "title": q.title, "label": q.label, "overlap": q.overlap,
                        "left": to_records(q.left.table), "right": to_records(q.right.table)} for q in c.queries]}
    if c.summary:
        s = c.summary
        out["summary"] = {"items": s.items, "k": s.k, "mean_overlap": s.mean_overlap, "label": s.label,
                          "left_agreement": s.left_agreement, "right_agreement": s.right_agreement, "sampled": s.sampled,
                          "per_label": to_records(s.per_label) if s.per_label is not None else None}
    return out
