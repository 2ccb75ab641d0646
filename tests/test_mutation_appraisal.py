"""Edges of the appraisal's decision rule (``flowsim.appraisal``) that ``test_decision.py`` does not reach.

Why: the mutation run (``docs/mutation.md``) found the verdict words unchecked on intervals that are undefined at
one or both ends (fewer than two replications, or a bootstrap that gave up) and on intervals lying between 0 and
1, where a rule comparing with 1 instead of 0 reads the same on the test's round numbers.  A verdict is a word a
board reads ("saves", "more delays"): it must follow the interval exactly, and say "too close to call" whenever
the interval cannot say more.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from flowsim.appraisal import (
    COSTS_MORE,
    FEWER_DELAYS,
    MORE_DELAYS,
    SAVES,
    TOO_CLOSE,
    cost_verdict,
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
