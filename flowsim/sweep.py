"""Parameter sweeps: grids and Latin hypercubes, a target finder and global sensitivity, resumable.

A sweep is a base scenario, fixed overrides, and parameters addressed by
dotted path (the same paths as ``flowsim run --set``).  Every (point,
replication) is one task.  Replications are the *outer* loop and each
replication index uses the same seed at every point, so points share random
numbers (common random numbers): a difference between two points is the
effect of the parameter, not of different dice.

Storage: one single-row Parquet file per finished task under
``parts/<point>/r<replication>.parquet``, written to a temporary name and
renamed.  We chose this over an embedded DuckDB file because a rename is
atomic on every POSIX filesystem, so a sweep killed at any instant leaves only
complete results and nothing to recover (DuckDB would need its write-ahead log
replayed and allows one writer process at a time); a task's existence is
read from a directory listing, so ``--resume`` runs exactly the missing tasks
and never writes one twice; and pyarrow is already a dependency, while the
files stay readable by pandas, DuckDB, Polars or Spark.  The tidy tables are
derived from the parts at the end and can be rebuilt at any time.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from scipy import stats
from tqdm import tqdm

from flowsim.errors import FlowsimError, ScenarioError
from flowsim.experiment.executors import Executor, SerialExecutor
from flowsim.experiment.replications import StoppingRule
from flowsim.experiment.runner import (
    WarmupChoice,
    check_warmup_auto,
    choose_warmup,
    run_replication,
    simulate_to_precision,
)
from flowsim.experiment.stats import bounded_ci
from flowsim.results.kpi import kpi_range
from flowsim.rundir import (
    OutputDir,
    atomic_text,
    atomic_write,
    claim_output,
    finish_output,
    reopen_output,
    slug,
    versions,
)
from flowsim.scenario.loader import (
    LineMap,
    apply_overrides,
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

DEFAULT_KPIS = ["delayed_patients_per_day", "dtoc_delayed_days_per_quarter", "occupancy_mean_pct",
                "ed_4h_breach_pct"]
_ID = "point_id"


# --------------------------------------------------------------------------------------------- spec


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Parameter(_Spec):
    """A swept scenario field: listed ``values`` (grid) or a ``low``-``high`` range (sampled)."""

    path: str = Field(min_length=1, description="dotted scenario path, as for --set")
    label: str | None = None
    values: list[float | int | str] | None = Field(default=None, min_length=1)
    low: Finite | None = None
    high: Finite | None = None
    integer: bool = Field(default=False, description="round sampled values to whole numbers")

    @model_validator(mode="after")
    def _check(self) -> Parameter:
        ranged = self.low is not None or self.high is not None
        if self.values is not None and ranged:
            raise ValueError("give either values (a list) or low and high (a range), not both")
        if self.values is None and (self.low is None or self.high is None):
            raise ValueError("give values (a list) or both low and high")
        if ranged and not self.low < self.high:  # type: ignore[operator]
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self

    @property
    def name(self) -> str:
        """The parameter's label, or its dotted path."""
        return self.label or self.path


class AutoReplications(_Spec):
    """Replications by the confidence-interval method (Hoad et al. 2010) on the base scenario."""

    kpi: str = "delayed_patients_per_day"
    precision: Annotated[float, Range(0, 1, low_open=True, high_open=True)] = 0.05
    max: Annotated[int, Range(3, 10_000, integer=True)] = 100


class Target(_Spec):
    """Smallest ``parameter`` in [low, high] at which ``kpi`` meets the target with ``confidence``."""

    parameter: str = Field(min_length=1)
    label: str | None = None
    kpi: str
    at_most: Finite | None = None
    at_least: Finite | None = None
    low: Finite
    high: Finite
    integer: bool = True
    tolerance: Annotated[float, Range(0, 1e15, low_open=True)] | None = None
    confidence: Annotated[float, Range(0.5, 1, low_open=True, high_open=True)] = 0.95
    replications: Annotated[int, Range(2, 100_000, integer=True)] | None = None

    @model_validator(mode="after")
    def _check(self) -> Target:
        if (self.at_most is None) == (self.at_least is None):
            raise ValueError("give exactly one of at_most or at_least")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self

    @property
    def threshold(self) -> float:
        """The threshold the KPI must meet (``at_most`` or ``at_least``)."""
        return self.at_most if self.at_most is not None else self.at_least  # type: ignore[return-value]


class Sensitivity(_Spec):
    """Global sensitivity by Morris screening or Sobol indices (SALib)."""

    method: Literal["morris", "sobol"] = "morris"
    parameters: list[Parameter] = Field(min_length=2)
    kpis: list[str] = Field(default_factory=lambda: ["delayed_patients_per_day"], min_length=1)
    trajectories: Annotated[int, Range(2, 1000, integer=True)] = 10
    levels: Annotated[int, Range(2, 20, integer=True)] = 4
    samples: Annotated[int, Range(2, 65536, integer=True)] = 64
    replications: Annotated[int, Range(1, 100_000, integer=True)] = 2

    @model_validator(mode="after")
    def _check(self) -> Sensitivity:
        if any(p.values is not None for p in self.parameters):
            raise ValueError("sensitivity parameters need low and high ranges, not value lists")
        if self.method == "sobol" and self.samples & (self.samples - 1):
            raise ValueError(f"samples must be a power of 2 for Sobol sequences, got {self.samples}")
        if self.method == "morris" and self.levels % 2:
            raise ValueError(f"levels must be even for Morris screening, got {self.levels}")
        return self


class SweepSpec(_Spec):
    """What ``flowsim sweep`` reads from SWEEP.yaml."""

    name: str | None = None
    description: str = ""
    base: str = Field(min_length=1, description="base scenario, relative to the sweep file")
    set: dict[str, Any] = Field(default_factory=dict, description="fixed overrides of the base, by dotted path")
    seed: Seed = 12345
    replications: Annotated[int, Range(1, 100_000, integer=True)] | AutoReplications = 10
    warmup: Annotated[int, Range(0, 3660, integer=True)] | Literal["scenario", "auto"] = "scenario"
    warmup_kpi: str = "delayed_midnight"
    design: Literal["grid", "lhs"] = "grid"
    samples: Annotated[int, Range(2, 100_000, integer=True)] | None = None
    parameters: list[Parameter] = Field(default_factory=list)
    kpis: list[str] = Field(default_factory=lambda: list(DEFAULT_KPIS), min_length=1)
    target: Target | None = None
    sensitivity: Sensitivity | None = None

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        seen: set[str] = set()
        for i, p in enumerate(self.parameters):
            if p.path in seen:
                problems.append((("parameters", i, "path"), f"'{p.path}' is swept twice; each path may appear once"))
            seen.add(p.path)
            if self.design == "grid" and p.values is None:
                problems.append((("parameters", i), "a grid needs values: [...] (use design: lhs for low/high "
                                                    "ranges)"))
            if self.design == "lhs" and p.values is not None:
                problems.append((("parameters", i, "values"), "design: lhs needs low and high, not values"))
        if self.design == "lhs" and self.samples is None:
            problems.append((("design",), "design: lhs needs samples: N (the number of points)"))
        if not (self.parameters or self.target or self.sensitivity):
            problems.append(((), "nothing to do: give parameters, a target or a sensitivity section"))
        if problems:
            raise FieldProblems(problems)
        return self


def load_spec(path: Path) -> tuple[SweepSpec, dict[str, Any], LineMap]:
    """Read and validate SWEEP.yaml; errors name the file, line and field."""
    data, lines = read_mapping(path)
    try:
        return SweepSpec.model_validate(data), data, lines
    except ValidationError as exc:
        raise ScenarioError(format_validation_errors(exc, data, lines, str(path))) from None


# --------------------------------------------------------------------------------------------- points


def _canon(value: Any) -> Any:
    """Whole floats as ints, so 54 and 54.0 are the same point."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def point_id(values: dict[str, Any]) -> str:
    """A stable id for a parameter combination (the same in every sweep that has it)."""
    canon = json.dumps({k: _canon(v) for k, v in sorted(values.items())}, sort_keys=True, default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Point:
    """One design point: its values, id, scenario and the scenario's content hash."""
    values: dict[str, Any]
    scenario: Scenario
    id: str
    scenario_id: str

    def describe(self) -> str:
        """The point's values as 'path=value, ...'."""
        return ", ".join(f"{k}={v}" for k, v in self.values.items()) or "base scenario"


class PointFactory:
    """Builds each point's scenario from the base, fixed overrides, warm-up and parameter values."""

    def __init__(self, spec: SweepSpec, spec_path: Path, overrides: Sequence[str] = (),
                 spec_lines: LineMap | None = None):
        self.spec_path = spec_path
        base_path = (spec_path.parent / spec.base) if not Path(spec.base).is_absolute() else Path(spec.base)
        self.base_path = base_path
        data, lines = load_raw(base_path)
        self._spec_lines = spec_lines if spec_lines is not None else read_mapping(spec_path)[1]
        problems = []
        for dotted, value in spec.set.items():
            problem = set_path(data, dotted, value, lines, self._origin(("set", dotted)))
            if problem:
                problems.append(f"{self._where(('set', dotted))}: set.{dotted}: {problem}")
        if problems:
            raise ScenarioError(problems)
        data = apply_overrides(data, overrides, lines)
        self._data, self._lines = data, lines
        self.warmup: int | None = None
        self._paths: dict[str, tuple[str | int, ...]] = {}
        for where, params in (("parameters", spec.parameters),
                              ("sensitivity", spec.sensitivity.parameters if spec.sensitivity else [])):
            for i, p in enumerate(params):
                self._paths.setdefault(p.path, (where, i, "path"))
        if spec.target is not None:
            self._paths.setdefault(spec.target.parameter, ("target", "parameter"))
        self._cache: dict[str, Point] = {}
        self.base = self.build({})

    def _origin(self, loc: tuple[Any, ...]) -> tuple[str, int]:
        return self._spec_lines.get(loc, (str(self.spec_path), 0))

    def _where(self, loc: tuple[Any, ...]) -> str:
        source, line = self._origin(loc)
        return f"{source}:{line}" if line else source

    def set_warmup(self, days: int) -> None:
        """Use ``days`` of warm-up for every point built from now on."""
        set_path(self._data, "simulation.warmup_days", int(days), self._lines)
        self.warmup = int(days)
        self._cache.clear()
        self.base = self.build({})

    def build(self, values: dict[str, Any]) -> Point:
        """The point for ``values`` (dotted path -> value) on the base scenario, validated."""
        values = {k: _canon(v) for k, v in values.items()}
        pid = point_id(values)
        hit = self._cache.get(pid)
        if hit is not None:
            return hit
        data = copy.deepcopy(self._data)
        lines = dict(self._lines)
        problems = []
        for path, value in values.items():
            problem = set_path(data, path, value, lines, self._origin(self._paths.get(path, ())))
            if problem:
                problems.append(f"{self._where(self._paths.get(path, ()))}: {path}: {problem}")
        if problems:
            raise ScenarioError(problems)
        shown = ", ".join(f"{k}={v}" for k, v in values.items()) or "base scenario"
        try:
            sc = finish_scenario(data, lines, str(self.base_path))
        except ScenarioError as exc:
            raise ScenarioError([f"sweep point {shown}: {p}" for p in exc.problems]) from None
        point = Point(values, sc, pid, scenario_hash(sc))
        self._cache[pid] = point
        return point


def design_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """The grid (every combination, first parameter slowest) or a Latin hypercube sample."""
    if not spec.parameters:
        return []
    if spec.design == "grid":
        grids = np.meshgrid(*[np.arange(len(p.values or [])) for p in spec.parameters], indexing="ij")
        combos = np.stack([g.ravel() for g in grids], axis=1)
        return [{p.path: (p.values or [])[i] for p, i in zip(spec.parameters, row, strict=True)} for row in combos]
    from scipy.stats import qmc

    sampler = qmc.LatinHypercube(d=len(spec.parameters), seed=np.random.default_rng([spec.seed, 0x5EED]))
    unit = sampler.random(n=spec.samples or 0)
    lows = np.array([p.low for p in spec.parameters], dtype=float)
    highs = np.array([p.high for p in spec.parameters], dtype=float)
    x = qmc.scale(unit, lows, highs)
    out = []
    for row in x:
        out.append({p.path: (round(float(v)) if p.integer else float(v))
                    for p, v in zip(spec.parameters, row, strict=True)})
    return out


# --------------------------------------------------------------------------------------------- store


def _task(args: tuple[Scenario, int, int, str]) -> dict[str, Any]:
    """Worker side of a sweep task: KPIs of one replication of one point."""
    scenario, seed, replication, sid = args
    res = run_replication(scenario, seed, replication, sid, keep_patients=False)
    return {**res.kpis, "seconds": res.seconds, "checks_failed": len(res.checks)}


class Store:
    """Completed tasks as single-row Parquet files; the directory listing is the index."""

    def __init__(self, root: Path):
        self.root = root
        self.parts = root / "parts"

    def path(self, pid: str, replication: int) -> Path:
        """Where the result of (point, replication) is stored."""
        return self.parts / pid / f"r{replication:06d}.parquet"

    def done(self) -> set[tuple[str, int]]:
        """Every (point, replication) already stored."""
        out = set()
        if self.parts.is_dir():
            for f in self.parts.glob("*/r*.parquet"):
                stem = f.stem[1:]
                if stem.isdigit():
                    out.add((f.parent.name, int(stem)))
        return out

    def clean_temporaries(self) -> int:
        """Remove partial files left by a killed writer (never a finished part)."""
        n = 0
        if self.parts.is_dir():
            for f in self.parts.glob("*/.*"):
                f.unlink(missing_ok=True)
                n += 1
        return n

    def write(self, pid: str, replication: int, row: dict[str, Any]) -> None:
        """Store one result atomically (temporary file, then rename)."""
        path = self.path(pid, replication)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([row])
        atomic_write(path, lambda p: pq.write_table(table, p))

    def read(self, keys: Iterable[tuple[str, int]]) -> pd.DataFrame:
        """Stored results for ``keys`` as one table."""
        files = [self.path(pid, r) for pid, r in sorted(keys)]
        if not files:
            return pd.DataFrame()
        return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


# --------------------------------------------------------------------------------------------- running


class _Bar:
    """One progress bar (with ETA) over every phase of a sweep; quiet off a terminal."""

    def __init__(self, total: int, initial: int, show: bool):
        self.bar = tqdm(total=total, initial=initial, desc="sweep", unit="task", disable=not show,
                        dynamic_ncols=True, leave=False)

    def grow(self, n: int) -> None:
        self.bar.total = max(self.bar.total or 0, self.bar.n + n)
        self.bar.refresh()

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


@dataclass
class Runner:
    """Runs (point, replication) tasks on an executor, persisting each as it finishes."""

    store: Store
    executor: Executor
    seed: int
    bar: _Bar
    computed: int = 0
    required: dict[str, str] = field(default_factory=dict)   # KPI -> where the sweep file asks for it

    def ensure(self, points: Sequence[Point], replications: int) -> None:
        """Make sure every point has replications 0 .. ``replications`` - 1 stored (seeds outermost)."""
        done = self.store.done()
        unique = list({p.id: p for p in points}.values())
        todo = [(p, r) for r in range(replications) for p in unique if (p.id, r) not in done]
        if not todo:
            return
        tasks = [(p.scenario, self.seed, r, p.scenario_id) for p, r in todo]
        labels = {(p.scenario_id, r): f"sweep point {p.id} ({p.describe()}) replication {r} (seed {self.seed})"
                  for p, r in todo}

        def label(task: tuple[Scenario, int, int, str]) -> str:
            return labels[(task[3], task[2])]

        for i, kpis in self.executor.run(_task, tasks, label):
            p, r = todo[i]
            if kpis["checks_failed"]:
                log.error("point %s replication %d: %d internal checks failed (please report)",
                          p.id, r, kpis["checks_failed"])
            row = {_ID: p.id, "replication": r, "seed": self.seed, "scenario_id": p.scenario_id, **kpis}
            self.store.write(p.id, r, row)
            self.computed += 1
            self.bar.update()
            self._check_kpis(kpis)  # after the write: the finished result is kept for --resume

    def _check_kpis(self, kpis: dict[str, Any]) -> None:
        """Unknown KPI names stop the sweep at the first result, not after hours of tasks."""
        if not self.required:
            return
        bad = [f"{where}: unknown KPI '{k}'" + (f"; did you mean {', '.join(close)}?" if close else
                                                "; `flowsim run --all-kpis` lists them")
               for k, where in self.required.items() if k not in kpis
               for close in [difflib.get_close_matches(k, list(kpis), n=3)]]
        if bad:
            raise ScenarioError(bad)
        self.required = {}

    def values(self, point: Point, replications: int, kpi: str) -> np.ndarray:
        """The KPI's value in each of ``n`` replications of ``point`` (running what is missing)."""
        self.ensure([point], replications)
        frame = self.store.read((point.id, r) for r in range(replications))
        if kpi not in frame.columns:
            raise FlowsimError(f"unknown KPI '{kpi}'; `flowsim run --all-kpis` lists the KPIs")
        return frame[kpi].to_numpy(dtype=float)


def one_sided_bound(x: np.ndarray, confidence: float, upper: bool) -> float:
    """One-sided t confidence bound on the mean of ``x``."""
    n = len(x)
    m = float(np.mean(x))
    if n < 2:
        return math.inf if upper else -math.inf
    half = float(stats.t.ppf(confidence, n - 1) * np.std(x, ddof=1) / math.sqrt(n))
    return m + half if upper else m - half


@dataclass
class TargetResult:
    """Answer of the target finder, with the evidence for it."""

    target: Target
    answer: float | None                 # smallest value meeting the target with confidence
    point_estimate: float | None         # smallest value whose mean meets the target
    evaluations: pd.DataFrame = field(repr=False)
    monotone: bool = True
    replications: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The target finder's answer as plain data, for ``target.json``."""
        t = self.target
        ev = self.evaluations.set_index("value")

        def at(v: float | None) -> dict[str, float] | None:
            if v is None or v not in ev.index:
                return None
            row = ev.loc[v]
            return {"value": v, "mean": row["mean"], "ci_low": row["ci_low"], "ci_high": row["ci_high"],
                    "bound": row["bound"]}

        below = None
        if self.answer is not None:
            lower = ev.index[ev.index < self.answer]
            below = at(float(lower.max())) if len(lower) else None
        sense = "at most" if t.at_most is not None else "at least"
        return {
            "parameter": t.parameter, "kpi": t.kpi, "rule": f"{t.kpi} {sense} {t.threshold}",
            "confidence": t.confidence, "replications": self.replications,
            "answer": self.answer, "point_estimate": self.point_estimate,
            "answer_kpi": at(self.answer), "next_lower_kpi": below, "monotone": self.monotone,
            "searched": [t.low, t.high],
        }

    def sentence(self) -> str:
        """The answer in one sentence, for the terminal."""
        t = self.target
        sense = "<=" if t.at_most is not None else ">="
        name = t.label or t.parameter
        if self.answer is None:
            return (f"{name}: no value in [{t.low:g}, {t.high:g}] gives {t.kpi} {sense} {t.threshold:g} "
                    f"with {t.confidence:.0%} confidence")
        d = self.as_dict()["answer_kpi"]
        pe = "" if self.point_estimate is None else f"; the mean alone meets it from {self.point_estimate:g}"
        return (f"{name}: smallest value with {t.kpi} {sense} {t.threshold:g} at {t.confidence:.0%} confidence "
                f"is {self.answer:g} (mean {d['mean']:.2f}, 95% CI [{d['ci_low']:.2f}, {d['ci_high']:.2f}])"
                f"{pe}")


class _Bisection:
    """Bisection on a target with one cache of evaluations shared by the mean and the confidence bound."""

    def __init__(self, target: Target, evaluate: Callable[[float], np.ndarray]):
        self.target = target
        self.evaluate = evaluate
        self.upper = target.at_most is not None
        self.step = 1.0 if target.integer else (target.tolerance or (target.high - target.low) / 64)
        self.cache: dict[float, np.ndarray] = {}

    def get(self, v: float) -> np.ndarray:
        """The KPI per replication at ``v`` (integer parameters rounded), evaluated once."""
        v = float(round(v)) if self.target.integer else float(v)
        if v not in self.cache:
            self.cache[v] = self.evaluate(v)
        return self.cache[v]

    def meets(self, v: float, confident: bool) -> bool:
        """Whether ``v`` meets the target by its mean, or (``confident``) by the one-sided bound."""
        t = self.target
        x = self.get(v)
        stat = one_sided_bound(x, t.confidence, self.upper) if confident else float(np.mean(x))
        return stat <= t.threshold if self.upper else stat >= t.threshold

    def search(self, confident: bool) -> float | None:
        """The smallest value meeting the target (None when even the highest does not)."""
        t = self.target
        lo, hi = (float(round(t.low)), float(round(t.high))) if t.integer else (t.low, t.high)
        if not self.meets(hi, confident):
            return None
        if self.meets(lo, confident):
            return lo
        while hi - lo > self.step * 1.000001:
            mid = (lo + hi) / 2
            mid = float(math.floor(mid)) if t.integer else mid
            if self.meets(mid, confident):
                hi = mid
            else:
                lo = mid
        return hi

    def evaluations(self) -> pd.DataFrame:
        """Every value tried, with its mean, 95% CI (kept inside the KPI's range) and one-sided bound."""
        t = self.target
        rows = []
        for v in sorted(self.cache):
            x = self.cache[v]
            m, lo_ci, hi_ci = bounded_ci(x, *kpi_range(t.kpi))
            rows.append({"value": v, "mean": m, "ci_low": lo_ci, "ci_high": hi_ci,
                         "bound": one_sided_bound(x, t.confidence, self.upper), "n": len(x)})
        return pd.DataFrame(rows)


def find_target(target: Target, evaluate: Callable[[float], np.ndarray]) -> TargetResult:
    """Bisection for the smallest parameter value meeting the target, assuming meeting it is monotone
    in the parameter (more capacity never makes it worse).

    Two criteria share one cache of evaluations: the mean meets the threshold (the point estimate)
    and the one-sided ``confidence`` bound meets it (the answer).  The gap between them is the
    uncertainty a board should see.  ``evaluate`` returns the KPI per replication (common random
    numbers across values).
    """
    bisect = _Bisection(target, evaluate)
    answer = bisect.search(True)
    point = bisect.search(False)
    ev = bisect.evaluations()
    means = ev["mean"].to_numpy()
    # meeting the target should not get harder with more capacity; say so if the evidence disagrees
    monotone = bool(np.all(np.diff(means) <= 1e-9)) if bisect.upper else bool(np.all(np.diff(means) >= -1e-9))
    if not monotone:
        log.warning("target finder: %s is not monotone in %s over the values tried; bisection assumes it is",
                    target.kpi, target.parameter)
    return TargetResult(target, answer, point, ev, monotone)


def _max_bisection_evaluations(t: Target) -> int:
    span = (t.high - t.low) / (1.0 if t.integer else (t.tolerance or (t.high - t.low) / 64))
    return 2 * (2 + max(1, math.ceil(math.log2(max(span, 2)))))


def sensitivity_design(s: Sensitivity, seed: int) -> tuple[dict[str, Any], np.ndarray]:
    """SALib problem and sample matrix (integers rounded) for a sensitivity section."""
    problem = {"num_vars": len(s.parameters), "names": [p.path for p in s.parameters],
               "bounds": [[p.low, p.high] for p in s.parameters]}
    if s.method == "morris":
        from SALib.sample import morris as sampler

        x = sampler.sample(problem, N=s.trajectories, num_levels=s.levels, seed=seed)
    else:
        from SALib.sample import sobol as sampler

        x = sampler.sample(problem, N=s.samples, calc_second_order=False, seed=seed)
    for j, p in enumerate(s.parameters):
        if p.integer:
            x[:, j] = np.round(x[:, j])
    return problem, x


def analyse_sensitivity(s: Sensitivity, problem: dict[str, Any], x: np.ndarray, y: np.ndarray,
                        seed: int) -> pd.DataFrame:
    """Indices for one KPI's outputs ``y`` (one per row of ``x``)."""
    if s.method == "morris":
        from SALib.analyze import morris as analyser

        res = analyser.analyze(problem, x, y, num_levels=s.levels, seed=seed)
        cols = ["mu", "mu_star", "sigma", "mu_star_conf"]
    else:
        from SALib.analyze import sobol as analyser

        res = analyser.analyze(problem, y, calc_second_order=False, seed=seed)
        cols = ["S1", "S1_conf", "ST", "ST_conf"]
    return pd.DataFrame({c: np.asarray(res[c], dtype=float) for c in cols},
                        index=pd.Index(problem["names"], name="parameter"))


@dataclass
class SweepResult:
    """Everything a sweep produced, as returned to Python callers (the files hold the same)."""

    spec: SweepSpec
    out: Path
    table: pd.DataFrame                 # tidy: one row per design point x replication
    summary: pd.DataFrame               # per design point x KPI: mean and 95% CI
    replications: int
    warmup_days: int
    target: TargetResult | None = None
    sensitivity: pd.DataFrame | None = None
    computed: int = 0                   # tasks run by this call (the rest were resumed)
    seconds: float = 0.0
    files: dict[str, Path] = field(default_factory=dict)
    warmup_choice: WarmupChoice | None = None   # when this call chose the warm-up by MSER-5


#: Draws a sweep's figures into a directory (the presentation layer passes one in: the domain draws nothing).
SweepDrawer = Callable[[SweepResult, Path], Mapping[str, Path]]


def _spec_fingerprint(spec: SweepSpec) -> str:
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]


def _summarise(table: pd.DataFrame, spec: SweepSpec, kpis: list[str]) -> pd.DataFrame:
    rows = []
    names = [p.path for p in spec.parameters]
    for pid, grp in table.groupby(_ID, sort=False):
        base = {_ID: pid, **{n: grp[n].iloc[0] for n in names}}
        for k in kpis:
            m, lo, hi = bounded_ci(grp[k].to_numpy(dtype=float), *kpi_range(k))
            rows.append({**base, "kpi": k, "mean": m, "ci_low": lo, "ci_high": hi,
                         "sd": float(grp[k].std(ddof=1)) if len(grp) > 1 else float("nan"), "n": len(grp)})
    return pd.DataFrame(rows)


def _check_points(spec: SweepSpec, factory: PointFactory) -> None:
    """Build every design and sensitivity point once, so an invalid one stops the sweep before it writes."""
    if spec.warmup == "auto":
        check_warmup_auto(factory.base.scenario)
    for values in design_points(spec):
        factory.build(values)
    if spec.sensitivity is not None:
        problem, x = sensitivity_design(spec.sensitivity, spec.seed)
        for row in x:
            factory.build(dict(zip(problem["names"], map(_canon, row.tolist()), strict=True)))


@dataclass
class _Plan:
    """What a sweep call will run, settled before anything runs: warm-up, replications, points, record."""

    warm_info: dict[str, Any]
    choice: WarmupChoice | None
    replications: int
    rep_info: dict[str, Any]
    design: list[Point]
    sens_points: list[Point]
    sens_x: np.ndarray | None
    problem: dict[str, Any]


#: What to do with a directory already holding a sweep's results: refuse it, continue it, or discard them.
ExistingResults = Literal["refuse", "resume", "fresh"]


def run_sweep(spec_path: Path, out: Path | None = None, *, existing: ExistingResults = "refuse",
              executor: Executor | None = None, overrides: Sequence[str] = (), progress: bool | None = None,
              draw: SweepDrawer | None = None, command: list[str] | None = None) -> SweepResult:
    """Run (or resume) the sweep in ``spec_path``; write its outputs under ``out``.

    The steps: check the spec and every point, claim the directory (``_open``), settle warm-up,
    replications and points (``_plan``), refuse a resumed sweep that is no longer the same sweep, run the
    design and the target finder (``_run_tasks``), write the tables (``_write_tables``), then the figures
    and the completion marker.  ``draw`` (from the presentation layer, e.g.
    ``flowsim.report.sweep_figures.draw_sweep``) adds the figures before the sweep is marked complete;
    without it none is drawn.  ``existing``: what to do when ``out`` already holds results (``--resume``,
    ``--fresh``); refused by default."""
    t0 = time.perf_counter()
    spec, _, spec_lines = load_spec(spec_path)
    factory = PointFactory(spec, spec_path, overrides, spec_lines)  # every scenario checked before any write
    # the spec's name chooses what the directory is called, never where it is (a slug under outputs/sweeps)
    out = out or Path("outputs") / "sweeps" / slug(spec.name or spec_path.stem, "sweep")
    store, claimed, old_meta = _open(spec, spec_path, factory, out, resume=existing == "resume",
                                     fresh=existing == "fresh", command=command)
    stored = store.done()
    ex = executor or SerialExecutor()
    show = sys.stderr.isatty() if progress is None else progress
    plan = _plan(spec, factory, old_meta, ex, show)
    _check_same_sweep(out, old_meta, factory, [*plan.design, *plan.sens_points])

    static = [(p, plan.replications) for p in plan.design]
    if spec.sensitivity is not None:
        static += [(p, spec.sensitivity.replications) for p in plan.sens_points]
    wanted = {(p.id, r) for p, n in static for r in range(n)}
    already = len(wanted & stored)
    target_reps = (spec.target.replications or plan.replications) if spec.target else 0
    estimate = len(wanted) + (_max_bisection_evaluations(spec.target) * target_reps if spec.target else 0)
    meta: dict[str, Any] = {
        "name": spec.name or spec_path.stem, "spec": str(spec_path), "spec_fingerprint": _spec_fingerprint(spec),
        "base": str(factory.base_path), "base_scenario_id": factory.base.scenario_id, "seed": spec.seed,
        "replications": plan.rep_info, "warmup": plan.warm_info, "executor": ex.name, "workers": ex.workers,
        "points": {**old_meta.get("points", {}),
                   **{p.id: p.scenario_id for p in [*plan.design, *plan.sens_points]}},
        "status": "running", "versions": versions(), "command": command if command is not None else sys.argv,
    }
    reopen_output(claimed)  # from here on a resumed sweep is incomplete until it finishes again
    atomic_text(out / "sweep.yaml", spec_path.read_text(encoding="utf-8"))
    atomic_text(out / "sweep.json", json.dumps(meta, indent=2, default=str) + "\n")
    if already:
        log.info("resuming: %d of %d design tasks already done", already, len(wanted))

    bar = _Bar(estimate, already, show)
    runner = Runner(store, ex, spec.seed, bar, required=_required_kpis(spec, spec_path, spec_lines))
    if stored:  # resuming: check the names against a stored result before running anything
        runner._check_kpis(store.read([next(iter(stored))]).iloc[0].to_dict())
    try:
        target_result = _run_tasks(spec, factory, runner, static, target_reps=target_reps, meta=meta)
    finally:
        bar.close()

    files, table, summary, sens_table = _write_tables(spec, spec_path, store, plan,
                                                            target_result=target_result, out=out)
    seconds = time.perf_counter() - t0
    result = SweepResult(spec, out, table, summary, plan.replications, int(plan.warm_info["warmup_days"]),
                         target_result, sens_table, runner.computed, seconds, files, plan.choice)
    if draw is not None:
        files.update(draw(result, out / "figures"))
    meta.update(status="complete", tasks_run_this_call=runner.computed, seconds_this_call=round(seconds, 2),
                target=target_result.as_dict() if target_result else None)
    files["meta"] = atomic_text(out / "sweep.json", json.dumps(meta, indent=2, default=str) + "\n")
    finish_output(claimed)
    return result


def _open(spec: SweepSpec, spec_path: Path, factory: PointFactory, out: Path, *, resume: bool, fresh: bool,
          command: list[str] | None) -> tuple[Store, OutputDir, dict[str, Any]]:
    """Check everything a user can get wrong, then claim ``out`` (nothing is written before the claim).

    Returns the task store, the claimed directory and the metadata of the sweep being resumed (empty
    for a new one)."""
    store = Store(out)
    meta_path = out / "sweep.json"
    existing = store.done()
    if existing and not resume and not fresh:
        raise FlowsimError(f"{out} already holds {len(existing)} results of a sweep; add --resume to continue it, "
                           f"or --fresh to discard them and start again")
    _check_points(spec, factory)  # a bad grid value is a user mistake: found before anything is written
    old_meta = json.loads(meta_path.read_text()) if resume and meta_path.exists() else {}
    if old_meta and old_meta.get("seed") != spec.seed:
        raise FlowsimError(f"{out}: the sweep was started with seed {old_meta.get('seed')}, now {spec.seed}; "
                           "results would mix seeds (use --fresh, or another --out)")
    claimed = claim_output(out, "sweep", overwrite=fresh, resume=resume, command=command, what="")
    if store.clean_temporaries():
        log.info("removed partial files left by an interrupted run")
    return store, claimed, old_meta


def _plan(spec: SweepSpec, factory: PointFactory, old_meta: dict[str, Any], ex: Executor, show: bool) -> _Plan:
    """Warm-up, replications and the points to run (a resumed sweep reuses the decisions it recorded)."""
    warm_info, choice = _warmup(spec, factory, old_meta, ex, show)
    replications, rep_info = _replications(spec, factory, old_meta, ex, show)
    design = [factory.build(v) for v in design_points(spec)]
    sens_points: list[Point] = []
    sens_x = None
    problem: dict[str, Any] = {}
    if spec.sensitivity is not None:
        problem, sens_x = sensitivity_design(spec.sensitivity, spec.seed)
        names = problem["names"]
        sens_points = [factory.build(dict(zip(names, map(_canon, row.tolist()), strict=True))) for row in sens_x]
    return _Plan(warm_info, choice, replications, rep_info, design, sens_points, sens_x, problem)


def _warmup(spec: SweepSpec, factory: PointFactory, old_meta: dict[str, Any], ex: Executor,
            show: bool) -> tuple[dict[str, Any], WarmupChoice | None]:
    """The scenario's own warm-up, a fixed number, or MSER-5 on a pilot (remembered for --resume)."""
    if spec.warmup != "auto":
        if isinstance(spec.warmup, int):
            factory.set_warmup(spec.warmup)
        return {"warmup_days": factory.base.scenario.simulation.warmup_days,
                "method": "fixed" if isinstance(spec.warmup, int) else "scenario"}, None
    old = old_meta.get("warmup", {})
    if old.get("method") and old.get("warmup_days") is not None:
        factory.set_warmup(int(old["warmup_days"]))
        return old, None
    choice = choose_warmup(factory.base.scenario, spec.warmup_kpi, spec.seed, executor=ex, progress=show)
    factory.set_warmup(int(choice.days))
    return choice.as_dict(), choice


def _replications(spec: SweepSpec, factory: PointFactory, old_meta: dict[str, Any], ex: Executor,
                  show: bool) -> tuple[int, dict[str, Any]]:
    """Fixed, or Hoad's method on the base scenario (remembered for --resume)."""
    if not isinstance(spec.replications, AutoReplications):
        return spec.replications, {"method": "fixed", "n": spec.replications}
    old = old_meta.get("replications", {})
    if old.get("method") == "auto" and old.get("n") is not None:
        return int(old["n"]), old
    auto = spec.replications
    _, decision = simulate_to_precision(factory.base.scenario, auto.kpi, StoppingRule(auto.precision, cap=auto.max),
                                        spec.seed, executor=ex, progress=show, keep_patients=False)
    return decision.n_used, {"method": "auto", "n": decision.n_used, "kpi": auto.kpi, "precision": auto.precision,
                             "n_solution": decision.n_solution, "capped": decision.capped,
                             "achieved": decision.precision[-1]}


def _check_same_sweep(out: Path, old_meta: dict[str, Any], factory: PointFactory, points: list[Point]) -> None:
    """A resumed sweep must be the same sweep: same seed, base scenario and overrides (so every point,
    including target-finder points tried before an interruption, builds the scenario it built then)."""
    old_base = old_meta.get("base_scenario_id")
    if old_base is not None and old_base != factory.base.scenario_id:
        raise FlowsimError(f"{out}: the base scenario (or set:/--set overrides, or the warm-up) changed since the "
                           f"sweep started (scenario id {old_base} -> {factory.base.scenario_id}); results would mix "
                           "scenarios: use --fresh, or another --out")
    old_points = old_meta.get("points", {})
    for p in points:
        if p.id in old_points and old_points[p.id] != p.scenario_id:
            raise FlowsimError(f"{out}: point {p.id} ({p.values}) now builds a different scenario than when the "
                               "sweep started (the base scenario or overrides changed); use --fresh or another --out")


def _required_kpis(spec: SweepSpec, spec_path: Path, spec_lines: LineMap) -> dict[str, str]:
    """Every KPI the spec names, with where it names it (for the unknown-KPI error)."""
    def where(*loc: str | int) -> str:
        source, line = spec_lines.get(loc, (str(spec_path), 0))
        return f"{source}:{line}: {'.'.join(map(str, loc))}"

    required = {k: where("kpis") for k in spec.kpis}
    if spec.target is not None:
        required.setdefault(spec.target.kpi, where("target", "kpi"))
    if spec.sensitivity is not None:
        required.update({k: where("sensitivity", "kpis") for k in spec.sensitivity.kpis if k not in required})
    return required


def _run_tasks(spec: SweepSpec, factory: PointFactory, runner: Runner, static: list[tuple[Point, int]], *,
               target_reps: int, meta: dict[str, Any]) -> TargetResult | None:
    """Run the design and sensitivity points, then the target finder (its points recorded in ``meta``)."""
    by_n: dict[int, list[Point]] = {}
    for p, n in static:
        by_n.setdefault(n, []).append(p)
    for n, pts in by_n.items():
        runner.ensure(list({p.id: p for p in pts}.values()), n)
    if spec.target is None:
        return None
    t = spec.target

    def evaluate(v: float) -> np.ndarray:
        runner.bar.grow(target_reps)
        return runner.values(factory.build({t.parameter: v}), target_reps, t.kpi)

    target_result = find_target(t, evaluate)
    target_result.replications = target_reps
    meta["points"].update({point_id({t.parameter: _canon(v)}): factory.build({t.parameter: v}).scenario_id
                           for v in target_result.evaluations["value"]})
    return target_result


def _write_tables(spec: SweepSpec, spec_path: Path, store: Store, plan: _Plan, *,
                  target_result: TargetResult | None, out: Path
                  ) -> tuple[dict[str, Path], pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """The tidy results, the per-point summary, the sensitivity indices and the target's evaluations."""
    files: dict[str, Path] = {}
    table = _design_table(store, spec, plan.design, plan.replications)
    kpi_cols = [k for k in spec.kpis if k in table.columns]
    missing = [k for k in spec.kpis if k not in table.columns] if not table.empty else []
    if missing:
        raise FlowsimError(f"{spec_path}: kpis: unknown {', '.join(missing)}; `flowsim run --all-kpis` lists them")
    summary = _summarise(table, spec, kpi_cols) if not table.empty else pd.DataFrame()
    if not table.empty:
        files["results"] = atomic_write(out / "results.parquet", lambda p: table.to_parquet(p, index=False))
        files["results_csv"] = atomic_write(out / "results.csv", lambda p: table.to_csv(p, index=False))
        files["summary"] = atomic_write(out / "summary.csv", lambda p: summary.to_csv(p, index=False))
    sens_table = _sensitivity_table(spec, spec_path, store, plan)
    if sens_table is not None:
        files["sensitivity"] = atomic_write(out / "sensitivity.csv", lambda p: sens_table.to_csv(p, index=False))
    if target_result is not None:
        ev = target_result.evaluations
        files["target_csv"] = atomic_write(out / "target.csv", lambda p: ev.to_csv(p, index=False))
        files["target"] = atomic_text(out / "target.json",
                                      json.dumps(target_result.as_dict(), indent=2, default=float) + "\n")
    return files, table, summary, sens_table


def _sensitivity_table(spec: SweepSpec, spec_path: Path, store: Store, plan: _Plan) -> pd.DataFrame | None:
    """Sensitivity indices per KPI from the mean of each sensitivity point's replications."""
    s = spec.sensitivity
    if s is None or plan.sens_x is None:
        return None
    frame = store.read((p.id, r) for p in {p.id: p for p in plan.sens_points}.values() for r in range(s.replications))
    means = frame.groupby(_ID).mean(numeric_only=True)
    parts = []
    for k in s.kpis:
        if k not in means.columns:
            raise FlowsimError(f"{spec_path}: sensitivity.kpis: unknown KPI '{k}'")
        y = np.array([means.loc[p.id, k] for p in plan.sens_points], dtype=float)
        parts.append(analyse_sensitivity(s, plan.problem, plan.sens_x, y, spec.seed).assign(kpi=k).reset_index())
    return pd.concat(parts, ignore_index=True)


def _design_table(store: Store, spec: SweepSpec, design: list[Point], replications: int) -> pd.DataFrame:
    """Tidy table of the design points: point id, parameter values, replication, seed, scenario id, KPIs."""
    if not design:
        return pd.DataFrame()
    unique = list({p.id: p for p in design}.values())
    frame = store.read((p.id, r) for p in unique for r in range(replications))
    order = {p.id: i for i, p in enumerate(unique)}
    params = pd.DataFrame([{_ID: p.id, "point": order[p.id], **p.values} for p in unique])
    table = params.merge(frame, on=_ID, how="right")
    table = table.sort_values(["point", "replication"], kind="stable").reset_index(drop=True)
    lead = [_ID, "point", *[p.path for p in spec.parameters], "replication", "seed", "scenario_id"]
    dup = table.duplicated([_ID, "replication"])
    if dup.any():  # cannot happen with one file per key; a guard against a future change
        raise FlowsimError(f"{store.root}: duplicate results for {int(dup.sum())} tasks")
    return table[lead + [c for c in table.columns if c not in lead]]
