"""Back-testing (``flowsim backtest``): forecast h days ahead from many dated snapshots, score against what happened.

Why: a board asked to act on "delays will reach 40 by next week" needs to know how such forecasts have done
before.  BNSSG's discharge planning suite back-tests its 10-day forecasts from many dated origins against a
naive four-week mean; this does the same for any daily series the model produces.

Method.  Each origin is a date and a start-from-today snapshot (the ``initial_state.snapshot_file`` format)
of who was where at 00:00 that day.  The scenario is run from that snapshot (no warm-up) for the longest
horizon, ``replications`` times on ``seed``.  Horizon h is the midnight census h days after the snapshot,
i.e. the daily row of date origin + h - 1 (h = 1: the first midnight of the run).  For each origin and
horizon: the model's mean, its 50% and 90% prediction intervals (empirical quantiles of the replications),
whether the observation falls inside them, CRPS and the 90% interval score; and two naive forecasts from
the observed series alone: the **last observed value** (the census at the snapshot, date origin - 1) and the
**mean of the previous four weeks** (``naive.window_days``, default 28, dates origin - 28 to origin - 1), each
with a normal predictive distribution whose SD is the SD of the observed series over that window, so CRPS
and coverage compare.  By horizon: MAE, bias (mean of forecast - observed), coverage with the range a
well-calibrated forecast would show by chance (central 99% of Binomial(origins, level)), mean CRPS and
skill = 1 - MAE_model / MAE_naive; the verdict compares the model with the better naive forecast by the paired
95% CI (over origins) of the difference in absolute error, and says "beats" only when it excludes zero.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flowsim.errors import FlowsimError, ScenarioError
from flowsim.experiment.executors import Executor, SerialExecutor
from flowsim.experiment.runner import run_replication
from flowsim.experiment.scores import (
    coverage_tolerance,
    crps_ensemble,
    crps_normal,
    inside,
    interval_score,
    normal_interval,
    prediction_interval,
)
from flowsim.experiment.stats import mean_ci
from flowsim.rundir import OutputDir, atomic_text, atomic_write, claim_output, finish_output, slug, versions
from flowsim.scenario.loader import (
    LineMap,
    finish_scenario,
    format_validation_errors,
    load_raw,
    read_mapping,
    scenario_hash,
    set_path,
)
from flowsim.scenario.schema import FieldProblems, Scenario
from flowsim.scenario.types import Range, Seed

log = logging.getLogger(__name__)

NAIVES = {"last": "last observed value", "mean": "mean of the previous four weeks"}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Origin(_Spec):
    """One forecast origin: the date (snapshot at 00:00) and its snapshot CSV, relative to the config file."""

    date: dt.date
    snapshot: str = Field(min_length=1)


class Naive(_Spec):
    """The naive baseline's window: the mean of the previous ``window_days`` days (BNSSG: four weeks)."""

    window_days: Annotated[int, Range(1, 3650, integer=True)] = 28


class BacktestConfig(_Spec):
    """A back-test file: scenario, dated snapshots, the observed daily series, horizons, replications, seed."""

    name: str | None = None
    description: str = ""
    scenario: str = Field(min_length=1, description="scenario to forecast with, relative to this file")
    observed: str = Field(min_length=1, description="CSV with a date column and the observed daily series")
    series: str = Field(default="delayed_midnight", min_length=1, description="daily column compared")
    origins: list[Origin] = Field(min_length=1)
    horizons: list[Annotated[int, Range(1, 3650, integer=True)]] = Field(min_length=1)
    replications: Annotated[int, Range(2, 100_000, integer=True)] = 30
    seed: Seed = 12345
    naive: Naive = Field(default_factory=Naive)

    @model_validator(mode="after")
    def _check(self) -> BacktestConfig:
        dates = [o.date for o in self.origins]
        if len(set(dates)) != len(dates):
            raise FieldProblems([(("origins",), "each origin date may appear once")])
        if len(set(self.horizons)) != len(self.horizons):
            raise FieldProblems([(("horizons",), "each horizon may appear once")])
        return self


def _rel(base: Path, name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() else (base.parent / p)


@dataclass
class Backtest:
    """A back-test configuration resolved against its files."""

    config: BacktestConfig
    path: Path
    lines: LineMap
    observed: pd.Series  # the observed series by date

    def scenario(self, origin: Origin, index: int) -> Scenario:
        """The forecast scenario from ``origin``: its snapshot, start date, no warm-up, the longest horizon."""
        data, lines = load_raw(_rel(self.path, self.config.scenario))
        where = self.lines.get(("origins", index, "snapshot"), (str(self.path), 0))
        for dotted, value in (("simulation.start_date", origin.date.isoformat()),
                              ("simulation.duration_days", max(self.config.horizons)),
                              ("simulation.warmup_days", 0),
                              ("initial_state", {"snapshot_file": str(_rel(self.path, origin.snapshot).resolve())})):
            problem = set_path(data, dotted, value, lines, where)
            if problem:
                raise ScenarioError([f"{where[0]}:{where[1]}: {dotted}: {problem}"])
        return finish_scenario(data, lines, str(_rel(self.path, self.config.scenario)))


def read_observed(path: Path, series: str) -> pd.Series:
    """The observed daily series from a CSV with a ``date`` column; one clear error per problem."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ScenarioError([f"{path}: cannot read the observed series: {type(exc).__name__}"]) from None
    missing = [c for c in ("date", series) if c not in frame.columns]
    if missing:
        raise ScenarioError([f"{path}:1: missing column(s) {', '.join(missing)}; the file has "
                             f"{', '.join(map(str, frame.columns))}"])
    dates = pd.to_datetime(frame["date"], errors="coerce")
    values = pd.to_numeric(frame[series], errors="coerce")
    bad = [f"{path}:{i + 2}: {'date' if pd.isna(d) else series}: expected "
           f"{'a date (YYYY-MM-DD)' if pd.isna(d) else 'a number'}, got {frame.iloc[i][c]!r}"
           for i, (d, v, c) in enumerate(zip(dates, values, [("date" if pd.isna(d) else series) for d in dates],
                                             strict=True)) if pd.isna(d) or pd.isna(v)]
    if bad:
        raise ScenarioError(bad[:20])
    if dates.duplicated().any():
        raise ScenarioError([f"{path}: date {dates[dates.duplicated()].iloc[0].date()} appears twice"])
    return pd.Series(values.to_numpy(dtype=float), index=pd.DatetimeIndex(dates).date, name=series)


def load_backtest(path: Path) -> Backtest:
    """Read and check a back-test file, its observed series and every origin's scenario."""
    data, lines = read_mapping(path)
    try:
        cfg = BacktestConfig.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(format_validation_errors(exc, data, lines, str(path))) from None
    bt = Backtest(cfg, path, lines, read_observed(_rel(path, cfg.observed), cfg.series))
    problems = []
    for i, o in enumerate(cfg.origins):
        if not _rel(path, o.snapshot).is_file():
            where = lines.get(("origins", i, "snapshot"), (str(path), 0))
            problems.append(f"{where[0]}:{where[1]}: origins.{i}.snapshot: no such file {o.snapshot}")
    if problems:
        raise ScenarioError(problems)
    return bt


# ------------------------------------------------------------------------------------------------ running


def _task(args: tuple[Scenario, int, int, str, str]) -> np.ndarray:
    """Worker side: one replication's daily series."""
    scenario, seed, rep, sid, series = args
    res = run_replication(scenario, seed, rep, sid, keep_patients=False)
    if series not in res.daily.columns:
        raise FlowsimError(f"series '{series}' is not a daily column of the model")
    return res.daily[series].to_numpy(dtype=float)


def _naive(observed: pd.Series, origin: dt.date, window: int) -> tuple[float, float, float]:
    """(last observed value, mean of the previous ``window`` days, their SD) from the observed series alone."""
    days = [origin - dt.timedelta(days=k) for k in range(window, 0, -1)]
    vals = np.array([observed.get(d, np.nan) for d in days], dtype=float)
    last = float(vals[-1])
    have = vals[np.isfinite(vals)]
    mean = float(have.mean()) if len(have) else math.nan
    sd = float(have.std(ddof=1)) if len(have) >= 2 else math.nan
    return last, mean, sd


def forecast_rows(ensemble: np.ndarray, observed: pd.Series, origin: dt.date, horizons: list[int],
                  window: int) -> list[dict[str, Any]]:
    """One row per horizon for one origin; ``ensemble`` is replications x days from the origin."""
    last, mean4, sd = _naive(observed, origin, window)
    rows = []
    for h in horizons:
        day = origin + dt.timedelta(days=h - 1)
        y = float(observed.get(day, np.nan))
        x = ensemble[:, h - 1]
        row: dict[str, Any] = {"origin": origin.isoformat(), "horizon": h, "date": day.isoformat(), "observed": y,
                               "mean": float(np.mean(x)), "median": float(np.median(x))}
        for level in (0.5, 0.9):
            tag = int(level * 100)
            lo, hi = prediction_interval(x, level)
            row.update({f"pi{tag}_low": lo, f"pi{tag}_high": hi, f"in_pi{tag}": inside(lo, hi, y)})
        row["crps"] = crps_ensemble(x, y)
        row["interval_score_90"] = interval_score(row["pi90_low"], row["pi90_high"], y, 0.9)
        for key, value in (("last", last), ("mean", mean4)):
            lo, hi = normal_interval(value, sd, 0.9)
            row.update({f"naive_{key}": value, f"naive_{key}_crps": crps_normal(value, sd, y),
                        f"naive_{key}_in_pi90": inside(lo, hi, y)})
        row["naive_sd"] = sd
        rows.append(row)
    return rows


def by_horizon(forecasts: pd.DataFrame) -> pd.DataFrame:
    """Errors, coverage, CRPS and skill by horizon, over the origins with an observation there."""
    out = []
    for h, part in forecasts.groupby("horizon", sort=True):
        part = part[np.isfinite(part["observed"])]
        n = len(part)
        if n == 0:
            continue
        err = part["mean"] - part["observed"]
        row: dict[str, Any] = {"horizon": int(h), "origins": n, "mae": float(err.abs().mean()),
                               "bias": float(err.mean()), "crps": float(part["crps"].mean()),
                               "interval_score_90": float(part["interval_score_90"].mean())}
        for level in (0.5, 0.9):
            tag = int(level * 100)
            lo, hi = coverage_tolerance(n, level)
            row.update({f"coverage_{tag}": float(part[f"in_pi{tag}"].astype(float).mean()),
                        f"coverage_{tag}_chance_low": lo / n, f"coverage_{tag}_chance_high": hi / n})
        for key in NAIVES:
            nerr = part[f"naive_{key}"] - part["observed"]
            mae = float(nerr.abs().mean())
            crps = float(part[f"naive_{key}_crps"].mean())
            _, dlo, dhi = mean_ci(err.abs() - nerr.abs())  # paired over origins: model minus naive
            row.update({f"abs_error_diff_vs_{key}_ci_low": dlo, f"abs_error_diff_vs_{key}_ci_high": dhi})
            row.update({f"naive_{key}_mae": mae, f"naive_{key}_bias": float(nerr.mean()), f"naive_{key}_crps": crps,
                        f"naive_{key}_coverage_90": float(part[f"naive_{key}_in_pi90"].astype(float).mean()),
                        f"skill_vs_{key}": 1.0 - row["mae"] / mae if mae > 0 else math.nan,
                        f"crps_skill_vs_{key}": 1.0 - row["crps"] / crps if crps > 0 else math.nan})
        out.append(row)
    return pd.DataFrame(out)


@dataclass
class BacktestResult:
    """Forecasts by origin and horizon, the table by horizon, and the files written."""

    backtest: Backtest
    forecasts: pd.DataFrame
    horizons: pd.DataFrame
    seconds: float
    scenario_ids: list[str]
    files: dict[str, Path] = field(default_factory=dict)

    def verdicts(self) -> list[str]:
        """Per horizon, the model against the better naive forecast, in words that follow the paired 95% CI of
        the difference in absolute error over origins ("beats" only when it excludes zero)."""
        out = []
        for _, r in self.horizons.iterrows():
            best = min(NAIVES, key=lambda k: r[f"naive_{k}_mae"])
            lo, hi = r[f"abs_error_diff_vs_{best}_ci_low"], r[f"abs_error_diff_vs_{best}_ci_high"]
            if hi < 0:
                who = f"the model beats the naive '{NAIVES[best]}'"
            elif lo > 0:
                who = f"the naive '{NAIVES[best]}' beats the model"
            else:
                who = f"the model and the naive '{NAIVES[best]}' cannot be told apart"
            out.append(f"horizon {int(r['horizon'])} d: {who} (mean absolute error {r['mae']:.2f} against "
                       f"{r[f'naive_{best}_mae']:.2f}, difference 95% CI {lo:+.2f} to {hi:+.2f}, over "
                       f"{int(r['origins'])} origins); 90% interval coverage {100 * r['coverage_90']:.0f}% (chance "
                       f"range for a calibrated forecast {100 * r['coverage_90_chance_low']:.0f}-"
                       f"{100 * r['coverage_90_chance_high']:.0f}%)")
        return out


#: Draws a back-test's figures into a directory (the presentation layer passes one in).
BacktestDrawer = Callable[[BacktestResult, Path], Mapping[str, Path]]


def default_output(bt: Backtest) -> Path:
    """``outputs/backtest/<name>``."""
    return Path("outputs") / "backtest" / slug(bt.config.name or bt.path.stem, "backtest")


def run_backtest(config_path: Path, out: Path | OutputDir | None = None, executor: Executor | None = None,
                 draw: BacktestDrawer | None = None, command: list[str] | None = None) -> BacktestResult:
    """Forecast from every origin, score by horizon against the naive baselines, write CSV/JSON (and figures)."""
    t0 = time.perf_counter()
    bt = load_backtest(config_path)
    cfg = bt.config
    scenarios = [bt.scenario(o, i) for i, o in enumerate(cfg.origins)]
    claimed = out if isinstance(out, OutputDir) else claim_output(out or default_output(bt), "backtest",
                                                                   command=command, what="")
    ex = executor or SerialExecutor()
    sids = [scenario_hash(sc) for sc in scenarios]
    tasks = [(sc, cfg.seed, r, sid, cfg.series) for sc, sid in zip(scenarios, sids, strict=True)
             for r in range(cfg.replications)]
    results: list[Any] = [None] * len(tasks)
    for i, res in ex.run(_task, tasks, lambda t: f"back-test origin {t[0].simulation.start_date} replication {t[2]}"):
        results[i] = res
    rows = []
    for j, o in enumerate(cfg.origins):
        ensemble = np.vstack(results[j * cfg.replications:(j + 1) * cfg.replications])
        rows += forecast_rows(ensemble, bt.observed, o.date, sorted(cfg.horizons), cfg.naive.window_days)
    forecasts = pd.DataFrame(rows)
    result = BacktestResult(bt, forecasts, by_horizon(forecasts), time.perf_counter() - t0, sids)
    _write(result, claimed.path, draw, command)
    if not isinstance(out, OutputDir):
        finish_output(claimed)
    return result


def _write(result: BacktestResult, out: Path, draw: BacktestDrawer | None, command: list[str] | None) -> None:
    cfg = result.backtest.config
    files = result.files
    files["forecasts"] = atomic_write(out / "forecasts.csv", lambda p: result.forecasts.to_csv(p, index=False))
    files["by_horizon"] = atomic_write(out / "by_horizon.csv", lambda p: result.horizons.to_csv(p, index=False))
    meta = {"name": cfg.name or result.backtest.path.stem, "config": str(result.backtest.path),
            "series": cfg.series, "seed": cfg.seed, "replications": cfg.replications,
            "origins": [o.date.isoformat() for o in cfg.origins], "horizons": sorted(cfg.horizons),
            "naive": {"last": "the observed value on the day before the origin (the census at the snapshot)",
                      "mean": f"mean of the observed series over the {cfg.naive.window_days} days before the origin",
                      "distribution": "normal, SD of the observed series over that window"},
            "method": __doc__.split("Method.")[1].strip() if __doc__ else "",
            "verdicts": result.verdicts(), "scenario_ids": result.scenario_ids,
            "seconds": round(result.seconds, 1), "versions": versions(),
            "command": command if command is not None else sys.argv,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    files["meta"] = atomic_text(out / "backtest.json", json.dumps(meta, indent=2, default=float) + "\n")
    if draw is not None:
        files.update(draw(result, out / "figures"))
