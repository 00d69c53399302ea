"""Beyond-accuracy figures for ``vrec eval`` and ``vrec ab arms``: catalog coverage@k, in-degree
Gini@k with the most over-recommended items, and intra-list diversity@k (mean pairwise cosine
distance, and distinct label values per list), per model.

The measures themselves are in :mod:`vrec.search.beyond` (``vrec compare`` uses them too). Here
they become :class:`~vrec.experiments.metrics.Metric` rows of an evaluation: the two diversity
measures are per list, so they get 95% bootstrap intervals over the query items and, for two
models, a paired difference; coverage and Gini describe the whole k-NN graph (resampling lists
would only shrink coverage), so they are single figures.

One ruler for diversity: every model's lists are measured with the *first* model's vectors, since
distances in two embedding spaces are not on one scale (a note says which model is the ruler).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vrec.experiments.metrics import Metric, bootstrap_ci
from vrec.search.beyond import distinct_labels, graph_summary, intra_list_distance

NO_CI = (float("nan"), float("nan"))
TITLE_COLUMNS = ("title", "productDisplayName", "name")


def titles(table) -> np.ndarray:
    """Each item's title (the first of TITLE_COLUMNS it has), else its id."""
    out = table["id"].astype(str).to_numpy(dtype=object)
    for c in reversed(TITLE_COLUMNS):
        if c in table.columns:
            vals = table[c].astype("string").fillna("").to_numpy(dtype=object)
            out = np.where(vals != "", vals, out)
    return out


def hub_rows(model: str, hubs: list[tuple[int, int]], table, lists: int) -> list[dict]:
    """The most over-recommended items as plain rows: model, rank, id, title, lists, share of lists."""
    ids = table["id"].astype(str).to_numpy(dtype=object)
    names = titles(table)
    return [{"model": model, "rank": r, "id": ids[p], "title": names[p], "lists": d, "share": d / max(lists, 1)}
            for r, (p, d) in enumerate(hubs, 1)]


def beyond_eval(ev, model: str, neighbours: np.ndarray, table, ruler, labs: dict,
                ks: Sequence[int], n_boot: int, seed: int, per_query: dict) -> None:
    """Append model ``model``'s coverage, Gini, diversity (and distinct labels per list) at each k to
    ``ev.metrics`` and its most over-recommended items (at the largest k) to ``ev.hubs``.

    ``neighbours``: [n, kmax] positions of each item's neighbours in ``table`` (itself excluded)."""
    n = len(table)
    for k in ks:
        kk = min(k, neighbours.shape[1])
        g = graph_summary(neighbours, n, kk)
        ev.metrics.append(Metric("beyond", "catalog", "coverage", k, model, g["coverage"], NO_CI, n))
        ev.metrics.append(Metric("beyond", "catalog", "gini", k, model, g["gini"], NO_CI, n))
        if kk < 2:
            continue  # a list of one item has no diversity to measure
        per_list = {"cosine": intra_list_distance(neighbours[:, :kk], ruler)}
        per_list.update({lab: distinct_labels(neighbours[:, :kk], values) for lab, values in labs.items()})
        for lab, v in per_list.items():
            metric = "diversity" if lab == "cosine" else "distinct"
            v = v[~np.isnan(v)]
            ev.metrics.append(Metric("beyond", lab, metric, k, model, float(v.mean()) if len(v) else float("nan"),
                                     bootstrap_ci(v, n_boot, seed), len(v), v))
            per_query[("beyond", lab, metric, k, model)] = v
    kmax = min(max(ks), neighbours.shape[1])
    ev.hubs += hub_rows(model, graph_summary(neighbours, n, kmax)["hubs"], table, n)


def name_winners(ev) -> None:
    """A paired difference of diversity says which model's lists are *more diverse*, not which is
    better: say so in its winner."""
    for c in ev.comparisons:
        if c["task"] == "beyond" and c["winner"] != "tie":
            c["winner"] = f"more diverse: {c['winner']}"


def ruler_note(ruler_model: str, models: Sequence[str]) -> str:
    return (f"intra-list diversity is the mean cosine distance within each list measured with {ruler_model}'s "
            f"vectors for every model (one ruler: distances in different embedding spaces are not comparable)"
            if len(models) > 1 else
            f"intra-list diversity is the mean cosine distance within each list, in {ruler_model}'s vectors")


# --- vrec ab arms --------------------------------------------------------------------------------

def arms_figures(st, names: Sequence[str], tables: dict, k: int, filters: Sequence[str], label: str | None
                 ) -> tuple[list[dict], list[dict]]:
    """``arms_beyond`` over the recommendable items (those the filters keep) of the first arm's
    model, whose vectors are the diversity ruler."""
    from vrec.search.compare import label_values
    from vrec.store.catalog_table import catalog_table
    from vrec.store.filters import apply_filters

    ms = st.model(names[0])
    cat = catalog_table(st, ms)
    if filters:
        cat = cat[apply_filters(cat, filters)].reset_index(drop=True)
    rows = cat["row"].to_numpy()
    return arms_beyond(tables, cat, lambda pos: ms.vectors_for_rows(rows[pos]), k,
                       label_values(cat, label) if label else None)


def arms_beyond(tables: dict, catalog, ruler, k: int, label_values: np.ndarray | None,
                n_boot: int = 1000, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Per arm: coverage, Gini, diversity (with a 95% interval) and distinct labels per list, and its
    most over-recommended items.

    ``tables``: arm -> "similar items" table (item, rank, neighbour, ...), ids as in ``catalog`` (the
    recommendable items: coverage and Gini count over them); ``ruler``: ``catalog``'s vectors by row, or a
    function positions -> vectors.
    """
    pos = {i: p for p, i in enumerate(catalog["id"].astype(str))}
    n = len(catalog)
    rows, hubs = [], []
    for arm, t in tables.items():
        nb = _positions(t, pos, k)
        g = graph_summary(nb, n, k)
        div = intra_list_distance(nb, ruler)
        div = div[~np.isnan(div)]
        row = {"arm": arm, "k": k, "items": len(nb), "coverage": g["coverage"], "gini": g["gini"],
               "diversity": float(div.mean()) if len(div) else float("nan"),
               "diversity_ci": list(bootstrap_ci(div, n_boot, seed))}
        if label_values is not None:
            d = distinct_labels(nb, label_values)
            row.update({"distinct": float(d.mean()) if len(d) else float("nan"),
                        "distinct_ci": list(bootstrap_ci(d, n_boot, seed))})
        rows.append(row)
        hubs += [{"arm": arm, **{k_: v for k_, v in h.items() if k_ != "model"}}
                 for h in hub_rows(arm, g["hubs"], catalog, len(nb))]
    return rows, hubs


def _positions(table, pos: dict, k: int) -> np.ndarray:
    """A "similar items" table as [items, k] catalog positions of the neighbours, by rank (-1: none)."""
    items = sorted(set(table["item"].astype(str)))
    row_of = {i: r for r, i in enumerate(items)}
    out = np.full((len(items), k), -1, np.int64)
    t = table[table["rank"] <= k]
    r = t["item"].astype(str).map(row_of).to_numpy()
    c = t["rank"].to_numpy(np.int64) - 1
    p = t["neighbour"].astype(str).map(pos).fillna(-1).to_numpy(np.int64)
    out[r, c] = p
    return out
