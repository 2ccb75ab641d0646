"""The calibration report's view-model: fitted values with their approximate 95% sets, and the fit judged on
targets it was fitted to and, separately, on targets it never saw."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from flowsim.report.common import assumptions, cost_table, created, footer, how_to_read, repro
from flowsim.report.format import fmt, fmt_ci, num
from flowsim.report.sources import CalibrationSource, read_yaml
from flowsim.report.stress import StressFacts, stress_table
from flowsim.report.view import Cell, Column, Masthead, Page, Rich, Row, Table, b, bullets, data, todo


def _labels(src: CalibrationSource) -> dict[str, dict[str, Any]]:
    """Each free parameter's settings (label, searched range) from the calibration file, if it can be read."""
    config = src.meta.get("config")
    cfg = read_yaml(Path(str(config))) if config else {}
    return {str(p.get("path")): p for p in (cfg.get("free") or []) if isinstance(p, dict)}


def _value(v: Any) -> str:
    x = num(v)
    return str(v) if math.isnan(x) else (f"{x:,.0f}" if x == int(x) else f"{x:.4g}")


def parameters(src: CalibrationSource) -> Table:
    """Fitted value, approximate 95% set and the range searched, per free parameter."""
    free = _labels(src)
    intervals = src.meta.get("intervals_95") or {}
    rows = []
    for path, value in (src.meta.get("fitted") or {}).items():
        p = free.get(path, {})
        lo, hi = (intervals.get(path) or [math.nan, math.nan])[:2]
        rows.append(Row((Cell(value=str(p.get("label") or path), note=path), Cell(value=_value(value), numeric=True,
                                                                                   strong=True),
                         Cell(value=f"{_value(lo)} to {_value(hi)}", numeric=True),
                         Cell(value=f"{_value(p.get('low'))} to {_value(p.get('high'))}" if p else "", numeric=True)),
                        data=data(parameter=path)))
    return Table([Column("Parameter"), Column("Fitted", numeric=True), Column("Approximate 95% set", numeric=True),
                   Column("Searched", numeric=True)], rows, id="parameters-table", caption="Fitted values")


def fit_table(src: CalibrationSource) -> Table:
    """Every target: observed, simulated mean with its interval (kept inside the measure's range), error."""
    rows = []
    for _, r in src.report.iterrows():
        role = str(r.get("role"))
        rows.append(Row((Cell(value=str(r.get("target")), note=str(r.get("description") or "")),
                         Cell(value="held out (never fitted)" if role == "held out" else "fitted"),
                         Cell(value=fmt(r.get("observed")), numeric=True),
                         Cell(value=fmt(r.get("simulated")), ci=fmt_ci(r.get("ci_low"), r.get("ci_high")),
                              numeric=True),
                         Cell(value=fmt_ci(r.get("pi90_low"), r.get("pi90_high")), numeric=True),
                         Cell(value=_pct(r.get("error_pct")), numeric=True),
                         Cell(value=_pct(r.get("fitting_error_pct")), numeric=True),
                         Cell(value=_pct(r.get("naive_persistence_error_pct")), numeric=True),
                         Cell(value=_pct(r.get("naive_mean_error_pct")), numeric=True),
                         Cell(value=str(r.get("source") or ""))), data=data(target=r.get("target"), role=role)))
    return Table([Column("Target"), Column("Role"), Column("Observed", numeric=True),
                  Column("Simulated", "mean, 95% CI, fresh replications", True),
                  Column("90% prediction interval", "fresh replications", True),
                  Column("Error", "fresh replications", True), Column("Error in sample", "fitting replications", True),
                  Column("Persistence error", "naive", True), Column("Fitted-mean error", "naive", True),
                  Column("Source")], rows,
                 id="headline", caption="Observed and simulated, target by target")


def _pct(v: Any) -> str:
    x = num(v)
    return f"{x:+.1f}%" if math.isfinite(x) else ""


def key_messages(src: CalibrationSource) -> list[Rich]:
    """What was fitted, how well in sample, and how well on the held-out targets."""
    meta = src.meta
    free = _labels(src)
    intervals = meta.get("intervals_95") or {}
    msgs: list[Rich | str] = []
    for path, value in (meta.get("fitted") or {}).items():
        lo, hi = (intervals.get(path) or [math.nan, math.nan])[:2]
        label = str((free.get(path) or {}).get("label") or path)
        msgs.append(Rich.of(f"{label}: ", b(_value(value)), f" (approximate 95% set {_value(lo)} to {_value(hi)})."))
    msgs += _score_messages(meta)
    msgs.append("These are model estimates under the assumptions listed in this report, not forecasts.")
    return bullets(msgs)


def _score_messages(meta: dict[str, Any]) -> list[Rich | str]:
    """Errors on fresh replications (with the fitting replications' beside them), prediction-interval coverage,
    and the verdicts against the naive forecasts, as the calibration wrote them (words follow the numbers)."""
    scoring = meta.get("scoring") or {}
    msgs: list[Rich | str] = []
    if scoring:
        below = " (below the minimum of 30: a quick check, not for quoting)" if scoring.get("below_minimum") else ""
        msgs.append(Rich.of("Scored on ", b(f"{scoring.get('replications')} fresh replications"),
                            f" (seed {scoring.get('seed')}), none of which entered the fit{below}."))
    for group, s in (meta.get("scores") or {}).items():
        model = s.get("model") or {}
        ci = model.get("mean_abs_error_pct_ci95") or [math.nan, math.nan]
        cov = s.get("coverage") or {}
        msgs.append(Rich.of(f"Mean absolute error on {group} targets: ",
                            b(f"{num(model.get('mean_abs_error_pct')):.1f}%"),
                            f" [95% CI {num(ci[0]):.1f}% to {num(ci[1]):.1f}%] on fresh replications, "
                            f"{num(model.get('mean_abs_error_pct_fitting_replications')):.1f}% on the fitting ones; "
                            f"observed inside the 90% prediction interval for {(cov.get('pi90') or {}).get('inside')} "
                            f"of {(cov.get('pi90') or {}).get('of')}."))
        msgs += [str(v) for v in s.get("verdicts") or []]
    if not msgs:
        ins, oos = num(meta.get("in_sample_mean_abs_error_pct")), num(meta.get("out_of_sample_mean_abs_error_pct"))
        if math.isfinite(ins):
            msgs.append(Rich.of("Mean absolute error on the targets fitted: ", b(f"{ins:.1f}%"), "."))
        if math.isfinite(oos):
            msgs.append(Rich.of("On the held-out targets, which never entered the fit: ", b(f"{oos:.1f}%"), "."))
    return msgs


def _stress(src: CalibrationSource) -> dict[str, Any]:
    meta = src.meta
    reps = meta.get("replications")
    facts = StressFacts(
        scenario=src.fitted, purpose=f"Fit the unobserved parameters of the scenario to observed data "
        f"({meta.get('name')}) and check the fit on data held out.",
        outputs="The targets in the fit report, simulated with 95% confidence intervals; fitted values with "
                "approximate 95% likelihood-ratio sets.",
        experiment=Rich.of(f"Differential evolution over {meta.get('evaluations')} candidates on common random "
                           "numbers. ", todo("why these parameters were freed and these targets chosen.")),
        scenario_logic=Rich.of("The fitted scenario extends the calibrated one with the fitted values."),
        replications=f"{reps} replications per candidate; the fitted model scored on "
                     f"{(meta.get('scoring') or {}).get('replications', '?')} fresh replications.",
        estimation=f"Objective: sum of squared z-scores; uncertainty: {meta.get('uncertainty_method')}.",
        seed=f"{meta.get('seed')} (fitting); {(meta.get('scoring') or {}).get('seed', '?')} (scoring)",
        versions={str(k): str(v) for k, v in (meta.get("versions") or {}).items()},
        scenario_ids=str(meta.get("fitted_scenario_id")),
        execution=f"About {num(meta.get('seconds')):.0f} s in all; candidates evaluated a population at a time.")
    table, done, total = stress_table(facts)
    return {"table": table, "done": done, "total": total}


def build(src: CalibrationSource) -> Page:
    """The calibration report's page."""
    meta = src.meta
    name = str(meta.get("name") or (src.directory or Path("calibration")).name)
    reps = int(num(meta.get("replications"))) if math.isfinite(num(meta.get("replications"))) else 0
    vers = meta.get("versions") or {}
    page = Page("calibration", f"Calibration: {name}", Masthead(
        "Paper for the A&E Delivery Board · calibration of the simulation", f"Calibration: {name}",
        "Unobserved parameters fitted to observed data, and the fit checked on data the fit never saw.",
        [("Candidates", str(meta.get("evaluations"))), ("Replications each", str(reps)),
         ("Seed", str(meta.get("seed"))), ("Fitted scenario id", str(meta.get("fitted_scenario_id")))],
        f"Results produced {created(meta.get('created'))} by flowsim {vers.get('flowsim', '?')}"),
        footer=footer(src.directory))
    page.add("summary", "Summary", messages=key_messages(src), headline=fit_table(src), how=how_to_read(
        reps, standards=False), method=str(meta.get("uncertainty_method") or ""))
    page.add("parameters", "Fitted values", table=parameters(src))
    page.add("charts", "Charts", figures=[
        page.figure(src.figures.get("fit.png"), "Observed and simulated for each target",
                    "Each target: the simulated mean and its 95% interval as a percentage of the observed value; "
                    "held-out targets in orange.", missing="The fit chart is not available."),
        page.figure(src.figures.get("profile.png"), "Objective by parameter over every candidate",
                    "The objective of every candidate evaluated against each parameter; below the red line is the "
                    "approximate 95% set.", missing="The profile chart is not available.")])
    note, costs = cost_table([("Fitted scenario", src.fitted)])
    page.add("assumptions", "Assumptions", note=src.fitted_note, assumptions=assumptions(src.fitted),
             cost_note=note, costs=costs)
    page.add("stress-des", "Reporting checklist (STRESS-DES)", **_stress(src))
    page.add("reproducibility", "Reproducibility", repro=repro(vers, [
        ("Calibration", name, False), ("Configuration", str(meta.get("config")), True),
        ("Seed", f"{meta.get('seed')} (shared by every candidate: common random numbers)", False),
        ("Optimiser", f"{meta.get('optimiser')} (population {meta.get('popsize')}, {meta.get('maxiter')} "
                      "generations)", False),
        ("Fitted scenario id (hash)", str(meta.get("fitted_scenario_id")), True),
        ("Results created", created(meta.get("created")), False)], meta.get("command"), src.directory))
    return page.number()
