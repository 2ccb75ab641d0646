"""Option appraisal: each option against the baseline on the same random numbers, with costs.

Why paired differences: every scenario runs replication r on seed (seed, r),
and named streams give each activity the same random numbers in every scenario
(common random numbers).  The difference option - baseline within one
replication then removes the noise the two share, so its confidence interval
is the honest (and much narrower) measure of the option's effect.  An
interval that excludes zero is "distinguishable from zero".

Economics follow the usual cost-effectiveness arithmetic, on paired
replications: net cost = total cost(option) - total cost(baseline); delayed
bed-days avoided and acute bed-days released likewise; cost per delayed day
avoided = mean net cost / mean delayed days avoided (a ratio of means, with a
percentile bootstrap interval over replications).  An option is *dominated*
when another option (or the baseline) costs no more and avoids at least as
many delayed days, and is strictly better on one of the two.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowsim.errors import FlowsimError
from flowsim.experiment.executors import Executor
from flowsim.experiment.runner import RunResult, simulate
from flowsim.experiment.stats import mean_ci
from flowsim.results.kpi import kpi_info
from flowsim.rundir import OutputDir, atomic_text, atomic_write, claim_output, finish_output, versions, write_run_dir
from flowsim.scenario.schema import Scenario

log = logging.getLogger(__name__)

#: KPIs a board paper leads with (those a scenario lacks are skipped).
BOARD_KPIS = [
    "delayed_patients_per_day", "delayed_per_100k", "dtoc_delayed_days_per_quarter", "delayed_bed_days", "dtoc_pct",
    "occupancy_mean_pct", "days_over_92_pct", "ed_4h_breach_pct", "ed_wait_mean_hours", "ed_12h_breaches",
    "queue_mean_P1", "queue_mean_P2", "queue_mean_P3", "electives_cancelled_no_bed", "electives_cancelled_escalation",
    "opel_days_level_3", "opel_days_level_4", "escalation_cost", "total_cost",
]
BOOTSTRAP = 2000


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()[:60] or "scenario"


def paired_difference(option: np.ndarray, baseline: np.ndarray, level: float = 0.95) -> dict[str, float | bool]:
    """Mean of option - baseline over paired replications, its t interval, and whether it excludes 0."""
    d = np.asarray(option, dtype=float) - np.asarray(baseline, dtype=float)
    m, lo, hi = mean_ci(d, level)  # identical every replication: a zero-width interval, so exact
    distinct = bool(np.isfinite(lo) and np.isfinite(hi) and (lo > 0 or hi < 0))
    return {"diff_mean": m, "ci_low": lo, "ci_high": hi, "distinguishable": distinct, "n": int(len(d))}


def ratio_ci(num: np.ndarray, den: np.ndarray, seed: int, level: float = 0.95) -> tuple[float, float, float]:
    """Ratio of means and a percentile bootstrap interval over paired replications (NaN if undefined)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if den.mean() <= 0:
        return float("nan"), float("nan"), float("nan")
    est = float(num.mean() / den.mean())
    if len(num) < 2:
        return est, float("nan"), float("nan")
    rng = np.random.default_rng([seed, 0xB007])
    idx = rng.integers(0, len(num), size=(BOOTSTRAP, len(num)))
    dm = den[idx].mean(axis=1)
    ok = dm > 0
    ratios = num[idx].mean(axis=1)[ok] / dm[ok]
    if len(ratios) < BOOTSTRAP / 2:  # the effect is too uncertain for a ratio to mean anything
        return est, float("nan"), float("nan")
    lo, hi = np.percentile(ratios, [50 * (1 - level), 50 * (1 + level)])
    return est, float(lo), float(hi)


@dataclass
class Comparison:
    """A baseline and its options, run on the same seed and replications."""

    baseline: RunResult
    options: list[RunResult]
    names: list[str]            # short names, baseline first
    files: list[str] = field(default_factory=list)

    @property
    def runs(self) -> list[RunResult]:
        return [self.baseline, *self.options]

    def kpis(self) -> list[str]:
        present = set(self.baseline.kpi_frame().columns)
        for o in self.options:
            present &= set(o.kpi_frame().columns)
        return [k for k in BOARD_KPIS if k in present]

    def differences(self, kpis: Sequence[str] | None = None) -> pd.DataFrame:
        """Per option and KPI: baseline and option means, paired difference with 95% CI, distinguishable."""
        base = self.baseline.kpi_frame()
        names = list(kpis) if kpis is not None else [c for c in base.columns if all(c in o.kpi_frame() for o in
                                                                                     self.options)]
        rows = []
        for name, opt in zip(self.names[1:], self.options, strict=True):
            of = opt.kpi_frame()
            for k in names:
                info = kpi_info(k)
                diff = paired_difference(of[k].to_numpy(), base[k].to_numpy())
                rows.append({"option": name, "kpi": k, "label": info.label, "unit": info.unit,
                             "baseline_mean": float(base[k].mean()), "option_mean": float(of[k].mean()), **diff,
                             "better": (diff["diff_mean"] < 0) == info.higher_is_worse if diff["distinguishable"]
                             else None})
        return pd.DataFrame(rows)

    def side_by_side(self, kpis: Sequence[str] | None = None) -> pd.DataFrame:
        """KPI rows; for each scenario its mean and 95% CI."""
        rows = []
        for k in kpis or self.kpis():
            row: dict[str, Any] = {"kpi": k, "label": kpi_info(k).label, "unit": kpi_info(k).unit}
            for name, run in zip(self.names, self.runs, strict=True):
                m, lo, hi = mean_ci(run.kpi_frame()[k].to_numpy())
                row.update({f"{name}:mean": m, f"{name}:ci_low": lo, f"{name}:ci_high": hi})
            rows.append(row)
        return pd.DataFrame(rows)

    def targets(self) -> pd.DataFrame:
        """Each scenario against the national standards in its ``targets``."""
        rows = []
        for name, run in zip(self.names, self.runs, strict=True):
            t = run.scenario.targets
            kf = run.kpi_frame()
            checks = [("Delayed patients per 100,000 adults a day", "delayed_per_100k", t.delayed_per_100k, "at most",
                       kf["delayed_per_100k"].to_numpy()),
                      ("G&A occupancy %", "occupancy_mean_pct", t.occupancy_pct, "at most",
                       kf["occupancy_mean_pct"].to_numpy()),
                      ("Admitted within 4 hours of decision % (proxy)", "ed_4h_breach_pct", t.ed_within_4h_pct,
                       "at least", 100.0 - kf["ed_4h_breach_pct"].to_numpy())]
            for label, kpi, threshold, sense, x in checks:
                m, lo, hi = mean_ci(x)
                ok = (hi <= threshold if sense == "at most" else lo >= threshold) if np.isfinite(lo) else None
                miss = (lo > threshold if sense == "at most" else hi < threshold) if np.isfinite(lo) else None
                verdict = "met" if ok else "missed" if miss else "uncertain"
                rows.append({"scenario": name, "standard": label, "kpi": kpi, "target": threshold, "sense": sense,
                             "mean": m, "ci_low": lo, "ci_high": hi, "verdict": verdict})
        return pd.DataFrame(rows)

    def economics(self) -> pd.DataFrame:
        """Net cost, delayed days avoided, bed-days released, ratios, ranking and dominance."""
        base = self.baseline.kpi_frame()
        days = self.baseline.scenario.simulation.duration_days
        rows = []
        for i, (name, opt) in enumerate(zip(self.names[1:], self.options, strict=True)):
            of = opt.kpi_frame()
            net = of["total_cost"].to_numpy() - base["total_cost"].to_numpy()
            avoided = base["delayed_bed_days"].to_numpy() - of["delayed_bed_days"].to_numpy()
            released = (base["acute_occupied_mean"].to_numpy() - of["acute_occupied_mean"].to_numpy()) * days
            row: dict[str, Any] = {"option": name, "investment": float(of["cost_investment"].mean())
                                   if "cost_investment" in of else 0.0}
            for key, x in (("net_cost", net), ("delayed_days_avoided", avoided), ("bed_days_released", released)):
                m, lo, hi = mean_ci(x)
                row.update({key: m, f"{key}_ci_low": lo, f"{key}_ci_high": hi})
            for key, den in (("cost_per_delayed_day_avoided", avoided), ("cost_per_bed_day_released", released)):
                est, lo, hi = ratio_ci(net, den, self.baseline.seed + i)
                row.update({key: est, f"{key}_ci_low": lo, f"{key}_ci_high": hi})
            rows.append(row)
        econ = pd.DataFrame(rows)
        if econ.empty:
            return econ
        econ["dominated_by"] = [_dominated_by(econ, i) for i in range(len(econ))]
        econ["rank"] = _rank(econ)
        return econ.sort_values("rank", kind="stable").reset_index(drop=True)


def _dominated_by(econ: pd.DataFrame, i: int) -> str:
    """Who dominates option ``i`` on (net cost, delayed days avoided), by mean; '' if nobody."""
    c, e = econ.loc[i, "net_cost"], econ.loc[i, "delayed_days_avoided"]
    if c >= 0 and e <= 0 and (c > 0 or e < 0):
        return "baseline"
    for j in range(len(econ)):
        cj, ej = econ.loc[j, "net_cost"], econ.loc[j, "delayed_days_avoided"]
        if j != i and cj <= c and ej >= e and (cj < c or ej > e):
            return str(econ.loc[j, "option"])
    return ""


def _rank(econ: pd.DataFrame) -> list[int]:
    """Non-dominated first: options that save money and avoid delays (most avoided first), then by cost per
    delayed day avoided (cheapest first); dominated options last, by net cost."""
    def key(i: int) -> tuple[int, float]:
        r = econ.loc[i]
        if r["dominated_by"]:
            return (3, float(r["net_cost"]))
        if r["net_cost"] <= 0 and r["delayed_days_avoided"] > 0:
            return (0, -float(r["delayed_days_avoided"]))
        ratio = r["cost_per_delayed_day_avoided"]
        return (1, float(ratio)) if np.isfinite(ratio) else (2, float(r["net_cost"]))

    order = sorted(range(len(econ)), key=key)
    ranks = [0] * len(econ)
    for pos, i in enumerate(order, start=1):
        ranks[i] = pos
    return ranks


def compare(baseline: Scenario, options: Sequence[Scenario], replications: int = 10, seed: int = 12345,  # noqa: PLR0913, PLR0917
            executor: Executor | None = None, workers: int | None = None, progress: bool | None = None,
            names: Sequence[str] | None = None, keep_patients: bool = True) -> Comparison:
    """Run the baseline and every option on the same seed and replications (common random numbers)."""
    if not options:
        raise ValueError("compare needs at least one option")
    runs = [simulate(sc, replications, seed, workers=workers, progress=progress, executor=executor,
                     keep_patients=keep_patients) for sc in [baseline, *options]]
    given = list(names) if names is not None else [slug(sc.name) for sc in [baseline, *options]]
    unique: list[str] = []
    for n in given:
        base, k = n, 2
        while n in unique:
            n, k = f"{base}_{k}", k + 1
        unique.append(n)
    return Comparison(runs[0], runs[1:], unique)


def write_comparison(cmp: Comparison, target: Path | OutputDir, command: list[str] | None = None,
                     figures: bool = True, files: Sequence[str] = ()) -> dict[str, Path]:
    """A comparison directory: each scenario's run directory under runs/, plus the side-by-side tables.

    ``target`` is a directory (claimed here, and marked complete at the end) or an ``OutputDir`` the
    caller claimed and will finish.
    """
    claimed = target if isinstance(target, OutputDir) else claim_output(target, "comparison", command=command,
                                                                         what="")
    out = claimed.path
    written: dict[str, Path] = {}
    for name, run in zip(cmp.names, cmp.runs, strict=True):
        if name in ("", ".", "..") or Path(name).name != name:  # a name picks a directory, never a place
            raise FlowsimError(f"scenario name {name!r} cannot name a directory under runs/; rename the file")
        write_run_dir(run, out / "runs" / name, command=command, figures=figures)
    diffs = cmp.differences()
    side = cmp.side_by_side()
    econ = cmp.economics()
    targets = cmp.targets()
    tidy = pd.concat([r.kpi_frame().reset_index().assign(scenario=n, role="baseline" if i == 0 else "option",
                                                         scenario_id=r.scenario_id, seed=r.seed)
                      for i, (n, r) in enumerate(zip(cmp.names, cmp.runs, strict=True))], ignore_index=True)
    lead = ["scenario", "role", "scenario_id", "seed", "replication"]
    tidy = tidy[lead + [c for c in tidy.columns if c not in lead]]
    written["differences"] = atomic_write(out / "differences.csv", lambda p: diffs.to_csv(p, index=False))
    written["side_by_side"] = atomic_write(out / "side_by_side.csv", lambda p: side.to_csv(p, index=False))
    written["economics"] = atomic_write(out / "economics.csv", lambda p: econ.to_csv(p, index=False))
    written["targets"] = atomic_write(out / "targets.csv", lambda p: targets.to_csv(p, index=False))
    written["kpis"] = atomic_write(out / "kpis.csv", lambda p: tidy.to_csv(p, index=False))
    meta = {
        "kind": "comparison",
        "baseline": {"name": cmp.names[0], "title": cmp.baseline.scenario.name, "scenario_id": cmp.baseline.scenario_id,
                     "file": files[0] if files else None},
        "options": [{"name": n, "title": r.scenario.name, "scenario_id": r.scenario_id,
                     "file": files[i + 1] if len(files) > i + 1 else None}
                    for i, (n, r) in enumerate(zip(cmp.names[1:], cmp.options, strict=True))],
        "seed": cmp.baseline.seed, "replications": len(cmp.baseline.replications),
        "board_kpis": cmp.kpis(),
        "method": "paired differences on common random numbers; 95% t intervals over replications; ratios by "
                  f"percentile bootstrap ({BOOTSTRAP} resamples)",
        "versions": versions(), "command": command if command is not None else sys.argv,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    written["meta"] = atomic_text(out / "comparison.json", json.dumps(meta, indent=2, default=str) + "\n")
    if figures:
        from flowsim.report.appraisal_figures import comparison_figures

        written.update(comparison_figures(cmp, diffs, out / "figures"))
    if not isinstance(target, OutputDir):
        finish_output(claimed)
    return written
