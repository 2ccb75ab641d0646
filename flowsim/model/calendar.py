"""Calendar arithmetic: turning dated scenario fields into step functions of model time.

Model time is float days with 0 at ``simulation.start_date`` 00:00 (warm-up runs
at negative times), so day ``floor(t)`` and its weekday are exact.  Everything
here is computed once before a run, keeping the per-event path free of
date handling.
"""

from __future__ import annotations

import datetime as dt
import functools
import math

import numpy as np

from flowsim.scenario.schema import (
    MONTHS,
    Arrivals,
    CalendarRules,
    Capacity,
    Disruption,
    Hours,
    ReplayCapacity,
    ReplaySeries,
    Schedule,
    Surge,
)

INF = math.inf

Steps = tuple[np.ndarray, np.ndarray]
"""(times, values): value ``values[i]`` holds on ``[times[i], times[i+1])``; the last to the end."""


def day_of(start: dt.date, d: dt.date) -> float:
    """Model time (days from ``start``) of calendar date ``d``, at its midnight."""
    return float((d - start).days)


def _shift_year(d: dt.date, years: int) -> dt.date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February in a non-leap year
        return d.replace(year=d.year + years, day=28)


def bank_holidays(rules: CalendarRules, start: dt.date, t0: float, t1: float) -> frozenset[int]:
    """Model days (``floor(t)``) that are bank holidays under ``rules``, from t0 to two weeks past t1.

    England's calendar comes from the maintained ``holidays`` package (substitute days included, e.g.
    Tuesday 27 December 2016 for Christmas Day on a Sunday).  Only holidays that fall on a weekday
    change anything: a weekend day is already off.
    """
    if rules.bank_holidays is None:
        return frozenset()
    return _england(start, math.floor(t0), math.ceil(t1))


@functools.lru_cache(maxsize=16)
def _england(start: dt.date, first_day: int, last_day: int) -> frozenset[int]:
    """England's bank holidays on weekdays as model days (cached: every replication of a run asks the same)."""
    import holidays  # imported here: only scenarios that ask for a calendar need it

    first = start + dt.timedelta(days=first_day)
    last = start + dt.timedelta(days=last_day + 15)
    cal = holidays.country_holidays("GB", subdiv="ENG", years=range(first.year, last.year + 1))
    return frozenset(int((d - start).days) for d in cal if first <= d <= last and d.weekday() < 5)


def is_off(start: dt.date, day: int, holidays: frozenset[int] = frozenset()) -> bool:
    """Is model day ``day`` a weekend day or a bank holiday?"""
    return (start + dt.timedelta(days=day)).weekday() >= 5 or day in holidays


def capacity_steps(cap: Capacity, start: dt.date, t0: float, t1: float) -> Steps:
    """Expand a capacity (number, ``unlimited`` or schedule) into a step function on [t0, t1)."""
    if cap == "unlimited":
        return np.array([t0]), np.array([INF])
    if isinstance(cap, int):
        return np.array([t0]), np.array([float(cap)])
    assert isinstance(cap, Schedule)
    windows: list[tuple[float, float, int | None, int | None]] = []
    first_year = (start + dt.timedelta(days=math.floor(t0))).year - 1
    last_year = (start + dt.timedelta(days=math.ceil(t1))).year + 1
    for p in cap.periods:
        shifts = range(first_year - p.start.year, last_year - p.start.year + 1) if p.annual else range(0, 1)
        for k in shifts:
            s = day_of(start, _shift_year(p.start, k))
            e = INF if p.end is None else day_of(start, _shift_year(p.end, k)) + 1.0
            if e > t0 and s < t1:
                windows.append((s, e, p.set, p.add))
    breaks = sorted({t0, *(max(t0, w[0]) for w in windows), *(w[1] for w in windows if w[1] < t1)})
    values = []
    for b in breaks:
        v = float(cap.base)
        for s, e, set_, add in windows:  # listed order: later periods act on earlier ones
            if s <= b < e:
                v = float(set_) if set_ is not None else v + float(add or 0)
        values.append(max(0.0, v))
    times = np.array(breaks, dtype=float)
    vals = np.array(values, dtype=float)
    keep = np.concatenate(([True], vals[1:] != vals[:-1]))
    return times[keep], vals[keep]


def disrupted(steps: Steps, disruptions: list[Disruption], start: dt.date, t0: float, t1: float) -> Steps:
    """Apply ward closures (beds out of use) and staff absence (percent lost) to a capacity.

    Absence rounds the remaining capacity down: 15% of 45 packages leaves 38, not 38.25.
    """
    if not disruptions:
        return steps
    windows = [(day_of(start, d.start), day_of(start, d.end) + 1.0, d) for d in disruptions]
    breaks = sorted({*steps[0].tolist(), *(max(t0, a) for a, _, _ in windows if a < t1),
                     *(b for _, b, _ in windows if t0 < b < t1)})
    vals = []
    for b in breaks:
        v = value_at(steps, b)
        for a, e, d in windows:
            if a <= b < e and math.isfinite(v):
                if d.kind == "ward_closure":
                    v = max(0.0, v - float(d.beds or 0))
                else:
                    v = float(math.floor(v * (1.0 - float(d.percent or 0) / 100.0) + 1e-9))
        vals.append(v)
    times = np.array(breaks, dtype=float)
    values = np.array(vals, dtype=float)
    keep = np.concatenate(([True], values[1:] != values[:-1]))
    return times[keep], values[keep]


def value_at(steps: Steps, t: float) -> float:
    """The value of a step function (change times, values) at model time ``t``."""
    times, values = steps
    i = int(np.searchsorted(times, t, side="right")) - 1
    return float(values[max(i, 0)])


def weekday_times(rate: float, hours: Hours, start: dt.date, t0: float, t1: float, *,
                  rng: np.random.Generator, holidays: frozenset[int] = frozenset()) -> np.ndarray:
    """Scheduled admissions: a Poisson number each working day (not weekends or ``holidays``), at uniform times
    within ``hours``."""
    out = []
    for d in range(math.floor(t0), math.ceil(t1)):
        n = int(rng.poisson(rate))
        if is_off(start, d, holidays):
            continue  # the draw is still made, so weekday counts do not depend on the calendar
        u = np.sort(rng.random(n))
        out.append(d + (hours.start + u * (hours.end - hours.start)) / 24.0)
    times = np.concatenate(out) if out else np.zeros(0)
    return times[(times >= t0) & (times < t1)]


def team_steps(
    staff: Steps, weekend_staff: Steps, hours: Hours, weekend_hours: Hours | None, *,
    start: dt.date, t0: float, t1: float, holidays: frozenset[int] = frozenset(),
) -> Steps:
    """Capacity of a team that works ``hours`` on weekdays and ``weekend_hours`` at weekends (and on
    ``holidays``, model days treated like a weekend)."""
    wk_hours = weekend_hours or hours
    day0 = math.floor(t0)
    breaks: set[float] = {t0}
    for d in range(day0, math.ceil(t1) + 1):
        weekend = is_off(start, d, holidays)
        h = wk_hours if weekend else hours
        breaks.add(d + h.start / 24.0)
        breaks.add(d + h.end / 24.0)
    breaks.update(float(x) for x in staff[0])
    breaks.update(float(x) for x in weekend_staff[0])
    times = np.array(sorted(b for b in breaks if t0 <= b < t1))
    vals = np.empty(len(times))
    for i, b in enumerate(times):
        d = math.floor(b)
        weekend = is_off(start, d, holidays)
        h = wk_hours if weekend else hours
        frac = (b - d) * 24.0
        open_ = h.start - 1e-9 <= frac < h.end - 1e-9
        vals[i] = value_at(weekend_staff if weekend else staff, b) if open_ else 0.0
    keep = np.concatenate(([True], vals[1:] != vals[:-1]))
    return times[keep], vals[keep]


def hourly_rates(arr: Arrivals, start: dt.date, t0: float, t1: float,
                 extra_surges: tuple[Surge, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Arrival rate per day in each hour from t0 to t1: returns (hour start times, rates)."""
    n_hours = int(math.ceil((t1 - t0) * 24.0 - 1e-9))
    hour_t = t0 + np.arange(n_hours) / 24.0
    day = np.floor(hour_t + 1e-12).astype(int)
    base = np.datetime64(start.isoformat(), "D")
    dates = base + day.astype("timedelta64[D]")
    months = dates.astype("datetime64[M]").astype(int) % 12  # 0 = January
    weekdays = (dates.astype("datetime64[D]").astype(int) + 3) % 7  # 0 = Monday (1970-01-01 was Thu)
    hours = np.round((hour_t - day) * 24.0).astype(int) % 24

    mf = np.array([arr.month_factors.get(m, 1.0) for m in MONTHS])  # type: ignore[call-overload]
    mf = mf / mf.mean()
    wf = np.asarray(arr.weekday_factors, dtype=float)
    wf = wf / wf.mean()
    hf = np.asarray(arr.hour_profile, dtype=float)
    hf = hf / hf.mean()

    growth_origin = day_of(start, arr.growth_from) if arr.growth_from else 0.0
    years = (hour_t - growth_origin) / 365.25
    rate = arr.rate_per_day * (1.0 + arr.annual_growth) ** years * mf[months] * wf[weekdays] * hf[hours]
    for s in (*arr.surges, *extra_surges):
        a, b = day_of(start, s.start), day_of(start, s.end) + 1.0
        rate = np.where((hour_t >= a) & (hour_t < b), rate * s.factor, rate)
    return hour_t, rate


def arrival_times(arr: Arrivals, start: dt.date, t0: float, t1: float, *, rng: np.random.Generator,
                  extra_surges: tuple[Surge, ...] = ()) -> np.ndarray:
    """Non-homogeneous Poisson arrivals on [t0, t1) by inverting the cumulative intensity.

    Why inversion rather than thinning: the rate is piecewise constant by hour,
    so the inverse is exact and needs no rejected draws, and two scenarios that
    differ in demand map the *same* unit-rate Poisson process onto their own
    clocks, which keeps arrivals comparable across options (common random numbers).
    """
    hour_t, rate = hourly_rates(arr, start, t0, t1, extra_surges)
    cum = np.concatenate(([0.0], np.cumsum(rate / 24.0)))
    edges = np.concatenate((hour_t, [t1]))
    total = cum[-1]
    chunks = []
    acc = 0.0
    while acc <= total:
        n = max(64, int((total - acc) * 1.1) + 64)
        e = acc + np.cumsum(rng.exponential(1.0, n))
        chunks.append(e)
        acc = float(e[-1])
    unit = np.concatenate(chunks)
    unit = unit[unit < total]
    return np.interp(unit, cum, edges)


# ------------------------------------------------------------------ history replay (Scenario.replay)
def replayed_days(series: ReplaySeries, start: dt.date, t0: float, t1: float) -> dict[int, int]:
    """Model day -> count for the days of a replayed series inside the run [t0, t1)."""
    first = int(day_of(start, series.start))
    lo, hi = math.floor(t0), math.ceil(t1)
    return {first + i: n for i, n in enumerate(series.counts) if lo <= first + i < hi}


def placed_in_days(counts: dict[int, int], hour_profile: list[float], rng: np.random.Generator) -> np.ndarray:
    """Exactly ``counts[d]`` arrival times within each model day ``d``, spread by the hour-of-day profile.

    Each day's times are sorted uniforms mapped through the profile's distribution function (piecewise
    linear: uniform within each hour, hours weighted by the profile), drawn day by day in date order from
    ``rng`` alone, so options that share the replayed counts share these instants (common random numbers).
    """
    hf = np.asarray(hour_profile, dtype=float)
    cum = np.concatenate(([0.0], np.cumsum(hf) / hf.sum()))
    edges = np.arange(25, dtype=float) / 24.0
    out = [d + np.interp(np.sort(rng.random(counts[d])), cum, edges) for d in sorted(counts)]
    return np.concatenate(out) if out else np.zeros(0)


def with_replayed(times: np.ndarray, days: set[int], replayed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times with those on replayed ``days`` replaced by ``replayed``: (times in order, and for each
    whether it was replayed).  The others are the model's own, unchanged, so days outside the replay keep
    the arrivals a run without it would have had."""
    keep = ~np.isin(np.floor(times).astype(int), np.fromiter(days, dtype=int, count=len(days)))
    merged = np.concatenate((times[keep], replayed))
    flag = np.concatenate((np.zeros(int(keep.sum()), dtype=bool), np.ones(len(replayed), dtype=bool)))
    order = np.argsort(merged, kind="stable")
    return merged[order], flag[order]


def replayed_capacity(steps: Steps, dated: ReplayCapacity, start: dt.date, t0: float, t1: float) -> Steps:
    """A capacity with replayed dated values on top: each holds from its date until the next one (to the end
    after the last); before the first, the scenario's own capacity (``steps``)."""
    times = np.array([day_of(start, s.date) for s in dated.steps], dtype=float)
    values = np.array([float(s.places) for s in dated.steps], dtype=float)
    first = float(times[0])
    breaks = sorted({*(float(t) for t in steps[0] if t < first), *(max(t0, float(t)) for t in times if t < t1)})
    vals = np.array([value_at((times, values), b) if b >= first else value_at(steps, b) for b in breaks])
    out_t = np.array(breaks, dtype=float)
    keep = np.concatenate(([True], vals[1:] != vals[:-1]))
    return out_t[keep], vals[keep]
