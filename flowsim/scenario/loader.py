"""Read scenario YAML: ``extends:`` inheritance, ``--set`` overrides, validation with clear errors.

Why a line map: planners edit YAML by hand, and "cohorts.older.share: must be
<= 1" is only half an answer; "rotherham.yaml:57" finishes it.  We compose the
YAML node tree once to learn where every key was written, and carry that
through ``extends`` so an error names the file that actually set the value.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from flowsim.errors import ScenarioError
from flowsim.scenario.parameters import METHOD, accepted_sets
from flowsim.scenario.provenance import lookup, override_record
from flowsim.scenario.safeyaml import LineMap, Loc, Unreadable, YamlSyntaxError, load_value, parse_yaml, read_text
from flowsim.scenario.schema import FieldProblems, Scenario
from flowsim.scenario.types import MAX_COUNT

_MAX_EXTENDS_DEPTH = 16


def _yaml_load(text: str) -> Any:
    """One YAML value (a ``--set`` right-hand side) under the same limits as a file."""
    return load_value(text)


def _read_yaml(path: Path) -> tuple[dict[str, Any], LineMap]:
    data, lines = parse_yaml(read_text(path), str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError([f"{path}: a scenario must be a mapping of fields, got {type(data).__name__}"])
    return data, lines


SNAPSHOT_COLUMNS = ("node", "cohort", "pathway", "days")


def _snapshot_path(data: dict[str, Any], lines: LineMap) -> tuple[Path, str] | None:
    init = data.get("initial_state")
    if not isinstance(init, dict) or not isinstance(init.get("snapshot_file"), str):
        return None
    source, line = lines.get(("initial_state", "snapshot_file"), ("--set", 0))
    base = Path.cwd() if source == "--set" else Path(source).parent
    where = source if source == "--set" else f"{source}:{line}"
    return base / init["snapshot_file"], where


def _snapshot_row(rec: dict[str, str | None], where: str, problems: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"node": (rec.get("node") or "").strip()}
    for col in ("cohort", "pathway"):
        if (rec.get(col) or "").strip():
            row[col] = (rec.get(col) or "").strip()
    text = (rec.get("days") or "").strip()
    if text:
        try:
            days = float(text)
        except ValueError:
            days = -1.0
        if not (0.0 <= days < float("inf")):
            problems.append(f"{where}: days: expected a number of days >= 0, got {text!r}")
        row["days"] = days
    return row


def _read_snapshot(data: dict[str, Any], lines: LineMap) -> None:
    """Read ``initial_state.snapshot_file`` into ``initial_state.patients``.

    Done after ``extends`` and ``--set`` so an override of the file name takes effect; a relative
    name is read relative to the YAML file that gave it (or the working directory for ``--set``).
    A file whose first row is not a snapshot header is refused without quoting it: the name can
    point anywhere (``/etc/passwd``), and an error message must not print someone's secrets.
    Each row's line is remembered, so a bad row is reported at its line of the CSV.
    """
    found = _snapshot_path(data, lines)
    if found is None:
        return
    csv_path, where = found
    try:
        text = read_text(csv_path, encoding="utf-8-sig")  # Excel's "CSV UTF-8" starts with a byte-order mark
    except ScenarioError as exc:
        raise ScenarioError([f"{where}: initial_state.snapshot_file: {p}" for p in exc.problems]) from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    if "node" not in header:
        raise ScenarioError([f"{where}: initial_state.snapshot_file: {csv_path} is not a snapshot CSV: its first "
                             f"row must name the columns: node, and any of {', '.join(SNAPSHOT_COLUMNS[1:])} "
                             "(the file's contents are not shown)"])
    unknown = [c for c in header if c not in SNAPSHOT_COLUMNS]  # a snapshot header: its names may be shown
    if unknown:
        raise ScenarioError([f"{csv_path}:1: unknown columns {', '.join(map(repr, unknown))}; allowed: node, and any "
                             f"of {', '.join(SNAPSHOT_COLUMNS[1:])}"])
    reader.fieldnames = header
    init = data["initial_state"]
    rows: list[Any] = list(init.get("patients", []))
    problems: list[str] = []
    for line, rec in enumerate(reader, start=2):
        lines[("initial_state", "patients", len(rows))] = (str(csv_path), line)
        rows.append(_snapshot_row(rec, f"{csv_path}:{line}", problems))
    if problems:
        raise ScenarioError(problems)
    init["patients"] = rows


def _deep_merge(base: dict[str, Any], child: dict[str, Any], top: bool = True) -> dict[str, Any]:
    """Child wins; nested mappings merge key by key; lists and scalars replace.

    The one exception is the top-level ``assumptions`` list, which accumulates: an option's
    assumptions come on top of its baseline's, and a report must show both.
    """
    out = copy.deepcopy(base)
    for key, value in child.items():
        if top and key == "assumptions" and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = out[key] + [a for a in value if a not in out[key]]
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value, top=False)
        else:
            out[key] = copy.deepcopy(value)
    return out


class NotAScenario(ScenarioError):
    """A file that shares no field with a scenario (so none of its contents may be quoted)."""


_SCENARIO_FIELDS = frozenset({"extends", *Scenario.model_fields,
                               *(f.alias for f in Scenario.model_fields.values() if f.alias)})


def _refuse_foreign(data: dict[str, Any], path: Path) -> None:
    """Refuse a file none of whose top-level fields is a scenario field, without quoting it.

    ``extends: secret.json`` or ``flowsim run ~/.config/token.yaml`` would otherwise print each
    of the file's values back in "unknown field (got ...)" lines; a file that shares no field
    with a scenario is not a scenario with typos, so nothing of it is shown.
    """
    if data and not _SCENARIO_FIELDS.intersection(data):
        raise NotAScenario([f"{path} is not a flowsim scenario: none of its top-level fields is a scenario field "
                            "(`flowsim schema` lists them); its contents are not shown"])


def load_raw(path: str | Path, _chain: tuple[Path, ...] = ()) -> tuple[dict[str, Any], LineMap]:
    """Load a scenario file as a plain dict with ``extends:`` resolved (not yet validated)."""
    path = Path(path)
    resolved = path.resolve()
    if resolved in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, resolved))
        raise ScenarioError([f"{path}: 'extends' forms a cycle: {cycle}"])
    if len(_chain) > _MAX_EXTENDS_DEPTH:
        raise ScenarioError([f"{path}: 'extends' chain deeper than {_MAX_EXTENDS_DEPTH} files"])
    data, lines = _read_yaml(path)
    _refuse_foreign(data, path)
    parent = data.pop("extends", None)
    if parent is None:
        return data, lines
    line = lines.get(("extends",), (str(path), 0))[1]
    if not isinstance(parent, str) or not parent.strip():
        raise ScenarioError([f"{path}:{line}: extends: must be a file path, got {parent!r}"])
    base_path = (path.parent / parent) if not Path(parent).is_absolute() else Path(parent)
    try:
        base, base_lines = load_raw(base_path, (*_chain, resolved))
    except (NotAScenario, Unreadable) as exc:  # say which file asked for it
        raise ScenarioError([f"{path}:{line}: extends: {exc.problems[0]}"]) from None
    merged_lines = dict(base_lines)
    merged_lines.update(lines)
    return _deep_merge(base, data), merged_lines


def _step(node: Any, keys: list[str], depth: int) -> tuple[Any, str | None]:
    """The index ``keys[depth]`` means in ``node`` (an int in a list, a key in a mapping), or a problem text."""
    key = keys[depth]
    if isinstance(node, list):
        if not key.isdigit() or int(key) >= len(node):
            return None, (f"{'.'.join(keys[:depth]) or '(top)'} is a list; '{key}' is not an index in "
                          f"0..{len(node) - 1}")
        return int(key), None
    if isinstance(node, dict):
        return key, None
    return None, f"{'.'.join(keys[:depth])} is a value, not a mapping"


def _child(node: Any, idx: Any, keys: list[str], depth: int) -> tuple[Any, str | None]:
    """The container under ``node[idx]`` on the way down (a missing or null one becomes a new mapping)."""
    child = node.get(idx) if isinstance(node, dict) else node[idx]
    if child is None:
        node[idx] = child = {}
    elif not isinstance(child, (dict, list)):
        where = ".".join(keys[: depth + 1])
        return None, f"{where} is a value ({child!r}), not a mapping; set it whole, e.g. {where}={{...}}"
    return child, None


def set_path(data: dict[str, Any], dotted: str, value: Any, lines: LineMap | None = None,
             origin: tuple[str, int] = ("--set", 0)) -> str | None:
    """Set ``dotted.path`` in ``data`` (in place) to ``value``; return a problem text or None.

    List items are addressed by index.  Missing mappings on the way are created, so a
    misspelt field is still reported by validation, at ``origin`` (a file and line, or
    ``--set``), which replaces the line map entries of everything under the path.
    """
    keys = dotted.strip().split(".")
    if not dotted.strip() or any(not k for k in keys):
        return f"the path {dotted!r} is not a dotted field path"
    node: Any = data
    loc: Loc = ()
    for depth in range(len(keys)):
        idx, problem = _step(node, keys, depth)
        if problem:
            return problem
        loc = loc + (idx,)
        if depth == len(keys) - 1:
            node[idx] = value
            break
        node, problem = _child(node, idx, keys, depth)
        if problem:
            return problem
    if lines is not None:
        for k in [k for k in lines if k[: len(loc)] == loc]:
            del lines[k]
        lines[loc] = origin
    return None


def apply_overrides(data: dict[str, Any], overrides: Iterable[str], lines: LineMap | None = None) -> dict[str, Any]:
    """Apply ``dotted.path=value`` overrides (value parsed as YAML) to a copy of ``data``."""
    out = copy.deepcopy(data)
    problems = []
    for item in overrides:
        if "=" not in item:
            problems.append(f"--set {item!r}: expected dotted.path=value, e.g. acute.beds=450")
            continue
        dotted, raw = item.split("=", 1)
        try:
            value = _yaml_load(raw) if raw.strip() else ""
        except YamlSyntaxError:
            value = raw
        problem = set_path(out, dotted, value, lines)
        if problem:
            problems.append(f"--set {item!r}: {problem}")
    if problems:
        raise ScenarioError(problems)
    return out


def _clean_loc(loc: Loc, data: Any, err_type: str) -> tuple[Loc, Loc | None]:
    """Split pydantic's ``loc`` into the real field path and the union site (if any).

    pydantic puts union member names and discriminator values ('constrained-int',
    "literal['unlimited']", 'Schedule', 'triangular') into ``loc``; we walk the
    real input and keep only keys that exist in it, plus a last key that is
    missing or unknown.  ``site`` is the path where a union tag was dropped.
    """
    out: list[Any] = []
    node = data
    site: Loc | None = None
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            out.append(part)
            node = node[part]
        elif i == len(loc) - 1 and err_type in ("missing", "extra_forbidden"):
            out.append(part)  # a missing or unknown field: it is named last
        elif site is None:
            site = tuple(out)
    return tuple(out), site


_TYPE_ERRORS = frozenset({"int_type", "int_parsing", "literal_error", "model_type", "model_attributes_type",
                          "dict_type", "float_type", "float_parsing", "string_type", "bool_type", "list_type"})


def _value_at(data: Any, loc: Loc) -> Any:
    node = data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _where(loc: Loc, lines: LineMap, default_source: str) -> str:
    if any(v[0] == "--set" and k[: len(loc)] == loc for k, v in lines.items()):
        return "--set"
    for cut in range(len(loc), -1, -1):
        hit = lines.get(loc[:cut])
        if hit is not None:
            source, line = hit
            return source if source == "--set" else f"{source}:{line}"
    return default_source


_CAPACITY_FIELDS = ("beds", "capacity", "staff", "weekend_staff")
_CAPACITY_HELP = (f"a whole number from 0 to {MAX_COUNT:,}, 'unlimited', or a schedule "
                  "{base: N, periods: [{start, end, set|add}]}")


def _raw_problems(exc: ValidationError, data: dict[str, Any]) -> list[tuple[Loc, Loc | None, str, str]]:
    """(path, union site, message, pydantic type) for each error, cross-field problems expanded."""
    out: list[tuple[Loc, Loc | None, str, str]] = []
    for err in exc.errors(include_url=False):
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblems):
            base = tuple(err["loc"])
            for loc, msg in cause.items:  # inside a union member (a capacity schedule): that member spoke
                out.append((*_clean_loc(base + loc, data, "missing"), msg, "value_error"))
            continue
        loc, site = _clean_loc(tuple(err["loc"]), data, err["type"])
        msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; `flowsim schema` lists the allowed fields)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        out.append((loc, site, msg, err["type"]))
    return out


def _resolve_unions(raw: list[tuple[Loc, Loc | None, str, str]], data: dict[str, Any]
                    ) -> tuple[set[int], dict[int, str]]:
    """At a union (capacity: number | 'unlimited' | schedule; a probability or a mapping of them),
    pydantic reports every member that failed.  Keep what the member matching the input's shape said:
    for a mapping or list, the problems inside it; for a capacity that is not a schedule, what a capacity
    may be; otherwise the members that got past the type, or all members' words in one line.
    Returns (errors to drop, replacement messages)."""
    sites: dict[Loc, list[int]] = {}
    for i, (_, site, _, _) in enumerate(raw):
        if site is not None:
            sites.setdefault(site, []).append(i)
    drop: set[int] = set()
    replace: dict[int, str] = {}
    for site, idx in sites.items():
        value = _value_at(data, site)
        inside = [i for i in idx if len(raw[i][0]) > len(site)]
        relevant = [i for i in idx if raw[i][3] not in _TYPE_ERRORS]
        if bool(site) and site[-1] in _CAPACITY_FIELDS and not isinstance(value, dict):
            drop.update(idx[1:])  # a bad number or word: say what a capacity may be
            replace[idx[0]] = f"allowed: {_CAPACITY_HELP}"
        elif isinstance(value, (dict, list)) and inside:
            drop.update(i for i in idx if i not in inside)
        elif relevant:
            drop.update(i for i in idx if i not in relevant)
        elif len(idx) > 1:
            drop.update(idx[1:])
            replace[idx[0]] = "; ".join(dict.fromkeys(raw[i][2] for i in idx))
    return drop, replace


def _format_errors(exc: ValidationError, data: dict[str, Any], lines: LineMap, source: str) -> list[str]:
    raw = _raw_problems(exc, data)
    drop, replace = _resolve_unions(raw, data)
    grouped: dict[Loc, list[str]] = {}
    for i, (loc, _, msg, _) in enumerate(raw):
        if i not in drop:
            grouped.setdefault(loc, []).append(replace.get(i, msg))
    problems = []
    for loc, msgs in grouped.items():
        path = ".".join(str(p) for p in loc) or "(top level)"
        value = _value_at(data, loc)
        unknown = any(m.startswith("unknown field") for m in msgs)  # its value is not needed to fix a name
        shown = "" if isinstance(value, (dict, list)) or value is None or unknown else f" (got {value!r})"
        problems.append(f"{_where(loc, lines, source)}: {path}: {'; '.join(dict.fromkeys(msgs))}{shown}")
    return problems


def validate_dict(data: dict[str, Any], source: str = "<scenario>", lines: LineMap | None = None) -> Scenario:
    """Validate a plain dict into a frozen Scenario, raising ScenarioError with readable messages."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_format_errors(exc, data, lines or {}, source)) from None


def load_scenario(path: str | Path, overrides: Iterable[str] = ()) -> Scenario:
    """Load, inherit, override and validate a scenario file.

    Each override is also recorded in the scenario's ``overrides`` (path, value used, the file's value), so
    that whatever is made from the scenario as run can say it is not the file as written."""
    data, lines = load_raw(path)
    items = list(overrides)
    changed = apply_overrides(data, items, lines)
    records = [override_record(path, lookup(changed, path), lookup(data, path))
               for path in dict.fromkeys(item.split("=", 1)[0].strip() for item in items)
               if lookup(changed, path) != lookup(data, path)]  # setting a field to its own value changes nothing
    if records:
        changed["overrides"] = [*(changed.get("overrides") or []), *records]
    return finish_scenario(changed, lines, str(path))


def finish_scenario(data: dict[str, Any], lines: LineMap, source: str) -> Scenario:
    """Read the snapshot file and the parameter sets (if any) into ``data`` and validate: the last steps of
    loading."""
    data = copy.deepcopy(data)
    _read_snapshot(data, lines)
    _read_parameter_sets(data, lines)
    scenario = validate_dict(data, source, lines)
    if scenario.parameters_from is not None:
        where = "{}:{}".format(*lines.get(("parameters_from",), (source, 0)))
        for i, values in enumerate(scenario.parameters_from.sets):
            try:
                with_parameters(scenario, values)
            except ScenarioError as exc:
                raise ScenarioError([f"{where}: parameters_from: set {i} ({values}): {p}"
                                     for p in exc.problems]) from None
    return scenario


def _read_parameter_sets(data: dict[str, Any], lines: LineMap) -> None:
    """``parameters_from: DIR`` (or ``{source: DIR}``) -> the calibration's accepted sets, read relative to the
    YAML file that named it."""
    given = data.get("parameters_from")
    if given is None:
        return
    if isinstance(given, str):
        given = {"source": given}
    if not isinstance(given, dict) or not isinstance(given.get("source"), str):
        return  # validation reports the shape
    file, line = lines.get(("parameters_from",), ("--set", 0))
    base = Path.cwd() if file == "--set" else Path(file).parent
    path = Path(given["source"])
    path = path if path.is_absolute() else base / path
    if not given.get("sets"):
        given = {**given, "sets": accepted_sets(path, f"{file}:{line}"), "method": METHOD}
    data["parameters_from"] = given


def with_parameters(scenario: Scenario, values: dict[str, Any]) -> Scenario:
    """``scenario`` with ``values`` (dotted path -> value) set and no parameter draws left: what one replication
    of a run with ``parameters_from`` simulates."""
    data = scenario_to_dict(scenario)
    data.pop("parameters_from", None)
    problems = [p for path, value in values.items() if (p := set_path(data, path, value)) is not None]
    if problems:
        raise ScenarioError(problems)
    return validate_dict(data, f"{scenario.name} with parameters {values}")


def read_mapping(path: Path) -> tuple[dict[str, Any], LineMap]:
    """A YAML mapping and where each key was written (for configuration files other than scenarios)."""
    return _read_yaml(path)


def format_validation_errors(exc: ValidationError, data: dict[str, Any], lines: LineMap, source: str) -> list[str]:
    """One ``file:line: field.path: problem`` line per validation problem."""
    return _format_errors(exc, data, lines, source)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (dt.date, dt.datetime)):
        return obj.isoformat()
    raise TypeError(type(obj).__name__)


def scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    """The fully resolved scenario as plain data (dates as ISO strings)."""
    return json.loads(json.dumps(scenario.model_dump(mode="json", by_alias=True), default=_jsonable))


def scenario_to_yaml(scenario: Scenario) -> str:
    """Resolved scenario YAML: what the model actually ran, with every default spelled out."""
    header = f"# Resolved scenario '{scenario.name}' as run by flowsim (extends and --set applied).\n"
    return header + yaml.safe_dump(scenario_to_dict(scenario), sort_keys=False, allow_unicode=True)


def scenario_hash(scenario: Scenario) -> str:
    """Stable content hash, so a run can be traced to exactly the scenario it used.

    The record of how a run changed its file (``overrides``) is provenance, not input: the same settings
    reached by editing the file or by ``--set`` hash alike."""
    data = scenario_to_dict(scenario)
    data.pop("overrides", None)
    if data.get("parameters_from") is None:  # a field added later: absent, it leaves older scenarios' hashes alone
        data.pop("parameters_from", None)
    canon = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]
