"""A board-ready report: one self-contained HTML file for a run, a comparison, a sweep or a calibration.

``flowsim report DIR [--out FILE]`` reads what ``flowsim run``, ``compare``, ``sweep`` or ``calibrate`` wrote
(:func:`write_report`); a Python caller with a result in memory renders the same report without a directory
(:func:`render_run_report`, :func:`render_comparison_report`).  Either way:

- *Self-contained*: every image is a base64 ``data:`` URI and every style is inline, so the file can be emailed,
  archived or opened offline; it loads nothing from anywhere.
- *Plain English first*: key messages and a headline table, then the charts, then the assumptions as run, a
  STRESS-DES reporting checklist (Monks et al. 2019) and a reproducibility block; full tables in appendices.
- *Printable*: A4 print styles keep figures, table rows and notes on one page each, repeat table headers and
  number the pages.
- *Honest*: words follow intervals (the verdicts come from the domain's rules), only what a scenario models is
  judged, and a run that changed its scenario file says so in its header.

The HTML comes from Jinja2 templates (``templates/``: a base and one per report kind) with autoescape on; the
builder modules (``run_report``, ``comparison_report``, ``sweep_report``, ``calibration_report``) prepare plain
view-models (``view``).  The file is written atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from flowsim import __version__
from flowsim.errors import FlowsimError
from flowsim.report import calibration_report, comparison_report, run_report, sweep_report
from flowsim.report.format import VERDICT_TEXT
from flowsim.report.sources import (
    CalibrationSource,
    ComparisonSource,
    RunSource,
    SweepSource,
    detect_kind,
)
from flowsim.report.view import Page
from flowsim.rundir import atomic_text

if TYPE_CHECKING:
    from flowsim.appraisal import Comparison
    from flowsim.experiment.runner import RunResult

__all__ = ["build_report", "detect_kind", "render_comparison_report", "render_page", "render_run_report",
           "write_report"]


@cache
def environment() -> jinja2.Environment:
    """The template environment: the package's ``templates/``, autoescape on, undefined names are errors."""
    return jinja2.Environment(loader=jinja2.PackageLoader("flowsim.report", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
                              undefined=jinja2.StrictUndefined, trim_blocks=False, lstrip_blocks=False)


def render_page(page: Page) -> str:
    """A view-model rendered by its kind's template."""
    template = environment().get_template(f"{page.kind}.html.j2")
    return template.render(page=page, version=__version__, verdict_text=VERDICT_TEXT)


def render_run_report(result: RunResult, command: list[str] | None = None,
                      experiment: dict[str, Any] | None = None) -> str:
    """The run report of a result in memory (figures drawn in memory; nothing is written)."""
    return render_page(run_report.build(RunSource.from_result(result, command, experiment)))


def render_comparison_report(cmp: Comparison, command: list[str] | None = None, files: Sequence[str] = ()) -> str:
    """The comparison report of a comparison in memory (figures drawn in memory; nothing is written)."""
    return render_page(comparison_report.build(ComparisonSource.from_comparison(cmp, command, files)))


BUILDERS: dict[str, Callable[[Path], Page]] = {
    "run": lambda d: run_report.build(RunSource.from_directory(d)),
    "comparison": lambda d: comparison_report.build(ComparisonSource.from_directory(d)),
    "sweep": lambda d: sweep_report.build(SweepSource.from_directory(d)),
    "calibration": lambda d: calibration_report.build(CalibrationSource.from_directory(d)),
}


def build_report(directory: Path) -> str:
    """The report for ``directory`` as one HTML string."""
    directory = Path(directory)
    return render_page(BUILDERS[detect_kind(directory)](directory))


def write_report(directory: Path, out: Path | None = None) -> Path:
    """Write the report (default ``DIR/report.html``) atomically; returns its path."""
    directory = Path(directory)
    text = build_report(directory)
    target = Path(out) if out is not None else directory / "report.html"
    if target.is_dir():
        target = target / "report.html"
    try:
        return atomic_text(target, text)
    except OSError as exc:
        raise FlowsimError(f"{target}: cannot write the report ({exc.strerror or exc})") from None
