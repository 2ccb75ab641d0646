"""The run report's view-model: one scenario, its headline against the national standards, its charts.

Only what the scenario models is judged: a pathway-only run has no front door or acute beds, so it gets no ED or
G&A verdicts and no occupancy chart (the KPI registry's ``kpi_applies`` decides).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from flowsim.report.common import (
    assumptions,
    cost_table,
    created,
    day,
    day_before,
    dtoc_target_per_day,
    execution_text,
    footer,
    how_to_read,
    kpi_groups,
    outputs_text,
    repro,
    targets,
)
from flowsim.report.figures import dtoc_target_figure, png_bytes
from flowsim.report.format import fmt, fmt_ci, kpi_label, money, num, verdict
from flowsim.report.sources import RunSource
from flowsim.report.stress import StressFacts, stress_table
from flowsim.report.view import Cell, Masthead, Page, Rich, Row, Table, b, badge, bullets, columns, data, todo
from flowsim.results.kpi import Modelled, kpi_applies
from flowsim.scenario.provenance import describe_overrides, title

#: What a board reads first, in this order (those a run lacks or does not model are skipped).
RUN_HEADLINE = ["delayed_patients_per_day", "delayed_per_100k", "dtoc_delayed_days_per_quarter", "delayed_bed_days",
                "occupancy_mean_pct", "days_over_92_pct", "ed_4h_breach_pct", "ed_12h_breaches", "total_cost"]


def standards(sc: Mapping[str, Any]) -> dict[str, tuple[str, float, str]]:
    """KPI -> (standard in words, threshold on the KPI, 'at most' / 'at least'), for what the scenario models."""
    t = targets(sc)
    out: dict[str, tuple[str, float, str]] = {
        "delayed_per_100k": (f"at most {t['delayed_per_100k']:g} (BCF)", t["delayed_per_100k"], "at most"),
        "occupancy_mean_pct": (f"at most {t['occupancy_pct']:g}%", t["occupancy_pct"], "at most"),
        "ed_4h_breach_pct": (f"at most {100 - t['ed_within_4h_pct']:g}% ({t['ed_within_4h_pct']:g}% within 4 h)",
                             100 - t["ed_within_4h_pct"], "at most"),
    }
    per_day = dtoc_target_per_day(sc)
    if per_day is not None:
        out["delayed_patients_per_day"] = (f"at most {per_day:.1f} (BCF)", per_day, "at most")
    modelled = Modelled.of(dict(sc))
    return {k: v for k, v in out.items() if kpi_applies(k, modelled)}


def _stats(kpis: Mapping[str, Any], name: str) -> tuple[float, float, float]:
    k = kpis.get(name) or {}
    return num(k.get("mean")), num(k.get("ci_low")), num(k.get("ci_high"))


def key_messages(src: RunSource) -> list[Rich]:
    """Plain-English findings, each judged by its interval, only for what the scenario models."""
    kpis = src.summary.get("kpis") or {}
    sc = src.scenario
    modelled = Modelled.of(sc)
    t = targets(sc)
    msgs: list[Rich | str] = []
    m, lo, hi = _stats(kpis, "delayed_patients_per_day")
    target = dtoc_target_per_day(sc)
    if math.isfinite(m):
        parts: list[Any] = ["On average ", b(fmt(m)),
                            f" patients a day were delayed ({fmt_ci(lo, hi) or 'no interval'})"]
        if target is not None:
            parts += [f", against the Better Care Fund target of {fmt(target)} a day ({t['delayed_per_100k']:g} per "
                      "100,000 adults): ", badge(verdict(lo, hi, target, "at most"))]
        msgs.append(Rich.of(*parts, "."))
    m, lo, hi = _stats(kpis, "occupancy_mean_pct")
    if math.isfinite(m) and kpi_applies("occupancy_mean_pct", modelled):
        over = _stats(kpis, "days_over_92_pct")[0]
        msgs.append(Rich.of("G&A bed occupancy averaged ", b(f"{fmt(m)}%"), f" ({fmt_ci(lo, hi)}) against the "
                            f"{t['occupancy_pct']:g}% ceiling: ", badge(verdict(lo, hi, t["occupancy_pct"], "at most")),
                            f"; occupancy was above 92% on {fmt(over)}% of days." if math.isfinite(over) else "."))
    m, lo, hi = _stats(kpis, "ed_4h_breach_pct")
    if math.isfinite(m) and kpi_applies("ed_4h_breach_pct", modelled):
        msgs.append(Rich.of(b(f"{fmt(m)}%"), f" of admitted patients waited more than 4 hours for a bed "
                            f"({fmt_ci(lo, hi)}); the standard is at least {t['ed_within_4h_pct']:g}% within 4 hours: ",
                            badge(verdict(lo, hi, 100 - t["ed_within_4h_pct"], "at most")), "."))
    m, lo, hi = _stats(kpis, "total_cost")
    if math.isfinite(m) and m:
        msgs.append(Rich.of("The costs the model prices total ", b(money(m)), f" ({fmt_ci(lo, hi, 'GBP')}) over the "
                            "period."))
    changes = describe_overrides(sc)
    if changes:
        msgs.append(Rich.of(b(f"This run changed {len(changes)} setting{'s' if len(changes) != 1 else ''} of the "
                              "scenario file"), " (listed under Assumptions): the results are for the scenario as "
                            "run, not as written."))
    if src.summary.get("invariant_violations"):
        msgs.append(Rich.of(todo("the run reported internal check failures; treat the results with caution and "
                                 "report them.")))
    msgs.append("These are model estimates under the assumptions listed in this report, not forecasts.")
    return bullets(msgs)


def headline_table(src: RunSource) -> Table:
    """The headline measures with their interval and, where there is one, the standard and the verdict."""
    kpis = src.summary.get("kpis") or {}
    stds = standards(src.scenario)
    modelled = Modelled.of(src.scenario)
    rows = []
    for k in RUN_HEADLINE:
        if k not in kpis or not kpi_applies(k, modelled):
            continue
        info = kpis[k]
        mean, low, high = _stats(kpis, k)
        if k == "total_cost" and not mean:
            continue
        unit = str(info.get("unit") or "")
        std = stds.get(k)
        rows.append(Row((Cell(value=str(info.get("label") or k), note=str(info.get("definition") or "")),
                         Cell(value=unit, klass="unit"), Cell(value=fmt(mean, unit), numeric=True, klass="mean"),
                         Cell(value=fmt_ci(low, high, unit), numeric=True, klass="ci"),
                         Cell(value=std[0] if std else ""),
                         Cell(badge=verdict(low, high, std[1], std[2]) if std else "")), data=data(kpi=k)))
    cols = columns("Measure", "Unit", "Average", "95% CI", "Standard", "Against the standard", numeric_from=2)
    cols[4:] = columns("Standard", "Against the standard", numeric_from=99)
    return Table(cols, rows, id="headline", caption="Headline results")


def _period_rows(periods: list[dict[str, Any]], last: str) -> list[Row]:
    return [Row((Cell(value=str(q.get("period"))), Cell(value=str(q.get("days")), numeric=True),
                 Cell(value=fmt(q.get("delayed_days")), numeric=True),
                 Cell(value=fmt_ci(q.get("ci_low"), q.get("ci_high")), numeric=True, klass="ci"),
                 Cell(value=fmt(q.get("delayed_per_day")), numeric=True),
                 Cell(value=fmt(q.get(last)), numeric=True))) for q in periods]


def dtoc_trajectory_png(src: RunSource) -> bytes | None:
    """Delayed patients each day (fan over replications) against the BCF target, as PNG; None without daily data.
    (The report's chart; the web app shows the same.)"""
    sc = src.scenario
    t = targets(sc)
    target = dtoc_target_per_day(sc)
    if src.daily is None or "delayed_midnight" not in src.daily.columns or src.daily.empty:
        return None
    label = (f"BCF target: {t['delayed_per_100k']:g} per 100,000 adults = {target:.1f} a day"
             if target is not None else "")
    return png_bytes(dtoc_target_figure(src.daily, title(sc), target, label))


def _dtoc(src: RunSource, page: Page) -> dict[str, Any]:
    png = dtoc_trajectory_png(src)
    fig = page.figure(png, "Line chart of delayed patients each day against the Better Care Fund target",
                      "Delayed transfers of care each day (midnight census, acute and community beds) against the "
                      "Better Care Fund target. The line is the average over replications; the shading shows how "
                      "much one winter could differ from another.",
                      missing="No daily results (daily.csv) to draw the trajectory from.")
    quarters = Table(columns("NHS quarter", "Days", "Delayed days", "95% CI", "Delayed a day",
                             ("Per 100,000 adults a day", "the BCF target's unit")),
                     _period_rows(list(src.summary.get("quarters") or []), "delayed_per_day_per_100k"),
                     caption="Delayed days by NHS quarter (the DTOC return counts each patient delayed at midnight "
                             "as one delayed day)")
    return {"figure": fig, "quarters": quarters}


#: Figures of today's national measures and of escalation actions: file name -> (alt text, caption).
TODAYS_MEASURES_FIGURES: dict[str, tuple[str, str]] = {
    "nctr.png": ("Stacked chart of patients not meeting the criteria to reside, by discharge pathway",
                 "Patients not meeting the criteria to reside at midnight (today's measure), by the pathway they "
                 "leave on, against the delayed transfers of care in acute beds among them (the 2016/17 SitRep "
                 "count). The gap is waiting to be declared ready for transfer, assessments done before "
                 "readiness and P0 patients waiting for transport or discharge hours."),
    "discharge_delays.png": ("Bar charts of discharges and delay days by Discharge Ready Date delay band",
                             "Discharge delays from the Discharge Ready Date, by band (0, 1, 2-3, 4-6, 7-13, 14-20, "
                             "21+ days, as NHS England publishes them): share of discharges and delay days, mean "
                             "over replications with 95% confidence intervals."),
    "escalation_actions.png": ("Step chart of the share of each day each escalation action was in force",
                               "Escalation actions in force: the share of each day each action was on, and the "
                               "escalation beds open. Long plateaus are actions opened and kept; a ragged line "
                               "would be an action switched on and off (flapping)."),
}


def _charts(src: RunSource, page: Page) -> dict[str, Any]:
    figs = dict(src.figures)
    beds = (src.scenario.get("acute") or {}).get("beds")
    finite_beds = beds is not None and beds != "unlimited"
    occ = None
    if src.mode != "pathway_only":
        occ = page.figure(figs.pop("occupancy.png", None), "Fan chart of acute beds occupied at midnight with the "
                          "92% occupancy line", "Acute (G&A) beds occupied at midnight: the line is the median "
                          "replication, the bands the middle 50% and 90% of replications"
                          + ("; red is the beds available and the dashed orange line 92% of them." if finite_beds
                             else "; beds are unlimited in this scenario, so there is no capacity line."),
                          missing="The occupancy chart is not available.")
    pathways = [page.figure(figs.pop("delays.png", None), "Stacked chart of delayed patients by reason",
                            "Delayed patients by what they are waiting for."),
                page.figure(figs.pop("queues.png", None), "Charts of places in use and queues for community services",
                            "Community services: places in use against capacity, and patients queueing for each "
                            "pathway.")]
    escalation = page.figure(figs.pop("timeline.png", None), "Timeline of OPEL escalation levels",
                             "Occupancy, delayed patients and the share of replications at each OPEL level over time.")
    figs.pop("occupancy.png", None)
    known = [(name, alt, caption) for name, (alt, caption) in TODAYS_MEASURES_FIGURES.items() if name in figs]
    more = [page.figure(figs.pop(name), alt, caption) for name, alt, caption in known]
    more += [page.figure(png, f"Chart {name}", name.removesuffix(".png").replace("_", " ") + ".")
             for name, png in sorted(figs.items())]
    return {"occupancy": occ, "pathways": pathways, "escalation": escalation, "more": more}


def _stress(src: RunSource) -> dict[str, Any]:
    s, sc = src.summary, src.scenario
    exp = src.experiment
    n = int(num(s.get("replications"))) if math.isfinite(num(s.get("replications"))) else 0
    rep = exp.get("replications") if isinstance(exp.get("replications"), dict) else None
    reps = (f"{n} replications, chosen by the confidence-interval method of Hoad et al. (2010) on "
            f"{rep.get('kpi')} within {num(rep.get('precision')):.0%}." if rep else f"{n} independent replications.")
    warm = exp.get("warmup") if isinstance(exp.get("warmup"), dict) else None
    facts = StressFacts(
        scenario=sc, purpose=f"Estimate delayed transfers of care, bed occupancy and ED waits for: {src.name}. "
        + str(sc.get("description") or "").strip(),
        outputs=outputs_text(list(applicable(src))),
        experiment=Rich.of("A single scenario; no experiments between scenarios. ", todo("the question this run "
                                                                                         "answers.")),
        scenario_logic=Rich(), replications=reps,
        estimation="Means with 95% confidence intervals over replications (kept inside each measure's range); "
                   "quarterly DTOC delayed days from the daily midnight census.",
        seed=str(s.get("seed")), versions={str(k): str(v) for k, v in (s.get("versions") or {}).items()},
        scenario_ids=str(s.get("scenario_hash")), execution=execution_text(s),
        warmup_method=f"chosen by MSER-5 on {warm.get('kpi')}" if warm else "")
    table, done, total = stress_table(facts)
    return {"table": table, "done": done, "total": total}


def applicable(src: RunSource) -> dict[str, Any]:
    """The run's KPIs that its scenario models (a pathway-only run's G&A occupancy is not a finding)."""
    modelled = Modelled.of(src.scenario)
    return {k: v for k, v in (src.summary.get("kpis") or {}).items() if kpi_applies(k, modelled)}


def all_measures(src: RunSource) -> Table:
    """Appendix: every measure the scenario models, grouped, with the spread of single runs."""
    kpis = applicable(src)
    rows: list[Row] = []
    for heading, names in kpi_groups(kpis):
        rows.append(Row(group=heading))
        for k in names:
            info = kpis[k] or {}
            unit = str(info.get("unit") or "")
            rows.append(Row((Cell(value=kpi_label(k, src.scenario), note=str(info.get("definition") or "")),
                             Cell(value=unit, klass="unit"), Cell(value=fmt(info.get("mean"), unit), numeric=True),
                             Cell(value=fmt_ci(info.get("ci_low"), info.get("ci_high"), unit), numeric=True,
                                  klass="ci"),
                             Cell(value=fmt(info.get("p5"), unit), numeric=True),
                             Cell(value=fmt(info.get("p95"), unit), numeric=True)), data=data(kpi=k)))
    return Table(columns("Measure", "Unit", "Average", "95% CI", "5th centile", "95th centile", numeric_from=2), rows,
                 id="all-kpis")


def _masthead(src: RunSource) -> Masthead:
    s = src.summary
    window = s.get("window") or {}
    vers = s.get("versions") or {}
    n = s.get("replications")
    start = ("Warm-up", f"{window.get('warmup_days', '?')} days") if not src.scenario.get("initial_state") else \
        ("Start", "from a snapshot (no warm-up)")
    period = (f"{day(window.get('start_date'))} to {day(day_before(window.get('end_date')))}"
              if window.get("start_date") else "")
    facts = [("Period", period), start, ("Replications", str(n)), ("Seed", str(s.get("seed"))),
             ("Scenario id", str(s.get("scenario_hash")))]
    return Masthead("Paper for the A&E Delivery Board · simulation of patient flow", src.name,
                    str(src.scenario.get("description") or "").strip() or "Simulation of one scenario.",
                    [(k, v) for k, v in facts if v],
                    f"Results produced {created(s.get('created'))} by flowsim {vers.get('flowsim', '?')}",
                    describe_overrides(src.scenario))


def build(src: RunSource) -> Page:
    """The run report's page."""
    s = src.summary
    n = int(num(s.get("replications"))) if math.isfinite(num(s.get("replications"))) else 0
    page = Page("run", f"{src.name}: simulation report", _masthead(src), footer=footer(src.directory))
    include = s.get("intervals_include") or {}
    page.add("summary", "Summary", messages=key_messages(src), headline=headline_table(src), how=how_to_read(
        n, standards=True, parameters=str(include.get("text")) if include.get("parameter_uncertainty") else None))
    page.add("dtoc", "Delayed transfers of care against the BCF target", **_dtoc(src, page))
    charts = _charts(src, page)
    page.add("occupancy", "Bed occupancy against 92%", figure=charts["occupancy"])
    page.add("pathways", "Where patients wait to leave hospital", figures=charts["pathways"])
    page.add("escalation", "Escalation (OPEL)", figure=charts["escalation"])
    page.add("more-charts", "More charts", figures=charts["more"])
    notes, costs = cost_table([(src.name, src.scenario)])
    page.add("assumptions", "Assumptions", assumptions=assumptions(src.scenario), cost_note=notes, costs=costs)
    page.add("stress-des", "Reporting checklist (STRESS-DES)", **_stress(src))
    window = s.get("window") or {}
    sim = src.scenario.get("simulation") or {}
    page.add("reproducibility", "Reproducibility", repro=repro(s.get("versions") or {}, [
        ("Scenario", src.name, False), ("Scenario id (hash)", str(s.get("scenario_hash")), True),
        ("Seed", str(s.get("seed")), True), ("Replications", str(n), False),
        ("Period", f"{day(window.get('start_date'))} for {sim.get('duration_days', '?')} days; warm-up "
                   f"{window.get('warmup_days', '?')} days", False),
        ("Results created", created(s.get("created")), False)], s.get("command"), src.directory))
    page.add("all-measures", "All measures", appendix=True, table=all_measures(src))
    months = _period_rows(list(s.get("months") or []), "occupancy_pct")
    month_heads = ["Month", "Days", "Delayed days", "95% CI", "Delayed a day", "Occupancy %"]
    if src.mode == "pathway_only":  # no acute beds to be occupied
        month_heads, months = month_heads[:-1], [Row(r.cells[:-1]) for r in months]
    page.add("months", "Month by month", appendix=True, table=Table(columns(*month_heads), months))
    return page.number()
