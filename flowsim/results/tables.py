"""Per-replication tables beside the KPIs: the node table planners compare with, and the escalation log."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from flowsim.model.codes import Stage
from flowsim.model.model import RawRun
from flowsim.results.records import Records
from flowsim.results.series import Level
from flowsim.scenario.schema import Scenario


class Tag(NamedTuple):
    """The window and identity of a replication, written into every row of its tables."""

    T: float
    D: int
    replication: int
    seed: int
    scenario_id: str


def node_daily(rec: Records, sc: Scenario, daily: dict[str, np.ndarray],
               waits: dict[str, tuple[np.ndarray, np.ndarray]], tag: Tag
               ) -> pd.DataFrame:
    """One row per day and node (pathway x locality): occupancy, capacity, queue, waits and cost.

    The table capacity-and-demand planners lay beside their other tools.  A node's queue is its
    own patients in acute beds from medically fit until a place is granted (assessment included);
    its cost is care in its services (occupied place-days), their available places, and its
    patients' days waiting in acute beds.  ``waits`` gives each pathway's wait for a place
    (from ready and assessed to granted), whose mean is the node's wait.
    """
    T, D, replication, seed, scenario_id = tag
    cohort_loc = np.array([c.locality for c in sc.cohorts.values()] + [None], dtype=object)
    cohort = np.minimum(rec["cohort"], len(cohort_loc) - 1)
    granted = rec["slot_granted"]
    rows = []
    for pname, pw in sc.pathways.items():
        if not pw.services:
            continue
        # nodes partition the pathway: patients by their cohort's locality, places by their service's
        demand_locs = {c.locality for c in sc.cohorts.values() if c.pathway_mix.get(pname, 0.0) > 0}
        localities = sorted({svc.locality for svc in pw.services.values()} | demand_locs, key=lambda x: x or "")
        on_pathway = rec.on_pathway(pname)
        for locality in localities:
            names = [n for n, svc in pw.services.items() if svc.locality == locality]
            mine = on_pathway & np.array([x == locality for x in cohort_loc], dtype=bool)[cohort]
            waiting = Level.from_intervals(np.where(mine, rec["mffd"], np.nan), granted, T).daily_mean(D)
            s_wait = waits[pname][0]
            got = mine & (granted >= 0) & (granted < T) & ~np.isnan(s_wait) & (rec["initial_stage"] != Stage.IN_SERVICE)
            day = np.floor(granted[got]).astype(int)
            n = np.bincount(day, minlength=D)[:D]
            wait_sum = np.bincount(day, weights=granted[got] - s_wait[got], minlength=D)[:D]
            svcs = [pw.services[nm] for nm in names]
            occupied = sum((daily[f"service_{nm}_occupied"] for nm in names), np.zeros(D))
            capacity = sum((daily[f"service_{nm}_capacity"] for nm in names), np.zeros(D))
            cost = (sum((svc.cost_per_occupied_day * daily[f"service_{nm}_occupied"]
                         for nm, svc in zip(names, svcs, strict=True)), np.zeros(D))
                    + sum((svc.unit_cost_per_day * daily[f"service_{nm}_scheduled"]
                           for nm, svc in zip(names, svcs, strict=True) if svc.unit_cost_per_day > 0), np.zeros(D))
                    + waiting * sc.costs.acute_delay_per_day)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_wait = np.where(n > 0, wait_sum / np.maximum(n, 1), np.nan)
            rows.append(pd.DataFrame({
                "scenario_id": scenario_id, "seed": seed, "replication": replication,
                "date": daily["date"], "day": daily["day"],
                "node": f"{pname} {locality}" if locality else pname, "pathway": pname, "locality": locality or "",
                "occupied": occupied, "capacity": capacity, "queue": waiting,
                "admissions": n, "mean_wait_days": mean_wait, "cost": cost,
            }))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def escalation_log(raw: RawRun, sc: Scenario, replication: int, seed: int, scenario_id: str) -> pd.DataFrame | None:
    """Every OPEL level change and every action event, in time order (None without escalation)."""
    if sc.escalation is None:
        return None
    actions = sc.escalation.actions
    start = pd.Timestamp(sc.simulation.start_date)
    rows = [{"time": t, "record": "level", "level": lv, "action": -1, "label": f"OPEL {lv}", "event": "level",
             "target": "", "amount": 0} for t, lv in raw.opel_log]
    for t, i, event in raw.action_log:
        a = actions[i]
        rows.append({"time": t, "record": "action", "level": a.level or 0, "action": i,
                     "label": a.label or a.kind, "event": event, "target": a.target or "", "amount": a.amount or 0})
    frame = pd.DataFrame(rows).sort_values("time", kind="stable").reset_index(drop=True)
    frame.insert(0, "datetime", (start + pd.to_timedelta(frame["time"], unit="D")).dt.round("s"))
    for col, value in (("replication", replication), ("seed", seed), ("scenario_id", scenario_id)):
        frame.insert(0, col, value)
    return frame
