"""Replications, confidence intervals and execution (serial or a local process pool)."""

from flowsim.experiment.runner import RunResult, run_replication, simulate
from flowsim.experiment.stats import mean_ci, summarise

__all__ = ["RunResult", "mean_ci", "run_replication", "simulate", "summarise"]
