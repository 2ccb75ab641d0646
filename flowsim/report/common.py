"""Section content every report kind shares: how to read it, assumptions as run, costs and their sources, the
reproducibility record, and the facts of a scenario (its standards and targets) read from plain data."""

from __future__ import annotations

import datetime as dt
import math
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from flowsim import __version__
from flowsim.experiment.stats import INTERVAL_METHOD
from flowsim.report.format import fmt, num, sentence, service_labels
from flowsim.report.view import Cell, Column, Rich, Row, Span, Table, marked
from flowsim.results.kpi import KPI_GROUPS, OTHER_GROUP, kpi_group
from flowsim.scenario.provenance import describe_overrides, initial_conditions, render_assumptions
from flowsim.scenario.schema import NOTED_COST_FIELDS

DEFAULT_TARGETS = {"delayed_per_100k": 9.4, "occupancy_pct": 92.0, "ed_within_4h_pct": 76.0}


def targets(sc: Mapping[str, Any]) -> dict[str, float]:
    """The scenario's national standards (its ``targets``, defaults from the seeds)."""
    t = dict(DEFAULT_TARGETS)
    for k, v in (sc.get("targets") or {}).items():
        if k in t and math.isfinite(num(v)):
            t[k] = float(v)
    return t


def dtoc_target_per_day(sc: Mapping[str, Any]) -> float | None:
    """The BCF target as delayed patients a day for this population (9.4 per 100,000 aged 18+)."""
    pop = num(sc.get("population_18plus"))
    if not (math.isfinite(pop) and pop > 0):
        return None
    return targets(sc)["delayed_per_100k"] * pop / 1e5


def how_to_read(n_reps: int, *, paired: bool = False, standards: bool = True, parameters: str | None = None
                ) -> dict[str, Any]:
    """What the 'How to read this report' callout needs (its words are in the template); ``parameters``: how
    the intervals include parameter uncertainty, when the run drew its parameters (summary.json
    ``intervals_include``)."""
    return {"n": n_reps, "paired": paired, "standards": standards, "method": INTERVAL_METHOD,
            "parameters": parameters}


def created(text: object) -> str:
    """An ISO timestamp as '4 June 2024, 10:02 UTC' (or the text as given)."""
    try:
        t = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return str(text or "not recorded")
    return f"{t.day} {t:%B %Y, %H:%M} {t.tzname() or ''}".strip()


def day(text: object) -> str:
    """An ISO date as '1 Apr 2016' (or the text as given)."""
    try:
        d = dt.date.fromisoformat(str(text)[:10])
    except ValueError:
        return str(text)
    return f"{d.day} {d:%b %Y}"


def day_before(text: object) -> str:
    """The ISO date before ``text`` (the last day of a window that ends on ``text``)."""
    try:
        return (dt.date.fromisoformat(str(text)[:10]) - dt.timedelta(days=1)).isoformat()
    except ValueError:
        return str(text)


def command_text(cmd: object) -> str:
    """The command line as a user would type it."""
    if isinstance(cmd, list):
        return shlex.join(str(c) for c in cmd)
    return str(cmd or "not recorded")


def assumptions(sc: Mapping[str, Any], *, skip: Sequence[str] = ()) -> dict[str, Any]:
    """The assumptions section's content from the scenario as run: the changes made for this run, the starting
    conditions (from the run's settings) and the stated assumptions with the values they quote filled in."""
    stated = [a for a in render_assumptions(sc) if a not in skip]
    return {"changes": describe_overrides(sc), "start": initial_conditions(sc) if sc else "",
            "items": [marked(a) for a in stated]}


def _cost_entries(sc: Mapping[str, Any]) -> list[tuple[str, float, str | None]]:
    """(what, value, source note) for every unit cost or value a scenario sets or notes."""
    costs = sc.get("costs") or {}
    notes = costs.get("notes") or {}
    out: list[tuple[str, float, str | None]] = []
    for f in NOTED_COST_FIELDS:
        value = num(costs.get(f, 0.0))
        note = notes.get(f)
        if note or (math.isfinite(value) and value):
            out.append((sentence(f.replace("_", " ")).rstrip("."), value, str(note) if note else None))
    labels = service_labels(sc)
    for pw in (sc.get("pathways") or {}).values():
        for name, svc in ((pw or {}).get("services") or {}).items():
            for key in ("unit_cost_per_day", "cost_per_occupied_day"):
                value = num((svc or {}).get(key, 0.0))
                if value:
                    out.append((f"{labels[str(name)]}: {key.replace('_', ' ')}", value,
                                str((svc or {}).get("cost_note") or "")))
    return out


def _source(note: str | None) -> Rich:
    if note:
        return marked(note)
    if note == "":
        return Rich.of(Span("Service cost: no source field; see the scenario file", "muted"))
    return Rich.of(Span("No source given: analyst to complete", "todo"))


def cost_table(scenarios: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[str, Table]:
    """Each scenario's unit costs with their sources (after the first, only those that differ), and a lead-in."""
    rows: list[Row] = []
    first: set[tuple[str, float, str | None]] = set()
    many = len(scenarios) > 1
    for i, (name, sc) in enumerate(scenarios):
        for entry in _cost_entries(sc):
            if i and entry in first:
                continue
            if i == 0:
                first.add(entry)
            what, value, note = entry
            cells = ((Cell(value=name),) if many else ()) + (Cell(value=what), Cell(value=fmt(value, "GBP"),
                                                                                    numeric=True),
                                                             Cell(rich=_source(note)))
            rows.append(Row(cells))
    later = (f" {', '.join(n for n, _ in scenarios[1:])} use the same costs as {scenarios[0][0]} except where "
             "listed." if many else "")
    heads = (["Scenario"] if many else []) + ["Cost", "Value", "Source"]
    cols = [Column(h, numeric=h == "Value") for h in heads]
    return later, Table(cols, rows, caption="Unit costs and their sources")


def kpi_groups(names: Iterable[str]) -> list[tuple[str, list[str]]]:
    """KPI names grouped under the registry's report headings, in the registry's order."""
    grouped: dict[str, list[str]] = {}
    for k in names:
        grouped.setdefault(kpi_group(k), []).append(k)
    order = [g.title for g in KPI_GROUPS] + [OTHER_GROUP]
    return [(h, grouped[h]) for h in order if h in grouped]


def outputs_text(names: Iterable[str]) -> str:
    """STRESS 1.2: how many measures, in which groups."""
    names = list(names)
    return (f"{len(names)} measures with 95% confidence intervals over replications, in groups: "
            + "; ".join(f"{h.lower()} ({len(ks)})" for h, ks in kpi_groups(names))
            + ". Also daily series per replication, DTOC delayed days by NHS quarter and month, and charts.")


def execution_text(summary: Mapping[str, Any]) -> str:
    """STRESS 5.3 from a run's performance record."""
    perf = summary.get("performance") or {}
    secs = [float(x) for x in (perf.get("seconds_per_replication") or []) if math.isfinite(num(x))]
    events = [float(x) for x in (perf.get("kernel_events") or []) if math.isfinite(num(x))]
    text = ("Replications run independently (in parallel processes by default); results do not depend on how they "
            "are spread over processors.")
    if secs:
        text += f" About {sum(secs) / len(secs):.1f} s per replication"
        if events:
            text += f" and {sum(events) / len(events):,.0f} simulation events"
        text += "."
    return text


def repro(versions: Mapping[str, Any], facts: Sequence[tuple[str, str, bool]], command: object,
          source: Path | None) -> dict[str, Any]:
    """The reproducibility block: (term, value, is-code) facts, versions, the command line and the source."""
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return {"facts": list(facts), "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
            "command": command_text(command), "source": str(source.resolve()) if source else "",
            "made": f"{created(now)} by flowsim {__version__} (flowsim report)"}


def footer(source: Path | None) -> Rich:
    """The last line of every report."""
    where = [" from ", Span(str(source.resolve()), "code")] if source else [" from results in memory"]
    return Rich.of("Made by ", Span("flowsim report", "b"), f" {__version__}", *where,
                   ". Model estimates, not forecasts: read them with the assumptions and the checklist above.")
