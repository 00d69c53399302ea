"""Ranking metrics on relevance lists (precision, recall, AP, nDCG, hit, reciprocal rank), bootstrap
intervals and paired differences: plain numpy over per-query arrays, the measures vrec eval reports."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vrec.base.errors import QueryError

_BOOT_CELLS = 4_000_000  # resampled values held in memory at once


@dataclass
class Metric:
    """One number with its interval, e.g. image->image precision@5 of one model for one label."""

    task: str  # "image", "text", "zeroshot", "label" or "photo"
    label: str
    metric: str
    k: int | None
    model: str
    value: float
    ci: tuple[float, float]
    queries: int
    per_query: np.ndarray = field(repr=False, default=None)


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
    means = resampled_means([values], n_boot, seed)[0]
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def resampled_means(arrays: list[np.ndarray], n_boot: int, seed: int) -> list[np.ndarray]:
    """Each array's mean over the same ``n_boot`` resamples of the queries (one draw for all: paired).
    Resampled in chunks so memory stays bounded; the draws are the same as in one call."""
    n = len(arrays[0])
    rng = np.random.default_rng(seed)
    step = max(1, _BOOT_CELLS // max(n, 1))
    parts: list[list[np.ndarray]] = [[] for _ in arrays]
    for s in range(0, n_boot, step):
        idx = rng.integers(0, n, (min(step, n_boot - s), n))
        for part, values in zip(parts, arrays):
            part.append(values[idx].mean(1))
    return [np.concatenate(part) for part in parts]


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean of a - b over the same queries, with a bootstrap interval; who wins and whether it is clear."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if not len(d):
        raise QueryError("A paired comparison needs at least one query both models answered.")
    lo, hi = bootstrap_ci(d, n_boot, seed)
    mean = float(d.mean())
    return {"difference": mean, "ci": [lo, hi], "excludes_zero": bool(lo > 0 or hi < 0),
            "winner": "first" if mean > 0 else "second" if mean < 0 else "tie"}
