"""Run replications of a scenario on any executor; choose warm-up and replication count.

A replication is a pure function of (scenario, seed, replication index), so
the pool only changes *where* it runs, never what it returns: results are
sorted by replication index and identical to a serial run.
"""

from __future__ import annotations

import datetime as dt
import difflib
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypedDict

import pandas as pd
from tqdm import tqdm
from typing_extensions import Unpack

from flowsim.errors import FlowsimError
from flowsim.experiment.executors import Executor, available_cores, make_executor
from flowsim.experiment.parts import TABLES, Encoded, PartStore, encode
from flowsim.experiment.replications import ReplicationDecision, StoppingRule, decide, still_needed
from flowsim.experiment.stats import PERIOD_CENSUS, drd_band_table, node_quantiles, period_table, summarise
from flowsim.experiment.warmup import MserResult, mser5
from flowsim.model.kernel import gc_paused
from flowsim.model.model import Model
from flowsim.results.kpi import ReplicationResult, analyse, kpi_range
from flowsim.results.records import TIME_FIELDS
from flowsim.rng import Streams, make_stream
from flowsim.scenario.loader import scenario_hash, scenario_to_dict, validate_dict, with_parameters
from flowsim.scenario.parameters import PARAMETER_STREAM
from flowsim.scenario.pathway_only import compile_scenario
from flowsim.scenario.provenance import override_record
from flowsim.scenario.schema import Scenario

log = logging.getLogger(__name__)

PILOT_SEED_OFFSET = 1_000_003  # warm-up pilots draw from seeds the main runs do not use


def drawn_parameters(scenario: Scenario, seed: int, replication: int) -> Scenario:
    """The scenario replication ``replication`` simulates: with ``parameters_from``, one accepted parameter set
    drawn on its own stream from (seed, replication), so every option on the same seed draws the same set."""
    draws = scenario.parameters_from
    if draws is None or not draws.sets:
        return scenario
    k = int(make_stream(seed, replication, PARAMETER_STREAM).integers(len(draws.sets)))
    return with_parameters(scenario, draws.sets[k])


def run_replication(scenario: Scenario, seed: int, replication: int, scenario_id: str | None = None,
                    keep_patients: bool = True) -> ReplicationResult:
    """Simulate and analyse one replication.

    The garbage collector stays paused from building the model to the end of the analysis (``gc_paused``), and the
    analysed patients are then let go at once: the model that made them sits in reference cycles (its pending
    tasks' generators hold it), so otherwise the first collection would walk every patient before freeing them
    (~0.07 s of a Rotherham replication's ~1.3 s CPU).  Nothing reads the raw run after its analysis."""
    t = time.perf_counter()
    model_scenario = compile_scenario(drawn_parameters(scenario, seed, replication))  # pathway-only: full model
    with gc_paused():
        raw = Model(model_scenario, Streams(seed, replication)).run()
        res = analyse(raw, model_scenario, replication, seed, scenario_id or scenario_hash(scenario),
                      keep_patients=keep_patients)
        raw.patients.clear()
    for problem in res.checks:
        log.error("invariant violated in replication %d: %s", replication, problem)
    return ReplicationResult(**{**res.__dict__, "seconds": time.perf_counter() - t})


@dataclass(frozen=True)
class PackedResult:
    """One replication as it travels from a worker back to the run: KPIs, checks and counts, and its tables already
    encoded as Parquet (``flowsim.experiment.parts.encode``), ready to be written to the run's ``PartStore``."""

    replication: int
    seed: int
    kpis: dict[str, float]
    checks: list[str]
    kernel_events: int
    model_events: int
    seconds: float
    tables: dict[str, Encoded | None]


def pack(res: ReplicationResult) -> PackedResult:
    """Encode a replication's tables where it ran (in the worker, in parallel with the other workers)."""
    return PackedResult(res.replication, res.seed, res.kpis, list(res.checks), res.kernel_events, res.model_events,
                        res.seconds, {table: encode(getattr(res, table)) for table in TABLES})


def _task(args: tuple[Scenario, int, int, str, bool]) -> PackedResult:
    return pack(run_replication(*args))


class ReplicationRecord:
    """One replication as a run keeps it: KPIs, checks and timings in memory, its tables on disk.

    ``daily``, ``patients``, ``escalation`` and ``nodes`` read the replication's stored table each
    time they are asked for (``None`` when the replication has none), like the fields of the
    ``ReplicationResult`` it came from.
    """

    __slots__ = ("_store", "checks", "kernel_events", "kpis", "model_events", "replication", "seconds", "seed")

    def __init__(self, res: PackedResult, store: PartStore):
        self.replication = res.replication
        self.seed = res.seed
        self.kpis = res.kpis
        self.checks = list(res.checks)
        self.kernel_events = res.kernel_events
        self.model_events = res.model_events
        self.seconds = res.seconds
        self._store = store
        for table, encoded in res.tables.items():
            store.write_encoded(table, res.replication, encoded)

    def _table(self, table: str) -> pd.DataFrame | None:
        return self._store.read_one(table, self.replication)

    @property
    def daily(self) -> pd.DataFrame:
        """The replication's daily table (empty when it has none), read from the store."""
        frame = self._table("daily")
        return frame if frame is not None else pd.DataFrame()

    @property
    def patients(self) -> pd.DataFrame | None:
        """The replication's per-stay records, or None when the run did not keep them."""
        return self._table("patients")

    @property
    def escalation(self) -> pd.DataFrame | None:
        """The replication's OPEL and action events, or None without escalation."""
        return self._table("escalation")

    @property
    def nodes(self) -> pd.DataFrame | None:
        """The replication's per-node daily table, or None."""
        return self._table("nodes")


@dataclass(frozen=True)
class RunResult:
    """All replications of one scenario, with tables built on demand.

    Only the KPIs of each replication are held in memory; the per-replication tables (days, stays,
    nodes, escalation events) live in ``store`` and are read when a method asks for them, so memory
    does not grow with the number of replications.  Every table is assembled in replication order.
    ``execution`` records where the replications ran (executor, workers, Dask scheduler).
    ``scenario`` is the scenario as run (``extends``, ``--set`` and warm-up choices applied, and recorded in
    its ``overrides``); ``scenario_id`` its content hash; replication ``r`` used seed ``(seed, r)``.
    """

    scenario: Scenario
    scenario_id: str
    seed: int
    replications: list[ReplicationRecord]
    store: PartStore = field(repr=False, compare=False, default_factory=PartStore)
    execution: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def _order(self) -> list[int]:
        return [r.replication for r in self.replications]

    @cached_property
    def _kpis(self) -> pd.DataFrame:
        # built once: summaries, comparisons and files all read it
        return pd.DataFrame([r.kpis for r in self.replications],
                            index=pd.Index(self._order, name="replication"))

    def kpi_frame(self) -> pd.DataFrame:
        """Rows = replications, columns = KPIs (a shared frame: copy it before changing it)."""
        return self._kpis

    def summary(self) -> pd.DataFrame:
        """KPI x (mean, ci_low, ci_high, sd, p5, p50, p95, n) over replications.

        The 95% intervals respect each KPI's range (never a negative count, never a share above 100%): see
        ``flowsim.experiment.stats.bounded_ci``; the percentiles describe the spread of single runs."""
        return summarise(self.kpi_frame(), bounds=kpi_range)

    def daily(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows = replication x day (read from the stored parts; ``columns`` reads only those)."""
        return self.store.concat("daily", self._order, columns)

    def daily_columns(self) -> list[str]:
        """The daily table's column names, read from the first stored part's schema (no data is read)."""
        return self.store.columns("daily", self._order)

    def daily_frames(self, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        """The daily table one replication at a time, in replication order (constant memory)."""
        return self.store.frames("daily", self._order, columns)

    def patients(self) -> pd.DataFrame:
        """One row per stay of every replication (empty if the run was made with ``keep_patients=False``).

        Model times are days from ``simulation.start_date`` 00:00 (negative in the warm-up, NaN if the stay had
        not reached that point when the run ended); each has a calendar ``<field>_datetime`` beside it (to the
        second), and ``warmup`` marks stays that arrived during the warm-up (before ``start_date``), whose
        KPIs count only the part inside the results window.  Patients given by ``initial_state`` are marked
        ``initial`` instead."""
        frames = self.store.concat("patients", self._order)
        return with_calendar(frames, self.scenario.simulation.start_date) if not frames.empty else frames

    def patient_frames(self) -> Iterator[pd.DataFrame]:
        """``patients()`` one replication at a time, in replication order (constant memory)."""
        start = self.scenario.simulation.start_date
        return (with_calendar(f, start) for f in self.store.frames("patients", self._order))

    def escalation(self) -> pd.DataFrame:
        """OPEL level changes and action events of every replication (empty without escalation)."""
        return self.store.concat("escalation", self._order)

    def nodes(self) -> pd.DataFrame:
        """Per replication, day and node (pathway x locality): occupancy, queue, waits, cost."""
        frames = [f for f in self.store.frames("nodes", self._order) if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def node_summary(self) -> pd.DataFrame:
        """Per day and node: mean and 5/50/95th percentiles across replications (one node at a time)."""
        first = next(self.store.frames("nodes", self._order[:1], ["node"]), None)
        if first is None or first.empty:
            return pd.DataFrame()
        parts = []
        for node in pd.unique(first["node"]):
            frames = [f[f["node"] == node] for f in self.store.frames("nodes", self._order)]
            parts.append(node_quantiles(pd.concat(frames, ignore_index=True)))
        return pd.concat(parts, ignore_index=True).sort_values(
            ["node", "pathway", "locality", "date", "day"], kind="stable").reset_index(drop=True)

    def periods(self, freq: str = "Q") -> pd.DataFrame:
        """Delayed days (DTOC, midnight census summed), NCTR, stranded patients and DRD delays per period, with
        95% CIs and BCF rates.

        ``freq``: ``'Q'``/``'quarter'`` (NHS quarters, April-June = Q1), ``'M'``/``'month'``, ``'Y'``/``'year'``
        (NHS financial years, April to March) or ``'W'``/``'week'`` (weeks commencing Monday); anything else
        raises ValueError.  Periods cut by the window's edges say how many days they cover."""
        return period_table(self.daily(self._period_columns()), freq, self.scenario.population_18plus)

    def _period_columns(self) -> list[str] | None:
        """The daily columns the period and band tables read (so they never load the whole daily table)."""
        first = next(self.store.frames("daily", self._order[:1]), None)
        if first is None:
            return None
        census = {col for col, _ in PERIOD_CENSUS}
        return [c for c in first.columns if c in PERIOD_COLUMNS or c in census or c.startswith("drd_")]

    def drd_bands(self, freq: str = "M") -> pd.DataFrame:
        """Discharge Ready Date delay bands per month ('M') or NHS quarter ('Q'), with CIs."""
        return drd_band_table(self.daily(self._period_columns()), freq)

    @property
    def checks(self) -> list[str]:
        """Every invariant violation of every replication (empty when the run is sound)."""
        return [f"replication {r.replication}: {c}" for r in self.replications for c in r.checks]

    def release(self) -> None:
        """Delete the stored tables (after a run directory holds them); the tables are gone afterwards."""
        self.store.remove()


#: The daily columns the period tables read.
PERIOD_COLUMNS = ("date", "day", "replication", "delayed_midnight", "delayed_acute_midnight", "occupancy_pct")


def with_calendar(patients: pd.DataFrame, start: dt.date) -> pd.DataFrame:
    """Per-stay records with a calendar datetime beside each model time and the warm-up flag (see
    ``RunResult.patients``)."""
    out = patients.copy()
    origin = pd.Timestamp(start)
    for f in TIME_FIELDS:
        if f in out.columns:
            at = (origin + pd.to_timedelta(out[f], unit="D")).dt.round("s")
            out.insert(out.columns.get_loc(f) + 1, f"{f}_datetime", at)
    if "arrival" in out.columns:
        initial = out["initial"].astype(bool) if "initial" in out.columns else False
        out["warmup"] = (out["arrival"] < 0) & ~initial
    return out


def default_workers(replications: int) -> int:
    """One process per core, but never more than there are replications to run."""
    return max(1, min(replications, available_cores()))


def _executor_scope(executor: Executor | None, workers: int | None, tasks: int) -> AbstractContextManager[Any]:
    """Use the caller's executor as is, or make a process pool for this call only."""
    if executor is not None:
        return nullcontext(executor)
    n = default_workers(tasks) if workers is None else max(1, workers)
    return make_executor("serial" if n == 1 else "process", n)


def _rep_label(scenario: Scenario) -> Callable[[tuple[Any, ...]], str]:
    return lambda task: f"scenario '{scenario.name}' replication {task[2]} (seed {task[1]})"


#: Told ``(replications done, replications in all)`` each time a replication finishes (a web page's progress bar).
ProgressCallback = Callable[[int, int], None]


class RunOptions(TypedDict, total=False):
    """How and where replications run, never what they return: what :func:`simulate` takes besides the scenario,
    replications and seed, passed on unchanged by the functions built on it (``compare``, the precision rule)."""

    workers: int | None
    progress: bool | ProgressCallback | None
    keep_patients: bool
    executor: Executor | None


def _run_reps(scenario: Scenario, reps: range, seed: int, sid: str, keep_patients: bool, *, ex: Executor,
              tick: Callable[[int, int], None], store: PartStore) -> list[ReplicationRecord]:
    """Run the replications; each one's tables go to ``store`` as it arrives, only its KPIs stay."""
    tasks = [(scenario, seed, r, sid, keep_patients) for r in reps]
    out: list[ReplicationRecord] = []
    for _, res in ex.run(_task, tasks, _rep_label(scenario)):
        out.append(ReplicationRecord(res, store))
        tick(len(out), len(tasks))
    return out


def _ticker(bar: tqdm[Any], progress: bool | ProgressCallback | None) -> Callable[[int, int], None]:
    """What to do as each replication finishes: move the terminal's bar, and tell a caller's callback."""
    callback = progress if callable(progress) else None

    def tick(done: int, total: int) -> None:
        bar.update()
        if callback is not None:
            callback(done, total)

    return tick


def simulate(scenario: Scenario, replications: int = 10, seed: int = 12345, *, workers: int | None = 1,
             progress: bool | ProgressCallback | None = None, keep_patients: bool = True,
             executor: Executor | None = None, parts: Path | None = None) -> RunResult:
    """Run ``replications`` replications of ``scenario``.

    ``executor`` (see ``flowsim.experiment.executors``) says where they run; without one,
    ``workers`` > 1 uses a local process pool for this call.  The result is the same either way.
    ``progress``: a terminal progress bar (True, False, or None for "when stderr is a terminal"), or a callable
    ``progress(done, total)`` called in the calling thread as each replication finishes (a web page's bar).
    Each replication's tables are stored under ``parts`` (a temporary directory by default) as
    they arrive, so memory stays flat however many replications run (see ``RunResult``).
    """
    if replications < 1:
        raise ValueError("replications must be at least 1")
    sid = scenario_hash(scenario)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    bar = tqdm(total=replications, desc=scenario.name[:30], unit="rep", disable=not show, leave=False)
    store = PartStore(parts)
    try:
        with _executor_scope(executor, workers, replications) as ex:
            results = _run_reps(scenario, range(replications), seed, sid, keep_patients, ex=ex,
                                tick=_ticker(bar, progress), store=store)
            execution = ex.describe()
    finally:
        bar.close()
    results.sort(key=lambda r: r.replication)
    return RunResult(scenario, sid, seed, results, store, execution)


def _kpi_values(results: list[ReplicationRecord], kpi: str) -> list[float]:
    if results and kpi not in results[0].kpis:
        close = difflib.get_close_matches(kpi, list(results[0].kpis), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `flowsim run --all-kpis` lists them"
        raise FlowsimError(f"replications: auto: unknown KPI '{kpi}'{hint}")
    return [float(r.kpis[kpi]) for r in results]


def simulate_to_precision(scenario: Scenario, kpi: str, rule: StoppingRule | None = None, seed: int = 12345, *,
                          parts: Path | None = None, **run: Unpack[RunOptions]
                          ) -> tuple[RunResult, ReplicationDecision]:
    """Run replications until the CI of ``kpi`` is within the rule's precision of its mean (Hoad et al. 2010).

    Replications run in batches as wide as the executor; the decision reads them in index order and
    replications beyond the decision are dropped, so the answer does not depend on the executor.
    ``run`` is :class:`RunOptions` (default: a process pool sized to the machine; no progress bar when not a
    terminal; patient records kept).
    """
    rule = rule or StoppingRule()
    sid = scenario_hash(scenario)
    progress = run.get("progress")
    show = sys.stderr.isatty() if progress is None else bool(progress)
    bar = tqdm(total=rule.n0 + rule.k_limit, desc=scenario.name[:30], unit="rep", disable=not show, leave=False)
    results: list[ReplicationRecord] = []
    store = PartStore(parts)
    try:
        with _executor_scope(run.get("executor"), run.get("workers"), rule.cap) as ex:
            while need := still_needed(_kpi_values(results, kpi), rule.precision, alpha=rule.alpha, n0=rule.n0,
                                       k_limit=rule.k_limit, cap=rule.cap):
                batch = min(max(need, ex.workers), rule.cap - len(results))
                bar.total = max(bar.total, len(results) + batch)
                bar.refresh()
                new = _run_reps(scenario, range(len(results), len(results) + batch), seed, sid,
                                run.get("keep_patients", True), ex=ex, tick=_ticker(bar, progress), store=store)
                results.extend(sorted(new, key=lambda r: r.replication))
            execution = ex.describe()
    finally:
        bar.close()
    decision = decide(_kpi_values(results, kpi), rule.precision, alpha=rule.alpha, n0=rule.n0, k_limit=rule.k_limit,
                      cap=rule.cap)
    store.drop([r.replication for r in results[decision.n_used:]])
    _log_decision(decision, kpi, rule)
    return RunResult(scenario, sid, seed, results[: decision.n_used], store, execution), decision


def _log_decision(decision: ReplicationDecision, kpi: str, rule: StoppingRule) -> None:
    if decision.capped:
        log.warning("replications: the cap of %d was reached before %s was within %.1f%% (reached %.1f%%)",
                    rule.cap, kpi, 100 * rule.precision, 100 * decision.precision[-1])
    else:
        log.info("replications: %d needed for %s within %.1f%% (confirmed over %d more)",
                 decision.n_solution, kpi, 100 * rule.precision, decision.n_used - (decision.n_solution or 0))


@dataclass(frozen=True)
class WarmupChoice:
    """A warm-up chosen by MSER-5 on a pilot that starts empty ``pilot_days`` before the start date."""

    days: int
    kpi: str
    pilot_days: int
    pilot_replications: int
    series: pd.Series          # pilot mean of ``kpi`` by day since the empty start
    mser: MserResult

    def as_dict(self) -> dict[str, Any]:
        """The choice as plain data, for ``experiment.json`` and ``sweep.json``."""
        return {"warmup_days": self.days, "method": "MSER-5", "kpi": self.kpi, "pilot_days": self.pilot_days,
                "pilot_replications": self.pilot_replications, "reliable": self.mser.reliable}


def with_warmup(scenario: Scenario, days: int, source: str = "--warmup") -> Scenario:
    """The scenario with ``simulation.warmup_days`` replaced (validated like any other change, and recorded in
    ``overrides`` so the outputs say the run's warm-up is not the file's)."""
    data = scenario_to_dict(scenario)
    was = data["simulation"]["warmup_days"]
    data["simulation"]["warmup_days"] = int(days)
    if int(days) != was:
        data["overrides"] = [*data.get("overrides", []), override_record("simulation.warmup_days", int(days), was,
                                                                         source)]
    return validate_dict(data, f"{scenario.name} (warm-up {days} days)")


def check_warmup_auto(scenario: Scenario) -> None:
    """A scenario that starts from a snapshot has no warm-up to choose."""
    if scenario.initial_state is not None:
        raise FlowsimError("warm-up auto: this scenario starts from a snapshot (initial_state), so it has no "
                           "warm-up to choose; remove initial_state or give a fixed warm-up")


def choose_warmup(scenario: Scenario, kpi: str = "delayed_midnight", seed: int = 12345, pilot_replications: int = 5,
                  *, pilot_days: int | None = None, workers: int | None = None,
                  executor: Executor | None = None, progress: bool | None = None) -> WarmupChoice:
    """Warm-up by MSER-5 on the mean daily ``kpi`` of a pilot that starts from an empty system.

    The pilot starts empty ``pilot_days`` (default: the run length, at least 365) before
    ``start_date`` and runs to the scenario's end, so MSER searches the first half of a
    series twice the candidate length.  Its replications use seeds the main run never uses
    for those indices (``seed`` + 1,000,003), so the pilot cannot bias the results.
    """
    check_warmup_auto(scenario)
    horizon = pilot_days or max(365, scenario.simulation.duration_days)
    data = scenario_to_dict(scenario)
    start = scenario.simulation.start_date - dt.timedelta(days=horizon)
    data["simulation"].update(start_date=start.isoformat(), warmup_days=0,
                              duration_days=horizon + scenario.simulation.duration_days)
    pilot = validate_dict(data, f"{scenario.name} (warm-up pilot)")
    run = simulate(pilot, pilot_replications, seed + PILOT_SEED_OFFSET, workers=workers, executor=executor,
                   progress=progress, keep_patients=False)
    daily = run.daily()
    if kpi not in daily.columns:
        numeric = [c for c in daily.columns if c not in ("scenario_id", "seed", "replication", "date", "day")]
        close = difflib.get_close_matches(kpi, numeric, n=3)
        raise FlowsimError(f"warm-up auto: '{kpi}' is not a daily series; "
                           + (f"did you mean {', '.join(close)}?" if close else f"allowed: {', '.join(numeric)}"))
    series = daily.groupby("day")[kpi].mean().sort_index()
    result = mser5(series.to_numpy())
    if not result.reliable:
        log.warning("warm-up auto: MSER-5 found no steady state within %d pilot days; the warm-up is set to the "
                    "longest searched (%d days). Look at the warm-up plot; a longer pilot may be needed.",
                    horizon, result.truncation)
    return WarmupChoice(result.truncation, kpi, horizon, pilot_replications, series, result)
