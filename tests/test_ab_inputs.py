"""``vrec ab``'s inputs, hardened: every number a user gives the statistics is bounded and checked,
the detectable-effect table is right at every scale (checked against statsmodels), one parser takes
--split everywhere, a rate above 1 and values no real export holds are refused, and an output never
replaces an input."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from clihelp import fails, vrec

from vrec.experiments import ab, ab_analysis, ab_assign

SCALES = [10 ** e for e in range(3, 12)]  # daily units, 1e3 ... 1e11


# --- ab plan: inputs and the numbers ------------------------------------------------------------

@pytest.mark.parametrize("args, says", [
    (["--baseline", "0.04", "--mde", "1e-12"], "too small to detect"),
    (["--baseline", "0.04", "--mde", "1e-12", "--relative"], "too small to detect"),
    (["--baseline", "1.02", "--sd", "1e300", "--mde", "0.1"], "--sd must be between"),
    (["--baseline", "1e300", "--sd", "1", "--mde", "0.1"], "--baseline must be between"),
    (["--baseline", "5", "--sd", "1", "--mde", "1e300"], "--mde must be between"),
    (["--baseline", "5", "--sd", "1e15", "--mde", "1e-6"], "too small to detect"),
    (["--baseline", "0.04", "--mde", "0.01", "--daily-units", "1e20"], "--daily-units must be between"),
    (["--baseline", "0.04", "--mde", "0.01", "--daily-units", "100000000000000000000"], "--daily-units must be"),
    (["--baseline", "0.04", "--mde", "0.01", "--daily-units", "2.5"], "--daily-units must be a whole number"),
    (["--baseline", "0.04", "--mde", "0.01", "--arms", "1" + "0" * 400], "--arms"),
    (["--baseline", "0.5", "--mde", "0.1", "--alpha", "0.5", "--power", "0.5"], "--power must be above --alpha"),
    (["--baseline", "0.04", "--mde", "0.01", "--split", "1e308/1e308"], "--split"),
])
def test_plan_refuses_what_it_cannot_compute_in_one_sentence(args, says):
    fails("ab", "plan", *args, says=says)


def test_plan_at_the_edges_of_its_ranges_gives_numbers_not_nan():
    huge_effect = json.loads(vrec("ab", "plan", "--baseline", "1", "--sd", "1e-12", "--mde", "100",
                                  "--format", "json").stdout)
    assert huge_effect["units_per_arm"] == 2  # an arm needs two units to estimate its variance
    r = vrec("ab", "plan", "--baseline", "0", "--sd", "1", "--mde", "0.1", "--daily-units", "1e6")
    assert "nan" not in r.stdout.lower() and "1,570" in r.stdout  # a mean of 0 has no relative effect
    tiny = vrec("ab", "plan", "--baseline", "0.04", "--mde", "0.01", "--daily-units", "1e11")
    assert "+0.0%" not in tiny.stdout and "+0.00328%" in tiny.stdout  # a tiny relative effect keeps its digits


def _effect_size(p, row) -> float:
    """Cohen's h (rates) or d (means) of a row of the detectable-effect table."""
    from statsmodels.stats.proportion import proportion_effectsize

    if p.kind == "mean":
        return row["mde"] / p.sd
    return float(proportion_effectsize(p.baseline + row["mde"], p.baseline))


@pytest.mark.parametrize("kind", ["rate", "mean", "three arms 50/25/25"])
def test_detectable_effect_agrees_with_statsmodels_at_every_scale_and_horizon(kind):
    from statsmodels.stats.power import NormalIndPower

    solver = NormalIndPower()
    args = {"rate": dict(baseline=0.04, mde=0.01), "mean": dict(baseline=12.0, mde=0.5, sd=30.0),
            "three arms 50/25/25": dict(baseline=0.04, mde=0.01, arms=3, split="50/25/25")}[kind]
    for daily in SCALES:
        p = ab.plan(**args, daily_units=daily)
        assert [row["days"] for row in p.detectable] == [7, 14, 28]
        mdes = [row["mde"] for row in p.detectable]
        assert all(math.isfinite(m) and m > 0 for m in mdes) and mdes[0] > mdes[1] > mdes[2], (daily, mdes)
        for row in p.detectable:
            control, treatment = row["arm_units"][0], row["arm_units"][-1]
            assert control == pytest.approx(daily * row["days"] * p.shares[0], abs=1)
            es = _effect_size(p, row)
            ratio = treatment / control
            # statsmodels' power at that effect is the power asked for, and its own solver, asked for the
            # units that effect needs, returns the row's units
            assert solver.power(es, nobs1=control, alpha=p.comparison_alpha, ratio=ratio) == pytest.approx(0.8, abs=1e-6)
            n = solver.solve_power(effect_size=es, nobs1=None, alpha=p.comparison_alpha, power=0.8, ratio=ratio)
            assert n == pytest.approx(control, rel=1e-5), (daily, row)


def test_the_issues_detectable_effects_at_1e11_units_a_day():
    p = ab.plan(0.04, 0.01, daily_units=10 ** 11)
    assert [row["mde"] for row in p.detectable] == pytest.approx([1.31e-06, 9.28e-07, 6.56e-07], rel=3e-3)
    r = vrec("ab", "plan", "--baseline", "0.04", "--mde", "0.01", "--daily-units", "100000000000")
    assert "1.312e-06" in r.stdout and "9.28e-07" in r.stdout and "6.562e-07" in r.stdout
    assert "1.182e-06" not in r.stdout


def test_sample_size_agrees_with_statsmodels_for_unequal_splits():
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    even, skewed = ab.plan(0.05, 0.01), ab.plan(0.05, 0.01, split="90/10")
    assert even.arm_units == [even.units_per_arm] * 2 and skewed.shares == pytest.approx([0.9, 0.1])
    n = NormalIndPower().solve_power(proportion_effectsize(0.06, 0.05), alpha=0.05, power=0.8, ratio=1 / 9)
    assert skewed.arm_units[0] == pytest.approx(n, abs=1) and skewed.arm_units[1] == pytest.approx(n / 9, abs=1)
    assert skewed.total_units == sum(skewed.arm_units) > even.total_units
    r = vrec("ab", "plan", "--baseline", "0.05", "--mde", "0.01", "--split", "90/10")
    assert f"{skewed.arm_units[0]:,} / {skewed.arm_units[1]:,}" in r.stdout


# --- one --split parser --------------------------------------------------------------------------

@pytest.mark.parametrize("split, says", [
    ("1e308/1e308", "more than a number can hold"),
    ("1e309/1", "'1e309' is not a finite number"),
    ("nan/1", "'nan' is not a finite number"),
    ("inf/1", "'inf' is not a finite number"),
    ("-1/2", "'-1' is below 0"),
    ("0/100", "gives arm 1 no share"),
    ("50/abc", "'abc' is not a number"),
    ("50/", "empty share"),
    ("1/1e-9", "too small"),
])
def test_one_split_parser_refuses_bad_shares(split, says, tmp_path):
    with pytest.raises(ab.VrecError) as e:
        ab_assign.parse_split(split, 2)
    assert str(e.value).startswith(f"--split {split!r}") and says in str(e.value), str(e.value)
    units = tmp_path / "units.csv"
    units.write_text("unit\nu1\nu2\n")
    fails("ab", "assign", units, "-e", "x", "--split", split, says=says)


def test_split_is_refused_by_assign_analyze_and_plan_alike(tmp_path):
    units = tmp_path / "units.csv"
    pd.DataFrame({"unit": [f"u{i}" for i in range(20)]}).to_csv(units, index=False)
    events = tmp_path / "events.csv"
    pd.DataFrame({"unit": [f"u{i}" for i in range(20)], "arm": ["cnn", "siglip"] * 10,
                  "clicks": np.arange(20) % 3}).to_csv(events, index=False)
    for args in (["assign", units, "-e", "x"], ["analyze", events, "-m", "clicks"],
                 ["plan", "--baseline", "0.1", "--mde", "0.01"]):
        line = fails("ab", *args, "--split", "1e308/1e308", says="--split '1e308/1e308'")
        assert "more than a number can hold" in line
    assert ab_assign.parse_split("1e307/1e307", 2) == [0.5, 0.5]  # large but summable: normalised exactly
    assert ab_assign.parse_split("90%/10%", 2) == pytest.approx([0.9, 0.1])


def test_serve_refuses_a_bad_split_before_it_listens(shared_tiny_store):
    """A real `vrec serve` process: it used to start and then refuse every recommendation."""
    cmd = [sys.executable, "-c", "from vrec.cli import run; run()", "serve", "--store", str(shared_tiny_store),
           "--port", "0", "--experiment", "pilot", "--arms", "tiny-cnn,tiny-siglip", "--split", "1e308/1e308"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)  # the timeout only guards a hang
    assert r.returncode == 1 and "Traceback" not in r.stderr and "http://" not in r.stdout, r.stderr
    assert [line for line in r.stderr.splitlines() if line.startswith("Error:")][0].startswith("Error: --split")
    fails("serve", "--split", "50/50", "--store", shared_tiny_store, says="--experiment")


# --- ab analyze: data the statistics cannot use ---------------------------------------------------

def _events(tmp_path, **cols) -> str:
    n = len(next(iter(cols.values())))
    path = tmp_path / "events.csv"
    pd.DataFrame({"unit": [f"u{i}" for i in range(n)], "arm": ["cnn", "siglip"] * (n // 2), **cols}).to_csv(
        path, index=False)
    return path


def test_more_clicks_than_impressions_is_refused_naming_the_unit(tmp_path):
    clicks, imps = np.arange(40) % 3, np.arange(40) % 7 + 3
    clicks[5] = 9  # unit u5: 9 clicks for 8 impressions
    path = _events(tmp_path, clicks=clicks, impressions=imps)
    fails("ab", "analyze", path, "-m", "ctr=clicks/impressions", says="unit 'u5' has 9 clicks for 8 impressions")
    # per-event rows: a click row without its impression is fine when the unit's totals hold
    df = pd.read_csv(path)
    ok = pd.concat([df.assign(clicks=0), df.assign(impressions=0).assign(clicks=np.minimum(df.clicks, df.impressions))])
    ok.to_csv(tmp_path / "ok.csv", index=False)
    vrec("ab", "analyze", tmp_path / "ok.csv", "-m", "ctr=clicks/impressions")
    # a ratio that is not a rate (revenue per order) may exceed 1
    rev = _events(tmp_path, revenue=np.arange(40) * 10.0 + 5, orders=np.arange(40) % 3 + 1)
    vrec("ab", "analyze", rev, "-m", "aov=revenue/orders")


@pytest.mark.parametrize("cols, says", [
    ({"clicks": [1e300, 2e300] * 10, "impressions": [3e300] * 20}, "1e+300"),
    ({"orders": [1.7e308, 1.0] * 10}, "1.7e+308"),
    ({"orders": [-2e16, 1.0] * 10}, "-2e+16"),
])
def test_values_no_export_holds_are_refused(tmp_path, cols, says):
    metric = "ctr=clicks/impressions" if "clicks" in cols else "orders"
    line = fails("ab", "analyze", _events(tmp_path, **cols), "-m", metric, says=says)
    assert "unit 'u0'" in line and "10^15" in line


def test_tiny_values_are_tested_like_their_scaled_copies():
    rng = np.random.default_rng(11)
    c, t = rng.poisson(3.0, 300).astype(float), rng.poisson(3.4, 300).astype(float)
    plain = ab_analysis.compare_means(c, t)
    tiny = ab_analysis.compare_means(c * 1e-300, t * 1e-300)
    assert tiny["p"] == pytest.approx(plain["p"], rel=1e-9) and tiny["rel"] == pytest.approx(plain["rel"])
    assert tiny["ci"][0] == pytest.approx(plain["ci"][0] * 1e-300, rel=1e-9)


# --- outputs never replace inputs ----------------------------------------------------------------

def test_assign_refuses_to_write_over_its_input(tmp_path):
    units = tmp_path / "units.csv"
    pd.DataFrame({"unit": [f"u{i}" for i in range(50)], "country": "de"}).to_csv(units, index=False)
    before = units.read_bytes()
    fails("ab", "assign", units, "-e", "x", "--out", units, says="is the units file")
    os.link(units, tmp_path / "hard.csv")
    os.symlink(units, tmp_path / "soft.csv")
    fails("ab", "assign", units, "-e", "x", "--out", tmp_path / "hard.csv", says="is the units file")
    fails("ab", "assign", tmp_path / "soft.csv", "-e", "x", "--out", units, says="is the units file")
    assert units.read_bytes() == before
    vrec("ab", "assign", units, "-e", "x", "--out", tmp_path / "arms.csv")
    assert pd.read_csv(tmp_path / "arms.csv").columns.tolist() == ["unit", "arm"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # written atomically


def test_analyze_refuses_a_report_over_its_events_file(tmp_path):
    events = tmp_path / "events.json"  # read as CSV whatever its name
    pd.DataFrame({"unit": [f"u{i}" for i in range(20)], "arm": ["cnn", "siglip"] * 10,
                  "clicks": np.arange(20) % 3}).to_csv(events, index=False)
    before = events.read_bytes()
    fails("ab", "analyze", events, "-m", "clicks", "--report", events, says="is the events file")
    assert events.read_bytes() == before
