"""Across-replication statistics: means with 95% confidence intervals that respect each measure's range.

Replications are independent (distinct replication indices give independent
streams), so intervals are built on replication means with Student's t.

Two kinds of interval:

- :func:`mean_ci`, the classical t interval ``mean +- t * s / sqrt(n)``, for
  quantities that can take any sign: paired differences between options,
  net costs.
- :func:`bounded_ci`, for measures that cannot leave a range: counts, days and
  money spent are never negative, shares of days or of admissions never exceed
  100%.  A t interval ignores that and, for a skewed measure near its bound
  (a handful of OPEL 4 days, a few 12-hour waits), prints impossible values
  such as "0.80 [-0.03, 1.63] days".  ``bounded_ci`` builds the t interval on a
  transformed scale where the range is the whole real line and maps it back
  (the delta method): ``log(mean - low)`` for a lower bound only,
  ``logit((mean - low) / (high - low))`` for both.  The interval then lies inside
  the range by construction, is asymmetric where the data are (long upper tail
  for a small count), and tends to the t interval when the mean is far from the
  bounds.  When every replication sits on a bound the interval is that bound;
  if some replication lies outside the declared range the declaration does not
  fit this measure and the plain t interval is returned instead.

A single replication gets an undefined (NaN) interval rather than a fake one.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

#: How the report's "How to read" and every CSV describe the intervals.
INTERVAL_METHOD = ("95% confidence intervals over replications: Student's t on the replication means; for measures "
                   "that cannot leave a range (counts, days and costs are never negative, shares never exceed 100%) "
                   "the t interval is built on the log (one bound) or logit (two bounds) scale and transformed back, "
                   "so it never leaves the range")

Bounds = tuple[float | None, float | None]


def _clean(x: np.ndarray | pd.Series) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    return a[~np.isnan(a)]


def mean_ci(x: np.ndarray | pd.Series, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two-sided t confidence interval; NaN half-width if n < 2.

    For quantities of either sign (paired differences, net costs); see :func:`bounded_ci` for measures
    with a range."""
    a = _clean(x)
    n = len(a)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    if not np.isfinite(a).all():  # e.g. unlimited capacity: the mean is infinite, no interval
        return float(a.max()) if (a > 0).all() else float("nan"), float("nan"), float("nan")
    m = float(a.mean())
    if n < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * a.std(ddof=1) / np.sqrt(n))
    return m, m - half, m + half


def bounded_ci(x: np.ndarray | pd.Series, low: float | None = 0.0, high: float | None = None,
               level: float = 0.95) -> tuple[float, float, float]:
    """Mean and a confidence interval that never leaves ``[low, high]`` (either bound may be None).

    The t interval is built on the log scale of ``mean - low`` (lower bound only), of ``high - mean``
    (upper bound only) or on the logit scale of ``(mean - low) / (high - low)`` (both), with the delta-method
    standard error, and transformed back.  See the module docstring for why and for the edge cases.
    """
    a = _clean(x)
    outside = (low is not None and bool((a < low).any())) or (high is not None and bool((a > high).any()))
    if len(a) < 2 or not np.isfinite(a).all() or (low is None and high is None) or outside:
        # nothing to bound, no interval to build, or the declared range does not hold for these values
        return mean_ci(a, level)
    m = float(a.mean())
    se = float(a.std(ddof=1) / np.sqrt(len(a)))
    at_bound = (low is not None and m <= low) or (high is not None and m >= high)
    if se == 0.0 or at_bound:  # every replication equal (or all on a bound): nothing varies
        return m, m, m
    return (m, *_transformed(m, se, float(stats.t.ppf(0.5 + level / 2, len(a) - 1)), low, high))


def _transformed(m: float, se: float, t: float, low: float | None, high: float | None) -> tuple[float, float]:
    """The back-transformed ends of ``m +- t * se`` on the log or logit scale that fits the bounds."""
    if low is not None and high is not None:
        width = high - low
        p = (m - low) / width
        z = math.log(p / (1 - p))
        h = t * se / (width * p * (1 - p))
        return low + width * _expit(z - h), low + width * _expit(z + h)
    if low is not None:
        d = m - low
        return low + d * math.exp(-t * se / d), low + d * math.exp(t * se / d)
    assert high is not None
    d = high - m
    return high - d * math.exp(t * se / d), high - d * math.exp(-t * se / d)


def _expit(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def summarise(per_rep: pd.DataFrame, level: float = 0.95,
              bounds: Callable[[str], Bounds] | None = None) -> pd.DataFrame:
    """One row per column of ``per_rep`` (rows = replications): mean, CI, sd, percentiles.

    ``bounds(column)`` gives each measure's range (see :func:`bounded_ci`); without it every column gets the
    plain t interval."""
    rows = []
    for col in per_rep.columns:
        x = per_rep[col].to_numpy(dtype=float)
        low, high = bounds(str(col)) if bounds is not None else (None, None)
        m, lo, hi = bounded_ci(x, low, high, level)
        finite = x[~np.isnan(x)]
        spread = len(finite) and np.isfinite(finite).all()
        rows.append({
            "kpi": col, "mean": m, "ci_low": lo, "ci_high": hi,
            "sd": float(finite.std(ddof=1)) if spread and len(finite) > 1 else float("nan"),
            "p5": float(np.percentile(finite, 5)) if spread else m,
            "p50": float(np.percentile(finite, 50)) if spread else m,
            "p95": float(np.percentile(finite, 95)) if spread else m,
            "n": int(len(finite)),
        })
    return pd.DataFrame(rows).set_index("kpi")


def nhs_quarter(d: dt.date | pd.Timestamp) -> str:
    """NHS financial quarter label, e.g. 2016-07-01 -> '2016/17 Q2'."""
    fy = d.year if d.month >= 4 else d.year - 1
    return f"{fy}/{(fy + 1) % 100:02d} Q{(d.month - 4) % 12 // 3 + 1}"


def nhs_year(d: dt.date | pd.Timestamp) -> str:
    """NHS financial year (1 April to 31 March) label, e.g. 2017-01-15 -> '2016/17'."""
    fy = d.year if d.month >= 4 else d.year - 1
    return f"{fy}/{(fy + 1) % 100:02d}"


def week_commencing(d: dt.date | pd.Timestamp) -> str:
    """The NHS weekly-return label: the Monday the week starts on, e.g. 2016-04-06 -> 'w/c 2016-04-04'."""
    day = d.date() if isinstance(d, pd.Timestamp) else d
    return f"w/c {(day - dt.timedelta(days=day.weekday())).isoformat()}"


#: ``periods()`` frequencies: every accepted spelling -> (canonical name, labeller of a date).
PERIODS: dict[str, tuple[str, Callable[[pd.Timestamp], str]]] = {}
for _names, _canon, _label in (
        (("Q", "quarter"), "quarter", nhs_quarter),
        (("M", "month"), "month", lambda d: d.strftime("%Y-%m")),
        (("Y", "year"), "year", nhs_year),
        (("W", "week"), "week", week_commencing)):
    for _n in _names:
        PERIODS[_n] = (_canon, _label)


def period_labeller(freq: str) -> Callable[[pd.Timestamp], str]:
    """The label function for ``freq``; a ValueError listing what is allowed for anything else.

    Why strict: pandas-style codes ('W', 'Y', 'quarter') used to fall through to months silently, and a
    table of months read as weeks is wrong without looking wrong."""
    try:
        return PERIODS[freq][1]
    except (KeyError, TypeError):
        allowed = "'Q' or 'quarter' (NHS quarters), 'M' or 'month', 'Y' or 'year' (NHS financial years, April " \
                  "to March), 'W' or 'week' (weeks commencing Monday)"
        raise ValueError(f"periods: unknown frequency {freq!r}; allowed: {allowed}") from None


def _period_labels(daily: pd.DataFrame, freq: str) -> np.ndarray:
    return pd.to_datetime(daily["date"]).map(period_labeller(freq)).to_numpy()


#: Daily census columns whose per-period mean is reported (with a CI) beside delayed days, when present.
PERIOD_CENSUS = (("nctr_midnight", "nctr_per_day"), ("stranded_7", "stranded_7_per_day"),
                 ("stranded_21", "stranded_21_per_day"))


def period_table(daily: pd.DataFrame, freq: str, population_18plus: int, level: float = 0.95) -> pd.DataFrame:
    """DTOC delayed days (midnight census summed) per NHS quarter, month, financial year or week, with CIs.

    ``rate_per_100k`` is the period's delayed days per 100,000 aged 18+ (the 2016/17 BCF metric for a
    quarter); ``delayed_per_day_per_100k`` is delayed patients per day per 100,000 aged 18+, the unit of the
    BCF 2017 target (9.4).  Beside them, today's measures where the daily table has them: patients not
    meeting the criteria to reside and stranded / super-stranded patients per day (mean census, with CIs),
    and the Discharge Ready Date delay of the period's discharges (average excluding 0-day delays).
    Partial periods at the edges of the window are reported with the number of days they cover, so a
    reader does not compare 40 days with 91.  Intervals stay in the measures' ranges (``bounded_ci``).
    """
    bands = [c for c in daily.columns if c.startswith("drd_discharges_")]
    days_cols = [c for c in daily.columns if c.startswith("drd_delay_days_")]
    census = [(col, out) for col, out in PERIOD_CENSUS if col in daily.columns]
    g = daily.assign(period=_period_labels(daily, freq)).groupby(["period", "replication"], sort=False)
    agg: dict[str, tuple[str, str]] = {"days": ("day", "size"), "delayed_days": ("delayed_midnight", "sum"),
                                       "delayed_acute_days": ("delayed_acute_midnight", "sum"),
                                       "occupancy_pct": ("occupancy_pct", "mean")}
    agg.update({out: (col, "mean") for col, out in census})
    agg.update({c: (c, "sum") for c in (*bands, *days_cols)})
    per = g.agg(**agg).reset_index()
    rows = []
    for period, sub in per.groupby("period", sort=False):
        m, lo, hi = bounded_ci(sub["delayed_days"], 0.0, None, level)
        days = int(sub["days"].iloc[0])
        row = {
            "period": period, "days": days,
            "delayed_days": m, "ci_low": lo, "ci_high": hi,
            "rate_per_100k": m / population_18plus * 1e5,
            "delayed_per_day": m / days,
            "delayed_per_day_per_100k": m / days / population_18plus * 1e5,
            "delayed_acute_days": float(sub["delayed_acute_days"].mean()),
            "occupancy_pct": float(sub["occupancy_pct"].mean()),
        }
        for _, out in census:
            row[out], row[f"{out}_ci_low"], row[f"{out}_ci_high"] = bounded_ci(sub[out], 0.0, None, level)
        if bands:
            n = sub[bands].sum(axis=1)
            delayed = n - sub.get("drd_discharges_0", 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                avg = np.where(delayed > 0, sub[days_cols].sum(axis=1) / delayed, np.nan)
            row["drd_discharges"] = float(n.mean())
            (row["drd_avg_delay_days"], row["drd_avg_delay_ci_low"],
             row["drd_avg_delay_ci_high"]) = bounded_ci(avg, 0.0, None, level)
        rows.append(row)
    return pd.DataFrame(rows)


def drd_band_table(daily: pd.DataFrame, freq: str, level: float = 0.95) -> pd.DataFrame:
    """Discharge Ready Date delay bands per period: discharges, % of discharges and delay days, with CIs.

    One row per period and band, as NHS England's monthly Discharge Delays (Acute) publication lays them
    out (bands 0, 1, 2-3, 4-6, 7-13, 14-20 and 21+ days; discharges counted in the period they happen).
    """
    keys = [c.removeprefix("drd_discharges_") for c in daily.columns if c.startswith("drd_discharges_")]
    if not keys:
        return pd.DataFrame()
    per = (daily.assign(period=_period_labels(daily, freq))
           .groupby(["period", "replication"], sort=False)[[f"drd_{x}_{k}" for k in keys
                                                           for x in ("discharges", "delay_days")]].sum())
    total = per[[f"drd_discharges_{k}" for k in keys]].sum(axis=1)
    rows = []
    for period, sub in per.groupby(level="period", sort=False):
        n = total.loc[sub.index]
        for k in keys:
            d_m, d_lo, d_hi = bounded_ci(sub[f"drd_discharges_{k}"], 0.0, None, level)
            with np.errstate(invalid="ignore", divide="ignore"):
                pct = 100.0 * sub[f"drd_discharges_{k}"] / n.where(n > 0)
            p_m, p_lo, p_hi = bounded_ci(pct, 0.0, 100.0, level)
            x_m, x_lo, x_hi = bounded_ci(sub[f"drd_delay_days_{k}"], 0.0, None, level)
            rows.append({"period": period, "band": k.replace("_", "-").replace("plus", "+"),
                         "discharges": d_m, "discharges_ci_low": d_lo, "discharges_ci_high": d_hi,
                         "pct_of_discharges": p_m, "pct_ci_low": p_lo, "pct_ci_high": p_hi,
                         "delay_days": x_m, "delay_days_ci_low": x_lo, "delay_days_ci_high": x_hi})
    return pd.DataFrame(rows)


NODE_MEASURES = ("occupied", "capacity", "queue", "mean_wait_days", "cost")


def node_quantiles(nodes: pd.DataFrame) -> pd.DataFrame:
    """Per node and day, each measure's mean and 5th/50th/95th percentiles across replications."""
    if nodes.empty:
        return nodes
    g = nodes.groupby(["node", "pathway", "locality", "date", "day"], sort=True)[list(NODE_MEASURES)]
    out = g.mean().add_suffix("_mean")
    for q in (0.05, 0.5, 0.95):
        out = out.join(g.quantile(q).add_suffix(f"_p{round(q * 100)}"))
    cols = [f"{m}_{s}" for m in NODE_MEASURES for s in ("mean", "p5", "p50", "p95")]
    return out[cols].reset_index()
