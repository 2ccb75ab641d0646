"""Queueing formulas and confidence intervals shared by the statistical tests.

Written independently of flowsim (the tests check flowsim against these), so nothing here imports
the package.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats


def erlang_b(c: int, a: float) -> float:
    """Erlang B blocking probability by the stable recursion B(k) = a B(k-1) / (k + a B(k-1))."""
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(c: int, a: float) -> float:
    """Probability of waiting in M/M/c (needs a < c), from Erlang B: C = B / (1 - (a/c)(1 - B))."""
    if a >= c:
        raise ValueError("Erlang C needs offered load a < c")
    b = erlang_b(c, a)
    return b / (1.0 - (a / c) * (1.0 - b))


def t_interval(x: Any, level: float = 0.99) -> tuple[float, float, float]:
    """Mean and two-sided t confidence interval of replication values."""
    a = np.asarray(x, dtype=float)
    n = len(a)
    assert n >= 2 and np.all(np.isfinite(a)), f"need >= 2 finite replication values, got {a}"
    m = float(a.mean())
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * a.std(ddof=1) / math.sqrt(n))
    return m, m - half, m + half
