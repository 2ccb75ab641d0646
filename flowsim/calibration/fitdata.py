"""Fit scenario inputs from a patient-level extract of hospital spells (``flowsim fit-data``).

Input: a CSV with one row per non-elective spell: admission time, medically fit
time, discharge time, discharge pathway (P0-P3) and a grouping column (the age
band by default).  Output: a scenario *fragment* (YAML) with

- ``arrivals``: ``rate_per_day``, ``month_factors``, ``weekday_factors`` and
  ``hour_profile``, fitted as the maximum-likelihood estimates of flowsim's own
  demand model, a Poisson process with rate ``rate x month x weekday x hour``
  (each factor set normalised to mean 1).  The hour profile is the share of
  admissions in each clock hour (times 24); month and weekday factors are fitted
  jointly by iterative proportional fitting of daily counts, so that a winter
  with more Mondays does not leak into the Monday factor.  ``rate_per_day`` is
  the level at which the fitted factors reproduce the observed admissions over
  the extract's span; for a whole year it equals the mean admissions per day to
  within a fraction of a percent (both are written in the comments).
- ``cohorts``: one per group, with its ``share`` of admissions, its
  ``pathway_mix`` and its ``acute_los`` (admission to medically fit, days), the
  candidate (exponential, lognormal, gamma, Weibull; maximum likelihood with the
  location fixed at 0) with the lowest AIC, in flowsim's distribution syntax.

The delay from medically fit to discharge is summarised per pathway as a
descriptive table: it is what the model *produces* (a delayed transfer of care),
so it is a calibration target to compare runs against, not an input.

Durations below ``min_los`` (default one hour, including exact zeros from
same-minute records) are raised to ``min_los`` before fitting, because none of
the candidates has mass at zero; how many were raised is written in the
fragment.  Negative durations are errors.

Every problem in the extract is reported as ``FILE:LINE: column 'NAME' (field): problem; allowed: ...``
(LINE is the CSV line, the header being line 1) via :class:`ExtractError`.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import math
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from flowsim.errors import FlowsimError
from flowsim.scenario.schema import MONTHS, PATHWAYS

FIELDS = ("admission", "medically_fit", "discharge", "pathway", "age_band")
DEFAULT_COLUMNS: dict[str, str] = {
    "admission": "admission_time",
    "medically_fit": "medically_fit_time",
    "discharge": "discharge_time",
    "pathway": "pathway",
    "age_band": "age_band",
}
#: Other common header names tried (case-insensitively) when the default is absent and no mapping is given.
ALIASES: dict[str, tuple[str, ...]] = {
    "admission": ("admission", "admission_datetime", "admission_date", "admitted", "adm_time", "admit_time"),
    "medically_fit": ("medically_fit", "medically_fit_datetime", "medically_fit_date", "mfft", "mffd",
                      "ready_for_discharge", "ready_for_discharge_time", "clinically_ready"),
    "discharge": ("discharge", "discharge_datetime", "discharge_date", "discharged", "disch_time"),
    "pathway": ("discharge_pathway", "pathway_code"),
    "age_band": ("ageband", "age_group", "age"),
}
FIELD_HELP = {
    "admission": "admission date-time (required on every row)",
    "medically_fit": "date-time the patient became medically fit for discharge (blank if not yet)",
    "discharge": "discharge date-time (blank if still in hospital)",
    "pathway": "discharge pathway P0-P3 (blank if not yet known)",
    "age_band": "age band, the default cohort grouping (e.g. 18-64, 65-84, 85+)",
}
CANDIDATES = ("exponential", "lognormal", "gamma", "weibull")
DEFAULT_MIN_LOS = 1.0 / 24.0
MIN_SPELLS_TO_FIT = 10
_MAX_REPORTED = 10
_DATE_HELP = ("a date-time like 2024-01-31 14:05 (ISO 8601, or a date alone) or day-first "
              "31/01/2024 14:05, one format per column")
_DAYFIRST = ("%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y")
_PATHWAY_RE = re.compile(r"^(?:p|pathway)?[\s_-]*([0-3])$", re.IGNORECASE)
_AGE_BANDS = {"18-64": "18-64", "16-64": "18-64", "0-64": "18-64", "under65": "18-64", "<65": "18-64",
              "65-84": "65-84", "85+": "85+", "85plus": "85+", "85andover": "85+", "over85": "85+"}


class ExtractError(FlowsimError):
    """An extract that cannot be read or fitted; one line per problem, each naming file, line and column."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _sig(x: float, digits: int = 5) -> float:
    return float(f"{x:.{digits}g}")


def _num(x: float, digits: int = 5) -> str:
    """A YAML number without exponent notation (PyYAML reads ``1e-05`` as a string)."""
    return np.format_float_positional(_sig(float(x), digits), trim="-")


# --------------------------------------------------------------------------- reading
def parse_columns(items: Iterable[str] | str | None) -> dict[str, str]:
    """``admission=adm_time,pathway=path`` (one string or several) to a field -> column mapping."""
    if items is None:
        return {}
    if isinstance(items, str):
        items = [items]
    out: dict[str, str] = {}
    for item in items:
        for part in filter(None, (p.strip() for p in item.split(","))):
            key, sep, col = part.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or not col.strip():
                raise ExtractError([f"--columns {part!r}: expected FIELD=COLUMN, e.g. admission=adm_time"])
            if key not in FIELDS:
                raise ExtractError([f"--columns {part!r}: unknown field {key!r}; allowed: {', '.join(FIELDS)}"])
            out[key] = col.strip()
    return out


@dataclass(frozen=True)
class Extract:
    """The parsed extract: one entry per spell, times as ``datetime64[s]`` (NaT where blank)."""

    path: Path
    columns: dict[str, str | None]
    group_column: str | None
    lines: np.ndarray
    admission: np.ndarray
    medically_fit: np.ndarray
    discharge: np.ndarray
    pathway: np.ndarray
    group: np.ndarray
    date_only: bool
    synthetic: bool
    sha256: str

    @property
    def n(self) -> int:
        """Number of spells in the extract."""
        return len(self.lines)


@dataclass(frozen=True)
class _Csv:
    """The extract's cells as read, before any parsing: what every reading check reports against."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: np.ndarray  # the CSV line each row starts on (the header is line 1)
    sha256: str

    def cells(self, i: int | None) -> list[str]:
        """Column ``i`` (blank everywhere when the column is absent)."""
        return [""] * len(self.rows) if i is None else [rec[i] for rec in self.rows]

    def shown(self) -> str:
        return ", ".join(self.header) or "none"


def _read_csv(path: Path) -> _Csv:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ExtractError([f"{path}: file not found"]) from None
    except OSError as exc:
        raise ExtractError([f"{path}: cannot read ({exc.strerror or exc})"]) from None
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a byte-order mark
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ExtractError([f"{path}:{line}: not UTF-8 text (save the extract as CSV UTF-8)"]) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ExtractError([f"{path}: the file is empty; expected a header line and one row per spell"]) from None
    except csv.Error as exc:
        raise ExtractError([f"{path}:1: not valid CSV ({exc})"]) from None
    rows, lines = [], []
    prev = reader.line_num
    try:
        for rec in reader:
            if not any(c.strip() for c in rec):
                prev = reader.line_num
                continue
            rows.append(rec)
            lines.append(prev + 1)  # the line the record starts on (a quoted field may span lines)
            prev = reader.line_num
    except csv.Error as exc:
        raise ExtractError([f"{path}:{reader.line_num}: not valid CSV ({exc})"]) from None
    return _Csv(path, header, rows, np.asarray(lines, dtype=int), digest)


def _field_columns(src: _Csv, mapping: dict[str, str]) -> tuple[dict[str, int | None], list[str]]:
    """Each field's column: the one ``--columns`` names (a problem if absent), else the default or an alias."""
    lower = {h.lower(): i for i, h in enumerate(src.header)}
    idx: dict[str, int | None] = {}
    problems = []
    for f in FIELDS:
        if f in mapping:
            idx[f] = lower.get(mapping[f].lower())
            if idx[f] is None:
                problems.append(f"{src.path}:1: no column {mapping[f]!r} (given by --columns {f}={mapping[f]}); "
                                f"the header has: {src.shown()}")
            continue
        found = [lower[n] for n in (DEFAULT_COLUMNS[f], *ALIASES[f]) if n in lower]
        idx[f] = found[0] if found else None
    return idx, problems


def _group_index(src: _Csv, idx: dict[str, int | None], group_by: str | None) -> tuple[int | None, list[str]]:
    """The grouping column: the age band by default, another column by name or field, or none."""
    if group_by is None or group_by == "age_band":
        return idx["age_band"], []
    if group_by.lower() == "none":
        return None, []
    lower = {h.lower(): i for i, h in enumerate(src.header)}
    i = idx[group_by] if group_by in FIELDS else lower.get(group_by.lower())
    if i is None:
        return None, [f"{src.path}:1: --group-by {group_by!r}: no such column; the header has: {src.shown()} "
                      "(or 'none' for one cohort)"]
    return i, []


def _resolve_columns(src: _Csv, mapping: dict[str, str],
                     group_by: str | None) -> tuple[dict[str, int | None], str | None, int | None]:
    """Column index of each field, and the grouping column's name and index; every problem at once."""
    idx, problems = _field_columns(src, mapping)
    required = ["admission", "medically_fit", "pathway"]
    if group_by in (None, "age_band"):
        required.append("age_band")
    for f in required:
        if idx[f] is None and f not in mapping:
            problems.append(f"{src.path}:1: missing column {DEFAULT_COLUMNS[f]!r} ({FIELD_HELP[f]}); the header "
                            f"has: {src.shown()}; name yours with --columns {f}=YOUR_COLUMN")
    group_idx, group_problems = _group_index(src, idx, group_by)
    problems += group_problems
    if problems:
        raise ExtractError(problems)
    return idx, (src.header[group_idx] if group_idx is not None else None), group_idx


def _best_datetimes(filled: pd.Series) -> pd.Series | None:
    """Parse with the one accepted format (ISO first, then day-first) that reads the most values."""
    best: pd.Series | None = None
    for fmt in ("ISO8601", *_DAYFIRST):
        try:
            parsed = pd.to_datetime(filled, format=fmt, errors="coerce")
        except (ValueError, TypeError):  # e.g. a mix of time-zone offsets
            continue
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_localize(None)  # keep the wall-clock time the hospital recorded
        if best is None or parsed.isna().sum() < best.isna().sum():
            best = parsed
        if not best.isna().any():
            break
    return best


def _row_problems(src: _Csv, rows: np.ndarray, column: str, problem: Callable[[int], str], more: str) -> list[str]:
    """One message per offending row (the first ``_MAX_REPORTED``), then a count of the rest."""
    out = [f"{src.path}:{src.lines[k]}: column {column!r} {problem(k)}" for k in rows[:_MAX_REPORTED]]
    if len(rows) > _MAX_REPORTED:
        out.append(f"{src.path}: column {column!r}: {len(rows) - _MAX_REPORTED} more {more}")
    return out


def _parse_times(src: _Csv, i: int | None, fld: str, required: bool) -> tuple[np.ndarray, list[str]]:
    """Column ``i`` as ``datetime64[s]`` (NaT where blank), with a problem per unreadable or missing value."""
    values = src.cells(i)
    column = src.header[i] if i is not None else ""
    s = pd.Series(values, dtype=object).str.strip()
    blank = (s == "").to_numpy()
    best = _best_datetimes(s[~blank])
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[s]")
    if best is not None:
        out[~blank] = best.to_numpy(dtype="datetime64[s]")
    problems = _row_problems(
        src, np.flatnonzero(~blank & np.isnat(out)), column,
        lambda k: f"({fld}): cannot read {values[k].strip()!r} as a date-time; allowed: {_DATE_HELP}",
        "rows that are not date-times")
    if required:
        problems += _row_problems(
            src, np.flatnonzero(blank), column,
            lambda k: f"({fld}): blank; every spell needs {FIELD_HELP[fld]}; allowed: {_DATE_HELP}", "blank rows")
    return out, problems


def _order_check(src: _Csv, times: dict[str, np.ndarray], cols: dict[str, str | None], early: str,
                 late: str) -> list[str]:
    """A problem for every spell whose ``late`` time is before its ``early`` time."""
    t0, t1 = times[early], times[late]
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~np.isnat(t0) & ~np.isnat(t1) & (t1 < t0))
    e_words, l_words = early.replace("_", " "), late.replace("_", " ")
    return _row_problems(
        src, bad, str(cols[late]),
        lambda k: f"({late}): {_fmt_time(t1[k])} is before the {e_words} time {_fmt_time(t0[k])} "
                  f"(column {str(cols[early])!r}); allowed: {l_words} at or after {e_words}",
        "rows with the same problem")


def _fmt_time(t: np.datetime64) -> str:
    return str(np.datetime_as_string(t, unit="m")).replace("T", " ")


def _width_problems(src: _Csv) -> list[str]:
    """Rows whose field count differs from the header's (stops after ``_MAX_REPORTED``)."""
    problems = []
    width = len(src.header)
    for rec, line in zip(src.rows, src.lines.tolist(), strict=True):
        if len(rec) != width:
            problems.append(f"{src.path}:{line}: {len(rec)} fields but the header has {width}; allowed: one value "
                            "per column (quote values that contain commas)")
            if len(problems) >= _MAX_REPORTED:
                break
    return problems


def _parse_pathways(src: _Csv, i: int | None) -> tuple[np.ndarray, list[str]]:
    """Pathway codes as ``P0``-``P3`` ('' where blank or the column is absent)."""
    pathway = np.array([""] * len(src.rows), dtype=object)
    if i is None:
        return pathway, []
    bad = []
    for k, value in enumerate(src.cells(i)):
        v = value.strip()
        m = _PATHWAY_RE.match(v) if v else None
        if m is not None:
            pathway[k] = f"P{m.group(1)}"
        elif v:
            bad.append(k)
    problems = _row_problems(
        src, np.asarray(bad, dtype=int), src.header[i],
        lambda k: f"(pathway): {src.rows[k][i].strip()!r} is not a discharge pathway; allowed: P0, P1, P2, P3 "
                  "(or 0-3, 'Pathway 1'), or blank if not yet known (leave deaths and other outcomes out of the "
                  "extract)",
        "rows with unknown pathways")
    return pathway, problems


def _parse_groups(src: _Csv, i: int | None) -> tuple[np.ndarray, list[str]]:
    """Each spell's group value (``all`` without a grouping column); a problem per blank value."""
    if i is None:
        return np.array(["all"] * len(src.rows), dtype=object), []
    group = np.array([v.strip() for v in src.cells(i)], dtype=object)
    blank = np.flatnonzero(group == "")[:_MAX_REPORTED]
    return group, [f"{src.path}:{src.lines[k]}: column {src.header[i]!r} (cohort grouping): blank; every spell needs "
                   "a group (or use --group-by none for one cohort)" for k in blank]


def _is_synthetic(src: _Csv) -> bool:
    """Whether the extract says it is flowsim's synthetic test data (its ``source`` column)."""
    from flowsim.calibration.synthetic import SYNTHETIC_LABEL

    source_i = {h.lower(): i for i, h in enumerate(src.header)}.get("source")
    return source_i is not None and any(rec[source_i].strip() == SYNTHETIC_LABEL for rec in src.rows[:1000])


def read_extract(path: str | Path, columns: dict[str, str] | None = None, group_by: str | None = None) -> Extract:
    """Read and check an extract; raise :class:`ExtractError` listing every problem found.

    Checks run in stages, each reporting all its problems before the next runs on data it can trust:
    the header, the row widths, every cell, then the order of each spell's times.
    """
    src = _read_csv(Path(path))
    if not src.rows:
        raise ExtractError([f"{src.path}: no spells after the header line; expected one row per spell"])
    idx, group_name, group_idx = _resolve_columns(src, dict(columns or {}), group_by)
    problems = _width_problems(src)
    if problems:
        raise ExtractError(problems)
    times: dict[str, np.ndarray] = {}
    for f, required in (("admission", True), ("medically_fit", False), ("discharge", False)):
        times[f], probs = _parse_times(src, idx[f], f, required)
        problems += probs
    pathway, probs = _parse_pathways(src, idx["pathway"])
    problems += probs
    group, probs = _parse_groups(src, group_idx)
    problems += probs
    if problems:
        raise ExtractError(problems)
    cols = {f: (src.header[i] if i is not None else None) for f, i in idx.items()}
    for early, late in (("admission", "medically_fit"), ("admission", "discharge"), ("medically_fit", "discharge")):
        problems += _order_check(src, times, cols, early, late)
    if problems:
        raise ExtractError(problems)
    adm = times["admission"]
    return Extract(path=src.path, columns=cols, group_column=group_name, lines=src.lines, admission=adm,
                   medically_fit=times["medically_fit"], discharge=times["discharge"], pathway=pathway, group=group,
                   date_only=bool(np.all(adm == adm.astype("datetime64[D]"))), synthetic=_is_synthetic(src),
                   sha256=src.sha256)


# --------------------------------------------------------------------------- fitting: length of stay
@dataclass(frozen=True)
class CandidateFit:
    """One candidate family fitted by maximum likelihood (location 0)."""

    family: str
    params: tuple[float, ...]  # scipy's (shape, scale) or (scale,) for the exponential
    k: int
    loglik: float
    aic: float
    spec: dict[str, Any]  # flowsim distribution syntax, e.g. {dist: gamma, mean, sd}
    mean: float
    sd: float

    def frozen(self) -> Any:
        """The fitted distribution as a frozen scipy distribution (for densities and quantiles)."""
        fam = _SCIPY[self.family]
        return fam(*self.params[:-1], loc=0, scale=self.params[-1])


_SCIPY = {"exponential": stats.expon, "lognormal": stats.lognorm, "gamma": stats.gamma,
          "weibull": stats.weibull_min}


def _spec(family: str, params: tuple[float, ...]) -> tuple[dict[str, Any], float, float]:
    if family == "exponential":
        (scale,) = params
        return {"dist": "exponential", "mean": _sig(scale)}, scale, scale
    shape, scale = params
    if family == "lognormal":
        mean = scale * math.exp(shape**2 / 2)
        sd = mean * math.sqrt(math.expm1(shape**2))
    elif family == "gamma":
        mean, sd = shape * scale, math.sqrt(shape) * scale
    else:
        mean = scale * math.gamma(1 + 1 / shape)
        sd = scale * math.sqrt(max(math.gamma(1 + 2 / shape) - math.gamma(1 + 1 / shape) ** 2, 0.0))
        return {"dist": "weibull", "shape": _sig(shape), "scale": _sig(scale)}, mean, sd
    return {"dist": family, "mean": _sig(mean), "sd": _sig(sd)}, mean, sd


def fit_los(x: np.ndarray) -> list[CandidateFit]:
    """Fit every candidate to positive durations ``x`` (days); best (lowest AIC) first.

    AIC = 2k - 2 log L with k the number of free parameters (1 for the
    exponential, 2 for the others; the location is fixed at 0, not fitted).
    """
    x = np.asarray(x, dtype=float)
    if x.size < 2 or not np.all(x > 0) or np.ptp(x) == 0:
        raise ValueError("fit_los needs at least two positive, not all equal durations")
    out = []
    for family in CANDIDATES:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            if family == "exponential":
                params: tuple[float, ...] = (float(x.mean()),)
            else:
                shape, _, scale = _SCIPY[family].fit(x, floc=0)
                params = (float(shape), float(scale))
            ll = float(np.sum(_SCIPY[family].logpdf(x, *params[:-1], loc=0, scale=params[-1])))
        if not (math.isfinite(ll) and all(math.isfinite(p) and p > 0 for p in params)):
            continue
        k = len(params)
        spec, mean, sd = _spec(family, params)
        out.append(CandidateFit(family, params, k, ll, 2 * k - 2 * ll, spec, mean, sd))
    if not out:
        raise ValueError("no candidate distribution could be fitted")
    return sorted(out, key=lambda c: c.aic)


# --------------------------------------------------------------------------- fitting: arrivals
@dataclass(frozen=True)
class ArrivalFit:
    """The fitted arrivals profile: rate per day and month, weekday and hour factors, with counts."""
    rate_per_day: float
    mean_per_day: float
    n: int
    first_day: dt.date
    days: int
    month_factors: dict[str, float]  # only months the extract covers; the others are 1.0 in the model
    month_days: dict[str, int]
    month_counts: dict[str, int]
    weekday_factors: list[float]
    weekday_counts: list[int]
    hour_profile: list[float] | None  # None when the extract has dates without times
    hour_counts: list[int]
    floored: list[str] = field(default_factory=list)


_FLOOR = 0.01  # a factor of an empty month/weekday/hour is raised to this (a positive factor is required)


def fit_arrivals(admission: np.ndarray, date_only: bool = False) -> ArrivalFit:
    """Maximum-likelihood month, weekday and hour factors and the daily level (see the module docstring)."""
    adm = np.asarray(admission, dtype="datetime64[s]")
    day = adm.astype("datetime64[D]")
    first, last = day.min(), day.max()
    n_days = int((last - first).astype(int)) + 1
    d_idx = (day - first).astype(int)
    dates = first + np.arange(n_days)
    month = dates.astype("datetime64[M]").astype(int) % 12
    weekday = (dates.astype(int) + 3) % 7  # 0 = Monday (1970-01-01 was a Thursday)
    counts = np.bincount(d_idx, minlength=n_days).astype(float)
    n_month = np.bincount(month, weights=counts, minlength=12)
    n_week = np.bincount(weekday, weights=counts, minlength=7)
    covered = np.bincount(month, minlength=12) > 0
    m_f, w_f = np.where(covered, 1.0, 0.0), np.ones(7)
    for _ in range(500):  # iterative proportional fitting of rate(day) = M[month] x W[weekday]
        exp_m = np.bincount(month, weights=w_f[weekday], minlength=12)
        new_m = np.divide(n_month, exp_m, out=np.zeros(12), where=exp_m > 0)
        exp_w = np.bincount(weekday, weights=new_m[month], minlength=7)
        new_w = np.divide(n_week, exp_w, out=np.zeros(7), where=exp_w > 0)
        scale = new_w.mean()
        new_w, new_m = new_w / scale, new_m * scale
        done = np.allclose(new_m, m_f, rtol=1e-12, atol=0) and np.allclose(new_w, w_f, rtol=1e-12, atol=0)
        m_f, w_f = new_m, new_w
        if done:
            break
    floored = []
    level = float(m_f[covered].mean())
    months = m_f / level
    for i in np.flatnonzero(covered & (months < _FLOOR)):
        floored.append(f"month {MONTHS[i]}")
    months = np.where(covered, np.maximum(months, _FLOOR), 1.0)
    months[covered] /= months[covered].mean()
    for i in np.flatnonzero(w_f < _FLOOR):
        floored.append(f"weekday {i}")
    w_f = np.maximum(w_f, _FLOOR)
    w_f /= w_f.mean()
    rate = float(counts.sum() / np.sum(months[month] * w_f[weekday]))
    secs = (adm - day).astype("timedelta64[s]").astype(int)
    hour_counts = np.bincount(np.clip(secs // 3600, 0, 23), minlength=24)
    hours: list[float] | None = None
    if not date_only:
        h = 24.0 * hour_counts / hour_counts.sum()
        floored += [f"hour {i}" for i in np.flatnonzero(h < _FLOOR)]
        h = np.maximum(h, _FLOOR)
        hours = [float(v) for v in h / h.mean()]
    return ArrivalFit(
        rate_per_day=rate, mean_per_day=float(counts.sum() / n_days), n=int(counts.sum()),
        first_day=dt.date.fromisoformat(str(first)), days=n_days,
        month_factors={MONTHS[i]: float(months[i]) for i in range(12) if covered[i]},
        month_days={MONTHS[i]: int(v) for i, v in enumerate(np.bincount(month, minlength=12))},
        month_counts={MONTHS[i]: int(v) for i, v in enumerate(n_month)},
        weekday_factors=[float(v) for v in w_f], weekday_counts=[int(v) for v in n_week],
        hour_profile=hours, hour_counts=[int(v) for v in hour_counts], floored=floored)


# --------------------------------------------------------------------------- fitting: the whole extract
@dataclass(frozen=True)
class CohortFit:
    """One cohort's share, pathway mix and acute length-of-stay candidates, best (lowest AIC) first."""
    name: str
    value: str  # the group's value in the extract
    age_band: str | None
    n: int
    share: float  # rounded, as written (shares sum to exactly 1)
    pathway_counts: dict[str, int]
    pathway_mix: dict[str, float]  # rounded, as written
    los: np.ndarray  # admission -> medically fit, days, after the min_los floor
    n_floored: int
    candidates: list[CandidateFit]

    @property
    def winner(self) -> CandidateFit:
        """The candidate with the lowest AIC."""
        return self.candidates[0]


@dataclass(frozen=True)
class FitResult:
    """Everything ``fit_extract`` found, and the scenario fragment it writes."""
    extract: Extract
    arrivals: ArrivalFit
    cohorts: list[CohortFit]
    delays: pd.DataFrame
    min_los: float
    fitted_on: dt.date
    notes: list[str]

    def fragment(self) -> dict[str, Any]:
        """The scenario fragment as plain data (what :meth:`fragment_yaml` writes, without comments)."""
        arr = self.arrivals
        arrivals: dict[str, Any] = {"rate_per_day": _sig(arr.rate_per_day)}
        if arr.month_factors:
            arrivals["month_factors"] = {m: _sig(v, 4) for m, v in arr.month_factors.items()}
        arrivals["weekday_factors"] = [_sig(v, 4) for v in arr.weekday_factors]
        if arr.hour_profile is not None:
            arrivals["hour_profile"] = [_sig(v, 4) for v in arr.hour_profile]
        cohorts: dict[str, Any] = {}
        for c in self.cohorts:
            entry: dict[str, Any] = {"label": c.value}
            if c.age_band:
                entry["age_band"] = c.age_band
            entry["share"] = c.share
            entry["acute_los"] = dict(c.winner.spec)
            entry["pathway_mix"] = dict(c.pathway_mix)
            cohorts[c.name] = entry
        return {"arrivals": arrivals, "cohorts": cohorts}

    def aic_table(self) -> pd.DataFrame:
        """Every cohort's candidates with their parameters and AIC, as a table."""
        rows = []
        for c in self.cohorts:
            best = c.winner.aic
            weights = np.exp(-0.5 * (np.array([x.aic for x in c.candidates]) - best))
            weights /= weights.sum()
            for cand, w in zip(c.candidates, weights, strict=True):
                rows.append({"cohort": c.name, "group": c.value, "family": cand.family, "n": len(c.los),
                             "k": cand.k, "loglik": cand.loglik, "aic": cand.aic, "delta_aic": cand.aic - best,
                             "akaike_weight": float(w), "winner": cand is c.winner, "mean_days": cand.mean,
                             "sd_days": cand.sd, "flowsim": flow_syntax(cand.spec)})
        return pd.DataFrame(rows)

    def factor_table(self) -> pd.DataFrame:
        """The month, weekday and hour factors with the admissions behind each, as a table."""
        a = self.arrivals
        rows = [{"factor": "month", "key": m, "value": a.month_factors.get(m, float("nan")),
                 "admissions": a.month_counts[m], "days": a.month_days[m]} for m in MONTHS]
        rows += [{"factor": "weekday", "key": d, "value": a.weekday_factors[i], "admissions": a.weekday_counts[i],
                  "days": None} for i, d in enumerate(WEEKDAYS)]
        rows += [{"factor": "hour", "key": f"{h:02d}", "value": (a.hour_profile or [float("nan")] * 24)[h],
                  "admissions": a.hour_counts[h], "days": a.days} for h in range(24)]
        return pd.DataFrame(rows)

    def fragment_yaml(self) -> str:
        """The scenario fragment (YAML text), each fitted value marked FITTED with its source."""
        return _render_yaml(self)


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def flow_syntax(spec: dict[str, Any]) -> str:
    """A distribution spec as it is written in a scenario file, e.g. {dist: gamma, mean: 5.1, sd: 3.2}."""
    return "{" + ", ".join(f"{k}: {v if isinstance(v, str) else _num(v)}" for k, v in spec.items()) + "}"


def _round_to_one(counts: dict[str, int], decimals: int = 6) -> dict[str, float]:
    """Fractions count/total rounded so they sum to exactly 1 (largest remainder), no non-zero count at 0."""
    unit = 10**decimals
    total = sum(counts.values())
    exact = {k: v * unit / total for k, v in counts.items()}
    out = {k: math.floor(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - out[k], reverse=True)[: unit - sum(out.values())]:
        out[k] += 1
    for k in counts:
        if counts[k] > 0 and out[k] == 0:
            out[k] = 1
            out[max(out, key=lambda j: out[j])] -= 1
    return {k: v / unit for k, v in out.items() if v > 0}


def _cohort_name(value: str, prefix: str) -> str:
    v = value.strip().lower().replace("+", "_plus").replace("<", "under_").replace(">", "over_")
    v = re.sub(r"[^a-z0-9]+", "_", v).strip("_") or "blank"
    return f"{prefix}_{v}"[:64]


def _age_band(value: str) -> str | None:
    key = re.sub(r"[\s_]+", "", value.strip().lower()).replace("\u2013", "-").replace("\u2212", "-")
    return _AGE_BANDS.get(key)


def _natural(value: str) -> tuple[float, str]:
    m = re.search(r"\d+", value)
    return (float(m.group()) if m else math.inf, value)


def delay_table(ex: Extract) -> pd.DataFrame:
    """Medically fit to discharge (days) by pathway: descriptive, a model *output* to compare runs against."""
    ok = ~np.isnat(ex.medically_fit) & ~np.isnat(ex.discharge) & (ex.pathway != "")
    delay = (ex.discharge[ok] - ex.medically_fit[ok]).astype("timedelta64[s]").astype(float) / 86400.0
    pw = ex.pathway[ok]
    rows = []
    for p in (*PATHWAYS, "all"):
        d = delay if p == "all" else delay[pw == p]
        if d.size == 0:
            continue
        rows.append({"pathway": p, "spells": int(d.size), "mean_days": float(d.mean()),
                     "median_days": float(np.median(d)), "p90_days": float(np.quantile(d, 0.9)),
                     "p95_days": float(np.quantile(d, 0.95)), "max_days": float(d.max()),
                     "over_1_day_pct": float(100.0 * np.mean(d > 1.0)), "bed_days": float(d.sum())})
    return pd.DataFrame(rows, columns=["pathway", "spells", "mean_days", "median_days", "p90_days", "p95_days",
                                       "max_days", "over_1_day_pct", "bed_days"])


def fit_extract(path: str | Path, columns: dict[str, str] | None = None, group_by: str | None = None, *,
                min_los: float = DEFAULT_MIN_LOS, today: dt.date | None = None) -> FitResult:
    """Read an extract and fit arrivals, cohorts (share, pathway mix, acute LOS) and the delay table."""
    if not (min_los > 0 and math.isfinite(min_los)):
        raise ExtractError([f"--min-los must be a positive number of days, got {min_los}"])
    ex = read_extract(path, columns, group_by)
    arrivals = fit_arrivals(ex.admission, ex.date_only)
    if arrivals.days < 7:
        raise ExtractError([f"{ex.path}: admissions span only {arrivals.days} days; at least 7 are needed to fit "
                            "weekday factors"])
    notes = _arrival_notes(ex, arrivals)
    cohorts, cohort_notes = _fit_cohorts(ex, min_los)
    notes += cohort_notes + _extract_notes(ex, cohorts, min_los)
    return FitResult(extract=ex, arrivals=arrivals, cohorts=cohorts, delays=delay_table(ex), min_los=min_los,
                     fitted_on=today or dt.date.today(), notes=notes)


def _arrival_notes(ex: Extract, arrivals: ArrivalFit) -> list[str]:
    """What the fragment's arrivals leave out or force: no hour profile, months not covered, empty factors."""
    notes: list[str] = []
    if ex.date_only:
        notes.append("admission times are dates without times: hour_profile not fitted (the scenario's is kept)")
    missing = [m for m in MONTHS if m not in arrivals.month_factors]
    if missing:
        notes.append(f"the extract does not cover {', '.join(missing)}: their month factors are not fitted "
                     "(the model uses 1.0); the fitted months are normalised to mean 1 among themselves")
    if arrivals.floored:
        notes.append(f"no admissions at all in {', '.join(arrivals.floored)}: factor set to {_FLOOR} "
                     "(a factor must be positive)")
    return notes


def _cohort_names(ex: Extract) -> tuple[str, dict[str, str]]:
    """The name prefix (``age`` when grouped by age band) and each group value's cohort name, in natural
    order of the values; two values that would share a name are an error."""
    prefix = "age" if ex.group_column is not None and ex.group_column == ex.columns.get("age_band") else (
        re.sub(r"[^a-z0-9]+", "_", (ex.group_column or "").lower()).strip("_") or "cohort")
    values = sorted(set(ex.group.tolist()), key=_natural)
    if ex.group_column is None:
        return prefix, {"all": "all"}
    names = {v: _cohort_name(v, prefix if prefix[:1].isalpha() else f"c_{prefix}") for v in values}
    clash: dict[str, list[str]] = {}
    for v, nm in names.items():
        clash.setdefault(nm, []).append(v)
    dup = [f"{', '.join(repr(v) for v in vs)} all become cohort {nm!r}" for nm, vs in clash.items() if len(vs) > 1]
    if dup:
        raise ExtractError([f"{ex.path}: column {ex.group_column!r}: {d}; make the group values distinct"
                            for d in dup])
    return prefix, names


def _cohort_los(ex: Extract, sel: np.ndarray, min_los: float) -> tuple[np.ndarray, int]:
    """Admission to medically fit (days) of the selected spells that have one, raised to ``min_los``; and how
    many were raised."""
    has_fit = sel & ~np.isnat(ex.medically_fit)
    los = (ex.medically_fit[has_fit] - ex.admission[has_fit]).astype("timedelta64[s]").astype(float) / 86400.0
    return np.maximum(los, min_los), int(np.sum(los < min_los))


def _fit_cohort_los(los: np.ndarray, pathway_counts: dict[str, int]) -> list[CandidateFit]:
    """The candidate fits of one cohort; ``ValueError`` saying why a cohort cannot be fitted."""
    if len(los) < MIN_SPELLS_TO_FIT or np.ptp(los) == 0:
        raise ValueError(f"{len(los)} spells with a medically fit time (distinct values needed: at least "
                         f"{MIN_SPELLS_TO_FIT}) - too few to fit a length of stay; merge groups or use --group-by none")
    if sum(pathway_counts.values()) == 0:
        raise ValueError("no spell has a discharge pathway; at least one is needed for pathway_mix")
    return fit_los(los)


def _fit_cohorts(ex: Extract, min_los: float) -> tuple[list[CohortFit], list[str]]:
    """One fit per group value, and notes on weakly supported ones; every cohort that cannot be fitted is
    reported at once."""
    prefix, names = _cohort_names(ex)
    shares = _round_to_one({v: int(np.sum(ex.group == v)) for v in names})
    cohorts, problems, notes = [], [], []
    for v, name in names.items():
        sel = ex.group == v
        los, n_floor = _cohort_los(ex, sel, min_los)
        pw = ex.pathway[sel]
        pcounts = {p: int(np.sum(pw == p)) for p in PATHWAYS}
        try:
            cands = _fit_cohort_los(los, pcounts)
        except ValueError as exc:
            where = f"{ex.path}: cohort {name!r}" + (f" ({ex.group_column} = {v!r})" if ex.group_column else "")
            problems.append(f"{where}: {exc}")
            continue
        if len(los) < 100:
            notes.append(f"cohort {name}: only {len(los)} stays; the AIC choice of family is weak below ~100")
        cohorts.append(CohortFit(name=name, value=v, age_band=_age_band(v) if prefix == "age" else None,
                                 n=int(sel.sum()), share=shares[v], pathway_counts=pcounts,
                                 pathway_mix=_round_to_one(pcounts), los=los, n_floored=n_floor,
                                 candidates=cands))
    if problems:
        raise ExtractError(problems)
    return cohorts, notes


def _extract_notes(ex: Extract, cohorts: list[CohortFit], min_los: float) -> list[str]:
    """What the fits left out or changed: spells without a fit time or pathway, no discharge column, floors."""
    notes = []
    n_no_fit = int(np.sum(np.isnat(ex.medically_fit)))
    if n_no_fit:
        notes.append(f"{n_no_fit} spells have no medically fit time: counted in arrivals and shares, left out of "
                     "the length-of-stay fits (if they are still in hospital, the fitted stays are biased short)")
    n_no_pw = int(np.sum(ex.pathway == ""))
    if n_no_pw:
        notes.append(f"{n_no_pw} spells have no pathway: left out of pathway_mix")
    if ex.columns.get("discharge") is None:
        notes.append("no discharge column: the medically-fit-to-discharge delay table is not produced")
    n_floor_all = sum(c.n_floored for c in cohorts)
    if n_floor_all:
        notes.append(f"{n_floor_all} stays shorter than min_los = {min_los:.4g} days (including zeros) were set "
                     "to min_los before fitting")
    return notes


# --------------------------------------------------------------------------- output
def _render_yaml(res: FitResult) -> str:
    """The fragment as commented YAML: provenance, arrivals, cohorts, then the descriptive delay table."""
    frag = res.fragment()
    tag = f"# FITTED from {res.extract.path.name}"
    out = [*_yaml_header(res), *_yaml_arrivals(res, frag["arrivals"], tag), "cohorts:"]
    for c, (cname, entry) in zip(res.cohorts, frag["cohorts"].items(), strict=True):
        out += _yaml_cohort(res, c, cname, entry, tag)
    out += _yaml_delays(res.delays)
    return "\n".join(out) + "\n"


def _provenance(res: FitResult) -> str:
    return f"FITTED from {res.extract.path.name} on {res.fitted_on.isoformat()}"


def _yaml_header(res: FitResult) -> list[str]:
    from flowsim import __version__

    ex, arr = res.extract, res.arrivals
    last_day = arr.first_day + dt.timedelta(days=arr.days - 1)
    out = [
        f"# Scenario fragment FITTED from {ex.path} by `flowsim fit-data` (flowsim {__version__}) on "
        f"{res.fitted_on.isoformat()}.",
        f"# Extract: {ex.n} spells admitted {arr.first_day} to {last_day} ({arr.days} days); sha256 {ex.sha256[:16]}.",
        f"# Columns used: {', '.join(f'{k}={v}' for k, v in ex.columns.items() if v)};",
        f"# cohorts grouped by {ex.group_column or 'nothing (one cohort)'}.",
    ]
    if ex.synthetic:
        out.append("# NOTE: this extract is labelled 'SYNTHETIC - not real patient data' (its source column).")
    out += [
        "# To use: copy these sections into a scenario. `cohorts` REPLACES the scenario's cohorts (delete the old",
        "# ones, and rename them in any service `cohorts:` list); each `arrivals` field given here replaces the",
        "# scenario's (annual_growth and surges are kept). Admissions in an extract include readmissions, which",
        "# the model generates itself: lower rate_per_day by the readmitted share if the scenario has readmission.",
    ]
    return out + [f"# Note: {n}" for n in res.notes]


def _yaml_arrivals(res: FitResult, a: dict[str, Any], tag: str) -> list[str]:
    arr, prov = res.arrivals, _provenance(res)
    out = ["arrivals:",
           f"  # {prov}: {arr.n} admissions over {arr.days} days = {arr.mean_per_day:.4g} a day on average;",
           "  # rate_per_day is the level at which the fitted factors reproduce that count (Poisson maximum",
           "  # likelihood); each set of factors is relative (mean 1)",
           f"  rate_per_day: {_num(a['rate_per_day'])}   {tag}"]
    if "month_factors" in a:
        out.append(f"  # {prov}: admissions per day in each calendar month, adjusted for weekdays")
        items = [f"{m}: {_num(v, 4)}" for m, v in a["month_factors"].items()]
        out.append("  month_factors: {" + ", ".join(items[:6]) + ("," if len(items) > 6 else "}"))
        if len(items) > 6:
            out.append("                  " + ", ".join(items[6:]) + "}")
        out[-1] += f"   {tag}"
    out.append(f"  # {prov}: admissions per day on each weekday, Monday first, adjusted for months")
    out.append(f"  weekday_factors: [{', '.join(_num(v, 4) for v in a['weekday_factors'])}]   {tag}")
    if "hour_profile" in a:
        hp = [_num(v, 4) for v in a["hour_profile"]]
        out.append(f"  # {prov}: share of admissions in each clock hour 00-23 (times 24)")
        out.append(f"  hour_profile: [{', '.join(hp[:12])},")
        out.append(f"                 {', '.join(hp[12:])}]   {tag}")
    return out


def _yaml_cohort(res: FitResult, c: CohortFit, cname: str, entry: dict[str, Any], tag: str) -> list[str]:
    ex, prov = res.extract, _provenance(res)
    grp = f"{ex.group_column} = {c.value}" if ex.group_column else "all spells"
    n_pw = sum(c.pathway_counts.values())
    out = [f"  {cname}:",
           f"    # {prov}: {grp}: {c.n} of {ex.n} spells ({100 * c.n / ex.n:.1f}%),",
           f"    # {len(c.los)} with a medically fit time, {n_pw} with a pathway "
           f"({', '.join(f'{p} {k}' for p, k in c.pathway_counts.items())}).",
           "    # acute_los: admission -> medically fit (days), maximum likelihood with location 0;",
           f"    # AIC of each candidate (lower is better; n = {len(c.los)}):"]
    for cand in c.candidates:
        mark = "chosen" if cand is c.winner else f"+{cand.aic - c.winner.aic:.1f}"
        out.append(f"    #   {cand.family:<11} AIC {cand.aic:11.1f} ({mark}) {flow_syntax(cand.spec)}")
    if c.n_floored:
        out.append(f"    #   ({c.n_floored} stays below {res.min_los:.4g} days raised to it before fitting)")
    out.append(f"    label: {_scalar(entry['label'])}")
    if "age_band" in entry:
        out.append(f"    age_band: {_scalar(entry['age_band'])}")
    out.append(f"    share: {_num(entry['share'], 7)}   {tag}")
    out.append(f"    acute_los: {flow_syntax(entry['acute_los'])}   {tag}")
    out.append("    pathway_mix: {" + ", ".join(f"{p}: {_num(v, 7)}" for p, v in entry["pathway_mix"].items())
               + f"}}   {tag}")
    return out


def _yaml_delays(delays: pd.DataFrame) -> list[str]:
    out = ["", "# Medically fit -> discharge (days) by pathway, from the extract. DESCRIPTIVE ONLY, not a model",
           "# input: the model produces these waits itself (delayed transfers of care); compare runs with them."]
    if delays.empty:
        return [*out, "#   (no spells with medically fit time, discharge time and pathway)"]
    out.append(f"#   {'pathway':<8}{'spells':>8}{'mean':>8}{'median':>8}{'p90':>8}{'p95':>8}{'>1 day':>8}"
               f"{'bed-days':>10}")
    for _, r in delays.iterrows():
        out.append(f"#   {r['pathway']:<8}{r['spells']:>8}{r['mean_days']:>8.2f}{r['median_days']:>8.2f}"
                   f"{r['p90_days']:>8.2f}{r['p95_days']:>8.2f}{r['over_1_day_pct']:>7.1f}%"
                   f"{r['bed_days']:>10.0f}")
    return out


def _scalar(value: str) -> str:
    import yaml

    return yaml.safe_dump(value, default_style=None).removesuffix("\n...\n").strip()


def merge_fragment(base: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    """A scenario's data with a fitted fragment applied: the fragment's cohorts replace the scenario's, its
    ``arrivals.month_factors`` replaces the scenario's mapping whole, everything else deep-merges.  A step-up
    stream naming a replaced cohort follows the fitted cohort of the same age band (else the first)."""
    from flowsim.scenario.loader import _deep_merge

    out = dict(base)
    if "cohorts" in fragment:
        out.pop("cohorts", None)
        if isinstance(base.get("step_up"), list):
            out["step_up"] = _step_up_cohorts(base, fragment["cohorts"])
    if isinstance(out.get("arrivals"), dict) and "month_factors" in fragment.get("arrivals", {}):
        out["arrivals"] = {k: v for k, v in out["arrivals"].items() if k != "month_factors"}
    return _deep_merge(out, fragment)


def _step_up_cohorts(base: dict[str, Any], fitted: dict[str, Any]) -> Any:
    """The base's step-up streams with each cohort mapped onto the fitted cohorts by age band."""
    streams = base.get("step_up")
    if not isinstance(streams, list) or not fitted:
        return streams
    old = base.get("cohorts") or {}
    by_band = {c.get("age_band"): name for name, c in fitted.items() if isinstance(c, dict)}
    out = []
    for su in streams:
        if isinstance(su, dict) and su.get("cohort") not in fitted:
            band = (old.get(su.get("cohort")) or {}).get("age_band")
            su = {**su, "cohort": by_band.get(band, next(iter(fitted)))}
        out.append(su)
    return out


def check_against(fragment_path: Path, scenario_path: Path) -> Any:
    """Validate the fragment merged into a scenario file; raise ScenarioError listing what does not fit."""
    from flowsim.errors import ScenarioError
    from flowsim.scenario.loader import finish_scenario, load_raw

    base, lines = load_raw(scenario_path)
    frag, frag_lines = load_raw(fragment_path)
    merged_lines = {k: v for k, v in lines.items() if not (k and k[0] == "cohorts")}
    merged_lines.update(frag_lines)
    try:
        return finish_scenario(merge_fragment(base, frag), merged_lines, str(scenario_path))
    except ScenarioError as exc:
        raise ScenarioError([f"{fragment_path} merged into {scenario_path}: {p}" for p in exc.problems]) from None


def write_tables(res: FitResult, outdir: Path) -> list[Path]:
    """The AIC, arrival-factor and delay tables as CSV in ``outdir`` (the figures are drawn by
    ``flowsim.report.fitdata_figures``)."""
    from flowsim.rundir import atomic_write

    outdir.mkdir(parents=True, exist_ok=True)
    return [
        atomic_write(outdir / "los_aic.csv", lambda p: res.aic_table().to_csv(p, index=False)),
        atomic_write(outdir / "arrival_factors.csv", lambda p: res.factor_table().to_csv(p, index=False)),
        atomic_write(outdir / "delay_by_pathway.csv", lambda p: res.delays.to_csv(p, index=False)),
    ]
