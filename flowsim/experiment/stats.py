"""Across-replication statistics: means with t-based 95% confidence intervals, fan percentiles.

Replications are independent (distinct replication indices give independent
streams), so the classical t interval on replication means is valid; a
single replication gets an undefined (NaN) interval rather than a fake one.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from scipy import stats


def mean_ci(x: np.ndarray | pd.Series, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the two-sided t confidence interval; NaN half-width if n < 2."""
    a = np.asarray(x, dtype=float)
    a = a[~np.isnan(a)]
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


def summarise(per_rep: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """One row per column of ``per_rep`` (rows = replications): mean, CI, sd, percentiles."""
    rows = []
    for col in per_rep.columns:
        x = per_rep[col].to_numpy(dtype=float)
        m, lo, hi = mean_ci(x, level)
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


def period_table(daily: pd.DataFrame, freq: str, population_18plus: int, level: float = 0.95) -> pd.DataFrame:
    """DTOC delayed days (midnight census summed) per NHS quarter ('Q') or month ('M'), with CIs.

    Partial periods at the edges of the window are reported with the number of
    days they cover, so a reader does not compare 40 days with 91.
    """
    dates = pd.to_datetime(daily["date"])
    label = dates.map(nhs_quarter) if freq == "Q" else dates.dt.strftime("%Y-%m")
    g = daily.assign(period=label.to_numpy()).groupby(["period", "replication"], sort=False)
    per = g.agg(days=("day", "size"), delayed_days=("delayed_midnight", "sum"),
                delayed_acute_days=("delayed_acute_midnight", "sum"),
                occupancy_pct=("occupancy_pct", "mean")).reset_index()
    rows = []
    for period, sub in per.groupby("period", sort=False):
        m, lo, hi = mean_ci(sub["delayed_days"], level)
        rows.append({
            "period": period, "days": int(sub["days"].iloc[0]),
            "delayed_days": m, "ci_low": lo, "ci_high": hi,
            "rate_per_100k": m / population_18plus * 1e5,
            "delayed_per_day": m / sub["days"].iloc[0],
            "occupancy_pct": float(sub["occupancy_pct"].mean()),
        })
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
