"""What the web app does with a planner's choices, kept apart from Streamlit so it can be tested without a browser.

A run in the app is exactly ``flowsim run``: the scenario file goes through the same loader (levers become
``--set`` settings, recorded in the scenario's ``overrides``), ``simulate`` runs the replications on a process
pool, and the run directory is written by ``write_run_dir`` with the report's figures and the Excel workbook,
claimed and completed like any flowsim output (so ``flowsim report`` and ``flowsim export`` accept it).  Each run
keeps its ``RunResult`` in memory too, so kept runs can be paired with a baseline (``compare_runs``) the way
``flowsim compare`` pairs them.  Runs happen in a background thread (:class:`Job`) that reports progress, so the
page stays responsive.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import flowsim
from flowsim.appraisal import Comparison, compare_runs, write_comparison
from flowsim.errors import FlowsimError
from flowsim.experiment.executors import TaskError, make_executor
from flowsim.experiment.runner import ProgressCallback, RunResult, default_workers, simulate
from flowsim.report.appraisal_figures import comparison_figures
from flowsim.report.figures import draw_run
from flowsim.report.workbook import write_workbook
from flowsim.rundir import abandon_on_error, claim_output, finish_output, slug, write_run_dir
from flowsim.scenario.levers import Lever, scenario_levers
from flowsim.scenario.loader import load_scenario
from flowsim.scenario.schema import Scenario

log = logging.getLogger(__name__)


def scenarios_folder() -> Path:
    """The shipped scenarios: ``scenarios/`` beside the package in a checkout, else in the working directory."""
    beside = Path(flowsim.__file__).resolve().parents[1] / "scenarios"
    return beside if beside.is_dir() else Path.cwd() / "scenarios"


def shipped_scenarios(folder: Path | None = None) -> dict[str, Path]:
    """Shipped scenario files by file name (without .yaml), in name order."""
    folder = folder or scenarios_folder()
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def save_upload(name: str, data: bytes, root: Path) -> Path:
    """Keep an uploaded scenario under ``root/uploads`` (a changed scenario ``extends:`` it, so it must stay)."""
    digest = hashlib.sha256(data).hexdigest()[:10]
    stem = slug(Path(name).stem, "scenario")
    path = root / "uploads" / f"{stem}-{digest}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return path


def error_lines(exc: FlowsimError, shown_as: dict[str, str] | None = None) -> list[str]:
    """The lines the CLI would print for ``exc`` (``flowsim: error: file:line: field: message``), with stored
    upload paths shown by the name the planner uploaded."""
    lines = []
    for line in str(exc).splitlines():
        for stored, name in (shown_as or {}).items():
            line = line.replace(stored, name)
        lines.append(f"flowsim: error: {line}")
    return lines


def open_scenario(path: Path) -> tuple[Scenario, list[Lever]]:
    """The scenario as the file gives it and its levers (a ScenarioError, with the CLI's lines, when invalid)."""
    return scenario_levers(path)


@dataclass
class AppRun:
    """A run the session keeps: its name, where it came from, its result and its (complete) run directory."""

    name: str
    base: Path
    settings: list[str]
    result: RunResult
    directory: Path
    replications: int
    seed: int

    @property
    def command(self) -> list[str]:
        """The command line that reproduces the run."""
        return run_command(self.base, self.settings, self.replications, self.seed, self.directory)


def run_command(base: Path, settings: Sequence[str], replications: int, seed: int, out: Path) -> list[str]:
    """``flowsim run`` with the same scenario, settings, replications and seed (recorded in summary.json)."""
    sets = [x for s in settings for x in ("--set", s)]
    return ["flowsim", "run", str(base), "-n", str(replications), "--seed", str(seed), *sets, "--xlsx",
            "--out", str(out)]


def _stamp() -> str:
    return f"{dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"


def run_scenario(base: Path, settings: Sequence[str], *, replications: int, seed: int, name: str, root: Path,
                 on_progress: ProgressCallback | None = None, workers: int | None = None) -> AppRun:
    """Run ``base`` with ``settings`` and write its run directory under ``root/runs`` (figures and workbook too)."""
    scenario = load_scenario(base, settings)
    out = root / "runs" / f"{slug(name, 'run')}-{_stamp()}"
    command = run_command(base, settings, replications, seed, out)
    claimed = claim_output(out, "run", command=command)
    n = workers or default_workers(replications)
    with abandon_on_error(claimed), make_executor("serial" if n == 1 else "process", n) as ex:
        result = simulate(scenario, replications, seed, executor=ex, progress=on_progress or False)
    write_run_dir(result, claimed, command=command, draw=draw_run)
    write_workbook(out)
    finish_output(claimed)
    return AppRun(name, base, list(settings), result, out, replications, seed)


@dataclass
class AppComparison:
    """Kept runs paired with a baseline, and the comparison directory written from them."""

    comparison: Comparison
    directory: Path
    runs: list[AppRun]


def compare_kept(baseline: AppRun, options: Sequence[AppRun], root: Path) -> AppComparison:
    """Pair kept runs with ``baseline`` (``compare_runs``: same seed, replications and window, or a FlowsimError)
    and write the comparison directory (tables, figures, workbook) as ``flowsim compare`` would."""
    cmp = compare_runs(baseline.result, [o.result for o in options], [baseline.name, *(o.name for o in options)])
    out = root / "comparisons" / f"{slug(baseline.name, 'baseline')}-{_stamp()}"
    command = ["flowsim app: compare", *cmp.names]
    claimed = claim_output(out, "comparison", command=command)
    write_comparison(cmp, claimed, command=command, files=[str(r.base) for r in (baseline, *options)],
                     draw=comparison_figures)
    write_workbook(out)
    finish_output(claimed)
    return AppComparison(cmp, out, [baseline, *options])


@dataclass
class Job:
    """A run in a background thread: progress while it works, then the run or the error lines."""

    name: str
    total: int
    done: int = 0
    run: AppRun | None = None
    errors: list[str] = field(default_factory=list)
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        """Whether the thread has ended (with a run or with errors)."""
        return self.thread is not None and not self.thread.is_alive()

    def progress(self, done: int, total: int) -> None:
        """The progress callback ``simulate`` calls as each replication finishes."""
        self.done, self.total = done, total


def start_run(base: Path, settings: Sequence[str], *, replications: int, seed: int, name: str, root: Path,
              shown_as: dict[str, str] | None = None, workers: int | None = None) -> Job:
    """Start :func:`run_scenario` in a background thread and return its :class:`Job` at once."""
    job = Job(name, replications)

    def work() -> None:
        try:
            job.run = run_scenario(base, settings, replications=replications, seed=seed, name=name, root=root,
                                   on_progress=job.progress, workers=workers)
        except TaskError as exc:
            job.errors = [f"flowsim: error: {exc}"]
        except FlowsimError as exc:
            job.errors = error_lines(exc, shown_as)
        except Exception as exc:  # a bug: the page says so in one line, the log has the traceback
            log.exception("run %s failed", name)
            job.errors = [f"flowsim: internal error (please report it): {type(exc).__name__}: {exc}"]

    job.thread = threading.Thread(target=work, name=f"flowsim-run-{name}", daemon=True)
    job.thread.start()
    return job
