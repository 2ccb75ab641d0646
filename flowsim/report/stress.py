"""The STRESS-DES reporting checklist (Monks et al. 2019, Journal of Simulation 13(1):55-67), filled from the
scenario *as run* and the run's settings.

Every fact comes from the resolved scenario (``extends``, ``--set`` and warm-up choices applied) and the run's
own records, never from prose in the scenario file, so the checklist cannot disagree with what was simulated;
items only the analyst can write are marked as such in the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowsim.report.format import num
from flowsim.report.view import Cell, Rich, Row, Span, Table, columns, data, todo
from flowsim.scenario.provenance import describe_overrides, format_value, initial_conditions

STATUS_TEXT = {"auto": "Filled automatically", "partial": "Partly filled: analyst to add",
               "analyst": "Analyst to complete"}


@dataclass
class StressFacts:
    """What a report knows for the checklist: the scenario as run (plain data) and the study's settings."""

    scenario: Mapping[str, Any]
    purpose: str
    outputs: str
    experiment: Rich
    scenario_logic: Rich
    replications: str
    estimation: str
    seed: str
    versions: Mapping[str, str]
    execution: str
    scenario_ids: str
    warmup_method: str = ""
    extra_inputs: list[str] = field(default_factory=list)


def _services(sc: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(pathway, label, capacity) of every downstream service."""
    out = []
    for p, pw in (sc.get("pathways") or {}).items():
        for name, svc in ((pw or {}).get("services") or {}).items():
            svc = svc or {}
            out.append((str(p), str(svc.get("label") or str(name).replace("_", " ")),
                        format_value(svc.get("capacity"))))
    return out


def _distributions(obj: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(obj, dict):
        if isinstance(obj.get("dist"), str):
            found.add(obj["dist"])
        for v in obj.values():
            found |= _distributions(v)
    elif isinstance(obj, list):
        for v in obj:
            found |= _distributions(v)
    return found


def _logic(sc: Mapping[str, Any]) -> str:
    full = sc.get("mode", "full") != "pathway_only"
    assess = sc.get("assessment") or {}
    acute = (sc.get("acute") or {}).get("beds")
    return (f"Discrete-event simulation (SimPy, process-based) in {'full' if full else 'pathway-only'} mode: "
            + (f"{format_value(acute)} acute beds" if full else "no acute stage (medically fit patients arrive "
                                                                "from hospital and wait in acute beds)")
            + (f"; a discharge assessment team of {format_value(assess.get('staff'))}" if assess else "")
            + f"; {len(_services(sc))} downstream services"
            + ("; elective admissions compete for beds" if sc.get("electives") else "")
            + ("; OPEL escalation levels trigger actions" if sc.get("escalation") else "")
            + (f"; {len(sc.get('disruptions') or [])} scheduled disruption(s)" if sc.get("disruptions") else "")
            + ".")


def _objectives(f: StressFacts) -> list[tuple[str, str, Rich, str]]:
    return [
        ("Objectives", "1.1 Purpose of the model", Rich.of(f.purpose + " ", todo(
            "the decision the board is asked to take and why simulation was chosen.")), "partial"),
        ("Objectives", "1.2 Model outputs", Rich.of(f.outputs), "auto"),
        ("Objectives", "1.3 Experimentation aims", f.experiment,
         "partial" if any(s.style == "todo" for s in f.experiment.spans) else "auto"),
    ]


def _logic_rows(f: StressFacts) -> list[tuple[str, str, Rich, str]]:
    sc = f.scenario
    full = sc.get("mode", "full") != "pathway_only"
    electives = bool(sc.get("electives"))
    cohorts = sc.get("cohorts") or {}
    cohort_text = ", ".join(f"{k} ({num((v or {}).get('share')):.0%})" for k, v in cohorts.items())
    if not full:
        cohort_text = ", ".join(f"{d.get('locality') or 'all'} {d.get('pathway')}" for d in sc.get("demand") or [])
    svc_text = "; ".join(f"{p} {label} ({cap})" for p, label, cap in _services(sc)) or "none"
    assess = sc.get("assessment") or {}
    logic = f.scenario_logic or Rich.of("A single scenario. ", todo(
        "how this scenario differs from current practice, if it is an option."))
    return [
        ("Logic", "2.1 Base model overview diagram", Rich.of(
            "Patients flow: decision to admit (ED) -> acute G&A bed -> medically fit -> discharge assessment -> "
            "pathway P0 (home), P1 (home with support), P2 (intermediate care bed) or P3 (nursing / "
            "discharge-to-assess bed) -> home, long-term care or death. ", todo("a diagram for the paper.")),
         "partial"),
        ("Logic", "2.2 Base model logic", Rich.of(_logic(sc)), "auto"),
        ("Logic", "2.3 Scenario logic", logic, "auto" if f.scenario_logic else "partial"),
        ("Logic", "2.4 Algorithms", Rich.of(
            "Non-elective arrivals: a non-homogeneous Poisson process (hourly rates by month, weekday and hour, by "
            "inversion of the cumulative intensity)" + ("; electives: a Poisson number each weekday" if electives
                                                        else "")
            + f". Durations sampled from: {', '.join(sorted(_distributions(dict(sc)))) or 'none'}. Routing by the "
            "cohorts' pathway mix and the services' outcome probabilities."), "auto"),
        ("Logic", "2.5.1 Entities", Rich.of(
            f"Patients in {len(cohorts) or len(sc.get('demand') or [])} "
            f"{'cohort' if full else 'demand stream'}(s): {cohort_text or 'none'}."), "auto"),
        ("Logic", "2.5.2 Activities", Rich.of(
            "Wait in ED for a bed, acute stay until medically fit, discharge assessment, transfer, stay in a "
            "downstream service, long-term care placement." if full else
            "Wait in an acute bed for a place, discharge assessment, stay in a downstream service, long-term care "
            "placement."), "auto"),
        ("Logic", "2.5.3 Resources", Rich.of(
            (f"Acute G&A beds: {format_value((sc.get('acute') or {}).get('beds'))}. " if full else "")
            + (f"Assessment staff: {format_value(assess.get('staff'))}. " if assess else "")
            + f"Downstream services (places): {svc_text}."), "auto"),
        ("Logic", "2.5.4 Queues", Rich.of(
            "One first-come, first-served queue in front of each capacity pool (acute beds, assessment, each "
            "pathway's services); patients wait in their current bed, which is what makes a delayed transfer."),
         "auto"),
        ("Logic", "2.5.5 Entry and exit points", Rich.of(
            ("Enter: non-elective admissions" + (", elective admissions" if electives else "") + ", readmissions"
             if full else "Enter: medically fit patients from hospital, by pathway and locality")
            + ". Leave: home, long-term care or death; the results window runs from "
            f"{(sc.get('simulation') or {}).get('start_date')} for "
            f"{(sc.get('simulation') or {}).get('duration_days', '?')} days."), "auto"),
    ]


def _data_rows(f: StressFacts) -> list[tuple[str, str, Rich, str]]:
    sc = f.scenario
    notes = ((sc.get("costs") or {}).get("notes")) or {}
    sourced = sum(1 for v in notes.values() if "ASSUMPTION" not in str(v))
    costs = (f"Costs: {len(notes)} noted ({sourced} with a source, {len(notes) - sourced} assumed); see the cost "
             "table. " if notes else "No cost sources recorded in the scenario. ")
    changes = describe_overrides(sc) + f.extra_inputs
    inputs = ("Every input is in the resolved scenario file (scenario.yaml) with every default spelled out; "
              f"scenario id {f.scenario_ids}.")
    if changes:
        inputs += " Changed for this run from the scenario file: " + "; ".join(changes) + "."
    return [
        ("Data", "3.1 Data sources", Rich.of(costs, todo(
            "the sources of arrival rates, lengths of stay, pathway mix and capacities.")), "partial"),
        ("Data", "3.2 Pre-processing", Rich.of(todo("how the source data were cleaned and turned into the inputs.")),
         "analyst"),
        ("Data", "3.3 Input parameters", Rich.of(inputs), "auto"),
        ("Data", "3.4 Assumptions", Rich.of(
            f"{len(sc.get('assumptions') or [])} stated assumption(s), with the values they quote as run, are "
            "listed in the assumptions section; cost figures are marked with their source or ASSUMPTION."), "auto"),
    ]


def _experiment_rows(f: StressFacts) -> list[tuple[str, str, Rich, str]]:
    sim = f.scenario.get("simulation") or {}
    initial = initial_conditions(f.scenario) + (f" Warm-up {f.warmup_method}." if f.warmup_method else "")
    return [
        ("Experimentation", "4.1 Initialisation", Rich.of(initial), "auto"),
        ("Experimentation", "4.2 Run length", Rich.of(
            f"{sim.get('duration_days', '?')} days reported, from {sim.get('start_date')}, after the warm-up (a "
            "terminating study of the period, not a steady state)."), "auto"),
        ("Experimentation", "4.3 Estimation approach", Rich.of(f.replications + " " + f.estimation), "auto"),
    ]


def _implementation_rows(f: StressFacts) -> list[tuple[str, str, Rich, str]]:
    v = f.versions
    return [
        ("Implementation", "5.1 Software or programming language", Rich.of(
            f"flowsim {v.get('flowsim', '?')} (Python {v.get('python', '?')}, SimPy {v.get('simpy', '?')}, NumPy "
            f"{v.get('numpy', '?')}, pandas {v.get('pandas', '?')}); full list in the reproducibility section."),
         "auto"),
        ("Implementation", "5.2 Random sampling", Rich.of(
            f"Base seed {f.seed}. NumPy PCG64 generators, one named stream per activity, seeded from (seed, "
            "replication, stream name); replication r uses the same streams in every scenario (common random "
            "numbers)."), "auto"),
        ("Implementation", "5.3 Model execution", Rich.of(f.execution), "auto"),
        ("Implementation", "5.4 System specification", Rich.of(todo(
            "the computer and operating system used (results do not depend on them: the same seed gives the same "
            "numbers).")), "analyst"),
        ("Code access", "6.1 Computer model sharing statement", Rich.of(
            f"flowsim {v.get('flowsim', '?')}, MIT licence. ", todo(
                "where the code and the scenario files can be obtained (repository and commit).")), "partial"),
    ]


def stress_table(f: StressFacts) -> tuple[Table, int, int]:
    """The checklist as a table, with the number of items filled automatically and the number in all."""
    rows = _objectives(f) + _logic_rows(f) + _data_rows(f) + _experiment_rows(f) + _implementation_rows(f)
    out: list[Row] = []
    last = ""
    for group, item, text, status in rows:
        if group != last:
            out.append(Row(group=group))
            last = group
        out.append(Row((Cell(value=item), Cell(rich=text), Cell(rich=Rich.of(Span(STATUS_TEXT[status], "badge",
                                                                                   status)))),
                       data=data(status=status)))
    table = Table(columns(*("Item", "This study", "Status"), numeric_from=99), out, id="stress-des-table",
                  klass="stress")
    return table, sum(1 for r in rows if r[3] == "auto"), len(rows)
