"""Judging a fitted model honestly: proper scores by hand, naive forecasts by hand, the words that follow the
numbers, dispersion targets, and the scoring block's refusal of seeds that would reuse the fitting streams.

Contract (flowsim/experiment/scores.py, flowsim/calibration/validation.py): CRPS of an ensemble is the CRPS of
its empirical CDF, CRPS of a normal its closed form; the interval score is Gneiting-Raftery's; naive forecasts
use the observed series alone and never the observation they forecast; skill = 1 - MAE_model / MAE_naive; the
verdict says "beats" only when the naive MAE lies outside the model's bootstrap 95% interval.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import integrate, stats

from flowsim import ScenarioError, load_scenario, simulate
from flowsim.calibration.calibrate import Target, calibrate, load_problem, simulated_values
from flowsim.calibration.validation import naive_forecasts, period_start, score_table, summarise_scores
from flowsim.experiment.scores import (
    coverage_tolerance,
    crps_ensemble,
    crps_normal,
    interval_score,
    normal_interval,
    prediction_interval,
)

HERE = Path(__file__).resolve().parent / "calibration"


def target(**kw: Any) -> Target:
    return Target(**{"source": "test", "kind": "period_sum", "column": "delayed_midnight", **kw})


# ================================================================================= proper scores by hand


def crps_by_integral(cdf: Any, y: float, lo: float, hi: float, breaks: list[float]) -> float:
    """CRPS(F, y) = integral of (F(x) - 1{x >= y})^2 dx, by quadrature (the definition)."""
    value, _ = integrate.quad(lambda x: (cdf(x) - (x >= y)) ** 2, lo, hi, points=breaks, limit=200)
    return float(value)


@pytest.mark.parametrize(("ensemble", "y", "expected"), [
    ([1.0, 3.0], 2.0, 0.5),                 # E|X-y| = 1, E|X-X'| = (0+2+2+0)/4 = 1
    ([0.0, 0.0, 4.0], 1.0, 7 / 9),          # E|X-y| = 5/3, E|X-X'| = 4*4/9 = 16/9
    ([5.0], 2.0, 3.0),                      # one member: the absolute error
    ([2.0, 2.0, 2.0], 2.0, 0.0),            # a point mass on the truth
])
def test_crps_ensemble_by_hand(ensemble: list[float], y: float, expected: float) -> None:
    assert crps_ensemble(ensemble, y) == pytest.approx(expected, abs=1e-12)
    a = np.sort(ensemble)

    def cdf(x: float) -> float:
        return float(np.searchsorted(a, x, side="right")) / len(a)

    breaks = sorted({*a.tolist(), y})
    assert crps_ensemble(ensemble, y) == pytest.approx(
        crps_by_integral(cdf, y, min(breaks) - 1, max(breaks) + 1, breaks), abs=1e-6)


def test_crps_ensemble_order_free_and_nan_safe() -> None:
    x = [4.0, 1.0, np.nan, 3.0]
    assert crps_ensemble(x, 2.0) == pytest.approx(crps_ensemble([1.0, 3.0, 4.0], 2.0))
    assert math.isnan(crps_ensemble([], 1.0))


@pytest.mark.parametrize(("mu", "sd", "y"), [(0.0, 1.0, 0.0), (10.0, 2.0, 13.5), (-3.0, 0.5, -5.0)])
def test_crps_normal_closed_form_against_the_definition(mu: float, sd: float, y: float) -> None:
    by_integral = crps_by_integral(lambda x: stats.norm.cdf(x, mu, sd), y, mu - 12 * sd, mu + 12 * sd, [y])
    assert crps_normal(mu, sd, y) == pytest.approx(by_integral, rel=1e-6)
    if y == mu:  # sd (2 phi(0) - 1/sqrt(pi)) = sd (sqrt(2/pi) - 1/sqrt(pi))
        assert crps_normal(mu, sd, y) == pytest.approx(sd * (math.sqrt(2 / math.pi) - 1 / math.sqrt(math.pi)))


def test_crps_normal_with_no_spread_is_the_absolute_error() -> None:
    assert crps_normal(5.0, 0.0, 2.0) == 3.0


def test_large_ensemble_crps_tends_to_the_normal_one() -> None:
    """An ensemble drawn from N(0, 1) scores (within sampling error) what the normal distribution scores."""
    x = stats.norm.ppf((np.arange(20_000) + 0.5) / 20_000)  # a deterministic 'sample'
    assert crps_ensemble(x, 0.7) == pytest.approx(crps_normal(0.0, 1.0, 0.7), rel=1e-3)


@pytest.mark.parametrize(("y", "expected"), [(15.0, 10.0), (5.0, 10.0 + 20 * 5), (22.0, 10.0 + 20 * 2),
                                             (10.0, 10.0), (20.0, 10.0)])
def test_interval_score_by_hand(y: float, expected: float) -> None:
    """90% interval [10, 20]: width 10, and 2/0.1 = 20 per unit outside."""
    assert interval_score(10.0, 20.0, y, 0.9) == pytest.approx(expected)


def test_interval_score_50pct_penalty() -> None:
    assert interval_score(0.0, 2.0, 3.0, 0.5) == pytest.approx(2.0 + 4.0 * 1.0)


def test_prediction_interval_is_the_spread_of_replications_not_the_ci_of_the_mean() -> None:
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert prediction_interval(x, 0.5) == (2.0, 4.0)           # quartiles (linear interpolation)
    assert prediction_interval(x, 0.9) == pytest.approx((1.2, 4.8))
    lo, hi = normal_interval(0.0, 1.0, 0.9)
    assert (lo, hi) == pytest.approx((-1.6448536, 1.6448536))


def test_coverage_tolerance_is_binomial() -> None:
    lo, hi = coverage_tolerance(100, 0.9, 0.99)
    assert (lo, hi) == (stats.binom.ppf(0.005, 100, 0.9), stats.binom.ppf(0.995, 100, 0.9))


# ================================================================================ naive forecasts by hand

QUARTERS = {"q1": ("2016/17 Q1", 1390.0), "q2": ("2016/17 Q2", 1376.0), "q3": ("2016/17 Q3", 1558.0),
            "q4": ("2016/17 Q4", 2271.0), "q4_last_year": ("2015/16 Q4", 2000.0)}


def rotherham_like() -> dict[str, Target]:
    targets = {tid: target(id=tid, period=p, value=v, rel_sd=0.1) for tid, (p, v) in QUARTERS.items()}
    targets["pct_sep"] = target(id="pct_sep", kind="period_ratio", column=None, numerator="a", denominator="b",
                                period="2016-09", value=3.27, rel_sd=0.2)
    targets["pct_jan"] = target(id="pct_jan", kind="period_ratio", column=None, numerator="a", denominator="b",
                                period="2017-01", value=4.1, rel_sd=0.2)
    targets["ic"] = Target(id="ic", kind="kpi", kpi="x", value=666, source="test")
    return targets


FIT = ["q1", "q2", "q3", "pct_sep", "ic"]


def test_period_start_reads_nhs_quarters_and_months() -> None:
    assert period_start("2016/17 Q4") == ("Q", pd.Timestamp("2017-01-01").date())
    assert period_start("2016/17 Q1") == ("Q", pd.Timestamp("2016-04-01").date())
    assert period_start("2017-03") == ("M", pd.Timestamp("2017-03-01").date())
    assert period_start("winter") is None


def test_naive_forecasts_of_the_held_out_quarter() -> None:
    t = rotherham_like()
    f = naive_forecasts(t["q4"], t, FIT)
    sd = float(np.std([1390, 1376, 1558], ddof=1))
    assert (f["persistence"].value, f["persistence"].basis) == (1558.0, "q3")
    assert (f["seasonal"].value, f["seasonal"].basis) == (2000.0, "q4_last_year")  # observed, though not fitted
    assert f["mean"].value == pytest.approx((1390 + 1376 + 1558) / 3)
    for m in f.values():
        assert m.sd == pytest.approx(sd)


def test_naive_forecast_never_uses_the_observation_it_forecasts() -> None:
    t = rotherham_like()
    q2 = naive_forecasts(t["q2"], t, FIT)
    assert q2["persistence"].value == 1390.0
    assert q2["mean"].value == pytest.approx((1390 + 1558) / 2)            # leave one out
    assert q2["mean"].sd == pytest.approx(float(np.std([1390, 1558], ddof=1)))
    q1 = naive_forecasts(t["q1"], t, FIT)
    assert "persistence" not in q1 and "seasonal" not in q1               # nothing fitted before Q1
    # a series with one fitted observation: that observation, with its stated uncertainty
    jan = naive_forecasts(t["pct_jan"], t, FIT)
    assert jan["persistence"].value == 3.27 and jan["persistence"].sd == pytest.approx(3.27 * 0.2)
    assert naive_forecasts(t["pct_sep"], t, FIT) == {}                     # its series has nothing else fitted
    assert naive_forecasts(t["ic"], t, FIT) == {}                          # a KPI is not a series


def scored(ensembles: dict[str, list[float]]) -> tuple[pd.DataFrame, dict[str, Any]]:
    t = rotherham_like()
    rows = [(t[i], "fitted") for i in ("q1", "q2", "q3")] + [(t["q4"], "held out")]
    sims = {k: np.asarray(v, dtype=float) for k, v in ensembles.items()}
    report = score_table(rows, t, FIT, fitting=sims, scoring=sims, bounds={k: (0.0, None) for k in sims})
    return report, summarise_scores(report, sims, seed=1)


def test_score_table_and_skill_by_hand() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, 40)
    noise = (noise - noise.mean()) / noise.std(ddof=1)  # mean exactly 0, sd exactly 1
    ens = {"q1": list(1390 + 50 * noise), "q2": list(1376 + 50 * noise), "q3": list(1558 + 50 * noise),
           "q4": list(1800 + 100 * noise)}
    report, summary = scored(ens)
    q4 = report.set_index("target").loc["q4"]
    assert q4["simulated"] == pytest.approx(1800)
    assert q4["error_pct"] == pytest.approx(100 * (1800 - 2271) / 2271)
    assert q4["naive_persistence_error_pct"] == pytest.approx(100 * (1558 - 2271) / 2271)
    assert q4["naive_seasonal_error_pct"] == pytest.approx(100 * (2000 - 2271) / 2271)
    assert q4["crps"] == pytest.approx(crps_ensemble(ens["q4"], 2271))
    sd = float(np.std([1390, 1376, 1558], ddof=1))
    assert q4["naive_mean_crps"] == pytest.approx(crps_normal((1390 + 1376 + 1558) / 3, sd, 2271))
    assert q4["pi90_high"] < 2271 and not q4["in_pi90"] and not q4["in_pi50"]
    held = summary["held out"]
    assert held["naive"]["persistence"]["skill"] == pytest.approx(1 - (2271 - 1800) / (2271 - 1558))
    assert held["naive"]["seasonal"]["skill"] == pytest.approx(1 - (2271 - 1800) / (2271 - 2000))
    assert held["coverage"]["pi90"] == {"inside": 0, "of": 1, "nominal": 0.9}
    # fitted: Q1 has no persistence forecast; Q2 and Q3 do (Q1 and Q2)
    fitted = summary["fitted"]
    assert fitted["naive"]["persistence"]["targets"] == ["q2", "q3"]
    assert fitted["model"]["mean_abs_error_pct"] == pytest.approx(0.0, abs=1e-9)


def test_words_follow_the_numbers() -> None:
    """Seasonal naive (12% off) beats a model 21% off whose interval is tight; persistence (31% off) loses
    to it; a model whose interval straddles a naive MAE is 'cannot be told apart'."""
    flat = [1800.0] * 20
    _, summary = scored({"q1": [1390.0] * 20, "q2": [1376.0] * 20, "q3": [1558.0] * 20, "q4": flat})
    verdicts = " ".join(summary["held out"]["verdicts"])
    assert "the naive 'seasonal naive (same period last year)' forecast beats the model" in verdicts
    assert "the model beats the naive 'persistence (last fitted period)' forecast" in verdicts
    wide = list(np.linspace(1000, 3000, 21))  # mean 2000: error 11.9%, the seasonal naive's exactly
    _, summary = scored({"q1": [1390.0] * 21, "q2": [1376.0] * 21, "q3": [1558.0] * 21, "q4": wide})
    assert any("cannot be told apart" in v and "seasonal" in v for v in summary["held out"]["verdicts"])


# ============================================================================== dispersion targets


def test_dispersion_target_by_hand() -> None:
    """Monthly sums 10, 20, 30 (one replication) and 20, 20, 20 (another): CV 10/20 = 0.5 and 0; SD 10 and 0."""
    dates = pd.date_range("2024-04-01", "2024-06-30", freq="D")
    per_day = {4: 10 / 30, 5: 20 / 31, 6: 30 / 30}
    d1 = pd.DataFrame({"date": dates.date, "delayed_midnight": [per_day[x.month] for x in dates]})
    d2 = pd.DataFrame({"date": dates.date, "delayed_midnight": [20 / {4: 30, 5: 31, 6: 30}[x.month] for x in dates]})
    months = ["2024-04", "2024-05", "2024-06"]
    cv = target(id="cv", kind="dispersion", periods=months, value=0.1)
    sd = target(id="sd", kind="dispersion", periods=months, statistic="sd", value=1.0)
    sims = simulated_values([cv, sd], [{}, {}], [d1, d2], 91)
    np.testing.assert_allclose(sims["cv"], [0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(sims["sd"], [10.0, 0.0], atol=1e-12)


def test_dispersion_needs_two_periods() -> None:
    with pytest.raises(Exception, match="at least two different periods"):
        target(id="cv", kind="dispersion", periods=["2024-04", "2024-04"], value=0.1)


def test_shipped_targets_carry_a_dispersion_of_the_fitted_quarters() -> None:
    root = Path(__file__).resolve().parents[1]
    prob = load_problem(root / "calibration" / "rotherham_2016.yaml")
    disp = [t for t in prob.targets.values() if t.kind == "dispersion"]
    assert disp, "the Rotherham targets include a dispersion"
    quarters = {t.period: t.value for t in prob.targets.values() if t.kind == "period_sum"}
    for t in disp:
        values = [quarters[p] for p in t.periods or []]
        assert t.value == pytest.approx(np.std(values, ddof=1) / np.mean(values), abs=5e-4), t
        assert t.id in prob.fit_ids


# ======================================================================= the scoring block in configurations


def config_with(tmp_path: Path, scoring: dict[str, Any], seed: int = 5) -> Path:
    text = (HERE / "small.yaml").read_text(encoding="utf-8")
    text = text.replace("scenario: two_month.yaml", f"scenario: {HERE / 'two_month.yaml'}")
    text = text.replace("targets: targets.yaml", f"targets: {HERE / 'targets.yaml'}")
    text = text.replace("seed: 5", f"seed: {seed}")
    path = tmp_path / "cal.yaml"
    path.write_text(text + yaml.safe_dump({"scoring": scoring}, default_flow_style=False), encoding="utf-8")
    return path


def test_scoring_seed_equal_to_the_fitting_seed_is_refused(tmp_path: Path) -> None:
    path = config_with(tmp_path, {"seed": 5, "replications": 30})
    with pytest.raises(ScenarioError) as info:
        load_problem(path)
    line = next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if "seed: 5" in ln and ln.startswith(" "))
    assert re.match(rf"{re.escape(str(path))}:{line}: scoring\.seed: .*must differ from the fitting seed \(5\)",
                    str(info.value)), str(info.value)


def test_scoring_needs_30_replications(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"scoring\.replications: .*30"):
        load_problem(config_with(tmp_path, {"seed": 9, "replications": 29}))


def test_scoring_defaults_to_the_next_seed_and_30_replications(tmp_path: Path) -> None:
    prob = load_problem(config_with(tmp_path, {}))
    assert (prob.config.scoring_seed, prob.config.scoring.replications) == (6, 30)
    prob = load_problem(config_with(tmp_path, {"seed": 77, "replications": 40}))
    assert (prob.config.scoring_seed, prob.config.scoring.replications) == (77, 40)


# ========================================================== escalation rules as free parameters (feedback)


def test_community_escalation_trigger_and_size_are_fitted(tmp_path: Path) -> None:
    """A `when:` rule's threshold and an action's size are scenario fields like any other: calibration searches
    them, the fitted scenario carries them, and they move the simulated delays (the feedback is identifiable):
    spot beds bought early and many cut P2 delays against a trigger that never fires."""
    res = calibrate(HERE / "escalation_calibration.yaml", tmp_path / "out", progress=False)
    ev = res.evaluations
    trigger, amount = "escalation.actions.0.when.any.0.above", "escalation.actions.0.amount"
    assert ev[trigger].nunique() > 1 and ev[amount].nunique() > 1
    assert {"z2_delayed_spread", "z2_p2_q1"} <= set(ev.columns)
    fitted = load_scenario(res.files["scenario"])
    action = fitted.escalation.actions[0]  # type: ignore[union-attr]
    assert action.amount == res.best[amount]
    assert action.when.any[0].above == res.best[trigger]  # type: ignore[union-attr]
    early = res.problem.build({trigger: 1, amount: 12})
    never = res.problem.build({trigger: 10_000, amount: 1})
    p2 = [res.problem.targets["p2_q1"]]
    means = []
    for sc in (early, never):
        run = simulate(sc, replications=10, seed=3, keep_patients=False, progress=False)
        sims = simulated_values(p2, [r.kpis for r in run.replications], [r.daily for r in run.replications],
                                sc.simulation.duration_days)
        means.append(sims["p2_q1"])
    diff = means[1] - means[0]  # common random numbers: paired
    lo = diff.mean() - stats.t.ppf(0.975, 9) * diff.std(ddof=1) / math.sqrt(10)
    assert lo > 0, (means, diff)


def test_level_shift_stress_test_is_set_up() -> None:
    """The level-shift configuration loads, fixes the Q1-Q3 capacities, runs to June 2017, frees one dated step in
    social-care capacity from 13.12.16 (a list element, reached by index), fits the winter and holds out
    April-June 2017 and Q1 2017/18 (values from the seeds)."""
    root = Path(__file__).resolve().parents[1]
    prob = load_problem(root / "calibration" / "rotherham_2016_level_shift.yaml")
    step = "pathways.P1.services.irr_reablement.capacity.periods.0.add"
    assert [p.path for p in prob.config.free] == [step]
    for add in (-30, 0, 20):
        sc = prob.build({step: add})
        cap = sc.pathways["P1"].services["irr_reablement"].capacity
        assert cap.base == 46 and cap.periods[0].add == add  # type: ignore[union-attr]
        assert str(cap.periods[0].start) == "2016-12-13"  # type: ignore[union-attr]
        assert sc.simulation.end_date.isoformat() in ("2017-06-30", "2017-07-01")
    assert {prob.targets[t].value for t in prob.held_ids} == {5.1, 5.9, 5.4, 2400}
    assert prob.targets["dtoc_q1_1718"].period == "2017/18 Q1" and "F3:4897-4899" in prob.targets["dtoc_q1_1718"].source
    assert prob.config.scoring_seed != prob.config.seed


# ======================================================================= issue 13 point 7: the seed series added


def test_period_mean_and_several_periods_by_hand() -> None:
    """period_mean is the mean of a daily column over the period's days; period_sum, period_mean and period_ratio
    read the days of several periods together (``periods``), e.g. the DTOC % "circa 3%" over Q1-Q3."""
    dates = ["2024-04-29", "2024-04-30", "2024-05-01", "2024-05-02", "2024-06-01"]
    d = pd.DataFrame({"date": pd.to_datetime(dates).date, "census": [1, 3, 10, 20, 100],
                      "num": [1, 1, 2, 2, 50], "den": [10, 10, 10, 10, 100]})
    targets = [
        target(id="apr", kind="period_mean", column="census", period="2024-04", value=2),
        target(id="apr_may", kind="period_mean", column="census", periods=["2024-04", "2024-05"], value=8),
        target(id="sum_apr_jun", kind="period_sum", column="census", periods=["2024-04", "2024-06"], value=100),
        target(id="pct_apr_may", kind="period_ratio", numerator="num", denominator="den",
               periods=["2024-04", "2024-05"], value=15),
    ]
    sims = simulated_values(targets, [{}], [d], 5)
    assert sims["apr"].tolist() == [2.0]
    assert sims["apr_may"].tolist() == [(1 + 3 + 10 + 20) / 4]
    assert sims["sum_apr_jun"].tolist() == [104.0]
    assert sims["pct_apr_may"].tolist() == [pytest.approx(100 * 6 / 40)]


@pytest.mark.parametrize(("kw", "words"), [
    ({"kind": "period_mean", "column": "c"}, "give exactly one of the two"),
    ({"kind": "period_sum", "column": "c", "period": "2024-04", "periods": ["2024-04", "2024-05"]},
     "give exactly one of the two"),
    ({"kind": "period_mean", "column": None, "period": "2024-04"}, "required for kind: period_mean"),
], ids=["neither", "both", "no column"])
def test_period_targets_need_one_period_or_several(kw: dict[str, Any], words: str) -> None:
    with pytest.raises(Exception, match=words):
        target(id="t", value=1.0, **kw)


def test_the_seed_series_are_targets_with_their_measures() -> None:
    """The series the first fit ignored are in the Rotherham targets, each citing its seed line and reading the
    measure that defines it; Q1-Q3 ones are fitted, the winter and the outcomes held out."""
    root = Path(__file__).resolve().parents[1]
    prob = load_problem(root / "calibration" / "rotherham_2016.yaml")
    t = prob.targets
    expect = {"long_stay_q1_q3": ("F3:2838", "stranded_14", 68), "dtoc_pct_q1_q3": ("F3:3535", None, 3.0),
              "at_home_91_1617": ("F3:4889-4891", None, 87.5), "care_home_admissions_1617": ("F3:3770", None, 329),
              "adm65_apr16": ("F3:2849", "admissions_65plus", 422),
              "adm65_jul16": ("F3:2849", "admissions_65plus", 454)}
    for tid, (cite, column, value) in expect.items():
        assert cite in t[tid].source and t[tid].value == value, tid
        if column:
            assert t[tid].column == column, tid
    assert t["at_home_91_1617"].numerator == "rehab_65plus_at_home_91"
    assert t["at_home_91_1617"].denominator == "rehab_65plus_discharges"
    assert t["at_home_91_1617"].period == "2016/17 Q3"          # discharged October-December 2016 (F3:3776)
    assert t["care_home_admissions_1617"].kpi == "long_term_care_placements"
    assert {"long_stay_q1_q3", "dtoc_pct_q1_q3"} <= set(prob.fit_ids)
    assert {"at_home_91_1617", "care_home_admissions_1617", "dtoc_q4"} <= set(prob.held_ids)
    for tid in prob.fit_ids:   # nothing fitted reads the winter
        periods = t[tid].periods or ([t[tid].period] if t[tid].period else [])
        assert all(p in ("2016/17 Q1", "2016/17 Q2", "2016/17 Q3") or p < "2017" for p in periods), tid
