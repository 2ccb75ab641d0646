"""Tables the app shows, built by the report's own code and formatted with its words and rounding.

The headline table is the board report's (``run_report.headline_table``: measures the scenario models, each with
its 95% interval, the national standard and met / missed / uncertain by the interval); the comparison tables are
``Comparison.differences``, ``economics`` and ``targets`` (what ``flowsim compare`` prints and writes), and the
decision in words is ``appraisal_text.decision_lines``.  Nothing here computes a statistic.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from flowsim.appraisal import Comparison
from flowsim.report.appraisal_text import decision_lines
from flowsim.report.format import fmt, fmt_ci, money
from flowsim.report.run_report import dtoc_trajectory_png, headline_table
from flowsim.report.sources import RunSource
from flowsim.report.view import Table

#: Run figures the app shows (written by ``draw_run`` into the run directory), with their captions.
RUN_FIGURES = {
    "occupancy.png": "G&A bed occupancy: fan over replications, with the beds available and the 92% line",
    "queues.png": "Queues and community capacity by pathway",
    "delays.png": "Delayed transfers of care by SitRep reason",
}


def table_frame(table: Table) -> pd.DataFrame:
    """A report table as a plain frame: each cell's value (and its interval or badge), one column per header."""
    names = [c.label for c in table.columns]
    rows = [[c.value or c.badge or (c.rich.text if c.rich is not None else "") for c in r.cells]
            for r in table.rows if not r.group]
    return pd.DataFrame(rows, columns=names)


def run_source(run_dir: Path) -> RunSource:
    """A run directory as the report reads it."""
    return RunSource.from_directory(run_dir)


def headline_frame(src: RunSource) -> pd.DataFrame:
    """The board report's headline table: measure, unit, average, 95% CI, standard, against the standard."""
    return table_frame(headline_table(src))


def dtoc_png(src: RunSource) -> bytes | None:
    """The DTOC trajectory against the BCF target (the report's chart)."""
    return dtoc_trajectory_png(src)


def quarters_frame(src: RunSource) -> pd.DataFrame:
    """Delayed days per NHS quarter with their 95% CI and the BCF rate (from summary.json)."""
    rows = [{"NHS quarter": q.get("period"), "Days": q.get("days"), "Delayed days": fmt(q.get("delayed_days")),
             "95% CI": fmt_ci(q.get("ci_low"), q.get("ci_high")),
             "Delayed a day per 100,000 adults": fmt(q.get("delayed_per_day_per_100k"))}
            for q in src.summary.get("quarters") or []]
    return pd.DataFrame(rows)


def differences_frame(cmp: Comparison) -> pd.DataFrame:
    """Each option minus the baseline on the board measures: paired mean difference and its 95% CI."""
    diffs = cmp.differences(cmp.kpis())
    rows = [{"Option": r["option"], "Measure": r["label"], "Unit": r["unit"],
             "Baseline": fmt(r["baseline_mean"], r["unit"]), "Option value": fmt(r["option_mean"], r["unit"]),
             "Difference": fmt(r["diff_mean"], r["unit"]), "95% CI": fmt_ci(r["ci_low"], r["ci_high"], r["unit"]),
             "Distinguishable from zero": "yes" if r["distinguishable"] else "no"}
            for _, r in diffs.iterrows()]
    return pd.DataFrame(rows)


def economics_frame(cmp: Comparison) -> pd.DataFrame:
    """The value-for-money table in the rule's order, with its verdict words."""
    econ = cmp.economics()
    rows = []
    for _, r in econ.iterrows():
        row = {"Option": r["option"], "Net cost": money(r["net_cost"]),
               "Net cost 95% CI": fmt_ci(r["net_cost_ci_low"], r["net_cost_ci_high"], "GBP"),
               "Cost": r["cost_verdict"], "Delayed bed-days avoided": fmt(r["delayed_days_avoided"]),
               "Avoided 95% CI": fmt_ci(r["delayed_days_avoided_ci_low"], r["delayed_days_avoided_ci_high"]),
               "Delays": r["delay_verdict"], "Frontier": r["frontier"]}
        if r["value_per_delayed_bed_day"] == r["value_per_delayed_bed_day"]:  # not NaN: net benefit applies
            row.update({"Net benefit": money(r["net_benefit"]),
                        "Net benefit 95% CI": fmt_ci(r["net_benefit_ci_low"], r["net_benefit_ci_high"], "GBP")})
        rows.append(row)
    return pd.DataFrame(rows)


def decision_text(cmp: Comparison) -> list[str]:
    """The decision rule's answer, sentence by sentence, as the terminal prints it."""
    return [line.strip() for line in decision_lines(cmp.decision(), cmp.names[0]) if line.strip()]


def standards_frame(cmp: Comparison) -> pd.DataFrame:
    """Each scenario against the national standards (met / missed / uncertain by the 95% interval)."""
    t = cmp.targets()
    return pd.DataFrame([{"Scenario": r["scenario"], "Standard": f"{r['standard']} ({r['sense']} {r['target']:g})",
                          "Average": fmt(r["mean"]), "95% CI": fmt_ci(r["ci_low"], r["ci_high"]),
                          "Verdict": r["verdict"]} for _, r in t.iterrows()])
