"""Write a run directory: every file atomically, so an interrupted write never leaves half a file.

Layout (DESIGN.md section 5)::

    summary.json      KPIs with 95% CIs, quarters and months, scenario hash, seed, versions, command
    kpis.csv          one row per replication: the KPI values behind the CIs
    daily.csv         one row per replication x day
    quarterly.csv     DTOC delayed days per NHS quarter with CIs (and the BCF rate), NCTR, stranded, DRD delay
    monthly.csv       the same per calendar month
    drd_bands_monthly.csv  Discharge Ready Date delay bands per month (discharges, %, delay days, CIs)
    patients.parquet  per-stay records of every replication
    nodes_daily.csv   per node (pathway x locality) and day: occupancy, capacity, queue, wait, cost quantiles
    escalation.csv    OPEL level changes and escalation actions (scenarios with escalation)
    scenario.yaml     the resolved scenario (extends and --set applied)
    figures/*.png     drawn by the presentation layer when it passes ``draw`` (the domain draws nothing)
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from flowsim.experiment.runner import RunResult
from flowsim.results.kpi import KPIS, kpi_info
from flowsim.scenario.loader import scenario_to_dict, scenario_to_yaml
from flowsim.scenario.provenance import describe_overrides, initial_conditions, render_assumptions

PACKAGES = ("flowsim", "simpy", "numpy", "pandas", "scipy", "pydantic", "pyarrow", "matplotlib")


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes owner-only files; outputs are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


#: Draws a run's figures into a directory and returns the files (the presentation layer passes one in).
RunDrawer = Callable[[RunResult, Path], Sequence[Path]]


def atomic_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def versions() -> dict[str, str]:
    """Python's and every key package's version, for the reproducibility record of each output."""
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def summary_dict(result: RunResult, command: list[str] | None = None) -> dict[str, Any]:
    """The JSON summary of a run: everything a reader needs to trust and reproduce it."""
    sc = result.scenario
    table = result.summary()
    kpis = {}
    for name, row in table.iterrows():
        info = kpi_info(str(name))
        stats = {c: _clean(float(row[c])) for c in ("mean", "ci_low", "ci_high", "sd", "p5", "p50", "p95")}
        kpis[str(name)] = {"label": info.label, "unit": info.unit, "definition": info.definition,
                           **stats, "n": int(row["n"])}
    reps = result.replications
    data = scenario_to_dict(sc)
    return {
        "scenario": sc.name,
        "scenario_hash": result.scenario_id,
        "seed": result.seed,
        "replications": len(reps),
        "overrides": describe_overrides(data),
        "window": {"start_date": sc.simulation.start_date.isoformat(),
                   "end_date": sc.simulation.end_date.isoformat(),
                   "warmup_days": sc.simulation.warmup_days,
                   "initial_conditions": initial_conditions(data)},
        "confidence_level": 0.95,
        "kpis": kpis,
        "quarters": [{k: _clean(v) for k, v in r.items()} for r in result.periods("Q").to_dict("records")],
        "months": [{k: _clean(v) for k, v in r.items()} for r in result.periods("M").to_dict("records")],
        "invariant_violations": result.checks,
        "performance": {
            "seconds_per_replication": [round(r.seconds, 4) for r in reps],
            "kernel_events": [r.kernel_events for r in reps],
            "model_events": [r.model_events for r in reps],
        },
        "versions": versions(),
        "command": command if command is not None else sys.argv,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "assumptions": render_assumptions(data),
        "patients_kept": any(r.patients is not None for r in reps),
    }


def write_run_dir(result: RunResult, out: Path, command: list[str] | None = None,
                  draw: RunDrawer | None = None) -> dict[str, Path]:
    """Write all run outputs into ``out``; returns the paths written, by role.

    ``draw`` (from the presentation layer, e.g. ``flowsim.report.figures.draw_run``) adds the figures after the
    data files; without it none is drawn.  ``patients.parquet`` is written only when the run kept its per-stay
    records (``--no-patients`` drops them for long runs)."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    daily = result.daily()
    written["summary"] = atomic_text(out / "summary.json",
                                     json.dumps(summary_dict(result, command), indent=2, default=str) + "\n")
    kpis = result.kpi_frame().copy()
    kpis.insert(0, "seed", result.seed)  # every row says where it came from (scenario, seed, replication)
    kpis.insert(0, "scenario_id", result.scenario_id)
    written["kpis"] = atomic_write(out / "kpis.csv", lambda p: kpis.to_csv(p))
    written["daily"] = atomic_write(out / "daily.csv", lambda p: daily.to_csv(p, index=False))
    written["quarterly"] = atomic_write(out / "quarterly.csv", lambda p: result.periods("Q").to_csv(p, index=False))
    written["monthly"] = atomic_write(out / "monthly.csv", lambda p: result.periods("M").to_csv(p, index=False))
    bands = result.drd_bands("M")
    if not bands.empty:
        written["drd_bands"] = atomic_write(out / "drd_bands_monthly.csv", lambda p: bands.to_csv(p, index=False))
    patients = result.patients()
    if not patients.empty:
        written["patients"] = atomic_write(out / "patients.parquet",
                                           lambda p: patients.to_parquet(p, index=False, engine="pyarrow"))
    written["scenario"] = atomic_text(out / "scenario.yaml", scenario_to_yaml(result.scenario))
    nodes = result.node_summary()
    if not nodes.empty:
        written["nodes"] = atomic_write(out / "nodes_daily.csv", lambda p: nodes.to_csv(p, index=False))
    escalation = result.escalation()
    if not escalation.empty:
        written["escalation"] = atomic_write(out / "escalation.csv", lambda p: escalation.to_csv(p, index=False))
    if draw is not None:
        for i, path in enumerate(draw(result, out / "figures")):
            written[f"figure{i}"] = path
    return written


def kpi_table_text(table: pd.DataFrame, names: list[str]) -> str:
    """A plain-text KPI table (mean and 95% CI) for the terminal."""
    lines = [f"{'KPI':<52} {'mean':>10}  {'95% CI':<23} unit", "-" * 100]
    for name in names:
        if name not in table.index:
            continue
        row = table.loc[name]
        info = kpi_info(name)
        label = info.label if name in KPIS else name.removeprefix("service_")
        ci = "" if math.isnan(row["ci_low"]) else f"[{row['ci_low']:,.2f}, {row['ci_high']:,.2f}]"
        lines.append(f"{label[:52]:<52} {row['mean']:>10,.2f}  {ci:<23} {info.unit}")
    return "\n".join(lines)
