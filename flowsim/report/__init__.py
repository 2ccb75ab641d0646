"""Reporting: board-paper figures from simulation results."""

from flowsim.report.figures import make_figures

__all__ = ["make_figures"]
