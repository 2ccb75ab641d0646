"""Confidence intervals that respect their measure's range (issue 14, point 5).

Issue 14 found "Days at OPEL 4 0.80 [-0.03, 1.63]", an occupancy of "[42.8, 118.8]%" and a calibration interval
of "[-0.34, 3,487.84]": t intervals of skewed, bounded measures from few replications.  ``bounded_ci`` builds
the t interval on the log (one bound) or logit (two bounds) scale and maps it back.  Checked here: it never
leaves the range, it holds its mean, it tends to the t interval far from the bounds, its edge cases, and its
coverage by simulation (with the t interval's failures shown alongside, so the test has power).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from flowsim.experiment.stats import bounded_ci, mean_ci, summarise
from flowsim.results.kpi import kpi_range


def test_issue_14_examples_stay_in_range() -> None:
    opel4 = np.array([0, 0, 2, 0, 1, 3, 0, 0, 2, 0], dtype=float)      # mean 0.8 days
    assert mean_ci(opel4)[1] < 0, "the example must be one the t interval gets wrong"
    m, lo, hi = bounded_ci(opel4, 0.0, None)
    assert m == pytest.approx(0.8) and 0 < lo < m < hi
    occupancy = np.array([55.0, 99.5, 98.0, 61.0])                     # four replications, two nearly full
    assert mean_ci(occupancy)[2] > 100
    m, lo, hi = bounded_ci(occupancy, 0.0, 100.0)
    assert 0 < lo < m < hi < 100


def test_log_interval_by_hand() -> None:
    """Lower bound only: mean * exp(-+ t * se / mean)."""
    x = np.array([1.0, 2.0, 4.0, 9.0])
    m, se = x.mean(), x.std(ddof=1) / 2
    t = stats.t.ppf(0.975, 3)
    assert bounded_ci(x, 0.0, None) == pytest.approx((m, m * np.exp(-t * se / m), m * np.exp(t * se / m)))
    # an upper bound only mirrors it: high - (high - mean) * exp(+- t * se / (high - mean))
    assert bounded_ci(10 - x, None, 10.0) == pytest.approx((10 - m, 10 - m * np.exp(t * se / m),
                                                            10 - m * np.exp(-t * se / m)))


def test_far_from_the_bounds_it_is_the_t_interval() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(50.0, 0.5, 40)
    _, lo_t, hi_t = mean_ci(x)
    _, lo, hi = bounded_ci(x, 0.0, 100.0)
    assert lo == pytest.approx(lo_t, rel=1e-4) and hi == pytest.approx(hi_t, rel=1e-4)


@pytest.mark.parametrize(("values", "bounds", "expected"), [
    ([3.0, 3.0, 3.0], (0.0, None), (3.0, 3.0, 3.0)),           # nothing varies: an exact interval
    ([0.0, 0.0, 0.0], (0.0, None), (0.0, 0.0, 0.0)),           # all on the bound
    ([100.0, 100.0], (0.0, 100.0), (100.0, 100.0, 100.0)),
])
def test_edge_cases(values: list[float], bounds: tuple[float | None, float | None],
                    expected: tuple[float, float, float]) -> None:
    assert bounded_ci(np.array(values), *bounds) == expected


def test_undefined_and_out_of_range_inputs() -> None:
    m, lo, hi = bounded_ci(np.array([4.0]), 0.0, None)
    assert m == 4.0 and np.isnan(lo) and np.isnan(hi)           # one replication: no interval
    x = np.array([-1.0, 2.0, 3.0])                              # the declared range does not hold: plain t
    assert bounded_ci(x, 0.0, None) == mean_ci(x)
    assert bounded_ci(np.array([np.inf, np.inf]), 0.0, None)[0] == np.inf


@pytest.mark.parametrize(("name", "draw", "truth", "bounds"), [
    ("few 12-hour waits", lambda rng: rng.poisson(0.8, 10).astype(float), 0.8, (0.0, None)),
    ("days of delay", lambda rng: rng.gamma(2.0, 5.0, 10), 10.0, (0.0, None)),
    ("4-hour breaches, %", lambda rng: 100 * rng.binomial(200, 0.03, 10) / 200, 3.0, (0.0, 100.0)),
    ("occupancy near full, %", lambda rng: 100 * rng.binomial(50, 0.96, 5) / 50, 96.0, (0.0, 100.0)),
])
def test_coverage_and_range(name: str, draw: object, truth: float, bounds: tuple[float | None, float | None]) -> None:
    """2,000 experiments each: the bounded interval covers the true mean in at least 93% of them (the standard
    error of a 95% coverage estimate is 0.5 points, so 93% is four below) and never leaves the range; the t
    interval leaves it often enough to matter in the first and last cases (the reason for the method)."""
    rng = np.random.default_rng(2024)
    trials, covered, t_out = 2000, 0, 0
    low, high = bounds
    for _ in range(trials):
        x = draw(rng)  # type: ignore[operator]
        _, lo, hi = bounded_ci(x, low, high)
        covered += lo <= truth <= hi
        assert lo >= (low if low is not None else -np.inf) and hi <= (high if high is not None else np.inf), name
        _, tlo, thi = mean_ci(x)
        t_out += (low is not None and tlo < low) or (high is not None and thi > high)
    assert covered / trials >= 0.93, (name, covered / trials)
    if name in ("few 12-hour waits", "occupancy near full, %"):
        assert t_out / trials > 0.05, (name, t_out / trials)


def test_summaries_use_each_kpis_range() -> None:
    per_rep = pd.DataFrame({"opel_days_level_4": [0, 0, 2, 0, 1, 3, 0, 0, 2, 0],
                            "occupancy_mean_pct": [55.0, 99.5, 98.0, 61.0, 99.0, 98.0, 60.0, 99.9, 97.0, 58.0],
                            "total_cost": [1e6, 2e6, 1.5e6, 1.2e6, 1.1e6, 1.9e6, 1.3e6, 1.4e6, 1.6e6, 1.8e6]})
    table = summarise(per_rep, bounds=kpi_range)
    assert (table["ci_low"] >= 0).all()
    assert table.loc["occupancy_mean_pct", "ci_high"] <= 100
    assert kpi_range("occupancy_mean_pct") == (0.0, 100.0) and kpi_range("total_cost") == (0.0, None)
    assert kpi_range("service_x_utilisation_pct") == (0.0, 100.0)
    plain = summarise(per_rep)
    assert plain.loc["opel_days_level_4", "ci_low"] < 0  # without ranges: the t interval, as before
