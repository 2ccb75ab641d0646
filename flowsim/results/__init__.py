"""Records, time-weighted series, KPI definitions and invariant checks."""
