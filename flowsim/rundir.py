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

import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flowsim.errors import FlowsimError
from flowsim.experiment.runner import RunResult
from flowsim.results.kpi import KPIS, kpi_info
from flowsim.scenario.loader import scenario_to_dict, scenario_to_yaml
from flowsim.scenario.provenance import describe_overrides, initial_conditions, render_assumptions
from flowsim.scenario.schema import Scenario

PACKAGES = ("flowsim", "simpy", "numpy", "pandas", "scipy", "pydantic", "pyarrow", "matplotlib")


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the file the caller asked for, not a temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
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


# --------------------------------------------------------------------------------------------- ownership
#
# An output directory is flowsim's when it carries OWNER, written first when flowsim creates (or finds
# empty) the directory; COMPLETE, written last, lists every file the command wrote.  So: flowsim never
# writes into a directory that holds anything else, never deletes anything in a directory without its
# marker, ``--overwrite`` deletes only what the manifest says it wrote (or, for an interrupted run that
# never wrote a manifest, the contents of a directory it created), and a killed run never looks complete.

OWNER = ".flowsim-output.json"
COMPLETE = ".flowsim-complete.json"
#: Subtrees listed whole in the manifest (the sweep's task store holds thousands of files).
BULK = ("parts",)
#: Files flowsim may add to a finished directory (the board report) without making it "mixed".
ADDED_LATER = ("report.html", "results.xlsx")
_OUTPUT_SUFFIXES = (".csv", ".json", ".parquet", ".png", ".yaml", ".html", ".xlsx")


@dataclass(frozen=True)
class OutputDir:
    """A directory claimed for one command's outputs (see ``claim_output``)."""

    path: Path
    kind: str
    run_id: str
    created: bool = False  # the directory did not exist before the claim


def slug(text: str, fallback: str = "output") -> str:
    """A safe single path component from free text (a config's ``name:``): letters, digits, _ and -.

    ``../../x`` and ``/etc/cron.d`` become ``x`` and ``etc-cron-d``: a name in a file can choose what
    an output directory is called, never where it is.  A long name keeps its end (the part that tells
    directories apart), at most 80 characters.
    """
    out = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-_")[-80:].strip("-_")
    return out or fallback


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(1_000_000))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("flowsim") == "output" else None


def output_kind(path: Path) -> tuple[str, bool] | None:
    """(kind, complete) of a flowsim output directory, or None when ``path`` is not one."""
    owner = _read_marker(path / OWNER)
    if owner is None:
        return None
    done = _read_marker(path / COMPLETE)
    return str(owner.get("kind")), done is not None and done.get("run_id") == owner.get("run_id")


def _describe(path: Path, what: str) -> str:
    return f"{what} {path}" if what else str(path)


def _owned_entries(path: Path) -> tuple[list[Path], list[Path]]:
    """(entries flowsim wrote, entries it did not) at the top of a flowsim directory."""
    done = _read_marker(path / COMPLETE)
    listed: set[str] | None = None
    if done is not None and isinstance(done.get("files"), dict):
        listed = {str(name).split("/", 1)[0] for name in done["files"]}
    ours: list[Path] = []
    foreign: list[Path] = []
    for entry in sorted(path.iterdir()):
        mine = (entry.name in (OWNER, COMPLETE, *ADDED_LATER) or entry.name.endswith(".tmp")
                or listed is None or entry.name in listed)
        (ours if mine else foreign).append(entry)
    return ours, foreign


def _clear(path: Path, what: str) -> None:
    ours, foreign = _owned_entries(path)
    if foreign:
        names = ", ".join(e.name for e in foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise FlowsimError(f"{_describe(path, what)}: holds files flowsim did not write ({names}); --overwrite "
                           "deletes only flowsim's own outputs: move them, or choose another directory")
    for entry in ours:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)


def claim_output(path: Path, kind: str, *, overwrite: bool = False, resume: bool = False,
                 command: list[str] | None = None, what: str = "--out") -> OutputDir:
    """Make ``path`` this command's output directory, before anything runs.

    Refuses a file, an unwritable place, a non-empty directory flowsim did not write, and one it did
    write unless ``overwrite`` (which clears flowsim's own files first) or ``resume`` (same kind; the
    directory is reopened with ``reopen_output`` and is incomplete until the command finishes).
    ``what`` names the option in messages (``--out``).
    """
    where = _describe(path, what)
    if path.exists() and not path.is_dir():
        raise FlowsimError(f"{where}: is a file, not a directory; give a directory for the outputs")
    if path.is_dir() and any(path.iterdir()):
        found = output_kind(path)
        if found is None:
            raise FlowsimError(f"{where}: is not empty and was not written by flowsim (no {OWNER}); flowsim writes "
                               "only into a new or empty directory: choose another, or empty it yourself")
        old_kind, complete = found
        if resume and old_kind == kind:  # the caller reopens it (reopen_output) once its checks pass
            owner = _read_marker(path / OWNER) or {}
            return OutputDir(path, kind, str(owner.get("run_id")))
        if not overwrite:
            state = "complete" if complete else "incomplete (interrupted?)"
            raise FlowsimError(f"{where}: already holds a flowsim {old_kind} ({state}); add --overwrite to replace "
                               "it, or choose another directory")
        _clear(path, what)
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        run_id = uuid.uuid4().hex
        owner = {"flowsim": "output", "kind": kind, "run_id": run_id, "version": versions()["flowsim"],
                 "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 "command": command if command is not None else sys.argv}
        atomic_text(path / OWNER, json.dumps(owner, indent=2) + "\n")
    except OSError as exc:
        raise FlowsimError(f"{where}: cannot write there ({exc.strerror or exc})") from None
    return OutputDir(path, kind, run_id, created)


#: Where a run keeps each replication's tables until its files are written (then removed).
PARTS = ".parts"
#: Scratch entries a command keeps in its directory until its outputs are written.
SCRATCH = (PARTS,)


@contextlib.contextmanager
def abandon_on_error(out: OutputDir) -> Iterator[OutputDir]:
    """Undo the claim when a user mistake surfaces before any output was written ("nothing written").

    Only the marker and scratch are removed (and the directory, if the claim created it); a directory
    that already holds outputs stays as it is, incomplete.
    """
    try:
        yield out
    except FlowsimError:
        entries = list(out.path.iterdir()) if out.path.is_dir() else []
        if all(e.name in (OWNER, *SCRATCH) or e.name.endswith(".tmp") for e in entries):
            for e in entries:
                if e.is_dir():
                    shutil.rmtree(e)
                else:
                    e.unlink(missing_ok=True)
            if out.created:
                with contextlib.suppress(OSError):
                    out.path.rmdir()
        raise


def reopen_output(out: OutputDir) -> None:
    """Mark a resumed directory incomplete again, before the first new write."""
    (out.path / COMPLETE).unlink(missing_ok=True)


def _manifest(path: Path) -> dict[str, int]:
    """Every file under ``path`` with its size; bulk stores and nested output directories listed whole."""
    files: dict[str, int] = {}
    for entry in sorted(path.iterdir()):
        if entry.name in (OWNER, COMPLETE) or entry.name.endswith(".tmp"):
            continue
        if entry.is_dir() and (entry.name in BULK or (entry / OWNER).exists()):
            files[entry.name + "/"] = 0
        elif entry.is_dir():
            files.update({f"{entry.name}/{k}": v for k, v in _manifest(entry).items()})
        else:
            files[entry.name] = entry.stat().st_size
    return files


def finish_output(out: OutputDir) -> None:
    """Write the completion marker: last, so a killed command never leaves a directory that looks done."""
    done = {"flowsim": "output", "kind": out.kind, "run_id": out.run_id,
            "completed": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "files": _manifest(out.path)}
    atomic_text(out.path / COMPLETE, json.dumps(done, indent=2) + "\n")


def check_complete(path: Path) -> str:
    """The kind of a complete, unmixed flowsim output directory; a FlowsimError naming what is wrong otherwise.

    Incomplete: the command that wrote it was interrupted (or is still running).  Mixed: a file the
    manifest lists is missing or changed, or an output file is there that the command did not write
    (e.g. figures of an earlier run copied in).
    """
    expected = ("expected a run, sweep or comparison directory (summary.json, sweep.json or comparison.json, "
                f"with flowsim's marker {OWNER})")
    if path.exists() and not path.is_dir():
        raise FlowsimError(f"{path}: is a file, not a directory; {expected}")
    if not path.is_dir():
        raise FlowsimError(f"{path}: no such directory; {expected}")
    owner = _read_marker(path / OWNER)
    if owner is None:
        raise FlowsimError(f"{path}: not a flowsim output directory (written by another program or an older "
                           f"flowsim); {expected}: run the command again into a new directory")
    done = _read_marker(path / COMPLETE)
    if done is None or done.get("run_id") != owner.get("run_id") or not isinstance(done.get("files"), dict):
        raise FlowsimError(f"{path}: incomplete: the flowsim {owner.get('kind')} started {owner.get('created')} did "
                           "not finish (interrupted, or still running); run it again with --overwrite")
    listed: dict[str, int] = done["files"]
    _check_listed(path, listed, str(owner.get("kind")))
    extra = [n for n, _ in _manifest(path).items() if n not in listed and n not in ADDED_LATER
             and n.endswith(_OUTPUT_SUFFIXES)]
    if extra:
        raise FlowsimError(f"{path}: mixed: {', '.join(extra[:5])} {'was' if len(extra) == 1 else 'were'} not "
                           f"written by the {owner.get('kind')} that completed this directory; run it again into "
                           "a new directory")
    return str(owner.get("kind"))


def is_flowsim_report(path: Path) -> bool:
    """An HTML report flowsim wrote (it names itself in a generator tag near the top)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return head.lstrip().startswith(b"<!DOCTYPE html>") and b'<meta name="generator" content="flowsim' in head


def _check_listed(path: Path, listed: dict[str, int], kind: str) -> None:
    """Every file the manifest lists is there with its size; nested output directories are complete."""
    for name, size in listed.items():
        target = path / name
        if name.endswith("/"):
            if not target.is_dir():
                raise FlowsimError(f"{path}: mixed or changed: {name} is missing; run the command again")
            if (target / OWNER).exists():
                check_complete(target)
        elif not target.is_file() or target.stat().st_size != size:
            raise FlowsimError(f"{path}: mixed or changed: {name} is missing or not the file the {kind} wrote; "
                               "run the command again")


def guard_file(path: Path, overwrite: bool, is_ours: Callable[[Path], bool], what: str) -> None:
    """Refuse to replace an existing file that is not flowsim's own output unless ``overwrite``."""
    if path.is_dir():
        raise FlowsimError(f"{what} {path}: is a directory; give a file name")
    if path.exists() and not overwrite and not is_ours(path):
        raise FlowsimError(f"{what} {path}: exists and was not written by flowsim; add --overwrite to replace it, "
                           "or choose another name")


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


def intervals_include(sc: Scenario) -> dict[str, Any]:
    """What the run's intervals carry: always the variation between replications; with ``parameters_from``,
    also the uncertainty in the calibrated parameters (each replication drew one accepted set)."""
    draws = sc.parameters_from
    if draws is None or not draws.sets:
        return {"stochastic": True, "parameter_uncertainty": False,
                "text": "95% intervals include only the variation between replications (the parameters are fixed "
                        "at the scenario's values)"}
    return {"stochastic": True, "parameter_uncertainty": True, "parameter_sets": len(draws.sets),
            "source": draws.source, "method": draws.method,
            "text": f"95% intervals include the variation between replications and parameter uncertainty: each "
                    f"replication drew one of {len(draws.sets)} accepted parameter sets from {draws.source}"}


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
        "intervals_include": intervals_include(sc),
        "kpis": kpis,
        "quarters": [{k: _clean(v) for k, v in r.items()} for r in result.periods("Q").to_dict("records")],
        "months": [{k: _clean(v) for k, v in r.items()} for r in result.periods("M").to_dict("records")],
        "invariant_violations": result.checks,
        "start_over_capacity": [{"field": ".".join(map(str, where)), "patients": n, "capacity": cap, "unit": unit}
                                for where, n, cap, unit in sc.start_overflow()],
        "execution": result.execution,
        "performance": {
            "seconds_per_replication": [round(r.seconds, 4) for r in reps],
            "kernel_events": [r.kernel_events for r in reps],
            "model_events": [r.model_events for r in reps],
        },
        "versions": versions(),
        "command": command if command is not None else sys.argv,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "assumptions": render_assumptions(data),
        "patients_kept": any(result.store.has("patients", r.replication) for r in reps),
    }


def write_run_dir(result: RunResult, target: Path | OutputDir, command: list[str] | None = None,
                  draw: RunDrawer | None = None) -> dict[str, Path]:
    """Write all run outputs; returns the paths written, by role.

    ``target`` is a directory (claimed here: new or empty, see ``claim_output``, and marked complete
    at the end) or an ``OutputDir`` the caller claimed (the caller adds its own files and finishes it).
    ``draw`` (from the presentation layer, e.g. ``flowsim.report.figures.draw_run``) adds the figures after the
    data files; without it none is drawn.  ``patients.parquet`` is written only when the run kept its per-stay
    records (``--no-patients`` drops them for long runs)."""
    claimed = target if isinstance(target, OutputDir) else claim_output(target, "run", command=command, what="")
    out = claimed.path
    written: dict[str, Path] = {}
    written["summary"] = atomic_text(out / "summary.json",
                                     json.dumps(summary_dict(result, command), indent=2, default=str) + "\n")
    kpis = result.kpi_frame().copy()
    kpis.insert(0, "seed", result.seed)  # every row says where it came from (scenario, seed, replication)
    kpis.insert(0, "scenario_id", result.scenario_id)
    written["kpis"] = atomic_write(out / "kpis.csv", lambda p: kpis.to_csv(p))
    # the big tables are streamed one replication at a time, so writing them takes constant memory
    written["daily"] = atomic_write(out / "daily.csv", lambda p: _stream_csv(p, result.daily_frames()))
    written["quarterly"] = atomic_write(out / "quarterly.csv", lambda p: result.periods("Q").to_csv(p, index=False))
    written["monthly"] = atomic_write(out / "monthly.csv", lambda p: result.periods("M").to_csv(p, index=False))
    order = [r.replication for r in result.replications]
    bands = result.drd_bands("M")
    if not bands.empty:
        written["drd_bands"] = atomic_write(out / "drd_bands_monthly.csv", lambda p: bands.to_csv(p, index=False))
    if any(result.store.has("patients", r) for r in order):
        written["patients"] = atomic_write(out / "patients.parquet", lambda p: _stream_parquet(
            p, (pa.Table.from_pandas(f, preserve_index=False) for f in result.patient_frames())))
    written["scenario"] = atomic_text(out / "scenario.yaml", scenario_to_yaml(result.scenario))
    nodes = result.node_summary()
    if not nodes.empty:
        written["nodes"] = atomic_write(out / "nodes_daily.csv", lambda p: nodes.to_csv(p, index=False))
    if any(result.store.has("escalation", r) for r in order):
        written["escalation"] = atomic_write(out / "escalation.csv", lambda p: _stream_csv(
            p, result.store.frames("escalation", order)))
    if draw is not None:
        for i, path in enumerate(draw(result, out / "figures")):
            written[f"figure{i}"] = path
    if not isinstance(target, OutputDir):
        finish_output(claimed)
    return written


def _stream_csv(path: Path, frames: Iterable[pd.DataFrame]) -> None:
    """Frames one after another as one CSV (the header once): the same text as their concatenation."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        first = True
        for frame in frames:
            if frame.empty and not first:
                continue
            frame.to_csv(fh, index=False, header=first)
            first = False
        if first:
            fh.write("\n")


def _stream_parquet(path: Path, tables: Iterable[pa.Table]) -> None:
    """Arrow tables appended as row groups of one Parquet file; an empty table when there are none."""
    writer: pq.ParquetWriter | None = None
    try:
        for table in tables:
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table.cast(writer.schema) if table.schema != writer.schema else table)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        pd.DataFrame().to_parquet(path, index=False, engine="pyarrow")


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
