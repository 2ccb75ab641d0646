"""Figures for calibration: observed against simulated (fitted and held out), and the objective profile.
Same conventions as ``figures.py``; the CLI hands :func:`draw_calibration` to ``calibrate``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from flowsim.report.figures import (
    NHS_AQUA_GREEN,
    NHS_BLUE,
    NHS_DARK_BLUE,
    NHS_DARK_GREY,
    NHS_LIGHT_BLUE,
    NHS_ORANGE,
    NHS_RED,
    _new_figure,
    _tidy,
    plain_text,
    save_atomic,
)

if TYPE_CHECKING:
    from flowsim.calibration.calibrate import CalibrationResult



@plain_text
def fit_figure(report: pd.DataFrame, path: Path, replications: int) -> Path:
    """Each target: observed (cross) and simulated mean with its 95% CI, as % of observed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(report)
    fig, panel = _new_figure(10, 1.5 + 0.45 * n, "Calibration fit", "observed and simulated",
                             f"simulated: mean and 95% CI over {replications} replications, as % of the observed value;"
                             " orange = held out (not fitted)")
    ax = panel.subplots()
    y = np.arange(n)[::-1]
    for yi, (_, r) in zip(y, report.iterrows(), strict=True):
        scale = 100.0 / r["observed"] if r["observed"] else 1.0
        colour = NHS_ORANGE if r["role"] == "held out" else NHS_BLUE
        if np.isfinite(r["ci_low"]):
            ax.plot([r["ci_low"] * scale, r["ci_high"] * scale], [yi, yi], color=colour, linewidth=2.5, alpha=0.6)
        ax.plot(r["simulated"] * scale, yi, "o", color=colour, markersize=7)
    ax.axvline(100, color=NHS_RED, linestyle="--", linewidth=1.2, label="observed")
    ax.set_yticks(y, [f"{t} ({'held out' if role == 'held out' else 'fitted'})"
                      for t, role in zip(report["target"], report["role"], strict=True)], fontsize=8)
    ax.set_xlabel("simulated as % of observed")
    ax.legend(fontsize=8, frameon=False)
    _tidy(ax)
    return save_atomic(fig, path)


@plain_text
def profile_figure(result: CalibrationResult, path: Path) -> Path:
    """Objective against each free parameter over every candidate, with the 95% likelihood-ratio line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ev = result.evaluations
    free = result.problem.config.free
    k = len(free)
    best = float(ev["objective"].min())
    line = best + float(stats.chi2.ppf(0.95, k))
    cols = min(2, k)
    rows = math.ceil(k / cols)
    fig, panel = _new_figure(10, 1.2 + 3.2 * rows, "Calibration profile", "objective by parameter",
                             f"each dot a candidate ({len(ev)} evaluated); below the red line = inside the "
                             "approximate 95% set")
    axes = panel.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[k:]:
        ax.set_visible(False)
    top = float(np.percentile(ev["objective"], 90)) if len(ev) > 5 else float(ev["objective"].max())
    for ax, p in zip(axes, free, strict=False):
        inside = ev["objective"] <= line
        ax.scatter(ev.loc[~inside, p.path], ev.loc[~inside, "objective"], s=12, color=NHS_LIGHT_BLUE)
        ax.scatter(ev.loc[inside, p.path], ev.loc[inside, "objective"], s=16, color=NHS_AQUA_GREEN)
        ax.axhline(line, color=NHS_RED, linestyle="--", linewidth=1)
        ax.axvline(result.best[p.path], color=NHS_DARK_BLUE, linewidth=1.2)
        ax.set_ylim(bottom=max(0.0, best * 0.9) if best > 0 else 0.0, top=max(top, line * 1.2))
        if p.transform == "log":
            ax.set_xscale("log")
        ax.set_xlabel(p.label or p.path, fontsize=8)
        ax.set_ylabel("objective (sum of z²)", fontsize=8, color=NHS_DARK_GREY)
        _tidy(ax)
    return save_atomic(fig, path)


def draw_calibration(result: CalibrationResult, outdir: Path) -> dict[str, Path]:
    """Both calibration figures into ``outdir``, by role (the ``draw`` hook of ``calibrate``)."""
    return {"figure_fit": fit_figure(result.report, outdir / "fit.png", result.problem.config.replications),
            "figure_profile": profile_figure(result, outdir / "profile.png")}
