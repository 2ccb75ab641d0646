"""Warm-up length by MSER-5 (White 1997; White, Cobb & Spratt 2000) on a pilot run.

Why MSER-5: it needs no tuning constants beyond the batch size, it is the
truncation rule most often recommended in the comparison by Hoad, Robinson &
Davies (2010, "Automating warm-up length estimation"), and it is cheap, so a
pilot can be run every time a scenario changes.

The rule: average the pilot's output series into batches of 5, and for each
candidate truncation ``d`` (in batches) compute

    MSER(d) = sum_{j>=d} (Z_j - mean(Z_d..Z_{k-1}))^2 / (k - d)^2,

the squared standard error of the truncated mean.  The warm-up is the ``d``
that minimises it.  Only the first half of the series is searched: a minimum
later than that means the pilot was too short to show a steady state, and we
say so rather than return a number that would discard most of the run.

Caveat for seasonal models (e.g. Rotherham's winter): MSER sees a seasonal
swing as non-stationarity.  Run the pilot over whole years and read the saved
plot before trusting the number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BATCH = 5


@dataclass(frozen=True)
class MserResult:
    """Chosen truncation of a series by MSER with batch size ``batch``."""

    truncation: int          # observations to discard (a multiple of ``batch``)
    batch: int
    statistic: np.ndarray = field(repr=False)   # MSER(d) for d = 0 .. len(statistic) - 1 batches
    batch_means: np.ndarray = field(repr=False)
    reliable: bool = True    # False when the minimum sits at the edge of the searched half

    @property
    def truncation_batches(self) -> int:
        """The truncation point in batches of the batch size."""
        return self.truncation // self.batch


def mser(series: np.ndarray | list[float], batch: int = BATCH) -> MserResult:
    """MSER-``batch`` truncation point of ``series`` (observations in time order).

    Trailing observations that do not fill a batch are ignored, as in the
    original method.  Raises ``ValueError`` if fewer than 4 batches exist: with
    so little data no truncation can be judged.
    """
    x = np.asarray(series, dtype=float)
    if x.ndim != 1:
        raise ValueError("MSER needs a one-dimensional series")
    if not np.isfinite(x).all():
        raise ValueError("MSER needs a finite series (no NaN or infinity)")
    k = len(x) // batch
    if k < 4:
        raise ValueError(f"MSER-{batch} needs at least {4 * batch} observations, got {len(x)}")
    z = x[: k * batch].reshape(k, batch).mean(axis=1)
    # suffix sums give every truncated mean and sum of squares in O(k)
    rev_sum = np.cumsum(z[::-1])[::-1]
    rev_sq = np.cumsum((z * z)[::-1])[::-1]
    d = np.arange(k // 2 + 1)
    n = k - d
    mean = rev_sum[d] / n
    ss = np.maximum(rev_sq[d] - n * mean * mean, 0.0)
    stat = ss / (n * n)
    best = int(np.argmin(stat))
    reliable = best < len(d) - 1
    return MserResult(truncation=best * batch, batch=batch, statistic=stat, batch_means=z, reliable=reliable)


def mser5(series: np.ndarray | list[float]) -> MserResult:
    """MSER with the customary batch size of 5."""
    return mser(series, BATCH)
