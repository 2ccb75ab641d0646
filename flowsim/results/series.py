"""Time-weighted level series built from intervals, after the run.

A level (beds occupied, patients boarding, patients delayed) is the number of
intervals ``[start, end)`` covering ``t``.  We turn interval stamps into a
right-continuous step function once, then read daily means (exact integrals
of the step function), midnight censuses and time-weighted quantiles from it.
No per-event bookkeeping in the model is needed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class Level:
    """A step function: ``levels[i]`` holds on ``[times[i], times[i+1])``; 0 before ``times[0]``."""

    __slots__ = ("_cum", "_inf", "_inf_cum", "_tt", "levels", "times")

    def __init__(self, times: np.ndarray, levels: np.ndarray):
        self.times = np.asarray(times, dtype=float)
        self.levels = np.asarray(levels, dtype=float)
        finite = np.isfinite(self.times)
        first = float(self.times[finite].min()) if finite.any() else 0.0
        # a leading -inf breakpoint carries level 0, so replacing it loses no area
        self._tt = np.where(finite, self.times, first)
        widths = np.diff(self._tt)
        # an unlimited capacity is an infinite level: integrate it separately (as "time spent
        # infinite") so means come out as inf rather than inf - inf = NaN
        self._inf = np.isinf(self.levels)
        finite_levels = np.where(self._inf, 0.0, self.levels)
        self._cum = np.concatenate(([0.0], np.cumsum(finite_levels[:-1] * widths)))
        self._inf_cum = (np.concatenate(([0.0], np.cumsum(self._inf[:-1] * widths)))
                         if self._inf.any() else None)

    @classmethod
    def from_intervals(cls, starts: np.ndarray, ends: np.ndarray, t_end: float) -> Level:
        """Intervals with NaN start are ignored; NaN end means still open at ``t_end``."""
        starts = np.asarray(starts, dtype=float)
        ends = np.asarray(ends, dtype=float)
        ok = ~np.isnan(starts)
        s = starts[ok]
        e = np.where(np.isnan(ends[ok]), np.inf, ends[ok])
        t = np.concatenate((s, e))
        d = np.concatenate((np.ones(len(s)), -np.ones(len(e))))
        fin = np.isfinite(t) & (t <= t_end)
        t, d = t[fin], d[fin]
        # any order within a tie gives the same level after it (the last of each tie is kept).  A stable sort: the
        # stamps come in stay order, so starts and ends are each nearly sorted runs, which the stable sort (a
        # timsort) merges ~1.4x faster than the default SIMD quicksort sorts them (44 calls of a Rotherham
        # replication, measured here: 27 ms against 40 ms; on shuffled stamps the quicksort would win ~2x)
        order = np.argsort(t, kind="stable")
        t, d = t[order], d[order]
        lev = np.cumsum(d)
        if len(t) == 0:
            return cls(np.array([-np.inf]), np.array([0.0]))
        last = np.concatenate((t[1:] != t[:-1], [True]))  # keep the level after all changes at a time
        return cls(np.concatenate(([-np.inf], t[last])), np.concatenate(([0.0], lev[last])))

    @classmethod
    def from_steps(cls, times: np.ndarray, values: np.ndarray) -> Level:
        """A step function from change times and the value from each on."""
        return cls(np.asarray(times, dtype=float), np.asarray(values, dtype=float))

    @classmethod
    def combine(cls, levels: list[Level], fn: Callable[..., np.ndarray]) -> Level:
        """A step function ``fn(*values)`` of several step functions, exact at every breakpoint."""
        times = np.unique(np.concatenate([lv.times[np.isfinite(lv.times)] for lv in levels]))
        if len(times) == 0:
            return cls(np.array([-np.inf]), np.array([0.0]))
        return cls(np.concatenate(([-np.inf], times)),
                   np.concatenate(([0.0], fn(*(lv.at(times) for lv in levels)))))

    def at(self, t: np.ndarray | float, left: bool = False) -> np.ndarray:
        """Value at ``t`` (right-continuous), or just before ``t`` with ``left=True``."""
        i = np.searchsorted(self.times, t, side="left" if left else "right") - 1
        return np.where(i >= 0, self.levels[np.maximum(i, 0)], 0.0)

    def integral(self, t: np.ndarray) -> np.ndarray:
        """Integral of the level's finite part from the first finite breakpoint to each ``t``.

        Unlimited stretches contribute nothing here; ``_span`` turns a span that
        touches one into ``inf``.
        """
        t = np.asarray(t, dtype=float)
        tt = self._tt
        i = np.maximum(np.searchsorted(tt, t, side="right") - 1, 0)
        return self._cum[i] + np.where(self._inf[i], 0.0, self.levels[i]) * np.maximum(t - tt[i], 0.0)

    def _span(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Integral over each [a, b): inf where the level is unlimited for part of the span."""
        area = self.integral(b) - self.integral(a)
        inf_cum = self._inf_cum
        if inf_cum is None:
            return area
        tt = self._tt

        def inf_time(t: np.ndarray) -> np.ndarray:
            i = np.maximum(np.searchsorted(tt, t, side="right") - 1, 0)
            return inf_cum[i] + self._inf[i] * np.maximum(t - tt[i], 0.0)

        return np.where(inf_time(b) - inf_time(a) > 0, np.inf, area)

    def daily_mean(self, n_days: int, t_start: float = 0.0) -> np.ndarray:
        """Exact time-weighted mean over each day ``[t_start + d, t_start + d + 1)``."""
        edges = t_start + np.arange(n_days + 1, dtype=float)
        return self._span(edges[:-1], edges[1:])

    def mean(self, a: float, b: float) -> float:
        """Time-weighted mean over ``[a, b)``."""
        return float(self._span(np.array([a]), np.array([b]))[0] / (b - a))


def visit_load(starts: np.ndarray, ends: np.ndarray, lengths: np.ndarray, first: float, last: float, *,
               at: np.ndarray) -> np.ndarray:
    """Visits a day committed at each time ``at`` by packages [start, end) tapering from ``first``
    to ``last`` over their ``lengths`` (visit-based P1 capacity)."""
    ok = ~np.isnan(starts)
    s, e, n = starts[ok], np.where(np.isnan(ends[ok]), np.inf, ends[ok]), lengths[ok]
    t = np.asarray(at, dtype=float)
    out = np.zeros(len(t))
    for i in range(0, len(t), 512):  # chunks keep the (times x packages) matrix small
        tt = t[i:i + 512, None]
        active = (s <= tt) & (tt < e)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(n > 0, np.clip((tt - s) / n, 0.0, 1.0), 1.0)
        out[i:i + 512] = np.sum(np.where(active, first + (last - first) * frac, 0.0), axis=1)
    return out
