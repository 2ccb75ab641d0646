"""The experiment features of the command line, as a user types them.

``flowsim run -n auto / --warmup auto|N / --executor dask / --scheduler`` and ``flowsim sweep``
(end to end on the shipped example at a reduced horizon, then ``--resume``), mostly through
``python -m flowsim`` in a subprocess; a few cheap cases call ``flowsim.cli.main`` in-process.
User mistakes must exit 2 with ``flowsim: error: ...`` lines and no traceback.

Runtime: the shipped sweep (~30 s on 2 cores) dominates.  The dead-scheduler cases wait out the
Dask executor's 20 s connect timeout, so they are started when this module starts and collected
by the last test, their wait overlapping the other tests.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from cli_helpers import PNG_MAGIC, cli_argv, cli_env, flowsim, flowsim_in_process

from flowsim import load_scenario
from flowsim.cli import main
from flowsim.experiment.replications import decide
from flowsim.experiment.runner import run_replication
from flowsim.report.format import fmt
from flowsim.results.kpi import kpi_info

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = ROOT / "scenarios" / "minimal.yaml"
FROM_TODAY = ROOT / "scenarios" / "rotherham_from_today.yaml"
BASELINE = ROOT / "scenarios" / "rotherham_2016.yaml"
SWEEP = ROOT / "sweeps" / "rotherham_intermediate_care.yaml"
SHORT = ["--set", "simulation.duration_days=60", "--set", "simulation.warmup_days=10"]
SWEEP_SHORT = ["--set", "simulation.duration_days=60", "--set", "simulation.warmup_days=30"]
DEAD = "tcp://127.0.0.1:1"   # nothing listens on port 1
IC = "pathways.P2.services.intermediate_care.capacity"
P1 = "pathways.P1.services.irr_reablement.capacity"


def show(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, show(proc)
    assert "Traceback" not in proc.stderr, show(proc)


def assert_user_error(returncode: int, stderr: str, *words: str) -> str:
    """Exit 2, no traceback, ``flowsim: error:`` lines holding every word; returns those lines."""
    assert returncode == 2, f"exit {returncode}\nstderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    text = "\n".join(ln for ln in stderr.splitlines() if ln.startswith("flowsim: error: "))
    assert text, stderr
    for w in words:
        assert w in text, f"{w!r} not in the error:\n{stderr}"
    return text


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def scenario_yaml(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "scenario.yaml").read_text(encoding="utf-8"))


def kpis_csv(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "kpis.csv", index_col="replication")


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} missing"
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5_000, path


# --------------------------------------------------------------------------- dead scheduler, started early


@pytest.fixture(scope="module", autouse=True)
def dead_scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[subprocess.Popen, float]]]:
    """Three runs pointed at a scheduler that is not there, started now and collected at the end."""
    tmp = tmp_path_factory.mktemp("dead")
    runs = {
        "flag": (("run", MINIMAL, "-n", "2", "--no-figures", "--out", tmp / "a", "--scheduler", DEAD), {}),
        "env": (("run", MINIMAL, "-n", "2", "--no-figures", "--out", tmp / "b"), {"FLOWSIM_SCHEDULER": DEAD}),
        "env-sweep": (("sweep", SWEEP, "--out", tmp / "c"), {"FLOWSIM_SCHEDULER": DEAD}),
    }
    procs = {name: (subprocess.Popen(cli_argv(args), cwd=ROOT, env=cli_env(**env), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True), time.monotonic())
             for name, (args, env) in runs.items()}
    yield procs
    for p, _ in procs.values():
        if p.poll() is None:
            p.kill()
        p.communicate()


# --------------------------------------------------------------------------- run -n auto


def test_run_replications_auto(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = flowsim("run", MINIMAL, "-n", "auto", "--precision", "0.2", "--max-replications", "12",
                   "--out", out, *SHORT, "--no-figures")
    assert_ok(proc)
    info = read_json(out / "experiment.json")["replications"]
    assert info["kpi"] == "delayed_patients_per_day" and info["precision"] == 0.2
    n = info["n_used"]
    assert 3 <= n <= 12
    kpis = kpis_csv(out)
    assert len(kpis) == n and list(kpis.index) == list(range(n))
    # the recorded decision is exactly what Hoad's rule gives on the kept replications
    again = decide(kpis["delayed_patients_per_day"].to_numpy(), 0.2, cap=12)
    assert (again.n_solution, again.n_used, again.capped) == (info["n_solution"], n, info["capped"])
    assert again.precision[-1] == pytest.approx(info["achieved"], rel=1e-12)
    if info["capped"]:
        assert n == 12 and info["n_solution"] is None
        state = f"not settled within the cap of {n}"
    else:
        assert n == info["n_solution"] + 5
        state = f"{info['n_solution']} needed, confirmed over 5 more"
    assert "Replications for delayed_patients_per_day within 20%: " in proc.stdout
    assert state in proc.stdout, proc.stdout
    assert f": {n} replications, seed 12345" in proc.stdout


def test_run_replications_auto_unknown_kpi(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(MINIMAL), "-n", "auto", "--precision-kpi", "delayed_patients_per_dya",
                 "--max-replications", "8", "--workers", "1", "--out", str(tmp_path / "run"), *SHORT, "--no-figures"])
    err = assert_user_error(code, capsys.readouterr().err, "'delayed_patients_per_dya'", "delayed_patients_per_day")
    assert "unknown KPI" in err


@pytest.mark.parametrize("value", ["1.5", "0", "five"])
def test_run_precision_out_of_range_rejected_by_argparse(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", str(MINIMAL), "-n", "auto", "--precision", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--precision" in err and value in err and "Traceback" not in err


# --------------------------------------------------------------------------- run --warmup


def test_run_warmup_auto(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = flowsim("run", MINIMAL, "-n", "2", "--warmup", "auto", "--out", out,
                   "--set", "simulation.duration_days=60")
    assert_ok(proc)
    warm = read_json(out / "experiment.json")["warmup"]
    days = warm["warmup_days"]
    assert isinstance(days, int) and days % 5 == 0 and 0 <= days <= warm["pilot_days"] // 2
    assert warm["method"] == "MSER-5" and warm["kpi"] == "delayed_midnight" and warm["pilot_replications"] == 5
    assert scenario_yaml(out)["simulation"]["warmup_days"] == days
    assert_png(out / "figures" / "warmup.png")
    assert f"Warm-up chosen by MSER-5 on delayed_midnight: {days} days" in proc.stdout
    assert f"(after {days} warm-up days)" in proc.stdout


def test_run_warmup_auto_no_figures_does_not_point_at_a_missing_plot(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = flowsim("run", MINIMAL, "-n", "2", "--warmup", "auto", "--out", out, "--no-figures",
                   "--set", "simulation.duration_days=30")
    assert_ok(proc)
    assert not (out / "figures").exists()
    assert "warmup.png" not in proc.stdout, proc.stdout


def test_run_warmup_auto_refused_with_initial_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    proc = flowsim_in_process(capsys, "run", FROM_TODAY, "-n", "2", "--warmup", "auto", "--out", out, "--no-figures")
    assert_user_error(proc.returncode, proc.stderr, "warm-up auto", "initial_state")
    assert not out.exists()


def test_run_fixed_warmup_overrides_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert load_scenario(MINIMAL).simulation.warmup_days != 7
    out = tmp_path / "run"
    code = main(["run", str(MINIMAL), "-n", "2", "--warmup", "7", "--workers", "1", "--out", str(out),
                 "--set", "simulation.duration_days=30", "--no-figures"])
    assert code == 0, capsys.readouterr().err
    assert scenario_yaml(out)["simulation"]["warmup_days"] == 7
    assert read_json(out / "summary.json")["window"]["warmup_days"] == 7
    assert "(after 7 warm-up days)" in capsys.readouterr().out
    assert len(kpis_csv(out)) == 2
    assert not (out / "experiment.json").exists()  # nothing was decided automatically


# --------------------------------------------------------------------------- run on Dask


@pytest.fixture(scope="module")
def dask_and_serial(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    tmp = tmp_path_factory.mktemp("dask")
    runs = {}
    for name, flags in (("dask", ["--executor", "dask", "--workers", "2"]), ("serial", ["--workers", "1"])):
        out = tmp / name
        runs[name] = (flowsim("run", MINIMAL, "-n", "4", "--out", out, *SHORT, "--no-figures", *flags), out)
    return runs


def test_run_on_dask_matches_one_worker(dask_and_serial: dict[str, tuple[subprocess.CompletedProcess, Path]]) -> None:
    for proc, _ in dask_and_serial.values():
        assert proc.returncode == 0, show(proc)
    dask_dir, serial_dir = dask_and_serial["dask"][1], dask_and_serial["serial"][1]
    # kpis.csv holds no timing columns (seconds per replication live in summary.json), so compare every byte
    assert "seconds" not in kpis_csv(serial_dir).columns
    assert (dask_dir / "kpis.csv").read_bytes() == (serial_dir / "kpis.csv").read_bytes()
    assert (dask_dir / "daily.csv").read_bytes() == (serial_dir / "daily.csv").read_bytes()
    assert len(kpis_csv(dask_dir)) == 4
    table = [ln for ln in dask_and_serial["dask"][0].stdout.splitlines() if "Run directory" not in ln]
    assert table == [ln for ln in dask_and_serial["serial"][0].stdout.splitlines() if "Run directory" not in ln]


def test_run_on_dask_is_quiet_without_verbose(
        dask_and_serial: dict[str, tuple[subprocess.CompletedProcess, Path]]) -> None:
    proc = dask_and_serial["dask"][0]
    assert proc.returncode == 0, show(proc)
    noise = [ln for ln in proc.stderr.splitlines() if ": INFO: " in ln or ln.startswith("Traceback")]
    assert not noise, "\n".join(noise[:10])


# --------------------------------------------------------------------------- sweep, end to end


@pytest.fixture(scope="module")
def shipped_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("sweep") / "out"
    proc = flowsim("sweep", SWEEP, "--out", out, *SWEEP_SHORT)
    assert_ok(proc)
    return proc, out


def test_sweep_stdout(shipped_sweep: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, out = shipped_sweep
    lines = proc.stdout.splitlines()
    assert any(re.match(r"Sweep 'rotherham_intermediate_care': 8 replications per point, seed 12345, "
                        r"warm-up 30 days; \d+ tasks run now", ln) for ln in lines), proc.stdout
    info = kpi_info("delayed_patients_per_day")  # the heading names the KPI as the registry does
    start = lines.index(f"{info.label} ({info.unit}): mean [95% CI]")
    assert "Intermediate care beds (P2)" in lines[start + 1] and "P1 packages" in lines[start + 1]
    rows = lines[start + 2:start + 14]
    summary = pd.read_csv(out / "summary.csv")
    summary = summary[summary["kpi"] == "delayed_patients_per_day"].reset_index(drop=True)
    assert len(rows) == len(summary) == 12
    for text, (_, row) in zip(rows, summary.iterrows(), strict=True):
        ic, p1, mean, *_ = text.split()
        assert (int(ic), int(p1)) == (row[IC], row[P1])
        assert mean == fmt(row["mean"])  # as every report prints a number (three significant figures)
    target = [ln for ln in lines if ln.startswith("Target: ")]
    assert len(target) == 1 and "P1 packages (IRR + reablement)" in target[0], proc.stdout
    assert "Sensitivity (morris):" in proc.stdout
    assert f"Outputs: {out}" in proc.stdout


def test_sweep_results_and_summary(shipped_sweep: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, out = shipped_sweep
    table = pd.read_parquet(out / "results.parquet")
    csv = pd.read_csv(out / "results.csv")
    assert list(csv.columns) == list(table.columns)
    pd.testing.assert_frame_equal(csv[[IC, P1, "replication", "delayed_patients_per_day"]],
                                  table[[IC, P1, "replication", "delayed_patients_per_day"]], check_dtype=False)
    assert len(table) == 12 * 8
    grid = table.groupby([IC, P1])["replication"].apply(sorted)
    assert sorted(grid.index) == [(ic, p1) for ic in (44, 54, 64) for p1 in (42, 45, 48, 51)]
    assert all(reps == list(range(8)) for reps in grid)
    assert (table["seed"] == 12345).all() and table["point_id"].nunique() == 12
    assert (table["checks_failed"] == 0).all()
    kpis = ["delayed_patients_per_day", "delayed_per_day_P1", "delayed_per_day_P2", "occupancy_mean_pct",
            "ed_4h_breach_pct"]
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 12 * len(kpis) and set(summary["kpi"]) == set(kpis) and (summary["n"] == 8).all()
    means = table.groupby("point_id")[kpis].mean()
    for _, row in summary.iterrows():
        assert row["mean"] == pytest.approx(means.loc[row["point_id"], row["kpi"]], rel=1e-12, abs=1e-12)
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    # sanity: at every number of intermediate care beds, 51 P1 packages leave fewer waiting for P1 than 42
    p1 = summary[summary["kpi"] == "delayed_per_day_P1"].set_index([IC, P1])["mean"]
    assert all(p1[(ic, 51)] < p1[(ic, 42)] for ic in (44, 54, 64))


def test_sweep_target(shipped_sweep: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, out = shipped_sweep
    target = read_json(out / "target.json")
    assert target["parameter"] == P1 and target["kpi"] == "delayed_patients_per_day"
    assert target["searched"] == [38, 60] and target["replications"] == 8 and target["confidence"] == 0.95
    # target.json holds the answer and its neighbours; every evaluated point is in target.csv
    ev = pd.read_csv(out / "target.csv")
    assert list(ev.columns) == ["value", "mean", "ci_low", "ci_high", "bound", "n"]
    assert ev["value"].is_monotonic_increasing and ev["value"].is_unique and (ev["n"] == 8).all()
    assert set(ev["value"]) >= {38, 60} and ev["value"].between(38, 60).all()
    by_value = ev.set_index("value")
    answer = target["answer"]
    assert answer is None or isinstance(answer, (int, float))
    if answer is None:
        assert by_value.loc[60, "bound"] > 19.3
        assert "no value in [38, 60]" in proc.stdout
    else:
        assert float(answer).is_integer() and 38 <= answer <= 60
        assert target["answer_kpi"]["value"] == answer and target["answer_kpi"]["bound"] <= 19.3
        assert by_value.loc[answer, "bound"] == pytest.approx(target["answer_kpi"]["bound"])
        if answer > 38:  # bisection ends next to a value that fails the target
            assert target["next_lower_kpi"]["value"] == answer - 1 and by_value.loc[answer - 1, "bound"] > 19.3
        assert f"at 95% confidence is {answer:g} " in proc.stdout
    pe = target["point_estimate"]
    if pe is not None:
        assert by_value.loc[pe, "mean"] <= 19.3 and (pe == 38 or by_value.loc[pe - 1, "mean"] > 19.3)
    # same scenario and seeds: a target evaluation equals the design point at the base's 54 IC beds
    assert load_scenario(BASELINE).pathways["P2"].services["intermediate_care"].capacity == 54
    summary = pd.read_csv(out / "summary.csv")
    at54 = summary[(summary["kpi"] == "delayed_patients_per_day") & (summary[IC] == 54)].set_index(P1)
    shared = sorted(set(at54.index) & set(ev["value"].astype(int)))
    for v in shared:
        assert by_value.loc[v, "mean"] == pytest.approx(at54.loc[v, "mean"], rel=1e-12)
    # whether bisection lands on a design value depends on the results; its first midpoint (49) is always
    # evaluated, and equals a direct run of the base scenario on the same seeds (replication r, seed 12345)
    assert 49 in by_value.index
    sc = load_scenario(BASELINE, ["simulation.duration_days=60", "simulation.warmup_days=30", f"{P1}=49"])
    direct = np.mean([run_replication(sc, 12345, r, keep_patients=False).kpis["delayed_patients_per_day"]
                      for r in range(8)])
    assert by_value.loc[49, "mean"] == pytest.approx(direct, rel=1e-12)


def test_sweep_sensitivity_figures_and_meta(shipped_sweep: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, out = shipped_sweep
    sens = pd.read_csv(out / "sensitivity.csv")
    assert list(sens.columns) == ["parameter", "mu", "mu_star", "sigma", "mu_star_conf", "kpi"]
    assert len(sens) == 4 * 2 and set(sens["kpi"]) == {"delayed_patients_per_day", "occupancy_mean_pct"}
    assert set(sens["parameter"]) == {P1, IC, "pathways.P3.services.oakwood.capacity", "assessment.staff"}
    assert (sens["mu_star"] >= sens["mu"].abs() - 1e-9).all() and (sens["sigma"] >= 0).all()
    figures = out / "figures"
    responses = sorted(figures.glob("response_*.png"))
    assert len(responses) == 2, responses
    for f in [*responses, figures / "heatmap.png", figures / "target.png", figures / "sensitivity.png"]:
        assert_png(f)
    meta = read_json(out / "sweep.json")
    assert meta["status"] == "complete" and meta["seed"] == 12345
    assert meta["replications"] == {"method": "fixed", "n": 8}
    assert meta["warmup"] == {"warmup_days": 30, "method": "scenario"}
    assert meta["executor"] == "process"
    parts = list((out / "parts").glob("*/r*.parquet"))
    assert meta["tasks_run_this_call"] == len(parts) > 96  # design + target + sensitivity, none twice
    assert meta["target"]["answer"] == read_json(out / "target.json")["answer"]
    assert meta["command"][:2] == ["flowsim", "sweep"] and "simulation.duration_days=60" in meta["command"]


def test_sweep_resume_runs_nothing_new(shipped_sweep: tuple[subprocess.CompletedProcess[str], Path],
                                      tmp_path: Path) -> None:
    _, done = shipped_sweep
    out = tmp_path / "copy"
    shutil.copytree(done, out)  # the other tests keep reading the original
    before = (out / "results.parquet").read_bytes()
    n_parts = len(list((out / "parts").glob("*/r*.parquet")))
    proc = flowsim("sweep", SWEEP, "--out", out, "--resume", *SWEEP_SHORT, "--no-figures")
    assert_ok(proc)
    assert "; 0 tasks run now" in proc.stdout, proc.stdout
    assert (out / "results.parquet").read_bytes() == before
    assert len(list((out / "parts").glob("*/r*.parquet"))) == n_parts
    meta = read_json(out / "sweep.json")
    assert meta["status"] == "complete" and meta["tasks_run_this_call"] == 0
    assert read_json(out / "target.json") == read_json(done / "target.json")
    # without --resume the finished results are protected
    again = flowsim("sweep", SWEEP, "--out", out, *SWEEP_SHORT, "--no-figures")
    assert_user_error(again.returncode, again.stderr, "--resume", "--fresh")


# --------------------------------------------------------------------------- sweep, user errors


def test_sweep_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no_such_sweep.yaml"
    proc = flowsim_in_process(capsys, "sweep", missing, "--out", tmp_path / "out")
    assert_user_error(proc.returncode, proc.stderr, str(missing), "not found")
    assert not (tmp_path / "out").exists()


def _broken_sweep(tmp_path: Path, old: str, new: str, line_of: str) -> tuple[Path, int]:
    text = SWEEP.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    text = text.replace(old, new).replace("base: ../scenarios/rotherham_2016.yaml", f"base: {BASELINE}")
    path = tmp_path / "broken_sweep.yaml"
    path.write_text(text, encoding="utf-8")
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.strip().startswith(line_of))
    return path, line


# each error names the file and field, at the line of the field, the swept parameter, or the section
@pytest.mark.parametrize(("old", "new", "field", "line_of"), [
    ("trajectories: 5", "trajectorys: 5", "sensitivity.trajectorys", "trajectorys: 5"),
    ("values: [44, 54, 64]", "values: [44, -54, 64]", IC, f"- path: {IC}"),
    ("  low: 38\n", "  low: 70\n", "target: low (70", "target:"),
], ids=["misspelt-field", "bad-point-value", "low-above-high"])
def test_sweep_spec_errors(tmp_path: Path, old: str, new: str, field: str, line_of: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    path, line = _broken_sweep(tmp_path, old, new, line_of)
    proc = flowsim_in_process(capsys, "sweep", path, "--out", tmp_path / "out")
    assert_user_error(proc.returncode, proc.stderr, field, f"{path.name}:{line}")
    assert not (tmp_path / "out" / "parts").exists()


TINY = """\
name: tiny
base: {base}
set: {{simulation.duration_days: 20, simulation.warmup_days: 5}}
replications: 2
parameters:
  - path: pathways.P1.services.reablement.capacity
    values: [20, 30]
kpis: [{kpi}]
"""


@pytest.fixture(scope="module")
def kpi_typo_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    tmp = tmp_path_factory.mktemp("typo")
    spec = tmp / "typo.yaml"
    spec.write_text(TINY.format(base=MINIMAL, kpi="delayed_patients_per_dya"), encoding="utf-8")
    return flowsim("sweep", spec, "--out", tmp / "out", "--workers", "1"), spec, tmp / "out"


def test_sweep_unknown_kpi_is_a_user_error(kpi_typo_sweep: tuple[subprocess.CompletedProcess[str], Path, Path]) -> None:
    proc, spec, _ = kpi_typo_sweep
    assert_user_error(proc.returncode, proc.stderr, spec.name, "kpis", "delayed_patients_per_dya")


def test_sweep_unknown_kpi_is_caught_before_running(
        kpi_typo_sweep: tuple[subprocess.CompletedProcess[str], Path, Path]) -> None:
    """A misspelt KPI must not cost a whole sweep: on one worker it stops at the first result (kept, or not)."""
    proc, _, out = kpi_typo_sweep
    assert proc.returncode == 2, show(proc)
    parts = list(out.glob("parts/*/*.parquet"))
    assert len(parts) <= 1, f"{len(parts)} of 4 tasks ran before the spec error was reported"


def test_sweep_unknown_target_kpi_names_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "target_typo.yaml"
    text = TINY.format(base=MINIMAL, kpi="delayed_patients_per_day").split("parameters:")[0]
    spec.write_text(text + "target: {parameter: pathways.P1.services.reablement.capacity, "
                           "kpi: delayed_patients_per_dya, at_most: 5, low: 10, high: 40}\n", encoding="utf-8")
    proc = flowsim_in_process(capsys, "sweep", spec, "--out", tmp_path / "out", "--workers", "1")
    assert_user_error(proc.returncode, proc.stderr, spec.name, "target.kpi", "delayed_patients_per_dya")
    assert len(list((tmp_path / "out").glob("parts/*/*.parquet"))) <= 1  # stopped at the first result


# --------------------------------------------------------------------------- dead scheduler, collected last


@pytest.mark.parametrize("name", ["flag", "env", "env-sweep"])
def test_dead_scheduler_is_a_clear_error(dead_scheduler: dict[str, tuple[subprocess.Popen, float]],
                                         name: str) -> None:
    proc, started = dead_scheduler[name]
    # the executor gives up after its 20 s connect timeout; allow generously for a loaded machine
    stdout, stderr = proc.communicate(timeout=max(1.0, started + 90 - time.monotonic()))
    assert proc.returncode != 0
    err = assert_user_error(proc.returncode, stderr, "cannot connect to the Dask scheduler", DEAD)
    assert len(err.splitlines()) == 1, err
    assert "Run directory" not in stdout
