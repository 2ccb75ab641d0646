"""The comparison report's view-model: options against a baseline, value for money by the decision rule.

Every option has one display name (the comparison's ``names``), used in every sentence, table, chart and CSV.
The value-for-money words come from :func:`flowsim.appraisal.decide` (through ``economics.csv`` or the
comparison in memory), so the report cannot call an option a saving while its net-cost interval spans zero.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from flowsim.appraisal import DECISION_RULE, Decision, OptionAppraisal
from flowsim.report.appraisal_figures import forest_plot, trajectory_plot
from flowsim.report.appraisal_text import best_sentence, cost_sentence, delay_sentence, frontier_sentence
from flowsim.report.common import (
    assumptions,
    cost_table,
    created,
    dtoc_target_per_day,
    execution_text,
    footer,
    how_to_read,
    outputs_text,
    repro,
    targets,
)
from flowsim.report.figures import dtoc_target_figure, png_bytes
from flowsim.report.format import fmt, fmt_ci, kpi_label, money, num, sentence
from flowsim.report.sources import ComparisonSource, RunSource
from flowsim.report.stress import StressFacts, stress_table
from flowsim.report.view import (
    Cell,
    Column,
    FigureView,
    Masthead,
    Page,
    Rich,
    Row,
    Span,
    Table,
    b,
    bullets,
    columns,
    data,
    todo,
)
from flowsim.results.kpi import Modelled, kpi_applies, kpi_info
from flowsim.scenario.provenance import describe_overrides, render_assumptions, title

COMPARISON_HEADLINE = ["delayed_patients_per_day", "delayed_per_100k", "dtoc_delayed_days_per_quarter",
                       "delayed_bed_days", "occupancy_mean_pct", "days_over_92_pct", "ed_4h_breach_pct",
                       "ed_12h_breaches", "total_cost"]
SKIP_DIFF = ("name", "description", "assumptions", "costs.notes", "overrides")


# --------------------------------------------------------------------------------------------- the facts


def _col(row: Mapping[str, Any], name: str) -> Any:
    return row.get(name, math.nan)


def _triple(row: Mapping[str, Any], mean: str, low: str, high: str) -> tuple[float, float, float]:
    return num(_col(row, mean)), num(_col(row, low)), num(_col(row, high))


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def appraisal_of(row: Mapping[str, Any]) -> OptionAppraisal:
    """One row of ``economics.csv`` (or of ``Comparison.economics()``) as the decision rule's answer."""
    rank = num(_col(row, "rank"))
    return OptionAppraisal(
        name=str(row["option"]), net_cost=_triple(row, "net_cost", "net_cost_ci_low", "net_cost_ci_high"),
        avoided=_triple(row, "delayed_days_avoided", "delayed_days_avoided_ci_low", "delayed_days_avoided_ci_high"),
        cost_verdict=_text(_col(row, "cost_verdict")), delay_verdict=_text(_col(row, "delay_verdict")),
        dominated_by=_text(_col(row, "dominated_by")), frontier=_text(_col(row, "frontier")),
        frontier_note=_text(_col(row, "frontier_note")), compared_with=_text(_col(row, "compared_with")),
        icer=_triple(row, "incremental_cost_per_delayed_day_avoided", "incremental_ci_low", "incremental_ci_high"),
        nmb=_triple(row, "net_benefit", "net_benefit_ci_low", "net_benefit_ci_high"),
        prob_best=num(_col(row, "prob_best")), rank=int(rank) if math.isfinite(rank) else None)


def decision_of(src: ComparisonSource) -> Decision | None:
    """The decision rule's answer as recorded (``economics.csv`` and ``comparison.json``); None if absent."""
    if src.econ is None or src.econ.empty or "cost_verdict" not in src.econ.columns:
        return None
    d = src.meta.get("decision") or {}
    value = num(d.get("value_per_delayed_bed_day"))
    return Decision([appraisal_of(r.to_dict()) for _, r in src.econ.iterrows()],
                    value if math.isfinite(value) else None, num(d.get("baseline_prob_best")),
                    str(d.get("best") or ""), bool(d.get("best_clear")), list(d.get("close") or []))


def _scenario(src: ComparisonSource, name: str) -> dict[str, Any]:
    run = src.runs.get(name)
    return run.scenario if run is not None else {}


def board_kpis(src: ComparisonSource) -> list[str]:
    """The board KPIs the comparison reports and its baseline models, in board order."""
    present = set(src.side["kpi"])
    modelled = Modelled.of(_scenario(src, src.names[0]))
    board = [k for k in (src.meta.get("board_kpis") or []) if k in present] or list(src.side["kpi"])
    return [k for k in board if kpi_applies(k, modelled)]


# --------------------------------------------------------------------------------------------- summary


def key_messages(src: ComparisonSource, decision: Decision | None) -> list[Rich]:
    """The decision's headline, each option's value for money in the rule's words, delays, standards."""
    msgs: list[Rich | str] = []
    if decision is not None:
        msgs.append(Rich.of(b(best_sentence(decision, src.names[0]))))
        for o in decision.options:
            msgs.append(Rich.of(b(o.name), f": {cost_sentence(o)}; {delay_sentence(o)}; {frontier_sentence(o)}."))
    kd = "delayed_patients_per_day"
    for n in src.names[1:]:
        sub = src.diffs[(src.diffs["option"].astype(str) == n) & (src.diffs["kpi"] == kd)]
        if sub.empty:
            continue
        r = sub.iloc[0].to_dict()
        change = num(r.get("diff_mean"))
        dist = str(r.get("distinguishable")).strip().lower() in ("true", "1", "1.0")
        if fmt(abs(change)) == fmt(0.0):
            msgs.append(Rich.of(f"{n}: ", b("no change"), " in delayed patients a day."))
            continue
        msgs.append(Rich.of(f"{n}: ", b(f"{fmt(abs(change))} {'fewer' if change < 0 else 'more'}"),
                            " delayed patients a day than the baseline "
                            f"({fmt_ci(r.get('ci_low'), r.get('ci_high'))}), "
                            + ("distinguishable from no change." if dist else
                               "not distinguishable from no change with this many replications.")))
    if src.targets is not None and not src.targets.empty:
        for std, grp in src.targets.groupby("standard", sort=False):
            bits = [f"{w} {', '.join(map(str, grp.loc[mask, 'scenario']))}" for w, mask in (
                ("met by", grp["verdict"] == "met"), ("missed by", grp["verdict"] == "missed"),
                ("too close to call for", ~grp["verdict"].isin(["met", "missed"]))) if mask.any()]
            msgs.append(f"{std}: {'; '.join(bits)}.")
    msgs.append("These are model estimates under the assumptions listed in this report, not forecasts.")
    return bullets(msgs)


def _column_groups(names: Sequence[str], size: int = 5) -> list[list[str]]:
    """Scenarios in groups of at most ``size`` table columns, each group led by the baseline."""
    names = list(names)
    if len(names) <= size:
        return [names]
    rest = names[1:]
    return [[names[0], *rest[i:i + size - 1]] for i, _ in enumerate(rest) if i % (size - 1) == 0]


def _heads(cols: Sequence[str], baseline: str) -> list[Column]:
    return [Column(n, "baseline" if n == baseline else "", True) for n in cols]


def side_tables(src: ComparisonSource, kpis: Sequence[str], tid: str, caption: str) -> list[Table]:
    """Each scenario's mean and interval per KPI, side by side, at most five scenarios to a table."""
    base_sc = _scenario(src, src.names[0])
    tables = []
    for i, cols in enumerate(_column_groups(src.names)):
        rows = []
        for k in kpis:
            sub = src.side[src.side["kpi"] == k]
            if sub.empty:
                continue
            r = sub.iloc[0].to_dict()
            unit = str(r["unit"]) if isinstance(r.get("unit"), str) else ""
            cells = [Cell(value=kpi_label(k, base_sc)), Cell(value=unit, klass="unit")]
            cells += [Cell(value=fmt(_col(r, f"{n}:mean"), unit),
                           ci=fmt_ci(_col(r, f"{n}:ci_low"), _col(r, f"{n}:ci_high"), unit), numeric=True,
                           data=data(scenario=n)) for n in cols]
            rows.append(Row(tuple(cells), data=data(kpi=k)))
        tables.append(Table([Column("Measure"), Column("Unit"), *_heads(cols, src.names[0])], rows,
                            id=tid if i == 0 else f"{tid}-{i + 1}", caption=caption))
    return tables


def options_table(src: ComparisonSource) -> Table:
    """Who is compared: each scenario's name, file, changes made for the run and one-off investment."""
    rows = []
    for n, e in zip(src.names, src.entries, strict=True):
        sc = _scenario(src, n)
        inv = num((sc.get("costs") or {}).get("investment_one_off", 0.0))
        changes = list(e.get("overrides") or describe_overrides(sc))
        rows.append(Row((Cell(value=n, strong=True, note="baseline" if n == src.names[0] else "option"),
                         Cell(value=str(e.get("file") or ""), code=True),
                         Cell(value="; ".join(changes) or "none"),
                         Cell(value=money(inv) if inv else "none", numeric=True)), data=data(scenario=n)))
    return Table([Column("Scenario"), Column("File"), Column("Changed for this run"),
                  Column("One-off investment", numeric=True)], rows, id="options",
                 caption="The baseline and the options")


# --------------------------------------------------------------------------------------------- value for money


def _verdict(word: str) -> Span:
    return Span(word, "b") if word else Span("")


def _economics_row(o: OptionAppraisal, row: Mapping[str, Any], value: float | None) -> Row:
    released = _triple(row, "bed_days_released", "bed_days_released_ci_low", "bed_days_released_ci_high")
    cells = [Cell(value=o.name, strong=True),
             Cell(value=money(o.net_cost[0]), ci=fmt_ci(o.net_cost[1], o.net_cost[2], "GBP"), numeric=True,
                  note=o.cost_verdict, data=data(verdict=o.cost_verdict)),
             Cell(value=fmt(o.avoided[0]), ci=fmt_ci(o.avoided[1], o.avoided[2]), numeric=True,
                  note=o.delay_verdict),
             Cell(value=fmt(released[0]), ci=fmt_ci(released[1], released[2]), numeric=True),
             Cell(rich=Rich.of(sentence(frontier_sentence(o))))]
    if value is not None:
        cells += [Cell(value=money(o.nmb[0]), ci=fmt_ci(o.nmb[1], o.nmb[2], "GBP"), numeric=True),
                  Cell(value=f"{o.prob_best:.0%}" if math.isfinite(o.prob_best) else "", numeric=True),
                  Cell(value=str(o.rank or ""), numeric=True)]
    return Row(tuple(cells), klass="dominated" if o.dominated_by else "",
               data=data(option=o.name, cost_verdict=o.cost_verdict, net_low=o.net_cost[1], net_high=o.net_cost[2],
                         frontier=o.frontier))


def economics(src: ComparisonSource, decision: Decision) -> dict[str, Any]:
    """The value-for-money section: the rule, the answer and the table (rows in the rule's order)."""
    assert src.econ is not None
    value = decision.value_per_day
    rows = [_economics_row(o, r.to_dict(), value) for o, (_, r) in zip(decision.options, src.econ.iterrows(),
                                                                        strict=True)]
    heads = [Column("Option"), Column("Net cost", "paired, one-off investment included", True),
             Column("Delayed bed-days avoided", "over the period", True),
             Column("Acute bed-days released", "", True), Column("Efficiency frontier")]
    if value is not None:
        heads += [Column("Net benefit", f"at {money(value)} a delayed bed-day", True),
                  Column("Probability best", "share of replications", True), Column("Rank", "", True)]
    return {"rule": DECISION_RULE, "answer": best_sentence(decision, src.names[0]),
            "table": Table(heads, rows, id="economics-table", caption="Value for money, by the decision rule")}


# ------------------------------------------------------------------------------------ standards and differences


def standards_tables(src: ComparisonSource) -> list[Table]:
    """Each scenario against each standard it models: its interval and Met, Missed or Too close to call."""
    if src.targets is None or src.targets.empty:
        return []
    tables = []
    for i, cols in enumerate(_column_groups(src.names)):
        rows = []
        for std, grp in src.targets.groupby("standard", sort=False):
            g0 = grp.iloc[0]
            cells = [Cell(value=str(std)), Cell(value=f"{g0.get('sense')} {num(g0.get('target')):g}")]
            for n in cols:
                sub = grp[grp["scenario"].astype(str) == n]
                r = sub.iloc[0] if not sub.empty else None
                cells.append(Cell() if r is None else Cell(
                    value=fmt(r.get("mean")), ci=fmt_ci(r.get("ci_low"), r.get("ci_high")), numeric=True,
                    badge=str(r.get("verdict")), data=data(scenario=n)))
            rows.append(Row(tuple(cells), data=data(kpi=g0.get("kpi"))))
        tables.append(Table([Column("Standard"), Column("Target"), *_heads(cols, src.names[0])], rows,
                            id="standards-table" if i == 0 else f"standards-table-{i + 1}"))
    return tables


def _flag(value: Any) -> bool | None:
    text = str(value).strip().lower()
    return {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}.get(text)


def differences(src: ComparisonSource, board: Sequence[str]) -> list[dict[str, Any]]:
    """Per option, every board KPI: baseline, option, paired difference with its interval, and the effect."""
    base_sc = _scenario(src, src.names[0])
    out = []
    for n, e in zip(src.names[1:], src.entries[1:], strict=True):
        sub = src.diffs[src.diffs["option"].astype(str) == n]
        rows = []
        for k in board:
            rk = sub[sub["kpi"] == k]
            if rk.empty:
                continue
            r = rk.iloc[0].to_dict()
            unit = str(r.get("unit")) if isinstance(r.get("unit"), str) else ""
            dist, better = _flag(r.get("distinguishable")), _flag(r.get("better"))
            effect = ("Better" if better else "Worse") if dist and better is not None else "No clear change"
            label = kpi_label(k, base_sc) + (f" ({unit})" if unit else "")
            rows.append(Row((Cell(value=label), Cell(value=fmt(r.get("baseline_mean"), unit), numeric=True),
                             Cell(value=fmt(r.get("option_mean"), unit), numeric=True),
                             Cell(value=fmt(r.get("diff_mean"), unit), numeric=True, strong=True),
                             Cell(value=fmt_ci(r.get("ci_low"), r.get("ci_high"), unit), numeric=True, klass="ci"),
                             Cell(value="Yes" if dist else "No", klass="" if dist else "muted"),
                             Cell(value=effect, klass="effect " + {"Better": "better", "Worse": "worse"}.get(
                                 effect, "none"))), data=data(kpi=k)))
        table = Table(columns("Measure (unit)", "Baseline", "Option", "Difference", "95% CI", numeric_from=1)
                      + [Column("Distinguishable"), Column("Effect")], rows, id=f"differences-{e.get('key') or n}",
                      klass="differences", widths=(27, 12, 12, 11, 16, 11, 11))
        out.append({"name": n, "table": table})
    return out


# --------------------------------------------------------------------------------------------- charts


def _trajectories(src: ComparisonSource, base_sc: Mapping[str, Any]) -> dict[str, bytes]:
    """The comparison's trajectories drawn from each run's daily table (a comparison written --no-figures)."""
    n_reps = int(num(src.meta.get("replications"))) if math.isfinite(num(src.meta.get("replications"))) else 0
    t = targets(base_sc)
    target = dtoc_target_per_day(base_sc)
    series: dict[str, dict[str, pd.Series]] = {"delayed_midnight": {}, "occupancy_pct": {}}
    for n, run in src.runs.items():
        if run.daily is None:
            continue
        daily = run.daily.assign(date=pd.to_datetime(run.daily["date"]))
        for col in series:
            if col in daily.columns:
                series[col][n] = daily.groupby("date")[col].mean()
    out: dict[str, bytes] = {}
    if series["delayed_midnight"]:
        out["dtoc_trajectory.png"] = png_bytes(trajectory_plot(
            series["delayed_midnight"], "Delayed transfers of care", src.names[0], "delayed patients (midnight census)",
            target=target, target_label=f"BCF target {t['delayed_per_100k']:g} per 100,000 adults"
            + (f" = {target:.1f} a day" if target is not None else ""), n_reps=n_reps))
    if series["occupancy_pct"] and base_sc.get("mode") != "pathway_only":
        out["occupancy_options.png"] = png_bytes(trajectory_plot(
            series["occupancy_pct"], "G&A bed occupancy", src.names[0], "occupancy at midnight (%)",
            target=t["occupancy_pct"], target_label=f"{t['occupancy_pct']:g}% ceiling", n_reps=n_reps))
    return out


def charts(src: ComparisonSource, page: Page, board: Sequence[str]) -> list[FigureView | None]:
    """The trajectories against their targets and the forest plot of differences."""
    base_sc = _scenario(src, src.names[0])
    figs = dict(src.figures)
    full = base_sc.get("mode") != "pathway_only"
    if "dtoc_trajectory.png" not in figs or ("occupancy_options.png" not in figs and full):
        figs = {**_trajectories(src, base_sc), **figs}
    if "differences.png" not in figs and not src.diffs.empty:
        n_reps = int(num(src.meta.get("replications")) or 0)
        diffs = src.diffs[src.diffs["kpi"].isin(board)].copy()
        diffs["distinguishable"] = [bool(_flag(x)) for x in diffs["distinguishable"]]
        figs["differences.png"] = png_bytes(forest_plot(diffs, n_reps))
    target = dtoc_target_per_day(base_sc)
    out = [page.figure(figs.get("dtoc_trajectory.png"), "Delayed patients a day for each option against the Better "
                       "Care Fund target", "Delayed transfers of care each day (midnight census, 7-day rolling average "
                       "of the replication means) for the baseline and each option, against the Better Care Fund "
                       f"target{f' of {target:.1f} a day' if target is not None else ''}.",
                       missing="The DTOC trajectory chart is not available.")]
    if base_sc.get("mode") != "pathway_only":
        out.append(page.figure(figs.get("occupancy_options.png"), "G&A bed occupancy for each option against the 92% "
                               "ceiling", "G&A bed occupancy at midnight for the baseline and each option against the "
                               f"{targets(base_sc)['occupancy_pct']:g}% ceiling (7-day rolling average of the "
                               "replication means).", missing="The occupancy chart is not available."))
    out.append(page.figure(figs.get("differences.png"), "Forest plot of each option's difference from the baseline",
                           "Each option minus the baseline with its 95% confidence interval; filled markers are "
                           "distinguishable from zero.", missing="The differences chart is not available."))
    return out


# --------------------------------------------------------------------------------------------- what changes


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


def _outermost_missing(key: str, missing_from: Mapping[str, Any]) -> str:
    parts = key.split(".")
    for i in range(1, len(parts) + 1):
        if not _lookup(missing_from, ".".join(parts[:i]))[0]:
            return ".".join(parts[:i])
    return key


def scenario_changes(base: dict[str, Any], other: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(setting, baseline value, option value) for every resolved setting that differs; a block added or removed
    whole (a new service, say) is one row."""
    fb, fo = _flatten(base), _flatten(other)
    rows: dict[str, tuple[str, str, str]] = {}
    for key in list(dict.fromkeys([*fb, *fo])):
        if any(key == s or key.startswith(s + ".") for s in SKIP_DIFF):
            continue
        if key in fb and key in fo:
            if fb[key] != fo[key]:
                rows[key] = (key, _compact(fb[key]), _compact(fo[key]))
            continue
        top = _outermost_missing(key, base if key in fo else other)
        if top in rows:
            continue
        value = _lookup(other if key in fo else base, top)[1]
        rows[top] = (top, "(not set)", _compact(value)) if key in fo else (top, _compact(value), "(removed)")
    return list(rows.values())


def changes(src: ComparisonSource) -> list[dict[str, Any]]:
    """Per option, the settings of its resolved scenario that differ from the baseline's (at most 25 shown)."""
    base_sc = _scenario(src, src.names[0])
    out = []
    for n in src.names[1:]:
        sc = _scenario(src, n)
        found = scenario_changes(base_sc, sc) if base_sc and sc else []
        rows = [Row((Cell(value=k, code=True), Cell(value=bv), Cell(value=ov))) for k, bv, ov in found[:25]]
        out.append({"name": n, "table": Table(columns("Setting", "Baseline", "Option", numeric_from=99), rows),
                    "more": max(0, len(found) - 25)})
    return out


# --------------------------------------------------------------------------------------------- assumptions, checklist


def assumptions_by_option(src: ComparisonSource) -> dict[str, Any]:
    """The baseline's assumptions as run, and per option what it adds or does not make (and its own changes)."""
    base_sc = _scenario(src, src.names[0])
    base = render_assumptions(base_sc)
    options, same = [], []
    for n in src.names[1:]:
        sc = _scenario(src, n)
        own = render_assumptions(sc)
        added = [a for a in own if a not in base]
        dropped = [a for a in base if a not in own] if sc else []
        if not added and not dropped and sc:
            same.append(n)
        options.append({"name": n, "added": assumptions({**sc, "assumptions": added, "overrides": []})["items"],
                        "dropped": assumptions({**base_sc, "assumptions": dropped, "overrides": []})["items"],
                        "changes": describe_overrides(sc)})
    note, costs = cost_table([(n, _scenario(src, n)) for n in src.names])
    return {"baseline": assumptions(base_sc), "options": options, "same": same, "cost_note": note, "costs": costs}


def _stress(src: ComparisonSource, board: Sequence[str]) -> dict[str, Any]:
    base_sc = _scenario(src, src.names[0])
    n_reps = int(num(src.meta.get("replications")) or 0)
    logic = Rich.of(*[part for n in src.names[1:] for part in (
        b(n), f": {len(scenario_changes(base_sc, _scenario(src, n)) if base_sc and _scenario(src, n) else [])} "
              "setting(s) differ from the baseline (see “What each option changes”). ")])
    base_run = src.runs.get(src.names[0])
    facts = StressFacts(
        scenario=base_sc, purpose=f"Appraise {len(src.names) - 1} option(s) against the baseline “{src.names[0]}” for "
        "delayed transfers of care, bed occupancy, ED waits and cost.",
        outputs=outputs_text(board) + " Paired differences, value for money by the decision rule and verdicts "
        "against national standards.",
        experiment=Rich.of(f"Compare {len(src.names) - 1} option(s) with the baseline on the same {n_reps} "
                           "replications each, by the decision rule in the value-for-money section. ",
                           todo("why these options were chosen.")),
        scenario_logic=logic, replications=f"{n_reps} paired replications per scenario.",
        estimation=sentence(str(src.meta.get("method") or "")), seed=str(src.meta.get("seed")),
        versions={str(k): str(v) for k, v in (src.meta.get("versions") or {}).items()},
        scenario_ids=", ".join(f"{n} {e.get('scenario_id')}" for n, e in zip(src.names, src.entries, strict=True)),
        execution=execution_text(base_run.summary if base_run else {}))
    table, done, total = stress_table(facts)
    return {"table": table, "done": done, "total": total}


def _reproducibility(src: ComparisonSource) -> dict[str, Any]:
    meta = src.meta
    ids = [Row((Cell(value=n), Cell(value=str(e.get("scenario_id")), code=True),
                Cell(value=str(e.get("file") or ""), code=True))) for n, e in zip(src.names, src.entries, strict=True)]
    return {"repro": repro(meta.get("versions") or {}, [
        ("Seed", f"{meta.get('seed')} (shared by every scenario: common random numbers)", False),
        ("Replications", str(meta.get("replications")), False), ("Method", str(meta.get("method")), False),
        ("Results created", created(meta.get("created")), False)], meta.get("command"), src.directory),
        "ids": Table(columns("Name", "Scenario id (hash)", "File", numeric_from=99), ids, id="scenario-ids",
                     widths=(40, 20, 40))}


def fans(src: ComparisonSource, page: Page) -> list[dict[str, Any]]:
    """Appendix: each scenario's spread of single runs (delays against the BCF target, and occupancy)."""
    out = []
    for n in src.names:
        run = src.runs.get(n)
        if run is None:
            continue
        png = _fan_png(run)
        figs = [page.figure(png, f"Fan chart of delayed patients for {n}",
                            f"{n}: delayed patients each day across replications, against the BCF target.")]
        if run.mode != "pathway_only":
            figs.append(page.figure(run.figures.get("occupancy.png"), f"Fan chart of acute beds occupied for {n}",
                                    f"{n}: acute beds occupied at midnight across replications, with the 92% line."))
        out.append({"name": n, "figures": [f for f in figs if f is not None]})
    return out


def _fan_png(run: RunSource) -> bytes | None:
    if run.daily is None or "delayed_midnight" not in run.daily.columns or run.daily.empty:
        return None
    target = dtoc_target_per_day(run.scenario)
    return png_bytes(dtoc_target_figure(run.daily, title(run.scenario), target,
                                        f"BCF target {target:.1f} a day" if target is not None else ""))


# --------------------------------------------------------------------------------------------- the page


def _masthead(src: ComparisonSource) -> Masthead:
    meta = src.meta
    n_opts = len(src.names) - 1
    vers = meta.get("versions") or {}
    changes = sorted({c for n in src.names for c in describe_overrides(_scenario(src, n))})
    return Masthead("Paper for the A&E Delivery Board · option appraisal by simulation",
                    f"Option appraisal: {src.names[0]}",
                    f"{n_opts} option{'s' if n_opts != 1 else ''} against the baseline, each run on the same "
                    f"{meta.get('replications')} replications (common random numbers).",
                    [("Options", str(n_opts)), ("Replications", str(meta.get("replications"))),
                     ("Seed", str(meta.get("seed"))), ("Baseline id", str((meta.get("baseline") or {}).get(
                         "scenario_id")))],
                    f"Results produced {created(meta.get('created'))} by flowsim {vers.get('flowsim', '?')}", changes)


def build(src: ComparisonSource) -> Page:
    """The comparison report's page."""
    n_reps = int(num(src.meta.get("replications"))) if math.isfinite(num(src.meta.get("replications"))) else 0
    board = board_kpis(src)
    headline = [k for k in COMPARISON_HEADLINE if k in board] or board[:9]
    decision = decision_of(src)
    lower = all(kpi_info(k).higher_is_worse for k in headline)
    page = Page("comparison", f"Option appraisal: {src.names[0]}", _masthead(src), footer=footer(src.directory))
    page.add("summary", "Summary", messages=key_messages(src, decision), headline=side_tables(
        src, headline, "headline", "Options side by side" + (" (lower is better for every measure)" if lower else "")),
        options=options_table(src), how=how_to_read(n_reps, paired=True))
    if decision is not None:
        page.add("economics", "Value for money", **economics(src, decision))
    elif src.econ is not None and not src.econ.empty:  # written before the decision rule: say so, judge nothing
        page.add("economics", "Value for money", stale="This comparison was written by an older flowsim, before "
                 "the decision rule; run flowsim compare again to see value for money judged by it.")
    page.add("standards", "National standards", tables=standards_tables(src))
    page.add("differences", "Differences from the baseline", options=differences(src, board))
    page.add("charts", "Charts", figures=charts(src, page, board))
    page.add("changes", "What each option changes", options=changes(src))
    page.add("assumptions", "Assumptions", **assumptions_by_option(src))
    page.add("stress-des", "Reporting checklist (STRESS-DES)", **_stress(src, board))
    page.add("reproducibility", "Reproducibility", **_reproducibility(src))
    rest = [k for k in src.side["kpi"] if k not in headline and k in board]
    page.add("all-measures", "All board measures side by side", appendix=True,
             tables=side_tables(src, rest, "all-kpis", ""))
    page.add("fans", "Range of outcomes for each scenario", appendix=True, scenarios=fans(src, page))
    return page.number()
