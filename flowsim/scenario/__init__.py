"""Scenario files: schema, distributions, YAML loading with ``extends`` and overrides."""

from flowsim.scenario.distributions import REGISTRY as DISTRIBUTIONS
from flowsim.scenario.loader import (
    apply_overrides,
    load_raw,
    load_scenario,
    scenario_hash,
    scenario_to_dict,
    scenario_to_yaml,
    validate_dict,
)
from flowsim.scenario.schema import PATHWAYS, Scenario

__all__ = [
    "DISTRIBUTIONS",
    "PATHWAYS",
    "Scenario",
    "apply_overrides",
    "load_raw",
    "load_scenario",
    "scenario_hash",
    "scenario_to_dict",
    "scenario_to_yaml",
    "validate_dict",
]
