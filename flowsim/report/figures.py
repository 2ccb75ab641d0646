"""Board-paper figures from the per-day, per-replication results table.

Each figure summarises the spread *across replications*, not one run: a single
simulated run is one possible future, and a board needs to see how wide the
range of plausible outcomes is, not just its middle.  Every figure therefore
shows a central line (median or mean) with percentile bands, and its subtitle
says how many replications the bands come from.

We draw on :class:`matplotlib.figure.Figure` with the Agg canvas rather than
through ``pyplot``, so that making figures never touches global plotting state,
never needs a display, and is safe to call from a CLI, a test or a notebook.

User text (scenario, service and option names) is drawn as it is written: never
parsed as mathtext (a name with ``$...$`` used to crash the figures), never cut
(long labels wrap) and never re-cased (acronyms such as IRR stay IRR).  Every
public builder is wrapped in :func:`plain_text`, and so are the savers, because
matplotlib creates some tick labels only when it draws.

Figure functions take result objects or plain frames and return figures or
files; the domain never calls them (the CLI and ``flowsim.report.outputs`` do).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import os
import textwrap
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeAlias, TypeVar, overload

import matplotlib as mpl
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure
from matplotlib.ticker import MaxNLocator

from flowsim.scenario.loader import scenario_to_dict
from flowsim.scenario.provenance import title as scenario_title

if TYPE_CHECKING:
    from flowsim.experiment.runner import RunResult

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

def plain_text(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with mathtext and TeX off (rcParams ``text.parse_math`` and ``text.usetex``), so '$' in a
    scenario or service name is drawn as a dollar sign; every flowsim figure is built and saved this way."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with mpl.rc_context({"text.parse_math": False, "text.usetex": False}):
            return fn(*args, **kwargs)

    return wrapper


def wrap(text: str, width: int) -> str:
    """``text`` wrapped onto lines of at most ``width`` characters (never cut, never re-cased)."""
    return "\n".join(textwrap.wrap(str(text), width=max(8, width), break_long_words=False)) or str(text)


def display_name(name: str) -> str:
    """A name for people when no label is given: underscores become spaces, case is kept ('irr_reablement' ->
    'irr reablement'; a scenario's ``label`` should say 'IRR and reablement')."""
    return str(name).replace("_", " ")


def new_plain_figure(width: float, height: float) -> Figure:
    """A bare figure on its own Agg canvas (for layouts ``_new_figure`` does not fit)."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig

DPI = 120

# NHS identity colours, so the figures sit naturally in NHS papers.
NHS_DARK_BLUE = "#003087"
NHS_BLUE = "#005EB8"
NHS_LIGHT_BLUE = "#41B6E6"
NHS_DARK_GREY = "#425563"
NHS_PALE_GREY = "#E8EDEE"
NHS_RED = "#DA291C"
NHS_ORANGE = "#ED8B00"
NHS_WARM_YELLOW = "#FFB81C"
NHS_AQUA_GREEN = "#00A499"
NHS_PURPLE = "#330072"
NHS_DARK_GREEN = "#006747"

#: DTOC SitRep reason groups in the order they are stacked (earliest stage of the discharge
#: journey at the bottom), with the plain-English labels a board reader expects.
DELAY_REASONS: tuple[tuple[str, str, str], ...] = (
    ("delayed_assessment", "Completion of assessment (A)", NHS_PURPLE),
    ("delayed_non_acute_nhs", "Further non-acute NHS care: P2/P3 beds (C)", NHS_LIGHT_BLUE),
    ("delayed_home_care", "Care package in own home: P1, home care (E)", NHS_BLUE),
    ("delayed_care_home", "Care home placement (D)", NHS_WARM_YELLOW),
)

#: Patients not meeting the criteria to reside, stacked by discharge pathway.
NCTR_PATHWAYS: tuple[tuple[str, str, str], ...] = (
    ("nctr_P0", "P0 home", NHS_DARK_GREY),
    ("nctr_P1", "P1 home with support", NHS_BLUE),
    ("nctr_P2", "P2 intermediate care bed", NHS_LIGHT_BLUE),
    ("nctr_P3", "P3 nursing/D2A bed", NHS_AQUA_GREEN),
)

#: Discharge Ready Date delay bands as the daily columns name them (NHS England's monthly publication).
DRD_BANDS: tuple[tuple[str, str], ...] = (
    ("0", "0 days"), ("1", "1 day"), ("2_3", "2-3"), ("4_6", "4-6"), ("7_13", "7-13"), ("14_20", "14-20"),
    ("21plus", "21+"),
)

PATHWAY_LABELS: dict[str, str] = {
    "P1": "P1 home with support",
    "P2": "P2 intermediate care bed",
    "P3": "P3 nursing/D2A bed",
}

#: The occupancy level above which acute flow is widely reported to degrade;
#: drawn as a reference line, not modelled.
TARGET_OCCUPANCY = 0.92

_QUANTILES: dict[str, float] = {"p5": 0.05, "p25": 0.25, "p50": 0.50, "p75": 0.75, "p95": 0.95}


class DailyColumns:
    """A run's daily table read one column at a time from its stored parts, for the figures of a long run.

    Why: every band is a per-date summary over replications, so the figures need each plotted series of every
    replication, but never all series at once.  Read whole, the baseline's daily table weighs about 0.3 MB per
    replication in memory, and its copies while it is read and plotted about twice that: 1,000 replications
    raised the parent's peak from 0.4 to 1.05 GB.  Read a column at a time, the figures hold one series
    (8 bytes x replications x days) beside the dates and replication numbers, which are read once.
    Supports what the figures ask of a table: ``columns``, ``empty``, ``t[name]`` (a Series) and ``t[[names]]``
    (a DataFrame); the result is the same as on the whole table, value for value.
    """

    _KEEP = ("date", "replication")

    def __init__(self, read: Callable[[Sequence[str]], pd.DataFrame], columns: Sequence[str]):
        self._read = read
        self.columns = pd.Index(list(columns))
        self._kept: dict[str, pd.Series] = {}

    @property
    def empty(self) -> bool:
        """True when the run stored no daily rows."""
        return len(self.columns) == 0 or (("date" in self.columns) and len(self["date"]) == 0)

    @overload
    def __getitem__(self, key: str) -> pd.Series: ...

    @overload
    def __getitem__(self, key: list[str]) -> pd.DataFrame: ...

    def __getitem__(self, key: str | list[str]) -> pd.Series | pd.DataFrame:
        if isinstance(key, str):
            if key in self._KEEP:
                if key not in self._kept:
                    self._kept[key] = self._read([key])[key]
                return self._kept[key]
            return self._read([key])[key]
        return self._read(list(key))


#: What the figures read a daily table from: a whole frame, or a long run's parts a column at a time.
DailyTable: TypeAlias = pd.DataFrame | DailyColumns

#: Above this many replication x day rows, ``draw_run`` reads the daily table a column at a time (about 137
#: replications of a year): below it, reading the parts once is faster and the table small.
LAZY_DAILY_ROWS = 50_000


def _percentiles(daily: DailyTable, column: str) -> pd.DataFrame:
    """Summarise ``column`` across replications for each date.

    Returns a frame indexed by date with columns ``p5, p25, p50, p75, p95, mean``.
    Every figure goes through this one function so that "the band" means the
    same thing everywhere.  NaNs (e.g. an undefined occupancy) are skipped
    rather than poisoning the day; with one replication all columns are equal,
    so bands collapse onto the line instead of failing.
    """
    if column not in daily.columns:
        raise KeyError(f"daily results have no column {column!r}")
    values = pd.DataFrame({"date": pd.to_datetime(daily["date"]), "v": pd.to_numeric(daily[column])})
    grouped = values.groupby("date", sort=True)["v"]
    out = grouped.quantile(list(_QUANTILES.values())).unstack()
    out.columns = list(_QUANTILES)
    out["mean"] = grouped.mean()
    out.index.name = "date"
    return out


def _replication_count(daily: DailyTable) -> int:
    """How many replications the bands summarise (stated on every figure)."""
    if "replication" in daily.columns:
        return int(daily["replication"].nunique())
    return 1


def _spread_note(n_reps: int) -> str:
    """Subtitle text: tells the reader what the bands are, or that there are none."""
    if n_reps <= 1:
        return "Single replication: no spread between runs is shown"
    return f"Across {n_reps} replications"


def _line_width(n_days: int, base: float) -> float:
    """Thinner central lines for long runs, where a thick daily line would fill the plot with ink."""
    return base if n_days <= 400 else base * 0.6


def _mean_suffix(n_reps: int) -> str:
    """' (mean)' on legend labels only when there is more than one run to average."""
    return " (mean)" if n_reps > 1 else ""


def _holidays(daily: DailyTable) -> list[pd.Timestamp]:
    """Bank holidays of the run (the daily table has a ``bank_holiday`` flag only when the scenario asks for a
    calendar), so the figures can shade the days the system runs at weekend strength."""
    if "bank_holiday" not in daily.columns or "date" not in daily.columns:
        return []
    flags = daily[["bank_holiday", "date"]]
    days = flags.loc[flags["bank_holiday"] > 0, "date"]
    return sorted(pd.to_datetime(days).drop_duplicates())


def _format_date_axis(ax: Axes, dates: pd.DatetimeIndex, holidays: Sequence[pd.Timestamp] = ()) -> None:
    """Month ticks as 'Apr 2024', thinned so long runs stay legible; bank holidays shaded.

    Runs shorter than about two months get day ticks instead, because month
    ticks would leave the axis with one label or none.
    """
    if len(dates) == 0:
        return
    for i, day in enumerate(holidays):
        ax.axvspan(day, day + pd.Timedelta(days=1), color=NHS_PALE_GREY, alpha=0.8, linewidth=0, zorder=0,
                   label="Bank holiday" if i == 0 else None)
    span_days = (dates.max() - dates.min()).days
    if span_days >= 60:
        months = span_days / 30.4
        interval = max(1, math.ceil(months / 12))
        ax.xaxis.set_major_locator(mdates.MonthLocator(interval=interval))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %Y"))
    else:
        ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=4, maxticks=10))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b %Y"))
    ax.set_xlim(dates.min(), dates.max())
    for label in ax.get_xticklabels():
        label.set_rotation(30)
        label.set_horizontalalignment("right")


def _style_axes(ax: Axes) -> None:
    """Light horizontal grid, no top/right spines: ink goes on the data."""
    ax.grid(axis="y", color=NHS_PALE_GREY, linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_ylim(bottom=0)
    # every quantity plotted is a count of patients, beds or places: whole-number ticks read better
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))


def _tidy(ax: Axes) -> None:
    """Light grid both ways, no top/right spines; unlike ``_style_axes`` it leaves the axis limits alone
    (sweep, calibration and appraisal plots show values that are not counts from zero)."""
    ax.grid(color=NHS_PALE_GREY, linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _new_figure(width: float, height: float, heading: str, title: str, note: str) -> tuple[Figure, SubFigure]:
    """A figure on its own Agg canvas, titled, with a panel to draw in.

    The bold heading (subject and scenario) and the smaller note saying what
    the bands are need different font sizes, which one suptitle cannot do; a
    subfigure carries the note as its own title, and constrained layout then
    makes room for both and for legends placed outside the axes.
    """
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    # long scenario names wrap rather than run off the page (and are never cut)
    text = wrap(f"{heading}: {title}", int(width * 8))
    fig.suptitle(text, fontsize=13, fontweight="bold", color=NHS_DARK_BLUE)
    panel = fig.subfigures(1, 1)
    assert isinstance(panel, SubFigure)
    panel.suptitle(note, fontsize=9.5, color=NHS_DARK_GREY)
    return fig, panel


@plain_text
def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (for a report that embeds it without touching the disk)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


@plain_text
def save_atomic(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` so a reader never sees a half-written PNG.

    We save to a uniquely named temporary file in the same directory (same
    filesystem, so the rename is atomic) and ``os.replace`` it into place; on
    failure the temp file is removed and any previous figure is left intact.
    ``open(..., "xb")`` rather than ``mkstemp`` so the file gets the usual
    umask-based permissions instead of owner-only ones.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fig.savefig(fh, format="png", dpi=DPI, facecolor="white")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    log.debug("wrote %s", path)
    return path


def _finite_or_nan(series: pd.Series) -> np.ndarray:
    """Infinite capacity means 'unlimited': drop it from lines rather than stretch the axis to inf."""
    values = series.to_numpy(dtype=float)
    return np.where(np.isfinite(values), values, np.nan)


def _band(ax: Axes, stats: pd.DataFrame, color: str, label_90: str | None, label_50: str | None = None) -> None:
    """Shade the 5-95% range (pale) and, if asked, the 25-75% range (darker) of ``stats``."""
    ax.fill_between(stats.index, stats["p5"], stats["p95"], color=color, alpha=0.18, linewidth=0, label=label_90)
    if label_50 is not None:
        ax.fill_between(stats.index, stats["p25"], stats["p75"], color=color, alpha=0.35, linewidth=0, label=label_50)


def _occupancy_figure(daily: DailyTable, title: str, n_reps: int) -> Figure:
    """Fan chart of midnight acute occupancy against beds and the 92% line.

    The fan (median, 25-75% and 5-95%) shows whether pressure is routine or
    only occurs in bad runs, which is the question a board actually asks.
    """
    occ = _percentiles(daily, "acute_occupied_midnight")
    capacity = (
        _finite_or_nan(_percentiles(daily, "acute_beds")["mean"])
        if "acute_beds" in daily.columns
        else np.full(len(occ), np.nan)
    )
    note = _spread_note(n_reps)
    if n_reps > 1:
        note += ": line is the median, shading the middle 50% and 90% of replications"
    fig, panel = _new_figure(10, 5.8, "Acute bed occupancy", title, note)
    ax = panel.add_subplot()
    if n_reps > 1:
        _band(ax, occ, NHS_BLUE, "5–95% of replications", "25–75% of replications")
    ax.plot(
        occ.index,
        occ["p50"],
        color=NHS_DARK_BLUE,
        linewidth=_line_width(len(occ), 2.0),
        zorder=3,
        label="Median" if n_reps > 1 else "Beds occupied",
    )
    has_capacity = bool(np.isfinite(capacity).any())
    if has_capacity:
        ax.step(occ.index, capacity, where="post", color=NHS_RED, linewidth=1.8, label="Beds available")
        ax.step(
            occ.index,
            capacity * TARGET_OCCUPANCY,
            where="post",
            color=NHS_ORANGE,
            linewidth=1.5,
            linestyle="--",
            label=f"{TARGET_OCCUPANCY:.0%} occupancy",
        )
    _style_axes(ax)
    top = max(_nanmax(occ["p95"].to_numpy()), _nanmax(capacity))
    low = _nanmin(occ["p5"].to_numpy())
    if top > 0:
        # Zoom to where the data are (a line chart need not start at zero) so that day-to-day
        # pressure near the bed base is visible, but keep a round-number floor with headroom.
        span = max(top - low, 1.0)
        floor = max(0.0, math.floor((low - 0.25 * span) / 10) * 10)
        ax.set_ylim(floor, top + 0.06 * (top - floor))
    ax.set_ylabel("Beds occupied (midnight)")
    _format_date_axis(ax, occ.index, _holidays(daily))
    panel.legend(loc="outside lower center", ncol=5, frameon=False, fontsize=9)
    return fig


def _nanmax(values: np.ndarray) -> float:
    """Largest finite value, or 0 when there is none (all NaN / inf / empty)."""
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else 0.0


def _nanmin(values: np.ndarray) -> float:
    """Smallest finite value, or 0 when there is none."""
    finite = values[np.isfinite(values)]
    return float(finite.min()) if finite.size else 0.0


def _delays_figure(daily: DailyTable, title: str, n_reps: int) -> Figure:
    """Stacked mean delayed patients by reason, with the spread of the total.

    Stacking by reason shows *where* the blockage is (which service to buy);
    the total's 5-95% range shows how bad a bad run gets.  Means are stacked,
    not medians, because means add up to the mean total and medians do not.
    """
    reasons = [(col, label, color) for col, label, color in DELAY_REASONS if col in daily.columns]
    note = "Coloured areas: mean number delayed at midnight, by reason"
    if n_reps > 1:
        note += f"; dotted lines: 5–95% range of the total across {n_reps} replications"
    else:
        note += " (single replication)"
    fig, panel = _new_figure(10, 5.8, "Delayed transfers of care by SitRep reason", title, note)
    ax = panel.add_subplot()
    dates: pd.DatetimeIndex | None = None
    if reasons:
        means = pd.DataFrame({col: _percentiles(daily, col)["mean"] for col, _, _ in reasons}).fillna(0.0)
        dates = means.index
        ax.stackplot(
            means.index,
            means.T.to_numpy(),
            labels=[label for _, label, _ in reasons],
            colors=[color for _, _, color in reasons],
            alpha=0.9,
            linewidth=0,
        )
    if "delayed_midnight" in daily.columns:
        total = _percentiles(daily, "delayed_midnight")
        dates = total.index
        ax.plot(total.index, total["mean"], color="black", linewidth=1.2, label="Total delayed" + _mean_suffix(n_reps))
        if n_reps > 1:
            # a white halo keeps the dotted bounds legible where they cross the coloured areas
            halo = [patheffects.withStroke(linewidth=3, foreground="white")]
            ax.plot(
                total.index,
                total["p5"],
                color="black",
                linewidth=1.1,
                linestyle=":",
                path_effects=halo,
                label="Total: 5% and 95% of replications",
            )
            ax.plot(total.index, total["p95"], color="black", linewidth=1.1, linestyle=":", path_effects=halo)
    _style_axes(ax)
    ax.set_ylabel("Delayed patients (midnight census)")
    if dates is not None:
        _format_date_axis(ax, dates, _holidays(daily))
    panel.legend(loc="outside lower center", ncol=4, frameon=False, fontsize=9)
    return fig


@dataclass(frozen=True)
class Services:
    """A scenario's downstream services for the queues figure: pathway -> [(service name, display label)]."""

    by_pathway: Mapping[str, Sequence[tuple[str, str]]]

    @classmethod
    def of(cls, scenario: Mapping[str, Any]) -> Services:
        """From a scenario as plain data (``scenario_to_dict`` or a resolved ``scenario.yaml``)."""
        out: dict[str, list[tuple[str, str]]] = {}
        for p, pw in (scenario.get("pathways") or {}).items():
            for name, svc in ((pw or {}).get("services") or {}).items():
                out.setdefault(str(p), []).append((str(name), str((svc or {}).get("label") or display_name(name))))
        return cls(out)

    @classmethod
    def from_names(cls, by_pathway: Mapping[str, Sequence[str]]) -> Services:
        """From service names alone (labels are the names, spaced)."""
        return cls({p: [(n, display_name(n)) for n in names] for p, names in by_pathway.items()})


def _queue_panel(ax: Axes, daily: DailyTable, pathway: str, n_reps: int) -> None:
    """Left panel: patients waiting in hospital for ``pathway``."""
    stats = _percentiles(daily, f"queue_{pathway}")
    if n_reps > 1:
        _band(ax, stats, NHS_BLUE, "Waiting: 5–95% of replications")
    ax.plot(stats.index, stats["mean"], color=NHS_DARK_BLUE, linewidth=_line_width(len(stats), 1.8),
            label="Waiting" + _mean_suffix(n_reps))
    ax.set_title(f"Waiting in hospital for {PATHWAY_LABELS[pathway]}", fontsize=10.5, loc="left")
    ax.set_ylabel("Patients waiting")
    ax.set_ylim(0, max(_nanmax(stats["p95"].to_numpy()) * 1.12, 1.0))


def _places_panel(ax: Axes, daily: DailyTable, pathway: str, services: Sequence[tuple[str, str]],
                  n_reps: int) -> None:
    """Right panel: a pathway's places (or visits a day) in use against its capacity, services summed."""
    names = [(s, lab) for s, lab in services if f"service_{s}_occupied" in daily.columns]
    # visit-based P1 capacity is in visits a day: compare it with visits in use, not packages
    use = [f"service_{s}_visits" if f"service_{s}_visits" in daily.columns else f"service_{s}_occupied"
           for s, _ in names]
    total = pd.DataFrame({"replication": daily["replication"], "date": daily["date"]})
    total["occupied"] = daily[use].sum(axis=1)
    total["capacity"] = daily[[f"service_{s}_capacity" for s, _ in names]].sum(axis=1)
    stats = _percentiles(total, "occupied")
    if n_reps > 1:
        _band(ax, stats, NHS_AQUA_GREEN, "Occupied: 5–95% of replications")
    # zorder: when the services are full the occupancy line sits on the capacity line; keep it visible
    ax.plot(stats.index, stats["mean"], color=NHS_DARK_GREEN, linewidth=_line_width(len(stats), 1.8),
            zorder=3, label="Occupied" + _mean_suffix(n_reps))
    cap = _finite_or_nan(_percentiles(total, "capacity")["mean"])
    label = f"{pathway} places: " + "; ".join(lab for _, lab in names)
    if np.isfinite(cap).any():
        ax.step(stats.index, cap, where="post", color=NHS_RED, linewidth=1.6, label="Capacity")
    else:
        label += " (unlimited)"
    ax.set_title(wrap(label, 62), fontsize=10.5, loc="left")
    in_visits = [u.endswith("_visits") for u in use]
    ax.set_ylabel("Visits a day in use" if all(in_visits) else "Places / visits a day" if any(in_visits)
                  else "Places occupied")
    ax.set_ylim(0, max(max(_nanmax(stats["p95"].to_numpy()), _nanmax(cap)) * 1.12, 1.0))


def _shared_legend(panel: SubFigure, axes: Sequence[Axes]) -> None:
    handles: dict[str, Artist] = {}
    for ax in axes:
        if ax.get_visible():
            for handle, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(lab, handle)
    if handles:
        panel.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
                     ncol=min(len(handles), 5), frameon=False, fontsize=9)


def _queues_figure(daily: DailyTable, title: str, n_reps: int, services: Services) -> Figure:
    """One row per downstream pathway: who waits for it (left), how full its services are (right).

    Side by side, a long queue next to services running at their capacity line
    says "this is a capacity problem"; a queue next to spare capacity says the
    problem is upstream (assessment, transfer, eligibility).  A pathway's
    services are summed (per replication and day) so each row reads at a
    glance; the per-service series are in ``daily.csv``.
    """
    rows_pw = [p for p in services.by_pathway if p in PATHWAY_LABELS and f"queue_{p}" in daily.columns]
    note = _spread_note(n_reps) + (": lines are means, shading the 5–95% range" if n_reps > 1 else "")
    fig, panel = _new_figure(12, 1.6 + 2.6 * max(len(rows_pw), 1), "Waiting for and using community services",
                             title, note)
    axes = panel.subplots(max(len(rows_pw), 1), 2, squeeze=False)
    dates = pd.DatetimeIndex(pd.to_datetime(daily["date"]).drop_duplicates().sort_values())
    for i, pathway in enumerate(rows_pw):
        _queue_panel(axes[i, 0], daily, pathway, n_reps)
        _places_panel(axes[i, 1], daily, pathway, services.by_pathway[pathway], n_reps)
    for ax in axes.ravel():
        if not ax.has_data():
            ax.set_visible(False)
            continue
        bottom = ax.get_ylim()
        _style_axes(ax)
        ax.set_ylim(bottom)
        _format_date_axis(ax, dates, _holidays(daily))
    if not rows_pw:
        panel.text(0.5, 0.5, "No downstream queues or services in this scenario", ha="center", va="center",
                   fontsize=11, color=NHS_DARK_GREY)
    _shared_legend(panel, list(axes.ravel()))
    return fig


OPEL_COLOURS: tuple[tuple[int, str, str], ...] = (
    (1, "OPEL 1", NHS_DARK_GREEN),
    (2, "OPEL 2", NHS_WARM_YELLOW),
    (3, "OPEL 3", NHS_RED),
    (4, "OPEL 4", "#000000"),
)


def _timeline_figure(daily: DailyTable, title: str, n_reps: int) -> Figure:
    """Occupancy, delayed patients and OPEL level on one time axis.

    The command-centre question is "what happened when": reading the three
    series against the same dates shows whether escalation came before or
    after the pressure, and whether delays or front-door demand drove it.
    The OPEL panel shows the share of replications at each (highest daily)
    level, because the level itself is discrete and its mean would mislead.
    """
    note = _spread_note(n_reps)
    if n_reps > 1:
        note += ": lines are medians, shading the 5–95% range"
    fig, panel = _new_figure(12, 8.5, "Winter timeline", title, note)
    axes = panel.subplots(3, 1, sharex=True, height_ratios=[1.2, 1.0, 0.8])
    dates = pd.DatetimeIndex(pd.to_datetime(daily["date"]).drop_duplicates().sort_values())

    ax = axes[0]
    occ = _percentiles(daily, "occupancy_pct")
    if n_reps > 1:
        _band(ax, occ, NHS_BLUE, "5–95% of replications")
    ax.plot(occ.index, occ["p50"], color=NHS_DARK_BLUE, linewidth=1.6, label="G&A occupancy (median)")
    ax.axhline(100 * TARGET_OCCUPANCY, color=NHS_ORANGE, linestyle="--", linewidth=1.4, label="92% occupancy")
    ax.set_ylabel("Occupancy at midnight (%)")
    ax.set_ylim(max(0.0, math.floor(_nanmin(occ["p5"].to_numpy()) / 5) * 5 - 5), 105)
    ax.legend(loc="lower left", fontsize=8.5, frameon=False, ncol=3)

    ax = axes[1]
    delayed = _percentiles(daily, "delayed_midnight")
    if n_reps > 1:
        _band(ax, delayed, NHS_PURPLE, None)
    ax.plot(delayed.index, delayed["p50"], color=NHS_PURPLE, linewidth=1.6, label="Delayed patients (median)")
    ax.set_ylabel("Delayed patients")
    ax.set_ylim(0, max(_nanmax(delayed["p95"].to_numpy()) * 1.1, 1.0))
    ax.legend(loc="upper left", fontsize=8.5, frameon=False)

    ax = axes[2]
    level = daily[["date", "replication", "opel_level"]].pivot_table(index="date", columns="replication",
                                                                      values="opel_level", aggfunc="max")
    level.index = pd.to_datetime(level.index)
    shares = [(lv, lab, col, (level == lv).mean(axis=1).to_numpy()) for lv, lab, col in OPEL_COLOURS]
    ax.stackplot(level.index, *[sh for *_, sh in shares], labels=[lab for _, lab, _, _ in shares],
                 colors=[col for _, _, col, _ in shares], alpha=0.85, step="post")
    ax.set_ylim(0, 1)
    ax.set_ylabel("Share of\nreplications")
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
    ax.legend(loc="upper left", fontsize=8.5, frameon=True, ncol=4)

    for ax in axes:
        limits = ax.get_ylim()
        _style_axes(ax)
        ax.set_ylim(limits)
        _format_date_axis(ax, dates, _holidays(daily))
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    return fig


@plain_text
def _nctr_figure(daily: DailyTable, title: str, n_reps: int) -> Figure:
    """Patients not meeting the criteria to reside (today's measure) by pathway, beside the 2016/17 DTOC count.

    The two clocks side by side: everyone medically fit and still in an acute bed (stacked by
    the pathway they are leaving on) against the DTOC patients among them in acute beds.  The
    gap is what the 2016/17 return did not count: waiting to be declared ready for transfer,
    assessments done before readiness, and P0 patients waiting for transport or discharge hours.
    """
    parts = [(col, label, color) for col, label, color in NCTR_PATHWAYS if col in daily.columns]
    note = "Coloured areas: mean number at midnight, by discharge pathway"
    note += f" (across {n_reps} replications)" if n_reps > 1 else " (single replication)"
    fig, panel = _new_figure(10, 5.8, "Patients not meeting the criteria to reside (NCTR)", title, note)
    ax = panel.add_subplot()
    means = pd.DataFrame({col: _percentiles(daily, col)["mean"] for col, _, _ in parts}).fillna(0.0)
    ax.stackplot(means.index, means.T.to_numpy(), labels=[label for _, label, _ in parts],
                 colors=[color for _, _, color in parts], alpha=0.9, linewidth=0)
    if "delayed_acute_midnight" in daily.columns:
        dtoc = _percentiles(daily, "delayed_acute_midnight")
        ax.plot(dtoc.index, dtoc["mean"], color="black", linewidth=1.3, linestyle="--",
                label="of whom delayed transfers of care in acute beds (2016/17 SitRep)")
    _style_axes(ax)
    ax.set_ylabel("Patients at midnight")
    _format_date_axis(ax, pd.DatetimeIndex(means.index), _holidays(daily))
    panel.legend(loc="outside lower center", ncol=3, frameon=False, fontsize=9)
    return fig


@plain_text
def _drd_figure(daily: DailyTable, title: str, n_reps: int) -> Figure:
    """Discharge Ready Date delays by band: share of discharges (left) and delay days (right).

    Totals over the whole window per replication, then the mean and its 95% confidence interval
    across replications, so a band's bar says how sure the estimate is, not how a day varies.
    """
    from flowsim.experiment.stats import mean_ci

    drd = [f"drd_{kind}_{k}" for kind in ("discharges", "delay_days") for k, _ in DRD_BANDS]
    reps = (daily[["replication", *drd]].groupby("replication") if "replication" in daily.columns
            else [(0, daily[drd])])
    counts = np.array([[float(g[f"drd_discharges_{k}"].sum()) for k, _ in DRD_BANDS] for _, g in reps])
    days = np.array([[float(g[f"drd_delay_days_{k}"].sum()) for k, _ in DRD_BANDS] for _, g in reps])
    pct = 100.0 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    note = (f"Bars: mean over {n_reps} replications; lines: 95% confidence interval" if n_reps > 1
            else "Single replication: no interval")
    fig, panel = _new_figure(12, 5.2, "Discharge delays from the Discharge Ready Date", title, note)
    axes = panel.subplots(1, 2)
    labels = [label for _, label in DRD_BANDS]
    for ax, values, ylabel, color in ((axes[0], pct, "% of discharges", NHS_BLUE),
                                      (axes[1], days, "Delay days (discharge date minus DRD)", NHS_PURPLE)):
        stats = [mean_ci(values[:, j]) for j in range(values.shape[1])]
        m = np.array([x[0] for x in stats])
        err = np.array([[x[0] - x[1], x[2] - x[0]] if np.isfinite(x[1]) else [0.0, 0.0] for x in stats]).T
        ax.bar(labels, m, color=color, alpha=0.85, yerr=err, capsize=3, ecolor=NHS_DARK_GREY)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("Delay band (days)")
        _tidy(ax)
        ax.set_ylim(bottom=0)
    return fig


@plain_text
def _escalation_actions_figure(daily: DailyTable, title: str, n_reps: int, labels: list[str]) -> Figure:
    """When each escalation action was in force, and the escalation beds open.

    A command centre reads this for flapping: an action that is on for a few hours at a time,
    many times, shows as a ragged line well below 100%; one that is opened and kept shows as
    long plateaus.  Each line is the share of the day the action was in force, averaged over
    replications.
    """
    cols = sorted((c for c in daily.columns if c.startswith("escalation_action_")),
                  key=lambda c: int(c.rsplit("_", 1)[1]))
    note = "Share of each day an action was in force" + (f", mean of {n_reps} replications" if n_reps > 1 else "")
    fig, panel = _new_figure(12, 7.5, "Escalation actions in force", title, note)
    axes = panel.subplots(2, 1, sharex=True, height_ratios=[1.4, 1.0])
    palette = (NHS_BLUE, NHS_RED, NHS_AQUA_GREEN, NHS_ORANGE, NHS_PURPLE, NHS_DARK_GREEN, NHS_WARM_YELLOW)
    dates = pd.DatetimeIndex(pd.to_datetime(daily["date"]).drop_duplicates().sort_values())
    for j, col in enumerate(cols):
        i = int(col.rsplit("_", 1)[1])
        name = labels[i] if i < len(labels) else f"Action {i + 1}"
        stats = _percentiles(daily, col)
        axes[0].step(stats.index, 100.0 * stats["mean"], where="post", color=palette[j % len(palette)],
                     linewidth=1.4, label="\n".join(textwrap.wrap(name, 50)))
    axes[0].set_ylabel("% of the day in force")
    axes[0].set_ylim(0, 105)
    axes[0].legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=8, frameon=False, ncol=3)
    if "escalation_beds_open" in daily.columns:
        beds = _percentiles(daily, "escalation_beds_open")
        if n_reps > 1:
            _band(axes[1], beds, NHS_BLUE, "5–95% of replications")
        axes[1].plot(beds.index, beds["mean"], color=NHS_DARK_BLUE, linewidth=1.5,
                     label="Escalation beds open" + _mean_suffix(n_reps))
        axes[1].legend(loc="upper left", fontsize=8.5, frameon=False)
    axes[1].set_ylabel("Beds open (daily mean)")
    for ax in axes:
        limits = ax.get_ylim()
        _style_axes(ax)
        ax.set_ylim(limits)
        _format_date_axis(ax, dates, _holidays(daily))
    axes[0].tick_params(labelbottom=False)
    return fig


@plain_text
def dtoc_target_figure(daily: DailyTable, title: str, target: float | None, target_label: str) -> Figure:
    """Fan chart of delayed patients at midnight across replications, with the BCF target line."""
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
    _format_date_axis(ax, pd.DatetimeIndex(stats.index), _holidays(daily))
    panel.legend(loc="outside lower center", ncol=4, frameon=False, fontsize=9)
    return fig


@plain_text
def run_figures(daily: DailyTable, title: str, services: Services, mode: str = "full", *,
                action_labels: Sequence[str] = ()) -> dict[str, Figure]:
    """The board-paper figures of one scenario's results, by file name.

    ``daily`` is the per-(replication, day) table from ``RunResult.daily()``; ``title`` goes in every heading
    (:func:`flowsim.scenario.provenance.title` says when the run changed its scenario file).  A pathway-only
    scenario (``mode``) has no acute beds to fill, so it gets no occupancy chart; the winter timeline is drawn
    only when some replication escalated above OPEL 1.  Today's measures get their own figures when the daily
    table has them: patients not meeting the criteria to reside by pathway, Discharge Ready Date delay bands
    (not for pathway-only scenarios, which have no acute stay to discharge from) and, with escalation, the
    actions in force (``action_labels`` name them, in the scenario's order).
    """
    if daily.empty:
        raise ValueError("no daily results to plot")
    missing = [c for c in ("date", "acute_occupied_midnight") if c not in daily.columns]
    if missing:
        raise ValueError(f"daily results lack required column(s): {', '.join(missing)}")
    n_reps = _replication_count(daily)
    builders: list[tuple[str, Callable[[], Figure]]] = []
    if mode != "pathway_only":
        builders.append(("occupancy.png", lambda: _occupancy_figure(daily, title, n_reps)))
    builders += [("delays.png", lambda: _delays_figure(daily, title, n_reps)),
                 ("queues.png", lambda: _queues_figure(daily, title, n_reps, services))]
    if "nctr_midnight" in daily.columns:
        builders.append(("nctr.png", lambda: _nctr_figure(daily, title, n_reps)))
    drd = [f"drd_discharges_{k}" for k, _ in DRD_BANDS]
    if mode != "pathway_only" and all(c in daily.columns for c in drd) and float(daily[drd].to_numpy().sum()) > 0:
        builders.append(("discharge_delays.png", lambda: _drd_figure(daily, title, n_reps)))
    if "opel_level" in daily.columns and daily["opel_level"].max() > 1:
        builders.append(("timeline.png", lambda: _timeline_figure(daily, title, n_reps)))
    if any(c.startswith("escalation_action_") for c in daily.columns):
        labels = list(action_labels)
        builders.append(("escalation_actions.png", lambda: _escalation_actions_figure(daily, title, n_reps, labels)))
    return {name: build() for name, build in builders}


def make_figures(daily: DailyTable, outdir: Path, title: str, services: Services | Mapping[str, Sequence[str]],
                 mode: str = "full", *, action_labels: Sequence[str] = ()) -> list[Path]:
    """Write :func:`run_figures` as PNGs into ``outdir`` (atomically: a half-finished run never leaves a
    truncated PNG for someone to paste into a paper) and return their paths."""
    svc = services if isinstance(services, Services) else Services.from_names(services)
    figures = run_figures(daily, title, svc, mode, action_labels=action_labels)
    written = [save_atomic(fig, Path(outdir) / name) for name, fig in figures.items()]
    log.info("wrote %d figures to %s", len(written), outdir)
    return written


def run_title(result: RunResult) -> str:
    """The title a run's figures carry: the scenario's name, and how many settings the run changed."""
    return scenario_title(scenario_to_dict(result.scenario))


def draw_run(result: RunResult, outdir: Path) -> list[Path]:
    """The run's figures into ``outdir``: the ``draw`` hook the CLI hands to ``write_run_dir``."""
    data = scenario_to_dict(result.scenario)
    esc = result.scenario.escalation
    labels = [a.label or a.kind for a in esc.actions] if esc is not None else []
    rows = len(result.replications) * result.scenario.simulation.duration_days
    daily: DailyTable = (DailyColumns(result.daily, result.daily_columns()) if rows > LAZY_DAILY_ROWS
                         else result.daily())
    return make_figures(daily, outdir, scenario_title(data), Services.of(data), result.scenario.mode,
                        action_labels=labels)
