"""KPIs, each defined once, with its NHS definition: the registry every output reads.

Everything here is computed from per-stay records after the run.  The
reporting window is ``[0, T)`` in model days (``simulation.start_date`` to
``start_date + duration_days``); warm-up stays count only for the part of
them that falls inside the window (their bed is occupied; their delay counts).

Conventions (NHS):
- *Midnight census*: patients in a state just before each midnight that ends
  a reporting day.  G&A occupancy (KH03), DTOC delayed days, patients not
  meeting the criteria to reside and stranded patients are census counts;
  "delayed days" in a quarter is the sum of the daily census.
- *DTOC* (2016/17): from ready for transfer until the patient leaves the bed,
  in an acute bed or a non-acute bed whose provider returns the SitRep; see
  ``flowsim.results.delays`` for the counting rules and their sources.
- *Today's measures*: patients no longer meeting the criteria to reside (NCTR,
  from medically fit), Discharge Ready Date delays by band, stranded and
  super-stranded patients.

This module is also the single source of the KPI groups and headline lists the
terminal, the run directory and the board report show (``KPI_GROUPS``,
``headline``, ``BOARD_HEADLINE``, ``REPORT_GROUPS``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from flowsim.model.calendar import bank_holidays
from flowsim.model.codes import AcuteExit, Cancelled, Outcome, Stage
from flowsim.model.model import RawRun
from flowsim.results.checks import check_records
from flowsim.results.delays import ORGS, REASON_LABELS, REASONS, Segment, add_delay_columns, dtoc_intervals, segments
from flowsim.results.outcomes import OLDER_BANDS, at_home_daily
from flowsim.results.records import Records, build_records
from flowsim.results.series import Level, visit_load
from flowsim.results.tables import Tag, escalation_log, node_daily
from flowsim.scenario.schema import COST_FIELDS, PATHWAYS, Scenario

DAYS_PER_QUARTER = 365.25 / 4

# sources quoted in the definitions
SITREP = ("Monthly Delayed Transfer of Care SitReps, Definitions and Guidance v1.09 (NHS England, October 2015): "
          "ready for transfer = clinical decision + multidisciplinary team decision + safe to transfer")
BCF = "BCF 2017-19 metric (F3:3736): delayed days of patients aged 18+ per 100,000 population aged 18+"
NCTR = ("NHS England acute discharge situation report: patients who no longer meet the criteria to reside "
        "(Hospital discharge and community support guidance, Annex D)")
DRD = ("NHS England Discharge Ready Date guidance (2024): the DRD is the date the patient no longer met the criteria "
       "to reside; delay = discharge date minus DRD in calendar days (monthly Discharge Delays (Acute) publication)")
STRANDED = "NHS Improvement stranded (7+ days) and super-stranded (21+ days) patients: adult inpatients in acute beds"

#: Discharge Ready Date delay bands: (key, label, first day, last day) in whole calendar days.
DRD_BANDS: tuple[tuple[str, str, int, int], ...] = (
    ("0", "0 days", 0, 0), ("1", "1 day", 1, 1), ("2_3", "2-3 days", 2, 3), ("4_6", "4-6 days", 4, 6),
    ("7_13", "7-13 days", 7, 13), ("14_20", "14-20 days", 14, 20), ("21plus", "21+ days", 21, 10**9),
)
STRANDED_DAYS: tuple[int, ...] = (7, 14, 21)


@dataclass(frozen=True)
class KPI:
    """A KPI's definition: what a reader sees (label, unit, NHS definition) and which way is worse."""

    label: str
    unit: str
    definition: str
    higher_is_worse: bool = True


# --------------------------------------------------------------------------------------------- definitions
#: (name, label, unit, definition, higher is worse), one row per KPI with a fixed name.
_TABLE: tuple[tuple[str, str, str, str, bool], ...] = (
    ("admissions_per_day", "Non-elective admissions per day", "per day",
     "Arrivals (decisions to admit) in the window per day, readmissions included.", False),
    ("readmissions", "Readmissions", "stays", "Arrivals that are readmissions of an earlier stay.", True),
    ("acute_beds_mean", "Acute beds available (mean)", "beds", "Time-weighted mean G&A capacity.", False),
    ("acute_occupied_mean", "Acute beds occupied (mean)", "beds", "Time-weighted mean occupied G&A beds.", True),
    ("occupancy_mean_pct", "G&A occupancy (mean)", "%",
     "Mean over days of midnight occupied / available beds (KH03 style).", True),
    ("occupancy_p95_pct", "G&A occupancy (95th centile of days)", "%",
     "95th percentile over days of midnight occupancy.", True),
    ("days_over_92_pct", "Days above 92% occupancy", "% of days",
     "Share of days whose midnight occupancy exceeds 92% (the national ceiling).", True),
    ("days_over_95_pct", "Days above 95% occupancy", "% of days",
     "Share of days whose midnight occupancy exceeds 95%.", True),
    ("days_at_100_pct", "Days at 100% occupancy", "% of days",
     "Share of days with every available bed occupied at midnight.", True),
    ("ed_boarding_mean", "Patients boarding in ED (mean)", "patients",
     "Time-weighted mean number waiting in ED for an acute bed.", True),
    ("ed_wait_mean_hours", "ED wait for a bed (mean)", "hours",
     "Mean decision-to-admit to bed time over arrivals in the window (censored at the window end for those "
     "still waiting).", True),
    ("ed_4h_breach_pct", "ED waits over 4 hours", "% of admissions",
     "Share of admissions waiting more than 4 hours for a bed.", True),
    ("ed_12h_breaches", "ED waits over 12 hours", "admissions",
     "Admissions waiting more than 12 hours for a bed (trolley waits).", True),
    # ---- 2016/17 delayed transfers of care
    ("delayed_patients_per_day", "Delayed patients per day (DTOC)", "patients",
     "Mean midnight census of delayed transfers of care: patients ready for transfer still occupying an acute bed "
     f"or a non-acute bed whose provider returns the SitRep. {SITREP}.", True),
    ("delayed_acute_per_day", "Delayed patients in acute beds per day", "patients",
     "Mean midnight census of DTOC patients occupying acute (G&A) beds: the acute trust's own return.", True),
    ("delayed_nonacute_per_day", "Delayed patients in non-acute beds per day", "patients",
     "Mean midnight census of DTOC patients in community beds whose (NHS) provider reports to the SitRep; "
     "council-run and independent beds do not report.", True),
    ("dtoc_delayed_days_per_quarter", "DTOC delayed days per quarter", "days",
     "Midnight census of DTOC patients (acute and reporting non-acute beds) summed, per 91.3 days: the "
     "SitRep's delayed days.", True),
    ("dtoc_rate_per_100k", "DTOC delayed days per 100,000 aged 18+ per quarter", "per 100k",
     f"{BCF}: delayed days per quarter / population 18+ x 100,000.", True),
    ("delayed_per_100k", "Delayed patients per day per 100,000 aged 18+", "per 100k",
     "BCF 2017 target metric (9.4 per 100,000 adults, F3:3756-3761): delayed patients per day (acute and reporting "
     "non-acute beds) / population 18+ x 100,000.", True),
    ("delayed_bed_days", "Delayed bed-days (continuous)", "bed-days",
     "Time-integral of DTOC patients in the window (acute and reporting non-acute beds).", True),
    ("dtoc_pct", "DTOC % of occupied acute bed-days", "%",
     "The acute trust's DTOC %: continuous DTOC bed-days in acute beds / occupied acute bed-days x 100 "
     "(acute beds only; community delays are not in it).", True),
    ("mffd_bed_days", "Medically fit acute bed-days not counted as DTOC", "bed-days",
     "Acute bed-days after medically fit (no longer meeting the criteria to reside) that are not a DTOC: before "
     "ready for transfer, and P0 patients waiting for transport, medicines or discharge hours.", True),
    ("delay_unreported_bed_days", "Delayed bed-days in non-reporting beds", "bed-days",
     "Days patients wait in council or independent community beds for a care home or home care: delays the "
     "SitRep does not count (their providers do not report).", True),
    ("waiting_at_home_days", "Days P1 clients wait at home for onward care", "days",
     "Days home-based (P1) clients wait for a care home or long-term home care while keeping their P1 place: "
     "nobody's bed, never a delayed bed-day.", True),
    # ---- today's measures
    ("nctr_per_day", "Not meeting the criteria to reside (NCTR) per day", "patients",
     f"Mean midnight census of acute patients declared medically fit and still in hospital, all pathways. {NCTR}.",
     True),
    ("nctr_bed_days", "NCTR bed-days", "bed-days",
     "Time-integral of acute patients no longer meeting the criteria to reside.", True),
    ("drd_discharges", "Discharges with a Discharge Ready Date", "patients",
     "Acute discharges in the window of stays of one night or more, each with its Discharge Ready Date (the date "
     f"declared medically fit). {DRD}.", False),
    ("drd_delay_days", "Discharge delay days", "days",
     "Sum over those discharges of the delay: discharge date minus Discharge Ready Date (calendar days).", True),
    ("drd_avg_delay_days", "Average discharge delay (excluding 0-day delays)", "days",
     "Delay days / discharges delayed by 1 day or more, as NHS England's monthly Discharge Delays (Acute) "
     "publication reports it.", True),
    ("escalation_bed_openings", "Escalation beds opened (times)", "openings",
     "Times acute escalation beds (add_capacity actions at 'acute') came into force in the window: open/close "
     "cycles.", True),
    ("escalation_bed_spell_median_days", "Escalation beds: median spell open", "days",
     "Median length of the spells acute escalation beds were in force (started and stopped in the window).", False),
    ("deaths", "Deaths after a downstream stay", "patients", "Outcome 'death' at the end of a P1-P3 stay.", True),
    ("deaths_in_hospital", "Deaths in hospital", "patients",
     "Non-elective stays ending in death in the acute bed in the window (never medically fit, never a discharge: "
     "not in the Discharge Ready Date measures).", True),
    ("same_day_discharges", "Same-day discharges", "patients",
     "Non-elective stays discharged home (P0) from their own short stay in the window, without a ward-round "
     "declaration (counted in discharges to P0; under one night, so without a Discharge Ready Date).", False),
    ("readmitted_from_community", "Readmitted from intermediate care", "patients",
     "P1-P3 stays cut short in the window by a readmission to hospital (readmissions timed from acute discharge).",
     True),
    ("step_up_referrals", "Step-up referrals", "referrals",
     "Referrals from the community to P1-P3 services (to prevent an admission) made in the window.", False),
    ("step_up_starts", "Step-up starts", "patients", "Step-up referrals given a place in the window.", False),
    ("step_up_waiting_mean", "Step-up referrals waiting at home (mean)", "people",
     "Time-weighted mean number of step-up referrals waiting at home for a place (no bed, not a delayed "
     "transfer).", True),
    ("step_up_wait_mean_days", "Step-up wait for a place (mean)", "days",
     "Mean days from referral to a place (or to giving up), over referrals made in the window (censored at its "
     "end).", True),
    ("step_up_refused", "Step-up referrals refused", "referrals",
     "Referrals whose patience ran out in the window without a place, the person staying at home.", True),
    ("step_up_admitted", "Step-up referrals admitted to hospital", "referrals",
     "Referrals whose patience ran out in the window without a place, the person admitted to hospital instead "
     "(a non-elective arrival).", True),
    ("step_up_not_placed_pct", "Step-up referrals not placed", "% of referrals",
     "Share of referrals made in the window that gave up (refused or admitted) rather than start.", True),
    ("long_term_care_placements", "Long-term care placements", "patients",
     "P1-P3 stays ending in permanent residential or nursing care.", True),
    ("home_care_starts", "Long-term home care starts", "patients",
     "P1-P3 stays ending at home with a long-term care package (after waiting for it in place).", False),
    ("electives_scheduled", "Elective admissions scheduled", "patients",
     "Elective patients due in the window (weekdays).", False),
    ("electives_admitted", "Elective admissions", "patients", "Elective patients given a bed.", False),
    ("electives_cancelled_no_bed", "Electives cancelled: no bed", "patients",
     "Elective patients turned away because no bed was free.", True),
    ("electives_cancelled_escalation", "Electives cancelled: escalation", "patients",
     "Elective patients cancelled by an escalation action.", True),
    ("escalation_bed_days_opened", "Escalation bed-days opened", "bed-days",
     "Acute beds added by escalation actions x days open to admissions.", True),
    ("escalation_bed_days_used", "Escalation bed-days used", "bed-days",
     "Occupied acute beds above the non-escalation capacity, up to the escalation beds open (time-integral).", True),
    ("escalation_cost", "Extra cost of escalation actions", "GBP",
     "One-off, per-day and per-place-day costs of the actions in force in the window (standing down and closing "
     "included).", True),
    ("escalation_actions_started", "Escalation actions started", "actions",
     "Actions that came into force in the window.", True),
    ("service_capacity_cost", "Cost of downstream places", "GBP",
     "Scheduled place-days x unit_cost_per_day, summed over services (places added by escalation are priced by "
     "their action).", True),
    ("cost_acute_delay", "Cost of delays in acute beds", "GBP",
     "DTOC bed-days in acute beds x costs.acute_delay_per_day.", True),
    ("cost_service_care", "Cost of care in downstream services", "GBP",
     "Occupied place-days x cost_per_occupied_day, summed over services.", True),
    ("cost_acute_occupied", "Cost of occupied acute bed-days", "GBP",
     "Occupied G&A bed-days x costs.acute_occupied_bed_day.", True),
    ("cost_acute_capacity", "Cost of open acute beds", "GBP",
     "Open G&A bed-days (escalation beds excluded) x costs.acute_available_bed_day.", True),
    ("cost_non_elective", "Cost of non-elective admissions", "GBP",
     "Non-elective admissions (readmissions included) x costs.non_elective_admission.", True),
    ("cost_fixed", "Fixed running costs", "GBP", "Days reported x costs.fixed_per_day.", True),
    ("cost_investment", "One-off investment", "GBP", "costs.investment_one_off.", True),
    ("total_cost", "Total cost", "GBP", "Acute delays, occupied and open acute beds, non-elective admissions, "
                                        "downstream care and places, escalation, fixed costs and investment.", True),
)


def _families() -> dict[str, KPI]:
    """KPIs that come in families: by level, reason, organisation, pathway, band and threshold."""
    k: dict[str, KPI] = {}
    for level in (1, 2, 3, 4):
        k[f"opel_days_level_{level}"] = KPI(f"Days at OPEL {level}", "days",
                                            f"Time spent at OPEL level {level} in the window.")
    for r in REASONS:
        k[f"delayed_per_day_{r}"] = KPI(f"DTOC per day: {REASON_LABELS[r]}", "patients",
                                        f"Mean midnight census of DTOC patients awaiting {REASON_LABELS[r]} "
                                        "(SitRep reason group), acute and reporting non-acute beds.")
    for o in ORGS:
        k[f"delayed_per_day_{o}"] = KPI(f"DTOC per day: {o.replace('_', ' ')}", "patients",
                                        f"Mean midnight census of DTOC patients whose delay is attributed to "
                                        f"{o.replace('_', ' ')} (by reason: who runs the assessment, who funds "
                                        "the service awaited, or the scenario's shares).")
    for p in PATHWAYS:
        k[f"discharges_{p}"] = KPI(f"Discharges to {p}", "patients", f"Patients leaving an acute bed on {p}.", False)
        k[f"nctr_per_day_{p}"] = KPI(f"NCTR per day: {p}", "patients",
                                     f"Mean midnight census of acute patients not meeting the criteria to reside "
                                     f"whose discharge pathway is {p}.")
        if p != "P0":
            k[f"delayed_per_day_{p}"] = KPI(f"DTOC per day in acute beds: waiting for {p}", "patients",
                                            f"Mean midnight census of DTOC patients in acute beds waiting for a {p} "
                                            "place or holding one they cannot take yet (assessment excluded).")
            k[f"queue_mean_{p}"] = KPI(f"{p} queue (mean)", "patients",
                                       f"Time-weighted mean number waiting in acute beds for a {p} place (after "
                                       "readiness and assessment, until granted).")
            k[f"wait_mean_days_{p}"] = KPI(f"{p} wait for a place (mean)", "days",
                                           f"Mean days from ready (and assessed) for {p} to place granted, over "
                                           "patients ready in the window (censored at its end).")
    for key, label, _, _ in DRD_BANDS:
        k[f"drd_discharges_{key}"] = KPI(f"Discharges delayed {label}", "patients",
                                         f"Discharges whose delay (discharge date minus DRD) is {label}.", False)
        k[f"drd_pct_{key}"] = KPI(f"Discharges delayed {label} (%)", "% of discharges",
                                  f"Share of discharges with a DRD whose delay is {label}.", False)
        k[f"drd_delay_days_{key}"] = KPI(f"Delay days of discharges delayed {label}", "days",
                                         f"Delay days summed over discharges delayed {label}.")
    for d in STRANDED_DAYS:
        name = {7: "Stranded", 14: "Long-stay", 21: "Super-stranded"}[d]
        k[f"stranded_{d}_per_day"] = KPI(f"{name} patients ({d}+ days) per day", "patients",
                                         f"Mean midnight census of acute inpatients with a length of stay of {d} "
                                         f"days or more. {STRANDED}.")
    return k


#: The single registry of KPI definitions (service-level KPIs are added per scenario by name).
KPIS: dict[str, KPI] = {name: KPI(label, unit, text, worse) for name, label, unit, text, worse in _TABLE}
KPIS.update(_families())


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


# --------------------------------------------------------------------------------------------- groups, headlines
@dataclass(frozen=True)
class KPIGroup:
    """A family of KPIs: its heading, its headline members (terminal order) and which scenarios it applies to.

    ``prefixes`` and ``names`` decide membership (first matching group wins), so KPIs named per service
    or per scenario fall into a group too.  ``applies`` is a scenario feature: ``always``, ``acute``
    (full mode, with an acute stay and a front door), ``electives``, ``escalation`` or ``costs``.
    """

    key: str
    title: str
    headline: tuple[str, ...]
    prefixes: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    applies: str = "always"

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or name in self.exclude:
            return False
        return name in self.names or name in self.headline or name.startswith(self.prefixes)


_BANDS = tuple(f"drd_pct_{key}" for key, *_ in DRD_BANDS)
KPI_GROUPS: tuple[KPIGroup, ...] = (
    KPIGroup("dtoc", "Delayed transfers of care", (
        "delayed_patients_per_day", "delayed_acute_per_day", "delayed_nonacute_per_day",
        "dtoc_delayed_days_per_quarter", "dtoc_rate_per_100k", "delayed_per_100k", "dtoc_pct", "delayed_bed_days",
        *(f"delayed_per_day_{r}" for r in REASONS), *(f"delayed_per_day_{o}" for o in ORGS),
        "mffd_bed_days", "delay_unreported_bed_days", "waiting_at_home_days"),
        prefixes=("delayed", "dtoc"), names=("mffd_bed_days", "delay_unreported_bed_days", "waiting_at_home_days")),
    KPIGroup("nctr", "Criteria to reside, discharge ready date and stranded patients", (
        "nctr_per_day", *(f"nctr_per_day_{p}" for p in PATHWAYS), "drd_avg_delay_days", *_BANDS,
        *(f"stranded_{d}_per_day" for d in STRANDED_DAYS)),
        prefixes=("nctr", "drd", "stranded")),
    KPIGroup("acute", "Hospital beds and admissions", (
        "admissions_per_day", "acute_beds_mean", "acute_occupied_mean", "occupancy_mean_pct", "occupancy_p95_pct",
        "days_over_92_pct", "days_over_95_pct", "days_at_100_pct"),
        prefixes=("acute_", "occupancy", "days_over", "days_at", "admissions", "readmissions"),
        names=("readmissions",), applies="acute"),
    KPIGroup("ed", "Emergency department", ("ed_boarding_mean", "ed_wait_mean_hours", "ed_4h_breach_pct",
                                            "ed_12h_breaches"), prefixes=("ed_",), applies="acute"),
    KPIGroup("pathways", "Leaving hospital: pathways", (
        *(x for p in ("P1", "P2", "P3") for x in (f"queue_mean_{p}", f"wait_mean_days_{p}")),
        *(f"discharges_{p}" for p in PATHWAYS), "readmissions", "deaths", "long_term_care_placements",
        "home_care_starts", "deaths_in_hospital", "same_day_discharges", "readmitted_from_community"),
        prefixes=("discharges_", "queue_", "wait_"), names=("deaths", "long_term_care_placements", "home_care_starts")),
    KPIGroup("services", "Community services", (), prefixes=("service_",), exclude=("service_capacity_cost",)),
    KPIGroup("step_up", "Step-up from the community", (
        "step_up_referrals", "step_up_starts", "step_up_waiting_mean", "step_up_wait_mean_days", "step_up_refused",
        "step_up_admitted", "step_up_not_placed_pct"), prefixes=("step_up_",), applies="step_up"),
    KPIGroup("electives", "Planned (elective) care", ("electives_scheduled", "electives_admitted",
                                                      "electives_cancelled_no_bed", "electives_cancelled_escalation"),
             prefixes=("elective",), applies="electives"),
    KPIGroup("escalation", "Escalation (OPEL)", (
        *(f"opel_days_level_{lv}" for lv in (1, 2, 3, 4)), "escalation_actions_started", "escalation_bed_openings",
        "escalation_bed_spell_median_days", "escalation_bed_days_opened", "escalation_bed_days_used",
        "escalation_cost"),
        prefixes=("opel", "escalation_"), exclude=("escalation_cost",), applies="escalation"),
    KPIGroup("costs", "Costs", ("cost_acute_delay", "cost_acute_occupied", "cost_acute_capacity", "cost_non_elective",
                                "cost_service_care", "service_capacity_cost", "cost_fixed", "cost_investment",
                                "total_cost"),
             prefixes=("cost_",), names=("total_cost", "service_capacity_cost", "escalation_cost"), applies="costs"),
)

#: Measures with no meaning without an acute stay and a front door (pathway-only scenarios): stays in
#: the notional acute bed there are waits, so lengths of stay and discharge dates are not the NHS's.
ACUTE_ONLY: frozenset[str] = frozenset({"dtoc_pct", "nctr_per_day_P0", "discharges_P0", "readmissions",
                                        "drd_avg_delay_days", *_BANDS, *(f"stranded_{d}_per_day" for d in
                                                                         STRANDED_DAYS)})

#: What a board reads first, in this order (those a directory lacks are skipped).
BOARD_HEADLINE: tuple[str, ...] = (
    "delayed_patients_per_day", "delayed_per_100k", "dtoc_delayed_days_per_quarter", "delayed_bed_days",
    "nctr_per_day", "occupancy_mean_pct", "days_over_92_pct", "ed_4h_breach_pct", "ed_12h_breaches", "total_cost")

#: What an option appraisal compares side by side, in this order (those a scenario lacks are skipped).
COMPARISON_KPIS: tuple[str, ...] = (
    "delayed_patients_per_day", "delayed_per_100k", "dtoc_delayed_days_per_quarter", "delayed_bed_days", "dtoc_pct",
    "nctr_per_day", "occupancy_mean_pct", "days_over_92_pct", "ed_4h_breach_pct", "ed_wait_mean_hours",
    "ed_12h_breaches", "queue_mean_P1", "queue_mean_P2", "queue_mean_P3", "electives_cancelled_no_bed",
    "electives_cancelled_escalation", "opel_days_level_3", "opel_days_level_4", "escalation_cost", "total_cost")

#: Appendix groups for reports: (heading, test on the KPI name), first match wins.
REPORT_GROUPS: tuple[tuple[str, Callable[[str], bool]], ...] = tuple(
    (g.title, g.__contains__) for g in KPI_GROUPS)


def _applies(group: KPIGroup, sc: Scenario) -> bool:
    if group.applies == "acute":
        return sc.mode != "pathway_only"
    if group.applies == "electives":
        return sc.electives is not None
    if group.applies == "escalation":
        return sc.escalation is not None
    if group.applies == "step_up":
        return bool(sc.step_up)
    if group.applies == "costs":
        services = [s for pw in sc.pathways.values() for s in pw.services.values()]
        return any(getattr(sc.costs, f) for f in COST_FIELDS) or any(
            s.unit_cost_per_day or s.cost_per_occupied_day for s in services)
    return True


def headline(sc: Scenario) -> list[str]:
    """The KPIs worth a line in the terminal for this scenario, group by group, chosen by what it models."""
    names: list[str] = []
    for group in KPI_GROUPS:
        if not _applies(group, sc):
            continue
        names += [n for n in group.headline if n not in names]
        if group.key == "pathways" and sc.mode == "pathway_only":  # no front door: services instead
            names += [f"service_{s}_utilisation_pct" for pw in sc.pathways.values() for s in pw.services]
    if sc.mode == "pathway_only":
        names = [n for n in names if n not in ACUTE_ONLY]
    return names


OTHER_GROUP = "Other measures"


def group_of(name: str) -> str:
    """The heading of the group a KPI belongs to (``OTHER_GROUP`` if none)."""
    return next((g.title for g in KPI_GROUPS if name in g), OTHER_GROUP)


#: The report heading ``name`` is listed under (an alias kept for the presentation layer).
kpi_group = group_of


def kpi_range(name: str) -> tuple[float | None, float | None]:
    """The values ``name`` can take: every flowsim KPI is a count, a time, a rate, a share or a cost, so none is
    negative, and shares (unit '%...') are at most 100.  Confidence intervals are kept inside this range
    (``flowsim.experiment.stats.bounded_ci``)."""
    return 0.0, 100.0 if kpi_info(name).unit.startswith("%") else None


#: Costs of the hospital's front door and beds, which a pathway-only scenario does not have.
_ACUTE_COSTS = frozenset({"cost_acute_occupied", "cost_acute_capacity", "cost_non_elective"})


@dataclass(frozen=True)
class Modelled:
    """What a scenario models, as far as the KPIs are concerned (from a Scenario or its resolved YAML)."""

    mode: str = "full"
    electives: bool = True
    escalation: bool = True
    step_up: bool = True

    @classmethod
    def of(cls, scenario: Scenario | dict[str, Any]) -> Modelled:
        """Read the four facts off a scenario object or its plain-data form."""
        if isinstance(scenario, dict):
            return cls(str(scenario.get("mode") or "full"), scenario.get("electives") is not None,
                       scenario.get("escalation") is not None, bool(scenario.get("step_up")))
        return cls(scenario.mode, scenario.electives is not None, scenario.escalation is not None,
                   bool(scenario.step_up))


def kpi_applies(name: str, modelled: Modelled) -> bool:
    """Whether a scenario that models ``modelled`` measures ``name`` at all.

    The model computes every KPI for every scenario (a pathway-only run has an "occupancy" of its waiting
    patients in unlimited beds, a run without escalation spends every day at OPEL 1); a report or a terminal
    table that showed them would judge what the scenario does not model ("0% waited over 4 hours: met").
    The groups' ``applies`` decide, with the acute-only measures of other groups."""
    pathway_only = modelled.mode == "pathway_only"
    if pathway_only and (name in ACUTE_ONLY or name in _ACUTE_COSTS):
        return False
    if name == "escalation_cost" and not modelled.escalation:  # a cost grouped with costs, measured by escalation
        return False
    group = next((g for g in KPI_GROUPS if name in g), None)
    applies = group.applies if group is not None else "always"
    return {"acute": not pathway_only, "electives": modelled.electives, "escalation": modelled.escalation,
            "step_up": modelled.step_up}.get(applies, True)


# --------------------------------------------------------------------------------------------- results
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


@dataclass
class _Run:
    """One replication being analysed: its records and the KPI and daily tables being filled."""

    raw: RawRun
    sc: Scenario
    rec: Records
    segs: list[Segment]
    T: float
    D: int
    k: dict[str, float] = field(default_factory=dict)
    daily: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def midnights(self) -> np.ndarray:
        return np.arange(self.D, dtype=float) + 1.0

    def census(self, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, Level]:
        """Midnight census of intervals, and their level (for continuous measures)."""
        lev = Level.from_intervals(starts, ends, self.T)
        return lev.at(self.midnights, left=True), lev


def _pct(x: np.ndarray) -> float:
    return float(100.0 * np.mean(x)) if len(x) else 0.0


def _open_end(x: np.ndarray, t_end: float) -> np.ndarray:
    return np.where(np.isnan(x), t_end, x)


def _occupancy(r: _Run) -> Level:
    """G&A beds: capacity, time-weighted and midnight occupancy (KH03)."""
    k, daily, rec = r.k, r.daily, r.rec
    cap = Level.from_steps(*r.raw.capacity["acute"])
    occ = rec.level("bed_start", "acute_end", r.T)
    daily["acute_beds"] = cap.daily_mean(r.D)
    daily["acute_occupied_mean"] = occ.daily_mean(r.D)
    occ_mid = occ.at(r.midnights, left=True)
    cap_mid = cap.at(r.midnights, left=True)
    daily["acute_occupied_midnight"] = occ_mid
    with np.errstate(divide="ignore", invalid="ignore"):
        occ_pct = np.where(np.isfinite(cap_mid) & (cap_mid > 0), 100.0 * occ_mid / cap_mid, np.nan)
    daily["occupancy_pct"] = occ_pct
    k["acute_beds_mean"] = cap.mean(0.0, r.T)
    k["acute_occupied_mean"] = occ.mean(0.0, r.T)
    ok = ~np.isnan(occ_pct)
    valid = occ_pct[ok]
    k["occupancy_mean_pct"] = float(valid.mean()) if len(valid) else float("nan")
    k["occupancy_p95_pct"] = float(np.percentile(valid, 95)) if len(valid) else float("nan")
    k["days_over_92_pct"] = _pct(valid > 92.0)
    k["days_over_95_pct"] = _pct(valid > 95.0)
    k["days_at_100_pct"] = _pct(occ_mid[ok] >= cap_mid[ok])
    return occ


def _front_door(r: _Run) -> None:
    """Admissions and ED boarding: waits for a bed and 4- and 12-hour breaches."""
    k, daily, rec, T, D = r.k, r.daily, r.rec, r.T, r.D
    arrival, bed_start = rec["arrival"], rec["bed_start"]
    elective = rec["elective"] | (rec["step_up"] >= 0)  # not through the front door: electives, step-up referrals
    # admissions in the window: not electives, and not patients already in on a start-from-today snapshot
    in_window = (arrival >= 0) & (arrival < T) & ~elective & ~rec["initial"]
    is_readmit = rec["readmission_of"] >= 0
    day_of_arrival = np.floor(arrival[in_window]).astype(int)
    daily["admissions"] = np.bincount(day_of_arrival, minlength=D)[:D]
    daily["readmissions"] = np.bincount(np.floor(arrival[in_window & is_readmit]).astype(int), minlength=D)[:D]
    if _has_ages(r.sc):  # only when the case mix has age bands, so older scenarios' daily tables are unchanged
        older = _older(r, care_home=True)
        daily["admissions_65plus"] = np.bincount(np.floor(arrival[in_window & older]).astype(int), minlength=D)[:D]
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


def _has_ages(sc: Scenario) -> bool:
    return any(c.age_band is not None for c in sc.cohorts.values())


def _older(r: _Run, care_home: bool) -> np.ndarray:
    """Stays of cohorts aged 65+ by their ``age_band`` (care-home residents too, or not)."""
    names = r.rec.cohort_names
    old = np.array([n in r.sc.cohorts and r.sc.cohorts[n].age_band in OLDER_BANDS
                    and (care_home or not r.sc.cohorts[n].from_care_home) for n in names] + [False])
    codes = r.rec["cohort"]
    return old[np.where((codes >= 0) & (codes < len(names)), codes, len(names))]


def _at_home_91(r: _Run) -> None:
    """ASCOF 2B(1): 65+ discharged into reablement or rehabilitation (P1, P2), at home 91 days later
    (``flowsim.results.outcomes``), by day of discharge: the denominator and the numerator."""
    if _has_ages(r.sc):  # only when the case mix has age bands, so older scenarios' daily tables are unchanged
        den, num = at_home_daily(r.rec, _older(r, care_home=False), r.T, r.D)
        r.daily["rehab_65plus_discharges"] = den
        r.daily["rehab_65plus_at_home_91"] = num


def _dtoc(r: _Run) -> np.ndarray:
    """2016/17 DTOC: census, delayed days, BCF rates, DTOC %, by reason and organisation.

    Returns the daily continuous acute DTOC bed-days (for DTOC % and the cost of acute delays).
    """
    k, daily, sc = r.k, r.daily, r.sc
    total_mid, total = r.census(*dtoc_intervals(r.segs))
    acute_mid, acute = r.census(*dtoc_intervals(r.segs, acute=True))
    daily["delayed_midnight"] = total_mid
    daily["delayed_acute_midnight"] = acute_mid
    daily["delayed_nonacute_midnight"] = total_mid - acute_mid
    daily["delayed_bed_days"] = total.daily_mean(r.D)
    for r_ in REASONS:
        mid, _ = r.census(*dtoc_intervals(r.segs, reason=r_))
        daily[f"delayed_{r_}"] = mid
        k[f"delayed_per_day_{r_}"] = float(mid.mean())
    for o in ORGS:
        mid, _ = r.census(*dtoc_intervals(r.segs, org=o))
        daily[f"delayed_{o}"] = mid
        k[f"delayed_per_day_{o}"] = float(mid.mean())
    k["delayed_patients_per_day"] = float(total_mid.mean())
    k["delayed_acute_per_day"] = float(acute_mid.mean())
    k["delayed_nonacute_per_day"] = float((total_mid - acute_mid).mean())
    k["delayed_per_100k"] = k["delayed_patients_per_day"] / sc.population_18plus * 1e5
    k["dtoc_delayed_days_per_quarter"] = float(total_mid.sum() * DAYS_PER_QUARTER / r.T)
    k["dtoc_rate_per_100k"] = k["dtoc_delayed_days_per_quarter"] / sc.population_18plus * 1e5
    k["delayed_bed_days"] = float(daily["delayed_bed_days"].sum())
    acute_daily = acute.daily_mean(r.D)
    occupied_bed_days = float(daily["acute_occupied_mean"].sum())
    k["dtoc_pct"] = 100.0 * float(acute_daily.sum()) / occupied_bed_days if occupied_bed_days > 0 else 0.0
    onward = r.segs[2]
    rec = r.rec
    unreported = onward.in_bed & ~onward.counted
    k["delay_unreported_bed_days"] = Level.from_intervals(np.where(unreported, onward.start, np.nan), onward.end,
                                                          r.T).mean(0.0, r.T) * r.T
    at_home = ~onward.in_bed & (rec["onward_reason"] != "")
    k["waiting_at_home_days"] = Level.from_intervals(np.where(at_home, onward.start, np.nan), onward.end,
                                                     r.T).mean(0.0, r.T) * r.T
    return acute_daily


def _nctr(r: _Run) -> None:
    """Today's census: acute patients no longer meeting the criteria to reside, by pathway."""
    k, daily, rec = r.k, r.daily, r.rec
    mid, lev = r.census(rec["mffd"], rec["acute_end"])
    daily["nctr_midnight"] = mid
    k["nctr_per_day"] = float(mid.mean())
    k["nctr_bed_days"] = lev.mean(0.0, r.T) * r.T
    # medically fit but not a DTOC: until ready for transfer (P1-P3), or until leaving (P0 and electives)
    downstream = ~rec.on_pathway("P0") & ~rec["elective"]
    k["mffd_bed_days"] = Level.from_intervals(rec["mffd"], np.where(downstream, rec["rft"], rec["acute_end"]),
                                              r.T).mean(0.0, r.T) * r.T
    for p in PATHWAYS:
        m, _ = r.census(np.where(rec.on_pathway(p), rec["mffd"], np.nan), rec["acute_end"])
        daily[f"nctr_{p}"] = m
        k[f"nctr_per_day_{p}"] = float(m.mean())


def _drd(r: _Run) -> None:
    """Discharge Ready Date delays of acute discharges in the window, by band (by discharge date)."""
    k, daily, rec, T, D = r.k, r.daily, r.rec, r.T, r.D
    end, delay = rec["acute_end"], rec["drd_delay_days"]
    placed = rec["initial_stage"] == Stage.IN_SERVICE
    overnight = np.floor(end) > np.floor(rec["bed_start"])  # the DRD is recorded for stays of one night or more
    m = (end >= 0) & (end < T) & ~np.isnan(delay) & ~placed & overnight
    day, d = np.floor(end[m]).astype(int), delay[m]
    n = max(int(m.sum()), 1)
    for key, _, lo, hi in DRD_BANDS:
        band = (d >= lo) & (d <= hi)
        daily[f"drd_discharges_{key}"] = np.bincount(day[band], minlength=D)[:D]
        daily[f"drd_delay_days_{key}"] = np.bincount(day[band], weights=d[band], minlength=D)[:D]
        k[f"drd_discharges_{key}"] = float(band.sum())
        k[f"drd_pct_{key}"] = 100.0 * float(band.sum()) / n
        k[f"drd_delay_days_{key}"] = float(d[band].sum())
    k["drd_discharges"] = float(m.sum())
    k["drd_delay_days"] = float(d.sum())
    delayed = int((d >= 1).sum())
    k["drd_avg_delay_days"] = float(d.sum()) / delayed if delayed else 0.0


def _stranded(r: _Run) -> None:
    """Stranded (7+), long-stay (14+) and super-stranded (21+ days) patients in acute beds at midnight."""
    rec = r.rec
    start, end = rec["bed_start"], rec["acute_end"]
    for d in STRANDED_DAYS:
        s = start + d
        s = np.where(np.isnan(end) | (end > s), s, np.nan)  # counted from day d of the stay until they leave
        mid, _ = r.census(s, end)
        r.daily[f"stranded_{d}"] = mid
        r.k[f"stranded_{d}_per_day"] = float(mid.mean())


def _pathways(r: _Run) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Discharges, queues and waits per pathway; returns each pathway's wait-for-a-place intervals."""
    k, daily, rec, T, D = r.k, r.daily, r.rec, r.T, r.D
    acute_end = rec["acute_end"]
    day_left = np.floor(acute_end)
    placed = rec["initial_stage"] == Stage.IN_SERVICE  # already in a service on the snapshot: never left acute
    left_in = (acute_end >= 0) & (acute_end < T) & ~placed
    waits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for p in PATHWAYS:
        mine = rec.on_pathway(p)
        m = left_in & mine
        daily[f"discharges_{p}"] = np.bincount(day_left[m].astype(int), minlength=D)[:D]
        k[f"discharges_{p}"] = float(m.sum())
        if p == "P0":
            continue
        s, e = np.where(mine, rec["wait_start"], np.nan), rec["slot_granted"]
        waits[p] = (s, e)
        q = Level.from_intervals(s, e, T)
        daily[f"queue_{p}"] = q.daily_mean(D)
        k[f"queue_mean_{p}"] = q.mean(0.0, T)
        ready_in = ~np.isnan(s) & (s >= 0) & (s < T) & ~rec["initial"]
        w = _open_end(e[ready_in], T) - s[ready_in]
        k[f"wait_mean_days_{p}"] = float(w.mean()) if len(w) else 0.0
        mid, _ = r.census(np.where(mine, rec["wait_start"], np.nan), acute_end)
        daily[f"delayed_{p}"] = mid
        k[f"delayed_per_day_{p}"] = float(mid.mean())
    ends = rec["ds_end"]
    ended = (ends >= 0) & (ends < T)
    k["deaths"] = float((ended & (rec["outcome"] == Outcome.DEATH)).sum())
    k["long_term_care_placements"] = float((ended & (rec["outcome"] == Outcome.LONG_TERM_CARE)).sum())
    k["home_care_starts"] = float((ended & (rec["outcome"] == Outcome.HOME_WITH_CARE)).sum())
    k["readmitted_from_community"] = float((ended & (rec["outcome"] == Outcome.READMITTED)).sum())
    left = (acute_end >= 0) & (acute_end < T)
    k["deaths_in_hospital"] = float((left & (rec["exit"] == AcuteExit.DIED)).sum())
    k["same_day_discharges"] = float((left & (rec["exit"] == AcuteExit.SAME_DAY)).sum())
    return waits


def _step_up(r: _Run) -> None:
    """Step-up referrals from the community: referrals, starts, waits at home and those never placed."""
    k, rec, T = r.k, r.rec, r.T
    su = rec["step_up"] >= 0
    arrival, granted, gave_up = rec["arrival"], rec["slot_granted"], rec["gave_up"]
    made = su & (arrival >= 0) & (arrival < T)
    k["step_up_referrals"] = float(made.sum())
    r.daily["step_up_referrals"] = np.bincount(np.floor(arrival[made]).astype(int), minlength=r.D)[:r.D]
    k["step_up_starts"] = float((su & (granted >= 0) & (granted < T)).sum())
    end = np.fmin(granted, gave_up)  # whichever happened (NaN: still waiting)
    k["step_up_waiting_mean"] = Level.from_intervals(np.where(su, arrival, np.nan), end, T).mean(0.0, T)
    w = _open_end(end[made], T) - arrival[made]
    k["step_up_wait_mean_days"] = float(w.mean()) if len(w) else 0.0
    out = (gave_up >= 0) & (gave_up < T)
    k["step_up_refused"] = float((out & (rec["cancelled"] == Cancelled.REFUSED)).sum())
    k["step_up_admitted"] = float((out & (rec["cancelled"] == Cancelled.ADMITTED)).sum())
    k["step_up_not_placed_pct"] = _pct(~np.isnan(gave_up[made]))


def _services(r: _Run) -> None:
    """Occupancy, capacity, utilisation and admissions of each downstream service."""
    k, daily, rec, T, D = r.k, r.daily, r.rec, r.T, r.D
    svc = rec["service"]
    placed = rec["initial_stage"] == Stage.IN_SERVICE
    services = {n: v for pw in r.sc.pathways.values() for n, v in pw.services.items()}
    for i, name in enumerate(r.raw.service_names):
        m = svc == i
        lev = rec.level("slot_granted", "ds_end", T, service=i)
        capl = Level.from_steps(*r.raw.capacity[name])
        daily[f"service_{name}_occupied"] = lev.daily_mean(D)
        daily[f"service_{name}_capacity"] = capl.daily_mean(D)
        extra = r.raw.extra_capacity.get(name)
        # places a service provides on its schedule; places added by escalation are priced by their action
        daily[f"service_{name}_scheduled"] = daily[f"service_{name}_capacity"] - (
            Level.from_steps(*extra).daily_mean(D) if extra is not None else 0.0)
        k[f"service_{name}_occupied_mean"] = lev.mean(0.0, T)
        cap_mean = capl.mean(0.0, T)
        use = k[f"service_{name}_occupied_mean"]
        g = rec["slot_granted"][m & ~placed]
        k[f"service_{name}_admissions"] = float(((g >= 0) & (g < T)).sum())
        spec = services[name]
        if spec.capacity_unit == "visits" and spec.visits is not None:
            # visits a day in use, sampled hourly; utilisation is against visits a day available
            hours = np.arange(D * 24, dtype=float) / 24.0 + 1.0 / 48.0
            load = visit_load(np.where(m, rec["slot_granted"], np.nan), rec["ds_end"], rec["package_len"],
                              spec.visits.start, spec.visits.end, at=hours)
            daily[f"service_{name}_visits"] = load.reshape(D, 24).mean(axis=1)
            k[f"service_{name}_visits_mean"] = use = float(load.mean())
        k[f"service_{name}_utilisation_pct"] = (100.0 * use / cap_mean if np.isfinite(cap_mean) and cap_mean > 0
                                                else float("nan"))


def _electives(r: _Run) -> None:
    k, daily, rec, T, D = r.k, r.daily, r.rec, r.T, r.D
    arr = rec["arrival"]
    due = rec["elective"] & (arr >= 0) & (arr < T)
    cancelled = rec["cancelled"]
    k["electives_scheduled"] = float(due.sum())
    k["electives_admitted"] = float((due & (cancelled == Cancelled.NOT)).sum())
    k["electives_cancelled_no_bed"] = float((due & (cancelled == Cancelled.NO_BED)).sum())
    k["electives_cancelled_escalation"] = float((due & (cancelled == Cancelled.ESCALATION)).sum())
    day = np.floor(arr[due]).astype(int)
    daily["electives_admitted"] = np.bincount(day[cancelled[due] == Cancelled.NOT], minlength=D)[:D]
    daily["electives_cancelled"] = np.bincount(day[cancelled[due] != Cancelled.NOT], minlength=D)[:D]


def _opel(r: _Run) -> None:
    """Days at each OPEL level, and the highest level each day."""
    log = r.raw.opel_log or [(r.raw.t0, 1)]
    opel = Level.from_steps(np.array([t for t, _ in log]), np.array([float(v) for _, v in log]))
    for level in (1, 2, 3, 4):
        r.k[f"opel_days_level_{level}"] = float(Level.combine([opel], lambda x, lv=level: (x == lv) * 1.0)
                                                .mean(0.0, r.T) * r.T)
    day_max = opel.at(np.arange(r.D, dtype=float))
    for t, v in log:
        if 0.0 <= t < r.T:
            day_max[int(t)] = max(day_max[int(t)], v)
    r.daily["opel_level"] = day_max


def _escalation_beds(r: _Run, occ: Level) -> None:
    """Escalation beds opened and used."""
    extra = r.raw.extra_capacity.get("acute")
    if extra is None:
        r.k["escalation_bed_days_opened"] = r.k["escalation_bed_days_used"] = 0.0
        r.daily["escalation_beds_open"] = np.zeros(r.D)
        return
    esc = Level.from_steps(*extra)
    cap = Level.from_steps(*r.raw.capacity["acute"])
    used = Level.combine([occ, cap, esc], lambda o, c, e: np.clip(o - (c - e), 0.0, e))
    r.k["escalation_bed_days_opened"] = esc.mean(0.0, r.T) * r.T
    r.k["escalation_bed_days_used"] = used.mean(0.0, r.T) * r.T
    r.daily["escalation_beds_open"] = esc.daily_mean(r.D)


def action_spells(raw: RawRun, i: int, t_end: float) -> list[tuple[float, float]]:
    """[started, stopped) spells of action ``i`` (one still on ends at ``t_end``)."""
    spells: list[tuple[float, float]] = []
    on: float | None = None
    for t, j, e in raw.action_log:
        if j != i:
            continue
        if e == "started":
            on = t
        elif e == "stopped" and on is not None:
            spells.append((on, t))
            on = None
    if on is not None:
        spells.append((on, t_end))
    return spells


def _escalation_actions(r: _Run) -> None:
    """Cost and count of actions in force, each action's daily share of time in force, escalation-bed spells."""
    k, T = r.k, r.T
    cost = 0.0
    started = 0
    openings = 0
    spells_done: list[float] = []
    actions = r.sc.escalation.actions if r.sc.escalation is not None else []
    edges = np.arange(r.D + 1, dtype=float)
    for i, action in enumerate(actions):
        spells = action_spells(r.raw, i, T)
        on_days = np.zeros(r.D)
        beds = action.kind == "add_capacity" and action.target == "acute"
        for a, b in spells:
            if 0.0 <= a < T:
                cost += action.cost_one_off
                started += 1
                openings += beds
                if beds and b < T:
                    spells_done.append(b - a)
            active = max(0.0, min(b, T) - max(a, 0.0))
            cost += active * (action.cost_per_day + action.cost_per_place_day * (action.amount or 0))
            on_days += np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0.0, 1.0)
        r.daily[f"escalation_action_{i}"] = on_days
    k["escalation_cost"] = cost
    k["escalation_actions_started"] = float(started)
    if any(a.kind == "add_capacity" and a.target == "acute" for a in actions):
        k["escalation_bed_openings"] = float(openings)
        # undefined (NaN) when no spell both opened and closed in the window
        k["escalation_bed_spell_median_days"] = float(np.median(spells_done)) if spells_done else float("nan")


#: The parts of ``total_cost``: each is priced once, by one scenario field.
COST_PARTS = ("cost_acute_delay", "cost_acute_occupied", "cost_acute_capacity", "cost_non_elective",
              "cost_service_care", "service_capacity_cost", "escalation_cost", "cost_fixed", "cost_investment")


def _costs(r: _Run, acute_dtoc_daily: np.ndarray) -> None:
    k, daily, sc = r.k, r.daily, r.sc
    services = [(name, svc) for pw in sc.pathways.values() for name, svc in pw.services.items()]
    k["service_capacity_cost"] = float(sum(svc.unit_cost_per_day * float(daily[f"service_{name}_scheduled"].sum())
                                           for name, svc in services if svc.unit_cost_per_day > 0))
    c = sc.costs
    k["cost_acute_delay"] = float(acute_dtoc_daily.sum()) * c.acute_delay_per_day
    k["cost_service_care"] = float(sum(svc.cost_per_occupied_day * float(daily[f"service_{name}_occupied"].sum())
                                       for name, svc in services))
    k["cost_acute_occupied"] = float(daily["acute_occupied_mean"].sum()) * c.acute_occupied_bed_day
    open_beds = daily["acute_beds"] - daily.get("escalation_beds_open", 0.0)  # escalation beds: priced by the action
    k["cost_acute_capacity"] = (float(np.asarray(open_beds, dtype=float).sum()) * c.acute_available_bed_day
                                if c.acute_available_bed_day else 0.0)  # unpriced 'unlimited' beds cost nothing
    k["cost_non_elective"] = float(np.sum(daily["admissions"])) * c.non_elective_admission
    k["cost_fixed"] = r.D * c.fixed_per_day
    k["cost_investment"] = c.investment_one_off
    k["total_cost"] = sum(k[name] for name in COST_PARTS)


def analyse(raw: RawRun, sc: Scenario, replication: int, seed: int, scenario_id: str, *,
            keep_patients: bool = True) -> ReplicationResult:
    """Turn one replication's raw stamps into KPIs, a daily table and stay records, family by family."""
    rec = add_delay_columns(build_records(raw), sc)
    r = _Run(raw, sc, rec, segments(rec), raw.t1, int(round(raw.t1)))
    days = np.arange(r.D, dtype=float)
    start = sc.simulation.start_date
    r.daily["date"] = np.array([start + dt.timedelta(days=int(d)) for d in days], dtype="datetime64[D]")
    r.daily["day"] = days.astype(int)
    if sc.calendar.bank_holidays is not None:  # only when asked, so older scenarios' daily tables are unchanged
        hol = bank_holidays(sc.calendar, start, 0.0, raw.t1)
        r.daily["bank_holiday"] = np.isin(days.astype(int), sorted(hol)).astype(float)
    occ = _occupancy(r)
    _front_door(r)
    acute_dtoc = _dtoc(r)
    _nctr(r)
    _drd(r)
    _stranded(r)
    waits = _pathways(r)
    _at_home_91(r)
    _services(r)
    if sc.step_up:
        _step_up(r)
    _electives(r)
    _opel(r)
    _escalation_beds(r, occ)
    _escalation_actions(r)
    _costs(r, acute_dtoc)
    frame = pd.DataFrame(r.daily)
    frame.insert(0, "replication", replication)
    frame.insert(0, "seed", seed)
    frame.insert(0, "scenario_id", scenario_id)
    model_events = int(sum(np.count_nonzero(~np.isnan(rec[f])) for f in (
        "arrival", "bed_start", "mffd", "assess_start", "assess_end", "slot_granted", "acute_end", "ds_end")))
    return ReplicationResult(
        replication=replication,
        seed=seed,
        kpis=r.k,
        daily=frame,
        patients=rec.frame(replication, seed, scenario_id) if keep_patients else None,
        checks=check_records(rec, raw, sc, r.segs),
        escalation=escalation_log(raw, sc, replication, seed, scenario_id),
        nodes=node_daily(rec, sc, r.daily, waits, Tag(r.T, r.D, replication, seed, scenario_id)),
        kernel_events=raw.kernel_events,
        model_events=model_events,
    )
