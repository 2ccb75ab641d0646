"""flowsim: discrete-event simulation of patient flow and delayed transfers of care.

Public API::

    from flowsim import load_scenario, simulate
    sc = load_scenario("scenarios/rotherham_2016.yaml", overrides=["acute.beds=560"])
    result = simulate(sc, replications=10, seed=1)
    result.summary()          # KPIs with 95% confidence intervals
"""

__version__ = "0.1.0"

from flowsim.errors import FlowsimError, ScenarioError
from flowsim.experiment import RunResult, run_replication, simulate
from flowsim.scenario import Scenario, load_scenario

__all__ = ["FlowsimError", "RunResult", "Scenario", "ScenarioError", "__version__", "load_scenario",
           "run_replication", "simulate"]
