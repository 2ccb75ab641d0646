"""Command-line front end: a thin layer over the Python API.

``main(argv=None) -> int`` so tests can call it directly and the console
script, ``python -m flowsim`` and subprocess tests all share one path.
User mistakes (bad files, bad values) print ``flowsim: error: ...`` lines and
return 2 with no traceback; anything else is a bug and is allowed to raise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from flowsim import __version__
from flowsim.errors import FlowsimError
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
COST_KPIS = ["cost_acute_delay", "cost_service_care", "service_capacity_cost", "total_cost"]


def headline(sc: Scenario) -> list[str]:
    """The KPIs worth a line in the terminal for this scenario."""
    names = list(HEADLINE)
    if sc.mode == "pathway_only":  # no acute stay or front door: waits, services and costs instead
        names = [n for n in names if n not in ACUTE_FRONT_DOOR]
        names += [f"service_{s}_utilisation_pct" for pw in sc.pathways.values() for s in pw.services]
    if sc.electives is not None:
        names += ELECTIVE_KPIS
    if sc.escalation is not None:
        names += ESCALATION_KPIS
    services = [s for pw in sc.pathways.values() for s in pw.services.values()]
    if sc.costs.acute_delay_per_day or any(s.unit_cost_per_day or s.cost_per_occupied_day for s in services):
        names += COST_KPIS
    return names


def _int_at_least(minimum: int) -> Callable[[str], int]:
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


_positive_int = _int_at_least(1)
_seed = _int_at_least(0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowsim", description=(
        "Simulate patient flow through a local health and care system and where patients get stuck "
        "on the way out of hospital (delayed transfers of care)."))
    parser.add_argument("--version", action="version", version=f"flowsim {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a scenario and write a run directory")
    run.add_argument("scenario", type=Path, help="scenario YAML file")
    run.add_argument("--replications", "-n", type=_positive_int, default=10, help="replications (default 10)")
    run.add_argument("--seed", type=_seed, default=12345, help="base random seed (default 12345)")
    run.add_argument("--out", type=Path, default=None,
                     help="run directory (default outputs/<scenario>-<timestamp>)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                     help="override a scenario field, e.g. --set acute.beds=450 (repeatable)")
    run.add_argument("--workers", type=_positive_int, default=None,
                     help="parallel processes (default: one per core, at most one per replication)")
    run.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    run.add_argument("--all-kpis", action="store_true", help="print every KPI, not just the headline set")

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


def _cmd_run(args: argparse.Namespace) -> int:
    from flowsim.experiment import simulate
    from flowsim.rundir import kpi_table_text, write_run_dir
    from flowsim.scenario import load_scenario

    sc = load_scenario(args.scenario, args.overrides)
    out = args.out or Path("outputs") / f"{args.scenario.stem}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    log.info("running %s: %d replications, seed %d", sc.name, args.replications, args.seed)
    result = simulate(sc, replications=args.replications, seed=args.seed, workers=args.workers)
    for problem in result.checks:
        log.error("internal check failed (please report): %s", problem)
    write_run_dir(result, out, command=["flowsim", *sys.argv[1:]], figures=not args.no_figures)
    table = result.summary()
    names = list(table.index) if args.all_kpis else [n for n in headline(sc) if n in table.index]
    sys.stdout.write(f"\n{sc.name}: {args.replications} replications, seed {args.seed}, "
                     f"{sc.simulation.start_date} to {sc.simulation.end_date} "
                     f"(after {sc.simulation.warmup_days} warm-up days)\n\n")
    sys.stdout.write(kpi_table_text(table, names) + "\n\n")
    quarters = result.periods("Q")
    sys.stdout.write("DTOC delayed days by NHS quarter (midnight census, acute + community):\n")
    for _, q in quarters.iterrows():
        ci = "" if q["ci_low"] != q["ci_low"] else f"  [{q['ci_low']:,.0f}, {q['ci_high']:,.0f}]"
        sys.stdout.write(f"  {q['period']} ({q['days']:>2} days): {q['delayed_days']:>8,.0f}{ci}"
                         f"   {q['rate_per_100k']:>7,.1f} per 100k 18+\n")
    sys.stdout.write(f"\nRun directory: {out}\n")
    return 1 if result.checks else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="flowsim: %(levelname)s: %(message)s")
    commands = {"run": _cmd_run, "validate": _cmd_validate, "schema": _cmd_schema}
    try:
        return commands[args.command](args)
    except FlowsimError as exc:
        for line in str(exc).splitlines():
            sys.stderr.write(f"flowsim: error: {line}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("flowsim: interrupted; files already written are complete\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
