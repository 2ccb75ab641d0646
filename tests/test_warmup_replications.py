"""Warm-up by MSER-5 and replication count by the CI method with look-ahead (Hoad, Robinson & Davies 2010).

Three layers:

* ``mser``/``mser5`` on synthetic series whose transient is known exactly, plus an
  independent O(k^2) recomputation of the statistic;
* ``decide``/``still_needed`` on hand-built sequences (checked against an independent
  reference written here with ``scipy.stats.t``) and on iid Normal sequences whose required
  count follows from theory;
* ``simulate_to_precision`` and ``choose_warmup`` on real scenarios, including an M/D/inf
  system whose warm-up is known exactly.

Notation for the MSER bands.  With batch means Z_j = bias_j + e_j (noise sd s_b) and n = k - d
batches kept, dropping batch d changes the statistic by about
``[2 SS_d / n - (Z_d - mean_d)^2] / n^2 ~ [s_b^2 - bias_d^2 - 2 bias_d e_d - (e_d^2 - s_b^2)] / n^2``:
the truncation moves on while the bias exceeds the noise's standard error s_b and stops near where
it falls below it.  On a stationary stretch the increments (in units s_b^2 / n^2) are ``2 - chi2_1``:
a random walk with drift +1 and variance 2 per batch, so by the Brownian approximation the argmin
lies m or more batches past the start of the stationary stretch with probability
``~ 2 Phi(-sqrt(m / 2))`` (union bound ``sum_{j>=m} P(chi2_j > 2 j)``; e.g. m = 20: 0.0016, bound 0.03).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from scipy import stats

from flowsim import load_scenario
from flowsim.errors import FlowsimError
from flowsim.experiment.executors import ProcessExecutor, SerialExecutor
from flowsim.experiment.replications import StoppingRule, decide, look_ahead, relative_half_width, still_needed
from flowsim.experiment.runner import choose_warmup, simulate, simulate_to_precision, with_warmup
from flowsim.experiment.warmup import mser, mser5
from flowsim.scenario import validate_dict

# =========================================================================== MSER-5

N_OBS = 1000            # series length: k = 200 batches of 5, MSER searches d <= 100 batches (500 obs)
SIGMA = 1.0             # iid noise sd of one observation
S_B = SIGMA / math.sqrt(5)   # sd of a batch mean of 5
SEEDS = range(11)


def naive_mser(series: Sequence[float], batch: int) -> tuple[np.ndarray, np.ndarray]:
    """MSER(d) for d = 0 .. k//2, straight from the definition (two loops, no suffix sums)."""
    x = [float(v) for v in series]
    k = len(x) // batch
    z = [sum(x[j * batch:(j + 1) * batch]) / batch for j in range(k)]
    out = []
    for d in range(k // 2 + 1):
        tail = z[d:]
        m = sum(tail) / len(tail)
        out.append(sum((v - m) ** 2 for v in tail) / len(tail) ** 2)
    return np.array(out), np.array(z)


@pytest.mark.parametrize(("batch", "length"),
                         [(b, n) for b in (1, 3, 5, 7) for n in (20, 21, 137, 400) if n >= 4 * b])
def test_mser_statistic_matches_direct_computation(batch: int, length: int) -> None:
    rng = np.random.default_rng(length * 10 + batch)
    x = 50 + 10 * np.exp(-np.arange(length) / 30) + rng.normal(0, 2, length)
    res = mser(x, batch)
    want, z = naive_mser(x, batch)
    np.testing.assert_allclose(res.batch_means, z, rtol=1e-12)
    np.testing.assert_allclose(res.statistic, want, rtol=1e-9, atol=1e-12)
    best = int(np.argmin(want))
    assert res.truncation == best * batch and res.batch == batch
    assert res.truncation_batches == best
    assert res.reliable == (best < len(want) - 1)


def test_mser5_is_mser_with_batch_5_and_ignores_a_partial_last_batch() -> None:
    rng = np.random.default_rng(3)
    x = 10 + 5 * np.exp(-np.arange(300) / 20) + rng.normal(0, 1, 300)
    a = mser5(x)
    b = mser(x, 5)
    assert a.truncation == b.truncation and a.batch == 5
    np.testing.assert_array_equal(a.statistic, b.statistic)
    # up to 4 extra observations do not fill a batch, so they cannot change anything
    c = mser5(np.concatenate([x, [1e6, -1e6, 1e6, -1e6]]))
    assert c.truncation == a.truncation
    np.testing.assert_array_equal(c.statistic, a.statistic)
    # a list works like an array
    assert mser5(list(x)).truncation == a.truncation


def test_mser_input_validation() -> None:
    # whole messages, anchored: a user reads them, so their wording is part of the contract
    with pytest.raises(ValueError, match=r"^MSER-5 needs at least 20 observations, got 19$"):
        mser5(np.ones(19))
    assert mser5(np.arange(20.0)).statistic.shape == (3,)   # 4 batches: d = 0, 1, 2
    with pytest.raises(ValueError, match=r"^MSER-3 needs at least 12 observations, got 11$"):
        mser(np.ones(11), batch=3)
    bad = np.ones(50)
    bad[7] = np.nan
    with pytest.raises(ValueError, match=r"^MSER needs a finite series \(no NaN or infinity\)$"):
        mser5(bad)
    bad[7] = np.inf
    with pytest.raises(ValueError, match=r"^MSER needs a finite series \(no NaN or infinity\)$"):
        mser5(bad)
    with pytest.raises(ValueError, match=r"^MSER needs a one-dimensional series$"):
        mser5(np.ones((50, 2)))


def test_constant_series_is_not_truncated() -> None:
    res = mser5(np.full(100, 7.0))
    assert res.truncation == 0 and res.reliable
    assert np.all(res.statistic == 0)


def test_mser5_finds_the_end_of_a_linear_ramp() -> None:
    """Bias h(1 - t/L) for t < L, zero after; h = 40 sigma, L = 200 (40 batches).

    Lower bound L - 10: batch 37 (obs 185-189) has bias 40(1 - 187/200) = 2.6 sigma = 5.8 s_b, batch 38
    3.6 s_b, batch 39 1.3 s_b; truncating at 185 instead of 200 keeps them, which adds about
    sum(bias^2 - s_b^2) = 45 s_b^2 to n^2 MSER with noise sd sqrt(sum 4 bias^2 s_b^2 + 2 s_b^4 x 3) ~ 14 s_b^2:
    a 3.2-sd event.  Upper bound L + 100 (m = 20 batches past L, probability ~0.002 each; see the
    module docstring).  The median of 11 seeds exceeds L + 15 only if 6 truncate at L + 20 or later
    (m = 4, probability ~0.16 each): Binomial(11, 0.16) >= 6 has probability 0.003.
    """
    L, h = 200, 40 * SIGMA
    t = np.arange(N_OBS)
    truncations = []
    for seed in SEEDS:
        e = np.random.default_rng(seed).normal(0, SIGMA, N_OBS)
        res = mser5(h * np.clip(1 - t / L, 0, None) + e)
        assert res.reliable, seed
        assert L - 10 <= res.truncation <= L + 100, (seed, res.truncation)
        truncations.append(res.truncation)
    assert L - 5 <= np.median(truncations) <= L + 15, truncations


def test_mser5_stops_where_an_exponential_bias_falls_below_the_standard_error() -> None:
    """Bias A exp(-t/tau) with A = 10 sigma, tau = 50: it equals s_b at d* = tau ln(A/s_b) = 155.

    Each truncation is at least where the bias is still 4 s_b (tau ln(A/(4 s_b)) = 86): the ~14 batches
    from there to d* (bias 4 s_b down to s_b) favour truncating by sum(bias^2 - s_b^2) ~ 69 s_b^2 against
    noise sqrt(sum 4 bias^2 s_b^2 + 2 s_b^4 x 14) ~ 19 s_b^2 (3.6 sd).  Each is at most where the bias is
    s_b/3 (tau ln(3A/s_b) = 210; the drift is then ~0.9 of the stationary one) plus 100 observations
    (20 batches, see the module docstring).  The median of 11 seeds lies where the bias is between s_b/2
    and 2 s_b: tau ln(A/(2 s_b)) = 121 to tau ln(2A/s_b) = 190.
    """
    A, tau = 10 * SIGMA, 50.0
    d_star = tau * math.log(A / S_B)
    lo = tau * math.log(A / (4 * S_B))
    hi = tau * math.log(3 * A / S_B) + 100
    t = np.arange(N_OBS)
    truncations = []
    for seed in SEEDS:
        e = np.random.default_rng(100 + seed).normal(0, SIGMA, N_OBS)
        res = mser5(A * np.exp(-t / tau) + e)
        assert res.reliable, seed
        assert lo - 5 <= res.truncation <= hi, (seed, res.truncation, d_star)
        truncations.append(res.truncation)
    med = float(np.median(truncations))
    assert tau * math.log(A / (2 * S_B)) - 5 <= med <= tau * math.log(2 * A / S_B) + 5, (truncations, d_star)


def test_mser5_barely_truncates_a_stationary_series() -> None:
    """iid noise: P(truncation >= 5m) ~ 2 Phi(-sqrt(m/2)).

    The median of 21 seeds exceeds 15 only if 11 truncate at 20 or later (m = 4: ~0.16 each;
    Binomial(21, 0.16) >= 11 has probability 1e-4); every one < 150 (m = 30: ~1e-4 each, so ~0.002
    for 21 seeds; the cruder union bound gives 0.006 each).
    """
    truncations = []
    for seed in range(21):
        res = mser5(np.random.default_rng(500 + seed).normal(3.0, SIGMA, N_OBS))
        assert res.truncation < 150, (seed, res.truncation)
        truncations.append(res.truncation)
    assert np.median(truncations) <= 15, truncations


@pytest.mark.parametrize("slope", [0.05, 0.1])
def test_series_without_steady_state_is_flagged_unreliable(slope: float) -> None:
    """A series that trends throughout (batch slope b = 5 slope): the minimum sits at the end of the searched
    half, and MSER must say it found no steady state.

    Dropping the first of n kept batches changes n^2 MSER by 2 SS/n - (Z_d - mean)^2 ~ (bn)^2/6 - (bn/2 + e)^2:
    mean -(bn)^2/12, sd ~ bn s_b.  At the edge (n = 100) that is -(bn)/(12 s_b) sd: 4.7 sd for slope 0.05,
    9.3 for 0.1, so even the last step before the edge lowers MSER.  (A milder trend, e.g. slope 0.01 at
    0.9 sd per step, often leaves the minimum a batch or two short of the edge and passes as reliable.)
    """
    t = np.arange(N_OBS)
    x = slope * t + np.random.default_rng(9).normal(0, SIGMA, N_OBS)
    res = mser5(x)
    k = N_OBS // 5
    assert not res.reliable
    assert res.truncation == (k // 2) * 5
    # and the stationary control with the same noise is reliable
    assert mser5(np.random.default_rng(9).normal(0, SIGMA, N_OBS)).reliable


# =========================================================================== replications: deterministic


def reference_precision(values: Sequence[float], alpha: float = 0.05) -> list[float]:
    """d_n for n = 1 .. len, from the textbook formula (inf for n = 1)."""
    x = np.asarray(values, dtype=float)
    out = [math.inf]
    for n in range(2, len(x) + 1):
        s = float(np.std(x[:n], ddof=1))
        out.append(float(stats.t.ppf(1 - alpha / 2, n - 1)) * s / math.sqrt(n) / abs(float(np.mean(x[:n]))))
    return out


def reference_solution(prec: Sequence[float], target: float, n0: int = 3, k: int = 5) -> tuple[int, int] | None:
    """Hoad et al.: the first n >= n0 with d_m <= target for every m in n .. n + f(n)."""
    for n in range(n0, len(prec) + 1):
        f = k if n <= 100 else (n * k) // 100
        if n + f <= len(prec) and all(prec[m - 1] <= target for m in range(n, n + f + 1)):
            return n, n + f
    return None


def ok_string(prec: Sequence[float], target: float) -> str:
    return "".join("1" if p <= target else "0" for p in prec)


def alternating(n: int, mean: float = 100.0, dev: float = 10.0) -> list[float]:
    return [mean + dev * (-1) ** i for i in range(n)]


def test_look_ahead_rule() -> None:
    assert [look_ahead(n, 5) for n in (1, 50, 100, 101, 119, 120, 139, 140, 200)] == [5, 5, 5, 5, 5, 6, 6, 7, 10]
    assert [look_ahead(n, 10) for n in (100, 101, 110, 150)] == [10, 10, 11, 15]


def test_relative_half_width_against_scipy() -> None:
    rng = np.random.default_rng(1)
    for n in (2, 3, 10, 57):
        x = rng.normal(40, 7, n)
        for alpha in (0.05, 0.1):
            lo, hi = stats.t.interval(1 - alpha, n - 1, loc=x.mean(), scale=stats.sem(x))
            assert relative_half_width(x, alpha) == pytest.approx((hi - lo) / 2 / abs(x.mean()), rel=1e-10)
    assert relative_half_width([5.0]) == math.inf
    assert relative_half_width([]) == math.inf
    assert relative_half_width([3.0, 3.0, 3.0]) == 0.0
    assert relative_half_width([-1.0, 1.0]) == math.inf
    # the sign of the mean does not matter
    assert relative_half_width([-9.0, -11.0, -10.0]) == pytest.approx(relative_half_width([9.0, 11.0, 10.0]))


def test_decide_stops_at_first_crossing_confirmed_by_look_ahead() -> None:
    """Alternating 100 +/- 10: d_n falls steadily; the answer is the first n with d_n <= 5%, plus 5."""
    x = alternating(60)
    prec = reference_precision(x)
    want = reference_solution(prec, 0.05)
    assert want is not None
    n_sol, n_used = want
    assert n_used == n_sol + 5
    assert prec[n_sol - 2] > 0.05 >= prec[n_sol - 1]    # the crossing really is at n_sol
    dec = decide(x, 0.05)
    assert (dec.n_solution, dec.n_used, dec.capped, dec.done) == (n_sol, n_used, False, True)
    np.testing.assert_allclose(dec.precision, prec[:n_used], rtol=1e-10)
    assert dec.target == 0.05
    # one value short of the look-ahead: not done yet, and the decision does not guess
    short = decide(x[: n_used - 1], 0.05)
    assert short.n_solution is None and not short.done and short.n_used == n_used - 1
    # extra values beyond the decision change nothing
    assert decide(x + alternating(40, dev=80), 0.05).n_used == n_used


def test_decide_resets_a_candidate_that_loses_precision() -> None:
    """Precision reached, held for fewer than 5 more, lost to an outlier, then regained for good."""
    x = alternating(80)
    first = reference_solution(reference_precision(x), 0.05)
    assert first is not None
    c1 = first[0]
    x[c1 + 1] = 125.0     # replication c1 + 2 is an outlier (110 would be next)
    prec = reference_precision(x)
    ok = ok_string(prec, 0.05)
    # the construction: ok from c1 to c1 + 1, lost at c1 + 2 (inside the look-ahead), regained before c1 + 5,
    # so a search that only checked d at the candidate and at the end of its look-ahead would accept c1
    assert ok[c1 - 1: c1 + 1] == "11" and ok[c1 + 1] == "0", ok
    assert ok[c1 - 1 + 5] == "1", ok
    want = reference_solution(prec, 0.05)
    assert want is not None and want[0] > c1 + 2
    n_sol, n_used = want
    assert ok[n_sol - 2] == "0" and "0" not in ok[n_sol - 1: n_used]
    dec = decide(x, 0.05)
    assert (dec.n_solution, dec.n_used) == (n_sol, n_used)


def test_decide_uses_the_proportional_look_ahead_beyond_100() -> None:
    """A candidate at 120 needs floor(120 x 5 / 100) = 6 confirmations, not 5.

    The target sits between d_119 and d_120, so 120 is the first candidate; an outlier at replication
    126 breaks it one replication after a fixed 5-step look-ahead would have accepted it.
    """
    x = alternating(400)
    prec0 = reference_precision(x)
    assert np.all(np.diff(prec0[100:201]) < 0)   # d_n falls steadily here
    target = (prec0[118] + prec0[119]) / 2
    x[125] = 140.0
    prec = reference_precision(x)
    ok = ok_string(prec, target)
    assert ok[:119] == "0" * 119 and ok[119:125] == "1" * 6 and ok[125] == "0", ok[110:130]
    want = reference_solution(prec, target)
    assert want is not None
    n_sol, n_used = want
    assert n_sol > 126 and look_ahead(n_sol) > 5 and n_used == n_sol + n_sol * 5 // 100
    dec = decide(x, target)
    assert (dec.n_solution, dec.n_used) == (n_sol, n_used)
    # at exactly 125 values (the end of a 5-step look-ahead) the method must still be undecided
    assert not decide(x[:125], target).done
    # without the outlier, 120 is accepted with 6 confirmations
    clean = decide(alternating(400), target)
    assert (clean.n_solution, clean.n_used) == (120, 126)


def test_decide_cap() -> None:
    noisy = [1.0, 199.0] * 30              # d_n ~ t / sqrt(n) never gets near 1%
    assert min(reference_precision(noisy)[2:]) > 0.01
    dec = decide(noisy[:20], 0.01, cap=20)
    assert dec.capped and dec.done and dec.n_solution is None and dec.n_used == 20
    assert len(dec.precision) == 20
    assert not decide(noisy[:19], 0.01, cap=20).done
    assert still_needed(noisy[:19], 0.01, cap=20) == 1
    assert still_needed(noisy[:20], 0.01, cap=20) == 0
    # a candidate whose look-ahead would run past the cap does not count
    x = alternating(60)
    n_sol, _ = reference_solution(reference_precision(x), 0.05) or (0, 0)
    cap = n_sol + 3
    dec = decide(x[:cap], 0.05, cap=cap)
    assert dec.capped and dec.n_solution is None and dec.n_used == cap
    # a solution inside the cap is unaffected by it
    assert decide(x, 0.05, cap=n_sol + 5).n_solution == n_sol


def test_decide_ignores_values_beyond_the_cap() -> None:
    """'With cap, the search stops at cap replications whatever the precision': the decision must not
    depend on how many values beyond the cap were passed (the module says 'however many ran ahead')."""
    x = alternating(60)
    n_sol, _ = reference_solution(reference_precision(x), 0.05) or (0, 0)
    cap = n_sol + 3    # the candidate is inside the cap, its look-ahead is not
    at_cap = decide(x[:cap], 0.05, cap=cap)
    beyond = decide(x, 0.05, cap=cap)
    assert at_cap.capped
    assert (beyond.n_solution, beyond.n_used, beyond.capped) == (at_cap.n_solution, at_cap.n_used, at_cap.capped)
    assert beyond.n_used <= cap


def test_decide_validation() -> None:
    with pytest.raises(ValueError, match="positive"):
        decide([1.0, 2.0, 3.0], 0.0)
    with pytest.raises(ValueError, match="2 initial"):
        decide([1.0, 2.0, 3.0], 0.05, n0=1)


def test_decide_respects_n0() -> None:
    """A constant series has d_n = 0 from n = 2, but no candidate is taken before n0."""
    dec = decide([5.0] * 30, 0.05, n0=7)
    assert (dec.n_solution, dec.n_used) == (7, 12)
    assert decide([5.0] * 30, 0.05).n_solution == 3


# =========================================================================== replications: statistical


def theoretical_count(cv: float, target: float, alpha: float = 0.05) -> int:
    """The least n with t_{n-1, 1-alpha/2} sigma / sqrt(n) / mu <= target."""
    n = 2
    while stats.t.ppf(1 - alpha / 2, n - 1) * cv / math.sqrt(n) > target:
        n += 1
    return n


@pytest.mark.parametrize(("cv", "sequences"), [(0.2, 200), (0.3, 120)])
def test_stopping_count_on_normal_data_matches_theory(cv: float, sequences: int) -> None:
    """iid Normal(100, 100 cv), target 5%.

    The method stops near N = n* s_N^2 / sigma^2 (d_n <= target iff n >= n* s_n^2 / sigma^2, up to the
    small changes of t and of the sample mean).  s_n^2 / sigma^2 has relative sd sqrt(2 / (n - 1)), so
    N has sd ~ n* sqrt(2 / (n* - 1)) =: sd_N and median ~ n* (first passage pulls it a little earlier, the
    look-ahead a little later, both well inside one sd_N).  The median of the sample (its own sd
    ~ 1.25 sd_N / sqrt(sequences) < 0.1 sd_N) must be within one sd_N of n*, and the interquartile
    range within a factor 2 of the normal one, 1.349 sd_N.  cv = 0.3 gives n* > 100, so the
    proportional look-ahead is exercised.
    """
    target = 0.05
    n_star = theoretical_count(cv, target)
    sd_n = n_star * math.sqrt(2 / (n_star - 1))
    rng = np.random.default_rng(int(cv * 1000))
    counts = []
    for _ in range(sequences):
        x = rng.normal(100.0, 100.0 * cv, int(n_star + 3 * sd_n) + 10)
        dec = decide(x, target)
        counts.append(dec.n_solution if dec.n_solution is not None else math.inf)
        if dec.n_solution is not None:
            assert dec.n_used == dec.n_solution + look_ahead(dec.n_solution)
            assert all(p <= target for p in dec.precision[dec.n_solution - 1:])
    med = float(np.median(counts))
    assert abs(med - n_star) <= sd_n, (med, n_star, sd_n)
    q1, q3 = np.percentile(counts, [25, 75])
    assert 0.5 * 1.349 * sd_n <= q3 - q1 <= 2 * 1.349 * sd_n, (q1, q3, sd_n)


# =========================================================================== still_needed


def feed(values: Sequence[float], target: float, width: int = 1, **kw: Any) -> list[float]:
    """Hand values over in batches of max(still_needed, width), as the runner does, until done."""
    fed: list[float] = []
    cap = kw.get("cap")
    while (need := still_needed(fed, target, **kw)) > 0:
        assert need >= 1
        take = max(need, width) if cap is None else min(max(need, width), cap - len(fed))
        assert len(fed) + take <= len(values), "ran out of values: the test sequence is too short"
        fed.extend(values[len(fed): len(fed) + take])
    return fed


def still_needed_cases() -> Iterator[tuple[str, list[float], float, dict[str, Any]]]:
    rng = np.random.default_rng(77)
    for i in range(6):
        yield f"normal{i}", list(rng.normal(100, 15 + 5 * i, 400)), 0.05, {}
    reset = alternating(80)
    reset[20] = 140.0
    yield "reset", reset, 0.05, {}
    yield "n0=6,k=3", list(rng.normal(50, 10, 200)), 0.05, {"n0": 6, "k_limit": 3}
    yield "alpha=0.1", list(rng.normal(50, 10, 200)), 0.04, {"alpha": 0.1}
    yield "capped", [1.0, 199.0] * 30, 0.01, {"cap": 25}
    yield "cap inside look-ahead", alternating(60), 0.05, {"cap": 21}
    yield "beyond 100", list(rng.normal(100, 30, 400)), 0.05, {}


@pytest.mark.parametrize(("name", "values", "target", "kw"), list(still_needed_cases()),
                         ids=[c[0] for c in still_needed_cases()])
def test_still_needed_never_over_asks(name: str, values: list[float], target: float, kw: dict[str, Any]) -> None:
    # the reference decision sees at most `cap` values, as the runner does
    full = decide(values[: kw.get("cap")], target, **kw)
    assert full.done, name
    # one batch of still_needed at a time reaches the same decision with exactly n_used values
    fed = feed(values, target, **kw)
    assert len(fed) == full.n_used
    got = decide(fed, target, **kw)
    assert (got.n_solution, got.n_used, got.capped) == (full.n_solution, full.n_used, full.capped)
    # a wider pool may run ahead, but the decision is the same
    for width in (2, 7):
        wide = decide(feed(values, target, width=width, **kw), target, **kw)
        assert (wide.n_solution, wide.n_used, wide.capped) == (full.n_solution, full.n_used, full.capped)


def test_still_needed_is_a_lower_bound_at_every_prefix() -> None:
    rng = np.random.default_rng(2024)
    for seq in range(4):
        x = list(rng.normal(100, 20, 120))
        full = decide(x, 0.05)
        assert full.done
        for n in range(full.n_used + 3):
            need = still_needed(x[:n], 0.05)
            if n < full.n_used:
                assert 1 <= need <= full.n_used - n, (seq, n, need, full.n_used)
            else:
                assert need == 0, (seq, n)


# =========================================================================== the real simulation

SHORT = ["simulation.duration_days=60", "simulation.warmup_days=10"]
KPI = "delayed_patients_per_day"   # cv ~ 0.18 per replication on this scenario: ~15-25 replications at 10%


@pytest.fixture(scope="module")
def minimal_short(minimal_path: Any) -> Any:
    return load_scenario(minimal_path, overrides=SHORT)


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessExecutor]:
    with ProcessExecutor(2) as ex:
        yield ex


class WideSerial(SerialExecutor):
    """Runs in-process but claims 7 workers, so the runner asks it for batches of at least 7."""

    workers = 7

    def __init__(self) -> None:
        self.tasks = 0

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any],
            label: Callable[[Any], str] = repr) -> Iterator[tuple[int, Any]]:
        self.tasks += len(tasks)
        yield from super().run(fn, tasks, label)


@pytest.fixture(scope="module")
def serial_run(minimal_short: Any) -> Any:
    return simulate_to_precision(minimal_short, KPI, StoppingRule(0.10), seed=3,
                                 executor=SerialExecutor(), keep_patients=False)


def test_simulate_to_precision_same_on_serial_and_process_pool(minimal_short: Any, serial_run: Any, pool: Any) -> None:
    run_s, dec_s = serial_run
    run_p, dec_p = simulate_to_precision(minimal_short, KPI, StoppingRule(0.10), seed=3,
                                         executor=pool, keep_patients=False)
    assert dec_s.n_solution is not None and not dec_s.capped
    assert (dec_p.n_solution, dec_p.n_used, dec_p.capped) == (dec_s.n_solution, dec_s.n_used, dec_s.capped)
    assert dec_p.precision == dec_s.precision
    assert len(run_s.replications) == dec_s.n_used == len(run_p.replications)
    assert [r.replication for r in run_p.replications] == list(range(dec_s.n_used))
    assert run_p.kpi_frame().equals(run_s.kpi_frame())


def test_simulate_to_precision_decision_is_the_method_on_the_kept_values(minimal_short: Any, serial_run: Any) -> None:
    run, dec = serial_run
    values = run.kpi_frame()[KPI].tolist()
    prec = reference_precision(values)
    assert reference_solution(prec, 0.10) == (dec.n_solution, dec.n_used)
    np.testing.assert_allclose(dec.precision, prec, rtol=1e-10)
    # the kept replications are exactly replications 0 .. n_used - 1 of a plain run with that seed
    plain = simulate(minimal_short, dec.n_used, seed=3, workers=1, keep_patients=False)
    assert plain.kpi_frame().equals(run.kpi_frame())


def test_simulate_to_precision_drops_replications_run_ahead(minimal_short: Any, serial_run: Any) -> None:
    _, dec_s = serial_run
    wide = WideSerial()
    run_w, dec_w = simulate_to_precision(minimal_short, KPI, StoppingRule(0.10), seed=3,
                                         executor=wide, keep_patients=False)
    assert wide.tasks > dec_s.n_used            # it really did run ahead
    assert (dec_w.n_solution, dec_w.n_used) == (dec_s.n_solution, dec_s.n_used)
    assert len(run_w.replications) == dec_w.n_used
    assert run_w.kpi_frame().equals(serial_run[0].kpi_frame())


def test_simulate_to_precision_cap(minimal_short: Any) -> None:
    run, dec = simulate_to_precision(minimal_short, KPI, StoppingRule(1e-4, cap=4), seed=3, executor=SerialExecutor(),
                                     keep_patients=False)
    assert dec.capped and dec.n_solution is None and dec.n_used == 4 == len(run.replications)
    with pytest.raises(ValueError, match="cap"):
        StoppingRule(0.1, cap=2)


def test_simulate_to_precision_unknown_kpi(minimal_short: Any) -> None:
    with pytest.raises(FlowsimError, match="no_such_kpi"):
        simulate_to_precision(minimal_short, "no_such_kpi", StoppingRule(0.1, cap=3), executor=SerialExecutor(),
                              keep_patients=False)
    with pytest.raises(FlowsimError, match=r"delayed_patients_per_dya.*did you mean.*delayed_patients_per_day"):
        simulate_to_precision(minimal_short, "delayed_patients_per_dya", StoppingRule(0.1, cap=3),
                              executor=SerialExecutor(),
                              keep_patients=False)


# =========================================================================== choose_warmup


def test_choose_warmup_on_minimal(minimal_short: Any, pool: Any) -> None:
    pilot_days = 120
    choice = choose_warmup(minimal_short, seed=5, pilot_replications=3, pilot_days=pilot_days,
                           executor=SerialExecutor())
    total = pilot_days + minimal_short.simulation.duration_days
    assert choice.kpi == "delayed_midnight" and choice.pilot_days == pilot_days and choice.pilot_replications == 3
    assert len(choice.series) == total and list(choice.series.index) == list(range(total))
    assert choice.days % 5 == 0
    assert 0 <= choice.days <= min(pilot_days, (total // 5 // 2) * 5)
    assert choice.days == choice.mser.truncation
    assert choice.mser.truncation == mser5(choice.series.to_numpy()).truncation
    assert choice.as_dict() == {"warmup_days": choice.days, "method": "MSER-5", "kpi": "delayed_midnight",
                                "pilot_days": pilot_days, "pilot_replications": 3,
                                "reliable": choice.mser.reliable}
    # the pilot is the same on a process pool
    pooled = choose_warmup(minimal_short, seed=5, pilot_replications=3, pilot_days=pilot_days, executor=pool)
    assert pooled.days == choice.days
    np.testing.assert_array_equal(pooled.series.to_numpy(), choice.series.to_numpy())
    assert with_warmup(minimal_short, choice.days).simulation.warmup_days == choice.days


def test_choose_warmup_refuses_a_snapshot_start(scenario_builder: Callable[..., dict[str, Any]]) -> None:
    sc = validate_dict(scenario_builder(warmup_days=0, initial_state={"acute_occupied": 3}))
    with pytest.raises(FlowsimError, match="initial_state"):
        choose_warmup(sc, executor=SerialExecutor())


def test_choose_warmup_unknown_series(scenario_builder: Callable[..., dict[str, Any]]) -> None:
    sc = validate_dict(scenario_builder(duration_days=20))
    with pytest.raises(FlowsimError, match=re.escape("'no_such_series' is not a daily series")):
        choose_warmup(sc, kpi="no_such_series", pilot_replications=1, pilot_days=20, executor=SerialExecutor())
    with pytest.raises(FlowsimError, match="did you mean acute_occupied_midnight"):
        choose_warmup(sc, kpi="acute_occupied_midnite", pilot_replications=1, pilot_days=20,
                      executor=SerialExecutor())


def test_choose_warmup_finds_the_known_warmup_of_an_infinite_server_system(
        scenario_builder: Callable[..., dict[str, Any]]) -> None:
    """M/D/inf from empty: Poisson(lam) arrivals, every stay exactly L days, unlimited beds.

    The midnight census at the end of day d is Poisson with mean lam min(d + 1, L): a linear ramp that
    reaches steady state lam L exactly at day L - 1 (the linear-ramp case above, made by the model).
    lam = 8, L = 20, 5 pilot replications: steady mean 160, per-day sd of the pilot mean sqrt(160/5) = 5.7,
    batch-mean sd s_b ~ 5.4 (census correlation 1 - h/L).

    * Every truncation >= 15 days: the batch of days 10-14 has mean bias lam x 7 = 56 ~ 10 s_b, so keeping it
      would need noise 2 x 56 x s_b ~ 600 to cancel a drop of 56^2 - s_b^2 ~ 3100 in n^2 MSER (5 sd).
    * The median of 9 seeds is in [L, L + 50]: truncating at 15 has probability < 0.1 per seed (batch 15-19
      still has bias 16 ~ 3 s_b: mean change -227 against sd 173), so a median below L has probability
      Binomial(9, 0.1) >= 5 ~ 0.001.  Past the ramp the census is correlated over L = 4 batches, which
      inflates the random-walk variance per batch by 1 + 2 sum rho_k^2 ~ 2.75 (rho = 0.75, 0.5, 0.25), so
      P(overshoot >= m batches) ~ 2 Phi(-sqrt(m / 5.5)); a median above L + 50 needs 5 seeds at m >= 11
      (0.16 each): Binomial(9, 0.16) >= 5 has probability 0.007.
    """
    lam, L = 8.0, 20
    sc = validate_dict(scenario_builder(rate=lam, beds="unlimited", acute_los={"dist": "fixed", "value": float(L)},
                                        duration_days=30, warmup_days=0))
    days = []
    for seed in range(9):
        choice = choose_warmup(sc, kpi="acute_occupied_midnight", seed=seed, pilot_replications=5, pilot_days=200,
                               executor=SerialExecutor())
        if seed == 0:
            # the premise: the pilot's census follows lam min(d + 1, L) within 5 Poisson sd on every day
            s = choice.series.to_numpy()
            mean = lam * np.minimum(np.arange(len(s)) + 1, L)
            assert np.all(np.abs(s - mean) <= 5 * np.sqrt(mean / 5)), np.max(np.abs(s - mean) / np.sqrt(mean / 5))
        assert choice.mser.reliable, seed
        assert choice.days >= 15, (seed, choice.days)
        days.append(choice.days)
    assert L <= np.median(days) <= L + 50, days


def test_still_needed_by_hand() -> None:
    """The exact bound, worked out by hand with n0 = 3 and k_limit = 5 (the tests above check only that it never
    over-asks, which an under-asking rule also passes, at the cost of extra batches).

    - Four nearly equal values: the first candidate, 3, already meets 5% and needs its 5 confirmations, so the
      run needs 3 + 5 = 8 in all: 4 more.
    - Four scattered values against a 1% target: no candidate yet, the earliest possible is the 5th, which needs
      5 confirmations: 5 + 5 - 4 = 6 more.
    - Two values: n0 - n + k_limit = 3 - 2 + 5 = 6 more."""
    tight = [100.0, 100.01, 99.99, 100.0]
    assert relative_half_width(tight[:3]) < 0.05
    assert still_needed(tight, 0.05) == 4
    scattered = [50.0, 150.0, 60.0, 140.0]
    assert relative_half_width(scattered[:3]) > 0.01 and relative_half_width(scattered) > 0.01
    assert still_needed(scattered, 0.01) == 6
    assert still_needed(scattered[:2], 0.01) == 6
