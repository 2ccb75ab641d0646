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


def _period_labels(daily: pd.DataFrame, freq: str) -> np.ndarray:
    dates = pd.to_datetime(daily["date"])
    return (dates.map(nhs_quarter) if freq == "Q" else dates.dt.strftime("%Y-%m")).to_numpy()


#: Daily census columns whose per-period mean is reported (with a CI) beside delayed days, when present.
PERIOD_CENSUS = (("nctr_midnight", "nctr_per_day"), ("stranded_7", "stranded_7_per_day"),
                 ("stranded_21", "stranded_21_per_day"))


def period_table(daily: pd.DataFrame, freq: str, population_18plus: int, level: float = 0.95) -> pd.DataFrame:
    """DTOC delayed days (midnight census summed) per NHS quarter ('Q') or month ('M'), with CIs.

    Beside them, today's measures where the daily table has them: patients not meeting the
    criteria to reside and stranded / super-stranded patients per day (mean census, with CIs),
    and the Discharge Ready Date delay of the period's discharges (average excluding 0-day delays).
    Partial periods at the edges of the window are reported with the number of days they cover,
    so a reader does not compare 40 days with 91.
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
        m, lo, hi = mean_ci(sub["delayed_days"], level)
        row = {
            "period": period, "days": int(sub["days"].iloc[0]),
            "delayed_days": m, "ci_low": lo, "ci_high": hi,
            "rate_per_100k": m / population_18plus * 1e5,
            "delayed_per_day": m / sub["days"].iloc[0],
            "delayed_acute_days": float(sub["delayed_acute_days"].mean()),
            "occupancy_pct": float(sub["occupancy_pct"].mean()),
        }
        for _, out in census:
            row[out], row[f"{out}_ci_low"], row[f"{out}_ci_high"] = mean_ci(sub[out], level)
        if bands:
            n = sub[bands].sum(axis=1)
            delayed = n - sub.get("drd_discharges_0", 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                avg = np.where(delayed > 0, sub[days_cols].sum(axis=1) / delayed, np.nan)
            row["drd_discharges"] = float(n.mean())
            row["drd_avg_delay_days"], row["drd_avg_delay_ci_low"], row["drd_avg_delay_ci_high"] = mean_ci(avg, level)
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
            d_m, d_lo, d_hi = mean_ci(sub[f"drd_discharges_{k}"], level)
            with np.errstate(invalid="ignore", divide="ignore"):
                pct = 100.0 * sub[f"drd_discharges_{k}"] / n.where(n > 0)
            p_m, p_lo, p_hi = mean_ci(pct, level)
            x_m, x_lo, x_hi = mean_ci(sub[f"drd_delay_days_{k}"], level)
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
