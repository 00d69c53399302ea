"""``vrec eval --models a,b,c,...``: which of several models suits this catalog.

Every figure ``vrec eval`` measures (image->image precision@k, text->image R@k, ...) is a mean over
queries, and every model answers the same queries. For each figure this module

- ranks the models by their value (all of vrec's figures are "higher is better");
- compares every pair on the same queries: the mean of the per-query difference, a 95% paired
  bootstrap interval, and a two-sided bootstrap p-value (all pairs of one figure share the same
  resampled queries, so their intervals are consistent with each other);
- adjusts the p-values of a figure's pairs for multiplicity with Holm's step-down method
  (``statsmodels.stats.multitest.multipletests(method="holm")``), so that "real" means: the
  chance of calling any of the figure's pairs different when none is stays under 5%.

Across figures, a model's record is its real wins minus its real losses; the model with the best
record (ties: the best mean rank) is the answer to "which model for this catalog", and the
answer says so plainly when no difference is real.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from vrec.experiments.metrics import resampled_means

ALPHA = 0.05


@dataclass
class Ranking:
    """The many-model answer: a verdict line, one ranking per figure, every pair's comparison."""

    models: list[str]
    verdict: str
    order: list[str]  # models, best record first
    record: dict[str, dict] = field(default_factory=dict)  # model -> wins, losses, figures, mean_rank
    figures: list[dict] = field(default_factory=list)  # task, label, metric, k, ranking: [{model, value, rank}]
    pairs: list[dict] = field(default_factory=list)  # task, label, metric, k, first, second, difference, ci, p, p_holm, real, winner

    def to_dict(self) -> dict:
        return {"models": self.models, "verdict": self.verdict, "order": self.order, "record": self.record,
                "figures": self.figures, "pairs": self.pairs}


def bootstrap_means(per_model: dict[str, np.ndarray], n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Each model's mean over the same ``n_boot`` resamples of the queries (paired resampling)."""
    means = resampled_means([np.asarray(v, np.float64) for v in per_model.values()], n_boot, seed)
    return dict(zip(per_model, means))


def bootstrap_p(boot_diff: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a paired difference: twice the smaller tail of its resampled
    means beyond zero, counted with the observed sample ((count + 1) / (n + 1)), at most 1."""
    n = len(boot_diff)
    tail = min(int((boot_diff <= 0).sum()), int((boot_diff >= 0).sum()))
    return float(min(1.0, 2 * (tail + 1) / (n + 1)))


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values (statsmodels' multipletests, the maintained implementation)."""
    if not pvalues:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(pvalues, alpha=ALPHA, method="holm")[1]]


def compare_figure(per_model: dict[str, np.ndarray], n_boot: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(ranking, pairs) of one figure from each model's per-query values (same queries, same order)."""
    means = {m: float(np.mean(v)) for m, v in per_model.items()}
    order = sorted(per_model, key=lambda m: -means[m])
    boots = bootstrap_means(per_model, n_boot, seed)
    pairs = []
    for a, b in combinations(order, 2):  # a's value >= b's: differences are "better minus worse"
        d = boots[a] - boots[b]
        lo, hi = np.quantile(d, [ALPHA / 2, 1 - ALPHA / 2])
        pairs.append({"first": a, "second": b, "difference": means[a] - means[b], "ci": [float(lo), float(hi)],
                      "p": bootstrap_p(d)})
    for pair, adj in zip(pairs, holm([p["p"] for p in pairs])):
        pair["p_holm"] = adj
        pair["real"] = bool(adj < ALPHA and pair["difference"] != 0)
        pair["winner"] = pair["first"] if pair["real"] else "tie"
    ranking = [{"model": m, "value": means[m], "rank": i + 1} for i, m in enumerate(order)]
    return ranking, pairs


def rank_models(models: list[str], per_query: dict[tuple, np.ndarray], n_boot: int, seed: int) -> Ranking:
    """Rank ``models`` on every figure in ``per_query`` ((task, label, metric, k, model) -> values)
    that at least two of them have on the same queries."""
    figures, pairs = [], []
    record = {m: {"wins": 0, "losses": 0, "pairs": 0, "figures": 0, "ranks": []} for m in models}
    keys = list(dict.fromkeys(key[:-1] for key in per_query if key[-1] in models))
    most_pairs = 0  # pairs of one figure, over which Holm adjusts
    for fig in keys:
        per_model = {m: per_query[fig + (m,)] for m in models if fig + (m,) in per_query}
        sizes = {len(v) for v in per_model.values()}
        if len(per_model) < 2 or len(sizes) != 1 or 0 in sizes:
            continue
        ranking, fig_pairs = compare_figure(per_model, n_boot, seed)
        most_pairs = max(most_pairs, len(fig_pairs))
        where = dict(zip(("task", "label", "metric", "k"), fig))
        figures.append({**where, "queries": sizes.pop(), "ranking": ranking})
        pairs += [{**where, **p} for p in fig_pairs]
        for r in ranking:
            record[r["model"]]["figures"] += 1
            record[r["model"]]["ranks"].append(r["rank"])
        for p in fig_pairs:
            record[p["first"]]["pairs"] += 1
            record[p["second"]]["pairs"] += 1
            if p["real"]:
                record[p["first"]]["wins"] += 1
                record[p["second"]]["losses"] += 1
    for r in record.values():
        ranks = r.pop("ranks")
        r["mean_rank"] = float(np.mean(ranks)) if ranks else float("nan")
    order = sorted(models, key=lambda m: (-(record[m]["wins"] - record[m]["losses"]),
                                          record[m]["mean_rank"] if record[m]["figures"] else np.inf))
    return Ranking(list(models), verdict(order, record, len(figures), n_boot, most_pairs), order, record, figures,
                   pairs)


def verdict(order: list[str], record: dict, n_figures: int, n_boot: int = 1000, n_pairs: int = 1) -> str:
    """One sentence: which model for this catalog, and how sure the evidence is."""
    if not n_figures:
        return "Which model for this catalog: no figure is shared by two models, so none can be compared."
    best = order[0]
    r = record[best]
    floor = n_pairs * 2 / (n_boot + 1)  # the smallest Holm-adjusted p-value n_boot resamples can give
    if floor >= ALPHA:
        need = max(1000, int(np.ceil(n_pairs * 2 / ALPHA * 5 / 100)) * 100)
        return (f"Which model for this catalog: undecided — {n_boot} bootstrap resamples cannot call any of "
                f"{n_pairs} pairs of a figure real (the smallest Holm-adjusted p-value they can give is "
                f"{min(floor, 1):.2f}, not below 0.05); {best} ranks best on average: run again with --bootstrap "
                f"{need}.")
    if all(x["wins"] == 0 for x in record.values()):
        return (f"Which model for this catalog: no model is really better than another on any of {n_figures} "
                f"figures (Holm-adjusted paired bootstrap, 5%); {best} ranks best on average, but the differences "
                f"are within the noise of these queries: pick by cost, or measure on more queries.")
    worse = "never really worse" if r["losses"] == 0 else f"really worse on {r['losses']}"
    return (f"Which model for this catalog: {best} — really better in {r['wins']} of its {r['pairs']} paired "
            f"comparisons over {n_figures} figures, {worse} (Holm-adjusted paired bootstrap, 5%).")
