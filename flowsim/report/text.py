"""Plain-text tables for the terminal: the same labels, units, rounding and verdict words as the HTML reports.

Labels are never cut: the label column is as wide as its longest label.  Money is rounded for a board (£k, £m).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from flowsim.report.format import fmt, fmt_ci, kpi_label
from flowsim.results.kpi import Modelled, kpi_applies, kpi_info
from flowsim.results.kpi import headline as registry_headline
from flowsim.scenario.schema import Scenario


def headline(sc: Scenario) -> list[str]:
    """The KPIs worth a line in the terminal for this scenario: the registry's headline lists for what it models
    (``flowsim.results.kpi.headline``), without the measures its mode does not model (``kpi_applies``)."""
    modelled = Modelled.of(sc)
    return [n for n in registry_headline(sc) if kpi_applies(n, modelled)]


def kpi_table_text(table: pd.DataFrame, names: Sequence[str], scenario: Mapping[str, Any] | None = None) -> str:
    """KPI, mean, 95% CI and unit, one line each, for the KPIs in ``names`` that ``table`` (a summary) has."""
    rows = []
    for name in names:
        if name not in table.index:
            continue
        row = table.loc[name]
        unit = kpi_info(name).unit
        ci = fmt_ci(row["ci_low"], row["ci_high"], unit)
        rows.append((kpi_label(name, scenario), fmt(row["mean"], unit), f"[{ci}]" if ci else "", unit))
    width = max([len("KPI"), *(len(r[0]) for r in rows)])
    ci_width = max([len("95% CI"), *(len(r[2]) for r in rows)])
    lines = [f"{'KPI':<{width}} {'mean':>10}  {'95% CI':<{ci_width}}  unit", "-" * (width + ci_width + 26)]
    lines += [f"{label:<{width}} {mean:>10}  {ci:<{ci_width}}  {unit}" for label, mean, ci, unit in rows]
    return "\n".join(lines)


def periods_text(periods: pd.DataFrame, kind: str = "NHS quarter") -> str:
    """Delayed days per period with their CI, and both BCF measures: delayed days per 100,000 aged 18+ in the
    period (the 2016/17 metric) and delayed patients a day per 100,000 aged 18+ (the 2017 target's unit)."""
    nctr = "nctr_per_day" in periods.columns
    lines = [f"DTOC delayed days by {kind} (midnight census, acute + reporting community beds)"
             + ("; patients not meeting the criteria to reside (NCTR) a day:" if nctr else ":"),
             f"  {'period':<18} {'days':>4} {'delayed days':>13}  {'95% CI':<17} {'per 100k 18+':>13} "
             f"{'a day per 100k 18+ (BCF target unit)':>37}" + (f" {'NCTR a day':>11}" if nctr else "")]
    for _, q in periods.iterrows():
        ci = fmt_ci(q["ci_low"], q["ci_high"])
        per_day = q.get("delayed_per_day_per_100k", math.nan)
        lines.append(f"  {q['period']!s:<18} {int(q['days']):>4} {fmt(q['delayed_days']):>13}  "
                     f"{'[' + ci + ']' if ci else '':<17} {fmt(q['rate_per_100k']):>13} {fmt(per_day):>37}"
                     + (f" {fmt(q['nctr_per_day']):>11}" if nctr else ""))
    return "\n".join(lines)
