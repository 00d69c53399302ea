"""``vrec map``: the assortment as style clusters, named by vocabulary concepts, on a 2-D map.

Clusters are spherical k-means on the (unit) vectors: each item joins the centre it is most
similar to. Each cluster is named by the vocabulary concepts whose text vectors are closest to its
centre; the map is the first two principal components of the vectors.

How ``clusters="auto"`` picks K (see :func:`auto_k_range`): the highest mean silhouette (cosine, on a
sample of up to 2,000 items), but only among K from about half to one and a half times sqrt(n/2) (the
classic rule of thumb for K), clamped to 2..40. The silhouette alone rewards the coarsest clean split:
on 800 fashion photos of 40-odd article types it chose K = 3 (watches / shoes / everything else),
useless for assortment work, while its values for K = 10..30 differ by noise. The range keeps clusters
at a size a merchandiser reviews (about 40 items each for 800 photos, so article types and styles show
up: watches, sunglasses, handbags, heels, T-shirts...), grows slowly with the catalog, and stops at 40
clusters, about as many as a person can read on one page; ask for more with ``clusters=N``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vrec.base.errors import QueryError, check_number
from vrec.store.catalog_table import catalog_table
from vrec.store.store import as_store

FIT_SAMPLE = 50_000  # k-means is fitted on at most this many items, then every item is assigned
SILHOUETTE_SAMPLE = 2_000
AUTO_MAX_CLUSTERS = 40  # clusters="auto" never goes above this: about what a person reads on one page
MAX_CLUSTERS = 200  # the most clusters one may ask for (k-means cost grows with K; a map of more is noise)


def kmeans(v: np.ndarray, k: int, seed: int = 0, iters: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means with k-means++ seeding: (centres [k, d] unit, labels [n])."""
    rng = np.random.default_rng(seed)
    n = len(v)
    centres = [v[rng.integers(n)]]
    dist = 1 - v @ centres[0]
    for _ in range(1, k):
        p = np.maximum(dist, 0) ** 2
        centres.append(v[rng.choice(n, p=p / p.sum()) if p.sum() > 0 else rng.integers(n)])
        dist = np.minimum(dist, 1 - v @ centres[-1])
    c = np.stack(centres)
    labels = np.zeros(n, np.int64)
    for it in range(iters):
        new = np.argmax(v @ c.T, axis=1)
        if it and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = v[labels == j]
            if len(members):
                m = members.sum(0)
                c[j] = m / max(np.linalg.norm(m), 1e-12)
            else:  # an empty cluster restarts at the worst-served item
                c[j] = v[np.argmin(np.max(v @ c.T, axis=1))]
    return c.astype(np.float32), labels


def silhouette(v: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette with cosine distance (items alone in their cluster score 0)."""
    ks, inverse = np.unique(labels, return_inverse=True)
    if len(ks) < 2:
        return -1.0
    d = 1 - v @ v.T
    onehot = np.eye(len(ks))[inverse]
    counts = onehot.sum(0)
    sums = d @ onehot  # [n, k]: summed distance to each cluster
    own = counts[inverse]
    a = sums[np.arange(len(v)), inverse] / np.maximum(own - 1, 1)
    other = sums / counts
    other[np.arange(len(v)), inverse] = np.inf
    b = other.min(1)
    s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def auto_k_range(n: int) -> tuple[int, int]:
    """The K that ``clusters="auto"`` considers for n items: round(r/2) .. round(1.5 r), r = sqrt(n/2).

    Clamped so that it starts at 2 to 20 and ends at most at 40 clusters (and below n): 7 items give
    2..3, 60 give 3..8, 800 give 10..30, 3,200 and more give 20..40.
    """
    r = np.sqrt(n / 2)
    lo = int(min(max(2, round(r / 2)), AUTO_MAX_CLUSTERS // 2))
    hi = int(min(max(lo, round(1.5 * r)), AUTO_MAX_CLUSTERS, max(2, n - 1)))
    return lo, hi


def choose_k(v: np.ndarray, seed: int = 0) -> tuple[int, dict[int, float]]:
    """K with the best mean silhouette on a sample, among :func:`auto_k_range` of the catalog's size;
    returns K and the score of each K tried."""
    rng = np.random.default_rng(seed)
    sample = v if len(v) <= SILHOUETTE_SAMPLE else v[rng.choice(len(v), SILHOUETTE_SAMPLE, replace=False)]
    lo, top = auto_k_range(len(v))
    scores = {}
    for k in range(lo, top + 1):
        _, labels = kmeans(sample, k, seed)
        scores[k] = silhouette(sample, labels)
    return max(scores, key=scores.get), scores


def project_2d(v: np.ndarray) -> np.ndarray:
    """First two principal components (deterministic sign: the largest loading is positive)."""
    x = v - v.mean(0)
    _, _, vt = np.linalg.svd(x[: min(len(x), FIT_SAMPLE)], full_matrices=False)
    comps = vt[:2]
    comps *= np.sign(comps[np.arange(len(comps)), np.argmax(np.abs(comps), axis=1)])[:, None]
    return (x @ comps.T).astype(np.float32)


@dataclass
class Cluster:
    id: int
    name: str
    concepts: list[tuple[str, float]]  # closest vocabulary concepts and their match probability
    size: int
    label_mix: list[tuple[str, int]]  # most common values of the label column
    price: tuple[float, float, float] | None  # min, median, max
    representatives: list[str]  # ids closest to the centre


@dataclass
class StyleMap:
    k: int
    criterion: str
    clusters: list[Cluster]
    items: object  # DataFrame: id, path, title?, cluster, cluster_name, x, y
    label: str | None = None
    k_scores: dict = field(default_factory=dict)
    root: str = ""


def style_map(model: str = "siglip", store=None, clusters: int | str = "auto", label: str | None = None,
              vocab: Sequence[str | os.PathLike] = (), seed: int = 0, encoder=None, device: str = "auto",
              representatives: int = 6) -> StyleMap:
    """Group the assortment into style clusters and describe each one."""
    from vrec.search.tags import _text_encoder, concept_vectors, match_probability, read_vocabs

    check_number("--seed", seed, min=0, integer=True)
    auto = isinstance(clusters, str) and clusters.strip().lower() == "auto"
    if not auto and isinstance(clusters, str):
        try:
            float(clusters)
        except ValueError:
            raise QueryError(f"--clusters takes a number of clusters or 'auto' (not {clusters!r}).") from None
    if not auto:
        check_number("--clusters", clusters, min=2, max=MAX_CLUSTERS, integer=True, hint="or use 'auto'")
    st = as_store(store)
    ms = st.model(model)
    table = catalog_table(st, ms)
    if label is not None and label not in table.columns:
        from vrec.base.errors import suggest

        raise QueryError(f"No column {label!r} in the metadata for --label.{suggest(label, table.columns)}")
    v = np.asarray(ms.vectors(), np.float32)
    n = len(v)
    if n < 3:
        raise QueryError("A style map needs at least 3 items.")
    rng = np.random.default_rng(seed)
    fit = v if n <= FIT_SAMPLE else v[rng.choice(n, FIT_SAMPLE, replace=False)]
    scores = {}
    if auto:
        k, scores = choose_k(fit, seed)
        criterion = (f"auto: highest mean silhouette (cosine) for K in {min(scores)}..{max(scores)}, "
                     f"around sqrt(n/2) for {n} items")
    else:
        k = int(float(clusters))
        if k > n:
            raise QueryError(f"--clusters is {k} but the catalog has only {n} items; ask for at most {n}.")
        criterion = "given"
    centres, _ = kmeans(fit, k, seed)
    assign = np.argmax(v @ centres.T, axis=1)
    xy = project_2d(v)
    names: list[list[tuple[str, float]]] = [[] for _ in range(k)]
    try:
        enc = _text_encoder(ms, encoder, device)
    except QueryError:
        enc = None  # no text tower: clusters are named by their label mix instead
    if enc is not None:
        concepts = read_vocabs(vocab)
        cv = concept_vectors(enc, concepts)
        sims = centres @ cv.T
        for c in range(k):
            best = np.argsort(-sims[c])[:3]
            names[c] = [(concepts[j].name, float(match_probability(sims[c, j:j + 1], enc)[0])) for j in best]
    out = []
    for c in range(k):
        members = np.flatnonzero(assign == c)
        mix = []
        if label:
            mix = [(str(a), int(b)) for a, b in table[label].iloc[members].value_counts().head(3).items()]
        price = None
        if "price" in table.columns and len(members):
            import pandas as pd

            p = pd.to_numeric(table["price"].iloc[members], errors="coerce").dropna()
            if len(p):
                price = (float(p.min()), float(p.median()), float(p.max()))
        reps = members[np.argsort(-(v[members] @ centres[c]))][:representatives]
        name = ", ".join(x for x, _ in names[c][:2]) if names[c] else (mix[0][0] if mix else f"cluster {c + 1}")
        out.append(Cluster(c + 1, name, names[c], int(len(members)), mix, price, [str(table["id"].iloc[r]) for r in reps]))
    items = table[[col for col in ("id", "path", "title", "productDisplayName", label) if col and col in table.columns]].copy()
    items["cluster"] = assign + 1
    items["cluster_name"] = [out[a].name for a in assign]
    items["x"], items["y"] = xy[:, 0], xy[:, 1]
    order = sorted(range(k), key=lambda c: -out[c].size)
    return StyleMap(k, criterion, [out[c] for c in order], items, label, scores, str(st.root))
