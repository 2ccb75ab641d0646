"""KPI definitions (``flowsim.results.kpi``) on tiny runs whose answer is worked out by hand.

Why: the mutation run (``docs/mutation.md``) showed measures that the end-to-end recomputation in
``test_kpi_recompute.py`` cannot separate, because nothing in those runs reaches the edge the definition is about.
The first is the ED wait of a patient still boarding when the window closes: the NHS counts the wait so far (censored
at the window's end), so a model that drops or mis-times those waits reports short waits exactly when the front door
is worst.  Here one bed is taken by the first arrival for longer than the window, so every later arrival is still
boarding at the end and its wait is ``T - arrival`` by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from flowsim import simulate
from flowsim.experiment.runner import RunResult
from flowsim.scenario.loader import validate_dict

T_DAYS = 3


@pytest.fixture(scope="module")
def blocked_front_door(scenario_builder: Callable[..., dict[str, Any]]) -> tuple[RunResult, pd.DataFrame]:
    """One acute bed held for 10 days by the first arrival of a 3-day window: everyone else boards until T."""
    data = scenario_builder(rate=4.0, beds=1, acute_los={"dist": "fixed", "value": 10.0},
                            duration_days=T_DAYS, warmup_days=0)
    res = simulate(validate_dict(data), replications=1, seed=3, workers=1)
    p = res.patients()
    return res, p[p["replication"] == 0].sort_values("arrival").reset_index(drop=True)


def test_ed_waits_still_boarding_at_the_end_are_censored_at_the_window_end(
        blocked_front_door: tuple[RunResult, pd.DataFrame]) -> None:
    res, p = blocked_front_door
    kpis = res.replications[0].kpis
    arrivals = p["arrival"].to_numpy(dtype=float)
    in_window = arrivals[(arrivals >= 0) & (arrivals < T_DAYS)]
    assert len(in_window) >= 6, "the run must have a queue at the door"
    # by hand: the first arrival walks into the empty bed (wait 0); each later one waits until T
    waits_h = 24.0 * np.concatenate([[0.0], T_DAYS - in_window[1:]])
    assert p.loc[0, "bed_start"] == pytest.approx(p.loc[0, "arrival"])
    assert p["bed_start"].iloc[1:].isna().all() or (p["bed_start"].iloc[1:] >= T_DAYS).all()
    assert kpis["ed_wait_mean_hours"] == pytest.approx(waits_h.mean(), rel=1e-9)
    assert kpis["ed_4h_breach_pct"] == pytest.approx(100.0 * np.mean(waits_h > 4.0), rel=1e-9)
    assert kpis["ed_12h_breaches"] == float(np.sum(waits_h > 12.0))
    assert kpis["admissions_per_day"] == pytest.approx(len(in_window) / T_DAYS)


def test_wait_reasons_are_labels_and_empty_strings(scenario_builder: Callable[..., dict[str, Any]]) -> None:
    """``patients.parquet`` gives each stay's SitRep reason for its wait on the way out: the pathway's reason
    (P1 home care, P2 and P3 further non-acute NHS care) for a P1-P3 stay and an empty string, never a missing
    value, for a P0 stay, so a user's filter on ``wait_reason == ""`` means what it says."""
    fixed = {"dist": "fixed", "value": 2.0}
    data = scenario_builder(rate=6.0, beds=50, duration_days=20, warmup_days=0,
                            pathway_mix={"P0": 0.4, "P1": 0.3, "P2": 0.3},
                            pathways={"P0": {}, "P1": {"services": {"reablement": {"capacity": 2, "los": fixed}}},
                                      "P2": {"services": {"community_beds": {"capacity": 2, "los": fixed}}}})
    p = simulate(validate_dict(data), replications=1, seed=5, workers=1).patients()
    first = p[p["readmission_of"] < 0]
    expected = {"P0": "", "P1": "home_care", "P2": "non_acute_nhs", "P3": "non_acute_nhs"}
    seen = set()
    for pathway, reason in expected.items():
        rows = first[first["pathway"] == pathway]
        if len(rows):
            seen.add(pathway)
            assert (rows["wait_reason"] == reason).all(), (pathway, rows["wait_reason"].unique())
    assert seen == {"P0", "P1", "P2"}, seen
    assert p["wait_reason"].notna().all()
