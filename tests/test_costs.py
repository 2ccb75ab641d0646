"""Costs are charged once: places added by escalation are priced by the action, not by the service."""

from __future__ import annotations

import pytest

from flowsim import simulate
from flowsim.scenario import validate_dict

UNIT, BASE, EXTRA, PLACE_COST = 40.0, 3, 4, 25.0


def test_escalation_places_are_not_charged_twice(scenario_builder) -> None:
    sc = validate_dict(scenario_builder(
        rate=4.0, beds="unlimited", pathway_mix={"P0": 0.5, "P2": 0.5}, duration_days=60, warmup_days=0,
        pathways={"P0": {}, "P2": {"services": {"ic": {
            "capacity": BASE, "unit_cost_per_day": UNIT, "los": {"dist": "exponential", "mean": 3.0}}}}},
        escalation={"evaluate_at_hours": [8], "hold_days": 0,
                    "levels": {2: {"any": [{"metric": "delayed_patients", "above": 0}]}},
                    "actions": [{"level": 2, "kind": "add_capacity", "target": "ic", "amount": EXTRA,
                                 "cost_per_place_day": PLACE_COST}]},
    ))
    result = simulate(sc, replications=1, seed=3)
    assert result.checks == []
    k = result.kpi_frame().iloc[0]
    daily = result.daily()
    extra_days = float((daily["service_ic_capacity"] - BASE).sum())
    assert extra_days > 1.0, "the escalation never added places (no power)"
    # the service is charged for its own scheduled places only ...
    assert k["service_capacity_cost"] == pytest.approx(UNIT * BASE * 60)
    # ... and the action for the places it added
    assert k["escalation_cost"] == pytest.approx(PLACE_COST * extra_days, rel=1e-9)  # per place-day added
    assert k["total_cost"] == pytest.approx(k["cost_acute_delay"] + k["cost_service_care"]
                                            + k["service_capacity_cost"] + k["escalation_cost"], rel=1e-12)
