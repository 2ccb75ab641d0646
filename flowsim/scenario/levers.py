"""The levers a planner moves: labelled, bounded scenario fields, their source note, and the changes they make.

Why one lever model: the web app shows each lever as a control, the tests check what moving one does, and a
``--set`` override is what a change *is* (the resolved scenario records it under ``overrides``, so every output
says what changed).  Nothing here is a second list of fields to keep in step with the schema:

- *which* fields are levers is read from the scenario as loaded: every capacity field the schema types as a
  capacity (``acute.beds``, each service's ``capacity``, assessment ``staff``, limited home care...) is one,
  wherever it sits, plus demand, assessment and discharge hours, weekend discharge rates, demand surges and
  escalation on/off (:data:`PATTERNS`); a service, surge or demand stream is a lever because the scenario has it;
- each lever's *bounds* come from the schema's bounded types (``flowsim.scenario.types.Range``), so a control can
  never offer a value validation would refuse;
- its *note* is the comment written on (or just above) the field's line in the YAML file that set it (the
  source citation or ``ASSUMPTION``), found through the loader's line map, which follows ``extends:``.

:func:`extends_yaml` writes the changes as a small scenario file that ``extends:`` the base: loading it gives the
scenario that was run (the same content hash).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel

from flowsim.errors import ScenarioError
from flowsim.scenario.loader import apply_overrides, finish_scenario, load_raw, scenario_to_dict
from flowsim.scenario.provenance import lookup
from flowsim.scenario.safeyaml import LineMap, Loc, read_text
from flowsim.scenario.schema import Capacity, Scenario
from flowsim.scenario.types import Count, Range

#: Lever fields other than capacities, as dotted patterns (``*`` is any one key or index), with their group.
#: Capacities are found from the schema wherever they are (see :func:`_is_capacity`).
PATTERNS: tuple[tuple[str, str], ...] = (
    ("arrivals.rate_per_day", "Demand"),
    ("arrivals.annual_growth", "Demand"),
    ("arrivals.surges.*.factor", "Demand"),
    ("demand.*.rate_per_day", "Demand"),
    ("electives.rate_per_weekday", "Demand"),
    ("assessment.hours.start", "Assessment"),
    ("assessment.hours.end", "Assessment"),
    ("assessment.weekend_hours.start", "Assessment"),
    ("assessment.weekend_hours.end", "Assessment"),
    ("discharge.hours.start", "Discharge"),
    ("discharge.hours.end", "Discharge"),
    ("discharge.weekend_rate", "Discharge"),
    ("discharge.weekend_rate.*", "Discharge"),
)
#: The group of a capacity lever, by the first key of its path.
_CAPACITY_GROUP = {"assessment": "Assessment"}
#: Display order of the groups.
GROUPS = ("Beds and capacity", "Assessment", "Demand", "Discharge", "Escalation")

Kind = Literal["int", "float", "bool"]


@dataclass(frozen=True)
class Lever:
    """One control: a scenario field with its label, unit, bounds, value and the note its file gives it.

    ``path`` is the dotted field path ``--set`` takes; ``low``/``high`` are inclusive bounds a control may offer
    (an open end of the schema's range is moved in by one ``step``); ``note`` is the comment on the field's line
    (or just above it) in ``where`` (``file:line``), or says that the value is flowsim's default."""

    path: str
    label: str
    group: str
    unit: str
    kind: Kind
    value: int | float | bool
    low: float | None = None
    high: float | None = None
    step: float = 1.0
    note: str = ""
    where: str = ""

    def setting(self, value: Any) -> str:
        """The ``--set`` text that gives this lever ``value`` (escalation off is ``escalation=null``)."""
        if self.kind == "bool":
            if value:
                raise ValueError(f"{self.path}: a lever can only switch this off (the scenario defines it)")
            return f"{self.path}=null"
        number = int(value) if self.kind == "int" else float(value)
        return f"{self.path}={json.dumps(number)}"

    def coerce(self, value: Any) -> int | float | bool:
        """``value`` as this lever's kind (a control may hand back 45.0 for a whole number)."""
        if self.kind == "bool":
            return bool(value)
        return int(round(float(value))) if self.kind == "int" else float(value)


def changed_settings(levers: Sequence[Lever], values: Mapping[str, Any]) -> list[str]:
    """``--set`` texts for the levers whose value in ``values`` (by path) differs from the scenario's."""
    out = []
    for lever in levers:
        if lever.path not in values:
            continue
        new = lever.coerce(values[lever.path])
        if new != lever.value:
            out.append(lever.setting(new))
    return out


# ------------------------------------------------------------------------------------------ walking the schema
def _strip(annotation: Any) -> tuple[Any, list[Any]]:
    """``Annotated[X, m...]`` -> (X, [m...]); anything else -> (it, [])."""
    meta: list[Any] = []
    while typing.get_origin(annotation) is typing.Annotated:
        args = typing.get_args(annotation)
        annotation, meta = args[0], [*meta, *args[1:]]
    return annotation, meta


def _members(annotation: Any) -> list[Any]:
    """The members of a union (``X | None`` included), or ``[annotation]``."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _range_of(annotation: Any, meta: Sequence[Any], value: Any) -> Range | None:
    """The schema's bounded range for a number (the member of a union that takes a number)."""
    for m in meta:
        if isinstance(m, Range):
            return m
    for member in _members(annotation):
        inner, inner_meta = _strip(member)
        if inner in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            found = _range_of(inner, inner_meta, value)
            if found is not None:
                return found
    return None


def _is_capacity(annotation: Any) -> bool:
    return any(m == Capacity for m in [annotation, *_members(annotation)])


Leaf = tuple[Loc, Any, Any, list[Any]]


def _walk(value: Any, annotation: Any, meta: list[Any], loc: Loc) -> Iterator[Leaf]:
    """Every node of the scenario's data with the schema annotation that types it."""
    annotation, more = _strip(annotation)
    meta = [*meta, *more]
    yield loc, value, annotation, meta
    for member in _members(annotation):
        member, _ = _strip(member)
        origin = typing.get_origin(member)
        if isinstance(member, type) and issubclass(member, BaseModel) and isinstance(value, dict):
            for name, f in member.model_fields.items():
                key = f.alias or name
                if key in value:
                    yield from _walk(value[key], f.annotation, list(f.metadata), (*loc, key))
            return
        if origin is dict and isinstance(value, dict):
            item = typing.get_args(member)[1]
            for key, v in value.items():
                yield from _walk(v, item, [], (*loc, key))
            return
        if origin is list and isinstance(value, list):
            item = typing.get_args(member)[0]
            for i, v in enumerate(value):
                yield from _walk(v, item, [], (*loc, i))
            return


def _matches(loc: Loc, pattern: str) -> bool:
    parts = pattern.split(".")
    return len(parts) == len(loc) and all(p in ("*", str(k)) for p, k in zip(parts, loc, strict=True))


# ------------------------------------------------------------------------------------------ notes from comments
def _comment(text: str) -> str:
    """The comment of one YAML line (a ``#`` outside quotes, after a space or at the start), or ''."""
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[i + 1:].strip()
    return ""


class _Notes:
    """Comments of the files a scenario was read from, by the line each field was written on."""

    def __init__(self, lines: LineMap):
        self.lines = lines
        self._files: dict[str, list[str]] = {}

    def _text(self, source: str) -> list[str]:
        if source not in self._files:
            try:
                self._files[source] = read_text(Path(source)).splitlines()
            except ScenarioError:
                self._files[source] = []
        return self._files[source]

    def note(self, loc: Loc) -> tuple[str, str]:
        """(note, 'file:line') for the field at ``loc``: its line's comment, else the comment block just above."""
        hit = self.lines.get(loc)
        if hit is None or hit[0] == "--set":
            return "", ""
        where = f"{hit[0]}:{hit[1]}"
        # a capacity schedule's base: its comment is usually on the capacity's own line, or above it
        for cut in (loc, loc[:-1]) if loc[-1] == "base" else (loc,):
            found = self.lines.get(cut)
            text = self._text(found[0]) if found else []
            if found is None or not 0 < found[1] <= len(text):
                continue
            line = found[1]
            own = _comment(text[line - 1])
            above: list[str] = []
            i = line - 2
            while not own and i >= 0 and text[i].lstrip().startswith("#"):
                above.insert(0, text[i].strip().lstrip("#").strip())
                i -= 1
            if own or above:
                return own or " ".join(above), where
        return "", where


# ------------------------------------------------------------------------------------------ labels and units
_HOURS = {"start": "opens", "end": "closes"}


#: Levers whose words do not depend on the scenario.
_FIXED_LABELS = {"acute.beds": "Acute (G&A) beds", "acute.beds.base": "Acute (G&A) beds",
                 "arrivals.rate_per_day": "Non-elective admissions a day",
                 "arrivals.annual_growth": "Annual demand growth",
                 "electives.rate_per_weekday": "Elective admissions a weekday"}


def _service_label(loc: Loc, data: Mapping[str, Any]) -> str | None:
    if loc[0] != "pathways" or len(loc) < 5:
        return None
    svc = lookup(data, ".".join(map(str, loc[:4])))
    name = (svc.get("label") if isinstance(svc, dict) else None) or str(loc[3])
    return f"{loc[1]} {name}: capacity"


def _staff_and_hours_label(loc: Loc, data: Mapping[str, Any]) -> str | None:
    if loc[0] == "assessment" and loc[1] in ("staff", "weekend_staff"):
        return "Assessment staff " + ("at weekends" if loc[1] == "weekend_staff" else "on weekdays")
    if loc[0] in ("assessment", "discharge") and loc[1] in ("hours", "weekend_hours"):
        when = "weekend " if loc[1] == "weekend_hours" else ""
        return f"{loc[0].capitalize()} {when}hours: {_HOURS[str(loc[2])]} at"
    if loc[:2] == ("discharge", "weekend_rate"):
        return "Weekend discharge rate" + (f" {loc[2]}" if len(loc) > 2 else " (all pathways)")
    return None


def _demand_label(loc: Loc, data: Mapping[str, Any]) -> str | None:
    if loc[:2] == ("arrivals", "surges"):
        surge = lookup(data, f"arrivals.surges.{loc[2]}") or {}
        return f"Demand surge {surge.get('note') or ''} {surge.get('start')} to {surge.get('end')}: factor".replace(
            "  ", " ")
    if loc[0] == "demand":
        stream = lookup(data, f"demand.{loc[1]}") or {}
        where = f" ({stream['locality']})" if stream.get("locality") else ""
        return f"Demand {stream.get('label') or stream.get('pathway')}{where}: patients a day"
    return None


def _label(loc: Loc, data: Mapping[str, Any]) -> str:
    """Words for a lever's field, using the scenario's own labels for services, surges and demand streams."""
    path = ".".join(map(str, loc))
    if path in _FIXED_LABELS:
        return _FIXED_LABELS[path]
    for words in (_service_label, _staff_and_hours_label, _demand_label):
        text = words(loc, data)
        if text is not None:
            return text
    return path.removesuffix(".base").replace(".", " ").replace("_", " ").capitalize()


def _unit(loc: Loc, rng: Range, data: Mapping[str, Any]) -> str:
    if loc[0] == "pathways":
        svc = lookup(data, ".".join(map(str, loc[:4])))
        return str(svc.get("capacity_unit") or "places") if isinstance(svc, dict) else "places"
    named = [("beds", loc[:2] == ("acute", "beds")),
             ("concurrent assessments", loc[0] == "assessment" and loc[1] in ("staff", "weekend_staff")),
             ("hour of the day (0-24)", loc[-1] in ("start", "end")),
             ("a year (0.02 = 2%)", loc[-1] == "annual_growth"),
             ("probability (0-1)", "weekend_rate" in loc)]
    found = next((unit for unit, hit in named if hit), None)
    if found is not None:
        return found
    allowed = rng.allowed
    return allowed[allowed.find("(") + 1: allowed.rfind(")")] if "(" in allowed else ""


def _step(rng: Range, loc: Loc) -> float:
    if rng.integer:
        return 1.0
    if loc[-1] in ("start", "end"):
        return 0.5
    return 0.001 if loc[-1] == "annual_growth" else 0.01 if rng.high <= 1 else 0.05 if "surges" in loc else 0.1


def _number_lever(loc: Loc, value: Any, rng: Range, *, group: str, data: Mapping[str, Any],
                  notes: _Notes) -> Lever:
    step = _step(rng, loc)
    note, where = notes.note(loc)
    if not where:
        note = "not set in the scenario file: flowsim's default"
    return Lever(path=".".join(map(str, loc)), label=_label(loc, data), group=group, unit=_unit(loc, rng, data),
                 kind="int" if rng.integer else "float", value=int(value) if rng.integer else float(value),
                 low=rng.low + (step if rng.low_open else 0), high=rng.high - (step if rng.high_open else 0),
                 step=step, note=note, where=where)


def _capacity_leaf(loc: Loc, value: Any) -> tuple[Loc, Any] | None:
    """Where a capacity's number lives: the field itself, or a schedule's ``base`` (None for 'unlimited')."""
    if isinstance(value, int) and not isinstance(value, bool):
        return loc, value
    if isinstance(value, dict) and isinstance(value.get("base"), int):
        return (*loc, "base"), value["base"]
    return None


#: The schema's range of a count: a capacity whose union member carries none falls back to it.
_COUNT_RANGE = next(m for m in _strip(Count)[1] if isinstance(m, Range))


def _lever_at(leaf: Leaf, data: Mapping[str, Any], notes: _Notes) -> Lever | None:
    """The lever at one node of the scenario, if it is one: a capacity anywhere, or a field :data:`PATTERNS`
    names."""
    loc, value, annotation, meta = leaf
    if not loc or loc[0] in ("initial_state", "escalation", "overrides", "disruptions"):
        return None
    if _is_capacity(annotation):
        at = _capacity_leaf(loc, value)
        if at is None:
            return None
        return _number_lever(at[0], at[1], _range_of(annotation, meta, 0) or _COUNT_RANGE,
                             group=_CAPACITY_GROUP.get(str(loc[0]), "Beds and capacity"), data=data, notes=notes)
    kind = next((g for p, g in PATTERNS if _matches(loc, p)), None)
    if kind is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    rng = _range_of(annotation, meta, value)
    return _number_lever(loc, value, rng, group=kind, data=data, notes=notes) if rng is not None else None


def levers_of(scenario: Scenario, lines: LineMap | None = None) -> list[Lever]:
    """The levers of a scenario, grouped (:data:`GROUPS`) and in file order within a group.

    ``lines`` (from ``load_raw``) lets each lever carry the comment its file wrote beside it."""
    data = scenario_to_dict(scenario)
    notes = _Notes(lines or {})
    found = [lever for leaf in _walk(data, Scenario, [], ()) if (lever := _lever_at(leaf, data, notes)) is not None]
    if scenario.escalation is not None:
        note, where = notes.note(("escalation",))
        found.append(Lever(path="escalation", label="OPEL escalation and its actions", group="Escalation",
                           unit="on/off", kind="bool", value=True, note=note, where=where))
    return sorted(found, key=lambda lv: GROUPS.index(lv.group))


def scenario_levers(path: str | Path) -> tuple[Scenario, list[Lever]]:
    """Load a scenario file (as ``load_scenario`` does: errors are the CLI's lines) and list its levers."""
    data, lines = load_raw(path)
    scenario = finish_scenario(data, lines, str(path))
    return scenario, levers_of(scenario, lines)


# ------------------------------------------------------------------------------------------ the changes as a file
def _cut_at_list(data: Mapping[str, Any], dotted: str) -> list[str]:
    """The path up to (and including) the first list on it: a list is written whole, since ``extends:`` replaces
    lists rather than merging them."""
    keys = dotted.split(".")
    node: Any = data
    for i, key in enumerate(keys):
        if isinstance(node, list):
            return keys[:i]
        node = node.get(key) if isinstance(node, dict) else None
    return keys


def extends_yaml(base: str | Path, settings: Sequence[str], *, name: str | None = None,
                 today: dt.date | None = None) -> str:
    """A scenario file holding only the fields ``settings`` change, on top of ``base`` (``extends:`` its absolute
    path, so it loads from anywhere on this machine), with a comment naming the base and the date.

    Loading it gives the same scenario as ``load_scenario(base, settings)`` (the same content hash); ``name``,
    when given, names the new scenario (and so changes its hash)."""
    base = Path(base).resolve()
    data, lines = load_raw(base)
    changed = apply_overrides(data, settings, lines)
    diff: dict[str, Any] = {}
    for item in settings:
        keys = _cut_at_list(changed, item.split("=", 1)[0].strip())
        node = diff
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = copy.deepcopy(lookup(changed, ".".join(keys)))
    day = (today or dt.date.today()).isoformat()
    head = [f"# Changes to {base} made on {day} (flowsim web app).",
            "# Only the changed fields are here; everything else comes from the base file named by extends.",
            *(f"#   --set {s}" for s in settings)]
    doc: dict[str, Any] = {"extends": str(base)}
    if name:
        doc["name"] = name
    doc.update(diff)
    return "\n".join(head) + "\n" + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False)
