"""The web app's parts without a browser (issue 17): levers, the changes they make, the YAML diff, the workbook,
pairing kept runs, the progress callback, downloads, and the CLI's ``--xlsx``, ``export`` and ``app``.

Each test states what it proves; the runs are tiny (the minimal scenario, 20 reported days, 3 replications) and
shared through module fixtures.
"""

from __future__ import annotations

import json
import shutil
import socket
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pytest

from flowsim.app import downloads, session
from flowsim.appraisal import compare, compare_runs, write_comparison
from flowsim.cli import main
from flowsim.errors import FlowsimError, ScenarioError
from flowsim.experiment import simulate
from flowsim.report.workbook import SHEETS_COMPARISON, SHEETS_RUN, write_workbook
from flowsim.rundir import COMPLETE, check_complete, write_run_dir
from flowsim.scenario import load_scenario, scenario_hash
from flowsim.scenario.levers import changed_settings, extends_yaml, levers_of, scenario_levers
from flowsim.scenario.types import MAX_COUNT, MAX_RATE

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
MINIMAL = SCENARIOS / "minimal.yaml"
ROTHERHAM = SCENARIOS / "rotherham_2016.yaml"
WINTER = SCENARIOS / "rotherham_winter_2016.yaml"
SHORT = ["simulation.duration_days=20", "simulation.warmup_days=5"]
REPS, SEED = 3, 99


def by_path(path: Path | str) -> dict[str, Any]:
    return {lv.path: lv for lv in scenario_levers(path)[1]}


# ------------------------------------------------------------------------------------------------ levers
def test_levers_carry_the_schema_bounds_and_the_files_notes() -> None:
    """Bounds come from the schema's bounded types, notes from the comment beside (or above) the field."""
    rot = by_path(ROTHERHAM)
    beds = rot["acute.beds.base"]  # a capacity schedule: its base is the lever
    assert (beds.value, beds.low, beds.high, beds.kind, beds.unit) == (555, 0, MAX_COUNT, "int", "beds")
    base_line = 1 + ROTHERHAM.read_text(encoding="utf-8").splitlines().index("    base: 555")
    assert "ASSUMPTION: G&A bed count ABSENT" in beds.note and beds.where.endswith(f"rotherham_2016.yaml:{base_line}")
    ic = rot["pathways.P2.services.intermediate_care.capacity"]
    assert ic.value == 54 and 'F3:2939 "currently 54 beds' in ic.note and "Intermediate Care" in ic.label
    assert rot["arrivals.annual_growth"].note.startswith("SF §1, F4:29-30")
    assert rot["discharge.weekend_rate.P1"].value == 0.5 and rot["discharge.weekend_rate.P1"].high == 1.0
    rate = rot["arrivals.rate_per_day"]
    assert rate.low == pytest.approx(rate.step) and rate.high == MAX_RATE  # the rate's open lower end moved in
    for expected in ("assessment.staff", "assessment.weekend_staff.base", "assessment.hours.start",
                     "discharge.hours.end", "pathways.P3.services.oakwood.capacity"):
        assert expected in rot
    assert "escalation" not in rot
    mini = by_path(MINIMAL)
    assert mini["assessment.weekend_staff"].note == "not set in the scenario file: flowsim's default"
    winter = by_path(WINTER)
    assert winter["escalation"].kind == "bool" and winter["escalation"].value is True
    assert winter["acute.beds"].where.endswith("rotherham_winter_2016.yaml:37")  # the file that set it


def test_capacities_are_found_from_the_schema_wherever_they_are() -> None:
    """No list to keep in step: a limited home-care capacity (a field no lever pattern names) is a lever, and a
    service added to a scenario brings its own."""
    sc = load_scenario(MINIMAL, ["home_care={capacity: 10, stay: {dist: fixed, value: 5}}",
                                 "pathways.P1.services.extra={capacity: 7, los: {dist: fixed, value: 3}}"])
    paths = {lv.path: lv for lv in levers_of(sc)}
    assert paths["home_care.capacity"].value == 10
    assert paths["pathways.P1.services.extra.capacity"].value == 7
    assert "home_care.capacity" not in by_path(MINIMAL)  # unlimited home care has no number to move


def test_a_lever_bound_is_exactly_what_validation_allows() -> None:
    beds = by_path(MINIMAL)["acute.beds"]
    assert load_scenario(MINIMAL, [beds.setting(beds.high)]).acute.beds == MAX_COUNT
    with pytest.raises(ScenarioError, match=r"acute\.beds: allowed: a whole number from 0 to 100,000"):
        load_scenario(MINIMAL, [beds.setting(beds.high + 1)])


def test_moved_levers_become_recorded_overrides() -> None:
    levers = scenario_levers(MINIMAL)[1]
    settings = changed_settings(levers, {"acute.beds": 140.0, "arrivals.rate_per_day": 20.0,
                                         "discharge.weekend_rate": 0.75})
    assert settings == ["acute.beds=140", "discharge.weekend_rate=0.75"]  # an unmoved lever changes nothing
    sc = load_scenario(MINIMAL, settings)
    assert sc.acute is not None and sc.acute.beds == 140
    assert [(o.path, o.value, o.was) for o in sc.overrides] == [("acute.beds", 140, 130),
                                                                ("discharge.weekend_rate", 0.75, 0.6)]
    off = by_path(WINTER)["escalation"]
    assert off.setting(False) == "escalation=null"
    assert load_scenario(WINTER, [off.setting(False)]).escalation is None


@pytest.mark.parametrize(("base", "settings"), [
    (ROTHERHAM, ["acute.beds.base=560", "discharge.weekend_rate.P1=0.7", "assessment.staff=16"]),
    (SCENARIOS / "rotherham_pathway_only.yaml", ["demand.2.rate_per_day=0.9"]),  # a list is written whole
    (WINTER, ["escalation=null", "simulation.duration_days=30"]),
])
def test_the_yaml_diff_loads_as_the_scenario_that_was_run(tmp_path: Path, base: Path, settings: list[str]) -> None:
    """``extends:`` the base by its absolute path, only the changed fields, and the same content hash."""
    text = extends_yaml(base, settings)
    out = tmp_path / "elsewhere" / "option.yaml"
    out.parent.mkdir()
    out.write_text(text, encoding="utf-8")
    assert f"extends: {base.resolve()}" in text and f"# Changes to {base.resolve()} made on" in text
    loaded = load_scenario(out)
    assert scenario_hash(loaded) == scenario_hash(load_scenario(base, settings))
    assert not loaded.overrides  # the settings are the file now
    import yaml

    doc = yaml.safe_load(text)
    assert set(doc) == {"extends"} | {s.split(".")[0].split("=")[0] for s in settings}


# ------------------------------------------------------------------------------------------------ runs
@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two kept app runs (baseline and 10 fewer beds) on the same seed, and their paired comparison."""
    root = tmp_path_factory.mktemp("app")
    seen: list[tuple[int, int]] = []
    base = session.run_scenario(MINIMAL, SHORT, replications=REPS, seed=SEED, name="Base", root=root,
                                on_progress=lambda d, t: seen.append((d, t)), workers=1)
    opt = session.run_scenario(MINIMAL, [*SHORT, "acute.beds=120"], replications=REPS, seed=SEED, name="Fewer beds",
                               root=root, workers=1)
    cmp = session.compare_kept(base, [opt], root)
    return {"root": root, "base": base, "opt": opt, "cmp": cmp, "progress": seen}


def test_an_app_run_is_a_complete_run_directory_with_its_command(runs: dict[str, Any]) -> None:
    base = runs["base"]
    assert check_complete(base.directory) == "run"
    summary = json.loads((base.directory / "summary.json").read_text())
    assert summary["command"] == base.command and "--seed" in summary["command"]
    assert summary["overrides"] == ["simulation.duration_days = 20 (scenario file: 182; --set)",
                                    "simulation.warmup_days = 5 (scenario file: 60; --set)"]
    assert runs["progress"] == [(1, REPS), (2, REPS), (3, REPS)]  # the progress callback, once per replication
    assert check_complete(runs["cmp"].directory) == "comparison"


def test_kept_runs_pair_exactly_as_flowsim_compare(runs: dict[str, Any]) -> None:
    """The same differences and decision as ``compare()`` running both scenarios afresh on the same seed."""
    fresh = compare(load_scenario(MINIMAL, SHORT), [load_scenario(MINIMAL, [*SHORT, "acute.beds=120"])], REPS, SEED,
                    names=["Base", "Fewer beds"], keep_patients=False)
    kept = runs["cmp"].comparison
    pd.testing.assert_frame_equal(kept.differences(kept.kpis()), fresh.differences(fresh.kpis()))
    pd.testing.assert_frame_equal(kept.economics(), fresh.economics())


def test_runs_that_cannot_be_paired_are_refused(runs: dict[str, Any], tmp_path: Path) -> None:
    other_seed = simulate(load_scenario(MINIMAL, SHORT), REPS, SEED + 1, progress=False, keep_patients=False)
    fewer = simulate(load_scenario(MINIMAL, SHORT), REPS - 1, SEED, progress=False, keep_patients=False)
    with pytest.raises(FlowsimError, match=r"'B' ran on seed 100, the baseline 'A' on seed 99"):
        compare_runs(runs["base"].result, [other_seed], ["A", "B"])
    with pytest.raises(FlowsimError, match=r"'B' has 2 replications, the baseline 'A' 3"):
        compare_runs(runs["base"].result, [fewer], ["A", "B"])


# ------------------------------------------------------------------------------------------------ workbook
def test_the_run_workbook_holds_the_directorys_numbers(runs: dict[str, Any], tmp_path: Path) -> None:
    d = runs["base"].directory
    wb = openpyxl.load_workbook(write_workbook(d, tmp_path / "run.xlsx"), read_only=True)
    assert wb.sheetnames == list(SHEETS_RUN)
    summary = json.loads((d / "summary.json").read_text())
    kpis = pd.DataFrame(list(wb["KPIs"].values)[1:], columns=list(next(wb["KPIs"].values)))
    for name in ("delayed_patients_per_day", "occupancy_mean_pct"):
        row = kpis[kpis["kpi"] == name].iloc[0]
        assert (row["mean"], row["ci_low"], row["ci_high"]) == pytest.approx(
            (summary["kpis"][name]["mean"], summary["kpis"][name]["ci_low"], summary["kpis"][name]["ci_high"]))
    daily = pd.read_csv(d / "daily.csv")
    sheet = pd.DataFrame(list(wb["Daily"].values)[1:], columns=list(next(wb["Daily"].values)))
    assert len(sheet) == 20  # one row per day: the mean across replications
    expected = daily.groupby("day")["delayed_midnight"].mean().to_numpy()
    assert sheet["delayed_midnight"].to_numpy(dtype=float) == pytest.approx(expected)
    readme = {r[0]: r[1] for r in list(wb["README"].values)[1:]}
    assert readme["  seed"] == SEED and readme["  replications"] == REPS
    assert "MEAN ACROSS REPLICATIONS" in readme["Sheet Daily"]
    quarters = list(wb["Quarters"].values)
    assert len(quarters) - 1 == len(summary["quarters"])


def test_the_comparison_workbook_has_the_options_compared(runs: dict[str, Any], tmp_path: Path) -> None:
    d = runs["cmp"].directory
    wb = openpyxl.load_workbook(downloads_to(tmp_path, downloads.workbook(d)), read_only=True)
    assert wb.sheetnames == list(SHEETS_COMPARISON)
    compared = pd.DataFrame(list(wb["Compared"].values)[1:], columns=list(next(wb["Compared"].values)))
    diffs = pd.read_csv(d / "differences.csv")
    assert list(compared["kpi"]) == list(diffs["kpi"])
    assert compared["diff_mean"].to_numpy(dtype=float) == pytest.approx(diffs["diff_mean"].to_numpy())
    scenarios = {r[0] for r in list(wb["KPIs"].values)[1:]}
    assert scenarios == {"Base", "Fewer beds"}


def downloads_to(tmp: Path, data: bytes, name: str = "download.xlsx") -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def test_the_zip_download_is_the_manifest(runs: dict[str, Any]) -> None:
    d = runs["base"].directory
    listed = json.loads((d / COMPLETE).read_text())["files"]
    with zipfile.ZipFile(downloads_to(d.parent, downloads.directory_zip(d), "run.zip")) as z:
        names = {n.split("/", 1)[1] for n in z.namelist()}
    assert {n for n in listed if not n.endswith("/")} <= names and "results.xlsx" in names
    assert downloads.report_html(d).startswith("<!DOCTYPE html>")


def test_the_workbook_refuses_incomplete_and_other_directories(runs: dict[str, Any], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(runs["base"].directory, copy)
    (copy / COMPLETE).unlink()
    before = (copy / "results.xlsx").read_bytes()
    with pytest.raises(FlowsimError, match="incomplete"):
        downloads.workbook(copy)
    assert main(["export", str(copy), "--xlsx", "--overwrite"]) == 2
    assert (copy / "results.xlsx").read_bytes() == before  # nothing written
    sweepish = tmp_path / "other"
    sweepish.mkdir()
    with pytest.raises(FlowsimError, match="not a flowsim output directory"):
        downloads.workbook(sweepish)


# ------------------------------------------------------------------------------------------------ the CLI
def test_run_xlsx_is_listed_and_export_writes_a_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["run", str(MINIMAL), "-n", "2", "--seed", "5", *[x for s in SHORT for x in ("--set", s)],
                 "--out", str(out), "--xlsx", "--workers", "1", "--no-figures", "--no-patients"]) == 0
    assert "results.xlsx" in json.loads((out / COMPLETE).read_text())["files"]
    check_complete(out)
    assert main(["report", str(out)]) == 0  # a workbook the run wrote does not make the directory "mixed"
    assert main(["export", str(out), "--xlsx", "--out", str(tmp_path / "copy.xlsx")]) == 0
    assert openpyxl.load_workbook(tmp_path / "copy.xlsx").sheetnames == list(SHEETS_RUN)
    (tmp_path / "mine.xlsx").write_text("not flowsim's")
    capsys.readouterr()
    assert main(["export", str(out), "--xlsx", "--out", str(tmp_path / "mine.xlsx")]) == 2
    assert "exists and was not written by flowsim" in capsys.readouterr().err
    assert (tmp_path / "mine.xlsx").read_text() == "not flowsim's"


def test_app_on_a_port_in_use_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["app", "--port", str(port), "--host", "127.0.0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"flowsim: error: --port {port}: 127.0.0.1:{port} is in use")


def test_a_bad_scenario_reads_as_the_cli_writes_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.read_text().replace("beds: 130", "beds: -3"))
    stored = session.save_upload("mine.yaml", bad.read_bytes(), tmp_path)
    with pytest.raises(ScenarioError) as exc:
        session.open_scenario(stored)
    lines = session.error_lines(exc.value, {str(stored): "mine.yaml"})
    assert lines == ["flowsim: error: mine.yaml:34: acute.beds: allowed: a whole number from 0 to 100,000, "
                     "'unlimited', or a schedule {base: N, periods: [{start, end, set|add}]} (got -3)"]


def test_write_run_dir_is_unchanged_by_the_app(runs: dict[str, Any], tmp_path: Path) -> None:
    """The app writes a run through ``write_run_dir``: writing the kept result again gives the same KPIs file."""
    again = tmp_path / "again"
    write_run_dir(runs["base"].result, again)
    a = pd.read_csv(again / "kpis.csv")
    b = pd.read_csv(runs["base"].directory / "kpis.csv")
    pd.testing.assert_frame_equal(a, b)
    write_comparison(runs["cmp"].comparison, tmp_path / "cmp")
    assert check_complete(tmp_path / "cmp") == "comparison"
