"""The command line, exactly as a user runs it.

Real subprocesses (``python -m flowsim ...`` and the ``flowsim`` console script) prove what only a process can
show: the exit code, no traceback on stderr, the installed entry point, a whole run end to end.  The other
checks call ``flowsim.cli.main`` in-process (``run_cli``), which walks the same code for a second less each.

Contract: ``flowsim run SCENARIO [--replications N] [--seed S] [--out DIR] [--set k=v ...] [--workers N]``,
``flowsim validate FILE [--set k=v]``, ``flowsim schema``; user errors print
``flowsim: error: ...`` lines on stderr and exit 2, without a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import PNG_MAGIC, cli_env, flowsim, flowsim_in_process

from flowsim.scenario import load_scenario, scenario_hash

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = ROOT / "scenarios" / "minimal.yaml"
SMALL = Path(__file__).resolve().parent / "scenarios" / "small.yaml"
FIGURES = ("occupancy.png", "delays.png", "queues.png")


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):
    """``run_cli(*args)``: flowsim.cli.main in this process, returning (returncode, stdout, stderr) like a process."""
    return lambda *args: flowsim_in_process(capsys, *args)


def assert_user_error(proc: subprocess.CompletedProcess[str], *words: str) -> list[str]:
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines, "an error must say something"
    errors = [ln for ln in lines if ln.startswith("flowsim: error: ")]
    assert errors, proc.stderr
    text = "\n".join(errors)
    for w in words:
        assert w in text, f"{w!r} not in stderr:\n{proc.stderr}"
    return errors


# --------------------------------------------------------------------------- validate
@pytest.mark.parametrize("path", [MINIMAL, SMALL], ids=lambda p: p.name)
def test_validate_ok(path, run_cli) -> None:
    proc = run_cli("validate", path)
    assert proc.returncode == 0, proc.stderr
    assert "error" not in proc.stderr.lower() and "Traceback" not in proc.stderr


def test_validate_broken_file(tmp_path) -> None:
    text = SMALL.read_text(encoding="utf-8")
    assert text.count("reablement: {capacity: 25,") == 1
    bad = tmp_path / "broken.yaml"
    bad.write_text(text.replace("reablement: {capacity: 25,", "reablement: {capacity: -25,"), encoding="utf-8")
    line = next(i for i, ln in enumerate(bad.read_text().splitlines(), 1) if "capacity: -25" in ln)
    (error,) = assert_user_error(flowsim("validate", bad), "pathways.P1.services.reablement.capacity",
                                 f"broken.yaml:{line}", "-25")
    assert proc_line_is_single(error)


def proc_line_is_single(line: str) -> bool:
    return "\n" not in line and len(line) < 1000


def test_validate_reports_every_problem_one_per_line(tmp_path, run_cli) -> None:
    text = SMALL.read_text(encoding="utf-8").replace("duration_days: 90", "duration_days: 0")
    bad = tmp_path / "two.yaml"
    bad.write_text(text.replace("  beds: 100", "  bedz: 100"), encoding="utf-8")
    errors = assert_user_error(run_cli("validate", bad), "simulation.duration_days", "acute.bedz")
    assert len(errors) >= 2


def test_validate_bad_override(run_cli) -> None:
    assert_user_error(run_cli("validate", MINIMAL, "--set", "acute.beds=-5"), "acute.beds", "--set")
    assert_user_error(run_cli("validate", MINIMAL, "--set", "acute.beds"), "acute.beds", "dotted.path=value")


def test_validate_good_override(tmp_path, run_cli) -> None:
    """The override is applied before validation: it can repair a broken file."""
    text = SMALL.read_text(encoding="utf-8")
    bad = tmp_path / "fixable.yaml"
    bad.write_text(text.replace("  beds: 100", "  beds: -100"), encoding="utf-8")
    assert_user_error(run_cli("validate", bad), "acute.beds")
    proc = run_cli("validate", bad, "--set", "acute.beds=99")
    assert proc.returncode == 0, proc.stderr


def test_validate_missing_file(tmp_path, run_cli) -> None:
    assert_user_error(run_cli("validate", tmp_path / "nope.yaml"), "nope.yaml", "not found")


def test_validate_impossible_date_is_a_user_error(tmp_path, run_cli) -> None:
    bad = tmp_path / "date.yaml"
    bad.write_text(SMALL.read_text(encoding="utf-8").replace("start_date: 2024-04-01", "start_date: 2024-04-31"),
                   encoding="utf-8")
    assert_user_error(run_cli("validate", bad), "simulation.start_date")


# --------------------------------------------------------------------------- schema
def test_schema_is_json_schema(run_cli) -> None:
    proc = run_cli("schema")
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    assert "properties" in schema
    for field in ("simulation", "arrivals", "cohorts", "acute", "pathways"):
        assert field in schema["properties"]
    # arrivals, cohorts and acute are required in full mode only (pathway-only mode uses demand streams)
    assert {"simulation", "pathways", "population_18plus"} <= set(schema.get("required", []))
    assert "pathway_only" in json.dumps(schema["properties"]["mode"])


# --------------------------------------------------------------------------- run
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    proc = flowsim("run", MINIMAL, "--replications", "2", "--seed", "3", "--out", out,
                   "--set", "simulation.duration_days=60", "--set", "simulation.warmup_days=20")
    return proc, out


def test_run_exits_zero(run_dir) -> None:
    proc, _ = run_dir
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr


def test_run_summary_json(run_dir) -> None:
    proc, out = run_dir
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert {"kpis", "seed", "scenario_hash"} <= set(summary)
    assert summary["seed"] == 3
    expected = load_scenario(MINIMAL, ["simulation.duration_days=60", "simulation.warmup_days=20"])
    assert summary["scenario_hash"] == scenario_hash(expected)
    kpi = summary["kpis"]["delayed_patients_per_day"]
    assert kpi["n"] == 2 and kpi["ci_low"] <= kpi["mean"] <= kpi["ci_high"]
    assert summary.get("invariant_violations", []) == []


def test_run_daily_csv(run_dir) -> None:
    proc, out = run_dir
    assert proc.returncode == 0, proc.stderr
    daily = pd.read_csv(out / "daily.csv")
    assert len(daily) == 2 * 60
    assert sorted(daily["replication"].unique()) == [0, 1]
    assert (daily.groupby("replication").size() == 60).all()


def test_run_patients_parquet(run_dir) -> None:
    proc, out = run_dir
    assert proc.returncode == 0, proc.stderr
    patients = pd.read_parquet(out / "patients.parquet")
    assert sorted(patients["replication"].unique()) == [0, 1]
    for col in ("arrival", "bed_start", "mffd", "slot_granted", "acute_end", "ds_end", "pathway", "service"):
        assert col in patients.columns
    assert patients["arrival"].notna().all()


def test_run_scenario_yaml_round_trips(run_dir) -> None:
    proc, out = run_dir
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    resolved = load_scenario(out / "scenario.yaml")
    assert scenario_hash(resolved) == summary["scenario_hash"]
    assert resolved.simulation.duration_days == 60


@pytest.mark.parametrize("name", FIGURES)
def test_run_figures(run_dir, name) -> None:
    proc, out = run_dir
    assert proc.returncode == 0, proc.stderr
    png = out / "figures" / name
    assert png.is_file(), sorted(p.name for p in (out / "figures").glob("*")) if (out / "figures").exists() else []
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 2000


def test_run_is_reproducible_through_the_cli(run_dir, tmp_path, run_cli) -> None:
    proc, out = run_dir
    assert proc.returncode == 0, proc.stderr
    again = tmp_path / "again"
    proc2 = run_cli("run", MINIMAL, "--replications", "2", "--seed", "3", "--out", again, "--workers", "1",
                    "--no-figures", "--set", "simulation.duration_days=60", "--set", "simulation.warmup_days=20")
    assert proc2.returncode == 0, proc2.stderr
    pd.testing.assert_frame_equal(pd.read_csv(out / "daily.csv"), pd.read_csv(again / "daily.csv"))
    pd.testing.assert_frame_equal(pd.read_parquet(out / "patients.parquet"),
                                  pd.read_parquet(again / "patients.parquet"))


@pytest.mark.parametrize(("args", "words"), [
    (["--replications", "0"], ["replications"]),
    (["--seed", "-1"], ["seed"]),
    (["--set", "acute.beds=lots"], ["acute.beds"]),
])
def test_run_bad_arguments_are_user_errors(tmp_path, args, words, run_cli) -> None:
    proc = run_cli("run", MINIMAL, "--out", tmp_path / "x", *args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in proc.stderr


def test_run_missing_scenario(tmp_path, run_cli) -> None:
    assert_user_error(run_cli("run", tmp_path / "missing.yaml", "--out", tmp_path / "x"), "missing.yaml")
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- the installed console script
def test_console_script_runs_and_fails_cleanly(tmp_path) -> None:
    """``flowsim`` as pip installs it (the entry point in pyproject.toml) validates a scenario, and a user mistake
    exits 2 with one error line and no traceback, nothing written."""
    script = Path(sys.executable).with_name("flowsim")
    assert script.is_file(), f"{script} missing: install with pip install -e '.[test]'"
    ok = subprocess.run([str(script), "validate", str(MINIMAL)], cwd=ROOT, env=cli_env(), capture_output=True,
                        text=True, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([str(script), "run", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "x")],
                         cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=120, check=False)
    assert_user_error(bad, "missing.yaml")
    assert not (tmp_path / "x").exists()
