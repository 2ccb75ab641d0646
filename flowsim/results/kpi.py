"""KPIs, each defined once, with its NHS definition.

Everything here is computed from per-stay records after the run.  The
reporting window is ``[0, T)`` in model days (``simulation.start_date`` to
``start_date + duration_days``); warm-up stays count only for the part of
them that falls inside the window (their bed is occupied; their delay counts).

Conventions (NHS):
- *Midnight census*: patients in a state just before each midnight that ends
  a reporting day.  G&A occupancy (KH03) and DTOC delayed days are census
  counts; "delayed days" in a quarter is the sum of the daily census.
- *DTOC* (F3:3752 in seed-facts section 8): a patient ready to leave who still
  occupies a bed, acute or community.  In flowsim a P1-P3 patient is delayed
  from medically fit until a downstream slot is granted (split into waiting
  for / in assessment, and waiting for the pathway's service), and a P2/P3
  patient leaving for long-term care is delayed in the community bed from the
  end of their stay until the placement is made.  Transfer time and waiting
  for discharge hours are not counted as delay (they are reported as
  ``mffd_bed_days``).
- *BCF DTOC rate*: delayed days per quarter per 100,000 population aged 18+.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from flowsim.model.model import IN_SERVICE, RawRun
from flowsim.results.records import REASONS, Records, build_records
from flowsim.results.series import Level, visit_load
from flowsim.scenario.schema import PATHWAYS, Scenario

DAYS_PER_QUARTER = 365.25 / 4
ORGS: tuple[str, ...] = ("nhs", "social_care", "both")


@dataclass(frozen=True)
class KPI:
    """A KPI's definition: what a reader sees (label, unit, NHS definition) and which way is worse."""

    label: str
    unit: str
    definition: str
    higher_is_worse: bool = True


def _kpis() -> dict[str, KPI]:
    k: dict[str, KPI] = {
        "admissions_per_day": KPI("Non-elective admissions per day", "per day",
                                  "Arrivals (decisions to admit) in the window per day, readmissions included.", False),
        "readmissions": KPI("Readmissions", "stays", "Arrivals that are readmissions of an earlier stay."),
        "acute_beds_mean": KPI("Acute beds available (mean)", "beds", "Time-weighted mean G&A capacity.", False),
        "acute_occupied_mean": KPI("Acute beds occupied (mean)", "beds", "Time-weighted mean occupied G&A beds."),
        "occupancy_mean_pct": KPI("G&A occupancy (mean)", "%",
                                  "Mean over days of midnight occupied / available beds (KH03 style)."),
        "occupancy_p95_pct": KPI("G&A occupancy (95th centile of days)", "%",
                                 "95th percentile over days of midnight occupancy."),
        "days_over_92_pct": KPI("Days above 92% occupancy", "% of days",
                                "Share of days whose midnight occupancy exceeds 92% (the national ceiling)."),
        "days_over_95_pct": KPI("Days above 95% occupancy", "% of days",
                                "Share of days whose midnight occupancy exceeds 95%."),
        "days_at_100_pct": KPI("Days at 100% occupancy", "% of days",
                               "Share of days with every available bed occupied at midnight."),
        "ed_boarding_mean": KPI("Patients boarding in ED (mean)", "patients",
                                "Time-weighted mean number waiting in ED for an acute bed."),
        "ed_wait_mean_hours": KPI("ED wait for a bed (mean)", "hours",
                                  "Mean decision-to-admit to bed time over arrivals in the window "
                                  "(censored at the window end for those still waiting)."),
        "ed_4h_breach_pct": KPI("ED waits over 4 hours", "% of admissions",
                                "Share of admissions waiting more than 4 hours for a bed."),
        "ed_12h_breaches": KPI("ED waits over 12 hours", "admissions",
                               "Admissions waiting more than 12 hours for a bed (trolley waits)."),
        "dtoc_delayed_days_per_quarter": KPI("DTOC delayed days per quarter", "days",
                                             "Midnight census of delayed patients (acute and community) summed, "
                                             "per 91.3 days."),
        "dtoc_rate_per_100k": KPI("DTOC delayed days per 100,000 aged 18+ per quarter", "per 100k",
                                  "BCF metric: delayed days per quarter / population 18+ x 100,000."),
        "delayed_per_100k": KPI("Delayed patients per day per 100,000 aged 18+", "per 100k",
                                "BCF 2017 target metric: delayed patients per day / population 18+ x 100,000."),
        "delayed_patients_per_day": KPI("Delayed patients per day", "patients",
                                        "Mean midnight census of delayed patients (acute and community)."),
        "delayed_acute_per_day": KPI("Delayed patients in acute beds per day", "patients",
                                     "Mean midnight census of delayed patients occupying acute beds."),
        "delayed_bed_days": KPI("Delayed bed-days (continuous)", "bed-days",
                                "Time-integral of delayed patients in the window (acute and community)."),
        "dtoc_pct": KPI("DTOC % of occupied acute bed-days", "%",
                        "Continuous delayed acute bed-days / occupied acute bed-days x 100."),
        "mffd_bed_days": KPI("Medically fit bed-days not counted as delay", "bed-days",
                             "Acute bed-days after medically fit spent in transfer or waiting for discharge hours."),
        "deaths": KPI("Deaths after a downstream stay", "patients", "Outcome 'death' at the end of a P1-P3 stay."),
        "long_term_care_placements": KPI("Long-term care placements", "patients",
                                         "P1-P3 stays ending in permanent residential or nursing care."),
    }
    k.update({
        "electives_scheduled": KPI("Elective admissions scheduled", "patients",
                                   "Elective patients due in the window (weekdays).", False),
        "electives_admitted": KPI("Elective admissions", "patients", "Elective patients given a bed.", False),
        "electives_cancelled_no_bed": KPI("Electives cancelled: no bed", "patients",
                                          "Elective patients turned away because no bed was free."),
        "electives_cancelled_escalation": KPI("Electives cancelled: escalation", "patients",
                                              "Elective patients cancelled by an escalation action."),
        "escalation_bed_days_opened": KPI("Escalation bed-days opened", "bed-days",
                                          "Acute beds added by escalation actions x days open."),
        "escalation_bed_days_used": KPI("Escalation bed-days used", "bed-days",
                                        "Occupied acute beds above the non-escalation capacity, up to the "
                                        "escalation beds open (time-integral)."),
        "escalation_cost": KPI("Extra cost of escalation actions", "GBP",
                               "One-off, per-day and per-place-day costs of the actions in force in the window."),
        "service_capacity_cost": KPI("Cost of downstream places", "GBP",
                                     "Scheduled place-days x unit_cost_per_day, summed over services (places "
                                     "added by escalation are priced by their action)."),
        "cost_acute_delay": KPI("Cost of delays in acute beds", "GBP",
                                "Delayed acute bed-days x costs.acute_delay_per_day."),
        "cost_service_care": KPI("Cost of care in downstream services", "GBP",
                                 "Occupied place-days x cost_per_occupied_day, summed over services."),
        "cost_acute_occupied": KPI("Cost of occupied acute bed-days", "GBP",
                                   "Occupied G&A bed-days x costs.acute_occupied_bed_day."),
        "cost_acute_capacity": KPI("Cost of open acute beds", "GBP",
                                   "Open G&A bed-days (escalation beds excluded) x costs.acute_available_bed_day."),
        "cost_non_elective": KPI("Cost of non-elective admissions", "GBP",
                                 "Non-elective admissions (readmissions included) x costs.non_elective_admission."),
        "cost_fixed": KPI("Fixed running costs", "GBP", "Days reported x costs.fixed_per_day."),
        "cost_investment": KPI("One-off investment", "GBP", "costs.investment_one_off."),
        "total_cost": KPI("Total cost", "GBP", "Acute delays, occupied and open acute beds, non-elective admissions, "
                                               "downstream care and places, escalation, fixed costs and investment."),
        "escalation_actions_started": KPI("Escalation actions started", "actions",
                                          "Actions that came into force in the window."),
    })
    for level in (1, 2, 3, 4):
        k[f"opel_days_level_{level}"] = KPI(f"Days at OPEL {level}", "days",
                                            f"Time spent at OPEL level {level} in the window.")
    for r in REASONS:
        k[f"delayed_per_day_{r}"] = KPI(f"Delayed per day: waiting for {r}", "patients",
                                        f"Mean midnight census of patients delayed waiting for {r}.")
    for o in ORGS:
        k[f"delayed_per_day_{o}"] = KPI(f"Delayed per day: {o.replace('_', ' ')}", "patients",
                                        f"Mean midnight census of delays attributed to {o.replace('_', ' ')}.")
    for p in PATHWAYS:
        k[f"discharges_{p}"] = KPI(f"Discharges to {p}", "patients", f"Patients leaving an acute bed on {p}.", False)
        if p != "P0":
            k[f"queue_mean_{p}"] = KPI(f"{p} queue (mean)", "patients",
                                       f"Time-weighted mean number waiting for a {p} slot (in acute beds).")
            k[f"wait_mean_days_{p}"] = KPI(f"{p} wait for a slot (mean)", "days",
                                           f"Mean days from ready for {p} to slot granted, over patients "
                                           "ready in the window (censored at its end).")
    return k


#: The single registry of KPI definitions (service-level KPIs are added per scenario by name).
KPIS: dict[str, KPI] = _kpis()


def service_kpi(name: str) -> KPI:
    """Definitions of per-service KPIs (``service_<svc>_occupied_mean`` etc.), labelled with the service."""
    for suffix, label, unit, definition, worse in (
            ("_occupied_mean", "occupied (mean)", "places", "Time-weighted mean occupied (or reserved) places.", True),
            ("_visits_mean", "visits a day in use (mean)", "visits/day",
             "Hourly mean of visits committed to packages.", True),
            ("_utilisation_pct", "utilisation", "%", "Mean occupied / mean available places x 100.", True),
            ("_admissions", "admissions", "patients", "Slots granted in the window.", False)):
        if name.endswith(suffix):
            service = name.removeprefix("service_").removesuffix(suffix).replace("_", " ")
            return KPI(f"{service[:1].upper()}{service[1:]}: {label}", unit, definition, worse)
    return KPI(name.replace("_", " "), "", "Per-service measure.", False)


def kpi_info(name: str) -> KPI:
    """The definition of ``name``: from the registry, or built for a per-service KPI."""
    return KPIS.get(name) or service_kpi(name)


def kpi_range(name: str) -> tuple[float | None, float | None]:
    """The values ``name`` can take: every flowsim KPI is a count, a time, a rate, a share or a cost, so none is
    negative, and shares (unit '%...') are at most 100.  Confidence intervals are kept inside this range
    (``flowsim.experiment.stats.bounded_ci``)."""
    return 0.0, 100.0 if kpi_info(name).unit.startswith("%") else None


# ----------------------------------------------------------------------------------------- groups and modes

#: Report groups: (heading, test on the KPI name); the first match wins, the rest are "Other measures".
KPI_GROUPS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("Delayed transfers of care", lambda k: k.startswith(("delayed", "dtoc")) or k == "mffd_bed_days"),
    ("Hospital beds and admissions", lambda k: k.startswith(("acute_", "occupancy", "days_over", "days_at",
                                                            "admissions", "readmissions"))),
    ("Emergency department", lambda k: k.startswith("ed_")),
    ("Leaving hospital: pathways", lambda k: k.startswith(("discharges_", "queue_", "wait_"))
     or k in ("deaths", "long_term_care_placements")),
    ("Community services", lambda k: k.startswith("service_") and k != "service_capacity_cost"),
    ("Planned (elective) care", lambda k: k.startswith("elective")),
    ("Escalation (OPEL)", lambda k: k.startswith(("opel", "escalation_")) and k != "escalation_cost"),
    ("Costs", lambda k: "cost" in k),
)
OTHER_GROUP = "Other measures"


def kpi_group(name: str) -> str:
    """The report heading ``name`` is listed under."""
    return next((heading for heading, test in KPI_GROUPS if test(name)), OTHER_GROUP)


#: Measures of the hospital's front door and beds: a pathway-only scenario has no acute stay (its "acute bed"
#: is only where a medically fit patient waits, with unlimited beds), so it does not model them.
ACUTE_KPIS = frozenset({
    "admissions_per_day", "readmissions", "acute_beds_mean", "acute_occupied_mean", "occupancy_mean_pct",
    "occupancy_p95_pct", "days_over_92_pct", "days_over_95_pct", "days_at_100_pct", "ed_boarding_mean",
    "ed_wait_mean_hours", "ed_4h_breach_pct", "ed_12h_breaches", "dtoc_pct", "discharges_P0",
    "cost_acute_occupied", "cost_acute_capacity", "cost_non_elective"})
ELECTIVE_KPIS = ("electives_scheduled", "electives_admitted", "electives_cancelled_no_bed",
                 "electives_cancelled_escalation")
ESCALATION_KPIS = ("opel_days_level_1", "opel_days_level_2", "opel_days_level_3", "opel_days_level_4",
                   "escalation_actions_started", "escalation_bed_days_opened", "escalation_bed_days_used",
                   "escalation_cost")


@dataclass(frozen=True)
class Modelled:
    """What a scenario models, as far as the KPIs are concerned (from a Scenario or its resolved YAML)."""

    mode: str = "full"
    electives: bool = True
    escalation: bool = True

    @classmethod
    def of(cls, scenario: Scenario | dict[str, Any]) -> Modelled:
        """Read the three facts off a scenario object or its plain-data form."""
        if isinstance(scenario, dict):
            return cls(str(scenario.get("mode") or "full"), scenario.get("electives") is not None,
                       scenario.get("escalation") is not None)
        return cls(scenario.mode, scenario.electives is not None, scenario.escalation is not None)


def kpi_applies(name: str, modelled: Modelled) -> bool:
    """Whether a scenario that models ``modelled`` measures ``name`` at all.

    The model computes every KPI for every scenario (a pathway-only run has an "occupancy" of its waiting
    patients in unlimited beds, a run without escalation spends every day at OPEL 1); a report or a terminal
    table that showed them would judge what the scenario does not model ("0% waited over 4 hours: met")."""
    if modelled.mode == "pathway_only" and name in ACUTE_KPIS:
        return False
    if not modelled.electives and name in ELECTIVE_KPIS:
        return False
    return modelled.escalation or name not in ESCALATION_KPIS


@dataclass(frozen=True)
class ReplicationResult:
    """Everything one replication reports: KPI values, a daily table and the stay records."""

    replication: int
    seed: int
    kpis: dict[str, float]
    daily: pd.DataFrame
    patients: pd.DataFrame | None
    checks: list[str] = field(default_factory=list)
    escalation: pd.DataFrame | None = None
    nodes: pd.DataFrame | None = None
    kernel_events: int = 0
    model_events: int = 0
    seconds: float = 0.0


def _electives(rec: Records, T: float, D: int, k: dict[str, float], daily: dict[str, np.ndarray]) -> None:
    el = rec["elective"]
    arr = rec["arrival"]
    due = el & (arr >= 0) & (arr < T)
    cancelled = rec["cancelled"]
    k["electives_scheduled"] = float(due.sum())
    k["electives_admitted"] = float((due & (cancelled == 0)).sum())
    k["electives_cancelled_no_bed"] = float((due & (cancelled == 1)).sum())
    k["electives_cancelled_escalation"] = float((due & (cancelled == 2)).sum())
    day = np.floor(arr[due]).astype(int)
    daily["electives_admitted"] = np.bincount(day[cancelled[due] == 0], minlength=D)[:D]
    daily["electives_cancelled"] = np.bincount(day[cancelled[due] > 0], minlength=D)[:D]


def _escalation(raw: RawRun, sc: Scenario, occ: Level, T: float, D: int, k: dict[str, float],  # noqa: C901, PLR0917
                daily: dict[str, np.ndarray]) -> None:
    """OPEL days, escalation beds opened and used, and the cost of the actions in force."""
    log = raw.opel_log or [(raw.t0, 1)]
    opel = Level.from_steps(np.array([t for t, _ in log]), np.array([float(v) for _, v in log]))
    for level in (1, 2, 3, 4):
        k[f"opel_days_level_{level}"] = float(Level.combine([opel], lambda x, lv=level: (x == lv) * 1.0)
                                              .mean(0.0, T) * T)
    days = np.arange(D, dtype=float)
    day_max = opel.at(days)
    for t, v in log:
        if 0.0 <= t < T:
            day_max[int(t)] = max(day_max[int(t)], v)
    daily["opel_level"] = day_max
    extra = raw.extra_capacity.get("acute")
    if extra is not None:
        esc = Level.from_steps(*extra)
        cap = Level.from_steps(*raw.capacity["acute"])
        used = Level.combine([occ, cap, esc], lambda o, c, e: np.clip(o - (c - e), 0.0, e))
        k["escalation_bed_days_opened"] = esc.mean(0.0, T) * T
        k["escalation_bed_days_used"] = used.mean(0.0, T) * T
        daily["escalation_beds_open"] = esc.daily_mean(D)
    else:
        k["escalation_bed_days_opened"] = k["escalation_bed_days_used"] = 0.0
        daily["escalation_beds_open"] = np.zeros(D)
    cost = 0.0
    started = 0
    if sc.escalation is not None:
        for i, action in enumerate(sc.escalation.actions):
            events = [(t, e) for t, j, e in raw.action_log if j == i and e in ("started", "stopped")]
            on = None
            for t, e in [*events, (T, "stopped")]:
                if e == "started":
                    on = t
                    if 0.0 <= t < T:
                        cost += action.cost_one_off
                        started += 1
                elif on is not None:
                    active = max(0.0, min(t, T) - max(on, 0.0))
                    cost += active * (action.cost_per_day + action.cost_per_place_day * (action.amount or 0))
                    on = None
    k["escalation_cost"] = cost
    k["escalation_actions_started"] = float(started)


def node_daily(rec: Records, sc: Scenario, daily: dict[str, np.ndarray],  # noqa: PLR0913, PLR0917
               intervals: dict[str, tuple[np.ndarray, np.ndarray]], T: float, D: int,
               replication: int, seed: int, scenario_id: str) -> pd.DataFrame:
    """One row per day and node (pathway x locality): occupancy, capacity, queue, waits and cost.

    The table capacity-and-demand planners lay beside their other tools.  A node's queue is its
    own patients waiting in acute beds (for assessment or a slot); its cost is care in its services
    (occupied place-days), their available places, and its patients' days of delay.
    """
    cohort_loc = np.array([c.locality for c in sc.cohorts.values()] + [None], dtype=object)
    loc = cohort_loc[np.minimum(rec["cohort"], len(cohort_loc) - 1)]
    pathway = rec["pathway"]
    granted = rec["slot_granted"]
    rows = []
    for pname, pw in sc.pathways.items():
        if not pw.services:
            continue
        # nodes partition the pathway: patients by their cohort's locality, places by their service's
        demand_locs = {c.locality for c in sc.cohorts.values() if c.pathway_mix.get(pname, 0.0) > 0}
        localities = sorted({svc.locality for svc in pw.services.values()} | demand_locs, key=lambda x: x or "")
        for locality in localities:
            names = [n for n, svc in pw.services.items() if svc.locality == locality]
            mine = (pathway == pname) & np.array([x == locality for x in loc], dtype=bool)
            waiting = np.zeros(D)
            for reason in ("assessment", pname):
                start, end = intervals[reason]
                waiting += Level.from_intervals(np.where(mine, start, np.nan), end, T).daily_mean(D)
            s_wait = intervals[pname][0]
            got = mine & (granted >= 0) & (granted < T) & ~np.isnan(s_wait) & (rec["initial_stage"] != IN_SERVICE)
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
        rows.append({"time": t, "record": "action", "level": a.level, "action": i,
                     "label": a.label or a.kind, "event": event, "target": a.target or "", "amount": a.amount or 0})
    frame = pd.DataFrame(rows).sort_values("time", kind="stable").reset_index(drop=True)
    frame.insert(0, "datetime", (start + pd.to_timedelta(frame["time"], unit="D")).dt.round("s"))
    for col, value in (("replication", replication), ("seed", seed), ("scenario_id", scenario_id)):
        frame.insert(0, col, value)
    return frame


def _open_end(x: np.ndarray, t_end: float) -> np.ndarray:
    return np.where(np.isnan(x), t_end, x)


def delay_intervals(rec: Records, sc: Scenario) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Delay intervals ``[start, end)`` by reason (end NaN = still delayed at the run's end)."""
    pw = rec["pathway"]
    needs = np.array([sc.pathways[p].needs_assessment if p in sc.pathways else False for p in pw], dtype=bool)
    mffd, a_end, granted = rec["mffd"], rec["assess_end"], rec["slot_granted"]
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    assess = needs & ~np.isnan(mffd)
    out["assessment"] = (np.where(assess, mffd, np.nan), a_end)
    wait_start = np.where(needs, a_end, mffd)
    for p in ("P1", "P2", "P3"):
        m = (pw == p) & ~np.isnan(wait_start)
        out[p] = (np.where(m, wait_start, np.nan), granted)
    ltc = rec["outcome"] == 1
    out["care_home"] = (np.where(ltc, rec["stay_end"], np.nan), rec["ltc_granted"])
    return out


def reason_org(sc: Scenario) -> dict[str, str]:
    """The organisation responsible for each delay reason (NHS, social care or both), from the scenario."""
    org: dict[str, str] = {"assessment": sc.assessment.responsible if sc.assessment else "social_care",
           "care_home": sc.long_term_care.responsible}
    for p in ("P1", "P2", "P3"):
        org[p] = sc.pathways[p].responsible if p in sc.pathways else "nhs"
    return org


def _pct(x: np.ndarray) -> float:
    return float(100.0 * np.mean(x)) if len(x) else 0.0


#: The parts of ``total_cost``: each is priced once, by one scenario field.
COST_PARTS = ("cost_acute_delay", "cost_acute_occupied", "cost_acute_capacity", "cost_non_elective",
              "cost_service_care", "service_capacity_cost", "escalation_cost", "cost_fixed", "cost_investment")


def analyse(raw: RawRun, sc: Scenario, replication: int, seed: int, scenario_id: str,  # noqa: PLR0915, PLR0917
            keep_patients: bool = True) -> ReplicationResult:
    """Turn one replication's raw stamps into KPIs, a daily table and stay records."""
    rec = build_records(raw)
    T = raw.t1
    D = int(round(T))
    days = np.arange(D, dtype=float)
    midnights = days + 1.0
    k: dict[str, float] = {}
    daily: dict[str, np.ndarray] = {}
    start = sc.simulation.start_date
    daily["date"] = np.array([start + dt.timedelta(days=int(d)) for d in days], dtype="datetime64[D]")
    daily["day"] = days.astype(int)

    arrival, bed_start, acute_end = rec["arrival"], rec["bed_start"], rec["acute_end"]
    elective = rec["elective"]
    # admissions in the window: not electives, and not patients already in on a start-from-today snapshot
    in_window = (arrival >= 0) & (arrival < T) & ~elective & ~rec["initial"]
    is_readmit = rec["readmission_of"] >= 0

    # ---- acute occupancy -----------------------------------------------------------
    cap = Level.from_steps(*raw.capacity["acute"])
    occ = Level.from_intervals(bed_start, acute_end, T)
    daily["acute_beds"] = cap.daily_mean(D)
    daily["acute_occupied_mean"] = occ.daily_mean(D)
    occ_mid = occ.at(midnights, left=True)
    cap_mid = cap.at(midnights, left=True)
    daily["acute_occupied_midnight"] = occ_mid
    with np.errstate(divide="ignore", invalid="ignore"):
        occ_pct = np.where(np.isfinite(cap_mid) & (cap_mid > 0), 100.0 * occ_mid / cap_mid, np.nan)
    daily["occupancy_pct"] = occ_pct
    k["acute_beds_mean"] = cap.mean(0.0, T)
    k["acute_occupied_mean"] = occ.mean(0.0, T)
    valid = occ_pct[~np.isnan(occ_pct)]
    k["occupancy_mean_pct"] = float(valid.mean()) if len(valid) else float("nan")
    k["occupancy_p95_pct"] = float(np.percentile(valid, 95)) if len(valid) else float("nan")
    k["days_over_92_pct"] = _pct(valid > 92.0)
    k["days_over_95_pct"] = _pct(valid > 95.0)
    k["days_at_100_pct"] = _pct(occ_mid[~np.isnan(occ_pct)] >= cap_mid[~np.isnan(occ_pct)])

    # ---- admissions and ED -----------------------------------------------------------
    day_of_arrival = np.floor(arrival[in_window]).astype(int)
    daily["admissions"] = np.bincount(day_of_arrival, minlength=D)[:D]
    daily["readmissions"] = np.bincount(np.floor(arrival[in_window & is_readmit]).astype(int), minlength=D)[:D]
    k["admissions_per_day"] = float(in_window.sum() / T)
    k["readmissions"] = float((in_window & is_readmit).sum())
    ed = Level.from_intervals(np.where(elective, np.nan, arrival), bed_start, T)
    daily["ed_boarding_mean"] = ed.daily_mean(D)
    k["ed_boarding_mean"] = ed.mean(0.0, T)
    wait = _open_end(bed_start, T)[in_window] - arrival[in_window]
    k["ed_wait_mean_hours"] = float(24.0 * wait.mean()) if len(wait) else 0.0
    b4, b12 = wait > 4.0 / 24.0, wait > 12.0 / 24.0
    daily["ed_4h_breaches"] = np.bincount(day_of_arrival[b4], minlength=D)[:D]
    daily["ed_12h_breaches"] = np.bincount(day_of_arrival[b12], minlength=D)[:D]
    k["ed_4h_breach_pct"] = _pct(b4)
    k["ed_12h_breaches"] = float(b12.sum())

    # ---- delays ------------------------------------------------------------------------
    orgs = reason_org(sc)
    intervals = delay_intervals(rec, sc)
    total_mid = np.zeros(D)
    acute_mid = np.zeros(D)
    total_cont = np.zeros(D)
    acute_cont = np.zeros(D)
    org_mid = {o: np.zeros(D) for o in ORGS}
    for r in REASONS:
        s, e = intervals[r]
        lev = Level.from_intervals(s, e, T)
        mid = lev.at(midnights, left=True)
        cont = lev.daily_mean(D)
        daily[f"delayed_{r}"] = mid
        k[f"delayed_per_day_{r}"] = float(mid.mean())
        total_mid += mid
        total_cont += cont
        org_mid[orgs[r]] += mid
        if r != "care_home":
            acute_mid += mid
            acute_cont += cont
    daily["delayed_midnight"] = total_mid
    daily["delayed_acute_midnight"] = acute_mid
    daily["delayed_bed_days"] = total_cont
    for o in ORGS:
        daily[f"delayed_{o}"] = org_mid[o]
        k[f"delayed_per_day_{o}"] = float(org_mid[o].mean())
    k["delayed_patients_per_day"] = float(total_mid.mean())
    k["delayed_per_100k"] = k["delayed_patients_per_day"] / sc.population_18plus * 1e5
    k["delayed_acute_per_day"] = float(acute_mid.mean())
    k["dtoc_delayed_days_per_quarter"] = float(total_mid.sum() * DAYS_PER_QUARTER / T)
    k["dtoc_rate_per_100k"] = k["dtoc_delayed_days_per_quarter"] / sc.population_18plus * 1e5
    k["delayed_bed_days"] = float(total_cont.sum())
    occupied_bed_days = float(daily["acute_occupied_mean"].sum())
    k["dtoc_pct"] = 100.0 * float(acute_cont.sum()) / occupied_bed_days if occupied_bed_days > 0 else 0.0
    # fit but neither delayed nor gone: transfer and waiting for discharge hours
    # from the slot granted (P1-P3) or medically fit (P0): patients still waiting are delayed, not this
    ready = np.where(rec["pathway"] == "P0", rec["mffd"], rec["slot_granted"])
    k["mffd_bed_days"] = Level.from_intervals(ready, acute_end, T).mean(0.0, T) * T

    # ---- pathways and services ---------------------------------------------------------
    day_left = np.floor(acute_end).astype(float)
    placed = rec["initial_stage"] == IN_SERVICE  # already in a service on the snapshot: never left acute
    left_in = (acute_end >= 0) & (acute_end < T) & ~placed
    for p in PATHWAYS:
        m = left_in & (rec["pathway"] == p)
        daily[f"discharges_{p}"] = np.bincount(day_left[m].astype(int), minlength=D)[:D]
        k[f"discharges_{p}"] = float(m.sum())
        if p == "P0":
            continue
        s, e = intervals[p]
        q = Level.from_intervals(s, e, T)
        daily[f"queue_{p}"] = q.daily_mean(D)
        k[f"queue_mean_{p}"] = q.mean(0.0, T)
        ready_in = ~np.isnan(s) & (s >= 0) & (s < T) & ~rec["initial"]
        w = _open_end(e[ready_in], T) - s[ready_in]
        k[f"wait_mean_days_{p}"] = float(w.mean()) if len(w) else 0.0
    svc = rec["service"]
    services = {n: v for pw in sc.pathways.values() for n, v in pw.services.items()}
    for i, name in enumerate(raw.service_names):
        m = svc == i
        lev = Level.from_intervals(np.where(m, rec["slot_granted"], np.nan), rec["ds_end"], T)
        capl = Level.from_steps(*raw.capacity[name])
        daily[f"service_{name}_occupied"] = lev.daily_mean(D)
        daily[f"service_{name}_capacity"] = capl.daily_mean(D)
        k[f"service_{name}_occupied_mean"] = lev.mean(0.0, T)
        cap_mean = capl.mean(0.0, T)
        k[f"service_{name}_utilisation_pct"] = (100.0 * k[f"service_{name}_occupied_mean"] / cap_mean
                                                if np.isfinite(cap_mean) and cap_mean > 0 else float("nan"))
        g = rec["slot_granted"][m & ~placed]
        k[f"service_{name}_admissions"] = float(((g >= 0) & (g < T)).sum())
        svc_spec = services[name]
        if svc_spec.capacity_unit == "visits" and svc_spec.visits is not None:
            # visits a day in use, sampled hourly; utilisation is against visits a day available
            hours = np.arange(D * 24, dtype=float) / 24.0 + 1.0 / 48.0
            load = visit_load(np.where(m, rec["slot_granted"], np.nan), rec["ds_end"], rec["package_len"],
                              svc_spec.visits.start, svc_spec.visits.end, hours)
            daily[f"service_{name}_visits"] = load.reshape(D, 24).mean(axis=1)
            k[f"service_{name}_visits_mean"] = float(load.mean())
            k[f"service_{name}_utilisation_pct"] = (100.0 * k[f"service_{name}_visits_mean"] / cap_mean
                                                    if np.isfinite(cap_mean) and cap_mean > 0 else float("nan"))
    ends = rec["ds_end"]
    ended = (ends >= 0) & (ends < T)
    k["deaths"] = float((ended & (rec["outcome"] == 2)).sum())
    k["long_term_care_placements"] = float((ended & (rec["outcome"] == 1)).sum())

    _electives(rec, T, D, k, daily)
    _escalation(raw, sc, occ, T, D, k, daily)
    # places a service provides on its schedule; places added by escalation are priced by their action
    for pw in sc.pathways.values():
        for name in pw.services:
            daily[f"service_{name}_scheduled"] = daily[f"service_{name}_capacity"] - (
                Level.from_steps(*raw.extra_capacity[name]).daily_mean(D) if name in raw.extra_capacity else 0.0)
    k["service_capacity_cost"] = float(sum(
        svc.unit_cost_per_day * float(daily[f"service_{name}_scheduled"].sum())
        for pw in sc.pathways.values() for name, svc in pw.services.items() if svc.unit_cost_per_day > 0))

    k["cost_acute_delay"] = float(acute_cont.sum()) * sc.costs.acute_delay_per_day
    k["cost_service_care"] = float(sum(
        svc.cost_per_occupied_day * float(daily[f"service_{name}_occupied"].sum())
        for pw in sc.pathways.values() for name, svc in pw.services.items()))
    c = sc.costs
    k["cost_acute_occupied"] = float(daily["acute_occupied_mean"].sum()) * c.acute_occupied_bed_day
    open_beds = daily["acute_beds"] - daily.get("escalation_beds_open", 0.0)  # escalation beds: priced by the action
    k["cost_acute_capacity"] = (float(np.asarray(open_beds, dtype=float).sum()) * c.acute_available_bed_day
                                if c.acute_available_bed_day else 0.0)  # unpriced 'unlimited' beds cost nothing
    k["cost_non_elective"] = float(np.sum(daily["admissions"])) * c.non_elective_admission
    k["cost_fixed"] = D * c.fixed_per_day
    k["cost_investment"] = c.investment_one_off
    k["total_cost"] = sum(k[name] for name in COST_PARTS)

    frame = pd.DataFrame(daily)
    frame.insert(0, "replication", replication)
    frame.insert(0, "seed", seed)
    frame.insert(0, "scenario_id", scenario_id)
    model_events = int(sum(np.count_nonzero(~np.isnan(rec[f])) for f in (
        "arrival", "bed_start", "mffd", "assess_start", "assess_end", "slot_granted", "acute_end", "ds_end")))
    from flowsim.results.checks import check_records  # local: checks import this module's helpers

    return ReplicationResult(
        replication=replication,
        seed=seed,
        kpis=k,
        daily=frame,
        patients=rec.frame(replication, seed, scenario_id) if keep_patients else None,
        checks=check_records(rec, raw, sc),
        escalation=escalation_log(raw, sc, replication, seed, scenario_id),
        nodes=node_daily(rec, sc, daily, intervals, T, D, replication, seed, scenario_id),
        kernel_events=raw.kernel_events,
        model_events=model_events,
    )
