"""Figures for option appraisal: paired differences, DTOC trajectory against the BCF target, occupancy
against 92%.  Same conventions as ``figures.py`` (own Agg canvas, NHS colours, atomic writes, user text as plain
text that wraps).  Every option appears under its one display name (``Comparison.names``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from flowsim.report.figures import (
    NHS_DARK_BLUE,
    NHS_DARK_GREY,
    NHS_RED,
    _format_date_axis,
    _new_figure,
    _tidy,
    plain_text,
    png_bytes,
    save_atomic,
    wrap,
)
from flowsim.report.sweep_figures import LINE_COLOURS
from flowsim.results.kpi import Modelled, kpi_applies
from flowsim.scenario.loader import scenario_to_dict
from flowsim.scenario.provenance import title as scenario_title

if TYPE_CHECKING:
    from flowsim.appraisal import Comparison
    from flowsim.experiment.runner import RunResult

FOREST_KPIS = ["delayed_patients_per_day", "dtoc_delayed_days_per_quarter", "occupancy_mean_pct", "days_over_92_pct",
               "ed_4h_breach_pct", "ed_wait_mean_hours", "total_cost"]



def daily_mean(run: RunResult, column: str) -> pd.Series:
    """Mean over replications of a daily column, by date."""
    return run.daily().groupby("date")[column].mean().sort_index()


def forest_figure(diffs: pd.DataFrame, path: Path, n_reps: int) -> Path:
    """:func:`forest_plot` saved as a PNG at ``path``."""
    return save_atomic(forest_plot(diffs, n_reps), path)


@plain_text
def forest_plot(diffs: pd.DataFrame, n_reps: int) -> Figure:
    """Each option's paired difference from the baseline with its 95% CI, one panel per KPI."""
    kpis = [k for k in FOREST_KPIS if k in set(diffs["kpi"])]
    options = list(dict.fromkeys(diffs["option"]))
    cols = 2
    fig, panel = _new_figure(11, 1.0 + math.ceil(len(kpis) / cols) * (0.55 * len(options) + 1.3),
                             "Options against the baseline", "paired differences",
                             f"option minus baseline, mean and 95% CI over {n_reps} paired replications "
                             "(common random numbers); filled = distinguishable from zero")
    axes = panel.subplots(math.ceil(len(kpis) / cols), cols, squeeze=False).ravel()
    for ax in axes[len(kpis):]:
        ax.set_visible(False)
    for ax, k in zip(axes, kpis, strict=False):
        sub = diffs[diffs["kpi"] == k].set_index("option").reindex(options)
        y = np.arange(len(options))[::-1]
        for yi, (name, r) in zip(y, sub.iterrows(), strict=True):
            colour = LINE_COLOURS[options.index(str(name)) % len(LINE_COLOURS)]
            lo, hi = r["ci_low"], r["ci_high"]
            if np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [yi, yi], color=colour, linewidth=2)
            ax.plot(r["diff_mean"], yi, "o", color=colour, markersize=7,
                    markerfacecolor=colour if r["distinguishable"] else "white")
        ax.axvline(0, color=NHS_DARK_GREY, linewidth=1)
        ax.set_yticks(y, [wrap(o, 30) for o in options], fontsize=8)
        unit = sub["unit"].dropna().iloc[0] if sub["unit"].notna().any() else ""
        ax.set_title(wrap(f"{sub['label'].dropna().iloc[0]} ({unit})", 50), fontsize=9.5, color=NHS_DARK_BLUE)
        _tidy(ax)
    return fig


@plain_text
def trajectory_plot(series: dict[str, pd.Series], heading: str, title: str, ylabel: str, *, target: float | None,
                    target_label: str, n_reps: int) -> Figure:
    """One line per scenario (first = baseline) of a daily mean over replications, smoothed by a centred
    7-day rolling mean, with a dashed target line."""
    fig, panel = _new_figure(11, 5, heading, title,
                             f"mean over {n_reps} replications, 7-day rolling mean; dashed red: {target_label}")
    ax = panel.subplots()
    dates = None
    for i, (label, s) in enumerate(series.items()):
        s = s.sort_index().rolling(7, center=True, min_periods=1).mean()
        dates = pd.DatetimeIndex(s.index)
        ax.plot(dates, s.to_numpy(), color=LINE_COLOURS[i % len(LINE_COLOURS)], linewidth=2.2 if i == 0 else 1.5,
                label=wrap(("baseline: " if i == 0 else "") + label, 70))
    if target is not None:
        ax.axhline(target, color=NHS_RED, linestyle="--", linewidth=1.3, label=target_label)
    if dates is not None:
        _format_date_axis(ax, dates)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    _tidy(ax)
    return fig


def trajectory_series(cmp: Comparison, column: str, heading: str, ylabel: str, *, target: float | None,
                      target_label: str) -> Figure:
    """A daily series per scenario of a comparison (each under its display name), with a target line."""
    series = {name: daily_mean(run, column) for name, run in zip(cmp.names, cmp.runs, strict=True)}
    # the baseline's display name, and how many settings the run changed in its file (if any)
    title = scenario_title({**scenario_to_dict(cmp.baseline.scenario), "name": cmp.names[0]})
    return trajectory_plot(series, heading, title, ylabel, target=target, target_label=target_label,
                           n_reps=len(cmp.baseline.replications))


def comparison_plots(cmp: Comparison) -> dict[str, Figure]:
    """The comparison's own figures by file name: the forest plot of paired differences, the DTOC trajectory
    against the BCF target and (unless the comparison is pathway-only) occupancy against the ceiling."""
    sc = cmp.baseline.scenario
    modelled = Modelled.of(sc)
    diffs = cmp.differences([k for k in cmp.kpis() if kpi_applies(k, modelled)])
    dtoc_target = sc.targets.delayed_per_100k * sc.population_18plus / 1e5
    out = {
        "differences.png": forest_plot(diffs, len(cmp.baseline.replications)),
        "dtoc_trajectory.png": trajectory_series(
            cmp, "delayed_midnight", "Delayed transfers of care", "delayed patients (midnight census)",
            target=dtoc_target,
            target_label=f"BCF target {sc.targets.delayed_per_100k:g} per 100,000 adults = {dtoc_target:.1f} a day"),
    }
    if sc.mode != "pathway_only":
        out["occupancy_options.png"] = trajectory_series(
            cmp, "occupancy_pct", "G&A bed occupancy", "occupancy at midnight (%)", target=sc.targets.occupancy_pct,
            target_label=f"{sc.targets.occupancy_pct:g}% ceiling")
    return out


ROLES = {"differences.png": "figure_differences", "dtoc_trajectory.png": "figure_dtoc",
         "occupancy_options.png": "figure_occupancy"}


def comparison_figures(cmp: Comparison, outdir: Path) -> dict[str, Path]:
    """:func:`comparison_plots` as PNGs in ``outdir``, by role: the ``draw`` hook the CLI hands to
    ``write_comparison``."""
    return {ROLES[name]: save_atomic(fig, outdir / name) for name, fig in comparison_plots(cmp).items()}


def comparison_pngs(cmp: Comparison) -> dict[str, bytes]:
    """:func:`comparison_plots` as PNG bytes by file name (for a report made in memory)."""
    return {name: png_bytes(fig) for name, fig in comparison_plots(cmp).items()}
