"""Beyond accuracy: what a model's "similar items" lists do to the catalog as a whole.

Computed on the k-NN graph -- every item's top-k list of other items -- as positions into the
catalog (-1 where a list is shorter than k):

- **catalog coverage@k**: the share of the catalog's items that appear in at least one item's
  top-k list. Items that no list ever shows are never recommended from a product page.
- **in-degree Gini@k**: how unequally the lists' slots are shared out. An item's in-degree is the
  number of lists it appears in; the Gini coefficient of the in-degrees over every catalog item
  (zeros included) is 0 when every item appears equally often and approaches 1 when a few "hubs"
  fill everyone's lists (hubness, reported for CLIP-like spaces). ``top_hubs`` lists the most
  over-recommended items.
- **intra-list diversity@k**: per list, the mean pairwise cosine distance (1 - cosine) between
  its items, measured with one set of vectors (a "ruler"); and, with a label column, the number
  of distinct label values in the list.

Coverage and Gini describe the whole graph, so they have no per-query interval; the two diversity
measures are per list, so ``vrec eval`` gives them bootstrap intervals (vrec.experiments.beyond).
"""
from __future__ import annotations

import numpy as np

TOP_HUBS = 10  # over-recommended items listed per model


def in_degree(neighbours: np.ndarray, n_items: int) -> np.ndarray:
    """How many lists each of the ``n_items`` catalog positions appears in (-1 entries ignored)."""
    nb = np.asarray(neighbours).ravel()
    return np.bincount(nb[nb >= 0], minlength=n_items)[:n_items]


def coverage(neighbours: np.ndarray, n_items: int) -> float:
    """Share of the catalog's ``n_items`` that appear in at least one list."""
    return float((in_degree(neighbours, n_items) > 0).sum() / max(n_items, 1))


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts: 0 = all equal, towards 1 = concentrated on a few.

    G = sum_i (2i - n - 1) x_(i) / (n sum x), with x sorted ascending and i = 1..n (the mean
    absolute difference over twice the mean). NaN when every count is zero."""
    x = np.sort(np.asarray(counts, np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total <= 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def top_hubs(neighbours: np.ndarray, n_items: int, top: int = TOP_HUBS) -> list[tuple[int, int]]:
    """(position, in-degree) of the ``top`` items appearing in the most lists, most first (ties by
    position)."""
    deg = in_degree(neighbours, n_items)
    order = np.lexsort((np.arange(len(deg)), -deg))[:top]
    return [(int(p), int(deg[p])) for p in order if deg[p] > 0]


def intra_list_distance(neighbours: np.ndarray, vectors, batch: int = 1024) -> np.ndarray:
    """Per list: mean pairwise cosine distance (1 - cosine) between its items; NaN for a list of
    fewer than two items. ``vectors``: the catalog's vectors by position, as an array or as a
    function positions -> vectors (read a batch of lists at a time, so no catalog-sized copy)."""
    nb = np.asarray(neighbours)
    fetch = vectors if callable(vectors) else (lambda pos: np.asarray(vectors)[pos])
    out = np.full(len(nb), np.nan)
    for start in range(0, len(nb), batch):
        chunk = nb[start:start + batch]
        valid = chunk >= 0
        used, inv = np.unique(np.maximum(chunk, 0), return_inverse=True)
        v = np.asarray(fetch(used), np.float32)
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        x = v[inv.reshape(chunk.shape)] * valid[..., None]  # missing slots become zero vectors
        gram = np.einsum("bkd,bld->bkl", x, x)
        m = valid.sum(1)
        pairs = m * (m - 1)
        sim = gram.sum((1, 2)) - np.einsum("bkk->b", gram)  # off-diagonal sum over the valid items
        out[start:start + len(chunk)] = np.where(pairs > 0, 1 - sim / np.maximum(pairs, 1), np.nan)
    return out


def distinct_labels(neighbours: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per list: how many distinct non-empty label values its items carry."""
    nb = np.asarray(neighbours)
    codes = np.unique(np.asarray(labels, dtype=object), return_inverse=True)[1].reshape(-1)
    empty = np.asarray(labels, dtype=object) == ""
    c = np.where((nb >= 0) & ~empty[np.maximum(nb, 0)], codes[np.maximum(nb, 0)], -1)
    c = np.sort(c, axis=1)
    new = np.ones_like(c, bool)
    new[:, 1:] = c[:, 1:] != c[:, :-1]
    return (new & (c >= 0)).sum(1).astype(np.float64)


def graph_summary(neighbours: np.ndarray, n_items: int, k: int) -> dict:
    """Coverage@k and Gini@k of the first k columns of ``neighbours``, with the top hubs."""
    nb = np.asarray(neighbours)[:, :k]
    deg = in_degree(nb, n_items)
    return {"k": int(k), "coverage": float((deg > 0).sum() / max(n_items, 1)), "gini": gini(deg),
            "hubs": top_hubs(nb, n_items)}
