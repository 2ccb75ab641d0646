"""Plain-text tables for the terminal: the same labels, units, rounding and verdict words as the HTML reports.

Labels are never cut: the label column is as wide as its longest label.  Money is rounded for a board (£k, £m).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from flowsim.report.format import fmt, fmt_ci, kpi_label
from flowsim.results.kpi import Modelled, kpi_applies, kpi_info
from flowsim.scenario.schema import COST_FIELDS, Scenario

#: The terminal's headline KPIs, in order; those a scenario does not model are left out (``kpi_applies``).
HEADLINE = [
    "admissions_per_day", "acute_beds_mean", "acute_occupied_mean", "occupancy_mean_pct", "occupancy_p95_pct",
    "days_over_92_pct", "days_over_95_pct", "days_at_100_pct",
    "ed_boarding_mean", "ed_wait_mean_hours", "ed_4h_breach_pct", "ed_12h_breaches",
    "delayed_patients_per_day", "delayed_per_100k", "delayed_acute_per_day", "dtoc_delayed_days_per_quarter",
    "dtoc_rate_per_100k", "dtoc_pct", "delayed_bed_days",
    "delayed_per_day_assessment", "delayed_per_day_P1", "delayed_per_day_P2", "delayed_per_day_P3",
    "delayed_per_day_care_home", "delayed_per_day_nhs", "delayed_per_day_social_care", "delayed_per_day_both",
    "queue_mean_P1", "wait_mean_days_P1", "queue_mean_P2", "wait_mean_days_P2", "queue_mean_P3", "wait_mean_days_P3",
    "discharges_P0", "discharges_P1", "discharges_P2", "discharges_P3", "readmissions", "deaths",
    "long_term_care_placements",
]
ELECTIVE_KPIS = ["electives_scheduled", "electives_admitted", "electives_cancelled_no_bed",
                 "electives_cancelled_escalation"]
ESCALATION_KPIS = ["opel_days_level_1", "opel_days_level_2", "opel_days_level_3", "opel_days_level_4",
                   "escalation_actions_started", "escalation_bed_days_opened", "escalation_bed_days_used",
                   "escalation_cost"]
COST_KPIS = ["cost_acute_delay", "cost_acute_occupied", "cost_acute_capacity", "cost_non_elective",
             "cost_service_care", "service_capacity_cost", "cost_fixed", "cost_investment", "total_cost"]


def headline(sc: Scenario) -> list[str]:
    """The KPIs worth a line in the terminal for this scenario: only what its mode and sections model."""
    names = list(HEADLINE)
    if sc.mode == "pathway_only":  # services' use instead of the front door
        names += [f"service_{s}_utilisation_pct" for pw in sc.pathways.values() for s in pw.services]
    names += ELECTIVE_KPIS + ESCALATION_KPIS
    services = [s for pw in sc.pathways.values() for s in pw.services.values()]
    priced = any(getattr(sc.costs, f) for f in COST_FIELDS)
    if priced or any(s.unit_cost_per_day or s.cost_per_occupied_day for s in services):
        names += COST_KPIS
    modelled = Modelled.of(sc)
    return [n for n in names if kpi_applies(n, modelled)]


def kpi_table_text(table: pd.DataFrame, names: Sequence[str], scenario: Mapping[str, Any] | None = None) -> str:
    """KPI, mean, 95% CI and unit, one line each, for the KPIs in ``names`` that ``table`` (a summary) has."""
    rows = []
    for name in names:
        if name not in table.index:
            continue
        row = table.loc[name]
        unit = kpi_info(name).unit
        ci = fmt_ci(row["ci_low"], row["ci_high"], unit)
        rows.append((kpi_label(name, scenario), fmt(row["mean"], unit), f"[{ci}]" if ci else "", unit))
    width = max([len("KPI"), *(len(r[0]) for r in rows)])
    ci_width = max([len("95% CI"), *(len(r[2]) for r in rows)])
    lines = [f"{'KPI':<{width}} {'mean':>10}  {'95% CI':<{ci_width}}  unit", "-" * (width + ci_width + 26)]
    lines += [f"{label:<{width}} {mean:>10}  {ci:<{ci_width}}  {unit}" for label, mean, ci, unit in rows]
    return "\n".join(lines)


def periods_text(periods: pd.DataFrame, kind: str = "NHS quarter") -> str:
    """Delayed days per period with their CI, and both BCF measures: delayed days per 100,000 aged 18+ in the
    period (the 2016/17 metric) and delayed patients a day per 100,000 aged 18+ (the 2017 target's unit)."""
    lines = [f"DTOC delayed days by {kind} (midnight census, acute + community):",
             f"  {'period':<18} {'days':>4} {'delayed days':>13}  {'95% CI':<17} {'per 100k 18+':>13} "
             f"{'a day per 100k 18+ (BCF target unit)':>37}"]
    for _, q in periods.iterrows():
        ci = fmt_ci(q["ci_low"], q["ci_high"])
        per_day = q.get("delayed_per_day_per_100k", math.nan)
        lines.append(f"  {q['period']!s:<18} {int(q['days']):>4} {fmt(q['delayed_days']):>13}  "
                     f"{'[' + ci + ']' if ci else '':<17} {fmt(q['rate_per_100k']):>13} {fmt(per_day):>37}")
    return "\n".join(lines)
