"""``vrec ab``: the statistics against simulations with known truths and against the libraries' own
results, the assignment's determinism and balance, the arms' tables, exposure logging, and clear
errors for bad input."""
from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest
from clihelp import fails, vrec
from conftest import handmade_store

from vrec.base.errors import VrecError
from vrec.experiments import ab, ab_analysis, ab_assign

TRUE_CTR = 0.05
TRUE_LIFT = 0.10  # relative


def simulated_ctr(sims: int, units: int, lift: float, seed: int):
    """``sims`` experiments at once: impressions and clicks per unit, two arms of ``units`` each.

    Each unit has its own click propensity (mean 1), so clicks are over-dispersed as in real data;
    the treatment multiplies every unit's click probability by (1 + lift), so the true CTR lift is
    exactly TRUE_CTR * lift in absolute terms."""
    rng = np.random.default_rng(seed)
    shape = (sims, 2, units)
    impressions = rng.poisson(20, shape) + 1
    propensity = rng.gamma(2.0, 0.5, shape)
    p = TRUE_CTR * propensity * np.array([1.0, 1.0 + lift])[None, :, None]
    clicks = rng.binomial(impressions, np.minimum(p, 1.0))
    return impressions, clicks


def frame(impressions, clicks, arms=("cnn", "siglip")) -> pd.DataFrame:
    n = impressions.shape[1]
    return pd.DataFrame({"unit": [f"u{i}" for i in range(2 * n)], "arm": np.repeat(arms, n),
                         "impressions": impressions.ravel(), "clicks": clicks.ravel()})


# --- the statistics ------------------------------------------------------------------------------

def test_interval_covers_a_known_ratio_lift_in_about_95_percent_of_experiments():
    imp, clk = simulated_ctr(200, 400, TRUE_LIFT, seed=1)
    truth = TRUE_CTR * TRUE_LIFT
    covered_abs = covered_rel = 0
    for s in range(200):
        a = ab_analysis.analyze(frame(imp[s], clk[s]), metrics=["ctr=clicks/impressions"])
        x = a.lifts[0]
        covered_abs += x.abs_ci[0] <= truth <= x.abs_ci[1]
        covered_rel += x.rel_ci[0] <= TRUE_LIFT <= x.rel_ci[1]
    assert 0.90 <= covered_abs / 200 <= 0.99
    assert 0.90 <= covered_rel / 200 <= 0.99


def test_per_unit_mean_interval_covers_the_truth_too():
    rng = np.random.default_rng(2)
    c = rng.exponential(10.0, (200, 300))  # revenue-like, skewed
    t = rng.exponential(10.0, (200, 300)) + 1.0  # true lift +1.0
    covered = sum(ab_analysis.compare_means(c[s], t[s])["ci"][0] <= 1.0 <= ab_analysis.compare_means(c[s], t[s])["ci"][1]
                  for s in range(200))
    assert 0.90 <= covered / 200 <= 0.99


def test_a_a_experiments_reject_at_about_alpha():
    imp, clk = simulated_ctr(400, 300, 0.0, seed=3)
    rejected = 0
    for s in range(400):
        yc, _ = ab_analysis.linearize(clk[s, 0], imp[s, 0])
        yt, _ = ab_analysis.linearize(clk[s, 1], imp[s, 1])
        rejected += ab_analysis.compare_means(yc, yt)["p"] < 0.05
    assert 0.02 <= rejected / 400 <= 0.09  # alpha 0.05; binomial sd over 400 runs is 0.011


def test_sample_ratio_mismatch_flagged_at_48_52_of_100000_units():
    n = 100_000
    arm = np.where(np.arange(n) < 48_000, "cnn", "siglip")
    df = pd.DataFrame({"unit": np.arange(n).astype(str), "arm": arm, "clicks": np.ones(n) + (np.arange(n) % 3)})
    a = ab_analysis.analyze(df, metrics=["clicks"])
    assert a.srm and a.srm_p < 1e-10
    assert "SAMPLE RATIO MISMATCH" in a.srm_message and "48.0%" in a.srm_message
    # the hash's own 50/50 assignment of the same number of units is not flagged
    df["arm"] = ab_assign.assign_many(df["unit"], "srm-check")
    assert not ab_analysis.analyze(df, metrics=["clicks"]).srm


def test_srm_is_loud_on_the_command_line(tmp_path):
    n = 100_000
    path = tmp_path / "events.csv"
    pd.DataFrame({"unit": np.arange(n), "arm": np.where(np.arange(n) < 48_000, "cnn", "siglip"),
                  "clicks": np.arange(n) % 4}).to_csv(path, index=False)
    r = vrec("ab", "analyze", path, "--metric", "clicks")
    assert "WARNING" in r.stderr and "SAMPLE RATIO MISMATCH" in r.stderr


def test_results_equal_statsmodels_and_scipy_on_the_same_data():
    from scipy import stats
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    rng = np.random.default_rng(4)
    c, t = rng.poisson(3.0, 500).astype(float), rng.poisson(3.3, 450).astype(float)
    df = pd.DataFrame({"unit": range(950), "arm": ["a"] * 500 + ["b"] * 450, "orders": np.concatenate([c, t])})
    x = ab_analysis.analyze(df, metrics=["orders"]).lifts[0]
    cm = CompareMeans(DescrStatsW(t), DescrStatsW(c))
    lo, hi = cm.tconfint_diff(alpha=0.05, usevar="unequal")
    assert x.abs_ci == pytest.approx((lo, hi), rel=1e-12)
    assert x.p_value == pytest.approx(cm.ttest_ind(usevar="unequal")[1], rel=1e-12)
    assert x.p_value == pytest.approx(stats.ttest_ind(t, c, equal_var=False).pvalue, rel=1e-9)
    assert x.abs_lift == pytest.approx(t.mean() - c.mean())
    assert x.value == pytest.approx(t.mean()) and x.control_value == pytest.approx(c.mean())


def test_ratio_metric_is_the_delta_method_at_the_unit():
    rng = np.random.default_rng(5)
    den = rng.poisson(10, 800) + 1.0
    num = rng.binomial(den.astype(int), 0.1).astype(float)
    y, r = ab_analysis.linearize(num, den)
    assert y.mean() == pytest.approx(num.sum() / den.sum()) and r == pytest.approx(num.sum() / den.sum())
    # the textbook delta-method variance of sum(num)/sum(den) (Deng et al. 2018)
    n, md = len(num), den.mean()
    cov = np.cov(num, den, ddof=1)
    textbook = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (n * md * md)
    assert y.var(ddof=1) / n == pytest.approx(textbook, rel=1e-9)


def test_plan_equals_statsmodels_power_analysis():
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    p = ab.plan(0.05, 0.01, daily_units=2000)
    n = NormalIndPower().solve_power(proportion_effectsize(0.06, 0.05), alpha=0.05, power=0.8, ratio=1.0)
    assert p.units_per_arm == int(np.ceil(n)) and p.total_units == 2 * p.units_per_arm
    assert p.days == int(np.ceil(p.total_units / 2000))
    assert 8000 < p.units_per_arm < 8300  # the classic 5% -> 6% answer
    rel = ab.plan(0.05, 0.2, relative=True)
    assert rel.units_per_arm == p.units_per_arm  # +20% of 5% is the same 1 point
    # the detectable effect at the planned size is the effect planned for
    back = ab.plan(0.05, 0.01, daily_units=p.total_units, days=[1])
    assert back.detectable[0]["mde"] == pytest.approx(0.01, rel=1e-3)
    three = ab.plan(0.05, 0.01, arms=3)
    assert three.units_per_arm > p.units_per_arm and three.comparison_alpha == pytest.approx(0.025)
    mean = ab.plan(10.0, 0.5, sd=20.0)
    assert mean.units_per_arm == int(np.ceil(NormalIndPower().solve_power(0.5 / 20.0, alpha=0.05, power=0.8)))


def test_cuped_narrows_the_interval_when_the_covariate_correlates():
    rng = np.random.default_rng(6)
    n = 4000
    habit = rng.gamma(1.0, 3.0, n)
    arm = np.repeat(["cnn", "siglip"], n // 2)
    clicks = rng.poisson(habit * np.where(arm == "siglip", 1.1, 1.0))
    df = pd.DataFrame({"unit": range(n), "arm": arm, "clicks": clicks, "pre": rng.poisson(4 * habit),
                       "noise": rng.poisson(2.0, n)})
    plain = ab_analysis.analyze(df, metrics=["clicks"]).lifts[0]
    adjusted = ab_analysis.analyze(df, metrics=["clicks"], covariate="pre").lifts[0]
    useless = ab_analysis.analyze(df, metrics=["clicks"], covariate="noise").lifts[0]
    width = lambda x: x.abs_ci[1] - x.abs_ci[0]  # noqa: E731
    assert width(adjusted) < 0.85 * width(plain)
    assert adjusted.variance_reduction > 0.25 and adjusted.cuped
    assert width(useless) == pytest.approx(width(plain), rel=0.03)
    assert adjusted.raw_value == pytest.approx(plain.value)


def test_per_event_rows_are_summed_per_unit():
    imp, clk = simulated_ctr(1, 200, TRUE_LIFT, seed=7)
    units = frame(imp[0], clk[0])
    events = pd.concat([units.assign(impressions=units.impressions // 2, clicks=units.clicks // 2),
                        units.assign(impressions=units.impressions - units.impressions // 2,
                                     clicks=units.clicks - units.clicks // 2)]).sample(frac=1, random_state=0)
    a, b = ab_analysis.analyze(units, metrics=["ctr=clicks/impressions"]), ab_analysis.analyze(events, metrics=["ctr=clicks/impressions"])
    assert b.events == 800 and b.units == a.units
    assert b.lifts[0].abs_ci == pytest.approx(a.lifts[0].abs_ci)
    assert any("aggregated" in n for n in b.notes)


def test_three_arms_are_each_compared_with_the_control_bonferroni():
    rng = np.random.default_rng(8)
    df = pd.DataFrame({"unit": range(3000), "arm": np.repeat(["cnn", "siglip", "siglip-256"], 1000),
                       "orders": rng.poisson(1.0, 3000)})
    a = ab_analysis.analyze(df, metrics=["orders"], arms="cnn,siglip,siglip-256", split="34/33/33")
    assert [x.arm for x in a.lifts] == ["siglip", "siglip-256"] and a.control == "cnn" and a.adjusted
    two = ab_analysis.analyze(df[df.arm != "siglip-256"], metrics=["orders"]).lifts[0]
    assert a.lifts[0].p_value == pytest.approx(min(1.0, 2 * two.p_value))
    assert a.lifts[0].abs_ci[1] - a.lifts[0].abs_ci[0] > two.abs_ci[1] - two.abs_ci[0]


# --- assignment ----------------------------------------------------------------------------------

def test_assignment_is_deterministic_balanced_and_independent_across_experiments():
    units = [f"user-{i}" for i in range(100_000)]
    first = ab_assign.assign_many(units, "exp-a")
    assert (first == ab_assign.assign_many(units, "exp-a")).all()
    share = (first == "siglip").mean()
    assert abs(share - 0.5) < 0.01
    other = ab_assign.assign_many(units, "exp-b")
    # independent: a unit's arm in one experiment says nothing about its arm in another
    both = pd.crosstab(first, other).to_numpy() / len(units)
    assert np.abs(both - 0.25).max() < 0.01
    from scipy.stats import chi2_contingency
    assert chi2_contingency(pd.crosstab(first, other)).pvalue > 0.001
    # stable across machines and Python versions: sha256, pinned
    assert ab_assign.bucket("user-1", "exp-a") == pytest.approx(
        int.from_bytes(__import__("hashlib").sha256(b"exp-a\x00user-1").digest()[:8], "big") / 2 ** 64)
    assert [ab_assign.assign(f"user-{i}", "exp-a") for i in range(6)] == list(first[:6])


def test_three_arm_split_is_balanced_to_its_shares():
    units = [f"s{i}" for i in range(100_000)]
    got = pd.Series(ab_assign.assign_many(units, "three", "cnn,siglip,siglip-256", "50/25/25")).value_counts(normalize=True)
    assert got["cnn"] == pytest.approx(0.5, abs=0.01) and got["siglip"] == pytest.approx(0.25, abs=0.01)
    assert got["siglip-256"] == pytest.approx(0.25, abs=0.01)


def test_assign_command_writes_the_same_arms_every_run(tmp_path):
    units = tmp_path / "units.csv"
    pd.DataFrame({"user_id": [f"u{i}" for i in range(500)], "country": "de"}).to_csv(units, index=False)
    r1 = vrec("ab", "assign", units, "--experiment", "pilot", "--unit", "user_id")
    r2 = vrec("ab", "assign", units, "--experiment", "pilot", "--unit", "user_id")
    assert r1.stdout == r2.stdout and r1.stdout.startswith("user_id,arm")
    rows = pd.read_csv(__import__("io").StringIO(r1.stdout))
    assert list(rows["arm"]) == list(ab_assign.assign_many(rows["user_id"], "pilot"))
    assert "cnn" in r1.stderr and "siglip" in r1.stderr
    vrec("ab", "assign", units, "-e", "pilot", "--unit", "user_id", "--out", tmp_path / "arms.parquet")
    assert pd.read_parquet(tmp_path / "arms.parquet")["arm"].tolist() == rows["arm"].tolist()
    fails("ab", "assign", units, "-e", "pilot", "--split", "50/30/20", says="3 shares for 2 arms")
    fails("ab", "assign", units, "-e", "pilot", "--arms", "cnn", says="at least two arms")
    fails("ab", "assign", units, "-e", " ", says="experiment a name")
    fails("ab", "assign", units, "-e", "p", "--unit", "user", says="No column 'user'")


# --- bad input ----------------------------------------------------------------------------------

@pytest.fixture
def events(tmp_path):
    path = tmp_path / "events.csv"
    pd.DataFrame({"user": [f"u{i}" for i in range(40)], "arm": ["cnn", "siglip"] * 20,
                  "impressions": np.arange(40) % 7 + 2, "clicks": np.arange(40) % 3}).to_csv(path, index=False)
    return path


def test_bad_events_give_one_clear_error(events, tmp_path):
    fails("ab", "analyze", events, "--unit", "user", "--metric", "ctr=clicks/views", says="No column 'views'")
    fails("ab", "analyze", events, "--metric", "clicks", says="No column 'unit'")
    df = pd.read_csv(events)
    one = tmp_path / "one.csv"
    df.assign(arm="cnn").to_csv(one, index=False)
    fails("ab", "analyze", one, "--unit", "user", "--metric", "clicks", says="only one arm")
    neg = tmp_path / "neg.csv"
    df.assign(clicks=df.clicks.where(df.index != 3, -2)).to_csv(neg, index=False)
    fails("ab", "analyze", neg, "--unit", "user", "--metric", "ctr=clicks/impressions", says="negative counts")
    text = tmp_path / "text.csv"
    df.assign(clicks=df.clicks.astype(str).where(df.index != 5, "many")).to_csv(text, index=False)
    fails("ab", "analyze", text, "--unit", "user", "--metric", "clicks", says="not a number")
    fails("ab", "analyze", events, "--unit", "user", "--metric", "ctr=clicks/", says="NAME=NUMERATOR/DENOMINATOR")
    fails("ab", "analyze", tmp_path / "missing.csv", "--metric", "clicks", says="does not exist")
    fails("ab", "analyze", events, "--unit", "user", "--metric", "clicks", "--report", tmp_path / "r.pdf",
          says="Unknown report type")
    fails("ab", "analyze", events, "--unit", "user", "--metric", "clicks", "--alpha", "2", says="--alpha")
    fails("ab", "analyze", events, "--unit", "user", "--metric", "clicks", "--arms", "cnn,bert", says="'bert'")
    mixed = tmp_path / "mixed.csv"
    pd.concat([df, df.head(1).assign(arm="siglip")]).to_csv(mixed, index=False)
    fails("ab", "analyze", mixed, "--unit", "user", "--metric", "clicks", says="more than one arm")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    fails("ab", "analyze", empty, "--metric", "clicks", says="empty")


def test_plan_command_and_its_errors():
    r = vrec("ab", "plan", "--baseline", "0.04", "--mde", "0.1", "--relative", "--daily-units", "5000")
    assert "units per arm" in r.stdout and "39,455" in r.stdout and "Smallest detectable effect" in r.stdout
    data = json.loads(vrec("ab", "plan", "--baseline", "0.04", "--mde", "0.004", "--format", "json").stdout)
    assert data["units_per_arm"] == 39455
    fails("ab", "plan", "--baseline", "1.5", "--mde", "0.01", says="--baseline must be between")
    fails("ab", "plan", "--baseline", "0.9", "--mde", "0.2", says="stays below 1")
    fails("ab", "plan", "--baseline", "0.1", "--mde", "0", says="--mde")
    fails("ab", "plan", "--baseline", "0.1", "--mde", "0.01", "--arms", "1", says="--arms")
    fails("ab", "plan", "--baseline", "0.1", "--mde", "0.01", "--power", "nan", says="--power")


# --- reports -------------------------------------------------------------------------------------

def test_reports_hold_the_lifts_and_a_chart(events, tmp_path):
    r = vrec("ab", "analyze", events, "--unit", "user", "--metric", "ctr=clicks/impressions", "--metric", "clicks",
             "--report", tmp_path / "r.html", "--report", tmp_path / "r.md", "--report", tmp_path / "r.json")
    assert "ctr" in r.stdout and "rel. lift" in r.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    assert [x["metric"] for x in data["lifts"]] == ["ctr", "clicks"] and data["srm"]["mismatch"] is False
    assert len(data["lifts"][0]["abs_ci"]) == 2 and data["control"] == "cnn"
    page = (tmp_path / "r.html").read_text()
    assert "<svg" in page and "Relative lift against cnn" in page and "ctr · siglip" in page
    md = (tmp_path / "r.md").read_text()
    assert "| ctr | siglip |" in md and "r_charts/lifts.svg" in md
    assert (tmp_path / "r_charts" / "lifts.svg").read_text().startswith("<svg")


def test_example_events_file_shows_its_known_effect():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "events.csv"
    a = ab_analysis.analyze(path, unit="user", metrics=["ctr=clicks/impressions"], covariate="pre_clicks")
    x = a.lifts[0]
    assert x.rel_ci[0] <= 0.10 <= x.rel_ci[1] and x.significant and not a.srm


# --- arms and exposures --------------------------------------------------------------------------

def test_arms_table_and_overlap(shared_tiny_store, tmp_path):
    out = tmp_path / "arms.parquet"
    res = ab.build_arms("tiny-cnn,tiny-siglip", k=5, label="category", store=shared_tiny_store, out=out)
    table = pd.read_parquet(out)
    assert list(table.columns) == ["arm", "item", "rank", "neighbour", "score"]
    assert set(table["arm"]) == {"tiny-cnn", "tiny-siglip"} and table.groupby(["arm", "item"]).size().max() == 5
    assert 0.0 <= res.overlap <= 1.0 and res.per_label is not None and "items" in res.per_label.columns
    # the lists are exactly what vrec neighbours writes
    vrec("neighbours", tmp_path / "n.parquet", "--model", "tiny-cnn", "--k", "5", "--store", shared_tiny_store)
    own = pd.read_parquet(tmp_path / "n.parquet")
    mine = table[table.arm == "tiny-cnn"].drop(columns="arm").reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, own, check_dtype=False)
    r = vrec("ab", "arms", "--arms", "tiny-cnn,tiny-siglip", "--k", "5", "--label", "category", "--store",
             shared_tiny_store, "--out", tmp_path / "arms.csv")
    assert "mean overlap@5" in r.stdout and "category" in r.stdout and (tmp_path / "arms.csv").is_file()


def test_arms_that_barely_differ_are_called_out(tmp_path):
    rng = np.random.default_rng(0)
    v = rng.normal(size=(30, 8))
    store = handmade_store(tmp_path / "s", {"old": v, "new": v + 1e-4 * rng.normal(size=v.shape)})
    r = vrec("ab", "arms", "--arms", "old,new", "--k", "5", "--store", store)
    assert "WARNING" in r.stderr and "barely differ" in r.stderr
    fails("ab", "arms", "--arms", "old,bert", "--store", store, says="'bert'")
    fails("ab", "arms", "--arms", "old,old", "--store", store, says="named twice")


def test_exposures_are_logged_one_whole_line_each(shared_tiny_store, tmp_path):
    log = tmp_path / "logs" / "exposures.jsonl"
    exp = ab.Experiment("pilot", "tiny-cnn,tiny-siglip", store=shared_tiny_store, exposure_log=log, k=4)
    from vrec.store.catalog_table import catalog_table
    from vrec.store.store import Store

    st = Store(shared_tiny_store)
    item = catalog_table(st, st.model("tiny-cnn"))["id"].iloc[0]
    got = exp.recommend(item, "user-7")
    assert got["arm"] == ab_assign.assign("user-7", "pilot", "tiny-cnn,tiny-siglip") and len(got["shown"]) == 4
    assert item not in got["shown"]

    def hammer(i):
        for j in range(25):
            ab.append_jsonl(log, {"time": "t", "experiment": "pilot", "unit": f"u{i}", "arm": "x", "item": "y",
                                  "shown": [f"item-{j}"] * 50})

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = ab.read_exposures(log)
    assert len(lines) == 101
    first = lines[0]
    assert set(first) >= {"time", "experiment", "unit", "arm", "item", "shown"}
    assert first["unit"] == "user-7" and first["shown"] == got["shown"] and first["experiment"] == "pilot"
    with pytest.raises(VrecError, match="unit"):
        exp.recommend(item, " ")
    with pytest.raises(VrecError, match="No item .* in the catalog"):  # a path is never read from a request
        exp.recommend(str(__import__("conftest").SAMPLE / "catalog.csv"), "user-7")
    with pytest.raises(VrecError, match="folder"):
        ab.append_jsonl(tmp_path, {"a": 1})


@pytest.mark.parametrize("command", [["ab"], ["ab", "plan"], ["ab", "arms"], ["ab", "assign"], ["ab", "analyze"],
                                     ["cost"]])
def test_every_command_has_help(command):
    r = vrec(*command, "--help")
    assert "Usage" in r.stdout and "--help" in r.stdout


# --- the pilot in vrec serve ---------------------------------------------------------------------

def test_serve_recommends_the_units_arm_and_logs_the_exposure(shared_tiny_store, tmp_path):
    from fastapi.testclient import TestClient

    from vrec.serve.app import create_app

    log = tmp_path / "exposures.jsonl"
    arms = "tiny-cnn,tiny-siglip"
    client = TestClient(create_app(shared_tiny_store, experiment="pilot", arms=arms, exposure_log=log))
    r = client.get("/api/recommend/bags/bag-tote-red", params={"unit": "user-7", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    arm = ab_assign.assign("user-7", "pilot", arms)
    assert body["arm"] == arm and body["model"] == arm and body["experiment"] == "pilot"
    assert body["item"] == "bags/bag-tote-red" and len(body["results"]) == 5
    assert body["shown"] == [x["id"] for x in body["results"]] and "bags/bag-tote-red" not in body["shown"]
    # what the arm's model recommends, exactly
    from vrec.search.query import search_image
    assert body["shown"] == search_image("bags/bag-tote-red", k=5, model=arm, store=shared_tiny_store).table["id"].tolist()
    seen = {client.get("/api/recommend/bag-tote-red", params={"unit": f"u{i}"}).json()["arm"] for i in range(12)}
    assert seen == {"tiny-cnn", "tiny-siglip"}  # both arms serve; the short id works as on the command line
    lines = ab.read_exposures(log)
    assert len(lines) == 13 and lines[0]["unit"] == "user-7" and lines[0]["shown"] == body["shown"]
    assert lines[0]["arm"] == arm and lines[0]["item"] == "bags/bag-tote-red" and lines[0]["time"]
    assert client.get("/api/recommend/bags/bag-tote-red").status_code == 400  # no unit
    missing = client.get("/api/recommend/no-such-item", params={"unit": "u1"})
    assert missing.status_code == 404 and missing.json()["error"].startswith("No item 'no-such-item' in the catalog")
    assert len(ab.read_exposures(log)) == 13  # failed requests log nothing


def test_serve_without_an_experiment_says_how_to_start_one(shared_tiny_store):
    from fastapi.testclient import TestClient

    from vrec.serve.app import create_app

    r = TestClient(create_app(shared_tiny_store)).get("/api/recommend/bags/bag-tote-red", params={"unit": "u1"})
    assert r.status_code == 400 and "--experiment" in r.json()["error"]
    fails("serve", "--arms", "tiny-cnn,tiny-siglip", "--store", shared_tiny_store, says="--experiment")
    fails("serve", "--experiment", "x", "--arms", "tiny-cnn,bert", "--store", shared_tiny_store, says="'bert'")
