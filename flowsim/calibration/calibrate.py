"""Calibrate free scenario parameters to observed targets, with held-out validation.

Method, and why:

* **Objective.** Each target i contributes z_i = (simulated_i - observed_i) / s_i, where s_i
  combines the observation's own uncertainty (``sd``, or ``rel_sd`` x observed) with the
  simulation's standard error over replications.  The objective is the weighted sum of z_i^2:
  minus twice a Gaussian log-likelihood up to a constant, so it doubles as the basis of the
  uncertainty statement below.
* **Common random numbers.** Every candidate runs the same seeds, so the objective is a
  deterministic function of the parameters and its differences between candidates are not noise.
* **Optimiser.** ``scipy.optimize.differential_evolution``: global, bounded, handles whole-number
  parameters (``integrality``), needs no gradients (a simulation has none), is deterministic for a
  seed, and evaluates a whole population at once (``vectorized``), which we fan out over the
  experiment executors.  A surrogate method (e.g. Optuna's TPE) would need fewer evaluations but
  adds a dependency and is harder to make bit-for-bit reproducible; the budget here is small.
* **Uncertainty.** An approximate likelihood-ratio confidence set from the evaluations: every
  candidate whose objective is within chi2_{k, 0.95} of the best is consistent with the data at
  95%, and each parameter's reported interval is its range over that set (a profile over the
  points evaluated; it can only be as fine as the search was).
* **Held-out validation.** Targets listed as ``held_out`` never enter the objective; they are
  predicted by the fitted model (optionally on another scenario, e.g. the winter one, with the
  fitted values applied) and their errors are reported separately.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from scipy import optimize, stats
from tqdm import tqdm

from flowsim.calibration.validation import score_table, summarise_scores
from flowsim.errors import FlowsimError, ScenarioError
from flowsim.experiment.executors import Executor, SerialExecutor
from flowsim.experiment.runner import run_replication
from flowsim.experiment.stats import nhs_quarter
from flowsim.results.kpi import kpi_range
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
from flowsim.scenario.types import Finite, Range, Seed

log = logging.getLogger(__name__)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Spec):
    """One observed quantity and how to read it off a simulation.

    ``kind``: ``kpi`` (a KPI's mean over the window; ``per_year`` scales a count to 365 days),
    ``period_sum`` (sum of a daily column over an NHS quarter like '2016/17 Q1' or a month
    '2017-01'), ``period_mean`` (the mean over the period's days: a census such as long-stay patients
    a day), ``period_ratio`` (100 x sum of ``numerator`` / sum of ``denominator`` over a period, e.g.
    DTOC % = delayed acute beds / occupied beds at midnight); these three read one ``period`` or the
    days of several (``periods``, e.g. "circa 3% before 2017" over Q1-Q3), or ``dispersion``: how
    much a daily column's sums vary across ``periods`` (``statistic: cv``, the coefficient of
    variation SD / mean with the n - 1 SD, or ``sd``), computed within each replication, so a model
    whose means match but whose quarters swing far more than reality's scores badly.
    """

    id: str = Field(min_length=1)
    description: str = ""
    kind: Literal["kpi", "period_sum", "period_mean", "period_ratio", "dispersion"]
    kpi: str | None = None
    per_year: bool = False
    column: str | None = None
    numerator: str | None = None
    denominator: str | None = None
    period: str | None = None
    periods: list[str] | None = Field(default=None, description="dispersion: the periods whose sums vary; "
                                                                "period_sum/mean/ratio: read over their days")
    statistic: Literal["cv", "sd"] = "cv"
    value: Finite
    sd: Annotated[float, Range(0, 1e15, "the observation's standard deviation", low_open=True)] | None = None
    rel_sd: Annotated[float, Range(0, 1e15, low_open=True)] = 0.1
    source: str = Field(min_length=1, description="where the number comes from (document and line)")

    @model_validator(mode="after")
    def _check(self) -> Target:
        need = {"kpi": ["kpi"], "period_sum": ["column"], "period_mean": ["column"],
                "period_ratio": ["numerator", "denominator"], "dispersion": ["column", "periods"]}[self.kind]
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise FieldProblems([((f,), f"required for kind: {self.kind}") for f in missing])
        if self.kind.startswith("period_") and (self.period is None) == (self.periods is None):
            raise FieldProblems([(("period",), f"kind: {self.kind} reads one period or several (periods), "
                                  "give exactly one of the two")])
        if self.kind == "dispersion" and self.periods is not None and len(set(self.periods)) < 2:
            raise FieldProblems([(("periods",), "a dispersion needs at least two different periods")])
        return self

    @property
    def scale(self) -> float:
        """The observation's standard deviation: ``sd`` if given, else ``rel_sd`` times the observed value."""
        return self.sd if self.sd is not None else abs(self.value) * self.rel_sd


class TargetSet(_Spec):
    """A targets file: observed quantities, each with its source, read off a simulation the same way."""
    name: str
    description: str = ""
    targets: list[Target] = Field(min_length=1)


class FreeParameter(_Spec):
    """A scenario field to fit, by dotted path, within bounds (``log`` searches on a log scale)."""

    path: str = Field(min_length=1)
    low: Finite
    high: Finite
    integer: bool = False
    transform: Literal["none", "log"] = "none"
    label: str | None = None

    @model_validator(mode="after")
    def _check(self) -> FreeParameter:
        if not self.low < self.high:
            raise FieldProblems([(("high",), f"must be above low ({self.low})")])
        if self.transform == "log" and self.low <= 0:
            raise FieldProblems([(("low",), "must be positive for transform: log")])
        if self.integer and self.transform == "log":
            raise FieldProblems([(("transform",), "log search is for continuous parameters only")])
        return self


class Optimiser(_Spec):
    """The optimiser and its budget (population size per parameter, generations, tolerance)."""
    method: Literal["differential_evolution"] = "differential_evolution"
    popsize: Annotated[int, Range(2, 100, integer=True)] = 5
    maxiter: Annotated[int, Range(1, 1000, integer=True)] = 6
    tol: Annotated[float, Range(0, 1e15)] = 0.0


class Validation(_Spec):
    """Where held-out targets are predicted: another scenario with the fitted values applied."""

    scenario: str


MIN_SCORING_REPLICATIONS = 30
SCORING_METHOD = ("every target simulated on the fitting replications (in sample) and on fresh replications of "
                  "another seed; errors, 95% CIs, 50% and 90% prediction intervals (empirical quantiles of the "
                  "replications), CRPS and interval scores on the fresh ones; naive forecasts (persistence, "
                  "seasonal naive, mean of the fitted period) from the observed series alone, scored as normal "
                  "distributions with the fitted observations' SD; skill = 1 - MAE_model / MAE_naive")


class Scoring(_Spec):
    """Fresh replications the fitted model is judged on: a seed other than the fitting seed, so none of their
    random streams entered the fit (streams derive from (seed, replication, name): another seed shares none)."""

    seed: Seed | None = Field(default=None, description="default: the fitting seed + 1")
    replications: Annotated[int, Range(MIN_SCORING_REPLICATIONS, 100_000, integer=True)] = MIN_SCORING_REPLICATIONS


class CalibrationConfig(_Spec):
    """A calibration file: the scenario, the free parameters, fitted and held-out targets, budget."""
    name: str | None = None
    description: str = ""
    scenario: str = Field(min_length=1, description="scenario to calibrate, relative to this file")
    targets: str = Field(min_length=1, description="targets file, relative to this file")
    set: dict[str, Any] = Field(default_factory=dict, description="fixed overrides applied before fitting")
    seed: Seed = 2016
    replications: Annotated[int, Range(2, 1000, integer=True)] = 4
    free: list[FreeParameter] = Field(min_length=1)
    fit: list[str] | None = Field(default=None, description="target ids in the fit (default: all not held out)")
    held_out: list[str] = Field(default_factory=list)
    weights: dict[str, Annotated[float, Range(0, 1e15, low_open=True)]] = Field(default_factory=dict)
    optimiser: Optimiser = Field(default_factory=Optimiser)
    validation: Validation | None = None
    scoring: Scoring = Field(default_factory=Scoring)
    write_scenario: str | None = Field(default=None, description="file name for a copy of the fitted scenario "
                                                                 "inside the output directory; to write it "
                                                                 "anywhere else, use --write-scenario")

    @field_validator("write_scenario")
    @classmethod
    def _inside_output(cls, v: str | None) -> str | None:
        # a configuration file may name the file, never send a write outside the output directory
        parts = Path(v).parts if v else ()
        if v is not None and (not v.strip() or Path(v).is_absolute() or ".." in parts or not parts):
            raise ValueError("allowed: a file name inside the output directory (e.g. fitted.yaml); to write the "
                             "fitted scenario elsewhere, give --write-scenario on the command line")
        return v

    @model_validator(mode="after")
    def _fresh_scoring_seed(self) -> CalibrationConfig:
        if self.scoring.seed is not None and self.scoring.seed == self.seed:
            raise FieldProblems([(("scoring", "seed"), f"must differ from the fitting seed ({self.seed}): "
                                  "with the same seed the scoring replications would reuse the fitting "
                                  "replications' random streams")])
        return self

    @property
    def scoring_seed(self) -> int:
        """The seed of the fresh replications (the fitting seed + 1 unless ``scoring.seed`` says otherwise)."""
        return self.scoring.seed if self.scoring.seed is not None else (self.seed + 1) % 2**63


def _validated(model: type[BaseModel], path: Path) -> tuple[Any, LineMap]:
    data, lines = read_mapping(path)
    try:
        return model.model_validate(data), lines
    except ValidationError as exc:
        raise ScenarioError(format_validation_errors(exc, data, lines, str(path))) from None


def _rel(base: Path, name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() else Path(os.path.normpath(base.parent / p))


# --------------------------------------------------------------------------------------------- evaluation


def _task(args: tuple[Scenario, int, int, str]) -> tuple[dict[str, float], pd.DataFrame]:
    """Worker side: one replication's KPIs and the daily columns the targets read."""
    scenario, seed, rep, sid = args
    res = run_replication(scenario, seed, rep, sid, keep_patients=False)
    return res.kpis, res.daily


def _period_mask(t: Target, d: pd.DataFrame, period: str) -> np.ndarray:
    dates = pd.to_datetime(d["date"])
    label = dates.map(nhs_quarter) if "Q" in period else dates.dt.strftime("%Y-%m")
    mask = (label == period).to_numpy()
    if not mask.any():
        raise FlowsimError(f"target {t.id}: period '{period}' is outside the simulated window")
    return mask


def _need_columns(t: Target, d: pd.DataFrame, cols: list[str | None]) -> None:
    for c in cols:
        if c not in d.columns:
            raise FlowsimError(f"target {t.id}: '{c}' is not a daily series")


def target_value(t: Target, kpis: dict[str, float], d: pd.DataFrame, duration_days: int) -> float:
    """One replication's value of ``t`` (see :class:`Target` for the kinds)."""
    if t.kind == "kpi":
        if t.kpi not in kpis:
            raise FlowsimError(f"target {t.id}: unknown KPI '{t.kpi}'")
        return kpis[t.kpi] * (365.0 / duration_days if t.per_year else 1.0)
    if t.kind == "dispersion":
        _need_columns(t, d, [t.column])
        sums = np.array([float(d.loc[_period_mask(t, d, p), t.column].sum()) for p in t.periods or []])
        sd = float(np.std(sums, ddof=1))
        if t.statistic == "sd":
            return sd
        mean = float(np.mean(sums))
        return sd / mean if mean > 0 else float("nan")
    mask = np.logical_or.reduce([_period_mask(t, d, p) for p in (t.periods or [t.period or ""])])
    if t.kind in ("period_sum", "period_mean"):
        _need_columns(t, d, [t.column])
        values = d.loc[mask, t.column]
        return float(values.sum() if t.kind == "period_sum" else values.mean())
    _need_columns(t, d, [t.numerator, t.denominator])
    den = float(d.loc[mask, t.denominator].sum())
    return 100.0 * float(d.loc[mask, t.numerator].sum()) / den if den > 0 else float("nan")


def simulated_values(targets: list[Target], kpis: list[dict[str, float]], daily: list[pd.DataFrame],
                     duration_days: int) -> dict[str, np.ndarray]:
    """Each target's value in each replication."""
    return {t.id: np.asarray([target_value(t, k, d, duration_days) for k, d in zip(kpis, daily, strict=True)],
                             dtype=float) for t in targets}


def objective_terms(targets: list[Target], sims: dict[str, np.ndarray],
                    weights: dict[str, float]) -> dict[str, float]:
    """z^2 per target (weighted), combining observation and simulation uncertainty."""
    terms = {}
    for t in targets:
        x = sims[t.id]
        n = len(x)
        se2 = float(np.var(x, ddof=1)) / n if n > 1 else 0.0
        z = (float(np.mean(x)) - t.value) / math.sqrt(t.scale ** 2 + se2)
        terms[t.id] = weights.get(t.id, 1.0) * z * z
    return terms


@dataclass
class Problem:
    """The configuration resolved against its files: base data, targets, free parameters."""

    config: CalibrationConfig
    path: Path
    base_data: dict[str, Any]
    base_lines: dict[Any, Any]
    targets: dict[str, Target]
    fit_ids: list[str]
    held_ids: list[str]
    lines: dict[Any, Any]

    def build(self, values: dict[str, Any], data: dict[str, Any] | None = None,
              lines: dict[Any, Any] | None = None, source: str | None = None) -> Scenario:
        """The scenario with ``values`` (dotted path -> value) set on top of the base, validated."""
        data = copy.deepcopy(self.base_data if data is None else data)
        lines = dict(self.base_lines if lines is None else lines)
        problems = []
        for i, (path, value) in enumerate(values.items()):
            origin = self.lines.get(("free", i, "path"), (str(self.path), 0))
            problem = set_path(data, path, value, lines, origin)
            if problem:
                problems.append(f"{origin[0]}:{origin[1]}: free.{i}.path: {problem}")
        if problems:
            raise ScenarioError(problems)
        return finish_scenario(data, lines, source or str(_rel(self.path, self.config.scenario)))


def load_problem(path: Path) -> Problem:
    """Read and check a calibration file and its targets; every problem is one error line."""
    cfg, lines = _validated(CalibrationConfig, path)
    tset, _ = _validated(TargetSet, _rel(path, cfg.targets))
    targets = {t.id: t for t in tset.targets}
    problems = _reference_problems(path, cfg, lines, tset)
    if problems:
        raise ScenarioError(problems)
    held = list(cfg.held_out)
    fit = list(cfg.fit) if cfg.fit is not None else [t for t in targets if t not in held]
    overlap = sorted(set(fit) & set(held))
    if overlap:
        raise ScenarioError([f"{path}: targets both fitted and held out: {', '.join(overlap)}"])
    if not fit:
        raise ScenarioError([f"{path}: no targets left to fit"])
    data, base_lines = load_raw(_rel(path, cfg.scenario))
    for dotted, value in cfg.set.items():
        origin = lines.get(("set", dotted), (str(path), 0))
        problem = set_path(data, dotted, value, base_lines, origin)
        if problem:
            raise ScenarioError([f"{origin[0]}:{origin[1]}: set.{dotted}: {problem}"])
    return Problem(cfg, path, data, base_lines, targets, fit, held, lines)


def _reference_problems(path: Path, cfg: CalibrationConfig, lines: LineMap, tset: TargetSet) -> list[str]:
    """Target ids used twice, and ``fit``/``held_out``/``weights`` naming a target the targets file lacks."""
    targets = {t.id for t in tset.targets}
    problems = []
    seen: set[str] = set()
    for t in tset.targets:
        if t.id in seen:
            problems.append(f"{_rel(path, cfg.targets)}: targets: id '{t.id}' is used twice; ids must be unique")
        seen.add(t.id)
    for key in ("fit", "held_out"):
        for i, tid in enumerate(getattr(cfg, key) or []):
            if tid not in targets:
                where = lines.get((key, i), (str(path), 0))
                problems.append(f"{where[0]}:{where[1]}: {key}.{i}: unknown target '{tid}'; "
                                f"the targets file has {', '.join(targets)}")
    problems += [f"{path}: weights.{tid}: unknown target" for tid in cfg.weights if tid not in targets]
    return problems


def _target_range(t: Target) -> tuple[float | None, float | None]:
    """The values a target's simulated measure can take, so its interval stays inside them: a KPI's own range;
    sums of daily series (counts, occupied beds, capacities) and ratios of them are never negative."""
    return kpi_range(t.kpi) if t.kind == "kpi" and t.kpi else (0.0, None)


@dataclass
class CalibrationResult:
    """Fitted values, their uncertainty, and the fit and validation tables."""

    problem: Problem
    best: dict[str, float]
    objective: float
    intervals: dict[str, tuple[float, float]]
    evaluations: pd.DataFrame
    report: pd.DataFrame
    in_sample_error_pct: float
    out_of_sample_error_pct: float | None
    seconds: float
    scoring_seed: int = 0
    scoring_replications: int = 0
    scores: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


#: Draws a calibration's figures into a directory (the presentation layer passes one in: the domain draws nothing).
CalibrationDrawer = Callable[[CalibrationResult, Path], Mapping[str, Path]]


class _Evaluator:
    """Evaluates populations of candidates on the executor, on common random numbers, with a cache."""

    def __init__(self, prob: Problem, executor: Executor, bar: tqdm[Any]):
        self.prob = prob
        self.ex = executor
        self.bar = bar
        self.cache: dict[tuple[float, ...], float] = {}
        self.rows: list[dict[str, Any]] = []
        self.free = prob.config.free
        #: each candidate's per-replication target values (held-out ones too when they are read off the same
        #: run), so the fitted model's in-sample figures need no second run
        self.sims: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
        self.keep_held = prob.config.validation is None

    def values(self, x: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p, v in zip(self.free, x, strict=True):
            v = float(math.exp(v)) if p.transform == "log" else float(v)
            out[p.path] = int(round(v)) if p.integer else v
        return out

    def run(self, scenarios: list[Scenario], seed: int | None = None, replications: int | None = None
            ) -> list[tuple[list[dict[str, float]], list[pd.DataFrame]]]:
        """Each scenario's KPIs and daily tables over ``replications`` (default: the fitting ones) on ``seed``."""
        R = replications or self.prob.config.replications
        seed = self.prob.config.seed if seed is None else seed
        tasks = [(sc, seed, r, scenario_hash(sc)) for sc in scenarios for r in range(R)]
        results: list[Any] = [None] * len(tasks)

        def label(task: tuple[Scenario, int, int, str]) -> str:
            return f"calibration candidate (scenario {task[3]}) replication {task[2]}"

        for i, res in self.ex.run(_task, tasks, label):
            results[i] = res
            self.bar.update()
        out = []
        for j in range(len(scenarios)):
            chunk = results[j * R:(j + 1) * R]
            out.append(([c[0] for c in chunk], [c[1] for c in chunk]))
        return out

    def _held(self, kpis: list[dict[str, float]], daily: list[pd.DataFrame], days: int) -> dict[str, np.ndarray]:
        if not self.keep_held:
            return {}
        try:
            return simulated_values([self.prob.targets[t] for t in self.prob.held_ids], kpis, daily, days)
        except FlowsimError:  # reported by the final evaluation, which needs it
            self.keep_held = False
            return {}

    def __call__(self, xs: np.ndarray) -> np.ndarray:
        """Vectorised objective: ``xs`` has shape (parameters, candidates)."""
        cols = [xs[:, j] for j in range(xs.shape[1])]
        vals = [self.values(c) for c in cols]
        keys = [tuple(v.values()) for v in vals]
        todo = [i for i, k in enumerate(keys) if k not in self.cache]
        unique: dict[tuple[Any, ...], int] = {}
        for i in todo:
            unique.setdefault(keys[i], i)
        self.bar.total = (self.bar.total or 0) + len(unique) * self.prob.config.replications
        self.bar.refresh()
        idx = list(unique.values())
        scenarios = [self.prob.build(vals[i]) for i in idx]
        fit_targets = [self.prob.targets[t] for t in self.prob.fit_ids]
        for i, sc, (kpis, daily) in zip(idx, scenarios, self.run(scenarios), strict=True):
            sims = simulated_values(fit_targets, kpis, daily, sc.simulation.duration_days)
            terms = objective_terms(fit_targets, sims, self.prob.config.weights)
            obj = float(sum(terms.values()))
            self.cache[keys[i]] = obj
            self.sims[keys[i]] = {**sims, **self._held(kpis, daily, sc.simulation.duration_days)}
            self.rows.append({**vals[i], "objective": obj, **{f"z2_{k}": v for k, v in terms.items()},
                              **{f"sim_{k}": float(np.mean(v)) for k, v in sims.items()}})
        return np.array([self.cache[k] for k in keys])


FITTED_HEADER = "# FITTED by `flowsim calibrate"


def is_fitted_scenario(path: Path) -> bool:
    """A fitted scenario flowsim wrote (so a new fit may replace it without --overwrite)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(len(FITTED_HEADER)) == FITTED_HEADER
    except OSError:
        return False


def default_output(prob: Problem) -> Path:
    """``outputs/calibration/<name>``: the configuration names the directory (as a safe slug), never its place."""
    return Path("outputs") / "calibration" / slug(prob.config.name or prob.path.stem, "calibration")


def calibrate(config_path: Path, out: Path | OutputDir | None = None, *, executor: Executor | None = None,
              progress: bool | None = None, draw: CalibrationDrawer | None = None, write_scenario: Path | None = None,
              budget: tuple[int, ...] | None = None, command: list[str] | None = None) -> CalibrationResult:
    """Fit the free parameters of ``config_path``; write the fitted scenario and the fit report.

    ``out``: a new or empty directory (default ``outputs/calibration/<name>``, the name made a safe
    slug) claimed before anything runs, or an ``OutputDir`` the caller claimed.  ``write_scenario``
    (the caller's choice: the command line checks it is not someone else's file, see
    ``is_fitted_scenario``) also receives the fitted scenario.
    ``budget`` = (popsize, maxiter[, scoring replications]) overrides the configuration's optimiser budget
    and the number of fresh scoring replications (for a quick run: fewer than 30 scoring replications are
    recorded in ``calibration.json`` as below the minimum, not for quoting).
    ``draw`` (from the presentation layer, e.g. ``flowsim.report.calibration_figures.draw_calibration``) adds
    the figures; without it none is drawn.
    """
    t0 = time.perf_counter()
    prob = load_problem(config_path)
    cfg = prob.config
    prob.build({})  # the base scenario must be valid before anything runs
    claimed = out if isinstance(out, OutputDir) else claim_output(out or default_output(prob), "calibration",
                                                                   command=command, what="")
    ex = executor or SerialExecutor()
    show = sys.stderr.isatty() if progress is None else progress
    popsize, maxiter = budget[:2] if budget else (cfg.optimiser.popsize, cfg.optimiser.maxiter)
    scoring_reps = budget[2] if budget and len(budget) > 2 else cfg.scoring.replications
    evaluator, res = _optimise(prob, ex, show, popsize, maxiter)
    best = evaluator.values(res.x)
    evals = pd.DataFrame(evaluator.rows).sort_values("objective", kind="stable").reset_index(drop=True)
    threshold = float(evals["objective"].min()) + float(stats.chi2.ppf(0.95, len(cfg.free)))
    inside = evals[evals["objective"] <= threshold]
    intervals = {p.path: (float(inside[p.path].min()), float(inside[p.path].max())) for p in cfg.free}
    final = _final_evaluation(prob, best, ex, scoring_reps, evaluator.sims.get(tuple(best.values())))
    report = final.report
    ins = report[report["role"] == "fitted"]["error_pct"].abs()
    oos = report[report["role"] == "held out"]["error_pct"].abs()
    result = CalibrationResult(prob, best, float(res.fun), intervals, evals, report, float(ins.mean()),
                               float(oos.mean()) if len(oos) else None, time.perf_counter() - t0,
                               cfg.scoring_seed, scoring_reps, final.scores)
    copy_to = write_scenario or (claimed.path / cfg.write_scenario if cfg.write_scenario else None)
    _write_outputs(result, claimed.path, final, draw=draw, write_scenario=copy_to, command=command,
                   budget=(popsize, maxiter))
    if not isinstance(out, OutputDir):
        finish_output(claimed)
    return result


def _optimise(prob: Problem, ex: Executor, show: bool, popsize: int, maxiter: int) -> tuple[_Evaluator, Any]:
    """Differential evolution over the free parameters (log-scaled where asked), whole populations at once."""
    cfg = prob.config
    bounds, integrality = [], []
    for p in cfg.free:
        lo, hi = (math.log(p.low), math.log(p.high)) if p.transform == "log" else (p.low, p.high)
        bounds.append((lo, hi))
        integrality.append(p.integer)
    bar = tqdm(total=0, desc="calibrate", unit="run", disable=not show, leave=False, dynamic_ncols=True)
    evaluator = _Evaluator(prob, ex, bar)
    try:
        res = optimize.differential_evolution(
            evaluator, bounds, popsize=popsize, maxiter=maxiter, tol=cfg.optimiser.tol, polish=False,
            integrality=integrality if any(integrality) else None, vectorized=True, updating="deferred",
            rng=np.random.default_rng(cfg.seed), init="latinhypercube")
    finally:
        bar.close()
    return evaluator, res


def _validation_scenario(prob: Problem, best: dict[str, Any]) -> Scenario | None:
    """The scenario held-out targets are predicted on, with the fitted values applied (None: the fitted one)."""
    cfg = prob.config
    if not prob.held_ids or cfg.validation is None:
        return None
    vpath = _rel(prob.path, cfg.validation.scenario)
    vdata, vlines = load_raw(vpath)
    for dotted, value in cfg.set.items():
        set_path(vdata, dotted, value, vlines)
    return prob.build(best, vdata, vlines, str(vpath))


def _simulate_targets(prob: Problem, fitted: Scenario, validation: Scenario | None, runner: _Evaluator, *,
                      seed: int, replications: int, known: dict[str, np.ndarray] | None = None
                      ) -> dict[str, np.ndarray]:
    """Every target's per-replication values on ``seed`` (held-out ones on the validation scenario if any);
    ``known``: values already simulated on these replications (the fitted candidate's own, from the search)."""
    fit = [prob.targets[t] for t in prob.fit_ids]
    held = [prob.targets[t] for t in prob.held_ids]
    known = known or {}
    if all(t.id in known for t in fit) and (validation is not None or all(t.id in known for t in held)):
        sims = {t.id: known[t.id] for t in fit}
        if validation is not None and held:
            [(vk, vd)] = runner.run([validation], seed, replications)
            sims.update(simulated_values(held, vk, vd, validation.simulation.duration_days))
        else:
            sims.update({t.id: known[t.id] for t in held})
        return sims
    [(kpis, daily)] = runner.run([fitted], seed, replications)
    sims = simulated_values(fit, kpis, daily, fitted.simulation.duration_days)
    if held and validation is not None:
        [(vk, vd)] = runner.run([validation], seed, replications)
        sims.update(simulated_values(held, vk, vd, validation.simulation.duration_days))
    elif held:
        sims.update(simulated_values(held, kpis, daily, fitted.simulation.duration_days))
    return sims


@dataclass
class _Final:
    fitted: Scenario
    validation: Scenario | None
    report: pd.DataFrame
    scores: dict[str, Any]


def _final_evaluation(prob: Problem, best: dict[str, Any], ex: Executor, scoring_replications: int,
                      known: dict[str, np.ndarray] | None = None) -> _Final:
    """The fitted model on every target, fitted and held out, twice: on the fitting replications (in sample)
    and on fresh ones (``scoring``: another seed), with naive forecasts and proper scores beside it."""
    cfg = prob.config
    fitted = prob.build(best)
    validation = _validation_scenario(prob, best)
    runner = _Evaluator(prob, ex, tqdm(total=0, disable=True))
    fitting = _simulate_targets(prob, fitted, validation, runner, seed=cfg.seed, replications=cfg.replications,
                                known=known)
    scoring = _simulate_targets(prob, fitted, validation, runner, seed=cfg.scoring_seed,
                                replications=scoring_replications)
    rows = [(prob.targets[t], "fitted") for t in prob.fit_ids] + [(prob.targets[t], "held out") for t in prob.held_ids]
    report = score_table(rows, prob.targets, prob.fit_ids, fitting=fitting, scoring=scoring,
                         bounds={t.id: _target_range(t) for t, _ in rows})
    return _Final(fitted, validation, report, summarise_scores(report, scoring, cfg.scoring_seed))


# --------------------------------------------------------------------------------------------- outputs


def _fmt(v: float) -> str:
    """Exact: whole numbers as integers, others as the shortest text that reads back to the same float."""
    if isinstance(v, int) or float(v).is_integer():
        return str(int(v))
    return repr(float(v))


@dataclass(frozen=True)
class _Leaf:
    path: str
    value: Any
    fitted: bool
    note: str = ""


def _list_prefix(data: dict[str, Any], path: str) -> str | None:
    """The part of ``path`` that ends at the first list on the way (None: no list).  ``extends`` replaces a
    list whole, so a fitted value inside one (an escalation rule's threshold) is written as the whole list."""
    node: Any = data
    keys = path.split(".")
    for depth, key in enumerate(keys[:-1]):
        node = node.get(key) if isinstance(node, dict) else (node[int(key)] if key.isdigit() else None)
        if isinstance(node, list):
            return ".".join(keys[: depth + 1])
    return None


def _whole_lists(leaves: list[_Leaf], data: dict[str, Any], intervals: dict[str, tuple[float, float]]) -> list[_Leaf]:
    """Leaves inside lists merged into one leaf per list: the base list with every value set, and a note."""
    out: list[_Leaf] = []
    lists: dict[str, list[_Leaf]] = {}
    for leaf in leaves:
        prefix = _list_prefix(data, leaf.path)
        if prefix is None:
            out.append(leaf)
        else:
            lists.setdefault(prefix, []).append(leaf)
    for prefix, inner in lists.items():
        node: Any = data
        for key in prefix.split("."):
            node = node[int(key)] if isinstance(node, list) else node[key]
        holder = {"list": copy.deepcopy(node)}
        notes = []
        for leaf in inner:
            set_path(holder, "list" + leaf.path[len(prefix):], leaf.value)
            if leaf.fitted:
                lo, hi = intervals[leaf.path]
                notes.append(f"{leaf.path[len(prefix) + 1:]} FITTED {_fmt(leaf.value)} "
                             f"[95% set {_fmt(lo)}, {_fmt(hi)}]")
            else:
                notes.append(f"{leaf.path[len(prefix) + 1:]} SET")
        out.append(_Leaf(prefix, holder["list"], False, "; ".join(notes)))
    return out


def _fold_nested(leaves: list[_Leaf], intervals: dict[str, tuple[float, float]]) -> list[_Leaf]:
    """Leaves inside another leaf written into its value: a dated step fitted inside a capacity the configuration
    sets whole (``set: {...capacity: {base: 46, periods: [...]}}`` and ``free: ...capacity.periods.0.add``)
    becomes that capacity with the fitted step in it, and a note naming what was fitted."""
    outer = [o for o in leaves if not any(o.path.startswith(x.path + ".") for x in leaves)]
    out = []
    for o in outer:
        inner = [leaf for leaf in leaves if leaf.path.startswith(o.path + ".")]
        if not inner:
            out.append(o)
            continue
        holder = {"v": copy.deepcopy(o.value)}
        notes = [o.note] if o.note else []
        for leaf in inner:
            set_path(holder, "v" + leaf.path[len(o.path):], leaf.value)
            sub = leaf.path[len(o.path) + 1:]
            if leaf.fitted:
                lo, hi = intervals[leaf.path]
                notes.append(f"{sub} FITTED {_fmt(leaf.value)} [95% set {_fmt(lo)}, {_fmt(hi)}]")
            else:
                notes.append(f"{sub}: {leaf.note}" if leaf.note else f"{sub} SET")
        out.append(_Leaf(o.path, holder["v"], False, "; ".join(notes)))
    return out


def fitted_yaml(result: CalibrationResult, config_path: Path, scenario_path: Path, target_path: Path) -> str:
    """A scenario that ``extends`` the calibrated one, with each fitted value and its provenance."""
    prob = result.problem
    cfg = prob.config
    today = dt.date.today().isoformat()
    base = os.path.relpath(Path(_rel(config_path, cfg.scenario)).resolve(), target_path.parent.resolve())
    tree: dict[str, Any] = {}
    leaves = [_Leaf(path, value, False) for path, value in cfg.set.items()]
    leaves += [_Leaf(p.path, result.best[p.path], True) for p in cfg.free]
    for leaf in _fold_nested(_whole_lists(leaves, prob.base_data, result.intervals), result.intervals):
        node = tree
        keys = leaf.path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = leaf
    lines = [
        f"# FITTED by `flowsim calibrate {config_path}` on {today} (flowsim calibration, differential evolution,",
        f"# {cfg.replications} replications per candidate on seed {cfg.seed}, common random numbers).",
        f"# Fitted to: {', '.join(prob.fit_ids)}; held out: {', '.join(prob.held_ids) or 'none'}.",
        f"# In-sample mean absolute error {result.in_sample_error_pct:.1f}%"
        + (f"; out-of-sample {result.out_of_sample_error_pct:.1f}%." if result.out_of_sample_error_pct is not None
           else "."),
        "# Intervals are approximate 95% likelihood-ratio sets over the candidates evaluated (see the fit report).",
        f"extends: {base}",
        f'name: "{_base_name(prob)} (calibrated)"',
    ]
    for p in cfg.free:
        lo, hi = result.intervals[p.path]
        lines.append(f"# {p.path}: fitted {_fmt(result.best[p.path])}, 95% set [{_fmt(lo)}, {_fmt(hi)}], "
                     f"searched [{_fmt(p.low)}, {_fmt(p.high)}]")

    def emit(node: dict[str, Any], depth: int) -> None:
        for key, val in node.items():
            pad = "  " * depth
            if isinstance(val, dict):
                lines.append(f"{pad}{key}:")
                emit(val, depth + 1)
            elif val.fitted:
                lo, hi = result.intervals[val.path]
                lines.append(f"{pad}{key}: {_fmt(val.value)}   # FITTED ({config_path}); "
                             f"95% set [{_fmt(lo)}, {_fmt(hi)}]")
            else:
                text = yaml.safe_dump(val.value, default_flow_style=True, width=10_000).strip()
                text = text.removesuffix("\n...").removesuffix("...").strip()
                why = (f"{val.note} ({config_path}); written whole (extends replaces lists)" if val.note else
                       f"SET by {config_path} (fixed during the fit)")
                lines.append(f"{pad}{key}: {text}   # {why}")

    emit(tree, 0)
    return "\n".join(lines) + "\n"


def _base_name(prob: Problem) -> str:
    return str(prob.base_data.get("name", "scenario")).replace('"', "'")


def _write_outputs(result: CalibrationResult, out: Path, final: _Final, *, draw: CalibrationDrawer | None,
                   write_scenario: Path | None, command: list[str] | None, budget: tuple[int, int]) -> None:
    prob = result.problem
    fitted, validation = final.fitted, final.validation
    files = result.files
    files["report"] = atomic_write(out / "fit_report.csv", lambda p: result.report.to_csv(p, index=False))
    files["evaluations"] = atomic_write(out / "evaluations.csv", lambda p: result.evaluations.to_csv(p, index=False))
    base = _rel(prob.path, prob.config.scenario)
    target = write_scenario or (out / "fitted_scenario.yaml")
    # each copy's ``extends`` is relative to where that copy lives
    files["scenario"] = atomic_text(target, fitted_yaml(result, prob.path, base, target))
    if write_scenario is not None and write_scenario != out / "fitted_scenario.yaml":
        copy = out / "fitted_scenario.yaml"
        files["scenario_copy"] = atomic_text(copy, fitted_yaml(result, prob.path, base, copy))
    meta = {
        "name": prob.config.name or prob.path.stem, "config": str(prob.path), "seed": prob.config.seed,
        "replications": prob.config.replications,
        "fitting": {"seed": prob.config.seed, "replications": prob.config.replications},
        "scoring": {"seed": result.scoring_seed, "replications": result.scoring_replications,
                    "below_minimum": result.scoring_replications < MIN_SCORING_REPLICATIONS,
                    "method": SCORING_METHOD},
        "optimiser": "scipy.optimize.differential_evolution",
        "popsize": budget[0], "maxiter": budget[1], "evaluations": len(result.evaluations),
        "objective": result.objective, "fitted": result.best,
        "intervals_95": {k: list(v) for k, v in result.intervals.items()},
        "uncertainty_method": "approximate likelihood-ratio set: candidates within chi2(k, 0.95) of the best "
                              "objective (a profile over the points evaluated)",
        "in_sample_mean_abs_error_pct": result.in_sample_error_pct,
        "out_of_sample_mean_abs_error_pct": result.out_of_sample_error_pct,
        "errors_basis": "fresh scoring replications (errors on the fitting replications are under 'scores')",
        "scores": result.scores,
        "fitted_scenario_id": scenario_hash(fitted),
        "validation_scenario_id": scenario_hash(validation) if validation is not None else None,
        "seconds": round(result.seconds, 1), "versions": versions(),
        "command": command if command is not None else sys.argv,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    files["meta"] = atomic_text(out / "calibration.json", json.dumps(meta, indent=2, default=float) + "\n")
    if draw is not None:
        files.update(draw(result, out / "figures"))
