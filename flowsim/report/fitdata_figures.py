"""Goodness-of-fit figures for ``flowsim fit-data``: one per cohort (densities and a Q-Q plot) and the arrivals
profile.  Same conventions as ``figures.py`` (own Agg canvas, NHS colours, atomic writes, user text drawn as
plain text, never as mathtext)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from flowsim.calibration.fitdata import WEEKDAYS, CohortFit, FitResult, flow_syntax, write_tables
from flowsim.report.figures import (
    NHS_AQUA_GREEN,
    NHS_BLUE,
    NHS_DARK_GREY,
    NHS_ORANGE,
    NHS_PALE_GREY,
    NHS_RED,
    new_plain_figure,
    plain_text,
    save_atomic,
)
from flowsim.scenario.schema import MONTHS

_COLOURS = {"lognormal": NHS_BLUE, "gamma": NHS_RED, "weibull": NHS_AQUA_GREEN, "exponential": NHS_ORANGE}


def write_figures(res: FitResult, outdir: Path) -> list[Path]:
    """The tables (CSV, from ``fitdata.write_tables``), a goodness-of-fit PNG per cohort and an arrivals PNG."""
    written = write_tables(res, outdir)
    for c in res.cohorts:
        written.append(save_atomic(cohort_figure(res, c), outdir / f"los_{c.name}.png"))
    written.append(save_atomic(arrivals_figure(res), outdir / "arrivals.png"))
    return written


@plain_text
def cohort_figure(res: FitResult, c: CohortFit) -> Figure:
    """Histogram with every candidate's fitted density (AIC in the legend), and a Q-Q plot of the chosen fit."""
    fig = new_plain_figure(11, 4.6)
    ax1, ax2 = fig.subplots(1, 2)
    x = np.sort(c.los)
    top = float(np.quantile(x, 0.99))
    ax1.hist(x[x <= top], bins=min(60, max(10, int(np.sqrt(len(x))))), density=True, color=NHS_PALE_GREY,
             edgecolor=NHS_DARK_GREY, linewidth=0.4, label=f"observed (n = {len(x)}; top 1% not shown)")
    grid = np.linspace(top / 400, top, 400)
    for cand in c.candidates:
        win = cand is c.winner
        note = " (chosen)" if win else f" (+{cand.aic - c.winner.aic:.0f})"
        ax1.plot(grid, cand.frozen().pdf(grid), color=_COLOURS[cand.family], lw=2.4 if win else 1.2,
                 ls="-" if win else "--", label=f"{cand.family}: AIC {cand.aic:.0f}{note}")
    ax1.set_xlabel("days from admission to medically fit")
    ax1.set_ylabel("density")
    ax1.legend(fontsize=8, frameon=False)
    ax1.set_title("Histogram and fitted densities", fontsize=10)
    probs = (np.arange(1, len(x) + 1) - 0.5) / len(x)
    q = c.winner.frozen().ppf(probs)
    ax2.plot(q, x, ".", ms=2.5, color=_COLOURS[c.winner.family], alpha=0.6)
    lim = float(max(q[-1], x[-1]))
    ax2.plot([0, lim], [0, lim], color=NHS_DARK_GREY, lw=1, label="perfect fit")
    ax2.set_xlabel(f"fitted {c.winner.family} quantile (days)")
    ax2.set_ylabel("observed quantile (days)")
    ax2.legend(fontsize=8, frameon=False)
    ax2.set_title(f"Q-Q plot of the chosen fit\n{flow_syntax(c.winner.spec)}", fontsize=10)
    grp = f"{res.extract.group_column} = {c.value}" if res.extract.group_column else "all spells"
    fig.suptitle(f"Acute length of stay to medically fit, cohort {c.name} ({grp})\n"
                 f"FITTED from {res.extract.path.name} on {res.fitted_on}", fontsize=11)
    fig.tight_layout()
    return fig


@plain_text
def arrivals_figure(res: FitResult) -> Figure:
    """Month, weekday and hour factors (mean 1) with +-2 Poisson standard errors."""
    a = res.arrivals
    fig = new_plain_figure(12, 3.8)
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [12, 7, 24]})
    panels = [
        ("Month", [m.capitalize() for m in MONTHS], [a.month_factors.get(m, np.nan) for m in MONTHS],
         [a.month_counts[m] for m in MONTHS]),
        ("Weekday", list(WEEKDAYS), a.weekday_factors, a.weekday_counts),
        ("Hour of admission", [f"{h}" for h in range(24)], a.hour_profile or [np.nan] * 24, a.hour_counts),
    ]
    for ax, (title, labels, vals, counts) in zip(axes, panels, strict=True):
        v = np.asarray(vals, dtype=float)
        err = np.where(np.asarray(counts) > 0, 2 * v / np.sqrt(np.maximum(counts, 1)), 0.0)  # Poisson +-2 se
        ax.bar(range(len(v)), v, color=NHS_BLUE, yerr=err, ecolor=NHS_DARK_GREY, capsize=1.5)
        ax.axhline(1.0, color=NHS_DARK_GREY, lw=0.8)
        ax.set_xticks(range(len(v)), labels, fontsize=7, rotation=90 if len(v) > 12 else 0)
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("relative rate (mean 1), +-2 Poisson s.e.")
    fig.suptitle(f"Admission profile: {a.n} admissions over {a.days} days, {a.rate_per_day:.2f} a day\n"
                 f"FITTED from {res.extract.path.name} on {res.fitted_on}", fontsize=11)
    fig.tight_layout()
    return fig
