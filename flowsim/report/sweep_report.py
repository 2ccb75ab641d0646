"""The sweep report's view-model: results at each point, the target finder, sensitivity and the figures."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowsim.report.common import assumptions, cost_table, footer, how_to_read, outputs_text, repro
from flowsim.report.format import fmt, fmt_ci, num
from flowsim.report.sources import SweepSource
from flowsim.report.stress import StressFacts, stress_table
from flowsim.report.sweep_figures import slug
from flowsim.report.view import Cell, Column, Masthead, Page, Rich, Row, Table, b, bullets, columns, data, todo
from flowsim.results.kpi import kpi_info

SWEEP_HEADLINE_POINTS = 30
SWEEP_FIGURES = (
    ("response_", "Response of each measure to {what}, with 95% confidence intervals."),
    ("heatmap", "Heat map of the first measure over the two swept settings."),
    ("lhs_scatter", "Each sampled point of the Latin hypercube and the measures there."),
    ("target", "Target finder: the measure at each value tried, with its confidence bound and the target."),
    ("sensitivity", "Global sensitivity: which settings move the measures most."),
    ("warmup", "Warm-up chosen by MSER-5 on a pilot run."),
)


def short(value: Any) -> str:
    """A parameter value as written: whole numbers without decimals, others to four significant figures."""
    x = num(value)
    if math.isnan(x):
        return str(value)
    return f"{x:,.0f}" if x == int(x) and abs(x) < 1e15 else f"{x:.4g}"


def _labels(src: SweepSource) -> dict[str, str]:
    params = [p for p in (src.spec.get("parameters") or []) if isinstance(p, dict) and p.get("path")]
    labels = {str(p["path"]): str(p.get("label") or p["path"]) for p in params}
    if src.summary is not None and not params:
        fixed = {"point_id", "kpi", "mean", "ci_low", "ci_high", "sd", "n", "point"}
        labels = {c: c for c in src.summary.columns if c not in fixed}
    return labels


def _kpis(src: SweepSource) -> list[str]:
    if src.summary is None or src.summary.empty:
        return []
    return list(dict.fromkeys(src.summary["kpi"].astype(str)))


def rule(target: Mapping[str, Any]) -> str:
    """'delayed patients per day at most 3.0' from the target's rule and KPI."""
    kpi = str(target.get("kpi") or "")
    text = str(target.get("rule") or "")
    return text.replace(kpi, kpi_info(kpi).label.lower(), 1) if kpi else text


def target_sentence(target: Mapping[str, Any], labels: Mapping[str, str]) -> Rich:
    """The target finder's answer (or that no value searched meets the rule), with its confidence."""
    param = str(target.get("parameter"))
    who = labels.get(param, param)
    conf = num(target.get("confidence"))
    conf_text = f"{conf:.0%}" if math.isfinite(conf) else "95%"
    if target.get("answer") is None:
        searched = " to ".join(short(x) for x in (target.get("searched") or []))
        return Rich.of(f"Target finder: no value of {who} in {searched} meets {rule(target)} with {conf_text} "
                       "confidence.")
    k = target.get("answer_kpi") or {}
    pe = target.get("point_estimate")
    return Rich.of(f"Target finder: the smallest {who} that meets {rule(target)} with {conf_text} confidence is ",
                   b(short(target.get("answer"))), f" (average {fmt(k.get('mean'))}, "
                   f"{fmt_ci(k.get('ci_low'), k.get('ci_high'))})"
                   + (f"; on the average alone it is met from {short(pe)}" if pe is not None else "") + ".")


def key_messages(src: SweepSource, labels: Mapping[str, str]) -> list[Rich]:
    """Status, the target finder's answer and the best point on the first measure (with its interval)."""
    msgs: list[Rich | str] = []
    if str(src.meta.get("status", "complete")) != "complete":
        msgs.append(Rich.of(todo(f"this sweep had not finished (status: {src.meta.get('status')}); results are "
                                 "partial.")))
    if src.target:
        msgs.append(target_sentence(src.target, labels))
    kpis = _kpis(src)
    if kpis and src.summary is not None:
        sub = src.summary[src.summary["kpi"] == kpis[0]]
        info = kpi_info(kpis[0])
        best = sub.sort_values("mean", ascending=info.higher_is_worse).iloc[0]
        where = ", ".join(f"{labels.get(p, p)} {short(best[p])}" for p in labels if p in src.summary.columns)
        msgs.append(Rich.of(f"Best {info.label.lower()} among the {len(sub)} points: ", b(fmt(best["mean"])),
                            f" ({fmt_ci(best['ci_low'], best['ci_high'])}) at {where}."))
    msgs.append("These are model estimates under the assumptions listed in this report, not forecasts.")
    return bullets(msgs)


def points(src: SweepSource, labels: Mapping[str, str]) -> tuple[Table, Table, int]:
    """The headline table (at most 30 points, best first when there are more), the full table, and the count."""
    kpis = _kpis(src)
    if not kpis or src.summary is None:
        return Table([], []), Table([], []), 0
    summary = src.summary
    pcols = [p for p in labels if p in summary.columns]
    ids = list(dict.fromkeys(summary["point_id"].astype(str))) if "point_id" in summary.columns else []
    order = ids
    if len(ids) > SWEEP_HEADLINE_POINTS:
        first = summary[summary["kpi"] == kpis[0]].sort_values("mean", ascending=kpi_info(kpis[0]).higher_is_worse)
        order = list(first["point_id"].astype(str))
    rows = []
    for pid in order:
        sub = summary[summary["point_id"].astype(str) == pid]
        cells = [Cell(value=short(sub.iloc[0][p]), numeric=True) for p in pcols]
        for k in kpis:
            rk = sub[sub["kpi"] == k]
            cells.append(Cell() if rk.empty else Cell(
                value=fmt(rk.iloc[0]["mean"]), ci=fmt_ci(rk.iloc[0]["ci_low"], rk.iloc[0]["ci_high"]), numeric=True,
                data=data(kpi=k)))
        rows.append(Row(tuple(cells), data=data(point=pid)))
    heads = [Column(labels[p], numeric=True) for p in pcols] + [
        Column(kpi_info(k).label, kpi_info(k).unit, True) for k in kpis]
    return (Table(heads, rows[:SWEEP_HEADLINE_POINTS], id="headline", caption="Headline results"),
            Table(heads, rows, id="all-points"), len(ids))


def target_table(src: SweepSource) -> Table:
    """Every value the target finder tried: the average, its interval and the one-sided bound."""
    rows = []
    if src.evaluations is not None:
        for _, r in src.evaluations.sort_values("value").iterrows():
            rows.append(Row((Cell(value=short(r.get("value")), numeric=True),
                             Cell(value=fmt(r.get("mean")), ci=fmt_ci(r.get("ci_low"), r.get("ci_high")), numeric=True),
                             Cell(value=fmt(r.get("bound")), numeric=True),
                             Cell(value=short(r.get("n")), numeric=True))))
    return Table(columns("Value tried", "Average", "Confidence bound", "Replications", numeric_from=0), rows,
                 id="target-table")


def charts(src: SweepSource, page: Page, labels: Mapping[str, str]) -> list[Any]:
    """The sweep's figures in a fixed order, each with a caption naming what it shows."""
    pngs = dict(src.figures)
    out = []
    for prefix, caption in SWEEP_FIGURES:
        for name in [f for f in list(pngs) if f.startswith(prefix)]:
            what = "the swept setting"
            if prefix == "response_":
                stem = name.removeprefix("response_").removesuffix(".png")
                what = next((labels[p] for p in labels if slug(p) == stem), stem.replace("_", " "))
            out.append(page.figure(pngs.pop(name), f"Chart {name}", caption.format(what=what)))
    out += [page.figure(png, f"Chart {name}", name.removesuffix(".png").replace("_", " ") + ".")
            for name, png in sorted(pngs.items())]
    return out


def sensitivity(src: SweepSource) -> Table:
    """The sensitivity indices as computed (one row per parameter and measure)."""
    sens = src.sensitivity
    if sens is None or sens.empty:
        return Table([], [])
    cols = [c for c in sens.columns if c != "kpi"]
    rows = [Row(tuple(Cell(value=fmt(r[c]), numeric=True) if isinstance(r[c], float | int) and not isinstance(
        r[c], bool) else Cell(value=str(r[c])) for c in cols) + (Cell(value=str(r.get("kpi", ""))),))
        for _, r in sens.iterrows()]
    return Table([Column(c, numeric=i > 0) for i, c in enumerate(cols)] + [Column("Measure")], rows,
                 id="sensitivity-table")


def _stress(src: SweepSource, labels: Mapping[str, str], n_reps: int) -> dict[str, Any]:
    meta, spec = src.meta, src.spec
    params = [p for p in (spec.get("parameters") or []) if isinstance(p, dict) and p.get("path")]
    swept = "; ".join(f"{labels.get(str(p['path']), p['path'])}: "
                      + (", ".join(short(v) for v in p["values"]) if p.get("values") else
                         f"{short(p.get('low'))} to {short(p.get('high'))}") for p in params)
    fixed = spec.get("set") or {}
    target = src.target
    logic = (f"{spec.get('design', 'grid')} design over {len(params)} setting(s): {swept or 'none'}. "
             + (f"Fixed changes to the base: {', '.join(f'{k} = {v}' for k, v in fixed.items())}. " if fixed else "")
             + (f"Target finder: {target.get('rule')}. " if target else "")
             + (f"Sensitivity: {(spec.get('sensitivity') or {}).get('method')}." if spec.get("sensitivity") else ""))
    reps = meta.get("replications") or {}
    warm = meta.get("warmup") or {}
    facts = StressFacts(
        scenario=src.base, purpose=f"Explore how {', '.join(labels.values()) or 'settings'} change delayed "
        f"transfers of care and hospital flow ({meta.get('name')}).",
        outputs=outputs_text(_kpis(src)) if _kpis(src) else "As listed in the results.",
        experiment=Rich.of(logic + " ", todo("why these settings and ranges.")), scenario_logic=Rich.of(logic),
        replications=(f"{n_reps} replications per point, chosen by the confidence-interval method of Hoad et al. "
                      "(2010)." if isinstance(reps, dict) and reps.get("method") == "auto" else
                      f"{n_reps} replications per point."),
        estimation="Means with 95% confidence intervals over replications (kept inside each measure's range); the "
                   "target finder uses a one-sided t bound.", seed=str(meta.get("seed")),
        versions={str(k): str(v) for k, v in (meta.get("versions") or {}).items()},
        scenario_ids=f"base {meta.get('base_scenario_id')} ({len(meta.get('points') or {})} points, each with its "
                     "own id in sweep.json)",
        execution=f"Executor {meta.get('executor', '?')} with {meta.get('workers', '?')} worker(s); one task per "
                  "point and replication, stored as it finishes so an interrupted sweep resumes.",
        warmup_method=f"{warm.get('method')}" if warm.get("method") else "",
        extra_inputs=[f"{k} = {v} (sweep set:)" for k, v in fixed.items()])
    table, done, total = stress_table(facts)
    return {"table": table, "done": done, "total": total}


def build(src: SweepSource) -> Page:
    """The sweep report's page."""
    meta, spec = src.meta, src.spec
    name = str(meta.get("name") or spec.get("name") or (src.directory or Path("sweep")).name)
    reps = meta.get("replications") or {}
    n_reps = int(num(reps.get("n"))) if isinstance(reps, dict) and math.isfinite(num(reps.get("n"))) else 0
    labels = _labels(src)
    head, full, n_points = points(src, labels)
    vers = meta.get("versions") or {}
    page = Page("sweep", f"Parameter sweep: {name}", Masthead(
        "Paper for the A&E Delivery Board · parameter sweep by simulation", f"Parameter sweep: {name}",
        str(spec.get("description") or "").strip() or "How the results change with the settings.",
        [("Points", str(n_points or len(meta.get("points") or {}))), ("Replications per point", str(n_reps)),
         ("Seed", str(meta.get("seed"))), ("Base scenario id", str(meta.get("base_scenario_id")))],
        f"flowsim {vers.get('flowsim', '?')} · status {meta.get('status', '?')}"), footer=footer(src.directory))
    page.add("summary", "Summary", messages=key_messages(src, labels), how=how_to_read(n_reps, standards=False))
    page.add("points", "Results at each point", table=head, more=n_points > SWEEP_HEADLINE_POINTS, n=n_points,
             first=kpi_info(_kpis(src)[0]).label.lower() if _kpis(src) else "", empty=not head.rows)
    if src.target:
        conf = num(src.target.get("confidence"))
        page.add("target", "Target finder", sentence=target_sentence(src.target, labels), rule=rule(src.target),
                 confidence=f"{conf:.0%}" if math.isfinite(conf) else "95%",
                 searched=" to ".join(short(x) for x in (src.target.get("searched") or [])), table=target_table(src))
    page.add("charts", "Charts", figures=charts(src, page, labels), empty=not src.figures)
    page.add("sensitivity", "Sensitivity", table=sensitivity(src),
             method=str((spec.get("sensitivity") or {}).get("method") or ""))
    note, costs = cost_table([("Base scenario", src.base)])
    page.add("assumptions", "Assumptions", note=src.base_note, assumptions=assumptions(src.base), cost_note=note,
             costs=costs)
    page.add("stress-des", "Reporting checklist (STRESS-DES)", **_stress(src, labels, n_reps))
    warm = meta.get("warmup") or {}
    page.add("reproducibility", "Reproducibility", repro=repro(vers, [
        ("Sweep", name, False), ("Sweep file", str(meta.get("spec")), True), ("Base scenario", str(meta.get("base")),
                                                                              True),
        ("Base scenario id (hash)", str(meta.get("base_scenario_id")), True),
        ("Seed", f"{meta.get('seed')} (shared by every point: common random numbers)", False),
        ("Replications", str(n_reps), False),
        ("Warm-up", f"{warm.get('warmup_days', '?')} days ({warm.get('method')})", False),
        ("Spec fingerprint", str(meta.get("spec_fingerprint")), True)], meta.get("command"), src.directory))
    if len(full.rows) > len(head.rows):
        page.add("all-points", "Every point", appendix=True, table=full)
    return page.number()
