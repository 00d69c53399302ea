"""A/B analysis: per-arm values, lifts with intervals and p-values, and the report.

:func:`analyze` reads per-unit or per-event rows and compares each treatment arm with the control:
Welch's t-test and interval of statsmodels' ``CompareMeans`` per metric, ``multipletests``
(Bonferroni) beyond two arms, and scipy's ``chisquare`` for the sample-ratio-mismatch check.
Written here, because neither library has them: the delta-method linearisation of a ratio metric
(each unit's ``R + (num - R*den) / mean(den)``, whose mean is the ratio and whose variance is the
delta method's; the t-test then runs on those values at the unit of randomisation), the
delta-method interval of a relative lift, and CUPED's adjustment ``y - theta*(x - mean(x))``.
:mod:`vrec.report.ab_report` writes the result as .json, .md (with an SVG chart beside it) or a
self-contained .html page.

statsmodels, scipy and pandas are imported inside the functions, so that the CLI starts without them.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vrec.base.errors import VrecError, check_number, suggest
from vrec.base.records import json_safe
from vrec.experiments.ab_assign import parse_arms, parse_split, read_table, require_column

SRM_ALPHA = 0.001  # a sample-ratio-mismatch p-value below this is flagged (the usual threshold)
MAX_VALUE = 1e15  # no count or amount of one row is larger: beyond it the export is broken (and sums overflow)


@dataclass
class MetricSpec:
    name: str
    num: str
    den: str | None = None  # a ratio metric NUM/DEN when set

    @property
    def columns(self) -> list[str]:
        return [self.num] + ([self.den] if self.den else [])


def parse_metric(text: str) -> MetricSpec:
    """'ctr=clicks/impressions' (ratio), 'orders=orders' (mean per unit), 'clicks' or 'clicks/impressions'."""
    raw = str(text).strip()
    name, eq, expr = raw.partition("=")
    if not eq:
        name, expr = raw, raw
    name, expr = name.strip(), expr.strip()
    num, slash, den = expr.partition("/")
    num, den = num.strip(), den.strip()
    if not name or not num or (slash and not den) or "/" in den:
        raise VrecError(f"--metric {text!r} is not NAME=COLUMN or NAME=NUMERATOR/DENOMINATOR; e.g. "
                        f"--metric ctr=clicks/impressions --metric orders=orders.")
    return MetricSpec(name, num, den or None)


@dataclass
class Lift:
    """One treatment arm against the control on one metric."""

    metric: str
    arm: str
    control: str
    units: int
    control_units: int
    value: float
    control_value: float
    abs_lift: float
    abs_ci: tuple[float, float]
    rel_lift: float
    rel_ci: tuple[float, float]
    p_value: float
    significant: bool
    ratio: bool
    cuped: bool = False
    variance_reduction: float | None = None  # share of the metric's variance CUPED removed
    raw_value: float | None = None  # unadjusted per-arm values, when CUPED adjusted them
    raw_control_value: float | None = None


@dataclass
class Analysis:
    arms: list[str]
    control: str
    units: dict  # arm -> units
    expected_share: dict  # arm -> share
    srm_p: float
    srm_chi2: float
    srm: bool  # True: sample ratio mismatch
    alpha: float
    lifts: list[Lift]
    metrics: list[str]
    covariate: str | None = None
    events: int | None = None  # rows aggregated into units, when the data were per event
    adjusted: bool = False  # Bonferroni over several treatment arms
    notes: list[str] = field(default_factory=list)

    @property
    def srm_message(self) -> str:
        obs = ", ".join(f"{a} {self.units[a]:,} ({self.units[a] / sum(self.units.values()):.1%})" for a in self.arms)
        exp = "/".join(f"{self.expected_share[a] * 100:g}" for a in self.arms)
        return (f"SAMPLE RATIO MISMATCH: the arms hold {obs} of the units where the split is {exp} (chi-square "
                f"p = {self.srm_p:.2g}). The assignment or the logging is broken (e.g. one arm loses units to errors, "
                f"bots or caching), so the lifts below are not trustworthy; find the cause before reading them.")


def compare_means(control: np.ndarray, treatment: np.ndarray, alpha: float = 0.05) -> dict:
    """Welch's t-test and interval of mean(treatment) - mean(control) (statsmodels), plus the relative
    lift with a delta-method interval: var(mt/mc) ~ se_t^2/mc^2 + mt^2 se_c^2/mc^4."""
    from scipy.stats import norm
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    c = np.asarray(control, np.float64)
    t = np.asarray(treatment, np.float64)
    top = max(float(np.abs(c).max(initial=0.0)), float(np.abs(t).max(initial=0.0)))
    scale = 2.0 ** math.frexp(top)[1] if top > 0 else 1.0  # a power of two: dividing by it is exact
    c, t = c / scale, t / scale  # values near 1: no variance underflows to 0 or overflows to inf
    cm = CompareMeans(DescrStatsW(t), DescrStatsW(c))
    with np.errstate(all="ignore"):
        _, p, _ = cm.ttest_ind(usevar="unequal")
        lo, hi = cm.tconfint_diff(alpha=alpha, usevar="unequal")
    mt, mc = float(t.mean()), float(c.mean())
    diff = mt - mc
    se_t2 = t.var(ddof=1) / len(t)
    se_c2 = c.var(ddof=1) / len(c)
    if mc != 0:
        rel = diff / mc
        se_rel = math.hypot(math.sqrt(se_t2) / mc, (mt / mc) * math.sqrt(se_c2) / mc)
        z = float(norm.ppf(1 - alpha / 2))
        rel_ci = (rel - z * se_rel, rel + z * se_rel)
    else:
        rel, rel_ci = float("nan"), (float("nan"), float("nan"))
    if se_t2 + se_c2 == 0:  # no variation at all: the difference is exact
        p = 0.0 if diff != 0 else 1.0
        lo = hi = diff
    return {"treatment": mt * scale, "control": mc * scale, "diff": diff * scale,
            "ci": (float(lo) * scale, float(hi) * scale), "p": float(p), "rel": rel, "rel_ci": rel_ci}


def linearize(num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-unit values whose mean is the ratio sum(num)/sum(den) and whose variance of the mean is the
    delta method's: R + (num - R*den) / mean(den). Returns (values, R)."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    r = num.sum() / den.sum()
    return r + (num - r * den) / den.mean(), float(r)


def cuped(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float]:
    """y - theta*(x - mean(x)) with theta = cov(y, x)/var(x), pooled over arms. Returns (values, theta)."""
    y = np.asarray(y, np.float64)
    x = np.asarray(x, np.float64)
    vx = x.var(ddof=1)
    theta = float(np.cov(y, x, ddof=1)[0, 1] / vx) if vx > 0 else 0.0
    return y - theta * (x - x.mean()), theta


def _numeric(df, col: str, what: str, units) -> np.ndarray:
    import pandas as pd

    raw = df[col]
    vals = pd.to_numeric(raw.replace("", np.nan) if raw.dtype == object else raw, errors="coerce")
    bad = vals.isna() & ~(raw.isna() | (raw.astype(str).str.strip() == ""))
    if bad.any():
        example = raw[bad].iloc[0]
        raise VrecError(f"Column {col!r} ({what}) holds text that is not a number (e.g. {example!r} in "
                        f"{int(bad.sum())} row(s)); give numbers only.")
    if vals.isna().any():
        raise VrecError(f"Column {col!r} ({what}) has {int(vals.isna().sum())} empty value(s); fill them (0 for a "
                        f"count) or drop those rows.")
    out = vals.to_numpy(np.float64)
    big = ~(np.abs(out) <= MAX_VALUE)  # inf too
    if big.any():
        i = int(np.argmax(big))
        raise VrecError(f"Column {col!r} ({what}) holds {out[i]:g} for unit {str(units.iloc[i])!r} ({int(big.sum())} "
                        f"row(s) beyond ±10^15); no count or amount is that large, so fix the export.")
    return out


def _check_rates(frame, specs: Sequence[MetricSpec]) -> None:
    """Refuse a unit with more NUM than DEN in a ratio metric that is a rate over the whole data
    (sum NUM <= sum DEN, as clicks/impressions): a rate above 1 is a data error. A ratio above 1
    overall (revenue/orders) is not a rate and may exceed 1 in any unit."""
    for s in specs:
        if not s.den:
            continue
        num, den = frame[f"v:{s.num}"].to_numpy(), frame[f"v:{s.den}"].to_numpy()
        over = num > den
        if not over.any() or num.sum() > den.sum():
            continue
        i = int(np.argmax(over))
        more = f" (and {int(over.sum()) - 1} more unit(s))" if over.sum() > 1 else ""
        raise VrecError(f"Metric {s.name!r} is a rate ({s.num}/{s.den} is {num.sum() / den.sum():.3g} over all units), "
                        f"but unit {str(frame['unit'].iloc[i])!r} has {num[i]:g} {s.num} for {den[i]:g} {s.den}"
                        f"{more}; a rate cannot exceed 1, so fix the export.")


def analyze(data, unit: str = "unit", arm: str = "arm", metrics: Sequence[str | MetricSpec] = (),
            covariate: str | None = None, arms: str | Sequence[str] | None = None, split=None,
            alpha: float = 0.05) -> Analysis:
    """Analyse an experiment from per-unit rows, or per-event rows (summed per unit).

    ``data`` is a DataFrame or a CSV/parquet path. ``metrics`` are 'NAME=COLUMN' (the mean per unit
    of a value, e.g. orders or revenue) or 'NAME=NUM/DEN' (a ratio such as clicks/impressions,
    analysed at the unit of randomisation with the delta method; both columns are counts, never
    negative). ``covariate`` is a pre-period column per unit (e.g. clicks in the weeks before the
    test) for CUPED, which removes the variance the covariate explains and narrows the intervals.
    ``arms`` orders the arms (the first is the control; default: the arms in the data, sorted)
    and ``split`` gives their intended shares for the sample-ratio check (default equal).
    With more than two arms each treatment is compared with the control and intervals and
    p-values are Bonferroni-adjusted.
    """
    import pandas as pd
    from scipy.stats import chisquare

    check_number("--alpha", alpha, min=1e-6, max=0.5, hint="0.05 gives 95% intervals")
    specs = _metric_specs(metrics)
    df = data if isinstance(data, pd.DataFrame) else read_table(data, "events file")
    frame = _unit_frame(df, unit, arm, specs, covariate)
    notes: list[str] = []
    frame, events = _per_unit(frame, covariate, notes)
    _check_rates(frame, specs)
    order = _arm_order(frame, arm, arms)
    shares = parse_split(split, len(order))
    control = order[0]
    n_units = {a: int((frame["arm"] == a).sum()) for a in order}
    for a, n in n_units.items():
        if n < 2:
            raise VrecError(f"Arm {a!r} has {n} unit(s); each arm needs at least two to estimate its variance.")
    obs = np.array([n_units[a] for a in order], np.float64)
    chi2, srm_p = chisquare(obs, obs.sum() * np.array(shares))
    m = len(order) - 1
    res = Analysis(order, control, n_units, dict(zip(order, shares)), float(srm_p), float(chi2),
                   bool(srm_p < SRM_ALPHA), alpha, [], [s.name for s in specs], covariate, events, m > 1, notes)
    if m > 1:
        notes.append(f"{m} treatment arms against {control!r}: intervals at {1 - alpha / m:.2%} and p-values "
                     f"Bonferroni-adjusted, so all comparisons together keep a {alpha:g} false-positive rate")
    x = frame["cov"].to_numpy() if covariate is not None else None
    if x is not None and x.var() == 0:
        notes.append(f"the covariate {covariate!r} is the same for every unit; CUPED cannot use it")
        x = None
    for s in specs:
        res.lifts.extend(_metric_lifts(frame, s, order, n_units, x, alpha, notes))
    return res


def _metric_specs(metrics: Sequence[str | MetricSpec]) -> list[MetricSpec]:
    specs = [m if isinstance(m, MetricSpec) else parse_metric(m) for m in metrics]
    if not specs:
        raise VrecError("Name at least one --metric, e.g. --metric ctr=clicks/impressions or --metric orders=orders.")
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise VrecError(f"Metric name {dup[0]!r} is used twice; give each --metric its own NAME=...")
    return specs


def _unit_frame(df, unit: str, arm: str, specs: Sequence[MetricSpec], covariate: str | None):
    """The checked columns as one frame: unit, arm, v:COLUMN for each value column, cov."""
    import pandas as pd

    if not len(df):
        raise VrecError("The events file has no rows; it needs one row per unit (or per event).")
    require_column(df, unit, "--unit")
    require_column(df, arm, "--arm")
    value_cols = list(dict.fromkeys(c for s in specs for c in s.columns))
    for s in specs:
        for c in s.columns:
            require_column(df, c, f"--metric {s.name}")
    if covariate is not None:
        require_column(df, covariate, "--covariate")
    clash = {unit, arm} & (set(value_cols) | ({covariate} if covariate else set()))
    if clash or unit == arm:
        raise VrecError(f"Column {sorted(clash or {unit})[0]!r} is used for two roles; --unit, --arm, metrics and "
                        f"--covariate need different columns.")
    units_col = df[unit].astype(str).str.strip()
    arms_col = df[arm].astype(str).str.strip()
    if (units_col == "").any() or df[unit].isna().any():
        raise VrecError(f"Column {unit!r} (--unit) has empty ids in {int((units_col == '').sum())} row(s); "
                        "every row needs its unit.")
    if (arms_col == "").any() or df[arm].isna().any():
        raise VrecError(f"Column {arm!r} (--arm) is empty in {int((arms_col == '').sum())} row(s); every row needs "
                        "its arm.")
    values = {c: _numeric(df, c, "a metric", units_col) for c in value_cols}
    for c in sorted({c for s in specs if s.den for c in s.columns}):
        neg = values[c] < 0
        if neg.any():
            raise VrecError(f"Column {c!r} has negative counts in {int(neg.sum())} row(s) (e.g. {values[c][neg][0]:g}); "
                            f"counts in a ratio metric are never below 0 — fix the export.")
    frame = pd.DataFrame({"unit": units_col.to_numpy(), "arm": arms_col.to_numpy(),
                          **{f"v:{c}": v for c, v in values.items()}})
    if covariate is not None:
        frame["cov"] = _numeric(df, covariate, "the covariate", units_col)
    return frame


def _per_unit(frame, covariate: str | None, notes: list[str]):
    """Per-event rows summed into one row per unit (a unit stays in one arm). Returns (frame, rows
    before aggregation or None when the rows were per unit already)."""
    if not frame["unit"].duplicated().any():
        return frame, None
    per_unit_arms = frame.groupby("unit")["arm"].nunique()
    mixed = per_unit_arms[per_unit_arms > 1]
    if len(mixed):
        raise VrecError(f"{len(mixed)} unit(s) appear in more than one arm (e.g. {mixed.index[0]!r}); a unit must "
                        "stay in one arm for the whole test — check the assignment and the join.")
    if covariate is not None:
        varying = frame.groupby("unit")["cov"].nunique()
        if (varying > 1).any():
            raise VrecError(f"The covariate {covariate!r} differs between rows of one unit (e.g. "
                            f"{varying[varying > 1].index[0]!r}); give one pre-period value per unit.")
    agg = {"arm": "first", **{c: "sum" for c in frame.columns if c.startswith("v:")}}
    if covariate is not None:
        agg["cov"] = "first"
    events = len(frame)
    frame = frame.groupby("unit", sort=False).agg(agg).reset_index()
    notes.append(f"{events:,} rows aggregated into {len(frame):,} units (values summed per unit)")
    return frame, events


def _arm_order(frame, arm: str, arms: str | Sequence[str] | None) -> list[str]:
    """The arms in analysis order (the control first): --arms' order, else sorted."""
    present = sorted(frame["arm"].unique())
    if len(present) < 2:
        raise VrecError(f"The data hold only one arm ({present[0]!r} in column {arm!r}); an A/B test compares at "
                        "least two — check the arm column and the export.")
    if arms is None:
        return present
    order = parse_arms(arms)
    missing = [a for a in order if a not in present]
    if missing:
        raise VrecError(f"Arm {missing[0]!r} (from --arms) has no units in the data, whose arms are "
                        f"{', '.join(map(repr, present))}.{suggest(missing[0], present)}")
    extra = [a for a in present if a not in order]
    if extra:
        raise VrecError(f"The data hold arm {extra[0]!r}, which --arms does not name; list every arm "
                        f"({','.join(present)}).")
    return order


def _metric_values(frame, s: MetricSpec, order: Sequence[str]) -> np.ndarray:
    """Per-unit values of a metric: the value itself, or a ratio linearised within each arm."""
    num = frame[f"v:{s.num}"].to_numpy()
    if not s.den:
        return num.astype(np.float64)
    arm_of = frame["arm"].to_numpy()
    den = frame[f"v:{s.den}"].to_numpy()
    y = np.empty(len(frame))
    for a in order:
        sel = arm_of == a
        if den[sel].sum() == 0:
            raise VrecError(f"Metric {s.name!r}: arm {a!r} has {s.den!r} = 0 for every unit, so "
                            f"{s.num}/{s.den} is undefined there.")
        y[sel], _ = linearize(num[sel], den[sel])
    return y


def _metric_lifts(frame, s: MetricSpec, order: Sequence[str], n_units: dict, x, alpha: float,
                  notes: list[str]) -> list[Lift]:
    """Each treatment arm against the control on one metric (CUPED with covariate ``x``)."""
    from statsmodels.stats.multitest import multipletests

    control, treatments = order[0], order[1:]
    m = len(treatments)
    arm_of = frame["arm"].to_numpy()
    y = _metric_values(frame, s, order)
    raw = {a: float(y[arm_of == a].mean()) for a in order}
    reduction = None
    if x is not None:
        y_adj, _ = cuped(y, x)
        v0, v1 = y.var(ddof=1), y_adj.var(ddof=1)
        reduction = float(1 - v1 / v0) if v0 > 0 else 0.0
        y = y_adj
    rows = [(t, compare_means(y[arm_of == control], y[arm_of == t], alpha=alpha / m)) for t in treatments]
    pvals = [r["p"] for _, r in rows]
    adj = multipletests(pvals, alpha=alpha, method="bonferroni")[1] if m > 1 else pvals
    if all(math.isnan(r["p"]) for _, r in rows):
        notes.append(f"metric {s.name!r} does not vary within the arms; there is nothing to test")
    return [Lift(s.name, t, control, n_units[t], n_units[control], r["treatment"], r["control"],
                 r["diff"], r["ci"], r["rel"], r["rel_ci"], float(p), bool(p < alpha),
                 s.den is not None, x is not None, reduction,
                 raw[t] if x is not None else None, raw[control] if x is not None else None)
            for (t, r), p in zip(rows, adj)]


def analysis_to_dict(a: Analysis) -> dict:
    return json_safe({
        "arms": a.arms, "control": a.control, "units": a.units, "expected_share": a.expected_share,
        "events": a.events, "alpha": a.alpha, "covariate": a.covariate, "bonferroni": a.adjusted,
        "srm": {"mismatch": a.srm, "p_value": a.srm_p, "chi2": a.srm_chi2, "threshold": SRM_ALPHA},
        "lifts": [{"metric": x.metric, "arm": x.arm, "control": x.control, "units": x.units,
                   "control_units": x.control_units, "value": x.value, "control_value": x.control_value,
                   "abs_lift": x.abs_lift, "abs_ci": list(x.abs_ci), "rel_lift": x.rel_lift, "rel_ci": list(x.rel_ci),
                   "p_value": x.p_value, "significant": x.significant, "ratio": x.ratio, "cuped": x.cuped,
                   "variance_reduction": x.variance_reduction, "raw_value": x.raw_value,
                   "raw_control_value": x.raw_control_value} for x in a.lifts],
        "notes": a.notes})


# --- reports: the cells and lines every format shares; .md and .json here, the HTML page in pages ---

def fmt_value(v: float) -> str:
    if v is None or v != v:
        return "—"
    return f"{v:.4f}" if abs(v) < 10 else f"{v:,.2f}"


def fmt_pct(v: float, signed: bool = True) -> str:
    if v is None or v != v:
        return "—"
    return f"{v * 100:+.2f}%" if signed else f"{v * 100:.2f}%"


def fmt_p(p: float) -> str:
    if p is None or p != p:
        return "—"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def lift_rows(a: Analysis) -> list[list[str]]:
    """Plain cells: metric, arm, units, value, control value, abs lift, its interval, rel lift, its interval, p."""
    rows = []
    for x in a.lifts:
        rows.append([x.metric, x.arm, f"{x.units:,}", fmt_value(x.value), fmt_value(x.control_value),
                     ("+" if x.abs_lift >= 0 else "") + fmt_value(x.abs_lift),
                     f"[{fmt_value(x.abs_ci[0])}, {fmt_value(x.abs_ci[1])}]", fmt_pct(x.rel_lift),
                     f"[{fmt_pct(x.rel_ci[0])}, {fmt_pct(x.rel_ci[1])}]", fmt_p(x.p_value)])
    return rows


LIFT_HEADER = ["metric", "arm", "units", "value", "control", "abs. lift", "interval", "rel. lift", "interval", "p-value"]


def summary_lines(a: Analysis) -> list[str]:
    """The report's opening lines -- units per arm, control, alpha, CUPED, then the sample-ratio
    verdict -- shared by the .md report and the HTML page (:func:`vrec.report.pages.ab_html`)."""
    total = sum(a.units.values())
    lines = [f"{total:,} units: " + ", ".join(f"{arm} {a.units[arm]:,}" for arm in a.arms)
             + (f" (from {a.events:,} event rows)" if a.events else "")
             + f"; control {a.control}; two-sided tests at alpha {a.alpha:g}"
             + (f"; CUPED with {a.covariate}" if a.covariate else "") + "."]
    if a.srm:
        lines.append(a.srm_message)
    else:
        lines.append(f"Sample ratio check passed (chi-square p = {a.srm_p:.3g}).")
    return lines
