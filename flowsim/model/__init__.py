"""SimPy model of one replication (DESIGN.md section 2)."""

from flowsim.model.model import Model, RawRun, run_model

__all__ = ["Model", "RawRun", "run_model"]
