"""Golden-output regression test: the shipped scenarios at a fixed seed still give the committed numbers.

What is pinned, the tolerance and why, and the command that regenerates the files when a change is meant to
move results (``python -m tests.golden --regenerate``) are in ``tests/golden.py``.  A failure names every KPI
and daily series that moved, by how much, and repeats that command.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from golden import ATOL, CASES, GOLDEN_DIR, REGENERATE, RTOL, Case, compute, differences, read, write


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_results_match_the_golden_files(case: Case) -> None:
    message = differences(case)
    assert not message, "\n" + message


def test_golden_files_are_small_and_cover_every_case() -> None:
    names = {p.name for p in GOLDEN_DIR.iterdir()}
    expected = {f"{c.name}.{kind}.csv" for c in CASES for kind in ("kpis", "daily")} | {"MANIFEST.json"}
    assert names == expected, f"stale or missing golden files: run `{REGENERATE}`"
    total = sum(p.stat().st_size for p in GOLDEN_DIR.iterdir())
    assert total < 400_000, f"golden files take {total} bytes: shorten the horizons"


def test_files_hold_exactly_the_computed_doubles(tmp_path: Path) -> None:
    """Regenerating into a fresh folder and reading back gives the computed tables bit for bit (the CSV
    format loses nothing), and comparing them reports nothing."""
    case = CASES[0]
    write(tmp_path, (case,))
    back, now = read(case, tmp_path), compute(case)
    pd.testing.assert_frame_equal(back.kpis, now.kpis, check_exact=True)
    pd.testing.assert_frame_equal(back.daily, now.daily, check_exact=True, check_dtype=False)
    assert differences(case, tmp_path) == ""


def test_a_moved_result_is_named_with_its_size_and_the_regenerate_command(tmp_path: Path) -> None:
    """Perturb golden files by more than the tolerance (and one KPI by less) and check the message: it names
    the KPI, the replication, old and new values and the relative change; the daily series and the first day it
    moved; the KPI that disappeared; and the command to regenerate."""
    case = CASES[0]
    write(tmp_path, (case,))
    kp, dp = tmp_path / f"{case.name}.kpis.csv", tmp_path / f"{case.name}.daily.csv"
    kpis = pd.read_csv(kp, index_col="kpi", engine="python")
    kpi = "occupancy_mean_pct"
    true_value = float(kpis.at[kpi, "rep_1"])
    kpis.at[kpi, "rep_1"] = true_value * 1.01  # the run will look 1% lower than the golden file
    within = "admissions_per_day"
    kpis.at[within, "rep_0"] = float(kpis.at[within, "rep_0"]) * (1 + RTOL / 10)  # inside tolerance: not reported
    kpis.loc["a_kpi_that_was_removed"] = 1.0
    kpis.to_csv(kp, lineterminator="\n")
    daily = pd.read_csv(dp, engine="python")
    rows = np.flatnonzero((daily["replication"] == 2).to_numpy())[5:]
    daily.loc[rows, "delayed_midnight"] += 1
    daily.to_csv(dp, index=False, lineterminator="\n")

    message = differences(case, tmp_path)
    assert f"{kpi} [rep_1]: {true_value * 1.01:.10g} -> {true_value:.10g}" in message, message
    assert "-0.99%" in message, message
    assert within not in message
    assert "KPI no longer produced: a_kpi_that_was_removed" in message
    first_day = daily["day"].iat[rows[0]]
    assert f"delayed_midnight: moved on {len(rows)} of {len(daily)} replication-days, first replication 2 day " \
           f"{first_day}" in message, message
    assert "largest change -1" in message
    assert REGENERATE in message and f"rtol {RTOL:g}" in message and f"atol {ATOL:g}" in message
