"""Parameter sweeps: executors, resumability, common random numbers, target finder, sensitivity, specs.

Contract under test (``flowsim/sweep.py``, ``flowsim/experiment/executors.py``):

* a sweep's results do not depend on where its tasks ran (serial, process pool of any width, Dask);
* a sweep killed at any instant resumes to the same table, computing only the missing tasks, and a
  resume that would mix results (another seed, another base scenario) is refused;
* every point uses seed ``spec.seed`` with replication index r (common random numbers, CRN), so the
  difference between two nearby points has far less variance than with independent seeds;
* the target finder returns the smallest value whose one-sided confidence bound meets the target;
* Morris/Sobol sensitivity, spec validation with file:line messages, LHS stratification, tidy tables;
* a failing task surfaces as a ``TaskError`` naming it.

Every scenario here is ``scenarios/minimal.yaml`` cut to a few simulated weeks (~0.03-0.1 s a task).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from cli_helpers import PNG_MAGIC
from scipy import stats

import flowsim.experiment.executors as executors_mod
import flowsim.sweep as sweep_mod
from flowsim.cli import main
from flowsim.errors import FlowsimError, ScenarioError
from flowsim.experiment import simulate
from flowsim.experiment.executors import (
    DaskExecutor,
    ProcessExecutor,
    SerialExecutor,
    TaskError,
    make_executor,
)
from flowsim.report.sweep_figures import draw_sweep
from flowsim.scenario import load_scenario, scenario_hash
from flowsim.sweep import (
    Parameter,
    Store,
    SweepSpec,
    Target,
    design_points,
    find_target,
    load_spec,
    one_sided_bound,
    point_id,
    run_sweep,
    sensitivity_design,
)

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = ROOT / "scenarios" / "minimal.yaml"
FAST = {"simulation.duration_days": 60, "simulation.warmup_days": 20}   # ~0.03 s a task
P2 = "pathways.P2.services.intermediate_care.capacity"   # minimal.yaml: 26 beds, ~21 occupied (binds below ~24)
BEDS = "acute.beds"


def write_spec(path: Path, base: Path = MINIMAL, **fields: Any) -> Path:
    """A sweep spec with an absolute base path (the base is relative to the spec file otherwise)."""
    data = {"name": path.stem, "base": str(base), "set": dict(FAST), **fields}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def line_of(text: str, needle: str) -> int:
    """1-based line of the only line containing ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) == 1, f"{needle!r} on lines {hits}"
    return hits[0]


def table_of(out: Path) -> pd.DataFrame:
    """The tidy results table as written to disk, without the wall-clock column."""
    return pd.read_parquet(out / "results.parquet").drop(columns="seconds")


def meta_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "sweep.json").read_text(encoding="utf-8"))


# ============================================================================ the grid used by several tests
GRID_SEED = 2024
GRID_REPS = 3
GRID_KPIS = ["delayed_patients_per_day", "delayed_per_day_P2", "occupancy_mean_pct"]


def grid_spec(path: Path) -> Path:
    return write_spec(path, seed=GRID_SEED, replications=GRID_REPS, kpis=GRID_KPIS, parameters=[
        {"path": BEDS, "label": "Acute beds", "values": [120, 130]},
        {"path": P2, "values": [15, 26]},
    ])


@pytest.fixture(scope="module")
def grid_serial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, sweep_mod.SweepResult]:
    """The 2 x 2 grid, 3 replications, run in this process: the reference for every executor."""
    d = tmp_path_factory.mktemp("grid")
    spec = grid_spec(d / "grid.yaml")
    with SerialExecutor() as ex:
        res = run_sweep(spec, d / "serial", executor=ex, progress=False, draw=draw_sweep)
    return spec, res


@pytest.fixture(scope="module")
def dask_executor() -> Iterator[DaskExecutor]:
    """One real Dask LocalCluster (2 single-threaded worker processes) for the whole module.

    Closed here (client, then cluster), so no "unclosed" resource warning reaches the error filter.
    """
    ex = DaskExecutor(workers=2)
    try:
        yield ex
    finally:
        ex.close()


# ============================================================================ 1. executors give identical results
@pytest.mark.parametrize("kind", ["process2", "process3", "dask2"])
def test_executors_and_worker_counts_give_identical_tables(kind: str, grid_serial, tmp_path: Path,
                                                           request: pytest.FixtureRequest) -> None:
    spec, ref = grid_serial
    if kind == "dask2":
        ex = request.getfixturevalue("dask_executor")
        assert ex.workers == 2
        res = run_sweep(spec, tmp_path / kind, executor=ex, progress=False)
    else:
        with ProcessExecutor(int(kind[-1])) as ex:
            res = run_sweep(spec, tmp_path / kind, executor=ex, progress=False)
    assert res.computed == 4 * GRID_REPS
    assert meta_of(tmp_path / kind)["executor"] == ex.name
    pd.testing.assert_frame_equal(table_of(tmp_path / kind), table_of(ref.out))
    # the summary is a function of the table, so it must agree too
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / kind / "summary.csv"),
                                  pd.read_csv(ref.out / "summary.csv"))


def _slower_first(x: int) -> int:
    """Task 0 takes longest, so on a pool the results arrive in reverse order."""
    time.sleep(0.05 * (6 - x))
    return 10 * x


@pytest.mark.parametrize("kind", ["process", "dask"])
def test_results_are_keyed_by_task_not_arrival(kind: str, request: pytest.FixtureRequest) -> None:
    tasks = list(range(6))
    if kind == "dask":
        pairs = list(request.getfixturevalue("dask_executor").run(_slower_first, tasks))
    else:
        with ProcessExecutor(2) as ex:
            pairs = list(ex.run(_slower_first, tasks))
    assert sorted(i for i, _ in pairs) == tasks
    assert dict(pairs) == {i: 10 * i for i in tasks}


def test_a_dask_worker_running_other_code_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                     request: pytest.FixtureRequest) -> None:
    """A Dask worker imports flowsim from its own disk: another version, or sources edited after this process
    started, would compute other numbers under the same seed without a word.  Here the caller claims other
    sources than the workers run: every task is refused, naming both hashes; the real ones run."""
    ex = request.getfixturevalue("dask_executor")
    assert dict(ex.run(_slower_first, [5])) == {0: 50}
    real = executors_mod.sources()
    monkeypatch.setattr(ex, "_sources", "0123456789abcdef")
    with pytest.raises(TaskError, match=rf"different flowsim code .*sources {real}\) .*\(sources 0123456789abcdef\)"):
        list(ex.run(_slower_first, [5], label=lambda t: f"task {t}"))
    assert ex.describe()["sources"] == "0123456789abcdef"


def test_source_fingerprint_follows_paths_and_contents(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    (pkg / "notes.txt").write_text("not code")
    first = executors_mod.source_fingerprint(pkg)
    assert len(first) == 16 and executors_mod.source_fingerprint(pkg) == first
    (pkg / "notes.txt").write_text("still not code")
    assert executors_mod.source_fingerprint(pkg) == first          # only Python sources count
    (pkg / "a.py").write_text("x = 2\n")
    edited = executors_mod.source_fingerprint(pkg)
    assert edited != first
    (pkg / "a.py").rename(pkg / "c.py")
    assert executors_mod.source_fingerprint(pkg) not in (first, edited)   # a renamed module is other code


def test_make_executor_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWSIM_SCHEDULER", raising=False)
    assert isinstance(make_executor("serial", 4), SerialExecutor)
    assert isinstance(make_executor("process", 1), SerialExecutor)   # one worker runs in-process
    pool = make_executor("process", 3)
    assert isinstance(pool, ProcessExecutor) and pool.workers == 3
    pool.close()
    with pytest.raises(FlowsimError, match="unknown 'threads'"):
        make_executor("threads", 2)
    with pytest.raises(FlowsimError, match="needs the dask executor"):
        make_executor("process", 2, "tcp://127.0.0.1:1")


# ============================================================================ 8. tidy table contents
def test_tidy_table_summary_and_figures(grid_serial) -> None:
    _, res = grid_serial
    table = pd.read_parquet(res.out / "results.parquet")
    lead = ["point_id", "point", BEDS, P2, "replication", "seed", "scenario_id"]
    assert list(table.columns[: len(lead)]) == lead
    assert set(GRID_KPIS) <= set(table.columns)
    assert len(table) == 4 * GRID_REPS
    assert not table.duplicated(["point_id", "replication"]).any()
    assert (table["seed"] == GRID_SEED).all()
    # grid order: every combination, first parameter slowest
    points = table.drop_duplicates("point").sort_values("point")
    assert list(zip(points[BEDS], points[P2], strict=True)) == [(120, 15), (120, 26), (130, 15), (130, 26)]
    for _, row in points.iterrows():
        assert row["point_id"] == point_id({BEDS: row[BEDS], P2: row[P2]})
    for _, grp in table.groupby("point_id"):
        assert sorted(grp["replication"]) == list(range(GRID_REPS))
    assert table["scenario_id"].nunique() == 4
    pd.testing.assert_frame_equal(table.drop(columns="seconds"), res.table.drop(columns="seconds"))

    # a point is exactly `flowsim run` of its scenario with the sweep's seed (replication r <-> seed index r)
    sc = load_scenario(MINIMAL, [f"{k}={v}" for k, v in FAST.items()] + [f"{BEDS}=130", f"{P2}=15"])
    direct = simulate(sc, GRID_REPS, GRID_SEED, progress=False, keep_patients=False).kpi_frame()
    mine = table[(table[BEDS] == 130) & (table[P2] == 15)].set_index("replication")
    assert (mine["scenario_id"] == scenario_hash(sc)).all()
    for k in GRID_KPIS:
        np.testing.assert_array_equal(mine[k].to_numpy(), direct[k].to_numpy())

    summary = pd.read_csv(res.out / "summary.csv")
    assert len(summary) == 4 * len(GRID_KPIS)
    assert set(summary["kpi"]) == set(GRID_KPIS)
    assert (summary["n"] == GRID_REPS).all()
    assert (summary["ci_low"] <= summary["mean"] + 1e-12).all()
    assert (summary["mean"] <= summary["ci_high"] + 1e-12).all()
    means = table.groupby("point_id")[GRID_KPIS].mean()
    for _, row in summary.iterrows():
        assert row["mean"] == pytest.approx(means.loc[row["point_id"], row["kpi"]], rel=1e-12, abs=1e-12)
    # the 95% t interval, built on the log scale (counts: never negative) or the logit scale (occupancy %: between
    # 0 and 100) and transformed back: mean * exp(+-h / mean) and 100 * expit(logit(p) +- h / (100 p (1 - p)))
    half = stats.t.ppf(0.975, GRID_REPS - 1) * summary["sd"] / math.sqrt(GRID_REPS)
    m = summary["mean"]
    share = summary["kpi"] == "occupancy_mean_pct"
    p = m / 100
    with np.errstate(divide="ignore", invalid="ignore"):  # both branches are computed; zeros are not compared
        logit = np.log(p / (1 - p))
        z = half / (100 * p * (1 - p))
        hi = np.where(share, 100 / (1 + np.exp(-(logit + z))), m * np.exp(half / m))
        lo = np.where(share, 100 / (1 + np.exp(-(logit - z))), m * np.exp(-half / m))
    varies = summary["sd"] > 0
    np.testing.assert_allclose(summary.loc[varies, "ci_high"], hi[varies], rtol=1e-9)
    np.testing.assert_allclose(summary.loc[varies, "ci_low"], lo[varies], rtol=1e-9)
    assert (summary["ci_low"] >= 0).all() and (summary.loc[share, "ci_high"] <= 100).all()

    figs = res.out / "figures"
    for name in ("response_acute_beds.png", "response_pathways_P2_services_intermediate_care_capacity.png",
                 "heatmap.png"):
        assert (figs / name).read_bytes()[:8] == PNG_MAGIC, name
    assert pd.read_csv(res.out / "results.csv").shape == table.shape


# ============================================================================ 2. kill, resume, refuse
KILL_POINTS = [18, 20, 22, 24]
KILL_REPS = 6


def _kill_spec(path: Path) -> Path:
    # ~0.1 s a task, 24 tasks: a couple of seconds of work, so the kill lands part-way
    return write_spec(path, seed=99, replications=KILL_REPS, kpis=["delayed_patients_per_day", "delayed_per_day_P2"],
                      set={"simulation.duration_days": 240, "simulation.warmup_days": 30},
                      parameters=[{"path": P2, "values": KILL_POINTS}])


def _cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "MPLBACKEND": "Agg"}


def _kill_part_way(spec: Path, out: Path, log_path: Path) -> None:
    """Start ``flowsim sweep`` in a subprocess and SIGKILL it once three results are stored (never before)."""
    store = Store(out)
    log = log_path.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "flowsim", "sweep", str(spec), "--out", str(out),
                             "--workers", "1", "--no-figures"], cwd=ROOT, env=_cli_env(),
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and len(store.done()) < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        if proc.poll() is not None:
            log.close()
            pytest.fail(f"the sweep ended (exit {proc.returncode}) before it could be killed; lengthen its tasks. "
                        f"stderr:\n{log_path.read_text()}")
        assert time.monotonic() < deadline, "the sweep wrote no results within 120 s"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        log.close()
    assert proc.returncode == -signal.SIGKILL, f"the sweep was not killed (exit {proc.returncode}); lengthen its tasks"


def _leave_a_half_written_part(store: Store, done: set[tuple[str, int]]) -> Path:
    """A partial file as ``atomic_write`` leaves it when killed mid-write (prefix ".<name>.", suffix ".tmp")."""
    missing = sorted({(point_id({P2: v}), r) for v in KILL_POINTS for r in range(KILL_REPS)} - done)
    pid, rep = missing[0]
    tmp_part = store.path(pid, rep).parent / f".{store.path(pid, rep).name}.k1ll3d.tmp"
    tmp_part.parent.mkdir(parents=True, exist_ok=True)
    tmp_part.write_bytes(b"PAR1 half a parquet file")
    return tmp_part


def test_killed_sweep_resumes_to_the_same_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _kill_spec(tmp_path / "kill.yaml")
    total = len(KILL_POINTS) * KILL_REPS
    with ProcessExecutor(2) as ex:
        ref = run_sweep(spec, tmp_path / "reference", executor=ex, progress=False)
    assert ref.computed == total

    out = tmp_path / "killed"
    store = Store(out)
    _kill_part_way(spec, out, tmp_path / "killed.stderr")
    done = store.done()
    assert 0 < len(done) < total, f"the kill did not land part-way ({len(done)} of {total} done)"
    before = {k: (store.path(*k).read_bytes(), store.path(*k).stat().st_mtime_ns) for k in done}
    assert meta_of(out)["status"] == "running"
    assert not (out / "results.parquet").exists()
    tmp_part = _leave_a_half_written_part(store, done)

    # without --resume the directory is refused, and nothing is touched
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1", "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert f"already holds {len(done)} results" in err and "--resume" in err and "--fresh" in err
    assert store.done() == done

    assert main(["sweep", str(spec), "--out", str(out), "--resume", "--workers", "1", "--no-figures"]) == 0
    capsys.readouterr()
    meta = meta_of(out)
    assert meta["status"] == "complete"
    assert meta["tasks_run_this_call"] == total - len(done)
    assert not tmp_part.exists()
    assert list(store.parts.glob("*/.*")) == []
    # finished parts were read, never rewritten
    assert {k: (store.path(*k).read_bytes(), store.path(*k).stat().st_mtime_ns) for k in done} == before
    table = table_of(out)
    assert not table.duplicated(["point_id", "replication"]).any()
    assert len(table) == total
    pd.testing.assert_frame_equal(table, table_of(ref.out))


def test_resume_guards_fresh_and_changed_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(MINIMAL.read_text(encoding="utf-8"), encoding="utf-8")
    fields = {"replications": 2, "kpis": ["delayed_patients_per_day"], "parameters": [{"path": P2, "values": [20, 26]}]}
    spec = write_spec(tmp_path / "guard.yaml", base=base, seed=5, **fields)
    out = tmp_path / "out"

    def sweep(*extra: str, spec_path: Path = spec) -> tuple[int, str]:
        rc = main(["sweep", str(spec_path), "--out", str(out), "--workers", "1", "--no-figures", *extra])
        return rc, capsys.readouterr().err

    assert sweep() == (0, "")
    first = table_of(out)
    assert meta_of(out)["tasks_run_this_call"] == 4

    rc, err = sweep()
    assert rc == 2 and "already holds 4 results" in err and "--resume" in err

    assert sweep("--resume") == (0, "")
    assert meta_of(out)["tasks_run_this_call"] == 0
    pd.testing.assert_frame_equal(table_of(out), first)

    rc, err = sweep("--resume", "--set", "arrivals.rate_per_day=21")
    assert rc == 2 and ("different scenario" in err or "changed since the sweep started" in err), err

    other_seed = write_spec(tmp_path / "guard_seed.yaml", base=base, seed=6, **fields)
    rc, err = sweep("--resume", spec_path=other_seed)
    assert rc == 2 and "seed 5, now 6" in err, err

    text = base.read_text(encoding="utf-8")
    assert text.count("rate_per_day: 20 ") == 1
    base.write_text(text.replace("rate_per_day: 20 ", "rate_per_day: 22 "), encoding="utf-8")
    rc, err = sweep("--resume")
    assert rc == 2 and ("different scenario" in err or "changed since the sweep started" in err), err
    pd.testing.assert_frame_equal(table_of(out), first)   # the refused resumes changed nothing

    # --fresh discards the old results and recomputes everything against the new base
    assert sweep("--fresh") == (0, "")
    assert meta_of(out)["tasks_run_this_call"] == 4
    fresh = table_of(out)
    sc = load_scenario(base, [f"{k}={v}" for k, v in FAST.items()] + [f"{P2}=20"])
    assert set(fresh.loc[fresh[P2] == 20, "scenario_id"]) == {scenario_hash(sc)}
    assert not set(fresh["scenario_id"]) & set(first["scenario_id"])
    assert {p.name for p in (out / "parts").iterdir()} == {point_id({P2: 20}), point_id({P2: 26})}


def _fail_after(limit: int) -> Callable[..., Any]:
    """A run_replication that works ``limit`` times and then fails (an interrupted sweep)."""
    real = sweep_mod.run_replication
    calls = {"n": 0}

    def run(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > limit:
            raise RuntimeError("interrupted for the test")
        return real(*args, **kwargs)

    return run


def test_resume_of_interrupted_target_search_refuses_changed_base(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(MINIMAL.read_text(encoding="utf-8"), encoding="utf-8")
    spec = write_spec(tmp_path / "target.yaml", base=base, seed=11, replications=3, target={
        "parameter": P2, "kpi": "delayed_per_day_P2", "at_most": 1.0, "low": 10, "high": 40})
    out = tmp_path / "out"
    monkeypatch.setattr(sweep_mod, "run_replication", _fail_after(7))
    with pytest.raises(TaskError):
        run_sweep(spec, out, executor=SerialExecutor(), progress=False)
    monkeypatch.undo()
    assert 0 < len(Store(out).done()) < 10
    text = base.read_text(encoding="utf-8")
    base.write_text(text.replace("rate_per_day: 20 ", "rate_per_day: 26 "), encoding="utf-8")
    with pytest.raises(FlowsimError, match=r"different scenario|changed since the sweep started"):
        run_sweep(spec, out, existing="resume", executor=SerialExecutor(), progress=False)


# ============================================================================ 9. worker failures
def _fail_on_two(x: int) -> int:
    if x == 2:
        raise ValueError(f"boom on task {x}")
    return 10 * x


def _label(x: int) -> str:
    return f"test task {x}"


def _collect_until_failure(it: Iterator[tuple[int, Any]]) -> tuple[dict[int, Any], TaskError]:
    got: dict[int, Any] = {}
    with pytest.raises(TaskError) as info:
        for i, value in it:
            got[i] = value
    with pytest.raises(StopIteration):   # iteration stops at the failure
        next(it)
    return got, info.value


@pytest.mark.parametrize("kind", ["serial", "process", "dask"])
def test_worker_failure_is_a_task_error_naming_the_task(kind: str, request: pytest.FixtureRequest) -> None:
    tasks = list(range(6))
    if kind == "dask":
        ex = request.getfixturevalue("dask_executor")
        got, err = _collect_until_failure(iter(ex.run(_fail_on_two, tasks, _label)))
    else:
        with SerialExecutor() if kind == "serial" else ProcessExecutor(2) as ex:
            got, err = _collect_until_failure(iter(ex.run(_fail_on_two, tasks, _label)))
    assert isinstance(err, FlowsimError)
    assert err.label == "test task 2"
    assert str(err) == "test task 2 failed: ValueError: boom on task 2"
    assert "boom on task 2" in err.worker_traceback and "_fail_on_two" in err.worker_traceback
    assert 2 not in got
    assert all(v == 10 * i for i, v in got.items())
    if kind == "serial":
        assert got == {0: 0, 1: 10}


def test_sweep_task_failure_names_point_and_replication_and_keeps_finished_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path / "fail.yaml", seed=3, replications=3, kpis=["delayed_patients_per_day"],
                      parameters=[{"path": P2, "values": [20, 26]}])
    out = tmp_path / "out"
    # replications are the outer loop: (20, r0), (26, r0), (20, r1) <- fails
    monkeypatch.setattr(sweep_mod, "run_replication", _fail_after(2))
    rc = main(["sweep", str(spec), "--out", str(out), "--workers", "1", "--no-figures"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert f"sweep point {point_id({P2: 20})} ({P2}=20) replication 1 (seed 3) failed" in err
    assert "RuntimeError: interrupted for the test" in err
    assert Store(out).done() == {(point_id({P2: 20}), 0), (point_id({P2: 26}), 0)}
    monkeypatch.undo()
    res = run_sweep(spec, out, existing="resume", executor=SerialExecutor(), progress=False)
    assert res.computed == 4
    assert len(res.table) == 6


# ============================================================================ 3. common random numbers
CRN_REPS = 20
CRN_ALPHA = 0.01
CRN_DESIGN_RATIO = 10.0


def test_common_random_numbers_reduce_variance_of_differences(tmp_path: Path) -> None:
    """One more P2 bed where P2 binds (20 beds for ~21 beds of demand).

    CRN: both points share seed 1 (the same sweep); independent: the 21-bed point re-run under seed 2.
    H0 var(CRN diff) >= var(independent diff) is rejected by a one-sided F test at 1%.
    """
    # power check: the test is designed to detect a variance ratio of 10 (independent differences carry the
    # whole between-replication variance of both points, ~2 var(KPI); paired differences only what one bed
    # changes); with R replications a ratio of 10 must be detected with probability >= 0.95
    crit = stats.f.ppf(1 - CRN_ALPHA, CRN_REPS - 1, CRN_REPS - 1)
    assert stats.f.sf(crit / CRN_DESIGN_RATIO, CRN_REPS - 1, CRN_REPS - 1) >= 0.95
    kpi = "delayed_patients_per_day"
    common = {"replications": CRN_REPS, "kpis": [kpi]}
    crn = run_sweep(write_spec(tmp_path / "crn.yaml", seed=1, parameters=[{"path": P2, "values": [20, 21]}],
                               **common), tmp_path / "crn", progress=False).table
    ind = run_sweep(write_spec(tmp_path / "ind.yaml", seed=2, parameters=[{"path": P2, "values": [21]}],
                               **common), tmp_path / "ind", progress=False).table
    a = crn[crn[P2] == 20].sort_values("replication")[kpi].to_numpy()
    b_crn = crn[crn[P2] == 21].sort_values("replication")[kpi].to_numpy()
    b_ind = ind.sort_values("replication")[kpi].to_numpy()
    assert len(a) == len(b_crn) == len(b_ind) == CRN_REPS
    assert not np.array_equal(b_crn, b_ind)   # another seed really gives other random numbers
    d_crn, d_ind = b_crn - a, b_ind - a
    # the bed binds: the paired difference is not identically zero, and it lowers delays (one-sided t test)
    assert np.var(d_crn, ddof=1) > 0
    assert stats.ttest_1samp(d_crn, 0.0, alternative="less").pvalue < 0.01
    ratio = np.var(d_ind, ddof=1) / np.var(d_crn, ddof=1)
    p = stats.f.sf(ratio, CRN_REPS - 1, CRN_REPS - 1)
    assert p < CRN_ALPHA, f"variance ratio {ratio:.2f}, p = {p:.3g}"


# ============================================================================ 4. target finder
def _hyperbola(a: float, b: float, reps: int, seed: int, sign: float = 1.0,
               c: float = 0.0) -> tuple[Callable[[float], np.ndarray], np.ndarray, list[float]]:
    """KPI_r(x) = c + sign * a_r / (x - b), a_r = a (1 + 0.3 z_r): the same a_r at every x (CRN).

    Mean and one-sided bound are then exact hyperbolas in x, so the crossing points are known in closed form.
    """
    z = np.random.default_rng(seed).standard_normal(reps)
    a_r = a * (1 + 0.3 * z)
    calls: list[float] = []

    def evaluate(x: float) -> np.ndarray:
        calls.append(x)
        return c + sign * a_r / (x - b)

    return evaluate, a_r, calls


def _brute_force(target: Target, evaluate: Callable[[float], np.ndarray], confident: bool) -> float | None:
    upper = target.at_most is not None
    for v in range(round(target.low), round(target.high) + 1):
        x = evaluate(float(v))
        stat = one_sided_bound(x, target.confidence, upper) if confident else float(np.mean(x))
        if (stat <= target.threshold) if upper else (stat >= target.threshold):
            return float(v)
    return None


@pytest.mark.parametrize(("seed", "threshold", "confidence"), [(1, 4.0, 0.95), (2, 2.5, 0.9), (3, 6.3, 0.99)])
def test_find_target_at_most_matches_brute_force_and_closed_form(seed: int, threshold: float,
                                                                 confidence: float) -> None:
    a, b, reps = 60.0, 3.0, 8
    target = Target(parameter="x", kpi="k", at_most=threshold, low=5, high=200, confidence=confidence)
    evaluate, a_r, calls = _hyperbola(a, b, reps, seed)
    res = find_target(target, evaluate)
    searched = list(calls)
    assert res.answer == _brute_force(target, evaluate, True)
    assert res.point_estimate == _brute_force(target, evaluate, False)
    # closed form: bound(x) = A / (x - b) with A = mean(a_r) + t sd(a_r) / sqrt(R); smallest integer x >= b + A / thr
    big_a = a_r.mean() + stats.t.ppf(confidence, reps - 1) * a_r.std(ddof=1) / math.sqrt(reps)
    assert res.answer == math.ceil(b + big_a / threshold)
    assert res.point_estimate == math.ceil(b + a_r.mean() / threshold)
    assert res.point_estimate <= res.answer
    assert res.monotone
    # bisection, not a scan: at most two searches of ~log2(195) steps each
    assert len(set(searched)) == len(searched) <= 2 * (2 + math.ceil(math.log2(195)))
    ev = res.evaluations.set_index("value")
    assert ev.loc[res.answer, "bound"] <= threshold < ev.loc[res.answer - 1, "bound"]


def test_find_target_at_least_matches_brute_force() -> None:
    # KPI increases with x towards c = 10: KPI_r = 10 - a_r / (x - 3)
    target = Target(parameter="x", kpi="k", at_least=7.5, low=4, high=150)
    evaluate, a_r, _ = _hyperbola(40.0, 3.0, 6, seed=7, sign=-1.0, c=10.0)
    res = find_target(target, evaluate)
    assert res.answer == _brute_force(target, evaluate, True)
    assert res.point_estimate == _brute_force(target, evaluate, False)
    big_a = a_r.mean() + stats.t.ppf(0.95, 5) * a_r.std(ddof=1) / math.sqrt(6)
    assert res.answer == math.ceil(3 + big_a / (10 - 7.5))
    assert res.point_estimate is not None and res.point_estimate <= res.answer
    assert res.monotone


def test_find_target_edges() -> None:
    evaluate, _, _ = _hyperbola(60.0, 3.0, 8, seed=1)
    # bound at high = ~60/197 ~ 0.3: a target of 0.1 cannot be met in range
    never = find_target(Target(parameter="x", kpi="k", at_most=0.1, low=5, high=200), evaluate)
    assert never.answer is None
    assert "no value in [5, 200]" in never.sentence()
    # mean at low = 60/2 = 30 ~ bound well under 1000: met at low
    always = find_target(Target(parameter="x", kpi="k", at_most=1000.0, low=5, high=200), evaluate)
    assert always.answer == 5 and always.point_estimate == 5
    # at_least, met already at low
    up, _, _ = _hyperbola(40.0, 3.0, 6, seed=7, sign=-1.0, c=10.0)
    assert find_target(Target(parameter="x", kpi="k", at_least=-100.0, low=4, high=150), up).answer == 4
    assert find_target(Target(parameter="x", kpi="k", at_least=9.99, low=4, high=150), up).answer is None


def test_find_target_continuous_within_tolerance() -> None:
    a, b, reps, thr, tol = 60.0, 3.0, 8, 4.0, 0.01
    evaluate, a_r, _ = _hyperbola(a, b, reps, seed=4)
    target = Target(parameter="x", kpi="k", at_most=thr, low=5, high=200, integer=False, tolerance=tol)
    res = find_target(target, evaluate)
    big_a = a_r.mean() + stats.t.ppf(0.95, reps - 1) * a_r.std(ddof=1) / math.sqrt(reps)
    exact = b + big_a / thr
    assert res.answer is not None and exact <= res.answer <= exact + tol
    exact_mean = b + a_r.mean() / thr
    assert res.point_estimate is not None and exact_mean <= res.point_estimate <= exact_mean + tol
    assert res.point_estimate <= res.answer


def test_one_sided_bound_is_the_t_bound() -> None:
    x = np.array([1.0, 2.0, 4.0, 7.0])
    half = stats.t.ppf(0.9, 3) * x.std(ddof=1) / 2
    assert one_sided_bound(x, 0.9, upper=True) == pytest.approx(x.mean() + half)
    assert one_sided_bound(x, 0.9, upper=False) == pytest.approx(x.mean() - half)
    assert one_sided_bound(x[:1], 0.9, upper=True) == math.inf


def test_target_end_to_end(tmp_path: Path) -> None:
    """Smallest P2 capacity with delayed_per_day_P2 <= 1 (95%): P2 demand ~21 beds, so 10 beds are far
    too few (a growing queue) and 40 (utilisation ~0.5) leave essentially no queue: the answer is inside."""
    seed, reps, kpi = 11, 3, "delayed_per_day_P2"
    spec = write_spec(tmp_path / "target.yaml", seed=seed, replications=reps, target={
        "parameter": P2, "kpi": kpi, "at_most": 1.0, "low": 10, "high": 40})
    res = run_sweep(spec, tmp_path / "out", executor=SerialExecutor(), progress=False, draw=draw_sweep)
    t = res.target
    assert t is not None and t.answer is not None
    assert 10 < t.answer < 40
    assert t.point_estimate is not None and t.point_estimate <= t.answer
    ev = pd.read_csv(tmp_path / "out" / "target.csv").set_index("value")
    assert ev.loc[t.answer, "bound"] <= 1.0 < ev.loc[t.answer - 1, "bound"]
    assert (ev["n"] == reps).all()
    assert res.computed == reps * len(ev)
    saved = json.loads((tmp_path / "out" / "target.json").read_text())
    assert saved["answer"] == t.answer and saved["point_estimate"] == t.point_estimate
    assert meta_of(tmp_path / "out")["target"]["answer"] == t.answer
    assert (tmp_path / "out" / "figures" / "target.png").read_bytes()[:8] == PNG_MAGIC
    # the evaluation at the answer is `flowsim run` of that scenario with the sweep's seed
    sc = load_scenario(MINIMAL, [f"{k}={v}" for k, v in FAST.items()] + [f"{P2}={int(t.answer)}"])
    direct = simulate(sc, reps, seed, progress=False, keep_patients=False).kpi_frame()[kpi]
    assert ev.loc[t.answer, "mean"] == pytest.approx(direct.mean(), rel=1e-12)


# ============================================================================ 5. sensitivity
def test_morris_sensitivity(tmp_path: Path) -> None:
    """population_18plus enters only the per-100k rate, so with CRN its elementary effects on delays are exactly
    zero; P2 beds bind (demand ~21) so they move delays; the rate per 100k shows population was really varied."""
    kpis = ["delayed_patients_per_day", "dtoc_rate_per_100k"]
    spec = write_spec(tmp_path / "morris.yaml", seed=8, sensitivity={
        "method": "morris", "trajectories": 3, "levels": 4, "replications": 1, "kpis": kpis,
        "parameters": [{"path": P2, "low": 10, "high": 30, "integer": True},
                       {"path": "population_18plus", "low": 40000, "high": 60000, "integer": True},
                       {"path": BEDS, "low": 110, "high": 140, "integer": True}]})
    res = run_sweep(spec, tmp_path / "out", executor=SerialExecutor(), progress=False, draw=draw_sweep)
    loaded, _, _ = load_spec(spec)
    assert loaded.sensitivity is not None
    _, x = sensitivity_design(loaded.sensitivity, loaded.seed)
    assert len(x) == 3 * (3 + 1)   # trajectories x (parameters + 1)
    assert res.computed == len(np.unique(x, axis=0))   # one replication of each distinct point
    sens = pd.read_csv(tmp_path / "out" / "sensitivity.csv")
    assert len(sens) == 3 * 2
    assert not sens.duplicated(["parameter", "kpi"]).any()
    assert set(sens["parameter"]) == {P2, "population_18plus", BEDS} and set(sens["kpi"]) == set(kpis)
    assert np.isfinite(sens["mu_star"]).all()
    s = sens.set_index(["parameter", "kpi"])
    assert s.loc[("population_18plus", "delayed_patients_per_day"), "mu_star"] == 0.0
    assert s.loc[("population_18plus", "delayed_patients_per_day"), "sigma"] == 0.0
    assert s.loc[(P2, "delayed_patients_per_day"), "mu_star"] > 0
    assert s.loc[(P2, "delayed_patients_per_day"), "mu"] < 0   # more beds, fewer delays
    assert s.loc[("population_18plus", "dtoc_rate_per_100k"), "mu_star"] > 0
    assert (tmp_path / "out" / "figures" / "sensitivity.png").read_bytes()[:8] == PNG_MAGIC


def test_sobol_sensitivity_small(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "sobol.yaml", seed=9, sensitivity={
        "method": "sobol", "samples": 8, "replications": 1,
        "parameters": [{"path": P2, "low": 10, "high": 30, "integer": True},
                       {"path": "population_18plus", "low": 40000, "high": 60000, "integer": True}]})
    res = run_sweep(spec, tmp_path / "out", executor=SerialExecutor(), progress=False)
    sens = res.sensitivity
    assert sens is not None and len(sens) == 2
    s = sens.set_index("parameter")
    # exact zeros: with CRN, changing population alone reproduces every output bit for bit
    assert s.loc["population_18plus", "S1"] == 0.0 and s.loc["population_18plus", "ST"] == 0.0
    assert s.loc[P2, "ST"] > 0


def test_sobol_samples_must_be_a_power_of_two(tmp_path: Path) -> None:
    text = (f"base: {MINIMAL}\n"
            "sensitivity:\n"
            "  method: sobol\n"
            "  samples: 12\n"
            "  parameters:\n"
            f"    - {{path: {P2}, low: 10, high: 30}}\n"
            f"    - {{path: {BEDS}, low: 100, high: 140}}\n")
    path = tmp_path / "sobol.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"samples must be a power of 2 .* got 12") as info:
        load_spec(path)
    assert f"{path}:{line_of(text, 'sensitivity:')}: sensitivity:" in str(info.value)


# ============================================================================ 6. spec validation
def _bad(tmp_path: Path, body: str) -> tuple[Path, str]:
    text = f"name: bad\nbase: {MINIMAL}\n{body}"
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    return path, text


BAD_SPECS = {
    "unknown field": ("replicatons: 3\nparameters:\n  - {path: acute.beds, values: [120]}\n",
                      "replicatons:", "replicatons: unknown field"),
    "unknown parameter field": ("parameters:\n  - path: acute.beds\n    valuez: [120]\n",
                                "valuez", "parameters.0.valuez: unknown field"),
    "both at_most and at_least": ("target:\n  parameter: acute.beds\n  kpi: delayed_patients_per_day\n"
                                  "  at_most: 5\n  at_least: 3\n  low: 100\n  high: 140\n",
                                  "target:", "target: give exactly one of at_most or at_least"),
    "range upside down": ("design: lhs\nsamples: 4\nparameters:\n  - {path: acute.beds, low: 140, high: 100}\n",
                          "low: 140", "parameters.0: low (140.0) must be below high (100.0)"),
    "seed negative": ("seed: -1\nparameters:\n  - {path: acute.beds, values: [120]}\n",
                      "seed:", "seed: allowed: a whole number from 0 to 9,223,372,036,854,775,807 (a random seed) "
                               "(got -1)"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_names_file_line_and_field(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body, where, message = BAD_SPECS[case]
    path, text = _bad(tmp_path, body)
    with pytest.raises(ScenarioError) as info:
        load_spec(path)
    assert f"{path}:{line_of(text, where)}: {message}" in str(info.value)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert f"flowsim: error: {path}:{line_of(text, where)}: " in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("body", "message"), [
    ("parameters:\n  - {path: acute.beds, low: 100, high: 140}\n", "a grid needs values"),
    ("design: lhs\nparameters:\n  - {path: acute.beds, low: 100, high: 140}\n", "design: lhs needs samples"),
    ("description: nothing\n", "nothing to do"),
], ids=["grid with low/high", "lhs without samples", "nothing to do"])
def test_cross_field_spec_errors_are_clear(body: str, message: str, tmp_path: Path) -> None:
    path, _ = _bad(tmp_path, body)
    with pytest.raises(ScenarioError, match=message) as info:
        load_spec(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("body", "where", "field"), [
    ("parameters:\n  - {path: acute.beds, low: 100, high: 140}\n", "{path: acute.beds", "parameters.0"),
    ("design: lhs\nparameters:\n  - {path: acute.beds, low: 100, high: 140}\n", "design: lhs", "design"),
], ids=["grid with low/high", "lhs without samples"])
def test_cross_field_spec_errors_point_at_the_field(body: str, where: str, field: str, tmp_path: Path) -> None:
    path, text = _bad(tmp_path, body)
    with pytest.raises(ScenarioError) as info:
        load_spec(path)
    assert f"{path}:{line_of(text, where)}: {field}" in str(info.value)


def test_unknown_parameter_path_names_the_sweep_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, text = _bad(tmp_path, (
        "replications: 1\n"
        "set: {simulation.duration_days: 30, simulation.warmup_days: 5}\n"
        "parameters:\n"
        "  - path: acute.beds\n"
        "    values: [120, 130]\n"
        "  - path: pathways.P2.services.intermediate_care.capacityy\n"
        "    values: [20]\n"))
    with pytest.raises(ScenarioError) as info:
        run_sweep(path, tmp_path / "out", progress=False)
    line = line_of(text, "capacityy")
    assert f"{path}:{line}: pathways.P2.services.intermediate_care.capacityy: unknown field" in str(info.value)
    assert not Store(tmp_path / "out").done()   # found before any task ran
    assert main(["sweep", str(path), "--out", str(tmp_path / "cli"), "--workers", "1"]) == 2
    assert f"{path}:{line}:" in capsys.readouterr().err


def test_invalid_point_names_the_point(tmp_path: Path) -> None:
    path, text = _bad(tmp_path, (
        "replications: 1\n"
        "parameters:\n"
        "  - path: acute.beds\n"
        "    values: [130, -5]\n"))
    with pytest.raises(ScenarioError) as info:
        run_sweep(path, tmp_path / "out", progress=False)
    msg = str(info.value)
    assert msg.startswith("sweep point acute.beds=-5: ")
    assert f"{path}:{line_of(text, 'path: acute.beds')}: acute.beds:" in msg and "(got -5)" in msg
    assert not Store(tmp_path / "out").done()   # found before any task ran (130 is valid and comes first)


def test_bad_set_override_names_the_sweep_line(tmp_path: Path) -> None:
    path, text = _bad(tmp_path, "set:\n  acute.beds.base.x: 3\nparameters:\n  - {path: acute.beds, values: [1]}\n")
    with pytest.raises(ScenarioError) as info:
        run_sweep(path, tmp_path / "out", progress=False)
    assert f"{path}:{line_of(text, 'acute.beds.base.x')}: set.acute.beds.base.x:" in str(info.value)


def test_unknown_kpi_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path / "kpi.yaml", replications=1, kpis=["delayed_patients_per_day", "not_a_kpi"],
                      parameters=[{"path": P2, "values": [26]}])
    with pytest.raises(FlowsimError, match=r"kpi\.yaml:\d+: kpis: unknown KPI 'not_a_kpi'") as info:
        run_sweep(spec, tmp_path / "out", progress=False)
    # reported at the first result, not after the whole sweep: one task ran, its result is kept
    assert len(list((tmp_path / "out" / "parts").glob("*/*.parquet"))) == 1, str(info.value)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "cli"), "--workers", "1", "--no-figures"]) == 2
    assert "flowsim: error:" in capsys.readouterr().err


# ============================================================================ 7. Latin hypercube
def _lhs_spec(n: int, seed: int) -> SweepSpec:
    return SweepSpec(base="x.yaml", design="lhs", samples=n, seed=seed, parameters=[
        Parameter(path="a", low=0.0, high=10.0),
        Parameter(path="b", low=-1.0, high=1.0),
        Parameter(path="c", low=100, high=140, integer=True),
    ])


@pytest.mark.parametrize(("n", "seed"), [(7, 1), (20, 2), (64, 3)])
def test_lhs_is_stratified_and_reproducible(n: int, seed: int) -> None:
    points = design_points(_lhs_spec(n, seed))
    assert len(points) == n
    for p in _lhs_spec(n, seed).parameters:
        values = np.array([pt[p.path] for pt in points], dtype=float)
        assert ((values >= p.low) & (values <= p.high)).all()
        if p.integer:
            assert all(isinstance(pt[p.path], int) for pt in points)
            continue
        bins = np.minimum(np.floor((values - p.low) / (p.high - p.low) * n).astype(int), n - 1)
        assert sorted(bins) == list(range(n)), f"{p.path}: not one sample per stratum"
    assert design_points(_lhs_spec(n, seed)) == points
    assert design_points(_lhs_spec(n, seed + 1)) != points


def test_lhs_sweep_end_to_end(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "lhs.yaml", seed=4, replications=1, design="lhs", samples=4,
                      kpis=["delayed_patients_per_day"],
                      parameters=[{"path": P2, "low": 15, "high": 30, "integer": True},
                                  {"path": "arrivals.rate_per_day", "low": 18, "high": 22}])
    res = run_sweep(spec, tmp_path / "out", executor=SerialExecutor(), progress=False, draw=draw_sweep)
    loaded, _, _ = load_spec(spec)
    expected = design_points(loaded)
    assert len(res.table) == 4 and res.table["point_id"].nunique() == 4
    assert sorted(res.table["arrivals.rate_per_day"]) == sorted(p["arrivals.rate_per_day"] for p in expected)
    assert (tmp_path / "out" / "figures" / "lhs_scatter.png").read_bytes()[:8] == PNG_MAGIC
