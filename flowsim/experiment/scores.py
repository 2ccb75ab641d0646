"""Scores for forecasts judged against what happened: prediction intervals, CRPS and the interval score.

Why these: a board asks two things of a forecast, "how far off is the central figure" (absolute error,
bias) and "do the stated ranges hold" (coverage of the 50% and 90% prediction intervals).  A proper
score folds both into one number that no forecaster can improve by hedging: the continuous ranked
probability score (CRPS, in the units of the observation; it reduces to the absolute error for a point
forecast) and the interval score of a central interval (Gneiting and Raftery 2007, JASA 102:359-378).

A *prediction* interval here is the spread of the replications themselves (empirical quantiles of the
per-replication values), not the confidence interval of their mean: it says where one realisation,
such as the year that actually happened, is expected to fall.

The model's predictive distribution is the ensemble of replications (empirical CDF); a naive forecast's
is a normal distribution with a stated mean and standard deviation, so both are scored the same way.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

#: Quantile rule for prediction intervals from replications (numpy's default, linear interpolation
#: between order statistics: "type 7" in Hyndman and Fan 1996).
QUANTILE_METHOD = "linear (Hyndman and Fan type 7)"


def _finite(x: np.ndarray | list[float]) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    return a[np.isfinite(a)]


def prediction_interval(ensemble: np.ndarray | list[float], level: float) -> tuple[float, float]:
    """The central ``level`` interval of the replications: their (1-level)/2 and (1+level)/2 quantiles."""
    a = _finite(ensemble)
    if len(a) == 0:
        return math.nan, math.nan
    lo = np.quantile(a, (1 - level) / 2, method="linear")
    hi = np.quantile(a, (1 + level) / 2, method="linear")
    return float(lo), float(hi)


def crps_ensemble(ensemble: np.ndarray | list[float], y: float) -> float:
    """CRPS of the empirical distribution of ``ensemble`` at observation ``y``.

    CRPS(F, y) = E|X - y| - E|X - X'| / 2 with X, X' independent draws from F; for the empirical CDF
    of m values both expectations are exact averages (over m values and over all m^2 ordered pairs).
    Computed from the sorted sample in O(m log m): sum_{i,j} |x_i - x_j| = 2 sum_i (2i - m - 1) x_(i).
    """
    a = np.sort(_finite(ensemble))
    m = len(a)
    if m == 0 or not math.isfinite(y):
        return math.nan
    first = float(np.mean(np.abs(a - y)))
    ranks = 2.0 * np.arange(1, m + 1) - m - 1
    pairs = 2.0 * float(np.sum(ranks * a)) / (m * m)
    return first - pairs / 2.0


def crps_normal(mean: float, sd: float, y: float) -> float:
    """CRPS of a normal N(mean, sd^2) at ``y`` (closed form): sd [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)].

    With ``sd`` = 0 the forecast is a point and the CRPS is the absolute error."""
    if not (math.isfinite(mean) and math.isfinite(y) and math.isfinite(sd)) or sd < 0:
        return math.nan
    if sd == 0:
        return abs(y - mean)
    z = (y - mean) / sd
    return sd * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / math.sqrt(math.pi))


def normal_interval(mean: float, sd: float, level: float) -> tuple[float, float]:
    """The central ``level`` interval of N(mean, sd^2)."""
    if not (math.isfinite(mean) and math.isfinite(sd)):
        return math.nan, math.nan
    half = float(stats.norm.ppf((1 + level) / 2)) * sd
    return mean - half, mean + half


def interval_score(low: float, high: float, y: float, level: float) -> float:
    """Interval score of the central ``level`` interval [low, high] at ``y`` (lower is better).

    IS = (high - low) + (2 / alpha) (low - y) 1{y < low} + (2 / alpha) (y - high) 1{y > high},
    alpha = 1 - level: the width, plus a penalty for a miss that grows with the distance and with the
    confidence claimed."""
    if not all(math.isfinite(v) for v in (low, high, y)):
        return math.nan
    alpha = 1.0 - level
    score = high - low
    if y < low:
        score += 2.0 / alpha * (low - y)
    elif y > high:
        score += 2.0 / alpha * (y - high)
    return float(score)


def inside(low: float, high: float, y: float) -> bool | None:
    """Whether ``y`` lies in [low, high] (None when the interval is undefined)."""
    if not all(math.isfinite(v) for v in (low, high, y)):
        return None
    return bool(low <= y <= high)


def coverage_tolerance(n: int, level: float, confidence: float = 0.99) -> tuple[int, int]:
    """How many of ``n`` independent observations may fall inside a ``level`` interval by chance:
    the central ``confidence`` range of Binomial(n, level) (for judging coverage without over-reading it)."""
    lo, hi = stats.binom.interval(confidence, n, level)
    return int(lo), int(hi)
