"""A history replay's simulated daily series laid against the observed ones (``Scenario.replay``).

Why a prediction band and not a confidence interval: the observed history is one realisation, so the question is
whether it looks like one of the model's replications, not whether it equals their mean.  Each day gets the
spread of the replications (the middle 50% and 90%: empirical quantiles of the per-replication values); the
band is shown only from ``MIN_BAND_REPLICATIONS`` replications, fewer cannot place a 5th centile.  Over the
period, each replication's mean of the series (over the days observed) gives the range (5th-95th centile) a
period mean falls in; the observed mean is inside it, above it or below it, and the words say which.  The
share of days inside the daily bands is reported too, but carries no binomial tolerance: neighbouring days of
a census are strongly correlated, so it is a description, not a test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from flowsim.scenario.schema import Scenario

#: Replications below which the daily band is not drawn (or judged).
MIN_BAND_REPLICATIONS = 20
#: Quantiles of the replications shown each day: the middle 90% and 50%, and the median.
QUANTILES = {"p5": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95}


def observed_frame(scenario: Scenario) -> pd.DataFrame:
    """The observed series as one long table: series, date, observed (days not observed left out)."""
    rows = []
    rp = scenario.replay
    for s in rp.observed if rp is not None else []:
        dates = pd.date_range(s.start, periods=len(s.values), freq="D")
        rows.append(pd.DataFrame({"series": s.column, "date": dates, "observed": s.values}).dropna())
    if not rows:
        return pd.DataFrame(columns=["series", "date", "observed"])
    out = pd.concat(rows, ignore_index=True)
    out["observed"] = out["observed"].astype(float)
    return out


def compared_series(scenario: Scenario, daily_columns: list[str]) -> tuple[list[str], list[str]]:
    """(observed series this run has a daily column for, those it has not: e.g. step-up referrals in a scenario
    without step-up)."""
    rp = scenario.replay
    names = [s.column for s in rp.observed] if rp is not None else []
    return [n for n in names if n in daily_columns], [n for n in names if n not in daily_columns]


def replay_comparison(daily: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """Per observed series and day of the run: the observation, the replications' mean and quantiles, and
    whether the observation lies inside the middle 50% and 90% of replications."""
    obs = observed_frame(scenario)
    series, _ = compared_series(scenario, list(daily.columns))
    frames = []
    dates = pd.to_datetime(daily["date"])
    for name in series:
        per_day = daily.assign(date=dates).groupby("date")[name]
        stats = per_day.mean().rename("mean").to_frame()
        for col, q in QUANTILES.items():
            stats[col] = per_day.quantile(q)
        stats["replications"] = per_day.count()
        stats = stats.reset_index()
        stats.insert(0, "series", name)
        mine = obs[obs["series"] == name][["date", "observed"]]
        frames.append(stats.merge(mine, on="date", how="left"))
    if not frames:
        return pd.DataFrame(columns=["series", "date", "observed", "mean", *QUANTILES, "replications"])
    out = pd.concat(frames, ignore_index=True)
    have = out["observed"].notna()
    out["in_band90"] = np.where(have, (out["observed"] >= out["p5"]) & (out["observed"] <= out["p95"]), np.nan)
    out["in_band50"] = np.where(have, (out["observed"] >= out["p25"]) & (out["observed"] <= out["p75"]), np.nan)
    cols = ["series", "date", "observed", "mean", *QUANTILES, "replications", "in_band50", "in_band90"]
    return out[cols]


def _period_means(daily: pd.DataFrame, name: str, days: pd.Series) -> np.ndarray:
    """Each replication's mean of ``name`` over the observed ``days``."""
    d = daily.assign(date=pd.to_datetime(daily["date"]))
    d = d[d["date"].isin(days)]
    return d.groupby("replication")[name].mean().to_numpy(dtype=float)


def replay_summary(daily: pd.DataFrame, scenario: Scenario) -> dict[str, Any]:
    """What the replay replayed and, per observed series, how the simulated period compares (see module)."""
    rp = scenario.replay
    if rp is None:
        return {}
    days = rp.demand_days()
    out: dict[str, Any] = {
        "demand": {"first": days[0].isoformat(), "last": days[1].isoformat(),
                   "columns": [s.column for s in rp.demand]} if days else None,
        "capacity": {c.target: len(c.steps) for c in rp.capacity},
        "outside": "days of the run outside the demand file (the warm-up included) use the model's arrival rates",
        "band": f"middle 90% (5th-95th centile) and 50% of replications each day; drawn from "
                f"{MIN_BAND_REPLICATIONS} replications",
        "series": [],
    }
    comp = replay_comparison(daily, scenario)
    _, missing = compared_series(scenario, list(daily.columns))
    out["not_compared"] = missing
    n_reps = int(daily["replication"].nunique()) if "replication" in daily.columns else 0
    out["series"] = [_series_summary(daily, str(name), part, n_reps) for name, part in comp.groupby("series",
                                                                                                    sort=False)]
    return out


def _series_summary(daily: pd.DataFrame, name: str, part: pd.DataFrame, n_reps: int) -> dict[str, Any]:
    """One observed series against the replications over the days it was observed."""
    seen = part[part["observed"].notna()]
    if seen.empty:
        return {"series": name, "days": 0}
    means = _period_means(daily, name, seen["date"])
    lo, hi = float(np.quantile(means, 0.05)), float(np.quantile(means, 0.95))
    obs_mean = float(seen["observed"].mean())
    err = seen["mean"] - seen["observed"]
    banded = n_reps >= MIN_BAND_REPLICATIONS
    return {
        "series": name, "days": len(seen), "first": seen["date"].min().date().isoformat(),
        "last": seen["date"].max().date().isoformat(), "observed_mean": obs_mean,
        "simulated_mean": float(np.mean(means)), "period_range_low": lo, "period_range_high": hi,
        "verdict": "inside" if lo <= obs_mean <= hi else "above" if obs_mean > hi else "below",
        "mae": float(err.abs().mean()), "bias": float(err.mean()),
        "days_in_band90_pct": 100.0 * float(seen["in_band90"].mean()) if banded else None,
        "days_in_band50_pct": 100.0 * float(seen["in_band50"].mean()) if banded else None,
        "replications": n_reps}


def replay_sentence(row: dict[str, Any]) -> str:
    """One series' comparison in words that follow the range (never "matches": inside the range of
    replications is all a single history can show)."""
    if not row.get("days"):
        return f"{row['series']}: no observed day inside the run"
    where = {"inside": "inside", "above": "above", "below": "below"}[row["verdict"]]
    band = ("" if row.get("days_in_band90_pct") is None else
            f"; {row['days_in_band90_pct']:.0f}% of observed days inside the replications' daily 90% band")
    return (f"{row['series']}: observed mean {row['observed_mean']:,.1f} over {row['days']} days ({row['first']} to "
            f"{row['last']}) is {where} the range of the replications' means ({row['period_range_low']:,.1f} to "
            f"{row['period_range_high']:,.1f}, 5th-95th centile of {row['replications']}; simulated mean "
            f"{row['simulated_mean']:,.1f}){band}")
