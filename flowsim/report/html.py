"""A board-ready report: one self-contained HTML file for a run, a sweep or a comparison directory.

``flowsim report DIR [--out FILE]`` reads what ``flowsim run``, ``flowsim sweep`` or
``flowsim compare`` wrote and turns it into a paper an A&E Delivery Board can read on
screen or print to PDF:

- *Self-contained*: every image is a base64 ``data:`` URI and every style is inline, so
  the file can be emailed, archived or opened offline; it loads nothing from anywhere.
- *Plain English first*: key messages and a headline table, then the charts, then the
  assumptions, a STRESS-DES reporting checklist (Monks et al. 2019) and a
  reproducibility block; the full tables go in appendices so many KPIs stay readable.
- *Printable*: A4 print styles keep figures, table rows and notes on one page each,
  repeat table headers and number the pages.

Everything shown is read from the directory (JSON and CSV, by column name, so new
columns do not break the report); the only thing computed here is the DTOC trajectory
against the Better Care Fund target for runs, drawn from ``daily.csv``.  All text from
files is HTML-escaped.  The file is written atomically.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import html
import io
import json
import logging
import math
import re
import shlex
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from flowsim import __version__
from flowsim.errors import FlowsimError
from flowsim.results.kpi import BOARD_HEADLINE, REPORT_GROUPS, kpi_info
from flowsim.rundir import atomic_text
from flowsim.scenario.schema import COST_FIELDS

log = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEFAULT_TARGETS = {"delayed_per_100k": 9.4, "occupancy_pct": 92.0, "ed_within_4h_pct": 76.0}

SWEEP_HEADLINE_POINTS = 30

#: In a section body, marks the end of what must print on the same page as the heading.
LEAD = "<!--/lead-->"

KIND_FILES = (("comparison", "comparison.json"), ("sweep", "sweep.json"), ("run", "summary.json"))


# --------------------------------------------------------------------------------------------- formatting


def esc(value: object) -> str:
    """HTML-escape anything (quotes too, so it is safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: object) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return x


def fmt(value: object, unit: str = "") -> str:
    """A number as the report prints it: 3 significant-ish figures, thousands separated, £ for money.

    ``-`` (an en dash) for a missing value; tests format expected values with this same function.
    """
    x = _num(value)
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "unlimited" if x > 0 else "-unlimited"
    money = unit == "GBP"
    a = abs(x)
    text = f"{a:,.0f}" if money or a >= 1000 else f"{a:,.1f}" if a >= 10 else f"{a:,.2f}"
    sign = "-" if x < 0 and text.strip("0.,") else ""
    return f"{sign}£{text}" if money else f"{sign}{text}"


def fmt_ci(low: object, high: object, unit: str = "") -> str:
    """'12.1 to 32.5', or '' when the interval is undefined (one replication)."""
    lo, hi = _num(low), _num(high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f"{fmt(lo, unit)} to {fmt(hi, unit)}"


def verdict(low: float, high: float, threshold: float, sense: str) -> str:
    """'met' / 'missed' when the 95% CI lies wholly on one side of the threshold, else 'uncertain'."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "uncertain"
    if sense == "at most":
        return "met" if high <= threshold else "missed" if low > threshold else "uncertain"
    return "met" if low >= threshold else "missed" if high < threshold else "uncertain"


VERDICT_TEXT = {"met": "Met", "missed": "Missed", "uncertain": "Too close to call"}


def _badge(v: str) -> str:
    key = v if v in VERDICT_TEXT else "uncertain"
    return f'<span class="badge {key}">{esc(VERDICT_TEXT[key])}</span>'


def _date(text: object) -> str:
    try:
        d = dt.date.fromisoformat(str(text)[:10])
    except ValueError:
        return esc(text)
    return f"{d.day} {d:%b %Y}"


def _created(text: object) -> str:
    try:
        t = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return str(text or "not recorded")
    return f"{t.day} {t:%B %Y, %H:%M} {t.tzname() or ''}".strip()


def _command(cmd: object) -> str:
    if isinstance(cmd, list):
        return shlex.join(str(c) for c in cmd)
    return str(cmd or "not recorded")


def _pretty(name: str) -> str:
    return name.replace("_", " ").strip()


# --------------------------------------------------------------------------------------------- reading


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FlowsimError(f"{path}: cannot read it as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise FlowsimError(f"{path}: expected a JSON object")
    return data


def _read_csv(path: Path, required: bool = True) -> pd.DataFrame | None:
    if not path.exists():
        if required:
            raise FlowsimError(f"{path}: missing; the directory looks incomplete (was it written by an older or "
                               "interrupted flowsim?)")
        return None
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise FlowsimError(f"{path}: cannot read it as CSV ({exc})") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _png(path: Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if data.startswith(PNG_MAGIC) else None


def detect_kind(directory: Path) -> str:
    """'run', 'sweep' or 'comparison' from the files present; a FlowsimError for anything else."""
    directory = Path(directory)
    if not directory.exists():
        raise FlowsimError(f"{directory}: no such directory; expected a run, sweep or comparison directory "
                           "(written by flowsim run, sweep or compare)")
    if not directory.is_dir():
        raise FlowsimError(f"{directory}: is a file, not a directory; expected a run, sweep or comparison directory")
    for kind, name in KIND_FILES:
        if (directory / name).is_file():
            return kind
    raise FlowsimError(f"{directory}: not a flowsim output directory; expected summary.json (a run, from flowsim "
                       "run), sweep.json (a sweep, from flowsim sweep) or comparison.json (a comparison, from "
                       "flowsim compare)")


# --------------------------------------------------------------------------------------------- figures


def _png_bytes(fig: Any) -> bytes:
    from flowsim.report.figures import DPI

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def dtoc_target_png(daily: pd.DataFrame, title: str, target: float | None, target_label: str) -> bytes:
    """Fan chart of delayed patients at midnight across replications, with the BCF target line."""
    from flowsim.report.figures import (
        NHS_BLUE,
        NHS_DARK_BLUE,
        NHS_RED,
        _band,
        _format_date_axis,
        _line_width,
        _new_figure,
        _percentiles,
        _replication_count,
        _spread_note,
        _style_axes,
    )

    stats = _percentiles(daily, "delayed_midnight")
    n = _replication_count(daily)
    note = _spread_note(n)
    if n > 1:
        note += ": line is the mean, shading the middle 50% and 90% of replications"
    fig, panel = _new_figure(10, 5.4, "Delayed transfers of care against the BCF target", title, note)
    ax = panel.add_subplot()
    if n > 1:
        _band(ax, stats, NHS_BLUE, "5–95% of replications", "25–75% of replications")
    ax.plot(stats.index, stats["mean"], color=NHS_DARK_BLUE, linewidth=_line_width(len(stats), 2.0), zorder=3,
            label="Mean of replications" if n > 1 else "Delayed patients")
    if target is not None and math.isfinite(target):
        ax.axhline(target, color=NHS_RED, linestyle="--", linewidth=1.6, zorder=4, label=target_label)
    _style_axes(ax)
    top = max(float(stats["p95"].max()) if len(stats) else 0.0, target or 0.0)
    if top > 0:
        ax.set_ylim(0, top * 1.12)
    ax.set_ylabel("Delayed patients (midnight census)")
    _format_date_axis(ax, pd.DatetimeIndex(stats.index))
    panel.legend(loc="outside lower center", ncol=4, frameon=False, fontsize=9)
    return _png_bytes(fig)


def trajectory_png(series: dict[str, pd.Series], heading: str, title: str, ylabel: str, target: float | None,  # noqa: PLR0917
                   target_label: str, n_reps: int) -> bytes:
    """One daily line per scenario with a target line: used when a comparison was written with --no-figures,
    so the board still sees the trajectories."""
    from flowsim.report.appraisal_figures import trajectory_plot

    pretty = {_pretty(name): s for name, s in series.items()}
    return _png_bytes(trajectory_plot(pretty, heading, title, ylabel, target, target_label, n_reps))


def _read_daily(run_dir: Path, columns: Sequence[str]) -> pd.DataFrame | None:
    path = run_dir / "daily.csv"
    if not path.exists():
        return None
    try:
        head = pd.read_csv(path, nrows=0)
        use = [c for c in ("replication", "date", *columns) if c in head.columns]
        if "date" not in use:
            return None
        return pd.read_csv(path, usecols=use)
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None


def _run_figure_files(run_dir: Path, sc: dict[str, Any], title: str) -> dict[str, bytes]:
    """The run's own PNGs by file name; made afresh from daily.csv if the run was written with --no-figures."""
    figs = run_dir / "figures"
    found = {p.name: data for p in sorted(figs.glob("*.png")) if (data := _png(p)) is not None} \
        if figs.is_dir() else {}
    if "occupancy.png" in found or not (run_dir / "daily.csv").exists():
        return found
    from flowsim.report.figures import make_figures

    try:
        daily = pd.read_csv(run_dir / "daily.csv")
        by_pathway = {p: list((pw or {}).get("services") or {}) for p, pw in (sc.get("pathways") or {}).items()
                      if (pw or {}).get("services")}
        with tempfile.TemporaryDirectory(prefix="flowsim-report-") as tmp:
            for p in make_figures(daily, Path(tmp), title, by_pathway):
                if (data := _png(p)) is not None:
                    found.setdefault(p.name, data)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("cannot draw the run figures for %s: %s", run_dir, exc)
    return found


# --------------------------------------------------------------------------------------------- scenario facts


def _targets(sc: dict[str, Any]) -> dict[str, float]:
    t = dict(DEFAULT_TARGETS)
    for k, v in (sc.get("targets") or {}).items():
        if k in t and math.isfinite(_num(v)):
            t[k] = float(v)
    return t


def _dtoc_target_per_day(sc: dict[str, Any]) -> float | None:
    pop = _num(sc.get("population_18plus"))
    if not (math.isfinite(pop) and pop > 0):
        return None
    return _targets(sc)["delayed_per_100k"] * pop / 1e5


def _capacity(value: Any) -> str:
    if isinstance(value, dict):
        periods = value.get("periods") or []
        extra = f", {len(periods)} scheduled change{'s' if len(periods) != 1 else ''}" if periods else ""
        return f"{_capacity(value.get('base'))}{extra}"
    if value is None:
        return "not set"
    return str(value)


def _services(sc: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(pathway, service, label, capacity) for every downstream service."""
    out = []
    for p, pw in (sc.get("pathways") or {}).items():
        for name, svc in ((pw or {}).get("services") or {}).items():
            svc = svc or {}
            out.append((str(p), str(name), str(svc.get("label") or _pretty(str(name))), _capacity(svc.get("capacity"))))
    return out


def _distributions(obj: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(obj, dict):
        if isinstance(obj.get("dist"), str):
            found.add(obj["dist"])
        for v in obj.values():
            found |= _distributions(v)
    elif isinstance(obj, list):
        for v in obj:
            found |= _distributions(v)
    return found


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def _lookup(obj: Any, dotted: str) -> tuple[bool, Any]:
    for part in dotted.split("."):
        if isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            return False, None
    return True, obj


def _compact(value: Any, limit: int = 140) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


SKIP_DIFF = ("name", "description", "assumptions", "costs.notes")


def scenario_changes(base: dict[str, Any], other: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(setting, baseline value, option value) for every resolved setting that differs; a block added or
    removed whole (a new service, say) is one row."""
    fb, fo = _flatten(base), _flatten(other)
    rows: dict[str, tuple[str, str, str]] = {}
    for key in list(dict.fromkeys([*fb, *fo])):
        if any(key == s or key.startswith(s + ".") for s in SKIP_DIFF):
            continue
        if key in fb and key in fo:
            if fb[key] != fo[key]:
                rows[key] = (key, _compact(fb[key]), _compact(fo[key]))
            continue
        # present on one side only: report the outermost block missing from the other side
        parts = key.split(".")
        missing_from = base if key in fo else other
        top = key
        for i in range(1, len(parts) + 1):
            if not _lookup(missing_from, ".".join(parts[:i]))[0]:
                top = ".".join(parts[:i])
                break
        if top in rows:
            continue
        value = _lookup(other if key in fo else base, top)[1]
        rows[top] = (top, "(not set)", _compact(value)) if key in fo else (top, _compact(value), "(removed)")
    return list(rows.values())


def _service_label(sc: dict[str, Any], kpi: str, label: str) -> str:
    """'Oakwood Community Unit: service utilisation' rather than the generic 'Service utilisation'."""
    if not kpi.startswith("service_") or kpi == "service_capacity_cost":
        return label
    for _, name, svc_label, _ in _services(sc):
        if kpi.startswith(f"service_{name}_"):
            generic = label[0].lower() + label[1:] if label else label
            return f"{svc_label}: {generic.removeprefix('service ')}"
    return label


# --------------------------------------------------------------------------------------------- HTML builder

CSS = """
:root { --blue: #005EB8; --dark-blue: #003087; --grey: #425563; --pale: #E8EDEE; --text: #212B32;
        --green: #007F3B; --red: #D5281B; --yellow: #FFB81C; --light-blue: #E6F0F9; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; background: #F0F4F5; color: var(--text); font-size: 15px; line-height: 1.45;
       font-family: Arial, "Helvetica Neue", Helvetica, "Liberation Sans", sans-serif; }
.page { max-width: 1040px; margin: 0 auto; background: #fff; padding: 0 44px 36px; }
.masthead { background: var(--blue); color: #fff; margin: 0 -44px 22px; padding: 26px 44px 20px; }
.masthead .kicker { font-size: 13px; font-weight: bold; letter-spacing: 0.02em; margin: 0; opacity: 0.92; }
.masthead h1 { font-size: 29px; line-height: 1.2; margin: 8px 0 6px; }
.masthead .subtitle { font-size: 16px; margin: 0; max-width: 52em; }
.masthead dl { display: flex; flex-wrap: wrap; gap: 4px 26px; margin: 16px 0 0; font-size: 13px; }
.masthead dt { font-weight: bold; display: inline; }
.masthead dd { display: inline; margin: 0 0 0 4px; }
.masthead .band { background: var(--dark-blue); margin: 16px -44px -20px; padding: 8px 44px; font-size: 12.5px; }
h2 { color: var(--dark-blue); font-size: 22px; line-height: 1.25; border-bottom: 3px solid var(--blue);
     padding-bottom: 4px; margin: 34px 0 12px; break-after: avoid; page-break-after: avoid; }
h3 { color: var(--dark-blue); font-size: 17px; margin: 22px 0 8px; break-after: avoid; page-break-after: avoid; }
p { margin: 8px 0; }
ul.key { padding-left: 22px; margin: 8px 0 12px; }
ul.key li { margin: 5px 0; }
@media print { ul.key li { margin: 3px 0; } .masthead .subtitle { font-size: 11pt; } }
nav.toc { background: var(--pale); padding: 10px 16px; margin: 0 0 8px; font-size: 13.5px; }
nav.toc h2 { border: 0; font-size: 15px; margin: 0 0 4px; padding: 0; }
nav.toc ul { columns: 2; margin: 0; padding-left: 0; list-style: none; }
nav.toc li { margin: 2px 0; }
nav.toc a { color: var(--blue); }
.callout { border-left: 8px solid var(--blue); background: var(--light-blue); padding: 10px 16px; margin: 16px 0;
           break-inside: avoid; page-break-inside: avoid; }
.callout h3 { margin-top: 4px; }
.warning { border-left-color: var(--yellow); background: #FFF7E0; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 18px; font-size: 13px;
        font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: bold; color: var(--dark-blue); padding: 0 0 6px; }
th { background: var(--dark-blue); color: #fff; text-align: left; padding: 6px 8px; vertical-align: bottom;
     font-weight: bold; }
th small { display: block; font-weight: normal; opacity: 0.9; }
td { padding: 5px 8px; border-bottom: 1px solid #D8DDE0; vertical-align: top; }
tbody tr:nth-child(even) td { background: #F7F9FA; }
tr.group td { background: var(--pale) !important; font-weight: bold; color: var(--dark-blue); }
tr.dominated td { color: var(--grey); }
td.num, th.num { text-align: right; }
td.num { white-space: nowrap; }
table#economics-table td .ci { white-space: normal; }
td.effect { white-space: nowrap; font-weight: bold; }
td.effect.better { color: var(--green); }
td.effect.worse { color: var(--red); }
td.effect.none { color: var(--grey); font-weight: normal; }
td .v { display: block; font-weight: bold; }
td .ci { display: block; color: var(--grey); font-size: 11.5px; font-weight: normal; }
td.ci { color: var(--grey); }
.unit, .muted { color: var(--grey); }
.def { display: block; color: var(--grey); font-size: 11.5px; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 3px; font-size: 11.5px; font-weight: bold;
         white-space: nowrap; margin-top: 2px; }
table.stress td:first-child { width: 19%; }
table.stress td:last-child { width: 15%; }
table.stress .badge { white-space: normal; }
table#headline td.ci { white-space: normal; }
table#headline td:nth-child(5) { min-width: 7.5em; }
table.fixed { table-layout: fixed; }
table.fixed td.ci, table.fixed td.effect { white-space: normal; }
p.lead, h2 + p, h3 + p { break-after: avoid; page-break-after: avoid; }
.badge.met, .badge.auto { background: var(--green); color: #fff; }
.badge.missed { background: var(--red); color: #fff; }
.badge.uncertain, .badge.partial { background: var(--yellow); color: var(--text); }
.badge.analyst { background: #fff; color: var(--dark-blue); border: 1.5px solid var(--dark-blue); }
.badge.yes { background: var(--blue); color: #fff; }
.todo { background: #FFF2C2; padding: 0 3px; font-style: italic; }
.assumption { background: #FFF2C2; padding: 0 3px; }
figure { margin: 18px 0 26px; break-inside: avoid; page-break-inside: avoid; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; border: 1px solid var(--pale); }
figcaption { font-size: 13px; color: var(--grey); margin-top: 6px; }
figcaption b { color: var(--text); }
code, .code { font-family: "DejaVu Sans Mono", Consolas, "Liberation Mono", monospace; font-size: 12px;
              overflow-wrap: anywhere; }
pre.code { white-space: pre-wrap; background: var(--pale); padding: 8px 10px; margin: 4px 0 10px; }
dl.repro { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 8px 0 16px; }
dl.repro dt { font-weight: bold; }
dl.repro dd { margin: 0; overflow-wrap: anywhere; }
.keep { break-inside: avoid; page-break-inside: avoid; }
table#headline td:first-child { width: 30%; }
table#headline td .v, table#headline td.mean { font-size: 14px; font-weight: bold; }
.appendix-start { break-before: page; page-break-before: always; }
footer { margin-top: 30px; border-top: 1px solid var(--pale); padding-top: 8px; font-size: 12px; color: var(--grey); }
@page { size: A4; margin: 14mm 13mm 16mm 13mm;
        @bottom-right { content: "Page " counter(page) " of " counter(pages); font-size: 8pt; color: #425563; } }
@media print {
  body { background: #fff; font-size: 10pt; }
  .page { max-width: none; margin: 0; padding: 0; }
  .masthead { margin: 0 0 14px; padding: 14px 18px 12px; }
  .masthead h1 { font-size: 20pt; }
  .masthead .band { margin: 12px -18px -12px; padding: 6px 18px; }
  nav.toc { display: none; }
  h2 { font-size: 15pt; margin-top: 22px; }
  h3 { font-size: 12pt; }
  table { font-size: 8.5pt; }
  td, th { padding: 3px 5px; }
  td .ci, .def { font-size: 7.5pt; }
  table#headline .def { display: none; }
  table#headline td .v, table#headline td.mean { font-size: 10pt; }
  tr, .callout, .keep, figure, dl.repro > * { break-inside: avoid; page-break-inside: avoid; }
  caption { break-after: avoid; page-break-after: avoid; }
  p, li { orphans: 3; widows: 3; }
  thead { display: table-header-group; }
  figure img { max-height: 215mm; width: auto; max-width: 100%; }
  .table-wrap { overflow: visible; }
  a { color: inherit; text-decoration: none; }
}
"""


@dataclass
class Builder:
    """Collects numbered sections and figures, then renders the page."""

    title: str
    kind: str
    sections: list[tuple[str, str, str, bool]] = field(default_factory=list)   # id, heading, body, appendix
    figures: int = 0

    def section(self, sid: str, heading: str, body: str, appendix: bool = False) -> None:
        if body.strip():
            self.sections.append((sid, heading, body, appendix))

    def figure(self, png: bytes | None, alt: str, caption: str, missing: str = "") -> str:
        if png is None:
            return f'<p class="muted">{esc(missing or "This chart is not available.")}</p>' if missing else ""
        self.figures += 1
        data = base64.b64encode(png).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}">'
                f"<figcaption><b>Figure {self.figures}.</b> {caption}</figcaption></figure>")

    def render(self, masthead: str, footer: str) -> str:
        numbered, appendices = [], []
        n = a = 0
        for sid, heading, body, appendix in self.sections:
            if appendix:
                a += 1
                label = f"Appendix {chr(64 + a)}. {heading}"
                appendices.append((sid, label, body))
            else:
                n += 1
                numbered.append((sid, f"{n}. {heading}", body))
        toc = "".join(f'<li><a href="#{esc(sid)}">{esc(label)}</a></li>' for sid, label, _ in numbered + appendices)
        parts = [f'<section id="{esc(sid)}">{_head(label, body)}</section>' for sid, label, body in numbered]
        for i, (sid, label, body) in enumerate(appendices):
            cls = ' class="appendix-start"' if i == 0 else ""
            parts.append(f'<section id="{esc(sid)}"{cls}>{_head(label, body)}</section>')
        return (
            '<!DOCTYPE html>\n<html lang="en-GB">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta name="generator" content="flowsim {esc(__version__)}">\n'
            f"<title>{esc(self.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f'<div class="page" data-kind="{esc(self.kind)}">\n{masthead}\n'
            f'<nav class="toc"><h2>Contents</h2><ul>{toc}</ul></nav>\n'
            + "\n".join(parts)
            + f"\n<footer>{footer}</footer>\n</div>\n</body>\n</html>\n"
        )


def _block_end(text: str, start: int) -> int:
    """End of the element that opens at ``start`` (nested elements of the same tag counted), or -1."""
    m = re.match(r"<([a-z0-9]+)\b", text[start:])
    if not m:
        return -1
    tag = m.group(1)
    depth = 0
    for t in re.finditer(rf"<(/?){tag}\b[^>]*>", text[start:]):
        depth += -1 if t.group(1) else 1
        if depth == 0:
            return start + t.end()
    return -1


def _head(label: str, body: str) -> str:
    """The section heading, kept on one printed page with what opens the section: everything before ``LEAD`` if
    the body has it, else its first block (a figure, or an intro paragraph and the short table or figure after
    it), so a heading never ends a page alone."""
    h2 = f"<h2>{esc(label)}</h2>"
    if LEAD in body:
        lead, rest = body.split(LEAD, 1)
        return f'<div class="keep">{h2}{lead}</div>{rest}'
    end = _block_end(body, 0)
    if end < 0:
        return h2 + body
    if body.startswith(("<p", "<h3")):
        nxt = _block_end(body, end)
        if nxt > 0 and body.startswith(('<div class="keep', '<div class="table-wrap keep', "<figure"), end):
            end = nxt
    return f'<div class="keep">{h2}{body[:end]}</div>{body[end:]}'


def _table(head: Sequence[str], rows: Iterable[str], tid: str = "", caption: str = "", cls: str = "",  # noqa: PLR0917
           num_from: int = 1, widths: Sequence[int] = ()) -> str:
    """A table whose header cells from ``num_from`` on are right-aligned (numbers); ``widths`` (percent per
    column) fixes the layout so long labels get room."""
    ths = "".join(f'<th class="num">{h}</th>' if i >= num_from else f"<th>{h}</th>" for i, h in enumerate(head))
    ident = f' id="{esc(tid)}"' if tid else ""
    klass = f' class="{esc(cls)}"' if cls else ""
    cap = f"<caption>{caption}</caption>" if caption else ""
    rows = list(rows)
    keep = " keep" if len(rows) <= 12 else ""  # a short table is never split across pages
    cols = ""
    if widths:
        cols = "<colgroup>" + "".join(f'<col style="width:{w}%">' for w in widths) + "</colgroup>"
        klass = klass[:-1] + ' fixed"' if klass else ' class="fixed"'
    return (f'<div class="table-wrap{keep}"><table{ident}{klass}>{cap}{cols}<thead><tr>{ths}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _cell(mean: object, low: object, high: object, unit: str, attrs: str = "", extra: str = "") -> str:  # noqa: PLR0917
    ci = fmt_ci(low, high, unit)
    ci_html = f'<span class="ci">{esc(ci)}</span>' if ci else ""
    return f'<td class="num"{attrs}><span class="v">{esc(fmt(mean, unit))}</span>{ci_html}{extra}</td>'


def _measure(label: str, unit: str, definition: str = "", unit_column: bool = True) -> str:
    d = f'<span class="def">{esc(definition)}</span>' if definition else ""
    if not unit_column:
        u = f' <span class="unit">({esc(unit)})</span>' if unit else ""
        return f"<td>{esc(label)}{u}{d}</td>"
    return f"<td>{esc(label)}{d}</td><td class=\"unit\">{esc(unit)}</td>"


def _masthead(kicker: str, title: str, subtitle: str, meta: Sequence[tuple[str, str]], band: str) -> str:
    items = "".join(f"<div><dt>{esc(k)}:</dt><dd>{esc(v)}</dd></div>" for k, v in meta)
    return (f'<header class="masthead"><p class="kicker">{esc(kicker)}</p><h1>{esc(title)}</h1>'
            f'<p class="subtitle">{esc(subtitle)}</p><dl>{items}</dl><div class="band">{esc(band)}</div></header>')


def _how_to_read(n_reps: int, paired: bool = False, standards: bool = True) -> str:
    pair = ("<p>Options are compared on <b>common random numbers</b>: replication 1 of every option faces the same "
            "arrivals and lengths of stay as replication 1 of the baseline, so the <b>difference</b> between them is "
            "the effect of the option, not of chance. A difference is called <b>distinguishable</b> when its "
            "95% confidence interval excludes zero; otherwise the model cannot tell the option from the baseline "
            "with this many replications (which is not the same as showing it makes no difference).</p>"
            if paired else "")
    return (
        '<div class="callout keep"><h3>How to read this report</h3>'
        f"<p>The model simulated the same period <b>{n_reps} times</b> (replications), each a different but "
        "equally plausible run of chance: who arrives when, how long each patient stays. Figures in <b>bold</b> are "
        "the average over those replications. The smaller range beneath or beside each figure "
        "(for example <i>12.1 to 32.5</i>) is its <b>95% confidence interval</b>: the range in which we are 95% "
        "confident the model's long-run average lies. It narrows with more replications, and it reflects only "
        "the model's own randomness: it does not include uncertainty in the data and assumptions behind the "
        "model (see the assumptions section).</p>"
        + ("<p>Against a national standard, <b>Met</b> or <b>Missed</b> means the whole interval lies on one side "
           "of the line; <b>Too close to call</b> means it straddles the line. " if standards else "<p>")
        + "Shaded bands on charts show the spread of individual replications, that is how different one winter "
        "could look from another, which is wider than the confidence interval of the average.</p>"
        f"{pair}</div>")


def _assumption_items(items: Iterable[str], note: dict[str, str] | None = None) -> str:
    out = []
    for a in items:
        extra = f' <span class="muted">({esc(note[a])})</span>' if note and a in note else ""
        out.append(f"<li>{_mark_assumption(a)}{extra}</li>")
    return "".join(out)


def _mark_assumption(text: str) -> str:
    """Escape, and highlight the word ASSUMPTION so readers see which figures are not sourced."""
    return esc(text).replace("ASSUMPTION", '<span class="assumption">ASSUMPTION</span>')


def _cost_entries(sc: dict[str, Any]) -> list[tuple[str, float, str | None]]:
    """(what, value, source note) for every unit cost a scenario sets or notes."""
    costs = sc.get("costs") or {}
    notes = costs.get("notes") or {}
    out: list[tuple[str, float, str | None]] = []
    for f in COST_FIELDS:
        value = _num(costs.get(f, 0.0))
        note = notes.get(f)
        if note or value:
            out.append((_pretty(f).capitalize(), value, str(note) if note else None))
    for p, svc, label, _ in _services(sc):
        s = ((sc.get("pathways") or {}).get(p) or {}).get("services", {}).get(svc) or {}
        for key in ("unit_cost_per_day", "cost_per_occupied_day"):
            value = _num(s.get(key, 0.0))
            if value:
                out.append((f"{label}: {_pretty(key)}", value, str(s.get("cost_note") or "")))
    return out


def _cost_notes_table(scenarios: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """Each scenario's unit costs with their sources; after the first, only costs that differ from it."""
    rows = []
    first: set[tuple[str, float, str | None]] = set()
    for i, (name, sc) in enumerate(scenarios):
        for entry in _cost_entries(sc):
            if i and entry in first:
                continue
            if i == 0:
                first.add(entry)
            what, value, note = entry
            src = (_mark_assumption(note) if note else '<span class="muted">Service cost: no source field; see the '
                   "scenario file</span>" if note == "" else
                   '<span class="todo">No source given: analyst to complete</span>')
            who = f"<td>{esc(name)}</td>" if len(scenarios) > 1 else ""
            rows.append(f"<tr>{who}<td>{esc(what)}</td><td class=\"num\">{esc(fmt(value, 'GBP'))}</td><td>{src}</td>"
                        "</tr>")
    if not rows:
        return "<p>No unit costs are set, so no costs are reported.</p>"
    later = (f" {esc(', '.join(n for n, _ in scenarios[1:]))} use the same costs as {esc(scenarios[0][0])} except "
             "where listed." if len(scenarios) > 1 else "")
    return ("<p>Every cost should say where it came from: a source document, or <span class=\"assumption\">"
            f"ASSUMPTION</span> where no source was available.{later}</p>"
            + _table(["Scenario", "Cost", "Value", "Source"][0 if len(scenarios) > 1 else 1:], rows,
                     caption="Unit costs and their sources", num_from=2 if len(scenarios) > 1 else 1).replace(
                '<th class="num">Source</th>', "<th>Source</th>"))


# --------------------------------------------------------------------------------------------- STRESS-DES

STATUS_TEXT = {"auto": "Filled automatically", "partial": "Partly filled: analyst to add",
               "analyst": "Analyst to complete"}


def _todo(text: str) -> str:
    return f'<span class="todo">Analyst to complete: {esc(text)}</span>'


@dataclass
class StressFacts:
    """What the directory tells us for the STRESS-DES checklist."""

    sc: dict[str, Any]
    purpose: str
    outputs: str
    experiment: str
    scenario_logic: str
    replications: str
    estimation: str
    seed: str
    versions: dict[str, str]
    execution: str
    scenario_ids: str
    warmup_method: str = ""


def _stress_table(f: StressFacts) -> str:
    sc = f.sc
    sim = sc.get("simulation") or {}
    cohorts = sc.get("cohorts") or {}
    cohort_text = ", ".join(f"{_pretty(str(k))} ({_num((v or {}).get('share')):.0%})" for k, v in cohorts.items())
    services = _services(sc)
    svc_text = "; ".join(f"{p} {label} ({cap})" for p, _, label, cap in services) or "none"
    acute = (sc.get("acute") or {}).get("beds")
    assess = sc.get("assessment") or {}
    electives = sc.get("electives")
    escalation = sc.get("escalation")
    disruptions = sc.get("disruptions") or []
    full = sc.get("mode", "full") != "pathway_only"
    dists = ", ".join(sorted(_distributions(sc))) or "none"
    init = sc.get("initial_state")
    if init:
        snap = init.get("snapshot_file") if isinstance(init, dict) else None
        initial = f"Starts from a snapshot (initial_state{': ' + str(snap) if snap else ''}); no warm-up."
    else:
        initial = (f"Each replication starts from an empty system {sim.get('warmup_days', '?')} days before the start "
                   f"date; that warm-up is discarded{f' ({f.warmup_method})' if f.warmup_method else ''}.")
    rows: list[tuple[str, str, str, str]] = [
        ("Objectives", "1.1 Purpose of the model", esc(f.purpose) + " " + _todo(
            "the decision the board is asked to take and why simulation was chosen."), "partial"),
        ("Objectives", "1.2 Model outputs", esc(f.outputs), "auto"),
        ("Objectives", "1.3 Experimentation aims", f.experiment, "partial"),
        ("Logic", "2.1 Base model overview diagram",
         esc("Patients flow: decision to admit (ED) -> acute G&A bed -> medically fit -> discharge assessment "
             "-> pathway P0 (home), P1 (home with support), P2 (intermediate care bed) or P3 (nursing / "
             "discharge-to-assess bed) -> home, long-term care or death. ") + _todo("a diagram for the paper."),
         "partial"),
        ("Logic", "2.2 Base model logic", esc(
            f"Discrete-event simulation (SimPy, process-based) in {'full' if full else 'pathway-only'} mode: "
            + (f"{acute if acute is not None else '?'} acute beds" if full else "no acute stage")
            + (f"; a discharge assessment team of {_capacity(assess.get('staff'))}" if assess else "")
            + f"; {len(services)} downstream services"
            + ("; elective admissions compete for beds" if electives else "")
            + ("; OPEL escalation levels trigger actions" if escalation else "")
            + (f"; {len(disruptions)} scheduled disruption(s)" if disruptions else "") + "."), "auto"),
        ("Logic", "2.3 Scenario logic", f.scenario_logic or esc("A single scenario. ") + _todo(
            "how this scenario differs from current practice, if it is an option."),
         "auto" if f.scenario_logic else "partial"),
        ("Logic", "2.4 Algorithms", esc(
            "Non-elective arrivals: a non-homogeneous Poisson process (hourly rates by month, weekday and hour, "
            "by inversion of the cumulative intensity)"
            + ("; electives: a Poisson number each weekday" if electives else "")
            + f". Durations sampled from: {dists}. Routing by the cohorts' pathway mix and the services' outcome "
            "probabilities."), "auto"),
        ("Logic", "2.5.1 Entities", esc(f"Patients in {len(cohorts)} cohort(s): {cohort_text or 'none'}."), "auto"),
        ("Logic", "2.5.2 Activities", esc(
            "Wait in ED for a bed, acute stay until medically fit, discharge assessment, transfer, stay in a "
            "downstream service, long-term care placement." if full else
            "Referral, discharge assessment, stay in a downstream service, long-term care placement."), "auto"),
        ("Logic", "2.5.3 Resources", esc(
            (f"Acute G&A beds: {_capacity(acute)}. " if full else "")
            + (f"Assessment staff: {_capacity(assess.get('staff'))}. " if assess else "")
            + f"Downstream services (places): {svc_text}."), "auto"),
        ("Logic", "2.5.4 Queues", esc(
            "One first-come, first-served queue in front of each capacity pool (acute beds, assessment, each "
            "pathway's services); patients wait in their current bed, which is what makes a delayed transfer."),
         "auto"),
        ("Logic", "2.5.5 Entry and exit points", esc(
            "Enter: non-elective admissions" + (", elective admissions" if electives else "")
            + ", readmissions. Leave: home, long-term care or death; the results window runs from "
            f"{_date(sim.get('start_date'))} for {sim.get('duration_days', '?')} days."), "auto"),
        ("Data", "3.1 Data sources", _cost_sources_text(sc) + " " + _todo(
            "the sources of arrival rates, lengths of stay, pathway mix and capacities."), "partial"),
        ("Data", "3.2 Pre-processing", _todo("how the source data were cleaned and turned into the inputs."),
         "analyst"),
        ("Data", "3.3 Input parameters", esc(
            "Every input is in the resolved scenario file (scenario.yaml) with every default spelled out; "
            f"scenario id {f.scenario_ids}."), "auto"),
        ("Data", "3.4 Assumptions", esc(
            f"{len(sc.get('assumptions') or [])} stated assumption(s) are listed in the assumptions section; "
            "cost figures are marked with their source or ASSUMPTION."), "auto"),
        ("Experimentation", "4.1 Initialisation", esc(initial), "auto"),
        ("Experimentation", "4.2 Run length", esc(
            f"{sim.get('duration_days', '?')} days reported, from {_date(sim.get('start_date'))}, after the warm-up "
            "(a terminating study of the period, not a steady state)."), "auto"),
        ("Experimentation", "4.3 Estimation approach", esc(f.replications + " " + f.estimation), "auto"),
        ("Implementation", "5.1 Software or programming language", esc(
            "flowsim " + f.versions.get("flowsim", "?") + " (Python " + f.versions.get("python", "?") + ", SimPy "
            + f.versions.get("simpy", "?") + ", NumPy " + f.versions.get("numpy", "?") + ", pandas "
            + f.versions.get("pandas", "?") + "); full list in the reproducibility section."), "auto"),
        ("Implementation", "5.2 Random sampling", esc(
            f"Base seed {f.seed}. NumPy PCG64 generators, one named stream per activity, seeded from "
            "(seed, replication, stream name); replication r uses the same streams in every scenario (common "
            "random numbers)."), "auto"),
        ("Implementation", "5.3 Model execution", esc(f.execution), "auto"),
        ("Implementation", "5.4 System specification", _todo(
            "the computer and operating system used (results do not depend on them: the same seed gives the "
            "same numbers)."), "analyst"),
        ("Code access", "6.1 Computer model sharing statement", esc(
            f"flowsim {f.versions.get('flowsim', '?')}, MIT licence. ") + _todo(
            "where the code and the scenario files can be obtained (repository and commit)."), "partial"),
    ]
    out, last = [], ""
    for group, item, text, status in rows:
        if group != last:
            out.append(f'<tr class="group"><td colspan="3">{esc(group)}</td></tr>')
            last = group
        out.append(f'<tr data-status="{status}"><td>{esc(item)}</td><td>{text}</td>'
                   f'<td><span class="badge {status}">{esc(STATUS_TEXT[status])}</span></td></tr>')
    done = sum(1 for r in rows if r[3] == "auto")
    intro = (f"<p>The Strengthening the Reporting of Empirical Simulation Studies checklist for discrete-event "
             "simulation (STRESS-DES; Monks et al., 2019, <i>Journal of Simulation</i> 13(1):55-67). flowsim "
             f"filled {done} of {len(rows)} items from the scenario and run settings; items marked "
             '<span class="badge analyst">Analyst to complete</span> or <span class="badge partial">Partly filled'
             "</span> need the analyst's words before the paper goes to the board.</p>")
    return intro + _table(["Item", "This study", "Status"], out, tid="stress-des-table", cls="stress", num_from=99)


def _cost_sources_text(sc: dict[str, Any]) -> str:
    notes = ((sc.get("costs") or {}).get("notes")) or {}
    if not notes:
        return esc("No cost sources recorded in the scenario.")
    sourced = sum(1 for v in notes.values() if "ASSUMPTION" not in str(v))
    return esc(f"Costs: {len(notes)} noted ({sourced} with a source, {len(notes) - sourced} assumed); "
               "see the cost table.")


# --------------------------------------------------------------------------------------------- reproducibility


def _repro(versions: dict[str, Any], rows: Sequence[tuple[str, str]], command: object, source: Path) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in rows)
    vers = ", ".join(f"{esc(k)} {esc(v)}" for k, v in versions.items())
    return (
        "<p>Everything needed to reproduce these numbers exactly: the same flowsim version and scenario files, "
        "the same seed and the command below give identical results on any computer.</p>"
        f'<div class="keep"><dl class="repro" id="reproducibility-facts">{items}'
        f"<dt>Software versions</dt><dd>{vers}</dd>"
        f'<dt>Command line</dt><dd><pre class="code">{esc(_command(command))}</pre></dd>'
        f"<dt>Results directory</dt><dd><code>{esc(source)}</code></dd>"
        f"<dt>Report made</dt><dd>{esc(_created(dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')))}"
        f" by flowsim {esc(__version__)} (flowsim report)</dd></dl></div>")


# --------------------------------------------------------------------------------------------- run


def _kpi_stats(kpis: dict[str, Any], name: str) -> tuple[float, float, float]:
    k = kpis.get(name) or {}
    return _num(k.get("mean")), _num(k.get("ci_low")), _num(k.get("ci_high"))


def _standards(sc: dict[str, Any]) -> dict[str, tuple[str, float, str]]:
    """KPI -> (standard text, threshold on the KPI, sense)."""
    t = _targets(sc)
    out: dict[str, tuple[str, float, str]] = {
        "delayed_per_100k": (f"at most {t['delayed_per_100k']:g} (BCF)", t["delayed_per_100k"], "at most"),
        "occupancy_mean_pct": (f"at most {t['occupancy_pct']:g}%", t["occupancy_pct"], "at most"),
        "ed_4h_breach_pct": (f"at most {100 - t['ed_within_4h_pct']:g}% ({t['ed_within_4h_pct']:g}% within 4 h)",
                             100 - t["ed_within_4h_pct"], "at most"),
    }
    per_day = _dtoc_target_per_day(sc)
    if per_day is not None:
        out["delayed_patients_per_day"] = (f"at most {per_day:.1f} (BCF)", per_day, "at most")
    return out


def _kpi_groups(names: Iterable[str]) -> list[tuple[str, list[str]]]:
    grouped: dict[str, list[str]] = {}
    for k in names:
        heading = next((h for h, test in REPORT_GROUPS if test(k)), "Other measures")
        grouped.setdefault(heading, []).append(k)
    order = [h for h, _ in REPORT_GROUPS] + ["Other measures"]
    return [(h, grouped[h]) for h in order if h in grouped]


def build_run_report(d: Path) -> str:  # noqa: C901, PLR0915
    s = _read_json(d / "summary.json")
    sc = _read_yaml(d / "scenario.yaml")
    exp = _read_json(d / "experiment.json") if (d / "experiment.json").exists() else {}
    kpis: dict[str, Any] = s.get("kpis") or {}
    name = str(s.get("scenario") or sc.get("name") or d.name)
    n = int(_num(s.get("replications")) if math.isfinite(_num(s.get("replications"))) else 0)
    window = s.get("window") or {}
    b = Builder(f"{name}: simulation report", "run")
    standards = _standards(sc)
    target_day = _dtoc_target_per_day(sc)
    t = _targets(sc)

    # key messages
    msgs = []
    m, lo, hi = _kpi_stats(kpis, "delayed_patients_per_day")
    if math.isfinite(m):
        text = f"On average <b>{esc(fmt(m))}</b> patients a day were delayed ({esc(fmt_ci(lo, hi)) or 'no interval'})"
        if target_day is not None:
            v = verdict(lo, hi, target_day, "at most")
            text += (f", against the Better Care Fund target of {esc(fmt(target_day))} a day "
                     f"({t['delayed_per_100k']:g} per 100,000 adults): {_badge(v)}")
        msgs.append(text + ".")
    m, lo, hi = _kpi_stats(kpis, "occupancy_mean_pct")
    if math.isfinite(m):
        v = verdict(lo, hi, t["occupancy_pct"], "at most")
        over = _kpi_stats(kpis, "days_over_92_pct")[0]
        extra = f"; occupancy was above 92% on {esc(fmt(over))}% of days" if math.isfinite(over) else ""
        msgs.append(f"G&amp;A bed occupancy averaged <b>{esc(fmt(m))}%</b> ({esc(fmt_ci(lo, hi))}) against the "
                    f"{t['occupancy_pct']:g}% ceiling: {_badge(v)}{extra}.")
    m, lo, hi = _kpi_stats(kpis, "ed_4h_breach_pct")
    if math.isfinite(m):
        v = verdict(lo, hi, 100 - t["ed_within_4h_pct"], "at most")
        msgs.append(f"<b>{esc(fmt(m))}%</b> of admitted patients waited more than 4 hours for a bed "
                    f"({esc(fmt_ci(lo, hi))}); the standard is at least {t['ed_within_4h_pct']:g}% within 4 hours: "
                    f"{_badge(v)}.")
    m, lo, hi = _kpi_stats(kpis, "total_cost")
    if math.isfinite(m) and m:
        msgs.append(f"The costs the model prices total <b>{esc(fmt(m, 'GBP'))}</b> ({esc(fmt_ci(lo, hi, 'GBP'))}) "
                    "over the period.")
    if s.get("invariant_violations"):
        msgs.append('<span class="todo">The run reported internal check failures; treat the results with '
                    "caution and report them.</span>")
    msgs.append("These are model estimates under the assumptions listed in this report, not forecasts.")
    head_rows = []
    for k in BOARD_HEADLINE:
        if k not in kpis:
            continue
        info = kpis[k]
        mean, low, high = _kpi_stats(kpis, k)
        if k == "total_cost" and not mean:
            continue
        unit = str(info.get("unit") or "")
        std = standards.get(k)
        vcell = _badge(verdict(low, high, std[1], std[2])) if std else ""
        head_rows.append(
            f'<tr data-kpi="{esc(k)}">{_measure(str(info.get("label") or k), unit, str(info.get("definition") or ""))}'
            f'<td class="num mean">{esc(fmt(mean, unit))}</td><td class="num ci">{esc(fmt_ci(low, high, unit))}</td>'
            f"<td>{esc(std[0]) if std else ''}</td><td>{vcell}</td></tr>")
    summary = (f'<ul class="key">{"".join(f"<li>{x}</li>" for x in msgs)}</ul>'
               + '<div class="keep">' + _table(["Measure", "Unit", "Average", "95% CI", "Standard", "Against the "
                                                "standard"], head_rows, tid="headline",
                                               caption="Headline results", num_from=2).replace(
                   '<th class="num">Standard</th><th class="num">Against the standard</th>',
                   "<th>Standard</th><th>Against the standard</th>") + "</div>" + _how_to_read(n))
    b.section("summary", "Summary", summary)

    # DTOC trajectory
    figs = _run_figure_files(d, sc, name)
    daily = _read_daily(d, ["delayed_midnight"])
    dtoc_png = None
    if daily is not None and "delayed_midnight" in daily.columns and not daily.empty:
        label = (f"BCF target: {t['delayed_per_100k']:g} per 100,000 adults = {target_day:.1f} a day"
                 if target_day is not None else "")
        dtoc_png = dtoc_target_png(daily, name, target_day, label)
    quarters = s.get("quarters") or []
    q_rows = [f"<tr><td>{esc(q.get('period'))}</td><td class=\"num\">{esc(q.get('days'))}</td>"
              f"<td class=\"num\">{esc(fmt(q.get('delayed_days')))}</td>"
              f"<td class=\"num ci\">{esc(fmt_ci(q.get('ci_low'), q.get('ci_high')))}</td>"
              f"<td class=\"num\">{esc(fmt(q.get('delayed_per_day')))}</td>"
              f"<td class=\"num\">{esc(fmt(q.get('rate_per_100k')))}</td></tr>" for q in quarters]
    body = (b.figure(dtoc_png, "Line chart of delayed patients each day against the Better Care Fund target",
                     "Delayed transfers of care each day (midnight census, acute and community beds) against the "
                     "Better Care Fund target. The line is the average over replications; the shading shows how "
                     "much one winter could differ from another.", missing="No daily results (daily.csv) to draw "
                     "the trajectory from.")
            + (_table(["NHS quarter", "Days", "Delayed days", "95% CI", "Delayed a day", "Per 100,000 adults"],
                      q_rows, caption="Delayed days by NHS quarter (the DTOC return counts each patient delayed at "
                      "midnight as one delayed day)") if q_rows else ""))
    b.section("dtoc", "Delayed transfers of care against the BCF target", body)
    b.section("occupancy", "Bed occupancy against 92%", b.figure(
        figs.pop("occupancy.png", None), "Fan chart of acute beds occupied at midnight with the 92% occupancy line",
        "Acute (G&amp;A) beds occupied at midnight: the line is the median replication, the bands the middle 50% "
        "and 90% of replications; red is the beds available and the dashed orange line 92% of them.",
        missing="The occupancy chart is not available."))
    parts = [b.figure(figs.pop("delays.png", None), "Stacked chart of delayed patients by reason",
                      "Delayed patients by what they are waiting for."),
             b.figure(figs.pop("queues.png", None), "Charts of places in use and queues for community services",
                      "Community services: places in use against capacity, and patients queueing for each pathway.")]
    b.section("pathways", "Where patients wait to leave hospital", "".join(parts))
    b.section("escalation", "Escalation (OPEL)", b.figure(
        figs.pop("timeline.png", None), "Timeline of OPEL escalation levels",
        "OPEL escalation level over time and the escalation beds open."))
    rest = "".join(b.figure(png, f"Chart {fname}", esc(_pretty(Path(fname).stem).capitalize() + "."))
                   for fname, png in sorted(figs.items()))
    b.section("more-charts", "More charts", rest)

    assumptions = list(s.get("assumptions") or sc.get("assumptions") or [])
    b.section("assumptions", "Assumptions",
              (f'<ol class="assumptions">{_assumption_items(assumptions)}</ol>' if assumptions
               else f"<p>{_todo('the scenario lists no assumptions.')}</p>")
              + "<h3>Costs and their sources</h3>" + _cost_notes_table([(name, sc)]))

    vers = {str(k): str(v) for k, v in (s.get("versions") or {}).items()}
    rep_info = exp.get("replications") if isinstance(exp.get("replications"), dict) else None
    reps = (f"{n} replications, chosen by the confidence-interval method of Hoad et al. (2010) on "
            f"{rep_info.get('kpi')} within {_num(rep_info.get('precision')):.0%}." if rep_info
            else f"{n} independent replications.")
    warm = exp.get("warmup") if isinstance(exp.get("warmup"), dict) else None
    facts = StressFacts(
        sc=sc, purpose=f"Estimate delayed transfers of care, bed occupancy and ED waits for: {name}. "
        + str(sc.get("description") or "").strip(),
        outputs=_outputs_text(kpis.keys()),
        experiment=esc("A single scenario; no experiments between scenarios. ") + _todo(
            "the question this run answers."),
        scenario_logic="", replications=reps,
        estimation="Means with 95% t confidence intervals over replications; quarterly DTOC delayed days from the "
        "daily midnight census.",
        seed=str(s.get("seed")), versions=vers, scenario_ids=str(s.get("scenario_hash")),
        execution=_execution_text(s),
        warmup_method=(f"chosen by MSER-5 on {warm.get('kpi')}" if warm else ""))
    b.section("stress-des", "Reporting checklist (STRESS-DES)", _stress_table(facts))
    b.section("reproducibility", "Reproducibility", _repro(vers, [
        ("Scenario", esc(name)), ("Scenario id (hash)", f"<code>{esc(s.get('scenario_hash'))}</code>"),
        ("Seed", f"<code>{esc(s.get('seed'))}</code>"), ("Replications", esc(n)),
        ("Period", esc(f"{_date(window.get('start_date'))} for {sc.get('simulation', {}).get('duration_days', '?')} "
                       f"days; warm-up {window.get('warmup_days', '?')} days")),
        ("Results created", esc(_created(s.get("created")))),
    ], s.get("command"), d.resolve()))

    _kpi_appendix(b, kpis, sc)
    months = s.get("months") or []
    m_rows = [f"<tr><td>{esc(q.get('period'))}</td><td class=\"num\">{esc(q.get('days'))}</td>"
              f"<td class=\"num\">{esc(fmt(q.get('delayed_days')))}</td>"
              f"<td class=\"num ci\">{esc(fmt_ci(q.get('ci_low'), q.get('ci_high')))}</td>"
              f"<td class=\"num\">{esc(fmt(q.get('delayed_per_day')))}</td>"
              f"<td class=\"num\">{esc(fmt(q.get('occupancy_pct')))}</td></tr>" for q in months]
    if m_rows:
        b.section("months", "Month by month", _table(
            ["Month", "Days", "Delayed days", "95% CI", "Delayed a day", "Occupancy %"], m_rows), appendix=True)

    period = (f"{_date(window.get('start_date'))} to {_date(_day_before(window.get('end_date')))}"
              if window.get("start_date") else "")
    meta = [("Period", period), ("Warm-up", f"{window.get('warmup_days', '?')} days"), ("Replications", str(n)),
            ("Seed", str(s.get("seed"))), ("Scenario id", str(s.get("scenario_hash")))]
    masthead = _masthead("Paper for the A&E Delivery Board · simulation of patient flow", name,
                         str(sc.get("description") or "").strip() or "Simulation of one scenario.",
                         [(k, v) for k, v in meta if v],
                         f"Results produced {_created(s.get('created'))} by flowsim {vers.get('flowsim', '?')}")
    return b.render(masthead, _footer(d))


def _day_before(text: object) -> str:
    try:
        return (dt.date.fromisoformat(str(text)[:10]) - dt.timedelta(days=1)).isoformat()
    except ValueError:
        return str(text)


def _footer(d: Path) -> str:
    return (f"Made by <b>flowsim report</b> {esc(__version__)} from <code>{esc(d.resolve())}</code>. Model "
            "estimates, not forecasts: read them with the assumptions and the checklist above.")


def _outputs_text(names: Iterable[str]) -> str:
    names = list(names)
    groups = _kpi_groups(names)
    return (f"{len(names)} measures with 95% confidence intervals over replications, in groups: "
            + "; ".join(f"{h.lower()} ({len(ks)})" for h, ks in groups)
            + ". Also daily series per replication, DTOC delayed days by NHS quarter and month, and charts.")


def _execution_text(s: dict[str, Any]) -> str:
    perf = s.get("performance") or {}
    secs = [x for x in (perf.get("seconds_per_replication") or []) if math.isfinite(_num(x))]
    events = [x for x in (perf.get("kernel_events") or []) if math.isfinite(_num(x))]
    text = ("Replications run independently (in parallel processes by default); results do not depend on "
            "how they are spread over processors.")
    if secs:
        text += f" About {sum(map(float, secs)) / len(secs):.1f} s per replication"
        if events:
            text += f" and {sum(map(float, events)) / len(events):,.0f} simulation events"
        text += "."
    return text


def _kpi_appendix(b: Builder, kpis: dict[str, Any], sc: dict[str, Any]) -> None:
    rows = []
    for heading, names in _kpi_groups(kpis):
        rows.append(f'<tr class="group"><td colspan="6">{esc(heading)}</td></tr>')
        for k in names:
            info = kpis[k] or {}
            unit = str(info.get("unit") or "")
            label = _service_label(sc, k, str(info.get("label") or k))
            rows.append(f'<tr data-kpi="{esc(k)}">{_measure(label, unit, str(info.get("definition") or ""))}'
                        f'<td class="num">{esc(fmt(info.get("mean"), unit))}</td>'
                        f'<td class="num ci">{esc(fmt_ci(info.get("ci_low"), info.get("ci_high"), unit))}</td>'
                        f'<td class="num">{esc(fmt(info.get("p5"), unit))}</td>'
                        f'<td class="num">{esc(fmt(info.get("p95"), unit))}</td></tr>')
    b.section("all-measures", "All measures", "<p>Every measure the run reports, grouped. The 5th and 95th "
              "centiles are of the replications, showing how much one run can differ from another.</p>"
              + _table(["Measure", "Unit", "Average", "95% CI", "5th centile", "95th centile"], rows,
                       tid="all-kpis", num_from=2), appendix=True)


# --------------------------------------------------------------------------------------------- comparison


def _col(df: pd.DataFrame, row: Any, name: str) -> Any:
    return row[name] if name in df.columns else math.nan


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    x = _num(value)
    return None if math.isnan(x) else bool(x)


def build_comparison_report(d: Path) -> str:  # noqa: C901, PLR0912, PLR0915
    meta = _read_json(d / "comparison.json")
    side = _read_csv(d / "side_by_side.csv")
    diffs = _read_csv(d / "differences.csv")
    econ = _read_csv(d / "economics.csv", required=False)
    targets = _read_csv(d / "targets.csv", required=False)
    assert side is not None and diffs is not None
    base = meta.get("baseline") or {}
    opts = [o for o in (meta.get("options") or []) if isinstance(o, dict)]
    entries = [base, *opts]
    names = [str(e.get("name")) for e in entries]
    letters = ["Baseline"] + [f"Option {_letter(i)}" for i in range(len(opts))]
    short = dict(zip(names, letters, strict=True))
    scs = {n: _read_yaml(d / "runs" / n / "scenario.yaml") for n in names}
    sums = {n: (_read_json(d / "runs" / n / "summary.json") if (d / "runs" / n / "summary.json").exists() else {})
            for n in names}
    n_reps = int(_num(meta.get("replications"))) if math.isfinite(_num(meta.get("replications"))) else 0
    base_title = str(base.get("title") or base.get("name") or "baseline")
    base_sc = scs[names[0]]
    b = Builder(f"Option appraisal: {base_title}", "comparison")
    t = _targets(base_sc)
    board = [k for k in (meta.get("board_kpis") or []) if k in set(side["kpi"])] or list(side["kpi"])
    headline = [k for k in BOARD_HEADLINE if k in board] or board[:9]

    def head(n: str) -> str:
        return f"{esc(short[n])}<small>{esc(_pretty(n))}</small>"

    # the options
    opt_rows = []
    for n, e in zip(names, entries, strict=True):
        inv = _num((scs[n].get("costs") or {}).get("investment_one_off", 0.0))
        opt_rows.append(f'<tr data-scenario="{esc(n)}"><td><b>{esc(short[n])}</b></td><td>{esc(e.get("title"))}'
                        f'<span class="def">{esc(n)}{" · " + esc(e.get("file")) if e.get("file") else ""}</span></td>'
                        f'<td class="num">{esc(fmt(inv, "GBP")) if inv else "none"}</td></tr>')
    options_table = _table(["", "Scenario", "One-off investment"], opt_rows, tid="options",
                           caption="The baseline and the options", num_from=2)

    # key messages
    msgs = []
    if econ is not None and not econ.empty:
        ranked = econ.sort_values("rank", kind="stable") if "rank" in econ.columns else econ
        top = ranked.iloc[0]
        tn = str(top["option"])
        top_ci = fmt_ci(_col(econ, top, "delayed_days_avoided_ci_low"), _col(econ, top, "delayed_days_avoided_ci_high"))
        msgs.append(f"Ranked first on value for money: <b>{esc(short.get(tn, tn))}</b> ({esc(_title(entries, tn))}):"
                    f" {esc(_net(_col(econ, top, 'net_cost')))}, "
                    f"{esc(fmt(_col(econ, top, 'delayed_days_avoided')))} delayed bed-days avoided "
                    f"({esc(top_ci)}).")
        for _, r in ranked.iterrows():
            dom = r.get("dominated_by")
            if isinstance(dom, str) and dom.strip():
                on = str(r["option"])
                msgs.append(f"<b>{esc(short.get(on, on))}</b> is <b>dominated</b> by {esc(short.get(dom, dom))}: it "
                            "costs more (or saves less) and avoids fewer delayed days.")
    kd = "delayed_patients_per_day"
    for n in names[1:]:
        sub = diffs[(diffs["option"].astype(str) == n) & (diffs["kpi"] == kd)]
        if sub.empty:
            continue
        r = sub.iloc[0]
        dist = _bool(_col(diffs, r, "distinguishable"))
        change = _num(_col(diffs, r, "diff_mean"))
        word = "fewer" if change < 0 else "more"
        if fmt(abs(change)) == fmt(0.0):
            msgs.append(f"{esc(short[n])}: <b>no change</b> in delayed patients a day.")
            continue
        msgs.append(f"{esc(short[n])}: <b>{esc(fmt(abs(change)))} {word}</b> delayed patients a day than the "
                    f"baseline ({esc(fmt_ci(_col(diffs, r, 'ci_low'), _col(diffs, r, 'ci_high')))}), "
                    + ("<b>distinguishable</b> from no change." if dist else
                       "not distinguishable from no change with this many replications."))
    if targets is not None and not targets.empty:
        for std, grp in targets.groupby("standard", sort=False):
            met = [short.get(str(x), str(x)) for x in grp.loc[grp["verdict"] == "met", "scenario"]]
            missed = [short.get(str(x), str(x)) for x in grp.loc[grp["verdict"] == "missed", "scenario"]]
            unsure = [short.get(str(x), str(x)) for x in grp.loc[~grp["verdict"].isin(["met", "missed"]), "scenario"]]
            bits = [f"met by {', '.join(met)}" if met else "", f"missed by {', '.join(missed)}" if missed else "",
                    f"too close to call for {', '.join(unsure)}" if unsure else ""]
            msgs.append(f"{esc(std)}: {esc('; '.join(x for x in bits if x))}.")
    msgs.append("These are model estimates under the assumptions listed in this report, not forecasts.")
    key_messages = f'<ul class="key">{"".join(f"<li>{x}</li>" for x in msgs)}</ul>'

    # side by side
    def side_rows(kpis: Sequence[str], cols: Sequence[str]) -> list[str]:
        rows = []
        for k in kpis:
            sub = side[side["kpi"] == k]
            if sub.empty:
                continue
            r = sub.iloc[0]
            unit = str(r["unit"]) if "unit" in side.columns and isinstance(r["unit"], str) else ""
            label = str(r["label"]) if "label" in side.columns and isinstance(r["label"], str) else k
            cells = "".join(_cell(_col(side, r, f"{n}:mean"), _col(side, r, f"{n}:ci_low"),
                                  _col(side, r, f"{n}:ci_high"), unit, f' data-scenario="{esc(n)}"') for n in cols)
            rows.append(f'<tr data-kpi="{esc(k)}">{_measure(_service_label(base_sc, k, label), unit)}{cells}</tr>')
        return rows

    def side_tables(kpis: Sequence[str], tid: str, caption: str) -> str:
        """One table per group of at most five scenarios (the baseline in each), so columns stay readable."""
        return "".join(_table(["Measure", "Unit", *[head(n) for n in cols]], side_rows(kpis, cols),
                              tid=tid if i == 0 else f"{tid}-{i + 1}", caption=caption, num_from=2)
                       for i, cols in enumerate(_column_groups(names)))

    lower = all(kpi_info(k).higher_is_worse for k in headline)
    b.section("summary", "Summary", key_messages + '<div class="keep">'
              + side_tables(headline, "headline", "Options side by side"
                            + (" (lower is better for every measure)" if lower else "")) + "</div>"
              + options_table + _how_to_read(n_reps, paired=True))

    # economics
    if econ is not None and not econ.empty:
        ranked = econ.sort_values("rank", kind="stable") if "rank" in econ.columns else econ
        rows = []
        for _, r in ranked.iterrows():
            on = str(r["option"])
            dom = r.get("dominated_by")
            dom = dom.strip() if isinstance(dom, str) else ""
            note = f"Dominated by {esc(short.get(dom, dom))}" if dom else ""
            klass = ' class="dominated"' if dom else ""
            rows.append(
                f'<tr data-option="{esc(on)}"{klass}>'
                f'<td class="num">{esc(_short(_col(econ, r, "rank")))}</td>'
                f"<td><b>{esc(short.get(on, on))}</b><span class=\"def\">{esc(_pretty(on))}</span></td>"
                + _cell(_col(econ, r, "net_cost"), _col(econ, r, "net_cost_ci_low"), _col(econ, r, "net_cost_ci_high"),
                        "GBP")
                + "".join(_cell(_col(econ, r, key), _col(econ, r, f"{key}_ci_low"), _col(econ, r, f"{key}_ci_high"),
                                unit) for key, unit in (("delayed_days_avoided", ""), ("bed_days_released", ""),
                                                        ("cost_per_delayed_day_avoided", "GBP"),
                                                        ("cost_per_bed_day_released", "GBP")))
                + f"<td>{note}</td></tr>")
        body = ("<p>Each option against the baseline over the same replications. <b>Net cost</b> is the change in "
                "the total cost the model prices, one-off investment included (negative: a saving). <b>Delayed "
                "bed-days avoided</b> and <b>acute bed-days released</b> are over the whole period. Cost per day "
                "avoided is net cost divided by days avoided (negative: the option saves money <i>and</i> avoids "
                "delays); its interval is a bootstrap over replications. An option is <b>dominated</b> when another "
                "option (or the baseline) costs no more and avoids at least as many delayed days. Options are "
                "ranked: those that save money and avoid delays first, then by cost per delayed day avoided, "
                "dominated options last.</p>"
                + '<div class="keep">' + _table(
                    ["Rank", "Option", "Net cost", "Delayed bed-days avoided", "Acute bed-days released",
                     "Cost per delayed day avoided", "Cost per bed-day released", "Note"],
                    rows, tid="economics-table", caption="Value for money, ranked", num_from=0).replace(
                    '<th class="num">Option</th>', "<th>Option</th>").replace('<th class="num">Note</th>',
                                                                              "<th>Note</th>") + "</div>")
        b.section("economics", "Value for money", body)

    # national standards
    if targets is not None and not targets.empty:
        tables = []
        for i, cols in enumerate(_column_groups(names)):
            rows = []
            for std, grp in targets.groupby("standard", sort=False):
                g0 = grp.iloc[0]
                cells = ""
                for n in cols:
                    sub = grp[grp["scenario"].astype(str) == n]
                    if sub.empty:
                        cells += "<td></td>"
                        continue
                    r = sub.iloc[0]
                    cells += _cell(r.get("mean"), r.get("ci_low"), r.get("ci_high"), "",
                                   f' data-scenario="{esc(n)}"', extra=_badge(str(r.get("verdict"))))
                rows.append(f'<tr data-kpi="{esc(g0.get("kpi"))}"><td>{esc(std)}</td>'
                            f"<td>{esc(g0.get('sense'))} {esc(_short(g0.get('target')))}</td>{cells}</tr>")
            tables.append(_table(["Standard", "Target", *[head(n) for n in cols]], rows,
                                 tid="standards-table" if i == 0 else f"standards-table-{i + 1}", num_from=2))
        b.section("standards", "National standards", "<p>Each scenario against the standards in its scenario file. "
                  "<b>Met</b> or <b>Missed</b> only when the whole 95% interval is on one side of the standard.</p>"
                  + "".join(tables))

    # differences
    parts = ["<p>Option minus baseline, paired replication by replication (common random numbers). A difference "
             "is <b>distinguishable</b> when its 95% interval excludes zero; <b>Better</b> or <b>Worse</b> is shown "
             "only then.</p>"]
    for n in names[1:]:
        sub = diffs[diffs["option"].astype(str) == n]
        rows = []
        for k in board:
            rk = sub[sub["kpi"] == k]
            if rk.empty:
                continue
            r = rk.iloc[0]
            unit = str(r["unit"]) if isinstance(r.get("unit"), str) else ""
            dist = _bool(_col(sub, r, "distinguishable"))
            better = _bool(_col(sub, r, "better"))
            effect = ("Better" if better else "Worse") if dist and better is not None else "No clear change"
            ecls = {"Better": "better", "Worse": "worse"}.get(effect, "none")
            mark = '<span class="badge yes">Yes</span>' if dist else '<span class="muted">No</span>'
            label = _service_label(base_sc, k, str(r["label"]) if isinstance(r.get("label"), str) else k)
            rows.append(f'<tr data-kpi="{esc(k)}">{_measure(label, unit, unit_column=False)}'
                        f'<td class="num">{esc(fmt(_col(sub, r, "baseline_mean"), unit))}</td>'
                        f'<td class="num">{esc(fmt(_col(sub, r, "option_mean"), unit))}</td>'
                        f'<td class="num"><b>{esc(fmt(_col(sub, r, "diff_mean"), unit))}</b></td>'
                        f'<td class="num ci">{esc(fmt_ci(_col(sub, r, "ci_low"), _col(sub, r, "ci_high"), unit))}</td>'
                        f'<td>{mark}</td><td class="effect {ecls}">{esc(effect)}</td></tr>')
        parts.append(f"<h3>{esc(short[n])}: {esc(_title(entries, n))}</h3>" + _table(
            ["Measure (unit)", "Baseline", "Option", "Difference", "95% CI", "Distin&shy;guishable", "Effect"], rows,
            tid=f"differences-{n}", cls="differences", num_from=1, widths=(27, 12, 12, 11, 16, 11, 11)).replace(
            '<th class="num">Distin&shy;guishable</th><th class="num">Effect</th>',
            "<th>Distin&shy;guishable</th><th>Effect</th>"))
    b.section("differences", "Differences from the baseline", "".join(parts))

    # figures
    figdir = d / "figures"
    dtoc_target = _dtoc_target_per_day(base_sc)
    dtoc_png = _png(figdir / "dtoc_trajectory.png")
    occ_png = _png(figdir / "occupancy_options.png")
    if dtoc_png is None or occ_png is None:
        dtoc_png, occ_png = _fallback_trajectories(d, names, base_title, base_sc, n_reps, dtoc_png, occ_png)
    charts = [
        b.figure(dtoc_png, "Delayed patients a day for each option against the Better Care Fund target",
                 "Delayed transfers of care each day (midnight census, 7-day rolling average of the replication "
                 f"means) for the baseline and each option, against the Better Care Fund target"
                 f"{f' of {dtoc_target:.1f} a day' if dtoc_target is not None else ''}.",
                 missing="The DTOC trajectory chart is not available."),
        b.figure(occ_png, "G&A bed occupancy for each option against the 92% ceiling",
                 f"G&amp;A bed occupancy at midnight for the baseline and each option against the "
                 f"{t['occupancy_pct']:g}% ceiling (7-day rolling average of the replication means).",
                 missing="The occupancy chart is not available."),
        b.figure(_png(figdir / "differences.png") or _forest_png(diffs, n_reps),
                 "Forest plot of each option's difference from the baseline",
                 "Each option minus the baseline with its 95% confidence interval; filled markers are "
                 "distinguishable from zero.", missing="The differences chart is not available."),
    ]
    b.section("charts", "Charts", "".join(charts))

    # what each option changes
    parts = []
    for n in names[1:]:
        changes = scenario_changes(base_sc, scs[n]) if base_sc and scs[n] else []
        shown = changes[:25]
        rows = [f"<tr><td><code>{esc(k)}</code></td><td>{esc(bv)}</td><td>{esc(ov)}</td></tr>" for k, bv, ov in shown]
        more = f"<p class=\"muted\">… and {len(changes) - len(shown)} more.</p>" if len(changes) > len(shown) else ""
        parts.append(f"<h3>{esc(short[n])}: {esc(_title(entries, n))}</h3>"
                     + (_table(["Setting", "Baseline", "Option"], rows, num_from=99) + more if rows else
                        "<p>No settings differ from the baseline (or the resolved scenario files are missing).</p>"))
    b.section("changes", "What each option changes", "<p>Settings of the resolved scenario files that differ from "
              "the baseline (description and assumptions aside).</p>" + "".join(parts))

    # assumptions
    base_assumptions = list(base_sc.get("assumptions") or [])
    items = _assumption_items(base_assumptions)
    extra = []
    for n in names[1:]:
        own = [a for a in (scs[n].get("assumptions") or []) if a not in base_assumptions]
        dropped = [a for a in base_assumptions if a not in (scs[n].get("assumptions") or [])]
        if own:
            extra.append(f"<h3>Added by {esc(short[n])}</h3><ol>{_assumption_items(own)}</ol>")
        if dropped and scs[n]:
            extra.append(f"<h3>Not made by {esc(short[n])}</h3><ol>{_assumption_items(dropped)}</ol>")
    same = [short[n] for n in names[1:] if scs[n] and list(scs[n].get("assumptions") or []) == base_assumptions]
    same_note = (f"<p>{esc(', '.join(same))} {'makes' if len(same) == 1 else 'make'} exactly the baseline's "
                 "assumptions; what they change is listed in the previous section.</p>") if same else ""
    b.section("assumptions", "Assumptions",
              "<h3>Baseline (applies to every option unless noted)</h3>"
              + (f"<ol>{items}</ol>" if items else f"<p>{_todo('the baseline lists no assumptions.')}</p>")
              + same_note + "".join(extra)
              + "<h3>Costs and their sources</h3>" + _cost_notes_table([(short[n], scs[n]) for n in names]))

    # STRESS-DES
    vers = {str(k): str(v) for k, v in (meta.get("versions") or {}).items()}
    logic = "".join(f"<b>{esc(short[n])}</b>: {esc(_title(entries, n))}; "
                    f"{len(scenario_changes(base_sc, scs[n]) if base_sc and scs[n] else [])} setting(s) differ from "
                    "the baseline (see “What each option changes”). " for n in names[1:])
    facts = StressFacts(
        sc=base_sc, purpose=f"Appraise {len(opts)} option(s) against the baseline “{base_title}” for delayed "
        "transfers of care, bed occupancy, ED waits and cost.",
        outputs=_outputs_text(board) + " Paired differences, value for money and verdicts against national "
        "standards.",
        experiment=esc(f"Compare {len(opts)} option(s) with the baseline on the same {n_reps} replications each, "
                       "ranking them by value for money. ") + _todo("why these options were chosen."),
        scenario_logic=logic, replications=f"{n_reps} paired replications per scenario.",
        estimation=_sentence(str(meta.get("method") or "")), seed=str(meta.get("seed")), versions=vers,
        scenario_ids=", ".join(f"{short[n]} {e.get('scenario_id')}" for n, e in zip(names, entries, strict=True)),
        execution=_execution_text(sums.get(names[0]) or {}))
    b.section("stress-des", "Reporting checklist (STRESS-DES)", _stress_table(facts))
    ids = "".join(f"<tr><td>{esc(short[n])}</td><td>{esc(n)}</td><td><code>{esc(e.get('scenario_id'))}</code></td>"
                  f"<td><code>{esc(e.get('file') or '')}</code></td></tr>" for n, e in zip(names, entries, strict=True))
    b.section("reproducibility", "Reproducibility", _repro(vers, [
        ("Seed", f"<code>{esc(meta.get('seed'))}</code> (shared by every scenario: common random numbers)"),
        ("Replications", esc(n_reps)), ("Method", esc(meta.get("method"))),
        ("Results created", esc(_created(meta.get("created")))),
    ], meta.get("command"), d.resolve()) + _table(["", "Name", "Scenario id (hash)", "File"], [ids],
                                                 tid="scenario-ids", num_from=99, widths=(12, 32, 19, 37)))

    # appendices
    rest = [k for k in side["kpi"] if k not in headline]
    if rest:
        b.section("all-measures", "All board measures side by side", side_tables(rest, "all-kpis", ""),
                  appendix=True)
    fans = []
    for n in names:
        rd = d / "runs" / n
        if not rd.is_dir():
            continue
        daily = _read_daily(rd, ["delayed_midnight"])
        target = _dtoc_target_per_day(scs[n])
        png = None
        if daily is not None and "delayed_midnight" in daily.columns and not daily.empty:
            png = dtoc_target_png(daily, f"{short[n]}: {_title(entries, n)}", target,
                                  f"BCF target {target:.1f} a day" if target is not None else "")
        occ = _run_figure_files(rd, scs[n], _title(entries, n)).get("occupancy.png")
        fans.append(f"<h3>{esc(short[n])}: {esc(_title(entries, n))}</h3>"
                    + b.figure(png, f"Fan chart of delayed patients for {short[n]}",
                               f"{esc(short[n])}: delayed patients each day across replications, against the BCF "
                               "target.")
                    + b.figure(occ, f"Fan chart of acute beds occupied for {short[n]}",
                               f"{esc(short[n])}: acute beds occupied at midnight across replications, with the 92% "
                               "line."))
    b.section("fans", "Range of outcomes for each scenario", "<p>How much one winter could differ from another under "
              "each scenario: the spread of individual replications.</p>" + "".join(fans), appendix=True)

    masthead = _masthead(
        "Paper for the A&E Delivery Board · option appraisal by simulation", f"Option appraisal: {base_title}",
        f"{len(opts)} option{'s' if len(opts) != 1 else ''} against the baseline, each run on the same "
        f"{n_reps} replications (common random numbers).",
        [("Options", str(len(opts))), ("Replications", str(n_reps)), ("Seed", str(meta.get("seed"))),
         ("Baseline id", str(base.get("scenario_id")))],
        f"Results produced {_created(meta.get('created'))} by flowsim {vers.get('flowsim', '?')}")
    return b.render(masthead, _footer(d))


def _column_groups(names: Sequence[str], size: int = 5) -> list[list[str]]:
    """Scenarios in groups of at most ``size`` table columns, each group led by the baseline."""
    names = list(names)
    if len(names) <= size:
        return [names]
    rest = names[1:]
    return [[names[0], *rest[i:i + size - 1]] for i in range(0, len(rest), size - 1)]


def _net(value: object) -> str:
    x = _num(value)
    if math.isnan(x):
        return "net cost not available"
    return f"saves {fmt(-x, 'GBP')} net" if x < 0 else f"costs {fmt(x, 'GBP')} net"


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")) if text else ""


def _letter(i: int) -> str:
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def _title(entries: Sequence[dict[str, Any]], name: str) -> str:
    for e in entries:
        if str(e.get("name")) == name:
            return str(e.get("title") or name)
    return name


def _forest_png(diffs: pd.DataFrame, n_reps: int) -> bytes | None:
    """The differences chart, drawn from differences.csv (the comparison was written --no-figures)."""
    from flowsim.report.appraisal_figures import forest_figure

    try:
        frame = diffs.copy()
        frame["distinguishable"] = [bool(_bool(x)) for x in frame["distinguishable"]]
        with tempfile.TemporaryDirectory(prefix="flowsim-report-") as tmp:
            return _png(forest_figure(frame, Path(tmp) / "differences.png", n_reps))
    except (KeyError, ValueError, IndexError) as exc:
        log.warning("cannot draw the differences chart: %s", exc)
        return None


def _fallback_trajectories(d: Path, names: Sequence[str], title: str, sc: dict[str, Any], n_reps: int,  # noqa: PLR0917
                           dtoc: bytes | None, occ: bytes | None) -> tuple[bytes | None, bytes | None]:
    """Draw the comparison trajectories from each run's daily.csv (the comparison was written --no-figures)."""
    delayed: dict[str, pd.Series] = {}
    occupancy: dict[str, pd.Series] = {}
    for n in names:
        daily = _read_daily(d / "runs" / n, ["delayed_midnight", "occupancy_pct"])
        if daily is None:
            continue
        daily["date"] = pd.to_datetime(daily["date"])
        if "delayed_midnight" in daily.columns:
            delayed[n] = daily.groupby("date")["delayed_midnight"].mean()
        if "occupancy_pct" in daily.columns:
            occupancy[n] = daily.groupby("date")["occupancy_pct"].mean()
    t = _targets(sc)
    target = _dtoc_target_per_day(sc)
    if dtoc is None and delayed:
        dtoc = trajectory_png(delayed, "Delayed transfers of care", title, "delayed patients (midnight census)", target,
                              f"BCF target {t['delayed_per_100k']:g} per 100,000 adults"
                              + (f" = {target:.1f} a day" if target is not None else ""), n_reps)
    if occ is None and occupancy:
        occ = trajectory_png(occupancy, "G&A bed occupancy", title, "occupancy at midnight (%)", t["occupancy_pct"],
                             f"{t['occupancy_pct']:g}% ceiling", n_reps)
    return dtoc, occ


# --------------------------------------------------------------------------------------------- sweep

SWEEP_FIGURES = (
    ("response_", "Response of each measure to {what}, with 95% confidence intervals."),
    ("heatmap", "Heat map of the first measure over the two swept settings."),
    ("lhs_scatter", "Each sampled point of the Latin hypercube and the measures there."),
    ("target", "Target finder: the measure at each value tried, with its confidence bound and the target."),
    ("sensitivity", "Global sensitivity: which settings move the measures most."),
    ("warmup", "Warm-up chosen by MSER-5 on a pilot run."),
)


def build_sweep_report(d: Path) -> str:  # noqa: C901, PLR0912, PLR0915
    meta = _read_json(d / "sweep.json")
    spec = _read_yaml(d / "sweep.yaml")
    summary = _read_csv(d / "summary.csv", required=False)
    sens = _read_csv(d / "sensitivity.csv", required=False)
    evaluations = _read_csv(d / "target.csv", required=False)
    name = str(meta.get("name") or spec.get("name") or d.name)
    b = Builder(f"Parameter sweep: {name}", "sweep")
    reps = meta.get("replications") or {}
    n_reps = int(_num(reps.get("n"))) if isinstance(reps, dict) and math.isfinite(_num(reps.get("n"))) else 0
    warm = meta.get("warmup") or {}
    params = [p for p in (spec.get("parameters") or []) if isinstance(p, dict) and p.get("path")]
    labels = {str(p["path"]): str(p.get("label") or p["path"]) for p in params}
    if summary is not None and not params:
        fixed = {"point_id", "kpi", "mean", "ci_low", "ci_high", "sd", "n", "point"}
        labels = {c: c for c in summary.columns if c not in fixed}
    base_sc, base_note = _sweep_base(meta, spec)
    n_points = (summary["point_id"].nunique() if summary is not None and "point_id" in summary.columns
                else len(meta.get("points") or {}))

    msgs = []
    if str(meta.get("status", "complete")) != "complete":
        msgs.append(f'<span class="todo">This sweep had not finished (status: {esc(meta.get("status"))}); '
                    "results are partial.</span>")
    target = meta.get("target") if isinstance(meta.get("target"), dict) else None
    if target is None and (d / "target.json").exists():
        target = _read_json(d / "target.json")
    if target:
        msgs.append(_target_sentence(target, labels))
    kpis: list[str] = []
    if summary is not None and not summary.empty:
        kpis = list(dict.fromkeys(summary["kpi"].astype(str)))
        first = kpis[0]
        sub = summary[summary["kpi"] == first]
        info = kpi_info(first)
        best = sub.sort_values("mean", ascending=info.higher_is_worse).iloc[0]
        where = ", ".join(f"{labels.get(p, p)} {_short(best[p])}" for p in labels if p in summary.columns)
        msgs.append(f"Best {esc(info.label.lower())} among the {len(sub)} points: <b>{esc(fmt(best['mean']))}</b> "
                    f"({esc(fmt_ci(best['ci_low'], best['ci_high']))}) at {esc(where)}.")
    msgs.append("These are model estimates under the assumptions listed in this report, not forecasts.")
    b.section("summary", "Summary", f'<ul class="key">{"".join(f"<li>{x}</li>" for x in msgs)}</ul>'
              + _how_to_read(n_reps, standards=False))

    # the points
    full_rows: list[str] = []
    head_rows: list[str] = []
    hdr: list[str] = []
    if summary is not None and not summary.empty:
        pcols = [p for p in labels if p in summary.columns]
        points = list(dict.fromkeys(summary["point_id"].astype(str))) if "point_id" in summary.columns else []
        hdr = [esc(labels[p]) for p in pcols] + [f"{esc(kpi_info(k).label)}<small>{esc(kpi_info(k).unit)}</small>"
                                                 for k in kpis]
        order = points
        if len(points) > SWEEP_HEADLINE_POINTS:
            first = summary[summary["kpi"] == kpis[0]].sort_values("mean",
                                                                   ascending=kpi_info(kpis[0]).higher_is_worse)
            order = list(first["point_id"].astype(str))
        for i, pid in enumerate(order):
            sub = summary[summary["point_id"].astype(str) == pid]
            r0 = sub.iloc[0]
            cells = "".join(f'<td class="num">{esc(_short(r0[p]))}</td>' for p in pcols)
            for k in kpis:
                rk = sub[sub["kpi"] == k]
                cells += (_cell(rk.iloc[0]["mean"], rk.iloc[0]["ci_low"], rk.iloc[0]["ci_high"], "",
                                f' data-kpi="{esc(k)}"') if not rk.empty else "<td></td>")
            row = f'<tr data-point="{esc(pid)}">{cells}</tr>'
            full_rows.append(row)
            if i < SWEEP_HEADLINE_POINTS:
                head_rows.append(row)
        note = (f"<p>The {SWEEP_HEADLINE_POINTS} best of {len(points)} points by {esc(kpi_info(kpis[0]).label.lower())}"
                "; every point is in the appendix.</p>" if len(points) > SWEEP_HEADLINE_POINTS else "")
        b.section("points", "Results at each point", "<p>Average over replications with its 95% confidence interval "
                  "beneath; every point uses the same random numbers (common random numbers), so differences "
                  "between points are the effect of the settings.</p>" + note
                  + _table(hdr, head_rows, tid="headline", caption="Headline results", num_from=0))
    else:
        b.section("points", "Results at each point", "<p>No design points (this sweep has only a target finder or "
                  "a sensitivity analysis).</p>")

    if target:
        rows = []
        if evaluations is not None:
            for _, r in evaluations.sort_values("value").iterrows():
                rows.append(f'<tr><td class="num">{esc(_short(r.get("value")))}</td>'
                            + _cell(r.get("mean"), r.get("ci_low"), r.get("ci_high"), "")
                            + f'<td class="num">{esc(fmt(r.get("bound")))}</td>'
                            f'<td class="num">{esc(_short(r.get("n")))}</td></tr>')
        body = (f"<p>{_target_sentence(target, labels)}</p><p class=\"muted\">Rule: {esc(_rule(target))} with "
                f"{_num(target.get('confidence')):.0%} confidence (one-sided bound), searched "
                f"{esc(' to '.join(_short(x) for x in (target.get('searched') or [])))} by bisection.</p>"
                + (_table(["Value tried", "Average", "Confidence bound", "Replications"], rows, tid="target-table",
                          num_from=0) if rows else ""))
        b.section("target", "Target finder", body)

    figdir = d / "figures"
    pngs = {p.name: data for p in sorted(figdir.glob("*.png")) if (data := _png(p)) is not None} \
        if figdir.is_dir() else {}
    parts = []
    for prefix, caption in SWEEP_FIGURES:
        for fname in [f for f in list(pngs) if f.startswith(prefix)]:
            what = "the swept setting"
            if prefix == "response_":
                stem = fname.removeprefix("response_").removesuffix(".png")
                what = next((labels[p] for p in labels if _slug(p) == stem), _pretty(stem))
            parts.append(b.figure(pngs.pop(fname), f"Chart {fname}", esc(caption.format(what=what))))
    parts += [b.figure(png, f"Chart {fname}", esc(_pretty(Path(fname).stem).capitalize()) + ".")
              for fname, png in sorted(pngs.items())]
    b.section("charts", "Charts", "".join(parts) or "<p class=\"muted\">No charts (the sweep was run with "
              "--no-figures).</p>")

    if sens is not None and not sens.empty:
        cols = [c for c in sens.columns if c not in ("kpi",)]
        rows = ["<tr>" + "".join((f'<td class="num">{esc(fmt(r[c]))}</td>' if isinstance(r[c], float | int)
                                  and not isinstance(r[c], bool) else f"<td>{esc(r[c])}</td>") for c in cols)
                + f"<td>{esc(r.get('kpi', ''))}</td></tr>" for _, r in sens.iterrows()]
        method = ((spec.get("sensitivity") or {}).get("method") or "")
        b.section("sensitivity", "Sensitivity", f"<p>Global sensitivity ({esc(method)}): larger values mean the "
                  "setting moves the measure more.</p>" + _table([esc(c) for c in cols] + ["Measure"], rows,
                                                                 tid="sensitivity-table", num_from=1))

    assumptions = list(base_sc.get("assumptions") or [])
    b.section("assumptions", "Assumptions", (f"<p class=\"muted\">{esc(base_note)}</p>" if base_note else "")
              + (f"<ol>{_assumption_items(assumptions)}</ol>" if assumptions else
                 f"<p>{_todo('the base scenario lists no assumptions (or could not be read).')}</p>")
              + "<h3>Costs and their sources</h3>" + _cost_notes_table([("Base scenario", base_sc)]))

    vers = {str(k): str(v) for k, v in (meta.get("versions") or {}).items()}
    swept = "; ".join(f"{labels.get(str(p['path']), p['path'])}: "
                      + (", ".join(_short(v) for v in p["values"]) if p.get("values") else
                         f"{_short(p.get('low'))} to {_short(p.get('high'))}") for p in params)
    fixed_set = spec.get("set") or {}
    logic = esc(f"{spec.get('design', 'grid')} design over {len(params)} setting(s): {swept or 'none'}. "
                + (f"Fixed changes to the base: {', '.join(f'{k} = {v}' for k, v in fixed_set.items())}. " if fixed_set
                   else "") + (f"Target finder: {target.get('rule')}. " if target else "")
                + (f"Sensitivity: {(spec.get('sensitivity') or {}).get('method')}." if spec.get("sensitivity")
                   else ""))
    rep_text = (f"{n_reps} replications per point, chosen by the confidence-interval method of Hoad et al. (2010)."
                if isinstance(reps, dict) and reps.get("method") == "auto" else f"{n_reps} replications per point.")
    facts = StressFacts(
        sc=base_sc, purpose=f"Explore how {', '.join(labels.values()) or 'settings'} change delayed transfers of "
        f"care and hospital flow ({name}).", outputs=_outputs_text(kpis) if kpis else "As listed in the results.",
        experiment=logic + " " + _todo("why these settings and ranges."), scenario_logic=logic,
        replications=rep_text, estimation="Means with 95% t confidence intervals over replications; the target "
        "finder uses a one-sided bound.", seed=str(meta.get("seed")), versions=vers,
        scenario_ids=f"base {meta.get('base_scenario_id')} ({len(meta.get('points') or {})} points, each with its "
        "own id in sweep.json)",
        execution=f"Executor {meta.get('executor', '?')} with {meta.get('workers', '?')} worker(s); one task per point "
        "and replication, stored as it finishes so an interrupted sweep resumes.",
        warmup_method=f"warm-up: {warm.get('method')}" if warm.get("method") else "")
    b.section("stress-des", "Reporting checklist (STRESS-DES)", _stress_table(facts))
    b.section("reproducibility", "Reproducibility", _repro(vers, [
        ("Sweep", esc(name)), ("Sweep file", f"<code>{esc(meta.get('spec'))}</code>"),
        ("Base scenario", f"<code>{esc(meta.get('base'))}</code>"),
        ("Base scenario id (hash)", f"<code>{esc(meta.get('base_scenario_id'))}</code>"),
        ("Seed", f"<code>{esc(meta.get('seed'))}</code> (shared by every point: common random numbers)"),
        ("Replications", esc(n_reps)), ("Warm-up", esc(f"{warm.get('warmup_days', '?')} days ({warm.get('method')})")),
        ("Spec fingerprint", f"<code>{esc(meta.get('spec_fingerprint'))}</code>"),
    ], meta.get("command"), d.resolve()))
    if len(full_rows) > len(head_rows):
        b.section("all-points", "Every point", _table(hdr, full_rows, tid="all-points", num_from=0), appendix=True)

    masthead = _masthead("Paper for the A&E Delivery Board · parameter sweep by simulation",
                         f"Parameter sweep: {name}",
                         str(spec.get("description") or "").strip() or "How the results change with the settings.",
                         [("Points", str(n_points)), ("Replications per point", str(n_reps)),
                          ("Seed", str(meta.get("seed"))), ("Base scenario id", str(meta.get("base_scenario_id")))],
                         f"flowsim {vers.get('flowsim', '?')} · status {meta.get('status', '?')}")
    return b.render(masthead, _footer(d))


def _short(value: Any) -> str:
    x = _num(value)
    if math.isnan(x):
        return str(value)
    return f"{x:,.0f}" if x == int(x) and abs(x) < 1e15 else f"{x:.4g}"


def _slug(text: str) -> str:
    from flowsim.report.sweep_figures import _slug as slug

    return slug(text)


def _rule(target: dict[str, Any]) -> str:
    """'delayed patients per day at most 3.0' from the target's rule and KPI."""
    kpi = str(target.get("kpi") or "")
    text = str(target.get("rule") or "")
    return text.replace(kpi, kpi_info(kpi).label.lower(), 1) if kpi else text


def _target_sentence(target: dict[str, Any], labels: dict[str, str]) -> str:
    param = str(target.get("parameter"))
    who = esc(labels.get(param, param))
    rule = esc(_rule(target))
    conf = _num(target.get("confidence"))
    conf_text = f"{conf:.0%}" if math.isfinite(conf) else "95%"
    if target.get("answer") is None:
        searched = " to ".join(_short(x) for x in (target.get("searched") or []))
        return (f"Target finder: no value of {who} in {esc(searched)} meets {rule} with {conf_text} confidence.")
    k = target.get("answer_kpi") or {}
    pe = target.get("point_estimate")
    return (f"Target finder: the smallest {who} that meets {rule} with {conf_text} confidence is "
            f"<b>{esc(_short(target.get('answer')))}</b> (average {esc(fmt(k.get('mean')))}, "
            f"{esc(fmt_ci(k.get('ci_low'), k.get('ci_high')))})"
            + (f"; on the average alone it is met from {esc(_short(pe))}" if pe is not None else "") + ".")


def _sweep_base(meta: dict[str, Any], spec: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The sweep's base scenario as plain data (fixed ``set:`` changes applied), if its file can still be read."""
    base = meta.get("base")
    if not base:
        return {}, "The sweep does not record its base scenario."
    path = Path(str(base))
    if not path.exists():
        return {}, f"The base scenario {base} could not be found, so its assumptions are not shown."
    from flowsim.scenario.loader import finish_scenario, load_raw, scenario_to_dict, set_path

    try:
        data, lines = load_raw(path)
        for dotted, value in (spec.get("set") or {}).items():
            set_path(data, str(dotted), value, lines)
        return scenario_to_dict(finish_scenario(data, lines, str(path))), f"Base scenario: {base}."
    except (FlowsimError, OSError, ValueError) as exc:
        log.warning("cannot read the base scenario %s: %s", base, exc)
        with contextlib.suppress(FlowsimError, OSError, ValueError):
            return load_raw(path)[0], f"Base scenario: {base} (as written; it did not validate)."
        return {}, f"The base scenario {base} could not be read, so its assumptions are not shown."


# --------------------------------------------------------------------------------------------- entry points

BUILDERS = {"run": build_run_report, "sweep": build_sweep_report, "comparison": build_comparison_report}


def build_report(directory: Path) -> str:
    """The report for ``directory`` as one HTML string."""
    directory = Path(directory)
    return BUILDERS[detect_kind(directory)](directory)


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
