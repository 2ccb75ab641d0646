"""Reading a history replay's CSV files (``replay.demand_file``, ``capacity_file``, ``observed_file``).

Why here, at load time, rather than in the model: the model never reads files (a replication is a pure function
of the scenario), and a bad row must be reported before anything runs, as ``file:line: column: problem``, with
nothing written.  Each file is read into the field beside its name, so the resolved scenario a run writes
carries the very numbers it replayed.

Formats (one header row, then one row per date written YYYY-MM-DD; a UTF-8 byte-order mark is allowed):

* demand: ``date`` and any of ``admissions`` (all cohorts), ``admissions.<cohort>``, ``step_up.<stream>``;
  one row per day, in order, with no gaps, and a whole number in every cell.  The days from the first row to
  the last are replayed; the run's other days keep the model's rates.
* capacity: ``date`` and one column per place (``acute``, a service, ``long_term_care``, ``home_care``); dates
  increasing; a whole number sets the place's capacity from that date, an empty cell leaves it as it was.
* observed: ``date`` and daily series of the model (``delayed_midnight``, ``acute_occupied_midnight``,
  ``admissions``...); dates increasing, gaps allowed; an empty cell is a day not observed.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowsim.errors import ScenarioError
from flowsim.scenario.safeyaml import LineMap, read_text
from flowsim.scenario.schema import OBSERVABLE
from flowsim.scenario.types import MAX_COUNT, MAX_DATE, MAX_RATE, MAX_THRESHOLD, MIN_DATE

#: Problems listed for one file before the rest are counted (a wrong file can have thousands).
MAX_LISTED = 20

_DEMAND_COLUMN = re.compile(r"^(admissions|(admissions|step_up)\.[A-Za-z][A-Za-z0-9_]*)$")
_PLACE_COLUMN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class _Table:
    """A replay CSV: its path, where the scenario named it, its header and its rows with their line numbers."""

    def __init__(self, path: Path, field: str, where: str):
        self.path = path
        self.field = field
        try:
            text = read_text(path, encoding="utf-8-sig")  # Excel's "CSV UTF-8" starts with a byte-order mark
        except ScenarioError as exc:
            raise ScenarioError([f"{where}: replay.{field}: {p}" for p in exc.problems]) from None
        rows = list(csv.reader(io.StringIO(text)))
        self.header = [h.strip() for h in rows[0]] if rows else []
        if "date" not in self.header:  # not a replay file: its contents may be anyone's, so none is shown
            raise ScenarioError([f"{where}: replay.{field}: {path} is not a replay CSV: its first row must name the "
                                 "columns, starting with date (the file's contents are not shown)"])
        self.rows = [(i, [c.strip() for c in r]) for i, r in enumerate(rows[1:], start=2) if any(c.strip() for c in r)]
        self.problems: list[str] = []

    def columns(self, allowed: Callable[[str], bool], what: str) -> list[str]:
        """The value columns (all but ``date``), each checked by ``allowed`` and named once."""
        cols = [h for h in self.header if h != "date"]
        bad = [h for h in cols if not allowed(h)]
        if bad:
            self.problems.append(f"{self.path}:1: unknown columns {', '.join(map(repr, bad))}; allowed: date and "
                                 f"{what}")
        dup = sorted({h for h in self.header if self.header.count(h) > 1})
        if dup:
            self.problems.append(f"{self.path}:1: columns named twice: {', '.join(map(repr, dup))}")
        if not cols:
            self.problems.append(f"{self.path}:1: no columns besides date; allowed: {what}")
        if not self.rows:
            self.problems.append(f"{self.path}: no rows after the header")
        return cols

    def cell(self, line: int, row: list[str], column: str) -> str:
        """The text of ``column`` in ``row`` (empty when the row is short)."""
        i = self.header.index(column)
        return row[i] if i < len(row) else ""

    def date(self, line: int, row: list[str]) -> dt.date | None:
        """The row's date, or None after recording the problem."""
        text = self.cell(line, row, "date")
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            day = None
        if day is None or not MIN_DATE <= day <= MAX_DATE or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            self.problem(line, "date", f"expected a date written YYYY-MM-DD from {MIN_DATE} to {MAX_DATE}, "
                                       f"got {text!r}")
            return None
        return day

    def number(self, line: int, text: str, column: str, high: float, integer: bool) -> float | None:
        """A number in [0, high] (whole when ``integer``), or None after recording the problem."""
        try:
            x = float(text)
        except ValueError:
            x = math.nan
        if not math.isfinite(x) or not 0 <= x <= high or (integer and not x.is_integer()):
            kind = "a whole number" if integer else "a number"
            self.problem(line, column, f"expected {kind} from 0 to {high:,.0f}, got {text!r}")
            return None
        return x

    def problem(self, line: int, column: str, message: str) -> None:
        self.problems.append(f"{self.path}:{line}: {column}: {message}")

    def check(self) -> None:
        """Raise every problem found in the file (the first ``MAX_LISTED``, then how many more)."""
        if self.problems:
            extra = len(self.problems) - MAX_LISTED
            raise ScenarioError(self.problems[:MAX_LISTED] + ([f"{self.path}: ... and {extra} more problems"]
                                                              if extra > 0 else []))


def _dated_rows(table: _Table, strictly_daily: bool) -> list[tuple[int, dt.date, list[str]]]:
    """Rows with a valid date, checked to increase (by exactly one day when ``strictly_daily``)."""
    out: list[tuple[int, dt.date, list[str]]] = []
    for line, row in table.rows:
        day = table.date(line, row)
        if day is None:
            continue
        if out:
            prev = out[-1][1]
            if strictly_daily and day != prev + dt.timedelta(days=1):
                table.problem(line, "date", f"{day} follows {prev}; the demand file needs one row per day, in "
                                            "order, with no gaps (days outside the file keep the model's rates)")
            elif not strictly_daily and day <= prev:
                table.problem(line, "date", f"{day} follows {prev}; dates must increase")
        out.append((line, day, row))
    return out


def read_demand(table: _Table, lines: LineMap) -> list[dict[str, Any]]:
    """``replay.demand``: one series per column, counts for every day from the first row."""
    cols = table.columns(lambda c: bool(_DEMAND_COLUMN.match(c)),
                         "admissions, admissions.<cohort> or step_up.<stream>")
    rows = _dated_rows(table, strictly_daily=True)
    series: dict[str, list[int]] = {c: [] for c in cols}
    for line, _, row in rows:
        for c in cols:
            text = table.cell(line, row, c)
            x = table.number(line, text, c, MAX_RATE, integer=True)
            series[c].append(int(x) if x is not None else 0)
    table.check()
    for i, _ in enumerate(cols):
        lines[("replay", "demand", i)] = (str(table.path), 1)
    return [{"column": c, "start": rows[0][1].isoformat(), "counts": v} for c, v in series.items()]


def read_capacity(table: _Table, lines: LineMap) -> list[dict[str, Any]]:
    """``replay.capacity``: per place, the dated values its column gives (empty cells change nothing)."""
    cols = table.columns(lambda c: bool(_PLACE_COLUMN.match(c)) and len(c) <= 64,
                         "one column per place (acute, a service's name, long_term_care, home_care)")
    out: list[dict[str, Any]] = []
    for i, c in enumerate(cols):
        lines[("replay", "capacity", i)] = (str(table.path), 1)
        out.append({"target": c, "steps": []})
    for line, day, row in _dated_rows(table, strictly_daily=False):
        for i, c in enumerate(cols):
            text = table.cell(line, row, c)
            if not text:
                continue
            x = table.number(line, text, c, MAX_COUNT, integer=True)
            if x is not None:
                lines[("replay", "capacity", i, "steps", len(out[i]["steps"]))] = (str(table.path), line)
                out[i]["steps"].append({"date": day.isoformat(), "places": int(x)})
    for c, entry in zip(cols, out, strict=True):
        if not entry["steps"] and table.rows:
            table.problem(1, c, "no value in any row; give the place's capacity on at least one date")
    table.check()
    return out


def read_observed(table: _Table, lines: LineMap) -> list[dict[str, Any]]:
    """``replay.observed``: per series, values for every day from the first row (null where not observed)."""
    cols = table.columns(lambda c: c in OBSERVABLE, ", ".join(OBSERVABLE))
    rows = _dated_rows(table, strictly_daily=False)
    first = rows[0][1] if rows else dt.date(2000, 1, 1)
    n = (rows[-1][1] - first).days + 1 if rows else 0
    values: dict[str, list[float | None]] = {c: [None] * n for c in cols}
    for line, day, row in rows:
        for c in cols:
            text = table.cell(line, row, c)
            if text:
                values[c][(day - first).days] = table.number(line, text, c, MAX_THRESHOLD, integer=False)
    table.check()
    for i, _ in enumerate(cols):
        lines[("replay", "observed", i)] = (str(table.path), 1)
    return [{"column": c, "start": first.isoformat(), "values": v} for c, v in values.items()]


_READERS: dict[str, tuple[str, Callable[[_Table, LineMap], list[dict[str, Any]]]]] = {
    "demand_file": ("demand", read_demand),
    "capacity_file": ("capacity", read_capacity),
    "observed_file": ("observed", read_observed),
}


def read_replay(data: dict[str, Any], lines: LineMap) -> None:
    """Read the files ``replay`` names into ``replay.demand``, ``capacity`` and ``observed`` (in place).

    Done after ``extends`` and ``--set`` (so an override of a file name takes effect); a relative name is read
    relative to the YAML file that gave it (or the working directory for ``--set``).  A field already filled
    (a resolved scenario written by a run) is kept as it is.
    """
    rp = data.get("replay")
    if not isinstance(rp, dict):
        return
    for name, (target, reader) in _READERS.items():
        given = rp.get(name)
        if not isinstance(given, str) or rp.get(target):
            continue
        source, line = lines.get(("replay", name), ("--set", 0))
        base = Path.cwd() if source == "--set" else Path(source).parent
        where = source if source == "--set" else f"{source}:{line}"
        path = Path(given) if Path(given).is_absolute() else base / given
        rp[target] = reader(_Table(path, name, where), lines)
