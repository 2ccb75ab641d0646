"""Judging a fitted model on replications it never saw, against naive forecasts from the observed series alone.

Why: a fit scored on the replications the optimiser tuned against flatters itself (it has fitted their
noise as well as the signal), and an error of 30% means nothing until one knows what "next quarter = this
quarter" would have scored.  So every target is simulated twice, on the fitting replications (in sample)
and on fresh ones (a different seed: streams that never entered the fit), and set beside three naive
forecasts that use the observations alone:

* **persistence**: the latest fitted observation of the same series before the target's period;
* **seasonal naive**: the observation of the same series one year earlier, where the targets file has it;
* **mean of the fitted period**: the mean of the series' fitted observations.

A naive forecast never uses the observation it forecasts: for a fitted target, "mean of the fitted period"
is the mean of the *other* fitted observations of its series (leave one out), so naive and model are both
judged on something they were not handed.

A *series* is the targets that read the same measure the same way (same kind and column(s) or KPI) over
periods of the same length (NHS quarters, or months).  KPI and dispersion targets are not series and get
no naive forecast.

Each naive forecast's predictive distribution is normal, centred on the forecast, with the sample standard
deviation of the series' other fitted observations (two or more of them), else with the stated uncertainty of
the observation it copies (``sd``, or ``rel_sd`` x value).  The model's is the ensemble of fresh
replications.  Both are scored with CRPS and the interval score (:mod:`flowsim.experiment.scores`).

Skill of the model against a naive method: 1 - MAE_model / MAE_naive, errors as absolute percentages of the
observed value (so quarters of delayed days and monthly DTOC % can be pooled), over the targets where that
naive forecast exists.  Positive: the model is better; negative: the naive forecast is.  The model's MAE
carries a bootstrap 95% interval over fresh replications (resampled whole, so targets from one replication
stay together); the naive MAE is a fixed number.  The verdict says "beats" only when the naive MAE lies
outside the model's interval.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from flowsim.experiment.scores import (
    crps_ensemble,
    crps_normal,
    inside,
    interval_score,
    normal_interval,
    prediction_interval,
)
from flowsim.experiment.stats import bounded_ci
from flowsim.rng import make_stream


class Target(Protocol):
    """What scoring reads of a target (``flowsim.calibration.calibrate.Target`` has it; a protocol here keeps
    this module below the calibration driver instead of in a circle with it)."""

    @property
    def id(self) -> str:
        """The target's id."""
    @property
    def description(self) -> str:
        """What the target measures."""
    @property
    def kind(self) -> str:
        """How it is read off a run."""
    @property
    def column(self) -> str | None:
        """The daily column summed (period_sum, dispersion)."""
    @property
    def numerator(self) -> str | None:
        """The ratio's numerator column."""
    @property
    def denominator(self) -> str | None:
        """The ratio's denominator column."""
    @property
    def period(self) -> str | None:
        """The NHS quarter or month it covers."""
    @property
    def value(self) -> float:
        """The observed value."""
    @property
    def scale(self) -> float:
        """The observation's standard deviation."""
    @property
    def source(self) -> str:
        """Where the number comes from."""

NAIVE_METHODS = {"persistence": "persistence (last fitted period)",
                 "seasonal": "seasonal naive (same period last year)",
                 "mean": "mean of the fitted period"}
PI_LEVELS = (0.5, 0.9)
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_STREAM = "calibration_bootstrap"

_QUARTER = re.compile(r"^(\d{4})/\d{2} Q([1-4])$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def period_start(period: str | None) -> tuple[str, dt.date] | None:
    """('Q', first day) of an NHS quarter like '2016/17 Q4', ('M', first day) of a month like '2017-01'."""
    if not period:
        return None
    q = _QUARTER.match(period)
    if q:
        year, n = int(q.group(1)), int(q.group(2))
        month = 4 + 3 * (n - 1)
        return "Q", dt.date(year + (month > 12), (month - 1) % 12 + 1, 1)
    m = _MONTH.match(period)
    if m:
        return "M", dt.date(int(m.group(1)), int(m.group(2)), 1)
    return None


def series_key(t: Target) -> tuple[Any, ...] | None:
    """Targets with equal keys are observations of one series at different periods (None: not a series)."""
    start = period_start(t.period)
    if t.kind not in ("period_sum", "period_ratio") or start is None:
        return None
    return t.kind, t.column, t.numerator, t.denominator, start[0]


@dataclass(frozen=True)
class NaiveForecast:
    """A naive point forecast and the normal predictive distribution scored with it."""

    method: str
    value: float
    sd: float
    basis: str


def _one_year_earlier(d: dt.date) -> dt.date:
    return d.replace(year=d.year - 1)


def naive_forecasts(t: Target, targets: Mapping[str, Target], fit_ids: Sequence[str]) -> dict[str, NaiveForecast]:
    """The naive forecasts of ``t`` that its series allows (none for KPI and dispersion targets)."""
    key = series_key(t)
    if key is None:
        return {}
    start = period_start(t.period)
    assert start is not None
    same = [o for o in targets.values() if o.id != t.id and series_key(o) == key]
    fitted = sorted((o for o in same if o.id in fit_ids),
                    key=lambda o: (period_start(o.period) or ("", dt.date.min))[1])
    values = [o.value for o in fitted]
    spread = float(np.std(values, ddof=1)) if len(values) >= 2 else None
    out: dict[str, NaiveForecast] = {}
    before = [o for o in fitted if (period_start(o.period) or ("", dt.date.max))[1] < start[1]]
    if before:
        last = before[-1]
        out["persistence"] = NaiveForecast("persistence", last.value, spread if spread is not None else last.scale,
                                           last.id)
    earlier = [o for o in same if (period_start(o.period) or ("", dt.date.min))[1] == _one_year_earlier(start[1])]
    if earlier:
        ref = earlier[0]
        out["seasonal"] = NaiveForecast("seasonal", ref.value, spread if spread is not None else ref.scale, ref.id)
    if fitted:
        mean = float(np.mean(values))
        sd = spread if spread is not None else fitted[0].scale
        out["mean"] = NaiveForecast("mean", mean, sd, "+".join(o.id for o in fitted))
    return out


def _pct(value: float, observed: float) -> float:
    return 100.0 * (value - observed) / observed if observed else math.nan


def _model_columns(prefix: str, x: np.ndarray, t: Target, bounds: tuple[float | None, float | None]
                   ) -> dict[str, Any]:
    m, lo, hi = bounded_ci(x, *bounds)
    return {f"{prefix}simulated": m, f"{prefix}ci_low": lo, f"{prefix}ci_high": hi,
            f"{prefix}error_pct": _pct(m, t.value)}


def _probabilistic(x: np.ndarray, y: float) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for level in PI_LEVELS:
        tag = f"pi{int(level * 100)}"
        lo, hi = prediction_interval(x, level)
        row.update({f"{tag}_low": lo, f"{tag}_high": hi, f"in_{tag}": inside(lo, hi, y),
                    f"interval_score_{int(level * 100)}": interval_score(lo, hi, y, level)})
    row["crps"] = crps_ensemble(x, y)
    return row


def _naive_columns(t: Target, naive: Mapping[str, NaiveForecast]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for method in NAIVE_METHODS:
        f = naive.get(method)
        value, sd = (f.value, f.sd) if f else (math.nan, math.nan)
        lo, hi = normal_interval(value, sd, 0.9)
        row.update({f"naive_{method}": value, f"naive_{method}_sd": sd,
                    f"naive_{method}_basis": f.basis if f else "",
                    f"naive_{method}_error_pct": _pct(value, t.value) if f else math.nan,
                    f"naive_{method}_crps": crps_normal(value, sd, t.value) if f else math.nan,
                    f"naive_{method}_interval_score_90": interval_score(lo, hi, t.value, 0.9) if f else math.nan,
                    f"naive_{method}_in_pi90": inside(lo, hi, t.value) if f else None})
    return row


def score_table(rows: Sequence[tuple[Target, str]], targets: Mapping[str, Target], fit_ids: Sequence[str], *,
                fitting: Mapping[str, np.ndarray], scoring: Mapping[str, np.ndarray],
                bounds: Mapping[str, tuple[float | None, float | None]]) -> pd.DataFrame:
    """One row per target: in-sample and fresh-seed simulated values with CIs and errors, the fresh
    replications' prediction intervals and scores, and the naive forecasts with their errors and scores.

    ``rows``: (target, role) in report order; ``fitting`` / ``scoring``: each target's per-replication
    values on the fitting and the fresh replications."""
    out = []
    for t, role in rows:
        x = np.asarray(scoring[t.id], dtype=float)
        row: dict[str, Any] = {"target": t.id, "description": t.description, "role": role, "observed": t.value}
        row.update(_model_columns("", x, t, bounds[t.id]))
        lo, hi = row["ci_low"], row["ci_high"]
        row["error_ci_low"], row["error_ci_high"] = _pct(lo, t.value), _pct(hi, t.value)
        row["z"] = (row["simulated"] - t.value) / t.scale if t.scale else math.nan
        row.update(_model_columns("fitting_", np.asarray(fitting[t.id], dtype=float), t, bounds[t.id]))
        row.update(_probabilistic(x, t.value))
        row.update(_naive_columns(t, naive_forecasts(t, targets, fit_ids)))
        row["source"] = t.source
        out.append(row)
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------------------------- summary


def _bootstrap_mae(matrix: np.ndarray, observed: np.ndarray, seed: int) -> tuple[float, float]:
    """95% percentile interval of the mean absolute % error of the replication means, resampling replications
    (the same resamples for every subset of targets: a fresh generator from the named stream each time)."""
    n = matrix.shape[1] if matrix.ndim == 2 else 0
    if n < 2 or matrix.shape[0] == 0:
        return math.nan, math.nan
    rng = make_stream(seed, 0, BOOTSTRAP_STREAM)
    idx = rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))
    means = np.nanmean(matrix[:, idx], axis=2)  # targets x resamples
    mae = np.nanmean(np.abs(100.0 * (means - observed[:, None]) / observed[:, None]), axis=0)
    lo, hi = np.percentile(mae, [2.5, 97.5])
    return float(lo), float(hi)


def _mae(errors: pd.Series) -> float:
    a = errors.abs().dropna()
    return float(a.mean()) if len(a) else math.nan


def _compare(group: str, method: str, naive_mae: float, model_mae: float, ci: tuple[float, float]) -> str:
    name = NAIVE_METHODS[method]
    numbers = (f"mean absolute error {naive_mae:.1f}% against the model's {model_mae:.1f}% "
               f"[95% CI {ci[0]:.1f}%, {ci[1]:.1f}%]")
    if math.isfinite(ci[0]) and naive_mae < ci[0]:
        return f"On {group} targets the naive '{name}' forecast beats the model: {numbers}."
    if math.isfinite(ci[1]) and naive_mae > ci[1]:
        return f"On {group} targets the model beats the naive '{name}' forecast: {numbers}."
    return f"On {group} targets the model and the naive '{name}' forecast cannot be told apart: {numbers}."


def _group_summary(group: str, part: pd.DataFrame, sims: Mapping[str, np.ndarray],
                   seed: int) -> dict[str, Any]:
    ids = part["target"].tolist()
    observed = part["observed"].to_numpy(dtype=float)
    matrix = np.vstack([np.asarray(sims[i], dtype=float) for i in ids]) if ids else np.empty((0, 0))
    model_ci = _bootstrap_mae(matrix, observed, seed)
    n = len(part)
    summary: dict[str, Any] = {
        "targets": n,
        "model": {"mean_abs_error_pct": _mae(part["error_pct"]), "mean_abs_error_pct_ci95": list(model_ci),
                  "mean_abs_error_pct_fitting_replications": _mae(part["fitting_error_pct"]),
                  "mean_crps_pct_of_observed": float(np.nanmean(100.0 * part["crps"] / part["observed"].abs()))
                  if n else math.nan},
        "coverage": {f"pi{int(level * 100)}": {"inside": int(part[f"in_pi{int(level * 100)}"].fillna(False).sum()),
                                               "of": int(part[f"in_pi{int(level * 100)}"].notna().sum()),
                                               "nominal": level} for level in PI_LEVELS},
        "naive": {}, "verdicts": []}
    for method in NAIVE_METHODS:
        has = part[part[f"naive_{method}"].notna()]
        if has.empty:
            continue
        sub = [ids.index(i) for i in has["target"]]
        naive_mae = _mae(has[f"naive_{method}_error_pct"])
        model_mae = _mae(has["error_pct"])
        ci = _bootstrap_mae(matrix[sub], observed[sub], seed)
        rel = 100.0 / has["observed"].abs()
        summary["naive"][method] = {
            "name": NAIVE_METHODS[method], "targets": has["target"].tolist(), "mean_abs_error_pct": naive_mae,
            "model_mean_abs_error_pct": model_mae, "model_mean_abs_error_pct_ci95": list(ci),
            "skill": 1.0 - model_mae / naive_mae if naive_mae > 0 else math.nan,
            "skill_ci95": [1.0 - ci[1] / naive_mae, 1.0 - ci[0] / naive_mae] if naive_mae > 0 else [math.nan] * 2,
            "crps_skill": 1.0 - float((has["crps"] * rel).mean()) / float((has[f"naive_{method}_crps"] * rel).mean())
            if float((has[f"naive_{method}_crps"] * rel).mean()) > 0 else math.nan}
        summary["verdicts"].append(_compare(group, method, naive_mae, model_mae, ci))
    return summary


def summarise_scores(report: pd.DataFrame, scoring: Mapping[str, np.ndarray], seed: int) -> dict[str, Any]:
    """Per role ('fitted', 'held out'): model MAE with its bootstrap CI (fresh and fitting replications),
    prediction-interval coverage, mean CRPS, each naive method's MAE and skill, and the verdict sentences."""
    return {group: _group_summary(group, report[report["role"] == group], scoring, seed)
            for group in ("fitted", "held out") if (report["role"] == group).any()}
