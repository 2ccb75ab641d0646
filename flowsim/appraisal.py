"""Option appraisal: each option against the baseline on the same random numbers, with costs and a decision rule.

Why paired differences: every scenario runs replication r on seed (seed, r),
and named streams give each activity the same random numbers in every scenario
(common random numbers).  The difference option - baseline within one
replication then removes the noise the two share, so its confidence interval
is the honest (and much narrower) measure of the option's effect.  An
interval that excludes zero is "distinguishable from zero".

The decision rule (:data:`DECISION_RULE`, applied by :func:`decide`, a pure
function of the paired per-replication differences) is the one a health
economist would sign: dominance judged on paired confidence intervals, an
efficiency frontier ordered by effect with the incremental cost per delayed
bed-day avoided against the next option on it, and, when the scenario states
what avoiding a delayed bed-day is worth, net monetary benefit with the
probability that each option is best.  Its words follow the intervals: an
option "saves" money only when its whole net-cost interval is below zero.
Why the frontier rather than a single ranking by "cost per day avoided": a
ratio hides which of two very different options (one saving a little and
avoiding much, one saving more and avoiding little) is better value, and a
negative ratio is meaningless; the incremental ratio along the frontier, and
net benefit at a stated value, are not.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from typing_extensions import Unpack

from flowsim.errors import FlowsimError
from flowsim.experiment.runner import RunOptions, RunResult, simulate
from flowsim.experiment.stats import bounded_ci, mean_ci
from flowsim.results.kpi import COMPARISON_KPIS, kpi_info, kpi_range
from flowsim.rundir import (
    OutputDir,
    RunDrawer,
    atomic_text,
    atomic_write,
    claim_output,
    finish_output,
    versions,
    write_run_dir,
)
from flowsim.scenario.loader import scenario_to_dict
from flowsim.scenario.provenance import describe_overrides
from flowsim.scenario.schema import Scenario

log = logging.getLogger(__name__)

#: KPIs a board paper leads with (those a scenario lacks are skipped): the KPI registry's comparison list.
BOARD_KPIS = list(COMPARISON_KPIS)
BOOTSTRAP = 2000

# ============================================================================ the decision rule

#: Words for money, effect and the frontier: the only words the report, the terminal and economics.csv use.
SAVES, COSTS_MORE, TOO_CLOSE = "saves", "costs more", "too close to call"
FEWER_DELAYS, MORE_DELAYS = "fewer delays", "more delays"
FRONTIER, OFF_FRONTIER, DOMINATED = "on the efficiency frontier", "off the efficiency frontier", "dominated"
BASELINE = "baseline"

DECISION_RULE = (
    "Costs and delays are paired with the baseline replication by replication (common random numbers). Words "
    "follow the 95% intervals: an option saves money only when its whole net-cost interval is below zero and "
    "costs more only when it is wholly above; otherwise its cost is too close to call. Likewise it has fewer "
    "delays or more delays only when its interval of delayed bed-days avoided is wholly on one side of zero. An "
    "option is dominated when another option, or the baseline, is no worse on both net cost and delayed bed-days "
    "avoided and better on at least one, each judged by the paired 95% interval of their difference. The other "
    "options and the baseline are ordered by delayed bed-days avoided; an option is off the efficiency frontier "
    "when, on average, another option (or a mix of two) avoids as many delayed bed-days for less; for each option "
    "on the frontier, the incremental cost per delayed bed-day avoided is against the next less effective option "
    "on the frontier. When the scenario sets a value per delayed bed-day avoided, options are ranked by net "
    "monetary benefit (value x delayed bed-days avoided - net cost), with the probability that each is best: the "
    "share of paired replications in which it has the highest net benefit, the baseline included.")


def _side(low: float, high: float) -> int:
    """-1 when the interval is wholly below zero, +1 wholly above, 0 when it holds zero (or is undefined)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return 0
    return -1 if high < 0 else 1 if low > 0 else 0


def cost_verdict(low: float, high: float) -> str:
    """'saves' / 'costs more' only when the whole net-cost interval is on that side of zero."""
    return {-1: SAVES, 1: COSTS_MORE, 0: TOO_CLOSE}[_side(low, high)]


def delay_verdict(low: float, high: float) -> str:
    """'fewer delays' / 'more delays' only when the whole interval of delayed bed-days avoided is on that side."""
    return {1: FEWER_DELAYS, -1: MORE_DELAYS, 0: TOO_CLOSE}[_side(low, high)]


@dataclass(frozen=True)
class Effects:
    """One option's paired per-replication differences from the baseline: the input of the decision rule."""

    name: str
    net_cost: np.ndarray      # option total cost - baseline total cost, per replication
    avoided: np.ndarray       # baseline delayed bed-days - option delayed bed-days, per replication


@dataclass(frozen=True)
class OptionAppraisal:
    """What the decision rule says about one option (intervals are (mean, low, high))."""

    name: str
    net_cost: tuple[float, float, float]
    avoided: tuple[float, float, float]
    cost_verdict: str
    delay_verdict: str
    dominated_by: str = ""
    frontier: str = FRONTIER
    frontier_note: str = ""
    compared_with: str = ""
    icer: tuple[float, float, float] = (float("nan"),) * 3
    nmb: tuple[float, float, float] = (float("nan"),) * 3
    prob_best: float = float("nan")
    rank: int | None = None


@dataclass(frozen=True)
class Decision:
    """The decision rule applied to every option; ``best`` etc. only when a value per delayed bed-day is set."""

    options: list[OptionAppraisal]
    value_per_day: float | None = None
    baseline_prob_best: float = float("nan")
    best: str = ""                    # highest expected net benefit (may be the baseline)
    best_clear: bool = False          # ahead of every alternative by a paired interval wholly above zero
    close: list[str] = field(default_factory=list)   # alternatives it is too close to call against

    def option(self, name: str) -> OptionAppraisal:
        """The appraisal of the option called ``name``."""
        return next(o for o in self.options if o.name == name)


def _zeros(n: int) -> np.ndarray:
    return np.zeros(n, dtype=float)


def _better(a: np.ndarray, b: np.ndarray, higher: bool) -> bool:
    """Whether ``a`` beats ``b`` by the paired 95% interval of a - b (higher is better, or lower)."""
    _, lo, hi = mean_ci(a - b)
    return _side(lo, hi) == (1 if higher else -1)


def _dominator(i: int, pts: Sequence[Effects]) -> tuple[str, str]:
    """Who dominates ``pts[i]`` (the baseline is tried first), by paired intervals, and why; ('', '') if nobody.

    ``j`` dominates ``i`` when ``i`` is distinguishably better than ``j`` on neither net cost nor delayed
    bed-days avoided, and ``j`` is distinguishably better than ``i`` on at least one."""
    me = pts[i]
    for j, other in enumerate(pts):
        if j == i:
            continue
        cheaper = _better(other.net_cost, me.net_cost, higher=False)
        more = _better(other.avoided, me.avoided, higher=True)
        worse = _better(me.net_cost, other.net_cost, higher=False) or _better(me.avoided, other.avoided, higher=True)
        if (cheaper or more) and not worse:
            why = " and ".join(w for w, yes in (("it costs less", cheaper),
                                                ("it avoids more delayed bed-days", more)) if yes)
            rest = ("" if cheaper and more else "; on the other measure the difference is within chance")
            return other.name, f"{why} (paired 95% intervals){rest}"
    return "", ""


def _frontier(pts: Sequence[Effects]) -> tuple[list[int], dict[int, str]]:
    """Indices on the efficiency frontier (by mean effect, least first) and why each other index is off it.

    Standard cost-effectiveness procedure on the means of the options that are not dominated: drop an option
    when another avoids at least as many delayed bed-days for no more money (one of the two strictly), then drop
    extended dominance (an incremental ratio higher than that of the next, more effective option) until the
    ratios rise along the frontier."""
    mean = {i: (float(p.net_cost.mean()), float(p.avoided.mean())) for i, p in enumerate(pts)}
    why: dict[int, str] = {}
    for i, (c, e) in mean.items():
        for j, (cj, ej) in mean.items():
            if j != i and j not in why and cj <= c and ej >= e and ((cj, ej) != (c, e) or j < i):
                why[i] = f"{pts[j].name} avoids at least as many delayed bed-days for no more money, on average"
                break
    on = sorted((i for i in mean if i not in why), key=lambda i: (mean[i][1], mean[i][0]))
    changed = True
    while changed and len(on) > 2:
        changed = False
        ratios = [(mean[b][0] - mean[a][0]) / (mean[b][1] - mean[a][1]) for a, b in itertools.pairwise(on)]
        for k in range(len(ratios) - 1):
            if ratios[k] > ratios[k + 1]:
                i = on.pop(k + 1)
                why[i] = (f"extended dominance: a mix of {pts[on[k]].name} and {pts[on[k + 1]].name} avoids more "
                          "delayed bed-days for the money, on average")
                changed = True
                break
    return on, why


def _nmb(pts: Sequence[Effects], value: float) -> tuple[list[tuple[float, float, float]], list[float], np.ndarray]:
    """Net monetary benefit per point (mean and t interval), probability each is best, and the per-replication
    values (points x replications)."""
    values = np.array([value * p.avoided - p.net_cost for p in pts])
    best = values.max(axis=0)
    winners = values == best                       # ties share the replication
    prob = (winners / winners.sum(axis=0)).mean(axis=1)
    return [mean_ci(v) for v in values], [float(x) for x in prob], values


def decide(effects: Sequence[Effects], value_per_day: float | None = None, *, seed: int = 0) -> Decision:
    """Apply :data:`DECISION_RULE` to options given by their paired differences from the baseline.

    Pure: the same differences (and ``seed``, which only seeds the bootstrap of the incremental ratios) give
    the same decision.  Every option must have the same number of replications."""
    if not effects:
        return Decision([], value_per_day)
    n = len(effects[0].net_cost)
    pts: list[Effects] = [Effects(BASELINE, _zeros(n), _zeros(n)), *effects]
    dominated = {i: _dominator(i, pts) for i in range(1, len(pts))}
    live = [0, *(i for i in range(1, len(pts)) if not dominated[i][0])]
    on, why = _frontier([pts[i] for i in live])
    on_idx = [live[k] for k in on]
    off = {live[k]: note for k, note in why.items()}
    if 0 in off and on_idx:  # the baseline itself is off the frontier: say so on the option that displaced it
        off_note = {on_idx[0]: "costs less than the baseline and avoids at least as many delayed bed-days, on average"}
    else:
        off_note = {}
    icers: dict[int, tuple[str, tuple[float, float, float]]] = {}
    for a, b in itertools.pairwise(on_idx):
        ratio = ratio_ci(pts[b].net_cost - pts[a].net_cost, pts[b].avoided - pts[a].avoided, seed + b)
        icers[b] = (pts[a].name, ratio)
    nmb: list[tuple[float, float, float]] = []
    prob: list[float] = []
    per_rep = np.empty((0, n))
    if value_per_day is not None:
        nmb, prob, per_rep = _nmb(pts, value_per_day)
    order = sorted(range(1, len(pts)), key=lambda i: -nmb[i][0]) if nmb else []
    out = []
    for i in range(1, len(pts)):
        p = pts[i]
        cost, avoid = mean_ci(p.net_cost), mean_ci(p.avoided)
        status = DOMINATED if dominated[i][0] else OFF_FRONTIER if i in off else FRONTIER
        comp, icer = icers.get(i, ("", (float("nan"),) * 3))
        out.append(OptionAppraisal(
            p.name, cost, avoid, cost_verdict(cost[1], cost[2]), delay_verdict(avoid[1], avoid[2]),
            dominated_by=dominated[i][0], frontier=status,
            frontier_note=dominated[i][1] or off.get(i, "") or off_note.get(i, ""),
            compared_with=comp, icer=icer,
            nmb=nmb[i] if nmb else (float("nan"),) * 3, prob_best=prob[i] if prob else float("nan"),
            rank=order.index(i) + 1 if order else None))
    if value_per_day is None:
        return Decision(out, None)
    top = max(range(len(pts)), key=lambda i: nmb[i][0])
    close = [pts[j].name for j in range(len(pts)) if j != top and not _better(per_rep[top], per_rep[j], higher=True)]
    return Decision(out, value_per_day, prob[0], pts[top].name, not close, close)


# ============================================================================ running a comparison


def slug(text: str) -> str:
    """A file-system-safe key for a display name (``runs/<key>/`` in a comparison directory)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()[:60] or "scenario"


def unique(names: Sequence[str], sep: str = " ") -> list[str]:
    """``names`` with repeats numbered ('X', 'X (2)' with the default separator), keeping their order."""
    out: list[str] = []
    for n in names:
        base, k = n, 2
        while n in out:
            n, k = (f"{base}{sep}({k})" if sep == " " else f"{base}{sep}{k}"), k + 1
        out.append(n)
    return out


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
    """A baseline and its options, run on the same seed and replications.

    ``names`` are the display names (baseline first), one per scenario, used by every table, chart, CSV and
    sentence: by default the scenarios' own names, numbered when two are the same."""

    baseline: RunResult
    options: list[RunResult]
    names: list[str]
    files: list[str] = field(default_factory=list)

    @property
    def runs(self) -> list[RunResult]:
        """The baseline, then the options, in the order of ``names``."""
        return [self.baseline, *self.options]

    @property
    def keys(self) -> list[str]:
        """File-system-safe keys of ``names`` (the run directories under ``runs/``), unique."""
        return unique([slug(n) for n in self.names], sep="_")

    def kpis(self) -> list[str]:
        """The board KPIs every scenario of the comparison reports."""
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
        """KPI rows; for each scenario its mean and 95% CI (kept inside the KPI's range)."""
        rows = []
        for k in kpis or self.kpis():
            row: dict[str, Any] = {"kpi": k, "label": kpi_info(k).label, "unit": kpi_info(k).unit}
            for name, run in zip(self.names, self.runs, strict=True):
                m, lo, hi = bounded_ci(run.kpi_frame()[k].to_numpy(), *kpi_range(k))
                row.update({f"{name}:mean": m, f"{name}:ci_low": lo, f"{name}:ci_high": hi})
            rows.append(row)
        return pd.DataFrame(rows)

    def targets(self) -> pd.DataFrame:
        """Each scenario against the national standards in its ``targets``: met or missed only when the whole
        95% interval is on one side of the standard."""
        rows = []
        for name, run in zip(self.names, self.runs, strict=True):
            t = run.scenario.targets
            kf = run.kpi_frame()
            checks = [("Delayed patients per 100,000 adults a day", "delayed_per_100k", t.delayed_per_100k, "at most",
                       kf["delayed_per_100k"].to_numpy(), (0.0, None)),
                      ("G&A occupancy %", "occupancy_mean_pct", t.occupancy_pct, "at most",
                       kf["occupancy_mean_pct"].to_numpy(), (0.0, 100.0)),
                      ("Admitted within 4 hours of decision % (proxy)", "ed_4h_breach_pct", t.ed_within_4h_pct,
                       "at least", 100.0 - kf["ed_4h_breach_pct"].to_numpy(), (0.0, 100.0))]
            if run.scenario.mode == "pathway_only":  # no front door or acute beds: those standards do not apply
                checks = checks[:1]
            for label, kpi, threshold, sense, x, (low, high) in checks:
                m, lo, hi = bounded_ci(x, low, high)
                ok = (hi <= threshold if sense == "at most" else lo >= threshold) if np.isfinite(lo) else None
                miss = (lo > threshold if sense == "at most" else hi < threshold) if np.isfinite(lo) else None
                verdict = "met" if ok else "missed" if miss else "uncertain"
                rows.append({"scenario": name, "standard": label, "kpi": kpi, "target": threshold, "sense": sense,
                             "mean": m, "ci_low": lo, "ci_high": hi, "verdict": verdict})
        return pd.DataFrame(rows)

    @property
    def value_per_day(self) -> float | None:
        """The baseline scenario's value per delayed bed-day avoided (``costs.value_per_delayed_bed_day``)."""
        return self.baseline.scenario.costs.value_per_delayed_bed_day

    def effects(self) -> list[Effects]:
        """Each option's paired per-replication net cost and delayed bed-days avoided: the rule's input."""
        base = self.baseline.kpi_frame()
        return [Effects(name, opt.kpi_frame()["total_cost"].to_numpy(dtype=float)
                        - base["total_cost"].to_numpy(dtype=float),
                        base["delayed_bed_days"].to_numpy(dtype=float)
                        - opt.kpi_frame()["delayed_bed_days"].to_numpy(dtype=float))
                for name, opt in zip(self.names[1:], self.options, strict=True)]

    def decision(self) -> Decision:
        """:data:`DECISION_RULE` applied to the options (bootstrap seeded by the baseline's seed)."""
        return decide(self.effects(), self.value_per_day, seed=self.baseline.seed)

    def economics(self) -> pd.DataFrame:
        """One row per option: net cost, delayed bed-days avoided, acute bed-days released (mean and 95% CI),
        the verdict words, dominance, the frontier and its incremental cost per delayed bed-day avoided, and
        (with a value per delayed bed-day) net monetary benefit, the probability of being best and the rank.

        Rows are in rank order when there is a rank, else frontier options (least effective first), then those
        off the frontier, then dominated options."""
        base = self.baseline.kpi_frame()
        days = self.baseline.scenario.simulation.duration_days
        decision = self.decision()
        rows = []
        for name, opt in zip(self.names[1:], self.options, strict=True):
            of = opt.kpi_frame()
            o = decision.option(name)
            released = (base["acute_occupied_mean"].to_numpy() - of["acute_occupied_mean"].to_numpy()) * days
            row: dict[str, Any] = {"option": name, "investment": float(of["cost_investment"].mean())
                                   if "cost_investment" in of else 0.0}
            for key, (m, lo, hi) in (("net_cost", o.net_cost), ("delayed_days_avoided", o.avoided),
                                     ("bed_days_released", mean_ci(released))):
                row.update({key: m, f"{key}_ci_low": lo, f"{key}_ci_high": hi})
            row.update({"cost_verdict": o.cost_verdict, "delay_verdict": o.delay_verdict,
                        "dominated_by": o.dominated_by, "frontier": o.frontier, "frontier_note": o.frontier_note,
                        "compared_with": o.compared_with, "incremental_cost_per_delayed_day_avoided": o.icer[0],
                        "incremental_ci_low": o.icer[1], "incremental_ci_high": o.icer[2],
                        "value_per_delayed_bed_day": decision.value_per_day, "net_benefit": o.nmb[0],
                        "net_benefit_ci_low": o.nmb[1], "net_benefit_ci_high": o.nmb[2],
                        "prob_best": o.prob_best, "rank": o.rank})
            rows.append(row)
        econ = pd.DataFrame(rows)
        if econ.empty:
            return econ
        econ["rank"] = econ["rank"].astype("Int64")
        status = {FRONTIER: 0, OFF_FRONTIER: 1, DOMINATED: 2}
        key = econ["rank"].astype(float) if decision.value_per_day is not None else (
            econ["frontier"].map(status) * 1e12 + econ["delayed_days_avoided"])
        return econ.assign(_key=key).sort_values("_key", kind="stable").drop(columns="_key").reset_index(drop=True)


def compare(baseline: Scenario, options: Sequence[Scenario], replications: int = 10, seed: int = 12345, *,
            names: Sequence[str] | None = None, **run: Unpack[RunOptions]) -> Comparison:
    """Run the baseline and every option on the same seed and replications (common random numbers).

    ``names`` (default: each scenario's own ``name``) are the display names; repeats are numbered.  ``run`` says
    how and where the replications run (:class:`~flowsim.experiment.runner.RunOptions`; default: a process pool
    sized to the machine), never what they return."""
    if not options:
        raise ValueError("compare needs at least one option")
    how: RunOptions = {"workers": None, **run}
    runs = [simulate(sc, replications, seed, **how) for sc in [baseline, *options]]
    given = list(names) if names is not None else [sc.name for sc in [baseline, *options]]
    return Comparison(runs[0], runs[1:], unique(given))


def compare_runs(baseline: RunResult, options: Sequence[RunResult], names: Sequence[str] | None = None) -> Comparison:
    """A comparison of runs already made (e.g. kept in a web session), exactly as :func:`compare` would pair them.

    Pairing is only honest on common random numbers: every run must have the baseline's seed, the same
    replications (``0..n-1``) and the same reporting window; anything else is refused with a FlowsimError saying
    what differs (run them again with the baseline's seed and replications)."""
    if not options:
        raise ValueError("a comparison needs at least one option")
    runs = [baseline, *options]
    given = list(names) if names is not None else [r.scenario.name for r in runs]
    if len(given) != len(runs):
        raise ValueError(f"{len(runs)} runs but {len(given)} names")
    sim = baseline.scenario.simulation
    window = (sim.start_date, sim.duration_days)
    reps = [r.replication for r in baseline.replications]
    problems = []
    for name, run in zip(given[1:], options, strict=True):
        s = run.scenario.simulation
        if run.seed != baseline.seed:
            problems.append(f"'{name}' ran on seed {run.seed}, the baseline '{given[0]}' on seed {baseline.seed}")
        if [r.replication for r in run.replications] != reps:
            problems.append(f"'{name}' has {len(run.replications)} replications, the baseline '{given[0]}' "
                            f"{len(reps)}")
        if (s.start_date, s.duration_days) != window:
            problems.append(f"'{name}' reports {s.duration_days} days from {s.start_date}, the baseline "
                            f"'{given[0]}' {sim.duration_days} days from {sim.start_date}")
    if problems:
        raise FlowsimError("cannot pair these runs on common random numbers: " + "; ".join(problems)
                           + "; run the options again with the baseline's seed, replications and window")
    return Comparison(baseline, list(options), unique(given))


#: Draws a comparison's own figures into a directory (the presentation layer passes one in: the domain draws
#: nothing), returning the files by role.
ComparisonDrawer = Callable[[Comparison, Path], Mapping[str, Path]]


def comparison_meta(cmp: Comparison, command: list[str] | None, files: Sequence[str]) -> dict[str, Any]:
    """``comparison.json``: who was compared, how, the decision rule and its headline answer."""
    decision = cmp.decision()

    def entry(i: int, run: RunResult) -> dict[str, Any]:
        return {"name": cmp.names[i], "key": cmp.keys[i], "dir": f"runs/{cmp.keys[i]}",
                "scenario_id": run.scenario_id,
                "file": files[i] if len(files) > i else None,
                "overrides": describe_overrides(scenario_to_dict(run.scenario))}

    return {
        "kind": "comparison",
        "baseline": entry(0, cmp.baseline),
        "options": [entry(i + 1, r) for i, r in enumerate(cmp.options)],
        "seed": cmp.baseline.seed, "replications": len(cmp.baseline.replications),
        "board_kpis": cmp.kpis(),
        "method": "paired differences on common random numbers; 95% t intervals over replications (intervals of "
                  "single scenarios kept inside each measure's range); incremental ratios by percentile bootstrap "
                  f"({BOOTSTRAP} resamples)",
        "decision_rule": DECISION_RULE,
        "decision": {"value_per_delayed_bed_day": decision.value_per_day, "best": decision.best or None,
                     "best_clear": decision.best_clear if decision.best else None, "close": decision.close,
                     "baseline_prob_best": decision.baseline_prob_best if decision.best else None},
        "versions": versions(), "command": command if command is not None else sys.argv,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_comparison(cmp: Comparison, target: Path | OutputDir, command: list[str] | None = None,
                     files: Sequence[str] = (), *, draw: ComparisonDrawer | None = None,
                     draw_run: RunDrawer | None = None) -> dict[str, Path]:
    """A comparison directory: each scenario's run directory under ``runs/<key>``, plus the side-by-side tables.

    ``target`` is a directory (claimed here, and marked complete at the end) or an ``OutputDir`` the
    caller claimed and will finish.  ``draw_run`` and ``draw`` (from the presentation layer, e.g.
    ``flowsim.report.outputs``) add figures to each run directory and to the comparison; without them no
    figure is drawn."""
    claimed = target if isinstance(target, OutputDir) else claim_output(target, "comparison", command=command,
                                                                         what="")
    out = claimed.path
    written: dict[str, Path] = {}
    for key, run in zip(cmp.keys, cmp.runs, strict=True):
        write_run_dir(run, out / "runs" / key, command=command, draw=draw_run)
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
    meta = comparison_meta(cmp, command, files)
    written["meta"] = atomic_text(out / "comparison.json", json.dumps(meta, indent=2, default=str) + "\n")
    if draw is not None:
        written.update(draw(cmp, out / "figures"))
    if not isinstance(target, OutputDir):
        finish_output(claimed)
    return written
