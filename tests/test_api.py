"""The Python API (issue 14, point 7): documented, strict about what it supports, per-stay records with calendar
times and a warm-up flag, and the option to drop per-stay records on long runs.

Issue 14 found ``res.periods("W")``, ``"Y"`` and ``"quarter"`` silently returning months, Results methods
without docstrings and per-stay records in float days with warm-up rows unmarked.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from flowsim import simulate
from flowsim.experiment.runner import RunResult
from flowsim.results.records import TIME_FIELDS
from flowsim.rundir import write_run_dir
from flowsim.scenario import validate_dict

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flowsim"


@pytest.fixture(scope="module")
def run(scenario_builder: Callable[..., dict[str, Any]]) -> RunResult:
    """A year and a bit (so weeks, months, quarters and two financial years) with delays, 3 replications."""
    data = scenario_builder(rate=6.0, beds=12, acute_los={"dist": "exponential", "mean": 1.5},
                            pathway_mix={"P0": 0.7, "P2": 0.3}, start_date="2024-02-05", duration_days=420,
                            warmup_days=15,
                            pathways={"P0": {}, "P2": {"services": {"ic": {"capacity": 3, "los": {
                                "dist": "exponential", "mean": 2.0}}}}})
    return simulate(validate_dict(data), replications=3, seed=5, workers=1, progress=False)


def test_public_functions_and_methods_have_docstrings() -> None:
    """Every public function, method and class of the package says what it is for."""
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))

        def visit(node: ast.AST, prefix: str, path: Path = path) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                    if child.name.startswith("_"):
                        continue
                    if ast.get_docstring(child) is None:
                        missing.append(f"{path.relative_to(ROOT)}:{child.lineno} {prefix}{child.name}")
                    if isinstance(child, ast.ClassDef):
                        visit(child, f"{prefix}{child.name}.")

        visit(tree, "")
    assert not missing, f"{len(missing)} public definitions without a docstring: {missing}"


@pytest.mark.parametrize(("freq", "label"), [("Q", "2023/24 Q4"), ("quarter", "2023/24 Q4"), ("M", "2024-02"),
                                             ("month", "2024-02"), ("Y", "2023/24"), ("year", "2023/24"),
                                             ("W", "w/c 2024-02-05"), ("week", "w/c 2024-02-05")])
def test_periods_support_what_they_say(run: RunResult, freq: str, label: str) -> None:
    table = run.periods(freq)
    assert table["period"].iloc[0] == label
    total = run.daily().groupby("replication")["delayed_midnight"].sum().mean()
    assert table["delayed_days"].sum() == pytest.approx(total)   # every day counted once
    assert table["days"].sum() == 420
    expected_rows = {"Q": 5, "quarter": 5, "M": 14, "month": 14, "Y": 2, "year": 2, "W": 60, "week": 60}[freq]
    assert len(table) == expected_rows
    assert (table["ci_low"].dropna() >= 0).all()
    per_day = table["delayed_days"] / table["days"] / run.scenario.population_18plus * 1e5
    np.testing.assert_allclose(table["delayed_per_day_per_100k"], per_day)   # the BCF target's own unit


@pytest.mark.parametrize("freq", ["D", "H", "quarterly", "w", "", "2Q"])
def test_periods_reject_anything_else(run: RunResult, freq: str) -> None:
    with pytest.raises(ValueError, match=r"unknown frequency .*allowed: 'Q' or 'quarter'"):
        run.periods(freq)


def test_per_stay_records_carry_calendar_times_and_a_warmup_flag(run: RunResult) -> None:
    p = run.patients()
    start = pd.Timestamp(dt.date(2024, 2, 5))
    cols = list(p.columns)
    for f in TIME_FIELDS:
        assert cols.index(f"{f}_datetime") == cols.index(f) + 1, f  # beside its model time
        days = p[f]
        expected = (start + pd.to_timedelta(days, unit="D")).dt.round("s")
        pd.testing.assert_series_equal(p[f"{f}_datetime"], expected, check_names=False)
        assert p.loc[days.isna(), f"{f}_datetime"].isna().all()
    assert p["warmup"].dtype == bool
    assert (p["warmup"] == (p["arrival"] < 0)).all()        # no initial state here
    assert p["warmup"].any() and not p["warmup"].all()
    assert (p.loc[p["warmup"], "arrival_datetime"] < start).all()


def test_no_patients_for_long_runs(scenario_builder: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    sc = validate_dict(scenario_builder(duration_days=20, warmup_days=5))
    res = simulate(sc, replications=2, seed=1, workers=1, progress=False, keep_patients=False)
    assert res.patients().empty
    written = write_run_dir(res, tmp_path / "run")
    assert "patients" not in written and not (tmp_path / "run" / "patients.parquet").exists()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["patients_kept"] is False and summary["kpis"]["delayed_patients_per_day"]["n"] == 2


def test_summary_intervals_respect_ranges(run: RunResult) -> None:
    table = run.summary()
    finite = table.dropna(subset=["ci_low"])
    assert (finite["ci_low"] >= 0).all()
    pct = [k for k in finite.index if k.endswith("_pct")]
    assert pct and (finite.loc[pct, "ci_high"] <= 100).all()
