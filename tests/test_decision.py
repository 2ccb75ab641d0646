"""The option appraisal's decision rule (``flowsim.appraisal.decide``), on hand-built paired differences.

Every case is four paired replications whose answer follows from the rule's definition by hand: the t quantile
for 3 degrees of freedom is 3.182, so deviations of +-a around a mean give a 95% half-width of
3.182 * a * sqrt(4/3) / 2 = 1.837 a.  Each branch of the rule has a case built to reach it and no other:
the verdict words (saves / costs more / too close to call; fewer / more delays), dominance on paired
intervals (by the baseline, by another option, not when each is better on something, not without a
distinguishable improvement), the efficiency frontier (simple and extended dominance on means, incremental
cost per delayed bed-day against the next option on it), and net monetary benefit with the probability of
being best (ties shared) and the rank.  Issue 14's report said "saves £9,860 net" for an option whose
net-cost interval was -£241k to +£222k; that case is here too.
"""

from __future__ import annotations

import numpy as np
import pytest

from flowsim.appraisal import (
    BASELINE,
    COSTS_MORE,
    DOMINATED,
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
)

T3 = 3.182446305284263   # t(0.975, 3)
HALF = T3 * np.sqrt(4 / 3) / 2   # 95% half-width per unit of deviation for [-a, a, -a, a]


def swing(mean: float, a: float) -> np.ndarray:
    """Four replications: mean, deviations -a, +a, -a, +a (sd a*sqrt(4/3), 95% half-width 1.837 a)."""
    return mean + a * np.array([-1.0, 1.0, -1.0, 1.0])


def const(value: float) -> np.ndarray:
    return np.full(4, float(value))


def opt(name: str, cost: np.ndarray, avoided: np.ndarray) -> Effects:
    return Effects(name, np.asarray(cost, dtype=float), np.asarray(avoided, dtype=float))


# ============================================================================ words follow intervals
def test_the_half_width_used_by_hand_is_the_rules() -> None:
    d = decide([opt("x", swing(-10.0, 1.0), const(5.0))])
    (o,) = d.options
    assert o.net_cost[0] == pytest.approx(-10.0)
    assert o.net_cost[2] - o.net_cost[0] == pytest.approx(HALF, rel=1e-9)


@pytest.mark.parametrize(("mean", "a", "word"), [
    (-10.0, 1.0, SAVES),            # [-11.84, -8.16]: wholly below zero
    (10.0, 1.0, COSTS_MORE),        # wholly above
    (-1.0, 1.0, TOO_CLOSE),         # [-2.84, 0.84]: spans zero
    (-5.0, 0.0, SAVES),             # the same saving every replication: exact
    (0.0, 0.0, TOO_CLOSE),          # exactly zero is not a saving
    (-1.837, 1.0, TOO_CLOSE),       # the interval reaches just past zero
])
def test_cost_words(mean: float, a: float, word: str) -> None:
    (o,) = decide([opt("x", swing(mean, a), const(1.0))]).options
    assert o.cost_verdict == word == cost_verdict(o.net_cost[1], o.net_cost[2])


@pytest.mark.parametrize(("mean", "a", "word"), [
    (10.0, 1.0, FEWER_DELAYS), (-10.0, 1.0, MORE_DELAYS), (1.0, 1.0, TOO_CLOSE), (0.0, 0.0, TOO_CLOSE)])
def test_delay_words(mean: float, a: float, word: str) -> None:
    (o,) = decide([opt("x", const(1.0), swing(mean, a))]).options
    assert o.delay_verdict == word == delay_verdict(o.avoided[1], o.avoided[2])


def test_issue_14_a_saving_whose_interval_spans_zero_is_too_close_to_call() -> None:
    """The README's winter options: A had a net cost of -£9,860 (-£241k to +£222k) and was said to save money and
    ranked first; B -£55,769 (-£114,704 to +£3,165).  Built with those means and half-widths, both are too close
    to call on cost, and without a value per delayed bed-day nothing is ranked."""
    a = opt("A", swing(-9_860.0, 231_620.0 / HALF), swing(1_926.0, 1_020.0 / HALF))
    b = opt("B", swing(-55_769.0, 58_935.0 / HALF), swing(530.0, 277.0 / HALF))
    d = decide([a, b])
    oa, ob = d.option("A"), d.option("B")
    assert oa.net_cost[1] == pytest.approx(-241_480.0) and oa.net_cost[2] == pytest.approx(221_760.0)
    assert oa.cost_verdict == ob.cost_verdict == TOO_CLOSE
    assert oa.delay_verdict == ob.delay_verdict == FEWER_DELAYS
    assert oa.rank is None and ob.rank is None and d.best == ""


# ============================================================================ dominance on paired intervals
def test_dominated_by_the_baseline_when_dearer_and_no_distinguishable_gain() -> None:
    waste = opt("waste", const(400.0), np.array([1.0, -1.0, 2.0, -2.0]))
    (o,) = decide([waste]).options
    assert o.frontier == DOMINATED and o.dominated_by == BASELINE
    assert o.frontier_note.startswith("it costs less") and "within chance" in o.frontier_note


def test_a_zero_cost_option_that_adds_delays_is_dominated_by_the_baseline() -> None:
    """No net cost in any replication (every unpriced scenario: minimal.yaml, rotherham_2016.yaml) and 10 more
    delayed bed-days (interval [-11.84, -8.16]): the baseline is no dearer and distinguishably better on delays.
    A rule that asked for a net cost above zero before calling an option dominated would leave it on the frontier."""
    (o,) = decide([opt("idle", const(0.0), swing(-10.0, 1.0))]).options
    assert (o.cost_verdict, o.delay_verdict) == (TOO_CLOSE, MORE_DELAYS)
    assert o.frontier == DOMINATED and o.dominated_by == BASELINE
    assert o.frontier_note == ("it avoids more delayed bed-days (paired 95% intervals); on the other measure the "
                               "difference is within chance")
    assert o.compared_with == "" and np.isnan(o.icer[0])


def test_dominated_by_the_baseline_on_both_measures() -> None:
    """Dearer (interval [8.16, 11.84]) and with more delays ([-6.84, -3.16]): the note names both, nothing else."""
    (o,) = decide([opt("worse", swing(10.0, 1.0), swing(-5.0, 1.0))]).options
    assert o.dominated_by == BASELINE and o.frontier == DOMINATED
    assert o.frontier_note == "it costs less and it avoids more delayed bed-days (paired 95% intervals)"


def test_the_baseline_is_named_first_when_it_and_an_option_both_dominate() -> None:
    """'bad' is dominated by the baseline (dearer, no gain) and by 'good' (dearer than good, fewer avoided,
    every replication): the baseline is tried first, so it is the dominator named."""
    good = opt("good", const(-50.0), const(20.0))
    bad = opt("bad", const(30.0), const(0.0))
    d = decide([bad, good])
    assert d.option("bad").dominated_by == BASELINE
    assert d.option("good").frontier == FRONTIER and d.option("good").dominated_by == ""


def test_an_option_that_saves_money_and_adds_delays_is_not_dominated() -> None:
    """South-west quadrant: cheaper ([-11.84, -8.16]) but more delays ([-6.84, -3.16]).  Each of it and the
    baseline is better on one measure, so neither dominates; it is the least effective point on the frontier,
    with nothing before it to compare with."""
    (o,) = decide([opt("cut", swing(-10.0, 1.0), swing(-5.0, 1.0))]).options
    assert (o.cost_verdict, o.delay_verdict) == (SAVES, MORE_DELAYS)
    assert o.dominated_by == "" and o.frontier == FRONTIER and o.compared_with == "" and np.isnan(o.icer[0])


def test_an_option_that_displaces_the_baseline_says_so() -> None:
    """Cheaper and more effective on average (-10, +5 every replication): the baseline is off the frontier, and
    the option that displaced it carries the note; an option never 'dominates' the baseline (it is no option)."""
    (o,) = decide([opt("saver", const(-10.0), const(5.0))]).options
    assert o.frontier == FRONTIER and o.dominated_by == "" and o.compared_with == ""
    assert o.frontier_note == "costs less than the baseline and avoids at least as many delayed bed-days, on average"


def test_no_options_no_decision() -> None:
    d = decide([], 30.0)
    assert d.options == [] and d.best == ""


def test_dominated_by_another_option_better_on_both() -> None:
    """A is cheaper than B and avoids more, every replication; the baseline does not dominate B (B avoids
    distinguishably more), so the dominator named is A."""
    a = opt("A", np.array([100.0, 110, 90, 100]), np.array([50.0, 52, 48, 50]))
    b = opt("B", np.array([200.0, 210, 190, 200]), np.array([30.0, 32, 28, 30]))
    d = decide([b, a])
    assert d.option("B").frontier == DOMINATED and d.option("B").dominated_by == "A"
    assert "it costs less and it avoids more delayed bed-days" in d.option("B").frontier_note
    assert d.option("A").frontier == FRONTIER and d.option("A").dominated_by == ""


def test_not_dominated_when_each_is_better_on_one_measure() -> None:
    """cheap: 10 a delayed bed-day against the baseline; effective: (1100 - 100) / (60 - 10) = 20 against cheap.
    Rising ratios: both on the frontier.  Made dearer per day than the next (effective at 500: 8 a day against
    cheap's 10), cheap is extendedly dominated, though still not dominated by any interval."""
    cheap = opt("cheap", const(100.0), const(10.0))
    d = decide([cheap, opt("effective", const(1100.0), const(60.0))])
    assert [o.frontier for o in d.options] == [FRONTIER, FRONTIER]
    assert d.option("effective").icer[0] == 20.0 and d.option("effective").compared_with == "cheap"
    d = decide([cheap, opt("effective", const(500.0), const(60.0))])
    assert d.option("cheap").frontier == OFF_FRONTIER and d.option("cheap").dominated_by == ""
    assert d.option("effective").icer[0] == 500.0 / 60.0 and d.option("effective").compared_with == BASELINE


def test_no_dominance_without_a_distinguishable_improvement() -> None:
    """Differences within chance on both measures, or none at all, dominate nothing: dominance needs one
    measure distinguishably better.  Equal on average, they are off the frontier (a twin of the baseline)."""
    noise = opt("noise", np.array([-5.0, 5, -5, 5]), np.array([5.0, -5, 5, -5]))
    twin = opt("twin", const(0.0), const(0.0))
    d = decide([noise, twin])
    for o in d.options:
        assert o.dominated_by == "" and o.frontier == OFF_FRONTIER, o
        assert "baseline avoids at least as many" in o.frontier_note


# ============================================================================ the efficiency frontier
def frontier_case() -> list[Effects]:
    """Means (cost, delayed bed-days avoided): P (1000, 100), R (2600, 120), Q (3000, 150), and S (1100, 100) whose
    extra cost over P is within chance.  Ratios along the frontier by effect: P 10 a day against the baseline,
    R (2600-1000)/20 = 80 against P, Q (3000-2600)/30 = 13.3 against R: R's ratio exceeds the next one, so R is
    extendedly dominated, and Q is compared with P: (3000-1000)/(150-100) = 40 a day."""
    return [opt("P", const(1000.0), const(100.0)), opt("Q", const(3000.0), const(150.0)),
            opt("R", const(2600.0), const(120.0)),
            opt("S", np.array([900.0, 1300, 900, 1300]), np.array([90.0, 110, 90, 110]))]


def test_frontier_incremental_ratios_and_extended_dominance() -> None:
    d = decide(frontier_case())
    p, q, r, s = (d.option(n) for n in "PQRS")
    assert [o.dominated_by for o in (p, q, r, s)] == ["", "", "", ""]  # nothing is dominated by intervals
    assert (p.frontier, p.compared_with, p.icer) == (FRONTIER, BASELINE, (10.0, 10.0, 10.0))
    assert (q.frontier, q.compared_with, q.icer) == (FRONTIER, "P", (40.0, 40.0, 40.0))
    assert r.frontier == OFF_FRONTIER and "extended dominance" in r.frontier_note
    assert "P" in r.frontier_note and "Q" in r.frontier_note and np.isnan(r.icer[0])
    assert s.frontier == OFF_FRONTIER and s.frontier_note.startswith("P avoids at least as many")
    assert s.compared_with == "" and np.isnan(s.icer[0])
    # without a value, no rank; rows of economics follow the frontier (see test_appraisal)
    assert all(o.rank is None for o in d.options) and np.isnan(p.nmb[0]) and np.isnan(p.prob_best)


def test_frontier_ratio_has_a_bootstrap_interval_around_it() -> None:
    """With noisy differences the incremental ratio is the ratio of mean differences, inside its interval."""
    q = opt("Q", np.array([2900.0, 3100, 2950, 3050]), np.array([140.0, 160, 145, 155]))
    d = decide([opt("P", const(1000.0), const(100.0)), q], seed=3)
    o = d.option("Q")
    assert o.compared_with == "P" and o.icer[0] == pytest.approx(2000.0 / 50.0)
    assert o.icer[1] < o.icer[0] < o.icer[2]
    assert decide([opt("P", const(1000.0), const(100.0)), q], seed=3).option("Q").icer == o.icer  # reproducible


# ============================================================================ net monetary benefit
def test_net_benefit_probability_best_and_rank() -> None:
    """At 30 a delayed bed-day: P 30x100-1000 = 2000 every replication, S 30x[90,110,..]-[900,1300,..] =
    [1800, 2000, 1800, 2000], Q 1500, R 1000, baseline 0.  P wins replications 1 and 3 and ties S in 2 and 4
    (a tie is shared): P is best in 0.75 of replications, S in 0.25.  P - S = [200, 0, 200, 0] has an interval
    that holds zero, so P's lead over S is too close to call."""
    d = decide(frontier_case(), 30.0)
    p, q, r, s = (d.option(n) for n in "PQRS")
    assert p.nmb == (2000.0, 2000.0, 2000.0) and q.nmb[0] == 1500.0 and r.nmb[0] == 1000.0
    assert s.nmb[0] == pytest.approx(1900.0)
    assert (p.prob_best, s.prob_best, q.prob_best, r.prob_best) == (0.75, 0.25, 0.0, 0.0)
    assert d.baseline_prob_best == 0.0
    assert [o.rank for o in (p, s, q, r)] == [1, 2, 3, 4]
    assert d.best == "P" and not d.best_clear and d.close == ["S"]


def test_a_clear_best_at_a_higher_value() -> None:
    """At 100 a day Q's 12,000 beats P's 9,000 by exactly 3,000 and S's [8100, 9700, ..] in every replication."""
    d = decide(frontier_case(), 100.0)
    assert d.best == "Q" and d.best_clear and d.close == []
    assert d.option("Q").prob_best == 1.0 and d.option("Q").rank == 1


def test_the_baseline_can_be_best() -> None:
    """Valued at nothing, every option only costs money: the baseline has the highest net benefit."""
    d = decide([opt("x", const(10.0), const(5.0)), opt("y", swing(50.0, 10.0), const(9.0))], 0.0)
    assert d.best == BASELINE and d.baseline_prob_best == 1.0 and d.best_clear
    assert [o.rank for o in d.options] == [1, 2]
