"""Run replications of a scenario, serially or on a local process pool.

A replication is a pure function of (scenario, seed, replication index), so
the pool only changes *where* it runs, never what it returns: results are
sorted by replication index and identical to a serial run.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import pandas as pd
from tqdm import tqdm

from flowsim.experiment.stats import node_quantiles, period_table, summarise
from flowsim.model.model import Model
from flowsim.results.kpi import ReplicationResult, analyse
from flowsim.rng import Streams
from flowsim.scenario.loader import scenario_hash
from flowsim.scenario.pathway_only import compile_scenario
from flowsim.scenario.schema import Scenario

log = logging.getLogger(__name__)


def run_replication(scenario: Scenario, seed: int, replication: int, scenario_id: str | None = None,
                    keep_patients: bool = True) -> ReplicationResult:
    """Simulate and analyse one replication."""
    t = time.perf_counter()
    model_scenario = compile_scenario(scenario)  # pathway-only scenarios run on the full model
    raw = Model(model_scenario, Streams(seed, replication)).run()
    res = analyse(raw, model_scenario, replication, seed, scenario_id or scenario_hash(scenario), keep_patients)
    for problem in res.checks:
        log.error("invariant violated in replication %d: %s", replication, problem)
    return ReplicationResult(**{**res.__dict__, "seconds": time.perf_counter() - t})


def _task(args: tuple[Scenario, int, int, str, bool]) -> ReplicationResult:
    return run_replication(*args)


@dataclass(frozen=True)
class RunResult:
    """All replications of one scenario, with tables built on demand."""

    scenario: Scenario
    scenario_id: str
    seed: int
    replications: list[ReplicationResult]

    def kpi_frame(self) -> pd.DataFrame:
        """Rows = replications, columns = KPIs."""
        return pd.DataFrame([r.kpis for r in self.replications],
                            index=pd.Index([r.replication for r in self.replications], name="replication"))

    def summary(self) -> pd.DataFrame:
        return summarise(self.kpi_frame())

    @cached_property
    def _daily(self) -> pd.DataFrame:
        # built once: summaries, period tables, figures and CSVs all read it
        return pd.concat([r.daily for r in self.replications], ignore_index=True)

    def daily(self) -> pd.DataFrame:
        """Rows = replication x day (a shared frame: copy it before changing it)."""
        return self._daily

    def patients(self) -> pd.DataFrame:
        frames = [r.patients for r in self.replications if r.patients is not None]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def escalation(self) -> pd.DataFrame:
        """OPEL level changes and action events of every replication (empty without escalation)."""
        frames = [r.escalation for r in self.replications if r.escalation is not None]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def nodes(self) -> pd.DataFrame:
        """Per replication, day and node (pathway x locality): occupancy, queue, waits, cost."""
        frames = [r.nodes for r in self.replications if r.nodes is not None and not r.nodes.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def node_summary(self) -> pd.DataFrame:
        """Per day and node: mean and 5/50/95th percentiles across replications."""
        return node_quantiles(self.nodes())

    def periods(self, freq: str = "Q") -> pd.DataFrame:
        return period_table(self.daily(), freq, self.scenario.population_18plus)

    @property
    def checks(self) -> list[str]:
        return [f"replication {r.replication}: {c}" for r in self.replications for c in r.checks]


def default_workers(replications: int) -> int:
    return max(1, min(replications, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else (os.cpu_count() or 1)))


def simulate(scenario: Scenario, replications: int = 10, seed: int = 12345, workers: int | None = 1,
             progress: bool | None = None, keep_patients: bool = True) -> RunResult:
    """Run ``replications`` replications; ``workers`` > 1 uses a local process pool."""
    if replications < 1:
        raise ValueError("replications must be at least 1")
    sid = scenario_hash(scenario)
    workers = default_workers(replications) if workers is None else max(1, workers)
    show = sys.stderr.isatty() if progress is None else progress
    tasks = [(scenario, seed, r, sid, keep_patients) for r in range(replications)]
    bar = tqdm(total=replications, desc=scenario.name[:30], unit="rep", disable=not show, leave=False)
    results: list[ReplicationResult] = []
    try:
        if workers == 1:
            for t in tasks:
                results.append(_task(t))
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for res in pool.map(_task, tasks):
                    results.append(res)
                    bar.update()
    finally:
        bar.close()
    results.sort(key=lambda r: r.replication)
    return RunResult(scenario, sid, seed, results)
