"""Figures for experiments: sweep response curves and heatmaps, target finder, sensitivity, warm-up.

Same conventions as ``figures.py`` (own Agg canvas, NHS colours, atomic
writes).  Every sweep figure shows the 95% confidence interval of the mean
over replications, because the question a sweep answers is "which capacity",
and a difference smaller than the interval is not evidence for either.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from flowsim.report.figures import (
    NHS_AQUA_GREEN,
    NHS_BLUE,
    NHS_DARK_BLUE,
    NHS_DARK_GREY,
    NHS_LIGHT_BLUE,
    NHS_ORANGE,
    NHS_PURPLE,
    NHS_RED,
    _new_figure,
    _tidy,
    plain_text,
    save_atomic,
    wrap,
)
from flowsim.results.kpi import kpi_info

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from flowsim.experiment.runner import WarmupChoice
    from flowsim.sweep import SweepResult, SweepSpec, TargetResult

LINE_COLOURS = [NHS_BLUE, NHS_ORANGE, NHS_AQUA_GREEN, NHS_PURPLE, NHS_RED, NHS_LIGHT_BLUE, NHS_DARK_GREY]


def slug(text: str) -> str:
    """A file-name-safe form of a parameter path (the response figure of ``path`` is response_<slug>.png)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:60] or "x"


def _grid_axes(panel: Any, n: int) -> list[Axes]:
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    axes = panel.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])



def _labels(spec: SweepSpec) -> dict[str, str]:
    return {p.path: p.name for p in spec.parameters}


@plain_text
def response_figure(spec: SweepSpec, summary: pd.DataFrame, path: Path, x: str, by: str | None = None) -> Path:
    """Mean KPI against parameter ``x`` with 95% CI bands, one line per value of ``by`` (if given)."""
    labels = _labels(spec)
    kpis = list(dict.fromkeys(summary["kpi"]))
    n_reps = int(summary["n"].max())
    fig, panel = _new_figure(11, 3.4 * math.ceil(len(kpis) / 2) + 1, "Sweep response",
                             spec.name or "sweep", f"mean and 95% confidence interval over {n_reps} replications "
                             "(common random numbers across points)")
    others = [p.path for p in spec.parameters if p.path not in (x, by)]
    for ax, kpi in zip(_grid_axes(panel, len(kpis)), kpis, strict=False):
        sub = summary[summary["kpi"] == kpi]
        if others:  # more parameters than drawn: average over them (marginal response)
            sub = sub.groupby([c for c in (x, by) if c], as_index=False)[["mean", "ci_low", "ci_high"]].mean()
        groups = [(None, sub)] if by is None else list(sub.groupby(by, sort=True))
        for i, (value, grp) in enumerate(groups):
            grp = grp.sort_values(x)
            colour = LINE_COLOURS[i % len(LINE_COLOURS)]
            name = None if value is None else f"{labels.get(by or '', by)} = {value:g}"
            ax.fill_between(grp[x], grp["ci_low"], grp["ci_high"], color=colour, alpha=0.18, linewidth=0)
            ax.plot(grp[x], grp["mean"], "o-", color=colour, linewidth=1.6, markersize=4, label=name)
        ax.set_title(wrap(kpi_info(kpi).label, 50), fontsize=10, color=NHS_DARK_BLUE)
        ax.set_xlabel(labels.get(x, x))
        _tidy(ax)
        if by is not None:
            ax.legend(fontsize=8, frameon=False)
    if others:
        panel.text(0.01, 0.0, "averaged over: " + ", ".join(labels.get(o, o) for o in others), fontsize=8,
                   color=NHS_DARK_GREY)
    return save_atomic(fig, path)


@plain_text
def heatmap_figure(spec: SweepSpec, summary: pd.DataFrame, path: Path, x: str, y: str) -> Path:
    """Mean KPI over a two-parameter grid, each cell annotated with its mean and CI half-width."""
    labels = _labels(spec)
    kpis = list(dict.fromkeys(summary["kpi"]))
    n_reps = int(summary["n"].max())
    fig, panel = _new_figure(11, 4.2 * math.ceil(len(kpis) / 2) + 1, "Sweep heatmap", spec.name or "sweep",
                             f"cell: mean ± 95% CI half-width over {n_reps} replications")
    for ax, kpi in zip(_grid_axes(panel, len(kpis)), kpis, strict=False):
        sub = summary[summary["kpi"] == kpi].groupby([y, x], as_index=False)[["mean", "ci_low", "ci_high"]].mean()
        grid = sub.pivot(index=y, columns=x, values="mean").sort_index(ascending=False)
        half = sub.assign(h=(sub["ci_high"] - sub["ci_low"]) / 2).pivot(index=y, columns=x, values="h")
        half = half.reindex(index=grid.index, columns=grid.columns)
        img = ax.imshow(grid.to_numpy(dtype=float), cmap="Blues", aspect="auto")
        ax.set_xticks(range(len(grid.columns)), [f"{v:g}" for v in grid.columns])
        ax.set_yticks(range(len(grid.index)), [f"{v:g}" for v in grid.index])
        ax.set_xlabel(labels.get(x, x))
        ax.set_ylabel(labels.get(y, y))
        ax.set_title(wrap(kpi_info(kpi).label, 50), fontsize=10, color=NHS_DARK_BLUE)
        values = grid.to_numpy(dtype=float)
        mid = np.nanmean(values) if np.isfinite(values).any() else 0.0
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v, h = values[i, j], half.to_numpy(dtype=float)[i, j]
                text = f"{v:.1f}" + ("" if not np.isfinite(h) else f"\n±{h:.1f}")
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if v > mid else NHS_DARK_BLUE)
        fig.colorbar(img, ax=ax, shrink=0.8)
    return save_atomic(fig, path)


@plain_text
def scatter_figure(spec: SweepSpec, summary: pd.DataFrame, path: Path) -> Path:
    """Latin hypercube designs: each KPI's point means against each parameter."""
    labels = _labels(spec)
    kpis = list(dict.fromkeys(summary["kpi"]))
    params = [p.path for p in spec.parameters]
    fig, panel = _new_figure(3.2 * len(params) + 1, 2.8 * len(kpis) + 1, "Sweep (Latin hypercube)",
                             spec.name or "sweep", "each dot is one point's mean over its replications")
    axes = panel.subplots(len(kpis), len(params), squeeze=False)
    for i, kpi in enumerate(kpis):
        sub = summary[summary["kpi"] == kpi]
        for j, p in enumerate(params):
            ax = axes[i, j]
            ax.errorbar(sub[p], sub["mean"], yerr=[sub["mean"] - sub["ci_low"], sub["ci_high"] - sub["mean"]],
                        fmt="o", color=NHS_BLUE, ecolor=NHS_LIGHT_BLUE, markersize=3, linewidth=0.8)
            if i == len(kpis) - 1:
                ax.set_xlabel(labels.get(p, p))
            if j == 0:
                ax.set_ylabel(wrap(kpi_info(kpi).label, 30), fontsize=8)
            _tidy(ax)
    return save_atomic(fig, path)


@plain_text
def target_figure(result: TargetResult, path: Path) -> Path:
    """KPI mean and CI at every value the target finder tried, the threshold, and the answer."""
    t = result.target
    ev = result.evaluations.sort_values("value")
    fig, panel = _new_figure(9, 4.6, "Target finder", f"{t.kpi} {'<=' if t.at_most is not None else '>='} "
                             f"{t.threshold:g}", f"mean and 95% CI over {result.replications} replications at each "
                             f"value tried; answer needs the one-sided {t.confidence:.0%} bound to meet the target")
    ax = panel.subplots()
    ax.errorbar(ev["value"], ev["mean"], yerr=[ev["mean"] - ev["ci_low"], ev["ci_high"] - ev["mean"]], fmt="o",
                color=NHS_BLUE, ecolor=NHS_LIGHT_BLUE, capsize=3, label="mean, 95% CI")
    ax.plot(ev["value"], ev["bound"], "v" if t.at_most is not None else "^", color=NHS_DARK_GREY, markersize=5,
            linestyle="none", label=f"one-sided {t.confidence:.0%} bound")
    ax.axhline(t.threshold, color=NHS_RED, linestyle="--", linewidth=1.2, label=f"target {t.threshold:g}")
    if result.answer is not None:
        ax.axvline(result.answer, color=NHS_AQUA_GREEN, linewidth=1.5, label=f"answer {result.answer:g}")
    if result.point_estimate is not None and result.point_estimate != result.answer:
        ax.axvline(result.point_estimate, color=NHS_ORANGE, linestyle=":", linewidth=1.5,
                   label=f"mean meets it from {result.point_estimate:g}")
    ax.set_xlabel(t.label or t.parameter)
    ax.set_ylabel(wrap(kpi_info(t.kpi).label, 40))
    ax.legend(fontsize=8, frameon=False)
    _tidy(ax)
    return save_atomic(fig, path)


@plain_text
def sensitivity_figure(table: pd.DataFrame, method: str, path: Path, labels: dict[str, str] | None = None) -> Path:
    """Morris: mu* (bars, with CI) and sigma; Sobol: first-order and total indices with CIs."""
    kpis = list(dict.fromkeys(table["kpi"]))
    note = ("Morris screening: mu* = mean absolute elementary effect (importance), sigma = interaction or "
            "non-linearity" if method == "morris" else "Sobol indices: S1 = first order, ST = total effect")
    fig, panel = _new_figure(11, 3.2 * math.ceil(len(kpis) / 2) + 1, "Global sensitivity", method, note)
    for ax, kpi in zip(_grid_axes(panel, len(kpis)), kpis, strict=False):
        sub = table[table["kpi"] == kpi]
        names = [wrap((labels or {}).get(str(p), str(p)), 28) for p in sub["parameter"]]
        y = np.arange(len(sub))
        if method == "morris":
            ax.barh(y - 0.2, sub["mu_star"], xerr=sub["mu_star_conf"], height=0.4, color=NHS_BLUE, label="mu*")
            ax.barh(y + 0.2, sub["sigma"], height=0.4, color=NHS_LIGHT_BLUE, label="sigma")
        else:
            ax.barh(y - 0.2, sub["S1"], xerr=sub["S1_conf"], height=0.4, color=NHS_BLUE, label="S1")
            ax.barh(y + 0.2, sub["ST"], xerr=sub["ST_conf"], height=0.4, color=NHS_LIGHT_BLUE, label="ST")
        ax.set_yticks(y, names, fontsize=8)
        ax.set_title(wrap(kpi_info(kpi).label, 50), fontsize=10, color=NHS_DARK_BLUE)
        ax.legend(fontsize=8, frameon=False)
        _tidy(ax)
    return save_atomic(fig, path)


def sweep_figures(spec: SweepSpec, summary: pd.DataFrame, target: TargetResult | None,
                  sensitivity: pd.DataFrame | None, outdir: Path) -> dict[str, Path]:
    """Every figure that fits the sweep: response curves (1 parameter), heatmaps (2), scatter (LHS)."""
    outdir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    params = [p.path for p in spec.parameters]
    if not summary.empty and params:
        if spec.design == "lhs":
            files["figure_scatter"] = scatter_figure(spec, summary, outdir / "lhs_scatter.png")
        else:
            for p in params:
                varying = [q for q in params if q != p and summary[q].nunique() > 1]
                by = varying[0] if len(varying) == 1 else None
                files[f"figure_response_{slug(p)}"] = response_figure(
                    spec, summary, outdir / f"response_{slug(p)}.png", p, by)
            if len(params) >= 2:
                files["figure_heatmap"] = heatmap_figure(spec, summary, outdir / "heatmap.png", params[0], params[1])
    if target is not None:
        files["figure_target"] = target_figure(target, outdir / "target.png")
    if sensitivity is not None and spec.sensitivity is not None:
        files["figure_sensitivity"] = sensitivity_figure(sensitivity, spec.sensitivity.method,
                                                         outdir / "sensitivity.png", {
                                                             p.path: p.label or ".".join(p.path.split(".")[-2:])
                                                             for p in spec.sensitivity.parameters})
    return files


def draw_sweep(result: SweepResult, outdir: Path) -> dict[str, Path]:
    """Every figure of a sweep, the warm-up plot included when this call chose it (the ``draw`` hook of
    ``run_sweep``)."""
    files = sweep_figures(result.spec, result.summary, result.target, result.sensitivity, outdir)
    if result.warmup_choice is not None:
        files["figure_warmup"] = warmup_figure(result.warmup_choice, outdir / "warmup.png")
    return files


@plain_text
def warmup_figure(choice: WarmupChoice, path: Path) -> Path:
    """The pilot series, its batch means, the MSER statistic and the chosen truncation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    m = choice.mser
    fig, panel = _new_figure(10, 6, "Warm-up (MSER-5)", f"{choice.kpi}: {choice.days} days",
                             f"pilot: mean of {choice.pilot_replications} replications from an empty system"
                             + ("" if m.reliable else "; NO steady state found within the searched half"))
    top, bottom = panel.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    days = choice.series.index.to_numpy(dtype=float)
    top.plot(days, choice.series.to_numpy(), color=NHS_LIGHT_BLUE, linewidth=0.8, label="daily mean")
    centres = np.arange(len(m.batch_means)) * m.batch + (m.batch - 1) / 2 + days[0]
    top.plot(centres, m.batch_means, color=NHS_BLUE, linewidth=1.4, label=f"batch means ({m.batch} days)")
    for ax in (top, bottom):
        ax.axvline(days[0] + m.truncation, color=NHS_RED, linestyle="--", linewidth=1.2)
        _tidy(ax)
    top.set_ylabel(wrap(choice.kpi.replace("_", " "), 30))
    top.legend(fontsize=8, frameon=False)
    d = np.arange(len(m.statistic)) * m.batch + days[0]
    bottom.plot(d, m.statistic, color=NHS_DARK_BLUE, linewidth=1.2)
    bottom.set_ylabel("MSER statistic")
    bottom.set_xlabel("days since the empty start (red line: chosen warm-up)")
    return save_atomic(fig, path)
