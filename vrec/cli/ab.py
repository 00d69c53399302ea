"""``vrec ab``: plan, prepare, assign and analyse an A/B test of SigLIP against the CNN."""
from __future__ import annotations

import json

import typer
from rich.markup import escape

from vrec.cli.common import FilterOpt, FormatTableJsonOpt, StoreOpt, app, check_format, err, out, print_notes

ab_app = typer.Typer(help="A/B tests of the similar-items module: plan, arms, assign, analyze.", no_args_is_help=True)
app.add_typer(ab_app, name="ab")

ArmsOpt = typer.Option("cnn,siglip", "--arms", help="Arms, comma-separated; the first is the control. Arm names "
                       "are embedded models (cnn, siglip, ...).")
SplitOpt = typer.Option(None, "--split", help="Shares per arm, in --arms order, e.g. 50/50 or 34/33/33 "
                        "\\[default: equal].")


def _warn(lines) -> None:
    for w in lines:
        err.print(f"[bold red]WARNING:[/bold red] [bold]{escape(w)}[/bold]", highlight=False, soft_wrap=True)


@ab_app.command("plan")
def plan_cmd(
    baseline: float = typer.Option(..., "--baseline", help="The control's rate, e.g. 0.04 for 4% conversion (or its "
                                   "mean, with --sd)."),
    mde: float = typer.Option(..., "--mde", help="Smallest effect worth detecting: absolute (0.004 = 0.4 points), "
                              "or relative with --relative (0.1 = +10%)."),
    relative: bool = typer.Option(False, "--relative", help="--mde is relative to the baseline."),
    alpha: float = typer.Option(0.05, "--alpha", help="Two-sided significance level (false-positive rate)."),
    power: float = typer.Option(0.8, "--power", help="Chance to detect an effect of --mde when it is there."),
    arms: int = typer.Option(2, "--arms", help="Number of arms, control included (2 to 10); beyond two, alpha is "
                             "split over the comparisons (Bonferroni)."),
    daily_units: float | None = typer.Option(None, "--daily-units", help="Units (users, sessions) entering the "
                                                "test per day, all arms together (e.g. 5000 or 1e6): gives the "
                                                "duration."),
    days: list[int] | None = typer.Option(None, "--days", help="With --daily-units: durations to show the "
                                             "smallest detectable effect for \\[default: 7, 14 and 28]; repeatable."),
    sd: float | None = typer.Option(None, "--sd", help="For a mean metric (e.g. revenue per user): its per-unit "
                                       "standard deviation; --baseline is then the control's mean."),
    split: str | None = SplitOpt,
    fmt: str = FormatTableJsonOpt,
) -> None:
    """How many units per arm, in total, and how many days a test needs to detect --mde.

    Two-sided z-test power analysis (statsmodels NormalIndPower; for rates with Cohen's h). With
    --daily-units it also says the smallest effect a test of 7, 14 and 28 days (or --days) can detect.
    """
    from vrec.base.records import json_safe
    from vrec.experiments.ab import plan
    from vrec.report.render import new_table

    check_format(fmt, ("table", "json"))
    p = plan(baseline, mde, relative=relative, alpha=alpha, power=power, arms=arms, daily_units=daily_units, sd=sd,
             days=days or (), split=split)
    if fmt == "json":
        print(json.dumps(json_safe(p.__dict__), indent=2))
        return
    print_notes(p.notes)
    what = "rate" if p.kind == "proportion" else "mean"
    rel = f" ({_relative(p.relative_mde)})" if p.relative_mde == p.relative_mde else ""
    shares = "" if len(set(p.shares)) == 1 else ", split " + "/".join(f"{s * 100:.4g}" for s in p.shares)
    t = new_table(f"Sample size: {what} {p.baseline:g} → {p.baseline + p.mde:g}{rel}, "
                  f"alpha {p.alpha:g}, power {p.power:g}, {p.arms} arms{shares}")
    t.add_column("units per arm", justify="right")
    t.add_column("total units", justify="right")
    if p.days is not None:
        t.add_column("days", justify="right")
    t.add_row(_per_arm(p.arm_units), f"{p.total_units:,}", *([f"{p.days:,}"] if p.days is not None else []))
    out.print(t)
    if p.detectable:
        d = new_table(f"Smallest detectable effect at {p.daily_units:,} units a day")
        for c in ("days", "units per arm", "absolute", "relative"):
            d.add_column(c, justify="right")
        for row in p.detectable:
            ok, rok = row["mde"] == row["mde"], row["relative_mde"] == row["relative_mde"]
            d.add_row(str(row["days"]), _per_arm(row["arm_units"]), f"{row['mde']:.4g}" if ok else "—",
                      _relative(row["relative_mde"]) if rok else "—")
        out.print(d)


def _per_arm(units: list[int]) -> str:
    """'8,156' when every arm holds as many units, else each arm's: '14,680 / 1,632'."""
    return f"{units[0]:,}" if len(set(units)) == 1 else " / ".join(f"{u:,}" for u in units)


def _relative(v: float) -> str:
    """+25.0%, or three significant digits for a small effect (+0.00328%), never a bare +0.0%."""
    return f"{v:+.1%}" if abs(v) >= 0.001 else f"{v * 100:+.3g}%"


@ab_app.command("arms")
def arms_cmd(
    arms: str = ArmsOpt,
    k: int = typer.Option(20, "--k", "-k", help="Neighbours per item in each arm's list."),
    filter: list[str] | None = FilterOpt,
    label: str | None = typer.Option(None, "--label", help="Metadata column (e.g. articleType): overlap per "
                                        "label value."),
    out_path: str | None = typer.Option(None, "--out", help="Write the table (arm, item, rank, neighbour, score) "
                                           "to a .parquet or .csv file."),
    fmt: str = FormatTableJsonOpt,
    store: str | None = StoreOpt,
) -> None:
    """Each arm's "similar items" table, how different the arms' lists are (overlap@k), and what each
    does beyond accuracy: catalog coverage@k, in-degree Gini@k (and its most over-recommended items),
    intra-list diversity@k (and distinct --label values per list).

    The lists are vrec's own (the table 'vrec neighbours' writes), one per arm's model. If the arms
    barely differ (mean overlap@k of 0.8 or more), a warning says so before anyone runs a test.
    """
    from vrec.experiments.ab import arms_to_dict, build_arms
    from vrec.report.beyond_report import beyond_table, hubs_table
    from vrec.report.render import new_table

    check_format(fmt, ("table", "json"))
    with err.status("finding each arm's neighbours"):
        res = build_arms(arms, k=k, filters=filter or (), label=label, store=store, out=out_path)
    print_notes(res.notes)
    if fmt == "json":
        print(json.dumps(arms_to_dict(res), indent=2))
    else:
        t = new_table(f"How different the arms are: overlap@{res.k} over {res.items:,} items "
                      "(share of neighbours both arms show)")
        t.add_column("arms", whole=True)
        t.add_column(f"mean overlap@{res.k}", justify="right")
        t.add_column("items with the same list", justify="right")
        for p in res.pairs:
            t.add_row(escape(f"{p['first']} vs {p['second']}"), f"{p['overlap']:.3f}", f"{p['identical_lists']:.1%}")
        out.print(t)
        if res.per_label is not None:
            pl = new_table(f"Mean overlap@{res.k} per {escape(res.label)}")
            for c in res.per_label.columns:
                pl.add_column(escape(str(c)), justify="left" if c == res.label else "right")
            for _, r in res.per_label.iterrows():
                pl.add_row(*[escape(str(r[c])) if c == res.label else (f"{r[c]:,}" if c == "items" else f"{r[c]:.3f}")
                             for c in res.per_label.columns])
            out.print(pl)
        out.print(beyond_table(res.beyond, "arm", res.k, res.label, res.arms[0]))
        if res.hubs:
            out.print(hubs_table(res.hubs, "arm"))
    _warn(res.warnings)
    if res.file:
        err.print(f"wrote {len(res.table):,} rows ({len(res.arms)} arms x {res.items:,} items x up to {res.k}) "
                  f"to {res.file}", highlight=False)


@ab_app.command("assign")
def assign_cmd(
    units: str = typer.Argument(..., metavar="UNITS", help="CSV or parquet of unit ids (users or sessions): column "
                                "'unit', else the first column (or --unit)."),
    experiment: str = typer.Option(..., "--experiment", "-e", help="Experiment name; it salts the hash, so each "
                                   "experiment splits units independently."),
    arms: str = ArmsOpt,
    split: str | None = SplitOpt,
    unit: str | None = typer.Option(None, "--unit", help="Column holding the unit ids."),
    out_path: str | None = typer.Option(None, "--out", help="Write unit,arm to a .csv or .parquet file "
                                           "\\[default: CSV on stdout]."),
) -> None:
    """Assign each unit to an arm: a deterministic, salted hash (sha256 of experiment and unit).

    The same unit always gets the same arm in the same experiment, on every run and machine, and
    vrec serve --experiment uses the same function. Counts per arm go to stderr.
    """
    import sys
    from pathlib import Path

    from vrec.base.errors import VrecError
    from vrec.base.files import atomic_path
    from vrec.base.records import csv_safe
    from vrec.experiments.ab_assign import assign_file, refuse_overwrite

    if out_path is not None and Path(out_path).suffix.lower() not in (".csv", ".parquet"):
        raise VrecError(f"Cannot write {out_path!r}: name the file .csv or .parquet.")
    if out_path is not None:
        refuse_overwrite(out_path, {"units file": units})
    table, counts = assign_file(units, experiment, arms, split, unit)
    if out_path is None:
        csv_safe(table).to_csv(sys.stdout, index=False)
    else:
        with atomic_path(out_path) as tmp:
            if out_path.lower().endswith(".parquet"):
                table.to_parquet(tmp, index=False)
            else:
                csv_safe(table).to_csv(tmp, index=False)
    total = sum(counts.values())
    err.print(f"experiment {escape(experiment)}: " + ", ".join(f"{escape(a)} {n:,} ({n / total:.1%})"
                                                               for a, n in counts.items())
              + (f"; wrote {escape(out_path)}" if out_path else ""), highlight=False)


@ab_app.command("analyze")
def analyze_cmd(
    events: str = typer.Argument(..., metavar="EVENTS", help="CSV or parquet: one row per unit, or per event "
                                 "(rows of a unit are summed)."),
    unit: str = typer.Option("unit", "--unit", help="Column of the unit of randomisation (user or session id)."),
    arm: str = typer.Option("arm", "--arm", help="Column of the arm."),
    metric: list[str] = typer.Option(..., "--metric", "-m", help="NAME=COLUMN (mean per unit, e.g. orders=orders) or "
                                     "NAME=NUM/DEN (a ratio, e.g. ctr=clicks/impressions, by the delta method); "
                                     "repeatable."),
    covariate: str | None = typer.Option(None, "--covariate", help="Pre-period column per unit for CUPED (e.g. "
                                            "clicks before the test): narrower intervals."),
    arms: str | None = typer.Option(None, "--arms", help="Arms in order, the first is the control \\[default: "
                                       "the data's arms, sorted]."),
    split: str | None = SplitOpt,
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level; 0.05 gives 95% intervals."),
    report: list[str] | None = typer.Option(None, "--report", help="Write a report: FILE.html, FILE.md (chart "
                                               "in FILE_charts/) or FILE.json; repeatable."),
    fmt: str = FormatTableJsonOpt,
) -> None:
    """Per-arm values, absolute and relative lifts with 95% intervals and p-values.

    Welch's t-test (statsmodels) per metric at the unit of randomisation: ratio metrics through the
    delta method, CUPED with --covariate. A sample-ratio-mismatch check (chi-square, scipy) warns
    loudly when the arms' sizes do not match the split.
    """
    from vrec.experiments.ab_analysis import LIFT_HEADER, analysis_to_dict, analyze, lift_rows
    from vrec.experiments.ab_assign import refuse_overwrite
    from vrec.report.ab_report import check_report, write_report
    from vrec.report.render import new_table

    check_format(fmt, ("table", "json"))
    for path in report or ():
        check_report(path)
        refuse_overwrite(path, {"events file": events}, option="--report")
    a = analyze(events, unit=unit, arm=arm, metrics=metric, covariate=covariate, arms=arms, split=split, alpha=alpha)
    print_notes(a.notes)
    if a.srm:
        _warn([a.srm_message])
    if fmt == "json":
        print(json.dumps(analysis_to_dict(a), indent=2))
    else:
        total = sum(a.units.values())
        level = 1 - a.alpha / (len(a.arms) - 1)
        t = new_table(f"{total:,} units ({', '.join(f'{escape(x)} {a.units[x]:,}' for x in a.arms)}); control "
                      f"{escape(a.control)}; {level:.0%} intervals" + (f"; CUPED with {escape(a.covariate)}"
                                                                        if a.covariate else ""))
        for h in LIFT_HEADER:
            t.add_column(h, justify="left" if h in ("metric", "arm") else "right", whole=h in ("metric", "arm"))
        for r, x in zip(lift_rows(a), a.lifts):
            cells = [escape(c) for c in r]
            if x.significant:
                cells[7] = f"[bold]{cells[7]}[/bold]"
            t.add_row(*cells)
        out.print(t)
        if not a.srm:
            err.print(f"sample ratio check passed (chi-square p = {a.srm_p:.3g})", highlight=False)
        cup = [x for x in a.lifts if x.cuped and x.arm == a.arms[1]]
        if cup:
            err.print("CUPED removed " + ", ".join(f"{escape(x.metric)} {x.variance_reduction:.0%}" for x in cup)
                      + " of the variance", highlight=False)
    for path in report or ():
        files = write_report(a, path)
        err.print(f"wrote {', '.join(files)}", highlight=False)
