"""Command-line front end: a thin layer over the Python API.

``main(argv=None) -> int`` so tests can call it directly and the console
script, ``python -m flowsim`` and subprocess tests all share one path.
User mistakes (bad files, bad values) print ``flowsim: error: ...`` lines and
return 2 with no traceback; anything else is a bug and is allowed to raise.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from flowsim import __version__
from flowsim.errors import FlowsimError

if TYPE_CHECKING:  # the CLI imports the domain when a command runs, so start-up (and a Ctrl-C in it) is cheap
    from flowsim.experiment.executors import AnyExecutor
    from flowsim.experiment.runner import RunResult
    from flowsim.scenario.schema import Scenario

log = logging.getLogger("flowsim")

HEADLINE = [
    "admissions_per_day", "acute_beds_mean", "acute_occupied_mean", "occupancy_mean_pct", "occupancy_p95_pct",
    "days_over_92_pct", "days_over_95_pct", "days_at_100_pct",
    "ed_boarding_mean", "ed_wait_mean_hours", "ed_4h_breach_pct", "ed_12h_breaches",
    "delayed_patients_per_day", "delayed_acute_per_day", "dtoc_delayed_days_per_quarter", "dtoc_rate_per_100k",
    "dtoc_pct", "delayed_bed_days",
    "delayed_per_day_assessment", "delayed_per_day_P1", "delayed_per_day_P2", "delayed_per_day_P3",
    "delayed_per_day_care_home", "delayed_per_day_nhs", "delayed_per_day_social_care", "delayed_per_day_both",
    "queue_mean_P1", "wait_mean_days_P1", "queue_mean_P2", "wait_mean_days_P2", "queue_mean_P3", "wait_mean_days_P3",
    "discharges_P0", "discharges_P1", "discharges_P2", "discharges_P3", "readmissions", "deaths",
    "long_term_care_placements",
]
ELECTIVE_KPIS = ["electives_scheduled", "electives_admitted", "electives_cancelled_no_bed",
                 "electives_cancelled_escalation"]
ESCALATION_KPIS = ["opel_days_level_1", "opel_days_level_2", "opel_days_level_3", "opel_days_level_4",
                   "escalation_actions_started", "escalation_bed_days_opened", "escalation_bed_days_used",
                   "escalation_cost"]


ACUTE_FRONT_DOOR = {"admissions_per_day", "acute_beds_mean", "acute_occupied_mean", "occupancy_mean_pct",
                    "occupancy_p95_pct", "days_over_92_pct", "days_over_95_pct", "days_at_100_pct", "ed_boarding_mean",
                    "ed_wait_mean_hours", "ed_4h_breach_pct", "ed_12h_breaches", "dtoc_pct", "discharges_P0",
                    "readmissions"}
COST_KPIS = ["cost_acute_delay", "cost_acute_occupied", "cost_acute_capacity", "cost_non_elective",
             "cost_service_care", "service_capacity_cost", "cost_fixed", "cost_investment", "total_cost"]


def headline(sc: Scenario) -> list[str]:
    """The KPIs worth a line in the terminal for this scenario."""
    from flowsim.scenario.schema import COST_FIELDS

    names = list(HEADLINE)
    if sc.mode == "pathway_only":  # no acute stay or front door: waits, services and costs instead
        names = [n for n in names if n not in ACUTE_FRONT_DOOR]
        names += [f"service_{s}_utilisation_pct" for pw in sc.pathways.values() for s in pw.services]
    if sc.electives is not None:
        names += ELECTIVE_KPIS
    if sc.escalation is not None:
        names += ESCALATION_KPIS
    services = [s for pw in sc.pathways.values() for s in pw.services.values()]
    priced = any(getattr(sc.costs, f) for f in COST_FIELDS)
    if priced or any(s.unit_cost_per_day or s.cost_per_occupied_day for s in services):
        names += COST_KPIS
    return names


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum``, with a plain-words error otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


_positive_int = int_at_least(1)
MAX_SEED = 2**63 - 1  # seeds are written to int64 columns (kpis.csv, parquet)


def _seed(text: str) -> int:
    value = int_at_least(0)(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SEED:,} (2**63 - 1), got {value:,}")
    return value


def _add_overwrite(p: argparse.ArgumentParser, what: str = "--out") -> None:
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace what an earlier flowsim command wrote in {what} (flowsim never deletes or "
                        "replaces files it did not write)")


def _replications(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


def _warmup(text: str) -> int | str:
    return "auto" if text == "auto" else int_at_least(0)(text)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (e.g. 0.05 for 5%), got {value}")
    return value


def _add_executor_args(p: argparse.ArgumentParser) -> None:
    """Where replications run: the same flags for run, sweep and every command built on them."""
    from flowsim.experiment.executors import EXECUTORS, SCHEDULER_ENV

    g = p.add_argument_group("execution")
    g.add_argument("--workers", type=_positive_int, default=None,
                   help="parallel workers (default: one per core); 1 runs in this process")
    g.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="serial, a local process pool (default), or Dask (a LocalCluster unless --scheduler)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help=f"Dask scheduler, e.g. tcp://10.0.0.5:8786 (or set {SCHEDULER_ENV}); implies --executor dask")
    g.add_argument("--dashboard", default=None, metavar="ADDRESS",
                   help="with a local Dask cluster: serve its dashboard at ADDRESS, e.g. :8787 (off by default)")


def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915
    parser = argparse.ArgumentParser(prog="flowsim", description=(
        "Simulate patient flow through a local health and care system and where patients get stuck "
        "on the way out of hospital (delayed transfers of care)."))
    parser.add_argument("--version", action="version", version=f"flowsim {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a scenario and write a run directory")
    run.add_argument("scenario", type=Path, help="scenario YAML file")
    run.add_argument("--replications", "-n", type=_replications, default=10,
                     help="replications, or 'auto' to run until the CI of --precision-kpi is within --precision "
                          "of its mean (Hoad et al. 2010) (default 10)")
    run.add_argument("--precision", type=_fraction, default=0.05,
                     help="with -n auto: target relative half-width of the 95%% CI (default 0.05)")
    run.add_argument("--precision-kpi", default="delayed_patients_per_day",
                     help="with -n auto: the KPI whose CI decides (default delayed_patients_per_day)")
    run.add_argument("--max-replications", type=_positive_int, default=100, help="with -n auto: cap (default 100)")
    run.add_argument("--warmup", type=_warmup, default=None,
                     help="warm-up days, overriding the scenario, or 'auto' for MSER-5 on a pilot run")
    run.add_argument("--warmup-kpi", default="delayed_midnight",
                     help="with --warmup auto: the daily series MSER-5 reads (default delayed_midnight)")
    run.add_argument("--seed", type=_seed, default=12345, help="base random seed (default 12345)")
    run.add_argument("--out", type=Path, default=None,
                     help="run directory (default outputs/<scenario>-<timestamp>)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                     help="override a scenario field, e.g. --set acute.beds=450 (repeatable)")
    _add_overwrite(run)
    _add_executor_args(run)
    run.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    run.add_argument("--all-kpis", action="store_true", help="print every KPI, not just the headline set")

    sw = sub.add_parser("sweep", help="run a parameter sweep (grid or Latin hypercube), target finder, sensitivity")
    sw.add_argument("spec", type=Path, help="sweep YAML file (see sweeps/ for examples)")
    sw.add_argument("--out", type=Path, default=None, help="output directory (default outputs/sweeps/<name>)")
    mode = sw.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue an interrupted sweep in the same output directory (finished tasks are kept)")
    mode.add_argument("--fresh", "--overwrite", dest="fresh", action="store_true",
                      help="discard earlier results in the output directory (only files flowsim wrote)")
    sw.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                    help="override a field of the base scenario (repeatable)")
    sw.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    _add_executor_args(sw)

    cmp = sub.add_parser("compare", help="appraise options against a baseline on common random numbers, with costs")
    cmp.add_argument("baseline", type=Path, help="baseline scenario YAML")
    cmp.add_argument("options", type=Path, nargs="+", help="option scenario YAML files")
    cmp.add_argument("--replications", "-n", type=_positive_int, default=10, help="replications each (default 10)")
    cmp.add_argument("--seed", type=_seed, default=12345, help="base random seed shared by all (default 12345)")
    cmp.add_argument("--out", type=Path, default=None, help="output directory (default outputs/compare-<timestamp>)")
    cmp.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                     help="override a field in every scenario, e.g. --set simulation.duration_days=90 (repeatable)")
    cmp.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    _add_overwrite(cmp)
    _add_executor_args(cmp)

    rep = sub.add_parser("report", help="write a board-ready HTML report of a run, sweep or comparison directory")
    rep.add_argument("directory", type=Path, help="a directory written by flowsim run, sweep or compare")
    rep.add_argument("--out", type=Path, default=None, metavar="FILE",
                     help="the HTML file (default DIRECTORY/report.html)")
    _add_overwrite(rep, "--out FILE")

    cal = sub.add_parser("calibrate", help="fit free scenario parameters to observed targets, with held-out checks")
    cal.add_argument("config", type=Path, help="calibration configuration YAML (see calibration/)")
    cal.add_argument("--out", type=Path, default=None, help="output directory (default outputs/calibration/<name>)")
    cal.add_argument("--write-scenario", type=Path, default=None,
                     help="where to write the fitted scenario (default: the config's write_scenario, else the "
                          "output directory)")
    cal.add_argument("--budget", default=None, metavar="POPSIZE,MAXITER",
                     help="override the optimiser budget, e.g. 2,1 for a quick check")
    cal.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    _add_overwrite(cal, "--out and --write-scenario")
    _add_executor_args(cal)

    from flowsim.calibration.fitdata import add_fit_data_parser
    from flowsim.calibration.synthetic import add_synth_extract_parser

    add_fit_data_parser(sub)
    add_synth_extract_parser(sub)

    val = sub.add_parser("validate", help="check a scenario file and report every problem")
    val.add_argument("scenario", type=Path)
    val.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")

    sch = sub.add_parser("schema", help="print the scenario JSON Schema (for editor autocompletion)")
    sch.add_argument("--out", type=Path, default=None, help="write to a file instead of stdout")
    return parser


def _cmd_validate(args: argparse.Namespace) -> int:
    from flowsim.scenario import load_scenario, scenario_hash

    sc = load_scenario(args.scenario, args.overrides)
    n_services = sum(len(p.services) for p in sc.pathways.values())
    sys.stdout.write(
        f"{args.scenario}: OK - '{sc.name}', {len(sc.cohorts)} cohorts, {len(sc.pathways)} pathways, "
        f"{n_services} services, {sc.simulation.duration_days} days from {sc.simulation.start_date} "
        f"(hash {scenario_hash(sc)})\n")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from flowsim.rundir import atomic_text
    from flowsim.scenario import Scenario

    schema = Scenario.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "flowsim scenario"
    text = json.dumps(schema, indent=2) + "\n"
    if args.out:
        atomic_text(args.out, text)
    else:
        sys.stdout.write(text)
    return 0


def _executor(args: argparse.Namespace, tasks: int | None = None) -> AnyExecutor:
    """The executor the flags ask for; a local pool no wider than ``tasks``.

    Work sent to a remote Dask cluster is announced, whichever of --scheduler or the environment
    chose it: results computed elsewhere should never be a surprise.  summary.json records it too.
    """
    from flowsim.experiment.executors import make_executor

    workers = args.workers
    if workers is None and tasks is not None and args.executor != "dask" and not args.scheduler:
        from flowsim.experiment.runner import default_workers

        workers = default_workers(tasks)
    ex = make_executor(args.executor, workers, args.scheduler, args.dashboard)
    info = ex.describe()
    if info.get("scheduler_from"):
        sys.stderr.write(f"flowsim: running on the Dask scheduler at {info['scheduler']} ({info['workers']} workers; "
                         f"chosen by {info['scheduler_from']})\n")
    if info.get("dashboard"):
        sys.stderr.write(f"flowsim: Dask dashboard at {info['dashboard']}\n")
    return ex


def _cmd_run(args: argparse.Namespace) -> int:
    from flowsim.rundir import abandon_on_error, atomic_text, claim_output, finish_output, write_run_dir
    from flowsim.scenario import load_scenario

    sc = load_scenario(args.scenario, args.overrides)
    out = args.out or Path("outputs") / f"{args.scenario.stem}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    claimed = claim_output(out, "run", overwrite=args.overwrite, command=_command())  # before anything runs
    with abandon_on_error(claimed):  # a mistake found before any output leaves nothing behind
        result, extra = _simulate_run(args, sc, out)
    for problem in result.checks:
        log.error("internal check failed (please report): %s", problem)
    write_run_dir(result, claimed, command=_command(), figures=not args.no_figures)
    if extra:
        atomic_text(out / "experiment.json", json.dumps(extra, indent=2, default=str) + "\n")
    _print_run(args, result, out, extra)
    result.release()  # the run directory holds every table now
    finish_output(claimed)
    return 1 if result.checks else 0


def _simulate_run(args: argparse.Namespace, sc: Scenario, out: Path) -> tuple[RunResult, dict[str, object]]:
    """Warm-up (fixed or MSER-5) and replications (fixed or to a precision), as the flags ask."""
    from flowsim.experiment import simulate
    from flowsim.experiment.runner import choose_warmup, simulate_to_precision, with_warmup
    from flowsim.rundir import PARTS

    extra: dict[str, object] = {}
    auto_reps = args.replications == "auto"
    with _executor(args, args.max_replications if auto_reps else args.replications) as ex:
        if args.warmup == "auto":
            choice = choose_warmup(sc, args.warmup_kpi, args.seed, executor=ex)
            sc = with_warmup(sc, choice.days)
            extra["warmup"] = choice.as_dict()
            if not args.no_figures:
                from flowsim.report.sweep_figures import warmup_figure

                warmup_figure(choice, out / "figures" / "warmup.png")
            log.info("warm-up by MSER-5: %d days", choice.days)
        elif args.warmup is not None:
            sc = with_warmup(sc, args.warmup)
        log.info("running %s: %s replications, seed %d on %s", sc.name, args.replications, args.seed, ex.name)
        if auto_reps:
            result, decision = simulate_to_precision(sc, args.precision_kpi, args.precision, args.seed,
                                                     cap=args.max_replications, executor=ex, parts=out / PARTS)
            extra["replications"] = {"method": "Hoad et al. (2010) confidence-interval method",
                                     "kpi": args.precision_kpi, "precision": args.precision,
                                     "n_solution": decision.n_solution, "n_used": decision.n_used,
                                     "capped": decision.capped, "achieved": decision.precision[-1]}
        else:
            result = simulate(sc, replications=args.replications, seed=args.seed, executor=ex, parts=out / PARTS)
    return result, extra


def _command() -> list[str]:
    return ["flowsim", *sys.argv[1:]]


def _print_run(args: argparse.Namespace, result: RunResult, out: Path, extra: dict[str, object]) -> None:
    from flowsim.rundir import kpi_table_text

    sc = result.scenario
    table = result.summary()
    n = len(result.replications)
    names = list(table.index) if args.all_kpis else [n for n in headline(sc) if n in table.index]
    sys.stdout.write(f"\n{sc.name}: {n} replications, seed {args.seed}, "
                     f"{sc.simulation.start_date} to {sc.simulation.end_date} "
                     f"(after {sc.simulation.warmup_days} warm-up days)\n")
    for where, count, cap, unit in sc.start_overflow():  # only when initial_state.allow_over_capacity
        sys.stdout.write(f"Start above capacity ({'.'.join(map(str, where))}): {count:,} patients in {cap:,} {unit}, "
                         "allowed by initial_state.allow_over_capacity; nobody new is admitted there until "
                         "occupancy falls below capacity\n")
    if "warmup" in extra:
        plot = "" if args.no_figures else f" (plot: {out / 'figures' / 'warmup.png'})"
        sys.stdout.write(f"Warm-up chosen by MSER-5 on {args.warmup_kpi}: {sc.simulation.warmup_days} days{plot}\n")
    if "replications" in extra:
        info = extra["replications"]
        assert isinstance(info, dict)
        state = (f"not settled within the cap of {n} (precision {info['achieved']:.1%} at the cap; it must hold "
                 "for 5 more replications to count)" if info["capped"] else
                 f"{info['n_solution']} needed, confirmed over {n - info['n_solution']} more")
        sys.stdout.write(f"Replications for {args.precision_kpi} within {args.precision:.0%}: {state}\n")
    sys.stdout.write("\n" + kpi_table_text(table, names) + "\n\n")
    quarters = result.periods("Q")
    sys.stdout.write("DTOC delayed days by NHS quarter (midnight census, acute + community):\n")
    for _, q in quarters.iterrows():
        ci = "" if q["ci_low"] != q["ci_low"] else f"  [{q['ci_low']:,.0f}, {q['ci_high']:,.0f}]"
        sys.stdout.write(f"  {q['period']} ({q['days']:>2} days): {q['delayed_days']:>8,.0f}{ci}"
                         f"   {q['rate_per_100k']:>7,.1f} per 100k 18+\n")
    sys.stdout.write(f"\nRun directory: {out}\n")


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from flowsim.sweep import run_sweep

    with _executor(args) as ex:
        res = run_sweep(args.spec, args.out, resume=args.resume, fresh=args.fresh, executor=ex,
                        overrides=args.overrides, figures=not args.no_figures,
                        command=["flowsim", *sys.argv[1:]])
    spec = res.spec
    sys.stdout.write(f"\nSweep '{spec.name or args.spec.stem}': {res.replications} replications per point, "
                     f"seed {spec.seed}, warm-up {res.warmup_days} days; {res.computed} tasks run now "
                     f"in {res.seconds:.1f} s on {ex.name} ({ex.workers} workers)\n")
    if not res.summary.empty:
        params = [p.path for p in spec.parameters]
        labels = {p.path: p.name for p in spec.parameters}
        kpi = spec.kpis[0]
        sub = res.summary[res.summary["kpi"] == kpi]
        sys.stdout.write(f"\n{kpi}: mean [95% CI]\n")
        widths = {p: max(8, len(labels[p])) for p in params}
        head = "  ".join(f"{labels[p]:>{widths[p]}}" for p in params)
        sys.stdout.write(f"{head}  {'mean':>10}  95% CI\n")
        for _, row in sub.iterrows():
            vals = "  ".join(f"{_short(row[p]):>{widths[p]}}" for p in params)
            sys.stdout.write(f"{vals}  {row['mean']:>10.2f}  [{row['ci_low']:.2f}, {row['ci_high']:.2f}]\n")
    if res.target is not None:
        sys.stdout.write(f"\nTarget: {res.target.sentence()}\n")
    if res.sensitivity is not None:
        sys.stdout.write(f"\nSensitivity ({spec.sensitivity.method if spec.sensitivity else ''}):\n")
        sys.stdout.write(res.sensitivity.round(3).to_string(index=False) + "\n")
    sys.stdout.write(f"\nOutputs: {res.out}\n")
    return 0


def _fmt(x: float) -> str:
    if x != x:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:,.2f}"


def _cmd_compare(args: argparse.Namespace) -> int:
    from flowsim.appraisal import compare, write_comparison
    from flowsim.rundir import abandon_on_error, claim_output, finish_output
    from flowsim.scenario import load_scenario

    paths = [args.baseline, *args.options]
    scenarios = [load_scenario(p, args.overrides) for p in paths]  # every file checked before anything runs
    out = args.out or Path("outputs") / f"compare-{dt.datetime.now():%Y%m%d-%H%M%S}"
    claimed = claim_output(out, "comparison", overwrite=args.overwrite, command=_command())
    with abandon_on_error(claimed), _executor(args, args.replications) as ex:
        result = compare(scenarios[0], scenarios[1:], args.replications, args.seed, executor=ex,
                         names=[p.stem for p in paths])
    bad = [c for run in result.runs for c in run.checks]
    for problem in bad:
        log.error("internal check failed (please report): %s", problem)
    write_comparison(result, claimed, command=_command(), figures=not args.no_figures, files=[str(p) for p in paths])
    finish_output(claimed)
    w = sys.stdout.write
    w(f"\nOptions against '{result.names[0]}': {args.replications} paired replications each, seed {args.seed} "
      "(common random numbers)\n")
    diffs = result.differences(result.kpis())
    for name in result.names[1:]:
        w(f"\n{name}: option - baseline, mean [95% CI]   (* = distinguishable from zero)\n")
        for _, r in diffs[diffs["option"] == name].iterrows():
            mark = "*" if r["distinguishable"] else " "
            w(f"  {mark} {r['label'][:48]:<48} {_fmt(r['baseline_mean']):>12} -> {_fmt(r['option_mean']):>12}  "
              f"{_fmt(r['diff_mean']):>11} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] {r['unit']}\n")
    econ = result.economics()
    w("\nEconomics (GBP; paired over replications), ranked:\n")
    w(f"  {'rank':>4}  {'option':<40} {'net cost':>12} {'delayed days avoided':>21} {'bed-days released':>18} "
      f"{'GBP per delayed day avoided':>28}  note\n")
    for _, r in econ.iterrows():
        note = f"dominated by {r['dominated_by']}" if r["dominated_by"] else ""
        w(f"  {r['rank']:>4}  {r['option'][:40]:<40} {_fmt(r['net_cost']):>12} {_fmt(r['delayed_days_avoided']):>21} "
          f"{_fmt(r['bed_days_released']):>18} {_fmt(r['cost_per_delayed_day_avoided']):>28}  {note}\n")
    t = result.targets()
    w("\nNational standards (met / missed / uncertain at 95%):\n")
    for std, grp in t.groupby("standard", sort=False):
        cells = ", ".join(f"{r['scenario']} {_fmt(r['mean'])} {r['verdict']}" for _, r in grp.iterrows())
        w(f"  {std} ({grp['sense'].iloc[0]} {grp['target'].iloc[0]:g}): {cells}\n")
    w(f"\nComparison directory: {out}   (flowsim report {out} makes the board report)\n")
    return 1 if bad else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from flowsim.report.html import detect_kind, write_report
    from flowsim.rundir import check_complete, guard_file, is_flowsim_report

    check_complete(args.directory)  # never a report of an interrupted or mixed directory
    if args.out is not None and not args.out.is_dir():
        guard_file(args.out, args.overwrite, is_flowsim_report, "--out")
    kind = detect_kind(args.directory)
    path = write_report(args.directory, args.out)
    sys.stdout.write(f"Report of the {kind} in {args.directory}: {path}\n")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from flowsim.calibration.calibrate import calibrate, default_output, is_fitted_scenario, load_problem
    from flowsim.rundir import abandon_on_error, claim_output, finish_output, guard_file

    budget = None
    if args.budget:
        try:
            pop, it = (int(v) for v in args.budget.split(","))
            if pop < 2 or it < 1:
                raise ValueError
        except ValueError:
            raise FlowsimError(f"--budget: expected POPSIZE,MAXITER with POPSIZE >= 2 and MAXITER >= 1, "
                               f"got {args.budget!r}") from None
        budget = (pop, it)
    prob = load_problem(args.config)
    prob.build({})  # a bad configuration or scenario is reported before anything is written
    if args.write_scenario is not None:
        guard_file(args.write_scenario, args.overwrite, is_fitted_scenario, "--write-scenario")
    claimed = claim_output(args.out or default_output(prob), "calibration", overwrite=args.overwrite,
                           command=_command())
    with abandon_on_error(claimed), _executor(args) as ex:
        res = calibrate(args.config, claimed, executor=ex, figures=not args.no_figures,
                        write_scenario=args.write_scenario, budget=budget, command=_command())
    finish_output(claimed)
    w = sys.stdout.write
    cfg = res.problem.config
    w(f"\nCalibration '{cfg.name or args.config.stem}': {len(res.evaluations)} candidates x {cfg.replications} "
      f"replications (seed {cfg.seed}, common random numbers) in {res.seconds:.0f} s\n\nFitted (approximate 95% "
      "set over the candidates evaluated):\n")
    for p in cfg.free:
        lo, hi = res.intervals[p.path]
        w(f"  {p.label or p.path:<40} {res.best[p.path]!s:>8}   [{lo:g}, {hi:g}]   searched [{p.low:g}, {p.high:g}]\n")
    w(f"\n{'target':<18} {'role':<9} {'observed':>10} {'simulated':>10}  {'95% CI':<22} {'error':>8}\n")
    for _, r in res.report.iterrows():
        w(f"{r['target']:<18} {r['role']:<9} {r['observed']:>10,.2f} {r['simulated']:>10,.2f}  "
          f"[{r['ci_low']:,.2f}, {r['ci_high']:,.2f}]{'':<4} {r['error_pct']:>7.1f}%\n")
    oos = "n/a" if res.out_of_sample_error_pct is None else f"{res.out_of_sample_error_pct:.1f}%"
    w(f"\nMean absolute error: in sample {res.in_sample_error_pct:.1f}%, out of sample (held out) {oos}\n")
    w(f"Fitted scenario: {res.files['scenario']}\nOutputs: {res.files['meta'].parent}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit code: 0 done, 1 a check or task failed, 2 a user mistake, 130 interrupted.

    Ctrl-C at any moment (loading, parsing, running, writing, shutting workers down) ends with one
    line and 130; an output directory being written is left without its completion marker, so it
    never looks complete.  While the numerical libraries load, Ctrl-C is held until they have
    loaded: interrupted inside a compiled module's start-up, Python turns it into an ImportError (or
    dies of the signal) instead of a KeyboardInterrupt.  Called as the program (``argv`` None), a
    second Ctrl-C during the exit is ignored so the clean-up cannot turn into a traceback.
    """
    try:
        with _interrupt_deferred():
            import flowsim.experiment.executors  # noqa: F401  (numpy, pandas, scipy: most of start-up)

            parser = build_parser()
        return _main(parser, argv)
    except BaseException as exc:
        if not _interrupted(exc):
            raise
        if argv is None:
            import signal

            signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.stderr.write("flowsim: interrupted (an output directory being written is left marked incomplete)\n")
        return 130


def _interrupted(exc: BaseException) -> bool:
    """A KeyboardInterrupt, or an error it caused (an import it broke reports ImportError)."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        if isinstance(node, KeyboardInterrupt):
            return True
        seen.add(id(node))
        node = node.__cause__ or node.__context__
    return False


@contextlib.contextmanager
def _interrupt_deferred() -> Iterator[None]:
    """Hold Ctrl-C for the duration (main thread only) and raise it as KeyboardInterrupt afterwards."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hit: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: hit.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if hit:
        raise KeyboardInterrupt


def _main(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    from flowsim.experiment.executors import TaskError

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="flowsim: %(levelname)s: %(message)s")
    if not args.verbose:
        # Dask logs cluster life (and benign shutdown noise) at INFO in this process and in its workers; the
        # environment variable reaches worker processes too, and flowsim reports task failures itself
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "critical")
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
    commands = {"run": _cmd_run, "sweep": _cmd_sweep, "compare": _cmd_compare, "calibrate": _cmd_calibrate,
                "validate": _cmd_validate,
                "schema": _cmd_schema, "report": _cmd_report}
    try:
        handler = getattr(args, "func", None) or commands[args.command]
        return handler(args)
    except TaskError as exc:  # a failure inside a worker: name the task; the traceback is for -v
        sys.stderr.write(f"flowsim: error: {exc}\n")
        if args.verbose and exc.worker_traceback:
            sys.stderr.write(exc.worker_traceback)
        else:
            sys.stderr.write("flowsim: run again with -v to see the worker's traceback\n")
        return 1
    except FlowsimError as exc:
        for line in str(exc).splitlines():
            sys.stderr.write(f"flowsim: error: {line}\n")
        return 2
    except OSError as exc:  # a file the command line named cannot be written (or read): not a bug in flowsim
        if not exc.filename:
            raise
        sys.stderr.write(f"flowsim: error: {exc.filename}: {exc.strerror or exc}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
