"""A/B experiments: does the SigLIP "similar items" module beat the incumbent CNN with real users?

Four steps, each a library function with a thin ``vrec ab`` command in front of it:

- :func:`plan` -- how many units (users, sessions) per arm and how many days a test needs to detect
  a given effect, and the smallest effect a given duration can detect;
- :func:`build_arms` -- each arm's recommendation table (from vrec's own neighbour search,
  :func:`vrec.search.export.similar_items`) and how much the arms differ (overlap@k), so a test between
  two nearly identical lists is caught before anyone runs it;
- :func:`assign` -- a deterministic, salted hash of experiment name and unit id to an arm: the same
  answer on every run and machine, independent across experiment names; :class:`Experiment`
  serves a unit its arm's list and appends an exposure line to a JSONL log, for a pilot;
- :func:`analyze` -- per-arm values, absolute and relative lifts with 95% intervals and p-values,
  ratio metrics at the unit of randomisation (delta method), CUPED, and a sample-ratio-mismatch
  check (:mod:`vrec.report.ab_report` writes it as .html, .md or .json with a chart of the lifts).

This module holds the steps before and during a test -- plan, arms, serving; assignment lives in
:mod:`vrec.experiments.ab_assign`, the analysis in :mod:`vrec.experiments.ab_analysis` and its
reports in :mod:`vrec.report.ab_report`.

The power analysis comes from statsmodels (``statsmodels.stats.power.NormalIndPower`` with
``proportion_effectsize`` for rates); written here, because statsmodels has no inverse of Cohen's
h, is the step that turns a detectable effect size back into a rate. statsmodels, scipy and pandas
are imported inside the functions, so that the CLI starts without them.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vrec.base.errors import QueryError, StoreError, VrecError, check_number, suggest
from vrec.base.files import atomic_path
from vrec.base.records import json_safe
from vrec.experiments.ab_assign import (
    DEFAULT_ARMS,
    MAX_ARMS,
    assign_many,
    check_experiment,
    parse_arms,
    parse_split,
)
from vrec.experiments.beyond import arms_figures

BARELY_DIFFER = 0.8  # mean overlap@k at or above this: the arms show nearly the same lists


# --- plan ---------------------------------------------------------------------------------------

@dataclass
class Plan:
    """What a test needs: units per arm, in total, and days at ``daily_units``."""

    baseline: float
    mde: float  # absolute effect to detect
    relative_mde: float  # the same, relative to the baseline (NaN for a mean of 0)
    alpha: float
    power: float
    arms: int
    comparison_alpha: float  # alpha per treatment-vs-control comparison (Bonferroni beyond two arms)
    kind: str  # "proportion" (baseline is a rate) or "mean" (with sd)
    sd: float | None
    effect_size: float  # Cohen's h (proportions) or d (means)
    units_per_arm: int  # the control's units (every arm's, with an equal split)
    total_units: int
    shares: list[float] = field(default_factory=list)  # each arm's share of the units (--split)
    arm_units: list[int] = field(default_factory=list)  # each arm's units, control first
    daily_units: int | None = None
    days: int | None = None
    detectable: list[dict] = field(default_factory=list)  # per duration: days, units_per_arm, arm_units, mde, relative_mde
    notes: list[str] = field(default_factory=list)


MAX_DAILY_UNITS = 10 ** 12  # --daily-units: more than any service sees
MAX_UNITS = 1e15  # units per arm beyond this: no test gathers them, and the effect is too small to detect
MAX_MAGNITUDE = 1e15  # --baseline, --sd and --mde of a mean metric (the analysis refuses larger values too)


def _check_plan_inputs(baseline, mde, alpha, power, arms, daily_units, sd, days) -> None:
    """Every number of a plan in its range, one clear sentence for the first that is not."""
    check_number("--alpha", alpha, min=1e-6, max=0.5, hint="0.05 is usual")
    check_number("--power", power, min=0.5, max=0.9999, hint="0.8 is usual")
    if power <= alpha:
        raise VrecError(f"--power must be above --alpha (got power {power:g}, alpha {alpha:g}): a test as likely to "
                        "find the effect as a false alarm detects nothing; 0.8 and 0.05 are usual.")
    check_number("--arms", arms, min=2, max=MAX_ARMS, integer=True)
    if sd is None:
        check_number("--baseline", baseline, min=1e-9, max=1 - 1e-9,
                     hint="a rate such as 0.04 (4% convert); for a mean metric give --sd too")
    else:
        check_number("--baseline", baseline, min=-MAX_MAGNITUDE, max=MAX_MAGNITUDE, hint="the control's mean")
        check_number("--sd", sd, min=1e-12, max=MAX_MAGNITUDE, hint="the per-unit standard deviation of the metric")
    check_number("--mde", mde, min=1e-12, max=MAX_MAGNITUDE, hint="e.g. 0.005 absolute, or 0.05 with --relative for +5%")
    if daily_units is not None:
        check_number("--daily-units", daily_units, min=1, max=MAX_DAILY_UNITS, integer=True)
    for d in days:
        check_number("--days", d, min=1, max=3650, integer=True)


def noncentrality(alpha: float, power: float) -> float:
    """The standardised difference lam at which a two-sided z-test at ``alpha`` has ``power``:
    statsmodels' ``normal_power(lam, 1, alpha) = power``, solved once by scipy's brentq.

    An effect size d compared over n1 and n2 units has lam = d / sqrt(1/n1 + 1/n2) (statsmodels'
    NormalIndPower), so sample sizes and detectable effects follow from lam in closed form at any
    scale; solving for the effect at each n instead stops short once it falls below the solver's
    tolerance (1.182e-06 at 7, 14 and 28 days of 1e11 units)."""
    from scipy.optimize import brentq
    from scipy.stats import norm
    from statsmodels.stats.power import normal_power

    top = float(norm.isf(alpha / 2) + norm.ppf(power)) + 1.0  # one tail alone passes the power here
    return float(brentq(lambda lam: float(normal_power(lam, 1, alpha)) - power, 0.0, top, xtol=1e-14, rtol=1e-15))


def _rate_plus_effect(baseline: float, h: float) -> float:
    """The rate difference p2 - p1 with Cohen's h = 2 asin(sqrt(p2)) - 2 asin(sqrt(p1)); NaN past a rate of 1.

    sin^2(a + h/2) - sin^2(a) = sin(2a + h/2) sin(h/2): no cancellation when h is tiny."""
    a = math.asin(math.sqrt(baseline))
    if a + h / 2 >= math.pi / 2:
        return float("nan")
    return math.sin(2 * a + h / 2) * math.sin(h / 2)


def _detectable(p: Plan, lam: float, days: Sequence[int]) -> None:
    """The smallest effect each duration can detect, for the worst-placed treatment arm."""
    for d in (list(days) or [7, 14, 28]):
        total = p.daily_units * int(d)
        units = [math.floor(total * s + 1e-6) for s in p.shares]  # 3000 * (1/3) is 1000, not 999
        row = {"days": int(d), "units_per_arm": units[0], "arm_units": units, "mde": float("nan"),
               "relative_mde": float("nan")}
        if min(units) >= 2:
            es = lam * max(math.sqrt(1 / units[0] + 1 / u) for u in units[1:])
            row["mde"] = _rate_plus_effect(p.baseline, es) if p.sd is None else es * p.sd
            row["relative_mde"] = row["mde"] / abs(p.baseline) if p.baseline else float("nan")
        p.detectable.append(row)


def plan(baseline: float, mde: float, relative: bool = False, alpha: float = 0.05, power: float = 0.8,
         arms: int = 2, daily_units: int | None = None, sd: float | None = None,
         days: Sequence[int] = (), split=None) -> Plan:
    """Sample size for a test of ``arms`` arms (each treatment against the first, the control).

    ``baseline`` is the control's rate (a conversion or click-through rate, between 0 and 1), or
    its mean when ``sd`` (the per-unit standard deviation) is given. ``mde`` is the smallest
    effect worth detecting: absolute (0.005 = half a percentage point), or relative to the
    baseline with ``relative`` (0.05 = +5%). Two-sided test at ``alpha`` with ``power``; beyond
    two arms alpha is split over the comparisons (Bonferroni). ``split`` gives the arms' shares
    (as --split, default equal). With ``daily_units`` (units that enter the test per day, all
    arms together) the duration is given, and ``days`` (default 7, 14, 28) lists the smallest
    effect each duration can detect.
    """
    from statsmodels.stats.proportion import proportion_effectsize

    _check_plan_inputs(baseline, mde, alpha, power, arms, daily_units, sd, days)
    arms = int(arms)
    daily_units = int(daily_units) if daily_units is not None else None
    shares = parse_split(split, arms)
    abs_mde = abs(baseline) * mde if relative else mde
    if relative and baseline == 0:
        raise VrecError("A relative --mde needs a baseline other than 0; give the effect in absolute terms.")
    target = baseline + abs_mde
    if sd is None and target >= 1:
        raise VrecError(f"A rate of {baseline:g} plus an effect of {abs_mde:g} reaches {target:g}, but a rate stays "
                        f"below 1; give a smaller --mde.")
    comparison_alpha = alpha / (arms - 1)
    es = float(proportion_effectsize(target, baseline)) if sd is None else abs_mde / sd
    lam = noncentrality(comparison_alpha, power)
    # units in all arms so that control vs treatment i reaches lam: N (1/s0 + 1/si)^-1 es^2 = lam^2
    need = (lam / abs(es)) ** 2 * max(1 / shares[0] + 1 / s for s in shares[1:]) if es else math.inf
    if need * max(shares) > MAX_UNITS:
        what = "rate" if sd is None else "mean"
        raise VrecError(f"An effect of {abs_mde:g} on a {what} of {baseline:g}{f' (sd {sd:g})' if sd else ''} is too "
                        f"small to detect: a test would need more than 10^15 units in an arm; give a larger --mde.")
    arm_units = [max(2, math.ceil(need * s)) for s in shares]  # an arm needs two units for its variance
    p = Plan(baseline, abs_mde, abs_mde / abs(baseline) if baseline else float("nan"), alpha, power, arms,
             comparison_alpha, "proportion" if sd is None else "mean", sd, es, arm_units[0], sum(arm_units),
             shares, arm_units, daily_units)
    if arms > 2:
        p.notes.append(f"{arms} arms: each of the {arms - 1} treatments is compared with the control at "
                       f"alpha {comparison_alpha:.4g} (Bonferroni), so the family's false-positive rate stays {alpha:g}")
    if daily_units:
        p.days = int(math.ceil(p.total_units / daily_units))
        _detectable(p, lam, days)
    elif days:
        p.notes.append("give --daily-units to see the smallest effect each duration can detect")
    return p


# --- arms: what each arm would show -------------------------------------------------------------

@dataclass
class ArmsResult:
    arms: list[str]
    k: int
    items: int
    table: object  # DataFrame: arm, item, rank, neighbour, score
    pairs: list[dict]  # first, second, overlap (mean over items)
    per_label: object | None = None  # DataFrame: label value, items, one column per pair
    label: str | None = None
    file: str | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    beyond: list[dict] = field(default_factory=list)  # per arm: coverage, gini, diversity (experiments.beyond)
    hubs: list[dict] = field(default_factory=list)  # per arm: the most over-recommended items

    @property
    def overlap(self) -> float:
        return float(np.mean([p["overlap"] for p in self.pairs])) if self.pairs else float("nan")


def _overlaps(a, b) -> object:
    """Per item: shared neighbours / neighbours shown (the shorter list), between two arm tables."""
    import pandas as pd

    ga = a.groupby("item")["neighbour"].agg(set)
    gb = b.groupby("item")["neighbour"].agg(set)
    common = ga.index.intersection(gb.index)
    vals = [len(ga[i] & gb[i]) / max(1, min(len(ga[i]), len(gb[i]))) for i in common]
    return pd.Series(vals, index=common, dtype=np.float64)


def build_arms(arms: Sequence[str] | str = DEFAULT_ARMS, k: int = 20, filters: Sequence[str] = (),
               label: str | None = None, store=None, out: str | os.PathLike | None = None) -> ArmsResult:
    """Each arm's "similar items" table (arm = an embedded model) and how much the arms differ.

    The lists come from :func:`vrec.search.export.similar_items`, the table ``vrec neighbours`` writes, so
    the test serves exactly what vrec recommends. overlap@k of an item = neighbours both arms
    show / neighbours shown; with ``label`` its mean is given per label value. When the arms share
    ``BARELY_DIFFER`` (80%) or more of their lists, a warning says a test would compare nearly the
    same thing. ``out`` (.parquet or .csv) receives the table: arm, item, rank, neighbour, score.
    """
    import tempfile

    import pandas as pd

    from vrec.search.export import NEIGHBOUR_FORMATS, output_format, similar_items
    from vrec.store.catalog_table import catalog_table
    from vrec.store.store import as_store

    names = parse_arms(arms)
    check_number("--k", k, min=1, integer=True)
    fmt = output_format(out, NEIGHBOUR_FORMATS, option=False) if out is not None else None
    st = as_store(store)
    for m in names:
        st.model(m)  # every arm embedded, before any work
    meta_table = None
    if label is not None:
        meta_table = catalog_table(st, st.model(names[0]))
        if label not in meta_table.columns:
            raise QueryError(f"No column {label!r} in the metadata for --label.{suggest(label, meta_table.columns)} "
                             f"Add labels with 'vrec embed FOLDER --metadata CSV'.")
    notes: list[str] = []
    tables = {}
    with tempfile.TemporaryDirectory(prefix="vrec-arms-") as tmp:
        for m in names:
            info = similar_items(Path(tmp) / f"{len(tables)}.parquet", model=m, store=st, k=k, filters=filters)
            notes += [n for n in info["notes"] if n not in notes]
            tables[m] = pd.read_parquet(Path(tmp) / f"{len(tables)}.parquet")
            k_used = info["k"]
    items = set.intersection(*(set(t["item"]) for t in tables.values()))
    if any(set(t["item"]) != items for t in tables.values()):
        notes.append(f"the arms' models cover different items; overlap is measured on the {len(items)} items all hold")
    table = pd.concat([t.assign(arm=m) for m, t in tables.items()], ignore_index=True)[
        ["arm", "item", "rank", "neighbour", "score"]]
    res = ArmsResult(names, int(k_used), len(items), table, [], label=label, notes=notes)
    res.beyond, res.hubs = arms_figures(st, names, tables, res.k, filters, label)
    per_item = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ov = _overlaps(tables[a], tables[b])
            per_item[f"{a} vs {b}"] = ov
            res.pairs.append({"first": a, "second": b, "overlap": float(ov.mean()) if len(ov) else float("nan"),
                              "identical_lists": float((ov >= 1.0).mean()) if len(ov) else float("nan")})
    for p in res.pairs:
        if p["overlap"] >= BARELY_DIFFER:
            res.warnings.append(
                f"the arms barely differ: {p['first']} and {p['second']} share {p['overlap']:.0%} of their top-{res.k} "
                f"neighbours on average ({p['identical_lists']:.0%} of items get the same list), so users would see "
                f"nearly the same recommendations and a test could hardly find a difference")
    if label is not None:
        labels = meta_table.set_index(meta_table["id"].astype(str))[label].astype("string").fillna("").str.strip()
        frame = pd.DataFrame(per_item)
        frame[label] = labels.reindex(frame.index).fillna("").to_numpy()
        frame = frame[frame[label] != ""]
        grouped = frame.groupby(label)
        pl = grouped.mean(numeric_only=True)
        pl.insert(0, "items", grouped.size())
        res.per_label = pl.sort_values("items", ascending=False, kind="stable").reset_index()
    if out is not None:
        with atomic_path(out) as tmp:
            if fmt == "csv":
                from vrec.base.records import csv_safe  # spreadsheet formulas escaped, as in every CSV vrec writes

                csv_safe(table).to_csv(tmp, index=False)
            else:
                table.to_parquet(tmp, index=False)
        res.file = str(out)
    return res


def arms_to_dict(res: ArmsResult) -> dict:
    from vrec.base.records import to_records

    return json_safe({"arms": res.arms, "k": res.k, "items": res.items, "overlap": res.overlap, "pairs": res.pairs,
                      "label": res.label, "per_label": to_records(res.per_label) if res.per_label is not None else None,
                      "file": res.file, "notes": res.notes, "warnings": res.warnings, "beyond": res.beyond,
                      "hubs": res.hubs})


# --- serving and exposure logging ------------------------------------------------------------

def parse_arm_models(arms: str | Sequence[str] | None) -> dict[str, str]:
    """{arm: model} from 'cnn,siglip' (arm = model) or 'control=cnn,treatment=siglip'."""
    raw = parse_arms(arms)
    out = {}
    for a in raw:
        name, _, model = a.partition("=")
        name, model = name.strip(), (model.strip() or name.strip())
        if not name:
            raise VrecError(f"Arm {a!r} has no name; write ARM=MODEL or just MODEL, e.g. --arms cnn,siglip.")
        if name in out:
            raise VrecError(f"Arm {name!r} is named twice in --arms; give each arm once.")
        out[name] = model
    return out


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line to ``path`` under an exclusive lock, in a single write.

    A log is appended to, not replaced, so this is the one writer that does not go through
    ``atomic_path``: the lock keeps lines of concurrent servers whole and in one piece each, and
    ``O_APPEND`` puts every line at the end.
    """
    p = Path(path)
    if p.is_dir():
        raise StoreError(f"{str(p)!r} is a folder; give a file name for the exposure log (e.g. {str(p / 'exposures.jsonl')!r}).")
    if p.exists() and not p.is_file():
        raise StoreError(f"{str(p)!r} is not a regular file; give the name of a file for the exposure log.")
    data = (json.dumps(json_safe(record), ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # the umask applies
    except OSError as e:
        raise StoreError(f"Cannot write the exposure log {str(p)!r} ({e.strerror or e}); choose a writable location.") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def read_exposures(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class Experiment:
    """A running experiment: each unit gets its arm's "similar items" list, and every list shown is logged.

    ``arms`` maps arm names to embedded models ('cnn,siglip', or 'control=cnn,treatment=siglip');
    the first arm is the control. ``exposure_log`` (a JSONL file) receives one line per list
    shown: time, experiment, unit, arm, model, item, shown ids.
    """

    def __init__(self, name: str, arms: str | Sequence[str] | None = DEFAULT_ARMS, split=None, store=None,
                 exposure_log: str | os.PathLike | None = None, k: int = 10, check: bool = True):
        from vrec.store.store import as_store

        self.name = check_experiment(name)
        self.models = parse_arm_models(arms)
        self.arms = list(self.models)
        self.split = parse_split(split, len(self.arms))
        check_number("--k", k, min=1, integer=True)
        self.k = int(k)
        self.store = as_store(store)
        self.exposure_log = Path(exposure_log) if exposure_log else None
        if check:
            for m in dict.fromkeys(self.models.values()):
                self.store.model(m)  # each arm's model embedded: one clear error now, not per request
        if self.exposure_log is not None and (self.exposure_log.is_dir() or
                                              (self.exposure_log.exists() and not self.exposure_log.is_file())):
            raise StoreError(f"--exposure-log {str(self.exposure_log)!r} is not a file; give a file name such as "
                             "exposures.jsonl.")

    def arm_of(self, unit) -> str:
        if unit is None or not str(unit).strip():
            raise QueryError("Give the unit (user or session id) to recommend for, e.g. ?unit=user-123.")
        return str(assign_many([str(unit).strip()], self.name, self.arms, self.split)[0])

    def recommend(self, item: str, unit, k: int | None = None, filters: Sequence[str] = (), store=None) -> dict:
        """The unit's arm's neighbours of catalog item ``item``; logs the exposure when there is a log.

        Only catalog ids (or their unique endings) are accepted, never a file path: a request from the
        web must not make the server read its own files. ``store`` overrides the experiment's store
        for this call (``vrec serve`` passes its current snapshot)."""
        from vrec.search.query import resolve_item, search_image, unknown_item
        from vrec.store.catalog_table import catalog_table

        st = store if store is not None else self.store
        arm = self.arm_of(unit)
        model = self.models[arm]
        table = catalog_table(st, st.model(model))
        pos = resolve_item(table, str(item))  # as it is: a file name may begin or end with a space
        if pos is None:
            pos = resolve_item(table, str(item).strip())
        if pos is None:
            raise unknown_item(table, str(item).strip(), photos=False)
        res = search_image(str(table["id"].iloc[pos]), k=k or self.k, model=model, store=st, filters=filters)
        shown = res.table["id"].astype(str).tolist()
        record = {"time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
                  "experiment": self.name, "unit": str(unit).strip(), "arm": arm, "model": model,
                  "item": str(res.query_item["id"]) if res.query_item else str(item), "shown": shown}
        if self.exposure_log is not None:
            append_jsonl(self.exposure_log, record)
        return {**record, "result": res}


def recommend_for_unit(experiment: str, unit, item: str, arms=DEFAULT_ARMS, split=None, store=None,
                       exposure_log=None, k: int = 10) -> dict:
    """One-off form of :meth:`Experiment.recommend`."""
    return Experiment(experiment, arms, split, store, exposure_log, k).recommend(item, unit)
