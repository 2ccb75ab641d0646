"""flowsim: discrete-event simulation of patient flow and delayed transfers of care.

Public API::

    from flowsim import load_scenario, simulate
    sc = load_scenario("scenarios/rotherham_2016.yaml", overrides=["acute.beds=560"])
    result = simulate(sc, replications=10, seed=1)
    result.summary()          # KPIs with 95% confidence intervals

The names are imported on first use (PEP 562), so ``flowsim`` on the command line starts with
almost nothing loaded: a Ctrl-C during start-up then lands where the CLI can turn it into one
line and exit code 130, rather than a traceback from inside pandas' import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from flowsim.errors import FlowsimError, ScenarioError
    from flowsim.experiment import RunResult, run_replication, simulate
    from flowsim.scenario import Scenario, load_scenario

_HOME = {"FlowsimError": "flowsim.errors", "ScenarioError": "flowsim.errors", "RunResult": "flowsim.experiment",
         "run_replication": "flowsim.experiment", "simulate": "flowsim.experiment", "Scenario": "flowsim.scenario",
         "load_scenario": "flowsim.scenario"}

__all__ = ["FlowsimError", "RunResult", "Scenario", "ScenarioError", "__version__", "load_scenario",
           "run_replication", "simulate"]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'flowsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])
