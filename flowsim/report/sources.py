"""What a report is made from, read from an output directory or taken from result objects in memory.

A report can be made two ways: ``flowsim report DIR`` reads what ``run``, ``compare``, ``sweep`` or
``calibrate`` wrote; a Python caller (or the planners' web app) passes the result object it already has.  Both
become the same *source* objects here, so each report kind has one builder and one template whichever way it
was asked for.  Files are read by column name, so new columns never break a report; a missing required file is
a :class:`~flowsim.errors.FlowsimError` naming it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from flowsim.errors import FlowsimError
from flowsim.experiment.replay import replay_comparison
from flowsim.report.figures import Services, png_bytes, run_figures
from flowsim.rundir import summary_dict
from flowsim.scenario.loader import scenario_to_dict
from flowsim.scenario.provenance import title

if TYPE_CHECKING:
    from flowsim.appraisal import Comparison
    from flowsim.experiment.runner import RunResult

log = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KIND_FILES = (("comparison", "comparison.json"), ("sweep", "sweep.json"), ("calibration", "calibration.json"),
              ("run", "summary.json"))
#: Daily columns the run report reads (figures are drawn from more when a run was written without them).
DAILY_COLUMNS = ("replication", "date", "delayed_midnight", "occupancy_pct")


# --------------------------------------------------------------------------------------------- reading files


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object, or a FlowsimError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FlowsimError(f"{path}: cannot read it as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise FlowsimError(f"{path}: expected a JSON object")
    return data


def read_csv(path: Path, required: bool = True) -> pd.DataFrame | None:
    """A CSV table; a missing required file is a FlowsimError saying the directory looks incomplete."""
    if not path.exists():
        if required:
            raise FlowsimError(f"{path}: missing; the directory looks incomplete (was it written by an older or "
                               "interrupted flowsim?)")
        return None
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise FlowsimError(f"{path}: cannot read it as CSV ({exc})") from None


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping, or {} (with a warning) when the file is missing or unreadable."""
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def read_png(path: Path) -> bytes | None:
    """A PNG file's bytes, or None when it is missing or not a PNG."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if data.startswith(PNG_MAGIC) else None


def read_pngs(folder: Path) -> dict[str, bytes]:
    """Every PNG in ``folder`` by file name."""
    if not folder.is_dir():
        return {}
    return {p.name: data for p in sorted(folder.glob("*.png")) if (data := read_png(p)) is not None}


def read_daily(run_dir: Path, columns: Sequence[str] | None = None) -> pd.DataFrame | None:
    """``daily.csv`` (only ``columns`` when given), or None when it is missing or unreadable."""
    path = run_dir / "daily.csv"
    if not path.exists():
        return None
    try:
        if columns is None:
            return pd.read_csv(path)
        head = pd.read_csv(path, nrows=0)
        use = [c for c in columns if c in head.columns]
        return pd.read_csv(path, usecols=use) if "date" in use else None
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None


def detect_kind(directory: Path) -> str:
    """'run', 'sweep', 'comparison' or 'calibration' from the files present; a FlowsimError for anything else."""
    directory = Path(directory)
    if not directory.exists():
        raise FlowsimError(f"{directory}: no such directory; expected a run, sweep, comparison or calibration "
                           "directory (written by flowsim run, sweep, compare or calibrate)")
    if not directory.is_dir():
        raise FlowsimError(f"{directory}: is a file, not a directory; expected a run, sweep, comparison or "
                           "calibration directory")
    for kind, name in KIND_FILES:
        if (directory / name).is_file():
            return kind
    raise FlowsimError(f"{directory}: not a flowsim output directory; expected summary.json (a run, from flowsim "
                       "run), sweep.json (a sweep, from flowsim sweep), comparison.json (a comparison, from "
                       "flowsim compare) or calibration.json (a calibration, from flowsim calibrate)")


# --------------------------------------------------------------------------------------------- a run


@dataclass
class RunSource:
    """One run: its summary (``summary.json``'s content), the scenario as run, the daily table, its figures."""

    summary: dict[str, Any]
    scenario: dict[str, Any]
    daily: pd.DataFrame | None
    figures: dict[str, bytes]
    experiment: dict[str, Any] = field(default_factory=dict)
    directory: Path | None = None
    replay: pd.DataFrame | None = None  # a history replay's simulated-against-observed table (replay.csv)

    @property
    def name(self) -> str:
        """The scenario's name."""
        return str(self.summary.get("scenario") or self.scenario.get("name") or
                   (self.directory.name if self.directory else "scenario"))

    @property
    def mode(self) -> str:
        """'full' or 'pathway_only'."""
        return str(self.scenario.get("mode") or "full")

    @classmethod
    def from_directory(cls, d: Path) -> RunSource:
        """Read a run directory; figures a run was written without are drawn from ``daily.csv`` in memory (the
        directory is never written to)."""
        summary = read_json(d / "summary.json")
        scenario = read_yaml(d / "scenario.yaml")
        experiment = read_json(d / "experiment.json") if (d / "experiment.json").exists() else {}
        figures = read_pngs(d / "figures")
        daily = None
        if "delays.png" not in figures and (d / "daily.csv").exists():
            daily = read_daily(d)
            figures = {**_drawn(daily, scenario), **figures}
        if daily is None:
            daily = read_daily(d, DAILY_COLUMNS)
        return cls(summary, scenario, daily, _for_mode(figures, scenario), experiment, d,
                   read_csv(d / "replay.csv", required=False))

    @classmethod
    def from_result(cls, result: RunResult, command: list[str] | None = None,
                    experiment: Mapping[str, Any] | None = None) -> RunSource:
        """A run in memory: the summary as ``write_run_dir`` would write it, figures drawn in memory."""
        scenario = scenario_to_dict(result.scenario)
        daily = result.daily()
        rp = result.scenario.replay
        replay = replay_comparison(daily, result.scenario) if rp is not None and rp.observed else None
        return cls(summary_dict(result, command or []), scenario, daily, _drawn(daily, scenario),
                   dict(experiment or {}), replay=replay)


def _drawn(daily: pd.DataFrame | None, scenario: Mapping[str, Any]) -> dict[str, bytes]:
    """The run figures drawn from the daily table, as PNG bytes (empty when they cannot be drawn)."""
    if daily is None or daily.empty:
        return {}
    try:
        esc = scenario.get("escalation") or {}
        labels = [str(a.get("label") or a.get("kind")) for a in esc.get("actions") or []]
        figs = run_figures(daily, title(scenario), Services.of(scenario), str(scenario.get("mode") or "full"),
                           action_labels=labels)
    except (ValueError, KeyError) as exc:
        log.warning("cannot draw the run figures: %s", exc)
        return {}
    return {name: png_bytes(fig) for name, fig in figs.items()}


def _for_mode(figures: dict[str, bytes], scenario: Mapping[str, Any]) -> dict[str, bytes]:
    """Drop figures of what the scenario does not model (an occupancy chart of a pathway-only run)."""
    if scenario.get("mode") == "pathway_only":
        return {k: v for k, v in figures.items() if k not in ("occupancy.png", "occupancy_options.png")}
    return figures


# --------------------------------------------------------------------------------------------- a comparison


@dataclass
class ComparisonSource:
    """A comparison: ``comparison.json``, its tables, each scenario's run and the comparison's figures."""

    meta: dict[str, Any]
    side: pd.DataFrame
    diffs: pd.DataFrame
    econ: pd.DataFrame | None
    targets: pd.DataFrame | None
    runs: dict[str, RunSource]
    figures: dict[str, bytes]
    directory: Path | None = None

    @property
    def entries(self) -> list[dict[str, Any]]:
        """The baseline's and the options' entries of ``comparison.json``, baseline first."""
        base = self.meta.get("baseline") or {}
        return [base, *[o for o in (self.meta.get("options") or []) if isinstance(o, dict)]]

    @property
    def names(self) -> list[str]:
        """Every scenario's one display name, baseline first."""
        return [str(e.get("name")) for e in self.entries]

    @classmethod
    def from_directory(cls, d: Path) -> ComparisonSource:
        """Read a comparison directory (each scenario's run directory under ``runs/``)."""
        meta = read_json(d / "comparison.json")
        side = read_csv(d / "side_by_side.csv")
        diffs = read_csv(d / "differences.csv")
        assert side is not None and diffs is not None
        entries = [meta.get("baseline") or {}, *(meta.get("options") or [])]
        runs = {}
        for e in entries:
            rd = d / str(e.get("dir") or Path("runs") / str(e.get("name")))
            if (rd / "summary.json").exists():
                runs[str(e.get("name"))] = RunSource.from_directory(rd)
        figures = read_pngs(d / "figures")
        return cls(meta, side, diffs, read_csv(d / "economics.csv", required=False),
                   read_csv(d / "targets.csv", required=False), runs, figures, d)

    @classmethod
    def from_comparison(cls, cmp: Comparison, command: list[str] | None = None,
                        files: Sequence[str] = ()) -> ComparisonSource:
        """A comparison in memory: the tables as ``write_comparison`` would write them, figures drawn in memory."""
        from flowsim.appraisal import comparison_meta
        from flowsim.report.appraisal_figures import comparison_pngs

        runs = {n: RunSource.from_result(r, command) for n, r in zip(cmp.names, cmp.runs, strict=True)}
        return cls(comparison_meta(cmp, command or [], files), cmp.side_by_side(), cmp.differences(),
                   cmp.economics(), cmp.targets(), runs, comparison_pngs(cmp))


# --------------------------------------------------------------------------------------------- a sweep


@dataclass
class SweepSource:
    """A sweep directory: ``sweep.json``, the spec, its tables and figures, and the base scenario as run."""

    meta: dict[str, Any]
    spec: dict[str, Any]
    summary: pd.DataFrame | None
    sensitivity: pd.DataFrame | None
    evaluations: pd.DataFrame | None
    target: dict[str, Any] | None
    figures: dict[str, bytes]
    base: dict[str, Any]
    base_note: str
    directory: Path | None = None

    @classmethod
    def from_directory(cls, d: Path) -> SweepSource:
        """Read a sweep directory (and its base scenario, if its file can still be read)."""
        meta = read_json(d / "sweep.json")
        spec = read_yaml(d / "sweep.yaml")
        target = meta.get("target") if isinstance(meta.get("target"), dict) else None
        if target is None and (d / "target.json").exists():
            target = read_json(d / "target.json")
        base, note = base_scenario(meta.get("base"), spec.get("set") or {})
        return cls(meta, spec, read_csv(d / "summary.csv", required=False),
                   read_csv(d / "sensitivity.csv", required=False), read_csv(d / "target.csv", required=False),
                   target, read_pngs(d / "figures"), base, note, d)


def base_scenario(path: object, changes: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """A scenario file as plain data with ``changes`` (dotted path -> value) applied, if it can still be read,
    and a note saying where it came from (or why it could not be shown)."""
    if not path:
        return {}, "The base scenario is not recorded."
    p = Path(str(path))
    if not p.exists():
        return {}, f"The base scenario {path} could not be found, so its assumptions are not shown."
    from flowsim.scenario.loader import finish_scenario, load_raw, set_path

    try:
        data, lines = load_raw(p)
        for dotted, value in changes.items():
            set_path(data, str(dotted), value, lines)
        return scenario_to_dict(finish_scenario(data, lines, str(p))), f"Base scenario: {path}."
    except (FlowsimError, OSError, ValueError) as exc:
        log.warning("cannot read the base scenario %s: %s", path, exc)
        with contextlib.suppress(FlowsimError, OSError, ValueError):
            return load_raw(p)[0], f"Base scenario: {path} (as written; it did not validate)."
        return {}, f"The base scenario {path} could not be read, so its assumptions are not shown."


# --------------------------------------------------------------------------------------------- a calibration


@dataclass
class CalibrationSource:
    """A calibration directory: ``calibration.json``, the fit report, every candidate and the fitted scenario."""

    meta: dict[str, Any]
    report: pd.DataFrame
    evaluations: pd.DataFrame | None
    fitted: dict[str, Any]
    fitted_note: str
    figures: dict[str, bytes]
    directory: Path | None = None

    @classmethod
    def from_directory(cls, d: Path) -> CalibrationSource:
        """Read a calibration directory; the fitted scenario is resolved through its ``extends`` if it can be."""
        meta = read_json(d / "calibration.json")
        report = read_csv(d / "fit_report.csv")
        assert report is not None
        fitted, note = base_scenario(d / "fitted_scenario.yaml", {})
        return cls(meta, report, read_csv(d / "evaluations.csv", required=False), fitted, note,
                   read_pngs(d / "figures"), d)


def finite(value: object) -> bool:
    """Whether ``value`` is a finite number."""
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
