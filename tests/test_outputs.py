"""Output directories (issue 15 point 4, issue 14 point 6): flowsim writes only where the command line says
or into a slug under ``outputs/``, never into a directory holding anything else, deletes only what it
wrote, replaces an earlier output only with ``--overwrite``, and marks a directory complete last, so an
interrupted or mixed directory never reaches a board report.

Runs here are tiny (a few days, two replications, in this process) so the suite stays fast.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest
import yaml
from cli_helpers import ROOT

from flowsim.cli import main
from flowsim.rundir import COMPLETE, OWNER

SMALL = ROOT / "tests" / "scenarios" / "small.yaml"
WINTER = ROOT / "scenarios" / "rotherham_winter_2016.yaml"
QUICK = ("-n", "2", "--workers", "1", "--set", "simulation.duration_days=6", "--set", "simulation.warmup_days=0")


def cli(*args: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def refused(result: tuple[int, str, str], *words: str) -> str:
    code, out, err = result
    assert code == 2 and "Traceback" not in err, err
    [line] = err.splitlines()
    assert line.startswith("flowsim: error: ")
    for w in words:
        assert w in line, line
    assert "Run directory" not in out  # refused before anything ran
    return line


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def winter_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete run with escalation events and figures (a timeline), the files a later run must not inherit."""
    out = tmp_path_factory.mktemp("winter") / "run"
    code, _, err = cli("run", WINTER, *QUICK, "--out", out)
    assert code == 0, err
    assert (out / "escalation.csv").is_file() and (out / "figures").is_dir() and (out / COMPLETE).is_file()
    return out


def test_out_naming_a_file_is_refused_before_the_run(tmp_path: Path) -> None:
    """It was a traceback after the whole simulation."""
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    refused(cli("run", SMALL, *QUICK, "--out", target), str(target), "is a file")
    assert target.read_text() == "mine"


def test_out_that_cannot_be_created_is_refused_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    refused(cli("run", SMALL, *QUICK, "--out", tmp_path / "afile" / "run"), "cannot write there")


def test_non_empty_foreign_directory_is_never_written_or_deleted(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.docx").write_text("years of work")
    before = snapshot(target)
    for flags in ((), ("--overwrite",)):
        refused(cli("run", SMALL, *QUICK, "--out", target, *flags), "was not written by flowsim")
    assert snapshot(target) == before


def test_rerun_is_refused_and_overwrite_replaces_the_whole_directory(winter_run: Path, tmp_path: Path) -> None:
    """A minimal run into a winter run's directory embedded the winter figures and OPEL section."""
    out = tmp_path / "run"
    shutil.copytree(winter_run, out)
    before = snapshot(out)
    refused(cli("run", SMALL, *QUICK, "--out", out, "--no-figures"), "already holds a flowsim run", "--overwrite")
    assert snapshot(out) == before
    code, _, err = cli("run", SMALL, *QUICK, "--out", out, "--no-figures", "--overwrite")
    assert code == 0, err
    assert not (out / "escalation.csv").exists() and not (out / "figures").exists()
    assert json.loads((out / "summary.json").read_text())["scenario"] == yaml.safe_load(SMALL.read_text())["name"]
    assert cli("report", out)[0] == 0


def test_overwrite_never_deletes_files_flowsim_did_not_write(winter_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(winter_run, out)
    (out / "my_notes.txt").write_text("keep me")
    before = snapshot(out)
    refused(cli("run", SMALL, *QUICK, "--out", out, "--overwrite"), "my_notes.txt", "flowsim did not write")
    assert snapshot(out) == before


def test_completion_marker_is_written_last_and_lists_every_file(winter_run: Path) -> None:
    done = json.loads((winter_run / COMPLETE).read_text())
    owner = json.loads((winter_run / OWNER).read_text())
    assert done["run_id"] == owner["run_id"] and done["kind"] == "run"
    files = {str(p.relative_to(winter_run)) for p in winter_run.rglob("*") if p.is_file()} - {OWNER, COMPLETE}
    assert files == set(done["files"])
    last = (winter_run / COMPLETE).stat().st_mtime_ns
    assert all((winter_run / f).stat().st_mtime_ns <= last for f in files)
    assert not (winter_run / ".parts").exists()  # the per-replication scratch is gone once the files are written


def test_report_refuses_an_incomplete_directory(winter_run: Path, tmp_path: Path) -> None:
    """A run killed while writing left summary.json without the rest, and report rendered it with exit 0."""
    out = tmp_path / "run"
    shutil.copytree(winter_run, out)
    (out / COMPLETE).unlink()
    (out / "daily.csv").unlink()
    refused(cli("report", out), "incomplete", "did not finish")
    assert not (out / "report.html").exists()


@pytest.mark.parametrize("damage", ["extra figure", "changed file", "missing file"])
def test_report_refuses_a_mixed_directory(winter_run: Path, tmp_path: Path, damage: str) -> None:
    out = tmp_path / "run"
    shutil.copytree(winter_run, out)
    if damage == "extra figure":
        (out / "figures" / "warmup.png").write_bytes(b"\x89PNG from another run")
    elif damage == "changed file":
        with open(out / "kpis.csv", "a") as fh:
            fh.write("99,99\n")
    else:
        (out / "quarterly.csv").unlink()
    refused(cli("report", out), "mixed")
    assert not (out / "report.html").exists()


def test_report_out_never_replaces_a_file_flowsim_did_not_write(winter_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(winter_run, out)
    foreign = tmp_path / "board.html"
    foreign.write_text("<html>the chair's own paper</html>")
    refused(cli("report", out, "--out", foreign), "not written by flowsim", "--overwrite")
    assert "chair" in foreign.read_text()
    mine = tmp_path / "ours.html"
    assert cli("report", out, "--out", mine)[0] == 0
    assert cli("report", out, "--out", mine)[0] == 0  # its own report: replaced without asking
    assert cli("report", out, "--out", foreign, "--overwrite")[0] == 0


def _tiny_sweep(tmp_path: Path, name: str) -> Path:
    spec = {"name": name, "base": str(SMALL), "seed": 3, "replications": 1,
            "set": {"simulation.duration_days": 4, "simulation.warmup_days": 0},
            "parameters": [{"path": "acute.beds", "values": [100]}], "kpis": ["delayed_patients_per_day"]}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_sweep_name_is_a_slug_and_fresh_deletes_nothing_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   kind: str) -> None:
    """``name: ../../x`` (or an absolute path) chose the output path, and --fresh then deleted ``<name>/parts``
    wherever that was (a planted file was deleted)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    planted = work / "planted" / "parts" / "keep.txt"
    planted.parent.mkdir(parents=True)
    planted.write_text("not flowsim's")
    name = "../../planted" if kind == "relative" else str(work / "planted")
    spec = _tiny_sweep(tmp_path, name)
    for flags in ((), ("--fresh",)):
        code, _, err = cli("sweep", spec, "--workers", "1", "--no-figures", *flags)
        assert code == 0, err
    assert planted.read_text() == "not flowsim's"
    assert sorted(p.name for p in (work / "planted").iterdir()) == ["parts"]
    [made] = list((work / "outputs" / "sweeps").iterdir())
    assert made.name.endswith("planted") and "/" not in made.name and not made.name.startswith(".")
    assert (made / "sweep.json").is_file() and (made / COMPLETE).is_file()


def test_calibration_config_cannot_send_the_fitted_scenario_elsewhere(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A calibration config's write_scenario overwrote an unrelated file without asking."""
    cal = tmp_path / "cal"
    shutil.copytree(ROOT / "tests" / "calibration", cal)
    victim = tmp_path / "victim.yaml"
    victim.write_text("precious: true\n")
    config = cal / "small.yaml"
    config.write_text(config.read_text() + "write_scenario: ../victim.yaml\n")
    monkeypatch.chdir(tmp_path)
    line = refused(cli("calibrate", config, "--budget", "2,1", "--workers", "1"), "write_scenario", "--write-scenario")
    assert f"{config}:" in line
    assert victim.read_text() == "precious: true\n" and not (tmp_path / "outputs").exists()


def test_write_scenario_never_replaces_a_foreign_file_without_overwrite(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    victim = tmp_path / "victim.yaml"
    victim.write_text("precious: true\n")
    monkeypatch.chdir(tmp_path)
    refused(cli("calibrate", ROOT / "tests" / "calibration" / "small.yaml", "--budget", "2,1", "--workers", "1",
                "--write-scenario", victim), "--write-scenario", "not written by flowsim", "--overwrite")
    assert victim.read_text() == "precious: true\n" and not (tmp_path / "outputs").exists()


def test_a_user_mistake_found_after_the_claim_leaves_nothing(tmp_path: Path) -> None:
    """``--warmup auto`` on a start-from-today scenario is refused once the scenario is read; the directory
    claimed for it is removed again (nothing written)."""
    out = tmp_path / "run"
    refused(cli("run", ROOT / "scenarios" / "rotherham_from_today.yaml", "--warmup", "auto", "--out", out),
            "initial_state")
    assert not out.exists()


@pytest.mark.parametrize("command", [("schema", "--out"), ("synth-extract", "--spells", "5", "--out")])
def test_single_file_outputs_that_cannot_be_written_are_one_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "out.csv"
    refused(cli(*command, target), str(target))


def test_a_long_runs_figures_read_the_daily_table_a_column_at_a_time(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15: memory flat in the number of replications.  Read whole, the daily table of 1,000 replications
    of the baseline raised the parent's peak from 0.4 to 1.05 GB when the figures were drawn.  Above
    ``LAZY_DAILY_ROWS`` the figures read it a column (or a handful) at a time; they must be the same figures,
    byte for byte, and no read may ask for most of the table.  The winter scenario draws every kind of figure
    (escalation, OPEL timeline, Discharge Ready Date bands, bank holidays)."""
    from flowsim import load_scenario, simulate
    from flowsim.experiment.runner import RunResult
    from flowsim.report import figures

    sc = load_scenario(ROOT / "scenarios" / "rotherham_winter_2016.yaml",
                       ["simulation.duration_days=110", "simulation.warmup_days=5"])
    res = simulate(sc, 3, 11, workers=1, progress=False)
    whole = {p.name: p.read_bytes() for p in figures.draw_run(res, tmp_path / "whole")}
    reads: list[int] = []
    read_whole = RunResult.daily

    def counted(self: RunResult, columns: Sequence[str] | None = None) -> pd.DataFrame:
        assert columns is not None, "a lazy figure read the whole table"
        reads.append(len(columns))
        return read_whole(self, columns)

    monkeypatch.setattr(figures, "LAZY_DAILY_ROWS", 0)
    monkeypatch.setattr(RunResult, "daily", counted)
    lazy = {p.name: p.read_bytes() for p in figures.draw_run(res, tmp_path / "lazy")}
    assert {"occupancy.png", "timeline.png", "escalation_actions.png", "discharge_delays.png"} <= set(whole)
    assert lazy.keys() == whole.keys()
    for name, png in whole.items():
        assert lazy[name] == png, name
    width = len(res.daily_columns())
    assert reads and max(reads) <= 20 < width / 3, (max(reads), width)
