"""Shared fixtures: repository paths and a builder of small, valid scenario dicts.

The builder returns plain dicts (not Scenario objects) so each test can tweak
one field and then call ``validate_dict``; every call returns a fresh deep copy.
"""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import (
    SMALL_CALIBRATION,
    WINTER_COMPARE_DAYS,
    WINTER_COMPARE_FILES,
    WINTER_COMPARE_REPS,
    WINTER_COMPARE_WARMUP,
    flowsim,
)
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS_DIR = ROOT / "scenarios"
MINIMAL = SCENARIOS_DIR / "minimal.yaml"

# Property-based tests draw the same examples on every run (derandomize: examples follow from the test itself, no
# example database), so a red CI run is reproduced by running the suite again.  HYPOTHESIS_PROFILE=explore draws
# fresh examples for a local search for new counterexamples.
settings.register_profile("repeatable", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

def base_scenario_dict(
    *,
    rate: float = 8.0,
    beds: Any = 10,
    acute_los: dict[str, Any] | None = None,
    pathway_mix: dict[str, float] | None = None,
    pathways: dict[str, Any] | None = None,
    duration_days: int = 365,
    warmup_days: int = 30,
    start_date: str = "2024-01-01",
    **top: Any,
) -> dict[str, Any]:
    """A valid single-cohort scenario: flat Poisson arrivals, no assessment, no discharge hours.

    The defaults describe an M/M/10 acute stage (rate 8/day, exponential LOS mean 1 day)
    whose patients all go home (P0) with zero transfer time.  Extra keyword arguments
    are set as top-level fields (e.g. ``assessment=...``, ``long_term_care=...``).
    """
    data: dict[str, Any] = {
        "name": "test scenario",
        "simulation": {"start_date": start_date, "duration_days": duration_days, "warmup_days": warmup_days},
        "population_18plus": 100_000,
        "arrivals": {"rate_per_day": rate},
        "cohorts": {
            "everyone": {
                "share": 1.0,
                "age_band": "65-84",
                "acute_los": acute_los or {"dist": "exponential", "mean": 1.0},
                "pathway_mix": pathway_mix or {"P0": 1.0},
            }
        },
        "acute": {"beds": beds},
        "pathways": pathways or {"P0": {}},
    }
    data.update(top)
    return copy.deepcopy(data)


@pytest.fixture(autouse=True)
def _fresh_residual_tables() -> None:
    """Start every test with the residual-stay grid cache empty (``flowsim.model.residual``).

    Why: the cache is keyed by the distribution, so a test that needs a grid gets the one an earlier test built,
    and a planted bug in building grids went unseen: a mutation run forks each mutant's tests from a process that
    has already run the clean suite, and 68 of the first 88 mutants of the grid code survived on cached tables.
    Building a grid takes well under a millisecond."""
    from flowsim.model.residual import _cached_table

    _cached_table.cache_clear()


@pytest.fixture(scope="session")
def scenario_builder() -> Callable[..., dict[str, Any]]:
    """``scenario_builder(**kw)`` -> a fresh valid scenario dict (see ``base_scenario_dict``).

    Session-scoped so hypothesis tests may use it (the builder itself has no state).
    """
    return base_scenario_dict


@pytest.fixture
def scenario_dict() -> dict[str, Any]:
    """A fresh copy of the default base scenario dict."""
    return base_scenario_dict()


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def minimal_path() -> Path:
    return MINIMAL


# ------------------------------------------------------------------------------------------ shared end-to-end runs


@pytest.fixture(scope="session")
def winter_compare(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``flowsim compare`` of the winter options, once per session (per xdist worker), as a user types it.

    Readers must not change the directory (copy it first); writing its report.html is fine (the same bytes)."""
    out = tmp_path_factory.mktemp("winter_compare") / "winter"
    proc = flowsim("compare", *WINTER_COMPARE_FILES, "-n", str(WINTER_COMPARE_REPS),
                   "--set", f"simulation.duration_days={WINTER_COMPARE_DAYS}",
                   "--set", f"simulation.warmup_days={WINTER_COMPARE_WARMUP}", "--out", out)
    return proc, out


@pytest.fixture(scope="session")
def small_calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``flowsim calibrate`` of the small test calibration with the smallest budget, once per session."""
    out = tmp_path_factory.mktemp("small_calibration") / "calibration"
    proc = flowsim("calibrate", SMALL_CALIBRATION, "--budget", "2,1", "--out", out)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return out
