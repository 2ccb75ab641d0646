"""An Excel workbook of a run or a comparison, for analysts who carry on in a spreadsheet.

One implementation for every caller: ``flowsim run --xlsx`` (into the run directory, listed in its manifest),
``flowsim export DIR --xlsx`` (a complete run or comparison directory) and the web app's download all call
:func:`write_workbook` / :func:`workbook_bytes` on a directory flowsim wrote, so the workbook holds exactly the
numbers of that directory's files (``summary.json``, ``quarterly.csv``, ``monthly.csv``, ``daily.csv`` and,
for a comparison, ``differences.csv``, ``economics.csv``, ``targets.csv``).

Sheets: ``README`` (what the workbook is: scenario, seed, replications, window, versions, the changes made to the
scenario file, and what each sheet holds), ``KPIs`` (every measure with its mean, 95% CI, sd and percentiles),
``Quarters`` and ``Months`` (delayed days with CIs and the BCF rates), ``Daily`` (the mean across replications of
each day: ``daily.csv`` keeps every replication's rows) and, for a comparison, ``Compared`` (paired differences
with CIs), ``Value for money`` (the decision rule's table) and ``Standards``.  Every table row names its scenario.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from flowsim.errors import FlowsimError
from flowsim.report.sources import detect_kind, read_csv, read_json
from flowsim.rundir import COMPLETE, atomic_write

#: The workbook's file name inside a run or comparison directory.
WORKBOOK = "results.xlsx"
#: Written into the workbook's properties, so flowsim knows a workbook it may replace.
CREATOR = "flowsim"

SHEETS_RUN = ("README", "KPIs", "Quarters", "Months", "Daily")
SHEETS_COMPARISON = (*SHEETS_RUN, "Compared", "Value for money", "Standards")

_SHEET_NOTES = {
    "KPIs": "every measure of each scenario: mean over replications, 95% confidence interval (kept inside the "
            "measure's range), sd, and the 5th, 50th and 95th percentiles of single replications",
    "Quarters": "per NHS quarter: DTOC delayed days (midnight census summed) with 95% CIs, the BCF rates per "
                "100,000 aged 18+, NCTR, stranded patients and Discharge Ready Date delays",
    "Months": "the same per calendar month",
    "Daily": "per day: the MEAN ACROSS REPLICATIONS of each daily measure (daily.csv in the directory has every "
             "replication's rows)",
    "Compared": "each option minus the baseline, paired replication by replication (common random numbers): mean "
                "difference with its 95% CI; 'distinguishable' when the interval excludes zero",
    "Value for money": "the decision rule's table (net cost, delayed bed-days avoided, dominance, the efficiency "
                       "frontier, net benefit): words follow the 95% intervals",
    "Standards": "each scenario against the national standards: met or missed only when the whole 95% interval is "
                 "on one side",
}


def _runs(directory: Path, kind: str) -> list[tuple[str, Path]]:
    """(display name, run directory) of each scenario: one for a run, baseline first for a comparison."""
    if kind == "run":
        return [(str(read_json(directory / "summary.json").get("scenario") or directory.name), directory)]
    meta = read_json(directory / "comparison.json")
    entries = [meta.get("baseline") or {}, *(meta.get("options") or [])]
    return [(str(e.get("name")), directory / str(e.get("dir"))) for e in entries]


def _kpis(name: str, summary: Mapping[str, Any]) -> pd.DataFrame:
    rows = [{"scenario": name, "kpi": k, "label": v.get("label"), "unit": v.get("unit"), "mean": v.get("mean"),
             "ci_low": v.get("ci_low"), "ci_high": v.get("ci_high"), "sd": v.get("sd"), "p5": v.get("p5"),
             "p50": v.get("p50"), "p95": v.get("p95"), "n": v.get("n"), "definition": v.get("definition")}
            for k, v in (summary.get("kpis") or {}).items()]
    return pd.DataFrame(rows)


def _daily_means(run_dir: Path) -> pd.DataFrame:
    daily = read_csv(run_dir / "daily.csv")
    assert daily is not None
    if daily.empty or "day" not in daily.columns:
        return daily
    keys = [c for c in ("date", "day") if c in daily.columns]
    numeric = [c for c in daily.select_dtypes("number").columns if c not in (*keys, "replication")]
    return daily.groupby(keys, sort=True)[numeric].mean().reset_index()


def _with_scenario(name: str, frame: pd.DataFrame | None) -> pd.DataFrame:
    frame = frame if frame is not None else pd.DataFrame()
    return frame.assign(scenario=name)[["scenario", *frame.columns]] if not frame.empty else frame


def _readme(directory: Path, kind: str, runs: list[tuple[str, Path]], sheets: tuple[str, ...]) -> pd.DataFrame:
    rows: list[tuple[str, Any]] = [("Workbook", f"flowsim {kind} results from {directory.resolve()}")]
    for i, (name, run_dir) in enumerate(runs):
        s = read_json(run_dir / "summary.json")
        role = "Scenario" if kind == "run" else ("Baseline" if i == 0 else f"Option {i}")
        window = s.get("window") or {}
        rows += [(role, name), ("  scenario hash", s.get("scenario_hash")), ("  seed", s.get("seed")),
                 ("  replications", s.get("replications")),
                 ("  results window", f"{window.get('start_date')} to {window.get('end_date')} (end exclusive), "
                                      f"warm-up {window.get('warmup_days')} days"),
                 ("  starting conditions", window.get("initial_conditions"))]
        changes = s.get("overrides") or []
        rows += [("  changed from the scenario file", c) for c in changes] or [
            ("  changed from the scenario file", "nothing: the scenario as written")]
        if i == 0:
            rows += [("Created", s.get("created")), ("Command", " ".join(map(str, s.get("command") or [])))]
            rows += [(f"Version of {pkg}", v) for pkg, v in (s.get("versions") or {}).items()]
    rows += [("Confidence intervals", "95% over replications; a paired difference uses common random numbers")]
    rows += [(f"Sheet {sheet}", _SHEET_NOTES[sheet]) for sheet in sheets if sheet in _SHEET_NOTES]
    return pd.DataFrame(rows, columns=["item", "value"])


def tables(directory: Path) -> dict[str, pd.DataFrame]:
    """The workbook's sheets as tables, by sheet name, read from a run or comparison directory."""
    directory = Path(directory)
    kind = detect_kind(directory)
    if kind not in ("run", "comparison"):
        raise FlowsimError(f"{directory}: a {kind} directory; an Excel workbook is made of a run or a comparison "
                           "directory (flowsim run or flowsim compare)")
    runs = _runs(directory, kind)
    sheets = SHEETS_RUN if kind == "run" else SHEETS_COMPARISON
    out: dict[str, pd.DataFrame] = {"README": _readme(directory, kind, runs, sheets)}
    out["KPIs"] = pd.concat([_kpis(n, read_json(d / "summary.json")) for n, d in runs], ignore_index=True)
    for sheet, file in (("Quarters", "quarterly.csv"), ("Months", "monthly.csv")):
        out[sheet] = pd.concat([_with_scenario(n, read_csv(d / file)) for n, d in runs], ignore_index=True)
    out["Daily"] = pd.concat([_with_scenario(n, _daily_means(d)) for n, d in runs], ignore_index=True)
    if kind == "comparison":
        for sheet, file in (("Compared", "differences.csv"), ("Value for money", "economics.csv"),
                            ("Standards", "targets.csv")):
            frame = read_csv(directory / file, required=sheet == "Compared")
            out[sheet] = frame if frame is not None else pd.DataFrame()
    return out


def _write(sheets: Mapping[str, pd.DataFrame], target: Any) -> None:
    with pd.ExcelWriter(target, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            frame.to_excel(writer, sheet_name=name, index=False)
            ws = writer.sheets[name]
            ws.freeze_panes = "A2"
            for col in ws.columns:  # wide enough to read the header and the first rows
                width = max(len(str(c.value)) if c.value is not None else 0 for c in col[:50])
                ws.column_dimensions[col[0].column_letter].width = min(max(10, width + 2), 80)
        writer.book.properties.creator = CREATOR
        writer.book.properties.title = "flowsim results"


def workbook_bytes(directory: Path) -> bytes:
    """The workbook of ``directory`` as bytes (a web page's download)."""
    buffer = io.BytesIO()
    _write(tables(directory), buffer)
    return buffer.getvalue()


def write_workbook(directory: Path, out: Path | None = None) -> Path:
    """Write the workbook of ``directory`` to ``out`` (default ``DIRECTORY/results.xlsx``), atomically."""
    directory = Path(directory)
    sheets = tables(directory)
    return atomic_write(out or directory / WORKBOOK, lambda p: _write(sheets, p))


def is_flowsim_workbook(path: Path) -> bool:
    """A workbook flowsim wrote (its document properties name flowsim as the creator)."""
    try:
        with zipfile.ZipFile(path) as z:
            core = z.read("docProps/core.xml").decode("utf-8", "replace")
    except (OSError, KeyError, zipfile.BadZipFile):
        return False
    return f"<dc:creator>{CREATOR}</dc:creator>" in core


def manifest_lists(directory: Path, name: str) -> bool:
    """Whether the directory's completion manifest lists ``name`` (a file the command itself wrote)."""
    try:
        done = json.loads((directory / COMPLETE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(done, dict) and name in (done.get("files") or {})
