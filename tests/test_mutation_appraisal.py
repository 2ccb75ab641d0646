"""Edges of the appraisal's decision rule (``flowsim.appraisal``) that ``test_decision.py`` does not reach.

Why: the mutation run (``docs/mutation.md``) found the verdict words unchecked on intervals that are undefined at
one or both ends (fewer than two replications, or a bootstrap that gave up) and on intervals lying between 0 and
1, where a rule comparing with 1 instead of 0 reads the same on the test's round numbers; and the efficiency
frontier's extended dominance with three options on it (each incremental ratio from each option's own cost) and
with equal ratios (a strictly higher ratio is needed to drop an option).  A verdict is a word a
board reads ("saves", "more delays"): it must follow the interval exactly, and say "too close to call" whenever
the interval cannot say more.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from flowsim.appraisal import (
    BASELINE,
    COSTS_MORE,
    FEWER_DELAYS,
    FRONTIER,
    MORE_DELAYS,
    OFF_FRONTIER,
    SAVES,
    TOO_CLOSE,
    Effects,
    cost_verdict,
    decide,
    delay_verdict,
    paired_difference,
    ratio_ci,
)

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(("low", "high"), [(NAN, NAN), (5.0, NAN), (NAN, -5.0), (5.0, INF), (-INF, -5.0)])
def test_an_interval_undefined_at_either_end_is_too_close_to_call(low: float, high: float) -> None:
    assert cost_verdict(low, high) == TOO_CLOSE
    assert delay_verdict(low, high) == TOO_CLOSE


def test_verdicts_compare_with_zero_not_with_one() -> None:
    assert cost_verdict(0.5, 2.0) == COSTS_MORE          # wholly above zero, though not above 1
    assert cost_verdict(-2.0, -0.5) == SAVES
    assert delay_verdict(0.25, 0.75) == FEWER_DELAYS
    assert delay_verdict(-0.75, -0.25) == MORE_DELAYS
    assert cost_verdict(0.0, 2.0) == TOO_CLOSE           # touching zero is not wholly above it
    assert cost_verdict(-2.0, 0.0) == TOO_CLOSE


def test_paired_difference_of_identical_replications_is_exact_and_distinguishable() -> None:
    got = paired_difference(np.array([5.0, 6.0, 7.0]), np.array([3.0, 4.0, 5.0]))
    assert got == {"diff_mean": 2.0, "ci_low": 2.0, "ci_high": 2.0, "distinguishable": True, "n": 3}
    one = paired_difference(np.array([5.0]), np.array([3.0]))
    assert one["diff_mean"] == 2.0 and one["distinguishable"] is False and one["n"] == 1


def test_ratio_of_a_single_replication_has_no_interval() -> None:
    est, lo, hi = ratio_ci(np.array([10.0]), np.array([4.0]), seed=1)
    assert est == 2.5 and math.isnan(lo) and math.isnan(hi)


def constant(x: float, n: int = 4) -> np.ndarray:
    """The same difference in every paired replication: a zero-width interval, so every comparison is clear."""
    return np.full(n, x)


def test_extended_dominance_uses_each_options_own_cost() -> None:
    """Baseline (cost 0, 0 days avoided); A (100, 10); B (300, 20); C (350, 30).  Incremental cost per day
    avoided along the frontier: A 100/10 = 10, B (300-100)/(20-10) = 20, C (350-300)/(30-20) = 5.  B's ratio is
    higher than the next one, so B is off the frontier by extended dominance, and C is then compared with A:
    (350-100)/(30-10) = 12.5."""
    effects = [Effects("A", constant(100.0), constant(10.0)), Effects("B", constant(300.0), constant(20.0)),
               Effects("C", constant(350.0), constant(30.0))]
    d = decide(effects)
    assert [d.option(n).frontier for n in "ABC"] == [FRONTIER, OFF_FRONTIER, FRONTIER]
    assert "extended dominance" in d.option("B").frontier_note
    assert d.option("C").compared_with == "A"
    assert d.option("C").icer[0] == pytest.approx(12.5)
    assert d.option("A").compared_with == BASELINE and d.option("A").icer[0] == pytest.approx(10.0)


def test_equal_incremental_ratios_keep_every_option_on_the_frontier() -> None:
    """A (100, 10) and B (200, 20) lie on one line through the baseline: ratios 10 and 10.  Extended dominance
    needs a strictly higher ratio, so both stay on the frontier and B is compared with A."""
    d = decide([Effects("A", constant(100.0), constant(10.0)), Effects("B", constant(200.0), constant(20.0))])
    assert [d.option(n).frontier for n in "AB"] == [FRONTIER, FRONTIER]
    assert d.option("B").compared_with == "A" and d.option("B").icer[0] == pytest.approx(10.0)


def test_no_options_keep_the_value_per_day() -> None:
    d = decide([], 30.0)
    assert d.options == [] and d.value_per_day == 30.0


def test_the_default_bootstrap_seed_is_zero() -> None:
    """The decision is a pure function of the differences: without a seed, the bootstrap is seeded with 0."""
    noisy = [Effects("A", np.array([90.0, 130.0, 70.0, 115.0, 100.0, 85.0, 122.0, 95.0]),
                     np.array([10.4, 9.1, 6.6, 10.8, 12.0, 7.0, 8.8, 12.6]))]
    assert decide(noisy).option("A").icer == decide(noisy, seed=0).option("A").icer
    assert decide(noisy).option("A").icer != decide(noisy, seed=1).option("A").icer


def test_an_option_without_a_comparator_has_an_undefined_ratio_of_three_parts() -> None:
    """B costs more for fewer days avoided than A (dominated): no incremental ratio, (nan, nan, nan)."""
    d = decide([Effects("A", constant(100.0), constant(10.0)), Effects("B", constant(200.0), constant(5.0))])
    icer = d.option("B").icer
    assert len(icer) == 3 and all(math.isnan(x) for x in icer)
    assert d.option("B").compared_with == ""


def test_an_option_cheaper_than_the_baseline_with_more_delays_carries_no_displacement_note() -> None:
    """A saves 100 but adds 10 delayed days: neither dominates; the baseline stays on the frontier, so nothing
    says A displaced it."""
    d = decide([Effects("A", constant(-100.0), constant(-10.0))])
    a = d.option("A")
    assert a.frontier == FRONTIER and a.dominated_by == "" and a.frontier_note == ""


def test_rank_follows_the_mean_net_benefit_not_its_lower_bound() -> None:
    """At 1 a day, no costs: A's net benefit is [2, 18, 2, 18] (mean 10, interval down to about -4.7), B's 9 in
    every replication.  A ranks first on the mean, although B's interval starts higher."""
    d = decide([Effects("A", constant(0.0), np.array([2.0, 18.0, 2.0, 18.0])),
                Effects("B", constant(0.0), constant(9.0))], 1.0)
    assert d.option("A").nmb[1] < d.option("B").nmb[1]
    assert (d.option("A").rank, d.option("B").rank) == (1, 2)


def test_ratio_needs_days_avoided_on_average_and_takes_fractions_of_a_day() -> None:
    """No days avoided on average (+1 and -1): no ratio at all.  Half a day avoided in every replication for 1
    more: 2 per day, exactly, interval included."""
    assert all(math.isnan(x) for x in ratio_ci(np.array([1.0, 1.0]), np.array([-1.0, 1.0]), seed=3))
    assert ratio_ci(np.full(4, 1.0), np.full(4, 0.5), seed=3) == (2.0, 2.0, 2.0)


def test_extended_dominance_is_applied_until_the_ratios_rise() -> None:
    """Baseline (0, 0); A (100, 10); B (300, 20); C (350, 30); D (380, 40).  Ratios 10, 20, 5, 3: B goes (20 > 5);
    then 10, 12.5, 3: C goes; then 10, 9.33: A goes; D alone is left on the frontier, compared with the
    baseline at 380 / 40 = 9.5 a day."""
    effects = [Effects(n, constant(c), constant(e)) for n, c, e in
               (("A", 100.0, 10.0), ("B", 300.0, 20.0), ("C", 350.0, 30.0), ("D", 380.0, 40.0))]
    d = decide(effects)
    assert [d.option(n).frontier for n in "ABCD"] == [OFF_FRONTIER, OFF_FRONTIER, OFF_FRONTIER, FRONTIER]
    assert d.option("D").compared_with == BASELINE and d.option("D").icer[0] == pytest.approx(9.5)
    assert d.option("B").frontier_note == ("extended dominance: a mix of A and C avoids more delayed bed-days for "
                                           "the money, on average")


def test_paired_difference_uses_the_level_it_is_given_and_zero_as_the_line() -> None:
    option, base = np.array([11.0, 13.0, 12.0, 14.0]), np.array([10.0, 10.0, 10.0, 10.0])
    wide, narrow = paired_difference(option, base), paired_difference(option, base, level=0.5)
    assert narrow["ci_high"] - narrow["ci_low"] < wide["ci_high"] - wide["ci_low"]
    assert narrow["diff_mean"] == wide["diff_mean"] == 2.5
    small = paired_difference(np.full(3, 1.5), np.full(3, 1.0))   # 0.5 in every replication: above zero
    assert small["distinguishable"] is True and small["ci_low"] == 0.5


def test_ratio_interval_draws_every_replication() -> None:
    """Only replication 0 differs (10 against 1 elsewhere): a bootstrap that never drew it would give (1, 1)."""
    est, lo, hi = ratio_ci(np.array([10.0, 1.0, 1.0, 1.0, 1.0]), np.ones(5), seed=4)
    assert est == pytest.approx(2.8) and hi > 1.0 and lo >= 1.0


def test_ratio_interval_of_two_replications_is_defined() -> None:
    est, lo, hi = ratio_ci(np.array([10.0, 30.0]), np.array([1.0, 2.0]), seed=4)
    assert est == pytest.approx(40.0 / 3.0) and np.isfinite(lo) and np.isfinite(hi) and lo <= est <= hi


def test_ratio_interval_leaves_out_resamples_without_days_avoided() -> None:
    """Three replications avoid nothing and one avoids 3 days: a resample of only the first three has no ratio
    (it is left out, not counted as infinite)."""
    est, lo, hi = ratio_ci(np.ones(4), np.array([0.0, 0.0, 0.0, 3.0]), seed=5)
    assert est == pytest.approx(4.0 / 3.0) and np.isfinite(lo) and np.isfinite(hi)


def test_ratio_interval_at_level_zero_is_the_bootstrap_median() -> None:
    num = np.array([90.0, 130.0, 70.0, 115.0, 100.0, 85.0, 122.0, 95.0])
    den = np.array([10.4, 9.1, 6.6, 10.8, 12.0, 7.0, 8.8, 12.6])
    _, lo, hi = ratio_ci(num, den, seed=6, level=0.0)
    assert lo == hi
