"""The scenario *as run*: what was changed for a run, assumptions that quote live values, starting conditions.

Why this module: a report that copies the scenario file's prose can disagree with the run it describes.
A run with ``--set pathways.P1.services.irr_reablement.capacity=55`` used to print "P1 capacity 45" in its
assumptions (the file's words) and 55 in its checklist (the resolved value), and a winter run that
inherited "Empty system at 2015-10-04" from its baseline said so although it started on 2016-04-04.  So:

- every change a run makes to the file is recorded in the resolved scenario (``overrides``), and
  :func:`describe_overrides` turns them into the sentences shown in the terminal, figure titles, the
  report header, the assumptions and the checklist;
- an assumption may quote a field instead of restating it: ``"P1 capacity {pathways.P1.services.x.capacity}
  packages"``.  :func:`render_assumptions` fills each ``{dotted.path}`` from the scenario as run, and
  validation rejects a placeholder that names no field (:func:`placeholder_problems`);
- :func:`initial_conditions` says how a run starts from its own settings (warm-up or snapshot), so no
  scenario needs to write it down.

Everything here works on the scenario as plain data (``scenario_to_dict``, or a resolved ``scenario.yaml``)
so the schema can use it and a report can apply it to a directory without rebuilding the model.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: ``{dotted.path}`` in an assumption: a field of the scenario (list items by index, e.g. ``surges.0.factor``).
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\}")

_MISSING = object()


def lookup(data: Any, dotted: str) -> Any:
    """The value at ``dotted`` in nested mappings and lists, or ``_MISSING``."""
    node = data
    for part in dotted.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def placeholder_problems(assumptions: Sequence[str], data: Callable[[], Mapping[str, Any]]
                         ) -> list[tuple[tuple[str | int, ...], str]]:
    """(field path, message) for each ``{placeholder}`` in ``assumptions`` that names no field of the scenario.

    ``data`` is called only when some assumption has a placeholder (dumping a scenario is not free, and most
    are validated many times in sweeps and calibration)."""
    found = [(i, m.group(1)) for i, text in enumerate(assumptions) for m in PLACEHOLDER.finditer(text)]
    if not found:
        return []
    tree = data()
    return [(("assumptions", i), f"{{{path}}} names no field of this scenario (write the dotted path of a field, "
                                 "e.g. {acute.beds})")
            for i, path in found if lookup(tree, path) is _MISSING]


def format_value(value: Any) -> str:
    """A field's value as a sentence fragment: 45; 'unlimited'; '555, then +25 from 2016-12-01 to 2017-03-31 each
    year' (a capacity schedule); 'lognormal, mean 5.2, sd 6.1' (a distribution)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, Mapping):
        return _mapping(value)
    if isinstance(value, list):
        return ", ".join(format_value(v) for v in value)
    return "not set" if value is None else str(value)


def _number(value: float) -> str:
    if isinstance(value, float):
        return f"{value:,.6g}" if abs(value) >= 1000 else f"{value:g}"
    return f"{value:,}" if abs(value) >= 10000 else str(value)


def _mapping(value: Mapping[str, Any]) -> str:
    if "base" in value:  # a capacity schedule
        return ", then ".join([format_value(value["base"]), *(_period(p) for p in value.get("periods") or [])])
    if "dist" in value:  # a distribution
        rest = ", ".join(f"{k} {format_value(v)}" for k, v in value.items() if k != "dist")
        return f"{value['dist']}, {rest}" if rest else str(value["dist"])
    return json.dumps(value, default=str, ensure_ascii=False)


def _period(p: Mapping[str, Any]) -> str:
    """A capacity schedule's dated change: '+25 from 2016-12-01 to 2017-03-31 each year', '2 from 2016-10-01'."""
    amount = f"+{format_value(p['add'])}" if p.get("add") is not None else format_value(p.get("set"))
    when = f" from {p.get('start')}" + (f" to {p['end']}" if p.get("end") else "")
    return amount + when + (" each year" if p.get("annual") else "")


def render_assumptions(data: Mapping[str, Any]) -> list[str]:
    """The scenario's assumptions with every ``{field}`` replaced by its value as run."""
    def fill(m: re.Match[str]) -> str:
        value = lookup(data, m.group(1))
        return m.group(0) if value is _MISSING else format_value(value)

    return [PLACEHOLDER.sub(fill, str(a)) for a in data.get("assumptions") or []]


def override_record(path: str, value: Any, was: Any, source: str = "--set") -> dict[str, Any]:
    """The plain-data form of one change a run made (the schema's ``Override``)."""
    return {"path": path, "value": value, "was": None if was is _MISSING else was, "source": source}


def describe_overrides(data: Mapping[str, Any]) -> list[str]:
    """One sentence per change a run made to its scenario file, e.g.
    ``pathways.P1.services.irr_reablement.capacity = 55 (scenario file: 45; --set)``."""
    out = []
    for o in data.get("overrides") or []:
        was = o.get("was")
        before = "not set in the file" if was is None else f"scenario file: {format_value(was)}"
        out.append(f"{o.get('path')} = {format_value(o.get('value'))} ({before}; {o.get('source', '--set')})")
    return out


def title(data: Mapping[str, Any]) -> str:
    """The scenario's name as every output shows it: with the number of changes made for this run, if any."""
    name = str(data.get("name") or "scenario")
    n = len(data.get("overrides") or [])
    return name if not n else f"{name} (changed for this run: {n} setting{'s' if n != 1 else ''})"


def _date_text(d: dt.date) -> str:
    return f"{d.day} {d:%B %Y}"


def initial_conditions(data: Mapping[str, Any]) -> str:
    """How each replication starts, in words, from the run's own settings (never from prose in the file)."""
    sim = data.get("simulation") or {}
    try:
        start = dt.date.fromisoformat(str(sim.get("start_date"))[:10])
    except ValueError:
        return "Starting conditions not recorded."
    init = data.get("initial_state")
    if init:
        counted = sum(int(v) for k in ("ed", "acute") if isinstance(v := init.get(k), int | float))
        counted += sum(int(v) for k in ("waiting_for_assessment", "waiting", "services")
                       for v in (init.get(k) or {}).values() if isinstance(v, int | float))
        rows = len(init.get("patients") or [])
        snap = init.get("snapshot_file")
        what = ", ".join(x for x in (f"{counted} patients counted in place" if counted else "",
                                     f"{rows} listed patients" + (f" (from {snap})" if snap else "") if rows else "")
                         if x) or "the state given"
        return (f"Each replication starts on {_date_text(start)} from the state given by initial_state ({what}); "
                "there is no warm-up.")
    warm = int(sim.get("warmup_days") or 0)
    if not warm:
        return (f"Each replication starts from an empty system on {_date_text(start)} with no warm-up, so the first "
                "weeks under-state occupancy and delays.")
    empty = start - dt.timedelta(days=warm)
    return (f"Each replication starts from an empty system on {_date_text(empty)} and runs a {warm}-day warm-up, "
            f"which is discarded; results cover {_date_text(start)} onwards.")
