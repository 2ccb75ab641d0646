"""Command-line front end: a thin layer over the Python API.

``main(argv=None) -> int`` so tests can call it directly and the console
script, ``python -m flowsim`` and subprocess tests all share one path.
User mistakes (bad files, bad values) print ``flowsim: error: ...`` lines and
return 2 with no traceback; anything else is a bug and is allowed to raise.

The CLI calls the domain (simulate, compare, sweep, calibrate, fit-data) and hands what comes back to the
presentation layer (figures, terminal tables, reports); every sub-parser lives here, so no domain module
imports the CLI.  Global flags (``-v``, ``--version``) work before or after the subcommand.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowsim import __version__
from flowsim.errors import FlowsimError

if TYPE_CHECKING:  # the CLI imports the domain when a command runs, so start-up (and a Ctrl-C in it) is cheap
    from flowsim.experiment.executors import AnyExecutor
    from flowsim.experiment.runner import RunResult
    from flowsim.scenario.schema import Scenario

log = logging.getLogger("flowsim")

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


def _global_options(top: bool) -> argparse.ArgumentParser:
    """``-v`` and ``--version``, accepted before the subcommand (``top``) and after it.

    After the subcommand the default is SUPPRESS, so ``flowsim -v run ...`` is not undone by the subcommand's
    own (absent) ``-v``."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--version", action="version", version=f"flowsim {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="log progress details")
    return p


#: The global options as the subcommands accept them (after the subcommand's name).
_AFTER_SUBCOMMAND = _global_options(top=False)


def _sub(sub: Any, name: str, help_text: str, description: str) -> argparse.ArgumentParser:
    """A subcommand with its one-line help (in ``flowsim --help``), its description (in ``flowsim NAME --help``)
    and the global options."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=description,
                                                parents=[_AFTER_SUBCOMMAND])
    return p


def _add_run(sub: Any) -> None:
    run = _sub(sub, "run", "run a scenario and write a run directory",
               "Run replications of a scenario (with any --set changes) and write a run directory: summary.json, "
               "per-replication KPIs, daily series, per-stay records, the resolved scenario and figures. Prints "
               "the headline KPIs with 95% confidence intervals.")
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
    run.add_argument("--no-patients", action="store_true",
                     help="do not keep per-stay records (no patients.parquet): less memory and disk for long runs")
    run.add_argument("--all-kpis", action="store_true", help="print every KPI, not just the headline set")
    run.add_argument("--xlsx", action="store_true",
                     help="also write results.xlsx (KPIs with CIs, quarters, months, daily means) into the run "
                          "directory")


def _add_sweep(sub: Any) -> None:
    sw = _sub(sub, "sweep", "run a parameter sweep (grid or Latin hypercube), target finder, sensitivity",
              "Run a sweep file: a grid or Latin hypercube of scenario settings on common random numbers, an "
              "optional target finder (the smallest setting that meets a KPI threshold with stated confidence) "
              "and Morris or Sobol sensitivity. Results are stored as they finish, so --resume continues.")
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


def _add_compare(sub: Any) -> None:
    cmp = _sub(sub, "compare", "appraise options against a baseline on common random numbers, with costs",
               "Run a baseline and options on the same seed and replications (common random numbers) and write "
               "a comparison directory: paired differences with 95% CIs, value for money by the decision rule "
               "(dominance on paired intervals, the efficiency frontier, and net monetary benefit when the "
               "baseline sets costs.value_per_delayed_bed_day), and national standards.")
    cmp.add_argument("baseline", type=Path, help="baseline scenario YAML")
    cmp.add_argument("options", type=Path, nargs="+", help="option scenario YAML files")
    cmp.add_argument("--replications", "-n", type=_positive_int, default=10, help="replications each (default 10)")
    cmp.add_argument("--seed", type=_seed, default=12345, help="base random seed shared by all (default 12345)")
    cmp.add_argument("--out", type=Path, default=None, help="output directory (default outputs/compare-<timestamp>)")
    cmp.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                     help="override a field in every scenario, e.g. --set simulation.duration_days=90 (repeatable)")
    cmp.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    _add_overwrite(cmp)
    cmp.add_argument("--no-patients", action="store_true", help="do not keep per-stay records (no patients.parquet)")
    _add_executor_args(cmp)


def _add_report_and_calibrate(sub: Any) -> None:
    rep = _sub(sub, "report", "write a board-ready HTML report of a run, sweep, comparison or calibration directory",
               "Turn a directory written by flowsim run, sweep, compare or calibrate into one self-contained HTML "
               "file for an A&E Delivery Board: key messages, headline tables, charts, assumptions, a STRESS-DES "
               "checklist and a reproducibility record. It prints well to PDF.")
    rep.add_argument("directory", type=Path, help="a directory written by flowsim run, sweep, compare or calibrate")
    rep.add_argument("--out", type=Path, default=None, metavar="FILE",
                     help="the HTML file (default DIRECTORY/report.html)")
    _add_overwrite(rep, "--out FILE")

    exp = _sub(sub, "export", "export a complete run or comparison directory as an Excel workbook",
               "Write an Excel workbook (README with scenario, seed, replications, versions and changes; KPIs with "
               "95% CIs; quarters; months; daily means across replications; and for a comparison the paired "
               "differences, the value-for-money table and the national standards) from a complete run or "
               "comparison directory. Incomplete or mixed directories are refused, as by flowsim report.")
    exp.add_argument("directory", type=Path, help="a directory written by flowsim run or flowsim compare")
    exp.add_argument("--xlsx", action="store_true", required=True, help="write an Excel workbook (.xlsx)")
    exp.add_argument("--out", type=Path, default=None, metavar="FILE",
                     help="the workbook file (default DIRECTORY/results.xlsx)")
    _add_overwrite(exp, "--out FILE")

    cal = _sub(sub, "calibrate", "fit free scenario parameters to observed targets, with held-out checks",
               "Fit the free scenario parameters of a calibration file to observed targets by differential "
               "evolution on common random numbers; report approximate 95% likelihood-ratio sets and the error on "
               "held-out targets, and write the fitted scenario.")
    cal.add_argument("config", type=Path, help="calibration configuration YAML (see calibration/)")
    cal.add_argument("--out", type=Path, default=None, help="output directory (default outputs/calibration/<name>)")
    cal.add_argument("--write-scenario", type=Path, default=None,
                     help="where to write the fitted scenario (default: the config's write_scenario, else the "
                          "output directory)")
    cal.add_argument("--budget", default=None, metavar="POPSIZE,MAXITER",
                     help="override the optimiser budget, e.g. 2,1 for a quick check")
    cal.add_argument("--scoring-replications", type=int, default=None, metavar="N",
                     help="fresh replications the fitted model is scored on (default: the config's scoring block, "
                          "at least 30); fewer, for a quick check, are recorded as below the minimum")
    cal.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    _add_overwrite(cal, "--out and --write-scenario")
    _add_executor_args(cal)


def _add_scenario_tools(sub: Any) -> None:
    val = _sub(sub, "validate", "check a scenario file and report every problem",
               "Load a scenario (extends and --set applied) and validate it: every problem is printed on its own "
               "line with the file and line, the field path, the bad value and what is allowed (exit 2); a valid "
               "scenario prints a one-line summary and its content hash.")
    val.add_argument("scenario", type=Path, help="scenario YAML file")
    val.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                     help="override a scenario field before validating (repeatable)")

    sch = _sub(sub, "schema", "print the scenario JSON Schema (for editor autocompletion)",
               "Print the JSON Schema of scenario files (draft 2020-12), with every field's description, for "
               "editors that autocomplete and check YAML against a schema.")
    sch.add_argument("--out", type=Path, default=None, help="write to a file instead of stdout")


def _port(text: str) -> int:
    value = int_at_least(1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {value}")
    return value


def _add_app(sub: Any) -> None:
    p = _sub(sub, "app", "start the planners' web app in the browser (Streamlit)",
             "Start a local web app: choose a shipped scenario or upload one, move its levers, run replications "
             "with progress, keep runs and compare them with a baseline on common random numbers, and download "
             "the changed scenario, an Excel workbook, the board report and the run directory. Ctrl-C stops it.")
    p.add_argument("--port", type=_port, default=8501, help="port to serve on (default 8501)")
    p.add_argument("--host", default="localhost",
                   help="address to listen on (default localhost: only this machine; 0.0.0.0 for everyone who can "
                        "reach it)")
    p.add_argument("--outputs", type=Path, default=Path("outputs") / "app", metavar="DIR",
                   help="where the app keeps its run directories (default outputs/app)")


def _positive_days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of days, got {text!r}")
    return value


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2023-04-01, got {text!r}") from None


def _add_fit_data(sub: Any) -> None:
    from flowsim.calibration.fitdata import DEFAULT_COLUMNS, DEFAULT_MIN_LOS, FIELDS

    p = _sub(sub, "fit-data", "fit arrivals, case mix and lengths of stay from a patient-level extract (CSV)",
             "Fit a scenario fragment (arrivals profile, cohorts with share, pathway mix and acute length of stay "
             "chosen by AIC) from a CSV extract of hospital spells, with goodness-of-fit figures.")
    p.add_argument("extract", type=Path, help="CSV, one row per spell")
    p.add_argument("--columns", action="append", default=[], metavar="FIELD=COLUMN,...",
                   help="your column names, e.g. admission=adm_time,medically_fit=mfft (fields: "
                        f"{', '.join(FIELDS)}; defaults: {', '.join(DEFAULT_COLUMNS.values())})")
    p.add_argument("--group-by", default=None, metavar="COLUMN",
                   help="column whose values are the cohorts (default: the age band column; 'none' for one cohort)")
    p.add_argument("--out", type=Path, default=None, metavar="FRAGMENT.yaml",
                   help="fragment YAML to write (default EXTRACT_fitted.yaml beside the extract)")
    p.add_argument("--figures", type=Path, default=None, metavar="DIR",
                   help="write goodness-of-fit PNGs and the AIC, factor and delay tables (CSV) here")
    p.add_argument("--min-los", type=_positive_days, default=DEFAULT_MIN_LOS, metavar="DAYS",
                   help="stays shorter than this (including zeros) are raised to it before fitting "
                        "(default 1/24, one hour)")
    p.add_argument("--check", type=Path, default=None, metavar="SCENARIO",
                   help="check that the fragment validates when merged into this scenario YAML")
    p.set_defaults(func=_cmd_fit_data)


def _add_synth_extract(sub: Any) -> None:
    from flowsim.calibration.synthetic import DEFAULT_OUT, SYNTHETIC_LABEL

    p = _sub(sub, "synth-extract", "write a SYNTHETIC patient-level extract with known parameters (to test "
                                   "fit-data; not real patient data)",
             "Write a clearly labelled synthetic extract of hospital spells (every row has source = "
             f"'{SYNTHETIC_LABEL}') and a sidecar .json with the generating parameters, for testing and learning "
             "flowsim fit-data.")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="EXTRACT.csv",
                   help=f"CSV to write (default {DEFAULT_OUT}; the parameters go beside it as .json)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--spells", type=int_at_least(1), default=None, metavar="N",
                      help="exactly N spells over one year (365 days)")
    size.add_argument("--days", type=int_at_least(7), default=None, metavar="D",
                      help="D days of Poisson admissions at about 41 a day (default 365)")
    p.add_argument("--seed", type=int_at_least(0), default=12345, help="random seed (default 12345)")
    p.add_argument("--start", type=_date, default=dt.date(2023, 4, 1), help="first day (default 2023-04-01)")
    p.set_defaults(func=_cmd_synth_extract)


def _add_backtest(sub: Any) -> None:
    p = _sub(sub, "backtest", "forecast from dated snapshots and score against the observed series, by horizon",
             "From each origin (a date and a start-from-today snapshot CSV), forecast a daily series h days ahead "
             "over many replications; report the error by horizon (MAE, bias, coverage of the 50% and 90% "
             "prediction intervals, CRPS) against naive baselines (last observed value, mean of the previous "
             "four weeks), with a figure.")
    p.add_argument("config", type=Path, help="back-test configuration YAML (see backtest/synthetic/backtest.yaml)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default outputs/backtest/<name>)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figure")
    _add_overwrite(p)
    _add_executor_args(p)
    p.set_defaults(func=_cmd_backtest)
    s = _sub(sub, "synth-backtest", "write a SYNTHETIC back-test example generated by the model itself",
             "Write a back-test example whose truth is known: a scenario, dated snapshots and an observed daily "
             "series generated in segments by the model itself (each segment starting from the snapshot at an "
             "origin), and the back-test configuration (on another seed).")
    s.add_argument("--out", type=Path, default=Path("backtest/synthetic"),
                   help="directory (default backtest/synthetic)")
    s.add_argument("--scenario", type=Path, default=Path("scenarios/minimal.yaml"),
                   help="the scenario that makes the history (default scenarios/minimal.yaml)")
    s.add_argument("--origins", type=int_at_least(1), default=24, help="number of origins (default 24)")
    s.add_argument("--seed", type=int_at_least(0), default=20240603, help="the truth's seed (default 20240603)")
    _add_overwrite(s)
    s.set_defaults(func=_cmd_synth_backtest)


def _cmd_backtest(args: argparse.Namespace) -> int:
    from flowsim.experiment.backtest import NAIVES, default_output, load_backtest, run_backtest
    from flowsim.report.backtest_figures import draw_backtest
    from flowsim.rundir import abandon_on_error, claim_output, finish_output

    bt = load_backtest(args.config)
    for i, o in enumerate(bt.config.origins):  # every origin's scenario is checked before anything is written
        bt.scenario(o, i)
    claimed = claim_output(args.out or default_output(bt), "backtest", overwrite=args.overwrite,
                           command=_command())
    tasks = len(bt.config.origins) * bt.config.replications
    with abandon_on_error(claimed), _executor(args, tasks) as ex:
        res = run_backtest(args.config, claimed, executor=ex, draw=None if args.no_figures else draw_backtest,
                           command=_command())
    finish_output(claimed)
    w = sys.stdout.write
    cfg = bt.config
    w(f"\nBack-test '{cfg.name or args.config.stem}' of {cfg.series}: {len(cfg.origins)} origins x "
      f"{cfg.replications} replications (seed {cfg.seed}) in {res.seconds:.0f} s\n\n")
    w(f"{'horizon':>7} {'origins':>7} {'MAE':>8} {'bias':>8} {'cov50':>6} {'cov90':>6} {'CRPS':>8} "
      + " ".join(f"{'MAE ' + k:>10}" for k in NAIVES) + "\n")
    for _, r in res.horizons.iterrows():
        w(f"{int(r['horizon']):>7} {int(r['origins']):>7} {r['mae']:>8.2f} {r['bias']:>+8.2f} "
          f"{100 * r['coverage_50']:>5.0f}% {100 * r['coverage_90']:>5.0f}% {r['crps']:>8.2f} "
          + " ".join(f"{r[f'naive_{k}_mae']:>10.2f}" for k in NAIVES) + "\n")
    w("\nNaive: " + "; ".join(f"{k} = {v}" for k, v in NAIVES.items()) + "\n")
    for v in res.verdicts():
        w(f"  {v}\n")
    w(f"Outputs: {claimed.path}\n")
    return 0


def _cmd_synth_backtest(args: argparse.Namespace) -> int:
    from flowsim.experiment.backtest_synthetic import LABEL, SyntheticPlan, write_example

    plan = SyntheticPlan(base=args.scenario, origins=args.origins, seed=args.seed)
    files = write_example(plan, args.out, overwrite=args.overwrite)
    sys.stdout.write(f"{LABEL}\n{len(files)} files in {args.out}; back-test it with: flowsim backtest "
                     f"{files['config']}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``flowsim`` argument parser with every subcommand (each with a description)."""
    parser = argparse.ArgumentParser(prog="flowsim", parents=[_global_options(top=True)], description=(
        "Simulate patient flow through a local health and care system and where patients get stuck "
        "on the way out of hospital (delayed transfers of care)."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_run, _add_sweep, _add_compare, _add_report_and_calibrate, _add_fit_data, _add_synth_extract,
                _add_backtest, _add_scenario_tools, _add_app):
        add(sub)
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


def _choose_warmup(args: argparse.Namespace, sc: Scenario, ex: AnyExecutor, out: Path,
                   extra: dict[str, object]) -> Scenario:
    """Apply ``--warmup`` (a number, or MSER-5 on a pilot, whose plot the CLI draws) to the scenario."""
    from flowsim.experiment.runner import choose_warmup, with_warmup

    if args.warmup == "auto":
        choice = choose_warmup(sc, args.warmup_kpi, args.seed, executor=ex)
        extra["warmup"] = choice.as_dict()
        if not args.no_figures:
            from flowsim.report.sweep_figures import warmup_figure

            warmup_figure(choice, out / "figures" / "warmup.png")
        log.info("warm-up by MSER-5: %d days", choice.days)
        return with_warmup(sc, choice.days, "--warmup auto (MSER-5)")
    if args.warmup is not None:
        return with_warmup(sc, args.warmup)
    return sc


def _run_header(args: argparse.Namespace, result: Any, out: Path, extra: dict[str, Any]) -> str:
    """What the run was: name, replications, seed, window, warm-up, and every change made to the file."""
    from flowsim.scenario.loader import scenario_to_dict
    from flowsim.scenario.provenance import describe_overrides

    sc = result.scenario
    n = len(result.replications)
    lines = [f"\n{sc.name}: {n} replications, seed {args.seed}, {sc.simulation.start_date} to "
             f"{sc.simulation.end_date} (after {sc.simulation.warmup_days} warm-up days)"]
    for where, count, cap, unit in sc.start_overflow():  # only when initial_state.allow_over_capacity
        lines.append(f"Start above capacity ({'.'.join(map(str, where))}): {count:,} patients in {cap:,} {unit}, "
                     "allowed by initial_state.allow_over_capacity; nobody new is admitted there until "
                     "occupancy falls below capacity")
    changes = describe_overrides(scenario_to_dict(sc))
    if changes:
        lines.append("Changed for this run (not as in the scenario file):")
        lines += [f"  {c}" for c in changes]
    if "warmup" in extra:
        plot = "" if args.no_figures else f" (plot: {out / 'figures' / 'warmup.png'})"
        lines.append(f"Warm-up chosen by MSER-5 on {args.warmup_kpi}: {sc.simulation.warmup_days} days{plot}")
    if "replications" in extra:
        info = extra["replications"]
        state = (f"not settled within the cap of {n} (precision {info['achieved']:.1%} at the cap; it must hold "
                 "for 5 more replications to count)" if info["capped"] else
                 f"{info['n_solution']} needed, confirmed over {n - info['n_solution']} more")
        lines.append(f"Replications for {args.precision_kpi} within {args.precision:.0%}: {state}")
    return "\n".join(lines) + "\n"


def _cmd_run(args: argparse.Namespace) -> int:
    from flowsim.report.figures import draw_run
    from flowsim.report.text import headline, kpi_table_text, periods_text
    from flowsim.rundir import abandon_on_error, atomic_text, claim_output, finish_output, write_run_dir
    from flowsim.scenario import load_scenario, scenario_to_dict

    sc = load_scenario(args.scenario, args.overrides)
    out = args.out or Path("outputs") / f"{args.scenario.stem}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    claimed = claim_output(out, "run", overwrite=args.overwrite, command=_command())  # before anything runs
    with abandon_on_error(claimed):  # a mistake found before any output leaves nothing behind
        result, extra = _simulate_run(args, sc, out)
    for problem in result.checks:
        log.error("internal check failed (please report): %s", problem)
    write_run_dir(result, claimed, command=_command(), draw=None if args.no_figures else draw_run)
    if extra:
        atomic_text(out / "experiment.json", json.dumps(extra, indent=2, default=str) + "\n")
    if args.xlsx:
        from flowsim.report.workbook import write_workbook

        write_workbook(out)  # before the completion marker, so the manifest lists it
    table = result.summary()
    sc = result.scenario
    names = list(table.index) if args.all_kpis else [n for n in headline(sc) if n in table.index]
    w = sys.stdout.write
    w(_run_header(args, result, out, extra))
    w("\n" + kpi_table_text(table, names, scenario_to_dict(sc)) + "\n\n")
    w(periods_text(result.periods("Q")) + "\n")
    w(f"\nRun directory: {out}\n")
    result.release()  # the run directory holds every table now
    finish_output(claimed)
    return 1 if result.checks else 0


def _simulate_run(args: argparse.Namespace, sc: Scenario, out: Path) -> tuple[RunResult, dict[str, Any]]:
    """Warm-up (fixed or MSER-5) and replications (fixed or to a precision), as the flags ask."""
    from flowsim.experiment import simulate
    from flowsim.experiment.replications import StoppingRule
    from flowsim.experiment.runner import simulate_to_precision
    from flowsim.rundir import PARTS

    extra: dict[str, Any] = {}
    auto_reps = args.replications == "auto"
    keep = not args.no_patients
    with _executor(args, args.max_replications if auto_reps else args.replications) as ex:
        sc = _choose_warmup(args, sc, ex, out, extra)
        log.info("running %s: %s replications, seed %d on %s", sc.name, args.replications, args.seed, ex.name)
        if auto_reps:
            result, decision = simulate_to_precision(sc, args.precision_kpi,
                                                     StoppingRule(args.precision, cap=args.max_replications),
                                                     args.seed, executor=ex, keep_patients=keep,
                                                     parts=out / PARTS)
            extra["replications"] = {"method": "Hoad et al. (2010) confidence-interval method",
                                     "kpi": args.precision_kpi, "precision": args.precision,
                                     "n_solution": decision.n_solution, "n_used": decision.n_used,
                                     "capped": decision.capped, "achieved": decision.precision[-1]}
        else:
            result = simulate(sc, replications=args.replications, seed=args.seed, executor=ex, keep_patients=keep,
                              parts=out / PARTS)
    return result, extra


def _command() -> list[str]:
    return ["flowsim", *sys.argv[1:]]


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from flowsim.report.format import fmt, fmt_ci, kpi_info
    from flowsim.report.sweep_figures import draw_sweep
    from flowsim.sweep import run_sweep

    with _executor(args) as ex:
        res = run_sweep(args.spec, args.out, executor=ex,
                        existing="resume" if args.resume else "fresh" if args.fresh else "refuse",
                        overrides=args.overrides, draw=None if args.no_figures else draw_sweep,
                        command=_command())
    spec = res.spec
    w = sys.stdout.write
    w(f"\nSweep '{spec.name or args.spec.stem}': {res.replications} replications per point, seed {spec.seed}, "
      f"warm-up {res.warmup_days} days; {res.computed} tasks run now in {res.seconds:.1f} s on {ex.name} "
      f"({ex.workers} workers)\n")
    if not res.summary.empty:
        params = [p.path for p in spec.parameters]
        labels = {p.path: p.name for p in spec.parameters}
        kpi = spec.kpis[0]
        unit = kpi_info(kpi).unit
        sub = res.summary[res.summary["kpi"] == kpi]
        w(f"\n{kpi_info(kpi).label} ({unit}): mean [95% CI]\n")
        widths = {p: max(8, len(labels[p])) for p in params}
        w("  ".join(f"{labels[p]:>{widths[p]}}" for p in params) + f"  {'mean':>10}  95% CI\n")
        for _, row in sub.iterrows():
            vals = "  ".join(f"{_short(row[p]):>{widths[p]}}" for p in params)
            w(f"{vals}  {fmt(row['mean'], unit):>10}  [{fmt_ci(row['ci_low'], row['ci_high'], unit)}]\n")
    if res.target is not None:
        w(f"\nTarget: {res.target.sentence()}\n")
    if res.sensitivity is not None:
        w(f"\nSensitivity ({spec.sensitivity.method if spec.sensitivity else ''}):\n")
        w(res.sensitivity.round(3).to_string(index=False) + "\n")
    w(f"\nOutputs: {res.out}\n")
    return 0


def _compare_differences(result: Any) -> str:
    from flowsim.report.format import fmt, fmt_ci

    diffs = result.differences(result.kpis())
    width = max(len(str(x)) for x in diffs["label"]) if not diffs.empty else 10
    lines = []
    for name in result.names[1:]:
        lines.append(f"\n{name}: option - baseline, mean [95% CI]   (* = distinguishable from zero)")
        for _, r in diffs[diffs["option"] == name].iterrows():
            unit = str(r["unit"])
            mark = "*" if r["distinguishable"] else " "
            lines.append(f"  {mark} {r['label']:<{width}} {fmt(r['baseline_mean'], unit):>10} -> "
                         f"{fmt(r['option_mean'], unit):>10}  {fmt(r['diff_mean'], unit):>9} "
                         f"[{fmt_ci(r['ci_low'], r['ci_high'], unit)}] {unit}")
    return "\n".join(lines) + "\n"


def _compare_economics(result: Any) -> str:
    from flowsim.report.appraisal_text import decision_lines

    return "\n".join(decision_lines(result.decision(), result.names[0])) + "\n"


def _cmd_compare(args: argparse.Namespace) -> int:
    from flowsim.appraisal import compare, write_comparison
    from flowsim.report.appraisal_figures import comparison_figures
    from flowsim.report.figures import draw_run
    from flowsim.report.format import fmt
    from flowsim.rundir import abandon_on_error, claim_output, finish_output
    from flowsim.scenario import load_scenario

    paths = [args.baseline, *args.options]
    scenarios = [load_scenario(p, args.overrides) for p in paths]  # every file checked before anything runs
    out = args.out or Path("outputs") / f"compare-{dt.datetime.now():%Y%m%d-%H%M%S}"
    claimed = claim_output(out, "comparison", overwrite=args.overwrite, command=_command())
    with abandon_on_error(claimed), _executor(args, args.replications) as ex:
        result = compare(scenarios[0], scenarios[1:], args.replications, args.seed, executor=ex,
                         keep_patients=not args.no_patients)
    bad = [c for run in result.runs for c in run.checks]
    for problem in bad:
        log.error("internal check failed (please report): %s", problem)
    write_comparison(result, claimed, command=_command(), files=[str(p) for p in paths],
                     draw=None if args.no_figures else comparison_figures,
                     draw_run=None if args.no_figures else draw_run)
    finish_output(claimed)
    w = sys.stdout.write
    w(f"\nOptions against '{result.names[0]}': {args.replications} paired replications each, seed {args.seed} "
      "(common random numbers)\n")
    if args.overrides:
        w("Changed for this run in every scenario: " + "; ".join(args.overrides) + "\n")
    w(_compare_differences(result))
    w(_compare_economics(result))
    t = result.targets()
    w("\nNational standards (met / missed / uncertain at 95%):\n")
    for std, grp in t.groupby("standard", sort=False):
        cells = ", ".join(f"{r['scenario']} {fmt(r['mean'])} {r['verdict']}" for _, r in grp.iterrows())
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


def _cmd_export(args: argparse.Namespace) -> int:
    from flowsim.report.workbook import WORKBOOK, is_flowsim_workbook, manifest_lists, write_workbook
    from flowsim.rundir import check_complete, guard_file

    kind = check_complete(args.directory)  # never a workbook of an interrupted or mixed directory
    out = args.out or args.directory / WORKBOOK
    if args.out is None and manifest_lists(args.directory, WORKBOOK):
        sys.stdout.write(f"The {kind} in {args.directory} already has its workbook (written by the {kind}): {out}\n")
        return 0
    guard_file(out, args.overwrite, is_flowsim_workbook, "--out")
    path = write_workbook(args.directory, out)
    sys.stdout.write(f"Workbook of the {kind} in {args.directory}: {path}\n")
    return 0


def _cmd_app(args: argparse.Namespace) -> int:
    from flowsim.app.server import serve

    return serve(args.port, args.host, args.outputs)


def _budget(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        pop, it = (int(v) for v in text.split(","))
        if pop < 2 or it < 1:
            raise ValueError
    except ValueError:
        raise FlowsimError(f"--budget: expected POPSIZE,MAXITER with POPSIZE >= 2 and MAXITER >= 1, "
                           f"got {text!r}") from None
    return pop, it


def _signed(x: float) -> str:
    return f"{x:+.2f}" if math.isfinite(x) else "undefined"


def _write_scores(res: Any, w: Callable[[str], Any]) -> None:
    """The fit table (fresh replications, with the fitting replications' error beside it), the mean absolute
    errors, prediction-interval coverage and the verdicts against the naive forecasts."""
    from flowsim.report.format import fmt, fmt_ci

    w(f"\nOn {res.scoring_replications} fresh replications (seed {res.scoring_seed}); 'in sample' = on the "
      f"{res.problem.config.replications} fitting replications:\n")
    w(f"{'target':<18} {'role':<9} {'observed':>10} {'simulated':>10}  {'95% CI':<24} {'90% PI':<22} "
      f"{'in sample':>9} {'error':>8}\n")
    for _, r in res.report.iterrows():
        w(f"{r['target']:<18} {r['role']:<9} {fmt(r['observed']):>10} {fmt(r['simulated']):>10}  "
          f"{'[' + fmt_ci(r['ci_low'], r['ci_high']) + ']':<24} "
          f"{'[' + fmt_ci(r['pi90_low'], r['pi90_high']) + ']':<22} "
          f"{r['fitting_error_pct']:>8.1f}% {r['error_pct']:>7.1f}%\n")
    oos = "n/a" if res.out_of_sample_error_pct is None else f"{res.out_of_sample_error_pct:.1f}%"
    w(f"\nMean absolute error: in sample {res.in_sample_error_pct:.1f}%, out of sample (held out) {oos}"
      " (fresh replications)\n")
    for group, s in res.scores.items():
        ci = s["model"]["mean_abs_error_pct_ci95"]
        cov = s["coverage"]
        w(f"  {group}: model {s['model']['mean_abs_error_pct']:.1f}% [95% CI {ci[0]:.1f}%, {ci[1]:.1f}%], "
          f"{s['model']['mean_abs_error_pct_fitting_replications']:.1f}% on the fitting replications; observed "
          f"inside the 50% PI {cov['pi50']['inside']} of {cov['pi50']['of']}, inside the 90% PI "
          f"{cov['pi90']['inside']} of {cov['pi90']['of']}\n")
        for n in s["naive"].values():
            w(f"    naive {n['name']}: {n['mean_abs_error_pct']:.1f}% on {len(n['targets'])} target(s); skill "
              f"{_signed(n['skill'])} (CRPS skill {_signed(n['crps_skill'])})\n")
        for sentence in s["verdicts"]:
            w(f"  {sentence}\n")


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from flowsim.calibration.calibrate import calibrate, default_output, is_fitted_scenario, load_problem
    from flowsim.report.calibration_figures import draw_calibration
    from flowsim.rundir import abandon_on_error, claim_output, finish_output, guard_file

    budget: tuple[int, ...] | None = _budget(args.budget)
    prob = load_problem(args.config)
    if args.scoring_replications is not None:
        if args.scoring_replications < 2:
            raise FlowsimError(f"--scoring-replications: expected a whole number of at least 2, "
                               f"got {args.scoring_replications}")
        budget = (*(budget or (prob.config.optimiser.popsize, prob.config.optimiser.maxiter)),
                  args.scoring_replications)
    prob.build({})  # a bad configuration or scenario is reported before anything is written
    if args.write_scenario is not None:
        guard_file(args.write_scenario, args.overwrite, is_fitted_scenario, "--write-scenario")
    claimed = claim_output(args.out or default_output(prob), "calibration", overwrite=args.overwrite,
                           command=_command())
    with abandon_on_error(claimed), _executor(args) as ex:
        res = calibrate(args.config, claimed, executor=ex, draw=None if args.no_figures else draw_calibration,
                        write_scenario=args.write_scenario, budget=budget, command=_command())
    finish_output(claimed)
    w = sys.stdout.write
    cfg = res.problem.config
    w(f"\nCalibration '{cfg.name or args.config.stem}': {len(res.evaluations)} candidates x {cfg.replications} "
      f"replications (seed {cfg.seed}, common random numbers) in {res.seconds:.0f} s; scored on "
      f"{res.scoring_replications} fresh replications (seed {res.scoring_seed})\n\nFitted (approximate 95% "
      "set over the candidates evaluated):\n")
    for p in cfg.free:
        lo, hi = res.intervals[p.path]
        w(f"  {p.label or p.path:<40} {res.best[p.path]!s:>8}   [{lo:g}, {hi:g}]   searched [{p.low:g}, {p.high:g}]\n")
    _write_scores(res, w)
    w(f"Fitted scenario: {res.files['scenario']}\nOutputs: {res.files['meta'].parent}\n")
    return 0


def _cmd_fit_data(args: argparse.Namespace) -> int:
    from flowsim.calibration.fitdata import check_against, fit_extract, flow_syntax, parse_columns
    from flowsim.report.fitdata_figures import write_figures
    from flowsim.rundir import atomic_text

    res = fit_extract(args.extract, parse_columns(args.columns), args.group_by, min_los=args.min_los)
    out = args.out or args.extract.with_name(f"{args.extract.stem}_fitted.yaml")
    atomic_text(out, res.fragment_yaml())
    w = sys.stdout.write
    a = res.arrivals
    w(f"{args.extract}: {res.extract.n} spells over {a.days} days ({a.mean_per_day:.2f} admissions a day)"
      + (" - SYNTHETIC extract" if res.extract.synthetic else "") + "\n")
    w(f"\n{'cohort':<24} {'spells':>7} {'share':>7}  acute LOS chosen by AIC (next best, AIC difference)\n")
    for c in res.cohorts:
        nxt = f"{c.candidates[1].family} +{c.candidates[1].aic - c.winner.aic:.1f}" if len(c.candidates) > 1 else ""
        w(f"{c.name:<24} {c.n:>7} {c.share:>7.3f}  {flow_syntax(c.winner.spec)} ({nxt})\n")
    if not res.delays.empty:
        w("\nMedically fit -> discharge, days (descriptive; a model output, not an input):\n")
        for _, r in res.delays.iterrows():
            w(f"  {r['pathway']:<4} {r['spells']:>7} spells  mean {r['mean_days']:6.2f}  median "
              f"{r['median_days']:6.2f}  p90 {r['p90_days']:6.2f}\n")
    for n in res.notes:
        w(f"Note: {n}\n")
    w(f"\nScenario fragment: {out}\n")
    if args.figures is not None:
        written = write_figures(res, args.figures)
        w(f"Figures and tables ({len(written)} files): {args.figures}\n")
    if args.check is not None:
        sc = check_against(out, args.check)
        w(f"Check: the fragment merged into {args.check} validates ('{sc.name}', {len(sc.cohorts)} cohorts)\n")
    return 0


def _cmd_synth_extract(args: argparse.Namespace) -> int:
    from flowsim.calibration.synthetic import SYNTHETIC_LABEL, write_extract

    csv_path, json_path = write_extract(args.out, spells=args.spells, days=args.days, seed=args.seed,
                                        start=args.start)
    meta = json.loads(json_path.read_text(encoding="utf-8"))
    sys.stdout.write(f"{SYNTHETIC_LABEL}: {meta['spells']} spells over {meta['days']} days from "
                     f"{meta['start_date']}, seed {args.seed}\n  extract: {csv_path}\n  parameters: {json_path}\n")
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
    verbose = bool(getattr(args, "verbose", False))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="flowsim: %(levelname)s: %(message)s")
    if not verbose:
        # Dask logs cluster life (and benign shutdown noise) at INFO in this process and in its workers; the
        # environment variable reaches worker processes too, and flowsim reports task failures itself
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "critical")
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
    commands = {"run": _cmd_run, "sweep": _cmd_sweep, "compare": _cmd_compare, "calibrate": _cmd_calibrate,
                "validate": _cmd_validate, "schema": _cmd_schema, "report": _cmd_report, "export": _cmd_export,
                "app": _cmd_app}
    try:
        handler = getattr(args, "func", None) or commands[args.command]
        return handler(args)
    except TaskError as exc:  # a failure inside a worker: name the task; the traceback is for -v
        sys.stderr.write(f"flowsim: error: {exc}\n")
        if verbose and exc.worker_traceback:
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
