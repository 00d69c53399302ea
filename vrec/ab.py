"""A/B experiments: does the SigLIP "similar items" module beat the incumbent CNN with real users?

Four steps, each a library function with a thin ``vrec ab`` command in front of it:

- :func:`plan` -- how many units (users, sessions) per arm and how many days a test needs to detect
  a given effect, and the smallest effect a given duration can detect;
- :func:`build_arms` -- each arm's recommendation table (from vrec's own neighbour search,
  :func:`vrec.export.similar_items`) and how much the arms differ (overlap@k), so a test between
  two nearly identical lists is caught before anyone runs it;
- :func:`assign` -- a deterministic, salted hash of experiment name and unit id to an arm: the same
  answer on every run and machine, independent across experiment names; :class:`Experiment`
  serves a unit its arm's list and appends an exposure line to a JSONL log, for a pilot;
- :func:`analyze` -- per-arm values, absolute and relative lifts with 95% intervals and p-values,
  ratio metrics at the unit of randomisation (delta method), CUPED, and a sample-ratio-mismatch
  check; :func:`write_report` writes .html, .md or .json with a chart of the lifts.

The statistics come from statsmodels (power: ``statsmodels.stats.power.NormalIndPower`` with
``proportion_effectsize``; tests and intervals: Welch's t-test of ``CompareMeans``; several arms:
``multipletests``) and scipy (the SRM chi-square test, ``scipy.stats.chisquare``). Written here,
because neither library has them: the delta-method linearisation of a ratio metric (each unit's
``(num - R*den) / mean(den)``, whose mean and variance are the ratio's; the t-test then runs on
those values), the delta-method interval of a relative lift, CUPED's adjustment
``y - theta*(x - mean(x))``, and the inverse of Cohen's h to turn a detectable effect size back
into a rate.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import QueryError, StoreError, VrecError, check_number, suggest
from .records import json_safe
from .store import atomic_path

DEFAULT_ARMS = ("cnn", "siglip")
SRM_ALPHA = 0.001  # a sample-ratio-mismatch p-value below this is flagged (the usual threshold)
BARELY_DIFFER = 0.8  # mean overlap@k at or above this: the arms show nearly the same lists
MAX_ARMS = 10


# --- plan ---------------------------------------------------------------------------------------

@dataclass
class Plan:
    """What a test needs: units per arm, in total, and days at ``daily_units``."""

    baseline: float
    mde: float  # absolute effect to detect
    relative_mde: float  # the same, relative to the baseline
    alpha: float
    power: float
    arms: int
    comparison_alpha: float  # alpha per treatment-vs-control comparison (Bonferroni beyond two arms)
    kind: str  # "proportion" (baseline is a rate) or "mean" (with sd)
    sd: float | None
    effect_size: float  # Cohen's h (proportions) or d (means)
    units_per_arm: int
    total_units: int
    daily_units: int | None = None
    days: int | None = None
    detectable: list[dict] = field(default_factory=list)  # per duration: days, units_per_arm, mde, relative_mde
    notes: list[str] = field(default_factory=list)


def _check_alpha_power(alpha: float, power: float) -> None:
    check_number("--alpha", alpha, min=1e-6, max=0.5, hint="0.05 is usual")
    check_number("--power", power, min=0.5, max=0.9999, hint="0.8 is usual")


def plan(baseline: float, mde: float, relative: bool = False, alpha: float = 0.05, power: float = 0.8,
         arms: int = 2, daily_units: int | None = None, sd: float | None = None,
         days: Sequence[int] = ()) -> Plan:
    """Sample size for a test of ``arms`` arms (each treatment against the first, the control).

    ``baseline`` is the control's rate (a conversion or click-through rate, between 0 and 1), or
    its mean when ``sd`` (the per-unit standard deviation) is given. ``mde`` is the smallest
    effect worth detecting: absolute (0.005 = half a percentage point), or relative to the
    baseline with ``relative`` (0.05 = +5%). Two-sided test at ``alpha`` with ``power``; beyond
    two arms alpha is split over the comparisons (Bonferroni). With ``daily_units`` (units that
    enter the test per day, all arms together) the duration is given, and ``days`` (default 7,
    14, 28) lists the smallest effect each duration can detect.
    """
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    _check_alpha_power(alpha, power)
    check_number("--arms", arms, min=2, max=MAX_ARMS, integer=True)
    arms = int(arms)
    if sd is None:
        check_number("--baseline", baseline, min=1e-9, max=1 - 1e-9,
                     hint="a rate such as 0.04 (4% convert); for a mean metric give --sd too")
    else:
        check_number("--baseline", baseline)
        check_number("--sd", sd, min=1e-12, hint="the per-unit standard deviation of the metric")
    check_number("--mde", mde, min=1e-12, hint="e.g. 0.005 absolute, or 0.05 with --relative for +5%")
    if daily_units is not None:
        check_number("--daily-units", daily_units, min=1, integer=True)
        daily_units = int(daily_units)
    for d in days:
        check_number("--days", d, min=1, max=3650, integer=True)
    if relative:
        if baseline == 0:
            raise VrecError("A relative --mde needs a baseline other than 0; give the effect in absolute terms.")
        abs_mde = abs(baseline) * mde
    else:
        abs_mde = mde
    target = baseline + abs_mde
    if sd is None and target >= 1:
        raise VrecError(f"A rate of {baseline:g} plus an effect of {abs_mde:g} reaches {target:g}, but a rate stays "
                        f"below 1; give a smaller --mde.")
    comparisons = arms - 1
    comparison_alpha = alpha / comparisons
    es = float(proportion_effectsize(target, baseline)) if sd is None else abs_mde / sd
    solver = NormalIndPower()
    n = solver.solve_power(effect_size=abs(es), nobs1=None, alpha=comparison_alpha, power=power, ratio=1.0)
    per_arm = int(math.ceil(float(np.asarray(n).item())))
    p = Plan(baseline, abs_mde, abs_mde / abs(baseline) if baseline else float("nan"), alpha, power, arms,
             comparison_alpha, "proportion" if sd is None else "mean", sd, es, per_arm, per_arm * arms, daily_units)
    if comparisons > 1:
        p.notes.append(f"{arms} arms: each of the {comparisons} treatments is compared with the control at "
                       f"alpha {comparison_alpha:.4g} (Bonferroni), so the family's false-positive rate stays {alpha:g}")
    if daily_units:
        p.days = int(math.ceil(p.total_units / daily_units))
        for d in (list(days) or [7, 14, 28]):
            units = daily_units * int(d) // arms
            if units < 2:
                p.detectable.append({"days": int(d), "units_per_arm": units, "mde": float("nan"),
                                     "relative_mde": float("nan")})
                continue
            es_d = float(np.asarray(solver.solve_power(effect_size=None, nobs1=units, alpha=comparison_alpha,
                                                       power=power, ratio=1.0)).item())
            if sd is None:  # invert Cohen's h = 2 asin(sqrt(p2)) - 2 asin(sqrt(p1)) for p2
                angle = 2 * math.asin(math.sqrt(baseline)) + es_d
                eff = (math.sin(angle / 2) ** 2 - baseline) if angle < math.pi else float("nan")
            else:
                eff = es_d * sd
            p.detectable.append({"days": int(d), "units_per_arm": units, "mde": eff,
                                 "relative_mde": eff / abs(baseline) if baseline else float("nan")})
    elif days:
        p.notes.append("give --daily-units to see the smallest effect each duration can detect")
    return p


# --- assignment ---------------------------------------------------------------------------------

def parse_arms(arms: str | Sequence[str] | None) -> list[str]:
    """Arm names from 'cnn,siglip' (or a list); two to ten distinct names."""
    if arms is None:
        names = list(DEFAULT_ARMS)
    elif isinstance(arms, str):
        names = [a.strip() for a in arms.split(",") if a.strip()]
    else:
        names = [str(a).strip() for a in arms if str(a).strip()]
    if len(names) < 2:
        raise VrecError(f"An experiment needs at least two arms, e.g. --arms cnn,siglip (got {arms!r}).")
    if len(names) > MAX_ARMS:
        raise VrecError(f"At most {MAX_ARMS} arms (got {len(names)}).")
    dup = sorted({a for a in names if names.count(a) > 1})
    if dup:
        raise VrecError(f"Arm {dup[0]!r} is named twice in --arms; give each arm once.")
    return names


def parse_split(split: str | Sequence[float] | None, n_arms: int) -> list[float]:
    """Shares per arm from '50/50', '34/33/33' or '1/1/1' (normalised to sum to 1); None: equal."""
    if split is None or (isinstance(split, str) and not split.strip()):
        return [1.0 / n_arms] * n_arms
    parts = split.split("/") if isinstance(split, str) else list(split)
    try:
        weights = [float(str(x).strip().rstrip("%")) for x in parts]
    except ValueError:
        raise VrecError(f"--split takes shares separated by '/', e.g. 50/50 or 34/33/33 (not {split!r}).") from None
    if len(weights) != n_arms:
        raise VrecError(f"--split {split!r} gives {len(weights)} shares for {n_arms} arms; give one share per arm, "
                        f"e.g. {'/'.join(['50'] * 2) if n_arms == 2 else '/'.join(['1'] * n_arms)}.")
    for w in weights:
        check_number("each --split share", w, min=0)
    total = sum(weights)
    if total <= 0 or sum(w > 0 for w in weights) < 2:
        raise VrecError(f"--split {split!r} must give at least two arms a share above 0.")
    return [w / total for w in weights]


def bucket(unit, experiment: str) -> float:
    """The unit's position in [0, 1) for this experiment: sha256 of 'experiment' + NUL + 'unit'.

    The experiment name is the salt, so one unit lands independently in different experiments;
    the hash is the same in every process and on every machine (unlike Python's ``hash``).
    """
    digest = hashlib.sha256(f"{experiment}\x00{unit}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def _check_experiment(experiment: str) -> str:
    if not isinstance(experiment, str) or not experiment.strip():
        raise VrecError("Give the experiment a name (--experiment NAME), e.g. --experiment similar-items-2025-06; "
                        "the name salts the assignment.")
    return experiment.strip()


def assign(unit, experiment: str, arms: Sequence[str] | str | None = None, split=None) -> str:
    """The arm of one unit (user or session id) in an experiment. Deterministic and stable."""
    return str(assign_many([unit], experiment, arms, split)[0])


def assign_many(units: Iterable, experiment: str, arms: Sequence[str] | str | None = None, split=None) -> np.ndarray:
    """Arms of many units at once (see :func:`assign`)."""
    experiment = _check_experiment(experiment)
    names = parse_arms(arms)
    weights = parse_split(split, len(names))
    edges = np.cumsum(weights)[:-1]
    b = np.fromiter((bucket(u, experiment) for u in units), dtype=np.float64)
    return np.asarray(names, dtype=object)[np.searchsorted(edges, b, side="right")]


def read_table(path: str | os.PathLike, what: str = "file"):
    """A CSV or parquet file as a DataFrame (ids kept as text), with one clear error when it cannot be read."""
    import pandas as pd

    p = Path(path)
    if p.is_dir():
        raise VrecError(f"{what} {str(path)!r} is a folder; give a CSV or parquet file.")
    if not p.is_file():
        raise VrecError(f"{what} {str(path)!r} does not exist.")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(p)
        else:
            df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise VrecError(f"{what} {str(path)!r} is empty; it needs a header row and one row per unit.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VrecError(f"Cannot read {what} {str(path)!r} ({reason}); give a UTF-8 CSV or a parquet file.") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _column(df, name: str, what: str) -> None:
    if name not in df.columns:
        raise VrecError(f"No column {name!r} for {what}; the file has {', '.join(map(repr, df.columns[:12]))}"
                        f"{' ...' if len(df.columns) > 12 else ''}.{suggest(name, map(str, df.columns))}")


def assign_file(path: str | os.PathLike, experiment: str, arms=None, split=None, unit: str | None = None):
    """A table of units (CSV/parquet; column ``unit``, else the first column) with each unit's arm.

    Returns (DataFrame unit, arm; counts per arm as a dict)."""
    import pandas as pd

    df = read_table(path, "units file")
    if not len(df.columns):
        raise VrecError(f"Units file {str(path)!r} has no columns; give one unit id per row under a header.")
    col = unit or ("unit" if "unit" in df.columns else df.columns[0])
    _column(df, col, "--unit")
    units = df[col].astype(str).str.strip()
    if not len(units):
        raise VrecError(f"Units file {str(path)!r} has no rows; give one unit id per row.")
    if (units == "").any():
        raise VrecError(f"Units file {str(path)!r} has {int((units == '').sum())} empty unit id(s) in column "
                        f"{col!r}; fill or remove those rows.")
    names = parse_arms(arms)
    out = pd.DataFrame({col: units, "arm": assign_many(units, experiment, names, split)})
    counts = {a: int((out["arm"] == a).sum()) for a in names}
    return out, counts


# --- arms: what each arm would show -------------------------------------------------------------

@dataclass
class ArmsResult:
    arms: list[str]
    k: int
    items: int
    table: "object"  # DataFrame: arm, item, rank, neighbour, score
    pairs: list[dict]  # first, second, overlap (mean over items)
    per_label: "object | None" = None  # DataFrame: label value, items, one column per pair
    label: str | None = None
    file: str | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def overlap(self) -> float:
        return float(np.mean([p["overlap"] for p in self.pairs])) if self.pairs else float("nan")


def _overlaps(a, b) -> "object":
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

    The lists come from :func:`vrec.export.similar_items`, the table ``vrec neighbours`` writes, so
    the test serves exactly what vrec recommends. overlap@k of an item = neighbours both arms
    show / neighbours shown; with ``label`` its mean is given per label value. When the arms share
    ``BARELY_DIFFER`` (80%) or more of their lists, a warning says a test would compare nearly the
    same thing. ``out`` (.parquet or .csv) receives the table: arm, item, rank, neighbour, score.
    """
    import tempfile

    import pandas as pd

    from .export import NEIGHBOUR_FORMATS, output_format, similar_items
    from .search import catalog_table
    from .store import as_store

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
                table.to_csv(tmp, index=False)
            else:
                table.to_parquet(tmp, index=False)
        res.file = str(out)
    return res


def arms_to_dict(res: ArmsResult) -> dict:
    from .records import to_records

    return json_safe({"arms": res.arms, "k": res.k, "items": res.items, "overlap": res.overlap, "pairs": res.pairs,
                      "label": res.label, "per_label": to_records(res.per_label) if res.per_label is not None else None,
                      "file": res.file, "notes": res.notes, "warnings": res.warnings})


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
        from .store import as_store

        self.name = _check_experiment(name)
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
        from .search import catalog_table, resolve_item, search_image, unknown_item

        st = store if store is not None else self.store
        arm = self.arm_of(unit)
        model = self.models[arm]
        table = catalog_table(st, st.model(model))
        pos = resolve_item(table, str(item).strip())
        if pos is None:
            raise unknown_item(table, str(item).strip())
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


# --- analysis -----------------------------------------------------------------------------------

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
        se_rel = math.sqrt(se_t2 / mc ** 2 + mt ** 2 * se_c2 / mc ** 4)
        z = float(norm.ppf(1 - alpha / 2))
        rel_ci = (rel - z * se_rel, rel + z * se_rel)
    else:
        rel, rel_ci = float("nan"), (float("nan"), float("nan"))
    if se_t2 + se_c2 == 0:  # no variation at all: the difference is exact
        p = 0.0 if diff != 0 else 1.0
        lo = hi = diff
    return {"treatment": mt, "control": mc, "diff": diff, "ci": (float(lo), float(hi)), "p": float(p),
            "rel": rel, "rel_ci": rel_ci}


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


def _numeric(df, col: str, what: str) -> np.ndarray:
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
    if not np.isfinite(out).all():
        raise VrecError(f"Column {col!r} ({what}) holds infinite values; give finite numbers.")
    return out


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

    check_number("--alpha", alpha, min=1e-6, max=0.5, hint="0.05 gives 95% intervals")
    specs = [m if isinstance(m, MetricSpec) else parse_metric(m) for m in metrics]
    if not specs:
        raise VrecError("Name at least one --metric, e.g. --metric ctr=clicks/impressions or --metric orders=orders.")
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise VrecError(f"Metric name {dup[0]!r} is used twice; give each --metric its own NAME=...")
    df = data if isinstance(data, pd.DataFrame) else read_table(data, "events file")
    if not len(df):
        raise VrecError("The events file has no rows; it needs one row per unit (or per event).")
    _column(df, unit, "--unit")
    _column(df, arm, "--arm")
    value_cols = list(dict.fromkeys(c for s in specs for c in s.columns))
    for s in specs:
        for c in s.columns:
            _column(df, c, f"--metric {s.name}")
    if covariate is not None:
        _column(df, covariate, "--covariate")
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
    values = {c: _numeric(df, c, "a metric") for c in value_cols}
    counts = {c for s in specs if s.den for c in s.columns}
    for c in sorted(counts):
        neg = values[c] < 0
        if neg.any():
            raise VrecError(f"Column {c!r} has negative counts in {int(neg.sum())} row(s) (e.g. {values[c][neg][0]:g}); "
                            f"counts in a ratio metric are never below 0 — fix the export.")
    frame = pd.DataFrame({"unit": units_col.to_numpy(), "arm": arms_col.to_numpy(),
                          **{f"v:{c}": v for c, v in values.items()}})
    if covariate is not None:
        frame["cov"] = _numeric(df, covariate, "the covariate")
    notes: list[str] = []
    events = None
    if frame["unit"].duplicated().any():  # per-event rows: one row per unit, values summed
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
        agg = {"arm": "first", **{f"v:{c}": "sum" for c in values}}
        if covariate is not None:
            agg["cov"] = "first"
        events = len(frame)
        frame = frame.groupby("unit", sort=False).agg(agg).reset_index()
        notes.append(f"{events:,} rows aggregated into {len(frame):,} units (values summed per unit)")
    present = sorted(frame["arm"].unique())
    if len(present) < 2:
        raise VrecError(f"The data hold only one arm ({present[0]!r} in column {arm!r}); an A/B test compares at "
                        "least two — check the arm column and the export.")
    if arms is not None:
        order = parse_arms(arms)
        missing = [a for a in order if a not in present]
        if missing:
            raise VrecError(f"Arm {missing[0]!r} (from --arms) has no units in the data, whose arms are "
                            f"{', '.join(map(repr, present))}.{suggest(missing[0], present)}")
        extra = [a for a in present if a not in order]
        if extra:
            raise VrecError(f"The data hold arm {extra[0]!r}, which --arms does not name; list every arm "
                            f"({','.join(present)}).")
    else:
        order = present
    shares = parse_split(split, len(order))
    control = order[0]
    n_units = {a: int((frame["arm"] == a).sum()) for a in order}
    for a, n in n_units.items():
        if n < 2:
            raise VrecError(f"Arm {a!r} has {n} unit(s); each arm needs at least two to estimate its variance.")
    from scipy.stats import chisquare
    from statsmodels.stats.multitest import multipletests

    obs = np.array([n_units[a] for a in order], np.float64)
    nonzero = np.array(shares) > 0
    chi2, srm_p = chisquare(obs[nonzero], obs.sum() * np.array(shares)[nonzero] / sum(np.array(shares)[nonzero]))
    treatments = order[1:]
    m = len(treatments)
    a_cmp = alpha / m
    res = Analysis(order, control, n_units, dict(zip(order, shares)), float(srm_p), float(chi2),
                   bool(srm_p < SRM_ALPHA), alpha, [], names, covariate, events, m > 1, notes)
    if m > 1:
        notes.append(f"{m} treatment arms against {control!r}: intervals at {1 - a_cmp:.2%} and p-values "
                     f"Bonferroni-adjusted, so all comparisons together keep a {alpha:g} false-positive rate")
    arm_of = frame["arm"].to_numpy()
    x = frame["cov"].to_numpy() if covariate is not None else None
    if x is not None and x.var() == 0:
        notes.append(f"the covariate {covariate!r} is the same for every unit; CUPED cannot use it")
        x = None
    for s in specs:
        num = frame[f"v:{s.num}"].to_numpy()
        if s.den:
            den = frame[f"v:{s.den}"].to_numpy()
            y = np.empty(len(frame))
            for a in order:
                sel = arm_of == a
                if den[sel].sum() == 0:
                    raise VrecError(f"Metric {s.name!r}: arm {a!r} has {s.den!r} = 0 for every unit, so "
                                    f"{s.num}/{s.den} is undefined there.")
                y[sel], _ = linearize(num[sel], den[sel])
        else:
            y = num.astype(np.float64)
        raw = {a: float(y[arm_of == a].mean()) for a in order}
        reduction = None
        if x is not None:
            y_adj, _ = cuped(y, x)
            v0, v1 = y.var(ddof=1), y_adj.var(ddof=1)
            reduction = float(1 - v1 / v0) if v0 > 0 else 0.0
            y = y_adj
        rows = []
        for t in treatments:
            r = compare_means(y[arm_of == control], y[arm_of == t], alpha=a_cmp)
            rows.append((t, r))
        pvals = [r["p"] for _, r in rows]
        adj = multipletests(pvals, alpha=alpha, method="bonferroni")[1] if m > 1 else pvals
        for (t, r), p in zip(rows, adj):
            res.lifts.append(Lift(s.name, t, control, n_units[t], n_units[control], r["treatment"], r["control"],
                                  r["diff"], r["ci"], r["rel"], r["rel_ci"], float(p), bool(p < alpha),
                                  s.den is not None, x is not None, reduction,
                                  raw[t] if x is not None else None, raw[control] if x is not None else None))
        if all(math.isnan(r["p"]) for _, r in rows):
            notes.append(f"metric {s.name!r} does not vary within the arms; there is nothing to test")
    return res


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


# --- reports ------------------------------------------------------------------------------------

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


def lifts_svg(a: Analysis, width: int = 640) -> str:
    """A forest plot: relative lift of each treatment on each metric with its interval, around zero."""
    rows = [x for x in a.lifts if x.rel_lift == x.rel_lift]
    row_h, top, left, right = 26, 40, 190, 30
    height = top + row_h * max(1, len(rows)) + 34
    if not rows:
        return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='60' font-family='sans-serif' "
                f"font-size='12'><text x='10' y='30'>no relative lift to draw (a control value is 0)</text></svg>")
    lo = min(min(x.rel_ci[0] for x in rows), 0.0)
    hi = max(max(x.rel_ci[1] for x in rows), 0.0)
    pad = (hi - lo) * 0.08 or 0.01
    lo, hi = lo - pad, hi + pad
    X = lambda v: left + (width - left - right) * (v - lo) / (hi - lo)  # noqa: E731
    level = 1 - a.alpha / (len(a.arms) - 1)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-family='sans-serif' "
             f"font-size='12'>",
             f"<text x='10' y='18' font-size='13' font-weight='600'>Relative lift against {html.escape(a.control)} "
             f"({level:.0%} interval)</text>"]
    zero = X(0.0)
    parts.append(f"<line x1='{zero:.1f}' x2='{zero:.1f}' y1='{top - 8}' y2='{height - 28}' stroke='#888' "
                 f"stroke-dasharray='4 3'/>")
    for i, x in enumerate(rows):
        y = top + i * row_h + row_h / 2
        colour = "#2e9e5b" if x.significant and x.rel_lift > 0 else "#c0392b" if x.significant else "#555"
        label = html.escape(f"{x.metric} · {x.arm}")
        parts.append(f"<text x='{left - 8}' y='{y + 4:.1f}' text-anchor='end'>{label}</text>")
        parts.append(f"<line x1='{X(x.rel_ci[0]):.1f}' x2='{X(x.rel_ci[1]):.1f}' y1='{y:.1f}' y2='{y:.1f}' "
                     f"stroke='{colour}' stroke-width='2'/>")
        for end in x.rel_ci:
            parts.append(f"<line x1='{X(end):.1f}' x2='{X(end):.1f}' y1='{y - 5:.1f}' y2='{y + 5:.1f}' stroke='{colour}' "
                         f"stroke-width='2'/>")
        tip = html.escape(f"{x.metric} · {x.arm}: {fmt_pct(x.rel_lift)} [{fmt_pct(x.rel_ci[0])}, "
                          f"{fmt_pct(x.rel_ci[1])}], p {fmt_p(x.p_value)}")
        parts.append(f"<circle cx='{X(x.rel_lift):.1f}' cy='{y:.1f}' r='4.5' fill='{colour}'><title>{tip}</title></circle>")
    for tick in _nice_ticks(lo, hi):
        text = "0%" if abs(tick) < 1e-12 else f"{tick * 100:+.{0 if abs(tick) >= 0.01 else 1}f}%"
        parts.append(f"<text x='{X(tick):.1f}' y='{height - 10}' text-anchor='middle' fill='#666'>{text}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (multiples of 1, 2 or 5 times a power of ten) between lo and hi, zero among them."""
    raw = (hi - lo) / target
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(lo / step), math.floor(hi / step) + 1)]


def _summary_lines(a: Analysis) -> list[str]:
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


def report_markdown(a: Analysis, chart_rel: str) -> str:
    lines = ["# vrec A/B analysis", ""]
    for line in _summary_lines(a):
        lines += [f"**{line}**" if line.startswith("SAMPLE RATIO") else line, ""]
    lines += ["| " + " | ".join(LIFT_HEADER) + " |", "| --- | --- | " + " | ".join(["---:"] * (len(LIFT_HEADER) - 2)) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in lift_rows(a)]
    cup = [x for x in a.lifts if x.cuped]
    if cup:
        lines += ["", "CUPED removed " + ", ".join(f"{x.metric} {x.variance_reduction:.0%}" for x in cup
                                                  if x.arm == a.arms[1]) + " of the variance."]
    lines += ["", f"![lifts]({chart_rel})"]
    if a.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in a.notes]
    return "\n".join(lines) + "\n"


def report_html(a: Analysis) -> str:
    summary = "".join((f"<p style='background:#fde2e1;border:2px solid #c0392b;padding:10px;font-weight:600'>"
                       f"{html.escape(line)}</p>" if line.startswith("SAMPLE RATIO") else
                       f"<p class='meta'>{html.escape(line)}</p>") for line in _summary_lines(a))
    table = ("<table class='summary'><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in LIFT_HEADER) + "</tr>"
             + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in lift_rows(a))
             + "</table>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in a.notes)
    return (summary + "<h2>Lifts</h2>" + table + "<h2>Chart</h2>" + lifts_svg(a)
            + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""))


def write_report(a: Analysis, path: str | os.PathLike) -> list[str]:
    """Write the analysis as .json, .html (self-contained) or .md (with an SVG chart beside it).
    Returns the files written."""
    from . import pages

    pages.check_report_path(path)
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        with atomic_path(p) as tmp:
            Path(tmp).write_text(json.dumps(analysis_to_dict(a), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        return [str(p)]
    if suffix in (".html", ".htm"):
        pages.write_page(p, "vrec A/B analysis", report_html(a))
        return [str(p)]
    chart = p.with_name(p.stem + "_charts") / "lifts.svg"
    with atomic_path(chart) as tmp:
        Path(tmp).write_text(lifts_svg(a), encoding="utf-8")
    with atomic_path(p) as tmp:
        Path(tmp).write_text(report_markdown(a, f"{chart.parent.name}/{chart.name}"), encoding="utf-8")
    return [str(p), str(chart)]


def check_report(path: str | os.PathLike) -> None:
    """Refuse an unusable report path before the analysis (same rules as vrec eval's reports)."""
    from .pages import check_report_path

    check_report_path(path)

