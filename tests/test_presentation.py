"""What people see (issue 14, points 2, 3, 8 and 9): names, labels, overrides, the CLI's manners and money.

Each test reproduces a finding of issue 14 on tiny scenarios built here:
- figure labels were cut ("Ackroyd hous") and acronyms lowercased ("Irr", "Asc"); a scenario name with
  ``$...$`` crashed the figures (matplotlib mathtext);
- a run with ``--set`` looked like the unmodified scenario in the terminal and the figure titles;
- ``flowsim run -v`` failed (only ``flowsim -v run`` worked); ``validate`` and ``schema`` had no description;
- the headline showed the per-quarter rate instead of the BCF target's own unit, and £28M totals to the penny;
- the decision rule was stated one way in the README and applied another way in the code.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib as mpl
import pytest
import yaml
from matplotlib.figure import Figure

from flowsim import simulate
from flowsim.appraisal import DECISION_RULE, Comparison, compare
from flowsim.cli import build_parser, main
from flowsim.errors import ScenarioError
from flowsim.experiment.runner import RunResult
from flowsim.report.appraisal_figures import comparison_plots
from flowsim.report.figures import png_bytes, run_figures, run_title
from flowsim.report.html import render_comparison_report, render_run_report
from flowsim.scenario import load_scenario, scenario_to_dict, validate_dict
from flowsim.scenario.provenance import render_assumptions

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = ROOT / "scenarios" / "minimal.yaml"
DOLLARS = "Winter plan $1.5m^$ for 2017"        # '$1.5m^$' is not valid mathtext
LONG_LABEL = "IRR and home reablement (in-house), with the Ackroyd House winter beds in the same pool"

Builder = Callable[..., dict[str, Any]]


def texts(fig: Figure) -> list[str]:
    """Every piece of text a figure draws (titles, labels, tick labels, legend entries)."""
    fig.canvas.draw()
    return [t.get_text() for t in fig.findobj(mpl.text.Text) if t.get_text()]


@pytest.fixture(scope="module")
def small(scenario_builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """P1 with a long labelled service, a name full of dollars, one --set change."""
    data = scenario_builder(rate=6.0, beds=10, pathway_mix={"P0": 0.8, "P1": 0.2}, duration_days=30,
                            warmup_days=5, name=DOLLARS,
                            pathways={"P0": {}, "P1": {"services": {"irr_reablement": {
                                "label": LONG_LABEL, "capacity": 2, "los": {"dist": "exponential", "mean": 3.0}}}}})
    path = tmp_path_factory.mktemp("presentation") / "small.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    sc = load_scenario(path, ["pathways.P1.services.irr_reablement.capacity=3"])
    return simulate(sc, replications=2, seed=3, workers=1, progress=False)


# ============================================================================ figures
def test_mathtext_is_off_for_user_text(small: RunResult) -> None:
    """The control first: with matplotlib's defaults the name crashes a figure; flowsim's figures draw it."""
    fig = Figure()
    fig.suptitle(DOLLARS)
    with pytest.raises(ValueError):
        png_bytes.__wrapped__(fig)  # type: ignore[attr-defined]  # saved without flowsim's plain-text context
    figs = run_figures(small.daily(), run_title(small), _services(small), "full")
    for name, fig in figs.items():
        assert png_bytes(fig).startswith(b"\x89PNG"), name
        assert any("$1.5m^$" in t for t in texts(fig)), name


def _services(result: RunResult) -> Any:
    from flowsim.report.figures import Services

    return Services.of(scenario_to_dict(result.scenario))


def test_labels_wrap_and_keep_their_case(small: RunResult) -> None:
    fig = run_figures(small.daily(), run_title(small), _services(small), "full")["queues.png"]
    title = next(t for t in texts(fig) if t.startswith("P1 places"))
    assert "\n" in title, "a long label wraps"
    assert " ".join(title.split()) == f"P1 places: {LONG_LABEL}", "and is never cut or re-cased"
    assert "Irr" not in title and "IRR" in title


def test_figure_titles_say_the_run_changed_its_scenario(small: RunResult) -> None:
    assert run_title(small) == f"{DOLLARS} (changed for this run: 1 setting)"
    fig = run_figures(small.daily(), run_title(small), _services(small), "full")["delays.png"]
    heading = " ".join(next(t for t in texts(fig) if t.startswith("Delayed transfers of care")).split())
    assert heading.endswith("(changed for this run: 1 setting)")


def test_comparison_charts_use_the_one_display_name(scenario_builder: Builder) -> None:
    base = validate_dict(scenario_builder(duration_days=20, warmup_days=5, name="Baseline: ASC beds as today"))
    long_name = "Option with a long name: IRR reablement plus seven-day assessment and trusted assessors"
    option = validate_dict(scenario_builder(duration_days=20, warmup_days=5, beds=11, name=long_name))
    cmp = compare(base, [option], 2, 4, workers=1, progress=False, keep_patients=False)
    assert cmp.names == ["Baseline: ASC beds as today", long_name]
    plots = comparison_plots(cmp)
    legend = [" ".join(t.split()) for t in texts(plots["dtoc_trajectory.png"])]
    assert f"baseline: {cmp.names[0]}" in legend and long_name in legend
    ticks = [" ".join(t.split()) for t in texts(plots["differences.png"])]
    assert cmp.names[0] not in ticks and long_name in ticks   # the forest plot shows options
    html = render_comparison_report(cmp)
    assert long_name in html and not re.search(r"Option [A-Z]\b", html)


# ============================================================================ the scenario as run
def test_assumptions_quote_fields_as_run(scenario_builder: Builder) -> None:
    data = scenario_builder(assumptions=["Beds: {acute.beds}; mean stay {cohorts.everyone.acute_los.mean} days."])
    sc = validate_dict(data)
    assert render_assumptions(scenario_to_dict(sc)) == ["Beds: 10; mean stay 1 days."]
    data["acute"]["beds"] = {"base": 10, "periods": [{"start": "2024-02-01", "end": "2024-02-29", "add": 4}]}
    assert render_assumptions(scenario_to_dict(validate_dict(data)))[0].startswith(
        "Beds: 10, then +4 from 2024-02-01 to 2024-02-29;")
    data["assumptions"] = ["Fine.", "Beds {acute.bedz}"]
    with pytest.raises(ScenarioError, match=r"assumptions\.1: \{acute\.bedz\} names no field of this scenario"):
        validate_dict(data)


def test_render_a_run_report_from_the_result_object(small: RunResult) -> None:
    html = render_run_report(small)
    assert html.startswith("<!DOCTYPE html>") and 'id="changes-for-this-run"' in html
    assert "pathways.P1.services.irr_reablement.capacity = 3 (scenario file: 2; --set)" in html
    assert "results in memory" in html


# ============================================================================ the command line
def test_global_flags_before_or_after_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["-v", "validate", "x.yaml"]).verbose is True
    assert parser.parse_args(["validate", "x.yaml", "-v"]).verbose is True
    assert parser.parse_args(["validate", "-v", "x.yaml"]).verbose is True
    assert getattr(parser.parse_args(["validate", "x.yaml"]), "verbose", False) is False
    for argv in (["--version"], ["run", "--version"], ["schema", "--version"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        assert exc.value.code == 0 and capsys.readouterr().out.startswith("flowsim ")
    assert main(["validate", str(MINIMAL), "-v"]) == 0


def test_every_subcommand_has_a_description() -> None:
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) >= {"run", "sweep", "compare", "report", "calibrate", "fit-data", "synth-extract",
                                 "validate", "schema"}
    for name, p in subs.choices.items():
        assert p.description and len(p.description) > 60, name
    helps = {a.dest: a.help for a in subs._choices_actions}
    assert all(helps.values()), helps


def test_terminal_headline_money_and_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The headline carries the BCF target's unit (delayed patients a day per 100,000 aged 18+) beside the
    quarterly rate; money is rounded for a board; every --set change is listed with the file's value."""
    rc = main(["run", str(MINIMAL), "-n", "2", "--workers", "1", "--no-figures", "--out", str(tmp_path / "r"),
               "--set", "simulation.duration_days=30", "--set", "simulation.warmup_days=10",
               "--set", "costs.acute_delay_per_day=150"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "Delayed patients per day per 100,000 aged 18+" in out
    assert "DTOC delayed days per 100,000 aged 18+ per quarter" in out
    assert "a day per 100k 18+ (BCF target unit)" in out
    assert re.search(r"Total cost\s+£\d+(\.\d+)?[km]?\s", out), out
    assert not re.search(r"\d,\d{3}\.\d\d", out), "no money to the penny"
    assert "Changed for this run (not as in the scenario file):" in out
    assert "costs.acute_delay_per_day = 150 (not set in the file; --set)" in out
    assert "simulation.warmup_days = 10 (scenario file: 60; --set)" in out


def test_no_patients_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["run", str(MINIMAL), "-n", "1", "--workers", "1", "--no-figures", "--no-patients", "--out",
               str(tmp_path / "r"), "--set", "simulation.duration_days=10", "--set", "simulation.warmup_days=0"])
    assert rc == 0, capsys.readouterr()
    assert (tmp_path / "r" / "summary.json").exists() and not (tmp_path / "r" / "patients.parquet").exists()


def test_readme_states_the_rule_the_code_applies() -> None:
    readme = " ".join(ROOT.joinpath("README.md").read_text(encoding="utf-8").replace("**", "").split())
    assert " ".join(DECISION_RULE.split()) in readme
    assert Comparison.economics.__doc__ and "rank order" in Comparison.economics.__doc__
