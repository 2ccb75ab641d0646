"""How many replications: the confidence-interval method with look-ahead (Hoad, Robinson & Davies 2010).

Why this method: it is the one the DES textbooks and STARS teaching models
use, it asks the analyst for a precision they understand ("the mean within
5%"), and the look-ahead guards against stopping on a lucky early run where
the sample variance happens to be small.

The rule, for replication results x_1, x_2, ... of one KPI:

* after n >= ``n0`` replications, d_n = t_{n-1, 1-alpha/2} * s_n / sqrt(n) / |mean_n|
  (the relative half-width of the confidence interval);
* the first n with d_n <= target is a candidate N; it is accepted only if
  d stays <= target for the next f(n) replications, where
  f(n) = ``k_limit`` for n <= 100 and floor(n * k_limit / 100) beyond;
* otherwise the search goes on from the first replication that broke it.

The decision uses replications in index order only, so it is the same
whatever executor ran them or how many ran ahead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


def look_ahead(n: int, k_limit: int = 5) -> int:
    """Replications that must confirm a candidate count ``n``."""
    return k_limit if n <= 100 else math.floor(n * k_limit / 100)


def relative_half_width(values: Sequence[float] | np.ndarray, alpha: float = 0.05) -> float:
    """t-interval half-width over |mean|; 0 for a constant series, inf if the mean is 0 but not the spread."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2:
        return math.inf
    sd = float(x.std(ddof=1))
    mean = abs(float(x.mean()))
    if sd == 0.0:
        return 0.0
    if mean == 0.0:
        return math.inf
    return float(stats.t.ppf(1 - alpha / 2, n - 1) * sd / math.sqrt(n) / mean)


@dataclass(frozen=True)
class StoppingRule:
    """When to stop adding replications (Hoad, Robinson and Davies 2010): the CI of the mean (level ``1 - alpha``)
    within ``precision`` of the mean, confirmed over a look-ahead of up to ``k_limit`` more, starting from ``n0``
    and never beyond ``cap``.  One value so that a caller states the whole rule, or none of it."""

    precision: float = 0.05
    alpha: float = 0.05
    n0: int = 3
    k_limit: int = 5
    cap: int = 100

    def __post_init__(self) -> None:
        if self.cap < self.n0:
            raise ValueError(f"the replication cap ({self.cap}) must be at least n0 ({self.n0})")


@dataclass(frozen=True)
class ReplicationDecision:
    """Outcome of the method on a prefix of results."""

    n_solution: int | None    # replications needed (None: not reached yet)
    n_used: int               # replications the result rests on (solution + look-ahead, or all run)
    precision: list[float]    # d_n for n = 1 .. n_used (inf where undefined)
    target: float
    capped: bool = False      # True when the cap stopped the search first

    @property
    def done(self) -> bool:
        """Whether the method has settled (a solution confirmed, or the cap reached)."""
        return self.n_solution is not None or self.capped


def decide(values: Sequence[float], target: float, *, alpha: float = 0.05, n0: int = 3, k_limit: int = 5,
           cap: int | None = None) -> ReplicationDecision:
    """Apply the method to ``values`` (in replication order); say whether more are needed.

    ``done`` is False when the prefix is too short to decide; run more
    replications and call again.  With ``cap``, the search stops at ``cap``
    replications whatever the precision (``capped`` is then True).
    """
    if target <= 0:
        raise ValueError("the target relative half-width must be positive")
    if n0 < 2:
        raise ValueError("at least 2 initial replications are needed for a variance")
    x = np.asarray(values, dtype=float)
    if cap is not None:
        x = x[:cap]  # replications beyond the cap never count, however many ran ahead
    prec = [relative_half_width(x[:n], alpha) for n in range(1, len(x) + 1)]
    candidate: int | None = None
    for n in range(n0, len(x) + 1):
        ok = prec[n - 1] <= target
        if candidate is None:
            if ok:
                candidate = n
        elif not ok:
            candidate = None
        if candidate is not None and n - candidate >= look_ahead(candidate, k_limit):
            used = candidate + look_ahead(candidate, k_limit)
            return ReplicationDecision(candidate, used, prec[:used], target)
    if cap is not None and len(x) >= cap:
        return ReplicationDecision(None, cap, prec[:cap], target, capped=True)
    return ReplicationDecision(None, len(x), prec, target)


def still_needed(values: Sequence[float], target: float, *, alpha: float = 0.05, n0: int = 3, k_limit: int = 5,
                 cap: int | None = None) -> int:
    """A lower bound on the further replications needed before ``decide`` can finish (0 if done)."""
    dec = decide(values, target, alpha=alpha, n0=n0, k_limit=k_limit, cap=cap)
    if dec.done:
        return 0
    n = len(values)
    if n < n0:
        need = n0 - n + k_limit
    else:
        # a candidate still inside its look-ahead window needs the rest of the window
        need = 1
        for c in range(n0, n + 1):
            if all(p <= target for p in dec.precision[c - 1:n]):
                need = c + look_ahead(c, k_limit) - n
                break
        else:
            need = 1 + k_limit
    if cap is not None:
        need = min(need, cap - n)
    return max(1, need)
