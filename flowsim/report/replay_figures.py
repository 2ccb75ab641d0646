"""The history-replay figure: each observed daily series laid against the simulated one.

Same conventions as ``figures.py`` (Agg canvas, plain text, atomic saves).  The band is the spread of the
replications (middle 90% and 50%), drawn only from ``MIN_BAND_REPLICATIONS`` replications; with fewer, the
subtitle says why there is none.  The days whose demand was replayed are marked, so a reader sees where the
model ran on its own rates (the warm-up and any days outside the demand file).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from flowsim.experiment.replay import MIN_BAND_REPLICATIONS, replay_comparison, replay_summary
from flowsim.report.figures import (
    NHS_BLUE,
    NHS_DARK_BLUE,
    NHS_DARK_GREY,
    _format_date_axis,
    _new_figure,
    _style_axes,
    display_name,
    draw_run,
    plain_text,
    save_atomic,
)
from flowsim.scenario.loader import scenario_to_dict
from flowsim.scenario.provenance import title as scenario_title

if TYPE_CHECKING:
    from flowsim.experiment.runner import RunResult

NHS_BLACK = "#231F20"

#: Plain names of the series an observed file may give.
SERIES_LABELS = {
    "admissions": "Non-elective admissions a day", "readmissions": "Readmissions a day",
    "acute_occupied_midnight": "Acute beds occupied at midnight", "occupancy_pct": "Acute bed occupancy (%)",
    "delayed_midnight": "Delayed transfers of care (midnight census)",
    "delayed_acute_midnight": "Delayed transfers of care in acute beds",
    "delayed_nonacute_midnight": "Delayed transfers of care in community beds",
    "nctr_midnight": "Not meeting the criteria to reside (midnight)", "ed_4h_breaches": "ED waits over 4 hours",
    "ed_12h_breaches": "ED waits over 12 hours", "step_up_referrals": "Step-up referrals a day",
}


def _note(n_reps: int) -> str:
    if n_reps >= MIN_BAND_REPLICATIONS:
        return (f"Across {n_reps} replications: line is the mean, shading the middle 50% and 90% of replications; "
                "black dots are what was observed")
    return (f"{n_reps} replications: line is the mean; no band is drawn from fewer than {MIN_BAND_REPLICATIONS} "
            "replications; black dots are what was observed")


@plain_text
def replay_figure(comparison: pd.DataFrame, title: str, demand: Mapping[str, Any] | None = None) -> Figure:
    """One panel per observed series: observations (dots), the simulated mean (line) and the replications'
    spread (bands); the replayed-demand window between dotted lines.  ``comparison`` is ``replay.csv``'s table
    (``flowsim.experiment.replay.replay_comparison``); ``demand`` the summary's ``demand`` entry, if any."""
    names = list(dict.fromkeys(comparison["series"]))
    if not names:
        raise ValueError("no observed series to compare")
    n_reps = int(comparison["replications"].max())
    fig, panel = _new_figure(10, 2.9 * len(names) + 1.4, "History replay: simulated against observed", title,
                             _note(n_reps))
    axes = panel.subplots(len(names), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, names, strict=True):
        part = comparison[comparison["series"] == name]
        dates = pd.to_datetime(part["date"])
        if n_reps >= MIN_BAND_REPLICATIONS:
            ax.fill_between(dates, part["p5"], part["p95"], color=NHS_BLUE, alpha=0.18, linewidth=0,
                            label="5–95% of replications")
            ax.fill_between(dates, part["p25"], part["p75"], color=NHS_BLUE, alpha=0.35, linewidth=0,
                            label="25–75% of replications")
        ax.plot(dates, part["mean"], color=NHS_DARK_BLUE, linewidth=1.6, label="Simulated (mean)", zorder=3)
        seen = part["observed"].notna()
        ax.plot(dates[seen], part.loc[seen, "observed"], "o", color=NHS_BLACK, markersize=2.6, label="Observed",
                zorder=4)
        if demand:
            edges = (pd.Timestamp(demand["first"]), pd.Timestamp(demand["last"]) + pd.Timedelta(days=1))
            for i, day in enumerate(edges):
                ax.axvline(day, color=NHS_DARK_GREY, linestyle=":", linewidth=1.4,
                           label="Replayed demand: from / to" if i == 0 else None)
        _style_axes(ax)
        top = np.nanmax([part["p95"].max(), part["observed"].max(), part["mean"].max(), 1.0])
        ax.set_ylim(0, float(top) * 1.12)
        ax.set_title(SERIES_LABELS.get(str(name), display_name(str(name))), fontsize=10, loc="left")
        _format_date_axis(ax, pd.DatetimeIndex(dates))
    handles, labels = axes[0].get_legend_handles_labels()
    panel.legend(handles, labels, loc="outside lower center", ncol=4, frameon=False, fontsize=9)
    return fig


def draw_replay(comparison: pd.DataFrame, outdir: Path, title: str,
                demand: Mapping[str, Any] | None = None) -> list[Path]:
    """``replay.png`` in ``outdir`` (nothing when no observed series was compared)."""
    if comparison.empty:
        return []
    return [save_atomic(replay_figure(comparison, title, demand), outdir / "replay.png")]


def draw_run_with_replay(result: RunResult, outdir: Path) -> list[Path]:
    """The run's figures (``figures.draw_run``) and, for a history replay with observed series, ``replay.png``:
    the ``draw`` hook the CLI and the app hand to ``write_run_dir``."""
    paths = draw_run(result, outdir)
    rp = result.scenario.replay
    if rp is not None and rp.observed:
        daily = result.daily()
        paths += draw_replay(replay_comparison(daily, result.scenario), Path(outdir),
                             scenario_title(scenario_to_dict(result.scenario)),
                             replay_summary(daily, result.scenario).get("demand"))
    return paths
